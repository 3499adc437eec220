//! Google Gemini `generateContent` / `streamGenerateContent` (Gemini API and Vertex AI
//! `publishers/google` paths), plus `embedContent` / `batchEmbedContents`.
//!
//! The model is in the URL, not the body. Streams come as SSE (`alt=sse`, one
//! `GenerateContentResponse` per `data:` line, no `[DONE]`) or, without `alt=sse`, as
//! one JSON array that a cut recording leaves unterminated; both are read chunk by chunk
//! and merged per candidate index (parts appended, adjacent text joined, the last
//! `finishReason` and `usageMetadata` win). Google accepts camelCase and snake_case
//! field names, so both are read. Function calls may lack ids (older models); then
//! `ToolCall::id` is `None` and callers match by name and order, as GENAI.md §5 says.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::fields::{self, array, as_count, either, nonempty, string};
use super::openai_embeddings::dimensions;
use super::recognise::{Api, Route};
use super::{blank, genai, record_error, sse, ExchangeView, LlmCall, ToolCall, ToolResult};

pub(super) fn parse(x: &ExchangeView, route: &Route) -> LlmCall {
    let mut call = blank(route);
    let req = fields::json(x.request_body);
    if route.api == Api::EmbedContent {
        read_embeddings(&mut call, req.as_ref(), x);
        return call;
    }
    if let Some(req) = &req {
        read_request(&mut call, req);
    }
    let chunks = response_chunks(x.response_body);
    if sse::looks_like_sse(x.response_body) {
        call.stream = true;
    }
    read_chunks(&mut call, &chunks, x.status);
    call
}

/// The response's `GenerateContentResponse` objects, whatever the framing.
fn response_chunks(body: &[u8]) -> Vec<Value> {
    if sse::looks_like_sse(body) {
        return sse::json_events(body).into_iter().map(|(_, v)| v).collect();
    }
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"[") {
        return sse::array_objects(trimmed);
    }
    fields::json(body).into_iter().collect()
}

fn get<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    either(v, &[camel, snake])
}

fn count2(v: &Value, camel: &str, snake: &str) -> Option<u64> {
    get(v, camel, snake).and_then(as_count)
}

fn float2(v: &Value, camel: &str, snake: &str) -> Option<f64> {
    get(v, camel, snake).and_then(Value::as_f64)
}

fn read_request(call: &mut LlmCall, req: &Value) {
    if let Some(cfg) = get(req, "generationConfig", "generation_config") {
        call.temperature = float2(cfg, "temperature", "temperature");
        call.top_p = float2(cfg, "topP", "top_p");
        call.top_k = float2(cfg, "topK", "top_k");
        call.max_tokens = count2(cfg, "maxOutputTokens", "max_output_tokens");
        call.choice_count = count2(cfg, "candidateCount", "candidate_count");
        call.stop_sequences = fields::strings(get(cfg, "stopSequences", "stop_sequences"));
        call.seed = get(cfg, "seed", "seed").and_then(Value::as_i64);
        call.frequency_penalty = float2(cfg, "frequencyPenalty", "frequency_penalty");
        call.presence_penalty = float2(cfg, "presencePenalty", "presence_penalty");
    }
    for tool in array(req, "tools") {
        let decls =
            get(tool, "functionDeclarations", "function_declarations").and_then(Value::as_array);
        match decls {
            Some(decls) => call
                .tool_definitions
                .extend(decls.iter().filter_map(|d| nonempty(d, "name"))),
            // Built-in tools (`googleSearch`, `codeExecution`, ...) are named by their key.
            None => {
                if let Some(obj) = tool.as_object() {
                    call.tool_definitions.extend(obj.keys().cloned());
                }
            }
        }
    }
    call.system_instructions = match get(req, "systemInstruction", "system_instruction") {
        Some(Value::String(s)) => Some(json!([genai::text(s)])),
        Some(si @ Value::Object(_)) => {
            let parts: Vec<Value> = array(si, "parts").iter().map(part).collect();
            (!parts.is_empty()).then_some(Value::Array(parts))
        }
        _ => None,
    };
    let (messages, results) = history(array(req, "contents"));
    call.input_messages = Value::Array(messages);
    call.tool_results = results;
}

