//! OpenAI Chat Completions (`/v1/chat/completions`) and legacy Completions
//! (`/v1/completions`), as spoken by OpenAI and every compatible server (Azure, Groq,
//! vLLM, LiteLLM, Ollama's `/v1`, Gemini's OpenAI endpoint, ...).
//!
//! Streams are rebuilt into the final message the client saw: `delta.content` fragments
//! are concatenated per choice, tool calls are keyed by `tool_calls[].index` (the first
//! fragment carries `id` and `name`, later ones only `arguments` pieces) and parsed once
//! the stream is over, and usage comes from the chunk that carries it (present only when
//! the client asked with `stream_options.include_usage`, or the server volunteers it).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::fields::{self, array, count, float, int, nonempty, string};
use super::recognise::{Api, Route};
use super::{blank, genai, record_error, sse, ExchangeView, LlmCall, ToolCall, ToolResult};

pub(super) fn parse(x: &ExchangeView, route: &Route) -> LlmCall {
    let mut call = blank(route);
    let legacy = route.api == Api::Completions;
    if let Some(req) = fields::json(x.request_body) {
        read_request(&mut call, &req, legacy);
    }
    let vllm = read_response(&mut call, x);
    if vllm && route.provider.is_none() {
        call.provider = "vllm".to_string();
    }
    call
}

fn read_request(call: &mut LlmCall, req: &Value, legacy: bool) {
    call.request_model = nonempty(req, "model");
    call.stream = fields::flag(req, "stream") == Some(true);
    call.max_tokens = count(req, "max_completion_tokens").or_else(|| count(req, "max_tokens"));
    call.temperature = float(req, "temperature");
    call.top_p = float(req, "top_p");
    call.frequency_penalty = float(req, "frequency_penalty");
    call.presence_penalty = float(req, "presence_penalty");
    call.stop_sequences = fields::strings(req.get("stop"));
    call.seed = int(req, "seed");
    call.choice_count = count(req, "n");
    call.tool_definitions = tool_definitions(req);
    if legacy {
        let prompts = fields::strings(req.get("prompt"));
        let parts: Vec<Value> = prompts.iter().map(|p| genai::text(p)).collect();
        call.input_messages = if parts.is_empty() {
            Value::Array(Vec::new())
        } else {
            json!([genai::message("user", parts)])
        };
        return;
    }
    let (messages, results) = history(array(req, "messages"));
    call.input_messages = Value::Array(messages);
    call.tool_results = results;
}

/// Tool names from `tools[]` (`function.name`; custom tools use `custom.name`) and the
/// legacy `functions[]`.
fn tool_definitions(req: &Value) -> Vec<String> {
    let tools = array(req, "tools").iter().filter_map(|t| {
        t.get("function")
            .or_else(|| t.get("custom"))
            .and_then(|f| nonempty(f, "name"))
            .or_else(|| nonempty(t, "name"))
            .or_else(|| nonempty(t, "type"))
    });
    let functions = array(req, "functions")
        .iter()
        .filter_map(|f| nonempty(f, "name"));
    tools.chain(functions).collect()
}

