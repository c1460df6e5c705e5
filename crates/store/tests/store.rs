//! Store behaviour, run against both backends: SQLite in a temporary
//! directory and PostgreSQL in a fresh schema per test.
//!
//! PostgreSQL is expected at `postgres://postgres@127.0.0.1:5432/test`
//! (override with `MCPGATE_TEST_POSTGRES_URL`). If it is unreachable the
//! PostgreSQL tests fail, unless `MCPGATE_TEST_SKIP_POSTGRES=1`.

// `allow-unwrap-in-tests` covers `#[test]` functions only, not this file's
// harness and per-backend bodies, which are test code all the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mcpgate_store::{
    ApiKeyRecord, AuthCodeRecord, ClientRecord, CodeRedemption, ConsentRecord, DEFAULT_TENANT,
    GrantRecord, KeyState, LoginThrottle, RefreshExchange, RefreshRotation, RefreshTokenRecord,
    Revocation, SigningKeyRecord, Store, StoreError, UserRecord, open,
};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tempfile::TempDir;
use tokio::sync::Barrier;

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

/// Distinctive filler for encrypted private keys and secret hashes: `Debug`
/// output must never contain these bytes, in any notation.
const KEY_BYTE: u8 = 0xC7;
const HASH_BYTE: u8 = 0xB3;

fn signing_key(tenant: &str, kid: &str, state: KeyState, created_at: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        tenant_id: tenant.to_owned(),
        kid: kid.to_owned(),
        alg: "ES256".to_owned(),
        state,
        private_key_enc: vec![KEY_BYTE; 61],
        public_jwk: format!(r#"{{"kty":"EC","crv":"P-256","kid":"{kid}","x":"x","y":"y"}}"#),
        created_at,
        activated_at: (state != KeyState::Next).then_some(created_at + 1),
        retired_at: (state == KeyState::Retired).then_some(created_at + 2),
        publish_until: (state == KeyState::Retired).then_some(created_at + 3),
    }
}

/// A confidential client registered dynamically.
fn client(tenant: &str, client_id: &str, created_at: i64) -> ClientRecord {
    ClientRecord {
        tenant_id: tenant.to_owned(),
        client_id: client_id.to_owned(),
        name: format!("client {client_id}"),
        token_endpoint_auth_method: "client_secret_basic".to_owned(),
        redirect_uris: vec![
            "https://app.example/cb".to_owned(),
            "http://127.0.0.1:8080/callback?x=1".to_owned(),
        ],
        grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        scope: Some("repo:read issues:write".to_owned()),
        jwks: None,
        secret_hash: Some(vec![HASH_BYTE; 32]),
        previous_secret_hash: None,
        previous_secret_valid_until: None,
        origin: "dcr".to_owned(),
        created_at,
        last_used_at: None,
    }
}

/// `(kid, state)` of the tenant's keys, in list order.
async fn key_states(store: &Arc<dyn Store>, tenant: &str) -> Vec<(String, KeyState)> {
    store
        .signing_keys(tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.state))
        .collect()
}

fn states(list: &[(&str, KeyState)]) -> Vec<(String, KeyState)> {
    list.iter()
        .map(|&(kid, state)| (kid.to_owned(), state))
        .collect()
}

