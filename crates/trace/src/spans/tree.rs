//! The batch span tree of a session, built in stages that each read in a screen: the
//! roots (an `invoke_workflow` over its agents, or one agent), the LLM calls under their
//! agent, the tool calls under the LLM call that asked for them with the exchanges each
//! claimed, then every other exchange. [`build_from`] runs them in that order; the spans
//! of one exchange come from [`super::exchange`], as the live export's do.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::exchange::{exchange_span, llm_spans, set_error};
use super::{
    agent_root, error_of, http_attrs, new_span, parse_events, s, tool_call_span, tool_graph,
    trace_id, ws_time, AttrValue, Parsed, Role, Span, SpanKind, Trace, TraceOptions,
};
use crate::adapters::{ToolCall, ToolResult};
use crate::causal::{answers, Graph, ToolCallRun};
use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::Rules;
use tapedeck_store::recording::Recording;

/// Builds the span tree of a recording.
pub fn build(rec: &Recording, rules: &Rules, opts: &TraceOptions) -> Trace {
    let parsed = parse_events(rec);
    build_from(&rec.session, &parsed, rules, opts)
}

/// Builds the span tree of parsed events (bodies already read).
pub fn build_from(session: &str, parsed: &[Parsed], rules: &Rules, opts: &TraceOptions) -> Trace {
    let mut b = Builder::new(session, parsed, opts);
    let agents = b.roots(parsed);
    b.llm_calls(parsed, &agents);
    b.tool_calls(parsed);
    b.exchanges(parsed, &agents, rules);
    b.finish()
}

/// Where each agent's spans hang; `None` is the session's root.
type Agents<'p> = HashMap<Option<&'p str>, usize>;

fn parent_of(ev: &Event, agents: &Agents) -> usize {
    agents.get(&ev.agent.as_deref()).copied().unwrap_or(0)
}

/// The spans so far, and what the later stages need of the earlier ones.
struct Builder<'a> {
    session: &'a str,
    opts: &'a TraceOptions,
    /// The session's end: where a tool call nothing answered ends.
    end: u64,
    spans: Vec<Span>,
    /// The span of each LLM call, by event index and turn.
    llm: HashMap<(usize, usize), usize>,
    /// The tool-call span that claimed each exchange, by event index.
    claimed: Vec<Option<usize>>,
    /// The tool exchanges (event index) by when they started, on the monotonic clock and
    /// on the wall clock: a call's tool calls look only at the exchanges that started in
    /// their windows, not at every later one (a 10,000-step run spent a third of its
    /// build scanning).
    tools_by_start: [Vec<(u64, usize)>; 2],
}

/// The clock a tool call's window is on: HTTP calls use the recorder's monotonic
/// `start_ns`, a Realtime session's turns the wall clock of its messages.
#[derive(Clone, Copy)]
enum Clock {
    Monotonic = 0,
    Wall = 1,
}

impl Clock {
    fn start(self, ev: &Event) -> u64 {
        match self {
            Clock::Monotonic => ev.timing.start_ns,
            Clock::Wall => ev.timing.start_unix_ns,
        }
    }
}

/// From the first start to the last end of some exchanges (Unix ns).
fn time_range<'e>(events: impl Iterator<Item = &'e Event> + Clone) -> (u64, u64) {
    let start = events
        .clone()
        .map(|e| e.timing.start_unix_ns)
        .min()
        .unwrap_or(0);
    let end = events.map(|e| e.timing.end_unix_ns).max().unwrap_or(start);
    (start, end)
}

/// When some exchanges ran, what they used and with which provider.
struct Summary {
    start: u64,
    end: u64,
    provider: Option<String>,
    input: u64,
    output: u64,
}

impl Summary {
    fn of(parsed: &[&Parsed]) -> Summary {
        let (start, end) = time_range(parsed.iter().map(|p| p.event));
        let provider = parsed
            .iter()
            .find_map(|p| p.calls().first().map(|(l, _, _)| l.provider.clone()));
        let (mut input, mut output) = (0, 0);
        for (c, _, _) in parsed.iter().flat_map(|p| p.calls()) {
            // Counts come from recorded bodies: saturate rather than overflow.
            input = c.input_tokens.unwrap_or(0).saturating_add(input);
            output = c.output_tokens.unwrap_or(0).saturating_add(output);
        }
        Summary {
            start,
            end,
            provider,
            input,
            output,
        }
    }

