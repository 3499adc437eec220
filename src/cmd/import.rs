//! `tapedeck import FILE`: load a tape into the store.
//!
//! The tape is read twice, event by event, never whole in memory. The first pass checks
//! every line and every body file beside the tape, and stores each large one a part at a
//! time, so a tape with a body larger than memory imports; it counts how many events name
//! each small body. Only once the whole tape has been read and checked does the second pass
//! write the events, as record writes them: each event with its small request and
//! response bodies inside its value (one write, and one read when replayed). A tape
//! names a body once, with its first event; a small body that later events name again
//! is kept in memory until its last one is written. A WebSocket message's body is stored
//! under its blake3, as record stores it. So a bad tape leaves the store's sessions as
//! they were (the bodies stored by the first pass, content-addressed, are harmless). A
//! tape that changes between the passes is refused, and what the second pass wrote of
//! it removed.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;

use super::{msg, CmdError, CmdResult};
use tapedeck_model::exchange::{BodyRef, Event};
use tapedeck_model::session::SessionName;
use tapedeck_store::tape::{TapeBody, TapeReader};
use tapedeck_store::tape_files::{BodyFileError, FileBody};
use tapedeck_store::{
    store_whole, BodyWriter, RunInfo, SledStore, Store, StoreError, WrittenBody, INLINE_MAX,
    WHOLE_BODY_LIMIT,
};

pub fn run(file: &Path, rename: Option<&str>, replace: bool, dir: &Path) -> CmdResult {
    let mut reader = TapeReader::open(file)?;
    let header = reader.header().clone();
    let name = match rename {
        Some(n) => SessionName::new(n)?,
        None => SessionName::new(&header.session)?,
    };
    let store = SledStore::open(dir)?;
    let exists = |store: &SledStore| store.session(name.as_str());
    if let Some(existing) = exists(&store)?.filter(|_| !replace) {
        return Err(msg(format!(
            "session {name} already exists in {} ({} events); pass --replace to overwrite it or --session NAME to import under another name",
            dir.display(),
            existing.events
        )));
    }
    let stamp = stamp(file);
    let mut named = Named::default();
    let mut events = 0usize;
    while let Some((ev, bodies)) = reader.next_event()? {
        for body in bodies {
            match body {
                // Goes inside its event in the second pass: only checked here.
                TapeBody::File(r, file) if r.len <= INLINE_MAX as u64 => {
                    read_file_body(&r, &file)?;
                }
                TapeBody::File(r, file) => store_file_body(&store, &r, &file)?,
                TapeBody::Inline(..) => {}
            }
        }
        named.count(&ev);
        events += 1;
    }
    if exists(&store)?.is_some() {
        store.delete_session(name.as_str())?;
    }
    let written = write_events(&store, file, name.as_str(), named);
    let changed = stamp != self::stamp(file);
    if written.is_err() || changed {
        store.delete_session(name.as_str())?;
        store.commit()?;
        let what = match (written, changed) {
            (Err(e), true) => format!("{} changed while it was imported: {e}", file.display()),
            (Ok(()), _) => format!("{} changed while it was imported", file.display()),
            (Err(e), false) => e.to_string(),
        };
        return Err(msg(format!("{what}; session {name} was not imported")));
    }
    if let Some(exit_code) = header.exit_code {
        store.put_run(name.as_str(), &RunInfo { exit_code })?;
    }
    store.commit()?;
    eprintln!(
        "imported {events} events from {} as session {name}",
        file.display()
    );
    Ok(0)
}

