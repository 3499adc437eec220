//! What-if replay: hold the world still (tools answer as they did in the incident) while
//! the part that was changed runs for real, and keep what the agent does now as a new
//! session, a *fork* of the recording.
//!
//! `--live llm|tool|other|HOSTGLOB` picks the calls that go to the real upstream
//! ([`LiveSelect`]); `--on-miss live` sends out whatever the recording lacks; `--inject`
//! changes chosen exchanges. Replay itself still builds no upstream client: going live is
//! a [`Forward`] it is handed (the binary gives it a recorder writing into the fork, so
//! a live call is forwarded and recorded exactly as `record` does it), and without one
//! nothing can leave. Every exchange of the run, served, live, injected or missed, is a
//! step of the fork ([`Fork`]), numbered from one [`SessionClock`] as requests arrive.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::inject::{Injected, Injection, Injector};
use tapedeck_model::exchange::inject::{Query, ToolNamer};
use tapedeck_model::exchange::kind::classify_named;
use tapedeck_model::exchange::limit::MaxBody;
use tapedeck_model::exchange::{
    now_unix_ns, BodyRef, Event, EventSink, ExchangeError, Header, Kind, RequestRecord,
    ResponseRecord, Timing,
};
use tapedeck_model::rules::Rules;
use tapedeck_model::session::{SessionClock, SessionName};
use tapedeck_proxy::body::{self, close_after, BoxError, ProxyBody};
use tapedeck_proxy::{fault, BoxFuture, ClientCtx};
use tapedeck_store::recording::Recording;
use tapedeck_store::{keep_limit, store_whole, Store, StoreError};

use super::index::Miss;
use super::meaning::Meaning;
use super::miss::{BodyView, Received};
use super::{route, Replayer, MISS_HEADER};

/// Sends one exchange to the real upstream and records it as step `step` of the fork
/// (with `injection`, when a rule changes it). Implemented outside replay, by whatever
/// holds an upstream client.
pub trait Forward: Send + Sync + 'static {
    fn forward(
        &self,
        req: Request<ProxyBody>,
        ctx: ClientCtx,
        step: u64,
        injection: Option<Injection>,
    ) -> BoxFuture<Response<ProxyBody>>;
}

/// The calls `--live` sends out: by kind, or by host (glob).
#[derive(Debug, Default, Clone)]
pub struct LiveSelect {
    kinds: Vec<Kind>,
    hosts: Vec<wildmatch::WildMatch>,
    texts: Vec<String>,
}

impl LiveSelect {
    /// `llm`, `tool`, `other`, or a host glob (`api.openai.com`, `*.internal`).
    pub fn parse(specs: &[String]) -> Result<LiveSelect, String> {
        let mut s = LiveSelect::default();
        for spec in specs {
            let t = spec.trim().to_ascii_lowercase();
            match t.as_str() {
                "llm" => s.kinds.push(Kind::Llm),
                "tool" => s.kinds.push(Kind::Tool),
                "other" => s.kinds.push(Kind::Other),
                "" => return Err("--live needs llm, tool, other or a host glob".into()),
                _ if t.contains('/') => {
                    return Err(format!(
                        "--live {spec:?}: give llm, tool, other or a host (glob), not a URL"
                    ))
                }
                _ => s.hosts.push(wildmatch::WildMatch::new(&t)),
            }
            s.texts.push(t);
        }
        Ok(s)
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// What was asked for, as given.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    fn host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.iter().any(|g| g.matches(&host))
    }

    /// Whether a request goes live, judged from its head: `None` when only its body can
    /// say (a POST to `/chat/completions` on an unknown host is `llm` only if it names a
    /// model).
    pub fn by_head(&self, method: &str, parts: &UrlParts, rules: &Rules) -> Option<bool> {
        if self.host(&parts.host) {
            return Some(true);
        }
        let without = classify_named(method, &parts.host, &parts.path, false, rules);
        let with = classify_named(method, &parts.host, &parts.path, true, rules);
        let (a, b) = (self.kinds.contains(&without), self.kinds.contains(&with));
        (a == b).then_some(a)
    }

    /// Whether a request of this kind to this host goes live.
    pub fn selects(&self, kind: Kind, host: &str) -> bool {
        self.kinds.contains(&kind) || self.host(host)
    }
}

