//! Regression cases only pass when the run happened: an agent recorded with `record --
//! CMD` becomes a case (`gen-test`) that `tapedeck test` replays offline, and a run that
//! dies at start, exits otherwise, or stops before the incident's steps fails with a
//! reason; unused events are reported, and fail the case only when it asks.

use crate::support;

use std::path::PathBuf;
use std::process::Command;

use support::harness::{read_tape, tapedeck_bin, Dirs};
use support::upstream::Upstream;

fn agent() -> String {
    format!(
        "python3 {}/examples/weather_agent.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The agent up to its first LLM call, then out (exit 0) before the weather tool.
fn agent_that_stops_after_the_first_call() -> String {
    format!(
        "python3 -c 'import sys; sys.path.insert(0, \"{}/examples\"); import weather_agent as w; \
         w.get = lambda url: sys.exit(0); sys.exit(w.main())'",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// An upstream, a scratch directory, and the weather incident (the tool answers 500 and
/// the agent hands the error to the LLM) recorded with `-- CMD` and turned into a case.
struct Incident {
    up: Option<Upstream>,
    dirs: Dirs,
    cases: PathBuf,
}

impl Incident {
    async fn recorded() -> Incident {
        let up = Upstream::start(true).await;
        let dirs = Dirs::new();
        let cases = dirs.path("regressions");
        let mut me = Incident {
            up: Some(up),
            dirs,
            cases,
        };
        let ca = me.upstream().ca_path.to_str().unwrap().to_string();
        let (code, out, err) = me.run(
            &[
                "record",
                "--session",
                "incident",
                "--upstream-ca",
                &ca,
                "--",
                "sh",
                "-c",
                &agent(),
            ],
            &[("AGENT_MODE", "ignore")],
        );
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("answer: The weather in Paris"), "{out}");
        let case = me.case_dir();
        let (code, _, err) = me.run(
            &[
                "gen-test",
                "incident",
                "--cmd",
                &agent(),
                "-o",
                case.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        // Offline from here on.
        me.up = None;
        me
    }

    fn upstream(&self) -> &Upstream {
        self.up.as_ref().expect("upstream running")
    }

    fn case_dir(&self) -> PathBuf {
        self.cases.join("weather-500")
    }

    fn case_toml(&self) -> String {
        std::fs::read_to_string(self.case_dir().join("case.toml")).unwrap()
    }

    fn set_case_toml(&self, text: &str) {
        std::fs::write(self.case_dir().join("case.toml"), text).unwrap();
    }

    /// Runs tapedeck with the agent's environment (URLs of the recorded upstream) plus `env`.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut cmd = Command::new(tapedeck_bin());
        cmd.args(args)
            .current_dir(self.dirs.root.path())
            .env("TAPEDECK_STORE", &self.dirs.store)
            .env("TAPEDECK_CERTS", &self.dirs.certs)
            .env_remove("TAPEDECK_LOG");
        if let Some(up) = &self.up {
            cmd.env("LLM_BASE_URL", up.url("/v1"))
                .env("WEATHER_URL", up.url("/status/500"));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `tapedeck test` on the cases, with the environment the agent finds there.
    fn test(&self, env: &[(&str, &str)]) -> (i32, String) {
        let (code, out, err) = self.run(&["test", self.cases.to_str().unwrap()], env);
        (code, format!("{out}\n--- stderr:\n{err}"))
    }

    /// The URLs the recording holds, which the agent needs to send the same requests.
    fn recorded_env(&self) -> Vec<(String, String)> {
        let (_, events) = read_tape(&self.case_dir().join("tape.jsonl"));
        let llm = events[0]["request"]["url"].as_str().unwrap().to_string();
        let tool = events[1]["request"]["url"].as_str().unwrap().to_string();
        vec![
            (
                "LLM_BASE_URL".into(),
                llm.trim_end_matches("/chat/completions").to_string(),
            ),
            (
                "WEATHER_URL".into(),
                tool.split('?').next().unwrap().to_string(),
            ),
        ]
    }
}

fn with<'a>(base: &'a [(String, String)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    v.extend_from_slice(more);
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn gen_test_writes_the_recorded_exit_status_and_the_step_of_each_signature() {
    let inc = Incident::recorded().await;
    let toml = inc.case_toml();
    assert!(toml.contains("exit_code = 0"), "{toml}");
    assert!(
        toml.contains(
            "analyze_must_not_report = [{ detector = \"tool_error_ignored\", step = 2 }]"
        ),
        "{toml}"
    );
    let (header, _) = read_tape(&inc.case_dir().join("tape.jsonl"));
    assert_eq!(header["exit_code"], 0, "the tape carries the exit status");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_dies_at_start_fails_its_case_with_the_reasons() {
    let inc = Incident::recorded().await;
    // No LLM_BASE_URL: the agent dies with a KeyError (exit 1) before any request.
    let (code, out) = inc.test(&[("AGENT_MODE", "stop")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL weather-500"), "{out}");
    assert!(out.contains("the command exited 1, expected 0"), "{out}");
    assert!(
        out.contains("the command was served none of the 3 recorded exchanges"),
        "{out}"
    );
    assert!(
        out.contains("the run stopped before step 2 (it was served no step)"),
        "{out}"
    );
    assert!(out.contains("stderr: KeyError: 'LLM_BASE_URL'"), "{out}");
    assert!(out.contains("0 passed, 1 failed"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_agent_passes_and_the_retry_it_skipped_is_reported_not_failed() {
    let inc = Incident::recorded().await;
    let env = inc.recorded_env();
    // The fix stops at the tool error, so the last LLM call (step 3) is never made.
    let (code, out) = inc.test(&with(&env, &[("AGENT_MODE", "stop")]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASS weather-500"), "{out}");
    assert!(
        out.contains("note: 1 recorded event was never used (step 3)"),
        "{out}"
    );
    assert!(out.contains("1 passed, 0 failed"), "{out}");

    // The same run fails when the case asks for every event to be used.
    let toml = inc
        .case_toml()
        .replace("[expect]\n", "[expect]\nfail_on_unused = true\n");
    inc.set_case_toml(&toml);
    let (code, out) = inc.test(&with(&env, &[("AGENT_MODE", "stop")]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("1 recorded event was never used (step 3); fail_on_unused = true"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_stops_before_the_incidents_step_cannot_pass_on_its_findings() {
    let inc = Incident::recorded().await;
    let env = inc.recorded_env();
    let quoted = |c: &str| format!("cmd = {}", serde_json::to_string(c).unwrap());
    let toml = inc.case_toml().replace(
        &quoted(&agent()),
        &quoted(&agent_that_stops_after_the_first_call()),
    );
    assert!(toml.contains("sys.exit(0)"), "{toml}");
    inc.set_case_toml(&toml);
    let (code, out) = inc.test(&with(&env, &[]));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "the run stopped before step 2 (it got to step 1), so whether it still shows tool_error_ignored there cannot be judged"
        ),
        "{out}"
    );
    assert!(
        !out.contains("exited"),
        "exit 0 as recorded is not a failure: {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_case_recorded_with_a_failing_exit_expects_it_and_export_import_keep_it() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let script = format!("curl -s -o /dev/null {}; exit 5", up.url("/json"));
    let (code, _, err) = dirs.run(&[
        "record",
        "--session",
        "five",
        "--upstream-ca",
        &ca,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code, 5, "{err}");
    // export → import → export keeps the exit status.
    let tape = dirs.path("five.jsonl");
    let (code, _, err) = dirs.run(&["export", "five", "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_tape(&tape).0["exit_code"], 5);
    let (code, _, err) = dirs.run(&["import", tape.to_str().unwrap(), "--session", "again"]);
    assert_eq!(code, 0, "{err}");
    let again = dirs.path("again.jsonl");
    let (code, _, err) = dirs.run(&["export", "again", "-o", again.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_tape(&again).0["exit_code"], 5);

    let case = dirs.path("cases/five");
    let (code, _, err) = dirs.run(&[
        "gen-test",
        "five",
        "--cmd",
        &script,
        "-o",
        case.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the recorded command exited 5"), "{err}");
    drop(up);
    let (code, out, err) = dirs.run(&["test", case.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("PASS five"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_recorded_by_a_daemon_has_no_exit_status_and_its_case_expects_zero() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = support::harness::Daemon::record(&dirs, &up, "daemon", &[]);
    support::harness::client(&d, &dirs)
        .get(up.url("/json"))
        .send()
        .await
        .unwrap();
    d.stop();
    let case = dirs.path("cases/daemon");
    let script = format!("curl -s -o /dev/null {}; exit 4", up.url("/json"));
    let (code, _, err) = dirs.run(&[
        "gen-test",
        "daemon",
        "--cmd",
        &script,
        "-o",
        case.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let toml = std::fs::read_to_string(case.join("case.toml")).unwrap();
    assert!(!toml.contains("exit_code ="), "{toml}");
    assert!(
        toml.contains("its exit status is unknown, so 0 is expected"),
        "{toml}"
    );
    drop(up);
    let (code, out, _) = dirs.run(&["test", case.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the command exited 4, expected 0 (no exit_code in the case)"),
        "{out}"
    );
    assert!(!out.contains("served none"), "{out}");
}
