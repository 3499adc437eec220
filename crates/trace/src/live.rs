//! Live export: `tapedeck record --otlp-endpoint URL` sends each exchange's spans as it
//! completes. The proxy only hands the event to a bounded queue (a full queue drops and
//! counts, never blocks traffic); one task reads bodies, builds spans with the same ids
//! and attributes as the batch export, and pushes them in small batches.
//!
//! Live spans know only the past: an LLM span goes out when its call ends, a tool call's
//! span when the request that carries its result arrives (or at the end), and the root
//! when recording stops. LLM spans hang under the session root here even in multi-agent
//! sessions (the batch export puts them under their agent's span).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::adapters::{self, ToolCall};
use super::causal::{self, answers, Needles};
use super::otlp::Pusher;
use super::pb::{self, SpanWriter, Val};
use super::spans::{
    agent_root, error_of, http_attrs, llm_span_attrs, new_span, span_id, tool_call_span, trace_id,
    AttrValue, Parsed, Role, Span, SpanKind, TraceOptions,
};
use tapedeck_model::exchange::EventSink;
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::Rules;
use tapedeck_store::Store;

const QUEUE: usize = 16384;
const BATCH: usize = 512;
const EVERY: Duration = Duration::from_millis(100);

/// What the exporter did, for the closing summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveStats {
    pub exported: u64,
    pub dropped: u64,
    pub failed: u64,
}

/// A span ready to send: an encoded `Span` message.
type Outgoing = Vec<u8>;

fn encode(session: &str, (sp, parent): (Span, Option<[u8; 8]>)) -> Outgoing {
    SpanWriter::from_span(&trace_id(session), &sp, parent)
}
/// Events waiting for the exporter. A plain locked vector, swapped out whole on each
/// tick: cheaper for the proxy than a channel, and bounded by `QUEUE`.
#[derive(Default)]
struct Inbox {
    items: Vec<(String, Event)>,
    closed: bool,
}
type Queue = Arc<std::sync::Mutex<Inbox>>;

