//! The viewer's JSON API: what each page asks for, shaped from the library's own types.
//!
//! - `info`: what is being viewed, and whether exchanges arrive live;
//! - `sessions`: one summary per session (built in the background: a session not summarised
//!   yet is listed without one and counted in `pending`) and, once all are, the clusters;
//! - `sessions/{name}/run`: the span tree in depth-first order with times in microseconds
//!   from the run's start, the findings, and the walk-back links;
//! - `sessions/{name}/steps/{step}`: one exchange with its bodies (read now, capped), and
//!   what flowed into it from earlier steps (see [`links`]);
//! - `diff/{a}/{b}`: the alignment of `tapedeck diff`, row by row, and its report;
//!   `diff/{a}/{b}/rows/{i}`: one row's request and response diffs, path by path.
//!
//! Bodies are returned as JSON strings: data for the page to show as text, never markup.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use super::source::Loaded;
use super::{blocking, links, Viewer, ViewerError};
use crate::recording::Recording;
use tapedeck_model::exchange::{header, BodyRef, Event, Kind};
use tapedeck_trace::analyze::cluster::group;
use tapedeck_trace::analyze::Finding;
use tapedeck_trace::diff::{divergence, report, Relation};
use tapedeck_trace::spans::{AttrValue, Parsed, Role, Span, Trace};

/// Bodies up to this size are read whole (and an LLM exchange parsed); larger ones only
/// as far as the preview goes.
const WHOLE_BODY: u64 = 8 << 20;
/// The most of a body the step panel is sent.
const PREVIEW: usize = 1 << 20;
/// Stream chunks listed per response, and the text shown per chunk.
const CHUNKS: usize = 2000;
const CHUNK_TEXT: usize = 2048;

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn step_arg(session: &str, s: &str) -> Result<u64, ViewerError> {
    s.parse()
        .map_err(|_| ViewerError::NotFound(format!("step {s:?} of session {session}")))
}

/// Answers `api/{path}` (everything but the live stream).
pub async fn answer(v: &Viewer, path: &str) -> Result<Bytes, ViewerError> {
    let parts = segments(path);
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["info"] => Ok(to_bytes(&json!({
            "mode": v.mode,
            "source": v.label,
            "live": v.mode == "record",
            "version": env!("CARGO_PKG_VERSION"),
        }))),
        ["sessions"] => sessions(v).await,
        ["sessions", name, "run"] => Ok(v.sessions.get(name).await?.run_json.clone()),
        ["sessions", name, "steps", step] => {
            let step = step_arg(name, step)?;
            let l = v.sessions.get(name).await?;
            blocking(*name, move || step_json(&l, step)).await?
        }
        ["diff", a, b] => diff(v, a, b).await,
        ["diff", a, b, "rows", i] => {
            let d = v.sessions.aligned(a, b).await?;
            let i: usize = i
                .parse()
                .map_err(|_| ViewerError::NotFound(format!("diff row {i}")))?;
            let Some(pair) = d.pairs.get(i).cloned() else {
                return Err(ViewerError::NotFound(format!("diff row {i}")));
            };
            let dv = blocking(format!("{a} vs {b}"), move || {
                divergence(&d.a.rec, &d.b.rec, &pair)
            })
            .await?;
            Ok(to_bytes(&json!({"row": i, "divergence": dv})))
        }
        _ => Err(ViewerError::NotFound(format!("api/{path}"))),
    }
}

/// The alignment of two runs, row by row, with `tapedeck diff`'s report.
async fn diff(v: &Viewer, a: &str, b: &str) -> Result<Bytes, ViewerError> {
    let d = v.sessions.aligned(a, b).await?;
    let (na, nb) = (exchange_names(&d.a.trace), exchange_names(&d.b.trace));
    let rows: Vec<Value> = d
        .pairs
        .iter()
        .map(|p| {
            json!({
                "kind": p.kind,
                "relation": p.relation,
                "a": side(&d.a.rec, &na, p.step_a),
                "b": side(&d.b.rec, &nb, p.step_b),
            })
        })
        .collect();
    let first = d.pairs.iter().position(|p| p.relation != Relation::Same);
    let d2 = d.clone();
    let rep = blocking(format!("{a} vs {b}"), move || {
        report(&d2.a.rec, &d2.b.rec, &d2.pairs)
    })
    .await?;
    Ok(to_bytes(&json!({
        "session_a": rep.session_a,
        "session_b": rep.session_b,
        "first": first,
        "first_divergence": rep.first_divergence,
        "summary": rep.summary,
        "rows": rows,
    })))
}

