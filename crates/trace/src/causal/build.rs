//! Building the graph: one walk through the session in time order (each response at its
//! end, each request at its start), remembering where every value, tool-call id, tool
//! name, assistant text and tool answer was first seen; then each tool call's run and
//! the tool requests that carry its arguments.

use foldhash::{HashMap, HashMapExt};

use super::facts::Facts;
use super::tokens::Arena;
use super::{Dep, Graph, Link, ToolCallRun};

/// An event keeps at most this many dependencies from its messages and values (the most
/// recent): an LLM request carries its whole history, and the older events it holds are
/// reached through the newer ones, which carried them before.
const MAX_DEPS: usize = 16;

#[derive(Clone, Copy)]
enum Seen {
    Request,
    Response(u32),
    /// In several responses: it no longer says which one a request took it from.
    Responses,
}

/// Where things were seen so far in the walk. Ids, names and texts are per agent.
struct Walk<'a> {
    facts: &'a [Facts],
    arena: &'a Arena,
    seen: HashMap<u64, Seen>,
    by_id: HashMap<(u64, u64), (u32, u16)>,
    by_name: HashMap<(u64, u64), (u32, u16)>,
    by_text: HashMap<(u64, u64), u32>,
    by_output: HashMap<u64, u32>,
    /// The first request that carried each tool call's result back.
    closing: HashMap<(u32, u16), u32>,
}

pub(super) fn build(facts: &[Facts], arena: &Arena) -> Graph {
    let n = facts.len();
    // Responses at their end, requests at their start; at the same instant the response
    // comes first.
    let mut timeline: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * n);
    for (i, f) in facts.iter().enumerate() {
        timeline.push((f.start_ns, true, i as u32));
        timeline.push((f.end_ns, false, i as u32));
    }
    timeline.sort_unstable();
    let mut walk = Walk {
        facts,
        arena,
        seen: HashMap::new(),
        by_id: HashMap::new(),
        by_name: HashMap::new(),
        by_text: HashMap::new(),
        by_output: HashMap::new(),
        closing: HashMap::new(),
    };
    let mut deps: Vec<Vec<Dep>> = (0..n).map(|_| Vec::new()).collect();
    for &(_, is_request, i) in &timeline {
        if is_request {
            deps[i as usize] = walk.request(i);
        } else {
            walk.response(i);
        }
    }
    let runs = tool_call_runs(facts, &walk.closing);
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

impl Walk<'_> {
    /// Event `i`'s request: what it carries of earlier responses.
    fn request(&mut self, i: u32) -> Vec<Dep> {
        let f = &self.facts[i as usize];
        let mut found = Vec::new();
        self.llm_links(i, &mut found);
        for v in f.values_in(self.arena) {
            match self.seen.get(&v) {
                Some(Seen::Response(d)) => found.push(Dep {
                    on: *d,
                    link: Link::Value,
                    value: v,
                }),
                Some(_) => {}
                None => {
                    self.seen.insert(v, Seen::Request);
                }
            }
        }
        // Only an earlier event can be depended on (times that tie, or a tape without
        // them, must not turn the order round). One link per event depended on (the first
        // found is the most telling), the most recent ones.
        found.retain(|d| d.on < i);
        found.sort_by_key(|d| std::cmp::Reverse(d.on));
        found.dedup_by_key(|d| d.on);
        found.truncate(MAX_DEPS);
        found
    }

    /// What an LLM request's messages hold: tool results, tool-call ids, assistant texts.
    fn llm_links(&mut self, i: u32, found: &mut Vec<Dep>) {
        let f = &self.facts[i as usize];
        let Some(l) = &f.llm else { return };
        for r in &l.results {
            let hit = match (r.id, r.name) {
                (Some(id), _) => self.by_id.get(&(f.agent, id)).map(|h| (*h, id)),
                (None, Some(name)) => self.by_name.get(&(f.agent, name)).map(|h| (*h, name)),
                (None, None) => None,
            };
            if let Some(((d, call), value)) = hit {
                found.push(Dep {
                    on: d,
                    link: Link::ToolResult { call },
                    value,
                });
                self.closing.entry((d, call)).or_insert(i);
            }
            if let Some(c) = r.content {
                if let Some(&d) = self.by_output.get(&c) {
                    found.push(Dep {
                        on: d,
                        link: Link::ToolOutput,
                        value: c,
                    });
                }
            }
        }
        for &id in &l.held_ids {
            if let Some(&(d, call)) = self.by_id.get(&(f.agent, id)) {
                found.push(Dep {
                    on: d,
                    link: Link::ToolCallId { call },
                    value: id,
                });
            }
        }
        for &t in &l.held_texts {
            if let Some(&d) = self.by_text.get(&(f.agent, t)) {
                found.push(Dep {
                    on: d,
                    link: Link::AssistantText,
                    value: t,
                });
            }
        }
    }

    /// Event `i`'s response: what it shows from now on.
    fn response(&mut self, i: u32) {
        let (facts, arena) = (self.facts, self.arena);
        let f = &facts[i as usize];
        // What this event's own request carried, read once it matters.
        let mut asked: Option<foldhash::HashSet<u64>> = None;
        for v in f.values_out(arena) {
            let s = self.seen.entry(v).or_insert(Seen::Response(i));
            if let Seen::Response(d) = *s {
                // An answer echoing a value its request carried (a lookup by an id D
                // handed out) leaves it D's: a later request holding it still depends on D.
                let mut echo = || {
                    asked
                        .get_or_insert_with(|| f.values_in(arena).collect())
                        .contains(&v)
                };
                if d != i && !echo() {
                    *s = Seen::Responses;
                }
            }
        }
        match &f.llm {
            Some(l) => {
                for (j, c) in l.calls.iter().enumerate() {
                    let j = j as u16;
                    if let Some(id) = c.id {
                        self.by_id.insert((f.agent, id), (i, j));
                    }
                    self.by_name.insert((f.agent, c.name), (i, j));
                }
                for &t in &l.texts_out {
                    self.by_text.insert((f.agent, t), i);
                }
            }
            None => {
                if let Some(b) = f.body_out.digest {
                    self.by_output.insert(b, i);
                }
            }
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
