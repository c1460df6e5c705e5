//! Evaluating a request against a loaded set: the checks that fail
//! closed, the scope index, the cached entities, then Cedar.

use cedar_policy as cedar;

use crate::arguments;
use crate::decision::Decision;
use crate::index::Subject;
use crate::load::Set;
use crate::memo;
use crate::request::{self, Request};

impl Set {
    /// Everything before evaluation: the checks, the scope index, the
    /// argument conversion, the Cedar request and entities. `Err` is the
    /// decision when evaluation is not needed (or not possible).
    pub(crate) fn prepare(
        &self,
        req: &Request<'_>,
    ) -> Result<(request::Built, Vec<u32>), Decision> {
        let Some(action) = self.schema.actions.get(req.action) else {
            return Err(Decision::deny(format!(
                "method `{}` is not declared in the policy schema",
                req.action
            )));
        };
        let kind = req.target.kind();
        if action.target != kind {
            return Err(Decision::deny(format!(
                "`{}` acts on a {}, not a {}",
                req.action,
                action.target.type_name(),
                kind.type_name()
            )));
        }
        let uids = request::uids(req, &self.schema.types);
        let candidates = self.index.candidates(
            req.action,
            &Subject {
                principal: &uids.principal,
                resource: &uids.resource,
                route: &uids.route,
            },
        );
        if candidates.is_empty() {
            // No policy's scope matches: Cedar's default deny.
            return Err(Decision {
                allowed: false,
                policy_ids: Vec::new(),
                errors: Vec::new(),
            });
        }
        let args = if self.index.reads_arguments(&candidates) {
            let c = arguments::convert(req.context.arguments);
            if let Some(why) = c.dropped {
                return Err(Decision::deny(format!(
                    "{why}, and a policy reads context.arguments"
                )));
            }
            Some(c.record)
        } else {
            // The empty record: `build` may reuse a context.
            None
        };
        let cannot = |e| Decision::deny(format!("cannot build the Cedar request: {e}"));
        let entities = self.entities.get_or_build(req, &uids).map_err(cannot)?;
        let built = request::build(req, action, args, uids, entities).map_err(cannot)?;
        Ok((built, candidates))
    }

    /// The decision on `req`: remembered within the second when no policy
    /// that applies reads the arguments (see [`crate::memo`]), else
    /// evaluated.
    pub(crate) fn authorize(&self, req: &Request<'_>) -> Decision {
        let time = req.context.time;
        let key = memo::key(req);
        if let Some(decided) = self.memo.get(time, &key) {
            return decided;
        }
        let (built, candidates) = match self.prepare(req) {
            Ok(b) => b,
            Err(decided) => return decided,
        };
        let decision = match self.index.policy_set(&candidates) {
            Ok(policies) => self.evaluate(&built, &policies),
            Err(e) => return Decision::deny(format!("cannot select the policies: {e}")),
        };
        // The key holds everything the candidates were chosen by, so the
        // same key always has the same candidates.
        if !self.index.reads_arguments(&candidates) {
            self.memo.put(time, key, &decision);
        }
        decision
    }

