//! The authorization endpoint (OAuth 2.1 §4.1.1) with its login and
//! consent pages.
//!
//! `GET /oauth/authorize` validates the request. Until the client and the
//! redirect URI are known to be genuine, errors are shown as a page and
//! never redirected (RFC 9700 §4.1: no open redirector); after that, errors
//! go back to the client with `error`, the unchanged `state` and `iss`
//! (RFC 9207). A valid request becomes a *pending request*: its validated
//! parameters, sealed with a MAC under a key derived from the master key
//! and carried in a hidden form field, so no server state exists before
//! the user acts and any replica can continue it. It expires after
//! [`PENDING_TTL`].
//!
//! The person then signs in (unless a login session exists) and consents
//! (unless they consented before to this client, resource and a superset of
//! these scopes). Both forms post back to the same path; each carries a
//! CSRF token that is a MAC over the pending request and, for the login
//! form, a random nonce in a cookie set with the form, for the consent form,
//! the session id. A cross-site page can neither read nor forge them.
//!
//! A login session is a cookie holding `{user, session id, issued, expires}`
//! under a MAC: stateless, valid on every replica, and dead as soon as the
//! account is disabled or its password changes after the session began.
//! The session id is fresh at every login (no fixation). The cookie is
//! HttpOnly, SameSite=Lax, and `__Host-`-prefixed and Secure over https.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use mcpgate_core::ScopeSet;
use mcpgate_store::{AuthCodeRecord, ConsentRecord, DEFAULT_TENANT};
use serde::{Deserialize, Serialize};

use crate::clients::{self, Client, ResolveError};
use crate::pages::{self, RequestView};
use crate::{AuthServer, Resource, now, random_token, redirect};

/// How long a person has to sign in and consent.
pub const PENDING_TTL: i64 = 600;
/// Authorization codes live this long (OAuth 2.1 §4.1.2 recommends at
/// most ten minutes; the issue asks for at most 60 s).
pub const CODE_TTL: i64 = 60;
/// Largest `state` accepted (it is echoed into a URL).
const MAX_STATE: usize = 1024;
/// Largest form body read from the login and consent pages.
const MAX_FORM: usize = 16 * 1024;
/// Failed logins per source address within [`ADDRESS_WINDOW`] before the
/// address must wait.
const ADDRESS_FAILURES: u32 = 20;
const ADDRESS_WINDOW: i64 = 900;

/// The validated request, as sealed into the forms.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    /// client_id
    c: String,
    /// redirect_uri, exactly as sent
    r: String,
    /// state, if sent
    s: Option<String>,
    /// PKCE S256 code_challenge
    p: String,
    /// resource (the token's audience)
    a: String,
    /// granted scopes, space-separated
    g: String,
    /// expiry
    e: i64,
}

/// The login session, as sealed into the cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    u: String,
    /// Random session id (fresh at every login).
    i: String,
    /// Issued at.
    t: i64,
    /// Expires at.
    e: i64,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn seal<T: Serialize>(s: &AuthServer, kind: &str, v: &T) -> String {
    let body = b64(&serde_json::to_vec(v).unwrap_or_default());
    let tag = s.forms.tag(&[kind.as_bytes(), body.as_bytes()]);
    format!("{body}.{tag}")
}

fn unseal<T: for<'de> Deserialize<'de>>(s: &AuthServer, kind: &str, sealed: &str) -> Option<T> {
    let (body, tag) = sealed.rsplit_once('.')?;
    if !s.forms.verify(&[kind.as_bytes(), body.as_bytes()], tag) {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

fn session_cookie_name(s: &AuthServer) -> &'static str {
    if s.issuer.starts_with("https://") {
        "__Host-mcpgate_session"
    } else {
        "mcpgate_session"
    }
}

fn login_cookie_name(s: &AuthServer) -> &'static str {
    if s.issuer.starts_with("https://") {
        "__Host-mcpgate_login"
    } else {
        "mcpgate_login"
    }
}

