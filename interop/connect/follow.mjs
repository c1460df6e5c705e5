#!/usr/bin/env node
// A stand-in browser for `mcpgate connect --open-with`, for authorization
// servers that redirect at once (the conformance suite's mock servers ask no
// one anything):
//
//   follow.mjs AUTHORIZATION_URL           (the bridge appends the URL)
//
// GETs the authorization URL and follows redirects by hand (at most 10). The
// first redirect target that is the client's redirect URI (the
// `redirect_uri` query parameter of the authorization URL, compared on
// origin and path) is requested once, without following it further, and
// then it stops: that request is the "browser" arriving at the bridge's
// loopback listener with code, state and iss. Without a redirect_uri
// parameter, the first loopback (127.0.0.1, [::1], localhost) target whose
// origin differs from the authorization server's counts as the callback.
//
// Prints nothing on stdout; says what it did on stderr. Exit 0 once the
// callback was delivered (whatever the listener answered), 1 when it could
// not get there (no redirect, too many, network error), 2 on usage.

const MAX_REDIRECTS = 10;
const TIMEOUT_MS = 10000;

function say(line) {
  process.stderr.write(`follow: ${line}\n`);
}

function isLoopback(url) {
  const h = url.hostname;
  return h === "localhost" || h === "[::1]" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function redact(u) {
  // Codes are short-lived, but keep logs tidy.
  const c = new URL(u);
  for (const k of ["code", "code_challenge"]) if (c.searchParams.has(k)) c.searchParams.set(k, "...");
  return c.toString();
}

async function get(url) {
  const res = await fetch(url, {
    redirect: "manual",
    signal: AbortSignal.timeout(TIMEOUT_MS),
    headers: { Accept: "text/html,application/json;q=0.9,*/*;q=0.8", "User-Agent": "mcpgate-conformance-follow/1" },
  });
  // Drain the body so the connection is released; its content is not used.
  try {
    await res.arrayBuffer();
  } catch {
    // ignore
  }
  return res;
}

async function main() {
  const target = process.argv[process.argv.length - 1];
  let start;
  try {
    if (process.argv.length < 3) throw new Error("missing");
    start = new URL(target);
  } catch {
    say("usage: follow.mjs AUTHORIZATION_URL");
    return 2;
  }
  const redirectUri = start.searchParams.get("redirect_uri");
  let callback = null;
  if (redirectUri) {
    try {
      callback = new URL(redirectUri);
    } catch {
      say(`redirect_uri ${JSON.stringify(redirectUri)} is not a URL; falling back to the loopback rule`);
    }
  }
  const isCallback = (u) => {
    if (callback) return u.origin === callback.origin && u.pathname === callback.pathname;
    return isLoopback(u) && u.origin !== start.origin;
  };

  let current = start;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    let res;
    try {
      res = await get(current);
    } catch (e) {
      say(`GET ${redact(current)} failed: ${e.cause?.message ?? e.message}`);
      return 1;
    }
    const location = res.headers.get("location");
    if (res.status < 300 || res.status >= 400 || !location) {
      say(`GET ${redact(current)} answered ${res.status} without a redirect; stopping before the callback`);
      return 1;
    }
    let next;
    try {
      next = new URL(location, current);
    } catch {
      say(`GET ${redact(current)} redirected to an invalid Location ${JSON.stringify(location)}`);
      return 1;
    }
    if (isCallback(next)) {
      try {
        const cb = await get(next);
        say(`delivered the callback ${redact(next)} (listener answered ${cb.status})`);
      } catch (e) {
        say(`GET ${redact(next)} (the callback) failed: ${e.cause?.message ?? e.message}`);
        return 1;
      }
      return 0;
    }
    say(`${res.status} -> ${redact(next)}`);
    current = next;
  }
  say(`more than ${MAX_REDIRECTS} redirects without reaching the callback`);
  return 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    say(`error: ${e?.stack ?? e}`);
    process.exit(1);
  },
);
