//! Step 3: the authorization server's metadata (RFC 8414, OpenID Connect
//! Discovery), found the way MCP clients look for it, and what clients
//! need from it. Only the first server the PRM lists is probed, as clients
//! do; the others are named.

use serde_json::{Map, Value};
use url::Url;

use super::Probe;
use super::report::{Check, Verdict};
use crate::discovery::{self, OAUTH_WELL_KNOWN, OIDC_WELL_KNOWN, Transport, compare, transport};
use Verdict::{Missed, Skipped, Violated, Warning};

const IDS: [&str; 12] = [
    "as.issuer_url",
    "as.metadata_discoverable",
    "as.metadata_json",
    "as.issuer_matches",
    "as.required_fields",
    "as.pkce_s256",
    "as.https",
    "as.iss_parameter",
    "as.cimd",
    "as.registration_endpoint",
    "as.token_endpoint_auth_methods",
    "as.other_servers",
];

/// Endpoint fields that must be https (MCP "Communication Security").
const ENDPOINTS: [&str; 10] = [
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "registration_endpoint",
    "jwks_uri",
    "revocation_endpoint",
    "introspection_endpoint",
    "userinfo_endpoint",
    "device_authorization_endpoint",
    "pushed_authorization_request_endpoint",
];

pub async fn run(p: &mut Probe<'_>) {
    authorization_server(p).await;
    origin_metadata(p).await;
}

async fn authorization_server(p: &mut Probe<'_>) {
    let servers = match &p.f.prm {
        Some(prm) => prm.authorization_servers.clone(),
        None => {
            p.skip(
                &IDS,
                "no Protected Resource Metadata, so no authorization server to check",
            );
            return;
        }
    };
    let Some(first) = servers.first().cloned() else {
        p.skip(&IDS, "the PRM lists no authorization server");
        return;
    };
    p.push(if servers.len() > 1 {
        Check::new(
            "as.other_servers",
            Verdict::Ok,
            format!(
                "{} more, not probed (clients pick one): {}",
                servers.len() - 1,
                servers[1..].join(", ")
            ),
        )
    } else {
        Check::new("as.other_servers", Verdict::Ok, "one authorization server")
    });
    let issuer = match Url::parse(&first) {
        Ok(u) if u.query().is_some() || first.contains('#') => {
            p.push(
                Check::new(
                    "as.issuer_url",
                    Violated,
                    "an issuer identifier has no query or fragment",
                )
                .evidence(first.clone()),
            );
            u
        }
        Ok(u) => {
            p.push(match transport(&u) {
                Transport::Https => Check::new("as.issuer_url", Verdict::Ok, first.clone()),
                Transport::LoopbackHttp => Check::new(
                    "as.issuer_url",
                    Warning,
                    format!("{first}: plain http on a loopback host (development only)"),
                ),
                Transport::Insecure => Check::new(
                    "as.issuer_url",
                    Violated,
                    "the authorization server is not https",
                )
                .evidence(first.clone()),
            });
            u
        }
        Err(_) => {
            p.push(
                Check::new("as.issuer_url", Violated, "not an absolute URL")
                    .evidence(first.clone()),
            );
            p.skip(&IDS, "the authorization server identifier is not a URL");
            return;
        }
    };
    p.f.issuer = Some(issuer.clone());
    let mut tried = Vec::new();
    let mut found = None;
    for (_, what, url) in discovery::as_metadata_urls(&issuer) {
        match p.fetch_discovered(&url).await {
            Ok(r) if r.status == 200 => {
                found = Some((what, r));
                break;
            }
            Ok(r) => tried.push(format!("{url} → {}", r.status)),
            Err(e) => tried.push(format!("{url} → {e}")),
        }
    }
    let Some((what, resp)) = found else {
        let hint = misplaced_metadata(p, &issuer).await;
        p.push(
            Check::new(
                "as.metadata_discoverable",
                Violated,
                format!("no metadata at any of the well-known URLs clients try{hint}"),
            )
            .evidence(tried.join("; ")),
        );
        p.skip(&IDS, "no authorization server metadata found");
        return;
    };
    p.push(Check::new(
        "as.metadata_discoverable",
        Verdict::Ok,
        format!(
            "found at {} ({what}){}",
            resp.url,
            if tried.is_empty() {
                String::new()
            } else {
                format!(", after {} that did not answer 200", tried.len())
            }
        ),
    ));
    let Some(doc) = resp.json_object() else {
        p.push(
            Check::new(
                "as.metadata_json",
                Violated,
                "the answer is not a JSON object",
            )
            .evidence(format!("{}: {}", resp.url, resp.body_excerpt(120))),
        );
        p.skip(&IDS, "the metadata is not a JSON object");
        return;
    };
    p.push(if resp.is_json_media_type() {
        Check::new(
            "as.metadata_json",
            Verdict::Ok,
            "a JSON object, application/json",
        )
    } else {
        Check::new(
            "as.metadata_json",
            Violated,
            format!(
                "a JSON object, but Content-Type is {}, not application/json",
                resp.media_type().unwrap_or_else(|| "missing".into())
            ),
        )
        .evidence(resp.url.clone())
    });
    document(p, &first, &doc);
    p.f.as_metadata_url = Some(resp.url);
    p.f.as_metadata = Some(doc);
}