fn set_cookie(s: &AuthServer, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if s.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or(HeaderValue::from_static("x=; Max-Age=0"))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The query or form parameters, each at most once (OAuth 2.1 §3.1:
/// "Request and response parameters MUST NOT be included more than once").
fn params(raw: &[u8], names: &[&str]) -> Result<Vec<Option<String>>, &'static str> {
    let mut out = vec![None; names.len()];
    for (k, v) in url::form_urlencoded::parse(raw) {
        if let Some(i) = names.iter().position(|n| *n == k) {
            if out[i].is_some() {
                return Err("a parameter is repeated");
            }
            out[i] = Some(v.into_owned());
        }
    }
    Ok(out)
}

/// Where errors go once the client and redirect URI are trusted.
struct Back<'a> {
    issuer: &'a str,
    redirect_uri: &'a str,
    state: Option<&'a str>,
}

impl Back<'_> {
    fn to(&self, pairs: &[(&str, &str)]) -> Response {
        let mut url = match url::Url::parse(self.redirect_uri) {
            Ok(u) => u,
            Err(_) => {
                return pages::error(StatusCode::BAD_REQUEST, "the redirect URI is not a URL");
            }
        };
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
            if let Some(st) = self.state {
                q.append_pair("state", st);
            }
            q.append_pair("iss", self.issuer);
        }
        let mut r = StatusCode::SEE_OTHER.into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(url.as_str()) {
            h.insert(header::LOCATION, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        r
    }

    fn error(&self, code: &str, description: &str) -> Response {
        self.to(&[("error", code), ("error_description", description)])
    }
}

fn shown_error(e: &ResolveError) -> Response {
    match e {
        ResolveError::Unknown => pages::error(
            StatusCode::BAD_REQUEST,
            "The application is not registered with this server (unknown client_id).",
        ),
        ResolveError::Metadata(m) => pages::error(StatusCode::BAD_REQUEST, m),
        ResolveError::Store(err) => {
            tracing::error!(error = %err, "client lookup failed");
            pages::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server failed; try again.",
            )
        }
    }
}

