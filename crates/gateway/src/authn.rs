//! Authentication: turns the `Authorization` header into a [`Principal`].
//!
//! Three kinds of credential are accepted, told apart by shape:
//! - `mcpg_…` API keys, looked up in storage on every request so a
//!   revocation takes effect on the next one;
//! - JWT access tokens from a trusted issuer (RFC 9068), verified against its
//!   JWKS; verified signatures are cached by the token's SHA-256 so the
//!   signature is checked once per token, while issuer, audience and time are
//!   checked on every request;
//! - other (opaque) tokens, introspected at the issuer (RFC 7662), with the
//!   answer cached no longer than the token lives and at most a minute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use mcpgate_core::ScopeSet;
use mcpgate_crypto::cache_key::CacheKeyer;
use mcpgate_crypto::{apikey, jwt};
use mcpgate_store::{DEFAULT_TENANT, Store};
use serde_json::Value;

use crate::error::{AuthFailure, Reject};
use crate::issuers::Issuer;

/// Allowed clock skew for `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;
const CACHE_MAX: usize = 16_384;
const INTROSPECTION_TTL: u64 = 60;

const ANONYMOUS_PARTITION: &str = "anon";

/// Who is calling, as far as the gateway knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// `sub` of a token; `apikey:<id>` for an API key; `anonymous`.
    pub subject: String,
    pub client_id: Option<String>,
    /// Scopes as granted (before the hierarchy is applied).
    pub scopes: ScopeSet,
    /// `scopes`, space-delimited (computed once, sent upstream).
    pub scope_string: String,
    pub issuer: Option<String>,
    /// The token's `groups` and `roles` claims (for access policies).
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// [`Principal::partition_key`], computed once: a token's principal is
    /// cached and serves every request bearing it.
    partition: String,
    /// [`Principal::header_values`], made once for the same reason.
    header_values: HeaderValues,
}

/// The identity headers' values for a principal (`[identity_headers]`):
/// `None` where there is nothing to say, or where the text is not a valid
/// header value (the header is then left out).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderValues {
    pub subject: Option<http::HeaderValue>,
    pub client_id: Option<http::HeaderValue>,
    pub scopes: Option<http::HeaderValue>,
}

impl HeaderValues {
    fn new(subject: &str, client_id: Option<&str>, scopes: &str) -> Self {
        let value = |v: &str| http::HeaderValue::from_str(v).ok();
        Self {
            subject: value(subject),
            client_id: client_id.and_then(value),
            scopes: value(scopes),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    Token,
    ApiKey { id: String },
    Anonymous,
}

impl Principal {
    pub fn new(
        kind: PrincipalKind,
        subject: String,
        client_id: Option<String>,
        scopes: ScopeSet,
        issuer: Option<String>,
    ) -> Self {
        let partition = match &kind {
            PrincipalKind::Token => format!(
                "tok\u{1f}{}\u{1f}{}",
                issuer.as_deref().unwrap_or(""),
                subject
            ),
            PrincipalKind::ApiKey { id } => format!("key\u{1f}{id}"),
            PrincipalKind::Anonymous => ANONYMOUS_PARTITION.to_owned(),
        };
        let scope_string = scopes.to_space_delimited();
        let header_values = HeaderValues::new(&subject, client_id.as_deref(), &scope_string);
        Self {
            kind,
            subject,
            client_id,
            scope_string,
            scopes,
            issuer,
            groups: Vec::new(),
            roles: Vec::new(),
            partition,
            header_values,
        }
    }

    /// With the credential's groups and roles.
    pub fn with_groups(mut self, groups: Vec<String>, roles: Vec<String>) -> Self {
        self.groups = groups;
        self.roles = roles;
        self
    }

    pub fn anonymous() -> Self {
        Self {
            kind: PrincipalKind::Anonymous,
            subject: "anonymous".into(),
            client_id: None,
            scopes: ScopeSet::new(),
            scope_string: String::new(),
            issuer: None,
            groups: Vec::new(),
            roles: Vec::new(),
            partition: ANONYMOUS_PARTITION.to_owned(),
            header_values: HeaderValues::default(),
        }
    }

    /// A stable key identifying this principal for per-principal state
    /// (stdio children, sessions, rate limits): issuer and subject, or the
    /// key id.
    pub fn partition_key(&self) -> &str {
        &self.partition
    }

    /// The values of the identity headers set on requests forwarded for
    /// this principal.
    pub fn header_values(&self) -> &HeaderValues {
        &self.header_values
    }
}

/// The route-specific facts authentication checks against.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    pub resource: &'a str,
    pub route_path: &'a str,
}

#[derive(Debug)]
pub struct Authenticator {
    issuers: Vec<Arc<Issuer>>,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    /// Verified credentials by [`CacheKeyer::key`] of the token.
    cache: Mutex<HashMap<u128, Cached>>,
    keyer: CacheKeyer,
}

#[derive(Debug, Clone)]
enum Cached {
    Jwt {
        issuer: usize,
        claims: Arc<jwt::Claims>,
        principal: Arc<Principal>,
    },
    Introspected {
        until: u64,
        principal: Arc<Principal>,
        aud: Vec<String>,
        issuer: usize,
    },
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// Fails only if the system's random source does (the cache's key).
    pub fn new(
        issuers: Vec<Arc<Issuer>>,
        http: reqwest::Client,
        store: Arc<dyn Store>,
    ) -> Result<Self, mcpgate_crypto::Unspecified> {
        Ok(Self {
            issuers,
            http,
            store,
            cache: Mutex::new(HashMap::new()),
            keyer: CacheKeyer::new()?,
        })
    }

