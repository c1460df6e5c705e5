//! `mcpgate connect` against a real `mcpgate serve` with its built-in
//! authorization server, over loopback: the bridge discovers the server's
//! authorization from its 401, gets tokens with the client credentials
//! grant (a secret or a `private_key_jwt` assertion), steps up on 403
//! `insufficient_scope`, keeps its tokens in the encrypted cache, and
//! forgets them on `--logout`. The browser flow is driven by Chromium in the
//! interop run (`interop/run.sh`, section 5).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod common;
use common::{BIN, Served};

async fn gateway() -> Served {
    let mut served = Served::configure(
        r#"[authorization_server]
enabled = true

[[routes]]
path = "/mcp"
upstream_command = ["mcpgate-echo-server"]
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]
"#,
    );
    served.start().await;
    served
}

/// A confidential client_credentials client: (id, secret).
fn secret_client(gw: &Served, scope: &str) -> (String, String) {
    let c = gw.cli_ok(&[
        "client",
        "add",
        "--name",
        "agent",
        "--confidential",
        "--grant",
        "client_credentials",
        "--scope",
        scope,
    ]);
    (
        c["client_id"].as_str().unwrap().to_owned(),
        c["client_secret"].as_str().unwrap().to_owned(),
    )
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"connect-test","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn call(id: u64, tool: &str, args: Value) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}})
        .to_string()
}

struct Run {
    ok: bool,
    code: Option<i32>,
    replies: Vec<Value>,
    stderr: String,
}

impl Run {
    /// The reply to request `id`.
    fn reply(&self, id: u64) -> &Value {
        self.replies
            .iter()
            .find(|r| r["id"] == json!(id))
            .unwrap_or_else(|| panic!("no reply to {id}: {:?}\n{}", self.replies, self.stderr))
    }

    fn text(&self, id: u64) -> &str {
        self.reply(id)["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no result for {id}: {}", self.reply(id)))
    }
}