pub struct LiveExporter {
    tx: Queue,
    dropped: Arc<AtomicU64>,
    exported: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct PendingTool {
    llm_step: u64,
    index: usize,
    call: ToolCall,
    window_start: u64,
    needles: Needles,
    claimed: usize,
}

#[derive(Default)]
struct SessionLive {
    first_start: u64,
    last_end: u64,
    provider: Option<String>,
    agent: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    pending: Vec<PendingTool>,
}

fn tool_span(
    session: &str,
    t: &PendingTool,
    end: u64,
    result: Option<(&adapters::ToolResult, u64)>,
    opts: &TraceOptions,
) -> (Span, Option<[u8; 8]>) {
    let sp = tool_call_span(
        session,
        t.llm_step,
        t.index,
        &t.call,
        t.window_start,
        end,
        result,
        opts,
    );
    (sp, Some(span_id(session, "llm", t.llm_step, 0)))
}

impl LiveExporter {
    pub fn start(
        pusher: Pusher,
        store: Arc<dyn Store>,
        rules: Arc<Rules>,
        opts: TraceOptions,
    ) -> LiveExporter {
        let inbox: Queue = Arc::new(std::sync::Mutex::new(Inbox::default()));
        let rx = inbox.clone();
        let dropped = Arc::new(AtomicU64::new(0));
        let exported = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (ex, fa) = (exported.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let mut sessions: HashMap<String, SessionLive> = HashMap::new();
            let mut out: HashMap<String, Vec<Outgoing>> = HashMap::new();
            // The queue is drained on a timer, not per event: waking this task for
            // every exchange would cost the proxy more than building the spans does.
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (batch, closed) = {
                    let mut ib = rx.lock().unwrap_or_else(|p| p.into_inner());
                    (std::mem::take(&mut ib.items), ib.closed)
                };
                for (session, ev) in batch {
                    let st = sessions.entry(session.clone()).or_default();
                    let spans = on_event(&session, &ev, st, store.as_ref(), &rules, &opts);
                    let buf = out.entry(session).or_default();
                    buf.extend(spans);
                    if buf.len() >= BATCH {
                        flush(&pusher, &mut out, &ex, &fa).await;
                    }
                }
                flush(&pusher, &mut out, &ex, &fa).await;
                if closed {
                    break;
                }
            }
            // Recording stopped: the roots and the tool calls never answered.
            for (session, st) in sessions.iter_mut() {
                let buf = out.entry(session.clone()).or_default();
                for t in st.pending.drain(..) {
                    buf.push(encode(
                        session,
                        tool_span(session, &t, st.last_end, None, &opts),
                    ));
                }
                let provider = st.provider.as_deref().unwrap_or("unknown");
                let (name, a) = agent_root(
                    session,
                    provider,
                    st.agent.as_deref(),
                    st.input_tokens,
                    st.output_tokens,
                );
                let root = new_span(
                    session,
                    Role::Agent,
                    "root",
                    None,
                    0,
                    name,
                    SpanKind::Internal,
                    st.first_start,
                    st.last_end,
                    a,
                );
                buf.push(encode(session, (root, None)));
            }
            flush(&pusher, &mut out, &ex, &fa).await;
        });
        LiveExporter {
            tx: inbox,
            dropped,
            exported,
            failed,
            task: Some(task),
        }
    }

    /// The hook the recorder calls with each stored event: never blocks.
    pub fn sink(&self) -> EventSink {
        let tx = self.tx.clone();
        let dropped = self.dropped.clone();
        Arc::new(move |session: &str, mut ev: Event| {
            // Spans of non-LLM exchanges need no headers: free them here, on the proxy's
            // thread, rather than on the exporter's.
            if ev.kind != Kind::Llm {
                ev.request.headers = Vec::new();
                if let Some(r) = ev.response.as_mut() {
                    r.headers = Vec::new();
                }
            }
            let mut ib = tx.lock().unwrap_or_else(|p| p.into_inner());
            if ib.closed || ib.items.len() >= QUEUE {
                dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            ib.items.push((session.to_string(), ev));
        })
    }

    /// Stops taking events, sends what is left (bounded wait), and reports.
    pub async fn finish(mut self) -> LiveStats {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        if let Some(t) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .is_err()
            {
                tracing::warn!("live OTLP export did not finish within 30 s");
            }
        }
        LiveStats {
            exported: self.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

async fn flush(
    pusher: &Pusher,
    out: &mut HashMap<String, Vec<Outgoing>>,
    exported: &AtomicU64,
    failed: &AtomicU64,
) {
    for (session, spans) in out.iter_mut() {
        if spans.is_empty() {
            continue;
        }
        let batch: Vec<_> = std::mem::take(spans);
        let n = batch.len() as u64;
        let body = pb::request(session, &batch);
        match pusher.push_bytes(bytes::Bytes::from(body)).await {
            Ok(()) => {
                exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!("live OTLP export: {e}; {n} spans lost");
            }
        }
    }
}

fn on_event(
    session: &str,
    ev: &Event,
    st: &mut SessionLive,
    store: &dyn Store,
    rules: &Rules,
    opts: &TraceOptions,
) -> Vec<Outgoing> {
    // Read only the bodies this span needs: the export must stay cheap next to the proxy.
    let body = |b3: &str| store.get_body(b3).ok().flatten().unwrap_or_default();
    let llm_event = ev.kind == Kind::Llm;
    let request_body = if llm_event || !st.pending.is_empty() {
        body(&ev.request.body.b3)
    } else {
        Vec::new()
    };
    let response_body = match &ev.response {
        Some(r) if llm_event => body(&r.body.b3),
        _ => Vec::new(),
    };
    let p = Parsed::new(ev, request_body, response_body);
    if st.first_start == 0 || ev.timing.start_unix_ns < st.first_start {
        st.first_start = ev.timing.start_unix_ns;
    }
    st.last_end = st.last_end.max(ev.timing.end_unix_ns);
    if st.agent.is_none() {
        st.agent = ev.agent.clone();
    }
    let root = Some(span_id(session, "root", 0, 0));
    let mut spans = Vec::new();
    if ev.kind == Kind::Llm {
        let (name, attrs) = match &p.llm {
            Some(call) => {
                // Results this request carries close the tool calls they answer.
                let mut still = Vec::new();
                for t in st.pending.drain(..) {
                    let hit = call.tool_results.iter().find(|r| answers(r, &t.call));
                    match hit {
                        Some(r) => spans.push(encode(
                            session,
                            tool_span(
                                session,
                                &t,
                                ev.timing.start_unix_ns,
                                Some((r, ev.step)),
                                opts,
                            ),
                        )),
                        None => still.push(t),
                    }
                }
                st.pending = still;
                st.provider.get_or_insert_with(|| call.provider.clone());
                st.input_tokens += call.input_tokens.unwrap_or(0);
                st.output_tokens += call.output_tokens.unwrap_or(0);
                for (j, tc) in call.tool_calls.iter().enumerate() {
                    let needles = Needles::of(tc);
                    st.pending.push(PendingTool {
                        llm_step: ev.step,
                        index: j,
                        call: tc.clone(),
                        window_start: ev.timing.end_unix_ns,
                        needles,
                        claimed: 0,
                    });
                }
                let name = match &call.request_model {
                    Some(m) => format!("{} {m}", call.operation),
                    None => call.operation.clone(),
                };
                (name, llm_span_attrs(ev, call, opts))
            }
            None => ("chat".to_string(), http_attrs(ev)),
        };
        let mut sp = new_span(
            session,
            Role::Llm,
            "llm",
            Some(ev.step),
            0,
            name,
            SpanKind::Client,
            ev.timing.start_unix_ns,
            ev.timing.end_unix_ns,
            attrs,
        );
        if let Some((t, msg)) = error_of(&p) {
            sp.attributes.push(("error.type".into(), AttrValue::Str(t)));
            sp.error = Some(msg);
        }
        spans.push(SpanWriter::from_span(&trace_id(session), &sp, root));
        return spans;
    }
    // The hot path: a tool or other exchange is written straight to protobuf bytes.
    let (host, port, path) = split_url(&ev.request.url);
    let host = host.to_ascii_lowercase();
    let tool_name = rules.tool_name(&ev.request.method, &host, path);
    // What the request carries, to find the pending call whose arguments it holds.
    let carried = if st.pending.is_empty() {
        Vec::new()
    } else {
        causal::request_words(&ev.request.url, &p.request_body)
    };
    let owner = st
        .pending
        .iter_mut()
        .filter(|t| t.window_start <= ev.timing.start_unix_ns)
        .max_by_key(|t| {
            (
                t.needles.matched(|w| carried.binary_search(&w).is_ok()).0,
                usize::MAX - t.claimed,
            )
        });
    let tid = trace_id(session);
    let (start, end) = (ev.timing.start_unix_ns, ev.timing.end_unix_ns);
    let mut w = match owner {
        Some(t) => {
            t.claimed += 1;
            let parent = Some(span_id(session, "tool", t.llm_step, t.index));
            SpanWriter::new(
                &tid,
                &span_id(session, "http", ev.step, 0),
                parent,
                &[&tool_name],
                SpanKind::Client as i32,
                start,
                end,
            )
        }
        None if ev.kind == Kind::Tool => {
            let mut w = SpanWriter::new(
                &tid,
                &span_id(session, "http-tool", ev.step, 0),
                root,
                &["execute_tool ", &tool_name],
                SpanKind::Internal as i32,
                start,
                end,
            );
            w.attr("gen_ai.operation.name", Val::Str("execute_tool"))
                .attr("gen_ai.tool.name", Val::Str(&tool_name))
                .attr("gen_ai.tool.type", Val::Str("extension"));
            w
        }
        None => SpanWriter::new(
            &tid,
            &span_id(session, "http", ev.step, 0),
            root,
            &[&ev.request.method, " ", &host],
            SpanKind::Client as i32,
            start,
            end,
        ),
    };
    w.attr("http.request.method", Val::Str(&ev.request.method))
        .attr("url.full", Val::Str(&ev.request.url))
        .attr("server.address", Val::Str(&host))
        .attr("server.port", Val::Int(port as i64))
        .attr("tapedeck.step", Val::Int(ev.step as i64));
    if let Some(status) = ev.status() {
        w.attr("http.response.status_code", Val::Int(status as i64));
    }
    if let Some((t, msg)) = error_of(&p) {
        w.attr("error.type", Val::Str(&t)).error(&msg);
    }
    spans.push(w.finish());
    spans
}

/// Host, port and path of an absolute URL, borrowed (no allocation on the hot path).
fn split_url(url: &str) -> (&str, u16, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (
                h,
                p.strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(default),
            ),
            None => (v6, default),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().unwrap_or(default)),
            None => (authority, default),
        }
    };
    let path = tail.split(['?', '#']).next().unwrap_or("");
    (host, port, if path.is_empty() { "/" } else { path })
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn urls_split_without_allocating() {
        assert_eq!(
            split_url("https://api.test/v1/x?y=1"),
            ("api.test", 443, "/v1/x")
        );
        assert_eq!(split_url("http://127.0.0.1:8080"), ("127.0.0.1", 8080, "/"));
        assert_eq!(split_url("https://[::1]:4433/a#f"), ("::1", 4433, "/a"));
        assert_eq!(split_url("http://u:p@h.test/p"), ("h.test", 80, "/p"));
    }
}
