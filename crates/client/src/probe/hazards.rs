//! Step 4: interoperability hazards real deployments hit
//! (the team's interop notes, interop-quirks.md), probed with requests that
//! change nothing: an authorization request and a token request for a
//! client that does not exist. Registering a test client does change the
//! authorization server, so it runs only with `--register-test-client`.

use serde_json::{Value, json};
use url::Url;

use super::Probe;
use super::report::{Check, Verdict};
use crate::discovery::{Transport, transport};
use Verdict::{Missed, Skipped, Warning};

/// A native client's loopback redirect URI (RFC 8252 §7.3); nothing
/// listens there, and the probe never follows a redirect to it.
pub const LOOPBACK_REDIRECT: &str = "http://127.0.0.1:33418/callback";
/// A client id no server has registered.
const UNKNOWN_CLIENT: &str = "mcpgate-probe-unregistered-client";
/// RFC 7636 Appendix B's verifier and challenge: any well-formed pair will do.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub async fn run(p: &mut Probe<'_>) {
    register_native(p).await;
    resource_parameter(p).await;
    unknown_client(p).await;
}

/// An endpoint of the metadata, if it is safe to send a request to.
fn endpoint(p: &Probe<'_>, field: &str) -> Result<Url, String> {
    let Some(v) = p.f.as_str(field) else {
        return Err(format!("no {field} in the metadata"));
    };
    match Url::parse(v) {
        Ok(u) if transport(&u) != Transport::Insecure => p.may_fetch(&u).map(|()| u),
        Ok(_) => Err(format!("{field} is not https")),
        Err(_) => Err(format!("{field} is not a URL")),
    }
}

/// VS Code and Claude Code register native clients with loopback redirect
/// URIs; an authorization server that refuses them turns those clients
/// away (MCP "Application Type and Redirect URI Constraints").
async fn register_native(p: &mut Probe<'_>) {
    const ID: &str = "hazard.dcr_native_redirect";
    if !p.opts.register_test_client {
        p.push(Check::new(
            ID,
            Skipped,
            "not run: pass --register-test-client (it registers a client at the authorization server)",
        ));
        return;
    }
    let url = match endpoint(p, "registration_endpoint") {
        Ok(u) => u,
        Err(e) => {
            p.push(Check::new(ID, Skipped, e));
            return;
        }
    };
    let body = json!({
        "client_name": "mcpgate probe test client (safe to delete)",
        "application_type": "native",
        "redirect_uris": [LOOPBACK_REDIRECT],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    });
    let req = p
        .http
        .post(url.as_str())
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.to_string());
    let check = match p.http.send(req).await {
        Err(e) => Check::new(
            ID,
            Warning,
            format!("no answer from the registration endpoint: {e}"),
        ),
        Ok(r) => {
            let doc = r.json_object();
            let client_id = doc
                .as_ref()
                .and_then(|d| d.get("client_id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            match (r.status, client_id) {
                (200 | 201, Some(id)) => {
                    let c = Check::new(
                        ID,
                        Verdict::Ok,
                        format!(
                            "a native client with {LOOPBACK_REDIRECT} was registered as {id}; delete it at the authorization server"
                        ),
                    );
                    p.f.dcr_native = Some(Ok(id));
                    c
                }
                (s, _) => {
                    let (error, desc) = oauth_error(doc.as_ref());
                    let why = format!("{s} {error}{desc}");
                    p.f.dcr_native = Some(Err(why.clone()));
                    Check::new(
                        ID,
                        Missed,
                        format!("a native client with a loopback redirect URI was refused ({why}): VS Code and Claude Code register such clients"),
                    )
                    .evidence(url.to_string())
                }
            }
        }
    };
    p.push(check);
}

/// `error` and `: error_description` of an OAuth error body.
fn oauth_error(doc: Option<&serde_json::Map<String, Value>>) -> (String, String) {
    let get = |k: &str| {
        doc.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .map(|s| s.chars().take(200).collect::<String>())
    };
    (
        get("error").unwrap_or_default(),
        get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default(),
    )
}

