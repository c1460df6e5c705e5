//! Cedar policies on a route, end to end: list filtering, refusal before
//! the upstream, policies on tool arguments, and a broken edit that leaves
//! the last good set in force. Every refusal checks that the upstream saw
//! nothing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

const POLICY: &str = r#"
@id("everyone")
permit(principal, action, resource);

@id("alice-no-delete")
forbid(principal == User::"alice", action == Action::"tools/call", resource == Tool::"delete_all");

@id("no-secret-echo")
forbid(principal, action == Action::"tools/call", resource == Tool::"echo")
when { context.arguments has text && context.arguments.text like "secret*" };
"#;

struct Setup {
    iss: Issuer,
    up: Upstream,
    gw: Gw,
    policy: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("mcp.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    let iss = Issuer::start().await;
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        r#"
[[trusted_issuers]]
issuer = "{iss}"

[[routes]]
path = "/mcp"
upstream_url = "{up}"
scopes = ["mcp"]
policy = "{policy}"
"#,
        iss = iss.url,
        up = up.url,
        policy = policy.display()
    ))
    .await;
    Setup {
        iss,
        up,
        gw,
        policy,
        _dir: dir,
    }
}

fn token_for(s: &Setup, sub: &str) -> String {
    let url = s.gw.url("/mcp");
    s.iss.token_with(|c| {
        c["sub"] = sub.into();
        c["aud"] = url.into();
        c["scope"] = "mcp".into();
    })
}

async fn tools(url: &str, token: &str) -> Vec<String> {
    let body: Value = rpc(url, Some(token), &list(1)).await.json().await.unwrap();
    body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn call_with(id: u64, tool: &str, args: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}})
}

#[tokio::test]
async fn policy_forbidding_one_tool_to_one_user_hides_and_refuses_it_for_that_user_only() {
    let s = setup().await;
    let url = s.gw.url("/mcp");
    let (alice, bob) = (token_for(&s, "alice"), token_for(&s, "bob"));
    assert_eq!(tools(&url, &alice).await, ["echo", "write_note"]);
    assert_eq!(
        tools(&url, &bob).await,
        ["echo", "write_note", "delete_all"]
    );
    let before = s.up.seen().len();
    let r = rpc(&url, Some(&alice), &call(7, "delete_all")).await;
    assert_eq!(r.status(), 403);
    assert!(
        r.headers().get("www-authenticate").is_none(),
        "not a scope problem"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 7);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policy")
    );
    assert_eq!(s.up.seen().len(), before, "the upstream saw nothing");
    assert_eq!(
        rpc(&url, Some(&bob), &call(8, "delete_all")).await.status(),
        200
    );
}

#[tokio::test]
async fn policy_on_tool_arguments_is_enforced() {
    let s = setup().await;
    let url = s.gw.url("/mcp");
    let bob = token_for(&s, "bob");
    let ok = rpc(
        &url,
        Some(&bob),
        &call_with(1, "echo", json!({"text": "hello"})),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let before = s.up.seen().len();
    let denied = rpc(
        &url,
        Some(&bob),
        &call_with(2, "echo", json!({"text": "secret plans"})),
    )
    .await;
    assert_eq!(denied.status(), 403);
    assert_eq!(s.up.seen().len(), before);
}

#[tokio::test]
async fn broken_policy_edit_keeps_the_previous_set_and_a_good_edit_applies() {
    let s = setup().await;
    let url = s.gw.url("/mcp");
    let alice = token_for(&s, "alice");
    // A broken edit (unknown attribute): refused, the old set stays.
    std::fs::write(
        &s.policy,
        format!("{POLICY}\nforbid(principal, action, resource) when {{ principal.grups.contains(\"x\") }};\n"),
    )
    .unwrap();
    // Let the watcher see it (it polls every second), then check the old
    // set still decides: alice is still refused, echo still allowed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        rpc(&url, Some(&alice), &call(1, "delete_all"))
            .await
            .status(),
        403
    );
    assert_eq!(
        rpc(&url, Some(&alice), &call(2, "echo")).await.status(),
        200
    );
    // A good edit: alice may now delete. Wait until the watcher loads it.
    std::fs::write(
        &s.policy,
        "@id(\"everyone\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    let mut status = 0;
    for _ in 0..100 {
        status = rpc(&url, Some(&alice), &call(3, "delete_all"))
            .await
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the new set applies");
}
