//! The SQL implementation of [`Store`], shared by both backends.
//!
//! Queries are written once, with `$N` placeholders, which PostgreSQL and
//! sqlx's SQLite driver both bind by number, and dispatched to the backend's
//! pool by [`with_pool!`] (reads), [`with_writer!`] (one write statement)
//! or [`with_write_tx!`] (several statements in one write transaction).
//! Every query on a tenant's rows filters by `tenant_id`. API keys live
//! here; the authorization server's tables in the submodules.
//!
//! On SQLite, which admits one writer at a time, this process's writes go
//! through one connection of their own: they queue for it in the pool
//! (first come, first served) instead of meeting in SQLite's busy handler,
//! which sleeps 1, 2, 5, 10 … ms between attempts whatever the lock's
//! holder does. Reads use the other connections and, in WAL mode, are not
//! blocked by the writer. Other processes (admin commands, replicas on the
//! same file) still meet this one in the busy handler.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{
    ApiKeyRecord, AuthCodeRecord, ClientRecord, CodeRedemption, ConsentRecord, GrantRecord,
    LoginThrottle, RefreshExchange, RefreshRotation, RefreshTokenRecord, Revocation,
    SigningKeyRecord, Store, StoreError, UserRecord, migrate,
};

/// How long a SQLite connection waits for another process's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts to open a database another process is creating.
const SQLITE_BUSY_RETRY: Duration = Duration::from_millis(25);
/// Connections for concurrent reads (SQLite); writes have one of their own.
const SQLITE_READ_CONNECTIONS: u32 = 4;
const POSTGRES_MAX_CONNECTIONS: u32 = 8;

pub(crate) struct SqlStore {
    pool: Pool,
}

enum Pool {
    /// Boxed: its direct connections make it much larger than a `PgPool`.
    Sqlite(Box<SqlitePools>),
    Postgres(PgPool),
}

/// One SQLite database file, opened twice.
struct SqlitePools {
    /// [`SQLITE_READ_CONNECTIONS`] connections for reads.
    read: SqlitePool,
    /// One connection, for every write of this process through sqlx.
    write: Arc<WritePool>,
    /// Refresh token rotations waiting to be committed together.
    rotations: Arc<rotation::RotationQueue>,
    /// The audit trail's own connection (see `audit_sqlite`).
    audit: audit_sqlite::AuditConnection,
    /// API-key lookups, run on the caller's thread (see `SqlStore::api_key`).
    lookups: direct::LazyConnection,
}

/// Evaluates `$body` with `$pool` bound to the backend's concrete pool for
/// reads: the same tokens are type-checked once per backend.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite(pools) => {
                let $pool = &pools.read;
                $body
            }
            Pool::Postgres($pool) => $body,
        }
    };
}

/// As [`with_pool!`], with `$pool` bound to the pool for writes.
macro_rules! with_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite(pools) => {
                let write = pools.write.lock().await;
                let $pool = &*write;
                $body
            }
            Pool::Postgres($pool) => $body,
        }
    };
}

/// Evaluates `$body` with `$tx` bound to a new write transaction on the
/// backend's pool. `$body` commits; if it returns first (`?`, `return`),
/// dropping `$tx` rolls back.
macro_rules! with_write_tx {
    ($store:expr, $tx:ident => $body:expr) => {
        match &$store.pool {
            // IMMEDIATE takes SQLite's write lock at BEGIN, where the busy
            // timeout applies. A deferred transaction reads first and takes
            // the lock at its first write; if another connection committed
            // in between, that upgrade fails with SQLITE_BUSY_SNAPSHOT,
            // which the busy timeout does not retry.
            Pool::Sqlite(pools) => {
                let write = pools.write.lock().await;
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            Pool::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                $body
            }
        }
    };
}

