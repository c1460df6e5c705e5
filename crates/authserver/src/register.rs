//! Dynamic Client Registration (RFC 7591), for MCP clients that predate
//! Client ID Metadata Documents. On by default
//! (`[authorization_server] dynamic_client_registration`).
//!
//! Every field is validated, unknown fields are ignored (RFC 7591 §2), and
//! what the server does not support is refused rather than silently
//! changed, except grant types it does not offer, which are dropped (a
//! client listing `device_code` besides `authorization_code` still works).
//! Redirect URIs must be https, or http on a loopback host; no fragments,
//! wildcards, user info or other schemes ([`crate::redirect`]). The
//! `application_type` (OpenID Connect Registration) must be `web` or
//! `native`; it is accepted for both kinds of redirect URI, because MCP
//! desktop clients commonly omit it (so it defaults to `web`) while using
//! loopback redirects. Confidential registrations (`client_secret_basic`,
//! `client_secret_post`) get a secret once, stored as its hash.
//!
//! Registrations are limited per source address
//! (`registrations_per_hour`, GCRA), and a registration never used is
//! deleted after `unused_registration_ttl_secs`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use mcpgate_core::ScopeSet;
use mcpgate_store::{ClientRecord, DEFAULT_TENANT};
use serde::Deserialize;
use serde_json::json;

use crate::error::OAuthError;
use crate::{AuthServer, now, random_token, redirect};

/// Largest registration request read.
const MAX_BODY: usize = 16 * 1024;
const MAX_REDIRECT_URIS: usize = 10;
const MAX_NAME: usize = 200;

/// The registration request; fields not listed are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Request {
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    scope: Option<String>,
    application_type: Option<String>,
    jwks: Option<serde_json::Value>,
    jwks_uri: Option<String>,
}

/// Requests per source address, as GCRA (governor), per replica: used
/// for registrations (per hour), token requests and login attempts (per
/// minute). Unknown addresses (no peer recorded) are not limited.
#[derive(Debug)]
pub struct AddressLimiter {
    limiter: Option<governor::DefaultKeyedRateLimiter<IpAddr>>,
}

impl AddressLimiter {
    /// At most `n` per `window` (burst `n`); `n = 0` means unlimited.
    pub fn new(n: u32, window: std::time::Duration) -> Self {
        let limiter = std::num::NonZeroU32::new(n)
            .and_then(|burst| {
                governor::Quota::with_period(window / n).map(|q| q.allow_burst(burst))
            })
            .map(governor::RateLimiter::keyed);
        Self { limiter }
    }

    /// Counts a request from `a`; `false` if over the limit.
    pub fn admit(&self, a: Option<IpAddr>) -> bool {
        match (&self.limiter, a) {
            (Some(l), Some(a)) => {
                if l.len() > 100_000 {
                    l.retain_recent();
                }
                l.check_key(&a).is_ok()
            }
            _ => true,
        }
    }
}

/// `POST /oauth/register`.
pub async fn register(
    State(s): State<Arc<AuthServer>>,
    ext: http::Extensions,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match run(&s, crate::peer_ip(&ext), &headers, &body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "registration refused");
            e.into_response()
        }
    }
}

fn validate(req: Request) -> Result<(ClientRecord, bool), OAuthError> {
    let method = req
        .token_endpoint_auth_method
        .unwrap_or_else(|| "client_secret_basic".to_owned());
    if !matches!(
        method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post" | "private_key_jwt"
    ) {
        return Err(OAuthError::InvalidClientMetadata(
            "token_endpoint_auth_method must be none, client_secret_basic, client_secret_post or private_key_jwt",
        ));
    }
    let confidential = method != "none";
    let jwks = match (&req.jwks, &req.jwks_uri) {
        (_, Some(_)) => {
            return Err(OAuthError::InvalidClientMetadata(
                "jwks_uri is not supported; register the keys inline as jwks",
            ));
        }
        (Some(j), None) => {
            let text = j.to_string();
            let parsed = mcpgate_crypto::jwt::Jwks::parse(text.as_bytes())
                .map_err(|_| OAuthError::InvalidClientMetadata("jwks is not a JWK Set"))?;
            if parsed.is_empty() {
                return Err(OAuthError::InvalidClientMetadata(
                    "jwks holds no usable public key",
                ));
            }
            Some(text)
        }
        (None, None) => None,
    };
    if method == "private_key_jwt" && jwks.is_none() {
        return Err(OAuthError::InvalidClientMetadata(
            "private_key_jwt needs the client's public keys (jwks)",
        ));
    }
    let requested = req
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
    let mut grants: Vec<String> = Vec::new();
    for g in requested {
        if matches!(
            g.as_str(),
            "authorization_code" | "refresh_token" | "client_credentials"
        ) && !grants.contains(&g)
        {
            grants.push(g);
        }
    }
    if grants.is_empty() {
        return Err(OAuthError::InvalidClientMetadata(
            "grant_types names no grant this server supports (authorization_code, refresh_token, client_credentials)",
        ));
    }
    if grants.iter().any(|g| g == "client_credentials") && !confidential {
        return Err(OAuthError::InvalidClientMetadata(
            "client_credentials needs a confidential client",
        ));
    }
    if let Some(rt) = &req.response_types
        && rt.iter().any(|r| r != "code")
    {
        return Err(OAuthError::InvalidClientMetadata(
            "response_types may only contain code",
        ));
    }
    match req.application_type.as_deref() {
        None | Some("web" | "native") => {}
        Some(_) => {
            return Err(OAuthError::InvalidClientMetadata(
                "application_type must be web or native",
            ));
        }
    }
    let redirect_uris = req.redirect_uris.unwrap_or_default();
    if grants.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
        return Err(OAuthError::InvalidRedirectUri(
            "redirect_uris is required for the authorization_code grant",
        ));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::InvalidRedirectUri("too many redirect_uris"));
    }
    for r in &redirect_uris {
        redirect::check_registrable(r).map_err(OAuthError::InvalidRedirectUri)?;
    }
    let name: String = req
        .client_name
        .unwrap_or_else(|| "Unnamed client".to_owned())
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    if let Some(sc) = &req.scope
        && (sc.len() > 2048 || ScopeSet::parse(sc).is_err())
    {
        return Err(OAuthError::InvalidClientMetadata("scope is malformed"));
    }
    let rec = ClientRecord {
        tenant_id: DEFAULT_TENANT.into(),
        client_id: String::new(),
        name,
        token_endpoint_auth_method: method,
        redirect_uris,
        grant_types: grants,
        scope: req.scope,
        jwks,
        secret_hash: None,
        previous_secret_hash: None,
        previous_secret_valid_until: None,
        origin: "dcr".into(),
        created_at: 0,
        last_used_at: None,
    };
    let needs_secret = matches!(
        rec.token_endpoint_auth_method.as_str(),
        "client_secret_basic" | "client_secret_post"
    );
    Ok((rec, needs_secret))
}

