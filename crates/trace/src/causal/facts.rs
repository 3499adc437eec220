//! What the graph reads of one event: its bodies and URL scanned into hashes, and for an
//! LLM exchange the tool results, tool-call ids and assistant texts its request holds and
//! the tool calls and text its response gave (from the provider adapters).

use std::borrow::Cow;

use serde_json::Value;

use super::tokens::{self, hash, needle_words, Arena, Keep, Run, Scan};
use super::{Exchange, Graph};
use crate::adapters::{LlmCall, ToolCall, ToolResult};
use tapedeck_model::exchange::canonical::percent_decode;

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

pub(super) struct CallFacts {
    pub(super) id: Option<u64>,
    pub(super) name: u64,
    pub(super) needles: Needles,
}

pub(super) struct ResultFacts {
    pub(super) id: Option<u64>,
    pub(super) name: Option<u64>,
    pub(super) content: Option<u64>,
}

/// What an LLM exchange adds: the messages its request holds, the calls and text its
/// response gave.
#[derive(Default)]
pub(super) struct LlmFacts {
    pub(super) results: Vec<ResultFacts>,
    pub(super) held_ids: Vec<u64>,
    pub(super) held_texts: Vec<u64>,
    pub(super) calls: Vec<CallFacts>,
    pub(super) texts_out: Vec<u64>,
}

/// One event as the graph sees it: hashes only (in the builder's arena), bodies shared
/// between the events that have the same one.
pub(super) struct Facts {
    pub(super) agent: u64,
    pub(super) start_ns: u64,
    pub(super) end_ns: u64,
    pub(super) url: Scan,
    pub(super) body_in: Scan,
    pub(super) body_out: Scan,
    /// More values of the response: `Location`, an LLM's assembled text and arguments.
    pub(super) extra_out: Run,
    pub(super) llm: Option<Box<LlmFacts>>,
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

    pub(super) fn values_in<'a>(&self, arena: &'a Arena) -> impl Iterator<Item = u64> + 'a {
        arena
            .get(self.url.values)
            .iter()
            .chain(arena.get(self.body_in.values))
            .copied()
    }

    pub(super) fn values_out<'a>(&self, arena: &'a Arena) -> impl Iterator<Item = u64> + 'a {
        arena
            .get(self.body_out.values)
            .iter()
            .chain(arena.get(self.extra_out))
            .copied()
    }

    pub(super) fn has_word(&self, arena: &Arena, w: u64) -> bool {
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
        super::build::build(&self.facts, &self.arena)
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
