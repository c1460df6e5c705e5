//! Trusted external issuers: their keys (JWKS, discovered per RFC 8414 /
//! OpenID Connect Discovery in the order the MCP specification gives) and
//! their introspection endpoints (RFC 7662) for opaque tokens.
//!
//! Keys are fetched once and cached. A token whose `kid` is not in the cache
//! triggers a refetch, at most once per [`REFETCH_INTERVAL`] per issuer, so
//! a flood of tokens with made-up `kid`s cannot become a flood of fetches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use mcpgate_core::config::TrustedIssuer;
use mcpgate_crypto::jwt::{self, Jwks};
use serde_json::Value;

use crate::error::AuthFailure;

/// Minimum time between two JWKS fetches of one issuer.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// JWKS are refreshed in the background of a request after this age.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// Largest metadata, JWKS or introspection document read.
const MAX_DOC: usize = 512 * 1024;

/// One trusted issuer at run time.
#[derive(Debug)]
pub struct Issuer {
    pub config: TrustedIssuer,
    pub algorithms: Vec<Algorithm>,
    /// Extra audiences accepted from this issuer besides the route's URI.
    pub extra_audiences: Vec<String>,
    keys: Mutex<KeyState>,
    /// Serialises fetches (single flight).
    fetch_lock: tokio::sync::Mutex<()>,
    /// Keys held in this process (the built-in authorization server).
    local: Option<Arc<dyn jwt::KeySource>>,
}

#[derive(Debug, Default)]
struct KeyState {
    jwks: Option<Arc<Jwks>>,
    jwks_uri: Option<String>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl Issuer {
    pub fn new(config: TrustedIssuer) -> Self {
        let algorithms = match &config.algorithms {
            Some(names) => names.iter().filter_map(|n| jwt::algorithm(n)).collect(),
            None => jwt::ALLOWED.to_vec(),
        };
        let extra_audiences = config
            .audience
            .as_ref()
            .map(|a| a.to_vec())
            .unwrap_or_default();
        let jwks_uri = config.jwks_uri.as_ref().map(|u| u.0.clone());
        Self {
            config,
            algorithms,
            extra_audiences,
            keys: Mutex::new(KeyState {
                jwks_uri,
                ..KeyState::default()
            }),
            fetch_lock: tokio::sync::Mutex::new(()),
            local: None,
        }
    }

    /// The built-in authorization server: same checks, keys from memory.
    /// Whether the issuer says these verified claims are revoked (only
    /// the built-in issuer knows; others answer through introspection).
    pub fn is_revoked(&self, claims: &jwt::Claims) -> bool {
        self.local.as_ref().is_some_and(|l| l.is_revoked(claims))
    }

    pub fn local(issuer: &str, source: Arc<dyn jwt::KeySource>) -> Self {
        let config = TrustedIssuer {
            issuer: issuer.to_owned(),
            jwks_uri: None,
            introspection_endpoint: None,
            client_id: None,
            client_secret: None,
            audience: None,
            algorithms: Some(vec!["ES256".into()]),
        };
        Self {
            local: Some(source),
            ..Self::new(config)
        }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The current keys, fetching them if there are none yet, or if `kid`
    /// is unknown and the last fetch is old enough.
    pub async fn jwks_for(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
    ) -> Result<Arc<Jwks>, AuthFailure> {
        if let Some(local) = &self.local {
            return Ok(local.jwks());
        }
        let (current, need) = self.cached(kid);
        if !need && let Some(j) = current {
            return Ok(j);
        }
        let _guard = self.fetch_lock.lock().await;
        // Another request may have fetched while we waited.
        let (current, need) = self.cached(kid);
        if !need && let Some(j) = current {
            return Ok(j);
        }
        if !self.may_fetch() {
            return current.ok_or_else(|| AuthFailure::IssuerUnavailable("keys not loaded".into()));
        }
        match self.fetch(http).await {
            Ok(j) => Ok(j),
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "fetching JWKS failed");
                current.ok_or(AuthFailure::IssuerUnavailable(e))
            }
        }
    }

    /// (cached keys, whether a fetch is wanted).
    fn cached(&self, kid: Option<&str>) -> (Option<Arc<Jwks>>, bool) {
        let st = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let Some(j) = st.jwks.clone() else {
            return (None, true);
        };
        let unknown_kid = kid.is_some_and(|k| !j.has_kid(k));
        let stale = st.fetched_at.is_none_or(|t| t.elapsed() > MAX_AGE);
        (Some(j), unknown_kid || stale)
    }

