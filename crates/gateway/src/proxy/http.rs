//! Streamable HTTP upstreams (2025-11-25 and 2026-07-28 transports).
//!
//! Requests are forwarded with the client's body bytes unchanged. Responses
//! are streamed: the client gets the upstream's status and headers as soon
//! as they arrive (SDK clients wait for them before anything else), event
//! streams are never buffered (`X-Accel-Buffering: no`) and have no overall
//! timeout, and dropping the client's response (a disconnect) drops the
//! upstream response, which closes that upstream connection.
//!
//! [`HttpUpstream::forward`] chooses the client: `http://` upstreams get
//! the gateway's own HTTP/1.1 client ([`super::h1`]: the event stream a
//! client opens with `GET` on a connection of its own, which holds far
//! less memory per idle stream, everything else on pooled keep-alive
//! connections, which costs less CPU per request); `https://` upstreams
//! hyper's pooled client with rustls.

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{STRIPPED_RESPONSE_HEADERS, Tracked, h1};
use crate::error::Reject;
use crate::filter::{SseFilter, filter_json_body};
use crate::metrics::Metrics;

pub type Client =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// How long a TCP connection to an upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest JSON response read whole when it must be rewritten.
const MAX_REWRITE: usize = 16 * 1024 * 1024;

/// Builds the shared upstream client (HTTP/1.1, TLS with the system roots).
pub fn client() -> Result<Client, std::io::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(https),
    )
}

#[derive(Debug)]
pub struct HttpUpstream {
    uri: Uri,
    client: Client,
    /// Keep-alive connections of the gateway's own client (`http://` only).
    pool: Option<std::sync::Arc<h1::Pool>>,
    timeout: Duration,
    /// The upstream request's `Host`, made once.
    host: Option<HeaderValue>,
}

/// The identity header names, parsed once from the configuration.
#[derive(Debug, Clone)]
pub struct IdentityNames {
    pub subject: HeaderName,
    pub client_id: HeaderName,
    pub scopes: HeaderName,
}

impl IdentityNames {
    pub fn new(h: &mcpgate_core::config::IdentityHeaders) -> Result<Self, String> {
        let parse = |key: &str, v: &str| {
            HeaderName::try_from(v)
                .map_err(|_| format!("identity_headers.{key} {v:?} is not a valid header name"))
        };
        Ok(Self {
            subject: parse("subject", &h.subject)?,
            client_id: parse("client_id", &h.client_id)?,
            scopes: parse("scopes", &h.scopes)?,
        })
    }
}

/// What the caller is, as told to the upstream.
#[derive(Debug)]
pub struct Identity<'a> {
    pub headers: &'a IdentityNames,
    /// The values, made once per principal; `None` (a route without
    /// authentication) sets no identity header.
    pub values: Option<&'a crate::authn::HeaderValues>,
}

pub use crate::filter::ListFilter;

impl HttpUpstream {
    pub fn new(url: &str, client: Client, timeout_secs: u64) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("upstream_url {url:?}: {e}"))?;
        let pool = (uri.scheme() == Some(&http::uri::Scheme::HTTP)).then(h1::Pool::new);
        let host = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        Ok(Self {
            uri,
            client,
            pool,
            timeout: Duration::from_secs(timeout_secs),
            host,
        })
    }

    /// Forwards one request and returns the upstream's response (streaming).
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        method: Method,
        mut out: HeaderMap,
        body: Bytes,
        identity: &Identity<'_>,
        filter: Option<ListFilter>,
        metrics: &Metrics,
        route: &crate::metrics::RouteName,
    ) -> Result<Response<Body>, Reject> {
        upstream_request_headers(&mut out, identity);
        if let Some(host) = &self.host {
            out.insert(header::HOST, host.clone());
        }

        let started = Instant::now();
        let observe_latency = || {
            metrics
                .upstream_latency
                .get_or_create(&crate::metrics::RouteLabels {
                    route: route.clone(),
                })
                .observe(started.elapsed().as_secs_f64());
        };
        if let Some(pool) = &self.pool {
            let resp = if filter.is_none() && h1::applies(&method, &out, &body, &self.uri) {
                self.bounded(h1::request(&self.uri, &out, CONNECT_TIMEOUT))
                    .await?
            } else {
                self.bounded(h1::exchange(
                    pool,
                    &self.uri,
                    &method,
                    &out,
                    &body,
                    CONNECT_TIMEOUT,
                ))
                .await?
            };
            observe_latency();
            return respond(resp, filter, metrics, started + self.timeout).await;
        }

        let mut req = Request::builder()
            .method(method)
            .uri(self.uri.clone())
            .body(Body::from(body))
            .map_err(|e| Reject::Upstream(e.to_string()))?;
        *req.headers_mut() = out;
        let resp = self.bounded(self.client.request(req)).await?;
        observe_latency();
        respond(resp, filter, metrics, started + self.timeout).await
    }

    /// Runs `call` (up to the upstream's response head) within the route's
    /// upstream timeout; its failure is the upstream's.
    ///
    /// A combinator, not an `async fn`: an `async fn` would keep `call`
    /// both as its argument and inside the `Timeout` it awaits, doubling
    /// the exchange's share of every request's future (which is moved whole
    /// into its box in `Service::call`).
    fn bounded<T, E: std::fmt::Display>(
        &self,
        call: impl Future<Output = Result<T, E>>,
    ) -> impl Future<Output = Result<T, Reject>> {
        futures_util::FutureExt::map(tokio::time::timeout(self.timeout, call), |r| {
            r.map_err(|_| Reject::UpstreamTimeout)?
                .map_err(|e| Reject::Upstream(e.to_string()))
        })
    }
}

