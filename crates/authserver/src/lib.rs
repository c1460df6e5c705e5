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

pub mod assertion;
pub mod authorize;
pub mod cimd;
pub mod clients;
pub mod error;
pub mod introspect;
pub mod keys;
pub mod metadata;
pub mod pages;
pub mod redirect;
pub mod register;
pub mod revocations;
pub mod token;

use std::sync::Arc;

use base64::Engine as _;
use mcpgate_core::config::{AuthMode, AuthorizationServer, Config};
use mcpgate_core::{ResourceUri, ScopeSet};
use mcpgate_store::Store;

pub use keys::KeyRing;
pub use revocations::{LocalIssuer, RevocationList};

/// Paths of the endpoints (under `public_url`).
pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const JWKS_PATH: &str = "/oauth/jwks";
pub const REGISTER_PATH: &str = "/oauth/register";
pub const REVOKE_PATH: &str = "/oauth/revoke";
pub const INTROSPECT_PATH: &str = "/oauth/introspect";

/// A protected resource this server issues tokens for.
#[derive(Debug, Clone)]
pub struct Resource {
    pub uri: ResourceUri,
    /// Every scope the route knows (route scopes and tool scopes).
    pub scopes: ScopeSet,
    /// The route's own scopes (what every request needs): granted when a
    /// client asks for none.
    pub base_scopes: ScopeSet,
}

#[derive(Debug)]
pub struct AuthServer {
    pub issuer: String,
    pub keys: Arc<KeyRing>,
    pub store: Arc<dyn Store>,
    pub resources: Vec<Resource>,
    pub access_token_ttl: u64,
    pub settings: AuthorizationServer,
    pub cimd: cimd::CimdFetcher,
    pub revoked: Arc<RevocationList>,
    /// MACs the pending requests, sessions and CSRF tokens of the pages.
    forms: mcpgate_crypto::mac::Mac,
    login_failures: authorize::AddressThrottle,
    registrations: register::AddressLimiter,
    /// Token, revocation and introspection requests per source address.
    token_requests: register::AddressLimiter,
    /// Login form posts per source address.
    login_attempts: register::AddressLimiter,
    /// When clients' `last_used_at` was last written.
    last_use: clients::LastUse,
    /// The audit trail, if on.
    pub audit: Option<mcpgate_audit::AuditLog>,
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The client's address, as the server recorded it for the connection.
pub(crate) fn peer_ip(ext: &http::Extensions) -> Option<std::net::IpAddr> {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// `bytes` random bytes, base64url.
pub(crate) fn random_token(bytes: usize) -> Result<String, mcpgate_crypto::Unspecified> {
    let mut b = vec![0u8; bytes];
    mcpgate_crypto::random_bytes(&mut b)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b))
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
                    base_scopes: r.scopes.clone(),
                })
            })
            .collect();
        let settings = config.authorization_server.clone();
        let cimd = cimd::CimdFetcher::new(cimd::CimdOptions {
            allow_private_addresses: settings.danger_cimd_allow_private_addresses,
            ..cimd::CimdOptions::default()
        });
        Self {
            issuer: config.public_url.as_str().to_owned(),
            forms: keys.derive_mac("mcpgate authorization pages v1"),
            keys,
            store,
            resources,
            access_token_ttl: settings.access_token_ttl_secs,
            revoked: Arc::new(RevocationList::new(settings.access_token_ttl_secs)),
            cimd,
            login_failures: Default::default(),
            registrations: register::AddressLimiter::new(
                settings.registrations_per_hour,
                std::time::Duration::from_secs(3600),
            ),
            token_requests: register::AddressLimiter::new(
                settings.token_requests_per_minute,
                std::time::Duration::from_secs(60),
            ),
            login_attempts: register::AddressLimiter::new(
                settings.login_attempts_per_minute,
                std::time::Duration::from_secs(60),
            ),
            last_use: Default::default(),
            settings,
            audit: None,
        }
    }

    /// Records issuance, refresh, revocation, reuse detection,
    /// registration, consent and logins in `audit`.
    pub fn with_audit(mut self, audit: Option<mcpgate_audit::AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// Writes an event durably (waiting for the commit). A failure is an
    /// error the caller turns into a refusal where something is issued:
    /// nothing goes out that the trail does not record.
    pub(crate) async fn record(
        &self,
        ev: mcpgate_audit::Event,
    ) -> Result<(), mcpgate_audit::AuditError> {
        match &self.audit {
            None => Ok(()),
            Some(a) => a.append(ev).await,
        }
    }

    /// Counts a token, revocation or introspection request against the
    /// source address's `token_requests_per_minute`.
    pub(crate) fn admit_token_request(
        &self,
        ext: &http::Extensions,
    ) -> Result<(), error::OAuthError> {
        if self.token_requests.admit(peer_ip(ext)) {
            Ok(())
        } else {
            Err(error::OAuthError::SlowDown(60))
        }
    }

    /// The gateway's view of this issuer: keys and revocations.
    pub fn local_issuer(&self) -> Arc<LocalIssuer> {
        Arc::new(LocalIssuer {
            keys: self.keys.clone(),
            revoked: self.revoked.clone(),
        })
    }

    /// Background work: key rotation and reload, revocation polling, and
    /// deleting expired codes, tokens and unused registrations.
    pub fn spawn_maintenance(self: &Arc<Self>) {
        self.keys.spawn_maintenance();
        self.revoked.spawn_poller(self.store.clone());
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let t = now();
                let tenant = mcpgate_store::DEFAULT_TENANT;
                let r = async {
                    me.store.delete_expired_auth_codes(tenant, t - 3600).await?;
                    me.store.delete_expired_tokens(tenant, t - 3600).await?;
                    me.store
                        .delete_unused_registrations(
                            tenant,
                            t - me.settings.unused_registration_ttl_secs as i64,
                        )
                        .await
                }
                .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "authorization server clean-up failed");
                }
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
            }
        });
    }

    /// Every scope of every resource (advertised as `scopes_supported`).
    pub fn all_scopes(&self) -> ScopeSet {
        let mut all = ScopeSet::new();
        for r in &self.resources {
            all.extend(r.scopes.iter());
        }
        all
    }

    /// The RFC 8707 resource a request names. Without one, a server with
    /// exactly one protected resource uses it (this is what lets the
    /// conformance suite's `authorization-code-grant`, which sends none,
    /// work); with several, the client must say.
    pub fn pick_resource(&self, asked: Option<&str>) -> Result<&Resource, &'static str> {
        match asked {
            Some(r) => self
                .resources
                .iter()
                .find(|x| x.uri.as_str() == r)
                .ok_or("resource is not a protected MCP server here"),
            None => match self.resources.as_slice() {
                [only] => Ok(only),
                [] => Err("this server protects no MCP server with OAuth"),
                _ => Err("resource is required: this server protects several MCP servers"),
            },
        }
    }

    /// The endpoints, to be merged into the gateway's router.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        use axum::routing::{get, post};
        let mut r = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(metadata::authorization_server),
            )
            .route(
                "/.well-known/openid-configuration",
                get(metadata::openid_configuration),
            )
            .route(JWKS_PATH, get(metadata::jwks))
            .route(AUTHORIZE_PATH, get(authorize::get).post(authorize::post))
            .route(TOKEN_PATH, post(token::token))
            .route(REVOKE_PATH, post(introspect::revoke))
            .route(INTROSPECT_PATH, post(introspect::introspect));
        if self.settings.dynamic_client_registration {
            r = r.route(REGISTER_PATH, post(register::register));
        }
        r.with_state(self.clone())
    }
}
