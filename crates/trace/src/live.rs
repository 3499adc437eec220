//! Live export: `tapedeck record --otlp-endpoint URL` sends each exchange's spans as it
//! completes. The proxy only hands the event to a bounded queue (a full queue drops and
//! counts, never blocks traffic); one task reads bodies, builds each exchange's spans
//! with the batch export's own builders (`spans::llm_spans`, `spans::exchange_span`), so
//! ids and attributes are the same, and pushes them in small batches.
//!
//! Live spans know only the past: an LLM span goes out when its call ends, a tool call's
//! span when the request that carries its result arrives (or at the end), and the root
//! when recording stops. LLM spans hang under the session root here even in multi-agent
//! sessions (the batch export puts them under their agent's span). MCP client spans need
//! an exchange's headers and bodies, which the live export does not read for non-LLM
//! exchanges: an MCP exchange goes out as an HTTP or tool span.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::adapters::{self, ToolCall};
use super::causal::{self, answers, Needles};
use super::otlp::Pusher;
use super::pb::{self, SpanWriter};
use super::spans::{
    agent_root, exchange_span, llm_spans, new_span, span_id, tool_call_span, trace_id, Parsed,
    Role, Span, SpanKind, TraceOptions,
};
use super::tool_names;
use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::EventSink;
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::Rules;
use tapedeck_store::Store;

const QUEUE: usize = 16384;
const BATCH: usize = 512;
const EVERY: Duration = Duration::from_millis(100);
/// How long a stopping recorder waits for the collector to take the spans left: a run
/// whose collector is gone or hangs ends this much later, no more.
pub const FINAL_WAIT: Duration = Duration::from_secs(5);

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
    counts: Arc<Counts>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The spans the exporter built, and what became of them.
#[derive(Default)]
struct Counts {
    exported: AtomicU64,
    failed: AtomicU64,
    /// Built and not yet sent or given up (kept for a collector that is down too): lost
    /// if the exporter is stopped first.
    waiting: AtomicU64,
}

impl Counts {
    fn taken(&self, n: u64) {
        self.waiting.fetch_sub(n, Ordering::Relaxed);
        self.exported.fetch_add(n, Ordering::Relaxed);
    }

    fn lost(&self, n: u64) {
        self.waiting.fetch_sub(n, Ordering::Relaxed);
        self.failed.fetch_add(n, Ordering::Relaxed);
    }
}

/// How many bytes of encoded spans are kept for a collector that does not take them,
/// to send once it takes spans again: the oldest batches go first past it.
pub const BACKLOG_BYTES: usize = 32 << 20;

/// The exporter's way to the collector. After a batch failed every attempt, the next
/// batches get one attempt each (no back-off) until one is taken: a collector that is
/// down costs neither a stall of seconds per batch nor a warning per batch. What it did
/// not take is kept (up to [`BACKLOG_BYTES`]) and sent once it takes a batch again: a
/// collector restarted during a run loses nothing.
struct Link {
    pusher: Pusher,
    once: Pusher,
    down: bool,
    /// True once the recorder stops: no more back-off before a retry.
    stop: tokio::sync::watch::Receiver<bool>,
    kept: Backlog,
}

impl Link {
    fn new(pusher: Pusher, stop: tokio::sync::watch::Receiver<bool>, kept: usize) -> Link {
        let mut once = pusher.clone();
        once.attempts = 1;
        Link {
            pusher,
            once,
            down: false,
            stop,
            kept: Backlog::new(kept),
        }
    }

