//! OpenAI Responses API (`/v1/responses`), streaming and not.
//!
//! The Responses API has no finish reason on the wire, so tapedeck derives one from the
//! response `status` (its own documented choice, per GENAI.md): `completed` → `stop`, or
//! `tool_calls` when the output holds a `function_call` / `custom_tool_call` item;
//! `incomplete` → `length` for `max_output_tokens`, `content_filter` for that reason,
//! else the raw reason; `failed` → `error`; `cancelled` → `cancelled`; `queued` and
//! `in_progress` (background mode, or a cut stream) → none.
//!
//! Streams end with a terminal event (`response.completed`, `.incomplete`, `.failed`)
//! carrying the whole response object, which is read exactly like a non-stream body.
//! When the recording was cut before it, the output is rebuilt from the
//! `response.output_item.*` and delta events that did arrive. Tool calls are keyed by
//! `call_id` (the join key with `function_call_output`), not the item's `fc_...` id.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::fields::{self, array, count, float, nonempty, string};
use super::openai_chat::{content_parts, error_of};
use super::recognise::Route;
use super::{genai, record_error, sse, ExchangeView, JsonOrStream, LlmCall, ToolCall, ToolResult};

pub(super) fn parse(x: &ExchangeView, route: &Route) -> LlmCall {
    JsonOrStream {
        request: read_request,
        stream: read_stream,
        whole: read_response_object,
    }
    .parse(x, route)
}

fn read_request(call: &mut LlmCall, req: &Value) {
    call.request_model = nonempty(req, "model");
    call.stream = fields::flag(req, "stream") == Some(true);
    call.max_tokens = count(req, "max_output_tokens");
    call.temperature = float(req, "temperature");
    call.top_p = float(req, "top_p");
    call.conversation_id = conversation_id(req.get("conversation"));
    call.tool_definitions = array(req, "tools")
        .iter()
        .filter_map(|t| {
            nonempty(t, "name")
                .or_else(|| nonempty(t, "server_label"))
                .or_else(|| nonempty(t, "type"))
        })
        .collect();
    call.system_instructions = match req.get("instructions") {
        Some(Value::String(s)) if !s.is_empty() => Some(json!([genai::text(s)])),
        Some(Value::Array(items)) if !items.is_empty() => {
            let parts: Vec<Value> = items
                .iter()
                .flat_map(|i| match i.get("content") {
                    Some(c) => content_parts(c),
                    None => content_parts(i),
                })
                .collect();
            Some(Value::Array(parts))
        }
        _ => None,
    };
    let (messages, results) = match req.get("input") {
        Some(Value::String(s)) => (
            vec![genai::message("user", vec![genai::text(s)])],
            Vec::new(),
        ),
        Some(Value::Array(items)) => history(items),
        _ => (Vec::new(), Vec::new()),
    };
    call.input_messages = Value::Array(messages);
    call.tool_results = results;
}

/// `conversation` is either an id string or `{"id": ...}`.
fn conversation_id(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        obj @ Value::Object(_) => nonempty(obj, "id"),
        _ => None,
    }
}

/// Normalises an `input` item list and collects the tool results it carries.
fn history(items: &[Value]) -> (Vec<Value>, Vec<ToolResult>) {
    let mut out = Vec::new();
    let mut results = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for item in items {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" => {
                let role = genai::role(item.get("role").and_then(Value::as_str).unwrap_or("user"));
                let parts = match item.get("content") {
                    Some(Value::Array(ps)) => ps.iter().map(input_part).collect(),
                    Some(other) => content_parts(other),
                    None => Vec::new(),
                };
                out.push(genai::message(role, parts));
            }
            "function_call" | "custom_tool_call" => {
                let id = nonempty(item, "call_id");
                let name = string(item, "name").unwrap_or_default();
                let args = match kind {
                    "function_call" => fields::arguments_value(item.get("arguments")),
                    _ => item.get("input").cloned().unwrap_or(Value::Null),
                };
                if let Some(id) = &id {
                    names.insert(id.clone(), name.clone());
                }
                genai::push_merged(
                    &mut out,
                    "assistant",
                    vec![genai::tool_call(id.as_deref(), &name, &args)],
                );
            }
            "function_call_output" | "custom_tool_call_output" => {
                let id = nonempty(item, "call_id");
                let text = fields::text_of(item.get("output").unwrap_or(&Value::Null));
                genai::push_merged(
                    &mut out,
                    "tool",
                    vec![genai::tool_call_response(
                        id.as_deref(),
                        &Value::String(text.clone()),
                    )],
                );
                let name = id.as_ref().and_then(|id| names.get(id).cloned());
                results.push(ToolResult {
                    id,
                    name,
                    content: text,
                    is_error: false,
                });
            }
            "reasoning" => {
                let text = reasoning_text(item);
                if !text.is_empty() {
                    genai::push_merged(&mut out, "assistant", vec![genai::reasoning(&text)]);
                }
            }
            "item_reference" => {}
            other => genai::push_merged(
                &mut out,
                "assistant",
                vec![genai::server_tool_call(
                    nonempty(item, "id").as_deref(),
                    other,
                    item,
                )],
            ),
        }
    }
    (out, results)
}

