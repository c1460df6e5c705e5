//! JSON-RPC framing and MCP method dispatch, free of I/O so it can be tested
//! message by message.

use serde_json::{Map, Value, json};

use crate::log;
use crate::tools::{self, CallError};

/// The protocol versions this server speaks, newest first.
pub const SUPPORTED_VERSIONS: [&str; 5] = [
    MODERN_VERSION,
    LATEST_LEGACY_VERSION,
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
];

/// The stateless, per-request-versioned revision (no `initialize`).
pub const MODERN_VERSION: &str = "2026-07-28";

/// The newest revision with the `initialize` handshake, offered when a client
/// asks for a version this server does not know.
pub const LATEST_LEGACY_VERSION: &str = "2025-11-25";

const SERVER_NAME: &str = "mcpgate-echo-server";
const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `_meta` keys of 2026-07-28 requests (`basic/index`).
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// How long clients and caches may keep `server/discover` and `tools/list`
/// results: the tool set is fixed for the life of the process.
const CACHE_TTL_MS: u64 = 60_000;

/// JSON-RPC 2.0 §5.1 error codes, plus MCP's `UnsupportedProtocolVersion`.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// A JSON-RPC error object, before it is put in a response.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn into_value(self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Some(data), Some(obj)) = (self.data, error.as_object_mut()) {
            obj.insert("data".into(), data);
        }
        error
    }
}

/// Which revision's rules a request is served under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    /// 2025-11-25 and earlier: session-scoped version from `initialize`.
    Legacy,
    /// 2026-07-28: version declared in the request's own `_meta`.
    Modern,
}

/// The server's state: fixed for the life of the process, since every
/// supported revision's behaviour here is stateless.
#[derive(Debug, Clone, Default)]
pub struct Server {
    subject: Option<String>,
}

impl Server {
    /// `subject` is the principal the gateway spawned this process for.
    pub fn new(subject: Option<String>) -> Self {
        Self { subject }
    }

    /// Handles one line of input; returns the response to write, if any.
    pub fn handle_line(&self, line: &[u8]) -> Option<Value> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(message) => self.handle_message(message),
            Err(err) => {
                log(&format!("unparseable line: {err}"));
                Some(error_response(
                    Value::Null,
                    RpcError::new(code::PARSE_ERROR, "Parse error"),
                ))
            }
        }
    }

    /// Handles one parsed JSON-RPC message; returns the response, if any.
    /// Notifications and responses never get one.
    pub fn handle_message(&self, message: Value) -> Option<Value> {
        let Value::Object(mut message) = message else {
            // Includes batches, which MCP removed in 2025-06-18.
            return Some(invalid_request(Value::Null, "expected a JSON object"));
        };
        let id = message.remove("id");
        let Some(method) = message.remove("method") else {
            if id.is_some() && (message.contains_key("result") || message.contains_key("error")) {
                // This server never sends requests, so no response is awaited.
                log("ignoring an unsolicited response");
                return None;
            }
            return Some(invalid_request(id_or_null(id), "missing method"));
        };
        let Value::String(method) = method else {
            return Some(invalid_request(id_or_null(id), "method must be a string"));
        };
        let Some(id) = id else {
            self.handle_notification(&method);
            return None;
        };
        if !matches!(id, Value::String(_) | Value::Number(_)) {
            return Some(invalid_request(
                Value::Null,
                "id must be a string or a number",
            ));
        }
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Some(invalid_request(id, "jsonrpc must be \"2.0\""));
        }
        let params = match message.remove("params") {
            None => Map::new(),
            Some(Value::Object(params)) => params,
            Some(_) => {
                let err = RpcError::new(code::INVALID_PARAMS, "params must be an object");
                return Some(error_response(id, err));
            }
        };
        Some(match self.handle_request(&method, &params) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(err) => error_response(id, err),
        })
    }

    fn handle_notification(&self, method: &str) {
        match method {
            "notifications/initialized" => log("client initialized"),
            "notifications/cancelled" => {
                // Every request is answered before the next line is read,
                // so there is never anything in flight to cancel.
            }
            other => log(&format!("ignoring notification {other}")),
        }
    }

    fn handle_request(&self, method: &str, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let era = request_era(params)?;
        let mut result = match method {
            "initialize" => initialize(params),
            "ping" => Ok(json!({})),
            "server/discover" => Ok(discover()),
            "tools/list" => Ok(tools_list(era)),
            "tools/call" => self.tools_call(params),
            other => Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("Method not found: {other}"),
            )),
        }?;
        if era == Era::Modern
            && let Some(result) = result.as_object_mut()
        {
            result.insert("resultType".into(), json!("complete"));
        }
        Ok(result)
    }

    fn tools_call(&self, params: &Map<String, Value>) -> Result<Value, RpcError> {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                "tools/call needs a string name",
            ));
        };
        let empty = Map::new();
        let arguments = match params.get("arguments") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(arguments)) => arguments,
            Some(_) => {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    "tools/call arguments must be an object",
                ));
            }
        };
        match tools::call(name, arguments, self.subject.as_deref()) {
            Ok(text) => Ok(tool_result(text, false)),
            // MCP 2025-11-25 `server/tools`: bad arguments are a tool
            // execution error, so that a model can see it and correct itself.
            Err(CallError::InvalidArguments(text)) => Ok(tool_result(text, true)),
            Err(CallError::UnknownTool) => Err(RpcError::new(
                code::INVALID_PARAMS,
                format!("Unknown tool: {name}"),
            )),
        }
    }
}

