//! MCP transport vocabulary: protocol versions, eras and the request
//! metadata headers of the 2026-07-28 Streamable HTTP transport (SEP-2243).

use base64::Engine as _;

use crate::jsonrpc::Message;

pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
pub const HEADER_METHOD: &str = "mcp-method";
pub const HEADER_NAME: &str = "mcp-name";
pub const HEADER_LAST_EVENT_ID: &str = "last-event-id";

/// The stateless revision (no `initialize`, no sessions, POST only).
pub const MODERN_VERSION: &str = "2026-07-28";
/// Revisions with the `initialize` handshake, newest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The version a server assumes when a request names none (2025-11-25
/// transports, "Protocol Version Header").
pub const ASSUMED_VERSION: &str = "2025-03-26";

/// The two protocol eras a gateway must proxy faithfully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// `initialize` handshake, `Mcp-Session-Id`, GET streams (≤ 2025-11-25).
    Legacy,
    /// Per-request `_meta`, routing headers, POST only (2026-07-28).
    Modern,
}

impl Era {
    /// The era of a protocol version string. Unknown versions compare by
    /// date: anything from 2026-07-28 on is modern.
    pub fn of_version(v: &str) -> Era {
        if v >= MODERN_VERSION {
            Era::Modern
        } else {
            Era::Legacy
        }
    }
}

/// Whether a protocol version still allows JSON-RPC batches (they existed
/// only in 2025-03-26; a request without the header is assumed to be that).
pub fn allows_batches(version: Option<&str>) -> bool {
    version.is_none_or(|v| v == ASSUMED_VERSION)
}

/// A request-metadata header that disagrees with the body (HTTP 400 with
/// JSON-RPC `-32020`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderMismatch {
    #[error("header {0} is required for this request")]
    Missing(&'static str),
    #[error("header {0} does not match the request body")]
    Mismatch(&'static str),
    #[error("header {0} has an invalid value")]
    Invalid(&'static str),
}

/// Decodes a header value: trims optional whitespace (RFC 9110 §5.5) and
/// unwraps the `=?base64?…?=` form. Returns `None` for values that are not
/// valid visible ASCII or whose base64 does not decode to UTF-8.
pub fn decode_header_value(raw: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?;
    if !s
        .bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b))
    {
        return None;
    }
    let s = s.trim_matches([' ', '\t']);
    match s
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(s.to_owned()),
    }
}

/// The body value `Mcp-Name` mirrors for a method, if it has one.
pub fn name_param(msg: &Message) -> Option<&str> {
    match msg.method()? {
        "tools/call" | "prompts/get" => msg.param_str("name"),
        "resources/read" => msg.param_str("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => msg.param_str("taskId"),
        _ => None,
    }
}

/// The raw request-metadata headers of one POST (absent = `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct MetadataHeaders<'a> {
    pub protocol_version: Option<&'a [u8]>,
    pub method: Option<&'a [u8]>,
    pub name: Option<&'a [u8]>,
}

