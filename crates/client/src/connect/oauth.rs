//! MCP authorization as a client (MCP specification, "Authorization",
//! revisions 2025-11-25 and 2026-07-28, with the 2025-03-26 fallback):
//! discovery from the server's challenge, registration in the
//! specification's order, the authorization code flow with PKCE, refresh,
//! step-up, and the client credentials grant for unattended agents.
//!
//! Every document comes from the network and is untrusted: it is read
//! within [`crate::http`]'s limits, parsed into the fields used, and its
//! endpoints must be https (or plain http on a loopback host, a development
//! set-up). Tokens and secrets never appear in messages.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;
use zeroize::Zeroizing;

use super::cache::{Cache, Entry, Registration, Tokens, now_secs};
use super::callback::{self, Callback};
use super::error::ConnectError;
use crate::challenge::Challenge;
use crate::discovery::{self, Transport};
use crate::http::{Fetched, Http};

/// A token that expires within this is refreshed before it is used.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// How long a process waits for another one's login.
const LOCK_MARGIN: Duration = Duration::from_secs(30);

/// How `connect` gets its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    AuthorizationCode,
    ClientCredentials,
}

/// The `resource` parameter (RFC 8707).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceChoice {
    /// The protected resource metadata's `resource` (the server URL).
    Discovered,
    Fixed(String),
    /// For authorization servers that reject the parameter.
    Omit,
}

/// Where the authorization URL goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Browser {
    /// The desktop's opener (`xdg-open`, `open`, `start`).
    System,
    /// Printed on standard error only.
    Print,
    /// This program and its arguments, the URL appended.
    Command(Vec<String>),
}

impl Browser {
    /// From the command line's `--open-with CMD` (split on whitespace) and
    /// `--no-browser`; the desktop's opener when neither is given.
    pub fn from_args(open_with: Option<&str>, no_browser: bool) -> Result<Self, ConnectError> {
        match (open_with, no_browser) {
            (Some(cmd), _) => {
                let argv: Vec<String> = cmd.split_whitespace().map(str::to_owned).collect();
                if argv.is_empty() {
                    return Err(ConnectError::Usage("--open-with needs a command".into()));
                }
                Ok(Browser::Command(argv))
            }
            (None, true) => Ok(Browser::Print),
            (None, false) => Ok(Browser::System),
        }
    }
}

/// The OAuth side of `connect`'s options.
#[derive(Debug)]
pub struct OAuthOptions {
    pub grant: Grant,
    pub client_id: Option<String>,
    pub client_secret: Option<Zeroizing<String>>,
    pub client_metadata_url: Option<String>,
    /// A PEM private key for `private_key_jwt`.
    pub private_key: Option<Zeroizing<String>>,
    pub scope: Option<String>,
    pub resource: ResourceChoice,
    pub browser: Browser,
    pub callback_port: Option<u16>,
    pub login_timeout: Duration,
}

/// What discovery found for the server.
#[derive(Debug, Clone)]
struct Discovered {
    /// The protected resource metadata's `resource`.
    resource: Option<String>,
    prm_scopes: Option<Vec<String>>,
    meta: AsMetadata,
}

/// The parts of authorization server metadata (RFC 8414 §2) that are used.
#[derive(Debug, Clone)]
struct AsMetadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: String,
    registration_endpoint: Option<String>,
    scopes_supported: Option<Vec<String>>,
    auth_methods: Option<Vec<String>>,
    pkce_s256: bool,
    iss_supported: bool,
    cimd_supported: bool,
}

/// Gets, keeps and renews the access token for one MCP server.
#[derive(Debug)]
pub struct Authorizer {
    server: Url,
    opts: OAuthOptions,
    http: Http,
    cache: Cache,
    /// Serialises logins within the process (the file lock does across
    /// processes).
    login: tokio::sync::Mutex<()>,
    tokens: RwLock<Option<Arc<Tokens>>>,
}

