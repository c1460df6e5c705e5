//! Streamable HTTP routes end to end. Every refusal also checks that the
//! upstream saw nothing.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};

use crate::support::*;

struct Setup {
    iss: Issuer,
    up: Upstream,
    gw: Gw,
}

impl Setup {
    async fn new() -> Self {
        let iss = Issuer::start().await;
        let up = Upstream::start().await;
        let cfg = format!(
            r#"
[[trusted_issuers]]
issuer = "{iss}"

[[routes]]
path = "/team/mcp"
upstream_url = "{up}"
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]

[[routes]]
path = "/other/mcp"
upstream_url = "{up}"
scopes = ["mcp"]

[[routes]]
path = "/open"
upstream_url = "{up}"
auth = "none"
"#,
            iss = iss.url,
            up = up.url
        );
        let gw = Gw::start(&cfg).await;
        Self { iss, up, gw }
    }

    fn team(&self) -> String {
        self.gw.url("/team/mcp")
    }

    fn good_token(&self) -> String {
        self.iss.token(&self.team(), "mcp")
    }
}

#[tokio::test]
async fn rfc9728_3_prm_document_per_route() {
    let s = Setup::new().await;
    let r = client()
        .get(s.gw.url("/.well-known/oauth-protected-resource/team/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["resource"], s.team());
    assert_eq!(doc["authorization_servers"], json!([s.iss.url]));
    assert_eq!(doc["scopes_supported"], json!(["mcp"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    // The public route has no metadata; unknown routes neither.
    for p in [
        "/.well-known/oauth-protected-resource/open",
        "/.well-known/oauth-protected-resource/nope",
    ] {
        assert_eq!(
            client().get(s.gw.url(p)).send().await.unwrap().status(),
            404,
            "{p}"
        );
    }
}

#[tokio::test]
async fn rfc9728_5_1_missing_token_gets_challenge_and_jsonrpc_body() {
    let s = Setup::new().await;
    let r = rpc(&s.team(), None, &list(41)).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        www_auth_of(&r),
        format!(
            "Bearer scope=\"mcp\", resource_metadata=\"{}\"",
            s.gw.url("/.well-known/oauth-protected-resource/team/mcp")
        )
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 41);
    assert_eq!(body["jsonrpc"], "2.0");
    assert!(body["error"]["code"].is_i64());
    assert!(s.up.seen().is_empty());
}

#[tokio::test]
async fn valid_token_reaches_upstream_without_passthrough() {
    let s = Setup::new().await;
    let token = s.good_token();
    let r = client()
        .post(s.team())
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("cookie", "session=secret-cookie")
        .header("dpop", "proof")
        .header("x-mcp-subject", "admin")
        .header("X-MCP-Scopes", "everything")
        .body(call(1, "echo").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["content"][0]["text"], "called echo");
    let seen = s.up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert!(h.get("authorization").is_none(), "token passed through");
    assert!(h.get("cookie").is_none());
    assert!(h.get("dpop").is_none());
    assert_eq!(h.get_all("x-mcp-subject").iter().count(), 1);
    assert_eq!(h["x-mcp-subject"], "alice");
    assert_eq!(h["x-mcp-client-id"], "test-client");
    assert_eq!(h["x-mcp-scopes"], "mcp");
    for v in h.values() {
        assert!(!v.to_str().unwrap_or("").contains(&token));
    }
    assert_eq!(seen[0].body, call(1, "echo"));
}

#[tokio::test]
async fn bad_token_matrix_is_refused_and_upstream_sees_nothing() {
    let s = Setup::new().await;
    let team = s.team();
    let now = mcpgate_test_support::now();
    let other_key = mcpgate_test_support::TestKey::es256("key-1");
    let mut cases: Vec<(&str, String)> = vec![
        ("other route", s.iss.token(&s.gw.url("/other/mcp"), "mcp")),
        ("trailing slash", s.iss.token(&format!("{team}/"), "mcp")),
        ("prefix", s.iss.token(&s.gw.url("/team"), "mcp")),
        ("origin only", s.iss.token(&s.gw.base, "mcp")),
        (
            "expired",
            s.iss.token_with(|c| {
                c["aud"] = json!(team);
                c["scope"] = json!("mcp");
                c["exp"] = json!(now - 120);
            }),
        ),
        (
            "not yet valid",
            s.iss.token_with(|c| {
                c["aud"] = json!(team);
                c["scope"] = json!("mcp");
                c["nbf"] = json!(now + 300);
            }),
        ),
        (
            "wrong issuer",
            other_key.sign(&mcpgate_test_support::claims(
                "https://evil.example",
                &team,
                "mcp",
            )),
        ),
        (
            "forged with same kid",
            other_key.sign(&mcpgate_test_support::claims(&s.iss.url, &team, "mcp")),
        ),
        (
            "alg none",
            mcpgate_test_support::alg_none_token(&mcpgate_test_support::claims(
                &s.iss.url, &team, "mcp",
            )),
        ),
        (
            "hmac with public key",
            mcpgate_test_support::hs256_token(
                "key-1",
                &mcpgate_test_support::claims(&s.iss.url, &team, "mcp"),
                s.iss.key.jwk.to_string().as_bytes(),
            ),
        ),
        ("garbage", "not-a-token".into()),
        (
            "unknown api key",
            format!("mcpg_0123456789abcdef_{}", "A".repeat(43)),
        ),
    ];
    let unknown_kid = mcpgate_test_support::TestKey::es256("unknown-kid");
    cases.push((
        "unknown kid",
        unknown_kid.sign(&mcpgate_test_support::claims(&s.iss.url, &team, "mcp")),
    ));
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("key-1".into());
    h.jku = Some("http://127.0.0.1:1/jwks".into());
    cases.push((
        "jku pointing elsewhere",
        other_key.sign_with_header(h, &mcpgate_test_support::claims(&s.iss.url, &team, "mcp")),
    ));
    for (name, token) in &cases {
        let r = rpc(&team, Some(token), &call(7, "echo")).await;
        assert_eq!(r.status(), 401, "{name}");
        let ch = www_auth_of(&r);
        assert!(
            ch.starts_with("Bearer error=\"invalid_token\""),
            "{name}: {ch}"
        );
        assert!(ch.contains("resource_metadata="), "{name}: {ch}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["id"], 7, "{name}");
    }
    assert!(s.up.seen().is_empty(), "upstream saw a refused request");
}

#[tokio::test]
async fn rfc6750_2_3_token_in_query_string_is_refused() {
    let s = Setup::new().await;
    let url = format!("{}?access_token={}", s.team(), s.good_token());
    let r = rpc(&url, None, &call(1, "echo")).await;
    assert_eq!(r.status(), 400);
    assert!(www_auth_of(&r).contains("error=\"invalid_request\""));
    // Even alongside a valid header the query token is refused.
    let r = rpc(&url, Some(&s.good_token()), &call(1, "echo")).await;
    assert_eq!(r.status(), 400);
    assert!(s.up.seen().is_empty());
}

#[tokio::test]
async fn mcp_scope_step_up_names_every_needed_scope() {
    let s = Setup::new().await;
    let r = rpc(&s.team(), Some(&s.good_token()), &call(2, "write_note")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        www_auth_of(&r),
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"mcp notes:write\", resource_metadata=\"{}\"",
            s.gw.url("/.well-known/oauth-protected-resource/team/mcp")
        )
    );
    assert!(s.up.seen().is_empty());
    // Without even the route scope: 403 naming the route scope.
    let r = rpc(
        &s.team(),
        Some(&s.iss.token(&s.team(), "other")),
        &call(3, "echo"),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(www_auth_of(&r).contains("scope=\"mcp\""));
    assert!(s.up.seen().is_empty());
    // With the step-up scope it goes through.
    let t = s.iss.token(&s.team(), "mcp notes:write");
    let r = rpc(&s.team(), Some(&t), &call(4, "write_note")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.up.seen().len(), 1);
}

#[tokio::test]
async fn tools_list_is_filtered_json_and_sse() {
    let s = Setup::new().await;
    for mode in [ListMode::Json, ListMode::Sse] {
        s.up.set_list_mode(mode);
        let r = rpc(&s.team(), Some(&s.good_token()), &list(9)).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains("\"echo\""), "{mode:?}: {text}");
        assert!(text.contains("\"delete_all\""), "{mode:?}: {text}");
        assert!(!text.contains("write_note"), "{mode:?}: {text}");
        if mode == ListMode::Sse {
            // Other events pass through unchanged.
            assert!(text.starts_with("id: 1\ndata: \n\n"), "{text}");
            assert!(text.contains("notifications/progress"), "{text}");
        }
        let t = s.iss.token(&s.team(), "mcp notes:write");
        let text = rpc(&s.team(), Some(&t), &list(9))
            .await
            .text()
            .await
            .unwrap();
        assert!(text.contains("write_note"), "{mode:?}: {text}");
    }
}

#[tokio::test]
async fn origin_not_allowed_is_403_and_same_origin_passes() {
    let s = Setup::new().await;
    let send = |origin: &'static str| {
        let url = s.team();
        let t = s.good_token();
        async move {
            client()
                .post(url)
                .bearer_auth(t)
                .header("content-type", "application/json")
                .header("origin", origin)
                .body(call(1, "echo").to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let r = send("http://evil.example").await;
    assert_eq!(r.status(), 403);
    assert!(s.up.seen().is_empty());
    let r = client()
        .post(s.gw.url("/open"))
        .header("content-type", "application/json")
        .header("host", "evil.example.com")
        .body(call(1, "echo").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        403,
        "DNS rebinding: foreign Host on a loopback gateway"
    );
    let own = s.gw.base.clone();
    let r = client()
        .post(s.team())
        .bearer_auth(s.good_token())
        .header("content-type", "application/json")
        .header("origin", own)
        .body(call(1, "echo").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn limits_body_size_depth_parse_and_batches() {
    let s = Setup::new().await;
    let t = s.good_token();
    let big = "x".repeat(5 * 1024 * 1024);
    let r = client()
        .post(s.team())
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let r = client()
        .post(s.team())
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","name":"write_note"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "duplicate key");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(body["id"], 5);

    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"echo","arguments":{}1{}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let r = client()
        .post(s.team())
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "nesting");
    assert_eq!(r.json::<Value>().await.unwrap()["id"], 6);

    let r = client()
        .post(s.team())
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(body["id"], Value::Null);

    let r = rpc(
        &s.team(),
        Some(&t),
        &json!([call(1, "echo"), call(2, "write_note")]),
    )
    .await;
    assert_eq!(r.status(), 400, "batch under 2025-11-25");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], -32600);
    assert!(s.up.seen().is_empty());
}

/// MCP authorization, scope challenges: the 403 names every scope the
/// operation needs. For a batch (2025-03-26) that is the union over its
/// messages, not the first failing message's scopes: `echo` needs `mcp`,
/// `write_note` also `notes:write`, and one step-up must cover both.
#[tokio::test]
async fn mcp_scope_challenge_for_a_batch_names_the_scopes_of_all_its_messages() {
    let s = Setup::new().await;
    let r = client()
        .post(s.team())
        .bearer_auth(s.iss.token(&s.team(), "other"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-03-26")
        .body(json!([call(1, "echo"), call(2, "write_note")]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        www_auth_of(&r).contains("scope=\"mcp notes:write\""),
        "{}",
        www_auth_of(&r)
    );
    assert!(s.up.seen().is_empty());
}

#[tokio::test]
async fn sep2243_header_body_mismatch_is_rejected_before_upstream() {
    let s = Setup::new().await;
    let t = s.iss.token(&s.team(), "mcp notes:write");
    let body = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {
        "name": "delete_all", "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    let send = |name: &'static str| {
        let (url, t, body) = (s.team(), t.clone(), body.clone());
        async move {
            client()
                .post(url)
                .bearer_auth(t)
                .header("content-type", "application/json")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", name)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    for name in ["echo", "=?base64?ZWNobw==?="] {
        let r = send(name).await;
        assert_eq!(r.status(), 400, "{name}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], -32020);
        assert_eq!(b["id"], 8);
    }
    assert!(s.up.seen().is_empty());
    let r = send("=?base64?ZGVsZXRlX2FsbA==?=").await;
    assert_eq!(r.status(), 200);
    assert_eq!(s.up.seen().len(), 1);
}

#[tokio::test]
async fn rfc8725_unknown_kid_flood_fetches_jwks_a_bounded_number_of_times() {
    let s = Setup::new().await;
    // Warm the cache with one good request.
    assert_eq!(
        rpc(&s.team(), Some(&s.good_token()), &call(1, "echo"))
            .await
            .status(),
        200
    );
    let before = s.iss.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..25 {
        let k = mcpgate_test_support::TestKey::es256(&format!("random-{i}"));
        let t = k.sign(&mcpgate_test_support::claims(&s.iss.url, &s.team(), "mcp"));
        assert_eq!(
            rpc(&s.team(), Some(&t), &call(1, "echo")).await.status(),
            401
        );
    }
    let after = s.iss.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        after - before <= 1,
        "{} fetches for 25 unknown kids",
        after - before
    );
}

#[tokio::test]
async fn api_key_create_use_scope_route_and_revoke() {
    let s = Setup::new().await;
    let key = mcpgate_crypto::apikey::generate().unwrap();
    let rec = mcpgate_store::ApiKeyRecord {
        tenant_id: mcpgate_store::DEFAULT_TENANT.into(),
        id: key.id.clone(),
        name: "agent".into(),
        route: "/team/mcp".into(),
        scopes: vec!["mcp".into()],
        secret_hash: key.hash.to_vec(),
        created_at: 0,
        expires_at: None,
        revoked_at: None,
    };
    s.gw.store.insert_api_key(&rec).await.unwrap();
    let k = std::str::from_utf8(key.key.expose()).unwrap().to_owned();
    let r = rpc(&s.team(), Some(&k), &call(1, "echo")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.up.seen()[0].headers["x-mcp-subject"],
        format!("apikey:{}", key.id)
    );
    assert!(s.up.seen()[0].headers.get("authorization").is_none());
    // Scopes are enforced like a token's.
    assert_eq!(
        rpc(&s.team(), Some(&k), &call(2, "write_note"))
            .await
            .status(),
        403
    );
    // Another route: refused.
    let r = rpc(&s.gw.url("/other/mcp"), Some(&k), &call(3, "echo")).await;
    assert_eq!(r.status(), 401);
    // A tampered secret: refused.
    let mut bad = k.clone();
    bad.replace_range(bad.len() - 2.., "zz");
    assert_eq!(
        rpc(&s.team(), Some(&bad), &call(4, "echo")).await.status(),
        401
    );
    // Revocation takes effect on the next request.
    s.gw.store
        .revoke_api_key(mcpgate_store::DEFAULT_TENANT, &key.id, 1)
        .await
        .unwrap();
    let r = rpc(&s.team(), Some(&k), &call(5, "echo")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(s.up.seen().len(), 1);
}

#[tokio::test]
async fn expired_api_key_is_refused() {
    let s = Setup::new().await;
    let key = mcpgate_crypto::apikey::generate().unwrap();
    s.gw.store
        .insert_api_key(&mcpgate_store::ApiKeyRecord {
            tenant_id: mcpgate_store::DEFAULT_TENANT.into(),
            id: key.id.clone(),
            name: "old".into(),
            route: "/team/mcp".into(),
            scopes: vec!["mcp".into()],
            secret_hash: key.hash.to_vec(),
            created_at: 0,
            expires_at: Some(1),
            revoked_at: None,
        })
        .await
        .unwrap();
    let k = std::str::from_utf8(key.key.expose()).unwrap().to_owned();
    let r = rpc(&s.team(), Some(&k), &call(1, "echo")).await;
    assert_eq!(r.status(), 401);
    assert!(www_auth_of(&r).contains("expired"));
    assert!(s.up.seen().is_empty());
}

#[tokio::test]
async fn sse_headers_arrive_before_first_event_and_disconnect_closes_upstream() {
    let s = Setup::new().await;
    let release = s.up.hold_next_stream();
    let mut dropped = s.up.on_stream_dropped();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        client()
            .get(s.team())
            .bearer_auth(s.good_token())
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .expect("headers must arrive while the upstream holds its first event")
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    release.send(()).unwrap();
    let mut resp = resp;
    let chunk = resp.chunk().await.unwrap().unwrap();
    assert!(
        std::str::from_utf8(&chunk)
            .unwrap()
            .contains("notifications/ping")
    );
    drop(resp);
    tokio::time::timeout(Duration::from_secs(10), dropped.recv())
        .await
        .expect("upstream stream must close after the client disconnects")
        .unwrap();
}

#[tokio::test]
async fn auth_none_route_forwards_without_identity_headers() {
    let s = Setup::new().await;
    let r = client()
        .post(s.gw.url("/open"))
        .header("content-type", "application/json")
        .header("x-mcp-subject", "forged")
        .body(call(1, "echo").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.seen();
    assert!(seen[0].headers.get("x-mcp-subject").is_none());
}

#[tokio::test]
async fn health_and_readiness() {
    let s = Setup::new().await;
    assert_eq!(
        client()
            .get(s.gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client()
            .get(s.gw.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn upstream_session_is_bound_to_its_principal() {
    let s = Setup::new().await;
    let alice = s.good_token();
    let bob = s.iss.token_with(|c| {
        c["aud"] = json!(s.team());
        c["scope"] = json!("mcp");
        c["sub"] = json!("bob");
    });
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    let r = rpc(&s.team(), Some(&alice), &init).await;
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    assert!(sid.starts_with("up-session-1."), "{sid}");
    let with_sid = |token: String, sid: String| {
        let url = s.team();
        async move {
            client()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("mcp-session-id", sid)
                .body(call(2, "echo").to_string())
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(with_sid(alice.clone(), sid.clone()).await.status(), 200);
    assert_eq!(s.up.seen()[1].headers["mcp-session-id"], "up-session-1");
    // Bob with Alice's session id, or anyone with the bare upstream id: 404,
    // and the upstream sees nothing.
    let r = with_sid(bob, sid.clone()).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["id"], 2);
    assert_eq!(with_sid(alice, "up-session-1".into()).await.status(), 404);
    assert_eq!(s.up.seen().len(), 2);
}

#[tokio::test]
async fn oversized_request_headers_are_refused() {
    let s = Setup::new().await;
    let r = client()
        .post(s.team())
        .bearer_auth(s.good_token())
        .header("content-type", "application/json")
        .header("x-padding", "p".repeat(64 * 1024))
        .body(call(1, "echo").to_string())
        .send()
        .await;
    // hyper answers 431 or closes the connection; either way nothing passes.
    if let Ok(r) = r {
        assert_eq!(r.status(), 431);
    }
    assert!(s.up.seen().is_empty());
}

#[tokio::test]
async fn metrics_count_requests_and_refusals_by_reason() {
    let s = Setup::new().await;
    assert_eq!(
        rpc(&s.team(), Some(&s.good_token()), &call(1, "echo"))
            .await
            .status(),
        200
    );
    let expired = s.iss.token_with(|c| {
        c["aud"] = json!(s.team());
        c["exp"] = json!(1);
    });
    assert_eq!(
        rpc(&s.team(), Some(&expired), &call(2, "echo"))
            .await
            .status(),
        401
    );
    let text = s.gw.gateway.metrics.encode();
    assert!(
        text.contains(
            r#"mcpgate_requests_total{route="/team/mcp",method="tools/call",outcome="ok"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"mcpgate_requests_total{route="/team/mcp",method="tools/call",outcome="invalid_credential"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mcpgate_auth_failures_total{reason="expired"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("mcpgate_upstream_latency_seconds_count{route=\"/team/mcp\"} 1"),
        "{text}"
    );
}

/// An issuer with only an RFC 7662 introspection endpoint.
async fn introspecting_issuer() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let iss = url.clone();
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let iss = iss.clone();
            c.fetch_add(1, Ordering::SeqCst);
            async move {
                // The gateway authenticates with HTTP Basic (RFC 7662 §2.1).
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                if auth.as_deref() != Some("Basic Z3c6Z3ctc2VjcmV0") {
                    return (http::StatusCode::UNAUTHORIZED, axum::Json(json!({}))).into_response();
                }
                let token = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("token="))
                    .unwrap_or("")
                    .to_owned();
                let aud = token
                    .strip_prefix("opaque-for-")
                    .unwrap_or("nothing")
                    .replace("%2F", "/")
                    .replace("%3A", ":");
                let doc = if token == "revoked" {
                    json!({"active": false})
                } else {
                    json!({"active": true, "iss": iss, "sub": "carol", "client_id": "agent-7",
                           "scope": "mcp", "aud": aud, "exp": mcpgate_test_support::now() + 600})
                };
                axum::Json(doc).into_response()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, calls)
}

use axum::response::IntoResponse as _;

#[tokio::test]
async fn rfc7662_opaque_tokens_are_introspected_audience_checked_and_cached() {
    use std::sync::atomic::Ordering;
    let (iss, calls) = introspecting_issuer().await;
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        r#"
[[trusted_issuers]]
issuer = "{iss}"
introspection_endpoint = "{iss}/introspect"
client_id = "gw"
client_secret = "gw-secret"

[[routes]]
path = "/mcp"
upstream_url = "{}"
scopes = ["mcp"]
"#,
        up.url
    ))
    .await;
    let url = gw.url("/mcp");
    let good = format!("opaque-for-{url}");
    for i in 0..3 {
        let r = rpc(&url, Some(&good), &call(i, "echo")).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "introspection result is cached"
    );
    assert_eq!(up.seen()[0].headers["x-mcp-subject"], "carol");
    assert_eq!(up.seen()[0].headers["x-mcp-client-id"], "agent-7");
    // A token introspected as active but for another resource is refused.
    let other = format!("opaque-for-{url}/");
    assert_eq!(
        rpc(&url, Some(&other), &call(9, "echo")).await.status(),
        401
    );
    assert_eq!(
        rpc(&url, Some("revoked"), &call(9, "echo")).await.status(),
        401
    );
    assert_eq!(up.seen().len(), 3);
}

/// RFC 7662 with two trusted issuers: an opaque token is offered to each
/// that introspects, and one that cannot answer (here: nothing listens)
/// does not stop the next from vouching for it. And an opaque token with
/// two dots, which looks like a JWS but is not one, is introspected too
/// rather than refused as a malformed JWT.
#[tokio::test]
async fn rfc7662_unreachable_issuer_does_not_stop_the_next_and_dotted_opaque_tokens_are_introspected()
 {
    let (iss, calls) = introspecting_issuer().await;
    let down = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down_url = format!("http://{}", down.local_addr().unwrap());
    drop(down);
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        r#"
[[trusted_issuers]]
issuer = "{down_url}"
introspection_endpoint = "{down_url}/introspect"
client_id = "gw"
client_secret = "gw-secret"

[[trusted_issuers]]
issuer = "{iss}"
introspection_endpoint = "{iss}/introspect"
client_id = "gw"
client_secret = "gw-secret"
audience = "urn.mcp.gw"

[[routes]]
path = "/mcp"
upstream_url = "{}"
scopes = ["mcp"]
"#,
        up.url
    ))
    .await;
    let url = gw.url("/mcp");
    let r = rpc(&url, Some(&format!("opaque-for-{url}")), &call(1, "echo")).await;
    assert_eq!(r.status(), 200);
    let dotted = "opaque-for-urn.mcp.gw";
    assert_eq!(dotted.split('.').count(), 3);
    let r = rpc(&url, Some(dotted), &call(2, "echo")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(up.seen().len(), 2);
    // Inactive at the one that answers, the other unreachable: refused.
    let r = rpc(&url, Some("revoked"), &call(3, "echo")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn issuer_audience_override_is_exact() {
    let iss = Issuer::start().await;
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        r#"
[[trusted_issuers]]
issuer = "{}"
audience = "api://mcp-gateway"

[[routes]]
path = "/mcp"
upstream_url = "{}"
scopes = ["mcp"]
"#,
        iss.url, up.url
    ))
    .await;
    let url = gw.url("/mcp");
    assert_eq!(
        rpc(
            &url,
            Some(&iss.token("api://mcp-gateway", "mcp")),
            &call(1, "echo")
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        rpc(
            &url,
            Some(&iss.token("api://mcp-gateway/", "mcp")),
            &call(2, "echo")
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        rpc(
            &url,
            Some(&iss.token("api://other", "mcp")),
            &call(3, "echo")
        )
        .await
        .status(),
        401
    );
}

#[tokio::test]
async fn mcp_scope_hierarchy_broader_scope_opens_narrower_tool() {
    let iss = Issuer::start().await;
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        r#"
[scope_implies]
admin = ["mcp", "notes:write"]

[[trusted_issuers]]
issuer = "{}"

[[routes]]
path = "/mcp"
upstream_url = "{}"
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]
"#,
        iss.url, up.url
    ))
    .await;
    let url = gw.url("/mcp");
    assert_eq!(
        rpc(
            &url,
            Some(&iss.token(&url, "admin")),
            &call(1, "write_note")
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        rpc(&url, Some(&iss.token(&url, "mcp")), &call(2, "write_note"))
            .await
            .status(),
        403
    );
}

#[tokio::test]
async fn cors_preflight_and_exposed_headers_for_allowed_origins_only() {
    let s = Setup::new().await;
    let preflight = |origin: String| {
        let url = s.team();
        async move {
            client()
                .request(http::Method::OPTIONS, url)
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "authorization, content-type, mcp-param-region, x-evil",
                )
                .send()
                .await
                .unwrap()
        }
    };
    let r = preflight(s.gw.base.clone()).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        s.gw.base.as_str()
    );
    assert_eq!(
        r.headers()["access-control-allow-headers"],
        "authorization, content-type, mcp-param-region"
    );
    let r = preflight("http://evil.example".into()).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A 401 to an allowed browser origin exposes the challenge.
    let r = client()
        .post(s.team())
        .header("origin", s.gw.base.clone())
        .header("content-type", "application/json")
        .body(call(1, "echo").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        s.gw.base.as_str()
    );
    assert!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("www-authenticate")
    );
    assert!(s.up.seen().is_empty());
}
