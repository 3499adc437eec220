//! The default store: an embedded sled 0.34.7 database in the store directory.
//!
//! Writers apply their own inserts (sled is safe to share); durability is one committer
//! thread that calls the blocking `flush()` for everything written since its last flush,
//! then wakes whoever waits. `flush_async` is never called: concurrent calls deadlock in
//! sled 0.34 (sled issue 1308). A crash keeps a prefix of the writes, and each event is
//! written after its bodies, so a surviving event never points at a missing body.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::journal::{Entry, JournalWriter};
use super::{
    BodyState, DaemonInfo, Damage, FlushError, IssueTable, OpenError, RunInfo, SessionRead, Store,
    StoreError,
};
use crate::pack::{Loc, TAG_PACKED};
use tapedeck_model::exchange::{Event, SessionInfo};
use tapedeck_model::session::Lineage;

const TAG_BLOB: u8 = 0;
const FORMAT_KEY: &[u8] = b"tapedeck-store-format";
/// 2: events carry a checksum (see [`encode_event`]). 3: an event may carry its small
/// bodies inside its value ([`EVENT_INLINE`]). 4: a large body's segments are named by
/// their chaining values in its blake3 tree ([`TAG_TREE`]). A store of an older format
/// is read as it is and marked 4, because what this tapedeck adds to it an older one
/// cannot read. 5: blobs above [`FILE_BLOB_MIN`] are appended to pack files, a sled value
/// ([`TAG_PACKED`]) saying where (see [`crate::pack`]); the files of older formats still
/// read.
const FORMAT: &str = "5";
const FORMAT_UPGRADABLE: &[&str] = &["1", "2", "3", "4"];
/// A body in segments, each named by its own blake3 (formats 1 to 3): this byte, the
/// body's length (u64, big-endian), the segments' hashes. Read, no longer written.
const TAG_MANIFEST: u8 = 1;
/// A body in segments, each named by its chaining value at its place in the body's
/// blake3 tree ([`crate::tree`]): this byte, the body's length (u64, big-endian), the
/// chaining values in order.
const TAG_TREE: u8 = 2;
/// An event value that starts with this byte carries the blake3 of its JSON (32 bytes)
/// before the JSON; older values are the bare JSON (they start with `{`).
const EVENT_SUMMED: u8 = 1;
/// An event value that carries bodies of its own: this byte, the blake3 of its JSON (32
/// bytes), the number of bodies (u32, big-endian), for each its blake3 (32 bytes) and
/// length (u32), then the bodies one after the other, then the JSON. The checksum covers
/// the JSON; each body is checked against its blake3 when it is read.
const EVENT_INLINE: u8 = 2;

/// An event's value taken apart (no copy).
struct EventValue<'a> {
    /// The blake3 the value says its JSON has, if it says one.
    sum: Option<&'a [u8]>,
    json: &'a [u8],
    /// The bodies kept inside: blake3 and where its bytes are in the value.
    bodies: Vec<(&'a [u8], std::ops::Range<usize>)>,
}

fn split_value(value: &[u8]) -> Result<EventValue<'_>, EventDamage> {
    match value.first() {
        Some(&EVENT_SUMMED) => {
            let (sum, json) = value
                .get(1..)
                .and_then(|v| v.split_at_checked(32))
                .ok_or(EventDamage::CutShort)?;
            Ok(EventValue {
                sum: Some(sum),
                json,
                bodies: Vec::new(),
            })
        }
        Some(&EVENT_INLINE) => {
            let u32_at = |at: usize| {
                value
                    .get(at..at + 4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(|b| u32::from_be_bytes(b) as usize)
                    .ok_or(EventDamage::CutShort)
            };
            let sum = value.get(1..33).ok_or(EventDamage::CutShort)?;
            let n = u32_at(33)?;
            let table = 37usize;
            let mut at = n
                .checked_mul(36)
                .and_then(|t| t.checked_add(table))
                .filter(|end| *end <= value.len())
                .ok_or(EventDamage::CutShort)?;
            let mut bodies = Vec::with_capacity(n);
            for i in 0..n {
                let entry = table + i * 36;
                let len = u32_at(entry + 32)?;
                let end = at
                    .checked_add(len)
                    .filter(|end| *end <= value.len())
                    .ok_or(EventDamage::CutShort)?;
                bodies.push((&value[entry..entry + 32], at..end));
                at = end;
            }
            Ok(EventValue {
                sum: Some(sum),
                json: &value[at..],
                bodies,
            })
        }
        Some(b'{') => Ok(EventValue {
            sum: None,
            json: value,
            bodies: Vec::new(),
        }),
        _ => Err(EventDamage::Format),
    }
}

/// Marks the bodies of `ev` that its value keeps inside with the event's step.
fn locate(ev: &mut Event, inline: &[(&[u8], std::ops::Range<usize>)]) {
    if inline.is_empty() {
        return;
    }
    crate::mark_inside(ev, |body| {
        parse_hex(&body.b3).is_some_and(|k| inline.iter().any(|(h, _)| *h == k.as_slice()))
    });
}

/// An event as stored: its JSON behind a checksum, so damage sled does not catch is
/// caught on reading.
fn encode_event(
    event: &Event,
    bodies: &[(&blake3::Hash, &[u8])],
) -> Result<(Vec<u8>, blake3::Hash), StoreError> {
    // The JSON is written in place after the header and the bodies (no copy of it),
    // and its blake3 filled in once it is there.
    let data: usize = bodies.iter().map(|(_, d)| d.len()).sum();
    let mut v = Vec::with_capacity(37 + bodies.len() * 36 + data + 2048);
    if bodies.is_empty() {
        v.push(EVENT_SUMMED);
        v.extend_from_slice(&[0; 32]);
    } else {
        v.push(EVENT_INLINE);
        v.extend_from_slice(&[0; 32]);
        v.extend_from_slice(&(bodies.len() as u32).to_be_bytes());
        for (h, d) in bodies {
            v.extend_from_slice(h.as_bytes());
            v.extend_from_slice(&(d.len() as u32).to_be_bytes());
        }
        for (_, d) in bodies {
            v.extend_from_slice(d);
        }
    }
    let json_at = v.len();
    serde_json::to_writer(&mut v, event).map_err(|source| StoreError::Encode {
        what: "an event",
        source,
    })?;
    let sum = blake3::hash(&v[json_at..]);
    v[1..33].copy_from_slice(sum.as_bytes());
    Ok((v, sum))
}

/// What is wrong with a stored event.
#[derive(Debug, thiserror::Error)]
pub enum EventDamage {
    #[error("the event is cut short")]
    CutShort,
    #[error("the event does not match its checksum (damaged on disk)")]
    Checksum,
    #[error("the event is not in a format tapedeck wrote")]
    Format,
    #[error("the event is unreadable: {0}")]
    Unreadable(#[source] serde_json::Error),
}

/// An event, its blake3 and whether it carried one, or what is wrong with it.
/// The bodies it keeps inside are marked with its step ([`BodyRef::at`]).
///
/// [`BodyRef::at`]: tapedeck_model::exchange::BodyRef::at
fn decode_event(value: &[u8]) -> Result<(Event, blake3::Hash, bool), EventDamage> {
    let parts = split_value(value)?;
    let actual = blake3::hash(parts.json);
    if parts.sum.is_some_and(|sum| sum != actual.as_bytes()) {
        return Err(EventDamage::Checksum);
    }
    let mut ev = from_json::<Event>(parts.json).map_err(EventDamage::Unreadable)?;
    locate(&mut ev, &parts.bodies);
    Ok((ev, actual, parts.sum.is_some()))
}

/// A value from JSON bytes, checked as UTF-8 once, whole, and then parsed as text:
/// `serde_json` would otherwise check each string on its own, which was a quarter of a
/// replay's time decoding events (they hold many short strings).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    json: &[u8],
) -> Result<T, serde_json::Error> {
    let text = std::str::from_utf8(json)
        .map_err(|e| <serde_json::Error as serde::de::Error>::custom(format!("not UTF-8: {e}")))?;
    serde_json::from_str(text)
}

/// `data`, when it is the content its blake3 `hash` names.
fn checked(hash: &[u8], data: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if blake3::hash(&data).as_bytes() != hash {
        return Err(StoreError::DamagedBlob(hex(hash)));
    }
    Ok(data)
}

/// The length and segments' chaining values of a [`TAG_TREE`] value `v` stored under
/// `k`, once they are checked to make `k` (a few compressions): a manifest damaged or
/// put in another's place is not read as if it were the body.
fn tree_manifest(k: &[u8; 32], v: &[u8]) -> Result<(u64, Vec<[u8; 32]>), StoreError> {
    let damaged = || StoreError::DamagedBlob(hex(k));
    let len = v
        .get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(damaged)?;
    let cvs: Vec<[u8; 32]> = v[9..]
        .chunks_exact(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok())
        .collect();
    match crate::tree::tree_hash(&cvs) {
        Some(h) if h.as_bytes() == k && (v.len() - 9).is_multiple_of(32) => Ok((len, cvs)),
        _ => Err(damaged()),
    }
}

