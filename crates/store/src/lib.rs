//! Persistent state for the mcpgate gateway: one [`Store`] trait, two SQL
//! backends, and their migrations.
//!
//! # Trust boundary
//!
//! The store holds what the gateway must remember across restarts (API keys
//! today) and is shared by the running `serve` process and admin CLI commands.
//! It never sees a secret: callers hash secrets (in `mcpgate-crypto`) before
//! they reach this crate, and only the 32-byte hash is written. Anyone who
//! reads the database learns key ids, names, routes and scopes, not keys.
//! Lookups compare ids, not secrets; constant-time comparison of the hash is
//! the caller's job.
//!
//! # Tenancy
//!
//! Every row belongs to a tenant (`tenant_id` column, part of the primary key)
//! and every query filters by tenant: a tenant cannot read, list or revoke
//! another tenant's rows, and ids only need to be unique within a tenant.
//! Single-tenant deployments use [`DEFAULT_TENANT`].
//!
//! # Backends
//!
//! [`open`] picks the backend from the URL:
//!
//! - `sqlite://PATH` (`sqlite://gateway.db` is relative to the working
//!   directory, `sqlite:///var/lib/mcpgate/gateway.db` is absolute). The file
//!   is created if missing; its directory is not. The database runs in WAL
//!   mode with `synchronous=FULL` (an acknowledged revocation survives power
//!   loss) and a 5 s busy timeout, so a `serve` process and a CLI command can
//!   use it at the same time.
//! - `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or `postgresql://`),
//!   with the usual libpq-style query parameters (`sslmode`, …). To keep
//!   mcpgate's tables in their own, existing schema, add
//!   `?options[search_path]=SCHEMA`.
//!
//! Migrations are embedded in the binary and applied on every [`open`];
//! applying them is idempotent and safe when several processes open the same
//! database at once.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

mod migrate;
mod sql;

/// The tenant of single-tenant deployments.
pub const DEFAULT_TENANT: &str = "default";

/// An API key as stored: metadata plus the hash of its secret.
///
/// Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub tenant_id: String,
    /// Unique within the tenant; the public half of the key.
    pub id: String,
    /// Human label shown by the admin CLI.
    pub name: String,
    /// The gateway route this key grants access to.
    pub route: String,
    /// Granted scopes. Scope tokens contain no whitespace (RFC 6749 §3.3),
    /// which is what lets the store keep them space-separated in one column.
    pub scopes: Vec<String>,
    /// 32-byte hash of the secret; the database rejects any other length.
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL names no backend this crate supports. Carries what
    /// was wrong with it, never the URL itself (it may hold a password).
    #[error(
        "unsupported database URL ({0}): expected sqlite://PATH or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl(String),
    /// The database could not be reached or rejected a statement.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date, e.g. the database was
    /// migrated by a newer mcpgate or an applied migration was edited.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row with the same key (tenant and id) already exists.
    #[error("a record with this id already exists")]
    Duplicate,
}

/// Persistent gateway state. Implementations are cheap to share (`Arc`) and
/// safe to use from several processes at once.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts a new key; [`StoreError::Duplicate`] if `(tenant_id, id)` is taken.
    async fn insert_api_key(&self, rec: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key `id` of `tenant`, revoked or expired ones included.
    async fn api_key(&self, tenant: &str, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// All keys of `tenant`, ordered by `created_at`, then `id` (bytewise).
    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Marks the key revoked at `at`. Returns `true` if the key existed and
    /// was not revoked yet; an earlier revocation time is never overwritten.
    async fn revoke_api_key(&self, tenant: &str, id: &str, at: i64) -> Result<bool, StoreError>;

    /// The backend's name: `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
}

/// Opens the database at `url`, applying pending migrations.
///
/// See the [crate documentation](crate) for the accepted URLs. Fails at once
/// if the database is unreachable; a SQLite database that another process is
/// creating or migrating is waited for (up to the 5 s busy timeout). Errors
/// never contain the URL's password.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let store = match scheme(url) {
        Some("sqlite") => sql::SqlStore::open_sqlite(url).await?,
        Some("postgres" | "postgresql") => sql::SqlStore::open_postgres(url).await?,
        // Only the scheme is echoed: it cannot contain a password.
        Some(other) => return Err(StoreError::UnsupportedUrl(format!("scheme `{other}`"))),
        None => return Err(StoreError::UnsupportedUrl("no scheme".to_owned())),
    };
    tracing::debug!(
        backend = store.backend(),
        "store opened, migrations applied"
    );
    Ok(Arc::new(store))
}

/// The URL's scheme (RFC 3986 §3.1), if it has one.
fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_the_part_before_the_first_colon() {
        assert_eq!(scheme("sqlite://a.db"), Some("sqlite"));
        assert_eq!(scheme("sqlite:a.db"), Some("sqlite"));
        assert_eq!(scheme("postgresql://u:p@h/db"), Some("postgresql"));
        assert_eq!(scheme("gateway.db"), None);
        assert_eq!(scheme("://x"), None);
        assert_eq!(scheme("/tmp/a:b"), None);
    }
}
