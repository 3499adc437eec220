//! Record: forward every exchange upstream unchanged and store it as an event.
//!
//! The request body is teed on its way to the upstream; the response body is teed on
//! its way to the client, frame by frame. The event is written to the store *before*
//! the client sees the end of the response, so once an agent has its answer the
//! exchange is already stored (and durable at the next group commit, well under
//! 100 ms later).

#![forbid(unsafe_code)]

mod capture;
mod inject;
pub mod upstream;
mod writer;
mod ws;

pub use inject::{Faults, ToolNamer};

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::oneshot;

use crate::upstream::Upstream;
use capture::{Capture, Captured};
use tapedeck_model::credential::NameKind;
use tapedeck_model::exchange::canonical::{identify, CanonicalPart, KeyBody};
use tapedeck_model::exchange::inject::{Injected, Injection};
use tapedeck_model::exchange::limit::MaxBody;
use tapedeck_model::exchange::redact::{self, BodyScrubber, FieldNames, Secrets};
use tapedeck_model::exchange::{
    header, is_streaming, now_unix_ns, version_str, BodyRef, CodingBroke, ErrorKind, Event,
    ExchangeError, Header, Kind, RequestRecord, ResponseRecord, Timing, AGENT_HEADER,
};
use tapedeck_model::rules::Rules;
use tapedeck_model::session::{SessionClock, SessionName};
use tapedeck_proxy::body::{self, close_after, error_response, BoxError, ProxyBody};
use tapedeck_proxy::fault;
use tapedeck_proxy::{hop, BoxFuture, ClientCtx, Handler};
use tapedeck_store::{keep_limit, Store, WrittenBody, WHOLE_JSON_LIMIT};

/// Exchanges in flight, so a stop can wait for them.
type InFlight = tapedeck_proxy::shutdown::Tracker;
type InFlightGuard = tapedeck_proxy::shutdown::TrackGuard;

#[derive(Default)]
pub struct RecordStats {
    pub exchanges: AtomicU64,
    pub errors: AtomicU64,
    /// Exchanges whose bodies could not be stored (see [`tapedeck_store::UNSTORED`]).
    pub unstored: AtomicU64,
}

pub use tapedeck_model::exchange::EventSink;

pub struct Recorder {
    store: Arc<dyn Store>,
    rules: Arc<Rules>,
    upstream: Upstream,
    passthrough: Vec<wildmatch::WildMatch>,
    sessions: Mutex<HashMap<SessionName, Arc<SessionClock>>>,
    pub inflight: Arc<InFlight>,
    pub stats: RecordStats,
    sink: Option<EventSink>,
    max_body: MaxBody,
    faults: Option<Faults>,
    /// The rules' match fingerprint, stamped on every event (computed once: it hashes
    /// the rules, and the rules do not change while recording).
    fingerprint: String,
    /// The secret JSON field names, as every body scrubber compares them.
    fields: FieldNames,
    /// Where bodies and events are written (see [`writer`]).
    writer: writer::Writer,
    /// The machine's cores: with fewer exchanges open than this, a core is spare to wait
    /// awake on (see [`Recorder::spare_core`]).
    cores: usize,
    /// Exchanges the store could not take at all (see [`tapedeck_store::lost`]).
    losses: tapedeck_store::lost::Losses,
}

/// What the caller of [`Recorder::forward`] has already decided about an exchange.
#[derive(Default)]
pub struct Given {
    /// The step it gets (from a clock shared through [`Recorder::adopt`]).
    pub step: Option<u64>,
    /// The fault injected into it, decided by the caller instead of this recorder's rules.
    pub injection: Option<Injection>,
}

