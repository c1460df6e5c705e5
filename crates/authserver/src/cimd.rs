//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document,
//! as used by the MCP authorization specification): a `client_id` that is an
//! https URL with a path names a JSON document describing the client, which
//! this module fetches, validates and caches.
//!
//! Trust boundary: the URL, the host's DNS answers, the server and the
//! document are all attacker-controlled. The fetch therefore
//! - resolves the host itself and refuses the fetch if *any* resolved address
//!   is not public unicast ([`is_public_address`]; literal IP hosts likewise),
//!   then connects to one of the checked addresses — never resolving again,
//!   so DNS rebinding between check and connect is impossible — and checks
//!   the connected peer address once more;
//! - speaks https only, verifying the certificate against the hostname with
//!   the platform trust store (rustls-native-certs, which honours
//!   `SSL_CERT_FILE`: point it at a PEM bundle to trust a test CA);
//! - follows no redirects, bounds the whole exchange (connect, TLS, headers,
//!   body) by one timeout and stops reading past `max_bytes`;
//! - allows any port: the address check, not the port, is the SSRF boundary,
//!   and clients legitimately host documents on non-default ports.
//!
//! [`CimdError`]'s messages may be shown to the end user: they say what is
//! wrong with the document but never carry response bodies, addresses or
//! lower-layer error text (those go to the log at `debug`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::TcpStream;
use tower::ServiceExt as _;
use url::{Position, Url};

/// Longest `client_id` treated as a document URL.
pub const MAX_CLIENT_ID_LEN: usize = 2048;
/// Documents kept in the cache; past this, expired then oldest entries go.
const MAX_CACHE_ENTRIES: usize = 1024;
/// Bound on hyper's read buffer, hence on the response head.
const MAX_READ_BUFFER: usize = 16 * 1024;
const USER_AGENT: &str = concat!(
    "mcpgate/",
    env!("CARGO_PKG_VERSION"),
    " (client-id-metadata)"
);

/// How documents are fetched and cached.
#[derive(Debug, Clone)]
pub struct CimdOptions {
    /// DANGER (the `danger_cimd_allow_private_addresses` setting): fetch
    /// from any address, loopback and private included, and over plain
    /// http. For tests only: it opens the server to SSRF.
    pub allow_private_addresses: bool,
    /// Bound on the whole fetch: connect, TLS, response head and body.
    pub timeout: Duration,
    /// Largest document read; longer bodies fail whatever Content-Length says.
    pub max_bytes: usize,
    /// Cache lifetime floor, also used for `no-store`/`no-cache` and when the
    /// response has no `max-age`.
    pub min_ttl: Duration,
    /// Cache lifetime ceiling.
    pub max_ttl: Duration,
}

impl Default for CimdOptions {
    fn default() -> Self {
        Self {
            allow_private_addresses: false,
            timeout: Duration::from_secs(5),
            max_bytes: 5 * 1024,
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a document could not be used. Messages are safe to show the end user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CimdError {
    /// Not an https URL with a path, or not in canonical form (see
    /// [`is_metadata_client_id`]).
    #[error("the client_id is not a valid client metadata document URL")]
    NotMetadataClientId,
    #[error("the client_id's host could not be resolved")]
    Resolve,
    /// The host is, or resolves to, an address that is not public unicast.
    #[error("the client_id's host is at an address that is not allowed")]
    AddressNotAllowed,
    #[error("could not connect to the client_id's host")]
    Connect,
    #[error("the TLS connection to the client_id's host failed")]
    Tls,
    #[error("fetching the client metadata document timed out")]
    Timeout,
    #[error("fetch failed: the server sent an invalid HTTP response")]
    Http,
    /// A 3xx: redirects are not followed.
    #[error("fetch failed: HTTP {0} (redirects are not followed)")]
    Redirect(u16),
    #[error("fetch failed: HTTP {0}")]
    Status(u16),
    #[error("the client metadata document is too large (over {0} bytes)")]
    TooLarge(usize),
    #[error("the client metadata document is not served as JSON")]
    NotJsonContentType,
    #[error("the client metadata document is not JSON")]
    NotJson,
    #[error("the client metadata document is not a JSON object")]
    NotObject,
    #[error("the document's client_id does not equal its URL")]
    ClientIdMismatch,
    /// `client_secret_*` methods or a `client_secret` member: there is no
    /// way to share a secret with a metadata-document client.
    #[error(
        "the document asks for a shared client secret, which metadata-document clients cannot use"
    )]
    SharedSecret,
    #[error(
        "the document's token_endpoint_auth_method is not supported (use none or private_key_jwt)"
    )]
    UnsupportedAuthMethod,
    /// Any other malformed member; the text names it.
    #[error("invalid client metadata document: {0}")]
    Invalid(&'static str),
}

/// A validated client metadata document (RFC 7591 §2 members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMetadata {
    /// Equal, byte for byte, to the URL the document was fetched from.
    pub client_id: String,
    pub client_name: Option<String>,
    pub client_uri: Option<String>,
    pub logo_uri: Option<String>,
    /// Non-empty; each an absolute URI without a fragment.
    pub redirect_uris: Vec<String>,
    /// As listed (default `["authorization_code"]`), unknown values
    /// included: the caller checks for the grant it is about to perform.
    pub grant_types: Vec<String>,
    /// As listed (default `["code"]`).
    pub response_types: Vec<String>,
    /// `none` (the default) or `private_key_jwt`.
    pub token_endpoint_auth_method: String,
    /// At most one of `jwks` and `jwks_uri`; one of them with `private_key_jwt`.
    pub jwks: Option<Value>,
    pub jwks_uri: Option<String>,
    pub scope: Option<String>,
}

