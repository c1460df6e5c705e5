//! The event stream a client opens with `GET` through the gateway's SSE
//! relay (`proxy::sse_relay`), against an upstream written on a raw socket
//! so that the test chooses the framing byte by byte (chunked,
//! close-delimited, `Content-Length`) and sees when the gateway closes the
//! connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// Guards a step that would otherwise hang forever when it regresses.
const GUARD: Duration = Duration::from_secs(30);

/// An upstream that hands every connection to the test once it has read
/// the request head.
struct RawUpstream {
    url: String,
    listener: TcpListener,
}

struct RawConn {
    /// The request line and header fields as received.
    head: String,
    stream: TcpStream,
}

impl RawUpstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        Self { url, listener }
    }

    async fn accept(&self) -> RawConn {
        let (mut stream, _) = self.listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(stream.read(&mut b).await.unwrap(), 1, "request head cut");
            head.push(b[0]);
        }
        RawConn {
            head: String::from_utf8(head).unwrap(),
            stream,
        }
    }
}

impl RawConn {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap()
    }

    /// Every value of header `name` (case-insensitive).
    fn header(&self, name: &str) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .collect()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Returns once the gateway has closed the connection (EOF).
    async fn closed_by_gateway(mut self) {
        let mut b = [0u8; 64];
        while self.stream.read(&mut b).await.is_ok_and(|n| n > 0) {}
    }
}

struct Setup {
    iss: Issuer,
    up: RawUpstream,
    gw: Gw,
}

impl Setup {
    async fn new() -> Self {
        let iss = Issuer::start().await;
        let up = RawUpstream::start().await;
        let cfg = format!(
            r#"
[[trusted_issuers]]
issuer = "{iss}"

[[routes]]
path = "/team/mcp"
upstream_url = "{up}"
scopes = ["mcp"]

[[routes]]
path = "/open"
upstream_url = "{up}"
auth = "none"
"#,
            iss = iss.url,
            up = up.url
        );
        let gw = Gw::start(&cfg).await;
        Self { iss, up, gw }
    }

    fn stream_request(&self, path: &str) -> reqwest::RequestBuilder {
        client()
            .get(self.gw.url(path))
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
    }

    fn token(&self) -> String {
        self.iss.token(&self.gw.url("/team/mcp"), "mcp")
    }

    /// Sends `req` and lets the upstream answer with `head` (and nothing
    /// more yet); returns the client's response and the upstream's side.
    async fn open(&self, req: reqwest::RequestBuilder, head: &str) -> (reqwest::Response, RawConn) {
        let upstream = async {
            let mut conn = self.up.accept().await;
            conn.send(head.as_bytes()).await;
            conn
        };
        let (resp, conn) =
            tokio::time::timeout(GUARD, async { tokio::join!(req.send(), upstream) })
                .await
                .expect("the response head must reach the client before any event");
        (resp.unwrap(), conn)
    }
}

/// The client's next body chunk; `None` at the body's end.
async fn next_chunk(resp: &mut reqwest::Response) -> reqwest::Result<Option<bytes::Bytes>> {
    tokio::time::timeout(GUARD, resp.chunk())
        .await
        .expect("the gateway relays the upstream's next bytes or end")
}

