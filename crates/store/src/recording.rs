//! A session loaded for reading: its events and a way to fetch their bodies, from the
//! store or from a tape (small bodies in memory, large ones in checked files beside it).

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use foldhash::HashMap;

use crate::tape::{self, TapeWriteError};
use crate::tape_files::FileBody;
use crate::{Store, StoreError, StoredEvent};
use tapedeck_model::exchange::{BodyRef, Event};

enum Bodies {
    /// The store and the session's name in it (what every read of the store names, even
    /// if the recording's `session` is changed for display).
    Store(Arc<dyn Store>, String),
    /// A tape's: inline bodies in memory, larger ones in files read part by part.
    Tape(Arc<HashMap<String, Bytes>>, Arc<HashMap<String, FileBody>>),
}

/// The name of part `i` of a tape's body file, as [`Recording::body_parts`] lists it (a
/// store's parts are named by their blake3 alone, so the two never collide).
fn file_part(b3: &str, i: usize) -> String {
    format!("{b3}:{i}")
}

pub struct Recording {
    pub session: String,
    pub events: Vec<Event>,
    bodies: Bodies,
    /// Where it came from, for messages.
    pub source: String,
    /// The exit status of the command it was recorded around, when known.
    pub exit_code: Option<i32>,
    /// Events of the store that could not be read back, or whose bodies are gone (left
    /// out of `events`).
    pub damaged: Vec<crate::Damage>,
    /// Once the events are let go ([`Recording::release_events`]): what is kept of them.
    released: Option<Released>,
}

/// What a recording keeps of its events once they are let go.
struct Released {
    /// The step of each, to read it back by.
    steps: Vec<u64>,
    /// Whether any is an LLM call.
    llm: bool,
    /// What a tape of them says in its header.
    shape: tape::RunShape,
}

/// What a session read from the store left out, each said once: events that are
/// damaged or whose bodies are gone, and events the store's journal lists as flushed that
/// the store no longer has at all (sled recovers its log only up to a damaged record, and
/// drops the rest without a word: a session read without this would look whole, and its
/// replay would blame the agent for the calls it no longer finds).
fn damage_of(
    store: &dyn Store,
    session: &str,
    read_steps: impl Iterator<Item = u64>,
    read: &mut crate::SessionRead,
) -> Result<Vec<crate::Damage>, StoreError> {
    let mut damaged: Vec<crate::Damage> = std::mem::take(&mut read.damaged)
        .into_iter()
        .chain(std::mem::take(&mut read.missing_bodies))
        .collect();
    if let Some(mut listed) = store.journalled_steps(session)? {
        for step in read_steps.chain(damaged.iter().filter_map(|d| d.step)) {
            listed.remove(&step);
        }
        damaged.extend(listed.into_iter().map(|step| crate::Damage {
            step: Some(step),
            problem: crate::journal::LOST.into(),
        }));
    }
    damaged.sort_by_key(|d| d.step);
    for d in &damaged {
        tracing::warn!("session {session}, {d}; left out (run `tapedeck fsck`)");
    }
    Ok(damaged)
}

impl Recording {
    pub fn from_tape(t: tape::Tape, source: String) -> Recording {
        // An event whose bodies the recorder could not store is left out, as from a store.
        let mut events = t.events;
        let mut damaged = Vec::new();
        events.retain(|ev| match crate::unstored(ev) {
            Some(damage) => {
                damaged.push(damage);
                false
            }
            None => true,
        });
        Recording {
            session: t.header.session,
            exit_code: t.header.exit_code,
            events,
            bodies: Bodies::Tape(Arc::new(t.bodies), Arc::new(t.files)),
            source,
            damaged,
            released: None,
        }
    }

