//! The benchmark's upstream: the cheapest Streamable HTTP MCP server that
//! still speaks the protocol, so the proxies' cost is what the run shows.
//!
//! - `POST` with a JSON-RPC request: `200 application/json` with a
//!   `tools/call` result echoing the request's `id` (notifications and
//!   responses: `202`);
//! - `GET` with `Accept: text/event-stream`: `200 text/event-stream`, the
//!   headers are sent at once and then nothing, until the client goes away;
//! - anything else: `405`.
//!
//! It runs in its own process so that it never shares a runtime (or a
//! file-descriptor limit) with the proxies or the load generator. On start it
//! prints `listening ADDR` on stdout; the parent reads that line.

use std::convert::Infallible;
use std::io::Write as _;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use tokio::net::TcpListener;

#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Runtime threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

type Idle = futures_util::stream::Pending<Result<Frame<Bytes>, Infallible>>;
type UpBody = Either<Full<Bytes>, StreamBody<Idle>>;

pub fn main(args: &UpstreamArgs) -> anyhow::Result<bool> {
    crate::proc::raise_nofile_limit();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("starting the upstream runtime")?;
    rt.block_on(serve(args.port))?;
    Ok(true)
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {}", listener.local_addr()?)?;
    out.flush()?;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("upstream: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle));
        tokio::spawn(async move {
            // Clients going away mid-stream is the normal end of an SSE GET.
            let _ = conn.await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<UpBody>, Infallible> {
    Ok(match *req.method() {
        Method::POST => post(req).await,
        Method::GET
            if req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/event-stream")) =>
        {
            sse()
        }
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, ""),
    })
}

async fn post(req: Request<Incoming>) -> Response<UpBody> {
    let Ok(body) = req.into_body().collect().await.map(|c| c.to_bytes()) else {
        return plain(StatusCode::BAD_REQUEST, "");
    };
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        method: Option<&'a str>,
    }
    let Ok(env) = serde_json::from_slice::<Envelope<'_>>(&body) else {
        return json(
            StatusCode::BAD_REQUEST,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#
                .to_owned(),
        );
    };
    let (Some(id), Some(_)) = (env.id, env.method) else {
        return plain(StatusCode::ACCEPTED, "");
    };
    json(
        StatusCode::OK,
        format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"content":[{{"type":"text","text":"ok"}}],"isError":false}}}}"#,
            id.get()
        ),
    )
}

fn sse() -> Response<UpBody> {
    let mut resp = Response::new(Either::Right(StreamBody::new(
        futures_util::stream::pending(),
    )));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    resp
}

fn json(status: StatusCode, body: String) -> Response<UpBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn plain(status: StatusCode, body: &'static str) -> Response<UpBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(body.as_bytes()))));
    *resp.status_mut() = status;
    resp
}