impl Recorder {
    pub fn new(
        store: Arc<dyn Store>,
        rules: Arc<Rules>,
        upstream: Upstream,
        passthrough: &[String],
        sink: Option<EventSink>,
        max_body: MaxBody,
        faults: Option<Faults>,
    ) -> std::io::Result<Arc<Recorder>> {
        let writer = writer::Writer::start().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start the store writer thread: {e}"),
            )
        })?;
        Ok(Arc::new(Recorder {
            store,
            fingerprint: rules.match_fingerprint(),
            fields: FieldNames::of(&rules),
            writer,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            rules,
            upstream,
            passthrough: passthrough
                .iter()
                .map(|p| wildmatch::WildMatch::new(&p.to_ascii_lowercase()))
                .collect(),
            sessions: Mutex::new(HashMap::new()),
            inflight: Arc::new(InFlight::default()),
            stats: RecordStats::default(),
            sink,
            max_body,
            faults,
            losses: tapedeck_store::lost::Losses::default(),
        }))
    }

    /// How many exchanges went through to the agent but could not be stored at all, the
    /// first of them with why (`session#step: error`), and in how many runs of them the
    /// mark of where a session stopped being stored could not be stored either.
    pub fn lost(&self) -> (u64, Option<String>, u64) {
        self.losses.totals()
    }

    /// Whether a core is spare: fewer exchanges are open than the machine has cores. Then
    /// an exchange waits for its event's write awake, for a short while, instead of
    /// sleeping (a runtime thread put to sleep and woken takes 20-100 µs more on this VM;
    /// waiting awake, it yields its core to any thread that wants it). Under load a
    /// runtime thread has other exchanges to work on while the writer works, and sleeps
    /// only when it has none.
    fn spare_core(&self) -> bool {
        self.inflight.count() < self.cores
    }

    /// Records `clock`'s session with that clock, so this recorder and another writer of
    /// the session (a what-if run's served exchanges) share one step counter and time base.
    pub fn adopt(&self, clock: Arc<SessionClock>) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(clock.name().clone(), clock);
    }

    /// Forwards one exchange upstream and records it, exactly as a proxied one is; the
    /// body may be one already read (a what-if run reads a request before it knows it
    /// must go out live).
    pub fn forward(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
        ctx: ClientCtx,
        given: Given,
    ) -> BoxFuture<Response<ProxyBody>> {
        Box::pin(self.clone().record(req, ctx, given))
    }

    /// Sessions this process has recorded into, in the order first seen.
    pub fn sessions_recorded(&self) -> Vec<String> {
        let mut v: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|c| (c.started(), c.name().to_string()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n).collect()
    }

    fn clock(&self, name: &SessionName) -> Result<Arc<SessionClock>, tapedeck_store::StoreError> {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(name) {
            return Ok(c.clone());
        }
        let (next, offset_ns) = match self.store.session(name.as_str())? {
            Some(info) => {
                let last = self.store.last_step(name.as_str())?.unwrap_or(0);
                // Steps count up from here; one near the end of u64 would wrap to 0.
                if last >= u64::MAX / 2 {
                    return Err(tapedeck_store::StoreError::StepsExhausted {
                        session: name.to_string(),
                        last,
                    });
                }
                tracing::warn!(
                    "session {name} already has {} events; appending from step {} (choose another --session to start a new one)",
                    info.events,
                    last + 1
                );
                (last + 1, now_unix_ns().saturating_sub(info.first_unix_ns))
            }
            None => (1, 0),
        };
        let c = Arc::new(SessionClock::new(name.clone(), next, offset_ns));
        map.insert(name.clone(), c.clone());
        Ok(c)
    }

    async fn record(
        self: Arc<Self>,
        mut req: Request<ProxyBody>,
        ctx: ClientCtx,
        given: Given,
    ) -> Response<ProxyBody> {
        let client_upgrade = tapedeck_proxy::ws::is_upgrade_request(req.headers())
            .then(|| hyper::upgrade::on(&mut req));
        let clock = match self.clock(&ctx.session) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot record into session {}: {e}", ctx.session);
                return body::json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({"error": {"type": "tapedeck_store_error", "message": e.to_string()}}),
                );
            }
        };
        let step = given.step.unwrap_or_else(|| clock.next_step());
        let (mut parts, incoming) = req.into_parts();
        let (mut pending, tee) = self.begin(clock, step, &mut parts, incoming, &ctx);
        let injection = self.inject(given.injection, &mut pending, &parts.uri).await;

        hop::strip(&mut parts.headers);
        let head_request = parts.method == http::Method::HEAD;
        if client_upgrade.is_some() {
            ws::upstream_headers(&mut parts.headers);
        }
        let client_h2 = parts.version == http::Version::HTTP_2;
        parts.version = http::Version::HTTP_11;
        let ended = Arc::new(tokio::sync::Notify::new());
        let up_req = Request::from_parts(
            parts,
            TeeBody {
                tee,
                recorder: self.clone(),
                ended: ended.clone(),
                storing: VecDeque::new(),
                held: None,
            }
            .boxed_unsync(),
        );

        let sent = match injection.as_ref().filter(|i| i.replaces_answer()) {
            Some(i) => {
                // The upstream never sees it; the event still holds the whole request.
                drop(up_req);
                Box::pin(pending.drain_request()).await;
                match (i.answer(), i.dropped()) {
                    (Some(a), _) => Ok(fault::answer(&a)),
                    (None, err) => {
                        Box::pin(pending.finish_stored(err, false)).await;
                        return self.no_answer(i).await;
                    }
                }
            }
            None => {
                // Sent, and while the upstream works on its answer, the request is settled
                // and its key started (see `Pending::queue_key`), once all of it is read.
                let target = pending.url.clone();
                // At low load, the writer is woken now rather than when the answer ends.
                if self.spare_core() {
                    self.writer.expect();
                }
                let send = self.upstream.send(up_req, client_h2, &target, &ctx.conn);
                tokio::pin!(send);
                let sent = tokio::select! {
                    biased;
                    sent = &mut send => sent,
                    () = ended.notified() => {
                        pending = match pending.settled().await {
                            Some(p) => p,
                            None => return store_failed(),
                        };
                        pending.queue_key();
                        send.await
                    }
                };
                // The answer's body is read acknowledging what its upstream connection
                // received whenever it waits (see `tapedeck_proxy::Ack`).
                // (A pooled connection's answer has none: its default `Ack` does nothing.)
                sent.map(|r| {
                    let ack = r.extensions().get::<tapedeck_proxy::Ack>().cloned();
                    let ack = ack.unwrap_or_default();
                    r.map(|b| ack.watch(b).map_err(BoxError::from).boxed_unsync())
                })
            }
        };
        let cut = injection.as_ref().and_then(Injection::cut);
        let sent = sent.map(|r| match cut {
            Some(n) => r.map(|b| fault::CutAfter::new(b, n).boxed_unsync()),
            None => r,
        });
        match sent {
            Ok(resp) => {
                let upgrade = client_upgrade.map(|client| (client, ctx.slot.clone()));
                self.answer(pending, resp, upgrade, head_request).await
            }
            Err(err) => Box::pin(failed(pending, err, client_h2)).await,
        }
    }

    /// The exchange as it starts: its times, agent, the request's URL and headers
    /// redacted, and the capture of its body, teed off as the body goes upstream.
    fn begin(
        self: &Arc<Self>,
        clock: Arc<SessionClock>,
        step: u64,
        parts: &mut http::request::Parts,
        incoming: ProxyBody,
        ctx: &ClientCtx,
    ) -> (Pending, Arc<Mutex<RequestTee>>) {
        let start = Instant::now();
        let start_unix_ns = now_unix_ns();
        let guard = self.inflight.enter();
        // The agent's name is for tapedeck: it does not go upstream.
        let agent = parts
            .headers
            .remove(AGENT_HEADER)
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .or(ctx.agent.clone());
        // What earlier exchanges of the session revealed is hunted in this one too (and
        // what others reveal while it runs, once it is stored: `known`).
        let known = clock.remembered().added();
        let mut secrets = clock.remembered().secrets();
        let mut url = redact::url(&parts.uri.to_string(), &self.rules, &mut secrets);
        let req_headers =
            redact::headers(&parts.headers, NameKind::Header, &self.rules, &mut secrets);
        redact::scrub_url(&mut url, &self.rules, &mut secrets);
        let req_ct = header(&req_headers, "content-type").map(str::to_string);
        // A request with no body (a GET) needs no capture: it settles as the empty body
        // (see `Pending::settle_request`), what capturing nothing would have stored (with
        // a `Content-Encoding`, a capture stores it on the body's reference).
        let bodiless =
            incoming.is_end_stream() && header(&req_headers, "content-encoding").is_none();
        let capture = (!bodiless).then(|| {
            let c = Capture::of_request(
                self.store.clone(),
                &req_headers,
                start,
                self.max_body,
                BodyScrubber::with_fields(req_ct.as_deref(), self.fields.clone(), &secrets),
                &self.rules,
            );
            Box::new(c.about(format!("the request body to {url}")))
        });
        let tee = Arc::new(Mutex::new(RequestTee {
            inner: Some(incoming),
            capture,
            done: bodiless,
        }));
        let pending = Pending {
            recorder: self.clone(),
            clock,
            step,
            start,
            start_unix_ns,
            agent,
            method: parts.method.to_string(),
            url,
            version: version_str(parts.version).to_string(),
            req_headers,
            req_ct,
            secrets,
            known,
            req_stored: None,
            req_parts: None,
            tee: tee.clone(),
            head: None,
            resp_capture: None,
            ws: None,
            injected: None,
            key: None,
            _guard: guard,
        };
        (pending, tee)
    }

    /// The fault `--inject` (or the caller) puts into this exchange, if any: marked on
    /// the event, and its delay waited out.
    async fn inject(
        &self,
        given: Option<Injection>,
        pending: &mut Pending,
        uri: &http::Uri,
    ) -> Option<Injection> {
        let injection = given.or_else(|| {
            let f = self.faults.as_ref()?;
            let session = pending.clock.name().as_str();
            f.decide(
                session,
                pending.step,
                &pending.method,
                &uri.to_string(),
                &self.rules,
            )
        });
        if let Some(i) = &injection {
            tracing::info!(
                "#{} {} {}: injected {}",
                pending.step,
                pending.method,
                pending.url,
                i.rule
            );
            pending.injected = Some(i.mark());
            if let Some(d) = i.delay() {
                tokio::time::sleep(d).await;
            }
        }
        injection
    }

    /// The upstream's answer, passed on to the client while its body is recorded (or
    /// refused when it says it is larger than `--max-body`; a 101 hands the connection
    /// to the WebSocket relay, with the slot that counts it).
    async fn answer(
        &self,
        mut pending: Pending,
        mut resp: Response<ProxyBody>,
        upgrade: Option<(hyper::upgrade::OnUpgrade, Option<tapedeck_proxy::Slot>)>,
        head_request: bool,
    ) -> Response<ProxyBody> {
        let (step, start) = (pending.step, pending.start);
        // An answer that came late (a remote upstream, a model thinking) finds the writer
        // asleep again: at low load it is woken now, while this answer is read and
        // redacted, not when its event is handed over. One that came soon finds it still
        // awake from the request, and this does nothing.
        if self.spare_core() {
            self.writer.expect();
        }
        let upgraded = match upgrade {
            Some((client, slot)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                Some((client, hyper::upgrade::on(&mut resp), Instant::now(), slot))
            }
            _ => None,
        };
        let (mut rparts, rbody) = resp.into_parts();
        let ttfb_ns = start.elapsed().as_nanos() as u64;
        // A request that has ended is stored now, so the values of its secret fields are
        // scrubbed from the response as it streams.
        if pending.request_ended() {
            pending = match pending.settled().await {
                Some(p) => p,
                None => return store_failed(),
            };
            pending.queue_key();
        }
        let mut resp_headers = redact::headers(
            &rparts.headers,
            NameKind::AnswerHeader,
            &self.rules,
            &mut pending.secrets,
        );
        redact::scrub_headers(&mut resp_headers, &pending.secrets);
        if let Some(err) = self.refuse_by_length(&resp_headers) {
            tracing::warn!("#{step} {}", err.message);
            drop(rbody);
            let resp = error_response(&err);
            Box::pin(pending.finish_stored(Some(err), false)).await;
            return resp;
        }
        let streaming = is_streaming(&rparts.headers) && upgraded.is_none();
        let resp_ct = header(&resp_headers, "content-type");
        let mut capture = Capture::new(
            self.store.clone(),
            header(&resp_headers, "content-encoding"),
            keep_limit(resp_ct),
            streaming,
            start,
            self.max_body,
            BodyScrubber::for_answer(resp_ct, self.fields.clone(), &pending.secrets, &pending.url),
        )
        .about(format!(
            "the response body of step {step} from {}",
            pending.url
        ));
        capture.defer_writes();
        if !has_no_body(head_request, rparts.status, &rbody) {
            // A HEAD's answer or a 304 says the length of a body it does not send.
            capture.expect(header(&resp_headers, "content-length"));
        }
        pending.resp_capture = Some(Box::new(capture));
        pending.head = Some(Head {
            status: rparts.status.as_u16(),
            version: version_str(rparts.version).to_string(),
            headers: resp_headers,
            ttfb_ns,
            trailers: Vec::new(),
        });
        if let Some((client, upstream, at, slot)) = upgraded {
            // The 101 keeps its Upgrade and Connection headers: they are the switch.
            rparts.version = http::Version::HTTP_11;
            tokio::spawn(async move {
                ws::relay(pending, client, upstream, at).await;
                drop(slot);
            });
            return Response::from_parts(rparts, body::empty());
        }
        hop::strip(&mut rparts.headers);
        if !hop::may_carry_length(rparts.status) {
            rparts.headers.remove(http::header::CONTENT_LENGTH);
        }
        rparts.version = http::Version::HTTP_11;
        if has_no_body(head_request, rparts.status, &rbody) {
            // Nothing will be polled: hyper writes no body for these, so the event is
            // complete now (never a hang-up), its framing headers kept.
            Box::pin(pending.finish_stored(None, true)).await;
            return Response::from_parts(rparts, body::empty());
        }
        let small = !streaming
            && rbody
                .size_hint()
                .exact()
                .is_some_and(|n| n <= WHOLE_AT_HEAD);
        let mut body = ResponseTee::new(rbody, pending);
        if small {
            if let Some(data) = body.whole_if_here().await {
                // Recorded already: head and body leave in one write.
                return Response::from_parts(rparts, body::full(data));
            }
        }
        Response::from_parts(rparts, body.boxed_unsync())
    }

    /// What the client gets from an injected `reset` (the connection dropped) or
    /// `timeout` (nothing, until it gives up or tapedeck stops).
    async fn no_answer(&self, injection: &Injection) -> Response<ProxyBody> {
        if injection.times_out() {
            self.inflight.draining().await;
        }
        fault::abort()
    }

    /// A plain (not encoded) response whose `Content-Length` is over `--max-body` is
    /// refused before any of it is read.
    fn refuse_by_length(&self, headers: &[Header]) -> Option<ExchangeError> {
        if header(headers, "content-encoding")
            .and_then(tapedeck_model::exchange::encoding::Coding::parse)
            .is_some()
        {
            return None;
        }
        let len: u64 = header(headers, "content-length")?.trim().parse().ok()?;
        (len > self.max_body.0).then(|| ExchangeError {
            kind: ErrorKind::TooLarge,
            message: format!(
                "the response body ({len} bytes) is larger than --max-body {}: tapedeck did not read it (raise --max-body to record it)",
                self.max_body
            ),
        })
    }
}

