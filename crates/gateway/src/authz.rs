//! Scope-based authorisation (MCP authorization "Scope Challenge Handling").
//!
//! Every request to a route needs the route's `scopes`; `tools/call` also
//! needs the called tool's `tool_scopes`. Held scopes are first expanded
//! through the configured hierarchy ("servers MUST account for scope
//! hierarchies"), so `admin` can imply `files:read`. A refusal names every
//! scope the operation needs, in one challenge.

use std::collections::BTreeMap;

use mcpgate_core::config::Route;
use mcpgate_core::jsonrpc::Message;
use mcpgate_core::{Scope, ScopeSet};

/// The scope hierarchy.
#[derive(Debug, Clone, Default)]
pub struct ScopeHierarchy {
    implies: BTreeMap<Scope, Vec<Scope>>,
}

impl ScopeHierarchy {
    pub fn new(implies: BTreeMap<Scope, Vec<Scope>>) -> Self {
        Self { implies }
    }

    /// The held scopes plus everything they imply, transitively.
    pub fn effective<'a>(&self, held: &'a ScopeSet) -> std::borrow::Cow<'a, ScopeSet> {
        if self.implies.is_empty() {
            return std::borrow::Cow::Borrowed(held);
        }
        let mut out = held.clone();
        let mut stack: Vec<Scope> = held.iter().cloned().collect();
        while let Some(s) = stack.pop() {
            for implied in self.implies.get(&s).into_iter().flatten() {
                if !out.contains(implied) {
                    out.insert(implied.clone());
                    stack.push(implied.clone());
                }
            }
        }
        std::borrow::Cow::Owned(out)
    }
}

/// The scopes one message needs on a route.
pub fn required(route: &Route, msg: &Message) -> ScopeSet {
    let mut need = route.scopes.clone();
    if let Some(extra) = tool_scopes(route, msg) {
        need.extend(extra.iter());
    }
    need
}

/// The extra scopes of the tool `msg` calls, if it calls one that has them.
fn tool_scopes<'r>(route: &'r Route, msg: &Message) -> Option<&'r ScopeSet> {
    if msg.method() != Some("tools/call") {
        return None;
    }
    msg.param_str("name").and_then(|n| route.tool_scopes.get(n))
}

/// Checks `effective` against what `msg` needs; `Err` carries every scope
/// the operation needs (held or not), as the challenge should name them all.
/// A request that passes builds no set (this runs on every request).
pub fn check(route: &Route, msg: &Message, effective: &ScopeSet) -> Result<(), ScopeSet> {
    let holds = |need: &ScopeSet| effective.missing(need).is_empty();
    if holds(&route.scopes) && tool_scopes(route, msg).is_none_or(holds) {
        Ok(())
    } else {
        Err(required(route, msg))
    }
}

/// Whether a caller with `effective` scopes may call tool `name`.
pub fn tool_allowed(route: &Route, name: &str, effective: &ScopeSet) -> bool {
    route
        .tool_scopes
        .get(name)
        .is_none_or(|need| effective.missing(need).is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_core::config::Config;
    use mcpgate_core::jsonrpc::{Body, parse};

    fn route() -> Route {
        let c = Config::parse(
            r#"
listen = "127.0.0.1:1"
public_url = "https://gw.example"
[[routes]]
path = "/mcp"
upstream_url = "http://127.0.0.1:2/mcp"
scopes = ["mcp"]
[routes.tool_scopes]
write_note = ["notes:write"]
"#,
            ".".into(),
        )
        .unwrap();
        c.routes[0].clone()
    }

    fn call(tool: &str) -> Message {
        let s = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
        );
        match parse(s.as_bytes(), 64).unwrap() {
            Body::Single(m) => m,
            Body::Batch(_) => unreachable!(),
        }
    }

    fn s(x: &str) -> ScopeSet {
        ScopeSet::parse(x).unwrap()
    }

    #[test]
    fn route_scope_is_needed_for_any_call() {
        assert_eq!(check(&route(), &call("echo"), &s("")), Err(s("mcp")));
        assert_eq!(check(&route(), &call("echo"), &s("mcp")), Ok(()));
    }

    #[test]
    fn mcp_step_up_challenge_names_all_needed_scopes() {
        assert_eq!(
            check(&route(), &call("write_note"), &s("mcp")),
            Err(s("mcp notes:write"))
        );
        assert_eq!(
            check(&route(), &call("write_note"), &s("mcp notes:write")),
            Ok(())
        );
    }

    #[test]
    fn mcp_scope_hierarchy_broader_implies_narrower() {
        let mut implies = BTreeMap::new();
        implies.insert(
            Scope::new("admin").unwrap(),
            vec![Scope::new("notes").unwrap()],
        );
        implies.insert(
            Scope::new("notes").unwrap(),
            vec![
                Scope::new("notes:write").unwrap(),
                Scope::new("mcp").unwrap(),
            ],
        );
        let h = ScopeHierarchy::new(implies);
        let admin = s("admin");
        let eff = h.effective(&admin);
        assert_eq!(eff.to_space_delimited(), "admin mcp notes notes:write");
        assert_eq!(check(&route(), &call("write_note"), &eff), Ok(()));
        assert!(
            !h.effective(&s("mcp"))
                .contains(&Scope::new("notes:write").unwrap())
        );
    }

    #[test]
    fn tool_visibility_follows_tool_scopes() {
        assert!(tool_allowed(&route(), "echo", &s("mcp")));
        assert!(!tool_allowed(&route(), "write_note", &s("mcp")));
        assert!(tool_allowed(&route(), "write_note", &s("notes:write")));
    }
}