/// The tape's length and modification time: what tells that it changed between the passes.
fn stamp(file: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(file).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// A small request or response body of `ev` (those an event's value holds).
fn small_bodies(ev: &Event) -> impl Iterator<Item = &BodyRef> {
    std::iter::once(&ev.request.body)
        .chain(ev.response.as_ref().map(|r| &r.body))
        .filter(|b| b.len <= INLINE_MAX as u64)
}

/// How many events name each small body as their request or response body.
#[derive(Default)]
struct Named(HashMap<[u8; 32], u32>);

impl Named {
    /// Counts `ev` once for each small body it names (a request and its answer may be
    /// the same bytes).
    fn count(&mut self, ev: &Event) {
        let mut hashes: Vec<[u8; 32]> = small_bodies(ev)
            .filter_map(|b| blake3::Hash::from_hex(&b.b3).ok())
            .map(|h| *h.as_bytes())
            .collect();
        hashes.dedup();
        for h in hashes {
            let c = self.0.entry(h).or_default();
            *c = c.saturating_add(1);
        }
    }

    /// One naming of `h` written: whether a later event still names it.
    fn named_again(&mut self, h: &blake3::Hash) -> bool {
        match self.0.get_mut(h.as_bytes()) {
            Some(c) if *c > 1 => {
                *c -= 1;
                true
            }
            _ => {
                self.0.remove(h.as_bytes());
                false
            }
        }
    }
}

/// The second pass: every event of the tape, read and checked again, written with its
/// small request and response bodies inside its value.
fn write_events(
    store: &SledStore,
    file: &Path,
    session: &str,
    mut named: Named,
) -> Result<(), CmdError> {
    let mut reader = TapeReader::open(file)?;
    // Small bodies a later event names again (the tape gives them only once).
    let mut kept: HashMap<[u8; 32], Bytes> = HashMap::new();
    let mut inside = Vec::new();
    while let Some((ev, bodies)) = reader.next_event()? {
        // The bodies this line brings, by blake3.
        let mut new: HashMap<String, Bytes> = HashMap::new();
        for body in bodies {
            match body {
                TapeBody::Inline(r, data) => {
                    new.insert(r.b3, data);
                }
                // A larger one was stored by the first pass.
                TapeBody::File(r, file) if r.len <= INLINE_MAX as u64 => {
                    let data = read_file_body(&r, &file)?;
                    new.insert(r.b3, data);
                }
                TapeBody::File(..) => {}
            }
        }
        inside.clear();
        for b in small_bodies(&ev) {
            let h = blake3::Hash::from_hex(&b.b3)
                .map_err(|_| msg(format!("step {}: a body named {:?}", ev.step, b.b3)))?;
            if inside.iter().any(|(k, _)| *k == h) {
                continue;
            }
            let data = match new.get(&b.b3) {
                Some(d) => d.clone(),
                None => kept.get(h.as_bytes()).cloned().ok_or_else(|| {
                    msg(format!(
                        "step {}: body {} was named before but not kept",
                        ev.step, b.b3
                    ))
                })?,
            };
            if named.named_again(&h) {
                kept.insert(*h.as_bytes(), data.clone());
            } else {
                kept.remove(h.as_bytes());
            }
            inside.push((h, data));
        }
        // What goes under its blake3: a WebSocket message's body, a larger one inline.
        // One that a later event names as its request or response body is kept for it.
        for (b3, data) in new {
            let Ok(h) = blake3::Hash::from_hex(&b3) else {
                continue;
            };
            if inside.iter().any(|(k, _)| *k == h) {
                continue;
            }
            store_whole(store, &data)?;
            if named.0.contains_key(h.as_bytes()) {
                kept.insert(*h.as_bytes(), data);
            }
        }
        store.put_event_with(session, &ev, &inside)?;
    }
    Ok(())
}

/// A small body kept in a file beside the tape, whole, checked against its blake3 as
/// [`store_file_body`] checks a larger one.
fn read_file_body(r: &BodyRef, file: &FileBody) -> Result<Bytes, StoreError> {
    let mut data = Vec::new();
    for i in 0..file.parts() {
        data.extend_from_slice(&file.part(i)?);
    }
    let actual = blake3::hash(&data);
    if actual.to_hex().as_str() != r.b3 {
        return Err(BodyFileError::Mismatch {
            path: file.path.clone(),
            actual: actual.to_hex().to_string(),
        }
        .into());
    }
    Ok(data.into())
}

/// Stores a large body of the tape (a file beside it) as recording would have: whole when
/// small enough, else in parts, a part at a time.
fn store_file_body(store: &SledStore, r: &BodyRef, file: &FileBody) -> Result<(), StoreError> {
    let mut w = BodyWriter::new(WHOLE_BODY_LIMIT);
    for i in 0..file.parts() {
        w.write(store, &file.part(i)?)?;
    }
    match w.finish(store)? {
        WrittenBody::Whole(data) => store_whole(store, &data).map(|_| ()),
        WrittenBody::Stored { hash, .. } if hash.to_hex().as_str() == r.b3 => Ok(()),
        WrittenBody::Stored { hash, .. } => Err(BodyFileError::Mismatch {
            path: file.path.clone(),
            actual: hash.to_hex().to_string(),
        }
        .into()),
    }
}
