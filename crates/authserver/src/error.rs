//! OAuth errors (RFC 6749 §5.2) and how they go on the wire.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// One variant per error code a client acts on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// Client authentication failed. `basic` says whether the client tried
    /// HTTP Basic (then the 401 carries a Basic challenge).
    #[error("invalid_client")]
    InvalidClient { basic: bool },
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(&'static str),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// The code, refresh token or PKCE verifier is invalid, expired, used,
    /// revoked or not this client's (RFC 6749 §5.2).
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    /// RFC 7591 §3.2.2.
    #[error("invalid_redirect_uri: {0}")]
    InvalidRedirectUri(&'static str),
    #[error("invalid_client_metadata: {0}")]
    InvalidClientMetadata(&'static str),
    /// Too many requests from one source address; retry after the given
    /// seconds.
    #[error("too many requests")]
    SlowDown(u32),
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
    /// RFC 8707 §2: the resource is unknown or not allowed.
    #[error("invalid_target: {0}")]
    InvalidTarget(&'static str),
    #[error("server_error: {0}")]
    Server(String),
}

impl OAuthError {
    fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidRedirectUri(_) => "invalid_redirect_uri",
            OAuthError::InvalidClientMetadata(_) => "invalid_client_metadata",
            // RFC 7591 defines no rate-limit code; the status says it.
            OAuthError::SlowDown(_) => "invalid_request",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::Server(_) => "server_error",
        }
    }

    fn description(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::InvalidScope(d)
            | OAuthError::InvalidTarget(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::InvalidRedirectUri(d)
            | OAuthError::InvalidClientMetadata(d) => d,
            OAuthError::SlowDown(_) => "too many requests from this address; try again later",
            OAuthError::InvalidClient { .. } => "client authentication failed",
            OAuthError::UnsupportedGrantType => "this grant type is not supported",
            OAuthError::Server(_) => "the authorization server failed; try again",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            OAuthError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthError::SlowDown(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        if let OAuthError::Server(e) = &self {
            tracing::error!(error = %e, "authorization server error");
        }
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.description(),
        });
        let mut r = (self.status(), axum::Json(body)).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let OAuthError::SlowDown(secs) = self {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let OAuthError::InvalidClient { basic: true } = self {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mcpgate\""),
            );
        }
        r
    }
}
