//! What a miss tells the agent's developer: which session, which step was expected,
//! what was expected, what came instead, how the bodies differ and, for a call that came
//! too early, which dependency it skipped and which order would accept it.
//!
//! The message goes out in the error shape the client reads: the provider's own on LLM
//! hosts (OpenAI, Anthropic, Gemini, Bedrock), so the SDK puts it in the exception it
//! raises, and `{"error": "<message>", "tapedeck": {...}}` everywhere else, so npm, pip or
//! a plain fetch print the message rather than `[object Object]`. Every shape carries the
//! details under `tapedeck`.

use serde_json::{json, Value};

use super::index::{Blocked, Miss, MissKind};
use tapedeck_model::exchange::canonical::{multipart_view, UrlParts};
use tapedeck_model::exchange::jsondiff;
use tapedeck_model::exchange::redact::{self, Secrets};
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::{Rules, REDACTED};
use tapedeck_trace::adapters::recognise::{self, known_host, Api};
use tapedeck_trace::adapters::ExchangeView;

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
    pub kind: Kind,
}

/// A [`Received`] that owns its parts, to describe a miss on another thread.
pub struct ReceivedOwned {
    method: String,
    url: String,
    body: Result<Vec<u8>, (String, u64)>,
    kind: Kind,
}

impl From<&Received<'_>> for ReceivedOwned {
    fn from(r: &Received<'_>) -> ReceivedOwned {
        ReceivedOwned {
            method: r.method.to_string(),
            url: r.url.to_string(),
            body: match r.body {
                BodyView::Bytes(b) => Ok(b.to_vec()),
                BodyView::Large { b3, len } => Err((b3.to_string(), len)),
            },
            kind: r.kind,
        }
    }
}

impl ReceivedOwned {
    pub fn view(&self) -> Received<'_> {
        Received {
            method: &self.method,
            url: &self.url,
            body: match &self.body {
                Ok(b) => BodyView::Bytes(b),
                Err((b3, len)) => BodyView::Large { b3, len: *len },
            },
            kind: self.kind,
        }
    }
}

/// The events a miss names, read from the recording.
pub struct Named<'a> {
    /// What the request should have been (or what must come first), with its body.
    pub expected: Option<(&'a Event, BodyView<'a>)>,
    /// For out-of-order: the event with the request's key.
    pub later: Option<&'a Event>,
    /// For a skipped dependency: one sentence naming it (see `trace::causal::describe`).
    pub dependency: Option<String>,
    /// For `--order strict`: whether causal order would have served it.
    pub causal_accepts: bool,
    /// For a tool call: the recorded calls of the same tool, nearest arguments first
    /// (`step 2: get_weather(city=Paris)`).
    pub closest: Vec<String>,
    /// The recording was made under other matching or redaction rules.
    pub other_rules: bool,
    /// Then: the rules its redactions show, to mask the live URL with (see
    /// [`masked_like`]).
    pub mask: Option<&'a Rules>,
}

/// What a miss adds when the recording was made under other rules.
const OTHER_RULES: &str = "the recording was made under other redaction or matching rules than this replay's (its events carry another rules fingerprint): a part of a request it stored redacted under a rule this replay lacks (--redact-path, --redact-query, --redact-header, --redact-json-field or tapedeck.toml's [redact]) no longer matches; replay with the rules it was recorded with";

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
    // Multipart forms part by part: whole, they differ in every boundary.
    let (va, vb) = match (multipart_view(a), multipart_view(b)) {
        (Some(va), Some(vb)) => (va, vb),
        _ => (jsondiff::body_value(a), jsondiff::body_value(b)),
    };
    let mut changes = jsondiff::diff(&va, &vb);
    // A value the recording holds as [REDACTED] that the live request carries in clear
    // is a secret replay could not know: masked, the rest of the text shown.
    for c in &mut changes {
        if let (Some(Value::String(rec)), Some(Value::String(live))) = (&c.a, &mut c.b) {
            if rec.contains(REDACTED) {
                let m = crate::loose::masked_body(rec.as_bytes(), live.as_bytes());
                *live = String::from_utf8_lossy(&m).into_owned();
                if live == rec {
                    *live =
                        "(differs where it holds [REDACTED]; not shown, it may be a secret)".into();
                }
            }
        }
    }
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
        let live = crate::loose::masked_url(&expected.request.url, got.url);
        lines.push(format!("url: {} → {live}", expected.request.url));
    }
    lines.extend(body_lines(expected_body, got.body));
    if lines.is_empty() {
        // The URL was masked as the recording stored it: a value it holds redacted may
        // be the difference (a query parameter a rule of this replay keeps in clear).
        let redacted = expected.request.url.contains(REDACTED)
            || expected_body
                .small()
                .is_some_and(|b| b.windows(REDACTED.len()).any(|w| w == REDACTED.as_bytes()));
        lines.push(if redacted {
            "same method, URL and body as stored: a value stored as [REDACTED] differs, or a header that matters (content-type, accept or --match-header)".into()
        } else {
            "same method, URL and body: a header that matters differs (content-type, accept or --match-header)".into()
        });
    }
    lines
}

