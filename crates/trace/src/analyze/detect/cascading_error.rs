//! `cascading_error`: a bad value crossed from one agent to another.
//!
//! Two shapes, both traced to the exchange where the bad value entered, so the blame
//! lands on the agent that made it, not the one that tripped over it:
//!
//! - downstream failure: an exchange failed, and its request carried a value first
//!   produced by another agent (steps: where the value entered, the failure);
//! - hand-off of an error: a tool answered with an error (or a soft error in a 2xx body),
//!   a value of that answer flowed (see [`crate::analyze::flow`]) into a later agent's
//!   LLM input, and that agent built on it (steps: the tool's answer, the hand-off step
//!   whose output crossed, the other agent's final output on it).

use std::collections::{HashMap, HashSet, VecDeque};

use super::View;
use crate::analyze::flow::{self, Flow};
use crate::analyze::read::{output_of, request_values, short, status_of, tool_error, what};
use crate::analyze::{Finding, Severity};
use tapedeck_model::exchange::Kind;

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let agents: HashSet<&str> = v
        .parsed
        .iter()
        .filter_map(|p| p.event.agent.as_deref())
        .collect();
    if agents.len() < 2 {
        return;
    }
    downstream_failures(v, out);
    handed_on_errors(v, out);
}

/// Failures whose request carried another agent's value.
fn downstream_failures(v: &View, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
    let mut reported: HashSet<(u64, u64)> = HashSet::new();
    for (fi, f) in parsed.iter().enumerate() {
        let failed = if f.event.kind == Kind::Llm {
            f.llm
                .as_ref()
                .and_then(|c| c.error_type.clone())
                .or_else(|| {
                    f.event
                        .status()
                        .filter(|s| *s >= 400)
                        .map(|s| format!("HTTP {s}"))
                })
        } else {
            tool_error(f).map(|e| e.why)
        };
        let Some(why) = failed else { continue };
        let Some(f_agent) = f.event.agent.as_deref() else {
            continue;
        };
        // The earliest output of another agent that carried a value this request used.
        let mut best: Option<(usize, String)> = None;
        for v in request_values(f) {
            let origin = parsed[..fi].iter().enumerate().find(|(_, e)| {
                e.event.agent.as_deref().is_some_and(|a| a != f_agent) && output_of(e).contains(&v)
            });
            if let Some((oi, _)) = origin {
                if best.as_ref().is_none_or(|(b, _)| oi < *b) {
                    best = Some((oi, v));
                }
            }
        }
        let Some((oi, value)) = best else { continue };
        let o = &parsed[oi];
        if !reported.insert((o.event.step, f.event.step)) {
            continue;
        }
        let o_agent = o.event.agent.clone().unwrap_or_default();
        out.push(Finding {
            detector: "cascading_error",
            severity: Severity::Error,
            steps: vec![o.event.step, f.event.step],
            summary: format!(
                "agent {o_agent} produced {value:?} at step {}, which agent {f_agent} used at step {} and failed ({why})",
                o.event.step, f.event.step
            ),
            evidence: vec![
                format!("step {}: {o_agent}'s output contains {value:?}: {:?}", o.event.step, short(&output_of(o), 100)),
                format!(
                    "step {}: {f_agent} sent it to {} → {}",
                    f.event.step,
                    if f.event.kind == Kind::Llm { what(f.event) } else { v.tool(f.event) },
                    status_of(f.event)
                ),
            ],
        });
    }
}

/// Where each exchange's output flowed, as next-hop lists.
fn forward(n: usize, flows: &[Flow]) -> Vec<Vec<&Flow>> {
    let mut next: Vec<Vec<&Flow>> = vec![Vec::new(); n];
    for f in flows {
        next[f.from].push(f);
    }
    next
}

/// Everything reachable from `start` along flows, with the flow that first reached it.
fn reach<'a>(start: usize, next: &[Vec<&'a Flow>]) -> HashMap<usize, &'a Flow> {
    let mut came: HashMap<usize, &Flow> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(i) = queue.pop_front() {
        for f in &next[i] {
            if f.to != start && !came.contains_key(&f.to) {
                came.insert(f.to, f);
                queue.push_back(f.to);
            }
        }
    }
    came
}