/// `GET /oauth/authorize`.
pub async fn get(State(s): State<Arc<AuthServer>>, headers: HeaderMap, uri: http::Uri) -> Response {
    let query = uri.query().unwrap_or("");
    let names = [
        "client_id",
        "redirect_uri",
        "response_type",
        "state",
        "code_challenge",
        "code_challenge_method",
        "scope",
        "resource",
        "request",
        "request_uri",
    ];
    let p = match params(query.as_bytes(), &names) {
        Ok(p) => p,
        Err(m) => return pages::error(StatusCode::BAD_REQUEST, m),
    };
    let [
        client_id,
        redirect_uri,
        response_type,
        state,
        challenge,
        method,
        scope,
        resource,
        request_obj,
        request_uri,
    ] = <[Option<String>; 10]>::try_from(p).unwrap_or_default();
    let Some(client_id) = client_id else {
        return pages::error(StatusCode::BAD_REQUEST, "The request has no client_id.");
    };
    let client = match clients::resolve(&s, &client_id).await {
        Ok(c) => c,
        Err(e) => return shown_error(&e),
    };
    let redirect_uri = match redirect_uri {
        Some(r) => r,
        // OAuth 2.1 §4.1.1: optional only when exactly one is registered.
        None => match client.redirect_uris.as_slice() {
            [only] if !only.starts_with("http://") => only.clone(),
            _ => {
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    "The request has no redirect_uri, and the application has several (or a loopback one).",
                );
            }
        },
    };
    if redirect_uri.len() > redirect::MAX_LEN
        || !client
            .redirect_uris
            .iter()
            .any(|r| redirect::matches(r, &redirect_uri))
    {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "The redirect_uri is not registered for this application.",
        );
    }
    if state.as_ref().is_some_and(|st| st.len() > MAX_STATE) {
        return pages::error(StatusCode::BAD_REQUEST, "The state parameter is too long.");
    }
    let back = Back {
        issuer: &s.issuer,
        redirect_uri: &redirect_uri,
        state: state.as_deref(),
    };
    if request_obj.is_some() || request_uri.is_some() {
        return back.error("request_not_supported", "request objects are not supported");
    }
    match response_type.as_deref() {
        Some("code") => {}
        None => return back.error("invalid_request", "response_type is required"),
        Some(_) => {
            return back.error(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
    }
    if !client.allows_grant("authorization_code") {
        return back.error(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        );
    }
    // PKCE (RFC 7636, OAuth 2.1 §4.1.1): S256 only, for every client.
    let Some(challenge) = challenge else {
        return back.error("invalid_request", "code_challenge is required (PKCE S256)");
    };
    if method.as_deref() != Some("S256") {
        return back.error("invalid_request", "code_challenge_method must be S256");
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return back.error(
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        );
    }
    let target = match s.pick_resource(resource.as_deref()) {
        Ok(r) => r,
        Err(d) => return back.error("invalid_target", d),
    };
    let granted = match grant_scopes(&client, target, scope.as_deref()) {
        Ok(g) => g,
        Err(d) => return back.error("invalid_scope", d),
    };
    let pending = Pending {
        c: client.client_id.clone(),
        r: redirect_uri.clone(),
        s: state.clone(),
        p: challenge,
        a: target.uri.as_str().to_owned(),
        g: granted.to_space_delimited(),
        e: now() + PENDING_TTL,
    };
    let sealed = seal(&s, "pending", &pending);
    match current_session(&s, &headers).await {
        Some(session) => after_login(&s, &client, &pending, &sealed, &session, None).await,
        None => login_page(&s, &client, &pending, &sealed, None),
    }
}

/// The scopes to grant: those asked for that both the client and the
/// resource allow (`offline_access` is dropped: refresh tokens come with
/// the grant type). Without `scope`, the resource's base scopes (what
/// every request to it needs). A request whose scopes are all refused is
/// `invalid_scope`.
fn grant_scopes(
    client: &Client,
    target: &Resource,
    scope: Option<&str>,
) -> Result<ScopeSet, &'static str> {
    let client_allowed = match client.scope.as_deref() {
        Some(cs) => {
            Some(ScopeSet::parse(cs).map_err(|_| "the client's registered scope is malformed")?)
        }
        None => None,
    };
    let allowed = |x: &mcpgate_core::Scope| {
        target.scopes.contains(x) && client_allowed.as_ref().is_none_or(|c| c.contains(x))
    };
    match scope {
        Some(req) => {
            let req = ScopeSet::parse(req).map_err(|_| "scope is malformed")?;
            let asked: Vec<_> = req
                .iter()
                .filter(|x| x.as_str() != "offline_access")
                .collect();
            let granted: ScopeSet = asked
                .iter()
                .filter(|x| allowed(x))
                .map(|x| (*x).clone())
                .collect();
            if granted.is_empty() && !asked.is_empty() {
                return Err(
                    "none of the requested scopes may be granted to this client for this resource",
                );
            }
            Ok(granted)
        }
        None => Ok(target
            .base_scopes
            .iter()
            .filter(|x| allowed(x))
            .cloned()
            .collect()),
    }
}

async fn current_session(s: &AuthServer, headers: &HeaderMap) -> Option<Session> {
    let raw = cookie(headers, session_cookie_name(s))?;
    let sess: Session = unseal(s, "session", raw)?;
    let t = now();
    if sess.e <= t {
        return None;
    }
    // The account must still exist, be enabled, and not have changed its
    // password since the session began.
    let user = s.store.user(DEFAULT_TENANT, &sess.u).await.ok()??;
    if user.disabled_at.is_some() || user.password_changed_at > sess.t {
        return None;
    }
    Some(sess)
}

fn view<'a>(
    client: &'a Client,
    pending: &'a Pending,
    scopes: &'a [&'a str],
    redirect_host: &'a str,
) -> RequestView<'a> {
    RequestView {
        client_name: &client.name,
        client_host: client.metadata_host.as_deref(),
        redirect_host,
        redirect_is_localhost: redirect::is_localhost(&pending.r),
        resource: &pending.a,
        scopes,
    }
}

fn login_page(
    s: &AuthServer,
    client: &Client,
    pending: &Pending,
    sealed: &str,
    error: Option<&str>,
) -> Response {
    let mut nonce = [0u8; 16];
    if mcpgate_crypto::random_bytes(&mut nonce).is_err() {
        return pages::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server failed; try again.",
        );
    }
    let nonce = b64(&nonce);
    let csrf = s
        .forms
        .tag(&[b"login", nonce.as_bytes(), sealed.as_bytes()]);
    let scopes: Vec<&str> = pending.g.split_whitespace().collect();
    let host = redirect_host(&pending.r);
    let mut r = pages::login(&view(client, pending, &scopes, &host), sealed, &csrf, error);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(s, login_cookie_name(s), &nonce, PENDING_TTL),
    );
    r
}

