//! `analyze --judge URL`: goal drift and silent degradation, as an LLM judge sees them.
//!
//! No rule can tell that an answer about cheese does not serve "what is the weather in
//! Paris?". A judge can: each LLM step's output is scored (0 to 1) against the run's
//! first user instruction by any OpenAI-compatible endpoint, and the first step scoring
//! under [`THRESHOLD`] is a `goal_drift` finding with the judge's reason. This module
//! builds the questions and reads the answers; the caller sends them (through whatever
//! proxy the environment names, so tapedeck can record and replay the judge too).

use serde_json::{json, Value};

use super::read::short;
use super::{Finding, Severity};
use crate::spans::Parsed;

/// A step scoring under this has drifted.
pub const THRESHOLD: f64 = 0.5;

const SYSTEM: &str = "You review one step of an AI agent's run. Given the user's instruction \
and the output of one step, score from 0 to 1 how well that output serves the instruction \
(1: on task; 0: unrelated to it or working against it). Intermediate steps such as tool \
calls count as on task when they move towards the instruction. Answer with JSON only: \
{\"score\": <number 0..1>, \"reason\": \"<one sentence>\"}.";

/// One question for the judge: a chat-completions request about one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub step: u64,
    /// What the step handed on, as the judge is shown it.
    pub output: String,
    pub body: Value,
}

/// The judge's answer about one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub score: f64,
    pub reason: String,
}

/// The run's first user instruction: the first user message of its first LLM call.
pub fn instruction(parsed: &[Parsed]) -> Option<String> {
    parsed.iter().filter_map(|p| p.llm.as_ref()).find_map(|c| {
        c.input_messages.as_array()?.iter().find_map(|m| {
            if m.get("role").and_then(Value::as_str) != Some("user") {
                return None;
            }
            let text: String = m
                .get("parts")?
                .as_array()?
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n");
            (!text.trim().is_empty()).then(|| text.trim().to_string())
        })
    })
}

/// One question per LLM step that produced an answer or a tool call.
pub fn questions(parsed: &[Parsed], instruction: &str, model: &str) -> Vec<Question> {
    parsed
        .iter()
        .filter_map(|p| {
            let call = p.llm.as_ref()?;
            if call.error_type.is_some() {
                return None;
            }
            let mut output = call.output_text.trim().to_string();
            for tc in &call.tool_calls {
                if !output.is_empty() {
                    output.push('\n');
                }
                output.push_str(&format!("calls {}({})", tc.name, tc.arguments));
            }
            if output.is_empty() {
                return None;
            }
            let step = p.event.step;
            let body = json!({
                "model": model,
                "temperature": 0,
                "response_format": {"type": "json_object"},
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": format!(
                        "Instruction:\n{instruction}\n\nOutput of step {step}:\n{output}"
                    )},
                ],
            });
            Some(Question { step, output, body })
        })
        .collect()
}

/// A judge's answer that holds no verdict.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("no choices[0].message.content in {0}")]
    NoContent(String),
    #[error("no JSON object in the answer {0:?}")]
    NoObject(String),
    #[error("the answer {answer:?} is not JSON: {source}")]
    NotJson {
        answer: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("no numeric \"score\" in {0}")]
    NoScore(String),
}

/// Reads a chat-completions response: `{"score", "reason"}` in the first choice's text
/// (a fenced or chatty answer is read from its first `{` to its last `}`). A score on a
/// 0-10 scale is brought to 0-1.
pub fn read_answer(response: &Value) -> Result<Verdict, AnswerError> {
    let text = response
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| AnswerError::NoContent(short(&response.to_string(), 200)))?;
    let object = match (text.find('{'), text.rfind('}')) {
        (Some(a), Some(b)) if a < b => &text[a..=b],
        _ => return Err(AnswerError::NoObject(short(text, 200))),
    };
    let v: Value = serde_json::from_str(object).map_err(|source| AnswerError::NotJson {
        answer: short(text, 200),
        source,
    })?;
    let score = match v.get("score") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| AnswerError::NoScore(short(&v.to_string(), 200)))?;
    let score = if score > 1.0 && score <= 10.0 {
        score / 10.0
    } else {
        score
    };
    let reason = v
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok(Verdict {
        score: score.clamp(0.0, 1.0),
        reason,
    })
}

