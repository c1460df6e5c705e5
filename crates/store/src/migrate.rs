//! Embedded migrations, one list per backend, and how each backend applies
//! them safely while other processes open the same database.
//!
//! The migrator is built by hand from `include_str!`ed files instead of with
//! `sqlx::migrate!()`: that macro needs sqlx's `macros` feature, which would
//! compile the SQLite and PostgreSQL drivers a second time, into the
//! proc-macro. Versions, descriptions and checksums are what `sqlx migrate`
//! would record for these files, so sqlx-cli can still inspect a database.

use std::borrow::Cow;

use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::SqlitePool;
use sqlx::{Connection, SqlSafeStr};

use crate::StoreError;

/// `(version, description, sql)`, in version order. Append; never edit an
/// applied entry (its checksum is recorded and checked on every open). The
/// description is the file name's, `_` read as a space, as `sqlx migrate` has it.
type Migrations = &'static [(i64, &'static str, &'static str)];

const SQLITE: Migrations = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "authorization server",
        include_str!("../migrations/sqlite/0002_authorization_server.sql"),
    ),
    (
        3,
        "users",
        include_str!("../migrations/sqlite/0003_users.sql"),
    ),
    (
        4,
        "grants",
        include_str!("../migrations/sqlite/0004_grants.sql"),
    ),
    (
        5,
        "audit",
        include_str!("../migrations/sqlite/0005_audit.sql"),
    ),
    (
        6,
        "audit compact",
        include_str!("../migrations/sqlite/0006_audit_compact.sql"),
    ),
];

const POSTGRES: Migrations = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "authorization server",
        include_str!("../migrations/postgres/0002_authorization_server.sql"),
    ),
    (
        3,
        "users",
        include_str!("../migrations/postgres/0003_users.sql"),
    ),
    (
        4,
        "grants",
        include_str!("../migrations/postgres/0004_grants.sql"),
    ),
    (
        5,
        "audit",
        include_str!("../migrations/postgres/0005_audit.sql"),
    ),
    (
        6,
        "audit compact",
        include_str!("../migrations/postgres/0006_audit_compact.sql"),
    ),
];

fn migrator(migrations: Migrations) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// `Migrator::run(conn)`, minus the `Acquire` indirection.
///
/// Awaiting `Migrator::run` on a `&mut` connection makes the caller's future
/// fail "implementation of `Acquire` is not general enough" wherever it must
/// be `Send` (e.g. `tokio::spawn(open(..))`): a rustc limitation with sqlx's
/// higher-ranked `Acquire` bound. `run_direct` is what `run` calls once it
/// has the connection; sqlx made it public for exactly this ("Getting around
/// the annoying ... error", sqlx-core 0.9 `migrator.rs`) and its test support
/// calls it. It is `#[doc(hidden)]`: should an upgrade remove it, this stops
/// compiling rather than misbehaving. `tests/store.rs` spawns `open`, which
/// keeps the future `Send`.
async fn run<C: Migrate>(migrator: &Migrator, conn: &mut C) -> Result<(), MigrateError> {
    migrator.run_direct(None, conn, false).await
}

