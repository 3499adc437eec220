//! Replay: serve recorded responses, reject everything else loudly.
//!
//! A [`Replayer`] holds a recording in memory and a [`TraceIndex`]; it builds no
//! upstream client at all, so no request can leave the machine. Each request is put in
//! its stored form (decoded, redacted) and keyed exactly as record keyed it; the index
//! says which event it may take, in causal order by default (see [`index`]). A miss
//! answers 404 with `x-tapedeck-miss` and an error body in the shape the client reads
//! (404: the SDKs retry 408/409/429/5xx, and a miss must not be retried into noise).

#![forbid(unsafe_code)]

pub mod hybrid;
pub mod index;
pub mod live;
mod load;
pub mod loose;
mod mcp;
pub mod meaning;
mod miss;
mod prefetch;
mod request;
pub mod twins;
mod ws;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use index::{Reorders, TraceIndex};
use request::ReadBody;
use tapedeck_model::credential::NameKind;
use tapedeck_model::exchange::canonical::{identify, KeyBody, MultipartDigest, UrlParts};
use tapedeck_model::exchange::encoding::{self, Coding};
use tapedeck_model::exchange::inject::Injection;
use tapedeck_model::exchange::limit::MaxBody;
use tapedeck_model::exchange::redact::{self, BodyScrubber, FieldNames, Remembered, Secrets};
use tapedeck_model::exchange::{header, BodyRef, Event, Kind, MAX_EXCHANGE_TIME};
use tapedeck_model::rules::Rules;
use tapedeck_proxy::body::{self, BoxError, ProxyBody};
use tapedeck_proxy::body::{close_after, error_response};
use tapedeck_proxy::shutdown::Tracker as InFlight;
use tapedeck_proxy::{BoxFuture, ClientCtx, Handler};
use tapedeck_store::keep_limit;
use tapedeck_store::recording::Recording;
use tapedeck_trace::causal::{self, tokens::hash};

/// Which recorded event a request may take: how far requests may come in another order
/// than recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    /// A call waits only for the calls whose answers it carries (and earlier calls to a
    /// stateful host); everything else may come in any order.
    Causal,
    /// One cursor for everything, no reordering.
    Strict,
    /// Match by key alone (first unused event with that key).
    Any,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Causal => "causal",
            Order::Strict => "strict",
            Order::Any => "any",
        }
    }

    /// Parses a case file's `order`; `None` means the default, causal.
    pub fn parse(s: Option<&str>) -> Result<Order, OrderError> {
        match s {
            None | Some("causal") => Ok(Order::Causal),
            Some("strict") => Ok(Order::Strict),
            Some("any") => Ok(Order::Any),
            Some(o) => Err(OrderError(o.to_string())),
        }
    }
}

/// A replay order that is none of causal, strict and any.
#[derive(Debug, thiserror::Error)]
#[error("order must be causal, strict or any, not {0:?}")]
pub struct OrderError(String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Send recorded responses at once.
    Fast,
    /// Reproduce the recorded time to first byte and chunk offsets.
    Recorded,
}

/// Header on every replayed response: the step it came from.
pub const STEP_HEADER: &str = "x-tapedeck-step";
pub const MISS_HEADER: &str = "x-tapedeck-miss";

pub struct ReplayOptions {
    pub order: Order,
    pub pace: Pace,
    /// `--allow-live HOST[:PORT]`: CONNECT targets tunnelled out untouched (see [`live`]).
    pub allow_live: Vec<String>,
    /// The largest request body read, decoded (`--max-body`).
    pub max_body: MaxBody,
    /// A what-if run (`--live`, `--on-miss live`, `--inject`): what goes out, what is
    /// injected, and the fork it records into. Its calls are matched by key in recorded
    /// order, then by meaning, whatever `order` says: the path has changed.
    pub hybrid: Option<hybrid::Hybrid>,
    /// How long a stream the recorded client hung up on stays open past its recorded
    /// part before it ends with an error (the daemon's `--idle-timeout`).
    pub held_open: Duration,
}

/// Counts for the closing summary.
#[derive(Default, Debug, Clone)]
pub struct ReplaySummary {
    pub recorded: usize,
    pub served: usize,
    pub misses: BTreeMap<&'static str, usize>,
    pub unused: Vec<u64>,
    /// Live tunnels opened (`--allow-live`), by `host:port`.
    pub live: BTreeMap<String, usize>,
    pub order: Order,
    pub reorders: Reorders,
    /// Recorded bodies that failed their check as they were served (the client got a
    /// cut or failed answer): one line each.
    pub damaged: Vec<String>,
    /// Streams the recorded client hung up on that this client read on past
    /// [`ReplayOptions::held_open`]: one line each.
    pub read_on: Vec<String>,
    /// Requests whose key missed, served the event they match by its redacted parts
    /// ([`loose`]): one line each.
    pub loose: Vec<String>,
    /// Requests whose key missed, served the event they are with twins' values swapped
    /// ([`twins`]): one line each.
    pub renamed: Vec<String>,
}

impl ReplaySummary {
    pub fn miss_count(&self) -> usize {
        self.misses.values().sum()
    }

    pub fn line(&self, session: &str) -> String {
        let misses = if self.misses.is_empty() {
            "0 misses".to_string()
        } else {
            let parts: Vec<String> = self
                .misses
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            format!("{} misses ({})", self.miss_count(), parts.join(", "))
        };
        let unused = if self.unused.is_empty() {
            "every event used".to_string()
        } else {
            let shown: Vec<String> = self.unused.iter().take(10).map(|s| s.to_string()).collect();
            format!(
                "{} never used (steps {}{})",
                self.unused.len(),
                shown.join(", "),
                if self.unused.len() > 10 { ", ..." } else { "" }
            )
        };
        let live = if self.live.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = self
                .live
                .iter()
                .map(|(target, n)| format!("{target} ×{n}"))
                .collect();
            format!("; live, not from the recording: {}", parts.join(", "))
        };
        let damaged = if self.damaged.is_empty() {
            String::new()
        } else {
            format!(
                "; {} recorded bod{} failed {} check and went out cut (run `tapedeck fsck`)",
                self.damaged.len(),
                if self.damaged.len() == 1 { "y" } else { "ies" },
                if self.damaged.len() == 1 {
                    "its"
                } else {
                    "their"
                },
            )
        };
        let read_on = match self.read_on.len() {
            0 => String::new(),
            n => format!(
                "; {n} stream{} the recorded client hung up on {} read on past it, and ended with an error",
                if n == 1 { "" } else { "s" },
                if n == 1 { "was" } else { "were" },
            ),
        };
        let loose = match self.loose.len() {
            0 => String::new(),
            n => format!(
                "; {n} matched by {} redacted parts (the marker passed on encoded, or a key replay could not know, where the recording holds [REDACTED])",
                if n == 1 { "its" } else { "their" },
            ),
        };
        let renamed = match self.renamed.len() {
            0 => String::new(),
            n => format!(
                "; {n} carried an id (or other value) of an identical request's answer other than the one recorded, served in another order, and {} matched with it swapped",
                if n == 1 { "was" } else { "were" },
            ),
        };
        format!(
            "replayed session {session}: served {}/{} events, {misses}, {unused}{live}{damaged}{read_on}{loose}{renamed}",
            self.served, self.recorded
        )
    }

    /// The calls served before an earlier recorded one (allowed; worth knowing), if any.
    pub fn reorder_line(&self) -> Option<String> {
        let r = &self.reorders;
        if r.count == 0 {
            return None;
        }
        const SHOWN: usize = 5;
        let mut shown: Vec<String> = r
            .first
            .iter()
            .take(SHOWN)
            .map(|(a, b)| format!("step {a} before step {b}"))
            .collect();
        if r.count > shown.len() {
            shown.push(format!("and {} more", r.count - shown.len()));
        }
        let why = match self.order {
            Order::Any => "--order any: by key alone",
            _ => "no dependency between them",
        };
        Some(format!(
            "accepted {} reorder{} ({why}): served {}",
            r.count,
            if r.count == 1 { "" } else { "s" },
            shown.join(", ")
        ))
    }
}

