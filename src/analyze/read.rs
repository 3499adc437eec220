//! Small readers of exchanges that several detectors share: how to describe a step in
//! one line, whether a tool's answer is an error, whether an LLM's answer owns up to a
//! failure, and which later LLM call got a tool's answer.

use serde_json::Value;

use crate::exchange::canonical::UrlParts;
use crate::exchange::{Event, Kind};
use crate::trace::adapters::ToolResult;
use crate::trace::spans::Parsed;

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

/// Why a tool's answer is an error, if it is: transport failure, 4xx/5xx, or a 200 whose
/// JSON says so.
pub fn tool_error(p: &Parsed) -> Option<String> {
    let ev = p.event;
    if ev.response.is_none() {
        return ev
            .error
            .as_ref()
            .map(|e| format!("failed: {}", e.kind.as_str()));
    }
    let status = ev.status().unwrap_or(0);
    if status >= 400 {
        return Some(format!("HTTP {status}"));
    }
    let v: Value = serde_json::from_slice(&p.response_body).ok()?;
    json_says_error(&v).then(|| "a JSON error".to_string())
}

fn json_says_error(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    let truthy = |x: &Value| {
        !matches!(x, Value::Null | Value::Bool(false)) && x != &Value::String(String::new())
    };
    o.get("error").is_some_and(truthy)
        || o.get("errors")
            .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()))
        || matches!(
            o.get("status").and_then(Value::as_str),
            Some("error") | Some("failed") | Some("failure")
        )
        || o.get("success") == Some(&Value::Bool(false))
        || o.get("ok") == Some(&Value::Bool(false))
}

/// Whether a tool result's text (as the LLM got it) is a JSON error.
pub fn text_says_error(s: &str) -> bool {
    serde_json::from_str::<Value>(s)
        .map(|v| json_says_error(&v))
        .unwrap_or(false)
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
    let body = body.trim();
    let probe: String = body.chars().take(64).collect();
    call.tool_results.iter().find(|r| {
        let c = r.content.trim();
        (!probe.is_empty() && c.contains(&probe))
            || (c.len() >= 8 && body.contains(c))
            || (body.is_empty() && c.is_empty())
    })
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
        None => String::from_utf8_lossy(&p.response_body).into_owned(),
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
        ] {
            assert!(text_says_error(yes), "{yes}");
        }
        for no in [
            r#"{"error":null}"#,
            r#"{"error":""}"#,
            r#"{"errors":[]}"#,
            r#"{"status":"ok"}"#,
            r#"[{"error":"x"}]"#,
            "sunny",
        ] {
            assert!(!text_says_error(no), "{no}");
        }
    }
}