/// Applies pending SQLite migrations.
///
/// sqlx's SQLite migrator takes no lock (its `lock()` is a no-op), so two
/// processes opening a fresh file at once could both apply `0001` and one
/// would fail. Running the whole migrator inside `BEGIN IMMEDIATE` takes
/// SQLite's write lock up front: the other process waits (busy timeout), then
/// finds the migrations applied. sqlx nests the migrator's own per-migration
/// transactions as savepoints.
pub(crate) async fn sqlite(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    run(&migrator(SQLITE), &mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Applies pending PostgreSQL migrations on a connection of their own.
///
/// sqlx serialises concurrent migrators with a session-level advisory lock
/// (`pg_advisory_lock`, keyed by the database name; sqlx-postgres 0.9
/// `migrate.rs`), but when a migration fails it returns without unlocking.
/// Closing this connection ends the session and so releases the lock, where
/// a pooled connection would keep holding it and block every later `open`.
/// Connecting directly also reports why the server is unreachable at once;
/// a pool retries a refused connection until its acquire timeout (30 s) and
/// then reports only `PoolTimedOut`.
pub(crate) async fn postgres(options: &PgConnectOptions) -> Result<(), StoreError> {
    let mut conn = PgConnection::connect_with(options).await?;
    let result = run(&migrator(POSTGRES), &mut conn).await;
    if let Err(err) = conn.close().await {
        // The session is gone either way, and with it the advisory lock.
        tracing::debug!(%err, "closing the migration connection failed");
    }
    Ok(result?)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_lists_are_ordered_and_start_at_one() {
        for list in [SQLITE, POSTGRES] {
            let versions: Vec<i64> = list.iter().map(|&(v, _, _)| v).collect();
            let expected: Vec<i64> = (1..=list.len() as i64).collect();
            assert_eq!(versions, expected);
        }
        assert_eq!(SQLITE.len(), POSTGRES.len(), "backends must stay in step");
    }

    /// A database written at version 5 keeps its audit chain through 0006
    /// (the tables rebuilt WITHOUT ROWID, the time index dropped), and the
    /// store reads it back unchanged.
    #[tokio::test]
    async fn sqlite_0006_keeps_a_version_5_audit_chain() {
        use std::str::FromStr as _;

        use sqlx::sqlite::SqliteConnectOptions;

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("v5.db").display());
        {
            let options = SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options).await.unwrap();
            let mut conn = pool.acquire().await.unwrap();
            run(&migrator(&SQLITE[..5]), &mut *conn).await.unwrap();
            for seq in 1..=3_i64 {
                sqlx::query(
                    "INSERT INTO audit_records (chain_id, seq, time_ms, kind, route, outcome, \
                     policy_ids, latency_us, prev_hash, hash, tag) \
                     VALUES ('main', ?1, ?2, 'mcp_request', '/mcp', 'ok', '[]', ?3, ?4, ?5, ?6)",
                )
                .bind(seq)
                .bind(1_000 * seq)
                .bind(10 * seq)
                .bind(vec![u8::try_from(seq - 1).unwrap(); 32])
                .bind(vec![u8::try_from(seq).unwrap(); 32])
                .bind(format!("tag{seq}"))
                .execute(&mut *conn)
                .await
                .unwrap();
            }
            sqlx::query("INSERT INTO audit_heads VALUES ('main', 3, ?1, 'head')")
                .bind(vec![3_u8; 32])
                .execute(&mut *conn)
                .await
                .unwrap();
            drop(conn);
            pool.close().await;
        }

        let store = crate::open_audit(&url).await.unwrap();
        let records = store.audit_records("main", 0, None, 10).await.unwrap();
        let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        let last = &records[2];
        assert_eq!(
            (last.time_ms, last.latency_us, last.route.as_deref()),
            (3_000, Some(30), Some("/mcp"))
        );
        assert_eq!(
            (last.prev_hash[0], last.hash[0], last.tag.as_str()),
            (2, 3, "tag3")
        );
        let head = store.audit_head("main").await.unwrap().unwrap();
        assert_eq!((head.seq, head.hash[0], head.tag.as_str()), (3, 3, "head"));
        assert_eq!(
            store.audit_first_seq_since("main", 1_500).await.unwrap(),
            Some(2)
        );

        let conn = rusqlite::Connection::open(dir.path().join("v5.db")).unwrap();
        let schema = |name: &str| -> Option<String> {
            conn.query_row(
                "SELECT sql FROM sqlite_master WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .ok()
        };
        for table in ["audit_records", "audit_heads"] {
            let sql = schema(table).unwrap();
            assert!(sql.contains("WITHOUT ROWID"), "{sql}");
        }
        assert_eq!(schema("audit_records_chain_time"), None);
    }
}
