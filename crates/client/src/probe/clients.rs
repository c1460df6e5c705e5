//! Which common clients can connect, derived from the checks. Each rule
//! names its source in a comment: the MCP specification, the team's
//! interop notes (`interop-quirks.md`, gathered from clients' and servers'
//! issue trackers; the issues are cited), or the task brief. Where no
//! source says what a client does in a situation, the table says "maybe".

use super::Findings;
use super::report::{ClientCompat, Compat, Report, Verdict};

/// Checks whose violation makes a client that follows the specification
/// stop: it "MUST NOT use" the metadata (RFC 9728 §3.3, RFC 8414 §3.3),
/// "MUST refuse to proceed" (PKCE), or has nothing to go on.
const BLOCKING: [&str; 9] = [
    "mcp.reachable",
    "mcp.unauthenticated_401",
    "prm.discoverable",
    "prm.resource_matches",
    "prm.authorization_servers",
    "as.metadata_discoverable",
    "as.issuer_matches",
    "as.required_fields",
    "as.pkce_s256",
];

pub fn derive(report: &Report, f: &Findings) -> Vec<ClientCompat> {
    let row = |client, verdict, reason: String| ClientCompat {
        client,
        verdict,
        reason,
    };
    const NAMES: [&str; 7] = [
        "MCP SDK clients (TypeScript, Python)",
        "Claude (claude.ai, Desktop, Code)",
        "ChatGPT, Perplexity",
        "VS Code",
        "Cursor",
        "clients of 2025-06-18",
        "clients of 2025-03-26",
    ];
    if f.unprotected {
        return NAMES
            .iter()
            .map(|n| row(n, Compat::Yes, "no authorization needed".into()))
            .collect();
    }
    let violated: Vec<&str> = BLOCKING
        .iter()
        .copied()
        .filter(|id| {
            report
                .check(id)
                .is_some_and(|c| c.verdict == Verdict::Violated)
        })
        .collect();
    let not_reached = BLOCKING.iter().any(|id| {
        report
            .check(id)
            .is_none_or(|c| c.verdict == Verdict::Skipped)
    });
    let blocked = if !violated.is_empty() {
        Some(format!("stops at {}", violated.join(", ")))
    } else if not_reached {
        Some("discovery did not complete".to_owned())
    } else {
        None
    };

    let cimd = f.cimd();
    let dcr = f.as_str("registration_endpoint").is_some();
    // `Some(false)`: the native loopback registration was refused.
    let native = f.dcr_native.as_ref().map(Result::is_ok);
    let methods = f.token_auth_methods();
    let confidential = methods
        .iter()
        .any(|m| m == "client_secret_post" || m == "client_secret_basic");
    let header_rm = f
        .challenge
        .as_ref()
        .is_some_and(|c| c.param("resource_metadata").is_some());

    let mut out = Vec::new();
    let mut push = |name: &'static str, v: Compat, reason: String| out.push(row(name, v, reason));

    // Without a 401, no client starts authorization at all.
    let endpoint_blocked = ["mcp.reachable", "mcp.unauthenticated_401"]
        .iter()
        .any(|id| report.check(id).is_none_or(|c| c.verdict != Verdict::Ok));
    if let Some(b) = &blocked {
        let n = if endpoint_blocked { NAMES.len() } else { 6 };
        for name in &NAMES[..n] {
            push(name, Compat::No, b.clone());
        }
        if endpoint_blocked {
            return out;
        }
    } else {
        // MCP client-registration priority: pre-registered, CIMD, DCR.
        push(
            NAMES[0],
            if cimd || dcr {
                Compat::Yes
            } else {
                Compat::Maybe
            },
            match (cimd, dcr) {
                (true, _) => "with a Client ID Metadata Document".into(),
                (false, true) => "with dynamic registration".into(),
                (false, false) => "only with a client id configured by hand".into(),
            },
        );
        // interop-quirks: Claude registers through DCR on every fresh
        // connection when the AS offers no CIMD (its maintainers advise
        // CIMD); Claude Code is a native client with a loopback redirect.
        push(
            NAMES[1],
            match (cimd, dcr, native) {
                (true, _, _) => Compat::Yes,
                (false, true, Some(false)) => Compat::Maybe,
                (false, true, _) => Compat::Yes,
                (false, false, _) => Compat::No,
            },
            match (cimd, dcr, native) {
                (true, _, _) => "with a Client ID Metadata Document".into(),
                (false, true, Some(false)) => "the loopback registration Claude Code needs was refused; claude.ai's web redirect may pass".into(),
                (false, true, _) => "with dynamic registration, a new client on every fresh connection (no CIMD)".into(),
                (false, false, _) => "neither CIMD nor dynamic registration".into(),
            },
        );
        // interop-quirks: ChatGPT and Perplexity register confidential
        // clients (client_secret_post / client_secret_basic) through DCR;
        // an AS that allows only `none` rejects them (ToolHive #5321).
        push(
            NAMES[2],
            match (dcr, confidential, cimd) {
                (true, true, _) => Compat::Yes,
                (true, false, _) => Compat::No,
                (false, _, true) => Compat::Maybe,
                (false, _, false) => Compat::No,
            },
            match (dcr, confidential, cimd) {
                (true, true, _) => "with dynamic registration of a confidential client".into(),
                (true, false, _) => format!(
                    "they register confidential clients, but token_endpoint_auth_methods_supported is [{}]",
                    methods.join(", ")
                ),
                (false, _, true) => {
                    "no dynamic registration; whether they use CIMD is not covered by our notes"
                        .into()
                }
                (false, _, false) => "no dynamic registration".into(),
            },
        );
        // Task brief: VS Code works with CIMD or with DCR and a loopback
        // redirect. interop-quirks: its metadata document lists the
        // device_code grant, which the AS must ignore (ToolHive #6290; not
        // probed).
        push(
            NAMES[3],
            match (cimd, dcr, native) {
                (true, _, _) => Compat::Yes,
                (false, true, Some(false)) | (false, false, _) => Compat::No,
                (false, true, _) => Compat::Yes,
            },
            match (cimd, dcr, native) {
                (true, _, _) => "with a Client ID Metadata Document (its document lists device_code, which the server must ignore: not probed)".into(),
                (false, true, Some(false)) => "its loopback registration was refused".into(),
                (false, true, Some(true)) => "with dynamic registration and a loopback redirect".into(),
                (false, true, None) => "with dynamic registration (loopback redirect not tested: --register-test-client)".into(),
                (false, false, _) => "neither CIMD nor dynamic registration".into(),
            },
        );
        // Task brief: Cursor needs dynamic registration (not in
        // interop-quirks; unverified here).
        push(
            NAMES[4],
            if dcr { Compat::Yes } else { Compat::No },
            if dcr {
                "with dynamic registration".into()
            } else {
                "it needs dynamic registration".into()
            },
        );
        // MCP 2025-06-18: servers MUST name resource_metadata in the 401;
        // that revision has no CIMD (DCR SHOULD).
        push(
            NAMES[5],
            match (header_rm, dcr) {
                (true, true) => Compat::Yes,
                _ => Compat::Maybe,
            },
            match (header_rm, dcr) {
                (true, true) => "resource_metadata in the challenge, dynamic registration".into(),
                (false, _) => {
                    "no resource_metadata in the challenge, which that revision requires".into()
                }
                (true, false) => {
                    "no dynamic registration: only with a client id configured by hand".into()
                }
            },
        );
    }
    // MCP 2025-03-26 "Authorization Base URL": no PRM; RFC 8414 metadata
    // at the MCP server's origin, else /authorize, /token, /register there.
    push(
        NAMES[6],
        match f.origin_as_metadata {
            Some(true) if dcr => Compat::Yes,
            Some(true) => Compat::Maybe,
            _ => Compat::No,
        },
        match f.origin_as_metadata {
            Some(true) if dcr => "metadata at the origin, dynamic registration".into(),
            Some(true) => "metadata at the origin, but no dynamic registration".into(),
            _ => "they look for authorization server metadata at the MCP server's origin".into(),
        },
    );
    out
}
