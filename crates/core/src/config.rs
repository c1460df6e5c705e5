//! The configuration tree: one TOML file, parsed once into these types.
//!
//! Unknown keys are errors (`deny_unknown_fields`), and every error carries
//! the line and column toml reports for the offending key or value. Values
//! that name secrets or locations may use `${ENV_VAR}`; interpolation happens
//! on the parsed string, so an environment value can never inject TOML.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{ResourceUri, Scope, ScopeSet};

/// A configuration error: where (file, line) and what.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the gateway listens on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The external base URL; resource URIs are `public_url + route.path`.
    pub public_url: PublicUrl,
    /// Address of the Prometheus metrics listener (off when absent).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    #[serde(default)]
    pub storage: Storage,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub identity_headers: IdentityHeaders,
    /// Scope hierarchy: a scope implies the scopes listed for it
    /// (transitively), e.g. `admin = ["files:read", "files:write"]`.
    #[serde(default)]
    pub scope_implies: BTreeMap<Scope, Vec<Scope>>,
    #[serde(default)]
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// The built-in authorization server (issuer = `public_url`).
    #[serde(default)]
    pub authorization_server: AuthorizationServer,
    /// The tamper-evident audit trail.
    #[serde(default)]
    pub audit: Audit,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Where relative paths in this file are resolved (the file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `public_url`: absolute, no path beyond `/`, no query or fragment; http
/// only on a loopback host.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("public_url {s:?} is not a URL: {e}"))?;
        let host = url
            .host()
            .ok_or_else(|| format!("public_url {s:?} has no host"))?;
        match url.scheme() {
            "https" => {}
            "http" => {
                let loopback = match host {
                    url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
                    url::Host::Ipv4(ip) => ip.is_loopback(),
                    url::Host::Ipv6(ip) => ip.is_loopback(),
                };
                if !loopback {
                    return Err(format!(
                        "public_url {s:?} uses http on a non-loopback host; use https \
                         (tokens would cross the network in the clear)"
                    ));
                }
            }
            other => return Err(format!("public_url scheme must be https, not {other:?}")),
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(format!(
                "public_url {s:?} must not have a query, fragment or user info"
            ));
        }
        // Keep the operator's spelling minus a trailing slash: it is the
        // issuer and the prefix of every resource URI, compared byte-exact.
        Ok(Self(s.trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The origin (scheme://host[:port]) for the default `allowed_origins`.
    pub fn origin(&self) -> String {
        url::Url::parse(&self.0)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }
}

impl fmt::Debug for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> Deserialize<'de> for PublicUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Interpolated::deserialize(d)?;
        PublicUrl::parse(&s.0).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// `sqlite://PATH` (relative paths are resolved against the config
    /// file's directory) or `postgres://…`.
    pub url: SecretString,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            url: SecretString("sqlite://mcpgate.db".into()),
        }
    }
}

impl Storage {
    /// The storage URL with a relative SQLite path resolved against `base`.
    pub fn resolved_url(&self, base: &Path) -> String {
        let url = self.url.expose();
        if let Some(path) = url.strip_prefix("sqlite://") {
            let p = Path::new(path);
            if p.is_relative() && path != ":memory:" {
                return format!("sqlite://{}", base.join(p).display());
            }
        }
        url.to_owned()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted on an MCP endpoint (413 beyond).
    pub max_body_bytes: usize,
    /// Largest total size of request headers (431 beyond).
    pub max_header_bytes: usize,
    /// Deepest JSON nesting accepted in a request body.
    pub max_json_depth: usize,
    /// Seconds to wait for an upstream's response headers on a
    /// non-streaming request. Event streams have no overall timeout.
    pub upstream_timeout_secs: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            max_header_bytes: 32 * 1024,
            max_json_depth: 64,
            upstream_timeout_secs: 300,
            shutdown_grace_secs: 10,
        }
    }
}

