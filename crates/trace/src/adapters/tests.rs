//! Cross-adapter tests: recognition end to end, transport failures, and the promise
//! that no input (random bytes, any truncation, flipped bytes) makes an adapter panic.

use serde_json::{json, Value};

use super::*;

pub(super) fn view<'a>(
    url: &'a str,
    req: &'a [u8],
    status: Option<u16>,
    resp_headers: &'a [(String, String)],
    resp: &'a [u8],
) -> ExchangeView<'a> {
    ExchangeView {
        method: "POST",
        url,
        request_headers: &[],
        request_body: req,
        status,
        response_headers: resp_headers,
        response_body: resp,
    }
}

/// Representative exchanges, one or more per adapter, streaming and not.
fn samples() -> Vec<(&'static str, String, String)> {
    vec![
        (
            "https://api.openai.com/v1/chat/completions",
            r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#.into(),
            concat!(
                "data: {\"id\":\"x\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,\"id\":\"c2\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]},\"finish_reason\":null}]}\n\n",
                "data: {\"id\":\"x\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
                "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n",
                "data: [DONE]\n\n"
            )
            .into(),
        ),
        (
            "https://api.openai.com/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#.into(),
            r#"{"id":"y","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#.into(),
        ),
        (
            "https://api.openai.com/v1/responses",
            r#"{"model":"gpt-4.1","input":[{"role":"user","content":"hi"},{"type":"function_call_output","call_id":"c","output":"x"}],"stream":true}"#.into(),
            concat!(
                "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"object\":\"response\",\"status\":\"in_progress\",\"output\":[]}}\n\n",
                "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"message\",\"role\":\"assistant\",\"content\":[]}}\n\n",
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":\"hey\"}\n\n",
                "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"object\":\"response\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"hey\"}]}],\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\n\n"
            )
            .into(),
        ),
        (
            "https://api.openai.com/v1/embeddings",
            r#"{"model":"text-embedding-3-small","input":"x"}"#.into(),
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":1,"total_tokens":1}}"#.into(),
        ),
        (
            "https://api.anthropic.com/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":10,"stream":true,"system":"s","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r","is_error":true}]}]}"#.into(),
            concat!(
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":3,\"cache_read_input_tokens\":2,\"output_tokens\":1}}}\n\n",
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"f\",\"input\":{}}}\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\": 1}\"}}\n\n",
                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":7}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
            )
            .into(),
        ),
        (
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"},{"functionResponse":{"name":"f","response":{"output":"x"}}}]}]}"#.into(),
            concat!(
                "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"He\"}]},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\"}\r\n\r\n",
                "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{}}}]},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2}}\r\n\r\n"
            )
            .into(),
        ),
        (
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent",
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#.into(),
            r#"[{"candidates":[{"content":{"role":"model","parts":[{"text":"a"}]}}]},{"candidates":[{"content":{"role":"model","parts":[{"text":"b"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":2}}]"#.into(),
        ),
        (
            "http://localhost:11434/api/chat",
            r#"{"model":"llama3.2","messages":[{"role":"user","content":"hi"},{"role":"tool","content":"r","tool_name":"f"}]}"#.into(),
            "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"He\"},\"done\":false}\n{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"y\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]},\"done\":false}\n{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":2}\n".into(),
        ),
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-lite-v1%3A0/converse",
            r#"{"messages":[{"role":"user","content":[{"text":"hi"},{"toolResult":{"toolUseId":"t","content":[{"text":"r"}],"status":"error"}}]}],"inferenceConfig":{"maxTokens":5}}"#.into(),
            r#"{"output":{"message":{"role":"assistant","content":[{"text":"hello"},{"toolUse":{"toolUseId":"u","name":"f","input":{}}}]}},"stopReason":"tool_use","usage":{"inputTokens":3,"outputTokens":2,"totalTokens":5}}"#.into(),
        ),
    ]
}

#[test]
fn every_sample_parses_to_something_real() {
    for (url, req, resp) in samples() {
        let c = parse(&view(url, req.as_bytes(), Some(200), &[], resp.as_bytes()))
            .unwrap_or_else(|| panic!("{url} not recognised"));
        assert!(!c.provider.is_empty(), "{url}");
        assert!(!c.operation.is_empty(), "{url}");
        if c.operation != "embeddings" {
            assert!(!c.finish_reasons.is_empty(), "{url}: {c:?}");
            assert!(c.output_messages.is_array(), "{url}");
            assert!(c.input_messages.is_array(), "{url}");
        }
        assert!(c.input_tokens.is_some(), "{url}: {c:?}");
        // The call must serialise (the exporter writes it as JSON).
        let s = serde_json::to_string(&c).expect("serialisable");
        assert!(s.contains("\"provider\""));
    }
}

