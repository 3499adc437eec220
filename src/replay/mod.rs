//! Replay: serve recorded responses in recorded order, reject everything else loudly.
//!
//! A [`Replayer`] holds a recording in memory and a [`TraceIndex`]; it builds no
//! upstream client at all, so no request can leave the machine. Each request is put in
//! its stored form (decoded, redacted) and keyed exactly as record keyed it; the index
//! says which event it may take. A miss answers 404 with `x-tapedeck-miss` and an
//! OpenAI-shaped error body (404: the SDKs retry 408/409/429/5xx, and a miss must not be
//! retried into noise).

pub mod index;
pub mod live;
mod mcp;
mod miss;
mod ws;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::cli::{Order, Pace};
use crate::exchange::canonical::{identify, KeyBody};
use crate::exchange::encoding::{self, Coding};
use crate::exchange::redact::{self, Secrets};
use crate::exchange::{header, Event, MAX_EXCHANGE_TIME};
use crate::proxy::body::{self, BoxError, ProxyBody};
use crate::proxy::{BoxFuture, ClientCtx, Handler};
use crate::record::{upstream_error_response, InFlight};
use crate::recording::Recording;
use crate::rules::Rules;
use crate::store::keep_limit;
use index::{Slot, TraceIndex};

/// Header on every replayed response: the step it came from.
pub const STEP_HEADER: &str = "x-tapedeck-step";
pub const MISS_HEADER: &str = "x-tapedeck-miss";

pub struct ReplayOptions {
    pub order: Order,
    pub pace: Pace,
    /// `--allow-live HOST[:PORT]`: CONNECT targets tunnelled out untouched (see [`live`]).
    pub allow_live: Vec<String>,
    /// The store this replay holds open, if any: its control API answers read commands.
    pub store: Option<Arc<dyn crate::store::Store>>,
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
        format!(
            "replayed session {session}: served {}/{} events, {misses}, {unused}{live}",
            self.served, self.recorded
        )
    }
}

pub struct Replayer {
    rec: Recording,
    rules: Arc<Rules>,
    pace: Pace,
    index: Mutex<TraceIndex>,
    misses: Mutex<BTreeMap<&'static str, usize>>,
    /// Indices of served events, in serving order; and the first miss messages.
    served: Mutex<Vec<usize>>,
    miss_lines: Mutex<Vec<String>>,
    live: live::LiveHosts,
    pub inflight: Arc<InFlight>,
    control: crate::control::Control,
    mcp_sessions: mcp::Sessions,
}

impl Replayer {
    /// Builds the index. Keys are recomputed from the stored requests when the rules in
    /// force differ from those the recording was made under.
    pub fn new(
        rec: Recording,
        rules: Arc<Rules>,
        opts: ReplayOptions,
    ) -> Result<Arc<Replayer>, crate::store::StoreError> {
        let fp = rules.match_fingerprint();
        let mut slots = Vec::with_capacity(rec.events.len());
        for ev in &rec.events {
            let (kind, key) = if ev.rules.as_deref() == Some(fp.as_str()) {
                (ev.kind, ev.key.clone())
            } else {
                rec.identify(ev, &rules)?
            };
            let kind = mcp::cursor_kind(kind, &ev.request.method, &ev.request.headers);
            slots.push(Slot {
                step: ev.step,
                kind,
                key,
                start_ns: ev.timing.start_ns,
                end_ns: ev.timing.end_ns,
            });
        }
        let mut control =
            crate::control::Control::new(opts.store.clone(), "replay").serving_only(&rec.session);
        let index = Mutex::new(TraceIndex::new(slots, opts.order));
        let this = Arc::new_cyclic(|weak: &std::sync::Weak<Replayer>| {
            let w = weak.clone();
            control.status = Some(Arc::new(move || {
                w.upgrade()
                    .map(|r| {
                        let s = r.summary();
                        serde_json::json!({"session": r.rec.session, "recorded": s.recorded, "served": s.served,
                                            "misses": s.misses, "unused": s.unused.len()})
                    })
                    .unwrap_or_default()
            }));
            Replayer {
                rec,
                rules,
                pace: opts.pace,
                index,
                misses: Mutex::new(BTreeMap::new()),
                served: Mutex::new(Vec::new()),
                miss_lines: Mutex::new(Vec::new()),
                live: live::LiveHosts::new(&opts.allow_live),
                inflight: Arc::new(InFlight::default()),
                control,
                mcp_sessions: mcp::Sessions::default(),
            }
        });
        Ok(this)
    }

    pub fn session(&self) -> &str {
        &self.rec.session
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
        }
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

