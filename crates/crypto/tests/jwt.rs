#![allow(clippy::unwrap_used, clippy::expect_used)]
//! RFC 8725 / RFC 9068 / RFC 8707 checks of the token verifier, each with a
//! real key and a real signature.

use jsonwebtoken::{Algorithm, Header};
use mcpgate_crypto::jwt::{self, ALLOWED, Expectations, Jwks, JwtError};
use mcpgate_test_support::{TestKey, alg_none_token, claims, hs256_token, jwks, now};
use serde_json::json;

const ISS: &str = "https://idp.example";
const AUD: &str = "https://gw.example/team/mcp";

fn verify(token: &str, keys: &Jwks, aud: &str) -> Result<jwt::Claims, JwtError> {
    let h = jwt::peek_header(token, &ALLOWED)?;
    let c = jwt::verify_signature(token, &h, keys)?;
    c.check(&Expectations {
        issuer: ISS,
        audiences: &[aud],
        now: now(),
        leeway: 60,
    })?;
    Ok(c)
}

fn set(keys: &[&TestKey]) -> Jwks {
    Jwks::parse(jwks(keys).to_string().as_bytes()).unwrap()
}

#[test]
fn rfc9068_valid_es256_and_eddsa_tokens_verify() {
    let es = TestKey::es256("k1");
    let ed = TestKey::ed25519("k2");
    let keys = set(&[&es, &ed]);
    for k in [&es, &ed] {
        let c = verify(&k.sign(&claims(ISS, AUD, "mcp files:read")), &keys, AUD).unwrap();
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.client_id.as_deref(), Some("test-client"));
        assert_eq!(c.scope.to_space_delimited(), "files:read mcp");
    }
}

#[test]
fn rfc8725_3_1_alg_none_is_refused() {
    let keys = set(&[&TestKey::es256("k1")]);
    let t = alg_none_token(&claims(ISS, AUD, "mcp"));
    assert_eq!(
        verify(&t, &keys, AUD),
        Err(JwtError::AlgorithmNotAllowed("none".into()))
    );
}

#[test]
fn rfc8725_2_1_hmac_with_public_key_is_refused() {
    let k = TestKey::es256("k1");
    let keys = set(&[&k]);
    let public = k.jwk.to_string();
    let t = hs256_token("k1", &claims(ISS, AUD, "mcp"), public.as_bytes());
    assert_eq!(
        verify(&t, &keys, AUD),
        Err(JwtError::AlgorithmNotAllowed("HS256".into()))
    );
}

#[test]
fn symmetric_keys_in_jwks_are_never_used() {
    let doc = json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]});
    let keys = Jwks::parse(doc.to_string().as_bytes()).unwrap();
    assert!(keys.is_empty());
}

#[test]
fn rfc8725_3_10_unknown_kid_is_refused() {
    let keys = set(&[&TestKey::es256("k1")]);
    let other = TestKey::es256("not-published");
    let t = other.sign(&claims(ISS, AUD, "mcp"));
    assert_eq!(verify(&t, &keys, AUD), Err(JwtError::UnknownKey));
}

#[test]
fn key_named_by_jku_or_embedded_jwk_is_not_used() {
    let keys = set(&[&TestKey::es256("k1")]);
    let attacker = TestKey::es256("k1");
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".into());
    h.jku = Some("https://attacker.example/jwks".into());
    h.jwk = Some(serde_json::from_value(attacker.jwk.clone()).unwrap());
    let t = attacker.sign_with_header(h, &claims(ISS, AUD, "mcp"));
    assert_eq!(verify(&t, &keys, AUD), Err(JwtError::BadSignature));
}

#[test]
fn forged_signature_with_published_kid_is_refused() {
    let keys = set(&[&TestKey::es256("k1")]);
    let forger = TestKey::es256("k1");
    let t = forger.sign(&claims(ISS, AUD, "mcp"));
    assert_eq!(verify(&t, &keys, AUD), Err(JwtError::BadSignature));
}