/// For an issuer with a path, metadata served at the root instead is a
/// common mistake: say so.
async fn misplaced_metadata(p: &Probe<'_>, issuer: &Url) -> String {
    if issuer.path().trim_end_matches('/').is_empty() {
        return String::new();
    }
    let origin = issuer.origin().ascii_serialization();
    for suffix in [OAUTH_WELL_KNOWN, OIDC_WELL_KNOWN] {
        let url = format!("{origin}{suffix}");
        if let Ok(r) = p.fetch_discovered(&url).await
            && r.status == 200
        {
            return format!(
                " (it is at {url}, but for an issuer with a path clients look for it with the path inserted)"
            );
        }
    }
    String::new()
}

/// The checks on the metadata document of the issuer `issuer`.
fn document(p: &mut Probe<'_>, issuer: &str, doc: &Map<String, Value>) {
    let str_field = |k: &str| doc.get(k).and_then(Value::as_str);
    let strings = |k: &str| -> Option<Vec<&str>> {
        match doc.get(k)? {
            Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect()),
            _ => None,
        }
    };

    p.push(match str_field("issuer") {
        None => Check::new(
            "as.issuer_matches",
            Violated,
            "no issuer: clients MUST NOT use this metadata",
        )
        .evidence("issuer"),
        Some(i) => match compare(issuer, i) {
            None => Check::new("as.issuer_matches", Verdict::Ok, format!("issuer is exactly {i}")),
            Some(m) => Check::new(
                "as.issuer_matches",
                Violated,
                format!("issuer is {i}, but the metadata was looked up for {issuer}: {}; clients MUST NOT use this metadata", m.describe()),
            )
            .evidence(format!("issuer: {i}")),
        },
    });

    let mut missing = Vec::new();
    for k in ["authorization_endpoint", "token_endpoint"] {
        if str_field(k).is_none() {
            missing.push(k);
        }
    }
    if !strings("response_types_supported").is_some_and(|v| v.contains(&"code")) {
        missing.push("response_types_supported (with \"code\")");
    }
    p.push(if missing.is_empty() {
        Check::new(
            "as.required_fields",
            Verdict::Ok,
            "authorization_endpoint, token_endpoint, response_types_supported with code",
        )
    } else {
        Check::new(
            "as.required_fields",
            Violated,
            format!("missing or invalid: {}", missing.join(", ")),
        )
        .evidence(missing.join(", "))
    });

    p.push(match strings("code_challenge_methods_supported") {
        Some(m) if m.contains(&"S256") => Check::new("as.pkce_s256", Verdict::Ok, "S256 is supported"),
        Some(m) => Check::new(
            "as.pkce_s256",
            Violated,
            format!("code_challenge_methods_supported lists [{}] without S256: MCP clients MUST refuse to proceed", m.join(", ")),
        )
        .evidence("code_challenge_methods_supported"),
        None => Check::new(
            "as.pkce_s256",
            Violated,
            "no code_challenge_methods_supported: MCP clients MUST refuse to proceed",
        )
        .evidence("code_challenge_methods_supported"),
    });

    let (mut insecure, mut loopback, mut count) = (Vec::new(), Vec::new(), 0);
    for k in ENDPOINTS {
        let Some(v) = str_field(k) else { continue };
        count += 1;
        match Url::parse(v).map(|u| transport(&u)) {
            Ok(Transport::Https) => {}
            Ok(Transport::LoopbackHttp) => loopback.push(k),
            Ok(Transport::Insecure) | Err(_) => insecure.push(format!("{k}: {v}")),
        }
    }
    p.push(if !insecure.is_empty() {
        Check::new(
            "as.https",
            Violated,
            "endpoints that are not https (or not absolute URLs)",
        )
        .evidence(insecure.join("; "))
    } else if !loopback.is_empty() {
        Check::new(
            "as.https",
            Warning,
            format!(
                "plain http on a loopback host (development only): {}",
                loopback.join(", ")
            ),
        )
    } else {
        Check::new(
            "as.https",
            Verdict::Ok,
            format!("all {count} endpoints are https"),
        )
    });

    p.push(match doc.get("authorization_response_iss_parameter_supported") {
        Some(Value::Bool(true)) => Check::new("as.iss_parameter", Verdict::Ok, "iss is in authorization responses (RFC 9207)"),
        v => Check::new(
            "as.iss_parameter",
            Missed,
            format!("authorization_response_iss_parameter_supported is {}: clients cannot detect mix-up attacks", if v.is_some() { "not true" } else { "absent" }),
        )
        .evidence("authorization_response_iss_parameter_supported"),
    });

    let cimd = doc.get("client_id_metadata_document_supported") == Some(&Value::Bool(true));
    p.push(if cimd {
        Check::new("as.cimd", Verdict::Ok, "Client ID Metadata Documents are supported")
    } else {
        Check::new(
            "as.cimd",
            Missed,
            "client_id_metadata_document_supported is not true: clients without a pre-registered id need dynamic registration",
        )
        .evidence("client_id_metadata_document_supported")
    });

    p.push(match (str_field("registration_endpoint"), cimd) {
        (Some(r), _) => Check::new(
            "as.registration_endpoint",
            Verdict::Ok,
            format!("present: {r} (clients without CIMD support register here)"),
        ),
        (None, true) => Check::new(
            "as.registration_endpoint",
            Verdict::Ok,
            "absent: clients use Client ID Metadata Documents or a pre-registered id",
        ),
        (None, false) => Check::new(
            "as.registration_endpoint",
            Warning,
            "absent, and no Client ID Metadata Documents: only clients with a pre-registered id can connect",
        )
        .evidence("registration_endpoint"),
    });

    p.push(match strings("token_endpoint_auth_methods_supported") {
        Some(m) if m.contains(&"none") => Check::new(
            "as.token_endpoint_auth_methods",
            Verdict::Ok,
            format!("{} (none: public clients)", m.join(", ")),
        ),
        Some(m) => Check::new(
            "as.token_endpoint_auth_methods",
            Missed,
            format!("[{}] without none: public clients (desktop apps, CLIs) cannot redeem codes", m.join(", ")),
        )
        .evidence("token_endpoint_auth_methods_supported"),
        None => Check::new(
            "as.token_endpoint_auth_methods",
            Missed,
            "absent: the default is client_secret_basic only (RFC 8414 §2), which public clients cannot use",
        )
        .evidence("token_endpoint_auth_methods_supported"),
    });
}