/// Checks the 2026-07-28 request-metadata headers against the parsed body:
/// a present header must equal the body's value after decoding, and in the
/// modern era the headers the transport requires must be present. The
/// gateway decides on the body, never on the headers, so this only exists to
/// refuse requests an upstream might read differently.
pub fn check_metadata_headers(h: MetadataHeaders<'_>, msg: &Message) -> Result<(), HeaderMismatch> {
    let decode = |raw: &[u8], name: &'static str| {
        decode_header_value(raw).ok_or(HeaderMismatch::Invalid(name))
    };
    let header_version = match h.protocol_version {
        Some(raw) => Some(decode(raw, "MCP-Protocol-Version")?),
        None => None,
    };
    let body_version = msg.meta_protocol_version();
    if let (Some(hv), Some(bv)) = (&header_version, body_version)
        && hv != bv
    {
        return Err(HeaderMismatch::Mismatch("MCP-Protocol-Version"));
    }
    let modern = header_version
        .as_deref()
        .or(body_version)
        .is_some_and(|v| Era::of_version(v) == Era::Modern);
    if modern && header_version.is_none() {
        return Err(HeaderMismatch::Missing("MCP-Protocol-Version"));
    }

    let is_request = matches!(msg, Message::Request { .. });
    match (h.method, msg.method()) {
        (Some(raw), Some(body)) if decode(raw, "Mcp-Method")? != body => {
            return Err(HeaderMismatch::Mismatch("Mcp-Method"));
        }
        (Some(_), Some(_)) => {}
        (Some(_), None) => return Err(HeaderMismatch::Mismatch("Mcp-Method")),
        (None, Some(_)) if modern && is_request => {
            return Err(HeaderMismatch::Missing("Mcp-Method"));
        }
        _ => {}
    }

    match (h.name, name_param(msg)) {
        (Some(raw), Some(body)) if decode(raw, "Mcp-Name")? != body => {
            return Err(HeaderMismatch::Mismatch("Mcp-Name"));
        }
        (Some(_), Some(_)) => {}
        (Some(_), None) => return Err(HeaderMismatch::Mismatch("Mcp-Name")),
        (None, Some(_)) if modern => return Err(HeaderMismatch::Missing("Mcp-Name")),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{Body, parse};

    fn msg(s: &str) -> Message {
        match parse(s.as_bytes(), 64).unwrap() {
            Body::Single(m) => m,
            Body::Batch(_) => panic!("batch"),
        }
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_all","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

    fn modern<'a>(method: &'a [u8], name: Option<&'a [u8]>) -> MetadataHeaders<'a> {
        MetadataHeaders {
            protocol_version: Some(b"2026-07-28"),
            method: Some(method),
            name,
        }
    }

    #[test]
    fn sep2243_matching_headers_pass() {
        assert_eq!(
            check_metadata_headers(modern(b"tools/call", Some(b"delete_all")), &msg(CALL)),
            Ok(())
        );
    }

    #[test]
    fn sep2243_name_mismatch_is_rejected() {
        assert_eq!(
            check_metadata_headers(modern(b"tools/call", Some(b"harmless")), &msg(CALL)),
            Err(HeaderMismatch::Mismatch("Mcp-Name"))
        );
    }

    #[test]
    fn sep2243_method_mismatch_is_rejected() {
        assert_eq!(
            check_metadata_headers(modern(b"tools/list", Some(b"delete_all")), &msg(CALL)),
            Err(HeaderMismatch::Mismatch("Mcp-Method"))
        );
    }

    #[test]
    fn sep2243_base64_name_is_decoded_before_comparing() {
        // base64("delete_all")
        let h = modern(b"tools/call", Some(b"=?base64?ZGVsZXRlX2FsbA==?="));
        assert_eq!(check_metadata_headers(h, &msg(CALL)), Ok(()));
        // base64("harmless")
        let h = modern(b"tools/call", Some(b"=?base64?aGFybWxlc3M=?="));
        assert_eq!(
            check_metadata_headers(h, &msg(CALL)),
            Err(HeaderMismatch::Mismatch("Mcp-Name"))
        );
    }

    #[test]
    fn sep2243_whitespace_around_value_is_accepted() {
        let h = modern(b"tools/call", Some(b"  delete_all\t"));
        assert_eq!(check_metadata_headers(h, &msg(CALL)), Ok(()));
    }

    #[test]
    fn sep2243_missing_name_in_modern_era_is_rejected() {
        assert_eq!(
            check_metadata_headers(modern(b"tools/call", None), &msg(CALL)),
            Err(HeaderMismatch::Missing("Mcp-Name"))
        );
    }

    #[test]
    fn sep2243_version_header_must_equal_meta() {
        let h = MetadataHeaders {
            protocol_version: Some(b"2025-11-25"),
            method: Some(b"tools/call"),
            name: Some(b"delete_all"),
        };
        assert_eq!(
            check_metadata_headers(h, &msg(CALL)),
            Err(HeaderMismatch::Mismatch("MCP-Protocol-Version"))
        );
    }

    #[test]
    fn legacy_request_without_headers_passes() {
        let m = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#);
        let h = MetadataHeaders {
            protocol_version: Some(b"2025-11-25"),
            ..Default::default()
        };
        assert_eq!(check_metadata_headers(h, &m), Ok(()));
        // …but a legacy request that does send Mcp-Name must still agree.
        let h = MetadataHeaders {
            name: Some(b"y"),
            ..h
        };
        assert_eq!(
            check_metadata_headers(h, &m),
            Err(HeaderMismatch::Mismatch("Mcp-Name"))
        );
    }

    #[test]
    fn invalid_header_bytes_are_rejected() {
        assert_eq!(decode_header_value(b"caf\xc3\xa9"), None);
        assert_eq!(decode_header_value(b"=?base64?!!!?="), None);
    }

    #[test]
    fn batches_only_in_2025_03_26() {
        assert!(allows_batches(None));
        assert!(allows_batches(Some("2025-03-26")));
        assert!(!allows_batches(Some("2025-06-18")));
        assert!(!allows_batches(Some("2026-07-28")));
    }
}
