//! `mcpgate probe` through the real binary, on loopback: against mcpgate's
//! own gateway with the built-in authorization server (no MUST violated,
//! the active checks with real credentials), and against small servers
//! with one deliberate defect each, which the report must name by check id
//! with a non-zero exit status when a MUST is violated.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

mod common;
use common::{BIN, Served};

/// Runs `mcpgate probe URL --json ARGS` and returns its exit status and
/// its one JSON document.
async fn probe(url: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let out = tokio::process::Command::new(BIN)
        .arg("probe")
        .arg(url)
        .arg("--json")
        .args(args)
        .env_remove("MCPGATE_PROBE_TOKEN")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}):\n{stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

/// The check `id`: (level, verdict, the whole check).
fn check<'a>(report: &'a Value, id: &str) -> (&'a str, &'a str, &'a Value) {
    let c = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"));
    (
        c["level"].as_str().unwrap(),
        c["verdict"].as_str().unwrap(),
        c,
    )
}

fn violated_musts(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["level"] == "must" && c["verdict"] == "violated")
        .map(|c| format!("{}: {}", c["id"], c["message"]))
        .collect()
}

// ---------------------------------------------------------------------
// mcpgate's own gateway

/// A minimal Streamable HTTP MCP server for the gateway's routes.
async fn upstream() -> String {
    async fn mcp(method: Method, body: Bytes) -> Response {
        if method != Method::POST {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(id) = msg.get("id").cloned() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let result = match msg["method"].as_str() {
            Some("initialize") => json!({
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "upstream", "version": "1"},
            }),
            _ => json!({"tools": []}),
        };
        (
            [("mcp-session-id", "up-session-1")],
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})),
        )
            .into_response()
    }
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, Router::new().route("/mcp", axum::routing::any(mcp)))
            .await
            .unwrap();
    });
    format!("http://{addr}/mcp")
}

/// The gateway as its own issuer, with two routes on one origin.
struct Gw {
    served: Served,
}

impl std::ops::Deref for Gw {
    type Target = Served;
    fn deref(&self) -> &Served {
        &self.served
    }
}

impl Gw {
    async fn start() -> Gw {
        let up = upstream().await;
        let mut served = Served::configure(&format!(
            r#"[authorization_server]
enabled = true

[[routes]]
path = "/mcp"
upstream_url = "{up}"
scopes = ["mcp"]

[[routes]]
path = "/other/mcp"
upstream_url = "{up}"
scopes = ["mcp"]
"#
        ));
        served.start().await;
        Gw { served }
    }

    fn cli(&self, args: &[&str]) -> Value {
        self.served.cli_ok(args)
    }