both_backends! {
    async fn signing_keys_round_trip_ordered_by_created_at_then_kid(db: &Db) {
        let store = db.open().await;
        // Inserted out of order; "B" < "a" bytewise, whatever the locale.
        let keys = [
            signing_key(DEFAULT_TENANT, "a", KeyState::Current, 20),
            signing_key(DEFAULT_TENANT, "n", KeyState::Next, 30),
            signing_key(DEFAULT_TENANT, "B", KeyState::Retired, 20),
            signing_key(DEFAULT_TENANT, "r", KeyState::Retired, 10),
        ];
        for key in &keys {
            store.insert_signing_key(key).await.unwrap();
        }
        let [current, next, retired_b, retired_r] = keys;
        assert_eq!(
            store.signing_keys(DEFAULT_TENANT).await.unwrap(),
            [retired_r, retired_b, current, next]
        );
    }

    async fn signing_key_with_taken_kid_is_duplicate(db: &Db) {
        let store = db.open().await;
        let first = signing_key(DEFAULT_TENANT, "k", KeyState::Retired, 1);
        store.insert_signing_key(&first).await.unwrap();
        let second = SigningKeyRecord {
            alg: "RS256".to_owned(),
            ..signing_key(DEFAULT_TENANT, "k", KeyState::Retired, 2)
        };
        let err = store.insert_signing_key(&second).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate), "{err:?}");
        assert_eq!(store.signing_keys(DEFAULT_TENANT).await.unwrap(), [first]);
    }

    async fn tenant_has_at_most_one_current_and_one_next_key(db: &Db) {
        let store = db.open().await;
        for (kid, state) in [("c1", KeyState::Current), ("n1", KeyState::Next)] {
            store.insert_signing_key(&signing_key(DEFAULT_TENANT, kid, state, 1)).await.unwrap();
        }
        for (kid, state) in [("c2", KeyState::Current), ("n2", KeyState::Next)] {
            let err = store
                .insert_signing_key(&signing_key(DEFAULT_TENANT, kid, state, 2))
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Duplicate), "{kid}: {err:?}");
        }
        // Any number of retired keys; other tenants have their own.
        for kid in ["r1", "r2"] {
            let key = signing_key(DEFAULT_TENANT, kid, KeyState::Retired, 3);
            store.insert_signing_key(&key).await.unwrap();
        }
        for (kid, state) in [("c1", KeyState::Current), ("n1", KeyState::Next)] {
            store.insert_signing_key(&signing_key("acme", kid, state, 1)).await.unwrap();
        }
        assert_eq!(
            key_states(&store, DEFAULT_TENANT).await,
            states(&[
                ("c1", KeyState::Current),
                ("n1", KeyState::Next),
                ("r1", KeyState::Retired),
                ("r2", KeyState::Retired),
            ])
        );
    }

    async fn replicas_bootstrapping_at_once_end_with_one_current_key(db: &Db) {
        // Each replica found no keys and inserts a current, then a next key;
        // on `Duplicate` it gives up and uses the winner's keys.
        let stores = [db.open().await, db.open().await];
        let replicas = ["a", "b"].into_iter().zip(stores).map(|(name, store)| {
            tokio::spawn(async move {
                let kid = format!("{name}-current");
                let current = signing_key(DEFAULT_TENANT, &kid, KeyState::Current, 1);
                match store.insert_signing_key(&current).await {
                    Ok(()) => {}
                    Err(StoreError::Duplicate) => return false,
                    Err(err) => panic!("{err:?}"),
                }
                let kid = format!("{name}-next");
                let next = signing_key(DEFAULT_TENANT, &kid, KeyState::Next, 1);
                store.insert_signing_key(&next).await.unwrap();
                true
            })
        });
        let mut winners = Vec::new();
        for (name, replica) in ["a", "b"].into_iter().zip(replicas.collect::<Vec<_>>()) {
            if replica.await.unwrap() {
                winners.push(name);
            }
        }
        let [winner] = winners[..] else { panic!("winners: {winners:?}") };
        let store = db.open().await;
        assert_eq!(
            key_states(&store, DEFAULT_TENANT).await,
            states(&[
                (&format!("{winner}-current"), KeyState::Current),
                (&format!("{winner}-next"), KeyState::Next),
            ])
        );
    }

    async fn rotation_retires_current_promotes_next_and_adds_new_next(db: &Db) {
        let store = db.open().await;
        let old = signing_key(DEFAULT_TENANT, "k0", KeyState::Retired, 10);
        let current = signing_key(DEFAULT_TENANT, "k1", KeyState::Current, 100);
        let next = signing_key(DEFAULT_TENANT, "k2", KeyState::Next, 200);
        for key in [&old, &current, &next] {
            store.insert_signing_key(key).await.unwrap();
        }
        let new_next = signing_key(DEFAULT_TENANT, "k3", KeyState::Next, 1_000);

        let rotated = store
            .rotate_signing_keys(DEFAULT_TENANT, "k2", &new_next, 1_000, 2_000)
            .await
            .unwrap();
        assert!(rotated);
        let retired = SigningKeyRecord {
            state: KeyState::Retired,
            retired_at: Some(1_000),
            publish_until: Some(2_000),
            ..current
        };
        let promoted = SigningKeyRecord {
            state: KeyState::Current,
            activated_at: Some(1_000),
            ..next
        };
        assert_eq!(
            store.signing_keys(DEFAULT_TENANT).await.unwrap(),
            [old, retired, promoted, new_next]
        );
    }

    async fn rotation_with_a_kid_that_is_not_next_changes_nothing(db: &Db) {
        let store = db.open().await;
        for (kid, state) in [
            ("old", KeyState::Retired),
            ("cur", KeyState::Current),
            ("nxt", KeyState::Next),
        ] {
            store.insert_signing_key(&signing_key(DEFAULT_TENANT, kid, state, 1)).await.unwrap();
        }
        let before = store.signing_keys(DEFAULT_TENANT).await.unwrap();
        let new_next = signing_key(DEFAULT_TENANT, "new", KeyState::Next, 5);
        for stale in ["old", "cur", "missing"] {
            let rotated = store
                .rotate_signing_keys(DEFAULT_TENANT, stale, &new_next, 5, 50)
                .await
                .unwrap();
            assert!(!rotated, "{stale}");
        }
        assert_eq!(store.signing_keys(DEFAULT_TENANT).await.unwrap(), before);
    }

    async fn rotation_is_all_or_nothing(db: &Db) {
        let store = db.open().await;
        for (kid, state) in [("cur", KeyState::Current), ("nxt", KeyState::Next)] {
            store.insert_signing_key(&signing_key(DEFAULT_TENANT, kid, state, 1)).await.unwrap();
        }
        let before = store.signing_keys(DEFAULT_TENANT).await.unwrap();

        // The new next key's kid is taken: its insert, the last step, fails
        // after the others ran, and they are rolled back.
        let taken = signing_key(DEFAULT_TENANT, "cur", KeyState::Next, 5);
        let err = store
            .rotate_signing_keys(DEFAULT_TENANT, "nxt", &taken, 5, 50)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Duplicate), "{err:?}");
        assert_eq!(store.signing_keys(DEFAULT_TENANT).await.unwrap(), before);

        // A new next key that is not `next`, or of another tenant, is refused
        // before anything is written.
        for bad in [
            signing_key(DEFAULT_TENANT, "new", KeyState::Current, 5),
            signing_key("acme", "new", KeyState::Next, 5),
        ] {
            let err = store
                .rotate_signing_keys(DEFAULT_TENANT, "nxt", &bad, 5, 50)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord(_)), "{err:?}");
        }
        assert_eq!(store.signing_keys(DEFAULT_TENANT).await.unwrap(), before);
        assert_eq!(store.signing_keys("acme").await.unwrap(), []);
    }

    async fn concurrent_rotations_with_the_same_next_kid_exactly_one_wins(db: &Db) {
        // Two replicas (two handles, two pools) decide to rotate at the same
        // moment, several rounds in a row.
        let replicas = [db.open().await, db.open().await];
        for (kid, state) in [("cur", KeyState::Current), ("next-0", KeyState::Next)] {
            replicas[0]
                .insert_signing_key(&signing_key(DEFAULT_TENANT, kid, state, 0))
                .await
                .unwrap();
        }
        let mut next_kid = "next-0".to_owned();
        for round in 1..=5 {
            let tasks = ["a", "b"].into_iter().zip(&replicas).map(|(name, store)| {
                let store = Arc::clone(store);
                let next_kid = next_kid.clone();
                let kid = format!("next-{round}-{name}");
                let new_next = signing_key(DEFAULT_TENANT, &kid, KeyState::Next, round);
                tokio::spawn(async move {
                    let (now, publish_until) = (round, round * 10);
                    let rotated = store
                        .rotate_signing_keys(
                            DEFAULT_TENANT,
                            &next_kid,
                            &new_next,
                            now,
                            publish_until,
                        )
                        .await
                        .unwrap();
                    rotated.then_some(new_next.kid)
                })
            });
            let mut winners = Vec::new();
            for task in tasks.collect::<Vec<_>>() {
                winners.extend(task.await.unwrap());
            }
            let [winner] = &winners[..] else { panic!("round {round}: winners {winners:?}") };

            let keys = replicas[1].signing_keys(DEFAULT_TENANT).await.unwrap();
            let of = |state| -> Vec<&str> {
                keys.iter().filter(|k| k.state == state).map(|k| k.kid.as_str()).collect()
            };
            assert_eq!(of(KeyState::Current), [next_kid.as_str()], "round {round}");
            assert_eq!(of(KeyState::Next), [winner.as_str()], "round {round}");
            assert_eq!(of(KeyState::Retired).len() as i64, round, "round {round}");
            next_kid.clone_from(winner);
        }
    }

    async fn retired_keys_are_deleted_once_their_publication_ends(db: &Db) {
        let store = db.open().await;
        let retired = |kid: &str, publish_until: Option<i64>| SigningKeyRecord {
            publish_until,
            ..signing_key(DEFAULT_TENANT, kid, KeyState::Retired, 1)
        };
        let expired = retired("expired", Some(99));
        let kept = [
            retired("until-now", Some(100)),
            retired("until-later", Some(200)),
            retired("no-deadline", None),
            signing_key(DEFAULT_TENANT, "cur", KeyState::Current, 1),
            signing_key(DEFAULT_TENANT, "nxt", KeyState::Next, 1),
        ];
        let other_tenant = SigningKeyRecord {
            publish_until: Some(1),
            ..signing_key("acme", "expired", KeyState::Retired, 1)
        };
        for key in kept.iter().chain([&expired, &other_tenant]) {
            store.insert_signing_key(key).await.unwrap();
        }

        assert_eq!(store.delete_expired_signing_keys(DEFAULT_TENANT, 100).await.unwrap(), 1);
        let mut left = store.signing_keys(DEFAULT_TENANT).await.unwrap();
        left.sort_by(|a, b| a.kid.cmp(&b.kid));
        let mut expected = kept.to_vec();
        expected.sort_by(|a, b| a.kid.cmp(&b.kid));
        assert_eq!(left, expected);
        assert_eq!(store.delete_expired_signing_keys(DEFAULT_TENANT, 100).await.unwrap(), 0);
        assert_eq!(store.signing_keys("acme").await.unwrap(), [other_tenant]);
    }

    async fn client_round_trip(db: &Db) {
        let store = db.open().await;
        let full = ClientRecord {
            token_endpoint_auth_method: "private_key_jwt".to_owned(),
            jwks: Some(r#"{"keys":[{"kty":"EC","crv":"P-256","x":"x","y":"y"}]}"#.to_owned()),
            secret_hash: Some((0u8..32).collect()),
            previous_secret_hash: Some((32u8..64).collect()),
            previous_secret_valid_until: Some(5_000),
            origin: "cli".to_owned(),
            last_used_at: Some(4_000),
            ..client(DEFAULT_TENANT, "full", 1_700_000_000)
        };
        // A public client with the fewest fields.
        let bare = ClientRecord {
            token_endpoint_auth_method: "none".to_owned(),
            redirect_uris: vec![],
            grant_types: vec!["authorization_code".to_owned()],
            scope: None,
            secret_hash: None,
            origin: "cimd".to_owned(),
            ..client(DEFAULT_TENANT, "https://app.example/client.json", 1)
        };
        for rec in [&full, &bare] {
            store.insert_client(rec).await.unwrap();
            let got = store.client(DEFAULT_TENANT, &rec.client_id).await.unwrap();
            assert_eq!(got.as_ref(), Some(rec));
        }
        assert_eq!(store.client(DEFAULT_TENANT, "missing").await.unwrap(), None);
    }

    async fn clients_are_listed_by_created_at_then_client_id(db: &Db) {
        let store = db.open().await;
        for (id, at) in [("c", 20), ("b", 10), ("a", 20), ("B", 20), ("z", 5)] {
            store.insert_client(&client(DEFAULT_TENANT, id, at)).await.unwrap();
        }
        let listed: Vec<(String, i64)> = store
            .list_clients(DEFAULT_TENANT)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.client_id, c.created_at))
            .collect();
        let expected = [("z", 5), ("b", 10), ("B", 20), ("a", 20), ("c", 20)]
            .map(|(id, at)| (id.to_owned(), at));
        assert_eq!(listed, expected);
    }

    async fn client_with_taken_client_id_is_duplicate(db: &Db) {
        let store = db.open().await;
        let first = client(DEFAULT_TENANT, "dup", 1);
        store.insert_client(&first).await.unwrap();
        let second = ClientRecord { name: "second".to_owned(), ..client(DEFAULT_TENANT, "dup", 2) };
        let err = store.insert_client(&second).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate), "{err:?}");
        assert_eq!(store.list_clients(DEFAULT_TENANT).await.unwrap(), [first]);
    }

    async fn client_list_elements_that_cannot_round_trip_are_rejected(db: &Db) {
        let store = db.open().await;
        let bad = [
            ClientRecord {
                redirect_uris: vec!["https://a.example/cb\nhttps://evil.example/cb".to_owned()],
                ..client(DEFAULT_TENANT, "c", 1)
            },
            ClientRecord { redirect_uris: vec![String::new()], ..client(DEFAULT_TENANT, "c", 1) },
            ClientRecord {
                grant_types: vec!["authorization_code\n".to_owned()],
                ..client(DEFAULT_TENANT, "c", 1)
            },
        ];
        for rec in bad {
            let err = store.insert_client(&rec).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord(_)), "{rec:?}: {err:?}");
        }
        assert_eq!(store.list_clients(DEFAULT_TENANT).await.unwrap(), []);
    }

    async fn client_secret_hashes_are_32_bytes_and_a_previous_one_has_a_deadline(db: &Db) {
        let store = db.open().await;
        for len in [0, 31, 33] {
            let bad = [
                ClientRecord { secret_hash: Some(vec![1; len]), ..client(DEFAULT_TENANT, "c", 1) },
                ClientRecord {
                    previous_secret_hash: Some(vec![1; len]),
                    previous_secret_valid_until: Some(9),
                    ..client(DEFAULT_TENANT, "c", 1)
                },
            ];
            for rec in bad {
                let err = store.insert_client(&rec).await.unwrap_err();
                assert!(matches!(err, StoreError::Database(_)), "{len} bytes: {err:?}");
            }
        }
        let unbounded = [
            ClientRecord {
                previous_secret_hash: Some(vec![1; 32]),
                ..client(DEFAULT_TENANT, "c", 1)
            },
            ClientRecord { previous_secret_valid_until: Some(9), ..client(DEFAULT_TENANT, "c", 1) },
        ];
        for rec in unbounded {
            let err = store.insert_client(&rec).await.unwrap_err();
            assert!(matches!(err, StoreError::Database(_)), "{rec:?}: {err:?}");
        }

        store.insert_client(&client(DEFAULT_TENANT, "c", 1)).await.unwrap();
        let err = store.rotate_client_secret(DEFAULT_TENANT, "c", &[1; 31], 9).await.unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        let unchanged = client(DEFAULT_TENANT, "c", 1);
        assert_eq!(store.list_clients(DEFAULT_TENANT).await.unwrap(), [unchanged]);
    }

    async fn delete_client_removes_that_client_only(db: &Db) {
        let store = db.open().await;
        let keep = client(DEFAULT_TENANT, "keep", 1);
        store.insert_client(&keep).await.unwrap();
        store.insert_client(&client(DEFAULT_TENANT, "gone", 2)).await.unwrap();

        assert!(store.delete_client(DEFAULT_TENANT, "gone").await.unwrap());
        assert!(!store.delete_client(DEFAULT_TENANT, "gone").await.unwrap());
        assert_eq!(store.client(DEFAULT_TENANT, "gone").await.unwrap(), None);
        assert_eq!(store.list_clients(DEFAULT_TENANT).await.unwrap(), [keep]);
    }

    async fn client_secret_rotation_keeps_the_previous_hash_until_its_deadline(db: &Db) {
        let store = db.open().await;
        let original = client(DEFAULT_TENANT, "c", 1);
        store.insert_client(&original).await.unwrap();
        let (h1, h2, h3) = (vec![HASH_BYTE; 32], vec![2; 32], vec![3; 32]);

        assert!(store.rotate_client_secret(DEFAULT_TENANT, "c", &h2, 500).await.unwrap());
        let rotated = ClientRecord {
            secret_hash: Some(h2.clone()),
            previous_secret_hash: Some(h1),
            previous_secret_valid_until: Some(500),
            ..original.clone()
        };
        assert_eq!(store.client(DEFAULT_TENANT, "c").await.unwrap(), Some(rotated));

        // Rotating again within the grace period drops the oldest secret.
        assert!(store.rotate_client_secret(DEFAULT_TENANT, "c", &h3, 900).await.unwrap());
        let rotated_twice = ClientRecord {
            secret_hash: Some(h3.clone()),
            previous_secret_hash: Some(h2),
            previous_secret_valid_until: Some(900),
            ..original
        };
        assert_eq!(store.client(DEFAULT_TENANT, "c").await.unwrap(), Some(rotated_twice));

        assert!(!store.rotate_client_secret(DEFAULT_TENANT, "missing", &h3, 900).await.unwrap());

        // A client without a secret gets one, and no previous one.
        let public = ClientRecord { secret_hash: None, ..client(DEFAULT_TENANT, "public", 1) };
        store.insert_client(&public).await.unwrap();
        assert!(store.rotate_client_secret(DEFAULT_TENANT, "public", &h3, 900).await.unwrap());
        assert_eq!(
            store.client(DEFAULT_TENANT, "public").await.unwrap(),
            Some(ClientRecord { secret_hash: Some(h3), ..public })
        );
    }

    async fn touching_a_client_records_its_last_use_and_never_goes_back(db: &Db) {
        let store = db.open().await;
        store.insert_client(&client(DEFAULT_TENANT, "c", 1)).await.unwrap();
        for (at, expected) in [(100, 100), (50, 100), (200, 200)] {
            store.touch_client(DEFAULT_TENANT, "c", at).await.unwrap();
            let got = store.client(DEFAULT_TENANT, "c").await.unwrap().unwrap();
            assert_eq!(got.last_used_at, Some(expected), "touched at {at}");
        }
        store.touch_client(DEFAULT_TENANT, "missing", 300).await.unwrap();
        assert_eq!(store.client(DEFAULT_TENANT, "missing").await.unwrap(), None);
    }

    async fn unused_registrations_older_than_the_cutoff_are_deleted(db: &Db) {
        let store = db.open().await;
        let cutoff = 1_000;
        let stale = client(DEFAULT_TENANT, "stale", cutoff - 1);
        let kept = [
            ClientRecord { last_used_at: Some(cutoff - 1), ..client(DEFAULT_TENANT, "used", 1) },
            client(DEFAULT_TENANT, "at-cutoff", cutoff),
            client(DEFAULT_TENANT, "recent", cutoff + 1),
            ClientRecord { origin: "cli".to_owned(), ..client(DEFAULT_TENANT, "cli", 1) },
            ClientRecord { origin: "cimd".to_owned(), ..client(DEFAULT_TENANT, "cimd", 1) },
        ];
        let other_tenant = client("acme", "stale", 1);
        for rec in kept.iter().chain([&stale, &other_tenant]) {
            store.insert_client(rec).await.unwrap();
        }

        assert_eq!(store.delete_unused_registrations(DEFAULT_TENANT, cutoff).await.unwrap(), 1);
        assert_eq!(store.client(DEFAULT_TENANT, "stale").await.unwrap(), None);
        let mut left = store.list_clients(DEFAULT_TENANT).await.unwrap();
        left.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        let mut expected = kept.to_vec();
        expected.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        assert_eq!(left, expected);
        assert_eq!(store.list_clients("acme").await.unwrap(), [other_tenant]);
    }

    async fn tenant_isolation_for_signing_keys_and_clients(db: &Db) {
        let store = db.open().await;
        let keys = [
            signing_key(DEFAULT_TENANT, "cur", KeyState::Current, 1),
            signing_key(DEFAULT_TENANT, "nxt", KeyState::Next, 1),
            SigningKeyRecord {
                publish_until: Some(1),
                ..signing_key(DEFAULT_TENANT, "old", KeyState::Retired, 1)
            },
        ];
        for key in &keys {
            store.insert_signing_key(key).await.unwrap();
        }
        let mine = client(DEFAULT_TENANT, "shared-id", 1);
        store.insert_client(&mine).await.unwrap();

        // Another tenant can neither see nor change any of it.
        let theirs_next = signing_key("acme", "new", KeyState::Next, 2);
        assert_eq!(store.signing_keys("acme").await.unwrap(), []);
        assert!(!store.rotate_signing_keys("acme", "nxt", &theirs_next, 2, 3).await.unwrap());
        assert_eq!(store.delete_expired_signing_keys("acme", 100).await.unwrap(), 0);
        assert_eq!(store.client("acme", "shared-id").await.unwrap(), None);
        assert_eq!(store.list_clients("acme").await.unwrap(), []);
        assert!(!store.delete_client("acme", "shared-id").await.unwrap());
        assert!(!store.rotate_client_secret("acme", "shared-id", &[9; 32], 5).await.unwrap());
        store.touch_client("acme", "shared-id", 5).await.unwrap();
        assert_eq!(store.delete_unused_registrations("acme", 100).await.unwrap(), 0);
        assert_eq!(store.signing_keys(DEFAULT_TENANT).await.unwrap(), keys);
        assert_eq!(store.list_clients(DEFAULT_TENANT).await.unwrap(), std::slice::from_ref(&mine));

        // Kids and client ids are unique per tenant only, and each tenant
        // has its own current key.
        let theirs_key = signing_key("acme", "cur", KeyState::Current, 2);
        store.insert_signing_key(&theirs_key).await.unwrap();
        let theirs = ClientRecord { name: "theirs".to_owned(), ..client("acme", "shared-id", 2) };
        store.insert_client(&theirs).await.unwrap();
        assert_eq!(store.signing_keys("acme").await.unwrap(), [theirs_key]);
        assert_eq!(store.list_clients("acme").await.unwrap(), [theirs]);
        assert_eq!(store.list_clients(DEFAULT_TENANT).await.unwrap(), [mine]);
    }
}

