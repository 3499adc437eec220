//! What flowed between the exchanges of a session: which earlier exchange's output each
//! request carries, and the value that shows it.
//!
//! `analyze --explain` walks these links back from a step, and `cascading_error`
//! follows them forward across an agent hand-off. The boundary is one function,
//! [`flows`]: events in, `(from, to, how, value)` out. Replay's causal order asks the
//! same question of the same traffic; this reading keeps to what the detectors need
//! (it reads values in full, for people) and can be pointed at that shared model once
//! both live in one place. A request carries an earlier output when it holds:
//!
//! - a tool result answering a tool call the earlier LLM response made (by id, else by
//!   name), or the earlier tool exchange's answer as a tool result;
//! - the text an earlier LLM answered (any agent: that is how a hand-off reads);
//! - argument values of a tool call an earlier LLM response made (a tool request);
//! - a distinctive value (a token with a digit or a capital, four characters or more)
//!   that first appeared in the earlier output and in no request before it.
//!
//! An exchange can only carry what had been answered before it started. A tool result an
//! agent's history carries again is linked where it first appeared, and a request keeps
//! its most recent flows only: the older ones are reached through those.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::read::{holds, output_of};
use crate::spans::Parsed;
use tapedeck_model::exchange::canonical::percent_decode;
use tapedeck_model::exchange::Kind;

/// How many earlier answers of each sort a request is compared with in full (the rest
/// are reached through these, which carried them before).
const LOOKBACK: usize = 64;

/// A request keeps at most this many flows, from the most recent outputs: an LLM request
/// carries its whole history, whose older parts are reached through the newer ones.
const MAX_FLOWS: usize = 16;

/// Why a request carries an earlier output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A tool result answering a tool call of the earlier LLM response.
    ToolResult,
    /// The earlier tool exchange's answer, passed on as a tool result.
    ToolOutput,
    /// The text the earlier LLM answered.
    Text,
    /// Argument values of a tool call the earlier LLM response made.
    ToolArguments,
    /// A distinctive value first seen in the earlier output.
    Value,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::ToolResult => "tool_result",
            Via::ToolOutput => "tool_output",
            Via::Text => "text",
            Via::ToolArguments => "tool_arguments",
            Via::Value => "value",
        }
    }

    /// `carries …` for one line of explanation.
    pub fn describe(self, from_step: u64) -> String {
        match self {
            Via::ToolResult => format!("carries the result of a tool call step {from_step} made"),
            Via::ToolOutput => format!("carries the answer of step {from_step} as a tool result"),
            Via::Text => format!("holds the text step {from_step} answered"),
            Via::ToolArguments => {
                format!("carries an argument of a tool call step {from_step} made")
            }
            Via::Value => format!("holds a value first seen in step {from_step}'s answer"),
        }
    }
}

/// Exchange `to`'s request carries output of exchange `from` (indices into the parsed
/// events), shown by `value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub from: usize,
    pub to: usize,
    pub via: Via,
    pub value: String,
}

/// Every flow of a session, by `to` then `from`, one per pair (the most telling).
pub fn flows(parsed: &[Parsed]) -> Vec<Flow> {
    let mut out = Vec::new();
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut asked: HashSet<String> = HashSet::new();
    // Tool results already linked where an agent's history first carried them.
    let mut carried_before: HashSet<(Option<&str>, String)> = HashSet::new();
    // The strings of each agent's last LLM request: the history its next one repeats.
    let mut history: HashMap<Option<&str>, HashSet<u64>> = HashMap::new();
    let earlier = Earlier::new(parsed);
    for (i, e) in parsed.iter().enumerate() {
        let strings = new_strings(e, &mut history);
        let before = |j: usize| parsed[j].event.timing.end_ns <= e.event.timing.start_ns;
        let mut found: Vec<Flow> = Vec::new();
        let mut link = |from: usize, via: Via, value: String| {
            if before(from) && !found.iter().any(|f| f.from == from) {
                found.push(Flow {
                    from,
                    to: i,
                    via,
                    value,
                });
            }
        };
        if let Some(call) = &e.llm {
            for r in &call.tool_results {
                let key = r.id.clone().unwrap_or_else(|| r.content.clone());
                if !carried_before.insert((e.event.agent.as_deref(), key)) {
                    continue;
                }
                if let Some((d, name)) = asked_for(parsed, &earlier, i, r) {
                    let value = match &r.id {
                        Some(id) => format!("{name} call {id}"),
                        None => format!("{name} call"),
                    };
                    link(d, Via::ToolResult, value);
                }
                if let Some(d) = answered_by(parsed, &earlier, i, r.content.trim()) {
                    link(d, Via::ToolOutput, r.content.trim().to_string());
                }
            }
            for d in recent(Some(&earlier.llm), i) {
                let said = parsed[d].llm.as_ref().map_or("", |c| c.output_text.trim());
                if said.chars().count() >= 12 && strings.iter().any(|t| t.contains(said)) {
                    link(d, Via::Text, said.to_string());
                }
            }
        } else if let Some((d, value)) = arguments_used(parsed, &earlier, i) {
            link(d, Via::ToolArguments, value);
        }
        let request = request_text(e, &strings);
        for t in tokens(&request) {
            if let Some(&d) = first_seen.get(t) {
                if d != i {
                    link(d, Via::Value, t.to_string());
                }
            }
        }
        asked.extend(tokens(&request).map(str::to_string));
        for t in tokens(&output_of(e)) {
            if !asked.contains(t) {
                first_seen.entry(t.to_string()).or_insert(i);
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.from));
        found.truncate(MAX_FLOWS);
        out.extend(found);
    }
    out
}

