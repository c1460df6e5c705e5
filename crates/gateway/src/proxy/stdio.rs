//! stdio upstreams: the gateway spawns the program and speaks
//! newline-delimited JSON-RPC to it, serving Streamable HTTP (2025-11-25
//! transport) to clients.
//!
//! Each `initialize` starts a child of its own, tied to a gateway-minted
//! `Mcp-Session-Id` and to the principal that created it: a stdio server may
//! hold one user's state, so a child is never shared between principals and
//! another principal presenting the session id gets 404. Idle children are
//! reaped (their session then answers 404, and clients re-initialise, as the
//! transport specifies). When a child exits, every request waiting on it gets
//! a JSON-RPC error at once and the session ends. The child's stderr goes to
//! the gateway log, a bounded line at a time. The child's environment is
//! an empty one plus the basics programs need and its route's
//! `upstream_env` (the gateway's own holds its secrets). A child that stops
//! reading its input is stopped once a write waits past the upstream
//! timeout. Each child leads a process group of its own, and stopping it
//! kills the group (what a launcher such as `npx` started goes too).
//!
//! The 2026-07-28 era has no handshake: the gateway bridges it to the
//! child's 2025-11-25 one (see [`StdioUpstream::post_modern`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderValue, Response, StatusCode, header};
use mcpgate_core::jsonrpc::{self, Id, Message, code};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use super::Tracked;
use super::http::ListFilter;
use crate::error::Reject;
use crate::metrics::Metrics;

/// Longest line accepted from a child.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Children one principal may hold on one route; the least recently used
/// is stopped to make room.
const MAX_CHILDREN_PER_PRINCIPAL: usize = 8;

#[derive(Debug)]
pub struct StdioUpstream {
    route: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    idle: Duration,
    timeout: Duration,
    sessions: Mutex<HashMap<String, Arc<Child>>>,
    /// The child serving each principal's 2026-07-28 requests, with its
    /// `InitializeResult`.
    modern: Mutex<HashMap<String, ModernChild>>,
    /// Serialises starting modern children (one per principal).
    modern_lock: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

/// The environment a child gets to know its caller by.
#[derive(Debug, Clone, Default)]
pub struct CallerEnv {
    pub subject: String,
    pub client_id: Option<String>,
    pub scopes: String,
}

/// A principal's bridged child and its `InitializeResult`.
type ModernChild = (Arc<Child>, Arc<Value>);

#[derive(Debug)]
struct Child {
    owner: String,
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    listener: Mutex<Option<mpsc::Sender<Bytes>>>,
    last_used: Mutex<Instant>,
    dead: AtomicBool,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    /// Ids for requests the gateway itself sends (modern bridging).
    next_id: std::sync::atomic::AtomicU64,
    /// How long a write to the child's stdin may wait for it to read (the
    /// route's upstream timeout); a child that does not read is stopped.
    write_timeout: Duration,
    /// The child's own process group (see `spawn`): stopping the child
    /// stops the whole group, since a launcher (`npx`, `uvx`) runs the
    /// real server as a child of its own, which would outlive it.
    pgid: Option<rustix::process::Pid>,
    /// Set once the child has exited and been reaped. Its group is not
    /// signalled after that: the id may be reused.
    exited: AtomicBool,
}

impl Child {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    fn has_listener(&self) -> bool {
        self.listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|l| !l.is_closed())
    }

    fn stop(&self) {
        self.kill_group();
        if let Some(k) = self.kill.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = k.send(());
        }
    }

    /// SIGKILL to every process of the child's group, at once (also when
    /// the gateway shuts down, whose runtime may not run the child's task
    /// again).
    fn kill_group(&self) {
        if !self.exited.load(Ordering::Acquire) {
            kill_group(self.pgid);
        }
    }

    /// Fails every waiting request at once (the child is gone).
    fn fail_pending(&self) {
        let pending: Vec<_> = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (key, tx) in pending {
            let id: Value = serde_json::from_str(&key).unwrap_or(Value::Null);
            let _ = tx.send(serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {"code": code::GATEWAY_UPSTREAM, "message": "Upstream MCP server exited"},
            }));
        }
    }
}

