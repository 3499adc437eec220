//! `tapedeck import FILE`: load a tape into the store.

use std::path::Path;

use super::{msg, CmdResult};
use tapedeck_model::session::SessionName;
use tapedeck_store::tape;
use tapedeck_store::{store_whole, RunInfo, SledStore, Store};

pub fn run(file: &Path, rename: Option<&str>, replace: bool, dir: &Path) -> CmdResult {
    let t = tape::read(file)?;
    let name = match rename {
        Some(n) => SessionName::new(n)?,
        None => SessionName::new(&t.header.session)?,
    };
    let store = SledStore::open(dir)?;
    if let Some(existing) = store.session(name.as_str())? {
        if !replace {
            return Err(msg(format!(
                "session {name} already exists in {} ({} events); pass --replace to overwrite it or --session NAME to import under another name",
                dir.display(),
                existing.events
            )));
        }
        store.delete_session(name.as_str())?;
    }
    for data in t.bodies.values() {
        store_whole(&store, data)?;
    }
    for ev in &t.events {
        store.put_event(name.as_str(), ev)?;
    }
    if let Some(exit_code) = t.header.exit_code {
        store.put_run(name.as_str(), &RunInfo { exit_code })?;
    }
    store.commit()?;
    eprintln!(
        "imported {} events from {} as session {name}",
        t.events.len(),
        file.display()
    );
    Ok(0)
}