/// The write connection, and the gate that every write of this process
/// takes first: writes through this pool and the audit trail's appends on
/// its own connection (see `audit_sqlite`).
///
/// SQLite lets one connection write at a time; another that tries gets
/// `SQLITE_BUSY` and waits in its busy handler, which sleeps 1, 2, 5 … ms
/// between attempts. Behind the gate, this process's writers wait their
/// turn in a queue instead and find the database's write lock free (other
/// processes sharing the file still meet in the busy handler). The audit
/// trail used to take this pool's connection for the same effect, but
/// sqlx pings a connection each time it is released: a round trip through
/// the connection's thread and a runtime worker between two appends.
pub(super) struct WritePool {
    gate: tokio::sync::Mutex<()>,
    pool: SqlitePool,
}

/// [`WritePool::lock`]: the pool, while the gate is held.
pub(super) struct WriteLock<'a> {
    _gate: tokio::sync::MutexGuard<'a, ()>,
    pool: &'a SqlitePool,
}

impl WritePool {
    fn new(pool: SqlitePool) -> Self {
        Self {
            gate: tokio::sync::Mutex::new(()),
            pool,
        }
    }

    /// Waits for this process's other writes to finish (fairly, in
    /// order of arrival).
    pub(super) async fn lock(&self) -> WriteLock<'_> {
        WriteLock {
            _gate: self.gate.lock().await,
            pool: &self.pool,
        }
    }
}

impl std::ops::Deref for WriteLock<'_> {
    type Target = SqlitePool;

    fn deref(&self) -> &SqlitePool {
        self.pool
    }
}

// Declared after the macros, which are in scope in them.
mod audit;
mod audit_sqlite;
mod clients;
mod consents;
mod direct;
mod grants;
mod rotation;
mod signing_keys;
mod users;

