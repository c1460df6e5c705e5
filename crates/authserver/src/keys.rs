//! Signing keys: generated here, sealed under the master key, kept in
//! storage, rotated without a gap.
//!
//! A tenant has one `current` key (signs), one `next` key (published in the
//! JWKS, signs nothing yet) and any number of `retired` keys (published
//! until every token they signed has expired, then deleted). Rotation
//! promotes `next` to `current` and retires the old `current` in one
//! transaction, so a key is always published before it signs, and replicas
//! that rotate at the same moment cannot both succeed. Every replica reloads
//! the key set periodically, so tokens signed by another replica's newer key
//! verify here too.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use mcpgate_crypto::jwt::{Jwks, KeySource};
use mcpgate_crypto::master::MasterKey;
use mcpgate_crypto::signing::{self, SigningKey};
use mcpgate_store::{DEFAULT_TENANT, KeyState, SigningKeyRecord, Store, StoreError};

/// How often every replica rereads the key set.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Master(#[from] mcpgate_crypto::master::MasterKeyError),
    #[error("key generation failed")]
    Generate,
    #[error("no current signing key in storage")]
    NoCurrentKey,
}

/// What the token endpoint signs with and the JWKS publishes.
#[derive(Debug)]
struct Loaded {
    signer: Arc<SigningKey>,
    jwks_doc: serde_json::Value,
    jwks: Arc<Jwks>,
    current_activated_at: i64,
}

#[derive(Debug)]
pub struct KeyRing {
    store: Arc<dyn Store>,
    master: MasterKey,
    tenant: String,
    /// Tokens live at most this long; a retired key stays published that
    /// long plus the allowed clock skew.
    token_ttl: i64,
    rotation_period: i64,
    loaded: RwLock<Arc<Loaded>>,
}

fn aad(tenant: &str, kid: &str) -> Vec<u8> {
    format!("mcpgate-signing-key\u{1f}{tenant}\u{1f}{kid}").into_bytes()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl KeyRing {
    /// Loads the key set, creating the first `current` and `next` keys on
    /// first start.
    pub async fn open(
        store: Arc<dyn Store>,
        master: MasterKey,
        token_ttl_secs: u64,
        rotation_days: u64,
    ) -> Result<Arc<Self>, KeyError> {
        let tenant = DEFAULT_TENANT.to_owned();
        if store.signing_keys(&tenant).await?.is_empty() {
            let t = now();
            let current = new_record(&master, &tenant, KeyState::Current, t)?;
            let next = new_record(&master, &tenant, KeyState::Next, t)?;
            // Two replicas starting together: the loser's insert of a second
            // current key is refused by the schema; it then loads the
            // winner's keys.
            match store.insert_signing_key(&current).await {
                Ok(()) => store.insert_signing_key(&next).await?,
                Err(StoreError::Duplicate) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(kid = %current.kid, "created the first signing keys");
        }
        let loaded = load(&*store, &master, &tenant).await?;
        Ok(Arc::new(Self {
            store,
            master,
            tenant,
            token_ttl: token_ttl_secs as i64,
            rotation_period: (rotation_days * 86_400) as i64,
            loaded: RwLock::new(Arc::new(loaded)),
        }))
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A MAC key for `label` derived from the master key (shared by every
    /// replica that shares the master key).
    pub fn derive_mac(&self, label: &str) -> mcpgate_crypto::mac::Mac {
        self.master.derive_mac(label)
    }

    pub fn signer(&self) -> Arc<SigningKey> {
        self.current().signer.clone()
    }

    pub fn jwks_document(&self) -> serde_json::Value {
        self.current().jwks_doc.clone()
    }

    /// Rereads the key set from storage.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let l = load(&*self.store, &self.master, &self.tenant).await?;
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(l);
        Ok(())
    }

    /// Rotates now: `next` signs from now on, a new `next` is published,
    /// the old `current` stays published until its tokens have expired.
    /// Returns the new current kid, or `None` if another replica rotated
    /// first (the key set is reloaded either way).
    pub async fn rotate(&self) -> Result<Option<String>, KeyError> {
        let t = now();
        let keys = self.store.signing_keys(&self.tenant).await?;
        let next = keys
            .iter()
            .find(|k| k.state == KeyState::Next)
            .map(|k| k.kid.clone());
        let new_next = new_record(&self.master, &self.tenant, KeyState::Next, t)?;
        let rotated = match next {
            Some(next_kid) => {
                let until = t + self.token_ttl + 60;
                self.store
                    .rotate_signing_keys(&self.tenant, &next_kid, &new_next, t, until)
                    .await?
                    .then_some(next_kid)
            }
            None => {
                // A set without a `next` key (should not happen): add one;
                // the promotion happens at the next rotation.
                self.store.insert_signing_key(&new_next).await?;
                None
            }
        };
        self.store
            .delete_expired_signing_keys(&self.tenant, t)
            .await?;
        self.reload().await?;
        if let Some(k) = &rotated {
            tracing::info!(kid = %k, "rotated the signing key");
        }
        Ok(rotated)
    }

    /// Reloads periodically and rotates when the current key is older than
    /// the rotation period. Runs until the ring is dropped.
    pub fn spawn_maintenance(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let Some(ring) = weak.upgrade() else { return };
                let due = ring.current().current_activated_at + ring.rotation_period <= now();
                let r = if due {
                    ring.rotate().await.map(|_| ())
                } else {
                    ring.reload().await
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "signing key maintenance failed");
                }
            }
        });
    }
}

