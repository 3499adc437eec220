//! `tapedeck analyze SESSION`: failure signatures, with the steps involved.

use std::path::Path;

use super::{msg, CmdResult};
use crate::paint::{self, Paint};
use crate::recording::{self, Recording};
use tapedeck_model::rules::Rules;
use tapedeck_trace::analyze::explain::render as render_explanation;
use tapedeck_trace::analyze::{analyze, explain_step, to_json, Finding, Severity};

/// Exit status when `--fail-on` finds a finding at or above its severity.
pub const EXIT_FINDINGS: i32 = 1;

pub fn render(session: &str, findings: &[Finding], colour: Paint) -> String {
    let paint = |style, s: &str| colour.paint(style, s);
    if findings.is_empty() {
        return format!("session {session}: no findings\n");
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let mut out = format!(
        "session {session}: {} finding{} ({} error, {} warning, {} info)\n",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    );
    for f in findings {
        let sev = match f.severity {
            Severity::Error => paint(paint::RED_BOLD, "ERROR  "),
            Severity::Warning => paint(paint::YELLOW, "WARNING"),
            Severity::Info => paint(paint::CYAN, "INFO   "),
        };
        let steps: Vec<String> = f.steps.iter().map(|s| s.to_string()).collect();
        out.push_str(&format!(
            "\n{sev} {} at step{} {}\n",
            f.detector,
            if f.steps.len() == 1 { "" } else { "s" },
            steps.join(", ")
        ));
        out.push_str(&format!("        {}\n", f.summary));
        for e in &f.evidence {
            out.push_str(&format!("        · {e}\n"));
        }
    }
    out
}

/// What `analyze` was asked for.
pub struct Options {
    pub json: bool,
    pub fail_on: Option<Severity>,
    pub explain: Option<u64>,
    pub judge: Option<JudgeOptions>,
}

pub struct JudgeOptions {
    pub url: String,
    pub model: String,
}

pub async fn run(session: &str, store: &Path, opts: &Options) -> CmdResult {
    let threshold = opts.fail_on;
    let rec = recording::load(session, store).await?;
    let rules = Rules::from_working_dir()?;
    if let Some(step) = opts.explain {
        return explain(&rec, &rules, step, opts.json);
    }
    let mut findings = analyze(&rec, &rules);
    if let Some(j) = &opts.judge {
        findings.extend(super::judge::run(&rec, j).await?);
        tapedeck_trace::analyze::sort(&mut findings);
    }
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&rec.session, &findings)).unwrap_or_default()
        );
    } else {
        print!("{}", render(&rec.session, &findings, Paint::stdout()));
    }
    if let Some(t) = threshold {
        if findings.iter().any(|f| f.severity >= t) {
            return Ok(EXIT_FINDINGS);
        }
    }
    Ok(0)
}

/// `--explain STEP`: the chain of exchanges whose output flowed into the step.
fn explain(rec: &Recording, rules: &Rules, step: u64, json: bool) -> CmdResult {
    let Some(e) = explain_step(rec, rules, step) else {
        let last = rec.events.last().map_or(0, |e| e.step);
        return Err(msg(format!(
            "{} has no step {step} (its steps go from 1 to {last}; `tapedeck show {}` lists them)",
            rec.source, rec.session
        )));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
    } else {
        print!("{}", render_explanation(&e));
    }
    Ok(0)
}