/// How the exchanges of a what-if run were answered.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ForkCounts {
    /// Answered from the recording (including [`ForkCounts::by_meaning`]).
    pub served: usize,
    /// Of those, answered by a recorded call with the same tool and arguments at another
    /// place in the run (no recorded call with the same request was left).
    pub by_meaning: usize,
    /// Sent to the real upstream.
    pub live: usize,
    /// Answered by an `--inject` rule, or served with what one adds (a delay, a cut).
    pub injected: usize,
    /// Answered with a miss.
    pub missed: usize,
}

/// The session a what-if run records into: every exchange of the run, in arrival order.
pub struct Fork {
    clock: Arc<SessionClock>,
    store: Arc<dyn Store>,
    parent: String,
    sink: Option<EventSink>,
    counts: Mutex<ForkCounts>,
    /// Exchanges the store could not take (see [`tapedeck_store::lost`]).
    losses: tapedeck_store::lost::Losses,
}

/// What a what-if replay adds to a plain one.
pub struct Hybrid {
    pub fork: Arc<Fork>,
    pub live: LiveSelect,
    /// How calls go out; `None`: nothing may (a run that only injects).
    pub forward: Option<Arc<dyn Forward>>,
    /// `--on-miss live`: what the recording lacks goes out.
    pub on_miss_live: bool,
    pub injector: Option<Arc<Injector>>,
    /// Names a tool call the recording does not hold (from the fork's own LLM answers).
    pub tools: Option<ToolNamer>,
}

impl Hybrid {
    /// Whether anything may go out at all.
    pub fn can_go_live(&self) -> bool {
        self.forward.is_some() && (!self.live.is_empty() || self.on_miss_live)
    }
}

/// When an exchange of the fork happened, by this process's clock.
#[derive(Clone, Copy)]
pub struct Span {
    pub arrived: Instant,
    pub answered: Instant,
}

impl Fork {
    /// A fork named `name` of the session `parent`, written into `store`.
    pub fn new(
        store: Arc<dyn Store>,
        name: SessionName,
        parent: &str,
        sink: Option<EventSink>,
    ) -> Arc<Fork> {
        Arc::new(Fork {
            clock: Arc::new(SessionClock::new(name, 1, 0)),
            store,
            parent: parent.to_string(),
            sink,
            counts: Mutex::new(ForkCounts::default()),
            losses: tapedeck_store::lost::Losses::default(),
        })
    }

    /// The clock every writer of the fork takes its steps and times from.
    pub fn clock(&self) -> Arc<SessionClock> {
        self.clock.clone()
    }

    pub fn name(&self) -> &str {
        self.clock.name().as_str()
    }

    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// How many of the run's exchanges the fork could not store, the first with why, and
    /// how many runs of them went unmarked (see [`tapedeck_store::lost::Losses::totals`]).
    pub fn lost(&self) -> (u64, Option<String>, u64) {
        self.losses.totals()
    }