    /// Pushes one batch of `n` spans: once while the collector is down, else with
    /// retries. Not taken, it is kept for later; taken after the collector was down,
    /// what was kept goes out behind it.
    async fn send(&mut self, body: bytes::Bytes, n: u64, c: &Counts) {
        let pusher = if self.down { &self.once } else { &self.pusher };
        match pusher
            .push_bytes_or_stop(body.clone(), Some(&self.stop))
            .await
        {
            Ok(()) => {
                c.taken(n);
                if self.down {
                    self.down = false;
                    tracing::warn!(
                        "live OTLP export: {} takes spans again; sending the {} kept \
                         while it did not",
                        self.pusher.url(),
                        spans(self.kept.spans)
                    );
                    self.resend(c).await;
                }
            }
            Err(e) => {
                if self.down {
                    tracing::debug!("live OTLP export: {e}; {} kept", spans(n));
                } else {
                    self.down = true;
                    tracing::warn!(
                        "live OTLP export: {e}. Until it takes a batch again, each batch is \
                         tried once and kept (up to {} MiB, the oldest dropped past it) to \
                         send then",
                        self.kept.limit >> 20
                    );
                }
                self.keep(body, n, c);
            }
        }
    }

    fn keep(&mut self, body: bytes::Bytes, n: u64, c: &Counts) {
        let dropped = self.kept.keep(body, n);
        if dropped > 0 {
            c.lost(dropped);
            if !self.kept.overflowed {
                self.kept.overflowed = true;
                tracing::warn!(
                    "live OTLP export: the spans kept for the collector passed {} MiB; \
                     the oldest are dropped (counted at the end)",
                    self.kept.limit >> 20
                );
            }
        }
    }

    /// Sends what was kept, oldest first, until the collector refuses one again.
    async fn resend(&mut self, c: &Counts) {
        self.kept.overflowed = false;
        while let Some((body, n)) = self.kept.pop() {
            if let Err(e) = self
                .pusher
                .push_bytes_or_stop(body.clone(), Some(&self.stop))
                .await
            {
                self.down = true;
                tracing::warn!(
                    "live OTLP export: {e}; {} kept to send when it takes spans again",
                    spans(self.kept.spans + n)
                );
                self.kept.put_back(body, n);
                return;
            }
            c.taken(n);
        }
    }

    /// The recorder stopped and the collector never took these: counted as failed.
    fn give_up(&mut self, c: &Counts) {
        let left = self.kept.clear();
        if left > 0 {
            c.lost(left);
            tracing::warn!(
                "live OTLP export: {} kept for {} were never taken",
                spans(left),
                self.pusher.url()
            );
        }
    }
}

/// Batches the collector did not take, oldest first, bounded in bytes.
struct Backlog {
    batches: std::collections::VecDeque<(bytes::Bytes, u64)>,
    bytes: usize,
    spans: u64,
    limit: usize,
    /// Batches were dropped since the collector last came back (one warning for them).
    overflowed: bool,
}

impl Backlog {
    fn new(limit: usize) -> Backlog {
        Backlog {
            batches: Default::default(),
            bytes: 0,
            spans: 0,
            limit,
            overflowed: false,
        }
    }

    /// Keeps a batch of `n` spans; returns how many spans of the oldest batches were
    /// dropped to stay within the bound (a batch larger than the bound is dropped too).
    fn keep(&mut self, body: bytes::Bytes, n: u64) -> u64 {
        self.put(body, n, false);
        let mut dropped = 0;
        while self.bytes > self.limit {
            let Some((_, n)) = self.pop() else {
                break;
            };
            dropped += n;
        }
        dropped
    }

    fn put(&mut self, body: bytes::Bytes, n: u64, front: bool) {
        self.bytes += body.len();
        self.spans += n;
        if front {
            self.batches.push_front((body, n));
        } else {
            self.batches.push_back((body, n));
        }
    }

    /// Puts back, first in line, a batch just taken out.
    fn put_back(&mut self, body: bytes::Bytes, n: u64) {
        self.put(body, n, true);
    }

    fn pop(&mut self) -> Option<(bytes::Bytes, u64)> {
        let (body, n) = self.batches.pop_front()?;
        self.bytes -= body.len();
        self.spans -= n;
        Some((body, n))
    }

