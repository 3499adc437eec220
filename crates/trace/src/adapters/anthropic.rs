//! Anthropic Messages (`/v1/messages`), streaming and not; also Claude on Vertex
//! (`:rawPredict` / `:streamRawPredict`) and on Bedrock `invoke`, which carry the same
//! body with the model in the URL.
//!
//! Anthropic's `usage.input_tokens` excludes cached tokens, while the GenAI conventions
//! want them included, so input = `input_tokens` + `cache_read_input_tokens` +
//! `cache_creation_input_tokens`. Streams are rebuilt from `message_start` (id, model,
//! initial usage), per-index `content_block_start` / `_delta` / `_stop` (tool input is
//! the concatenated `input_json_delta.partial_json`, parsed at the end; empty means
//! `{}`), and `message_delta` (stop reason, cumulative usage). Tool results sit in user
//! messages as `tool_result` blocks; they are split out as `tool` messages because that
//! is the conventions' role for them.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::fields::{self, array, count, float, nonempty, string};
use super::recognise::Route;
use super::{genai, record_error, sse, ExchangeView, JsonOrStream, LlmCall, ToolCall, ToolResult};

pub(super) fn parse(x: &ExchangeView, route: &Route) -> LlmCall {
    JsonOrStream {
        request: read_request,
        stream: read_stream,
        whole: read_message,
    }
    .parse(x, route)
}

fn read_request(call: &mut LlmCall, req: &Value) {
    call.request_model = nonempty(req, "model");
    call.stream = fields::flag(req, "stream") == Some(true);
    call.max_tokens = count(req, "max_tokens");
    call.temperature = float(req, "temperature");
    call.top_p = float(req, "top_p");
    call.top_k = float(req, "top_k");
    call.stop_sequences = fields::strings(req.get("stop_sequences"));
    call.tool_definitions = array(req, "tools")
        .iter()
        .filter_map(|t| nonempty(t, "name").or_else(|| nonempty(t, "type")))
        .collect();
    call.system_instructions = match req.get("system") {
        Some(Value::String(s)) if !s.is_empty() => Some(json!([genai::text(s)])),
        Some(Value::Array(blocks)) if !blocks.is_empty() => {
            Some(Value::Array(blocks.iter().map(input_block).collect()))
        }
        _ => None,
    };
    let (messages, results) = history(array(req, "messages"));
    call.input_messages = Value::Array(messages);
    call.tool_results = results;
}

fn history(messages: &[Value]) -> (Vec<Value>, Vec<ToolResult>) {
    let mut out = Vec::new();
    let mut results = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for m in messages {
        let role = genai::role(m.get("role").and_then(Value::as_str).unwrap_or("user"));
        let blocks = match m.get("content") {
            Some(Value::String(s)) => {
                out.push(genai::message(role, vec![genai::text(s)]));
                continue;
            }
            Some(Value::Array(blocks)) => blocks.as_slice(),
            _ => {
                out.push(genai::message(role, Vec::new()));
                continue;
            }
        };
        // One provider message may become several: tool results move to `tool`
        // messages, in the order they appear.
        let mut segments: Vec<(&str, Vec<Value>)> = Vec::new();
        for b in blocks {
            let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
            let (target, part) = match kind {
                "tool_result" => {
                    let id = nonempty(b, "tool_use_id");
                    let text = fields::text_of(b.get("content").unwrap_or(&Value::Null));
                    results.push(ToolResult {
                        name: id.as_ref().and_then(|i| names.get(i).cloned()),
                        id: id.clone(),
                        content: text.clone(),
                        is_error: fields::flag(b, "is_error") == Some(true),
                    });
                    (
                        "tool",
                        genai::tool_call_response(id.as_deref(), &Value::String(text)),
                    )
                }
                "tool_use" => {
                    if let (Some(id), Some(name)) = (nonempty(b, "id"), string(b, "name")) {
                        names.insert(id, name);
                    }
                    (role, input_block(b))
                }
                _ => (role, input_block(b)),
            };
            match segments.last_mut() {
                Some((r, parts)) if *r == target => parts.push(part),
                _ => segments.push((target, vec![part])),
            }
        }
        if segments.is_empty() {
            out.push(genai::message(role, Vec::new()));
        }
        for (r, parts) in segments {
            out.push(genai::message(r, parts));
        }
    }
    (out, results)
}

