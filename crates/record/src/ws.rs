//! Record, WebSocket: once the upstream answered `101`, the bytes of both directions go
//! through as they come, and a copy of each is read into messages on the side.
//!
//! Nothing is re-framed or held back: a frame reaches the other peer before tapedeck
//! looks at it. Each whole message is redacted and stored by a writer thread of its own
//! (the store is synchronous), so memory holds at most the message being read. The
//! event is written when both directions have ended, or when tapedeck stops.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Pending;
use tapedeck_model::exchange::redact::{MessageSplit, Secrets};
use tapedeck_model::exchange::ws::{
    split_close, stored_payload, WsMessage, WsOp, WsRecord, WsSide,
};
use tapedeck_model::exchange::{BodyRef, ErrorKind, ExchangeError};
use tapedeck_model::rules::Rules;
use tapedeck_proxy::ws::{Message, MessageReader};
use tapedeck_store::{store_whole, Store, StoreError};

/// How long the other direction may stay open once one has ended (a peer that never
/// closes its side after the close handshake).
const HALF_OPEN: Duration = Duration::from_secs(10);

/// The request headers sent upstream for an upgrade: hop-by-hop stripping removed the
/// upgrade itself, and the compression offer goes (payloads must stay readable).
pub(super) fn upstream_headers(headers: &mut HeaderMap) {
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    headers.remove(http::header::SEC_WEBSOCKET_EXTENSIONS);
}

/// A message as read, on its way to the writer thread.
struct Seen {
    from: WsSide,
    at_ms: f64,
    message: Message,
}

/// Relays an upgraded exchange until both peers are done, then writes its event.
pub(super) async fn relay(
    mut pending: Pending,
    client: OnUpgrade,
    upstream: OnUpgrade,
    upgraded_at: Instant,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            pending
                .finish_stored(
                    Some(ExchangeError {
                        kind: ErrorKind::Protocol,
                        message: format!("the WebSocket upgrade did not complete: {e}"),
                    }),
                    false,
                )
                .await;
            return;
        }
    };
    let (tx, rx) = mpsc::channel::<Seen>();
    let writer = {
        let store = pending.recorder.store.clone();
        let rules = pending.recorder.rules.clone();
        let secrets = pending.secrets.clone();
        tokio::task::spawn_blocking(move || write_messages(rx, store.as_ref(), &rules, secrets))
    };
    let problems = Arc::new(Mutex::new(Vec::<String>::new()));
    let (cr, cw) = tokio::io::split(TokioIo::new(client));
    let (ur, uw) = tokio::io::split(TokioIo::new(upstream));
    let up = pump(
        cr,
        uw,
        WsSide::Client,
        upgraded_at,
        tx.clone(),
        problems.clone(),
    );
    let down = pump(ur, cw, WsSide::Server, upgraded_at, tx, problems.clone());
    let inflight = pending.recorder.inflight.clone();
    let stopped = tokio::select! {
        _ = both(up, down) => false,
        _ = inflight.draining() => true,
    };
    // The pumps (and their senders) are gone: the writer finishes what it was given.
    let Written {
        messages,
        secrets,
        unstored,
    } = match writer.await {
        Ok(done) => done,
        Err(e) => Written {
            messages: Vec::new(),
            secrets: pending.secrets.clone(),
            unstored: Some((0, format!("the WebSocket writer failed: {e}"))),
        },
    };
    pending.secrets = secrets;
    let mut notes = problems.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if stopped {
        notes.push("tapedeck stopped while the WebSocket was open".into());
    }
    tracing::debug!(
        "#{}: WebSocket ended after {} messages",
        pending.step,
        messages.len()
    );
    pending.ws = Some(WsRecord { messages });
    let mut error = (!notes.is_empty()).then(|| ExchangeError {
        kind: if stopped {
            ErrorKind::ClientClosed
        } else {
            ErrorKind::Protocol
        },
        message: notes.join("; "),
    });
    // Messages the store could not take: the event says so first, so that every reader
    // takes it as damage (a replay would serve those messages empty, or not at all).
    if let Some((n, e)) = unstored {
        let what = match n {
            0 => e,
            n => format!("{n} of its messages: {e}"),
        };
        tracing::error!("#{}: cannot store the WebSocket's {what}", pending.step);
        let also = error.take().map(|e| format!("; {}", e.message));
        error = Some(ExchangeError {
            kind: ErrorKind::Other,
            message: tapedeck_store::unstored_error(format!("{what}{}", also.unwrap_or_default())),
        });
    }
    pending.finish_stored(error, true).await;
}

