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
//! - any request whose URL or body holds a distinctive value (see [`tokens`]) that, when
//!   the request was sent, had been seen in D's response and nowhere else: in no earlier
//!   request and in no other response ([`Link::Value`]).
//!
//! Content decides; time only rules out the impossible (E can carry D's content only if
//! D's response had ended when E's request started). Everything is hashed when the graph
//! is built, so a session's graph is a few words per event; [`describe`] finds a value
//! again for a message.

pub mod load;
pub mod tokens;

use std::borrow::Cow;

use foldhash::{HashMap, HashMapExt};
use serde_json::Value;

use super::adapters::recognise::percent_decode;
use super::adapters::{LlmCall, ToolCall, ToolResult};
use crate::exchange::Kind;
use tokens::{hash, needle_words, Arena, Keep, Run, Scan};

/// An event keeps at most this many dependencies from its messages and values (the most
/// recent): an LLM request carries its whole history, and the older events it holds are
/// reached through the newer ones, which carried them before.
const MAX_DEPS: usize = 16;

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
    pub kind: Kind,
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

/// The scalar values of tool-call arguments (JSON inside strings is opened), as a tool
/// request would carry them.
pub fn argument_values(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() >= 2 => {
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                if inner.is_object() || inner.is_array() {
                    return argument_values(&inner, out);
                }
            }
            out.push(s.clone());
        }
        Value::Number(n) => out.push(n.to_string()),
        Value::Object(m) => m.values().for_each(|x| argument_values(x, out)),
        Value::Array(a) => a.iter().for_each(|x| argument_values(x, out)),
        _ => {}
    }
}

/// Whether a tool result answers a tool call: by id when both have one, else by name.
pub fn answers(r: &ToolResult, tc: &ToolCall) -> bool {
    match (&r.id, &tc.id) {
        (Some(a), Some(b)) => a == b,
        _ => r.name.as_deref() == Some(tc.name.as_str()),
    }
}

/// One argument value of a tool call: a request carries it when it holds all its words.
#[derive(Debug, Clone)]
struct Needle {
    text: u64,
    words: Vec<u64>,
}

/// The argument values of one tool call, ready to be looked for in requests.
#[derive(Debug, Clone, Default)]
pub struct Needles(Vec<Needle>);

impl Needles {
    pub fn of(tc: &ToolCall) -> Needles {
        let mut values = Vec::new();
        argument_values(&tc.arguments, &mut values);
        Needles(
            values
                .iter()
                .map(|v| Needle {
                    text: hash(v.as_bytes()),
                    words: needle_words(v),
                })
                .filter(|n| !n.words.is_empty())
                .collect(),
        )
    }

    /// How many of the values a request carries (`has_word` says whether it holds a word),
    /// and the first one's hash.
    pub fn matched(&self, has_word: impl Fn(u64) -> bool) -> (usize, Option<u64>) {
        let mut n = 0;
        let mut first = None;
        for needle in &self.0 {
            if needle.words.iter().all(|w| has_word(*w)) {
                n += 1;
                first.get_or_insert(needle.text);
            }
        }
        (n, first)
    }
}

/// A URL as the model reads it: percent-decoded.
fn url_text(url: &str) -> Cow<'_, str> {
    if url.contains('%') {
        Cow::Owned(percent_decode(url))
    } else {
        Cow::Borrowed(url)
    }
}

/// Every word of a request, URL and body, hashed and sorted (for live export, which
/// looks at one event at a time).
pub fn request_words(url: &str, body: &[u8]) -> Vec<u64> {
    let mut arena = Arena::default();
    let s = arena.scan(
        &[url_text(url).as_bytes(), body],
        Keep {
            words: true,
            digest: false,
        },
    );
    s.words.map(|w| arena.get(w).to_vec()).unwrap_or_default()
}

struct CallFacts {
    id: Option<u64>,
    name: u64,
    needles: Needles,
}

struct ResultFacts {
    id: Option<u64>,
    name: Option<u64>,
    content: Option<u64>,
}

/// What an LLM exchange adds: the messages its request holds, the calls and text its
/// response gave.
#[derive(Default)]
struct LlmFacts {
    results: Vec<ResultFacts>,
    held_ids: Vec<u64>,
    held_texts: Vec<u64>,
    calls: Vec<CallFacts>,
    texts_out: Vec<u64>,
}

