#!/usr/bin/env node
// The MCP client the conformance suite runs in client mode, speaking MCP over
// stdio through `mcpgate connect`:
//
//   conformance client --command "NODE22 interop/connect/driver.mjs" ...
//   driver.mjs [--verbose] SERVER_URL          (the suite appends SERVER_URL)
//
// Reads MCP_CONFORMANCE_SCENARIO, MCP_CONFORMANCE_CONTEXT (JSON) and
// MCP_CONFORMANCE_PROTOCOL_VERSION (default 2025-11-25), maps them to
// `mcpgate connect` flags, spawns `${MCPGATE_BIN:-mcpgate} connect FLAGS URL`
// and, over its stdin/stdout (one JSON-RPC message a line), runs the
// lifecycle of that protocol version:
//   stateful (2024-11-05 .. 2025-11-25): initialize, notifications/initialized,
//     tools/list, tools/call of the first tool;
//   stateless (2026-07-28 and later): server/discover (a -32601 answer is
//     tolerated), tools/list, tools/call, every request carrying
//     params._meta["io.modelcontextprotocol/protocolVersion"] and
//     ["io.modelcontextprotocol/clientCapabilities"] (the bridge copies the
//     version into the MCP-Protocol-Version header).
// Server-to-client requests get `{}` for ping and a -32601 error otherwise.
// Then it closes the bridge's stdin and waits (5 s) for it to exit.
//
// Exit 0 only if tools/call returned a result (not an error, not isError) and
// the bridge then exited 0 on end of input; otherwise exit 1 with the reason on
// stderr ("driver: FAIL: ..."). The bridge's stderr is forwarded to ours. The
// whole run is bounded by MCPGATE_DRIVER_TIMEOUT_MS (default 25000, under the
// suite's 30 s). On success one JSON line goes to stdout.
//
// Environment:
//   MCPGATE_BIN                    the mcpgate binary (default: `mcpgate` on PATH)
//   MCPGATE_DRIVER_VERDICT_FILE    append one JSON line per run:
//                                  {"scenario","protocolVersion","ok","exitCode","reason",...}
//                                  (the suite records no client exit status)
//   MCPGATE_DRIVER_TIMEOUT_MS      overall deadline (default 25000)
//   MCPGATE_CONNECT_EXTRA_ARGS     extra flags for `mcpgate connect`, split on whitespace
//   MCPGATE_DRIVER_KEEP_TMP=1      keep the per-run cache dir and key file
//   MCPGATE_DRIVER_VERBOSE=1       same as --verbose: log every message on stderr
//
// Plain Node (>= 22), node: builtins only.

import { spawn } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const FOLLOW = join(here, "follow.mjs");

// What the reference client (the suite's everything-client) uses as its
// client ID metadata document URL; auth/basic-cimd expects exactly this
// client_id when the authorization server advertises
// client_id_metadata_document_supported. The URL does not resolve.
const CIMD_CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json";

const STATEFUL_VERSIONS = new Set(["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]);
const DEFAULT_VERSION = "2025-11-25";
const CLIENT_INFO = { name: "mcpgate-connect-conformance-driver", version: "1.0.0" };
const EXIT_GRACE_MS = 5000;

const startedAt = Date.now();
const argv = process.argv.slice(2);
const verbose = argv.includes("--verbose") || process.env.MCPGATE_DRIVER_VERBOSE === "1";
const positional = argv.filter((a) => a !== "--verbose");
const serverUrl = positional[positional.length - 1];
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? "";
const protocolVersion = process.env.MCP_CONFORMANCE_PROTOCOL_VERSION || DEFAULT_VERSION;
const stateful = STATEFUL_VERSIONS.has(protocolVersion);
const timeoutMs = Number(process.env.MCPGATE_DRIVER_TIMEOUT_MS || 25000);
const deadline = startedAt + timeoutMs;
const bin = process.env.MCPGATE_BIN || "mcpgate";

const tmpDirs = [];
let bridge = null;
let bridgeExit = null; // {code, signal} once it exited
let finished = false;

function log(line) {
  process.stderr.write(`driver: ${line}\n`);
}

function debug(line) {
  if (verbose) log(line);
}

class Failure extends Error {}

function fail(reason) {
  throw new Failure(reason);
}

function makeTmpDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix)); // mode 0700
  tmpDirs.push(dir);
  return dir;
}

