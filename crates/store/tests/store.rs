//! Store behaviour, run against both backends: SQLite in a temporary
//! directory and PostgreSQL in a fresh schema per test.
//!
//! PostgreSQL is expected at `postgres://postgres@127.0.0.1:5432/test`
//! (override with `MCPGATE_TEST_POSTGRES_URL`). If it is unreachable the
//! PostgreSQL tests fail, unless `MCPGATE_TEST_SKIP_POSTGRES=1`.

// `allow-unwrap-in-tests` covers `#[test]` functions only, not this file's
// harness and per-backend bodies, which are test code all the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mcpgate_store::{ApiKeyRecord, DEFAULT_TENANT, Store, StoreError, open};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tempfile::TempDir;

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// One test database; [`Db::open`] gives a new handle, like a new process.
struct Db {
    url: String,
    kind: Kind,
}

enum Kind {
    Sqlite { _dir: TempDir },
    Postgres { base_url: String, schema: String },
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        Db {
            url,
            kind: Kind::Sqlite { _dir: dir },
        }
    }

    /// `None` only when PostgreSQL tests are explicitly skipped.
    async fn postgres() -> Option<Db> {
        if std::env::var("MCPGATE_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("skipping PostgreSQL: MCPGATE_TEST_SKIP_POSTGRES=1");
            return None;
        }
        let base_url =
            std::env::var("MCPGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.to_owned());
        let schema = unique_schema();
        let mut conn = PgConnection::connect(&base_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {base_url} is unreachable ({e}); set MCPGATE_TEST_SKIP_POSTGRES=1 to skip")
        });
        conn.execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .unwrap();
        conn.close().await.unwrap();
        // The user-facing way to keep mcpgate in its own schema.
        let sep = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{sep}options[search_path]={schema}");
        Some(Db {
            url,
            kind: Kind::Postgres { base_url, schema },
        })
    }

    async fn open(&self) -> Arc<dyn Store> {
        open(&self.url).await.unwrap()
    }

    /// Runs `sql` on a plain connection of the test database.
    async fn execute(&self, sql: &'static str) {
        match &self.kind {
            Kind::Sqlite { .. } => {
                let url = format!("{}?mode=rwc", self.url);
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                conn.execute(sql).await.unwrap();
                conn.close().await.unwrap();
            }
            Kind::Postgres { .. } => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                conn.execute(sql).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    async fn cleanup(self) {
        if let Kind::Postgres { base_url, schema } = &self.kind {
            let mut conn = PgConnection::connect(base_url).await.unwrap();
            conn.execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .unwrap();
        }
    }
}

fn unique_schema() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Defines each test once per backend: `NAME::sqlite` and `NAME::postgres`.
macro_rules! both_backends {
    ($(async fn $name:ident($db:ident: &Db) $body:block)*) => {$(
        mod $name {
            use super::*;

            async fn run($db: &Db) $body

            #[tokio::test]
            async fn sqlite() {
                let db = Db::sqlite();
                run(&db).await;
                db.cleanup().await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(db) = Db::postgres().await else { return };
                run(&db).await;
                db.cleanup().await;
            }
        }
    )*};
}

fn key(tenant: &str, id: &str, created_at: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        tenant_id: tenant.to_owned(),
        id: id.to_owned(),
        name: format!("key {id}"),
        route: "github".to_owned(),
        scopes: vec!["repo:read".to_owned(), "issues:write".to_owned()],
        secret_hash: vec![0xA5; 32],
        created_at,
        expires_at: Some(created_at + 3600),
        revoked_at: None,
    }
}

