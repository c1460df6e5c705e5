//! Every error the gateway answers on its own, and how each goes on the wire.
//!
//! This is the one place where decisions become responses: OAuth challenges
//! (`WWW-Authenticate`, RFC 6750 §3 and RFC 9728 §5.1) and JSON-RPC error
//! bodies echoing the request `id` when it could be read (dual-era clients
//! read the body to tell a modern server from a legacy one). The client gets
//! a short external message; the log gets the internal reason.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use mcpgate_core::ScopeSet;
use mcpgate_core::jsonrpc::{self, Id, ParseError, code};
use mcpgate_core::mcp::HeaderMismatch;

/// Why a credential was refused (for logs and metrics; never sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    #[error("token: {0}")]
    Jwt(#[from] mcpgate_crypto::jwt::JwtError),
    #[error("token issuer is not trusted")]
    UntrustedIssuer,
    #[error("issuer keys unavailable: {0}")]
    IssuerUnavailable(String),
    #[error("introspection says the token is not active")]
    Inactive,
    #[error("token revoked by its issuer")]
    Revoked,
    #[error("no issuer can introspect opaque tokens")]
    NoIntrospection,
    #[error("API key unknown or malformed")]
    UnknownApiKey,
    #[error("API key revoked")]
    RevokedApiKey,
    #[error("API key expired")]
    ExpiredApiKey,
    #[error("API key is for another route")]
    ApiKeyOtherRoute,
    #[error("Authorization header is not a Bearer credential")]
    NotBearer,
}

impl AuthFailure {
    /// A metrics label (bounded cardinality).
    pub fn label(&self) -> &'static str {
        use mcpgate_crypto::jwt::JwtError as J;
        match self {
            AuthFailure::Jwt(j) => match j {
                J::Expired => "expired",
                J::NotYetValid | J::IssuedInFuture => "not_yet_valid",
                J::WrongAudience => "wrong_audience",
                J::WrongIssuer => "wrong_issuer",
                J::BadSignature => "bad_signature",
                J::UnknownKey => "unknown_key",
                J::AlgorithmNotAllowed(_) => "algorithm",
                _ => "malformed",
            },
            AuthFailure::UntrustedIssuer => "untrusted_issuer",
            AuthFailure::IssuerUnavailable(_) => "issuer_unavailable",
            AuthFailure::Inactive => "inactive",
            AuthFailure::Revoked => "revoked",
            AuthFailure::NoIntrospection => "opaque_unsupported",
            AuthFailure::UnknownApiKey => "api_key_unknown",
            AuthFailure::RevokedApiKey => "api_key_revoked",
            AuthFailure::ExpiredApiKey => "api_key_expired",
            AuthFailure::ApiKeyOtherRoute => "api_key_route",
            AuthFailure::NotBearer => "not_bearer",
        }
    }
}

/// A request the gateway answers itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    #[error("no credential")]
    MissingCredential,
    #[error("invalid credential: {0}")]
    InvalidToken(AuthFailure),
    #[error("access token in the query string")]
    TokenInQuery,
    #[error("insufficient scope")]
    InsufficientScope { needed: ScopeSet },
    #[error("origin not allowed")]
    OriginNotAllowed,
    #[error("body too large")]
    BodyTooLarge,
    #[error("unreadable body: {0}")]
    BodyRead(String),
    #[error("malformed JSON-RPC: {0}")]
    Parse(ParseError),
    #[error("JSON-RPC batches are not supported in protocol version {0}")]
    BatchNotSupported(String),
    #[error("header mismatch: {0}")]
    HeaderMismatch(HeaderMismatch),
    /// A protocol version the gateway itself must speak (the stdio bridge)
    /// and does not know.
    #[error("unsupported protocol version")]
    UnsupportedVersion(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("JSON-RPC method not implemented")]
    MethodNotFound,
    #[error("session not found")]
    SessionNotFound,
    #[error("session id required")]
    SessionRequired,
    #[error("upstream error: {0}")]
    Upstream(String),
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error("storage unavailable: {0}")]
    StoreUnavailable(String),
    #[error("rate limit exceeded ({:?}{})", .0.key, .0.tool.as_deref().map(|t| format!(", tool {t}")).unwrap_or_default())]
    RateLimited(crate::limits::Exceeded),
    /// `tools/call` of a tool the route hides from everyone.
    #[error("tool hidden on this route")]
    ToolHidden(String),
    /// The route's policy denied the request.
    #[error("denied by policy")]
    PolicyDenied,
    /// The audit trail cannot be written and the route refuses to serve
    /// unaudited.
    #[error("audit trail unavailable")]
    AuditUnavailable,
}

/// What an error response needs from the request it answers.
#[derive(Debug, Clone, Default)]
pub struct ErrorContext<'a> {
    pub id: Option<Id>,
    /// `resource_metadata` URL of the route (for challenges).
    pub resource_metadata: Option<&'a str>,
    /// Scopes the route needs for any request (for the 401 `scope`).
    pub route_scopes: Option<&'a ScopeSet>,
}

