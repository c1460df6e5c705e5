//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for each route.

use serde_json::{Value, json};

use crate::route::RouteRuntime;

/// The well-known prefix (RFC 9728 §3).
pub const PRM_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// The PRM URL of a route: path-inserted (RFC 9728 §3.1).
pub fn prm_url(public_url: &str, route_path: &str) -> String {
    if route_path == "/" {
        format!("{public_url}{PRM_PREFIX}")
    } else {
        format!("{public_url}{PRM_PREFIX}{route_path}")
    }
}

/// The PRM document of a route.
pub fn document(route: &RouteRuntime, authorization_servers: &[String]) -> Value {
    json!({
        "resource": route.resource.as_str(),
        "authorization_servers": authorization_servers,
        "scopes_supported": route.config.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "bearer_methods_supported": ["header"],
        "resource_name": format!("MCP server at {}", route.config.path),
    })
}
