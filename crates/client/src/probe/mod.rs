//! `mcpgate probe URL`: an authorization check-up for any MCP server.
//!
//! It walks the discovery an MCP client walks and reports a [`Check`] per
//! requirement, in the order of [`checks::CATALOG`]:
//!
//! 1. [`endpoint`]: an `initialize` (2025-11-25) and a `server/discover`
//!    (2026-07-28) without credentials, the 401 and its challenge;
//! 2. [`resource_metadata`]: Protected Resource Metadata from the
//!    challenge's `resource_metadata`, else the well-known URIs;
//! 3. [`metadata`]: the first authorization server's metadata at the
//!    well-known URLs in the specification's order;
//! 4. [`hazards`]: interoperability hazards, with harmless requests (an
//!    authorization request and a token request for a client that does not
//!    exist; a registration only with `--register-test-client`);
//! 5. [`token`]: made-up and unsigned tokens must be refused; with
//!    `--token`, what the server does with a real one.
//!
//! Then [`clients`] derives which common clients can connect.

mod checks;
mod clients;
mod endpoint;
mod hazards;
mod metadata;
mod report;
mod resource_metadata;
mod token;

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;
use zeroize::Zeroizing;

use crate::challenge::Challenge;
use crate::discovery;
use crate::http::{Fetched, Http, TIMEOUT};

pub use checks::{CATALOG, Spec};
pub use report::{Check, ClientCompat, Compat, Level, Report, Verdict};

/// An access token given with `--token`. Its `Debug` is redacted and it is
/// wiped when dropped; it is sent only to the MCP endpoint.
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl Token {
    pub fn new(t: String) -> Self {
        Self(Zeroizing::new(t))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// What to probe beyond the unauthenticated discovery.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ProbeOptions {
    /// An access token for the MCP endpoint (active checks).
    pub token: Option<Token>,
    /// Extra headers for requests to the MCP endpoint only (never to
    /// metadata or authorization server URLs).
    pub headers: Vec<(String, String)>,
    /// Another MCP server on the same origin: the token must be refused
    /// there.
    pub other_resource: Option<String>,
    /// Register a native test client to see whether loopback redirect URIs
    /// are accepted. Creates a client at the authorization server.
    pub register_test_client: bool,
    /// Run the authorization code flow (as `mcpgate connect` does, with a
    /// throwaway token cache) to get a token for the active checks.
    pub login: bool,
    /// Where `login` sends the person: the desktop browser, a printed URL,
    /// or a command.
    pub login_browser: Option<crate::connect::Browser>,
    /// Per-request limit (default [`TIMEOUT`]).
    pub timeout: Option<Duration>,
}

impl fmt::Debug for ProbeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeOptions")
            .field("token", &self.token)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| format!("{k}: <redacted>"))
                    .collect::<Vec<_>>(),
            )
            .field("other_resource", &self.other_resource)
            .field("register_test_client", &self.register_test_client)
            .field("login", &self.login)
            .field("login_browser", &self.login_browser)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Probes the MCP server at `url` (the URL clients are given).
pub async fn probe(url: &str, opts: &ProbeOptions) -> Report {
    let raw = url.trim();
    let mut report = Report::new(raw);
    let Some(parsed) = endpoint::target(raw, &mut report) else {
        return finish(report, &Findings::default(), "the server URL is not usable");
    };
    let http = match Http::new(opts.timeout.unwrap_or(TIMEOUT)) {
        Ok(h) => h,
        Err(e) => {
            report.checks.push(Check::new(
                "mcp.reachable",
                Verdict::Violated,
                format!("cannot start an HTTP client: {e}"),
            ));
            return finish(report, &Findings::default(), "no HTTP client");
        }
    };
    let mut p = Probe {
        opts,
        http,
        report,
        raw: raw.to_owned(),
        url: parsed,
        f: Findings::default(),
    };
    if endpoint::run(&mut p).await {
        resource_metadata::run(&mut p).await;
        metadata::run(&mut p).await;
        hazards::run(&mut p).await;
        token::run(&mut p).await;
    }
    let Probe { report, f, .. } = p;
    finish(report, &f, "the MCP endpoint did not answer")
}

/// Reports every catalog id not reported yet as skipped, sorts the checks
/// in catalog order and derives client compatibility.
fn finish(mut report: Report, f: &Findings, reason: &str) -> Report {
    for s in CATALOG {
        if report.check(s.id).is_none() {
            report.checks.push(Check::new(
                s.id,
                Verdict::Skipped,
                format!("not checked: {reason}"),
            ));
        }
    }
    let pos = |id: &str| {
        CATALOG
            .iter()
            .position(|s| s.id == id)
            .unwrap_or(usize::MAX)
    };
    report.checks.sort_by_key(|c| pos(c.id));
    report.clients = clients::derive(&report, f);
    report
}

