//! A hand-written HTTP/1.1 client for `http://` upstreams (https upstreams
//! keep using hyper and rustls).
//!
//! Two uses:
//!
//! - [`request`]: the long-lived event stream a client opens with `GET`
//!   and `Accept: text/event-stream` (the Streamable HTTP transport's
//!   server-to-client stream), on a connection of its own with
//!   `Connection: close`. Why not hyper: its client keeps about 25 KiB of
//!   fixed buffers per connection for as long as the response lives (an
//!   8 KiB read buffer, an 8 KiB header write buffer and an 8.4 KiB block
//!   of the legacy client's dispatch channel), and an idle event stream
//!   lives for hours: with 10,000 of them open, those buffers were the
//!   largest part of the gateway's memory. Here an open stream holds its
//!   socket and a few words of framing state. Nothing is buffered while it
//!   is idle: each read goes through a buffer on the stack and is handed
//!   on as one `Bytes` frame.
//! - [`exchange`]: every other request (the `POST`s that carry MCP
//!   messages), on keep-alive connections from a [`Pool`]. Why not hyper:
//!   its pooled client runs each connection as a task of its own, so every
//!   request crosses two channels and two task wake-ups (request to the
//!   connection task, response and body back), plus the pool's checkout
//!   and key hashing; here the request's own task writes the request and
//!   reads the answer, which cost measurably less CPU per proxied request
//!   (see `crates/bench/README.md`).
//!
//! It speaks only what these requests need (RFC 9112): one request at a
//! time per connection (no pipelining), a response head of at most
//! [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields (interim 1xx responses
//! skipped), and a body delimited by `Content-Length`, by `chunked` (§7.1,
//! [`ChunkedDecoder`]) or by the connection's close (§6.3). A connection
//! goes back to the pool only when its response was read to its exact end
//! under HTTP/1.1 without `Connection: close`. A body that arrived whole
//! with its head (the usual JSON answer) is taken off the connection at
//! once, and the connection goes back to the pool before the body is
//! relayed: the gateway holds a response until its audit record is
//! durable, and the upstream connection should not wait with it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

/// Largest response head read (status line and fields).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in a response head (hyper's default too).
pub const MAX_HEADERS: usize = 100;
/// Largest read from the upstream socket, through a buffer on the stack.
const READ_CHUNK: usize = 4096;
/// Longest chunk-size line's extensions, and trailer section, skipped.
const MAX_CHUNK_METADATA: usize = 4096;

/// Whether [`request`] serves this request: a bodiless `GET` that accepts
/// an event stream, to a plain-HTTP upstream.
pub fn applies(method: &Method, headers: &HeaderMap, body: &[u8], uri: &Uri) -> bool {
    *method == Method::GET
        && body.is_empty()
        && uri.scheme() == Some(&http::uri::Scheme::HTTP)
        && headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|range| {
                range
                    .split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
            })
}

/// Sends `GET uri` with exactly `headers` (`Host` included) on a new
/// connection and reads the response head. The caller bounds the whole
/// call with the route's upstream timeout; the body has no timeout.
pub async fn request(
    uri: &Uri,
    headers: &HeaderMap,
    connect_timeout: Duration,
) -> Result<http::Response<RelayBody>, io::Error> {
    let mut stream = connect(uri, connect_timeout).await?;
    let mut head = Vec::with_capacity(256);
    request_head(&mut head, &Method::GET, uri, headers);
    head.extend_from_slice(b"connection: close\r\n\r\n");
    stream.write_all(&head).await?;
    drop(head);

    let (mut parts, rest) = read_head(&mut stream).await?;
    let framing = framing(&parts)?;
    if matches!(framing, Framing::Chunked(_) | Framing::Close) {
        // Re-framed towards the client: a length sent beside
        // `Transfer-Encoding` must not reach it (RFC 9112 §6.3 item 3).
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    Ok(http::Response::from_parts(
        parts,
        RelayBody {
            stream: Some(stream),
            pending: rest,
            ready: Bytes::new(),
            framing,
            pool: None,
        },
    ))
}

/// Idle keep-alive connections to one upstream, newest last: each with
/// when it went idle and how long it may stay so.
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
    max_idle: Duration,
}