/// A distinctive PHC string: `Debug` output must never contain any of it.
const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$UlVOVElNRVNBTFQ$SEVMTE9IQVNIT1VUUFVUVkFMVUVYWFhYWFhYWFhYWA";

/// An enabled user who never logged in.
fn user(tenant: &str, username: &str, created_at: i64) -> UserRecord {
    UserRecord {
        tenant_id: tenant.to_owned(),
        username: username.to_owned(),
        password_hash: PASSWORD_HASH.to_owned(),
        created_at,
        disabled_at: None,
        password_changed_at: created_at,
        failed_logins: 0,
        locked_until: None,
        last_login_at: None,
    }
}

fn throttle(failed_logins: u32, locked_until: Option<i64>) -> Option<LoginThrottle> {
    Some(LoginThrottle {
        failed_logins,
        locked_until,
    })
}

both_backends! {
    async fn user_round_trip(db: &Db) {
        let store = db.open().await;
        let full = UserRecord {
            disabled_at: Some(30),
            password_changed_at: 20,
            failed_logins: 2,
            locked_until: Some(40),
            last_login_at: Some(15),
            ..user(DEFAULT_TENANT, "alice@example.com", 10)
        };
        let bare = user(DEFAULT_TENANT, "bob", 11);
        for rec in [&full, &bare] {
            store.insert_user(rec).await.unwrap();
            let got = store.user(DEFAULT_TENANT, &rec.username).await.unwrap();
            assert_eq!(got.as_ref(), Some(rec));
        }
        assert_eq!(store.user(DEFAULT_TENANT, "carol").await.unwrap(), None);
        // Lookups are exact.
        assert_eq!(store.user(DEFAULT_TENANT, "BOB").await.unwrap(), None);
    }

    async fn users_are_listed_by_username_bytewise(db: &Db) {
        let store = db.open().await;
        for (name, at) in [("bob", 1), ("Carol", 2), ("alice", 3), ("_x", 4), ("0zed", 5)] {
            store.insert_user(&user(DEFAULT_TENANT, name, at)).await.unwrap();
        }
        let listed: Vec<String> = store
            .list_users(DEFAULT_TENANT)
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        // "C" < "_" < "a" bytewise, whatever the locale.
        assert_eq!(listed, ["0zed", "Carol", "_x", "alice", "bob"]);
    }

    async fn username_taken_in_any_case_is_duplicate(db: &Db) {
        let store = db.open().await;
        let first = user(DEFAULT_TENANT, "alice", 1);
        store.insert_user(&first).await.unwrap();
        for taken in ["alice", "Alice", "ALICE"] {
            let err = store.insert_user(&user(DEFAULT_TENANT, taken, 2)).await.unwrap_err();
            assert!(matches!(err, StoreError::Duplicate), "{taken}: {err:?}");
        }
        assert_eq!(store.list_users(DEFAULT_TENANT).await.unwrap(), [first]);
        // Usernames are unique per tenant only.
        store.insert_user(&user("acme", "Alice", 3)).await.unwrap();
    }

    async fn invalid_usernames_are_rejected(db: &Db) {
        let store = db.open().await;
        let too_long = "a".repeat(65);
        for name in ["", too_long.as_str(), "a b", "a/b", "a:b", "é", "a\n", "a%40b", "a\0"] {
            let err = store.insert_user(&user(DEFAULT_TENANT, name, 1)).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord(_)), "{name:?}: {err:?}");
        }
        assert_eq!(store.list_users(DEFAULT_TENANT).await.unwrap(), []);
        let longest = "a".repeat(64);
        for name in [longest.as_str(), "a.b_c@d-e", "Z", "0"] {
            store.insert_user(&user(DEFAULT_TENANT, name, 1)).await.unwrap();
        }
    }

    async fn disable_keeps_the_first_time_and_enable_clears_it(db: &Db) {
        let store = db.open().await;
        store.insert_user(&user(DEFAULT_TENANT, "alice", 1)).await.unwrap();
        let disabled_at = |store: Arc<dyn Store>| async move {
            store.user(DEFAULT_TENANT, "alice").await.unwrap().unwrap().disabled_at
        };
        assert!(store.set_user_disabled(DEFAULT_TENANT, "alice", Some(100)).await.unwrap());
        assert_eq!(disabled_at(store.clone()).await, Some(100));
        assert!(store.set_user_disabled(DEFAULT_TENANT, "alice", Some(200)).await.unwrap());
        assert_eq!(disabled_at(store.clone()).await, Some(100));
        assert!(store.set_user_disabled(DEFAULT_TENANT, "alice", None).await.unwrap());
        assert_eq!(disabled_at(store.clone()).await, None);
        assert!(store.set_user_disabled(DEFAULT_TENANT, "alice", None).await.unwrap());
        assert_eq!(store.user(DEFAULT_TENANT, "alice").await.unwrap(), Some(user(DEFAULT_TENANT, "alice", 1)));

        assert!(!store.set_user_disabled(DEFAULT_TENANT, "bob", Some(100)).await.unwrap());
        assert!(!store.set_user_disabled(DEFAULT_TENANT, "bob", None).await.unwrap());
    }

    async fn failures_lock_the_account_at_the_threshold_and_success_resets(db: &Db) {
        let store = db.open().await;
        store.insert_user(&user(DEFAULT_TENANT, "alice", 1)).await.unwrap();
        let fail = |at: i64, lock_for: i64| {
            let store = store.clone();
            async move {
                store.record_login_failure(DEFAULT_TENANT, "alice", at, 3, lock_for).await.unwrap()
            }
        };
        assert_eq!(fail(10, 60).await, throttle(1, None));
        assert_eq!(fail(11, 60).await, throttle(2, None));
        // The third failure locks; every later one extends the lock.
        assert_eq!(fail(12, 60).await, throttle(3, Some(72)));
        assert_eq!(fail(100, 60).await, throttle(4, Some(160)));
        // A lock is never shortened (replicas' clocks differ slightly).
        assert_eq!(fail(99, 60).await, throttle(5, Some(160)));
        assert_eq!(fail(101, 0).await, throttle(6, Some(160)));
        let got = store.user(DEFAULT_TENANT, "alice").await.unwrap().unwrap();
        assert_eq!((got.failed_logins, got.locked_until), (6, Some(160)));

        store.record_login_success(DEFAULT_TENANT, "alice", 200).await.unwrap();
        let got = store.user(DEFAULT_TENANT, "alice").await.unwrap().unwrap();
        assert_eq!(got, UserRecord { last_login_at: Some(200), ..user(DEFAULT_TENANT, "alice", 1) });
        assert_eq!(fail(201, 60).await, throttle(1, None));

        // No such user: nothing to count, nothing created.
        let none = store.record_login_failure(DEFAULT_TENANT, "bob", 1, 3, 60).await.unwrap();
        assert_eq!(none, None);
        store.record_login_success(DEFAULT_TENANT, "bob", 1).await.unwrap();
        assert_eq!(store.user(DEFAULT_TENANT, "bob").await.unwrap(), None);

        for (lock_after, lock_for) in [(0, 60), (3, -1)] {
            let err = store
                .record_login_failure(DEFAULT_TENANT, "alice", 300, lock_after, lock_for)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord(_)), "{err:?}");
        }
        let got = store.user(DEFAULT_TENANT, "alice").await.unwrap().unwrap();
        assert_eq!(got.failed_logins, 1);

        // An absurd lock duration saturates instead of overflowing.
        let locked = store
            .record_login_failure(DEFAULT_TENANT, "alice", 400, 1, i64::MAX)
            .await
            .unwrap();
        assert_eq!(locked, throttle(2, Some(i64::MAX)));
    }

    async fn password_change_replaces_the_hash_and_clears_the_lock(db: &Db) {
        let store = db.open().await;
        store.insert_user(&user(DEFAULT_TENANT, "alice", 1)).await.unwrap();
        store.record_login_failure(DEFAULT_TENANT, "alice", 10, 1, 60).await.unwrap();
        let new_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA";
        assert!(store.set_user_password(DEFAULT_TENANT, "alice", new_hash, 50).await.unwrap());
        let got = store.user(DEFAULT_TENANT, "alice").await.unwrap().unwrap();
        let expected = UserRecord {
            password_hash: new_hash.to_owned(),
            password_changed_at: 50,
            ..user(DEFAULT_TENANT, "alice", 1)
        };
        assert_eq!(got, expected);
        assert!(!store.set_user_password(DEFAULT_TENANT, "bob", new_hash, 50).await.unwrap());
        assert_eq!(store.user(DEFAULT_TENANT, "bob").await.unwrap(), None);
    }

    async fn concurrent_failures_on_two_handles_are_all_counted(db: &Db) {
        // Two replicas (two handles, two pools) see a burst of wrong passwords
        // for one account: every failure counts exactly once.
        const N: u32 = 40;
        const LOCK_AFTER: u32 = 25;
        let replicas = [db.open().await, db.open().await];
        replicas[0].insert_user(&user(DEFAULT_TENANT, "alice", 1)).await.unwrap();
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let store = Arc::clone(&replicas[i as usize % 2]);
                tokio::spawn(async move {
                    store
                        .record_login_failure(DEFAULT_TENANT, "alice", 1_000, LOCK_AFTER, 60)
                        .await
                        .unwrap()
                        .unwrap()
                })
            })
            .collect();
        let mut seen = Vec::new();
        for task in tasks {
            seen.push(task.await.unwrap());
        }
        // Each call saw a count of its own: no two read the same old value.
        let mut counts: Vec<u32> = seen.iter().map(|t| t.failed_logins).collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=N).collect::<Vec<_>>());
        for t in &seen {
            let expected = (t.failed_logins >= LOCK_AFTER).then_some(1_060);
            assert_eq!(t.locked_until, expected, "{t:?}");
        }
        let got = replicas[1].user(DEFAULT_TENANT, "alice").await.unwrap().unwrap();
        assert_eq!((got.failed_logins, got.locked_until), (N, Some(1_060)));
    }

    async fn tenant_isolation_for_users(db: &Db) {
        let store = db.open().await;
        let mine = user(DEFAULT_TENANT, "alice", 1);
        store.insert_user(&mine).await.unwrap();

        assert_eq!(store.user("acme", "alice").await.unwrap(), None);
        assert_eq!(store.list_users("acme").await.unwrap(), []);
        assert!(!store.set_user_disabled("acme", "alice", Some(5)).await.unwrap());
        assert!(!store.set_user_password("acme", "alice", "x", 5).await.unwrap());
        assert_eq!(store.record_login_failure("acme", "alice", 5, 1, 60).await.unwrap(), None);
        store.record_login_success("acme", "alice", 5).await.unwrap();
        assert_eq!(store.list_users(DEFAULT_TENANT).await.unwrap(), std::slice::from_ref(&mine));
    }
}

