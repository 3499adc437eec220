//! Replay, WebSocket: tapedeck plays the server's side of a recorded WebSocket.
//!
//! The upgrade is matched like any request. Then the recorded server messages go out in
//! recorded order, each once the client messages that came before it in the recording
//! have arrived; every client message must equal the next recorded one (its stored
//! form, keyed as [`message_key`] says). One the recording lacks is a miss: it is
//! counted (the run exits 3) and the socket is closed with code 1008 and the miss text.
//! Pings are answered and keep-alive pings and pongs of the recording are not replayed
//! (they follow the clock, not the conversation). `--pace recorded` sends each server
//! message at its recorded offset from the upgrade, or from the client message it
//! followed when that one came late.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{wait_until, Replayer, STEP_HEADER};
use crate::Pace;
use tapedeck_model::exchange::redact::Secrets;
use tapedeck_model::exchange::ws::{message_key, stored_payload, MessageKey, WsOp, WsSide};
use tapedeck_model::exchange::Event;
use tapedeck_proxy::body::{self, ProxyBody};
use tapedeck_proxy::ws::{accept_key, close_payload, encode, Message, MessageReader};

/// How long to wait for the client's answer to a close tapedeck sent.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Close codes (RFC 6455 §7.4.1).
const POLICY_VIOLATION: u16 = 1008;
const GOING_AWAY: u16 = 1001;
const PROTOCOL_ERROR: u16 = 1002;

/// One recorded message replay sends or expects.
struct Step {
    from: WsSide,
    op: WsOp,
    at_ms: f64,
    /// The stored payload (a close's reason).
    payload: Vec<u8>,
    code: Option<u16>,
    /// For client data messages: what a live message must match.
    key: Option<MessageKey>,
}

/// The `101` for a recorded upgrade, and the session behind it, run on its own task.
pub(super) async fn respond(
    replayer: Arc<Replayer>,
    ev: &Event,
    upgrade: Option<OnUpgrade>,
    request: &http::HeaderMap,
    secrets: Secrets,
    arrived: Instant,
    slot: Option<tapedeck_proxy::Slot>,
) -> Response<ProxyBody> {
    let key = request
        .get(http::header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok());
    let (Some(upgrade), Some(key)) = (upgrade, key) else {
        return body::text(
            StatusCode::BAD_REQUEST,
            &format!(
                "tapedeck: step {} was recorded as a WebSocket upgrade; this request does not ask for one",
                ev.step
            ),
        );
    };
    // The messages' payloads are read on the blocking pool (sled, or a tape's files).
    let read = {
        let (replayer, ev) = (replayer.clone(), ev.clone());
        tokio::task::spawn_blocking(move || load_script(&replayer, &ev)).await
    };
    let script = match read
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            return body::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("tapedeck: step {}: {e}", ev.step),
            )
        }
    };
    if replayer.pace == Pace::Recorded {
        let ttfb = Duration::from_nanos(ev.timing.ttfb_ns.unwrap_or(0));
        tokio::time::sleep_until(wait_until(arrived, ttfb).into()).await;
    }
    let mut builder = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in ev.response.iter().flat_map(|r| &r.headers) {
        if !matches!(
            name.as_str(),
            "sec-websocket-accept" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            match tapedeck_model::exchange::header_value(value) {
                Ok(v) => builder = builder.header(name.as_str(), v),
                Err(e) => return crate::bad_header(ev, &format!("{name}: {e}")),
            }
        }
    }
    builder = builder
        .header(http::header::SEC_WEBSOCKET_ACCEPT, accept_key(key))
        .header(STEP_HEADER, ev.step);
    let resp = match builder.body(body::empty()) {
        Ok(r) => r,
        Err(e) => return crate::bad_header(ev, &e),
    };
    let step = ev.step;
    tokio::spawn(async move {
        let guard = replayer.inflight.enter();
        match upgrade.await {
            Ok(io) => {
                Session::new(replayer, step, script, secrets)
                    .run(TokioIo::new(io))
                    .await
            }
            Err(e) => tracing::warn!("step {step}: the WebSocket upgrade did not complete: {e}"),
        }
        drop(guard);
        drop(slot);
    });
    resp
}

