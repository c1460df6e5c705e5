//! Local user accounts through the binary, as an operator manages them:
//! `mcpgate user add|list|disable|enable|passwd`, passwords on standard
//! input only, never echoed, stored as Argon2id hashes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mcpgate_crypto::password::verify_password;
use mcpgate_store::{DEFAULT_TENANT, UserRecord};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");

/// A configuration with the authorization server on (or off), and the
/// output of every command run against it, to check for leaks at the end.
struct Gw {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    seen: String,
}

impl Gw {
    fn new(authorization_server: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("gw.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:1\"\npublic_url = \"http://127.0.0.1:1\"\n\n\
                 [storage]\nurl = \"sqlite://gw.db\"\n\n\
                 [authorization_server]\nenabled = {authorization_server}\n"
            ),
        )
        .unwrap();
        Self {
            dir,
            cfg,
            seen: String::new(),
        }
    }

    /// Runs `mcpgate ARGS --config gw.toml`, writing `stdin` (if any) to its
    /// standard input.
    fn run(&mut self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.cfg)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            // Dropped at the end of the statement: the child sees EOF.
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        self.seen.push_str(&String::from_utf8_lossy(&out.stdout));
        self.seen.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Runs a command that must succeed and print JSON.
    fn json(&mut self, args: &[&str], stdin: Option<&str>) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.run(&args, stdin);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The stored record, read as the login page will.
    fn stored(&self, name: &str) -> Option<UserRecord> {
        let url = format!("sqlite://{}", self.dir.path().join("gw.db").display());
        rt().block_on(async {
            let store = mcpgate_store::open(&url).await.unwrap();
            store.user(DEFAULT_TENANT, name).await.unwrap()
        })
    }

    /// Every byte the database has on disk (main file and WAL).
    fn database_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if file_name(&path).starts_with("gw.db") {
                all.extend(std::fs::read(&path).unwrap());
            }
        }
        all
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// stdout and stderr of a command, for assertion messages and matching.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn user_accounts_round_trip_and_passwords_never_show() {
    const PASSWORD: &str = "Tr0ub4dor&3-first";
    const NEW_PASSWORD: &str = "correct horse battery staple";
    let mut gw = Gw::new(true);

    // The password is the first line of standard input; CRLF is no part of it.
    let added = gw.json(
        &["user", "add", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\r\n")),
    );
    assert_eq!(added["username"], "alice");
    let rec = gw.stored("alice").unwrap();
    assert!(rec.password_hash.starts_with("$argon2id$"), "{rec:?}");
    assert!(verify_password(PASSWORD, &rec.password_hash));
    assert_eq!(rec.created_at, added["created_at"].as_i64().unwrap());

    // Listed, with its state, never with its hash.
    let listed = gw.json(&["user", "list"], None);
    let expected = json!([{
        "username": "alice", "state": "active", "created_at": rec.created_at,
        "disabled_at": null, "locked": false, "locked_until": null, "failed_logins": 0,
        "password_changed_at": rec.created_at, "last_login_at": null,
    }]);
    assert_eq!(listed, expected);
    let out = gw.run(&["user", "list"], None);
    let table = text(&out);
    assert!(out.status.success() && table.contains("alice") && table.contains("active"));
    for listing in [listed.to_string(), table] {
        assert!(!listing.contains("argon2"), "{listing}");
        assert!(!listing.contains(&rec.password_hash), "{listing}");
    }

    // A taken name is refused before the password is even read, and a name
    // differing only in case after; the first account is untouched.
    for name in ["alice", "ALICE"] {
        let out = gw.run(
            &["user", "add", name, "--password-stdin"],
            Some("another password\n"),
        );
        assert!(!out.status.success());
        assert!(text(&out).contains("already exists"), "{}", text(&out));
        assert!(text(&out).contains("mcpgate user list"), "{}", text(&out));
    }
    assert_eq!(gw.stored("alice"), Some(rec.clone()));
    assert_eq!(gw.stored("ALICE"), None);

    // Disable, then enable: a round trip.
    let disabled = gw.json(&["user", "disable", "alice"], None);
    assert_eq!(disabled["already_disabled"], false);
    let at = gw.stored("alice").unwrap().disabled_at.unwrap();
    let again = gw.json(&["user", "disable", "alice"], None);
    assert_eq!(again["already_disabled"], true);
    let listed = gw.json(&["user", "list"], None);
    assert_eq!(listed[0]["state"], "disabled");
    assert_eq!(listed[0]["disabled_at"], at);
    let enabled = gw.json(&["user", "enable", "alice"], None);
    assert_eq!(enabled["was_disabled"], true);
    assert_eq!(gw.stored("alice"), Some(rec.clone()));
    assert_eq!(gw.json(&["user", "list"], None)[0]["state"], "active");

    // A new password replaces the old one.
    let changed = gw.json(
        &["user", "passwd", "alice", "--password-stdin"],
        Some(&format!("{NEW_PASSWORD}\n")),
    );
    assert_eq!(changed["username"], "alice");
    let after = gw.stored("alice").unwrap();
    assert_eq!(
        after.password_changed_at,
        changed["password_changed_at"].as_i64().unwrap()
    );
    assert!(verify_password(NEW_PASSWORD, &after.password_hash));
    assert!(!verify_password(PASSWORD, &after.password_hash));

    // Unknown accounts are named, with where to look.
    for args in [
        &["user", "disable", "bob"][..],
        &["user", "enable", "bob"],
        &["user", "passwd", "bob", "--password-stdin"],
    ] {
        let out = gw.run(args, Some("some password\n"));
        assert!(!out.status.success(), "{args:?}");
        let msg = text(&out);
        assert!(
            msg.contains("no user \"bob\"") && msg.contains("mcpgate user list"),
            "{msg}"
        );
    }

    // No password, in any output or on disk in the clear.
    let db = gw.database_bytes();
    assert!(contains(&db, "$argon2id$"), "the hash is stored");
    for pw in [PASSWORD, NEW_PASSWORD, "another password", "some password"] {
        assert!(!gw.seen.contains(pw), "{pw:?} in the output:\n{}", gw.seen);
        assert!(!contains(&db, pw), "{pw:?} in the database");
    }
    assert!(!gw.seen.contains("$argon2"), "a hash in the output");
}

