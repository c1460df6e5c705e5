//! The mcpgate gateway: an OAuth 2.1 resource server in front of MCP
//! servers (MCP authorization, 2026-07-28 and 2025-11-25 revisions).
//!
//! Trust boundary: everything arriving on the listener is untrusted until
//! [`endpoint`] has bounded it, authenticated it ([`authn`]: RFC 6750
//! bearer tokens verified per RFC 9068 / RFC 8725 / RFC 7662, or API keys)
//! and authorised it ([`authz`]: route and tool scopes). Upstreams are
//! trusted to be the servers configured, never to see the client's
//! credentials ([`proxy`]). Protected Resource Metadata is in [`metadata`]
//! (RFC 9728); all refusals go on the wire through [`error`].
//!
//! [`Gateway::router`] assembles the whole request path in one place.

pub mod audit;
pub mod authn;
pub mod authz;
pub mod endpoint;
pub mod error;
pub mod filter;
pub mod issuers;
pub mod limits;
pub mod metadata;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod route;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::IntoResponse;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use mcpgate_core::config::{AuthMode, Config};
use mcpgate_store::Store;
use tokio::net::TcpListener;

use crate::authn::Authenticator;
use crate::authz::ScopeHierarchy;
use crate::issuers::Issuer;
use crate::metrics::Metrics;
use crate::route::{RouteRuntime, UpstreamRuntime};

/// Everything the request path needs, built once from the configuration.
#[derive(Debug)]
pub struct Gateway {
    pub config: Arc<Config>,
    pub routes: HashMap<String, Arc<RouteRuntime>>,
    pub authn: Authenticator,
    pub hierarchy: ScopeHierarchy,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    /// The identity header names (parsed once).
    pub identity_names: proxy::http::IdentityNames,
    /// The principal of `auth = "none"` routes.
    pub anonymous: Arc<authn::Principal>,
    /// Binds upstream session ids to principals (HTTP routes with auth).
    pub sessions: mcpgate_crypto::session::SessionBinder,
    /// The audit trail (`[audit] enabled`).
    pub audit: Option<mcpgate_audit::AuditLog>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error(transparent)]
    Route(#[from] route::RouteError),
    #[error("cannot build HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Random(#[from] mcpgate_crypto::Unspecified),
    #[error("{0}")]
    Config(String),
}

impl Gateway {
    /// Builds the gateway. Must run inside a Tokio runtime (stdio routes
    /// start their reaper). Binds nothing.
    pub fn build(config: Config, store: Arc<dyn Store>) -> Result<Arc<Self>, BuildError> {
        Self::build_with_local_issuer(config, store, None)
    }

    /// Like [`Gateway::build`], trusting also the built-in authorization
    /// server (issuer = `public_url`) whose keys `local` holds in memory.
    pub fn build_with_local_issuer(
        config: Config,
        store: Arc<dyn Store>,
        local: Option<Arc<dyn mcpgate_crypto::jwt::KeySource>>,
    ) -> Result<Arc<Self>, BuildError> {
        Self::build_full(config, store, local, None)
    }

    /// Like [`Gateway::build_with_local_issuer`], writing every request's
    /// outcome to `audit`. Session ids are bound with a random key.
    pub fn build_full(
        config: Config,
        store: Arc<dyn Store>,
        local: Option<Arc<dyn mcpgate_crypto::jwt::KeySource>>,
        audit: Option<mcpgate_audit::AuditLog>,
    ) -> Result<Arc<Self>, BuildError> {
        let sessions = mcpgate_crypto::session::SessionBinder::random()?;
        Self::build_with_sessions(config, store, local, audit, sessions)
    }

    /// Like [`Gateway::build_full`], binding session ids with `sessions`
    /// (one derived from the master key lets replicas, and a restarted
    /// process, accept each other's session ids).
    pub fn build_with_sessions(
        config: Config,
        store: Arc<dyn Store>,
        local: Option<Arc<dyn mcpgate_crypto::jwt::KeySource>>,
        audit: Option<mcpgate_audit::AuditLog>,
        sessions: mcpgate_crypto::session::SessionBinder,
    ) -> Result<Arc<Self>, BuildError> {
        let metrics = Arc::new(Metrics::new());
        let http = proxy::http::client().map_err(|e| BuildError::Client(e.to_string()))?;
        let control =
            issuers::control_plane_client().map_err(|e| BuildError::Client(e.to_string()))?;
        let mut routes = HashMap::new();
        for r in &config.routes {
            let rt = RouteRuntime::new(&config, r, http.clone(), metrics.clone())?;
            if let Some((handle, path)) = &rt.policy {
                // Reloaded on SIGHUP and when the file changes; a set that
                // fails validation leaves the last good one in force. Both
                // outcomes go to the audit trail.
                let (audit, route) = (audit.clone(), r.path.clone());
                let on_reload: mcpgate_policy::OnReload = Arc::new(move |path, result| {
                    let Some(a) = &audit else { return };
                    use mcpgate_audit::{Event, EventKind, outcome};
                    let ev = match result {
                        Ok(n) => Event::new(EventKind::PolicyReloaded, outcome::OK).details(
                            serde_json::json!({"path": path.display().to_string(), "policies": n}),
                        ),
                        Err(e) => Event::new(EventKind::PolicyRejected, outcome::REFUSED)
                            .reason(e.to_string().chars().take(2000).collect::<String>())
                            .details(serde_json::json!({"path": path.display().to_string()})),
                    };
                    if let Err(e) = a.append_nowait(ev.route(route.clone())) {
                        tracing::warn!(error = %e, "audit record dropped");
                    }
                });
                mcpgate_policy::spawn_watch_with(path.clone(), handle.clone(), on_reload);
            }
            routes.insert(r.path.clone(), Arc::new(rt));
        }
        let issuers = local
            .map(|l| Arc::new(Issuer::local(config.public_url.as_str(), l)))
            .into_iter()
            .chain(
                config
                    .trusted_issuers
                    .iter()
                    .map(|i| Arc::new(Issuer::new(i.clone()))),
            )
            .collect();
        let hierarchy = ScopeHierarchy::new(config.scope_implies.clone());
        let identity_names = proxy::http::IdentityNames::new(&config.identity_headers)
            .map_err(BuildError::Config)?;
        Ok(Arc::new(Self {
            authn: Authenticator::new(issuers, control, store.clone())?,
            config: Arc::new(config),
            routes,
            hierarchy,
            metrics,
            store,
            sessions,
            anonymous: Arc::new(authn::Principal::anonymous()),
            identity_names,
            audit,
        }))
    }

