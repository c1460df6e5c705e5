//! Step 2: Protected Resource Metadata (RFC 9728).
//!
//! Clients use the challenge's `resource_metadata` when there is one, and
//! only then; otherwise the path-inserted well-known URI, then the root one
//! (MCP "Protected Resource Metadata Discovery Requirements"). The probe
//! also tries the well-known URIs when the challenge names a URL, to say
//! whether they answer, but judges the server by what clients would use.
//! The `resource` must be identical to the server URL (RFC 9728 §3.3).

use serde_json::Value;
use url::Url;

use super::report::{Check, Verdict};
use super::{Prm, Probe};
use crate::discovery::{self, Mismatch, PrmSource, compare};
use crate::http::Fetched;
use Verdict::{Missed, Violated, Warning};

const IDS: [&str; 8] = [
    "prm.discoverable",
    "prm.json",
    "prm.resource_matches",
    "prm.authorization_servers",
    "prm.no_offline_access",
    "prm.scopes_supported",
    "hazard.resource_trailing_slash",
    "hazard.resource_case",
];

pub async fn run(p: &mut Probe<'_>) {
    let from_challenge =
        p.f.challenge
            .as_ref()
            .and_then(|c| c.param("resource_metadata"))
            .map(str::to_owned);
    let mut tried = Vec::new();
    let mut by_challenge: Option<Fetched> = None;
    let mut challenge_failure = None;
    if let Some(rm) = &from_challenge {
        match p.fetch_discovered(rm).await {
            Ok(r) if r.status == 200 => by_challenge = Some(r),
            Ok(r) => {
                tried.push(format!("{rm} → {}", r.status));
                challenge_failure = Some(format!("answered {}", r.status));
            }
            Err(e) => {
                tried.push(format!("{rm} → {e}"));
                challenge_failure = Some(format!("failed: {e}"));
            }
        }
    }
    let mut well_known: Option<(PrmSource, Fetched)> = None;
    for (source, url) in discovery::prm_well_known(&p.url) {
        match p.http.fetch_json(&url).await {
            Ok(r) if r.status == 200 => {
                well_known = Some((source, r));
                break;
            }
            Ok(r) => tried.push(format!("{url} → {}", r.status)),
            Err(e) => tried.push(format!("{url} → {e}")),
        }
    }
    let unprotected = p.f.unprotected;
    let (source, resp) = match (by_challenge, &from_challenge, well_known) {
        (Some(r), Some(rm), wk) => {
            let also = match &wk {
                Some((s, _)) => format!("; {} serves it too", s.describe()),
                None => {
                    "; no well-known URI serves it (the challenge is enough for 2025-11-25 clients)"
                        .to_owned()
                }
            };
            p.push(Check::new(
                "prm.discoverable",
                Verdict::Ok,
                format!("found at {rm}, named by the challenge{also}"),
            ));
            (PrmSource::Challenge, r)
        }
        (None, Some(rm), wk) => {
            p.push(
                Check::new(
                    "prm.discoverable",
                    Violated,
                    format!(
                        "the challenge's resource_metadata {}: clients use that URL and stop there{}",
                        challenge_failure.as_deref().unwrap_or("failed"),
                        if wk.is_some() { " (a well-known URI answers; the rest of this report checks it)" } else { "" },
                    ),
                )
                .evidence(rm.clone()),
            );
            match wk {
                Some(x) => x,
                None => {
                    p.skip(&IDS, "no Protected Resource Metadata found");
                    return;
                }
            }
        }
        (_, None, Some((s, r))) => {
            p.push(Check::new(
                "prm.discoverable",
                Verdict::Ok,
                format!(
                    "found at {} ({}){}",
                    r.url,
                    s.describe(),
                    if unprotected {
                        ", although the endpoint answered without credentials"
                    } else {
                        ""
                    },
                ),
            ));
            (s, r)
        }
        (_, None, None) if unprotected => {
            p.skip(
                &IDS,
                "the server is not protected and publishes no Protected Resource Metadata",
            );
            return;
        }
        (_, None, None) => {
            p.push(
                Check::new(
                    "prm.discoverable",
                    Violated,
                    "no resource_metadata in a challenge and no Protected Resource Metadata at the well-known URIs: clients cannot find the authorization server",
                )
                .evidence(tried.join("; ")),
            );
            p.skip(&IDS, "no Protected Resource Metadata found");
            return;
        }
    };
    check_document(p, source, resp);
}

fn check_document(p: &mut Probe<'_>, source: PrmSource, resp: Fetched) {
    let Some(doc) = resp.json_object() else {
        p.push(
            Check::new("prm.json", Violated, "the answer is not a JSON object").evidence(format!(
                "{}: {}",
                resp.url,
                resp.body_excerpt(120)
            )),
        );
        p.skip(&IDS, "the Protected Resource Metadata is not a JSON object");
        return;
    };
    p.push(if resp.is_json_media_type() {
        Check::new("prm.json", Verdict::Ok, "a JSON object, application/json")
    } else {
        Check::new(
            "prm.json",
            Violated,
            format!(
                "a JSON object, but Content-Type is {}, not application/json",
                resp.media_type().unwrap_or_else(|| "missing".into())
            ),
        )
        .evidence(resp.url.clone())
    });
    resource(p, source, doc.get("resource"));
    let servers = authorization_servers(p, doc.get("authorization_servers"));
    scopes(p, doc.get("scopes_supported"));
    p.f.prm = Some(Prm {
        authorization_servers: servers,
    });
}