/// What the steps learned, for later steps and the compatibility table.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// The initialize without credentials got this status.
    pub legacy_status: Option<u16>,
    /// A 2xx without credentials: nothing is protected.
    pub unprotected: bool,
    /// The Bearer challenge of the 401.
    pub challenge: Option<Challenge>,
    pub prm: Option<Prm>,
    /// The authorization server's identifier (from the PRM), parsed.
    pub issuer: Option<Url>,
    /// Its metadata, when found and usable (JSON object).
    pub as_metadata: Option<Map<String, Value>>,
    /// Where the metadata was found.
    pub as_metadata_url: Option<String>,
    /// The registration with `--register-test-client`: the client id, or
    /// why it was refused.
    pub dcr_native: Option<Result<String, String>>,
    /// Authorization server metadata at the MCP server's origin.
    pub origin_as_metadata: Option<bool>,
}

impl Findings {
    /// A string field of the authorization server metadata.
    pub fn as_str(&self, field: &str) -> Option<&str> {
        self.as_metadata.as_ref()?.get(field)?.as_str()
    }

    pub fn cimd(&self) -> bool {
        self.as_metadata
            .as_ref()
            .and_then(|m| m.get("client_id_metadata_document_supported"))
            == Some(&Value::Bool(true))
    }

    /// `token_endpoint_auth_methods_supported`, or RFC 8414 §2's default
    /// (`client_secret_basic`) when absent.
    pub fn token_auth_methods(&self) -> Vec<String> {
        match self
            .as_metadata
            .as_ref()
            .and_then(|m| m.get("token_endpoint_auth_methods_supported"))
        {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => vec!["client_secret_basic".to_owned()],
        }
    }
}

/// The Protected Resource Metadata document that was used.
#[derive(Debug, Clone)]
pub(crate) struct Prm {
    pub authorization_servers: Vec<String>,
}

/// The state of one probe run.
pub(crate) struct Probe<'a> {
    pub opts: &'a ProbeOptions,
    pub http: Http,
    pub report: Report,
    /// The server URL as given (compared byte for byte).
    pub raw: String,
    pub url: Url,
    pub f: Findings,
}

impl Probe<'_> {
    pub fn push(&mut self, c: Check) {
        self.report.checks.push(c);
    }

    /// Reports each id not reported yet as skipped.
    pub fn skip(&mut self, ids: &[&'static str], reason: &str) {
        for id in ids {
            if self.report.check(id).is_none() {
                self.push(Check::new(id, Verdict::Skipped, reason));
            }
        }
    }

    /// Whether the probe may send a request to `url`, which the server
    /// named (metadata, endpoints). A server on a public address may not
    /// point the probe at a loopback or private one: its answers would end
    /// up in the report (SSRF; MCP security best practices).
    pub fn may_fetch(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{url} is not an http(s) URL: not fetched"));
        }
        if discovery::is_private_address(url) && !discovery::is_private_address(&self.url) {
            return Err(format!(
                "{url} points at a loopback or private address while the server is public: not fetched"
            ));
        }
        Ok(())
    }

    /// A GET for a JSON document at a URL the server named.
    pub async fn fetch_discovered(&self, url: &str) -> Result<Fetched, String> {
        let u = Url::parse(url).map_err(|_| format!("{url} is not a URL"))?;
        self.may_fetch(&u)?;
        self.http.fetch_json(url).await
    }

    /// A JSON-RPC POST to `url` (the MCP endpoint, or the caller's
    /// `--other-resource`) with the caller's extra headers, `extra`, and
    /// `bearer` if given.
    pub async fn mcp_post(
        &self,
        url: &str,
        body: &Value,
        extra: &[(&str, &str)],
        bearer: Option<&str>,
    ) -> Result<Fetched, String> {
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        req = self.caller_headers(req);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        self.http.send(req).await
    }

    /// A GET of `url` for an event stream, the first request of the
    /// 2024-11-05 HTTP+SSE transport, with the caller's extra headers; the
    /// stream is read up to its first event.
    pub async fn mcp_get_event_stream(&self, url: &str) -> Result<Fetched, String> {
        let req = self.http.get(url).header("accept", "text/event-stream");
        self.http.send(self.caller_headers(req)).await
    }

    /// `req` with the caller's `--header`s, which go to the MCP endpoint
    /// only.
    fn caller_headers(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (k, v) in &self.opts.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token_or_header_values() {
        let o = ProbeOptions {
            token: Some(Token::new("secret-token-value".into())),
            headers: vec![("X-Key".into(), "secret-header-value".into())],
            ..ProbeOptions::default()
        };
        let d = format!("{o:?}");
        assert!(!d.contains("secret-token-value") && !d.contains("secret-header-value"));
        assert!(d.contains("X-Key"));
    }
}