async fn sessions(v: &Viewer) -> Result<Bytes, ViewerError> {
    let list = v.sessions.list().await?;
    let mut missing = Vec::new();
    let mut rows = Vec::new();
    let mut signed = Vec::new();
    for info in &list {
        let summary = v.sessions.summary(info);
        match &summary {
            Some(s) => signed.push((info.name.clone(), s.signature.clone())),
            None => missing.push(info.name.clone()),
        }
        rows.push(json!({
            "name": info.name,
            "events": info.events,
            "first_unix_ns": info.first_unix_ns,
            "last_unix_ns": info.last_unix_ns,
            "bytes": info.bytes,
            "summary": summary,
        }));
    }
    let pending = missing.len();
    v.sessions.summarise_missing(missing);
    let clusters = (pending == 0).then(|| {
        group(signed)
            .into_iter()
            .map(|c| {
                json!({
                    "signature": c.signature,
                    "count": c.sessions.len(),
                    "representative": c.representative(),
                    "sessions": c.sessions,
                })
            })
            .collect::<Vec<_>>()
    });
    Ok(to_bytes(&json!({
        "sessions": rows,
        "pending": pending,
        "clusters": clusters,
    })))
}

/// Whether a span is an exchange's own (not the agent, nor a tool call an LLM decided,
/// which carries the deciding call's step).
pub fn is_exchange(sp: &Span) -> bool {
    let decided = matches!(sp.attr("gen_ai.tool.type"), Some(AttrValue::Str(t)) if t == "function");
    sp.step.is_some() && !decided
}

fn exchange_names(trace: &Trace) -> HashMap<u64, &str> {
    trace
        .spans
        .iter()
        .filter(|s| is_exchange(s))
        .filter_map(|s| Some((s.step?, s.name.as_str())))
        .collect()
}

fn side(rec: &Recording, names: &HashMap<u64, &str>, step: Option<u64>) -> Value {
    let Some(step) = step else { return Value::Null };
    let ev = rec.events.iter().find(|e| e.step == step);
    json!({
        "step": step,
        "name": names.get(&step).copied().unwrap_or("-"),
        "status": ev.and_then(|e| e.status()),
        "error": ev.and_then(|e| e.error.as_ref()).map(|e| e.kind.as_str()),
    })
}

fn us(ns: u64, t0: u64) -> u64 {
    ns.saturating_sub(t0) / 1000
}

/// One row of the run page: a span in tree order, times in microseconds from the run's
/// start; fields without a value are left out.
#[derive(Serialize)]
struct SpanRow<'a> {
    id: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<usize>,
    depth: usize,
    name: &'a str,
    role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<u64>,
    /// Whether the span is its step's own exchange (not the agent, nor a tool call).
    exchange: bool,
    start: u64,
    end: u64,
    children: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flag: Option<&'static str>,
    /// Time to the first streamed chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    ttft: Option<u64>,
    #[serde(rename = "in", skip_serializing_if = "Option::is_none")]
    input_tokens: Option<i64>,
    #[serde(rename = "out", skip_serializing_if = "Option::is_none")]
    output_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<Kind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_id: Option<&'a str>,
}

