//! OAuth clients: registration from the command line and authentication at
//! the token endpoint (RFC 6749 §2.3.1).

use axum::http::HeaderMap;
use base64::Engine as _;
use mcpgate_crypto::secret::ct_eq;
use mcpgate_crypto::{Unspecified, sha256};
use mcpgate_store::{ClientRecord, DEFAULT_TENANT, Store};

use crate::error::OAuthError;

/// A client just created: the secret is shown once.
#[derive(Debug)]
pub struct NewClient {
    pub record: ClientRecord,
    pub secret: Option<mcpgate_crypto::secret::Secret>,
}

/// Options of `mcpgate client add`.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub confidential: bool,
    pub grant_types: Vec<String>,
    pub scope: Option<String>,
}

use crate::random_token;

/// Builds a client record (not stored yet) with a fresh id and, for a
/// confidential client, a fresh secret of 256 bits (stored as SHA-256:
/// a random secret needs no slow hash).
pub fn build(spec: &ClientSpec, now: i64) -> Result<NewClient, Unspecified> {
    let client_id = format!("mcpc_{}", random_token(12)?);
    let (secret, secret_hash, method) = if spec.confidential {
        let s = format!("mcps_{}", random_token(32)?);
        let h = sha256(s.as_bytes()).to_vec();
        (
            Some(mcpgate_crypto::secret::Secret::new(s.into_bytes())),
            Some(h),
            "client_secret_basic",
        )
    } else {
        (None, None, "none")
    };
    Ok(NewClient {
        record: ClientRecord {
            tenant_id: DEFAULT_TENANT.into(),
            client_id,
            name: spec.name.clone(),
            token_endpoint_auth_method: method.into(),
            redirect_uris: spec.redirect_uris.clone(),
            grant_types: spec.grant_types.clone(),
            scope: spec.scope.clone(),
            jwks: None,
            secret_hash,
            previous_secret_hash: None,
            previous_secret_valid_until: None,
            origin: "cli".into(),
            created_at: now,
            last_used_at: None,
        },
        secret,
    })
}

/// A new secret for `rotate-secret`: (secret to show once, hash to store).
pub fn new_secret() -> Result<(mcpgate_crypto::secret::Secret, Vec<u8>), Unspecified> {
    let s = format!("mcps_{}", random_token(32)?);
    let h = sha256(s.as_bytes()).to_vec();
    Ok((mcpgate_crypto::secret::Secret::new(s.into_bytes()), h))
}

/// Credentials as presented at the token endpoint.
#[derive(Debug)]
pub struct Presented {
    pub client_id: String,
    secret: Option<String>,
    pub basic: bool,
}

/// Reads client credentials from `Authorization: Basic` or the form
/// (`client_secret_post`). Using both at once is refused (RFC 6749 §2.3).
pub fn presented(
    headers: &HeaderMap,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<Presented, OAuthError> {
    match headers.get(http::header::AUTHORIZATION) {
        Some(v) => {
            if form_secret.is_some() {
                return Err(OAuthError::InvalidRequest(
                    "use one client authentication method, not two",
                ));
            }
            let bad = || OAuthError::InvalidClient { basic: true };
            let s = v.to_str().map_err(|_| bad())?;
            let (scheme, b64) = s.split_once(' ').ok_or_else(bad)?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(bad());
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| bad())?;
            let raw = String::from_utf8(raw).map_err(|_| bad())?;
            let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded.
            let decode = |x: &str| {
                url::form_urlencoded::parse(format!("x={x}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            let id = decode(id).ok_or_else(bad)?;
            if form_id.is_some_and(|f| f != id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id differs from the Basic credentials",
                ));
            }
            Ok(Presented {
                client_id: id,
                secret: decode(secret),
                basic: true,
            })
        }
        None => Ok(Presented {
            client_id: form_id
                .ok_or(OAuthError::InvalidClient { basic: false })?
                .to_owned(),
            secret: form_secret.map(str::to_owned),
            basic: false,
        }),
    }
}

/// Authenticates a confidential client: the method used must be the
/// client's registered one, and the secret must match the current hash, or
/// the previous one within its grace period. Unknown clients and wrong
/// secrets are indistinguishable to the caller.
pub async fn authenticate(
    store: &dyn Store,
    p: &Presented,
    now: i64,
) -> Result<ClientRecord, OAuthError> {
    let fail = OAuthError::InvalidClient { basic: p.basic };
    let rec = store
        .client(DEFAULT_TENANT, &p.client_id)
        .await
        .map_err(|e| OAuthError::Server(e.to_string()))?;
    // Hash even when the client is unknown, so timing says nothing.
    let presented_hash = sha256(p.secret.as_deref().unwrap_or("").as_bytes());
    let Some(rec) = rec else {
        return Err(fail);
    };
    let method_ok = match rec.token_endpoint_auth_method.as_str() {
        "client_secret_basic" => p.basic,
        "client_secret_post" => !p.basic,
        _ => false,
    };
    // A client registered for Basic may also post (and vice versa) only if
    // registered so; here the registered method is enforced strictly.
    if p.secret.is_none() {
        return Err(fail);
    }
    let current = rec
        .secret_hash
        .as_deref()
        .is_some_and(|h| ct_eq(h, &presented_hash));
    let previous = rec.previous_secret_valid_until.is_some_and(|u| u > now)
        && rec
            .previous_secret_hash
            .as_deref()
            .is_some_and(|h| ct_eq(h, &presented_hash));
    if !(current || previous) {
        return Err(fail);
    }
    if !method_ok {
        return Err(fail);
    }
    Ok(rec)
}

/// A client as the authorization and token endpoints see it: registered
/// (command line or RFC 7591) or described by a metadata document.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    /// Display name; never trusted for anything but display.
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// Scopes the client may request, if restricted.
    pub scope: Option<String>,
    /// `none`, `client_secret_basic`, `client_secret_post` or `private_key_jwt`.
    pub auth_method: String,
    /// JWK Set (JSON) for `private_key_jwt`.
    pub jwks: Option<String>,
    /// For a metadata-document client: the host of its `client_id` URL.
    pub metadata_host: Option<String>,
    /// The stored record (registered clients): secrets and their hashes.
    pub record: Option<ClientRecord>,
}

