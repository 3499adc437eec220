//! Session names: `[A-Za-z0-9._-]{1,128}`, checked wherever one enters tapedeck.
//!
//! A name becomes part of store keys and file names, so anything outside that set (a
//! `/`, a space, an empty string) is refused with an error that says what is allowed.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid session name {name:?}: {why}; a session name is 1 to 128 characters from A-Z a-z 0-9 . _ -")]
pub struct SessionNameError {
    pub name: String,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionName(String);

impl SessionName {
    pub fn new(name: &str) -> Result<SessionName, SessionNameError> {
        let err = |why: String| SessionNameError {
            name: name.to_string(),
            why,
        };
        if name.is_empty() {
            return Err(err("it is empty".into()));
        }
        if name.len() > 128 {
            return Err(err(format!("it is {} characters long", name.len())));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(err(format!("it contains {c:?}")));
        }
        if name == "." || name == ".." {
            return Err(err("it names a directory".into()));
        }
        Ok(SessionName(name.to_string()))
    }

    /// A fresh name for a run that was not given one: `run-20261125-131754-3f9a`.
    pub fn generate() -> SessionName {
        let now = time::OffsetDateTime::now_utc();
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        let tag = &blake3::hash(seed.as_bytes()).to_hex()[..4];
        SessionName(format!(
            "run-{:04}{:02}{:02}-{:02}{:02}{:02}-{tag}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SessionName {
    type Err = SessionNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionName::new(s)
    }
}

/// Where a session came from when tapedeck made it out of another: a what-if replay
/// (`fork`) or a step sent again (`rerun`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Lineage {
    pub parent: String,
    /// `fork` or `rerun`.
    pub via: String,
    /// This session's step where it first left the parent's path; `None` when it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_at: Option<u64>,
    /// The parent's step at that point (for a rerun, the step sent again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_step: Option<u64>,
    /// The session could not be stored whole (a disk under the store's floor), so it was
    /// not compared with its parent: where it left the parent's path is not known.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

/// A session's clock and step counter in this process: steps are given as requests
/// arrive, times count from the session's start. Shared by everything that writes into
/// one session (a what-if run's served and live exchanges take steps from one counter).
#[derive(Debug)]
pub struct SessionClock {
    name: SessionName,
    next_step: AtomicU64,
    started: Instant,
    /// Added to elapsed time so steps appended to an older session keep rising times.
    offset_ns: u64,
    /// The secret values its exchanges have revealed so far, hunted in the next ones.
    remembered: crate::exchange::redact::Remembered,
}

impl SessionClock {
    pub fn new(name: SessionName, first_step: u64, offset_ns: u64) -> SessionClock {
        SessionClock {
            name,
            next_step: AtomicU64::new(first_step),
            started: Instant::now(),
            offset_ns,
            remembered: Default::default(),
        }
    }

    /// The secret values the session's exchanges have revealed so far.
    pub fn remembered(&self) -> &crate::exchange::redact::Remembered {
        &self.remembered
    }

    pub fn name(&self) -> &SessionName {
        &self.name
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Takes the next step.
    pub fn next_step(&self) -> u64 {
        self.next_step.fetch_add(1, Ordering::AcqRel)
    }

    /// Nanoseconds since the session's start at `at`.
    pub fn ns(&self, at: Instant) -> u64 {
        self.offset_ns + at.saturating_duration_since(self.started).as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_the_allowed_set_are_refused_with_the_reason() {
        assert!(SessionName::new("prod-incident_42.v2").is_ok());
        let e = SessionName::new("a/b").unwrap_err();
        assert!(e.to_string().contains("'/'"), "{e}");
        assert!(SessionName::new("").is_err());
        assert!(SessionName::new("..").is_err());
        assert!(SessionName::new("has space").is_err());
        assert!(SessionName::new(&"x".repeat(129)).is_err());
        assert!(SessionName::new(&"x".repeat(128)).is_ok());
        assert!(SessionName::new(SessionName::generate().as_str()).is_ok());
    }
}
