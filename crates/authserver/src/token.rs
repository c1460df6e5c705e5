//! The token endpoint (OAuth 2.1 §3.2): the `authorization_code` grant
//! with PKCE, `refresh_token` with rotation and reuse detection, and
//! `client_credentials` for confidential clients.
//!
//! Codes and refresh tokens are random 256-bit strings stored only as their
//! SHA-256. A code is redeemed by one atomic conditional update: of any
//! number of concurrent redemptions one wins; any later one (a replay)
//! revokes the grant the first one created, with every refresh token and,
//! at the gateway, every access token of it (`gid` claim).
//!
//! Refresh tokens rotate on every use, for every client. Presenting a
//! rotated token revokes the whole grant (OAuth 2.1 §4.3.1, RFC 9700
//! §4.14.2). Concurrent refreshes with one token are treated the same way:
//! one rotates, the others are reuse and revoke the grant, including the
//! token the winner just received. A legitimate client that retries a
//! refresh whose response it lost, or refreshes from two threads at once,
//! therefore has to sign in again; we accept that rather than a grace
//! window in which a stolen token could be replayed undetected (a grace
//! window that returns the same successor would also need that successor
//! stored in a recoverable form). `mcpgate connect` serialises its
//! refreshes with a lock for this reason.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderValue, header};
use mcpgate_core::ScopeSet;
use mcpgate_store::{
    CodeRedemption, DEFAULT_TENANT, GrantRecord, RefreshRotation, RefreshTokenRecord,
};
use serde::Serialize;

use crate::clients::{self, Client};
use crate::error::OAuthError;
use crate::{AuthServer, now, random_token};

/// Largest token request body read.
pub(crate) const MAX_FORM: usize = 16 * 1024;
/// Prefix of refresh tokens (lets the revocation endpoint tell them apart
/// and secret scanners find them).
pub const REFRESH_PREFIX: &str = "mcpr_";

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
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<&'a str>,
}

/// The form, with every parameter checked for repetition (RFC 6749 §3.2:
/// "parameters MUST NOT be included more than once").
#[derive(Debug, Default)]
pub(crate) struct Form {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion: Option<String>,
    pub client_assertion_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub token: Option<String>,
    pub token_type_hint: Option<String>,
}

pub(crate) fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<Form, OAuthError> {
    let ct_ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !ct_ok {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_FORM {
        return Err(OAuthError::InvalidRequest("request too large"));
    }
    let mut f = Form::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        let slot = match k.as_ref() {
            "grant_type" => &mut f.grant_type,
            "scope" => &mut f.scope,
            "resource" => &mut f.resource,
            "client_id" => &mut f.client_id,
            "client_secret" => &mut f.client_secret,
            "client_assertion" => &mut f.client_assertion,
            "client_assertion_type" => &mut f.client_assertion_type,
            "code" => &mut f.code,
            "redirect_uri" => &mut f.redirect_uri,
            "code_verifier" => &mut f.code_verifier,
            "refresh_token" => &mut f.refresh_token,
            "token" => &mut f.token,
            "token_type_hint" => &mut f.token_type_hint,
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
    ext: http::Extensions,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = s.admit_token_request(&ext) {
        return e.into_response();
    }
    match run(&s, &headers, &body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(error = %e, "token request refused");
            e.into_response()
        }
    }
}

async fn run(s: &AuthServer, headers: &HeaderMap, body: &[u8]) -> Result<Response, OAuthError> {
    let form = parse_form(headers, body)?;
    let grant = form
        .grant_type
        .as_deref()
        .ok_or(OAuthError::InvalidRequest("grant_type is required"))?;
    if !matches!(
        grant,
        "client_credentials" | "authorization_code" | "refresh_token"
    ) {
        return Err(OAuthError::UnsupportedGrantType);
    }
    let client = clients::authenticate_request(s, headers, &form).await?;
    if !client.allows_grant(grant) {
        return Err(OAuthError::UnauthorizedClient(
            "this client is not registered for this grant type",
        ));
    }
    let r = match grant {
        "client_credentials" => client_credentials(s, &client, &form).await?,
        "authorization_code" => authorization_code(s, &client, &form).await?,
        _ => refresh(s, &client, &form).await?,
    };
    if let Some(rec) = &client.record {
        let t = now();
        if s.last_use.due(&rec.client_id, t) {
            // Off the response's path: the time is informational (see
            // `LastUse`), and a failure only costs its accuracy.
            let store = s.store.clone();
            let (tenant, client_id) = (rec.tenant_id.clone(), rec.client_id.clone());
            tokio::spawn(async move {
                if let Err(e) = store.touch_client(&tenant, &client_id, t).await {
                    tracing::warn!(error = %e, "could not record client use");
                }
            });
        }
    }
    Ok(r)
}

/// Signs an RFC 9068 access token.
fn access_token(
    s: &AuthServer,
    sub: &str,
    client_id: &str,
    aud: &str,
    scope: &str,
    gid: Option<&str>,
) -> Result<String, OAuthError> {
    let t = now();
    let mut jti = [0u8; 16];
    mcpgate_crypto::random_bytes(&mut jti).map_err(|e| OAuthError::Server(e.to_string()))?;
    let claims = AccessTokenClaims {
        iss: &s.issuer,
        sub,
        aud,
        client_id,
        scope,
        iat: t,
        exp: t + s.access_token_ttl as i64,
        jti: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti),
        gid,
    };
    s.keys
        .signer()
        .sign_access_token(&claims)
        .map_err(|e| OAuthError::Server(e.to_string()))
}

