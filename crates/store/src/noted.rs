//! A store that notes the thread of every call it passes on: how the tests show that
//! record and replay keep sled and the disk off the async runtime's threads.

use std::sync::Mutex;

use tapedeck_model::exchange::{Event, SessionInfo};
use tapedeck_model::session::Lineage;

use crate::{BodyState, IssueTable, RunInfo, SessionRead, Store, StoreError};

/// One call to the store.
#[derive(Clone, Debug)]
pub struct Call {
    /// The name of the thread that made it (`?` for an unnamed one).
    pub thread: String,
    pub method: &'static str,
    /// Whether it writes.
    pub write: bool,
}

/// `inner`, noting each call.
pub struct Noted<S> {
    inner: S,
    calls: Mutex<Vec<Call>>,
}

impl<S: Store> Noted<S> {
    pub fn new(inner: S) -> Noted<S> {
        Noted {
            inner,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The store itself, to read without noting it.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The calls so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets the calls so far.
    pub fn clear(&self) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn note(&self, method: &'static str, write: bool) -> &S {
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Call {
                thread,
                method,
                write,
            });
        &self.inner
    }

    fn read(&self, method: &'static str) -> &S {
        self.note(method, false)
    }

    fn write(&self, method: &'static str) -> &S {
        self.note(method, true)
    }
}

impl<S: Store> Store for Noted<S> {
    fn put_blob(&self, hash: &blake3::Hash, data: &[u8]) -> Result<(), StoreError> {
        self.write("put_blob").put_blob(hash, data)
    }
    fn put_segment(&self, cv: &crate::tree::SegmentCv, data: &[u8]) -> Result<(), StoreError> {
        self.write("put_segment").put_segment(cv, data)
    }
    fn put_manifest(
        &self,
        hash: &blake3::Hash,
        segments: &[crate::tree::SegmentCv],
        len: u64,
    ) -> Result<(), StoreError> {
        self.write("put_manifest").put_manifest(hash, segments, len)
    }
    fn has_body(&self, h: &str) -> Result<bool, StoreError> {
        self.read("has_body").has_body(h)
    }
    fn get_body(&self, h: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read("get_body").get_body(h)
    }
    fn body_bytes(&self, h: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        self.read("body_bytes").body_bytes(h)
    }
    fn body_segments(&self, h: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.read("body_segments").body_segments(h)
    }
    fn put_event(&self, session: &str, event: &Event) -> Result<(), StoreError> {
        self.write("put_event").put_event(session, event)
    }
    fn put_event_with(
        &self,
        session: &str,
        event: &Event,
        bodies: &[(blake3::Hash, bytes::Bytes)],
    ) -> Result<(), StoreError> {
        self.write("put_event_with")
            .put_event_with(session, event, bodies)
    }
    fn put_event_past_floor(&self, session: &str, event: &Event) -> Result<(), StoreError> {
        self.write("put_event_past_floor")
            .put_event_past_floor(session, event)
    }
    fn event_body(
        &self,
        session: &str,
        step: u64,
        h: &str,
    ) -> Result<Option<bytes::Bytes>, StoreError> {
        self.read("event_body").event_body(session, step, h)
    }
    fn verify_event_body(
        &self,
        session: &str,
        step: u64,
        h: &str,
    ) -> Result<crate::BodyState, StoreError> {
        self.read("verify_event_body")
            .verify_event_body(session, step, h)
    }
    fn scan_session(
        &self,
        session: &str,
        keep: &mut dyn FnMut(Event),
    ) -> Result<SessionRead, StoreError> {
        self.read("scan_session").scan_session(session, keep)
    }
    fn verify_body(&self, h: &str) -> Result<BodyState, StoreError> {
        self.read("verify_body").verify_body(h)
    }
    fn journalled_steps(
        &self,
        s: &str,
    ) -> Result<Option<std::collections::BTreeSet<u64>>, StoreError> {
        self.read("journalled_steps").journalled_steps(s)
    }
    fn sessions(&self) -> Result<Vec<SessionInfo>, StoreError> {
        self.read("sessions").sessions()
    }
    fn session(&self, s: &str) -> Result<Option<SessionInfo>, StoreError> {
        self.read("session").session(s)
    }
    fn delete_session(&self, s: &str) -> Result<u64, StoreError> {
        self.write("delete_session").delete_session(s)
    }
    fn put_run(&self, s: &str, run: &RunInfo) -> Result<(), StoreError> {
        self.write("put_run").put_run(s, run)
    }
    fn run(&self, s: &str) -> Result<Option<RunInfo>, StoreError> {
        self.read("run").run(s)
    }
    fn put_lineage(&self, s: &str, l: &Lineage) -> Result<(), StoreError> {
        self.write("put_lineage").put_lineage(s, l)
    }
    fn last_step(&self, s: &str) -> Result<Option<u64>, StoreError> {
        self.read("last_step").last_step(s)
    }
    fn event(&self, s: &str, step: u64) -> Result<Option<Event>, StoreError> {
        self.read("event").event(s, step)
    }
    fn event_again(&self, s: &str, step: u64) -> Result<Option<Event>, StoreError> {
        self.read("event_again").event_again(s, step)
    }
    fn event_stored(&self, s: &str, step: u64) -> Result<Option<crate::StoredEvent>, StoreError> {
        self.read("event_stored").event_stored(s, step)
    }
    fn commit(&self) -> Result<(), StoreError> {
        self.write("commit").commit()
    }
    fn issues(&self) -> Result<IssueTable, StoreError> {
        self.read("issues").issues()
    }
    fn put_issues(&self, t: &IssueTable) -> Result<(), StoreError> {
        self.write("put_issues").put_issues(t)
    }
}
