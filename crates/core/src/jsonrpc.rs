//! The JSON-RPC 2.0 envelope, as much of it as the gateway needs to decide.
//!
//! The gateway forwards the client's bytes unchanged; it parses them only to
//! authorise (method, tool name, resource URI) and to echo the request `id` in
//! its own errors. The parser is strict where leniency would let a request be
//! read one way here and another way upstream: duplicate object keys are an
//! error (serde_json keeps the last, other parsers the first), nesting is
//! bounded, and the body must be one object (or, for eras that allow them, an
//! array of objects).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Standard JSON-RPC error codes and the MCP-reserved ones the gateway emits.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// MCP 2026-07-28 HeaderMismatch (SEP-2243).
    pub const HEADER_MISMATCH: i64 = -32020;
    /// MCP 2026-07-28 UnsupportedProtocolVersion.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
    /// Implementation-defined server errors (JSON-RPC §5.1 reserves
    /// -32000..-32099 for them; MCP reserves -32020..-32099, and says new code
    /// should avoid -32000..-32019, so gateway-specific errors live outside).
    pub const GATEWAY_UNAUTHORIZED: i64 = -31001;
    pub const GATEWAY_FORBIDDEN: i64 = -31003;
    pub const GATEWAY_UPSTREAM: i64 = -31002;
    pub const GATEWAY_LIMIT: i64 = -31004;
}

/// A JSON-RPC id: string or number (null is only used in error replies).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    Num(serde_json::Number),
    Str(String),
}

impl Id {
    pub fn to_value(&self) -> Value {
        match self {
            Id::Num(n) => Value::Number(n.clone()),
            Id::Str(s) => Value::String(s.clone()),
        }
    }

    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => Some(Id::Num(n.clone())),
            Value::String(s) => Some(Id::Str(s.clone())),
            _ => None,
        }
    }
}

/// Why a body is not an acceptable JSON-RPC message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("JSON nesting deeper than {0}")]
    TooDeep(usize),
    #[error("duplicate key {0:?} in a JSON object")]
    DuplicateKey(String),
    #[error("not a JSON-RPC 2.0 message: {0}")]
    NotJsonRpc(&'static str),
}

impl ParseError {
    /// The JSON-RPC code for this failure: -32700 for bytes that are not
    /// (acceptable) JSON, -32600 for JSON that is not a message.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::NotJsonRpc(_) => code::INVALID_REQUEST,
            _ => code::PARSE_ERROR,
        }
    }
}

/// One parsed JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request {
        id: Id,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A response from the client (replies to server-to-client requests).
    Response { id: Option<Id> },
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }

    pub fn id(&self) -> Option<&Id> {
        match self {
            Message::Request { id, .. } => Some(id),
            Message::Response { id } => id.as_ref(),
            Message::Notification { .. } => None,
        }
    }

    pub fn params(&self) -> Option<&Value> {
        match self {
            Message::Request { params, .. } | Message::Notification { params, .. } => {
                params.as_ref()
            }
            Message::Response { .. } => None,
        }
    }

    /// `params.name` (tools/call, prompts/get).
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.params()?.get(key)?.as_str()
    }

    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (2026-07-28).
    pub fn meta_protocol_version(&self) -> Option<&str> {
        self.params()?
            .get("_meta")?
            .get("io.modelcontextprotocol/protocolVersion")?
            .as_str()
    }
}

/// A request body: one message or a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

impl Body {
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(v) => v,
        }
    }
}

/// Parses a JSON-RPC body strictly (see the module documentation).
///
/// The envelope (`jsonrpc`, `id`, `method`, `params`) is read straight into
/// a [`Message`]: no map for the envelope, no string for each of its keys
/// (the parse is on every request's path). Every byte is still read
/// strictly (repeated keys and depth refused anywhere), and a body that is
/// JSON but not a message is told so only after the whole document has
/// been read, as when it was parsed into a [`Value`] first.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Body, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = TopLevel(Strict {
        depth: 0,
        max: max_depth,
    });
    let body = seed.deserialize(&mut de).map_err(map_err)?;
    de.end().map_err(map_err)?;
    body.map_err(ParseError::NotJsonRpc)
}

