//! The load generator: N keep-alive HTTP/1.1 connections, each sending the
//! same `tools/call` POST again as soon as the previous answer's body is
//! read (a closed loop), with per-request latency recorded.
//!
//! Only requests that complete inside the measured window count, both for
//! throughput and for latency; the warm-up runs on the same connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The request body every connection sends.
pub const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello from mcpgate-bench"}}}"#;
/// The protocol version announced (a 2025-11-25 client: no SEP-2243 headers).
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// Where to send the load.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub path: String,
    pub bearer: Option<String>,
}

impl Target {
    /// The headers of the benchmark's POST to this target.
    pub fn headers(&self) -> anyhow::Result<HeaderMap> {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(&self.addr.to_string())?);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert(
            "mcp-protocol-version",
            HeaderValue::from_static(PROTOCOL_VERSION),
        );
        if let Some(t) = &self.bearer {
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {t}"))?,
            );
        }
        Ok(h)
    }
}

/// What one measured run produced.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Successful (2xx) requests completed in the window.
    pub ok: u64,
    /// Non-2xx answers and failed requests, warm-up included.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Sorted latencies of successful requests, in nanoseconds.
    pub latencies_ns: Vec<u64>,
}

impl LoadResult {
    pub fn req_per_sec(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_ns.is_empty() {
            return f64::NAN;
        }
        let n = self.latencies_ns.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let i = rank.clamp(1, n) - 1;
        self.latencies_ns[i] as f64 / 1e6
    }
}

#[derive(Debug, Default)]
struct ConnStats {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_ns: Vec<u64>,
}

/// Runs `connections` closed-loop connections against `target` from now
/// until `end`; requests completing from `start` on are measured.
pub async fn run(
    target: &Target,
    connections: usize,
    start: Instant,
    end: Instant,
) -> anyhow::Result<LoadResult> {
    let headers = Arc::new(target.headers()?);
    let body = Bytes::from_static(TOOLS_CALL.as_bytes());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (addr, path, headers, body) = (
            target.addr,
            target.path.clone(),
            headers.clone(),
            body.clone(),
        );
        tasks.spawn(connection(addr, path, headers, body, start, end));
    }
    let mut total = ConnStats::default();
    while let Some(r) = tasks.join_next().await {
        let s = r.context("load task panicked")?;
        total.ok += s.ok;
        total.errors += s.errors;
        if total.first_error.is_none() {
            total.first_error = s.first_error;
        }
        total.latencies_ns.extend(s.latencies_ns);
    }
    total.latencies_ns.sort_unstable();
    Ok(LoadResult {
        ok: total.ok,
        errors: total.errors,
        first_error: total.first_error,
        elapsed: end.saturating_duration_since(start),
        latencies_ns: total.latencies_ns,
    })
}

async fn connection(
    addr: SocketAddr,
    path: String,
    headers: Arc<HeaderMap>,
    body: Bytes,
    start: Instant,
    end: Instant,
) -> ConnStats {
    let mut stats = ConnStats {
        latencies_ns: Vec::with_capacity(1 << 16),
        ..ConnStats::default()
    };
    'reconnect: while Instant::now() < end {
        let mut sender = match connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                fail(&mut stats, format!("connect: {e:#}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            if Instant::now() >= end {
                break 'reconnect;
            }
            let mut req = Request::new(Full::new(body.clone()));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = match path.parse() {
                Ok(u) => u,
                Err(e) => {
                    fail(&mut stats, format!("bad path: {e}"));
                    break 'reconnect;
                }
            };
            *req.headers_mut() = (*headers).clone();
            if sender.ready().await.is_err() {
                fail(&mut stats, "connection closed".into());
                continue 'reconnect;
            }
            let t0 = Instant::now();
            let resp = match sender.send_request(req).await {
                Ok(r) => r,
                Err(e) => {
                    fail(&mut stats, format!("request: {e}"));
                    continue 'reconnect;
                }
            };
            let status = resp.status();
            let collected = resp.into_body().collect().await;
            let t1 = Instant::now();
            let in_window = t1 >= start && t1 < end;
            match collected {
                // Counted in the warm-up too: any refusal makes the run invalid.
                Ok(b) if !status.is_success() => {
                    let b = b.to_bytes();
                    let snippet = String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned();
                    fail(&mut stats, format!("HTTP {status}: {snippet}"));
                }
                Ok(_) if in_window => {
                    stats.ok += 1;
                    stats.latencies_ns.push((t1 - t0).as_nanos() as u64);
                }
                Ok(_) => {}
                Err(e) => {
                    fail(&mut stats, format!("reading body: {e}"));
                    continue 'reconnect;
                }
            }
        }
    }
    stats
}

fn fail(stats: &mut ConnStats, what: String) {
    stats.errors += 1;
    if stats.first_error.is_none() {
        stats.first_error = Some(what);
    }
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let r = LoadResult {
            ok: 100,
            errors: 0,
            first_error: None,
            elapsed: Duration::from_secs(1),
            latencies_ns: (1..=100).map(|i| i * 1_000_000).collect(),
        };
        assert_eq!(r.percentile_ms(50.0), 50.0);
        assert_eq!(r.percentile_ms(99.0), 99.0);
        assert_eq!(r.percentile_ms(100.0), 100.0);
        assert_eq!(r.req_per_sec(), 100.0);
    }
}