/// Normalises the `messages` history and collects the tool results it carries.
fn history(messages: &[Value]) -> (Vec<Value>, Vec<ToolResult>) {
    let mut out = Vec::new();
    let mut results = Vec::new();
    // Tool messages carry only the call id; the name is on the assistant message that
    // made the call, earlier in the same history.
    let mut names: HashMap<String, String> = HashMap::new();
    for m in messages {
        let raw_role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let role = genai::role(raw_role);
        let content = m.get("content").unwrap_or(&Value::Null);
        if raw_role == "tool" || raw_role == "function" {
            let id = nonempty(m, "tool_call_id");
            let text = fields::text_of(content);
            let name = id
                .as_ref()
                .and_then(|id| names.get(id).cloned())
                .or_else(|| nonempty(m, "name"));
            out.push(genai::message(
                "tool",
                vec![genai::tool_call_response(
                    id.as_deref(),
                    &Value::String(text.clone()),
                )],
            ));
            results.push(ToolResult {
                id,
                name,
                content: text,
                is_error: false,
            });
            continue;
        }
        let mut parts = content_parts(content);
        // Assistant turns that only call tools often carry `content: ""`; an empty
        // text part beside the calls is noise, not a fact.
        if !array(m, "tool_calls").is_empty() && *content == Value::String(String::new()) {
            parts.clear();
        }
        if let Some(r) = m
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            parts.insert(0, genai::reasoning(r));
        }
        for tc in array(m, "tool_calls") {
            let id = nonempty(tc, "id");
            let f = tc.get("function").unwrap_or(&Value::Null);
            let name = string(f, "name").unwrap_or_default();
            let args = fields::arguments_value(f.get("arguments"));
            if let Some(id) = &id {
                names.insert(id.clone(), name.clone());
            }
            parts.push(genai::tool_call(id.as_deref(), &name, &args));
        }
        if let Some(fc) = m.get("function_call").filter(|f| f.is_object()) {
            let name = string(fc, "name").unwrap_or_default();
            parts.push(genai::tool_call(
                None,
                &name,
                &fields::arguments_value(fc.get("arguments")),
            ));
        }
        out.push(genai::message(role, parts));
    }
    (out, results)
}

/// Content that is a string or a list of typed parts (text, image_url, input_audio, file).
pub(super) fn content_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![genai::text(s)],
        Value::Array(items) => items.iter().map(content_part).collect(),
        Value::Null => Vec::new(),
        other => vec![genai::text(&fields::text_of(other))],
    }
}

fn content_part(p: &Value) -> Value {
    let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" | "input_text" | "output_text" => {
            genai::text(&string(p, "text").unwrap_or_default())
        }
        "image_url" => {
            let url = p
                .get("image_url")
                .and_then(|u| u.get("url").or(Some(u)))
                .and_then(Value::as_str)
                .unwrap_or("");
            genai::url_part("image", url)
        }
        "input_audio" => {
            let audio = p.get("input_audio").unwrap_or(&Value::Null);
            let mime = string(audio, "format").map(|f| format!("audio/{f}"));
            genai::blob(
                "audio",
                mime.as_deref(),
                audio.get("data").and_then(Value::as_str).unwrap_or(""),
            )
        }
        "file" => {
            let file = p.get("file").unwrap_or(&Value::Null);
            match (
                nonempty(file, "file_id"),
                file.get("file_data").and_then(Value::as_str),
            ) {
                (Some(id), _) => genai::file("file", &id),
                (None, Some(data)) => genai::url_part("file", data),
                (None, None) => genai::generic("file"),
            }
        }
        "refusal" => {
            json!({"type": "refusal", "content": string(p, "refusal").unwrap_or_default()})
        }
        "" => match p {
            Value::String(s) => genai::text(s),
            _ => genai::generic("unknown"),
        },
        other => genai::generic(other),
    }
}

/// The OpenAI error envelope: `{"error": {"message", "type", "param", "code"}}`, a bare
/// `{"error": "text"}`, or vLLM's older top-level `{"object": "error", ...}`. Returns
/// `(error.type, message)` with `code` preferred over `type`, except that a numeric code
/// merely echoing the HTTP status loses to a named `type`.
pub(super) fn error_of(v: &Value) -> Option<(Option<String>, Option<String>)> {
    let e = match v.get("error") {
        Some(e) if !e.is_null() => e,
        _ if v.get("object").and_then(Value::as_str) == Some("error") => v,
        _ => return None,
    };
    if let Value::String(s) = e {
        return Some((None, Some(s.clone())));
    }
    if !e.is_object() {
        return None;
    }
    let named_code = e
        .get("code")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let kind = named_code
        .or_else(|| nonempty(e, "type"))
        .or_else(|| fields::code(e.get("code")));
    Some((kind, string(e, "message")))
}

/// One choice being assembled (from a whole message or from stream deltas).
#[derive(Default)]
struct Choice {
    text: String,
    reasoning: String,
    refusal: String,
    calls: Vec<PartialCall>,
    finish_reason: Option<String>,
}