/// A miss, described: the HTTP body to answer with (and a header some shapes want) and
/// the one-line summary for stderr.
pub struct Described {
    pub body: Value,
    pub header: Option<(&'static str, &'static str)>,
    pub line: String,
}

fn event_line(ev: &Event) -> String {
    format!(
        "step {} ({} {})",
        ev.step, ev.request.method, ev.request.url
    )
}

/// The headline (what happened and what would accept it) and the body differences.
fn headline(miss: &Miss, got: &Received, n: &Named) -> (String, Vec<String>, Option<&'static str>) {
    let what = format!("{} {}", got.method, got.url);
    let diff = |e: Option<(&Event, BodyView)>| {
        e.map(|(ev, body)| differences(ev, body, got))
            .unwrap_or_default()
    };
    let later = n.later.map(|e| e.step).unwrap_or(0);
    match (miss.kind, miss.blocked) {
        (MissKind::Unrecorded, _) => match n.expected {
            Some((ev, _)) => (
                format!(
                    "{what} was never recorded; the closest unserved call is {}",
                    event_line(ev)
                ),
                diff(n.expected),
                None,
            ),
            None => (
                format!("{what} was never recorded, and every recorded call was already served"),
                Vec::new(),
                None,
            ),
        },
        (MissKind::Exhausted, _) => (
            format!(
                "{what} was recorded, but every recorded occurrence was already served{}",
                n.expected
                    .map(|(ev, _)| format!("; the closest unserved call is {}", event_line(ev)))
                    .unwrap_or_default()
            ),
            diff(n.expected),
            None,
        ),
        (MissKind::OutOfOrder, Some(Blocked::Dep(_))) => {
            let first = n.expected.map(|(ev, _)| event_line(ev)).unwrap_or_default();
            let why = n.dependency.clone().unwrap_or_default();
            (
                format!("{what} is recorded at step {later}, but {why}, which has not been served: {first} must come first. --order any would accept it (it matches by key alone)"),
                Vec::new(),
                Some("any"),
            )
        }
        (MissKind::OutOfOrder, Some(Blocked::Stateful { .. })) => {
            let first = n.expected.map(|(ev, _)| event_line(ev)).unwrap_or_default();
            let host = UrlParts::parse(got.url).host;
            (
                format!("{what} is recorded at step {later}, but host {host} is declared stateful (an [[order]] rule in tapedeck.toml or --stateful-host), so its calls keep their recorded order: {first} must come first. Without that rule, or with --order any, it would be accepted"),
                Vec::new(),
                Some("any"),
            )
        }
        (MissKind::OutOfOrder, _) => {
            let (accept, by) = if n.causal_accepts {
                ("causal", "--order causal (the default) would accept it: it carries nothing of the calls it overtakes")
            } else {
                (
                    "any",
                    "--order any would accept it (it matches by key alone)",
                )
            };
            (
                format!(
                    "{what} is recorded at step {later}, but --order strict expects {} next. {by}",
                    n.expected.map(|(ev, _)| event_line(ev)).unwrap_or_default()
                ),
                diff(n.expected),
                Some(accept),
            )
        }
    }
}

/// The error shape a client of this URL reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
    Bedrock,
    Plain,
}

