//! The event journal: one line per event that sled has made durable (session, step, and
//! the blake3 of the event), appended after each flush, outside sled's files.
//!
//! sled 0.34 recovers its log up to the first damaged record and drops the rest without
//! a word, session summaries included, so a store that lost events looks whole. The
//! journal is the independent account `tapedeck fsck` checks the store against: every
//! journalled event that sled no longer has is named by session and step. It only ever
//! lists events sled had flushed, so a crash (which loses unflushed events by design)
//! never shows up as damage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub const JOURNAL_FILE: &str = "journal";

/// One line: `session<TAB>step<TAB>blake3` for an event, `-<TAB>session` for a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Event {
        session: String,
        step: u64,
        b3: String,
    },
    Deleted {
        session: String,
    },
}

impl Entry {
    fn line(&self) -> String {
        match self {
            Entry::Event { session, step, b3 } => format!("{session}\t{step}\t{b3}\n"),
            Entry::Deleted { session } => format!("-\t{session}\n"),
        }
    }

    fn parse(line: &str) -> Option<Entry> {
        let mut f = line.split('\t');
        match (f.next()?, f.next()?, f.next()) {
            ("-", session, None) => Some(Entry::Deleted {
                session: session.to_string(),
            }),
            (session, step, Some(b3)) if b3.len() == 64 => Some(Entry::Event {
                session: session.to_string(),
                step: step.parse().ok()?,
                b3: b3.to_string(),
            }),
            _ => None,
        }
    }
}

/// Appends entries once sled has flushed the writes they describe.
pub struct JournalWriter {
    path: PathBuf,
    /// Whether this process has looked at how the file ends (a line a crash cut short).
    checked_end: AtomicBool,
}

impl JournalWriter {
    pub fn new(store_dir: &Path) -> JournalWriter {
        JournalWriter {
            path: store_dir.join(JOURNAL_FILE),
            checked_end: AtomicBool::new(false),
        }
    }

    /// Appends and syncs (called by the committer thread, after a successful flush).
    pub fn append(&self, entries: &[Entry]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(tapedeck_model::secure_fs::PRIVATE_FILE)
            .open(&self.path)?;
        let mut text = String::new();
        if !self.checked_end.swap(true, Ordering::Relaxed) {
            // A crash in the middle of an append leaves a line without its end; the
            // first entry written after it would join it and be lost with it.
            let len = f.metadata()?.len();
            let mut last = [b'\n'];
            if len > 0 {
                f.read_exact_at(&mut last, len - 1)?;
            }
            if last[0] != b'\n' {
                text.push('\n');
            }
        }
        text.extend(entries.iter().map(Entry::line));
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        crate::page_cache::drop_synced(&f);
        Ok(())
    }
}

/// What the journal says each session should hold: step → blake3 of the event.
#[derive(Debug, Default)]
pub struct Journal {
    pub sessions: HashMap<String, BTreeMap<u64, String>>,
}

/// How a step the journal lists and the store no longer has is named, wherever it is found.
pub const LOST: &str = "it is gone from the store (the journal lists it as flushed; sled lost it)";

/// The journal's text; empty when there is none (a store older than it).
fn text(store_dir: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(store_dir.join(JOURNAL_FILE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        r => r,
    }
}

/// A line's session and step, `None` for a deletion; `None` for a line that does not
/// parse (a write cut by a crash). Nothing is copied.
fn step_line(line: &str) -> Option<(&str, Option<u64>)> {
    let mut f = line.split('\t');
    match (f.next()?, f.next()?, f.next(), f.next()) {
        ("-", session, None, None) => Some((session, None)),
        (session, step, Some(b3), None) if b3.len() == 64 => {
            Some((session, Some(step.parse().ok()?)))
        }
        _ => None,
    }
}

/// The steps of `session` the journal of the store at `store_dir` lists as flushed (none
/// for a store older than the journal).
pub fn steps_of(store_dir: &Path, session: &str) -> std::io::Result<BTreeSet<u64>> {
    let text = text(store_dir)?;
    let mut steps = BTreeSet::new();
    for (name, step) in text.lines().filter_map(step_line) {
        if name == session {
            match step {
                Some(step) => steps.insert(step),
                None => {
                    steps.clear();
                    false
                }
            };
        }
    }
    Ok(steps)
}

/// How many steps the journal lists as flushed for each session: what [`Journal::read`]
/// gives without the events' hashes (a million events' are 64 MB of strings).
pub fn listed_counts(store_dir: &Path) -> std::io::Result<HashMap<String, usize>> {
    let text = text(store_dir)?;
    let mut sessions: HashMap<&str, BTreeSet<u64>> = HashMap::new();
    for (name, step) in text.lines().filter_map(step_line) {
        match step {
            Some(step) => {
                sessions.entry(name).or_default().insert(step);
            }
            None => {
                sessions.remove(name);
            }
        }
    }
    Ok(sessions
        .into_iter()
        .map(|(name, steps)| (name.to_string(), steps.len()))
        .collect())
}

impl Journal {
    /// Reads the journal of a store; empty when there is none (a store older than it).
    /// Lines that do not parse (a write cut by a crash) are skipped.
    pub fn read(store_dir: &Path) -> std::io::Result<Journal> {
        let text = text(store_dir)?;
        let mut j = Journal::default();
        for entry in text.lines().filter_map(Entry::parse) {
            match entry {
                Entry::Event { session, step, b3 } => {
                    j.sessions.entry(session).or_default().insert(step, b3);
                }
                Entry::Deleted { session } => {
                    j.sessions.remove(&session);
                }
            }
        }
        Ok(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_deletion_forgets_the_session() {
        let dir = tempfile::tempdir().unwrap();
        let w = JournalWriter::new(dir.path());
        let b3 = "a".repeat(64);
        let ev = |session: &str, step| Entry::Event {
            session: session.into(),
            step,
            b3: b3.clone(),
        };
        w.append(&[ev("a", 1), ev("a", 2), ev("b", 1)]).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(JOURNAL_FILE))
                .unwrap()
                .permissions(),
        );
        assert_eq!(
            mode & 0o777,
            0o600,
            "it names sessions: private, as the store"
        );
        w.append(&[Entry::Deleted {
            session: "a".into(),
        }])
        .unwrap();
        w.append(&[ev("a", 1)]).unwrap();
        let steps = |session: &str| {
            steps_of(dir.path(), session)
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(steps("a"), [1], "the steps since its deletion");
        let counts = listed_counts(dir.path()).unwrap();
        assert_eq!((counts["a"], counts["b"], counts.len()), (1, 1, 2));
        assert_eq!(steps("b"), [1]);
        assert!(steps("c").is_empty());
        // A torn last line is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .write_all(b"c\t1\tabc")
            .unwrap();
        let j = Journal::read(dir.path()).unwrap();
        assert_eq!(j.sessions["a"].len(), 1);
        assert_eq!(j.sessions["b"][&1], b3);
        assert!(!j.sessions.contains_key("c"));
        // The next process's first entry starts a line of its own: not lost with the
        // torn one.
        let w = JournalWriter::new(dir.path());
        w.append(&[ev("c", 2)]).unwrap();
        w.append(&[ev("c", 3)]).unwrap();
        assert_eq!(steps("c"), [2, 3]);
        let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
        assert_eq!(
            text.matches("\n\n").count(),
            0,
            "one line end added, once: {text:?}"
        );
    }
}
