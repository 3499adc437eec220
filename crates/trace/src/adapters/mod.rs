//! Provider adapters: reading one recorded exchange as an LLM call.
//!
//! Traces, analysis and diffs all want the same facts about an LLM exchange (which
//! provider and model, how many tokens, why it stopped, which tools it asked for and
//! which tool results it carried back), but every provider spells them differently and
//! streams them differently. [`parse`] recognises the exchange ([`recognise`]), hands it
//! to the adapter for its wire format (one module per API family) and returns a
//! provider-neutral [`LlmCall`] whose names follow the OpenTelemetry GenAI conventions
//! (semconv v1.41.1, see `GENAI.md`). Bodies come from the network and are untrusted:
//! every adapter is best effort on truncated or malformed input and never panics.
//!
//! # Provider names (`gen_ai.provider.name`)
//!
//! One rule, applied in this order:
//!
//! 1. A host in the known-host table gets its well-known name (`openai`, `anthropic`,
//!    `gcp.gemini`, `gcp.vertex_ai`, `aws.bedrock`, `azure.ai.openai`,
//!    `azure.ai.inference`, `groq`, `deepseek`, `x_ai`, `mistral_ai`, `perplexity`,
//!    `cohere`, `moonshot_ai`) or, for hosted OpenAI-compatible services without one, a
//!    fixed custom name (`openrouter`, `together_ai`, `fireworks_ai`).
//! 2. Any other host is a self-hosted or proxy server. If the traffic names the server
//!    it gets that name: `ollama` (native `/api/*` paths, or the default port 11434),
//!    `litellm` (an `x-litellm-*` response header), `vllm` (vLLM's extra response
//!    fields `prompt_logprobs` / per-choice `stop_reason`).
//! 3. Otherwise the name says which wire shape was spoken: `openai_compatible`,
//!    `anthropic_compatible`, `gemini_compatible`, `bedrock_compatible`.
//!
//! The host itself is deliberately not used as a provider name: it is already in
//! `server.address`, and a shape name groups `127.0.0.1:8000` and `llm.internal`
//! together, which is what a dashboard filtering on provider wants.
//!
//! # Errors
//!
//! `error_type` is the provider's own code or type from the body (OpenAI `error.code`,
//! else `error.type`; Anthropic `error.type`; Gemini `error.status`; Bedrock's
//! `x-amzn-errortype`), including errors reported inside a 2xx stream. When a 2xx
//! stream reports an error without any code, `error_type` is `_OTHER` so the failure is
//! not lost; for non-2xx responses without a code it stays `None` and the caller falls
//! back to the HTTP status, as GENAI.md prescribes.

mod anthropic;
mod bedrock;
mod fields;
mod gemini;
mod genai;
pub mod mcp;
mod ollama;
mod openai_chat;
mod openai_embeddings;
mod openai_responses;
pub mod realtime;
pub mod recognise;
mod sse;

use serde::Serialize;
use serde_json::Value;

use recognise::{Api, Route};

/// One recorded exchange as the adapters see it: borrowed, already decoded bodies.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeView<'a> {
    pub method: &'a str,
    /// Absolute URL, e.g. `https://api.openai.com/v1/chat/completions?x=1`.
    pub url: &'a str,
    /// Header names are lower-case.
    pub request_headers: &'a [(String, String)],
    pub request_body: &'a [u8],
    /// `None` when there was no response (transport error).
    pub status: Option<u16>,
    pub response_headers: &'a [(String, String)],
    /// For streams, the whole concatenated SSE / NDJSON text.
    pub response_body: &'a [u8],
}

