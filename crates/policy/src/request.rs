//! What the gateway asks: the request, and its translation into Cedar.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, RwLock};

use cedar_policy as cedar;
use cedar_policy::RestrictedExpression as Rx;
use mcpgate_core::ScopeSet;
use serde_json::Value;

use crate::schema::{Action, TargetKind, Types};

/// One MCP call to decide.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: PrincipalRef<'a>,
    /// The MCP method (`tools/call`, `resources/read`, ...): the Cedar action
    /// `Action::"<method>"`.
    pub action: &'a str,
    /// What the method acts on. Must fit the method: `Tool` for
    /// `tools/call`, `Resource` for `resources/read`/`subscribe`/
    /// `unsubscribe`, `Prompt` for `prompts/get`, `Route` for the rest;
    /// otherwise the request is denied.
    pub target: Target<'a>,
    /// The route's path (`/mcp`): `Route::"<route>"`, the parent of the
    /// target.
    pub route: &'a str,
    pub context: Context<'a>,
}

/// Which principal entity type the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// A person (or agent for a person): a token whose subject is a user.
    User,
    /// A client acting for itself (client credentials; `sub` is the client).
    Client,
    /// An mcpgate API key.
    ApiKey,
}

/// The caller, borrowed from the gateway's authenticated principal.
#[derive(Debug, Clone, Copy)]
pub struct PrincipalRef<'a> {
    pub kind: PrincipalKind,
    /// The entity id: the token's `sub` for `User`, the client id for
    /// `Client`, the key id for `ApiKey`.
    pub id: &'a str,
    pub subject: &'a str,
    pub client_id: Option<&'a str>,
    /// The credential's scopes: `principal.scopes` and `context.scopes`.
    pub scopes: &'a ScopeSet,
    pub issuer: Option<&'a str>,
    pub tenant: &'a str,
    pub groups: &'a [String],
    pub roles: &'a [String],
}

/// What the method acts on. Names are the server's (tool and prompt names,
/// resource URIs), used verbatim as entity ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target<'a> {
    /// The route itself: list methods and session methods.
    Route,
    Tool(&'a str),
    Resource(&'a str),
    Prompt(&'a str),
}

impl Target<'_> {
    pub(crate) fn kind(&self) -> TargetKind {
        match self {
            Self::Route => TargetKind::Route,
            Self::Tool(_) => TargetKind::Tool,
            Self::Resource(_) => TargetKind::Resource,
            Self::Prompt(_) => TargetKind::Prompt,
        }
    }
}

/// The request's circumstances.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The client's address (`context.client_ip`, absent when unknown).
    pub client_ip: Option<IpAddr>,
    /// Unix seconds (`context.time`); `hour_utc` and `weekday_utc` are
    /// derived from it.
    pub time: i64,
    /// The token is bound to the client certificate (RFC 8705).
    pub mtls: bool,
    /// The token is bound to a DPoP key (RFC 9449).
    pub dpop: bool,
    /// The call's arguments (`params.arguments` of `tools/call`), converted
    /// to `context.arguments` within bounds (see [`crate::MAX_ARGUMENT_DEPTH`]
    /// and its siblings): string → String, integer → Long, other numbers →
    /// String of their JSON text, bool → Bool, array → Set, object →
    /// Record, null → absent. `None` gives an empty record. When a value
    /// exceeds a bound and a policy that applies to the request reads
    /// `context.arguments`, the request is denied.
    pub arguments: Option<&'a Value>,
}

impl Context<'_> {
    /// A context at `time` (Unix seconds), with nothing else known.
    pub fn at(time: i64) -> Self {
        Self {
            time,
            ..Self::default()
        }
    }
}

/// `context.hour_utc`: 0–23.
pub(crate) fn hour_utc(time: i64) -> i64 {
    time.rem_euclid(86_400) / 3_600
}

/// `context.weekday_utc`: 0 = Monday … 6 = Sunday (1970-01-01 was a
/// Thursday).
pub(crate) fn weekday_utc(time: i64) -> i64 {
    (time.div_euclid(86_400) + 3).rem_euclid(7)
}

/// The Cedar request and the entities it needs: the principal, the target,
/// and the route.
pub(crate) struct Built {
    pub request: cedar::Request,
    pub entities: Arc<cedar::Entities>,
}

