//! `empty_tool_result`: a tool answered nothing (`[]`, `{}`, `null`, no body) and the LLM
//! took that as data.
//!
//! Reported at the tool's own exchange when it was an HTTP call, else at the LLM call
//! that got the empty result of a local tool.

use std::collections::HashSet;

use super::View;
use crate::analyze::read::{is_empty_text, next_llm, short, status_of, what};
use crate::analyze::{Finding, Severity};
use tapedeck_model::exchange::Kind;

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
    let mut covered: HashSet<String> = HashSet::new();
    for (i, t) in parsed.iter().enumerate() {
        if !t.is_tool() || !t.is_empty_answer() {
            continue;
        }
        let Some((_, l)) = next_llm(parsed, i) else {
            continue;
        };
        let Some(call) = &l.llm else { continue };
        let Some(r) = call.tool_results.iter().find(|r| is_empty_text(&r.content)) else {
            continue;
        };
        if let Some(id) = &r.id {
            covered.insert(id.clone());
        }
        let name = v.tool(t.event);
        let body = String::from_utf8_lossy(&t.tool_answer()).into_owned();
        out.push(Finding {
            detector: "empty_tool_result",
            severity: Severity::Warning,
            steps: vec![t.event.step, l.event.step],
            summary: format!(
                "the {name} tool returned an empty result ({}) at step {} and the LLM consumed it as data at step {}",
                if body.trim().is_empty() { "no body".to_string() } else { body.trim().to_string() },
                t.event.step,
                l.event.step
            ),
            evidence: vec![
                format!("step {}: {} → {} with body {:?}", t.event.step, what(t.event), status_of(t.event), short(&body, 40)),
                format!("step {}: tool result {:?} passed to the LLM", l.event.step, r.content),
                format!("step {}: answer: {:?}", l.event.step, short(&call.output_text, 100)),
            ],
        });
    }
    let mut seen: HashSet<String> = HashSet::new();
    for l in parsed.iter().filter(|p| p.event.kind == Kind::Llm) {
        let Some(call) = &l.llm else { continue };
        for r in call
            .tool_results
            .iter()
            .filter(|r| is_empty_text(&r.content))
        {
            let Some(id) = r.id.clone() else { continue };
            if covered.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            out.push(Finding {
                detector: "empty_tool_result",
                severity: Severity::Warning,
                steps: vec![l.event.step],
                summary: format!(
                    "the {} tool returned an empty result that the LLM consumed as data at step {}",
                    r.name.clone().unwrap_or_else(|| "local".into()),
                    l.event.step
                ),
                evidence: vec![format!(
                    "step {}: tool result {id} is {:?}",
                    l.event.step, r.content
                )],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::detect;
    use crate::analyze::detect::testing::*;

    #[test]
    fn an_empty_answer_nobody_consumed_is_not_reported() {
        let e1 = tool_event(1, None, "https://t.test/items", 200, 0, 1);
        let p = vec![parsed(&e1, None, "", "[]")];
        assert!(run(&p, detect).is_empty());
    }

    #[test]
    fn an_empty_answer_the_llm_took_as_data_is_reported_at_the_tool() {
        let e1 = llm_event(1, None, 0, 5);
        let e2 = tool_event(2, None, "https://t.test/items", 200, 6, 7);
        let e3 = llm_event(3, None, 8, 12);
        let p = vec![
            parsed(
                &e1,
                Some(asks("c1", "list_items", serde_json::json!({}))),
                "{}",
                "{}",
            ),
            parsed(&e2, None, "", "[]"),
            parsed(
                &e3,
                Some(llm_call(20, vec![("c1", "[]")], "No items.")),
                "{}",
                "{}",
            ),
        ];
        let out = run(&p, detect);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].steps, vec![2, 3]);
        assert!(out[0].summary.contains("list_items"), "{:?}", out[0]);
        // A local tool's empty result, with no HTTP exchange, is reported at the LLM call.
        let p = vec![parsed(
            &e3,
            Some(llm_call(20, vec![("c7", "")], "Nothing.")),
            "{}",
            "{}",
        )];
        let out = run(&p, detect);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].steps, vec![3]);
    }
}
