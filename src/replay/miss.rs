//! What a miss tells the agent's developer: which session, which step was expected,
//! what was expected, what came instead, and how the bodies differ, in one message
//! that the LLM SDKs put in the exception they raise.

use serde_json::{json, Value};

use super::index::{Miss, MissKind};
use crate::exchange::jsondiff;
use crate::exchange::Event;

/// The request that came and missed, in stored (redacted) form.
pub struct Received<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub body: &'a [u8],
}

/// Lines saying how the received request differs from an expected event.
pub fn differences(expected: &Event, expected_body: &[u8], got: &Received) -> Vec<String> {
    let mut lines = Vec::new();
    if expected.request.method != got.method {
        lines.push(format!(
            "method: {} → {}",
            expected.request.method, got.method
        ));
    }
    if expected.request.url != got.url {
        lines.push(format!("url: {} → {}", expected.request.url, got.url));
    }
    let changes = jsondiff::diff(
        &jsondiff::body_value(expected_body),
        &jsondiff::body_value(got.body),
    );
    let n = changes.len();
    for c in changes.iter().take(6) {
        lines.push(format!("body {}", c.line(80)));
    }
    if n > 6 {
        lines.push(format!("... and {} more body differences", n - 6));
    }
    if lines.is_empty() {
        lines.push("same method, URL and body: a header that matters differs (content-type, accept or --match-header)".into());
    }
    lines
}

/// The JSON body of a miss response and the one-line summary for stderr.
pub fn describe(
    session: &str,
    miss: &Miss,
    got: &Received,
    expected: Option<(&Event, &[u8])>,
    later: Option<&Event>,
) -> (Value, String) {
    let what = format!("{} {}", got.method, got.url);
    let (headline, diff) = match (miss.kind, expected) {
        (MissKind::Unrecorded, Some((ev, body))) => (
            format!(
                "{what} was never recorded; the recording expected step {} next: {} {}",
                ev.step, ev.request.method, ev.request.url
            ),
            differences(ev, body, got),
        ),
        (MissKind::Unrecorded, None) => (
            format!("{what} was never recorded, and every recorded event of its kind was already served"),
            Vec::new(),
        ),
        (MissKind::OutOfOrder, exp) => {
            let later = later.map(|e| e.step).unwrap_or(0);
            match exp {
                Some((ev, body)) => (
                    format!(
                        "{what} is recorded at step {later}, but step {} ({} {}) must come first",
                        ev.step, ev.request.method, ev.request.url
                    ),
                    differences(ev, body, got),
                ),
                None => (format!("{what} is recorded at step {later} but may not be taken yet"), Vec::new()),
            }
        }
        (MissKind::Exhausted, exp) => (
            format!(
                "{what} was recorded, but every recorded occurrence was already served{}",
                exp.map(|(ev, _)| format!("; the recording expected step {} next: {} {}", ev.step, ev.request.method, ev.request.url))
                    .unwrap_or_default()
            ),
            exp.map(|(ev, body)| differences(ev, body, got)).unwrap_or_default(),
        ),
    };
    let mut message = format!(
        "tapedeck replay miss ({}) in session {session}: {headline}",
        miss.kind.as_str()
    );
    if !diff.is_empty() {
        message.push_str(". Differences from the expected request: ");
        message.push_str(&diff.join("; "));
    }
    let body = json!({"error": {
        "type": "tapedeck_miss",
        "code": miss.kind.as_str(),
        "message": message,
        "session": session,
        "expected_step": expected.map(|(e, _)| e.step),
        "expected": expected.map(|(e, _)| json!({"method": e.request.method, "url": e.request.url})),
        "received": {"method": got.method, "url": got.url},
        "diff": diff,
    }});
    let line = format!(
        "MISS {}: {headline}{}",
        miss.kind.as_str(),
        if diff.is_empty() {
            String::new()
        } else {
            format!(" [{}]", diff.join("; "))
        }
    );
    (body, line)
}