/// Whether a recorded host is this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// Method, host and path of a request, hashed, and its method, host and number of path
/// segments: what a miss compares to find the closest unserved call.
fn route(method: &str, url: &str) -> index::Route {
    let u = UrlParts::parse(url);
    let mut segs = [0u32; index::ROUTE_SEGMENTS];
    let mut segments = 0;
    for (i, seg) in u.path.split('/').filter(|s| !s.is_empty()).enumerate() {
        if let Some(h) = segs.get_mut(i) {
            // Never 0: 0 is a segment that is not there.
            *h = (hash(seg.as_bytes()) as u32).max(1);
        }
        segments += 1;
    }
    index::Route {
        path: hash(format!("{method} {} {}", u.host, u.path).as_bytes()),
        shape: hash(format!("{method} {} {segments}", u.host).as_bytes()),
        segs,
    }
}

/// A replay keeps the events of a session up to this long in memory (misses then name
/// recorded tool calls as the trace does); a longer one leaves them in the store and
/// reads each back when it serves it.
pub const KEEP_EVENTS_UP_TO: usize = meaning::NAMED_EVENTS;

pub struct Replayer {
    rec: Recording,
    rules: Arc<Rules>,
    pace: Pace,
    index: Mutex<TraceIndex>,
    misses: Mutex<BTreeMap<&'static str, usize>>,
    /// Indices of served events, in serving order; and the first miss messages.
    served: Mutex<Vec<usize>>,
    miss_lines: Mutex<Vec<String>>,
    /// See [`ReplaySummary::damaged`].
    damaged: Mutex<Vec<String>>,
    /// See [`ReplaySummary::read_on`].
    read_on: Mutex<Vec<String>>,
    /// See [`ReplaySummary::loose`].
    loose: Mutex<Vec<String>>,
    /// See [`ReplaySummary::renamed`].
    renamed: Mutex<Vec<String>>,
    held_open: Duration,
    live: live::LiveHosts,
    pub inflight: Arc<InFlight>,
    max_body: MaxBody,
    mcp_sessions: mcp::Sessions,
    hybrid: Option<hybrid::Hybrid>,
    /// Each event's kind under the rules in force.
    kinds: Vec<Kind>,
    /// The ports of the loopback hosts the recording called (see [`Replayer::loopback_ports`]).
    loopback_ports: Vec<u16>,
    /// The recorded tool calls by meaning, read on first need (a tool miss, a what-if run).
    meanings: OnceLock<meaning::MeaningIndex>,
    /// The trace's tool names of the recording, read on first need.
    tool_names: OnceLock<tapedeck_trace::tool_names::ToolNames>,
    /// The secret JSON field names, as every request's scrubber compares them.
    fields: FieldNames,
    /// What the next events served need from the store, read ahead off the runtime.
    prefetch: prefetch::Prefetch,
    /// Events were recorded under other matching or redaction rules than these (a miss
    /// says so: a part stored redacted under a rule this replay lacks no longer matches).
    other_rules: bool,
    /// Then: the rules those events' redactions show (their redacted paths, 256 at
    /// most, and query names), so a miss masks the live URL it prints by them.
    miss_mask: Option<Rules>,
    /// The secret values the live requests have revealed so far, hunted in the next
    /// ones as record hunted them (see [`Remembered`]).
    remembered: Remembered,
}

impl Replayer {
    /// Builds the index (see [`load`]).
    pub fn new(
        mut rec: Recording,
        rules: Arc<Rules>,
        opts: ReplayOptions,
    ) -> Result<Arc<Replayer>, tapedeck_store::StoreError> {
        let order = if opts.hybrid.is_some() {
            Order::Any
        } else {
            opts.order
        };
        let t = Instant::now();
        let loaded = load::load(&rec, &rules, order)?;
        tracing::debug!(
            "{} events indexed in {:.0} ms",
            rec.len(),
            t.elapsed().as_secs_f64() * 1000.0
        );
        let load::Loaded {
            slots,
            graph,
            loopback_ports,
            other_rules,
            miss_mask,
        } = loaded;
        let kinds = slots.iter().map(|s| s.kind).collect();
        // Matching needs only the slots and the graph: the events themselves are read
        // back from the store when served, so a long session is not held in memory. A
        // what-if run reads the recorded events as it goes (see [`hybrid`]): they stay.
        if opts.hybrid.is_none() && rec.len() > KEEP_EVENTS_UP_TO {
            rec.release_events();
        }
        let len = slots.len();
        let index = Mutex::new(TraceIndex::new(slots, order, graph));
        let this = Arc::new(Replayer {
            rec,
            fields: FieldNames::of(&rules),
            rules,
            pace: opts.pace,
            index,
            misses: Mutex::new(BTreeMap::new()),
            served: Mutex::new(Vec::new()),
            miss_lines: Mutex::new(Vec::new()),
            damaged: Mutex::new(Vec::new()),
            read_on: Mutex::new(Vec::new()),
            loose: Mutex::new(Vec::new()),
            renamed: Mutex::new(Vec::new()),
            held_open: opts.held_open,
            live: live::LiveHosts::new(&opts.allow_live),
            inflight: Arc::new(InFlight::default()),
            max_body: opts.max_body,
            mcp_sessions: mcp::Sessions::default(),
            hybrid: opts.hybrid,
            kinds,
            loopback_ports,
            meanings: OnceLock::new(),
            tool_names: OnceLock::new(),
            prefetch: prefetch::Prefetch::new(len),
            other_rules,
            miss_mask,
            remembered: Remembered::default(),
        });
        if let Err(e) = this
            .prefetch
            .start(Arc::downgrade(&this), |r: &Replayer| &r.rec)
        {
            // Every event is then read on the blocking pool when it is served.
            tracing::warn!(
                "replay: no thread to read ahead ({e}); reading each event as it is served"
            );
        }
        if this
            .hybrid
            .as_ref()
            .and_then(|h| h.injector.as_ref())
            .is_some_and(|i| i.names_tools())
        {
            // `tool:NAME` rules name recorded calls as the trace does: read it now, not
            // while an agent waits.
            this.tool_names();
        }
        Ok(this)
    }

    /// What a daemon's health endpoint reports of this replay.
    pub fn status_json(&self) -> serde_json::Value {
        let s = self.summary();
        serde_json::json!({"session": self.rec.session, "recorded": s.recorded, "served": s.served,
                            "misses": s.misses, "unused": s.unused.len(),
                            "order": s.order.as_str(), "reorders": s.reorders.count})
    }

    pub fn session(&self) -> &str {
        &self.rec.session
    }

    /// The recording it serves.
    pub fn recording(&self) -> &Recording {
        &self.rec
    }

    /// The ports the recording called on this machine (`localhost`, 127.0.0.1, ::1): a
    /// replay must not listen on one, or the agent's call to it would reach the replay
    /// itself (refused as a loop). The recorded server is usually gone by replay time,
    /// so its port is free, and an ephemeral port can be that very one.
    pub fn loopback_ports(&self) -> &[u16] {
        &self.loopback_ports
    }

    /// The `--allow-live` targets, as `host:port`.
    pub fn live_allowed(&self) -> Vec<String> {
        self.live.allowed()
    }

    /// What was served, in step order, as a recording (what the agent actually saw).
    pub fn served_recording(&self) -> Recording {
        let mut idx = self
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        idx.sort_unstable();
        self.rec.subset(&idx)
    }