impl Client {
    pub fn from_record(rec: ClientRecord) -> Self {
        Self {
            client_id: rec.client_id.clone(),
            name: rec.name.clone(),
            redirect_uris: rec.redirect_uris.clone(),
            grant_types: rec.grant_types.clone(),
            scope: rec.scope.clone(),
            auth_method: rec.token_endpoint_auth_method.clone(),
            jwks: rec.jwks.clone(),
            metadata_host: None,
            record: Some(rec),
        }
    }

    pub fn from_metadata(m: &crate::cimd::ClientMetadata) -> Self {
        let host = url::Url::parse(&m.client_id)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        let grant_types = if m.grant_types.is_empty() {
            vec!["authorization_code".to_owned()]
        } else {
            m.grant_types.clone()
        };
        Self {
            client_id: m.client_id.clone(),
            name: m
                .client_name
                .clone()
                .unwrap_or_else(|| host.clone().unwrap_or_default()),
            redirect_uris: m.redirect_uris.clone(),
            grant_types,
            scope: m.scope.clone(),
            auth_method: m.token_endpoint_auth_method.clone(),
            jwks: m.jwks.as_ref().map(|j| j.to_string()),
            metadata_host: host,
            record: None,
        }
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }
}

/// Why a client could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("unknown client")]
    Unknown,
    #[error("the client's metadata document cannot be used: {0}")]
    Metadata(String),
    #[error("storage: {0}")]
    Store(#[from] mcpgate_store::StoreError),
}

/// Finds `client_id`: a metadata-document URL is fetched (cached), anything
/// else is looked up in storage.
pub async fn resolve(s: &crate::AuthServer, client_id: &str) -> Result<Client, ResolveError> {
    if client_id.is_empty() || client_id.len() > 2048 {
        return Err(ResolveError::Unknown);
    }
    if crate::cimd::is_metadata_client_id(client_id, s.settings.danger_cimd_allow_private_addresses)
    {
        let m = s
            .cimd
            .get(client_id)
            .await
            .map_err(|e| ResolveError::Metadata(e.to_string()))?;
        return Ok(Client::from_metadata(&m));
    }
    match s.store.client(DEFAULT_TENANT, client_id).await? {
        Some(rec) => Ok(Client::from_record(rec)),
        None => Err(ResolveError::Unknown),
    }
}

/// How stale a client's stored `last_used_at` may be: it is written at
/// most once per this many seconds per client and process.
pub const LAST_USE_RESOLUTION_SECS: i64 = 60;
/// Clients remembered before the ones not written for a while are dropped.
const LAST_USE_MAX_CLIENTS: usize = 10_000;

