//! `WWW-Authenticate` parsing (RFC 9110 §11.6.1, RFC 6750 §3,
//! RFC 9728 §5.1).
//!
//! The header is attacker-controlled: the parser never panics, keeps going
//! past what it does not understand, and records what a strict reader
//! would refuse (a duplicated parameter, RFC 6750 §3) instead of guessing.

/// One challenge: a scheme and its parameters (names lower-cased, values
/// unquoted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
    pub token68: Option<String>,
    /// Parameter names that appeared more than once (RFC 6750 §3: "MUST
    /// NOT"); the first value is kept.
    pub duplicates: Vec<String>,
}

impl Challenge {
    /// A parameter's value; names compare case-insensitively.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_bearer(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("bearer")
    }
}

/// All challenges of all given header values, in order.
pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    values.into_iter().flat_map(parse).collect()
}

/// The first `Bearer` challenge.
pub fn bearer<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    parse_all(values).into_iter().find(Challenge::is_bearer)
}

/// The challenges of one header value.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip_list_separators();
        if p.at_end() {
            break;
        }
        let Some(scheme) = p.token() else {
            // Not a token where a scheme must start: skip one byte and
            // try again rather than give up on the rest.
            p.i += 1;
            continue;
        };
        let mut ch = Challenge {
            scheme,
            ..Challenge::default()
        };
        p.params(&mut ch);
        out.push(ch);
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn skip_list_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> String {
        // At the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Parameters (or a token68) after a scheme, up to the next challenge.
    fn params(&mut self, ch: &mut Challenge) {
        if let Some((start, end, next)) = self.token68_ahead() {
            ch.token68 = Some(String::from_utf8_lossy(&self.s[start..end]).into_owned());
            self.i = next;
            return;
        }
        let mut first = true;
        loop {
            let save = self.i;
            self.skip_ws();
            if !first {
                // Parameters are comma-separated; a token after the comma
                // that is not followed by `=` starts the next challenge.
                if self.peek() != Some(b',') {
                    self.i = save;
                    return;
                }
                self.skip_list_separators();
            }
            let name_start = self.i;
            let Some(name) = self.token() else {
                return;
            };
            self.skip_ws();
            if self.peek() != Some(b'=') {
                self.i = name_start;
                return;
            }
            self.i += 1;
            self.skip_ws();
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                self.token().unwrap_or_default()
            };
            let name = name.to_ascii_lowercase();
            if ch.params.iter().any(|(k, _)| *k == name) {
                if !ch.duplicates.contains(&name) {
                    ch.duplicates.push(name);
                }
            } else {
                ch.params.push((name, value));
            }
            first = false;
        }
    }

    /// A token68 (`abc+/==`) alone up to the end or a comma: its start, its
    /// end and where parsing resumes.
    fn token68_ahead(&self) -> Option<(usize, usize, usize)> {
        let mut j = self.i;
        while matches!(self.s.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        let start = j;
        while self.s.get(j).copied().is_some_and(is_token68_char) {
            j += 1;
        }
        if j == start {
            return None;
        }
        while self.s.get(j) == Some(&b'=') {
            j += 1;
        }
        let end = j;
        while matches!(self.s.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        matches!(self.s.get(j), None | Some(b',')).then_some((start, end, j))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rfc9728_5_1_bearer_with_resource_metadata_and_scope() {
        let c = parse(
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource", scope="files:read""#,
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(
            c[0].param("resource_metadata"),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource")
        );
        assert_eq!(c[0].param("SCOPE"), Some("files:read"));
    }

    #[test]
    fn rfc9110_11_6_1_several_challenges_in_one_value() {
        let c = parse(
            r#"Basic realm="a, b", Bearer error="invalid_token", scope=mcp, DPoP algs="ES256""#,
        );
        let schemes: Vec<_> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "DPoP"]);
        assert_eq!(c[0].param("realm"), Some("a, b"));
        assert_eq!(c[1].param("error"), Some("invalid_token"));
        assert_eq!(c[1].param("scope"), Some("mcp"));
        assert_eq!(c[2].param("algs"), Some("ES256"));
    }

    #[test]
    fn rfc9110_11_6_1_token68_and_bare_scheme() {
        let c = parse("Negotiate abc+/==, Bearer");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].token68.as_deref(), Some("abc+/=="));
        assert!(c[1].is_bearer());
        assert!(c[1].params.is_empty());
    }

    #[test]
    fn rfc6750_3_duplicate_parameter_is_recorded() {
        let c = bearer([r#"Bearer scope="a", scope="b""#]).unwrap();
        assert_eq!(c.param("scope"), Some("a"));
        assert_eq!(c.duplicates, ["scope"]);
    }

    #[test]
    fn quoted_string_escapes() {
        let c = parse(r#"Bearer error_description="say \"hi\" \\ ok""#);
        assert_eq!(c[0].param("error_description"), Some(r#"say "hi" \ ok"#));
    }

    #[test]
    fn bearer_found_across_header_values() {
        let c = bearer(["Basic realm=x", "Bearer realm=y"]).unwrap();
        assert_eq!(c.param("realm"), Some("y"));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn generated_params_round_trip(
            params in proptest::collection::btree_map("[a-z_]{1,12}", "[ -~]{0,20}", 0..6)
        ) {
            let mut h = String::from("Bearer");
            for (i, (k, v)) in params.iter().enumerate() {
                h.push_str(if i == 0 { " " } else { ", " });
                h.push_str(k);
                h.push_str("=\"");
                for c in v.chars() {
                    if c == '"' || c == '\\' { h.push('\\'); }
                    h.push(c);
                }
                h.push('"');
            }
            let c = bearer([h.as_str()]).unwrap();
            for (k, v) in &params {
                prop_assert_eq!(c.param(k), Some(v.as_str()));
            }
        }
    }
}