/// Decides the era from `params._meta`, rejecting versions it does not know.
fn request_era(params: &Map<String, Value>) -> Result<Era, RpcError> {
    let Some(meta) = params.get("_meta").and_then(Value::as_object) else {
        return Ok(Era::Legacy);
    };
    let version = match meta.get(META_PROTOCOL_VERSION) {
        None => return Ok(Era::Legacy),
        Some(Value::String(version)) => version.as_str(),
        Some(_) => {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                format!("_meta[\"{META_PROTOCOL_VERSION}\"] must be a string"),
            ));
        }
    };
    if version == MODERN_VERSION {
        if !meta
            .get(META_CLIENT_CAPABILITIES)
            .is_some_and(Value::is_object)
        {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                format!("_meta[\"{META_CLIENT_CAPABILITIES}\"] is required and must be an object"),
            ));
        }
        Ok(Era::Modern)
    } else if SUPPORTED_VERSIONS.contains(&version) {
        Ok(Era::Legacy)
    } else {
        Err(RpcError {
            code: code::UNSUPPORTED_PROTOCOL_VERSION,
            message: format!("Unsupported protocol version: {version}"),
            data: Some(json!({"supported": SUPPORTED_VERSIONS, "requested": version})),
        })
    }
}

fn initialize(params: &Map<String, Value>) -> Result<Value, RpcError> {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    // `basic/lifecycle`: answer with the requested version if supported,
    // otherwise with another one (the latest) and let the client decide.
    let version = requested
        .filter(|v| *v != MODERN_VERSION && SUPPORTED_VERSIONS.contains(v))
        .unwrap_or(LATEST_LEGACY_VERSION);
    log(&format!(
        "initialize: client asked for {}, answering {version}",
        requested.unwrap_or("(none)")
    ));
    Ok(json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
        "serverInfo": server_info(),
        "instructions": instructions(),
    }))
}

fn discover() -> Value {
    json!({
        "supportedVersions": SUPPORTED_VERSIONS,
        "capabilities": capabilities(),
        "instructions": instructions(),
        "ttlMs": CACHE_TTL_MS,
        "cacheScope": "public",
        "resultType": "complete",
        "_meta": {META_SERVER_INFO: server_info()},
    })
}

fn tools_list(era: Era) -> Value {
    let mut result = json!({"tools": tools::definitions()});
    if era == Era::Modern
        && let Some(obj) = result.as_object_mut()
    {
        // The list is the same for every principal, so shared caches may
        // keep it (`server/utilities/caching`).
        obj.insert("ttlMs".into(), json!(CACHE_TTL_MS));
        obj.insert("cacheScope".into(), json!("public"));
    }
    result
}

fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}})
}

fn server_info() -> Value {
    json!({"name": SERVER_NAME, "version": SERVER_VERSION})
}

fn instructions() -> &'static str {
    "A test server: echo returns its text, add sums two integers, whoami names \
     the principal the gateway spawned this process for, write_note pretends to \
     store a note."
}

fn tool_result(text: String, is_error: bool) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": is_error})
}

fn error_response(id: Value, error: RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": error.into_value()})
}

fn invalid_request(id: Value, why: &str) -> Value {
    log(&format!("invalid request: {why}"));
    error_response(
        id,
        RpcError::new(code::INVALID_REQUEST, format!("Invalid Request: {why}")),
    )
}