impl Authorizer {
    pub fn new(server: Url, opts: OAuthOptions, cache: Cache) -> Result<Self, ConnectError> {
        let http = Http::with_user_agent(
            crate::http::TIMEOUT,
            concat!("mcpgate-connect/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(ConnectError::Transport)?;
        let a = Self {
            server,
            opts,
            http,
            cache,
            login: tokio::sync::Mutex::new(()),
            tokens: RwLock::new(None),
        };
        let entry = a.cache.load(a.server.as_str());
        if let Some(t) = entry.tokens.filter(|t| a.usable(t)) {
            a.set(t);
        }
        Ok(a)
    }

    /// The access token to send now, if any.
    pub fn bearer(&self) -> Option<Arc<Tokens>> {
        self.tokens.read().ok().and_then(|t| t.clone())
    }

    /// Whether the current token was granted (or, when the server did not
    /// say, asked for) every scope in `scope`.
    pub fn holds(&self, scope: &str) -> bool {
        let Some(t) = self.bearer() else { return false };
        let Some(have) = t.scope.as_deref().or(t.requested_scope.as_deref()) else {
            return false;
        };
        let have: Vec<&str> = have.split_ascii_whitespace().collect();
        scope.split_ascii_whitespace().all(|s| have.contains(&s))
    }

    fn set(&self, t: Tokens) {
        if let Ok(mut g) = self.tokens.write() {
            *g = Some(Arc::new(t));
        }
    }

    /// Cached tokens are only used with the client they were issued to.
    fn usable(&self, t: &Tokens) -> bool {
        self.opts
            .client_id
            .as_ref()
            .is_none_or(|id| *id == t.client_id)
    }

    /// Renews a token about to expire, before a request is sent with it.
    /// Failing that, the request goes out as is and its 401 is handled.
    pub async fn before_request(&self) {
        let Some(t) = self.bearer() else { return };
        if t.refresh_token.is_some() && t.expires_within(REFRESH_MARGIN) {
            let _ = self.renew(Some(&t.access_token), 401, None).await;
        }
    }

    /// The server refused `failed` (or the absence of a token) with
    /// `status` (401, or 403 with `insufficient_scope`) and `challenge`:
    /// get a better token. Returns once one is set.
    pub async fn renew(
        &self,
        failed: Option<&str>,
        status: u16,
        challenge: Option<&Challenge>,
    ) -> Result<(), ConnectError> {
        let _in_process = self.login.lock().await;
        // Another task of this process already replaced the token.
        if self.replaced(failed) {
            return Ok(());
        }
        let server = self.server.as_str();
        let _lock = self
            .cache
            .lock(server, self.opts.login_timeout + LOCK_MARGIN)
            .await?;
        let mut entry = self.cache.load(server);
        // Another process logged in (or refreshed) while this one waited.
        if let Some(t) = entry.tokens.as_ref().filter(|t| {
            self.usable(t)
                && Some(t.access_token.as_str()) != failed
                && !t.expires_within(REFRESH_MARGIN)
                && status == 401
        }) {
            self.set(t.clone());
            return Ok(());
        }
        let disc = self.discover(challenge).await?;
        let issuer = disc.meta.issuer.clone();
        let held = entry
            .tokens
            .clone()
            .filter(|t| self.usable(t) && t.issuer == issuer);
        let scope = if status == 403 {
            // Step-up: what was asked for before plus what is missing now.
            union_scopes(
                held.as_ref()
                    .and_then(|t| t.requested_scope.as_deref().or(t.scope.as_deref())),
                challenge.and_then(|c| c.param("scope")),
            )
        } else {
            self.select_scope(&disc, challenge)
        };
        // A 401 with a refresh token from the same issuer: refresh first.
        if status == 401
            && let Some(held) = held.as_ref()
            && let Some(refresh) = held.refresh_token.as_deref()
        {
            let reg = self.registration_for_refresh(&entry, held, &disc.meta);
            match self.refresh(&disc, &reg, refresh, held).await {
                Ok(t) => return self.keep(&mut entry, t),
                Err(e) => {
                    eprintln!(
                        "mcpgate connect: refreshing the token failed ({e}); logging in again"
                    )
                }
            }
        }
        let tokens = match self.opts.grant {
            Grant::ClientCredentials => self.client_credentials(&disc, scope).await?,
            Grant::AuthorizationCode => self.authorization_code(&disc, &mut entry, scope).await?,
        };
        self.keep(&mut entry, tokens)
    }

    fn replaced(&self, failed: Option<&str>) -> bool {
        match (self.bearer(), failed) {
            (Some(now), Some(failed)) => now.access_token != failed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn keep(&self, entry: &mut Entry, t: Tokens) -> Result<(), ConnectError> {
        entry.tokens = Some(t.clone());
        self.cache.store(self.server.as_str(), entry)?;
        self.set(t);
        Ok(())
    }

    /// Scope selection (MCP "Scope Selection Strategy"): `--scope`, else
    /// the challenge's `scope`, else the resource's `scopes_supported`,
    /// else none; plus `offline_access` when the authorization server
    /// lists it and a refresh token is wanted.
    fn select_scope(&self, disc: &Discovered, challenge: Option<&Challenge>) -> Option<String> {
        let base = self
            .opts
            .scope
            .clone()
            .or_else(|| challenge.and_then(|c| c.param("scope")).map(str::to_owned))
            .or_else(|| {
                disc.prm_scopes
                    .as_ref()
                    .filter(|s| !s.is_empty())
                    .map(|s| s.join(" "))
            })
            .filter(|s| !s.trim().is_empty());
        let offline = self.opts.grant == Grant::AuthorizationCode
            && disc
                .meta
                .scopes_supported
                .as_ref()
                .is_some_and(|s| s.iter().any(|s| s == "offline_access"));
        if offline {
            union_scopes(base.as_deref(), Some("offline_access"))
        } else {
            base
        }
    }

    // ------------------------------------------------------------ discovery

    async fn discover(&self, challenge: Option<&Challenge>) -> Result<Discovered, ConnectError> {
        let mut urls: Vec<String> = Vec::new();
        if let Some(rm) = challenge.and_then(|c| c.param("resource_metadata")) {
            urls.push(rm.to_owned());
        }
        for (_, u) in discovery::prm_well_known(&self.server) {
            if !urls.contains(&u) {
                urls.push(u);
            }
        }
        let mut tried = Vec::new();
        for url in &urls {
            let f = match self.fetch_document(url).await {
                Ok(f) => f,
                Err(e) => {
                    tried.push(format!("{url}: {e}"));
                    continue;
                }
            };
            if f.status != 200 {
                tried.push(format!("{url}: HTTP {}", f.status));
                continue;
            }
            let Some(doc) = f.json_object() else {
                tried.push(format!("{url}: not a JSON object"));
                continue;
            };
            return self.with_prm(url, &doc).await;
        }
        // 2025-03-26: no protected resource metadata; the authorization
        // server is the MCP server's origin.
        eprintln!(
            "mcpgate connect: no protected resource metadata ({}); trying the 2025-03-26 layout",
            tried.join("; ")
        );
        let mut origin = self.server.clone();
        origin.set_path("");
        origin.set_query(None);
        let issuer = origin.as_str().trim_end_matches('/').to_owned();
        let meta = match self.as_metadata(&issuer, false).await {
            Ok(m) => m,
            Err(_) => AsMetadata {
                authorization_endpoint: Some(format!("{issuer}/authorize")),
                token_endpoint: format!("{issuer}/token"),
                registration_endpoint: Some(format!("{issuer}/register")),
                issuer,
                scopes_supported: None,
                auth_methods: None,
                // The 2025-03-26 revision already required PKCE.
                pkce_s256: true,
                iss_supported: false,
                cimd_supported: false,
            },
        };
        Ok(Discovered {
            resource: None,
            prm_scopes: None,
            meta,
        })
    }

    async fn with_prm(
        &self,
        url: &str,
        doc: &Map<String, Value>,
    ) -> Result<Discovered, ConnectError> {
        let step = "protected resource metadata";
        let bad = |detail: String| ConnectError::Discovery {
            step,
            url: url.to_owned(),
            detail,
        };
        let resource = doc
            .get("resource")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("it has no \"resource\"".into()))?;
        if !resource_covers(resource, &self.server) {
            return Err(bad(format!(
                "its resource {resource} is not the server URL {} (RFC 9728 §3.3); \
                 the metadata may belong to another server",
                self.server
            )));
        }
        let issuer = doc
            .get("authorization_servers")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .ok_or_else(|| bad("it names no authorization_servers".into()))?;
        let prm_scopes = string_list(doc.get("scopes_supported"));
        let meta = self.as_metadata(issuer, true).await?;
        Ok(Discovered {
            resource: Some(resource.to_owned()),
            prm_scopes,
            meta,
        })
    }

    async fn fetch_document(&self, url: &str) -> Result<Fetched, String> {
        let parsed = Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        if discovery::transport(&parsed) == Transport::Insecure {
            return Err("not https".into());
        }
        self.http.fetch_json(url).await
    }

    /// Authorization server metadata, from the well-known URLs in the
    /// specification's order. Its `issuer` must be exactly `issuer`.
    async fn as_metadata(&self, issuer: &str, strict: bool) -> Result<AsMetadata, ConnectError> {
        let parsed = Url::parse(issuer).map_err(|e| ConnectError::AuthServer {
            issuer: issuer.to_owned(),
            detail: format!("its identifier is not a URL ({e})"),
        })?;
        let mut tried = Vec::new();
        for (_, what, url) in discovery::as_metadata_urls(&parsed) {
            let f = match self.fetch_document(&url).await {
                Ok(f) => f,
                Err(e) => {
                    tried.push(format!("{url} ({what}): {e}"));
                    continue;
                }
            };
            let Some(doc) = (f.status == 200).then(|| f.json_object()).flatten() else {
                tried.push(format!("{url} ({what}): HTTP {}", f.status));
                continue;
            };
            let err = |detail: String| ConnectError::Discovery {
                step: "authorization server metadata",
                url: url.clone(),
                detail,
            };
            let got = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
            if got != issuer {
                return Err(err(format!(
                    "its issuer {got:?} is not {issuer:?}, the issuer it was looked up for \
                     (RFC 8414 §3.3); refusing to use it"
                )));
            }
            let endpoint = |name: &str| -> Result<Option<String>, ConnectError> {
                let Some(v) = doc.get(name) else {
                    return Ok(None);
                };
                let s = v
                    .as_str()
                    .ok_or_else(|| err(format!("{name} is not a string")))?;
                let u = Url::parse(s).map_err(|_| err(format!("{name} {s:?} is not a URL")))?;
                if discovery::transport(&u) == Transport::Insecure {
                    return Err(err(format!("{name} {s} is not https")));
                }
                Ok(Some(s.to_owned()))
            };
            let token_endpoint = endpoint("token_endpoint")?
                .ok_or_else(|| err("it has no token_endpoint".into()))?;
            let methods = string_list(doc.get("code_challenge_methods_supported"));
            return Ok(AsMetadata {
                issuer: issuer.to_owned(),
                authorization_endpoint: endpoint("authorization_endpoint")?,
                token_endpoint,
                registration_endpoint: endpoint("registration_endpoint")?,
                scopes_supported: string_list(doc.get("scopes_supported")),
                auth_methods: string_list(doc.get("token_endpoint_auth_methods_supported")),
                pkce_s256: methods.is_some_and(|m| m.iter().any(|m| m == "S256")),
                iss_supported: doc
                    .get("authorization_response_iss_parameter_supported")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                cimd_supported: doc
                    .get("client_id_metadata_document_supported")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        }
        let detail = format!("no metadata document answered: {}", tried.join("; "));
        if strict {
            Err(ConnectError::Discovery {
                step: "authorization server metadata discovery",
                url: issuer.to_owned(),
                detail,
            })
        } else {
            Err(ConnectError::AuthServer {
                issuer: issuer.to_owned(),
                detail,
            })
        }
    }

    fn resource(&self, disc: &Discovered) -> Option<String> {
        match &self.opts.resource {
            ResourceChoice::Omit => None,
            ResourceChoice::Fixed(r) => Some(r.clone()),
            ResourceChoice::Discovered => Some(
                disc.resource
                    .clone()
                    .unwrap_or_else(|| self.server.as_str().to_owned()),
            ),
        }
    }

    // ---------------------------------------------------------- registration

    /// Registration, in the specification's order: pre-registered (the
    /// command line), one kept from an earlier login at this issuer, a
    /// client ID metadata document when the server supports them, dynamic
    /// registration.
    async fn registration(
        &self,
        disc: &Discovered,
        entry: &mut Entry,
        redirect_uri: &str,
    ) -> Result<Registration, ConnectError> {
        let meta = &disc.meta;
        if let Some(r) = self.preregistered(meta) {
            return Ok(r);
        }
        if let Some(url) = &self.opts.client_metadata_url
            && meta.cimd_supported
        {
            return Ok(Registration {
                client_id: url.clone(),
                client_secret: None,
                auth_method: "none".into(),
                redirect_uri: None,
            });
        }
        if let Some(r) = entry.registrations.get(&meta.issuer) {
            return Ok(r.clone());
        }
        let Some(endpoint) = meta.registration_endpoint.clone() else {
            return Err(ConnectError::AuthServer {
                issuer: meta.issuer.clone(),
                detail: "it supports neither client ID metadata documents (or no \
                         --client-metadata-url was given) nor dynamic client registration; \
                         register a client there and pass --client-id (and --client-secret)"
                    .into(),
            });
        };
        let r = self.register(&endpoint, meta, redirect_uri).await?;
        entry.registrations.insert(meta.issuer.clone(), r.clone());
        Ok(r)
    }

    /// Dynamic client registration (RFC 7591) as a native application.
    async fn register(
        &self,
        endpoint: &str,
        meta: &AsMetadata,
        redirect_uri: &str,
    ) -> Result<Registration, ConnectError> {
        let method = match &meta.auth_methods {
            Some(m) if !m.iter().any(|m| m == "none") => {
                if m.iter().any(|m| m == "client_secret_basic") {
                    "client_secret_basic"
                } else {
                    "client_secret_post"
                }
            }
            _ => "none",
        };
        let body = serde_json::json!({
            "client_name": "mcpgate connect",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": method,
            "application_type": "native",
        });
        let err = |detail: String| ConnectError::Registration {
            url: endpoint.to_owned(),
            detail,
        };
        let f = self
            .http
            .send(self.http.post(endpoint).json(&body))
            .await
            .map_err(err)?;
        if f.status != 201 && f.status != 200 {
            return Err(err(format!("HTTP {}: {}", f.status, oauth_error(&f))));
        }
        #[derive(Deserialize)]
        struct Resp {
            client_id: String,
            client_secret: Option<String>,
            token_endpoint_auth_method: Option<String>,
        }
        let r: Resp = serde_json::from_slice(&f.body)
            .map_err(|e| err(format!("the response is not a registration ({e})")))?;
        let auth_method = r.token_endpoint_auth_method.unwrap_or_else(|| {
            if r.client_secret.is_some() {
                "client_secret_basic".into()
            } else {
                "none".into()
            }
        });
        Ok(Registration {
            client_id: r.client_id,
            client_secret: r.client_secret,
            auth_method,
            redirect_uri: Some(redirect_uri.to_owned()),
        })
    }

    /// The client given on the command line, if any, authenticating with
    /// its secret by the method the server takes (or as a public client).
    fn preregistered(&self, meta: &AsMetadata) -> Option<Registration> {
        let client_id = self.opts.client_id.clone()?;
        Some(Registration {
            client_id,
            client_secret: self.opts.client_secret.as_ref().map(|s| s.to_string()),
            auth_method: secret_method(self.opts.client_secret.is_some(), meta),
            redirect_uri: None,
        })
    }

    fn registration_for_refresh(
        &self,
        entry: &Entry,
        held: &Tokens,
        meta: &AsMetadata,
    ) -> Registration {
        if let Some(r) = self
            .preregistered(meta)
            .filter(|r| r.client_id == held.client_id)
        {
            return r;
        }
        entry
            .registrations
            .get(&held.issuer)
            .filter(|r| r.client_id == held.client_id)
            .cloned()
            .unwrap_or_else(|| Registration {
                client_id: held.client_id.clone(),
                client_secret: None,
                auth_method: "none".into(),
                redirect_uri: None,
            })
    }

    // ------------------------------------------------------------- grants

    async fn authorization_code(
        &self,
        disc: &Discovered,
        entry: &mut Entry,
        scope: Option<String>,
    ) -> Result<Tokens, ConnectError> {
        let meta = &disc.meta;
        if !meta.pkce_s256 {
            return Err(ConnectError::AuthServer {
                issuer: meta.issuer.clone(),
                detail: "its metadata does not list S256 in code_challenge_methods_supported, \
                         so PKCE cannot be relied on (MCP authorization, \"Authorization Code \
                         Protection\")"
                    .into(),
            });
        }
        let Some(authorize) = meta.authorization_endpoint.clone() else {
            return Err(ConnectError::AuthServer {
                issuer: meta.issuer.clone(),
                detail: "its metadata has no authorization_endpoint".into(),
            });
        };
        // The port a kept registration was made with, so its redirect URI
        // still matches.
        let kept_port = entry
            .registrations
            .get(&meta.issuer)
            .and_then(|r| r.redirect_uri.as_deref())
            .and_then(|u| Url::parse(u).ok())
            .and_then(|u| u.port());
        let listener = callback::bind(self.opts.callback_port.or(kept_port)).await?;
        let redirect_uri = listener.redirect_uri();
        let mut reg = self.registration(disc, entry, &redirect_uri).await?;
        // A kept registration whose port was taken: the authorization server
        // must accept any loopback port (RFC 8252 §7.3).
        if reg.redirect_uri.is_some() {
            reg.redirect_uri = Some(redirect_uri.clone());
        }
        let verifier = random_token(32)?;
        let challenge = URL_SAFE_NO_PAD.encode(mcpgate_crypto::sha256(verifier.as_bytes()));
        let state = random_token(16)?;
        let resource = self.resource(disc);
        let mut url = Url::parse(&authorize).map_err(|e| ConnectError::AuthServer {
            issuer: meta.issuer.clone(),
            detail: format!("authorization_endpoint is not a URL ({e})"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &reg.client_id)
                .append_pair("redirect_uri", &redirect_uri)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", &state);
            if let Some(s) = &scope {
                q.append_pair("scope", s);
            }
            if let Some(r) = &resource {
                q.append_pair("resource", r);
            }
        }
        self.open_browser(url.as_str()).await;
        let cb = listener.wait(&state, self.opts.login_timeout).await?;
        check_iss(cb.iss.as_deref(), &meta.issuer, meta.iss_supported)?;
        let code = match cb {
            Callback {
                code: Some(code), ..
            } => code,
            Callback { error, .. } => {
                return Err(ConnectError::Authorization(format!(
                    "the authorization server answered {}",
                    error.unwrap_or_else(|| "without a code".into())
                )));
            }
        };
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_string()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.to_string()),
        ];
        if let Some(r) = &resource {
            form.push(("resource", r.clone()));
        }
        let t = self.token_request(meta, &reg, form).await?;
        Ok(self.tokens_from(meta, &reg, t, scope, None))
    }

    async fn refresh(
        &self,
        disc: &Discovered,
        reg: &Registration,
        refresh: &str,
        held: &Tokens,
    ) -> Result<Tokens, ConnectError> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh.to_owned()),
        ];
        if let Some(r) = self.resource(disc) {
            form.push(("resource", r));
        }
        let t = self.token_request(&disc.meta, reg, form).await?;
        Ok(self.tokens_from(
            &disc.meta,
            reg,
            t,
            held.requested_scope.clone(),
            held.refresh_token.clone(),
        ))
    }

    async fn client_credentials(
        &self,
        disc: &Discovered,
        scope: Option<String>,
    ) -> Result<Tokens, ConnectError> {
        let meta = &disc.meta;
        let Some(id) = self.opts.client_id.clone() else {
            return Err(ConnectError::Usage(
                "--grant client-credentials needs --client-id, and --client-secret or \
                 --private-key"
                    .into(),
            ));
        };
        let reg = if self.opts.private_key.is_some() {
            Registration {
                client_id: id,
                client_secret: None,
                auth_method: "private_key_jwt".into(),
                redirect_uri: None,
            }
        } else if let Some(r) = self
            .preregistered(meta)
            .filter(|r| r.client_secret.is_some())
        {
            r
        } else {
            return Err(ConnectError::Usage(
                "--grant client-credentials needs --client-secret or --private-key".into(),
            ));
        };
        let mut form = vec![("grant_type", "client_credentials".to_owned())];
        if let Some(s) = &scope {
            form.push(("scope", s.clone()));
        }
        if let Some(r) = self.resource(disc) {
            form.push(("resource", r));
        }
        let t = self.token_request(meta, &reg, form).await?;
        Ok(self.tokens_from(meta, &reg, t, scope, None))
    }

    fn tokens_from(
        &self,
        meta: &AsMetadata,
        reg: &Registration,
        t: TokenResponse,
        requested_scope: Option<String>,
        old_refresh: Option<String>,
    ) -> Tokens {
        Tokens {
            issuer: meta.issuer.clone(),
            client_id: reg.client_id.clone(),
            access_token: t.access_token,
            // A refresh response without a new refresh token keeps the old
            // one (RFC 6749 §6).
            refresh_token: t.refresh_token.or(old_refresh),
            expires_at: t.expires_in.map(|s| now_secs().saturating_add(s)),
            requested_scope,
            scope: t.scope,
        }
    }

    /// A token request with the client's authentication.
    async fn token_request(
        &self,
        meta: &AsMetadata,
        reg: &Registration,
        mut form: Vec<(&'static str, String)>,
    ) -> Result<TokenResponse, ConnectError> {
        let url = meta.token_endpoint.clone();
        let err = |detail: String| ConnectError::Token {
            url: url.clone(),
            detail,
        };
        let mut req = self.http.post(&url).header("accept", "application/json");
        match reg.auth_method.as_str() {
            "client_secret_basic" => {
                let secret = reg.client_secret.as_deref().unwrap_or("");
                // RFC 6749 §2.3.1: both parts form-urlencoded first.
                let user = form_encode(&reg.client_id);
                let pass = Zeroizing::new(form_encode(secret));
                let creds = Zeroizing::new(STANDARD.encode(format!("{user}:{}", pass.as_str())));
                req = req.header("authorization", format!("Basic {}", creds.as_str()));
            }
            "client_secret_post" => {
                form.push(("client_id", reg.client_id.clone()));
                form.push((
                    "client_secret",
                    reg.client_secret.clone().unwrap_or_default(),
                ));
            }
            "private_key_jwt" => {
                let pem = self.opts.private_key.as_ref().ok_or_else(|| {
                    ConnectError::Usage("private_key_jwt needs --private-key".into())
                })?;
                let assertion = client_assertion(pem, &reg.client_id, &meta.issuer)?;
                form.push(("client_id", reg.client_id.clone()));
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", assertion));
            }
            _ => form.push(("client_id", reg.client_id.clone())),
        }
        let f = self.http.send(req.form(&form)).await.map_err(err)?;
        form.iter_mut()
            .for_each(|(_, v)| zeroize::Zeroize::zeroize(v));
        if f.status != 200 {
            return Err(err(format!("HTTP {}: {}", f.status, oauth_error(&f))));
        }
        let t: TokenResponse = serde_json::from_slice(&f.body)
            .map_err(|e| err(format!("the response is not a token response ({e})")))?;
        if !t.token_type.eq_ignore_ascii_case("bearer") {
            return Err(err(format!(
                "token_type {:?} is not supported (only Bearer)",
                t.token_type
            )));
        }
        Ok(t)
    }

    async fn open_browser(&self, url: &str) {
        match &self.opts.browser {
            Browser::Print => {
                eprintln!("mcpgate connect: to log in, open this URL in a browser:\n{url}");
            }
            Browser::Command(argv) => {
                eprintln!("mcpgate connect: opening the login page with {}", argv[0]);
                spawn_opener(&argv[0], &argv[1..], url);
            }
            Browser::System => {
                eprintln!(
                    "mcpgate connect: opening the login page in your browser; if it does not \
                     open, visit:\n{url}"
                );
                let (prog, args): (&str, &[&str]) = if cfg!(target_os = "macos") {
                    ("open", &[])
                } else if cfg!(windows) {
                    ("cmd", &["/c", "start", ""])
                } else {
                    ("xdg-open", &[])
                };
                let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
                spawn_opener(prog, &args, url);
            }
        }
    }
}

fn spawn_opener(prog: &str, args: &[String], url: &str) {
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        // Its output must not reach our stdout, the JSON-RPC channel.
        .stdout(std::process::Stdio::null());
    match cmd.spawn() {
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        Err(e) => eprintln!("mcpgate connect: could not run {prog} ({e}); open the URL by hand"),
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    scope: Option<String>,
}

/// The method for a client with (or without) a secret: `client_secret_basic`
/// unless the server lists only `client_secret_post` (RFC 8414 §2: the
/// default is `client_secret_basic`).
fn secret_method(has_secret: bool, meta: &AsMetadata) -> String {
    if !has_secret {
        return "none".into();
    }
    match &meta.auth_methods {
        Some(m)
            if !m.iter().any(|m| m == "client_secret_basic")
                && m.iter().any(|m| m == "client_secret_post") =>
        {
            "client_secret_post".into()
        }
        _ => "client_secret_basic".into(),
    }
}

/// An RFC 7523 client assertion: `iss` = `sub` = the client, `aud` = the
/// issuer, valid for a minute, with a random `jti`. The algorithm follows
/// the key: ES256 for P-256, RS256 for RSA, EdDSA for Ed25519.
fn client_assertion(pem: &str, client_id: &str, issuer: &str) -> Result<String, ConnectError> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let now = now_secs();
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": issuer,
        "iat": now,
        "exp": now + 60,
        "jti": random_token(16)?.to_string(),
    });
    type Load = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;
    let attempts: [(Algorithm, Load); 3] = [
        (Algorithm::ES256, EncodingKey::from_ec_pem),
        (Algorithm::RS256, EncodingKey::from_rsa_pem),
        (Algorithm::EdDSA, EncodingKey::from_ed_pem),
    ];
    for (alg, load) in attempts {
        if let Ok(key) = load(pem.as_bytes())
            && let Ok(jwt) = jsonwebtoken::encode(&Header::new(alg), &claims, &key)
        {
            return Ok(jwt);
        }
    }
    Err(ConnectError::Usage(
        "--private-key is not a PEM private key for ES256 (P-256), RS256 (RSA) or EdDSA \
         (Ed25519)"
            .into(),
    ))
}