    pub fn from_store(store: Arc<dyn Store>, session: &str) -> Result<Recording, StoreError> {
        if store.session(session)?.is_none() {
            return Err(StoreError::NoSession(session.to_string()));
        }
        let mut read = store.read_session(session)?;
        let steps: Vec<u64> = read.events.iter().map(|e| e.step).collect();
        let damaged = damage_of(&*store, session, steps.into_iter(), &mut read)?;
        let exit_code = store.run(session)?.map(|r| r.exit_code);
        Ok(Recording {
            session: session.to_string(),
            exit_code,
            events: read.events,
            bodies: Bodies::Store(store, session.to_string()),
            source: format!("session {session}"),
            damaged,
            released: None,
        })
    }

    /// A session of the store with its events left in the store: only their steps are
    /// kept, and [`Recording::event`] reads each back when it is needed (what a replay
    /// of a long session uses, so its events never all sit in memory at once).
    pub fn from_store_by_step(
        store: Arc<dyn Store>,
        session: &str,
    ) -> Result<Recording, StoreError> {
        if store.session(session)?.is_none() {
            return Err(StoreError::NoSession(session.to_string()));
        }
        let mut steps = Vec::new();
        let mut llm = false;
        let mut shape = tape::RunShape::default();
        let mut read = store.scan_session(session, &mut |ev| {
            steps.push(ev.step);
            llm |= ev.kind == tapedeck_model::exchange::Kind::Llm;
            shape.see(&ev);
        })?;
        let damaged = damage_of(&*store, session, steps.iter().copied(), &mut read)?;
        let exit_code = store.run(session)?.map(|r| r.exit_code);
        Ok(Recording {
            session: session.to_string(),
            exit_code,
            events: Vec::new(),
            bodies: Bodies::Store(store, session.to_string()),
            source: format!("session {session}"),
            damaged,
            released: Some(Released { steps, llm, shape }),
        })
    }

    /// The step of event `i` (also once the events are let go: no store read).
    pub fn step(&self, i: usize) -> Option<u64> {
        match &self.released {
            Some(r) => r.steps.get(i).copied(),
            None => self.events.get(i).map(|e| e.step),
        }
    }

    /// How many events it has (also once they are let go).
    pub fn len(&self) -> usize {
        self.released
            .as_ref()
            .map_or(self.events.len(), |r| r.steps.len())
    }

