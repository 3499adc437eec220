//! Exchanges the store could not take at all: their answers reached the agent, their
//! events are not in the store. Record and a what-if run's fork both keep count with it.
//!
//! A session that stops being stored midway (its disk ran low, see
//! [`crate::space`]) would read back as a whole run that ended early: `fsck`
//! found it sound and a replay served it until the first request it lacked. So the first
//! exchange of each such run of losses is written, without its bodies, into the room the
//! store's floor kept, with an error that says it was not stored
//! ([`crate::UNSTORED`]): `fsck` names the step, and replay refuses the session
//! as it refuses one with a hole. The recorder says so once per run of losses, not once
//! per exchange, and again when the store takes the session's exchanges again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::{Store, StoreError};
use tapedeck_model::exchange::{ErrorKind, Event, ExchangeError};

#[derive(Default)]
pub struct Losses {
    /// Exchanges not stored at all.
    count: AtomicU64,
    /// Runs of losses whose mark could not be stored either.
    unmarked: AtomicU64,
    /// Whether a session is in a run of losses (so that a stored exchange need not lock).
    any: AtomicBool,
    /// Sessions in a run of losses: the step it began at, and how many it has lost.
    runs: Mutex<HashMap<String, (u64, u64)>>,
    /// The first loss, for the recorder's last line: `session#step: error`.
    first: Mutex<Option<String>>,
}

impl Losses {
    /// `event` of `session` could not be stored (`e`).
    pub fn lost(&self, store: &dyn Store, session: &str, event: &Event, e: &StoreError) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| format!("{session}#{}: {e}", event.step));
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(run) = runs.get_mut(session) {
            run.1 += 1;
            tracing::debug!("not stored: {session}#{}: {e}", event.step);
            return;
        }
        runs.insert(session.to_string(), (event.step, 1));
        self.any.store(true, Ordering::Release);
        drop(runs);
        let marked = store.put_event_past_floor(session, &mark(event, e));
        match marked {
            Ok(()) => tracing::error!(
                "cannot store {session}#{}: {e}. The agent still gets its answers; {session}'s exchanges are not stored until the store takes them again, and replay refuses {session} (`tapedeck fsck` names the step)",
                event.step
            ),
            Err(e2) => {
                self.unmarked.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                "cannot store {session}#{}: {e}. The agent still gets its answers; {session}'s exchanges are not stored until the store takes them again. Nor could the mark that says so be stored ({e2}): {session} reads as if it ended before step {}",
                    event.step,
                    event.step
                )
            }
        }
    }

    /// `session`'s exchange at `step` was stored: a run of losses it was in is over.
    pub fn stored(&self, session: &str, step: u64) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((from, n)) = runs.remove(session) {
            tracing::warn!(
                "storing {session} again from step {step}: {n} of its exchanges from step {from} on were not stored"
            );
        }
        if runs.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }

    /// How many exchanges could not be stored, the first of them with why
    /// (`session#step: error`), and in how many runs of them the mark of where a session
    /// stopped being stored could not be stored either.
    pub fn totals(&self) -> (u64, Option<String>, u64) {
        (
            self.count.load(Ordering::Relaxed),
            self.first.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            self.unmarked.load(Ordering::Relaxed),
        )
    }
}

/// The event that marks `event` as not stored: its bodies are left out (they were not
/// stored) and its error says why, so that every reader takes it as damage.
fn mark(event: &Event, e: &StoreError) -> Event {
    let mut mark = event.clone();
    mark.error = Some(ExchangeError {
        kind: ErrorKind::Other,
        message: crate::unstored_error(format!(
            "{e}; neither it nor the session's exchanges after it were stored until the store took them again"
        )),
    });
    mark
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SledStore;
    use tapedeck_model::exchange::BodyRef;

    /// A POST event at `step` whose request body is `request {step}`.
    fn event(step: u64) -> Event {
        let mut ev = crate::testing::event(step);
        let b = format!("request {step}");
        ev.request.method = "POST".into();
        ev.request.body = BodyRef::of(
            blake3::hash(b.as_bytes()).to_hex().to_string(),
            b.len() as u64,
        );
        ev
    }

    /// What a recorder does with one exchange: store it, or note it lost.
    fn record(store: &SledStore, losses: &Losses, step: u64) {
        let ev = event(step);
        let body = format!("request {step}");
        let whole = [(blake3::hash(body.as_bytes()), bytes::Bytes::from(body))];
        match store.put_event_with("s", &ev, &whole) {
            Ok(()) => losses.stored("s", step),
            Err(e) => losses.lost(store, "s", &ev, &e),
        }
    }

    #[test]
    fn each_run_of_losses_is_marked_at_its_first_step_and_reads_as_damage_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let losses = Losses::default();
        record(&store, &losses, 1);
        // The disk is "low": a floor above anything a disk has.
        store.set_min_free(u64::MAX / 4);
        record(&store, &losses, 2);
        record(&store, &losses, 3);
        store.set_min_free(0);
        record(&store, &losses, 4);
        store.set_min_free(u64::MAX / 4);
        record(&store, &losses, 5);
        store.set_min_free(crate::space::DEFAULT_MIN_FREE);

        let (count, first, unmarked) = losses.totals();
        assert_eq!((count, unmarked), (3, 0));
        let first = first.unwrap();
        assert!(first.starts_with("s#2: the disk of the store"), "{first}");
        let read = store.read_session("s").unwrap();
        let steps: Vec<u64> = read.events.iter().map(|e| e.step).collect();
        assert_eq!(steps, [1, 4], "the stored exchanges read as events");
        let damaged: Vec<Option<u64>> = read.missing_bodies.iter().map(|d| d.step).collect();
        assert_eq!(
            damaged,
            [Some(2), Some(5)],
            "a mark for each run, at its first step"
        );
        assert!(
            read.missing_bodies[0]
                .problem
                .contains("neither it nor the session's exchanges after it were stored"),
            "{}",
            read.missing_bodies[0].problem
        );
        // The stored ones read whole, their bodies with them.
        assert_eq!(
            store
                .verify_event_body("s", 4, &event(4).request.body.b3)
                .unwrap(),
            crate::BodyState::Sound
        );
    }
}