    pub fn counts(&self) -> ForkCounts {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut ForkCounts)) {
        f(&mut self.counts.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Takes the step of a request that just arrived.
    pub(crate) fn next_step(&self) -> u64 {
        self.clock.next_step()
    }

    fn timing(&self, span: Span, ttfb: Option<std::time::Duration>) -> Timing {
        let took = span.answered.saturating_duration_since(span.arrived);
        let now_unix = now_unix_ns();
        let since_answer = Instant::now()
            .saturating_duration_since(span.answered)
            .as_nanos() as u64;
        let end_unix_ns = now_unix.saturating_sub(since_answer);
        Timing {
            start_ns: self.clock.ns(span.arrived),
            end_ns: self.clock.ns(span.answered),
            ttfb_ns: Some(ttfb.unwrap_or(took).min(took).as_nanos() as u64),
            start_unix_ns: end_unix_ns.saturating_sub(took.as_nanos() as u64),
            end_unix_ns,
        }
    }

    /// Copies a recorded event into the fork as step `step`: the agent was served it
    /// (cut after `cut` bytes when an injected rule cut it).
    pub(crate) fn served(
        &self,
        rec: &Recording,
        step: u64,
        recorded: &Event,
        span: Span,
        injection: Option<&Injection>,
    ) {
        let mut ev = recorded.clone();
        ev.step = step;
        if let Err(e) = self.copy_bodies(rec, &ev) {
            tracing::debug!(
                "fork {}: cannot copy the bodies of {}'s step {}: {e}",
                self.name(),
                rec.session,
                recorded.step
            );
            self.losses.lost(self.store.as_ref(), self.name(), &ev, &e);
            return;
        }
        let ttfb = recorded.timing.ttfb_ns.map(std::time::Duration::from_nanos);
        ev.timing = self.timing(span, ttfb);
        ev.injected = injection.map(Injection::mark);
        if let (Some(n), Some(r)) = (injection.and_then(Injection::cut), ev.response.as_mut()) {
            if n < r.body.len {
                let cut = rec.body(&r.body).map(|b| b.slice(..n as usize));
                match cut.and_then(|b| store_whole(self.store.as_ref(), &b)) {
                    Ok(h) => {
                        r.body = BodyRef {
                            b3: h.to_hex().to_string(),
                            len: n,
                            encoding: r.body.encoding.clone(),
                            at: None,
                        };
                        r.chunks = None;
                        r.complete = false;
                        ev.error = Some(ExchangeError {
                            kind: tapedeck_model::exchange::ErrorKind::Reset,
                            message: format!(
                                "injected: the response was cut after {n} bytes (--inject {})",
                                injection.map(|i| i.rule.as_str()).unwrap_or_default()
                            ),
                        });
                    }
                    Err(e) => tracing::error!(
                        "fork {}: cannot store step {step}'s cut answer: {e}",
                        self.name()
                    ),
                }
            }
        }
        self.put(ev);
    }

    /// Writes an exchange no recorded event answered (injected or missed) as step
    /// `step`: the request as the agent sent it (its body stored when it was read whole),
    /// and what it got.
    pub(crate) fn answered(&self, step: u64, exchange: Answered) {
        let Answered {
            request,
            response,
            error,
            injected,
            span,
        } = exchange;
        let ForkRequest {
            kind,
            key,
            rules,
            agent,
            request,
            body,
        } = request;
        let store = self.store.as_ref();
        let stored = |data: &[u8], encoding: Option<String>| {
            store_whole(store, data).map(|h| BodyRef {
                b3: h.to_hex().to_string(),
                len: data.len() as u64,
                encoding,
                at: None,
            })
        };
        // A body the store cannot take leaves the step in the fork, marked as not stored
        // whole (so it reads as damage), never a step missing from it.
        let mut unstored = None;
        let mut kept = |what: &str, stored: Result<BodyRef, StoreError>| {
            stored.unwrap_or_else(|e| {
                tracing::error!(
                    "fork {}: cannot store step {step}'s {what}: {e}",
                    self.name()
                );
                unstored.get_or_insert(tapedeck_store::unstored_error(e));
                BodyRef::empty()
            })
        };
        let body = match body.as_deref() {
            Some(b) => kept("request", stored(b, request.body.encoding.clone())),
            None => BodyRef::empty(),
        };
        let response = response.map(|(status, headers, data)| ResponseRecord {
            status,
            version: "HTTP/1.1".into(),
            headers,
            body: kept("answer", stored(&data, None)),
            chunks: None,
            complete: true,
            trailers: Vec::new(),
            broke: None,
            members: Vec::new(),
        });
        let error = match unstored {
            Some(message) => Some(ExchangeError {
                kind: tapedeck_model::exchange::ErrorKind::Other,
                message,
            }),
            None => error,
        };
        self.put(Event {
            step,
            kind,
            key,
            rules: Some(rules),
            agent,
            request: RequestRecord { body, ..request },
            response,
            timing: self.timing(span, None),
            error,
            ws: None,
            injected,
        });
    }

    /// [`Fork::answered`] on the blocking pool (it stores bodies and the event), waited
    /// for: the agent has its answer only once the fork holds it.
    pub(crate) async fn answered_off_runtime(self: &Arc<Self>, step: u64, exchange: Answered) {
        let fork = self.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || fork.answered(step, exchange)).await {
            tracing::error!("fork {}: storing step {step} failed: {e}", self.name());
        }
    }

    fn put(&self, ev: Event) {
        let session = self.name();
        match self.store.put_event(session, &ev) {
            Ok(()) => {
                self.losses.stored(session, ev.step);
                tracing::debug!(
                    "fork {session}#{} {} {}",
                    ev.step,
                    ev.request.method,
                    ev.request.url
                );
                if let Some(sink) = &self.sink {
                    sink(session, ev);
                }
            }
            Err(e) => self.losses.lost(self.store.as_ref(), session, &ev, &e),
        }
    }

    /// Makes sure every body the event names is in the fork's store (a tape's are not).
    fn copy_bodies(&self, rec: &Recording, ev: &Event) -> Result<(), StoreError> {
        let mut refs: Vec<&BodyRef> = vec![&ev.request.body];
        refs.extend(ev.response.as_ref().map(|r| &r.body));
        if let Some(ws) = &ev.ws {
            refs.extend(ws.messages.iter().map(|m| &m.body));
        }
        for r in refs {
            if self.store.has_body(&r.b3)? {
                continue;
            }
            let data = rec.body(r)?;
            let h = store_whole(self.store.as_ref(), &data)?;
            if h.to_hex().as_str() != r.b3 {
                return Err(StoreError::MissingBody(r.b3.clone()));
            }
        }
        Ok(())
    }
}