fn id_or_null(id: Option<Value>) -> Value {
    id.filter(|id| matches!(id, Value::String(_) | Value::Number(_)))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Server {
        Server::new(None)
    }

    fn request(method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
    }

    fn result(server: &Server, method: &str, params: Value) -> Value {
        let reply = server.handle_message(request(method, params)).unwrap();
        assert_eq!(reply["id"], 7, "{reply}");
        assert!(reply.get("error").is_none(), "{reply}");
        reply["result"].clone()
    }

    fn error(server: &Server, message: Value) -> Value {
        let reply = server.handle_message(message).unwrap();
        assert!(reply.get("result").is_none(), "{reply}");
        reply
    }

    fn modern_meta() -> Value {
        json!({
            META_PROTOCOL_VERSION: MODERN_VERSION,
            META_CLIENT_CAPABILITIES: {},
        })
    }

    fn call(server: &Server, name: &str, arguments: Value) -> Value {
        result(
            server,
            "tools/call",
            json!({"name": name, "arguments": arguments}),
        )
    }

    #[test]
    fn lifecycle_initialize_echoes_each_supported_legacy_version() {
        for version in ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"] {
            let result = result(
                &server(),
                "initialize",
                json!({"protocolVersion": version, "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}),
            );
            assert_eq!(result["protocolVersion"], version);
            assert_eq!(
                result["capabilities"],
                json!({"tools": {"listChanged": false}})
            );
            assert_eq!(result["serverInfo"]["name"], "mcpgate-echo-server");
            assert_eq!(result["serverInfo"]["version"], SERVER_VERSION);
            assert!(result.get("resultType").is_none());
        }
    }

    #[test]
    fn lifecycle_initialize_offers_latest_for_unknown_or_missing_version() {
        for params in [
            json!({"protocolVersion": "1999-01-01"}),
            json!({"protocolVersion": MODERN_VERSION}),
            json!({"protocolVersion": 5}),
            json!({}),
        ] {
            let result = result(&server(), "initialize", params);
            assert_eq!(result["protocolVersion"], LATEST_LEGACY_VERSION);
        }
    }

    #[test]
    fn lifecycle_notifications_get_no_reply() {
        for method in [
            "notifications/initialized",
            "notifications/cancelled",
            "notifications/whatever",
            "tools/call",
        ] {
            let message = json!({"jsonrpc": "2.0", "method": method, "params": {}});
            assert_eq!(server().handle_message(message), None, "{method}");
        }
    }

    #[test]
    fn ping_returns_empty_result() {
        assert_eq!(result(&server(), "ping", json!({})), json!({}));
        let no_params = json!({"jsonrpc": "2.0", "id": "p", "method": "ping"});
        assert_eq!(
            server().handle_message(no_params).unwrap(),
            json!({"jsonrpc": "2.0", "id": "p", "result": {}})
        );
    }

    #[test]
    fn discover_lists_versions_capabilities_and_cache_hints() {
        let result = result(
            &server(),
            "server/discover",
            json!({"_meta": modern_meta()}),
        );
        assert_eq!(
            result["supportedVersions"],
            json!([
                "2026-07-28",
                "2025-11-25",
                "2025-06-18",
                "2025-03-26",
                "2024-11-05"
            ])
        );
        assert_eq!(result["capabilities"], capabilities());
        assert_eq!(result["_meta"][META_SERVER_INFO], server_info());
        assert_eq!(result["ttlMs"], CACHE_TTL_MS);
        assert_eq!(result["cacheScope"], "public");
        assert_eq!(result["resultType"], "complete");
    }

    #[test]
    fn discover_answers_without_meta_too() {
        let result = result(&server(), "server/discover", json!({}));
        assert_eq!(result["resultType"], "complete");
        assert_eq!(result["supportedVersions"][0], MODERN_VERSION);
    }

    #[test]
    fn modern_requests_carry_result_type_and_list_cache_hints() {
        let s = server();
        let list = result(&s, "tools/list", json!({"_meta": modern_meta()}));
        assert_eq!(list["resultType"], "complete");
        assert_eq!(list["ttlMs"], CACHE_TTL_MS);
        assert_eq!(list["cacheScope"], "public");
        let called = result(
            &s,
            "tools/call",
            json!({"_meta": modern_meta(), "name": "echo", "arguments": {"text": "hi"}}),
        );
        assert_eq!(called["resultType"], "complete");
        assert_eq!(called["content"][0]["text"], "hi");
    }

    #[test]
    fn legacy_requests_have_no_modern_fields() {
        let list = result(&server(), "tools/list", json!({}));
        for field in ["resultType", "ttlMs", "cacheScope"] {
            assert!(list.get(field).is_none(), "{field}");
        }
        let called = call(&server(), "echo", json!({"text": "hi"}));
        assert!(called.get("resultType").is_none());
    }

    #[test]
    fn modern_unsupported_version_is_32022_with_supported_list() {
        let params = json!({"_meta": {META_PROTOCOL_VERSION: "v999.0.0",
                                      META_CLIENT_CAPABILITIES: {}}});
        let reply = error(&server(), request("tools/list", params));
        assert_eq!(reply["id"], 7);
        assert_eq!(reply["error"]["code"], -32022);
        assert_eq!(reply["error"]["data"]["requested"], "v999.0.0");
        assert_eq!(
            reply["error"]["data"]["supported"],
            json!(SUPPORTED_VERSIONS)
        );
    }

    #[test]
    fn modern_missing_client_capabilities_is_invalid_params() {
        let params = json!({"_meta": {META_PROTOCOL_VERSION: MODERN_VERSION}});
        let reply = error(&server(), request("tools/list", params));
        assert_eq!(reply["error"]["code"], -32602);
    }

    #[test]
    fn tools_list_has_the_four_tools_with_object_schemas() {
        let list = result(&server(), "tools/list", json!({}));
        let tools = list["tools"].as_array().unwrap();
        let names: Vec<_> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["echo", "add", "whoami", "write_note"]);
        for tool in tools {
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
            assert!(tool["description"].is_string(), "{tool}");
        }
    }

    #[test]
    fn tools_call_echo_add_whoami_write_note() {
        let s = server();
        let text = |v: Value| v["content"][0]["text"].as_str().unwrap().to_owned();
        assert_eq!(
            text(call(&s, "echo", json!({"text": "héllo\nworld"}))),
            "héllo\nworld"
        );
        assert_eq!(text(call(&s, "add", json!({"a": 2, "b": -5}))), "-3");
        assert_eq!(text(call(&s, "whoami", json!({}))), "anonymous");
        assert_eq!(text(call(&s, "write_note", json!({"text": "x"}))), "noted");
        let alice = Server::new(Some("alice".into()));
        let whoami = call(&alice, "whoami", Value::Null);
        assert_eq!(whoami["content"][0]["type"], "text");
        assert_eq!(text(whoami.clone()), "alice");
        assert_eq!(whoami["isError"], false);
    }

    #[test]
    fn tools_call_bad_arguments_are_tool_errors_not_protocol_errors() {
        for (name, args) in [
            ("echo", json!({})),
            ("echo", json!({"text": 1})),
            ("add", json!({"a": 1.5, "b": 1})),
            ("add", json!({"a": i64::MAX, "b": 1})),
            ("echo", json!({"text": "x", "extra": true})),
        ] {
            let result = call(&server(), name, args.clone());
            assert_eq!(result["isError"], true, "{name} {args}");
        }
    }

    #[test]
    fn tools_call_unknown_tool_is_32602() {
        let reply = error(
            &server(),
            request("tools/call", json!({"name": "rm_rf", "arguments": {}})),
        );
        assert_eq!(reply["id"], 7);
        assert_eq!(reply["error"]["code"], -32602);
    }

    #[test]
    fn tools_call_malformed_params_are_32602() {
        for params in [
            json!({}),
            json!({"name": 3}),
            json!({"name": "echo", "arguments": [1]}),
        ] {
            let reply = error(&server(), request("tools/call", params));
            assert_eq!(reply["error"]["code"], -32602);
        }
        let reply = error(
            &server(),
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}),
        );
        assert_eq!(reply["error"]["code"], -32602);
    }

    #[test]
    fn unknown_method_is_32601_with_request_id() {
        let reply = error(
            &server(),
            json!({"jsonrpc": "2.0", "id": "abc", "method": "resources/list"}),
        );
        assert_eq!(reply["id"], "abc");
        assert_eq!(reply["error"]["code"], -32601);
    }

    #[test]
    fn parse_error_is_32700_with_null_id() {
        let reply = server()
            .handle_line(b"{\"jsonrpc\":\"2.0\",\"id\":1,")
            .unwrap();
        assert_eq!(reply["error"]["code"], -32700);
        assert_eq!(reply["id"], Value::Null);
        assert!(reply.as_object().unwrap().contains_key("id"));
    }

    #[test]
    fn invalid_utf8_is_a_parse_error() {
        let reply = server().handle_line(b"\xff\xfe{}\n").unwrap();
        assert_eq!(reply["error"]["code"], -32700);
    }

    #[test]
    fn blank_lines_are_ignored() {
        assert_eq!(server().handle_line(b"  \r\n"), None);
    }

    #[test]
    fn invalid_requests_are_32600() {
        for (message, id) in [
            (
                json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]),
                Value::Null,
            ),
            (json!("ping"), Value::Null),
            (json!({"jsonrpc": "2.0", "id": 1}), json!(1)),
            (json!({"jsonrpc": "2.0", "id": 1, "method": 5}), json!(1)),
            (
                json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}),
                Value::Null,
            ),
            (
                json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
                Value::Null,
            ),
            (
                json!({"jsonrpc": "1.0", "id": 2, "method": "ping"}),
                json!(2),
            ),
            (json!({"id": 2, "method": "ping"}), json!(2)),
        ] {
            let reply = error(&server(), message.clone());
            assert_eq!(reply["error"]["code"], -32600, "{message}");
            assert_eq!(reply["id"], id, "{message}");
        }
    }

    #[test]
    fn responses_from_the_client_are_ignored() {
        let message = json!({"jsonrpc": "2.0", "id": 1, "result": {}});
        assert_eq!(server().handle_message(message), None);
    }
}
