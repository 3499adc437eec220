//! Recognising LLM traffic: which wire API an exchange speaks and who serves it.
//!
//! Detection follows GENAI.md §3: (1) the exact host table, (2) the path (suffixes such
//! as `/chat/completions`, Google's `:generateContent` verbs, Bedrock's `/converse`),
//! (3) a sniff of the request body. Paths are trusted on any host, because agents talk
//! to OpenAI-compatible servers everywhere (vLLM on `127.0.0.1:8000`, LiteLLM, Azure
//! deployments, Ollama); on a host we do not know, a generic path counts only when the
//! body looks like an inference request, so a tool endpoint that happens to end in
//! `/messages` stays a tool. Only `POST` is inference: model listings and retrievals are
//! not LLM calls. See the parent module for the provider-name rule.

use serde_json::Value;

use super::fields::{self, header};
use super::ExchangeView;
use tapedeck_model::exchange::canonical::{percent_decode, UrlParts};

/// The wire API an exchange speaks; each maps to one adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions (and every compatible server).
    ChatCompletions,
    /// OpenAI legacy `/v1/completions`.
    Completions,
    /// OpenAI Responses.
    Responses,
    /// OpenAI embeddings.
    Embeddings,
    /// Anthropic Messages (also Claude on Vertex `rawPredict` and Bedrock `invoke`).
    Messages,
    /// Gemini / Vertex `generateContent` and `streamGenerateContent`.
    GenerateContent,
    /// Gemini / Vertex `embedContent` and `batchEmbedContents`.
    EmbedContent,
    /// Ollama native `/api/chat`.
    OllamaChat,
    /// Ollama native `/api/generate`.
    OllamaGenerate,
    /// Ollama native `/api/embed` and legacy `/api/embeddings`.
    OllamaEmbed,
    /// AWS Bedrock Converse.
    Converse,
    /// AWS Bedrock `invoke` with a body that is not Anthropic's (vendor-native format).
    Invoke,
}

impl Api {
    /// `gen_ai.operation.name`.
    pub fn operation(self) -> &'static str {
        match self {
            Api::ChatCompletions
            | Api::Responses
            | Api::Messages
            | Api::OllamaChat
            | Api::Converse
            | Api::Invoke => "chat",
            Api::Completions | Api::OllamaGenerate => "text_completion",
            Api::Embeddings | Api::EmbedContent | Api::OllamaEmbed => "embeddings",
            Api::GenerateContent => "generate_content",
        }
    }

    /// The API's name in [`super::LlmCall::api`].
    pub fn name(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat_completions",
            Api::Completions => "completions",
            Api::Responses => "responses",
            Api::Embeddings => "embeddings",
            Api::Messages => "messages",
            Api::GenerateContent => "generate_content",
            Api::EmbedContent => "embed_content",
            Api::OllamaChat => "ollama_chat",
            Api::OllamaGenerate => "ollama_generate",
            Api::OllamaEmbed => "ollama_embed",
            Api::Converse => "converse",
            Api::Invoke => "invoke",
        }
    }

    /// The wire shape's name, for providers we cannot name (`{shape}_compatible`).
    fn shape(self) -> &'static str {
        match self {
            Api::ChatCompletions | Api::Completions | Api::Responses | Api::Embeddings => {
                "openai_compatible"
            }
            Api::Messages => "anthropic_compatible",
            Api::GenerateContent | Api::EmbedContent => "gemini_compatible",
            Api::OllamaChat | Api::OllamaGenerate | Api::OllamaEmbed => "ollama",
            Api::Converse | Api::Invoke => "bedrock_compatible",
        }
    }
}

/// What recognition found out before any adapter looked at the bodies.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub api: Api,
    /// The provider when the host or the traffic names it; `None` for an unknown
    /// server, which adapters may still name from the response (vLLM).
    pub provider: Option<&'static str>,
    /// The model named by the URL: Gemini/Vertex `models/{m}`, Bedrock `model/{id}`,
    /// Azure `deployments/{name}`.
    pub url_model: Option<String>,
    /// The URL itself says "stream" (`:streamGenerateContent`, `/converse-stream`, ...).
    pub url_stream: bool,
}

impl Route {
    /// The provider name when no adapter could name it: known, else the shape's name.
    pub fn provider_name(&self) -> String {
        self.provider.unwrap_or(self.api.shape()).to_string()
    }