/// Everything tapedeck knows about one LLM call, in the GenAI conventions' words.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct LlmCall {
    /// `gen_ai.provider.name`; see the module doc for the rule.
    pub provider: String,
    /// `gen_ai.operation.name`: `chat`, `embeddings`, `generate_content` or `text_completion`.
    pub operation: String,
    /// Which wire API was spoken: `chat_completions`, `completions`, `responses`,
    /// `embeddings`, `messages`, `generate_content`, `embed_content`, `ollama_chat`,
    /// `ollama_generate`, `ollama_embed`, `converse`, `invoke`.
    pub api: Option<String>,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub response_id: Option<String>,
    pub stream: bool,
    /// Includes cached input tokens (Anthropic: input + cache read + cache creation).
    pub input_tokens: Option<u64>,
    /// Includes reasoning tokens.
    pub output_tokens: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_creation_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    /// One entry per choice/candidate, the provider's raw value (Responses API: derived
    /// from `status`, see [`openai_responses`]).
    pub finish_reasons: Vec<String>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub stop_sequences: Vec<String>,
    pub seed: Option<i64>,
    pub choice_count: Option<u64>,
    /// What the response asked for, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Every tool result the request carries back (history included; callers dedupe by id).
    pub tool_results: Vec<ToolResult>,
    /// Names of the tools offered in the request.
    pub tool_definitions: Vec<String>,
    /// Request history as `[{role, parts:[...]}]` (GENAI.md §1.1); `Null` when the API has none.
    pub input_messages: Value,
    /// `[{role:"assistant", parts:[...], finish_reason}]`, one per choice; `Null` when none.
    pub output_messages: Value,
    /// Instructions given outside the history (Anthropic `system`, Responses
    /// `instructions`, Gemini `systemInstruction`), as an array of parts.
    pub system_instructions: Option<Value>,
    /// Concatenated assistant text of the response, for analysis.
    pub output_text: String,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub conversation_id: Option<String>,
    pub embedding_dimensions: Option<u64>,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    /// Parsed JSON when the arguments parse, else the raw string.
    pub arguments: Value,
}

/// A tool result carried back to the model in a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolResult {
    pub id: Option<String>,
    pub name: Option<String>,
    /// Text of the result.
    pub content: String,
    pub is_error: bool,
}

/// Recognises the exchange as an LLM call and extracts everything; `None` when it is
/// not LLM traffic.
pub fn parse(x: &ExchangeView) -> Option<LlmCall> {
    let route = recognise::recognise(x)?;
    let mut call = match route.api {
        Api::ChatCompletions | Api::Completions => openai_chat::parse(x, &route),
        Api::Responses => openai_responses::parse(x, &route),
        Api::Embeddings => openai_embeddings::parse(x, &route),
        Api::Messages => anthropic::parse(x, &route),
        Api::GenerateContent | Api::EmbedContent => gemini::parse(x, &route),
        Api::OllamaChat | Api::OllamaGenerate | Api::OllamaEmbed => ollama::parse(x, &route),
        Api::Converse | Api::Invoke => bedrock::parse(x, &route),
    };
    call.operation = route.api.operation().to_string();
    call.api = Some(route.api.name().to_string());
    if call.provider.is_empty() {
        call.provider = route.provider_name();
    }
    if call.request_model.is_none() {
        call.request_model = route.url_model.clone();
    }
    call.stream |= route.stream_hint(x);
    Some(call)
}

/// How an API that takes a JSON request and answers with either an SSE stream or one
/// JSON object is read (Anthropic Messages, OpenAI Responses): its adapter reads each part.
struct JsonOrStream {
    request: fn(&mut LlmCall, &Value),
    stream: fn(&mut LlmCall, &ExchangeView),
    whole: fn(&mut LlmCall, &Value, Option<u16>),
}

impl JsonOrStream {
    fn parse(&self, x: &ExchangeView, route: &Route) -> LlmCall {
        let mut call = blank(route);
        if let Some(req) = fields::json(x.request_body) {
            (self.request)(&mut call, &req);
        }
        if sse::looks_like_sse(x.response_body) || sse::is_eventstream(x) {
            call.stream = true;
            (self.stream)(&mut call, x);
        } else if let Some(body) = fields::json(x.response_body) {
            (self.whole)(&mut call, &body, x.status);
        }
        call
    }
}

/// A fresh call with the request-independent defaults every adapter starts from.
fn blank(route: &Route) -> LlmCall {
    LlmCall {
        provider: route.provider.map(str::to_string).unwrap_or_default(),
        ..LlmCall::default()
    }
}

/// Records a provider-reported error. A 2xx response that reports an error without a
/// code gets `_OTHER`, so an in-stream failure is never mistaken for success; otherwise
/// a missing code stays `None` and the caller uses the HTTP status.
fn record_error(
    call: &mut LlmCall,
    kind: Option<String>,
    message: Option<String>,
    status: Option<u16>,
) {
    let kind = kind.filter(|k| !k.is_empty());
    if kind.is_none() && message.is_none() {
        return;
    }
    call.error_type = kind.or_else(|| fields::is_success(status).then(|| "_OTHER".to_string()));
    call.error_message = message;
}

/// The output message's `finish_reason` when the response never said (a cut stream).
const FINISH_UNKNOWN: &str = "unknown";

#[cfg(test)]
mod tests;