/// Headers the gateway sets on forwarded requests to say who is calling
/// (any client-supplied header of the same name is removed first).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityHeaders {
    pub subject: String,
    pub client_id: String,
    pub scopes: String,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            subject: "X-MCP-Subject".into(),
            client_id: "X-MCP-Client-Id".into(),
            scopes: "X-MCP-Scopes".into(),
        }
    }
}

/// `[authorization_server]`: the gateway as its own issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationServer {
    pub enabled: bool,
    /// Lifetime of issued access tokens.
    pub access_token_ttl_secs: u64,
    /// Days between automatic signing-key rotations.
    pub key_rotation_days: u64,
    /// File holding the master key that encrypts private keys at rest;
    /// created (mode 0600) on first start. `MCPGATE_MASTER_KEY` overrides.
    pub master_key_file: PathBuf,
    /// Seconds a rotated client secret keeps working.
    pub secret_rotation_grace_secs: u64,
    /// Lifetime of a refresh token (each rotation starts a new one; a
    /// grant lives as long as it keeps being refreshed).
    pub refresh_token_ttl_secs: u64,
    /// How long a login on the authorization pages lasts.
    pub login_session_ttl_secs: u64,
    /// Whether RFC 7591 Dynamic Client Registration is offered.
    pub dynamic_client_registration: bool,
    /// Registrations per source address per hour.
    pub registrations_per_hour: u32,
    /// Token, revocation and introspection requests per source address
    /// per minute (0: unlimited).
    pub token_requests_per_minute: u32,
    /// Login form posts per source address per minute (0: unlimited).
    pub login_attempts_per_minute: u32,
    /// A dynamically registered client never used is deleted after this.
    pub unused_registration_ttl_secs: u64,
    /// Failed logins after which an account is locked, and for how long.
    pub lock_after_failed_logins: u32,
    pub lock_secs: u64,
    /// DANGER: lets client metadata documents be fetched from loopback,
    /// private and other special-use addresses, and over plain http. For
    /// tests only: it opens the server to SSRF.
    pub danger_cimd_allow_private_addresses: bool,
}

impl Default for AuthorizationServer {
    fn default() -> Self {
        Self {
            enabled: false,
            access_token_ttl_secs: 600,
            key_rotation_days: 30,
            master_key_file: PathBuf::from("mcpgate-master.key"),
            secret_rotation_grace_secs: 3600,
            refresh_token_ttl_secs: 30 * 86400,
            login_session_ttl_secs: 8 * 3600,
            dynamic_client_registration: true,
            registrations_per_hour: 20,
            token_requests_per_minute: 600,
            login_attempts_per_minute: 30,
            unused_registration_ttl_secs: 86400,
            lock_after_failed_logins: 5,
            lock_secs: 300,
            danger_cimd_allow_private_addresses: false,
        }
    }
}

/// `[audit]`: the tamper-evident audit trail, in the `[storage]` database,
/// its records MAC-tagged under a key derived from the master key
/// (`authorization_server.master_key_file` or `MCPGATE_MASTER_KEY`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Audit {
    pub enabled: bool,
    /// A live copy of every committed record as a JSON line: `"stdout"` or
    /// a file path (relative to this file).
    pub sink: Option<String>,
    /// Records carry a digest of tool arguments; with this, the argument
    /// values too (in `details`). They may hold personal data or secrets.
    pub include_arguments: bool,
    /// Group commit: how long the writer waits for concurrent requests to
    /// join a batch before committing it, in microseconds (0 to 100000;
    /// default 0: never). Only when others are already queued and the disk
    /// is fast (the last commit took less than this); a lone request never
    /// waits.
    pub commit_delay_us: u64,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            enabled: true,
            sink: None,
            include_arguments: false,
            commit_delay_us: 0,
        }
    }
}

