//! JWT access-token verification (RFC 7519, RFC 9068, RFC 8725).
//!
//! Verification is split in two so the gateway can cache the expensive half:
//! [`verify_signature`] (header checks, key selection, signature) yields
//! [`Claims`]; [`Claims::check`] applies the per-request expectations
//! (issuer, audience = the route's resource URI, time).

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mcpgate_core::ScopeSet;
use serde_json::Value;

/// Longest token accepted before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused. The client only ever sees `invalid_token`; the
/// variant goes to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    #[error("token is not a well-formed JWS compact serialization")]
    Malformed,
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("token type {0:?} is not an access token type")]
    WrongType(String),
    #[error("token marks header parameters as critical that are not understood")]
    UnsupportedCritical,
    #[error("no key in the issuer's JWKS matches the token's kid and algorithm")]
    UnknownKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("claim {0} is missing or malformed")]
    BadClaim(&'static str),
    #[error("issuer does not match")]
    WrongIssuer,
    #[error("audience does not include this resource")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("JWKS document is invalid: {0}")]
    BadJwks(String),
}

/// Algorithms mcpgate ever accepts (RFC 8725 §3.1: an explicit allow-list).
pub const ALLOWED: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Parses an algorithm name from the allow-list.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The JOSE header fields mcpgate looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Reads and checks the JOSE header: `alg` on the allow-list, `typ` an
/// access-token type if present, no `crit`. `jku`, `x5u`, `jwk` and `x5c` are
/// never used to find a key.
pub fn peek_header(token: &str, allowed: &[Algorithm]) -> Result<TokenHeader, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| JwtError::Malformed)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    let obj = v.as_object().ok_or(JwtError::Malformed)?;
    let alg_name = obj
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed)?;
    let alg = algorithm(alg_name)
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| JwtError::AlgorithmNotAllowed(alg_name.chars().take(16).collect()))?;
    if let Some(typ) = obj.get("typ") {
        let typ = typ.as_str().ok_or(JwtError::Malformed)?;
        // RFC 9068 §2.1 `at+jwt`; plain `JWT` from IdPs that predate it.
        let t = typ.to_ascii_lowercase();
        if !matches!(t.as_str(), "at+jwt" | "application/at+jwt" | "jwt") {
            return Err(JwtError::WrongType(typ.chars().take(32).collect()));
        }
    }
    if obj.contains_key("crit") {
        return Err(JwtError::UnsupportedCritical);
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    Ok(TokenHeader { alg, kid })
}

/// The keys of an issuer in this process (the built-in authorization
/// server): read from memory, never fetched.
pub trait KeySource: Send + Sync + std::fmt::Debug {
    fn jwks(&self) -> std::sync::Arc<Jwks>;

    /// Whether a token with these (verified) claims has been revoked by
    /// its issuer. Checked on every request; must not block.
    fn is_revoked(&self, _claims: &Claims) -> bool {
        false
    }
}

/// One verification key from a JWKS.
struct VerifyingKey {
    kid: Option<String>,
    algs: Vec<Algorithm>,
    key: DecodingKey,
}

/// An issuer's signing keys, parsed once when fetched.
pub struct Jwks {
    keys: Vec<VerifyingKey>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, &k.algs)))
            .finish()
    }
}

impl Jwks {
    /// Parses a JWKS document. Keys that cannot verify an allowed algorithm
    /// (symmetric keys, encryption keys, unknown curves) are skipped rather
    /// than failing the whole set, since issuers publish such keys too.
    pub fn parse(json: &[u8]) -> Result<Self, JwtError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc =
            serde_json::from_slice(json).map_err(|e| JwtError::BadJwks(e.to_string()))?;
        let keys = doc
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| verifying_key(&jwk))
            .collect();
        Ok(Self { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key with this id exists (used to decide on a refetch).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    fn find(&self, header: &TokenHeader) -> Option<&VerifyingKey> {
        let usable = |k: &&VerifyingKey| k.algs.contains(&header.alg);
        match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(usable)
                .find(|k| k.kid.as_deref() == Some(kid)),
            // Without a kid, only an unambiguous key is used.
            None => {
                let mut it = self.keys.iter().filter(usable);
                match (it.next(), it.next()) {
                    (Some(k), None) => Some(k),
                    _ => None,
                }
            }
        }
    }
}

fn verifying_key(jwk: &Jwk) -> Option<VerifyingKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let family_algs: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::PS256],
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            vec![Algorithm::ES256]
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        // Symmetric keys never verify anything here (no HMAC), and other
        // curves are outside the allow-list.
        _ => return None,
    };
    let algs = match jwk.common.key_algorithm {
        None => family_algs,
        Some(ka) => {
            let a = match ka {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            if !family_algs.contains(&a) {
                return None;
            }
            vec![a]
        }
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        algs,
        key,
    })
}

