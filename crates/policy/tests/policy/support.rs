//! Requests and policy sets for the tests.

use std::sync::LazyLock;

use mcpgate_core::ScopeSet;
use mcpgate_policy::{Context, Policies, PrincipalKind, PrincipalRef, Request, Target};

/// 2024-01-01T13:30:00Z, a Monday.
pub const MONDAY_1330: i64 = 1_704_115_800;
/// 2024-01-06T13:30:00Z, a Saturday.
pub const SATURDAY_1330: i64 = MONDAY_1330 + 5 * 86_400;

pub static SCOPES: LazyLock<ScopeSet> =
    LazyLock::new(|| ScopeSet::parse("mcp:tools mcp:read").unwrap());
pub static NO_STRINGS: Vec<String> = Vec::new();
pub static ENGINEERS: LazyLock<Vec<String>> = LazyLock::new(|| vec!["engineering".into()]);

pub fn user(id: &str) -> PrincipalRef<'_> {
    PrincipalRef {
        kind: PrincipalKind::User,
        id,
        subject: id,
        client_id: Some("cli"),
        scopes: &SCOPES,
        issuer: Some("https://issuer.example"),
        tenant: "default",
        groups: &NO_STRINGS,
        roles: &NO_STRINGS,
    }
}

pub fn call<'a>(principal: PrincipalRef<'a>, tool: &'a str) -> Request<'a> {
    Request {
        principal,
        action: "tools/call",
        target: Target::Tool(tool),
        route: "/mcp",
        context: Context::at(MONDAY_1330),
    }
}

pub fn parse(text: &str) -> Policies {
    match Policies::parse(text, "test.cedar") {
        Ok(p) => p,
        Err(e) => panic!("policies refused:\n{e}"),
    }
}

pub fn refuse(text: &str) -> String {
    match Policies::parse(text, "bad.cedar") {
        Ok(_) => panic!("policies accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}
