//! `context_pressure`: a prompt near (80%) or over its model's context window.
//!
//! Over the window is the provider's own error; near it is input tokens against the
//! model's window ([`crate::analyze::context`]).

use super::View;
use crate::analyze::context;
use crate::analyze::read::{short, status_of, what};
use crate::analyze::{Finding, Severity};

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
    for p in parsed {
        let Some(call) = &p.llm else { continue };
        let step = p.event.step;
        if let Some(t) = &call.error_type {
            let msg = call
                .error_message
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if t.contains("context_length")
                || msg.contains("prompt is too long")
                || msg.contains("context length")
                || msg.contains("maximum context")
            {
                out.push(Finding {
                    detector: "context_pressure",
                    severity: Severity::Error,
                    steps: vec![step],
                    summary: format!(
                        "the request at step {step} did not fit the model's context window ({t})"
                    ),
                    evidence: vec![format!(
                        "step {step}: {} → {}: {}",
                        what(p.event),
                        status_of(p.event),
                        short(&msg, 100)
                    )],
                });
                continue;
            }
        }
        let Some(input) = call.input_tokens else {
            continue;
        };
        let Some(model) = call.request_model.as_ref().or(call.response_model.as_ref()) else {
            continue;
        };
        let Some(limit) = context::limit(model, &v.rules.context_windows) else {
            continue;
        };
        let ratio = input as f64 / limit as f64;
        if ratio >= 0.8 {
            out.push(Finding {
                detector: "context_pressure",
                severity: if ratio >= 0.95 { Severity::Error } else { Severity::Warning },
                steps: vec![step],
                summary: format!(
                    "the prompt at step {step} used {:.0}% of {model}'s context window ({input} of {limit} input tokens)",
                    ratio * 100.0
                ),
                evidence: vec![format!("step {step}: {input} input tokens; {model} takes at most {limit}")],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::detect;
    use crate::analyze::detect::testing::*;
    use crate::analyze::Severity;

    fn on_gpt4(input: u64) -> Vec<crate::analyze::Finding> {
        let e = llm_event(1, None, 0, 5);
        let mut call = llm_call(input, vec![], "ok");
        call.request_model = Some("gpt-4".into());
        run(&[parsed(&e, Some(call), "{}", "{}")], detect)
    }

    #[test]
    fn a_prompt_near_the_window_is_a_warning_and_over_95_percent_an_error() {
        assert!(on_gpt4(5_600).is_empty());
        let near = on_gpt4(7_000);
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].severity, Severity::Warning);
        assert_eq!(on_gpt4(8_000)[0].severity, Severity::Error);
    }

    #[test]
    fn the_providers_context_length_error_is_an_error() {
        let e = llm_event(1, None, 0, 5);
        let mut call = llm_call(10, vec![], "");
        call.error_type = Some("context_length_exceeded".into());
        call.error_message = Some("This model's maximum context length is 8192 tokens".into());
        let out = run(&[parsed(&e, Some(call), "{}", "{}")], detect);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Error);
        assert_eq!(out[0].steps, vec![1]);
    }
}
