//! Access policies on the request path: the route's Cedar policy set
//! (`policy = "FILE.cedar"`), evaluated after the scopes for every
//! message, and for every item of a `tools/list`, `prompts/list` or
//! `resources/list` answer.
//!
//! Mapping to the published schema (`mcpgate policy schema`): a token whose
//! subject is its own client id (the client credentials grant) is
//! `Client::"<client_id>"`; any other token is `User::"<sub>"`; an API key
//! is `ApiKey::"<key id>"`. Routes without authentication have no
//! principal, so a policy on them is refused by the configuration.
//! Tenants: every principal is in the default tenant until tenants exist.

use std::net::IpAddr;
use std::sync::Arc;

use mcpgate_core::jsonrpc::Message;
use mcpgate_policy::{Context, Policies, PrincipalKind as P, PrincipalRef, Request, Target};
use mcpgate_store::DEFAULT_TENANT;

use crate::audit::RequestFacts;
use crate::authn::{Principal, PrincipalKind};
use crate::error::Reject;
use crate::filter::ListKind;

/// The principal as the schema names it; `None` for anonymous callers.
pub fn principal_ref(p: &Principal) -> Option<PrincipalRef<'_>> {
    let (kind, id) = match &p.kind {
        PrincipalKind::Token if p.client_id.as_deref() == Some(p.subject.as_str()) => {
            (P::Client, p.subject.as_str())
        }
        PrincipalKind::Token => (P::User, p.subject.as_str()),
        PrincipalKind::ApiKey { id } => (P::ApiKey, id.as_str()),
        PrincipalKind::Anonymous => return None,
    };
    Some(PrincipalRef {
        kind,
        id,
        subject: &p.subject,
        client_id: p.client_id.as_deref(),
        scopes: &p.scopes,
        issuer: p.issuer.as_deref(),
        tenant: DEFAULT_TENANT,
        groups: &p.groups,
        roles: &p.roles,
    })
}

/// What a message acts on.
fn target_of(m: &Message) -> Target<'_> {
    match m.method() {
        Some("tools/call") => Target::Tool(m.param_str("name").unwrap_or("")),
        Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => {
            Target::Resource(m.param_str("uri").unwrap_or(""))
        }
        Some("prompts/get") => Target::Prompt(m.param_str("name").unwrap_or("")),
        _ => Target::Route,
    }
}

fn now() -> i64 {
    crate::authn::now() as i64
}

/// Authorizes every request and notification of `messages`; the first
/// denial refuses the whole HTTP request. Responses (answers to the
/// server's own requests) are not subject to policy.
pub fn check(
    policies: &Policies,
    route: &str,
    principal: &Principal,
    messages: &[Message],
    peer: Option<IpAddr>,
    facts: &mut RequestFacts,
) -> Result<(), Reject> {
    if policies.is_allow_all() {
        return Ok(());
    }
    let Some(who) = principal_ref(principal) else {
        return Err(Reject::PolicyDenied);
    };
    for m in messages {
        let Some(action) = m.method() else { continue };
        let decision = policies.authorize(&Request {
            principal: who,
            action,
            target: target_of(m),
            route,
            context: Context {
                client_ip: peer,
                time: now(),
                mtls: false,
                dpop: false,
                arguments: m.params().and_then(|p| p.get("arguments")),
            },
        });
        facts.policy_ids = decision.policy_ids;
        if !decision.allowed {
            for e in &decision.errors {
                tracing::warn!(route, action, error = %e, "policy evaluation error (denied)");
            }
            return Err(Reject::PolicyDenied);
        }
    }
    Ok(())
}

/// For a list answer: whether the caller may use the item (`tools/call`,
/// `resources/read` or `prompts/get` of it, without arguments).
pub fn may_use(
    policies: &Policies,
    route: &str,
    principal: &Principal,
    list: ListKind,
    peer: Option<IpAddr>,
    item: &str,
) -> bool {
    if policies.is_allow_all() {
        return true;
    }
    let Some(who) = principal_ref(principal) else {
        return false;
    };
    let target = match list {
        ListKind::Tools => Target::Tool(item),
        ListKind::Resources => Target::Resource(item),
        ListKind::Prompts => Target::Prompt(item),
    };
    policies.may_use(
        &Request {
            principal: who,
            action: list.method(),
            target: Target::Route,
            route,
            context: Context {
                client_ip: peer,
                time: now(),
                ..Context::default()
            },
        },
        target,
    )
}

/// The owned pieces a list filter's predicate needs (it outlives the
/// request handler's borrows).
#[derive(Debug, Clone)]
pub struct ListScope {
    pub policies: Policies,
    pub route: String,
    pub principal: Arc<Principal>,
    pub list: ListKind,
    pub peer: Option<IpAddr>,
}

impl ListScope {
    pub fn keeps(&self, item: &str) -> bool {
        may_use(
            &self.policies,
            &self.route,
            &self.principal,
            self.list,
            self.peer,
            item,
        )
    }
}
