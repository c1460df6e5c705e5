//! Token revocation (RFC 7009) and introspection (RFC 7662).
//!
//! Both authenticate the client first, the way the token endpoint does, and
//! only ever act on tokens issued to that same client: another client's
//! token is neither revoked nor described (it introspects as inactive).
//! Introspection needs a confidential client: a public client proves
//! nothing about itself. Refresh tokens are recognised by their prefix;
//! anything else is treated as one of our access tokens and verified
//! against our own keys.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use mcpgate_crypto::jwt::{self, Claims, KeySource as _};
use mcpgate_store::DEFAULT_TENANT;
use serde_json::json;

use crate::error::OAuthError;
use crate::token::{REFRESH_PREFIX, parse_form};
use crate::{AuthServer, clients, now};

fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// Verifies one of our access tokens: signature, issuer, expiry.
fn our_access_token(s: &AuthServer, token: &str) -> Option<Claims> {
    let header = jwt::peek_header(token, &jwt::ALLOWED).ok()?;
    let claims = jwt::verify_signature(token, &header, &s.keys.jwks()).ok()?;
    let t = now() as u64;
    if claims.iss != s.issuer || claims.exp <= t {
        return None;
    }
    Some(claims)
}

/// `POST /oauth/revoke`.
pub async fn revoke(
    State(s): State<Arc<AuthServer>>,
    ext: http::Extensions,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = s.admit_token_request(&ext) {
        return e.into_response();
    }
    let r = async {
        let form = parse_form(&headers, &body)?;
        let client = clients::authenticate_request(&s, &headers, &form).await?;
        let token = form
            .token
            .as_deref()
            .ok_or(OAuthError::InvalidRequest("token is required"))?;
        let t = now();
        if token.starts_with(REFRESH_PREFIX) {
            let hash = mcpgate_crypto::sha256(token.as_bytes());
            if let Some(g) = s
                .store
                .grant_of_refresh_token(DEFAULT_TENANT, &hash)
                .await
                .map_err(|e| OAuthError::Server(e.to_string()))?
                && g.client_id == client.client_id
            {
                s.revoke_grant(&g.grant_id, t).await?;
                tracing::info!(client_id = %client.client_id, grant = %g.grant_id, "grant revoked (refresh token revocation)");
                s.record(
                    crate::token::issued(
                        mcpgate_audit::EventKind::TokenRevoked,
                        &g.subject,
                        &g.client_id,
                        &g.resource,
                    )
                    .details(json!({"token_type": "refresh_token", "grant": g.grant_id})))
                .await
                .map_err(|e| OAuthError::Server(format!("audit: {e}")))?;
            }
        } else if let Some(c) = our_access_token(&s, token)
            && c.client_id.as_deref() == Some(client.client_id.as_str())
            && let Some(jti) = c.jti.as_deref()
        {
            s.store
                .revoke_access_token(DEFAULT_TENANT, jti, t, c.exp as i64)
                .await
                .map_err(|e| OAuthError::Server(e.to_string()))?;
            s.revoked.add_jti(jti, t);
            tracing::info!(client_id = %client.client_id, "access token revoked");
            s.record(
                crate::token::issued(
                    mcpgate_audit::EventKind::TokenRevoked,
                    c.sub.as_deref().unwrap_or(""),
                    &client.client_id,
                    c.aud.first().map_or("", String::as_str),
                )
                .details(json!({"token_type": "access_token", "jti": jti})))
            .await
            .map_err(|e| OAuthError::Server(format!("audit: {e}")))?;
        }
        // RFC 7009 §2.2: 200 whether or not there was anything to revoke.
        Ok::<_, OAuthError>(no_store(axum::http::StatusCode::OK.into_response()))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /oauth/introspect`.
pub async fn introspect(
    State(s): State<Arc<AuthServer>>,
    ext: http::Extensions,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = s.admit_token_request(&ext) {
        return e.into_response();
    }
    let r = async {
        let form = parse_form(&headers, &body)?;
        let client = clients::authenticate_request(&s, &headers, &form).await?;
        if client.auth_method == "none" {
            return Err(OAuthError::InvalidClient { basic: false });
        }
        let token = form
            .token
            .as_deref()
            .ok_or(OAuthError::InvalidRequest("token is required"))?;
        let inactive = json!({ "active": false });
        let doc = if token.starts_with(REFRESH_PREFIX) {
            let hash = mcpgate_crypto::sha256(token.as_bytes());
            // Active only while current: not rotated, not expired, its
            // grant not revoked, and the asking client's.
            let err = |e: mcpgate_store::StoreError| OAuthError::Server(e.to_string());
            let current = s
                .store
                .refresh_token(DEFAULT_TENANT, &hash)
                .await
                .map_err(err)?
                .filter(|t| t.rotated_at.is_none() && t.expires_at > now());
            let grant = match current {
                Some(_) => s
                    .store
                    .grant_of_refresh_token(DEFAULT_TENANT, &hash)
                    .await
                    .map_err(err)?,
                None => None,
            };
            match (current, grant) {
                (Some(t), Some(g)) if g.client_id == client.client_id && g.revoked_at.is_none() => {
                    json!({
                        "active": true,
                        "token_type": "refresh_token",
                        "client_id": g.client_id,
                        "sub": g.subject,
                        "aud": g.resource,
                        "scope": g.scope,
                        "iss": s.issuer,
                        "exp": t.expires_at,
                        "iat": t.created_at,
                    })
                }
                _ => inactive,
            }
        } else {
            match our_access_token(&s, token) {
                Some(c)
                    if c.client_id.as_deref() == Some(client.client_id.as_str())
                        && !s.revoked.is_revoked(&c) =>
                {
                    json!({
                        "active": true,
                        "token_type": "Bearer",
                        "client_id": c.client_id,
                        "sub": c.sub,
                        "aud": c.aud,
                        "scope": c.scope.to_space_delimited(),
                        "iss": c.iss,
                        "exp": c.exp,
                        "iat": c.iat,
                        "jti": c.jti,
                    })
                }
                _ => inactive,
            }
        };
        Ok(no_store(axum::Json(doc).into_response()))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