function cleanup() {
  if (process.env.MCPGATE_DRIVER_KEEP_TMP === "1") {
    if (tmpDirs.length) log(`kept ${tmpDirs.join(" ")}`);
    return;
  }
  for (const dir of tmpDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
}

function recordVerdict(ok, exitCode, reason) {
  const file = process.env.MCPGATE_DRIVER_VERDICT_FILE;
  if (!file) return;
  const line = JSON.stringify({
    scenario,
    protocolVersion,
    ok,
    exitCode,
    reason,
    serverUrl,
    bridgeExit,
    elapsedMs: Date.now() - startedAt,
    pid: process.pid,
    at: new Date().toISOString(),
  });
  try {
    appendFileSync(file, `${line}\n`);
  } catch (e) {
    log(`could not append the verdict to ${file}: ${e.message}`);
  }
}

// ---------------------------------------------------------------------------
// Scenario -> `mcpgate connect` flags
// ---------------------------------------------------------------------------

function parseContext() {
  const raw = process.env.MCP_CONFORMANCE_CONTEXT;
  if (!raw) return null;
  try {
    return JSON.parse(raw);
  } catch (e) {
    fail(`MCP_CONFORMANCE_CONTEXT is not JSON (${e.message})`);
  }
}

function need(ctx, key) {
  const v = ctx?.[key];
  if (typeof v !== "string" || v === "") {
    fail(`scenario ${scenario} needs MCP_CONFORMANCE_CONTEXT.${key} (context: ${ctx ? Object.keys(ctx).join(",") : "none"})`);
  }
  return v;
}

function openWith() {
  // `--open-with` is split on whitespace by the bridge.
  for (const p of [process.execPath, FOLLOW]) {
    if (/\s/.test(p)) fail(`path ${JSON.stringify(p)} contains whitespace; --open-with cannot carry it`);
  }
  return `${process.execPath} ${FOLLOW}`;
}

function connectFlags() {
  const ctx = parseContext();
  const flags = ["--transport", "streamable-http", "--cache-dir", makeTmpDir("mcpgate-connect-cache-")];
  const browser = () => ["--open-with", openWith()];

  switch (scenario) {
    case "auth/client-credentials-basic":
      flags.push(
        "--grant", "client-credentials",
        "--client-id", need(ctx, "client_id"),
        "--client-secret", need(ctx, "client_secret"),
        "--no-browser",
      );
      break;
    case "auth/client-credentials-jwt": {
      const pem = need(ctx, "private_key_pem");
      const alg = ctx.signing_algorithm ?? "ES256";
      // There is no algorithm flag: the bridge derives it from the key
      // (the suite's key is a P-256 PKCS#8 key, alg ES256).
      if (alg !== "ES256") log(`context asks for signing_algorithm ${alg}; the bridge must derive it from the key`);
      const keyFile = join(makeTmpDir("mcpgate-connect-key-"), "client-key.pem");
      writeFileSync(keyFile, pem.endsWith("\n") ? pem : `${pem}\n`, { mode: 0o600 });
      flags.push(
        "--grant", "client-credentials",
        "--client-id", need(ctx, "client_id"),
        "--private-key", keyFile,
        "--no-browser",
      );
      break;
    }
    case "auth/pre-registration":
      // Context also carries `issuer` (the authorization server the client
      // was registered at); there is no flag for it and none is needed.
      flags.push(
        "--grant", "authorization-code",
        "--client-id", need(ctx, "client_id"),
        "--client-secret", need(ctx, "client_secret"),
        ...browser(),
      );
      break;
    default:
      if (scenario.startsWith("auth/")) {
        // Dynamic registration, or the CIMD URL where the authorization
        // server advertises client_id_metadata_document_supported.
        flags.push(
          "--grant", "authorization-code",
          "--client-metadata-url", CIMD_CLIENT_METADATA_URL,
          ...browser(),
        );
      }
      // Non-auth scenarios: no authorization flags at all.
      break;
  }

  const extra = (process.env.MCPGATE_CONNECT_EXTRA_ARGS ?? "").split(/\s+/).filter(Boolean);
  return [...flags, ...extra];
}

// ---------------------------------------------------------------------------
// JSON-RPC over the bridge's stdio
// ---------------------------------------------------------------------------

let nextId = 1;
const pending = new Map(); // id -> {method, resolve, reject}
let protocolError = null; // first violation of the stdio contract

function send(msg) {
  if (!bridge || bridgeExit) fail(`bridge exited (${describeExit()}) before ${msg.method ?? "a response"} could be sent`);
  const line = JSON.stringify(msg);
  debug(`-> ${line}`);
  bridge.stdin.write(`${line}\n`);
}

function remaining() {
  return deadline - Date.now();
}

function request(method, params) {
  const id = nextId++;
  const msg = { jsonrpc: "2.0", id, method };
  if (params !== undefined) msg.params = params;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Failure(`no response to ${method} (id ${id}) within the ${timeoutMs} ms deadline`));
    }, Math.max(0, remaining()));
    pending.set(id, {
      method,
      resolve: (m) => {
        clearTimeout(timer);
        resolve(m);
      },
      reject: (e) => {
        clearTimeout(timer);
        reject(e);
      },
    });
    try {
      send(msg);
    } catch (e) {
      pending.delete(id);
      clearTimeout(timer);
      reject(e);
    }
  });
}

