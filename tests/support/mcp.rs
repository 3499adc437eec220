//! The upstream fixture's MCP endpoint (a part of `upstream.rs`), Streamable HTTP shaped:
//!
//! - `POST /mcp`: JSON-RPC messages or a batch. `initialize` answers with the session id
//!   [`SESSION`] in `Mcp-Session-Id`; `tools/list`; `tools/call` of `get_weather` (an
//!   unknown city is a result with `isError: true`) and `get_alerts` (an empty content);
//!   an unknown method is JSON-RPC error -32601; notifications alone get `202`. Answers
//!   are one JSON body, or an event stream (one `data:` line per answer) with `?sse=1`.
//! - `GET /mcp` (the listening stream): an event stream that sends nothing and stays open.
//! - `DELETE /mcp`: `200`, the session is over.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::{full, read_body, weather_of, BoxError, FixtureBody};

pub const SESSION: &str = "fixture-session-1";

pub async fn route(req: Request<Incoming>, sse: bool) -> Result<Response<FixtureBody>, BoxError> {
    match *req.method() {
        Method::GET => {
            let never = futures_util::stream::pending::<Result<Frame<Bytes>, Infallible>>();
            Ok(Response::builder()
                .header("content-type", "text/event-stream")
                .header("mcp-session-id", SESSION)
                .body(StreamBody::new(never).map_err(|e| match e {}).boxed())
                .expect("response"))
        }
        Method::DELETE => Ok(Response::builder()
            .header("mcp-session-id", SESSION)
            .body(full(""))
            .expect("response")),
        _ => {
            let body = read_body(req).await?;
            let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
                return Ok(Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .body(full("fixture: not JSON"))
                    .expect("response"));
            };
            let batch = msg.is_array();
            let answers: Vec<Value> = match &msg {
                Value::Array(items) => items.iter().filter_map(answer).collect(),
                m => answer(m).into_iter().collect(),
            };
            let builder = Response::builder().header("mcp-session-id", SESSION);
            if answers.is_empty() {
                return Ok(builder
                    .status(StatusCode::ACCEPTED)
                    .body(full(""))
                    .expect("response"));
            }
            if sse {
                let text: String = answers
                    .iter()
                    .map(|a| format!("event: message\r\ndata: {a}\r\n\r\n"))
                    .collect();
                return Ok(builder
                    .header("content-type", "text/event-stream")
                    .body(full(text))
                    .expect("response"));
            }
            let body = if batch {
                Value::Array(answers)
            } else {
                answers.into_iter().next().unwrap_or(Value::Null)
            };
            Ok(builder
                .header("content-type", "application/json")
                .body(full(body.to_string()))
                .expect("response"))
        }
    }
}

/// The answer to one message; `None` for a notification.
fn answer(m: &Value) -> Option<Value> {
    let id = m.get("id")?.clone();
    let params = &m["params"];
    let result = match m["method"].as_str().unwrap_or("") {
        "initialize" => json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                               "serverInfo": {"name": "fixture", "version": "1"}}),
        "tools/list" => json!({"tools": [
            {"name": "get_weather", "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "get_alerts", "inputSchema": {"type": "object"}}]}),
        "tools/call" => {
            let city = params["arguments"]["city"].as_str().unwrap_or("");
            match (params["name"].as_str(), weather_of(city)) {
                (Some("get_alerts"), _) => json!({"content": [], "isError": false}),
                (Some("get_weather"), Some(w)) => json!({"content": [{"type": "text",
                    "text": format!("{city}: {}°C, {}", w["temp_c"], w["conditions"].as_str().unwrap_or(""))}], "isError": false}),
                (Some("get_weather"), None) => {
                    json!({"content": [{"type": "text", "text": format!("unknown city: {city}")}], "isError": true})
                }
                _ => {
                    return Some(
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32602, "message": "unknown tool"}}),
                    )
                }
            }
        }
        _ => {
            return Some(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}),
            )
        }
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}
