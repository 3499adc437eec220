//! Causal dependencies between the events of a session: which earlier events each
//! event's request carries content of, and why.
//!
//! Replay enforces them (`--order causal` serves an event only after every event it
//! depends on), and the trace hangs a tool's HTTP exchanges under the LLM call whose
//! tool-call arguments they carry; both read the one [`Graph`] built here. Event E
//! depends on an earlier event D when E's request carries content of D's response:
//!
//! - an LLM request whose messages hold a result answering a tool call D asked for
//!   ([`Link::ToolResult`], by tool-call id, else by tool name), a tool-call id D made
//!   up ([`Link::ToolCallId`]), D's assistant text ([`Link::AssistantText`]), or D's own
//!   answer passed on as a tool result ([`Link::ToolOutput`]);
//! - a tool request made while D's tool call ran (after D's response, before the request
//!   that carries the call's result back) holding that call's argument values
//!   ([`Link::ToolArguments`]);
//! - any request whose URL or body holds a distinctive value (see [`tokens`]) first seen
//!   in D's response: in no request before it and in no other response, an answer that
//!   echoes a value its own request carried aside (a lookup by the id D handed out), so
//!   every later request holding the value depends on D ([`Link::Value`]).
//!
//! Content decides; time only rules out the impossible (E can carry D's content only if
//! D's response had ended when E's request started). Everything is hashed when the graph
//! is built, so a session's graph is a few words per event; [`describe`] finds a value
//! again for a message.

mod build;
mod facts;
pub mod load;
pub mod tokens;

use super::adapters::LlmCall;
use tapedeck_model::exchange::canonical::percent_decode;
use tokens::hash;

pub use facts::{answers, argument_values, request_words, Builder, Needles};

/// Why an event depends on an earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Carries a result answering tool call `call` of D's response.
    ToolResult { call: u16 },
    /// Holds the id of tool call `call` of D's response.
    ToolCallId { call: u16 },
    /// Holds D's assistant text.
    AssistantText,
    /// Carries D's answer (a tool's response body) as a tool result.
    ToolOutput,
    /// Made while tool call `call` of D ran, holding `matched` of its argument values.
    ToolArguments { call: u16, matched: u16 },
    /// Holds a distinctive value first seen in D's response.
    Value,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::ToolResult { .. } => "tool_result",
            Link::ToolCallId { .. } => "tool_call_id",
            Link::AssistantText => "assistant_text",
            Link::ToolOutput => "tool_output",
            Link::ToolArguments { .. } => "tool_arguments",
            Link::Value => "value",
        }
    }
}

/// E depends on event `on` (an index into the session's events) because of `link`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dep {
    pub on: u32,
    pub link: Link,
    /// [`tokens::hash`] of the value that links them.
    pub value: u64,
}

/// What the model needs of one event besides its bodies.
#[derive(Clone, Copy)]
pub struct Exchange<'a> {
    pub agent: Option<&'a str>,
    /// One clock for the whole session (monotonic ns since its start).
    pub start_ns: u64,
    pub end_ns: u64,
    pub url: &'a str,
    /// The response's `Location` header: a follow-up request may carry it.
    pub location: Option<&'a str>,
    /// The adapters' reading of an LLM exchange.
    pub llm: Option<&'a LlmCall>,
}

/// A tool call of an LLM response and the span of time its tool ran in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolCallRun {
    /// The LLM event whose response asked for the call.
    pub llm: u32,
    pub call: u16,
    /// From the end of that response to the start of the request that carried the result
    /// back (`closing`); without one, to the agent's next LLM request or the session's end.
    pub from_ns: u64,
    pub to_ns: u64,
    pub closing: Option<u32>,
}

/// Every event's dependencies, and the tool calls with the time their tools ran.
#[derive(Debug, Default)]
pub struct Graph {
    /// `deps[offsets[i]..offsets[i + 1]]` are event i's, most recent first.
    offsets: Vec<u32>,
    deps: Vec<Dep>,
    /// Sorted by (llm, call).
    runs: Vec<ToolCallRun>,
}