/// Clients of 2025-03-26 know no PRM: they look for RFC 8414 metadata at
/// the MCP server's origin ("Authorization Base URL"), then fall back to
/// `/authorize`, `/token` and `/register` there.
async fn origin_metadata(p: &mut Probe<'_>) {
    if p.f.legacy_status != Some(401) {
        p.push(Check::new(
            "compat.as_metadata_at_origin",
            Skipped,
            "the endpoint did not answer 401",
        ));
        return;
    }
    let url = format!("{}{OAUTH_WELL_KNOWN}", p.url.origin().ascii_serialization());
    let ok = if p.f.as_metadata_url.as_deref() == Some(url.as_str()) {
        Some(true)
    } else {
        match p.http.fetch_json(&url).await {
            Ok(r) => Some(r.status == 200 && r.json_object().is_some()),
            Err(_) => None,
        }
    };
    p.f.origin_as_metadata = ok;
    p.push(match ok {
        Some(true) => Check::new(
            "compat.as_metadata_at_origin",
            Verdict::Ok,
            format!("served at {url}: clients of 2025-03-26 find the authorization server"),
        ),
        _ => Check::new(
            "compat.as_metadata_at_origin",
            Warning,
            "not served at the origin: clients of 2025-03-26 (no PRM) fall back to /authorize, /token and /register there",
        )
        .evidence(url),
    });
}