#[test]
fn transport_error_keeps_the_request_side() {
    let req =
        br#"{"model":"gpt-4o","temperature":0.3,"messages":[{"role":"user","content":"hi"}]}"#;
    let c = parse(&view(
        "https://api.openai.com/v1/chat/completions",
        req,
        None,
        &[],
        b"",
    ))
    .unwrap();
    assert_eq!(c.request_model.as_deref(), Some("gpt-4o"));
    assert_eq!(c.temperature, Some(0.3));
    assert_eq!(
        c.input_messages,
        json!([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    );
    assert_eq!(c.output_messages, Value::Null);
    assert_eq!(
        (c.error_type.as_deref(), c.response_model.as_deref()),
        (None, None)
    );
    assert!(c.finish_reasons.is_empty());
}

#[test]
fn non_llm_traffic_is_none() {
    let tool = parse(&view(
        "https://weather.test/v1/forecast?city=Paris",
        b"",
        Some(200),
        &[],
        b"{\"t\":18}",
    ));
    assert_eq!(tool, None);
    let mut get = view(
        "https://api.openai.com/v1/models",
        b"",
        Some(200),
        &[],
        b"{}",
    );
    get.method = "GET";
    assert_eq!(parse(&get), None);
    let tokens = parse(&view(
        "https://api.anthropic.com/v1/messages/count_tokens",
        br#"{"model":"claude-sonnet-4-5","messages":[]}"#,
        Some(200),
        &[],
        br#"{"input_tokens":10}"#,
    ));
    assert_eq!(tokens, None);
}

#[test]
fn content_type_marks_streams_even_when_the_body_is_empty() {
    let h = vec![("content-type".to_string(), "text/event-stream".to_string())];
    let c = parse(&view(
        "https://api.openai.com/v1/chat/completions",
        br#"{"model":"gpt-4o","messages":[]}"#,
        Some(200),
        &h,
        b"",
    ))
    .unwrap();
    assert!(c.stream);
}

/// xorshift64*: deterministic, dependency-free noise for the robustness tests.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut n = Noise(0x9E37_79B9_7F4A_7C15);
    let urls = [
        "https://api.openai.com/v1/chat/completions",
        "https://api.openai.com/v1/responses",
        "https://api.openai.com/v1/embeddings",
        "https://api.openai.com/v1/completions",
        "https://api.anthropic.com/v1/messages",
        "https://generativelanguage.googleapis.com/v1beta/models/g:streamGenerateContent?alt=sse",
        "https://generativelanguage.googleapis.com/v1beta/models/g:embedContent",
        "http://localhost:11434/api/chat",
        "http://localhost:11434/api/embed",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke",
    ];
    for round in 0..300 {
        let len = (n.next() % 512) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| n.next() as u8).collect();
        let url = urls[round % urls.len()];
        let _ = parse(&view(url, &bytes, Some(200), &[], &bytes));
        let _ = parse(&view(url, b"{}", Some(500), &[], &bytes));
    }
}

#[test]
fn every_truncation_and_byte_flip_is_survived() {
    let mut n = Noise(42);
    for (url, req, resp) in samples() {
        let (req, resp) = (req.as_bytes(), resp.as_bytes());
        for cut in 0..=resp.len() {
            let _ = parse(&view(url, req, Some(200), &[], &resp[..cut]));
        }
        for cut in (0..=req.len()).step_by(3) {
            let _ = parse(&view(url, &req[..cut], Some(200), &[], resp));
        }
        for _ in 0..200 {
            let mut r = resp.to_vec();
            let mut q = req.to_vec();
            for buf in [&mut r, &mut q] {
                if buf.is_empty() {
                    continue;
                }
                for _ in 0..3 {
                    let i = (n.next() as usize) % buf.len();
                    buf[i] = n.next() as u8;
                }
            }
            let _ = parse(&view(url, &q, Some(200), &[], &r));
        }
    }
}

/// A binary event stream of `(event type, payload)` messages; an event type starting
/// with `!` is an exception of that type.
pub(super) fn eventstream(messages: &[(&str, Value)]) -> Vec<u8> {
    use tapedeck_model::exchange::eventstream::{frame, put_header};
    let mut out = Vec::new();
    for (event, payload) in messages {
        let mut h = Vec::new();
        match event.strip_prefix('!') {
            Some(exception) => {
                put_header(b":exception-type", 7, exception.as_bytes(), &mut h);
                put_header(b":message-type", 7, b"exception", &mut h);
            }
            None => {
                put_header(b":event-type", 7, event.as_bytes(), &mut h);
                put_header(b":message-type", 7, b"event", &mut h);
            }
        }
        put_header(b":content-type", 7, b"application/json", &mut h);
        frame(&h, payload.to_string().as_bytes(), &mut out);
    }
    out
}