/// The exchanges of a session by what the look-backs ask for, each list in order: a
/// look-back reads the latest [`LOOKBACK`] of one list before an exchange instead of
/// walking back over every earlier exchange (a session with no LLM call among 50,000
/// tool calls walked all of them for each).
#[derive(Default)]
struct Earlier<'a> {
    llm: Vec<usize>,
    not_llm: Vec<usize>,
    llm_of: HashMap<Option<&'a str>, Vec<usize>>,
    calls_of: HashMap<Option<&'a str>, Vec<usize>>,
}

impl<'a> Earlier<'a> {
    fn new(parsed: &'a [Parsed]) -> Earlier<'a> {
        let mut e = Earlier::default();
        for (j, p) in parsed.iter().enumerate() {
            let agent = p.event.agent.as_deref();
            if p.event.kind != Kind::Llm {
                e.not_llm.push(j);
            }
            if let Some(call) = &p.llm {
                e.llm.push(j);
                e.llm_of.entry(agent).or_default().push(j);
                if !call.tool_calls.is_empty() {
                    e.calls_of.entry(agent).or_default().push(j);
                }
            }
        }
        e
    }
}

/// The latest entries of `list` (at most [`LOOKBACK`]) before exchange `i`, latest first.
fn recent(list: Option<&Vec<usize>>, i: usize) -> impl Iterator<Item = usize> + '_ {
    let list = list.map_or(&[][..], Vec::as_slice);
    let end = list.partition_point(|&j| j < i);
    list[..end].iter().rev().take(LOOKBACK).copied()
}

/// The latest earlier LLM call of the same agent whose response asked for the call that
/// tool result `r` answers, with the function's name.
fn asked_for(
    parsed: &[Parsed],
    earlier: &Earlier,
    i: usize,
    r: &crate::adapters::ToolResult,
) -> Option<(usize, String)> {
    let agent = parsed[i].event.agent.as_deref();
    recent(earlier.llm_of.get(&agent), i).find_map(|j| {
        let call = parsed[j].llm.as_ref()?;
        let tc = call.tool_calls.iter().find(|tc| match (&r.id, &tc.id) {
            (Some(a), Some(b)) => a == b,
            _ => r.name.as_deref() == Some(tc.name.as_str()),
        })?;
        Some((j, tc.name.clone()))
    })
}

/// The latest earlier non-LLM exchange whose answer is the tool result `content`.
fn answered_by(parsed: &[Parsed], earlier: &Earlier, i: usize, content: &str) -> Option<usize> {
    if content.is_empty() {
        return None;
    }
    recent(Some(&earlier.not_llm), i).find(|&j| {
        let body = String::from_utf8_lossy(&parsed[j].response_body);
        !body.trim().is_empty() && holds(content, &body)
    })
}

/// The latest earlier LLM call of the same agent whose tool-call arguments this tool
/// request carries, with the first argument value found.
fn arguments_used(parsed: &[Parsed], earlier: &Earlier, i: usize) -> Option<(usize, String)> {
    let e = &parsed[i];
    let calls = earlier.calls_of.get(&e.event.agent.as_deref());
    if calls.is_none_or(|c| c.first().is_none_or(|&j| j >= i)) {
        return None;
    }
    let request = request_text(e, &request_strings(e)).to_lowercase();
    recent(calls, i).find_map(|j| {
        let call = parsed[j].llm.as_ref()?;
        call.tool_calls.iter().find_map(|tc| {
            let mut values = Vec::new();
            argument_values(&tc.arguments, &mut values);
            values
                .into_iter()
                .find(|v| v.chars().count() >= 2 && request.contains(&v.to_lowercase()))
                .map(|v| (j, v))
        })
    })
}

/// The scalar values of tool-call arguments (JSON inside strings is opened).
fn argument_values(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner) if inner.is_object() || inner.is_array() => argument_values(&inner, out),
            _ => out.push(s.clone()),
        },
        Value::Number(n) => out.push(n.to_string()),
        Value::Object(m) => m.values().for_each(|x| argument_values(x, out)),
        Value::Array(a) => a.iter().for_each(|x| argument_values(x, out)),
        _ => {}
    }
}

