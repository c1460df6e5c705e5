//! Keyed MACs over several fields: HMAC-SHA-256 with every part
//! length-prefixed, so that no two different part lists give the same
//! input (`["ab", "c"]` and `["a", "bc"]` differ).
//!
//! Used where the server hands a value to a browser or client and must
//! recognise it later without storing it: sealed pending authorization
//! requests, login-session cookies and CSRF tokens.

use aws_lc_rs::hmac;
use base64::Engine as _;

/// Length of an encoded tag: 128 bits of HMAC-SHA-256, base64url.
pub const TAG_LEN: usize = 22;

pub struct Mac {
    key: hmac::Key,
}

impl std::fmt::Debug for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mac(<redacted>)")
    }
}

impl Mac {
    pub fn from_key(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// A key for `label` derived from this one (HMAC of the label).
    pub fn derive(&self, label: &str) -> Mac {
        let k = self.raw(&[label.as_bytes()]);
        Mac::from_key(k.as_ref())
    }

    fn raw(&self, parts: &[&[u8]]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        ctx.sign()
    }

    /// The tag of `parts`, base64url, [`TAG_LEN`] characters.
    pub fn tag(&self, parts: &[&[u8]]) -> String {
        let mut s = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.raw(parts));
        s.truncate(TAG_LEN);
        s
    }

    /// Whether `tag` is the tag of `parts` (constant time).
    pub fn verify(&self, parts: &[&[u8]], tag: &str) -> bool {
        crate::secret::ct_eq(self.tag(parts).as_bytes(), tag.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_binds_every_part_and_its_boundaries() {
        let m = Mac::from_key(b"k");
        let t = m.tag(&[b"ab", b"c"]);
        assert_eq!(t.len(), TAG_LEN);
        assert!(m.verify(&[b"ab", b"c"], &t));
        assert!(!m.verify(&[b"a", b"bc"], &t));
        assert!(!m.verify(&[b"ab", b"d"], &t));
        assert!(!Mac::from_key(b"other").verify(&[b"ab", b"c"], &t));
        assert!(!m.derive("x").verify(&[b"ab", b"c"], &t));
        assert_ne!(m.derive("x").tag(&[b"1"]), m.derive("y").tag(&[b"1"]));
    }
}
