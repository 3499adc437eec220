//! Checking a store end to end (`tapedeck fsck`): every session, every event against its
//! checksum, every body against its blake3, and events the session summary counts but
//! the store no longer has. Damage is named by session and step.

use std::collections::HashMap;

use serde::Serialize;

use super::journal::Journal;
use super::{BodyState, Damage, Store, StoreError};

#[derive(Debug, Serialize)]
pub struct SessionReport {
    pub session: String,
    /// Events the session summary counts.
    pub expected: u64,
    /// Events read back whole (event and bodies sound).
    pub sound: u64,
    /// Events written before events carried a checksum ("no checksum").
    pub without_checksum: u64,
    pub damaged: Vec<Damage>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub sessions: Vec<SessionReport>,
    /// Distinct bodies read and checked.
    pub bodies_checked: usize,
}

impl Report {
    pub fn damaged_sessions(&self) -> impl Iterator<Item = &SessionReport> {
        self.sessions.iter().filter(|s| !s.damaged.is_empty())
    }

    pub fn is_sound(&self) -> bool {
        self.damaged_sessions().next().is_none()
    }
}

/// Checks every session of `store`, and every event `journal` says it flushed.
pub fn check(store: &dyn Store, journal: &Journal) -> Result<Report, StoreError> {
    let mut bodies: HashMap<String, BodyState> = HashMap::new();
    let mut sessions = Vec::new();
    let mut infos = store.sessions()?;
    // A session the journal knows and the store lost whole.
    for (name, steps) in &journal.sessions {
        if !infos.iter().any(|i| &i.name == name) {
            infos.push(tapedeck_model::exchange::SessionInfo {
                name: name.clone(),
                events: steps.len() as u64,
                first_unix_ns: 0,
                last_unix_ns: 0,
                bytes: 0,
                lineage: None,
            });
        }
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    for info in infos {
        let read = store.read_session(&info.name)?;
        let mut damaged = read.damaged.clone();
        damaged.extend(read.missing_bodies.iter().cloned());
        let mut sound = 0;
        for ev in &read.events {
            let mut whole = true;
            let response = ev.response.as_ref().map(|r| ("response", &r.body));
            for (side, body) in std::iter::once(("request", &ev.request.body)).chain(response) {
                let state = match (body.at, bodies.get(&body.b3)) {
                    // Kept inside its event: its own copy, checked where it is.
                    (Some(step), _) => store.verify_event_body(&info.name, step, &body.b3)?,
                    (None, Some(s)) => s.clone(),
                    (None, None) => {
                        let s = store.verify_body(&body.b3)?;
                        bodies.insert(body.b3.clone(), s.clone());
                        s
                    }
                };
                let problem = match state {
                    BodyState::Sound => continue,
                    BodyState::Missing => format!("its {side} body {} is missing", body.b3),
                    BodyState::Damaged(why) => {
                        format!("its {side} body {} is damaged: {why}", body.b3)
                    }
                };
                whole = false;
                damaged.push(Damage {
                    step: Some(ev.step),
                    problem,
                });
            }
            sound += u64::from(whole);
        }
        let seen =
            read.events.len() as u64 + read.damaged.len() as u64 + read.missing_bodies.len() as u64;
        let mut lost = 0;
        for (step, b3) in journal.sessions.get(&info.name).into_iter().flatten() {
            let problem = match read.sums.get(step) {
                Some(sum) if sum.to_hex().as_str() == b3 => continue,
                Some(_) => "it differs from the event the journal lists for this step",
                None if damaged.iter().any(|d| d.step == Some(*step)) => continue,
                None => {
                    lost += 1;
                    super::journal::LOST
                }
            };
            damaged.push(Damage {
                step: Some(*step),
                problem: problem.into(),
            });
        }
        let expected = info.events.max(seen + lost);
        if lost == 0 && info.events > seen {
            damaged.push(Damage {
                step: None,
                problem: format!(
                    "{} of its {} events are gone from the store",
                    info.events - seen,
                    info.events
                ),
            });
        }
        damaged.sort_by_key(|d| d.step);
        sessions.push(SessionReport {
            session: info.name,
            expected,
            sound,
            without_checksum: read.without_checksum,
            damaged,
        });
    }
    Ok(Report {
        sessions,
        bodies_checked: bodies.len(),
    })
}