/// Idle connections kept per upstream at most. Each one closed for want
/// of room leaves a socket in TIME-WAIT for a minute, and enough of them
/// exhaust the ephemeral ports towards that upstream: with 256 (hyper's
/// setting, kept at first), 1,024 concurrent clients made the bench's
/// gateway close ~300–500 connections a second; with 1,024, none.
const MAX_IDLE: usize = 1024;
/// An idle connection older than this is closed rather than reused (the
/// upstream may have given up on it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How much sooner than the upstream's announced `Keep-Alive: timeout` a
/// connection stops being reused: the upstream closes it at that moment,
/// and a `POST` sent as it does is lost (see [`exchange`]).
const KEEP_ALIVE_MARGIN: Duration = Duration::from_secs(1);

/// An idle connection older than this is checked with a system call
/// before reuse (see [`looks_open`]).
const PEEK_AFTER: Duration = Duration::from_secs(1);

/// Whether an idle connection is still open with nothing unasked on it.
///
/// Tokio's `try_read` answers from the readiness its I/O driver last saw,
/// without a system call when that says "not readable": a close (or stray
/// bytes) that arrived since, but that the driver has not yet handled, is
/// missed. A `POST` sent on such a connection fails and is not sent again
/// (see [`exchange`]), so a connection that has been idle long enough for
/// the upstream to have closed it (servers close idle connections after
/// seconds: Node.js after 5) is asked of the kernel with `MSG_PEEK`. A
/// connection reused within `PEEK_AFTER`, as every one is under load,
/// keeps the free check.
fn looks_open(stream: &TcpStream, ask_kernel: bool) -> bool {
    let mut probe = [0u8; 1];
    let cached = stream.try_read(&mut probe);
    if !matches!(&cached, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
        return false;
    }
    if !ask_kernel {
        return true;
    }
    let mut peek = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(
        socket2::SockRef::from(stream).peek(&mut peek),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    )
}

impl Pool {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The newest idle connection that still looks open: the upstream has
    /// not closed it or sent anything unasked.
    fn take(&self) -> Option<TcpStream> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(Idle {
            stream,
            since,
            max_idle,
        }) = idle.pop()
        {
            let idle_for = since.elapsed();
            if idle_for > IDLE_TIMEOUT {
                // The rest are older still.
                idle.clear();
                return None;
            }
            if idle_for <= max_idle && looks_open(&stream, idle_for >= PEEK_AFTER) {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps `stream` for reuse for up to `max_idle`, closing the
    /// connections that have been idle too long (the oldest come first).
    fn put(&self, stream: TcpStream, max_idle: Duration) {
        if max_idle.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = idle
            .iter()
            .take_while(|c| now.duration_since(c.since) > c.max_idle)
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                stream,
                since: now,
                max_idle,
            });
        }
    }
}

/// How long a connection may stay idle before reuse, from the answer's
/// `Keep-Alive: timeout=N` (RFC 2068 §19.7.1.1, still sent by Node.js,
/// whose servers close idle connections after 5 s): [`KEEP_ALIVE_MARGIN`]
/// less than announced, and never more than [`IDLE_TIMEOUT`]. Zero means
/// the connection is not kept. A malformed header is ignored.
fn max_idle(headers: &HeaderMap) -> Duration {
    let announced = headers
        .get_all(HeaderName::from_static("keep-alive"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("timeout")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())?
        })
        .min();
    announced.map_or(IDLE_TIMEOUT, |secs| {
        Duration::from_secs(secs)
            .saturating_sub(KEEP_ALIVE_MARGIN)
            .min(IDLE_TIMEOUT)
    })
}

