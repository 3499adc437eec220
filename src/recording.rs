//! A session loaded for reading: its events and a way to fetch their bodies.
//!
//! Read commands (`export`, `show`, `analyze`, `diff`, replay ...) take a SESSION that
//! may be a name in the store or a tape file. When a running daemon holds the store
//! (sled allows one process), the session is fetched from that daemon's control API
//! instead of failing obscurely.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use foldhash::HashMap;
use thiserror::Error;

use crate::exchange::{BodyRef, Event, SessionInfo};
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
    /// Events of the store that could not be read back (left out of `events`).
    pub damaged: Vec<crate::store::Damage>,
}

impl Recording {
    pub fn from_tape(t: tape::Tape, source: String) -> Recording {
        Recording {
            session: t.header.session,
            exit_code: t.header.exit_code,
            events: t.events,
            bodies: Bodies::Memory(t.bodies),
            source,
            damaged: Vec::new(),
        }
    }

    pub fn from_store(store: Arc<dyn Store>, session: &str) -> Result<Recording, StoreError> {
        if store.session(session)?.is_none() {
            return Err(StoreError::NoSession(session.to_string()));
        }
        let read = store.read_session(session)?;
        for d in read.damaged.iter().chain(&read.missing_bodies) {
            tracing::warn!("session {session}, {d}; left out (run `tapedeck fsck`)");
        }
        let exit_code = store.run(session)?.map(|r| r.exit_code);
        Ok(Recording {
            session: session.to_string(),
            exit_code,
            events: read.events,
            bodies: Bodies::Store(store),
            source: format!("session {session}"),
            damaged: read.damaged,
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
        // Redacted again under today's rules (a field they name may have been stored in
        // clear), exactly as a live request is at replay time.
        let body = self.body(&r.body)?;
        let mut secrets = crate::exchange::redact::Secrets::default();
        let (body, whole) = crate::exchange::redact::stored_body(
            &body,
            ct,
            crate::store::keep_limit(ct),
            rules,
            &mut secrets,
        );
        let mut headers = r.headers.clone();
        crate::exchange::redact::scrub_headers(&mut headers, &secrets);
        let b3;
        let key_body = if whole {
            KeyBody::Whole(&body)
        } else {
            b3 = blake3::hash(&body).to_hex().to_string();
            KeyBody::Large(&b3)
        };
        Ok(identify(&r.method, &r.url, &headers, key_body, rules))
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
            damaged: self.damaged.clone(),
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
        if let Err(e) = crate::session::SessionName::new(arg) {
            return if file { tape() } else { Err(e.into()) };
        }
        if file && !self.dir.exists() {
            return tape();
        }
        match self.load_session(arg).await {
            Err(RecordingError::Store(StoreError::NoSession(_))) if file => tape(),
            other => other,
        }
    }

    /// Loads the session named `name` from the store (never a tape path, whatever the name).
    pub async fn load_session(&mut self, name: &str) -> Result<Recording, RecordingError> {
        crate::session::SessionName::new(name)?;
        let access = self.access()?;
        load_from(name, &self.dir, access).await
    }

    /// The sessions of the store, from the store itself or from the daemon holding it.
    pub async fn sessions(&mut self) -> Result<Vec<SessionInfo>, RecordingError> {
        match self.access()? {
            StoreAccess::Open(store) => Ok(store.sessions()?),
            StoreAccess::Daemon { pid, listen } => {
                let daemon_err = |message: String| RecordingError::Daemon {
                    path: self.dir.clone(),
                    pid,
                    listen: listen.clone(),
                    message,
                };
                let (status, body) = crate::control::get(&self.dir, &listen, "/_tapedeck/sessions")
                    .await
                    .map_err(daemon_err)?;
                if status != 200 {
                    return Err(daemon_err(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&body)
                    )));
                }
                serde_json::from_slice(&body)
                    .map_err(|e| daemon_err(format!("its session list is not readable: {e}")))
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
            let (status, text) = crate::control::get(dir, &listen, &path)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::canonical::identify;
    use crate::exchange::redact::{self, Secrets};
    use crate::exchange::{Kind, RequestRecord, Timing};
    use crate::rules::Rules;

    #[test]
    fn a_request_stored_in_clear_under_older_rules_is_keyed_as_a_live_one_is_today() {
        let body = br#"{"user":"ada","password":"stored-in-clear-1"}"#.to_vec();
        let b3 = blake3::hash(&body).to_hex().to_string();
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        let ev = Event {
            step: 1,
            kind: Kind::Tool,
            key: "old".into(),
            rules: Some("older-rules".into()),
            agent: None,
            request: RequestRecord {
                method: "POST".into(),
                url: "https://a.test/login".into(),
                version: "HTTP/1.1".into(),
                headers: headers.clone(),
                body: BodyRef {
                    b3: b3.clone(),
                    len: body.len() as u64,
                    encoding: None,
                },
            },
            response: None,
            timing: Timing::default(),
            error: None,
            ws: None,
        };
        let rec = Recording::from_tape(
            tape::Tape {
                header: tape::TapeHeader {
                    tapedeck_tape: tape::TAPE_VERSION,
                    session: "s".into(),
                    events: 1,
                    exit_code: None,
                },
                events: vec![ev.clone()],
                bodies: [(b3, Bytes::from(body.clone()))].into_iter().collect(),
            },
            "test".into(),
        );
        let rules = Rules::default();
        let (live, whole) = redact::stored_body(
            &body,
            Some("application/json"),
            1 << 20,
            &rules,
            &mut Secrets::default(),
        );
        assert!(whole);
        assert!(!String::from_utf8_lossy(&live).contains("stored-in-clear"));
        let want = identify(
            "POST",
            "https://a.test/login",
            &headers,
            crate::exchange::canonical::KeyBody::Whole(&live),
            &rules,
        );
        assert_eq!(rec.identify(&ev, &rules).unwrap(), want);
    }
}
