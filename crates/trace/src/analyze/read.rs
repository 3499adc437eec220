//! Small readers of exchanges that several detectors share: how to describe a step in
//! one line, whether a tool's answer is an error, whether an LLM's answer owns up to a
//! failure, and which later LLM call got a tool's answer.

use serde_json::Value;

use crate::adapters::ToolResult;
use crate::spans::Parsed;
use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::{Event, Kind};

/// At most `n` characters of `s` on one line, with `…` when cut.
pub fn short(s: &str, n: usize) -> String {
    let s = s.trim().replace('\n', " ");
    if s.chars().count() <= n {
        s
    } else {
        s.chars().take(n.saturating_sub(1)).collect::<String>() + "…"
    }
}

/// `GET https://…`: the request in one line.
pub fn what(ev: &Event) -> String {
    format!("{} {}", ev.request.method, short(&ev.request.url, 90))
}

/// The status code, else the transport error's kind.
pub fn status_of(ev: &Event) -> String {
    match (ev.status(), &ev.error) {
        (Some(s), _) => s.to_string(),
        (None, Some(e)) => e.kind.as_str().to_string(),
        _ => "no response".into(),
    }
}

/// Why a tool's answer is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolError {
    /// `HTTP 500`, `failed: connect`, or the soft error with its field.
    pub why: String,
    /// The JSON path of a soft error's field (`$.parse_error`).
    pub field: Option<String>,
    /// Only a warning field said so (`warning(s)` with text): worth a warning, not an error.
    pub warning: bool,
}

/// Why a tool's answer is an error, if it is: transport failure, 4xx/5xx, or a 2xx whose
/// body says so (a soft error, see [`soft_error`]).
pub fn tool_error(p: &Parsed) -> Option<ToolError> {
    let ev = p.event;
    let hard = |why: String| ToolError {
        why,
        field: None,
        warning: false,
    };
    if let Some(m) = &p.mcp {
        if !m.is_tool_call() {
            return None;
        }
        if let Some(why) = m.error_message() {
            return Some(hard(why));
        }
    }
    if ev.response.is_none() {
        return ev
            .error
            .as_ref()
            .map(|e| hard(format!("failed: {}", e.kind.as_str())));
    }
    let status = ev.status().unwrap_or(0);
    if status >= 400 {
        return Some(hard(format!("HTTP {status}")));
    }
    let soft = body_soft_error(&p.tool_answer())?;
    Some(ToolError {
        why: format!(
            "{} in its {status} body at {}: {:?}",
            if soft.warning {
                "a warning"
            } else {
                "a soft error"
            },
            soft.path,
            short(&soft.text, 80)
        ),
        field: Some(soft.path),
        warning: soft.warning,
    })
}

/// An error-looking field inside a successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftError {
    /// JSON path of the field, `$.parse_error`, `$.result.isError`.
    pub path: String,
    /// What the field says (its message when it has one).
    pub text: String,
    /// Only a `warning`/`warnings` field with text.
    pub warning: bool,
}

/// A soft error in a body: JSON, or the JSON `data:` lines of an SSE stream (MCP's
/// streamable HTTP answers so).
pub fn body_soft_error(body: &[u8]) -> Option<SoftError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return soft_error(&v);
    }
    let text = std::str::from_utf8(body).ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find_map(|v| soft_error(&v))
}

/// The first error-looking field of a JSON document, errors before warnings: `error`,
/// `errors`, `*_error` / `*Error` (truthy), `isError: true`; at the top (or in a JSON-RPC
/// `result`) also `status: "error"|"failed"|"failure"`, `success: false`, `ok: false`;
/// failing those, `warning` / `warnings` with text. Nested objects are read two levels
/// down; arrays are data (a list of jobs may hold a failed one) and are not searched.
pub fn soft_error(v: &Value) -> Option<SoftError> {
    find_field(v, "$", true, 0, false).or_else(|| find_field(v, "$", true, 0, true))
}