    /// `slot`: the client connection's place under `--max-connections`, which a WebSocket
    /// keeps while it lasts.
    async fn replay(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        slot: Option<crate::proxy::Slot>,
    ) -> Response<ProxyBody> {
        let arrived = Instant::now();
        let upgrade = crate::proxy::ws::is_upgrade_request(req.headers())
            .then(|| hyper::upgrade::on(&mut req));
        let _guard = self.inflight.enter();
        let (mut parts, incoming) = req.into_parts();
        let raw = match incoming.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                tracing::warn!("could not read a request body: {e}");
                return body::text(
                    StatusCode::BAD_REQUEST,
                    &format!("tapedeck: could not read the request body: {e}"),
                );
            }
        };
        let mut secrets = Secrets::default();
        parts.headers.remove(crate::record::AGENT_HEADER);
        let url = redact::url(&parts.uri.to_string(), &self.rules, &mut secrets);
        let mut stored_headers = redact::headers(&parts.headers, &self.rules, &mut secrets);
        let decoded = match header(&stored_headers, "content-encoding").and_then(Coding::parse) {
            Some(c) => encoding::decode(c, &raw).unwrap_or_else(|_| raw.to_vec()),
            None => raw.to_vec(),
        };
        let ct = header(&stored_headers, "content-type").map(str::to_string);
        let method = parts.method.to_string();
        // The request in the form record stored it: body, then headers, scrubbed alike.
        let (stored_body, whole) = redact::stored_body(
            &decoded,
            ct.as_deref(),
            keep_limit(ct.as_deref()),
            &self.rules,
            &mut secrets,
        );
        drop(decoded);
        redact::scrub_headers(&mut stored_headers, &secrets);
        let large_b3 = if whole {
            String::new()
        } else {
            blake3::hash(&stored_body).to_hex().to_string()
        };
        let key_body = if whole {
            KeyBody::Whole(&stored_body)
        } else {
            KeyBody::Large(&large_b3)
        };
        let (kind, key) = identify(&method, &url, &stored_headers, key_body, &self.rules);
        let kind = mcp::cursor_kind(kind, &method, &stored_headers);
        let taken = self
            .index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(kind, &key);
        match taken {
            Ok(i) => {
                self.served
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(i);
                let ev = &self.rec.events[i];
                tracing::debug!("served step {} for {method} {url}", ev.step);
                if ev.ws.is_some() {
                    return ws::respond(self.clone(), i, upgrade, &parts.headers, arrived, slot)
                        .await;
                }
                let recorded = if memchr::memmem::find(&stored_body, b"\"jsonrpc\"").is_some() {
                    self.rec.body(&ev.request.body).unwrap_or_default()
                } else {
                    Bytes::new()
                };
                let answer = mcp::Answer::new(&recorded, &stored_body, &parts.headers);
                if let (true, Some(session)) =
                    (parts.method == http::Method::DELETE, &answer.session)
                {
                    self.mcp_sessions.end(session);
                }
                let listening = mcp::is_listening_stream(&parts.method, &parts.headers);
                self.clone()
                    .respond(ev, &parts.method, arrived, &answer, listening)
                    .await
            }
            Err(m) => {
                let ev_of = |i: Option<usize>| i.map(|i| &self.rec.events[i]);
                let expected = ev_of(m.expected);
                let expected_body =
                    expected.map(|e| self.rec.body(&e.request.body).unwrap_or_default());
                let (json, line) = miss::describe(
                    &self.rec.session,
                    &m,
                    &miss::Received {
                        method: &method,
                        url: &url,
                        body: &stored_body,
                    },
                    expected.zip(expected_body.as_deref()),
                    ev_of(m.later),
                );
                self.note_miss(m.kind.as_str(), line);
                let mut resp = body::json(StatusCode::NOT_FOUND, &json);
                resp.headers_mut()
                    .insert(MISS_HEADER, http::HeaderValue::from_static(m.kind.as_str()));
                resp
            }
        }
    }

    async fn respond(
        self: Arc<Self>,
        ev: &Event,
        method: &http::Method,
        arrived: Instant,
        answer: &mcp::Answer,
        listening: bool,
    ) -> Response<ProxyBody> {
        let recorded = self.pace == Pace::Recorded;
        let Some(r) = &ev.response else {
            // No response was recorded: the upstream failed; fail the same way.
            let err = ev.error.clone().unwrap_or(crate::exchange::ExchangeError {
                kind: crate::exchange::ErrorKind::Other,
                message: "the recording has no response for this step".into(),
            });
            if recorded {
                let took =
                    Duration::from_nanos(ev.timing.end_ns.saturating_sub(ev.timing.start_ns));
                tokio::time::sleep_until(wait_until(arrived, took).into()).await;
            }
            let mut resp = upstream_error_response(&err);
            resp.headers_mut().insert(STEP_HEADER, ev.step.into());
            return resp;
        };
        let no_body = method == http::Method::HEAD
            || r.status == 204
            || r.status == 304
            || (100..200).contains(&r.status);
        // A large body kept in parts goes out part by part, never whole in memory.
        if !no_body && r.chunks.is_none() && r.body.encoding.is_none() {
            if let Some(parts) = self.rec.body_parts(&r.body) {
                let ttfb = Duration::from_nanos(ev.timing.ttfb_ns.unwrap_or(0));
                if recorded {
                    tokio::time::sleep_until(wait_until(arrived, ttfb).into()).await;
                }
                let mut builder = Response::builder().status(r.status);
                for (name, value) in &r.headers {
                    if !is_framing_header(name) {
                        builder = builder.header(name.as_str(), value.as_str());
                    }
                }
                builder = builder.header(STEP_HEADER, ev.step);
                if r.complete {
                    builder = builder.header("content-length", r.body.len);
                }
                let body = PartsBody {
                    replayer: self.clone(),
                    parts: parts.into(),
                    cut: !r.complete,
                    done: false,
                };
                return builder.body(body.boxed_unsync()).unwrap_or_else(|e| {
                    body::text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("tapedeck: step {} has a bad header: {e}", ev.step),
                    )
                });
            }
        }
        let data = match self.rec.body(&r.body) {
            Ok(d) => d,
            Err(e) => {
                return body::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("tapedeck: step {}: {e}", ev.step),
                );
            }
        };
        // The head goes out at the recorded time to first byte; chunks keep their recorded
        // offsets from the head, so any time spent here shifts them all alike.
        let ttfb = Duration::from_nanos(ev.timing.ttfb_ns.unwrap_or(0)).min(MAX_EXCHANGE_TIME);
        if recorded {
            tokio::time::sleep_until(wait_until(arrived, ttfb).into()).await;
        }
        let now = Instant::now();
        let arrived = now.checked_sub(ttfb).unwrap_or(now);
        let mut builder = Response::builder().status(r.status);
        let coding = r.body.encoding.as_deref().and_then(Coding::parse);
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
            builder = builder.header(name.as_str(), value);
        }
        builder = builder.header(STEP_HEADER, ev.step);
        let (data, chunks) = answer.body(data, r.chunks.clone());
        // A stream the recorded client hung up on stays open until this one does; an MCP
        // listening stream until its session's DELETE (see [`mcp`]).
        let client_left = ev
            .error
            .as_ref()
            .is_some_and(|e| e.kind == crate::exchange::ErrorKind::ClientClosed);
        let cut = !r.complete && !client_left;
        let streamed = r.chunks.is_some() && header(&r.headers, "content-length").is_none();
        let hold = self.hold(
            client_left && streamed,
            answer.session.as_deref().filter(|_| listening && streamed),
        );
        let body: ProxyBody = if no_body {
            if let Some(cl) = header(&r.headers, "content-length") {
                builder = builder.header("content-length", cl);
            }
            body::empty()
        } else if let Some(c) = coding {
            // Encoded bodies go out whole: the bytes decode to exactly what was recorded.
            let enc = encoding::encode(c, &data).unwrap_or_else(|_| data.to_vec());
            if !cut && r.chunks.is_none() {
                builder = builder.header("content-length", enc.len());
            }
            let at = chunks.as_ref().and_then(|c| c.first()).map(|c| c.at_ms);
            ReplayBody::new(vec![(at, Bytes::from(enc))], arrived, recorded, cut)
                .holding(hold)
                .boxed_unsync()
        } else if let Some(chunks) = &chunks {
            let mut frames = Vec::with_capacity(chunks.len().min(data.len() + 1));
            let mut off = 0usize;
            for c in chunks {
                let len = usize::try_from(c.len).unwrap_or(usize::MAX);
                let end = off.saturating_add(len).min(data.len());
                frames.push((Some(c.at_ms), data.slice(off..end)));
                off = end;
            }
            if off < data.len() {
                frames.push((None, data.slice(off..)));
            }
            if header(&r.headers, "content-length").is_some() && !cut && hold.is_none() {
                builder = builder.header("content-length", data.len());
            }
            ReplayBody::new(frames, arrived, recorded, cut)
                .holding(hold)
                .boxed_unsync()
        } else {
            if !cut {
                builder = builder.header("content-length", data.len());
            }
            let end_ms = ev.timing.end_ns.saturating_sub(ev.timing.start_ns) as f64 / 1e6;
            ReplayBody::new(vec![(Some(end_ms), data)], arrived, recorded, cut)
                .holding(hold)
                .boxed_unsync()
        };
        builder.body(body).unwrap_or_else(|e| {
            body::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("tapedeck: step {} has a bad header: {e}", ev.step),
            )
        })
    }
}

