//! What a replay serves, read from the store before the request comes, on a thread of its
//! own: the runtime's threads never read sled or a file to answer.
//!
//! A replay serves a recording in about its recorded order, so what comes next is known:
//! the events just after the ones being served. A reader thread keeps a window of them
//! read ahead, each with what answering it needs (the event, read and decoded, when
//! the recording let its events go; its response body, when small enough to be a sled
//! value; its recorded request body, when it may be a JSON-RPC call whose id the answer
//! carries: a JSON request whose answer is JSON-RPC, or not read ahead). Serving takes an event's reading from the window; one outside it (a replay
//! far out of order, the first request) is read on the blocking pool instead. The window
//! starts at the first event not served, or half a window behind the highest served when
//! one is never asked for, and is bounded in events and in bytes. An idle replay reads
//! nothing ahead.
//!
//! The reader wakes for a quarter window of room, not per request, and runs at a lower
//! priority than the serving threads: refilling the window never holds up a request.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex, Weak};

use bytes::Bytes;

use tapedeck_model::exchange::{header, BodyRef, Event};
use tapedeck_store::recording::Recording;
use tapedeck_store::StoreError;

/// How many events are read ahead: at 60,000 requests a second, 4 ms of them.
const WINDOW: usize = 256;
/// How many bytes of bodies the window holds at most.
const MAX_BYTES: usize = 16 << 20;

/// What serving one event needs from the store, read.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The event, decoded here, when the recording does not hold it in memory: the
    /// thread serving it decodes nothing.
    pub event: Option<Box<Event>>,
    /// The size of its stored JSON (what it counts against the window's bound).
    event_len: usize,
    /// Its response body, when it is small (a larger one streams from its file).
    pub body: Option<Bytes>,
    /// The parts of a large response body, to read one at a time.
    pub parts: Option<Vec<String>>,
    /// Its recorded request body, when it may be a JSON-RPC call.
    pub request: Option<Bytes>,
}

impl Fetched {
    /// Reads what serving event `i` of `rec` needs. Blocking: call it off the runtime.
    /// A small body is kept inside its event's value: the event and its small bodies are
    /// one read of the store.
    pub(crate) fn read(rec: &Recording, i: usize) -> Result<Fetched, StoreError> {
        let mut f = Fetched::default();
        let mut stored = None;
        if rec.released() {
            if let Some(s) = rec.event_stored(i)? {
                f.event_len = s.json.len();
                f.event = Some(Box::new(rec.decode_event(i, &s)?));
                stored = Some(s);
            }
        }
        let needs = match &f.event {
            Some(ev) => Needs::of(ev),
            None => Needs::of(&*rec.event(i)?),
        };
        let small = |len: u64| len > 0 && len < tapedeck_store::FILE_BLOB_MIN as u64;
        let wanted = |r: &BodyRef| r.at.is_some() && small(r.len);
        // Events held in memory: their value is read only for the bodies inside it.
        if stored.is_none()
            && (needs.response.as_ref().is_some_and(wanted) || wanted(&needs.request))
        {
            stored = rec.event_stored(i)?;
        }
        let body = |r: &BodyRef| match stored.as_ref().and_then(|s| s.body(&r.b3)) {
            Some(inside) => inside,
            None => rec.body(r),
        };
        if let Some(r) = needs.response.filter(|_| !needs.no_body) {
            f.parts = rec.body_parts(&r);
            if f.parts.is_none() && small(r.len) {
                f.body = Some(body(&r)?);
            }
        }
        // Only a JSON-RPC answer carries the recorded request's id, to be swapped for the
        // client's: an LLM call's request (tens of KiB) is not read for nothing. An answer
        // not read here (none, large, in parts) cannot tell, so its request is read.
        let jsonrpc_answer = f
            .body
            .as_ref()
            .is_none_or(|b| memchr::memmem::find(b, b"\"jsonrpc\"").is_some());
        if needs.request_json && small(needs.request.len) && jsonrpc_answer {
            f.request = Some(body(&needs.request)?);
        }
        Ok(f)
    }

