#!/usr/bin/env python3
"""One MCP session through `mcpgate connect`, as a stdio-only client has it.

    connect_session.py [--tool NAME] [--args JSON] [--expect TEXT]
        [--version 2025-11-25] [--transport-note] -- COMMAND ARGS...

Starts COMMAND (e.g. `mcpgate connect URL --open-with ...`) with pipes,
writes initialize, notifications/initialized and one tools/call on its stdin
as newline-delimited JSON-RPC, closes stdin, and reads stdout until the
bridge exits. Every stdout line must be JSON (stdout is the JSON-RPC channel
and nothing else). Prints the tool's text result on stdout and exits 0 when
the call returned a result (whose text equals --expect, when given); exits 1
with the reason on stderr otherwise. The bridge's stderr passes through.
Standard library only.
"""

import argparse
import json
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default="whoami")
    ap.add_argument("--args", default="{}")
    ap.add_argument("--expect")
    ap.add_argument("--version", default="2025-11-25")
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("no command")
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": a.version, "capabilities": {},
                    "clientInfo": {"name": "connect-session", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": a.tool, "arguments": json.loads(a.args)}},
    ]
    stdin = "".join(json.dumps(m) + "\n" for m in lines)
    try:
        out = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, text=True,
                             timeout=a.timeout)
    except subprocess.TimeoutExpired:
        print(f"connect_session: the bridge did not finish within {a.timeout} s", file=sys.stderr)
        return 1
    replies = {}
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            print(f"connect_session: a stdout line is not JSON: {line[:200]!r}", file=sys.stderr)
            return 1
        if isinstance(msg, dict) and "id" in msg:
            replies[msg["id"]] = msg
    init = replies.get(1, {})
    if "result" not in init:
        print(f"connect_session: initialize failed: {json.dumps(init)[:400]}", file=sys.stderr)
        return 1
    call = replies.get(2, {})
    if "result" not in call:
        print(f"connect_session: tools/call {a.tool} failed: {json.dumps(call)[:400]}",
              file=sys.stderr)
        return 1
    content = call["result"].get("content") or [{}]
    text = content[0].get("text", "")
    print(text)
    if a.expect is not None and text != a.expect:
        print(f"connect_session: expected {a.expect!r}, got {text!r}", file=sys.stderr)
        return 1
    if out.returncode != 0:
        print(f"connect_session: the bridge exited {out.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
