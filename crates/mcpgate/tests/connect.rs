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
use std::sync::{Arc, Mutex};

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

/// A 2024-11-05 HTTP+SSE server on raw sockets: `GET /mcp` opens the event
/// stream and names `/message?s=1` as its endpoint; each `POST /message`
/// gets 202 and its reply, `{"echo": METHOD}`, on the stream. `POST /mcp`
/// (the Streamable HTTP attempt) gets `post_status`. Returns the port and
/// the request lines seen.
fn legacy_server(post_status: &'static str) -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead as _, BufReader, Read as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stream_slot: Arc<Mutex<Option<std::net::TcpStream>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (log, slot) = (log.clone(), stream_slot.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let request = line.trim_end().to_owned();
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h == "\r\n" {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    log.lock().unwrap().push(request.clone());
                    if request.starts_with("GET /mcp ") {
                        // Held while the endpoint is announced: a POST to it
                        // (another thread) must find the stream in the slot.
                        let mut slot = slot.lock().unwrap();
                        conn.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                              cache-control: no-cache\r\n\r\n\
                              event: endpoint\ndata: /message?s=1\n\n",
                        )
                        .unwrap();
                        *slot = Some(conn);
                        return;
                    } else if request.starts_with("POST /message?s=1 ") {
                        let msg: Value = serde_json::from_slice(&body).unwrap();
                        conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                            .unwrap();
                        if let Some(id) = msg.get("id") {
                            let reply = json!({"jsonrpc": "2.0", "id": id, "result": {"echo": msg["method"]}});
                            let event = format!("event: message\ndata: {reply}\n\n");
                            let mut stream = slot.lock().unwrap();
                            stream
                                .as_mut()
                                .unwrap()
                                .write_all(event.as_bytes())
                                .unwrap();
                        }
                    } else {
                        let body = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"refused by the test server"}}"#;
                        let head = format!(
                            "HTTP/1.1 {post_status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        conn.write_all(head.as_bytes()).unwrap();
                        conn.write_all(body.as_bytes()).unwrap();
                    }
                }
            });
        }
    });
    (port, seen)
}

/// `mcpgate connect ARGS` with `lines` against a fresh [`legacy_server`]
/// answering the Streamable HTTP POST with `post_status`; the run and the
/// request lines the server saw.
fn connect_to_legacy(
    post_status: &'static str,
    args: &[&str],
    lines: &[String],
) -> (Run, Vec<String>) {
    let (port, seen) = legacy_server(post_status);
    let dir = tempfile::tempdir().unwrap();
    let run = connect(
        &format!("http://127.0.0.1:{port}/mcp"),
        &dir.path().join("cache"),
        args,
        &[],
        lines,
    );
    let seen = seen.lock().unwrap().clone();
    (run, seen)
}

#[test]
fn mcp_transports_backwards_compatibility_falls_back_to_http_sse_after_404() {
    let (run, seen) = connect_to_legacy(
        "404 Not Found",
        &[],
        &session(&[call(2, "echo", json!({}))]),
    );
    assert!(run.ok, "{}", run.stderr);
    // The initialize that got 404 was sent again on the HTTP+SSE transport.
    assert_eq!(run.reply(1)["result"]["echo"], "initialize");
    assert_eq!(run.reply(2)["result"]["echo"], "tools/call");
    assert!(
        run.stderr
            .contains("trying the 2024-11-05 HTTP+SSE transport"),
        "{}",
        run.stderr
    );
    assert_eq!(seen[0], "POST /mcp HTTP/1.1", "{seen:?}");
    assert_eq!(seen[1], "GET /mcp HTTP/1.1", "{seen:?}");
    assert_eq!(
        seen.iter().filter(|r| r.starts_with("POST /mcp ")).count(),
        1,
        "{seen:?}"
    );
}

#[test]
fn mcp_transports_a_400_to_initialize_is_relayed_not_a_fallback() {
    let (run, seen) = connect_to_legacy("400 Bad Request", &[], &[INIT.to_owned()]);
    assert_eq!(
        run.reply(1)["error"]["message"],
        "refused by the test server"
    );
    assert!(!run.stderr.contains("HTTP+SSE"), "{}", run.stderr);
    assert!(seen.iter().all(|r| !r.starts_with("GET ")), "{seen:?}");
}

#[test]
fn mcp_transports_no_fallback_when_streamable_http_is_chosen() {
    let (run, seen) = connect_to_legacy(
        "404 Not Found",
        &["--transport", "streamable-http"],
        &[INIT.to_owned()],
    );
    assert!(run.reply(1).get("error").is_some(), "{:?}", run.replies);
    assert!(seen.iter().all(|r| !r.starts_with("GET ")), "{seen:?}");
}
