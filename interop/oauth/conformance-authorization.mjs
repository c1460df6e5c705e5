#!/usr/bin/env node
// The conformance suite's authorization-server scenarios against mcpgate's
// built-in authorization server, with the browser step done by browser.mjs.
//
//   node conformance-authorization.mjs ISSUER [--resource URI] [--registration dcr|cimd]
//       [--tls-cert PEM --tls-key PEM] [--out DIR] [--fail-on-warning] [--screenshots DIR]
//       user and password from $MCPGATE_TEST_USER / $MCPGATE_TEST_PASSWORD
//
// 1. Gives the suite a client: `dcr` registers a public client (RFC 7591,
//    token_endpoint_auth_method "none") whose redirect URI is the suite's
//    callback, http://127.0.0.1:PORT/callback; `cimd` serves a client ID
//    metadata document from a loopback listener and uses its URL as the
//    client_id (the server must allow loopback documents:
//    danger_cimd_allow_private_addresses): over https as
//    https://localhost:PORT/conformance-client.json with --tls-cert/--tls-key
//    (a certificate the server trusts), else over plain http (which only that
//    setting allows). The suite itself does no CIMD: it is handed the URL
//    as its client_id.
// 2. Runs `conformance authorization --url ISSUER --client-id ID --port PORT
//    [--resource URI] -o DIR`, i.e. both scenarios in order
//    (authorization-server-metadata-endpoint, then authorization-code-grant,
//    which reuses the metadata the first one fetched: run alone it fails).
// 3. When the suite prints the authorization URL and waits for its callback,
//    signs in and allows in headless Chromium; the server redirects the
//    browser to the suite's listener, and the suite redeems the code.
// 4. Prints every check of checks.json (status, id, message) and exits 1 if
//    any failed, if authorization-code-grant did not run (SKIPPED or
//    missing), or with --fail-on-warning if any check only warned.

