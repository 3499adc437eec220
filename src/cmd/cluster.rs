//! `tapedeck cluster [SESSION...]`: group sessions by failure signature.

use std::path::Path;

use serde_json::json;

use super::CmdResult;
use crate::analyze::analyze;
use crate::analyze::cluster::{group, signature};
use crate::recording;
use crate::rules::Rules;

pub async fn run(sessions: &[String], store: &Path, json_out: bool) -> CmdResult {
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
    let rules = Rules::from_working_dir()?;
    let mut signed = Vec::new();
    for name in &names {
        let rec = loader.load(name).await?;
        let findings = analyze(&rec, &rules);
        signed.push((
            rec.session.clone(),
            signature(&rec.events, &findings, &rules),
        ));
    }
    let list = group(signed);
    if json_out {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|c| {
                let signature = match &c.signature {
                    Some(s) => json!(s),
                    None => json!({"detector": null}),
                };
                json!({"signature": signature, "count": c.sessions.len(), "representative": c.representative(), "sessions": c.sessions})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    if list.is_empty() {
        eprintln!("no sessions to cluster");
        return Ok(0);
    }
    for c in &list {
        let sig = match &c.signature {
            Some(s) => format!("{} · {} · {} · {}", s.detector, s.tool, s.error, s.position),
            None => "no findings".to_string(),
        };
        println!(
            "{:>4} session{}  {:<64}  e.g. {}",
            c.sessions.len(),
            if c.sessions.len() == 1 { " " } else { "s" },
            sig,
            c.representative()
        );
    }
    Ok(0)
}