struct PartialCall {
    index: Option<u64>,
    id: Option<String>,
    name: String,
    /// Concatenated argument text, parsed once complete.
    arguments: String,
    /// Arguments that arrived as an object rather than a string (some servers).
    object: Option<Value>,
}

/// Reads the response; returns whether it carries vLLM's distinctive extra fields.
fn read_response(call: &mut LlmCall, x: &ExchangeView) -> bool {
    let mut choices: BTreeMap<u64, Choice> = BTreeMap::new();
    let mut vllm = false;
    if sse::looks_like_sse(x.response_body) {
        call.stream = true;
        for (_, chunk) in sse::json_events(x.response_body) {
            if let Some((kind, message)) = error_of(&chunk) {
                record_error(call, kind, message, x.status);
                continue;
            }
            read_envelope(call, &chunk, true);
            for c in array(&chunk, "choices") {
                vllm |= c.get("stop_reason").is_some();
                let index = count(c, "index").unwrap_or(0);
                let choice = choices.entry(index).or_default();
                read_delta(choice, c);
            }
        }
    } else if let Some(body) = fields::json(x.response_body) {
        if let Some((kind, message)) = error_of(&body) {
            record_error(call, kind, message, x.status);
        }
        read_envelope(call, &body, false);
        vllm |= body.get("prompt_logprobs").is_some();
        for (i, c) in array(&body, "choices").iter().enumerate() {
            vllm |= c.get("stop_reason").is_some();
            let index = count(c, "index").unwrap_or(i as u64);
            let choice = choices.entry(index).or_default();
            read_whole(choice, c);
        }
    }
    if !choices.is_empty() {
        finish(call, choices);
    }
    vllm
}

/// Fields that sit beside `choices`: id, model, usage.
fn read_envelope(call: &mut LlmCall, v: &Value, stream: bool) {
    if call.response_id.is_none() || !stream {
        if let Some(id) = nonempty(v, "id") {
            call.response_id = Some(id);
        }
    }
    if let Some(model) = nonempty(v, "model") {
        call.response_model = Some(model);
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        read_usage(call, u);
    }
}

fn read_usage(call: &mut LlmCall, u: &Value) {
    call.input_tokens = count(u, "prompt_tokens").or(call.input_tokens);
    call.output_tokens = count(u, "completion_tokens").or(call.output_tokens);
    let cached = u
        .get("prompt_tokens_details")
        .and_then(|d| count(d, "cached_tokens"))
        // DeepSeek reports its context cache this way instead.
        .or_else(|| count(u, "prompt_cache_hit_tokens"));
    call.cache_read_tokens = cached.or(call.cache_read_tokens);
    let reasoning = u
        .get("completion_tokens_details")
        .and_then(|d| count(d, "reasoning_tokens"));
    call.reasoning_tokens = reasoning.or(call.reasoning_tokens);
}

/// A non-streamed choice: `message` (chat) or `text` (legacy completions).
fn read_whole(choice: &mut Choice, c: &Value) {
    let m = c.get("message").unwrap_or(&Value::Null);
    if let Some(t) = c.get("text").and_then(Value::as_str) {
        choice.text.push_str(t);
    }
    match m.get("content") {
        Some(Value::String(s)) => choice.text.push_str(s),
        Some(v @ Value::Array(_)) => choice.text.push_str(&fields::text_of(v)),
        _ => {}
    }
    for key in ["reasoning_content", "reasoning"] {
        if let Some(r) = m.get(key).and_then(Value::as_str) {
            choice.reasoning.push_str(r);
            break;
        }
    }
    if let Some(r) = m.get("refusal").and_then(Value::as_str) {
        choice.refusal.push_str(r);
    }
    for (i, tc) in array(m, "tool_calls").iter().enumerate() {
        let f = tc.get("function").unwrap_or(&Value::Null);
        let (arguments, object) = match f.get("arguments") {
            Some(Value::String(s)) => (s.clone(), None),
            Some(Value::Null) | None => (String::new(), None),
            Some(other) => (String::new(), Some(other.clone())),
        };
        choice.calls.push(PartialCall {
            index: Some(i as u64),
            id: nonempty(tc, "id"),
            name: string(f, "name").unwrap_or_default(),
            arguments,
            object,
        });
    }
    if let Some(fc) = m.get("function_call").filter(|f| f.is_object()) {
        choice.calls.push(PartialCall {
            index: None,
            id: None,
            name: string(fc, "name").unwrap_or_default(),
            arguments: string(fc, "arguments").unwrap_or_default(),
            object: None,
        });
    }
    if let Some(r) = nonempty(c, "finish_reason") {
        choice.finish_reason = Some(r);
    }
}

