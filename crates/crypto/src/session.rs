//! Binding upstream session ids to the principal that created them.
//!
//! The gateway hands clients `<upstream id>.<tag>`, where the tag is an
//! HMAC-SHA-256 over the principal, the route and the upstream id. A session
//! id presented by anyone else does not verify, so a leaked or guessed id
//! cannot be used to ride another principal's session (MCP security best
//! practices, "Session Hijacking"). No state is kept: replicas that share
//! the key (derived from the master key, see [`SessionBinder::from_mac`])
//! verify each other's ids; a new key ends every session (clients get 404
//! and re-initialise, as the transport specifies).

use crate::Unspecified;
use crate::mac::Mac;

#[derive(Debug)]
pub struct SessionBinder {
    mac: Mac,
}

impl SessionBinder {
    /// A binder with a fresh random key: ids survive neither a restart nor
    /// a move to another replica.
    pub fn random() -> Result<Self, Unspecified> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        crate::random_bytes(k.as_mut())?;
        Ok(Self::from_key(k.as_ref()))
    }

    pub fn from_key(key: &[u8]) -> Self {
        Self::from_mac(Mac::from_key(key))
    }

    /// A binder keyed with `mac`, e.g. one derived from the master key, so
    /// that replicas sharing the master key verify each other's ids and a
    /// restart keeps them valid.
    pub fn from_mac(mac: Mac) -> Self {
        Self { mac }
    }

    fn parts<'a>(owner: &'a str, route: &'a str, upstream_id: &'a str) -> [&'a [u8]; 3] {
        [owner.as_bytes(), route.as_bytes(), upstream_id.as_bytes()]
    }

    /// The id to give the client for an upstream session id.
    pub fn wrap(&self, owner: &str, route: &str, upstream_id: &str) -> String {
        let tag = self.mac.tag(&Self::parts(owner, route, upstream_id));
        format!("{upstream_id}.{tag}")
    }

    /// The upstream id, if `presented` was issued to `owner` on `route`.
    pub fn unwrap<'a>(&self, owner: &str, route: &str, presented: &'a str) -> Option<&'a str> {
        let (id, tag) = presented.rsplit_once('.')?;
        self.mac
            .verify(&Self::parts(owner, route, id), tag)
            .then_some(id)
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
        let w = b.wrap("ab", "c", "x");
        let tag = w.rsplit_once('.').unwrap().1;
        assert_ne!(
            Some(tag),
            b.wrap("a", "bc", "x").rsplit_once('.').map(|(_, t)| t)
        );
    }

    #[test]
    fn replicas_sharing_the_master_key_verify_each_others_ids() {
        let master = [7u8; 32];
        let a = SessionBinder::from_mac(
            crate::master::MasterKey::from_bytes(&master)
                .unwrap()
                .derive_mac("session-binding"),
        );
        let b = SessionBinder::from_mac(
            crate::master::MasterKey::from_bytes(&master)
                .unwrap()
                .derive_mac("session-binding"),
        );
        let w = a.wrap("alice", "/mcp", "up-1");
        assert_eq!(b.unwrap("alice", "/mcp", &w), Some("up-1"));
        // Another master key, or another label, does not.
        let other = SessionBinder::from_mac(
            crate::master::MasterKey::from_bytes(&[8u8; 32])
                .unwrap()
                .derive_mac("session-binding"),
        );
        assert_eq!(other.unwrap("alice", "/mcp", &w), None);
        let label = SessionBinder::from_mac(
            crate::master::MasterKey::from_bytes(&master)
                .unwrap()
                .derive_mac("another-purpose"),
        );
        assert_eq!(label.unwrap("alice", "/mcp", &w), None);
    }
}
