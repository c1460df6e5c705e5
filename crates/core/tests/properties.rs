//! Property tests of the parsers that take attacker-controlled bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use mcpgate_core::jsonrpc::{self, Body};
use mcpgate_core::mcp::{self, MetadataHeaders};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// No input makes the JSON-RPC parser panic, and whatever it accepts
    /// serde_json accepts too (it is stricter, never looser).
    #[test]
    fn jsonrpc_parse_never_panics_and_is_stricter_than_serde(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if jsonrpc::parse(&bytes, 16).is_ok() {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
        }
        let _ = jsonrpc::salvage_id(&bytes);
    }

    /// JSON-ish inputs built from the grammar's pieces exercise deeper paths.
    #[test]
    fn jsonrpc_parse_structured_inputs(parts in proptest::collection::vec(
        prop_oneof![
            Just("{"), Just("}"), Just("["), Just("]"), Just(","), Just(":"),
            Just("\"jsonrpc\""), Just("\"2.0\""), Just("\"id\""), Just("\"method\""),
            Just("\"params\""), Just("\"name\""), Just("1"), Just("null"), Just("\"tools/call\""),
        ], 0..64)) {
        let s: String = parts.concat();
        let _ = jsonrpc::parse(s.as_bytes(), 8);
    }

    /// A value sent in the `=?base64?…?=` form decodes to itself.
    #[test]
    fn sep2243_base64_form_round_trips(value in "\\PC{0,40}") {
        let encoded = format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(value.as_bytes()));
        prop_assert_eq!(mcp::decode_header_value(encoded.as_bytes()), Some(value));
    }

    /// Header checking never panics, whatever the header bytes.
    #[test]
    fn sep2243_header_check_never_panics(
        version in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        method in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
        name in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)),
    ) {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let Ok(Body::Single(m)) = jsonrpc::parse(body, 16) else { panic!("fixture") };
        let h = MetadataHeaders {
            protocol_version: version.as_deref(),
            method: method.as_deref(),
            name: name.as_deref(),
        };
        let _ = mcp::check_metadata_headers(h, &m);
    }
}
