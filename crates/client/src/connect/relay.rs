//! The relay: newline-delimited JSON-RPC on stdin/stdout on one side, the
//! remote server's Streamable HTTP endpoint (or, with `--transport sse`, the
//! 2024-11-05 HTTP+SSE transport) on the other. By default the bridge
//! starts with Streamable HTTP and falls back to HTTP+SSE when the server
//! refuses the `initialize` POST with 404 or 405, as the specification's
//! backwards-compatibility section tells clients to (2025-11-25,
//! Transports).
//!
//! Each message from stdin is one POST, sent concurrently with the others
//! except `initialize`, which is awaited so that the session id and the
//! negotiated protocol version go on every later request. What the server
//! sends back, as a JSON body or as an event stream, is written to stdout one
//! message per line. A request that cannot be delivered is answered with a
//! JSON-RPC error carrying its id, so the client never hangs; the reason
//! goes to stderr.
//!
//! 401 and 403 `insufficient_scope` are handed to the [`Authorizer`] and the
//! request is sent again, a bounded number of times.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use mcpgate_core::jsonrpc::{self, Body, Id, Message};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use url::Url;

use super::error::ConnectError;
use super::oauth::Authorizer;
use super::sse;
use crate::challenge::{self, Challenge};
use crate::http::error_chain;

/// Re-authorizations after 401 for one message.
const MAX_REAUTH: u32 = 2;
/// Step-ups after 403 `insufficient_scope` for one message.
const MAX_STEP_UP: u32 = 2;
/// Reconnections of a broken response stream (with `Last-Event-ID`).
const MAX_RESUME: u32 = 3;
/// The largest message (a JSON body or one event) relayed.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// JSON nesting limit for messages parsed here.
const MAX_DEPTH: usize = 128;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the legacy transport waits, once stdin ended, for the replies
/// still owed.
const LEGACY_DRAIN: Duration = Duration::from_secs(60);
/// JSON-RPC "internal error": what a client sees when the bridge cannot
/// deliver its request.
const BRIDGE_ERROR: i64 = -32603;

/// Which transport the remote server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportChoice {
    /// Streamable HTTP, or HTTP+SSE if the server answers the first
    /// `initialize` POST with 404 or 405. Other refusals (a 400 for a bad
    /// message, 401, 403) are a Streamable HTTP server's answers and are
    /// relayed as such.
    Auto,
    StreamableHttp,
    /// HTTP+SSE of the 2024-11-05 revision.
    LegacySse,
}

/// The relay's options.
#[derive(Debug)]
pub struct RelayOptions {
    pub url: Url,
    pub transport: TransportChoice,
    /// Sent on every request to the MCP server (never to the authorization
    /// server).
    pub headers: HeaderMap,
}

type Out = mpsc::Sender<Vec<u8>>;
type Stdin = tokio::io::Lines<BufReader<tokio::io::Stdin>>;

/// What became of a POST.
enum Posted {
    /// Answered, and the answer relayed (or an error reply written).
    Relayed,
    /// `initialize` refused with this status by a server that may speak
    /// only HTTP+SSE ([`TransportChoice::Auto`]); nothing was relayed.
    NotStreamable(Outgoing, u16),
}

struct Relay {
    http: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    auth: Arc<Authorizer>,
    out: Out,
    session: RwLock<Option<HeaderValue>>,
    /// The version `initialize` negotiated (stateful lifecycle).
    version: RwLock<Option<HeaderValue>>,
    /// Until the first `initialize` is answered with [`TransportChoice::Auto`]:
    /// a 404 or 405 to it means "try HTTP+SSE".
    may_fall_back: std::sync::atomic::AtomicBool,
    /// Requests of the legacy transport whose replies (which come on the
    /// stream) are still owed, by id.
    pending: std::sync::Mutex<Vec<Value>>,
}

/// What the relay needs to know about one message from stdin.
struct Outgoing {
    body: Bytes,
    /// The id when it is a request (a reply is owed).
    id: Option<Id>,
    method: Option<String>,
    /// `_meta` protocol version (the 2026-07-28 per-request lifecycle).
    meta_version: Option<String>,
    name: Option<String>,
}

