//! Spawns the built server and speaks MCP to it over real pipes.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

/// The test's end of the pipes. Helpers return `io::Result` and the test
/// body unwraps: the workspace denies `unwrap` outside `#[test]` functions.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(subject: &str) -> io::Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcpgate-echo-server"))
            .env("MCPGATE_SUBJECT", subject)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or(io::ErrorKind::BrokenPipe)?;
        Ok(Self {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        })
    }

    fn send_line(&mut self, line: &str) -> io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or(io::ErrorKind::BrokenPipe)?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line)
    }

    fn read_message(&mut self) -> io::Result<Value> {
        Ok(serde_json::from_str(&self.read_line()?)?)
    }

    fn request(&mut self, message: Value) -> io::Result<Value> {
        self.send_line(&message.to_string())?;
        self.read_message()
    }
}

#[test]
fn stdio_initialize_then_echo_over_pipes() {
    let mut peer = Peer::spawn("interop-user").unwrap();

    let init = peer
        .request(json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "stdio-test", "version": "0"}},
        }))
        .unwrap();
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["serverInfo"]["name"], "mcpgate-echo-server");

    // No reply to the notification: the next line read answers the next request.
    peer.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .unwrap();

    // A malformed line is answered and does not end the session.
    peer.send_line("{oops").unwrap();
    let garbage = peer.read_message().unwrap();
    assert_eq!(garbage["error"]["code"], -32700);
    assert_eq!(garbage["id"], Value::Null);

    let echo = peer
        .request(json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "over the pipe"}},
        }))
        .unwrap();
    assert_eq!(
        echo,
        json!({"jsonrpc": "2.0", "id": 2, "result": {
            "content": [{"type": "text", "text": "over the pipe"}], "isError": false}})
    );

    let whoami = peer
        .request(json!({
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}},
        }))
        .unwrap();
    assert_eq!(whoami["result"]["content"][0]["text"], "interop-user");

    // End of input ends the process cleanly.
    drop(peer.stdin.take());
    assert_eq!(peer.read_line().unwrap(), "");
    assert!(peer.child.wait().unwrap().success());
}