/// Runs both directions; once one ends, the other gets [`HALF_OPEN`] to end too.
async fn both(
    up: impl std::future::Future<Output = ()>,
    down: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut up => { let _ = tokio::time::timeout(HALF_OPEN, down).await; }
        _ = &mut down => { let _ = tokio::time::timeout(HALF_OPEN, up).await; }
    }
}

/// Copies one direction through and reads it into messages on the side. The bytes are
/// forwarded before they are read, and a direction tapedeck cannot read still flows.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    side: WsSide,
    upgraded_at: Instant,
    tx: mpsc::Sender<Seen>,
    problems: Arc<Mutex<Vec<String>>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = Some(MessageReader::new(side == WsSide::Client));
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let Some(r) = reader.as_mut() else { continue };
        match r.feed(&buf[..n]) {
            Ok(messages) => {
                let at_ms = crate::capture::round_ms(upgraded_at.elapsed().as_secs_f64() * 1000.0);
                for message in messages {
                    let _ = tx.send(Seen {
                        from: side,
                        at_ms,
                        message,
                    });
                }
            }
            Err(e) => {
                let note = format!(
                    "the {} sent WebSocket frames tapedeck cannot read ({e}); later messages in that direction are not recorded",
                    side.as_str()
                );
                tracing::warn!("{note}");
                problems
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(note);
                reader = None;
            }
        }
    }
    let _ = to.shutdown().await;
}

/// What the writer thread did with a WebSocket's messages.
struct Written {
    messages: Vec<WsMessage>,
    /// What the payloads revealed.
    secrets: Secrets,
    /// How many payloads the store could not take, and the first error.
    unstored: Option<(usize, String)>,
}

/// The writer thread: redacts and stores each message as it comes, and returns the
/// list with the secrets the payloads revealed. The server's text messages are also read
/// together for secrets spread over them (a model repeating a key a few characters a
/// message): one is held back, unstored, while the text ending in it could still begin
/// one.
fn write_messages(
    rx: mpsc::Receiver<Seen>,
    store: &dyn Store,
    rules: &Rules,
    mut secrets: Secrets,
) -> Written {
    let mut out = Vec::new();
    let mut split = MessageSplit::new(&secrets);
    // Where the server's held messages stand in `out`, oldest first.
    let mut held = std::collections::VecDeque::new();
    let mut unstored: Option<(usize, String)> = None;
    let mut put = |out: &mut Vec<WsMessage>, at: usize, stored: &[u8]| {
        let (body, failed) = stored_ref(store, stored);
        out[at].body = body;
        if let Some(e) = failed {
            unstored.get_or_insert((0, e.to_string())).0 += 1;
        }
    };
    for seen in rx {
        let Seen {
            from,
            at_ms,
            message,
        } = seen;
        let (code, payload) = match message.op {
            WsOp::Close => {
                let (code, reason) = split_close(&message.payload);
                (code, reason.to_vec())
            }
            _ => (None, message.payload),
        };
        let stored = stored_payload(message.op, &payload, rules, &mut secrets);
        out.push(WsMessage {
            from,
            op: message.op,
            at_ms,
            body: BodyRef::empty(),
            code,
        });
        let at = out.len() - 1;
        match split.as_mut() {
            Some(split) if from == WsSide::Server && message.op == WsOp::Text => {
                held.push_back(at);
                for ready in split.push(&stored) {
                    let at = held.pop_front().expect("a released message was held");
                    put(&mut out, at, &ready);
                }
            }
            _ => put(&mut out, at, &stored),
        }
    }
    if let Some(split) = split {
        for ready in split.finish() {
            let at = held.pop_front().expect("a released message was held");
            put(&mut out, at, &ready);
        }
    }
    Written {
        messages: out,
        secrets,
        unstored,
    }
}

/// Stores a message's payload; its reference, and the store's error when it could not.
fn stored_ref(store: &dyn Store, stored: &[u8]) -> (BodyRef, Option<StoreError>) {
    let (hash, failed) = match store_whole(store, stored) {
        Ok(h) => (h, None),
        Err(e) => (blake3::hash(stored), Some(e)),
    };
    let body = BodyRef {
        b3: hash.to_hex().to_string(),
        len: stored.len() as u64,
        encoding: None,
        at: None,
    };
    (body, failed)
}
