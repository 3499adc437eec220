//! AWS Bedrock Runtime: Converse (`/model/{modelId}/converse`) fully, and the bare
//! facts of `invoke` calls whose body is a vendor's native format other than
//! Anthropic's (those go through the Anthropic adapter).
//!
//! `/converse-stream` answers in AWS's binary event-stream framing: its events
//! (`contentBlockStart`, `contentBlockDelta`, `messageStop`, `metadata`, exceptions) are
//! put back together as the Converse answer they stream. `/invoke-with-response-stream`
//! with a Claude model goes through the Anthropic adapter, its base64 chunks decoded as
//! that stream's events; other vendors' invoke streams carry the request side only.
//! Bedrock puts no id or model in the response body, and reports errors as a plain
//! `{"message": ...}` body with the error's name in the `x-amzn-errortype` header.
//!
//! Usage: Bedrock reports cache reads and writes beside `inputTokens`; whether
//! `inputTokens` already includes them is checked against `totalTokens` (when the total
//! equals input + output + cache, the cache was separate and is added, which is the
//! usual case for Claude models; when it equals input + output, it is already in).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::fields::{self, array, count, float, header, nonempty, string};
use super::recognise::{Api, Route};
use super::{blank, genai, record_error, ExchangeView, LlmCall, ToolCall, ToolResult};

pub(super) fn parse(x: &ExchangeView, route: &Route) -> LlmCall {
    let mut call = blank(route);
    let req = fields::json(x.request_body);
    match (route.api, &req) {
        (Api::Converse, Some(req)) => read_request(&mut call, req),
        (_, Some(req)) => read_native_request(&mut call, req),
        (_, None) => {}
    }
    let body = fields::json(x.response_body);
    if !fields::is_success(x.status) || header(x.response_headers, "x-amzn-errortype").is_some() {
        let kind = header(x.response_headers, "x-amzn-errortype")
            .and_then(|t| t.split(':').next())
            .map(str::to_string);
        let message = body
            .as_ref()
            .and_then(|b| nonempty(b, "message").or_else(|| nonempty(b, "Message")));
        record_error(&mut call, kind, message, x.status);
        if call.error_type.is_some() || call.error_message.is_some() {
            return call;
        }
    }
    if route.api == Api::Converse {
        if super::sse::is_eventstream(x) {
            call.stream = true;
            read_stream(&mut call, x);
        } else if let Some(body) = &body {
            read_response(&mut call, body);
        }
    }
    call
}

/// Puts a `converse-stream` answer back together as the Converse answer it streams, and
/// reads that; an exception message in the stream is the call's error.
fn read_stream(call: &mut LlmCall, x: &ExchangeView) {
    let mut role = "assistant".to_string();
    let mut blocks: std::collections::BTreeMap<u64, Value> = Default::default();
    let mut tool_input: HashMap<u64, String> = HashMap::new();
    let mut stop = None;
    let mut usage = None;
    for (name, ev) in super::sse::stream_events(x) {
        let i = count(&ev, "contentBlockIndex").unwrap_or(0);
        match name.as_deref().unwrap_or("") {
            "messageStart" => role = string(&ev, "role").unwrap_or(role),
            "contentBlockStart" => {
                if let Some(u) = ev.get("start").and_then(|s| s.get("toolUse")) {
                    blocks.insert(i, json!({"toolUse": {"toolUseId": u.get("toolUseId"), "name": u.get("name")}}));
                }
            }
            "contentBlockDelta" => {
                let delta = ev.get("delta").unwrap_or(&Value::Null);
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    let b = blocks.entry(i).or_insert_with(|| json!({"text": ""}));
                    if let Some(Value::String(s)) = b.get_mut("text") {
                        s.push_str(t);
                    }
                } else if let Some(input) = delta
                    .get("toolUse")
                    .and_then(|u| u.get("input"))
                    .and_then(Value::as_str)
                {
                    tool_input.entry(i).or_default().push_str(input);
                } else if let Some(t) = delta
                    .get("reasoningContent")
                    .and_then(|r| r.get("text"))
                    .and_then(Value::as_str)
                {
                    let b = blocks.entry(i).or_insert_with(
                        || json!({"reasoningContent": {"reasoningText": {"text": ""}}}),
                    );
                    if let Some(Value::String(s)) =
                        b.pointer_mut("/reasoningContent/reasoningText/text")
                    {
                        s.push_str(t);
                    }
                }
            }
            "messageStop" => stop = ev.get("stopReason").cloned(),
            "metadata" => usage = ev.get("usage").cloned(),
            "" => {}
            exception => {
                // An exception message (`:exception-type`): the stream failed midway.
                let message = nonempty(&ev, "message").or_else(|| nonempty(&ev, "Message"));
                record_error(call, Some(exception.to_string()), message, x.status);
            }
        }
    }
    for (i, input) in tool_input {
        if let Some(u) = blocks.get_mut(&i).and_then(|b| b.get_mut("toolUse")) {
            // Fragments of the input's JSON; a stream cut midway keeps them as text.
            u["input"] = serde_json::from_str(&input).unwrap_or(Value::String(input));
        }
    }
    let content: Vec<Value> = blocks.into_values().collect();
    let mut body = json!({"output": {"message": {"role": role, "content": content}}});
    if let Some(stop) = stop {
        body["stopReason"] = stop;
    }
    if let Some(usage) = usage {
        body["usage"] = usage;
    }
    read_response(call, &body);
}

