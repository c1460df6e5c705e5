//! The `mcpgate` binary as an operator runs it: real processes, real
//! SQLite, real HTTP on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use mcpgate_test_support::{TestKey, claims, jwks};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");

fn echo_server() -> PathBuf {
    Path::new(BIN).parent().unwrap().join("mcpgate-echo-server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mcpgate(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn config_check_names_unknown_key_and_line_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "bad.toml",
        "listen = \"127.0.0.1:1\"\npublic_url = \"http://127.0.0.1:1\"\n\n[[routes]]\npath = \"/mcp\"\nupstream_url = \"http://127.0.0.1:2/mcp\"\nscopes_typo = [\"mcp\"]\n",
    );
    let out = mcpgate(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scopes_typo"), "{err}");
    assert!(err.contains("line 7"), "{err}");

    let out = mcpgate(&[
        "config",
        "check",
        "--json",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("scopes_typo"));
}

#[test]
fn config_check_refuses_http_public_url_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        "listen = \"0.0.0.0:8080\"\npublic_url = \"http://mcp.example.com\"\n",
    );
    let out = mcpgate(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("public_url") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn config_check_accepts_the_quickstart() {
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.toml");
    let out = mcpgate(&[
        "config",
        "check",
        "--json",
        "--config",
        quickstart.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["routes"], json!(["/mcp"]));
}

/// A running `mcpgate serve` whose output is collected.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(cfg: &Path) -> Self {
        let text = std::fs::read_to_string(cfg).unwrap();
        let base = text
            .lines()
            .find_map(|l| l.strip_prefix("public_url = \""))
            .unwrap()
            .trim_end_matches('"')
            .to_owned();
        let child = Command::new(BIN)
            .args([
                "serve",
                "--log-format",
                "json",
                "--config",
                cfg.to_str().unwrap(),
            ])
            .env("RUST_LOG", "debug")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    echo_server().parent().unwrap().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let s = Self { child, base };
        for _ in 0..200 {
            if reqwest::blocking_get(&format!("{}/healthz", s.base)) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mcpgate serve did not come up");
    }

    /// SIGTERM, then wait; returns (exit code, stdout + stderr).
    fn stop(mut self) -> (Option<i32>, String) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        let mut all = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut all)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut all)
            .unwrap();
        (status.code(), all)
    }
}

mod reqwest {
    //! Tiny blocking helpers over the async client.
    pub fn blocking_get(url: &str) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            ::reqwest::get(url)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
    }
}

fn post(url: &str, token: &str, sid: Option<&str>, body: &Value) -> (u16, Option<String>, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut r = ::reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(s) = sid {
            r = r.header("mcp-session-id", s);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let sid = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, sid, resp.text().await.unwrap())
    })
}

/// Serves a JWKS and RFC 8414 metadata on a thread of its own.
fn start_issuer(key: &TestKey) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let doc = jwks(&[key]).to_string();
    let meta = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")}).to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            l.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let app = axum::Router::new()
                .route("/jwks", axum::routing::get(move || async move { doc }))
                .route(
                    "/.well-known/oauth-authorization-server",
                    axum::routing::get(move || async move { meta }),
                );
            axum::serve(l, app).await.unwrap();
        });
    });
    url
}

#[test]
fn full_run_with_admin_commands_against_running_gateway_never_logs_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::es256("k1");
    let iss = start_issuer(&key);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let cfg = write(
        dir.path(),
        "gw.toml",
        &format!(
            r#"listen = "127.0.0.1:{port}"
public_url = "{base}"

[storage]
url = "sqlite://gw.db"

[[trusted_issuers]]
issuer = "{iss}"

[[routes]]
path = "/mcp"
upstream_command = ["mcpgate-echo-server"]
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]
"#
        ),
    );
    let cfg_s = cfg.to_str().unwrap();
    let serve = Serve::start(&cfg);
    let url = format!("{base}/mcp");

    // An API key created while serve runs works at once.
    let out = mcpgate(&[
        "apikey",
        "create",
        "--config",
        cfg_s,
        "--name",
        "agent",
        "--route",
        "/mcp",
        "--scopes",
        "mcp",
        "--expires-in",
        "1d",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let api_key = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    assert!(api_key.starts_with("mcpg_"));

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let (status, sid, _) = post(&url, &api_key, None, &init);
    assert_eq!(status, 200);
    let sid = sid.unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hello"}}});
    let (status, _, body) = post(&url, &api_key, Some(&sid), &call);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello"));

    // A JWT from the trusted issuer works; refused ones are logged by reason.
    let jwt = key.sign(&claims(&iss, &url, "mcp"));
    let (status, sid2, _) = post(&url, &jwt, None, &init);
    assert_eq!(status, 200);
    let who = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let (_, _, body) = post(&url, &jwt, sid2.as_deref(), &who);
    assert!(body.contains("alice"), "{body}");
    let wrong_aud = key.sign(&claims(&iss, &format!("{url}/"), "mcp"));
    assert_eq!(post(&url, &wrong_aud, None, &init).0, 401);

    // The listing shows the key but never its secret.
    let out = mcpgate(&["apikey", "list", "--config", cfg_s, "--json"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains(&key_id) && !listed.contains(&api_key),
        "{listed}"
    );

    // Revocation by the CLI takes effect on the running gateway's next request.
    let out = mcpgate(&["apikey", "revoke", &key_id, "--config", cfg_s, "--json"]);
    assert!(out.status.success());
    assert_eq!(post(&url, &api_key, Some(&sid), &call).0, 401);

    let (code, log) = serve.stop();
    assert_eq!(code, Some(0), "graceful shutdown exits 0\n{log}");
    assert!(
        log.contains("credential refused"),
        "refusals are logged\n{log}"
    );
    assert!(
        log.contains("audience does not include this resource"),
        "{log}"
    );
    for secret in [&api_key, &jwt, &wrong_aud] {
        assert!(
            !log.contains(secret.as_str()),
            "a credential appeared in the log"
        );
        // Not even a recognisable part of it.
        let tail = &secret[secret.len() - 20..];
        assert!(
            !log.contains(tail),
            "a credential fragment appeared in the log"
        );
    }
    assert!(
        !log.contains("mcpg_"),
        "an API key prefix appeared in the log"
    );
}