fn find_field(v: &Value, path: &str, top: bool, depth: usize, warnings: bool) -> Option<SoftError> {
    let o = v.as_object()?;
    for (k, x) in o {
        let lk = k.to_ascii_lowercase();
        let hit = if warnings {
            (lk == "warning" || lk == "warnings") && has_text(x)
        } else {
            match lk.as_str() {
                "error" | "iserror" => truthy(x),
                "errors" => nonempty(x),
                "status" => top && matches!(x.as_str(), Some("error" | "failed" | "failure")),
                "success" | "ok" => top && x == &Value::Bool(false),
                _ => (lk.ends_with("_error") || k.ends_with("Error")) && truthy(x),
            }
        };
        if hit {
            return Some(SoftError {
                path: format!("{path}.{k}"),
                text: field_text(x, o),
                warning: warnings,
            });
        }
    }
    if depth >= 2 {
        return None;
    }
    o.iter().find_map(|(k, x)| {
        let inner_top = k == "result" && o.contains_key("jsonrpc");
        find_field(x, &format!("{path}.{k}"), inner_top, depth + 1, warnings)
    })
}

fn truthy(x: &Value) -> bool {
    match x {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Bool(true) => true,
    }
}

fn nonempty(x: &Value) -> bool {
    match x {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::String(s) => !s.trim().is_empty(),
        _ => false,
    }
}

fn has_text(x: &Value) -> bool {
    match x {
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => a.iter().any(has_text),
        Value::Object(m) => m.values().any(has_text),
        _ => false,
    }
}

/// What an error field says: its text, its `message`, or (for a flag such as `isError`)
/// the text content beside it.
fn field_text(x: &Value, siblings: &serde_json::Map<String, Value>) -> String {
    match x {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| x.to_string()),
        Value::Array(a) => a
            .first()
            .map(|f| field_text(f, siblings))
            .unwrap_or_default(),
        Value::Bool(true) => siblings
            .get("content")
            .and_then(Value::as_array)
            .and_then(|c| c.iter().find_map(|p| p.get("text")?.as_str()))
            .map(str::to_string)
            .unwrap_or_else(|| "true".into()),
        other => other.to_string(),
    }
}

/// Whether a tool result's text (as the LLM got it) is a JSON error.
pub fn text_says_error(s: &str) -> bool {
    serde_json::from_str::<Value>(s)
        .ok()
        .and_then(|v| soft_error(&v))
        .is_some_and(|e| !e.warning)
}

const ACK_WORDS: &[&str] = &[
    "error",
    "fail",
    "unable",
    "could not",
    "couldn't",
    "cannot",
    "can't",
    "sorry",
    "unavailable",
    "not available",
    "problem",
    "issue",
    "unfortunately",
    "went wrong",
    "try again",
    "did not work",
    "didn't work",
];

/// Whether the LLM's answer mentions the failure (ignoring any verbatim echo of it).
pub fn acknowledges(answer: &str, echoed: &[&str]) -> bool {
    let mut a = answer.to_ascii_lowercase();
    for e in echoed {
        let e = e.trim().to_ascii_lowercase();
        if !e.is_empty() {
            a = a.replace(&e, " ");
        }
    }
    ACK_WORDS.iter().any(|w| a.contains(w))
}

/// The next LLM call of the same agent after `i`.
pub fn next_llm<'a>(parsed: &'a [Parsed<'a>], i: usize) -> Option<(usize, &'a Parsed<'a>)> {
    let agent = &parsed[i].event.agent;
    parsed
        .iter()
        .enumerate()
        .skip(i + 1)
        .find(|(_, q)| q.event.kind == Kind::Llm && &q.event.agent == agent)
}

/// The tool result in an LLM request that carries a tool's answer, if any.
pub fn carried<'a>(llm: &'a Parsed, body: &[u8]) -> Option<&'a ToolResult> {
    let call = llm.llm.as_ref()?;
    let body = String::from_utf8_lossy(body);
    call.tool_results.iter().find(|r| holds(&r.content, &body))
}

/// Whether a tool result's text is a tool's answer (whole, its start, or a part of it).
pub fn holds(content: &str, body: &str) -> bool {
    let (c, body) = (content.trim(), body.trim());
    let probe: String = body.chars().take(64).collect();
    (!probe.is_empty() && c.contains(&probe))
        || (c.len() >= 8 && body.contains(c))
        || (body.is_empty() && c.is_empty())
}

