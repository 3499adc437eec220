//! Regression cases: an incident turned into a test that replays in CI.
//!
//! A case is a directory with a tape and a `case.toml`: the command to run, the tape it
//! replays against, and what must hold (exit code, no misses, stdout contains / matches,
//! failure signatures analyze must not report on what the agent was served).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const CASE_FILE: &str = "case.toml";

#[derive(Debug, Error)]
pub enum CaseError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} is not a valid case file: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    /// Run with `sh -c` under replay.
    pub cmd: String,
    /// The tape, relative to the case directory.
    pub tape: String,
    /// Working directory for the command, relative to where `tapedeck test` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Replay order: causal (default), strict or any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default = "yes")]
    pub no_misses: bool,
    #[serde(default)]
    pub stdout_contains: Vec<String>,
    #[serde(default)]
    pub stdout_regex: Vec<String>,
    #[serde(default)]
    pub analyze_must_not_report: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            exit_code: None,
            no_misses: true,
            stdout_contains: Vec::new(),
            stdout_regex: Vec::new(),
            analyze_must_not_report: Vec::new(),
        }
    }
}

impl Case {
    pub fn load(path: &Path) -> Result<Case, CaseError> {
        let text = std::fs::read_to_string(path).map_err(|e| CaseError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| CaseError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// Every case file under `dir` (the directory itself may be a case), sorted.
pub fn find(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let candidate = d.join(CASE_FILE);
        if candidate.is_file() {
            out.push(candidate);
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    stack.push(p);
                }
            }
        }
    }
    out.sort();
    out
}
