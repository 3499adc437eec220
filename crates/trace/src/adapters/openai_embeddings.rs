//! OpenAI embeddings (`/v1/embeddings`), also Azure deployments and compatible servers.
//!
//! Embedding spans carry little: model, input token count, and the vector size. The size
//! is the length of the first vector; with `encoding_format: "base64"` the vector is
//! little-endian float32 bytes, so it is the decoded length over four. Inputs are not
//! turned into messages (they are data, not a conversation).

use base64::Engine;
use serde_json::Value;

use super::fields::{self, array, count, nonempty};
use super::openai_chat::error_of;
use super::recognise::Route;
use super::{blank, record_error, ExchangeView, LlmCall};

pub(super) fn parse(x: &ExchangeView, route: &Route) -> LlmCall {
    let mut call = blank(route);
    let mut requested_dimensions = None;
    if let Some(req) = fields::json(x.request_body) {
        call.request_model = nonempty(&req, "model");
        requested_dimensions = count(&req, "dimensions");
    }
    if let Some(body) = fields::json(x.response_body) {
        if let Some((kind, message)) = error_of(&body) {
            record_error(&mut call, kind, message, x.status);
        }
        call.response_model = nonempty(&body, "model");
        if let Some(u) = body.get("usage").filter(|u| u.is_object()) {
            call.input_tokens = count(u, "prompt_tokens").or_else(|| count(u, "input_tokens"));
        }
        call.embedding_dimensions = array(&body, "data")
            .first()
            .and_then(|d| d.get("embedding"))
            .and_then(dimensions);
    }
    if call.embedding_dimensions.is_none() && call.error_type.is_none() {
        call.embedding_dimensions = requested_dimensions;
    }
    call
}

/// The length of one embedding: a float array, or base64 of float32s.
pub(super) fn dimensions(embedding: &Value) -> Option<u64> {
    match embedding {
        Value::Array(v) => Some(v.len() as u64),
        Value::String(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .map(|bytes| (bytes.len() / 4) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_any, ExchangeView};
    use super::*;

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

    #[test]
    fn float_embeddings() {
        let c = run(
            "https://api.openai.com/v1/embeddings",
            r#"{"input":["The food was delicious","and the waiter..."],"model":"text-embedding-3-small","encoding_format":"float"}"#,
            200,
            r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,0.015797377]},{"object":"embedding","index":1,"embedding":[0.1,0.2,0.3]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
        );
        assert_eq!(
            (c.provider.as_str(), c.operation.as_str()),
            ("openai", "embeddings")
        );
        assert_eq!(c.api.as_deref(), Some("embeddings"));
        assert_eq!(c.request_model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(c.response_model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(c.input_tokens, Some(8));
        assert_eq!(c.output_tokens, None);
        assert_eq!(c.embedding_dimensions, Some(3));
        assert_eq!(c.input_messages, Value::Null);
    }

    #[test]
    fn base64_embeddings_count_float32s() {
        // Four float32s = 16 bytes.
        let b64 = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
        let resp = format!(
            r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":"{b64}"}}],"model":"text-embedding-3-large","usage":{{"prompt_tokens":2,"total_tokens":2}}}}"#
        );
        let c = run(
            "http://127.0.0.1:8000/v1/embeddings",
            r#"{"input":"hi","model":"text-embedding-3-large","encoding_format":"base64","dimensions":256}"#,
            200,
            &resp,
        );
        assert_eq!(c.embedding_dimensions, Some(4));
        assert_eq!(c.provider, "openai_compatible");
    }

    #[test]
    fn errors_and_missing_response_fall_back_to_the_request() {
        let c = run(
            "https://api.openai.com/v1/embeddings",
            r#"{"input":"hi","model":"text-embedding-3-small","dimensions":512}"#,
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error","param":null,"code":"context_length_exceeded"}}"#,
        );
        assert_eq!(c.error_type.as_deref(), Some("context_length_exceeded"));
        assert_eq!(c.embedding_dimensions, None);
        let c = run(
            "https://api.openai.com/v1/embeddings",
            r#"{"input":"hi","model":"m","dimensions":512}"#,
            200,
            "",
        );
        assert_eq!(c.embedding_dimensions, Some(512));
    }
}
