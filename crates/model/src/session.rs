//! Session names: `[A-Za-z0-9._-]{1,128}`, checked wherever one enters tapedeck.
//!
//! A name becomes part of store keys and file names, so anything outside that set (a
//! `/`, a space, an empty string) is refused with an error that says what is allowed.

use std::fmt;

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
