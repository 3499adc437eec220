//! What a replay serves, read from the store before the request comes, on a thread of its
//! own: the runtime's threads never read sled or a file to answer.
//!
//! A replay serves a recording in (about) its recorded order, so what comes next is
//! known: the events just after the ones being served. A reader thread keeps a window
//! of them read ahead, each with what answering it needs (the event, when the recording
//! let its events go; its response body, when small enough to be a sled value; its
//! recorded request body, when it may be a JSON-RPC call whose id the answer carries).
//! Serving takes an event's reading from the window; one outside it (a replay far out of
//! order, or the first requests before the reader got there) is read on the blocking
//! pool instead. The window moves with the highest event served, so an event the agent
//! never asks for does not hold it back, and it is bounded in events and in bytes.
//!
//! The reader wakes once per quarter window, not per request: the hand-off costs no
//! thread switch per exchange.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, Weak};

use bytes::Bytes;
use tapedeck_model::exchange::{header, Event};
use tapedeck_store::recording::Recording;
use tapedeck_store::StoreError;

/// How many events are read ahead of the highest served.
const WINDOW: usize = 512;
/// How many bytes of bodies the window holds at most.
const MAX_BYTES: usize = 16 << 20;

/// What serving one event needs from the store, read.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The event, when the recording does not hold it in memory.
    pub event: Option<Event>,
    /// Its response body, when it is small (a larger one streams from its file).
    pub body: Option<Bytes>,
    /// The parts of a large response body, to read one at a time.
    pub parts: Option<Vec<String>>,
    /// Its recorded request body, when it may be a JSON-RPC call.
    pub request: Option<Bytes>,
}

impl Fetched {
    /// Reads what serving event `i` of `rec` needs. Blocking: call it off the runtime.
    pub(crate) fn read(rec: &Recording, i: usize) -> Result<Fetched, StoreError> {
        let ev = rec.event(i)?;
        let small = |len: u64| len > 0 && len < tapedeck_store::FILE_BLOB_MIN as u64;
        let mut f = Fetched::default();
        if let Some(r) = &ev.response {
            if !has_no_body(&ev.request.method, r.status) {
                f.parts = rec.body_parts(&r.body);
                if f.parts.is_none() && small(r.body.len) {
                    f.body = Some(rec.body(&r.body)?);
                }
            }
        }
        let rq = &ev.request;
        if small(rq.body.len)
            && header(&rq.headers, "content-type").is_some_and(|c| c.contains("json"))
        {
            f.request = Some(rec.body(&rq.body)?);
        }
        if let std::borrow::Cow::Owned(ev) = ev {
            f.event = Some(ev);
        }
        Ok(f)
    }

    /// The bytes it holds (what counts against the window's bound).
    fn bytes(&self) -> usize {
        self.body.as_ref().map_or(0, Bytes::len) + self.request.as_ref().map_or(0, Bytes::len)
    }
}

/// Whether a response to `method` with `status` has no body (HEAD, 1xx, 204, 304).
pub(crate) fn has_no_body(method: &str, status: u16) -> bool {
    method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 || status < 200
}

/// The read-ahead window, shared between the serving tasks and the reader thread.
pub(crate) struct Prefetch {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Read, not yet served.
    ready: BTreeMap<usize, Fetched>,
    /// The window's first event and the next the reader looks at.
    base: usize,
    next: usize,
    /// Events in the window served before the reader got to them (it skips them).
    served: BTreeSet<usize>,
    highest: usize,
    bytes: usize,
    len: usize,
    /// The reader is waiting for room.
    idle: bool,
    stop: bool,
}

impl State {
    /// The next event the reader should read, if the window has room.
    fn want(&mut self) -> Option<usize> {
        self.next = self.next.max(self.base);
        while self.next < self.len && self.served.contains(&self.next) {
            self.next += 1;
        }
        (self.next < self.len && self.next < self.base + WINDOW && self.bytes < MAX_BYTES)
            .then_some(self.next)
    }