/// Whether `client_id` is a document URL: `https` (or `http` when
/// `allow_http`), with a host and a path other than `/`, no fragment, no
/// userinfo, at most [`MAX_CLIENT_ID_LEN`] bytes, and already in the
/// canonical form the WHATWG URL parser gives it. The last rule rejects dot
/// segments (also `%2e`-encoded), upper-case hosts, default ports and
/// numeric-IP spellings, so the URL fetched is the `client_id` string itself.
pub fn is_metadata_client_id(client_id: &str, allow_http: bool) -> bool {
    parse_client_id(client_id, allow_http).is_some()
}

/// Whether `ip` is public unicast, the only kind a document is fetched from.
///
/// Refused: IPv4 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12,
/// 192.0.0/24, 192.0.2/24, 192.88.99/24, 192.168/16, 198.18/15,
/// 198.51.100/24, 203.0.113/24, 224/4 and 240/4 (with broadcast); IPv6
/// outside 2000::/3 (unspecified, loopback, 100::/64, 64:ff9b:1::/48, ULA,
/// link-local, site-local, multicast, …), 2001::/23 (Teredo, benchmarking,
/// ORCHID), 2001:db8::/32 and 3fff::/20. IPv4-mapped, NAT64 (64:ff9b::/96)
/// and 6to4 (2002::/16) addresses are judged by the IPv4 address they
/// embed; the deprecated IPv4-compatible ::/96 is refused outright.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

impl ClientMetadata {
    /// Validates a document fetched from `url` (the `client_id`). Unknown
    /// members are ignored; `null` optional members count as absent.
    pub fn from_document(url: &str, body: &[u8]) -> Result<Self, CimdError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| CimdError::NotJson)?;
        let Value::Object(doc) = value else {
            return Err(CimdError::NotObject);
        };
        match doc.get("client_id") {
            Some(Value::String(id)) if id == url => {}
            _ => return Err(CimdError::ClientIdMismatch),
        }
        if present(&doc, "client_secret") || present(&doc, "client_secret_expires_at") {
            return Err(CimdError::SharedSecret);
        }
        let token_endpoint_auth_method = match doc.get("token_endpoint_auth_method") {
            None | Some(Value::Null) => "none".to_owned(),
            Some(Value::String(m)) if m == "none" || m == "private_key_jwt" => m.clone(),
            Some(Value::String(m)) if m.starts_with("client_secret") => {
                return Err(CimdError::SharedSecret);
            }
            Some(Value::String(_)) => return Err(CimdError::UnsupportedAuthMethod),
            Some(_) => {
                return Err(CimdError::Invalid(
                    "token_endpoint_auth_method is not a string",
                ));
            }
        };
        let redirect_uris = string_array(&doc, "redirect_uris")
            .ok_or(CimdError::Invalid(
                "redirect_uris is not an array of strings",
            ))?
            .ok_or(CimdError::Invalid("redirect_uris is missing"))?;
        if redirect_uris.is_empty() {
            return Err(CimdError::Invalid("redirect_uris is empty"));
        }
        if !redirect_uris.iter().all(|u| is_acceptable_redirect_uri(u)) {
            return Err(CimdError::Invalid(
                "a redirect URI is not an absolute URI without a fragment, or uses a forbidden scheme",
            ));
        }
        let grant_types = string_array(&doc, "grant_types")
            .ok_or(CimdError::Invalid("grant_types is not an array of strings"))?
            .unwrap_or_else(|| vec!["authorization_code".to_owned()]);
        let response_types = string_array(&doc, "response_types")
            .ok_or(CimdError::Invalid(
                "response_types is not an array of strings",
            ))?
            .unwrap_or_else(|| vec!["code".to_owned()]);
        let jwks = match doc.get("jwks") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(CimdError::Invalid("jwks is not an object")),
        };
        let jwks_uri =
            string(&doc, "jwks_uri").ok_or(CimdError::Invalid("jwks_uri is not a string"))?;
        if jwks.is_some() && jwks_uri.is_some() {
            return Err(CimdError::Invalid("jwks and jwks_uri are both present"));
        }
        if token_endpoint_auth_method == "private_key_jwt" && jwks.is_none() && jwks_uri.is_none() {
            return Err(CimdError::Invalid("private_key_jwt needs jwks or jwks_uri"));
        }
        Ok(Self {
            client_id: url.to_owned(),
            client_name: string(&doc, "client_name")
                .ok_or(CimdError::Invalid("client_name is not a string"))?,
            client_uri: string(&doc, "client_uri")
                .ok_or(CimdError::Invalid("client_uri is not a string"))?,
            logo_uri: string(&doc, "logo_uri")
                .ok_or(CimdError::Invalid("logo_uri is not a string"))?,
            redirect_uris,
            grant_types,
            response_types,
            token_endpoint_auth_method,
            jwks,
            jwks_uri,
            scope: string(&doc, "scope").ok_or(CimdError::Invalid("scope is not a string"))?,
        })
    }
}

/// Fetches, validates and caches client metadata documents. Cheap to share
/// behind an `Arc`; one per process.
pub struct CimdFetcher {
    opts: CimdOptions,
    /// `None` if the platform trust store had no usable certificate (logged
    /// at construction); every fetch then fails with [`CimdError::Tls`].
    connector: Option<HttpsConnector<GuardedConnector>>,
    cache: Mutex<Cache>,
    /// One lock per URL being fetched, so concurrent `get`s fetch once.
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for CimdFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CimdFetcher")
            .field("opts", &self.opts)
            .field("cached", &lock(&self.cache).entries.len())
            .finish_non_exhaustive()
    }
}

