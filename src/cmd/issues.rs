//! `tapedeck issues`: the failure signatures seen across the store's sessions, with first
//! and last seen, how many sessions, one to look at, and a status (new, recurring,
//! resolved, regressed). The table lives in the store; this command, `cluster`,
//! `gen-test` and `test` keep it up to date.
//!
//! Named `issues` after the error trackers' word for the same thing (an issue groups
//! the events of one bug and carries its status); an *incident* is what `gen-test`
//! turns into a case, one occurrence of an issue.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::sessions::rfc3339;
use super::{msg, CmdResult};
use crate::recording::{access_store, Recording, StoreAccess};
use tapedeck_model::rules::Rules;
use tapedeck_store::{IssueTable, Store, StoreError};
use tapedeck_trace::analyze::issues::{observe, ranked, Signature};
use tapedeck_trace::analyze::{examine, Examined, Severity};

/// The signatures a session's findings add to the table: warnings and errors (an `info`
/// such as a slow step is worth reading, not tracking).
pub fn tracked(ex: &Examined) -> Vec<Signature> {
    ex.findings
        .iter()
        .zip(&ex.signatures)
        .filter(|(f, _)| f.severity >= Severity::Warning)
        .map(|(_, s)| s.clone())
        .collect()
}

/// Notes a stored session's signatures (at its recording time) and that it was read.
pub fn note(
    store: &dyn Store,
    table: &mut IssueTable,
    session: &str,
    ex: &Examined,
) -> Result<Vec<String>, StoreError> {
    let Some(info) = store.session(session)? else {
        return Ok(Vec::new());
    };
    let ids = observe(table, session, info.first_unix_ns, &tracked(ex));
    table.scanned.insert(session.to_string(), info.events);
    Ok(ids)
}

/// Reads every session the table has not read at its present size and notes it.
fn refresh(
    store: &Arc<tapedeck_store::SledStore>,
    rules: &Rules,
) -> Result<IssueTable, StoreError> {
    let mut table = store.issues()?;
    let mut read = 0;
    for info in store.sessions()? {
        if table.scanned.get(&info.name) == Some(&info.events) {
            continue;
        }
        let shared: Arc<dyn Store> = store.clone();
        let rec = Recording::from_store(shared, &info.name)?;
        note(
            store.as_ref(),
            &mut table,
            &info.name,
            &examine(&rec, rules),
        )?;
        read += 1;
    }
    if read > 0 {
        store.put_issues(&table)?;
        store.commit()?;
    }
    Ok(table)
}

pub async fn run(dir: &Path, json: bool) -> CmdResult {
    let store = match access_store(dir)? {
        StoreAccess::Open(s) => s,
        StoreAccess::Daemon { pid, listen } => {
            return Err(msg(format!(
                "the store at {} is held by tapedeck pid {pid} on {listen}; the issues table is read and updated with the store closed: run `tapedeck issues` once it stops",
                dir.display()
            )))
        }
    };
    let rules = Rules::from_working_dir()?;
    let table = refresh(&store, &rules)?;
    let list = ranked(&table);
    if json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|r| {
                json!({
                    "id": r.id, "status": r.status.as_str(),
                    "signature": {"detector": r.detector, "tool": r.tool, "error": r.error},
                    "count": r.sessions.len(), "representative": r.representative(),
                    "first_seen": rfc3339(r.first_seen_unix_ns),
                    "last_seen": rfc3339(r.last_seen_unix_ns),
                    "resolved": r.resolved_unix_ns.map(rfc3339),
                    "cases": r.cases, "sessions": r.sessions,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    if list.is_empty() {
        eprintln!(
            "no issues: none of the {} sessions in {} shows a failure signature",
            table.scanned.len(),
            dir.display()
        );
        return Ok(0);
    }
    println!(
        "{:<12}  {:<9}  {:>8}  {:<24}  {:<24}  SIGNATURE · E.G.",
        "ISSUE", "STATUS", "SESSIONS", "FIRST SEEN", "LAST SEEN"
    );
    for r in list {
        let sig = Signature {
            detector: r.detector.clone(),
            tool: r.tool.clone(),
            error: r.error.clone(),
        };
        println!(
            "{:<12}  {:<9}  {:>8}  {:<24}  {:<24}  {} · e.g. {}",
            r.id,
            r.status.as_str(),
            r.sessions.len(),
            rfc3339(r.first_seen_unix_ns),
            rfc3339(r.last_seen_unix_ns),
            sig.line(),
            r.representative()
        );
    }
    Ok(0)
}
