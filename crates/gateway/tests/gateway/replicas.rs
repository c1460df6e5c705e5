//! Several gateway replicas on one PostgreSQL database.

use serde_json::json;
use sqlx::{Connection as _, Executor as _, PgConnection};

use crate::support::*;

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh schema, so parallel test runs do not meet; `None` when the
/// PostgreSQL tests are explicitly skipped.
async fn schema_url() -> Option<(String, String)> {
    if std::env::var("MCPGATE_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        return None;
    }
    let base = std::env::var("MCPGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.into());
    let mut bytes = [0u8; 8];
    mcpgate_crypto::random_bytes(&mut bytes).unwrap();
    let schema = format!(
        "gw_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut conn = PgConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {base} is unreachable ({e}); set MCPGATE_TEST_SKIP_POSTGRES=1 to skip"
        )
    });
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    conn.close().await.unwrap();
    Some((format!("{base}?options[search_path]={schema}"), schema))
}

async fn drop_schema(schema: &str) {
    let base = std::env::var("MCPGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.into());
    let mut conn = PgConnection::connect(&base).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn two_replicas_on_postgres_share_api_keys_and_revocation() {
    let Some((url, schema)) = schema_url().await else {
        return;
    };
    let up = Upstream::start().await;
    let cfg = format!(
        "[[routes]]\npath = \"/mcp\"\nupstream_url = \"{}\"\nscopes = [\"mcp\"]\n",
        up.url
    );
    let a = Gw::start_with_storage(&cfg, Some(&url)).await;
    let b = Gw::start_with_storage(&cfg, Some(&url)).await;
    // A key created through replica A's storage handle…
    let key = mcpgate_crypto::apikey::generate().unwrap();
    a.store
        .insert_api_key(&mcpgate_store::ApiKeyRecord {
            tenant_id: mcpgate_store::DEFAULT_TENANT.into(),
            id: key.id.clone(),
            name: "agent".into(),
            route: "/mcp".into(),
            scopes: vec!["mcp".into()],
            secret_hash: key.hash.to_vec(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
        })
        .await
        .unwrap();
    let k = std::str::from_utf8(key.key.expose()).unwrap().to_owned();
    // …opens both replicas (each checks its own resource URI)…
    for gw in [&a, &b] {
        let r = rpc(&gw.url("/mcp"), Some(&k), &call(1, "echo")).await;
        assert_eq!(r.status(), 200);
    }
    // …and a revocation through replica B is seen by replica A at once.
    b.store
        .revoke_api_key(mcpgate_store::DEFAULT_TENANT, &key.id, 1)
        .await
        .unwrap();
    for gw in [&a, &b] {
        let r = rpc(&gw.url("/mcp"), Some(&k), &call(2, "echo")).await;
        assert_eq!(r.status(), 401);
        assert!(www_auth_of(&r).contains("invalid_token"));
    }
    assert_eq!(up.seen().len(), 2);
    assert_eq!(up.seen()[0].body, json!(call(1, "echo")));
    drop_schema(&schema).await;
}
