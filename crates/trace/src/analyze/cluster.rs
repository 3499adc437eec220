//! Grouping sessions by failure signature: forty failing runs are usually three bugs.
//!
//! A session's signature is its leading finding (the most severe, then the earliest)
//! reduced to what repeats across runs of the same bug: the detector, the tool (or
//! `llm`), the error seen there, and the position of the exchange in the run. Step
//! numbers, timings and bodies are left out, since they differ between runs. `tapedeck
//! cluster` and the web viewer's Sessions page both group with this.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Finding, DETECTORS};
use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::Rules;

/// What a failing session has in common with the others of its bug.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature {
    pub detector: String,
    /// The tool named by the tool-name rule, `llm` for an LLM call, `-` when unknown.
    pub tool: String,
    /// `HTTP 500`, a transport error kind, or `-`.
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

/// The finding a session is grouped by: the most severe, then the earliest, then the
/// first in detector order.
pub fn leading(findings: &[Finding]) -> Option<&Finding> {
    let rank = |f: &Finding| {
        DETECTORS
            .iter()
            .position(|d| *d == f.detector)
            .unwrap_or(usize::MAX)
    };
    findings.iter().min_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.steps.first().cmp(&b.steps.first()))
            .then(rank(a).cmp(&rank(b)))
    })
}

/// The signature of a session with these events and findings; `None` without findings.
pub fn signature(events: &[Event], findings: &[Finding], rules: &Rules) -> Option<Signature> {
    let f = leading(findings)?;
    let first = f.steps.first().copied().unwrap_or(0);
    let pos = events
        .iter()
        .position(|e| e.step == first)
        .map(|i| i + 1)
        .unwrap_or(0);
    let ev = events.iter().find(|e| e.step == first);
    let tool = match ev {
        Some(e) if e.kind != Kind::Llm => {
            let p = UrlParts::parse(&e.request.url);
            rules.tool_name(&e.request.method, &p.host, &p.path)
        }
        Some(_) => "llm".into(),
        None => "-".into(),
    };
    let error = match ev {
        Some(e) => match (&e.error, e.status()) {
            (Some(x), None) => x.kind.as_str().to_string(),
            (_, Some(s)) if s >= 400 => format!("HTTP {s}"),
            _ => "-".into(),
        },
        None => "-".into(),
    };
    Some(Signature {
        detector: f.detector.to_string(),
        tool,
        error,
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
