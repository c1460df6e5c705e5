#!/usr/bin/env node
// Negative CIMD check: a client ID metadata document whose `client_id` is not
// the URL it was fetched from must be refused at the authorization endpoint
// with an error page, never with a redirect to the document's redirect URI.
//
//   node cimd-mismatch.mjs ISSUER --tls-cert PEM --tls-key PEM
//
// Serves three documents over https on loopback
// (https://localhost:PORT/..., a certificate for localhost the gateway
// trusts, e.g. through SSL_CERT_FILE):
//   good.json          client_id = its own URL (the control: the login page
//                      must be shown, so TLS and the fetch itself work);
//   other-path.json    client_id = the URL of another document on the same server;
//   http-scheme.json   client_id = its own URL with http: instead of https:.
// For each it sends a plain GET (no browser, redirects not followed) of the
// authorization endpoint: response_type=code, the document's URL as
// client_id, a loopback redirect_uri the documents list, state and an S256
// code_challenge. A mismatching document must get a 4xx HTML page naming the
// mismatch ("client_id does not equal its URL"), no Location header, no meta
// refresh, and must have been fetched by the gateway (User-Agent mcpgate/...),
// so the refusal is about its content. Nothing may reach the redirect URI.
// Prints every exchange on stderr and one JSON line {"summary": ...} on
// stdout; exits 1 with the reason on stderr at the first deviation.

import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";

function fail(message) {
  console.error(`cimd-mismatch: ${message}`);
  process.exit(1);
}

function say(line) {
  console.error(line);
}

function parseArgs(argv) {
  const opts = { issuer: null, tlsCert: null, tlsKey: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--tls-cert") opts.tlsCert = value();
    else if (arg === "--tls-key") opts.tlsKey = value();
    else if (arg.startsWith("--")) fail(`unknown option ${arg}`);
    else if (opts.issuer === null) opts.issuer = arg;
    else fail(`unexpected argument ${arg}`);
  }
  if (!opts.issuer || !opts.tlsCert || !opts.tlsKey) fail("usage: cimd-mismatch.mjs ISSUER --tls-cert PEM --tls-key PEM");
  return opts;
}

/** The page's visible text, roughly: tags, styles and entities stripped. */
function pageText(html) {
  return html
    .replace(/<style[\s\S]*?<\/style>/gi, " ")
    .replace(/<[^>]+>/g, " ")
    .replace(/&#0*39;|&#x0*27;|&apos;/gi, "'")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, "&")
    .replace(/\s+/g, " ")
    .trim();
}

async function main(opts) {
  const issuer = opts.issuer.replace(/\/$/, "");
  const metaUrl = `${issuer}/.well-known/oauth-authorization-server`;
  const metaRes = await fetch(metaUrl);
  if (metaRes.status !== 200) fail(`${metaUrl}: HTTP ${metaRes.status}`);
  const meta = await metaRes.json();
  if (meta.client_id_metadata_document_supported !== true) fail("the metadata does not say client_id_metadata_document_supported: true");
  const authorize = meta.authorization_endpoint;
  if (typeof authorize !== "string") fail("the metadata has no authorization_endpoint");

  // The redirect URI the documents list: nothing may ever arrive here.
  const callbacks = [];
  const callbackServer = http.createServer((req, res) => {
    callbacks.push(req.url);
    res.writeHead(200).end();
  });
  await new Promise((resolve) => callbackServer.listen(0, "127.0.0.1", resolve));
  const redirectUri = `http://127.0.0.1:${callbackServer.address().port}/callback`;

  let base;
  const fetches = {};
  const documents = {
    "/good.json": (url) => url,
    "/other-path.json": () => `${base}/another-client.json`,
    "/http-scheme.json": (url) => url.replace(/^https:/, "http:"),
  };
  const docServer = https.createServer(
    { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey) },
    (req, res) => {
      const clientIdFor = documents[req.url];
      if (req.method !== "GET" || !clientIdFor) {
        res.writeHead(404).end();
        return;
      }
      const ua = req.headers["user-agent"] ?? "";
      (fetches[req.url] ??= []).push(ua);
      const doc = {
        client_id: clientIdFor(`${base}${req.url}`),
        client_name: `mcpgate interop cimd-mismatch ${req.url}`,
        redirect_uris: [redirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "none",
      };
      say(`  document server: served ${req.url} (client_id ${doc.client_id}) over https to ${ua || "no user-agent"}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(doc));
    },
  );
  await new Promise((resolve) => docServer.listen(0, "127.0.0.1", resolve));
  base = `https://localhost:${docServer.address().port}`;

  const request = async (path) => {
    const verifier = randomBytes(32).toString("base64url");
    const url = new URL(authorize);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: `${base}${path}`,
      redirect_uri: redirectUri,
      state: randomBytes(12).toString("base64url"),
      code_challenge: createHash("sha256").update(verifier).digest("base64url"),
      code_challenge_method: "S256",
    }).toString();
    const res = await fetch(url, { redirect: "manual" });
    const body = await res.text();
    const out = {
      status: res.status,
      location: res.headers.get("location"),
      contentType: res.headers.get("content-type") ?? "",
      body,
      text: pageText(body),
      byGateway: (fetches[path] ?? []).filter((ua) => ua.startsWith("mcpgate/")).length,
    };
    say(`  http: GET ${url.pathname}?client_id=${base}${path} -> ${res.status}` +
      `${out.location ? ` Location: ${out.location}` : ""} (${out.contentType}); page: ${out.text.slice(0, 160)}`);
    return out;
  };

  try {
    say(`control: a document whose client_id is its URL (${base}/good.json)`);
    const good = await request("/good.json");
    if (good.status !== 200 || !/name="password"/.test(good.body)) {
      fail(`control: expected the login page (200 with a password field), got ${good.status} ${good.location ?? ""} ${good.text.slice(0, 300)}`);
    }
    if (!good.byGateway) fail("control: the gateway did not fetch the good document over https");

    const refused = [];
    for (const path of ["/other-path.json", "/http-scheme.json"]) {
      say(`mismatch: ${path}`);
      const r = await request(path);
      if (r.location !== null) fail(`${path}: the gateway redirected (Location: ${r.location}) instead of showing an error page`);
      if (r.status < 400 || r.status >= 500) fail(`${path}: expected a 4xx error page, got HTTP ${r.status}`);
      if (!r.contentType.startsWith("text/html")) fail(`${path}: the refusal is not an HTML page (${r.contentType})`);
      if (/http-equiv\s*=\s*["']?refresh/i.test(r.body)) fail(`${path}: the error page redirects with a meta refresh`);
      if (!/client_id does not equal its URL/.test(r.text)) fail(`${path}: the page does not name the mismatch: ${r.text.slice(0, 300)}`);
      if (!r.byGateway) fail(`${path}: the gateway never fetched the document, so the refusal is not about its content`);
      refused.push(`${path.slice(1)} ${r.status}`);
    }
    // A redirect would reach the listener at once; give a stray one a moment anyway.
    await new Promise((resolve) => setTimeout(resolve, 200));
    if (callbacks.length) fail(`something reached the redirect URI: ${callbacks.join(", ")}`);
    console.log(JSON.stringify({
      summary: `mismatching client_id refused with an error page, no redirect (${refused.join(", ")}); ` +
        "the matching control document got the login page",
    }));
  } finally {
    docServer.close();
    callbackServer.close();
  }
}

await main(parseArgs(process.argv.slice(2)));
process.exit(0);
