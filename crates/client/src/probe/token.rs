//! Step 5: tokens. Without credentials: a made-up token and an unsigned
//! JWT naming this resource must both get 401 (MCP "Token Handling":
//! "Invalid or expired tokens MUST receive a HTTP 401 response"). With
//! `--token`: whether the server accepts it, whether its `aud` names this
//! resource, whether a 403 is a proper `insufficient_scope` challenge, and
//! (with `--other-resource`) whether another resource on the same origin
//! refuses it.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcpgate_core::mcp::{HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID};
use serde_json::{Value, json};
use url::Url;

use super::Probe;
use super::endpoint::{LEGACY_VERSION, initialize_body};
use super::report::{Check, Verdict};
use crate::challenge;
use crate::http::Fetched;
use Verdict::{Missed, Skipped, Violated, Warning};

const WITH_TOKEN: [&str; 4] = [
    "token.accepted",
    "token.audience",
    "token.insufficient_scope",
    "token.other_resource_refused",
];

pub async fn run(p: &mut Probe<'_>) {
    forged(p).await;
    let mut token = p.opts.token.clone();
    if p.opts.login && token.is_none() {
        token = login(p).await;
    } else if p.opts.login {
        p.push(Check::new(
            "token.login",
            Skipped,
            "--token was given; it is used instead",
        ));
    } else {
        p.push(Check::new(
            "token.login",
            Skipped,
            "not requested (--login)",
        ));
    }
    let Some(token) = token else {
        p.skip(
            &WITH_TOKEN,
            "no token: neither --token nor a --login that succeeded",
        );
        return;
    };
    with_token(p, token.expose()).await;
}