impl CimdFetcher {
    /// Loads the platform trust store (honouring `SSL_CERT_FILE`). If it
    /// has no usable certificate this logs an error and every fetch fails.
    pub fn new(opts: CimdOptions) -> Self {
        let connector = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
            Ok(builder) => {
                let builder = if opts.allow_private_addresses {
                    builder.https_or_http()
                } else {
                    builder.https_only()
                };
                Some(builder.enable_http1().wrap_connector(GuardedConnector {
                    allow_private: opts.allow_private_addresses,
                }))
            }
            Err(e) => {
                tracing::error!(error = %e, "client metadata documents cannot be fetched: no trusted root certificates");
                None
            }
        };
        Self {
            opts,
            connector,
            cache: Mutex::new(Cache::default()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The validated document for `client_id`, from the cache while its
    /// lifetime (`Cache-Control: max-age`, clamped to the configured floor and
    /// ceiling) lasts. Failures are not cached.
    pub async fn get(&self, client_id: &str) -> Result<Arc<ClientMetadata>, CimdError> {
        self.get_at(client_id, Instant::now()).await
    }

    /// [`Self::get`] as if the time were `now` (tests move the clock).
    async fn get_at(
        &self,
        client_id: &str,
        now: Instant,
    ) -> Result<Arc<ClientMetadata>, CimdError> {
        let url = parse_client_id(client_id, self.opts.allow_private_addresses)
            .ok_or(CimdError::NotMetadataClientId)?;
        if let Some(hit) = self.cached(client_id, now) {
            return Ok(hit);
        }
        // The timeout also bounds waiting for someone else's fetch of the
        // same URL, so every caller waits at most `timeout`.
        let result = tokio::time::timeout(self.opts.timeout, self.fetch_once(&url, now))
            .await
            .unwrap_or(Err(CimdError::Timeout));
        result.inspect_err(|e| {
            tracing::info!(client_id, error = %e, "client metadata document refused");
        })
    }

    /// Fetches unless a concurrent `get` for the same URL, which this one
    /// waits for, has just cached it.
    async fn fetch_once(&self, url: &Url, now: Instant) -> Result<Arc<ClientMetadata>, CimdError> {
        let client_id = url.as_str();
        let slot = lock(&self.in_flight)
            .entry(client_id.to_owned())
            .or_default()
            .clone();
        let _turn = slot.lock().await;
        if let Some(hit) = self.cached(client_id, now) {
            return Ok(hit);
        }
        let _release = InFlight {
            map: &self.in_flight,
            key: client_id,
            slot: &slot,
        };
        let (body, ttl) = self.fetch(url).await?;
        let meta = Arc::new(ClientMetadata::from_document(client_id, &body)?);
        self.insert(client_id, meta.clone(), now, ttl);
        Ok(meta)
    }

    fn cached(&self, client_id: &str, now: Instant) -> Option<Arc<ClientMetadata>> {
        lock(&self.cache)
            .entries
            .get(client_id)
            .filter(|e| now < e.expires)
            .map(|e| e.meta.clone())
    }

    fn insert(&self, client_id: &str, meta: Arc<ClientMetadata>, now: Instant, ttl: Duration) {
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        let mut cache = lock(&self.cache);
        cache.seq += 1;
        let seq = cache.seq;
        let entries = &mut cache.entries;
        if entries.len() >= MAX_CACHE_ENTRIES && !entries.contains_key(client_id) {
            entries.retain(|_, e| now < e.expires);
            if entries.len() >= MAX_CACHE_ENTRIES {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.seq)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(client_id.to_owned(), CacheEntry { meta, expires, seq });
    }

    /// One GET over a fresh connection; returns the body and its cache
    /// lifetime. Runs under the caller's timeout.
    async fn fetch(&self, url: &Url) -> Result<(Vec<u8>, Duration), CimdError> {
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let target = PathAndQuery::try_from(&url[Position::BeforePath..Position::AfterQuery])
            .map_err(|_| CimdError::NotMetadataClientId)?;
        let dst = Uri::builder()
            .scheme(url.scheme())
            .authority(authority.as_str())
            .path_and_query("/")
            .build()
            .map_err(|_| CimdError::NotMetadataClientId)?;
        let io = self
            .connector
            .clone()
            .ok_or(CimdError::Tls)?
            .oneshot(dst)
            .await
            .map_err(|e| match e.downcast::<CimdError>() {
                Ok(e) => *e,
                Err(e) => {
                    tracing::debug!(error = %e, "client metadata document: TLS failed");
                    CimdError::Tls
                }
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_READ_BUFFER)
            .handshake::<_, Empty<Bytes>>(io)
            .await
            .map_err(http_error)?;
        // Driven here rather than spawned, so the timeout drops it too.
        let conn = async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "client metadata document: connection failed");
            }
            std::future::pending::<Infallible>().await
        };
        let request = Request::builder()
            .method(Method::GET)
            .uri(Uri::from(target))
            .header(header::HOST, authority)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .body(Empty::new())
            .map_err(|_| CimdError::NotMetadataClientId)?;
        let max_bytes = self.opts.max_bytes;
        let (min_ttl, max_ttl) = (self.opts.min_ttl, self.opts.max_ttl);
        let exchange = async move {
            let response = sender.send_request(request).await.map_err(http_error)?;
            let status = response.status();
            if status.is_redirection() {
                return Err(CimdError::Redirect(status.as_u16()));
            }
            if status != StatusCode::OK {
                return Err(CimdError::Status(status.as_u16()));
            }
            let json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(is_json_content_type);
            if !json {
                return Err(CimdError::NotJsonContentType);
            }
            let declared = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > max_bytes as u64) {
                return Err(CimdError::TooLarge(max_bytes));
            }
            let ttl = cache_ttl(response.headers(), min_ttl, max_ttl);
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(http_error)?;
                if let Some(data) = frame.data_ref() {
                    if bytes.len() + data.len() > max_bytes {
                        return Err(CimdError::TooLarge(max_bytes));
                    }
                    bytes.extend_from_slice(data);
                }
            }
            Ok((bytes, ttl))
        };
        tokio::select! {
            result = exchange => result,
            never = conn => match never {},
        }
    }
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, CacheEntry>,
    /// Insertion counter, to find the oldest entry.
    seq: u64,
}