/// An external authorization server whose tokens routes accept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// Compared byte-exact with the token's `iss`.
    pub issuer: String,
    /// Where the issuer's keys are; discovered from the issuer's metadata
    /// (RFC 8414, then OpenID Connect discovery) when absent.
    #[serde(default)]
    pub jwks_uri: Option<Interpolated>,
    /// RFC 7662 endpoint for opaque tokens, with the gateway's credentials.
    #[serde(default)]
    pub introspection_endpoint: Option<Interpolated>,
    #[serde(default)]
    pub client_id: Option<Interpolated>,
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Audience values accepted instead of the route's resource URI, for
    /// issuers that cannot put the resource in `aud` (e.g. an app id URI).
    /// Each entry is matched exactly; a route's own URI is always accepted.
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    /// JWS algorithms accepted from this issuer (default: all of RS256,
    /// PS256, ES256, EdDSA).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Bearer tokens (JWT or introspected) and API keys.
    #[default]
    Oauth,
    /// A deliberately public server: no credential is asked for.
    None,
}

/// One protected MCP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRoute")]
pub struct Route {
    pub path: String,
    pub upstream: Upstream,
    pub auth: AuthMode,
    pub scopes: ScopeSet,
    pub tool_scopes: BTreeMap<String, ScopeSet>,
    /// Origins allowed to call (empty: the origin of `public_url`).
    pub allowed_origins: Vec<String>,
    /// `[[routes.rate_limits]]`: request budgets per principal, client or
    /// route, optionally for one tool.
    pub rate_limits: Vec<RateLimit>,
    /// A Cedar policy file or a directory of `*.cedar` files (relative to
    /// the configuration file), evaluated after the scopes.
    pub policy: Option<PathBuf>,
    /// Tools shown to and callable by anyone: if non-empty, only these.
    pub tools_include: Vec<String>,
    /// Tools hidden from and refused to everyone.
    pub tools_exclude: Vec<String>,
    /// DANGER: keep serving this route while the audit trail cannot be
    /// written (default: refuse with 503 rather than serve unaudited).
    pub danger_serve_unaudited: bool,
}

impl Route {
    /// Whether the tool is hidden from everyone by `tools_include` /
    /// `tools_exclude`.
    pub fn tool_hidden(&self, name: &str) -> bool {
        self.tools_exclude.iter().any(|t| t == name)
            || (!self.tools_include.is_empty() && !self.tools_include.iter().any(|t| t == name))
    }
}

/// What a rate limit counts per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKey {
    /// Each authenticated principal (token subject, API key) separately.
    Principal,
    /// Each OAuth client separately (principals without a client: per
    /// principal).
    Client,
    /// The route as a whole.
    Route,
}

/// `[[routes.rate_limits]]`: at most `limit` requests per `window_secs`,
/// counted per `key`, for every request or only `tools/call` of `tool`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub key: LimitKey,
    #[serde(default)]
    pub tool: Option<String>,
    pub limit: u32,
    pub window_secs: u64,
}

#[derive(Debug, Clone)]
pub enum Upstream {
    Http {
        url: String,
    },
    Stdio {
        command: Vec<String>,
        env: BTreeMap<String, SecretString>,
        cwd: Option<PathBuf>,
        /// Seconds an idle child lives before it is reaped.
        idle_timeout_secs: u64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: String,
    #[serde(default)]
    upstream_url: Option<Interpolated>,
    #[serde(default)]
    upstream_command: Option<Vec<String>>,
    #[serde(default)]
    upstream_env: BTreeMap<String, SecretString>,
    #[serde(default)]
    upstream_cwd: Option<PathBuf>,
    #[serde(default)]
    stdio_idle_timeout_secs: Option<u64>,
    #[serde(default)]
    auth: AuthMode,
    #[serde(default)]
    scopes: ScopeSet,
    #[serde(default)]
    tool_scopes: BTreeMap<String, ScopeSet>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    rate_limits: Vec<RateLimit>,
    #[serde(default)]
    policy: Option<PathBuf>,
    #[serde(default)]
    tools_include: Vec<String>,
    #[serde(default)]
    tools_exclude: Vec<String>,
    #[serde(default)]
    danger_serve_unaudited: bool,
}

impl TryFrom<RawRoute> for Route {
    type Error = String;