fn response(
    s: &AuthServer,
    access_token: String,
    scope: &str,
    refresh_token: Option<String>,
) -> Response {
    let mut body = serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": s.access_token_ttl,
        "scope": scope,
    });
    if let Some(rt) = refresh_token {
        body["refresh_token"] = rt.into();
    }
    let mut r = axum::Json(body).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// Scopes a client may have on a resource: the resource's, narrowed by
/// the client's registered scope if it has one.
fn allowed_scopes(client: &Client, resource: &crate::Resource) -> Result<ScopeSet, OAuthError> {
    match client.scope.as_deref() {
        Some(cs) => {
            let cs = ScopeSet::parse(cs)
                .map_err(|_| OAuthError::Server("stored client scope".into()))?;
            Ok(resource
                .scopes
                .iter()
                .filter(|x| cs.contains(x))
                .cloned()
                .collect())
        }
        None => Ok(resource.scopes.clone()),
    }
}

/// `client_credentials` (OAuth 2.1 §4.2): the client acts for itself.
async fn client_credentials(
    s: &AuthServer,
    client: &Client,
    form: &Form,
) -> Result<Response, OAuthError> {
    if client.auth_method == "none" {
        return Err(OAuthError::UnauthorizedClient(
            "public clients may not use the client_credentials grant",
        ));
    }
    let resource = s
        .pick_resource(form.resource.as_deref())
        .map_err(OAuthError::InvalidTarget)?;
    let allowed = allowed_scopes(client, resource)?;
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
    let token = access_token(
        s,
        &client.client_id,
        &client.client_id,
        resource.uri.as_str(),
        &scope,
        None,
    )?;
    tracing::info!(client_id = %client.client_id, aud = %resource.uri, scope = %scope, "issued access token (client_credentials)");
    s.record(
        issued(
            mcpgate_audit::EventKind::TokenIssued,
            &client.client_id,
            &client.client_id,
            resource.uri.as_str(),
        )
        .details(serde_json::json!({"grant_type": "client_credentials", "scope": scope})),
    )
    .await
    .map_err(|e| OAuthError::Server(format!("audit: {e}")))?;
    Ok(response(s, token, &scope, None))
}

