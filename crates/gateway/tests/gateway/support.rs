//! Harness for the gateway tests: a loopback issuer (metadata + JWKS, with
//! a fetch counter), a recording Streamable HTTP upstream, and the gateway
//! itself on 127.0.0.1:0 with a real SQLite file.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use mcpgate_test_support::{TestKey, jwks};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub async fn spawn_app(app: Router) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    addr
}

/// A loopback authorization server: RFC 8414 metadata and a JWKS.
pub struct Issuer {
    pub url: String,
    pub key: TestKey,
    pub jwks_fetches: Arc<AtomicUsize>,
}

impl Issuer {
    pub async fn start() -> Self {
        let key = TestKey::es256("key-1");
        let doc = jwks(&[&key]);
        let fetches = Arc::new(AtomicUsize::new(0));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let meta = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "authorization_endpoint": format!("{url}/authorize"),
            "token_endpoint": format!("{url}/token"),
            "response_types_supported": ["code"],
        });
        let f = fetches.clone();
        let app = Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(move || {
                    let m = meta.clone();
                    async move { axum::Json(m) }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || {
                    let d = doc.clone();
                    f.fetch_add(1, Ordering::SeqCst);
                    async move { axum::Json(d) }
                }),
            );
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Self {
            url,
            key,
            jwks_fetches: fetches,
        }
    }

    pub fn token(&self, aud: &str, scope: &str) -> String {
        self.key
            .sign(&mcpgate_test_support::claims(&self.url, aud, scope))
    }

    pub fn token_with(&self, f: impl FnOnce(&mut Value)) -> String {
        let mut c = mcpgate_test_support::claims(&self.url, "", "");
        f(&mut c);
        self.key.sign(&c)
    }
}

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub headers: HeaderMap,
    pub body: Value,
}

/// How the recording upstream answers `tools/list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMode {
    Json,
    Sse,
}

#[derive(Clone)]
struct UpState {
    seen: Arc<Mutex<Vec<Seen>>>,
    list_mode: Arc<Mutex<ListMode>>,
    sse_release: Arc<Mutex<Option<oneshot::Receiver<()>>>>,
    sse_dropped: Arc<Mutex<Option<mpsc::UnboundedSender<()>>>>,
}

/// A Streamable HTTP MCP server that records every request.
pub struct Upstream {
    pub url: String,
    state: UpState,
}