/// One content block (request or response side) as a GenAI part.
fn input_block(b: &Value) -> Value {
    let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" => genai::text(&string(b, "text").unwrap_or_default()),
        "thinking" => genai::reasoning(&string(b, "thinking").unwrap_or_default()),
        "tool_use" => genai::tool_call(
            nonempty(b, "id").as_deref(),
            &string(b, "name").unwrap_or_default(),
            b.get("input").unwrap_or(&json!({})),
        ),
        "server_tool_use" | "mcp_tool_use" => genai::server_tool_call(
            nonempty(b, "id").as_deref(),
            &string(b, "name").unwrap_or_default(),
            b.get("input").unwrap_or(&Value::Null),
        ),
        k if k.ends_with("_tool_result") => genai::server_tool_call_response(
            nonempty(b, "tool_use_id").as_deref(),
            b.get("content").unwrap_or(&Value::Null),
        ),
        "image" | "document" => {
            let modality = if kind == "image" { "image" } else { "file" };
            let source = b.get("source").unwrap_or(&Value::Null);
            let media = string(source, "media_type");
            match source.get("type").and_then(Value::as_str).unwrap_or("") {
                "base64" => genai::blob(
                    if kind == "image" {
                        "image"
                    } else {
                        genai::modality(media.as_deref())
                    },
                    media.as_deref(),
                    source.get("data").and_then(Value::as_str).unwrap_or(""),
                ),
                "url" => genai::uri(
                    modality,
                    media.as_deref(),
                    &string(source, "url").unwrap_or_default(),
                ),
                "file" => genai::file(modality, &string(source, "file_id").unwrap_or_default()),
                "text" => genai::text(&string(source, "data").unwrap_or_default()),
                _ => genai::generic(kind),
            }
        }
        "" => genai::generic("unknown"),
        other => genai::generic(other),
    }
}

/// Reads a whole message body (or an error body).
fn read_message(call: &mut LlmCall, m: &Value, status: Option<u16>) {
    if m.get("type").and_then(Value::as_str) == Some("error")
        || m.get("error").is_some_and(Value::is_object)
    {
        let e = m.get("error").unwrap_or(&Value::Null);
        record_error(call, nonempty(e, "type"), string(e, "message"), status);
        return;
    }
    call.response_id = nonempty(m, "id");
    call.response_model = nonempty(m, "model");
    if let Some(u) = m.get("usage").filter(|u| u.is_object()) {
        read_usage(call, u);
    }
    let blocks = array(m, "content");
    let stop = nonempty(m, "stop_reason");
    if blocks.is_empty() && stop.is_none() && m.get("content").is_none() {
        return;
    }
    finish(call, blocks, stop);
}

/// Usage from a message or a `message_delta`; fields present override earlier values,
/// because `message_delta` usage is cumulative.
fn read_usage(call: &mut LlmCall, u: &Value) {
    if let Some(v) = count(u, "cache_read_input_tokens") {
        call.cache_read_tokens = Some(v);
    }
    if let Some(v) = count(u, "cache_creation_input_tokens") {
        call.cache_creation_tokens = Some(v);
    }
    if let Some(v) = count(u, "output_tokens") {
        call.output_tokens = Some(v);
    }
    if let Some(base) = count(u, "input_tokens") {
        let cached = fields::add(call.cache_read_tokens, call.cache_creation_tokens);
        call.input_tokens = fields::add(Some(base), cached);
    }
}