/// Tool errors whose value flowed into another agent's LLM input.
fn handed_on_errors(v: &View, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
    let next = forward(parsed.len(), &v.flows);
    for (ti, t) in parsed.iter().enumerate() {
        if t.event.kind == Kind::Llm {
            continue;
        }
        let (Some(err), Some(a)) = (tool_error(t), t.event.agent.as_deref()) else {
            continue;
        };
        let body = String::from_utf8_lossy(&t.tool_answer()).into_owned();
        let values: Vec<&str> = flow::tokens(&body).collect();
        let came = reach(ti, &next);
        // The first LLM call of another agent, downstream, whose input holds the value.
        let mut downstream: Vec<usize> = came.keys().copied().collect();
        downstream.sort_unstable();
        let Some((ri, value)) = downstream.iter().find_map(|&k| {
            let r = &parsed[k];
            let other = r.event.agent.as_deref().is_some_and(|b| b != a);
            if r.event.kind != Kind::Llm || !other {
                return None;
            }
            let input = String::from_utf8_lossy(&r.request_body);
            values
                .iter()
                .find(|v| input.contains(**v))
                .map(|v| (k, v.to_string()))
        }) else {
            continue;
        };
        let r = &parsed[ri];
        let b = r.event.agent.clone().unwrap_or_default();
        // The hand-off: the latest exchange upstream of it whose output holds the value
        // and flowed straight into it.
        let into = v
            .flows
            .iter()
            .filter(|f| f.to == ri && (f.from == ti || came.contains_key(&f.from)))
            .filter(|f| output_of(&parsed[f.from]).contains(&value))
            .max_by_key(|f| f.from);
        let hi = into.map_or(ti, |f| f.from);
        let h = &parsed[hi];
        let fi = reach(ri, &next)
            .keys()
            .copied()
            .filter(|&k| parsed[k].event.agent.as_deref() == Some(b.as_str()))
            .max()
            .unwrap_or(ri);
        let f = &parsed[fi];
        let mut steps = vec![t.event.step, h.event.step, f.event.step];
        steps.dedup();
        let name = v.tool(t.event);
        out.push(Finding {
            detector: "cascading_error",
            severity: if err.warning { Severity::Warning } else { Severity::Error },
            steps,
            summary: format!(
                "the {name} tool answered {} (step {}); its value {value:?} crossed from agent {a} to agent {b} at step {}, and {b}'s output at step {} rests on it",
                err.why, t.event.step, h.event.step, f.event.step
            ),
            evidence: vec![
                format!("step {}: {} → {}: {}", t.event.step, what(t.event), status_of(t.event), short(&body, 100)),
                format!(
                    "step {}: {}'s output carries {value:?}: {:?}",
                    h.event.step,
                    h.event.agent.as_deref().unwrap_or(a),
                    short(&output_of(h), 100)
                ),
                format!(
                    "step {}: {b}'s LLM input {}",
                    r.event.step,
                    into.map_or("holds it".to_string(), |f| f.via.describe(h.event.step))
                ),
                format!("step {}: {b}'s final output: {:?}", f.event.step, short(&output_of(f), 100)),
            ],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::detect;
    use crate::analyze::detect::testing::*;

    #[test]
    fn a_failure_on_another_agents_value_starts_where_the_value_entered() {
        let e1 = llm_event(1, Some("planner"), 0, 5);
        let e2 = tool_event(
            2,
            Some("writer"),
            "https://w.test/weather?city=Pariss",
            404,
            6,
            7,
        );
        let p = vec![
            parsed(
                &e1,
                Some(llm_call(10, vec![], "Destination: Pariss")),
                "{}",
                "{}",
            ),
            parsed(&e2, None, "", r#"{"error":"unknown city"}"#),
        ];
        let out = run(&p, detect);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].steps, vec![1, 2]);
        assert!(out[0].summary.contains("planner") && out[0].summary.contains("Pariss"));
        // One agent alone hands nothing over.
        let solo1 = llm_event(1, None, 0, 5);
        let solo2 = tool_event(2, None, "https://w.test/weather?city=Pariss", 404, 6, 7);
        let p = vec![
            parsed(
                &solo1,
                Some(llm_call(10, vec![], "Destination: Pariss")),
                "{}",
                "{}",
            ),
            parsed(&solo2, None, "", r#"{"error":"unknown city"}"#),
        ];
        assert!(run(&p, detect).is_empty());
    }

    #[test]
    fn a_soft_error_handed_from_a_researcher_to_a_writer_names_origin_hand_off_and_output() {
        let price =
            r#"{"price":1.299,"raw_price":"1.299,00","parse_error":"ambiguous decimal separator"}"#;
        let writer = PriceHandOff::writer_quoting("Write a one-line ad from these notes: ");
        let run_ = PriceHandOff::new(price, &writer, "Buy it now for just EUR 1.30");
        let out = run(&run_.parsed(), detect);
        assert_eq!(out.len(), 1, "{out:#?}");
        let f = &out[0];
        assert_eq!(f.steps, vec![2, 3, 4]);
        assert!(
            f.summary.contains("get_price") && f.summary.contains("\"1.299\""),
            "{}",
            f.summary
        );
        assert!(
            f.summary.contains("from agent researcher to agent writer"),
            "{}",
            f.summary
        );
        assert!(f.evidence[3].contains("just EUR 1.30"), "{:#?}", f.evidence);
        // The same error that never reaches the writer is no cascade.
        let unread = PriceHandOff::new(
            price,
            r#"{"messages":[{"role":"user","content":"Write an ad"}]}"#,
            "Buy it now!",
        );
        assert!(run(&unread.parsed(), detect).is_empty());
    }
}