#[test]
fn tampered_payload_is_refused() {
    let k = TestKey::es256("k1");
    let keys = set(&[&k]);
    let t = k.sign(&claims(ISS, AUD, "mcp"));
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let mut c = claims(ISS, AUD, "mcp admin");
    c["sub"] = json!("mallory");
    parts[1] = base64_url(&c.to_string());
    assert_eq!(
        verify(&parts.join("."), &keys, AUD),
        Err(JwtError::BadSignature)
    );
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn rfc8707_2_audience_must_contain_resource_exactly() {
    let k = TestKey::es256("k1");
    let keys = set(&[&k]);
    for aud in [
        "https://gw.example/other/mcp",
        "https://gw.example/team/mcp/",
        "https://gw.example/team",
        "https://gw.example",
        "https://GW.example/team/mcp",
    ] {
        let t = k.sign(&claims(ISS, aud, "mcp"));
        assert_eq!(
            verify(&t, &keys, AUD),
            Err(JwtError::WrongAudience),
            "{aud}"
        );
    }
    let mut c = claims(ISS, AUD, "mcp");
    c["aud"] = json!(["https://other.example", AUD]);
    assert!(verify(&k.sign(&c), &keys, AUD).is_ok());
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        verify(&k.sign(&c), &keys, AUD),
        Err(JwtError::BadClaim("aud"))
    );
}

#[test]
fn rfc9068_4_issuer_must_match_exactly() {
    let k = TestKey::es256("k1");
    let keys = set(&[&k]);
    for iss in [
        "https://idp.example/",
        "https://evil.example",
        "https://IDP.example",
    ] {
        let t = k.sign(&claims(iss, AUD, "mcp"));
        assert_eq!(verify(&t, &keys, AUD), Err(JwtError::WrongIssuer), "{iss}");
    }
}

#[test]
fn rfc7519_4_1_4_expired_token_is_refused_after_skew() {
    let k = TestKey::es256("k1");
    let keys = set(&[&k]);
    let mut c = claims(ISS, AUD, "mcp");
    c["exp"] = json!(now() - 61);
    assert_eq!(verify(&k.sign(&c), &keys, AUD), Err(JwtError::Expired));
    c["exp"] = json!(now() - 30);
    assert!(verify(&k.sign(&c), &keys, AUD).is_ok(), "within 60 s skew");
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        verify(&k.sign(&c), &keys, AUD),
        Err(JwtError::BadClaim("exp"))
    );
}

#[test]
fn rfc7519_4_1_5_not_yet_valid_token_is_refused() {
    let k = TestKey::es256("k1");
    let keys = set(&[&k]);
    let mut c = claims(ISS, AUD, "mcp");
    c["nbf"] = json!(now() + 120);
    assert_eq!(verify(&k.sign(&c), &keys, AUD), Err(JwtError::NotYetValid));
    let mut c = claims(ISS, AUD, "mcp");
    c["iat"] = json!(now() + 120);
    assert_eq!(
        verify(&k.sign(&c), &keys, AUD),
        Err(JwtError::IssuedInFuture)
    );
}

#[test]
fn rfc9068_2_1_non_access_token_typ_is_refused() {
    let k = TestKey::es256("k1");
    let keys = set(&[&k]);
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k1".into());
    h.typ = Some("dpop+jwt".into());
    let t = k.sign_with_header(h, &claims(ISS, AUD, "mcp"));
    assert_eq!(
        verify(&t, &keys, AUD),
        Err(JwtError::WrongType("dpop+jwt".into()))
    );
}

#[test]
fn malformed_tokens_are_refused() {
    let keys = set(&[&TestKey::es256("k1")]);
    for t in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.e30.sig",
        &"a".repeat(20_000),
    ] {
        assert!(verify(t, &keys, AUD).is_err(), "{t:.20}");
    }
}

#[test]
fn scp_array_is_read_as_scopes() {
    let k = TestKey::es256("k1");
    let keys = set(&[&k]);
    let mut c = claims(ISS, AUD, "");
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["files:read", "mcp"]);
    let got = verify(&k.sign(&c), &keys, AUD).unwrap();
    assert_eq!(got.scope.to_space_delimited(), "files:read mcp");
}

#[test]
fn issuer_allow_list_narrower_than_default_is_honoured() {
    let k = TestKey::ed25519("k1");
    let t = k.sign(&claims(ISS, AUD, "mcp"));
    assert_eq!(
        jwt::peek_header(&t, &[Algorithm::ES256]),
        Err(JwtError::AlgorithmNotAllowed("EdDSA".into()))
    );
}
