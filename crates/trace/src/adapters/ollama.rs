//! Ollama's native API: `/api/chat`, `/api/generate`, `/api/embed` and the legacy
//! `/api/embeddings`. (Ollama's OpenAI-compatible `/v1/*` paths go through the OpenAI
//! adapters.)
//!
//! Native streams are NDJSON, not SSE, and streaming is the default: a request without
//! `"stream": false` streams. Each line carries a fragment (`message.content` for chat,
//! `response` for generate); the final line has `done: true`, `done_reason` and the
//! counts (`prompt_eval_count` = input, `eval_count` = output). Tool calls arrive whole
//! (arguments already an object), one or more per line. Sampling parameters live under
//! `options` with Ollama's own names (`num_predict` is the output-token limit).

use std::collections::HashMap;

use serde_json::{json, Value};

use super::fields::{self, array, count, float, int, nonempty, string};
use super::openai_embeddings::dimensions;
use super::recognise::{Api, Route};
use super::{blank, genai, record_error, sse, ExchangeView, LlmCall, ToolCall, ToolResult};

pub(super) fn parse(x: &ExchangeView, route: &Route) -> LlmCall {
    let mut call = blank(route);
    let req = fields::json(x.request_body);
    if let Some(req) = &req {
        read_request(&mut call, req, route.api);
    }
    let lines = match fields::json(x.response_body) {
        Some(v) => vec![v],
        None => sse::ndjson(x.response_body),
    };
    if lines.len() > 1 {
        call.stream = true;
    }
    match route.api {
        Api::OllamaEmbed => read_embeddings(&mut call, &lines, x.status),
        _ => read_lines(&mut call, &lines, x.status),
    }
    call
}

fn read_request(call: &mut LlmCall, req: &Value, api: Api) {
    call.request_model = nonempty(req, "model");
    if api == Api::OllamaEmbed {
        call.embedding_dimensions = count(req, "dimensions");
        return;
    }
    // Ollama streams unless told not to.
    call.stream = fields::flag(req, "stream") != Some(false);
    if let Some(o) = req.get("options").filter(|o| o.is_object()) {
        call.max_tokens = count(o, "num_predict").filter(|n| *n > 0);
        call.temperature = float(o, "temperature");
        call.top_p = float(o, "top_p");
        call.top_k = float(o, "top_k");
        call.seed = int(o, "seed");
        call.frequency_penalty = float(o, "frequency_penalty");
        call.presence_penalty = float(o, "presence_penalty");
        call.stop_sequences = fields::strings(o.get("stop"));
    }
    call.tool_definitions = array(req, "tools")
        .iter()
        .filter_map(|t| t.get("function").and_then(|f| nonempty(f, "name")))
        .collect();
    if api == Api::OllamaGenerate {
        if let Some(system) = nonempty(req, "system") {
            call.system_instructions = Some(json!([genai::text(&system)]));
        }
        let mut parts = vec![genai::text(&string(req, "prompt").unwrap_or_default())];
        parts.extend(images(req));
        call.input_messages = json!([genai::message("user", parts)]);
        return;
    }
    let mut messages = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for m in array(req, "messages") {
        let raw_role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = string(m, "content").unwrap_or_default();
        if raw_role == "tool" {
            let id = nonempty(m, "tool_call_id");
            let name = nonempty(m, "tool_name")
                .or_else(|| nonempty(m, "name"))
                .or_else(|| id.as_ref().and_then(|i| names.get(i).cloned()));
            messages.push(genai::message(
                "tool",
                vec![genai::tool_call_response(
                    id.as_deref(),
                    &Value::String(content.clone()),
                )],
            ));
            call.tool_results.push(ToolResult {
                id,
                name,
                content,
                is_error: false,
            });
            continue;
        }
        let mut parts = Vec::new();
        if let Some(t) = nonempty(m, "thinking") {
            parts.push(genai::reasoning(&t));
        }
        if !content.is_empty() || m.get("tool_calls").is_none() {
            parts.push(genai::text(&content));
        }
        parts.extend(images(m));
        for tc in array(m, "tool_calls") {
            let (id, name, args) = tool_call_fields(tc);
            if let Some(id) = &id {
                names.insert(id.clone(), name.clone());
            }
            parts.push(genai::tool_call(id.as_deref(), &name, &args));
        }
        messages.push(genai::message(genai::role(raw_role), parts));
    }
    call.input_messages = Value::Array(messages);
}

/// `images` are bare base64 strings; Ollama does not say which format.
fn images(v: &Value) -> Vec<Value> {
    array(v, "images")
        .iter()
        .filter_map(Value::as_str)
        .map(|b64| genai::blob("image", None, b64))
        .collect()
}

fn tool_call_fields(tc: &Value) -> (Option<String>, String, Value) {
    let f = tc.get("function").unwrap_or(&Value::Null);
    (
        nonempty(tc, "id"),
        string(f, "name").unwrap_or_default(),
        fields::arguments_value(f.get("arguments")),
    )
}