    /// The first miss lines (at most 20).
    pub fn miss_lines(&self) -> Vec<String> {
        self.miss_lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn summary(&self) -> ReplaySummary {
        let ix = self.index.lock().unwrap_or_else(|p| p.into_inner());
        ReplaySummary {
            recorded: ix.len(),
            served: ix.served(),
            misses: self
                .misses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            unused: ix.unused().into_iter().map(|i| ix.slot(i).step).collect(),
            live: self.live.opened(),
            order: ix.order(),
            reorders: ix.reorders().clone(),
            damaged: self
                .damaged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            read_on: self
                .read_on
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            loose: self.loose.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            renamed: self
                .renamed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// A recorded body that fails its check as step `step` is served: said at once, and
    /// kept for the summary (and the exit status of a replay around a command).
    fn note_damaged_body(&self, step: u64, e: &dyn std::fmt::Display) {
        let line = format!(
            "step {step}: its recorded response body failed its check ({e}); the client got a cut answer. Run `tapedeck fsck`"
        );
        tracing::error!("{line}");
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// Counts a miss and keeps its line for the summary (the first 20).
    pub(crate) fn note_miss(&self, kind: &'static str, line: String) {
        tracing::warn!("{line}");
        {
            let mut lines = self.miss_lines.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() < 20 {
                lines.push(line);
            }
        }
        *self
            .misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_insert(0) += 1;
    }

    /// `ctx.slot`: the client connection's place under `--max-connections`, which a
    /// WebSocket keeps while it lasts.
    async fn replay(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        ctx: ClientCtx,
    ) -> Response<ProxyBody> {
        let arrived = Instant::now();
        let _guard = self.inflight.enter();
        // A what-if run numbers each exchange as it arrives, as record does; a call its
        // head already sends live goes out as it streams, unread.
        let step = self.hybrid.as_ref().map(|h| h.fork.next_step());
        if let Some(step) = step {
            if let Some(forward) = self.live_by_head(&req) {
                return self.forward_unread(forward.as_ref(), req, &ctx, step).await;
            }
        }
        let upgrade = tapedeck_proxy::ws::is_upgrade_request(req.headers())
            .then(|| hyper::upgrade::on(&mut req));
        let (mut parts, incoming) = req.into_parts();
        let mut asked = match self.asked(&mut parts, incoming, &ctx).await {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        // A what-if run hands these on to a call that goes live.
        let (raw, agent) = (asked.raw.take(), asked.agent.take());
        let asked = asked;
        let (method, url) = (asked.method.as_str(), asked.url.as_str());
        let got = asked.received();
        let (i, injection) = match (&self.hybrid, step) {
            (Some(h), Some(step)) => {
                let seen = hybrid::Seen {
                    step,
                    arrived,
                    ctx: &ctx,
                    parts: &parts,
                    raw,
                    agent,
                    key: &asked.key,
                    headers: &asked.headers,
                    got: &got,
                    too_large: asked.too_large,
                    upgrade: upgrade.as_ref(),
                };
                match Box::pin(self.clone().what_if(h, seen)).await {
                    hybrid::WhatIf::Serve(i, injection) => (i, injection),
                    hybrid::WhatIf::Answered(resp) => return resp,
                }
            }
            _ => match self.take(&asked, &got, parts.version).await {
                Ok(i) => (i, None),
                Err(resp) => return resp,
            },
        };
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(i);
        let failed = |e: &dyn std::fmt::Display| {
            body::text(StatusCode::INTERNAL_SERVER_ERROR, &format!("tapedeck: {e}"))
        };
        let mut fetched = match self.fetched(i).await {
            Ok(f) => f,
            Err(e) => return failed(&e),
        };
        // In memory, or read ahead with the rest (the recording let its events go).
        let decoded = fetched.event.take();
        let kept;
        let ev: &Event = match &decoded {
            Some(ev) => ev,
            None => match self.rec.event(i) {
                Ok(ev) => {
                    kept = ev;
                    &kept
                }
                Err(e) => return failed(&e),
            },
        };
        tracing::debug!("served step {} for {method} {url}", ev.step);
        if let Some(d) = injection.as_ref().and_then(Injection::delay) {
            tokio::time::sleep(d).await;
        }
        if ev.ws.is_some() {
            self.fork_served(step, ev, arrived, injection.as_ref())
                .await;
            let secrets = asked.secrets.clone();
            return ws::respond(
                self.clone(),
                ev,
                upgrade,
                &parts.headers,
                secrets,
                arrived,
                ctx.slot,
            )
            .await;
        }
        let sent: &[u8] = match &asked.body {
            ReadBody::Whole(b) => b,
            ReadBody::Large { .. } => &[],
        };
        let recorded = self.jsonrpc_request(sent, ev, &mut fetched).await;
        let answer = mcp::Answer::new(&recorded, sent, &parts.headers);
        if let (true, Some(session)) = (parts.method == http::Method::DELETE, &answer.session) {
            self.mcp_sessions.end(session);
        }
        let listening = mcp::is_listening_stream(&parts.method, &parts.headers);
        let ahead = Ahead {
            body: fetched.body,
            parts: fetched.parts,
        };
        let mut resp = self
            .clone()
            .respond(ev, &parts.method, arrived, &answer, listening, ahead)
            .await;
        if asked.too_large.is_some() {
            close_after(&mut resp, parts.version);
        }
        if let Some(n) = injection.as_ref().and_then(Injection::cut) {
            resp = resp.map(|b| tapedeck_proxy::fault::CutAfter::new(b, n).boxed_unsync());
        }
        self.fork_served(step, ev, arrived, injection.as_ref())
            .await;
        if let Some(ev) = decoded {
            self.prefetch.bury(ev);
        }
        resp
    }

    /// The event the index gives this request, taken from it; or the answer when none
    /// does: a miss (named on the blocking pool), or 413 for a body over `--max-body`.
    async fn take(
        self: &Arc<Self>,
        asked: &Asked,
        got: &miss::Received<'_>,
        version: http::Version,
    ) -> Result<usize, Response<ProxyBody>> {
        let (method, url) = (asked.method.as_str(), asked.url.as_str());
        let taken = self.index.lock().unwrap_or_else(|p| p.into_inner()).take(
            asked.kind,
            || route(method, url),
            &asked.key,
        );
        let m = match taken {
            Ok(i) => return Ok(i),
            Err(m) => m,
        };
        // Exhausted too: the events of this key were served to requests that held in
        // clear, at record, a value this replay knew to redact (concurrent calls), and the
        // one left holds it in clear.
        if let (
            index::MissKind::Unrecorded | index::MissKind::Exhausted,
            ReadBody::Whole(body),
            None,
        ) = (m.kind, &asked.body, asked.too_large)
        {
            if let Some(i) = self.take_by_redacted_parts(asked, body).await {
                return Ok(i);
            }
            if let Some(i) = self.take_by_twin_values(asked, body).await {
                return Ok(i);
            }
        }
        if let Some(max) = asked.too_large {
            let mut resp = self.refuse_too_large(method, url, max);
            close_after(&mut resp, version);
            return Err(resp);
        }
        if let (index::MissKind::Unrecorded, Some(e)) = (m.kind, m.expected) {
            let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            if index.slot(e).key == index::key_id(&asked.key) {
                tracing::warn!(
                    "step {}: {} {} is recorded, but it carries a value of an identical request's answer that this run already matched in place of another recorded value (identical requests answered in another order): one value cannot stand for two, so it misses",
                    index.slot(e).step,
                    method,
                    url
                );
            }
        }
        Err(self.answer_miss_off_runtime(m, got).await)
    }

    /// The recorded request's body when the one sent is a JSON-RPC call (its answer
    /// carries the call's id, swapped for the client's; see [`mcp`]), else nothing: an
    /// LLM call's request (tens of KiB) is not read for nothing.
    async fn jsonrpc_request(
        self: &Arc<Self>,
        sent: &[u8],
        ev: &Event,
        fetched: &mut prefetch::Fetched,
    ) -> Bytes {
        if memchr::memmem::find(sent, b"\"jsonrpc\"").is_none() {
            return Bytes::new();
        }
        match fetched.request.take() {
            Some(b) => b,
            None => self
                .read_off_runtime(ev.request.body.clone())
                .await
                .unwrap_or_default(),
        }
    }

    /// Reads the request as record stored it: the agent's name taken off, the URL and
    /// headers redacted, the body read through the same scrubber, then its kind and key.
    /// A body that cannot be read is answered here (400).
    async fn asked(
        &self,
        parts: &mut http::request::Parts,
        incoming: Incoming,
        ctx: &ClientCtx,
    ) -> Result<Asked, Response<ProxyBody>> {
        let mut secrets = self.remembered.secrets();
        let agent = parts
            .headers
            .remove(tapedeck_model::exchange::AGENT_HEADER)
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .or_else(|| ctx.agent.clone());
        let mut url = redact::url(&parts.uri.to_string(), &self.rules, &mut secrets);
        let mut headers =
            redact::headers(&parts.headers, NameKind::Header, &self.rules, &mut secrets);
        let mut in_clear = redact::scrub_url(&mut url, &self.rules, &mut secrets);
        let ct = header(&headers, "content-type").map(str::to_string);
        let coding = header(&headers, "content-encoding").and_then(Coding::parse);
        let raw_limit = self.raw_limit(ct.as_deref());
        // A request with no body (a GET) needs no scrubber: nothing to read.
        let read = if hyper::body::Body::is_end_stream(&incoming) {
            request::RequestBody::empty(raw_limit > 0)
        } else {
            request::read(
                ctx.ack.watch(incoming),
                coding,
                keep_limit(ct.as_deref()),
                self.max_body,
                BodyScrubber::with_fields(ct.as_deref(), self.fields.clone(), &secrets),
                MultipartDigest::new(ct.as_deref(), &self.rules),
                raw_limit,
            )
            .await
            .map_err(|e| {
                tracing::warn!("could not read a request body: {e}");
                body::text(
                    StatusCode::BAD_REQUEST,
                    &format!("tapedeck: could not read the request body: {e}"),
                )
            })?
        };
        let method = parts.method.to_string();
        secrets.extend_found(read.found);
        let body = match read.body {
            ReadBody::Whole(scrubbed) => ReadBody::Whole(redact::finish_whole(
                scrubbed,
                ct.as_deref(),
                &self.rules,
                &mut secrets,
                None,
            )),
            large => large,
        };
        redact::scrub_headers(&mut headers, &secrets);
        let before_body = redact::scrub_url(&mut url, &self.rules, &mut secrets);
        in_clear = in_clear.or(before_body);
        self.remembered.learn_request(&secrets);
        let key_body = match &body {
            ReadBody::Whole(b) => KeyBody::Whole(b),
            ReadBody::Large {
                parts: Some(parts), ..
            } => KeyBody::Parts(parts.clone()),
            ReadBody::Large { b3, .. } => KeyBody::Large(b3),
        };
        let (kind, key) = identify(&method, &url, &headers, key_body, &self.rules);
        Ok(Asked {
            agent,
            method,
            url,
            headers,
            body,
            raw: read.raw,
            too_large: read.too_large,
            kind,
            key,
            secrets,
            in_clear,
        })
    }

    /// Logs, counts and answers a miss.
    pub(crate) fn answer_miss(&self, m: &index::Miss, got: &miss::Received) -> Response<ProxyBody> {
        let ev_of = |i: Option<usize>| i.and_then(|i| self.rec.event(i).ok());
        let expected = ev_of(m.expected);
        let later = ev_of(m.later);
        let expected = expected.as_deref();
        // A large expected body is described by its hash, never read whole.
        let expected_bytes = expected
            .filter(|e| e.request.body.len <= miss::DIFF_LIMIT)
            .map(|e| self.rec.body(&e.request.body).unwrap_or_default());
        let expected_body = expected.map(|e| match &expected_bytes {
            Some(b) => miss::BodyView::Bytes(b),
            None => miss::BodyView::Large {
                b3: &e.request.body.b3,
                len: e.request.body.len,
            },
        });
        let (dependency, causal_accepts) = match (m.blocked, m.later) {
            (Some(index::Blocked::Dep(d)), Some(later)) => {
                (Some(causal::load::describe(&self.rec, later, &d)), false)
            }
            (Some(index::Blocked::Sequence), Some(later)) => {
                let ix = self.index.lock().unwrap_or_else(|p| p.into_inner());
                (None, ix.waits_for(later).is_none())
            }
            _ => (None, false),
        };
        let d = miss::describe(
            &self.rec.session,
            m,
            got,
            &miss::Named {
                expected: expected.zip(expected_body),
                later: later.as_deref(),
                dependency,
                causal_accepts,
                closest: self.closest_calls(got),
                other_rules: self.other_rules,
                mask: self.miss_mask.as_ref(),
            },
        );
        tracing::warn!("{}", d.line);
        {
            let mut lines = self.miss_lines.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() < 20 {
                lines.push(d.line.clone());
            }
        }
        *self
            .misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(m.kind.as_str())
            .or_insert(0) += 1;
        let mut resp = body::json(StatusCode::NOT_FOUND, &d.body);
        resp.headers_mut()
            .insert(MISS_HEADER, http::HeaderValue::from_static(m.kind.as_str()));
        if let Some((name, value)) = d.header {
            resp.headers_mut()
                .insert(name, http::HeaderValue::from_static(value));
        }
        resp
    }

    /// A request over `--max-body` that no event took: 413, counted as a miss.
    pub(crate) fn refuse_too_large(
        &self,
        method: &str,
        url: &str,
        max: MaxBody,
    ) -> Response<ProxyBody> {
        let err = tapedeck_model::exchange::ExchangeError {
            kind: tapedeck_model::exchange::ErrorKind::TooLarge,
            message: format!(
                "the request body of {method} {url} is larger than --max-body {max} (decoded), and the recording has no such request (raise --max-body to match it)"
            ),
        };
        let line = format!("MISS too_large: {}", err.message);
        tracing::warn!("{line}");
        {
            let mut lines = self.miss_lines.lock().unwrap_or_else(|p| p.into_inner());
            if lines.len() < 20 {
                lines.push(line);
            }
        }
        *self
            .misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry("too_large")
            .or_insert(0) += 1;
        error_response(&err)
    }

    async fn respond(
        self: Arc<Self>,
        ev: &Event,
        method: &http::Method,
        arrived: Instant,
        answer: &mcp::Answer,
        listening: bool,
        ahead: Ahead,
    ) -> Response<ProxyBody> {
        let recorded = self.pace == Pace::Recorded;
        let Some(r) = &ev.response else {
            return failed_as_recorded(ev, arrived, recorded).await;
        };
        let no_body = prefetch::has_no_body(method.as_str(), r.status);
        // A body declared empty cannot have been cut (older recordings marked some so).
        let declared_empty = r.body.len == 0
            && header(&r.headers, "content-length").is_some_and(|v| v.trim() == "0");
        let cut = !r.complete && !declared_empty;
        // A large body kept in parts goes out part by part, never whole in memory.
        let parts = if no_body { None } else { ahead.parts };
        let data = match (&parts, ahead.body) {
            (Some(_), _) => Bytes::new(),
            (None, Some(data)) => data,
            _ if no_body || r.body.len == 0 => Bytes::new(),
            (None, None) => match self.read_off_runtime(r.body.clone()).await {
                Ok(d) => d,
                Err(e) => {
                    self.note_damaged_body(ev.step, &e);
                    return body::text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("tapedeck: step {}: {e}", ev.step),
                    );
                }
            },
        };
        // The head goes out at the recorded time to first byte; chunks keep their recorded
        // offsets from the head, so any time spent here shifts them all alike.
        let ttfb = Duration::from_nanos(ev.timing.ttfb_ns.unwrap_or(0)).min(MAX_EXCHANGE_TIME);
        if recorded {
            tokio::time::sleep_until(wait_until(arrived, ttfb).into()).await;
        }
        let now = Instant::now();
        let arrived = now.checked_sub(ttfb).unwrap_or(now);
        let coding = r.body.encoding.as_deref().and_then(Coding::parse);
        let bad = |e: &dyn std::fmt::Display| bad_header(ev, e);
        let (status, mut head) = match recorded_head(ev, r, coding, answer) {
            Ok(h) => h,
            Err(e) => return bad(&e),
        };
        let length = |n: u64| http::HeaderValue::from(n);
        let (data, chunks) = answer.body(data, r.chunks.clone());
        // A stream the recorded client hung up on stays open until this one does; an MCP
        // listening stream until its session's DELETE (see [`mcp`]).
        let client_left = ev
            .error
            .as_ref()
            .is_some_and(|e| e.kind == tapedeck_model::exchange::ErrorKind::ClientClosed);
        let cut = cut && !client_left;
        let streamed = r.chunks.is_some() && header(&r.headers, "content-length").is_none();
        let hold = self.hold(
            client_left && streamed,
            answer.session.as_deref().filter(|_| listening && streamed),
            ev.step,
        );
        let body: ProxyBody = if no_body {
            let length = header(&r.headers, "content-length")
                .filter(|_| tapedeck_proxy::hop::may_carry_length(status));
            if let Some(cl) = length {
                match http::HeaderValue::from_str(cl) {
                    Ok(v) => head.insert(http::header::CONTENT_LENGTH, v),
                    Err(e) => return bad(&e),
                };
            }
            body::empty()
        } else if let Some(parts) = parts {
            let at = |i: usize| parts_at(i, &parts, r, ev);
            let frames = (0..parts.len())
                .map(|i| (at(i), Piece::Stored(parts[i].clone())))
                .collect();
            let mut body = ReplayBody::new(frames, arrived, recorded, cut)
                .reading(self.clone(), ev.step)
                .trailing(recorded_trailers(r));
            match coding {
                Some(c) => body = body.encoding(c, r.broke.clone(), &r.members),
                None if !cut
                    && (r.chunks.is_none() || header(&r.headers, "content-length").is_some()) =>
                {
                    head.insert(http::header::CONTENT_LENGTH, length(r.body.len));
                }
                None => {}
            }
            body.boxed_unsync()
        } else {
            let pacing = Pacing {
                arrived,
                recorded,
                cut,
                hold,
            };
            in_memory(data, chunks, coding, r, ev, pacing, &mut head)
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        *resp.headers_mut() = head;
        resp
    }
}

/// How a replayed answer's frames go out: from `arrived` (the head's time), at their
/// recorded offsets when `recorded` (`--pace recorded`); `cut`: it ends as the recorded
/// one was cut off; `hold`: it stays open until this resolves (see [`Replayer::hold`]).
struct Pacing {
    arrived: Instant,
    recorded: bool,
    cut: bool,
    hold: Option<Hold>,
}

/// An answer's body held in memory, framed as recorded: no body for zero bytes that were
/// complete (`Content-Length: 0`, never a chunked body); an encoded one whole, encoded
/// again; a streamed one in its recorded chunks at their offsets; else whole, at the
/// recorded end. `Content-Length` goes into `head` wherever the recording allows one.
fn in_memory(
    data: Bytes,
    chunks: Option<Vec<tapedeck_model::exchange::Chunk>>,
    coding: Option<Coding>,
    r: &tapedeck_model::exchange::ResponseRecord,
    ev: &Event,
    pacing: Pacing,
    head: &mut http::HeaderMap,
) -> ProxyBody {
    let Pacing {
        arrived,
        recorded,
        cut,
        hold,
    } = pacing;
    let length = |n: u64| http::HeaderValue::from(n);
    let trailers = recorded_trailers(r);
    if data.is_empty() && !cut && coding.is_none() && chunks.is_none() && trailers.is_none() {
        head.insert(http::header::CONTENT_LENGTH, length(0));
        return body::empty();
    }
    // A stream ends when the recorded one did, not at its last chunk (an upstream that
    // holds the stream open after its last event): an empty frame then, when paced.
    let end_ms = ev.timing.end_ns.saturating_sub(ev.timing.start_ns) as f64 / 1e6;
    let ended = |frames: &mut Vec<(Option<f64>, Piece)>| {
        let last = frames.iter().rev().find_map(|(at, _)| *at).unwrap_or(0.0);
        if recorded && hold.is_none() && end_ms > last + 1.0 {
            frames.push((Some(end_ms), Piece::Ready(Bytes::new())));
        }
    };
    if let (Some(c), Some(chunks)) = (coding, &chunks) {
        if chunks.len() > 1 {
            // A compressed stream: each recorded chunk encoded and flushed at its time.
            let mut frames = chunk_frames(&data, chunks);
            ended(&mut frames);
            let mut body = ReplayBody::new(frames, arrived, recorded, cut)
                .holding(hold)
                .trailing(trailers)
                .encoding(c, r.broke.clone(), &r.members);
            body.flush_each = true;
            return body.boxed_unsync();
        }
    }
    let frames = if let Some(c) = coding {
        // Encoded bodies go out whole: the bytes decode to exactly what was recorded.
        let enc = encoding::encode_as(c, &data, r.broke.as_ref(), &r.members)
            .unwrap_or_else(|_| data.to_vec());
        if !cut && r.chunks.is_none() {
            head.insert(http::header::CONTENT_LENGTH, length(enc.len() as u64));
        }
        let at = chunks.as_ref().and_then(|c| c.first()).map(|c| c.at_ms);
        vec![(at, Piece::Ready(enc.into()))]
    } else if let Some(chunks) = &chunks {
        let mut frames = chunk_frames(&data, chunks);
        ended(&mut frames);
        if header(&r.headers, "content-length").is_some() && !cut && hold.is_none() {
            head.insert(http::header::CONTENT_LENGTH, length(data.len() as u64));
        }
        frames
    } else {
        if !cut {
            head.insert(http::header::CONTENT_LENGTH, length(data.len() as u64));
        }
        vec![(Some(end_ms), Piece::Ready(data))]
    };
    ReplayBody::new(frames, arrived, recorded, cut)
        .holding(hold)
        .trailing(trailers)
        .boxed_unsync()
}

/// A body cut into its recorded chunks, each at its recorded offset.
fn chunk_frames(
    data: &Bytes,
    chunks: &[tapedeck_model::exchange::Chunk],
) -> Vec<(Option<f64>, Piece)> {
    let mut frames = Vec::with_capacity(chunks.len().min(data.len() + 1));
    let mut off = 0usize;
    for c in chunks {
        let len = usize::try_from(c.len).unwrap_or(usize::MAX);
        let end = off.saturating_add(len).min(data.len());
        frames.push((Some(c.at_ms), Piece::Ready(data.slice(off..end))));
        off = end;
    }
    if off < data.len() {
        frames.push((None, Piece::Ready(data.slice(off..))));
    }
    frames
}

/// The recorded trailers as fields to send; `None` when there were none. A field that
/// is no longer valid (a hand-edited tape) is left out.
fn recorded_trailers(r: &tapedeck_model::exchange::ResponseRecord) -> Option<http::HeaderMap> {
    if r.trailers.is_empty() {
        return None;
    }
    let mut map = http::HeaderMap::new();
    for (name, value) in &r.trailers {
        let Some(bytes) = tapedeck_model::exchange::header_bytes(value) else {
            continue;
        };
        let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(&bytes),
        ) else {
            continue;
        };
        map.append(n, v);
    }
    Some(map)
}

/// A step whose upstream failed when it was recorded fails the same way, after as long.
async fn failed_as_recorded(ev: &Event, arrived: Instant, recorded: bool) -> Response<ProxyBody> {
    let err = ev
        .error
        .clone()
        .unwrap_or(tapedeck_model::exchange::ExchangeError {
            kind: tapedeck_model::exchange::ErrorKind::Other,
            message: "the recording has no response for this step".into(),
        });
    if recorded {
        let took = Duration::from_nanos(ev.timing.end_ns.saturating_sub(ev.timing.start_ns));
        tokio::time::sleep_until(wait_until(arrived, took).into()).await;
    }
    let mut resp = error_response(&err);
    resp.headers_mut().insert(STEP_HEADER, ev.step.into());
    resp
}

/// The recorded status and headers of `ev`'s response, framing headers left out (the
/// body sets its own), its step added, and an MCP session id swapped for the live one.
/// Built in place: a `Response::builder` moves its parts through every header it adds,
/// which took a tenth of a small answer's serving time. Fails with what cannot be sent.
fn recorded_head(
    ev: &Event,
    r: &tapedeck_model::exchange::ResponseRecord,
    coding: Option<Coding>,
    answer: &mcp::Answer,
) -> Result<(StatusCode, http::HeaderMap), String> {
    let status = StatusCode::from_u16(r.status).map_err(|e| e.to_string())?;
    let mut head = http::HeaderMap::with_capacity(r.headers.len() + 2);
    for (name, value) in &r.headers {
        if is_framing_header(name)
            || (coding.is_none() && name == "content-encoding" && r.body.encoding.is_some())
        {
            continue;
        }
        let value = match (&answer.session, name.as_str()) {
            (Some(live), mcp::SESSION_HEADER) => live.as_str(),
            _ => value.as_str(),
        };
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value =
            tapedeck_model::exchange::header_value(value).map_err(|e| format!("{name}: {e}"))?;
        head.append(name, value);
    }
    head.insert(STEP_HEADER, ev.step.into());
    Ok((status, head))
}

/// What the client gets for a recorded header (or status) that cannot be sent.
pub(crate) fn bad_header(ev: &Event, e: &dyn std::fmt::Display) -> Response<ProxyBody> {
    body::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("tapedeck: step {} has a bad header: {e}", ev.step),
    )
}

/// A request as replay reads it to look it up: as record stored its twin.
struct Asked {
    agent: Option<String>,
    method: String,
    /// Redacted.
    url: String,
    /// Redacted and scrubbed.
    headers: Vec<tapedeck_model::exchange::Header>,
    /// Scrubbed; a large one only hashed.
    body: ReadBody,
    /// The wire bytes, when kept for a what-if run to forward.
    raw: Option<Bytes>,
    too_large: Option<MaxBody>,
    kind: Kind,
    key: String,
    /// The secret values the request held (its headers, URL and body), as record
    /// collected them: a WebSocket's client messages are scrubbed of them as record
    /// scrubbed its.
    secrets: Secrets,
    /// The URL before the values of its own headers and body were scrubbed from it, when
    /// they were: as a recording made before the thirty-third session stored it.
    in_clear: Option<String>,
}

impl Asked {
    /// What a miss is told about it.
    fn received(&self) -> miss::Received<'_> {
        let body = match &self.body {
            ReadBody::Whole(b) => miss::BodyView::Bytes(b),
            ReadBody::Large { b3, len, .. } => miss::BodyView::Large { b3, len: *len },
        };
        miss::Received {
            method: &self.method,
            url: &self.url,
            body,
            kind: self.kind,
        }
    }
}

/// What the read-ahead brought for the response: its body, or the parts of a large one.
struct Ahead {
    body: Option<Bytes>,
    parts: Option<Vec<String>>,
}

impl Replayer {
    /// What serving event `i` needs from the store: read ahead, or else read now on the
    /// blocking pool (sled and the files are never read on the runtime's threads).
    async fn fetched(self: &Arc<Self>, i: usize) -> Result<prefetch::Fetched, BoxError> {
        if let Some(f) = self.prefetch.take(i) {
            return Ok(f);
        }
        let this = self.clone();
        Ok(tokio::task::spawn_blocking(move || prefetch::Fetched::read(&this.rec, i)).await??)
    }

    /// A body of the recording kept whole, read on the blocking pool.
    async fn read_off_runtime(self: &Arc<Self>, r: BodyRef) -> Result<Bytes, BoxError> {
        let this = self.clone();
        Ok(tokio::task::spawn_blocking(move || this.rec.body(&r)).await??)
    }

    /// The one unserved event of the missed request's method, host and path that it
    /// matches by its redacted parts ([`loose`]; read on the blocking pool), taken, said
    /// and counted; of several recorded alike (one key: twins, as record stores the same
    /// call made three times while a concurrent call revealed the value it carries), the
    /// first, as an exact match takes recorded twins in their order. None when two
    /// recorded differently match: a value in clear does not tell them apart.
    async fn take_by_redacted_parts(self: &Arc<Self>, asked: &Asked, body: &[u8]) -> Option<usize> {
        if body.len() as u64 > miss::DIFF_LIMIT {
            return None;
        }
        let candidates = {
            let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            let mut c = index.same_path(route(&asked.method, &asked.url), LOOSE_CANDIDATES);
            // A recording made before the thirty-third session stored the request's URL
            // with its own key in clear (`/v1/keys/<key>/usage`): its route is that one.
            if let Some(clear) = &asked.in_clear {
                for e in index.same_path(route(&asked.method, clear), LOOSE_CANDIDATES) {
                    if !c.contains(&e) {
                        c.push(e);
                    }
                }
            }
            c
        };
        if candidates.is_empty() {
            return None;
        }
        let this = self.clone();
        let live = (
            asked.method.clone(),
            asked.url.clone(),
            asked.headers.clone(),
            body.to_vec(),
            asked.secrets.clone(),
        );
        let (e, step) = tokio::task::spawn_blocking(move || {
            let (method, url, headers, body, secrets) = live;
            let fit: Vec<(usize, u64)> = candidates
                .into_iter()
                .filter_map(|e| {
                    this.fits_redacted(e, &method, &url, &headers, &body, &secrets)
                        .map(|step| (e, step))
                })
                .collect();
            let (&one, rest) = fit.split_first()?;
            let index = this.index.lock().unwrap_or_else(|p| p.into_inner());
            rest.iter()
                .all(|&(other, _)| index.same_key(one.0, other))
                .then_some(one)
        })
        .await
        .ok()
        .flatten()?;
        let i = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_like(e)?;
        let line = format!(
            "step {step}: {} {} matched by its redacted parts: where the recording holds [REDACTED] it carries the marker encoded (a value it was served redacted, passed on) or a key of its own (one replay could not know), or it holds [REDACTED] where the recording holds a value the session revealed only after record stored it (concurrent calls) or the request's own key (recorded before tapedeck scrubbed a request's own secrets from its URL)",
            asked.method, asked.url
        );
        tracing::info!("{line}");
        self.loose
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        Some(i)
    }

    /// The unserved event of the missed request's method, host and path that is the
    /// request once each value it carries from a twin's answer is swapped for the value
    /// at the same place in the answer of a twin this run served ([`twins`]; read on the
    /// blocking pool), taken when the swap agrees with this run's others, said and
    /// counted.
    async fn take_by_twin_values(self: &Arc<Self>, asked: &Asked, body: &[u8]) -> Option<usize> {
        if body.len() as u64 > miss::DIFF_LIMIT {
            return None;
        }
        // Per candidate: its twin dependencies as (value hash, event, served twins).
        type Plan = (usize, Vec<(u64, usize, Vec<usize>)>);
        let plans: Vec<Plan> = {
            let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            index
                .same_path(route(&asked.method, &asked.url), LOOSE_CANDIDATES)
                .into_iter()
                .filter_map(|e| {
                    let deps: Vec<_> = index
                        .twin_deps(e)
                        .map(|d| (d.value, d.on as usize, index.served_twins(d.on as usize)))
                        .collect();
                    let readable = |t: &Vec<usize>| !t.is_empty() && t.len() <= TWINS_READ;
                    (!deps.is_empty() && deps.iter().all(|(_, _, t)| readable(t)))
                        .then_some((e, deps))
                })
                .collect()
        };
        if plans.is_empty() {
            return None;
        }
        let this = self.clone();
        let live = (
            asked.method.clone(),
            asked.headers.clone(),
            asked.key.clone(),
        );
        let (e, pairs, line) = tokio::task::spawn_blocking(move || {
            let (method, headers, key) = live;
            plans.into_iter().find_map(|(e, deps)| {
                this.fits_renamed(e, &deps, &method, &headers, &key)
                    .map(|(pairs, line)| (e, pairs, line))
            })
        })
        .await
        .ok()
        .flatten()?;
        let i = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_renamed(e, &pairs)?;
        tracing::info!("{line}");
        self.renamed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        Some(i)
    }

    /// Whether the live request (`method`, `headers`, `key`) is event `e`'s with the
    /// values it carries from twins' answers (`deps`: value hash, the event whose answer
    /// it came from, that event's served twins) swapped: the swaps as (recorded, live)
    /// value hashes, every twin dependency of `e` among them, and the line that says it.
    fn fits_renamed(
        &self,
        e: usize,
        deps: &[(u64, usize, Vec<usize>)],
        method: &str,
        headers: &[tapedeck_model::exchange::Header],
        key: &str,
    ) -> Option<(Vec<(u64, u64)>, String)> {
        let ev = self.rec.event(e).ok()?;
        let req = &ev.request;
        if !req.method.eq_ignore_ascii_case(method) || req.body.len > miss::DIFF_LIMIT {
            return None;
        }
        let recorded = self.rec.body(&req.body).ok()?;
        let answer = |i: usize| -> Option<Bytes> {
            let ev = self.rec.event(i).ok()?;
            let r = ev.response.as_ref()?;
            (r.body.len <= miss::DIFF_LIMIT).then(|| self.rec.body(&r.body).ok())?
        };
        // Per dependency: the recorded value, and the values served twins hold there.
        let mut options: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
        let text = [req.url.as_bytes(), &recorded[..]].concat();
        for (value, on, served) in deps {
            let rec_value = tapedeck_trace::causal::tokens::find_value(&text, *value)?;
            let place = twins::place(rec_value.as_bytes(), &answer(*on)?)?;
            let mut live: Vec<Vec<u8>> = served
                .iter()
                .filter_map(|&t| twins::value_at(&answer(t)?, place))
                .collect();
            live.dedup();
            options.push((rec_value, live));
        }
        // Every combination, up to a bound: a request carries one or two such values.
        let combos: usize = options.iter().map(|(_, l)| l.len().max(1)).product();
        if combos == 0 || combos > 64 {
            return None;
        }
        for n in 0..combos {
            let mut rest = n;
            let mut url = req.url.clone().into_bytes();
            let mut body = recorded.to_vec();
            let mut swaps = Vec::new();
            for (rec_value, live) in &options {
                let pick = live.get(rest % live.len().max(1))?;
                rest /= live.len().max(1);
                url = twins::replace(&url, rec_value.as_bytes(), pick);
                body = twins::replace(&body, rec_value.as_bytes(), pick);
                swaps.push((rec_value.as_str(), pick.as_slice()));
            }
            let Ok(url) = String::from_utf8(url) else {
                continue;
            };
            let (_, k) = identify(
                &req.method,
                &url,
                headers,
                KeyBody::Whole(&body),
                &self.rules,
            );
            if k != key {
                continue;
            }
            use tapedeck_trace::causal::tokens::hash;
            let pairs = swaps
                .iter()
                .map(|(r, l)| (hash(r.as_bytes()), hash(l)))
                .collect();
            let said: Vec<String> = swaps
                .iter()
                .filter(|(r, l)| r.as_bytes() != *l)
                .map(|(r, l)| {
                    format!(
                        "{} where the recording holds {r}",
                        String::from_utf8_lossy(l)
                    )
                })
                .collect();
            let line = format!(
                "step {}: {} {} matched with an identical request's answer swapped: it carries {} (identical requests answered in another order than recorded)",
                ev.step,
                req.method,
                url,
                said.join(", ")
            );
            return Some((pairs, line));
        }
        None
    }

    /// Whether a live request (stored form) matches event `e`'s by its redacted parts:
    /// the URL and body by [`loose`], the rest of what the key reads the same. The event's
    /// step when it does. Where the recording holds in clear a value the live request's
    /// `secrets` hold (the session revealed it, by replay's clock, before this request;
    /// by record's, in a call that ran at the same time and was read after), the
    /// recording is read as record would have stored it knowing the value.
    fn fits_redacted(
        &self,
        e: usize,
        method: &str,
        url: &str,
        headers: &[tapedeck_model::exchange::Header],
        body: &[u8],
        secrets: &Secrets,
    ) -> Option<u64> {
        let ev = self.rec.event(e).ok()?;
        let req = &ev.request;
        if !req.method.eq_ignore_ascii_case(method) || req.body.len > miss::DIFF_LIMIT {
            return None;
        }
        let recorded = self.rec.body(&req.body).ok()?;
        let fits = |rec_url: &str, recorded: &[u8]| {
            let keyed = |method: &str, headers: &[tapedeck_model::exchange::Header]| {
                identify(
                    method,
                    rec_url,
                    headers,
                    KeyBody::Whole(recorded),
                    &self.rules,
                )
                .1
            };
            loose::url_matches(rec_url, url)
                && loose::body_matches(recorded, body)
                && keyed(&req.method, &req.headers) == keyed(method, headers)
        };
        if fits(&req.url, &recorded) {
            return Some(ev.step);
        }
        if secrets.is_empty() {
            return None;
        }
        let mut known = secrets.clone();
        let ct = header(&req.headers, "content-type");
        let rec_url = redact::url(&req.url, &self.rules, &mut known);
        let scrubbed = redact::finish_whole(recorded.to_vec(), ct, &self.rules, &mut known, None);
        ((rec_url != req.url || scrubbed != recorded[..]) && fits(&rec_url, &scrubbed))
            .then_some(ev.step)
    }

    /// [`Replayer::answer_miss`] on the blocking pool: naming what a miss should have been
    /// reads recorded events and bodies (and, for a tool call, every call's arguments).
    async fn answer_miss_off_runtime(
        self: &Arc<Self>,
        m: index::Miss,
        got: &miss::Received<'_>,
    ) -> Response<ProxyBody> {
        let this = self.clone();
        let got = miss::ReceivedOwned::from(got);
        tokio::task::spawn_blocking(move || this.answer_miss(&m, &got.view()))
            .await
            .unwrap_or_else(|e| {
                body::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("tapedeck: describing a miss failed: {e}"),
                )
            })
    }

    /// What keeps a replayed body open after its last frame: nothing, or the end of an
    /// MCP session (`session`), or (`open`: the recorded client hung up there) the client
    /// hanging up, up to [`ReplayOptions::held_open`]: a client still reading then has
    /// gone on where the recorded one stopped, and the body ends with an error that says
    /// so (`Some`); a stop ends both quietly.
    fn hold(self: &Arc<Self>, open: bool, session: Option<&str>, step: u64) -> Option<Hold> {
        if !open && session.is_none() {
            return None;
        }
        let this = self.clone();
        let session = session.map(str::to_string);
        Some(Box::pin(async move {
            let stop = this.inflight.clone();
            match session {
                Some(s) => tokio::select! {
                    _ = this.mcp_sessions.ended(&s) => None,
                    _ = stop.draining() => None,
                },
                None => tokio::select! {
                    _ = stop.draining() => None,
                    _ = tokio::time::sleep(this.held_open) => Some(this.note_read_on(step)),
                },
            }
        }))
    }

    /// A client read on past where the recorded one hung up on step `step`'s stream.
    fn note_read_on(&self, step: u64) -> String {
        let line = format!(
            "step {step}: the recorded client hung up on this stream here; this one read on for {}s more and the stream ended with an error (the agent reads further than it did when recorded)",
            self.held_open.as_secs()
        );
        tracing::warn!("{line}");
        self.read_on
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.clone());
        format!("tapedeck: {line}")
    }
}

