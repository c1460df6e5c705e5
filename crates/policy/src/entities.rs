//! The entities of a request (principal, route, target), built once per
//! distinct caller and target and cached.
//!
//! Building Cedar entities evaluates every attribute and computes the
//! hierarchy: about half the cost of a request before any policy runs. The
//! same caller calls the same tools over and over, so the built
//! [`cedar::Entities`] are kept, keyed by everything they are built from
//! (a hash to find the entry, then a field-by-field comparison, so a hash
//! collision can only miss). Per policy set, so a reload starts afresh;
//! emptied when it reaches [`CACHE_MAX`] entries.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use cedar_policy as cedar;
use cedar_policy::RestrictedExpression as Rx;

use crate::request::{PrincipalKind, Request, Target, Uids};

const CACHE_MAX: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct EntityCache {
    map: RwLock<HashMap<u64, Bucket>>,
}

/// The entries whose keys hash alike.
type Bucket = Vec<(Key, Arc<cedar::Entities>)>;

/// What the entities are built from, owned.
#[derive(Debug)]
struct Key {
    kind: PrincipalKind,
    id: String,
    subject: String,
    client_id: Option<String>,
    scopes: Vec<String>,
    issuer: Option<String>,
    tenant: String,
    groups: Vec<String>,
    roles: Vec<String>,
    route: String,
    target: (u8, String),
}

fn target_key(t: Target<'_>) -> (u8, &str) {
    match t {
        Target::Route => (0, ""),
        Target::Tool(n) => (1, n),
        Target::Resource(u) => (2, u),
        Target::Prompt(n) => (3, n),
    }
}

impl Key {
    fn new(req: &Request<'_>) -> Self {
        let p = &req.principal;
        let (t, name) = target_key(req.target);
        Self {
            kind: p.kind,
            id: p.id.to_owned(),
            subject: p.subject.to_owned(),
            client_id: p.client_id.map(str::to_owned),
            scopes: p.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            issuer: p.issuer.map(str::to_owned),
            tenant: p.tenant.to_owned(),
            groups: p.groups.to_vec(),
            roles: p.roles.to_vec(),
            route: req.route.to_owned(),
            target: (t, name.to_owned()),
        }
    }

    fn matches(&self, req: &Request<'_>) -> bool {
        let p = &req.principal;
        self.kind == p.kind
            && self.id == p.id
            && self.subject == p.subject
            && self.client_id.as_deref() == p.client_id
            && self.scopes.len() == p.scopes.len()
            && self
                .scopes
                .iter()
                .zip(p.scopes.iter())
                .all(|(a, b)| a == b.as_str())
            && self.issuer.as_deref() == p.issuer
            && self.tenant == p.tenant
            && self.groups == p.groups
            && self.roles == p.roles
            && self.route == req.route
            && (self.target.0, self.target.1.as_str()) == target_key(req.target)
    }
}

fn hash(req: &Request<'_>) -> u64 {
    let p = &req.principal;
    let mut h = DefaultHasher::new();
    p.kind.hash(&mut h);
    p.id.hash(&mut h);
    p.subject.hash(&mut h);
    p.client_id.hash(&mut h);
    p.scopes.len().hash(&mut h);
    for s in p.scopes.iter() {
        s.as_str().hash(&mut h);
    }
    p.issuer.hash(&mut h);
    p.tenant.hash(&mut h);
    p.groups.hash(&mut h);
    p.roles.hash(&mut h);
    req.route.hash(&mut h);
    target_key(req.target).hash(&mut h);
    h.finish()
}

impl EntityCache {
    pub(crate) fn get_or_build(
        &self,
        req: &Request<'_>,
        uids: &Uids,
    ) -> Result<Arc<cedar::Entities>, String> {
        let h = hash(req);
        if let Some(found) = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&h)
            .and_then(|bucket| bucket.iter().find(|(k, _)| k.matches(req)))
        {
            return Ok(found.1.clone());
        }
        let built = Arc::new(build(req, uids)?);
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.entry(h)
            .or_default()
            .push((Key::new(req), built.clone()));
        Ok(built)
    }
}

/// The principal with its credential's attributes, the route, and the
/// tool / resource / prompt in the route.
pub(crate) fn build(req: &Request<'_>, uids: &Uids) -> Result<cedar::Entities, String> {
    let p = &req.principal;
    let strings = |v: &mut dyn Iterator<Item = &str>| {
        Rx::new_set(v.map(|s| Rx::new_string(s.to_owned())).collect::<Vec<_>>())
    };
    let mut attrs = Vec::with_capacity(7);
    attrs.push(("subject".to_owned(), Rx::new_string(p.subject.to_owned())));
    if let Some(c) = p.client_id {
        attrs.push(("client_id".to_owned(), Rx::new_string(c.to_owned())));
    }
    attrs.push((
        "scopes".to_owned(),
        strings(&mut p.scopes.iter().map(|s| s.as_str())),
    ));
    if let Some(i) = p.issuer {
        attrs.push(("issuer".to_owned(), Rx::new_string(i.to_owned())));
    }
    attrs.push(("tenant".to_owned(), Rx::new_string(p.tenant.to_owned())));
    attrs.push((
        "groups".to_owned(),
        strings(&mut p.groups.iter().map(String::as_str)),
    ));
    attrs.push((
        "roles".to_owned(),
        strings(&mut p.roles.iter().map(String::as_str)),
    ));
    let principal = entity(uids.principal.clone(), attrs, [])?;

    let route = entity(
        uids.route.clone(),
        [("path".to_owned(), Rx::new_string(req.route.to_owned()))],
        [],
    )?;
    let target = match req.target {
        Target::Route => None,
        Target::Tool(name) | Target::Prompt(name) => Some(("name", name)),
        Target::Resource(uri) => Some(("uri", uri)),
    };
    let resource = match target {
        None => None,
        Some((attr, name)) => Some(entity(
            uids.resource.clone(),
            [(attr.to_owned(), Rx::new_string(name.to_owned()))],
            [uids.route.clone()],
        )?),
    };
    cedar::Entities::from_entities([principal, route].into_iter().chain(resource), None)
        .map_err(|e| e.to_string())
}

fn entity(
    uid: cedar::EntityUid,
    attrs: impl IntoIterator<Item = (String, Rx)>,
    parents: impl IntoIterator<Item = cedar::EntityUid>,
) -> Result<cedar::Entity, String> {
    cedar::Entity::new_with_tags(uid, attrs, parents, []).map_err(|e| e.to_string())
}