fn load_script(replayer: &Replayer, ev: &Event) -> Result<Vec<Step>, tapedeck_store::StoreError> {
    let mut out = Vec::new();
    for m in ev.ws.iter().flat_map(|w| &w.messages) {
        if matches!(m.op, WsOp::Ping | WsOp::Pong) {
            continue;
        }
        let payload = replayer.rec.body(&m.body)?.to_vec();
        let key = (m.from == WsSide::Client && m.op.is_data())
            .then(|| message_key(m.op, &payload, &replayer.rules));
        out.push(Step {
            from: m.from,
            op: m.op,
            at_ms: m.at_ms,
            payload,
            code: m.code,
            key,
        });
    }
    Ok(out)
}

/// How the session ended, for the log.
enum End {
    Done,
    Miss,
    Stopped,
}

struct Session {
    replayer: Arc<Replayer>,
    step: u64,
    script: Vec<Step>,
    /// The next server message to send.
    server: usize,
    /// The next client data message expected.
    client: usize,
    /// Client data messages matched so far.
    matched: usize,
    /// The latest moment a pace is measured from: (when, its recorded offset).
    anchor: (Instant, f64),
    /// Whether tapedeck has sent a close.
    closing: bool,
    /// The secrets the upgrade request held, and those the client's messages revealed
    /// since: each client message is scrubbed of them, as record scrubbed it.
    secrets: Secrets,
}

impl Session {
    fn new(replayer: Arc<Replayer>, step: u64, script: Vec<Step>, secrets: Secrets) -> Session {
        Session {
            secrets,
            replayer,
            step,
            script,
            server: 0,
            client: 0,
            matched: 0,
            anchor: (Instant::now(), 0.0),
            closing: false,
        }
    }

    /// The next server message and when it may go, if the client messages before it
    /// in the recording have all arrived.
    fn next_send(&mut self) -> Option<(usize, Instant)> {
        while self.server < self.script.len() && self.script[self.server].from != WsSide::Server {
            self.server += 1;
        }
        let i = self.server;
        let s = self.script.get(i)?;
        let before = self.script[..i]
            .iter()
            .filter(|m| m.from == WsSide::Client && m.op.is_data())
            .count();
        if before > self.matched {
            return None;
        }
        let due = if self.replayer.pace == Pace::Recorded {
            let wait = super::ms_offset(s.at_ms - self.anchor.1);
            wait_until(self.anchor.0, wait)
        } else {
            Instant::now()
        };
        Some((i, due))
    }

    /// The next recorded client data message, skipping the client's close.
    fn next_expected(&mut self) -> Option<usize> {
        while self.client < self.script.len() {
            let s = &self.script[self.client];
            if s.from == WsSide::Client && s.op.is_data() {
                return Some(self.client);
            }
            self.client += 1;
        }
        None
    }

