//! stdio routes: one child per principal and session, crash handling,
//! idle reaping, era negotiation.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The example server, built next to this test binary.
fn echo_server() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join("mcpgate-echo-server");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p mcpgate-echo-server` first (scripts/test does)",
        p.display()
    );
    p
}

async fn setup(command: &[String], extra: &str) -> (Issuer, Gw) {
    let iss = Issuer::start().await;
    let cmd = serde_json::to_string(command).unwrap();
    let gw = Gw::start(&format!(
        r#"
[[trusted_issuers]]
issuer = "{}"

[[routes]]
path = "/mcp"
upstream_command = {cmd}
scopes = ["mcp"]
{extra}
[routes.tool_scopes]
write_note = ["notes:write"]
"#,
        iss.url
    ))
    .await;
    (iss, gw)
}

fn initialize(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
}

async fn session_rpc(url: &str, token: &str, sid: Option<&str>, body: &Value) -> reqwest::Response {
    rpc_in_session(url, Some(token), sid, body).await
}

async fn start_session(url: &str, token: &str) -> String {
    let r = session_rpc(url, token, None, &initialize(1)).await;
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"]["serverInfo"]["name"], "mcpgate-echo-server");
    let r = session_rpc(
        url,
        token,
        Some(&sid),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    sid
}

fn text_of(v: &Value) -> String {
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn stdio_session_lists_filtered_tools_and_calls_as_the_principal() {
    let (iss, gw) = setup(&[echo_server().display().to_string()], "").await;
    let url = gw.url("/mcp");
    let token = iss.token(&url, "mcp");
    let sid = start_session(&url, &token).await;
    let tools: Value = session_rpc(&url, &token, Some(&sid), &list(2))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");
    assert!(!names.contains(&"write_note"), "{names:?}");
    let who: Value = session_rpc(&url, &token, Some(&sid), &call(3, "whoami"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(text_of(&who), "alice");
    let r = session_rpc(&url, &token, Some(&sid), &call(4, "write_note")).await;
    assert_eq!(r.status(), 403);
    // A request without a session is refused (400), an unknown one 404.
    assert_eq!(
        session_rpc(&url, &token, None, &list(5)).await.status(),
        400
    );
    assert_eq!(
        session_rpc(&url, &token, Some("nope"), &list(6))
            .await
            .status(),
        404
    );
    // DELETE ends the session.
    let r = client()
        .delete(&url)
        .bearer_auth(&token)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        session_rpc(&url, &token, Some(&sid), &list(7))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn stdio_child_is_never_shared_between_principals() {
    let (iss, gw) = setup(&[echo_server().display().to_string()], "").await;
    let url = gw.url("/mcp");
    let alice = iss.token(&url, "mcp");
    let bob = iss.token_with(|c| {
        c["aud"] = json!(url);
        c["scope"] = json!("mcp");
        c["sub"] = json!("bob");
    });
    let alice_sid = start_session(&url, &alice).await;
    // Bob presenting Alice's session id gets 404, never her child.
    assert_eq!(
        session_rpc(&url, &bob, Some(&alice_sid), &call(2, "whoami"))
            .await
            .status(),
        404
    );
    let bob_sid = start_session(&url, &bob).await;
    assert_ne!(alice_sid, bob_sid);
    let who: Value = session_rpc(&url, &bob, Some(&bob_sid), &call(3, "whoami"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(text_of(&who), "bob");
    let who: Value = session_rpc(&url, &alice, Some(&alice_sid), &call(4, "whoami"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(text_of(&who), "alice");
}

#[tokio::test]
async fn stdio_crash_fails_in_flight_request_at_once_and_next_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let script = format!("echo started >> '{}'; read line; exit 3", starts.display());
    let (iss, gw) = setup(&["sh".into(), "-c".into(), script], "").await;
    let url = gw.url("/mcp");
    let token = iss.token(&url, "mcp");
    for n in 1..=2 {
        // The default upstream timeout is minutes: an answer within the
        // bound below means the crash, not a timeout, ended the request.
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            session_rpc(&url, &token, None, &initialize(10 + n)),
        )
        .await
        .expect("a crashed child must not leave the request hanging");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["id"], 10 + n);
        assert_eq!(body["error"]["code"], -31002, "{body}");
        let lines = std::fs::read_to_string(&starts).unwrap().lines().count();
        assert_eq!(lines as u64, n, "a fresh child per attempt");
    }
}

/// A stdio server starts from an empty environment plus what programs
/// need (`PATH`, …) and its route's `upstream_env`: none of the gateway's
/// own variables (its secrets live there) reach it.
#[tokio::test]
async fn stdio_child_gets_only_path_and_the_like_and_its_upstream_env() {
    // cargo sets this in the environment of the test process, which is the
    // gateway's here: a stand-in for a secret of the gateway's.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("env");
    let script = format!(
        "env > '{}'; exec '{}'",
        dump.display(),
        echo_server().display()
    );
    let (iss, gw) = setup(
        &["sh".into(), "-c".into(), script],
        r#"upstream_env = { MARKER = "from-config" }"#,
    )
    .await;
    let url = gw.url("/mcp");
    start_session(&url, &iss.token(&url, "mcp")).await;
    let env = std::fs::read_to_string(&dump).unwrap();
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    assert!(env.lines().any(|l| l == "MARKER=from-config"), "{env}");
    assert!(names.contains(&"PATH"), "{env}");
    assert!(names.contains(&"MCPGATE_SUBJECT"), "{env}");
    assert!(!names.contains(&"CARGO_MANIFEST_DIR"), "{env}");
    for n in &names {
        assert!(
            n.starts_with("LC_")
                || n.starts_with("MCPGATE_")
                || [
                    "PATH",
                    "HOME",
                    "USER",
                    "LOGNAME",
                    "SHELL",
                    "LANG",
                    "LANGUAGE",
                    "TZ",
                    "TMPDIR",
                    "TERM",
                    "SSL_CERT_FILE",
                    "SSL_CERT_DIR",
                    "NODE_EXTRA_CA_CERTS",
                    "HTTP_PROXY",
                    "HTTPS_PROXY",
                    "NO_PROXY",
                    "ALL_PROXY",
                    "http_proxy",
                    "https_proxy",
                    "no_proxy",
                    "all_proxy",
                    "MARKER",
                    // set by sh itself
                    "PWD",
                    "SHLVL",
                    "_",
                    "OLDPWD",
                ]
                .contains(n),
            "{n} leaked into the child: {env}"
        );
    }
}

/// A stdio server that stops reading its input: a request too large for
/// the pipe's buffer cannot be written, and the client gets a 504 with a
/// JSON-RPC error once the upstream timeout passes, not a hang.
#[tokio::test]
async fn stdio_child_not_reading_its_input_gets_the_client_a_timeout_not_a_hang() {
    let iss = Issuer::start().await;
    let gw = Gw::start(&format!(
        r#"
[limits]
upstream_timeout_secs = 1

[[trusted_issuers]]
issuer = "{}"

[[routes]]
path = "/mcp"
upstream_command = ["sh", "-c", "exec sleep 600"]
scopes = ["mcp"]
"#,
        iss.url
    ))
    .await;
    let url = gw.url("/mcp");
    let mut big = initialize(5);
    big["params"]["clientInfo"]["padding"] = json!("x".repeat(512 * 1024));
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        session_rpc(&url, &iss.token(&url, "mcp"), None, &big),
    )
    .await
    .expect("the gateway answers once its upstream timeout passes");
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 5, "{body}");
    assert!(body["error"]["code"].is_i64(), "{body}");
}

/// A modern-era version the stdio bridge does not know (a later one, a
/// draft) gets the specification's UnsupportedProtocolVersion error (400,
/// `-32022`, the supported versions in `data`), not an answer in
/// 2026-07-28 it did not ask for.
#[tokio::test]
async fn stdio_bridge_refuses_an_unknown_modern_version_with_the_supported_ones() {
    let (iss, gw) = setup(&[echo_server().display().to_string()], "").await;
    let url = gw.url("/mcp");
    let token = iss.token(&url, "mcp");
    for version in ["2026-12-01", "DRAFT-2027-v1"] {
        let r = modern_in(version, &url, &token, 4, "server/discover", None, json!({})).await;
        assert_eq!(r.status(), 400, "{version}");
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["id"], 4, "{b}");
        assert_eq!(b["error"]["code"], -32022, "{b}");
        assert_eq!(b["error"]["data"]["requested"], version, "{b}");
        let supported = b["error"]["data"]["supported"].as_array().unwrap();
        assert!(supported.contains(&json!("2026-07-28")), "{b}");
        assert!(supported.contains(&json!("2025-11-25")), "{b}");
    }
    let r = modern(&url, &token, 5, "server/discover", None, json!({})).await;
    assert_eq!(r.status(), 200);
}

/// A request whose client went away before the child answered (a
/// disconnect, say after `notifications/cancelled`, to which a server
/// sends no reply) leaves nothing behind: its child, idle, is reaped.
#[tokio::test]
async fn stdio_abandoned_request_does_not_keep_its_child_from_being_reaped() {
    // Answers `initialize`, then reads everything and answers nothing.
    let script = r#"read line; printf '%s\n' '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"mute","version":"1"}}}'; while read line; do :; done"#;
    let (iss, gw) = setup(
        &["sh".into(), "-c".into(), script.into()],
        "stdio_idle_timeout_secs = 1",
    )
    .await;
    let url = gw.url("/mcp");
    let token = iss.token(&url, "mcp");
    let r = session_rpc(&url, &token, None, &initialize(1)).await;
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "hi"}}});
    // The client gives up on the call and closes its connection.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(500),
        session_rpc(&url, &token, Some(&sid), &call),
    )
    .await;
    assert!(gave_up.is_err(), "the mute child cannot have answered");
    assert!(
        eventually(|| children(&gw) == 0).await,
        "the abandoned request kept its idle child alive"
    );
}

/// The stdio children of the route `/mcp`.
fn children(gw: &Gw) -> usize {
    let route = gw.gateway.routes.get("/mcp").unwrap();
    let mcpgate_gateway::route::UpstreamRuntime::Stdio(up) = &route.upstream else {
        panic!("stdio route");
    };
    up.children()
}

/// Whether `cond` holds within 10 s (checked every 100 ms): for what the
/// gateway does in the background (reaping, killing).
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Whether process `pid` is gone (or a zombie, dead but not yet reaped by
/// its new parent).
fn process_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Stopping a stdio server stops what it started too: launchers (`npx`,
/// `uvx`) run the real server as a child of their own, which used to
/// survive every reap, `DELETE` and eviction, one process per session.
#[tokio::test]
async fn stdio_session_end_stops_the_servers_own_children_too() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild");
    let script = format!(
        "sleep 600 & echo $! > '{}'; exec '{}'",
        pidfile.display(),
        echo_server().display()
    );
    let (iss, gw) = setup(&["sh".into(), "-c".into(), script], "").await;
    let url = gw.url("/mcp");
    let token = iss.token(&url, "mcp");
    let sid = start_session(&url, &token).await;
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!process_gone(pid), "the server's own child runs");
    let r = client()
        .delete(&url)
        .bearer_auth(&token)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(
        eventually(|| process_gone(pid)).await,
        "process {pid}, started by the stdio server, outlived it"
    );
}

#[tokio::test]
async fn stdio_idle_child_is_reaped_and_session_ends() {
    let (iss, gw) = setup(
        &[echo_server().display().to_string()],
        "stdio_idle_timeout_secs = 1",
    )
    .await;
    let url = gw.url("/mcp");
    let token = iss.token(&url, "mcp");
    let sid = start_session(&url, &token).await;
    assert_eq!(children(&gw), 1);
    assert!(
        eventually(|| children(&gw) == 0).await,
        "idle child was not reaped"
    );
    assert_eq!(
        session_rpc(&url, &token, Some(&sid), &list(2))
            .await
            .status(),
        404
    );
}

async fn modern(
    url: &str,
    token: &str,
    id: u64,
    method: &str,
    name: Option<&str>,
    params: Value,
) -> reqwest::Response {
    modern_in("2026-07-28", url, token, id, method, name, params).await
}

/// A request of the modern era in protocol `version`.
async fn modern_in(
    version: &str,
    url: &str,
    token: &str,
    id: u64,
    method: &str,
    name: Option<&str>,
    params: Value,
) -> reqwest::Response {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "modern-test", "version": "1"},
    });
    let mut r = client()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version)
        .header("mcp-method", method)
        .body(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string());
    if let Some(n) = name {
        r = r.header("mcp-name", n);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn stdio_bridges_2026_07_28_clients_to_a_legacy_server_per_principal() {
    let (iss, gw) = setup(&[echo_server().display().to_string()], "").await;
    let url = gw.url("/mcp");
    let alice = iss.token(&url, "mcp");
    // server/discover is answered by the gateway from the InitializeResult.
    let r = modern(&url, &alice, 1, "server/discover", None, json!({})).await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["id"], 1);
    assert_eq!(d["result"]["resultType"], "complete");
    assert_eq!(d["result"]["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(
        d["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcpgate-echo-server"
    );
    assert!(d["result"]["capabilities"]["tools"].is_object());
    // Lists carry the modern result fields and are filtered per caller.
    let l: Value = modern(&url, &alice, 2, "tools/list", None, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(l["id"], 2);
    assert_eq!(l["result"]["resultType"], "complete");
    assert_eq!(l["result"]["cacheScope"], "private");
    let names: Vec<&str> = l["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"echo") && !names.contains(&"write_note"),
        "{names:?}"
    );
    // Calls run as the principal, in the principal's own child.
    let w: Value = modern(
        &url,
        &alice,
        3,
        "tools/call",
        Some("whoami"),
        json!({"name": "whoami", "arguments": {}}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(w["id"], 3);
    assert_eq!(text_of(&w), "alice");
    let bob = iss.token_with(|c| {
        c["aud"] = json!(url);
        c["scope"] = json!("mcp");
        c["sub"] = json!("bob");
    });
    let w: Value = modern(
        &url,
        &bob,
        3,
        "tools/call",
        Some("whoami"),
        json!({"name": "whoami", "arguments": {}}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(text_of(&w), "bob");
    let route = gw.gateway.routes.get("/mcp").unwrap();
    let mcpgate_gateway::route::UpstreamRuntime::Stdio(up) = &route.upstream else {
        panic!("stdio route");
    };
    assert_eq!(up.children(), 2, "one child per principal");
    // Streams the bridge cannot offer answer with the modern "not found".
    let r = modern(
        &url,
        &alice,
        4,
        "subscriptions/listen",
        None,
        json!({"notifications": {}}),
    )
    .await;
    assert_eq!(r.status(), 404);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], -32601);
    assert_eq!(b["id"], 4);
}