fn history(contents: &[Value]) -> (Vec<Value>, Vec<ToolResult>) {
    let mut out = Vec::new();
    let mut results = Vec::new();
    // Older models send no ids; remember names per id only when there is one.
    let mut names: HashMap<String, String> = HashMap::new();
    for c in contents {
        let role = genai::role(c.get("role").and_then(Value::as_str).unwrap_or("user"));
        let mut segments: Vec<(&str, Vec<Value>)> = Vec::new();
        for p in array(c, "parts") {
            let target = if let Some(fr) = get(p, "functionResponse", "function_response") {
                let id = nonempty(fr, "id");
                let name = nonempty(fr, "name")
                    .or_else(|| id.as_ref().and_then(|i| names.get(i).cloned()));
                let response = fr.get("response").unwrap_or(&Value::Null);
                results.push(ToolResult {
                    id,
                    name,
                    content: response_text(response),
                    is_error: response.get("error").is_some_and(|e| !e.is_null()),
                });
                "tool"
            } else {
                if let Some(fc) = get(p, "functionCall", "function_call") {
                    if let (Some(id), Some(name)) = (nonempty(fc, "id"), nonempty(fc, "name")) {
                        names.insert(id, name);
                    }
                }
                role
            };
            let part = part(p);
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

/// The text of a `functionResponse.response` object: by convention `{"output": ...}` or
/// `{"error": ...}` (the SDKs wrap plain results that way), else the JSON itself.
fn response_text(response: &Value) -> String {
    for key in ["output", "result", "content", "error"] {
        match response.get(key) {
            Some(Value::String(s)) => return s.clone(),
            Some(Value::Null) | None => {}
            Some(other) => return other.to_string(),
        }
    }
    match response {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One Gemini part as a GenAI part.
fn part(p: &Value) -> Value {
    if let Some(t) = p.get("text").and_then(Value::as_str) {
        return if fields::flag(p, "thought") == Some(true) {
            genai::reasoning(t)
        } else {
            genai::text(t)
        };
    }
    if let Some(fc) = get(p, "functionCall", "function_call") {
        return genai::tool_call(
            nonempty(fc, "id").as_deref(),
            &string(fc, "name").unwrap_or_default(),
            fc.get("args").unwrap_or(&json!({})),
        );
    }
    if let Some(fr) = get(p, "functionResponse", "function_response") {
        return genai::tool_call_response(
            nonempty(fr, "id").as_deref(),
            fr.get("response").unwrap_or(&Value::Null),
        );
    }
    if let Some(d) = get(p, "inlineData", "inline_data") {
        let mime = get(d, "mimeType", "mime_type").and_then(Value::as_str);
        return genai::blob(
            genai::modality(mime),
            mime,
            d.get("data").and_then(Value::as_str).unwrap_or(""),
        );
    }
    if let Some(f) = get(p, "fileData", "file_data") {
        let mime = get(f, "mimeType", "mime_type").and_then(Value::as_str);
        let uri = get(f, "fileUri", "file_uri")
            .and_then(Value::as_str)
            .unwrap_or("");
        return genai::uri(genai::modality(mime), mime, uri);
    }
    if let Some(code) = get(p, "executableCode", "executable_code") {
        return genai::server_tool_call(None, "code_execution", code);
    }
    if let Some(result) = get(p, "codeExecutionResult", "code_execution_result") {
        return genai::server_tool_call_response(None, result);
    }
    genai::generic("unknown")
}

/// One candidate being merged across stream chunks.
#[derive(Default)]
struct Candidate {
    parts: Vec<Value>,
    finish_reason: Option<String>,
}

fn read_chunks(call: &mut LlmCall, chunks: &[Value], status: Option<u16>) {
    let mut candidates: BTreeMap<u64, Candidate> = BTreeMap::new();
    for chunk in chunks {
        if let Some(e) = chunk.get("error").filter(|e| e.is_object()) {
            let kind = nonempty(e, "status").or_else(|| fields::code(e.get("code")));
            record_error(call, kind, string(e, "message"), status);
            continue;
        }
        if let Some(id) = get(chunk, "responseId", "response_id").and_then(Value::as_str) {
            if !id.is_empty() {
                call.response_id = Some(id.to_string());
            }
        }
        if let Some(m) = get(chunk, "modelVersion", "model_version").and_then(Value::as_str) {
            if !m.is_empty() {
                call.response_model = Some(m.to_string());
            }
        }
        if let Some(u) = get(chunk, "usageMetadata", "usage_metadata") {
            read_usage(call, u);
        }
        for (pos, c) in array(chunk, "candidates").iter().enumerate() {
            let index = c.get("index").and_then(as_count).unwrap_or(pos as u64);
            let cand = candidates.entry(index).or_default();
            let content = c.get("content").unwrap_or(&Value::Null);
            for p in array(content, "parts") {
                push_part(&mut cand.parts, part(p));
            }
            if let Some(r) = get(c, "finishReason", "finish_reason").and_then(Value::as_str) {
                if !r.is_empty() {
                    cand.finish_reason = Some(r.to_string());
                }
            }
        }
    }
    if candidates.is_empty() {
        return;
    }
    let mut outputs = Vec::new();
    let mut texts = Vec::new();
    for (_, cand) in candidates {
        for p in &cand.parts {
            if p.get("type").and_then(Value::as_str) == Some("tool_call") {
                call.tool_calls.push(ToolCall {
                    id: nonempty(p, "id"),
                    name: string(p, "name").unwrap_or_default(),
                    arguments: p.get("arguments").cloned().unwrap_or_else(|| json!({})),
                });
            }
        }
        let text = genai::text_of_parts(&cand.parts);
        if !text.is_empty() {
            texts.push(text);
        }
        let finish = match &cand.finish_reason {
            Some(r) => {
                call.finish_reasons.push(r.clone());
                genai::output_finish_reason(r)
            }
            None if call.error_type.is_some() => "error".to_string(),
            None => super::FINISH_UNKNOWN.to_string(),
        };
        outputs.push(genai::output_message(cand.parts, &finish));
    }
    call.output_text = texts.join("\n");
    call.output_messages = Value::Array(outputs);
}

/// Appends a streamed part, joining it to the previous one when both are text of the
/// same kind, so a streamed answer reads as one part like the non-streamed one.
fn push_part(parts: &mut Vec<Value>, p: Value) {
    let kind = p.get("type").and_then(Value::as_str).map(str::to_string);
    if let (Some(kind), Some(last)) = (kind, parts.last_mut()) {
        if (kind == "text" || kind == "reasoning")
            && last.get("type").and_then(Value::as_str) == Some(kind.as_str())
        {
            let add = p.get("content").and_then(Value::as_str).unwrap_or("");
            if let Some(Value::String(s)) = last.get_mut("content") {
                s.push_str(add);
                return;
            }
        }
    }
    parts.push(p);
}

fn read_usage(call: &mut LlmCall, u: &Value) {
    let prompt = count2(u, "promptTokenCount", "prompt_token_count");
    let tool_prompt = count2(u, "toolUsePromptTokenCount", "tool_use_prompt_token_count");
    let candidates = count2(u, "candidatesTokenCount", "candidates_token_count");
    let thoughts = count2(u, "thoughtsTokenCount", "thoughts_token_count");
    if prompt.is_some() || tool_prompt.is_some() {
        call.input_tokens = fields::add(prompt, tool_prompt);
    }
    if candidates.is_some() || thoughts.is_some() {
        call.output_tokens = fields::add(candidates, thoughts);
    }
    if thoughts.is_some() {
        call.reasoning_tokens = thoughts;
    }
    if let Some(c) = count2(u, "cachedContentTokenCount", "cached_content_token_count") {
        call.cache_read_tokens = Some(c);
    }
}

fn read_embeddings(call: &mut LlmCall, req: Option<&Value>, x: &ExchangeView) {
    if let Some(req) = req {
        // Batch requests name the model per request, as `models/{m}`.
        let first = array(req, "requests").first().unwrap_or(req);
        call.request_model =
            nonempty(first, "model").map(|m| m.strip_prefix("models/").unwrap_or(&m).to_string());
        call.embedding_dimensions = count2(first, "outputDimensionality", "output_dimensionality");
    }
    let Some(body) = fields::json(x.response_body) else {
        return;
    };
    if let Some(e) = body.get("error").filter(|e| e.is_object()) {
        let kind = nonempty(e, "status").or_else(|| fields::code(e.get("code")));
        record_error(call, kind, string(e, "message"), x.status);
        call.embedding_dimensions = None;
        return;
    }
    let first = body
        .get("embedding")
        .or_else(|| array(&body, "embeddings").first());
    if let Some(values) = first.and_then(|e| e.get("values")) {
        call.embedding_dimensions = dimensions(values);
    }
    if let Some(u) = get(&body, "usageMetadata", "usage_metadata") {
        call.input_tokens = count2(u, "promptTokenCount", "prompt_token_count");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_any, ExchangeView, LlmCall};
    use super::*;

    const FLASH: &str =
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent";
    const FLASH_SSE: &str = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

    fn run(url: &str, req: &str, status: u16, resp: &str) -> LlmCall {
        let x = ExchangeView {
            method: "POST",
            url,
            request_headers: &[],
            request_body: req.as_bytes(),
            status: Some(status),
            response_headers: &[],
            response_body: resp.as_bytes(),
        };
        parse_any(&x).expect("recognised")
    }

    const REQ: &str = r#"{"contents":[{"role":"user","parts":[{"text":"Weather in Boston and Paris?"}]}],
      "systemInstruction":{"parts":[{"text":"Answer briefly."}]},
      "tools":[{"functionDeclarations":[{"name":"get_current_weather","description":"d","parameters":{"type":"object"}}]},{"googleSearch":{}}],
      "generationConfig":{"temperature":0.4,"topP":0.95,"topK":40,"maxOutputTokens":1024,"candidateCount":1,"stopSequences":["END"],"seed":42}}"#;

    #[test]
    fn non_streaming_parallel_function_calls() {
        let resp = r#"{"candidates":[{"content":{"parts":[
            {"functionCall":{"name":"get_current_weather","args":{"location":"Boston, MA"}},"thoughtSignature":"CiIB"},
            {"functionCall":{"name":"get_current_weather","args":{"location":"Paris"}}}],"role":"model"},
            "finishReason":"STOP","index":0}],
          "usageMetadata":{"promptTokenCount":120,"candidatesTokenCount":30,"totalTokenCount":200,"thoughtsTokenCount":50,"cachedContentTokenCount":64,
             "promptTokensDetails":[{"modality":"TEXT","tokenCount":120}]},
          "modelVersion":"gemini-2.5-flash","responseId":"2FkTaK2xA4-hz7IP7oSrgAM"}"#;
        let c = run(FLASH, REQ, 200, resp);
        assert_eq!(
            (c.provider.as_str(), c.operation.as_str(), c.api.as_deref()),
            ("gcp.gemini", "generate_content", Some("generate_content"))
        );
        assert_eq!(c.request_model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(c.response_model.as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(c.response_id.as_deref(), Some("2FkTaK2xA4-hz7IP7oSrgAM"));
        assert!(!c.stream);
        assert_eq!((c.input_tokens, c.output_tokens), (Some(120), Some(80)));
        assert_eq!(
            (c.reasoning_tokens, c.cache_read_tokens),
            (Some(50), Some(64))
        );
        assert_eq!(c.finish_reasons, vec!["STOP"]);
        assert_eq!(
            (c.temperature, c.top_p, c.top_k),
            (Some(0.4), Some(0.95), Some(40.0))
        );
        assert_eq!(
            (c.max_tokens, c.choice_count, c.seed),
            (Some(1024), Some(1), Some(42))
        );
        assert_eq!(c.stop_sequences, vec!["END"]);
        assert_eq!(
            c.tool_definitions,
            vec!["get_current_weather", "googleSearch"]
        );
        assert_eq!(
            c.system_instructions,
            Some(json!([{"type": "text", "content": "Answer briefly."}]))
        );
        assert_eq!(
            c.tool_calls,
            vec![
                ToolCall {
                    id: None,
                    name: "get_current_weather".into(),
                    arguments: json!({"location": "Boston, MA"})
                },
                ToolCall {
                    id: None,
                    name: "get_current_weather".into(),
                    arguments: json!({"location": "Paris"})
                },
            ]
        );
        assert_eq!(c.output_messages[0]["finish_reason"], "stop");
        assert_eq!(
            c.input_messages,
            json!([{"role": "user", "parts": [{"type": "text", "content": "Weather in Boston and Paris?"}]}])
        );
    }

    #[test]
    fn function_responses_in_the_next_request() {
        let req = r#"{"contents":[
          {"role":"user","parts":[{"text":"Weather in Boston?"}]},
          {"role":"model","parts":[{"functionCall":{"id":"fc-1","name":"get_current_weather","args":{"location":"Boston, MA"}}}]},
          {"role":"user","parts":[{"functionResponse":{"id":"fc-1","name":"get_current_weather","response":{"output":"22C"}}},
                                  {"functionResponse":{"name":"get_time","response":{"error":"tz service down"}}}]}]}"#;
        let resp = r#"{"candidates":[{"content":{"parts":[{"text":"It is 22C."}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":50,"candidatesTokenCount":5,"totalTokenCount":55},"modelVersion":"gemini-2.5-flash"}"#;
        let c = run(FLASH, req, 200, resp);
        assert_eq!(
            c.tool_results,
            vec![
                ToolResult {
                    id: Some("fc-1".into()),
                    name: Some("get_current_weather".into()),
                    content: "22C".into(),
                    is_error: false
                },
                ToolResult {
                    id: None,
                    name: Some("get_time".into()),
                    content: "tz service down".into(),
                    is_error: true
                },
            ]
        );
        let msgs = c.input_messages.as_array().unwrap();
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[1]["parts"][0]["id"], "fc-1");
        assert_eq!(msgs[2]["role"], "tool");
        assert_eq!(
            msgs[2]["parts"][0],
            json!({"type": "tool_call_response", "id": "fc-1", "response": {"output": "22C"}})
        );
        assert_eq!(c.output_text, "It is 22C.");
        assert_eq!(
            (c.input_tokens, c.output_tokens, c.reasoning_tokens),
            (Some(50), Some(5), None)
        );
    }

    const SSE: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Thinking about it\",\"thought\": true}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"totalTokenCount\": 9},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 1,\"totalTokenCount\": 10},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" there!\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 3,\"totalTokenCount\": 12},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"wave\",\"args\": {\"times\": 2}}}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 8,\"totalTokenCount\": 37,\"thoughtsTokenCount\": 20},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n",
    );

    #[test]
    fn sse_stream_merges_chunks() {
        let c = run(
            FLASH_SSE,
            r#"{"contents":[{"role":"user","parts":[{"text":"Hi"}]}]}"#,
            200,
            SSE,
        );
        assert!(c.stream);
        assert_eq!(c.response_id.as_deref(), Some("r1"));
        assert_eq!(c.output_text, "Hello there!");
        assert_eq!(
            (c.input_tokens, c.output_tokens, c.reasoning_tokens),
            (Some(9), Some(28), Some(20))
        );
        assert_eq!(c.finish_reasons, vec!["STOP"]);
        assert_eq!(
            c.tool_calls,
            vec![ToolCall {
                id: None,
                name: "wave".into(),
                arguments: json!({"times": 2})
            }]
        );
        assert_eq!(
            c.output_messages,
            json!([{"role": "assistant", "parts": [
                {"type": "reasoning", "content": "Thinking about it"},
                {"type": "text", "content": "Hello there!"},
                {"type": "tool_call", "name": "wave", "arguments": {"times": 2}}
            ], "finish_reason": "stop"}])
        );
    }

    #[test]
    fn json_array_stream_even_when_cut() {
        let url = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:streamGenerateContent";
        let body = r#"[{"candidates":[{"content":{"role":"model","parts":[{"text":"One"}]}}],"modelVersion":"gemini-2.0-flash-001"}
,
{"candidates":[{"content":{"role":"model","parts":[{"text":", two"}]}}],"modelVersion":"gemini-2.0-flash-001"}
,
{"candidates":[{"content":{"role":"model","parts":[{"text":", thr"#;
        let c = run(
            url,
            r#"{"contents":[{"role":"user","parts":[{"text":"Count"}]}]}"#,
            200,
            body,
        );
        assert_eq!(c.provider, "gcp.vertex_ai");
        assert!(c.stream);
        assert_eq!(c.request_model.as_deref(), Some("gemini-2.0-flash-001"));
        assert_eq!(c.output_text, "One, two");
        assert!(c.finish_reasons.is_empty());
        assert_eq!(c.output_messages[0]["finish_reason"], "unknown");
    }

    #[test]
    fn error_bodies_use_status() {
        let resp = r#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#;
        let c = run(FLASH, REQ, 400, resp);
        assert_eq!(c.error_type.as_deref(), Some("INVALID_ARGUMENT"));
        assert!(c.error_message.as_deref().unwrap().contains("1048576"));
        assert_eq!(c.output_messages, Value::Null);
        // In-stream, after some text.
        let body = format!("{}data: {{\"error\": {{\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}}}\n\n", &SSE[..SSE.match_indices("data: ").nth(2).map(|(i, _)| i).unwrap()]);
        let c = run(FLASH_SSE, "{}", 200, &body);
        assert_eq!(c.error_type.as_deref(), Some("UNAVAILABLE"));
        assert_eq!(c.output_messages[0]["finish_reason"], "error");
    }

    #[test]
    fn snake_case_requests_are_read_too() {
        let req = r#"{"contents":[{"role":"user","parts":[{"inline_data":{"mime_type":"image/jpeg","data":"/9j/"}},{"text":"What is this?"}]}],
          "system_instruction":{"parts":[{"text":"Be exact."}]},"generation_config":{"max_output_tokens":50,"top_p":0.5}}"#;
        let c = run(FLASH, req, 200, "");
        assert_eq!((c.max_tokens, c.top_p), (Some(50), Some(0.5)));
        assert_eq!(
            c.system_instructions,
            Some(json!([{"type": "text", "content": "Be exact."}]))
        );
        assert_eq!(
            c.input_messages[0]["parts"][0],
            json!({"type": "blob", "mime_type": "image/jpeg", "modality": "image", "content": "/9j/"})
        );
        assert_eq!(c.output_messages, Value::Null);
    }

    #[test]
    fn embed_content() {
        let c = run(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:embedContent",
            r#"{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"hello"}]},"outputDimensionality":768}"#,
            200,
            r#"{"embedding":{"values":[0.1,0.2,0.3,0.4]}}"#,
        );
        assert_eq!(
            (c.operation.as_str(), c.api.as_deref()),
            ("embeddings", Some("embed_content"))
        );
        assert_eq!(c.request_model.as_deref(), Some("gemini-embedding-001"));
        assert_eq!(c.embedding_dimensions, Some(4));
        let c = run(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents",
            r#"{"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]}}]}"#,
            200,
            r#"{"embeddings":[{"values":[1,2]},{"values":[3,4]}]}"#,
        );
        assert_eq!(c.embedding_dimensions, Some(2));
    }
}
