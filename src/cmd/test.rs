//! `tapedeck test DIR`: replay every regression case; `N passed, M failed`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::{msg, CmdError, CmdResult};
use crate::analyze::analyze;
use crate::ca::Ca;
use crate::case::{find, Case};
use crate::cli::{Order, Pace};
use crate::proxy::{Proxy, ProxyOptions};
use crate::recording::Recording;
use crate::replay::{ReplayOptions, Replayer};
use crate::rules::Rules;
use crate::session::SessionName;

struct Outcome {
    name: String,
    class: String,
    secs: f64,
    failures: Vec<String>,
    stdout: String,
    stderr: String,
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn run_case(path: &Path, certs: &Path, stateful: &[String]) -> Result<Outcome, CmdError> {
    let case = Case::load(path).map_err(|e| msg(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let started = Instant::now();
    let tape_path = dir.join(&case.tape);
    let tape = crate::tape::read(&tape_path)?;
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
    let args = crate::rules::RuleArgs {
        stateful_hosts: stateful.to_vec(),
        ..Default::default()
    };
    let rules = Arc::new(Rules::load(&rules_dir, &args)?);
    let order =
        Order::parse(case.order.as_deref()).map_err(|e| msg(format!("{}: {e}", path.display())))?;
    let replayer = Replayer::new(
        rec,
        rules.clone(),
        ReplayOptions {
            order,
            pace: Pace::Fast,
            passthrough: vec![],
            allow_live: vec![],
            store: None,
        },
    )?;
    let (ca, _) = Ca::load_or_create(certs)?;
    let ca = Arc::new(ca);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| msg(format!("cannot listen: {e}")))?;
    let addr = listener.local_addr().map_err(|e| msg(e.to_string()))?;
    let (trigger, stop) = crate::shutdown::channel();
    let proxy = Proxy::new(
        replayer.clone(),
        ca.clone(),
        ProxyOptions {
            session: SessionName::new(&session).ok(),
            ..ProxyOptions::default()
        },
    );
    let server = tokio::spawn(proxy.serve(listener, stop));
    let bundle = ca.write_trust_bundle()?;
    let env = crate::child::environment(&format!("http://{addr}"), &bundle);
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

    let mut failures = Vec::new();
    let summary = replayer.summary();
    if let Some(want) = case.expect.exit_code {
        if code != want {
            failures.push(format!("exit code {code}, expected {want}"));
        }
    }
    if case.expect.no_misses && summary.miss_count() > 0 {
        let first = replayer.miss_lines().into_iter().next().unwrap_or_default();
        failures.push(format!(
            "{} replay miss(es); first: {first}",
            summary.miss_count()
        ));
    }
    for s in &case.expect.stdout_contains {
        if !stdout.contains(s.as_str()) {
            failures.push(format!("stdout does not contain {s:?}"));
        }
    }
    for r in &case.expect.stdout_regex {
        match regex::Regex::new(r) {
            Ok(re) if re.is_match(&stdout) => {}
            Ok(_) => failures.push(format!("stdout does not match /{r}/")),
            Err(e) => failures.push(format!("bad regex {r:?} in {}: {e}", path.display())),
        }
    }
    if !case.expect.analyze_must_not_report.is_empty() {
        let seen = replayer.served_recording();
        for f in analyze(&seen, &rules) {
            if case
                .expect
                .analyze_must_not_report
                .iter()
                .any(|d| d == f.detector)
            {
                let steps: Vec<String> = f.steps.iter().map(|s| s.to_string()).collect();
                failures.push(format!(
                    "analyze reports {} at step {}: {}",
                    f.detector,
                    steps.join(", "),
                    f.summary
                ));
            }
        }
    }
    Ok(Outcome {
        name: case.name,
        class: dir.display().to_string(),
        secs: started.elapsed().as_secs_f64(),
        failures,
        stdout,
        stderr,
    })
}

pub async fn run(dir: &Path, junit: Option<&Path>, certs: &Path, stateful: &[String]) -> CmdResult {
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
            if !o.stdout.trim().is_empty() {
                println!(
                    "     stdout: {}",
                    o.stdout.trim().lines().last().unwrap_or_default()
                );
            }
        }
        outcomes.push(o);
    }
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let passed = outcomes.len() - failed;
    println!("{passed} passed, {failed} failed");
    if let Some(path) = junit {
        let mut x = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"tapedeck\" tests=\"{}\" failures=\"{failed}\" time=\"{:.3}\">\n  <testsuite name=\"tapedeck\" tests=\"{}\" failures=\"{failed}\" time=\"{:.3}\">\n",
            outcomes.len(),
            started.elapsed().as_secs_f64(),
            outcomes.len(),
            started.elapsed().as_secs_f64()
        );
        for o in &outcomes {
            x.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\">\n",
                xml_escape(&o.name),
                xml_escape(&o.class),
                o.secs
            ));
            if !o.failures.is_empty() {
                x.push_str(&format!(
                    "      <failure message=\"{}\">{}</failure>\n",
                    xml_escape(&o.failures[0]),
                    xml_escape(&o.failures.join("\n"))
                ));
            }
            x.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                xml_escape(&o.stdout)
            ));
            x.push_str(&format!(
                "      <system-err>{}</system-err>\n",
                xml_escape(&o.stderr)
            ));
            x.push_str("    </testcase>\n");
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        std::fs::write(path, x)
            .map_err(|e| msg(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
