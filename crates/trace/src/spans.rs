//! A session as a tree of OpenTelemetry GenAI spans (semantic conventions v1.41.1).
//!
//! The causal chain is the point: the agent invocation at the root, each LLM call under
//! its agent, each tool call under the LLM decision that asked for it (matched by tool
//! call id, else by name and order), and the HTTP exchanges made while the tool ran under
//! the tool span. A tool exchange no call claims becomes an `execute_tool` span of its
//! own. Times are the recorded ones; trace and span ids are derived from the session and
//! step, so exporting twice gives the same ids.

use serde_json::{json, Value};

use super::adapters::mcp::{self, McpCall};
use super::adapters::realtime;
use super::adapters::{self, LlmCall, ToolCall, ToolResult};
use super::causal::{self, Graph};
use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::{BodyRef, Event, Kind};
use tapedeck_store::recording::Recording;

mod exchange;
mod tree;

pub(crate) use exchange::{exchange_span, llm_spans};
pub use tree::{build, build_from};

pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.41.0";
pub const SEMCONV_VERSION: &str = "1.41.1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Client = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Workflow,
    Agent,
    Llm,
    Tool,
    Http,
    /// An MCP call (over Streamable HTTP): a client span per the MCP conventions.
    Mcp,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Workflow => "workflow",
            Role::Agent => "agent",
            Role::Llm => "llm",
            Role::Tool => "tool",
            Role::Http => "http",
            Role::Mcp => "mcp",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    StrArray(Vec<String>),
}

