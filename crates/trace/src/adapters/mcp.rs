//! MCP over Streamable HTTP: reading one recorded exchange as an MCP call.
//!
//! A `POST` whose body is a JSON-RPC message (or batch) sent with MCP's headers
//! (`Mcp-Session-Id`, `Mcp-Protocol-Version`) or naming an MCP method is an MCP call;
//! its answer is one JSON body or an event stream whose `data:` lines hold JSON-RPC
//! messages (the one answering the request carries its `id`). The names follow the
//! OpenTelemetry MCP semantic conventions (semconv v1.41.1, `docs/gen-ai/mcp.md`):
//! `mcp.method.name`, `mcp.session.id`, `mcp.protocol.version`, `jsonrpc.request.id`,
//! `gen_ai.tool.name`, and `error.type` = `tool_error` for a result with `isError: true`
//! or the JSON-RPC error code. The session's `GET` listening stream and its closing
//! `DELETE` are MCP transport, not calls: [`McpCall::method`] is `None` for them.

use serde::Serialize;
use serde_json::Value;

use super::sse;

/// What tapedeck knows of one MCP exchange.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct McpCall {
    /// `mcp.method.name` of the (first) request; `None` for the listening stream and
    /// the closing `DELETE`.
    pub method: Option<String>,
    /// `jsonrpc.request.id`, as text; `None` for notifications.
    pub request_id: Option<String>,
    pub session_id: Option<String>,
    pub protocol_version: Option<String>,
    /// `tools/call`: the tool and its arguments.
    pub tool_name: Option<String>,
    pub arguments: Option<Value>,
    /// The result says `isError: true`.
    pub is_error: bool,
    /// The JSON-RPC error: code and message.
    pub rpc_error: Option<(i64, String)>,
    /// `tools/call`: the text of the result's content, joined by newlines (what an agent
    /// hands its LLM), or the structured content when there is no text.
    pub result_text: Option<String>,
    /// `tools/call`: the result's content is empty (no items, or only empty text).
    pub empty_result: bool,
    /// Messages in the request (a batch holds several).
    pub messages: usize,
}

impl McpCall {
    /// Whether this exchange is an MCP tool call (the only MCP exchange that is a tool).
    pub fn is_tool_call(&self) -> bool {
        self.method.as_deref() == Some("tools/call")
    }

    /// The span name: `{mcp.method.name} {tool}` for a tool call, else the method.
    pub fn span_name(&self) -> Option<String> {
        let m = self.method.as_deref()?;
        Some(match &self.tool_name {
            Some(t) => format!("{m} {t}"),
            None => m.to_string(),
        })
    }

    /// `error.type`, when the call failed.
    pub fn error_type(&self) -> Option<String> {
        if let Some((code, _)) = &self.rpc_error {
            return Some(code.to_string());
        }
        self.is_error.then(|| "tool_error".to_string())
    }

