//! What a miss tells the agent's developer: which session, which step was expected,
//! what was expected, what came instead, and how the bodies differ, in one message
//! that the LLM SDKs put in the exception they raise.

use serde_json::{json, Value};

use super::index::{Miss, MissKind};
use crate::exchange::jsondiff;
use crate::exchange::Event;

/// Bodies up to this size are diffed field by field; larger ones by length and blake3, so
/// a miss on a huge body costs no more memory than a hit.
pub const DIFF_LIMIT: u64 = 1 << 20;

/// A body as a miss message sees it: its bytes when small enough to diff, else its hash.
#[derive(Clone, Copy)]
pub enum BodyView<'a> {
    Bytes(&'a [u8]),
    Large { b3: &'a str, len: u64 },
}

impl BodyView<'_> {
    fn len(&self) -> u64 {
        match self {
            BodyView::Bytes(b) => b.len() as u64,
            BodyView::Large { len, .. } => *len,
        }
    }

    fn b3(&self) -> String {
        match self {
            BodyView::Bytes(b) => blake3::hash(b).to_hex().to_string(),
            BodyView::Large { b3, .. } => b3.to_string(),
        }
    }

    fn small(&self) -> Option<&[u8]> {
        match self {
            BodyView::Bytes(b) if b.len() as u64 <= DIFF_LIMIT => Some(b),
            _ => None,
        }
    }
}

/// The request that came and missed, in stored (redacted) form.
pub struct Received<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub body: BodyView<'a>,
}

/// The body lines of a miss: a path-by-path diff when both are small, else sizes and hashes.
fn body_lines(expected: BodyView, got: BodyView) -> Vec<String> {
    let (Some(a), Some(b)) = (expected.small(), got.small()) else {
        let (ha, hb) = (expected.b3(), got.b3());
        if ha == hb {
            return Vec::new();
        }
        return vec![format!(
            "body: {} bytes (blake3 {}) → {} bytes (blake3 {}); over {} KiB, not diffed field by field",
            expected.len(),
            &ha[..12],
            got.len(),
            &hb[..12],
            DIFF_LIMIT >> 10
        )];
    };
    let changes = jsondiff::diff(&jsondiff::body_value(a), &jsondiff::body_value(b));
    let n = changes.len();
    let mut lines: Vec<String> = changes
        .iter()
        .take(6)
        .map(|c| format!("body {}", c.line(80)))
        .collect();
    if n > 6 {
        lines.push(format!("... and {} more body differences", n - 6));
    }
    lines
}

/// Lines saying how the received request differs from an expected event.
pub fn differences(expected: &Event, expected_body: BodyView, got: &Received) -> Vec<String> {
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
    lines.extend(body_lines(expected_body, got.body));
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
    expected: Option<(&Event, BodyView)>,
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
