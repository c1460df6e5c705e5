//! The token endpoint (RFC 6749 §3.2). Grants so far: `client_credentials`
//! (§4.4) for confidential clients.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use mcpgate_core::ScopeSet;
use serde::Serialize;

use crate::error::OAuthError;
use crate::{AuthServer, clients};

/// Largest token request body read.
const MAX_FORM: usize = 16 * 1024;

#[derive(Debug, Serialize)]
struct AccessTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    scope: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The form, with every parameter that may appear at most once checked for
/// repetition (RFC 6749 §3.2: "parameters MUST NOT be included more than
/// once").
#[derive(Debug, Default)]
struct Form {
    grant_type: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn parse_form(body: &[u8]) -> Result<Form, OAuthError> {
    let mut f = Form::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            "grant_type" => &mut f.grant_type,
            "scope" => &mut f.scope,
            "resource" => &mut f.resource,
            "client_id" => &mut f.client_id,
            "client_secret" => &mut f.client_secret,
            _ => continue,
        };
        if slot.is_some() {
            return Err(OAuthError::InvalidRequest("a parameter is repeated"));
        }
        *slot = Some(v.into_owned());
    }
    Ok(f)
}

pub async fn token(
    State(s): State<Arc<AuthServer>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match run(&s, &headers, &body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "token request refused");
            e.into_response()
        }
    }
}

async fn run(s: &AuthServer, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
    let ct_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !ct_ok {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_FORM {
        return Err(OAuthError::InvalidRequest("request too large"));
    }
    let form = parse_form(body)?;
    let grant = form
        .grant_type
        .as_deref()
        .ok_or(OAuthError::InvalidRequest("grant_type is required"))?;
    if grant != "client_credentials" {
        return Err(OAuthError::UnsupportedGrantType);
    }
    let t = now();
    let presented = clients::presented(
        headers,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )?;
    let client = clients::authenticate(&*s.store, &presented, t).await?;
    if !client.grant_types.iter().any(|g| g == "client_credentials") {
        return Err(OAuthError::UnauthorizedClient(
            "this client may not use the client_credentials grant",
        ));
    }

    // RFC 8707: the audience is the resource asked for. Without one, a
    // server with exactly one protected resource uses it; otherwise the
    // client must say.
    let resource =
        match form.resource.as_deref() {
            Some(r) => s.resources.iter().find(|x| x.uri.as_str() == r).ok_or(
                OAuthError::InvalidTarget("resource is not a protected MCP server here"),
            )?,
            None => match s.resources.as_slice() {
                [only] => only,
                _ => {
                    return Err(OAuthError::InvalidTarget(
                        "resource is required: this server protects several MCP servers",
                    ));
                }
            },
        };
    let allowed = match client.scope.as_deref() {
        Some(cs) => {
            let cs = ScopeSet::parse(cs)
                .map_err(|_| OAuthError::Server("stored client scope".into()))?;
            resource
                .scopes
                .iter()
                .filter(|x| cs.contains(x))
                .cloned()
                .collect::<ScopeSet>()
        }
        None => resource.scopes.clone(),
    };
    let granted = match form.scope.as_deref() {
        Some(req) => {
            let req =
                ScopeSet::parse(req).map_err(|_| OAuthError::InvalidScope("malformed scope"))?;
            let g: ScopeSet = req
                .iter()
                .filter(|x| allowed.contains(x))
                .cloned()
                .collect();
            if g.is_empty() && !req.is_empty() {
                return Err(OAuthError::InvalidScope(
                    "none of the requested scopes may be granted to this client for this resource",
                ));
            }
            g
        }
        None => allowed,
    };
    let scope = granted.to_space_delimited();
    let mut jti = [0u8; 16];
    mcpgate_crypto::random_bytes(&mut jti).map_err(|e| OAuthError::Server(e.to_string()))?;
    let claims = AccessTokenClaims {
        iss: &s.issuer,
        sub: &client.client_id,
        aud: resource.uri.as_str(),
        client_id: &client.client_id,
        scope: &scope,
        iat: t,
        exp: t + s.access_token_ttl as i64,
        jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
    };
    let token = s
        .keys
        .signer()
        .sign_access_token(&claims)
        .map_err(|e| OAuthError::Server(e.to_string()))?;
    if let Err(e) = s
        .store
        .touch_client(&client.tenant_id, &client.client_id, t)
        .await
    {
        tracing::warn!(error = %e, "could not record client use");
    }
    tracing::info!(client_id = %client.client_id, aud = %resource.uri, scope = %scope, "issued access token (client_credentials)");
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": s.access_token_ttl,
        "scope": scope,
    });
    let mut r = axum::Json(body).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_3_2_repeated_parameters_are_refused() {
        assert!(parse_form(b"grant_type=client_credentials&grant_type=password").is_err());
        let f =
            parse_form(b"grant_type=client_credentials&scope=a+b&resource=https%3A%2F%2Fx%2Fmcp")
                .unwrap();
        assert_eq!(f.scope.as_deref(), Some("a b"));
        assert_eq!(f.resource.as_deref(), Some("https://x/mcp"));
    }
}