/// Reads the `id` of a body that may have failed to parse as a message, so a
/// gateway error can echo it (best effort; `None` when unreadable).
pub fn salvage_id(bytes: &[u8]) -> Option<Id> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<Value>,
    }
    let v: IdOnly = serde_json::from_slice(bytes).ok()?;
    v.id.as_ref().and_then(Id::from_value)
}

const NOT_AN_OBJECT: &str = "a message must be a JSON object";

/// What a body reads as: a message or a batch, or why it is none (known
/// only once the whole document has been read).
type Read<T> = Result<T, &'static str>;

/// The non-object cases of a message's visitor: read strictly (for the
/// depth and repeated keys within), then refused.
macro_rules! not_an_object {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Err(NOT_AN_OBJECT))
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Err(NOT_AN_OBJECT))
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Err(NOT_AN_OBJECT))
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Err(NOT_AN_OBJECT))
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Err(NOT_AN_OBJECT))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Err(NOT_AN_OBJECT))
        }
    };
}

/// The whole body: one message or a batch of them.
struct TopLevel(Strict);

impl<'de> DeserializeSeed<'de> for TopLevel {
    type Value = Read<Body>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Read<Body>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel {
    type Value = Read<Body>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message or batch")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Read<Body>, A::Error> {
        Ok(Envelope(self.0).visit_map(map)?.map(Body::Single))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Read<Body>, A::Error> {
        let inner = self.0.nested()?;
        let mut messages = Vec::new();
        let mut problem = None;
        while let Some(m) = seq.next_element_seed(Envelope(inner))? {
            match m {
                Ok(m) => messages.push(m),
                Err(why) => {
                    problem.get_or_insert(why);
                }
            }
        }
        Ok(match problem {
            Some(why) => Err(why),
            None if messages.is_empty() => Err("empty batch"),
            None => Ok(Body::Batch(messages)),
        })
    }

    not_an_object!();
}

/// One message of a body. Values other than objects are still read
/// strictly, then refused.
#[derive(Clone, Copy)]
struct Envelope(Strict);

impl<'de> DeserializeSeed<'de> for Envelope {
    type Value = Read<Message>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Read<Message>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Envelope {
    type Value = Read<Message>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read<Message>, A::Error> {
        let inner = self.0.nested()?;
        let (mut version, mut id, mut method, mut params) = (None, None, None, None);
        let (mut result, mut error) = (false, false);
        let mut seen = [false; Field::COUNT];
        let mut others: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<Field>()? {
            let repeated = match &key {
                Field::Other(k) => {
                    let repeated = others.contains(k);
                    others.push(k.clone());
                    repeated
                }
                known => std::mem::replace(&mut seen[known.index()], true),
            };
            if repeated {
                return Err(de::Error::custom(format_args!("{DUP}{}", key.name())));
            }
            let value = map.next_value_seed(inner)?;
            match key {
                Field::Jsonrpc => version = Some(value),
                Field::Id => id = Some(value),
                Field::Method => method = Some(value),
                Field::Params => params = Some(value),
                Field::Result => result = true,
                Field::Error => error = true,
                Field::Other(_) => {}
            }
        }
        Ok(message(version, id, method, params, result || error))
    }

    /// An array inside a batch is not a message either.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Read<Message>, A::Error> {
        self.0.visit_seq(seq).map(|_| Err(NOT_AN_OBJECT))
    }

    not_an_object!();
}

/// A key of a message object, recognised without allocating.
enum Field {
    Jsonrpc,
    Id,
    Method,
    Params,
    Result,
    Error,
    Other(String),
}

impl Field {
    /// Known fields, for the repeated-key check.
    const COUNT: usize = 6;

    fn index(&self) -> usize {
        match self {
            Field::Jsonrpc => 0,
            Field::Id => 1,
            Field::Method => 2,
            Field::Params => 3,
            Field::Result => 4,
            Field::Error => 5,
            Field::Other(_) => Self::COUNT,
        }
    }

