//! The OpenAI Realtime API over WebSocket: one recorded session read as LLM calls.
//!
//! A Realtime session is one WebSocket exchange carrying many model turns. Each turn is
//! a `chat {model}` call of its own: from the client's `response.create` (or, for a
//! turn the server started, its `response.created`) to the server's `response.done`,
//! whose `response` carries the output items (assistant text, `function_call`s) and the
//! usage. Tool results come back as `conversation.item.create` messages holding a
//! `function_call_output`, each at its own time. The model is the session's
//! (`session.created` / `session.updated`), else the URL's `model=`. Messages are
//! untrusted: anything unreadable is skipped.

use serde_json::{json, Value};

use super::{LlmCall, ToolCall, ToolResult};

/// One message as the adapter reads it.
pub struct WireMessage<'a> {
    /// Sent by the client (the agent).
    pub from_client: bool,
    pub at_ms: f64,
    pub payload: &'a [u8],
}

/// One model turn, with its times (milliseconds from the upgrade).
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub call: LlmCall,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// A tool result the client sent back, with its time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedResult {
    pub at_ms: f64,
    pub result: ToolResult,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Session {
    pub turns: Vec<Turn>,
    pub results: Vec<TimedResult>,
}

/// Whether a URL is a Realtime endpoint (`/v1/realtime`, Azure's `/openai/realtime`).
pub fn is_realtime_url(url: &str) -> bool {
    let path = url.split('?').next().unwrap_or(url);
    path.trim_end_matches('/').ends_with("/realtime")
}

/// Reads a recorded Realtime session; `None` when the messages are not Realtime events.
pub fn parse(url: &str, provider: &str, messages: &[WireMessage]) -> Option<Session> {
    let events: Vec<(bool, f64, Value)> = messages
        .iter()
        .filter_map(|m| {
            let v: Value = serde_json::from_slice(m.payload).ok()?;
            v.get("type")?.as_str()?;
            Some((m.from_client, m.at_ms, v))
        })
        .collect();
    let realtime = events.iter().any(|(c, _, v)| {
        !c && matches!(
            v["type"].as_str(),
            Some("session.created" | "response.done" | "response.created")
        )
    });
    if !realtime {
        return None;
    }
    let mut model = url
        .split_once('?')
        .and_then(|(_, q)| q.split('&').find_map(|kv| kv.strip_prefix("model=")))
        .map(tapedeck_model::exchange::canonical::percent_decode);
    let mut tools: Vec<String> = Vec::new();
    let mut history: Vec<Value> = Vec::new();
    let mut pending_results: Vec<ToolResult> = Vec::new();
    let mut call_names: Vec<(String, String)> = Vec::new();
    let mut started: Option<f64> = None;
    let mut out = Session::default();
    for (from_client, at, v) in &events {
        let t = v["type"].as_str().unwrap_or("");
        match (*from_client, t) {
            (false, "session.created" | "session.updated") => {
                if let Some(m) = v["session"]["model"].as_str() {
                    model = Some(m.to_string());
                }
                tool_names(&v["session"], &mut tools);
            }
            (true, "session.update") => {
                if let Some(m) = v["session"]["model"].as_str() {
                    model = Some(m.to_string());
                }
                tool_names(&v["session"], &mut tools);
            }
            (true, "conversation.item.create") => {
                let item = &v["item"];
                match item["type"].as_str() {
                    Some("function_call_output") => {
                        let id = item["call_id"].as_str().map(str::to_string);
                        let name = id.as_ref().and_then(|id| {
                            call_names
                                .iter()
                                .find(|(c, _)| c == id)
                                .map(|(_, n)| n.clone())
                        });
                        let result = ToolResult {
                            id,
                            name,
                            content: item["output"].as_str().unwrap_or("").to_string(),
                            is_error: false,
                        };
                        history.push(
                            json!({"role": "tool", "parts": [{"type": "tool_call_response",
                            "id": result.id, "response": result.content}]}),
                        );
                        out.results.push(TimedResult {
                            at_ms: *at,
                            result: result.clone(),
                        });
                        pending_results.push(result);
                    }
                    Some("message") => {
                        let role = item["role"].as_str().unwrap_or("user");
                        let parts: Vec<Value> = item["content"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|p| p["text"].as_str().or(p["transcript"].as_str()))
                            .map(|text| json!({"type": "text", "content": text}))
                            .collect();
                        history.push(json!({"role": role, "parts": parts}));
                    }
                    _ => {}
                }
            }
            (true, "response.create") => started = Some(*at),
            (false, "response.created") => {
                started.get_or_insert(*at);
            }
            (false, "response.done") => {
                let start = started.take().unwrap_or(*at);
                let call = turn_call(
                    provider,
                    model.clone(),
                    &tools,
                    &history,
                    std::mem::take(&mut pending_results),
                    &v["response"],
                    &mut call_names,
                );
                for tc in &call.tool_calls {
                    history.push(json!({"role": "assistant", "parts": [{"type": "tool_call",
                        "id": tc.id, "name": tc.name, "arguments": tc.arguments}]}));
                }
                if !call.output_text.is_empty() {
                    history.push(json!({"role": "assistant", "parts": [{"type": "text", "content": call.output_text}]}));
                }
                out.turns.push(Turn {
                    call,
                    start_ms: start,
                    end_ms: *at,
                });
            }
            _ => {}
        }
    }
    Some(out)
}

