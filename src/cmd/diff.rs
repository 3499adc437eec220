//! `tapedeck diff A B`: the first step where run B parts from run A.

use std::path::Path;

use super::CmdResult;
use crate::recording;
use tapedeck_model::rules::Rules;
use tapedeck_trace::diff::diff;

pub async fn run(a: &str, b: &str, store: &Path, json: bool) -> CmdResult {
    let mut loader = recording::Loader::new(store);
    let ra = loader.load(a).await?;
    let rb = loader.load(b).await?;
    let rules = Rules::from_working_dir()?;
    let report = diff(&ra, &rb, &rules);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return Ok(0);
    }
    println!(
        "A: {} ({} events)   B: {} ({} events)",
        ra.source,
        ra.events.len(),
        rb.source,
        rb.events.len()
    );
    match &report.first_divergence {
        None => println!("no divergence: every step matches, requests and responses"),
        Some(d) => {
            let side = |s: Option<u64>| s.map_or("-".to_string(), |s| s.to_string());
            println!(
                "first divergence: step {} in A, step {} in B ({}): {}",
                side(d.step_a),
                side(d.step_b),
                d.kind,
                d.reason
            );
            if !d.request_diff.is_empty() {
                println!("  request:");
                for c in d.request_diff.iter().take(20) {
                    println!("    {}", c.line(100));
                }
            }
            if !d.response_diff.is_empty() {
                println!("  response:");
                for c in d.response_diff.iter().take(20) {
                    println!("    {}", c.line(100));
                }
            }
        }
    }
    let s = &report.summary;
    println!(
        "then: {} aligned ({} with a different response), {} with a different request, {} only in A{}, {} only in B{}",
        s.aligned,
        s.response_changed,
        s.request_changed,
        s.only_in_a.len(),
        steps(&s.only_in_a),
        s.only_in_b.len(),
        steps(&s.only_in_b)
    );
    Ok(0)
}

fn steps(v: &[u64]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = v.iter().take(8).map(|s| s.to_string()).collect();
    format!(
        " (steps {}{})",
        shown.join(", "),
        if v.len() > 8 { ", ..." } else { "" }
    )
}
