//! Loose, panic-free readers for untrusted JSON bodies.
//!
//! Provider bodies are read field by field rather than deserialised into structs: one
//! unexpected type (a number sent as a string, a `null` where an object was expected)
//! must cost only that field, never the whole call. These helpers make "absent",
//! "null" and "wrong type" all mean `None`.

use serde_json::Value;

/// Parses a body as JSON, tolerating a UTF-8 byte-order mark and surrounding blanks.
pub(super) fn json(body: &[u8]) -> Option<Value> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let body = body.trim_ascii();
    if body.is_empty() {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// A string field.
pub(super) fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A non-empty string field; servers send `""` for "unknown" as often as they omit it.
pub(super) fn nonempty(v: &Value, key: &str) -> Option<String> {
    string(v, key).filter(|s| !s.is_empty())
}

/// A count: accepts integers, integral floats and numeric strings, since some
/// compatible servers serialise token counts loosely.
pub(super) fn count(v: &Value, key: &str) -> Option<u64> {
    as_count(v.get(key)?)
}

pub(super) fn as_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A floating-point parameter (temperature, top_p, ...).
pub(super) fn float(v: &Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A signed integer parameter (seed).
pub(super) fn int(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean field.
pub(super) fn flag(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}

/// An array field, empty when absent or not an array.
pub(super) fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The first of several spellings of a field that is present and not null. Google
/// APIs accept both camelCase and snake_case, and SDKs differ in which they send.
pub(super) fn either<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().filter_map(|k| v.get(*k)).find(|x| !x.is_null())
}

/// A string or an array of strings (`stop`, `stop_sequences`), as a list.
pub(super) fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Tool-call arguments as parsed JSON, or the raw string when they do not parse
/// (truncated streams, models emitting invalid JSON). Empty means "no arguments".
pub(super) fn arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// Arguments that may arrive either as a JSON string (OpenAI) or as an object.
pub(super) fn arguments_value(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => arguments(s),
        Some(Value::Null) | None => Value::Object(Default::default()),
        Some(other) => other.clone(),
    }
}

/// The text of a content value that is either a string or a list of parts carrying
/// `text` (OpenAI, Anthropic and Responses all use this form for tool results).
pub(super) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| match p {
                    Value::String(s) => Some(s.as_str()),
                    _ => p.get("text").and_then(Value::as_str),
                })
                .collect();
            texts.join("")
        }
        Value::Object(_) => match v.get("text").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => v.to_string(),
        },
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An error code that may be a string or a number.
pub(super) fn code(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A header value by lower-case name.
pub(super) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// True for a 2xx status; an error inside such a response is an in-stream error.
pub(super) fn is_success(status: Option<u16>) -> bool {
    matches!(status, Some(200..=299))
}

/// Adds two optional counts, keeping `None` only when both are absent.
pub(super) fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_accept_loose_numbers_and_reject_nonsense() {
        let v = json!({"a": 12, "b": 12.0, "c": "13", "d": -1, "e": 1.5, "f": null, "g": "x"});
        assert_eq!(count(&v, "a"), Some(12));
        assert_eq!(count(&v, "b"), Some(12));
        assert_eq!(count(&v, "c"), Some(13));
        assert_eq!(count(&v, "d"), None);
        assert_eq!(count(&v, "e"), None);
        assert_eq!(count(&v, "f"), None);
        assert_eq!(count(&v, "g"), None);
        assert_eq!(count(&v, "missing"), None);
    }

    #[test]
    fn arguments_parse_or_stay_raw() {
        assert_eq!(arguments(r#"{"city":"Paris"}"#), json!({"city": "Paris"}));
        assert_eq!(arguments(r#"{"city":"Par"#), json!(r#"{"city":"Par"#));
        assert_eq!(arguments(""), json!({}));
        assert_eq!(arguments_value(Some(&json!({"x": 1}))), json!({"x": 1}));
    }

    #[test]
    fn text_of_handles_strings_and_part_lists() {
        assert_eq!(text_of(&json!("hi")), "hi");
        assert_eq!(
            text_of(
                &json!([{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}])
            ),
            "ab"
        );
        assert_eq!(text_of(&Value::Null), "");
    }

    #[test]
    fn json_tolerates_bom_and_blanks_but_not_garbage() {
        assert_eq!(json(b"\xEF\xBB\xBF {\"a\":1}\n"), Some(json!({"a": 1})));
        assert_eq!(json(b"   "), None);
        assert_eq!(json(b"{\"a\":"), None);
        assert_eq!(json(&[0xff, 0xfe, 0x00]), None);
    }
}
