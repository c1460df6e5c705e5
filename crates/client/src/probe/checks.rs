//! The catalog: every check id the probe reports, with its level, the
//! clause it comes from and what it requires. Ids are stable (scripts
//! match on them); a check that did not run is reported as `skipped`, so
//! every id is always in the report.
//!
//! Sources: the MCP authorization specification, revisions 2025-11-25
//! (`basic/authorization`) and 2026-07-28 (`basic/authorization/*`; the
//! draft is the same), and the RFCs they build on.

use super::report::Level;
use Level::{Info, Must, Should};

/// One entry of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub id: &'static str,
    pub level: Level,
    pub spec: &'static str,
    /// The requirement, in a few words.
    pub requires: &'static str,
}

const fn c(id: &'static str, level: Level, spec: &'static str, requires: &'static str) -> Spec {
    Spec {
        id,
        level,
        spec,
        requires,
    }
}

/// In report order.
#[rustfmt::skip]
pub const CATALOG: &[Spec] = &[
    c("target.url", Must, "RFC 8707 §2; MCP Canonical Server URI",
        "the server URL is an absolute http(s) URI without a fragment"),
    c("target.https", Must, "OAuth 2.1 §1.5 (MCP Communication Security)",
        "the MCP endpoint is served over https"),
    c("mcp.reachable", Must, "MCP Streamable HTTP transport",
        "the MCP endpoint answers a POST"),
    c("mcp.streamable_http", Should, "MCP Transports §Streamable HTTP, §Backwards Compatibility",
        "the endpoint speaks Streamable HTTP, not only the 2024-11-05 HTTP+SSE transport"),
    c("mcp.unauthenticated_401", Must, "MCP Authorization §Error Handling; RFC 6750 §3",
        "an initialize without credentials gets 401"),
    c("mcp.challenge_bearer", Must, "RFC 9110 §15.5.2; RFC 6750 §3",
        "the 401 carries a WWW-Authenticate: Bearer challenge"),
    c("mcp.challenge_resource_metadata", Should, "RFC 9728 §5.1; MCP Protected Resource Metadata Discovery",
        "the challenge names the PRM URL in resource_metadata"),
    c("mcp.challenge_scope", Should, "RFC 6750 §3; MCP Scope Selection Strategy",
        "the challenge names the scopes needed in scope"),
    c("mcp.modern_401", Must, "MCP 2026-07-28 Security Considerations §Access Token Privilege Restriction",
        "a 2026-07-28 request without credentials is refused too"),
    c("prm.discoverable", Must, "MCP Protected Resource Metadata Discovery Requirements; RFC 9728 §3",
        "Protected Resource Metadata is found where clients look"),
    c("prm.json", Must, "RFC 9728 §3.2",
        "the PRM answer is 200 with an application/json object"),
    c("prm.resource_matches", Must, "RFC 9728 §3.3",
        "the PRM resource is identical to the server URL"),
    c("prm.authorization_servers", Must, "MCP Authorization Server Location; RFC 9728 §2",
        "the PRM lists at least one authorization server"),
    c("prm.no_offline_access", Should, "MCP 2026-07-28 §Refresh Tokens",
        "offline_access is not in scopes_supported or the challenge"),
    c("prm.scopes_supported", Info, "RFC 9728 §2; MCP Scope Selection Strategy",
        "the scopes clients request without a challenge scope"),
    c("as.issuer_url", Must, "RFC 8414 §2",
        "the authorization server identifier is an https URL without query or fragment"),
    c("as.metadata_discoverable", Must, "MCP Authorization Server Metadata Discovery; RFC 8414 §3.1",
        "authorization server metadata is at one of the well-known URLs"),
    c("as.metadata_json", Must, "RFC 8414 §3.2",
        "the metadata answer is 200 with an application/json object"),
    c("as.issuer_matches", Must, "RFC 8414 §3.3; MCP 2026-07-28 Authorization Server Metadata Discovery",
        "the metadata issuer is identical to the identifier in the PRM"),
    c("as.required_fields", Must, "RFC 8414 §2",
        "authorization_endpoint, token_endpoint, response_types_supported with code"),
    c("as.pkce_s256", Must, "MCP Authorization Code Protection; OAuth 2.1 §4.1.1",
        "code_challenge_methods_supported contains S256"),
    c("as.https", Must, "MCP Communication Security; OAuth 2.1 §1.5",
        "every authorization server endpoint is https"),
    c("as.iss_parameter", Should, "RFC 9207 §2.3; MCP 2026-07-28 Authorization Response Validation",
        "authorization_response_iss_parameter_supported is true"),
    c("as.cimd", Should, "MCP Client ID Metadata Documents (2025-11-25)",
        "client_id_metadata_document_supported is true"),
    c("as.registration_endpoint", Info, "RFC 7591; MCP Dynamic Client Registration (MAY; deprecated in 2026-07-28)",
        "a registration endpoint, for clients that need DCR"),
    c("as.token_endpoint_auth_methods", Should, "RFC 8414 §2; OAuth 2.1 §2.1",
        "token_endpoint_auth_methods_supported includes none (public native clients)"),
    c("as.other_servers", Info, "RFC 9728 §7.6",
        "further authorization servers in the PRM"),
    c("compat.as_metadata_at_origin", Info, "MCP 2025-03-26 §Authorization Base URL",
        "authorization server metadata at the MCP server's origin"),
    c("hazard.resource_trailing_slash", Should, "MCP Canonical Server URI",
        "no trailing slash in the resource unless it is significant"),
    c("hazard.resource_case", Should, "MCP Canonical Server URI; RFC 3986 §6.2.2.1",
        "the resource is in canonical (lower) case and matches the URL's case"),
    c("hazard.resource_parameter", Info, "RFC 8707 §2; interop: Entra ID AADSTS9010010",
        "the authorization endpoint does not reject the resource parameter"),
    c("hazard.unknown_client", Info, "RFC 6749 §5.2; interop: clients re-register on 401 invalid_client",
        "an unknown client_id gets 401 invalid_client at the token endpoint"),
    c("hazard.dcr_native_redirect", Should, "RFC 8252 §7.3; MCP Dynamic Client Registration §Application Type",
        "registration accepts a native client with a loopback redirect URI"),
    c("token.invalid_refused", Must, "MCP Authorization §Token Handling; OAuth 2.1 §5.3",
        "a made-up bearer token gets 401"),
    c("token.unsigned_jwt_refused", Must, "MCP Authorization §Token Handling; RFC 8725 §3.1",
        "an unsigned JWT (alg none) naming this resource gets 401"),
    c("token.login", Info, "MCP Authorization Flow Steps",
        "the authorization code flow, run by the probe"),
    c("token.accepted", Info, "MCP Authorization §Token Handling",
        "the given token opens the MCP endpoint"),
    c("token.audience", Info, "RFC 8707 §2; RFC 9068 §3",
        "the given token's aud names this resource"),
    c("token.other_resource_refused", Must, "MCP Authorization §Token Handling; RFC 8707 §2",
        "a token for this resource is refused by another resource"),
    c("token.insufficient_scope", Should, "MCP Scope Challenge Handling; RFC 6750 §3.1",
        "a 403 for missing scopes carries error=\"insufficient_scope\""),
];

