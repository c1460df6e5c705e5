//! `mcpgate policy check|schema|test` as a user runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn policy_schema_check_and_test_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (code, schema, _) = run(&["policy", "schema"]);
    assert_eq!(code, 0);
    assert!(schema.contains("entity Tool in [Route]"));
    assert!(schema.contains("action \"tools/call\""));

    let good = dir.path().join("good.cedar");
    std::fs::write(
        &good,
        r#"@id("all") permit(principal, action, resource);
@id("no-write") forbid(principal == User::"alice", action == Action::"tools/call", resource == Tool::"write_file")
  when { context.arguments has path && context.arguments.path like "/etc/*" };
"#,
    )
    .unwrap();
    let (code, out, err) = run(&["policy", "check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 policies"), "{out}");

    // A policy the validator refuses: non-zero, the message names file and line.
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "permit(principal, action, resource)\n  when { principal.grups.contains(\"x\") };\n",
    )
    .unwrap();
    let (code, _, err) = run(&["policy", "check", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("bad.cedar:2"), "{err}");
    assert!(err.contains("grups"), "{err}");

    // `policy test` against a route's policy.
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        r#"listen = "127.0.0.1:1"
public_url = "http://127.0.0.1:1"
[[routes]]
path = "/mcp"
upstream_url = "http://127.0.0.1:2/mcp"
policy = "good.cedar"
"#,
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let base = [
        "policy",
        "test",
        "--config",
        c,
        "--route",
        "/mcp",
        "--principal",
        "user:alice",
        "--scopes",
        "mcp",
        "--action",
        "tools/call",
        "--tool",
        "write_file",
    ];
    let (code, out, _) = run(&[&base[..], &["--args", r#"{"path": "/etc/passwd"}"#]].concat());
    assert_eq!(code, 1);
    assert!(out.starts_with("deny by no-write"), "{out}");
    let (code, out, _) = run(&[&base[..], &["--args", r#"{"path": "/srv/a"}"#, "--json"]].concat());
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allowed"], true);
    assert_eq!(v["policies"], serde_json::json!(["all"]));
    let (code, _, err) = run(&[
        "policy",
        "test",
        "--config",
        c,
        "--route",
        "/nope",
        "--principal",
        "user:a",
        "--action",
        "ping",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("no such route"), "{err}");
}
