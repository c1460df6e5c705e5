//! The MCP endpoint of a route: every request passes these steps in this
//! order, and the first that refuses answers.
//!
//! 1. limits: the body is read up to `max_body_bytes` (413 beyond);
//! 2. origin: a present `Origin` not allowed gets 403 (DNS rebinding);
//! 3. authentication (routes with `auth = "oauth"`): 401 with a challenge;
//! 4. parsing: strict JSON-RPC (400 `-32700`/`-32600`), batches only where
//!    the protocol version has them, SEP-2243 headers equal to the body
//!    (400 `-32020`);
//! 5. authorisation: route and tool scopes (403 `insufficient_scope`), then
//!    the route's Cedar policy (403),
//!    tools hidden by `tools_include`/`tools_exclude` (404), rate limits
//!    (429 with `Retry-After`);
//! 6. proxy: to the HTTP or stdio upstream, credentials stripped, identity
//!    headers set, `tools/list` filtered to what the caller may call; first,
//!    with the audit trail on, the trail must be writable (else 503).
//!
//! Then every request is recorded in the audit trail (see [`crate::audit`]):
//! a successful one durably before its response is returned.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Response, header};
use http_body_util::BodyExt as _;
use mcpgate_core::config::AuthMode;
use mcpgate_core::jsonrpc::{self, Body as RpcBody, Message};
use mcpgate_core::mcp::{self, Era, MetadataHeaders};

use crate::Gateway;

// Header names built at compile time: a `&str` lookup parses the name on
// every call.
const H_PROTOCOL_VERSION: http::HeaderName =
    http::HeaderName::from_static(mcp::HEADER_PROTOCOL_VERSION);
const H_METHOD: http::HeaderName = http::HeaderName::from_static(mcp::HEADER_METHOD);
const H_NAME: http::HeaderName = http::HeaderName::from_static(mcp::HEADER_NAME);
const H_SESSION_ID: http::HeaderName = http::HeaderName::from_static(mcp::HEADER_SESSION_ID);
use crate::audit::RequestFacts;
use crate::authn::Audience;
use crate::error::{ErrorContext, Reject};
use crate::filter::{ListFilter, ListKind};
use crate::metrics::{ReasonLabels, RequestLabels, method_label};
use crate::proxy::http::Identity;
use crate::proxy::stdio::CallerEnv;
use crate::route::{RouteRuntime, UpstreamRuntime, is_loopback_host};

/// Answers one request to `route`, from `peer` (the client's address, for
/// throttling, policies and the audit trail).
pub async fn handle(
    gw: Arc<Gateway>,
    route: Arc<RouteRuntime>,
    req: http::Request<Body>,
    peer: Option<std::net::IpAddr>,
) -> Response<Body> {
    let mut ctx = ErrorContext {
        id: None,
        resource_metadata: (route.config.auth == AuthMode::Oauth).then_some(route.prm_url.as_str()),
        route_scopes: Some(&route.config.scopes),
    };
    let origin = allowed_origin(&route, req.headers());
    if req.method() == Method::OPTIONS {
        return preflight(origin, req.headers());
    }
    let mut method_name: &'static str = "none";
    let started = std::time::Instant::now();
    let mut facts = RequestFacts::default();
    let mut result = run(
        &gw,
        &route,
        req,
        &mut ctx,
        &mut method_name,
        &mut facts,
        peer,
    )
    .await;
    if let Some(audit) = &gw.audit {
        let ev = crate::audit::event(
            &route.config.path,
            facts,
            &result.as_ref().map(|r| r.status()),
            started.elapsed(),
            peer,
        );
        let served = matches!(&result, Ok(r) if r.status().is_success());
        if served {
            // The client must not see success without a durable record.
            if let Err(e) = audit.append(ev).await {
                tracing::error!(route = %route.config.path, error = %e, "audit record not written");
                if !route.config.danger_serve_unaudited {
                    result = Err(Reject::AuditUnavailable);
                }
            }
        } else if let Err(e) = audit.append_nowait(ev) {
            tracing::warn!(route = %route.config.path, error = %e, "audit record dropped");
        }
    }
    let outcome = match &result {
        Ok(r) if r.status().is_success() => "ok",
        Ok(_) => "upstream_error_status",
        Err(e) => e.outcome(),
    };
    gw.metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route.metrics_name.clone(),
            method: method_name,
            outcome,
        })
        .inc();
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if let Reject::InvalidToken(f) = &e {
                gw.metrics
                    .auth_failures
                    .get_or_create(&ReasonLabels { reason: f.label() })
                    .inc();
                tracing::info!(route = %route.config.path, reason = %f, "credential refused");
            } else if matches!(
                e,
                Reject::Upstream(_) | Reject::UpstreamTimeout | Reject::StoreUnavailable(_)
            ) {
                tracing::warn!(route = %route.config.path, error = %e, "request failed");
            } else {
                tracing::debug!(route = %route.config.path, error = %e, "request refused");
            }
            e.into_response_with(&ctx)
        }
    };
    if let Some(o) = origin {
        add_cors(resp.headers_mut(), o);
    }
    resp
}