/// One event as the graph sees it: hashes only (in the builder's arena), bodies shared
/// between the events that have the same one.
struct Facts {
    agent: u64,
    start_ns: u64,
    end_ns: u64,
    url: Scan,
    body_in: Scan,
    body_out: Scan,
    /// More values of the response: `Location`, an LLM's assembled text and arguments.
    extra_out: Run,
    llm: Option<Box<LlmFacts>>,
}

impl Facts {
    fn new(x: &Exchange, request: Scan, response: Scan, words: bool, arena: &mut Arena) -> Facts {
        let llm = x.llm.map(|call| Box::new(LlmFacts::read(call)));
        let mut extra: Vec<Vec<u8>> = Vec::new();
        if let Some(loc) = x.location {
            extra.push(percent_decode(loc).into_bytes());
        }
        // A streamed answer is split into deltas: read the assembled text and arguments.
        if let Some(call) = x.llm {
            extra.push(call.output_text.as_bytes().to_vec());
            for tc in &call.tool_calls {
                extra.push(tc.arguments.to_string().into_bytes());
            }
        }
        let extra_out = if extra.is_empty() {
            Run::default()
        } else {
            let parts: Vec<&[u8]> = extra.iter().map(Vec::as_slice).collect();
            arena.scan(&parts, Keep::default()).values
        };
        let url = arena.scan(
            &[url_text(x.url).as_bytes()],
            Keep {
                words,
                digest: false,
            },
        );
        Facts {
            agent: x.agent.map_or(0, |a| hash(a.as_bytes())),
            start_ns: x.start_ns,
            end_ns: x.end_ns.max(x.start_ns),
            url,
            body_in: request,
            body_out: response,
            extra_out,
            llm,
        }
    }

    fn values_in<'a>(&self, arena: &'a Arena) -> impl Iterator<Item = u64> + 'a {
        arena
            .get(self.url.values)
            .iter()
            .chain(arena.get(self.body_in.values))
            .copied()
    }

    fn values_out<'a>(&self, arena: &'a Arena) -> impl Iterator<Item = u64> + 'a {
        arena
            .get(self.body_out.values)
            .iter()
            .chain(arena.get(self.extra_out))
            .copied()
    }

    fn has_word(&self, arena: &Arena, w: u64) -> bool {
        arena.has_word(&self.url, w) || arena.has_word(&self.body_in, w)
    }
}

/// Collects a session's events in step order, then builds their graph.
pub struct Builder {
    arena: Arena,
    facts: Vec<Facts>,
    /// Whether the session has LLM calls: only then do words (tool-call arguments) and
    /// digests (tool answers passed on) matter.
    agentic: bool,
}

impl Builder {
    pub fn new(events: usize, agentic: bool) -> Builder {
        Builder {
            arena: Arena::default(),
            facts: Vec::with_capacity(events),
            agentic,
        }
    }

    pub fn scan_request(&mut self, body: &[u8]) -> Scan {
        let keep = Keep {
            words: self.agentic,
            digest: false,
        };
        self.arena.scan(&[body], keep)
    }

    pub fn scan_response(&mut self, body: &[u8]) -> Scan {
        let keep = Keep {
            words: false,
            digest: self.agentic,
        };
        self.arena.scan(&[body], keep)
    }

    /// Adds the next event, with the scans of its bodies.
    pub fn push(&mut self, x: &Exchange, request: Scan, response: Scan) {
        let f = Facts::new(x, request, response, self.agentic, &mut self.arena);
        self.facts.push(f);
    }

    pub fn build(self) -> Graph {
        Graph::build(&self.facts, &self.arena)
    }
}

/// The text parts of a GenAI message, joined, trimmed.
fn message_text(m: &Value) -> String {
    m.get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("content").and_then(Value::as_str))
                .collect::<String>()
        })
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn role_is(m: &Value, role: &str) -> bool {
    m.get("role").and_then(Value::as_str) == Some(role)
}

