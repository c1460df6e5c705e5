//! OAuth scopes (RFC 6749 §3.3).

use std::collections::BTreeSet;
use std::fmt;

/// One scope token: `1*( %x21 / %x23-5B / %x5D-7E )`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    #[error("empty scope")]
    Empty,
    #[error("scope {0:?} contains a character RFC 6749 §3.3 does not allow")]
    BadChar(String),
}

impl Scope {
    pub fn new(s: &str) -> Result<Self, ScopeError> {
        if s.is_empty() {
            return Err(ScopeError::Empty);
        }
        let ok = s
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !ok {
            return Err(ScopeError::BadChar(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Scope::new(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A set of scopes, ordered so that its space-joined form is deterministic.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the space-delimited form (`scope` claim, `scope` parameter).
    /// Repeated spaces are tolerated; any invalid token fails the whole set.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        s.split(' ')
            .filter(|t| !t.is_empty())
            .map(Scope::new)
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    pub fn insert(&mut self, s: Scope) {
        self.0.insert(s);
    }

    pub fn contains(&self, s: &Scope) -> bool {
        self.0.contains(s)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn extend<'a>(&mut self, other: impl IntoIterator<Item = &'a Scope>) {
        self.0.extend(other.into_iter().cloned());
    }

    /// Scopes of `required` not in `self`.
    pub fn missing<'a>(&self, required: &'a ScopeSet) -> Vec<&'a Scope> {
        required.0.iter().filter(|s| !self.0.contains(*s)).collect()
    }

    /// The space-joined form.
    pub fn to_space_delimited(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(s.as_str());
        }
        out
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl<'de> serde::Deserialize<'de> for ScopeSet {
    /// Accepts an array of scopes (configuration) or a space-delimited string.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ScopeSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of scopes or a space-delimited string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ScopeSet, E> {
                ScopeSet::parse(s).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ScopeSet, A::Error> {
                let mut set = ScopeSet::new();
                while let Some(s) = a.next_element::<Scope>()? {
                    set.insert(s);
                }
                Ok(set)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_3_3_scope_token_charset() {
        assert!(Scope::new("files:read").is_ok());
        assert_eq!(Scope::new(""), Err(ScopeError::Empty));
        assert!(Scope::new("a\"b").is_err());
        assert!(Scope::new("a\\b").is_err());
        assert!(Scope::new("a b").is_err());
        assert!(Scope::new("é").is_err());
    }

    #[test]
    fn rfc6749_3_3_space_delimited_round_trip() {
        let s = ScopeSet::parse("write  read read").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.to_space_delimited(), "read write");
    }

    #[test]
    fn missing_lists_only_absent_scopes() {
        let held = ScopeSet::parse("a b").unwrap();
        let need = ScopeSet::parse("b c d").unwrap();
        let miss: Vec<_> = held.missing(&need).iter().map(|s| s.as_str()).collect();
        assert_eq!(miss, vec!["c", "d"]);
    }
}
