//! `tapedeck cluster [SESSION...]`: group sessions by failure signature.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::CmdResult;
use crate::analyze::{examine, Finding};
use crate::exchange::Kind;
use crate::recording::{self, access_store, Recording, StoreAccess};
use crate::store::Store;
use crate::trace::tool_names::ToolNames;

/// (detector, tool, error type, step position) of a session's leading finding.
fn signature(rec: &Recording, f: &Finding, tools: &ToolNames) -> [String; 4] {
    let first = f.steps.first().copied().unwrap_or(0);
    let pos = rec
        .events
        .iter()
        .position(|e| e.step == first)
        .map(|i| i + 1)
        .unwrap_or(0);
    let ev = rec.events.iter().find(|e| e.step == first);
    let tool = match ev {
        Some(e) if e.kind != Kind::Llm => tools.get(e.step).unwrap_or("-").to_string(),
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
    [
        f.detector.to_string(),
        tool,
        error,
        format!("exchange {pos}"),
    ]
}

pub async fn run(sessions: &[String], store: &Path, json_out: bool) -> CmdResult {
    let mut loader = recording::Loader::new(store);
    let names: Vec<String> = if sessions.is_empty() {
        match access_store(store)? {
            StoreAccess::Open(s) => {
                let names = s.sessions()?.into_iter().map(|i| i.name).collect();
                drop(s);
                names
            }
            StoreAccess::Daemon { pid, listen } => {
                return Err(super::msg(format!(
                    "the store is held by tapedeck pid {pid} on {listen}; name the sessions to cluster, or stop it"
                )))
            }
        }
    } else {
        sessions.to_vec()
    };
    let rules = crate::rules::Rules::from_working_dir()?;
    let mut groups: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for name in &names {
        let rec = loader.load(name).await?;
        let examined = examine(&rec, &rules);
        let findings = examined.findings;
        // The leading finding: the most severe, then the earliest.
        let rank = |f: &Finding| {
            crate::analyze::DETECTORS
                .iter()
                .position(|d| *d == f.detector)
                .unwrap_or(usize::MAX)
        };
        let lead = findings.iter().min_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.steps.first().cmp(&b.steps.first()))
                .then(rank(a).cmp(&rank(b)))
        });
        let sig = match lead {
            Some(f) => signature(&rec, f, &examined.tools).to_vec(),
            None => vec!["no findings".to_string()],
        };
        groups.entry(sig).or_default().push(rec.session.clone());
    }
    let mut list: Vec<(Vec<String>, Vec<String>)> = groups.into_iter().collect();
    list.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    if json_out {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|(sig, members)| {
                let signature = if sig.len() == 4 {
                    json!({"detector": sig[0], "tool": sig[1], "error": sig[2], "position": sig[3]})
                } else {
                    json!({"detector": null})
                };
                json!({"signature": signature, "count": members.len(), "representative": members[0], "sessions": members})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    if list.is_empty() {
        eprintln!("no sessions to cluster");
        return Ok(0);
    }
    for (sig, members) in &list {
        println!(
            "{:>4} session{}  {:<64}  e.g. {}",
            members.len(),
            if members.len() == 1 { " " } else { "s" },
            sig.join(" · "),
            members[0]
        );
    }
    Ok(0)
}