import { spawn } from "node:child_process";
import { readdirSync, readFileSync, mkdtempSync, existsSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { authorizeInBrowser } from "./browser.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const conformanceBin = join(here, "..", "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js");
const SCENARIOS = ["authorization-server-metadata-endpoint", "authorization-code-grant"];

function say(line) {
  console.log(`conformance-authorization: ${line}`);
}

function parseArgs(argv) {
  const opts = {
    issuer: null, resource: null, registration: "dcr", tlsCert: null, tlsKey: null, out: null, failOnWarning: false,
    screenshots: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--resource") opts.resource = value();
    else if (arg === "--registration") opts.registration = value();
    else if (arg === "--tls-cert") opts.tlsCert = value();
    else if (arg === "--tls-key") opts.tlsKey = value();
    else if (arg === "--out") opts.out = value();
    else if (arg === "--fail-on-warning") opts.failOnWarning = true;
    else if (arg === "--screenshots") opts.screenshots = value();
    else if (arg.startsWith("-")) throw new Error(`unknown option ${arg}`);
    else if (opts.issuer === null) opts.issuer = arg;
    else throw new Error(`unexpected argument ${arg}`);
  }
  if (!opts.issuer) throw new Error("usage: conformance-authorization.mjs ISSUER [--resource URI] [--registration dcr|cimd] [--out DIR]");
  if (!["dcr", "cimd"].includes(opts.registration)) throw new Error(`--registration must be dcr or cimd`);
  if (!opts.tlsCert !== !opts.tlsKey) throw new Error("give both --tls-cert and --tls-key, or neither");
  return opts;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function fetchJson(url, init) {
  const res = await fetch(url, init);
  const text = await res.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // reported below with the raw text
  }
  return { status: res.status, headers: res.headers, body, text };
}

/** A client for the suite: registered (DCR) or described by a served document (CIMD). */
async function makeClient(opts, redirectUri, cleanups) {
  const metadata = {
    client_name: "MCP conformance suite (mcpgate interop)",
    redirect_uris: [redirectUri],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "none",
  };
  if (opts.registration === "cimd") {
    let documentUrl;
    const handler = (req, res) => {
      if (req.url !== "/conformance-client.json") {
        res.writeHead(404).end();
        return;
      }
      say(`served the client metadata document to ${req.headers["user-agent"] ?? "?"}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ client_id: documentUrl, ...metadata }));
    };
    const server = opts.tlsCert
      ? https.createServer({ cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) }, handler)
      : http.createServer(handler);
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    documentUrl = opts.tlsCert
      ? `https://localhost:${server.address().port}/conformance-client.json`
      : `http://127.0.0.1:${server.address().port}/conformance-client.json`;
    cleanups.push(() => server.close());
    say(`client: CIMD, client_id ${documentUrl}`);
    return documentUrl;
  }
  const meta = await fetchJson(new URL("/.well-known/oauth-authorization-server", opts.issuer));
  if (meta.status !== 200 || !meta.body) {
    throw new Error(`authorization server metadata: HTTP ${meta.status} ${meta.text.slice(0, 300)}`);
  }
  const endpoint = meta.body.registration_endpoint;
  if (typeof endpoint !== "string") throw new Error("the metadata has no registration_endpoint: cannot register a client");
  const reg = await fetchJson(endpoint, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(metadata),
  });
  if (reg.status !== 201 || typeof reg.body?.client_id !== "string") {
    throw new Error(`registration at ${endpoint}: HTTP ${reg.status} ${reg.text.slice(0, 300)}`);
  }
  say(`client: registered at ${endpoint} (HTTP 201), client_id ${reg.body.client_id}, ` +
    `token_endpoint_auth_method ${reg.body.token_endpoint_auth_method ?? "(absent)"}`);
  return reg.body.client_id;
}

/** Runs the suite; resolves to its exit code. The browser step runs when it asks. */
function runSuite(args, opts, failures) {
  return new Promise((resolve) => {
    say(`running conformance ${args.join(" ")}`);
    const child = spawn(process.execPath, [conformanceBin, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let buffered = "";
    let wantUrl = false;
    let browsing = null;
    const onLine = (line) => {
      console.log(`  | ${line}`);
      if (/Access the following URL in your browser/.test(line)) {
        wantUrl = true;
        return;
      }
      if (wantUrl && /^https?:\/\//.test(line.trim())) {
        wantUrl = false;
        const url = line.trim();
        browsing = authorizeInBrowser(url, {
          username: process.env.MCPGATE_TEST_USER,
          password: process.env.MCPGATE_TEST_PASSWORD,
          screenshots: opts.screenshots,
          log: (l) => console.log(`  browser: ${l}`),
        }).then(
          ({ pages }) => say(`browser done (answered: ${pages.join(", ") || "no page"})`),
          (err) => {
            failures.push(`browser step: ${err.message}`);
            say(`browser step failed: ${err.message}; stopping the suite (it would wait 5 minutes)`);
            child.kill("SIGTERM");
          },
        );
      }
    };
    child.stdout.on("data", (chunk) => {
      buffered += chunk.toString();
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        onLine(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    });
    child.stderr.on("data", (chunk) => process.stdout.write(chunk.toString().replace(/^/gm, "  ! ")));
    const timer = setTimeout(() => {
      failures.push("the suite did not finish within 120 s");
      child.kill("SIGTERM");
    }, 120000);
    child.on("close", async (code, signal) => {
      clearTimeout(timer);
      if (buffered) onLine(buffered);
      if (browsing) await browsing;
      else say("the suite never asked for the browser step");
      resolve(signal ? `signal ${signal}` : code);
    });
  });
}

/** checks.json of each scenario the suite saved under DIR. */
function readChecks(out) {
  const results = new Map();
  if (!existsSync(out)) return results;
  for (const entry of readdirSync(out)) {
    const scenario = SCENARIOS.find((s) => entry.startsWith(`authorization-server-${s}-`));
    const file = join(out, entry, "checks.json");
    if (scenario && existsSync(file)) results.set(scenario, JSON.parse(readFileSync(file, "utf8")));
  }
  return results;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const issuer = opts.issuer.replace(/\/$/, "");
  const out = opts.out ?? mkdtempSync(join(tmpdir(), "conformance-authorization-"));
  const port = await freePort();
  const redirectUri = `http://127.0.0.1:${port}/callback`;
  const cleanups = [];
  const failures = [];
  try {
    const clientId = await makeClient({ ...opts, issuer }, redirectUri, cleanups);
    const args = ["authorization", "--url", issuer, "--client-id", clientId, "--port", String(port), "-o", out];
    if (opts.resource) args.push("--resource", opts.resource);
    const code = await runSuite(args, opts, failures);
    say(`suite exited with ${code}; results in ${out}`);

    const results = readChecks(out);
    let warnings = 0;
    for (const scenario of SCENARIOS) {
      const checks = results.get(scenario);
      if (!checks) {
        failures.push(`${scenario}: no checks.json (the scenario did not run to the end)`);
        console.log(`MISSING  ${scenario}`);
        continue;
      }
      for (const c of checks) {
        const status = c.status === "SUCCESS" ? "PASS" : c.status === "FAILURE" ? "FAIL" : c.status;
        console.log(`${status.padEnd(8)} ${scenario} / ${c.id}${c.errorMessage ? `: ${c.errorMessage}` : ""}`);
        if (c.status === "FAILURE") failures.push(`${scenario} / ${c.id}: ${c.errorMessage ?? "failed"}`);
        if (c.status === "WARNING") {
          warnings++;
          if (opts.failOnWarning) failures.push(`${scenario} / ${c.id} warned: ${c.errorMessage ?? ""}`);
        }
        if (c.status === "SKIPPED" && scenario === "authorization-code-grant") {
          failures.push(`${scenario} was skipped: ${c.errorMessage ?? ""}`);
        }
      }
    }
    if (code !== 0 && failures.length === 0) failures.push(`the suite exited with ${code}`);
    if (failures.length) {
      say(`FAILED (${failures.length}):`);
      for (const f of failures) console.log(`  - ${f}`);
      return 1;
    }
    say(`all checks passed${warnings ? ` (${warnings} warning${warnings > 1 ? "s" : ""})` : ""}`);
    return 0;
  } finally {
    for (const c of cleanups) c();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`conformance-authorization: ${err.message}`);
    process.exit(1);
  },
);
