//! RFC 8414 authorization server metadata, OpenID Connect discovery and the
//! JWKS. Both metadata documents carry the same `issuer`: `public_url`,
//! byte for byte (RFC 8414 §3.3). Only what is implemented is advertised.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::{Value, json};

use crate::{AuthServer, JWKS_PATH, TOKEN_PATH};

pub fn document(s: &AuthServer) -> Value {
    json!({
        "issuer": s.issuer,
        "token_endpoint": format!("{}{TOKEN_PATH}", s.issuer),
        "jwks_uri": format!("{}{JWKS_PATH}", s.issuer),
        "scopes_supported": s.all_scopes().iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        // No authorization endpoint yet: no response types, no PKCE
        // methods, nothing about authorization responses.
        "response_types_supported": [],
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    })
}

fn public_json(v: Value) -> Response {
    let mut r = axum::Json(v).into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub async fn authorization_server(State(s): State<Arc<AuthServer>>) -> Response {
    public_json(document(&s))
}

pub async fn openid_configuration(State(s): State<Arc<AuthServer>>) -> Response {
    public_json(document(&s))
}

pub async fn jwks(State(s): State<Arc<AuthServer>>) -> Response {
    // Short cache: a new `next` key must reach verifiers before it signs.
    let mut r = public_json(s.keys.jwks_document());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    r
}
