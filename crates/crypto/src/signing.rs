//! Signing keys of the built-in authorization server (ES256, P-256).

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::{Unspecified, sha256};

/// A private signing key, decrypted, in memory only.
pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    public_jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, ES256, <private key redacted>)", self.kid)
    }
}

/// A new key: the PKCS#8 document (to be sealed before storage) and the
/// public JWK.
#[derive(Debug)]
pub struct GeneratedKey {
    pub kid: String,
    pub pkcs8: Zeroizing<Vec<u8>>,
    pub public_jwk: serde_json::Value,
}

/// Generates an ES256 key. Its `kid` is the RFC 7638 thumbprint.
pub fn generate() -> Result<GeneratedKey, Unspecified> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| Unspecified)?;
    let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
    let (kid, public_jwk) = public_jwk(&pkcs8)?;
    Ok(GeneratedKey {
        kid,
        pkcs8,
        public_jwk,
    })
}

fn public_jwk(pkcs8: &[u8]) -> Result<(String, serde_json::Value), Unspecified> {
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
        .map_err(|_| Unspecified)?;
    // Uncompressed point: 0x04 || x (32) || y (32).
    let point = pair.public_key().as_ref();
    if point.len() != 65 || point[0] != 4 {
        return Err(Unspecified);
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
    // RFC 7638 §3.2: the required members in lexicographic order.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = b64(&sha256(canonical.as_bytes()));
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "kid": kid, "alg": "ES256", "use": "sig",
    });
    Ok((kid, jwk))
}

impl SigningKey {
    /// Loads a decrypted PKCS#8 document.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, Unspecified> {
        let (kid, public_jwk) = public_jwk(pkcs8)?;
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ec_der(pkcs8),
            public_jwk,
        })
    }

    pub fn public_jwk(&self) -> &serde_json::Value {
        &self.public_jwk
    }

    /// Signs an access token (RFC 9068: `typ: at+jwt`).
    pub fn sign_access_token<C: Serialize>(&self, claims: &C) -> Result<String, Unspecified> {
        let mut h = Header::new(Algorithm::ES256);
        h.typ = Some("at+jwt".into());
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).map_err(|_| Unspecified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{self, Jwks};

    #[test]
    fn rfc9068_signed_token_verifies_against_published_jwk() {
        let g = generate().unwrap();
        let k = SigningKey::from_pkcs8(&g.pkcs8).unwrap();
        assert_eq!(k.kid, g.kid);
        let t = k
            .sign_access_token(&serde_json::json!({"iss": "https://as", "aud": "https://rs/mcp", "exp": 4_000_000_000u64}))
            .unwrap();
        let jwks = Jwks::parse(
            serde_json::json!({"keys": [g.public_jwk]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let h = jwt::peek_header(&t, &jwt::ALLOWED).unwrap();
        assert_eq!(h.kid.as_deref(), Some(g.kid.as_str()));
        let c = jwt::verify_signature(&t, &h, &jwks).unwrap();
        assert_eq!(c.aud, vec!["https://rs/mcp".to_owned()]);
        // The header says at+jwt.
        let header_json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        assert!(
            String::from_utf8(header_json)
                .unwrap()
                .contains("\"typ\":\"at+jwt\"")
        );
    }

    #[test]
    fn rfc7638_kid_equals_independent_thumbprint() {
        let g = generate().unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(g.public_jwk.clone()).unwrap();
        let t = jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap();
        assert_eq!(t, g.kid);
    }

    #[test]
    fn rfc7638_kid_is_stable_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.kid, b.kid);
        assert_eq!(SigningKey::from_pkcs8(&a.pkcs8).unwrap().kid, a.kid);
        assert!(!format!("{:?}", SigningKey::from_pkcs8(&a.pkcs8).unwrap()).contains("pkcs8"));
    }
}