impl Outgoing {
    fn parse(line: &[u8]) -> Result<Self, jsonrpc::ParseError> {
        let body = jsonrpc::parse(line, MAX_DEPTH)?;
        let (id, method, meta_version, name) = match &body {
            Body::Single(m) => (
                match m {
                    Message::Request { .. } => m.id().cloned(),
                    _ => None,
                },
                m.method().map(str::to_owned),
                m.meta_protocol_version().map(str::to_owned),
                mcpgate_core::mcp::name_param(m).map(str::to_owned),
            ),
            Body::Batch(_) => (None, None, None, None),
        };
        Ok(Self {
            body: Bytes::copy_from_slice(line),
            id,
            method,
            meta_version,
            name,
        })
    }
}

/// Runs until stdin ends (then waits for the replies still owed) or the
/// server ends a legacy event stream.
pub async fn run(auth: Arc<Authorizer>, opts: RelayOptions) -> Result<(), ConnectError> {
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("mcpgate-connect/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConnectError::Transport(e.to_string()))?;
    let (out, rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(write_stdout(rx));
    let relay = Arc::new(Relay {
        http,
        url: opts.url,
        headers: opts.headers,
        auth,
        out,
        session: RwLock::new(None),
        version: RwLock::new(None),
        may_fall_back: (opts.transport == TransportChoice::Auto).into(),
        pending: std::sync::Mutex::new(Vec::new()),
    });
    let stdin = BufReader::new(tokio::io::stdin()).lines();
    let result = match opts.transport {
        TransportChoice::Auto | TransportChoice::StreamableHttp => {
            relay.clone().streamable(stdin).await
        }
        TransportChoice::LegacySse => relay.clone().legacy(stdin, None).await,
    };
    drop(relay);
    let _ = writer.await;
    result
}

async fn write_stdout(mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut stdout = tokio::io::stdout();
    while let Some(mut line) = rx.recv().await {
        line.push(b'\n');
        if stdout.write_all(&line).await.is_err() || stdout.flush().await.is_err() {
            break;
        }
    }
}

impl Relay {
    async fn streamable(self: Arc<Self>, mut stdin: Stdin) -> Result<(), ConnectError> {
        let mut tasks = JoinSet::new();
        let mut listener: Option<tokio::task::JoinHandle<()>> = None;
        while let Some(line) = stdin
            .next_line()
            .await
            .map_err(|e| ConnectError::Transport(format!("reading stdin: {e}")))?
        {
            if line.trim().is_empty() {
                continue;
            }
            let msg = match Outgoing::parse(line.as_bytes()) {
                Ok(m) => m,
                Err(e) => {
                    self.reply_error(
                        jsonrpc::salvage_id(line.as_bytes()).as_ref(),
                        e.code(),
                        &e.to_string(),
                    )
                    .await;
                    continue;
                }
            };
            // Requests run concurrently; `initialize`, notifications and
            // responses are delivered before the next line is read, so the
            // server sees them in the order the client wrote them
            // (`notifications/initialized` before the first request).
            let initialize = msg.method.as_deref() == Some("initialize");
            if initialize || msg.id.is_none() {
                if let Posted::NotStreamable(msg, status) = self.clone().post(msg).await {
                    eprintln!(
                        "mcpgate connect: {} answered the initialize POST with HTTP {status}; \
                         trying the 2024-11-05 HTTP+SSE transport",
                        self.url
                    );
                    // Requests sent before `initialize` (there should be
                    // none) are answered before the transport changes.
                    while tasks.join_next().await.is_some() {}
                    return self.legacy(stdin, Some(msg)).await;
                }
                if initialize && listener.is_none() && self.session_id().is_some() {
                    listener = Some(tokio::spawn(self.clone().listen()));
                }
            } else {
                tasks.spawn(self.clone().post(msg));
            }
            // Reap finished tasks as we go.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        if let Some(l) = listener {
            l.abort();
        }
        self.end_session().await;
        Ok(())
    }

    fn session_id(&self) -> Option<HeaderValue> {
        self.session.read().ok().and_then(|s| s.clone())
    }

    fn request(&self, method: reqwest::Method, url: &Url) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url.clone());
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(s) = self.session_id() {
            req = req.header("mcp-session-id", s);
        }
        if let Some(t) = self.auth.bearer() {
            req = req.bearer_auth(&t.access_token);
        }
        req
    }

    /// Sends one message and relays what comes back.
    async fn post(self: Arc<Self>, msg: Outgoing) -> Posted {
        let (mut reauth, mut step_up) = (0, 0);
        loop {
            self.auth.before_request().await;
            let sent_token = self.auth.bearer();
            let mut req = self
                .request(reqwest::Method::POST, &self.url)
                .header(ACCEPT, "application/json, text/event-stream")
                .header(CONTENT_TYPE, "application/json")
                .body(msg.body.clone());
            let version = match &msg.meta_version {
                Some(v) => HeaderValue::from_str(v).ok(),
                None => self.version.read().ok().and_then(|v| v.clone()),
            };
            if let Some(v) = version {
                req = req.header("mcp-protocol-version", v);
            }
            // SEP-2243 request metadata, mirrored from the body.
            if let Some(m) = msg
                .method
                .as_deref()
                .and_then(|m| HeaderValue::from_str(m).ok())
            {
                req = req.header("mcp-method", m);
            }
            if let Some(n) = msg.name.as_deref().map(header_value) {
                req = req.header("mcp-name", n);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let why = format!("cannot reach {}: {}", self.url, error_chain(&e));
                    eprintln!("mcpgate connect: {why}");
                    self.reply_error(msg.id.as_ref(), BRIDGE_ERROR, &why).await;
                    return Posted::Relayed;
                }
            };
            let status = resp.status().as_u16();
            let challenge = bearer_challenge(resp.headers());
            let failed = sent_token.as_ref().map(|t| t.access_token.as_str());
            if status == 401 && reauth < MAX_REAUTH {
                reauth += 1;
                match self.auth.renew(failed, 401, challenge.as_ref()).await {
                    Ok(()) => continue,
                    Err(e) => {
                        self.auth_failed(&msg, &e).await;
                        return Posted::Relayed;
                    }
                }
            }
            let insufficient =
                challenge.as_ref().and_then(|c| c.param("error")) == Some("insufficient_scope");
            if status == 403 && insufficient {
                let wanted = challenge.as_ref().and_then(|c| c.param("scope"));
                // A token that already holds every challenged scope would
                // only be refused again: no new authorization for it.
                let pointless = wanted.is_some_and(|w| self.auth.holds(w));
                if pointless {
                    eprintln!(
                        "mcpgate connect: {} refused the request with insufficient_scope for \
                         scopes the token already holds; not asking again",
                        self.url
                    );
                } else if step_up < MAX_STEP_UP {
                    step_up += 1;
                    match self.auth.renew(failed, 403, challenge.as_ref()).await {
                        Ok(()) => continue,
                        Err(e) => {
                            self.auth_failed(&msg, &e).await;
                            return Posted::Relayed;
                        }
                    }
                } else {
                    eprintln!(
                        "mcpgate connect: {} still refused with insufficient_scope after {MAX_STEP_UP} \
                     step-up authorizations; giving up on this request",
                        self.url
                    );
                }
            }
            if msg.method.as_deref() == Some("initialize")
                && self.may_fall_back.swap(false, Ordering::Relaxed)
                && matches!(status, 404 | 405)
            {
                return Posted::NotStreamable(msg, status);
            }
            if status == 404
                && msg.method.as_deref() != Some("initialize")
                && self.session_id().is_some()
            {
                // MCP "Session Management": a 404 ends the session.
                if let Ok(mut s) = self.session.write() {
                    *s = None;
                }
                eprintln!("mcpgate connect: the server ended the MCP session (404)");
            }
            if msg.method.as_deref() == Some("initialize")
                && (200..300).contains(&status)
                && let Some(s) = resp.headers().get("mcp-session-id")
                && let Ok(mut g) = self.session.write()
            {
                *g = Some(s.clone());
            }
            self.relay_response(resp, &msg).await;
            return Posted::Relayed;
        }
    }

    /// After a 401 to a request sent with `sent`: a better token.
    async fn reauthorize(
        &self,
        sent: Option<&Arc<super::cache::Tokens>>,
        headers: &HeaderMap,
    ) -> Result<(), ConnectError> {
        let challenge = bearer_challenge(headers);
        self.auth
            .renew(
                sent.map(|t| t.access_token.as_str()),
                401,
                challenge.as_ref(),
            )
            .await
    }

    async fn auth_failed(&self, msg: &Outgoing, e: &ConnectError) {
        eprintln!("mcpgate connect: {e}");
        self.reply_error(
            msg.id.as_ref(),
            BRIDGE_ERROR,
            &format!("mcpgate connect: {e}"),
        )
        .await;
    }

    /// Writes what a POST got back to stdout.
    async fn relay_response(&self, mut resp: reqwest::Response, msg: &Outgoing) {
        let status = resp.status().as_u16();
        let media = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media == "text/event-stream" && (200..300).contains(&status) {
            self.pump_stream(resp, msg.id.as_ref()).await;
            return;
        }
        let body = match read_body(&mut resp).await {
            Ok(b) => b,
            Err(e) => {
                self.reply_error(msg.id.as_ref(), BRIDGE_ERROR, &e).await;
                return;
            }
        };
        let mut answered = false;
        // An error answer to a notification or a response is nobody's to
        // read: stderr only.
        let relay_body = msg.id.is_some() || (200..300).contains(&status);
        if relay_body
            && !body.is_empty()
            && let Ok(v) = jsonrpc::parse_value(&body, MAX_DEPTH)
        {
            answered = self.emit(v, msg.id.as_ref()).await;
        }
        if answered || msg.id.is_none() {
            if !(200..300).contains(&status) && !answered {
                eprintln!(
                    "mcpgate connect: the server answered HTTP {status} to a {}",
                    msg.method.as_deref().unwrap_or("message")
                );
            }
            return;
        }
        if (200..300).contains(&status) {
            // 202 to a request: the reply may come on the GET stream.
            return;
        }
        let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        let why = format!("the server answered HTTP {status}: {}", excerpt.trim());
        eprintln!("mcpgate connect: {why}");
        self.reply_error(msg.id.as_ref(), BRIDGE_ERROR, &why).await;
    }

    /// Writes one JSON value (a message or a batch) as one line; true when
    /// it holds the reply to `id`. Also records the negotiated version.
    async fn emit(&self, v: Value, id: Option<&Id>) -> bool {
        let replies = |m: &Value| {
            id.is_some_and(|id| m.get("id") == Some(&id.to_value()))
                && (m.get("result").is_some() || m.get("error").is_some())
        };
        let answered = match &v {
            Value::Array(a) => a.iter().any(replies),
            m => replies(m),
        };
        if let Ok(mut p) = self.pending.lock()
            && !p.is_empty()
        {
            let done = |m: &Value| m.get("result").is_some() || m.get("error").is_some();
            let ids: Vec<&Value> = match &v {
                Value::Array(a) => a
                    .iter()
                    .filter(|m| done(m))
                    .filter_map(|m| m.get("id"))
                    .collect(),
                m if done(m) => m.get("id").into_iter().collect(),
                _ => Vec::new(),
            };
            p.retain(|id| !ids.contains(&id));
        }
        if answered
            && let Some(pv) = v
                .pointer("/result/protocolVersion")
                .and_then(Value::as_str)
                .filter(|_| v.pointer("/result/serverInfo").is_some())
            && let Ok(h) = HeaderValue::from_str(pv)
            && let Ok(mut g) = self.version.write()
        {
            *g = Some(h);
        }
        if let Ok(line) = serde_json::to_vec(&v) {
            let _ = self.out.send(line).await;
        }
        answered
    }

    /// Relays an event stream; resumes it with `Last-Event-ID` when it
    /// breaks before the reply to `id` came.
    async fn pump_stream(&self, resp: reqwest::Response, id: Option<&Id>) {
        let mut parser = sse::Parser::new(MAX_MESSAGE);
        let mut answered = self.pump(resp, &mut parser, id).await;
        let mut resumes = 0;
        while !answered && id.is_some() && resumes < MAX_RESUME {
            let Some(last) = parser.last_event_id().map(str::to_owned) else {
                break;
            };
            resumes += 1;
            tokio::time::sleep(Duration::from_millis(200 * u64::from(resumes))).await;
            let mut req = self
                .request(reqwest::Method::GET, &self.url)
                .header(ACCEPT, "text/event-stream")
                .header("last-event-id", last);
            if let Some(v) = self.version.read().ok().and_then(|v| v.clone()) {
                req = req.header("mcp-protocol-version", v);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    answered = self.pump(r, &mut parser, id).await;
                }
                _ => break,
            }
        }
        if !answered && id.is_some() {
            self.reply_error(
                id,
                BRIDGE_ERROR,
                "the server's event stream ended before it replied",
            )
            .await;
        }
    }

    async fn pump(
        &self,
        mut resp: reqwest::Response,
        parser: &mut sse::Parser,
        id: Option<&Id>,
    ) -> bool {
        let mut answered = false;
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => return answered,
            };
            let events = match parser.push(&chunk) {
                Ok(ev) => ev,
                Err(sse::TooLarge) => {
                    eprintln!(
                        "mcpgate connect: an event larger than {MAX_MESSAGE} bytes; dropping the stream"
                    );
                    return answered;
                }
            };
            for ev in events {
                if ev.event != "message" || ev.data.trim().is_empty() {
                    continue;
                }
                match jsonrpc::parse_value(ev.data.as_bytes(), MAX_DEPTH) {
                    Ok(v) => answered |= self.emit(v, id).await,
                    Err(e) => eprintln!("mcpgate connect: an event that is not JSON-RPC: {e}"),
                }
            }
            if answered && id.is_some() {
                // The reply ends the stream's purpose (MCP: the server
                // closes it after the response).
                return true;
            }
        }
    }

    /// The GET stream for messages the server sends on its own (stateful
    /// sessions). 405 means the server offers none.
    async fn listen(self: Arc<Self>) {
        let mut parser = sse::Parser::new(MAX_MESSAGE);
        let mut failures = 0u32;
        while failures < 5 {
            // The token this request carries, for the 401 below.
            let sent = self.auth.bearer();
            let mut req = self
                .request(reqwest::Method::GET, &self.url)
                .header(ACCEPT, "text/event-stream");
            if let Some(v) = self.version.read().ok().and_then(|v| v.clone()) {
                req = req.header("mcp-protocol-version", v);
            }
            if let Some(last) = parser.last_event_id() {
                req = req.header("last-event-id", last.to_owned());
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    failures = 0;
                    self.pump(r, &mut parser, None).await;
                }
                Ok(r) if r.status().as_u16() == 405 => return,
                Ok(r) if r.status().as_u16() == 401 => {
                    failures += 1;
                    if self.reauthorize(sent.as_ref(), r.headers()).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(_) => failures += 1,
            }
            tokio::time::sleep(Duration::from_secs(u64::from(failures.max(1)))).await;
        }
    }

    /// MCP "Session Management": a client that is done SHOULD delete the
    /// session.
    async fn end_session(&self) {
        if self.session_id().is_none() {
            return;
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.request(reqwest::Method::DELETE, &self.url).send(),
        )
        .await;
    }

    async fn reply_error(&self, id: Option<&Id>, code: i64, message: &str) {
        // Notifications and responses get no reply.
        let Some(id) = id else { return };
        let v = jsonrpc::error_body(Some(id), code, message, None);
        self.emit(v, Some(id)).await;
    }

    // ------------------------------------------------------------ legacy

    /// HTTP+SSE (2024-11-05): a GET stream whose first event names the URL
    /// to POST messages to; every reply comes on the stream.
    /// The HTTP+SSE transport: opens the event stream, then posts each
    /// message (`first`, then stdin's) to the endpoint it names.
    async fn legacy(
        self: Arc<Self>,
        mut stdin: Stdin,
        first: Option<Outgoing>,
    ) -> Result<(), ConnectError> {
        let (resp, mut parser, endpoint) = match self.open_legacy().await {
            Ok(opened) => opened,
            Err(e) => {
                // The client waiting for its `initialize` gets an answer.
                if let Some(msg) = &first {
                    self.reply_error(msg.id.as_ref(), BRIDGE_ERROR, &e.to_string())
                        .await;
                }
                return Err(e);
            }
        };
        let reader = {
            let me = self.clone();
            tokio::spawn(async move {
                me.pump(resp, &mut parser, None).await;
            })
        };
        if let Some(msg) = first {
            self.clone().legacy_post(endpoint.clone(), msg).await;
        }
        loop {
            tokio::select! {
                line = stdin.next_line() => {
                    let Some(line) = line.map_err(|e| ConnectError::Transport(e.to_string()))? else { break };
                    if line.trim().is_empty() { continue; }
                    match Outgoing::parse(line.as_bytes()) {
                        // In order: replies come on the stream, so a POST
                        // only waits for its 202.
                        Ok(msg) => self.clone().legacy_post(endpoint.clone(), msg).await,
                        Err(e) => {
                            self.reply_error(jsonrpc::salvage_id(line.as_bytes()).as_ref(), e.code(), &e.to_string()).await;
                        }
                    }
                }
                _ = async { while !reader.is_finished() { tokio::time::sleep(Duration::from_millis(200)).await } } => {
                    return Err(ConnectError::Transport(format!("the server closed the event stream at {}", self.url)));
                }
            }
        }
        // Replies to the last requests arrive on the stream: wait for them
        // (as long as the stream lasts, at most LEGACY_DRAIN).
        let deadline = tokio::time::Instant::now() + LEGACY_DRAIN;
        while !reader.is_finished()
            && tokio::time::Instant::now() < deadline
            && self.pending.lock().is_ok_and(|p| !p.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        reader.abort();
        Ok(())
    }

    /// Opens the HTTP+SSE event stream (re-authorizing after a 401) and
    /// reads up to its `endpoint` event: the stream, its parser, and the
    /// URL to post to (on the stream's origin only).
    async fn open_legacy(&self) -> Result<(reqwest::Response, sse::Parser, Url), ConnectError> {
        let mut reauth = 0;
        let resp = loop {
            let sent = self.auth.bearer();
            let r = self
                .request(reqwest::Method::GET, &self.url)
                .header(ACCEPT, "text/event-stream")
                .send()
                .await
                .map_err(|e| {
                    ConnectError::Transport(format!(
                        "cannot reach {}: {}",
                        self.url,
                        error_chain(&e)
                    ))
                })?;
            let status = r.status().as_u16();
            if status == 401 && reauth < MAX_REAUTH {
                reauth += 1;
                self.reauthorize(sent.as_ref(), r.headers()).await?;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(ConnectError::Transport(format!(
                    "the HTTP+SSE event stream at {} answered HTTP {status} (is this the \
                     server's SSE endpoint? A Streamable HTTP server is reached with \
                     --transport streamable-http)",
                    self.url
                )));
            }
            break r;
        };
        let mut resp = resp;
        let mut parser = sse::Parser::new(MAX_MESSAGE);
        let endpoint = loop {
            let chunk = resp
                .chunk()
                .await
                .map_err(|e| ConnectError::Transport(e.to_string()))?
                .ok_or_else(|| {
                    ConnectError::Transport(format!(
                        "the event stream at {} ended before its endpoint event",
                        self.url
                    ))
                })?;
            let events = parser
                .push(&chunk)
                .map_err(|_| ConnectError::Transport("an oversized event".into()))?;
            if let Some(ev) = events.into_iter().find(|e| e.event == "endpoint") {
                let u = self.url.join(ev.data.trim()).map_err(|e| {
                    ConnectError::Transport(format!("the endpoint event is not a URL ({e})"))
                })?;
                // The token goes only where the stream came from.
                if u.origin() != self.url.origin() {
                    return Err(ConnectError::Transport(format!(
                        "the endpoint event names another origin ({}); refusing to send the \
                         token there",
                        u.origin().ascii_serialization()
                    )));
                }
                break u;
            }
        };
        Ok((resp, parser, endpoint))
    }

    async fn legacy_post(self: Arc<Self>, endpoint: Url, msg: Outgoing) {
        if let (Some(id), Ok(mut p)) = (&msg.id, self.pending.lock()) {
            p.push(id.to_value());
        }
        let mut reauth = 0;
        loop {
            let sent = self.auth.bearer();
            let r = self
                .request(reqwest::Method::POST, &endpoint)
                .header(CONTENT_TYPE, "application/json")
                .body(msg.body.clone())
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 401 && reauth < MAX_REAUTH => {
                    reauth += 1;
                    if let Err(e) = self.reauthorize(sent.as_ref(), r.headers()).await {
                        return self.auth_failed(&msg, &e).await;
                    }
                }
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    let why = format!("the server answered HTTP {}", r.status().as_u16());
                    eprintln!("mcpgate connect: {why}");
                    return self.reply_error(msg.id.as_ref(), BRIDGE_ERROR, &why).await;
                }
                Err(e) => {
                    let why = format!("cannot reach {endpoint}: {}", error_chain(&e));
                    eprintln!("mcpgate connect: {why}");
                    return self.reply_error(msg.id.as_ref(), BRIDGE_ERROR, &why).await;
                }
            }
        }
    }
}