    /// The issuers named in every route's metadata.
    pub fn authorization_servers(&self) -> Vec<String> {
        self.authn
            .issuers()
            .iter()
            .map(|i| i.issuer().to_owned())
            .collect()
    }

    /// The HTTP service: health, metadata and every route's MCP endpoint.
    /// Paths are matched exactly (a route's resource URI is byte-exact), so
    /// dispatch is a map lookup rather than a pattern router.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .fallback(dispatch)
            .with_state(self.clone())
    }

    /// The service the listener runs: MCP routes are dispatched here by an
    /// exact path lookup, straight to [`endpoint::handle`] (no router on the
    /// hot path); everything else (health, metadata, and `extra`, e.g. the
    /// authorization server's endpoints) goes through an axum router.
    pub fn service(self: &Arc<Self>, extra: Option<axum::Router>) -> Service {
        let other = match extra {
            Some(e) => e.merge(self.router()),
            None => self.router(),
        };
        Service {
            gw: self.clone(),
            other,
            peer: None,
        }
    }

    /// Stops every stdio child.
    pub fn shutdown_upstreams(&self) {
        for r in self.routes.values() {
            if let UpstreamRuntime::Stdio(s) = &r.upstream {
                s.shutdown();
            }
        }
    }
}

/// See [`Gateway::service`].
#[derive(Debug, Clone)]
pub struct Service {
    gw: Arc<Gateway>,
    other: axum::Router,
    /// The connection's peer: [`serve`] gives each connection its own
    /// clone, so MCP requests learn it without a per-request extension
    /// (a map and a box allocated per request); the router's requests get
    /// it as axum's `ConnectInfo`.
    peer: Option<std::net::SocketAddr>,
}

impl<B> tower::Service<Request<B>> for Service
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut req = req.map(Body::new);
        let peer = self.peer.map(|p| p.ip());
        if let Some(route) = self.gw.routes.get(req.uri().path()) {
            let (gw, route) = (self.gw.clone(), route.clone());
            return Box::pin(async move { Ok(endpoint::handle(gw, route, req, peer).await) });
        }
        if let Some(p) = self.peer {
            req.extensions_mut().insert(axum::extract::ConnectInfo(p));
        }
        let mut other = self.other.clone();
        Box::pin(async move { tower::Service::call(&mut other, req).await })
    }
}

async fn dispatch(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response<Body> {
    let path = req.uri().path();
    if let Some(route) = gw.routes.get(path) {
        let route = route.clone();
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        return endpoint::handle(gw, route, req, peer).await;
    }
    if path == "/healthz" {
        return (StatusCode::OK, "ok\n").into_response();
    }
    if path == "/readyz" {
        return match gw.store.ping().await {
            Ok(()) if !gw.routes.is_empty() => (StatusCode::OK, "ready\n").into_response(),
            Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "no routes configured\n").into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "storage not reachable");
                (StatusCode::SERVICE_UNAVAILABLE, "storage unreachable\n").into_response()
            }
        };
    }
    if let Some(rest) = path.strip_prefix(metadata::PRM_PREFIX) {
        let route_path = if rest.is_empty() { "/" } else { rest };
        if let Some(route) = gw.routes.get(route_path)
            && route.config.auth == AuthMode::Oauth
        {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return StatusCode::METHOD_NOT_ALLOWED.into_response();
            }
            let doc = metadata::document(route, &gw.authorization_servers());
            let mut resp = axum::Json(doc).into_response();
            // Public, non-credentialed document: browser-based clients
            // must be able to read it.
            resp.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            return resp;
        }
    }
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "not_found"})),
    )
        .into_response()
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and gives in-flight requests up to `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    service: Service,
    max_header_bytes: usize,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;

    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(max_header_bytes.max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // The peer address, for throttling and audit.
                let mut svc = service.clone();
                svc.peer = Some(peer);
                let svc = hyper_util::service::TowerToHyperService::new(svc);
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
}

/// Serves the metrics text on its own listener.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "metrics listener stopped");
    }
}