/// The claims mcpgate uses, after the signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    /// `client_id` (RFC 9068), else `azp`.
    pub client_id: Option<String>,
    pub scope: ScopeSet,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    pub jti: Option<String>,
    /// `gid`: the grant an access token of mcpgate's own authorization
    /// server was issued under (a private claim, RFC 7519 §4.3), so that
    /// revoking the grant revokes the token.
    pub gid: Option<String>,
    /// `groups` and `roles` (arrays of strings, as Keycloak, Entra and
    /// Okta put them): attributes for access policies. A claim of another
    /// shape is ignored rather than failing the token.
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

/// What a request expects of a token.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    /// The token's `aud` must contain one of these, compared exactly.
    pub audiences: &'a [&'a str],
    /// Seconds since the epoch.
    pub now: u64,
    /// Allowed clock skew in seconds (at most 60 by policy).
    pub leeway: u64,
}

/// Verifies the signature with the matching key and extracts the claims.
/// No time, issuer or audience check happens here: see [`Claims::check`].
pub fn verify_signature(
    token: &str,
    header: &TokenHeader,
    jwks: &Jwks,
) -> Result<Claims, JwtError> {
    let key = jwks.find(header).ok_or(JwtError::UnknownKey)?;
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(token, &key.key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature | K::InvalidEcdsaKey | K::InvalidRsaKey(_) => {
                JwtError::BadSignature
            }
            K::InvalidAlgorithm => JwtError::AlgorithmNotAllowed(format!("{:?}", header.alg)),
            _ => JwtError::Malformed,
        }
    })?;
    claims(&data.claims)
}

/// The strings of a JSON array (at most 256 of them), or nothing.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .take(256)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn claims(v: &Value) -> Result<Claims, JwtError> {
    let obj = v.as_object().ok_or(JwtError::BadClaim("(payload)"))?;
    let string = |k: &'static str| -> Result<Option<String>, JwtError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(JwtError::BadClaim(k)),
        }
    };
    let time = |k: &'static str| -> Result<Option<u64>, JwtError> {
        match obj.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or(JwtError::BadClaim(k)),
            Some(_) => Err(JwtError::BadClaim(k)),
        }
    };
    let aud = match obj.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or(JwtError::BadClaim("aud"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(JwtError::BadClaim("aud")),
    };
    let scope = match (obj.get("scope"), obj.get("scp")) {
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => {
            ScopeSet::parse(s).map_err(|_| JwtError::BadClaim("scope"))?
        }
        (None, Some(Value::Array(a))) => {
            let joined: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
            ScopeSet::parse(&joined.join(" ")).map_err(|_| JwtError::BadClaim("scp"))?
        }
        (None, None) => ScopeSet::new(),
        _ => return Err(JwtError::BadClaim("scope")),
    };
    Ok(Claims {
        iss: string("iss")?.ok_or(JwtError::BadClaim("iss"))?,
        sub: string("sub")?,
        aud,
        client_id: match string("client_id")? {
            Some(c) => Some(c),
            None => string("azp")?,
        },
        scope,
        exp: time("exp")?.ok_or(JwtError::BadClaim("exp"))?,
        nbf: time("nbf")?,
        iat: time("iat")?,
        jti: string("jti")?,
        gid: string("gid")?,
        groups: strings(obj.get("groups")),
        roles: strings(obj.get("roles")),
    })
}

impl Claims {
    /// Issuer, audience and time checks (OAuth 2.1 §5.2, RFC 8707 §2,
    /// RFC 7519 §4.1.4–4.1.6).
    pub fn check(&self, e: &Expectations<'_>) -> Result<(), JwtError> {
        if self.iss != e.issuer {
            return Err(JwtError::WrongIssuer);
        }
        if !self.aud.iter().any(|a| e.audiences.contains(&a.as_str())) {
            return Err(JwtError::WrongAudience);
        }
        let leeway = e.leeway.min(60);
        if e.now >= self.exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = self.nbf
            && e.now.saturating_add(leeway) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(iat) = self.iat
            && e.now.saturating_add(leeway) < iat
        {
            return Err(JwtError::IssuedInFuture);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_roles_claims_are_read_when_they_are_string_arrays() {
        let c = claims(&serde_json::json!({
            "iss": "i", "aud": "a", "exp": 1,
            "groups": ["eng", 7, "ops"], "roles": "admin"
        }))
        .unwrap();
        assert_eq!(c.groups, ["eng", "ops"]);
        assert!(c.roles.is_empty(), "a non-array claim is ignored");
    }
}
