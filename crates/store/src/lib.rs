//! Where recordings live: sessions, events by (session, step), bodies by blake3.
//!
//! The proxy and the commands talk to the [`Store`] trait only, so another embedded
//! engine (or a shared object store) can take sled's place without touching them.
//! Bodies are content-addressed: a body is written once however often it is seen.
//! Large bodies are written in segments while they stream, so recording a 5 MB
//! download never holds the whole of it in memory.

#![forbid(unsafe_code)]

pub mod check;
mod issues;
pub mod journal;
pub mod lost;
pub mod noted;
mod pack;
mod page_cache;
pub mod recording;
mod sled_store;
pub mod space;
pub mod tape;
pub mod tape_files;
#[cfg(test)]
mod testing;
pub mod tree;

pub use issues::{IssueRecord, IssueStatus, IssueTable};
pub use sled_store::{EventDamage, SledStore};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use thiserror::Error;

use tapedeck_model::exchange::{Event, SessionInfo};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the store at {path} is in use by another tapedeck process{holder}")]
    Locked { path: PathBuf, holder: String },
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: OpenError,
    },
    #[error("the store at {path} is damaged and sled cannot open it ({source}); run `tapedeck fsck --store {path}` to see what can be salvaged")]
    Damaged {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("the disk of the store at {} has {} free: a write of {} would take it under the {} the store keeps free (`record --min-free`, or TAPEDECK_MIN_FREE for any command)", path.display(), space::human(*free), space::human(*bytes), space::human(*floor))]
    DiskLow {
        path: PathBuf,
        free: u64,
        bytes: u64,
        floor: u64,
    },
    #[error("cannot {action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store I/O failed: {0}")]
    Write(#[from] tapedeck_model::secure_fs::WriteError),
    #[error("cannot encode {what} for the store: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the issues table in {path} is unreadable: {source}")]
    Issues {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("blob {0} is damaged (its content does not match its blake3; cut by a crash?)")]
    DamagedBlob(String),
    #[error("store flush failed: {0}")]
    Flush(#[source] std::sync::Arc<FlushError>),
    #[error("the store's commit thread stopped")]
    CommitStopped,
    #[error("the store's flush has not finished in {} s (sled waits on a write of its log that failed: a full disk?); what was recorded in the last moments may not be durable: `tapedeck fsck` checks the store", .0.as_secs())]
    FlushStuck(std::time::Duration),
    #[error("body {0} is missing from the store")]
    MissingBody(String),
    #[error("a large body ended with {taken} of its segments handed out but only {stored} stored; it is not recorded (a bug in tapedeck: please report it)")]
    SegmentsOutOfOrder { taken: usize, stored: usize },
    #[error("a segment of a large body could not be stored: {0}")]
    SegmentWrite(String),
    #[error("a manifest of {count} segments whose chaining values do not make the body's blake3 {hash} was refused (a bug in tapedeck: please report it)")]
    BadManifest { hash: String, count: usize },
    #[error(transparent)]
    TapeBody(#[from] crate::tape_files::BodyFileError),
    #[error("step {step} of session {session} is no longer in the store")]
    MissingEvent { session: String, step: u64 },
    #[error("session {session} ends at step {last}, past where its steps can go on (an edited tape?); record into another --session")]
    StepsExhausted { session: String, last: u64 },
    #[error("step {step} of session {session}: {problem}")]
    DamagedEvent {
        session: String,
        step: u64,
        #[source]
        problem: EventDamage,
    },
    #[error("no session named {0:?} in the store (run `tapedeck sessions` to list them)")]
    NoSession(String),
}

/// Why a store could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("{0}")]
    Dir(#[source] std::io::Error),
    #[error("{0}")]
    Sled(#[source] sled::Error),
    #[error("it was written in store format {found:?}; this tapedeck reads {reads:?} (export its sessions with the tapedeck that wrote it)")]
    Format { found: String, reads: &'static str },
    #[error("cannot start the commit thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Why a group commit failed (shared by every writer that waited for it).
#[derive(Debug, Error)]
pub enum FlushError {
    #[error("cannot sync {path}: {source}")]
    Sync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Sled(#[source] sled::Error),
    #[error("cannot write the event journal: {0}")]
    Journal(#[source] std::io::Error),
}

/// The storage engine behind tapedeck. Implementations must be safe to share between
/// the proxy's tasks; writes become durable at the next [`Store::commit`] or group
/// commit, whichever comes first.
pub trait Store: Send + Sync + 'static {
    /// Stores bytes under their blake3 (idempotent).
    fn put_blob(&self, hash: &blake3::Hash, data: &[u8]) -> Result<(), StoreError>;
    /// Stores segment `index` of a large body under its chaining value in the body's
    /// blake3 tree ([`tree::segment_cv`]; idempotent).
    fn put_segment(&self, cv: &tree::SegmentCv, data: &[u8]) -> Result<(), StoreError> {
        self.put_blob(&blake3::Hash::from_bytes(*cv), data)
    }
    /// Stores a body made of previously stored segments (two or more, by their chaining
    /// values in order) under the whole body's blake3, which they must make
    /// ([`tree::tree_hash`]): a manifest they do not make is refused.
    fn put_manifest(
        &self,
        hash: &blake3::Hash,
        segments: &[tree::SegmentCv],
        len: u64,
    ) -> Result<(), StoreError>;
    fn has_body(&self, hash_hex: &str) -> Result<bool, StoreError>;
    /// The whole body, segments joined.
    fn get_body(&self, hash_hex: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// [`Store::get_body`] as shared bytes: a body kept in sled is its value, checked and
    /// not copied.
    fn body_bytes(&self, hash_hex: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        Ok(self.get_body(hash_hex)?.map(bytes::Bytes::from))
    }
    /// The segments of a body stored in parts, each named so that [`Store::get_body`]
    /// reads it and checks it (a segment's chaining value and place, [`tree::part_name`];
    /// in a store written before format 4, its blake3); `None` for a body stored whole.
    /// Lets a large body be read piece by piece.
    fn body_segments(&self, hash_hex: &str) -> Result<Option<Vec<String>>, StoreError>;
    /// Writes an event whose bodies are already stored, and schedules a group commit.
    fn put_event(&self, session: &str, event: &Event) -> Result<(), StoreError>;
    /// Writes an event with small bodies of its own (blake3 and bytes, each at most
    /// [`INLINE_MAX`]), which a store may keep inside the event's value rather than under
    /// their blake3: one write where there were three, and no page of the bodies' tree
    /// touched at random. Readers find them with [`Store::event_body`] through the
    /// event's step ([`BodyRef::at`](tapedeck_model::exchange::BodyRef::at)). By default,
    /// each is stored under its blake3 first.
    fn put_event_with(
        &self,
        session: &str,
        event: &Event,
        bodies: &[(blake3::Hash, bytes::Bytes)],
    ) -> Result<(), StoreError> {
        for (h, data) in bodies {
            self.put_blob(h, data)?;
        }
        self.put_event(session, event)
    }
    /// [`Store::put_event`] into the free space the store keeps on its disk (see
    /// [`space`]): for the small event that marks where a session stopped being stored
    /// because the disk ran low. A store with no floor writes it as any other.
    fn put_event_past_floor(&self, session: &str, event: &Event) -> Result<(), StoreError> {
        self.put_event(session, event)
    }
    /// A body of event `step` of `session`: from inside the event when it is kept there
    /// (checked against its blake3), else as [`Store::body_bytes`] finds it.
    fn event_body(
        &self,
        session: &str,
        step: u64,
        hash_hex: &str,
    ) -> Result<Option<bytes::Bytes>, StoreError> {
        let _ = (session, step);
        self.body_bytes(hash_hex)
    }
    /// [`Store::verify_body`] for a body of event `step` of `session`, wherever it is kept.
    fn verify_event_body(
        &self,
        session: &str,
        step: u64,
        hash_hex: &str,
    ) -> Result<BodyState, StoreError> {
        let _ = (session, step);
        self.verify_body(hash_hex)
    }
    /// A session's events in step order, with what could not be read. Damaged events and
    /// events whose bodies are missing are left out and listed.
    fn read_session(&self, session: &str) -> Result<SessionRead, StoreError> {
        let mut events = Vec::new();
        let mut read = self.scan_session(session, &mut |ev| events.push(ev))?;
        read.events = events;
        Ok(read)
    }
    /// [`Store::read_session`], handing each readable event to `keep` in step order
    /// instead of collecting them (the returned `events` is empty).
    fn scan_session(
        &self,
        session: &str,
        keep: &mut dyn FnMut(Event),
    ) -> Result<SessionRead, StoreError>;
    /// The steps of `session` the store's own account of its flushes lists, where it
    /// keeps one apart from the events (the sled store's journal): an event it lists that
    /// the store no longer has was lost under the store (see [`journal`]).
    fn journalled_steps(
        &self,
        session: &str,
    ) -> Result<Option<std::collections::BTreeSet<u64>>, StoreError> {
        let _ = session;
        Ok(None)
    }
    /// A session's readable events in step order; each one left out is logged.
    fn events(&self, session: &str) -> Result<Vec<Event>, StoreError> {
        let read = self.read_session(session)?;
        for d in read.damaged.iter().chain(&read.missing_bodies) {
            tracing::warn!("{session}: {d}; left out");
        }
        Ok(read.events)
    }
    /// Reads a whole body and checks it against its blake3 (every segment, then the whole).
    fn verify_body(&self, hash_hex: &str) -> Result<BodyState, StoreError>;
    fn sessions(&self) -> Result<Vec<SessionInfo>, StoreError>;
    fn session(&self, session: &str) -> Result<Option<SessionInfo>, StoreError>;
    /// Removes a session's events (bodies may be shared and stay).
    fn delete_session(&self, session: &str) -> Result<u64, StoreError>;
    /// Notes how the command recorded around a session (`record -- CMD`) ended.
    fn put_run(&self, session: &str, run: &RunInfo) -> Result<(), StoreError>;
    /// How the command recorded around a session ended; `None` for a session recorded
    /// by a daemon (or by a tapedeck that did not note it).
    fn run(&self, session: &str) -> Result<Option<RunInfo>, StoreError>;
    /// Notes the session a what-if fork or a rerun was made from (`sessions` lists it
    /// with the session's info).
    fn put_lineage(
        &self,
        session: &str,
        lineage: &tapedeck_model::session::Lineage,
    ) -> Result<(), StoreError>;
    /// The highest step stored for a session.
    fn last_step(&self, session: &str) -> Result<Option<u64>, StoreError>;
    /// One event of a session, read back (a replay keeps only what matching needs and
    /// reads the event it serves).
    fn event(&self, session: &str, step: u64) -> Result<Option<Event>, StoreError>;
    /// [`Store::event`] for an event this process has already read once with its checksum
    /// checked (a replay indexes every event before it serves one, and the store is its
    /// alone meanwhile): read without checking it again.
    fn event_again(&self, session: &str, step: u64) -> Result<Option<Event>, StoreError> {
        self.event(session, step)
    }
    /// [`Store::event_again`] without decoding, in one read: the event's JSON and the
    /// bodies its value keeps inside, for [`recording::Recording::decode_event`] and
    /// [`StoredEvent::body`] (a replay's read-ahead reads what serving an event needs
    /// once, off the runtime). By default, the event encoded again and no body inside.
    fn event_stored(&self, session: &str, step: u64) -> Result<Option<StoredEvent>, StoreError> {
        let Some(ev) = self.event_again(session, step)? else {
            return Ok(None);
        };
        serde_json::to_vec(&ev)
            .map(|j| {
                Some(StoredEvent {
                    json: j.into(),
                    inside: Vec::new(),
                })
            })
            .map_err(|source| StoreError::Encode {
                what: "an event",
                source,
            })
    }
    /// Blocks until everything written so far is durable.
    fn commit(&self) -> Result<(), StoreError>;
    /// The failure signatures seen across sessions (empty in a store that has none).
    fn issues(&self) -> Result<IssueTable, StoreError>;
    /// Replaces the issues table.
    fn put_issues(&self, table: &IssueTable) -> Result<(), StoreError>;
}

/// Something wrong with one event of a session (or, with no step, with the rest of it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Damage {
    pub step: Option<u64>,
    pub problem: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.step {
            Some(step) => write!(f, "step {step}: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

/// A session as read from the store.
#[derive(Debug, Default)]
pub struct SessionRead {
    pub events: Vec<Event>,
    /// Events that are unreadable or fail their checksum (replay refuses these).
    pub damaged: Vec<Damage>,
    /// Events whose bodies were never stored (a crash between the two writes).
    pub missing_bodies: Vec<Damage>,
    /// Events written before events carried a checksum.
    pub without_checksum: u64,
    /// The blake3 of each readable event's JSON, by step (what the journal lists).
    pub sums: std::collections::HashMap<u64, blake3::Hash>,
}

/// A body as [`Store::verify_body`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyState {
    Sound,
    Missing,
    Damaged(String),
}

/// Marks with the event's step ([`BodyRef::at`](tapedeck_model::exchange::BodyRef::at))
/// the request and response bodies of `ev` that `inside` says its store keeps inside it.
pub(crate) fn mark_inside(
    ev: &mut Event,
    inside: impl Fn(&tapedeck_model::exchange::BodyRef) -> bool,
) {
    let step = ev.step;
    let response = ev.response.as_mut().map(|r| &mut r.body);
    for body in std::iter::once(&mut ev.request.body).chain(response) {
        if inside(body) {
            body.at = Some(step);
        }
    }
}

/// An event as the store keeps it, read once and not decoded ([`Store::event_stored`]).
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its JSON (checked when the session was first read, not again).
    pub json: bytes::Bytes,
    /// The bodies kept inside its value: the blake3 each was stored under, and its bytes
    /// (slices of the one value read, not copied, not yet checked).
    pub inside: Vec<([u8; 32], bytes::Bytes)>,
}

impl StoredEvent {
    /// Whether body `hash_hex` is kept inside this event.
    pub fn holds(&self, hash_hex: &str) -> bool {
        self.find(hash_hex).is_some()
    }

    /// Body `hash_hex` when it is kept inside this event, checked against its blake3 as
    /// [`Store::event_body`] checks it; `None` when it is kept elsewhere.
    pub fn body(&self, hash_hex: &str) -> Option<Result<bytes::Bytes, StoreError>> {
        let (h, data) = self.find(hash_hex)?;
        Some(if blake3::hash(data).as_bytes() == h {
            Ok(data.clone())
        } else {
            Err(StoreError::DamagedBlob(hash_hex.to_string()))
        })
    }

    fn find(&self, hash_hex: &str) -> Option<&([u8; 32], bytes::Bytes)> {
        let k = sled_store::parse_hex(hash_hex)?;
        self.inside.iter().find(|(h, _)| *h == k)
    }
}

/// Body `hash_hex` of event `step` of `session`, wherever the store keeps it; empty when
/// it cannot be read (for what only looks at a body: a trace, a tool's name).
pub fn event_body_or_empty(store: &dyn Store, session: &str, step: u64, hash_hex: &str) -> Vec<u8> {
    store
        .event_body(session, step, hash_hex)
        .ok()
        .flatten()
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

/// The largest body a store keeps inside its event's value ([`Store::put_event_with`]):
/// an LLM call's request and answer nearly always; larger bodies are stored under their
/// blake3 (deduplicated), in segments or files above [`FILE_BLOB_MIN`].
pub const INLINE_MAX: usize = 64 << 10;

/// Bodies up to this size are kept whole in memory while recording (for JSON redaction
/// and canonical matching); beyond it they are written in segments as they stream.
pub const WHOLE_BODY_LIMIT: usize = 1 << 20;
/// JSON bodies are kept whole up to this size so their secrets can be redacted, and
/// multipart bodies so they match by their parts.
pub const WHOLE_JSON_LIMIT: usize = 16 << 20;
/// The size of each part of a body written in segments (the last may be shorter).
pub const SEGMENT: usize = 256 << 10;
/// What a segment's buffer is made with: a segment and what a writer that keeps to
/// [`BodyWriter::room`] may add past it (bytes a scrubber held back from before).
const SEGMENT_ROOM: usize = SEGMENT + (64 << 10);
/// The most [`BodyWriter::expect`] makes room for ahead of the bytes (a `Content-Length`
/// is the sender's word), and a byte: as much as a body of any type is kept whole.
pub const EXPECT_MAX: usize = WHOLE_BODY_LIMIT;
/// Blobs at least this large are files beside the database, not sled values.
pub const FILE_BLOB_MIN: usize = 64 << 10;

/// How the error of an exchange whose body the recorder could not store begins (a full
/// disk): the traffic went through whole, the store holds less. Such an event is read
/// as damaged (see [`unstored`]): replay cannot serve what it does not have.
pub const UNSTORED: &str = "store write failed";

/// The error an exchange keeps when the store could not take a body of it (`e`).
pub fn unstored_error(e: impl std::fmt::Display) -> String {
    format!("{UNSTORED}: {e}")
}

/// The damage of `ev` when a body of it was never stored: it cannot be served as
/// recorded.
pub fn unstored(ev: &tapedeck_model::exchange::Event) -> Option<Damage> {
    let e = ev
        .error
        .as_ref()
        .filter(|e| e.message.starts_with(UNSTORED))?;
    Some(Damage {
        step: Some(ev.step),
        problem: format!(
            "it could not be stored whole when it was recorded ({}); record it again",
            e.message
        ),
    })
}

/// How much of a body with this content type is kept whole (JSON, or no type at all,
/// may need redaction and canonical matching; a multipart body is matched by its parts).
/// Record and replay both use this rule, so a body's canonical form is computed the same
/// way on both sides.
pub fn keep_limit(content_type: Option<&str>) -> usize {
    match content_type {
        None => WHOLE_JSON_LIMIT,
        Some(ct) if tapedeck_model::exchange::is_json_content_type(ct) => WHOLE_JSON_LIMIT,
        Some(ct) if tapedeck_model::exchange::canonical::multipart_boundary(ct).is_some() => {
            WHOLE_JSON_LIMIT
        }
        Some(_) => WHOLE_BODY_LIMIT,
    }
}

/// Writes one body as it streams: kept whole while small, then in segments, each
/// hashed once: its chaining value in the body's blake3 tree names it, and the body's
/// address is made from those ([`tree`]).
pub struct BodyWriter {
    whole: Vec<u8>,
    keep_limit: usize,
    /// The chaining values of the segments stored so far (when not deferred).
    segments: Vec<tree::SegmentCv>,
    pending: Vec<u8>,
    len: u64,
    spilled: bool,
    /// How many segments are finished (stored, ready or held back).
    finished: usize,
    /// The first segment, held back until a second one is finished: a body of one
    /// segment is addressed by its own blake3, not as a part of a tree.
    first: Option<bytes::Bytes>,
    /// With [`BodyWriter::defer`]: finished segments not handed out yet, and where their
    /// chaining values are gathered by whoever stores them.
    ready: Vec<bytes::Bytes>,
    deferred: Option<Arc<Mutex<Hashing>>>,
    /// A multipart body's parts, read from the bytes written once it spills (see
    /// [`BodyWriter::read_parts`]).
    parts: Option<Box<tapedeck_model::exchange::canonical::MultipartDigest>>,
}

/// A deferred body's chaining values, gathered as its segments are stored (in order).
#[derive(Default)]
struct Hashing {
    segments: Vec<tree::SegmentCv>,
    /// Segments handed out by [`BodyWriter::take_ready`] (those hashed are `segments`).
    handed: usize,
    /// The first segment write that failed: the body is then not recorded.
    failed: Option<String>,
}

/// Finished segments of a deferred body, to be stored off the async runtime's threads
/// (see [`BodyWriter::defer`]). Each is hashed where it is stored, once: the costliest
/// work per byte of a large body, which thus leaves the thread that forwards the body.
#[derive(Default)]
pub struct ReadySegments {
    parts: Vec<bytes::Bytes>,
    hashing: Option<Arc<Mutex<Hashing>>>,
}

impl ReadySegments {
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Hashes and stores the segments. Segments taken from one body must be stored in the
    /// order they were taken, before [`BodyWriter::finish`]: a segment's chaining value
    /// depends on its place. Every segment is hashed even when a write fails, so the
    /// body's hash stays true; the first failure is returned, and `finish` reports it too
    /// (whoever waits for this call or not).
    pub fn store(self, store: &dyn Store) -> Result<(), StoreError> {
        let Some(hashing) = self.hashing else {
            return Ok(());
        };
        let lock = || hashing.lock().unwrap_or_else(|p| p.into_inner());
        let mut failed = None;
        for part in &self.parts {
            let index = lock().segments.len();
            // Hashed without the lock: the thread that hands segments out takes it.
            let cv = tree::segment_cv(part, index);
            {
                let mut g = lock();
                if g.segments.len() != index {
                    g.failed
                        .get_or_insert_with(|| "segments of one body stored at once".into());
                }
                g.segments.push(cv);
            }
            if failed.is_none() {
                failed = store.put_segment(&cv, part).err();
                if let Some(e) = &failed {
                    lock().failed.get_or_insert_with(|| e.to_string());
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// What a finished [`BodyWriter`] holds.
pub enum WrittenBody {
    /// Still in memory; the caller redacts it and stores it with [`store_whole`].
    Whole(Vec<u8>),
    /// Already in the store.
    Stored { hash: blake3::Hash, len: u64 },
}

impl BodyWriter {
    pub fn new(keep_limit: usize) -> BodyWriter {
        BodyWriter {
            whole: Vec::new(),
            keep_limit,
            segments: Vec::new(),
            pending: Vec::new(),
            len: 0,
            spilled: false,
            finished: 0,
            first: None,
            ready: Vec::new(),
            deferred: None,
            parts: None,
        }
    }

    /// Leaves each finished segment for [`BodyWriter::take_ready`], unhashed, instead of
    /// hashing and storing it at once, so a caller on an async runtime can do both on
    /// another thread. [`BodyWriter::finish`] stores whatever is still waiting.
    pub fn defer(&mut self) {
        if self.deferred.is_none() {
            self.deferred = Some(Arc::default());
        }
    }

    /// The finished segments not stored yet (with [`BodyWriter::defer`]).
    pub fn take_ready(&mut self) -> ReadySegments {
        let Some(hashing) = &self.deferred else {
            return ReadySegments::default();
        };
        if self.ready.is_empty() {
            return ReadySegments::default();
        }
        let parts = std::mem::take(&mut self.ready);
        hashing.lock().unwrap_or_else(|p| p.into_inner()).handed += parts.len();
        ReadySegments {
            parts,
            hashing: Some(hashing.clone()),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Reads a multipart body's parts as it is written, once it is too large to keep
    /// whole (a body kept whole is read whole): a request keyed by its parts.
    pub fn read_parts(&mut self, digest: tapedeck_model::exchange::canonical::MultipartDigest) {
        self.parts = Some(Box::new(digest));
    }

    /// The parts of a multipart body written in segments, when it is one (call after
    /// the last write, before [`BodyWriter::finish`]).
    pub fn take_parts(
        &mut self,
    ) -> Option<Vec<tapedeck_model::exchange::canonical::CanonicalPart>> {
        match self.spilled {
            true => self.parts.take()?.finish(),
            false => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn write(&mut self, store: &dyn Store, data: &[u8]) -> Result<(), StoreError> {
        self.write_with(store, |buf| buf.extend_from_slice(data))
    }

    /// Makes room at once for a body said to be `len` bytes long (its `Content-Length`),
    /// as far as it is kept whole and up to [`EXPECT_MAX`]: growing it a piece at a time
    /// moved a large body's first MiB a few times over (1.4 % of its recording's CPU).
    pub fn expect(&mut self, len: u64) {
        if self.spilled || !self.whole.is_empty() {
            return;
        }
        // The byte over the limit too: the body spills from where it is.
        let room = len.min(self.keep_limit.min(EXPECT_MAX) as u64 + 1);
        self.whole.reserve_exact(room as usize);
    }

    /// How many more bytes the segment being filled takes (while the body is still kept
    /// whole, the bytes that take it over the limit). A writer that gives
    /// [`BodyWriter::write_with`] no more than this at a time has its bytes land in their
    /// segment and stay there.
    pub fn room(&self) -> usize {
        if self.spilled {
            SEGMENT.saturating_sub(self.pending.len())
        } else {
            // Up to the first byte over the limit: the body is then in segments.
            (self.keep_limit + 1)
                .saturating_sub(self.whole.len())
                .max(1)
        }
    }

    /// Writes the bytes `fill` appends to the buffer it is given: they land where they are
    /// kept, without a copy in between (the recorder's scrubber writes its output here;
    /// copying it again cost a large body's recording 3 % of its CPU). Bytes past the
    /// segment's end are moved to the next one.
    pub fn write_with(
        &mut self,
        store: &dyn Store,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), StoreError> {
        let buf = if self.spilled {
            &mut self.pending
        } else {
            &mut self.whole
        };
        let before = buf.len();
        fill(buf);
        self.len += (buf.len() - before) as u64;
        if self.spilled {
            if let Some(d) = self.parts.as_mut() {
                d.feed(&self.pending[before..]);
            }
        } else {
            if self.whole.len() <= self.keep_limit {
                return Ok(());
            }
            if let Some(d) = self.parts.as_mut() {
                d.feed(&self.whole);
            }
            // Over the limit: what was kept whole becomes the first segments.
            self.spilled = true;
            self.pending = std::mem::take(&mut self.whole);
            // Made room for its first segment at once rather than grown a few times.
            self.pending
                .reserve(SEGMENT_ROOM.saturating_sub(self.pending.len()));
        }
        if self.pending.len() < SEGMENT {
            return Ok(());
        }
        let full = self.pending.len() / SEGMENT * SEGMENT;
        let mut next = Vec::with_capacity(SEGMENT_ROOM);
        next.extend_from_slice(&self.pending[full..]);
        self.pending.truncate(full);
        // Several segments at once (a body kept whole until it spilled) share the buffer.
        let done = bytes::Bytes::from(std::mem::replace(&mut self.pending, next));
        (0..full)
            .step_by(SEGMENT)
            .try_for_each(|at| self.flush_segment(store, done.slice(at..at + SEGMENT)))
    }

    fn flush_segment(&mut self, store: &dyn Store, data: bytes::Bytes) -> Result<(), StoreError> {
        let index = self.finished;
        self.finished += 1;
        if index == 0 {
            self.first = Some(data);
            return Ok(());
        }
        if let Some(first) = self.first.take() {
            self.put_segment(store, first, 0)?;
        }
        self.put_segment(store, data, index)
    }

    fn put_segment(
        &mut self,
        store: &dyn Store,
        data: bytes::Bytes,
        index: usize,
    ) -> Result<(), StoreError> {
        if self.deferred.is_some() {
            self.ready.push(data);
        } else {
            let cv = tree::segment_cv(&data, index);
            store.put_segment(&cv, &data)?;
            self.segments.push(cv);
        }
        Ok(())
    }

    pub fn finish(mut self, store: &dyn Store) -> Result<WrittenBody, StoreError> {
        if !self.spilled {
            return Ok(WrittenBody::Whole(self.whole));
        }
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.flush_segment(store, last.into())?;
        }
        if let Some(only) = self.first.take() {
            // One segment (a body over a keep limit below a segment): stored whole.
            let hash = store_whole(store, &only)?;
            return Ok(WrittenBody::Stored {
                hash,
                len: self.len,
            });
        }
        // A deferred body's segments not taken yet, the last one with them.
        let rest = self.take_ready();
        let segments = match self.deferred.take() {
            None => self.segments,
            Some(hashing) => {
                rest.store(store)?;
                let mut g = hashing.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(e) = g.failed.take() {
                    return Err(StoreError::SegmentWrite(e));
                }
                if g.segments.len() != g.handed {
                    // A segment taken earlier is not stored yet: the body's hash would
                    // leave it out. Refused rather than stored under a wrong address.
                    return Err(StoreError::SegmentsOutOfOrder {
                        taken: g.handed,
                        stored: g.segments.len(),
                    });
                }
                std::mem::take(&mut g.segments)
            }
        };
        let hash = tree::tree_hash(&segments).ok_or_else(|| StoreError::BadManifest {
            hash: String::new(),
            count: segments.len(),
        })?;
        store.put_manifest(&hash, &segments, self.len)?;
        Ok(WrittenBody::Stored {
            hash,
            len: self.len,
        })
    }
}

/// Stores a whole body and returns its hash.
pub fn store_whole(store: &dyn Store, data: &[u8]) -> Result<blake3::Hash, StoreError> {
    let h = blake3::hash(data);
    store.put_blob(&h, data)?;
    Ok(h)
}

/// How the command a session was recorded around (`record -- CMD`) ended: regression
/// cases expect the same of a replayed run.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunInfo {
    pub exit_code: i32,
}

/// Where a running daemon says it can be reached, written beside its store.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct DaemonInfo {
    pub pid: u32,
    pub listen: String,
    pub mode: String,
}

pub const DAEMON_FILE: &str = "daemon.json";

pub fn read_daemon_info(dir: &std::path::Path) -> Option<DaemonInfo> {
    let text = std::fs::read_to_string(dir.join(DAEMON_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_writer_stores_every_segment_taken_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(SEGMENT * 3 + 1000)).map(|i| (i % 251) as u8).collect();
        let mut w = BodyWriter::new(1000);
        w.defer();
        w.write(&store, &data[..SEGMENT * 2]).unwrap();
        // Segments are left for the caller, not stored.
        let ready = w.take_ready();
        assert_eq!(ready.parts.len(), 2);
        let first = tree::part_name(&tree::segment_cv(&ready.parts[0], 0), 0);
        assert!(store.get_body(&first).unwrap().is_none());
        ready.store(&store).unwrap();
        assert_eq!(store.get_body(&first).unwrap().unwrap(), data[..SEGMENT]);
        w.write(&store, &data[SEGMENT * 2..]).unwrap();
        let WrittenBody::Stored { hash, len } = w.finish(&store).unwrap() else {
            panic!("kept whole");
        };
        assert_eq!(len, data.len() as u64);
        // Hashed where the segments were stored, the address is still the body's blake3.
        assert_eq!(hash, blake3::hash(&data));
        assert_eq!(store.get_body(&hash.to_hex()).unwrap().unwrap(), data);
    }

    /// However the body comes (pieces that straddle a segment's end, one piece longer
    /// than two segments, the spill from a whole body in the middle of a piece), deferred
    /// or not, its segments are its 256 KiB slices in order and its address its blake3.
    #[test]
    fn segments_are_the_bodys_slices_whatever_the_pieces() {
        let data: Vec<u8> = (0..(SEGMENT * 4 + 777)).map(|i| (i % 253) as u8).collect();
        let want: Vec<String> = data
            .chunks(SEGMENT)
            .enumerate()
            .map(|(i, s)| tree::part_name(&tree::segment_cv(s, i), i))
            .collect();
        let cuts = [
            vec![100, 70_000, SEGMENT * 2 + 5, 1, SEGMENT - 3],
            vec![SEGMENT - 1, 2, SEGMENT, SEGMENT + 11],
            vec![data.len()],
        ];
        // A `Content-Length` said beforehand, true or not, changes nothing stored.
        let said = [None, Some(data.len() as u64), Some(10), Some(u64::MAX)];
        for (deferred, said) in [false, true]
            .into_iter()
            .flat_map(|d| said.iter().map(move |s| (d, s)))
        {
            for cut in &cuts {
                let dir = tempfile::tempdir().unwrap();
                let store = SledStore::open(dir.path()).unwrap();
                let mut w = BodyWriter::new(64 << 10);
                if deferred {
                    w.defer();
                }
                if let Some(len) = *said {
                    w.expect(len);
                }
                let mut at = 0usize;
                for n in cut.iter().copied().chain([usize::MAX]) {
                    let end = at.saturating_add(n).min(data.len());
                    let piece = &data[at..end];
                    w.write_with(&store, |buf| buf.extend_from_slice(piece))
                        .unwrap();
                    at = end;
                    w.take_ready().store(&store).unwrap();
                }
                let WrittenBody::Stored { hash, len } = w.finish(&store).unwrap() else {
                    panic!("kept whole");
                };
                assert_eq!((hash, len), (blake3::hash(&data), data.len() as u64));
                let segments = store.body_segments(&hash.to_hex()).unwrap().unwrap();
                assert_eq!(
                    segments, want,
                    "deferred {deferred}, {said:?}, pieces {cut:?}"
                );
                assert_eq!(store.get_body(&hash.to_hex()).unwrap().unwrap(), data);
                for (name, slice) in segments.iter().zip(data.chunks(SEGMENT)) {
                    assert_eq!(store.get_body(name).unwrap().unwrap(), slice);
                }
                assert_eq!(store.verify_body(&hash.to_hex()).unwrap(), BodyState::Sound);
            }
        }
    }

    /// A body that goes over a keep limit below a segment and ends within one segment is
    /// stored whole under its blake3 (a tree needs two segments); one a byte longer is a
    /// tree of two.
    #[test]
    fn a_body_of_one_segment_is_stored_whole_and_one_of_two_as_a_tree() {
        for (len, parts) in [(SEGMENT, None), (SEGMENT - 5, None), (SEGMENT + 1, Some(2))] {
            for deferred in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let store = SledStore::open(dir.path()).unwrap();
                let data: Vec<u8> = (0..len).map(|i| (i % 241) as u8).collect();
                let mut w = BodyWriter::new(1000);
                if deferred {
                    w.defer();
                }
                w.write(&store, &data[..SEGMENT / 2]).unwrap();
                w.take_ready().store(&store).unwrap();
                w.write(&store, &data[SEGMENT / 2..]).unwrap();
                w.take_ready().store(&store).unwrap();
                let WrittenBody::Stored { hash, .. } = w.finish(&store).unwrap() else {
                    panic!("kept whole");
                };
                assert_eq!(hash, blake3::hash(&data), "{len}");
                let segments = store.body_segments(&hash.to_hex()).unwrap();
                assert_eq!(segments.map(|s| s.len()), parts, "{len}");
                assert_eq!(store.get_body(&hash.to_hex()).unwrap().unwrap(), data);
                assert_eq!(store.verify_body(&hash.to_hex()).unwrap(), BodyState::Sound);
            }
        }
    }

    /// A manifest whose chaining values do not make the hash it is stored under is a bug
    /// of its writer: refused, nothing stored.
    #[test]
    fn a_manifest_that_does_not_make_its_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let data = vec![9u8; SEGMENT * 2];
        let cvs = [
            tree::segment_cv(&data[..SEGMENT], 0),
            tree::segment_cv(&data[SEGMENT..], 1),
        ];
        for (i, cv) in cvs.iter().enumerate() {
            store
                .put_segment(cv, &data[i * SEGMENT..][..SEGMENT])
                .unwrap();
        }
        let wrong = blake3::hash(b"another body");
        let err = store
            .put_manifest(&wrong, &cvs, data.len() as u64)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::BadManifest { count: 2, .. }),
            "{err}"
        );
        assert!(!store.has_body(&wrong.to_hex()).unwrap());
        // Their order is part of it too.
        let swapped = [cvs[1], cvs[0]];
        let right = blake3::hash(&data);
        assert!(store
            .put_manifest(&right, &swapped, data.len() as u64)
            .is_err());
        store.put_manifest(&right, &cvs, data.len() as u64).unwrap();
        assert_eq!(store.get_body(&right.to_hex()).unwrap().unwrap(), data);
    }

    #[test]
    fn a_segment_write_that_failed_unheard_still_fails_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        // Segments are files under `blobs/`: a file in its place makes every write fail.
        let blobs = dir.path().join("blobs");
        let _ = std::fs::remove_dir_all(&blobs);
        std::fs::write(&blobs, b"not a directory").unwrap();
        let data = vec![3u8; SEGMENT * 2];
        let mut w = BodyWriter::new(10);
        w.defer();
        w.write(&store, &data).unwrap();
        // Whoever stored them did not wait to hear how it went (a dropped exchange).
        let _ = w.take_ready().store(&store);
        let err = w.finish(&store).err().expect("the body is not recorded");
        assert!(matches!(err, StoreError::SegmentWrite(_)), "{err}");
        assert!(err.to_string().contains("blobs"), "{err}");
    }

    #[test]
    fn a_deferred_body_whose_taken_segment_was_never_stored_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let data = vec![7u8; SEGMENT * 2 + 10];
        let mut w = BodyWriter::new(10);
        w.defer();
        w.write(&store, &data).unwrap();
        let lost = w.take_ready();
        assert!(!lost.is_empty());
        // Finishing before those segments are stored would hash the body without them
        // (the tail, taken and stored by `finish` itself, is the one stored).
        let err = w.finish(&store).err().expect("refused");
        assert!(
            matches!(
                err,
                StoreError::SegmentsOutOfOrder {
                    taken: 3,
                    stored: 1
                }
            ),
            "{err}"
        );
        drop(lost);
    }
}