fn shape(got: &Received) -> Shape {
    let view = ExchangeView {
        method: got.method,
        url: got.url,
        request_headers: &[],
        request_body: got.body.small().unwrap_or_default(),
        status: None,
        response_headers: &[],
        response_body: &[],
    };
    if let Some(route) = recognise::recognise(&view) {
        return match route.api {
            Api::Messages => Shape::Anthropic,
            Api::GenerateContent | Api::EmbedContent => Shape::Gemini,
            Api::Converse | Api::Invoke => Shape::Bedrock,
            Api::OllamaChat | Api::OllamaGenerate | Api::OllamaEmbed => Shape::Plain,
            Api::ChatCompletions | Api::Completions | Api::Responses | Api::Embeddings => {
                Shape::OpenAi
            }
        };
    }
    let url = UrlParts::parse(got.url);
    match known_host(&url.host, &url.path) {
        Some("anthropic") => Shape::Anthropic,
        Some("gcp.gemini" | "gcp.vertex_ai") => Shape::Gemini,
        Some("aws.bedrock") => Shape::Bedrock,
        Some(_) => Shape::OpenAi,
        None if got.kind == Kind::Llm => Shape::OpenAi,
        None => Shape::Plain,
    }
}

/// A path rule that redacts what a recorded URL's path has redacted: its host and path
/// as path rules read them, each `[REDACTED]` a group of path characters.
pub fn path_rule(url: &str) -> Option<String> {
    const R: &str = tapedeck_model::rules::REDACTED;
    let target = redact::path_target(url)?;
    target.contains(R).then(|| {
        let parts: Vec<String> = target.split(R).map(regex::escape).collect();
        format!("^{}", parts.join("([^/?#]+)"))
    })
}

/// The names of the query parameters a recorded URL holds redacted, percent-decoded.
pub fn redacted_query_names(url: &str) -> impl Iterator<Item = String> + '_ {
    url.split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(_, v)| v.contains(tapedeck_model::rules::REDACTED))
        .map(|(k, _)| {
            percent_encoding::percent_decode_str(k)
                .decode_utf8_lossy()
                .to_lowercase()
        })
}

/// The live URL masked where the recording has `[REDACTED]`: redacted under `mask`,
/// the rules the recording's redactions show (its redacted paths as path rules, see
/// [`path_rule`], and its redacted query names), then each path segment that the closest
/// recorded call (`recorded`) has redacted at the same place, counted from the start or
/// from the end. A recording made under a rule this replay lacks (`--redact-path` given
/// to record only) would otherwise have the miss print the live secret on stderr and
/// into CI's log.
fn masked_like(live: &str, recorded: Option<&str>, mask: &Rules) -> Option<String> {
    const R: &str = tapedeck_model::rules::REDACTED;
    let redacted = redact::url(live, mask, &mut Secrets::default());
    let (lp, lq) = redacted
        .split_once('?')
        .map_or((redacted.as_str(), None), |(p, q)| (p, Some(q)));
    let mut path: Vec<&str> = lp.split('/').collect();
    if let Some(rec) = recorded {
        let rp = rec.split_once('?').map_or(rec, |(p, _)| p);
        let rs: Vec<&str> = rp.split('/').collect();
        let live: Vec<&str> = path.clone();
        let n = live.len();
        // Segments paired: by place when there are as many, else from the start up to
        // the first that differs, and from the end likewise.
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        if n == rs.len() {
            pairs.extend((0..n).map(|i| (i, i)));
        } else {
            let same = |l: &str, r: &str| l == r || r.contains(R);
            pairs.extend(
                (0..n.min(rs.len()))
                    .take_while(|&i| same(live[i], rs[i]))
                    .map(|i| (i, i)),
            );
            pairs.extend(
                (1..=n.min(rs.len()))
                    .take_while(|&k| same(live[n - k], rs[rs.len() - k]))
                    .map(|k| (n - k, rs.len() - k)),
            );
        }
        for (l, r) in pairs {
            if rs[r].contains(R) {
                path[l] = R;
            }
        }
    }
    let mut out = path.join("/");
    if let Some(q) = lq {
        out.push('?');
        out.push_str(q);
    }
    (out != live).then_some(out)
}

