//! `tapedeck gen-test SESSION --cmd CMD -o DIR`: an incident becomes a regression case.
//!
//! The case says what a faithful, fixed run must do: exit as the recorded command did
//! (when it was recorded with `-- CMD`), make no unrecorded call, and not show the
//! incident's failure signatures once it has reached the steps where they showed.

use std::collections::BTreeMap;
use std::path::Path;

use super::{msg, CmdResult};
use crate::recording;
use tapedeck_model::rules::Rules;
use tapedeck_trace::analyze::issues::link_case;
use tapedeck_trace::analyze::{examine, Severity};
use tapedeck_trace::case::{Case, Expect, MustNotReport, CASE_FILE};

pub const TAPE_FILE: &str = "tape.jsonl";

pub async fn run(session: &str, cmd: &str, dir: &Path, store: &Path, force: bool) -> CmdResult {
    let case_path = dir.join(CASE_FILE);
    if case_path.exists() && !force {
        return Err(msg(format!(
            "{} exists; pass --force to overwrite it",
            case_path.display()
        )));
    }
    let rec = recording::load(session, store).await?;
    super::refuse_damaged(
        &rec,
        false,
        "a regression case made from it would replay a run with a hole in it, so none is made",
        "and record the incident again",
    )?;
    let rules = Rules::from_working_dir()?;
    let examined = examine(&rec, &rules);
    let findings = &examined.findings;
    std::fs::create_dir_all(dir)
        .map_err(|e| msg(format!("cannot create {}: {e}", dir.display())))?;
    let tape_path = dir.join(TAPE_FILE);
    super::export::write_tape(
        &rec,
        &tape_path,
        tapedeck_model::secure_fs::PRIVATE_FILE,
        tapedeck_store::tape_files::DEFAULT_INLINE_MAX,
        |_| {},
    )?;
    // Each signature once, at the earliest step where the incident showed it.
    let mut first_step: BTreeMap<String, u64> = BTreeMap::new();
    for f in findings.iter().filter(|f| f.severity >= Severity::Warning) {
        let step = f.steps.first().copied().unwrap_or(0);
        first_step
            .entry(f.detector.to_string())
            .and_modify(|s| *s = (*s).min(step))
            .or_insert(step);
    }
    let must_not: Vec<MustNotReport> = first_step
        .iter()
        .map(|(detector, &step)| MustNotReport::At {
            detector: detector.clone(),
            step,
        })
        .collect();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| rec.session.clone());
    let case = Case {
        name,
        cmd: cmd.to_string(),
        tape: TAPE_FILE.into(),
        cwd: None,
        order: None,
        expect: Expect {
            exit_code: rec.exit_code,
            analyze_must_not_report: must_not,
            ..Expect::default()
        },
    };
    let text = case_text(&case, &rec, findings, dir)?;
    std::fs::write(&case_path, text)
        .map_err(|e| msg(format!("cannot write {}: {e}", case_path.display())))?;
    eprintln!(
        "wrote {} and {}: replays {} events; expects exit {}{}; analyze must not report {}",
        case_path.display(),
        tape_path.display(),
        rec.events.len(),
        rec.exit_code.unwrap_or(0),
        if rec.exit_code.is_none() {
            " (the session was not recorded with `-- CMD`, so its exit status is unknown)"
        } else {
            ""
        },
        if first_step.is_empty() {
            "anything new".to_string()
        } else {
            let at: Vec<String> = first_step
                .iter()
                .map(|(d, s)| format!("{d} (from step {s})"))
                .collect();
            at.join(", ")
        }
    );
    // The case is made from the session's issues: note them and link it.
    if let Some(store) = rec.store() {
        let mut table = store.issues()?;
        let ids = super::issues::note(store.as_ref(), &mut table, &rec.session, &examined)?;
        link_case(&mut table, &ids, &dir.display().to_string());
        store.put_issues(&table)?;
        store.commit()?;
    }
    if let Some(code) = rec.exit_code.filter(|c| *c != 0) {
        eprintln!(
            "note: the recorded command exited {code}, so the case expects {code}; if that failure is the incident, set exit_code = 0 in {}",
            case_path.display()
        );
    }
    Ok(0)
}

/// The case file: a header saying where it came from and what each expectation means,
/// then the case itself.
fn case_text(
    case: &Case,
    rec: &recording::Recording,
    findings: &[tapedeck_trace::analyze::Finding],
    dir: &Path,
) -> Result<String, super::CmdError> {
    let mut text = format!(
        "# A tapedeck regression case, generated from {} ({} events).\n\
         # `tapedeck test {}` replays the tape under `cmd` and checks [expect]: the exit status\n\
         # (0 when exit_code is absent), no misses, at least one recorded exchange served, and\n\
         # no finding named in analyze_must_not_report once the run has reached its step.\n\
         # Recorded events the run never used are reported; fail_on_unused = true fails on them.\n",
        rec.source,
        rec.events.len(),
        dir.display()
    );
    match rec.exit_code {
        Some(code) => text.push_str(&format!(
            "# exit_code is the status the command had when the session was recorded ({code}).\n"
        )),
        None => text.push_str(
            "# The session was not recorded with `record -- CMD`: its exit status is unknown, so 0 is expected.\n",
        ),
    }
    for f in findings {
        text.push_str(&format!(
            "# incident: {} at steps {:?}: {}\n",
            f.detector, f.steps, f.summary
        ));
    }
    text.push_str(
        "# Add stdout_contains = [\"...\"] or stdout_regex = [\"...\"] to [expect] as needed.\n\n",
    );
    // The list is written inline (`[{ detector = "...", step = N }]`), which reads better
    // than the `[[expect.analyze_must_not_report]]` tables toml would write.
    let mut bare = case.clone();
    bare.expect.analyze_must_not_report.clear();
    let body = toml::to_string_pretty(&bare).map_err(|e| msg(e.to_string()))?;
    let items: Vec<String> = case
        .expect
        .analyze_must_not_report
        .iter()
        .map(|m| {
            let detector = toml::Value::String(m.detector().to_string());
            match m.step() {
                Some(step) => format!("{{ detector = {detector}, step = {step} }}"),
                None => detector.to_string(),
            }
        })
        .collect();
    let inline = format!("analyze_must_not_report = [{}]", items.join(", "));
    let body = body.replacen("analyze_must_not_report = []", &inline, 1);
    if !body.contains(&inline) {
        return Err(msg(
            "cannot write analyze_must_not_report into the case file",
        ));
    }
    text.push_str(&body);
    Ok(text)
}