/// A Responses content part (`input_text`, `input_image`, `input_file`, ...).
fn input_part(p: &Value) -> Value {
    match p.get("type").and_then(Value::as_str).unwrap_or("") {
        "input_image" => match (nonempty(p, "image_url"), nonempty(p, "file_id")) {
            (Some(url), _) => genai::url_part("image", &url),
            (None, Some(id)) => genai::file("image", &id),
            (None, None) => genai::generic("input_image"),
        },
        "input_file" => {
            if let Some(id) = nonempty(p, "file_id") {
                genai::file("file", &id)
            } else if let Some(url) = nonempty(p, "file_url") {
                genai::uri("file", None, &url)
            } else if let Some(data) = nonempty(p, "file_data") {
                genai::url_part("file", &data)
            } else {
                genai::generic("input_file")
            }
        }
        _ => content_parts(&Value::Array(vec![p.clone()]))
            .pop()
            .unwrap_or_else(|| genai::generic("unknown")),
    }
}

/// The readable text of a reasoning item: its summary, or (open-weight models served
/// through the Responses API) its `reasoning_text` content.
fn reasoning_text(item: &Value) -> String {
    let summary = fields::text_of(item.get("summary").unwrap_or(&Value::Null));
    if !summary.is_empty() {
        return summary;
    }
    fields::text_of(item.get("content").unwrap_or(&Value::Null))
}

/// Reads a whole response object (non-stream body or a terminal event's `response`).
fn read_response_object(call: &mut LlmCall, r: &Value, status: Option<u16>) {
    if let Some((kind, message)) = error_of(r) {
        record_error(call, kind, message, status);
    }
    if r.get("object")
        .and_then(Value::as_str)
        .is_some_and(|o| o != "response")
    {
        return;
    }
    if let Some(id) = nonempty(r, "id") {
        call.response_id = Some(id);
    }
    if let Some(m) = nonempty(r, "model") {
        call.response_model = Some(m);
    }
    if let Some(c) = conversation_id(r.get("conversation")) {
        call.conversation_id = Some(c);
    }
    if let Some(u) = r.get("usage").filter(|u| u.is_object()) {
        call.input_tokens = count(u, "input_tokens");
        call.output_tokens = count(u, "output_tokens");
        call.cache_read_tokens = u
            .get("input_tokens_details")
            .and_then(|d| count(d, "cached_tokens"));
        call.reasoning_tokens = u
            .get("output_tokens_details")
            .and_then(|d| count(d, "reasoning_tokens"));
    }
    let output = array(r, "output");
    let mut parts = Vec::new();
    let mut calls_tools = false;
    for item in output {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "message" => {
                for c in array(item, "content") {
                    match c.get("type").and_then(Value::as_str).unwrap_or("") {
                        "output_text" | "text" => {
                            let t = string(c, "text").unwrap_or_default();
                            call.output_text.push_str(&t);
                            parts.push(genai::text(&t));
                        }
                        "refusal" => parts.push(json!({
                            "type": "refusal",
                            "content": string(c, "refusal").unwrap_or_default()
                        })),
                        other => parts.push(genai::generic(other)),
                    }
                }
            }
            "function_call" | "custom_tool_call" => {
                calls_tools = true;
                let id = nonempty(item, "call_id");
                let name = string(item, "name").unwrap_or_default();
                let arguments = match kind {
                    "function_call" => fields::arguments_value(item.get("arguments")),
                    _ => item.get("input").cloned().unwrap_or(Value::Null),
                };
                parts.push(genai::tool_call(id.as_deref(), &name, &arguments));
                call.tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments,
                });
            }
            "reasoning" => {
                let text = reasoning_text(item);
                if !text.is_empty() {
                    parts.push(genai::reasoning(&text));
                }
            }
            "" => {}
            other => parts.push(genai::server_tool_call(
                nonempty(item, "id").as_deref(),
                other,
                item,
            )),
        }
    }
    let status_raw = string(r, "status");
    let reason = r
        .get("incomplete_details")
        .and_then(|d| nonempty(d, "reason"));
    let finish = match status_raw.as_deref() {
        Some("completed") => Some(if calls_tools { "tool_calls" } else { "stop" }.to_string()),
        // Compatible servers sometimes omit `status` on a finished response.
        None if !output.is_empty() => {
            Some(if calls_tools { "tool_calls" } else { "stop" }.to_string())
        }
        Some("incomplete") => Some(match reason.as_deref() {
            Some("max_output_tokens") => "length".to_string(),
            Some(other) => other.to_string(),
            None => "incomplete".to_string(),
        }),
        Some("failed") => Some("error".to_string()),
        Some("cancelled") => Some("cancelled".to_string()),
        _ => None,
    };
    if let Some(f) = &finish {
        call.finish_reasons = vec![f.clone()];
    }
    if !output.is_empty() || finish.is_some() {
        let out_finish = match &finish {
            Some(f) => genai::output_finish_reason(f),
            None if call.error_type.is_some() => "error".to_string(),
            None => super::FINISH_UNKNOWN.to_string(),
        };
        call.output_messages = json!([genai::output_message(parts, &out_finish)]);
    }
}