    fn may_fetch(&self) -> bool {
        let mut st = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if st
            .last_attempt
            .is_some_and(|t| t.elapsed() < REFETCH_INTERVAL)
        {
            return false;
        }
        st.last_attempt = Some(Instant::now());
        true
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Arc<Jwks>, String> {
        let known = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .jwks_uri
            .clone();
        let uri = match known {
            Some(u) => u,
            None => {
                let u = self.discover(http).await?;
                self.keys.lock().unwrap_or_else(|p| p.into_inner()).jwks_uri = Some(u.clone());
                u
            }
        };
        let bytes = get_bounded(http, &uri).await?;
        let jwks = Arc::new(Jwks::parse(&bytes).map_err(|e| e.to_string())?);
        tracing::info!(issuer = %self.config.issuer, keys = jwks.len(), "loaded issuer keys");
        let mut st = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        st.jwks = Some(jwks.clone());
        st.fetched_at = Some(Instant::now());
        Ok(jwks)
    }

    /// Finds `jwks_uri` in the issuer's metadata: RFC 8414 first, then
    /// OpenID Connect discovery (path-inserted, then path-appended).
    async fn discover(&self, http: &reqwest::Client) -> Result<String, String> {
        for url in metadata_urls(&self.config.issuer)? {
            let Ok(bytes) = get_bounded(http, &url).await else {
                continue;
            };
            let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            // RFC 8414 §3.3: the issuer in the document must be the one used
            // to build the URL, byte for byte.
            if doc.get("issuer").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
                tracing::warn!(%url, "issuer metadata names another issuer; ignored");
                continue;
            }
            if let Some(j) = doc.get("jwks_uri").and_then(Value::as_str) {
                return Ok(j.to_owned());
            }
        }
        Err(format!(
            "no usable authorization server metadata with jwks_uri for {}",
            self.config.issuer
        ))
    }

    /// Whether this issuer's opaque tokens can be introspected (an
    /// endpoint and the gateway's credentials for it are configured).
    pub fn introspects(&self) -> bool {
        self.config.introspection_endpoint.is_some()
            && self.config.client_id.is_some()
            && self.config.client_secret.is_some()
    }

    /// RFC 7662 introspection of an opaque token.
    pub async fn introspect(
        &self,
        http: &reqwest::Client,
        token: &str,
    ) -> Result<Option<Value>, AuthFailure> {
        let (Some(ep), Some(id), Some(secret)) = (
            &self.config.introspection_endpoint,
            &self.config.client_id,
            &self.config.client_secret,
        ) else {
            return Ok(None);
        };
        let resp = http
            .post(ep.0.as_str())
            .basic_auth(id.0.as_str(), Some(secret.expose()))
            .header("accept", "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| AuthFailure::IssuerUnavailable(without_url(&e)))?;
        if !resp.status().is_success() {
            return Err(AuthFailure::IssuerUnavailable(format!(
                "introspection answered {}",
                resp.status()
            )));
        }
        let bytes = read_bounded(resp)
            .await
            .map_err(AuthFailure::IssuerUnavailable)?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            AuthFailure::IssuerUnavailable("introspection reply is not JSON".into())
        })?;
        Ok(Some(v))
    }
}

/// The discovery URLs for an issuer, in the MCP specification's order.
pub fn metadata_urls(issuer: &str) -> Result<Vec<String>, String> {
    let u = url::Url::parse(issuer).map_err(|e| e.to_string())?;
    let origin = u.origin().ascii_serialization();
    let path = u.path().trim_end_matches('/');
    Ok(if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    })
}

async fn get_bounded(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| without_url(&e))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    read_bounded(resp).await
}

async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| without_url(&e))? {
        if out.len() + chunk.len() > MAX_DOC {
            return Err(format!("document larger than {MAX_DOC} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    s
}

/// The control-plane HTTP client (JWKS, metadata, introspection): short
/// timeouts, no redirects, TLS with the system's roots.
pub fn control_plane_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_order_for_issuer_with_path() {
        assert_eq!(
            metadata_urls("https://idp.example/tenant1").unwrap(),
            vec![
                "https://idp.example/.well-known/oauth-authorization-server/tenant1",
                "https://idp.example/.well-known/openid-configuration/tenant1",
                "https://idp.example/tenant1/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn discovery_order_for_issuer_without_path() {
        assert_eq!(
            metadata_urls("https://idp.example").unwrap(),
            vec![
                "https://idp.example/.well-known/oauth-authorization-server",
                "https://idp.example/.well-known/openid-configuration",
            ]
        );
    }
}