impl LlmFacts {
    fn read(call: &LlmCall) -> LlmFacts {
        let mut f = LlmFacts {
            results: call
                .tool_results
                .iter()
                .map(|r| ResultFacts {
                    id: r.id.as_deref().map(|s| hash(s.as_bytes())),
                    name: r.name.as_deref().map(|s| hash(s.as_bytes())),
                    content: tokens::digest(r.content.as_bytes()),
                })
                .collect(),
            ..LlmFacts::default()
        };
        for m in call.input_messages.as_array().into_iter().flatten() {
            if !role_is(m, "assistant") {
                continue;
            }
            let text = message_text(m);
            if !text.is_empty() {
                f.held_texts.push(hash(text.as_bytes()));
            }
            for p in m
                .get("parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if p.get("type").and_then(Value::as_str) == Some("tool_call") {
                    if let Some(id) = p.get("id").and_then(Value::as_str) {
                        f.held_ids.push(hash(id.as_bytes()));
                    }
                }
            }
        }
        for m in call.output_messages.as_array().into_iter().flatten() {
            let text = message_text(m);
            if !text.is_empty() {
                f.texts_out.push(hash(text.as_bytes()));
            }
        }
        for tc in &call.tool_calls {
            f.calls.push(CallFacts {
                id: tc.id.as_deref().map(|s| hash(s.as_bytes())),
                name: hash(tc.name.as_bytes()),
                needles: Needles::of(tc),
            });
        }
        f
    }
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

#[derive(Clone, Copy)]
enum Seen {
    Request,
    Response(u32),
    /// In several responses: it no longer says which one a request took it from.
    Responses,
}

impl Graph {
    fn build(facts: &[Facts], arena: &Arena) -> Graph {
        let n = facts.len();
        // Responses at their end, requests at their start; at the same instant the
        // response comes first.
        let mut timeline: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * n);
        for (i, f) in facts.iter().enumerate() {
            timeline.push((f.start_ns, true, i as u32));
            timeline.push((f.end_ns, false, i as u32));
        }
        timeline.sort_unstable();

        let mut seen: HashMap<u64, Seen> = HashMap::new();
        let mut by_id: HashMap<(u64, u64), (u32, u16)> = HashMap::new();
        let mut by_name: HashMap<(u64, u64), (u32, u16)> = HashMap::new();
        let mut by_text: HashMap<(u64, u64), u32> = HashMap::new();
        let mut by_output: HashMap<u64, u32> = HashMap::new();
        let mut closing: HashMap<(u32, u16), u32> = HashMap::new();
        let mut deps: Vec<Vec<Dep>> = (0..n).map(|_| Vec::new()).collect();

        for &(_, is_request, i) in &timeline {
            let f = &facts[i as usize];
            if !is_request {
                f.note_response(
                    i,
                    arena,
                    &mut seen,
                    &mut by_id,
                    &mut by_name,
                    &mut by_text,
                    &mut by_output,
                );
                continue;
            }
            let mut found = Vec::new();
            if let Some(l) = &f.llm {
                for r in &l.results {
                    let hit = match (r.id, r.name) {
                        (Some(id), _) => by_id.get(&(f.agent, id)).map(|h| (*h, id)),
                        (None, Some(name)) => by_name.get(&(f.agent, name)).map(|h| (*h, name)),
                        (None, None) => None,
                    };
                    if let Some(((d, call), value)) = hit {
                        found.push(Dep {
                            on: d,
                            link: Link::ToolResult { call },
                            value,
                        });
                        closing.entry((d, call)).or_insert(i);
                    }
                    if let Some(d) = r.content.and_then(|c| by_output.get(&c)) {
                        found.push(Dep {
                            on: *d,
                            link: Link::ToolOutput,
                            value: r.content.unwrap_or_default(),
                        });
                    }
                }
                for &id in &l.held_ids {
                    if let Some(&(d, call)) = by_id.get(&(f.agent, id)) {
                        found.push(Dep {
                            on: d,
                            link: Link::ToolCallId { call },
                            value: id,
                        });
                    }
                }
                for &t in &l.held_texts {
                    if let Some(&d) = by_text.get(&(f.agent, t)) {
                        found.push(Dep {
                            on: d,
                            link: Link::AssistantText,
                            value: t,
                        });
                    }
                }
            }
            for v in f.values_in(arena) {
                match seen.get(&v) {
                    Some(Seen::Response(d)) if *d != i => found.push(Dep {
                        on: *d,
                        link: Link::Value,
                        value: v,
                    }),
                    Some(_) => {}
                    None => {
                        seen.insert(v, Seen::Request);
                    }
                }
            }
            // One link per event depended on (the first found is the most telling), the
            // most recent ones.
            found.sort_by(|a, b| b.on.cmp(&a.on));
            found.dedup_by_key(|d| d.on);
            found.truncate(MAX_DEPS);
            deps[i as usize] = found;
        }

        let runs = tool_call_runs(facts, &closing);
        link_arguments(facts, arena, &runs, &mut deps);