    pub fn issuers(&self) -> &[Arc<Issuer>] {
        &self.issuers
    }

    /// Validates a bearer credential for a route.
    pub async fn authenticate(
        &self,
        token: &str,
        aud: Audience<'_>,
    ) -> Result<Arc<Principal>, Reject> {
        if apikey::looks_like_api_key(token) {
            return self.api_key(token, aud).await;
        }
        if token.len() > jwt::MAX_TOKEN_LEN {
            return Err(Reject::InvalidToken(AuthFailure::Jwt(
                jwt::JwtError::TooLong,
            )));
        }
        let digest = self.keyer.key(token.as_bytes());
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
            .cloned();
        match cached {
            Some(Cached::Jwt {
                issuer,
                claims,
                principal,
            }) => {
                self.check_jwt(issuer, &claims, aud)?;
                Ok(principal)
            }
            Some(Cached::Introspected {
                until,
                principal,
                aud: auds,
                issuer,
            }) if until > now() => {
                self.check_introspected_audience(issuer, &auds, aud)?;
                Ok(principal)
            }
            _ if token.split('.').count() == 3 => self.verify_jwt(token, digest, aud).await,
            _ => self.introspect(token, digest, aud).await,
        }
    }

    fn check_jwt(
        &self,
        issuer: usize,
        claims: &jwt::Claims,
        aud: Audience<'_>,
    ) -> Result<(), Reject> {
        let iss = self
            .issuers
            .get(issuer)
            .ok_or(Reject::InvalidToken(AuthFailure::UntrustedIssuer))?;
        let only_resource = [aud.resource];
        let with_extra: Vec<&str>;
        let audiences: &[&str] = if iss.extra_audiences.is_empty() {
            &only_resource
        } else {
            with_extra = std::iter::once(aud.resource)
                .chain(iss.extra_audiences.iter().map(String::as_str))
                .collect();
            &with_extra
        };
        claims
            .check(&jwt::Expectations {
                issuer: iss.issuer(),
                audiences,
                now: now(),
                leeway: LEEWAY_SECS,
            })
            .map_err(|e| Reject::InvalidToken(e.into()))?;
        if iss.is_revoked(claims) {
            return Err(Reject::InvalidToken(AuthFailure::Revoked));
        }
        Ok(())
    }