async fn run(
    s: &AuthServer,
    addr: Option<IpAddr>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json_ct {
        return Err(OAuthError::InvalidClientMetadata(
            "the body must be application/json",
        ));
    }
    if body.len() > MAX_BODY {
        return Err(OAuthError::InvalidClientMetadata("registration too large"));
    }
    let req: Request = serde_json::from_slice(body)
        .map_err(|_| OAuthError::InvalidClientMetadata("the body is not a valid registration"))?;
    let (mut rec, needs_secret) = validate(req)?;
    let t = now();
    if !s.registrations.admit(addr) {
        return Err(OAuthError::SlowDown(600));
    }
    rec.client_id = format!(
        "mcpc_{}",
        random_token(12).map_err(|e| OAuthError::Server(e.to_string()))?
    );
    rec.created_at = t;
    let secret = if needs_secret {
        let (secret, hash) =
            crate::clients::new_secret().map_err(|e| OAuthError::Server(e.to_string()))?;
        rec.secret_hash = Some(hash);
        Some(secret)
    } else {
        None
    };
    s.store
        .insert_client(&rec)
        .await
        .map_err(|e| OAuthError::Server(e.to_string()))?;
    tracing::info!(client_id = %rec.client_id, name = %rec.name, method = %rec.token_endpoint_auth_method, "client registered (RFC 7591)");
    let mut ev = mcpgate_audit::Event::new(
        mcpgate_audit::EventKind::ClientRegistered,
        mcpgate_audit::outcome::OK,
    )
    .client_id(&rec.client_id)
    .details(
        json!({"origin": "dcr", "name": rec.name, "redirect_uris": rec.redirect_uris,
                    "token_endpoint_auth_method": rec.token_endpoint_auth_method}),
    );
    if let Some(a) = addr {
        ev = ev.peer_ip(a);
    }
    s.record(ev)
        .await
        .map_err(|e| OAuthError::Server(format!("audit: {e}")))?;
    let mut doc = json!({
        "client_id": rec.client_id,
        "client_id_issued_at": t,
        "client_name": rec.name,
        "redirect_uris": rec.redirect_uris,
        "grant_types": rec.grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": rec.token_endpoint_auth_method,
    });
    if let Some(sc) = &rec.scope {
        doc["scope"] = sc.clone().into();
    }
    if let Some(secret) = secret {
        doc["client_secret"] = String::from_utf8_lossy(secret.expose()).into_owned().into();
        doc["client_secret_expires_at"] = 0.into();
    }
    let mut r = (StatusCode::CREATED, axum::Json(doc)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> Result<(ClientRecord, bool), OAuthError> {
        validate(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn rfc7591_2_defaults_and_confidential_registration() {
        let (r, secret) = req(json!({"redirect_uris": ["https://chatgpt.com/cb"]})).unwrap();
        assert_eq!(r.token_endpoint_auth_method, "client_secret_basic");
        assert!(secret);
        assert_eq!(r.grant_types, vec!["authorization_code"]);
        let (r, secret) = req(json!({
            "redirect_uris": ["http://127.0.0.1:33418/"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
            "application_type": "native",
            "unknown_field": {"x": 1}
        }))
        .unwrap();
        assert!(!secret);
        assert_eq!(r.grant_types, vec!["authorization_code", "refresh_token"]);
    }

    #[test]
    fn rfc7591_3_2_2_bad_metadata_is_refused() {
        for (bad, code) in [
            (
                json!({"redirect_uris": ["javascript:alert(1)"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb#frag"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["http://evil.example/cb"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["https://*.example/cb"]}),
                "invalid_redirect_uri",
            ),
            (json!({}), "invalid_redirect_uri"),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_jwt"}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "application_type": "service"}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
                "invalid_client_metadata",
            ),
        ] {
            let e = req(bad.clone())
                .err()
                .unwrap_or_else(|| panic!("accepted {bad}"));
            assert!(e.to_string().starts_with(code), "{bad}: {e}");
        }
    }

    #[test]
    fn requests_are_limited_per_address() {
        let t = AddressLimiter::new(2, std::time::Duration::from_secs(3600));
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(t.admit(Some(a)));
        assert!(t.admit(Some(a)));
        assert!(!t.admit(Some(a)));
        assert!(t.admit(Some("192.0.2.10".parse().unwrap())));
        assert!(t.admit(None));
        let off = AddressLimiter::new(0, std::time::Duration::from_secs(60));
        for _ in 0..100 {
            assert!(off.admit(Some(a)));
        }
    }
}