/// A request as the fork stores it: its stored (redacted) form, kind and key.
pub(crate) struct ForkRequest {
    pub kind: Kind,
    pub key: String,
    /// The fingerprint of the rules `key` was computed under.
    pub rules: String,
    pub agent: Option<String>,
    /// Method, URL, version and headers (its body reference is set from `body`).
    pub request: RequestRecord,
    /// The stored form of the body, when it was read whole (a larger one is left out).
    pub body: Option<Vec<u8>>,
}

/// An exchange the fork records that no recorded event answered.
pub(crate) struct Answered {
    pub request: ForkRequest,
    pub response: Option<(u16, Vec<Header>, bytes::Bytes)>,
    pub error: Option<ExchangeError>,
    pub injected: Option<Injected>,
    pub span: Span,
}

/// What a what-if decision knows of a request that was read.
pub(crate) struct Seen<'a> {
    pub step: u64,
    pub arrived: Instant,
    pub ctx: &'a ClientCtx,
    /// The head as the agent sent it (secrets and all), for forwarding.
    pub parts: &'a http::request::Parts,
    /// The body as it came, when kept for forwarding.
    pub raw: Option<Bytes>,
    pub agent: Option<String>,
    pub key: &'a str,
    /// The headers as stored (redacted).
    pub headers: &'a [Header],
    pub got: &'a Received<'a>,
    pub too_large: Option<MaxBody>,
    /// The client's side of a WebSocket upgrade: a call that goes live hands it on to the
    /// recorder, which joins it to the upstream's once both have switched protocols.
    pub upgrade: Option<&'a hyper::upgrade::OnUpgrade>,
}

impl Seen<'_> {
    /// The request as the fork stores it.
    fn stored(&self, rules: &Rules) -> ForkRequest {
        ForkRequest {
            kind: self.got.kind,
            key: self.key.to_string(),
            rules: rules.match_fingerprint(),
            agent: self.agent.clone(),
            request: RequestRecord {
                method: self.got.method.to_string(),
                url: self.got.url.to_string(),
                version: tapedeck_model::exchange::version_str(self.parts.version).to_string(),
                headers: self.headers.to_vec(),
                body: BodyRef::empty(),
            },
            body: match self.got.body {
                BodyView::Bytes(b) => Some(b.to_vec()),
                BodyView::Large { .. } => None,
            },
        }
    }

    fn span(&self) -> Span {
        Span {
            arrived: self.arrived,
            answered: Instant::now(),
        }
    }
}

/// What a what-if run does with a request that was read.
pub(crate) enum WhatIf {
    /// Serve this recorded event (with what the rule that picked it adds: a delay, a cut).
    Serve(usize, Option<Injection>),
    /// Answered already: live, injected or missed.
    Answered(Response<ProxyBody>),
}

impl Replayer {
    /// How much of a request body a what-if run keeps as it came, to forward it if it
    /// must go out after all.
    pub(crate) fn raw_limit(&self, content_type: Option<&str>) -> usize {
        match &self.hybrid {
            Some(h) if h.can_go_live() => keep_limit(content_type),
            _ => 0,
        }
    }

    /// The way out for a call that `--live` sends out by its head alone, unread (`None`
    /// when its head does not decide, or nothing may go out).
    pub(crate) fn live_by_head(&self, head: &Request<Incoming>) -> Option<Arc<dyn Forward>> {
        let h = self.hybrid.as_ref()?;
        let forward = h.forward.as_ref()?;
        let parts = UrlParts::parse(&head.uri().to_string());
        (h.live.by_head(head.method().as_str(), &parts, &self.rules) == Some(true))
            .then(|| forward.clone())
    }