/// The entries of `tree` under `prefix`, in order, each looked up on its own rather than
/// read on through an iterator, so that a scan of a long session is held to sled's cache.
/// sled 0.34 evicts a page only once its share of the cache has seen 64 accesses, and an
/// iterator makes one per leaf it enters (its 16 or so entries are read from the leaf in
/// hand): a scan of 53,000 events met no eviction at all and held every leaf it read in
/// memory until later reads evicted them (`replay --session` peaked at 210 MB, 91-103 MB
/// with this). A lookup per entry counts as an access of each page on its way.
fn evicting_scan(
    tree: &sled::Tree,
    prefix: Vec<u8>,
) -> impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + '_ {
    let mut last: Option<sled::IVec> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let next = match &last {
            None => tree.range(prefix.as_slice()..).next().transpose(),
            Some(k) => tree.get_gt(k),
        };
        match next {
            Ok(Some((k, v))) if k.starts_with(&prefix) => {
                last = Some(k.clone());
                Some(Ok((k, v)))
            }
            Ok(_) => {
                done = true;
                None
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

fn step_of(key: &[u8]) -> u64 {
    key.get(key.len().saturating_sub(8)..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
const ISSUES_KEY: &[u8] = b"table";

enum CommitMsg {
    Dirty,
    Barrier(mpsc::SyncSender<Result<(), Arc<FlushError>>>),
}

struct Committer {
    tx: Mutex<Option<mpsc::Sender<CommitMsg>>>,
    dirty: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Where blobs above [`FILE_BLOB_MIN`] go; what was appended since the last flush is
    /// fsynced before it.
    packs: crate::pack::Packs,
    /// sled's file, whose synced pages leave the page cache after each flush
    /// ([`crate::page_cache`]).
    sled_file: PathBuf,
    /// Events and deletions written since the last flush, journalled once it succeeds.
    journal_pending: Mutex<Vec<Entry>>,
    journal: JournalWriter,
    /// What the events written since the last flush add to their sessions' summaries:
    /// merged into `sessions` once per flush (one write per session, not one per event),
    /// and into every read of a summary meanwhile.
    info_pending: Mutex<HashMap<String, InfoDelta>>,
    sessions: sled::Tree,
}

/// Events added to a session since the last flush, summed.
#[derive(Clone, Copy)]
struct InfoDelta {
    events: u64,
    first_unix_ns: u64,
    last_unix_ns: u64,
    bytes: u64,
}

impl InfoDelta {
    fn of(event: &Event, bytes: u64) -> InfoDelta {
        InfoDelta {
            events: 1,
            first_unix_ns: event.timing.start_unix_ns,
            last_unix_ns: event.timing.end_unix_ns,
            bytes,
        }
    }

    fn add(&mut self, d: InfoDelta) {
        self.events += d.events;
        self.first_unix_ns = self.first_unix_ns.min(d.first_unix_ns);
        self.last_unix_ns = self.last_unix_ns.max(d.last_unix_ns);
        self.bytes += d.bytes;
    }

    /// The summary `info` (none yet for a new session) with these events added.
    fn onto(self, info: Option<SessionInfo>, session: &str) -> SessionInfo {
        let mut total = self;
        if let Some(i) = info {
            total.add(InfoDelta {
                events: i.events,
                first_unix_ns: i.first_unix_ns,
                last_unix_ns: i.last_unix_ns,
                bytes: i.bytes,
            });
        }
        SessionInfo {
            name: session.to_string(),
            events: total.events,
            first_unix_ns: total.first_unix_ns,
            last_unix_ns: total.last_unix_ns,
            bytes: total.bytes,
            lineage: None,
        }
    }
}

use super::FILE_BLOB_MIN;

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    bodies: sled::Tree,
    events: sled::Tree,
    sessions: sled::Tree,
    /// How the command of a `record -- CMD` session ended (JSON [`RunInfo`]); a tree of
    /// its own, so stores without it read as before.
    runs: sled::Tree,
    /// The issues table ([`super::IssueTable`], JSON under one key); a tree of its own, so
    /// stores without it read as before.
    issues: sled::Tree,
    /// Where a fork or a rerun came from (JSON [`Lineage`]), by session; a tree of its
    /// own, so stores without it read as before.
    lineage: sled::Tree,
    committer: Arc<Committer>,
    /// The free space its disk keeps (see [`crate::space`]).
    space: crate::space::Space,
    blobs: PathBuf,
}

fn event_key(session: &str, step: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(session.len() + 9);
    k.extend_from_slice(session.as_bytes());
    k.push(0);
    k.extend_from_slice(&step.to_be_bytes());
    k
}

fn session_prefix(session: &str) -> Vec<u8> {
    let mut k = session.as_bytes().to_vec();
    k.push(0);
    k
}

pub(crate) fn parse_hex(hash_hex: &str) -> Option<[u8; 32]> {
    blake3::Hash::from_hex(hash_hex).ok().map(|h| *h.as_bytes())
}

impl SledStore {
    /// Opens (creating if needed) the store in `dir`, for a process that records: sled's
    /// background thread compacts the file as sessions grow.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with(dir, true)
    }

    /// Opens the store for a process that mostly reads (replay, the read commands). Sled's
    /// background thread does not run: it would rewrite fragmented parts of the file while
    /// the store is only read (a replay would change the files of the store it replays,
    /// and its memory would rise and fall as pages are read in to be moved). Its cache is a
    /// quarter of a recorder's: such a process reads a session through once, in order, and
    /// sled keeps several times its nominal cache resident (a replay of 53,000 events is
    /// ready at 53-54 MB resident with 4 MiB, 62-63 MB with 16, at the same speed). Writes
    /// are as durable as with [`SledStore::open`]: the committer flushes them.
    pub fn open_to_read(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with(dir, false)
    }

    fn open_with(dir: &Path, compact: bool) -> Result<SledStore, StoreError> {
        tapedeck_model::secure_fs::private_dir(dir).map_err(|e| StoreError::Open {
            path: dir.to_path_buf(),
            source: OpenError::Dir(e),
        })?;
        let mut config = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(if compact { 16 << 20 } else { 4 << 20 });
        if !compact {
            config = config.flush_every_ms(None);
        }
        // A sled database dropped in this process can keep its file (and the file's lock)
        // open for a moment: sled's pool threads finish writing its last buffers after it
        // is gone. Opening it again meanwhile is refused as if another process held it
        // (seen when a test reopened a store at once), so the lock is asked for again for
        // up to a second before that is the answer. Not when a daemon says it holds the
        // store: the read commands then ask the daemon, at once.
        let started = std::time::Instant::now();
        let opened = loop {
            match config.open() {
                Err(e)
                    if is_lock_error(&e)
                        && started.elapsed() < Duration::from_secs(1)
                        && super::read_daemon_info(dir).is_none() =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r,
            }
        };
        let db = opened.map_err(|e| {
            // tapedeck always opens sled with the same persisted settings, so sled finding
            // its `conf` unusable (it says "unsupported") means that file is damaged.
            if matches!(
                e,
                sled::Error::Corruption { .. } | sled::Error::Unsupported(_)
            ) {
                StoreError::Damaged {
                    path: dir.to_path_buf(),
                    source: e,
                }
            } else if is_lock_error(&e) {
                let holder = super::read_daemon_info(dir)
                    .map(|d| {
                        format!(
                            " (tapedeck {} pid {} listening on {})",
                            d.mode, d.pid, d.listen
                        )
                    })
                    .unwrap_or_default();
                StoreError::Locked {
                    path: dir.to_path_buf(),
                    holder,
                }
            } else {
                StoreError::Open {
                    path: dir.to_path_buf(),
                    source: OpenError::Sled(e),
                }
            }
        })?;
        // The layout of the trees below; a store from another layout is refused, not misread.
        match db.get(FORMAT_KEY)? {
            None => {
                db.insert(FORMAT_KEY, FORMAT.as_bytes())?;
            }
            Some(v) if v.as_ref() == FORMAT.as_bytes() => {}
            Some(v) if FORMAT_UPGRADABLE.iter().any(|f| v.as_ref() == f.as_bytes()) => {
                db.insert(FORMAT_KEY, FORMAT.as_bytes())?;
            }
            Some(v) => {
                return Err(StoreError::Open {
                    path: dir.to_path_buf(),
                    source: OpenError::Format {
                        found: String::from_utf8_lossy(&v).into_owned(),
                        reads: FORMAT,
                    },
                })
            }
        }
        tapedeck_model::secure_fs::tighten_tree(dir);
        let bodies = db.open_tree("bodies")?;
        let events = db.open_tree("events")?;
        let sessions = db.open_tree("sessions")?;
        let runs = db.open_tree("runs")?;
        let issues = db.open_tree("issues")?;
        let lineage = db.open_tree("lineage")?;
        let committer = Arc::new(Committer {
            tx: Mutex::new(None),
            dirty: AtomicBool::new(false),
            thread: Mutex::new(None),
            packs: crate::pack::Packs::new(&dir.join("blobs")),
            sled_file: dir.join("db").join("db"),
            journal_pending: Mutex::new(Vec::new()),
            journal: JournalWriter::new(dir),
            info_pending: Mutex::new(HashMap::new()),
            sessions: sessions.clone(),
        });
        let (tx, rx) = mpsc::channel::<CommitMsg>();
        let flush_db = db.clone();
        let c2 = committer.clone();
        let handle = std::thread::Builder::new()
            .name("tapedeck-commit".into())
            .spawn(move || commit_loop(flush_db, rx, c2))
            .map_err(|e| StoreError::Open {
                path: dir.to_path_buf(),
                source: OpenError::Thread(e),
            })?;
        *committer.tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        *committer.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(SledStore {
            path: dir.to_path_buf(),
            db,
            bodies,
            events,
            sessions,
            runs,
            issues,
            lineage,
            committer,
            space: crate::space::Space::new(dir),
            blobs: dir.join("blobs"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The free space the store keeps on its disk: a body or an event that would take
    /// the disk under it is refused ([`StoreError::DiskLow`]); 0 keeps none. See
    /// [`crate::space`].
    pub fn set_min_free(&self, bytes: u64) {
        self.space.set_floor(bytes);
    }

    /// Records where this process's daemon listens, so read commands can find it.
    pub fn write_daemon_info(
        &self,
        info: &DaemonInfo,
    ) -> Result<(), tapedeck_model::secure_fs::WriteError> {
        let text = serde_json::to_string(info).unwrap_or_default();
        tapedeck_model::secure_fs::write(
            &self.path.join(super::DAEMON_FILE),
            text.as_bytes(),
            tapedeck_model::secure_fs::PRIVATE_FILE,
        )
    }

    pub fn remove_daemon_info(&self) {
        let _ = std::fs::remove_file(self.path.join(super::DAEMON_FILE));
    }

    fn mark_dirty(&self) {
        if !self.committer.dirty.swap(true, Ordering::AcqRel) {
            if let Some(tx) = self
                .committer
                .tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                let _ = tx.send(CommitMsg::Dirty);
            }
        }
    }

    /// Where a session came from, when tapedeck made it from another. A note this
    /// tapedeck cannot read is no note: the session itself is intact.
    fn lineage_of(&self, session: &str) -> Result<Option<Lineage>, StoreError> {
        Ok(self
            .lineage
            .get(session.as_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The session summaries waiting for the next flush (see [`Committer::info_pending`]).
    fn pending_infos(&self) -> std::sync::MutexGuard<'_, HashMap<String, InfoDelta>> {
        self.committer
            .info_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a journal entry for the next flush (after the write it describes).
    fn journal(&self, entry: Entry) {
        self.committer
            .journal_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    fn blob_path(&self, hash: &[u8]) -> PathBuf {
        let hex = hex(hash);
        self.blobs.join(&hex[..2]).join(hex)
    }

    /// A segment by hash: a sled value or a blob file, its content checked either way.
    fn segment(&self, hash: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.raw_segment(hash)? {
            Some(data) => checked(hash, data).map(Some),
            None => Ok(None),
        }
    }

    /// Segment `index` of a body stored as a tree, by its chaining value, checked at its
    /// place.
    fn tree_segment(&self, cv: &[u8; 32], index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.raw_segment(cv)? {
            Some(data) if crate::tree::segment_is(cv, index, &data) => Ok(Some(data)),
            Some(_) => Err(StoreError::DamagedBlob(crate::tree::part_name(cv, index))),
            None => Ok(None),
        }
    }

    /// A segment's bytes, unchecked: a sled value or a blob file.
    fn raw_segment(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.bodies.get(key)? {
            Some(v) => match Loc::decode(&v) {
                Some(loc) => self.packed(loc),
                None => Ok(Some(v.get(1..).map(<[u8]>::to_vec).unwrap_or_default())),
            },
            None => self.blob_file(key),
        }
    }

    /// The bytes a pack holds at `loc`, unchecked.
    fn packed(&self, loc: Loc) -> Result<Option<Vec<u8>>, StoreError> {
        self.committer.packs.read(loc).map_err(pack_failed("read"))
    }

    /// The bytes of the blob file under `key`, unchecked.
    fn blob_file(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.blob_path(key)) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::File {
                action: "read",
                path: self.blob_path(key),
                source,
            }),
        }
    }

    /// Checks a body stored as a tree ([`TAG_TREE`] value `v` under `k`): each segment at
    /// its place, their lengths the body's, their chaining values its blake3. Each byte is
    /// hashed once.
    fn verify_tree(&self, k: &[u8; 32], v: &[u8]) -> Result<BodyState, StoreError> {
        let Ok((len, cvs)) = tree_manifest(k, v) else {
            return Ok(BodyState::Damaged(
                "its parts do not add up to its blake3 (its manifest is damaged)".into(),
            ));
        };
        let mut total = 0u64;
        for (i, cv) in cvs.iter().enumerate() {
            match self.tree_segment(cv, i) {
                Ok(Some(data)) if data.len() == crate::SEGMENT || i + 1 == cvs.len() => {
                    total += data.len() as u64;
                }
                Ok(Some(data)) => {
                    return Ok(BodyState::Damaged(format!(
                        "its segment {i} holds {} bytes, not {}",
                        data.len(),
                        crate::SEGMENT
                    )))
                }
                Ok(None) => return Ok(BodyState::Missing),
                Err(e) => return Ok(BodyState::Damaged(e.to_string())),
            }
        }
        if total != len {
            return Ok(BodyState::Damaged(format!(
                "its parts hold {total} bytes, its manifest says {len}"
            )));
        }
        Ok(BodyState::Sound)
    }

    /// A segment kept as a blob file (not in sled), its content checked.
    fn file_segment(&self, hash: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.blob_file(hash)?
            .map(|data| checked(hash, data))
            .transpose()
    }

    /// [`Store::put_event_with`]; `floor` says whether the disk's floor holds for it.
    fn write_event(
        &self,
        session: &str,
        event: &Event,
        bodies: &[(blake3::Hash, bytes::Bytes)],
        floor: bool,
    ) -> Result<(), StoreError> {
        let mut inline = Vec::with_capacity(bodies.len());
        for (h, data) in bodies {
            if data.len() > crate::INLINE_MAX {
                self.put_blob(h, data)?;
            } else if !inline.iter().any(|(k, _): &(&blake3::Hash, &[u8])| *k == h) {
                inline.push((h, &data[..]));
            }
        }
        let (value, sum) = encode_event(event, &inline)?;
        if floor {
            self.space.room(value.len() as u64)?;
        }
        self.events.insert(event_key(session, event.step), value)?;
        // Queued after the insert: the flush that journals it has the event too.
        self.journal(Entry::Event {
            session: session.to_string(),
            step: event.step,
            b3: sum.to_hex().to_string(),
        });
        let bytes = event.request.body.len
            + event.response.as_ref().map_or(0, |r| r.body.len)
            + event
                .ws
                .iter()
                .flat_map(|w| &w.messages)
                .map(|m| m.body.len)
                .sum::<u64>();
        let d = InfoDelta::of(event, bytes);
        {
            let mut pending = self.pending_infos();
            match pending.get_mut(session) {
                Some(p) => p.add(d),
                // A session's first event writes its summary at once, right after the
                // event: a session whose first events survive a crash is found by name.
                // (One lookup per session and flush, not per event.)
                None if !self.sessions.contains_key(session.as_bytes())? => {
                    self.sessions
                        .insert(session.as_bytes(), encode_info(&d.onto(None, session)))?;
                }
                None => {
                    pending.insert(session.to_string(), d);
                }
            }
        }
        self.mark_dirty();
        Ok(())
    }

    fn has_segment(&self, hash: &[u8]) -> Result<bool, StoreError> {
        Ok(self.holds(hash, self.bodies.get(hash)?.as_deref()))
    }

    /// Whether the blob under `hash`, whose sled value is `value`, is there: kept in
    /// sled, in a pack that reaches its end, or in a file of an older store.
    fn holds(&self, hash: &[u8], value: Option<&[u8]>) -> bool {
        match value {
            Some(v) => Loc::decode(v).is_none_or(|loc| self.committer.packs.holds(loc)),
            None => self.blob_path(hash).is_file(),
        }
    }
}

/// Flushes are at least this far apart: under load one fsync covers many exchanges,
/// and an exchange still becomes durable well within 100 ms of completing.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// How long [`Store::commit`] waits for its flush. A flush that takes this long is not
/// slow but stuck: sled 0.34, whose write of its log failed (a full disk), can wait for
/// that write forever (seen with `record --min-free 0` on a full tmpfs). A flush of the
/// largest body's fsync on a slow disk takes seconds.
pub const COMMIT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// A pack's failed `action` as the store says it.
fn pack_failed(action: &'static str) -> impl FnOnce(crate::pack::PackError) -> StoreError {
    move |e| StoreError::File {
        action,
        path: e.path,
        source: e.source,
    }
}

/// fsyncs the packs appended to since the last flush (and a new pack's directory).
fn sync_blobs(c: &Committer) -> Result<(), FlushError> {
    c.packs.sync().map_err(|e| FlushError::Sync {
        path: e.path,
        source: e.source,
    })
}

fn commit_loop(db: sled::Db, rx: mpsc::Receiver<CommitMsg>, c: Arc<Committer>) {
    let mut last = Instant::now() - FLUSH_EVERY;
    while let Ok(first) = rx.recv() {
        let mut waiters = Vec::new();
        let mut due = flush_due(&first, last, Instant::now());
        push_waiter(first, &mut waiters);
        // Until it is due, a commit (a barrier) can still bring the flush forward.
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            match rx.recv_timeout(due - now) {
                Ok(m) => {
                    due = due.min(flush_due(&m, last, now));
                    push_waiter(m, &mut waiters);
                }
                Err(_) => break,
            }
        }
        while let Ok(m) = rx.try_recv() {
            push_waiter(m, &mut waiters);
        }
        last = Instant::now();
        c.dirty.store(false, Ordering::Release);
        let result = flush(&db, &c).map_err(Arc::new);
        if let Err(e) = &result {
            tracing::error!("store flush failed: {e}");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
    // Channel closed: a last flush so nothing written is left behind.
    let _ = flush(&db, &c);
}

/// When the flush `m` asks for is due: a commit's (someone waits on it) as soon as the
/// last flush is [`FLUSH_EVERY`] old; a write's [`FLUSH_EVERY`] after it, too. The flush
/// after a quiet spell came at once before, with the exchange that ended it: at the
/// moment an agent sends its next request (it acts on an answer as soon as it has it),
/// so that request met sled's log write, sled waking its seven I/O threads, and two
/// fsyncs on the machine's cores (a stream's first event through `record` took about
/// 0.5 ms against the bare forwarder's 0.31; see the README's Benchmark). A write is
/// flushed at most [`FLUSH_EVERY`] after the committer sees it (one that came during a
/// flush also waits that flush out), well within the 100 ms that kill -9 loses nothing
/// completed before.
fn flush_due(m: &CommitMsg, last: Instant, now: Instant) -> Instant {
    let after_last = last + FLUSH_EVERY;
    match m {
        CommitMsg::Barrier(_) => after_last,
        CommitMsg::Dirty => after_last.max(now + FLUSH_EVERY),
    }
}

fn push_waiter(m: CommitMsg, waiters: &mut Vec<mpsc::SyncSender<Result<(), Arc<FlushError>>>>) {
    if let CommitMsg::Barrier(w) = m {
        waiters.push(w);
    }
}

/// Session summaries, blob files, then sled, then the journal of what that flush made
/// durable. The packs' and sled's synced pages leave the page cache.
///
/// A pack that cannot be synced (its directory gone, a disk error) does not hold the
/// events back: sled is flushed all the same and the failure reported after. Its events
/// then name bodies that may not have reached the disk, which a crash would show as
/// bodies not stored (`tapedeck fsck`, and replay refuses the session), never as wrong
/// bytes; left out of the flush, the events themselves were lost whenever the process
/// ended before another flush (a recorder that exits 2 has no last flush).
fn flush(db: &sled::Db, c: &Committer) -> Result<(), FlushError> {
    let entries = std::mem::take(&mut *c.journal_pending.lock().unwrap_or_else(|p| p.into_inner()));
    merge_infos(c).map_err(FlushError::Sled)?;
    let synced = sync_blobs(c);
    db.flush().map_err(FlushError::Sled)?;
    if let Ok(f) = std::fs::File::open(&c.sled_file) {
        crate::page_cache::drop_synced(&f);
    }
    c.journal.append(&entries).map_err(FlushError::Journal)?;
    synced
}

/// Sled's answer when another open handle holds the database's file lock.
fn is_lock_error(e: &sled::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Close the channel, let the committer do its last flush, and wait for it.
        self.committer
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = self
            .committer
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
        tapedeck_model::secure_fs::tighten_tree(&self.path);
    }
}

/// A session's summary as 32 bytes: events, first and last wall-clock ns, body bytes.
/// Binary, not JSON: it is rewritten on every event, on the request path.
fn encode_info(i: &SessionInfo) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    for n in [i.events, i.first_unix_ns, i.last_unix_ns, i.bytes] {
        v.extend_from_slice(&n.to_be_bytes());
    }
    v
}

fn decode_info(name: &str, v: &[u8]) -> Option<SessionInfo> {
    let n = |i: usize| {
        v.get(i * 8..i * 8 + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
    };
    Some(SessionInfo {
        name: name.to_string(),
        events: n(0)?,
        first_unix_ns: n(1)?,
        last_unix_ns: n(2)?,
        bytes: n(3)?,
        lineage: None,
    })
}

/// Writes the pending summaries into the sessions tree. The lock is held throughout, so
/// a reader sees each event counted once: pending or written.
fn merge_infos(c: &Committer) -> Result<(), sled::Error> {
    let mut pending = c.info_pending.lock().unwrap_or_else(|p| p.into_inner());
    for (session, d) in pending.iter() {
        c.sessions.update_and_fetch(session.as_bytes(), |old| {
            let info = old.and_then(|o| decode_info(session, o));
            Some(encode_info(&d.onto(info, session)))
        })?;
    }
    pending.clear();
    Ok(())
}

impl SledStore {
    /// Body `hash_hex` as event `step` of `session` keeps it inside its value (see
    /// [`crate::StoredEvent::body`]): `None` when it does not (or the event is gone or
    /// unreadable: the body is then looked for under its blake3), `Some(Err(_))` when the
    /// bytes there fail their blake3.
    fn inline_body(
        &self,
        session: &str,
        step: u64,
        hash_hex: &str,
    ) -> Result<Option<Result<bytes::Bytes, StoreError>>, StoreError> {
        match self.event_stored(session, step) {
            Ok(Some(stored)) => Ok(stored.body(hash_hex)),
            Ok(None) | Err(StoreError::DamagedEvent { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Store for SledStore {
    fn put_blob(&self, hash: &blake3::Hash, data: &[u8]) -> Result<(), StoreError> {
        if self.bodies.contains_key(hash.as_bytes())? {
            return Ok(());
        }
        if data.len() >= FILE_BLOB_MIN {
            // A store of format 4 or older may have it as a file of its own.
            let path = self.blob_path(hash.as_bytes());
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == data.len() as u64) {
                return Ok(());
            }
            self.space.room(data.len() as u64)?;
            let loc = self
                .committer
                .packs
                .append(data)
                .map_err(pack_failed("write"))?;
            self.bodies.insert(hash.as_bytes(), &loc.encode()[..])?;
            self.mark_dirty();
            return Ok(());
        }
        self.space.room(data.len() as u64 + 1)?;
        let mut v = Vec::with_capacity(data.len() + 1);
        v.push(TAG_BLOB);
        v.extend_from_slice(data);
        self.bodies.insert(hash.as_bytes(), v)?;
        Ok(())
    }

    fn put_manifest(
        &self,
        hash: &blake3::Hash,
        segments: &[crate::tree::SegmentCv],
        len: u64,
    ) -> Result<(), StoreError> {
        if crate::tree::tree_hash(segments).as_ref() != Some(hash) {
            return Err(StoreError::BadManifest {
                hash: hash.to_hex().to_string(),
                count: segments.len(),
            });
        }
        if self.bodies.contains_key(hash.as_bytes())? {
            return Ok(());
        }
        self.space.room(9 + segments.len() as u64 * 32)?;
        let mut v = Vec::with_capacity(9 + segments.len() * 32);
        v.push(TAG_TREE);
        v.extend_from_slice(&len.to_be_bytes());
        for s in segments {
            v.extend_from_slice(s);
        }
        self.bodies.insert(hash.as_bytes(), v)?;
        Ok(())
    }

    fn has_body(&self, hash_hex: &str) -> Result<bool, StoreError> {
        let Some(k) = parse_hex(hash_hex) else {
            return Ok(false);
        };
        match self.bodies.get(k)? {
            Some(v) if matches!(v.first(), Some(&TAG_MANIFEST | &TAG_TREE)) => {
                for seg in v.get(9..).unwrap_or_default().chunks_exact(32) {
                    if !self.has_segment(seg)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            v => Ok(self.holds(&k, v.as_deref())),
        }
    }

    fn get_body(&self, hash_hex: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some((cv, index)) = crate::tree::parse_part_name(hash_hex) {
            return self.tree_segment(&cv, index);
        }
        let Some(k) = parse_hex(hash_hex) else {
            return Ok(None);
        };
        let Some(v) = self.bodies.get(k)? else {
            return self.file_segment(&k);
        };
        match v.first() {
            Some(&TAG_BLOB) => checked(&k, v[1..].to_vec()).map(Some),
            Some(&TAG_PACKED) => match Loc::decode(&v) {
                Some(loc) => self.packed(loc)?.map(|d| checked(&k, d)).transpose(),
                None => Err(StoreError::DamagedBlob(hash_hex.to_string())),
            },
            Some(&TAG_MANIFEST) if v.len() >= 9 => {
                let len = u64::from_be_bytes(v[1..9].try_into().unwrap_or([0; 8]));
                // The length is read from the store: damage must not size an allocation.
                let mut out = Vec::with_capacity(len.min(crate::WHOLE_JSON_LIMIT as u64) as usize);
                for seg in v[9..].chunks_exact(32) {
                    let part = self
                        .segment(seg)?
                        .ok_or_else(|| StoreError::MissingBody(hash_hex.to_string()))?;
                    out.extend_from_slice(&part);
                }
                Ok(Some(out))
            }
            Some(&TAG_TREE) => {
                let (len, cvs) = tree_manifest(&k, &v)?;
                let mut out = Vec::with_capacity(len.min(crate::WHOLE_JSON_LIMIT as u64) as usize);
                for (i, cv) in cvs.iter().enumerate() {
                    let part = self
                        .tree_segment(cv, i)?
                        .ok_or_else(|| StoreError::MissingBody(hash_hex.to_string()))?;
                    out.extend_from_slice(&part);
                }
                if out.len() as u64 != len {
                    return Err(StoreError::DamagedBlob(hash_hex.to_string()));
                }
                Ok(Some(out))
            }
            _ => Err(StoreError::MissingBody(hash_hex.to_string())),
        }
    }

    fn body_bytes(&self, hash_hex: &str) -> Result<Option<bytes::Bytes>, StoreError> {
        let Some(k) = parse_hex(hash_hex) else {
            return Ok(None);
        };
        match self.bodies.get(k)? {
            Some(v) if v.first() == Some(&TAG_BLOB) => {
                if blake3::hash(&v[1..]).as_bytes() != &k {
                    return Err(StoreError::DamagedBlob(hash_hex.to_string()));
                }
                Ok(Some(bytes::Bytes::from_owner(v).slice(1..)))
            }
            _ => Ok(self.get_body(hash_hex)?.map(bytes::Bytes::from)),
        }
    }

    fn body_segments(&self, hash_hex: &str) -> Result<Option<Vec<String>>, StoreError> {
        let Some(k) = parse_hex(hash_hex) else {
            return Ok(None);
        };
        match self.bodies.get(k)? {
            Some(v) if v.first() == Some(&TAG_MANIFEST) => Ok(Some(
                v.get(9..)
                    .unwrap_or_default()
                    .chunks_exact(32)
                    .map(hex)
                    .collect(),
            )),
            Some(v) if v.first() == Some(&TAG_TREE) => Ok(Some(
                tree_manifest(&k, &v)?
                    .1
                    .iter()
                    .enumerate()
                    .map(|(i, cv)| crate::tree::part_name(cv, i))
                    .collect(),
            )),
            _ => Ok(None),
        }
    }

    fn put_event(&self, session: &str, event: &Event) -> Result<(), StoreError> {
        self.put_event_with(session, event, &[])
    }

    fn put_event_with(
        &self,
        session: &str,
        event: &Event,
        bodies: &[(blake3::Hash, bytes::Bytes)],
    ) -> Result<(), StoreError> {
        self.write_event(session, event, bodies, true)
    }

    fn put_event_past_floor(&self, session: &str, event: &Event) -> Result<(), StoreError> {
        self.write_event(session, event, &[], false)
    }

    fn scan_session(
        &self,
        session: &str,
        keep: &mut dyn FnMut(Event),
    ) -> Result<SessionRead, StoreError> {
        let mut read = SessionRead::default();
        for item in evicting_scan(&self.events, session_prefix(session)) {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => {
                    read.damaged.push(Damage {
                        step: None,
                        problem: format!("sled cannot read the events after this point: {e}"),
                    });
                    break;
                }
            };
            let step = step_of(&k);
            let ev = match decode_event(&v) {
                Ok((ev, sum, summed)) => {
                    read.without_checksum += u64::from(!summed);
                    read.sums.insert(step, sum);
                    ev
                }
                Err(problem) => {
                    read.damaged.push(Damage {
                        step: Some(step),
                        problem: problem.to_string(),
                    });
                    continue;
                }
            };
            // A value that holds bodies holds every small request or response body of
            // its event (the recorder writes them with it): one it does not name was not
            // cut off by a crash but damaged in the value's table.
            if v.first() == Some(&EVENT_INLINE) {
                let response = ev.response.as_ref().map(|r| ("response", &r.body));
                let lost = std::iter::once(("request", &ev.request.body))
                    .chain(response)
                    .find(|(_, b)| b.at.is_none() && b.len <= crate::INLINE_MAX as u64);
                if let Some((side, _)) = lost {
                    read.damaged.push(Damage {
                        step: Some(step),
                        problem: format!(
                            "its {side} body is not among the bodies its value holds (damaged)"
                        ),
                    });
                    continue;
                }
            }
            // The recorder could not store a body of it (a full disk): its event says
            // so, and what it names is not the body that went through.
            if let Some(damage) = crate::unstored(&ev) {
                read.missing_bodies.push(damage);
                continue;
            }
            // A body kept inside the event was read with it.
            let mut whole = ev.request.body.at.is_some() || self.has_body(&ev.request.body.b3)?;
            if let Some(r) = &ev.response {
                whole &= r.body.at.is_some() || self.has_body(&r.body.b3)?;
            }
            for m in ev.ws.iter().flat_map(|w| &w.messages) {
                whole &= self.has_body(&m.body.b3)?;
            }
            if whole {
                keep(ev);
            } else {
                read.missing_bodies.push(Damage {
                    step: Some(step),
                    problem: "its bodies were not stored (cut by a crash?)".into(),
                });
            }
        }
        Ok(read)
    }

    fn journalled_steps(
        &self,
        session: &str,
    ) -> Result<Option<std::collections::BTreeSet<u64>>, StoreError> {
        match crate::journal::steps_of(&self.path, session) {
            Ok(steps) => Ok(Some(steps)),
            Err(e) => {
                tracing::warn!(
                    "cannot read the event journal of {} ({e}); not checked against it",
                    self.path.display()
                );
                Ok(None)
            }
        }
    }

    fn verify_body(&self, hash_hex: &str) -> Result<BodyState, StoreError> {
        let Some(k) = parse_hex(hash_hex) else {
            return Ok(BodyState::Damaged("not a blake3 hash".into()));
        };
        let manifest = self.bodies.get(k)?;
        if let Some(v) = manifest.as_ref().filter(|v| v.first() == Some(&TAG_TREE)) {
            return self.verify_tree(&k, v);
        }
        let parted = manifest.as_ref().and_then(|v| v.first()) == Some(&TAG_MANIFEST);
        let segments: Vec<[u8; 32]> = match manifest {
            Some(v) if parted => v
                .get(9..)
                .unwrap_or_default()
                .chunks_exact(32)
                .filter_map(|c| <[u8; 32]>::try_from(c).ok())
                .collect(),
            _ => vec![k],
        };
        let mut whole = blake3::Hasher::new();
        for seg in &segments {
            match self.segment(seg) {
                Ok(Some(data)) => {
                    whole.update(&data);
                }
                Ok(None) => return Ok(BodyState::Missing),
                Err(e) => return Ok(BodyState::Damaged(e.to_string())),
            }
        }
        if parted && whole.finalize().as_bytes() != &k {
            return Ok(BodyState::Damaged(
                "its parts do not add up to its blake3".into(),
            ));
        }
        Ok(BodyState::Sound)
    }

    fn event_body(
        &self,
        session: &str,
        step: u64,
        hash_hex: &str,
    ) -> Result<Option<bytes::Bytes>, StoreError> {
        match self.inline_body(session, step, hash_hex)? {
            Some(read) => read.map(Some),
            None => self.body_bytes(hash_hex),
        }
    }

    fn verify_event_body(
        &self,
        session: &str,
        step: u64,
        hash_hex: &str,
    ) -> Result<BodyState, StoreError> {
        match self.inline_body(session, step, hash_hex)? {
            Some(Ok(_)) => Ok(BodyState::Sound),
            Some(Err(_)) => Ok(BodyState::Damaged(
                "it does not match its blake3 (kept inside its event)".into(),
            )),
            None => self.verify_body(hash_hex),
        }
    }

    fn sessions(&self) -> Result<Vec<SessionInfo>, StoreError> {
        let mut pending = self.pending_infos().clone();
        let mut out = Vec::new();
        for item in self.sessions.iter() {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k);
            if let Some(mut info) = decode_info(&name, &v) {
                if let Some(d) = pending.remove(name.as_ref()) {
                    info = d.onto(Some(info), &name);
                }
                out.push(info);
            }
        }
        // Sessions whose first events are not flushed yet.
        for (name, d) in pending {
            out.push(d.onto(None, &name));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        for info in &mut out {
            info.lineage = self.lineage_of(&info.name)?;
        }
        Ok(out)
    }

    fn session(&self, session: &str) -> Result<Option<SessionInfo>, StoreError> {
        let pending = self.pending_infos().get(session).copied();
        let stored = self
            .sessions
            .get(session.as_bytes())?
            .and_then(|v| decode_info(session, &v));
        let Some(mut info) = (match pending {
            Some(d) => Some(d.onto(stored, session)),
            None => stored,
        }) else {
            return Ok(None);
        };
        info.lineage = self.lineage_of(session)?;
        Ok(Some(info))
    }

    fn put_lineage(&self, session: &str, lineage: &Lineage) -> Result<(), StoreError> {
        let value = serde_json::to_vec(lineage).map_err(|source| StoreError::Encode {
            what: "a lineage note",
            source,
        })?;
        self.lineage.insert(session.as_bytes(), value)?;
        self.mark_dirty();
        Ok(())
    }

    fn delete_session(&self, session: &str) -> Result<u64, StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in evicting_scan(&self.events, session_prefix(session)) {
            let (k, _) = item?;
            batch.remove(k);
            n += 1;
        }
        self.events.apply_batch(batch)?;
        {
            // Under the lock a flush merges with, so no pending count brings it back.
            let mut pending = self.pending_infos();
            pending.remove(session);
            self.sessions.remove(session.as_bytes())?;
        }
        self.runs.remove(session.as_bytes())?;
        self.lineage.remove(session.as_bytes())?;
        self.journal(Entry::Deleted {
            session: session.to_string(),
        });
        self.mark_dirty();
        Ok(n)
    }

    fn put_run(&self, session: &str, run: &RunInfo) -> Result<(), StoreError> {
        let value = serde_json::to_vec(run).map_err(|source| StoreError::Encode {
            what: "a run note",
            source,
        })?;
        self.runs.insert(session.as_bytes(), value)?;
        self.mark_dirty();
        Ok(())
    }

    fn run(&self, session: &str) -> Result<Option<RunInfo>, StoreError> {
        let Some(v) = self.runs.get(session.as_bytes())? else {
            return Ok(None);
        };
        // A note this tapedeck cannot read is no note: the session itself is intact.
        Ok(serde_json::from_slice(&v).ok())
    }

    fn event(&self, session: &str, step: u64) -> Result<Option<Event>, StoreError> {
        let Some(v) = self.events.get(event_key(session, step))? else {
            return Ok(None);
        };
        match decode_event(&v) {
            Ok((ev, _, _)) => Ok(Some(ev)),
            Err(problem) => Err(StoreError::DamagedEvent {
                session: session.to_string(),
                step,
                problem,
            }),
        }
    }

    fn event_again(&self, session: &str, step: u64) -> Result<Option<Event>, StoreError> {
        let Some(v) = self.events.get(event_key(session, step))? else {
            return Ok(None);
        };
        let parts = split_value(&v).ok();
        match parts
            .as_ref()
            .map(|p| (from_json::<Event>(p.json), &p.bodies))
        {
            Some((Ok(mut ev), bodies)) => {
                locate(&mut ev, bodies);
                Ok(Some(ev))
            }
            // Not as it was when first read: say what is wrong the usual way.
            _ => self.event(session, step),
        }
    }

    fn event_stored(
        &self,
        session: &str,
        step: u64,
    ) -> Result<Option<crate::StoredEvent>, StoreError> {
        let Some(v) = self.events.get(event_key(session, step))? else {
            return Ok(None);
        };
        let (from, inside) = match split_value(&v) {
            Ok(parts) => (
                v.len() - parts.json.len(),
                parts
                    .bodies
                    .into_iter()
                    .filter_map(|(h, r)| Some((<[u8; 32]>::try_from(h).ok()?, r)))
                    .collect::<Vec<_>>(),
            ),
            Err(EventDamage::Format) => (0, Vec::new()),
            Err(problem) => {
                return Err(StoreError::DamagedEvent {
                    session: session.to_string(),
                    step,
                    problem,
                })
            }
        };
        // sled's value, shared, not copied.
        let v = bytes::Bytes::from_owner(v);
        Ok(Some(crate::StoredEvent {
            json: v.slice(from..),
            inside: inside.into_iter().map(|(h, r)| (h, v.slice(r))).collect(),
        }))
    }

    fn last_step(&self, session: &str) -> Result<Option<u64>, StoreError> {
        let Some(item) = self.events.scan_prefix(session_prefix(session)).next_back() else {
            return Ok(None);
        };
        let (k, _) = item?;
        Ok(k.get(k.len().saturating_sub(8)..)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes))
    }

    fn issues(&self) -> Result<IssueTable, StoreError> {
        let Some(v) = self.issues.get(ISSUES_KEY)? else {
            return Ok(IssueTable::default());
        };
        serde_json::from_slice(&v).map_err(|source| StoreError::Issues {
            path: self.path.clone(),
            source,
        })
    }

    fn put_issues(&self, table: &IssueTable) -> Result<(), StoreError> {
        let value = serde_json::to_vec(table).map_err(|source| StoreError::Encode {
            what: "the issues table",
            source,
        })?;
        self.issues.insert(ISSUES_KEY, value)?;
        self.mark_dirty();
        Ok(())
    }

    fn commit(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self
            .committer
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.send(CommitMsg::Barrier(tx)).is_ok())
            .unwrap_or(false);
        if !sent {
            self.db.flush()?;
            return Ok(());
        }
        match rx.recv_timeout(COMMIT_PATIENCE) {
            Ok(done) => done.map_err(StoreError::Flush),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(StoreError::FlushStuck(COMMIT_PATIENCE)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(StoreError::CommitStopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapedeck_model::exchange::BodyRef;

    #[test]
    fn a_write_is_flushed_a_while_after_it_and_a_commit_as_soon_as_flushes_may_run() {
        let now = Instant::now();
        let (tx, _rx) = mpsc::sync_channel(1);
        let commit = CommitMsg::Barrier(tx);
        // After a quiet spell: the write's flush waits, clear of the agent's next request;
        // a commit (someone waits on it) is not held back.
        let quiet = now - Duration::from_secs(1);
        assert_eq!(flush_due(&CommitMsg::Dirty, quiet, now), now + FLUSH_EVERY);
        assert!(flush_due(&commit, quiet, now) <= now);
        // Under load flushes stay FLUSH_EVERY apart, and no write waits more than
        // FLUSH_EVERY after the committer sees it.
        let recent = now - Duration::from_millis(5);
        assert_eq!(flush_due(&commit, recent, now), recent + FLUSH_EVERY);
        assert_eq!(flush_due(&CommitMsg::Dirty, recent, now), now + FLUSH_EVERY);
        let just = now - Duration::from_micros(100);
        assert_eq!(flush_due(&CommitMsg::Dirty, just, now), now + FLUSH_EVERY);
    }

    use crate::testing::event;

    #[test]
    fn small_bodies_live_inside_their_event_and_read_back_checked() {
        use tapedeck_model::exchange::ResponseRecord;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(dir.path()).unwrap());
        let req = bytes::Bytes::from_static(br#"{"messages":[{"role":"user","content":"hi"}]}"#);
        let resp = bytes::Bytes::from(vec![b'r'; crate::INLINE_MAX]);
        let big = bytes::Bytes::from(vec![b'b'; crate::INLINE_MAX + 1]);
        let named =
            |d: &bytes::Bytes| BodyRef::of(blake3::hash(d).to_hex().to_string(), d.len() as u64);
        let with = |step: u64, request: &bytes::Bytes, response: &bytes::Bytes| {
            let mut ev = event(step);
            ev.request.body = named(request);
            ev.response = Some(ResponseRecord {
                status: 200,
                version: "HTTP/1.1".into(),
                headers: vec![],
                body: named(response),
                chunks: None,
                complete: true,
                trailers: Vec::new(),
                broke: None,
                members: Vec::new(),
            });
            let bodies: Vec<(blake3::Hash, bytes::Bytes)> = [request, response]
                .iter()
                .map(|d| (blake3::hash(d), (*d).clone()))
                .collect();
            (ev, bodies)
        };
        // Step 1: both small (the answer exactly INLINE_MAX); step 2: the answer one byte
        // over; step 3: the same bytes both ways (kept once).
        for (step, request, response) in [(1, &req, &resp), (2, &req, &big), (3, &req, &req)] {
            let (ev, bodies) = with(step, request, response);
            store.put_event_with("s", &ev, &bodies).unwrap();
        }
        let h = |d: &bytes::Bytes| blake3::hash(d).to_hex().to_string();
        // Not under their blake3: one write per exchange. The large one is.
        assert!(!store.has_body(&h(&req)).unwrap());
        assert!(!store.has_body(&h(&resp)).unwrap());
        assert!(store.has_body(&h(&big)).unwrap());
        let value = |step| store.events.get(event_key("s", step)).unwrap().unwrap();
        let kept = |step| split_value(&value(step)).unwrap().bodies.len();
        assert_eq!(
            (kept(1), kept(2), kept(3)),
            (2, 1, 1),
            "one copy of a body named twice"
        );

        let read = store.read_session("s").unwrap();
        assert!(
            read.damaged.is_empty() && read.missing_bodies.is_empty(),
            "{read:?}"
        );
        let at: Vec<(Option<u64>, Option<u64>)> = read
            .events
            .iter()
            .map(|e| (e.request.body.at, e.response.as_ref().unwrap().body.at))
            .collect();
        assert_eq!(
            at,
            vec![(Some(1), Some(1)), (Some(2), None), (Some(3), Some(3))]
        );
        let mut rec = crate::recording::Recording::from_store(store.clone(), "s").unwrap();
        // Shown under another name (as `ui` does for two tapes of one session): the store
        // is still read under the session's own.
        rec.session = "shown-as".into();
        for (ev, (request, response)) in
            rec.events
                .iter()
                .zip([(&req, &resp), (&req, &big), (&req, &req)])
        {
            assert_eq!(rec.body(&ev.request.body).unwrap(), request);
            assert_eq!(
                rec.body(&ev.response.as_ref().unwrap().body).unwrap(),
                response
            );
        }
        // A replay's read-ahead: the event's JSON alone, decoded elsewhere.
        let mut released =
            crate::recording::Recording::from_store_by_step(store.clone(), "s").unwrap();
        released.release_events();
        let stored = released.event_stored(0).unwrap().unwrap();
        let ev = released.decode_event(0, &stored).unwrap();
        assert_eq!(stored.inside.len(), 2, "{:?}", stored.inside);
        let response = ev.response.unwrap().body;
        assert_eq!(response.at, Some(1));
        assert_eq!(stored.body(&response.b3).unwrap().unwrap(), resp);
        assert_eq!(released.body(&response).unwrap(), resp);
        // The second event's large answer is not inside: read under its blake3.
        let stored = released.event_stored(1).unwrap().unwrap();
        let ev = released.decode_event(1, &stored).unwrap();
        let (request, response) = (ev.request.body, ev.response.unwrap().body);
        assert_eq!((request.at, response.at), (Some(2), None));
        assert!(stored.body(&response.b3).is_none());
        assert_eq!(released.body(&response).unwrap(), big);
        assert_eq!(
            store.verify_event_body("s", 1, &h(&resp)).unwrap(),
            BodyState::Sound
        );

        // A tape written from the events left in the store (an export, one event read
        // at a time) is the tape written from them in memory: header, format, body files.
        let tape_of = |rec: &crate::recording::Recording| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("run.jsonl");
            let mut files =
                crate::tape_files::BodyFiles::new(&path, 0o600, crate::INLINE_MAX as u64);
            let mut out = Vec::new();
            let mut written = Vec::new();
            rec.write_tape(&mut out, Some(&mut files), |n| written.push(n))
                .unwrap();
            files.keep();
            let files = std::fs::read_dir(dir.path().join("run.bodies"))
                .unwrap()
                .count();
            (String::from_utf8(out).unwrap(), written, files)
        };
        let whole = crate::recording::Recording::from_store(store.clone(), "s").unwrap();
        let by_step = tape_of(&released);
        assert!(by_step == tape_of(&whole), "the tapes differ");
        let (tape, written, files) = by_step;
        assert!(tape.starts_with(r#"{"tapedeck_tape":3,"session":"s","events":3}"#));
        assert_eq!((written, files), (vec![1, 2, 3], 1));
        assert_eq!(tape.matches(r#""file":"run.bodies/"#).count(), 1);

        // A flipped byte in a body kept inside: the event still reads (its JSON is
        // sound), the body fails its blake3 wherever it is read.
        let mut v = value(1).to_vec();
        let first_body = 37 + 2 * 36;
        v[first_body + 3] ^= 1;
        store.events.insert(event_key("s", 1), v).unwrap();
        assert!(store.event("s", 1).unwrap().is_some());
        assert!(matches!(
            store.event_body("s", 1, &h(&req)),
            Err(StoreError::DamagedBlob(_))
        ));
        assert!(matches!(
            store.event_stored("s", 1).unwrap().unwrap().body(&h(&req)),
            Some(Err(StoreError::DamagedBlob(_)))
        ));
        assert!(matches!(
            store.verify_event_body("s", 1, &h(&req)).unwrap(),
            BodyState::Damaged(_)
        ));
        // A flipped byte in the table's blake3 of a body: named as damage, not as a body
        // a crash cut off.
        let sound = value(2);
        let mut v = sound.to_vec();
        v[37 + 5] ^= 1;
        store.events.insert(event_key("s", 2), v).unwrap();
        let read = store.read_session("s").unwrap();
        assert!(read.missing_bodies.is_empty(), "{read:?}");
        assert_eq!(read.damaged.len(), 1, "{read:?}");
        assert!(
            read.damaged[0]
                .problem
                .contains("request body is not among"),
            "{read:?}"
        );
        store.events.insert(event_key("s", 2), sound).unwrap();
        // Cut short: the event is named damaged.
        let v = value(3);
        store.events.insert(event_key("s", 3), &v[..40]).unwrap();
        let read = store.read_session("s").unwrap();
        assert_eq!(read.damaged.len(), 1, "{read:?}");
        assert_eq!(read.damaged[0].step, Some(3));
        assert!(read.damaged[0].problem.contains("cut short"), "{read:?}");
    }

    #[test]
    fn a_scan_that_looks_up_each_entry_reads_what_an_iterator_reads_and_stops_at_its_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.put_blob(&blake3::hash(b""), b"").unwrap();
        // Sessions keyed on either side of "s", one whose name "s" begins.
        for step in 1..=300 {
            for session in ["r", "s", "s2", "t"] {
                store.put_event(session, &event(step)).unwrap();
            }
        }
        for session in ["r", "s", "s2", "t", "none"] {
            let prefix = session_prefix(session);
            let looked_up: Vec<_> = evicting_scan(&store.events, prefix.clone())
                .map(Result::unwrap)
                .collect();
            let iterated: Vec<_> = store
                .events
                .scan_prefix(&prefix)
                .map(Result::unwrap)
                .collect();
            assert_eq!(looked_up, iterated, "session {session}");
            let want = if session == "none" { 0 } else { 300 };
            assert_eq!(looked_up.len(), want, "session {session}");
        }
        let steps: Vec<u64> = evicting_scan(&store.events, session_prefix("s"))
            .map(|kv| step_of(&kv.unwrap().0))
            .collect();
        assert_eq!(steps, (1..=300).collect::<Vec<_>>());
    }

    #[test]
    fn a_damaged_event_is_named_and_the_rest_of_its_session_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.put_blob(&blake3::hash(b""), b"").unwrap();
        for step in 1..=3 {
            store.put_event("s", &event(step)).unwrap();
        }
        // A flipped byte in the event's JSON, below sled's own checks.
        let key = event_key("s", 2);
        let mut v = store.events.get(&key).unwrap().unwrap().to_vec();
        let at = v.len() - 5;
        v[at] ^= 0x20;
        store.events.insert(&key, v).unwrap();
        // An event from before checksums: bare JSON.
        let old = serde_json::to_vec(&event(4)).unwrap();
        store.events.insert(event_key("s", 4), old).unwrap();

        let read = store.read_session("s").unwrap();
        let steps: Vec<u64> = read.events.iter().map(|e| e.step).collect();
        assert_eq!(steps, vec![1, 3, 4]);
        assert_eq!(read.damaged.len(), 1);
        assert_eq!(read.damaged[0].step, Some(2));
        assert!(
            read.damaged[0].problem.contains("checksum"),
            "{:?}",
            read.damaged
        );
        assert_eq!(read.without_checksum, 1);
    }

    #[test]
    fn session_summaries_count_every_event_before_and_after_a_flush_and_a_new_one_is_listed_at_once(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let ev = |step: u64| {
            let mut e = event(step);
            e.timing.start_unix_ns = step * 10;
            e.timing.end_unix_ns = step * 10 + 5;
            e
        };
        store.put_event("s", &ev(1)).unwrap();
        // Written with the first event, before any flush: found by name after a crash.
        let raw = store.sessions.get(b"s").unwrap().expect("listed at once");
        assert_eq!(decode_info("s", &raw).unwrap().events, 1);
        for step in 2..=5 {
            store.put_event("s", &ev(step)).unwrap();
        }
        store.put_event("t", &ev(1)).unwrap();
        let count = |store: &SledStore| {
            let s = store.session("s").unwrap().unwrap();
            (s.events, s.first_unix_ns, s.last_unix_ns)
        };
        // Pending counts are added to what is stored.
        assert_eq!(count(&store), (5, 10, 55));
        let names: Vec<(String, u64)> = store
            .sessions()
            .unwrap()
            .into_iter()
            .map(|i| (i.name, i.events))
            .collect();
        assert_eq!(names, vec![("s".into(), 5), ("t".into(), 1)]);
        store.commit().unwrap();
        assert_eq!(count(&store), (5, 10, 55));
        // Deleted with events pending: no count brings it back.
        store.put_event("t", &ev(2)).unwrap();
        store.delete_session("t").unwrap();
        store.commit().unwrap();
        assert!(store.session("t").unwrap().is_none());
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(count(&store), (5, 10, 55));
        assert!(store.session("t").unwrap().is_none());
    }

    #[test]
    fn a_store_of_format_1_to_4_opens_and_is_marked_5_and_another_format_is_refused() {
        for old in [&b"1"[..], b"2", b"3", b"4"] {
            let dir = tempfile::tempdir().unwrap();
            {
                let db = sled::open(dir.path().join("db")).unwrap();
                db.insert(FORMAT_KEY, old).unwrap();
                db.flush().unwrap();
            }
            let store = SledStore::open(dir.path()).unwrap();
            assert_eq!(store.db.get(FORMAT_KEY).unwrap().unwrap().as_ref(), b"5");
            store.db.insert(FORMAT_KEY, b"9").unwrap();
            drop(store);
            let err = SledStore::open(dir.path()).err().unwrap().to_string();
            assert!(err.contains("store format \"9\""), "{err}");
        }
    }

    /// A large body written before format 4 (segments named by their own blake3, under
    /// a [`TAG_MANIFEST`]) reads, lists its segments, checks and verifies as it did.
    #[test]
    fn a_body_in_segments_of_format_3_still_reads_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..crate::SEGMENT * 2 + 300)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let h = blake3::hash(&data);
        let mut v = vec![TAG_MANIFEST];
        v.extend_from_slice(&(data.len() as u64).to_be_bytes());
        let mut names = Vec::new();
        for seg in data.chunks(crate::SEGMENT) {
            let sh = crate::store_whole(&store, seg).unwrap();
            v.extend_from_slice(sh.as_bytes());
            names.push(sh.to_hex().to_string());
        }
        store.bodies.insert(h.as_bytes(), v).unwrap();
        let hex = h.to_hex().to_string();
        assert!(store.has_body(&hex).unwrap());
        assert_eq!(store.get_body(&hex).unwrap().unwrap(), data);
        assert_eq!(store.body_segments(&hex).unwrap().unwrap(), names);
        for (name, seg) in names.iter().zip(data.chunks(crate::SEGMENT)) {
            assert_eq!(store.get_body(name).unwrap().unwrap(), seg);
        }
        assert_eq!(store.verify_body(&hex).unwrap(), BodyState::Sound);
        // A damaged length sizes no allocation: the segments still read.
        let mut damaged = store.bodies.get(h.as_bytes()).unwrap().unwrap().to_vec();
        damaged[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
        store.bodies.insert(h.as_bytes(), damaged).unwrap();
        assert_eq!(store.get_body(&hex).unwrap().unwrap(), data);
        // Its first segment gone: found.
        store.bodies.remove(parse_hex(&names[0]).unwrap()).unwrap();
        assert_eq!(store.verify_body(&hex).unwrap(), BodyState::Missing);
    }

    /// Moves a blob from its pack to a file of its own under `blobs/`, where a store of
    /// format 4 or older keeps it.
    fn unpack_to_file(store: &SledStore, key: &[u8; 32]) -> PathBuf {
        let data = store.raw_segment(key).unwrap().unwrap();
        let path = store.blob_path(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        store.bodies.remove(key).unwrap();
        path
    }

    /// A large body's segments go to a pack, one after the other; damage there (bytes
    /// changed, a segment's place given another's, the pack cut short or gone) is found
    /// as damage to its body, never read as the body.
    #[test]
    fn segments_in_a_pack_read_back_and_damage_there_is_found() {
        use crate::tree::segment_cv;
        use std::os::unix::fs::FileExt;
        let seg = crate::SEGMENT;
        let a: Vec<u8> = (0..seg * 3).map(|i| (i % 13) as u8).collect();
        let b: Vec<u8> = (0..seg * 2 + 70_000).map(|i| (i % 17) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (ha, hb) = (write_in_segments(&store, &a), write_in_segments(&store, &b));
        let pack = store.committer.packs.path(0);
        let loc = |data: &[u8], i: usize| {
            let part = &data[i * seg..data.len().min((i + 1) * seg)];
            let v = store.bodies.get(segment_cv(part, i)).unwrap().unwrap();
            Loc::decode(&v).expect("a packed segment")
        };
        // Every segment of both, in the order written; b's last (70,000 bytes) too.
        assert_eq!(
            std::fs::metadata(&pack).unwrap().len(),
            (a.len() + b.len()) as u64
        );
        assert_eq!(loc(&b, 2).offset, (a.len() + 2 * seg) as u64);
        assert_eq!(store.get_body(&ha).unwrap().unwrap(), a);
        assert_eq!(store.verify_body(&hb).unwrap(), BodyState::Sound);
        store.commit().unwrap();
        let walk: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .collect();
        assert_eq!(walk.len(), 1, "one directory of packs, no file per segment");

        // A byte of a's second segment changed in the pack.
        let at = loc(&a, 1).offset + 10;
        let flip = |at: u64| {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&pack)
                .unwrap();
            let mut byte = [0u8];
            f.read_exact_at(&mut byte, at).unwrap();
            f.write_all_at(&[byte[0] ^ 1], at).unwrap();
        };
        flip(at);
        assert!(matches!(
            store.get_body(&ha).unwrap_err(),
            StoreError::DamagedBlob(_)
        ));
        assert!(matches!(
            store.verify_body(&ha).unwrap(),
            BodyState::Damaged(_)
        ));
        flip(at);
        assert_eq!(store.verify_body(&ha).unwrap(), BodyState::Sound);
        // a's second segment pointing at b's: sound bytes, not a's.
        let cv_a1 = segment_cv(&a[seg..seg * 2], 1);
        store
            .bodies
            .insert(cv_a1, &loc(&b, 1).encode()[..])
            .unwrap();
        assert!(matches!(
            store.verify_body(&ha).unwrap(),
            BodyState::Damaged(_)
        ));
        store
            .bodies
            .insert(cv_a1, &loc(&a, 0).encode()[..])
            .unwrap();
        assert!(matches!(
            store.verify_body(&ha).unwrap(),
            BodyState::Damaged(_)
        ));
        let right = Loc {
            offset: seg as u64,
            ..loc(&a, 0)
        };
        store.bodies.insert(cv_a1, &right.encode()[..]).unwrap();
        assert_eq!(store.verify_body(&ha).unwrap(), BodyState::Sound);
        // The pack cut in b's last segment: a still reads, b is damaged, not served.
        let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
        f.set_len((a.len() + b.len() - 5) as u64).unwrap();
        assert_eq!(store.get_body(&ha).unwrap().unwrap(), a);
        assert!(!store.has_body(&hb).unwrap());
        assert!(store.get_body(&hb).is_err());
        assert!(matches!(
            store.verify_body(&hb).unwrap(),
            BodyState::Damaged(_)
        ));
        // Gone.
        std::fs::remove_file(&pack).unwrap();
        assert_eq!(store.verify_body(&ha).unwrap(), BodyState::Missing);
        assert!(!store.has_body(&ha).unwrap());
    }

    /// Bytes of `path` in the page cache, as util-linux's `fincore` reads them.
    fn cached_bytes(path: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--output", "RES"])
            .arg(path)
            .output()
            .expect("fincore (util-linux) runs");
        assert!(out.status.success(), "fincore: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("fincore said {out:?}: {e}"))
    }

    /// What a flush synced (a pack's blobs, sled's file) leaves the page cache, so the
    /// next writes reuse those pages rather than take fresh ones (`page_cache`); what it
    /// held still reads back, from the disk.
    #[test]
    fn a_flush_drops_what_it_synced_from_the_page_cache_and_it_still_reads() {
        // On the project's disk, where stores live: the system's temporary directory may
        // be a tmpfs, whose pages are the files themselves and are never dropped.
        let on_disk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
        std::fs::create_dir_all(&on_disk).unwrap();
        let dir = tempfile::tempdir_in(&on_disk).unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..crate::SEGMENT * 3 + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        let hash = write_in_segments(&store, &data);
        for step in 1..=2000 {
            store.put_event("s", &crate::testing::event(step)).unwrap();
        }
        store.commit().unwrap();
        let pack = store.committer.packs.path(0);
        let sled_file = &store.committer.sled_file;
        assert!(std::fs::metadata(&pack).unwrap().len() >= (crate::SEGMENT * 3) as u64);
        assert!(std::fs::metadata(sled_file).unwrap().len() > 0);
        // A file written and synced beside them, not by the store, stays cached: what
        // follows is the store's doing, not the kernel's.
        let other = dir.path().join("other");
        let f = std::fs::File::create(&other).unwrap();
        std::io::Write::write_all(&mut &f, &data).unwrap();
        f.sync_all().unwrap();
        assert_eq!(
            cached_bytes(&other),
            data.len().div_ceil(4096) as u64 * 4096
        );
        assert_eq!(
            cached_bytes(&pack),
            0,
            "the pack's synced pages are dropped"
        );
        // sled's own flusher (every 500 ms) may have written a little since: 172 KB of
        // a 2.4 MB file was seen cached 1.2 s after the flush, all of it without the drop.
        let (len, cached) = (
            std::fs::metadata(sled_file).unwrap().len(),
            cached_bytes(sled_file),
        );
        assert!(
            cached < len / 4,
            "{cached} bytes of sled's {len} still cached"
        );
        assert_eq!(store.get_body(&hash).unwrap().unwrap(), data);
        assert_eq!(store.event("s", 2000).unwrap().unwrap().step, 2000);
    }

    fn write_in_segments(store: &SledStore, data: &[u8]) -> String {
        let mut w = crate::BodyWriter::new(0);
        w.write(store, data).unwrap();
        let crate::WrittenBody::Stored { hash, .. } = w.finish(store).unwrap() else {
            panic!("in segments");
        };
        hash.to_hex().to_string()
    }

    /// A flush that cannot sync a pack (its directory gone: a disk pulled, a hand in the
    /// store) reports so and still makes the events written before it durable: a copy of
    /// the store's files taken right after the commit, before any last flush, holds them.
    #[test]
    fn a_flush_that_cannot_sync_a_pack_still_makes_the_events_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("store")).unwrap();
        let data: Vec<u8> = (0..100_000).map(|i| (i % 241) as u8).collect();
        let h = blake3::hash(&data);
        store.put_blob(&h, &data).unwrap();
        for step in 1..=3 {
            store.put_event("s", &crate::testing::event(step)).unwrap();
        }
        let packs = store.committer.packs.path(0);
        let packs = packs.parent().unwrap();
        std::fs::remove_dir_all(packs).unwrap();
        std::fs::write(packs, b"not a directory").unwrap();
        let err = store.commit().expect_err("the failed sync is reported");
        assert!(err.to_string().contains("pack"), "{err}");
        // What is on disk now, as a process that exits at once leaves it.
        let copy = dir.path().join("copy");
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(dir.path().join("store"))
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
        drop(store);
        let copy = SledStore::open(&copy).unwrap();
        for step in 1..=3 {
            assert_eq!(copy.event("s", step).unwrap().unwrap().step, step);
        }
        assert!(!copy.has_body(&h.to_hex()).unwrap(), "its pack is gone");
    }

    /// A body between [`FILE_BLOB_MIN`] and a segment is one blob: in a pack, or in a
    /// file of its own (format 4), it reads and checks the same.
    #[test]
    fn a_whole_blob_in_a_pack_or_an_older_file_reads_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..100_000).map(|i| (i % 241) as u8).collect();
        let h = blake3::hash(&data);
        let hex = h.to_hex().to_string();
        store.put_blob(&h, &data).unwrap();
        store.put_blob(&h, &data).unwrap();
        let pack = store.committer.packs.path(0);
        assert_eq!(
            std::fs::metadata(&pack).unwrap().len(),
            100_000,
            "written once"
        );
        assert!(store.has_body(&hex).unwrap());
        assert_eq!(store.body_bytes(&hex).unwrap().unwrap(), data);
        let path = unpack_to_file(&store, h.as_bytes());
        assert!(store.has_body(&hex).unwrap());
        assert_eq!(store.get_body(&hex).unwrap().unwrap(), data);
        assert_eq!(store.verify_body(&hex).unwrap(), BodyState::Sound);
        // Stored again: the older file is the copy, nothing is appended.
        store.put_blob(&h, &data).unwrap();
        assert_eq!(std::fs::metadata(&pack).unwrap().len(), 100_000);
        std::fs::write(&path, &data[1..]).unwrap();
        assert!(matches!(
            store.verify_body(&hex).unwrap(),
            BodyState::Damaged(_)
        ));
        // A value that says "packed" but cannot say where.
        store
            .bodies
            .insert(h.as_bytes(), &[TAG_PACKED, 0, 1][..])
            .unwrap();
        assert!(matches!(
            store.get_body(&hex).unwrap_err(),
            StoreError::DamagedBlob(_)
        ));
    }

    /// A segment of a tree is checked at its place: changed bytes, another body's segment
    /// at the same place, or one cut short are found on reading and by `verify_body`.
    /// Here the segment is a file of its own, as a store of format 4 keeps it.
    #[test]
    fn a_damaged_or_swapped_segment_of_a_tree_is_found() {
        use crate::tree::{part_name, segment_cv};
        let seg = crate::SEGMENT;
        let a: Vec<u8> = (0..seg * 3).map(|i| (i % 13) as u8).collect();
        let b: Vec<u8> = (0..seg * 3).map(|i| (i % 17) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let write = |data: &[u8]| {
            let mut w = crate::BodyWriter::new(0);
            w.write(&store, data).unwrap();
            let crate::WrittenBody::Stored { hash, .. } = w.finish(&store).unwrap() else {
                panic!("in segments");
            };
            hash.to_hex().to_string()
        };
        let (ha, hb) = (write(&a), write(&b));
        assert_eq!(store.verify_body(&ha).unwrap(), BodyState::Sound);
        let cv_a1 = segment_cv(&a[seg..seg * 2], 1);
        let path = unpack_to_file(&store, &cv_a1);
        assert_eq!(store.verify_body(&ha).unwrap(), BodyState::Sound);
        // b's second segment in place of a's: a hash that is not its name.
        std::fs::write(&path, &b[seg..seg * 2]).unwrap();
        let err = store.get_body(&ha).unwrap_err();
        assert!(matches!(err, StoreError::DamagedBlob(_)), "{err}");
        assert!(
            matches!(store.verify_body(&ha).unwrap(), BodyState::Damaged(_)),
            "swapped"
        );
        // The right bytes read back as part 1, not as part 2.
        std::fs::write(&path, &a[seg..seg * 2]).unwrap();
        assert_eq!(
            store.get_body(&part_name(&cv_a1, 1)).unwrap().unwrap(),
            a[seg..seg * 2]
        );
        assert!(store.get_body(&part_name(&cv_a1, 2)).is_err());
        // Cut short.
        std::fs::write(&path, &a[seg..seg * 2 - 1]).unwrap();
        assert!(matches!(
            store.verify_body(&ha).unwrap(),
            BodyState::Damaged(_)
        ));
        std::fs::write(&path, &a[seg..seg * 2]).unwrap();
        assert_eq!(store.verify_body(&ha).unwrap(), BodyState::Sound);
        assert_eq!(store.verify_body(&hb).unwrap(), BodyState::Sound);
        // b's manifest under a's address: its segments are sound, but they are not a.
        let ka = parse_hex(&ha).unwrap();
        let ma = store.bodies.get(ka).unwrap().unwrap();
        let mb = store.bodies.get(parse_hex(&hb).unwrap()).unwrap().unwrap();
        store.bodies.insert(ka, mb).unwrap();
        assert!(matches!(
            store.get_body(&ha).unwrap_err(),
            StoreError::DamagedBlob(_)
        ));
        assert!(store.body_segments(&ha).is_err());
        assert!(matches!(
            store.verify_body(&ha).unwrap(),
            BodyState::Damaged(_)
        ));
        store.bodies.insert(ka, ma).unwrap();
        assert_eq!(store.get_body(&ha).unwrap().unwrap(), a);
        // Gone.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(store.verify_body(&ha).unwrap(), BodyState::Missing);
        assert!(!store.has_body(&ha).unwrap());
    }

    #[test]
    fn a_damaged_small_body_fails_its_hash_on_reading() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let h = blake3::hash(b"hello body");
        store.put_blob(&h, b"hello body").unwrap();
        assert_eq!(store.verify_body(&h.to_hex()).unwrap(), BodyState::Sound);
        assert_eq!(
            store.body_bytes(&h.to_hex()).unwrap().as_deref(),
            Some(&b"hello body"[..])
        );
        let mut v = store.bodies.get(h.as_bytes()).unwrap().unwrap().to_vec();
        v[3] ^= 1;
        store.bodies.insert(h.as_bytes(), v).unwrap();
        assert!(store.get_body(&h.to_hex()).is_err());
        assert!(matches!(
            store.body_bytes(&h.to_hex()),
            Err(StoreError::DamagedBlob(_))
        ));
        assert!(matches!(
            store.verify_body(&h.to_hex()).unwrap(),
            BodyState::Damaged(_)
        ));
        let missing = blake3::hash(b"never stored");
        assert_eq!(
            store.verify_body(&missing.to_hex()).unwrap(),
            BodyState::Missing
        );
    }
}
