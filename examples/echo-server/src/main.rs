//! `mcpgate-echo-server`: a small, real MCP server over stdio, used by the
//! quickstart and the gateway's tests as the upstream behind a stdio route.
//!
//! It is hand-written on `serde_json` alone, without an MCP SDK or an async
//! runtime, on purpose: it is a dependency-free example, so the quickstart
//! needs nothing but the Rust toolchain, and the whole protocol surface it
//! speaks can be read in three short files.
//!
//! # Transport
//! Newline-delimited JSON-RPC 2.0 on stdin and stdout (MCP `basic/transports`,
//! stdio): one message per line, no embedded newlines, stdout flushed after
//! every message. Logs go to stderr only. The server exits cleanly (status 0)
//! at the end of its input; a line that is not JSON is answered with `-32700`
//! and the server carries on.
//!
//! # Protocol
//! - 2025-11-25 lifecycle: `initialize`, `notifications/initialized`, `ping`
//!   (versions 2025-11-25, 2025-06-18, 2025-03-26 and 2024-11-05).
//! - 2026-07-28: `server/discover`, and per-request versioning through
//!   `params._meta["io.modelcontextprotocol/protocolVersion"]`; such requests
//!   get `resultType: "complete"` on every result and `ttlMs`/`cacheScope`
//!   on `tools/list`.
//! - Tools: `echo`, `add`, `whoami` and `write_note` (see [`tools`]).
//!
//! # Trust boundary
//! The input comes from the gateway (or any MCP client) and is parsed as
//! untrusted JSON. `whoami` reports `MCPGATE_SUBJECT`, which the gateway sets
//! when it spawns one child per principal; the server itself authenticates
//! nothing.

#![forbid(unsafe_code)]

mod server;
mod tools;

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use crate::server::Server;

/// The environment variable through which the gateway names the principal a
/// child process serves.
const SUBJECT_ENV: &str = "MCPGATE_SUBJECT";

fn main() -> ExitCode {
    let subject = std::env::var(SUBJECT_ENV).ok().filter(|s| !s.is_empty());
    let server = Server::new(subject);
    log("ready on stdio");
    match serve(io::stdin().lock(), &mut io::stdout().lock(), &server) {
        Ok(()) => {
            log("end of input, exiting");
            ExitCode::SUCCESS
        }
        Err(err) => {
            log(&format!("stdio error, exiting: {err}"));
            ExitCode::FAILURE
        }
    }
}

/// Reads newline-delimited messages from `input` until end of input and
/// writes one line to `output` for each message that needs a reply.
fn serve(mut input: impl BufRead, output: &mut impl Write, server: &Server) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if let Some(reply) = server.handle_line(&line) {
            // `Value`'s `Display` is compact JSON: never contains a newline.
            let mut text = reply.to_string();
            text.push('\n');
            output.write_all(text.as_bytes())?;
            output.flush()?;
        }
    }
}

/// Writes one log line to stderr; stdout carries protocol messages only.
pub(crate) fn log(message: &str) {
    eprintln!("mcpgate-echo-server: {message}");
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn run(input: &str) -> Vec<Value> {
        let mut out = Vec::new();
        serve(input.as_bytes(), &mut out, &Server::new(None)).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn stdio_one_reply_per_request_line_and_none_for_notifications() {
        let replies = run(concat!(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            "\n",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "\n",
            "\n",
            r#"{"jsonrpc":"2.0","id":"two","method":"ping"}"#,
            "\n",
        ));
        assert_eq!(
            replies,
            vec![
                json!({"jsonrpc":"2.0","id":1,"result":{}}),
                json!({"jsonrpc":"2.0","id":"two","result":{}}),
            ]
        );
    }

    #[test]
    fn stdio_malformed_line_is_answered_and_does_not_stop_the_loop() {
        let replies =
            run("{not json\n\u{0}\u{ff}\n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}");
        assert_eq!(replies.len(), 3);
        assert_eq!(replies[0]["error"]["code"], -32700);
        assert_eq!(replies[0]["id"], Value::Null);
        assert_eq!(replies[1]["error"]["code"], -32700);
        // The last line has no trailing newline and is still served.
        assert_eq!(replies[2], json!({"jsonrpc":"2.0","id":3,"result":{}}));
    }

    #[test]
    fn stdio_end_of_input_ends_cleanly() {
        assert!(run("").is_empty());
    }
}
