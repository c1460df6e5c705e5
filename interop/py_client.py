#!/usr/bin/env python3
"""A real MCP client (the official Python SDK) against a Streamable HTTP endpoint.

    interop/.venv/bin/python interop/py_client.py URL [--token T] [--mode auto|legacy|2026-07-28]
        [--tool echo] [--tool-args JSON] [--expect TEXT] [--timeout 30]
    interop/.venv/bin/python interop/py_client.py --stdio "COMMAND ARGS..." [...]
        (same over stdio: a baseline without the gateway)

Connects, lists tools, calls the echo tool and prints one JSON line
{"tools": [...], "echo": "...", ...}; exits 0, or 1 with the reason on stderr.
With --expect-denied the tool must instead be absent from tools/list and its
call refused; the line is then {"tools": [...], "denied": "..."}.

The SDK's default `auto` mode first probes `server/discover` at 2026-07-28
and falls back to the `initialize` handshake on a legacy server, so through
the gateway this exercises both eras' first request. The bearer token may also
come from $INTEROP_TOKEN (keeps it out of `ps`). Without --tool-args the
argument is chosen from the tool's inputSchema (`message` for
server-everything, `text` for mcpgate-echo-server).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp_types import Implementation
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

MESSAGE = "hello from py-client"


class Failure(Exception):
    """A check failed; the message says which."""


def echo_arguments(tool: Any) -> dict[str, Any]:
    schema = tool.input_schema or {}
    properties = list((schema.get("properties") or {}).keys())
    key = next((k for k in ("message", "text") if k in properties), None)
    if key is None and schema.get("required"):
        key = schema["required"][0]
    if key is None:
        raise Failure(f"cannot tell which argument {tool.name} takes: {json.dumps(schema)}")
    return {key: MESSAGE}


def describe(err: BaseException) -> str:
    """Names the error, flattening the exception groups anyio raises."""
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(describe(e) for e in err.exceptions)
    parts = [f"{type(err).__name__}: {err}"]
    code = getattr(err, "code", None)
    data = getattr(err, "data", None)
    if code is not None:
        parts.append(f"code={code}")
    if data is not None:
        parts.append(f"data={json.dumps(data, default=str)}")
    response = getattr(err, "response", None)
    if isinstance(response, httpx2.Response):
        parts.append(f"http={response.status_code}")
    if err.__cause__ is not None:
        parts.append(f"cause: {describe(err.__cause__)}")
    return " ".join(parts)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    step = f"connect (mode {args.mode})"
    async with create_mcp_http_client(headers=headers) as http:
        if args.stdio:
            # Whitespace-split command line; enough for paths without spaces.
            command, *command_args = args.url.split()
            server: Any = StdioServerParameters(command=command, args=command_args)
        else:
            server = streamable_http_client(args.url, http_client=http)
        client = Client(
            server,
            mode=args.mode,
            client_info=Implementation(name="mcpgate-interop-py-client", version="0.1.0"),
        )
        try:
            async with client:
                step = "tools/list"
                tools: list[Any] = []
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                names = [t.name for t in tools]
                tool = next((t for t in tools if t.name == args.tool), None)
                if args.expect_denied:
                    if tool is not None:
                        raise Failure(f"tool {args.tool} is listed although the caller may not call it")
                    step = f"tools/call {args.tool}"
                    try:
                        result = await client.call_tool(args.tool, json.loads(args.tool_args or "{}"))
                    except Exception as err:  # noqa: BLE001 - the refusal is the expected outcome
                        return {"tools": names, "denied": describe(err), "client": "python-sdk"}
                    raise Failure(f"{step} was not refused: {result.model_dump_json()}")
                if tool is None:
                    raise Failure(f"tool {args.tool} not listed; tools: {', '.join(names)}")

                tool_args = json.loads(args.tool_args) if args.tool_args else echo_arguments(tool)
                expect = args.expect if args.expect is not None else (None if args.tool_args else MESSAGE)
                step = f"tools/call {args.tool}"
                result = await client.call_tool(args.tool, tool_args)
                texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
                text = "".join(texts)
                if result.is_error:
                    raise Failure(f"{step} returned isError: {text}")
                if not text:
                    raise Failure(f"{step} returned no text content: {result.model_dump_json()}")
                if expect is not None and expect not in text:
                    raise Failure(f"{step} returned {text!r}, expected it to contain {expect!r}")
                info = client.server_info
                return {
                    "tools": names,
                    "echo": text,
                    "client": "python-sdk",
                    "protocolVersion": client.protocol_version,
                    "server": info.name if info else None,
                }
        except Failure:
            raise
        except BaseException as err:  # noqa: BLE001 - report whatever the SDK raised
            if isinstance(err, (KeyboardInterrupt, SystemExit)):
                raise
            # A Failure raised inside the client's task group arrives wrapped.
            if isinstance(err, BaseExceptionGroup):
                matched, _ = err.split(Failure)
                while isinstance(matched, BaseExceptionGroup):
                    matched = matched.exceptions[0]
                if matched is not None:
                    raise matched from None
            raise Failure(f"{step} failed: {describe(err)}") from err


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="MCP endpoint URL, or with --stdio a command line")
    parser.add_argument("--stdio", action="store_true", help="URL is a command to spawn over stdio")
    parser.add_argument("--token", default=os.environ.get("INTEROP_TOKEN") or None)
    parser.add_argument("--mode", default="auto", help="auto (default), legacy, or a modern version")
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--tool-args", default=None, help="JSON object of tool arguments")
    parser.add_argument("--expect", default=None, help="text the tool result must contain")
    parser.add_argument(
        "--expect-denied", action="store_true", help="the tool must be hidden and its call refused"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run")
    args = parser.parse_args()
    if args.tool_args is not None:
        try:
            if not isinstance(json.loads(args.tool_args), dict):
                parser.error("--tool-args must be a JSON object")
        except json.JSONDecodeError as err:
            parser.error(f"--tool-args is not JSON: {err}")

    async def bounded() -> dict[str, Any]:
        with anyio.fail_after(args.timeout):
            return await run(args)

    try:
        summary = anyio.run(bounded)
    except Failure as err:
        print(f"py-client: {err}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"py-client: timed out after {args.timeout} s", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
