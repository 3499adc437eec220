//! `diff`: where two runs of the same agent part ways.
//!
//! Steps are aligned per kind by key (an LCS, so an inserted or missing call shifts
//! nothing after it); the first divergent step is reported with a structural JSON diff
//! of the request bodies, path by path, and of the responses; then a summary of the rest.

use serde::Serialize;
use serde_json::{json, Value};
use similar::{capture_diff_slices, Algorithm, DiffOp};

use tapedeck_model::exchange::canonical::{identify, KeyBody};
use tapedeck_model::exchange::jsondiff::{self, Change};
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::Rules;
use tapedeck_store::recording::Recording;

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

/// How an aligned pair of steps relates.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The same request and the same response.
    Same,
    /// The same request, a different response.
    ResponseChanged,
    /// Both runs made a call here, with different requests.
    RequestChanged,
    /// Only A made this call.
    OnlyA,
    /// Only B made this call.
    OnlyB,
}

/// One row of the alignment: a step of A, of B, or of both.
#[derive(Serialize, Debug, Clone)]
pub struct Pair {
    pub kind: Kind,
    pub step_a: Option<u64>,
    pub step_b: Option<u64>,
    pub relation: Relation,
    /// Where the pair falls on A's timeline (B's extra calls sit between A's steps).
    pub position: f64,
}

/// Aligns the steps of two runs, per kind by key (an LCS, so an inserted or missing
/// call shifts nothing after it), in A's timeline order; ties keep B's order.
pub fn align(a: &Recording, b: &Recording, rules: &Rules) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = Vec::new();
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
        let mut push = |x: Option<&Event>, y: Option<&Event>, same_key: bool, position: f64| {
            let relation = match (x, y) {
                (Some(x), Some(y)) if same_key => {
                    if response_diff(a, x, b, y).is_empty() {
                        Relation::Same
                    } else {
                        Relation::ResponseChanged
                    }
                }
                (Some(_), Some(_)) => Relation::RequestChanged,
                (Some(_), None) => Relation::OnlyA,
                (None, Some(_)) => Relation::OnlyB,
                (None, None) => return,
            };
            pairs.push(Pair {
                kind,
                step_a: x.map(|e| e.step),
                step_b: y.map(|e| e.step),
                relation,
                position,
            });
        };
        for op in capture_diff_slices(Algorithm::Patience, &ka, &kb) {
            match op {
                DiffOp::Equal {
                    old_index,
                    new_index,
                    len,
                } => {
                    for k in 0..len {
                        let x = ea[old_index + k];
                        push(Some(x), Some(eb[new_index + k]), true, x.step as f64);
                    }
                }
                DiffOp::Delete {
                    old_index, old_len, ..
                } => {
                    for x in &ea[old_index..old_index + old_len] {
                        push(Some(*x), None, false, x.step as f64);
                    }
                }
                DiffOp::Insert {
                    old_index,
                    new_index,
                    new_len,
                } => {
                    for y in &eb[new_index..new_index + new_len] {
                        push(None, Some(*y), false, pos_a(old_index) - 0.25);
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
                        push(x, y, false, pos);
                    }
                }
            }
        }
    }
    // Stable, so pairs at one position keep their kind order, as `diff` reports them.
    pairs.sort_by(|x, y| {
        x.position
            .total_cmp(&y.position)
            .then(x.step_b.cmp(&y.step_b))
    });
    pairs
}

fn event_at(rec: &Recording, step: Option<u64>) -> Option<&Event> {
    let step = step?;
    rec.events.iter().find(|e| e.step == step)
}

/// The divergence one aligned pair shows; `None` for a pair that is the same.
pub fn divergence(a: &Recording, b: &Recording, p: &Pair) -> Option<Divergence> {
    let x = event_at(a, p.step_a);
    let y = event_at(b, p.step_b);
    let (reason, request_diff, response_diff) = match (p.relation, x, y) {
        (Relation::Same, _, _) => return None,
        (Relation::ResponseChanged, Some(x), Some(y)) => (
            "same request, different response".to_string(),
            Vec::new(),
            response_diff(a, x, b, y),
        ),
        (Relation::RequestChanged, Some(x), Some(y)) => (
            "the request differs".to_string(),
            request_diff(a, x, b, y),
            response_diff(a, x, b, y),
        ),
        (Relation::OnlyA, Some(x), _) => (
            format!(
                "B never made this call: {} {}",
                x.request.method, x.request.url
            ),
            Vec::new(),
            Vec::new(),
        ),
        (Relation::OnlyB, _, Some(y)) => (
            format!(
                "B made an extra call: {} {}",
                y.request.method, y.request.url
            ),
            Vec::new(),
            Vec::new(),
        ),
        _ => return None,
    };
    Some(Divergence {
        step_a: p.step_a,
        step_b: p.step_b,
        kind: p.kind,
        reason,
        request_diff,
        response_diff,
    })
}

/// Compares run B against run A.
pub fn diff(a: &Recording, b: &Recording, rules: &Rules) -> DiffReport {
    report(a, b, &align(a, b, rules))
}

/// The report of an alignment made by [`align`].
pub fn report(a: &Recording, b: &Recording, pairs: &[Pair]) -> DiffReport {
    let mut summary = Summary::default();
    for p in pairs {
        match p.relation {
            Relation::Same => summary.aligned += 1,
            Relation::ResponseChanged => {
                summary.aligned += 1;
                summary.response_changed += 1;
            }
            Relation::RequestChanged => summary.request_changed += 1,
            Relation::OnlyA => summary.only_in_a.extend(p.step_a),
            Relation::OnlyB => summary.only_in_b.extend(p.step_b),
        }
    }
    summary.only_in_a.sort();
    summary.only_in_b.sort();
    let first = pairs
        .iter()
        .find(|p| p.relation != Relation::Same)
        .and_then(|p| divergence(a, b, p));
    DiffReport {
        session_a: a.session.clone(),
        session_b: b.session.clone(),
        first_divergence: first,
        summary,
    }
}