    async fn verify_jwt(
        &self,
        token: &str,
        digest: u128,
        aud: Audience<'_>,
    ) -> Result<Arc<Principal>, Reject> {
        let invalid = |f: AuthFailure| Reject::InvalidToken(f);
        let Some(iss_claim) = unverified_issuer(token) else {
            // Not a JWT after all: an opaque token may have two dots too.
            if self.issuers.iter().any(|i| i.introspects()) {
                return self.introspect(token, digest, aud).await;
            }
            return Err(invalid(jwt::JwtError::Malformed.into()));
        };
        let idx = self
            .issuers
            .iter()
            .position(|i| i.issuer() == iss_claim)
            .ok_or(invalid(AuthFailure::UntrustedIssuer))?;
        let issuer = &self.issuers[idx];
        let header = jwt::peek_header(token, &issuer.algorithms).map_err(|e| invalid(e.into()))?;
        let jwks = issuer
            .jwks_for(&self.http, header.kid.as_deref())
            .await
            .map_err(invalid)?;
        let claims = jwt::verify_signature(token, &header, &jwks).map_err(|e| invalid(e.into()))?;
        self.check_jwt(idx, &claims, aud)?;
        let principal = Arc::new(
            Principal::new(
                PrincipalKind::Token,
                claims
                    .sub
                    .clone()
                    .or_else(|| claims.client_id.clone())
                    .unwrap_or_default(),
                claims.client_id.clone(),
                claims.scope.clone(),
                Some(claims.iss.clone()),
            )
            .with_groups(claims.groups.clone(), claims.roles.clone()),
        );
        self.remember(
            digest,
            Cached::Jwt {
                issuer: idx,
                claims: Arc::new(claims),
                principal: principal.clone(),
            },
        );
        Ok(principal)
    }

    async fn introspect(
        &self,
        token: &str,
        digest: u128,
        aud: Audience<'_>,
    ) -> Result<Arc<Principal>, Reject> {
        let invalid = |f: AuthFailure| Reject::InvalidToken(f);
        // Offered to each issuer that introspects, in configuration order,
        // until one says it is active (an opaque token does not say whose
        // it is). One that cannot answer does not stop the others: the
        // token may be another's.
        let mut tried = false;
        let mut unavailable = None;
        for (idx, issuer) in self.issuers.iter().enumerate() {
            let doc = match issuer.introspect(&self.http, token).await {
                Ok(Some(doc)) => doc,
                Ok(None) => continue,
                Err(e) => {
                    unavailable.get_or_insert(e);
                    continue;
                }
            };
            tried = true;
            if doc.get("active").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            if let Some(iss) = doc.get("iss").and_then(Value::as_str)
                && iss != issuer.issuer()
            {
                return Err(invalid(AuthFailure::Jwt(jwt::JwtError::WrongIssuer)));
            }
            let auds: Vec<String> = match doc.get("aud") {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let exp = doc.get("exp").and_then(Value::as_u64);
            let now = now();
            if exp.is_some_and(|e| e + LEEWAY_SECS <= now) {
                return Err(invalid(AuthFailure::Jwt(jwt::JwtError::Expired)));
            }
            self.check_introspected_audience(idx, &auds, aud)?;
            let scopes = doc
                .get("scope")
                .and_then(Value::as_str)
                .and_then(|s| ScopeSet::parse(s).ok())
                .unwrap_or_default();
            let client_id = doc
                .get("client_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let principal = Arc::new(Principal::new(
                PrincipalKind::Token,
                doc.get("sub")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| client_id.clone())
                    .unwrap_or_default(),
                client_id,
                scopes,
                Some(issuer.issuer().to_owned()),
            ));
            let until = exp
                .unwrap_or(now + INTROSPECTION_TTL)
                .min(now + INTROSPECTION_TTL);
            self.remember(
                digest,
                Cached::Introspected {
                    until,
                    principal: principal.clone(),
                    aud: auds,
                    issuer: idx,
                },
            );
            return Ok(principal);
        }
        // No issuer vouched for it. If one could not answer, the token may
        // be that issuer's: say so rather than call it inactive.
        Err(invalid(match unavailable {
            Some(e) => e,
            None if tried => AuthFailure::Inactive,
            None => AuthFailure::NoIntrospection,
        }))
    }

    /// An introspected token must name this resource (or a configured
    /// alternative) in `aud`; one without `aud` cannot be shown to be ours.
    fn check_introspected_audience(
        &self,
        issuer: usize,
        auds: &[String],
        aud: Audience<'_>,
    ) -> Result<(), Reject> {
        let extra = self
            .issuers
            .get(issuer)
            .map(|i| i.extra_audiences.as_slice())
            .unwrap_or_default();
        let ok = auds
            .iter()
            .any(|a| a == aud.resource || extra.iter().any(|e| e == a));
        if ok {
            Ok(())
        } else {
            Err(Reject::InvalidToken(AuthFailure::Jwt(
                jwt::JwtError::WrongAudience,
            )))
        }
    }