/// Sends `method uri` with exactly `headers` (`Host` included) and `body`
/// on a pooled connection (or a new one) and reads the response head; the
/// body is read as the client consumes it, and the connection returns to
/// `pool` at its end. The caller bounds the whole call with the route's
/// upstream timeout.
///
/// A reused connection may have been closed by the upstream (it may close
/// an idle connection at any moment). The request is sent once more, on a
/// new connection, only when the upstream cannot have acted on it: when
/// writing it failed, or when the method is idempotent and nothing of a
/// response (not even an interim one) arrived. A `POST` the upstream may
/// have read is never sent twice (RFC 9110 §9.2.2: "A proxy MUST NOT
/// automatically retry non-idempotent requests"): a tool call may have
/// run; the client gets the error and decides.
pub async fn exchange(
    pool: &Arc<Pool>,
    uri: &Uri,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    connect_timeout: Duration,
) -> Result<http::Response<RelayBody>, io::Error> {
    let mut message = Vec::with_capacity(256 + body.len());
    request_head(&mut message, method, uri, headers);
    if !body.is_empty() || *method == Method::POST {
        message.extend_from_slice(b"content-length: ");
        message.extend_from_slice(body.len().to_string().as_bytes());
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(body);

    let mut reused = pool.take();
    loop {
        let was_reused = reused.is_some();
        let mut stream = match reused.take() {
            Some(stream) => stream,
            None => connect(uri, connect_timeout).await?,
        };
        let head = match stream.write_all(&message).await {
            Ok(()) => read_head(&mut stream).await.map_err(|e| (e, true)),
            Err(e) => Err((e, false)),
        };
        let (mut parts, rest) = match head {
            Ok(head) => head,
            Err((e, written))
                if was_reused
                    && closed_before_answering(&e)
                    && (!written || is_idempotent(method)) =>
            {
                continue;
            }
            Err((e, _)) => return Err(e),
        };
        let framing = framing(&parts)?;
        if matches!(framing, Framing::Chunked(_) | Framing::Close) {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        let reusable = parts.version == Version::HTTP_11
            && !matches!(framing, Framing::Close)
            && !parts
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        let mut body = RelayBody {
            stream: Some(stream),
            pending: rest,
            ready: Bytes::new(),
            framing,
            pool: reusable.then(|| (pool.clone(), max_idle(&parts.headers))),
        };
        // A body that is already complete (none, or read with the head)
        // frees its connection now: the client's side may never poll it,
        // or only after a wait (the audit record's commit).
        body.take_complete();
        body.release();
        return Ok(http::Response::from_parts(parts, body));
    }
}

/// Appends the request line and `headers` (the blank line that ends the
/// head is the caller's).
fn request_head(out: &mut Vec<u8>, method: &Method, uri: &Uri, headers: &HeaderMap) {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The errors of a connection the peer had already closed when the request
/// was written to it: nothing of a response was read.
/// (`read_head` reports an error after part of a head as invalid data.)
fn closed_before_answering(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// RFC 9110 §9.2.2.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

const NO_RESPONSE: &str = "upstream closed the connection before a response";

async fn connect(uri: &Uri, connect_timeout: Duration) -> Result<TcpStream, io::Error> {
    let host = uri
        .host()
        .ok_or_else(|| invalid_input("upstream URL has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect((host, port)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads one final response head; returns it and the body bytes read
/// with it.
async fn read_head(stream: &mut TcpStream) -> Result<(http::response::Parts, Bytes), io::Error> {
    // Read straight into `buf`'s spare room: a stack buffer here would be
    // held across the await, so it would be part of every request's future
    // (which is moved into its box whole, in `Service::call`).
    let mut buf = Vec::with_capacity(2048);
    // Whether an interim (1xx) response was read: after one the upstream
    // has plainly received the request, so a close is no longer one "before
    // answering" (see `closed_before_answering`).
    let mut interim = false;
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(2048);
        }
        let nothing_read = buf.is_empty() && !interim;
        let n = match stream.read_buf(&mut buf).await {
            Ok(n) => n,
            Err(e) if nothing_read => return Err(e),
            Err(e) => return Err(invalid_data(format!("upstream response head: {e}"))),
        };
        if n == 0 {
            return Err(if nothing_read {
                io::Error::new(io::ErrorKind::UnexpectedEof, NO_RESPONSE)
            } else {
                invalid_data("upstream closed the connection inside the response head")
            });
        }
        while let Some((parts, len)) = parse_head(&buf)? {
            buf.drain(..len);
            if parts.status.is_informational() {
                interim = true;
                if parts.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(invalid_data("upstream switched protocols unasked"));
                }
                continue;
            }
            // Copied: the body's first bytes must not keep the head's
            // buffer alive for the stream's lifetime.
            return Ok((parts, Bytes::copy_from_slice(&buf)));
        }
        if buf.len() >= MAX_HEAD {
            return Err(invalid_data("upstream response head is too large"));
        }
    }
}

/// Parses a complete response head at the start of `buf`, with its length.
fn parse_head(buf: &[u8]) -> Result<Option<(http::response::Parts, usize)>, io::Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => {
            return Err(invalid_data("upstream response head is too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid_data(format!("upstream response head: {e}"))),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| invalid_data("upstream response has no valid status"))?;
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| invalid_data("upstream header name is invalid"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| invalid_data("upstream header value is invalid"))?;
        headers.append(name, value);
    }
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    parts.headers = headers;
    Ok(Some((parts, len)))
}

/// How the response body ends (RFC 9112 §6.3).
#[derive(Debug)]
enum Framing {
    /// This many bytes remain.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the upstream closes the connection.
    Close,
}

fn framing(parts: &http::response::Parts) -> Result<Framing, io::Error> {
    if parts.status == StatusCode::NO_CONTENT || parts.status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    if let Some(last) = parts
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let chunked = last
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            Framing::Chunked(ChunkedDecoder::default())
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    for v in parts.headers.get_all(header::CONTENT_LENGTH) {
        let n = v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| invalid_data("upstream Content-Length is invalid"))?;
        if length.is_some_and(|l| l != n) {
            return Err(invalid_data("upstream sent differing Content-Lengths"));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::Close, Framing::Length))
}

/// The upstream's response body. Dropping it (the client went away)
/// closes the upstream connection.
#[derive(Debug)]
pub struct RelayBody {
    /// `None` once the connection went back to the pool.
    stream: Option<TcpStream>,
    /// Bytes read but not yet decoded.
    pending: Bytes,
    /// The whole body, decoded, when it came with the head (see
    /// [`RelayBody::take_complete`]); empty once handed on.
    ready: Bytes,
    framing: Framing,
    /// Where the connection goes when the body was read to its exact end,
    /// and how long it may idle there (`None`: it is closed with the body).
    pool: Option<(Arc<Pool>, Duration)>,
}

impl Drop for RelayBody {
    fn drop(&mut self) {
        self.release();
    }
}

impl RelayBody {
    fn is_done(&self) -> bool {
        match &self.framing {
            Framing::Length(n) => *n == 0,
            Framing::Chunked(d) => d.is_done(),
            Framing::Close => false,
        }
    }

    /// If `pending` holds the whole body, decodes it into `ready`, leaving
    /// the framing at its end; bytes after the end make the connection
    /// unfit for reuse, as when they are met while relaying. A body not
    /// complete yet is left as it is, to be read as the client polls.
    fn take_complete(&mut self) {
        match &mut self.framing {
            Framing::Length(n) => {
                let Ok(len) = usize::try_from(*n) else { return };
                if len == 0 || self.pending.len() < len {
                    return;
                }
                self.ready = self.pending.split_to(len);
                *n = 0;
            }
            Framing::Chunked(decoder) => {
                // On a copy: committed only if the body ends in `pending`.
                let mut d = decoder.clone();
                let mut input = self.pending.clone();
                let mut data = BytesMut::new();
                loop {
                    match d.decode(&mut input) {
                        Ok(Some(piece)) => data.extend_from_slice(&piece),
                        Ok(None) => break,
                        // Reported when the client's side reads it.
                        Err(_) => return,
                    }
                }
                if !d.is_done() {
                    return;
                }
                *decoder = d;
                self.ready = data.freeze();
                self.pending = input;
            }
            Framing::Close => return,
        }
        self.body_ended();
    }

    /// At the end of the body: bytes read past it are dropped with the
    /// connection, which is then not reused (a second answer must never
    /// reach the next caller). An emptied `Bytes` would still hold its
    /// allocation, so `pending` is replaced.
    fn body_ended(&mut self) {
        if !self.pending.is_empty() {
            self.pool = None;
        }
        self.pending = Bytes::new();
    }

    /// Hands the connection back to the pool if the response was read to
    /// its exact end (nothing after it) and the connection may be reused.
    fn release(&mut self) {
        if self.is_done()
            && self.pending.is_empty()
            && let Some((pool, max_idle)) = self.pool.take()
            && let Some(stream) = self.stream.take()
        {
            pool.put(stream, max_idle);
        }
    }

    /// The next bytes from the socket; empty at its end.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(Ok(Bytes::new()));
        };
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(stream).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(Bytes::copy_from_slice(buf.filled())))
    }
}

impl http_body::Body for RelayBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if !this.ready.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(std::mem::take(&mut this.ready)))));
        }
        loop {
            if this.is_done() {
                this.release();
                return Poll::Ready(None);
            }
            if this.pending.is_empty() {
                let read = ready!(this.poll_read(cx))?;
                if read.is_empty() {
                    return Poll::Ready(match this.framing {
                        Framing::Close => None,
                        _ => Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "upstream closed the connection inside the body",
                        ))),
                    });
                }
                this.pending = read;
            }
            let data = match &mut this.framing {
                Framing::Close => std::mem::take(&mut this.pending),
                Framing::Length(remaining) => {
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(this.pending.len());
                    *remaining -= n as u64;
                    let data = this.pending.split_to(n);
                    if *remaining == 0 {
                        this.body_ended();
                    }
                    data
                }
                Framing::Chunked(decoder) => match decoder.decode(&mut this.pending)? {
                    Some(data) => data,
                    None => {
                        this.body_ended();
                        continue;
                    }
                },
            };
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        let ready = self.ready.len() as u64;
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n + ready),
            _ => {
                let mut hint = SizeHint::default();
                hint.set_lower(ready);
                hint
            }
        }
    }
}

