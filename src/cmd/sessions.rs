//! `tapedeck sessions`: list recorded sessions.

use std::path::Path;

use super::CmdResult;
use tapedeck_model::exchange::SessionInfo;

pub fn rfc3339(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The store's sessions (asking the daemon that holds it, if one does), oldest first.
pub async fn list(dir: &Path) -> Result<Vec<SessionInfo>, super::CmdError> {
    let mut list: Vec<SessionInfo> = crate::recording::sessions(dir).await?;
    list.sort_by_key(|s| s.first_unix_ns);
    Ok(list)
}

/// One session as `sessions --json` prints it.
pub fn to_json(s: &SessionInfo) -> serde_json::Value {
    serde_json::json!({
        "name": s.name, "events": s.events,
        "first": rfc3339(s.first_unix_ns), "last": rfc3339(s.last_unix_ns),
        "bytes": s.bytes, "lineage": s.lineage,
    })
}

pub async fn run(dir: &Path, json: bool) -> CmdResult {
    let list = list(dir).await?;
    warn_lost(dir, &list);
    if json {
        let v: Vec<serde_json::Value> = list.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    if list.is_empty() {
        eprintln!("no sessions in {}", dir.display());
        return Ok(0);
    }
    let w = list.iter().map(|s| s.name.len()).max().unwrap_or(4).max(7);
    println!(
        "{:<w$}  {:>6}  {:<24}  {:<24}  {:>10}  PARENT",
        "SESSION", "EVENTS", "FIRST", "LAST", "BYTES"
    );
    for s in &list {
        println!(
            "{:<w$}  {:>6}  {:<24}  {:<24}  {:>10}  {}",
            s.name,
            s.events,
            rfc3339(s.first_unix_ns),
            rfc3339(s.last_unix_ns),
            s.bytes,
            s.lineage.as_ref().map(parent_text).unwrap_or_default()
        );
    }
    Ok(0)
}

/// Sessions that have fewer events than the store's journal lists as flushed: sled lost
/// the rest without a word (it keeps its log only up to a damaged record), so the count
/// above is short and each is said on stderr. A session's count never lags its journal
/// (the journal is written after the flush that counts them).
fn warn_lost(dir: &Path, list: &[SessionInfo]) {
    let Ok(listed) = tapedeck_store::journal::listed_counts(dir) else {
        return;
    };
    let have: std::collections::HashMap<&str, u64> =
        list.iter().map(|s| (s.name.as_str(), s.events)).collect();
    let mut lost: Vec<(&String, u64, u64)> = listed
        .iter()
        .filter_map(|(name, &listed)| {
            let listed = listed as u64;
            let have = have.get(name.as_str()).copied().unwrap_or(0);
            (listed > have).then_some((name, listed - have, listed))
        })
        .collect();
    lost.sort();
    for (name, gone, listed) in lost {
        eprintln!(
            "tapedeck: session {name}: {gone} of the {listed} events the journal lists as flushed are gone from the store; run `tapedeck fsck`"
        );
    }
}

/// `S (fork, left it at step 3)`: where a session came from.
fn parent_text(l: &tapedeck_model::session::Lineage) -> String {
    let at = match (l.via.as_str(), l.diverged_at, l.parent_step) {
        _ if l.incomplete => ", not compared: not stored whole".to_string(),
        ("rerun", _, Some(p)) => format!(", step {p}"),
        (_, Some(d), _) => format!(", left it at step {d}"),
        (_, None, _) => ", never left its path".to_string(),
    };
    format!("{} ({}{at})", l.parent, l.via)
}