    async fn run<IO>(mut self, io: IO)
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut reader = MessageReader::new(true);
        let mut buf = vec![0u8; 32 << 10];
        let inflight = self.replayer.inflight.clone();
        let end = loop {
            let send = if self.closing { None } else { self.next_send() };
            let due = send.map(|(_, d)| d).unwrap_or_else(Instant::now);
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()), if send.is_some() => {
                    let Some((i, _)) = send else { continue };
                    self.server = i + 1;
                    let s = &self.script[i];
                    let frame = match s.op {
                        WsOp::Close => {
                            self.closing = true;
                            match s.code {
                                Some(code) => encode(WsOp::Close, &close_payload(code, &String::from_utf8_lossy(&s.payload)), None),
                                None => encode(WsOp::Close, &[], None),
                            }
                        }
                        op => encode(op, &s.payload, None),
                    };
                    if wr.write_all(&frame).await.is_err() {
                        break End::Done;
                    }
                }
                read = rd.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => break End::Done,
                        Ok(n) => n,
                    };
                    let messages = match reader.feed(&buf[..n]) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!("step {}: the client sent WebSocket frames tapedeck cannot read: {e}", self.step);
                            let _ = wr.write_all(&encode(WsOp::Close, &close_payload(PROTOCOL_ERROR, &e.to_string()), None)).await;
                            break End::Done;
                        }
                    };
                    match self.on_messages(messages, &mut wr).await {
                        Some(end) => break end,
                        None => continue,
                    }
                }
                _ = inflight.draining() => {
                    let _ = wr.write_all(&encode(WsOp::Close, &close_payload(GOING_AWAY, "tapedeck is stopping"), None)).await;
                    break End::Stopped;
                }
            }
        };
        if self.closing && !matches!(end, End::Stopped) {
            // Give the client's close its moment, then hang up.
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        let _ = wr.shutdown().await;
        match end {
            End::Miss => tracing::debug!("step {}: WebSocket closed after a miss", self.step),
            End::Stopped => tracing::debug!("step {}: WebSocket closed at stop", self.step),
            End::Done => tracing::debug!("step {}: WebSocket ended", self.step),
        }
    }

    /// Handles what the client sent; `Some` when the session is over.
    async fn on_messages<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        messages: Vec<Message>,
        wr: &mut W,
    ) -> Option<End> {
        for m in messages {
            match m.op {
                WsOp::Ping => {
                    if wr
                        .write_all(&encode(WsOp::Pong, &m.payload, None))
                        .await
                        .is_err()
                    {
                        return Some(End::Done);
                    }
                }
                WsOp::Pong => {}
                WsOp::Close => {
                    if !self.closing {
                        // Answer as the recording did when its server answered a close.
                        let reply = self.script[self.server.min(self.script.len())..]
                            .iter()
                            .find(|s| s.from == WsSide::Server && s.op == WsOp::Close)
                            .map(|s| (s.code, s.payload.clone()));
                        let payload = match reply {
                            Some((Some(code), reason)) => {
                                close_payload(code, &String::from_utf8_lossy(&reason))
                            }
                            Some((None, _)) => Vec::new(),
                            None => m.payload.get(..2).map(<[u8]>::to_vec).unwrap_or_default(),
                        };
                        let _ = wr.write_all(&encode(WsOp::Close, &payload, None)).await;
                    }
                    return Some(End::Done);
                }
                WsOp::Text | WsOp::Binary => {
                    if let Some(reason) = self.take_client(&m) {
                        let _ = wr
                            .write_all(&encode(
                                WsOp::Close,
                                &close_payload(POLICY_VIOLATION, &reason),
                                None,
                            ))
                            .await;
                        self.closing = true;
                        return Some(End::Miss);
                    }
                }
            }
        }
        None
    }

    /// Matches a client data message against the next recorded one; a miss is counted
    /// and its text (the close reason) returned.
    fn take_client(&mut self, m: &Message) -> Option<String> {
        let stored = stored_payload(m.op, &m.payload, &self.replayer.rules, &mut self.secrets);
        let key = message_key(m.op, &stored, &self.replayer.rules);
        let session = self.replayer.rec.session.clone();
        let got = preview(m.op, &stored);
        let (kind, headline) = match self.next_expected() {
            Some(i) if self.script[i].key.as_ref() == Some(&key) => {
                self.client = i + 1;
                self.matched += 1;
                let at = self.script[i].at_ms;
                self.anchor = (Instant::now(), at);
                return None;
            }
            Some(i) => {
                let want = &self.script[i];
                (
                    "unrecorded",
                    format!(
                        "WebSocket message {} of step {} from the client was never recorded: got {got}; the recording expected {}",
                        self.matched + 1,
                        self.step,
                        preview(want.op, &want.payload)
                    ),
                )
            }
            None => (
                "exhausted",
                format!(
                    "WebSocket message {} of step {} from the client comes after every recorded one: got {got}",
                    self.matched + 1,
                    self.step
                ),
            ),
        };
        let line = format!("MISS {kind}: session {session}: {headline}");
        self.replayer.note_miss(kind, line);
        Some(format!("tapedeck replay miss ({kind}): {headline}"))
    }
}

/// A short, one-line look at a payload for a miss message.
fn preview(op: WsOp, payload: &[u8]) -> String {
    match op {
        WsOp::Text => {
            let text = String::from_utf8_lossy(payload).replace('\n', " ");
            if text.chars().count() > 80 {
                format!("{}…", text.chars().take(79).collect::<String>())
            } else {
                text
            }
        }
        op => format!("{} message of {} bytes", op.as_str(), payload.len()),
    }
}