/// A request's entry in its child's pending map, removed however the
/// request ends: answered (the reader took it already), failed, timed out,
/// or abandoned (its future dropped: the client went away). A left-over
/// entry would keep the reaper from ever stopping the child. Only an entry
/// whose receiver is gone is removed: a later request that reused the id
/// keeps its own.
struct Pending<'a> {
    child: &'a Child,
    key: String,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut pending = self.child.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending
            .get(&self.key)
            .is_some_and(oneshot::Sender::is_closed)
        {
            pending.remove(&self.key);
        }
    }
}

/// SIGKILL to every process of `group`, if there is one.
fn kill_group(group: Option<rustix::process::Pid>) {
    if let Some(g) = group {
        // ESRCH (nothing left in the group) is the usual answer.
        let _ = rustix::process::kill_process_group(g, rustix::process::Signal::KILL);
    }
}

fn id_key(id: &Id) -> String {
    id.to_value().to_string()
}

impl StdioUpstream {
    pub fn new(
        route: String,
        command: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<PathBuf>,
        idle_secs: u64,
        timeout_secs: u64,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let this = Arc::new(Self {
            route,
            command,
            env,
            cwd,
            idle: Duration::from_secs(idle_secs.max(1)),
            timeout: Duration::from_secs(timeout_secs),
            sessions: Mutex::new(HashMap::new()),
            modern: Mutex::new(HashMap::new()),
            modern_lock: tokio::sync::Mutex::new(()),
            metrics,
        });
        let weak = Arc::downgrade(&this);
        let period = (this.idle / 2).clamp(Duration::from_millis(200), Duration::from_secs(30));
        tokio::spawn(reaper(weak, period));
        this
    }

    /// Number of live children (for tests and readiness).
    pub fn children(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Stops every child (graceful shutdown).
    pub fn shutdown(&self) {
        let all: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (_, c) in all {
            c.stop();
        }
    }

    fn session(&self, id: Option<&str>, owner: &str) -> Result<Arc<Child>, Reject> {
        let id = id.ok_or(Reject::SessionRequired)?;
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(id) {
            // Constant-time is not needed: the owner key is not a secret,
            // and the session id was matched by hash lookup.
            Some(c) if c.owner == owner && !c.dead.load(Ordering::Acquire) => Ok(c.clone()),
            _ => Err(Reject::SessionNotFound),
        }
    }

    /// Handles a POST.
    #[allow(clippy::too_many_arguments)]
    pub async fn post(
        self: &Arc<Self>,
        owner: &str,
        caller: &CallerEnv,
        session: Option<&str>,
        msg: &Message,
        body: &[u8],
        filter: Option<ListFilter>,
    ) -> Result<Response<Body>, Reject> {
        // One compact line: a client may send pretty-printed JSON.
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Reject::BodyRead(e.to_string()))?;
        let mut line = serde_json::to_vec(&value).map_err(|e| Reject::BodyRead(e.to_string()))?;
        line.push(b'\n');

        let (child, new_session) = if msg.method() == Some("initialize") {
            let (sid, child) = self.spawn(owner, caller)?;
            (child, Some(sid))
        } else {
            (self.session(session, owner)?, None)
        };
        child.touch();

        let Message::Request { id, .. } = msg else {
            write_line(&child, &line).await?;
            return Ok(empty(StatusCode::ACCEPTED));
        };
        let reply = self.request(&child, id, &line).await?;
        child.touch();
        let mut resp = json_reply(reply, filter)?;
        if let Some(sid) = new_session
            && let Ok(v) = HeaderValue::from_str(&sid)
        {
            resp.headers_mut().insert("mcp-session-id", v);
        }
        Ok(resp)
    }