fn finish(call: &mut LlmCall, blocks: &[Value], stop: Option<String>) {
    let mut parts = Vec::new();
    for b in blocks {
        let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == "text" {
            call.output_text
                .push_str(b.get("text").and_then(Value::as_str).unwrap_or(""));
        }
        if kind == "tool_use" {
            call.tool_calls.push(ToolCall {
                id: nonempty(b, "id"),
                name: string(b, "name").unwrap_or_default(),
                arguments: b.get("input").cloned().unwrap_or_else(|| json!({})),
            });
        }
        parts.push(input_block(b));
    }
    let finish = match &stop {
        Some(s) => {
            call.finish_reasons = vec![s.clone()];
            genai::output_finish_reason(s)
        }
        None if call.error_type.is_some() => "error".to_string(),
        None => super::FINISH_UNKNOWN.to_string(),
    };
    call.output_messages = json!([genai::output_message(parts, &finish)]);
}

/// Rebuilds a streamed message from its events.
fn read_stream(call: &mut LlmCall, x: &ExchangeView) {
    let mut blocks: BTreeMap<u64, Value> = BTreeMap::new();
    let mut partial_json: BTreeMap<u64, String> = BTreeMap::new();
    let mut stop: Option<String> = None;
    let mut started = false;
    let mut usage_base: Option<u64> = None;
    for (name, ev) in sse::stream_events(x) {
        let kind = ev
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(name)
            .unwrap_or_default();
        match kind.as_str() {
            "message_start" => {
                started = true;
                let m = ev.get("message").unwrap_or(&Value::Null);
                call.response_id = nonempty(m, "id");
                call.response_model = nonempty(m, "model");
                if let Some(u) = m.get("usage").filter(|u| u.is_object()) {
                    usage_base = count(u, "input_tokens").or(usage_base);
                    read_usage(call, u);
                }
            }
            "content_block_start" => {
                let i = count(&ev, "index").unwrap_or(blocks.len() as u64);
                if let Some(b) = ev.get("content_block") {
                    blocks.insert(i, b.clone());
                }
            }
            "content_block_delta" => {
                let i = count(&ev, "index").unwrap_or(0);
                let d = ev.get("delta").unwrap_or(&Value::Null);
                let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                match d.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text_delta" => append(&mut blocks, i, "text", "text", &text("text")),
                    "thinking_delta" => {
                        append(&mut blocks, i, "thinking", "thinking", &text("thinking"))
                    }
                    "input_json_delta" => partial_json
                        .entry(i)
                        .or_default()
                        .push_str(&text("partial_json")),
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(s) = ev.get("delta").and_then(|d| nonempty(d, "stop_reason")) {
                    stop = Some(s);
                }
                if let Some(u) = ev.get("usage").filter(|u| u.is_object()) {
                    usage_base = count(u, "input_tokens").or(usage_base);
                    read_usage(call, u);
                    // Cache counts may arrive here without a fresh `input_tokens`; the
                    // total must still be base + cache read + cache creation.
                    if let Some(base) = usage_base {
                        let cached =
                            fields::add(call.cache_read_tokens, call.cache_creation_tokens);
                        call.input_tokens = fields::add(Some(base), cached);
                    }
                }
            }
            "error" => {
                let e = ev.get("error").unwrap_or(&Value::Null);
                record_error(call, nonempty(e, "type"), string(e, "message"), x.status);
            }
            _ => {}
        }
    }
    // Tool input is the concatenated JSON fragments; a stream cut mid-input keeps the
    // raw text rather than losing it.
    for (i, raw) in partial_json {
        if let Some(obj) = blocks.get_mut(&i).and_then(Value::as_object_mut) {
            obj.insert("input".into(), fields::arguments(&raw));
        }
    }
    if started || !blocks.is_empty() {
        let blocks: Vec<Value> = blocks.into_values().collect();
        finish(call, &blocks, stop);
    }
}

