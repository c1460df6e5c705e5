//! The answer: allowed or not, and which policies decided it.

use std::fmt;

/// The outcome of [`Policies::authorize`](crate::Policies::authorize).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The policies that decided, sorted: the `permit`s that matched for an
    /// allow, the `forbid`s that matched (or failed) for a deny; empty for a
    /// deny because nothing permits, and for [`Policies::allow_all`](crate::Policies::allow_all).
    /// An id is the policy's `@id("…")` annotation when it has one, else
    /// `<file>:<line>` of its first line.
    pub policy_ids: Vec<String>,
    /// What went wrong on the way (a policy that failed to evaluate, an
    /// undeclared method, arguments beyond the bounds). For the log; never
    /// for the client.
    pub errors: Vec<String>,
}

impl Decision {
    pub(crate) fn allow_all() -> Self {
        Self {
            allowed: true,
            policy_ids: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn deny(error: String) -> Self {
        Self {
            allowed: false,
            policy_ids: Vec::new(),
            errors: vec![error],
        }
    }
}

/// `allow by a.cedar:3, readers` / `deny by no-writes` /
/// `deny: no policy permits this request`, then one `error: …` line each.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.allowed { "allow" } else { "deny" })?;
        match (self.policy_ids.is_empty(), self.allowed) {
            (false, _) => write!(f, " by {}", self.policy_ids.join(", "))?,
            (true, true) => f.write_str(": no policy set (scopes decide)")?,
            (true, false) if self.errors.is_empty() => {
                f.write_str(": no policy permits this request")?
            }
            (true, false) => {}
        }
        for e in &self.errors {
            write!(f, "\nerror: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_deciding_policies() {
        let d = Decision {
            allowed: false,
            policy_ids: vec!["a.cedar:3".into(), "no-writes".into()],
            errors: vec!["boom".into()],
        };
        assert_eq!(d.to_string(), "deny by a.cedar:3, no-writes\nerror: boom");
        let d = Decision {
            allowed: false,
            policy_ids: vec![],
            errors: vec![],
        };
        assert_eq!(d.to_string(), "deny: no policy permits this request");
        assert_eq!(
            Decision::allow_all().to_string(),
            "allow: no policy set (scopes decide)"
        );
        assert_eq!(Decision::deny("x".into()).to_string(), "deny\nerror: x");
    }
}