/// Turns the upstream's response into the client's: hop-by-hop headers
/// removed, `tools/list` (and the like) filtered, event streams unbuffered
/// and counted while open. A JSON answer that must be read whole to be
/// filtered is read by `deadline` (the upstream timeout, counted from the
/// request), or the client gets a 504.
async fn respond<B>(
    resp: Response<B>,
    filter: Option<ListFilter>,
    metrics: &Metrics,
    deadline: Instant,
) -> Result<Response<Body>, Reject>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (mut parts, incoming) = resp.into_parts();
    for name in super::connection_listed(&parts.headers) {
        parts.headers.remove(&name);
    }
    for h in STRIPPED_RESPONSE_HEADERS {
        parts.headers.remove(*h);
    }
    let is_sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));

    let body = match filter {
        Some(ListFilter { id, kind, keep }) if is_json && parts.status.is_success() => {
            let bytes = tokio::time::timeout_at(
                deadline.into(),
                http_body_util::Limited::new(incoming, MAX_REWRITE).collect(),
            )
            .await
            .map_err(|_| Reject::UpstreamTimeout)?
            .map_err(|e| Reject::Upstream(e.to_string()))?
            .to_bytes();
            parts.headers.remove(header::CONTENT_LENGTH);
            match filter_json_body(&bytes, &id, kind, &keep) {
                Some(v) => Body::from(v),
                None => Body::from(bytes),
            }
        }
        Some(ListFilter { id, kind, keep }) if is_sse => {
            parts.headers.remove(header::CONTENT_LENGTH);
            let state = (
                incoming.into_data_stream(),
                SseFilter::new(id, kind, keep),
                false,
            );
            let stream = futures_util::stream::unfold(state, |(mut s, mut f, ended)| async move {
                if ended {
                    return None;
                }
                match s.next().await {
                    Some(Ok(chunk)) => {
                        let out = Bytes::from(f.push(&chunk));
                        Some((Ok(out), (s, f, false)))
                    }
                    Some(Err(e)) => Some((Err(e), (s, f, true))),
                    None => {
                        let rest = Bytes::from(f.finish());
                        Some((Ok(rest), (s, f, true)))
                    }
                }
            });
            Body::new(Tracked::new(
                http_body_util::StreamBody::new(stream.map(|r| r.map(http_body::Frame::data)))
                    .boxed_unsync(),
                metrics.active_streams.clone(),
            ))
        }
        _ if is_sse => Body::new(Tracked::new(incoming, metrics.active_streams.clone())),
        _ => Body::new(incoming),
    };
    if is_sse {
        parts.headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
    }
    Ok(Response::from_parts(parts, body))
}

/// Turns the client's headers into the upstream request's, in place (no
/// copy of the map, its names or its values): hop-by-hop headers,
/// credentials and any header claiming to carry the gateway's identity are
/// removed, then the identity headers are set from the authenticated
/// principal.
pub fn upstream_request_headers(headers: &mut HeaderMap, identity: &Identity<'_>) {
    let n = identity.headers;
    for name in super::connection_listed(headers) {
        headers.remove(&name);
    }
    // A `HeaderMap` cannot be filtered in place; a request has a handful of
    // headers and one or two to remove, so this finds them one at a time
    // rather than collecting their names into a list.
    while let Some(name) = headers
        .keys()
        .find(|k| super::is_stripped_request_header(k.as_str()) || impersonates(k, n))
        .cloned()
    {
        headers.remove(&name);
    }
    for name in [&n.subject, &n.client_id, &n.scopes] {
        headers.remove(name);
    }
    let Some(values) = identity.values else {
        return;
    };
    for (name, value) in [
        (&n.subject, &values.subject),
        (&n.client_id, &values.client_id),
        (&n.scopes, &values.scopes),
    ] {
        if let Some(v) = value {
            headers.insert(name.clone(), v.clone());
        }
    }
}

/// Whether `name` has a `_` and, read with `-` in its place, is an
/// identity header or one the gateway strips. CGI-style servers (CGI,
/// WSGI, PHP, Rack) expose `X-MCP-Subject` and `X_MCP_Subject` as the same
/// variable, `HTTP_X_MCP_SUBJECT`: behind them the client's
/// `X_MCP_Subject` would read as the gateway's word wherever the gateway
/// sets no `X-MCP-Subject` of its own (a route without authentication, an
/// API key without a client id). Names without `_`, nearly all, cost one
/// byte scan.
fn impersonates(name: &HeaderName, n: &IdentityNames) -> bool {
    let s = name.as_str();
    if !s.contains('_') {
        return false;
    }
    let dashed = s.replace('_', "-");
    super::is_stripped_request_header(&dashed)
        || [&n.subject, &n.client_id, &n.scopes]
            .iter()
            .any(|h| h.as_str() == dashed)
}