#[test]
fn passwords_outside_the_length_rules_are_refused_and_nothing_is_stored() {
    let mut gw = Gw::new(true);
    let too_long = "x".repeat(1025);
    for (input, why) in [
        ("seven7\n", "at least 8 characters"),
        ("sh0rt\r\n", "at least 8 characters"),
        ("\n", "at least 8 characters"),
        (too_long.as_str(), "at most 1024 bytes"),
        ("", "no password on standard input"),
    ] {
        let out = gw.run(&["user", "add", "alice", "--password-stdin"], Some(input));
        assert_eq!(out.status.code(), Some(1), "{input:?}");
        let msg = text(&out);
        assert!(msg.contains(why), "{input:?}: {msg}");
        assert!(
            input.trim().is_empty() || !msg.contains(input.trim()),
            "{msg}"
        );
        assert_eq!(gw.stored("alice"), None);
    }
    // With --json the refusal is JSON on stdout, still without the password.
    let out = gw.run(
        &["user", "add", "alice", "--password-stdin", "--json"],
        Some("seven7\n"),
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("at least 8"), "{v}");
    assert!(!gw.seen.contains("seven7"), "{}", gw.seen);

    // The longest allowed password, and only its first line, are taken.
    let longest = "y".repeat(1024);
    let out = gw.run(
        &["user", "add", "alice", "--password-stdin"],
        Some(&format!("{longest}\nsecond line\n")),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(verify_password(
        &longest,
        &gw.stored("alice").unwrap().password_hash
    ));
}

#[test]
fn passwords_are_only_read_from_standard_input() {
    let mut gw = Gw::new(true);
    for args in [&["user", "add", "alice"][..], &["user", "passwd", "alice"]] {
        // Even with a password waiting on stdin, the flag is required.
        let out = gw.run(args, Some("a fine password\n"));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let msg = text(&out);
        assert!(msg.contains("--password-stdin"), "{msg}");
        assert!(msg.contains("shell history"), "{msg}");
    }
    assert_eq!(gw.stored("alice"), None);
    // There is no option that takes a password as an argument.
    let out = gw.run(
        &["user", "add", "alice", "--password", "a fine password"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(gw.stored("alice"), None);
}

#[test]
fn invalid_usernames_are_refused_before_reading_a_password() {
    let mut gw = Gw::new(true);
    let too_long = "a".repeat(65);
    for name in ["a b", "alice/admin", "ålice", too_long.as_str()] {
        // Standard input is closed: the name must be refused first.
        let out = gw.run(&["user", "add", name, "--password-stdin"], None);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let msg = text(&out);
        assert!(
            msg.contains("1 to 64 characters of A-Z a-z 0-9 . _ @ -"),
            "{msg}"
        );
    }
    assert_eq!(gw.json(&["user", "list"], None), json!([]));
}

#[test]
fn accounts_need_the_authorization_server() {
    let mut gw = Gw::new(false);
    for args in [
        &["user", "add", "alice", "--password-stdin"][..],
        &["user", "passwd", "alice", "--password-stdin"],
        &["user", "enable", "alice"],
    ] {
        let out = gw.run(args, Some("a fine password\n"));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let msg = text(&out);
        assert!(
            msg.contains("[authorization_server]") && msg.contains("enabled = true"),
            "{msg}"
        );
    }
    // Looking, and locking an account out, work whatever the configuration.
    assert_eq!(gw.json(&["user", "list"], None), json!([]));
    let out = gw.run(&["user", "disable", "alice"], None);
    assert!(text(&out).contains("no user \"alice\""), "{}", text(&out));
}