    /// Whether any of its events is an LLM call.
    pub fn has_llm_calls(&self) -> bool {
        match &self.released {
            Some(r) => r.llm,
            None => self
                .events
                .iter()
                .any(|e| e.kind == tapedeck_model::exchange::Kind::Llm),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Event `i`: from memory, or read back from the store once the events were let go.
    pub fn event(&self, i: usize) -> Result<Cow<'_, Event>, StoreError> {
        let missing = |step| StoreError::MissingEvent {
            session: self.session.clone(),
            step,
        };
        match (&self.released, &self.bodies) {
            (Some(r), Bodies::Store(store, name)) => {
                let step = *r.steps.get(i).ok_or_else(|| missing(0))?;
                // Its checksum was checked when the recording was read.
                store
                    .event_again(name, step)?
                    .map(Cow::Owned)
                    .ok_or_else(|| missing(step))
            }
            _ => self
                .events
                .get(i)
                .map(Cow::Borrowed)
                .ok_or_else(|| missing(0)),
        }
    }

    /// Whether the recording let its events go: [`Recording::event`] reads them back from
    /// the store.
    pub fn released(&self) -> bool {
        self.released.is_some()
    }

    /// Event `i` as the store keeps it, in one read: its JSON (for
    /// [`Recording::decode_event`], where the events were let go) and the bodies kept
    /// inside it ([`StoredEvent::body`]). `None` for a recording read from a tape.
    pub fn event_stored(&self, i: usize) -> Result<Option<StoredEvent>, StoreError> {
        let Bodies::Store(store, name) = &self.bodies else {
            return Ok(None);
        };
        let step = match &self.released {
            Some(r) => r.steps.get(i).copied(),
            None => self.events.get(i).map(|e| e.step),
        }
        .ok_or_else(|| StoreError::MissingEvent {
            session: self.session.clone(),
            step: 0,
        })?;
        store
            .event_stored(name, step)?
            .map(Some)
            .ok_or_else(|| StoreError::MissingEvent {
                session: self.session.clone(),
                step,
            })
    }

    /// Decodes the JSON of what [`Recording::event_stored`] returned for event `i`, its
    /// bodies kept inside marked so ([`BodyRef::at`](tapedeck_model::exchange::BodyRef::at)).
    pub fn decode_event(&self, i: usize, stored: &StoredEvent) -> Result<Event, StoreError> {
        let mut ev = crate::sled_store::from_json::<Event>(&stored.json).map_err(|e| {
            StoreError::DamagedEvent {
                session: self.session.clone(),
                step: self
                    .released
                    .as_ref()
                    .and_then(|r| r.steps.get(i).copied())
                    .unwrap_or(0),
                problem: crate::EventDamage::Unreadable(e),
            }
        })?;
        crate::mark_inside(&mut ev, |body| stored.holds(&body.b3));
        Ok(ev)
    }

    /// Calls `f` with each event and its index, in step order: from memory, or (once the
    /// events were let go) in one pass over the store.
    pub fn for_each_event<E: From<StoreError>>(
        &self,
        f: &mut dyn FnMut(usize, &Event) -> Result<(), E>,
    ) -> Result<(), E> {
        match (&self.released, &self.bodies) {
            (Some(Released { steps, .. }), Bodies::Store(store, name)) => {
                let mut at = 0usize;
                let mut failed = None;
                store.scan_session(name, &mut |ev| {
                    // Events added to the session since it was opened are not its.
                    while steps.get(at).is_some_and(|s| *s < ev.step) {
                        at += 1;
                    }
                    if failed.is_none() && steps.get(at) == Some(&ev.step) {
                        failed = f(at, &ev).err();
                        at += 1;
                    }
                })?;
                failed.map_or(Ok(()), Err)
            }
            _ => self
                .events
                .iter()
                .enumerate()
                .try_for_each(|(i, ev)| f(i, ev)),
        }
    }

    /// Lets the events of a session of the store go, keeping their steps: each is read
    /// back from the store by [`Recording::event`] when it is needed. (A tape's events
    /// stay: there is no store to read them from.)
    pub fn release_events(&mut self) {
        if matches!(self.bodies, Bodies::Store(..)) && self.released.is_none() {
            self.released = Some(Released {
                steps: self.events.iter().map(|e| e.step).collect(),
                llm: self.has_llm_calls(),
                shape: tape::RunShape::of(&self.events),
            });
            self.events = Vec::new();
        }
    }

    /// The store it was read from; `None` for a tape (or a daemon's copy).
    pub fn store(&self) -> Option<Arc<dyn Store>> {
        match &self.bodies {
            Bodies::Store(s, _) => Some(s.clone()),
            Bodies::Tape(..) => None,
        }
    }

    pub fn body(&self, r: &BodyRef) -> Result<Bytes, StoreError> {
        match &self.bodies {
            Bodies::Store(s, name) => match r.at {
                Some(step) => s.event_body(name, step, &r.b3)?,
                None => s.body_bytes(&r.b3)?,
            }
            .ok_or_else(|| StoreError::MissingBody(r.b3.clone())),
            Bodies::Tape(inline, files) => match (inline.get(&r.b3), files.get(&r.b3)) {
                (Some(b), _) => Ok(b.clone()),
                (None, Some(f)) => Ok(f.read_all()?),
                (None, None) => Err(StoreError::MissingBody(r.b3.clone())),
            },
        }
    }

    /// Pushes body `r` to `sink` a part at a time (a large body is never whole in memory).
    pub fn stream_body(&self, r: &BodyRef, sink: tape::BodySink) -> Result<(), TapeWriteError> {
        match self.body_parts(r) {
            Some(parts) => parts.iter().try_for_each(|p| sink(&self.body_part(p)?)),
            None => sink(&self.body(r)?),
        }
    }

    /// Kind and key of a stored event under `rules` (which may differ from the rules it was
    /// recorded under). Large bodies match by their blake3 and are not read.
    pub fn identify(
        &self,
        ev: &Event,
        rules: &tapedeck_model::rules::Rules,
    ) -> Result<(tapedeck_model::exchange::Kind, String), StoreError> {
        identify_request(ev, rules, |b| self.body(b), |b, f| self.body_pieces(b, f))
    }

    /// Hands a body to `f` a part at a time (a large body is never read whole).
    pub fn body_pieces(&self, r: &BodyRef, f: &mut dyn FnMut(&[u8])) -> Result<(), StoreError> {
        match self.body_parts(r) {
            Some(parts) => parts.iter().try_for_each(|p| {
                f(&self.body_part(p)?);
                Ok(())
            }),
            None => {
                f(&self.body(r)?);
                Ok(())
            }
        }
    }

    /// Whether the events' keys may be taken as stored when the rules are the same: not
    /// for a tape, a file people edit (a request changed by hand keeps its old key).
    pub fn keys_trusted(&self) -> bool {
        !matches!(self.bodies, Bodies::Tape(..))
    }

    /// The kind and key of every event held in memory (a tape's), computed on every
    /// core: a tape of 100,000 events is keyed again each time it is replayed. `None`
    /// when the events are read from the store as they are needed.
    pub fn identify_all(
        &self,
        rules: &tapedeck_model::rules::Rules,
    ) -> Option<Result<Vec<(tapedeck_model::exchange::Kind, String)>, StoreError>> {
        if self.released.is_some() {
            return None;
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = self.events.len().div_ceil(threads).max(1024);
        let parts: Vec<Result<Vec<_>, StoreError>> = std::thread::scope(|s| {
            let running: Vec<_> = self
                .events
                .chunks(per)
                .map(|evs| s.spawn(move || evs.iter().map(|ev| self.identify(ev, rules)).collect()))
                .collect();
            running
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut all = Vec::with_capacity(self.events.len());
        for part in parts {
            match part {
                Ok(keys) => all.extend(keys),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(all))
    }

    /// The parts of a large body (in the store, or in a file beside a tape), to read one
    /// at a time; `None` when the body is whole.
    pub fn body_parts(&self, r: &BodyRef) -> Option<Vec<String>> {
        match &self.bodies {
            // Only a body over a segment is kept in parts (`get_body` joins any other):
            // a small one costs no lookup here.
            Bodies::Store(..) if r.len <= crate::SEGMENT as u64 => None,
            Bodies::Store(s, _) => s.body_segments(&r.b3).ok().flatten(),
            Bodies::Tape(_, files) => files
                .get(&r.b3)
                .map(|f| (0..f.parts()).map(|i| file_part(&r.b3, i)).collect()),
        }
    }

    /// One part named by [`Recording::body_parts`].
    pub fn body_part(&self, hash_hex: &str) -> Result<Bytes, StoreError> {
        match &self.bodies {
            Bodies::Store(s, _) => s
                .get_body(hash_hex)?
                .map(Bytes::from)
                .ok_or_else(|| StoreError::MissingBody(hash_hex.to_string())),
            Bodies::Tape(inline, files) => {
                if let Some(b) = inline.get(hash_hex) {
                    return Ok(b.clone());
                }
                let missing = || StoreError::MissingBody(hash_hex.to_string());
                let (b3, i) = hash_hex.split_once(':').ok_or_else(missing)?;
                let i: usize = i.parse().map_err(|_| missing())?;
                Ok(files.get(b3).ok_or_else(missing)?.part(i)?)
            }
        }
    }

    /// The events at `indices` (in that order) with their bodies, as a recording of its own.
    pub fn subset(&self, indices: &[usize]) -> Recording {
        let events: Vec<Event> = indices
            .iter()
            .filter_map(|&i| self.event(i).ok().map(Cow::into_owned))
            .collect();
        let bodies = match &self.bodies {
            Bodies::Store(s, name) => Bodies::Store(s.clone(), name.clone()),
            Bodies::Tape(inline, files) => Bodies::Tape(inline.clone(), files.clone()),
        };
        Recording {
            session: self.session.clone(),
            events,
            bodies,
            source: self.source.clone(),
            exit_code: self.exit_code,
            damaged: self.damaged.clone(),
            released: None,
        }
    }

    /// Writes this recording as a tape; with `files`, its large bodies go to files
    /// beside it (else every body is inline). Events left in the store are read back one
    /// at a time, in one pass: the tape's size in memory is one event's.
    pub fn write_tape<W: std::io::Write>(
        &self,
        out: &mut W,
        files: Option<&mut crate::tape_files::BodyFiles>,
        progress: impl FnMut(usize),
    ) -> Result<(), TapeWriteError> {
        tape::write_run(
            out,
            tape::Run {
                session: &self.session,
                exit_code: self.exit_code,
                shape: match &self.released {
                    Some(r) => r.shape,
                    None => tape::RunShape::of(&self.events),
                },
            },
            |each| self.for_each_event(each),
            |r, sink| self.stream_body(r, sink),
            files,
            progress,
        )
    }
}

/// An event's kind and key under `rules`, computed from its request as stored (its body
/// read with `body` when it is small enough to be matched by content; a multipart body
/// too large for that read a piece at a time with `pieces`, for its parts).
pub fn identify_request(
    ev: &Event,
    rules: &tapedeck_model::rules::Rules,
    body: impl FnOnce(&BodyRef) -> Result<Bytes, StoreError>,
    pieces: impl FnOnce(&BodyRef, &mut dyn FnMut(&[u8])) -> Result<(), StoreError>,
) -> Result<(tapedeck_model::exchange::Kind, String), StoreError> {
    use tapedeck_model::exchange::canonical::{identify, KeyBody, MultipartDigest};
    let ct = tapedeck_model::exchange::header(&ev.request.headers, "content-type");
    let r = &ev.request;
    // Redacted again under today's rules (a field or a path they name may have been
    // stored in clear, or written into a tape by hand), exactly as a live request is at
    // replay time.
    let mut secrets = tapedeck_model::exchange::redact::Secrets::default();
    let mut url = tapedeck_model::exchange::redact::url(&r.url, rules, &mut secrets);
    if r.body.len as usize > crate::keep_limit(ct) {
        let parts = match MultipartDigest::new(ct, rules) {
            Some(mut d) => {
                pieces(&r.body, &mut |piece| d.feed(piece))?;
                d.finish()
            }
            None => None,
        };
        let body = match parts {
            Some(parts) => KeyBody::Parts(parts),
            None => KeyBody::Large(&r.body.b3),
        };
        return Ok(identify(&r.method, &url, &r.headers, body, rules));
    }
    let body = body(&r.body)?;
    let (body, whole) = tapedeck_model::exchange::redact::stored_body(
        &body,
        ct,
        crate::keep_limit(ct),
        rules,
        &mut secrets,
    );
    let mut headers = r.headers.clone();
    tapedeck_model::exchange::redact::scrub_headers(&mut headers, &secrets);
    tapedeck_model::exchange::redact::scrub_url(&mut url, rules, &mut secrets);
    let b3;
    let key_body = if whole {
        KeyBody::Whole(&body)
    } else {
        b3 = blake3::hash(&body).to_hex().to_string();
        KeyBody::Large(&b3)
    };
    Ok(identify(&r.method, &url, &headers, key_body, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapedeck_model::exchange::canonical::identify;
    use tapedeck_model::exchange::redact::{self, Secrets};
    use tapedeck_model::exchange::{Kind, RequestRecord, Timing};
    use tapedeck_model::rules::Rules;

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
                    at: None,
                },
            },
            response: None,
            timing: Timing::default(),
            error: None,
            ws: None,
            injected: None,
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
                files: Default::default(),
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
            tapedeck_model::exchange::canonical::KeyBody::Whole(&live),
            &rules,
        );
        assert_eq!(rec.identify(&ev, &rules).unwrap(), want);
    }
}