impl AttrValue {
    pub fn to_json(&self) -> Value {
        match self {
            AttrValue::Str(s) => json!(s),
            AttrValue::Int(i) => json!(i),
            AttrValue::Double(d) => json!(d),
            AttrValue::Bool(b) => json!(b),
            AttrValue::StrArray(v) => json!(v),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SpanEvent {
    pub name: String,
    pub time_ns: u64,
    pub attributes: Vec<(String, AttrValue)>,
}

#[derive(Clone, Debug)]
pub struct Span {
    pub span_id: [u8; 8],
    pub parent: Option<usize>,
    pub name: String,
    pub kind: SpanKind,
    pub role: Role,
    pub step: Option<u64>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(String, AttrValue)>,
    /// `Some(message)` when the span failed.
    pub error: Option<String>,
    pub events: Vec<SpanEvent>,
    pub children: Vec<usize>,
    /// A one-word flag for `show`: `empty` for an empty tool answer.
    pub flag: Option<&'static str>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attr(key) {
            Some(AttrValue::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn duration_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1e6
    }
}

pub struct Trace {
    pub session: String,
    pub trace_id: [u8; 16],
    /// `spans[0]` is the root; children are in start order.
    pub spans: Vec<Span>,
}

#[derive(Clone, Debug, Default)]
pub struct TraceOptions {
    /// Export message content and tool arguments/results (may hold personal data).
    pub include_content: bool,
}

pub fn trace_id(session: &str) -> [u8; 16] {
    let h = blake3::hash(format!("tapedeck trace {session}").as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.as_bytes()[..16]);
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

pub fn span_id(session: &str, role: &str, step: u64, index: usize) -> [u8; 8] {
    use std::io::Write;
    // Written straight into the hasher: live export computes one per exchange.
    let mut hasher = blake3::Hasher::new();
    let _ = write!(hasher, "tapedeck span {session} {role} {step} {index}");
    let h = hasher.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&h.as_bytes()[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Everything the tree needs of one event.
pub struct Parsed<'a> {
    pub event: &'a Event,
    pub llm: Option<LlmCall>,
    /// What an MCP exchange was (non-LLM events only).
    pub mcp: Option<McpCall>,
    /// A Realtime WebSocket session's model turns (see [`with_messages`](Parsed::with_messages)).
    pub realtime: Option<realtime::Session>,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
}

impl<'a> Parsed<'a> {
    /// Reads an event with its bodies: the adapters run on LLM events.
    pub fn new(event: &'a Event, request_body: Vec<u8>, response_body: Vec<u8>) -> Parsed<'a> {
        let llm = causal::load::parse_llm(event, &request_body, &response_body);
        let mcp = (event.kind != Kind::Llm)
            .then(|| {
                mcp::parse(
                    &event.request.method,
                    &event.request.headers,
                    &request_body,
                    event
                        .response
                        .as_ref()
                        .map(|r| r.headers.as_slice())
                        .unwrap_or(&[]),
                    &response_body,
                )
            })
            .flatten();
        Parsed {
            event,
            llm,
            mcp,
            realtime: None,
            request_body,
            response_body,
        }
    }

    /// Reads a WebSocket exchange's messages (`bodies` in the order of
    /// `event.ws.messages`): a Realtime session becomes its model turns.
    pub fn with_messages(mut self, bodies: &[bytes::Bytes]) -> Parsed<'a> {
        let ev = self.event;
        let Some(ws) = &ev.ws else { return self };
        if !realtime::is_realtime_url(&ev.request.url) {
            return self;
        }
        let messages: Vec<realtime::WireMessage> = ws
            .messages
            .iter()
            .zip(bodies)
            .filter(|(m, _)| m.op.is_data())
            .map(|(m, b)| realtime::WireMessage {
                from_client: m.from == tapedeck_model::exchange::ws::WsSide::Client,
                at_ms: m.at_ms,
                payload: b,
            })
            .collect();
        let parts = UrlParts::parse(&ev.request.url);
        let provider = adapters::recognise::known_host(&parts.host, &parts.path)
            .unwrap_or("openai_compatible");
        self.realtime = realtime::parse(&ev.request.url, provider, &messages);
        self
    }

    /// The LLM calls this exchange holds, each with its start and end (Unix ns): the
    /// call of an HTTP exchange, or every turn of a Realtime session.
    pub fn calls(&self) -> Vec<(&LlmCall, u64, u64)> {
        let t = &self.event.timing;
        match &self.realtime {
            Some(rt) => rt
                .turns
                .iter()
                .map(|turn| {
                    (
                        &turn.call,
                        ws_time(self.event, turn.start_ms),
                        ws_time(self.event, turn.end_ms),
                    )
                })
                .collect(),
            None => self
                .llm
                .iter()
                .map(|c| (c, t.start_unix_ns, t.end_unix_ns))
                .collect(),
        }
    }

    /// Whether the exchange may be a tool's: not an LLM call, and of MCP only a
    /// `tools/call` (the session's handshake, listing and streams are not tools).
    pub fn is_tool(&self) -> bool {
        self.event.kind != Kind::Llm && self.mcp.as_ref().is_none_or(McpCall::is_tool_call)
    }

    /// What the tool answered, as an agent hands it to its LLM: an MCP result's text, else
    /// the response body.
    pub fn tool_answer(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.mcp.as_ref().and_then(|m| m.result_text.as_ref()) {
            Some(t) => std::borrow::Cow::Owned(t.as_bytes().to_vec()),
            None => std::borrow::Cow::Borrowed(&self.response_body),
        }
    }

    /// Whether a tool answered with nothing: an empty MCP result, or an empty HTTP body
    /// (see [`is_empty_answer`]).
    pub fn is_empty_answer(&self) -> bool {
        match &self.mcp {
            Some(m) => m.is_tool_call() && m.empty_result && m.rpc_error.is_none(),
            None => is_empty_answer(self.event.status(), &self.response_body),
        }
    }
}

/// When a message of a WebSocket exchange crossed the proxy (Unix ns): its offset counts
/// from the upgrade, the response head.
pub(crate) fn ws_time(ev: &Event, at_ms: f64) -> u64 {
    let upgrade = ev.timing.start_unix_ns + ev.timing.ttfb_ns.unwrap_or(0);
    let offset = if at_ms.is_finite() && at_ms > 0.0 {
        (at_ms * 1e6) as u64
    } else {
        0
    };
    upgrade
        .saturating_add(offset)
        .min(ev.timing.end_unix_ns.max(upgrade))
}

/// Parses every event once (adapters on LLM events).
pub fn parse_events<'a>(rec: &'a Recording) -> Vec<Parsed<'a>> {
    rec.events
        .iter()
        .map(|ev| {
            let request_body = body_or_warn(rec, ev.step, "request", &ev.request.body).to_vec();
            let response_body = ev
                .response
                .as_ref()
                .map(|r| body_or_warn(rec, ev.step, "response", &r.body).to_vec())
                .unwrap_or_default();
            let p = Parsed::new(ev, request_body, response_body);
            match &ev.ws {
                Some(ws) => {
                    let bodies: Vec<bytes::Bytes> = ws
                        .messages
                        .iter()
                        .map(|m| body_or_warn(rec, ev.step, "message", &m.body))
                        .collect();
                    p.with_messages(&bodies)
                }
                None => p,
            }
        })
        .collect()
}

/// A body of step `step`, or (damaged, or gone) nothing, said on stderr: the trace is
/// still built from the rest, and the user learns why the step looks empty.
fn body_or_warn(rec: &Recording, step: u64, side: &str, r: &BodyRef) -> bytes::Bytes {
    rec.body(r).unwrap_or_else(|e| {
        tracing::warn!(
            "step {step}: its {side} body cannot be read ({e}); shown as empty. Run `tapedeck fsck`"
        );
        bytes::Bytes::new()
    })
}

pub(crate) fn s(v: impl Into<String>) -> AttrValue {
    AttrValue::Str(v.into())
}

fn push_opt_int(attrs: &mut Vec<(String, AttrValue)>, k: &str, v: Option<u64>) {
    if let Some(v) = v {
        attrs.push((k.into(), count_attr(v)));
    }
}

/// A count as an attribute (OpenTelemetry's integers are signed): one past `i64::MAX`, as
/// a recorded body may claim, stays the largest, not a negative number.
pub(crate) fn count_attr(v: u64) -> AttrValue {
    AttrValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn push_opt_f(attrs: &mut Vec<(String, AttrValue)>, k: &str, v: Option<f64>) {
    if let Some(v) = v {
        attrs.push((k.into(), AttrValue::Double(v)));
    }
}

/// Why an exchange failed, as `error.type` wants it.
pub(crate) fn error_of(p: &Parsed) -> Option<(String, String)> {
    let ev = p.event;
    // An MCP client closes a stream once it has its answer (or, for the listening
    // stream, when it leaves): that is no failure.
    let left = ev.error.as_ref().is_some_and(|e| {
        e.kind == tapedeck_model::exchange::ErrorKind::ClientClosed
            && p.mcp.is_some()
            && ev.response.is_some()
    });
    if let Some(e) = ev.error.as_ref().filter(|_| !left) {
        if ev.response.is_none() || !ev.response.as_ref().is_some_and(|r| r.complete) {
            return Some((e.kind.as_str().to_string(), e.message.clone()));
        }
    }
    if let Some(llm) = &p.llm {
        if let Some(t) = &llm.error_type {
            return Some((t.clone(), llm.error_message.clone().unwrap_or_default()));
        }
    }
    match ev.status() {
        Some(s) if s >= 400 => Some((s.to_string(), format!("HTTP {s}"))),
        _ => None,
    }
}

pub(crate) fn http_attrs(ev: &Event) -> Vec<(String, AttrValue)> {
    http_attrs_with(ev, UrlParts::parse(&ev.request.url))
}

/// [`http_attrs`] with the URL already parsed.
pub(crate) fn http_attrs_with(ev: &Event, parts: UrlParts) -> Vec<(String, AttrValue)> {
    let mut a = vec![
        (
            "http.request.method".to_string(),
            s(ev.request.method.clone()),
        ),
        ("url.full".to_string(), s(ev.request.url.clone())),
        ("server.address".to_string(), s(parts.host)),
        ("server.port".to_string(), AttrValue::Int(parts.port as i64)),
        ("tapedeck.step".to_string(), AttrValue::Int(ev.step as i64)),
    ];
    if let Some(st) = ev.status() {
        a.push((
            "http.response.status_code".into(),
            AttrValue::Int(st as i64),
        ));
    }
    a
}

/// Whether a tool's HTTP answer was empty: no bytes, `[]`, `{}` or `null`.
pub fn is_empty_answer(status: Option<u16>, body: &[u8]) -> bool {
    if status != Some(200) && status != Some(204) {
        return false;
    }
    let t = String::from_utf8_lossy(body);
    matches!(t.trim(), "" | "[]" | "{}" | "null" | "\"\"")
}

pub(crate) fn llm_span_attrs(
    ev: &Event,
    call: &LlmCall,
    opts: &TraceOptions,
) -> Vec<(String, AttrValue)> {
    let parts = UrlParts::parse(&ev.request.url);
    let mut a = vec![
        (
            "gen_ai.operation.name".to_string(),
            s(call.operation.clone()),
        ),
        ("gen_ai.provider.name".to_string(), s(call.provider.clone())),
    ];
    if let Some(m) = &call.request_model {
        a.push(("gen_ai.request.model".into(), s(m.clone())));
    }
    a.push(("server.address".into(), s(parts.host)));
    a.push(("server.port".into(), AttrValue::Int(parts.port as i64)));
    request_params(&mut a, call);
    response_attrs(&mut a, ev, call);
    usage(&mut a, call);
    if opts.include_content {
        content(&mut a, call);
    }
    a.push(("tapedeck.step".into(), AttrValue::Int(ev.step as i64)));
    a
}

/// What the request asked of the model: `gen_ai.request.*`, the tools it offered, the
/// conversation, and OpenAI's API type.
fn request_params(a: &mut Vec<(String, AttrValue)>, call: &LlmCall) {
    if call.stream {
        a.push(("gen_ai.request.stream".into(), AttrValue::Bool(true)));
    }
    push_opt_int(a, "gen_ai.request.max_tokens", call.max_tokens);
    push_opt_f(a, "gen_ai.request.temperature", call.temperature);
    push_opt_f(a, "gen_ai.request.top_p", call.top_p);
    push_opt_f(a, "gen_ai.request.top_k", call.top_k);
    push_opt_f(
        a,
        "gen_ai.request.frequency_penalty",
        call.frequency_penalty,
    );
    push_opt_f(a, "gen_ai.request.presence_penalty", call.presence_penalty);
    if let Some(seed) = call.seed {
        a.push(("gen_ai.request.seed".into(), AttrValue::Int(seed)));
    }
    if let Some(n) = call.choice_count.filter(|n| *n != 1) {
        a.push((
            "gen_ai.request.choice.count".into(),
            AttrValue::Int(n as i64),
        ));
    }
    if !call.stop_sequences.is_empty() {
        a.push((
            "gen_ai.request.stop_sequences".into(),
            AttrValue::StrArray(call.stop_sequences.clone()),
        ));
    }
    if let Some(c) = &call.conversation_id {
        a.push(("gen_ai.conversation.id".into(), s(c.clone())));
    }
    let openai = call.provider.starts_with("openai") || call.provider.starts_with("azure");
    match call.api.as_deref() {
        Some(t @ ("chat_completions" | "responses")) if openai => {
            a.push(("openai.api.type".into(), s(t)));
        }
        _ => {}
    }
    if !call.tool_definitions.is_empty() {
        a.push((
            "gen_ai.tool.definitions".into(),
            s(json!(call
                .tool_definitions
                .iter()
                .map(|n| json!({"type": "function", "name": n}))
                .collect::<Vec<_>>())
            .to_string()),
        ));
    }
}

/// What the model answered: `gen_ai.response.*`, and a stream's time to its first chunk.
fn response_attrs(a: &mut Vec<(String, AttrValue)>, ev: &Event, call: &LlmCall) {
    if let Some(id) = &call.response_id {
        a.push(("gen_ai.response.id".into(), s(id.clone())));
    }
    if let Some(m) = &call.response_model {
        a.push(("gen_ai.response.model".into(), s(m.clone())));
    }
    if !call.finish_reasons.is_empty() {
        a.push((
            "gen_ai.response.finish_reasons".into(),
            AttrValue::StrArray(call.finish_reasons.clone()),
        ));
    }
    let first = ev
        .response
        .as_ref()
        .and_then(|r| r.chunks.as_ref())
        .and_then(|c| c.first())
        .filter(|_| call.stream);
    if let Some(first) = first {
        a.push((
            "gen_ai.response.time_to_first_chunk".into(),
            AttrValue::Double(first.at_ms / 1000.0),
        ));
    }
}

/// The tokens counted: `gen_ai.usage.*` and an embedding's dimensions.
fn usage(a: &mut Vec<(String, AttrValue)>, call: &LlmCall) {
    push_opt_int(a, "gen_ai.usage.input_tokens", call.input_tokens);
    push_opt_int(a, "gen_ai.usage.output_tokens", call.output_tokens);
    push_opt_int(
        a,
        "gen_ai.usage.cache_read.input_tokens",
        call.cache_read_tokens,
    );
    push_opt_int(
        a,
        "gen_ai.usage.cache_creation.input_tokens",
        call.cache_creation_tokens,
    );
    push_opt_int(
        a,
        "gen_ai.usage.reasoning.output_tokens",
        call.reasoning_tokens,
    );
    push_opt_int(
        a,
        "gen_ai.embeddings.dimension.count",
        call.embedding_dimensions,
    );
}

/// The messages themselves (`--include-content`): input, output, system instructions.
fn content(a: &mut Vec<(String, AttrValue)>, call: &LlmCall) {
    if !call.input_messages.is_null() {
        a.push((
            "gen_ai.input.messages".into(),
            s(call.input_messages.to_string()),
        ));
    }
    if !call.output_messages.is_null() {
        a.push((
            "gen_ai.output.messages".into(),
            s(call.output_messages.to_string()),
        ));
    }
    if let Some(si) = &call.system_instructions {
        a.push(("gen_ai.system_instructions".into(), s(si.to_string())));
    }
}

/// A span with no parent, children, events or error yet; its id comes from the session,
/// the role, the step and the index, so the same exchange always gets the same id.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_span(
    session: &str,
    role: Role,
    id_role: &str,
    step: Option<u64>,
    index: usize,
    name: String,
    kind: SpanKind,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(String, AttrValue)>,
) -> Span {
    Span {
        span_id: span_id(session, id_role, step.unwrap_or(0), index),
        parent: None,
        name,
        kind,
        role,
        step,
        start_ns,
        end_ns: end_ns.max(start_ns),
        attributes,
        error: None,
        events: Vec::new(),
        children: Vec::new(),
        flag: None,
    }
}

/// The `execute_tool` span of the `index`-th call the LLM at `llm_step` asked for, from
/// `start` (the end of that response) to `end`: the start of the request that carried
/// `result` back (with that request's step), or the end of the session when none did.
/// Parent and children are the caller's to set.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tool_call_span(
    session: &str,
    llm_step: u64,
    index: usize,
    tc: &ToolCall,
    start: u64,
    end: u64,
    result: Option<(&ToolResult, u64)>,
    opts: &TraceOptions,
) -> Span {
    let mut a = vec![
        ("gen_ai.operation.name".to_string(), s("execute_tool")),
        ("gen_ai.tool.name".to_string(), s(tc.name.clone())),
        ("gen_ai.tool.type".to_string(), s("function")),
    ];
    if let Some(id) = &tc.id {
        a.push(("gen_ai.tool.call.id".into(), s(id.clone())));
    }
    if opts.include_content {
        a.push((
            "gen_ai.tool.call.arguments".into(),
            s(tc.arguments.to_string()),
        ));
    }
    let name = format!("execute_tool {}", tc.name);
    let mut sp = new_span(
        session,
        Role::Tool,
        "tool",
        Some(llm_step),
        index,
        name,
        SpanKind::Internal,
        start,
        end,
        a,
    );
    match result {
        Some((r, step)) => {
            let mut ea = vec![
                (
                    "tapedeck.result.step".to_string(),
                    AttrValue::Int(step as i64),
                ),
                (
                    "tapedeck.result.length".to_string(),
                    AttrValue::Int(r.content.len() as i64),
                ),
                (
                    "tapedeck.result.is_error".to_string(),
                    AttrValue::Bool(r.is_error),
                ),
            ];
            if let Some(id) = &r.id {
                ea.push(("gen_ai.tool.call.id".into(), s(id.clone())));
            }
            if opts.include_content {
                ea.push(("gen_ai.tool.call.result".into(), s(r.content.clone())));
                sp.attributes
                    .push(("gen_ai.tool.call.result".into(), s(r.content.clone())));
            }
            sp.events.push(SpanEvent {
                name: "gen_ai.tool.result".into(),
                time_ns: end,
                attributes: ea,
            });
            if r.is_error {
                sp.attributes.push(("error.type".into(), s("tool_error")));
                sp.error = Some("the tool result is flagged as an error".into());
            }
            if matches!(r.content.trim(), "" | "[]" | "{}" | "null") {
                sp.flag = Some("empty");
            }
        }
        None => sp.events.push(SpanEvent {
            name: "tapedeck.tool.unanswered".into(),
            time_ns: end,
            attributes: vec![],
        }),
    }
    sp
}

/// Name and attributes of a session's root `invoke_agent` span.
pub(crate) fn agent_root(
    session: &str,
    provider: &str,
    agent: Option<&str>,
    input_tokens: u64,
    output_tokens: u64,
) -> (String, Vec<(String, AttrValue)>) {
    let mut a = vec![
        ("gen_ai.operation.name".to_string(), s("invoke_agent")),
        ("gen_ai.provider.name".to_string(), s(provider)),
        ("tapedeck.session".to_string(), s(session)),
    ];
    if let Some(ag) = agent {
        a.push(("gen_ai.agent.name".into(), s(ag)));
    }
    a.push(("gen_ai.usage.input_tokens".into(), count_attr(input_tokens)));
    a.push((
        "gen_ai.usage.output_tokens".into(),
        count_attr(output_tokens),
    ));
    let name = agent.map_or("invoke_agent".to_string(), |ag| {
        format!("invoke_agent {ag}")
    });
    (name, a)
}

/// The dependency graph of parsed events (bodies already at hand).
pub fn tool_graph(parsed: &[Parsed]) -> Graph {
    let agentic = causal::load::is_agentic(parsed.iter().map(|p| p.event));
    let mut b = causal::Builder::new(parsed.len(), agentic);
    for p in parsed {
        causal::load::push(
            &mut b,
            p.event,
            p.llm.as_ref(),
            &p.request_body,
            &p.response_body,
        );
    }
    b.build()
}

/// Totals for the closing line of `show`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Totals {
    pub llm_calls: usize,
    pub tool_calls: usize,
    pub http_exchanges: usize,
    pub errors: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub duration_ms: f64,
}

impl Trace {
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for sp in &self.spans {
            match sp.role {
                Role::Llm => {
                    t.llm_calls += 1;
                    // Counts come from recorded bodies: saturate rather than overflow.
                    let count = |k| sp.int(k).unwrap_or(0).max(0) as u64;
                    t.input_tokens = t
                        .input_tokens
                        .saturating_add(count("gen_ai.usage.input_tokens"));
                    t.output_tokens = t
                        .output_tokens
                        .saturating_add(count("gen_ai.usage.output_tokens"));
                }
                Role::Tool => t.tool_calls += 1,
                Role::Http | Role::Mcp => t.http_exchanges += 1,
                _ => {}
            }
            // Errors count once per recorded exchange: a tool call's span only repeats
            // the error of the HTTP exchange under it.
            let decided =
                matches!(sp.attr("gen_ai.tool.type"), Some(AttrValue::Str(t)) if t == "function");
            if sp.error.is_some() && sp.step.is_some() && !decided {
                t.errors += 1;
            }
        }
        if let Some(root) = self.spans.first() {
            t.duration_ms = root.duration_ms();
        }
        t
    }

    /// The spans as plain JSON (`show --json`).
    pub fn to_json(&self) -> Value {
        let spans: Vec<Value> = self
            .spans
            .iter()
            .map(|sp| {
                let attrs: serde_json::Map<String, Value> =
                    sp.attributes.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
                json!({
                    "span_id": hex(&sp.span_id),
                    "parent_span_id": sp.parent.map(|p| hex(&self.spans[p].span_id)),
                    "name": sp.name,
                    "role": sp.role.as_str(),
                    "step": sp.step,
                    "start_unix_ns": sp.start_ns,
                    "end_unix_ns": sp.end_ns,
                    "duration_ms": sp.duration_ms(),
                    "status": if sp.error.is_some() { "error" } else { "unset" },
                    "error": sp.error,
                    "flag": sp.flag,
                    "attributes": attrs,
                    "events": sp.events.iter().map(|e| json!({
                        "name": e.name, "time_unix_ns": e.time_ns,
                        "attributes": e.attributes.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "session": self.session,
            "trace_id": hex(&self.trace_id),
            "semconv": SEMCONV_VERSION,
            "totals": self.totals(),
            "spans": spans,
        })
    }
}
