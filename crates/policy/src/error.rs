//! What can go wrong loading a policy set, located for a person to fix.

use std::fmt;
use std::path::PathBuf;

/// Why a policy set was refused. The previous set stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file or directory holds no policy. An empty Cedar set denies
    /// everything, which is never what an empty file means; a set that is
    /// meant to deny everything says so with a `forbid`.
    #[error(
        "{source_name}: no policies (write `forbid (principal, action, resource);` to deny everything)"
    )]
    Empty { source_name: String },
    /// The text is not Cedar.
    #[error("{}", Problems(.0))]
    Syntax(Vec<Problem>),
    /// The policies are Cedar but do not fit the schema (or use what this
    /// gateway does not support: templates, a policy id used twice).
    #[error("{}", Problems(.0))]
    Invalid(Vec<Problem>),
    /// The built-in schema did not compile: a bug in this crate, caught by
    /// its tests.
    #[error("the built-in MCP schema does not compile: {0}")]
    Schema(String),
}

impl PolicyError {
    /// The located problems, for `Syntax` and `Invalid`; empty otherwise.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Syntax(p) | Self::Invalid(p) => p,
            _ => &[],
        }
    }
}

/// One problem in one policy file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    /// The file as given (its path), or the `source_name` of
    /// [`Policies::parse`](crate::Policies::parse).
    pub source_name: String,
    /// 1-based line; 0 when Cedar gave no location.
    pub line: usize,
    /// 1-based column, in characters; 0 when Cedar gave no location.
    pub column: usize,
    /// Cedar's message (parser or validator), unchanged.
    pub message: String,
    /// Cedar's hint, when it has one (`did you mean ...`).
    pub help: Option<String>,
}

impl Problem {
    pub(crate) fn at(
        source_name: &str,
        text: &str,
        offset: Option<usize>,
        message: String,
    ) -> Self {
        let (line, column) = offset.map_or((0, 0), |o| line_column(text, o));
        Self {
            source_name: source_name.to_owned(),
            line,
            column,
            message,
            help: None,
        }
    }

    pub(crate) fn from_diagnostic(
        source_name: &str,
        text: &str,
        d: &(impl miette::Diagnostic + fmt::Display + ?Sized),
    ) -> Self {
        let offset = d.labels().and_then(|mut l| l.next()).map(|l| l.offset());
        let mut p = Self::at(source_name, text, offset, d.to_string());
        p.help = d.help().map(|h| h.to_string());
        p
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: ", self.source_name, self.line, self.column)?;
        } else {
            write!(f, "{}: ", self.source_name)?;
        }
        f.write_str(&self.message)?;
        if let Some(h) = &self.help {
            write!(f, " (help: {h})")?;
        }
        Ok(())
    }
}

/// Problems one per line.
struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab\ncd", 99), (2, 3));
        assert_eq!(line_column("é\nx", 1), (1, 1));
    }
}
