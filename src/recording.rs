//! Opening a SESSION argument for reading: a session of the store, or a tape file.
//!
//! Read commands (`export`, `show`, `analyze`, `diff`, replay ...) take a SESSION that
//! may be a name in the store or a tape file. When a running daemon holds the store
//! (sled allows one process), the session is fetched from that daemon's control API
//! instead of failing obscurely.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use tapedeck_model::exchange::SessionInfo;
use tapedeck_store::tape::{self, TapeError};
use tapedeck_store::{read_daemon_info, SledStore, Store, StoreError};

pub use tapedeck_store::recording::Recording;

#[derive(Debug, Error)]
pub enum RecordingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tape(#[from] TapeError),
    #[error("the store at {path} is held by tapedeck pid {pid} ({listen}), and asking it failed: {source}")]
    Daemon {
        path: PathBuf,
        pid: u32,
        listen: String,
        #[source]
        source: crate::control::ClientError,
    },
    #[error("{0}")]
    Session(#[from] tapedeck_model::session::SessionNameError),
}

/// Whether a SESSION argument is a tape path whatever the store holds: it has a `/`
/// (`./a.jsonl` for a tape in the current directory). A bare name is a session when the
/// store has one of that name, else a tape file of that name if there is one.
pub fn is_tape_path(arg: &str) -> bool {
    arg.contains('/')
}

/// Opens the store for reading, or says which daemon holds it.
#[derive(Clone)]
pub enum StoreAccess {
    Open(Arc<SledStore>),
    Daemon { pid: u32, listen: String },
}

pub fn access_store(dir: &Path) -> Result<StoreAccess, StoreError> {
    match SledStore::open_to_read(dir) {
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
    /// Sessions of the store leave their events there ([`Recording::from_store_by_step`]).
    by_step: bool,
}

impl Loader {
    pub fn new(dir: &Path) -> Loader {
        Loader {
            dir: dir.to_path_buf(),
            access: None,
            by_step: false,
        }
    }

    /// A loader over the store under `dir` that the caller has already opened.
    pub fn with_store(dir: &Path, store: Arc<SledStore>) -> Loader {
        Loader {
            dir: dir.to_path_buf(),
            access: Some(StoreAccess::Open(store)),
            by_step: false,
        }
    }

    /// A session it loads from the store keeps only its events' steps in memory, and
    /// reads each event back when it is used (what a job that goes through the events
    /// once, like an export, needs).
    pub fn leaving_events_in_store(self) -> Loader {
        Loader {
            by_step: true,
            ..self
        }
    }

    /// Loads SESSION: a path (with a `/`) is a tape; a bare name is a session of the
    /// store, else a tape file of that name (so a session named `a.jsonl` stays readable
    /// while `./a.jsonl` is always the file).
    pub async fn load(&mut self, arg: &str) -> Result<Recording, RecordingError> {
        let tape = || -> Result<Recording, RecordingError> {
            let path = PathBuf::from(arg);
            let t = tape::read(&path)?;
            Ok(Recording::from_tape(t, path.display().to_string()))
        };
        if is_tape_path(arg) {
            return tape();
        }
        let file = Path::new(arg).is_file();
        if let Err(e) = tapedeck_model::session::SessionName::new(arg) {
            return if file { tape() } else { Err(e.into()) };
        }
        if file && !self.dir.exists() {
            return tape();
        }
        match self.load_session(arg).await {
            // A name that looks like a tape's and is no session: the file is what is missing.
            Err(RecordingError::Store(StoreError::NoSession(_)))
                if file || arg.ends_with(".jsonl") =>
            {
                tape()
            }
            other => other,
        }
    }

    /// Loads the session named `name` from the store (never a tape path, whatever the name).
    pub async fn load_session(&mut self, name: &str) -> Result<Recording, RecordingError> {
        tapedeck_model::session::SessionName::new(name)?;
        let access = self.access()?;
        load_from(name, &self.dir, access, self.by_step).await
    }

    /// The sessions of the store, from the store itself or from the daemon holding it.
    pub async fn sessions(&mut self) -> Result<Vec<SessionInfo>, RecordingError> {
        match self.access()? {
            StoreAccess::Open(store) => Ok(store.sessions()?),
            StoreAccess::Daemon { pid, listen } => {
                let daemon_err = |source| RecordingError::Daemon {
                    path: self.dir.clone(),
                    pid,
                    listen: listen.clone(),
                    source,
                };
                let (status, body) = crate::control::get(&self.dir, &listen, "/_tapedeck/sessions")
                    .await
                    .map_err(daemon_err)?;
                if status != 200 {
                    return Err(daemon_err(crate::control::ClientError::Status {
                        status,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    }));
                }
                serde_json::from_slice(&body)
                    .map_err(|e| daemon_err(crate::control::ClientError::SessionList(e)))
            }
        }
    }

    fn access(&mut self) -> Result<StoreAccess, StoreError> {
        if let Some(a) = &self.access {
            return Ok(a.clone());
        }
        let a = access_store(&self.dir)?;
        self.access = Some(a.clone());
        Ok(a)
    }
}

/// Lists the sessions in the store under `dir` (asking the daemon that holds it, if one does).
pub async fn sessions(dir: &Path) -> Result<Vec<SessionInfo>, RecordingError> {
    Loader::new(dir).sessions().await
}

async fn load_from(
    arg: &str,
    dir: &Path,
    access: StoreAccess,
    by_step: bool,
) -> Result<Recording, RecordingError> {
    match access {
        StoreAccess::Open(store) if by_step => Ok(Recording::from_store_by_step(store, arg)?),
        StoreAccess::Open(store) => Ok(Recording::from_store(store, arg)?),
        StoreAccess::Daemon { pid, listen } => {
            let path = format!("/_tapedeck/sessions/{arg}/tape");
            let daemon_err = |source| RecordingError::Daemon {
                path: dir.to_path_buf(),
                pid,
                listen: listen.clone(),
                source,
            };
            let (status, headers, text) = crate::control::get_with_headers(dir, &listen, &path)
                .await
                .map_err(daemon_err)?;
            if status == 404 {
                return Err(StoreError::NoSession(arg.to_string()).into());
            }
            if status != 200 {
                return Err(daemon_err(crate::control::ClientError::Status {
                    status,
                    body: String::from_utf8_lossy(&text).into_owned(),
                }));
            }
            let t = tape::read_from(
                std::io::Cursor::new(text),
                Path::new(&format!("daemon:{listen}")),
            )?;
            let mut rec =
                Recording::from_tape(t, format!("session {arg} (from the daemon at {listen})"));
            for d in crate::control::damage_of(&headers) {
                tracing::warn!(
                    "session {arg}, {d}; left out (run `tapedeck fsck` once the daemon stops)"
                );
                rec.damaged.push(d);
            }
            Ok(rec)
        }
    }
}