struct CacheEntry {
    meta: Arc<ClientMetadata>,
    expires: Instant,
    seq: u64,
}

/// Removes a URL's in-flight lock when its fetch ends (or is cancelled).
struct InFlight<'a> {
    map: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: &'a str,
    slot: &'a Arc<tokio::sync::Mutex<()>>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = lock(self.map);
        if map.get(self.key).is_some_and(|s| Arc::ptr_eq(s, self.slot)) {
            map.remove(self.key);
        }
    }
}

/// The TCP connector under TLS: resolves, refuses unless every address is
/// allowed, and connects to a checked address.
#[derive(Debug, Clone)]
struct GuardedConnector {
    allow_private: bool,
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = CimdError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, CimdError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), CimdError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        Box::pin(guarded_connect(dst, self.allow_private))
    }
}

async fn guarded_connect(dst: Uri, allow_private: bool) -> Result<TokioIo<TcpStream>, CimdError> {
    let host = dst.host().ok_or(CimdError::NotMetadataClientId)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = dst
        .port_u16()
        .unwrap_or(if dst.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| {
            tracing::debug!(host, error = %e, "client metadata document: resolution failed");
            CimdError::Resolve
        })?
        .collect();
    if addrs.is_empty() {
        return Err(CimdError::Resolve);
    }
    let allowed = |ip: IpAddr| allow_private || is_public_address(ip);
    if let Some(bad) = addrs.iter().find(|a| !allowed(a.ip())) {
        tracing::info!(host, address = %bad.ip(), "client metadata document: address refused");
        return Err(CimdError::AddressNotAllowed);
    }
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // The socket's own view of its peer, in case it differs.
                let peer = stream.peer_addr().map_err(|_| CimdError::Connect)?;
                if !allowed(peer.ip()) {
                    return Err(CimdError::AddressNotAllowed);
                }
                let _ = stream.set_nodelay(true);
                return Ok(TokioIo::new(stream));
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "client metadata document: connect failed");
            }
        }
    }
    Err(CimdError::Connect)
}

fn parse_client_id(client_id: &str, allow_http: bool) -> Option<Url> {
    if client_id.len() > MAX_CLIENT_ID_LEN {
        return None;
    }
    let url = Url::parse(client_id).ok()?;
    let scheme_ok = url.scheme() == "https" || (allow_http && url.scheme() == "http");
    let ok = scheme_ok
        && url.as_str() == client_id
        && url.host().is_some()
        && url.path() != "/"
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && PathAndQuery::try_from(&url[Position::BeforePath..Position::AfterQuery]).is_ok();
    ok.then_some(url)
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0
        || a == 10
        || a == 127
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113);
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // IPv4-mapped ::ffff:0:0/96.
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return is_public_v4(v4(s[6], s[7]));
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(v4(s[6], s[7]));
    }
    // 6to4 2002::/16.
    if s[0] == 0x2002 {
        return is_public_v4(v4(s[1], s[2]));
    }
    // Only global unicast 2000::/3 remains; this also refuses ::/96
    // (unspecified, loopback, deprecated IPv4-compatible).
    if s[0] & 0xe000 != 0x2000 {
        return false;
    }
    let special = match s[0] {
        // 2001::/23 (IETF protocol assignments: Teredo, benchmarking,
        // ORCHID) and 2001:db8::/32 (documentation).
        0x2001 => s[1] < 0x0200 || s[1] == 0x0db8,
        // 3fff::/20 (documentation).
        0x3fff => s[1] < 0x1000,
        _ => false,
    };
    !special
}

/// `application/json` or `application/*+json`, any parameters.
fn is_json_content_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

/// `max-age` clamped to `[min, max]`; `no-store`, `no-cache` and no
/// `max-age` give the floor. The floor wins if misconfigured above the ceiling.
fn cache_ttl(headers: &HeaderMap, min: Duration, max: Duration) -> Duration {
    let mut max_age = None;
    for directive in headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return min;
        }
        if name.eq_ignore_ascii_case("max-age") {
            // An unparsable or huge value counts as "as long as allowed".
            let secs = arg.map_or(0, |a| a.parse::<u64>().unwrap_or(u64::MAX));
            max_age = Some(Duration::from_secs(secs));
        }
    }
    max_age.map_or(min, |age| age.min(max).max(min))
}

fn is_acceptable_redirect_uri(uri: &str) -> bool {
    Url::parse(uri).is_ok_and(|u| {
        u.fragment().is_none()
            && !matches!(
                u.scheme(),
                "javascript" | "data" | "vbscript" | "file" | "blob"
            )
    })
}

fn present(doc: &Map<String, Value>, key: &str) -> bool {
    !matches!(doc.get(key), None | Some(Value::Null))
}

/// `None` if the member has the wrong type; `Some(None)` if absent or null.
fn string(doc: &Map<String, Value>, key: &str) -> Option<Option<String>> {
    match doc.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

/// `None` if the member is not an array of strings; `Some(None)` if absent or null.
fn string_array(doc: &Map<String, Value>, key: &str) -> Option<Option<Vec<String>>> {
    match doc.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Some),
        Some(_) => None,
    }
}

