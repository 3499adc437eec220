//! A session loaded for reading: its events and a way to fetch their bodies.
//!
//! Read commands (`export`, `show`, `analyze`, `diff`, replay ...) take a SESSION that
//! may be a name in the store or a tape file. When a running daemon holds the store
//! (sled allows one process), the session is fetched from that daemon's control API
//! instead of failing obscurely.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use crate::exchange::{BodyRef, Event};
use crate::store::{read_daemon_info, SledStore, Store, StoreError};
use crate::tape::{self, TapeError};

#[derive(Debug, Error)]
pub enum RecordingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tape(#[from] TapeError),
    #[error("the store at {path} is held by tapedeck pid {pid} ({listen}), and asking it failed: {message}")]
    Daemon {
        path: PathBuf,
        pid: u32,
        listen: String,
        message: String,
    },
    #[error("{0}")]
    Session(#[from] crate::session::SessionNameError),
}

enum Bodies {
    Store(Arc<dyn Store>),
    Memory(HashMap<String, Bytes>),
}

pub struct Recording {
    pub session: String,
    pub events: Vec<Event>,
    bodies: Bodies,
    /// Where it came from, for messages.
    pub source: String,
    /// The exit status of the command it was recorded around, when known.
    pub exit_code: Option<i32>,
}

impl Recording {
    pub fn from_tape(t: tape::Tape, source: String) -> Recording {
        Recording {
            session: t.header.session,
            exit_code: t.header.exit_code,
            events: t.events,
            bodies: Bodies::Memory(t.bodies),
            source,
        }
    }

    pub fn from_store(store: Arc<dyn Store>, session: &str) -> Result<Recording, StoreError> {
        if store.session(session)?.is_none() {
            return Err(StoreError::NoSession(session.to_string()));
        }
        let events = store.events(session)?;
        let exit_code = store.run(session)?.map(|r| r.exit_code);
        Ok(Recording {
            session: session.to_string(),
            exit_code,
            events,
            bodies: Bodies::Store(store),
            source: format!("session {session}"),
        })
    }

    /// The store it was read from; `None` for a tape (or a daemon's copy).
    pub fn store(&self) -> Option<Arc<dyn Store>> {
        match &self.bodies {
            Bodies::Store(s) => Some(s.clone()),
            Bodies::Memory(_) => None,
        }
    }

    pub fn body(&self, r: &BodyRef) -> Result<Bytes, StoreError> {
        match &self.bodies {
            Bodies::Store(s) => s
                .get_body(&r.b3)?
                .map(Bytes::from)
                .ok_or_else(|| StoreError::MissingBody(r.b3.clone())),
            Bodies::Memory(m) => m
                .get(&r.b3)
                .cloned()
                .ok_or_else(|| StoreError::MissingBody(r.b3.clone())),
        }
    }

    /// Kind and key of a stored event under `rules` (which may differ from the rules it was
    /// recorded under). Large bodies match by their blake3 and are not read.
    pub fn identify(
        &self,
        ev: &Event,
        rules: &crate::rules::Rules,
    ) -> Result<(crate::exchange::Kind, String), StoreError> {
        use crate::exchange::canonical::{identify, KeyBody};
        let ct = crate::exchange::header(&ev.request.headers, "content-type");
        let r = &ev.request;
        if r.body.len as usize > crate::store::keep_limit(ct) {
            return Ok(identify(
                &r.method,
                &r.url,
                &r.headers,
                KeyBody::Large(&r.body.b3),
                rules,
            ));
        }
        let body = self.body(&r.body)?;
        Ok(identify(
            &r.method,
            &r.url,
            &r.headers,
            KeyBody::Whole(&body),
            rules,
        ))
    }

    /// The parts of a large body kept in the store, to read one at a time; `None` when
    /// the body is whole (or the recording is in memory).
    pub fn body_parts(&self, r: &BodyRef) -> Option<Vec<String>> {
        match &self.bodies {
            Bodies::Store(s) => s.body_segments(&r.b3).ok().flatten(),
            Bodies::Memory(_) => None,
        }
    }

    /// One part named by [`Recording::body_parts`].
    pub fn body_part(&self, hash_hex: &str) -> Result<Bytes, StoreError> {
        match &self.bodies {
            Bodies::Store(s) => s
                .get_body(hash_hex)?
                .map(Bytes::from)
                .ok_or_else(|| StoreError::MissingBody(hash_hex.to_string())),
            Bodies::Memory(m) => m
                .get(hash_hex)
                .cloned()
                .ok_or_else(|| StoreError::MissingBody(hash_hex.to_string())),
        }
    }

    /// The events at `indices` (in that order) with their bodies, as a recording of its own.
    pub fn subset(&self, indices: &[usize]) -> Recording {
        let events: Vec<Event> = indices
            .iter()
            .filter_map(|&i| self.events.get(i).cloned())
            .collect();
        let bodies = match &self.bodies {
            Bodies::Store(s) => Bodies::Store(s.clone()),
            Bodies::Memory(m) => Bodies::Memory(m.clone()),
        };
        Recording {
            session: self.session.clone(),
            events,
            bodies,
            source: self.source.clone(),
            exit_code: self.exit_code,
        }
    }

    /// Writes this recording as a tape.
    pub fn write_tape<W: std::io::Write>(
        &self,
        out: &mut W,
        progress: impl FnMut(usize),
    ) -> Result<(), String> {
        tape::write_run(
            out,
            &self.session,
            self.exit_code,
            &self.events,
            |r| self.body(r).map(|b| b.to_vec()).map_err(|e| e.to_string()),
            progress,
        )
    }
}

/// Whether a SESSION argument names a tape file rather than a session.
pub fn is_tape_path(arg: &str) -> bool {
    arg.contains('/')
        || arg.ends_with(".jsonl")
        || arg.ends_with(".tape")
        || Path::new(arg).is_file()
}

/// Opens the store for reading, or says which daemon holds it.
#[derive(Clone)]
pub enum StoreAccess {
    Open(Arc<SledStore>),
    Daemon { pid: u32, listen: String },
}

pub fn access_store(dir: &Path) -> Result<StoreAccess, StoreError> {
    match SledStore::open(dir) {
        Ok(s) => Ok(StoreAccess::Open(Arc::new(s))),
        Err(StoreError::Locked { path, holder }) => match read_daemon_info(dir) {
            Some(d) => Ok(StoreAccess::Daemon {
                pid: d.pid,
                listen: d.listen,
            }),
            None => Err(StoreError::Locked { path, holder }),
        },
        Err(e) => Err(e),
    }
}

/// Loads SESSION (a name in the store under `dir`, or a tape path).
pub async fn load(arg: &str, dir: &Path) -> Result<Recording, RecordingError> {
    Loader::new(dir).load(arg).await
}

/// Loads several sessions from one store, opening it once (sled allows one opener).
pub struct Loader {
    dir: PathBuf,
    access: Option<StoreAccess>,
}

impl Loader {
    pub fn new(dir: &Path) -> Loader {
        Loader {
            dir: dir.to_path_buf(),
            access: None,
        }
    }

    pub async fn load(&mut self, arg: &str) -> Result<Recording, RecordingError> {
        if is_tape_path(arg) {
            let path = PathBuf::from(arg);
            let t = tape::read(&path)?;
            return Ok(Recording::from_tape(t, path.display().to_string()));
        }
        crate::session::SessionName::new(arg)?;
        let access = match &self.access {
            Some(a) => a.clone(),
            None => {
                let a = access_store(&self.dir)?;
                self.access = Some(a.clone());
                a
            }
        };
        load_from(arg, &self.dir, access).await
    }
}

async fn load_from(
    arg: &str,
    dir: &Path,
    access: StoreAccess,
) -> Result<Recording, RecordingError> {
    match access {
        StoreAccess::Open(store) => Ok(Recording::from_store(store, arg)?),
        StoreAccess::Daemon { pid, listen } => {
            let path = format!("/_tapedeck/sessions/{arg}/tape");
            let daemon_err = |message: String| RecordingError::Daemon {
                path: dir.to_path_buf(),
                pid,
                listen: listen.clone(),
                message,
            };
            let (status, text) = crate::control::get(&listen, &path)
                .await
                .map_err(daemon_err)?;
            if status == 404 {
                return Err(StoreError::NoSession(arg.to_string()).into());
            }
            if status != 200 {
                return Err(daemon_err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&text)
                )));
            }
            let t = tape::read_from(
                std::io::Cursor::new(text),
                Path::new(&format!("daemon:{listen}")),
            )?;
            Ok(Recording::from_tape(
                t,
                format!("session {arg} (from the daemon at {listen})"),
            ))
        }
    }
}