    /// Whether the transport says "stream": the URL, or a streaming content type.
    pub fn stream_hint(&self, x: &ExchangeView) -> bool {
        if self.url_stream {
            return true;
        }
        let ct = header(x.response_headers, "content-type")
            .unwrap_or("")
            .to_ascii_lowercase();
        ct.starts_with("text/event-stream")
            || ct.starts_with("application/x-ndjson")
            || ct.starts_with("application/vnd.amazon.eventstream")
    }
}

/// The provider a host belongs to, for hosts in the known-host table.
pub fn known_host(host: &str, path: &str) -> Option<&'static str> {
    let exact = match host {
        // ChatGPT-login agents (Codex CLI) call the Responses API under chatgpt.com.
        "api.openai.com" | "chatgpt.com" => Some("openai"),
        "api.anthropic.com" => Some("anthropic"),
        "generativelanguage.googleapis.com" => Some("gcp.gemini"),
        "aiplatform.googleapis.com" => Some("gcp.vertex_ai"),
        "api.groq.com" => Some("groq"),
        "api.deepseek.com" => Some("deepseek"),
        "api.x.ai" => Some("x_ai"),
        "api.mistral.ai" => Some("mistral_ai"),
        "api.perplexity.ai" => Some("perplexity"),
        "api.cohere.com" | "api.cohere.ai" => Some("cohere"),
        "api.moonshot.ai" | "api.moonshot.cn" => Some("moonshot_ai"),
        "openrouter.ai" => Some("openrouter"),
        "api.together.xyz" | "api.together.ai" => Some("together_ai"),
        "api.fireworks.ai" => Some("fireworks_ai"),
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    if host.ends_with("-aiplatform.googleapis.com") {
        return Some("gcp.vertex_ai");
    }
    if (host.starts_with("bedrock-runtime.") || host.starts_with("bedrock-runtime-fips."))
        && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
    {
        return Some("aws.bedrock");
    }
    if host.ends_with(".openai.azure.com") || host.ends_with(".cognitiveservices.azure.com") {
        return Some("azure.ai.openai");
    }
    // AI Foundry hosts serve both the Azure OpenAI paths and the model-inference API.
    if host.ends_with(".services.ai.azure.com") {
        return Some(if path.starts_with("/openai/") {
            "azure.ai.openai"
        } else {
            "azure.ai.inference"
        });
    }
    if host.ends_with(".models.ai.azure.com") || host.ends_with(".inference.ai.azure.com") {
        return Some("azure.ai.inference");
    }
    None
}

/// Recognises an exchange; `None` when it is not LLM traffic.
pub fn recognise(x: &ExchangeView) -> Option<Route> {
    if !x.method.eq_ignore_ascii_case("POST") {
        return None;
    }
    let url = UrlParts::parse(x.url);
    let known = known_host(&url.host, &url.path);
    let body = fields::json(x.request_body);
    let body = body.as_ref().filter(|b| b.is_object());
    let (api, url_model, url_stream) = by_path(&url.path, known.is_some(), x, body)
        .or_else(|| by_body(x, body).map(|api| (api, None, false)))?;
    let provider = known.or_else(|| server_cue(&url, api, x));
    Some(Route {
        api,
        provider,
        url_model,
        url_stream,
    })
}

/// Names a self-hosted server from what the traffic says about it.
fn server_cue(url: &UrlParts, api: Api, x: &ExchangeView) -> Option<&'static str> {
    if x.response_headers
        .iter()
        .any(|(k, _)| k.to_ascii_lowercase().starts_with("x-litellm-"))
    {
        return Some("litellm");
    }
    if matches!(
        api,
        Api::OllamaChat | Api::OllamaGenerate | Api::OllamaEmbed
    ) || url.port == 11434
    {
        return Some("ollama");
    }
    None
}

fn names_model(body: Option<&Value>) -> bool {
    body.and_then(|b| b.get("model"))
        .and_then(Value::as_str)
        .is_some_and(|m| !m.is_empty())
}

