//! Test harness shared by mcpgate's crates: a local issuer that signs
//! access tokens with real keys and publishes them as a JWKS, plus helpers to
//! forge the malformed tokens the security tests need.
//!
//! Only for tests: keys are generated per run and `expect` is used freely.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A signing key with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
    /// The private key, PKCS#8 DER (for tools that read a PEM file).
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({}, {:?})", self.kid, self.alg)
    }
}

impl TestKey {
    pub fn es256(kid: &str) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self::from_encoding(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            pkcs8.as_ref().to_vec(),
        )
    }

    pub fn ed25519(kid: &str) -> Self {
        use aws_lc_rs::signature::KeyPair as _;
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        // jsonwebtoken cannot derive an OKP JWK from a PKCS#8 key; build it.
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
            "x": b64(pair.public_key().as_ref()),
        });
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk,
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    /// The private key as a PKCS#8 PEM document.
    pub fn pkcs8_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.pkcs8);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    fn from_encoding(kid: &str, alg: Algorithm, encoding: EncodingKey, pkcs8: Vec<u8>) -> Self {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
            pkcs8,
        }
    }

    /// Signs `claims` with header `{alg, kid, typ: at+jwt}`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        h.typ = Some("at+jwt".into());
        self.sign_with_header(h, claims)
    }

    pub fn sign_with_header(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A JWKS document for `keys`.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

/// Standard claims for `aud`, valid for ten minutes from now.
pub fn claims(iss: &str, aud: &str, scope: &str) -> Value {
    let now = now();
    json!({
        "iss": iss,
        "sub": "alice",
        "aud": aud,
        "client_id": "test-client",
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": format!("jti-{now}"),
    })
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// An unsigned token (`alg: none`, empty signature).
pub fn alg_none_token(claims: &Value) -> String {
    let h = json!({"alg": "none", "typ": "JWT"});
    format!(
        "{}.{}.",
        b64(h.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A token "signed" with HS256 using `secret` (e.g. the issuer's public key
/// bytes: the classic RS/HS confusion attack).
pub fn hs256_token(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).unwrap()
}