impl Replayer {
    /// What keeps a replayed body open after its last frame: nothing, or the end of an
    /// MCP session (`session`), or (`open`) only the client hanging up; a stop ends both.
    fn hold(self: &Arc<Self>, open: bool, session: Option<&str>) -> Option<Hold> {
        if !open && session.is_none() {
            return None;
        }
        let this = self.clone();
        let session = session.map(str::to_string);
        Some(Box::pin(async move {
            let stop = this.inflight.clone();
            match session {
                Some(s) => tokio::select! {
                    _ = this.mcp_sessions.ended(&s) => {}
                    _ = stop.draining() => {}
                },
                None => stop.draining().await,
            }
        }))
    }
}

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

/// Headers that describe the original framing, recomputed for the replayed body.
fn is_framing_header(name: &str) -> bool {
    matches!(
        name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "trailer"
            | "upgrade"
    )
}

impl Handler for Replayer {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        ctx: ClientCtx,
    ) -> BoxFuture<Response<ProxyBody>> {
        Box::pin(self.replay(req, ctx.slot))
    }

    fn raw_tunnel(&self, host: &str, port: u16) -> bool {
        self.live.admit(host, port)
    }

    fn control(self: Arc<Self>, req: Request<Incoming>) -> BoxFuture<Response<ProxyBody>> {
        Box::pin(async move { self.control.serve(req).await })
    }
}