    pub(crate) fn evaluate(&self, built: &request::Built, policies: &cedar::PolicySet) -> Decision {
        let response = self
            .authorizer
            .is_authorized(&built.request, policies, &built.entities);
        let diagnostics = response.diagnostics();

        let mut errors = Vec::new();
        let mut failed_forbids = Vec::new();
        for e in diagnostics.errors() {
            errors.push(e.to_string());
            let cedar::AuthorizationError::PolicyEvaluationError(pe) = e;
            if self.forbids.contains(pe.policy_id()) {
                failed_forbids.push(pe.policy_id().to_string());
            }
        }
        let allowed = response.decision() == cedar::Decision::Allow && failed_forbids.is_empty();
        let mut policy_ids: Vec<String> = if allowed {
            diagnostics.reason().map(ToString::to_string).collect()
        } else {
            // A forbid that failed to evaluate may have been meant to match:
            // it denies, and is named beside the forbids that matched.
            diagnostics
                .reason()
                .filter(|id| self.forbids.contains(*id))
                .map(ToString::to_string)
                .chain(failed_forbids)
                .collect()
        };
        policy_ids.sort();
        policy_ids.dedup();
        Decision {
            allowed,
            policy_ids,
            errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::load::{Inner, Policies};
    use crate::request::{Context, Target};

    use super::*;

    /// The scope index gives Cedar only the policies whose scope matches;
    /// the decision must be the one of the whole set.
    #[test]
    fn scope_index_agrees_with_evaluating_every_policy() {
        use mcpgate_core::ScopeSet;

        use crate::request::{PrincipalKind, PrincipalRef};

        let text = r#"
            permit (principal == User::"u1", action, resource);
            permit (principal in User::"u2", action == Action::"tools/call", resource);
            permit (principal is Client, action in [Action::"tools/call", Action::"prompts/get"], resource);
            permit (principal is ApiKey in ApiKey::"k1", action, resource in Route::"/a");
            forbid (principal, action == Action::"tools/call", resource == Tool::"t1");
            forbid (principal, action, resource in Tool::"t2");
            permit (principal, action, resource is Prompt in Route::"/b");
            permit (principal, action, resource is Route);
            forbid (principal, action == Action::"resources/read", resource is Resource)
                when { resource.uri like "secret:*" };
            permit (principal, action, resource in Route::"/b")
                when { context.arguments has x && context.arguments.x == 1 };
            forbid (principal == User::"u3", action, resource);
        "#;
        let p = Policies::parse(text, "i.cedar").map_err(|e| e.to_string());
        let Ok(p) = p else { panic!("{p:?}") };
        let Inner::Set(set) = &*p.0 else { panic!() };
        let scopes = ScopeSet::new();
        let args = serde_json::json!({ "x": 1 });
        let mut checked = 0;
        for kind in [
            PrincipalKind::User,
            PrincipalKind::Client,
            PrincipalKind::ApiKey,
        ] {
            for id in ["u1", "u2", "u3", "k1", "c"] {
                for route in ["/a", "/b"] {
                    for (action, target) in [
                        ("tools/call", Target::Tool("t1")),
                        ("tools/call", Target::Tool("t2")),
                        ("tools/call", Target::Tool("t3")),
                        ("tools/list", Target::Route),
                        ("prompts/get", Target::Prompt("t1")),
                        ("resources/read", Target::Resource("secret:1")),
                        ("resources/read", Target::Resource("file:1")),
                    ] {
                        for arguments in [None, Some(&args)] {
                            let req = Request {
                                principal: PrincipalRef {
                                    kind,
                                    id,
                                    subject: id,
                                    client_id: None,
                                    scopes: &scopes,
                                    issuer: None,
                                    tenant: "t",
                                    groups: &[],
                                    roles: &[],
                                },
                                action,
                                target,
                                route,
                                context: Context {
                                    arguments,
                                    ..Context::at(0)
                                },
                            };
                            let indexed = set.authorize(&req);
                            let action = set.schema.actions.get(action).map(|a| a.uid.clone());
                            let Some(action) = action else { panic!() };
                            let built = request::build(
                                &req,
                                &crate::schema::Action {
                                    uid: action,
                                    target: req.target.kind(),
                                },
                                Some(arguments::convert(arguments).record),
                                request::uids(&req, &set.schema.types),
                                Arc::new(
                                    crate::entities::build(
                                        &req,
                                        &request::uids(&req, &set.schema.types),
                                    )
                                    .map_err(|e| e.to_string())
                                    .unwrap_or_else(|e| panic!("{e}")),
                                ),
                            );
                            let Ok(built) = built else { panic!() };
                            let whole = set.evaluate(&built, &set.policies);
                            assert_eq!(indexed, whole, "{req:?}");
                            checked += usize::from(indexed.allowed);
                        }
                    }
                }
            }
        }
        assert!(checked > 20, "the grid allows some requests: {checked}");
    }
}