/// Path-based recognition: returns the API, the model named by the URL and whether the
/// URL asks for a stream.
fn by_path(
    path: &str,
    known_host: bool,
    x: &ExchangeView,
    body: Option<&Value>,
) -> Option<(Api, Option<String>, bool)> {
    let path = path.trim_end_matches('/');
    let last = path.rsplit('/').next().unwrap_or("");

    // Google: `.../models/{model}:{verb}` (Gemini API, Vertex publishers/*), also tuned
    // models and Vertex endpoints (deployed or tuned models).
    let google_resource = ["/models/", "/tunedModels/", "/endpoints/"]
        .iter()
        .any(|seg| path.contains(seg));
    if let Some((model_seg, verb)) = last.split_once(':').filter(|_| google_resource) {
        let model = Some(percent_decode(model_seg)).filter(|m| !m.is_empty());
        return match verb {
            "generateContent" => Some((Api::GenerateContent, model, false)),
            "streamGenerateContent" => Some((Api::GenerateContent, model, true)),
            "embedContent" | "batchEmbedContents" => Some((Api::EmbedContent, model, false)),
            "rawPredict" if path.contains("/publishers/anthropic/") => {
                Some((Api::Messages, model, false))
            }
            "streamRawPredict" if path.contains("/publishers/anthropic/") => {
                Some((Api::Messages, model, true))
            }
            _ => None,
        };
    }

    // Bedrock: `/model/{modelId}/{verb}`.
    if let Some(rest) = path.strip_prefix("/model/") {
        if let Some((model_seg, verb)) = rest.rsplit_once('/') {
            let model = Some(percent_decode(model_seg)).filter(|m| !m.is_empty());
            let anthropic_body = body.is_some_and(|b| b.get("anthropic_version").is_some());
            return match verb {
                "converse" => Some((Api::Converse, model, false)),
                "converse-stream" => Some((Api::Converse, model, true)),
                "invoke" if anthropic_body => Some((Api::Messages, model, false)),
                "invoke-with-response-stream" if anthropic_body => {
                    Some((Api::Messages, model, true))
                }
                "invoke" => Some((Api::Invoke, model, false)),
                "invoke-with-response-stream" => Some((Api::Invoke, model, true)),
                _ => None,
            };
        }
    }

    // Ollama native API; the body must name a model so unrelated `/api/chat` services
    // on other hosts are not swept in.
    let ollama = match path {
        p if p.ends_with("/api/chat") => Some(Api::OllamaChat),
        p if p.ends_with("/api/generate") => Some(Api::OllamaGenerate),
        p if p.ends_with("/api/embed") || p.ends_with("/api/embeddings") => Some(Api::OllamaEmbed),
        _ => None,
    };
    if let Some(api) = ollama {
        return names_model(body).then_some((api, None, false));
    }

    // Azure deployments carry the model in the path and often not in the body.
    let deployment = path
        .split_once("/openai/deployments/")
        .and_then(|(_, rest)| rest.split('/').next())
        .filter(|d| !d.is_empty())
        .map(percent_decode);

    let api = if path.ends_with("/count_tokens") {
        return None;
    } else if path.ends_with("/chat/completions") {
        Api::ChatCompletions
    } else if path.ends_with("/completions") {
        Api::Completions
    } else if path.ends_with("/responses") {
        Api::Responses
    } else if path.ends_with("/embeddings") {
        Api::Embeddings
    } else if path.ends_with("/messages") {
        // `/messages` is a common word; Anthropic's shape is told by its version header
        // or by its required `max_tokens` beside `messages`.
        let anthropic_header = header(x.request_headers, "anthropic-version").is_some();
        let anthropic_body = body.is_some_and(|b| {
            b.get("messages").is_some_and(Value::is_array) && b.get("max_tokens").is_some()
        });
        if !(anthropic_header || anthropic_body || known_host) {
            return None;
        }
        Api::Messages
    } else {
        return None;
    };
    if !(known_host || deployment.is_some() || names_model(body)) {
        return None;
    }
    Some((api, deployment, false))
}