    /// Forwards a call [`Replayer::live_by_head`] sends out, as it streams.
    pub(crate) fn forward_unread(
        &self,
        forward: &dyn Forward,
        req: Request<Incoming>,
        ctx: &ClientCtx,
        step: u64,
    ) -> BoxFuture<Response<ProxyBody>> {
        let method = req.method().to_string();
        let url = req.uri().to_string();
        let parts = UrlParts::parse(&url);
        let kind = classify_named(
            &method,
            &parts.host,
            &parts.path,
            method == "POST",
            &self.rules,
        );
        let injection = self.hybrid.as_ref().and_then(|h| {
            h.fork.count(|c| c.live += 1);
            self.decide(h, step, kind, &parts.host, || {
                self.name_unmatched(h, &method, &url, None)
            })
        });
        tracing::debug!("step {step}: {method} {} goes live", parts.host);
        let req = req.map(|b| ctx.ack.watch(b).map_err(BoxError::from).boxed_unsync());
        forward.forward(req, ctx.clone(), step, injection)
    }

    /// Whether an `--inject` rule changes the exchange `step`.
    fn decide(
        &self,
        h: &Hybrid,
        step: u64,
        kind: Kind,
        host: &str,
        tool: impl FnMut() -> Option<String>,
    ) -> Option<Injection> {
        let q = Query {
            session: h.fork.name(),
            step,
            kind,
            host,
        };
        let i = h.injector.as_ref()?.decide(&q, tool)?;
        tracing::info!("step {step}: injected {}", i.rule);
        Some(i)
    }

    /// What a what-if run does with a request it has read: send it live, inject, serve
    /// it from the recording (by key, else by meaning), or answer a miss; each is a step
    /// of the fork.
    pub(crate) async fn what_if(self: Arc<Self>, h: &Hybrid, seen: Seen<'_>) -> WhatIf {
        let got = seen.got;
        let host = UrlParts::parse(got.url).host;
        let body = match got.body {
            BodyView::Bytes(b) => Some(b),
            BodyView::Large { .. } => None,
        };
        if h.forward.is_some() && h.live.selects(got.kind, &host) {
            let injection = self.decide(h, seen.step, got.kind, &host, || {
                self.name_unmatched(h, got.method, got.url, body)
            });
            h.fork.count(|c| c.live += 1);
            return WhatIf::Answered(self.forward_read(h, seen, injection).await);
        }
        // A rule that picks by tool names a recorded call from the trace.
        self.warm(h.injector.as_ref().is_some_and(|i| i.names_tools()), false)
            .await;
        let taken = self.index.lock().unwrap_or_else(|p| p.into_inner()).take(
            got.kind,
            || route(got.method, got.url),
            seen.key,
        );
        let miss = match taken {
            Ok(i) => {
                let injection = self.decide(h, seen.step, got.kind, &host, || self.tool_name(i));
                return match injection {
                    Some(inj) if inj.replaces_answer() => {
                        WhatIf::Answered(self.injected(h, &seen, &inj).await)
                    }
                    injection => WhatIf::Serve(i, injection),
                };
            }
            Err(m) => m,
        };
        let injection = self.decide(h, seen.step, got.kind, &host, || {
            self.name_unmatched(h, got.method, got.url, body)
        });
        if let Some(inj) = injection.as_ref().filter(|i| i.replaces_answer()) {
            return WhatIf::Answered(self.injected(h, &seen, inj).await);
        }
        // What the recording has, by meaning, is served before anything goes out.
        if got.kind != Kind::Llm && seen.too_large.is_none() {
            self.warm(false, true).await;
            if let Some(i) = self.by_meaning(got) {
                h.fork.count(|c| c.by_meaning += 1);
                tracing::info!(
                    "step {}: {} {} answered by recorded step {}: the same tool and arguments",
                    seen.step,
                    got.method,
                    got.url,
                    self.rec.step(i).unwrap_or_default()
                );
                return WhatIf::Serve(i, injection);
            }
        }
        if h.on_miss_live && h.forward.is_some() && seen.too_large.is_none() {
            h.fork.count(|c| c.live += 1);
            return WhatIf::Answered(self.forward_read(h, seen, injection).await);
        }
        WhatIf::Answered(self.missed(h, &seen, &miss).await)
    }

