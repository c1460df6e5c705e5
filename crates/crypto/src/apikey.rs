//! API keys for agents and scripts: `mcpg_<id>_<secret>`.
//!
//! The `mcpg_` prefix makes leaked keys recognisable to secret scanners. The
//! id (16 hex digits) is the lookup key in storage; the secret (32 random
//! bytes, base64url) is never stored: only SHA-256 of the whole key is, which
//! is enough for a 256-bit random secret (a slow password hash buys nothing
//! against brute force of a value that has no human-chosen structure, and
//! would cost milliseconds on every request).

use base64::Engine as _;

use crate::secret::{Secret, ct_eq};
use crate::{Unspecified, random_bytes, sha256};

pub const PREFIX: &str = "mcpg_";
const ID_HEX_LEN: usize = 16;
const SECRET_B64_LEN: usize = 43;

/// A freshly generated key: shown once, then only its hash is kept.
#[derive(Debug)]
pub struct NewApiKey {
    pub id: String,
    /// The whole key to give to the user (`mcpg_…`).
    pub key: Secret,
    /// What storage keeps.
    pub hash: [u8; 32],
}

/// Generates a new API key.
pub fn generate() -> Result<NewApiKey, Unspecified> {
    let mut id = [0u8; ID_HEX_LEN / 2];
    random_bytes(&mut id)?;
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    random_bytes(secret.as_mut())?;
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!(
        "{PREFIX}{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_ref())
    );
    let hash = sha256(key.as_bytes());
    Ok(NewApiKey {
        id,
        key: Secret::new(key.into_bytes()),
        hash,
    })
}

/// A presented key, split but not yet verified.
#[derive(Debug)]
pub struct PresentedApiKey<'a> {
    pub id: &'a str,
    whole: &'a str,
}

/// Whether a bearer credential looks like one of our API keys (as opposed to
/// a JWT or an opaque token from an issuer).
pub fn looks_like_api_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// Splits a presented key; `None` when it is not well-formed.
pub fn parse(token: &str) -> Option<PresentedApiKey<'_>> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == ID_HEX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && secret.len() == SECRET_B64_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(PresentedApiKey { id, whole: token })
}

impl PresentedApiKey<'_> {
    /// Constant-time check against the stored hash.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        ct_eq(&sha256(self.whole.as_bytes()), stored_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_parses_and_matches_its_hash() {
        let k = generate().unwrap();
        let s = std::str::from_utf8(k.key.expose()).unwrap();
        assert!(s.starts_with("mcpg_"));
        let p = parse(s).unwrap();
        assert_eq!(p.id, k.id);
        assert!(p.matches(&k.hash));
    }

    #[test]
    fn altered_secret_does_not_match() {
        let k = generate().unwrap();
        let mut s = std::str::from_utf8(k.key.expose()).unwrap().to_owned();
        let last = s.pop().unwrap();
        s.push(if last == 'A' { 'B' } else { 'A' });
        assert!(!parse(&s).unwrap().matches(&k.hash));
    }

    #[test]
    fn malformed_keys_are_not_parsed() {
        assert!(parse("mcpg_short_x").is_none());
        assert!(parse("mcpg_0123456789abcdef").is_none());
        assert!(parse("sk_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_none());
        assert!(
            parse("mcpg_0123456789ABCDEF_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_none()
        );
        assert!(
            parse("mcpg_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_some()
        );
    }

    #[test]
    fn two_keys_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.id, b.id);
        assert_ne!(a.hash, b.hash);
    }
}