#[test]
fn debug_of_records_shows_no_key_material_or_hashes() {
    let key = signing_key(DEFAULT_TENANT, "k", KeyState::Current, 1);
    let debug = format!("{key:?}");
    assert!(debug.contains("private_key_enc: <61 bytes>"), "{debug}");
    assert!(debug.contains(r#"kid: "k""#), "{debug}");

    let rec = ClientRecord {
        previous_secret_hash: Some(vec![HASH_BYTE; 32]),
        previous_secret_valid_until: Some(9),
        ..client(DEFAULT_TENANT, "c", 1)
    };
    let debug_client = format!("{rec:?}");
    assert!(
        debug_client.contains("secret_hash: Some(<redacted>)"),
        "{debug_client}"
    );
    assert!(
        debug_client.contains("previous_secret_hash: Some(<redacted>)"),
        "{debug_client}"
    );
    let user = user(DEFAULT_TENANT, "alice", 1);
    let debug_user = format!("{user:?}");
    assert!(
        debug_user.contains("password_hash: <redacted>") && debug_user.contains(r#""alice""#),
        "{debug_user}"
    );
    for part in PASSWORD_HASH.split('$').filter(|p| p.len() > 8) {
        assert!(!debug_user.contains(part), "{part} in {debug_user}");
    }

    let public = ClientRecord {
        secret_hash: None,
        ..client(DEFAULT_TENANT, "c", 1)
    };
    assert!(
        format!("{public:?}").contains("secret_hash: None"),
        "{public:?}"
    );

    for (debug, byte) in [(debug, KEY_BYTE), (debug_client, HASH_BYTE)] {
        for notation in [
            format!("{byte}, {byte}"),
            format!("{byte:02x}{byte:02x}"),
            format!("{byte:02X}{byte:02X}"),
        ] {
            assert!(!debug.contains(&notation), "{notation} in {debug}");
        }
    }
}

/// A 32-byte hash made of one repeated byte.
fn hash(byte: u8) -> Vec<u8> {
    vec![byte; 32]
}

const CLIENT: &str = "client-1";
const RESOURCE: &str = "https://mcp.example/github";

/// An unredeemed code of alice for [`CLIENT`], valid for 60 s.
fn auth_code(tenant: &str, code_hash: Vec<u8>, created_at: i64) -> AuthCodeRecord {
    AuthCodeRecord {
        tenant_id: tenant.to_owned(),
        code_hash,
        grant_id: "g-from-code".to_owned(),
        client_id: CLIENT.to_owned(),
        subject: "alice".to_owned(),
        redirect_uri: "http://127.0.0.1:8080/callback?x=1".to_owned(),
        resource: RESOURCE.to_owned(),
        scope: "repo:read issues:write".to_owned(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
        created_at,
        expires_at: created_at + 60,
        redeemed_at: None,
    }
}

/// An unrevoked grant of alice to [`CLIENT`] on [`RESOURCE`].
fn grant(tenant: &str, grant_id: &str, created_at: i64) -> GrantRecord {
    GrantRecord {
        tenant_id: tenant.to_owned(),
        grant_id: grant_id.to_owned(),
        client_id: CLIENT.to_owned(),
        subject: "alice".to_owned(),
        resource: RESOURCE.to_owned(),
        scope: "repo:read".to_owned(),
        created_at,
        revoked_at: None,
    }
}

/// A current refresh token of `grant_id`, valid until `created_at + 1000`.
fn refresh(
    tenant: &str,
    grant_id: &str,
    token_hash: Vec<u8>,
    created_at: i64,
) -> RefreshTokenRecord {
    RefreshTokenRecord {
        tenant_id: tenant.to_owned(),
        token_hash,
        grant_id: grant_id.to_owned(),
        created_at,
        expires_at: created_at + 1000,
        rotated_at: None,
    }
}

fn consent(tenant: &str, subject: &str, client_id: &str, resource: &str) -> ConsentRecord {
    ConsentRecord {
        tenant_id: tenant.to_owned(),
        subject: subject.to_owned(),
        client_id: client_id.to_owned(),
        resource: resource.to_owned(),
        scope: "repo:read".to_owned(),
        created_at: 1,
    }
}

/// [`CLIENT`] exchanging the token `old_hash` for `new` at `at`.
fn exchange(old_hash: Vec<u8>, new: RefreshTokenRecord, at: i64) -> RefreshExchange {
    RefreshExchange {
        tenant_id: DEFAULT_TENANT.to_owned(),
        client_id: CLIENT.to_owned(),
        old_hash,
        new,
        at,
    }
}

/// Stores the user alice, the subject of [`grant`]s: only an enabled
/// user's refresh tokens rotate.
async fn alice(store: &Arc<dyn Store>) {
    store
        .insert_user(&user(DEFAULT_TENANT, "alice", 1))
        .await
        .unwrap();
}

/// Stores alice and her grant `g` (created at 1) with refresh token `hash(1)`.
async fn grant_with_token(store: &Arc<dyn Store>) -> (GrantRecord, RefreshTokenRecord) {
    alice(store).await;
    let g = grant(DEFAULT_TENANT, "g", 1);
    let token = refresh(DEFAULT_TENANT, "g", hash(1), 1);
    store.insert_grant(&g, Some(&token)).await.unwrap();
    (g, token)
}

/// `(subject, client_id, resource)` of the listed consents, in list order.
async fn consent_keys(
    store: &Arc<dyn Store>,
    tenant: &str,
    subject: Option<&str>,
) -> Vec<(String, String, String)> {
    store
        .list_consents(tenant, subject)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.subject, c.client_id, c.resource))
        .collect()
}

fn keys(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|&(s, c, r)| (s.to_owned(), c.to_owned(), r.to_owned()))
        .collect()
}

/// Makes `n` calls at once, alternating between two replicas (two handles,
/// two pools), and returns their results in call order.
///
/// The pools are filled first and the calls wait for each other at a
/// barrier: pools connect lazily, and a call that got the one warm
/// connection would otherwise finish before its rivals had connected,
/// which is no race at all.
async fn race<T, F, Fut>(replicas: &[Arc<dyn Store>; 2], n: usize, call: F) -> Vec<T>
where
    F: Fn(usize, Arc<dyn Store>) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    // More than either backend's pool size: every pool opens all it may.
    let pings: Vec<_> = replicas
        .iter()
        .flat_map(|store| (0..16).map(|_| Arc::clone(store)))
        .map(|store| tokio::spawn(async move { store.ping().await.unwrap() }))
        .collect();
    for ping in pings {
        ping.await.unwrap();
    }
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let call = call(i, Arc::clone(&replicas[i % 2]));
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

both_backends! {
    async fn rfc6749_4_1_2_code_is_fresh_once_then_replayed(db: &Db) {
        let store = db.open().await;
        let code = auth_code(DEFAULT_TENANT, hash(1), 100);
        store.insert_auth_code(&code).await.unwrap();

        let redeemed = AuthCodeRecord { redeemed_at: Some(110), ..code.clone() };
        let first = store.redeem_auth_code(DEFAULT_TENANT, &hash(1), 110).await.unwrap();
        assert_eq!(first, CodeRedemption::Fresh(redeemed.clone()));
        // The replay changes nothing: the first redemption time stays.
        for at in [120, 105] {
            let again = store.redeem_auth_code(DEFAULT_TENANT, &hash(1), at).await.unwrap();
            assert_eq!(again, CodeRedemption::Replayed(redeemed.clone()), "at {at}");
        }
        // Expiry is the caller's to check: an expired code is still Fresh.
        let late = auth_code(DEFAULT_TENANT, hash(2), 100);
        store.insert_auth_code(&late).await.unwrap();
        let fresh = store.redeem_auth_code(DEFAULT_TENANT, &hash(2), 10_000).await.unwrap();
        assert_eq!(
            fresh,
            CodeRedemption::Fresh(AuthCodeRecord { redeemed_at: Some(10_000), ..late })
        );
    }

    async fn unknown_code_and_another_tenants_code_are_unknown(db: &Db) {
        let store = db.open().await;
        let code = auth_code(DEFAULT_TENANT, hash(1), 100);
        store.insert_auth_code(&code).await.unwrap();

        for (tenant, code_hash) in
            [(DEFAULT_TENANT, hash(2)), (DEFAULT_TENANT, vec![1; 31]), ("acme", hash(1))]
        {
            let got = store.redeem_auth_code(tenant, &code_hash, 110).await.unwrap();
            assert_eq!(got, CodeRedemption::Unknown, "{tenant} {code_hash:?}");
        }
        // The other tenant's attempt did not redeem it.
        let got = store.redeem_auth_code(DEFAULT_TENANT, &hash(1), 120).await.unwrap();
        assert_eq!(got, CodeRedemption::Fresh(AuthCodeRecord { redeemed_at: Some(120), ..code }));

        // Hashes are unique per tenant only.
        let theirs = auth_code("acme", hash(1), 200);
        store.insert_auth_code(&theirs).await.unwrap();
        let got = store.redeem_auth_code("acme", &hash(1), 210).await.unwrap();
        assert_eq!(got, CodeRedemption::Fresh(AuthCodeRecord { redeemed_at: Some(210), ..theirs }));
    }

    async fn code_with_taken_hash_is_duplicate_and_hashes_are_32_bytes(db: &Db) {
        let store = db.open().await;
        let first = auth_code(DEFAULT_TENANT, hash(1), 100);
        store.insert_auth_code(&first).await.unwrap();
        let second = AuthCodeRecord {
            grant_id: "other".to_owned(),
            ..auth_code(DEFAULT_TENANT, hash(1), 200)
        };
        let err = store.insert_auth_code(&second).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate), "{err:?}");

        for len in [0, 31, 33] {
            let bad = auth_code(DEFAULT_TENANT, vec![7; len], 100);
            let err = store.insert_auth_code(&bad).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord(_)), "{len} bytes: {err:?}");
        }
        let got = store.redeem_auth_code(DEFAULT_TENANT, &hash(1), 300).await.unwrap();
        assert_eq!(got, CodeRedemption::Fresh(AuthCodeRecord { redeemed_at: Some(300), ..first }));
    }

    async fn concurrent_redemptions_of_one_code_exactly_one_is_fresh(db: &Db) {
        // Two replicas (two handles, two pools, so separate connections)
        // receive the same code twenty times at once.
        const N: usize = 20;
        let replicas = [db.open().await, db.open().await];
        let code = auth_code(DEFAULT_TENANT, hash(1), 100);
        replicas[0].insert_auth_code(&code).await.unwrap();
        let results = race(&replicas, N, |i, store| async move {
            let at = 200 + i as i64;
            (at, store.redeem_auth_code(DEFAULT_TENANT, &hash(1), at).await.unwrap())
        })
        .await;
        let mut fresh = Vec::new();
        let mut replayed = Vec::new();
        for result in results {
            match result {
                (at, CodeRedemption::Fresh(rec)) => fresh.push((at, rec)),
                (_, CodeRedemption::Replayed(rec)) => replayed.push(rec),
                (at, CodeRedemption::Unknown) => panic!("unknown at {at}"),
            }
        }
        let [(at, winner)] = &fresh[..] else { panic!("fresh: {fresh:?}") };
        assert_eq!(winner, &AuthCodeRecord { redeemed_at: Some(*at), ..code });
        assert_eq!(replayed.len(), N - 1);
        // Every replay saw the winner's redemption.
        assert!(replayed.iter().all(|rec| rec == winner), "{replayed:?}");
    }

    async fn expired_codes_are_deleted_and_the_rest_kept(db: &Db) {
        let store = db.open().await;
        let with_expiry = |tenant: &str, byte: u8, expires_at: i64, redeemed_at: Option<i64>| {
            AuthCodeRecord { expires_at, redeemed_at, ..auth_code(tenant, hash(byte), 1) }
        };
        let gone = [
            with_expiry(DEFAULT_TENANT, 1, 99, None),
            with_expiry(DEFAULT_TENANT, 2, 50, Some(10)),
        ];
        let kept = [
            with_expiry(DEFAULT_TENANT, 3, 100, None),
            with_expiry(DEFAULT_TENANT, 4, 500, Some(10)),
            with_expiry("acme", 1, 1, None),
        ];
        for code in gone.iter().chain(&kept) {
            store.insert_auth_code(code).await.unwrap();
        }

        assert_eq!(store.delete_expired_auth_codes(DEFAULT_TENANT, 100).await.unwrap(), 2);
        assert_eq!(store.delete_expired_auth_codes(DEFAULT_TENANT, 100).await.unwrap(), 0);
        for code in &gone {
            let got = store.redeem_auth_code(DEFAULT_TENANT, &code.code_hash, 200).await.unwrap();
            assert_eq!(got, CodeRedemption::Unknown, "{code:?}");
        }
        for code in &kept {
            let got = store.redeem_auth_code(&code.tenant_id, &code.code_hash, 200).await.unwrap();
            assert_ne!(got, CodeRedemption::Unknown, "{code:?}");
        }
    }

    async fn grant_round_trip_with_and_without_refresh_token(db: &Db) {
        let store = db.open().await;
        let (g, token) = grant_with_token(&store).await;
        let bare = GrantRecord {
            scope: String::new(),
            revoked_at: Some(7),
            ..grant(DEFAULT_TENANT, "bare", 2)
        };
        store.insert_grant(&bare, None).await.unwrap();

        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(g.clone()));
        assert_eq!(store.grant(DEFAULT_TENANT, "bare").await.unwrap(), Some(bare));
        assert_eq!(store.grant(DEFAULT_TENANT, "missing").await.unwrap(), None);
        let of_token = store.grant_of_refresh_token(DEFAULT_TENANT, &token.token_hash).await;
        assert_eq!(of_token.unwrap(), Some(g));
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(2)).await.unwrap(), None);
        assert_eq!(store.grant_of_refresh_token("acme", &token.token_hash).await.unwrap(), None);
        assert_eq!(
            store.refresh_token(DEFAULT_TENANT, &token.token_hash).await.unwrap(),
            Some(token.clone())
        );
        assert_eq!(store.refresh_token(DEFAULT_TENANT, &hash(2)).await.unwrap(), None);
        assert_eq!(store.refresh_token("acme", &token.token_hash).await.unwrap(), None);
    }

    async fn insert_grant_writes_nothing_on_error(db: &Db) {
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;

        // Taken grant id; taken token hash (the grant is rolled back with it).
        let taken_id = GrantRecord { subject: "bob".to_owned(), ..grant(DEFAULT_TENANT, "g", 5) };
        let err = store.insert_grant(&taken_id, None).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate), "{err:?}");
        let fresh = grant(DEFAULT_TENANT, "g2", 5);
        let taken_hash = refresh(DEFAULT_TENANT, "g2", hash(1), 5);
        let err = store.insert_grant(&fresh, Some(&taken_hash)).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate), "{err:?}");
        assert_eq!(store.grant(DEFAULT_TENANT, "g2").await.unwrap(), None);

        // A token of another grant or tenant, or with a bad hash.
        let bad = [
            refresh(DEFAULT_TENANT, "g", hash(2), 5),
            refresh("acme", "g2", hash(2), 5),
            refresh(DEFAULT_TENANT, "g2", vec![2; 31], 5),
        ];
        for token in &bad {
            let err = store.insert_grant(&fresh, Some(token)).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord(_)), "{token:?}: {err:?}");
        }
        assert_eq!(store.grant(DEFAULT_TENANT, "g2").await.unwrap(), None);
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(2)).await.unwrap(), None);
        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(g.clone()));
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(1)).await.unwrap(), Some(g));
    }

    async fn rfc9700_4_14_2_rotated_token_reused_revokes_the_grant(db: &Db) {
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;

        let second = refresh(DEFAULT_TENANT, "g", hash(2), 10);
        let rotated = store
            .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &second, 10)
            .await
            .unwrap();
        assert_eq!(rotated, RefreshRotation::Rotated(g.clone()));
        assert_eq!(
            store.grant_of_refresh_token(DEFAULT_TENANT, &hash(2)).await.unwrap(),
            Some(g.clone())
        );
        let old = store.refresh_token(DEFAULT_TENANT, &hash(1)).await.unwrap().unwrap();
        assert_eq!(old.rotated_at, Some(10));

        // The old token again (an attacker, or the client's lost response):
        // the whole grant goes, and the successor offered is not stored.
        let third = refresh(DEFAULT_TENANT, "g", hash(3), 20);
        let reused =
            store.rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &third, 20).await.unwrap();
        assert_eq!(reused, RefreshRotation::Reused(g.clone()));
        let revoked = GrantRecord { revoked_at: Some(20), ..g };
        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(revoked.clone()));
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(3)).await.unwrap(), None);

        // The legitimate successor is now useless too.
        let fourth = refresh(DEFAULT_TENANT, "g", hash(4), 30);
        let after = store
            .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(2), &fourth, 30)
            .await
            .unwrap();
        assert_eq!(after, RefreshRotation::Invalid);
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(4)).await.unwrap(), None);

        // A further reuse reports the grant as it was: revoked at 20, kept.
        let again = store
            .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &fourth, 40)
            .await
            .unwrap();
        assert_eq!(again, RefreshRotation::Reused(revoked.clone()));
        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(revoked));
    }

    async fn refresh_token_of_another_client_is_invalid_and_changes_nothing(db: &Db) {
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;

        let stolen = refresh(DEFAULT_TENANT, "g", hash(2), 10);
        let got = store
            .rotate_refresh_token(DEFAULT_TENANT, "client-2", &hash(1), &stolen, 10)
            .await
            .unwrap();
        assert_eq!(got, RefreshRotation::Invalid);
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(2)).await.unwrap(), None);

        // The token is still current for its own client.
        let second = refresh(DEFAULT_TENANT, "g", hash(3), 20);
        let got = store
            .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &second, 20)
            .await
            .unwrap();
        assert_eq!(got, RefreshRotation::Rotated(g.clone()));

        // Another client presenting the rotated token is not reuse by the
        // grant's client: the grant stays.
        let got = store
            .rotate_refresh_token(DEFAULT_TENANT, "client-2", &hash(1), &stolen, 30)
            .await
            .unwrap();
        assert_eq!(got, RefreshRotation::Invalid);
        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(g));
    }

    async fn expired_refresh_token_is_invalid(db: &Db) {
        let store = db.open().await;
        let (g, token) = grant_with_token(&store).await;
        let second = refresh(DEFAULT_TENANT, "g", hash(2), 10);

        // Valid while `expires_at > at`.
        for at in [token.expires_at, token.expires_at + 1] {
            let got = store
                .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &second, at)
                .await
                .unwrap();
            assert_eq!(got, RefreshRotation::Invalid, "at {at}");
        }
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(2)).await.unwrap(), None);
        let at = token.expires_at - 1;
        let got = store
            .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &second, at)
            .await
            .unwrap();
        assert_eq!(got, RefreshRotation::Rotated(g));
    }

    async fn refresh_token_of_revoked_grant_unknown_or_of_another_tenant_is_invalid(db: &Db) {
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;
        let second = refresh(DEFAULT_TENANT, "g", hash(2), 10);

        let unknown = store
            .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(9), &second, 10)
            .await
            .unwrap();
        assert_eq!(unknown, RefreshRotation::Invalid);
        let theirs = refresh("acme", "g", hash(2), 10);
        let other_tenant =
            store.rotate_refresh_token("acme", CLIENT, &hash(1), &theirs, 10).await.unwrap();
        assert_eq!(other_tenant, RefreshRotation::Invalid);

        assert!(store.revoke_grant(DEFAULT_TENANT, "g", 15).await.unwrap());
        let revoked = store
            .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &second, 20)
            .await
            .unwrap();
        assert_eq!(revoked, RefreshRotation::Invalid);
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(2)).await.unwrap(), None);
        let expected = GrantRecord { revoked_at: Some(15), ..g };
        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(expected));
    }

    async fn refresh_tokens_of_a_disabled_account_are_invalid_and_change_nothing(db: &Db) {
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;
        let second = refresh(DEFAULT_TENANT, "g", hash(2), 10);
        let rotated =
            store.rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &second, 10).await.unwrap();
        assert_eq!(rotated, RefreshRotation::Rotated(g.clone()));

        assert!(store.set_user_disabled(DEFAULT_TENANT, "alice", Some(15)).await.unwrap());
        // The current token does not rotate, and the rotated one is not
        // taken as reuse: nothing changes while the account is disabled.
        let third = refresh(DEFAULT_TENANT, "g", hash(3), 20);
        for presented in [hash(2), hash(1)] {
            let got = store
                .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &presented, &third, 20)
                .await
                .unwrap();
            assert_eq!(got, RefreshRotation::Invalid);
        }
        let batch = [exchange(hash(2), third.clone(), 20)];
        let got = store.rotate_refresh_tokens(&batch).await.unwrap();
        assert_eq!(got.into_iter().next().unwrap().unwrap(), RefreshRotation::Invalid);
        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(g.clone()));
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(3)).await.unwrap(), None);

        // Enabled again: the current token works.
        assert!(store.set_user_disabled(DEFAULT_TENANT, "alice", None).await.unwrap());
        let got =
            store.rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(2), &third, 30).await.unwrap();
        assert_eq!(got, RefreshRotation::Rotated(g));
    }

    async fn refresh_token_of_a_subject_without_an_account_is_invalid(db: &Db) {
        let store = db.open().await;
        let bob = GrantRecord { subject: "bob".to_owned(), ..grant(DEFAULT_TENANT, "g", 1) };
        store.insert_grant(&bob, Some(&refresh(DEFAULT_TENANT, "g", hash(1), 1))).await.unwrap();
        let second = refresh(DEFAULT_TENANT, "g", hash(2), 10);
        let got =
            store.rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &second, 10).await.unwrap();
        assert_eq!(got, RefreshRotation::Invalid);
        let old = store.refresh_token(DEFAULT_TENANT, &hash(1)).await.unwrap().unwrap();
        assert_eq!(old.rotated_at, None);
    }

    async fn rotation_to_a_bad_successor_changes_nothing(db: &Db) {
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;
        store.insert_grant(&grant(DEFAULT_TENANT, "other", 1), None).await.unwrap();

        let bad = [
            refresh(DEFAULT_TENANT, "other", hash(2), 10),
            refresh("acme", "g", hash(2), 10),
            refresh(DEFAULT_TENANT, "g", vec![2; 33], 10),
        ];
        for new in &bad {
            let err = store
                .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), new, 10)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord(_)), "{new:?}: {err:?}");
        }
        // The successor's hash is taken (by the old token itself): the
        // rotation is rolled back.
        let taken = refresh(DEFAULT_TENANT, "g", hash(1), 10);
        let err = store
            .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &taken, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Duplicate), "{err:?}");

        // Still current: not marked rotated by any of the failed attempts.
        let good = refresh(DEFAULT_TENANT, "g", hash(2), 20);
        let got =
            store.rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(1), &good, 20).await.unwrap();
        assert_eq!(got, RefreshRotation::Rotated(g));
    }

    async fn concurrent_rotations_of_one_token_one_rotated_the_rest_reused(db: &Db) {
        // The same refresh token presented twenty times at once (a client
        // retrying, racing an attacker who stole it), on two replicas. A few
        // rounds, each with a grant of its own: one rotation is several
        // statements, so a race window may be missed in any single round.
        const N: usize = 20;
        const ROUNDS: u8 = 5;
        let replicas = [db.open().await, db.open().await];
        alice(&replicas[0]).await;
        for round in 0..ROUNDS {
            let grant_id = format!("g{round}");
            let g = grant(DEFAULT_TENANT, &grant_id, 1);
            let old = refresh(DEFAULT_TENANT, &grant_id, hash(round), 1);
            replicas[0].insert_grant(&g, Some(&old)).await.unwrap();
            // Successor i of this round: hash(i) with the round in byte 0.
            let successor = move |i: usize| {
                let mut token_hash = hash(100 + i as u8);
                token_hash[0] = round;
                token_hash
            };
            let results = race(&replicas, N, |i, store| {
                let new = RefreshTokenRecord {
                    token_hash: successor(i),
                    ..refresh(DEFAULT_TENANT, &grant_id, vec![], 50)
                };
                async move {
                    store
                        .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(round), &new, 50)
                        .await
                        .unwrap()
                }
            })
            .await;
            let mut rotated = Vec::new();
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    RefreshRotation::Rotated(got) => {
                        assert_eq!(got, g, "round {round}");
                        rotated.push(i);
                    }
                    // As it was before that call: unrevoked, or revoked by a
                    // rival's reuse at the same time.
                    RefreshRotation::Reused(got) => {
                        let as_before = got.revoked_at.is_none_or(|at| at == 50);
                        assert!(as_before && got.grant_id == grant_id, "round {round}: {got:?}");
                    }
                    RefreshRotation::Invalid => panic!("round {round}: call {i} invalid"),
                }
            }
            let [winner] = rotated[..] else { panic!("round {round}: rotated {rotated:?}") };
            let revoked = GrantRecord { revoked_at: Some(50), ..g };
            let got = replicas[1].grant(DEFAULT_TENANT, &grant_id).await.unwrap();
            assert_eq!(got, Some(revoked.clone()), "round {round}");
            // Only the winner's successor was stored.
            for i in 0..N {
                let of = replicas[1].grant_of_refresh_token(DEFAULT_TENANT, &successor(i)).await;
                let expected = (i == winner).then(|| revoked.clone());
                assert_eq!(of.unwrap(), expected, "round {round}: successor {i}");
            }
        }
    }

    async fn rfc9700_4_14_2_token_presented_twice_in_one_batch_rotates_then_revokes(db: &Db) {
        // Two presentations of one token that land in the same batch (on
        // SQLite, one transaction): the first rotates, the second is reuse
        // and revokes the grant, the first's successor included.
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;
        store.insert_grant(&grant(DEFAULT_TENANT, "bystander", 1), Some(&refresh(DEFAULT_TENANT, "bystander", hash(7), 1))).await.unwrap();
        let batch = [
            exchange(hash(1), refresh(DEFAULT_TENANT, "g", hash(2), 10), 10),
            exchange(hash(7), refresh(DEFAULT_TENANT, "bystander", hash(8), 10), 10),
            exchange(hash(1), refresh(DEFAULT_TENANT, "g", hash(3), 10), 10),
        ];
        let results = store.rotate_refresh_tokens(&batch).await.unwrap();
        let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        let bystander = grant(DEFAULT_TENANT, "bystander", 1);
        assert_eq!(
            results,
            [
                RefreshRotation::Rotated(g.clone()),
                RefreshRotation::Rotated(bystander.clone()),
                RefreshRotation::Reused(g.clone()),
            ]
        );
        let revoked = GrantRecord { revoked_at: Some(10), ..g };
        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(revoked.clone()));
        // The winner's successor is stored, and dead with its grant.
        assert_eq!(
            store.grant_of_refresh_token(DEFAULT_TENANT, &hash(2)).await.unwrap(),
            Some(revoked)
        );
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(3)).await.unwrap(), None);
        let next = refresh(DEFAULT_TENANT, "g", hash(4), 20);
        let after =
            store.rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(2), &next, 20).await.unwrap();
        assert_eq!(after, RefreshRotation::Invalid);
        // The other grant in the batch is untouched by the reuse.
        assert_eq!(store.grant(DEFAULT_TENANT, "bystander").await.unwrap(), Some(bystander));
    }

    async fn refused_exchange_in_a_batch_writes_nothing_and_leaves_the_others_alone(db: &Db) {
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;
        let h = grant(DEFAULT_TENANT, "h", 1);
        store.insert_grant(&h, Some(&refresh(DEFAULT_TENANT, "h", hash(5), 1))).await.unwrap();
        let k = grant(DEFAULT_TENANT, "k", 1);
        store.insert_grant(&k, Some(&refresh(DEFAULT_TENANT, "k", hash(6), 1))).await.unwrap();
        let batch = [
            // A successor of another grant: refused before anything is written.
            exchange(hash(5), refresh(DEFAULT_TENANT, "g", hash(50), 10), 10),
            exchange(hash(1), refresh(DEFAULT_TENANT, "g", hash(2), 10), 10),
            // A successor whose hash is taken (by `g`'s new token, just
            // above): refused at the insert.
            exchange(hash(6), refresh(DEFAULT_TENANT, "k", hash(2), 10), 10),
            // Malformed successor hash.
            exchange(hash(6), refresh(DEFAULT_TENANT, "k", vec![6; 31], 10), 10),
            // Unknown token.
            exchange(hash(9), refresh(DEFAULT_TENANT, "g", hash(90), 10), 10),
            exchange(hash(6), refresh(DEFAULT_TENANT, "k", hash(60), 10), 10),
        ];
        let results = store.rotate_refresh_tokens(&batch).await.unwrap();
        assert_eq!(results.len(), batch.len());
        let mut results = results.into_iter();
        let mut next = || results.next().unwrap();
        assert!(matches!(next(), Err(StoreError::InvalidRecord(_))));
        assert_eq!(next().unwrap(), RefreshRotation::Rotated(g.clone()));
        assert!(matches!(next(), Err(StoreError::Duplicate)));
        assert!(matches!(next(), Err(StoreError::InvalidRecord(_))));
        assert_eq!(next().unwrap(), RefreshRotation::Invalid);
        assert_eq!(next().unwrap(), RefreshRotation::Rotated(k.clone()));

        // The refused exchanges changed nothing: `h`'s token is still current.
        let old = store.refresh_token(DEFAULT_TENANT, &hash(5)).await.unwrap().unwrap();
        assert_eq!(old.rotated_at, None);
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(50)).await.unwrap(), None);
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(2)).await.unwrap(), Some(g));
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(60)).await.unwrap(), Some(k));
        let again = exchange(hash(5), refresh(DEFAULT_TENANT, "h", hash(51), 20), 20);
        let results = store.rotate_refresh_tokens(&[again]).await.unwrap();
        assert_eq!(results.into_iter().next().unwrap().unwrap(), RefreshRotation::Rotated(h));
    }

    async fn concurrent_rotations_of_many_tokens_each_rotate_once(db: &Db) {
        // Many grants refreshed at once on two handles: on SQLite they are
        // gathered into shared transactions, and each still gets its own
        // grant back and its own successor stored.
        const N: usize = 24;
        let replicas = [db.open().await, db.open().await];
        alice(&replicas[0]).await;
        for i in 0..N {
            let id = format!("g{i}");
            let token = refresh(DEFAULT_TENANT, &id, hash(i as u8), 1);
            replicas[0].insert_grant(&grant(DEFAULT_TENANT, &id, 1), Some(&token)).await.unwrap();
        }
        let results = race(&replicas, N, |i, store| async move {
            let new = refresh(DEFAULT_TENANT, &format!("g{i}"), hash(100 + i as u8), 5);
            store.rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(i as u8), &new, 5).await.unwrap()
        })
        .await;
        for (i, result) in results.into_iter().enumerate() {
            let g = grant(DEFAULT_TENANT, &format!("g{i}"), 1);
            assert_eq!(result, RefreshRotation::Rotated(g.clone()), "{i}");
            let successor = hash(100 + i as u8);
            let of = replicas[1].grant_of_refresh_token(DEFAULT_TENANT, &successor).await;
            assert_eq!(of.unwrap(), Some(g), "{i}");
        }
    }

    async fn chains_of_rotations_on_several_tasks_all_complete(db: &Db) {
        // Each task rotates its own grant's token, then its successor, and so
        // on: on SQLite the committing task keeps starting and stopping as
        // the queue fills and drains, and no rotation may be left behind.
        const TASKS: u8 = 8;
        const STEPS: u8 = 25;
        let store = db.open().await;
        alice(&store).await;
        // Token `step` of task `t`.
        let token = |t: u8, step: u8| {
            let mut h = vec![0xEE; 32];
            (h[0], h[1]) = (t, step);
            h
        };
        for t in 0..TASKS {
            let id = format!("g{t}");
            let first = refresh(DEFAULT_TENANT, &id, token(t, 0), 1);
            store.insert_grant(&grant(DEFAULT_TENANT, &id, 1), Some(&first)).await.unwrap();
        }
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let id = format!("g{t}");
                    for step in 0..STEPS {
                        let new = refresh(DEFAULT_TENANT, &id, token(t, step + 1), 2);
                        let got = store
                            .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &token(t, step), &new, 2)
                            .await
                            .unwrap();
                        assert!(matches!(got, RefreshRotation::Rotated(_)), "{t}/{step}: {got:?}");
                        if step % 3 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    }

    async fn rfc7009_grant_revocation_keeps_the_first_time(db: &Db) {
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;

        assert!(store.revoke_grant(DEFAULT_TENANT, "g", 100).await.unwrap());
        assert!(!store.revoke_grant(DEFAULT_TENANT, "g", 50).await.unwrap());
        assert!(!store.revoke_grant(DEFAULT_TENANT, "missing", 100).await.unwrap());
        assert!(!store.revoke_grant("acme", "g", 10).await.unwrap());
        let revoked = GrantRecord { revoked_at: Some(100), ..g };
        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(revoked.clone()));
        // Revoked grants are still found by their tokens.
        assert_eq!(
            store.grant_of_refresh_token(DEFAULT_TENANT, &hash(1)).await.unwrap(),
            Some(revoked)
        );
    }

    async fn grants_of_a_subject_and_client_are_revoked_on_one_or_every_resource(db: &Db) {
        let store = db.open().await;
        let g = |id: &str, subject: &str, client_id: &str, resource: &str| GrantRecord {
            subject: subject.to_owned(),
            client_id: client_id.to_owned(),
            resource: resource.to_owned(),
            ..grant(DEFAULT_TENANT, id, 1)
        };
        let grants = [
            g("a1", "alice", "c1", "r1"),
            g("a2", "alice", "c1", "r2"),
            GrantRecord { revoked_at: Some(5), ..g("a3", "alice", "c1", "r3") },
            g("a4", "alice", "c2", "r1"),
            g("b1", "bob", "c1", "r1"),
            GrantRecord { tenant_id: "acme".to_owned(), ..g("x1", "alice", "c1", "r1") },
        ];
        for rec in &grants {
            store.insert_grant(rec, None).await.unwrap();
        }
        let revoked_at = |store: Arc<dyn Store>, id: &'static str| async move {
            store.grant(DEFAULT_TENANT, id).await.unwrap().unwrap().revoked_at
        };

        assert_eq!(
            store.revoke_grants_of(DEFAULT_TENANT, "alice", "c1", Some("r1"), 10).await.unwrap(),
            1
        );
        assert_eq!(revoked_at(store.clone(), "a1").await, Some(10));
        assert_eq!(revoked_at(store.clone(), "a2").await, None);

        // Every resource: a2 only, as a1 and a3 are revoked already.
        assert_eq!(
            store.revoke_grants_of(DEFAULT_TENANT, "alice", "c1", None, 20).await.unwrap(),
            1
        );
        for (id, expected) in
            [("a1", Some(10)), ("a2", Some(20)), ("a3", Some(5)), ("a4", None), ("b1", None)]
        {
            assert_eq!(revoked_at(store.clone(), id).await, expected, "{id}");
        }
        assert_eq!(
            store.revoke_grants_of(DEFAULT_TENANT, "alice", "c1", None, 30).await.unwrap(),
            0
        );
        assert_eq!(store.grant("acme", "x1").await.unwrap(), Some(grants[5].clone()));
        assert_eq!(store.revoke_grants_of("acme", "alice", "c2", None, 30).await.unwrap(), 0);
    }

    async fn revocations_since_lists_grants_and_tokens_oldest_first(db: &Db) {
        let store = db.open().await;
        for id in ["g1", "g2", "g3", "old"] {
            store.insert_grant(&grant(DEFAULT_TENANT, id, 1), None).await.unwrap();
        }
        store.insert_grant(&grant("acme", "x", 1), None).await.unwrap();
        for (id, at) in [("g2", 30), ("g1", 10), ("old", 5)] {
            assert!(store.revoke_grant(DEFAULT_TENANT, id, at).await.unwrap());
        }
        assert!(store.revoke_grant("acme", "x", 20).await.unwrap());
        for (jti, at) in [("j2", 30), ("j1", 20), ("j0", 9)] {
            store.revoke_access_token(DEFAULT_TENANT, jti, at, at + 300).await.unwrap();
        }
        // Recording it twice is no error and keeps the first record.
        store.revoke_access_token(DEFAULT_TENANT, "j1", 40, 999).await.unwrap();
        store.revoke_access_token("acme", "j1", 25, 300).await.unwrap();

        let got = store.revocations_since(DEFAULT_TENANT, 10).await.unwrap();
        let expected = [
            Revocation::Grant { grant_id: "g1".to_owned(), revoked_at: 10 },
            Revocation::Token { jti: "j1".to_owned(), revoked_at: 20 },
            Revocation::Grant { grant_id: "g2".to_owned(), revoked_at: 30 },
            Revocation::Token { jti: "j2".to_owned(), revoked_at: 30 },
        ];
        assert_eq!(got, expected);
        assert_eq!(store.revocations_since(DEFAULT_TENANT, 31).await.unwrap(), []);
        assert_eq!(
            store.revocations_since("acme", 0).await.unwrap(),
            [
                Revocation::Grant { grant_id: "x".to_owned(), revoked_at: 20 },
                Revocation::Token { jti: "j1".to_owned(), revoked_at: 25 },
            ]
        );
    }

    async fn expired_tokens_and_old_revocations_are_deleted_and_the_rest_kept(db: &Db) {
        let store = db.open().await;
        alice(&store).await;
        let before = 100;
        let token = |grant_id: &str, byte: u8, expires_at: i64| RefreshTokenRecord {
            expires_at,
            ..refresh(DEFAULT_TENANT, grant_id, hash(byte), 1)
        };
        // A live grant whose token 1 (expired) was rotated to 3 (expiring
        // at the cutoff, also rotated) and then to 4; another live grant
        // whose only token, 2, expired unrotated.
        let live = grant(DEFAULT_TENANT, "live", 1);
        store.insert_grant(&live, Some(&token("live", 1, 99))).await.unwrap();
        for (old, new, expires_at, at) in [(1, 3, 100, 50), (3, 4, 500, 60)] {
            let new = token("live", new, expires_at);
            let got = store
                .rotate_refresh_token(DEFAULT_TENANT, CLIENT, &hash(old), &new, at)
                .await
                .unwrap();
            assert_eq!(got, RefreshRotation::Rotated(live.clone()));
        }
        let lapsed = grant(DEFAULT_TENANT, "lapsed", 1);
        store.insert_grant(&lapsed, Some(&token("lapsed", 2, 98))).await.unwrap();
        // Revoked before the cutoff: goes with its unexpired token.
        let old = GrantRecord { revoked_at: Some(99), ..grant(DEFAULT_TENANT, "old", 1) };
        store.insert_grant(&old, Some(&token("old", 5, 1_000))).await.unwrap();
        // Revoked at the cutoff: stays, with its token.
        let recent = GrantRecord { revoked_at: Some(100), ..grant(DEFAULT_TENANT, "recent", 1) };
        store.insert_grant(&recent, Some(&token("recent", 6, 1_000))).await.unwrap();
        store.revoke_access_token(DEFAULT_TENANT, "expired", 10, 99).await.unwrap();
        store.revoke_access_token(DEFAULT_TENANT, "current", 10, 100).await.unwrap();
        // Another tenant's expired rows stay.
        let theirs = GrantRecord { revoked_at: Some(1), ..grant("acme", "old", 1) };
        let their_token =
            RefreshTokenRecord { expires_at: 2, ..refresh("acme", "old", hash(7), 1) };
        store.insert_grant(&theirs, Some(&their_token)).await.unwrap();
        store.revoke_access_token("acme", "expired", 1, 2).await.unwrap();

        // Tokens 1, 2 and 5, grant `old`, revocation `expired`.
        assert_eq!(store.delete_expired_tokens(DEFAULT_TENANT, before).await.unwrap(), 5);
        assert_eq!(store.delete_expired_tokens(DEFAULT_TENANT, before).await.unwrap(), 0);

        for (byte, kept) in [(1, false), (2, false), (3, true), (4, true), (5, false), (6, true)] {
            let found = store.grant_of_refresh_token(DEFAULT_TENANT, &hash(byte)).await.unwrap();
            assert_eq!(found.is_some(), kept, "token {byte}");
        }
        assert_eq!(store.grant(DEFAULT_TENANT, "live").await.unwrap(), Some(live));
        assert_eq!(store.grant(DEFAULT_TENANT, "lapsed").await.unwrap(), Some(lapsed));
        assert_eq!(store.grant(DEFAULT_TENANT, "old").await.unwrap(), None);
        assert_eq!(store.grant(DEFAULT_TENANT, "recent").await.unwrap(), Some(recent));
        assert_eq!(
            store.revocations_since(DEFAULT_TENANT, 0).await.unwrap(),
            [
                Revocation::Token { jti: "current".to_owned(), revoked_at: 10 },
                Revocation::Grant { grant_id: "recent".to_owned(), revoked_at: 100 },
            ]
        );
        assert_eq!(store.grant_of_refresh_token("acme", &hash(7)).await.unwrap(), Some(theirs));
        assert_eq!(store.revocations_since("acme", 0).await.unwrap().len(), 2);
    }

    async fn consent_is_upserted_and_replaced(db: &Db) {
        let store = db.open().await;
        let first = consent(DEFAULT_TENANT, "alice", CLIENT, RESOURCE);
        store.upsert_consent(&first).await.unwrap();
        assert_eq!(
            store.consent(DEFAULT_TENANT, "alice", CLIENT, RESOURCE).await.unwrap(),
            Some(first.clone())
        );

        let wider = ConsentRecord {
            scope: "repo:read issues:write".to_owned(),
            created_at: 50,
            ..first.clone()
        };
        store.upsert_consent(&wider).await.unwrap();
        assert_eq!(
            store.consent(DEFAULT_TENANT, "alice", CLIENT, RESOURCE).await.unwrap(),
            Some(wider.clone())
        );
        assert_eq!(
            store.list_consents(DEFAULT_TENANT, None).await.unwrap(),
            std::slice::from_ref(&wider)
        );
        let empty = ConsentRecord { scope: String::new(), ..wider };
        store.upsert_consent(&empty).await.unwrap();
        assert_eq!(
            store.consent(DEFAULT_TENANT, "alice", CLIENT, RESOURCE).await.unwrap(),
            Some(empty)
        );

        for (subject, client_id, resource) in
            [("bob", CLIENT, RESOURCE), ("alice", "other", RESOURCE), ("alice", CLIENT, "other")]
        {
            let got = store.consent(DEFAULT_TENANT, subject, client_id, resource).await.unwrap();
            assert_eq!(got, None, "{subject} {client_id} {resource}");
        }
        assert_eq!(store.consent("acme", "alice", CLIENT, RESOURCE).await.unwrap(), None);
        assert_eq!(store.list_consents("acme", None).await.unwrap(), []);
    }

    async fn consents_are_listed_by_subject_client_and_resource_bytewise(db: &Db) {
        let store = db.open().await;
        // Inserted out of order; "B" < "a" bytewise, whatever the locale.
        let all = [
            ("bob", "c1", "r1"),
            ("alice", "c2", "r1"),
            ("alice", "c1", "r2"),
            ("alice", "c1", "R9"),
            ("Zed", "c1", "r1"),
            ("alice", "B", "r1"),
        ];
        for (subject, client_id, resource) in all {
            store
                .upsert_consent(&consent(DEFAULT_TENANT, subject, client_id, resource))
                .await
                .unwrap();
        }
        store.upsert_consent(&consent("acme", "alice", "c0", "r0")).await.unwrap();

        assert_eq!(
            consent_keys(&store, DEFAULT_TENANT, None).await,
            keys(&[
                ("Zed", "c1", "r1"),
                ("alice", "B", "r1"),
                ("alice", "c1", "R9"),
                ("alice", "c1", "r2"),
                ("alice", "c2", "r1"),
                ("bob", "c1", "r1"),
            ])
        );
        assert_eq!(
            consent_keys(&store, DEFAULT_TENANT, Some("alice")).await,
            keys(&[
                ("alice", "B", "r1"),
                ("alice", "c1", "R9"),
                ("alice", "c1", "r2"),
                ("alice", "c2", "r1")
            ])
        );
        assert_eq!(consent_keys(&store, DEFAULT_TENANT, Some("carol")).await, keys(&[]));
        assert_eq!(consent_keys(&store, "acme", None).await, keys(&[("alice", "c0", "r0")]));
    }

    async fn consents_are_deleted_for_one_resource_or_all(db: &Db) {
        let store = db.open().await;
        for (subject, client_id, resource) in [
            ("alice", "c1", "r1"),
            ("alice", "c1", "r2"),
            ("alice", "c1", "r3"),
            ("alice", "c2", "r1"),
            ("bob", "c1", "r1"),
        ] {
            store
                .upsert_consent(&consent(DEFAULT_TENANT, subject, client_id, resource))
                .await
                .unwrap();
        }
        store.upsert_consent(&consent("acme", "alice", "c1", "r1")).await.unwrap();

        assert_eq!(
            store.delete_consents(DEFAULT_TENANT, "alice", "c1", Some("r1")).await.unwrap(),
            1
        );
        assert_eq!(
            store.delete_consents(DEFAULT_TENANT, "alice", "c1", Some("r1")).await.unwrap(),
            0
        );
        assert_eq!(store.delete_consents(DEFAULT_TENANT, "alice", "c1", None).await.unwrap(), 2);
        assert_eq!(store.delete_consents("acme", "bob", "c1", None).await.unwrap(), 0);
        assert_eq!(
            consent_keys(&store, DEFAULT_TENANT, None).await,
            keys(&[("alice", "c2", "r1"), ("bob", "c1", "r1")])
        );
        assert_eq!(consent_keys(&store, "acme", None).await, keys(&[("alice", "c1", "r1")]));
    }

    async fn rfc7523_3_assertion_jti_is_refused_until_it_expires(db: &Db) {
        let store = db.open().await;
        let record = |client_id: &'static str, jti: &'static str, expires_at: i64, now: i64| {
            let store = store.clone();
            async move {
                store
                    .record_assertion_jti(DEFAULT_TENANT, client_id, jti, expires_at, now)
                    .await
                    .unwrap()
            }
        };
        assert!(record("c1", "j", 100, 10).await);
        // A replay, whatever expiry it claims, up to and including `exp`.
        assert!(!record("c1", "j", 500, 20).await);
        assert!(!record("c1", "j", 500, 100).await);
        // jtis are per client, and per tenant.
        assert!(record("c2", "j", 100, 20).await);
        assert!(store.record_assertion_jti("acme", "c1", "j", 100, 20).await.unwrap());
        // Once expired the jti may be used again, and is then recorded anew.
        assert!(record("c1", "j", 300, 101).await);
        assert!(!record("c1", "j", 300, 200).await);
        assert!(!record("c1", "j", 300, 300).await);
        assert!(record("c1", "j", 400, 301).await);
        // Another expired entry, dropped by a later call, may be used again.
        assert!(record("c1", "k", 50, 40).await);
        assert!(record("c1", "l", 600, 60).await);
        assert!(record("c1", "k", 700, 60).await);
        assert!(!record("c1", "k", 700, 61).await);
    }

    async fn concurrent_records_of_one_assertion_jti_exactly_one_is_new(db: &Db) {
        // Twenty copies of one client assertion at once, on two replicas:
        // first while the jti is new, then again once it has expired.
        const N: usize = 20;
        let replicas = [db.open().await, db.open().await];
        for (expires_at, now) in [(100, 10), (300, 200)] {
            let results = race(&replicas, N, |_, store| async move {
                store
                    .record_assertion_jti(DEFAULT_TENANT, CLIENT, "jti", expires_at, now)
                    .await
                    .unwrap()
            })
            .await;
            let new = results.iter().filter(|&&new| new).count();
            assert_eq!(new, 1, "now {now}: {results:?}");
        }
    }

    async fn tenant_isolation_for_grants_and_consents(db: &Db) {
        let store = db.open().await;
        let (g, _) = grant_with_token(&store).await;
        let mine = consent(DEFAULT_TENANT, "alice", CLIENT, RESOURCE);
        store.upsert_consent(&mine).await.unwrap();
        store.revoke_access_token(DEFAULT_TENANT, "jti", 10, 1_000).await.unwrap();

        // Another tenant can neither see nor change any of it.
        assert_eq!(store.grant("acme", "g").await.unwrap(), None);
        assert!(!store.revoke_grant("acme", "g", 5).await.unwrap());
        assert_eq!(store.revoke_grants_of("acme", "alice", CLIENT, None, 5).await.unwrap(), 0);
        assert_eq!(store.revocations_since("acme", 0).await.unwrap(), []);
        assert_eq!(store.delete_expired_tokens("acme", i64::MAX).await.unwrap(), 0);
        assert_eq!(store.consent("acme", "alice", CLIENT, RESOURCE).await.unwrap(), None);
        assert_eq!(store.delete_consents("acme", "alice", CLIENT, None).await.unwrap(), 0);
        assert_eq!(store.grant(DEFAULT_TENANT, "g").await.unwrap(), Some(g.clone()));
        assert_eq!(store.grant_of_refresh_token(DEFAULT_TENANT, &hash(1)).await.unwrap(), Some(g));
        assert_eq!(store.list_consents(DEFAULT_TENANT, None).await.unwrap(), [mine]);
        assert_eq!(store.revocations_since(DEFAULT_TENANT, 0).await.unwrap().len(), 1);

        // Grant ids and token hashes are unique per tenant only.
        let theirs = grant("acme", "g", 2);
        store.insert_grant(&theirs, Some(&refresh("acme", "g", hash(1), 2))).await.unwrap();
        assert_eq!(store.grant_of_refresh_token("acme", &hash(1)).await.unwrap(), Some(theirs));
    }
}

