//! `analyze`: the failure signatures that show in traffic.
//!
//! Each detector reads the parsed exchanges of one session and reports findings with
//! the steps involved (`steps[0]` is the earliest exchange that belongs to the
//! signature), a one-line summary and one line of evidence per fact seen. Every
//! non-LLM exchange is read as a possible tool, whatever its host or port. A clean
//! session produces no findings: every detector is tested on a clean run too.

pub mod cluster;
pub mod context;
pub(crate) mod detect;
#[cfg(test)]
pub(crate) use detect::testing as detect_testing;
pub mod explain;
pub mod flow;
pub mod issues;
pub mod judge;
pub mod read;

use std::collections::HashMap;

use serde::Serialize;

use crate::spans::{parse_events, Parsed};
use crate::tool_names::ToolNames;
use tapedeck_model::rules::Rules;
use tapedeck_store::recording::Recording;

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Finding {
    pub detector: &'static str,
    pub severity: Severity,
    pub steps: Vec<u64>,
    pub summary: String,
    pub evidence: Vec<String>,
}

pub const DETECTORS: &[&str] = &[
    "retry_loop",
    "tool_error_ignored",
    "empty_tool_result",
    "context_pressure",
    "truncation",
    "token_burn",
    "cascading_error",
    "slow_step",
    "goal_drift",
];

/// Runs every detector over a recording.
pub fn analyze(rec: &Recording, rules: &Rules) -> Vec<Finding> {
    examine(rec, rules).findings
}

pub fn analyze_parsed(parsed: &[Parsed], rules: &Rules) -> Vec<Finding> {
    examine_parsed(parsed, rules).findings
}

/// A session's findings, with the names its tools go by (the findings use them too)
/// and each finding's signature across runs.
pub struct Examined {
    pub findings: Vec<Finding>,
    pub tools: ToolNames,
    /// One per finding, in the same order.
    pub signatures: Vec<issues::Signature>,
}

pub fn examine(rec: &Recording, rules: &Rules) -> Examined {
    examine_parsed(&parse_events(rec), rules)
}

pub fn examine_parsed(parsed: &[Parsed], rules: &Rules) -> Examined {
    let view = detect::View::new(parsed, rules);
    let mut out = Vec::new();
    detect::run_all(&view, &mut out);
    sort(&mut out);
    let at: HashMap<u64, &Parsed> = parsed.iter().map(|p| (p.event.step, p)).collect();
    let signatures = out
        .iter()
        .map(|f| {
            let first = f.steps.first().and_then(|s| at.get(s).copied());
            issues::signature(first, &view.tools, f)
        })
        .collect();
    Examined {
        findings: out,
        tools: view.tools,
        signatures,
    }
}

/// Findings in reading order: by first step, the most severe first, then by detector.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        a.steps
            .first()
            .cmp(&b.steps.first())
            .then(b.severity.cmp(&a.severity))
            .then(a.detector.cmp(b.detector))
    });
}

/// `analyze --explain STEP`: what flowed into a step; `None` when there is no such step.
pub fn explain_step(rec: &Recording, rules: &Rules, step: u64) -> Option<explain::Explanation> {
    let parsed = parse_events(rec);
    let view = detect::View::new(&parsed, rules);
    explain::explain(&rec.session, &parsed, &view.tools, &view.flows, step)
}

/// The JSON `analyze --json` prints.
pub fn to_json(session: &str, findings: &[Finding]) -> serde_json::Value {
    serde_json::json!({"session": session, "findings": findings})
}