/// Body sniff for inference at paths we do not know (gateways with custom routes).
fn by_body(x: &ExchangeView, body: Option<&Value>) -> Option<Api> {
    let body = body?;
    let has_role_messages = fields::array(body, "messages")
        .first()
        .is_some_and(|m| m.get("role").is_some());
    if has_role_messages && names_model(Some(body)) {
        if header(x.request_headers, "anthropic-version").is_some() {
            return Some(Api::Messages);
        }
        return Some(Api::ChatCompletions);
    }
    let has_gemini_contents = fields::array(body, "contents")
        .first()
        .is_some_and(|c| c.get("parts").is_some());
    if has_gemini_contents {
        return Some(Api::GenerateContent);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(url: &'a str, body: &'a [u8], headers: &'a [(String, String)]) -> ExchangeView<'a> {
        ExchangeView {
            method: "POST",
            url,
            request_headers: headers,
            request_body: body,
            status: Some(200),
            response_headers: &[],
            response_body: b"",
        }
    }

    fn route(url: &str, body: &str) -> Option<Route> {
        recognise(&view(url, body.as_bytes(), &[]))
    }

    #[test]
    fn odd_urls_are_read_without_panicking() {
        let r = route(
            "http://[::1]:11434/api/chat",
            r#"{"model":"m","messages":[]}"#,
        );
        assert_eq!(r.and_then(|r| r.provider), Some("ollama"));
        let r = route(
            "https://user:pw@API.OpenAI.com/v1/chat/completions?x=1#f",
            "{}",
        );
        assert_eq!(r.and_then(|r| r.provider), Some("openai"));
        for junk in [
            "",
            "://",
            "[",
            "http://[",
            "a:b:c",
            "%%%",
            "http://h:99999/",
        ] {
            let _ = route(junk, "{}");
        }
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(
            percent_decode("anthropic.claude-3-5-sonnet-20240620-v1%3A0"),
            "anthropic.claude-3-5-sonnet-20240620-v1:0"
        );
        assert_eq!(percent_decode("a%zz%"), "a%zz%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn known_hosts_by_path() {
        let r = route("https://api.openai.com/v1/chat/completions", "{}").unwrap();
        assert_eq!((r.api, r.provider), (Api::ChatCompletions, Some("openai")));
        let r = route("https://api.openai.com/v1/responses", "{}").unwrap();
        assert_eq!(r.api, Api::Responses);
        let r = route(
            "https://chatgpt.com/backend-api/codex/responses",
            r#"{"model":"gpt-5-codex"}"#,
        )
        .unwrap();
        assert_eq!((r.api, r.provider), (Api::Responses, Some("openai")));
        let r = route("https://api.openai.com/v1/completions", "{}").unwrap();
        assert_eq!(r.api, Api::Completions);
        let r = route("https://api.openai.com/v1/embeddings", "{}").unwrap();
        assert_eq!(r.api, Api::Embeddings);
        let r = route("https://api.anthropic.com/v1/messages", "{}").unwrap();
        assert_eq!((r.api, r.provider), (Api::Messages, Some("anthropic")));
        assert_eq!(
            route("https://api.anthropic.com/v1/messages/count_tokens", "{}"),
            None
        );
        let r = route("https://api.groq.com/openai/v1/chat/completions", "{}").unwrap();
        assert_eq!(r.provider, Some("groq"));
        let r = route("https://api.x.ai/v1/chat/completions", "{}").unwrap();
        assert_eq!(r.provider, Some("x_ai"));
        let r = route("https://api.mistral.ai/v1/chat/completions", "{}").unwrap();
        assert_eq!(r.provider, Some("mistral_ai"));
        let r = route("https://api.deepseek.com/chat/completions", "{}").unwrap();
        assert_eq!(r.provider, Some("deepseek"));
        let r = route(
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
            "{}",
        )
        .unwrap();
        assert_eq!(
            (r.api, r.provider),
            (Api::ChatCompletions, Some("gcp.gemini"))
        );
    }

    #[test]
    fn google_verbs_carry_the_model_and_stream_flag() {
        let r = route(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=k",
            "{}",
        )
        .unwrap();
        assert_eq!(r.api, Api::GenerateContent);
        assert_eq!(r.provider, Some("gcp.gemini"));
        assert_eq!(r.url_model.as_deref(), Some("gemini-2.5-flash"));
        assert!(r.url_stream);
        let r = route(
            "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:generateContent",
            "{}",
        )
        .unwrap();
        assert_eq!(
            (r.api, r.provider, r.url_stream),
            (Api::GenerateContent, Some("gcp.vertex_ai"), false)
        );
        assert_eq!(r.url_model.as_deref(), Some("gemini-2.0-flash-001"));
        let r = route(
            "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict",
            "{}",
        )
        .unwrap();
        assert_eq!((r.api, r.url_stream), (Api::Messages, true));
        assert_eq!(r.url_model.as_deref(), Some("claude-sonnet-4@20250514"));
        let r = route("https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:embedContent", "{}").unwrap();
        assert_eq!(r.api, Api::EmbedContent);
        assert_eq!(route("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:countTokens", "{}"), None);
        let r = route("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/1234567:streamGenerateContent?alt=sse", "{}").unwrap();
        assert_eq!(
            (r.api, r.url_model.as_deref(), r.url_stream),
            (Api::GenerateContent, Some("1234567"), true)
        );
        // A colon in an unrelated path is not a Google verb.
        assert_eq!(
            route("http://tools.test/v1/jobs/abc:run", r#"{"model":"x"}"#),
            None
        );
    }

    #[test]
    fn bedrock_paths() {
        let r = route(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse",
            "{}",
        )
        .unwrap();
        assert_eq!((r.api, r.provider), (Api::Converse, Some("aws.bedrock")));
        assert_eq!(
            r.url_model.as_deref(),
            Some("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
        );
        let r = route(
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1:0/invoke",
            r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[]}"#,
        )
        .unwrap();
        assert_eq!(r.api, Api::Messages);
        let r = route("https://bedrock-runtime.us-west-2.amazonaws.com/model/meta.llama3-8b-instruct-v1:0/invoke", r#"{"prompt":"hi"}"#).unwrap();
        assert_eq!(r.api, Api::Invoke);
    }

    #[test]
    fn azure_deployments_name_the_model() {
        let r = route(
            "https://myres.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
        )
        .unwrap();
        assert_eq!(
            (r.api, r.provider),
            (Api::ChatCompletions, Some("azure.ai.openai"))
        );
        assert_eq!(r.url_model.as_deref(), Some("gpt-4o-prod"));
        // Even on a host we do not know (a private endpoint), the deployment path counts.
        let r = route(
            "https://10.0.0.5/openai/deployments/emb/embeddings?api-version=2024-10-21",
            r#"{"input":"x"}"#,
        )
        .unwrap();
        assert_eq!((r.api, r.provider), (Api::Embeddings, None));
        let r = route("https://proj.services.ai.azure.com/models/chat/completions?api-version=2024-05-01-preview", "{}").unwrap();
        assert_eq!(r.provider, Some("azure.ai.inference"));
    }

    #[test]
    fn compatible_servers_on_any_host() {
        let body =
            r#"{"model":"Qwen/Qwen2.5-7B-Instruct","messages":[{"role":"user","content":"hi"}]}"#;
        let r = route("http://127.0.0.1:8000/v1/chat/completions", body).unwrap();
        assert_eq!((r.api, r.provider), (Api::ChatCompletions, None));
        let r = route("http://localhost:4000/chat/completions", body).unwrap();
        assert_eq!(r.api, Api::ChatCompletions);
        let r = route("http://localhost:11434/v1/chat/completions", body).unwrap();
        assert_eq!(r.provider, Some("ollama"));
        let r = route("http://gpu-box:11434/api/chat", body).unwrap();
        assert_eq!((r.api, r.provider), (Api::OllamaChat, Some("ollama")));
        // Without a model in the body an unknown host's generic path is not inference.
        assert_eq!(
            route("http://tools.test/v1/chat/completions", r#"{"q":1}"#),
            None
        );
        assert_eq!(
            route("http://chat.test/rooms/1/messages", r#"{"text":"x"}"#),
            None
        );
        assert_eq!(route("http://chat.test/api/chat", r#"{"text":"x"}"#), None);
    }

    #[test]
    fn anthropic_shape_on_a_gateway() {
        let headers = vec![("anthropic-version".to_string(), "2023-06-01".to_string())];
        let body = br#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"hi"}]}"#;
        let r = recognise(&view("http://localhost:4000/v1/messages", body, &headers)).unwrap();
        assert_eq!((r.api, r.provider), (Api::Messages, None));
        // Body sniff on an unknown path: anthropic-version header picks the shape.
        let r = recognise(&view("http://gw.internal/llm/invoke", body, &headers)).unwrap();
        assert_eq!(r.api, Api::Messages);
        let r = recognise(&view("http://gw.internal/llm/invoke", body, &[])).unwrap();
        assert_eq!(r.api, Api::ChatCompletions);
    }

    #[test]
    fn litellm_is_named_by_its_headers() {
        let resp = vec![("x-litellm-call-id".to_string(), "abc".to_string())];
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        let mut v = view("http://localhost:4000/v1/chat/completions", body, &[]);
        v.response_headers = &resp;
        assert_eq!(recognise(&v).unwrap().provider, Some("litellm"));
    }

    #[test]
    fn only_post_is_inference() {
        let mut v = view("https://api.openai.com/v1/chat/completions", b"", &[]);
        v.method = "GET";
        assert_eq!(recognise(&v), None);
        assert_eq!(route("https://api.openai.com/v1/models", "{}"), None);
    }
}
