//! `tapedeck test DIR`: replay every regression case; `N passed, M failed`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{msg, CmdError, CmdResult};
use crate::recording::{access_store, Recording, StoreAccess};
use tapedeck_model::rules::Rules;
use tapedeck_model::session::SessionName;
use tapedeck_proxy::ca::Ca;
use tapedeck_proxy::{Proxy, ProxyOptions};
use tapedeck_replay::{Order, Pace, ReplayOptions, ReplaySummary, Replayer};
use tapedeck_store::Store;
use tapedeck_trace::analyze::issues::case_ran;
use tapedeck_trace::analyze::{analyze, examine, Severity};
use tapedeck_trace::case::{find, Case};

struct Outcome {
    name: String,
    class: String,
    secs: f64,
    failures: Vec<String>,
    /// Worth knowing, not failing: recorded events the run never used.
    notes: Vec<String>,
    /// The store's issues the case was made from, and whether the run showed one again.
    issues: Vec<String>,
    shown_again: bool,
    stdout: String,
    stderr: String,
}

/// The run as a JUnit report (`--junit`): one suite, a test case per case file; a failed
/// case carries its first failure as the message and all of them as the text.
fn junit_report(outcomes: &[Outcome], took: Duration) -> Report {
    let failed = |o: &Outcome| !o.failures.is_empty();
    let mut suite = TestSuite::new("tapedeck");
    suite.set_time(took);
    for o in outcomes {
        let status = if failed(o) {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(o.failures[0].as_str());
            s.set_description(o.failures.join("\n"));
            s
        } else {
            TestCaseStatus::success()
        };
        let mut case = TestCase::new(o.name.as_str(), status);
        case.set_classname(o.class.as_str())
            .set_time(Duration::from_secs_f64(o.secs.max(0.0)))
            .set_system_out(o.stdout.as_str())
            .set_system_err(o.stderr.as_str());
        suite.add_test_case(case);
    }
    let mut report = Report::new("tapedeck");
    report.set_time(took).add_test_suite(suite);
    report
}

