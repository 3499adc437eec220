//! A session as a tree of OpenTelemetry GenAI spans (semantic conventions v1.41.1).
//!
//! The causal chain is the point: the agent invocation at the root, each LLM call under
//! its agent, each tool call under the LLM decision that asked for it (matched by tool
//! call id, else by name and order), and the HTTP exchanges made while the tool ran under
//! the tool span. A tool exchange no call claims becomes an `execute_tool` span of its
//! own. Times are the recorded ones; trace and span ids are derived from the session and
//! step, so exporting twice gives the same ids.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::adapters::mcp::{self, McpCall};
use super::adapters::realtime;
use super::adapters::{self, LlmCall, ToolCall, ToolResult};
use super::causal::{self, answers, Graph};
use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::Rules;
use tapedeck_store::recording::Recording;

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
            let request_body = rec
                .body(&ev.request.body)
                .map(|b| b.to_vec())
                .unwrap_or_default();
            let response_body = ev
                .response
                .as_ref()
                .and_then(|r| rec.body(&r.body).ok())
                .map(|b| b.to_vec())
                .unwrap_or_default();
            let p = Parsed::new(ev, request_body, response_body);
            match &ev.ws {
                Some(ws) => {
                    let bodies: Vec<bytes::Bytes> = ws
                        .messages
                        .iter()
                        .map(|m| rec.body(&m.body).unwrap_or_default())
                        .collect();
                    p.with_messages(&bodies)
                }
                None => p,
            }
        })
        .collect()
}

pub(crate) fn s(v: impl Into<String>) -> AttrValue {
    AttrValue::Str(v.into())
}