    fn try_from(r: RawRoute) -> Result<Self, String> {
        let p = &r.path;
        if !p.starts_with('/')
            || p.contains(['?', '#', '*', ' '])
            || p.contains("/./")
            || p.contains("/../")
            || p.contains("//")
            || (p.len() > 1 && p.ends_with('/'))
            || p.starts_with("/.well-known")
            || p == "/healthz"
            || p == "/readyz"
        {
            return Err(format!(
                "route path {p:?} must start with '/', have no trailing slash, query, \
                 fragment, wildcard, empty or dot segments, and not be under /.well-known \
                 or be /healthz or /readyz"
            ));
        }
        let upstream = match (r.upstream_url, r.upstream_command) {
            (Some(url), None) => {
                if !r.upstream_env.is_empty() || r.upstream_cwd.is_some() {
                    return Err(format!(
                        "route {p:?}: upstream_env and upstream_cwd only apply to upstream_command"
                    ));
                }
                let parsed = url::Url::parse(&url.0)
                    .map_err(|e| format!("route {p:?}: upstream_url {:?}: {e}", url.0))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!("route {p:?}: upstream_url must be http or https"));
                }
                Upstream::Http { url: url.0 }
            }
            (None, Some(command)) => {
                if command.is_empty() || command[0].is_empty() {
                    return Err(format!("route {p:?}: upstream_command must name a program"));
                }
                Upstream::Stdio {
                    command,
                    env: r.upstream_env,
                    cwd: r.upstream_cwd,
                    idle_timeout_secs: r.stdio_idle_timeout_secs.unwrap_or(300),
                }
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "route {p:?} sets both upstream_url and upstream_command; choose one"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "route {p:?} needs upstream_url (Streamable HTTP) or upstream_command (stdio)"
                ));
            }
        };
        for o in &r.allowed_origins {
            let ok = url::Url::parse(o).is_ok_and(|u| u.origin().ascii_serialization() == *o);
            if !ok && o != "null" {
                return Err(format!(
                    "route {p:?}: allowed_origins entry {o:?} is not an origin \
                     (scheme://host[:port], no path or trailing slash)"
                ));
            }
        }
        for l in &r.rate_limits {
            if l.limit == 0 || l.window_secs == 0 || l.window_secs > 86_400 {
                return Err(format!(
                    "route {p:?}: a rate_limits entry needs limit >= 1 and window_secs between 1 and 86400"
                ));
            }
        }
        if r.policy.is_some() && r.auth == AuthMode::None {
            return Err(format!(
                "route {p:?}: a policy needs authenticated callers; remove `policy` or `auth = \"none\"`"
            ));
        }
        if let Some(t) = r.tools_include.iter().find(|t| r.tools_exclude.contains(t)) {
            return Err(format!(
                "route {p:?}: tool {t:?} is in both tools_include and tools_exclude"
            ));
        }
        Ok(Route {
            path: r.path,
            upstream,
            auth: r.auth,
            scopes: r.scopes,
            tool_scopes: r.tool_scopes,
            allowed_origins: r.allowed_origins,
            rate_limits: r.rate_limits,
            policy: r.policy,
            tools_include: r.tools_include,
            tools_exclude: r.tools_exclude,
            danger_serve_unaudited: r.danger_serve_unaudited,
        })
    }
}

/// A string with `${ENV_VAR}` references expanded when it is parsed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Interpolated(pub String);

impl<'de> Deserialize<'de> for Interpolated {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        interpolate(&raw, |k| std::env::var(k).ok())
            .map(Interpolated)
            .map_err(serde::de::Error::custom)
    }
}