/// Appends a delta to a block's text field, creating the block if its start was lost.
fn append(blocks: &mut BTreeMap<u64, Value>, i: u64, kind: &str, field: &str, delta: &str) {
    let block = blocks
        .entry(i)
        .or_insert_with(|| json!({"type": kind, field: ""}));
    if let Some(obj) = block.as_object_mut() {
        let entry = obj
            .entry(field)
            .or_insert_with(|| Value::String(String::new()));
        if let Value::String(s) = entry {
            s.push_str(delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_any, ExchangeView, LlmCall};
    use super::*;

    fn run(url: &str, req: &str, status: u16, resp: &str) -> LlmCall {
        let headers = vec![("anthropic-version".to_string(), "2023-06-01".to_string())];
        let x = ExchangeView {
            method: "POST",
            url,
            request_headers: &headers,
            request_body: req.as_bytes(),
            status: Some(status),
            response_headers: &[],
            response_body: resp.as_bytes(),
        };
        parse_any(&x).expect("recognised")
    }

    const URL: &str = "https://api.anthropic.com/v1/messages";

    const REQ: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"temperature":0.5,"top_k":40,"stop_sequences":["STOP_HERE"],
      "system":[{"type":"text","text":"You are a weather bot.","cache_control":{"type":"ephemeral"}}],
      "tools":[{"name":"get_weather","description":"Get weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}}}}],
      "messages":[{"role":"user","content":"Weather in Paris and London?"}]}"#;

    #[test]
    fn non_streaming_parallel_tool_use() {
        let resp = r#"{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
          "content":[{"type":"text","text":"Let me check both."},
                     {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"location":"Paris"}},
                     {"type":"tool_use","id":"toolu_01B","name":"get_weather","input":{"location":"London"}}],
          "stop_reason":"tool_use","stop_sequence":null,
          "usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":300,"output_tokens":95}}"#;
        let c = run(URL, REQ, 200, resp);
        assert_eq!(
            (c.provider.as_str(), c.operation.as_str(), c.api.as_deref()),
            ("anthropic", "chat", Some("messages"))
        );
        assert_eq!(c.request_model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(
            c.response_model.as_deref(),
            Some("claude-sonnet-4-5-20250929")
        );
        assert_eq!(c.response_id.as_deref(), Some("msg_01Aq9w938a90dw8q"));
        assert_eq!(c.input_tokens, Some(412));
        assert_eq!(c.output_tokens, Some(95));
        assert_eq!(
            (c.cache_read_tokens, c.cache_creation_tokens),
            (Some(300), Some(100))
        );
        assert_eq!(c.finish_reasons, vec!["tool_use"]);
        assert_eq!(
            (c.max_tokens, c.temperature, c.top_k),
            (Some(1024), Some(0.5), Some(40.0))
        );
        assert_eq!(c.stop_sequences, vec!["STOP_HERE"]);
        assert_eq!(c.tool_definitions, vec!["get_weather"]);
        assert_eq!(
            c.system_instructions,
            Some(json!([{"type": "text", "content": "You are a weather bot."}]))
        );
        assert_eq!(c.output_text, "Let me check both.");
        assert_eq!(
            c.tool_calls,
            vec![
                ToolCall {
                    id: Some("toolu_01A".into()),
                    name: "get_weather".into(),
                    arguments: json!({"location": "Paris"})
                },
                ToolCall {
                    id: Some("toolu_01B".into()),
                    name: "get_weather".into(),
                    arguments: json!({"location": "London"})
                },
            ]
        );
        assert_eq!(c.output_messages[0]["finish_reason"], "tool_call");
        assert_eq!(c.output_messages[0]["parts"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn tool_results_with_is_error_in_the_next_request() {
        let req = r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[
          {"role":"user","content":"Weather in Paris and London?"},
          {"role":"assistant","content":[{"type":"text","text":"Let me check both."},
             {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"location":"Paris"}},
             {"type":"tool_use","id":"toolu_01B","name":"get_weather","input":{"location":"London"}}]},
          {"role":"user","content":[
             {"type":"tool_result","tool_use_id":"toolu_01A","content":"15 degrees"},
             {"type":"tool_result","tool_use_id":"toolu_01B","content":[{"type":"text","text":"ConnectionError: weather service unavailable"}],"is_error":true},
             {"type":"text","text":"Be quick."}]}]}"#;
        let resp = r#"{"id":"msg_2","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Paris is 15C."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":500,"output_tokens":8}}"#;
        let c = run(URL, req, 200, resp);
        assert_eq!(
            c.tool_results,
            vec![
                ToolResult {
                    id: Some("toolu_01A".into()),
                    name: Some("get_weather".into()),
                    content: "15 degrees".into(),
                    is_error: false
                },
                ToolResult {
                    id: Some("toolu_01B".into()),
                    name: Some("get_weather".into()),
                    content: "ConnectionError: weather service unavailable".into(),
                    is_error: true
                },
            ]
        );
        let msgs = c.input_messages.as_array().unwrap();
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[2]["role"], "tool");
        assert_eq!(
            msgs[2]["parts"][1],
            json!({"type": "tool_call_response", "id": "toolu_01B", "response": "ConnectionError: weather service unavailable"})
        );
        assert_eq!(
            msgs[3],
            json!({"role": "user", "parts": [{"type": "text", "content": "Be quick."}]})
        );
        assert_eq!(c.input_tokens, Some(500));
        assert_eq!(c.cache_read_tokens, None);
        assert_eq!(c.finish_reasons, vec!["end_turn"]);
        assert_eq!(c.output_messages[0]["finish_reason"], "stop");
    }

    fn ev(kind: &str, data: &str) -> String {
        format!("event: {kind}\ndata: {data}\n\n")
    }

    fn stream_body() -> String {
        [
            ev("message_start", r#"{"type":"message_start","message":{"id":"msg_S","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":2048,"output_tokens":2}}}"#),
            ev("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#),
            ev("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"User wants weather."}}"#),
            ev("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#),
            ev("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            ev("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#),
            ev("ping", r#"{"type": "ping"}"#),
            ev("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let's check"}}"#),
            ev("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" the weather."}}"#),
            ev("content_block_stop", r#"{"type":"content_block_stop","index":1}"#),
            ev("content_block_start", r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#),
            ev("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#),
            ev("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#),
            ev("content_block_delta", r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}"#),
            ev("content_block_stop", r#"{"type":"content_block_stop","index":2}"#),
            ev("content_block_start", r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}"#),
            ev("content_block_stop", r#"{"type":"content_block_stop","index":3}"#),
            ev("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#),
            ev("message_stop", r#"{"type":"message_stop"}"#),
        ]
        .concat()
    }

    #[test]
    fn streaming_assembles_thinking_text_and_tool_input() {
        let req = r#"{"model":"claude-sonnet-4-5","max_tokens":2048,"stream":true,"messages":[{"role":"user","content":"Weather in SF?"}]}"#;
        let c = run(URL, req, 200, &stream_body());
        assert!(c.stream);
        assert_eq!(c.response_id.as_deref(), Some("msg_S"));
        assert_eq!(
            c.response_model.as_deref(),
            Some("claude-sonnet-4-5-20250929")
        );
        assert_eq!(c.input_tokens, Some(472 + 2048));
        assert_eq!(
            (c.cache_read_tokens, c.cache_creation_tokens),
            (Some(2048), Some(0))
        );
        assert_eq!(c.output_tokens, Some(89));
        assert_eq!(c.finish_reasons, vec!["tool_use"]);
        assert_eq!(c.output_text, "Okay, let's check the weather.");
        assert_eq!(
            c.tool_calls,
            vec![
                ToolCall {
                    id: Some("toolu_01T1x1fJ34qAmk2tNTrN7Up6".into()),
                    name: "get_weather".into(),
                    arguments: json!({"location": "San Francisco, CA"})
                },
                ToolCall {
                    id: Some("toolu_02".into()),
                    name: "get_time".into(),
                    arguments: json!({})
                },
            ]
        );
        assert_eq!(
            c.output_messages[0]["parts"][0],
            json!({"type": "reasoning", "content": "User wants weather."})
        );
    }

    #[test]
    fn message_delta_usage_overrides_and_keeps_cache_in_input() {
        let body = [
            ev("message_start", r#"{"type":"message_start","message":{"id":"msg_U","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],"usage":{"input_tokens":10,"output_tokens":1}}}"#),
            ev("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":10,"cache_read_input_tokens":90,"cache_creation_input_tokens":5,"output_tokens":20}}"#),
        ]
        .concat();
        let c = run(
            URL,
            r#"{"model":"claude-haiku-4-5","max_tokens":20,"messages":[]}"#,
            200,
            &body,
        );
        assert_eq!(c.input_tokens, Some(105));
        assert_eq!(c.output_tokens, Some(20));
        assert_eq!(c.finish_reasons, vec!["max_tokens"]);
        assert_eq!(c.output_messages[0]["finish_reason"], "length");
    }

    #[test]
    fn overloaded_error_in_stream() {
        let body = [
            ev("message_start", r#"{"type":"message_start","message":{"id":"msg_O","type":"message","role":"assistant","model":"claude-opus-4-1","content":[],"usage":{"input_tokens":30,"output_tokens":1}}}"#),
            ev("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
            ev("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#),
            ev("error", r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#),
        ]
        .concat();
        let c = run(
            URL,
            r#"{"model":"claude-opus-4-1","max_tokens":100,"stream":true,"messages":[]}"#,
            200,
            &body,
        );
        assert_eq!(c.error_type.as_deref(), Some("overloaded_error"));
        assert_eq!(c.error_message.as_deref(), Some("Overloaded"));
        assert_eq!(c.output_text, "Hel");
        assert!(c.finish_reasons.is_empty());
        assert_eq!(c.output_messages[0]["finish_reason"], "error");
        assert_eq!(c.input_tokens, Some(30));
    }

    #[test]
    fn http_error_body() {
        let resp = r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"},"request_id":"req_011CS"}"#;
        let c = run(URL, REQ, 400, resp);
        assert_eq!(c.error_type.as_deref(), Some("invalid_request_error"));
        assert_eq!(
            c.error_message.as_deref(),
            Some("prompt is too long: 208310 tokens > 200000 maximum")
        );
        assert_eq!(c.output_messages, Value::Null);
    }

    #[test]
    fn cut_stream_keeps_partial_tool_input_raw() {
        let full = stream_body();
        let cut = &full[..full.find("San Francisco").unwrap()];
        let c = run(
            URL,
            r#"{"model":"m","max_tokens":5,"stream":true,"messages":[]}"#,
            200,
            cut,
        );
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].arguments, json!("{\"location\":"));
        assert!(c.finish_reasons.is_empty());
        assert_eq!(c.output_tokens, Some(2));
    }

    #[test]
    fn vertex_and_bedrock_carry_the_model_in_the_url() {
        let req = r#"{"anthropic_version":"vertex-2023-10-16","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;
        let resp = r#"{"id":"msg_v","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","usage":{"input_tokens":8,"output_tokens":2}}"#;
        let c = run("https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict", req, 200, resp);
        assert_eq!(c.provider, "gcp.vertex_ai");
        assert_eq!(c.request_model.as_deref(), Some("claude-sonnet-4@20250514"));
        assert_eq!(c.output_text, "Hello");
        let req = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;
        let c = run("https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1:0/invoke", req, 200, resp);
        assert_eq!(c.provider, "aws.bedrock");
        assert_eq!(
            c.request_model.as_deref(),
            Some("anthropic.claude-3-haiku-20240307-v1:0")
        );
        assert_eq!(c.api.as_deref(), Some("messages"));
    }
}
