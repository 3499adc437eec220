//! Provider recognition and every provider's request/response parsing (OpenAI chat,
//! completions, responses, embeddings; Anthropic; Gemini and Vertex; Bedrock, including
//! its binary event stream; Ollama), with the SSE, NDJSON and JSON-array splitters under
//! them: bodies come from the network and are untrusted, so any bytes must give an
//! answer (or none) without panicking, and the answer must serialize (it goes into
//! `show --json`, OTLP and analysis).
//!
//! Input fields (split on 0xFF): method, URL, status, request header lines, response
//! header lines, request body, response body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapedeck_fuzz::{fields, header_lines, text};
use tapedeck_trace::adapters::{parse, recognise, ExchangeView};

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 7);
    let method = text(f[0]);
    let url = text(f[1]);
    let status = std::str::from_utf8(f[2])
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok());
    let request_headers = header_lines(f[3]);
    let response_headers = header_lines(f[4]);
    let x = ExchangeView {
        method: &method,
        url: &url,
        request_headers: &request_headers,
        request_body: f[5],
        status,
        response_headers: &response_headers,
        response_body: f[6],
    };
    let parts = tapedeck_model::exchange::canonical::UrlParts::parse(&url);
    let _ = recognise::known_host(&parts.host, &parts.path);
    if let Some(call) = parse(&x) {
        serde_json::to_vec(&call).expect("an LlmCall serializes");
    }
});