    async fn api_key(&self, token: &str, aud: Audience<'_>) -> Result<Arc<Principal>, Reject> {
        let invalid = |f: AuthFailure| Reject::InvalidToken(f);
        let presented = apikey::parse(token).ok_or(invalid(AuthFailure::UnknownApiKey))?;
        let rec = self
            .store
            .api_key(DEFAULT_TENANT, presented.id)
            .await
            .map_err(|e| Reject::StoreUnavailable(e.to_string()))?
            .ok_or(invalid(AuthFailure::UnknownApiKey))?;
        if !presented.matches(&rec.secret_hash) {
            return Err(invalid(AuthFailure::UnknownApiKey));
        }
        if rec.revoked_at.is_some() {
            return Err(invalid(AuthFailure::RevokedApiKey));
        }
        if rec.expires_at.is_some_and(|e| e <= now() as i64) {
            return Err(invalid(AuthFailure::ExpiredApiKey));
        }
        if rec.route != aud.route_path {
            return Err(invalid(AuthFailure::ApiKeyOtherRoute));
        }
        let scopes = rec
            .scopes
            .iter()
            .filter_map(|s| mcpgate_core::Scope::new(s).ok())
            .collect();
        Ok(Arc::new(Principal::new(
            PrincipalKind::ApiKey { id: rec.id.clone() },
            format!("apikey:{}", rec.id),
            None,
            scopes,
            None,
        )))
    }

    fn remember(&self, digest: u128, entry: Cached) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= CACHE_MAX {
            // Crude but bounded: expired and live entries go alike; live
            // tokens are simply verified again.
            c.clear();
        }
        c.insert(digest, entry);
    }
}

/// The `iss` claim of a JWT before verification, used only to pick which
/// issuer's keys to verify with (verification then checks it exactly).
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    serde_json::from_slice::<Iss>(&bytes).ok().map(|i| i.iss)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issuer: &str, subject: &str) -> Principal {
        Principal::new(
            PrincipalKind::Token,
            subject.to_owned(),
            Some("client".to_owned()),
            ScopeSet::new(),
            Some(issuer.to_owned()),
        )
    }

    /// The identity headers' values are made with the principal: a subject
    /// that is not a valid header value (a line break, say) is left out
    /// rather than forwarded or made to fail the request.
    #[test]
    fn header_values_are_made_once_and_invalid_text_is_left_out() {
        let p = Principal::new(
            PrincipalKind::Token,
            "alice".to_owned(),
            Some("cli\nent".to_owned()),
            ScopeSet::parse("mcp files:read").unwrap(),
            Some("iss".to_owned()),
        );
        let v = p.header_values();
        assert_eq!(v.subject.as_ref().unwrap(), "alice");
        assert_eq!(v.client_id, None);
        assert_eq!(v.scopes.as_ref().unwrap(), "files:read mcp");
        assert_eq!(
            Principal::anonymous().header_values(),
            &HeaderValues::default()
        );
    }

    /// Per-principal state (stdio children, session bindings, limits) is
    /// keyed by this: one caller always gets the same key, and callers
    /// that differ in issuer, subject or kind do not share one (issuers are
    /// URLs from the configuration, which hold no U+001F separator).
    #[test]
    fn partition_key_separates_issuer_subject_and_kind() {
        assert_eq!(
            token("a", "b").partition_key(),
            token("a", "b").partition_key()
        );
        let key = |id: &str| {
            Principal::new(
                PrincipalKind::ApiKey { id: id.to_owned() },
                format!("apikey:{id}"),
                None,
                ScopeSet::new(),
                None,
            )
        };
        let all = [
            token("a", "b").partition_key().to_owned(),
            token("a", "c").partition_key().to_owned(),
            token("x", "b").partition_key().to_owned(),
            token("a\u{1f}b", "").partition_key().to_owned(),
            token("", "a\u{1f}b").partition_key().to_owned(),
            key("b").partition_key().to_owned(),
            Principal::anonymous().partition_key().to_owned(),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Groups and roles do not make another caller.
        assert_eq!(
            token("a", "b")
                .with_groups(vec!["g".into()], vec![])
                .partition_key(),
            token("a", "b").partition_key()
        );
    }
}