    /// The bytes it holds (what counts against the window's bound).
    fn bytes(&self) -> usize {
        self.event_len
            + [&self.body, &self.request]
                .iter()
                .map(|b| b.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }
}

/// What the reader needs to know of an event: which bodies serving it reads.
struct Needs {
    /// Its response has no body (HEAD, 1xx, 204, 304).
    no_body: bool,
    response: Option<BodyRef>,
    request: BodyRef,
    /// Its request is JSON (maybe a JSON-RPC call, whose id the answer carries).
    request_json: bool,
}

impl Needs {
    fn of(ev: &Event) -> Needs {
        Needs {
            no_body: ev
                .response
                .as_ref()
                .is_some_and(|r| has_no_body(&ev.request.method, r.status)),
            response: ev.response.as_ref().map(|r| r.body.clone()),
            request: ev.request.body.clone(),
            request_json: header(&ev.request.headers, "content-type")
                .is_some_and(|c| c.contains("json")),
        }
    }
}

/// Whether a response to `method` with `status` has no body (HEAD, 1xx, 204, 304).
pub(crate) fn has_no_body(method: &str, status: u16) -> bool {
    method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status)
}

/// The read-ahead window, shared between the serving tasks and the reader thread.
pub(crate) struct Prefetch {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The events read ahead, in a ring of [`WINDOW`] slots.
struct Ready {
    slots: Vec<Option<(usize, Fetched)>>,
    /// The bytes of bodies they hold.
    bytes: usize,
}

impl Default for Ready {
    fn default() -> Self {
        Ready {
            slots: std::iter::repeat_with(|| None).take(WINDOW).collect(),
            bytes: 0,
        }
    }
}

impl Ready {
    fn insert(&mut self, i: usize, f: Fetched) {
        self.bytes += f.bytes();
        let old = self.slots[i % WINDOW].replace((i, f));
        self.bytes -= old.map_or(0, |(_, f)| f.bytes());
    }

    fn remove(&mut self, i: usize) -> Option<Fetched> {
        let slot = &mut self.slots[i % WINDOW];
        if slot.as_ref().is_some_and(|(at, _)| *at == i) {
            let (_, f) = slot.take()?;
            self.bytes -= f.bytes();
            return Some(f);
        }
        None
    }