/// Bedrock's binary streams cut anywhere, with bytes flipped (most then fail their
/// CRC), and with payloads changed inside frames that still check.
#[test]
fn every_truncation_and_change_of_an_event_stream_is_survived() {
    use base64::Engine as _;
    let converse = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse-stream";
    let invoke = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude/invoke-with-response-stream";
    let h = [(
        "content-type".to_string(),
        "application/vnd.amazon.eventstream".to_string(),
    )];
    let chunk = |v: Value| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(v.to_string());
        ("chunk", json!({"bytes": b64}))
    };
    let streams = [
        (
            converse,
            "{}".to_string(),
            vec![
                ("messageStart", json!({"role": "assistant"})),
                (
                    "contentBlockStart",
                    json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}),
                ),
                (
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":1}"}}}),
                ),
                (
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": "hi"}}),
                ),
                ("messageStop", json!({"stopReason": "end_turn"})),
                (
                    "metadata",
                    json!({"usage": {"inputTokens": 3, "outputTokens": 4}}),
                ),
                ("!validationException", json!({"message": "no"})),
            ],
        ),
        (
            invoke,
            r#"{"anthropic_version":"bedrock-2023-05-31","messages":[]}"#.to_string(),
            vec![
                chunk(
                    json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 2}}}),
                ),
                chunk(
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}),
                ),
                chunk(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}})),
            ],
        ),
    ];
    let mut n = Noise(7);
    for (url, req, messages) in streams {
        let body = eventstream(&messages);
        let c = parse(&view(url, req.as_bytes(), Some(200), &h, &body)).unwrap();
        assert!(!c.output_text.is_empty(), "{url}");
        for cut in 0..=body.len() {
            let _ = parse(&view(url, req.as_bytes(), Some(200), &h, &body[..cut]));
        }
        for _ in 0..200 {
            let mut b = body.clone();
            for _ in 0..3 {
                let i = (n.next() as usize) % b.len();
                b[i] = n.next() as u8;
            }
            let _ = parse(&view(url, req.as_bytes(), Some(200), &h, &b));
            // The same change inside a payload, framed so that it checks.
            let mut changed = messages.clone();
            let k = (n.next() as usize) % changed.len();
            let mut text = changed[k].1.to_string().into_bytes();
            let i = (n.next() as usize) % text.len();
            text[i] = n.next() as u8;
            changed[k].1 = serde_json::from_slice(&text).unwrap_or(Value::Null);
            let _ = parse(&view(
                url,
                req.as_bytes(),
                Some(200),
                &h,
                &eventstream(&changed),
            ));
        }
    }
}

#[test]
fn structurally_wrong_json_is_survived() {
    // Right syntax, wrong types everywhere: every field access must tolerate it.
    let weird = [
        r#"{"choices":"x","usage":[1],"id":5,"model":{"a":1}}"#,
        r#"{"choices":[null,1,"s",{"delta":null,"message":[],"index":-1}]}"#,
        r#"{"choices":[{"index":18446744073709551615,"delta":{"tool_calls":[{"index":"0","function":{"arguments":{"x":1}}},null,{"function":null}]}}]}"#,
        r#"{"output":[{"type":"message","content":"nope"},{"type":"function_call","arguments":null}],"status":7}"#,
        r#"{"content":[{"type":"tool_use","input":"not an object"},{"type":null}],"usage":{"input_tokens":"12","output_tokens":-3}}"#,
        r#"{"candidates":[{"content":{"parts":[{"functionCall":null},{"text":5}]},"finishReason":7}],"usageMetadata":{"promptTokenCount":1.5}}"#,
        r#"{"error":[1,2]}"#,
        r#"{"error":{"code":{"nested":true},"type":null}}"#,
        "[1,2,3]",
        "\"just a string\"",
        "null",
        "1e999999",
    ];
    let urls = [
        "https://api.openai.com/v1/chat/completions",
        "https://api.openai.com/v1/responses",
        "https://api.anthropic.com/v1/messages",
        "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent",
        "http://localhost:11434/api/generate",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
        "https://api.openai.com/v1/embeddings",
    ];
    for url in urls {
        for w in weird {
            let _ = parse(&view(url, w.as_bytes(), Some(200), &[], w.as_bytes()));
            let sse = format!("data: {w}\n\nevent: x\ndata: {w}\n\n");
            let _ = parse(&view(url, w.as_bytes(), Some(200), &[], sse.as_bytes()));
        }
    }
}

#[test]
fn huge_content_index_does_not_allocate_without_bound() {
    let body = concat!(
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"message\",\"content\":[]}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":4000000000,\"delta\":\"x\"}\n\n",
    );
    let c = parse(&view(
        "https://api.openai.com/v1/responses",
        br#"{"model":"m","input":"x"}"#,
        Some(200),
        &[],
        body.as_bytes(),
    ))
    .unwrap();
    assert_eq!(c.output_text, "");
}
