//! The resource identifier of a protected MCP server (RFC 8707 §2, RFC 9728 §3).

use std::fmt;

/// The canonical URI of one protected route: `public_url` + route path,
/// byte-exact. Audience checks compare against it with plain string
/// equality: no case folding, no trailing-slash or port normalisation, so a
/// token for `https://gw/a/mcp` never opens `https://gw/a/mcp/` or `https://gw`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResourceUri(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceUriError {
    #[error("a resource URI must be an absolute http(s) URL: {0}")]
    NotAbsolute(String),
    #[error("a resource URI must not have a fragment")]
    Fragment,
}

impl ResourceUri {
    /// Joins a validated public base URL (no trailing slash) and a route path
    /// (starting with `/`).
    pub fn join(public_url: &str, path: &str) -> Result<Self, ResourceUriError> {
        let s = format!("{public_url}{path}");
        Self::parse(&s)
    }

    pub fn parse(s: &str) -> Result<Self, ResourceUriError> {
        let url = url::Url::parse(s).map_err(|_| ResourceUriError::NotAbsolute(s.to_owned()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ResourceUriError::NotAbsolute(s.to_owned()));
        }
        if url.fragment().is_some() || s.contains('#') {
            return Err(ResourceUriError::Fragment);
        }
        // Keep the caller's spelling: the URI clients were told is the one
        // they will put in `resource`, and the audience must match it exactly.
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceUri({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8707_2_join_is_byte_exact() {
        let r = ResourceUri::join("https://gw.example", "/team/mcp").unwrap();
        assert_eq!(r.as_str(), "https://gw.example/team/mcp");
        assert_ne!(
            r,
            ResourceUri::parse("https://gw.example/team/mcp/").unwrap()
        );
        assert_ne!(
            r,
            ResourceUri::parse("https://GW.example/team/mcp").unwrap()
        );
    }

    #[test]
    fn rfc8707_2_fragment_is_refused() {
        assert_eq!(
            ResourceUri::parse("https://gw.example/mcp#x"),
            Err(ResourceUriError::Fragment)
        );
    }

    #[test]
    fn relative_uri_is_refused() {
        assert!(ResourceUri::parse("/mcp").is_err());
        assert!(ResourceUri::parse("urn:x:y").is_err());
    }
}