impl SqlStore {
    pub(crate) async fn open_sqlite(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?;
        if options.get_filename().as_os_str().is_empty() {
            // SQLite would open a private temporary database per connection.
            return Err(StoreError::UnsupportedUrl("empty SQLite path".to_owned()));
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL would be safe from corruption under WAL but could lose
            // the last commits on power loss; admin changes (revocations)
            // must stick once acknowledged.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        // Every connection runs `PRAGMA journal_mode = WAL`. Switching a new
        // (rollback-journal) file to WAL takes an exclusive lock that SQLite
        // requests without calling the busy handler, so when two processes
        // create the database at the same moment one gets SQLITE_BUSY at
        // once. Retry that until the busy timeout; once the file is in WAL
        // mode (which persists), the pragma takes no such lock.
        let deadline = Instant::now() + SQLITE_BUSY_TIMEOUT;
        let write = loop {
            let pool = sqlite_pool(1).connect_with(options.clone()).await;
            match pool {
                Err(sqlx::Error::Database(err)) if is_busy(&*err) && Instant::now() < deadline => {
                    tokio::time::sleep(SQLITE_BUSY_RETRY).await;
                }
                pool => break pool?,
            }
        };
        migrate::sqlite(&write).await?;
        // The file is in WAL mode now: opening it takes no exclusive lock.
        let audit = audit_sqlite::AuditConnection::new(options.get_filename());
        // Never waits for a lock: see `SqlStore::api_key`.
        let lookups = direct::LazyConnection::new(options.get_filename(), Duration::ZERO);
        let read = sqlite_pool(SQLITE_READ_CONNECTIONS).connect_lazy_with(options);
        Ok(Self {
            pool: Pool::Sqlite(Box::new(SqlitePools {
                read,
                write: Arc::new(WritePool::new(write)),
                rotations: Arc::default(),
                audit,
                lookups,
            })),
        })
    }

    pub(crate) async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        // Connects, so an unreachable server fails `open` here.
        migrate::postgres(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .connect_lazy_with(options);
        Ok(Self {
            pool: Pool::Postgres(pool),
        })
    }
}

/// Pool options for SQLite connections. No ping before each use: the
/// database is a local file, a ping is a round trip to the connection's
/// thread, and a broken connection fails its next statement anyway.
fn sqlite_pool(connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(connections)
        .test_before_acquire(false)
}

// Hand-written so that nothing about the connection (options, credentials)
// can end up in logs.
impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// `api_keys` columns in the order of [`ApiKeyRow`].
type ApiKeyRow = (
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<i64>,
);

const INSERT_API_KEY: &str = "INSERT INTO api_keys \
    (tenant_id, id, name, route, scopes, secret_hash, created_at, expires_at, revoked_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const SELECT_API_KEY: &str = "SELECT \
    tenant_id, id, name, route, scopes, secret_hash, created_at, expires_at, revoked_at \
    FROM api_keys WHERE tenant_id = $1 AND id = $2";
const LIST_API_KEYS: &str = "SELECT \
    tenant_id, id, name, route, scopes, secret_hash, created_at, expires_at, revoked_at \
    FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id";
const REVOKE_API_KEY: &str = "UPDATE api_keys SET revoked_at = $3 \
    WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL";

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }

    async fn insert_api_key(&self, rec: &ApiKeyRecord) -> Result<(), StoreError> {
        let scopes = rec.scopes.join(" ");
        let result = with_writer!(self, pool => {
            sqlx::query(INSERT_API_KEY)
                .bind(rec.tenant_id.as_str())
                .bind(rec.id.as_str())
                .bind(rec.name.as_str())
                .bind(rec.route.as_str())
                .bind(scopes.as_str())
                .bind(rec.secret_hash.as_slice())
                .bind(rec.created_at)
                .bind(rec.expires_at)
                .bind(rec.revoked_at)
                .execute(pool)
                .await
                .map(drop)
        });
        result.map_err(insert_error)
    }

    async fn api_key(&self, tenant: &str, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        // Every request authenticated by a key reads it here, so that a
        // revocation stops the next request, also from another process.
        // Through sqlx the read is two hand-offs to a connection's worker
        // thread, which cost the gateway more CPU than the rest of the
        // request (measured in crates/bench/README.md); on SQLite it runs
        // here instead: one indexed read of a cached page, which in WAL
        // mode no writer blocks. It never waits: when another thread is
        // using the connection, or the read fails (another connection
        // holds a lock it needs, rare in WAL mode; a file the direct
        // connection cannot use), the read goes through sqlx as before,
        // which waits for locks and reports errors.
        if let Pool::Sqlite(pools) = &self.pool
            && let Some(Ok(found)) = pools
                .lookups
                .try_with(|conn| api_key_direct(conn, tenant, id))
        {
            return Ok(found);
        }
        let row = with_pool!(self, pool => {
            sqlx::query_as::<_, ApiKeyRow>(SELECT_API_KEY)
                .bind(tenant)
                .bind(id)
                .fetch_optional(pool)
                .await
        })?;
        Ok(row.map(api_key_from_row))
    }

    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = with_pool!(self, pool => {
            sqlx::query_as::<_, ApiKeyRow>(LIST_API_KEYS)
                .bind(tenant)
                .fetch_all(pool)
                .await
        })?;
        Ok(rows.into_iter().map(api_key_from_row).collect())
    }

    async fn revoke_api_key(&self, tenant: &str, id: &str, at: i64) -> Result<bool, StoreError> {
        // One conditional UPDATE: atomic on both backends, so of two racing
        // revocations exactly one wins and its time is kept.
        let updated = with_writer!(self, pool => {
            sqlx::query(REVOKE_API_KEY)
                .bind(tenant)
                .bind(id)
                .bind(at)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })?;
        Ok(updated == 1)
    }

    async fn insert_signing_key(&self, rec: &SigningKeyRecord) -> Result<(), StoreError> {
        signing_keys::insert(self, rec).await
    }

    async fn signing_keys(&self, tenant: &str) -> Result<Vec<SigningKeyRecord>, StoreError> {
        signing_keys::list(self, tenant).await
    }

    async fn rotate_signing_keys(
        &self,
        tenant: &str,
        next_kid: &str,
        new_next: &SigningKeyRecord,
        now: i64,
        retire_publish_until: i64,
    ) -> Result<bool, StoreError> {
        signing_keys::rotate(self, tenant, next_kid, new_next, now, retire_publish_until).await
    }

    async fn delete_expired_signing_keys(&self, tenant: &str, now: i64) -> Result<u64, StoreError> {
        signing_keys::delete_expired(self, tenant, now).await
    }

    async fn insert_client(&self, rec: &ClientRecord) -> Result<(), StoreError> {
        clients::insert(self, rec).await
    }

    async fn client(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, StoreError> {
        clients::get(self, tenant, client_id).await
    }

    async fn list_clients(&self, tenant: &str) -> Result<Vec<ClientRecord>, StoreError> {
        clients::list(self, tenant).await
    }

    async fn delete_client(&self, tenant: &str, client_id: &str) -> Result<bool, StoreError> {
        clients::delete(self, tenant, client_id).await
    }

    async fn rotate_client_secret(
        &self,
        tenant: &str,
        client_id: &str,
        new_hash: &[u8],
        old_valid_until: i64,
    ) -> Result<bool, StoreError> {
        clients::rotate_secret(self, tenant, client_id, new_hash, old_valid_until).await
    }

    async fn touch_client(&self, tenant: &str, client_id: &str, at: i64) -> Result<(), StoreError> {
        clients::touch(self, tenant, client_id, at).await
    }

    async fn delete_unused_registrations(
        &self,
        tenant: &str,
        created_before: i64,
    ) -> Result<u64, StoreError> {
        clients::delete_unused_registrations(self, tenant, created_before).await
    }

    async fn insert_user(&self, rec: &UserRecord) -> Result<(), StoreError> {
        users::insert(self, rec).await
    }

    async fn user(&self, tenant: &str, username: &str) -> Result<Option<UserRecord>, StoreError> {
        users::get(self, tenant, username).await
    }

    async fn list_users(&self, tenant: &str) -> Result<Vec<UserRecord>, StoreError> {
        users::list(self, tenant).await
    }

    async fn set_user_disabled(
        &self,
        tenant: &str,
        username: &str,
        disabled_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        users::set_disabled(self, tenant, username, disabled_at).await
    }

    async fn set_user_password(
        &self,
        tenant: &str,
        username: &str,
        password_hash: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        users::set_password(self, tenant, username, password_hash, at).await
    }

    async fn record_login_failure(
        &self,
        tenant: &str,
        username: &str,
        at: i64,
        lock_after: u32,
        lock_for_secs: i64,
    ) -> Result<Option<LoginThrottle>, StoreError> {
        users::record_failure(self, tenant, username, at, lock_after, lock_for_secs).await
    }

    async fn record_login_success(
        &self,
        tenant: &str,
        username: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        users::record_success(self, tenant, username, at).await
    }

    async fn insert_auth_code(&self, rec: &AuthCodeRecord) -> Result<(), StoreError> {
        grants::insert_code(self, rec).await
    }

    async fn redeem_auth_code(
        &self,
        tenant: &str,
        code_hash: &[u8],
        at: i64,
    ) -> Result<CodeRedemption, StoreError> {
        grants::redeem_code(self, tenant, code_hash, at).await
    }

    async fn delete_expired_auth_codes(
        &self,
        tenant: &str,
        before: i64,
    ) -> Result<u64, StoreError> {
        grants::delete_expired_codes(self, tenant, before).await
    }

    async fn insert_grant(
        &self,
        grant: &GrantRecord,
        refresh: Option<&RefreshTokenRecord>,
    ) -> Result<(), StoreError> {
        grants::insert(self, grant, refresh).await
    }

    async fn grant(&self, tenant: &str, grant_id: &str) -> Result<Option<GrantRecord>, StoreError> {
        grants::get(self, tenant, grant_id).await
    }

    async fn rotate_refresh_token(
        &self,
        tenant: &str,
        client_id: &str,
        old_hash: &[u8],
        new: &RefreshTokenRecord,
        at: i64,
    ) -> Result<RefreshRotation, StoreError> {
        match &self.pool {
            Pool::Sqlite(pools) => {
                let exchange = RefreshExchange {
                    tenant_id: tenant.to_owned(),
                    client_id: client_id.to_owned(),
                    old_hash: old_hash.to_vec(),
                    new: new.clone(),
                    at,
                };
                pools.rotations.rotate(&pools.write, exchange).await
            }
            Pool::Postgres(_) => {
                grants::rotate_refresh(self, tenant, client_id, old_hash, new, at).await
            }
        }
    }

    async fn rotate_refresh_tokens(
        &self,
        batch: &[RefreshExchange],
    ) -> Result<Vec<Result<RefreshRotation, StoreError>>, StoreError> {
        match &self.pool {
            Pool::Sqlite(pools) => rotation::rotate_batch(&pools.write, batch).await,
            Pool::Postgres(_) => {
                let mut results = Vec::with_capacity(batch.len());
                for e in batch {
                    let r = grants::rotate_refresh(
                        self,
                        &e.tenant_id,
                        &e.client_id,
                        &e.old_hash,
                        &e.new,
                        e.at,
                    )
                    .await;
                    results.push(r);
                }
                Ok(results)
            }
        }
    }

    async fn refresh_token(
        &self,
        tenant: &str,
        token_hash: &[u8],
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        grants::refresh_token(self, tenant, token_hash).await
    }

    async fn grant_of_refresh_token(
        &self,
        tenant: &str,
        token_hash: &[u8],
    ) -> Result<Option<GrantRecord>, StoreError> {
        grants::of_refresh_token(self, tenant, token_hash).await
    }

    async fn revoke_grant(
        &self,
        tenant: &str,
        grant_id: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        grants::revoke(self, tenant, grant_id, at).await
    }

    async fn revoke_grants_of(
        &self,
        tenant: &str,
        subject: &str,
        client_id: &str,
        resource: Option<&str>,
        at: i64,
    ) -> Result<u64, StoreError> {
        grants::revoke_of(self, tenant, subject, client_id, resource, at).await
    }

    async fn revoke_access_token(
        &self,
        tenant: &str,
        jti: &str,
        revoked_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        grants::revoke_access_token(self, tenant, jti, revoked_at, expires_at).await
    }

    async fn revocations_since(
        &self,
        tenant: &str,
        since: i64,
    ) -> Result<Vec<Revocation>, StoreError> {
        grants::revocations_since(self, tenant, since).await
    }

    async fn delete_expired_tokens(&self, tenant: &str, before: i64) -> Result<u64, StoreError> {
        grants::delete_expired_tokens(self, tenant, before).await
    }

    async fn upsert_consent(&self, rec: &ConsentRecord) -> Result<(), StoreError> {
        consents::upsert(self, rec).await
    }

    async fn consent(
        &self,
        tenant: &str,
        subject: &str,
        client_id: &str,
        resource: &str,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        consents::get(self, tenant, subject, client_id, resource).await
    }

    async fn list_consents(
        &self,
        tenant: &str,
        subject: Option<&str>,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        consents::list(self, tenant, subject).await
    }

    async fn delete_consents(
        &self,
        tenant: &str,
        subject: &str,
        client_id: &str,
        resource: Option<&str>,
    ) -> Result<u64, StoreError> {
        consents::delete(self, tenant, subject, client_id, resource).await
    }

    async fn record_assertion_jti(
        &self,
        tenant: &str,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        grants::record_assertion_jti(self, tenant, client_id, jti, expires_at, now).await
    }

    fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }
}