/// When this process last wrote each client's `last_used_at`, so that a
/// busy client costs one write a minute rather than one per token request.
/// The time is only what `mcpgate client list` shows and what keeps a
/// dynamically registered client from being deleted as never used; the
/// first use in a process is written at once.
#[derive(Debug, Default)]
pub(crate) struct LastUse {
    written: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl LastUse {
    /// Whether `client_id`'s use at `now` should be written; if so, it is
    /// counted as written.
    pub(crate) fn due(&self, client_id: &str, now: i64) -> bool {
        // A map of times: consistent after every statement, so a poisoned
        // lock is still usable.
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if written
            .get(client_id)
            .is_some_and(|&at| now < at + LAST_USE_RESOLUTION_SECS)
        {
            return false;
        }
        if written.len() >= LAST_USE_MAX_CLIENTS {
            written.retain(|_, at| now < *at + LAST_USE_RESOLUTION_SECS);
        }
        written.insert(client_id.to_owned(), now);
        true
    }
}

/// `client_assertion_type` of RFC 7523 §2.2.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Authenticates the client of a token, revocation or introspection
/// request by whichever single method it used: a JWT assertion
/// (`private_key_jwt`), a secret (`client_secret_basic` or
/// `client_secret_post`, registered clients only), or none (public
/// clients, which only name themselves). The method must be the one the
/// client registered.
pub(crate) async fn authenticate_request(
    s: &crate::AuthServer,
    headers: &HeaderMap,
    form: &crate::token::Form,
) -> Result<Client, OAuthError> {
    let has_basic = headers.contains_key(http::header::AUTHORIZATION);
    if let Some(assertion) = form.client_assertion.as_deref() {
        if has_basic || form.client_secret.is_some() {
            return Err(OAuthError::InvalidRequest(
                "use one client authentication method, not two",
            ));
        }
        if form.client_assertion_type.as_deref() != Some(JWT_BEARER) {
            return Err(OAuthError::InvalidRequest(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        return crate::assertion::authenticate(s, form.client_id.as_deref(), assertion).await;
    }
    if has_basic || form.client_secret.is_some() {
        let p = presented(
            headers,
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
        )?;
        let rec = authenticate(&*s.store, &p, crate::now()).await?;
        return Ok(Client::from_record(rec));
    }
    let id = form
        .client_id
        .as_deref()
        .ok_or(OAuthError::InvalidClient { basic: false })?;
    let client = resolve(s, id).await.map_err(|e| match e {
        ResolveError::Store(e) => OAuthError::Server(e.to_string()),
        _ => OAuthError::InvalidClient { basic: false },
    })?;
    if client.auth_method != "none" {
        return Err(OAuthError::InvalidClient { basic: false });
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
        h.insert(
            http::header::AUTHORIZATION,
            format!("Basic {v}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn last_use_is_written_on_first_use_then_once_per_resolution() {
        let l = LastUse::default();
        assert!(l.due("a", 1000));
        assert!(!l.due("a", 1000));
        assert!(!l.due("a", 1000 + LAST_USE_RESOLUTION_SECS - 1));
        assert!(l.due("b", 1001));
        assert!(l.due("a", 1000 + LAST_USE_RESOLUTION_SECS));
        assert!(!l.due("a", 1000 + LAST_USE_RESOLUTION_SECS + 1));
    }

    #[test]
    fn last_use_forgets_clients_it_no_longer_needs_to_hold_back() {
        let l = LastUse::default();
        for i in 0..LAST_USE_MAX_CLIENTS {
            assert!(l.due(&format!("c{i}"), 0));
        }
        // Full: the entries that no longer hold anything back are dropped.
        assert!(l.due("new", LAST_USE_RESOLUTION_SECS));
        assert_eq!(l.written.lock().unwrap().len(), 1);
        assert!(!l.due("new", LAST_USE_RESOLUTION_SECS));
    }

    #[test]
    fn rfc6749_2_3_1_basic_credentials_are_form_decoded() {
        let p = presented(&basic("my%20client", "a%3Ab"), None, None).unwrap();
        assert_eq!(p.client_id, "my client");
        assert_eq!(p.secret.as_deref(), Some("a:b"));
        assert!(p.basic);
    }

    #[test]
    fn rfc6749_2_3_two_methods_at_once_are_refused() {
        assert!(matches!(
            presented(&basic("c", "s"), None, Some("s")),
            Err(OAuthError::InvalidRequest(_))
        ));
    }

    #[test]
    fn post_credentials_are_read_from_the_form() {
        let p = presented(&HeaderMap::new(), Some("c"), Some("s")).unwrap();
        assert_eq!(p.client_id, "c");
        assert!(!p.basic);
        assert!(matches!(
            presented(&HeaderMap::new(), None, None),
            Err(OAuthError::InvalidClient { basic: false })
        ));
    }
}