impl KeySource for KeyRing {
    fn jwks(&self) -> Arc<Jwks> {
        self.current().jwks.clone()
    }
}

fn new_record(
    master: &MasterKey,
    tenant: &str,
    state: KeyState,
    t: i64,
) -> Result<SigningKeyRecord, KeyError> {
    let g = signing::generate().map_err(|_| KeyError::Generate)?;
    let private_key_enc = master.seal(&aad(tenant, &g.kid), &g.pkcs8)?;
    Ok(SigningKeyRecord {
        tenant_id: tenant.to_owned(),
        kid: g.kid,
        alg: "ES256".into(),
        state,
        private_key_enc,
        public_jwk: g.public_jwk.to_string(),
        created_at: t,
        activated_at: (state == KeyState::Current).then_some(t),
        retired_at: None,
        publish_until: None,
    })
}

async fn load(store: &dyn Store, master: &MasterKey, tenant: &str) -> Result<Loaded, KeyError> {
    let keys = store.signing_keys(tenant).await?;
    let t = now();
    let current = keys
        .iter()
        .find(|k| k.state == KeyState::Current)
        .ok_or(KeyError::NoCurrentKey)?;
    let pkcs8 = master.open(&aad(tenant, &current.kid), &current.private_key_enc)?;
    let signer = Arc::new(SigningKey::from_pkcs8(&pkcs8).map_err(|_| KeyError::Generate)?);
    let published: Vec<serde_json::Value> = keys
        .iter()
        .filter(|k| k.state != KeyState::Retired || k.publish_until.is_some_and(|u| u >= t))
        .filter_map(|k| serde_json::from_str(&k.public_jwk).ok())
        .collect();
    let jwks_doc = serde_json::json!({ "keys": published });
    let jwks =
        Arc::new(Jwks::parse(jwks_doc.to_string().as_bytes()).map_err(|_| KeyError::NoCurrentKey)?);
    Ok(Loaded {
        signer,
        jwks_doc,
        jwks,
        current_activated_at: current.activated_at.unwrap_or(current.created_at),
    })
}

/// Key listing for `mcpgate keys list` (never key material).
pub async fn list(store: &dyn Store) -> Result<Vec<SigningKeyRecord>, StoreError> {
    store.signing_keys(DEFAULT_TENANT).await
}
