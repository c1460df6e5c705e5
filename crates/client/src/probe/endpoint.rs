//! Step 1: the server URL, and the MCP endpoint without credentials.
//!
//! An `initialize` of 2025-11-25 (no `MCP-Protocol-Version` header: the
//! initialize request carries none) and a `server/discover` of 2026-07-28
//! (with `MCP-Protocol-Version` and `Mcp-Method`) must both get 401 with a
//! `Bearer` challenge (RFC 6750 §3), which SHOULD name `resource_metadata`
//! (RFC 9728 §5.1) and `scope`.

use mcpgate_core::mcp::{HEADER_METHOD, HEADER_PROTOCOL_VERSION, MODERN_VERSION};
use serde_json::{Value, json};
use url::Url;

use super::Probe;
use super::report::{Check, Report, Verdict};
use crate::challenge;
use crate::discovery::{Transport, transport};
use Verdict::{Missed, Skipped, Violated, Warning};

/// The protocol version of the legacy `initialize`.
pub const LEGACY_VERSION: &str = "2025-11-25";

pub fn initialize_body() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": LEGACY_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcpgate-probe", "version": env!("CARGO_PKG_VERSION")},
        },
    })
}

fn discover_body() -> Value {
    json!({
        "jsonrpc": "2.0", "id": "probe-discover", "method": "server/discover",
        "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "mcpgate-probe", "version": env!("CARGO_PKG_VERSION")},
            "io.modelcontextprotocol/clientCapabilities": {},
        }},
    })
}

/// Checks the server URL itself; `None` when it cannot be probed.
pub fn target(raw: &str, report: &mut Report) -> Option<Url> {
    let bad = |m: &str| Check::new("target.url", Violated, m).evidence(raw);
    let url = match Url::parse(raw) {
        Ok(u) => u,
        Err(e) => {
            report
                .checks
                .push(bad(&format!("not an absolute URL ({e})")));
            return None;
        }
    };
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        report
            .checks
            .push(bad("not an http(s) URL with a host: MCP clients need one"));
        return None;
    }
    if raw.contains('#') {
        report.checks.push(bad(
            "has a fragment: a resource identifier must not (clients put this URL in `resource`)",
        ));
        return None;
    }
    report.checks.push(Check::new(
        "target.url",
        Verdict::Ok,
        "an absolute URL without fragment: clients use it as the resource",
    ));
    report.checks.push(match transport(&url) {
        Transport::Https => Check::new("target.https", Verdict::Ok, "https"),
        Transport::LoopbackHttp => Check::new(
            "target.https",
            Warning,
            "plain http on a loopback host: a development set-up, not for deployment",
        ),
        Transport::Insecure => Check::new(
            "target.https",
            Violated,
            "plain http to a host that is not loopback: tokens would cross the network in the clear",
        )
        .evidence(raw),
    });
    Some(url)
}

const CHALLENGE_IDS: [&str; 3] = [
    "mcp.challenge_bearer",
    "mcp.challenge_resource_metadata",
    "mcp.challenge_scope",
];