/// One streamed choice chunk: `delta` fragments (chat) or `text` (legacy completions).
fn read_delta(choice: &mut Choice, c: &Value) {
    if let Some(t) = c.get("text").and_then(Value::as_str) {
        choice.text.push_str(t);
    }
    let d = c.get("delta").unwrap_or(&Value::Null);
    if let Some(t) = d.get("content").and_then(Value::as_str) {
        choice.text.push_str(t);
    }
    for key in ["reasoning_content", "reasoning"] {
        if let Some(r) = d.get(key).and_then(Value::as_str) {
            choice.reasoning.push_str(r);
            break;
        }
    }
    if let Some(r) = d.get("refusal").and_then(Value::as_str) {
        choice.refusal.push_str(r);
    }
    for tc in array(d, "tool_calls") {
        let index = count(tc, "index");
        let id = nonempty(tc, "id");
        let f = tc.get("function").unwrap_or(&Value::Null);
        // Find the call this fragment continues: same index; without an index (some
        // servers omit it), a fragment with a new id starts a call, else it continues
        // the last one.
        let pos = match index {
            Some(i) => choice.calls.iter().position(|p| p.index == Some(i)),
            None => match &id {
                Some(id) => choice
                    .calls
                    .iter()
                    .position(|p| p.id.as_deref() == Some(id.as_str())),
                None => choice.calls.len().checked_sub(1),
            },
        };
        let pos = match pos {
            Some(p) => p,
            None => {
                choice.calls.push(PartialCall {
                    index,
                    id: None,
                    name: String::new(),
                    arguments: String::new(),
                    object: None,
                });
                choice.calls.len() - 1
            }
        };
        let Some(p) = choice.calls.get_mut(pos) else {
            continue;
        };
        if p.id.is_none() {
            p.id = id;
        }
        // The name comes whole in the first fragment; servers that repeat it must not
        // make it `get_weatherget_weather`.
        if p.name.is_empty() {
            if let Some(n) = nonempty(f, "name") {
                p.name = n;
            }
        }
        match f.get("arguments") {
            Some(Value::String(s)) => p.arguments.push_str(s),
            Some(Value::Null) | None => {}
            Some(other) => p.object = Some(other.clone()),
        }
    }
    if let Some(fc) = d.get("function_call").filter(|f| f.is_object()) {
        if choice.calls.is_empty() {
            choice.calls.push(PartialCall {
                index: None,
                id: None,
                name: String::new(),
                arguments: String::new(),
                object: None,
            });
        }
        if let Some(p) = choice.calls.last_mut() {
            if p.name.is_empty() {
                p.name = string(fc, "name").unwrap_or_default();
            }
            p.arguments
                .push_str(fc.get("arguments").and_then(Value::as_str).unwrap_or(""));
        }
    }
    if let Some(r) = nonempty(c, "finish_reason") {
        choice.finish_reason = Some(r);
    }
}

