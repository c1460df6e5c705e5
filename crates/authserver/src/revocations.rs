//! Revoked grants and access tokens, as the gateway sees them.
//!
//! Access tokens are JWTs verified without a database read; revoking one
//! (RFC 7009), revoking its grant, or detecting a replayed code or a reused
//! refresh token must still stop it at the gateway before it expires. The
//! [`RevocationList`] holds, in memory, every revocation younger than the
//! access-token lifetime: this process's own are added at once, other
//! processes' (replicas, `mcpgate grants revoke`) are polled from storage
//! every [`POLL_INTERVAL`]. The check on the request path is one read lock
//! and a hash lookup, skipped entirely while the list is empty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mcpgate_crypto::jwt::{Claims, Jwks, KeySource};
use mcpgate_store::{DEFAULT_TENANT, Revocation, Store};

use crate::KeyRing;

/// How often other processes' revocations are picked up.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Sets {
    /// Grant id → when the entry may be forgotten.
    grants: HashMap<String, i64>,
    /// Token `jti` → when the entry may be forgotten.
    jtis: HashMap<String, i64>,
}

#[derive(Debug)]
pub struct RevocationList {
    sets: RwLock<Sets>,
    any: AtomicBool,
    /// Entries are kept this long after the revocation (the access-token
    /// lifetime plus clock skew): no token they stop can outlive that.
    keep_secs: i64,
}

impl RevocationList {
    pub fn new(access_token_ttl_secs: u64) -> Self {
        Self {
            sets: RwLock::new(Sets::default()),
            any: AtomicBool::new(false),
            keep_secs: access_token_ttl_secs as i64 + 120,
        }
    }

    pub fn add_grant(&self, grant_id: &str, revoked_at: i64) {
        let mut s = self.sets.write().unwrap_or_else(|p| p.into_inner());
        s.grants
            .insert(grant_id.to_owned(), revoked_at + self.keep_secs);
        self.any.store(true, Ordering::Release);
    }

    pub fn add_jti(&self, jti: &str, revoked_at: i64) {
        let mut s = self.sets.write().unwrap_or_else(|p| p.into_inner());
        s.jtis.insert(jti.to_owned(), revoked_at + self.keep_secs);
        self.any.store(true, Ordering::Release);
    }

    pub fn is_revoked(&self, claims: &Claims) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let s = self.sets.read().unwrap_or_else(|p| p.into_inner());
        claims
            .gid
            .as_ref()
            .is_some_and(|g| s.grants.contains_key(g))
            || claims.jti.as_ref().is_some_and(|j| s.jtis.contains_key(j))
    }

    fn apply(&self, revs: &[Revocation], now: i64) {
        let mut s = self.sets.write().unwrap_or_else(|p| p.into_inner());
        for r in revs {
            match r {
                Revocation::Grant {
                    grant_id,
                    revoked_at,
                } => {
                    s.grants
                        .insert(grant_id.clone(), revoked_at + self.keep_secs);
                }
                Revocation::Token { jti, revoked_at } => {
                    s.jtis.insert(jti.clone(), revoked_at + self.keep_secs);
                }
            }
        }
        s.grants.retain(|_, until| *until > now);
        s.jtis.retain(|_, until| *until > now);
        self.any.store(
            !s.grants.is_empty() || !s.jtis.is_empty(),
            Ordering::Release,
        );
    }

    /// Loads every revocation still relevant at `now`.
    pub async fn sync(
        &self,
        store: &dyn Store,
        since: i64,
        now: i64,
    ) -> Result<(), mcpgate_store::StoreError> {
        let revs = store.revocations_since(DEFAULT_TENANT, since).await?;
        self.apply(&revs, now);
        Ok(())
    }

    /// Polls storage for other processes' revocations, forever.
    pub fn spawn_poller(self: &Arc<Self>, store: Arc<dyn Store>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut last = crate::now() - me.keep_secs;
            loop {
                let t = crate::now();
                // Overlap by a few seconds: replicas' clocks differ, and a
                // revocation committed during the previous poll is not lost.
                match me.sync(&*store, last - 10, t).await {
                    Ok(()) => last = t,
                    Err(e) => tracing::warn!(error = %e, "could not read revocations"),
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        });
    }
}

/// The built-in issuer as the gateway's key source: the signing keys'
/// JWKS, and the revocation list.
#[derive(Debug)]
pub struct LocalIssuer {
    pub keys: Arc<KeyRing>,
    pub revoked: Arc<RevocationList>,
}

impl KeySource for LocalIssuer {
    fn jwks(&self) -> Arc<Jwks> {
        self.keys.jwks()
    }

    fn is_revoked(&self, claims: &Claims) -> bool {
        self.revoked.is_revoked(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(gid: Option<&str>, jti: Option<&str>) -> Claims {
        Claims {
            iss: "i".into(),
            sub: None,
            aud: vec![],
            client_id: None,
            scope: Default::default(),
            exp: 0,
            nbf: None,
            iat: None,
            jti: jti.map(str::to_owned),
            gid: gid.map(str::to_owned),
            groups: Vec::new(),
            roles: Vec::new(),
        }
    }

    #[test]
    fn rfc7009_revoked_grant_and_token_are_recognised_until_they_age_out() {
        let l = RevocationList::new(600);
        assert!(!l.is_revoked(&claims(Some("g1"), Some("j1"))));
        l.add_grant("g1", 1000);
        l.add_jti("j2", 1000);
        assert!(l.is_revoked(&claims(Some("g1"), Some("x"))));
        assert!(l.is_revoked(&claims(None, Some("j2"))));
        assert!(!l.is_revoked(&claims(Some("g2"), Some("j1"))));
        // Still there while tokens it stops may live, gone after.
        l.apply(&[], 1000 + 600);
        assert!(l.is_revoked(&claims(Some("g1"), None)));
        l.apply(&[], 1000 + 720);
        assert!(!l.is_revoked(&claims(Some("g1"), None)));
        assert!(!l.is_revoked(&claims(None, Some("j2"))));
        l.apply(
            &[Revocation::Grant {
                grant_id: "g3".into(),
                revoked_at: 2000,
            }],
            2000,
        );
        assert!(l.is_revoked(&claims(Some("g3"), None)));
    }
}
