//! `tapedeck cluster [SESSION...]`: group sessions by failure signature.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::CmdResult;
use crate::recording;
use tapedeck_store::{IssueStatus, IssueTable, Store};
use tapedeck_trace::analyze::cluster::{leading_index, signature};
use tapedeck_trace::analyze::examine;

/// Sessions sharing a signature, with the status of its issue (when the store was
/// open to read the issues table).
pub struct Group {
    /// detector, tool, error, position; empty for the sessions without findings.
    pub signature: Vec<String>,
    pub sessions: Vec<String>,
    pub issue: Option<(String, IssueStatus)>,
}

impl Group {
    pub fn to_json(&self) -> serde_json::Value {
        let sig = &self.signature;
        let signature = if sig.len() == 4 {
            json!({"detector": sig[0], "tool": sig[1], "error": sig[2], "position": sig[3]})
        } else {
            json!({"detector": null})
        };
        json!({
            "signature": signature, "count": self.sessions.len(),
            "representative": self.sessions[0], "sessions": self.sessions,
            "issue": self.issue.as_ref().map(|(id, _)| id),
            "status": self.issue.as_ref().map(|(_, s)| s.as_str()),
        })
    }
}

/// Groups the named sessions (all in the store when none are named), largest first,
/// noting each stored session in the issues table.
pub async fn groups(sessions: &[String], store: &Path) -> Result<Vec<Group>, super::CmdError> {
    let mut loader = recording::Loader::new(store);
    let names: Vec<String> = if sessions.is_empty() {
        loader
            .sessions()
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect()
    } else {
        sessions.to_vec()
    };
    let rules = tapedeck_model::rules::Rules::from_working_dir()?;
    let mut groups: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    let mut lead_issue: HashMap<String, String> = HashMap::new();
    let mut table: Option<(Arc<dyn Store>, IssueTable)> = None;
    for name in &names {
        let rec = loader.load(name).await?;
        let examined = examine(&rec, &rules);
        if let Some(s) = rec.store() {
            if table.is_none() {
                let t = s.issues()?;
                table = Some((s, t));
            }
            if let Some((s, t)) = table.as_mut() {
                super::issues::note(s.as_ref(), t, &rec.session, &examined)?;
            }
        }
        if let Some(i) = leading_index(&examined.findings) {
            lead_issue.insert(rec.session.clone(), examined.signatures[i].id());
        }
        let sig = signature(&rec.events, &examined)
            .map(|s| vec![s.detector, s.tool, s.error, s.position])
            .unwrap_or_default();
        groups.entry(sig).or_default().push(rec.session.clone());
    }
    if let Some((s, t)) = &table {
        s.put_issues(t)?;
        s.commit()?;
    }
    let status = |id: &String| {
        let (_, t) = table.as_ref()?;
        t.issues.iter().find(|r| &r.id == id).map(|r| r.status)
    };
    let mut list: Vec<Group> = groups
        .into_iter()
        .map(|(signature, sessions)| {
            let issue = lead_issue
                .get(&sessions[0])
                .and_then(|id| Some((id.clone(), status(id)?)));
            Group {
                signature,
                sessions,
                issue,
            }
        })
        .collect();
    list.sort_by(|a, b| {
        b.sessions
            .len()
            .cmp(&a.sessions.len())
            .then(a.signature.cmp(&b.signature))
    });
    Ok(list)
}

pub async fn run(sessions: &[String], store: &Path, json_out: bool) -> CmdResult {
    let list = groups(sessions, store).await?;
    if json_out {
        let v: Vec<serde_json::Value> = list.iter().map(Group::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    if list.is_empty() {
        eprintln!("no sessions to cluster");
        return Ok(0);
    }
    for g in &list {
        let sig = if g.signature.is_empty() {
            "no findings".to_string()
        } else {
            g.signature.join(" · ")
        };
        println!(
            "{:>4} session{}  {:<9}  {:<64}  e.g. {}",
            g.sessions.len(),
            if g.sessions.len() == 1 { " " } else { "s" },
            g.issue.as_ref().map_or("-", |(_, s)| s.as_str()),
            sig,
            g.sessions[0]
        );
    }
    Ok(0)
}