fn resource(p: &mut Probe<'_>, source: PrmSource, value: Option<&Value>) {
    let expected = p.raw.clone();
    let Some(r) = value.and_then(Value::as_str) else {
        p.push(
            Check::new(
                "prm.resource_matches",
                Violated,
                "no resource (REQUIRED): clients cannot check the metadata is about this server",
            )
            .evidence("resource"),
        );
        p.skip(
            &["hazard.resource_trailing_slash", "hazard.resource_case"],
            "no resource in the PRM",
        );
        return;
    };
    let origin = p.url.origin().ascii_serialization();
    let mismatch = compare(&expected, r);
    p.push(match mismatch {
        None => Check::new("prm.resource_matches", Verdict::Ok, format!("resource is exactly {r}")),
        // RFC 9728 §3.3: a root document describes the origin. MCP clients
        // accept it for a URL under that origin (the conformance suite's
        // do), but a token for the origin opens every server on it.
        Some(_) if source == PrmSource::Root && r.trim_end_matches('/') == origin => Check::new(
            "prm.resource_matches",
            Warning,
            format!("the root document names the origin {r}, not {expected}: clients accept it, but its tokens are good for every MCP server on this origin"),
        )
        .evidence(format!("resource: {r}")),
        Some(m) => Check::new(
            "prm.resource_matches",
            Violated,
            format!("resource is {r} but the server URL is {expected}: {}; clients MUST NOT use this metadata", m.describe()),
        )
        .evidence(format!("resource: {r}")),
    });
    // Interoperability hazards in the spelling of the resource.
    let root_path = Url::parse(r).is_ok_and(|u| u.path() == "/");
    p.push(match mismatch {
        Some(Mismatch::TrailingSlash | Mismatch::TrailingSlashAndCase) => Check::new(
            "hazard.resource_trailing_slash",
            Missed,
            format!("the resource {r} and the server URL {expected} differ by a trailing slash: clients compare exactly, and a token minted for one is refused by the other"),
        )
        .evidence(format!("resource: {r}")),
        _ if r.ends_with('/') && !root_path => Check::new(
            "hazard.resource_trailing_slash",
            Missed,
            "the resource ends with a slash; the canonical form has none unless it is significant, and clients told the URL without it will mismatch",
        )
        .evidence(format!("resource: {r}")),
        _ => Check::new("hazard.resource_trailing_slash", Verdict::Ok, "no trailing-slash difference"),
    });
    let upper_host = Url::parse(r).is_ok_and(|_| {
        let head = r
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("");
        let scheme = r.split("://").next().unwrap_or("");
        head.chars().any(|c| c.is_ascii_uppercase())
            || scheme.chars().any(|c| c.is_ascii_uppercase())
    });
    p.push(match mismatch {
        Some(Mismatch::Case | Mismatch::TrailingSlashAndCase) => Check::new(
            "hazard.resource_case",
            Missed,
            format!("the resource {r} and the server URL {expected} differ in letter case: clients compare exactly (no case folding)"),
        )
        .evidence(format!("resource: {r}")),
        _ if upper_host => Check::new(
            "hazard.resource_case",
            Missed,
            "upper case in the resource's scheme or host: the canonical form is lower case, and some clients normalise while others do not",
        )
        .evidence(format!("resource: {r}")),
        _ => Check::new("hazard.resource_case", Verdict::Ok, "no case difference"),
    });
}

fn authorization_servers(p: &mut Probe<'_>, value: Option<&Value>) -> Vec<String> {
    let bad = |m: &str| {
        Check::new("prm.authorization_servers", Violated, m).evidence("authorization_servers")
    };
    let check = match value {
        None => bad("no authorization_servers: clients cannot find where to get a token"),
        Some(Value::Array(a)) if a.is_empty() => {
            bad("authorization_servers is empty: at least one is required")
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            let list: Vec<String> = a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            p.push(Check::new(
                "prm.authorization_servers",
                Verdict::Ok,
                format!("listed: {}", list.join(", ")),
            ));
            return list;
        }
        Some(Value::Array(_)) => bad("authorization_servers has entries that are not strings"),
        Some(_) => bad("authorization_servers is not an array"),
    };
    p.push(check);
    Vec::new()
}

fn scopes(p: &mut Probe<'_>, value: Option<&Value>) {
    let supported: Vec<&str> = match value {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    p.push(match value {
        None => Check::new(
            "prm.scopes_supported",
            Verdict::Ok,
            "absent: without a scope in the challenge, clients request no scope",
        ),
        Some(Value::Array(_)) => Check::new(
            "prm.scopes_supported",
            Verdict::Ok,
            format!("scopes_supported: {}", supported.join(" ")),
        ),
        Some(_) => Check::new(
            "prm.scopes_supported",
            Warning,
            "scopes_supported is not an array",
        )
        .evidence("scopes_supported"),
    });
    let in_challenge =
        p.f.challenge
            .as_ref()
            .and_then(|c| c.param("scope"))
            .is_some_and(|s| s.split(' ').any(|x| x == "offline_access"));
    let in_prm = supported.contains(&"offline_access");
    p.push(match (in_prm, in_challenge) {
        (false, false) => Check::new("prm.no_offline_access", Verdict::Ok, "offline_access is not asked for"),
        (prm, _) => Check::new(
            "prm.no_offline_access",
            Missed,
            "offline_access is a resource requirement here; refresh tokens are the authorization server's business",
        )
        .evidence(if prm { "scopes_supported" } else { "WWW-Authenticate scope" }),
    });
}