fn redirect_host(uri: &str) -> String {
    url::Url::parse(uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Signed in: redirect at once if consent was given before for this
/// client, resource and (a superset of) these scopes, else ask. A loopback
/// redirect URI always asks: any program on the machine can listen there
/// and start a flow under a known client's id (the metadata-document
/// "localhost impersonation" case), so a remembered consent must not let it
/// collect a code without the person seeing the page.
async fn after_login(
    s: &AuthServer,
    client: &Client,
    pending: &Pending,
    sealed: &str,
    session: &Session,
    set_session: Option<HeaderValue>,
) -> Response {
    let prior = if redirect::is_localhost(&pending.r) {
        Ok(None)
    } else {
        s.store
            .consent(DEFAULT_TENANT, &session.u, &pending.c, &pending.a)
            .await
    };
    let covered = match prior {
        Ok(Some(c)) => {
            let had: Vec<&str> = c.scope.split_whitespace().collect();
            pending.g.split_whitespace().all(|x| had.contains(&x))
        }
        Ok(None) => false,
        Err(e) => {
            tracing::error!(error = %e, "consent lookup failed");
            false
        }
    };
    let mut r = if covered {
        issue_code(s, pending, &session.u).await
    } else {
        let csrf = s
            .forms
            .tag(&[b"consent", session.i.as_bytes(), sealed.as_bytes()]);
        let scopes: Vec<&str> = pending.g.split_whitespace().collect();
        let host = redirect_host(&pending.r);
        pages::consent(
            &view(client, pending, &scopes, &host),
            &session.u,
            sealed,
            &csrf,
        )
    };
    if let Some(c) = set_session {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

async fn issue_code(s: &AuthServer, pending: &Pending, user: &str) -> Response {
    let back = Back {
        issuer: &s.issuer,
        redirect_uri: &pending.r,
        state: pending.s.as_deref(),
    };
    let (Ok(code), Ok(grant_id)) = (random_token(32), random_token(16)) else {
        return back.error("server_error", "the server failed; try again");
    };
    let t = now();
    let rec = AuthCodeRecord {
        tenant_id: DEFAULT_TENANT.into(),
        code_hash: mcpgate_crypto::sha256(code.as_bytes()).to_vec(),
        grant_id,
        client_id: pending.c.clone(),
        subject: user.to_owned(),
        redirect_uri: pending.r.clone(),
        resource: pending.a.clone(),
        scope: pending.g.clone(),
        code_challenge: pending.p.clone(),
        created_at: t,
        expires_at: t + CODE_TTL,
        redeemed_at: None,
    };
    if let Err(e) = s.store.insert_auth_code(&rec).await {
        tracing::error!(error = %e, "could not store an authorization code");
        return back.error("server_error", "the server failed; try again");
    }
    tracing::info!(client_id = %pending.c, user, aud = %pending.a, scope = %pending.g, "authorization code issued");
    back.to(&[("code", &code)])
}

/// `POST /oauth/authorize`: the login and consent forms.
pub async fn post(
    State(s): State<Arc<AuthServer>>,
    ext: http::Extensions,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if body.len() > MAX_FORM {
        return pages::error(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.");
    }
    let names = ["action", "request", "csrf", "username", "password"];
    let p = match params(&body, &names) {
        Ok(p) => p,
        Err(m) => return pages::error(StatusCode::BAD_REQUEST, m),
    };
    let [action, request, csrf, username, password] =
        <[Option<String>; 5]>::try_from(p).unwrap_or_default();
    let (Some(action), Some(sealed), Some(csrf)) = (action, request, csrf) else {
        return pages::error(StatusCode::BAD_REQUEST, "The form is incomplete.");
    };
    let Some(pending) = unseal::<Pending>(&s, "pending", &sealed) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "The form is not valid. Start again from the application.",
        );
    };
    if pending.e <= now() {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "This sign-in took too long. Start again from the application.",
        );
    }
    let client = match clients::resolve(&s, &pending.c).await {
        Ok(c) => c,
        Err(e) => return shown_error(&e),
    };
    match action.as_str() {
        "login" => {
            let nonce = cookie(&headers, login_cookie_name(&s)).unwrap_or("");
            if nonce.is_empty()
                || !s
                    .forms
                    .verify(&[b"login", nonce.as_bytes(), sealed.as_bytes()], &csrf)
            {
                return pages::error(
                    StatusCode::FORBIDDEN,
                    "The sign-in form expired or did not come from this server. Start again from the application.",
                );
            }
            let addr = crate::peer_ip(&ext);
            if !s.login_attempts.admit(addr) {
                let mut r = pages::error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many sign-in attempts from your address. Wait a minute and start again from the application.",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                return r;
            }
            login(&s, &client, &pending, &sealed, addr, username, password).await
        }
        "allow" | "deny" => {
            let Some(session) = current_session(&s, &headers).await else {
                return login_page(
                    &s,
                    &client,
                    &pending,
                    &sealed,
                    Some("Your session ended. Sign in again."),
                );
            };
            if !s.forms.verify(
                &[b"consent", session.i.as_bytes(), sealed.as_bytes()],
                &csrf,
            ) {
                return pages::error(
                    StatusCode::FORBIDDEN,
                    "The consent form did not come from this sign-in. Start again from the application.",
                );
            }
            if action == "deny" {
                tracing::info!(client_id = %pending.c, user = %session.u, "consent denied");
                let _ = s
                    .record(consent_event(
                        &pending,
                        &session.u,
                        mcpgate_audit::outcome::DENIED,
                    ))
                    .await;
                return Back {
                    issuer: &s.issuer,
                    redirect_uri: &pending.r,
                    state: pending.s.as_deref(),
                }
                .error("access_denied", "the user denied the request");
            }
            let rec = ConsentRecord {
                tenant_id: DEFAULT_TENANT.into(),
                subject: session.u.clone(),
                client_id: pending.c.clone(),
                resource: pending.a.clone(),
                scope: pending.g.clone(),
                created_at: now(),
            };
            if let Err(e) = s.store.upsert_consent(&rec).await {
                tracing::error!(error = %e, "could not store consent");
            }
            tracing::info!(client_id = %pending.c, user = %session.u, aud = %pending.a, scope = %pending.g, "consent given");
            if let Err(e) = s
                .record(consent_event(
                    &pending,
                    &session.u,
                    mcpgate_audit::outcome::ALLOWED,
                ))
                .await
            {
                tracing::error!(error = %e, "audit record not written");
                return pages::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server cannot record this consent right now; try again later.",
                );
            }
            issue_code(&s, &pending, &session.u).await
        }
        _ => pages::error(StatusCode::BAD_REQUEST, "Unknown form action."),
    }
}

fn consent_event(pending: &Pending, user: &str, out: &str) -> mcpgate_audit::Event {
    mcpgate_audit::Event::new(mcpgate_audit::EventKind::ConsentGiven, out)
        .subject(user)
        .client_id(&pending.c)
        .route(&pending.a)
        .details(serde_json::json!({"scope": pending.g, "redirect_uri": pending.r}))
}

async fn login(
    s: &AuthServer,
    client: &Client,
    pending: &Pending,
    sealed: &str,
    addr: Option<IpAddr>,
    username: Option<String>,
    password: Option<String>,
) -> Response {
    const FAILED: &str =
        "Sign-in failed. Check your username and password, or wait a few minutes and try again.";
    let t = now();
    if let Some(a) = addr
        && s.login_failures.too_many(a, t)
    {
        mcpgate_crypto::password::dummy_verify();
        return login_page(s, client, pending, sealed, Some(FAILED));
    }
    let username = username.unwrap_or_default();
    let password = password.unwrap_or_default();
    let user = if mcpgate_store::valid_username(&username) && password.len() <= 1024 {
        s.store.user(DEFAULT_TENANT, &username).await.ok().flatten()
    } else {
        None
    };
    // Argon2 runs whether or not the account exists, on a blocking thread
    // (it takes tens of milliseconds).
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let pw = mcpgate_crypto::secret::Secret::new(password.into_bytes());
    let verified = tokio::task::spawn_blocking(move || match hash {
        Some(h) => std::str::from_utf8(pw.expose())
            .is_ok_and(|p| mcpgate_crypto::password::verify_password(p, &h)),
        None => {
            mcpgate_crypto::password::dummy_verify();
            false
        }
    })
    .await
    .unwrap_or(false);
    let usable = user
        .as_ref()
        .is_some_and(|u| u.disabled_at.is_none() && u.locked_until.is_none_or(|l| l <= t));
    if !(verified && usable) {
        if let Some(a) = addr {
            s.login_failures.record(a, t);
        }
        if user.is_some() {
            let a = &s.settings;
            if let Err(e) = s
                .store
                .record_login_failure(
                    DEFAULT_TENANT,
                    &username,
                    t,
                    a.lock_after_failed_logins,
                    a.lock_secs as i64,
                )
                .await
            {
                tracing::error!(error = %e, "could not record a failed login");
            }
        }
        tracing::info!(user = %username.chars().take(64).collect::<String>(), "login failed");
        let mut ev = mcpgate_audit::Event::new(
            mcpgate_audit::EventKind::LoginFailure,
            mcpgate_audit::outcome::DENIED,
        )
        .client_id(&pending.c)
        .reason(if user.is_none() {
            "unknown user"
        } else if !usable {
            "account disabled or locked"
        } else {
            "wrong password"
        });
        if mcpgate_store::valid_username(&username) {
            ev = ev.subject(&username);
        }
        if let Some(a) = addr {
            ev = ev.peer_ip(a);
        }
        let _ = s.record(ev).await;
        return login_page(s, client, pending, sealed, Some(FAILED));
    }
    if let Err(e) = s
        .store
        .record_login_success(DEFAULT_TENANT, &username, t)
        .await
    {
        tracing::warn!(error = %e, "could not record a login");
    }
    let Ok(sid) = random_token(16) else {
        return pages::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server failed; try again.",
        );
    };
    let ttl = s.settings.login_session_ttl_secs as i64;
    let session = Session {
        u: username,
        i: sid,
        t,
        e: t + ttl,
    };
    tracing::info!(user = %session.u, "login");
    let mut ev = mcpgate_audit::Event::new(
        mcpgate_audit::EventKind::LoginSuccess,
        mcpgate_audit::outcome::OK,
    )
    .subject(&session.u)
    .client_id(&pending.c);
    if let Some(a) = addr {
        ev = ev.peer_ip(a);
    }
    let _ = s.record(ev).await;
    let cookie = set_cookie(
        s,
        session_cookie_name(s),
        &seal(s, "session", &session),
        ttl,
    );
    let mut r = after_login(s, client, pending, sealed, &session, Some(cookie)).await;
    // The login nonce is spent.
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(s, login_cookie_name(s), "", 0),
    );
    r
}

