//! The published Cedar schema for MCP and what is derived from it once.
//!
//! Policies are validated twice (see [`crate::Policies::parse`]), so the
//! schema is compiled twice: as published (`strict`), and with the
//! `Arguments` record opened (`open`). The action table (method name →
//! action uid and the resource type it applies to) is read from the schema
//! so the two cannot drift apart.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use cedar_policy as cedar;

use crate::error::PolicyError;

/// The Cedar schema for MCP, in Cedar's human-readable schema syntax
/// (`mcpgate policy schema` prints it). No namespace.
///
/// Principals `User`, `Client`, `ApiKey`; resources `Route`, and `Tool`,
/// `Resource`, `Prompt` each `in` their `Route`; one action per MCP method,
/// named after it; the context of every action is `McpContext`.
pub const SCHEMA: &str = include_str!("../mcp.cedarschema");

/// Which resource type an action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    Route,
    Tool,
    Resource,
    Prompt,
}

impl TargetKind {
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Self::Route => "Route",
            Self::Tool => "Tool",
            Self::Resource => "Resource",
            Self::Prompt => "Prompt",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Action {
    pub uid: cedar::EntityUid,
    pub target: TargetKind,
}

/// Entity type names, parsed once.
#[derive(Debug)]
pub(crate) struct Types {
    pub user: cedar::EntityTypeName,
    pub client: cedar::EntityTypeName,
    pub api_key: cedar::EntityTypeName,
    pub route: cedar::EntityTypeName,
    pub tool: cedar::EntityTypeName,
    pub resource: cedar::EntityTypeName,
    pub prompt: cedar::EntityTypeName,
}

#[derive(Debug)]
pub(crate) struct Compiled {
    /// Validates against the schema as published, in strict mode.
    pub strict: cedar::Validator,
    /// Validates against the same schema with `Arguments` open
    /// (`additionalAttributes`), in partial mode.
    pub open: cedar::Validator,
    pub types: Types,
    pub actions: HashMap<String, Action>,
}

/// The compiled schema. It is a constant, so a failure here is a bug in
/// this crate (the tests compile it); it is still returned as an error
/// rather than a panic, and every set refuses to load.
pub(crate) fn compiled() -> Result<Arc<Compiled>, PolicyError> {
    static COMPILED: OnceLock<Result<Arc<Compiled>, String>> = OnceLock::new();
    COMPILED
        .get_or_init(|| compile().map(Arc::new))
        .clone()
        .map_err(PolicyError::Schema)
}

/// Whether `method` is an action of the schema. A loaded policy set denies
/// methods that are not.
pub fn is_declared_method(method: &str) -> bool {
    compiled().is_ok_and(|c| c.actions.contains_key(method))
}

/// The method whose permission decides whether an item of a list result is
/// shown: `tools/list` → `tools/call`, `resources/list` → `resources/read`,
/// `prompts/list` → `prompts/get`. `None` for other methods (including
/// `resources/templates/list`: a template is not a resource the caller
/// reads, so templates are not filtered).
pub fn list_item_method(list_method: &str) -> Option<&'static str> {
    match list_method {
        "tools/list" => Some("tools/call"),
        "resources/list" => Some("resources/read"),
        "prompts/list" => Some("prompts/get"),
        _ => None,
    }
}

fn compile() -> Result<Compiled, String> {
    let (strict, _) = cedar::Schema::from_cedarschema_str(SCHEMA).map_err(|e| e.to_string())?;
    let open = open_arguments_schema()?;
    let name = |s: &str| cedar::EntityTypeName::from_str(s).map_err(|e| e.to_string());
    let types = Types {
        user: name("User")?,
        client: name("Client")?,
        api_key: name("ApiKey")?,
        route: name("Route")?,
        tool: name("Tool")?,
        resource: name("Resource")?,
        prompt: name("Prompt")?,
    };
    let mut actions = HashMap::new();
    for uid in strict.actions() {
        let mut kinds = strict
            .resources_for_action(uid)
            .into_iter()
            .flatten()
            .map(|t| match t.basename() {
                "Route" => Ok(TargetKind::Route),
                "Tool" => Ok(TargetKind::Tool),
                "Resource" => Ok(TargetKind::Resource),
                "Prompt" => Ok(TargetKind::Prompt),
                other => Err(format!("{uid} applies to unexpected type {other}")),
            });
        let target = match (kinds.next(), kinds.next()) {
            (Some(k), None) => k?,
            _ => return Err(format!("{uid} must apply to exactly one resource type")),
        };
        actions.insert(
            uid.id().unescaped().to_owned(),
            Action {
                uid: uid.clone(),
                target,
            },
        );
    }
    Ok(Compiled {
        strict: cedar::Validator::new(strict),
        open: cedar::Validator::new(open),
        types,
        actions,
    })
}

/// The schema with the `Arguments` common type made an open record. Cedar's
/// human-readable syntax cannot say this (only the JSON form has
/// `additionalAttributes`), so the published text is converted to JSON and
/// patched.
fn open_arguments_schema() -> Result<cedar::Schema, String> {
    let (fragment, _) =
        cedar::SchemaFragment::from_cedarschema_str(SCHEMA).map_err(|e| e.to_string())?;
    let mut json = fragment.to_json_value().map_err(|e| e.to_string())?;
    let arguments = json
        .get_mut("")
        .and_then(|ns| ns.get_mut("commonTypes"))
        .and_then(|t| t.get_mut("Arguments"))
        .and_then(|a| a.as_object_mut())
        .ok_or("the schema has no `Arguments` common type")?;
    arguments.insert("additionalAttributes".into(), serde_json::Value::Bool(true));
    cedar::Schema::from_json_value(json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_compiles_and_declares_every_method() {
        let c = compiled().map_err(|e| e.to_string());
        let Ok(c) = c else { panic!("{c:?}") };
        for (m, k) in [
            ("initialize", TargetKind::Route),
            ("ping", TargetKind::Route),
            ("tools/list", TargetKind::Route),
            ("tools/call", TargetKind::Tool),
            ("resources/list", TargetKind::Route),
            ("resources/read", TargetKind::Resource),
            ("resources/templates/list", TargetKind::Route),
            ("resources/subscribe", TargetKind::Resource),
            ("resources/unsubscribe", TargetKind::Resource),
            ("prompts/list", TargetKind::Route),
            ("prompts/get", TargetKind::Prompt),
            ("completion/complete", TargetKind::Route),
            ("logging/setLevel", TargetKind::Route),
            ("subscriptions/listen", TargetKind::Route),
            ("server/discover", TargetKind::Route),
        ] {
            assert_eq!(c.actions.get(m).map(|a| a.target), Some(k), "{m}");
        }
        assert!(!is_declared_method("tools/explode"));
    }
}