    /// Handles a GET: the session's stream of server-initiated messages.
    pub fn get(&self, owner: &str, session: Option<&str>) -> Result<Response<Body>, Reject> {
        let child = self.session(session, owner)?;
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        *child.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        child.touch();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| {
                (
                    Ok::<_, std::convert::Infallible>(http_body::Frame::data(b)),
                    rx,
                )
            })
        });
        let body = Tracked::new(
            http_body_util::StreamBody::new(stream.boxed()),
            self.metrics.active_streams.clone(),
        );
        let mut resp = Response::new(Body::new(body));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        Ok(resp)
    }

    /// Handles a DELETE: ends the session and its child.
    pub fn delete(&self, owner: &str, session: Option<&str>) -> Result<Response<Body>, Reject> {
        let child = self.session(session, owner)?;
        if let Some(id) = session {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
        child.stop();
        Ok(empty(StatusCode::OK))
    }

    /// Sends one request line and waits for the reply with the same id; a
    /// child that exits answers at once (with a JSON-RPC error).
    async fn request(&self, child: &Child, id: &Id, line: &[u8]) -> Result<Value, Reject> {
        let key = id_key(id);
        // Declared before the receiver, so dropped after it: see `Pending`.
        let _pending = Pending {
            child,
            key: key.clone(),
        };
        let (tx, rx) = oneshot::channel();
        child
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, tx);
        write_line(child, line).await?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            // The child went away between registration and reply.
            Ok(Err(_)) => Ok(jsonrpc::error_body(
                Some(id),
                code::GATEWAY_UPSTREAM,
                "Upstream MCP server exited",
                None,
            )),
            Err(_) => Err(Reject::UpstreamTimeout),
        }
    }

    /// Serves a 2026-07-28 request from a 2025-11-25 stdio server: the
    /// gateway holds one child per principal, performs the server's
    /// `initialize` handshake itself, answers `server/discover` from the
    /// `InitializeResult`, renumbers request ids (several clients of one
    /// principal share the child) and adds the result fields the modern
    /// era requires (`resultType`, and `ttlMs`/`cacheScope` on lists).
    pub async fn post_modern(
        self: &Arc<Self>,
        owner: &str,
        caller: &CallerEnv,
        msg: &Message,
        filter: Option<ListFilter>,
    ) -> Result<Response<Body>, Reject> {
        let Message::Request { id, method, params } = msg else {
            // 2026-07-28 defines no client-to-server notifications over HTTP.
            return Ok(empty(StatusCode::ACCEPTED));
        };
        let (child, init) = self.modern_child(owner, caller, params.as_ref()).await?;
        child.touch();
        let reply = if method == "server/discover" {
            serde_json::json!({"jsonrpc": "2.0", "id": id.to_value(), "result": {
                "resultType": "complete",
                "supportedVersions": [mcpgate_core::mcp::MODERN_VERSION],
                "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| serde_json::json!({})),
                "instructions": init.get("instructions").cloned().unwrap_or(Value::Null),
                "_meta": {"io.modelcontextprotocol/serverInfo": init.get("serverInfo").cloned().unwrap_or(Value::Null)},
                "ttlMs": 0,
                "cacheScope": "private",
            }})
        } else if method == "subscriptions/listen" {
            return Err(Reject::MethodNotFound);
        } else {
            let n = child.next_id.fetch_add(1, Ordering::Relaxed);
            let inner_id = Id::Str(format!("mcpgate-{n}"));
            let mut out =
                serde_json::json!({"jsonrpc": "2.0", "id": inner_id.to_value(), "method": method});
            if let Some(p) = params {
                out["params"] = p.clone();
            }
            let mut line = serde_json::to_vec(&out).map_err(|e| Reject::BodyRead(e.to_string()))?;
            line.push(b'\n');
            let mut r = self.request(&child, &inner_id, &line).await?;
            r["id"] = id.to_value();
            if let Some(result) = r.get_mut("result").and_then(Value::as_object_mut) {
                result
                    .entry("resultType")
                    .or_insert_with(|| Value::from("complete"));
                if method.ends_with("/list") || method == "resources/read" {
                    result.entry("ttlMs").or_insert_with(|| Value::from(0));
                    result
                        .entry("cacheScope")
                        .or_insert_with(|| Value::from("private"));
                }
            }
            r
        };
        child.touch();
        json_reply(reply, filter)
    }

    /// The principal's child for modern requests, started and initialised
    /// on first use (and again after it exited or was reaped).
    async fn modern_child(
        self: &Arc<Self>,
        owner: &str,
        caller: &CallerEnv,
        params: Option<&Value>,
    ) -> Result<ModernChild, Reject> {
        let _guard = self.modern_lock.lock().await;
        let existing = self
            .modern
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(owner)
            .cloned();
        if let Some((c, init)) = existing
            && !c.dead.load(Ordering::Acquire)
            && c.kill.lock().unwrap_or_else(|p| p.into_inner()).is_some()
        {
            return Ok((c, init));
        }
        let (_sid, child) = self.spawn(owner, caller)?;
        let meta = params.and_then(|p| p.get("_meta"));
        let capabilities = meta
            .and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"))
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        let client_info = meta
            .and_then(|m| m.get("io.modelcontextprotocol/clientInfo"))
            .cloned()
            .unwrap_or_else(
                || serde_json::json!({"name": "mcpgate", "version": env!("CARGO_PKG_VERSION")}),
            );
        let init_id = Id::Str("mcpgate-init".into());
        let mut line = serde_json::to_vec(&serde_json::json!({
            "jsonrpc": "2.0", "id": init_id.to_value(), "method": "initialize",
            "params": {"protocolVersion": mcpgate_core::mcp::LEGACY_VERSIONS[0],
                       "capabilities": capabilities, "clientInfo": client_info},
        }))
        .map_err(|e| Reject::Upstream(e.to_string()))?;
        line.push(b'\n');
        let reply = self.request(&child, &init_id, &line).await?;
        let Some(init) = reply.get("result").cloned() else {
            child.stop();
            return Err(Reject::Upstream(
                "the stdio server refused initialize".into(),
            ));
        };
        write_line(
            &child,
            b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n",
        )
        .await?;
        let init = Arc::new(init);
        self.modern
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(owner.to_owned(), (child.clone(), init.clone()));
        Ok((child, init))
    }

    fn spawn(
        self: &Arc<Self>,
        owner: &str,
        caller: &CallerEnv,
    ) -> Result<(String, Arc<Child>), Reject> {
        self.make_room(owner);
        let mut sid_bytes = [0u8; 16];
        mcpgate_crypto::random_bytes(&mut sid_bytes)
            .map_err(|e| Reject::Upstream(e.to_string()))?;
        let sid: String = sid_bytes.iter().map(|b| format!("{b:02x}")).collect();

        let mut cmd = Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, so that stopping it reaches whatever it
            // started (see `Child::pgid`).
            .process_group(0)
            .kill_on_drop(true);
        // The gateway's environment holds its own secrets (the master key,
        // `${VAR}`s of its configuration, other routes' `upstream_env`):
        // the child starts from an empty one plus what a program needs to
        // run (see `inherited`) and its route's `upstream_env`.
        cmd.env_clear();
        cmd.envs(std::env::vars_os().filter(|(k, _)| inherited(k)));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.env("MCPGATE_SUBJECT", &caller.subject);
        cmd.env("MCPGATE_SCOPES", &caller.scopes);
        if let Some(c) = &caller.client_id {
            cmd.env("MCPGATE_CLIENT_ID", c);
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let mut proc = cmd
            .spawn()
            .map_err(|e| Reject::Upstream(format!("cannot start {:?}: {e}", self.command[0])))?;
        let pid = proc.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (proc.stdin.take(), proc.stdout.take(), proc.stderr.take())
        else {
            return Err(Reject::Upstream("child pipes unavailable".into()));
        };
        let (kill_tx, kill_rx) = oneshot::channel();
        let child = Arc::new(Child {
            owner: owner.to_owned(),
            stdin: tokio::sync::Mutex::new(stdin),
            pending: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
            last_used: Mutex::new(Instant::now()),
            dead: AtomicBool::new(false),
            kill: Mutex::new(Some(kill_tx)),
            next_id: std::sync::atomic::AtomicU64::new(1),
            write_timeout: self.timeout,
            pgid: i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw),
            exited: AtomicBool::new(false),
        });
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sid.clone(), child.clone());
        self.metrics.stdio_children.inc();
        tracing::info!(route = %self.route, pid, "started stdio MCP server");

        let route = self.route.clone();
        tokio::spawn(async move {
            let mut stderr = BufReader::new(stderr);
            let mut buf = Vec::new();
            while let Some(cut) = next_log_line(&mut stderr, &mut buf).await {
                let l = String::from_utf8_lossy(buf.trim_ascii_end());
                let more = if cut { " [line cut]" } else { "" };
                tracing::info!(target: "mcpgate::upstream", route = %route, pid, "{l}{more}");
            }
        });
        let route = self.route.clone();
        let (group, watched) = (child.pgid, Arc::downgrade(&child));
        tokio::spawn(async move {
            tokio::select! {
                status = proc.wait() => {
                    // What it started goes with it.
                    kill_group(group);
                    tracing::info!(route = %route, pid, ?status, "stdio MCP server exited");
                }
                _ = kill_rx => {
                    let _ = proc.kill().await;
                    tracing::info!(route = %route, pid, "stopped stdio MCP server");
                }
            }
            if let Some(c) = watched.upgrade() {
                c.exited.store(true, Ordering::Release);
            }
        });
        let weak = Arc::downgrade(self);
        let reader_child = child.clone();
        let sid2 = sid.clone();
        tokio::spawn(async move {
            read_child(BufReader::new(stdout), &reader_child).await;
            reader_child.dead.store(true, Ordering::Release);
            reader_child.fail_pending();
            *reader_child
                .listener
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
            if let Some(up) = weak.upgrade() {
                up.sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&sid2);
                up.metrics.stdio_children.dec();
            }
            reader_child.stop();
        });
        Ok((sid, child))
    }

    /// Keeps one principal under its child quota by stopping its least
    /// recently used child.
    fn make_room(&self, owner: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let mine: Vec<(String, Duration)> = sessions
            .iter()
            .filter(|(_, c)| c.owner == owner)
            .map(|(k, c)| (k.clone(), c.idle_for()))
            .collect();
        if mine.len() < MAX_CHILDREN_PER_PRINCIPAL {
            return;
        }
        if let Some((k, _)) = mine.iter().max_by_key(|(_, idle)| *idle)
            && let Some(c) = sessions.remove(k)
        {
            c.stop();
        }
    }
}