/// An audit event about tokens of `client_id` for `subject` on `resource`.
pub(crate) fn issued(
    kind: mcpgate_audit::EventKind,
    subject: &str,
    client_id: &str,
    resource: &str,
) -> mcpgate_audit::Event {
    let out = match kind {
        mcpgate_audit::EventKind::CodeReplayDetected
        | mcpgate_audit::EventKind::RefreshReuseDetected => mcpgate_audit::outcome::DETECTED,
        _ => mcpgate_audit::outcome::OK,
    };
    mcpgate_audit::Event::new(kind, out)
        .subject(subject)
        .client_id(client_id)
        .route(resource)
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

const BAD_CODE: &str = "the authorization code is invalid, expired or already used";

/// `authorization_code` (OAuth 2.1 §4.1.3).
async fn authorization_code(
    s: &AuthServer,
    client: &Client,
    form: &Form,
) -> Result<Response, OAuthError> {
    let code = form
        .code
        .as_deref()
        .ok_or(OAuthError::InvalidRequest("code is required"))?;
    let verifier = form.code_verifier.as_deref().unwrap_or("");
    if !valid_verifier(verifier) {
        return Err(OAuthError::InvalidGrant(
            "code_verifier is missing or malformed (PKCE S256 is required)",
        ));
    }
    let t = now();
    let hash = mcpgate_crypto::sha256(code.as_bytes());
    let rec = match s
        .store
        .redeem_auth_code(DEFAULT_TENANT, &hash, t)
        .await
        .map_err(|e| OAuthError::Server(e.to_string()))?
    {
        CodeRedemption::Fresh(rec) => rec,
        CodeRedemption::Replayed(rec) => {
            // RFC 9700 §4.5.3 / OAuth 2.1 §4.1.3: a replayed code revokes
            // what was issued from it.
            s.revoke_grant(&rec.grant_id, t).await?;
            tracing::warn!(client_id = %rec.client_id, grant = %rec.grant_id, "authorization code replayed: grant revoked");
            let _ = s
                .record(
                    issued(
                        mcpgate_audit::EventKind::CodeReplayDetected,
                        &rec.subject,
                        &rec.client_id,
                        &rec.resource,
                    )
                    .reason("authorization code redeemed twice: grant revoked")
                    .details(serde_json::json!({"grant": rec.grant_id})),
                )
                .await;
            return Err(OAuthError::InvalidGrant(BAD_CODE));
        }
        CodeRedemption::Unknown => return Err(OAuthError::InvalidGrant(BAD_CODE)),
    };
    // The code is spent from here on, whatever the outcome.
    if rec.client_id != client.client_id || rec.expires_at <= t {
        return Err(OAuthError::InvalidGrant(BAD_CODE));
    }
    if form.redirect_uri.as_deref() != Some(rec.redirect_uri.as_str()) {
        return Err(OAuthError::InvalidGrant(
            "redirect_uri differs from the authorization request",
        ));
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(mcpgate_crypto::sha256(verifier.as_bytes()));
    if !mcpgate_crypto::secret::ct_eq(computed.as_bytes(), rec.code_challenge.as_bytes()) {
        return Err(OAuthError::InvalidGrant(
            "code_verifier does not match the code_challenge",
        ));
    }
    if let Some(r) = form.resource.as_deref()
        && r != rec.resource
    {
        return Err(OAuthError::InvalidTarget(
            "resource differs from the authorization request",
        ));
    }
    let grant = GrantRecord {
        tenant_id: DEFAULT_TENANT.into(),
        grant_id: rec.grant_id.clone(),
        client_id: rec.client_id.clone(),
        subject: rec.subject.clone(),
        resource: rec.resource.clone(),
        scope: rec.scope.clone(),
        created_at: t,
        revoked_at: None,
    };
    let refresh = if client.allows_grant("refresh_token") {
        Some(new_refresh(s, &grant.grant_id, t)?)
    } else {
        None
    };
    s.store
        .insert_grant(&grant, refresh.as_ref().map(|(_, r)| r))
        .await
        .map_err(|e| OAuthError::Server(e.to_string()))?;
    let at = access_token(
        s,
        &grant.subject,
        &grant.client_id,
        &grant.resource,
        &grant.scope,
        Some(&grant.grant_id),
    )?;
    tracing::info!(client_id = %grant.client_id, user = %grant.subject, aud = %grant.resource, scope = %grant.scope, grant = %grant.grant_id, "issued tokens (authorization_code)");
    s.record(
        issued(mcpgate_audit::EventKind::TokenIssued, &grant.subject, &grant.client_id, &grant.resource)
            .details(serde_json::json!({"grant_type": "authorization_code", "scope": grant.scope, "grant": grant.grant_id})))
    .await
    .map_err(|e| OAuthError::Server(format!("audit: {e}")))?;
    Ok(response(s, at, &grant.scope, refresh.map(|(t, _)| t)))
}

/// A new refresh token of `grant_id`: (the token, its record).
fn new_refresh(
    s: &AuthServer,
    grant_id: &str,
    t: i64,
) -> Result<(String, RefreshTokenRecord), OAuthError> {
    let token = format!(
        "{REFRESH_PREFIX}{}",
        random_token(32).map_err(|e| OAuthError::Server(e.to_string()))?
    );
    let rec = RefreshTokenRecord {
        tenant_id: DEFAULT_TENANT.into(),
        token_hash: mcpgate_crypto::sha256(token.as_bytes()).to_vec(),
        grant_id: grant_id.to_owned(),
        created_at: t,
        expires_at: t + s.settings.refresh_token_ttl_secs as i64,
        rotated_at: None,
    };
    Ok((token, rec))
}

const BAD_REFRESH: &str = "the refresh token is invalid, expired or revoked";

/// `refresh_token` (OAuth 2.1 §4.3).
async fn refresh(s: &AuthServer, client: &Client, form: &Form) -> Result<Response, OAuthError> {
    let presented = form
        .refresh_token
        .as_deref()
        .ok_or(OAuthError::InvalidRequest("refresh_token is required"))?;
    let t = now();
    let hash = mcpgate_crypto::sha256(presented.as_bytes());
    let grant = s
        .store
        .grant_of_refresh_token(DEFAULT_TENANT, &hash)
        .await
        .map_err(|e| OAuthError::Server(e.to_string()))?
        .ok_or(OAuthError::InvalidGrant(BAD_REFRESH))?;
    // Bound to its client: another client's token changes nothing.
    if grant.client_id != client.client_id {
        return Err(OAuthError::InvalidGrant(BAD_REFRESH));
    }
    if let Some(r) = form.resource.as_deref()
        && r != grant.resource
    {
        return Err(OAuthError::InvalidTarget(
            "a refresh token is bound to the resource it was issued for",
        ));
    }
    let scope = match form.scope.as_deref() {
        None => grant.scope.clone(),
        Some(req) => {
            let had: Vec<&str> = grant.scope.split_whitespace().collect();
            if !req.split_whitespace().all(|x| had.contains(&x)) {
                return Err(OAuthError::InvalidScope(
                    "a refresh may only narrow the granted scopes",
                ));
            }
            ScopeSet::parse(req)
                .map_err(|_| OAuthError::InvalidScope("malformed scope"))?
                .to_space_delimited()
        }
    };
    let (token, rec) = new_refresh(s, &grant.grant_id, t)?;
    // Signed before the rotation (a grant's subject, client and resource
    // never change), so that once the rotation commits each response waits
    // only for its audit record: the records of one group-committed batch
    // of rotations then reach the audit log together and share its commit.
    // Discarded, never sent, unless the rotation succeeds.
    let at = access_token(
        s,
        &grant.subject,
        &grant.client_id,
        &grant.resource,
        &scope,
        Some(&grant.grant_id),
    )?;
    // The rotation also checks, in its transaction, that the user's
    // account still exists and is enabled (else `Invalid`).
    match s
        .store
        .rotate_refresh_token(DEFAULT_TENANT, &client.client_id, &hash, &rec, t)
        .await
        .map_err(|e| OAuthError::Server(e.to_string()))?
    {
        RefreshRotation::Rotated(g) => {
            tracing::info!(client_id = %g.client_id, user = %g.subject, grant = %g.grant_id, "refresh token rotated");
            s.record(
                issued(
                    mcpgate_audit::EventKind::TokenRefreshed,
                    &g.subject,
                    &g.client_id,
                    &g.resource,
                )
                .details(serde_json::json!({"scope": scope, "grant": g.grant_id})),
            )
            .await
            .map_err(|e| OAuthError::Server(format!("audit: {e}")))?;
            Ok(response(s, at, &scope, Some(token)))
        }
        RefreshRotation::Reused(g) => {
            s.revoked.add_grant(&g.grant_id, t);
            tracing::warn!(client_id = %g.client_id, user = %g.subject, grant = %g.grant_id, "refresh token reused: grant revoked");
            let _ = s
                .record(
                    issued(
                        mcpgate_audit::EventKind::RefreshReuseDetected,
                        &g.subject,
                        &g.client_id,
                        &g.resource,
                    )
                    .reason("a rotated refresh token was presented: grant revoked")
                    .details(serde_json::json!({"grant": g.grant_id})),
                )
                .await;
            Err(OAuthError::InvalidGrant(BAD_REFRESH))
        }
        RefreshRotation::Invalid => Err(OAuthError::InvalidGrant(BAD_REFRESH)),
    }
}

impl AuthServer {
    /// Revokes a grant in storage and, at once, in this process's gateway.
    pub async fn revoke_grant(&self, grant_id: &str, at: i64) -> Result<(), OAuthError> {
        self.store
            .revoke_grant(DEFAULT_TENANT, grant_id, at)
            .await
            .map_err(|e| OAuthError::Server(e.to_string()))?;
        self.revoked.add_grant(grant_id, at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        h
    }

    #[test]
    fn rfc6749_3_2_repeated_parameters_are_refused() {
        let h = form_headers();
        assert!(parse_form(&h, b"grant_type=client_credentials&grant_type=password").is_err());
        let f = parse_form(
            &h,
            b"grant_type=client_credentials&scope=a+b&resource=https%3A%2F%2Fx%2Fmcp",
        )
        .unwrap();
        assert_eq!(f.scope.as_deref(), Some("a b"));
        assert_eq!(f.resource.as_deref(), Some("https://x/mcp"));
        assert!(parse_form(&HeaderMap::new(), b"grant_type=x").is_err());
    }

    #[test]
    fn rfc7636_4_1_verifier_shape() {
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(valid_verifier(&"A-._~9".repeat(22)[..128]));
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }
}