/// How many unserved events of a missed request's method, host and path are compared
/// with it by their redacted parts (each read from the store).
const LOOSE_CANDIDATES: usize = 32;
/// The most served twins whose answers a miss reads for a value to swap ([`twins`]): a
/// long polling session's thousand identical calls are not read again at every miss.
const TWINS_READ: usize = 256;

/// When a recorded offset from `base` falls, capped so that no recording can make replay
/// wait longer than an exchange may last or overflow the clock.
fn wait_until(base: Instant, offset: Duration) -> Instant {
    base.checked_add(offset.min(MAX_EXCHANGE_TIME))
        .unwrap_or(base)
}

/// A chunk's recorded time (milliseconds, from a tape: maybe huge, negative or NaN).
fn ms_offset(ms: f64) -> Duration {
    if ms.is_nan() || ms <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(ms / 1000.0)
        .unwrap_or(MAX_EXCHANGE_TIME)
        .min(MAX_EXCHANGE_TIME)
}

/// Headers that describe the original connection or framing, recomputed for the
/// replayed body.
fn is_framing_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || tapedeck_proxy::hop::is_hop_by_hop(name)
}

impl Handler for Replayer {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        ctx: ClientCtx,
    ) -> BoxFuture<Response<ProxyBody>> {
        Box::pin(self.replay(req, ctx))
    }

    fn raw_tunnel(&self, host: &str, port: u16) -> bool {
        self.live.admit(host, port)
    }

    fn raw_tunnel_flag(&self) -> &'static str {
        "--allow-live"
    }
}