/// Reads the client's body until it holds `want` (the gateway may split or
/// merge the upstream's writes).
async fn read_until(resp: &mut reqwest::Response, got: &mut String, want: &str) {
    while !got.contains(want) {
        let chunk = next_chunk(resp).await.unwrap().expect("stream still open");
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

const SSE_CHUNKED: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

#[tokio::test]
async fn sse_get_relays_chunked_events_sent_after_the_headers() {
    let s = Setup::new().await;
    let req = s
        .stream_request("/team/mcp")
        .bearer_auth(s.token())
        .header("last-event-id", "evt-41");
    let (mut resp, mut conn) = s.open(req, SSE_CHUNKED).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");

    let mut got = String::new();
    // One event split inside the chunk-size line and inside the data.
    conn.send(b"1").await;
    conn.send(b"a\r\nid: evt-42\ndata: {\"a\"").await;
    conn.send(b":1}\n\n\r\n").await;
    read_until(&mut resp, &mut got, "id: evt-42\ndata: {\"a\":1}\n\n").await;
    conn.send(b"19;ext=1\r\nid: evt-43\ndata: second\n\n\r\n")
        .await;
    read_until(&mut resp, &mut got, "id: evt-43\ndata: second\n\n").await;
    assert_eq!(
        got,
        "id: evt-42\ndata: {\"a\":1}\n\nid: evt-43\ndata: second\n\n"
    );

    conn.send(b"0\r\n\r\n").await;
    let end = next_chunk(&mut resp).await.unwrap();
    assert!(end.is_none(), "the last chunk ends the client's body");
}

#[tokio::test]
async fn sse_get_reaches_upstream_with_last_event_id_and_without_the_token() {
    let s = Setup::new().await;
    let token = s.token();
    let req = s
        .stream_request("/team/mcp")
        .bearer_auth(&token)
        .header("last-event-id", "evt-41")
        .header("cookie", "session=secret")
        .header("x-mcp-subject", "admin");
    let (resp, conn) = s.open(req, SSE_CHUNKED).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(conn.request_line(), "GET /mcp HTTP/1.1");
    assert_eq!(
        conn.header("host"),
        [s.up
            .url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")]
    );
    assert_eq!(conn.header("last-event-id"), ["evt-41"]);
    assert_eq!(conn.header("accept"), ["text/event-stream"]);
    assert_eq!(conn.header("mcp-protocol-version"), ["2025-11-25"]);
    assert!(
        conn.header("authorization").is_empty(),
        "token passed through"
    );
    assert!(conn.header("cookie").is_empty());
    assert_eq!(conn.header("x-mcp-subject"), ["alice"]);
    assert_eq!(conn.header("x-mcp-scopes"), ["mcp"]);
    assert!(!conn.head.contains(&token));
}

#[tokio::test]
async fn sse_get_client_disconnect_closes_the_upstream_connection() {
    let s = Setup::new().await;
    let (resp, conn) = s
        .open(
            s.stream_request("/team/mcp").bearer_auth(s.token()),
            SSE_CHUNKED,
        )
        .await;
    assert_eq!(resp.status(), 200);
    drop(resp);
    tokio::time::timeout(GUARD, conn.closed_by_gateway())
        .await
        .expect("the upstream connection must close after the client disconnects");
}

#[tokio::test]
async fn sse_get_relays_a_close_delimited_stream_and_its_end() {
    let s = Setup::new().await;
    let req = s
        .stream_request("/open")
        .header("mcp-session-id", "up-session-7");
    let (mut resp, mut conn) = s
        .open(
            req,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(conn.header("mcp-session-id"), ["up-session-7"]);
    let mut got = String::new();
    conn.send(b"data: one\n\n").await;
    read_until(&mut resp, &mut got, "data: one\n\n").await;
    conn.send(b"data: two\n\n").await;
    read_until(&mut resp, &mut got, "data: two\n\n").await;
    drop(conn);
    let end = next_chunk(&mut resp).await.unwrap();
    assert!(end.is_none(), "the upstream's close ends the client's body");
    assert_eq!(got, "data: one\n\ndata: two\n\n");
}

#[tokio::test]
async fn sse_get_refused_by_upstream_reaches_the_client_unchanged() {
    let s = Setup::new().await;
    let body = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"no GET stream"}}"#;
    let head = format!(
        "HTTP/1.1 405 Method Not Allowed\r\ncontent-type: application/json\r\nallow: POST, DELETE\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (resp, _conn) = s
        .open(s.stream_request("/team/mcp").bearer_auth(s.token()), &head)
        .await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST, DELETE");
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert!(resp.headers().get("x-accel-buffering").is_none());
    assert_eq!(resp.text().await.unwrap(), body);
}

#[tokio::test]
async fn sse_get_chunked_error_body_reaches_the_client_unchanged() {
    let s = Setup::new().await;
    let head = "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
                d\r\n{\"error\":\"no\"\r\n1\r\n}\r\n0\r\n\r\n";
    let (resp, _conn) = s.open(s.stream_request("/open"), head).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "{\"error\":\"no\"}");
}

#[tokio::test]
async fn rfc9112_7_1_malformed_chunk_size_ends_the_clients_stream_with_an_error() {
    let s = Setup::new().await;
    let (mut resp, mut conn) = s.open(s.stream_request("/open"), SSE_CHUNKED).await;
    assert_eq!(resp.status(), 200);
    let mut got = String::new();
    conn.send(b"b\r\ndata: one\n\n\r\n").await;
    read_until(&mut resp, &mut got, "data: one\n\n").await;
    conn.send(b"zz\r\ndata: two\n\n\r\n").await;
    let next = next_chunk(&mut resp).await;
    assert!(
        next.is_err(),
        "a malformed chunk must not end the body cleanly: {next:?}"
    );
}

#[tokio::test]
async fn sse_get_upstream_without_response_head_is_bad_gateway() {
    let s = Setup::new().await;
    let (resp, _) = tokio::time::timeout(GUARD, async {
        tokio::join!(s.stream_request("/open").send(), async {
            let mut conn = s.up.accept().await;
            conn.send(b"not http\r\n\r\n").await;
            conn
        })
    })
    .await
    .unwrap();
    assert_eq!(resp.unwrap().status(), 502);
}