/// Turns assembled choices into output messages, tool calls and finish reasons.
fn finish(call: &mut LlmCall, choices: BTreeMap<u64, Choice>) {
    let mut outputs = Vec::new();
    let mut texts = Vec::new();
    for (_, c) in choices {
        let mut parts = Vec::new();
        if !c.reasoning.is_empty() {
            parts.push(genai::reasoning(&c.reasoning));
        }
        if !c.text.is_empty() {
            parts.push(genai::text(&c.text));
            texts.push(c.text.clone());
        }
        if !c.refusal.is_empty() {
            parts.push(json!({"type": "refusal", "content": c.refusal}));
        }
        for p in c.calls {
            let arguments = p.object.unwrap_or_else(|| fields::arguments(&p.arguments));
            parts.push(genai::tool_call(p.id.as_deref(), &p.name, &arguments));
            call.tool_calls.push(ToolCall {
                id: p.id,
                name: p.name,
                arguments,
            });
        }
        let finish = match &c.finish_reason {
            Some(r) => {
                call.finish_reasons.push(r.clone());
                genai::output_finish_reason(r)
            }
            None if call.error_type.is_some() => "error".to_string(),
            None => super::FINISH_UNKNOWN.to_string(),
        };
        outputs.push(genai::output_message(parts, &finish));
    }
    call.output_text = texts.join("\n");
    call.output_messages = Value::Array(outputs);
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_any, ExchangeView, LlmCall};
    use super::*;

    fn run(url: &str, req: &str, status: u16, ct: &str, resp: &str) -> LlmCall {
        let resp_headers = vec![("content-type".to_string(), ct.to_string())];
        let x = ExchangeView {
            method: "POST",
            url,
            request_headers: &[],
            request_body: req.as_bytes(),
            status: Some(status),
            response_headers: &resp_headers,
            response_body: resp.as_bytes(),
        };
        parse_any(&x).expect("recognised as LLM traffic")
    }

    const TOOL_REQ: &str = r#"{
      "model": "gpt-4o-mini",
      "messages": [
        {"role": "developer", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]}
      ],
      "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
      "tool_choice": "auto", "parallel_tool_calls": true,
      "max_completion_tokens": 256, "temperature": 0.2, "top_p": 0.9, "seed": 7, "n": 1,
      "stop": ["\n\n"], "frequency_penalty": 0.5, "presence_penalty": -0.5
    }"#;

    #[test]
    fn non_streaming_parallel_tool_calls() {
        let resp = r#"{
          "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
          "object": "chat.completion", "created": 1741570283, "model": "gpt-4o-mini-2024-07-18",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "refusal": null,
            "tool_calls": [
              {"id": "call_a1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
              {"id": "call_b2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]}, "logprobs": null, "finish_reason": "tool_calls"}],
          "usage": {"prompt_tokens": 82, "completion_tokens": 47, "total_tokens": 129,
                    "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
                    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
          "service_tier": "default", "system_fingerprint": "fp_06737a9306"
        }"#;
        let c = run(
            "https://api.openai.com/v1/chat/completions",
            TOOL_REQ,
            200,
            "application/json",
            resp,
        );
        assert_eq!(c.provider, "openai");
        assert_eq!(c.operation, "chat");
        assert_eq!(c.api.as_deref(), Some("chat_completions"));
        assert_eq!(c.request_model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(c.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        assert_eq!(
            c.response_id.as_deref(),
            Some("chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG")
        );
        assert!(!c.stream);
        assert_eq!((c.input_tokens, c.output_tokens), (Some(82), Some(47)));
        assert_eq!(
            (c.cache_read_tokens, c.reasoning_tokens),
            (Some(64), Some(0))
        );
        assert_eq!(c.cache_creation_tokens, None);
        assert_eq!(c.finish_reasons, vec!["tool_calls"]);
        assert_eq!(c.max_tokens, Some(256));
        assert_eq!((c.temperature, c.top_p), (Some(0.2), Some(0.9)));
        assert_eq!(
            (c.frequency_penalty, c.presence_penalty),
            (Some(0.5), Some(-0.5))
        );
        assert_eq!(c.stop_sequences, vec!["\n\n"]);
        assert_eq!((c.seed, c.choice_count), (Some(7), Some(1)));
        assert_eq!(c.tool_definitions, vec!["get_weather"]);
        assert_eq!(
            c.tool_calls,
            vec![
                ToolCall {
                    id: Some("call_a1".into()),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Paris"})
                },
                ToolCall {
                    id: Some("call_b2".into()),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Rome"})
                },
            ]
        );
        assert_eq!(c.output_text, "");
        assert_eq!(c.error_type, None);
        assert_eq!(
            c.input_messages,
            json!([
                {"role": "system", "parts": [{"type": "text", "content": "You are terse."}]},
                {"role": "user", "parts": [
                    {"type": "text", "content": "Weather in Paris and Rome?"},
                    {"type": "blob", "mime_type": "image/png", "modality": "image", "content": "iVBOR"}
                ]}
            ])
        );
        assert_eq!(
            c.output_messages,
            json!([{"role": "assistant", "parts": [
                {"type": "tool_call", "id": "call_a1", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"type": "tool_call", "id": "call_b2", "name": "get_weather", "arguments": {"city": "Rome"}}
            ], "finish_reason": "tool_call"}])
        );
        assert_eq!(c.system_instructions, None);
    }

    #[test]
    fn following_request_carries_tool_results_with_names() {
        let req = r#"{"model": "gpt-4o-mini", "messages": [
          {"role": "user", "content": "Weather in Paris and Rome?"},
          {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_a1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
          {"role": "tool", "tool_call_id": "call_a1", "content": "18C sunny"},
          {"role": "tool", "tool_call_id": "call_b2", "content": [{"type": "text", "text": ""}]}
        ]}"#;
        let resp = r#"{"id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris 18C; Rome unknown."}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129}}"#;
        let c = run(
            "https://api.openai.com/v1/chat/completions",
            req,
            200,
            "application/json",
            resp,
        );
        assert_eq!(
            c.tool_results,
            vec![
                ToolResult {
                    id: Some("call_a1".into()),
                    name: Some("get_weather".into()),
                    content: "18C sunny".into(),
                    is_error: false
                },
                ToolResult {
                    id: Some("call_b2".into()),
                    name: Some("get_weather".into()),
                    content: "".into(),
                    is_error: false
                },
            ]
        );
        assert_eq!(c.output_text, "Paris 18C; Rome unknown.");
        assert_eq!(c.finish_reasons, vec!["stop"]);
        assert_eq!(c.cache_read_tokens, None);
        let msgs = c.input_messages.as_array().unwrap();
        assert_eq!(msgs.len(), 4);
        assert_eq!(msgs[1]["parts"][1]["name"], "get_weather");
        assert_eq!(
            msgs[1]["parts"].as_array().unwrap().len(),
            2,
            "no empty text part beside the calls"
        );
        assert_eq!(
            msgs[2],
            json!({"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_a1", "response": "18C sunny"}]})
        );
    }

    /// What the official SDK receives for `stream=True, stream_options={"include_usage": True}`
    /// with two parallel tool calls.
    const STREAM_TOOLS: &str = concat!(
        "data: {\"id\":\"chatcmpl-S1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_p\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-S1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"ci\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-S1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\": \\\"Paris\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-S1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_r\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-S1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"city\\\": \\\"Rome\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-S1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-S1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":80,\"completion_tokens\":40,\"total_tokens\":120,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn streaming_parallel_tool_calls_are_assembled_by_index() {
        let req = r#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Weather?"}]}"#;
        let c = run(
            "https://api.openai.com/v1/chat/completions",
            req,
            200,
            "text/event-stream; charset=utf-8",
            STREAM_TOOLS,
        );
        assert!(c.stream);
        assert_eq!(c.response_id.as_deref(), Some("chatcmpl-S1"));
        assert_eq!(c.response_model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            c.tool_calls,
            vec![
                ToolCall {
                    id: Some("call_p".into()),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Paris"})
                },
                ToolCall {
                    id: Some("call_r".into()),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Rome"})
                },
            ]
        );
        assert_eq!(c.finish_reasons, vec!["tool_calls"]);
        assert_eq!(
            (c.input_tokens, c.output_tokens, c.cache_read_tokens),
            (Some(80), Some(40), Some(0))
        );
    }

    #[test]
    fn streaming_text_without_usage_leaves_usage_unset() {
        let body = concat!(
            "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo!\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let req = r#"{"model":"gpt-4o","stream":true,"max_tokens":2,"messages":[{"role":"user","content":"Hi"}]}"#;
        let c = run(
            "https://api.openai.com/v1/chat/completions",
            req,
            200,
            "text/event-stream",
            body,
        );
        assert_eq!(c.output_text, "Hello!");
        assert_eq!(c.finish_reasons, vec!["length"]);
        assert_eq!(c.max_tokens, Some(2));
        assert_eq!((c.input_tokens, c.output_tokens), (None, None));
        assert_eq!(c.output_messages[0]["finish_reason"], "length");
    }

    #[test]
    fn truncated_stream_gives_what_arrived() {
        let cut = &STREAM_TOOLS[..STREAM_TOOLS.find("\"index\":1,\"id\"").unwrap() + 5];
        let req = r#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
        let c = run(
            "https://api.openai.com/v1/chat/completions",
            req,
            200,
            "text/event-stream",
            cut,
        );
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].arguments, json!({"city": "Paris"}));
        assert!(c.finish_reasons.is_empty());
        assert_eq!(c.output_messages[0]["finish_reason"], "unknown");
        assert_eq!(c.input_tokens, None);
        // Cut inside the arguments: they stay a raw string.
        let cut = &STREAM_TOOLS[..STREAM_TOOLS.find("\"arguments\":\"ty").unwrap()];
        let c = run(
            "https://api.openai.com/v1/chat/completions",
            req,
            200,
            "text/event-stream",
            cut,
        );
        assert_eq!(c.tool_calls[0].arguments, json!("{\"ci"));
    }

    #[test]
    fn context_length_error_body() {
        let resp = r#"{"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}"#;
        let req = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"..."}]}"#;
        let c = run(
            "https://api.openai.com/v1/chat/completions",
            req,
            400,
            "application/json",
            resp,
        );
        assert_eq!(c.error_type.as_deref(), Some("context_length_exceeded"));
        assert!(c
            .error_message
            .as_deref()
            .unwrap()
            .starts_with("This model's maximum context length is 128000"));
        assert_eq!(c.output_messages, Value::Null);
        assert!(c.tool_calls.is_empty());
        // Rate limit: code null → type.
        let resp = r#"{"error": {"message": "slow down", "type": "requests", "param": null, "code": null}}"#;
        let c = run(
            "https://api.openai.com/v1/chat/completions",
            req,
            429,
            "application/json",
            resp,
        );
        assert_eq!(c.error_type.as_deref(), Some("requests"));
    }

    #[test]
    fn in_stream_error_is_reported() {
        let body = concat!(
            "data: {\"id\":\"chatcmpl-E\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Par\"},\"finish_reason\":null}]}\n\n",
            "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
        );
        let c = run(
            "https://api.openai.com/v1/chat/completions",
            r#"{"model":"gpt-4o","stream":true,"messages":[]}"#,
            200,
            "text/event-stream",
            body,
        );
        assert_eq!(c.error_type.as_deref(), Some("server_error"));
        assert_eq!(c.output_text, "Par");
        assert_eq!(c.output_messages[0]["finish_reason"], "error");
    }

    #[test]
    fn vllm_on_localhost() {
        let req =
            r#"{"model":"Qwen/Qwen2.5-7B-Instruct","messages":[{"role":"user","content":"hi"}]}"#;
        let resp = r#"{"id":"chatcmpl-0e9f","object":"chat.completion","created":1751481743,"model":"Qwen/Qwen2.5-7B-Instruct",
          "choices":[{"index":0,"message":{"role":"assistant","reasoning_content":null,"content":"Hello!","tool_calls":[]},"logprobs":null,"finish_reason":"stop","stop_reason":null}],
          "usage":{"prompt_tokens":11,"total_tokens":13,"completion_tokens":2,"prompt_tokens_details":null},"prompt_logprobs":null}"#;
        let c = run(
            "http://127.0.0.1:8000/v1/chat/completions",
            req,
            200,
            "application/json",
            resp,
        );
        assert_eq!(c.provider, "vllm");
        assert_eq!(c.output_text, "Hello!");
        assert_eq!(
            (c.input_tokens, c.output_tokens, c.cache_read_tokens),
            (Some(11), Some(2), None)
        );
        // The same shape without vLLM's extras is just "openai_compatible".
        let plain = resp
            .replace(",\"stop_reason\":null", "")
            .replace(",\"prompt_logprobs\":null", "");
        let c = run(
            "http://127.0.0.1:8000/v1/chat/completions",
            req,
            200,
            "application/json",
            &plain,
        );
        assert_eq!(c.provider, "openai_compatible");
    }

    #[test]
    fn azure_deployment_names_the_model_when_the_body_does_not() {
        let req = r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":50}"#;
        let resp = r#"{"id":"chatcmpl-az","object":"chat.completion","model":"gpt-4o-2024-11-20","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop","content_filter_results":{}}],"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}"#;
        let c = run("https://contoso.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21", req, 200, "application/json", resp);
        assert_eq!(c.provider, "azure.ai.openai");
        assert_eq!(c.request_model.as_deref(), Some("gpt4o-prod"));
        assert_eq!(c.response_model.as_deref(), Some("gpt-4o-2024-11-20"));
    }

    #[test]
    fn legacy_completions_streamed() {
        let req = r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7,"temperature":0,"stream":true}"#;
        let body = concat!(
            "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{\"text\":\"This\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
            "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{\"text\":\" is a test\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
            "data: [DONE]\n\n",
        );
        let c = run(
            "https://api.openai.com/v1/completions",
            req,
            200,
            "text/event-stream",
            body,
        );
        assert_eq!(c.operation, "text_completion");
        assert_eq!(c.api.as_deref(), Some("completions"));
        assert_eq!(c.output_text, "This is a test");
        assert_eq!(c.finish_reasons, vec!["stop"]);
        assert_eq!(c.temperature, Some(0.0));
        assert_eq!(
            c.input_messages,
            json!([{"role": "user", "parts": [{"type": "text", "content": "Say this is a test"}]}])
        );
    }

    #[test]
    fn legacy_completions_whole() {
        let req = r#"{"model":"gpt-3.5-turbo-instruct","prompt":["a","b"],"n":2,"stop":"END"}"#;
        let resp = r#"{"id":"cmpl-2","object":"text_completion","model":"gpt-3.5-turbo-instruct","choices":[{"text":"x","index":0,"finish_reason":"length"},{"text":"y","index":1,"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}"#;
        let c = run(
            "https://api.openai.com/v1/completions",
            req,
            200,
            "application/json",
            resp,
        );
        assert_eq!(c.finish_reasons, vec!["length", "stop"]);
        assert_eq!(c.output_text, "x\ny");
        assert_eq!(c.stop_sequences, vec!["END"]);
        assert_eq!(c.choice_count, Some(2));
        assert_eq!(c.output_messages.as_array().unwrap().len(), 2);
    }

    #[test]
    fn reasoning_content_and_deepseek_cache() {
        let req = r#"{"model":"deepseek-reasoner","messages":[{"role":"user","content":"2+2?"}]}"#;
        let resp = r#"{"id":"x","object":"chat.completion","model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant","content":"4","reasoning_content":"Add."},"finish_reason":"stop"}],
          "usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_cache_hit_tokens":8,"prompt_cache_miss_tokens":2,"completion_tokens_details":{"reasoning_tokens":3}}}"#;
        let c = run(
            "https://api.deepseek.com/chat/completions",
            req,
            200,
            "application/json",
            resp,
        );
        assert_eq!(c.provider, "deepseek");
        assert_eq!(
            (c.cache_read_tokens, c.reasoning_tokens),
            (Some(8), Some(3))
        );
        assert_eq!(
            c.output_messages,
            json!([{"role": "assistant", "parts": [{"type": "reasoning", "content": "Add."}, {"type": "text", "content": "4"}], "finish_reason": "stop"}])
        );
        assert_eq!(c.output_text, "4");
    }
}