    /// An access token for /mcp from the built-in issuer.
    async fn token(&self) -> String {
        let c = self.cli(&[
            "client",
            "add",
            "--name",
            "probe-test",
            "--confidential",
            "--grant",
            "client_credentials",
        ]);
        let r: Value = reqwest::Client::new()
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(
                c["client_id"].as_str().unwrap(),
                c["client_secret"].as_str(),
            )
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", &format!("{}/mcp", self.base)),
                ("scope", "mcp"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["access_token"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn mcp_authorization_own_gateway_violates_no_must() {
    let gw = Gw::start().await;
    let url = format!("{}/mcp", gw.base);
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(violated_musts(&r), Vec::<String>::new(), "{r:#}");
    assert_eq!(code, 0);
    assert_eq!(r["ok"], true);
    assert_eq!(r["target"], url.as_str());
    // Plain http on loopback is a development set-up: a warning.
    for id in ["target.https", "as.https", "as.issuer_url"] {
        assert_eq!(check(&r, id).1, "warning", "{id}");
    }
    for id in [
        "mcp.unauthenticated_401",
        "mcp.challenge_bearer",
        "mcp.challenge_scope",
        "mcp.modern_401",
        "prm.discoverable",
        "prm.json",
        "prm.resource_matches",
        "prm.authorization_servers",
        "as.metadata_discoverable",
        "as.issuer_matches",
        "as.required_fields",
        "as.pkce_s256",
        "as.iss_parameter",
        "as.cimd",
        "as.token_endpoint_auth_methods",
        "compat.as_metadata_at_origin",
        "hazard.resource_trailing_slash",
        "hazard.resource_case",
        "hazard.unknown_client",
        "token.invalid_refused",
        "token.unsigned_jwt_refused",
    ] {
        assert_eq!(check(&r, id).1, "ok", "{id}: {:#}", check(&r, id).2);
    }
    assert_eq!(check(&r, "hazard.dcr_native_redirect").1, "skipped");
    assert_eq!(check(&r, "token.accepted").1, "skipped");
    assert_eq!(r["summary"]["should_missed"], 0);
    let clients = r["clients"].as_array().unwrap();
    assert!(!clients.is_empty());
    assert!(
        clients.iter().all(|c| c["verdict"] == "yes"),
        "{clients:#?}"
    );
    // Every catalog id is reported exactly once.
    let ids: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());

    // The human report says the same.
    let out = Command::new(BIN).args(["probe", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("prm.resource_matches"), "{text}");
    assert!(text.contains("No MUST of the MCP authorization specification is violated."));
}

#[tokio::test]
async fn rfc8707_2_own_gateway_token_checks_and_native_registration() {
    let gw = Gw::start().await;
    let url = format!("{}/mcp", gw.base);
    let other = format!("{}/other/mcp", gw.base);
    let token = gw.token().await;
    let (code, r) = probe(
        &url,
        &[
            "--other-resource",
            &other,
            "--register-test-client",
            "--login",
        ],
        &[("MCPGATE_PROBE_TOKEN", &token)],
    )
    .await;
    assert_eq!(violated_musts(&r), Vec::<String>::new(), "{r:#}");
    assert_eq!(code, 0);
    for id in [
        "token.accepted",
        "token.audience",
        "token.other_resource_refused",
        "hazard.dcr_native_redirect",
        "hazard.resource_parameter",
    ] {
        assert_eq!(check(&r, id).1, "ok", "{id}: {:#}", check(&r, id).2);
    }
    assert_eq!(check(&r, "token.login").1, "skipped");
    assert!(
        check(&r, "token.login").2["message"]
            .as_str()
            .unwrap()
            .contains("--token was given")
    );
    // The token never appears in the report.
    assert!(!r.to_string().contains(&token));

    // A credential without the route's scope gets a step-up challenge.
    let key = gw.cli(&[
        "apikey", "create", "--name", "noscope", "--route", "/mcp", "--scopes", "",
    ]);
    let (code, r) = probe(&url, &["--token", key["key"].as_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(check(&r, "token.insufficient_scope").1, "ok", "{r:#}");
    assert_eq!(check(&r, "token.audience").1, "skipped");
}

// ---------------------------------------------------------------------
// Servers with one deliberate defect each

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    /// A well-formed server: the control.
    None,
    /// PRM `resource` is the server URL with a trailing slash.
    ResourceTrailingSlash,
    /// AS metadata `issuer` differs from the identifier in the PRM.
    IssuerMismatch,
    /// `code_challenge_methods_supported` without S256.
    NoS256,
    /// 401 without `resource_metadata`, and no PRM at the well-known URIs.
    NoPrmDiscovery,
    /// PRM without `authorization_servers`.
    NoAuthorizationServers,
    /// Any bearer token is accepted.
    AcceptsAnyToken,
    /// A 401 without `WWW-Authenticate`.
    NoChallenge,
    /// The issuer has a path, but its metadata is only at the root.
    MetadataAtRoot,
    /// No Streamable HTTP: POST gets 404, a GET opens a 2024-11-05 HTTP+SSE
    /// event stream.
    HttpSseOnly,
    /// As `HttpSseOnly`, protected: the GET gets 401.
    HttpSseOnlyProtected,
}

struct Mock {
    base: String,
    defect: Defect,
}

async fn mock(defect: Defect) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let state = Arc::new(Mock {
        base: base.clone(),
        defect,
    });
    tokio::spawn(async move {
        axum::serve(l, Router::new().fallback(handle).with_state(state))
            .await
            .unwrap();
    });
    format!("{base}/mcp")
}

async fn handle(
    State(m): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let base = &m.base;
    let d = m.defect;
    let json = |v: Value| axum::Json(v).into_response();
    match (method.as_str(), uri.path()) {
        ("POST", "/mcp") if matches!(d, Defect::HttpSseOnly | Defect::HttpSseOnlyProtected) => {
            StatusCode::NOT_FOUND.into_response()
        }
        ("GET", "/mcp") if d == Defect::HttpSseOnlyProtected => (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", r#"Bearer scope="mcp""#)],
        )
            .into_response(),
        ("GET", "/mcp") if d == Defect::HttpSseOnly => (
            [("content-type", "text/event-stream")],
            "event: endpoint\ndata: /messages?session=1\n\n",
        )
            .into_response(),
        ("POST", "/mcp") => {
            if d == Defect::AcceptsAnyToken && headers.contains_key("authorization") {
                return json(json!({"jsonrpc": "2.0", "id": 1, "result": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "serverInfo": {"name": "mock", "version": "1"}}}));
            }
            if d == Defect::NoChallenge {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            let challenge = if d == Defect::NoPrmDiscovery {
                r#"Bearer scope="mcp""#.to_owned()
            } else {
                format!(
                    r#"Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp", scope="mcp""#
                )
            };
            (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", challenge)],
                json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32001, "message": "unauthorized"}})
                    .to_string(),
            )
                .into_response()
        }
        ("GET", "/.well-known/oauth-protected-resource/mcp") if d != Defect::NoPrmDiscovery => {
            let mut prm = json!({
                "resource": if d == Defect::ResourceTrailingSlash {
                    format!("{base}/mcp/")
                } else {
                    format!("{base}/mcp")
                },
                "authorization_servers": [if d == Defect::MetadataAtRoot {
                    format!("{base}/tenant")
                } else {
                    base.clone()
                }],
                "scopes_supported": ["mcp"],
            });
            if d == Defect::NoAuthorizationServers {
                prm.as_object_mut().unwrap().remove("authorization_servers");
            }
            json(prm)
        }
        ("GET", "/.well-known/oauth-authorization-server") => json(json!({
            "issuer": match d {
                Defect::IssuerMismatch => "https://evil.example".to_owned(),
                Defect::MetadataAtRoot => format!("{base}/tenant"),
                _ => base.clone(),
            },
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "registration_endpoint": format!("{base}/register"),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported":
                if d == Defect::NoS256 { json!(["plain"]) } else { json!(["S256"]) },
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
            "authorization_response_iss_parameter_supported": true,
            "client_id_metadata_document_supported": true,
        })),
        ("POST", "/token") => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response(),
        ("GET", "/authorize") => (StatusCode::BAD_REQUEST, "unknown client").into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[tokio::test]
async fn control_a_well_formed_server_violates_no_must() {
    let url = mock(Defect::None).await;
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(violated_musts(&r), Vec::<String>::new(), "{r:#}");
    assert_eq!(code, 0);
    assert_eq!(check(&r, "prm.resource_matches").1, "ok");
    assert_eq!(check(&r, "mcp.streamable_http").1, "ok");
}

#[tokio::test]
async fn mcp_transports_a_server_speaking_only_http_sse_is_named() {
    let url = mock(Defect::HttpSseOnly).await;
    let (_, r) = probe(&url, &[], &[]).await;
    let (level, verdict, c) = check(&r, "mcp.streamable_http");
    assert_eq!((level, verdict), ("should", "missed"), "{c}");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("HTTP+SSE event stream (200)"),
        "{c}"
    );
    // Not "check the path": the path is right, the transport is old.
    let (_, _, c) = check(&r, "mcp.unauthenticated_401");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .contains("2024-11-05 HTTP+SSE"),
        "{c}"
    );
}

#[tokio::test]
async fn mcp_transports_a_protected_http_sse_server_is_named() {
    let url = mock(Defect::HttpSseOnlyProtected).await;
    let (_, r) = probe(&url, &[], &[]).await;
    let (_, verdict, c) = check(&r, "mcp.streamable_http");
    assert_eq!(verdict, "missed", "{c}");
    assert!(c["message"].as_str().unwrap().contains("got 401"), "{c}");
}

#[tokio::test]
async fn mcp_transports_a_missing_endpoint_is_not_taken_for_http_sse() {
    // The mock answers 404 to everything at this path.
    let url = mock(Defect::None).await.replace("/mcp", "/nothing");
    let (_, r) = probe(&url, &[], &[]).await;
    assert_eq!(check(&r, "mcp.streamable_http").1, "skipped");
    let (_, _, c) = check(&r, "mcp.unauthenticated_401");
    assert!(
        c["message"].as_str().unwrap().contains("check the path"),
        "{c}"
    );
}

#[tokio::test]
async fn rfc9728_3_3_resource_with_a_trailing_slash_is_named() {
    let url = mock(Defect::ResourceTrailingSlash).await;
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(code, 1);
    let (level, verdict, c) = check(&r, "prm.resource_matches");
    assert_eq!((level, verdict), ("must", "violated"));
    assert!(
        c["message"].as_str().unwrap().contains("trailing slash"),
        "{c}"
    );
    assert_eq!(c["evidence"], format!("resource: {url}/"));
    assert_eq!(check(&r, "hazard.resource_trailing_slash").1, "missed");
    assert_eq!(violated_musts(&r).len(), 1, "{:?}", violated_musts(&r));
    assert!(r["clients"][0]["verdict"] == "no");
}

#[tokio::test]
async fn rfc8414_3_3_issuer_mismatch_is_named() {
    let url = mock(Defect::IssuerMismatch).await;
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(code, 1);
    let (level, verdict, c) = check(&r, "as.issuer_matches");
    assert_eq!((level, verdict), ("must", "violated"));
    assert_eq!(c["evidence"], "issuer: https://evil.example");
    assert_eq!(violated_musts(&r).len(), 1, "{:?}", violated_musts(&r));
}

#[tokio::test]
async fn mcp_authorization_code_protection_no_s256_is_named() {
    let url = mock(Defect::NoS256).await;
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(code, 1);
    let (level, verdict, c) = check(&r, "as.pkce_s256");
    assert_eq!((level, verdict), ("must", "violated"));
    assert_eq!(c["evidence"], "code_challenge_methods_supported");
    assert_eq!(violated_musts(&r).len(), 1, "{:?}", violated_musts(&r));
}

#[tokio::test]
async fn rfc9728_5_1_no_resource_metadata_and_no_well_known_prm_is_named() {
    let url = mock(Defect::NoPrmDiscovery).await;
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(code, 1);
    assert_eq!(
        check(&r, "mcp.challenge_resource_metadata").1,
        "missed",
        "{r:#}"
    );
    let (level, verdict, c) = check(&r, "prm.discoverable");
    assert_eq!((level, verdict), ("must", "violated"));
    let evidence = c["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("/.well-known/oauth-protected-resource/mcp → 404"),
        "{evidence}"
    );
    assert!(evidence.contains("/.well-known/oauth-protected-resource → 404"));
}

#[tokio::test]
async fn rfc9728_2_prm_without_authorization_servers_is_named() {
    let url = mock(Defect::NoAuthorizationServers).await;
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(code, 1);
    let (level, verdict, c) = check(&r, "prm.authorization_servers");
    assert_eq!((level, verdict), ("must", "violated"));
    assert_eq!(c["evidence"], "authorization_servers");
    assert_eq!(check(&r, "as.metadata_discoverable").1, "skipped");
}

#[tokio::test]
async fn mcp_token_handling_a_server_accepting_any_token_is_named() {
    let url = mock(Defect::AcceptsAnyToken).await;
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(code, 1);
    assert_eq!(check(&r, "token.invalid_refused").1, "violated");
    assert_eq!(check(&r, "token.unsigned_jwt_refused").1, "violated");
}

#[tokio::test]
async fn rfc9110_15_5_2_a_401_without_www_authenticate_is_named() {
    let url = mock(Defect::NoChallenge).await;
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(code, 1);
    assert_eq!(check(&r, "mcp.challenge_bearer").1, "violated");
    // The well-known URIs still lead to the metadata.
    assert_eq!(check(&r, "prm.discoverable").1, "ok");
}

#[tokio::test]
async fn rfc8414_3_1_metadata_at_the_root_for_an_issuer_with_a_path_is_named() {
    let url = mock(Defect::MetadataAtRoot).await;
    let (code, r) = probe(&url, &[], &[]).await;
    assert_eq!(code, 1);
    let (_, verdict, c) = check(&r, "as.metadata_discoverable");
    assert_eq!(verdict, "violated");
    assert!(
        c["message"].as_str().unwrap().contains("path inserted"),
        "{c}"
    );
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("/.well-known/oauth-authorization-server/tenant → 404")
    );
}

#[tokio::test]
async fn cli_refuses_authorization_in_header_with_usage_status() {
    let (code, r) = probe(
        "http://127.0.0.1:9/mcp",
        &["--header", "Authorization: Bearer x"],
        &[],
    )
    .await;
    assert_eq!(code, 2);
    assert_eq!(r["ok"], false);
}