/// Returns false when the endpoint cannot be reached at all.
pub async fn run(p: &mut Probe<'_>) -> bool {
    let url = p.raw.clone();
    let resp = match p.mcp_post(&url, &initialize_body(), &[], None).await {
        Err(e) => {
            p.push(
                Check::new(
                    "mcp.reachable",
                    Violated,
                    format!("no answer to a POST: {e}"),
                )
                .evidence(url),
            );
            return false;
        }
        Ok(r) => r,
    };
    p.push(Check::new(
        "mcp.reachable",
        Verdict::Ok,
        format!("answered a POST with {}", resp.status),
    ));
    p.f.legacy_status = Some(resp.status);
    let s = resp.status;
    p.f.unprotected = (200..300).contains(&s);
    // Where Streamable HTTP finds nothing, an older server may still speak
    // HTTP+SSE at the same URL (and clients that fall back reach it).
    let legacy = if matches!(s, 404 | 405) {
        legacy_transport(p, &url).await
    } else {
        None
    };
    p.push(match (s, legacy) {
        (404 | 405, Some(get)) => Check::new(
            "mcp.streamable_http",
            Missed,
            format!(
                "the POST got {s}, but {}: clients that speak only Streamable HTTP cannot use \
                 this URL (`mcpgate connect` falls back to HTTP+SSE)",
                if get == 401 {
                    "a GET for an event stream got 401, as a protected 2024-11-05 HTTP+SSE \
                     server answers"
                        .to_owned()
                } else {
                    format!("a GET opened a 2024-11-05 HTTP+SSE event stream ({get})")
                }
            ),
        )
        .evidence(url.clone()),
        (404 | 405, None) => Check::new(
            "mcp.streamable_http",
            Skipped,
            format!("no MCP endpoint at this URL ({s} to a POST, no event stream to a GET)"),
        ),
        _ => Check::new(
            "mcp.streamable_http",
            Verdict::Ok,
            format!("answered the initialize POST ({s})"),
        ),
    });
    let check = match s {
        401 => Check::new(
            "mcp.unauthenticated_401",
            Verdict::Ok,
            "401 to an initialize without credentials",
        ),
        200..=299 => Check::new(
            "mcp.unauthenticated_401",
            Warning,
            format!("answered {s} without credentials: this server is not protected (fine if that is intended)"),
        ),
        300..=399 => Check::new(
            "mcp.unauthenticated_401",
            Violated,
            format!("redirected ({s}): MCP clients POST to the URL they are given and do not follow; give them the final URL"),
        )
        .evidence(resp.header("location").unwrap_or_default()),
        403 => Check::new(
            "mcp.unauthenticated_401",
            Violated,
            "403 to a request without credentials: clients start authorization only on 401",
        )
        .evidence(resp.body_excerpt(200)),
        404 | 405 if legacy.is_some() => Check::new(
            "mcp.unauthenticated_401",
            Violated,
            format!("{s}: this URL speaks the 2024-11-05 HTTP+SSE transport, not Streamable HTTP (see mcp.streamable_http)"),
        )
        .evidence(url.clone()),
        404 | 405 => Check::new(
            "mcp.unauthenticated_401",
            Violated,
            format!("{s}: no MCP endpoint at this URL (check the path)"),
        )
        .evidence(url.clone()),
        _ => Check::new(
            "mcp.unauthenticated_401",
            Violated,
            format!("{s} to a request without credentials; 401 is required"),
        )
        .evidence(resp.body_excerpt(200)),
    };
    p.push(check);
    if s == 401 {
        challenge_checks(p, &resp.header_values("www-authenticate"));
    } else {
        p.skip(
            &CHALLENGE_IDS,
            &format!("no 401 (the endpoint answered {s})"),
        );
    }
    modern(p, &url).await;
    true
}

/// The status of a GET of `url` that looks like the 2024-11-05 HTTP+SSE
/// transport: an event stream whose first event is `endpoint`, or a 401
/// (a protected one; the POST found nothing there).
async fn legacy_transport(p: &Probe<'_>, url: &str) -> Option<u16> {
    let resp = p.mcp_get_event_stream(url).await.ok()?;
    let endpoint_event = resp.media_type().as_deref() == Some("text/event-stream")
        && String::from_utf8_lossy(&resp.body)
            .lines()
            .any(|l| matches!(l.trim_end(), "event: endpoint" | "event:endpoint"));
    match resp.status {
        200..=299 if endpoint_event => Some(resp.status),
        401 => Some(401),
        _ => None,
    }
}

fn challenge_checks(p: &mut Probe<'_>, values: &[String]) {
    if values.is_empty() {
        p.push(Check::new(
            "mcp.challenge_bearer",
            Violated,
            "the 401 has no WWW-Authenticate header: clients cannot discover how to authorize",
        ));
        p.skip(&CHALLENGE_IDS, "no challenge");
        return;
    }
    let Some(ch) = challenge::bearer(values.iter().map(String::as_str)) else {
        p.push(
            Check::new(
                "mcp.challenge_bearer",
                Violated,
                "WWW-Authenticate has no Bearer challenge",
            )
            .evidence(values.join(" | ")),
        );
        p.skip(&CHALLENGE_IDS, "no Bearer challenge");
        return;
    };
    p.push(if ch.duplicates.is_empty() {
        Check::new("mcp.challenge_bearer", Verdict::Ok, "a Bearer challenge")
    } else {
        Check::new(
            "mcp.challenge_bearer",
            Violated,
            format!(
                "parameters appear more than once in the Bearer challenge: {}",
                ch.duplicates.join(", ")
            ),
        )
        .evidence(values.join(" | "))
    });
    p.push(match ch.param("resource_metadata") {
        None => Check::new(
            "mcp.challenge_resource_metadata",
            Missed,
            "no resource_metadata: clients fall back to the well-known URIs, and clients of 2025-06-18 expect it",
        ),
        Some(rm) => match Url::parse(rm) {
            Err(_) => Check::new(
                "mcp.challenge_resource_metadata",
                Missed,
                "resource_metadata is not an absolute URL",
            )
            .evidence(rm),
            Ok(u) => match transport(&u) {
                Transport::Https => {
                    Check::new("mcp.challenge_resource_metadata", Verdict::Ok, format!("resource_metadata={rm}"))
                }
                Transport::LoopbackHttp => Check::new(
                    "mcp.challenge_resource_metadata",
                    Warning,
                    format!("resource_metadata={rm}: plain http on a loopback host (development only)"),
                ),
                Transport::Insecure => Check::new(
                    "mcp.challenge_resource_metadata",
                    Missed,
                    "resource_metadata is not https: clients may refuse to fetch it",
                )
                .evidence(rm),
            },
        },
    });
    p.push(match ch.param("scope") {
        Some(s) if !s.trim().is_empty() => {
            Check::new("mcp.challenge_scope", Verdict::Ok, format!("scope=\"{s}\""))
        }
        Some(_) => Check::new(
            "mcp.challenge_scope",
            Missed,
            "scope is empty: clients fall back to the PRM's scopes_supported",
        ),
        None => Check::new(
            "mcp.challenge_scope",
            Missed,
            "no scope: clients fall back to the PRM's scopes_supported",
        ),
    });
    p.f.challenge = Some(ch);
}