/// When part `i` of a large stored body is due, under `--pace recorded`: a streamed body's
/// part goes out at the offset of the chunk its last byte arrived in; a plain body's last
/// part at the recorded end of the exchange.
fn parts_at(
    i: usize,
    parts: &[String],
    r: &tapedeck_model::exchange::ResponseRecord,
    ev: &Event,
) -> Option<f64> {
    let part_end = (i as u64 + 1) * tapedeck_store::SEGMENT as u64;
    match &r.chunks {
        Some(chunks) => {
            let mut off = 0u64;
            chunks.iter().find_map(|c| {
                off = off.saturating_add(c.len);
                (off >= part_end.min(r.body.len)).then_some(c.at_ms)
            })
        }
        None if i + 1 == parts.len() => {
            Some(ev.timing.end_ns.saturating_sub(ev.timing.start_ns) as f64 / 1e6)
        }
        None => None,
    }
}

/// One piece of a replayed body: in memory, a stored part read when it is due, or a
/// stored part already being read (one part ahead of the one going out).
enum Piece {
    Ready(Bytes),
    Stored(String),
    Reading(PartRead),
}

/// How many stored parts are read ahead of the one going out.
const READ_AHEAD: usize = 1;

/// A stored part being read on the blocking pool.
type PartRead = tokio::task::JoinHandle<Result<Bytes, tapedeck_store::StoreError>>;