function notify(method, params) {
  const msg = { jsonrpc: "2.0", method };
  if (params !== undefined) msg.params = params;
  send(msg);
}

function violation(reason) {
  log(`stdio contract violation: ${reason}`);
  if (!protocolError) protocolError = reason;
  for (const p of pending.values()) p.reject(new Failure(reason));
  pending.clear();
}

function onLine(line) {
  if (line.trim() === "") return;
  debug(`<- ${line}`);
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    violation(`bridge wrote a line on stdout that is not JSON: ${JSON.stringify(line.slice(0, 200))}`);
    return;
  }
  if (Array.isArray(msg)) {
    violation("bridge wrote a JSON-RPC batch on stdout (not used since 2025-06-18)");
    return;
  }
  if (msg === null || typeof msg !== "object" || msg.jsonrpc !== "2.0") {
    violation(`bridge wrote a message that is not JSON-RPC 2.0: ${line.slice(0, 200)}`);
    return;
  }
  if (typeof msg.method === "string") {
    if (msg.id === undefined || msg.id === null) {
      debug(`notification ${msg.method}`);
      return;
    }
    // A server-to-client request.
    if (msg.method === "ping") {
      send({ jsonrpc: "2.0", id: msg.id, result: {} });
    } else {
      log(`answering server request ${msg.method} with -32601`);
      send({ jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: `Method not found: ${msg.method}` } });
    }
    return;
  }
  if (!("result" in msg) && !("error" in msg)) {
    violation(`bridge wrote a message that is neither request, notification nor response: ${line.slice(0, 200)}`);
    return;
  }
  const p = pending.get(msg.id);
  if (!p) {
    violation(`bridge wrote a response with an id no request is waiting for: ${JSON.stringify(msg.id)}`);
    return;
  }
  pending.delete(msg.id);
  p.resolve(msg);
}

function describeExit() {
  if (!bridgeExit) return "still running";
  if (bridgeExit.error) return `not started: ${bridgeExit.error}`;
  return bridgeExit.signal ? `signal ${bridgeExit.signal}` : `exit status ${bridgeExit.code}`;
}