/// A header value for `s`: as is when it is visible ASCII, else the
/// SEP-2243 `=?base64?…?=` form.
fn header_value(s: &str) -> HeaderValue {
    use base64::Engine as _;
    if !s.is_empty()
        && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
        && let Ok(v) = HeaderValue::from_str(s)
    {
        return v;
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    HeaderValue::from_str(&format!("=?base64?{b64}?=")).unwrap_or(HeaderValue::from_static(""))
}

async fn read_body(resp: &mut reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > MAX_MESSAGE {
                    return Err(format!(
                        "the server's reply is larger than {MAX_MESSAGE} bytes"
                    ));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(format!("reading the server's reply: {}", error_chain(&e))),
        }
    }
}

/// The `Bearer` challenge of a response's `WWW-Authenticate` headers.
fn bearer_challenge(headers: &HeaderMap) -> Option<Challenge> {
    challenge::bearer(
        headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// Parses a `--header "Name: value"` argument.
pub fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("--header {h:?} is not \"Name: value\""))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("--header {h:?}: {:?} is not a header name", name.trim()))?;
    if name == reqwest::header::AUTHORIZATION {
        return Err("--header cannot set Authorization: mcpgate connect sends the token".into());
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("--header {h:?}: the value is not a valid header value"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sep2243_name_header_is_ascii_or_base64() {
        assert_eq!(header_value("get_weather"), "get_weather");
        assert_eq!(header_value("météo"), "=?base64?bcOpdMOpbw==?=");
        assert_eq!(header_value("a b"), "=?base64?YSBi?=");
        // What the gateway decodes is what was sent.
        for s in ["get_weather", "météo", "a b", "file:///x y"] {
            assert_eq!(
                mcpgate_core::mcp::decode_header_value(header_value(s).as_bytes()).as_deref(),
                Some(s)
            );
        }
    }

    #[test]
    fn header_arguments() {
        let (n, v) = parse_header("X-Api-Key:  abc ").unwrap();
        assert_eq!(n, "x-api-key");
        assert_eq!(v, "abc");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Authorization: Bearer x").is_err());
    }

    #[test]
    fn outgoing_classification() {
        let m = Outgoing::parse(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).unwrap();
        assert!(m.id.is_some());
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.name.as_deref(), Some("echo"));
        assert_eq!(m.meta_version.as_deref(), Some("2026-07-28"));
        let n =
            Outgoing::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(n.id.is_none());
        let r = Outgoing::parse(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).unwrap();
        assert!(r.id.is_none(), "a response is owed no reply");
        assert!(Outgoing::parse(b"{not json").is_err());
    }
}