async fn run_case(path: &Path, certs: &Path, stateful: &[String]) -> Result<Outcome, CmdError> {
    let case = Case::load(path).map_err(|e| msg(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let started = Instant::now();
    let tape_path = dir.join(&case.tape);
    let tape = tapedeck_store::tape::read(&tape_path)?;
    let rec = Recording::from_tape(tape, tape_path.display().to_string());
    let session = rec.session.clone();
    let cwd: PathBuf = match &case.cwd {
        Some(c) => std::env::current_dir().unwrap_or_default().join(c),
        None => std::env::current_dir().unwrap_or_default(),
    };
    // The case's own tapedeck.toml wins, else the one where the command runs.
    let rules_dir = if dir.join("tapedeck.toml").exists() {
        dir.to_path_buf()
    } else {
        cwd.clone()
    };
    let args = tapedeck_model::rules::RuleArgs {
        stateful_hosts: stateful.to_vec(),
        ..Default::default()
    };
    let rules = Arc::new(Rules::load(&rules_dir, &args)?);
    let issues = incident_issues(&case, &rec, &rules);
    let order =
        Order::parse(case.order.as_deref()).map_err(|e| msg(format!("{}: {e}", path.display())))?;
    let replayer = Replayer::new(
        rec,
        rules.clone(),
        ReplayOptions {
            order,
            pace: Pace::Fast,
            allow_live: vec![],
            max_body: Default::default(),
            hybrid: None,
            held_open: tapedeck_proxy::DEFAULT_IDLE_TIMEOUT,
        },
    )?;
    let (ca, _) = Ca::load_or_create(certs)?;
    let ca = Arc::new(ca);
    let listener = super::daemon::bind_avoiding("127.0.0.1:0", replayer.loopback_ports())
        .await
        .map_err(|e| msg(format!("cannot listen: {e}")))?;
    let addr = listener.local_addr().map_err(|e| msg(e.to_string()))?;
    let (trigger, stop) = tapedeck_proxy::shutdown::channel();
    let proxy = Proxy::new(
        replayer.clone(),
        ca.clone(),
        ProxyOptions {
            session: SessionName::new(&session).ok(),
            ..ProxyOptions::default()
        },
    );
    let server = tokio::spawn(proxy.serve(listener, stop));
    let trust = crate::child::trust_for_command(&ca, &cwd)?;
    let env = crate::child::environment(&format!("http://{addr}"), &trust);
    let cmd = vec!["sh".to_string(), "-c".to_string(), case.cmd.clone()];
    let (code, out, err) = crate::child::run_with(&cmd, &env, Some(&cwd), true).await?;
    trigger.fire();
    let _ = server.await;
    replayer
        .inflight
        .drain(std::time::Duration::from_secs(5))
        .await;
    let stdout = String::from_utf8_lossy(&out).into_owned();
    let stderr = String::from_utf8_lossy(&err).into_owned();

    let judged = judge(
        &case,
        path,
        &Run {
            code,
            stdout: &stdout,
            summary: replayer.summary(),
            first_miss: replayer.miss_lines().into_iter().next(),
            served: replayer.served_recording(),
        },
        &rules,
    );
    Ok(Outcome {
        name: case.name,
        class: dir.display().to_string(),
        secs: started.elapsed().as_secs_f64(),
        failures: judged.failures,
        notes: judged.notes,
        issues,
        shown_again: judged.shown_again,
        stdout,
        stderr,
    })
}

/// What a case's command did under replay.
struct Run<'a> {
    code: i32,
    stdout: &'a str,
    summary: ReplaySummary,
    first_miss: Option<String>,
    /// The recorded events the command was served, with their recorded steps.
    served: Recording,
}

#[derive(Default)]
struct Judged {
    failures: Vec<String>,
    notes: Vec<String>,
    /// analyze reported a signature the case must not show.
    shown_again: bool,
}

/// Checks a run against the case. A run that did not happen (the command died before
/// its first request) never passes: no misses and no findings on nothing prove nothing.
fn judge(case: &Case, path: &Path, run: &Run, rules: &Rules) -> Judged {
    let mut j = Judged::default();
    let want = case.expect.exit_code.unwrap_or(0);
    if run.code != want {
        j.failures.push(format!(
            "the command exited {}, expected {want}{}",
            run.code,
            if case.expect.exit_code.is_none() {
                " (no exit_code in the case)"
            } else {
                ""
            }
        ));
    }
    let s = &run.summary;
    if s.served == 0 && s.recorded > 0 {
        j.failures.push(format!(
            "the command was served none of the {} recorded exchanges: it stopped (or went elsewhere) before its first recorded request",
            s.recorded
        ));
    }
    if case.expect.no_misses && s.miss_count() > 0 {
        j.failures.push(format!(
            "{} replay miss(es); first: {}",
            s.miss_count(),
            run.first_miss.as_deref().unwrap_or_default()
        ));
    }
    if !s.unused.is_empty() {
        let shown: Vec<String> = s.unused.iter().take(10).map(|n| n.to_string()).collect();
        let line = format!(
            "{} recorded event{} never used (step{} {}{})",
            s.unused.len(),
            if s.unused.len() == 1 {
                " was"
            } else {
                "s were"
            },
            if s.unused.len() == 1 { "" } else { "s" },
            shown.join(", "),
            if s.unused.len() > 10 { ", ..." } else { "" }
        );
        if case.expect.fail_on_unused {
            j.failures.push(format!("{line}; fail_on_unused = true"));
        } else {
            j.notes.push(line);
        }
    }
    for text in &case.expect.stdout_contains {
        if !run.stdout.contains(text.as_str()) {
            j.failures.push(format!("stdout does not contain {text:?}"));
        }
    }
    for r in &case.expect.stdout_regex {
        match regex::Regex::new(r) {
            Ok(re) if re.is_match(run.stdout) => {}
            Ok(_) => j.failures.push(format!("stdout does not match /{r}/")),
            Err(e) => j
                .failures
                .push(format!("bad regex {r:?} in {}: {e}", path.display())),
        }
    }
    judge_findings(case, run, rules, &mut j);
    j
}

/// `analyze_must_not_report`, judged on what the command was served, and only where the
/// run got as far as the step the incident showed the signature at.
fn judge_findings(case: &Case, run: &Run, rules: &Rules, j: &mut Judged) {
    let must_not = &case.expect.analyze_must_not_report;
    if must_not.is_empty() {
        return;
    }
    let furthest = run.served.events.iter().map(|e| e.step).max();
    let mut judged: Vec<&str> = Vec::new();
    for m in must_not {
        match (m.step(), furthest) {
            (Some(step), Some(got)) if got < step => j.failures.push(format!(
                "the run stopped before step {step} (it got to step {got}), so whether it still shows {} there cannot be judged",
                m.detector()
            )),
            (Some(step), None) => j.failures.push(format!(
                "the run stopped before step {step} (it was served no step), so whether it still shows {} there cannot be judged",
                m.detector()
            )),
            _ => judged.push(m.detector()),
        }
    }
    if run.served.events.is_empty() {
        return;
    }
    for f in analyze(&run.served, rules) {
        if judged.contains(&f.detector) {
            j.shown_again = true;
            let steps: Vec<String> = f.steps.iter().map(|s| s.to_string()).collect();
            j.failures.push(format!(
                "analyze reports {} at step {}: {}",
                f.detector,
                steps.join(", "),
                f.summary
            ));
        }
    }
}

/// The ids of the issues a case was made from: the incident's findings it must not show.
fn incident_issues(case: &Case, rec: &Recording, rules: &Rules) -> Vec<String> {
    let must_not = &case.expect.analyze_must_not_report;
    let ex = examine(rec, rules);
    ex.findings
        .iter()
        .zip(&ex.signatures)
        .filter(|(f, _)| f.severity >= Severity::Warning)
        .filter(|(f, _)| must_not.iter().any(|m| m.detector() == f.detector))
        .map(|(_, s)| s.id())
        .collect()
}

/// A passing case resolves its issues in the store's table; one that showed them again
/// regresses those that were resolved. A store that does not exist is not created.
fn update_issues(store: &Path, outcomes: &[Outcome]) {
    if !store.join("db").exists() || outcomes.iter().all(|o| o.issues.is_empty()) {
        return;
    }
    let s = match access_store(store) {
        Ok(StoreAccess::Open(s)) => s,
        Ok(StoreAccess::Daemon { pid, .. }) => {
            eprintln!(
                "issues: not updated: the store {} is held by tapedeck pid {pid}",
                store.display()
            );
            return;
        }
        Err(e) => {
            eprintln!("issues: not updated: {e}");
            return;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let result = s.issues().and_then(|mut table| {
        for o in outcomes
            .iter()
            .filter(|o| o.failures.is_empty() || o.shown_again)
        {
            case_ran(&mut table, &o.issues, o.failures.is_empty(), now);
        }
        s.put_issues(&table)?;
        s.commit()
    });
    if let Err(e) = result {
        eprintln!("issues: not updated: {e}");
    }
}

pub async fn run(
    dir: &Path,
    junit: Option<&Path>,
    certs: &Path,
    stateful: &[String],
    store: &Path,
) -> CmdResult {
    let cases = find(dir);
    if cases.is_empty() {
        return Err(msg(format!(
            "no case.toml under {} (make one with `tapedeck gen-test`)",
            dir.display()
        )));
    }
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for path in &cases {
        let o = match run_case(path, certs, stateful).await {
            Ok(o) => o,
            Err(e) => Outcome {
                name: path
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                class: path.display().to_string(),
                secs: 0.0,
                failures: vec![format!("could not run: {e}")],
                notes: Vec::new(),
                issues: Vec::new(),
                shown_again: false,
                stdout: String::new(),
                stderr: String::new(),
            },
        };
        if o.failures.is_empty() {
            println!("PASS {} ({:.1} s)", o.name, o.secs);
        } else {
            println!("FAIL {} ({:.1} s)", o.name, o.secs);
            for f in &o.failures {
                println!("     {f}");
            }
            for (label, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
                if let Some(last) = text.trim().lines().last() {
                    println!("     {label}: {last}");
                }
            }
        }
        for n in &o.notes {
            println!("     note: {n}");
        }
        outcomes.push(o);
    }
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let passed = outcomes.len() - failed;
    println!("{passed} passed, {failed} failed");
    update_issues(store, &outcomes);
    if let Some(path) = junit {
        let xml = junit_report(&outcomes, started.elapsed())
            .to_string()
            .map_err(|e| msg(format!("cannot write the JUnit report: {e}")))?;
        std::fs::write(path, xml)
            .map_err(|e| msg(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, failures: &[&str], stdout: &str) -> Outcome {
        Outcome {
            name: name.into(),
            class: "cases".into(),
            secs: 0.25,
            failures: failures.iter().map(|f| f.to_string()).collect(),
            notes: vec![],
            issues: vec![],
            shown_again: false,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn the_junit_report_names_each_case_and_its_first_failure() {
        let outcomes = [
            outcome(
                "weather",
                &["step 2 <failed> & more", "and this"],
                "ok\x1b[31m red",
            ),
            outcome("clean", &[], ""),
        ];
        let xml = junit_report(&outcomes, Duration::from_secs(1))
            .to_string()
            .unwrap();
        assert!(
            xml.contains(r#"tests="2""#) && xml.contains(r#"failures="1""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="weather" classname="cases""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<failure message="step 2 &lt;failed&gt; &amp; more""#),
            "{xml}"
        );
        assert!(xml.contains("and this"), "{xml}");
        assert!(
            !xml.contains('\x1b'),
            "escape codes never reach the XML: {xml}"
        );
    }
}