impl Graph {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What event `i` depends on.
    pub fn deps(&self, i: usize) -> &[Dep] {
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.deps[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The tool calls of LLM event `i`'s response, in call order.
    pub fn tool_calls(&self, i: usize) -> &[ToolCallRun] {
        let i = i as u32;
        let a = self.runs.partition_point(|r| r.llm < i);
        let b = self.runs.partition_point(|r| r.llm <= i);
        &self.runs[a..b]
    }

    /// How many argument values of call `call` of LLM event `llm` event `i` carries.
    pub fn arguments_matched(&self, i: usize, llm: usize, call: usize) -> usize {
        self.deps(i)
            .iter()
            .find_map(|d| match d.link {
                Link::ToolArguments { call: c, matched }
                    if d.on as usize == llm && c as usize == call =>
                {
                    Some(matched as usize)
                }
                _ => None,
            })
            .unwrap_or(0)
    }
}

/// The value behind a dependency, found again in D (the event depended on) for a message:
/// `d` and its response body.
pub fn value_of(dep: &Dep, d: &Exchange, d_response: &[u8]) -> Option<String> {
    let call = |j: u16| d.llm.and_then(|l| l.tool_calls.get(j as usize));
    match dep.link {
        Link::ToolResult { call: j } | Link::ToolCallId { call: j } => {
            call(j).map(|tc| tc.id.clone().unwrap_or_else(|| tc.name.clone()))
        }
        Link::AssistantText => d.llm.map(|l| l.output_text.trim().to_string()),
        Link::ToolOutput => Some(String::from_utf8_lossy(d_response).trim().to_string()),
        Link::ToolArguments { call: j, .. } => call(j).and_then(|tc| {
            let mut values = Vec::new();
            argument_values(&tc.arguments, &mut values);
            values.into_iter().find(|v| hash(v.as_bytes()) == dep.value)
        }),
        Link::Value => tokens::find_value(d_response, dep.value)
            .or_else(|| {
                d.location
                    .and_then(|l| tokens::find_value(percent_decode(l).as_bytes(), dep.value))
            })
            .or_else(|| {
                let l = d.llm?;
                tokens::find_value(l.output_text.as_bytes(), dep.value).or_else(|| {
                    l.tool_calls.iter().find_map(|tc| {
                        tokens::find_value(tc.arguments.to_string().as_bytes(), dep.value)
                    })
                })
            }),
    }
}

/// At most `n` characters of `s`, with `…` when cut.
pub fn preview(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

/// One sentence for a dependency: "step 7's request carries the result of step 6's
/// get_weather call (value "call_abc…" from its response)".
pub fn describe(dep: &Dep, e_step: u64, d_step: u64, d: &Exchange, d_response: &[u8]) -> String {
    let name = |j: u16| {
        d.llm
            .and_then(|l| l.tool_calls.get(j as usize))
            .map_or_else(|| "tool".to_string(), |tc| tc.name.clone())
    };
    let what = match dep.link {
        Link::ToolResult { call } => {
            format!("carries the result of step {d_step}'s {} call", name(call))
        }
        Link::ToolCallId { call } => format!("holds the id of step {d_step}'s {} call", name(call)),
        Link::AssistantText => format!("holds the assistant text of step {d_step}"),
        Link::ToolOutput => format!("carries the answer of step {d_step} as a tool result"),
        Link::ToolArguments { call, .. } => format!(
            "carries the arguments of the {} call that step {d_step}'s response asked for",
            name(call)
        ),
        Link::Value => format!("holds a value first seen in step {d_step}'s response"),
    };
    match value_of(dep, d, d_response) {
        Some(v) if !v.is_empty() => format!(
            "step {e_step}'s request {what} (value \"{}\" from its response)",
            preview(&v, 24)
        ),
        _ => format!("step {e_step}'s request {what}"),
    }
}

#[cfg(test)]
mod tests;