/// The strings of a request's JSON body (unescaped), else the body as text.
fn request_strings(p: &Parsed) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    match serde_json::from_slice::<Value>(&p.request_body) {
        Ok(v) => walk(&v, &mut out),
        Err(_) => out.push(String::from_utf8_lossy(&p.request_body).into_owned()),
    }
    out
}

/// A request's strings, less (for an LLM call) those its agent's previous LLM request
/// already held: the history was read when it was new.
fn new_strings<'a>(
    p: &Parsed<'a>,
    history: &mut HashMap<Option<&'a str>, HashSet<u64>>,
) -> Vec<String> {
    let all = request_strings(p);
    if p.llm.is_none() {
        return all;
    }
    let hash = |s: &str| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(s, &mut h);
        std::hash::Hasher::finish(&h)
    };
    let seen = history.entry(p.event.agent.as_deref()).or_default();
    let hashes: HashSet<u64> = all.iter().map(|s| hash(s)).collect();
    let fresh = all
        .into_iter()
        .filter(|s| !seen.contains(&hash(s)))
        .collect();
    *seen = hashes;
    fresh
}

/// What a request says: its URL (percent-decoded) and the strings given.
fn request_text(p: &Parsed, strings: &[String]) -> String {
    let url = &p.event.request.url;
    let mut s = percent_decode(&url.replace('+', " "));
    for t in strings {
        s.push(' ');
        s.push_str(t);
    }
    s
}

/// Distinctive values in a text: tokens of four or more characters with a digit or a
/// capital (`1.299`, `Pariss`, `call_abc123`), surrounding punctuation trimmed.
pub fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ',')))
        .map(|t| t.trim_matches(|c: char| matches!(c, '.' | '_' | '-' | ',')))
        .filter(|t| {
            t.chars().count() >= 4 && t.chars().any(|c| c.is_ascii_digit() || c.is_uppercase())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::detect::testing::*;

    #[test]
    fn a_tool_call_its_request_its_result_and_a_handed_on_text_are_linked() {
        let writer = PriceHandOff::writer_quoting("Write an ad from these notes:\n");
        let run = PriceHandOff::new(
            r#"{"price":1.299,"parse_error":"ambiguous"}"#,
            &writer,
            "Just EUR 1.30!",
        );
        let p = run.parsed();
        let f = flows(&p);
        let pairs: Vec<(usize, usize, Via)> = f.iter().map(|f| (f.from, f.to, f.via)).collect();
        assert!(pairs.contains(&(0, 1, Via::ToolArguments)), "{f:#?}");
        assert!(pairs.contains(&(1, 2, Via::ToolOutput)), "{f:#?}");
        assert!(pairs.contains(&(0, 2, Via::ToolResult)), "{f:#?}");
        assert!(pairs.contains(&(2, 3, Via::Text)), "{f:#?}");
        assert_eq!(
            f.iter().find(|f| f.from == 0 && f.to == 1).unwrap().value,
            "widget"
        );
        // Nothing flows from a later answer, nor into the first call.
        assert!(f.iter().all(|f| f.from < f.to && f.to != 0));
    }

    #[test]
    fn a_value_first_seen_in_an_answer_links_the_request_that_reuses_it() {
        let e1 = llm_event(1, Some("planner"), 0, 10);
        let e2 = tool_event(
            2,
            Some("writer"),
            "https://w.test/weather?city=Pariss",
            404,
            11,
            12,
        );
        let p = vec![
            parsed(
                &e1,
                Some(llm_call(10, vec![], "Destination: Pariss")),
                r#"{"q":"Plan a trip"}"#,
                "{}",
            ),
            parsed(&e2, None, "", "{}"),
        ];
        let f = flows(&p);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!((f[0].from, f[0].to, f[0].via), (0, 1, Via::Value));
        assert_eq!(f[0].value, "Pariss");
        // A value the request already had before the answer came is no flow.
        let p = vec![
            parsed(
                &e1,
                Some(llm_call(10, vec![], "Destination: Pariss")),
                r#"{"q":"Plan a trip to Pariss"}"#,
                "{}",
            ),
            parsed(&e2, None, "", "{}"),
        ];
        assert!(flows(&p).is_empty());
    }

    #[test]
    fn an_answer_still_running_when_a_request_started_cannot_flow_into_it() {
        let e1 = llm_event(1, None, 0, 50);
        let e2 = tool_event(2, None, "https://w.test/weather?city=Pariss", 200, 10, 12);
        let p = vec![
            parsed(
                &e1,
                Some(llm_call(10, vec![], "Destination: Pariss")),
                "{}",
                "{}",
            ),
            parsed(&e2, None, "", "{}"),
        ];
        assert!(flows(&p).is_empty());
    }

    #[test]
    fn tokens_keep_values_and_leave_plain_words() {
        let t: Vec<&str> = tokens("The widget costs EUR 1.299, see call_7 in Pariss.").collect();
        assert_eq!(t, vec!["1.299", "call_7", "Pariss"]);
    }
}
