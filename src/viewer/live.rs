//! Live updates: each exchange a daemon records reaches open pages as a server-sent event.
//!
//! The recorder calls [`Hub::publish`] once an event is stored (beside live OTLP export,
//! through the recorder's event sink). Each page holds one `GET api/live` stream; a
//! message says which session grew and by which step, and the page asks the API again
//! for what it shows. A page that falls behind gets a `reset` and reloads; a page that
//! reconnects reloads too, so nothing is lost between connections. [`Hub::close`] ends
//! every stream, so a stopping daemon is not held open by a browser tab.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::ViewerBody;
use tapedeck_model::exchange::Event;

/// Messages a slow page may fall behind by before it is told to reload.
const BACKLOG: usize = 1024;
/// A comment line this often keeps idle connections from being cut.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub struct Hub {
    tx: broadcast::Sender<Bytes>,
    closed: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (tx, _) = broadcast::channel(BACKLOG);
        let (closed, _) = watch::channel(false);
        Hub { tx, closed }
    }

    /// Sends one stored exchange to every open page (no-op when none is open).
    pub fn publish(&self, session: &str, ev: &Event) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let msg = json!({
            "session": session,
            "step": ev.step,
            "kind": ev.kind,
            "method": ev.request.method,
            "url": ev.request.url,
            "status": ev.status(),
            "error": ev.error.as_ref().map(|e| e.kind.as_str()),
        });
        let frame = format!("event: exchange\ndata: {msg}\n\n");
        let _ = self.tx.send(Bytes::from(frame));
    }

    pub fn close(&self) {
        let _ = self.closed.send(true);
    }

    /// An SSE body that lasts until the hub closes or the page goes.
    pub fn stream(&self) -> ViewerBody {
        let state = Stream {
            rx: self.tx.subscribe(),
            closed: self.closed.subscribe(),
            started: false,
        };
        let frames = futures_util::stream::unfold(state, |mut s| async move {
            let data = s.next().await?;
            Some((Ok::<_, Infallible>(Frame::data(data)), s))
        });
        StreamBody::new(frames).boxed_unsync()
    }
}

struct Stream {
    rx: broadcast::Receiver<Bytes>,
    closed: watch::Receiver<bool>,
    started: bool,
}

impl Stream {
    async fn next(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            // `retry`: how soon the browser reconnects after a stream ends.
            return Some(Bytes::from_static(
                b"retry: 1000\nevent: hello\ndata: {}\n\n",
            ));
        }
        if *self.closed.borrow() {
            return None;
        }
        tokio::select! {
            msg = self.rx.recv() => match msg {
                Ok(frame) => Some(frame),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    Some(Bytes::from_static(b"event: reset\ndata: {}\n\n"))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            },
            _ = self.closed.changed() => None,
            _ = tokio::time::sleep(KEEP_ALIVE) => Some(Bytes::from_static(b": keep-alive\n\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_published_exchange_reaches_an_open_stream_and_close_ends_it() {
        let hub = Hub::new();
        let mut body = hub.stream();
        let hello = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(String::from_utf8_lossy(&hello).contains("event: hello"));
        let ev: Event = serde_json::from_value(json!({
            "step": 7, "kind": "llm", "key": "k",
            "request": {"method": "POST", "url": "https://x.test/v1", "version": "HTTP/1.1",
                        "headers": [], "body": {"b3": "00", "len": 0}},
            "timing": {"start_ns": 0, "end_ns": 1, "start_unix_ns": 0, "end_unix_ns": 1}
        }))
        .unwrap();
        hub.publish("s1", &ev);
        let msg = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let text = String::from_utf8_lossy(&msg).to_string();
        assert!(text.starts_with("event: exchange\ndata: {"), "{text}");
        assert!(
            text.contains("\"session\":\"s1\"") && text.contains("\"step\":7"),
            "{text}"
        );
        hub.close();
        assert!(body.frame().await.is_none(), "the stream ends on close");
    }
}
