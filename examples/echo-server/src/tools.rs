//! The tools this server offers, their input schemas and their behaviour.
//!
//! - `echo {text}`: returns `text`.
//! - `add {a, b}`: returns the sum of two integers, as text.
//! - `whoami {}`: returns the principal the gateway spawned this process for
//!   (`MCPGATE_SUBJECT`), or `anonymous`.
//! - `write_note {text}`: pretends to store a note and returns `noted`. It is
//!   the one tool that is not read-only, so tests can guard it with a
//!   per-tool scope.

use serde_json::{Map, Value, json};

use crate::log;

/// Why a `tools/call` did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No tool has this name: a JSON-RPC protocol error (`-32602`).
    UnknownTool,
    /// The arguments do not match the tool's input schema: a tool execution
    /// error (`isError: true`) carrying this explanation.
    InvalidArguments(String),
}

/// The `tools` array of a `tools/list` result.
pub fn definitions() -> Value {
    json!([
        {
            "name": "echo",
            "title": "Echo",
            "description": "Returns the given text unchanged.",
            "inputSchema": object_schema(
                json!({"text": {"type": "string", "description": "Text to echo back."}}),
                &["text"],
            ),
            "annotations": read_only(),
        },
        {
            "name": "add",
            "title": "Add",
            "description": "Adds two integers and returns the sum as text.",
            "inputSchema": object_schema(
                json!({
                    "a": {"type": "integer", "description": "First addend."},
                    "b": {"type": "integer", "description": "Second addend."},
                }),
                &["a", "b"],
            ),
            "annotations": read_only(),
        },
        {
            "name": "whoami",
            "title": "Who am I",
            "description": "Returns the principal this server process was started for, \
                            or \"anonymous\".",
            "inputSchema": object_schema(json!({}), &[]),
            "annotations": read_only(),
        },
        {
            "name": "write_note",
            "title": "Write note",
            "description": "Pretends to store a note and returns \"noted\". Nothing is kept.",
            "inputSchema": object_schema(
                json!({"text": {"type": "string", "description": "The note."}}),
                &["text"],
            ),
            "annotations": {
                "readOnlyHint": false,
                "destructiveHint": false,
                "idempotentHint": false,
                "openWorldHint": false,
            },
        },
    ])
}

/// Runs tool `name`; returns the text of its single content item.
pub fn call(
    name: &str,
    arguments: &Map<String, Value>,
    subject: Option<&str>,
) -> Result<String, CallError> {
    match name {
        "echo" => {
            only(arguments, &["text"])?;
            Ok(string_arg(arguments, "text")?.to_owned())
        }
        "add" => {
            only(arguments, &["a", "b"])?;
            let (a, b) = (int_arg(arguments, "a")?, int_arg(arguments, "b")?);
            a.checked_add(b)
                .map(|sum| sum.to_string())
                .ok_or_else(|| CallError::InvalidArguments(format!("{a} + {b} overflows i64")))
        }
        "whoami" => {
            only(arguments, &[])?;
            Ok(subject.unwrap_or("anonymous").to_owned())
        }
        "write_note" => {
            only(arguments, &["text"])?;
            let text = string_arg(arguments, "text")?;
            log(&format!(
                "write_note: pretending to store {} bytes",
                text.len()
            ));
            Ok("noted".to_owned())
        }
        _ => Err(CallError::UnknownTool),
    }
}

fn object_schema(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

fn read_only() -> Value {
    json!({"readOnlyHint": true, "openWorldHint": false})
}

/// Enforces the schemas' `additionalProperties: false`.
fn only(arguments: &Map<String, Value>, allowed: &[&str]) -> Result<(), CallError> {
    match arguments.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(CallError::InvalidArguments(format!(
            "unexpected argument \"{unknown}\""
        ))),
        None => Ok(()),
    }
}

fn string_arg<'a>(arguments: &'a Map<String, Value>, name: &str) -> Result<&'a str, CallError> {
    arguments
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| CallError::InvalidArguments(format!("argument \"{name}\" must be a string")))
}

fn int_arg(arguments: &Map<String, Value>, name: &str) -> Result<i64, CallError> {
    arguments.get(name).and_then(Value::as_i64).ok_or_else(|| {
        CallError::InvalidArguments(format!("argument \"{name}\" must be an integer"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn every_definition_has_a_closed_object_schema_naming_its_required_properties() {
        for tool in definitions().as_array().unwrap() {
            let schema = &tool["inputSchema"];
            assert_eq!(schema["type"], "object");
            assert_eq!(schema["additionalProperties"], false);
            for required in schema["required"].as_array().unwrap() {
                let key = required.as_str().unwrap();
                assert!(schema["properties"].get(key).is_some(), "{tool}");
            }
        }
    }

    #[test]
    fn echo_returns_text_and_rejects_missing_or_extra_arguments() {
        assert_eq!(
            call("echo", &args(json!({"text": ""})), None),
            Ok(String::new())
        );
        assert!(matches!(
            call("echo", &args(json!({})), None),
            Err(CallError::InvalidArguments(_))
        ));
        assert!(matches!(
            call("echo", &args(json!({"text": "a", "b": 1})), None),
            Err(CallError::InvalidArguments(_))
        ));
    }

    #[test]
    fn add_sums_integers_and_reports_overflow_and_non_integers() {
        assert_eq!(
            call("add", &args(json!({"a": 40, "b": 2})), None),
            Ok("42".into())
        );
        assert_eq!(
            call("add", &args(json!({"a": i64::MIN, "b": i64::MAX})), None),
            Ok("-1".into())
        );
        for bad in [
            json!({"a": 1}),
            json!({"a": "1", "b": 2}),
            json!({"a": 1.0, "b": 2}),
            json!({"a": u64::MAX, "b": 0}),
            json!({"a": i64::MIN, "b": -1}),
        ] {
            assert!(
                matches!(
                    call("add", &args(bad.clone()), None),
                    Err(CallError::InvalidArguments(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn whoami_reports_subject_or_anonymous() {
        assert_eq!(call("whoami", &Map::new(), Some("u-1")), Ok("u-1".into()));
        assert_eq!(call("whoami", &Map::new(), None), Ok("anonymous".into()));
    }

    #[test]
    fn write_note_pretends() {
        assert_eq!(
            call("write_note", &args(json!({"text": "t"})), None),
            Ok("noted".into())
        );
    }

    #[test]
    fn unknown_tool() {
        assert_eq!(call("nope", &Map::new(), None), Err(CallError::UnknownTool));
    }
}