fn read_lines(call: &mut LlmCall, lines: &[Value], status: Option<u16>) {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    let mut finish: Option<String> = None;
    let mut any = false;
    for line in lines {
        if let Some(e) = line.get("error") {
            record_error(call, None, Some(fields::text_of(e)), status);
            continue;
        }
        any = true;
        if let Some(m) = nonempty(line, "model") {
            call.response_model = Some(m);
        }
        let msg = line.get("message").unwrap_or(&Value::Null);
        for source in [msg, line] {
            for key in ["content", "response"] {
                if let Some(t) = source.get(key).and_then(Value::as_str) {
                    text.push_str(t);
                }
            }
            if let Some(t) = source.get("thinking").and_then(Value::as_str) {
                thinking.push_str(t);
            }
        }
        for tc in array(msg, "tool_calls") {
            calls.push(tool_call_fields(tc));
        }
        if fields::flag(line, "done") == Some(true) {
            if let Some(r) = nonempty(line, "done_reason") {
                finish = Some(r);
            }
            call.input_tokens = count(line, "prompt_eval_count").or(call.input_tokens);
            call.output_tokens = count(line, "eval_count").or(call.output_tokens);
        }
    }
    if !any {
        return;
    }
    let mut parts = Vec::new();
    if !thinking.is_empty() {
        parts.push(genai::reasoning(&thinking));
    }
    if !text.is_empty() {
        parts.push(genai::text(&text));
    }
    for (id, name, arguments) in calls {
        parts.push(genai::tool_call(id.as_deref(), &name, &arguments));
        call.tool_calls.push(ToolCall {
            id,
            name,
            arguments,
        });
    }
    call.output_text = text;
    let out_finish = match &finish {
        Some(r) => {
            call.finish_reasons = vec![r.clone()];
            genai::output_finish_reason(r)
        }
        None if call.error_type.is_some() || call.error_message.is_some() => "error".to_string(),
        None => super::FINISH_UNKNOWN.to_string(),
    };
    call.output_messages = json!([genai::output_message(parts, &out_finish)]);
}