/// RFC 9207 §2.4, as the MCP specification tabulates it: an `iss` that is
/// present must equal the issuer exactly (no normalisation), whether or not
/// the server advertised it; an absent one is refused only when the
/// server advertised `authorization_response_iss_parameter_supported`.
pub(crate) fn check_iss(
    iss: Option<&str>,
    issuer: &str,
    advertised: bool,
) -> Result<(), ConnectError> {
    match iss {
        Some(i) if i == issuer => Ok(()),
        Some(i) => Err(ConnectError::Authorization(format!(
            "the authorization response came with iss {i:?}, not {issuer:?} (RFC 9207): \
             it may come from another authorization server (a mix-up attack); not using it"
        ))),
        None if advertised => Err(ConnectError::Authorization(format!(
            "{issuer} advertises the iss parameter but the authorization response has none \
             (RFC 9207); not using it"
        ))),
        None => Ok(()),
    }
}

/// Whether protected resource metadata's `resource` identifies `server`:
/// the same URL, or the same origin and a path prefix of it on a segment
/// boundary.
pub(crate) fn resource_covers(resource: &str, server: &Url) -> bool {
    let Ok(r) = Url::parse(resource) else {
        return false;
    };
    if r.origin() != server.origin() || r.query().is_some() || r.fragment().is_some() {
        return false;
    }
    let rp = r.path().trim_end_matches('/');
    let sp = server.path();
    rp.is_empty() || sp == rp || sp.trim_end_matches('/') == rp || sp.starts_with(&format!("{rp}/"))
}

