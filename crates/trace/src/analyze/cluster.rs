//! Grouping sessions by failure signature: forty failing runs are usually three bugs.
//!
//! A session's signature is its leading finding (the most severe, then the earliest)
//! reduced to what repeats across runs of the same bug: the detector, the tool (or
//! `llm`), the error seen there, and the position of the exchange in the run. Step
//! numbers, timings and bodies are left out, since they differ between runs. `tapedeck
//! cluster` and the web viewer's Sessions page both group with this.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Examined, Finding, DETECTORS};
use tapedeck_model::exchange::Event;

/// What a failing session has in common with the others of its bug.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature {
    pub detector: String,
    /// The tool, as the tool-naming rule names it (`llm` for an LLM call).
    pub tool: String,
    /// What went wrong there, as the issues table says it (`HTTP 500`, `empty answer`,
    /// a soft error's field, the model of an LLM call).
    pub error: String,
    /// `exchange N`: the leading exchange's position in the run (1-based).
    pub position: String,
}

/// Sessions that share a signature (`None`: the sessions without findings).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Cluster {
    pub signature: Option<Signature>,
    pub sessions: Vec<String>,
}

impl Cluster {
    /// The session to look at first: the first one named.
    pub fn representative(&self) -> &str {
        self.sessions.first().map(String::as_str).unwrap_or("")
    }
}

/// The index of the finding a session is grouped by: the most severe, then the
/// earliest, then the first in detector order.
pub fn leading_index(findings: &[Finding]) -> Option<usize> {
    let rank = |f: &Finding| {
        DETECTORS
            .iter()
            .position(|d| *d == f.detector)
            .unwrap_or(usize::MAX)
    };
    (0..findings.len()).min_by(|&a, &b| {
        let (a, b) = (&findings[a], &findings[b]);
        b.severity
            .cmp(&a.severity)
            .then(a.steps.first().cmp(&b.steps.first()))
            .then(rank(a).cmp(&rank(b)))
    })
}

/// The finding a session is grouped by (see [`leading_index`]).
pub fn leading(findings: &[Finding]) -> Option<&Finding> {
    leading_index(findings).map(|i| &findings[i])
}

/// The signature of a session with these events and findings; `None` without findings.
/// Detector, tool and error are those of the leading finding's issue (so `cluster`, the
/// viewer and the issues table name a bug alike); the position is where it started.
pub fn signature(events: &[Event], ex: &Examined) -> Option<Signature> {
    let i = leading_index(&ex.findings)?;
    let (f, sig) = (&ex.findings[i], ex.signatures.get(i)?);
    let first = f.steps.first().copied().unwrap_or(0);
    let pos = events
        .iter()
        .position(|e| e.step == first)
        .map(|i| i + 1)
        .unwrap_or(0);
    Some(Signature {
        detector: sig.detector.clone(),
        tool: sig.tool.clone(),
        error: sig.error.clone(),
        position: format!("exchange {pos}"),
    })
}

/// Groups named sessions by signature: the largest group first, then by signature; in a
/// group, sessions keep the order they were given in.
pub fn group(sessions: impl IntoIterator<Item = (String, Option<Signature>)>) -> Vec<Cluster> {
    let mut groups: BTreeMap<Option<Signature>, Vec<String>> = BTreeMap::new();
    for (name, sig) in sessions {
        groups.entry(sig).or_default().push(name);
    }
    let mut list: Vec<Cluster> = groups
        .into_iter()
        .map(|(signature, sessions)| Cluster {
            signature,
            sessions,
        })
        .collect();
    list.sort_by(|a, b| {
        b.sessions
            .len()
            .cmp(&a.sessions.len())
            .then(a.signature.cmp(&b.signature))
    });
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(d: &str) -> Option<Signature> {
        Some(Signature {
            detector: d.into(),
            tool: "get_weather".into(),
            error: "HTTP 500".into(),
            position: "exchange 2".into(),
        })
    }

    #[test]
    fn largest_group_first_and_members_in_given_order() {
        let list = group(vec![
            ("a".to_string(), sig("retry_loop")),
            ("b".to_string(), None),
            ("c".to_string(), sig("tool_error_ignored")),
            ("d".to_string(), sig("tool_error_ignored")),
            ("e".to_string(), None),
            ("f".to_string(), sig("tool_error_ignored")),
        ]);
        let got: Vec<(Option<String>, Vec<&str>)> = list
            .iter()
            .map(|c| {
                (
                    c.signature.as_ref().map(|s| s.detector.clone()),
                    c.sessions.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Some("tool_error_ignored".into()), vec!["c", "d", "f"]),
                (None, vec!["b", "e"]),
                (Some("retry_loop".into()), vec!["a"]),
            ]
        );
        assert_eq!(list[0].representative(), "c");
    }
}