/// A large recorded body read from the store one part at a time as the client takes it.
struct PartsBody {
    replayer: Arc<Replayer>,
    parts: std::collections::VecDeque<String>,
    cut: bool,
    done: bool,
}

impl Body for PartsBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.parts.pop_front() {
            // A part is at most 256 KiB of a local file, read as the client asks for it.
            Some(hex) => Poll::Ready(Some(
                self.replayer
                    .rec
                    .body_part(&hex)
                    .map(Frame::data)
                    .map_err(|e| -> BoxError { e.to_string().into() }),
            )),
            None if self.cut && !self.done => {
                self.done = true;
                Poll::Ready(Some(Err("the recorded response was cut here".into())))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty() && (!self.cut || self.done)
    }
}

/// A recorded body, frame by frame, optionally at the recorded pace; a body the
/// recording saw cut ends in an error, so the client sees the connection reset.
struct ReplayBody {
    frames: std::collections::VecDeque<(Option<f64>, Bytes)>,
    start: Instant,
    paced: bool,
    cut: bool,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
    cut_delayed: bool,
    /// Keeps the body open after its last frame until it resolves.
    hold: Option<Hold>,
}

type Hold = Pin<Box<dyn Future<Output = ()> + Send>>;

const CUT_DELAY: Duration = Duration::from_millis(20);

impl ReplayBody {
    fn new(
        frames: Vec<(Option<f64>, Bytes)>,
        start: Instant,
        paced: bool,
        cut: bool,
    ) -> ReplayBody {
        ReplayBody {
            frames: frames.into(),
            start,
            paced,
            cut,
            sleep: None,
            done: false,
            cut_delayed: false,
            hold: None,
        }
    }

    fn holding(mut self, hold: Option<Hold>) -> ReplayBody {
        self.hold = hold;
        self
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(s) = self.sleep.as_mut() {
                if s.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
                let (_, data) = self.frames.pop_front().unwrap_or_default();
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let Some((at, _)) = self.frames.front() else {
                if self.cut && !self.done {
                    // Let the frames already sent reach the client before the reset: an
                    // HTTP/2 reset discards frames still queued for the stream.
                    if !self.cut_delayed {
                        self.cut_delayed = true;
                        self.sleep = Some(Box::pin(tokio::time::sleep(CUT_DELAY)));
                        self.frames.push_back((None, Bytes::new()));
                        continue;
                    }
                    self.done = true;
                    return Poll::Ready(Some(Err(
                        "the recorded response was cut here (upstream reset)".into(),
                    )));
                }
                if let Some(h) = self.hold.as_mut() {
                    if h.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.hold = None;
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
            let (_, data) = self.frames.pop_front().unwrap_or_default();
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && (!self.cut || self.done) && self.hold.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.cut || self.hold.is_some() {
            return SizeHint::default();
        }
        let n: u64 = self.frames.iter().map(|(_, b)| b.len() as u64).sum();
        SizeHint::with_exact(n)
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;

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