    /// Empties it; returns the spans it held.
    fn clear(&mut self) -> u64 {
        let n = self.spans;
        *self = Backlog::new(self.limit);
        n
    }
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
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut link = Link::new(pusher, stop_rx, BACKLOG_BYTES);
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
                    c.waiting.fetch_add(spans.len() as u64, Ordering::Relaxed);
                    let buf = out.entry(session).or_default();
                    buf.extend(spans);
                    if buf.len() >= BATCH {
                        flush(&mut link, &mut out, &c).await;
                    }
                }
                flush(&mut link, &mut out, &c).await;
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
            c.waiting.fetch_add(
                out.values().map(|b| b.len() as u64).sum(),
                Ordering::Relaxed,
            );
            flush(&mut link, &mut out, &c).await;
            link.give_up(&c);
        });
        LiveExporter {
            tx: inbox,
            dropped,
            counts,
            stop,
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

    /// Stops taking events, sends what is left (waiting [`FINAL_WAIT`] at most: what
    /// the collector has not taken by then is counted as failed), and reports.
    pub async fn finish(mut self) -> LiveStats {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.stop.send_replace(true);
        let c = &self.counts;
        if let Some(mut t) = self.task.take() {
            if tokio::time::timeout(FINAL_WAIT, &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
                let left = c.waiting.swap(0, Ordering::Relaxed);
                c.failed.fetch_add(left, Ordering::Relaxed);
                tracing::warn!(
                    "live OTLP export: the collector did not take the last spans within {} s \
                     of stopping; {} not sent",
                    FINAL_WAIT.as_secs(),
                    spans(left)
                );
            }
        }
        LiveStats {
            exported: c.exported.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }
}

async fn flush(link: &mut Link, out: &mut HashMap<String, Vec<Outgoing>>, c: &Counts) {
    for (session, buf) in out.iter_mut() {
        if buf.is_empty() {
            continue;
        }
        let batch: Vec<_> = std::mem::take(buf);
        let body = bytes::Bytes::from(pb::request(session, &batch));
        link.send(body, batch.len() as u64, c).await;
    }
}

/// `n` and `noun`, plural unless `n` is 1: "1 span", "2 spans".
pub fn counted(n: u64, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn spans(n: u64) -> String {
    counted(n, "span")
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
    let body = |b3: &str| tapedeck_store::event_body_or_empty(store, session, ev.step, b3);
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
    let tid = trace_id(session);
    let mut spans = Vec::new();
    if ev.kind == Kind::Llm {
        if let Some(call) = &p.llm {
            close_answered(session, ev, call, st, opts, &mut spans);
            st.provider.get_or_insert_with(|| call.provider.clone());
            // Counts come from recorded bodies: saturate rather than overflow.
            st.input_tokens = st
                .input_tokens
                .saturating_add(call.input_tokens.unwrap_or(0));
            st.output_tokens = st
                .output_tokens
                .saturating_add(call.output_tokens.unwrap_or(0));
            for (j, tc) in call.tool_calls.iter().enumerate() {
                st.pending.push(PendingTool {
                    llm_step: ev.step,
                    index: j,
                    call: tc.clone(),
                    window_start: ev.timing.end_unix_ns,
                    needles: Needles::of(tc),
                    claimed: 0,
                });
            }
        }
        for sp in llm_spans(session, &p, opts) {
            spans.push(SpanWriter::from_span(&tid, &sp, root));
        }
        return spans;
    }
    let parts = UrlParts::parse(&ev.request.url);
    let tool_name = tool_names::by_rule_with(&ev.request.method, &parts, rules);
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
    let parent = match owner {
        Some(t) => {
            t.claimed += 1;
            Some(span_id(session, "tool", t.llm_step, t.index))
        }
        None => root,
    };
    let sp = exchange_span(session, &p, &tool_name, &parts.host, parent != root);
    spans.push(SpanWriter::from_span(&tid, &sp, parent));
    spans
}

/// Closes the pending tool calls whose results this LLM request carries.
fn close_answered(
    session: &str,
    ev: &Event,
    call: &adapters::LlmCall,
    st: &mut SessionLive,
    opts: &TraceOptions,
    spans: &mut Vec<Outgoing>,
) {
    let mut still = Vec::new();
    for t in st.pending.drain(..) {
        match call.tool_results.iter().find(|r| answers(r, &t.call)) {
            Some(r) => {
                let result = Some((r, ev.step));
                let sp = tool_span(session, &t, ev.timing.start_unix_ns, result, opts);
                spans.push(encode(session, sp));
            }
            None => still.push(t),
        }
    }
    st.pending = still;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::detect::testing::{llm_event, tool_event};
    use crate::spans::build_from;
    use prost::Message;
    use tapedeck_store::SledStore;

    /// What the live exporter sends for `events`, one session, in order.
    fn live(events: &[Event]) -> Vec<Outgoing> {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut st = SessionLive::default();
        let (rules, opts) = (Rules::default(), TraceOptions::default());
        events
            .iter()
            .flat_map(|ev| on_event("s", ev, &mut st, &store, &rules, &opts))
            .collect()
    }

    /// The batch export's encoding of the span of `step` (`role` as `show` names it).
    fn batch(events: &[Event], role: Role, step: u64) -> Outgoing {
        let parsed: Vec<Parsed> = events
            .iter()
            .map(|e| Parsed::new(e, Vec::new(), Vec::new()))
            .collect();
        let trace = build_from("s", &parsed, &Rules::default(), &TraceOptions::default());
        let sp = trace
            .spans
            .iter()
            .find(|sp| sp.role == role && sp.step == Some(step))
            .unwrap();
        let parent = sp.parent.map(|p| trace.spans[p].span_id);
        SpanWriter::from_span(&trace.trace_id, sp, parent)
    }

    fn attr(encoded: &[u8], key: &str) -> Option<String> {
        let sp = opentelemetry_proto::tonic::trace::v1::Span::decode(encoded).unwrap();
        sp.attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| format!("{:?}", kv.value))
    }

    #[test]
    fn the_backlog_keeps_batches_in_order_within_its_bound_dropping_the_oldest() {
        let body = |len: usize, tag: u8| bytes::Bytes::from(vec![tag; len]);
        let mut b = Backlog::new(100);
        assert_eq!(b.keep(body(40, 1), 4), 0);
        assert_eq!(b.keep(body(40, 2), 5), 0);
        assert_eq!((b.bytes, b.spans), (80, 9));
        // A third batch of 40 bytes passes the bound: the oldest (4 spans) goes.
        assert_eq!(b.keep(body(40, 3), 6), 4);
        assert_eq!((b.bytes, b.spans), (80, 11));
        let (first, n) = b.pop().unwrap();
        assert_eq!((first[0], n), (2, 5));
        assert_eq!((b.bytes, b.spans), (40, 6));
        b.put_back(first, n);
        assert_eq!(
            b.pop().unwrap().0[0],
            2,
            "a batch put back is first in line"
        );
        // A batch larger than the bound is dropped at once, with what is older.
        assert_eq!(b.keep(body(200, 4), 7), 6 + 7);
        assert_eq!((b.bytes, b.spans, b.batches.len()), (0, 0, 0));
        b.keep(body(10, 5), 1);
        assert_eq!(b.clear(), 1);
        assert_eq!((b.bytes, b.spans, b.limit), (0, 0, 100));
    }

    #[test]
    fn an_llm_call_no_adapter_parsed_is_the_same_span_live_and_in_batch() {
        let events = [llm_event(1, None, 0, 10)];
        let sent = live(&events);
        assert_eq!(sent.len(), 1);
        assert!(attr(&sent[0], "gen_ai.operation.name")
            .unwrap()
            .contains("chat"));
        assert!(attr(&sent[0], "gen_ai.provider.name")
            .unwrap()
            .contains("unknown"));
        assert_eq!(sent[0], batch(&events, Role::Llm, 1));
    }

    #[test]
    fn a_tool_exchange_nothing_claimed_is_the_same_span_live_and_in_batch() {
        let events = [
            llm_event(1, None, 0, 10),
            tool_event(2, None, "https://Tools.test:8443/weather?q=1", 500, 20, 30),
        ];
        let sent = live(&events);
        assert_eq!(sent.len(), 2);
        assert!(attr(&sent[1], "server.address")
            .unwrap()
            .contains("\"tools.test\""));
        assert!(attr(&sent[1], "error.type").unwrap().contains("500"));
        assert_eq!(sent[1], batch(&events, Role::Tool, 2));
    }
}
