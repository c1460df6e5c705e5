//! The audit trail through the binary: every request recorded, `mcpgate
//! audit verify` passing on a real log and naming the record after one is
//! modified, deleted or swapped in the database file, `audit export` as
//! JSON Lines, and no acknowledged request lost when the gateway is killed
//! with SIGKILL under load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

mod common;
use common::{BIN, Served, echo_dir};

/// A gateway with the audit trail on (and a live sink), one stdio route
/// and an API key for it.
struct Gw {
    served: Served,
    key: String,
    http: reqwest::Client,
}

impl std::ops::Deref for Gw {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.served
    }
}

impl Gw {
    async fn start() -> Gw {
        let echo = echo_dir().join("mcpgate-echo-server");
        let mut served = Served::configure(&format!(
            r#"[audit]
sink = "audit.jsonl"

[[routes]]
path = "/mcp"
upstream_command = ["{}"]
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]
"#,
            echo.display()
        ));
        let v = served.cli_ok(&[
            "apikey", "create", "--name", "t", "--route", "/mcp", "--scopes", "mcp",
        ]);
        let key = v["key"].as_str().unwrap().to_owned();
        served.start().await;
        Gw {
            served,
            key,
            http: reqwest::Client::new(),
        }
    }

    async fn post(
        &self,
        key: Option<&str>,
        sid: Option<&str>,
        body: &Value,
    ) -> (u16, Option<String>, String) {
        let mut rb = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(body.to_string());
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(s) = sid {
            rb = rb.header("mcp-session-id", s);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let sid = r
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, sid, r.text().await.unwrap_or_default())
    }

    async fn session(&self) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let (s, sid, body) = self.post(Some(&self.key), None, &init).await;
        assert_eq!(s, 200, "{body}");
        let sid = sid.unwrap();
        let (s, _, _) = self
            .post(
                Some(&self.key),
                Some(&sid),
                &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .await;
        assert_eq!(s, 202);
        sid
    }

    fn verify(&self) -> (bool, Value, String) {
        self.cli(&["audit", "verify"])
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("gw.db")
    }
}

fn echo(i: u64, text: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}})
}

async fn sql(db: &Path, statements: &[&'static str]) {
    use sqlx::Connection as _;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for s in statements {
        sqlx::query(*s).execute(&mut c).await.unwrap();
    }
}

#[tokio::test]
async fn audit_verify_passes_on_mixed_traffic_and_names_a_modified_deleted_or_swapped_record() {
    let mut gw = Gw::start().await;
    let sid = gw.session().await;
    // A few hundred mixed requests: calls, a tool needing a scope the key
    // lacks, no credential, a wrong key.
    for i in 0..240u64 {
        let (s, _, body) = match i % 4 {
            0 | 1 => {
                gw.post(
                    Some(&gw.key.clone()),
                    Some(&sid),
                    &echo(i, &format!("m-{i}")),
                )
                .await
            }
            2 => {
                let b = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "write_note", "arguments": {"text": "x"}}});
                gw.post(Some(&gw.key.clone()), Some(&sid), &b).await
            }
            _ => {
                gw.post(
                    if i % 8 == 3 {
                        None
                    } else {
                        Some("mcpg_0000000000000000_nope")
                    },
                    None,
                    &echo(i, "x"),
                )
                .await
            }
        };
        let want = match i % 4 {
            0 | 1 => 200,
            2 => 403,
            _ => 401,
        };
        assert_eq!(s, want, "{i}: {body}");
    }
    // Stop cleanly so every queued refusal is written too.
    let pid = gw.served.child().unwrap().id();
    Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    gw.served.take_child().unwrap().wait().unwrap();

    let (ok, report, err) = gw.verify();
    assert!(ok, "{report} {err}");
    assert_eq!(report["ok"], true);
    assert!(report["records"].as_u64().unwrap() >= 240, "{report}");

    // The export names what happened.
    let out = Command::new(BIN)
        .args(["audit", "export", "--config"])
        .arg(&gw.cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls = lines
        .iter()
        .filter(|l| {
            l["kind"] == "mcp_request"
                && l["method"] == "tools/call"
                && l["name"] == "echo"
                && l["outcome"] == "ok"
        })
        .count();
    assert_eq!(calls, 120);
    // Each request's record names the client's address (the connection's
    // peer, over loopback here).
    assert!(
        lines
            .iter()
            .filter(|l| l["kind"] == "mcp_request" || l["kind"] == "authn_failure")
            .all(|l| l["peer"] == "127.0.0.1"),
        "a request record without the client's address"
    );
    assert!(lines.iter().any(|l| l["kind"] == "authz_decision"
        && l["outcome"] == "denied"
        && l["name"] == "write_note"));
    assert!(lines.iter().any(|l| l["kind"] == "authn_failure"));
    // The key was created from the command line before `serve` started.
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "apikey_created" && l["route"] == "/mcp")
    );
    assert!(lines.iter().any(|l| l["kind"] == "config_loaded"));
    for l in &lines {
        assert!(
            l.get("time").is_some() && l.get("kind").is_some() && l.get("outcome").is_some(),
            "{l}"
        );
        assert!(
            !l.to_string().contains(&gw.key),
            "a credential in the audit trail"
        );
    }
    // The live sink got the same records as the database, from the
    // gateway's start on (the command-line records before it have no sink).
    let sink: Vec<Value> = std::fs::read_to_string(gw.dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = sink[0]["seq"].as_u64().unwrap();
    let from_start: Vec<&Value> = lines
        .iter()
        .filter(|l| l["seq"].as_u64().unwrap() >= first)
        .collect();
    assert_eq!(sink.iter().collect::<Vec<_>>(), from_start);

    let db = gw.db();
    // One file to copy: fold the write-ahead log into the database first.
    sql(&db, &["PRAGMA wal_checkpoint(TRUNCATE)"]).await;
    let backup = gw.dir.path().join("clean.db");
    std::fs::copy(&db, &backup).unwrap();
    let restore = |gw: &Gw| {
        for ext in ["db-wal", "db-shm"] {
            let _ = std::fs::remove_file(gw.db().with_extension(ext));
        }
        std::fs::copy(&backup, gw.db()).unwrap();
    };

    // Modified.
    sql(
        &db,
        &["UPDATE audit_records SET outcome = outcome || '-edited' WHERE seq = 40 AND chain_id = 'main'"],
    )
    .await;
    let (ok, report, _) = gw.verify();
    assert!(!ok);
    assert_eq!(report["defects"][0]["seq"], 40, "{report}");
    restore(&gw);
    // Deleted.
    sql(
        &db,
        &["DELETE FROM audit_records WHERE seq = 77 AND chain_id = 'main'"],
    )
    .await;
    let (ok, report, _) = gw.verify();
    assert!(!ok);
    assert_eq!(report["defects"][0]["seq"], 77, "{report}");
    restore(&gw);
    // Swapped: two records exchange their positions.
    sql(
        &db,
        &[
            "UPDATE audit_records SET seq = 999999999 WHERE seq = 100 AND chain_id = 'main'",
            "UPDATE audit_records SET seq = 100 WHERE seq = 101 AND chain_id = 'main'",
            "UPDATE audit_records SET seq = 101 WHERE seq = 999999999 AND chain_id = 'main'",
        ],
    )
    .await;
    let (ok, report, _) = gw.verify();
    assert!(!ok);
    assert_eq!(report["defects"][0]["seq"], 100, "{report}");
    restore(&gw);
    let (ok, _, _) = gw.verify();
    assert!(ok, "the restored copy verifies again");
    gw.served.start().await;
}

