//! The gateway's own HTTP/1.1 client to `http://` upstreams (`proxy::h1`),
//! against an upstream written on a raw socket so that the test chooses the
//! framing byte by byte (chunked, close-delimited, `Content-Length`) and
//! sees which connection each request arrives on and when the gateway
//! closes one: the event stream a client opens with `GET`, and the pooled
//! keep-alive connections that carry everything else.

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
        let head = read_request_head(&mut stream).await.expect("a request");
        RawConn { head, stream }
    }
}

/// The next request head on `stream`; `None` if it closes first.
async fn read_request_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        if stream.read(&mut b).await.unwrap() == 0 {
            assert!(head.is_empty(), "request head cut");
            return None;
        }
        head.push(b[0]);
    }
    Some(String::from_utf8(head).unwrap())
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

    /// The request body, as long as its `Content-Length` says.
    async fn body(&mut self) -> String {
        let len: usize = match self.header("content-length").as_slice() {
            [v] => v.parse().unwrap(),
            other => panic!("one content-length expected, got {other:?}"),
        };
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await.unwrap();
        String::from_utf8(body).unwrap()
    }

    /// Waits for the next request on this same connection.
    async fn next_request(&mut self) {
        self.head = tokio::time::timeout(GUARD, read_request_head(&mut self.stream))
            .await
            .expect("the next request arrives on the same connection")
            .expect("the gateway kept the connection open");
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

// Pooled keep-alive connections (every request but the `GET` event stream).

fn ping_body(id: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#)
}

fn pong(id: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#)
}

/// A `ping` through the unauthenticated route, answered by `answer` on the
/// upstream side; returns the client's status and body.
async fn ping(
    s: &Setup,
    id: u32,
    answer: impl std::future::Future<Output = RawConn>,
) -> (u16, String, RawConn) {
    let ((status, body), conn) =
        tokio::time::timeout(GUARD, async { tokio::join!(send_ping(s, id), answer) })
            .await
            .expect("the exchange completes");
    (status, body, conn)
}

/// Sends ping `id` through the unauthenticated route; the client's status
/// and body.
async fn send_ping(s: &Setup, id: u32) -> (u16, String) {
    let resp = client()
        .post(s.gw.url("/open"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(ping_body(id))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Reads ping `id` on `conn` and answers it: JSON with a Content-Length.
async fn answer_json(mut conn: RawConn, id: u32) -> RawConn {
    assert_eq!(conn.body().await, ping_body(id));
    let body = pong(id);
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.send(format!("{head}{body}").as_bytes()).await;
    conn
}

/// Reads ping `id` on `conn` and answers `raw`, byte for byte.
async fn answer_raw(mut conn: RawConn, id: u32, raw: &str) -> RawConn {
    assert_eq!(conn.body().await, ping_body(id));
    conn.send(raw.as_bytes()).await;
    conn
}

/// The next request on the same connection.
async fn same(mut conn: RawConn) -> RawConn {
    conn.next_request().await;
    conn
}

#[tokio::test]
async fn rfc9112_9_3_post_requests_share_one_keepalive_upstream_connection() {
    let s = Setup::new().await;
    // 1: a JSON answer with Content-Length.
    let (status, body, conn) = ping(&s, 1, async {
        let conn = s.up.accept().await;
        assert_eq!(conn.request_line(), "POST /mcp HTTP/1.1");
        assert_eq!(conn.header("connection"), Vec::<&str>::new());
        answer_json(conn, 1).await
    })
    .await;
    assert_eq!((status, body), (200, pong(1)));

    // 2: on the same connection, an event stream, chunked, to its end.
    let event = format!("event: message\ndata: {}\n\n", pong(2));
    let sse = format!("{SSE_CHUNKED}{:x}\r\n{event}\r\n0\r\n\r\n", event.len());
    let (status, body, conn) =
        ping(&s, 2, async { answer_raw(same(conn).await, 2, &sse).await }).await;
    assert_eq!((status, body), (200, event));

    // 3: and again on the same connection, after the stream ended.
    let (status, body, _) = ping(&s, 3, async { answer_json(same(conn).await, 3).await }).await;
    assert_eq!((status, body), (200, pong(3)));
}

#[tokio::test]
async fn keepalive_connection_closed_by_the_upstream_is_replaced() {
    let s = Setup::new().await;
    let (status, _, conn) = ping(&s, 1, async { answer_json(s.up.accept().await, 1).await }).await;
    assert_eq!(status, 200);
    // The upstream drops its idle connection; the next request still
    // reaches it, on a new one.
    drop(conn);
    let (status, body, _) = ping(&s, 2, async { answer_json(s.up.accept().await, 2).await }).await;
    assert_eq!((status, body), (200, pong(2)));
}

/// RFC 9110 §9.2.2: "A proxy MUST NOT automatically retry
/// non-idempotent requests." A POST the upstream read on a kept-alive
/// connection and then dropped without an answer (a crash after running
/// the tool, say) gets the client a 502 with a JSON-RPC error, and is not
/// sent again: the next request the upstream sees is the client's next
/// one. (Before, the gateway sent it again on a new connection, where it
/// would have run twice; here that retry waits for an answer that never
/// comes and the guard fails the test.)
#[tokio::test]
async fn rfc9110_9_2_2_post_read_then_dropped_by_the_upstream_is_not_sent_again() {
    for interim in ["", "HTTP/1.1 102 Processing\r\n\r\n"] {
        let s = Setup::new().await;
        let (status, _, conn) =
            ping(&s, 1, async { answer_json(s.up.accept().await, 1).await }).await;
        assert_eq!(status, 200);
        let upstream = async {
            let mut conn = same(conn).await;
            assert_eq!(conn.body().await, ping_body(2));
            conn.send(interim.as_bytes()).await;
            // Closed without a final answer.
        };
        let ((status, body), ()) =
            tokio::time::timeout(GUARD, async { tokio::join!(send_ping(&s, 2), upstream) })
                .await
                .expect("the gateway answers without sending the POST again");
        assert_eq!(status, 502, "{interim:?}: {body}");
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(err["id"], 2, "{body}");
        assert!(err["error"]["code"].is_i64(), "{body}");
        let (status, body, _) =
            ping(&s, 3, async { answer_json(s.up.accept().await, 3).await }).await;
        assert_eq!((status, body), (200, pong(3)), "{interim:?}");
    }
}

/// RFC 9110 §7.6.1: the fields a `Connection` header names are for that
/// connection only: the gateway removes them on the way to the upstream
/// and on the way back. And a client's `X_MCP_Subject` or
/// `X_MCP_Client_Id` (underscores), which CGI-style servers read as the
/// gateway's `X-MCP-Subject` / `X-MCP-Client-Id`, never reaches the
/// upstream; other headers do.
#[tokio::test]
async fn rfc9110_7_6_1_connection_listed_and_underscored_identity_headers_are_removed() {
    let s = Setup::new().await;
    let body = pong(1);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nconnection: x-upstream-hop\r\nx-upstream-hop: secret\r\n\
         x-upstream-end: kept\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let req = client()
        .post(s.gw.url("/open"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("connection", "x-client-hop")
        .header("x-client-hop", "1")
        .header("x_mcp_subject", "admin")
        .header("x_mcp_client_id", "console")
        .header("x_mcp_scopes", "admin")
        .header("x-trace", "7")
        .body(ping_body(1));
    let upstream = async {
        let conn = s.up.accept().await;
        for name in [
            "x-client-hop",
            "x_mcp_subject",
            "x_mcp_client_id",
            "x_mcp_scopes",
            "x-mcp-subject",
            "x-mcp-client-id",
            "x-mcp-scopes",
        ] {
            assert_eq!(
                conn.header(name),
                Vec::<&str>::new(),
                "{name}\n{}",
                conn.head
            );
        }
        assert_eq!(conn.header("x-trace"), ["7"], "{}", conn.head);
        answer_raw(conn, 1, &answer).await
    };
    let (resp, _conn) = tokio::time::timeout(GUARD, async { tokio::join!(req.send(), upstream) })
        .await
        .expect("the exchange completes");
    let resp = resp.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("x-upstream-hop").is_none(),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.headers()["x-upstream-end"], "kept");
    assert_eq!(resp.text().await.unwrap(), body);
}

/// Sends ping 1, answered by `raw`, then ping 2, which must arrive on a
/// new connection (the test hangs, then fails, if the gateway reuses the
/// first), and checks that the gateway closes the first.
async fn first_connection_is_not_reused(raw: &str, first_body: &str) {
    let s = Setup::new().await;
    let (status, body, first) = ping(&s, 1, async {
        answer_raw(s.up.accept().await, 1, raw).await
    })
    .await;
    assert_eq!((status, body.as_str()), (200, first_body), "{raw:?}");
    // A second answer smuggled after the first must never answer ping 2.
    let (status, body, _) = ping(&s, 2, async { answer_json(s.up.accept().await, 2).await }).await;
    assert_eq!((status, body), (200, pong(2)), "{raw:?}");
    tokio::time::timeout(GUARD, first.closed_by_gateway())
        .await
        .expect("the gateway closes a connection it will not reuse");
}

#[tokio::test]
async fn rfc9112_9_6_connection_close_answer_is_not_reused() {
    first_connection_is_not_reused(
        "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\n\
         content-length: 2\r\n\r\n{}",
        "{}",
    )
    .await;
}

/// An upstream that announces `Keep-Alive: timeout=1` closes idle
/// connections within a second: the gateway does not keep such a
/// connection (a POST sent on it as the upstream closes it would be lost),
/// while `timeout=5` still lets the next request reuse it at once.
#[tokio::test]
async fn keep_alive_timeout_announced_by_the_upstream_is_honoured() {
    first_connection_is_not_reused(
        "HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-type: application/json\r\n\
         content-length: 2\r\n\r\n{}",
        "{}",
    )
    .await;
    let s = Setup::new().await;
    let body = pong(1);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nkeep-alive: timeout=5\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, _, conn) = ping(&s, 1, async {
        answer_raw(s.up.accept().await, 1, &answer).await
    })
    .await;
    assert_eq!(status, 200);
    let (status, body, _) = ping(&s, 2, async { answer_json(same(conn).await, 2).await }).await;
    assert_eq!((status, body), (200, pong(2)));
}

#[tokio::test]
async fn bytes_after_the_declared_end_of_an_answer_are_not_reused() {
    // Past a Content-Length…
    first_connection_is_not_reused(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}\
         HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]",
        "{}",
    )
    .await;
    // …and past the last chunk.
    first_connection_is_not_reused(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
         2\r\n{}\r\n0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]",
        "{}",
    )
    .await;
}

/// `[limits] upstream_timeout_secs`: an upstream that takes the request and
/// never answers gets the client a 504 with a JSON-RPC error echoing the
/// request's id, not a hang.
#[tokio::test]
async fn upstream_silent_past_upstream_timeout_is_gateway_timeout_with_jsonrpc_error() {
    // Reads the request, then says nothing.
    gateway_timeout_after("", ping_body(77), b"", 77).await;
}

/// `[limits] upstream_timeout_secs` also bounds a JSON answer the gateway
/// must read whole to filter (`tools/list` on a route that hides tools):
/// an upstream that sends the head and part of the body, then stalls, gets
/// the client a 504 with a JSON-RPC error, not a hang.
#[tokio::test]
async fn filtered_list_answer_stalling_mid_body_is_gateway_timeout() {
    gateway_timeout_after(
        r#"tools_exclude = ["hidden"]"#,
        r#"{"jsonrpc":"2.0","id":78,"method":"tools/list"}"#.to_owned(),
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        78,
    )
    .await;
}

/// Sends `body` (JSON-RPC request `id`) through an unauthenticated route
/// with `route_extra` in its table and a 1 s upstream timeout; the upstream
/// reads the request, sends `partial` and then nothing (its connection held
/// open until the client has its answer). The client must get a 504 with a
/// JSON-RPC error echoing `id`.
async fn gateway_timeout_after(route_extra: &str, body: String, partial: &[u8], id: u64) {
    let up = RawUpstream::start().await;
    let gw = Gw::start(&format!(
        r#"
[limits]
upstream_timeout_secs = 1

[[routes]]
path = "/open"
upstream_url = "{up}"
auth = "none"
{route_extra}
"#,
        up = up.url
    ))
    .await;
    let req = client()
        .post(gw.url("/open"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body);
    let (resp, conn) = tokio::time::timeout(GUARD, async {
        tokio::join!(req.send(), async {
            let mut conn = up.accept().await;
            conn.send(partial).await;
            conn
        })
    })
    .await
    .expect("the gateway must answer once its upstream timeout passes");
    let resp = resp.unwrap();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["id"], id, "{body}");
    assert!(body["error"]["code"].is_i64(), "{body}");
    drop(conn);
}