impl std::ops::Deref for Interpolated {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A secret from the configuration (interpolated like [`Interpolated`]);
/// its `Debug` never shows the value.
#[derive(Clone, Deserialize)]
pub struct SecretString(#[serde(deserialize_with = "de_interpolated")] String);

fn de_interpolated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Interpolated::deserialize(d).map(|i| i.0)
}

impl SecretString {
    pub fn new(s: String) -> Self {
        Self(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Expands `${NAME}` (NAME: ASCII letters, digits, `_`). `$$` is a literal
/// `$`. An unset variable is an error, never an empty string.
pub fn interpolate(s: &str, var: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| "unterminated ${…} reference".to_owned())?;
            let name = &r[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "invalid environment variable name {name:?} in ${{…}}"
                ));
            }
            let value =
                var(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

impl Config {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses configuration text; `base_dir` resolves relative paths.
    pub fn parse(text: &str, base_dir: PathBuf) -> Result<Self, String> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.base_dir = base_dir;
        cfg.validate(text)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.routes {
            if !seen.insert(r.path.as_str()) {
                return Err(at_line(
                    text,
                    &format!("path = \"{}\"", r.path),
                    &format!("routes: path {:?} is used by two routes", r.path),
                ));
            }
            ResourceUri::join(self.public_url.as_str(), &r.path)
                .map_err(|e| format!("routes: path {:?}: {e}", r.path))?;
            if r.auth == AuthMode::Oauth && self.trusted_issuers.is_empty() {
                // API keys alone are a valid set-up; nothing to refuse.
            }
        }
        if self.audit.commit_delay_us > 100_000 {
            return Err(at_line(
                text,
                "commit_delay_us",
                &format!(
                    "audit.commit_delay_us must be between 0 and 100000, not {}",
                    self.audit.commit_delay_us
                ),
            ));
        }
        let a = &self.authorization_server;
        if a.enabled {
            if !(60..=86_400).contains(&a.access_token_ttl_secs) {
                return Err(format!(
                    "authorization_server.access_token_ttl_secs must be between 60 and 86400, not {}",
                    a.access_token_ttl_secs
                ));
            }
            if a.key_rotation_days == 0 {
                return Err("authorization_server.key_rotation_days must be at least 1".into());
            }
            if !(300..=365 * 86_400).contains(&a.refresh_token_ttl_secs) {
                return Err(format!(
                    "authorization_server.refresh_token_ttl_secs must be between 300 and 31536000, not {}",
                    a.refresh_token_ttl_secs
                ));
            }
            if !(60..=30 * 86_400).contains(&a.login_session_ttl_secs) {
                return Err(format!(
                    "authorization_server.login_session_ttl_secs must be between 60 and 2592000, not {}",
                    a.login_session_ttl_secs
                ));
            }
            if a.lock_after_failed_logins == 0 {
                return Err(
                    "authorization_server.lock_after_failed_logins must be at least 1".into(),
                );
            }
            if self
                .trusted_issuers
                .iter()
                .any(|i| i.issuer == self.public_url.as_str())
            {
                return Err(
                    "trusted_issuers lists public_url, which is the built-in authorization \
                     server's issuer when [authorization_server] is enabled; remove that entry"
                        .into(),
                );
            }
            for r in &self.routes {
                if r.path.starts_with("/oauth/") || r.path == "/oauth" {
                    return Err(format!(
                        "routes: path {:?} is reserved for the authorization server's endpoints",
                        r.path
                    ));
                }
            }
        }
        let mut issuers = std::collections::BTreeSet::new();
        for i in &self.trusted_issuers {
            if !issuers.insert(i.issuer.as_str()) {
                return Err(format!(
                    "trusted_issuers: issuer {:?} is listed twice",
                    i.issuer
                ));
            }
            let u = url::Url::parse(&i.issuer)
                .map_err(|e| format!("trusted_issuers: issuer {:?} is not a URL: {e}", i.issuer))?;
            if u.scheme() != "https" && !is_loopback_url(&u) {
                return Err(format!(
                    "trusted_issuers: issuer {:?} must use https (http only on a loopback host)",
                    i.issuer
                ));
            }
            if i.introspection_endpoint.is_some()
                && (i.client_id.is_none() || i.client_secret.is_none())
            {
                return Err(format!(
                    "trusted_issuers: issuer {:?} has introspection_endpoint but no \
                     client_id/client_secret to authenticate to it",
                    i.issuer
                ));
            }
            if let Some(algs) = &i.algorithms {
                for a in algs {
                    if !matches!(a.as_str(), "RS256" | "PS256" | "ES256" | "EdDSA") {
                        return Err(format!(
                            "trusted_issuers: issuer {:?}: algorithm {a:?} is not allowed \
                             (choose from RS256, PS256, ES256, EdDSA)",
                            i.issuer
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The master key file, resolved against the configuration's directory.
    pub fn master_key_path(&self) -> PathBuf {
        self.base_dir
            .join(&self.authorization_server.master_key_file)
    }

    /// The resource URI of a route.
    pub fn resource_uri(&self, route: &Route) -> Result<ResourceUri, crate::ResourceUriError> {
        ResourceUri::join(self.public_url.as_str(), &route.path)
    }
}

fn is_loopback_url(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Prefixes a message with the line where `needle` first occurs.
fn at_line(text: &str, needle: &str, message: &str) -> String {
    match text.lines().position(|l| l.contains(needle)) {
        Some(n) => format!("line {}: {message}", n + 1),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, PathBuf::from("/etc/mcpgate"))
    }

    const MIN: &str = r#"
listen = "127.0.0.1:8080"
public_url = "https://gw.example"
[[routes]]
path = "/mcp"
upstream_url = "http://127.0.0.1:9000/mcp"
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]
"#;

    #[test]
    fn minimal_config_parses() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].auth, AuthMode::Oauth);
        assert_eq!(c.routes[0].scopes.to_space_delimited(), "mcp");
        assert_eq!(
            c.routes[0].tool_scopes["write_note"].to_space_delimited(),
            "notes:write"
        );
        assert_eq!(
            c.resource_uri(&c.routes[0]).unwrap().as_str(),
            "https://gw.example/mcp"
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse(&format!("{MIN}\nbogus_key = 1\n")).unwrap_err();
        assert!(e.contains("bogus_key"), "{e}");
        assert!(e.contains("line 11"), "{e}");
    }

    #[test]
    fn audit_commit_delay_is_bounded_and_named_with_its_line() {
        let with = |us: u64| format!("{MIN}[audit]\ncommit_delay_us = {us}\n");
        assert_eq!(parse(&with(250)).unwrap().audit.commit_delay_us, 250);
        assert_eq!(
            parse(&with(100_000)).unwrap().audit.commit_delay_us,
            100_000
        );
        assert_eq!(parse(MIN).unwrap().audit.commit_delay_us, 0);
        let e = parse(&with(100_001)).unwrap_err();
        assert!(e.contains("audit.commit_delay_us"), "{e}");
        assert!(e.contains("line 11"), "{e}");
    }

    #[test]
    fn unknown_route_key_names_key() {
        let e = parse(&MIN.replace("scopes = [\"mcp\"]", "scopez = [\"mcp\"]")).unwrap_err();
        assert!(e.contains("scopez"), "{e}");
        assert!(e.contains("line "), "{e}");
    }

    #[test]
    fn http_public_url_only_on_loopback() {
        let e = parse(&MIN.replace("https://gw.example", "http://gw.example")).unwrap_err();
        assert!(e.contains("public_url"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(parse(&MIN.replace("https://gw.example", "http://127.0.0.1:8080")).is_ok());
        assert!(parse(&MIN.replace("https://gw.example", "http://localhost:8080")).is_ok());
        assert!(parse(&MIN.replace("https://gw.example", "http://[::1]:8080")).is_ok());
    }

    #[test]
    fn public_url_trailing_slash_is_dropped() {
        let c = parse(&MIN.replace("https://gw.example", "https://gw.example/")).unwrap();
        assert_eq!(c.public_url.as_str(), "https://gw.example");
    }

    #[test]
    fn route_needs_exactly_one_upstream() {
        let both = MIN.replace(
            "upstream_url = \"http://127.0.0.1:9000/mcp\"",
            "upstream_url = \"http://127.0.0.1:9000/mcp\"\nupstream_command = [\"x\"]",
        );
        let e = parse(&both).unwrap_err();
        assert!(e.contains("both"), "{e}");
        let none = MIN.replace("upstream_url = \"http://127.0.0.1:9000/mcp\"", "");
        assert!(parse(&none).unwrap_err().contains("needs upstream_url"));
    }

    #[test]
    fn route_path_must_be_clean() {
        for bad in [
            "mcp",
            "/mcp/",
            "/a//b",
            "/a/../b",
            "/.well-known/x",
            "/a?b",
            "/healthz",
            "/readyz",
        ] {
            let e =
                parse(&MIN.replace("path = \"/mcp\"", &format!("path = \"{bad}\""))).unwrap_err();
            assert!(e.contains("route path"), "{bad}: {e}");
        }
    }

    #[test]
    fn duplicate_route_path_is_refused_with_line() {
        let dup = format!("{MIN}\n[[routes]]\npath = \"/mcp\"\nupstream_command = [\"x\"]\n");
        let e = parse(&dup).unwrap_err();
        assert!(e.contains("used by two routes"), "{e}");
        assert!(e.contains("line 5"), "{e}");
    }

    #[test]
    fn bad_scope_in_config_is_refused() {
        let e = parse(&MIN.replace("[\"mcp\"]", "[\"m cp\"]")).unwrap_err();
        assert!(e.contains("RFC 6749"), "{e}");
    }

    #[test]
    fn env_interpolation_expands_and_reports_missing() {
        let vars = |k: &str| (k == "SECRET").then(|| "s3cr\"et".to_owned());
        assert_eq!(interpolate("a${SECRET}b", vars).unwrap(), "as3cr\"etb");
        assert_eq!(interpolate("$$HOME $x", vars).unwrap(), "$HOME $x");
        assert!(interpolate("${NOPE}", vars).unwrap_err().contains("NOPE"));
        assert!(interpolate("${bad-name}", vars).is_err());
        assert!(interpolate("${OPEN", vars).is_err());
    }

    #[test]
    fn missing_env_var_in_config_names_variable_and_line() {
        let text = format!(
            "{MIN}\n[[trusted_issuers]]\nissuer = \"https://idp.example\"\nintrospection_endpoint = \"https://idp.example/i\"\nclient_id = \"gw\"\nclient_secret = \"${{MCPGATE_TEST_UNSET_VAR_42}}\"\n"
        );
        let e = parse(&text).unwrap_err();
        assert!(e.contains("MCPGATE_TEST_UNSET_VAR_42"), "{e}");
        assert!(e.contains("line 15"), "{e}");
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = SecretString::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn relative_sqlite_path_resolves_against_config_dir() {
        let c = parse(&format!("[storage]\nurl = \"sqlite://data/gw.db\"\n{MIN}")).unwrap_err();
        // `listen` must come before tables in TOML; this documents the rule.
        assert!(c.contains("unknown field") || c.contains("listen"), "{c}");
        let c = parse(&format!(
            "{}\n[storage]\nurl = \"sqlite://data/gw.db\"\n",
            MIN.split("[[routes]]").next().unwrap_or("")
        ))
        .unwrap();
        assert_eq!(
            c.storage.resolved_url(&c.base_dir),
            "sqlite:///etc/mcpgate/data/gw.db"
        );
    }

    #[test]
    fn issuer_algorithm_allow_list() {
        let text = format!(
            "{MIN}\n[[trusted_issuers]]\nissuer = \"https://idp.example\"\nalgorithms = [\"HS256\"]\n"
        );
        assert!(parse(&text).unwrap_err().contains("HS256"));
    }

    #[test]
    fn allowed_origins_must_be_origins() {
        let text = MIN.replace(
            "scopes = [\"mcp\"]",
            "scopes = [\"mcp\"]\nallowed_origins = [\"https://app.example/\"]",
        );
        assert!(parse(&text).unwrap_err().contains("allowed_origins"));
    }
}