    /// Why the call failed, for a span status and `analyze` evidence.
    pub fn error_message(&self) -> Option<String> {
        if let Some((code, m)) = &self.rpc_error {
            return Some(format!("JSON-RPC error {code}: {m}"));
        }
        self.is_error.then(|| match &self.result_text {
            Some(t) if !t.is_empty() => format!("isError: true: {t}"),
            _ => "isError: true".to_string(),
        })
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn is_mcp_method(m: &str) -> bool {
    m == "initialize"
        || m == "ping"
        || [
            "tools/",
            "resources/",
            "prompts/",
            "notifications/",
            "completion/",
            "logging/",
            "sampling/",
            "elicitation/",
            "roots/",
        ]
        .iter()
        .any(|p| m.starts_with(p))
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads an exchange as MCP; `None` when it is not MCP traffic.
pub fn parse(
    method: &str,
    request_headers: &[(String, String)],
    request_body: &[u8],
    response_headers: &[(String, String)],
    response_body: &[u8],
) -> Option<McpCall> {
    let session_id = header(request_headers, "mcp-session-id")
        .or_else(|| header(response_headers, "mcp-session-id"))
        .map(str::to_string);
    let mut protocol_version = header(request_headers, "mcp-protocol-version").map(str::to_string);
    if !method.eq_ignore_ascii_case("POST") {
        // The listening stream and the closing DELETE belong to a session.
        return session_id.map(|s| McpCall {
            session_id: Some(s),
            protocol_version,
            ..McpCall::default()
        });
    }
    memchr::memmem::find(request_body, b"\"jsonrpc\"")?;
    let req: Value = serde_json::from_slice(request_body).ok()?;
    let messages: Vec<&Value> = match &req {
        Value::Array(items) => items.iter().collect(),
        m => vec![m],
    };
    let first = messages.first()?;
    let rpc_method = first.get("method")?.as_str()?.to_string();
    if session_id.is_none() && protocol_version.is_none() && !is_mcp_method(&rpc_method) {
        return None;
    }
    let params = first.get("params");
    if rpc_method == "initialize" && protocol_version.is_none() {
        protocol_version = params
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let request_id = first.get("id").and_then(id_text);
    let mut call = McpCall {
        method: Some(rpc_method.clone()),
        request_id: request_id.clone(),
        session_id,
        protocol_version,
        messages: messages.len(),
        ..McpCall::default()
    };
    if rpc_method == "tools/call" {
        call.tool_name = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        call.arguments = params.and_then(|p| p.get("arguments")).cloned();
    }
    let Some(answer) = answer(response_body, first.get("id")) else {
        return Some(call);
    };
    if let Some(e) = answer.get("error") {
        call.rpc_error = Some((
            e.get("code").and_then(Value::as_i64).unwrap_or(0),
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ));
    }
    if let Some(result) = answer.get("result") {
        if rpc_method == "initialize" {
            if let Some(v) = result.get("protocolVersion").and_then(Value::as_str) {
                call.protocol_version = Some(v.to_string());
            }
        }
        if rpc_method == "tools/call" {
            call.is_error = result.get("isError") == Some(&Value::Bool(true));
            let content = result
                .get("content")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let texts: Vec<&str> = content
                .iter()
                .filter_map(|c| c.get("text").and_then(Value::as_str))
                .collect();
            call.empty_result = content.is_empty()
                || (texts.len() == content.len() && texts.iter().all(|t| t.trim().is_empty()));
            call.result_text = Some(if texts.is_empty() && !content.is_empty() {
                result
                    .get("structuredContent")
                    .map(Value::to_string)
                    .unwrap_or_else(|| Value::Array(content.clone()).to_string())
            } else {
                texts.join("\n")
            });
        }
    }
    Some(call)
}

/// The response message that answers request `id`: in a JSON body (or batch), or in the
/// `data:` lines of an event stream.
fn answer(body: &[u8], id: Option<&Value>) -> Option<Value> {
    let is_answer = |m: &Value| {
        m.get("method").is_none()
            && (m.get("result").is_some() || m.get("error").is_some())
            && (id.is_none() || m.get("id") == id)
    };
    let candidates: Vec<Value> = if sse::looks_like_sse(body) {
        sse::events(body)
            .into_iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.data).ok())
            .flat_map(|v| match v {
                Value::Array(items) => items,
                v => vec![v],
            })
            .collect()
    } else {
        match serde_json::from_slice::<Value>(body).ok()? {
            Value::Array(items) => items,
            v => vec![v],
        }
    };
    candidates.into_iter().find(is_answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn a_tool_call_answered_in_an_event_stream() {
        let req = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Atlantis"}}}"#;
        let resp = b"event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"unknown city: Atlantis\"}],\"isError\":true}}\r\n\r\n";
        let c = parse(
            "POST",
            &h(&[
                ("mcp-session-id", "s1"),
                ("mcp-protocol-version", "2025-06-18"),
            ]),
            req,
            &h(&[("content-type", "text/event-stream")]),
            resp,
        )
        .unwrap();
        assert_eq!(c.span_name().as_deref(), Some("tools/call get_weather"));
        assert_eq!(c.request_id.as_deref(), Some("3"));
        assert_eq!(c.session_id.as_deref(), Some("s1"));
        assert_eq!(c.protocol_version.as_deref(), Some("2025-06-18"));
        assert!(c.is_error && c.is_tool_call());
        assert_eq!(c.error_type().as_deref(), Some("tool_error"));
        assert_eq!(c.result_text.as_deref(), Some("unknown city: Atlantis"));
        assert_eq!(c.arguments, Some(serde_json::json!({"city": "Atlantis"})));
    }

    #[test]
    fn json_answers_errors_empty_results_and_what_is_not_mcp() {
        let req = br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"alerts"}}"#;
        let c = parse(
            "POST",
            &h(&[("mcp-session-id", "s1")]),
            req,
            &[],
            br#"{"jsonrpc":"2.0","id":"a","result":{"content":[]}}"#,
        )
        .unwrap();
        assert!(c.empty_result && !c.is_error);
        let c = parse(
            "POST",
            &h(&[("mcp-session-id", "s1")]),
            req,
            &[],
            br#"{"jsonrpc":"2.0","id":"a","error":{"code":-32602,"message":"bad params"}}"#,
        )
        .unwrap();
        assert_eq!(c.error_type().as_deref(), Some("-32602"));
        let init = parse(
            "POST",
            &[],
            br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
            &h(&[("mcp-session-id", "new")]),
            br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18"}}"#,
        )
        .unwrap();
        assert_eq!(init.span_name().as_deref(), Some("initialize"));
        assert_eq!(init.session_id.as_deref(), Some("new"));
        let get = parse("GET", &h(&[("mcp-session-id", "s1")]), b"", &[], b"").unwrap();
        assert_eq!(get.method, None);
        assert!(parse(
            "POST",
            &[],
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_call"}"#,
            &[],
            b""
        )
        .is_none());
        assert!(parse("POST", &[], br#"{"model":"x"}"#, &[], b"").is_none());
    }
}