/// `--login`: the authorization code flow as `mcpgate connect` runs it
/// (discovery from the 401, registration, PKCE, `iss` and `resource`), with
/// a token cache in a temporary directory removed afterwards.
async fn login(p: &mut Probe<'_>) -> Option<super::Token> {
    use crate::connect::{
        Browser, Grant, OAuthOptions, ResourceChoice, cache::Cache, oauth::Authorizer,
    };
    let dir = std::env::temp_dir().join(format!(
        "mcpgate-probe-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let result = async {
        let cache = Cache::open(Some(dir.clone()), crate::connect::cache::KeyringUse::Off)?;
        let opts = OAuthOptions {
            grant: Grant::AuthorizationCode,
            client_id: None,
            client_secret: None,
            client_metadata_url: None,
            private_key: None,
            scope: None,
            resource: ResourceChoice::Discovered,
            browser: p.opts.login_browser.clone().unwrap_or(Browser::System),
            callback_port: None,
            login_timeout: std::time::Duration::from_secs(300),
        };
        let auth = Authorizer::new(p.url.clone(), opts, cache)?;
        auth.renew(None, 401, p.f.challenge.as_ref()).await?;
        auth.bearer().ok_or_else(|| {
            crate::connect::ConnectError::Authorization("no token after the login".into())
        })
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(t) => {
            p.push(Check::new(
                "token.login",
                Verdict::Ok,
                format!(
                    "logged in at {} as client {} (scope {})",
                    t.issuer,
                    t.client_id,
                    t.scope
                        .as_deref()
                        .or(t.requested_scope.as_deref())
                        .unwrap_or("none")
                ),
            ));
            Some(super::Token::new(t.access_token.clone()))
        }
        Err(e) => {
            p.push(Check::new(
                "token.login",
                Warning,
                format!("the login failed: {e}"),
            ));
            None
        }
    }
}

/// Tokens nobody issued must be refused with 401.
async fn forged(p: &mut Probe<'_>) {
    if p.f.legacy_status != Some(401) {
        p.skip(
            &["token.invalid_refused", "token.unsigned_jwt_refused"],
            "the endpoint did not answer 401 without credentials",
        );
        return;
    }
    let url = p.raw.clone();
    let made_up = p
        .mcp_post(
            &url,
            &initialize_body(),
            &[],
            Some("mcpgate-probe-invalid-token"),
        )
        .await;
    let c = judge_forged("token.invalid_refused", "a made-up token", made_up);
    p.push(c);
    let jwt = unsigned_jwt(p);
    let unsigned = p.mcp_post(&url, &initialize_body(), &[], Some(&jwt)).await;
    let c = judge_forged(
        "token.unsigned_jwt_refused",
        "an unsigned JWT (alg none) with this resource as aud",
        unsigned,
    );
    p.push(c);
}

fn judge_forged(id: &'static str, what: &str, r: Result<Fetched, String>) -> Check {
    match r {
        Err(e) => Check::new(id, Skipped, format!("no answer: {e}")),
        Ok(r) => match r.status {
            401 => {
                let ch = challenge::bearer(
                    r.header_values("www-authenticate")
                        .iter()
                        .map(String::as_str),
                );
                match ch.as_ref().and_then(|c| c.param("error")) {
                    Some("invalid_token") => {
                        Check::new(id, Verdict::Ok, format!("401 invalid_token for {what}"))
                    }
                    _ => Check::new(
                        id,
                        Verdict::Ok,
                        format!(
                            "401 for {what} (its challenge has no error=\"invalid_token\", RFC 6750 §3.1)"
                        ),
                    ),
                }
            }
            s @ 200..=299 => Check::new(
                id,
                Violated,
                format!("{what} was accepted ({s}): the server does not validate tokens"),
            )
            .evidence(r.body_excerpt(160)),
            s => Check::new(
                id,
                Violated,
                format!("{s} for {what}; an invalid token MUST get 401"),
            )
            .evidence(r.body_excerpt(160)),
        },
    }
}

/// `{"alg":"none"}` over claims that would otherwise pass: this resource
/// as `aud`, the authorization server as `iss`, valid times.
fn unsigned_jwt(p: &Probe<'_>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let iss =
        p.f.prm
            .as_ref()
            .and_then(|prm| prm.authorization_servers.first().cloned())
            .unwrap_or_else(|| p.url.origin().ascii_serialization());
    let scope =
        p.f.challenge
            .as_ref()
            .and_then(|c| c.param("scope"))
            .unwrap_or("")
            .to_owned();
    let header = json!({"alg": "none", "typ": "at+jwt"});
    let claims = json!({
        "iss": iss, "sub": "mcpgate-probe", "aud": p.raw, "client_id": "mcpgate-probe",
        "scope": scope, "iat": now, "nbf": now, "exp": now + 300, "jti": "mcpgate-probe-unsigned",
    });
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

async fn with_token(p: &mut Probe<'_>, token: &str) {
    audience(p, token);
    let url = p.raw.clone();
    let init = p.mcp_post(&url, &initialize_body(), &[], Some(token)).await;
    let mut forbidden: Option<Fetched> = None;
    let accepted = match init {
        Err(e) => {
            p.push(Check::new(
                "token.accepted",
                Skipped,
                format!("no answer: {e}"),
            ));
            false
        }
        Ok(r) => {
            let s = r.status;
            let (check, accepted) = match s {
                200..=299 => (Check::new("token.accepted", Verdict::Ok, format!("accepted ({s})")), true),
                401 => {
                    let ch = challenge::bearer(r.header_values("www-authenticate").iter().map(String::as_str));
                    let why = ch
                        .as_ref()
                        .map(|c| {
                            format!(
                                "{} {}",
                                c.param("error").unwrap_or(""),
                                c.param("error_description").unwrap_or("")
                            )
                        })
                        .unwrap_or_default();
                    (
                        Check::new(
                            "token.accepted",
                            Warning,
                            format!("refused with 401 ({}): check the token's audience, issuer and expiry", why.trim()),
                        ),
                        false,
                    )
                }
                403 => (
                    Check::new("token.accepted", Verdict::Ok, "authenticated, but refused for its scopes (403)"),
                    true,
                ),
                // Not refused as invalid, but not served either (an
                // upstream error behind a gateway, a malformed request).
                _ => (
                    Check::new(
                        "token.accepted",
                        Warning,
                        format!("answered {s}: the token was not refused as invalid, but the request did not succeed"),
                    )
                    .evidence(r.body_excerpt(160)),
                    true,
                ),
            };
            p.push(check);
            if s == 403 {
                forbidden = Some(r);
            } else if (200..300).contains(&s) {
                forbidden = session(p, &url, token, &r).await;
            }
            accepted
        }
    };
    p.push(insufficient_scope(forbidden));
    other_resource(p, token, accepted).await;
}

/// After an accepted initialize: `notifications/initialized`, then a
/// read-only `tools/list` (a 403 there is a step-up challenge), then the
/// session is ended. Returns the first 403.
async fn session(p: &Probe<'_>, url: &str, token: &str, init: &Fetched) -> Option<Fetched> {
    let sid = init.header(HEADER_SESSION_ID);
    let mut headers = vec![(HEADER_PROTOCOL_VERSION, LEGACY_VERSION)];
    if let Some(s) = &sid {
        headers.push((HEADER_SESSION_ID, s.as_str()));
    }
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let _ = p.mcp_post(url, &note, &headers, Some(token)).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let r = p.mcp_post(url, &list, &headers, Some(token)).await.ok();
    if let Some(s) = &sid {
        // Best effort (servers MAY answer 405).
        let mut req = p
            .http
            .delete(url)
            .bearer_auth(token)
            .header(HEADER_SESSION_ID, s.as_str())
            .header(HEADER_PROTOCOL_VERSION, LEGACY_VERSION);
        for (k, v) in &p.opts.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let _ = p.http.send(req).await;
    }
    r.filter(|r| r.status == 403)
}

fn insufficient_scope(forbidden: Option<Fetched>) -> Check {
    const ID: &str = "token.insufficient_scope";
    let Some(r) = forbidden else {
        return Check::new(
            ID,
            Skipped,
            "no 403 with this token (initialize, tools/list): a token without the needed scopes tests it",
        );
    };
    let values = r.header_values("www-authenticate");
    let ch = challenge::bearer(values.iter().map(String::as_str));
    match ch {
        Some(c) if c.param("error") == Some("insufficient_scope") => match c.param("scope") {
            Some(s) if !s.trim().is_empty() => Check::new(
                ID,
                Verdict::Ok,
                format!("403 insufficient_scope, scope=\"{s}\""),
            ),
            _ => Check::new(
                ID,
                Missed,
                "403 insufficient_scope without scope: the client cannot tell which scopes to ask for",
            )
            .evidence(values.join(" | ")),
        },
        _ => Check::new(
            ID,
            Missed,
            "a 403 without a Bearer error=\"insufficient_scope\" challenge: clients cannot step up",
        )
        .evidence(if values.is_empty() {
            "no WWW-Authenticate".to_owned()
        } else {
            values.join(" | ")
        }),
    }
}

/// The `aud` of a JWT access token (not verified: this is a diagnosis).
fn audience(p: &mut Probe<'_>, token: &str) {
    const ID: &str = "token.audience";
    let parts: Vec<&str> = token.split('.').collect();
    let claims = (parts.len() == 3)
        .then(|| URL_SAFE_NO_PAD.decode(parts[1].trim_end_matches('=')).ok())
        .flatten()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let Some(claims) = claims else {
        p.push(Check::new(
            ID,
            Skipped,
            "not a JWT: an opaque token's audience is known only to the server",
        ));
        return;
    };
    let aud: Vec<String> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let expected = p.raw.clone();
    p.push(if aud.contains(&expected) {
        Check::new(ID, Verdict::Ok, format!("aud names {expected}"))
    } else if aud.is_empty() {
        Check::new(
            ID,
            Warning,
            "the JWT has no aud: MCP servers MUST refuse tokens not issued for them",
        )
    } else {
        Check::new(
            ID,
            Warning,
            format!(
                "aud is {}, not {expected}: this server should refuse the token",
                aud.join(", ")
            ),
        )
        .evidence(format!("aud: {}", aud.join(", ")))
    });
}

/// The token, issued for this resource, must not open another one. It is
/// sent only to a URL on the same origin as the MCP endpoint.
async fn other_resource(p: &mut Probe<'_>, token: &str, accepted: bool) {
    const ID: &str = "token.other_resource_refused";
    let Some(other) = p.opts.other_resource.clone() else {
        p.push(Check::new(
            ID,
            Skipped,
            "pass --other-resource URL (another MCP server on the same origin) to check it",
        ));
        return;
    };
    let same_origin = Url::parse(&other).is_ok_and(|u| u.origin() == p.url.origin());
    if !same_origin {
        p.push(Check::new(
            ID,
            Skipped,
            "--other-resource is not on the MCP endpoint's origin: the token is not sent elsewhere",
        ));
        return;
    }
    if !accepted {
        p.push(Check::new(
            ID,
            Skipped,
            "the token was refused here, so a refusal elsewhere proves nothing",
        ));
        return;
    }
    let check = match p.mcp_post(&other, &initialize_body(), &[], Some(token)).await {
        Err(e) => Check::new(ID, Skipped, format!("no answer from {other}: {e}")),
        Ok(r) => match r.status {
            401 => Check::new(ID, Verdict::Ok, format!("{other} refused it with 401")),
            s @ 200..=299 => Check::new(
                ID,
                Violated,
                format!("{other} accepted a token issued for {} ({s}): it does not check the audience", p.raw),
            )
            .evidence(other.clone()),
            403 => Check::new(
                ID,
                Warning,
                format!("{other} answered 403: it authenticated the token and refused only its scopes; the audience should be refused with 401"),
            )
            .evidence(other.clone()),
            s => Check::new(ID, Warning, format!("{other} answered {s}")).evidence(other.clone()),
        },
    };
    p.push(check);
}
