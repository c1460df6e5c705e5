//! RFC 8414 authorization server metadata, OpenID Connect discovery and the
//! JWKS. Both metadata documents carry the same `issuer`: `public_url`,
//! byte for byte (RFC 8414 §3.3). Only what is implemented is advertised.
//! `registration_endpoint` only while dynamic registration is on.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::{Value, json};

use crate::{
    AUTHORIZE_PATH, AuthServer, INTROSPECT_PATH, JWKS_PATH, REGISTER_PATH, REVOKE_PATH, TOKEN_PATH,
};

pub fn document(s: &AuthServer) -> Value {
    let i = &s.issuer;
    let mut doc = json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{i}{TOKEN_PATH}"),
        "jwks_uri": format!("{i}{JWKS_PATH}"),
        "revocation_endpoint": format!("{i}{REVOKE_PATH}"),
        "introspection_endpoint": format!("{i}{INTROSPECT_PATH}"),
        "scopes_supported": s.all_scopes().iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "client_id_metadata_document_supported": true,
        "authorization_response_iss_parameter_supported": true,
        // OpenID Connect discovery requires these two; no ID tokens are
        // issued (this is an OAuth server), `sub` is the username.
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    if s.settings.dynamic_client_registration {
        doc["registration_endpoint"] = format!("{i}{REGISTER_PATH}").into();
    }
    doc
}

const AUTH_METHODS: [&str; 4] = [
    "none",
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];
const SIGNING_ALGS: [&str; 4] = ["ES256", "EdDSA", "RS256", "PS256"];

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