/// Describes a miss for the response and for stderr.
pub fn describe(session: &str, miss: &Miss, got: &Received, named: &Named) -> Described {
    let masked = named.mask.and_then(|mask| {
        let recorded = named.expected.map(|(e, _)| e.request.url.as_str());
        masked_like(got.url, recorded, mask)
    });
    let got = &Received {
        method: got.method,
        url: masked.as_deref().unwrap_or(got.url),
        body: got.body,
        kind: got.kind,
    };
    let kind = miss.kind.as_str();
    let (headline, diff, accept) = headline(miss, got, named);
    let mut message = format!("tapedeck replay miss ({kind}) in session {session}: {headline}");
    if !diff.is_empty() {
        message.push_str(". Differences from the expected request: ");
        message.push_str(&diff.join("; "));
    }
    let closest = (!named.closest.is_empty()).then(|| {
        format!(
            "recorded calls of the same tool, nearest arguments first: {}",
            named.closest.join("; ")
        )
    });
    if let Some(c) = &closest {
        message.push_str(". ");
        message.push_str(c);
    }
    let other_rules =
        (named.other_rules && miss.kind != MissKind::OutOfOrder).then_some(OTHER_RULES);
    if let Some(o) = other_rules {
        message.push_str(". Note: ");
        message.push_str(o);
    }
    let details = json!({
        "miss": kind,
        "session": session,
        "expected_step": named.expected.map(|(e, _)| e.step),
        "expected": named.expected.map(|(e, _)| json!({"method": e.request.method, "url": e.request.url})),
        "recorded_step": named.later.map(|e| e.step),
        "received": {"method": got.method, "url": got.url},
        "waits_for": named.dependency,
        "accepted_by": accept.map(|o| format!("--order {o}")),
        "diff": diff,
        "closest": named.closest,
        "other_rules": named.other_rules,
    });
    let (body, header) = match shape(got) {
        Shape::OpenAi => (
            json!({"error": {"message": message, "type": "tapedeck_miss", "param": null, "code": kind},
                   "tapedeck": details}),
            None,
        ),
        Shape::Anthropic => (
            json!({"type": "error", "error": {"type": "not_found_error", "message": message},
                   "tapedeck": details}),
            None,
        ),
        Shape::Gemini => (
            json!({"error": {"code": 404, "message": message, "status": "NOT_FOUND"},
                   "tapedeck": details}),
            None,
        ),
        Shape::Bedrock => (
            json!({"message": message, "tapedeck": details}),
            Some(("x-amzn-errortype", "ResourceNotFoundException")),
        ),
        Shape::Plain => (json!({"error": message, "tapedeck": details}), None),
    };
    let line = format!(
        "MISS {kind}: {headline}{}{}{}",
        if diff.is_empty() {
            String::new()
        } else {
            format!(" [{}]", diff.join("; "))
        },
        closest.map(|c| format!("; {c}")).unwrap_or_default(),
        other_rules
            .map(|o| format!("; note: {o}"))
            .unwrap_or_default()
    );
    Described { body, header, line }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unrecorded(method: &str, url: &str, body: &str, kind: Kind) -> Value {
        described(method, url, body, kind).body
    }

    fn described(method: &str, url: &str, body: &str, kind: Kind) -> Described {
        let miss = Miss {
            kind: MissKind::Unrecorded,
            expected: None,
            later: None,
            blocked: None,
        };
        let got = Received {
            method,
            url,
            body: BodyView::Bytes(body.as_bytes()),
            kind,
        };
        let named = Named {
            expected: None,
            later: None,
            dependency: None,
            causal_accepts: false,
            closest: Vec::new(),
            other_rules: false,
            mask: None,
        };
        describe("s1", &miss, &got, &named)
    }

    /// The rules a recording's redactions show: these URLs' redacted paths and query
    /// names.
    fn mask_of(urls: &[&str]) -> Rules {
        let mut r = Rules::default();
        for u in urls {
            r.redact_paths.extend(
                path_rule(u).and_then(|p| tapedeck_model::rules::PathSecret::parse(&p).ok()),
            );
            r.redact_query.extend(redacted_query_names(u));
        }
        r
    }

    /// A live request carrying in clear what the recording holds as [REDACTED] (a
    /// value replay could not know) misses on another change; the miss names that
    /// change and not the value, which would reach CI's log.
    #[test]
    fn a_miss_masks_what_the_recording_holds_redacted() {
        let event: Event = serde_json::from_value(json!({
            "step": 2, "kind": "llm", "key": "k",
            "request": {"method": "POST", "url": "https://h/bot[REDACTED]/send",
                        "version": "HTTP/1.1", "headers": [], "body": {"b3": "b", "len": 0}},
            "timing": {"start_ns": 0, "end_ns": 0, "ttfb_ns": 0,
                       "start_unix_ns": 0, "end_unix_ns": 0}
        }))
        .unwrap();
        let recorded = br#"{"model":"gpt-4o","content":"ALICE_KEY=[REDACTED]\nDRY_RUN=1"}"#;
        let live = br#"{"model":"gpt-4.1","content":"ALICE_KEY=Ak7Qm2Xp9Lk4Rt8Vn3Bc\nDRY_RUN=0"}"#;
        let got = Received {
            method: "POST",
            url: "https://h/bot123456:AAHdqTcvCH1vGWJx/send",
            body: BodyView::Bytes(live),
            kind: Kind::Llm,
        };
        let lines = differences(&event, BodyView::Bytes(recorded), &got).join("\n");
        assert!(!lines.contains("Ak7Qm2Xp9Lk4Rt8Vn3Bc"), "{lines}");
        assert!(!lines.contains("AAHdqTcvCH1vGWJx"), "{lines}");
        assert!(
            lines.contains("gpt-4.1") && lines.contains("DRY_RUN=0"),
            "{lines}"
        );
    }

    #[test]
    fn a_miss_a_redacted_value_may_explain_says_so() {
        let event = |url: &str| -> Event {
            serde_json::from_value(json!({
                "step": 1, "kind": "tool", "key": "k",
                "request": {"method": "GET", "url": url, "version": "HTTP/1.1",
                            "headers": [], "body": {"b3": "b", "len": 0}},
                "timing": {"start_ns": 0, "end_ns": 0, "ttfb_ns": 0,
                           "start_unix_ns": 0, "end_unix_ns": 0}
            }))
            .unwrap()
        };
        let got = |url| Received {
            method: "GET",
            url,
            body: BodyView::Bytes(b""),
            kind: Kind::Tool,
        };
        let empty = BodyView::Bytes(b"");
        // The live URL masked as the recording stored it: the two look the same.
        let url = "https://h/weather?city=Paris&team=[REDACTED]";
        let lines = differences(&event(url), empty, &got(url));
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("a value stored as [REDACTED] differs"),
            "{lines:?}"
        );
        let url = "https://h/weather?city=Paris";
        let lines = differences(&event(url), empty, &got(url));
        assert!(
            lines[0].starts_with("same method, URL and body: a header"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_live_url_is_masked_where_the_recording_has_it_redacted() {
        let m = |live, rec| masked_like(live, Some(rec), &mask_of(&[rec]));
        assert_eq!(
            m(
                "https://h/hooks/team/tok-123?key=abc&wait=true",
                "https://h/hooks/team/[REDACTED]?key=[REDACTED]&wait=true"
            )
            .as_deref(),
            Some("https://h/hooks/team/[REDACTED]?key=[REDACTED]&wait=true")
        );
        // Another number of segments: the recorded path as a rule, or counted from the
        // start and from the end.
        assert_eq!(
            m(
                "https://h/keys/LIVE/items/",
                "https://h/keys/[REDACTED]/items"
            )
            .as_deref(),
            Some("https://h/keys/[REDACTED]/items/")
        );
        assert_eq!(
            m(
                "https://h//keys/LIVE/items",
                "https://h/keys/[REDACTED]/items"
            )
            .as_deref(),
            Some("https://h//keys/[REDACTED]/items")
        );
        // Query names as record compares them: any case, percent-encoded.
        assert_eq!(
            m(
                "https://h/a?TOK=abc&t%6Fk=def",
                "https://h/a?tok=[REDACTED]"
            )
            .as_deref(),
            Some("https://h/a?TOK=[REDACTED]&t%6Fk=[REDACTED]")
        );
        // A name or path redacted elsewhere in the recording, not in the closest call
        // (of another shape and method), or with no closest call at all.
        let mask = mask_of(&[
            "https://h/b?tok=[REDACTED]",
            "https://h:8443/hooks/team/[REDACTED]?wait=true",
        ]);
        assert_eq!(
            masked_like("https://h/b?tok=abc", Some("https://h/b"), &mask).as_deref(),
            Some("https://h/b?tok=[REDACTED]")
        );
        assert_eq!(
            masked_like("https://h:8443/hooks/team/LIVE-TOKEN/", None, &mask).as_deref(),
            Some("https://h:8443/hooks/team/[REDACTED]/")
        );
        assert_eq!(masked_like("https://h:8443/other/LIVE", None, &mask), None);
        // Nothing redacted in the recording: nothing to mask.
        assert_eq!(m("https://h/a?k=1", "https://h/a?k=2"), None);
    }

    #[test]
    fn each_client_gets_the_error_shape_it_reads() {
        let chat = r#"{"model":"gpt-4o","messages":[]}"#;
        let b = unrecorded(
            "POST",
            "https://api.openai.com/v1/chat/completions",
            chat,
            Kind::Llm,
        );
        let m = b["error"]["message"].as_str().unwrap();
        assert!(
            m.starts_with("tapedeck replay miss (unrecorded) in session s1"),
            "{m}"
        );
        assert_eq!(b["error"]["type"], "tapedeck_miss");
        assert_eq!(b["tapedeck"]["miss"], "unrecorded");

        let msgs = r#"{"model":"claude-x","max_tokens":5,"messages":[]}"#;
        let b = unrecorded(
            "POST",
            "https://api.anthropic.com/v1/messages",
            msgs,
            Kind::Llm,
        );
        assert_eq!(b["type"], "error");
        assert_eq!(b["error"]["type"], "not_found_error");
        assert!(b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("replay miss"));

        let gem = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent";
        let b = unrecorded("POST", gem, r#"{"contents":[]}"#, Kind::Llm);
        assert_eq!(b["error"]["status"], "NOT_FOUND");
        assert_eq!(b["error"]["code"], 404);

        let bedrock =
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse";
        let d = described("POST", bedrock, r#"{"messages":[]}"#, Kind::Llm);
        assert!(d.body["message"].as_str().unwrap().contains("replay miss"));
        assert_eq!(
            d.header,
            Some(("x-amzn-errortype", "ResourceNotFoundException"))
        );

        // A model listing on a provider host: still the provider's shape.
        let b = unrecorded("GET", "https://api.openai.com/v1/models", "", Kind::Other);
        assert!(b["error"]["message"].is_string());

        // Anything else: the message is the error itself.
        let b = unrecorded("GET", "https://registry.npmjs.org/lodash", "", Kind::Tool);
        assert!(b["error"].as_str().unwrap().contains("was never recorded"));
        assert_eq!(
            b["tapedeck"]["received"]["url"],
            "https://registry.npmjs.org/lodash"
        );
    }

    /// A form as a client sends it: a boundary of its own, a text field, a token field
    /// and a file.
    fn form(boundary: &str, model: &str, file: &[u8]) -> Vec<u8> {
        let mut b = format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n\
             --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"speech.wav\"\r\n\
             content-type: audio/wav\r\n\r\n"
        )
        .into_bytes();
        b.extend_from_slice(file);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        b
    }

    #[test]
    fn a_multipart_miss_names_the_part_that_differs_not_the_boundary() {
        let audio: Vec<u8> = (0..4000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut other = audio.clone();
        other[100] ^= 1;
        let recorded = form("rec0aa11", "whisper-1", &audio);

        // Another file under a new boundary: the file part, by its size and blake3.
        let lines = body_lines(
            BodyView::Bytes(&recorded),
            BodyView::Bytes(&form("live9bb22", "whisper-1", &other)),
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("body $.file.content: \"4000 bytes, blake3 "),
            "{lines:?}"
        );
        assert!(!lines
            .iter()
            .any(|l| l.contains("rec0aa11") || l.contains("live9bb22")));

        // Another text field: its values.
        let lines = body_lines(
            BodyView::Bytes(&recorded),
            BodyView::Bytes(&form("live9bb22", "whisper-2", &audio)),
        );
        assert_eq!(
            lines,
            vec![r#"body $.model: "whisper-1" → "whisper-2""#.to_string()]
        );

        // The same form under a new boundary differs in nothing.
        let lines = body_lines(
            BodyView::Bytes(&recorded),
            BodyView::Bytes(&form("live9bb22", "whisper-1", &audio)),
        );
        assert!(lines.is_empty(), "{lines:?}");
    }
}
