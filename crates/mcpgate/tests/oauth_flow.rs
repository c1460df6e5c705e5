//! The authorization code flow of the built-in authorization server,
//! through the real binary on loopback: login and consent pages (driven
//! over HTTP the way a browser submits them; the interop run does it with
//! Chromium), PKCE, codes, refresh rotation and reuse detection,
//! revocation and introspection, dynamic registration and
//! `private_key_jwt`. Each attack checks the documented error and that
//! nothing was issued.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

mod common;
use common::{BIN, Served};

const PASSWORD: &str = "correct horse battery staple";
const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const WEB_CALLBACK: &str = "https://app.example/oauth/callback";

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

/// The gateway with its built-in authorization server and user alice.
struct Gw {
    served: Served,
    http: reqwest::Client,
}

impl std::ops::Deref for Gw {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.served
    }
}

impl Gw {
    /// Writes a config (with `extra` appended to `[authorization_server]`),
    /// creates user alice, starts `serve`.
    async fn start(extra: &str) -> Gw {
        let mut served = Served::configure(&format!(
            r#"[authorization_server]
enabled = true
{extra}

[[routes]]
path = "/mcp"
upstream_command = ["mcpgate-echo-server"]
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]
"#
        ));
        let out = Command::new(BIN)
            .args(["user", "add", "alice", "--password-stdin", "--config"])
            .arg(&served.cfg)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(PASSWORD.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
        served.start().await;
        Gw {
            served,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn cli(&self, args: &[&str]) -> Value {
        self.served.cli_ok(args)
    }

    /// A public client with the conformance suite's redirect URI.
    fn public_client(&self) -> String {
        let v = self.cli(&[
            "client",
            "add",
            "--name",
            "Test <b>app</b>",
            "--redirect-uri",
            CALLBACK,
        ]);
        v["client_id"].as_str().unwrap().to_owned()
    }

    fn resource(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// `mcpgate audit export`, one JSON value per record.
    fn audit_export(&self) -> Vec<Value> {
        let out = Command::new(BIN)
            .args(["audit", "export", "--config"])
            .arg(&self.cfg)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Redeems an authorization `code` issued to CALLBACK, with `extra`
    /// form fields after the usual ones.
    async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        client_id: &str,
        extra: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier),
            ("client_id", client_id),
        ];
        form.extend_from_slice(extra);
        self.token(&form).await
    }

    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    async fn mcp(&self, token: &str) -> u16 {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        self.http
            .post(format!("{}/mcp", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .body(init.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// A browser: keeps cookies, submits forms, does not follow redirects.
#[derive(Clone)]
struct Browser {
    http: reqwest::Client,
    jar: Arc<Mutex<HashMap<String, String>>>,
}

struct Page {
    status: u16,
    location: Option<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn field(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&needle)? + needle.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].replace("&amp;", "&"))
    }

    /// The query parameters of the redirect, each name with all its values.
    fn redirect_params(&self) -> HashMap<String, Vec<String>> {
        let loc = self.location.as_deref().expect("a redirect");
        let u = url::Url::parse(loc).unwrap();
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in u.query_pairs() {
            m.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        m
    }
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            jar: Arc::default(),
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Page {
        let cookies: Vec<String> = self
            .jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let rb = if cookies.is_empty() {
            rb
        } else {
            rb.header("cookie", cookies.join("; "))
        };
        let r = rb.send().await.unwrap();
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            let mut jar = self.jar.lock().unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status: r.status().as_u16(),
            location: r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned()),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    async fn get(&self, url: &str) -> Page {
        self.send(self.http.get(url)).await
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Page {
        self.send(self.http.post(url).form(form)).await
    }
}

/// Builds token-request fields from a code and its PKCE pair.
type FormFor = Box<dyn Fn(&str, &Pkce) -> Vec<(String, String)>>;

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let mut v = [0u8; 32];
    mcpgate_crypto::random_bytes(&mut v).unwrap();
    let verifier = b64(&v);
    let challenge = b64(&mcpgate_crypto::sha256(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

fn authorize_url(
    gw: &Gw,
    client_id: &str,
    redirect: &str,
    p: &Pkce,
    extra: &[(&str, &str)],
) -> String {
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", gw.base)).unwrap();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "st4te")
            .append_pair("code_challenge", &p.challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// Posts the login form of the authorization page as alice, with the
/// pending `request` and `csrf` fields given (tests forge them).
async fn post_login(gw: &Gw, b: &Browser, request: &str, csrf: &str, password: &str) -> Page {
    b.post(
        &format!("{}/oauth/authorize", gw.base),
        &[
            ("action", "login"),
            ("request", request),
            ("csrf", csrf),
            ("username", "alice"),
            ("password", password),
        ],
    )
    .await
}

/// Posts the consent form (`action`: allow or deny) with the `request` and
/// `csrf` fields given.
async fn post_consent(gw: &Gw, b: &Browser, action: &str, request: &str, csrf: &str) -> Page {
    b.post(
        &format!("{}/oauth/authorize", gw.base),
        &[("action", action), ("request", request), ("csrf", csrf)],
    )
    .await
}

/// Logs in as alice (unless signed in already) and allows: returns the
/// redirect page.
async fn login_and_allow(gw: &Gw, b: &Browser, url: &str) -> Page {
    let login = b.get(url).await;
    assert_eq!(login.status, 200, "{}", login.body);
    if login.body.contains("value=\"allow\"") {
        return allow_again(gw, b, url).await;
    }
    let page = post_login(
        gw,
        b,
        &login.field("request").unwrap(),
        &login.field("csrf").unwrap(),
        PASSWORD,
    )
    .await;
    if page.status == 303 {
        return page;
    }
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("value=\"allow\""), "{}", page.body);
    post_consent(
        gw,
        b,
        "allow",
        &page.field("request").unwrap(),
        &page.field("csrf").unwrap(),
    )
    .await
}

/// Signed in already: allows on the consent page (shown again for a
/// loopback redirect URI) and returns the redirect.
async fn allow_again(gw: &Gw, b: &Browser, url: &str) -> Page {
    let page = b.get(url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    post_consent(
        gw,
        b,
        "allow",
        &page.field("request").unwrap(),
        &page.field("csrf").unwrap(),
    )
    .await
}

/// A full flow for a public client: returns the token response.
async fn code_flow(gw: &Gw, client_id: &str) -> Value {
    let p = pkce();
    let b = Browser::new();
    let back = login_and_allow(gw, &b, &authorize_url(gw, client_id, CALLBACK, &p, &[])).await;
    assert_eq!(back.status, 303);
    let q = back.redirect_params();
    let code = q["code"][0].clone();
    let (status, t, _) = gw.redeem(&code, &p.verifier, client_id, &[]).await;
    assert_eq!(status, 200, "{t}");
    t
}

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn oauth21_4_1_code_flow_login_consent_token_refresh_revoke() {
    let gw = Gw::start("").await;
    let client = gw.public_client();
    let p = pkce();
    let b = Browser::new();
    let url = authorize_url(&gw, &client, CALLBACK, &p, &[]);

    // The login page: hardened, escaping the client's name.
    let login = b.get(&url).await;
    assert_eq!(login.status, 200);
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert!(login.body.contains("Test &lt;b&gt;app&lt;/b&gt;"));
    assert!(!login.body.contains("<b>app</b>"));
    let set_cookie = login.headers["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));

    // A wrong password: the login page again, nothing issued.
    let bad = post_login(
        &gw,
        &b,
        &login.field("request").unwrap(),
        &login.field("csrf").unwrap(),
        "wrong",
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(bad.location.is_none());
    assert!(bad.body.contains("Sign-in failed"));

    let back = login_and_allow(&gw, &b, &url).await;
    assert_eq!(back.status, 303);
    let q = back.redirect_params();
    assert!(back.location.as_deref().unwrap().starts_with(CALLBACK));
    assert_eq!(q["state"], vec!["st4te"]);
    assert_eq!(q["iss"], vec![gw.base.clone()]);
    let code = q["code"][0].clone();

    let (status, t, headers) = gw.redeem(&code, &p.verifier, &client, &[]).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "mcp");
    let at = t["access_token"].as_str().unwrap().to_owned();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let c = claims(&at);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], gw.resource());
    assert_eq!(c["client_id"], client.as_str());
    assert_eq!(c["iss"], gw.base.as_str());
    assert_eq!(gw.mcp(&at).await, 200);

    // A loopback redirect URI always shows the consent page again (any
    // local program could be the listener)...
    let p2 = pkce();
    let again = b
        .get(&authorize_url(&gw, &client, CALLBACK, &p2, &[]))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert!(again.body.contains("value=\"allow\""));
    // ...while for a web client consent is remembered: the second
    // authorization redirects at once.
    let web = gw.cli(&[
        "client",
        "add",
        "--name",
        "web",
        "--redirect-uri",
        WEB_CALLBACK,
    ]);
    let web = web["client_id"].as_str().unwrap();
    let first = login_and_allow(
        &gw,
        &b,
        &authorize_url(&gw, web, WEB_CALLBACK, &pkce(), &[]),
    )
    .await;
    assert_eq!(first.status, 303);
    let again = b
        .get(&authorize_url(&gw, web, WEB_CALLBACK, &pkce(), &[]))
        .await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert!(again.location.as_deref().unwrap().starts_with(WEB_CALLBACK));
    assert!(again.redirect_params().contains_key("code"));
    // A wider scope set than consented to asks again.
    let wider = b
        .get(&authorize_url(
            &gw,
            web,
            WEB_CALLBACK,
            &pkce(),
            &[("scope", "mcp notes:write")],
        ))
        .await;
    assert_eq!(wider.status, 200);

    // Refresh rotates.
    let (status, t2, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(status, 200, "{t2}");
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    let at2 = t2["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rt, rt2);
    assert_eq!(gw.mcp(&at2).await, 200);

    // Revoking the refresh token (RFC 7009) revokes the grant: the access
    // tokens of it are refused by the gateway, the refresh token is dead.
    let r = gw
        .http
        .post(format!("{}/oauth/revoke", gw.base))
        .form(&[("token", rt2.as_str()), ("client_id", client.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.mcp(&at2).await, 401);
    assert_eq!(gw.mcp(&at).await, 401);
    let (status, e, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt2),
            ("client_id", &client),
        ])
        .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));

    // `grants list` shows both consents; `grants revoke` withdraws the web
    // client's, so its next authorization asks again.
    let list = gw.cli(&["grants", "list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    for id in [client.as_str(), web] {
        assert!(
            list.iter()
                .any(|g| g["user"] == "alice" && g["client_id"] == id && g["scope"] == "mcp"),
            "{id}: {list:?}"
        );
    }
    let r = gw.cli(&["grants", "revoke", "alice", web]);
    assert_eq!(r["consents_removed"], 1);
    assert_eq!(gw.cli(&["grants", "list"]).as_array().unwrap().len(), 1);
    let asks = b
        .get(&authorize_url(&gw, web, WEB_CALLBACK, &pkce(), &[]))
        .await;
    assert_eq!(asks.status, 200);
    assert!(asks.body.contains("value=\"allow\""));
    assert!(!gw.log().contains(&rt), "a refresh token reached the log");
    // The audit trail recorded the login, the consent and the tokens.
    let records = gw.audit_export();
    for kind in [
        "login_failure",
        "login_success",
        "consent_given",
        "token_issued",
        "token_refreshed",
        "token_revoked",
    ] {
        assert!(
            records
                .iter()
                .any(|r| r["kind"] == kind && r["client_id"] == client.as_str()),
            "{kind} missing"
        );
    }
    let all = records.iter().map(Value::to_string).collect::<String>();
    assert!(!all.contains(&rt) && !all.contains(&at) && !all.contains(PASSWORD));
}

#[tokio::test]
async fn rfc9207_iss_and_state_on_error_redirects_and_denial() {
    let gw = Gw::start("").await;
    let client = gw.public_client();
    let b = Browser::new();
    let p = pkce();
    let base = authorize_url(&gw, &client, CALLBACK, &p, &[]);
    // Missing PKCE, plain PKCE, wrong response_type, unknown resource,
    // impossible scope: redirected with error, state and iss, no code.
    let no_pkce = base
        .replace(&format!("&code_challenge={}", p.challenge), "")
        .replace("&code_challenge_method=S256", "");
    for (url, error) in [
        (no_pkce, "invalid_request"),
        (
            base.replace("code_challenge_method=S256", "code_challenge_method=plain"),
            "invalid_request",
        ),
        (
            base.replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            format!("{base}&resource=https%3A%2F%2Fevil.example%2Fmcp"),
            "invalid_target",
        ),
        (
            format!(
                "{base}&resource={}",
                urlencode(&format!("{}/mcp/", gw.base))
            ),
            "invalid_target",
        ),
        (format!("{base}&scope=admin"), "invalid_scope"),
    ] {
        let page = b.get(&url).await;
        assert_eq!(page.status, 303, "{url}: {}", page.body);
        let q = page.redirect_params();
        assert_eq!(q["error"], vec![error], "{url}");
        assert_eq!(q["state"], vec!["st4te"]);
        assert_eq!(q["iss"], vec![gw.base.clone()]);
        assert!(!q.contains_key("code"));
    }
    // Denial: access_denied with state and iss.
    let login = b.get(&base).await;
    let consent = post_login(
        &gw,
        &b,
        &login.field("request").unwrap(),
        &login.field("csrf").unwrap(),
        PASSWORD,
    )
    .await;
    assert!(
        consent.body.contains("localhost"),
        "localhost warning shown"
    );
    let denied = post_consent(
        &gw,
        &b,
        "deny",
        &consent.field("request").unwrap(),
        &consent.field("csrf").unwrap(),
    )
    .await;
    let q = denied.redirect_params();
    assert_eq!(q["error"], vec!["access_denied"]);
    assert_eq!(q["state"], vec!["st4te"]);
    assert_eq!(q["iss"], vec![gw.base.clone()]);
    assert!(gw.cli(&["grants", "list"]).as_array().unwrap().is_empty());
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn rfc9700_4_1_unregistered_redirect_uris_get_a_page_never_a_redirect() {
    let gw = Gw::start("").await;
    let client = gw.public_client();
    let b = Browser::new();
    let p = pkce();
    for bad in [
        "http://127.0.0.1:3000/callback/",
        "http://127.0.0.1:3000/Callback",
        "http://127.0.0.1:3000/callback?x=1",
        "http://127.0.0.1:3000/./callback",
        "http://127.0.0.1:3000/%63allback",
        "http://localhost:3000/callback",
        "http://127.0.0.1:3000@evil.example/callback",
        "https://evil.example/callback",
        "http://127.0.0.1:3000/callback#x",
    ] {
        let page = b.get(&authorize_url(&gw, &client, bad, &p, &[])).await;
        assert_eq!(page.status, 400, "{bad}");
        assert!(page.location.is_none(), "{bad}");
        assert!(page.body.contains("not registered"), "{bad}");
    }
    // Unknown client: a page too.
    let page = b
        .get(&authorize_url(&gw, "mcpc_nope", CALLBACK, &p, &[]))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.location.is_none());
    // RFC 8252 §7.3: another port on the loopback redirect is fine.
    let page = b
        .get(&authorize_url(
            &gw,
            &client,
            "http://127.0.0.1:51111/callback",
            &p,
            &[],
        ))
        .await;
    assert_eq!(page.status, 200);
}

#[tokio::test]
async fn csrf_consent_and_login_forms_refuse_forged_posts() {
    let gw = Gw::start("").await;
    let client = gw.public_client();
    let b = Browser::new();
    let p = pkce();
    let url = authorize_url(&gw, &client, CALLBACK, &p, &[]);
    let login = b.get(&url).await;
    let request = login.field("request").unwrap();
    let csrf = login.field("csrf").unwrap();
    // A login post from another browser (no login cookie): refused.
    let attacker = Browser::new();
    let r = post_login(&gw, &attacker, &request, &csrf, PASSWORD).await;
    assert_eq!(r.status, 403);
    // A tampered pending request: refused.
    let r = post_login(&gw, &b, &request.replacen('e', "f", 1), &csrf, PASSWORD).await;
    assert!(r.status == 400 || r.status == 403, "{}", r.status);
    // Logged in, but the consent post carries the login CSRF token: refused.
    let consent = post_login(&gw, &b, &request, &csrf, PASSWORD).await;
    assert_eq!(consent.status, 200);
    let r = post_consent(&gw, &b, "allow", &request, &csrf).await;
    assert_eq!(r.status, 403);
    assert!(r.location.is_none());
    // A consent token bound to another pending request: refused.
    let other = pkce();
    let other_page = b
        .get(&authorize_url(&gw, &client, CALLBACK, &other, &[]))
        .await;
    let r = post_consent(
        &gw,
        &b,
        "allow",
        &other_page.field("request").unwrap(),
        &consent.field("csrf").unwrap(),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(gw.cli(&["grants", "list"]).as_array().unwrap().is_empty());
}

#[tokio::test]
async fn rfc7636_pkce_and_code_binding_failures_are_invalid_grant() {
    let gw = Gw::start("").await;
    let client = gw.public_client();
    let other = gw.public_client();
    let b = Browser::new();
    let mut next_code = {
        let p = pkce();
        let back = login_and_allow(&gw, &b, &authorize_url(&gw, &client, CALLBACK, &p, &[])).await;
        (back.redirect_params()["code"][0].clone(), p)
    };
    let fresh = |b: Browser| {
        let gw = &gw;
        let client = client.clone();
        async move {
            let p = pkce();
            let back = allow_again(gw, &b, &authorize_url(gw, &client, CALLBACK, &p, &[])).await;
            (back.redirect_params()["code"][0].clone(), p)
        }
    };
    let cases: Vec<(&str, FormFor)> = vec![
        (
            "wrong verifier",
            Box::new(|code, _| {
                vec![
                    ("code".into(), code.into()),
                    ("code_verifier".into(), "a".repeat(43)),
                ]
            }),
        ),
        (
            "missing verifier",
            Box::new(|code, _| vec![("code".into(), code.into())]),
        ),
        (
            "wrong redirect",
            Box::new(|code, p| {
                vec![
                    ("code".into(), code.into()),
                    ("code_verifier".into(), p.verifier.clone()),
                    (
                        "redirect_uri".into(),
                        "http://127.0.0.1:3001/callback".into(),
                    ),
                ]
            }),
        ),
    ];
    for (name, build) in cases {
        let (code, p) = std::mem::replace(&mut next_code, fresh(b.clone()).await);
        let mut form: Vec<(String, String)> = vec![
            ("grant_type".into(), "authorization_code".into()),
            ("client_id".into(), client.clone()),
        ];
        let has_redirect = build(&code, &p).iter().any(|(k, _)| k == "redirect_uri");
        form.extend(build(&code, &p));
        if !has_redirect {
            form.push(("redirect_uri".into(), CALLBACK.into()));
        }
        let f: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let (status, e, _) = gw.token(&f).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_grant")),
            "{name}: {e}"
        );
        assert!(e.get("access_token").is_none());
    }
    // RFC 8707: another resource at the token endpoint than in the
    // authorization request is refused.
    let (code, p) = std::mem::replace(&mut next_code, fresh(b.clone()).await);
    let (status, e, _) = gw
        .redeem(
            &code,
            &p.verifier,
            &client,
            &[("resource", &format!("{}/other", gw.base))],
        )
        .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_target")));
    assert!(e.get("access_token").is_none());
    // Another client presenting the code: invalid_grant.
    let (code, p) = next_code;
    let (status, e, _) = gw.redeem(&code, &p.verifier, &other, &[]).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    // And the code is spent: the rightful client cannot use it after.
    let (status, _, _) = gw.redeem(&code, &p.verifier, &client, &[]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn oauth21_4_1_3_concurrent_code_redemption_one_winner_and_replay_revokes() {
    let gw = Arc::new(Gw::start("").await);
    let client = gw.public_client();
    let p = pkce();
    let b = Browser::new();
    let back = login_and_allow(&gw, &b, &authorize_url(&gw, &client, CALLBACK, &p, &[])).await;
    let code = back.redirect_params()["code"][0].clone();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (gw, code, v, client) = (gw.clone(), code.clone(), p.verifier.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            gw.redeem(&code, &v, &client, &[]).await
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        let (status, body, _) = t.await.unwrap();
        if status == 200 {
            ok.push(body);
        } else {
            assert_eq!(body["error"], "invalid_grant");
        }
    }
    assert_eq!(ok.len(), 1, "exactly one redemption succeeds");
    let replays = gw
        .audit_export()
        .iter()
        .filter(|r| r["kind"] == "code_replay_detected")
        .count();
    assert_eq!(replays, 19, "every replay is audited");
    // The replays revoked what the winner got.
    let at = ok[0]["access_token"].as_str().unwrap();
    let rt = ok[0]["refresh_token"].as_str().unwrap();
    assert_eq!(gw.mcp(at).await, 401);
    let (status, _, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn oauth21_4_3_1_refresh_reuse_revokes_the_family_also_in_a_race() {
    let gw = Arc::new(Gw::start("").await);
    let client = gw.public_client();
    // Sequential reuse.
    let t = code_flow(&gw, &client).await;
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();
    let (s, t2, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt1),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(s, 200);
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    let at2 = t2["access_token"].as_str().unwrap().to_owned();
    // A refresh token is bound to its resource.
    let (s, e, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt2),
            ("client_id", &client),
            ("resource", &format!("{}/other", gw.base)),
        ])
        .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_target")));
    // Another client presenting it changes nothing.
    let other = gw.public_client();
    let (s, _, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt2),
            ("client_id", &other),
        ])
        .await;
    assert_eq!(s, 400);
    // The rotated token again: reuse, the family is revoked.
    let (s, e, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt1),
            ("client_id", &client),
        ])
        .await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let (s, _, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt2),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(s, 400, "the successor died with the family");
    assert_eq!(gw.mcp(&at2).await, 401);
    assert!(
        gw.audit_export()
            .iter()
            .any(|r| r["kind"] == "refresh_reuse_detected" && r["outcome"] == "detected"),
        "reuse detection is audited"
    );

    // Twenty concurrent refreshes of one token: at most one success, and
    // the family ends revoked.
    let t = code_flow(&gw, &client).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (gw, rt, client) = (gw.clone(), rt.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            gw.token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("client_id", &client),
            ])
            .await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (s, body, _) = t.await.unwrap();
        if s == 200 {
            winners.push(body);
        }
    }
    assert_eq!(winners.len(), 1);
    let new_rt = winners[0]["refresh_token"].as_str().unwrap();
    let (s, _, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", new_rt),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(s, 400, "the race revoked the family");
    assert_eq!(
        gw.mcp(winners[0]["access_token"].as_str().unwrap()).await,
        401
    );
}

#[tokio::test]
async fn refresh_of_a_disabled_account_is_refused_from_the_next_request_on() {
    let gw = Gw::start("").await;
    let client = gw.public_client();
    let t = code_flow(&gw, &client).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |rt: String| {
        let (gw, client) = (&gw, client.clone());
        async move {
            gw.token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("client_id", &client),
            ])
            .await
        }
    };
    // Disabled by the admin command (another process) while serve runs.
    gw.cli(&["user", "disable", "alice"]);
    let (s, e, _) = refresh(rt.clone()).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    // Refused, not consumed: enabled again, the same token rotates.
    gw.cli(&["user", "enable", "alice"]);
    let (s, t2, _) = refresh(rt).await;
    assert_eq!(s, 200, "{t2}");
}

#[tokio::test]
async fn rfc7591_registration_confidential_client_flow_and_introspection() {
    let gw = Gw::start("registrations_per_hour = 3").await;
    let reg = |body: Value| {
        let gw = &gw;
        async move {
            let r = gw
                .http
                .post(format!("{}/oauth/register", gw.base))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, e) = reg(json!({"redirect_uris": ["javascript:alert(1)"]})).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (400, Some("invalid_redirect_uri"))
    );
    // ChatGPT-style confidential registration.
    let (s, c) = reg(json!({
        "client_name": "Confidential", "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "client_secret_post"
    }))
    .await;
    assert_eq!(s, 201, "{c}");
    let id = c["client_id"].as_str().unwrap().to_owned();
    let secret = c["client_secret"].as_str().unwrap().to_owned();
    // Public registration.
    let (s, pc) = reg(json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none", "application_type": "native"})).await;
    assert_eq!(s, 201);
    assert!(pc.get("client_secret").is_none());
    // The rate limit (3 per hour here; the refused one above did not count).
    let (s, _) =
        reg(json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none"})).await;
    assert_eq!(s, 201);
    let (s, _) =
        reg(json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none"})).await;
    assert_eq!(s, 429);

    let p = pkce();
    let b = Browser::new();
    let back = login_and_allow(&gw, &b, &authorize_url(&gw, &id, CALLBACK, &p, &[])).await;
    let code = back.redirect_params()["code"][0].clone();
    // Without its secret the confidential client gets invalid_client.
    let (s, e, _) = gw.redeem(&code, &p.verifier, &id, &[]).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    // The code was not spent by an unauthenticated attempt.
    let (s, t, _) = gw
        .redeem(&code, &p.verifier, &id, &[("client_secret", &secret)])
        .await;
    assert_eq!(s, 200, "{t}");
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();

    // Introspection: the owner sees it active; a public client may not
    // introspect; another client's token is inactive to it.
    let intro = |form: Vec<(&'static str, String)>| {
        let gw = &gw;
        async move {
            let r = gw
                .http
                .post(format!("{}/oauth/introspect", gw.base))
                .form(&form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = intro(vec![
        ("token", at.into()),
        ("client_id", id.clone()),
        ("client_secret", secret.clone()),
    ])
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["active"], true);
    assert_eq!(v["sub"], "alice");
    assert_eq!(v["aud"], json!([gw.resource()]));
    let (s, _) = intro(vec![
        ("token", at.into()),
        ("client_id", pc["client_id"].as_str().unwrap().into()),
    ])
    .await;
    assert_eq!(s, 401);
    // A refresh token is active while current, inactive once rotated.
    let owner = |token: &str| {
        vec![
            ("token", token.to_owned()),
            ("client_id", id.clone()),
            ("client_secret", secret.clone()),
        ]
    };
    let (_, v) = intro(owner(rt)).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["token_type"], "refresh_token");
    let (s, _, _) = gw
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(s, 200);
    let (_, v) = intro(owner(rt)).await;
    assert_eq!(v, json!({"active": false}));
    let cc = gw.cli(&[
        "client",
        "add",
        "--name",
        "agent",
        "--confidential",
        "--grant",
        "client_credentials",
        "--auth-method",
        "client_secret_post",
    ]);
    let (s, v) = intro(vec![
        ("token", at.into()),
        ("client_id", cc["client_id"].as_str().unwrap().into()),
        (
            "client_secret",
            cc["client_secret"].as_str().unwrap().into(),
        ),
    ])
    .await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"active": false}));
    // After the owner revokes it, the access token is inactive and refused.
    let r = gw
        .http
        .post(format!("{}/oauth/revoke", gw.base))
        .form(&[
            ("token", at),
            ("client_id", &id),
            ("client_secret", &secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = intro(vec![
        ("token", at.into()),
        ("client_id", id.clone()),
        ("client_secret", secret.clone()),
    ])
    .await;
    assert_eq!(v["active"], false);
    assert_eq!(gw.mcp(at).await, 401);
}

#[tokio::test]
async fn rfc7523_private_key_jwt_client_credentials_and_replay() {
    use mcpgate_test_support::{TestKey, jwks};
    let gw = Gw::start("").await;
    let key = TestKey::es256("agent-key-1");
    let jwks_file = gw.dir.path().join("agent.jwks");
    std::fs::write(&jwks_file, jwks(&[&key]).to_string()).unwrap();
    let c = gw.cli(&[
        "client",
        "add",
        "--name",
        "jwt agent",
        "--confidential",
        "--grant",
        "client_credentials",
        "--auth-method",
        "private_key_jwt",
        "--jwks",
        jwks_file.to_str().unwrap(),
    ]);
    assert!(c.get("client_secret").is_none());
    let id = c["client_id"].as_str().unwrap().to_owned();
    let now = mcpgate_test_support::now();
    let assertion = |aud: &str, jti: &str, exp: u64| {
        key.sign(&json!({"iss": id, "sub": id, "aud": aud, "jti": jti, "iat": now, "exp": exp}))
    };
    let token_ep = format!("{}/oauth/token", gw.base);
    let ask = |a: String| {
        let gw = &gw;
        async move {
            gw.token(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &a),
            ])
            .await
        }
    };
    let a1 = assertion(&token_ep, "j1", now + 60);
    let (s, t, _) = ask(a1.clone()).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(
        claims(t["access_token"].as_str().unwrap())["sub"],
        id.as_str()
    );
    // Replay of the same assertion: refused.
    let (s, e, _) = ask(a1).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    // The issuer as audience is accepted too.
    let (s, _, _) = ask(assertion(&gw.base, "j2", now + 60)).await;
    assert_eq!(s, 200);
    // Another audience, an expired one, one valid for hours: refused.
    for a in [
        assertion("https://evil.example/token", "j3", now + 60),
        assertion(&token_ep, "j4", now - 300),
        assertion(&token_ep, "j5", now + 7200),
    ] {
        let (s, e, _) = ask(a).await;
        assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    }
    // Signed by another key: refused.
    let other = TestKey::es256("agent-key-1");
    let forged = other.sign(
        &json!({"iss": id, "sub": id, "aud": token_ep, "jti": "j6", "iat": now, "exp": now + 60}),
    );
    let (s, _, _) = ask(forged).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn token_endpoint_and_login_are_rate_limited_per_address() {
    let gw = Gw::start("token_requests_per_minute = 3\nlogin_attempts_per_minute = 2").await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "nobody"),
    ];
    for _ in 0..3 {
        let (s, e, _) = gw.token(&form).await;
        assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    }
    let (s, e, h) = gw.token(&form).await;
    assert_eq!((s, e["error"].as_str()), (429, Some("invalid_request")));
    assert_eq!(h["retry-after"], "60");

    let client = gw.public_client();
    let b = Browser::new();
    // Each failed login answers with a fresh form (new nonce and CSRF).
    let mut page = b
        .get(&authorize_url(&gw, &client, CALLBACK, &pkce(), &[]))
        .await;
    for (pw, status) in [("wrong", 401), ("wrong", 401), (PASSWORD, 429)] {
        page = post_login(
            &gw,
            &b,
            &page.field("request").unwrap(),
            &page.field("csrf").unwrap(),
            pw,
        )
        .await;
        assert_eq!(page.status, status, "{}", page.body);
    }
    // Even the right password waits; nothing is issued.
    assert!(page.location.is_none());
    assert!(page.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn issuer_and_endpoints_ignore_host_and_forwarded_headers() {
    let gw = Gw::start("").await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let r = gw
            .http
            .get(format!("{}{path}", gw.base))
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "https")
            .header("forwarded", "host=evil.example;proto=https")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("evil.example"), "{path}: {text}");
        assert!(text.contains(&gw.base), "{path}");
    }
    // A foreign Host is not reflected either (on a loopback public_url it
    // is refused outright, or answered with the configured issuer).
    let r = gw
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            gw.base
        ))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(!text.contains("evil.example"), "{status}: {text}");
}

/// `mcpgate connect` as a stdio client's bridge: the authorization code flow
/// with the login URL printed on stderr (`--no-browser`), the person's part
/// played over HTTP, the redirect delivered to the bridge's loopback
/// listener; then, with the access token revoked, a later bridge refreshes
/// on the 401 (the refresh token rotates) instead of asking for a login.
#[tokio::test]
async fn mcp_connect_code_flow_then_refresh_on_401() {
    use mcpgate_client::connect::cache::{Cache, KeyringUse};
    use std::io::{BufRead as _, Write as _};

    let gw = Gw::start("").await;
    let url = gw.resource();
    let cache_dir = gw.dir.path().join("connect");
    let lines = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}}),
    ];
    let spawn = |timeout: &str| {
        let mut child = Command::new(BIN)
            .args([
                "connect",
                "--no-browser",
                "--login-timeout",
                timeout,
                "--cache-dir",
            ])
            .arg(&cache_dir)
            .arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for l in &lines {
            writeln!(stdin, "{l}").unwrap();
        }
        drop(stdin);
        child
    };
    let whoami = |out: std::process::Output| -> String {
        let stdout = String::from_utf8(out.stdout).unwrap();
        let reply: Value = stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|v| v["id"] == 2)
            .unwrap_or_else(|| panic!("no reply: {stdout}"));
        reply["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{reply}"))
            .to_owned()
    };

    let mut child = spawn("60");
    // The login URL, from the bridge's stderr.
    let stderr = child.stderr.take().unwrap();
    let auth_url = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map(Result::unwrap)
            .find(|l| l.contains("/oauth/authorize?"))
            .unwrap()
    })
    .await
    .unwrap();
    let q: HashMap<String, String> = url::Url::parse(&auth_url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["resource"], url);
    assert!(q["redirect_uri"].starts_with("http://127.0.0.1:"));
    let b = Browser::new();
    let done = login_and_allow(&gw, &b, &auth_url).await;
    assert_eq!(done.status, 303);
    let callback = done.location.unwrap();
    assert!(callback.starts_with(&q["redirect_uri"]), "{callback}");
    let r = reqwest::get(&callback).await.unwrap();
    assert_eq!(r.status(), 200);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(whoami(out), "alice");

    // Revoke the kept access token (RFC 7009): the gateway refuses it now.
    let first = Cache::open(Some(cache_dir.clone()), KeyringUse::Auto)
        .unwrap()
        .load(&url)
        .tokens
        .unwrap();
    assert!(first.refresh_token.is_some());
    let r = gw
        .http
        .post(format!("{}/oauth/revoke", gw.base))
        .form(&[
            ("token", first.access_token.as_str()),
            ("client_id", first.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gw.mcp(&first.access_token).await, 401);

    // A new bridge gets 401, refreshes, and carries on without a login
    // (with --no-browser and a 2 s login timeout, a login would fail).
    let child = spawn("2");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(whoami(out), "alice");
    let second = Cache::open(Some(cache_dir.clone()), KeyringUse::Auto)
        .unwrap()
        .load(&url)
        .tokens
        .unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token, first.refresh_token, "rotated");
}