function describeError(e) {
  const data = e.data === undefined ? "" : ` data=${JSON.stringify(e.data).slice(0, 500)}`;
  return `${e.code} ${e.message}${data}`;
}

async function call(method, params) {
  const msg = await request(method, params);
  if (msg.error) {
    const err = new Failure(`${method} answered with error ${describeError(msg.error)}`);
    err.rpcError = msg.error;
    throw err;
  }
  if (msg.result === null || typeof msg.result !== "object") fail(`${method} returned a result that is not an object`);
  return msg.result;
}

// ---------------------------------------------------------------------------
// The conversation
// ---------------------------------------------------------------------------

function statelessParams(params = {}) {
  return {
    ...params,
    _meta: {
      ...(params._meta ?? {}),
      "io.modelcontextprotocol/protocolVersion": protocolVersion,
      "io.modelcontextprotocol/clientCapabilities": {},
      "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
    },
  };
}

function toolArguments() {
  // The auth scenarios' test-tool takes any object; the plain tools_call
  // scenario's add tool wants two numbers (as the reference client sends).
  return scenario === "tools_call" ? { a: 2, b: 3 } : {};
}

async function conversation() {
  let tools;
  if (stateful) {
    const init = await call("initialize", {
      protocolVersion,
      capabilities: {},
      clientInfo: CLIENT_INFO,
    });
    debug(`initialized: server ${JSON.stringify(init.serverInfo ?? null)}, protocolVersion ${init.protocolVersion}`);
    if (typeof init.protocolVersion !== "string") fail("initialize result has no protocolVersion");
    notify("notifications/initialized");
    tools = await call("tools/list", {});
  } else {
    try {
      const disc = await call("server/discover", statelessParams());
      debug(`discovered: ${JSON.stringify(disc).slice(0, 300)}`);
      if (Array.isArray(disc.supportedVersions) && !disc.supportedVersions.includes(protocolVersion)) {
        fail(`server/discover lists ${JSON.stringify(disc.supportedVersions)}, not ${protocolVersion}`);
      }
    } catch (e) {
      if (e.rpcError?.code !== -32601) throw e;
      log("server/discover is not implemented (-32601); going on without it");
    }
    tools = await call("tools/list", statelessParams());
  }
  if (!Array.isArray(tools.tools) || tools.tools.length === 0) fail(`tools/list returned no tools: ${JSON.stringify(tools).slice(0, 300)}`);
  const tool = tools.tools[0];
  if (typeof tool?.name !== "string") fail("the first tool has no name");
  const args = { name: tool.name, arguments: toolArguments() };
  const result = await call("tools/call", stateful ? args : statelessParams(args));
  if (result.isError === true) fail(`tools/call ${tool.name} returned isError: ${JSON.stringify(result.content ?? null).slice(0, 300)}`);
  if (!stateful && result.resultType !== undefined && result.resultType !== "complete") {
    fail(`tools/call ${tool.name} returned resultType ${result.resultType}`);
  }
  return { tools: tools.tools.map((t) => t.name), called: tool.name, result };
}

// ---------------------------------------------------------------------------
// Bridge process
// ---------------------------------------------------------------------------