fn read_embeddings(call: &mut LlmCall, lines: &[Value], status: Option<u16>) {
    let Some(body) = lines.first() else {
        return;
    };
    if let Some(e) = body.get("error") {
        record_error(call, None, Some(fields::text_of(e)), status);
        call.embedding_dimensions = None;
        return;
    }
    call.response_model = nonempty(body, "model");
    call.input_tokens = count(body, "prompt_eval_count");
    let first = array(body, "embeddings")
        .first()
        .or_else(|| body.get("embedding"));
    if let Some(d) = first.and_then(dimensions) {
        call.embedding_dimensions = Some(d);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_any, ExchangeView, LlmCall};
    use super::*;

    fn run(path: &str, req: &str, status: u16, resp: &str) -> LlmCall {
        let url = format!("http://localhost:11434{path}");
        // Ollama answers `stream: false` with plain JSON, streams with NDJSON.
        let ct = if resp.trim().lines().count() > 1 {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let headers = vec![("content-type".to_string(), ct.to_string())];
        let x = ExchangeView {
            method: "POST",
            url: &url,
            request_headers: &[],
            request_body: req.as_bytes(),
            status: Some(status),
            response_headers: &headers,
            response_body: resp.as_bytes(),
        };
        parse_any(&x).expect("recognised")
    }

    #[test]
    fn chat_stream_with_tool_call() {
        let req = r#"{"model":"qwen3:8b","messages":[{"role":"user","content":"Weather in Toronto?"}],
          "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],
          "options":{"temperature":0.1,"num_predict":128,"top_k":20,"seed":3,"stop":["<|im_end|>"]}}"#;
        let resp = concat!(
            "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-06-01T10:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Need tool.\"},\"done\":false}\n",
            "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-06-01T10:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Toronto\"}}}]},\"done\":false}\n",
            "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-06-01T10:00:02Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,\"eval_count\":20,\"eval_duration\":4535599000}\n",
        );
        let c = run("/api/chat", req, 200, resp);
        assert_eq!(
            (c.provider.as_str(), c.operation.as_str(), c.api.as_deref()),
            ("ollama", "chat", Some("ollama_chat"))
        );
        assert!(c.stream);
        assert_eq!(c.request_model.as_deref(), Some("qwen3:8b"));
        assert_eq!(c.response_model.as_deref(), Some("qwen3:8b"));
        assert_eq!((c.input_tokens, c.output_tokens), (Some(26), Some(20)));
        assert_eq!(c.finish_reasons, vec!["stop"]);
        assert_eq!(
            (c.max_tokens, c.temperature, c.top_k, c.seed),
            (Some(128), Some(0.1), Some(20.0), Some(3))
        );
        assert_eq!(c.stop_sequences, vec!["<|im_end|>"]);
        assert_eq!(c.tool_definitions, vec!["get_weather"]);
        assert_eq!(
            c.tool_calls,
            vec![ToolCall {
                id: None,
                name: "get_weather".into(),
                arguments: json!({"city": "Toronto"})
            }]
        );
        assert_eq!(
            c.output_messages[0]["parts"][0],
            json!({"type": "reasoning", "content": "Need tool."})
        );
    }

    #[test]
    fn chat_tool_result_and_non_streaming_reply() {
        let req = r#"{"model":"llama3.2","stream":false,"messages":[
          {"role":"user","content":"Weather in Toronto?"},
          {"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Toronto"}}}]},
          {"role":"tool","content":"11 degrees celsius","tool_name":"get_weather"}]}"#;
        let resp = r#"{"model":"llama3.2","created_at":"2025-06-01T10:00:00Z","message":{"role":"assistant","content":"It is 11C in Toronto."},"done_reason":"stop","done":true,"prompt_eval_count":60,"eval_count":9}"#;
        let c = run("/api/chat", req, 200, resp);
        assert!(!c.stream);
        assert_eq!(
            c.tool_results,
            vec![ToolResult {
                id: None,
                name: Some("get_weather".into()),
                content: "11 degrees celsius".into(),
                is_error: false
            }]
        );
        assert_eq!(c.output_text, "It is 11C in Toronto.");
        assert_eq!(
            c.input_messages[1]["parts"],
            json!([{"type": "tool_call", "name": "get_weather", "arguments": {"city": "Toronto"}}])
        );
        assert_eq!((c.input_tokens, c.output_tokens), (Some(60), Some(9)));
    }

    #[test]
    fn generate_stream_and_truncation() {
        let req = r#"{"model":"llama3.2","prompt":"Why is the sky blue?","system":"Be short."}"#;
        let full = concat!(
            "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"response\":\"The\",\"done\":false}\n",
            "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"response\":\" sky\",\"done\":false}\n",
            "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"response\":\"\",\"done\":true,\"done_reason\":\"length\",\"context\":[1,2,3],\"prompt_eval_count\":26,\"eval_count\":290}\n",
        );
        let c = run("/api/generate", req, 200, full);
        assert_eq!(
            (c.operation.as_str(), c.api.as_deref()),
            ("text_completion", Some("ollama_generate"))
        );
        assert!(c.stream);
        assert_eq!(c.output_text, "The sky");
        assert_eq!(c.finish_reasons, vec!["length"]);
        assert_eq!(
            c.system_instructions,
            Some(json!([{"type": "text", "content": "Be short."}]))
        );
        assert_eq!(
            c.input_messages,
            json!([{"role": "user", "parts": [{"type": "text", "content": "Why is the sky blue?"}]}])
        );
        let cut = &full[..full.find("\"done\":true").unwrap()];
        let c = run("/api/generate", req, 200, cut);
        assert_eq!(c.output_text, "The sky");
        assert_eq!(c.input_tokens, None);
        assert!(c.finish_reasons.is_empty());
    }

    #[test]
    fn errors_without_codes() {
        let c = run(
            "/api/chat",
            r#"{"model":"nope","messages":[]}"#,
            404,
            r#"{"error":"model \"nope\" not found, try pulling it first"}"#,
        );
        assert_eq!(c.error_type, None);
        assert_eq!(
            c.error_message.as_deref(),
            Some("model \"nope\" not found, try pulling it first")
        );
        // Mid-stream on a 200: the failure must not look like success.
        let body = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"error\":\"an error was encountered while running the model: unexpected EOF\"}\n";
        let c = run("/api/chat", r#"{"model":"m","messages":[]}"#, 200, body);
        assert_eq!(c.error_type.as_deref(), Some("_OTHER"));
        assert_eq!(c.output_text, "Hi");
        assert_eq!(c.output_messages[0]["finish_reason"], "error");
    }

    #[test]
    fn embed_both_forms() {
        let c = run(
            "/api/embed",
            r#"{"model":"all-minilm","input":["a","b"]}"#,
            200,
            r#"{"model":"all-minilm","embeddings":[[0.010071029,-0.0017594862,0.05007221],[0.1,0.2,0.3]],"total_duration":14143917,"prompt_eval_count":8}"#,
        );
        assert_eq!(
            (c.operation.as_str(), c.api.as_deref()),
            ("embeddings", Some("ollama_embed"))
        );
        assert_eq!((c.embedding_dimensions, c.input_tokens), (Some(3), Some(8)));
        let c = run(
            "/api/embeddings",
            r#"{"model":"all-minilm","prompt":"a"}"#,
            200,
            r#"{"embedding":[0.5,0.6]}"#,
        );
        assert_eq!(c.embedding_dimensions, Some(2));
        assert!(!c.stream);
    }
}