/// The union of two space-separated scope lists, in order of first
/// appearance.
pub(crate) fn union_scopes(a: Option<&str>, b: Option<&str>) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for s in a.into_iter().chain(b).flat_map(str::split_ascii_whitespace) {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    (!out.is_empty()).then(|| out.join(" "))
}

fn string_list(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array().map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

/// `error` and `error_description` of an OAuth error body, else an excerpt;
/// at most about 300 characters of what the server wrote.
fn oauth_error(f: &Fetched) -> String {
    let cut = |s: &str| crate::http::one_line(s, 300);
    match f.json_object() {
        Some(o) if o.contains_key("error") => {
            let e = o.get("error").and_then(Value::as_str).unwrap_or("?");
            match o.get("error_description").and_then(Value::as_str) {
                Some(d) => cut(&format!("{e} ({d})")),
                None => cut(e),
            }
        }
        _ => f.body_excerpt(200),
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `n` random bytes as base64url.
fn random_token(n: usize) -> Result<Zeroizing<String>, ConnectError> {
    let mut b = Zeroizing::new(vec![0u8; n]);
    mcpgate_crypto::random_bytes(&mut b)
        .map_err(|_| ConnectError::Authorization("the system random generator failed".into()))?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(b.as_slice())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9207_iss_table() {
        let i = "https://as.example";
        // Present and equal: accepted, advertised or not.
        assert!(check_iss(Some(i), i, true).is_ok());
        assert!(check_iss(Some(i), i, false).is_ok());
        // Present and different: refused, advertised or not.
        assert!(check_iss(Some("https://evil.example"), i, true).is_err());
        assert!(check_iss(Some("https://evil.example"), i, false).is_err());
        // No normalisation: a trailing slash or case is a mismatch.
        assert!(check_iss(Some("https://as.example/"), i, true).is_err());
        assert!(check_iss(Some("https://AS.example"), i, true).is_err());
        // Absent: refused only when advertised.
        assert!(check_iss(None, i, true).is_err());
        assert!(check_iss(None, i, false).is_ok());
    }

    #[test]
    fn rfc9728_resource_must_identify_the_server() {
        let s = Url::parse("https://mcp.example/api/mcp").unwrap();
        assert!(resource_covers("https://mcp.example/api/mcp", &s));
        assert!(resource_covers("https://mcp.example/api", &s));
        assert!(resource_covers("https://mcp.example", &s));
        assert!(resource_covers("https://mcp.example/", &s));
        assert!(!resource_covers("https://mcp.example/ap", &s));
        assert!(!resource_covers("https://mcp.example/other/mcp", &s));
        assert!(!resource_covers("https://evil.example/api/mcp", &s));
        assert!(!resource_covers("http://mcp.example/api/mcp", &s));
        assert!(!resource_covers("not a url", &s));
    }

    #[test]
    fn step_up_scope_is_the_union() {
        assert_eq!(
            union_scopes(Some("mcp:basic"), Some("mcp:write mcp:basic")).as_deref(),
            Some("mcp:basic mcp:write")
        );
        assert_eq!(union_scopes(None, Some("a")).as_deref(), Some("a"));
        assert_eq!(union_scopes(None, None), None);
        assert_eq!(union_scopes(Some("  "), None), None);
    }

    #[test]
    fn rfc8414_default_auth_method_is_basic() {
        let mut meta = AsMetadata {
            issuer: "https://as".into(),
            authorization_endpoint: None,
            token_endpoint: "https://as/token".into(),
            registration_endpoint: None,
            scopes_supported: None,
            auth_methods: None,
            pkce_s256: true,
            iss_supported: false,
            cimd_supported: false,
        };
        assert_eq!(secret_method(true, &meta), "client_secret_basic");
        assert_eq!(secret_method(false, &meta), "none");
        meta.auth_methods = Some(vec!["client_secret_post".into()]);
        assert_eq!(secret_method(true, &meta), "client_secret_post");
        meta.auth_methods = Some(vec![
            "client_secret_post".into(),
            "client_secret_basic".into(),
        ]);
        assert_eq!(secret_method(true, &meta), "client_secret_basic");
    }

    #[test]
    fn rfc7523_assertion_from_a_p256_key() {
        let key = mcpgate_crypto::signing::generate().unwrap();
        let b64 = STANDARD.encode(key.pkcs8.as_slice());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let jwt = client_assertion(&pem, "agent-1", "https://as.example").unwrap();
        let mut parts = jwt.split('.');
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
                .unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(claims["iss"], "agent-1");
        assert_eq!(claims["sub"], "agent-1");
        assert_eq!(claims["aud"], "https://as.example");
        assert!(claims["jti"].as_str().unwrap().len() >= 20);
        assert!(client_assertion("not a key", "a", "b").is_err());
    }
}
