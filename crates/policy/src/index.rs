//! Which policies can apply to a request, from their scopes alone.
//!
//! Cedar 4 evaluates every policy of a set for every request, and
//! rebuilds each policy's condition (scope included) to do so: with 100
//! policies that is most of the cost. But the entities of a request are
//! built only by this crate, in a fixed shape: principals have no parents,
//! actions have no groups, a tool / resource / prompt has exactly one
//! parent (its route), a route none. So a policy's scope
//! (`principal == …`, `action in […]`, `resource in Route::"…"`, `is`) can
//! be decided here exactly, with a few comparisons, and Cedar is given only
//! the policies whose scope matches (it re-checks the scope, so an error
//! here could only drop a policy, never add one; the tests check both
//! agree). The sets of candidates recur (they depend on the action, the
//! target and the principal only through policies that name them), so the
//! Cedar policy set for each is built once and cached.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use cedar_policy as cedar;

/// Cached candidate sets, at most; the cache is emptied when full.
const CACHE_MAX: usize = 512;

#[derive(Debug)]
pub(crate) struct Index {
    policies: Vec<cedar::Policy>,
    scopes: Vec<Scope>,
    /// Per policy: it reads `context.arguments`.
    reads_arguments: Vec<bool>,
    /// Declared action name → the policies whose action scope includes it.
    by_action: HashMap<String, Vec<u32>>,
    cache: RwLock<HashMap<Vec<u32>, Arc<cedar::PolicySet>>>,
}

#[derive(Debug)]
struct Scope {
    principal: Constraint,
    resource: Constraint,
}

#[derive(Debug)]
enum Constraint {
    Any,
    Eq(cedar::EntityUid),
    In(cedar::EntityUid),
    Is(cedar::EntityTypeName),
    IsIn(cedar::EntityTypeName, cedar::EntityUid),
}

/// The entities of one request, as the scopes see them.
pub(crate) struct Subject<'a> {
    pub principal: &'a cedar::EntityUid,
    pub resource: &'a cedar::EntityUid,
    /// The resource's route: its only parent, unless it is the route.
    pub route: &'a cedar::EntityUid,
}

impl Constraint {
    /// `principal`/`resource` satisfies this scope constraint, given that
    /// its only possible ancestor is `parent`.
    fn matches(&self, e: &cedar::EntityUid, parent: Option<&cedar::EntityUid>) -> bool {
        let within = |u: &cedar::EntityUid| u == e || parent == Some(u);
        match self {
            Self::Any => true,
            Self::Eq(u) => u == e,
            Self::In(u) => within(u),
            Self::Is(t) => t == e.type_name(),
            Self::IsIn(t, u) => t == e.type_name() && within(u),
        }
    }
}

impl Index {
    pub(crate) fn new<'a>(
        set: &cedar::PolicySet,
        actions: impl Iterator<Item = (&'a str, &'a cedar::EntityUid)>,
        argument_readers: &HashSet<cedar::PolicyId>,
    ) -> Self {
        let policies: Vec<cedar::Policy> = set.policies().cloned().collect();
        let reads_arguments = policies
            .iter()
            .map(|p| argument_readers.contains(p.id()))
            .collect();
        let scopes = policies
            .iter()
            .map(|p| Scope {
                principal: match p.principal_constraint() {
                    cedar::PrincipalConstraint::Any => Constraint::Any,
                    cedar::PrincipalConstraint::Eq(u) => Constraint::Eq(u),
                    cedar::PrincipalConstraint::In(u) => Constraint::In(u),
                    cedar::PrincipalConstraint::Is(t) => Constraint::Is(t),
                    cedar::PrincipalConstraint::IsIn(t, u) => Constraint::IsIn(t, u),
                },
                resource: match p.resource_constraint() {
                    cedar::ResourceConstraint::Any => Constraint::Any,
                    cedar::ResourceConstraint::Eq(u) => Constraint::Eq(u),
                    cedar::ResourceConstraint::In(u) => Constraint::In(u),
                    cedar::ResourceConstraint::Is(t) => Constraint::Is(t),
                    cedar::ResourceConstraint::IsIn(t, u) => Constraint::IsIn(t, u),
                },
            })
            .collect();
        let by_action = actions
            .map(|(name, uid)| {
                let applies = policies
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| match p.action_constraint() {
                        cedar::ActionConstraint::Any => true,
                        cedar::ActionConstraint::Eq(a) => &a == uid,
                        cedar::ActionConstraint::In(list) => list.contains(uid),
                    })
                    .filter_map(|(i, _)| u32::try_from(i).ok())
                    .collect();
                (name.to_owned(), applies)
            })
            .collect();
        Self {
            policies,
            scopes,
            reads_arguments,
            by_action,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The policies whose scope matches, in set order.
    pub(crate) fn candidates(&self, action: &str, s: &Subject<'_>) -> Vec<u32> {
        let route_parent = (s.resource != s.route).then_some(s.route);
        self.by_action
            .get(action)
            .map(|ids| {
                ids.iter()
                    .copied()
                    .filter(|&i| {
                        self.scopes.get(i as usize).is_some_and(|sc| {
                            sc.principal.matches(s.principal, None)
                                && sc.resource.matches(s.resource, route_parent)
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether any of these candidates reads `context.arguments`.
    pub(crate) fn reads_arguments(&self, candidates: &[u32]) -> bool {
        candidates.iter().any(|&i| {
            self.reads_arguments
                .get(i as usize)
                .copied()
                .unwrap_or(true)
        })
    }

    /// The Cedar policy set of these candidates.
    pub(crate) fn policy_set(&self, candidates: &[u32]) -> Result<Arc<cedar::PolicySet>, String> {
        if let Some(set) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(candidates)
        {
            return Ok(set.clone());
        }
        let mut set = cedar::PolicySet::new();
        for &i in candidates {
            if let Some(p) = self.policies.get(i as usize) {
                set.add(p.clone()).map_err(|e| e.to_string())?;
            }
        }
        let set = Arc::new(set);
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(candidates.to_vec(), set.clone());
        Ok(set)
    }
}