/// Some identity providers refuse RFC 8707's `resource` (Entra ID v2:
/// AADSTS9010010), which every MCP client sends. Best effort: with a
/// client id nobody registered, most servers stop at the client first.
async fn resource_parameter(p: &mut Probe<'_>) {
    const ID: &str = "hazard.resource_parameter";
    let mut url = match endpoint(p, "authorization_endpoint") {
        Ok(u) => u,
        Err(e) => {
            p.push(Check::new(ID, Skipped, e));
            return;
        }
    };
    let registered =
        p.f.dcr_native
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .cloned();
    let client_id = registered
        .clone()
        .unwrap_or_else(|| UNKNOWN_CLIENT.to_owned());
    let scope =
        p.f.challenge
            .as_ref()
            .and_then(|c| c.param("scope"))
            .map(str::to_owned);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", LOOPBACK_REDIRECT)
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "mcpgate-probe")
            .append_pair("resource", &p.raw);
        if let Some(s) = &scope {
            q.append_pair("scope", s);
        }
    }
    let r = match p.http.send(p.http.get(url.as_str())).await {
        Ok(r) => r,
        Err(e) => {
            p.push(Check::new(
                ID,
                Skipped,
                format!("no answer from the authorization endpoint: {e}"),
            ));
            return;
        }
    };
    // A redirect carries the error in its query; a page carries it in text.
    let location = r.header("location").unwrap_or_default();
    let redirect_error = Url::parse(&location).ok().map(|u| {
        let get = |k: &str| {
            u.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        (get("error"), get("error_description"))
    });
    let text = match &redirect_error {
        Some((e, d)) => format!("{e} {d}"),
        None => String::from_utf8_lossy(&r.body).into_owned(),
    };
    let check = if complains_about_resource(&text) {
        Check::new(
            ID,
            Warning,
            "the authorization endpoint complains about the resource parameter, which every MCP client sends (RFC 8707)",
        )
        .evidence(match &redirect_error {
            Some((e, d)) => format!("error={e} {d}"),
            None => r.body_excerpt(200),
        })
    } else {
        let what = match &redirect_error {
            Some((e, _)) if e.is_empty() => format!("redirected ({})", r.status),
            Some((e, _)) => format!("redirected with error={e}"),
            None => format!("answered {}", r.status),
        };
        Check::new(
            ID,
            Verdict::Ok,
            if registered.is_some() {
                format!("{what}, with no complaint about resource")
            } else {
                format!(
                    "{what}, with no complaint about resource (best effort: the client_id is unregistered, so many servers stop before looking at resource)"
                )
            },
        )
    };
    p.push(check);
}

/// Error text that is about the `resource` parameter.
fn complains_about_resource(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    if t.contains("invalid_target") || t.contains("aadsts9010010") {
        return true;
    }
    const NEAR: [&str; 6] = [
        "parameter",
        "not supported",
        "unsupported",
        "not allowed",
        "invalid",
        "unknown",
    ];
    // "resource" within a short distance of words of refusal.
    t.match_indices("resource").any(|(i, _)| {
        let from = t[..i].char_indices().rev().nth(40).map_or(0, |(j, _)| j);
        let to = t[i..]
            .char_indices()
            .nth(48)
            .map_or(t.len(), |(j, _)| i + j);
        let window = &t[from..to];
        NEAR.iter().any(|w| window.contains(w))
    })
}

/// Claude re-registers when the token endpoint answers an unknown client
/// with `401 invalid_client`; a `400` leaves it stuck (interop-quirks.md,
/// FastMCP #1762, Supabase MCP #355).
async fn unknown_client(p: &mut Probe<'_>) {
    const ID: &str = "hazard.unknown_client";
    let url = match endpoint(p, "token_endpoint") {
        Ok(u) => u,
        Err(e) => {
            p.push(Check::new(ID, Skipped, e));
            return;
        }
    };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "mcpgate-probe-no-such-code"),
        ("redirect_uri", LOOPBACK_REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", UNKNOWN_CLIENT),
    ];
    let req = p
        .http
        .post(url.as_str())
        .header("accept", "application/json")
        .form(&form);
    let check = match p.http.send(req).await {
        Err(e) => Check::new(
            ID,
            Skipped,
            format!("no answer from the token endpoint: {e}"),
        ),
        Ok(r) => {
            let doc = r.json_object();
            let (error, desc) = oauth_error(doc.as_ref());
            match (r.status, error.as_str()) {
                (401, "invalid_client") => Check::new(ID, Verdict::Ok, "401 invalid_client"),
                (s, "invalid_client") => Check::new(
                    ID,
                    Warning,
                    format!("{s} invalid_client: Claude re-registers only on 401 invalid_client"),
                ),
                (s, e) => Check::new(
                    ID,
                    Warning,
                    format!("{s} {}: clients cannot tell that their registration is gone, and do not register again", if e.is_empty() { "without an OAuth error" } else { e }),
                )
                .evidence(format!("{}{desc}", url)),
            }
        }
    };
    p.push(check);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_complaints_are_recognised() {
        assert!(complains_about_resource("invalid_target: unknown resource"));
        assert!(complains_about_resource(
            "AADSTS9010010: The resource parameter provided in the request doesn't match"
        ));
        assert!(complains_about_resource("Unsupported parameter: resource"));
        assert!(!complains_about_resource(
            "The application is not registered with this server (unknown client_id)."
        ));
        assert!(!complains_about_resource(
            "Sign in to access your resources"
        ));
    }
}
