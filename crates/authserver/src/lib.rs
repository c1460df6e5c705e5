//! The built-in OAuth 2.1 authorization server: with
//! `[authorization_server] enabled = true` the gateway is its own issuer,
//! and its routes trust it without a network call.
//!
//! Implemented so far: RFC 8414 metadata and OpenID Connect discovery
//! ([`metadata`]), rotating ES256 signing keys encrypted at rest under the
//! master key ([`keys`]), pre-registered clients ([`clients`]), and the token
//! endpoint for the `client_credentials` grant with `client_secret_basic` and
//! `client_secret_post` (RFC 6749 §4.4, §2.3.1), issuing RFC 9068 access
//! tokens whose `aud` is the RFC 8707 `resource` asked for ([`token`]).
//!
//! Trust boundary: every request to these endpoints is untrusted; client
//! secrets are compared as SHA-256 hashes in constant time; OAuth errors go
//! on the wire only through [`error`].

pub mod clients;
pub mod error;
pub mod keys;
pub mod metadata;
pub mod token;

use std::sync::Arc;

use mcpgate_core::config::{AuthMode, Config};
use mcpgate_core::{ResourceUri, ScopeSet};
use mcpgate_store::Store;

pub use keys::KeyRing;

/// Paths of the endpoints (under `public_url`).
pub const TOKEN_PATH: &str = "/oauth/token";
pub const JWKS_PATH: &str = "/oauth/jwks";

/// A protected resource this server issues tokens for.
#[derive(Debug, Clone)]
pub struct Resource {
    pub uri: ResourceUri,
    /// Every scope the route knows (route scopes and tool scopes).
    pub scopes: ScopeSet,
}

#[derive(Debug)]
pub struct AuthServer {
    pub issuer: String,
    pub keys: Arc<KeyRing>,
    pub store: Arc<dyn Store>,
    pub resources: Vec<Resource>,
    pub access_token_ttl: u64,
}

impl AuthServer {
    pub fn new(config: &Config, keys: Arc<KeyRing>, store: Arc<dyn Store>) -> Self {
        let resources = config
            .routes
            .iter()
            .filter(|r| r.auth == AuthMode::Oauth)
            .filter_map(|r| {
                let mut scopes = r.scopes.clone();
                for s in r.tool_scopes.values() {
                    scopes.extend(s.iter());
                }
                Some(Resource {
                    uri: config.resource_uri(r).ok()?,
                    scopes,
                })
            })
            .collect();
        Self {
            issuer: config.public_url.as_str().to_owned(),
            keys,
            store,
            resources,
            access_token_ttl: config.authorization_server.access_token_ttl_secs,
        }
    }

    /// Every scope of every resource (advertised as `scopes_supported`).
    pub fn all_scopes(&self) -> ScopeSet {
        let mut all = ScopeSet::new();
        for r in &self.resources {
            all.extend(r.scopes.iter());
        }
        all
    }

    /// The endpoints, to be merged into the gateway's router.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        use axum::routing::{get, post};
        axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(metadata::authorization_server),
            )
            .route(
                "/.well-known/openid-configuration",
                get(metadata::openid_configuration),
            )
            .route(JWKS_PATH, get(metadata::jwks))
            .route(TOKEN_PATH, post(token::token))
            .with_state(self.clone())
    }
}
