//! What the probe found: one [`Check`] per requirement, the client
//! compatibility derived from them, the human report ([`Display`]) and the
//! JSON document (`Serialize`).

use std::fmt;

use serde::Serialize;
use serde::ser::SerializeStruct as _;

use super::checks::{self, Spec};

/// How strongly the specification asks for something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Must,
    Should,
    /// An observation or an interoperability hazard, not a requirement.
    Info,
}

/// What the probe concluded about one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// A MUST is not met.
    Violated,
    /// A SHOULD is not met.
    Missed,
    /// Allowed, but worth knowing (plain http on loopback, a hazard).
    Warning,
    /// Not checked, and why is in the message.
    Skipped,
}

/// One requirement and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier, e.g. `prm.resource_matches`.
    pub id: &'static str,
    pub level: Level,
    pub verdict: Verdict,
    pub message: String,
    /// The offending URL or field, or what was observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Where the requirement comes from, e.g. "RFC 9728 §3.3".
    pub spec: &'static str,
}

impl Check {
    /// A check with the level and clause the catalog gives `id`.
    pub(crate) fn new(id: &'static str, verdict: Verdict, message: impl Into<String>) -> Self {
        let Spec { level, spec, .. } = checks::spec(id);
        Self {
            id,
            level,
            verdict,
            message: message.into(),
            evidence: None,
            spec,
        }
    }

    pub(crate) fn evidence(mut self, e: impl Into<String>) -> Self {
        self.evidence = Some(e.into());
        self
    }
}

/// Whether a client can connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compat {
    Yes,
    Maybe,
    No,
}

/// One common client and whether the checks say it can connect.
#[derive(Debug, Clone, Serialize)]
pub struct ClientCompat {
    pub client: &'static str,
    pub verdict: Compat,
    pub reason: String,
}

/// The probe's findings for one MCP server URL.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: String,
    pub checks: Vec<Check>,
    pub clients: Vec<ClientCompat>,
}

impl Report {
    pub(crate) fn new(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            checks: Vec::new(),
            clients: Vec::new(),
        }
    }

    /// The check with this id, if it was reported.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// A MUST is violated.
    pub fn failed(&self) -> bool {
        self.checks
            .iter()
            .any(|c| c.level == Level::Must && c.verdict == Verdict::Violated)
    }

    /// The process exit status: 1 when a MUST is violated, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.failed())
    }

    fn count(&self, f: impl Fn(&Check) -> bool) -> usize {
        self.checks.iter().filter(|c| f(c)).count()
    }

    fn must_violated(&self) -> usize {
        self.count(|c| c.level == Level::Must && c.verdict == Verdict::Violated)
    }

    fn should_missed(&self) -> usize {
        self.count(|c| c.verdict == Verdict::Missed)
    }

    fn warnings(&self) -> usize {
        self.count(|c| c.verdict == Verdict::Warning)
    }

    fn summary_line(&self) -> String {
        let (m, s, w) = (self.must_violated(), self.should_missed(), self.warnings());
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        format!(
            "{}, {}, {}",
            if m == 0 {
                "no MUST violated".to_owned()
            } else {
                plural(m, "MUST violated", "MUSTs violated")
            },
            plural(s, "SHOULD missed", "SHOULDs missed"),
            plural(w, "warning", "warnings"),
        )
    }
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Summary {
            must_violated: usize,
            should_missed: usize,
            warnings: usize,
        }
        let mut st = s.serialize_struct("Report", 6)?;
        st.serialize_field("target", &self.target)?;
        st.serialize_field("ok", &!self.failed())?;
        st.serialize_field("exit_code", &self.exit_code())?;
        st.serialize_field(
            "summary",
            &Summary {
                must_violated: self.must_violated(),
                should_missed: self.should_missed(),
                warnings: self.warnings(),
            },
        )?;
        st.serialize_field("checks", &self.checks)?;
        st.serialize_field("clients", &self.clients)?;
        st.end()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::Info => "info",
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Violated => "VIOLATED",
            Verdict::Missed => "missed",
            Verdict::Warning => "warning",
            Verdict::Skipped => "skipped",
        })
    }
}

impl fmt::Display for Compat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compat::Yes => "yes",
            Compat::Maybe => "maybe",
            Compat::No => "no",
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mcpgate probe {}", self.target)?;
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut section = "";
        for c in &self.checks {
            let s = checks::section(c.id);
            if s != section {
                section = s;
                writeln!(f, "\n{s}")?;
            }
            // Pad outside the Display impls: `{:<9}` on a type whose
            // Display ignores the formatter's width would not pad.
            let verdict = c.verdict.to_string();
            let level = c.level.to_string();
            writeln!(
                f,
                "  {verdict:<9} {level:<6} {:<width$}  {}",
                c.id, c.message
            )?;
            let indent = 2 + 9 + 1 + 6 + 1 + width + 2;
            if let Some(e) = &c.evidence {
                writeln!(f, "{:indent$}evidence: {e}", "")?;
            }
            if c.verdict != Verdict::Ok && c.verdict != Verdict::Skipped {
                writeln!(f, "{:indent$}see: {}", "", c.spec)?;
            }
        }
        if !self.clients.is_empty() {
            writeln!(f, "\nWhich clients can connect")?;
            let w = self
                .clients
                .iter()
                .map(|c| c.client.len())
                .max()
                .unwrap_or(0);
            for c in &self.clients {
                let v = c.verdict.to_string();
                writeln!(f, "  {v:<6} {:<w$}  {}", c.client, c.reason)?;
            }
        }
        writeln!(f, "\nResult: {}.", self.summary_line())?;
        if self.failed() {
            write!(
                f,
                "A MUST of the MCP authorization specification is violated: MCP clients will fail against this server."
            )?;
        } else {
            write!(
                f,
                "No MUST of the MCP authorization specification is violated."
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_must_violations_only() {
        let mut r = Report::new("https://x/mcp");
        r.checks
            .push(Check::new("as.cimd", Verdict::Missed, "no CIMD"));
        r.checks.push(Check::new(
            "target.https",
            Verdict::Warning,
            "http on loopback",
        ));
        assert_eq!(r.exit_code(), 0);
        r.checks
            .push(Check::new("as.pkce_s256", Verdict::Violated, "no S256"));
        assert_eq!(r.exit_code(), 1);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["summary"]["must_violated"], 1);
        assert_eq!(v["checks"][2]["level"], "must");
        assert_eq!(v["checks"][2]["verdict"], "violated");
        assert!(r.to_string().contains("as.pkce_s256"));
    }
}