impl Default for Piece {
    fn default() -> Self {
        Piece::Ready(Bytes::new())
    }
}

/// A recorded body, frame by frame, optionally at the recorded pace; a body the
/// recording saw cut ends in an error, so the client sees the connection reset.
struct ReplayBody {
    frames: std::collections::VecDeque<(Option<f64>, Piece)>,
    /// Where stored pieces are read from, and the step they are of.
    store: Option<Arc<Replayer>>,
    step: u64,
    /// Re-encodes the pieces as they go (a large body recorded with a Content-Encoding).
    encoder: Option<encoding::Encoder>,
    /// How the recorded coding broke, if it did: the encoder ends the same way.
    broke: Option<tapedeck_model::exchange::CodingBroke>,
    start: Instant,
    paced: bool,
    cut: bool,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
    cut_delayed: bool,
    /// Keeps the body open after its last frame until it resolves.
    hold: Option<Hold>,
    /// The stored part going out next, being read on the blocking pool (file and sled
    /// reads never run on the runtime's threads).
    reading: Option<PartRead>,
    /// Each piece's encoding flushed as it goes (a compressed stream, in its chunks).
    flush_each: bool,
    /// The recorded trailers, sent after the last piece.
    trailers: Option<http::HeaderMap>,
}

/// Resolves when a held body may end: `Some(why)` ends it with an error.
type Hold = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