/// Failed logins per source address, in memory (per replica): a sliding
/// count that resets after [`ADDRESS_WINDOW`] without failures.
#[derive(Debug, Default)]
pub struct AddressThrottle {
    map: std::sync::Mutex<std::collections::HashMap<IpAddr, (u32, i64)>>,
}

impl AddressThrottle {
    fn too_many(&self, a: IpAddr, now: i64) -> bool {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&a)
            .is_some_and(|(n, last)| *n >= ADDRESS_FAILURES && now - last < ADDRESS_WINDOW)
    }

    fn record(&self, a: IpAddr, now: i64) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 100_000 {
            m.retain(|_, (_, last)| now - *last < ADDRESS_WINDOW);
        }
        let e = m.entry(a).or_insert((0, now));
        if now - e.1 >= ADDRESS_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
        e.1 = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_3_1_repeated_authorization_parameters_are_refused() {
        assert!(params(b"client_id=a&client_id=b", &["client_id"]).is_err());
        let p = params(b"client_id=a&x=1&x=2", &["client_id"]).unwrap();
        assert_eq!(p[0].as_deref(), Some("a"));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; mcpgate_session_x=2; mcpgate_session=3"),
        );
        assert_eq!(cookie(&h, "mcpgate_session"), Some("3"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn address_throttle_counts_failures_per_address() {
        let t = AddressThrottle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..ADDRESS_FAILURES {
            assert!(!t.too_many(a, 100));
            t.record(a, 100);
        }
        assert!(t.too_many(a, 100));
        assert!(!t.too_many(b, 100));
        assert!(!t.too_many(a, 100 + ADDRESS_WINDOW));
    }
}
