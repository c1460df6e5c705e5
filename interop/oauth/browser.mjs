#!/usr/bin/env node
// The person at the browser: signs in on mcpgate's authorization pages and
// answers the consent page, in a real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core).
//
//   node browser.mjs URL [--deny] [--redirect-uri URI] [--screenshots DIR]
//       user and password from $MCPGATE_TEST_USER / $MCPGATE_TEST_PASSWORD
//
// Opens URL (an authorization request), fills the login form as a person
// would (username, password, click "Sign in"), clicks Allow (or Deny) on the
// consent page when one is shown, and lets the authorization server redirect
// the browser to the client's redirect URI, where the client's own listener
// receives it. Done once the browser has been sent to a URL outside the
// authorization server's origin (or under --redirect-uri) and that request
// has completed or failed. Prints the redirect URL (code shortened) on
// stdout and exits 0; exits 1 with the page's visible text otherwise (login
// refused, an error page, a form that does not match the contract).
//
// As a module: authorizeInBrowser(url, {username, password, consent}) does
// the same and resolves to {redirectUrl, pages}, or rejects with the reason.
//
// The contract with the pages (server-rendered, no JavaScript):
//   login:   <input name="username">, <input name="password" type="password">,
//            <button type="submit" name="action" value="login">
//   consent: <button type="submit" name="action" value="allow"> and value="deny"

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

import { chromium } from "playwright-core";

export const CHROMIUM = process.env.MCPGATE_CHROMIUM || "/usr/bin/chromium";

const LOGIN_BUTTON = 'button[type="submit"][name="action"][value="login"]';
const CONSENT_BUTTON = (value) => `button[type="submit"][name="action"][value="${value}"]`;

