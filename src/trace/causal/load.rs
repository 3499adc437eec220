//! A recording's dependency graph, read from its events and bodies.
//!
//! Built once when a replay loads its session, so it must stay cheap on long sessions:
//! each distinct body is read and scanned once (sessions repeat bodies a lot), bodies
//! over [`SCAN_LIMIT`] are not read at all, only LLM exchanges go through the adapters,
//! and words (for tool-call arguments) are kept only when the session has LLM calls.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::tokens::Scan;
use super::{Dep, Exchange, Facts, Graph};
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
        kind: ev.kind,
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

/// Whether tool-call arguments can matter: only a session with LLM calls has any.
pub fn wants_words(events: &[Event]) -> bool {
    events.iter().any(|e| e.kind == Kind::Llm)
}

/// The facts of one event whose bodies are at hand.
pub fn facts(
    ev: &Event,
    llm: Option<&LlmCall>,
    request_body: &[u8],
    response_body: &[u8],
    words: bool,
) -> Facts {
    Facts::new(
        &exchange(ev, llm),
        &Scan::of(request_body, words),
        &Scan::of(response_body, false),
    )
}

fn read(rec: &Recording, r: &BodyRef) -> Bytes {
    if r.len == 0 || r.len > SCAN_LIMIT {
        return Bytes::new();
    }
    rec.body(r).unwrap_or_default()
}

/// The graph of a whole recording.
pub fn graph(rec: &Recording) -> Graph {
    let words = wants_words(&rec.events);
    let mut requests: HashMap<&str, Arc<Scan>> = HashMap::new();
    let mut responses: HashMap<&str, Arc<Scan>> = HashMap::new();
    let mut all = Vec::with_capacity(rec.events.len());
    for ev in &rec.events {
        let response = ev.response.as_ref().map(|r| &r.body);
        if ev.kind == Kind::Llm {
            let req = read(rec, &ev.request.body);
            let res = response.map(|b| read(rec, b)).unwrap_or_default();
            let llm = parse_llm(ev, &req, &res);
            all.push(facts(ev, llm.as_ref(), &req, &res, words));
            continue;
        }
        let req = requests
            .entry(&ev.request.body.b3)
            .or_insert_with(|| Arc::new(Scan::of(&read(rec, &ev.request.body), words)))
            .clone();
        let res = match response {
            Some(b) => responses
                .entry(&b.b3)
                .or_insert_with(|| Arc::new(Scan::of(&read(rec, b), false)))
                .clone(),
            None => Arc::new(Scan::default()),
        };
        all.push(Facts::new(&exchange(ev, None), &req, &res));
    }
    Graph::build(&all)
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
