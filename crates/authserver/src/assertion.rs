//! `private_key_jwt` client authentication (RFC 7523 §2.2, §3; OpenID
//! Connect Core §9).
//!
//! The client signs a short-lived JWT with its private key; we verify it
//! against the client's registered JWK Set (inline `jwks` of a registered
//! client or of its metadata document; keys are never taken from the
//! assertion's header). Checks: `iss` and `sub` both equal the client id;
//! `aud` contains the issuer or the token endpoint URL; `exp` present, not
//! past (60 s skew) and at most [`MAX_LIFETIME`] ahead; `jti` present and
//! never seen before from this client while the assertion is valid
//! (recorded in storage, so replicas share it).

use base64::Engine as _;
use mcpgate_crypto::jwt::{self, Jwks};
use mcpgate_store::DEFAULT_TENANT;

use crate::clients::{self, Client, ResolveError};
use crate::error::OAuthError;
use crate::{AuthServer, TOKEN_PATH, now};

/// An assertion may not be valid for longer than this from now.
pub const MAX_LIFETIME: i64 = 600;
const LEEWAY: i64 = 60;

/// The `sub` of an assertion, read before verification only to find which
/// client's keys verify it.
fn unverified_subject(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Sub {
        sub: String,
    }
    serde_json::from_slice::<Sub>(&bytes).ok().map(|s| s.sub)
}

pub(crate) async fn authenticate(
    s: &AuthServer,
    client_id: Option<&str>,
    assertion: &str,
) -> Result<Client, OAuthError> {
    let fail = OAuthError::InvalidClient { basic: false };
    if assertion.len() > jwt::MAX_TOKEN_LEN {
        return Err(fail);
    }
    let sub = unverified_subject(assertion).ok_or(OAuthError::InvalidClient { basic: false })?;
    if client_id.is_some_and(|c| c != sub) {
        return Err(fail);
    }
    let client = clients::resolve(s, &sub).await.map_err(|e| match e {
        ResolveError::Store(e) => OAuthError::Server(e.to_string()),
        _ => OAuthError::InvalidClient { basic: false },
    })?;
    if client.auth_method != "private_key_jwt" {
        return Err(fail);
    }
    let jwks = client
        .jwks
        .as_deref()
        .and_then(|j| Jwks::parse(j.as_bytes()).ok())
        .ok_or(OAuthError::InvalidClient { basic: false })?;
    let header = jwt::peek_header(assertion, &jwt::ALLOWED)
        .map_err(|_| OAuthError::InvalidClient { basic: false })?;
    let claims = jwt::verify_signature(assertion, &header, &jwks)
        .map_err(|_| OAuthError::InvalidClient { basic: false })?;
    let t = now();
    let token_endpoint = format!("{}{TOKEN_PATH}", s.issuer);
    claims
        .check(&jwt::Expectations {
            issuer: &client.client_id,
            audiences: &[s.issuer.as_str(), token_endpoint.as_str()],
            now: t as u64,
            leeway: LEEWAY as u64,
        })
        .map_err(|_| OAuthError::InvalidClient { basic: false })?;
    if claims.sub.as_deref() != Some(client.client_id.as_str()) {
        return Err(fail);
    }
    let exp = claims.exp as i64;
    if exp > t + MAX_LIFETIME + LEEWAY {
        return Err(fail);
    }
    let jti = claims
        .jti
        .as_deref()
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(OAuthError::InvalidClient { basic: false })?;
    let fresh = s
        .store
        .record_assertion_jti(DEFAULT_TENANT, &client.client_id, jti, exp + LEEWAY, t)
        .await
        .map_err(|e| OAuthError::Server(e.to_string()))?;
    if !fresh {
        tracing::warn!(client_id = %client.client_id, "client assertion replayed");
        return Err(fail);
    }
    Ok(client)
}