    fn name(&self) -> &str {
        match self {
            Field::Jsonrpc => "jsonrpc",
            Field::Id => "id",
            Field::Method => "method",
            Field::Params => "params",
            Field::Result => "result",
            Field::Error => "error",
            Field::Other(k) => k,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Field {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = Field;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_str<E: de::Error>(self, k: &str) -> Result<Field, E> {
                Ok(match k {
                    "jsonrpc" => Field::Jsonrpc,
                    "id" => Field::Id,
                    "method" => Field::Method,
                    "params" => Field::Params,
                    "result" => Field::Result,
                    "error" => Field::Error,
                    other => Field::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_str(Key)
    }
}

/// A message from its fields, checked in this order: the version, `params`,
/// `id`, then `method` (or, for a response, `result` or `error`). No copy
/// of `params`, which may be large.
fn message(
    version: Option<Value>,
    id: Option<Value>,
    method: Option<Value>,
    params: Option<Value>,
    result_or_error: bool,
) -> Read<Message> {
    if version.as_ref().and_then(Value::as_str) != Some("2.0") {
        return Err("\"jsonrpc\" must be \"2.0\"");
    }
    let params = match params {
        None => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(_) => return Err("\"params\" must be an object or array"),
    };
    let id = match id {
        None => None,
        Some(v) => Some(Id::from_value(&v).ok_or("\"id\" must be a string or number")?),
    };
    match method {
        Some(Value::String(method)) => Ok(match id {
            Some(id) => Message::Request { id, method, params },
            None => Message::Notification { method, params },
        }),
        Some(_) => Err("\"method\" must be a string"),
        None if result_or_error => Ok(Message::Response { id }),
        None => Err("no \"method\", \"result\" or \"error\""),
    }
}

/// Parses JSON into a [`Value`], refusing duplicate keys and nesting deeper
/// than `max_depth`. serde_json has no option for either, hence this seed.
pub fn parse_value(bytes: &[u8], max_depth: usize) -> Result<Value, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Strict {
        depth: 0,
        max: max_depth,
    };
    let v = seed.deserialize(&mut de).map_err(map_err)?;
    de.end().map_err(map_err)?;
    Ok(v)
}

const DUP: &str = "\u{1}dup:";
const DEEP: &str = "\u{1}deep";

fn map_err(e: serde_json::Error) -> ParseError {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix(DUP) {
        let key = rest.split(" at line").next().unwrap_or(rest);
        return ParseError::DuplicateKey(key.to_owned());
    }
    if let Some(rest) = msg.strip_prefix(DEEP) {
        // The depth is carried in the message after the marker.
        let n = rest
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        return ParseError::TooDeep(n);
    }
    ParseError::Json(msg)
}

#[derive(Clone, Copy)]
struct Strict {
    depth: usize,
    max: usize,
}

impl Strict {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= self.max {
            return Err(E::custom(format_args!("{DEEP}{}", self.max)));
        }
        Ok(Strict {
            depth: self.depth + 1,
            max: self.max,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.nested()?;
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format_args!("{DUP}{k}")));
            }
            let v = map.next_value_seed(inner)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Builds a JSON-RPC error response body.
pub fn error_body(id: Option<&Id>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut err = Map::new();
    err.insert("code".into(), Value::from(code));
    err.insert("message".into(), Value::from(message));
    if let Some(d) = data {
        err.insert("data".into(), d);
    }
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.map_or(Value::Null, Id::to_value),
        "error": Value::Object(err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_notification_response_are_told_apart() {
        let b = parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#,
            64,
        )
        .unwrap();
        let Body::Single(m) = b else { panic!("single") };
        assert_eq!(m.method(), Some("tools/call"));
        assert_eq!(m.id(), Some(&Id::Num(7.into())));
        assert_eq!(m.param_str("name"), Some("echo"));

        let b = parse(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            64,
        )
        .unwrap();
        assert!(matches!(b, Body::Single(Message::Notification { .. })));
        let b = parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#, 64).unwrap();
        assert!(matches!(b, Body::Single(Message::Response { .. })));
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let e = parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
            64,
        )
        .unwrap_err();
        assert_eq!(e, ParseError::DuplicateKey("name".into()));
        assert_eq!(e.code(), code::PARSE_ERROR);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert_eq!(
            parse_value(deep.as_bytes(), 32),
            Err(ParseError::TooDeep(32))
        );
        assert!(parse_value(deep.as_bytes(), 64).is_ok());
    }

    #[test]
    fn trailing_garbage_is_a_parse_error() {
        let e = parse(br#"{"jsonrpc":"2.0","id":1,"method":"x"} {}"#, 64).unwrap_err();
        assert_eq!(e.code(), code::PARSE_ERROR);
    }

    #[test]
    fn not_jsonrpc_is_invalid_request() {
        let e = parse(br#"{"id":1,"method":"x"}"#, 64).unwrap_err();
        assert_eq!(e.code(), code::INVALID_REQUEST);
        let e = parse(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#, 64).unwrap_err();
        assert_eq!(e.code(), code::INVALID_REQUEST);
        assert!(parse(b"[]", 64).is_err());
    }

    #[test]
    fn batch_is_parsed_as_batch() {
        let b = parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]"#,
            64,
        )
        .unwrap();
        assert_eq!(b.messages().len(), 2);
        assert!(matches!(b, Body::Batch(_)));
    }

    #[test]
    fn salvage_id_reads_id_of_invalid_message() {
        assert_eq!(
            salvage_id(br#"{"id":"x","method":5}"#),
            Some(Id::Str("x".into()))
        );
        assert_eq!(salvage_id(b"{not json"), None);
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::super::*;

        /// JSON values whose objects never repeat a key (what serializing
        /// a `Value` gives), nested up to `depth` containers.
        fn json(depth: u32) -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                "\\PC{0,8}".prop_map(Value::from),
            ];
            leaf.prop_recursive(depth, 64, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map("\\PC{0,6}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// `value` inside `wrappers` containers: an array, or an object
        /// under the key "w".
        fn wrap(value: &str, wrappers: &[bool]) -> String {
            let mut s = value.to_owned();
            for &array in wrappers.iter().rev() {
                s = if array {
                    format!("[1,{s}]")
                } else {
                    format!("{{\"w\":{s}}}")
                };
            }
            s
        }

        /// The body parser as it was before the envelope was read without
        /// a `Value`: the whole document into a `Value`, then taken apart.
        fn reference_parse(bytes: &[u8], max_depth: usize) -> Result<Body, ParseError> {
            fn message(v: Value) -> Result<Message, ParseError> {
                let Value::Object(mut obj) = v else {
                    return Err(ParseError::NotJsonRpc("a message must be a JSON object"));
                };
                if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
                    return Err(ParseError::NotJsonRpc("\"jsonrpc\" must be \"2.0\""));
                }
                let params = match obj.remove("params") {
                    None => None,
                    Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
                    Some(_) => {
                        return Err(ParseError::NotJsonRpc(
                            "\"params\" must be an object or array",
                        ));
                    }
                };
                let id = match obj.get("id") {
                    None => None,
                    Some(v) => Some(
                        Id::from_value(v)
                            .ok_or(ParseError::NotJsonRpc("\"id\" must be a string or number"))?,
                    ),
                };
                match obj.remove("method") {
                    Some(Value::String(method)) => Ok(match id {
                        Some(id) => Message::Request { id, method, params },
                        None => Message::Notification { method, params },
                    }),
                    Some(_) => Err(ParseError::NotJsonRpc("\"method\" must be a string")),
                    None if obj.contains_key("result") || obj.contains_key("error") => {
                        Ok(Message::Response { id })
                    }
                    None => Err(ParseError::NotJsonRpc(
                        "no \"method\", \"result\" or \"error\"",
                    )),
                }
            }
            match parse_value(bytes, max_depth)? {
                Value::Array(items) => {
                    if items.is_empty() {
                        return Err(ParseError::NotJsonRpc("empty batch"));
                    }
                    items
                        .into_iter()
                        .map(message)
                        .collect::<Result<Vec<_>, _>>()
                        .map(Body::Batch)
                }
                v => message(v).map(Body::Single),
            }
        }

        /// Message-like JSON text: objects with some of the envelope's
        /// keys (a key may repeat), values of every kind, nested a little.
        fn message_text() -> impl Strategy<Value = String> {
            let value = prop_oneof![
                Just("\"2.0\"".to_owned()),
                Just("\"1.0\"".to_owned()),
                Just("\"tools/call\"".to_owned()),
                Just("7".to_owned()),
                Just("-1.5".to_owned()),
                Just("null".to_owned()),
                Just("true".to_owned()),
                Just("{}".to_owned()),
                Just("[]".to_owned()),
                Just("{\"name\":\"echo\",\"arguments\":{\"a\":[1,{\"b\":2}]}}".to_owned()),
                Just("{\"a\":1,\"a\":2}".to_owned()),
                Just("[[[[[[1]]]]]]".to_owned()),
            ];
            let key = prop_oneof![
                Just("jsonrpc"),
                Just("id"),
                Just("method"),
                Just("params"),
                Just("result"),
                Just("error"),
                Just("x"),
                Just("json\\u0072pc"),
            ];
            let object = proptest::collection::vec((key, value.clone()), 0..7).prop_map(|kv| {
                let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            });
            let item = prop_oneof![4 => object, 1 => value];
            prop_oneof![
                3 => item.clone(),
                1 => proptest::collection::vec(item, 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
            ]
        }

        proptest! {
            /// The body parser reads every body as the `Value`-based parser
            /// it replaced did: the same message, batch or error.
            #[test]
            fn body_parse_agrees_with_the_value_based_parser(
                text in message_text(),
                max_depth in 1usize..10,
            ) {
                prop_assert_eq!(
                    parse(text.as_bytes(), max_depth),
                    reference_parse(text.as_bytes(), max_depth),
                    "{}", text
                );
            }

            /// Where serde_json reads a document without repeated keys, the
            /// strict parser reads the same value: the gateway authorises
            /// what a conventional upstream parser sees.
            #[test]
            fn strict_parse_agrees_with_serde_json_without_duplicates(v in json(6)) {
                let bytes = serde_json::to_vec(&v).unwrap();
                let expected: Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(parse_value(&bytes, 64), Ok(expected));
            }

            /// A key repeated in any object, at any depth, is refused and
            /// named, whatever the two values are.
            #[test]
            fn repeated_key_is_refused_at_any_depth(
                key in "[a-z]{1,6}",
                a in json(2),
                b in json(2),
                wrappers in proptest::collection::vec(any::<bool>(), 0..8),
            ) {
                let dup = format!(
                    "{{\"{key}\":{},\"{key}\":{}}}",
                    serde_json::to_string(&a).unwrap(),
                    serde_json::to_string(&b).unwrap()
                );
                let doc = wrap(&dup, &wrappers);
                prop_assert_eq!(
                    parse_value(doc.as_bytes(), 64),
                    Err(ParseError::DuplicateKey(key.clone()))
                );
            }

            /// Nesting is accepted up to the bound and refused beyond it,
            /// with the bound in the error.
            #[test]
            fn nesting_bound_is_exact(n in 1usize..80, max in 1usize..70) {
                let doc = format!("{}{}", "[".repeat(n), "]".repeat(n));
                let got = parse_value(doc.as_bytes(), max);
                if n <= max {
                    prop_assert!(got.is_ok(), "{} levels under a bound of {}: {:?}", n, max, got);
                } else {
                    prop_assert_eq!(got, Err(ParseError::TooDeep(max)));
                }
            }

            /// Any bytes give a message or an error with a JSON-RPC code,
            /// never a panic; the id salvage never panics either.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                if let Err(e) = parse(&bytes, 16) {
                    prop_assert!(e.code() == code::PARSE_ERROR || e.code() == code::INVALID_REQUEST);
                }
                let _ = salvage_id(&bytes);
            }

            /// A valid request with one byte changed is still either read
            /// or refused cleanly, and a change that keeps it valid JSON
            /// without repeated keys reads as serde_json reads it.
            #[test]
            fn mutated_request_is_read_or_refused(pos in any::<usize>(), byte in any::<u8>()) {
                let mut bytes = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"a":[1,2,{"b":null}]}}}"#.to_vec();
                let i = pos % bytes.len();
                bytes[i] = byte;
                let strict = parse_value(&bytes, 64);
                if let Ok(v) = &strict {
                    let lenient: Value = serde_json::from_slice(&bytes).unwrap();
                    prop_assert_eq!(v, &lenient);
                }
                prop_assert_eq!(parse(&bytes, 64), reference_parse(&bytes, 64));
            }
        }
    }

    #[test]
    fn meta_protocol_version_is_read() {
        let b = parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            64,
        )
        .unwrap();
        assert_eq!(b.messages()[0].meta_protocol_version(), Some("2026-07-28"));
    }
}