/// The run page's payload (built once per version of a session).
pub fn run_json(
    rec: &Recording,
    trace: &Trace,
    findings: &[Finding],
    inputs: &BTreeMap<u64, Vec<u64>>,
) -> Bytes {
    let t0 = trace.spans.first().map_or(0, |s| s.start_ns);
    let events: HashMap<u64, &Event> = rec.events.iter().map(|e| (e.step, e)).collect();
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(trace.spans.len());
    let mut stack: Vec<(usize, usize)> = if trace.spans.is_empty() {
        Vec::new()
    } else {
        vec![(0, 0)]
    };
    while let Some((i, depth)) = stack.pop() {
        order.push((i, depth));
        for &c in trace.spans[i].children.iter().rev() {
            stack.push((c, depth + 1));
        }
    }
    let spans: Vec<SpanRow> = order
        .iter()
        .map(|&(i, depth)| {
            let sp = &trace.spans[i];
            let own = is_exchange(sp);
            let ev = sp.step.filter(|_| own).and_then(|s| events.get(&s));
            let text = |key: &str| match sp.attr(key) {
                Some(AttrValue::Str(t)) => Some(t.as_str()),
                _ => None,
            };
            SpanRow {
                id: i,
                parent: sp.parent,
                depth,
                name: &sp.name,
                role: sp.role.as_str(),
                step: sp.step,
                exchange: own,
                start: us(sp.start_ns, t0),
                end: us(sp.end_ns, t0),
                children: sp.children.len(),
                error: sp.error.as_deref(),
                error_type: text("error.type"),
                flag: sp.flag,
                ttft: match sp.attr("gen_ai.response.time_to_first_chunk") {
                    Some(AttrValue::Double(secs)) => Some((secs * 1e6) as u64),
                    _ => None,
                },
                input_tokens: sp.int("gen_ai.usage.input_tokens"),
                output_tokens: sp.int("gen_ai.usage.output_tokens"),
                kind: ev.map(|e| e.kind),
                status: ev.and_then(|e| e.status()),
                call_id: (sp.role == Role::Tool && !own)
                    .then(|| text("gen_ai.tool.call.id"))
                    .flatten(),
            }
        })
        .collect();
    let mut agents: Vec<&str> = rec
        .events
        .iter()
        .filter_map(|e| e.agent.as_deref())
        .collect();
    agents.sort();
    agents.dedup();
    // Serialised straight from borrowed data: a 10,000-step run is 15,000 rows.
    #[derive(Serialize)]
    struct Run<'a> {
        session: &'a str,
        source: &'a str,
        t0_unix_ns: u64,
        events: usize,
        agents: Vec<&'a str>,
        totals: tapedeck_trace::spans::Totals,
        spans: Vec<SpanRow<'a>>,
        findings: &'a [Finding],
        /// Step → the earlier steps whose output flowed into it.
        inputs: &'a BTreeMap<u64, Vec<u64>>,
    }
    let run = Run {
        session: &rec.session,
        source: &rec.source,
        t0_unix_ns: t0,
        events: rec.events.len(),
        agents,
        totals: trace.totals(),
        spans,
        findings,
        inputs,
    };
    Bytes::from(serde_json::to_vec(&run).unwrap_or_default())
}

/// A body for the step panel: its text (capped), or a hex preview when it is binary,
/// and the whole bytes when they were read (for parsing an LLM exchange).
/// Headers as the step panel shows them: a value kept as bytes read as Latin-1 (see
/// [`tapedeck_model::exchange::header_shown`]).
fn shown(headers: &[(String, String)]) -> Vec<(&str, std::borrow::Cow<'_, str>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), tapedeck_model::exchange::header_shown(v)))
        .collect()
}

fn body(rec: &Recording, r: &BodyRef, headers: &[(String, String)]) -> (Value, Option<Bytes>) {
    let (data, whole) = if r.len <= WHOLE_BODY {
        match rec.body(r) {
            Ok(b) => (b.clone(), Some(b)),
            Err(e) => {
                return (
                    json!({"len": r.len, "b3": r.b3, "missing": e.to_string()}),
                    None,
                )
            }
        }
    } else {
        let mut head = Vec::new();
        for part in rec.body_parts(r).unwrap_or_default() {
            match rec.body_part(&part) {
                Ok(b) => head.extend_from_slice(&b),
                Err(_) => break,
            }
            if head.len() >= PREVIEW {
                break;
            }
        }
        (Bytes::from(head), None)
    };
    let cut = data.len().min(PREVIEW);
    let truncated = (r.len as usize) > cut;
    let (text, binary) = match std::str::from_utf8(&data[..cut]) {
        Ok(t) => (t.to_string(), false),
        // A cut inside a character: keep the whole characters before it.
        Err(e) if e.error_len().is_none() => (
            String::from_utf8_lossy(&data[..e.valid_up_to()]).into_owned(),
            false,
        ),
        Err(_) => (hex_preview(&data[..cut.min(4096)]), true),
    };
    (
        json!({
            "len": r.len,
            "b3": r.b3,
            "encoding": r.encoding,
            "content_type": header(headers, "content-type"),
            "text": text,
            "binary": binary,
            "truncated": truncated,
        }),
        whole,
    )
}