const CUT_DELAY: Duration = Duration::from_millis(20);

impl ReplayBody {
    fn new(
        frames: Vec<(Option<f64>, Piece)>,
        start: Instant,
        paced: bool,
        cut: bool,
    ) -> ReplayBody {
        ReplayBody {
            frames: frames.into(),
            store: None,
            step: 0,
            encoder: None,
            broke: None,
            start,
            paced,
            cut,
            sleep: None,
            done: false,
            cut_delayed: false,
            hold: None,
            reading: None,
            flush_each: false,
            trailers: None,
        }
    }

    fn holding(mut self, hold: Option<Hold>) -> ReplayBody {
        self.hold = hold;
        self
    }

    /// Sends `trailers` (when there are any) after the last piece.
    fn trailing(mut self, trailers: Option<http::HeaderMap>) -> ReplayBody {
        self.trailers = trailers;
        self
    }
}

impl ReplayBody {
    fn reading(mut self, replayer: Arc<Replayer>, step: u64) -> ReplayBody {
        self.store = Some(replayer);
        self.step = step;
        self
    }

    /// Encodes the pieces as they go, in the recorded gzip members (`members`: see
    /// [`encoding::Encoder::with_members`]), and ends the coding as the recorded one
    /// ended (`broke`: see [`encoding::Encoder::finish_as`]).
    fn encoding(
        mut self,
        coding: Coding,
        broke: Option<tapedeck_model::exchange::CodingBroke>,
        members: &[u64],
    ) -> ReplayBody {
        self.encoder = encoding::Encoder::with_members(coding, members).ok();
        self.broke = broke;
        self
    }