fn tool_names(session: &Value, tools: &mut Vec<String>) {
    if let Some(list) = session["tools"].as_array() {
        *tools = list
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
    }
}

/// The call a `response.done` describes.
fn turn_call(
    provider: &str,
    model: Option<String>,
    tools: &[String],
    history: &[Value],
    results: Vec<ToolResult>,
    response: &Value,
    call_names: &mut Vec<(String, String)>,
) -> LlmCall {
    let mut call = LlmCall {
        provider: provider.to_string(),
        operation: "chat".into(),
        api: Some("realtime".into()),
        request_model: model.clone(),
        response_model: model,
        response_id: response["id"].as_str().map(str::to_string),
        stream: true,
        tool_results: results,
        tool_definitions: tools.to_vec(),
        input_messages: Value::Array(history.to_vec()),
        ..LlmCall::default()
    };
    let usage = &response["usage"];
    call.input_tokens = usage["input_tokens"].as_u64();
    call.output_tokens = usage["output_tokens"].as_u64();
    call.cache_read_tokens = usage["input_token_details"]["cached_tokens"].as_u64();
    let mut parts = Vec::new();
    for item in response["output"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("function_call") => {
                let name = item["name"].as_str().unwrap_or("").to_string();
                let raw = item["arguments"].as_str().unwrap_or("");
                let arguments =
                    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
                let id = item["call_id"].as_str().map(str::to_string);
                if let Some(id) = &id {
                    call_names.push((id.clone(), name.clone()));
                }
                parts.push(
                    json!({"type": "tool_call", "id": id, "name": name, "arguments": arguments}),
                );
                call.tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments,
                });
            }
            Some("message") => {
                for c in item["content"].as_array().into_iter().flatten() {
                    if let Some(text) = c["text"].as_str().or(c["transcript"].as_str()) {
                        call.output_text.push_str(text);
                        parts.push(json!({"type": "text", "content": text}));
                    }
                }
            }
            _ => {}
        }
    }
    let status = response["status"].as_str().unwrap_or("completed");
    let finish = if !call.tool_calls.is_empty() && status == "completed" {
        "tool_calls"
    } else if status == "completed" {
        "stop"
    } else {
        status
    };
    call.finish_reasons = vec![finish.to_string()];
    call.output_messages = json!([{"role": "assistant", "parts": parts, "finish_reason": finish}]);
    if status == "failed" {
        let e = &response["status_details"]["error"];
        call.error_type = Some(
            e["code"]
                .as_str()
                .or(e["type"].as_str())
                .unwrap_or("_OTHER")
                .to_string(),
        );
        call.error_message = e["message"].as_str().map(str::to_string);
    }
    call
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(from_client: bool, at_ms: f64, v: Value) -> (bool, f64, Vec<u8>) {
        (from_client, at_ms, v.to_string().into_bytes())
    }

    #[test]
    fn turns_with_usage_function_calls_and_results() {
        let raw = [
            m(
                false,
                1.0,
                json!({"type": "session.created", "session": {"model": "gpt-realtime"}}),
            ),
            m(
                true,
                2.0,
                json!({"type": "session.update", "session": {"tools": [{"type": "function", "name": "get_weather"}]}}),
            ),
            m(
                true,
                3.0,
                json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Paris?"}]}}),
            ),
            m(true, 4.0, json!({"type": "response.create"})),
            m(
                false,
                9.0,
                json!({"type": "response.done", "response": {"id": "resp_1", "status": "completed",
                "output": [{"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}],
                "usage": {"input_tokens": 10, "output_tokens": 3}}}),
            ),
            m(
                true,
                20.0,
                json!({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp_c\":18}"}}),
            ),
            m(true, 21.0, json!({"type": "response.create"})),
            m(
                false,
                30.0,
                json!({"type": "response.done", "response": {"id": "resp_2", "status": "completed",
                "output": [{"type": "message", "content": [{"type": "output_text", "text": "18°C"}]}],
                "usage": {"input_tokens": 20, "output_tokens": 4}}}),
            ),
        ];
        let msgs: Vec<WireMessage> = raw
            .iter()
            .map(|(c, at, p)| WireMessage {
                from_client: *c,
                at_ms: *at,
                payload: p,
            })
            .collect();
        let s = parse("wss://api.openai.com/v1/realtime?model=x", "openai", &msgs).unwrap();
        assert_eq!(s.turns.len(), 2);
        let t0 = &s.turns[0];
        assert_eq!((t0.start_ms, t0.end_ms), (4.0, 9.0));
        assert_eq!(t0.call.request_model.as_deref(), Some("gpt-realtime"));
        assert_eq!(t0.call.tool_calls[0].name, "get_weather");
        assert_eq!(t0.call.input_tokens, Some(10));
        assert_eq!(t0.call.finish_reasons, ["tool_calls"]);
        let t1 = &s.turns[1];
        assert_eq!(t1.call.output_text, "18°C");
        assert_eq!(t1.call.tool_results[0].id.as_deref(), Some("call_1"));
        assert_eq!(t1.call.tool_results[0].name.as_deref(), Some("get_weather"));
        assert_eq!(s.results[0].at_ms, 20.0);
        assert!(is_realtime_url("wss://x/v1/realtime?model=y"));
        assert!(parse("wss://x/ws", "openai", &[]).is_none());
    }
}
