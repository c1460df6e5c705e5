//! Why `mcpgate connect` could not authorize or relay, in words a person can
//! act on: which step, which URL, what came back. Never a token or secret.

/// A failure of `mcpgate connect`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The command line does not make sense.
    #[error("{0}")]
    Usage(String),
    /// A discovery step failed: `step` says which, `url` where.
    #[error("{step} failed at {url}: {detail}")]
    Discovery {
        step: &'static str,
        url: String,
        detail: String,
    },
    /// The authorization server cannot be used safely or at all.
    #[error("the authorization server {issuer} cannot be used: {detail}")]
    AuthServer { issuer: String, detail: String },
    /// Client registration failed.
    #[error("client registration at {url} failed: {detail}")]
    Registration { url: String, detail: String },
    /// The authorization response was refused or never came.
    #[error("authorization failed: {0}")]
    Authorization(String),
    /// The token endpoint refused or answered nonsense.
    #[error("the token request to {url} failed: {detail}")]
    Token { url: String, detail: String },
    /// The MCP server keeps refusing after the allowed number of attempts.
    #[error("{0}")]
    Refused(String),
    /// The token cache or its lock.
    #[error("token cache: {0}")]
    Cache(String),
    /// Talking to the MCP server itself.
    #[error("{0}")]
    Transport(String),
}
