//! `analyze --explain STEP`: the trace's stack trace. From one step (a wrong final
//! answer, say) back through every exchange whose output flowed into it, each with the
//! value that shows the flow, newest first.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::flow::{Flow, Via};
use super::read::{output_of, short, status_of, tool_error};
use crate::spans::Parsed;
use crate::tool_names::ToolNames;
use tapedeck_model::exchange::Kind;

/// One earlier output a step's request carries.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Input {
    pub from_step: u64,
    pub via: &'static str,
    pub value: String,
    #[serde(skip)]
    how: Via,
}

/// One step of the chain.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Link {
    pub step: u64,
    pub kind: String,
    pub agent: Option<String>,
    /// `chat gpt-4o` for an LLM call, the tool's name otherwise.
    pub name: String,
    pub status: String,
    /// Why it failed, when it did (HTTP status, transport, soft error, provider error).
    pub error: Option<String>,
    /// What it handed on: the LLM's answer and tool calls, or the tool's answer.
    pub output: String,
    pub inputs: Vec<Input>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Explanation {
    pub session: String,
    pub step: u64,
    /// The step itself first, then what flowed into it, newest first.
    pub chain: Vec<Link>,
}

/// Walks back from `step` along `flows`; `None` when the session has no such step.
pub fn explain(
    session: &str,
    parsed: &[Parsed],
    tools: &ToolNames,
    flows: &[Flow],
    step: u64,
) -> Option<Explanation> {
    let start = parsed.iter().position(|p| p.event.step == step)?;
    let mut into: Vec<Vec<&Flow>> = vec![Vec::new(); parsed.len()];
    for f in flows {
        into[f.to].push(f);
    }
    let mut seen: BTreeMap<usize, ()> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    seen.insert(start, ());
    while let Some(i) = queue.pop_front() {
        for f in &into[i] {
            if seen.insert(f.from, ()).is_none() {
                queue.push_back(f.from);
            }
        }
    }
    let chain = seen
        .keys()
        .rev()
        .map(|&i| link(parsed, tools, &into[i], i))
        .collect();
    Some(Explanation {
        session: session.to_string(),
        step,
        chain,
    })
}

fn link(parsed: &[Parsed], tools: &ToolNames, into: &[&Flow], i: usize) -> Link {
    let p = &parsed[i];
    let ev = p.event;
    let (name, error, output) = match &p.llm {
        Some(call) => {
            let name = match &call.request_model {
                Some(m) => format!("{} {m}", call.operation),
                None => call.operation.clone(),
            };
            let mut out = call.output_text.trim().to_string();
            for tc in &call.tool_calls {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&format!("{}({})", tc.name, tc.arguments));
            }
            (name, call.error_type.clone(), out)
        }
        None if ev.kind == Kind::Llm => ("llm".to_string(), None, output_of(p)),
        None => (
            tools.get(ev.step).unwrap_or("-").to_string(),
            tool_error(p).map(|e| e.why),
            output_of(p),
        ),
    };
    let mut inputs: Vec<Input> = into
        .iter()
        .map(|f| Input {
            from_step: parsed[f.from].event.step,
            via: f.via.as_str(),
            value: f.value.clone(),
            how: f.via,
        })
        .collect();
    inputs.sort_by_key(|x| std::cmp::Reverse(x.from_step));
    Link {
        step: ev.step,
        kind: ev.kind.to_string(),
        agent: ev.agent.clone(),
        name,
        status: status_of(ev),
        error,
        output,
        inputs,
    }
}

/// The chain as text, one block per step.
pub fn render(e: &Explanation) -> String {
    let mut out = format!(
        "session {}: step {} and the {} earlier step{} whose output flowed into it, newest first\n",
        e.session,
        e.step,
        e.chain.len().saturating_sub(1),
        if e.chain.len() == 2 { "" } else { "s" }
    );
    for l in &e.chain {
        out.push_str(&format!(
            "\nstep {}  {}{}  {}  → {}{}\n",
            l.step,
            l.kind,
            l.agent
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default(),
            l.name,
            l.status,
            l.error
                .as_deref()
                .map(|x| format!("  [{x}]"))
                .unwrap_or_default()
        ));
        out.push_str(&format!("    output: {:?}\n", short(&l.output, 160)));
        if l.inputs.is_empty() {
            out.push_str("    (nothing recorded earlier flowed into it)\n");
        }
        for x in &l.inputs {
            out.push_str(&format!(
                "    ← its request {}: {:?}\n",
                x.how.describe(x.from_step),
                short(&x.value, 120)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::detect::testing::*;
    use crate::analyze::flow::flows;
    use crate::spans::{build_from, TraceOptions};
    use tapedeck_model::rules::Rules;

    #[test]
    fn the_chain_walks_back_from_a_final_answer_through_the_values_that_flowed() {
        let notes = PriceHandOff::NOTES;
        let run = PriceHandOff::new(
            r#"{"price":1.299,"parse_error":"ambiguous decimal separator"}"#,
            &PriceHandOff::writer_quoting("Ad from: "),
            "Just EUR 1.30!",
        )
        .then(
            tool_event(
                5,
                Some("writer"),
                "https://unrelated.test/ping",
                200,
                31,
                32,
            ),
            "pong",
        );
        let p = run.parsed();
        let rules = Rules::default();
        let trace = build_from("s", &p, &rules, &TraceOptions::default());
        let tools = ToolNames::of(&trace, &p, &rules);
        let e = explain("s", &p, &tools, &flows(&p), 4).unwrap();
        let steps: Vec<u64> = e.chain.iter().map(|l| l.step).collect();
        assert_eq!(steps, vec![4, 3, 2, 1]);
        assert_eq!(e.chain[0].inputs[0].from_step, 3);
        assert_eq!(e.chain[0].inputs[0].value, notes);
        assert_eq!(e.chain[2].name, "get_price");
        assert!(e.chain[2]
            .error
            .as_deref()
            .unwrap()
            .contains("$.parse_error"));
        assert_eq!(e.chain[2].inputs[0].value, "widget");
        let text = render(&e);
        assert!(
            text.contains("step 2  tool (researcher)  get_price  → 200"),
            "{text}"
        );
        assert!(
            text.contains(
                "← its request carries an argument of a tool call step 1 made: \"widget\""
            ),
            "{text}"
        );
        assert!(
            text.contains("(nothing recorded earlier flowed into it)"),
            "{text}"
        );
        assert!(explain("s", &p, &tools, &flows(&p), 9).is_none());
    }
}
