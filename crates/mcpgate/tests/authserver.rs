//! The built-in authorization server through the binary: clients from the
//! CLI, the client_credentials grant, tokens the gateway's routes accept
//! without a network call, key rotation while serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");

fn echo_dir() -> PathBuf {
    Path::new(BIN).parent().unwrap().to_owned()
}

fn cli(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn client_credentials_token_opens_the_route_and_survives_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"listen = "127.0.0.1:{port}"
public_url = "{base}"

[storage]
url = "sqlite://gw.db"

[authorization_server]
enabled = true

[[routes]]
path = "/mcp"
upstream_command = ["mcpgate-echo-server"]
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]

[[routes]]
path = "/other"
upstream_command = ["mcpgate-echo-server"]
scopes = ["mcp"]
"#
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();

    let (ok, created, err) = cli(&[
        "client",
        "add",
        "--config",
        c,
        "--name",
        "agent",
        "--confidential",
        "--grant",
        "client_credentials",
        "--json",
    ]);
    assert!(ok, "{err}");
    let id = created["client_id"].as_str().unwrap().to_owned();
    let secret = created["client_secret"].as_str().unwrap().to_owned();

    let child = Command::new(BIN)
        .args(["serve", "--config", c, "--log-format", "json"])
        .env(
            "PATH",
            format!(
                "{}:{}",
                echo_dir().display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Serve(child);
    // The master key file was created with mode 0600 on first start.
    let rt = rt();
    rt.block_on(async {
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(format!("{base}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let m = std::fs::metadata(dir.path().join("mcpgate-master.key")).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
        }

        // RFC 8414 §3.3 / RFC 9728: one issuer spelling everywhere.
        for p in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
            let m: Value = http.get(format!("{base}{p}")).send().await.unwrap().json().await.unwrap();
            assert_eq!(m["issuer"], base.as_str(), "{p}");
            assert_eq!(m["token_endpoint"], format!("{base}/oauth/token"));
        }
        let prm: Value = http
            .get(format!("{base}/.well-known/oauth-protected-resource/mcp"))
            .send().await.unwrap().json().await.unwrap();
        assert_eq!(prm["authorization_servers"], json!([base]));

        let token = |scope: Option<&'static str>, resource: String| {
            let (http, base, id, secret) = (http.clone(), base.clone(), id.clone(), secret.clone());
            async move {
                let mut form = vec![("grant_type", "client_credentials".to_owned()), ("resource", resource)];
                if let Some(s) = scope {
                    form.push(("scope", s.to_owned()));
                }
                http.post(format!("{base}/oauth/token"))
                    .basic_auth(id, Some(secret))
                    .form(&form)
                    .send()
                    .await
                    .unwrap()
            }
        };
        let r = token(Some("mcp"), format!("{base}/mcp")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let t: Value = r.json().await.unwrap();
        assert_eq!(t["token_type"], "Bearer");
        assert_eq!(t["scope"], "mcp");
        assert_eq!(t["expires_in"], 600);
        let at = t["access_token"].as_str().unwrap().to_owned();
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(at.split('.').nth(1).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(claims["aud"], format!("{base}/mcp"));
        assert_eq!(claims["iss"], base.as_str());
        assert_eq!(claims["client_id"], id.as_str());

        let mcp = |token: String, path: &'static str, body: Value| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                http.post(format!("{base}{path}"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .header("mcp-protocol-version", "2025-11-25")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap()
            }
        };
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        assert_eq!(mcp(at.clone(), "/mcp", init.clone()).await.status(), 200);
        // RFC 8707: the token is for /mcp, not /other.
        assert_eq!(mcp(at.clone(), "/other", init.clone()).await.status(), 401);

        // Wrong secret: 401 invalid_client with a Basic challenge.
        let r = http
            .post(format!("{base}/oauth/token"))
            .basic_auth(&id, Some("wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
        // Unknown resource: invalid_target; unsupported grant.
        let r = token(None, format!("{base}/mcp/")).await;
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_target");
        let r = http
            .post(format!("{base}/oauth/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "password")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");

        // Rotation while serving: the old token still opens the route, and
        // tokens signed with the new key verify once the gateway reloads
        // (here: the kid it signs with is already published as `next`).
        let state_of = |keys: &Value, kid: &str| -> String {
            keys.as_array().unwrap().iter().find(|k| k["kid"] == kid).map(|k| k["state"].as_str().unwrap().to_owned()).unwrap_or_default()
        };
        let (ok, keys_before, _) = cli(&["keys", "list", "--config", c, "--json"]);
        assert!(ok);
        assert_eq!(keys_before.as_array().unwrap().len(), 2);
        let find = |state: &str| {
            keys_before.as_array().unwrap().iter().find(|k| k["state"] == state).unwrap()["kid"].as_str().unwrap().to_owned()
        };
        let (old_current, old_next) = (find("current"), find("next"));
        let (ok, rotated, err) = cli(&["keys", "rotate", "--config", c, "--json"]);
        assert!(ok, "{err}");
        assert_eq!(rotated["rotated"], true);
        assert_eq!(rotated["current_kid"], old_next.as_str());
        let (_, keys_after, _) = cli(&["keys", "list", "--config", c, "--json"]);
        assert_eq!(keys_after.as_array().unwrap().len(), 3);
        assert_eq!(state_of(&keys_after, &old_current), "retired");
        assert_eq!(state_of(&keys_after, &old_next), "current");
        assert!(!keys_after.to_string().contains("private"));
        assert_eq!(mcp(at.clone(), "/mcp", init.clone()).await.status(), 200);
        let jwks: Value = http.get(format!("{base}/oauth/jwks")).send().await.unwrap().json().await.unwrap();
        let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert!(kids.contains(&old_current.as_str()), "old key still published");
        assert!(kids.contains(&old_next.as_str()), "new current published");

        // Secret rotation: old secret works during the grace period, new one too.
        let (ok, rot, _) = cli(&["client", "rotate-secret", &id, "--config", c, "--json"]);
        assert!(ok);
        let new_secret = rot["client_secret"].as_str().unwrap().to_owned();
        for s in [&secret, &new_secret] {
            let r = http
                .post(format!("{base}/oauth/token"))
                .basic_auth(&id, Some(s))
                .form(&[("grant_type", "client_credentials"), ("resource", &format!("{base}/mcp"))])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    });
}