/** The redirect URL with the code shortened, for logs. */
export function shortenCode(url) {
  return url.replace(/([?&]code=)([^&#]{13,})/, (_, key, code) => `${key}${code.slice(0, 6)}…(${code.length} chars)`);
}

/**
 * Signs in and answers consent in a headless Chromium, then lets the
 * authorization server redirect to the client.
 *
 * @param {string} url the authorization request URL
 * @param {object} opts
 * @param {string} opts.username
 * @param {string} opts.password
 * @param {"allow"|"deny"} [opts.consent] the button to click on the consent page
 * @param {string} [opts.redirectUri] done when the browser goes here (default:
 *   any URL whose origin is not the authorization server's)
 * @param {string} [opts.screenshots] a directory for a PNG of every page seen
 * @param {number} [opts.timeoutMs] for each page action and for the whole flow
 * @param {(line: string) => void} [opts.log] progress lines (default: stderr)
 * @returns {Promise<{redirectUrl: string, pages: string[]}>} pages: "login",
 *   "consent" in the order they were answered
 */
export async function authorizeInBrowser(url, opts = {}) {
  const {
    username,
    password,
    consent = "allow",
    redirectUri = null,
    screenshots = null,
    timeoutMs = 30000,
    log = (line) => console.error(`browser: ${line}`),
  } = opts;
  if (consent !== "allow" && consent !== "deny") throw new Error(`consent must be allow or deny, not ${consent}`);
  const asOrigin = new URL(url).origin;
  const isRedirect = (target) =>
    redirectUri ? target.startsWith(redirectUri) : new URL(target).origin !== asOrigin;

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in a container: Chromium's sandbox needs user namespaces.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
    timeout: timeoutMs,
  });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(timeoutMs);

    // The redirect to the client: the first main-frame navigation that leaves
    // the authorization server. Resolved once that request completed or
    // failed, so the client's listener has it (a listener that closes right
    // after answering makes later loads fail; that is fine).
    let redirect = null;
    let redirectError = null;
    let redirectDone;
    const redirectFinished = new Promise((resolve) => (redirectDone = resolve));
    page.on("request", (req) => {
      if (redirect || !req.isNavigationRequest() || req.frame() !== page.mainFrame()) return;
      if (isRedirect(req.url())) {
        redirect = req;
        log(`redirected to ${shortenCode(req.url())}`);
      }
    });
    page.on("requestfinished", (req) => {
      if (req === redirect) redirectDone();
    });
    page.on("requestfailed", (req) => {
      if (req !== redirect) return;
      redirectError = req.failure()?.errorText ?? "failed";
      redirectDone();
    });
    let lastStatus = null;
    page.on("response", (res) => {
      const req = res.request();
      if (req.isNavigationRequest() && req.frame() === page.mainFrame() && !isRedirect(req.url())) {
        lastStatus = res.status();
        log(`${req.method()} ${new URL(req.url()).pathname} -> ${res.status()}`);
      }
    });

    let shot = 0;
    const screenshot = async (name) => {
      if (!screenshots) return;
      mkdirSync(screenshots, { recursive: true });
      const file = join(screenshots, `${String(++shot).padStart(2, "0")}-${name}.png`);
      await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      log(`screenshot ${file}`);
    };
    const visibleText = async () =>
      (await page.locator("body").innerText({ timeout: 2000 }).catch(() => "(no page text)"))
        .replace(/\s+/g, " ")
        .trim()
        .slice(0, 600);
    const failWith = async (what) => {
      await screenshot("error");
      const status = lastStatus === null ? "" : ` (HTTP ${lastStatus})`;
      throw new Error(`${what} at ${page.url()}${status}; the page says: ${await visibleText()}`);
    };

    // act(): performs a click that submits a form; the navigation it starts
    // either lands on another page of the server or leaves for the client.
    const act = async (locator) => {
      await Promise.all([
        page.waitForLoadState("load").catch(() => {}),
        locator.click().catch((err) => {
          if (!redirect) throw err;
        }),
      ]);
      await Promise.race([
        redirectFinished,
        page.waitForLoadState("load").catch(() => {}),
      ]);
    };

    log(`GET ${shortenCode(url)}`);
    try {
      await page.goto(url, { waitUntil: "load" });
    } catch (err) {
      if (!redirect) throw new Error(`cannot open the authorization URL: ${err.message}`);
    }

    const pages = [];
    for (let round = 0; round < 6; round++) {
      if (redirect) {
        await redirectFinished;
        if (redirectError) {
          throw new Error(`nothing answered at the redirect URI ${shortenCode(redirect.url())}: ${redirectError}`);
        }
        return { redirectUrl: redirect.url(), pages };
      }
      const login = page.locator(LOGIN_BUTTON);
      const allow = page.locator(CONSENT_BUTTON("allow"));
      if (await login.count()) {
        if (pages.includes("login")) await failWith("the login was refused");
        const user = page.locator('input[name="username"]');
        const pass = page.locator('input[name="password"][type="password"]');
        if ((await user.count()) !== 1 || (await pass.count()) !== 1) {
          await failWith('the login page has no single input name="username" and type="password" name="password"');
        }
        if (username === undefined || password === undefined) throw new Error("a login page was shown but no username/password given");
        await screenshot("login");
        await user.fill(username);
        await pass.fill(password);
        log(`login page: signing in as ${username}`);
        pages.push("login");
        await act(login);
      } else if (await allow.count()) {
        const button = page.locator(CONSENT_BUTTON(consent));
        if ((await button.count()) !== 1) await failWith(`the consent page has no single ${consent} button`);
        await screenshot("consent");
        log(`consent page: ${(await visibleText()).slice(0, 200)}`);
        log(`consent page: clicking ${consent}`);
        pages.push("consent");
        await act(button);
      } else {
        await failWith("neither a login nor a consent page, and no redirect to the client");
      }
    }
    throw new Error(`no redirect to the client after ${pages.join(", ")}; last page ${page.url()}`);
  } finally {
    await browser.close().catch(() => {});
  }
}

async function main(argv) {
  let url = null;
  const opts = {
    username: process.env.MCPGATE_TEST_USER,
    password: process.env.MCPGATE_TEST_PASSWORD,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--deny") opts.consent = "deny";
    else if (arg === "--redirect-uri") opts.redirectUri = value();
    else if (arg === "--screenshots") opts.screenshots = value();
    else if (arg === "-h" || arg === "--help") {
      console.log("usage: node browser.mjs URL [--deny] [--redirect-uri URI] [--screenshots DIR]\n" +
        "  user and password from $MCPGATE_TEST_USER / $MCPGATE_TEST_PASSWORD");
      return 0;
    } else if (arg.startsWith("-")) throw new Error(`unknown option ${arg}`);
    else if (url === null) url = arg;
    else throw new Error(`unexpected argument ${arg}`);
  }
  if (!url) throw new Error("usage: node browser.mjs URL [--deny] [--redirect-uri URI] [--screenshots DIR]");
  const { redirectUrl, pages } = await authorizeInBrowser(url, opts);
  console.log(`redirected to ${shortenCode(redirectUrl)} (after ${pages.join(", ") || "no page"})`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      console.error(`browser: ${err.message}`);
      process.exit(1);
    },
  );
}
