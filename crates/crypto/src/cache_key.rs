//! Keys for in-memory caches of verified credentials: a 128-bit keyed hash
//! of the credential, so that a cache never holds the credential itself.
//!
//! The gateway remembers, per access token it has verified, the claims and
//! principal, and finds them again on the next request bearing the same
//! token. The lookup key must not be the token (a memory dump would show
//! it) and must not collide with another token's, or one caller could be
//! taken for another. SHA-256 gives both, but costs ~2.5 µs for a 700-byte
//! JWT on CPUs without SHA extensions (measured on the bench VM: 4.5 % of
//! the gateway's CPU per request). SipHash-2-4 with a 128-bit output under
//! a random per-process key is a PRF: without the key nobody can compute a
//! token's key, let alone find a second token with the same one, and the
//! chance that two of a cache's tokens collide by accident is ~n²/2¹²⁹. It
//! takes a few cycles per byte where SHA-256 takes ~15 (through the
//! gateway, alternating runs: ~6 µs less CPU per request on that VM).
//! (Written here rather than taken from a hashing crate's `BuildHasher`:
//! those give 64 bits.)

use siphasher::sip128::{Hasher128 as _, SipHasher24};

/// Hashes credentials into cache keys under a key drawn at creation.
pub struct CacheKeyer {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for CacheKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKeyer(<redacted>)")
    }
}

impl CacheKeyer {
    /// A keyer with a fresh random key.
    pub fn new() -> Result<Self, crate::Unspecified> {
        let (mut k0, mut k1) = ([0u8; 8], [0u8; 8]);
        crate::random_bytes(&mut k0)?;
        crate::random_bytes(&mut k1)?;
        Ok(Self {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        })
    }

    /// The cache key of `credential`.
    pub fn key(&self, credential: &[u8]) -> u128 {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        std::hash::Hasher::write(&mut h, credential);
        h.finish128().as_u128()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_credential_same_key_and_keyers_differ() {
        let a = CacheKeyer::new().unwrap();
        let b = CacheKeyer::new().unwrap();
        let t = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
        assert_eq!(a.key(t), a.key(t));
        assert_ne!(
            a.key(t),
            a.key(b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lo")
        );
        // A fresh random key: another process's keys say nothing about ours.
        assert_ne!(a.key(t), b.key(t));
        assert_ne!(a.key(b""), a.key(b"\0"));
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let k = CacheKeyer::new().unwrap();
        assert_eq!(format!("{k:?}"), "CacheKeyer(<redacted>)");
    }
}
