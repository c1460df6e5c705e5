//! The only mcpgate crate that touches keys.
//!
//! - [`jwt`]: verification of JWT access tokens (RFC 7519, RFC 9068) against
//!   an issuer's JWKS (RFC 7517), with the checks of RFC 8725 (JWT BCP):
//!   an algorithm allow-list (never `none`, never HMAC), keys only from the
//!   configured JWKS (never `jku`, `x5u` or an embedded `jwk`), exact `iss`
//!   and `aud`, bounded clock skew.
//! - [`apikey`]: generation, parsing and hashing of `mcpg_` API keys.
//! - [`cache_key`]: keyed 128-bit hashes of verified credentials, the keys
//!   of in-memory caches (never the credential itself).
//! - [`password`]: Argon2id hashing of local accounts' passwords (RFC 9106),
//!   with a dummy verification for unknown users.
//! - [`secret`]: a secret type without `==`, with a redacted `Debug`,
//!   compared in constant time and zeroed on drop.
//!
//! Trust boundary: tokens and keys arrive from the network; nothing here logs
//! them or puts them in error messages.

pub mod apikey;
pub mod cache_key;
pub mod jwt;
pub mod mac;
pub mod master;
pub mod password;
pub mod secret;
pub mod session;
pub mod signing;

use aws_lc_rs::rand::SecureRandom as _;

/// Fills `buf` from the system CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), Unspecified> {
    aws_lc_rs::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| Unspecified)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The system random source failed; nothing else is said on purpose.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct Unspecified;