/// CORS for browser-based MCP clients: only for allowed origins (the same
/// list the Origin check uses); the headers a client must read (session
/// id, challenges) are exposed.
fn allowed_origin(route: &RouteRuntime, h: &HeaderMap) -> Option<http::HeaderValue> {
    let o = h.get(header::ORIGIN)?;
    let s = o.to_str().ok()?;
    route
        .allowed_origins
        .iter()
        .any(|a| a == s)
        .then(|| o.clone())
}

fn add_cors(h: &mut HeaderMap, origin: http::HeaderValue) {
    use http::HeaderValue as V;
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        V::from_static("mcp-session-id, mcp-protocol-version, www-authenticate"),
    );
    h.append(header::VARY, V::from_static("origin"));
}

fn preflight(origin: Option<http::HeaderValue>, req: &HeaderMap) -> Response<Body> {
    use http::HeaderValue as V;
    let Some(origin) = origin else {
        // No Origin, or one not allowed: no CORS grant.
        let mut r = Response::new(Body::empty());
        *r.status_mut() = http::StatusCode::FORBIDDEN;
        return r;
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = http::StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    add_cors(h, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        V::from_static("GET, POST, DELETE"),
    );
    // Grant the requested headers that an MCP client sends: the fixed set
    // plus any `Mcp-Param-*` (SEP-2243), which no static list can name.
    const ALLOWED: &[&str] = &[
        "authorization",
        "content-type",
        "accept",
        "last-event-id",
        "mcp-protocol-version",
        "mcp-session-id",
        "mcp-method",
        "mcp-name",
    ];
    let granted: Vec<String> = req
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| ALLOWED.contains(&n.as_str()) || n.starts_with("mcp-param-"))
        .collect();
    if let Ok(v) = V::from_str(&granted.join(", ")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    h.insert(header::ACCESS_CONTROL_MAX_AGE, V::from_static("600"));
    r
}

async fn run(
    gw: &Gateway,
    route: &RouteRuntime,
    req: http::Request<Body>,
    ctx: &mut ErrorContext<'_>,
    method_name: &mut &'static str,
    facts: &mut RequestFacts,
    peer: Option<std::net::IpAddr>,
) -> Result<Response<Body>, Reject> {
    let (parts, body) = req.into_parts();
    let is_post = parts.method == Method::POST;
    if !matches!(parts.method, Method::POST | Method::GET | Method::DELETE) {
        return Err(Reject::MethodNotAllowed);
    }

    // 1. Limits.
    let body = if is_post {
        read_body(body, gw.config.limits.max_body_bytes).await?
    } else {
        Bytes::new()
    };
    let parsed = is_post.then(|| jsonrpc::parse(&body, gw.config.limits.max_json_depth));
    ctx.id = match &parsed {
        Some(Ok(RpcBody::Single(m))) => m.id().cloned(),
        Some(Err(_)) => jsonrpc::salvage_id(&body),
        _ => None,
    };
    if let Some(Ok(RpcBody::Single(m))) = &parsed {
        *method_name = method_label(m.method());
        if gw.audit.is_some() {
            facts.message(m, gw.config.audit.include_arguments);
        }
    }

    // 2. Origin and Host.
    check_origin(route, &parts.headers)?;

    // 3. Authentication.
    let principal = match route.config.auth {
        AuthMode::None => gw.anonymous.clone(),
        AuthMode::Oauth => {
            if query_has_token(parts.uri.query()) {
                return Err(Reject::TokenInQuery);
            }
            let token = bearer(&parts.headers)?;
            gw.authn
                .authenticate(
                    token,
                    Audience {
                        resource: route.resource.as_str(),
                        route_path: &route.config.path,
                    },
                )
                .await?
        }
    };
    if gw.audit.is_some() && route.config.auth == AuthMode::Oauth {
        facts.subject = Some(principal.subject.clone());
        facts.client_id = principal.client_id.clone();
    }
    let effective = gw.hierarchy.effective(&principal.scopes);

    // 4. Parsing.
    let protocol_version = header_str(&parts.headers, &H_PROTOCOL_VERSION);
    let messages: Vec<Message> = match parsed {
        None => Vec::new(),
        Some(Err(e)) => return Err(Reject::Parse(e)),
        Some(Ok(RpcBody::Batch(ms))) => {
            if !mcp::allows_batches(protocol_version) {
                return Err(Reject::BatchNotSupported(
                    protocol_version.unwrap_or(mcp::ASSUMED_VERSION).to_owned(),
                ));
            }
            if ms.iter().any(|m| m.method() == Some("tools/list")) && route.filters_tools() {
                // Per-caller filtering is done on single responses only.
                return Err(Reject::BatchNotSupported(
                    "2025-03-26 (tools/list in a batch on a route with tool_scopes)".into(),
                ));
            }
            ms
        }
        Some(Ok(RpcBody::Single(m))) => {
            if parts.headers.get_all(&H_NAME).iter().count() > 1
                || parts.headers.get_all(&H_METHOD).iter().count() > 1
            {
                return Err(Reject::HeaderMismatch(mcp::HeaderMismatch::Invalid(
                    "Mcp-Name",
                )));
            }
            let h = MetadataHeaders {
                protocol_version: parts.headers.get(&H_PROTOCOL_VERSION).map(|v| v.as_bytes()),
                method: parts.headers.get(&H_METHOD).map(|v| v.as_bytes()),
                name: parts.headers.get(&H_NAME).map(|v| v.as_bytes()),
            };
            mcp::check_metadata_headers(h, &m).map_err(Reject::HeaderMismatch)?;
            vec![m]
        }
    };

    // 5. Authorisation.
    if route.config.auth == AuthMode::Oauth {
        if messages.is_empty() && !effective.missing(&route.config.scopes).is_empty() {
            return Err(Reject::InsufficientScope {
                needed: route.config.scopes.clone(),
            });
        }
        // One challenge for the whole operation: a batch names the scopes
        // of all its messages, not only the first one that fails (else the
        // client steps up once per message).
        if messages
            .iter()
            .any(|m| crate::authz::check(&route.config, m, &effective).is_err())
        {
            let mut needed = mcpgate_core::ScopeSet::new();
            for m in &messages {
                needed.extend(crate::authz::required(&route.config, m).iter());
            }
            return Err(Reject::InsufficientScope { needed });
        }
    }
    for m in &messages {
        if m.method() == Some("tools/call")
            && let Some(name) = m.param_str("name")
            && route.config.tool_hidden(name)
        {
            return Err(Reject::ToolHidden(name.to_owned()));
        }
    }
    // The route's policy, after the scopes.
    let policies = route.policy.as_ref().map(|(h, _)| h.current());
    if let Some(p) = &policies {
        crate::policy::check(p, &route.config.path, &principal, &messages, peer, facts)?;
    }
    route
        .limits
        .check(&principal, &messages)
        .map_err(Reject::RateLimited)?;

    // Before anything reaches the upstream: the audit trail must be able to
    // record it (unless the route is configured to serve unaudited).
    if let Some(audit) = &gw.audit
        && !route.config.danger_serve_unaudited
        && audit.ready().is_err()
    {
        return Err(Reject::AuditUnavailable);
    }

    // 6. Proxy.
    let filter: Option<ListFilter> = match messages.as_slice() {
        [Message::Request { id, method, .. }] => {
            let kind = ListKind::of_method(method);
            let by_policy = policies
                .filter(|p| !p.is_allow_all())
                .zip(kind)
                .map(|(p, list)| crate::policy::ListScope {
                    policies: p,
                    route: route.config.path.clone(),
                    principal: principal.clone(),
                    list,
                    peer,
                });
            match kind {
                Some(ListKind::Tools) if route.filters_tools() => {
                    let cfg = route.config.clone();
                    let eff = effective.clone().into_owned();
                    let keep = move |name: &str| {
                        !cfg.tool_hidden(name)
                            && crate::authz::tool_allowed(&cfg, name, &eff)
                            && by_policy.as_ref().is_none_or(|p| p.keeps(name))
                    };
                    Some(ListFilter {
                        id: id.clone(),
                        kind: ListKind::Tools,
                        keep: Box::new(keep),
                    })
                }
                Some(k @ (ListKind::Prompts | ListKind::Resources)) => {
                    by_policy.map(|p| ListFilter {
                        id: id.clone(),
                        kind: k,
                        keep: Box::new(move |item: &str| p.keeps(item)),
                    })
                }
                _ => None,
            }
        }
        _ => None,
    };
    match &route.upstream {
        UpstreamRuntime::Http(up) => {
            let authenticated = route.config.auth == AuthMode::Oauth;
            // Sessions of authenticated routes are bound to the principal:
            // the client holds `<upstream id>.<tag>`, the upstream its own id.
            let owner = principal.partition_key();
            let mut headers = parts.headers;
            if authenticated && let Some(presented) = headers.get(&H_SESSION_ID) {
                let upstream_id = presented
                    .to_str()
                    .ok()
                    .and_then(|p| gw.sessions.unwrap(owner, &route.config.path, p))
                    .and_then(|id| http::HeaderValue::from_str(id).ok())
                    .ok_or(Reject::SessionNotFound)?;
                headers.insert(H_SESSION_ID, upstream_id);
            }
            let identity = Identity {
                headers: &gw.identity_names,
                values: authenticated.then(|| principal.header_values()),
            };
            let mut resp = up
                .forward(
                    parts.method,
                    headers,
                    body,
                    &identity,
                    filter,
                    &gw.metrics,
                    &route.metrics_name,
                )
                .await?;
            if authenticated && let Some(sid) = resp.headers().get(&H_SESSION_ID) {
                let wrapped = sid
                    .to_str()
                    .ok()
                    .map(|s| gw.sessions.wrap(owner, &route.config.path, s))
                    .and_then(|w| http::HeaderValue::from_str(&w).ok())
                    .ok_or_else(|| {
                        Reject::Upstream("upstream session id is not visible ASCII".into())
                    })?;
                resp.headers_mut().insert(H_SESSION_ID, wrapped);
            }
            Ok(resp)
        }
        UpstreamRuntime::Stdio(up) => {
            let session = header_str(&parts.headers, &H_SESSION_ID);
            let owner = principal.partition_key();
            match parts.method {
                Method::GET => up.get(owner, session),
                Method::DELETE => up.delete(owner, session),
                _ => {
                    let [m] = messages.as_slice() else {
                        return Err(Reject::BatchNotSupported(
                            "any version on a stdio route".into(),
                        ));
                    };
                    let version = protocol_version.or(m.meta_protocol_version());
                    let modern = version.is_some_and(|v| Era::of_version(v) == Era::Modern);
                    // The bridge speaks the modern era for the child, in
                    // the one modern version it knows; a later one (or a
                    // draft) gets the specification's version error, with
                    // the versions it can use, rather than a guess.
                    if let Some(v) = version.filter(|v| modern && *v != mcp::MODERN_VERSION) {
                        return Err(Reject::UnsupportedVersion(v.to_owned()));
                    }
                    let caller = CallerEnv {
                        subject: principal.subject.clone(),
                        client_id: principal.client_id.clone(),
                        scopes: principal.scope_string.clone(),
                    };
                    if modern {
                        up.post_modern(owner, &caller, m, filter).await
                    } else {
                        up.post(owner, &caller, session, m, &body, filter).await
                    }
                }
            }
        }
    }
}

async fn read_body(body: Body, max: usize) -> Result<Bytes, Reject> {
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Reject::BodyTooLarge),
        Err(e) => Err(Reject::BodyRead(e.to_string())),
    }
}