/// The upstream could not be reached or failed midway: the client is told why (a
/// request over `--max-body` as such) and the event keeps the error.
async fn failed(
    mut pending: Pending,
    mut err: ExchangeError,
    client_h2: bool,
) -> Response<ProxyBody> {
    err.message = pending.secrets.scrub_str(&err.message).into_owned();
    pending.drain_request().await;
    let err = match pending.request_too_large() {
        Some(max) => too_large("request", max),
        None => err,
    };
    tracing::warn!("#{} upstream failed: {}", pending.step, err.message);
    let mut resp = error_response(&err);
    if err.kind == ErrorKind::TooLarge && !client_h2 {
        close_after(&mut resp, http::Version::HTTP_11);
    }
    pending.finish_stored(Some(err), false).await;
    resp
}

/// The answer when storing the request failed (the writer's job panicked; logged).
fn store_failed() -> Response<ProxyBody> {
    body::text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "tapedeck: storing the request failed; see the log",
    )
}

/// Whether a response has no body to stream: an answer to HEAD, a 204 or 304, or a body
/// the upstream declared empty (`Content-Length: 0`, or already ended).
fn has_no_body(head_request: bool, status: StatusCode, body: &ProxyBody) -> bool {
    head_request
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
        || body.is_end_stream()
        || body.size_hint().exact() == Some(0)
}

