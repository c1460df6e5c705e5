//! Idle SSE streams: many `GET` event streams held open through a proxy,
//! each confirmed by its `200` and `text/event-stream` headers,
//! while the proxy's resident memory is read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::load::PROTOCOL_VERSION;

/// Streams being opened at the same time (the listen backlog is the limit
/// that matters; this stays well under it).
const OPENING_AT_ONCE: usize = 256;

/// An open stream: dropping it closes the connection.
#[derive(Debug)]
pub struct Stream {
    _sender: SendRequest<Empty<Bytes>>,
    _response: http::Response<Incoming>,
}

/// Opens `n` streams to `addr` `path`; fails on the first stream refused.
pub async fn open(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    n: usize,
) -> anyhow::Result<Vec<Stream>> {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_str(&addr.to_string())?);
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        "mcp-protocol-version",
        HeaderValue::from_static(PROTOCOL_VERSION),
    );
    if let Some(t) = bearer {
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {t}"))?,
        );
    }
    let headers = Arc::new(headers);
    let path: Arc<str> = path.into();
    let permits = Arc::new(tokio::sync::Semaphore::new(OPENING_AT_ONCE));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await?;
        let (headers, path) = (headers.clone(), path.clone());
        tasks.spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(30), one(addr, &path, &headers))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no response headers within 30s")));
            drop(permit);
            r.with_context(|| format!("stream {i}"))
        });
    }
    let mut streams = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        streams.push(r.context("stream task panicked")??);
    }
    Ok(streams)
}

async fn one(addr: SocketAddr, path: &str, headers: &HeaderMap) -> anyhow::Result<Stream> {
    let stream = TcpStream::connect(addr).await.context("connect")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::new(Empty::new());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = path.parse()?;
    *req.headers_mut() = headers.clone();
    let resp = sender.send_request(req).await.context("GET")?;
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if resp.status() != StatusCode::OK || !ct.starts_with("text/event-stream") {
        bail!("answered {} with content-type {ct:?}", resp.status());
    }
    Ok(Stream {
        _sender: sender,
        _response: resp,
    })
}
