//! Binding upstream session ids to the principal that created them.
//!
//! The gateway hands clients `<upstream id>.<tag>`, where the tag is an
//! HMAC-SHA-256 over the principal, the route and the upstream id. A session
//! id presented by anyone else does not verify, so a leaked or guessed id
//! cannot be used to ride another principal's session (MCP security best
//! practices, "Session Hijacking"). No state is kept: replicas that share
//! the key verify each other's ids, and a restart with a new key ends every
//! session (clients get 404 and re-initialise, as the transport specifies).

use aws_lc_rs::hmac;
use base64::Engine as _;

use crate::Unspecified;

/// Length of the encoded tag (128 bits of the MAC).
const TAG_LEN: usize = 22;

#[derive(Debug)]
pub struct SessionBinder {
    key: hmac::Key,
}

impl SessionBinder {
    /// A binder with a fresh random key.
    pub fn random() -> Result<Self, Unspecified> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        crate::random_bytes(k.as_mut())?;
        Ok(Self::from_key(k.as_ref()))
    }

    pub fn from_key(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    fn tag(&self, owner: &str, route: &str, upstream_id: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [owner, route, upstream_id] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let tag = ctx.sign();
        let mut s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
        s.truncate(TAG_LEN);
        s
    }

    /// The id to give the client for an upstream session id.
    pub fn wrap(&self, owner: &str, route: &str, upstream_id: &str) -> String {
        format!("{upstream_id}.{}", self.tag(owner, route, upstream_id))
    }

    /// The upstream id, if `presented` was issued to `owner` on `route`.
    pub fn unwrap<'a>(&self, owner: &str, route: &str, presented: &'a str) -> Option<&'a str> {
        let (id, tag) = presented.rsplit_once('.')?;
        let expected = self.tag(owner, route, id);
        crate::secret::ct_eq(expected.as_bytes(), tag.as_bytes()).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_verifies_only_for_its_owner_and_route() {
        let b = SessionBinder::random().unwrap();
        let w = b.wrap("alice", "/mcp", "up-123");
        assert!(w.bytes().all(|c| (0x21..=0x7e).contains(&c)));
        assert_eq!(b.unwrap("alice", "/mcp", &w), Some("up-123"));
        assert_eq!(b.unwrap("bob", "/mcp", &w), None);
        assert_eq!(b.unwrap("alice", "/other", &w), None);
        assert_eq!(b.unwrap("alice", "/mcp", "up-123"), None);
        assert_eq!(
            b.unwrap("alice", "/mcp", &w.replace("up-123", "up-124")),
            None
        );
        // Another key (a restart) ends the session.
        assert_eq!(
            SessionBinder::random().unwrap().unwrap("alice", "/mcp", &w),
            None
        );
    }

    #[test]
    fn length_prefixing_prevents_field_shifting() {
        let b = SessionBinder::from_key(b"k");
        assert_ne!(b.tag("ab", "c", "x"), b.tag("a", "bc", "x"));
    }
}
