//! A recording's dependency graph, read from its events and bodies.
//!
//! Built once when a replay loads its session, so it must stay cheap on long sessions:
//! each distinct body is read and scanned once (sessions repeat bodies a lot), bodies
//! over [`SCAN_LIMIT`] or of a binary type (a tarball, an image) are not read at all, only
//! LLM exchanges go through the adapters, and words (for tool-call arguments) are kept
//! only when the session has LLM calls.

use foldhash::{HashMap, HashMapExt};

use bytes::Bytes;

use super::tokens::Scan;
use super::{Builder, Dep, Exchange, Graph};
use crate::adapters::{self, ExchangeView, LlmCall};
use tapedeck_model::exchange::{header, media_type, BodyRef, Event, Header, Kind};
use tapedeck_store::recording::Recording;

/// Bodies larger than this are not read for dependencies.
pub const SCAN_LIMIT: u64 = 4 << 20;

/// The adapters' reading of an LLM event, given its bodies.
pub fn parse_llm(ev: &Event, request_body: &[u8], response_body: &[u8]) -> Option<LlmCall> {
    if ev.kind != Kind::Llm {
        return None;
    }
    adapters::parse(&ExchangeView {
        method: &ev.request.method,
        url: &ev.request.url,
        request_headers: &ev.request.headers,
        request_body,
        status: ev.status(),
        response_headers: ev
            .response
            .as_ref()
            .map(|r| r.headers.as_slice())
            .unwrap_or(&[]),
        response_body,
    })
}

/// The model's view of an event.
pub fn exchange<'a>(ev: &'a Event, llm: Option<&'a LlmCall>) -> Exchange<'a> {
    Exchange {
        agent: ev.agent.as_deref(),
        start_ns: ev.timing.start_ns,
        end_ns: ev.timing.end_ns,
        url: &ev.request.url,
        location: ev
            .response
            .as_ref()
            .and_then(|r| header(&r.headers, "location")),
        llm,
    }
}

/// Whether a session has LLM calls (then tool-call arguments and tool answers matter).
pub fn is_agentic<'a>(mut events: impl Iterator<Item = &'a Event>) -> bool {
    events.any(|e| e.kind == Kind::Llm)
}

/// Whether a body can carry values worth reading: text of a sensible size.
fn worth_reading(len: u64, headers: &[Header]) -> bool {
    if len == 0 || len > SCAN_LIMIT {
        return false;
    }
    let Some(ct) = header(headers, "content-type") else {
        return true;
    };
    let ct = media_type(ct);
    ct.starts_with("text/")
        || [
            "json",
            "xml",
            "javascript",
            "x-www-form-urlencoded",
            "ndjson",
            "yaml",
            "graphql",
        ]
        .iter()
        .any(|t| ct.contains(t))
}

/// Adds one event whose bodies are at hand.
pub fn push(
    b: &mut Builder,
    ev: &Event,
    llm: Option<&LlmCall>,
    request_body: &[u8],
    response_body: &[u8],
) {
    let worth = |body: &'_ [u8], headers: &[Header]| worth_reading(body.len() as u64, headers);
    let req = match worth(request_body, &ev.request.headers) {
        true => b.scan_request(request_body),
        false => b.scan_request(b""),
    };
    let res = match ev.response.as_ref() {
        Some(r) if worth(response_body, &r.headers) => b.scan_response(response_body),
        _ => b.scan_response(b""),
    };
    b.push(&exchange(ev, llm), req, res);
}

fn read(rec: &Recording, r: &BodyRef, headers: &[Header]) -> Bytes {
    if !worth_reading(r.len, headers) {
        return Bytes::new();
    }
    rec.body(r).unwrap_or_default()
}

fn read_request(rec: &Recording, ev: &Event) -> Bytes {
    read(rec, &ev.request.body, &ev.request.headers)
}

fn read_response(rec: &Recording, ev: &Event) -> Bytes {
    ev.response
        .as_ref()
        .map(|r| read(rec, &r.body, &r.headers))
        .unwrap_or_default()
}

/// The graph of a whole recording.
pub fn graph(rec: &Recording) -> Graph {
    let mut g = GraphLoader::new(rec.len(), rec.has_llm_calls());
    let _ = rec.for_each_event::<tapedeck_store::StoreError>(&mut |_, ev| {
        g.push(rec, ev);
        Ok(())
    });
    g.finish()
}

/// Builds the graph of a recording event by event, in step order (so a recording of a
/// long session from the store is read back as it goes), each distinct body scanned once.
pub struct GraphLoader {
    b: Builder,
    requests: HashMap<String, Scan>,
    responses: HashMap<String, Scan>,
}

impl GraphLoader {
    /// For `events` events; `agentic`: the recording has LLM calls.
    pub fn new(events: usize, agentic: bool) -> GraphLoader {
        GraphLoader {
            b: Builder::new(events, agentic),
            requests: HashMap::new(),
            responses: HashMap::new(),
        }
    }

    /// The next event of `rec` (its bodies are read from `rec`).
    pub fn push(&mut self, rec: &Recording, ev: &Event) {
        let b = &mut self.b;
        if ev.kind == Kind::Llm {
            let (req, res) = (read_request(rec, ev), read_response(rec, ev));
            let llm = parse_llm(ev, &req, &res);
            push(b, ev, llm.as_ref(), &req, &res);
            return;
        }
        let b3 = &ev.request.body.b3;
        let req = match self.requests.get(b3) {
            Some(s) => *s,
            None => *self
                .requests
                .entry(b3.clone())
                .or_insert(b.scan_request(&read_request(rec, ev))),
        };
        let res = match &ev.response {
            Some(r) => match self.responses.get(&r.body.b3) {
                Some(s) => *s,
                None => *self
                    .responses
                    .entry(r.body.b3.clone())
                    .or_insert(b.scan_response(&read_response(rec, ev))),
            },
            None => Scan::default(),
        };
        b.push(&exchange(ev, None), req, res);
    }

    pub fn finish(self) -> Graph {
        self.b.build()
    }
}

/// One sentence for event `e`'s dependency `dep`, reading the event depended on again.
pub fn describe(rec: &Recording, e: usize, dep: &Dep) -> String {
    let (Ok(ev), Ok(d)) = (rec.event(e), rec.event(dep.on as usize)) else {
        return String::new();
    };
    let (req, res) = (read_request(rec, &d), read_response(rec, &d));
    let llm = parse_llm(&d, &req, &res);
    super::describe(dep, ev.step, d.step, &exchange(&d, llm.as_ref()), &res)
}