    fn usage(&self, a: &mut Vec<(String, AttrValue)>) {
        a.push((
            "gen_ai.usage.input_tokens".into(),
            super::count_attr(self.input),
        ));
        a.push((
            "gen_ai.usage.output_tokens".into(),
            super::count_attr(self.output),
        ));
    }
}

impl<'a> Builder<'a> {
    fn new(session: &'a str, parsed: &[Parsed], opts: &'a TraceOptions) -> Builder<'a> {
        let (_, end) = time_range(parsed.iter().map(|p| p.event));
        let by = |clock: Clock| {
            let mut v: Vec<(u64, usize)> = (parsed.iter().enumerate())
                .filter(|(_, q)| q.is_tool())
                .map(|(k, q)| (clock.start(q.event), k))
                .collect();
            v.sort_unstable();
            v
        };
        Builder {
            session,
            opts,
            end,
            spans: Vec::new(),
            llm: HashMap::new(),
            claimed: vec![None; parsed.len()],
            tools_by_start: [by(Clock::Monotonic), by(Clock::Wall)],
        }
    }

    /// Puts a built span in the tree under `parent`.
    fn attach(&mut self, parent: Option<usize>, mut span: Span) -> usize {
        let i = self.spans.len();
        span.parent = parent;
        self.spans.push(span);
        if let Some(p) = parent {
            self.spans[p].children.push(i);
        }
        i
    }

    /// An `invoke_*` span of the session (no step) under `parent`.
    fn add_internal(
        &mut self,
        parent: Option<usize>,
        (role, id_role, index): (Role, &str, usize),
        name: String,
        sum: &Summary,
        attributes: Vec<(String, AttrValue)>,
    ) -> usize {
        let span = new_span(
            self.session,
            role,
            id_role,
            None,
            index,
            name,
            SpanKind::Internal,
            sum.start,
            sum.end,
            attributes,
        );
        self.attach(parent, span)
    }

    /// The root: one `invoke_agent` span, or with two or more agents an
    /// `invoke_workflow` span with an `invoke_agent` span per agent under it.
    fn roots<'p>(&mut self, parsed: &'p [Parsed]) -> Agents<'p> {
        let all: Vec<&Parsed> = parsed.iter().collect();
        let whole = Summary::of(&all);
        let names: BTreeSet<&'p str> = parsed
            .iter()
            .filter_map(|p| p.event.agent.as_deref())
            .collect();
        let mut agents = Agents::new();
        if names.len() < 2 {
            let agent = names.iter().next().copied();
            let provider = whole.provider.as_deref().unwrap_or("unknown");
            let (name, a) = agent_root(self.session, provider, agent, whole.input, whole.output);
            let root = self.add_internal(None, (Role::Agent, "root", 0), name, &whole, a);
            agents.insert(None, root);
            agents.insert(agent, root);
            return agents;
        }
        let session = self.session;
        let mut a = vec![
            ("gen_ai.operation.name".to_string(), s("invoke_workflow")),
            ("gen_ai.workflow.name".to_string(), s(session)),
            ("tapedeck.session".to_string(), s(session)),
        ];
        whole.usage(&mut a);
        let name = format!("invoke_workflow {session}");
        let root = self.add_internal(None, (Role::Workflow, "root", 0), name, &whole, a);
        agents.insert(None, root);
        for (i, agent) in names.into_iter().enumerate() {
            let mine: Vec<&Parsed> = parsed
                .iter()
                .filter(|p| p.event.agent.as_deref() == Some(agent))
                .collect();
            let sum = Summary::of(&mine);
            let provider = (sum.provider.as_ref().or(whole.provider.as_ref()))
                .map_or("unknown", String::as_str);
            let mut a = vec![
                ("gen_ai.operation.name".to_string(), s("invoke_agent")),
                ("gen_ai.provider.name".to_string(), s(provider)),
                ("gen_ai.agent.name".to_string(), s(agent)),
            ];
            sum.usage(&mut a);
            let name = format!("invoke_agent {agent}");
            let sp = self.add_internal(Some(root), (Role::Agent, "agent", i + 1), name, &sum, a);
            agents.insert(Some(agent), sp);
        }
        agents
    }

    /// The LLM calls, each under its agent: one span per call (per model turn of a
    /// Realtime session).
    fn llm_calls(&mut self, parsed: &[Parsed], agents: &Agents) {
        for (i, p) in parsed.iter().enumerate() {
            if p.event.kind != Kind::Llm {
                continue;
            }
            let parent = parent_of(p.event, agents);
            for (turn, span) in llm_spans(self.session, p, self.opts)
                .into_iter()
                .enumerate()
            {
                let sp = self.attach(Some(parent), span);
                self.llm.insert((i, turn), sp);
            }
        }
    }

    /// Tool calls: each under the LLM call whose response asked for it, closed by the
    /// first later LLM request that carries its result; the exchanges made while it ran
    /// belong to it. The dependency graph says both for HTTP exchanges, as replay reads
    /// it; a Realtime session's calls are answered inside its own stream, by time.
    fn tool_calls(&mut self, parsed: &[Parsed]) {
        let graph = tool_graph(parsed);
        let carriers = carriers(parsed);
        for i in 0..parsed.len() {
            if parsed[i].realtime.is_none() {
                self.http_tool_calls(parsed, &graph, i);
            } else {
                self.realtime_tool_calls(parsed, &carriers, i);
            }
        }
    }

    /// The tool calls of HTTP LLM exchange `i`, as the dependency graph runs them.
    fn http_tool_calls(&mut self, parsed: &[Parsed], graph: &Graph, i: usize) {
        let p = &parsed[i];
        let Some(call) = &p.llm else { return };
        let Some(&llm_sp) = self.llm.get(&(i, 0)) else {
            return;
        };
        let mut spans = Vec::new();
        let mut runs: Vec<ToolCallRun> = Vec::new();
        for run in graph.tool_calls(i) {
            let j = run.call as usize;
            let Some(tc) = call.tool_calls.get(j) else {
                continue;
            };
            let closing = run.closing.and_then(|k| {
                let k = k as usize;
                let r = parsed[k]
                    .llm
                    .as_ref()?
                    .tool_results
                    .iter()
                    .find(|r| answers(r, tc))?;
                Some((k, r))
            });
            let start = p.event.timing.end_unix_ns;
            let end = closing.map_or(self.end, |(k, _)| parsed[k].event.timing.start_unix_ns);
            let result = closing.map(|(k, r)| (r, parsed[k].event.step));
            let span = tool_call_span(
                self.session,
                p.event.step,
                j,
                tc,
                start,
                end,
                result,
                self.opts,
            );
            spans.push(self.attach(Some(llm_sp), span));
            runs.push(*run);
        }
        let from = runs.iter().map(|r| r.from_ns).min().unwrap_or(0);
        let to = runs.iter().map(|r| r.to_ns).max().unwrap_or(0);
        self.claim(
            parsed,
            i,
            &spans,
            (Clock::Monotonic, from..=to),
            |j, q| (runs[j].from_ns..=runs[j].to_ns).contains(&q.event.timing.start_ns),
            |j, k, q| {
                let c = runs[j].call as usize;
                (
                    mcp_match(&call.tool_calls[c], q),
                    graph.arguments_matched(k, i, c),
                )
            },
        );
    }

    /// The tool calls of a Realtime session's turns (indices run across its turns),
    /// answered by the first later result that carries their id.
    fn realtime_tool_calls(&mut self, parsed: &[Parsed], carriers: &[Carrier], i: usize) {
        let p = &parsed[i];
        let mut index = 0;
        for (turn, (call, _, call_end)) in p.calls().into_iter().enumerate() {
            let Some(&llm_sp) = self.llm.get(&(i, turn)) else {
                continue;
            };
            let mut spans = Vec::new();
            let mut windows = Vec::new();
            let mut needles = Vec::new();
            for tc in &call.tool_calls {
                let closing = carriers
                    .iter()
                    .find(|c| c.at >= call_end && answers(c.result, tc));
                let end = closing.map_or(self.end, |c| c.at).max(call_end);
                let result = closing.map(|c| (c.result, c.step));
                let span = tool_call_span(
                    self.session,
                    p.event.step,
                    index,
                    tc,
                    call_end,
                    end,
                    result,
                    self.opts,
                );
                index += 1;
                spans.push(self.attach(Some(llm_sp), span));
                windows.push(call_end..=end);
                let mut n = Vec::new();
                argument_needles(&tc.arguments, &mut n);
                needles.push(n);
            }
            let to = windows.iter().map(|w| *w.end()).max().unwrap_or(call_end);
            self.claim(
                parsed,
                i,
                &spans,
                (Clock::Wall, call_end..=to),
                |j, q| windows[j].contains(&q.event.timing.start_unix_ns),
                |j, _, q| {
                    (
                        mcp_match(&call.tool_calls[j], q),
                        match_score(&needles[j], q),
                    )
                },
            );
        }
    }

    /// Gives each later tool exchange of the same agent that no call has yet to the
    /// call (`tool_spans[j]`) whose window `fits` it and that `score`s it highest, then
    /// the least loaded, then the first. `hull` holds every window (on its clock): only
    /// the tool exchanges that started in it are looked at, in step order.
    fn claim<K: Ord>(
        &mut self,
        parsed: &[Parsed],
        i: usize,
        tool_spans: &[usize],
        (clock, hull): (Clock, std::ops::RangeInclusive<u64>),
        fits: impl Fn(usize, &Parsed) -> bool,
        score: impl Fn(usize, usize, &Parsed) -> K,
    ) {
        if tool_spans.is_empty() {
            return;
        }
        let by_start = &self.tools_by_start[clock as usize];
        let first = by_start.partition_point(|&(t, _)| t < *hull.start());
        let mut candidates: Vec<usize> = by_start[first..]
            .iter()
            .take_while(|&&(t, _)| t <= *hull.end())
            .map(|&(_, k)| k)
            .filter(|&k| k > i)
            .collect();
        candidates.sort_unstable();
        let agent = parsed[i].event.agent.as_deref();
        let mut load = vec![0usize; tool_spans.len()];
        for k in candidates {
            let q = &parsed[k];
            if self.claimed[k].is_some() || q.event.agent.as_deref() != agent {
                continue;
            }
            let best = (0..tool_spans.len())
                .filter(|&j| fits(j, q))
                .max_by_key(|&j| (score(j, k, q), usize::MAX - load[j], usize::MAX - j));
            if let Some(j) = best {
                load[j] += 1;
                self.claimed[k] = Some(tool_spans[j]);
            }
        }
    }

    /// Every non-LLM exchange: an MCP client span, an HTTP span under the tool call that
    /// claimed it, or a span of its own under its agent.
    fn exchanges(&mut self, parsed: &[Parsed], agents: &Agents, rules: &Rules) {
        for (k, q) in parsed.iter().enumerate() {
            let ev = q.event;
            if ev.kind == Kind::Llm {
                continue;
            }
            let claimed = self.claimed[k];
            let parent = parent_of(ev, agents);
            let sp = match self.mcp_span(q, claimed.unwrap_or(parent)) {
                Some(sp) => sp,
                None => {
                    let parts = UrlParts::parse(&ev.request.url);
                    let name = crate::tool_names::by_rule_with(&ev.request.method, &parts, rules);
                    let span =
                        exchange_span(self.session, q, &name, &parts.host, claimed.is_some());
                    self.attach(Some(claimed.unwrap_or(parent)), span)
                }
            };
            if let Some(tool_sp) = claimed {
                self.pass_to_tool_call(sp, tool_sp);
            }
            if q.is_empty_answer() {
                self.spans[sp].flag = Some("empty");
                if let Some(tool_sp) = claimed {
                    self.spans[tool_sp].flag = Some("empty");
                }
            }
        }
    }

    /// A tool call fails as the first failed exchange it claimed.
    fn pass_to_tool_call(&mut self, sp: usize, tool_sp: usize) {
        let Some(msg) = self.spans[sp].error.clone() else {
            return;
        };
        if self.spans[tool_sp].error.is_none() {
            let t = match self.spans[sp].attr("error.type") {
                Some(AttrValue::Str(t)) => t.clone(),
                _ => "_OTHER".into(),
            };
            set_error(&mut self.spans[tool_sp], Some((t, msg)));
        }
    }

    /// The client span of an MCP call (semconv v1.41.1, `docs/gen-ai/mcp.md`) under
    /// `parent`: the `execute_tool` span that claimed it, else its agent (a `tools/call`
    /// then stands for the tool call itself). `None` when the exchange is no MCP call.
    fn mcp_span(&mut self, q: &Parsed, parent: usize) -> Option<usize> {
        let m = q.mcp.as_ref()?;
        let name = m.span_name()?;
        let ev = q.event;
        let mut a = vec![("mcp.method.name".to_string(), s(m.method.clone()?))];
        if m.is_tool_call() {
            a.push(("gen_ai.operation.name".into(), s("execute_tool")));
            if let Some(t) = &m.tool_name {
                a.push(("gen_ai.tool.name".into(), s(t.clone())));
            }
        }
        if let Some(id) = &m.request_id {
            a.push(("jsonrpc.request.id".into(), s(id.clone())));
        }
        if let Some(v) = &m.session_id {
            a.push(("mcp.session.id".into(), s(v.clone())));
        }
        if let Some(v) = &m.protocol_version {
            a.push(("mcp.protocol.version".into(), s(v.clone())));
        }
        a.push(("network.transport".into(), s("tcp")));
        a.push(("network.protocol.name".into(), s("http")));
        let version = ev.request.version.trim_start_matches("HTTP/");
        a.push(("network.protocol.version".into(), s(version)));
        if self.opts.include_content {
            if let Some(args) = &m.arguments {
                a.push(("gen_ai.tool.call.arguments".into(), s(args.to_string())));
            }
            if let (Some(r), false) = (&m.result_text, m.is_error) {
                a.push(("gen_ai.tool.call.result".into(), s(r.clone())));
            }
        }
        if m.messages > 1 {
            a.push((
                "tapedeck.jsonrpc.batch".into(),
                AttrValue::Int(m.messages as i64),
            ));
        }
        a.extend(http_attrs(ev));
        let error = match (m.error_type(), m.error_message()) {
            (Some(t), Some(msg)) => {
                if let Some((code, _)) = &m.rpc_error {
                    a.push(("rpc.response.status_code".into(), s(code.to_string())));
                }
                Some((t, msg))
            }
            _ => error_of(q),
        };
        let mut span = new_span(
            self.session,
            Role::Mcp,
            "mcp",
            Some(ev.step),
            0,
            name,
            SpanKind::Client,
            ev.timing.start_unix_ns,
            ev.timing.end_unix_ns,
            a,
        );
        set_error(&mut span, error);
        Some(self.attach(Some(parent), span))
    }

    /// The tree, each span's children in start order for reading.
    fn finish(mut self) -> Trace {
        let starts: Vec<(u64, Option<u64>)> =
            self.spans.iter().map(|s| (s.start_ns, s.step)).collect();
        for sp in &mut self.spans {
            sp.children.sort_by_key(|&c| starts[c]);
        }
        Trace {
            session: self.session.to_string(),
            trace_id: trace_id(self.session),
            spans: self.spans,
        }
    }
}