    #[cfg(test)]
    fn contains(&self, i: usize) -> bool {
        self.slots[i % WINDOW]
            .as_ref()
            .is_some_and(|(at, _)| *at == i)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

#[derive(Default)]
struct State {
    /// Read, not yet served: event `i` at `i % WINDOW` (the window holds no two events
    /// with one slot), so reading ahead allocates nothing the serving threads free.
    ready: Ready,
    /// The window's first event and the next the reader looks at.
    base: usize,
    next: usize,
    /// The first event not served yet, and those served beyond it (the reader skips
    /// them: one served before it got there was read on the blocking pool).
    unserved: usize,
    served: BTreeSet<usize>,
    highest: usize,
    len: usize,
    /// Something was served: an idle replay reads nothing ahead (and holds nothing).
    serving: bool,
    /// Events the reader decoded, served: it frees them (see [`Prefetch::bury`]). Boxed
    /// as they were handed over, so the box too is freed where it was made.
    #[allow(clippy::vec_box)]
    spent: Vec<Box<Event>>,
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
        (self.serving
            && self.next < self.len
            && self.next < self.base + WINDOW
            && self.ready.bytes < MAX_BYTES)
            .then_some(self.next)
    }

    /// Moves the first unserved event past those served.
    fn advance(&mut self) {
        while self.served.first() == Some(&self.unserved) {
            self.served.pop_first();
            self.unserved += 1;
        }
    }

    /// Whether a waiting reader has enough room to be worth waking (a quarter window).
    fn worth_waking(&self) -> bool {
        let next = self.next.max(self.base);
        next < self.len
            && next + WINDOW / 4 <= self.base + WINDOW
            && self.ready.bytes < MAX_BYTES / 2
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

    /// Hands back an event the reader decoded, once it is served, for the reader to free
    /// on the thread that allocated it: mimalloc frees a block from another thread on a
    /// slower path, and the owner pays again to collect it (together about 3 % of a
    /// replay's time when the serving threads freed them). Past a window of them
    /// waiting, the caller frees it.
    pub(crate) fn bury(&self, ev: Box<Event>) {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.spent.len() < WINDOW {
            s.spent.push(ev);
            return;
        }
        drop(s);
        drop(ev);
    }

    /// Takes what was read ahead for event `i`, which is being served now (each event
    /// is served once).
    pub(crate) fn take(&self, i: usize) -> Option<Fetched> {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let got = s.ready.remove(i);
        s.serving = true;
        match i.cmp(&s.unserved) {
            std::cmp::Ordering::Equal => {
                s.unserved += 1;
                s.advance();
            }
            std::cmp::Ordering::Greater => {
                s.served.insert(i);
            }
            std::cmp::Ordering::Less => {}
        }
        s.highest = s.highest.max(i);
        // The window starts at the first event not served, or half a window behind the
        // highest served when one is never asked for.
        let base = s.unserved.max(s.highest.saturating_sub(WINDOW / 2));
        if base > s.base {
            // What the window leaves behind was never asked for: let it go.
            for gone in s.base..base.min(s.base + WINDOW) {
                s.ready.remove(gone);
            }
            s.base = base;
            s.served = s.served.split_off(&base);
            s.unserved = s.unserved.max(base);
            s.advance();
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

/// The reader's nice value: when it competes with the serving threads for a core, it
/// gets about a tenth of their share.
const NICE: i32 = 10;

/// Lowers this thread's priority: a reader that wakes to refill the window then yields
/// the core to a request being served (it has the window's slack), where at equal
/// priority its bursts showed as a c=1 p99 of 0.27-0.81 ms against 0.10-0.17.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux a thread id names one thread to `setpriority`; raising one's own nice
    // value needs no privilege. Failing leaves the priority as it was.
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), NICE);
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

impl Shared {
    fn run<T>(&self, owner: &Weak<T>, rec: fn(&T) -> &Recording) {
        lower_priority();
        let mut spent = Vec::new();
        loop {
            let i = {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if s.stop {
                        return;
                    }
                    if !s.spent.is_empty() {
                        // Freed outside the lock; the two lists trade buffers.
                        std::mem::swap(&mut spent, &mut s.spent);
                        drop(s);
                        spent.clear();
                        s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                        continue;
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
                if i >= s.base && !s.served.contains(&i) {
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
            assert_eq!(s.want(), None, "nothing is read before a request is served");
            s.serving = true;
            assert_eq!(s.want(), Some(0));
            s.next = WINDOW;
            assert_eq!(s.want(), None, "a full window reads no further");
        }
        // Event 0 is never asked for; the agent goes on from 1.
        for i in 1..WINDOW {
            p.take(i);
        }
        // Half a window past it, event 0 was given up: the window follows what is served.
        let s = p.shared.state.lock().unwrap();
        assert_eq!(s.unserved, WINDOW);
        assert_eq!(s.base, WINDOW);
    }

    #[test]
    fn an_event_served_before_the_reader_got_to_it_is_skipped_not_read() {
        let p = state(100);
        p.take(5);
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
            }
            assert_eq!(s.ready.bytes, 400);
        }
        assert!(p.take(1).is_some());
        assert_eq!(p.ready(), 3);
        // Served far ahead: the window's base passes 0, 2 and 3, which are dropped.
        assert!(p.take(5000).is_none());
        assert_eq!(p.ready(), 0);
        assert_eq!(p.shared.state.lock().unwrap().ready.bytes, 0);
    }

    /// Stores one call, its bodies and its event, as session "s" of `store`.
    fn put_call(
        store: &tapedeck_store::SledStore,
        step: u64,
        (method, url, headers): (&str, &str, &[(String, String)]),
        request: &[u8],
        (status, response): (u16, &[u8]),
    ) {
        use tapedeck_model::exchange::*;
        use tapedeck_store::Store;
        let body = |data: &[u8]| BodyRef {
            b3: tapedeck_store::store_whole(store, data)
                .unwrap()
                .to_hex()
                .to_string(),
            len: data.len() as u64,
            encoding: None,
            at: None,
        };
        let ev = Event {
            step,
            kind: Kind::Other,
            key: String::new(),
            rules: None,
            agent: None,
            request: RequestRecord {
                method: method.into(),
                url: url.into(),
                version: "HTTP/1.1".into(),
                headers: headers.to_vec(),
                body: body(request),
            },
            response: Some(ResponseRecord {
                status,
                version: "HTTP/1.1".into(),
                headers: headers.to_vec(),
                body: body(response),
                chunks: None,
                complete: true,
                trailers: Vec::new(),
                broke: None,
                members: Vec::new(),
            }),
            timing: Timing::default(),
            error: None,
            ws: None,
            injected: None,
        };
        store.put_event("s", &ev).unwrap();
    }

    #[test]
    fn a_json_request_is_read_ahead_only_when_its_answer_is_json_rpc() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(tapedeck_store::SledStore::open(dir.path()).unwrap());
        let json = [("content-type".to_string(), "application/json".to_string())];
        let calls: [(&[u8], u16, &[u8]); 3] = [
            (br#"{"model":"m","messages":[]}"#, 200, br#"{"choices":[]}"#),
            (
                br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
                200,
                br#"{"jsonrpc":"2.0","id":3,"result":{}}"#,
            ),
            // A notification: answered 202 with no body, which cannot tell.
            (
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                202,
                b"",
            ),
        ];
        for (i, (request, status, response)) in calls.iter().enumerate() {
            let head = ("POST", "http://a.test/mcp", &json[..]);
            put_call(&store, i as u64 + 1, head, request, (*status, response));
        }
        let rec = Recording::from_store_by_step(store, "s").unwrap();
        let read: Vec<Option<Bytes>> = (0..calls.len())
            .map(|i| Fetched::read(&rec, i).unwrap().request)
            .collect();
        assert_eq!(read[0], None, "an LLM call's request is not read");
        assert_eq!(read[1].as_deref(), Some(calls[1].0));
        assert_eq!(read[2].as_deref(), Some(calls[2].0));
    }

    /// A session of `n` events in a real store, each answered `answer {i}`, its events
    /// left in the store as a long session's are.
    fn stored(dir: &std::path::Path, n: usize) -> Recording {
        use tapedeck_store::Store;
        let store = std::sync::Arc::new(tapedeck_store::SledStore::open(dir).unwrap());
        for i in 0..n {
            let url = format!("http://a.test/{i}");
            let answer = format!("answer {i}");
            put_call(
                &store,
                i as u64 + 1,
                ("GET", &url, &[]),
                b"",
                (200, answer.as_bytes()),
            );
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

    /// The nice value of this process's read-ahead thread, from /proc.
    #[cfg(target_os = "linux")]
    fn reader_nice() -> Option<i32> {
        std::fs::read_dir("/proc/self/task")
            .ok()?
            .flatten()
            .find_map(|t| {
                let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
                if comm.trim() != "tapedeck-read-a" {
                    return None;
                }
                let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
                // After the command's closing parenthesis: state is field 3, nice field 19.
                let rest = &stat[stat.rfind(')')? + 2..];
                rest.split(' ').nth(16)?.parse().ok()
            })
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
        #[cfg(target_os = "linux")]
        eventually("the reader at a lower priority", || {
            reader_nice() == Some(NICE)
        });
        // Nothing is read before something is served.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(owner.ahead.ready(), 0);
        assert!(owner.ahead.take(0).is_none(), "served before it was read");
        eventually("a full window", || owner.ahead.ready() == WINDOW);
        let check = |i: usize, f: Fetched| {
            let ev = f.event.expect("a released session's event is read ahead");
            assert_eq!(ev.step, i as u64 + 1);
            assert_eq!(f.body.as_deref(), Some(format!("answer {i}").as_bytes()));
        };
        // 1 to WINDOW - 1 are served: the window moves on, to end at 2 * WINDOW. The
        // reader is woken for a quarter window of room at least, so it has read three
        // quarters of it for sure.
        for i in 1..WINDOW {
            let f = owner.ahead.take(i).expect("read ahead");
            check(i, f);
        }
        let last = WINDOW + 3 * WINDOW / 4 - 1;
        eventually("the window refilled", || {
            owner
                .ahead
                .shared
                .state
                .lock()
                .unwrap()
                .ready
                .contains(last)
        });
        assert!(owner.ahead.ready() <= WINDOW);
        let f = owner.ahead.take(last).expect("read ahead");
        check(last, f);
        let shared = owner.ahead.shared.clone();
        drop(owner);
        eventually("the reader ended", || Arc::strong_count(&shared) == 1);
    }
}
