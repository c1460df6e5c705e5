//! Where an MCP client looks for metadata, in the specification's order,
//! and how it judges the transport of a URL.
//!
//! * Protected Resource Metadata: the URL in `resource_metadata`, else the
//!   path-inserted well-known URI (RFC 9728 §3.1), else the root one (MCP
//!   "Protected Resource Metadata Discovery Requirements").
//! * Authorization server metadata: RFC 8414 path-inserted, OpenID Connect
//!   path-inserted, OpenID Connect path-appended; for an issuer without a
//!   path, `oauth-authorization-server` then `openid-configuration` (MCP
//!   "Authorization Server Metadata Discovery").

use std::net::IpAddr;

use url::Url;

pub const PRM_WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";
pub const OAUTH_WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
pub const OIDC_WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// Where a PRM document was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrmSource {
    /// The `resource_metadata` parameter of the 401 challenge.
    Challenge,
    /// `/.well-known/oauth-protected-resource/<path>`.
    PathInserted,
    /// `/.well-known/oauth-protected-resource`.
    Root,
}

impl PrmSource {
    pub fn describe(self) -> &'static str {
        match self {
            PrmSource::Challenge => "the URL in the challenge's resource_metadata",
            PrmSource::PathInserted => "the path-inserted well-known URI",
            PrmSource::Root => "the root well-known URI",
        }
    }
}

/// The well-known PRM URLs for a server URL, in the order clients try them
/// when the challenge names none. A server at the root has only one.
pub fn prm_well_known(server: &Url) -> Vec<(PrmSource, String)> {
    let origin = server.origin().ascii_serialization();
    let path = server.path().trim_end_matches('/');
    let query = server.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut out = Vec::new();
    if !path.is_empty() || !query.is_empty() {
        out.push((
            PrmSource::PathInserted,
            format!("{origin}{PRM_WELL_KNOWN}{path}{query}"),
        ));
    }
    out.push((PrmSource::Root, format!("{origin}{PRM_WELL_KNOWN}")));
    out
}

/// Which kind of authorization server metadata a URL serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsMetadataKind {
    /// RFC 8414 (`oauth-authorization-server`).
    OAuth,
    /// OpenID Connect Discovery 1.0 (`openid-configuration`).
    OpenId,
}

/// The authorization server metadata URLs for an issuer, in order, each
/// with a description.
pub fn as_metadata_urls(issuer: &Url) -> Vec<(AsMetadataKind, &'static str, String)> {
    let origin = issuer.origin().ascii_serialization();
    let path = issuer.path().trim_end_matches('/');
    if path.is_empty() {
        vec![
            (
                AsMetadataKind::OAuth,
                "RFC 8414",
                format!("{origin}{OAUTH_WELL_KNOWN}"),
            ),
            (
                AsMetadataKind::OpenId,
                "OpenID Connect discovery",
                format!("{origin}{OIDC_WELL_KNOWN}"),
            ),
        ]
    } else {
        vec![
            (
                AsMetadataKind::OAuth,
                "RFC 8414, path inserted",
                format!("{origin}{OAUTH_WELL_KNOWN}{path}"),
            ),
            (
                AsMetadataKind::OpenId,
                "OpenID Connect discovery, path inserted",
                format!("{origin}{OIDC_WELL_KNOWN}{path}"),
            ),
            (
                AsMetadataKind::OpenId,
                "OpenID Connect discovery, path appended",
                format!("{origin}{path}{OIDC_WELL_KNOWN}"),
            ),
        ]
    }
}

/// How a URL is transported, for "MUST be https" requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Https,
    /// Plain http to a loopback host: a development set-up.
    LoopbackHttp,
    /// Plain http elsewhere, or another scheme.
    Insecure,
}

pub fn transport(url: &Url) -> Transport {
    match url.scheme() {
        "https" => Transport::Https,
        "http" if is_loopback(url) => Transport::LoopbackHttp,
        _ => Transport::Insecure,
    }
}

/// `localhost`, 127.0.0.0/8 or ::1 (RFC 8252 §7.3, RFC 6761 §6.3).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
        None => false,
    }
}

/// A host that is `localhost` or an IP literal in a loopback, private,
/// link-local, shared, unique-local or unspecified range (IPv4-mapped IPv6
/// included). Names are not resolved: a public name that resolves to a
/// private address is not caught.
pub fn is_private_address(url: &Url) -> bool {
    fn v4(a: std::net::Ipv4Addr) -> bool {
        let o = a.octets();
        a.is_loopback()
            || a.is_private()
            || a.is_link_local()
            || a.is_unspecified()
            || a.is_broadcast()
            // 100.64.0.0/10, carrier-grade NAT (RFC 6598).
            || (o[0] == 100 && (o[1] & 0xc0) == 64)
    }
    match url.host() {
        Some(url::Host::Domain(_)) => is_loopback(url),
        Some(url::Host::Ipv4(a)) => v4(a),
        Some(url::Host::Ipv6(a)) => {
            let seg0 = a.segments()[0];
            a.is_loopback()
                || a.is_unspecified()
                || (seg0 & 0xfe00) == 0xfc00
                || (seg0 & 0xffc0) == 0xfe80
                || a.to_ipv4_mapped().is_some_and(v4)
        }
        None => false,
    }
}