    /// Sends a request that was read out live, with the body as it came.
    async fn forward_read(
        &self,
        h: &Hybrid,
        seen: Seen<'_>,
        injection: Option<Injection>,
    ) -> Response<ProxyBody> {
        let Some(forward) = &h.forward else {
            return body::text(StatusCode::BAD_GATEWAY, "tapedeck: nothing may go live");
        };
        let Some(raw) = seen.raw else {
            let line = format!(
                "step {}: {} {} should go live, but its body is larger than a what-if run keeps to forward ({} bytes)",
                seen.step,
                seen.got.method,
                seen.got.url,
                keep_limit(tapedeck_model::exchange::header(seen.headers, "content-type"))
            );
            self.note_miss("too_large", line.clone());
            return body::json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({"error": {"type": "tapedeck_miss", "code": "too_large", "message": line}}),
            );
        };
        let p = seen.parts;
        let mut req = Request::new(body::full(raw));
        *req.method_mut() = p.method.clone();
        *req.uri_mut() = p.uri.clone();
        *req.version_mut() = p.version;
        *req.headers_mut() = p.headers.clone();
        if let Some(upgrade) = seen.upgrade {
            req.extensions_mut().insert(upgrade.clone());
        }
        let mut ctx = seen.ctx.clone();
        ctx.agent = seen.agent.clone();
        forward.forward(req, ctx, seen.step, injection).await
    }

    /// Answers with what an injected rule gives instead of the recording (a status, a
    /// body, a reset, a timeout), recorded in the fork as injected.
    async fn injected(&self, h: &Hybrid, seen: &Seen<'_>, inj: &Injection) -> Response<ProxyBody> {
        h.fork.count(|c| c.injected += 1);
        if let Some(d) = inj.delay() {
            tokio::time::sleep(d).await;
        }
        let answer = inj.answer();
        let response = answer.as_ref().map(|a| {
            (
                a.status,
                vec![("content-type".to_string(), a.content_type.to_string())],
                a.body.clone(),
            )
        });
        h.fork
            .answered_off_runtime(
                seen.step,
                Answered {
                    request: seen.stored(&self.rules),
                    response,
                    error: inj.dropped(),
                    injected: Some(inj.mark()),
                    span: seen.span(),
                },
            )
            .await;
        match answer {
            Some(a) => fault::answer(&a),
            None => {
                if inj.times_out() {
                    self.inflight.draining().await;
                }
                fault::abort()
            }
        }
    }

    /// Answers a miss, and records it in the fork as the answer the agent got.
    async fn missed(
        self: &Arc<Self>,
        h: &Hybrid,
        seen: &Seen<'_>,
        m: &Miss,
    ) -> Response<ProxyBody> {
        h.fork.count(|c| c.missed += 1);
        let resp = match seen.too_large {
            Some(max) => {
                let mut resp = self.refuse_too_large(seen.got.method, seen.got.url, max);
                close_after(&mut resp, seen.parts.version);
                resp
            }
            None => self.answer_miss_off_runtime(m.clone(), seen.got).await,
        };
        let mut headers: Vec<Header> = vec![("content-type".into(), "application/json".into())];
        if let Some(v) = resp
            .headers()
            .get(MISS_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            headers.push((MISS_HEADER.into(), v.to_string()));
        }
        let (parts, body) = resp.into_parts();
        // A miss body is tapedeck's own small JSON, whole in memory.
        let data = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        h.fork
            .answered_off_runtime(
                seen.step,
                Answered {
                    request: seen.stored(&self.rules),
                    response: Some((parts.status.as_u16(), headers, data.clone())),
                    error: None,
                    injected: None,
                    span: seen.span(),
                },
            )
            .await;
        Response::from_parts(parts, body::full(data))
    }

    /// Copies a served event into the fork, when this is a what-if run: on the blocking
    /// pool (the copy reads the recording's bodies and writes the fork's store), and
    /// waited for, so the agent has its answer only once the fork holds it and the tool
    /// tracker has seen it.
    pub(crate) async fn fork_served(
        self: &Arc<Self>,
        step: Option<u64>,
        ev: &Event,
        arrived: Instant,
        injection: Option<&Injection>,
    ) {
        let (Some(h), Some(step)) = (&self.hybrid, step) else {
            return;
        };
        // A recorded answer an --inject rule changed (delayed, cut) counts as injected.
        match injection {
            Some(_) => h.fork.count(|c| c.injected += 1),
            None => h.fork.count(|c| c.served += 1),
        }
        let span = Span {
            arrived,
            answered: Instant::now(),
        };
        let (this, fork) = (self.clone(), h.fork.clone());
        let (ev, injection) = (ev.clone(), injection.cloned());
        let copied = tokio::task::spawn_blocking(move || {
            fork.served(&this.rec, step, &ev, span, injection.as_ref())
        });
        if let Err(e) = copied.await {
            tracing::error!("fork {}: copying step {step} failed: {e}", h.fork.name());
        }
    }

    /// Builds what a what-if decision may read, once, on the blocking pool: the recorded
    /// calls' meanings and (when a rule picks by tool) the trace's tool names. Each reads
    /// every recorded event and body.
    async fn warm(self: &Arc<Self>, tools: bool, meanings: bool) {
        let tools = tools && self.tool_names.get().is_none();
        let meanings = meanings && self.meanings.get().is_none();
        if !tools && !meanings {
            return;
        }
        let this = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            if tools {
                this.tool_names();
            }
            if meanings {
                this.meanings();
            }
        });
        if let Err(e) = built.await {
            tracing::error!("reading the recording's calls failed: {e}");
        }
    }

    /// The trace's tool names of the recording (read once).
    pub(crate) fn tool_names(&self) -> &tapedeck_trace::tool_names::ToolNames {
        self.tool_names.get_or_init(|| {
            let parsed = tapedeck_trace::spans::parse_events(&self.rec);
            let trace = tapedeck_trace::spans::build_from(
                &self.rec.session,
                &parsed,
                &self.rules,
                &tapedeck_trace::spans::TraceOptions::default(),
            );
            tapedeck_trace::tool_names::ToolNames::of(&trace, &parsed, &self.rules)
        })
    }

    /// The tool recorded event `i` calls, as the trace names it.
    fn tool_name(&self, i: usize) -> Option<String> {
        self.tool_names().get(self.rec.step(i)?).map(str::to_string)
    }

    /// The tool a request the recording does not hold calls: as the fork's LLM answers
    /// asked for it, else an MCP tool's name, else by the rules and host.
    fn name_unmatched(
        &self,
        h: &Hybrid,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
    ) -> Option<String> {
        if let Some(name) = h.tools.as_ref().and_then(|t| t(h.fork.name(), method, url)) {
            return Some(name);
        }
        Some(Meaning::of(method, url, None, body, "", &self.rules).tool)
    }

    /// A recorded call with the same tool and arguments as `got` (see [`super::meaning`]).
    fn by_meaning(&self, got: &Received) -> Option<usize> {
        let m = got_meaning(got, &self.rules);
        let ix = self.meanings();
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let i = ix.find(&m, |i| index.is_served(i))?;
        index.serve(i);
        Some(i)
    }
}

