#!/usr/bin/env node
// The TypeScript SDK's OAuth client (1.32.2: auth() driven by
// StreamableHTTPClientTransport through an OAuthClientProvider) end to end
// against a route protected by mcpgate's authorization server.
//
//   node ts-oauth-client.mjs URL [--registration dcr|cimd] [--tls-cert PEM --tls-key PEM]
//       [--tool echo] [--tool-args JSON] [--expect TEXT] [--screenshots DIR] [--timeout-ms 90000]
//       user and password from $MCPGATE_TEST_USER / $MCPGATE_TEST_PASSWORD
//
// Steps, each printed as it happens (with every HTTP exchange the SDK made):
//  1. connect: 401 -> protected resource metadata -> authorization server
//     metadata -> registration -> authorization request; the provider's
//     redirectToAuthorization signs in and allows in headless Chromium
//     (browser.mjs) and this script's loopback listener catches the redirect
//     (state and RFC 9207 iss checked);
//  2. finishAuth(code): the code is redeemed (PKCE) for tokens;
//  3. connect again, tools/list, tools/call;
//  4. the access token is replaced with garbage in the provider: the next
//     call gets 401 and the SDK refreshes (grant_type=refresh_token), then
//     the call succeeds;
//  5. the refresh token is revoked at the revocation endpoint (RFC 7009, form
//     POST with client_id, a public client);
//  6. the next call is refused: 401 for the access token of the revoked
//     grant, invalid_grant for the refresh token, and the SDK falls back to
//     asking for a new authorization (not given).
// Registration: `dcr` lets the SDK register (RFC 7591): the provider has no
// client information and no clientMetadataUrl. `cimd` gives the provider a
// clientMetadataUrl, https://localhost:PORT/client-metadata.json, served by
// this script over https (node:https with --tls-cert/--tls-key, a certificate
// for localhost that the gateway trusts, e.g. through SSL_CERT_FILE), and
// again no client information: the SDK itself chooses the URL as its
// client_id because the authorization server metadata says
// client_id_metadata_document_supported: true. Checked: the SDK saved the
// URL as its client_id, every authorization request carries it, it never
// called the registration endpoint, and the gateway fetched the document
// (User-Agent mcpgate/...) before the login page.
// Prints a JSON line {"tools":[...], "echo":..., ...} at the end and exits 0;
// exits 1 with the reason on stderr at the first deviation.

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

import { authorizeInBrowser, shortenCode } from "./browser.mjs";

const MESSAGE = "hello from ts-oauth-client";

function fail(message) {
  console.error(`ts-oauth-client: ${message}`);
  process.exit(1);
}

function say(line) {
  console.error(line);
}

function parseArgs(argv) {
  const opts = {
    url: null, registration: "dcr", tlsCert: null, tlsKey: null, tool: "echo", toolArgs: null, expect: null,
    screenshots: null, timeoutMs: 90000,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--registration") opts.registration = value();
    else if (arg === "--tls-cert") opts.tlsCert = value();
    else if (arg === "--tls-key") opts.tlsKey = value();
    else if (arg === "--tool") opts.tool = value();
    else if (arg === "--tool-args") {
      try {
        opts.toolArgs = JSON.parse(value());
      } catch (err) {
        fail(`--tool-args is not JSON: ${err.message}`);
      }
    } else if (arg === "--expect") opts.expect = value();
    else if (arg === "--screenshots") opts.screenshots = value();
    else if (arg === "--timeout-ms") opts.timeoutMs = Number(value());
    else if (arg.startsWith("--")) fail(`unknown option ${arg}`);
    else if (opts.url === null) opts.url = arg;
    else fail(`unexpected argument ${arg}`);
  }
  if (!opts.url) {
    fail("usage: ts-oauth-client.mjs URL [--registration dcr|cimd] [--tls-cert PEM --tls-key PEM] [--tool NAME] [--tool-args JSON] [--expect TEXT]");
  }
  if (!["dcr", "cimd"].includes(opts.registration)) fail("--registration must be dcr or cimd");
  if (opts.registration === "cimd" && (!opts.tlsCert || !opts.tlsKey)) {
    fail("--registration cimd needs --tls-cert and --tls-key (the SDK accepts only an https clientMetadataUrl)");
  }
  if (!process.env.MCPGATE_TEST_USER || !process.env.MCPGATE_TEST_PASSWORD) {
    fail("set MCPGATE_TEST_USER and MCPGATE_TEST_PASSWORD");
  }
  return opts;
}