fn read_request(call: &mut LlmCall, req: &Value) {
    if let Some(cfg) = req.get("inferenceConfig") {
        call.max_tokens = count(cfg, "maxTokens");
        call.temperature = float(cfg, "temperature");
        call.top_p = float(cfg, "topP");
        call.stop_sequences = fields::strings(cfg.get("stopSequences"));
    }
    if let Some(extra) = req.get("additionalModelRequestFields") {
        call.top_k = float(extra, "top_k").or_else(|| float(extra, "topK"));
    }
    call.tool_definitions = req
        .get("toolConfig")
        .map(|tc| array(tc, "tools"))
        .unwrap_or(&[])
        .iter()
        .filter_map(|t| t.get("toolSpec").and_then(|s| nonempty(s, "name")))
        .collect();
    let system: Vec<Value> = array(req, "system")
        .iter()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .map(genai::text)
        .collect();
    if !system.is_empty() {
        call.system_instructions = Some(Value::Array(system));
    }
    let mut out = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for m in array(req, "messages") {
        let role = genai::role(m.get("role").and_then(Value::as_str).unwrap_or("user"));
        let mut segments: Vec<(&str, Vec<Value>)> = Vec::new();
        for b in array(m, "content") {
            let (target, part) = if let Some(r) = b.get("toolResult") {
                let id = nonempty(r, "toolUseId");
                let text = result_text(array(r, "content"));
                call.tool_results.push(ToolResult {
                    name: id.as_ref().and_then(|i| names.get(i).cloned()),
                    id: id.clone(),
                    content: text.clone(),
                    is_error: string(r, "status").as_deref() == Some("error"),
                });
                (
                    "tool",
                    genai::tool_call_response(id.as_deref(), &Value::String(text)),
                )
            } else {
                if let Some(u) = b.get("toolUse") {
                    if let (Some(id), Some(name)) = (nonempty(u, "toolUseId"), nonempty(u, "name"))
                    {
                        names.insert(id, name);
                    }
                }
                match block(b) {
                    Some(p) => (role, p),
                    None => continue,
                }
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
    call.input_messages = Value::Array(out);
}

/// Tool result content blocks: `text`, or `json` (kept as its JSON text).
fn result_text(content: &[Value]) -> String {
    content
        .iter()
        .map(|c| match (c.get("text"), c.get("json")) {
            (Some(Value::String(t)), _) => t.clone(),
            (_, Some(j)) => j.to_string(),
            _ => String::new(),
        })
        .collect()
}

/// One Converse content block as a GenAI part; `None` for cache markers.
fn block(b: &Value) -> Option<Value> {
    if let Some(t) = b.get("text").and_then(Value::as_str) {
        return Some(genai::text(t));
    }
    if let Some(u) = b.get("toolUse") {
        return Some(genai::tool_call(
            nonempty(u, "toolUseId").as_deref(),
            &string(u, "name").unwrap_or_default(),
            u.get("input").unwrap_or(&json!({})),
        ));
    }
    if let Some(r) = b.get("reasoningContent") {
        let text = r
            .get("reasoningText")
            .and_then(|t| t.get("text"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return Some(genai::reasoning(text));
    }
    if b.get("cachePoint").is_some() {
        return None;
    }
    let kind = b
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .unwrap_or_else(|| "unknown".to_string());
    Some(genai::generic(&kind))
}

fn read_response(call: &mut LlmCall, body: &Value) {
    if let Some(u) = body.get("usage").filter(|u| u.is_object()) {
        let input = count(u, "inputTokens");
        let output = count(u, "outputTokens");
        let read = count(u, "cacheReadInputTokens");
        let write = count(u, "cacheWriteInputTokens");
        let cached = fields::add(read, write);
        let separate = match (count(u, "totalTokens"), cached) {
            (Some(total), Some(c)) if c > 0 => {
                total == input.unwrap_or(0) + output.unwrap_or(0) + c
            }
            // Without a total to check against, follow the Anthropic-style default.
            _ => true,
        };
        call.input_tokens = if separate {
            fields::add(input, cached)
        } else {
            input
        };
        call.output_tokens = output;
        call.cache_read_tokens = read;
        call.cache_creation_tokens = write;
    }
    let message = body
        .get("output")
        .and_then(|o| o.get("message"))
        .unwrap_or(&Value::Null);
    let stop = nonempty(body, "stopReason");
    if message.is_null() && stop.is_none() {
        return;
    }
    let mut parts = Vec::new();
    for b in array(message, "content") {
        if let Some(u) = b.get("toolUse") {
            call.tool_calls.push(ToolCall {
                id: nonempty(u, "toolUseId"),
                name: string(u, "name").unwrap_or_default(),
                arguments: u.get("input").cloned().unwrap_or_else(|| json!({})),
            });
        }
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            call.output_text.push_str(t);
        }
        if let Some(p) = block(b) {
            parts.push(p);
        }
    }
    let finish = match &stop {
        Some(s) => {
            call.finish_reasons = vec![s.clone()];
            genai::output_finish_reason(s)
        }
        None => super::FINISH_UNKNOWN.to_string(),
    };
    call.output_messages = json!([genai::output_message(parts, &finish)]);
}

/// The few parameters vendor-native `invoke` bodies (Llama, Titan, Mistral, ...) share.
fn read_native_request(call: &mut LlmCall, req: &Value) {
    let cfg = req.get("textGenerationConfig").unwrap_or(req);
    call.max_tokens = [
        "max_tokens",
        "max_gen_len",
        "maxTokenCount",
        "max_new_tokens",
    ]
    .iter()
    .find_map(|k| count(cfg, k));
    call.temperature = float(cfg, "temperature");
    call.top_p = float(cfg, "top_p").or_else(|| float(cfg, "topP"));
    call.top_k = float(cfg, "top_k");
    if let Some(prompt) = nonempty(req, "prompt").or_else(|| nonempty(req, "inputText")) {
        call.input_messages = json!([genai::message("user", vec![genai::text(&prompt)])]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_any, ExchangeView, LlmCall};
    use super::*;

    const URL: &str = "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse";

    fn run(
        url: &str,
        req: &str,
        status: u16,
        resp_headers: &[(String, String)],
        resp: &str,
    ) -> LlmCall {
        let x = ExchangeView {
            method: "POST",
            url,
            request_headers: &[],
            request_body: req.as_bytes(),
            status: Some(status),
            response_headers: resp_headers,
            response_body: resp.as_bytes(),
        };
        parse_any(&x).expect("recognised")
    }

    #[test]
    fn converse_tool_use_and_results() {
        let req = r#"{"messages":[
            {"role":"user","content":[{"text":"What is the most popular song on WZPZ?"}]},
            {"role":"assistant","content":[{"toolUse":{"toolUseId":"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q","name":"top_song","input":{"sign":"WZPZ"}}}]},
            {"role":"user","content":[{"toolResult":{"toolUseId":"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q","content":[{"json":{"song":"Elemental Hotel"}}],"status":"success"}}]},
            {"role":"user","content":[{"toolResult":{"toolUseId":"tooluse_X","content":[{"text":"Station not found"}],"status":"error"}}]}],
          "system":[{"text":"You are a DJ."},{"cachePoint":{"type":"default"}}],
          "inferenceConfig":{"maxTokens":512,"temperature":0.5,"topP":0.9,"stopSequences":["Human:"]},
          "toolConfig":{"tools":[{"toolSpec":{"name":"top_song","description":"d","inputSchema":{"json":{"type":"object"}}}}]}}"#;
        let resp = r#"{"output":{"message":{"role":"assistant","content":[{"text":"Let me look."},{"toolUse":{"toolUseId":"tooluse_2","name":"top_song","input":{"sign":"WZPZ"}}}]}},
          "stopReason":"tool_use","usage":{"inputTokens":4,"outputTokens":279,"totalTokens":3461,"cacheReadInputTokens":3178,"cacheWriteInputTokens":0},"metrics":{"latencyMs":1234}}"#;
        let c = run(URL, req, 200, &[], resp);
        assert_eq!(
            (c.provider.as_str(), c.operation.as_str(), c.api.as_deref()),
            ("aws.bedrock", "chat", Some("converse"))
        );
        assert_eq!(
            c.request_model.as_deref(),
            Some("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
        );
        assert_eq!(c.response_model, None);
        assert_eq!(c.input_tokens, Some(3182));
        assert_eq!(
            (
                c.output_tokens,
                c.cache_read_tokens,
                c.cache_creation_tokens
            ),
            (Some(279), Some(3178), Some(0))
        );
        assert_eq!(c.finish_reasons, vec!["tool_use"]);
        assert_eq!(
            (c.max_tokens, c.temperature, c.top_p),
            (Some(512), Some(0.5), Some(0.9))
        );
        assert_eq!(c.stop_sequences, vec!["Human:"]);
        assert_eq!(c.tool_definitions, vec!["top_song"]);
        assert_eq!(
            c.system_instructions,
            Some(json!([{"type": "text", "content": "You are a DJ."}]))
        );
        assert_eq!(c.output_text, "Let me look.");
        assert_eq!(
            c.tool_calls,
            vec![ToolCall {
                id: Some("tooluse_2".into()),
                name: "top_song".into(),
                arguments: json!({"sign": "WZPZ"})
            }]
        );
        assert_eq!(
            c.tool_results,
            vec![
                ToolResult {
                    id: Some("tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into()),
                    name: Some("top_song".into()),
                    content: "{\"song\":\"Elemental Hotel\"}".into(),
                    is_error: false
                },
                ToolResult {
                    id: Some("tooluse_X".into()),
                    name: None,
                    content: "Station not found".into(),
                    is_error: true
                },
            ]
        );
        assert_eq!(c.input_messages[2]["role"], "tool");
    }

    #[test]
    fn usage_already_including_cache_is_not_double_counted() {
        let resp = r#"{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn","usage":{"inputTokens":3182,"outputTokens":279,"totalTokens":3461,"cacheReadInputTokens":3178}}"#;
        let c = run(URL, r#"{"messages":[]}"#, 200, &[], resp);
        assert_eq!(c.input_tokens, Some(3182));
        assert_eq!(c.output_messages[0]["finish_reason"], "stop");
    }

    #[test]
    fn errors_come_from_the_header() {
        let headers = vec![(
            "x-amzn-errortype".to_string(),
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/".to_string(),
        )];
        let c = run(
            URL,
            r#"{"messages":[]}"#,
            400,
            &headers,
            r#"{"message":"Input is too long for requested model."}"#,
        );
        assert_eq!(c.error_type.as_deref(), Some("ValidationException"));
        assert_eq!(
            c.error_message.as_deref(),
            Some("Input is too long for requested model.")
        );
        assert_eq!(c.output_messages, Value::Null);
    }

    #[test]
    fn converse_stream_keeps_the_request_side() {
        let url = URL.replace("/converse", "/converse-stream");
        let binary = [0u8, 0, 0, 0x9c, 0, 0, 0, 0x4b, 0x12, 0x34, b':', b'e', 0xff];
        let x = ExchangeView {
            method: "POST",
            url: &url,
            request_headers: &[],
            request_body: br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":5}}"#,
            status: Some(200),
            response_headers: &[],
            response_body: &binary,
        };
        let c = parse_any(&x).unwrap();
        assert!(c.stream);
        assert_eq!(c.max_tokens, Some(5));
        assert_eq!(
            c.input_messages,
            json!([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
        );
        assert_eq!(c.output_messages, Value::Null);
    }

    use super::super::tests::{eventstream, view};

    fn stream_view<'a>(
        url: &'a str,
        req: &'a [u8],
        body: &'a [u8],
        h: &'a [(String, String)],
    ) -> ExchangeView<'a> {
        view(url, req, Some(200), h, body)
    }

    fn eventstream_headers() -> Vec<(String, String)> {
        vec![(
            "content-type".into(),
            "application/vnd.amazon.eventstream".into(),
        )]
    }

    #[test]
    fn converse_stream_is_read_back_as_the_answer_it_streams() {
        let url = URL.replace("/converse", "/converse-stream");
        let body = eventstream(&[
            ("messageStart", json!({"role": "assistant", "p": "abc"})),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Let me "}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "look."}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 0})),
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "top_song"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"sign\":"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"WZPZ\"}"}}}),
            ),
            ("contentBlockStop", json!({"contentBlockIndex": 1})),
            ("messageStop", json!({"stopReason": "tool_use"})),
            (
                "metadata",
                json!({"usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42}, "metrics": {"latencyMs": 900}}),
            ),
        ]);
        let h = eventstream_headers();
        let c = parse_any(&stream_view(&url, br#"{"messages":[]}"#, &body, &h)).unwrap();
        assert!(c.stream);
        assert_eq!(c.output_text, "Let me look.");
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].name, "top_song");
        assert_eq!(c.tool_calls[0].id.as_deref(), Some("tooluse_1"));
        assert_eq!(c.tool_calls[0].arguments, json!({"sign": "WZPZ"}));
        assert_eq!(c.finish_reasons, vec!["tool_use"]);
        assert_eq!((c.input_tokens, c.output_tokens), (Some(30), Some(12)));
        assert_eq!(c.output_messages[0]["parts"].as_array().unwrap().len(), 2);
        // Cut short inside the tool's input: what came is kept, the input as text.
        let cut = eventstream(&[
            (
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}),
            ),
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"a\":"}}}),
            ),
        ]);
        let c = parse_any(&stream_view(&url, b"{}", &cut, &h)).unwrap();
        assert_eq!(c.tool_calls[0].arguments, json!("{\"a\":"));
        assert!(c.finish_reasons.is_empty());
        // An exception in the stream is the call's error.
        let failed = eventstream(&[
            (
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
            ),
            (
                "!throttlingException",
                json!({"message": "Too many requests"}),
            ),
        ]);
        let c = parse_any(&stream_view(&url, b"{}", &failed, &h)).unwrap();
        assert_eq!(c.error_type.as_deref(), Some("throttlingException"));
        assert_eq!(c.error_message.as_deref(), Some("Too many requests"));
    }

    #[test]
    fn claude_through_invoke_with_response_stream_is_read_from_its_base64_chunks() {
        use base64::Engine as _;
        let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1:0/invoke-with-response-stream";
        let chunk = |v: Value| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(v.to_string());
            ("chunk", json!({"bytes": b64, "p": "abcd"}))
        };
        let body = eventstream(&[
            chunk(
                json!({"type": "message_start", "message": {"id": "msg_bdrk_1", "model": "claude-3-haiku-20240307", "role": "assistant", "content": [], "usage": {"input_tokens": 21, "output_tokens": 1}}}),
            ),
            chunk(
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            chunk(
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
            chunk(
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}}),
            ),
            chunk(json!({"type": "content_block_stop", "index": 0})),
            chunk(
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}),
            ),
            chunk(json!({"type": "message_stop"})),
        ]);
        let req = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#;
        let h = eventstream_headers();
        let c = parse_any(&stream_view(url, req, &body, &h)).unwrap();
        assert!(c.stream);
        assert_eq!(c.output_text, "Hello there");
        assert_eq!(c.response_id.as_deref(), Some("msg_bdrk_1"));
        assert_eq!(c.finish_reasons, vec!["end_turn"]);
        assert_eq!((c.input_tokens, c.output_tokens), (Some(21), Some(7)));
    }

    #[test]
    fn native_invoke_bodies() {
        let url = "https://bedrock-runtime.us-west-2.amazonaws.com/model/meta.llama3-8b-instruct-v1:0/invoke";
        let c = run(
            url,
            r#"{"prompt":"hi","max_gen_len":64,"temperature":0.3}"#,
            200,
            &[],
            r#"{"generation":"Hello","prompt_token_count":2,"generation_token_count":1,"stop_reason":"stop"}"#,
        );
        assert_eq!(
            (c.api.as_deref(), c.operation.as_str()),
            (Some("invoke"), "chat")
        );
        assert_eq!((c.max_tokens, c.temperature), (Some(64), Some(0.3)));
        assert_eq!(
            c.request_model.as_deref(),
            Some("meta.llama3-8b-instruct-v1:0")
        );
    }
}