function startBridge(flags) {
  const args = ["connect", ...flags, serverUrl];
  log(`running ${bin} ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ")}`);
  let child;
  try {
    child = spawn(bin, args, { stdio: ["pipe", "pipe", "pipe"] });
  } catch (e) {
    fail(`cannot start ${bin}: ${e.message}`);
  }
  bridge = child;
  const exited = new Promise((resolve) => {
    child.on("error", (e) => {
      // ENOENT and the like: the process never ran.
      if (!bridgeExit) bridgeExit = { code: null, signal: null, error: e.message };
      const reason = `cannot run ${bin}: ${e.message}`;
      if (!protocolError) protocolError = reason;
      for (const p of pending.values()) p.reject(new Failure(reason));
      pending.clear();
      resolve();
    });
    // Requests still waiting when the bridge is gone fail -- once its stdout
    // is drained ("close"), or shortly after "exit" if something it started
    // still holds that pipe open.
    const orphan = () => {
      if (finished || !pending.size) return;
      const reason = `bridge exited (${describeExit()}) while ${[...pending.values()].map((p) => p.method).join(", ")} waited for a response`;
      for (const p of pending.values()) p.reject(new Failure(reason));
      pending.clear();
    };
    child.on("exit", (code, signal) => {
      bridgeExit = { code, signal };
      debug(`bridge exited: ${describeExit()}`);
      setTimeout(orphan, 1000).unref();
      resolve();
    });
    child.on("close", orphan);
  });
  child.stdin.on("error", (e) => debug(`bridge stdin: ${e.message}`));
  child.stderr.on("data", (chunk) => process.stderr.write(chunk));
  let buf = "";
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
      onLine(line);
    }
  });
  child.stdout.on("end", () => {
    if (buf.trim() !== "") violation(`bridge's stdout ended inside a line: ${JSON.stringify(buf.slice(0, 200))}`);
    buf = "";
  });
  return exited;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitExit(exited, ms) {
  if (bridgeExit) return true;
  await Promise.race([exited, sleep(ms)]);
  return bridgeExit !== null;
}

async function stopBridge(exited, graceMs) {
  if (!bridge || bridgeExit) return true;
  try {
    bridge.stdin.end();
  } catch {
    // already closed
  }
  if (await waitExit(exited, graceMs)) return true;
  bridge.kill("SIGTERM");
  if (await waitExit(exited, 2000)) return false;
  bridge.kill("SIGKILL");
  await waitExit(exited, 2000);
  return false;
}

async function main() {
  let exited = Promise.resolve();
  let verdict;
  try {
    if (!serverUrl || !/^https?:\/\//.test(serverUrl)) fail(`usage: driver.mjs [--verbose] SERVER_URL (got ${JSON.stringify(serverUrl)})`);
    log(`scenario ${scenario || "(none)"}, protocol ${protocolVersion} (${stateful ? "stateful" : "stateless"}), server ${serverUrl}`);
    const flags = connectFlags();
    exited = startBridge(flags);
    let timer;
    const overall = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Failure(`timed out after ${timeoutMs} ms`)), Math.max(0, remaining()));
    });
    let outcome;
    try {
      outcome = await Promise.race([conversation(), overall]);
    } finally {
      clearTimeout(timer);
    }
    if (protocolError) fail(protocolError);
    // A clean end: stdin closed, the bridge must exit 0 by itself.
    finished = true;
    const grace = Math.min(EXIT_GRACE_MS, Math.max(1000, remaining()));
    const byItself = await stopBridge(exited, grace);
    if (!byItself) fail(`the call succeeded, but the bridge did not exit within ${grace} ms of its stdin closing`);
    if (bridgeExit.code !== 0) fail(`the call succeeded, but the bridge then exited with ${describeExit()} (expected 0 at end of input)`);
    if (protocolError) fail(protocolError);
    process.stdout.write(`${JSON.stringify({ ok: true, scenario, protocolVersion, ...outcome })}\n`);
    log(`OK: ${outcome.called} returned a result`);
    verdict = { ok: true, code: 0, reason: "tools/call returned a result" };
  } catch (e) {
    const reason = e instanceof Failure ? e.message : `driver error: ${e?.stack ?? e}`;
    finished = true;
    await stopBridge(exited, 2000).catch(() => {});
    log(`FAIL: ${reason}${bridgeExit ? ` (bridge: ${describeExit()})` : ""}`);
    verdict = { ok: false, code: 1, reason };
  }
  recordVerdict(verdict.ok, verdict.code, verdict.reason);
  cleanup();
  process.exit(verdict.code);
}

for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(sig, () => {
    log(`got ${sig}; stopping the bridge`);
    try {
      bridge?.kill("SIGKILL");
    } catch {
      // gone
    }
    recordVerdict(false, 1, `driver killed by ${sig}`);
    cleanup();
    process.exit(1);
  });
}

main();
