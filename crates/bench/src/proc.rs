//! Child processes (started, watched and stopped by pid), what `/proc` says
//! about them, and one-shot HTTP requests for readiness checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustix::process::{Pid, Signal, kill_process};
use tokio::net::TcpStream;

/// `/proc/PID/stat` times are in USER_HZ ticks, 100 per second on every
/// Linux architecture's user ABI.
pub const TICKS_PER_SEC: f64 = 100.0;

/// A child we started. Dropping it sends SIGTERM to it and its direct
/// children (nginx workers), so an error path leaves nothing behind.
#[derive(Debug)]
pub struct Child {
    pub name: &'static str,
    child: tokio::process::Child,
    pid: u32,
    pub log: PathBuf,
    stopped: bool,
}

impl Child {
    /// Spawns `cmd` with stdout and stderr appended to `log` (stdout is
    /// piped instead when `pipe_stdout`).
    pub fn spawn(
        name: &'static str,
        mut cmd: tokio::process::Command,
        log: &Path,
        pipe_stdout: bool,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log).with_context(|| format!("creating {log:?}"))?;
        let stdout = if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone()?)
        };
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(file);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.as_std().get_program()))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once"))?;
        Ok(Self {
            name,
            child,
            pid,
            log: log.to_owned(),
            stopped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Fails (with the end of its log) if the child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.stopped = true;
            bail!(
                "{} exited ({status}); end of its log {:?}:\n{}",
                self.name,
                self.log,
                log_tail(&self.log)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        self.stopped = true;
        signal_tree(self.pid, Signal::TERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Waits until `GET path` on `addr` answers `expect`, or fails if the
    /// child exits or `within` passes.
    pub async fn wait_ready(
        &mut self,
        addr: SocketAddr,
        path: &str,
        expect: StatusCode,
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            self.check_alive()?;
            let last = match request(addr, Method::GET, path, &HeaderMap::new(), Bytes::new()).await
            {
                Ok((s, _)) if s == expect => return Ok(()),
                Ok((s, body)) => format!("{s}: {}", String::from_utf8_lossy(&body)),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} not ready on http://{addr}{path} after {within:?} ({last}); end of its log:\n{}",
                    self.name,
                    log_tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.stopped {
            signal_tree(self.pid, Signal::TERM);
        }
    }
}

fn signal_tree(pid: u32, sig: Signal) {
    for p in children(pid).into_iter().chain(std::iter::once(pid)) {
        if let Some(p) = i32::try_from(p).ok().and_then(Pid::from_raw) {
            let _ = kill_process(p, sig);
        }
    }
}

/// Direct children of `pid` (`/proc/PID/task/PID/children`).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// CPU seconds (user + system) used so far by `pid` and its direct
/// children (nginx's workers).
pub fn cpu_secs_tree(pid: u32) -> f64 {
    std::iter::once(pid)
        .chain(children(pid))
        .map(cpu_secs)
        .sum()
}

/// utime + stime of a process (all its threads), in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name is in parentheses and may contain spaces: fields
    // are counted after the last ')'. utime and stime are fields 14 and 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SEC
}

/// CPU seconds all CPUs spent busy so far (`/proc/stat`: user, nice,
/// system, irq, softirq, steal), to tell how much else ran during a window.
pub fn system_busy_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return 0.0;
    };
    let f: Vec<u64> = cpu
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) as f64 / TICKS_PER_SEC
}

/// Memory of a process from `/proc/PID/status`, in KiB.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Ok(Memory {
        rss_kib: field("VmRSS:").context("no VmRSS")?,
        hwm_kib: field("VmHWM:").unwrap_or(0),
        threads: field("Threads:").unwrap_or(0),
    })
}

/// Memory of a process and its direct children (nginx's workers), summed.
pub fn memory_tree(pid: u32) -> anyhow::Result<Memory> {
    let mut total = memory(pid)?;
    for c in children(pid) {
        let m = memory(c)?;
        total.rss_kib += m.rss_kib;
        total.hwm_kib += m.hwm_kib;
        total.threads += m.threads;
    }
    Ok(total)
}

/// The direct children of `pid`, or `pid` itself if it has none: the
/// processes that hold the connections (nginx's workers; mcpgate itself).
pub fn connection_holders(pid: u32) -> Vec<u32> {
    let c = children(pid);
    if c.is_empty() { vec![pid] } else { c }
}

/// (open file descriptors, soft limit) of a process.
pub fn fds(pid: u32) -> anyhow::Result<(u64, u64)> {
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count() as u64;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no 'Max open files' in /proc/PID/limits")?;
    Ok((open, soft))
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children
/// inherit it) and returns (soft, hard) afterwards. Raising the hard limit
/// itself needs CAP_SYS_RESOURCE, which is not assumed.
pub fn raise_nofile_limit() -> (Option<u64>, Option<u64>) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
    let lim = getrlimit(Resource::Nofile);
    (lim.current, lim.maximum)
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A port on 127.0.0.1 free right now (for configs that need it up front).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The last lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One request on a fresh connection; returns the status and whole body.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .body(Full::new(body))?;
    req.headers_mut().extend(headers.clone());
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .context("no response within 10s")??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
