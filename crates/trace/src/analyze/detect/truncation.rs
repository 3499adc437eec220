//! `truncation`: an answer cut off by the token limit (finish reason `length`,
//! `max_tokens`, ...).

use super::View;
use crate::analyze::read::short;
use crate::analyze::{Finding, Severity};

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
    for p in parsed {
        let Some(call) = &p.llm else { continue };
        let cut: Vec<&String> = call
            .finish_reasons
            .iter()
            .filter(|r| {
                matches!(
                    r.as_str(),
                    "length"
                        | "max_tokens"
                        | "MAX_TOKENS"
                        | "max_output_tokens"
                        | "model_context_window_exceeded"
                )
            })
            .collect();
        if cut.is_empty() {
            continue;
        }
        let step = p.event.step;
        out.push(Finding {
            detector: "truncation",
            severity: Severity::Warning,
            steps: vec![step],
            summary: format!(
                "the answer at step {step} was cut off by the token limit (finish reason {})",
                cut[0]
            ),
            evidence: vec![
                format!(
                    "step {step}: finish reasons {:?}, {} output tokens",
                    call.finish_reasons,
                    call.output_tokens.unwrap_or(0)
                ),
                format!(
                    "step {step}: answer ends: {:?}",
                    short(
                        &call
                            .output_text
                            .chars()
                            .rev()
                            .take(60)
                            .collect::<String>()
                            .chars()
                            .rev()
                            .collect::<String>(),
                        60
                    )
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
    fn an_answer_cut_by_the_token_limit_is_reported_and_a_finished_one_is_not() {
        let e = llm_event(4, None, 0, 5);
        let mut call = llm_call(10, vec![], "Once upon a time there was a");
        call.finish_reasons = vec!["length".into()];
        let out = run(&[parsed(&e, Some(call.clone()), "{}", "{}")], detect);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].steps, vec![4]);
        assert!(out[0].evidence[1].contains("there was a"), "{:?}", out[0]);
        call.finish_reasons = vec!["stop".into()];
        assert!(run(&[parsed(&e, Some(call), "{}", "{}")], detect).is_empty());
    }
}
