//! The code flow as a browser and a public client drive it over HTTP:
//! forms posted by hand, cookies kept, redirects not followed, one
//! keep-alive connection each, every step timed.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// No single request of the run may take longer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The `state` every flow sends (and checks on the way back).
const STATE: &str = "s";
const AUTHORIZE: &str = "/oauth/authorize";
pub const TOKEN: &str = "/oauth/token";

/// The server, the registered public client and the user who signs in.
#[derive(Debug)]
pub struct Client {
    pub issuer: String,
    pub client_id: String,
    pub username: &'static str,
    pub password: &'static str,
}

/// An answer with its body read.
#[derive(Debug)]
pub struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The value of the hidden input `name` of an HTML form.
    fn field(&self, name: &str) -> Option<String> {
        let body = self.text();
        let needle = format!("name=\"{name}\" value=\"");
        let start = body.find(&needle)? + needle.len();
        let end = body[start..].find('"')? + start;
        Some(body[start..end].replace("&amp;", "&"))
    }

    fn location(&self) -> Option<&str> {
        self.headers.get(header::LOCATION)?.to_str().ok()
    }
}

/// One keep-alive HTTP/1.1 connection, reopened if the server closed it.
#[derive(Debug)]
pub struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    /// Sends one request (a form body when `form` is given) and reads the
    /// whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        form: Option<String>,
    ) -> anyhow::Result<Reply> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => connect(self.addr).await?,
        };
        sender.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string());
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let body = match form {
            Some(f) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(f)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body))?;
        let (status, headers, body) = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = sender.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok((parts.status, parts.headers, body))
        })
        .await
        .with_context(|| format!("no answer from mcpgate within {REQUEST_TIMEOUT:?}"))??;
        self.sender = Some(sender);
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A browser: one connection, a cookie jar, no redirects followed.
#[derive(Debug)]
pub struct Browser {
    conn: Conn,
    jar: BTreeMap<String, String>,
}

impl Browser {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            conn: Conn::new(addr),
            jar: BTreeMap::new(),
        }
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: Option<String>,
    ) -> anyhow::Result<Reply> {
        let cookie = (!self.jar.is_empty()).then(|| {
            self.jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        });
        let r = self
            .conn
            .send(method, path, cookie.as_deref(), form)
            .await?;
        for c in r.headers.get_all(header::SET_COOKIE) {
            let c = c.to_str()?;
            let kv = c.split(';').next().unwrap_or(c);
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            if v.is_empty() || c.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
        }
        Ok(r)
    }
}

/// A step of the code flow, in the order a browser takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `GET /oauth/authorize`: a page, or 303 to the callback.
    Authorize,
    /// `POST action=login`: Argon2id, then the consent page or 303.
    Login,
    /// `POST action=allow`: 303 to the callback with the code.
    Consent,
    /// `POST /oauth/token` with the code and the PKCE verifier.
    Token,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Self::Authorize => "GET authorize",
            Self::Login => "POST login",
            Self::Consent => "POST consent",
            Self::Token => "POST token (code)",
        }
    }
}

/// The steps one flow took, and its whole time.
#[derive(Debug)]
pub struct FlowTiming {
    pub steps: Vec<(Step, Duration)>,
    pub total: Duration,
    /// To a loopback redirect URI (a native application).
    pub loopback: bool,
}

impl FlowTiming {
    /// Which kind of flow it was, told by the pages it went through.
    pub fn kind(&self) -> &'static str {
        let has = |s| self.steps.iter().any(|(x, _)| *x == s);
        match (has(Step::Login), has(Step::Consent), self.loopback) {
            (true, true, _) => "first sign-in (argon2 + consent)",
            (true, false, _) => "new browser (argon2, consent remembered)",
            (false, true, true) => "loopback redirect (session, consent page every time)",
            (false, true, false) => "session, consent page",
            (false, false, _) => "returning user (session, consent remembered)",
        }
    }
}

/// The tokens a code flow ended with.
#[derive(Debug)]
pub struct Tokens {
    pub refresh_token: String,
}

/// Times one step: the request on the browser's connection, answer read.
async fn timed(
    steps: &mut Vec<(Step, Duration)>,
    step: Step,
    b: &mut Browser,
    method: Method,
    path: &str,
    form: Option<String>,
) -> anyhow::Result<Reply> {
    let t0 = Instant::now();
    let r = b.send(method, path, form).await?;
    steps.push((step, t0.elapsed()));
    Ok(r)
}