/// Runs `mcpgate connect ARGS URL` with `lines` on stdin (then EOF), the
/// cache in `cache`, `env` added.
fn connect(url: &str, cache: &Path, args: &[&str], env: &[(&str, &str)], lines: &[String]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("connect")
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .arg(url)
        .env_remove("MCPGATE_CLIENT_SECRET")
        .env_remove("MCPGATE_CLIENT_ID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let replies = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect();
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        replies,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn session(calls: &[String]) -> Vec<String> {
    let mut v = vec![INIT.to_owned(), INITIALIZED.to_owned()];
    v.extend_from_slice(calls);
    v
}

#[tokio::test]
async fn client_credentials_secret_reaches_the_tool_and_the_token_is_kept() {
    let gw = gateway().await;
    let (id, secret) = secret_client(&gw, "mcp");
    let url = format!("{}/mcp", gw.base);
    let cache = gw.dir.path().join("connect-cache");
    let args = ["--grant", "client-credentials", "--client-id", id.as_str()];
    let run = connect(
        &url,
        &cache,
        &args,
        &[("MCPGATE_CLIENT_SECRET", secret.as_str())],
        &session(&[call(2, "whoami", json!({}))]),
    );
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        run.reply(1)["result"]["serverInfo"]["name"],
        "mcpgate-echo-server"
    );
    // The principal the gateway saw is the client itself.
    assert_eq!(run.text(2), id);
    // stdout is JSON-RPC only; nothing secret went to stderr.
    assert!(!run.stderr.contains(&secret));

    // The second run uses the kept token: a wrong secret is never needed.
    let run = connect(
        &url,
        &cache,
        &args,
        &[("MCPGATE_CLIENT_SECRET", "wrong-secret")],
        &session(&[call(2, "echo", json!({"text": "again"}))]),
    );
    assert_eq!(run.text(2), "again", "{}", run.stderr);
    // Nothing in the cache directory holds the token in the clear.
    for f in std::fs::read_dir(&cache).unwrap() {
        let bytes = std::fs::read(f.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("eyJ"));
    }

    // --logout forgets it: now the wrong secret is refused, and the request
    // gets a JSON-RPC error with its id instead of hanging.
    let out = Command::new(BIN)
        .args(["connect", "--logout", "--cache-dir"])
        .arg(&cache)
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forgot"));
    let run = connect(
        &url,
        &cache,
        &args,
        &[("MCPGATE_CLIENT_SECRET", "wrong-secret")],
        &[INIT.to_owned()],
    );
    let err = &run.reply(1)["error"];
    assert_eq!(err["code"], -32603, "{}", run.stderr);
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("token request") && msg.contains("invalid_client"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-secret"));
}

#[tokio::test]
async fn rfc7523_private_key_jwt_client_credentials() {
    use mcpgate_test_support::{TestKey, jwks};
    let gw = gateway().await;
    let key = TestKey::es256("agent-key-1");
    let jwks_file = gw.dir.path().join("agent.jwks");
    std::fs::write(&jwks_file, jwks(&[&key]).to_string()).unwrap();
    let c = gw.cli_ok(&[
        "client",
        "add",
        "--name",
        "jwt agent",
        "--confidential",
        "--grant",
        "client_credentials",
        "--auth-method",
        "private_key_jwt",
        "--jwks",
        jwks_file.to_str().unwrap(),
    ]);
    let id = c["client_id"].as_str().unwrap();
    let pem = gw.dir.path().join("agent.pem");
    std::fs::write(&pem, key.pkcs8_pem()).unwrap();
    let run = connect(
        &format!("{}/mcp", gw.base),
        &gw.dir.path().join("cache"),
        &[
            "--grant",
            "client-credentials",
            "--client-id",
            id,
            "--private-key",
            pem.to_str().unwrap(),
        ],
        &[],
        &session(&[call(2, "whoami", json!({}))]),
    );
    assert_eq!(run.text(2), id, "{}", run.stderr);
}

#[tokio::test]
async fn mcp_step_up_on_insufficient_scope_asks_for_the_union() {
    let gw = gateway().await;
    let (id, secret) = secret_client(&gw, "mcp notes:write");
    let run = connect(
        &format!("{}/mcp", gw.base),
        &gw.dir.path().join("cache"),
        // Starts with just the route's scope; write_note needs notes:write.
        &[
            "--grant",
            "client-credentials",
            "--client-id",
            id.as_str(),
            "--scope",
            "mcp",
        ],
        &[("MCPGATE_CLIENT_SECRET", secret.as_str())],
        &session(&[call(2, "write_note", json!({"text": "n"}))]),
    );
    assert_eq!(run.text(2), "noted", "{}", run.stderr);
}

#[tokio::test]
async fn mcp_step_up_gives_up_when_the_scope_is_never_granted() {
    let gw = gateway().await;
    // This client may never hold notes:write.
    let (id, secret) = secret_client(&gw, "mcp");
    let run = connect(
        &format!("{}/mcp", gw.base),
        &gw.dir.path().join("cache"),
        &["--grant", "client-credentials", "--client-id", id.as_str()],
        &[("MCPGATE_CLIENT_SECRET", secret.as_str())],
        &session(&[
            call(2, "write_note", json!({"text": "n"})),
            call(3, "echo", json!({"text": "still here"})),
        ]),
    );
    // The refusal reaches the client as the server's answer (or an error),
    // and the bridge goes on serving.
    assert!(run.reply(2).get("error").is_some(), "{}", run.reply(2));
    assert_eq!(run.text(3), "still here");
}

#[tokio::test]
async fn unreachable_server_gets_a_jsonrpc_error_with_the_id() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let run = connect(
        &format!("http://127.0.0.1:{port}/mcp"),
        &dir.path().join("cache"),
        &[],
        &[],
        &[INIT.to_owned()],
    );
    let err = &run.reply(1)["error"];
    assert!(
        err["message"].as_str().unwrap().contains("cannot reach"),
        "{err}"
    );
    assert!(run.stderr.contains("cannot reach"));
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = connect(
        "http://mcp.example.com/mcp",
        &dir.path().join("cache"),
        &[],
        &[],
        &[],
    );
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("not https"), "{}", run.stderr);
}
