//! A recording's dependency graph, read from its events and bodies.
//!
//! Built once when a replay loads its session, so it must stay cheap on long sessions:
//! each distinct body is read and scanned once (sessions repeat bodies a lot), bodies
//! over [`SCAN_LIMIT`] are not read at all, only LLM exchanges go through the adapters,
//! and words (for tool-call arguments) are kept only when the session has LLM calls.

use foldhash::{HashMap, HashMapExt};

use bytes::Bytes;

use super::tokens::Scan;
use super::{Builder, Dep, Exchange, Graph};
use crate::exchange::{header, BodyRef, Event, Kind};
use crate::recording::Recording;
use crate::trace::adapters::{self, ExchangeView, LlmCall};

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

/// Adds one event whose bodies are at hand.
pub fn push(
    b: &mut Builder,
    ev: &Event,
    llm: Option<&LlmCall>,
    request_body: &[u8],
    response_body: &[u8],
) {
    let req = b.scan_request(request_body);
    let res = b.scan_response(response_body);
    b.push(&exchange(ev, llm), req, res);
}

fn read(rec: &Recording, r: &BodyRef) -> Bytes {
    if r.len == 0 || r.len > SCAN_LIMIT {
        return Bytes::new();
    }
    rec.body(r).unwrap_or_default()
}

/// The graph of a whole recording.
pub fn graph(rec: &Recording) -> Graph {
    let mut requests: HashMap<&str, Scan> = HashMap::new();
    let mut responses: HashMap<&str, Scan> = HashMap::new();
    let mut b = Builder::new(rec.events.len(), is_agentic(rec.events.iter()));
    for ev in &rec.events {
        let response = ev.response.as_ref().map(|r| &r.body);
        if ev.kind == Kind::Llm {
            let req = read(rec, &ev.request.body);
            let res = response.map(|b| read(rec, b)).unwrap_or_default();
            let llm = parse_llm(ev, &req, &res);
            push(&mut b, ev, llm.as_ref(), &req, &res);
            continue;
        }
        let req = cached(
            rec,
            &mut b,
            &mut requests,
            &ev.request.body,
            Builder::scan_request,
        );
        let res = match response {
            Some(body) => cached(rec, &mut b, &mut responses, body, Builder::scan_response),
            None => Scan::default(),
        };
        b.push(&exchange(ev, None), req, res);
    }
    b.build()
}

/// The scan of a body, read once per distinct body.
fn cached<'a>(
    rec: &Recording,
    b: &mut Builder,
    cache: &mut HashMap<&'a str, Scan>,
    body: &'a BodyRef,
    scan: fn(&mut Builder, &[u8]) -> Scan,
) -> Scan {
    *cache
        .entry(body.b3.as_str())
        .or_insert_with(|| scan(b, &read(rec, body)))
}

/// One sentence for event `e`'s dependency `dep`, reading the event depended on again.
pub fn describe(rec: &Recording, e: usize, dep: &Dep) -> String {
    let (Some(ev), Some(d)) = (rec.events.get(e), rec.events.get(dep.on as usize)) else {
        return String::new();
    };
    let req = read(rec, &d.request.body);
    let res = d
        .response
        .as_ref()
        .map(|r| read(rec, &r.body))
        .unwrap_or_default();
    let llm = parse_llm(d, &req, &res);
    super::describe(dep, ev.step, d.step, &exchange(d, llm.as_ref()), &res)
}
