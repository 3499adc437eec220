//! Classifying an exchange as `llm`, `tool` or `other` from its request alone.
//!
//! Replay keeps one cursor per kind, so the kind must come from the request (replay has
//! no response to look at) and must be computed the same way at record and replay time.

use serde_json::Value;

use super::Kind;
use crate::rules::Rules;

/// Hosts whose non-inference endpoints (model lists, files, ...) are `other`, not tools.
const PROVIDER_HOSTS: &[&str] = &[
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "api.mistral.ai",
    "api.groq.com",
    "api.deepseek.com",
    "api.x.ai",
    "openrouter.ai",
    "api.together.xyz",
    "api.fireworks.ai",
    "api.cohere.com",
];

/// Path endings that are inference only when the body names a model.
const MODEL_BODY_SUFFIXES: &[&str] = &[
    "/chat/completions",
    "/completions",
    "/responses",
    "/embeddings",
    "/messages",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
];

/// Path endings that are inference whatever the body (the model is in the URL).
const URL_MODEL_SUFFIXES: &[&str] = &[
    ":generateContent",
    ":streamGenerateContent",
    ":embedContent",
    ":batchEmbedContents",
    ":rawPredict",
    ":streamRawPredict",
    "/converse",
    "/converse-stream",
    "/invoke",
    "/invoke-with-response-stream",
];

/// Classifies one request. `body` is the parsed JSON body when there is one.
pub fn classify(method: &str, host: &str, path: &str, body: Option<&Value>, rules: &Rules) -> Kind {
    let names_model = body
        .and_then(|b| b.get("model"))
        .is_some_and(|m| m.is_string());
    classify_named(method, host, path, names_model, rules)
}

/// [`classify`] for a body already read: `names_model` is whether its top level has a
/// string `model`.
pub fn classify_named(
    method: &str,
    host: &str,
    path: &str,
    names_model: bool,
    rules: &Rules,
) -> Kind {
    if let Some(rule) = rules
        .kinds
        .iter()
        .find(|r| r.pattern.matches(method, host, path))
    {
        return rule.kind;
    }
    if is_inference(method, host, path, names_model) {
        return Kind::Llm;
    }
    let host_l = host.to_ascii_lowercase();
    if PROVIDER_HOSTS.contains(&host_l.as_str())
        || host_l.ends_with(".openai.azure.com")
        || host_l.starts_with("bedrock-runtime.")
        || host_l.ends_with("aiplatform.googleapis.com")
    {
        return Kind::Other;
    }
    Kind::Tool
}

fn is_inference(method: &str, host: &str, path: &str, names_model: bool) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    // The Realtime API's WebSocket (`GET /v1/realtime`, Azure `/openai/realtime`).
    if method.eq_ignore_ascii_case("GET") && path.trim_end_matches('/').ends_with("/realtime") {
        return true;
    }
    if !method.eq_ignore_ascii_case("POST") {
        return false;
    }
    if URL_MODEL_SUFFIXES.iter().any(|s| path.ends_with(s)) {
        return path.contains("/models/")
            || path.contains("/model/")
            || path.contains("/publishers/");
    }
    if path.ends_with("/messages/count_tokens") {
        return false;
    }
    if MODEL_BODY_SUFFIXES.iter().any(|s| path.ends_with(s)) {
        // Azure deployments carry the model in the path, not the body.
        return names_model || path.contains("/openai/deployments/");
    }
    // Known provider hosts under unusual prefixes (e.g. /openai/v1/...).
    let _ = host;
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provider_paths_are_llm_and_everything_else_is_a_tool() {
        let r = Rules::default();
        assert_eq!(
            classify("GET", "api.openai.com", "/v1/realtime", None, &r),
            Kind::Llm
        );
        let model = json!({"model": "gpt-4o", "messages": []});
        assert_eq!(
            classify(
                "POST",
                "api.openai.com",
                "/v1/chat/completions",
                Some(&model),
                &r
            ),
            Kind::Llm
        );
        assert_eq!(
            classify("POST", "localhost", "/v1/responses", Some(&model), &r),
            Kind::Llm
        );
        assert_eq!(
            classify(
                "POST",
                "api.anthropic.com",
                "/v1/messages",
                Some(&model),
                &r
            ),
            Kind::Llm
        );
        assert_eq!(
            classify(
                "POST",
                "generativelanguage.googleapis.com",
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                None,
                &r
            ),
            Kind::Llm
        );
        assert_eq!(
            classify(
                "POST",
                "x.openai.azure.com",
                "/openai/deployments/gpt4/chat/completions",
                Some(&json!({"messages": []})),
                &r
            ),
            Kind::Llm
        );
        assert_eq!(
            classify("GET", "api.openai.com", "/v1/models", None, &r),
            Kind::Other
        );
        assert_eq!(
            classify("GET", "weather.test", "/v1/forecast", None, &r),
            Kind::Tool
        );
        // A tool that happens to end in /messages but names no model is still a tool.
        assert_eq!(
            classify(
                "POST",
                "chat.test",
                "/rooms/1/messages",
                Some(&json!({"text": "x"})),
                &r
            ),
            Kind::Tool
        );
    }

    #[test]
    fn user_rules_win() {
        let r = Rules::from_toml(
            "[[kind]]\nhost = \"*.internal\"\nkind = \"other\"\n",
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            classify("GET", "metrics.internal", "/x", None, &r),
            Kind::Other
        );
    }
}