/// The same request as a 2026-07-28 client sends it.
async fn modern(p: &mut Probe<'_>, url: &str) {
    let headers = [
        (HEADER_PROTOCOL_VERSION, MODERN_VERSION),
        (HEADER_METHOD, "server/discover"),
    ];
    let resp = match p.mcp_post(url, &discover_body(), &headers, None).await {
        Err(e) => {
            p.push(Check::new(
                "mcp.modern_401",
                Skipped,
                format!("no answer to the 2026-07-28 server/discover: {e}"),
            ));
            return;
        }
        Ok(r) => r,
    };
    let s = resp.status;
    let protected = p.f.legacy_status == Some(401);
    let check = match s {
        401 => {
            let legacy_rm = p
                .f
                .challenge
                .as_ref()
                .and_then(|c| c.param("resource_metadata"));
            let values = resp.header_values("www-authenticate");
            let modern = challenge::bearer(values.iter().map(String::as_str));
            let modern_rm = modern.as_ref().and_then(|c| c.param("resource_metadata"));
            if protected && modern_rm != legacy_rm {
                Check::new(
                    "mcp.modern_401",
                    Warning,
                    "401, but its challenge names another resource_metadata than the initialize's",
                )
                .evidence(format!(
                    "2025-11-25: {}; 2026-07-28: {}",
                    legacy_rm.unwrap_or("(none)"),
                    modern_rm.unwrap_or("(none)")
                ))
            } else {
                Check::new(
                    "mcp.modern_401",
                    Verdict::Ok,
                    "401 to a 2026-07-28 server/discover without credentials",
                )
            }
        }
        200..=299 if protected => Check::new(
            "mcp.modern_401",
            Violated,
            format!("answered {s} to a 2026-07-28 server/discover without credentials, although the initialize got 401"),
        )
        .evidence(resp.body_excerpt(200)),
        200..=299 => Check::new(
            "mcp.modern_401",
            Warning,
            format!("answered {s} without credentials: not protected"),
        ),
        400 | 404 | 405 => Check::new(
            "mcp.modern_401",
            Verdict::Ok,
            format!("answered {s}: it does not serve 2026-07-28 requests (no data was returned)"),
        ),
        _ => Check::new(
            "mcp.modern_401",
            Warning,
            format!("answered {s} to a 2026-07-28 server/discover without credentials"),
        )
        .evidence(resp.body_excerpt(200)),
    };
    p.push(check);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(raw: &str, id: &str) -> Option<Verdict> {
        let mut r = Report::new(raw);
        target(raw, &mut r);
        r.check(id).map(|c| c.verdict)
    }

    #[test]
    fn oauth21_1_5_http_on_loopback_is_a_warning_elsewhere_a_violation() {
        assert_eq!(
            verdict("http://127.0.0.1:8080/mcp", "target.https"),
            Some(Warning)
        );
        assert_eq!(
            verdict("http://localhost/mcp", "target.https"),
            Some(Warning)
        );
        assert_eq!(
            verdict("http://mcp.example.com/mcp", "target.https"),
            Some(Violated)
        );
        assert_eq!(
            verdict("https://mcp.example.com/mcp", "target.https"),
            Some(Verdict::Ok)
        );
    }

    #[test]
    fn rfc8707_2_fragment_and_relative_urls_are_refused() {
        assert_eq!(
            verdict("https://mcp.example.com/mcp#x", "target.url"),
            Some(Violated)
        );
        assert_eq!(verdict("/mcp", "target.url"), Some(Violated));
        assert_eq!(
            verdict("ftp://mcp.example.com/", "target.url"),
            Some(Violated)
        );
    }
}