/// A tool result on its way back: when (Unix ns), in which event, at which step.
struct Carrier<'p> {
    at: u64,
    event: usize,
    step: u64,
    result: &'p ToolResult,
}

/// Where tool results came back, in time order: each LLM request (at its start) and each
/// result a Realtime client sent (at its own time).
fn carriers<'p>(parsed: &'p [Parsed]) -> Vec<Carrier<'p>> {
    let mut out = Vec::new();
    for (k, q) in parsed.iter().enumerate() {
        let step = q.event.step;
        match (&q.realtime, &q.llm) {
            (Some(rt), _) => out.extend(rt.results.iter().map(|r| Carrier {
                at: ws_time(q.event, r.at_ms),
                event: k,
                step,
                result: &r.result,
            })),
            (None, Some(call)) => out.extend(call.tool_results.iter().map(|r| Carrier {
                at: q.event.timing.start_unix_ns,
                event: k,
                step,
                result: r,
            })),
            _ => {}
        }
    }
    out.sort_by_key(|c| (c.at, c.event));
    out
}

/// How well an MCP `tools/call` answers an LLM tool call: 2 for the same tool and
/// arguments, 1 for the same tool, 0 otherwise (or not MCP).
fn mcp_match(tc: &ToolCall, q: &Parsed) -> u8 {
    let Some(m) = q.mcp.as_ref().filter(|m| m.is_tool_call()) else {
        return 0;
    };
    if m.tool_name.as_deref() != Some(tc.name.as_str()) {
        return 0;
    }
    let args = match &tc.arguments {
        Value::String(raw) => serde_json::from_str(raw).unwrap_or(Value::Null),
        v => v.clone(),
    };
    if m.arguments.as_ref().unwrap_or(&json!({})) == &args {
        2
    } else {
        1
    }
}