fn push_opt_int(attrs: &mut Vec<(String, AttrValue)>, k: &str, v: Option<u64>) {
    if let Some(v) = v {
        attrs.push((k.into(), AttrValue::Int(v as i64)));
    }
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
    if call.stream {
        a.push(("gen_ai.request.stream".into(), AttrValue::Bool(true)));
    }
    push_opt_int(&mut a, "gen_ai.request.max_tokens", call.max_tokens);
    push_opt_f(&mut a, "gen_ai.request.temperature", call.temperature);
    push_opt_f(&mut a, "gen_ai.request.top_p", call.top_p);
    push_opt_f(&mut a, "gen_ai.request.top_k", call.top_k);
    push_opt_f(
        &mut a,
        "gen_ai.request.frequency_penalty",
        call.frequency_penalty,
    );
    push_opt_f(
        &mut a,
        "gen_ai.request.presence_penalty",
        call.presence_penalty,
    );
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
    push_opt_int(&mut a, "gen_ai.usage.input_tokens", call.input_tokens);
    push_opt_int(&mut a, "gen_ai.usage.output_tokens", call.output_tokens);
    push_opt_int(
        &mut a,
        "gen_ai.usage.cache_read.input_tokens",
        call.cache_read_tokens,
    );
    push_opt_int(
        &mut a,
        "gen_ai.usage.cache_creation.input_tokens",
        call.cache_creation_tokens,
    );
    push_opt_int(
        &mut a,
        "gen_ai.usage.reasoning.output_tokens",
        call.reasoning_tokens,
    );
    push_opt_int(
        &mut a,
        "gen_ai.embeddings.dimension.count",
        call.embedding_dimensions,
    );
    if let Some(c) = &call.conversation_id {
        a.push(("gen_ai.conversation.id".into(), s(c.clone())));
    }
    if let Some(api) = &call.api {
        if call.provider.starts_with("openai") || call.provider.starts_with("azure") {
            let t = match api.as_str() {
                "chat_completions" => Some("chat_completions"),
                "responses" => Some("responses"),
                _ => None,
            };
            if let Some(t) = t {
                a.push(("openai.api.type".into(), s(t)));
            }
        }
    }
    if call.stream {
        if let Some(r) = &ev.response {
            if let Some(first) = r.chunks.as_ref().and_then(|c| c.first()) {
                a.push((
                    "gen_ai.response.time_to_first_chunk".into(),
                    AttrValue::Double(first.at_ms / 1000.0),
                ));
            }
        }
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
    if opts.include_content {
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
    a.push(("tapedeck.step".into(), AttrValue::Int(ev.step as i64)));
    a
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

fn error_type_of(sp: &Span) -> String {
    match sp.attr("error.type") {
        Some(AttrValue::Str(t)) => t.clone(),
        _ => "_OTHER".into(),
    }
}

/// The client span of an MCP call (semconv v1.41.1, `docs/gen-ai/mcp.md`): under the
/// `execute_tool` span that claimed it, else under the agent (a `tools/call` then
/// stands for the tool call itself). `None` when the exchange is no MCP call.
fn mcp_span(
    b: &mut Builder,
    q: &Parsed,
    claimed: Option<usize>,
    agent: usize,
    opts: &TraceOptions,
) -> Option<usize> {
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
    if opts.include_content {
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
    let parent = claimed.unwrap_or(agent);
    let sp = b.add(
        Some(parent),
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
    if let Some((t, msg)) = error {
        b.spans[sp].attributes.push(("error.type".into(), s(t)));
        b.spans[sp].error = Some(msg);
    }
    Some(sp)
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
    a.push((
        "gen_ai.usage.input_tokens".into(),
        AttrValue::Int(input_tokens as i64),
    ));
    a.push((
        "gen_ai.usage.output_tokens".into(),
        AttrValue::Int(output_tokens as i64),
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

struct Builder<'a> {
    session: &'a str,
    spans: Vec<Span>,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        parent: Option<usize>,
        role: Role,
        id_role: &str,
        step: Option<u64>,
        index: usize,
        name: String,
        kind: SpanKind,
        start_ns: u64,
        end_ns: u64,
        attributes: Vec<(String, AttrValue)>,
    ) -> usize {
        let span = new_span(
            self.session,
            role,
            id_role,
            step,
            index,
            name,
            kind,
            start_ns,
            end_ns,
            attributes,
        );
        self.attach(parent, span)
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
}

/// Builds the span tree of a recording.
pub fn build(rec: &Recording, rules: &Rules, opts: &TraceOptions) -> Trace {
    let parsed = parse_events(rec);
    build_from(&rec.session, &parsed, rules, opts)
}

pub fn build_from(session: &str, parsed: &[Parsed], rules: &Rules, opts: &TraceOptions) -> Trace {
    let mut b = Builder {
        session,
        spans: Vec::new(),
    };
    let start = parsed
        .iter()
        .map(|p| p.event.timing.start_unix_ns)
        .min()
        .unwrap_or(0);
    let end = parsed
        .iter()
        .map(|p| p.event.timing.end_unix_ns)
        .max()
        .unwrap_or(start);
    let agents: BTreeSet<&str> = parsed
        .iter()
        .filter_map(|p| p.event.agent.as_deref())
        .collect();
    let provider = parsed
        .iter()
        .find_map(|p| p.calls().first().map(|(l, _, _)| l.provider.clone()))
        .unwrap_or_else(|| "unknown".into());
    let total_in: u64 = parsed
        .iter()
        .flat_map(|p| p.calls())
        .filter_map(|(c, _, _)| c.input_tokens)
        .sum();
    let total_out: u64 = parsed
        .iter()
        .flat_map(|p| p.calls())
        .filter_map(|(c, _, _)| c.output_tokens)
        .sum();
    let usage = |a: &mut Vec<(String, AttrValue)>, i: u64, o: u64| {
        a.push(("gen_ai.usage.input_tokens".into(), AttrValue::Int(i as i64)));
        a.push((
            "gen_ai.usage.output_tokens".into(),
            AttrValue::Int(o as i64),
        ));
    };

    // Root and agent spans.
    let mut agent_span: HashMap<Option<&str>, usize> = HashMap::new();
    if agents.len() >= 2 {
        let mut a = vec![
            ("gen_ai.operation.name".to_string(), s("invoke_workflow")),
            ("gen_ai.workflow.name".to_string(), s(session)),
            ("tapedeck.session".to_string(), s(session)),
        ];
        usage(&mut a, total_in, total_out);
        let root = b.add(
            None,
            Role::Workflow,
            "root",
            None,
            0,
            format!("invoke_workflow {session}"),
            SpanKind::Internal,
            start,
            end,
            a,
        );
        agent_span.insert(None, root);
        for (i, agent) in agents.iter().enumerate() {
            let mine: Vec<&Parsed> = parsed
                .iter()
                .filter(|p| p.event.agent.as_deref() == Some(*agent))
                .collect();
            let s0 = mine
                .iter()
                .map(|p| p.event.timing.start_unix_ns)
                .min()
                .unwrap_or(start);
            let e0 = mine
                .iter()
                .map(|p| p.event.timing.end_unix_ns)
                .max()
                .unwrap_or(end);
            let ai: u64 = mine
                .iter()
                .flat_map(|p| p.calls())
                .filter_map(|(c, _, _)| c.input_tokens)
                .sum();
            let ao: u64 = mine
                .iter()
                .flat_map(|p| p.calls())
                .filter_map(|(c, _, _)| c.output_tokens)
                .sum();
            let prov = mine
                .iter()
                .find_map(|p| p.calls().first().map(|(l, _, _)| l.provider.clone()))
                .unwrap_or_else(|| provider.clone());
            let mut a = vec![
                ("gen_ai.operation.name".to_string(), self::s("invoke_agent")),
                ("gen_ai.provider.name".to_string(), self::s(prov)),
                ("gen_ai.agent.name".to_string(), self::s(*agent)),
            ];
            usage(&mut a, ai, ao);
            let sp = b.add(
                Some(root),
                Role::Agent,
                "agent",
                None,
                i + 1,
                format!("invoke_agent {agent}"),
                SpanKind::Internal,
                s0,
                e0,
                a,
            );
            agent_span.insert(Some(agent), sp);
        }
    } else {
        let agent = agents.iter().next().copied();
        let (name, a) = agent_root(session, &provider, agent, total_in, total_out);
        let root = b.add(
            None,
            Role::Agent,
            "root",
            None,
            0,
            name,
            SpanKind::Internal,
            start,
            end,
            a,
        );
        agent_span.insert(None, root);
        agent_span.insert(agent, root);
    }
    let parent_of = |ev: &Event, m: &HashMap<Option<&str>, usize>| -> usize {
        m.get(&ev.agent.as_deref()).copied().unwrap_or(0)
    };

    // LLM spans: one per call (a Realtime session holds one per model turn).
    let mut llm_span: HashMap<(usize, usize), usize> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        if p.event.kind != Kind::Llm {
            continue;
        }
        let ev = p.event;
        let parent = parent_of(ev, &agent_span);
        let calls = p.calls();
        if calls.is_empty() {
            let mut a = http_attrs(ev);
            a.push(("gen_ai.operation.name".into(), s("chat")));
            a.push(("gen_ai.provider.name".into(), s("unknown")));
            let sp = b.add(
                Some(parent),
                Role::Llm,
                "llm",
                Some(ev.step),
                0,
                "chat".to_string(),
                SpanKind::Client,
                ev.timing.start_unix_ns,
                ev.timing.end_unix_ns,
                a,
            );
            if let Some((t, msg)) = error_of(p) {
                b.spans[sp].attributes.push(("error.type".into(), s(t)));
                b.spans[sp].error = Some(msg);
            }
            continue;
        }
        for (turn, (call, start, end)) in calls.into_iter().enumerate() {
            let name = match &call.request_model {
                Some(m) => format!("{} {m}", call.operation),
                None => call.operation.clone(),
            };
            let sp = b.add(
                Some(parent),
                Role::Llm,
                "llm",
                Some(ev.step),
                turn,
                name,
                SpanKind::Client,
                start,
                end,
                llm_span_attrs(ev, call, opts),
            );
            let error = match &p.realtime {
                Some(_) => call
                    .error_type
                    .clone()
                    .map(|t| (t, call.error_message.clone().unwrap_or_default())),
                None => error_of(p),
            };
            if let Some((t, msg)) = error {
                b.spans[sp].attributes.push(("error.type".into(), s(t)));
                b.spans[sp].error = Some(msg);
            }
            llm_span.insert((i, turn), sp);
        }
    }

    // Where tool results came back: each LLM request (at its start) and each result a
    // Realtime client sent (at its own time), with the step that carried it.
    let mut carriers: Vec<(u64, usize, u64, &ToolResult)> = Vec::new();
    for (k, q) in parsed.iter().enumerate() {
        match (&q.realtime, &q.llm) {
            (Some(rt), _) => carriers.extend(
                rt.results
                    .iter()
                    .map(|r| (ws_time(q.event, r.at_ms), k, q.event.step, &r.result)),
            ),
            (None, Some(call)) => carriers.extend(
                call.tool_results
                    .iter()
                    .map(|r| (q.event.timing.start_unix_ns, k, q.event.step, r)),
            ),
            _ => {}
        }
    }
    carriers.sort_by_key(|c| (c.0, c.1));

    // Tool calls: each under the LLM call whose response asked for it, closed by the
    // first later LLM request that carries its result; the exchanges made while it ran
    // belong to it, to the call whose arguments they carry first. The dependency graph
    // says both for HTTP exchanges, as replay reads it; a Realtime session's calls are
    // answered inside its own stream, by time.
    let graph = tool_graph(parsed);
    let mut claimed: Vec<Option<usize>> = vec![None; parsed.len()];
    for (i, p) in parsed.iter().enumerate() {
        if p.realtime.is_none() {
            let Some(call) = &p.llm else { continue };
            let runs = graph.tool_calls(i);
            if runs.is_empty() {
                continue;
            }
            let Some(&llm_sp) = llm_span.get(&(i, 0)) else {
                continue;
            };
            let agent = p.event.agent.as_deref();
            let mut tool_spans = Vec::new();
            for run in runs {
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
                let w_start = p.event.timing.end_unix_ns;
                let w_end = closing
                    .map(|(k, _)| parsed[k].event.timing.start_unix_ns)
                    .unwrap_or(end);
                let result = closing.map(|(k, r)| (r, parsed[k].event.step));
                let span =
                    tool_call_span(session, p.event.step, j, tc, w_start, w_end, result, opts);
                tool_spans.push((b.attach(Some(llm_sp), span), *run));
            }
            let mut load = vec![0usize; tool_spans.len()];
            for (k, q) in parsed.iter().enumerate().skip(i + 1) {
                if !q.is_tool() || claimed[k].is_some() || q.event.agent.as_deref() != agent {
                    continue;
                }
                let t = q.event.timing.start_ns;
                let best = (0..tool_spans.len())
                    .filter(|&j| t >= tool_spans[j].1.from_ns && t <= tool_spans[j].1.to_ns)
                    .max_by_key(|&j| {
                        (
                            mcp_match(&call.tool_calls[tool_spans[j].1.call as usize], q),
                            graph.arguments_matched(k, i, tool_spans[j].1.call as usize),
                            usize::MAX - load[j],
                            usize::MAX - j,
                        )
                    });
                if let Some(best) = best {
                    load[best] += 1;
                    claimed[k] = Some(tool_spans[best].0);
                }
            }
            continue;
        }
        // A Realtime session's tool spans take indices across its turns.
        let mut index = 0;
        for (turn, (call, _, call_end)) in p.calls().into_iter().enumerate() {
            if call.tool_calls.is_empty() {
                continue;
            }
            let Some(&llm_sp) = llm_span.get(&(i, turn)) else {
                continue;
            };
            let agent = p.event.agent.as_deref();
            let mut tool_spans = Vec::new();
            let mut windows = Vec::new();
            for tc in &call.tool_calls {
                let closing = carriers.iter().find(|(at, k, _, r)| {
                    let later = if p.realtime.is_some() || parsed[*k].realtime.is_some() {
                        *at >= call_end
                    } else {
                        *k > i
                    };
                    later && answers(r, tc)
                });
                let w_start = call_end;
                let w_end = closing.map(|c| c.0).unwrap_or(end).max(w_start);
                let result = closing.map(|(_, _, step, r)| (*r, *step));
                let span = tool_call_span(
                    session,
                    p.event.step,
                    index,
                    tc,
                    w_start,
                    w_end,
                    result,
                    opts,
                );
                index += 1;
                let sp = b.attach(Some(llm_sp), span);
                let mut needles = Vec::new();
                argument_needles(&tc.arguments, &mut needles);
                tool_spans.push((sp, needles));
                windows.push((w_start, w_end));
            }
            // Non-LLM exchanges that ran inside a call's window belong to it.
            let mut load = vec![0usize; tool_spans.len()];
            for (k, q) in parsed.iter().enumerate().skip(i + 1) {
                if !q.is_tool() || claimed[k].is_some() || q.event.agent.as_deref() != agent {
                    continue;
                }
                let t = q.event.timing.start_unix_ns;
                let candidates: Vec<usize> = (0..tool_spans.len())
                    .filter(|&j| t >= windows[j].0 && t <= windows[j].1)
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let best = candidates
                    .iter()
                    .copied()
                    .max_by_key(|&j| {
                        (
                            mcp_match(&call.tool_calls[j], q),
                            match_score(&tool_spans[j].1, q),
                            usize::MAX - load[j],
                            usize::MAX - j,
                        )
                    })
                    .unwrap_or(candidates[0]);
                load[best] += 1;
                claimed[k] = Some(tool_spans[best].0);
            }
        }
    }

    // Non-LLM exchanges: HTTP spans under the tool call that claimed them, or tool spans
    // of their own.
    for (k, q) in parsed.iter().enumerate() {
        let ev = q.event;
        if ev.kind == Kind::Llm {
            continue;
        }
        let parts = UrlParts::parse(&ev.request.url);
        let tool_name = super::tool_names::by_rule_with(&ev.request.method, &parts, rules);
        let mcp = mcp_span(&mut b, q, claimed[k], parent_of(ev, &agent_span), opts);
        let sp = match (mcp, claimed[k]) {
            (Some(sp), _) => sp,
            (None, Some(tool_sp)) => b.add(
                Some(tool_sp),
                Role::Http,
                "http",
                Some(ev.step),
                0,
                tool_name,
                SpanKind::Client,
                ev.timing.start_unix_ns,
                ev.timing.end_unix_ns,
                http_attrs(ev),
            ),
            (None, None) if ev.kind == Kind::Tool && q.is_tool() => {
                let mut a = vec![
                    ("gen_ai.operation.name".to_string(), s("execute_tool")),
                    ("gen_ai.tool.name".to_string(), s(tool_name.clone())),
                    ("gen_ai.tool.type".to_string(), s("extension")),
                ];
                a.extend(http_attrs(ev));
                let parent = parent_of(ev, &agent_span);
                b.add(
                    Some(parent),
                    Role::Tool,
                    "http-tool",
                    Some(ev.step),
                    0,
                    format!("execute_tool {tool_name}"),
                    SpanKind::Internal,
                    ev.timing.start_unix_ns,
                    ev.timing.end_unix_ns,
                    a,
                )
            }
            (None, None) => {
                let parent = parent_of(ev, &agent_span);
                b.add(
                    Some(parent),
                    Role::Http,
                    "http",
                    Some(ev.step),
                    0,
                    format!("{} {}", ev.request.method, parts.host),
                    SpanKind::Client,
                    ev.timing.start_unix_ns,
                    ev.timing.end_unix_ns,
                    http_attrs(ev),
                )
            }
        };
        if mcp.is_none() {
            if let Some((t, msg)) = error_of(q) {
                b.spans[sp].attributes.push(("error.type".into(), s(t)));
                b.spans[sp].error = Some(msg);
            }
        }
        // The tool call fails, and is empty, as its exchange is.
        if let (Some(tool_sp), Some(msg)) = (claimed[k], b.spans[sp].error.clone()) {
            if b.spans[tool_sp].error.is_none() {
                let t = error_type_of(&b.spans[sp]);
                b.spans[tool_sp]
                    .attributes
                    .push(("error.type".into(), s(t)));
                b.spans[tool_sp].error = Some(msg);
            }
        }
        if q.is_empty_answer() {
            b.spans[sp].flag = Some("empty");
            if let Some(tool_sp) = claimed[k] {
                b.spans[tool_sp].flag = Some("empty");
            }
        }
    }

    // Children in start order, for reading.
    let starts: Vec<(u64, Option<u64>)> = b.spans.iter().map(|s| (s.start_ns, s.step)).collect();
    for sp in &mut b.spans {
        sp.children.sort_by_key(|&c| starts[c]);
    }
    Trace {
        session: session.to_string(),
        trace_id: trace_id(session),
        spans: b.spans,
    }
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
                    t.input_tokens += sp.int("gen_ai.usage.input_tokens").unwrap_or(0) as u64;
                    t.output_tokens += sp.int("gen_ai.usage.output_tokens").unwrap_or(0) as u64;
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
