//! Context windows: the prompt budget (max input tokens) of well-known models.
//!
//! The limit is not in normal traffic, so a small built-in table (longest prefix of the
//! lower-cased model name, provider prefixes stripped) gives it, dated and kept short;
//! `[context_windows]` in `tapedeck.toml` overrides or extends it. Sources: LiteLLM's
//! model table and the vendors' docs, as of 2026-08.

const TABLE: &[(&str, u64)] = &[
    ("gpt-3.5-turbo", 16_385),
    ("gpt-4-turbo", 128_000),
    ("gpt-4o", 128_000),
    ("chatgpt-4o", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4-0613", 8_192),
    ("gpt-4", 8_192),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4-mini", 200_000),
    ("gpt-5-chat", 128_000),
    ("gpt-5.4", 1_050_000),
    ("gpt-5.5", 1_050_000),
    ("gpt-5", 272_000),
    ("claude-opus-4-6", 1_000_000),
    ("claude-sonnet-4-6", 1_000_000),
    ("claude-3", 200_000),
    ("claude-sonnet-4", 200_000),
    ("claude-opus-4", 200_000),
    ("claude-haiku-4", 200_000),
    ("gemini-1.5-pro", 2_097_152),
    ("gemini-1.5-flash", 1_048_576),
    ("gemini-2", 1_048_576),
    ("gemini-3", 1_048_576),
    ("deepseek-chat", 131_072),
    ("deepseek-reasoner", 131_072),
    ("mistral-large", 262_144),
    ("llama-3.1", 131_072),
    ("llama-3.3", 131_072),
    ("gpt-oss", 131_072),
    ("text-embedding-3", 8_191),
    ("text-embedding-ada-002", 8_191),
];

/// Strips provider prefixes and Bedrock decorations: `openai/gpt-4o` → `gpt-4o`,
/// `us.anthropic.claude-3-5-sonnet-v1:0` → `claude-3-5-sonnet`.
pub fn normalize(model: &str) -> String {
    let mut m = model.trim().to_ascii_lowercase();
    for p in [
        "openai/",
        "anthropic/",
        "gemini/",
        "google/",
        "models/",
        "azure/",
        "bedrock/",
    ] {
        if let Some(rest) = m.strip_prefix(p) {
            m = rest.to_string();
        }
    }
    for p in ["us.", "eu.", "apac.", "global."] {
        if let Some(rest) = m.strip_prefix(p) {
            m = rest.to_string();
        }
    }
    if let Some(rest) = m.strip_prefix("anthropic.") {
        m = rest.to_string();
    }
    if let Some(i) = m.find("-v1:") {
        m.truncate(i);
    }
    m
}

/// The max input tokens of `model`: user overrides first, then the table; longest prefix wins.
pub fn limit(model: &str, overrides: &[(String, u64)]) -> Option<u64> {
    let m = normalize(model);
    let best = |list: &mut dyn Iterator<Item = (&str, u64)>| {
        list.filter(|(p, _)| m.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, v)| v)
    };
    best(&mut overrides.iter().map(|(p, v)| (p.as_str(), *v)))
        .or_else(|| best(&mut TABLE.iter().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_overrides_come_first() {
        assert_eq!(limit("gpt-4o-mini-2024-07-18", &[]), Some(128_000));
        assert_eq!(limit("gpt-4", &[]), Some(8_192));
        assert_eq!(limit("openai/gpt-4.1-mini", &[]), Some(1_047_576));
        assert_eq!(
            limit("us.anthropic.claude-3-5-sonnet-20241022-v2:0", &[]),
            Some(200_000)
        );
        assert_eq!(limit("my-local-model", &[]), None);
        assert_eq!(
            limit("my-local-model-7b", &[("my-local".into(), 4096)]),
            Some(4096)
        );
        assert_eq!(limit("gpt-4o", &[("gpt-4o".into(), 1000)]), Some(1000));
    }
}