fn hex_preview(data: &[u8]) -> String {
    data.chunks(16)
        .enumerate()
        .map(|(i, row)| {
            let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:08x}  {}", i * 16, hex.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The step panel's payload: one exchange with its bodies, the LLM call read from it,
/// its findings and its walk-back links.
fn step_json(l: &Arc<Loaded>, step: u64) -> Result<Bytes, ViewerError> {
    let rec = &l.rec;
    let index = rec
        .events
        .iter()
        .position(|e| e.step == step)
        .ok_or_else(|| ViewerError::NoStep {
            session: rec.session.clone(),
            step,
        })?;
    let ev = &rec.events[index];
    let t0 = l.t0();
    let (req_body, req_whole) = body(rec, &ev.request.body, &ev.request.headers);
    let response = ev
        .response
        .as_ref()
        .map(|r| (r, body(rec, &r.body, &r.headers)));
    let llm = match (&req_whole, response.as_ref().map(|(_, (_, w))| w)) {
        (Some(q), Some(Some(a))) => Parsed::new(ev, q.to_vec(), a.to_vec()).llm,
        (Some(q), None) => Parsed::new(ev, q.to_vec(), Vec::new()).llm,
        _ => None,
    };
    let response = response.map(|(r, (b, whole))| {
        let chunks = r.chunks.as_ref().map(|cs| {
            let mut offset = 0u64;
            cs.iter()
                .take(CHUNKS)
                .map(|c| {
                    let text = whole.as_ref().map(|w| {
                        let a = (offset as usize).min(w.len());
                        let z = ((offset + c.len) as usize).min(w.len()).min(a + CHUNK_TEXT);
                        String::from_utf8_lossy(&w[a..z]).into_owned()
                    });
                    let o = json!({"at_ms": c.at_ms, "offset": offset, "len": c.len, "text": text});
                    offset += c.len;
                    o
                })
                .collect::<Vec<_>>()
        });
        json!({
            "status": r.status,
            "version": r.version,
            "headers": shown(&r.headers),
            "body": b,
            "complete": r.complete,
            "chunks": chunks,
            "chunks_total": r.chunks.as_ref().map(Vec::len),
        })
    });
    let findings: Vec<&Finding> = l
        .findings
        .iter()
        .filter(|f| f.steps.contains(&step))
        .collect();
    let used_by: Vec<u64> = l
        .inputs
        .iter()
        .filter(|(_, from)| from.contains(&step))
        .map(|(to, _)| *to)
        .collect();
    let v = json!({
        "session": rec.session,
        "step": step,
        "kind": ev.kind,
        "agent": ev.agent,
        "key": ev.key,
        "timing": {
            "start": us(ev.timing.start_unix_ns, t0),
            "end": us(ev.timing.end_unix_ns, t0),
            "ttfb": ev.timing.ttfb_ns.map(|n| n / 1000),
            "start_unix_ns": ev.timing.start_unix_ns,
        },
        "request": {
            "method": ev.request.method,
            "url": ev.request.url,
            "version": ev.request.version,
            "headers": shown(&ev.request.headers),
            "body": req_body,
        },
        "response": response,
        "error": ev.error,
        "llm": llm,
        "findings": findings,
        "inputs": l.inputs.get(&step).cloned().unwrap_or_default(),
        "walk_back": links::explain(rec, &l.graph, index),
        "used_by": used_by,
    });
    Ok(to_bytes(&v))
}
