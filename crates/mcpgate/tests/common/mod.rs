//! What the binary's integration tests share: a `mcpgate serve` process on a
//! free loopback port with a generated configuration, and the CLI run
//! against that configuration.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_mcpgate");

/// Where `mcpgate-echo-server` is (next to the binary under test).
pub fn echo_dir() -> PathBuf {
    Path::new(BIN).parent().unwrap().to_owned()
}

/// A gateway: its directory, configuration and (once started) process,
/// killed when dropped.
pub struct Served {
    pub dir: tempfile::TempDir,
    pub base: String,
    pub cfg: PathBuf,
    child: Option<Child>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Served {
    /// Writes `gw.toml`: `listen` and `public_url` on a free loopback port,
    /// `[storage]` a SQLite file in a fresh directory, then `rest`.
    pub fn configure(rest: &str) -> Self {
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
                "listen = \"127.0.0.1:{port}\"\npublic_url = \"{base}\"\n\n[storage]\nurl = \"sqlite://gw.db\"\n\n{rest}"
            ),
        )
        .unwrap();
        Self {
            dir,
            base,
            cfg,
            child: None,
        }
    }

    /// Starts `serve` (stderr to `serve.log`, the echo server on `PATH`)
    /// and waits until it answers.
    pub async fn start(&mut self) {
        let child = Command::new(BIN)
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&self.cfg)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    echo_dir().display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{}/healthz", self.base))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mcpgate serve did not start:\n{}", self.log());
    }

    /// SIGKILL, and wait for the process to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process, while it runs.
    pub fn child(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Forgets the process (after the caller stopped it some other way).
    pub fn take_child(&mut self) -> Option<Child> {
        self.child.take()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// `mcpgate ARGS --config gw.toml --json`: (success, stdout JSON, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, Value, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.cfg)
            .arg("--json")
            .output()
            .unwrap();
        (
            out.status.success(),
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like [`Served::cli`], asserting success.
    pub fn cli_ok(&self, args: &[&str]) -> Value {
        let (ok, v, err) = self.cli(args);
        assert!(ok, "{args:?}: {err}");
        v
    }
}