/// How two resource identifiers differ when they are not identical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Only a trailing `/`.
    TrailingSlash,
    /// Only letter case.
    Case,
    /// Trailing `/` and case.
    TrailingSlashAndCase,
    Other,
}

/// `None` when `a` and `b` are identical (RFC 3986 §6.2.1 simple string
/// comparison, which is what RFC 9728 §3.3 and RFC 8414 §3.3 ask for).
pub fn compare(a: &str, b: &str) -> Option<Mismatch> {
    if a == b {
        return None;
    }
    let (ta, tb) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    Some(if ta == tb {
        Mismatch::TrailingSlash
    } else if a.eq_ignore_ascii_case(b) {
        Mismatch::Case
    } else if ta.eq_ignore_ascii_case(tb) {
        Mismatch::TrailingSlashAndCase
    } else {
        Mismatch::Other
    })
}

impl Mismatch {
    pub fn describe(self) -> &'static str {
        match self {
            Mismatch::TrailingSlash => "they differ only by a trailing slash",
            Mismatch::Case => "they differ only in letter case",
            Mismatch::TrailingSlashAndCase => "they differ by a trailing slash and letter case",
            Mismatch::Other => "they differ",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn rfc9728_3_1_path_inserted_then_root() {
        assert_eq!(
            prm_well_known(&u("https://example.com/public/mcp")),
            vec![
                (
                    PrmSource::PathInserted,
                    "https://example.com/.well-known/oauth-protected-resource/public/mcp".into()
                ),
                (
                    PrmSource::Root,
                    "https://example.com/.well-known/oauth-protected-resource".into()
                ),
            ]
        );
        assert_eq!(
            prm_well_known(&u("https://example.com/")),
            vec![(
                PrmSource::Root,
                "https://example.com/.well-known/oauth-protected-resource".into()
            )]
        );
    }

    #[test]
    fn mcp_as_metadata_discovery_order_with_path() {
        let urls: Vec<_> = as_metadata_urls(&u("https://auth.example.com/tenant1"))
            .into_iter()
            .map(|(_, _, u)| u)
            .collect();
        assert_eq!(
            urls,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn mcp_as_metadata_discovery_order_without_path() {
        let urls: Vec<_> = as_metadata_urls(&u("https://auth.example.com"))
            .into_iter()
            .map(|(_, _, u)| u)
            .collect();
        assert_eq!(
            urls,
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback(&u("http://127.0.0.1:8080/mcp")));
        assert!(is_loopback(&u("http://127.1.2.3/")));
        assert!(is_loopback(&u("http://[::1]:3000/")));
        assert!(is_loopback(&u("http://localhost/")));
        assert!(!is_loopback(&u("http://10.0.0.1/")));
        assert!(!is_loopback(&u("http://localhost.example.com/")));
        assert_eq!(transport(&u("http://127.0.0.1/")), Transport::LoopbackHttp);
        assert_eq!(transport(&u("http://example.com/")), Transport::Insecure);
        assert_eq!(transport(&u("https://example.com/")), Transport::Https);
    }

    #[test]
    fn private_addresses() {
        for p in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:192.168.0.1]/",
            "http://localhost:8080/",
        ] {
            assert!(is_private_address(&u(p)), "{p}");
        }
        for p in [
            "https://93.184.216.34/",
            "https://example.com/",
            "https://[2001:db8::1]/",
        ] {
            assert!(!is_private_address(&u(p)), "{p}");
        }
    }

    #[test]
    fn rfc3986_6_2_1_mismatch_kinds() {
        assert_eq!(compare("https://a/mcp", "https://a/mcp"), None);
        assert_eq!(
            compare("https://a/mcp", "https://a/mcp/"),
            Some(Mismatch::TrailingSlash)
        );
        assert_eq!(
            compare("https://a/mcp", "https://A/MCP"),
            Some(Mismatch::Case)
        );
        assert_eq!(
            compare("https://a/mcp", "https://A/mcp/"),
            Some(Mismatch::TrailingSlashAndCase)
        );
        assert_eq!(
            compare("https://a/mcp", "https://b/mcp"),
            Some(Mismatch::Other)
        );
    }
}
