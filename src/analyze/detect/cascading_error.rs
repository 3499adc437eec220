//! `cascading_error`: one agent's bad value made another agent fail.
//!
//! An exchange failed, and its request carried a value first produced by another agent:
//! the finding starts at the exchange where the value entered, so the blame lands on the
//! agent that made it, not the one that tripped over it.

use std::collections::HashSet;

use super::View;
use crate::analyze::read::{output_of, request_values, short, status_of, tool_error, what};
use crate::analyze::{Finding, Severity};
use crate::exchange::Kind;

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
    let agents: HashSet<&str> = parsed
        .iter()
        .filter_map(|p| p.event.agent.as_deref())
        .collect();
    if agents.len() < 2 {
        return;
    }
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
}
