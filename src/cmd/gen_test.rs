//! `tapedeck gen-test SESSION --cmd CMD -o DIR`: an incident becomes a regression case.

use std::path::Path;

use super::{msg, CmdResult};
use crate::analyze::{analyze, Severity};
use crate::case::{Case, Expect, CASE_FILE};
use crate::recording;
use crate::rules::Rules;

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
    let rules = Rules::from_working_dir()?;
    let findings = analyze(&rec, &rules);
    std::fs::create_dir_all(dir)
        .map_err(|e| msg(format!("cannot create {}: {e}", dir.display())))?;
    let tape_path = dir.join(TAPE_FILE);
    super::export::write_tape(&rec, &tape_path, crate::secure_fs::PRIVATE_FILE, |_| {})?;
    let mut must_not: Vec<String> = findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .map(|f| f.detector.to_string())
        .collect();
    must_not.sort();
    must_not.dedup();
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
            analyze_must_not_report: must_not.clone(),
            ..Expect::default()
        },
    };
    let mut text = format!(
        "# A tapedeck regression case, generated from {} ({} events).\n\
         # `tapedeck test {}` replays the tape under `cmd` and checks [expect].\n",
        rec.source,
        rec.events.len(),
        dir.display()
    );
    for f in &findings {
        text.push_str(&format!(
            "# incident: {} at steps {:?}: {}\n",
            f.detector, f.steps, f.summary
        ));
    }
    text.push_str("# Add exit_code = 0, stdout_contains = [\"...\"] or stdout_regex = [\"...\"] to [expect] as needed.\n\n");
    text.push_str(&toml::to_string_pretty(&case).map_err(|e| msg(e.to_string()))?);
    std::fs::write(&case_path, text)
        .map_err(|e| msg(format!("cannot write {}: {e}", case_path.display())))?;
    eprintln!(
        "wrote {} and {}: replays {} events; analyze must not report {}",
        case_path.display(),
        tape_path.display(),
        rec.events.len(),
        if must_not.is_empty() {
            "anything new".to_string()
        } else {
            must_not.join(", ")
        }
    );
    Ok(0)
}