/// An INSERT's error: a unique violation (primary key or unique index) is
/// [`StoreError::Duplicate`].
fn insert_error(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate,
        _ => StoreError::Database(err),
    }
}

/// SQLITE_BUSY, whatever its extended code (`database is locked`).
fn is_busy(err: &dyn sqlx::error::DatabaseError) -> bool {
    const SQLITE_BUSY: i32 = 5;
    err.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

/// [`SELECT_API_KEY`] on a direct connection (see `SqlStore::api_key`).
fn api_key_direct(
    conn: &mut rusqlite::Connection,
    tenant: &str,
    id: &str,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    use rusqlite::OptionalExtension as _;
    let row = conn
        .prepare_cached(SELECT_API_KEY)?
        .query_row([tenant, id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
        .optional()?;
    Ok(row.map(api_key_from_row))
}

fn api_key_from_row(row: ApiKeyRow) -> ApiKeyRecord {
    let (tenant_id, id, name, route, scopes, secret_hash, created_at, expires_at, revoked_at) = row;
    ApiKeyRecord {
        tenant_id,
        id,
        name,
        route,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        secret_hash,
        created_at,
        expires_at,
        revoked_at,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn key(id: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            tenant_id: crate::DEFAULT_TENANT.to_owned(),
            id: id.to_owned(),
            name: "k".to_owned(),
            route: "/mcp".to_owned(),
            scopes: vec!["mcp".to_owned()],
            secret_hash: vec![7; 32],
            created_at: 1,
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn direct_connection_is_not_waited_for_while_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "journal_mode", "WAL")
            .unwrap();
        let conn = direct::LazyConnection::new(&path, Duration::ZERO);
        let inner = conn
            .with(|_| Ok(conn.try_with(|_| Ok(())).is_none()))
            .unwrap();
        assert!(inner, "try_with must not wait for the connection's user");
        assert!(matches!(conn.try_with(|_| Ok(1)), Some(Ok(1))));
    }

    /// The direct read never waits: while another thread uses its
    /// connection, the lookup goes through sqlx and still answers; and a
    /// revocation written through the store's other connection is seen by
    /// the very next lookup, on either path.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_api_key_lookup_sees_revocation_at_once_on_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = SqlStore::open_sqlite(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let id = "00000000000000aa";
        store.insert_api_key(&key(id)).await.unwrap();
        let direct = store.api_key(crate::DEFAULT_TENANT, id).await.unwrap();
        assert_eq!(direct, Some(key(id)));
        assert!(
            store
                .revoke_api_key(crate::DEFAULT_TENANT, id, 5)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .api_key(crate::DEFAULT_TENANT, id)
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(5)
        );
        let Pool::Sqlite(pools) = &store.pool else {
            unreachable!()
        };
        let handle = tokio::runtime::Handle::current();
        let through_sqlx = tokio::task::block_in_place(|| {
            pools.lookups.with(|_| {
                // The direct connection is busy: this lookup must not wait
                // for it (it would never get it: this thread holds it).
                Ok(handle.block_on(store.api_key(crate::DEFAULT_TENANT, id)))
            })
        })
        .unwrap()
        .unwrap()
        .unwrap();
        assert_eq!(through_sqlx.revoked_at, Some(5));
        assert_eq!(
            store
                .api_key(crate::DEFAULT_TENANT, "00000000000000bb")
                .await
                .unwrap(),
            None
        );
    }

    #[test]
    fn sqlite_url_path_is_relative_unless_it_starts_with_a_slash() {
        let relative = SqliteConnectOptions::from_str("sqlite://gateway.db").unwrap();
        assert_eq!(relative.get_filename(), Path::new("gateway.db"));
        let absolute = SqliteConnectOptions::from_str("sqlite:///var/lib/gw.db").unwrap();
        assert_eq!(absolute.get_filename(), Path::new("/var/lib/gw.db"));
    }
}