impl Reject {
    pub fn status(&self) -> StatusCode {
        match self {
            Reject::MissingCredential | Reject::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Reject::TokenInQuery
            | Reject::BodyRead(_)
            | Reject::Parse(_)
            | Reject::BatchNotSupported(_)
            | Reject::HeaderMismatch(_)
            | Reject::UnsupportedVersion(_)
            | Reject::SessionRequired => StatusCode::BAD_REQUEST,
            Reject::InsufficientScope { .. } | Reject::OriginNotAllowed | Reject::PolicyDenied => {
                StatusCode::FORBIDDEN
            }
            Reject::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reject::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reject::SessionNotFound | Reject::MethodNotFound | Reject::ToolHidden(_) => {
                StatusCode::NOT_FOUND
            }
            Reject::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Reject::Upstream(_) => StatusCode::BAD_GATEWAY,
            Reject::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reject::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A metrics label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Reject::MissingCredential => "unauthenticated",
            Reject::InvalidToken(_) | Reject::TokenInQuery => "invalid_credential",
            Reject::InsufficientScope { .. } => "insufficient_scope",
            Reject::OriginNotAllowed => "origin_denied",
            Reject::BodyTooLarge => "too_large",
            Reject::Upstream(_) | Reject::UpstreamTimeout => "upstream_error",
            Reject::StoreUnavailable(_) => "unavailable",
            Reject::RateLimited(_) => "rate_limited",
            Reject::PolicyDenied => "policy_denied",
            Reject::AuditUnavailable => "audit_unavailable",
            Reject::ToolHidden(_) => "tool_hidden",
            _ => "bad_request",
        }
    }

    /// (JSON-RPC code, external message, data).
    fn jsonrpc(&self) -> (i64, String, Option<serde_json::Value>) {
        match self {
            Reject::MissingCredential => (
                code::GATEWAY_UNAUTHORIZED,
                "Unauthorized: an access token is required".into(),
                None,
            ),
            Reject::InvalidToken(f) => (
                code::GATEWAY_UNAUTHORIZED,
                format!("Unauthorized: {}", external_description(f)),
                None,
            ),
            Reject::TokenInQuery => (
                code::GATEWAY_UNAUTHORIZED,
                "Access tokens must be sent in the Authorization header, not the URL".into(),
                None,
            ),
            Reject::InsufficientScope { needed } => (
                code::GATEWAY_FORBIDDEN,
                format!(
                    "Forbidden: this request needs scope \"{}\"",
                    needed.to_space_delimited()
                ),
                None,
            ),
            Reject::OriginNotAllowed => (
                code::GATEWAY_FORBIDDEN,
                "Forbidden: Origin not allowed".into(),
                None,
            ),
            Reject::BodyTooLarge => (code::GATEWAY_LIMIT, "Request body too large".into(), None),
            Reject::BodyRead(_) => (code::PARSE_ERROR, "Unreadable request body".into(), None),
            Reject::Parse(e) => (e.code(), e.to_string(), None),
            Reject::BatchNotSupported(v) => (
                code::INVALID_REQUEST,
                format!("JSON-RPC batches are not supported in protocol version {v}"),
                None,
            ),
            Reject::HeaderMismatch(h) => (code::HEADER_MISMATCH, h.to_string(), None),
            Reject::UnsupportedVersion(requested) => (
                code::UNSUPPORTED_PROTOCOL_VERSION,
                format!("Unsupported protocol version {requested:?}"),
                Some(serde_json::json!({
                    "supported": std::iter::once(mcpgate_core::mcp::MODERN_VERSION)
                        .chain(mcpgate_core::mcp::LEGACY_VERSIONS)
                        .collect::<Vec<_>>(),
                    "requested": requested,
                })),
            ),
            Reject::MethodNotAllowed => (
                code::INVALID_REQUEST,
                "Method not allowed on this endpoint".into(),
                None,
            ),
            Reject::SessionNotFound => (code::INVALID_REQUEST, "Session not found".into(), None),
            Reject::MethodNotFound => (code::METHOD_NOT_FOUND, "Method not found".into(), None),
            Reject::SessionRequired => (
                code::INVALID_REQUEST,
                "Mcp-Session-Id header is required".into(),
                None,
            ),
            Reject::Upstream(_) => (
                code::GATEWAY_UPSTREAM,
                "Upstream MCP server error".into(),
                None,
            ),
            Reject::UpstreamTimeout => (
                code::GATEWAY_UPSTREAM,
                "Upstream MCP server timed out".into(),
                None,
            ),
            Reject::StoreUnavailable(_) => (
                code::INTERNAL_ERROR,
                "Gateway storage unavailable".into(),
                None,
            ),
            Reject::RateLimited(e) => (
                code::GATEWAY_LIMIT,
                format!("Rate limit exceeded; retry after {} s", e.retry_after_secs),
                Some(serde_json::json!({"retryAfter": e.retry_after_secs})),
            ),
            Reject::ToolHidden(name) => {
                (code::INVALID_PARAMS, format!("Unknown tool: {name}"), None)
            }
            Reject::PolicyDenied => (
                code::GATEWAY_FORBIDDEN,
                "Forbidden: a policy of this server denies this request".into(),
                None,
            ),
            Reject::AuditUnavailable => (
                code::INTERNAL_ERROR,
                "The gateway cannot record this request in its audit trail; try again later".into(),
                None,
            ),
        }
    }