fn http_error(e: hyper::Error) -> CimdError {
    tracing::debug!(error = %e, "client metadata document: HTTP failed");
    CimdError::Http
}

/// A poisoned lock only means another request panicked mid-update; the
/// maps stay consistent (every update is a single insert or remove).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// What the test server answers one request with.
    #[derive(Clone)]
    enum Reply {
        Raw(Vec<u8>),
        /// Answer after a delay.
        Slow(Duration, Vec<u8>),
        /// Read the request, then never answer.
        Hang,
    }

    /// A loopback HTTP/1.1 server (one request per connection) that counts
    /// connections and records request targets.
    struct Server {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
        paths: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn requests(&self) -> usize {
            self.paths.lock().unwrap().len()
        }
    }

    /// `handler(n, url)` answers the `n`th request (from 0) for `url`.
    async fn serve(handler: impl Fn(usize, &str) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let task = tokio::spawn({
            let (connections, paths) = (connections.clone(), paths.clone());
            async move {
                while let Ok((mut sock, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (paths, handler) = (paths.clone(), handler.clone());
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match sock.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let head = String::from_utf8_lossy(&head).into_owned();
                        let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
                        let n = {
                            let mut paths = paths.lock().unwrap();
                            paths.push(target.clone());
                            paths.len() - 1
                        };
                        let bytes = match handler(n, &format!("http://{addr}{target}")) {
                            Reply::Raw(b) => b,
                            Reply::Slow(d, b) => {
                                tokio::time::sleep(d).await;
                                b
                            }
                            Reply::Hang => {
                                std::future::pending::<()>().await;
                                return;
                            }
                        };
                        let _ = sock.write_all(&bytes).await;
                        let _ = sock.shutdown().await;
                    });
                }
            }
        });
        Server {
            addr,
            connections,
            paths,
            task,
        }
    }

    fn response(status: &str, headers: &str, body: &str) -> Reply {
        Reply::Raw(
            format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    }

    fn json(headers: &str, body: &str) -> Reply {
        response(
            "200 OK",
            &format!("Content-Type: application/json\r\n{headers}"),
            body,
        )
    }

    /// A minimal valid document for the server's `/client.json`.
    fn document(client_id: &str) -> Value {
        serde_json::json!({
            "client_id": client_id,
            "client_name": "Test Client",
            "redirect_uris": ["http://127.0.0.1:33418/callback"],
        })
    }

    /// Serves `doc(url)` at every path, with extra response headers.
    async fn serve_document(headers: &'static str, doc: fn(&str) -> Value) -> (Server, String) {
        let server = serve(move |_, url| json(headers, &doc(url).to_string())).await;
        let url = server.url("/client.json");
        (server, url)
    }

    fn options() -> CimdOptions {
        CimdOptions {
            allow_private_addresses: true,
            timeout: Duration::from_secs(5),
            ..CimdOptions::default()
        }
    }

    fn fetcher() -> CimdFetcher {
        CimdFetcher::new(options())
    }

    #[test]
    fn ssrf_address_classification() {
        let forbidden = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "100::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd00::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ];
        for ip in forbidden {
            assert!(
                !is_public_address(ip.parse().unwrap()),
                "{ip} must be refused"
            );
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.254",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
        ];
        for ip in allowed {
            assert!(
                is_public_address(ip.parse().unwrap()),
                "{ip} must be allowed"
            );
        }
    }

    #[test]
    fn cimd_3_client_id_url_shape() {
        let yes = [
            "https://example.com/client.json",
            "https://example.com/a/b/",
            "https://example.com:8443/client",
            "https://example.com/client?v=1",
        ];
        for id in yes {
            assert!(is_metadata_client_id(id, false), "{id}");
        }
        let no = [
            "",
            "client-123",
            "https://example.com",
            "https://example.com/",
            "https://example.com/client#frag",
            "https://example.com/client#",
            "https://user@example.com/client",
            "https://user:pw@example.com/client",
            "https://example.com/a/../client",
            "https://example.com/a/./client",
            "https://example.com/a/%2e%2e/client",
            "https://EXAMPLE.com/client",
            "HTTPS://example.com/client",
            "https://example.com:443/client",
            "https://2130706433/client",
            "https://0x7f.1/client",
            " https://example.com/client",
            "https://example.com/client\n",
            "http://example.com/client",
            "ftp://example.com/client",
            "urn:example:client",
        ];
        for id in no {
            assert!(!is_metadata_client_id(id, false), "{id:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_CLIENT_ID_LEN));
        assert!(!is_metadata_client_id(&long, false));
        assert!(is_metadata_client_id("http://127.0.0.1:8080/client", true));
        assert!(!is_metadata_client_id(
            "http://127.0.0.1:8080/client",
            false
        ));
    }

    #[tokio::test]
    async fn ssrf_http_loopback_refused_without_danger_setting() {
        let (server, url) = serve_document("", document).await;
        let f = CimdFetcher::new(CimdOptions::default());
        assert!(!is_metadata_client_id(&url, false));
        assert!(matches!(
            f.get(&url).await,
            Err(CimdError::NotMetadataClientId)
        ));
        assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn ssrf_loopback_in_any_spelling_refused_before_connecting() {
        let (server, _) = serve_document("", document).await;
        let port = server.addr.port();
        let f = CimdFetcher::new(CimdOptions::default());
        for (id, refused_address) in [
            (format!("https://localhost:{port}/doc"), true),
            (format!("https://127.0.0.1:{port}/doc"), true),
            (format!("https://127.1.2.3:{port}/doc"), true),
            (format!("https://[::ffff:7f00:1]:{port}/doc"), true),
            (format!("https://[::1]:{port}/doc"), true),
            (format!("https://[64:ff9b::7f00:1]:{port}/doc"), true),
            (format!("https://[2002:7f00:1::]:{port}/doc"), true),
            // Not canonical: refused before resolution.
            (format!("https://2130706433:{port}/doc"), false),
            (format!("https://0x7f000001:{port}/doc"), false),
            (format!("https://[::ffff:127.0.0.1]:{port}/doc"), false),
        ] {
            let err = f.get(&id).await.unwrap_err();
            if refused_address {
                assert!(matches!(err, CimdError::AddressNotAllowed), "{id}: {err:?}");
            } else {
                assert!(
                    matches!(err, CimdError::NotMetadataClientId),
                    "{id}: {err:?}"
                );
            }
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn cimd_4_valid_document_returned() {
        let (server, url) = serve_document("", |url| {
            serde_json::json!({
                "client_id": url,
                "client_name": "Test Client",
                "client_uri": "https://example.com",
                "logo_uri": "https://example.com/logo.png",
                "redirect_uris": ["http://127.0.0.1:33418/callback", "https://example.com/cb"],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "scope": "mcp:tools",
            })
        })
        .await;
        let m = fetcher().get(&url).await.unwrap();
        assert_eq!(m.client_id, url);
        assert_eq!(m.client_name.as_deref(), Some("Test Client"));
        assert_eq!(m.client_uri.as_deref(), Some("https://example.com"));
        assert_eq!(m.logo_uri.as_deref(), Some("https://example.com/logo.png"));
        assert_eq!(
            m.redirect_uris,
            ["http://127.0.0.1:33418/callback", "https://example.com/cb"]
        );
        assert_eq!(m.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(m.response_types, ["code"]);
        assert_eq!(m.token_endpoint_auth_method, "none");
        assert_eq!(m.scope.as_deref(), Some("mcp:tools"));
        assert_eq!(m.jwks, None);
        assert_eq!(server.paths.lock().unwrap().as_slice(), ["/client.json"]);
    }

    #[tokio::test]
    async fn cimd_4_defaults_when_optional_members_absent() {
        let (_server, url) = serve_document("", |url| {
            serde_json::json!({ "client_id": url, "redirect_uris": ["https://a.example/cb"], "logo_uri": null })
        })
        .await;
        let m = fetcher().get(&url).await.unwrap();
        assert_eq!(m.grant_types, ["authorization_code"]);
        assert_eq!(m.response_types, ["code"]);
        assert_eq!(m.token_endpoint_auth_method, "none");
        assert_eq!(m.client_name, None);
        assert_eq!(m.logo_uri, None);
    }

    #[tokio::test]
    async fn cimd_4_client_id_mismatch_refused() {
        for doc in [
            (|url: &str| serde_json::json!({ "client_id": format!("{url}/"), "redirect_uris": ["https://a.example/cb"] }))
                as fn(&str) -> Value,
            |url| serde_json::json!({ "client_id": url.to_uppercase(), "redirect_uris": ["https://a.example/cb"] }),
            |_| serde_json::json!({ "client_id": "https://other.example/client.json", "redirect_uris": ["https://a.example/cb"] }),
            |_| serde_json::json!({ "redirect_uris": ["https://a.example/cb"] }),
            |url| serde_json::json!({ "client_id": [url], "redirect_uris": ["https://a.example/cb"] }),
        ] {
            let (_server, url) = serve_document("", doc).await;
            let err = fetcher().get(&url).await.unwrap_err();
            assert!(matches!(err, CimdError::ClientIdMismatch), "{err:?}");
            assert_eq!(
                err.to_string(),
                "the document's client_id does not equal its URL"
            );
        }
    }

    #[tokio::test]
    async fn cimd_4_missing_or_empty_redirect_uris_refused() {
        for doc in [
            (|url: &str| serde_json::json!({ "client_id": url })) as fn(&str) -> Value,
            |url| serde_json::json!({ "client_id": url, "redirect_uris": [] }),
            |url| serde_json::json!({ "client_id": url, "redirect_uris": null }),
            |url| serde_json::json!({ "client_id": url, "redirect_uris": "https://a.example/cb" }),
            |url| serde_json::json!({ "client_id": url, "redirect_uris": [1] }),
            |url| serde_json::json!({ "client_id": url, "redirect_uris": ["https://a.example/cb#x"] }),
            |url| serde_json::json!({ "client_id": url, "redirect_uris": ["javascript:alert(1)"] }),
            |url| serde_json::json!({ "client_id": url, "redirect_uris": ["/relative"] }),
        ] {
            let (_server, url) = serve_document("", doc).await;
            let err = fetcher().get(&url).await.unwrap_err();
            assert!(matches!(err, CimdError::Invalid(_)), "{err:?}");
        }
    }

    #[tokio::test]
    async fn cimd_4_1_shared_secret_auth_methods_refused() {
        for method in [
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
        ] {
            let body = |url: &str, m: &str| {
                serde_json::json!({ "client_id": url, "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": m })
                    .to_string()
            };
            let server = serve(move |_, url| json("", &body(url, method))).await;
            let err = fetcher().get(&server.url("/c")).await.unwrap_err();
            assert!(matches!(err, CimdError::SharedSecret), "{method}: {err:?}");
        }
        let (_server, url) = serve_document("", |url| {
            serde_json::json!({ "client_id": url, "redirect_uris": ["https://a.example/cb"], "client_secret": "s3cret" })
        })
        .await;
        assert!(matches!(
            fetcher().get(&url).await,
            Err(CimdError::SharedSecret)
        ));
        let (_server, url) = serve_document("", |url| {
            serde_json::json!({ "client_id": url, "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "tls_client_auth" })
        })
        .await;
        assert!(matches!(
            fetcher().get(&url).await,
            Err(CimdError::UnsupportedAuthMethod)
        ));
    }

    #[tokio::test]
    async fn cimd_4_1_private_key_jwt_needs_exactly_one_key_source() {
        let (_server, url) = serve_document("", |url| {
            serde_json::json!({ "client_id": url, "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt", "jwks": { "keys": [] } })
        })
        .await;
        let m = fetcher().get(&url).await.unwrap();
        assert_eq!(m.token_endpoint_auth_method, "private_key_jwt");
        assert_eq!(m.jwks, Some(serde_json::json!({ "keys": [] })));
        for doc in [
            (|url: &str| serde_json::json!({ "client_id": url, "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt" }))
                as fn(&str) -> Value,
            |url| serde_json::json!({ "client_id": url, "redirect_uris": ["https://a.example/cb"], "jwks": { "keys": [] }, "jwks_uri": "https://a.example/jwks" }),
        ] {
            let (_server, url) = serve_document("", doc).await;
            assert!(matches!(
                fetcher().get(&url).await,
                Err(CimdError::Invalid(_))
            ));
        }
    }

    #[tokio::test]
    async fn cimd_4_unknown_fields_and_device_code_grant_accepted() {
        // The shape of VS Code's document.
        let (_server, url) = serve_document("", |url| {
            serde_json::json!({
                "client_id": url,
                "client_name": "Visual Studio Code",
                "redirect_uris": ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"],
                "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
                "response_types": ["code"],
                "application_type": "native",
                "software_id": "vscode",
                "x-extension": { "nested": [1, 2, 3] },
            })
        })
        .await;
        let m = fetcher().get(&url).await.unwrap();
        assert!(m.grant_types.iter().any(|g| g == "authorization_code"));
        assert_eq!(m.client_name.as_deref(), Some("Visual Studio Code"));
    }

    #[tokio::test]
    async fn cimd_4_response_must_be_200_json() {
        type Case = (fn(&str) -> Reply, fn(&CimdError) -> bool);
        let cases: [Case; 6] = [
            (
                |_| {
                    response(
                        "404 Not Found",
                        "Content-Type: text/plain\r\n",
                        "SECRET-INTERNAL",
                    )
                },
                |e| matches!(e, CimdError::Status(404)),
            ),
            (
                |d| response("201 Created", "Content-Type: application/json\r\n", d),
                |e| matches!(e, CimdError::Status(201)),
            ),
            (
                |d| response("200 OK", "Content-Type: text/html\r\n", d),
                |e| matches!(e, CimdError::NotJsonContentType),
            ),
            (
                |d| response("200 OK", "", d),
                |e| matches!(e, CimdError::NotJsonContentType),
            ),
            (
                |_| json("", "<html>SECRET-INTERNAL</html>"),
                |e| matches!(e, CimdError::NotJson),
            ),
            (
                |_| json("", "[\"SECRET-INTERNAL\"]"),
                |e| matches!(e, CimdError::NotObject),
            ),
        ];
        for (reply, expected) in cases {
            let server = serve(move |_, url| reply(&document(url).to_string())).await;
            let err = fetcher().get(&server.url("/c")).await.unwrap_err();
            assert!(expected(&err), "{err:?}");
            assert!(!err.to_string().contains("SECRET"), "{err}");
        }
        let (_s, url) = serve_document("", document).await;
        let err = fetcher().get(&url).await;
        assert!(err.is_ok());
        assert_eq!(CimdError::Status(404).to_string(), "fetch failed: HTTP 404");
    }

    #[test]
    fn cimd_4_json_content_types() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/oauth-client-metadata+json",
            " application/json ;charset=\"utf-8\"",
        ] {
            assert!(is_json_content_type(ct), "{ct}");
        }
        for ct in [
            "text/json",
            "application/jsonp",
            "text/plain",
            "json",
            "",
            "application/json-seq",
        ] {
            assert!(!is_json_content_type(ct), "{ct}");
        }
    }

    #[tokio::test]
    async fn cimd_size_cap_with_content_length() {
        let big = "x".repeat(6000);
        let server = serve(move |_, _| json("", &big)).await;
        let err = fetcher().get(&server.url("/c")).await.unwrap_err();
        assert!(matches!(err, CimdError::TooLarge(5120)), "{err:?}");
    }

    #[tokio::test]
    async fn cimd_size_cap_chunked_without_content_length() {
        let server = serve(|_, _| {
            let mut r = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
            for _ in 0..8 {
                r.extend_from_slice(b"400\r\n");
                r.extend_from_slice(&[b' '; 0x400]);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            Reply::Raw(r)
        })
        .await;
        let err = fetcher().get(&server.url("/c")).await.unwrap_err();
        assert!(matches!(err, CimdError::TooLarge(_)), "{err:?}");
    }

    #[tokio::test]
    async fn cimd_size_cap_body_until_close_without_length() {
        // No length at all: the body runs to connection close.
        let server = serve(|_, _| {
            let mut r =
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                    .to_vec();
            r.extend_from_slice(&[b' '; 8000]);
            Reply::Raw(r)
        })
        .await;
        let err = fetcher().get(&server.url("/c")).await.unwrap_err();
        assert!(matches!(err, CimdError::TooLarge(_)), "{err:?}");
    }

    #[tokio::test]
    async fn cimd_redirect_not_followed() {
        let server = serve(|_, url| {
            if url.ends_with("/start") {
                response("302 Found", "Location: /target\r\n", "")
            } else {
                json("", "{}")
            }
        })
        .await;
        let err = fetcher().get(&server.url("/start")).await.unwrap_err();
        assert!(matches!(err, CimdError::Redirect(302)), "{err:?}");
        assert_eq!(server.paths.lock().unwrap().as_slice(), ["/start"]);
    }

    #[tokio::test]
    async fn cimd_timeout_when_server_never_answers() {
        let server = serve(|_, _| Reply::Hang).await;
        let f = CimdFetcher::new(CimdOptions {
            timeout: Duration::from_millis(300),
            ..options()
        });
        let err = f.get(&server.url("/c")).await.unwrap_err();
        assert!(matches!(err, CimdError::Timeout), "{err:?}");
    }

    #[tokio::test]
    async fn cimd_tls_failure_reported_without_detail() {
        // A plain-HTTP server behind an https URL: the handshake fails.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let _ = sock
                .write_all(b"HTTP/1.1 400 SECRET-INTERNAL\r\n\r\n")
                .await;
        });
        let err = fetcher()
            .get(&format!("https://{addr}/c"))
            .await
            .unwrap_err();
        assert!(matches!(err, CimdError::Tls), "{err:?}");
        assert!(!err.to_string().contains("SECRET"));
        server.abort();
    }

    #[tokio::test]
    async fn cimd_cache_within_max_age_not_refetched() {
        let (server, url) =
            serve_document("Cache-Control: public, max-age=300\r\n", document).await;
        let f = fetcher();
        let t0 = Instant::now();
        let first = f.get_at(&url, t0).await.unwrap();
        let second = f.get_at(&url, t0 + Duration::from_secs(299)).await.unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(server.requests(), 1);
        f.get_at(&url, t0 + Duration::from_secs(301)).await.unwrap();
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn cimd_cache_no_store_cached_for_floor() {
        let (server, url) = serve_document("Cache-Control: no-store\r\n", document).await;
        let f = CimdFetcher::new(CimdOptions {
            min_ttl: Duration::from_secs(10),
            ..options()
        });
        let t0 = Instant::now();
        f.get_at(&url, t0).await.unwrap();
        f.get_at(&url, t0 + Duration::from_secs(9)).await.unwrap();
        assert_eq!(server.requests(), 1);
        f.get_at(&url, t0 + Duration::from_secs(11)).await.unwrap();
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn cimd_cache_max_age_clamped_to_ceiling() {
        let (server, url) =
            serve_document("Cache-Control: max-age=99999999999999999999\r\n", document).await;
        let f = CimdFetcher::new(CimdOptions {
            max_ttl: Duration::from_secs(3600),
            ..options()
        });
        let t0 = Instant::now();
        f.get_at(&url, t0).await.unwrap();
        f.get_at(&url, t0 + Duration::from_secs(3599))
            .await
            .unwrap();
        assert_eq!(server.requests(), 1);
        f.get_at(&url, t0 + Duration::from_secs(3601))
            .await
            .unwrap();
        assert_eq!(server.requests(), 2);
    }

    #[test]
    fn cimd_cache_ttl_from_cache_control() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(86400));
        let ttl = |v: &[&str]| {
            let mut h = HeaderMap::new();
            for v in v {
                h.append(header::CACHE_CONTROL, v.parse().unwrap());
            }
            cache_ttl(&h, min, max).as_secs()
        };
        assert_eq!(ttl(&[]), 60);
        assert_eq!(ttl(&["max-age=3600"]), 3600);
        assert_eq!(ttl(&["public", "Max-Age=\"120\""]), 120);
        assert_eq!(ttl(&["max-age=5"]), 60);
        assert_eq!(ttl(&["max-age=999999"]), 86400);
        assert_eq!(ttl(&["max-age=3600, no-cache"]), 60);
        assert_eq!(ttl(&["no-store", "max-age=3600"]), 60);
        assert_eq!(ttl(&["max-age=-1"]), 86400);
    }

    #[tokio::test]
    async fn cimd_failure_not_cached() {
        let server = serve(|n, url| {
            if n == 0 {
                response("503 Service Unavailable", "", "")
            } else {
                json("", &document(url).to_string())
            }
        })
        .await;
        let f = fetcher();
        let url = server.url("/client.json");
        assert!(matches!(f.get(&url).await, Err(CimdError::Status(503))));
        f.get(&url).await.unwrap();
        assert_eq!(server.requests(), 2);
    }

    #[tokio::test]
    async fn cimd_concurrent_gets_fetch_once() {
        let server = serve(|_, url| match json("", &document(url).to_string()) {
            Reply::Raw(b) => Reply::Slow(Duration::from_millis(200), b),
            other => other,
        })
        .await;
        let f = Arc::new(fetcher());
        let url = server.url("/client.json");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (f, url) = (f.clone(), url.clone());
                tokio::spawn(async move { f.get(&url).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(server.requests(), 1);
        assert!(lock(&f.in_flight).is_empty());
    }

    #[tokio::test]
    async fn cimd_cache_bounded() {
        let f = fetcher();
        let t0 = Instant::now();
        let meta = Arc::new(
            ClientMetadata::from_document(
                "https://a.example/c",
                document("https://a.example/c").to_string().as_bytes(),
            )
            .unwrap(),
        );
        for i in 0..MAX_CACHE_ENTRIES + 10 {
            f.insert(
                &format!("https://a.example/{i}"),
                meta.clone(),
                t0,
                Duration::from_secs(60),
            );
        }
        assert_eq!(lock(&f.cache).entries.len(), MAX_CACHE_ENTRIES);
        assert!(f.cached("https://a.example/0", t0).is_none());
        assert!(
            f.cached(&format!("https://a.example/{}", MAX_CACHE_ENTRIES + 9), t0)
                .is_some()
        );
    }
}