/// Whether a text says nothing: empty, `[]`, `{}`, `null` or `""`.
pub fn is_empty_text(s: &str) -> bool {
    matches!(s.trim(), "" | "[]" | "{}" | "null" | "\"\"")
}

/// Scalar values a request carries: query values, path segments that look like values,
/// and JSON strings.
pub fn request_values(p: &Parsed) -> Vec<String> {
    let mut vals = Vec::new();
    let parts = UrlParts::parse(&p.event.request.url);
    for kv in parts.query.split('&') {
        if let Some((_, v)) = kv.split_once('=') {
            let v = v.replace("%20", " ").replace('+', " ");
            if v.len() >= 3 {
                vals.push(v);
            }
        }
    }
    for seg in parts.path.split('/') {
        if seg.len() >= 3
            && seg
                .chars()
                .any(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            vals.push(seg.to_string());
        }
    }
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.len() >= 3 && s.len() <= 200 => out.push(s.clone()),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&p.request_body) {
        walk(&v, &mut vals);
    }
    vals
}

/// What an exchange handed on: the LLM's answer and tool-call arguments, or a tool's body.
pub fn output_of(p: &Parsed) -> String {
    match &p.llm {
        Some(c) => {
            let mut s = c.output_text.clone();
            for tc in &c.tool_calls {
                s.push(' ');
                s.push_str(&tc.arguments.to_string());
            }
            s
        }
        None => String::from_utf8_lossy(&p.tool_answer()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_only_echoes_the_error_does_not_acknowledge_it() {
        let body = r#"{"error":"backend down"}"#;
        assert!(!acknowledges(&format!("Weather: {body}"), &[body]));
        assert!(acknowledges("Sorry, the service is down.", &[body]));
        assert!(!acknowledges("It is sunny.", &[body]));
    }

    #[test]
    fn json_errors_in_a_tool_answer() {
        for yes in [
            r#"{"error":"x"}"#,
            r#"{"errors":[{"message":"x"}]}"#,
            r#"{"status":"failed"}"#,
            r#"{"success":false}"#,
            r#"{"ok":false}"#,
            r#"{"price":1.299,"parse_error":"ambiguous decimal separator"}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{"isError":true,"content":[{"type":"text","text":"no such file"}]}}"#,
            r#"{"data":{"lookupError":"timeout"}}"#,
        ] {
            assert!(text_says_error(yes), "{yes}");
        }
        for no in [
            r#"{"error":null}"#,
            r#"{"error":""}"#,
            r#"{"errors":[]}"#,
            r#"{"status":"ok"}"#,
            r#"[{"error":"x"}]"#,
            r#"{"jobs":[{"status":"failed"}]}"#,
            r#"{"data":{"status":"failed"}}"#,
            r#"{"error_rate":0.2,"last_error":null,"parse_error":""}"#,
            r#"{"warnings":["heat advisory"]}"#,
            "sunny",
        ] {
            assert!(!text_says_error(no), "{no}");
        }
    }

    #[test]
    fn a_soft_error_names_its_field_and_text_and_warnings_come_last() {
        let v: Value = serde_json::from_str(
            r#"{"price":1.299,"raw_price":"1.299,00","warning":"rounded","parse_error":"could not parse '1.299,00'"}"#,
        )
        .unwrap();
        let e = soft_error(&v).unwrap();
        assert_eq!(e.path, "$.parse_error");
        assert_eq!(e.text, "could not parse '1.299,00'");
        assert!(!e.warning);
        let w =
            soft_error(&serde_json::json!({"temp": 18, "warnings": ["heat advisory"]})).unwrap();
        assert_eq!((w.path.as_str(), w.warning), ("$.warnings", true));
        let mcp = br#"event: message
data: {"jsonrpc":"2.0","id":3,"result":{"isError":true,"content":[{"type":"text","text":"no such file"}]}}

"#;
        let e = body_soft_error(mcp).unwrap();
        assert_eq!(e.path, "$.result.isError");
        assert_eq!(e.text, "no such file");
        assert_eq!(body_soft_error(br#"{"city":"Paris","temp_c":18}"#), None);
    }
}
