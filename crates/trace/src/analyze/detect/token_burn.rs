//! `token_burn`: three or more LLM calls of one agent whose input keeps growing while no
//! new tool result comes in: the agent re-asks with its whole history and learns nothing.

use std::collections::HashSet;

use super::View;
use crate::analyze::{Finding, Severity};
use crate::spans::Parsed;

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
    let agents: HashSet<Option<&str>> = parsed.iter().map(|p| p.event.agent.as_deref()).collect();
    for agent in agents {
        let calls: Vec<&Parsed> = parsed
            .iter()
            .filter(|p| {
                p.event.agent.as_deref() == agent
                    && p.llm
                        .as_ref()
                        .is_some_and(|c| c.input_tokens.is_some() && c.operation != "embeddings")
            })
            .collect();
        let mut seen_results: HashSet<String> = HashSet::new();
        let mut run: Vec<&Parsed> = Vec::new();
        let flush = |run: &mut Vec<&Parsed>, out: &mut Vec<Finding>| {
            if run.len() >= 3 {
                let tokens: Vec<u64> = run
                    .iter()
                    .map(|p| p.llm.as_ref().and_then(|c| c.input_tokens).unwrap_or(0))
                    .collect();
                out.push(Finding {
                    detector: "token_burn",
                    severity: Severity::Warning,
                    steps: run.iter().map(|p| p.event.step).collect(),
                    summary: format!(
                        "input tokens grew from {} to {} over {} LLM calls with no new tool result between them",
                        tokens[0],
                        tokens[tokens.len() - 1],
                        run.len()
                    ),
                    evidence: run
                        .iter()
                        .zip(&tokens)
                        .map(|(p, t)| format!("step {}: {t} input tokens", p.event.step))
                        .collect(),
                });
            }
            run.clear();
        };
        for c in calls {
            let Some(call) = c.llm.as_ref() else { continue };
            let ids: Vec<String> = call
                .tool_results
                .iter()
                .map(|r| r.id.clone().unwrap_or_else(|| r.content.clone()))
                .collect();
            let new_result = ids.iter().any(|id| !seen_results.contains(id));
            seen_results.extend(ids);
            let grows = run
                .last()
                .and_then(|prev| prev.llm.as_ref()?.input_tokens)
                .is_some_and(|prev| call.input_tokens.unwrap_or(0) > prev);
            if !run.is_empty() && grows && !new_result {
                run.push(c);
            } else {
                flush(&mut run, out);
                run.push(c);
            }
        }
        flush(&mut run, out);
    }
}

#[cfg(test)]
mod tests {
    use super::detect;
    use crate::analyze::detect::testing::*;
    use crate::spans::Parsed;
    use tapedeck_model::exchange::Event;

    fn calls() -> Vec<Event> {
        (1..=4)
            .map(|i| llm_event(i, None, i * 10, i * 10 + 5))
            .collect()
    }

    #[test]
    fn growing_prompts_with_no_new_tool_result_are_token_burn() {
        let evs = calls();
        let p: Vec<Parsed> = evs
            .iter()
            .enumerate()
            .map(|(i, e)| {
                parsed(
                    e,
                    Some(llm_call(100 * (i as u64 + 1), vec![], "no")),
                    "{}",
                    "{}",
                )
            })
            .collect();
        let out = run(&p, detect);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].steps, vec![1, 2, 3, 4]);
        assert!(out[0].summary.contains("from 100 to 400"), "{:?}", out[0]);
    }

    #[test]
    fn growing_prompts_with_new_tool_results_are_not_token_burn() {
        let evs = calls();
        let p: Vec<Parsed> = evs
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let results: Vec<(&str, &str)> = [("c1", "a"), ("c2", "b"), ("c3", "c")]
                    .into_iter()
                    .take(i)
                    .collect();
                parsed(
                    e,
                    Some(llm_call(100 * (i as u64 + 1), results, "ok")),
                    "{}",
                    "{}",
                )
            })
            .collect();
        let out = run(&p, detect);
        assert!(out.is_empty(), "{out:?}");
    }
}