    /// Whether a waiting reader has enough room to be worth waking (a quarter window).
    fn worth_waking(&self) -> bool {
        let next = self.next.max(self.base);
        next < self.len && next + WINDOW / 4 <= self.base + WINDOW && self.bytes < MAX_BYTES / 2
    }
}

impl Prefetch {
    /// A window over the `len` events of a recording; nothing is read until
    /// [`Prefetch::start`].
    pub(crate) fn new(len: usize) -> Prefetch {
        Prefetch {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    len,
                    ..State::default()
                }),
                wake: Condvar::new(),
            }),
        }
    }

    /// Starts the reader thread. It reads through `owner` (the replayer holding this
    /// window and the recording) and ends when the owner is dropped.
    pub(crate) fn start<T: Send + Sync + 'static>(
        &self,
        owner: Weak<T>,
        rec: fn(&T) -> &Recording,
    ) -> std::io::Result<()> {
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("tapedeck-read-ahead".into())
            .spawn(move || shared.run(&owner, rec))
            .map(drop)
    }

    /// Takes what was read ahead for event `i`, which is being served now;
    /// `first_unserved` is the index's first event not served yet.
    pub(crate) fn take(&self, i: usize, first_unserved: usize) -> Option<Fetched> {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let got = s.ready.remove(&i);
        if let Some(f) = &got {
            s.bytes -= f.bytes();
        } else if i >= s.base {
            // Not read yet, or being read now: the reader skips it or drops its reading.
            s.served.insert(i);
        }
        s.highest = s.highest.max(i);
        let base = first_unserved.max(s.highest.saturating_sub(WINDOW / 2));
        if base > s.base {
            s.base = base;
            let keep = s.ready.split_off(&base);
            let dropped: usize = s.ready.values().map(Fetched::bytes).sum();
            s.bytes -= dropped;
            s.ready = keep;
            s.served = s.served.split_off(&base);
        }
        if s.idle && s.worth_waking() {
            s.idle = false;
            self.shared.wake.notify_one();
        }
        got
    }

    /// How many events are read and waiting.
    #[cfg(test)]
    fn ready(&self) -> usize {
        self.shared.state.lock().unwrap().ready.len()
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        s.stop = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn run<T>(&self, owner: &Weak<T>, rec: fn(&T) -> &Recording) {
        loop {
            let i = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if s.stop {
                        return;
                    }
                    if let Some(i) = s.want() {
                        s.next = i + 1;
                        break i;
                    }
                    s.idle = true;
                    s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
                }
            };
            let Some(owner) = owner.upgrade() else {
                return;
            };
            // A read that fails is not kept: serving the event reads it again and
            // reports what went wrong.
            let read = Fetched::read(rec(&owner), i);
            drop(owner);
            if let Ok(f) = read {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if i >= s.base && !s.served.remove(&i) {
                    s.bytes += f.bytes();
                    s.ready.insert(i, f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(len: usize) -> Prefetch {
        Prefetch::new(len)
    }

    #[test]
    fn the_window_follows_the_highest_event_served_past_one_never_asked_for() {
        let p = state(10_000);
        {
            let mut s = p.shared.state.lock().unwrap();
            assert_eq!(s.want(), Some(0));
            s.next = WINDOW;
            assert_eq!(s.want(), None, "a full window reads no further");
        }
        // Event 0 is never asked for; the agent goes on from 1.
        for i in 1..WINDOW {
            p.take(i, 0);
        }
        let s = p.shared.state.lock().unwrap();
        assert_eq!(s.base, WINDOW - 1 - WINDOW / 2);
        assert!(s.base + WINDOW > WINDOW, "the window moved on past event 0");
    }

    #[test]
    fn an_event_served_before_the_reader_got_to_it_is_skipped_not_read() {
        let p = state(100);
        p.take(5, 0);
        let mut s = p.shared.state.lock().unwrap();
        s.next = 5;
        assert_eq!(s.want(), Some(6));
    }

    #[test]
    fn taking_drops_what_the_window_left_behind_and_counts_its_bytes() {
        let p = state(10_000);
        {
            let mut s = p.shared.state.lock().unwrap();
            for i in 0..4 {
                s.ready.insert(
                    i,
                    Fetched {
                        body: Some(Bytes::from(vec![0u8; 100])),
                        ..Fetched::default()
                    },
                );
                s.bytes += 100;
            }
        }
        assert!(p.take(1, 0).is_some());
        assert_eq!(p.ready(), 3);
        // Served far ahead: the window's base passes 0, 2 and 3, which are dropped.
        assert!(p.take(5000, 0).is_none());
        assert_eq!(p.ready(), 0);
        assert_eq!(p.shared.state.lock().unwrap().bytes, 0);
    }

    /// A session of `n` events in a real store, each answered `answer {i}`, its events
    /// left in the store as a long session's are.
    fn stored(dir: &std::path::Path, n: usize) -> Recording {
        use tapedeck_model::exchange::*;
        use tapedeck_store::Store;
        let store = std::sync::Arc::new(tapedeck_store::SledStore::open(dir).unwrap());
        let empty = tapedeck_store::store_whole(store.as_ref(), b"").unwrap();
        for i in 0..n {
            let body = format!("answer {i}");
            let h = tapedeck_store::store_whole(store.as_ref(), body.as_bytes()).unwrap();
            let ev = Event {
                step: i as u64 + 1,
                kind: Kind::Other,
                key: String::new(),
                rules: None,
                agent: None,
                request: RequestRecord {
                    method: "GET".into(),
                    url: format!("http://a.test/{i}"),
                    version: "HTTP/1.1".into(),
                    headers: Vec::new(),
                    body: BodyRef {
                        b3: empty.to_hex().to_string(),
                        len: 0,
                        encoding: None,
                    },
                },
                response: Some(ResponseRecord {
                    status: 200,
                    version: "HTTP/1.1".into(),
                    headers: Vec::new(),
                    body: BodyRef {
                        b3: h.to_hex().to_string(),
                        len: body.len() as u64,
                        encoding: None,
                    },
                    chunks: None,
                    complete: true,
                }),
                timing: Timing::default(),
                error: None,
                ws: None,
                injected: None,
            };
            store.put_event("s", &ev).unwrap();
        }
        store.commit().unwrap();
        Recording::from_store_by_step(store, "s").unwrap()
    }

    fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !ok() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    struct Owner {
        rec: Recording,
        ahead: Prefetch,
    }

    #[test]
    fn the_reader_fills_the_window_refills_it_as_events_are_served_and_ends_with_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * WINDOW;
        let owner = Arc::new(Owner {
            rec: stored(dir.path(), n),
            ahead: Prefetch::new(n),
        });
        owner
            .ahead
            .start(Arc::downgrade(&owner), |o: &Owner| &o.rec)
            .unwrap();
        eventually("a full window", || owner.ahead.ready() == WINDOW);
        let check = |i: usize, f: Fetched| {
            let ev = f.event.expect("a released session's event is read ahead");
            assert_eq!(ev.step, i as u64 + 1);
            assert_eq!(f.body.as_deref(), Some(format!("answer {i}").as_bytes()));
        };
        // Event 0 is never asked for; 1 to WINDOW - 1 are served: the window moves on
        // with the highest served, to half a window behind it.
        for i in 1..WINDOW {
            let f = owner.ahead.take(i, 0).expect("read ahead");
            check(i, f);
        }
        let last = WINDOW - 1 - WINDOW / 2 + WINDOW - 1;
        eventually("the window refilled", || {
            owner
                .ahead
                .shared
                .state
                .lock()
                .unwrap()
                .ready
                .contains_key(&last)
        });
        assert!(owner.ahead.ready() <= WINDOW);
        let f = owner.ahead.take(last, 0).expect("read ahead");
        check(last, f);
        let shared = owner.ahead.shared.clone();
        drop(owner);
        eventually("the reader ended", || Arc::strong_count(&shared) == 1);
    }
}