both_backends! {
    async fn ping_answers_and_backend_is_named(db: &Db) {
        let store = db.open().await;
        store.ping().await.unwrap();
        let expected = match db.kind {
            Kind::Sqlite { .. } => "sqlite",
            Kind::Postgres { .. } => "postgres",
        };
        assert_eq!(store.backend(), expected);
        assert_eq!(format!("{store:?}"), format!("SqlStore {{ backend: {expected:?}, .. }}"));
    }

    async fn api_key_round_trip(db: &Db) {
        let store = db.open().await;
        let mut rec = key(DEFAULT_TENANT, "k_1", 1_700_000_000);
        rec.secret_hash = (0u8..32).collect();
        store.insert_api_key(&rec).await.unwrap();

        let got = store.api_key(DEFAULT_TENANT, "k_1").await.unwrap();
        assert_eq!(got, Some(rec.clone()));
        let got = got.unwrap();
        assert_eq!(got.scopes, ["repo:read", "issues:write"]);
        assert_eq!(got.secret_hash, (0u8..32).collect::<Vec<u8>>());
        assert_eq!(got.expires_at, Some(1_700_003_600));

        assert_eq!(store.api_key(DEFAULT_TENANT, "k_2").await.unwrap(), None);
    }

    async fn api_key_without_scopes_or_expiry_round_trips(db: &Db) {
        let store = db.open().await;
        let rec = ApiKeyRecord {
            scopes: vec![],
            expires_at: None,
            revoked_at: Some(5),
            ..key(DEFAULT_TENANT, "bare", 1)
        };
        store.insert_api_key(&rec).await.unwrap();
        assert_eq!(store.api_key(DEFAULT_TENANT, "bare").await.unwrap(), Some(rec));
    }

    async fn list_is_ordered_by_created_at_then_id(db: &Db) {
        let store = db.open().await;
        // Inserted out of order; "B" < "a" bytewise, whatever the locale.
        for (id, at) in [("c", 20), ("b", 10), ("a", 20), ("B", 20), ("z", 5)] {
            store.insert_api_key(&key(DEFAULT_TENANT, id, at)).await.unwrap();
        }
        let listed: Vec<(String, i64)> = store
            .list_api_keys(DEFAULT_TENANT)
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.id, k.created_at))
            .collect();
        let expected = [("z", 5), ("b", 10), ("B", 20), ("a", 20), ("c", 20)]
            .map(|(id, at)| (id.to_owned(), at));
        assert_eq!(listed, expected);
    }

    async fn revoke_is_idempotent_and_keeps_first_time(db: &Db) {
        let store = db.open().await;
        store.insert_api_key(&key(DEFAULT_TENANT, "k", 1)).await.unwrap();

        assert!(store.revoke_api_key(DEFAULT_TENANT, "k", 100).await.unwrap());
        assert!(!store.revoke_api_key(DEFAULT_TENANT, "k", 200).await.unwrap());
        let got = store.api_key(DEFAULT_TENANT, "k").await.unwrap().unwrap();
        assert_eq!(got.revoked_at, Some(100));
        assert_eq!(got, ApiKeyRecord { revoked_at: Some(100), ..key(DEFAULT_TENANT, "k", 1) });

        assert!(!store.revoke_api_key(DEFAULT_TENANT, "missing", 100).await.unwrap());
    }

    async fn tenant_isolation_other_tenant_sees_nothing(db: &Db) {
        let store = db.open().await;
        let mine = key(DEFAULT_TENANT, "shared-id", 1);
        store.insert_api_key(&mine).await.unwrap();

        assert_eq!(store.api_key("acme", "shared-id").await.unwrap(), None);
        assert_eq!(store.list_api_keys("acme").await.unwrap(), vec![]);
        assert!(!store.revoke_api_key("acme", "shared-id", 9).await.unwrap());
        assert_eq!(store.api_key(DEFAULT_TENANT, "shared-id").await.unwrap(), Some(mine.clone()));

        // Ids are unique per tenant only.
        let theirs = ApiKeyRecord { name: "theirs".to_owned(), ..key("acme", "shared-id", 2) };
        store.insert_api_key(&theirs).await.unwrap();
        assert_eq!(store.list_api_keys("acme").await.unwrap(), vec![theirs]);
        assert_eq!(store.list_api_keys(DEFAULT_TENANT).await.unwrap(), vec![mine]);
    }

    async fn duplicate_id_is_rejected(db: &Db) {
        let store = db.open().await;
        let first = key(DEFAULT_TENANT, "dup", 1);
        store.insert_api_key(&first).await.unwrap();

        let second = ApiKeyRecord { name: "second".to_owned(), ..key(DEFAULT_TENANT, "dup", 2) };
        let err = store.insert_api_key(&second).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate), "{err:?}");
        assert_eq!(store.list_api_keys(DEFAULT_TENANT).await.unwrap(), vec![first]);
    }

    async fn secret_hash_must_be_32_bytes(db: &Db) {
        let store = db.open().await;
        for len in [0, 31, 33] {
            let rec = ApiKeyRecord { secret_hash: vec![1; len], ..key(DEFAULT_TENANT, "h", 1) };
            let err = store.insert_api_key(&rec).await.unwrap_err();
            assert!(matches!(err, StoreError::Database(_)), "{len} bytes: {err:?}");
        }
        assert_eq!(store.list_api_keys(DEFAULT_TENANT).await.unwrap(), vec![]);
    }

    async fn migrations_are_idempotent_on_reopen(db: &Db) {
        let rec = key(DEFAULT_TENANT, "persist", 1);
        {
            let store = db.open().await;
            store.insert_api_key(&rec).await.unwrap();
        }
        for _ in 0..2 {
            let store = db.open().await;
            assert_eq!(store.list_api_keys(DEFAULT_TENANT).await.unwrap(), vec![rec.clone()]);
        }
    }

    async fn concurrent_first_opens_all_succeed(db: &Db) {
        // Several processes starting against a fresh database: migrations
        // must be applied exactly once and nobody may fail.
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { open(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for handle in opens {
            stores.push(handle.await.unwrap().unwrap());
        }
        stores[0].insert_api_key(&key(DEFAULT_TENANT, "k", 1)).await.unwrap();
        for store in &stores {
            assert_eq!(store.list_api_keys(DEFAULT_TENANT).await.unwrap().len(), 1);
        }
    }

    async fn failed_migration_is_reported_and_does_not_block_later_opens(db: &Db) {
        // Someone else's `api_keys` table makes migration 0001 fail.
        db.execute("CREATE TABLE api_keys (x INTEGER)").await;
        let err = open(&db.url).await.unwrap_err();
        assert!(matches!(err, StoreError::Migrate(_)), "{err:?}");

        // PostgreSQL's migration lock is per database, so a lock leaked by
        // the failed attempt would hang this open of another schema.
        let other = match db.kind {
            Kind::Sqlite { .. } => Db::sqlite(),
            Kind::Postgres { .. } => Db::postgres().await.unwrap(),
        };
        let store = tokio::time::timeout(std::time::Duration::from_secs(10), other.open())
            .await
            .expect("open blocked by a leaked migration lock");
        store.ping().await.unwrap();
        other.cleanup().await;
    }

    async fn two_handles_see_each_others_writes(db: &Db) {
        // A running `serve` and an admin CLI command on the same database.
        let serve = db.open().await;
        let cli = db.open().await;

        let rec = key(DEFAULT_TENANT, "k", 1);
        cli.insert_api_key(&rec).await.unwrap();
        assert_eq!(serve.api_key(DEFAULT_TENANT, "k").await.unwrap(), Some(rec));

        assert!(cli.revoke_api_key(DEFAULT_TENANT, "k", 42).await.unwrap());
        let seen = serve.api_key(DEFAULT_TENANT, "k").await.unwrap().unwrap();
        assert_eq!(seen.revoked_at, Some(42));
        assert!(!serve.revoke_api_key(DEFAULT_TENANT, "k", 43).await.unwrap());

        serve.insert_api_key(&key(DEFAULT_TENANT, "k2", 2)).await.unwrap();
        let ids: Vec<String> =
            cli.list_api_keys(DEFAULT_TENANT).await.unwrap().into_iter().map(|k| k.id).collect();
        assert_eq!(ids, ["k", "k2"]);
    }
}

#[tokio::test]
async fn unsupported_url_scheme_is_rejected() {
    for (url, what) in [
        (
            "mysql://admin:hunter2@db.internal/mcpgate",
            "scheme `mysql`",
        ),
        ("gateway.db", "no scheme"),
        ("sqlite://", "empty SQLite path"),
    ] {
        let err = open(url).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::UnsupportedUrl(w) if w == what),
            "{url}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("sqlite://") && message.contains("postgres://"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }
}

#[tokio::test]
async fn postgres_connection_error_does_not_reveal_password() {
    // Port 1: nothing listens there, the connection is refused at once.
    let err = open("postgres://admin:hunter2@127.0.0.1:1/mcpgate")
        .await
        .unwrap_err();
    // Reported at once, with the cause, not as a pool timeout 30 s later.
    assert!(
        matches!(err, StoreError::Database(sqlx::Error::Io(_))),
        "{err:?}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
}

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    assert!(!path.exists());
    let store = open(&format!("sqlite://{}", path.display())).await.unwrap();
    assert!(path.exists());

    // A separate, plain connection, like another process.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(tables, ["_sqlx_migrations", "api_keys"]);
    drop(store);
}

#[tokio::test]
async fn sqlite_missing_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("absent/gateway.db").display()
    );
    let err = open(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(!dir.path().join("absent").exists());
}