fn header_str<'a>(h: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn check_origin(route: &RouteRuntime, h: &HeaderMap) -> Result<(), Reject> {
    if let Some(origin) = h.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| route.allowed_origins.iter().any(|a| a == o));
        if !ok {
            return Err(Reject::OriginNotAllowed);
        }
    }
    if route.loopback_only_host {
        let ok = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .is_none_or(is_loopback_host);
        if !ok {
            return Err(Reject::OriginNotAllowed);
        }
    }
    Ok(())
}

/// RFC 6750 §2.3 tokens in the URL are refused outright (MCP: "MUST NOT
/// be included in the URI query string"). Names are compared decoded
/// (`access%5Ftoken` is the same parameter to whoever reads the URL).
fn query_has_token(q: Option<&str>) -> bool {
    q.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, _)| k.eq_ignore_ascii_case("access_token"))
    })
}

/// The bearer token of `Authorization: Bearer <token>` (RFC 6750 §2.1;
/// the scheme is case-insensitive). Several Authorization headers are
/// refused rather than guessed between.
fn bearer(h: &HeaderMap) -> Result<&str, Reject> {
    let mut all = h.get_all(header::AUTHORIZATION).iter();
    let Some(v) = all.next() else {
        return Err(Reject::MissingCredential);
    };
    if all.next().is_some() {
        return Err(Reject::InvalidToken(crate::error::AuthFailure::NotBearer));
    }
    let s = v
        .to_str()
        .map_err(|_| Reject::InvalidToken(crate::error::AuthFailure::NotBearer))?;
    let (scheme, token) = s
        .split_once(' ')
        .ok_or(Reject::InvalidToken(crate::error::AuthFailure::NotBearer))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(Reject::InvalidToken(crate::error::AuthFailure::NotBearer));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6750_2_3_access_token_query_parameter_is_detected() {
        assert!(query_has_token(Some("access_token=abc")));
        assert!(query_has_token(Some("x=1&ACCESS_TOKEN=abc")));
        assert!(query_has_token(Some("access%5Ftoken=abc")));
        assert!(query_has_token(Some("x=1&%61ccess_token=abc")));
        assert!(query_has_token(Some("access_token")));
        assert!(!query_has_token(Some("token_hint=1")));
        assert!(!query_has_token(None));
    }

    #[test]
    fn rfc6750_2_1_bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), "abc");
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(matches!(bearer(&h), Err(Reject::InvalidToken(_))));
        h.remove(header::AUTHORIZATION);
        assert!(matches!(bearer(&h), Err(Reject::MissingCredential)));
    }
}
