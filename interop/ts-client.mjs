#!/usr/bin/env node
// A real MCP client (the official TypeScript SDK, 2025-11-25 handshake era)
// against a Streamable HTTP endpoint: connect, list tools, call the echo tool.
//
//   node ts-client.mjs URL [--token T] [--tool echo] [--tool-args JSON] [--expect TEXT] [--timeout-ms 30000]
//   node ts-client.mjs --stdio "COMMAND ARGS..." [...]   (same, over stdio: a baseline without the gateway)
//
// Checks for the gateway's streaming and policy:
//   --progress         ask for progress notifications; reports when each arrived
//   --expect-streamed  with --progress: fail unless the first notification
//                      arrived well before the result (an SSE stream that is
//                      buffered until the end delivers them all at once)
//   --expect-denied    the tool must be absent from tools/list and its call
//                      refused (HTTP 403); prints {"tools":[...], "denied": "..."}
//
// The bearer token may also come from $INTEROP_TOKEN (keeps it out of `ps`).
// Without --tool-args the argument is chosen from the tool's inputSchema:
// server-everything's echo takes `message`, mcpgate-echo-server's takes `text`.
// Prints one JSON line {"tools":[...], "echo":"...", ...} and exits 0;
// exits 1 on any failure, with the reason (HTTP status and body when the
// server refused a request) on stderr.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const MESSAGE = "hello from ts-client";

function fail(message) {
  console.error(`ts-client: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = {
    url: null,
    token: process.env.INTEROP_TOKEN || null,
    tool: "echo",
    toolArgs: null,
    expect: null,
    timeoutMs: 30000,
    stdio: false,
    progress: false,
    expectStreamed: false,
    expectDenied: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--token") opts.token = value();
    else if (arg === "--tool") opts.tool = value();
    else if (arg === "--tool-args") {
      try {
        opts.toolArgs = JSON.parse(value());
      } catch (err) {
        fail(`--tool-args is not JSON: ${err.message}`);
      }
    } else if (arg === "--expect") opts.expect = value();
    else if (arg === "--timeout-ms") opts.timeoutMs = Number(value());
    else if (arg === "--stdio") opts.stdio = true;
    else if (arg === "--progress") opts.progress = true;
    else if (arg === "--expect-streamed") opts.expectStreamed = opts.progress = true;
    else if (arg === "--expect-denied") opts.expectDenied = true;
    else if (arg.startsWith("--")) fail(`unknown option ${arg}`);
    else if (opts.url === null) opts.url = arg;
    else fail(`unexpected argument ${arg}`);
  }
  if (!opts.url) fail("usage: ts-client.mjs URL [--token T] [--tool NAME] [--tool-args JSON] [--expect TEXT]");
  return opts;
}

// Picks the echo argument from the schema when the caller gave none.
function echoArguments(tool) {
  const properties = Object.keys(tool.inputSchema?.properties ?? {});
  const key =
    ["message", "text"].find((k) => properties.includes(k)) ?? tool.inputSchema?.required?.[0];
  if (!key) fail(`cannot tell which argument ${tool.name} takes: ${JSON.stringify(tool.inputSchema)}`);
  return { [key]: MESSAGE };
}

function describe(err) {
  // StreamableHTTPError carries the HTTP status in `code`; McpError a JSON-RPC code.
  const code = err?.code !== undefined ? ` (code ${err.code})` : "";
  const data = err?.data !== undefined ? ` data=${JSON.stringify(err.data)}` : "";
  const cause = err?.cause ? ` (cause: ${err.cause.code ?? ""} ${err.cause.message ?? err.cause})` : "";
  return `${err?.name ?? "Error"}${code}: ${err?.message ?? err}${data}${cause}`;
}

async function main(opts) {
  let transport;
  if (opts.stdio) {
    // Whitespace-split command line; enough for paths without spaces.
    const [command, ...args] = opts.url.split(/\s+/).filter(Boolean);
    transport = new StdioClientTransport({ command, args, stderr: "inherit" });
  } else {
    const headers = {};
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
    transport = new StreamableHTTPClientTransport(new URL(opts.url), {
      requestInit: { headers },
    });
  }
  const client = new Client({ name: "mcpgate-interop-ts-client", version: "0.1.0" });

  let step = "connect (initialize)";
  try {
    await client.connect(transport);
    step = "tools/list";
    const tools = [];
    let cursor;
    do {
      const page = await client.listTools(cursor ? { cursor } : undefined);
      tools.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor);
    const names = tools.map((t) => t.name);
    const tool = tools.find((t) => t.name === opts.tool);
    if (opts.expectDenied) {
      if (tool) fail(`tool ${opts.tool} is listed although the caller may not call it`);
      step = `tools/call ${opts.tool}`;
      const denied = await client.callTool({ name: opts.tool, arguments: opts.toolArgs ?? {} }).then(
        (result) => fail(`${step} was not refused: ${JSON.stringify(result)}`),
        (err) => err,
      );
      if (denied?.code !== 403) fail(`${step} failed, but not with HTTP 403: ${describe(denied)}`);
      console.log(JSON.stringify({ tools: names, denied: describe(denied), client: "typescript-sdk" }));
      return;
    }
    if (!tool) fail(`tool ${opts.tool} not listed; tools: ${names.join(", ")}`);

    const args = opts.toolArgs ?? echoArguments(tool);
    const expect = opts.expect ?? (opts.toolArgs ? null : MESSAGE);
    step = `tools/call ${opts.tool}`;
    const started = Date.now();
    const progress = [];
    const options = opts.progress
      ? { onprogress: (p) => progress.push({ progress: p.progress, atMs: Date.now() - started }) }
      : undefined;
    const result = await client.callTool({ name: opts.tool, arguments: args }, undefined, options);
    const resultMs = Date.now() - started;
    if (result.isError) fail(`${step} returned isError: ${JSON.stringify(result.content)}`);
    const text = (result.content ?? [])
      .filter((c) => c.type === "text")
      .map((c) => c.text)
      .join("");
    if (!text) fail(`${step} returned no text content: ${JSON.stringify(result)}`);
    if (expect !== null && !text.includes(expect)) {
      fail(`${step} returned ${JSON.stringify(text)}, expected it to contain ${JSON.stringify(expect)}`);
    }

    if (opts.progress && progress.length === 0) fail(`${step}: no progress notification arrived`);
    if (opts.expectStreamed) {
      // The first notification must precede the result by at least a third
      // of the call's duration; buffering collapses that gap to ~0.
      const lead = resultMs - progress[0].atMs;
      if (lead < resultMs / 3) {
        fail(`${step}: first progress at ${progress[0].atMs} ms, result at ${resultMs} ms: not streamed`);
      }
    }

    console.log(
      JSON.stringify({
        tools: names,
        echo: text,
        ...(opts.progress ? { progress, resultMs } : {}),
        client: "typescript-sdk",
        protocolVersion: transport.protocolVersion ?? null,
        server: client.getServerVersion()?.name ?? null,
      }),
    );
  } catch (err) {
    fail(`${step} failed: ${describe(err)}`);
  } finally {
    // Ends the session (DELETE) so upstream state does not pile up across runs.
    await transport.terminateSession?.().catch(() => {});
    await client.close().catch(() => {});
  }
}

const opts = parseArgs(process.argv.slice(2));
const timer = setTimeout(() => fail(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);
await main(opts);
clearTimeout(timer);
process.exit(0);