/// The event error of a body cut at `--max-body`.
fn too_large(side: &str, max: MaxBody) -> ExchangeError {
    ExchangeError {
        kind: ErrorKind::TooLarge,
        message: format!(
            "the {side} body is larger than --max-body {max} (decoded): tapedeck stopped it there and recorded its first {max} (raise --max-body to allow it)"
        ),
    }
}

impl Handler for Recorder {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        ctx: ClientCtx,
    ) -> BoxFuture<Response<ProxyBody>> {
        // A wait for more of the body acknowledges what came of it (see `Ack`).
        let req = req.map(|b| ctx.ack.watch(b).map_err(BoxError::from).boxed_unsync());
        Box::pin(self.record(req, ctx, Given::default()))
    }

    fn raw_tunnel(&self, host: &str, _port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.passthrough.iter().any(|p| p.matches(&host))
    }
}

struct RequestTee {
    inner: Option<ProxyBody>,
    capture: Option<Box<Capture>>,
    done: bool,
}

impl RequestTee {
    /// Whether the request body says it has ended: hyper polls no further once a body of
    /// known length has, so this (not `Ready(None)`) is how its end is noticed.
    fn inner_ended(&self) -> bool {
        self.inner.as_ref().is_some_and(|b| b.is_end_stream())
    }
}

/// The request body on its way upstream; the state is shared so that, if the upstream
/// fails before reading it, the recorder can still read the rest for the event.
///
/// The segments of a large body are hashed and stored on the writer thread while the body
/// goes on, up to [`SEGMENT_WRITES`] writes in flight; a frame that finishes segments
/// while that many are in flight waits for the oldest (backpressure on the client, no
/// write on the runtime's threads).
struct TeeBody {
    tee: Arc<Mutex<RequestTee>>,
    recorder: Arc<Recorder>,
    /// Told when the request body has ended (all of it read and passed on).
    ended: Arc<tokio::sync::Notify>,
    /// Segment writes in flight, oldest first (the writer runs them in this order).
    storing: VecDeque<SegmentsWritten>,
    /// A frame waiting for room in `storing`, and the segments it finished.
    held: Option<(Frame<Bytes>, Ready)>,
}

/// How storing a body's finished segments went (an error is the store's, as text).
type SegmentsWritten = oneshot::Receiver<Result<(), String>>;

/// Takes the segment writes that are done off the front of `storing` and returns their
/// errors. Writes finish in the order they were queued, so only the oldest is polled
/// (which also registers `cx` to hear when it is done).
fn finished_writes(storing: &mut VecDeque<SegmentsWritten>, cx: &mut Context<'_>) -> Vec<String> {
    let mut errors = Vec::new();
    while let Some(rx) = storing.front_mut() {
        let Poll::Ready(written) = std::future::Future::poll(Pin::new(rx), cx) else {
            break;
        };
        storing.pop_front();
        if let Err(e) = written.unwrap_or_else(|_| Err("a store write stopped".into())) {
            errors.push(e);
        }
    }
    errors
}

