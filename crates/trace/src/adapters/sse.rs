//! Splitting a recorded stream body back into its messages: Server-Sent Events, NDJSON
//! lines, and the elements of a (possibly truncated) JSON array.
//!
//! A recorded stream is the whole concatenated body, and the recording may have been
//! cut anywhere (client hung up, upstream reset). Every splitter here returns the
//! complete messages it found and quietly drops a torn final one, so adapters get a
//! best-effort prefix instead of nothing.

use serde_json::Value;

/// One SSE event: the `event:` name (if any) and the joined `data:` lines.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// True when the body looks like an SSE stream rather than a JSON document: its first
/// non-blank line is an SSE field or comment.
pub(super) fn looks_like_sse(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let Some(first) = text.lines().map(str::trim_start).find(|l| !l.is_empty()) else {
        return false;
    };
    ["data:", "event:", "id:", "retry:", ":"]
        .iter()
        .any(|p| first.starts_with(p))
}

/// Parses an SSE body per the WHATWG event-stream rules that matter here: fields are
/// `name: value` (one optional space), `data` lines join with `\n`, a blank line ends an
/// event, `:` lines are comments. A final event without its blank line is kept, because
/// a recording cut after the last `data:` line still holds that data.
pub(super) fn events(body: &[u8]) -> Vec<SseEvent> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut event: Option<String> = None;
    let mut data: Vec<String> = Vec::new();
    let mut flush = |event: &mut Option<String>, data: &mut Vec<String>| {
        if !data.is_empty() {
            out.push(SseEvent {
                event: event.take(),
                data: data.join("\n"),
            });
        }
        *event = None;
        data.clear();
    };
    // `lines()` splits on `\n` and strips a trailing `\r`; a lone `\r` separator is
    // legal SSE but no provider uses it.
    for line in text.lines() {
        if line.is_empty() {
            flush(&mut event, &mut data);
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match name {
            "event" => event = Some(value.to_string()),
            "data" => data.push(value.to_string()),
            _ => {}
        }
    }
    flush(&mut event, &mut data);
    out
}

/// The SSE events whose data is JSON, with their event names. `[DONE]` sentinels and
/// torn or non-JSON data are skipped.
pub(super) fn json_events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    events(body)
        .into_iter()
        .filter_map(|e| {
            let data = e.data.trim();
            if data == "[DONE]" {
                return None;
            }
            serde_json::from_str::<Value>(data)
                .ok()
                .map(|v| (e.event, v))
        })
        .collect()
}

/// Whether a response is Amazon's binary event stream (Bedrock's streams).
pub(super) fn is_eventstream(x: &super::ExchangeView) -> bool {
    super::fields::header(x.response_headers, "content-type").is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with(tapedeck_model::exchange::eventstream::CONTENT_TYPE)
    })
}

/// The JSON events of a streamed answer: server-sent events ([`json_events`]), or the
/// messages of Amazon's binary event stream, each named by its `:event-type` (an
/// exception by its `:exception-type`). A message
/// whose payload holds a chunk base64 in `bytes` (`invoke-with-response-stream`: the
/// model's own stream events, Anthropic's for Claude) is that chunk, unnamed, as an SSE
/// event's data would be.
pub(super) fn stream_events(x: &super::ExchangeView) -> Vec<(Option<String>, Value)> {
    use base64::Engine as _;
    if !is_eventstream(x) {
        return json_events(x.response_body);
    }
    tapedeck_model::exchange::eventstream::messages(x.response_body)
        .into_iter()
        .filter_map(|m| {
            let v: Value = serde_json::from_slice(&m.payload).ok()?;
            if let Some(b64) = v.get("bytes").and_then(Value::as_str) {
                let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
                return Some((None, serde_json::from_slice(&raw).ok()?));
            }
            // An exception is named by its type (`throttlingException`, ...).
            let name = m
                .header(":event-type")
                .or_else(|| m.header(":exception-type"));
            Some((name.map(str::to_string), v))
        })
        .collect()
}

/// The JSON values of an NDJSON body, one per line; torn or blank lines are skipped.
pub(super) fn ndjson(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The complete top-level objects of a JSON array body, even when the array is cut
/// short (Gemini streams without `alt=sse` are one growing array). Scans bytes, tracking
/// string and escape state, so braces inside strings do not count.
pub(super) fn array_objects(body: &[u8]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut start = None;
    let mut seen_array = false;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' if depth == 0 && !seen_array => seen_array = true,
            b'{' | b'[' => {
                if depth == 0 && b == b'{' {
                    start = Some(i);
                }
                depth += 1;
            }
            b'}' | b']' => {
                if depth == 0 {
                    continue;
                }
                depth -= 1;
                if depth == 0 {
                    if let Some(s) = start.take() {
                        if let Ok(v) = serde_json::from_slice(&body[s..=i]) {
                            out.push(v);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sse_events_keep_names_join_data_and_skip_comments() {
        let body = b": keep-alive\n\nevent: message_start\ndata: {\"a\":1}\n\ndata: x\ndata: y\r\n\r\ndata: [DONE]\n\n";
        let ev = events(body);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].event.as_deref(), Some("message_start"));
        assert_eq!(ev[0].data, "{\"a\":1}");
        assert_eq!(ev[1].event, None);
        assert_eq!(ev[1].data, "x\ny");
        assert_eq!(
            json_events(body),
            vec![(Some("message_start".into()), json!({"a": 1}))]
        );
    }

    #[test]
    fn a_cut_stream_keeps_its_complete_events() {
        let body = b"data: {\"n\":1}\n\ndata: {\"n\":2}\n\ndata: {\"n\":";
        let vals: Vec<Value> = json_events(body).into_iter().map(|(_, v)| v).collect();
        assert_eq!(vals, vec![json!({"n": 1}), json!({"n": 2})]);
        // Cut right after a complete data line: still counted.
        assert_eq!(json_events(b"data: {\"n\":3}").len(), 1);
    }

    #[test]
    fn sse_sniffing() {
        assert!(looks_like_sse(b"\n\nevent: ping\ndata: {}\n\n"));
        assert!(looks_like_sse(b"data: {}\n\n"));
        assert!(!looks_like_sse(b"{\"data\": 1}"));
        assert!(!looks_like_sse(b""));
    }

    #[test]
    fn ndjson_skips_torn_lines() {
        assert_eq!(
            ndjson(b"{\"a\":1}\n\n{\"a\":2}\n{\"a\""),
            vec![json!({"a": 1}), json!({"a": 2})]
        );
    }

    #[test]
    fn array_objects_survive_truncation_and_braces_in_strings() {
        let body = br#"[{"t":"a}{"},
{"t":"b\"}","n":[1,{"x":2}]}
,{"t":"c"#;
        assert_eq!(
            array_objects(body),
            vec![
                json!({"t": "a}{"}),
                json!({"t": "b\"}", "n": [1, {"x": 2}]})
            ]
        );
        assert!(array_objects(b"]]]}}}").is_empty());
    }
}