function describe(err) {
  const code = err?.code !== undefined ? ` (code ${err.code})` : "";
  const cause = err?.cause ? ` (cause: ${err.cause.code ?? ""} ${err.cause.message ?? err.cause})` : "";
  return `${err?.name ?? "Error"}${code}: ${err?.message ?? err}${cause}`;
}

/** The client's loopback listener (plain http): /callback catches the authorization response. */
async function startListener() {
  const waiters = [];
  const received = [];
  let base;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, base);
    if (url.pathname === "/callback") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("Authorization received; you can close this page.");
      const params = Object.fromEntries(url.searchParams);
      const w = waiters.shift();
      if (w) w(params);
      else received.push(params);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${server.address().port}`;
  return {
    redirectUri: `${base}/callback`,
    nextCallback: () => (received.length ? Promise.resolve(received.shift()) : new Promise((r) => waiters.push(r))),
    close: () => server.close(),
  };
}

/**
 * The client ID metadata document, served over https on loopback as
 * https://localhost:PORT/client-metadata.json; `fetches` records who got it.
 */
async function startDocumentServer({ cert, key, documentFor }) {
  const fetches = [];
  let documentUrl;
  const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
    if (req.method === "GET" && req.url === "/client-metadata.json") {
      const userAgent = req.headers["user-agent"] ?? "";
      fetches.push({ userAgent });
      say(`  document server: served the client metadata document over https to ${userAgent || "no user-agent"}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(documentFor(documentUrl)));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  documentUrl = `https://localhost:${server.address().port}/client-metadata.json`;
  return { documentUrl, fetches, close: () => server.close() };
}

/** An in-memory OAuthClientProvider whose user agent is browser.mjs. */
class Provider {
  constructor({ redirectUri, clientMetadataUrl, screenshots }) {
    this._redirectUri = redirectUri;
    this._clientMetadataUrl = clientMetadataUrl;
    this._client = undefined;
    this._tokens = undefined;
    this._verifier = undefined;
    this.screenshots = screenshots;
    this.lastState = null;
    this.discovery = null;
    this.browserAllowed = true;
    this.authorizationRequests = [];
    this.invalidated = [];
  }

  get redirectUrl() {
    return this._redirectUri;
  }

  /** CIMD: the SDK uses this as the client_id when the AS supports it. */
  get clientMetadataUrl() {
    return this._clientMetadataUrl;
  }