impl Upstream {
    pub async fn start() -> Self {
        let state = UpState {
            seen: Arc::default(),
            list_mode: Arc::new(Mutex::new(ListMode::Json)),
            sse_release: Arc::default(),
            sse_dropped: Arc::default(),
        };
        let app = Router::new()
            .route("/mcp", axum::routing::any(upstream_handler))
            .with_state(state.clone());
        let addr = spawn_app(app).await;
        Self {
            url: format!("http://{addr}/mcp"),
            state,
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn set_list_mode(&self, m: ListMode) {
        *self.state.list_mode.lock().unwrap() = m;
    }

    /// The next GET stream waits for this before sending its first event.
    pub fn hold_next_stream(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        *self.state.sse_release.lock().unwrap() = Some(rx);
        tx
    }

    /// Receives a message when a GET stream's body is dropped upstream.
    pub fn on_stream_dropped(&self) -> mpsc::UnboundedReceiver<()> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.state.sse_dropped.lock().unwrap() = Some(tx);
        rx
    }
}

struct DropSignal(Option<mpsc::UnboundedSender<()>>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

async fn upstream_handler(
    State(st): State<UpState>,
    method: http::Method,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    st.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        headers: headers.clone(),
        body: json.clone(),
    });
    if method == http::Method::GET {
        let release = st.sse_release.lock().unwrap().take();
        let dropped = DropSignal(st.sse_dropped.lock().unwrap().clone());
        let stream = futures_util::stream::unfold(
            (release, dropped, 0u32),
            |(release, dropped, n)| async move {
                if let Some(r) = release {
                    let _ = r.await;
                }
                if n > 0 {
                    // Stay open without events (an idle stream).
                    std::future::pending::<()>().await;
                }
                let ev = axum::body::Bytes::from_static(
                    b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/ping\"}\n\n",
                );
                Some((
                    Ok::<_, std::convert::Infallible>(ev),
                    (None, dropped, n + 1),
                ))
            },
        );
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap();
    }
    if method == http::Method::DELETE {
        return StatusCode::OK.into_response();
    }
    let id = json.get("id").cloned();
    let Some(id) = id else {
        return StatusCode::ACCEPTED.into_response();
    };
    let m = json.get("method").and_then(Value::as_str).unwrap_or("");
    let result = match m {
        "initialize" => {
            json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "recorder", "version": "1"}})
        }
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "write_note", "inputSchema": {"type": "object"}},
            {"name": "delete_all", "inputSchema": {"type": "object"}},
        ]}),
        "tools/call" => {
            json!({"content": [{"type": "text", "text": format!("called {}", json["params"]["name"].as_str().unwrap_or(""))}]})
        }
        _ => json!({}),
    };
    let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
    if m == "initialize" {
        let mut r = axum::Json(reply).into_response();
        r.headers_mut().insert(
            "mcp-session-id",
            http::HeaderValue::from_static("up-session-1"),
        );
        return r;
    }
    if m == "tools/list" && *st.list_mode.lock().unwrap() == ListMode::Sse {
        let body = format!(
            "id: 1\ndata: \n\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":1}}}}\n\nevent: message\ndata: {reply}\n\n"
        );
        return Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(body))
            .unwrap();
    }
    axum::Json(reply).into_response()
}

/// A running gateway.
pub struct Gw {
    pub base: String,
    pub addr: SocketAddr,
    pub store: Arc<dyn mcpgate_store::Store>,
    pub gateway: Arc<mcpgate_gateway::Gateway>,
    _dir: tempfile::TempDir,
}

impl Gw {
    /// Starts a gateway; `routes_and_issuers` is TOML appended after
    /// `listen`, `public_url` and `[storage]` (use `{PUBLIC}` for the base).
    pub async fn start(routes_and_issuers: &str) -> Self {
        Self::start_with_storage(routes_and_issuers, None).await
    }

    /// Like [`Gw::start`], on the given storage URL (default: a fresh
    /// SQLite file).
    pub async fn start_with_storage(routes_and_issuers: &str, storage: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let base = format!("http://{addr}");
        let storage = storage
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sqlite://{}/gw.db", dir.path().display()));
        let text = format!(
            "listen = \"{addr}\"\npublic_url = \"{base}\"\n{}\n[storage]\nurl = \"{storage}\"\n",
            routes_and_issuers.replace("{PUBLIC}", &base),
        );
        // Tables must come after top-level keys; re-order the [storage] table
        // by parsing as given (TOML allows tables in any order).
        let cfg = mcpgate_core::config::Config::parse(&text, dir.path().to_owned())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let store = mcpgate_store::open(&cfg.storage.resolved_url(&cfg.base_dir))
            .await
            .unwrap();
        let gateway = mcpgate_gateway::Gateway::build(cfg, store.clone()).unwrap();
        let service = gateway.service(None);
        tokio::spawn(mcpgate_gateway::serve(
            l,
            service,
            32 * 1024,
            std::time::Duration::from_secs(1),
            std::future::pending(),
        ));
        Self {
            base,
            addr,
            store,
            gateway,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// POSTs a JSON-RPC message with the usual MCP headers.
pub async fn rpc(url: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    rpc_in_session(url, token, None, body).await
}

/// Like [`rpc`], in the session `sid` if given.
pub async fn rpc_in_session(
    url: &str,
    token: Option<&str>,
    sid: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut r = client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(s) = sid {
        r = r.header("mcp-session-id", s);
    }
    r.send().await.unwrap()
}

pub fn call(id: u64, tool: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
}

pub fn list(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

pub fn www_auth_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