/// Writes one line to the child's stdin. A child that does not read it
/// within its write timeout (its pipe full) is stopped: a line cut in the
/// middle would garble everything after it, and its waiting requests get
/// their error at once rather than each its own timeout.
async fn write_line(child: &Child, line: &[u8]) -> Result<(), Reject> {
    let written = tokio::time::timeout(child.write_timeout, async {
        let mut stdin = child.stdin.lock().await;
        stdin.write_all(line).await?;
        stdin.flush().await
    })
    .await;
    match written {
        Ok(r) => r.map_err(|e| Reject::Upstream(format!("writing to stdio server: {e}"))),
        Err(_) => {
            tracing::warn!("stdio server does not read its input; stopping it");
            child.stop();
            Err(Reject::UpstreamTimeout)
        }
    }
}

/// The gateway's environment variables a stdio server inherits: what
/// programs need to run (`PATH`, `HOME`, locale, time zone, temporary
/// directory, terminal), CA bundles and proxies for their own outbound
/// calls. Nothing else: a server needing more gets it from its route's
/// `upstream_env` (which may name `${VAR}`s).
fn inherited(name: &std::ffi::OsStr) -> bool {
    let Some(n) = name.to_str() else {
        return false;
    };
    n.starts_with("LC_")
        || matches!(
            n,
            "PATH"
                | "HOME"
                | "USER"
                | "LOGNAME"
                | "SHELL"
                | "LANG"
                | "LANGUAGE"
                | "TZ"
                | "TMPDIR"
                | "TERM"
                | "SSL_CERT_FILE"
                | "SSL_CERT_DIR"
                | "NODE_EXTRA_CA_CERTS"
                | "HTTP_PROXY"
                | "HTTPS_PROXY"
                | "NO_PROXY"
                | "ALL_PROXY"
                | "http_proxy"
                | "https_proxy"
                | "no_proxy"
                | "all_proxy"
        )
}