  get clientMetadata() {
    return {
      client_name: "mcpgate interop ts-oauth-client",
      redirect_uris: [this._redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }

  state() {
    this.lastState = randomBytes(16).toString("base64url");
    return this.lastState;
  }

  clientInformation() {
    return this._client;
  }

  saveClientInformation(info) {
    say(`  provider: SDK saved client information: client_id=${info?.client_id}`);
    this._client = info;
  }

  tokens() {
    return this._tokens;
  }

  saveTokens(tokens) {
    this._tokens = tokens;
  }

  saveCodeVerifier(verifier) {
    this._verifier = verifier;
  }

  codeVerifier() {
    if (!this._verifier) throw new Error("no code verifier saved");
    return this._verifier;
  }

  saveDiscoveryState(state) {
    this.discovery = state;
  }

  invalidateCredentials(scope) {
    this.invalidated.push(scope);
    say(`  provider: SDK invalidated credentials (${scope})`);
    if (scope === "all" || scope === "tokens") this._tokens = undefined;
    if (scope === "all" || scope === "client") this._client = undefined;
    if (scope === "all" || scope === "verifier") this._verifier = undefined;
    if (scope === "all" || scope === "discovery") this.discovery = null;
  }

  async redirectToAuthorization(url) {
    this.authorizationRequests.push(url);
    const p = url.searchParams;
    say(`  provider: authorization request: client_id=${p.get("client_id")} scope=${p.get("scope") ?? "(none)"} ` +
      `resource=${p.get("resource") ?? "(none)"} redirect_uri=${p.get("redirect_uri")}`);
    if (!this.browserAllowed) {
      say("  provider: not opening a browser at this step");
      return;
    }
    await authorizeInBrowser(url.href, {
      username: process.env.MCPGATE_TEST_USER,
      password: process.env.MCPGATE_TEST_PASSWORD,
      screenshots: this.screenshots,
      log: (line) => say(`  browser: ${line}`),
    });
  }
}

/** fetch that records and prints every exchange the SDK makes. */
function recordingFetch(exchanges) {
  return async (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = init.method ?? (input instanceof Request ? input.method : "GET");
    let detail = "";
    if (init.body instanceof URLSearchParams || typeof init.body === "string") {
      const body = String(init.body);
      const grant = /(?:^|&)grant_type=([^&]+)/.exec(body);
      if (grant) detail = ` grant_type=${decodeURIComponent(grant[1])}`;
      else if (method === "POST" && body.startsWith("{")) {
        try {
          const m = JSON.parse(body).method;
          if (m) detail = ` ${m}`;
        } catch {
          // not JSON
        }
      }
    }
    const res = await fetch(input, init);
    // An OAuth error body (RFC 6749 §5.2) has a string `error`; a JSON-RPC one an object.
    let error = "";
    let description = "";
    if (!res.ok && (res.headers.get("content-type") ?? "").includes("json")) {
      const body = await res.clone().json().catch(() => null);
      if (typeof body?.error === "string") {
        error = body.error;
        description = body.error_description ? ` (${body.error_description})` : "";
      } else if (typeof body?.error?.message === "string") {
        description = ` (JSON-RPC ${body.error.code}: ${body.error.message})`;
      }
    }
    const www = res.headers.get("www-authenticate");
    exchanges.push({ method, path: url.pathname, detail: detail.trim(), status: res.status, error });
    say(`  http: ${method} ${url.pathname}${detail} -> ${res.status}${error ? ` error=${error}` : ""}${description}` +
      `${www ? ` [WWW-Authenticate: ${www}]` : ""}`);
    return res;
  };
}

async function callEcho(client, opts, label) {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  const tool = tools.find((t) => t.name === opts.tool);
  if (!tool) fail(`${label}: tool ${opts.tool} not listed; tools: ${names.join(", ")}`);
  let args = opts.toolArgs;
  if (!args) {
    const props = Object.keys(tool.inputSchema?.properties ?? {});
    const key = ["message", "text"].find((k) => props.includes(k)) ?? tool.inputSchema?.required?.[0];
    if (!key) fail(`cannot tell which argument ${tool.name} takes`);
    args = { [key]: MESSAGE };
  }
  const expect = opts.expect ?? (opts.toolArgs ? null : MESSAGE);
  const result = await client.callTool({ name: opts.tool, arguments: args });
  const text = (result.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
  if (result.isError) fail(`${label}: tools/call returned isError: ${text}`);
  if (expect !== null && !text.includes(expect)) fail(`${label}: tools/call returned ${JSON.stringify(text)}, expected ${JSON.stringify(expect)}`);
  return { names, text };
}

async function main(opts) {
  const exchanges = [];
  const fetchFn = recordingFetch(exchanges);
  const since = (mark) => exchanges.slice(mark);
  const listener = await startListener();
  let documents = null;
  if (opts.registration === "cimd") {
    documents = await startDocumentServer({
      cert: opts.tlsCert,
      key: opts.tlsKey,
      documentFor: (documentUrl) => ({
        client_id: documentUrl,
        client_name: "mcpgate interop ts-oauth-client (CIMD)",
        redirect_uris: [listener.redirectUri],
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "none",
      }),
    });
    say(`client metadata document at ${documents.documentUrl}`);
  }
  const provider = new Provider({
    redirectUri: listener.redirectUri,
    clientMetadataUrl: documents?.documentUrl,
    screenshots: opts.screenshots,
  });
  const serverUrl = new URL(opts.url);
  const newTransport = () => new StreamableHTTPClientTransport(serverUrl, { authProvider: provider, fetch: fetchFn });
  const newClient = () => new Client({ name: "mcpgate-interop-ts-oauth-client", version: "0.1.0" });

  try {
    // 1. First contact: 401, discovery, registration, browser.
    say(`step 1: connect to ${opts.url} without a token (registration: ${opts.registration})`);
    let transport = newTransport();
    let client = newClient();
    const first = await client.connect(transport).then(() => null, (err) => err);
    if (!(first instanceof UnauthorizedError)) {
      fail(`step 1: expected the SDK to stop for authorization (UnauthorizedError), got ${first ? describe(first) : "a connection"}`);
    }
    const mcp401 = exchanges.find((e) => e.path === serverUrl.pathname && e.status === 401);
    if (!mcp401) fail("step 1: the MCP endpoint never answered 401");
    if (!exchanges.some((e) => e.path.startsWith("/.well-known/oauth-protected-resource") && e.status === 200)) {
      fail("step 1: protected resource metadata was not fetched");
    }
    if (!exchanges.some((e) => /^\/\.well-known\/(oauth-authorization-server|openid-configuration)/.test(e.path) && e.status === 200)) {
      fail("step 1: authorization server metadata was not fetched");
    }
    const issuer = provider.discovery?.authorizationServerMetadata?.issuer;
    if (opts.registration === "dcr") {
      const reg = exchanges.find((e) => e.method === "POST" && e.path.endsWith("/register"));
      if (!reg || reg.status !== 201) fail(`step 1: dynamic registration did not answer 201: ${JSON.stringify(reg)}`);
      say(`  registered client_id ${provider.clientInformation()?.client_id}`);
    } else {
      const asMeta = provider.discovery?.authorizationServerMetadata;
      if (asMeta?.client_id_metadata_document_supported !== true) {
        fail("step 1: the authorization server metadata does not say client_id_metadata_document_supported: true");
      }
      if (exchanges.some((e) => e.path.endsWith("/register"))) fail("step 1: the SDK called the registration endpoint instead of using CIMD");
      const saved = provider.clientInformation()?.client_id;
      if (saved !== documents.documentUrl) fail(`step 1: the SDK saved client_id ${saved}, not the metadata document URL ${documents.documentUrl}`);
      say(`  the SDK chose CIMD itself: client_id ${saved}, no registration request`);
    }
    if (provider.authorizationRequests.length !== 1) fail("step 1: the SDK did not ask for an authorization");
    if (documents) {
      const sent = provider.authorizationRequests[0].searchParams.get("client_id");
      if (sent !== documents.documentUrl) fail(`step 1: the authorization request's client_id is ${sent}, not ${documents.documentUrl}`);
      const byGateway = documents.fetches.filter((f) => f.userAgent.startsWith("mcpgate/"));
      if (!byGateway.length) {
        fail(`step 1: the gateway never fetched the client metadata document over https (fetches: ${JSON.stringify(documents.fetches)})`);
      }
      say(`  the gateway fetched the document over https ${byGateway.length} time(s) (${byGateway[0].userAgent})`);
    }
    const callback = await Promise.race([
      listener.nextCallback(),
      new Promise((_, reject) => setTimeout(() => reject(new Error("no callback within 10 s")), 10000)),
    ]).catch((err) => fail(`step 1: ${err.message}`));
    say(`  callback: ${shortenCode(`?${new URLSearchParams(callback)}`)}`);
    if (callback.error) fail(`step 1: authorization error ${callback.error}: ${callback.error_description ?? ""}`);
    if (!callback.code) fail("step 1: no code in the redirect");
    if (callback.state !== provider.lastState) fail(`step 1: state ${callback.state} is not the one sent (${provider.lastState})`);
    if (callback.iss !== undefined && callback.iss !== issuer) fail(`step 1: iss ${callback.iss} is not the issuer ${issuer}`);
    say(`  state matches; iss ${callback.iss === undefined ? "absent" : "matches the issuer"}`);

    // 2. Code for tokens.
    say("step 2: redeem the code (finishAuth)");
    let mark = exchanges.length;
    await transport.finishAuth(callback.code);
    const tokenExchange = since(mark).find((e) => e.detail === "grant_type=authorization_code");
    if (!tokenExchange || tokenExchange.status !== 200) fail(`step 2: token request: ${JSON.stringify(tokenExchange)}`);
    const tokens1 = provider.tokens();
    if (!tokens1?.access_token) fail("step 2: no access token saved");
    if (!tokens1.refresh_token) fail("step 2: no refresh token issued");
    say(`  token_type ${tokens1.token_type}, expires_in ${tokens1.expires_in}, scope ${tokens1.scope ?? "(absent)"}, refresh token issued`);
    await client.close().catch(() => {});

    // 3. Use it.
    say("step 3: connect with the token, tools/list, tools/call");
    transport = newTransport();
    client = newClient();
    await client.connect(transport);
    const { names, text } = await callEcho(client, opts, "step 3");
    say(`  ${names.length} tools; ${opts.tool} -> ${JSON.stringify(text)}`);

    // 4. Refresh.
    say("step 4: invalidate the access token in the provider; the SDK must refresh");
    provider._tokens = { ...provider._tokens, access_token: "not-a-valid-access-token" };
    mark = exchanges.length;
    const after = await callEcho(client, opts, "step 4");
    const refresh = since(mark).find((e) => e.detail === "grant_type=refresh_token");
    if (!refresh || refresh.status !== 200) fail(`step 4: no successful refresh: ${JSON.stringify(refresh)}`);
    if (!since(mark).some((e) => e.path === serverUrl.pathname && e.status === 401)) fail("step 4: the invalid token was not refused with 401");
    const tokens2 = provider.tokens();
    if (!tokens2?.refresh_token) fail("step 4: no refresh token after refreshing");
    say(`  refreshed; refresh token ${tokens2.refresh_token === tokens1.refresh_token ? "NOT rotated" : "rotated"}; ${opts.tool} -> ${JSON.stringify(after.text)}`);

    // 5. Revoke.
    const revocationEndpoint = provider.discovery?.authorizationServerMetadata?.revocation_endpoint;
    if (!revocationEndpoint) fail("step 5: the authorization server metadata has no revocation_endpoint");
    const clientId = provider.clientInformation()?.client_id;
    say(`step 5: revoke the refresh token at ${revocationEndpoint} (client_id ${clientId})`);
    const revoked = await fetchFn(revocationEndpoint, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: tokens2.refresh_token, token_type_hint: "refresh_token", client_id: clientId }),
    });
    if (revoked.status !== 200) fail(`step 5: revocation answered ${revoked.status}: ${await revoked.text()}`);

    // 6. Refused.
    say("step 6: the next call must be refused");
    provider.browserAllowed = false;
    mark = exchanges.length;
    const refused = await client.callTool({ name: opts.tool, arguments: { text: "x", message: "x" } }).then(
      (r) => fail(`step 6: the call after revocation succeeded: ${JSON.stringify(r).slice(0, 300)}`),
      (err) => err,
    );
    const ex6 = since(mark);
    if (!ex6.some((e) => e.path === serverUrl.pathname && e.status === 401)) {
      fail(`step 6: the access token of the revoked grant was not refused with 401 (${describe(refused)})`);
    }
    const refresh6 = ex6.find((e) => e.detail === "grant_type=refresh_token");
    if (refresh6 && !(refresh6.status === 400 && refresh6.error === "invalid_grant")) {
      fail(`step 6: refreshing with the revoked refresh token: ${JSON.stringify(refresh6)} (expected 400 invalid_grant)`);
    }
    say(`  refused: ${describe(refused)}; the SDK ${refresh6 ? "got invalid_grant when refreshing and " : ""}` +
      `${provider.authorizationRequests.length > 1 ? "asked for a new authorization" : "gave up"}`);
    if (documents) {
      const other = provider.authorizationRequests.map((u) => u.searchParams.get("client_id")).filter((c) => c !== documents.documentUrl);
      if (other.length) fail(`step 6: an authorization request used client_id ${other[0]}, not the metadata document URL`);
    }

    console.log(JSON.stringify({
      tools: names,
      echo: text,
      client: "typescript-sdk-oauth",
      registration: opts.registration,
      clientId: provider.clientInformation()?.client_id ?? clientId,
      documentFetches: documents ? documents.fetches.length : null,
      protocolVersion: transport.protocolVersion ?? null,
      server: client.getServerVersion()?.name ?? null,
      refreshTokenRotated: tokens2.refresh_token !== tokens1.refresh_token,
    }));
    await client.close().catch(() => {});
  } catch (err) {
    fail(`unexpected error: ${describe(err)}${err?.stack ? `\n${err.stack}` : ""}`);
  } finally {
    listener.close();
    documents?.close();
  }
}

const opts = parseArgs(process.argv.slice(2));
const timer = setTimeout(() => fail(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);
await main(opts);
clearTimeout(timer);
process.exit(0);