/// The catalog entry of an id. Every id the probe reports is in the
/// catalog (`every_id_in_the_sources_is_in_the_catalog` checks); an
/// unknown id would get Info.
pub fn spec(id: &'static str) -> Spec {
    CATALOG
        .iter()
        .find(|s| s.id == id)
        .copied()
        .unwrap_or(c(id, Level::Info, "", ""))
}

/// The heading a check is shown under.
pub fn section(id: &str) -> &'static str {
    match id.split('.').next().unwrap_or("") {
        "target" => "Server URL",
        "mcp" => "MCP endpoint without credentials",
        "prm" => "Protected Resource Metadata",
        "as" => "Authorization server",
        "compat" => "Older clients",
        "hazard" => "Interoperability hazards",
        "token" => "Tokens",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        for (i, s) in CATALOG.iter().enumerate() {
            assert!(
                CATALOG[..i].iter().all(|o| o.id != s.id),
                "duplicate {}",
                s.id
            );
            assert!(s.id.contains('.') && !s.spec.is_empty() && !s.requires.is_empty());
            assert_ne!(section(s.id), "Other", "{}", s.id);
        }
    }

    #[test]
    fn every_id_in_the_sources_is_in_the_catalog() {
        let sources = [
            include_str!("clients.rs"),
            include_str!("endpoint.rs"),
            include_str!("hazards.rs"),
            include_str!("metadata.rs"),
            include_str!("mod.rs"),
            include_str!("resource_metadata.rs"),
            include_str!("token.rs"),
        ];
        let prefixes = [
            "target.", "mcp.", "prm.", "as.", "compat.", "hazard.", "token.",
        ];
        let mut seen = 0;
        for src in sources {
            // Every quoted string that looks like a check id (code between
            // literals has spaces or punctuation, so parity does not matter).
            for lit in src.split('"') {
                let looks_like_id = prefixes.iter().any(|p| lit.starts_with(p))
                    && lit.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_'
                    });
                if looks_like_id {
                    seen += 1;
                    assert!(
                        CATALOG.iter().any(|s| s.id == lit),
                        "{lit} is not in the catalog"
                    );
                }
            }
        }
        assert!(seen > CATALOG.len());
    }
}