        let mut offsets = Vec::with_capacity(n + 1);
        let mut flat = Vec::with_capacity(deps.iter().map(Vec::len).sum());
        offsets.push(0u32);
        for d in deps {
            flat.extend(d);
            offsets.push(flat.len() as u32);
        }
        Graph {
            offsets,
            deps: flat,
            runs,
        }
    }

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

impl Facts {
    #[allow(clippy::too_many_arguments)]
    fn note_response(
        &self,
        i: u32,
        arena: &Arena,
        seen: &mut HashMap<u64, Seen>,
        by_id: &mut HashMap<(u64, u64), (u32, u16)>,
        by_name: &mut HashMap<(u64, u64), (u32, u16)>,
        by_text: &mut HashMap<(u64, u64), u32>,
        by_output: &mut HashMap<u64, u32>,
    ) {
        for v in self.values_out(arena) {
            let s = seen.entry(v).or_insert(Seen::Response(i));
            if let Seen::Response(d) = *s {
                if d != i {
                    *s = Seen::Responses;
                }
            }
        }
        if let Some(l) = &self.llm {
            for (j, c) in l.calls.iter().enumerate() {
                let j = j as u16;
                if let Some(id) = c.id {
                    by_id.insert((self.agent, id), (i, j));
                }
                by_name.insert((self.agent, c.name), (i, j));
            }
            for &t in &l.texts_out {
                by_text.insert((self.agent, t), i);
            }
        } else if let Some(b) = self.body_out.digest {
            by_output.insert(b, i);
        }
    }
}

/// Each tool call's run: from the end of the response that asked for it to the request
/// that carried its result back, else the agent's next LLM request, else the session end.
fn tool_call_runs(facts: &[Facts], closing: &HashMap<(u32, u16), u32>) -> Vec<ToolCallRun> {
    let session_end = facts.iter().map(|f| f.end_ns).max().unwrap_or(0);
    let mut llm_starts: HashMap<u64, Vec<u64>> = HashMap::new();
    for f in facts.iter().filter(|f| f.llm.is_some()) {
        llm_starts.entry(f.agent).or_default().push(f.start_ns);
    }
    for v in llm_starts.values_mut() {
        v.sort_unstable();
    }
    let mut runs = Vec::new();
    for (d, f) in facts.iter().enumerate() {
        let Some(l) = f.llm.as_ref().filter(|l| !l.calls.is_empty()) else {
            continue;
        };
        let next_llm = llm_starts.get(&f.agent).and_then(|v| {
            let k = v.partition_point(|s| *s < f.end_ns);
            v.get(k).copied()
        });
        for j in 0..l.calls.len() {
            let close = closing.get(&(d as u32, j as u16)).copied();
            let to_ns = close
                .map(|k| facts[k as usize].start_ns)
                .or(next_llm)
                .unwrap_or(session_end);
            runs.push(ToolCallRun {
                llm: d as u32,
                call: j as u16,
                from_ns: f.end_ns,
                to_ns: to_ns.max(f.end_ns),
                closing: close,
            });
        }
    }
    runs
}

/// Links the tool requests made while a call ran that carry its argument values.
fn link_arguments(facts: &[Facts], arena: &Arena, runs: &[ToolCallRun], deps: &mut [Vec<Dep>]) {
    if runs.is_empty() {
        return;
    }
    let mut by_start: Vec<(u64, u32)> = facts
        .iter()
        .enumerate()
        .filter(|(_, f)| f.llm.is_none() && f.url.words.is_some())
        .map(|(i, f)| (f.start_ns, i as u32))
        .collect();
    by_start.sort_unstable();
    for run in runs {
        let d = &facts[run.llm as usize];
        let Some(call) = d.llm.as_ref().and_then(|l| l.calls.get(run.call as usize)) else {
            continue;
        };
        let first = by_start.partition_point(|(s, _)| *s < run.from_ns);
        for &(start, k) in &by_start[first..] {
            if start > run.to_ns {
                break;
            }
            let e = &facts[k as usize];
            if e.agent != d.agent || k <= run.llm {
                continue;
            }
            let (matched, value) = call.needles.matched(|w| e.has_word(arena, w));
            if let (true, Some(value)) = (matched > 0, value) {
                deps[k as usize].push(Dep {
                    on: run.llm,
                    link: Link::ToolArguments {
                        call: run.call,
                        matched: matched.min(u16::MAX as usize) as u16,
                    },
                    value,
                });
            }
        }
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