#[test]
fn debug_of_codes_and_refresh_tokens_shows_no_hash() {
    let code = auth_code(DEFAULT_TENANT, vec![HASH_BYTE; 32], 1);
    let debug_code = format!("{code:?}");
    assert!(
        debug_code.contains("code_hash: <redacted>") && debug_code.contains(r#""g-from-code""#),
        "{debug_code}"
    );
    let token = refresh(DEFAULT_TENANT, "g", vec![HASH_BYTE; 32], 1);
    let debug_token = format!("{token:?}");
    assert!(
        debug_token.contains("token_hash: <redacted>") && debug_token.contains(r#"grant_id: "g""#),
        "{debug_token}"
    );
    for debug in [debug_code, debug_token] {
        for notation in [
            format!("{HASH_BYTE}, {HASH_BYTE}"),
            format!("{HASH_BYTE:02x}{HASH_BYTE:02x}"),
            format!("{HASH_BYTE:02X}{HASH_BYTE:02X}"),
        ] {
            assert!(!debug.contains(&notation), "{notation} in {debug}");
        }
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
    assert_eq!(
        tables,
        [
            "_sqlx_migrations",
            "api_keys",
            "audit_checkpoints",
            "audit_heads",
            "audit_records",
            "auth_codes",
            "client_assertion_jtis",
            "consents",
            "grants",
            "oauth_clients",
            "refresh_tokens",
            "revoked_access_tokens",
            "signing_keys",
            "users"
        ]
    );
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

// ---------------------------------------------------------------------------
// Audit trail (`AuditStore`): appends under the chain's head lock, reads in
// `seq` order. The store computes no hash; these tests seal with a stand-in
// (`seq` and a batch marker in the hash bytes) and check what the store
// guarantees: batches continue the head atomically, across handles
// (processes) too, and come back as written.
// ---------------------------------------------------------------------------

use mcpgate_store::{
    AuditCheckpoint, AuditHead, AuditRecord, AuditSealer, AuditStore, SealedBatch, open_audit,
    open_with_audit,
};

impl Db {
    async fn audit(&self) -> Arc<dyn AuditStore> {
        open_audit(&self.url).await.unwrap()
    }
}

/// Seals with stand-in hashes: bytes 0..8 the `seq`, byte 8 `marker`.
/// Checkpoints every `checkpoint_every` records (never if 0).
struct TestSealer {
    marker: u8,
    checkpoint_every: i64,
}

impl TestSealer {
    fn new(marker: u8) -> Self {
        TestSealer {
            marker,
            checkpoint_every: 0,
        }
    }
}

fn stand_in_hash(seq: i64, marker: u8) -> Vec<u8> {
    let mut hash = vec![0u8; 32];
    hash[..8].copy_from_slice(&seq.to_be_bytes());
    hash[8] = marker;
    hash
}

impl AuditSealer for TestSealer {
    fn seal(&self, head: &AuditHead, records: &mut [AuditRecord]) -> SealedBatch {
        let mut seq = head.seq;
        let mut prev = head.hash.clone();
        for rec in records.iter_mut() {
            seq += 1;
            rec.seq = seq;
            rec.prev_hash = prev;
            rec.hash = stand_in_hash(seq, self.marker);
            rec.tag = format!("tag-{seq}");
            prev = rec.hash.clone();
        }
        let every = self.checkpoint_every;
        let checkpoint = (every > 0 && seq / every > head.seq / every).then(|| AuditCheckpoint {
            chain_id: head.chain_id.clone(),
            seq,
            hash: prev.clone(),
            time_ms: 1000 + seq,
            tag: format!("cp-{seq}"),
        });
        SealedBatch {
            head: AuditHead {
                chain_id: head.chain_id.clone(),
                seq,
                hash: prev,
                tag: format!("head-{seq}"),
            },
            checkpoint,
        }
    }
}

/// An unsealed record of `chain` at `time_ms`, every optional column set
/// when `full`.
fn audit_record(chain: &str, time_ms: i64, full: bool) -> AuditRecord {
    let some = |v: &str| full.then(|| v.to_owned());
    AuditRecord {
        chain_id: chain.to_owned(),
        seq: 0,
        time_ms,
        kind: "mcp_request".to_owned(),
        route: some("github"),
        subject: some("alice"),
        client_id: some("client-1"),
        method: some("tools/call"),
        name: some("search_issues"),
        outcome: "ok".to_owned(),
        reason: some("because"),
        policy_ids: r#"["p1","p2"]"#.to_owned(),
        args_digest: some("ab12"),
        latency_us: full.then_some(1234),
        peer: some("127.0.0.1:5000"),
        details: some(r#"{"jti":"j1","n":1.5}"#),
        prev_hash: Vec::new(),
        hash: Vec::new(),
        tag: String::new(),
    }
}

/// Every record of `chain`, read a page of `page` at a time.
async fn all_audit_records(
    store: &Arc<dyn AuditStore>,
    chain: &str,
    page: u32,
) -> Vec<AuditRecord> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let got = store.audit_records(chain, after, None, page).await.unwrap();
        let Some(last) = got.last() else { return all };
        after = last.seq;
        all.extend(got);
    }
}

/// Asserts `records` are 1..=n, each linked to its predecessor.
fn assert_linear(records: &[AuditRecord]) {
    let mut prev = vec![0u8; 32];
    for (i, rec) in records.iter().enumerate() {
        assert_eq!(rec.seq, i as i64 + 1, "seq without gaps");
        assert_eq!(
            rec.prev_hash, prev,
            "record {} links to its predecessor",
            rec.seq
        );
        prev = rec.hash.clone();
    }
}

both_backends! {
    async fn audit_append_round_trips_every_column_and_moves_the_head(db: &Db) {
        let store = db.audit().await;
        assert_eq!(store.audit_head("main").await.unwrap(), None);
        assert_eq!(store.audit_chains().await.unwrap(), Vec::<String>::new());

        let mut batch = vec![audit_record("main", 10, true), audit_record("main", 11, false)];
        let sealed = store.append_audit("main", &mut batch, &TestSealer::new(1)).await.unwrap();
        assert_eq!(sealed.head.seq, 2);
        assert_eq!(batch[0].seq, 1, "the sealed fields are left in the caller's records");

        let got = all_audit_records(&store, "main", 100).await;
        assert_eq!(got, batch);
        assert_eq!(got[0].details.as_deref(), Some(r#"{"jti":"j1","n":1.5}"#), "JSON text kept byte for byte");
        assert_eq!(got[1].route, None);
        assert_eq!(store.audit_head("main").await.unwrap(), Some(sealed.head.clone()));
        assert_eq!(store.audit_chains().await.unwrap(), ["main"]);

        // The next batch continues from the stored head.
        let mut more = vec![audit_record("main", 12, false)];
        store.append_audit("main", &mut more, &TestSealer::new(2)).await.unwrap();
        let got = all_audit_records(&store, "main", 100).await;
        assert_linear(&got);
        assert_eq!(got.len(), 3);
        assert_eq!(store.audit_head("main").await.unwrap().unwrap().seq, 3);
    }

    async fn audit_batches_larger_than_one_insert_statement(db: &Db) {
        let store = db.audit().await;
        let mut batch: Vec<AuditRecord> =
            (0..300).map(|i| audit_record("main", i, i % 2 == 0)).collect();
        store.append_audit("main", &mut batch, &TestSealer::new(1)).await.unwrap();
        let got = all_audit_records(&store, "main", 128).await;
        assert_eq!(got, batch);
        assert_linear(&got);
        // The head moved with the last statement (on SQLite, in the same
        // query as the last rows), and the next batch continues from it.
        assert_eq!(store.audit_head("main").await.unwrap().unwrap().seq, 300);
        let mut next = vec![audit_record("main", 300, true)];
        store.append_audit("main", &mut next, &TestSealer::new(1)).await.unwrap();
        assert_eq!(next[0].seq, 301);
        assert_eq!(store.audit_head("main").await.unwrap().unwrap().seq, 301);
    }

    async fn audit_concurrent_appends_from_two_processes_keep_one_linear_chain(db: &Db) {
        // Two handles with their own pools, like two gateway replicas.
        let replicas = [db.audit().await, db.audit().await];
        let barrier = Arc::new(Barrier::new(8));
        let mut tasks = Vec::new();
        for t in 0..8u8 {
            let store = replicas[usize::from(t % 2)].clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                for i in 0..10 {
                    let mut batch: Vec<AuditRecord> =
                        (0..5).map(|_| audit_record("main", i, false)).collect();
                    store.append_audit("main", &mut batch, &TestSealer::new(t)).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let got = all_audit_records(&replicas[0], "main", 1000).await;
        assert_eq!(got.len(), 8 * 10 * 5);
        assert_linear(&got);
        // Each batch of 5 is contiguous: written under one lock.
        for batch in got.chunks(5) {
            assert!(batch.iter().all(|r| r.hash[8] == batch[0].hash[8]), "batches interleaved");
        }
        let head = replicas[1].audit_head("main").await.unwrap().unwrap();
        assert_eq!((head.seq, head.hash.clone()), (400, got[399].hash.clone()));
    }

    async fn audit_sealed_batch_that_does_not_continue_the_head_is_rejected(db: &Db) {
        struct Skipping;
        impl AuditSealer for Skipping {
            fn seal(&self, head: &AuditHead, records: &mut [AuditRecord]) -> SealedBatch {
                let sealed = TestSealer::new(9).seal(head, records);
                records[0].seq += 1;
                sealed
            }
        }
        struct Unlinked;
        impl AuditSealer for Unlinked {
            fn seal(&self, head: &AuditHead, records: &mut [AuditRecord]) -> SealedBatch {
                let sealed = TestSealer::new(9).seal(head, records);
                records[1].prev_hash = vec![7; 32];
                sealed
            }
        }
        struct WrongHead;
        impl AuditSealer for WrongHead {
            fn seal(&self, head: &AuditHead, records: &mut [AuditRecord]) -> SealedBatch {
                let mut sealed = TestSealer::new(9).seal(head, records);
                sealed.head.seq += 1;
                sealed
            }
        }
        let store = db.audit().await;
        store.append_audit("main", &mut [audit_record("main", 1, false)], &TestSealer::new(1))
            .await
            .unwrap();
        let sealers: [&dyn AuditSealer; 3] = [&Skipping, &Unlinked, &WrongHead];
        for sealer in sealers {
            let mut batch = vec![audit_record("main", 2, false), audit_record("main", 3, false)];
            let err = store.append_audit("main", &mut batch, sealer).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidRecord(_)), "{err:?}");
        }
        let mut other = vec![audit_record("other", 2, false)];
        let err = store.append_audit("main", &mut other, &TestSealer::new(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidRecord(_)), "{err:?}");
        // Nothing of the rejected batches was written.
        assert_eq!(all_audit_records(&store, "main", 100).await.len(), 1);
        assert_eq!(store.audit_head("main").await.unwrap().unwrap().seq, 1);
    }

    async fn audit_checkpoints_are_stored_with_their_batch(db: &Db) {
        let store = db.audit().await;
        let sealer = TestSealer { marker: 1, checkpoint_every: 4 };
        for _ in 0..5 {
            let mut batch = vec![audit_record("main", 1, false), audit_record("main", 2, false)];
            store.append_audit("main", &mut batch, &sealer).await.unwrap();
        }
        let cps = store.audit_checkpoints("main", -1, 100).await.unwrap();
        let seqs: Vec<i64> = cps.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, [4, 8]);
        assert_eq!(cps[0].hash, stand_in_hash(4, 1));
        assert_eq!((cps[1].time_ms, cps[1].tag.as_str()), (1008, "cp-8"));
        assert_eq!(store.audit_checkpoints("main", 4, 100).await.unwrap().len(), 1);

        // An empty batch moves nothing but may carry a checkpoint of the
        // head; a second checkpoint of the same record keeps the first.
        struct Again;
        impl AuditSealer for Again {
            fn seal(&self, head: &AuditHead, records: &mut [AuditRecord]) -> SealedBatch {
                let mut sealed = TestSealer::new(1).seal(head, records);
                sealed.checkpoint = Some(AuditCheckpoint {
                    chain_id: head.chain_id.clone(),
                    seq: head.seq,
                    hash: head.hash.clone(),
                    time_ms: 1,
                    tag: "again".to_owned(),
                });
                sealed
            }
        }
        let sealed = store.append_audit("main", &mut [], &Again).await.unwrap();
        assert_eq!(sealed.head.seq, 10);
        let sealed = store.append_audit("main", &mut [], &Again).await.unwrap();
        assert_eq!(sealed.head.seq, 10);
        let cps = store.audit_checkpoints("main", 8, 100).await.unwrap();
        assert_eq!(cps.len(), 1);
        assert_eq!((cps[0].seq, cps[0].time_ms), (10, 1));
        assert_eq!(all_audit_records(&store, "main", 100).await.len(), 10);
    }

    async fn audit_empty_append_to_a_new_chain_creates_its_genesis_head(db: &Db) {
        let store = db.audit().await;
        let sealed = store.append_audit("fresh", &mut [], &TestSealer::new(1)).await.unwrap();
        assert_eq!((sealed.head.seq, sealed.head.hash.clone()), (0, vec![0; 32]));
        let head = store.audit_head("fresh").await.unwrap().unwrap();
        assert_eq!((head.seq, head.tag.as_str()), (0, "head-0"));
        assert_eq!(store.audit_chains().await.unwrap(), ["fresh"]);
    }

    async fn audit_chains_are_kept_apart_and_listed_bytewise(db: &Db) {
        let store = db.audit().await;
        for chain in ["main", "B", "a"] {
            let mut batch = vec![audit_record(chain, 1, false)];
            store.append_audit(chain, &mut batch, &TestSealer::new(1)).await.unwrap();
        }
        assert_eq!(store.audit_chains().await.unwrap(), ["B", "a", "main"]);
        for chain in ["main", "B", "a"] {
            let got = all_audit_records(&store, chain, 10).await;
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].seq, got[0].chain_id.as_str()), (1, chain));
        }
    }

    async fn audit_records_since_a_time(db: &Db) {
        let store = db.audit().await;
        // Times slightly out of order, as events queued by several callers are.
        let times = [100, 200, 190, 300, 250, 400];
        let mut batch: Vec<AuditRecord> =
            times.iter().map(|&t| audit_record("main", t, false)).collect();
        store.append_audit("main", &mut batch, &TestSealer::new(1)).await.unwrap();

        assert_eq!(store.audit_first_seq_since("main", 195).await.unwrap(), Some(2));
        assert_eq!(store.audit_first_seq_since("main", 260).await.unwrap(), Some(4));
        assert_eq!(store.audit_first_seq_since("main", 401).await.unwrap(), None);
        assert_eq!(store.audit_first_seq_since("other", 0).await.unwrap(), None);
        let since: Vec<(i64, i64)> = store
            .audit_records("main", 1, Some(195), 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.seq, r.time_ms))
            .collect();
        assert_eq!(since, [(2, 200), (4, 300), (5, 250), (6, 400)]);
        let limited = store.audit_records("main", 0, None, 2).await.unwrap();
        assert_eq!(limited.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    }

    async fn audit_and_store_share_one_open(db: &Db) {
        let (store, audit) = open_with_audit(&db.url).await.unwrap();
        store.ping().await.unwrap();
        let mut batch = vec![audit_record("main", 1, false)];
        audit.append_audit("main", &mut batch, &TestSealer::new(1)).await.unwrap();
        assert_eq!(format!("{audit:?}"), format!("{store:?}"));
        assert_eq!(all_audit_records(&db.audit().await, "main", 10).await.len(), 1);
    }

    async fn audit_head_row_tampered_back_makes_appends_fail_not_fork(db: &Db) {
        let store = db.audit().await;
        let mut batch = vec![audit_record("main", 1, false), audit_record("main", 2, false)];
        store.append_audit("main", &mut batch, &TestSealer::new(1)).await.unwrap();
        db.execute("UPDATE audit_heads SET seq = 1").await;
        let mut next = vec![audit_record("main", 3, false)];
        let err = store.append_audit("main", &mut next, &TestSealer::new(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Duplicate), "{err:?}");
        assert_eq!(all_audit_records(&store, "main", 10).await.len(), 2);
    }
}