/// The uids of a request's principal, resource and route.
pub(crate) struct Uids {
    pub principal: cedar::EntityUid,
    pub resource: cedar::EntityUid,
    pub route: cedar::EntityUid,
}

pub(crate) fn uids(req: &Request<'_>, types: &Types) -> Uids {
    let principal_type = match req.principal.kind {
        PrincipalKind::User => &types.user,
        PrincipalKind::Client => &types.client,
        PrincipalKind::ApiKey => &types.api_key,
    };
    let route = uid(&types.route, req.route);
    let resource = match req.target {
        Target::Route => route.clone(),
        Target::Tool(name) => uid(&types.tool, name),
        Target::Resource(u) => uid(&types.resource, u),
        Target::Prompt(name) => uid(&types.prompt, name),
    };
    Uids {
        principal: uid(principal_type, req.principal.id),
        resource,
        route,
    }
}

/// Builds the Cedar request around the entities. No schema is passed to
/// Cedar here: the request is built by this crate only, in the schema's
/// shape (tested), and validating it per call would cost more than the
/// evaluation.
///
/// `arguments` `None` stands for the empty record (no policy that applies
/// reads them): the context is then the same for every call of a caller
/// within a second, and is taken from [`context_cache`] when it was built
/// already (Cedar evaluates every attribute when a context is built, about
/// a third of the cost of a request before evaluation).
pub(crate) fn build(
    req: &Request<'_>,
    action: &Action,
    arguments: Option<Rx>,
    uids: Uids,
    entities: Arc<cedar::Entities>,
) -> Result<Built, String> {
    let context = match arguments {
        Some(arguments) => context(req, arguments)?,
        None => cached_context(req)?,
    };
    let request = cedar::Request::new(
        uids.principal,
        action.uid.clone(),
        uids.resource,
        context,
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok(Built { request, entities })
}

/// The Cedar context of `req`, with `arguments` as `context.arguments`.
fn context(req: &Request<'_>, arguments: Rx) -> Result<cedar::Context, String> {
    let scopes = req
        .principal
        .scopes
        .iter()
        .map(|s| Rx::new_string(s.as_str().to_owned()));
    let c = &req.context;
    let mut pairs = Vec::with_capacity(8);
    pairs.push(("scopes".to_owned(), Rx::new_set(scopes)));
    if let Some(ip) = c.client_ip {
        pairs.push(("client_ip".to_owned(), ip_expression(ip)));
    }
    pairs.push(("time".to_owned(), Rx::new_long(c.time)));
    pairs.push(("hour_utc".to_owned(), Rx::new_long(hour_utc(c.time))));
    pairs.push(("weekday_utc".to_owned(), Rx::new_long(weekday_utc(c.time))));
    pairs.push(("mtls".to_owned(), Rx::new_bool(c.mtls)));
    pairs.push(("dpop".to_owned(), Rx::new_bool(c.dpop)));
    pairs.push(("arguments".to_owned(), arguments));
    cedar::Context::from_pairs(pairs).map_err(|e| e.to_string())
}

/// Contexts with empty arguments of the current second, keyed by what
/// they are built from but the time (a hash to find the entry, then a
/// field-by-field comparison, so a collision can only miss). Emptied when
/// the second changes or at [`CONTEXT_CACHE_MAX`] entries.
#[derive(Default)]
struct ContextCache {
    time: i64,
    entries: HashMap<u64, Vec<CachedContext>>,
    len: usize,
}

struct CachedContext {
    scopes: Vec<String>,
    client_ip: Option<IpAddr>,
    mtls: bool,
    dpop: bool,
    context: cedar::Context,
}

impl CachedContext {
    fn matches(&self, req: &Request<'_>) -> bool {
        let c = &req.context;
        self.client_ip == c.client_ip
            && self.mtls == c.mtls
            && self.dpop == c.dpop
            && self.scopes.len() == req.principal.scopes.len()
            && self
                .scopes
                .iter()
                .zip(req.principal.scopes.iter())
                .all(|(a, b)| a == b.as_str())
    }
}

const CONTEXT_CACHE_MAX: usize = 4096;

fn context_cache() -> &'static RwLock<ContextCache> {
    static CACHE: LazyLock<RwLock<ContextCache>> = LazyLock::new(Default::default);
    &CACHE
}