/// Decodes the chunked transfer coding (RFC 9112 §7.1) incrementally, with
/// no buffer: data is handed on as slices of the input; chunk extensions
/// and trailer fields are skipped (at most [`MAX_CHUNK_METADATA`] bytes per
/// extension list or trailer section).
#[derive(Debug, Default, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// Extension or trailer bytes skipped so far on this line or section.
    skipped: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Before the first digit of a chunk size.
    #[default]
    SizeStart,
    /// In the chunk size, with its value so far.
    Size(u64),
    /// Whitespace after the size (BWS before `;`).
    SizeWhitespace(u64),
    /// After `;`: skipping to the line's CR.
    Extension(u64),
    SizeLf(u64),
    /// This many data bytes remain in the chunk.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final CRLF.
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes `input` up to the end of the next chunk data it holds and
    /// returns that data (a slice of `input`); `None` once `input` is used
    /// up or the body is complete (bytes after the end are left in
    /// `input`). A malformed coding is an `InvalidData` error.
    pub fn decode(&mut self, input: &mut Bytes) -> Result<Option<Bytes>, io::Error> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(None),
                _ if input.is_empty() => return Ok(None),
                ChunkState::Data(remaining) => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Some(input.split_to(n)));
                }
                state => {
                    let b = input[0];
                    input.advance(1);
                    self.state = self.step(state, b)?;
                }
            }
        }
    }

    /// The state after byte `b` outside chunk data.
    fn step(&mut self, state: ChunkState, b: u8) -> Result<ChunkState, io::Error> {
        use ChunkState as S;
        Ok(match (state, b) {
            (S::SizeStart, _) => S::Size(hex_digit(b)?),
            (S::Size(n) | S::SizeWhitespace(n), b'\r') => S::SizeLf(n),
            (S::Size(n) | S::SizeWhitespace(n), b' ' | b'\t') => S::SizeWhitespace(n),
            (S::Size(n) | S::SizeWhitespace(n), b';') => {
                self.skipped = 0;
                S::Extension(n)
            }
            (S::Size(n), _) => S::Size(
                n.checked_mul(16)
                    .zip(hex_digit(b).ok())
                    .and_then(|(n, d)| n.checked_add(d))
                    .ok_or_else(|| malformed("chunk size is not a hexadecimal u64"))?,
            ),
            (S::Extension(n), b'\r') => S::SizeLf(n),
            (S::Extension(_), b'\n') => return Err(malformed("bare LF in a chunk extension")),
            (S::Extension(n), _) => {
                self.skip()?;
                S::Extension(n)
            }
            (S::SizeLf(0), b'\n') => {
                self.skipped = 0;
                S::TrailerStart
            }
            (S::SizeLf(n), b'\n') => S::Data(n),
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataLf, b'\n') => S::SizeStart,
            (S::TrailerStart, b'\r') => S::EndLf,
            (S::Trailer, b'\r') => S::TrailerLf,
            (S::TrailerStart | S::Trailer, b'\n') => {
                return Err(malformed("bare LF in the trailer section"));
            }
            (S::TrailerStart | S::Trailer, _) => {
                self.skip()?;
                S::Trailer
            }
            (S::TrailerLf, b'\n') => S::TrailerStart,
            (S::EndLf, b'\n') => S::Done,
            // A missing CRLF, or a bad byte after the size; `decode`
            // handles `Data` and `Done` itself.
            _ => return Err(malformed("expected CRLF")),
        })
    }

    fn skip(&mut self) -> Result<(), io::Error> {
        self.skipped += 1;
        if self.skipped > MAX_CHUNK_METADATA {
            return Err(malformed("chunk extension or trailer section too long"));
        }
        Ok(())
    }
}

