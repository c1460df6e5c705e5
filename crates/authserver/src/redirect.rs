//! Redirect URIs: what may be registered, and whether a presented one
//! matches a registered one.
//!
//! Matching is exact string comparison (OAuth 2.1 §4.1.1, RFC 9700 §4.1.3),
//! with one exception from RFC 8252 §7.3: for a registered loopback URI
//! (`http://127.0.0.1`, `http://[::1]`, `http://localhost`), the port may
//! differ, because native clients listen on an ephemeral port. Nothing
//! else is normalised: case, default ports, dot segments, percent-encoding
//! and trailing slashes all make a different URI.

/// Longest redirect URI accepted anywhere.
pub const MAX_LEN: usize = 2000;

/// Why a URI may not be registered as a redirect URI.
pub fn check_registrable(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_LEN {
        return Err("redirect URI too long");
    }
    if uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("redirect URI contains whitespace or control characters");
    }
    if uri.contains('#') {
        return Err("redirect URI must not contain a fragment");
    }
    if uri.contains('*') {
        return Err("redirect URI must not contain wildcards");
    }
    let u = url::Url::parse(uri).map_err(|_| "redirect URI is not an absolute URI")?;
    // The parsed form must be the string itself, or exact matching would
    // compare against something the browser does not use.
    let normal = u.as_str() == uri
        || (u.path() == "/" && u.query().is_none() && u.as_str().strip_suffix('/') == Some(uri));
    if !normal {
        return Err("redirect URI is not in normalised form");
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("redirect URI must not contain user information");
    }
    match u.scheme() {
        "https" => {
            if u.host_str().is_none_or(str::is_empty) {
                return Err("redirect URI has no host");
            }
            Ok(())
        }
        "http" if loopback_parts(uri).is_some() => Ok(()),
        "http" => Err(
            "http redirect URIs are allowed only on a loopback host (127.0.0.1, [::1] or localhost)",
        ),
        _ => Err("redirect URI must be https, or http on a loopback host"),
    }
}

/// `(host, port, rest)` of an `http` loopback URI: the text after the
/// authority, the literal host and port. `None` if not loopback http.
fn loopback_parts(uri: &str) -> Option<(&str, Option<&str>, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        let (h, after) = h.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (h, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if !matches!(host, "127.0.0.1" | "::1" | "localhost") {
        return None;
    }
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 5)
    {
        return None;
    }
    Some((host, port, tail))
}

/// Whether `presented` may be used for a client that registered
/// `registered`.
pub fn matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    match (loopback_parts(registered), loopback_parts(presented)) {
        (Some((h1, _, t1)), Some((h2, _, t2))) => h1 == h2 && t1 == t2,
        _ => false,
    }
}

/// Whether the URI sends the browser to this machine (a warning on the
/// consent page: any local program could be listening there).
pub fn is_localhost(uri: &str) -> bool {
    url::Url::parse(uri).ok().is_some_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9700_4_1_3_exact_match_only() {
        let r = "https://app.example.com/cb";
        assert!(matches(r, r));
        for near in [
            "https://APP.example.com/cb",
            "https://app.example.com:443/cb",
            "https://app.example.com/cb/",
            "https://app.example.com/./cb",
            "https://app.example.com/x/../cb",
            "https://app.example.com/%63b",
            "https://app.example.com/cb?x=1",
            "https://app.example.com/cb#f",
            "https://app.example.com@evil.example/cb",
            "https://app.example.com.evil.example/cb",
            "http://app.example.com/cb",
        ] {
            assert!(!matches(r, near), "{near}");
        }
    }

    #[test]
    fn rfc8252_7_3_loopback_may_differ_only_in_port() {
        let r = "http://127.0.0.1:3000/callback";
        assert!(matches(r, "http://127.0.0.1:51234/callback"));
        assert!(matches(r, "http://127.0.0.1/callback"));
        assert!(matches("http://[::1]/cb", "http://[::1]:8080/cb"));
        assert!(matches("http://localhost/cb", "http://localhost:9/cb"));
        assert!(!matches(r, "http://127.0.0.1:3000/callback2"));
        assert!(!matches(r, "http://localhost:3000/callback"));
        assert!(!matches(r, "http://127.0.0.2:3000/callback"));
        assert!(!matches(r, "http://127.0.0.1:3000@evil.example/callback"));
        assert!(!matches(r, "http://127.0.0.1:30x0/callback"));
        assert!(!matches(r, "https://127.0.0.1:3000/callback"));
        assert!(!matches("https://h/cb", "https://h:8443/cb"));
    }

    #[test]
    fn rfc7591_2_registrable_redirect_uris() {
        for ok in [
            "https://claude.ai/api/mcp/auth_callback",
            "http://127.0.0.1:3000/callback",
            "http://localhost:33418",
            "http://[::1]/cb",
            "https://vscode.dev/redirect",
        ] {
            assert_eq!(check_registrable(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.com/cb",
            "https://example.com/cb#x",
            "https://*.example.com/cb",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "/relative",
            "https://user:pw@example.com/cb",
            "https://example.com/c b",
            "http://127.0.0.1.evil.example/cb",
            "http://localhost.evil.example/cb",
        ] {
            assert!(check_registrable(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn localhost_redirects_are_recognised() {
        assert!(is_localhost("http://127.0.0.1:3000/cb"));
        assert!(is_localhost("http://localhost/cb"));
        assert!(is_localhost("http://[::1]/cb"));
        assert!(!is_localhost("https://claude.ai/cb"));
    }
}
