//! A loopback authorization server, as far as a resource server sees one:
//! RFC 8414 metadata and a JWKS, plus the ES256 key that signs the tokens.

use std::sync::Arc;

use anyhow::Context as _;
use axum::routing::get;
use mcpgate_test_support::TestKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Token lifetime: longer than any sensible run (`--duration 1m --rounds 9`).
const TOKEN_LIFETIME_SECS: u64 = 6 * 3600;

#[derive(Debug)]
pub struct Issuer {
    /// The `iss` value and the base of the metadata URL.
    pub issuer: String,
    pub jwks_uri: String,
    key: TestKey,
}

impl Issuer {
    /// Binds 127.0.0.1:0 and serves metadata and keys on this runtime.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the issuer")?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let jwks_uri = format!("{issuer}/jwks.json");
        let key = TestKey::es256("bench-es256");
        let metadata = Arc::new(json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "token_endpoint": format!("{issuer}/token"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
        }));
        let jwks = Arc::new(mcpgate_test_support::jwks(&[&key]));
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || {
                    let m = metadata.clone();
                    async move { axum::Json((*m).clone()) }
                }),
            )
            .route(
                "/jwks.json",
                get(move || {
                    let j = jwks.clone();
                    async move { axum::Json((*j).clone()) }
                }),
            );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("issuer stopped: {e}");
            }
        });
        Ok(Self {
            issuer,
            jwks_uri,
            key,
        })
    }

    /// An RFC 9068 access token for `aud` with `scope`, signed with ES256.
    pub fn mint(&self, aud: &str, scope: &str) -> String {
        self.mint_as(aud, scope, "bench")
    }

    /// The same for another subject.
    pub fn mint_as(&self, aud: &str, scope: &str, sub: &str) -> String {
        let mut claims: Value = mcpgate_test_support::claims(&self.issuer, aud, scope);
        claims["exp"] = json!(mcpgate_test_support::now() + TOKEN_LIFETIME_SECS);
        claims["sub"] = json!(sub);
        self.key.sign(&claims)
    }
}
