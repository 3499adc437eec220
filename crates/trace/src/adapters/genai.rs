//! Builders for the GenAI message JSON shape (`gen-ai-input-messages.json`,
//! `gen-ai-output-messages.json`, semconv v1.41.1).
//!
//! Every adapter normalises its provider's messages into this one shape, so the
//! exporter can put `gen_ai.input.messages` / `gen_ai.output.messages` on spans without
//! knowing where they came from. Keeping the field names here means a convention change
//! is a change in one file.

use serde_json::{json, Map, Value};

pub(super) fn text(content: &str) -> Value {
    json!({"type": "text", "content": content})
}

pub(super) fn reasoning(content: &str) -> Value {
    json!({"type": "reasoning", "content": content})
}

pub(super) fn tool_call(id: Option<&str>, name: &str, arguments: &Value) -> Value {
    let mut part = Map::new();
    part.insert("type".into(), "tool_call".into());
    if let Some(id) = id {
        part.insert("id".into(), id.into());
    }
    part.insert("name".into(), name.into());
    part.insert("arguments".into(), arguments.clone());
    Value::Object(part)
}

/// The schema's field is `response` (one table in the spec says `result`; the schema wins).
pub(super) fn tool_call_response(id: Option<&str>, response: &Value) -> Value {
    let mut part = Map::new();
    part.insert("type".into(), "tool_call_response".into());
    if let Some(id) = id {
        part.insert("id".into(), id.into());
    }
    part.insert("response".into(), response.clone());
    Value::Object(part)
}

/// A tool executed by the provider itself (web search, code execution, ...).
pub(super) fn server_tool_call(id: Option<&str>, name: &str, detail: &Value) -> Value {
    let mut part = Map::new();
    part.insert("type".into(), "server_tool_call".into());
    if let Some(id) = id {
        part.insert("id".into(), id.into());
    }
    part.insert("name".into(), name.into());
    part.insert("server_tool_call".into(), detail.clone());
    Value::Object(part)
}

pub(super) fn server_tool_call_response(id: Option<&str>, detail: &Value) -> Value {
    let mut part = Map::new();
    part.insert("type".into(), "server_tool_call_response".into());
    if let Some(id) = id {
        part.insert("id".into(), id.into());
    }
    part.insert("server_tool_call_response".into(), detail.clone());
    Value::Object(part)
}

pub(super) fn blob(modality: &str, mime_type: Option<&str>, content: &str) -> Value {
    let mut part = Map::new();
    part.insert("type".into(), "blob".into());
    if let Some(m) = mime_type {
        part.insert("mime_type".into(), m.into());
    }
    part.insert("modality".into(), modality.into());
    part.insert("content".into(), content.into());
    Value::Object(part)
}

pub(super) fn uri(modality: &str, mime_type: Option<&str>, uri: &str) -> Value {
    let mut part = Map::new();
    part.insert("type".into(), "uri".into());
    if let Some(m) = mime_type {
        part.insert("mime_type".into(), m.into());
    }
    part.insert("modality".into(), modality.into());
    part.insert("uri".into(), uri.into());
    Value::Object(part)
}

pub(super) fn file(modality: &str, file_id: &str) -> Value {
    json!({"type": "file", "modality": modality, "file_id": file_id})
}

/// A part the conventions have no name for; the schema allows any `type`.
pub(super) fn generic(kind: &str) -> Value {
    json!({ "type": kind })
}

/// The modality of a MIME type, for blob/uri parts.
pub(super) fn modality(mime_type: Option<&str>) -> &'static str {
    match mime_type.and_then(|m| m.split('/').next()) {
        Some("image") => "image",
        Some("audio") => "audio",
        Some("video") => "video",
        _ => "file",
    }
}

/// A data URL (`data:image/png;base64,....`) as a blob, any other URL as a uri part.
pub(super) fn url_part(default_modality: &str, url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:") {
        if let Some((meta, data)) = rest.split_once(',') {
            let mime = meta.split(';').next().filter(|m| !m.is_empty());
            let modality = match mime {
                Some(_) => modality(mime),
                None => default_modality,
            };
            return blob(modality, mime, data);
        }
    }
    uri(default_modality, None, url)
}

/// The conventions' role names: `developer` is OpenAI's newer spelling of `system`,
/// Gemini calls the assistant `model`, and legacy OpenAI `function` results are tools.
pub(super) fn role(raw: &str) -> &str {
    match raw {
        "developer" => "system",
        "model" => "assistant",
        "function" => "tool",
        other => other,
    }
}

pub(super) fn message(role: &str, parts: Vec<Value>) -> Value {
    json!({"role": role, "parts": parts})
}

pub(super) fn output_message(parts: Vec<Value>, finish_reason: &str) -> Value {
    json!({"role": "assistant", "parts": parts, "finish_reason": finish_reason})
}

/// Appends `parts` to the history, merging into the previous message when it has the
/// same role. Several APIs spread one logical turn over several items (Responses
/// `function_call` items, Gemini parts), and one message per turn reads better.
pub(super) fn push_merged(messages: &mut Vec<Value>, role: &str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some(role) {
            if let Some(existing) = last.get_mut("parts").and_then(Value::as_array_mut) {
                existing.extend(parts);
                return;
            }
        }
    }
    messages.push(message(role, parts));
}

/// Text parts joined, for `output_text`.
pub(super) fn text_of_parts(parts: &[Value]) -> String {
    parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|p| p.get("content").and_then(Value::as_str))
        .collect()
}

/// The output message's `finish_reason`: the schema's enum says `tool_call` where
/// providers say `tool_calls` / `tool_use` / `function_call`; everything else passes
/// through raw (the schema allows any string).
pub(super) fn output_finish_reason(raw: &str) -> String {
    match raw {
        "tool_calls" | "tool_use" | "function_call" => "tool_call".to_string(),
        "end_turn" | "stop_sequence" | "STOP" => "stop".to_string(),
        "max_tokens" | "MAX_TOKENS" => "length".to_string(),
        "SAFETY" | "content_filtered" | "content_filter" => "content_filter".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_become_blobs_and_others_uris() {
        assert_eq!(
            url_part("image", "data:image/png;base64,AAAA"),
            json!({"type": "blob", "mime_type": "image/png", "modality": "image", "content": "AAAA"})
        );
        assert_eq!(
            url_part("image", "https://x.test/cat.png"),
            json!({"type": "uri", "modality": "image", "uri": "https://x.test/cat.png"})
        );
    }

    #[test]
    fn merging_keeps_one_message_per_turn() {
        let mut m = Vec::new();
        push_merged(&mut m, "assistant", vec![text("a")]);
        push_merged(&mut m, "assistant", vec![text("b")]);
        push_merged(&mut m, "tool", vec![]);
        push_merged(&mut m, "user", vec![text("c")]);
        assert_eq!(
            Value::Array(m),
            json!([
                {"role": "assistant", "parts": [{"type": "text", "content": "a"}, {"type": "text", "content": "b"}]},
                {"role": "user", "parts": [{"type": "text", "content": "c"}]}
            ])
        );
    }
}
