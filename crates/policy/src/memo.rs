//! Decisions of the current second, remembered per policy set.
//!
//! Cedar's evaluation is a pure function of the policies, the entities, the
//! request and its context. When no policy that applies to a request reads
//! `context.arguments`, everything the request, its entities and its
//! context are built from is in [`key`]: the principal and every attribute
//! given to it, the action, the target, the route, the client address and
//! the token binding. The context's `time` has a resolution of one second,
//! so within a second the same key gets the same decision: it is evaluated
//! once and then looked up (a hash lookup and a clone, against several
//! microseconds of evaluation; an agent calls the same tools over and over,
//! and a `tools/list` answer asks about every tool on each list).
//!
//! A memo belongs to one loaded set, so a reload starts empty. It is
//! emptied when the second changes and when it holds [`MEMO_MAX`] entries.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::decision::Decision;
use crate::request::{PrincipalKind, Request, Target};

/// Entries kept at most within one second.
const MEMO_MAX: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Memo {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    time: i64,
    decisions: HashMap<Vec<u8>, Decision>,
}

impl Memo {
    /// The decision remembered for `key` in the second `time`.
    pub(crate) fn get(&self, time: i64, key: &[u8]) -> Option<Decision> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.time != time {
            return None;
        }
        inner.decisions.get(key).cloned()
    }

    /// Remembers `decision` for `key` in the second `time`.
    pub(crate) fn put(&self, time: i64, key: Vec<u8>, decision: &Decision) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.time != time || inner.decisions.len() >= MEMO_MAX {
            inner.decisions.clear();
            inner.time = time;
        }
        inner.decisions.insert(key, decision.clone());
    }
}

/// Everything a request without arguments is evaluated on, but the time:
/// each field length-prefixed (or tagged), so two different requests never
/// share a key.
pub(crate) fn key(req: &Request<'_>) -> Vec<u8> {
    let mut k = Vec::with_capacity(160);
    let p = &req.principal;
    k.push(match p.kind {
        PrincipalKind::User => 0,
        PrincipalKind::Client => 1,
        PrincipalKind::ApiKey => 2,
    });
    text(&mut k, p.id);
    text(&mut k, p.subject);
    opt(&mut k, p.client_id);
    k.extend_from_slice(&(p.scopes.len() as u64).to_le_bytes());
    for s in p.scopes.iter() {
        text(&mut k, s.as_str());
    }
    opt(&mut k, p.issuer);
    text(&mut k, p.tenant);
    list(&mut k, p.groups);
    list(&mut k, p.roles);
    text(&mut k, req.action);
    match req.target {
        Target::Route => k.push(0),
        Target::Tool(name) => {
            k.push(1);
            text(&mut k, name);
        }
        Target::Resource(uri) => {
            k.push(2);
            text(&mut k, uri);
        }
        Target::Prompt(name) => {
            k.push(3);
            text(&mut k, name);
        }
    }
    text(&mut k, req.route);
    let c = &req.context;
    match c.client_ip {
        None => k.push(0),
        Some(std::net::IpAddr::V4(ip)) => {
            k.push(4);
            k.extend_from_slice(&ip.octets());
        }
        Some(std::net::IpAddr::V6(ip)) => {
            k.push(6);
            k.extend_from_slice(&ip.octets());
        }
    }
    k.push(u8::from(c.mtls));
    k.push(u8::from(c.dpop));
    k
}

fn text(k: &mut Vec<u8>, s: &str) {
    k.extend_from_slice(&(s.len() as u64).to_le_bytes());
    k.extend_from_slice(s.as_bytes());
}

fn opt(k: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => k.push(0),
        Some(s) => {
            k.push(1);
            text(k, s);
        }
    }
}

fn list(k: &mut Vec<u8>, items: &[String]) {
    k.extend_from_slice(&(items.len() as u64).to_le_bytes());
    for i in items {
        text(k, i);
    }
}