/// One authorization code flow with PKCE to `redirect_uri`, as a browser
/// and a public client do it: authorize (sign in and consent when asked),
/// then redeem the code.
pub async fn code_flow(
    c: &Client,
    b: &mut Browser,
    redirect_uri: &str,
) -> anyhow::Result<(Tokens, FlowTiming)> {
    let mut v = [0u8; 32];
    mcpgate_crypto::random_bytes(&mut v).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let b64 = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let verifier = b64(&v);
    let challenge = b64(&mcpgate_crypto::sha256(verifier.as_bytes()));
    let query = form(&[
        ("response_type", "code"),
        ("client_id", &c.client_id),
        ("redirect_uri", redirect_uri),
        ("state", STATE),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let mut steps = Vec::new();
    let started = Instant::now();
    let mut page = timed(
        &mut steps,
        Step::Authorize,
        b,
        Method::GET,
        &format!("{AUTHORIZE}?{query}"),
        None,
    )
    .await?;
    // At most a login page and a consent page before the redirect.
    for _ in 0..2 {
        if page.status == StatusCode::SEE_OTHER {
            break;
        }
        if page.status != StatusCode::OK {
            bail!("authorization endpoint: {} {}", page.status, page.text());
        }
        let request = page.field("request").context("no request field")?;
        let csrf = page.field("csrf").context("no csrf field")?;
        page = if page.text().contains("name=\"password\"") {
            let body = form(&[
                ("action", "login"),
                ("request", &request),
                ("csrf", &csrf),
                ("username", c.username),
                ("password", c.password),
            ]);
            timed(
                &mut steps,
                Step::Login,
                b,
                Method::POST,
                AUTHORIZE,
                Some(body),
            )
            .await?
        } else if page.text().contains("value=\"allow\"") {
            let body = form(&[("action", "allow"), ("request", &request), ("csrf", &csrf)]);
            timed(
                &mut steps,
                Step::Consent,
                b,
                Method::POST,
                AUTHORIZE,
                Some(body),
            )
            .await?
        } else {
            bail!("neither a login nor a consent page: {}", page.text());
        };
    }
    if page.status != StatusCode::SEE_OTHER {
        bail!(
            "authorization did not redirect: {} {}",
            page.status,
            page.text()
        );
    }
    let location = page.location().context("a 303 without Location")?;
    let back = url::Url::parse(location)?;
    if !location.starts_with(redirect_uri) {
        bail!("redirected to {location}, not to the client's callback");
    }
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if param("state").as_deref() != Some(STATE) || param("iss").as_deref() != Some(&c.issuer) {
        bail!("redirect without the state or the issuer: {location}");
    }
    let code = param("code").with_context(|| format!("no code in {location}"))?;
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", &verifier),
        ("client_id", &c.client_id),
    ]);
    // The token request comes from the client, not the browser: no cookies.
    let t0 = Instant::now();
    let r = b.conn.send(Method::POST, TOKEN, None, Some(body)).await?;
    steps.push((Step::Token, t0.elapsed()));
    let total = started.elapsed();
    let refresh_token = token_response(&r)?;
    let loopback = match url::Url::parse(redirect_uri)?.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    Ok((
        Tokens { refresh_token },
        FlowTiming {
            steps,
            total,
            loopback,
        },
    ))
}

/// Checks a token response (200, an access token, a new refresh token) and
/// returns the refresh token.
pub fn token_response(r: &Reply) -> anyhow::Result<String> {
    if r.status != StatusCode::OK {
        bail!("token endpoint: {} {}", r.status, r.text());
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .with_context(|| format!("token endpoint: not JSON: {}", r.text()))?;
    let at = v["access_token"].as_str().unwrap_or_default();
    if at.split('.').count() != 3 {
        bail!("token endpoint: no JWT access token: {}", r.text());
    }
    Ok(v["refresh_token"]
        .as_str()
        .with_context(|| format!("token endpoint: no refresh_token: {}", r.text()))?
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> Reply {
        Reply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn hidden_fields_are_read_and_unescaped() {
        let p = page(
            r#"<input type="hidden" name="request" value="a.b&amp;c">
               <input type="hidden" name="csrf" value="x_y">"#,
        );
        assert_eq!(p.field("request").as_deref(), Some("a.b&c"));
        assert_eq!(p.field("csrf").as_deref(), Some("x_y"));
        assert_eq!(p.field("password"), None);
    }

    #[test]
    fn flows_are_told_apart_by_their_pages() {
        let flow = |steps: &[Step], loopback| FlowTiming {
            steps: steps.iter().map(|s| (*s, Duration::ZERO)).collect(),
            total: Duration::ZERO,
            loopback,
        };
        use Step::*;
        let first = flow(&[Authorize, Login, Consent, Token], false);
        assert!(first.kind().starts_with("first sign-in"));
        assert!(
            flow(&[Authorize, Token], false)
                .kind()
                .starts_with("returning user")
        );
        assert!(
            flow(&[Authorize, Consent, Token], true)
                .kind()
                .starts_with("loopback")
        );
        assert!(
            flow(&[Authorize, Login, Token], false)
                .kind()
                .starts_with("new browser")
        );
    }

    #[test]
    fn forms_are_url_encoded() {
        assert_eq!(form(&[("a", "x y"), ("b", "&=")]), "a=x+y&b=%26%3D");
    }
}
