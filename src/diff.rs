//! `diff`: where two runs of the same agent part ways.
//!
//! Steps are aligned per kind by key (an LCS, so an inserted or missing call shifts
//! nothing after it); the first divergent step is reported with a structural JSON diff
//! of the request bodies, path by path, and of the responses; then a summary of the rest.

use serde::Serialize;
use serde_json::{json, Value};
use similar::{capture_diff_slices, Algorithm, DiffOp};

use crate::exchange::canonical::{identify, KeyBody};
use crate::exchange::jsondiff::{self, Change};
use crate::exchange::{Event, Kind};
use crate::recording::Recording;
use crate::rules::Rules;

#[derive(Serialize, Debug, Clone)]
pub struct Divergence {
    pub step_a: Option<u64>,
    pub step_b: Option<u64>,
    pub kind: Kind,
    pub reason: String,
    pub request_diff: Vec<Change>,
    pub response_diff: Vec<Change>,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Summary {
    /// Pairs with the same request.
    pub aligned: usize,
    /// ... of which the response differs.
    pub response_changed: usize,
    /// Pairs whose requests differ.
    pub request_changed: usize,
    pub only_in_a: Vec<u64>,
    pub only_in_b: Vec<u64>,
}

#[derive(Serialize, Debug, Clone)]
pub struct DiffReport {
    pub session_a: String,
    pub session_b: String,
    pub first_divergence: Option<Divergence>,
    pub summary: Summary,
}

fn key_of(rec: &Recording, ev: &Event, rules: &Rules) -> String {
    rec.identify(ev, rules).map(|(_, k)| k).unwrap_or_else(|_| {
        // A body that cannot be read keys as an empty one.
        let r = &ev.request;
        identify(&r.method, &r.url, &r.headers, KeyBody::Whole(b""), rules).1
    })
}

fn request_diff(a: &Recording, ea: &Event, b: &Recording, eb: &Event) -> Vec<Change> {
    let mut out = Vec::new();
    if ea.request.method != eb.request.method {
        out.push(Change {
            path: "method".into(),
            op: "changed",
            a: Some(json!(ea.request.method)),
            b: Some(json!(eb.request.method)),
        });
    }
    if ea.request.url != eb.request.url {
        out.push(Change {
            path: "url".into(),
            op: "changed",
            a: Some(json!(ea.request.url)),
            b: Some(json!(eb.request.url)),
        });
    }
    let ba = jsondiff::body_value(&a.body(&ea.request.body).unwrap_or_default());
    let bb = jsondiff::body_value(&b.body(&eb.request.body).unwrap_or_default());
    out.extend(jsondiff::diff(&ba, &bb));
    out
}

fn response_diff(a: &Recording, ea: &Event, b: &Recording, eb: &Event) -> Vec<Change> {
    let mut out = Vec::new();
    if ea.status() != eb.status() {
        out.push(Change {
            path: "status".into(),
            op: "changed",
            a: Some(json!(ea.status())),
            b: Some(json!(eb.status())),
        });
    }
    let ka = ea.error.as_ref().map(|e| e.kind.as_str());
    let kb = eb.error.as_ref().map(|e| e.kind.as_str());
    if ka != kb {
        out.push(Change {
            path: "error".into(),
            op: "changed",
            a: Some(json!(ka)),
            b: Some(json!(kb)),
        });
    }
    let body = |r: &Recording, e: &Event| {
        e.response
            .as_ref()
            .map(|x| jsondiff::body_value(&r.body(&x.body).unwrap_or_default()))
            .unwrap_or(Value::Null)
    };
    out.extend(jsondiff::diff(&body(a, ea), &body(b, eb)));
    out
}

/// Compares run B against run A.
pub fn diff(a: &Recording, b: &Recording, rules: &Rules) -> DiffReport {
    let mut summary = Summary::default();
    // (position in A's timeline, divergence)
    let mut candidates: Vec<(f64, Divergence)> = Vec::new();
    for kind in [Kind::Llm, Kind::Tool, Kind::Other] {
        let ea: Vec<&Event> = a.events.iter().filter(|e| e.kind == kind).collect();
        let eb: Vec<&Event> = b.events.iter().filter(|e| e.kind == kind).collect();
        let ka: Vec<String> = ea.iter().map(|e| key_of(a, e, rules)).collect();
        let kb: Vec<String> = eb.iter().map(|e| key_of(b, e, rules)).collect();
        let pos_a = |i: usize| -> f64 {
            match ea.get(i) {
                Some(e) => e.step as f64,
                None => ea.last().map_or(0.0, |e| e.step as f64) + 0.5,
            }
        };
        // Each op becomes pairs: both sides (same or changed request), or one side only,
        // with where it falls on A's timeline.
        let mut pairs: Vec<(Option<&Event>, Option<&Event>, bool, f64)> = Vec::new();
        for op in capture_diff_slices(Algorithm::Patience, &ka, &kb) {
            match op {
                DiffOp::Equal {
                    old_index,
                    new_index,
                    len,
                } => {
                    for k in 0..len {
                        let x = ea[old_index + k];
                        pairs.push((Some(x), Some(eb[new_index + k]), true, x.step as f64));
                    }
                }
                DiffOp::Delete {
                    old_index, old_len, ..
                } => {
                    for x in &ea[old_index..old_index + old_len] {
                        pairs.push((Some(*x), None, false, x.step as f64));
                    }
                }
                DiffOp::Insert {
                    old_index,
                    new_index,
                    new_len,
                } => {
                    for y in &eb[new_index..new_index + new_len] {
                        pairs.push((None, Some(*y), false, pos_a(old_index) - 0.25));
                    }
                }
                DiffOp::Replace {
                    old_index,
                    old_len,
                    new_index,
                    new_len,
                } => {
                    for k in 0..old_len.max(new_len) {
                        let x = (k < old_len).then(|| ea[old_index + k]);
                        let y = (k < new_len).then(|| eb[new_index + k]);
                        let pos = x.map_or(pos_a(old_index + old_len) - 0.25, |x| x.step as f64);
                        pairs.push((x, y, false, pos));
                    }
                }
            }
        }
        for (x, y, same, pos) in pairs {
            let d = match (x, y) {
                (Some(x), Some(y)) if same => {
                    summary.aligned += 1;
                    let rd = response_diff(a, x, b, y);
                    if rd.is_empty() {
                        continue;
                    }
                    summary.response_changed += 1;
                    Divergence {
                        step_a: Some(x.step),
                        step_b: Some(y.step),
                        kind,
                        reason: "same request, different response".into(),
                        request_diff: Vec::new(),
                        response_diff: rd,
                    }
                }
                (Some(x), Some(y)) => {
                    summary.request_changed += 1;
                    Divergence {
                        step_a: Some(x.step),
                        step_b: Some(y.step),
                        kind,
                        reason: "the request differs".into(),
                        request_diff: request_diff(a, x, b, y),
                        response_diff: response_diff(a, x, b, y),
                    }
                }
                (Some(x), None) => {
                    summary.only_in_a.push(x.step);
                    Divergence {
                        step_a: Some(x.step),
                        step_b: None,
                        kind,
                        reason: format!(
                            "B never made this call: {} {}",
                            x.request.method, x.request.url
                        ),
                        request_diff: Vec::new(),
                        response_diff: Vec::new(),
                    }
                }
                (None, Some(y)) => {
                    summary.only_in_b.push(y.step);
                    Divergence {
                        step_a: None,
                        step_b: Some(y.step),
                        kind,
                        reason: format!(
                            "B made an extra call: {} {}",
                            y.request.method, y.request.url
                        ),
                        request_diff: Vec::new(),
                        response_diff: Vec::new(),
                    }
                }
                (None, None) => continue,
            };
            candidates.push((pos, d));
        }
    }
    summary.only_in_a.sort();
    summary.only_in_b.sort();
    let first = candidates
        .into_iter()
        .min_by(|x, y| x.0.total_cmp(&y.0).then(x.1.step_b.cmp(&y.1.step_b)))
        .map(|(_, d)| d);
    DiffReport {
        session_a: a.session.clone(),
        session_b: b.session.clone(),
        first_divergence: first,
        summary,
    }
}