/// The meaning of a request as it came.
pub(crate) fn got_meaning(got: &Received, rules: &Rules) -> Meaning {
    let (body, b3) = match got.body {
        BodyView::Bytes(b) => (Some(b), String::new()),
        BodyView::Large { b3, .. } => (None, b3.to_string()),
    };
    Meaning::of(got.method, got.url, None, body, &b3, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_selects_by_kind_and_host_and_says_when_the_head_cannot_tell() {
        let rules = Rules::default();
        let s = LiveSelect::parse(&["llm".into(), "*.weather.test".into()]).unwrap();
        let head = |m: &str, url: &str| s.by_head(m, &UrlParts::parse(url), &rules);
        assert_eq!(head("GET", "https://api.weather.test/v1/now"), Some(true));
        assert_eq!(head("GET", "https://search.test/q"), Some(false));
        // Inference only if the body names a model (even on a provider's host): the body
        // decides.
        assert_eq!(
            head("POST", "https://api.openai.com/v1/chat/completions"),
            None
        );
        assert_eq!(
            head("POST", "https://localhost:8443/v1/chat/completions"),
            None
        );
        assert!(s.selects(Kind::Llm, "localhost"));
        assert!(!s.selects(Kind::Tool, "localhost"));
        assert!(LiveSelect::parse(&["https://x.test/".into()]).is_err());
    }
}