/// Reads an SSE stream: the terminal event's response when present, else the output
/// rebuilt from item and delta events.
fn read_stream(call: &mut LlmCall, x: &ExchangeView) {
    let mut terminal: Option<Value> = None;
    let mut latest: Option<Value> = None;
    let mut items: BTreeMap<u64, Value> = BTreeMap::new();
    for (name, ev) in sse::json_events(x.response_body) {
        let kind = ev
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(name)
            .unwrap_or_default();
        match kind.as_str() {
            "response.created" | "response.in_progress" | "response.queued" => {
                latest = ev.get("response").cloned();
            }
            "response.completed"
            | "response.incomplete"
            | "response.failed"
            | "response.cancelled" => {
                terminal = ev.get("response").cloned();
            }
            "response.output_item.added" | "response.output_item.done" => {
                if let (Some(i), Some(item)) = (count(&ev, "output_index"), ev.get("item")) {
                    items.insert(i, item.clone());
                }
            }
            "response.output_text.delta" => {
                if let Some(item) = count(&ev, "output_index").and_then(|i| items.get_mut(&i)) {
                    let ci = count(&ev, "content_index").unwrap_or(0);
                    append_text(
                        item,
                        ci,
                        ev.get("delta").and_then(Value::as_str).unwrap_or(""),
                    );
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some(item) = count(&ev, "output_index").and_then(|i| items.get_mut(&i)) {
                    let delta = ev.get("delta").and_then(Value::as_str).unwrap_or("");
                    append_field(item, "arguments", delta);
                }
            }
            "response.function_call_arguments.done" => {
                if let Some(item) = count(&ev, "output_index").and_then(|i| items.get_mut(&i)) {
                    if let (Some(obj), Some(a)) = (item.as_object_mut(), ev.get("arguments")) {
                        obj.insert("arguments".into(), a.clone());
                    }
                }
            }
            "error" => {
                let e = ev.get("error").filter(|e| e.is_object()).unwrap_or(&ev);
                let kind = fields::code(e.get("code"))
                    .or_else(|| nonempty(e, "type").filter(|t| t != "error"));
                record_error(call, kind, string(e, "message"), x.status);
            }
            _ => {}
        }
    }
    let had_error = call
        .error_type
        .is_some()
        .then(|| (call.error_type.clone(), call.error_message.clone()));
    let Some(mut base) = terminal
        .or(latest)
        .or_else(|| (!items.is_empty()).then(|| json!({"object": "response"})))
    else {
        return;
    };
    let empty_output = array(&base, "output").is_empty();
    if empty_output && !items.is_empty() {
        if let Some(obj) = base.as_object_mut() {
            obj.insert("output".into(), Value::Array(items.into_values().collect()));
        }
    }
    read_response_object(call, &base, x.status);
    // An in-stream `error` event is more specific than whatever the object says.
    if let Some((kind, message)) = had_error {
        call.error_type = kind;
        call.error_message = message;
    }
}

/// Appends a text delta to `content[ci].text` of a message item, creating the part if
/// the `content_part.added` event was lost.
fn append_text(item: &mut Value, ci: u64, delta: &str) {
    let Some(obj) = item.as_object_mut() else {
        return;
    };
    let content = obj
        .entry("content")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(parts) = content.as_array_mut() else {
        return;
    };
    let ci = usize::try_from(ci).unwrap_or(usize::MAX);
    if ci > parts.len() + 16 {
        // A bogus index from a corrupt stream must not make us allocate without bound.
        return;
    }
    while parts.len() <= ci {
        parts.push(json!({"type": "output_text", "text": ""}));
    }
    if let Some(part) = parts.get_mut(ci) {
        append_field(part, "text", delta);
    }
}

fn append_field(v: &mut Value, key: &str, delta: &str) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let entry = obj
        .entry(key)
        .or_insert_with(|| Value::String(String::new()));
    match entry {
        Value::String(s) => s.push_str(delta),
        other => *other = Value::String(delta.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_any, ExchangeView, LlmCall};
    use super::*;

    fn run(req: &str, status: u16, resp: &str) -> LlmCall {
        let x = ExchangeView {
            method: "POST",
            url: "https://api.openai.com/v1/responses",
            request_headers: &[],
            request_body: req.as_bytes(),
            status: Some(status),
            response_headers: &[],
            response_body: resp.as_bytes(),
        };
        parse_any(&x).expect("recognised")
    }

    const REQ: &str = r#"{"model":"gpt-4.1","instructions":"Be brief.","input":"Weather in Paris?",
      "tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"},"strict":true},{"type":"web_search_preview"}],
      "max_output_tokens":500,"temperature":0.7,"top_p":1.0,"conversation":{"id":"conv_68"}}"#;

    const RESP: &str = r#"{"id":"resp_67ccd2bed1ec8190","object":"response","created_at":1741476542,"status":"completed",
      "error":null,"incomplete_details":null,"instructions":"Be brief.","max_output_tokens":500,"model":"gpt-4.1-2025-04-14",
      "output":[
        {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"Need weather."}]},
        {"type":"function_call","id":"fc_12345","call_id":"call_12345","name":"get_weather","arguments":"{\"location\":\"Paris\"}","status":"completed"},
        {"type":"function_call","id":"fc_67890","call_id":"call_67890","name":"get_weather","arguments":"{\"location\":\"Lyon\"}","status":"completed"}
      ],
      "parallel_tool_calls":true,"previous_response_id":null,
      "usage":{"input_tokens":291,"input_tokens_details":{"cached_tokens":128},"output_tokens":23,"output_tokens_details":{"reasoning_tokens":10},"total_tokens":314},
      "conversation":{"id":"conv_68"}}"#;

    #[test]
    fn non_streaming_function_calls() {
        let c = run(REQ, 200, RESP);
        assert_eq!(c.provider, "openai");
        assert_eq!(
            (c.operation.as_str(), c.api.as_deref()),
            ("chat", Some("responses"))
        );
        assert_eq!(c.request_model.as_deref(), Some("gpt-4.1"));
        assert_eq!(c.response_model.as_deref(), Some("gpt-4.1-2025-04-14"));
        assert_eq!(c.response_id.as_deref(), Some("resp_67ccd2bed1ec8190"));
        assert_eq!(c.conversation_id.as_deref(), Some("conv_68"));
        assert_eq!((c.input_tokens, c.output_tokens), (Some(291), Some(23)));
        assert_eq!(
            (c.cache_read_tokens, c.reasoning_tokens),
            (Some(128), Some(10))
        );
        assert_eq!(c.finish_reasons, vec!["tool_calls"]);
        assert_eq!(c.max_tokens, Some(500));
        assert_eq!(
            c.tool_definitions,
            vec!["get_weather", "web_search_preview"]
        );
        assert_eq!(
            c.system_instructions,
            Some(json!([{"type": "text", "content": "Be brief."}]))
        );
        assert_eq!(
            c.input_messages,
            json!([{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}])
        );
        assert_eq!(
            c.tool_calls,
            vec![
                ToolCall {
                    id: Some("call_12345".into()),
                    name: "get_weather".into(),
                    arguments: json!({"location": "Paris"})
                },
                ToolCall {
                    id: Some("call_67890".into()),
                    name: "get_weather".into(),
                    arguments: json!({"location": "Lyon"})
                },
            ]
        );
        assert_eq!(
            c.output_messages[0]["parts"][0],
            json!({"type": "reasoning", "content": "Need weather."})
        );
        assert_eq!(c.output_messages[0]["finish_reason"], "tool_call");
    }

    #[test]
    fn follow_up_carries_function_call_outputs() {
        let req = r#"{"model":"gpt-4.1","previous_response_id":"resp_67ccd2bed1ec8190","input":[
          {"type":"function_call","id":"fc_12345","call_id":"call_12345","name":"get_weather","arguments":"{\"location\":\"Paris\"}"},
          {"type":"function_call_output","call_id":"call_12345","output":"{\"temp\":18}"},
          {"type":"function_call_output","call_id":"call_67890","output":[{"type":"input_text","text":"timeout"}]},
          {"role":"user","content":[{"type":"input_text","text":"thanks"},{"type":"input_image","image_url":"https://x.test/a.png"}]}
        ]}"#;
        let resp = r#"{"id":"resp_2","object":"response","status":"completed","model":"gpt-4.1-2025-04-14",
          "output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Paris is 18C.","annotations":[]}]}],
          "usage":{"input_tokens":400,"output_tokens":6,"total_tokens":406}}"#;
        let c = run(req, 200, resp);
        assert_eq!(
            c.tool_results,
            vec![
                ToolResult {
                    id: Some("call_12345".into()),
                    name: Some("get_weather".into()),
                    content: "{\"temp\":18}".into(),
                    is_error: false
                },
                ToolResult {
                    id: Some("call_67890".into()),
                    name: None,
                    content: "timeout".into(),
                    is_error: false
                },
            ]
        );
        assert_eq!(c.output_text, "Paris is 18C.");
        assert_eq!(c.finish_reasons, vec!["stop"]);
        assert_eq!(
            c.input_messages,
            json!([
                {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_12345", "name": "get_weather", "arguments": {"location": "Paris"}}]},
                {"role": "tool", "parts": [
                    {"type": "tool_call_response", "id": "call_12345", "response": "{\"temp\":18}"},
                    {"type": "tool_call_response", "id": "call_67890", "response": "timeout"}
                ]},
                {"role": "user", "parts": [
                    {"type": "text", "content": "thanks"},
                    {"type": "uri", "modality": "image", "uri": "https://x.test/a.png"}
                ]}
            ])
        );
    }

    fn sse_event(kind: &str, data: &str) -> String {
        format!("event: {kind}\ndata: {data}\n\n")
    }

    fn stream_body(cut_before_terminal: bool) -> String {
        let mut s = String::new();
        s += &sse_event(
            "response.created",
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_S","object":"response","status":"in_progress","model":"gpt-4.1-2025-04-14","output":[],"usage":null}}"#,
        );
        s += &sse_event(
            "response.in_progress",
            r#"{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_S","object":"response","status":"in_progress","model":"gpt-4.1-2025-04-14","output":[]}}"#,
        );
        s += &sse_event(
            "response.output_item.added",
            r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_S","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
        );
        s += &sse_event(
            "response.content_part.added",
            r#"{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_S","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}"#,
        );
        s += &sse_event(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_S","output_index":0,"content_index":0,"delta":"Checking"}"#,
        );
        s += &sse_event(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_S","output_index":0,"content_index":0,"delta":" now."}"#,
        );
        s += &sse_event(
            "response.output_item.added",
            r#"{"type":"response.output_item.added","sequence_number":6,"output_index":1,"item":{"id":"fc_S","type":"function_call","status":"in_progress","arguments":"","call_id":"call_S","name":"get_weather"}}"#,
        );
        s += &sse_event(
            "response.function_call_arguments.delta",
            r#"{"type":"response.function_call_arguments.delta","sequence_number":7,"item_id":"fc_S","output_index":1,"delta":"{\"location\":"}"#,
        );
        s += &sse_event(
            "response.function_call_arguments.delta",
            r#"{"type":"response.function_call_arguments.delta","sequence_number":8,"item_id":"fc_S","output_index":1,"delta":"\"Paris\"}"}"#,
        );
        if cut_before_terminal {
            return s;
        }
        s += &sse_event(
            "response.function_call_arguments.done",
            r#"{"type":"response.function_call_arguments.done","sequence_number":9,"item_id":"fc_S","output_index":1,"arguments":"{\"location\":\"Paris\"}"}"#,
        );
        s += &sse_event("response.completed", r#"{"type":"response.completed","sequence_number":10,"response":{"id":"resp_S","object":"response","status":"completed","model":"gpt-4.1-2025-04-14",
          "output":[{"id":"msg_S","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Checking now.","annotations":[]}]},
                    {"id":"fc_S","type":"function_call","status":"completed","arguments":"{\"location\":\"Paris\"}","call_id":"call_S","name":"get_weather"}],
          "usage":{"input_tokens":37,"input_tokens_details":{"cached_tokens":0},"output_tokens":11,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48}}}"#.replace('\n', " ").as_str());
        s
    }

    #[test]
    fn streaming_reads_the_terminal_event() {
        let c = run(
            r#"{"model":"gpt-4.1","stream":true,"input":"w?"}"#,
            200,
            &stream_body(false),
        );
        assert!(c.stream);
        assert_eq!(c.response_id.as_deref(), Some("resp_S"));
        assert_eq!(c.output_text, "Checking now.");
        assert_eq!(
            c.tool_calls,
            vec![ToolCall {
                id: Some("call_S".into()),
                name: "get_weather".into(),
                arguments: json!({"location": "Paris"})
            }]
        );
        assert_eq!(c.finish_reasons, vec!["tool_calls"]);
        assert_eq!(
            (c.input_tokens, c.output_tokens, c.cache_read_tokens),
            (Some(37), Some(11), Some(0))
        );
    }

    #[test]
    fn cut_stream_is_rebuilt_from_deltas() {
        let c = run(
            r#"{"model":"gpt-4.1","stream":true,"input":"w?"}"#,
            200,
            &stream_body(true),
        );
        assert_eq!(c.response_id.as_deref(), Some("resp_S"));
        assert_eq!(c.output_text, "Checking now.");
        assert_eq!(c.tool_calls[0].arguments, json!({"location": "Paris"}));
        assert!(c.finish_reasons.is_empty());
        assert_eq!(c.output_messages[0]["finish_reason"], "unknown");
        assert_eq!(c.input_tokens, None);
    }

    #[test]
    fn incomplete_and_failed_statuses() {
        let inc = r#"{"id":"resp_i","object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"model":"o4-mini","output":[{"type":"reasoning","id":"rs","summary":[]}],"usage":{"input_tokens":10,"output_tokens":16,"output_tokens_details":{"reasoning_tokens":16}}}"#;
        let c = run(
            r#"{"model":"o4-mini","input":"x","max_output_tokens":16}"#,
            200,
            inc,
        );
        assert_eq!(c.finish_reasons, vec!["length"]);
        assert_eq!(c.output_messages[0]["finish_reason"], "length");
        assert_eq!(c.reasoning_tokens, Some(16));
        let failed = sse_event(
            "response.failed",
            r#"{"type":"response.failed","sequence_number":3,"response":{"id":"resp_f","object":"response","status":"failed","error":{"code":"server_error","message":"The model failed to generate a response."},"model":"gpt-4.1","output":[]}}"#,
        );
        let c = run(
            r#"{"model":"gpt-4.1","stream":true,"input":"x"}"#,
            200,
            &failed,
        );
        assert_eq!(c.finish_reasons, vec!["error"]);
        assert_eq!(c.error_type.as_deref(), Some("server_error"));
        assert_eq!(
            c.error_message.as_deref(),
            Some("The model failed to generate a response.")
        );
    }

    #[test]
    fn error_event_and_http_error() {
        let body = sse_event(
            "error",
            r#"{"type":"error","sequence_number":1,"code":"rate_limit_exceeded","message":"Rate limit reached","param":null}"#,
        );
        let c = run(
            r#"{"model":"gpt-4.1","stream":true,"input":"x"}"#,
            200,
            &body,
        );
        assert_eq!(c.error_type.as_deref(), Some("rate_limit_exceeded"));
        let c = run(
            r#"{"model":"gpt-4.1","input":"x"}"#,
            400,
            r#"{"error":{"message":"Your input exceeds the context window of this model.","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(c.error_type.as_deref(), Some("context_length_exceeded"));
        assert_eq!(c.output_messages, Value::Null);
    }
}