/// How long the child's output waits for a client that does not read its
/// event stream before that stream is closed.
const STREAM_STALL: Duration = Duration::from_secs(10);

/// Longest line of a child's stderr logged; the rest of a longer line is
/// skipped, not held.
const MAX_LOG_LINE: usize = 8 * 1024;

/// Reads the next line of a child's stderr into `buf` (cleared first), at
/// most [`MAX_LOG_LINE`] bytes of it: `Some(cut)`, with `cut` set when the
/// line was longer, or `None` at the end. It reads every byte the child
/// writes, so that the child never blocks on (or dies of) a full or closed
/// pipe, whatever it writes: no newline, invalid UTF-8, a flood.
async fn next_log_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<bool> {
    buf.clear();
    let mut cut = false;
    loop {
        let chunk = match r.fill_buf().await {
            Ok(c) => c,
            Err(_) => return None,
        };
        if chunk.is_empty() {
            return (!buf.is_empty() || cut).then_some(cut);
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let keep = take.min(MAX_LOG_LINE - buf.len());
        buf.extend_from_slice(&chunk[..keep]);
        cut |= keep < take && !(done && keep + 1 == take);
        r.consume(take);
        if done {
            return Some(cut);
        }
    }
}

/// Routes every line the child prints: responses to their waiting request,
/// anything else (server requests and notifications) to the session's GET
/// stream.
async fn read_child<R: AsyncBufRead + Unpin>(mut r: R, child: &Child) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_line_bounded(&mut r, &mut buf).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "stdio server output unreadable; stopping it");
                return;
            }
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            tracing::warn!("stdio server printed a line that is not JSON; ignored");
            continue;
        };
        let is_response =
            v.get("method").is_none() && (v.get("result").is_some() || v.get("error").is_some());
        if is_response {
            let key = v.get("id").map(Value::to_string).unwrap_or_default();
            let tx = child
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            if let Some(tx) = tx {
                let _ = tx.send(v);
            }
            continue;
        }
        let listener = child
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match listener {
            Some(l) if !l.is_closed() => {
                let event = format!("event: message\ndata: {v}\n\n");
                // A client that stops reading its stream must not hold up
                // the answers to every other request of this child for
                // long: past STREAM_STALL its stream is closed (it may open
                // another). A burst the stream's buffer cannot take at once
                // only waits for the client to catch up.
                if let Err(mpsc::error::TrySendError::Full(event)) = l.try_send(Bytes::from(event))
                    && tokio::time::timeout(STREAM_STALL, l.send(event))
                        .await
                        .is_err()
                {
                    tracing::warn!("a client does not read its event stream; closing it");
                    *child.listener.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
            _ => {
                // Nobody can answer a server request now (no GET stream, or
                // a modern client, which cannot receive one): say so, rather
                // than leave the server waiting.
                if let (Some(id), Some(_)) = (v.get("id"), v.get("method")) {
                    let reply = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": code::METHOD_NOT_FOUND,
                        "message": "the client cannot receive server requests now",
                    }});
                    let mut line = reply.to_string().into_bytes();
                    line.push(b'\n');
                    if write_line(child, &line).await.is_err() {
                        return;
                    }
                } else {
                    tracing::debug!("server notification with no open stream; dropped");
                }
            }
        }
    }
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes; `false` at
/// end of input.
async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<bool> {
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(!buf.is_empty());
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take > MAX_LINE {
            return Err(std::io::Error::other("line too long"));
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(take);
        if done {
            return Ok(true);
        }
    }
}

