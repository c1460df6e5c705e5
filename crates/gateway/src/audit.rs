//! What the audit trail records about each request to a route.
//!
//! The request path fills a [`RequestFacts`] as it learns things (who the
//! caller is, the method, the tool, a digest of the arguments, the policies
//! that decided); [`event`] turns the facts and the outcome into one
//! record. A request answered with success is recorded with
//! [`AuditLog::append`](mcpgate_audit::AuditLog::append), which waits for
//! the durable commit before the response goes out; refusals and failures
//! are queued without waiting (the client saw no success to lose).
//! Nothing secret goes in: no credential, and tool arguments only as a
//! digest unless `[audit] include_arguments` is set.

use std::time::Duration;

use mcpgate_audit::{Event, EventKind, outcome};
use serde_json::Value;

use crate::error::Reject;

/// Facts about one request, gathered along the request path.
#[derive(Debug, Default)]
pub struct RequestFacts {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// The JSON-RPC method (of the first message of a batch).
    pub method: Option<String>,
    /// The tool, prompt or resource the request names.
    pub name: Option<String>,
    /// [`mcpgate_audit::args_digest`] of the arguments.
    pub args_digest: Option<String>,
    /// The arguments themselves, only where `[audit] include_arguments`
    /// asks for them.
    pub arguments: Option<Value>,
    pub policy_ids: Vec<String>,
}

impl RequestFacts {
    /// Records the method and the name a message acts on, and its
    /// arguments: their digest, and a copy if `include_arguments`.
    pub fn message(&mut self, m: &mcpgate_core::jsonrpc::Message, include_arguments: bool) {
        self.method = m.method().map(str::to_owned);
        self.name = m
            .param_str("name")
            .or_else(|| m.param_str("uri"))
            .map(str::to_owned);
        let arguments = m.params().and_then(|p| p.get("arguments"));
        self.args_digest = arguments.map(mcpgate_audit::args_digest);
        if include_arguments {
            self.arguments = arguments.cloned();
        }
    }
}

/// The record of a request to `route`: its outcome from `result`.
pub fn event(
    route: &str,
    facts: RequestFacts,
    result: &Result<http::StatusCode, &Reject>,
    latency: Duration,
    peer: Option<std::net::IpAddr>,
) -> Event {
    let (kind, out, reason): (EventKind, &str, Option<String>) = match result {
        Ok(s) if s.is_success() => (EventKind::McpRequest, outcome::OK, None),
        Ok(s) => (
            EventKind::McpRequest,
            outcome::ERROR,
            Some(format!("upstream answered {}", s.as_u16())),
        ),
        Err(r @ (Reject::MissingCredential | Reject::TokenInQuery)) => (
            EventKind::AuthnFailure,
            outcome::DENIED,
            Some(r.to_string()),
        ),
        Err(Reject::InvalidToken(f)) => (
            EventKind::AuthnFailure,
            outcome::DENIED,
            Some(f.label().to_owned()),
        ),
        Err(Reject::InsufficientScope { needed }) => (
            EventKind::AuthzDecision,
            outcome::DENIED,
            Some(format!(
                "insufficient_scope: needs {}",
                needed.to_space_delimited()
            )),
        ),
        Err(Reject::PolicyDenied) => (
            EventKind::AuthzDecision,
            outcome::DENIED,
            Some("policy".to_owned()),
        ),
        Err(r @ Reject::RateLimited(_)) => (
            EventKind::RateLimited,
            outcome::REFUSED,
            Some(r.to_string()),
        ),
        Err(r @ (Reject::Upstream(_) | Reject::UpstreamTimeout)) => (
            EventKind::McpRequest,
            outcome::ERROR,
            Some(r.outcome().to_owned()),
        ),
        Err(r) => (
            EventKind::McpRequest,
            outcome::REFUSED,
            Some(r.outcome().to_owned()),
        ),
    };
    let mut ev = Event::new(kind, out).route(route).latency(latency);
    if let Some(s) = facts.subject {
        ev = ev.subject(s);
    }
    if let Some(c) = facts.client_id {
        ev = ev.client_id(c);
    }
    if let Some(m) = facts.method {
        ev = ev.method(m);
    }
    if let Some(n) = facts.name {
        ev = ev.name(n);
    }
    ev.args_digest = facts.args_digest;
    if let Some(a) = facts.arguments {
        ev = ev.details(serde_json::json!({ "arguments": a }));
    }
    if !facts.policy_ids.is_empty() {
        ev = ev.policy_ids(facts.policy_ids);
    }
    if let Some(r) = reason {
        ev = ev.reason(r);
    }
    if let Some(p) = peer {
        ev = ev.peer_ip(p);
    }
    ev
}