    /// A piece's bytes, encoded as needed.
    fn encode(&mut self, data: Bytes) -> Result<Bytes, BoxError> {
        match self.encoder.as_mut() {
            Some(e) if self.flush_each => Ok(e.feed_flushed(&data)?.into()),
            Some(e) => Ok(e.feed(&data)?.into()),
            None => Ok(data),
        }
    }

    /// Starts reading a stored part (at most 256 KiB of a local file) on the blocking pool.
    fn read_part(store: &Option<Arc<Replayer>>, hex: String) -> Result<PartRead, BoxError> {
        let r = store
            .clone()
            .ok_or("tapedeck: a stored part without a store")?;
        Ok(tokio::task::spawn_blocking(move || r.rec.body_part(&hex)))
    }

    /// The next piece as a frame. A stored part is read on the blocking pool while this
    /// body waits, and the part after it starts reading at once: its file read and
    /// checksum overlap this part's encryption and send (two parts in memory at most).
    fn next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.reading.is_none() {
            let (_, piece) = self.frames.pop_front().unwrap_or_default();
            let read = match piece {
                Piece::Ready(b) => return Poll::Ready(Some(self.encode(b).map(Frame::data))),
                Piece::Reading(read) => read,
                Piece::Stored(hex) => match Self::read_part(&self.store, hex) {
                    Ok(read) => read,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
            };
            self.reading = Some(read);
            for (_, ahead) in self.frames.iter_mut().take(READ_AHEAD) {
                if !matches!(ahead, Piece::Stored(_)) {
                    continue;
                }
                if let Piece::Stored(hex) = std::mem::take(ahead) {
                    // Without a store it stays as it is and fails when it is due.
                    *ahead = match Self::read_part(&self.store, hex.clone()) {
                        Ok(read) => Piece::Reading(read),
                        Err(_) => Piece::Stored(hex),
                    };
                }
            }
        }
        let Some(reading) = self.reading.as_mut() else {
            return Poll::Pending;
        };
        let read = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.reading = None;
        let data = match read {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                if let Some(r) = &self.store {
                    r.note_damaged_body(self.step, &e);
                }
                return Poll::Ready(Some(Err(e.into())));
            }
            Err(e) => {
                return Poll::Ready(Some(Err(format!("tapedeck: reading a part: {e}").into())))
            }
        };
        Poll::Ready(Some(self.encode(data).map(Frame::data)))
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.reading.is_some() {
            return self.next(cx);
        }
        loop {
            if let Some(s) = self.sleep.as_mut() {
                if s.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
                return self.next(cx);
            }
            let Some((at, _)) = self.frames.front() else {
                if let Some(e) = self.encoder.take() {
                    let tail = e
                        .finish_as(self.broke.as_ref())
                        .map_err(|e| -> BoxError { e.to_string().into() });
                    return Poll::Ready(Some(tail.map(|t| Frame::data(t.into()))));
                }
                if self.cut && !self.done {
                    // Let the frames already sent reach the client before the reset: an
                    // HTTP/2 reset discards frames still queued for the stream.
                    if !self.cut_delayed {
                        self.cut_delayed = true;
                        self.sleep = Some(Box::pin(tokio::time::sleep(CUT_DELAY)));
                        self.frames.push_back((None, Piece::default()));
                        continue;
                    }
                    self.done = true;
                    return Poll::Ready(Some(Err(
                        "the recorded response was cut here (upstream reset)".into(),
                    )));
                }
                if let Some(h) = self.hold.as_mut() {
                    let Poll::Ready(why) = h.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    self.hold = None;
                    if let Some(why) = why {
                        self.done = true;
                        return Poll::Ready(Some(Err(why.into())));
                    }
                }
                if let Some(t) = self.trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                return Poll::Ready(None);
            };
            if self.paced {
                if let Some(ms) = at {
                    let due = wait_until(self.start, ms_offset(*ms));
                    if due > Instant::now() {
                        self.sleep = Some(Box::pin(tokio::time::sleep_until(due.into())));
                        continue;
                    }
                }
            }
            return self.next(cx);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.reading.is_none()
            && self.encoder.is_none()
            && (!self.cut || self.done)
            && self.hold.is_none()
            && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.cut || self.encoder.is_some() || self.hold.is_some() {
            return SizeHint::default();
        }
        let mut n = 0u64;
        for (_, piece) in &self.frames {
            match piece {
                Piece::Ready(b) => n += b.len() as u64,
                Piece::Stored(_) | Piece::Reading(_) => return SizeHint::default(),
            }
        }
        SizeHint::with_exact(n)
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recordings_loopback_hosts_are_told_from_the_rest() {
        for host in [
            "localhost",
            "api.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "0.0.0.0",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["api.openai.com", "10.0.0.1", "localhost.example.com", "::2"] {
            assert!(!is_loopback_host(host), "{host}");
        }
        // As the recorded URL gives them.
        let u = UrlParts::parse("https://[::1]:8443/v1");
        assert!(is_loopback_host(&u.host) && u.port == 8443);
        let u = UrlParts::parse("https://LOCALHOST/v1");
        assert!(is_loopback_host(&u.host) && u.port == 443);
    }

    #[test]
    fn recorded_offsets_from_a_hostile_tape_neither_panic_nor_wait_for_ever() {
        assert_eq!(ms_offset(1e300), MAX_EXCHANGE_TIME);
        assert_eq!(ms_offset(f64::INFINITY), MAX_EXCHANGE_TIME);
        assert_eq!(ms_offset(f64::NAN), Duration::ZERO);
        assert_eq!(ms_offset(-5.0), Duration::ZERO);
        assert_eq!(ms_offset(1500.0), Duration::from_millis(1500));
        let now = Instant::now();
        let far = wait_until(now, Duration::from_nanos(u64::MAX));
        assert_eq!(far, now + MAX_EXCHANGE_TIME);
        assert_eq!(wait_until(now, Duration::MAX), now + MAX_EXCHANGE_TIME);
    }
}