async fn reaper(up: Weak<StdioUpstream>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(up) = up.upgrade() else { return };
        let idle: Vec<(String, Arc<Child>)> = {
            let mut sessions = up.sessions.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<String> = sessions
                .iter()
                .filter(|(_, c)| {
                    c.idle_for() > up.idle
                        && !c.has_listener()
                        && c.pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .is_empty()
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| sessions.remove(&k).map(|c| (k, c)))
                .collect()
        };
        for (_, c) in idle {
            tracing::info!(route = %up.route, "reaping idle stdio MCP server");
            c.stop();
        }
    }
}

/// The reply to a request as an `application/json` response, filtered to
/// what the caller may use when it answers a list request.
fn json_reply(mut reply: Value, filter: Option<ListFilter>) -> Result<Response<Body>, Reject> {
    if let Some(f) = filter {
        crate::filter::filter_list_response(&mut reply, &f.id, f.kind, &f.keep);
    }
    let bytes = serde_json::to_vec(&reply).map_err(|e| Reject::Upstream(e.to_string()))?;
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child's stderr is logged a bounded line at a time, whatever it
    /// writes, and read to its end: an over-long line is cut (its rest
    /// skipped, not held), invalid UTF-8 does not stop the reading, and a
    /// last line without a newline is still logged.
    #[tokio::test]
    async fn stderr_lines_are_bounded_and_read_to_the_end() {
        let mut input = vec![b'x'; 3 * MAX_LOG_LINE + 17];
        input.extend_from_slice(b"\n\xff\xfe bad utf-8\n");
        input.extend_from_slice(&vec![b'y'; MAX_LOG_LINE]);
        input.extend_from_slice(b"\nafter\ntail");
        // A small buffer, so that lines span many reads.
        let mut r = tokio::io::BufReader::with_capacity(100, input.as_slice());
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while let Some(cut) = next_log_line(&mut r, &mut buf).await {
            assert!(buf.len() <= MAX_LOG_LINE);
            lines.push((
                String::from_utf8_lossy(buf.trim_ascii_end()).into_owned(),
                cut,
            ));
        }
        assert_eq!(
            lines.len(),
            5,
            "{:?}",
            lines.iter().map(|l| l.1).collect::<Vec<_>>()
        );
        assert_eq!(lines[0], ("x".repeat(MAX_LOG_LINE), true));
        assert_eq!(lines[1], ("\u{fffd}\u{fffd} bad utf-8".to_owned(), false));
        assert_eq!(
            lines[2],
            ("y".repeat(MAX_LOG_LINE), false),
            "exactly the limit"
        );
        assert_eq!(lines[3], ("after".to_owned(), false));
        assert_eq!(lines[4], ("tail".to_owned(), false));
    }

    #[test]
    fn only_the_runtime_basics_of_the_gateway_environment_are_inherited() {
        for n in ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "HTTPS_PROXY"] {
            assert!(inherited(std::ffi::OsStr::new(n)), "{n}");
        }
        for n in [
            "MCPGATE_MASTER_KEY",
            "DATABASE_URL",
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(!inherited(std::ffi::OsStr::new(n)), "{n}");
        }
    }
}