/// `goal_drift` at the first step scoring under [`THRESHOLD`], if any.
pub fn finding(instruction: &str, judged: &[(Question, Verdict)], judge: &str) -> Option<Finding> {
    let (q, v) = judged.iter().find(|(_, v)| v.score < THRESHOLD)?;
    let earlier: Vec<String> = judged
        .iter()
        .take_while(|(x, _)| x.step != q.step)
        .map(|(x, v)| format!("{}: {:.2}", x.step, v.score))
        .collect();
    let mut evidence = vec![
        format!("the run's instruction: {:?}", short(instruction, 120)),
        format!("step {}: output {:?}", q.step, short(&q.output, 120)),
        format!(
            "step {}: {judge} scored it {:.2} (under {THRESHOLD:.2}): {}",
            q.step, v.score, v.reason
        ),
    ];
    if !earlier.is_empty() {
        evidence.push(format!("earlier steps scored {}", earlier.join(", ")));
    }
    Some(Finding {
        detector: "goal_drift",
        severity: Severity::Warning,
        steps: vec![q.step],
        summary: format!(
            "the output at step {} drifted from the run's instruction (judge score {:.2}): {}",
            q.step,
            v.score,
            short(&v.reason, 160)
        ),
        evidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::detect::testing::*;

    fn answer(content: &str) -> Value {
        json!({"choices": [{"message": {"role": "assistant", "content": content}}]})
    }

    #[test]
    fn each_llm_step_is_asked_about_against_the_first_instruction() {
        let e1 = llm_event(1, None, 0, 5);
        let e2 = tool_event(2, None, "https://w.test/weather?city=Paris", 200, 6, 7);
        let e3 = llm_event(3, None, 8, 9);
        let mut first = asks("c1", "get_weather", json!({"city": "Paris"}));
        first.input_messages = json!([
            {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
            {"role": "user", "parts": [{"type": "text", "content": "What is the weather in Paris?"}]},
        ]);
        let p = vec![
            parsed(&e1, Some(first), "{}", "{}"),
            parsed(&e2, None, "", "{}"),
            parsed(
                &e3,
                Some(llm_call(5, vec![], "A limerick about cheese")),
                "{}",
                "{}",
            ),
        ];
        let i = instruction(&p).unwrap();
        assert_eq!(i, "What is the weather in Paris?");
        let q = questions(&p, &i, "judge-1");
        assert_eq!(q.iter().map(|q| q.step).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(q[0].output, r#"calls get_weather({"city":"Paris"})"#);
        assert_eq!(q[1].body["model"], "judge-1");
        let user = q[1].body["messages"][1]["content"].as_str().unwrap();
        assert!(user.contains("What is the weather in Paris?") && user.contains("cheese"));
    }

    #[test]
    fn the_first_step_under_the_threshold_is_goal_drift_with_the_judges_reason() {
        let q = |step: u64| Question {
            step,
            output: format!("output {step}"),
            body: Value::Null,
        };
        let ok = read_answer(&answer(r#"{"score": 0.9, "reason": "on task"}"#)).unwrap();
        let fenced = read_answer(&answer(
            "```json\n{\"score\": \"2\", \"reason\": \"about cheese\"}\n```",
        ))
        .unwrap();
        assert_eq!(fenced.score, 0.2);
        // Braces the wrong way round hold no object.
        for content in ["} {", "}{", "no braces"] {
            assert!(
                matches!(read_answer(&answer(content)), Err(AnswerError::NoObject(_))),
                "{content}"
            );
        }
        let judged = vec![(q(1), ok.clone()), (q(3), fenced.clone()), (q(5), fenced)];
        let f = finding("weather in Paris", &judged, "the judge").unwrap();
        assert_eq!(f.detector, "goal_drift");
        assert_eq!(f.steps, vec![3]);
        assert!(f.summary.contains("about cheese"), "{}", f.summary);
        assert!(
            f.evidence
                .iter()
                .any(|e| e == "earlier steps scored 1: 0.90"),
            "{:#?}",
            f.evidence
        );
        assert!(finding("x", &[(q(1), ok)], "j").is_none());
        assert!(read_answer(&answer("I think it is fine")).is_err());
        assert!(read_answer(&json!({"error": "nope"})).is_err());
    }
}