impl Recorder {
    /// Stores finished segments on the writer thread; the receiver says how it went.
    fn put_segments(&self, ready: Ready) -> SegmentsWritten {
        let store = self.store.clone();
        self.writer.run(move || {
            ready
                .store(store.as_ref())
                .map_err(tapedeck_store::unstored_error)
        })
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        for e in finished_writes(&mut this.storing, cx) {
            let mut t = this.tee.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = t.capture.as_mut() {
                c.note_failure(e);
            }
        }
        if this.held.is_some() {
            if this.storing.len() >= SEGMENT_WRITES {
                return Poll::Pending;
            }
            let (frame, ready) = this.held.take().expect("just seen");
            this.storing.push_back(this.recorder.put_segments(ready));
            if this
                .tee
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .inner_ended()
            {
                this.ended.notify_one();
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        let mut t = this.tee.lock().unwrap_or_else(|p| p.into_inner());
        let Some(inner) = t.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                // The request's end, told once its segments are queued.
                let last = t.inner_ended();
                if let (Some(data), Some(c)) = (frame.data_ref(), t.capture.as_mut()) {
                    if let Err(max) = c.feed(data) {
                        // The upstream sees the request end in an error, not a short body;
                        // the capture stays for the event (done: nothing left to drain).
                        t.inner = None;
                        t.done = true;
                        return Poll::Ready(Some(Err(format!(
                            "the request body is larger than --max-body {max}"
                        )
                        .into())));
                    }
                    let ready = c.take_ready();
                    if !ready.is_empty() {
                        drop(t);
                        if this.storing.len() >= SEGMENT_WRITES {
                            this.held = Some((frame, ready));
                            // Polled again at once, to wait for the oldest write.
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        this.storing.push_back(this.recorder.put_segments(ready));
                    }
                }
                if last {
                    this.ended.notify_one();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                t.done = true;
                this.ended.notify_one();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let t = self.tee.lock().unwrap_or_else(|p| p.into_inner());
        self.held.is_none() && (t.done || t.inner.as_ref().is_none_or(|b| b.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        let t = self.tee.lock().unwrap_or_else(|p| p.into_inner());
        t.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

struct Head {
    status: u16,
    version: String,
    headers: Vec<Header>,
    ttfb_ns: u64,
    /// What came after the body, redacted.
    trailers: Vec<Header>,
}

/// Everything known about an exchange until its event is written.
struct Pending {
    recorder: Arc<Recorder>,
    clock: Arc<SessionClock>,
    step: u64,
    start: Instant,
    start_unix_ns: u64,
    agent: Option<String>,
    method: String,
    url: String,
    version: String,
    req_headers: Vec<Header>,
    req_ct: Option<String>,
    /// Every secret value seen in the exchange so far.
    secrets: Secrets,
    /// How many values the session remembered when the exchange began (see
    /// [`Pending::scrub_late`]).
    known: u64,
    /// The request body once settled, with its bytes when kept whole.
    req_stored: Option<(BodyRef, Option<Kept>, Option<MaxBody>)>,
    /// A multipart request body stored in segments: its parts (its key's body).
    req_parts: Option<Vec<CanonicalPart>>,
    tee: Arc<Mutex<RequestTee>>,
    head: Option<Head>,
    /// Boxed, as the request's is: an exchange's futures hold and move a `Pending`.
    resp_capture: Option<Box<Capture>>,
    /// The messages of a WebSocket exchange, once it has ended.
    ws: Option<tapedeck_model::exchange::ws::WsRecord>,
    /// The `--inject` rule that changed the exchange.
    injected: Option<Injected>,
    /// The request's kind and key, computed on the writer thread once the request is
    /// settled (see [`Pending::queue_key`]).
    key: Option<Arc<OnceLock<(Kind, String)>>>,
    _guard: InFlightGuard,
}

const DRAIN_LIMIT: Duration = Duration::from_secs(5);

impl Pending {
    /// Reads what the upstream never read of the request body, so the event has it.
    async fn drain_request(&mut self) {
        let (inner, capture) = {
            let mut t = self.tee.lock().unwrap_or_else(|p| p.into_inner());
            if t.done {
                return;
            }
            (t.inner.take(), t.capture.take())
        };
        let (Some(mut inner), Some(mut capture)) = (inner, capture) else {
            return;
        };
        let drained = tokio::time::timeout(DRAIN_LIMIT, async {
            while let Some(frame) = inner.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            if capture.feed(d).is_err() {
                                return false;
                            }
                        }
                        let ready = capture.take_ready();
                        if !ready.is_empty() {
                            let written = self.recorder.put_segments(ready).await;
                            if let Ok(Err(e)) = written {
                                capture.note_failure(e);
                                return false;
                            }
                        }
                        if capture.len() > WHOLE_JSON_LIMIT as u64 {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
            }
            true
        })
        .await
        .unwrap_or(false);
        let mut t = self.tee.lock().unwrap_or_else(|p| p.into_inner());
        t.capture = Some(capture);
        t.done = drained;
    }

    /// Whether the client has sent the whole request body.
    fn request_ended(&self) -> bool {
        let t = self.tee.lock().unwrap_or_else(|p| p.into_inner());
        t.done || t.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    /// Stores the request body (once), adding the values of its redacted fields to the
    /// secrets, then scrubs the request headers with what the request alone revealed:
    /// replay redacts a live request in this same order, so the keys agree.
    fn settle_request(&mut self) {
        if self.req_stored.is_some() {
            return;
        }
        let captured = {
            let mut t = self.tee.lock().unwrap_or_else(|p| p.into_inner());
            t.capture.take()
        };
        let ct = self.req_ct.clone();
        self.req_stored = Some(match captured {
            Some(c) => {
                let mut c = c.finish();
                self.req_parts = c.parts.take();
                let over = c.too_large;
                let (r, bytes, _) = self.store_body(c, ct.as_deref(), false);
                (r, bytes, over)
            }
            None => (BodyRef::empty(), Some(Kept::empty()), None),
        });
        redact::scrub_headers(&mut self.req_headers, &self.secrets);
        redact::scrub_url(&mut self.url, &self.recorder.rules, &mut self.secrets);
        // Replay learns from a live request once it has read it: the same point.
        self.clock.remembered().learn_request(&self.secrets);
    }

    /// Starts the request's key on the writer thread, once the request is settled, so
    /// that the event's write, which the response's last byte waits for, finds it done
    /// (the writer runs jobs in order). Canonicalising a large JSON request is the
    /// costliest part of an event: 1.13 ms for a 197 KB chat request of 400 messages.
    /// The key is the one the event would compute: nothing it reads changes once the
    /// request is settled. A small request's key (a body kept whole under
    /// [`EARLY_KEY_MIN`]) is left to the event's write: it costs the writer a few
    /// microseconds there, less than a job of its own costs the runtime's thread.
    fn queue_key(&mut self) {
        if self.key.is_some() {
            return;
        }
        let Some((body_ref, kept, _)) = &self.req_stored else {
            return;
        };
        if kept.as_ref().is_some_and(|k| k.data.len() < EARLY_KEY_MIN) {
            return;
        }
        let body = match kept {
            Some(k) => Ok(k.data.clone()),
            None => Err((body_ref.b3.clone(), self.req_parts.clone())),
        };
        let slot = Arc::new(OnceLock::new());
        self.key = Some(slot.clone());
        let (method, url, headers) = (
            self.method.clone(),
            self.url.clone(),
            self.req_headers.clone(),
        );
        let rules = self.recorder.rules.clone();
        drop(self.recorder.writer.run(move || {
            let key = |body| identify(&method, &url, &headers, body, &rules);
            let _ = slot.set(match body {
                Ok(data) => key(KeyBody::Whole(&data)),
                Err((_, Some(parts))) => key(KeyBody::Parts(parts)),
                Err((b3, None)) => key(KeyBody::Large(&b3)),
            });
        }));
    }

    /// The cap, when the request body went over it.
    fn request_too_large(&self) -> Option<MaxBody> {
        if let Some((_, _, over)) = &self.req_stored {
            return *over;
        }
        let t = self.tee.lock().unwrap_or_else(|p| p.into_inner());
        t.capture.as_deref().and_then(Capture::too_large)
    }

    /// A finished body's reference and, when small (kept whole, not stored yet: see
    /// `write_event`, which stores it with the event), its bytes.
    /// `answer`: the body is the response's.
    fn store_body(
        &mut self,
        c: Captured,
        content_type: Option<&str>,
        answer: bool,
    ) -> (BodyRef, Option<Kept>, Option<String>) {
        self.secrets.extend_found(c.found);
        match c.body {
            WrittenBody::Whole(data) => {
                let data = redact::finish_whole(
                    data,
                    content_type,
                    &self.recorder.rules,
                    &mut self.secrets,
                    answer.then_some(self.url.as_str()),
                );
                let hash = blake3::hash(&data);
                (
                    BodyRef {
                        b3: hash.to_hex().to_string(),
                        len: data.len() as u64,
                        encoding: c.encoding,
                        at: None,
                    },
                    Some(Kept {
                        hash,
                        data: Bytes::from(data),
                    }),
                    c.failed,
                )
            }
            WrittenBody::Stored { hash, len } => (
                BodyRef {
                    b3: hash.to_hex().to_string(),
                    len,
                    encoding: c.encoding,
                    at: None,
                },
                None,
                c.failed,
            ),
        }
    }

    /// Ends the exchange: its event is written on the writer thread, and this returns once
    /// it is in the store.
    async fn finish_stored(self, error: Option<ExchangeError>, complete: bool) {
        let writer = self.recorder.clone();
        let _ = writer
            .writer
            .run(move || self.write_event(error, complete))
            .await;
    }

    /// Ends the exchange where nothing can wait for it (a frame's error, a drop): its
    /// event is written on the writer thread soon after.
    fn finish(self, error: Option<ExchangeError>, complete: bool) {
        let writer = self.recorder.clone();
        drop(writer.writer.run(move || self.write_event(error, complete)));
    }

    /// Settles the request; a large one, whose last segment and manifest are still to be
    /// written, on the writer thread. `None` if that write panicked (the exchange is lost).
    async fn settled(mut self) -> Option<Pending> {
        let large = {
            let mut t = self.tee.lock().unwrap_or_else(|p| p.into_inner());
            t.capture
                .as_mut()
                .is_some_and(|c| c.len() > keep_limit(self.req_ct.as_deref()) as u64)
        };
        if !large {
            self.settle_request();
            return Some(self);
        }
        let recorder = self.recorder.clone();
        recorder
            .writer
            .run(move || {
                self.settle_request();
                self
            })
            .await
            .ok()
    }

    /// Writes the event (on the writer thread: see [`writer`]).
    fn write_event(mut self, error: Option<ExchangeError>, complete: bool) {
        let end = Instant::now();

        let rules = self.recorder.rules.clone();
        self.settle_request();
        let (mut req_body, mut req_bytes, req_too_large) = self
            .req_stored
            .take()
            .unwrap_or_else(|| (BodyRef::empty(), Some(Kept::empty()), None));
        let mut queued = self.key.take().and_then(|k| k.get().cloned());
        if self.scrub_late(&mut req_body, &mut req_bytes) {
            queued = None;
        }
        let parts = self.req_parts.take();
        let (kind, key) = queued.unwrap_or_else(|| {
            identify(
                &self.method,
                &self.url,
                &self.req_headers,
                match (&req_bytes, parts) {
                    (Some(b), _) => KeyBody::Whole(&b.data),
                    (None, Some(parts)) => KeyBody::Parts(parts),
                    (None, None) => KeyBody::Large(&req_body.b3),
                },
                &rules,
            )
        });
        // Bodies kept whole go into the store with the event (one write; see
        // `Store::put_event_with`).
        let mut whole: Vec<(blake3::Hash, Bytes)> = Vec::with_capacity(2);
        if let Some(b) = req_bytes {
            whole.push((b.hash, b.data));
        }

        let mut error = match (error, req_too_large) {
            (Some(e), _) => Some(e),
            (None, Some(max)) => Some(too_large("request", max)),
            (None, None) => None,
        };
        let response = self.response_record(complete, &mut whole, &mut error);
        if let Some(e) = error.as_mut() {
            e.message = self.secrets.scrub_str(&e.message).into_owned();
        }
        // Learned before the answer's last byte reaches the agent, which waits for this
        // write: its next request is read knowing them.
        self.clock.remembered().learn_answer(&self.secrets);
        let ttfb_ns = response.as_ref().map(|(_, t)| *t);
        let event = Event {
            step: self.step,
            kind,
            key,
            rules: Some(self.recorder.fingerprint.clone()),
            agent: self.agent.take(),
            request: RequestRecord {
                method: self.method.clone(),
                url: self.url.clone(),
                version: self.version.clone(),
                headers: std::mem::take(&mut self.req_headers),
                body: req_body,
            },
            response: response.map(|(r, _)| r),
            timing: Timing {
                start_ns: self.clock.ns(self.start),
                end_ns: self.clock.ns(end),
                ttfb_ns,
                start_unix_ns: self.start_unix_ns,
                end_unix_ns: self.start_unix_ns + end.duration_since(self.start).as_nanos() as u64,
            },
            error,
            ws: self.ws.take(),
            injected: self.injected.take(),
        };
        self.store_event(event, &whole);
    }

    /// Scrubs what the session learned while the exchange ran from what is stored of
    /// it: a concurrent call revealed a value (a token under its name) that this one
    /// carries under none, and it was read before that value was known. The request's
    /// URL, headers and body kept whole are scrubbed here (whether any changed: the
    /// request's key is then computed again); the answer's headers and body kept whole
    /// with the exchange's other secrets, which now hold these. A body stored in segments
    /// as it streamed keeps what it had.
    fn scrub_late(&mut self, body: &mut BodyRef, bytes: &mut Option<Kept>) -> bool {
        let Some(late) = self
            .clock
            .remembered()
            .learned_since(self.known, &mut self.secrets)
        else {
            return false;
        };
        let mut changed = false;
        if let std::borrow::Cow::Owned(url) = late.scrub_str(&self.url) {
            self.url = url;
            changed = true;
        }
        changed |= redact::scrub_headers(&mut self.req_headers, &late);
        if let Some(kept) = bytes.as_mut() {
            if let Some(data) = late.scrub(&kept.data) {
                kept.hash = blake3::hash(&data);
                body.b3 = kept.hash.to_hex().to_string();
                body.len = data.len() as u64;
                kept.data = Bytes::from(data);
                changed = true;
            }
        }
        changed
    }

    /// Puts the event into the store with the bodies kept whole, counts it, and hands
    /// it to the sink (viewer, live export).
    fn store_event(&self, event: Event, whole: &[(blake3::Hash, Bytes)]) {
        let session = self.clock.name().as_str();
        match self.recorder.store.put_event_with(session, &event, whole) {
            Ok(()) => {
                self.recorder
                    .stats
                    .exchanges
                    .fetch_add(1, Ordering::Relaxed);
                // What the summary counts "without a complete response" (an answer whose
                // coding broke came whole: its error is the coding's).
                if event.response.as_ref().is_none_or(|r| !r.complete) {
                    self.recorder.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
                if tapedeck_store::unstored(&event).is_some() {
                    self.recorder.stats.unstored.fetch_add(1, Ordering::Relaxed);
                }
                self.recorder.losses.stored(session, event.step);
                tracing::debug!(
                    "recorded {session}#{} {} {} {} -> {}",
                    event.step,
                    event.kind,
                    event.request.method,
                    event.request.url,
                    event
                        .status()
                        .map_or("error".to_string(), |s| s.to_string())
                );
                if let Some(sink) = &self.recorder.sink {
                    sink(session, event);
                }
            }
            Err(e) => self
                .recorder
                .losses
                .lost(self.recorder.store.as_ref(), session, &event, &e),
        }
    }

    /// The response as stored: its body stored (kept whole into `whole`), its headers
    /// and trailers scrubbed of the exchange's secrets; and its time to first byte.
    /// A body over the limit or that failed to store sets `error` unless one is set.
    fn response_record(
        &mut self,
        complete: bool,
        whole: &mut Vec<(blake3::Hash, Bytes)>,
        error: &mut Option<ExchangeError>,
    ) -> Option<(ResponseRecord, u64)> {
        let (Some(head), Some(cap)) = (self.head.take(), self.resp_capture.take()) else {
            return None;
        };
        let ct = header(&head.headers, "content-type").map(str::to_string);
        let mut captured = (*cap).finish();
        let mut chunks = captured.chunks.clone();
        let over = captured.too_large;
        let broke = captured.broke.take();
        let members = std::mem::take(&mut captured.members);
        let (body, kept, failed) = self.store_body(captured, ct.as_deref(), true);
        if let Some(k) = kept {
            whole.push((k.hash, k.data));
        }
        if let (Some(max), None) = (over, &*error) {
            *error = Some(too_large("response", max));
        }
        if let (Some(msg), None) = (failed, &*error) {
            *error = Some(ExchangeError {
                kind: ErrorKind::Other,
                message: msg,
            });
        }
        fit_chunks(&mut chunks, body.len);
        let mut headers = head.headers;
        redact::scrub_headers(&mut headers, &self.secrets);
        let mut trailers = head.trailers;
        redact::scrub_headers(&mut trailers, &self.secrets);
        let broke = broke.map(|b| {
            let tail = self.secrets.scrub(&b.tail).unwrap_or(b.tail);
            CodingBroke {
                trailer: b.trailer,
                ..CodingBroke::new(b.ended, &tail)
            }
        });
        let record = ResponseRecord {
            status: head.status,
            version: head.version,
            headers,
            body,
            chunks,
            complete,
            trailers,
            broke,
            members,
        };
        Some((record, head.ttfb_ns))
    }
}

/// Redaction of a body kept whole may change its length after the chunks were counted;
/// keep the chunk list summing to it: the last chunk takes what was added, and what was
/// removed comes off the end (so earlier chunks keep their recorded boundaries).
fn fit_chunks(chunks: &mut Option<Vec<tapedeck_model::exchange::Chunk>>, len: u64) {
    let Some(list) = chunks.as_mut() else { return };
    let sum: u64 = list.iter().map(|c| c.len).sum();
    if sum < len {
        match list.last_mut() {
            Some(last) => last.len += len - sum,
            None => list.push(tapedeck_model::exchange::Chunk { at_ms: 0.0, len }),
        }
        return;
    }
    let mut excess = sum - len;
    while excess > 0 {
        let Some(last) = list.last_mut() else { break };
        let cut = excess.min(last.len);
        last.len -= cut;
        excess -= cut;
        if last.len == 0 {
            list.pop();
        }
    }
}

/// A body kept whole, with its blake3, to store on the writer thread.
struct Kept {
    hash: blake3::Hash,
    /// Shared, not copied, with the request's key job (see [`Pending::queue_key`]).
    data: Bytes,
}

impl Kept {
    fn empty() -> Kept {
        Kept {
            hash: blake3::hash(b""),
            data: Bytes::new(),
        }
    }
}

/// The response body on its way to the client. The event is written before the last
/// frame is handed over, and a client that hangs up still leaves an event behind.
///
/// Store writes run on the recorder's writer thread, never on the runtime's threads. The
/// finished segments of a large body are hashed and stored on the writer while the body
/// goes on, up to [`SEGMENT_WRITES`] writes in flight: a frame that finishes segments
/// while that many are still being written waits for the oldest (so a slow disk slows
/// this download, backpressure, and not the other connections on the thread, and a
/// bounded number of segments is in memory). The last frame is handed over once every
/// segment, the body and the event are stored.
struct ResponseTee {
    inner: ProxyBody,
    /// A frame read from `inner` before the client asked (see
    /// [`ResponseTee::whole_if_here`]), handed on first.
    early: Option<FrameResult>,
    /// What the tee made of it, when that is not the whole body: handed on next.
    done: Option<FrameResult>,
    pending: Option<Pending>,
    /// Segments being stored while the body goes on, oldest first (the writer runs
    /// them in this order).
    storing: VecDeque<SegmentsWritten>,
    /// A frame that waits for room in `storing` (for all of it, at the end) before its
    /// own write starts: the frame, whether it ends the body, and the segments it
    /// finished.
    queued: Option<(FrameResult, bool, Ready)>,
    /// The last write in flight on the writer (the rest of the body and the event), and
    /// what to give the client once it is done.
    writing: Option<(oneshot::Receiver<()>, FrameResult)>,
}

type FrameResult = Option<Result<Frame<Bytes>, BoxError>>;
/// A response body up to this long, with its length known, may be recorded before its
/// head is handed over when it is all here already ([`ResponseTee::whole_if_here`]).
const WHOLE_AT_HEAD: u64 = 64 << 10;

/// The smallest request body whose key is computed while the upstream works
/// ([`Pending::queue_key`]); a smaller one's key (at most about 25 µs of the writer's
/// time for 4 KiB of JSON) is computed with its event.
const EARLY_KEY_MIN: usize = 4 << 10;
/// Segment writes of one response body in flight at once: hashing a 256 KiB segment
/// twice and writing it takes longer than forwarding it, so with one write in flight the
/// download waited on the writer at every segment.
const SEGMENT_WRITES: usize = 4;
/// Finished segments of a body, to be stored.
type Ready = tapedeck_store::ReadySegments;

impl ResponseTee {
    fn new(inner: ProxyBody, pending: Pending) -> ResponseTee {
        ResponseTee {
            inner,
            early: None,
            done: None,
            pending: Some(pending),
            storing: VecDeque::new(),
            queued: None,
            writing: None,
        }
    }

    fn finish(&mut self, error: Option<ExchangeError>, complete: bool) {
        if let Some(p) = self.pending.take() {
            p.finish(error, complete);
        }
    }

    /// The exchange's response capture, while the exchange is here.
    fn capture(&mut self) -> Option<&mut Capture> {
        self.pending
            .as_mut()
            .and_then(|p| p.resp_capture.as_deref_mut())
    }

    /// Hands `out` on, storing the segments `ready` on the side; at the `end`, once the
    /// body and the event are stored. Waits first for a write still in flight.
    fn write_then(
        &mut self,
        out: FrameResult,
        end: bool,
        ready: Ready,
        cx: &mut Context<'_>,
    ) -> Poll<FrameResult> {
        if ready.is_empty() && !end {
            return Poll::Ready(out);
        }
        // The end waits for every segment write (their failures go into the event); a
        // segment write, for room.
        if (end && !self.storing.is_empty()) || self.storing.len() >= SEGMENT_WRITES {
            self.queued = Some((out, end, ready));
            return self.poll_frame_inner(cx);
        }
        let Some(mut p) = self.pending.take() else {
            return Poll::Ready(out);
        };
        let recorder = p.recorder.clone();
        if !end {
            self.storing.push_back(recorder.put_segments(ready));
            self.pending = Some(p);
            return Poll::Ready(out);
        }
        let task = recorder.writer.run(move || {
            let store = p.recorder.store.clone();
            if let Err(e) = ready.store(store.as_ref()) {
                if let Some(c) = p.resp_capture.as_mut() {
                    c.note_failure(tapedeck_store::unstored_error(e));
                }
            }
            p.write_event(None, true);
        });
        // The event's write is the client's last wait: at low load, wait for it awake,
        // and keep the writer awake a while for the next exchange.
        if recorder.spare_core() {
            recorder.writer.linger();
            writer::wait_briefly(&task);
        }
        self.writing = Some((task, out));
        self.poll_writing(cx)
    }

    fn poll_writing(&mut self, cx: &mut Context<'_>) -> Poll<FrameResult> {
        let Some((task, _)) = self.writing.as_mut() else {
            return Poll::Ready(None);
        };
        let back = match std::future::Future::poll(Pin::new(task), cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(back) => back,
        };
        let out = self.writing.take().and_then(|(_, out)| out);
        if let Err(e) = back {
            tracing::error!("a store write stopped: {e}; the exchange is not recorded");
        }
        Poll::Ready(out)
    }

    fn poll_frame_inner(&mut self, cx: &mut Context<'_>) -> Poll<FrameResult> {
        if let Some(done) = self.done.take() {
            return Poll::Ready(done);
        }
        if self.writing.is_some() {
            return self.poll_writing(cx);
        }
        for e in finished_writes(&mut self.storing, cx) {
            if let Some(c) = self.capture() {
                c.note_failure(e);
            }
        }
        if let Some((_, end, _)) = &self.queued {
            let room = match end {
                true => self.storing.is_empty(),
                false => self.storing.len() < SEGMENT_WRITES,
            };
            // Only a frame that must wait waits; without one the body goes on meanwhile.
            if !room {
                return Poll::Pending;
            }
            let (out, end, ready) = self.queued.take().expect("just seen");
            return self.write_then(out, end, ready, cx);
        }
        self.next_frame(cx)
    }

    /// A small body that is already here whole (it came with the head), recorded: the
    /// event is stored by the time this returns, so the response can go out head and
    /// body together, in one write to the client, where handing over the head first
    /// made two (at one connection, the recorder's hand-off to the writer came between
    /// them: two sends and two wake-ups of the client for one answer). `None` when the
    /// body is not all here: nothing is lost, the tee goes on as it would have.
    async fn whole_if_here(&mut self) -> Option<Bytes> {
        // A look, not a wait: a body still on the way must not hold up the head.
        let first = {
            let mut look = Context::from_waker(std::task::Waker::noop());
            match Pin::new(&mut self.inner).poll_frame(&mut look) {
                Poll::Pending => return None,
                Poll::Ready(first) => first,
            }
        };
        let whole = self.inner.is_end_stream()
            && first
                .as_ref()
                .is_some_and(|f| f.as_ref().is_ok_and(Frame::is_data));
        self.early = Some(first);
        if !whole {
            return None;
        }
        let out = std::future::poll_fn(|cx| self.poll_frame_inner(cx)).await;
        match out {
            Some(Ok(frame)) if self.is_end_stream() => match frame.into_data() {
                Ok(data) => Some(data),
                Err(frame) => {
                    self.done = Some(Some(Ok(frame)));
                    None
                }
            },
            // Not as expected (cut, over --max-body): hand on what came, as the tee does.
            other => {
                self.done = Some(other);
                None
            }
        }
    }

    /// The next frame from upstream, captured, and handed on as [`ResponseTee::write_then`]
    /// says.
    fn next_frame(&mut self, cx: &mut Context<'_>) -> Poll<FrameResult> {
        let polled = match self.early.take() {
            Some(early) => Poll::Ready(early),
            None => Pin::new(&mut self.inner).poll_frame(cx),
        };
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(p)) = (frame.data_ref(), self.pending.as_mut()) {
                    if let Some(Err(max)) = p.resp_capture.as_mut().map(|c| c.feed(data)) {
                        let err = too_large("response", max);
                        tracing::warn!("{}#{}: {}", p.clock.name(), p.step, err.message);
                        self.finish(Some(err), false);
                        return Poll::Ready(Some(Err(format!(
                            "tapedeck: the response body is larger than --max-body {max}; cut here"
                        )
                        .into())));
                    }
                }
                // Trailers are the body's last frame: hyper polls no further after
                // handing them on, so the body ends here, not at a `None` never read.
                let end = self.inner.is_end_stream() || frame.is_trailers();
                if let (Some(fields), Some(p)) = (frame.trailers_ref(), self.pending.as_mut()) {
                    let fields = redact::headers(
                        fields,
                        NameKind::AnswerHeader,
                        &p.recorder.rules,
                        &mut p.secrets,
                    );
                    if let Some(head) = p.head.as_mut() {
                        head.trailers = fields;
                    }
                }
                let ready = self.take_ready();
                self.write_then(Some(Ok(frame)), end, ready, cx)
            }
            Poll::Ready(Some(Err(e))) => {
                let err = crate::upstream::classify("upstream body", &*e);
                let mut message = format!("response body cut: {}", err.message);
                if let Some(p) = self.pending.as_ref() {
                    message = p.secrets.scrub_str(&message).into_owned();
                }
                let err = ExchangeError {
                    kind: if err.kind == ErrorKind::Other {
                        ErrorKind::Reset
                    } else {
                        err.kind
                    },
                    message,
                };
                tracing::warn!("{}", err.message);
                self.finish(Some(err), false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                let ready = self.take_ready();
                self.write_then(None, true, ready, cx)
            }
        }
    }

    fn take_ready(&mut self) -> Ready {
        self.capture().map(Capture::take_ready).unwrap_or_default()
    }
}

impl Body for ResponseTee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.poll_frame_inner(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none()
            && self.writing.is_none()
            && self.queued.is_none()
            && self.early.is_none()
            && self.done.is_none()
            && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseTee {
    fn drop(&mut self) {
        // Segments a waiting frame finished are stored before the event that names them
        // (the writer runs its jobs in order).
        if let Some((_, _, ready)) = self.queued.take() {
            if let Some(p) = &self.pending {
                drop(p.recorder.put_segments(ready));
            }
        }
        if let Some(p) = &self.pending {
            tracing::warn!(
                "{}#{}: the client hung up before the response ended; recorded the part it got",
                p.clock.name(),
                p.step
            );
            self.finish(Some(client_closed()), false);
        }
    }
}

fn client_closed() -> ExchangeError {
    ExchangeError {
        kind: ErrorKind::ClientClosed,
        message: "the client hung up before the response ended".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapedeck_model::exchange::Chunk;

    fn lens(chunks: &Option<Vec<Chunk>>) -> Vec<u64> {
        chunks.iter().flatten().map(|c| c.len).collect()
    }

    #[test]
    fn chunks_are_fitted_to_the_stored_length_from_the_end() {
        let list = |l: &[u64]| {
            Some(
                l.iter()
                    .map(|&len| Chunk { at_ms: 1.0, len })
                    .collect::<Vec<_>>(),
            )
        };
        let mut c = list(&[10, 10, 3]);
        fit_chunks(&mut c, 18);
        assert_eq!(lens(&c), [10, 8]);
        let mut c = list(&[10, 10, 3]);
        fit_chunks(&mut c, 25);
        assert_eq!(lens(&c), [10, 10, 5]);
        let mut c = list(&[]);
        fit_chunks(&mut c, 4);
        assert_eq!(lens(&c), [4]);
        let mut c = list(&[2]);
        fit_chunks(&mut c, 0);
        assert!(lens(&c).is_empty());
    }
}
