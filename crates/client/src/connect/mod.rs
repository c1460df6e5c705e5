//! `mcpgate connect URL`: a stdio MCP server that forwards to a remote,
//! protected MCP server, and does the client's part of MCP authorization on
//! the way (see [`oauth`]). stdout carries only JSON-RPC; everything meant
//! for a person goes to stderr.

pub mod cache;
pub mod callback;
pub mod error;
pub mod keystore;
pub mod oauth;
pub mod relay;
pub mod sse;

use std::path::PathBuf;
use std::sync::Arc;

use url::Url;

pub use error::ConnectError;
pub use keystore::KeyringUse;
pub use oauth::{Browser, Grant, OAuthOptions, ResourceChoice};
pub use relay::{RelayOptions, TransportChoice, parse_header};
pub use reqwest::header::HeaderMap;

/// Everything `mcpgate connect` was asked to do.
#[derive(Debug)]
pub struct ConnectOptions {
    pub url: Url,
    pub oauth: OAuthOptions,
    pub relay_transport: TransportChoice,
    pub headers: reqwest::header::HeaderMap,
    pub cache_dir: Option<PathBuf>,
    pub keyring: keystore::KeyringUse,
}

/// Checks the server URL: absolute http(s), no fragment, and https unless
/// the host is loopback (a development set-up).
pub fn parse_server_url(s: &str) -> Result<Url, ConnectError> {
    let url =
        Url::parse(s).map_err(|e| ConnectError::Usage(format!("{s:?} is not a URL ({e})")))?;
    match crate::discovery::transport(&url) {
        crate::discovery::Transport::Https | crate::discovery::Transport::LoopbackHttp => {}
        crate::discovery::Transport::Insecure => {
            return Err(ConnectError::Usage(format!(
                "{s} is not https; tokens are only sent over https (or plain http to a loopback \
                 host)"
            )));
        }
    }
    if url.fragment().is_some() {
        return Err(ConnectError::Usage(format!("{s} has a fragment")));
    }
    Ok(url)
}

/// Relays stdin/stdout to the server until stdin ends.
pub async fn run(opts: ConnectOptions) -> Result<(), ConnectError> {
    let cache = cache::Cache::open(opts.cache_dir, opts.keyring)?;
    let auth = Arc::new(oauth::Authorizer::new(opts.url.clone(), opts.oauth, cache)?);
    relay::run(
        auth,
        RelayOptions {
            url: opts.url,
            transport: opts.relay_transport,
            headers: opts.headers,
        },
    )
    .await
}

/// `--logout`: forgets the tokens and registrations kept for `url`.
pub async fn logout(
    url: Url,
    cache_dir: Option<PathBuf>,
    keyring: keystore::KeyringUse,
) -> Result<bool, ConnectError> {
    let cache = cache::Cache::open(cache_dir, keyring)?;
    let server = url.to_string();
    let _lock = cache
        .lock(&server, std::time::Duration::from_secs(30))
        .await?;
    cache.remove(&server)
}