    /// The `WWW-Authenticate` challenge, if this error carries one.
    fn challenge(&self, ctx: &ErrorContext<'_>) -> Option<String> {
        let mut params: Vec<(&str, String)> = Vec::new();
        match self {
            Reject::MissingCredential => {}
            Reject::InvalidToken(f) => {
                params.push(("error", "invalid_token".into()));
                params.push(("error_description", external_description(f).into()));
            }
            Reject::TokenInQuery => params.push(("error", "invalid_request".into())),
            Reject::InsufficientScope { .. } => {
                params.push(("error", "insufficient_scope".into()));
            }
            _ => return None,
        }
        let scope = match self {
            Reject::InsufficientScope { needed } => Some(needed.to_space_delimited()),
            _ => ctx
                .route_scopes
                .filter(|s| !s.is_empty())
                .map(ScopeSet::to_space_delimited),
        };
        if let Some(s) = scope {
            params.push(("scope", s));
        }
        if let Some(rm) = ctx.resource_metadata {
            params.push(("resource_metadata", rm.to_owned()));
        }
        let mut out = String::from("Bearer");
        for (i, (k, v)) in params.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            out.push_str(k);
            out.push_str("=\"");
            // RFC 6750 §3: values are quoted-strings; none of ours may carry
            // a quote or backslash, but escape anyway.
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Some(out)
    }

    /// The full response.
    pub fn into_response_with(self, ctx: &ErrorContext<'_>) -> Response {
        let (c, msg, data) = self.jsonrpc();
        let body = jsonrpc::error_body(ctx.id.as_ref(), c, &msg, data);
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Some(ch) = self.challenge(ctx)
            && let Ok(v) = HeaderValue::from_str(&ch)
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if let Reject::RateLimited(e) = &self
            && let Ok(v) = HeaderValue::from_str(&e.retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if matches!(self, Reject::MissingCredential | Reject::InvalidToken(_)) {
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        resp
    }
}

/// What the client is told about a refused credential: enough to act on,
/// nothing about keys or internal state.
fn external_description(f: &AuthFailure) -> &'static str {
    use mcpgate_crypto::jwt::JwtError as J;
    match f {
        AuthFailure::Jwt(J::Expired) | AuthFailure::ExpiredApiKey => "the credential has expired",
        AuthFailure::Jwt(J::WrongAudience) | AuthFailure::ApiKeyOtherRoute => {
            "the credential was not issued for this resource"
        }
        AuthFailure::IssuerUnavailable(_) => "the credential could not be verified",
        _ => "the credential is invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ErrorContext<'static> {
        static SCOPES: std::sync::LazyLock<ScopeSet> =
            std::sync::LazyLock::new(|| ScopeSet::parse("mcp").unwrap());
        ErrorContext {
            id: Some(Id::Num(3.into())),
            resource_metadata: Some("https://gw.example/.well-known/oauth-protected-resource/mcp"),
            route_scopes: Some(&SCOPES),
        }
    }

    #[test]
    fn rfc9728_5_1_missing_token_challenge_names_metadata_and_scope() {
        let r = Reject::MissingCredential.into_response_with(&ctx());
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer scope=\"mcp\", resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource/mcp\""
        );
    }

    #[test]
    fn rfc6750_3_1_invalid_token_challenge() {
        let r = Reject::InvalidToken(AuthFailure::Jwt(mcpgate_crypto::jwt::JwtError::Expired))
            .into_response_with(&ctx());
        assert_eq!(r.status(), 401);
        let h = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            h.starts_with(
                "Bearer error=\"invalid_token\", error_description=\"the credential has expired\""
            ),
            "{h}"
        );
        assert!(h.contains("resource_metadata=\""), "{h}");
    }

    #[test]
    fn rfc6750_3_1_insufficient_scope_names_every_needed_scope() {
        let needed = ScopeSet::parse("mcp notes:write").unwrap();
        let r = Reject::InsufficientScope { needed }.into_response_with(&ctx());
        assert_eq!(r.status(), 403);
        let h = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert_eq!(
            h,
            "Bearer error=\"insufficient_scope\", scope=\"mcp notes:write\", resource_metadata=\"https://gw.example/.well-known/oauth-protected-resource/mcp\""
        );
    }

    #[test]
    fn non_auth_errors_carry_no_challenge() {
        let r = Reject::BodyTooLarge.into_response_with(&ctx());
        assert_eq!(r.status(), 413);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