/// Scalar argument values, to find the HTTP request a Realtime session's tool call made
/// (HTTP exchanges are linked by the dependency graph; a Realtime turn is not an event).
fn argument_needles(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() >= 2 => {
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                if inner.is_object() || inner.is_array() {
                    return argument_needles(&inner, out);
                }
            }
            out.push(s.clone());
        }
        Value::Number(n) => out.push(n.to_string()),
        Value::Object(m) => m.values().for_each(|x| argument_needles(x, out)),
        Value::Array(a) => a.iter().for_each(|x| argument_needles(x, out)),
        _ => {}
    }
}

/// How many of `needles` a request carries in its URL or body.
fn match_score(needles: &[String], p: &Parsed) -> usize {
    let url = p.event.request.url.to_ascii_lowercase();
    let url_decoded = url.replace("%20", " ").replace('+', " ");
    let body = String::from_utf8_lossy(&p.request_body).to_ascii_lowercase();
    needles
        .iter()
        .filter(|n| {
            let n = n.to_ascii_lowercase();
            url.contains(&n) || url_decoded.contains(&n) || body.contains(&n)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::detect::testing::{asks, llm_call, llm_event, parsed, tool_event};

    fn tree(p: &[Parsed]) -> Trace {
        build_from("s", p, &Rules::default(), &TraceOptions::default())
    }

    fn find(t: &Trace, role: Role, step: u64) -> usize {
        t.spans
            .iter()
            .position(|sp| sp.role == role && sp.step == Some(step))
            .unwrap()
    }

    #[test]
    fn one_agent_is_one_invoke_agent_root_with_the_sessions_tokens() {
        let (a, b) = (llm_event(1, None, 0, 10), llm_event(2, None, 20, 30));
        let p = [
            parsed(&a, Some(llm_call(100, vec![], "hi")), "", ""),
            parsed(&b, Some(llm_call(50, vec![], "bye")), "", ""),
        ];
        let t = tree(&p);
        let root = &t.spans[0];
        assert_eq!(
            (root.name.as_str(), root.role),
            ("invoke_agent", Role::Agent)
        );
        assert_eq!(root.int("gen_ai.usage.input_tokens"), Some(150));
        assert_eq!(root.int("gen_ai.usage.output_tokens"), Some(20));
        assert_eq!((root.start_ns, root.end_ns), (0, 30_000_000));
        assert_eq!(t.spans[find(&t, Role::Llm, 2)].parent, Some(0));
    }

    #[test]
    fn token_counts_past_the_largest_integer_saturate() {
        // Counts come from recorded bodies, which may say anything.
        let (a, b) = (llm_event(1, None, 0, 10), llm_event(2, None, 20, 30));
        let p = [
            parsed(&a, Some(llm_call(u64::MAX - 1, vec![], "")), "", ""),
            parsed(&b, Some(llm_call(u64::MAX - 1, vec![], "")), "", ""),
        ];
        let t = tree(&p);
        assert_eq!(t.spans[0].int("gen_ai.usage.input_tokens"), Some(i64::MAX));
        // Each call at the largest attribute, summed without overflow.
        assert_eq!(t.totals().input_tokens, 2 * i64::MAX as u64);
    }

    #[test]
    fn two_agents_make_a_workflow_with_an_agent_span_each() {
        let (a, b) = (
            llm_event(1, Some("planner"), 0, 10),
            llm_event(2, Some("writer"), 20, 30),
        );
        let p = [
            parsed(&a, Some(llm_call(100, vec![], "")), "", ""),
            parsed(&b, Some(llm_call(7, vec![], "")), "", ""),
        ];
        let t = tree(&p);
        assert_eq!(t.spans[0].role, Role::Workflow);
        assert_eq!(t.spans[0].name, "invoke_workflow s");
        assert_eq!(t.spans[0].int("gen_ai.usage.input_tokens"), Some(107));
        let writer = t.spans[find(&t, Role::Llm, 2)].parent.unwrap();
        assert_eq!(t.spans[writer].name, "invoke_agent writer");
        assert_eq!(t.spans[writer].parent, Some(0));
        assert_eq!(t.spans[writer].int("gen_ai.usage.input_tokens"), Some(7));
        assert_eq!(
            (t.spans[writer].start_ns, t.spans[writer].end_ns),
            (20_000_000, 30_000_000)
        );
    }

    /// An LLM call asks for the weather in Paris, a tool fetches it (answering
    /// `status` with `body`), and the next LLM call carries the result back.
    fn weather(status: u16) -> [Event; 3] {
        [
            llm_event(1, None, 0, 10),
            tool_event(
                2,
                None,
                "https://weather.test/now?city=Paris",
                status,
                20,
                30,
            ),
            llm_event(3, None, 40, 50),
        ]
    }

    fn weather_parsed<'a>(ev: &'a [Event; 3], body: &str) -> [Parsed<'a>; 3] {
        let ask = asks("c1", "get_weather", serde_json::json!({"city": "Paris"}));
        [
            parsed(&ev[0], Some(ask), "", ""),
            parsed(&ev[1], None, "", body),
            parsed(&ev[2], Some(llm_call(10, vec![("c1", body)], "ok")), "", ""),
        ]
    }

    #[test]
    fn a_tool_call_hangs_under_its_llm_call_holds_its_exchange_and_ends_at_the_result() {
        let ev = weather(200);
        let t = tree(&weather_parsed(&ev, "{\"sky\":\"clear\"}"));
        let tool = find(&t, Role::Tool, 1);
        let sp = &t.spans[tool];
        assert_eq!(sp.name, "execute_tool get_weather");
        assert_eq!(sp.parent, Some(find(&t, Role::Llm, 1)));
        assert_eq!((sp.start_ns, sp.end_ns), (10_000_000, 40_000_000));
        let result = sp
            .events
            .iter()
            .find(|e| e.name == "gen_ai.tool.result")
            .unwrap();
        assert!(result
            .attributes
            .contains(&("tapedeck.result.step".into(), AttrValue::Int(3))));
        let http = find(&t, Role::Http, 2);
        assert_eq!(t.spans[http].parent, Some(tool));
        assert!(sp.error.is_none() && sp.flag.is_none());
    }

    #[test]
    fn a_tool_call_fails_and_is_empty_as_its_exchange_is() {
        let ev = weather(503);
        let t = tree(&weather_parsed(&ev, "{}"));
        let sp = &t.spans[find(&t, Role::Tool, 1)];
        assert_eq!(sp.error.as_deref(), Some("HTTP 503"));
        assert_eq!(sp.attr("error.type"), Some(&AttrValue::Str("503".into())));
        let ev = weather(200);
        let t = tree(&weather_parsed(&ev, "[]"));
        let sp = &t.spans[find(&t, Role::Tool, 1)];
        assert_eq!(sp.flag, Some("empty"));
        assert_eq!(t.spans[find(&t, Role::Http, 2)].flag, Some("empty"));
    }

    #[test]
    fn children_read_in_start_order_whatever_stage_made_them() {
        let ev = [
            tool_event(1, None, "https://tools.test/a", 200, 0, 5),
            llm_event(2, None, 10, 20),
        ];
        let p = [
            parsed(&ev[0], None, "", "{\"a\":1}"),
            parsed(&ev[1], Some(llm_call(1, vec![], "")), "", ""),
        ];
        let t = tree(&p);
        let order: Vec<Role> = t.spans[0]
            .children
            .iter()
            .map(|&c| t.spans[c].role)
            .collect();
        assert_eq!(order, [Role::Tool, Role::Llm]);
    }
}