fn context_hash(req: &Request<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let c = &req.context;
    (c.client_ip, c.mtls, c.dpop).hash(&mut h);
    req.principal.scopes.len().hash(&mut h);
    for s in req.principal.scopes.iter() {
        s.as_str().hash(&mut h);
    }
    h.finish()
}

/// The context of `req` with empty arguments, from the cache or built and
/// cached.
fn cached_context(req: &Request<'_>) -> Result<cedar::Context, String> {
    let time = req.context.time;
    let h = context_hash(req);
    {
        let cache = context_cache().read().unwrap_or_else(|e| e.into_inner());
        if cache.time == time
            && let Some(found) = cache
                .entries
                .get(&h)
                .and_then(|bucket| bucket.iter().find(|c| c.matches(req)))
        {
            return Ok(found.context.clone());
        }
    }
    let context = context(req, crate::arguments::empty_record())?;
    let mut cache = context_cache().write().unwrap_or_else(|e| e.into_inner());
    if cache.time != time || cache.len >= CONTEXT_CACHE_MAX {
        cache.entries.clear();
        cache.len = 0;
        cache.time = time;
    }
    cache.entries.entry(h).or_default().push(CachedContext {
        scopes: req
            .principal
            .scopes
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        client_ip: req.context.client_ip,
        mtls: req.context.mtls,
        dpop: req.context.dpop,
        context: context.clone(),
    });
    cache.len += 1;
    Ok(context)
}

/// `ip("<addr>")`, cached per address: Cedar's `new_ip` parses the name
/// `ip` with its full parser on every call (a few µs, a third of building a
/// request). The cache is emptied when it reaches [`IP_CACHE_MAX`].
fn ip_expression(ip: IpAddr) -> Rx {
    static CACHE: LazyLock<RwLock<HashMap<IpAddr, Rx>>> = LazyLock::new(Default::default);
    if let Some(rx) = CACHE.read().unwrap_or_else(|e| e.into_inner()).get(&ip) {
        return rx.clone();
    }
    let rx = Rx::new_ip(ip.to_string());
    let mut cache = CACHE.write().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= IP_CACHE_MAX {
        cache.clear();
    }
    cache.insert(ip, rx.clone());
    rx
}

const IP_CACHE_MAX: usize = 4096;

pub(crate) fn uid(t: &cedar::EntityTypeName, id: &str) -> cedar::EntityUid {
    cedar::EntityUid::from_type_name_and_id(t.clone(), cedar::EntityId::new(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_context_equals_a_freshly_built_one() {
        let scopes = ScopeSet::parse("mcp files:read").unwrap();
        let other_scopes = ScopeSet::parse("mcp").unwrap();
        let principal = |scopes| PrincipalRef {
            kind: PrincipalKind::User,
            id: "u",
            subject: "u",
            client_id: None,
            scopes,
            issuer: None,
            tenant: "t",
            groups: &[],
            roles: &[],
        };
        let req = |scopes, time, client_ip: Option<IpAddr>, mtls| Request {
            principal: principal(scopes),
            action: "tools/call",
            target: Target::Tool("t"),
            route: "/mcp",
            context: Context {
                client_ip,
                time,
                mtls,
                ..Context::default()
            },
        };
        let ip = "192.0.2.1".parse().ok();
        // Each differs from the first in one of the keyed fields, the
        // last only in the second.
        let reqs = [
            req(&scopes, 1_000, ip, false),
            req(&other_scopes, 1_000, ip, false),
            req(&scopes, 1_000, None, false),
            req(&scopes, 1_000, ip, true),
            req(&scopes, 1_001, ip, false),
        ];
        for _ in 0..2 {
            for r in &reqs {
                let fresh = context(r, crate::arguments::empty_record());
                let cached = cached_context(r);
                assert!(fresh.is_ok());
                assert_eq!(cached, fresh, "{r:?}");
            }
        }
    }

    #[test]
    fn time_fields_are_utc_hour_and_monday_based_weekday() {
        // 1970-01-01T00:00:00Z was a Thursday.
        assert_eq!((hour_utc(0), weekday_utc(0)), (0, 3));
        // 2024-01-01T13:30:00Z was a Monday.
        assert_eq!(
            (hour_utc(1_704_115_800), weekday_utc(1_704_115_800)),
            (13, 0)
        );
        // 1969-12-31T23:00:00Z was a Wednesday.
        assert_eq!((hour_utc(-3_600), weekday_utc(-3_600)), (23, 2));
    }
}