fn hex_digit(b: u8) -> Result<u64, io::Error> {
    char::from(b)
        .to_digit(16)
        .map(u64::from)
        .ok_or_else(|| malformed("chunk size is not a hexadecimal u64"))
}

fn malformed(what: &'static str) -> io::Error {
    invalid_data(format!("upstream chunked body: {what}"))
}

fn invalid_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn invalid_input(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A pooled connection is reused only if the kernel says it is open
    /// and quiet: a close or bytes nobody asked for, which Tokio's cached
    /// readiness may not have seen yet, rule it out.
    #[tokio::test]
    async fn kernel_check_sees_a_close_or_unasked_bytes_on_an_idle_connection() {
        use tokio::io::AsyncWriteExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for unasked in [None, Some(b"HTTP/1.1 200 OK\r\n".as_slice())] {
            let ours = TcpStream::connect(addr).await.unwrap();
            let (mut theirs, _) = listener.accept().await.unwrap();
            assert!(looks_open(&ours, true), "an open, quiet connection");
            match unasked {
                // Loopback delivers the FIN (or the bytes) within the call.
                None => drop(theirs),
                Some(bytes) => theirs.write_all(bytes).await.unwrap(),
            }
            assert!(!looks_open(&ours, true), "unasked: {unasked:?}");
        }
    }

    #[test]
    fn keep_alive_timeout_caps_how_long_a_connection_idles_in_the_pool() {
        let of = |v: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = v {
                h.insert("keep-alive", HeaderValue::from_str(v).unwrap());
            }
            max_idle(&h)
        };
        assert_eq!(of(None), IDLE_TIMEOUT);
        assert_eq!(of(Some("timeout=5")), Duration::from_secs(4));
        assert_eq!(of(Some("max=100, Timeout=5")), Duration::from_secs(4));
        assert_eq!(of(Some("timeout=1")), Duration::ZERO);
        assert_eq!(of(Some("timeout=0")), Duration::ZERO);
        assert_eq!(of(Some("timeout=100000")), IDLE_TIMEOUT);
        assert_eq!(of(Some("timeout=soon")), IDLE_TIMEOUT);
    }

    #[test]
    fn rfc9110_9_2_2_only_idempotent_methods_are_resent() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(is_idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&m), "{m}");
        }
    }

    /// Decodes `input` fed in pieces of `piece` bytes; the data and whether
    /// the body ended.
    fn decode(input: &[u8], piece: usize) -> Result<(Vec<u8>, bool), io::Error> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        for part in input.chunks(piece.max(1)) {
            let mut part = Bytes::copy_from_slice(part);
            while let Some(data) = d.decode(&mut part)? {
                out.extend_from_slice(&data);
            }
        }
        Ok((out, d.is_done()))
    }

    #[test]
    fn rfc9112_7_1_bytes_after_the_last_chunk_are_left_for_the_caller() {
        let mut d = ChunkedDecoder::default();
        let mut input = Bytes::from_static(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n");
        assert_eq!(d.decode(&mut input).unwrap().as_deref(), Some(&b"ok"[..]));
        assert_eq!(d.decode(&mut input).unwrap(), None);
        assert!(d.is_done());
        // What follows the body is not the body's: the connection that
        // carried it must not be reused (see `RelayBody`).
        assert_eq!(&input[..], b"HTTP/1.1 200 OK\r\n");
    }

    #[test]
    fn rfc9112_7_1_chunked_body_with_extensions_and_trailers() {
        let body = b"5\r\nhello\r\n7;name=\"v\" ; x\r\n, world\r\nA \r\n0123456789\r\n\
                     0\r\nexpires: never\r\nx: y\r\n\r\n";
        for piece in [1, 2, 3, 7, body.len()] {
            let (data, done) = decode(body, piece).unwrap();
            assert_eq!(data, b"hello, world0123456789", "pieces of {piece}");
            assert!(done, "pieces of {piece}");
        }
    }

    #[test]
    fn rfc9112_7_1_body_is_incomplete_until_the_last_chunk_and_final_crlf() {
        for partial in [
            &b"5\r\nhello\r\n"[..],
            b"5\r\nhel",
            b"0\r\n",
            b"0\r\nx: y\r\n",
        ] {
            assert!(!decode(partial, 64).unwrap().1, "{partial:?}");
        }
        assert!(decode(b"000\r\n\r\n", 64).unwrap().1);
    }

    #[test]
    fn rfc9112_7_1_malformed_chunk_sizes_are_errors() {
        for bad in [
            &b"\r\n"[..],             // no digits
            b"zz\r\nhi\r\n",          // not hexadecimal
            b"-1\r\n",                // sign
            b"0x5\r\nhello\r\n",      // prefix
            b"5 5\r\nhello\r\n",      // digits after whitespace
            b"5\nhello\r\n",          // bare LF
            b"5;ext\nhello\r\n",      // bare LF after an extension
            b"10000000000000000\r\n", // 2^64: overflows u64
            b"5\r\nhelloXX",          // no CRLF after the data
        ] {
            let e = decode(bad, 64).expect_err(&format!("{bad:?} must be refused"));
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
        assert!(decode(b"ffffffffffffffff\r\n", 64).is_ok(), "u64::MAX fits");
    }

    #[test]
    fn chunk_extensions_and_trailers_are_bounded() {
        let mut long_ext = b"1;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', MAX_CHUNK_METADATA + 1));
        assert!(decode(&long_ext, 512).is_err());
        let mut long_trailer = b"0\r\n".to_vec();
        long_trailer.extend(std::iter::repeat_n(b'a', MAX_CHUNK_METADATA + 1));
        assert!(decode(&long_trailer, 512).is_err());
    }

    /// A raw upstream: each connection answers every request it reads with
    /// `answer` in one write (and, if `late_body`, writes a 2-byte body
    /// only 100 ms later); returns its address and the connections
    /// accepted so far.
    async fn upstream(
        answer: &'static [u8],
        late_body: bool,
    ) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    // Each request is small and arrives in one read.
                    while s.read(&mut buf).await.unwrap_or(0) > 0 {
                        s.write_all(answer).await.unwrap();
                        if late_body {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            s.write_all(b"{}").await.unwrap();
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn post(pool: &Arc<Pool>, addr: std::net::SocketAddr) -> http::Response<RelayBody> {
        let uri: Uri = format!("http://{addr}/mcp").parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&addr.to_string()).unwrap(),
        );
        exchange(
            pool,
            &uri,
            &Method::POST,
            &headers,
            b"{}",
            Duration::from_secs(5),
        )
        .await
        .unwrap()
    }

    async fn body(resp: http::Response<RelayBody>) -> Bytes {
        use http_body_util::BodyExt as _;
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn rfc9112_9_3_a_body_that_came_with_its_head_frees_the_connection_before_it_is_read() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"[..],
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n"
                [..],
        ] {
            let (addr, accepted) = upstream(answer, false).await;
            let pool = Pool::new();
            let first = post(&pool, addr).await;
            // The first body is unread, yet its connection serves the next.
            let second = post(&pool, addr).await;
            assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
            assert!(!http_body::Body::is_end_stream(first.body()));
            assert_eq!(http_body::Body::size_hint(first.body()).lower(), 2);
            assert_eq!(body(first).await, "{}");
            assert_eq!(body(second).await, "{}");
        }
    }

    #[tokio::test]
    async fn rfc9112_9_3_a_body_still_arriving_keeps_its_connection() {
        let (addr, accepted) =
            upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", true).await;
        let pool = Pool::new();
        let first = post(&pool, addr).await;
        let second = post(&pool, addr).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(body(first).await, "{}");
        assert_eq!(body(second).await, "{}");
    }

    #[tokio::test]
    async fn rfc9112_6_3_bytes_after_a_body_that_came_with_its_head_are_not_reused() {
        let (addr, accepted) = upstream(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n",
            false,
        )
        .await;
        let pool = Pool::new();
        assert_eq!(body(post(&pool, addr).await).await, "{}");
        let _second = post(&pool, addr).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    proptest! {
        #[test]
        fn chunked_decoding_does_not_depend_on_how_reads_split_the_input(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..8),
            piece in 1usize..50,
        ) {
            let mut body = Vec::new();
            for c in &chunks {
                body.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                body.extend_from_slice(c);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n\r\n");
            let (data, done) = decode(&body, piece).unwrap();
            prop_assert_eq!(data, chunks.concat());
            prop_assert!(done);
        }
    }

    #[test]
    fn relay_serves_get_event_streams_to_plain_http_only() {
        let uri: Uri = "http://127.0.0.1:9/mcp".parse().unwrap();
        let accept = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(v));
            h
        };
        let sse = accept("application/json, Text/Event-Stream;q=0.9");
        assert!(applies(&Method::GET, &sse, b"", &uri));
        assert!(!applies(&Method::POST, &sse, b"", &uri));
        assert!(!applies(&Method::GET, &sse, b"x", &uri));
        assert!(!applies(
            &Method::GET,
            &accept("application/json"),
            b"",
            &uri
        ));
        let https: Uri = "https://127.0.0.1:9/mcp".parse().unwrap();
        assert!(!applies(&Method::GET, &sse, b"", &https));
    }
}
