//! Regression cases: an incident turned into a test that replays in CI.
//!
//! A case is a directory with a tape and a `case.toml`: the command to run, the tape it
//! replays against, and what must hold (exit code, no misses, stdout contains / matches,
//! failure signatures analyze must not report on what the agent was served).
//!
//! Green must mean the run happened: a command that dies before its first request
//! makes no misses and shows no failure signature, so a case also requires the exit
//! status (0 unless `exit_code` says otherwise), at least one recorded exchange served,
//! and, for each signature it must not show, a run that got as far as the step where
//! the incident showed it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const CASE_FILE: &str = "case.toml";

#[derive(Debug, Error)]
pub enum CaseError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid case file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
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
    /// The command's exit status; absent means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default = "yes")]
    pub no_misses: bool,
    /// Fail when recorded events were never served (they are reported either way: a
    /// fixed agent may rightly skip a retry).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_on_unused: bool,
    #[serde(default)]
    pub stdout_contains: Vec<String>,
    #[serde(default)]
    pub stdout_regex: Vec<String>,
    #[serde(default)]
    pub analyze_must_not_report: Vec<MustNotReport>,
}

/// A failure signature the replayed run must not show: a detector name, or a detector
/// and the step where the incident showed it (judged only on a run that got that far).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum MustNotReport {
    Detector(String),
    At { detector: String, step: u64 },
}

impl MustNotReport {
    pub fn detector(&self) -> &str {
        match self {
            MustNotReport::Detector(d) | MustNotReport::At { detector: d, .. } => d,
        }
    }

    /// The step the run must reach for this to be judged.
    pub fn step(&self) -> Option<u64> {
        match self {
            MustNotReport::Detector(_) => None,
            MustNotReport::At { step, .. } => Some(*step),
        }
    }
}

fn yes() -> bool {
    true
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            exit_code: None,
            no_misses: true,
            fail_on_unused: false,
            stdout_contains: Vec::new(),
            stdout_regex: Vec::new(),
            analyze_must_not_report: Vec::new(),
        }
    }
}

impl Case {
    pub fn load(path: &Path) -> Result<Case, CaseError> {
        let text = std::fs::read_to_string(path).map_err(|source| CaseError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| CaseError::Parse {
            path: path.to_path_buf(),
            source,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_file_reads_both_forms_of_must_not_report_and_writes_them_back() {
        let text = r#"
name = "weather"
cmd = "python3 agent.py"
tape = "tape.jsonl"

[expect]
exit_code = 0
fail_on_unused = true
analyze_must_not_report = ["retry_loop", { detector = "tool_error_ignored", step = 2 }]
"#;
        let case: Case = toml::from_str(text).unwrap();
        assert_eq!(
            case.expect.analyze_must_not_report,
            [
                MustNotReport::Detector("retry_loop".into()),
                MustNotReport::At {
                    detector: "tool_error_ignored".into(),
                    step: 2
                }
            ]
        );
        assert!(case.expect.fail_on_unused);
        let again: Case = toml::from_str(&toml::to_string_pretty(&case).unwrap()).unwrap();
        assert_eq!(
            again.expect.analyze_must_not_report,
            case.expect.analyze_must_not_report
        );
        let old: Case =
            toml::from_str("name = \"a\"\ncmd = \"true\"\ntape = \"t.jsonl\"\n").unwrap();
        assert_eq!(old.expect.exit_code, None);
        assert!(!old.expect.fail_on_unused && old.expect.no_misses);
    }
}
