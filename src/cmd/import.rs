//! `tapedeck import FILE`: load a tape into the store.
//!
//! The tape is read event by event: each body goes into the store as it is read (a body
//! file a part at a time), so a tape with a body larger than memory imports. Events are
//! written only once the whole tape has been read and checked, so a bad tape leaves the
//! store's sessions as they were (its bodies, content-addressed, are harmless).

use std::path::Path;

use super::{msg, CmdResult};
use tapedeck_model::session::SessionName;
use tapedeck_store::tape::{TapeBody, TapeReader};
use tapedeck_store::tape_files::BodyFileError;
use tapedeck_store::{
    store_whole, BodyWriter, RunInfo, SledStore, Store, StoreError, WrittenBody, WHOLE_BODY_LIMIT,
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
    let mut events = Vec::new();
    while let Some((ev, bodies)) = reader.next_event()? {
        for body in bodies {
            store_body(&store, body)?;
        }
        events.push(ev);
    }
    if exists(&store)?.is_some() {
        store.delete_session(name.as_str())?;
    }
    for ev in &events {
        store.put_event(name.as_str(), ev)?;
    }
    if let Some(exit_code) = header.exit_code {
        store.put_run(name.as_str(), &RunInfo { exit_code })?;
    }
    store.commit()?;
    eprintln!(
        "imported {} events from {} as session {name}",
        events.len(),
        file.display()
    );
    Ok(0)
}

/// Stores one body of the tape as recording would have: whole when small, else in parts.
fn store_body(store: &SledStore, body: TapeBody) -> Result<(), StoreError> {
    match body {
        TapeBody::Inline(_, data) => store_whole(store, &data).map(|_| ()),
        TapeBody::File(r, file) => {
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
    }
}