#[tokio::test]
async fn sigkill_under_load_loses_no_audit_record_of_a_completed_request() {
    let mut gw = Gw::start().await;
    let gw_ref = &gw;
    let done: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let sid = gw_ref.session().await;
        let (http, base, key) = (gw_ref.http.clone(), gw_ref.base.clone(), gw_ref.key.clone());
        let (done, stop) = (done.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let text = format!("w{w}-{i}");
                let r = http
                    .post(format!("{base}/mcp"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2025-11-25")
                    .header("mcp-session-id", &sid)
                    .body(echo(i, &text).to_string())
                    .send()
                    .await;
                let Ok(r) = r else { break };
                let ok = r.status() == 200;
                // Completed only when the whole answer arrived.
                let Ok(body) = r.text().await else { break };
                if ok && body.contains(&text) {
                    done.lock().unwrap().insert(text);
                }
            }
        }));
    }
    // Let the load run, then kill the gateway in the middle of it.
    while done.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.served.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let completed = done.lock().unwrap().clone();
    assert!(completed.len() >= 300);

    let out = Command::new(BIN)
        .args(["audit", "export", "--config"])
        .arg(&gw.cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digests: HashSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["kind"] == "mcp_request" && l["outcome"] == "ok")
        .filter_map(|l| l["args_digest"].as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = completed
        .iter()
        .filter(|t| !digests.contains(&mcpgate_audit::args_digest(&json!({"text": t}))))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged requests have no audit record, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let (ok, report, err) = gw.verify();
    assert!(ok, "{report} {err}");
}

#[tokio::test]
async fn policy_reloads_and_refused_policy_edits_are_audited() {
    let mut served = Served::configure(&format!(
        r#"[[routes]]
path = "/mcp"
upstream_command = ["{}"]
scopes = ["mcp"]
policy = "mcp.cedar"
"#,
        echo_dir().join("mcpgate-echo-server").display()
    ));
    let policy = served.dir.path().join("mcp.cedar");
    std::fs::write(
        &policy,
        "@id(\"all\") permit(principal, action, resource);\n",
    )
    .unwrap();
    served.start().await;
    // A broken edit, then a good one; the watcher polls every second.
    std::fs::write(
        &policy,
        "permit(principal, action, resource) when { principal.grups };\n",
    )
    .unwrap();
    let kinds = |served: &Served| -> Vec<Value> {
        let out = Command::new(BIN)
            .args(["audit", "export", "--config"])
            .arg(&served.cfg)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let mut seen = false;
    for _ in 0..100 {
        if kinds(&served)
            .iter()
            .any(|r| r["kind"] == "policy_rejected" && r["route"] == "/mcp")
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the refused edit is audited");
    std::fs::write(&policy, "@id(\"all\") permit(principal, action, resource);\n@id(\"x\") forbid(principal, action == Action::\"tools/call\", resource == Tool::\"add\");\n").unwrap();
    let mut reloaded = None;
    for _ in 0..100 {
        reloaded = kinds(&served)
            .into_iter()
            .find(|r| r["kind"] == "policy_reloaded" && r["route"] == "/mcp");
        if reloaded.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = reloaded.expect("the reload is audited");
    assert_eq!(r["details"]["policies"], 2, "{r}");
}
