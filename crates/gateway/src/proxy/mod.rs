//! Forwarding to upstream MCP servers: Streamable HTTP ([`http`]) and stdio
//! programs ([`stdio`]).

pub mod h1;
pub mod http;
pub mod stdio;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::gauge::Gauge;

/// Request headers that never cross the gateway: hop-by-hop (RFC 9110
/// §7.6.1), `host` and `content-length` (set for the upstream request), and
/// the client's credentials (MCP "Token Passthrough": the upstream never
/// sees the client's token, cookies or DPoP proof). A `match`, not a list
/// scan: it runs for every header of every request.
pub fn is_stripped_request_header(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "authorization"
            | "cookie"
            | "dpop"
    )
}

/// The header fields a message's `Connection` field names: hop-by-hop
/// for this connection only, so an intermediary removes them (RFC 9110
/// §7.6.1), in both directions. Empty, without allocating, when there is
/// no `Connection` field. Tokens that are not header names are skipped.
pub fn connection_listed(headers: &::http::HeaderMap) -> Vec<::http::HeaderName> {
    headers
        .get_all(::http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| ::http::HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

pub const STRIPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A body that keeps a gauge raised while it is alive (open streams).
#[derive(Debug)]
pub struct Tracked<B> {
    inner: B,
    gauge: Gauge,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, gauge: Gauge) -> Self {
        gauge.inc();
        Self { inner, gauge }
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_hop_by_hop_headers_are_stripped() {
        for h in [
            "authorization",
            "cookie",
            "dpop",
            "proxy-authorization",
            "connection",
            "transfer-encoding",
            "host",
            "content-length",
        ] {
            assert!(is_stripped_request_header(h), "{h}");
        }
        assert!(!is_stripped_request_header("accept"));
        assert!(!is_stripped_request_header("mcp-session-id"));
    }
}
