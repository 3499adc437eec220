//! The debugging loop, end to end: failure signatures found at the right steps in runs
//! recorded through the real proxy, clean runs with no findings, diff naming the first
//! divergent step, clustering, and an incident turned into a regression case that fails
//! and passes as the agent is broken and fixed.

use crate::support;

use serde_json::{json, Value};
use support::harness::{client, client_as, Daemon, Dirs};
use support::upstream::Upstream;

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
}

async fn llm(c: &reqwest::Client, up: &Upstream, body: Value) -> Value {
    let r = c
        .post(up.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

/// LLM → tool at `tool_path` → LLM with whatever the tool said.
async fn weather_agent(c: &reqwest::Client, up: &Upstream, tool_path: &str, pass_on: Option<&str>) {
    let mut messages = vec![json!({"role": "user", "content": "What is the weather in Paris?"})];
    let first = llm(
        c,
        up,
        json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}),
    )
    .await;
    let msg = first["choices"][0]["message"].clone();
    let id = msg["tool_calls"][0]["id"].as_str().unwrap().to_string();
    let text = c
        .get(up.url(tool_path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    messages.push(msg);
    messages.push(json!({"role": "tool", "tool_call_id": id, "content": pass_on.unwrap_or(&text)}));
    llm(
        c,
        up,
        json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}),
    )
    .await;
}

fn findings(dirs: &Dirs, session: &str) -> Vec<Value> {
    let (code, out, err) = dirs.run(&["analyze", session, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["session"], session);
    v["findings"].as_array().unwrap().clone()
}

fn only(found: &[Value], detector: &str) -> Value {
    let hits: Vec<&Value> = found.iter().filter(|f| f["detector"] == detector).collect();
    assert_eq!(
        hits.len(),
        1,
        "one {detector} finding expected in {found:#?}"
    );
    hits[0].clone()
}

struct Lab {
    up: Upstream,
    dirs: Dirs,
}

impl Lab {
    async fn new() -> Lab {
        Lab {
            up: Upstream::start(true).await,
            dirs: Dirs::new(),
        }
    }
    fn record(&self, session: &str) -> Daemon {
        let ca = self.up.ca_path.to_str().unwrap().to_string();
        if session.is_empty() {
            Daemon::start(&self.dirs, &["record", "--upstream-ca", &ca])
        } else {
            Daemon::start(
                &self.dirs,
                &["record", "--session", session, "--upstream-ca", &ca],
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_run_has_no_findings() {
    let lab = Lab::new().await;
    let d = lab.record("clean");
    weather_agent(&client(&d, &lab.dirs), &lab.up, "/weather?city=Paris", None).await;
    d.stop();
    assert_eq!(findings(&lab.dirs, "clean"), Vec::<Value>::new());
    let (code, out, _) = lab.dirs.run(&["analyze", "clean", "--fail-on", "warning"]);
    assert_eq!(code, 0);
    assert!(out.contains("no findings"));
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_tool_results_are_found_at_the_tool_step() {
    let lab = Lab::new().await;
    let d = lab.record("empty");
    weather_agent(&client(&d, &lab.dirs), &lab.up, "/empty-list", None).await;
    d.stop();
    let f = only(&findings(&lab.dirs, "empty"), "empty_tool_result");
    assert_eq!(f["steps"], json!([2, 3]));
    assert_eq!(f["severity"], "warning");
    let (code, _, _) = lab.dirs.run(&["analyze", "empty", "--fail-on", "warning"]);
    assert_eq!(code, 1);
    let (code, _, _) = lab.dirs.run(&["analyze", "empty", "--fail-on", "error"]);
    assert_eq!(code, 0);
    let (code, _, err) = lab
        .dirs
        .run(&["analyze", "empty", "--fail-on", "sometimes"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("possible values: warning, error"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn colours_only_reach_a_terminal_and_no_color_turns_them_off() {
    let lab = Lab::new().await;
    let d = lab.record("colours");
    weather_agent(&client(&d, &lab.dirs), &lab.up, "/status/500", None).await;
    d.stop();
    for cmd in ["show", "analyze"] {
        // Forced, the failed step is painted: the check below can see escapes.
        let (_, out, _) = lab
            .dirs
            .run_with(&[cmd, "colours"], &[("CLICOLOR_FORCE", "1")]);
        assert!(out.contains('\x1b'), "{cmd} forced: {out}");
        // Piped, as here, nothing is.
        let (_, out, err) = lab.dirs.run(&[cmd, "colours"]);
        assert!(
            !out.contains('\x1b') && !err.contains('\x1b'),
            "{cmd} piped: {out}{err}"
        );
        assert!(out.contains("ERROR"), "{cmd}: {out}");
        // NO_COLOR wins even over a forced colour.
        let env = [("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")];
        let (_, out, err) = lab.dirs.run_with(&[cmd, "colours"], &env);
        assert!(
            !out.contains('\x1b') && !err.contains('\x1b'),
            "{cmd} NO_COLOR: {out}{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_error_the_llm_never_acknowledges_is_found() {
    let lab = Lab::new().await;
    let d = lab.record("ignored");
    let c = client(&d, &lab.dirs);
    weather_agent(&c, &lab.up, "/status/500", None).await;
    d.stop();
    let f = only(&findings(&lab.dirs, "ignored"), "tool_error_ignored");
    assert_eq!(f["steps"], json!([2, 3]));
    let (_, out, _) = lab.dirs.run(&["show", "ignored", "--json"]);
    let tree: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        tree["totals"]["errors"], 1,
        "the failed exchange counts once: {}",
        tree["totals"]
    );
    assert_eq!(f["severity"], "error");
    assert!(f["summary"].as_str().unwrap().contains("HTTP 500"), "{f}");

    // The agent hides the failure and hands the LLM made-up data instead.
    let d = lab.record("hidden");
    weather_agent(
        &client(&d, &lab.dirs),
        &lab.up,
        "/status/503",
        Some("sunny, 20C"),
    )
    .await;
    d.stop();
    let f = only(&findings(&lab.dirs, "hidden"), "tool_error_ignored");
    assert_eq!(f["steps"], json!([2, 3]));
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("does not carry the error"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_identical_calls_in_a_row_are_a_retry_loop() {
    let lab = Lab::new().await;
    let d = lab.record("retry");
    let c = client(&d, &lab.dirs);
    for _ in 0..3 {
        c.get(lab.up.url("/status/503")).send().await.unwrap();
    }
    c.get(lab.up.url("/weather?city=Paris"))
        .send()
        .await
        .unwrap();
    d.stop();
    let f = only(&findings(&lab.dirs, "retry"), "retry_loop");
    assert_eq!(f["steps"], json!([1, 2, 3]));
    assert_eq!(f["severity"], "error");
    assert_eq!(f["evidence"].as_array().unwrap().len(), 3);
    // Tool exchanges no tool call claims still count as errors in the trace's totals.
    let (code, out, _) = lab.dirs.run(&["show", "retry", "--json"]);
    assert_eq!(code, 0);
    let tree: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(tree["totals"]["errors"], 3, "{}", tree["totals"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn context_pressure_truncation_and_token_burn() {
    let lab = Lab::new().await;
    let d = lab.record("pressure");
    let c = client(&d, &lab.dirs);
    // gpt-4 takes 8,192 input tokens; the fixture counts 4 characters a token.
    let long = "word ".repeat(5600);
    llm(
        &c,
        &lab.up,
        json!({"model": "gpt-4", "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    llm(&c, &lab.up, json!({"model": "gpt-4o-mini", "max_tokens": 2, "messages": [{"role": "user", "content": "Tell me a long story"}]})).await;
    d.stop();
    let found = findings(&lab.dirs, "pressure");
    let cp = only(&found, "context_pressure");
    assert_eq!(cp["steps"], json!([1]));
    assert!(cp["summary"].as_str().unwrap().contains("gpt-4"), "{cp}");
    assert_eq!(only(&found, "truncation")["steps"], json!([2]));

    let d = lab.record("burn");
    let c = client(&d, &lab.dirs);
    let mut messages = vec![json!({"role": "user", "content": "Summarise the plan"})];
    for i in 0..4 {
        let r = llm(
            &c,
            &lab.up,
            json!({"model": "gpt-4o-mini", "messages": messages}),
        )
        .await;
        messages.push(r["choices"][0]["message"].clone());
        messages
            .push(json!({"role": "user", "content": format!("That is not it, try again ({i})")}));
    }
    d.stop();
    let tb = only(&findings(&lab.dirs, "burn"), "token_burn");
    assert_eq!(tb["steps"], json!([1, 2, 3, 4]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_value_handed_between_agents_is_traced_to_the_agent_that_produced_it() {
    let lab = Lab::new().await;
    let d = lab.record("");
    let planner = client_as(&d, &lab.dirs, "handoff+planner", "");
    let writer = client_as(&d, &lab.dirs, "handoff+writer", "");
    // The planner's answer carries a misspelt city; the writer looks it up and fails.
    let plan = llm(&planner, &lab.up, json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Plan a trip to Pariss"}]})).await;
    assert!(plan["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Pariss"));
    let r = writer
        .get(lab.up.url("/weather?city=Pariss"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    d.stop();
    let found = findings(&lab.dirs, "handoff");
    let f = only(&found, "cascading_error");
    assert_eq!(f["steps"], json!([1, 2]));
    let s = f["summary"].as_str().unwrap();
    assert!(
        s.contains("planner") && s.contains("writer") && s.contains("Pariss"),
        "{s}"
    );
    // Without agents there is no hand-off to blame.
    let d = lab.record("solo");
    let c = client(&d, &lab.dirs);
    llm(&c, &lab.up, json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Plan a trip to Pariss"}]})).await;
    c.get(lab.up.url("/weather?city=Pariss"))
        .send()
        .await
        .unwrap();
    d.stop();
    assert!(findings(&lab.dirs, "solo")
        .iter()
        .all(|f| f["detector"] != "cascading_error"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_far_slower_than_the_rest_is_reported() {
    let lab = Lab::new().await;
    let d = lab.record("slow");
    let c = client(&d, &lab.dirs);
    for _ in 0..5 {
        c.get(lab.up.url("/json")).send().await.unwrap();
    }
    c.get(lab.up.url("/slow?ms=900")).send().await.unwrap();
    c.get(lab.up.url("/json")).send().await.unwrap();
    d.stop();
    let f = only(&findings(&lab.dirs, "slow"), "slow_step");
    assert_eq!(f["steps"], json!([6]));
    assert_eq!(f["severity"], "info");
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_names_the_first_divergent_step_and_cluster_groups_by_signature() {
    let lab = Lab::new().await;
    for (session, city) in [("good", "Paris"), ("bad", "Pariss"), ("bad2", "Pariss")] {
        let d = lab.record(session);
        let c = client(&d, &lab.dirs);
        let mut messages =
            vec![json!({"role": "user", "content": "What is the weather in Paris?"})];
        let first = llm(
            &c,
            &lab.up,
            json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}),
        )
        .await;
        let msg = first["choices"][0]["message"].clone();
        let id = msg["tool_calls"][0]["id"].as_str().unwrap().to_string();
        let text = c
            .get(lab.up.url(&format!("/weather?city={city}")))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        messages.push(msg);
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
        llm(
            &c,
            &lab.up,
            json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}),
        )
        .await;
        d.stop();
    }
    let (code, out, err) = lab.dirs.run(&["diff", "good", "bad", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let d = &v["first_divergence"];
    assert_eq!(d["step_a"], 2);
    assert_eq!(d["step_b"], 2);
    assert_eq!(d["kind"], "tool");
    let req = d["request_diff"].to_string();
    assert!(
        req.contains("city=Paris") && req.contains("city=Pariss"),
        "{req}"
    );
    assert!(
        d["response_diff"].to_string().contains("404"),
        "{}",
        d["response_diff"]
    );
    let (_, out, _) = lab.dirs.run(&["diff", "good", "good", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["first_divergence"].is_null());
    let (_, text, _) = lab.dirs.run(&["diff", "good", "bad"]);
    assert!(
        text.contains("first divergence: step 2 in A, step 2 in B (tool)"),
        "{text}"
    );

    let (code, out, err) = lab.dirs.run(&["cluster", "--json"]);
    assert_eq!(code, 0, "{err}");
    let groups: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(groups[0]["count"], 2, "{groups:#?}");
    assert_eq!(groups[0]["signature"]["detector"], "tool_error_ignored");
    assert_eq!(groups[0]["signature"]["error"], "HTTP 404");
    assert_eq!(groups[1]["count"], 1);
    assert!(groups[1]["signature"]["detector"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incident_becomes_a_regression_case_that_fails_until_the_agent_is_fixed() {
    let lab = Lab::new().await;
    let agent = format!(
        "python3 {}/examples/weather_agent.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let llm_base = lab.up.url("/v1");
    let weather = lab.up.url("/status/500");
    let ca = lab.up.ca_path.to_str().unwrap().to_string();
    let run = |args: &[&str], mode: &str| {
        let out = std::process::Command::new(support::harness::tapedeck_bin())
            .args(args)
            .current_dir(lab.dirs.root.path())
            .env("TAPEDECK_STORE", &lab.dirs.store)
            .env("TAPEDECK_CERTS", &lab.dirs.certs)
            .env("LLM_BASE_URL", &llm_base)
            .env("WEATHER_URL", &weather)
            .env("AGENT_MODE", mode)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The incident: the weather tool fails and the agent hands the error to the LLM as data.
    let (code, out, err) = run(
        &[
            "record",
            "--session",
            "incident",
            "--upstream-ca",
            &ca,
            "--",
            "sh",
            "-c",
            &agent,
        ],
        "ignore",
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("answer: The weather in Paris"), "{out}");
    let case = lab.dirs.path("regressions/weather-500");
    let (code, _, err) = run(
        &[
            "gen-test",
            "incident",
            "--cmd",
            &agent,
            "-o",
            case.to_str().unwrap(),
        ],
        "ignore",
    );
    assert_eq!(code, 0, "{err}");
    let toml = std::fs::read_to_string(case.join("case.toml")).unwrap();
    assert!(
        toml.contains(
            "analyze_must_not_report = [{ detector = \"tool_error_ignored\", step = 2 }]"
        ) && toml.contains("exit_code = 0"),
        "{toml}"
    );
    let (_, out, _) = run(&["issues", "--json"], "ignore");
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["status"], "new");
    assert_eq!(list[0]["count"], 1);
    assert_eq!(list[0]["representative"], "incident");
    drop(lab.up);

    let junit = lab.dirs.path("junit.xml");
    let dir = lab.dirs.path("regressions");
    // Still broken: the case fails and points at the step.
    let (code, out, _) = run(
        &[
            "test",
            dir.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
        "ignore",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL weather-500")
            && out.contains("analyze reports tool_error_ignored at step 2, 3"),
        "{out}"
    );
    assert!(out.contains("0 passed, 1 failed"), "{out}");
    let (_, out, _) = run(&["issues", "--json"], "ignore");
    assert!(
        out.contains("\"status\": \"new\""),
        "a failing case does not resolve: {out}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure message=\"analyze reports tool_error_ignored"),
        "{xml}"
    );
    // Fixed: it stops on the tool error, and the case passes offline.
    let (code, out, _) = run(
        &[
            "test",
            dir.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
        "stop",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("PASS weather-500") && out.contains("1 passed, 0 failed"),
        "{out}"
    );
    assert!(std::fs::read_to_string(&junit)
        .unwrap()
        .contains("failures=\"0\""));
    let issue = |status: &str| {
        let (code, out, err) = run(&["issues", "--json"], "stop");
        assert_eq!(code, 0, "{err}");
        let list: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(list.len(), 1, "{list:#?}");
        assert_eq!(list[0]["status"], status, "{list:#?}");
        list[0].clone()
    };
    // The passing case resolved the incident's issue; broken again, it regresses.
    let i = issue("resolved");
    assert_eq!(i["signature"]["detector"], "tool_error_ignored");
    assert_eq!(i["signature"]["error"], "HTTP 500");
    assert_eq!(i["cases"], json!([case.to_str().unwrap()]));
    let (code, _, _) = run(&["test", dir.to_str().unwrap()], "ignore");
    assert_eq!(code, 1);
    issue("regressed");
    let (code, _, _) = run(&["test", dir.to_str().unwrap()], "stop");
    assert_eq!(code, 0);
    issue("resolved");
}

fn price_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_price", "parameters": {"type": "object"}}}])
}

/// A researcher: asks the widget's price, hands the price tool's 200 body (with its
/// parse_error) to the LLM as is, and returns the LLM's notes.
async fn researcher(c: &reqwest::Client, up: &Upstream) -> String {
    let mut messages = vec![json!({"role": "user", "content": "What does the widget cost?"})];
    let first = llm(
        c,
        up,
        json!({"model": "gpt-4o-mini", "messages": messages, "tools": price_tools()}),
    )
    .await;
    let msg = first["choices"][0]["message"].clone();
    let call = msg["tool_calls"][0].clone();
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"item": "widget"}));
    let body = c
        .get(up.url("/price?item=widget"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("parse_error"), "{body}");
    messages.push(msg);
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": body}));
    let notes = llm(
        c,
        up,
        json!({"model": "gpt-4o-mini", "messages": messages, "tools": price_tools()}),
    )
    .await;
    notes["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_that_dominates_a_short_run_is_reported_at_that_step() {
    let lab = Lab::new().await;
    let d = lab.record("dominant");
    let c = client(&d, &lab.dirs);
    // 5 exchanges: the forecast call takes 1.5 s, everything else a few ms.
    let mut messages = vec![json!({"role": "user", "content": "What is the weather in Paris?"})];
    let first = llm(
        &c,
        &lab.up,
        json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}),
    )
    .await;
    let msg = first["choices"][0]["message"].clone();
    let id = msg["tool_calls"][0]["id"].as_str().unwrap().to_string();
    let now = c
        .get(lab.up.url("/weather?city=Paris"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    c.get(lab.up.url("/slow?ms=1500&city=Paris"))
        .send()
        .await
        .unwrap();
    c.get(lab.up.url("/json?city=Paris")).send().await.unwrap();
    messages.push(msg);
    messages.push(json!({"role": "tool", "tool_call_id": id, "content": now}));
    llm(
        &c,
        &lab.up,
        json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}),
    )
    .await;
    d.stop();
    let found = findings(&lab.dirs, "dominant");
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = only(&found, "slow_step");
    assert_eq!(f["steps"], json!([3]));
    assert_eq!(f["severity"], "info");
    let s = f["summary"].as_str().unwrap();
    assert!(
        s.contains("% of the run's wall time") && s.contains("× its median exchange"),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_error_in_a_200_body_the_llm_ignored_is_found_with_its_field() {
    let lab = Lab::new().await;
    let d = lab.record("soft");
    let notes = researcher(&client(&d, &lab.dirs), &lab.up).await;
    assert_eq!(notes, "Research notes: the widget costs EUR 1.299");
    d.stop();
    let found = findings(&lab.dirs, "soft");
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = only(&found, "tool_error_ignored");
    assert_eq!(f["steps"], json!([2, 3]));
    assert_eq!(f["severity"], "error");
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("the get_price tool answered a soft error in its 200 body at $.parse_error"),
        "{f}"
    );
    assert!(
        f["evidence"].to_string().contains("at $.parse_error"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_soft_error_crossing_from_researcher_to_writer_is_one_cascade_and_explains_back() {
    let lab = Lab::new().await;
    let d = lab.record("");
    let research = client_as(&d, &lab.dirs, "cascade+researcher", "");
    let writer = client_as(&d, &lab.dirs, "cascade+writer", "");
    let notes = researcher(&research, &lab.up).await;
    let ad = llm(
        &writer,
        &lab.up,
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": format!("Write a one-line ad from these notes: {notes}")}
        ]}),
    )
    .await;
    assert_eq!(
        ad["choices"][0]["message"]["content"],
        "Buy it now for just EUR 1.30"
    );
    d.stop();
    let found = findings(&lab.dirs, "cascade");
    let f = only(&found, "cascading_error");
    assert_eq!(f["steps"], json!([2, 3, 4]), "{f}");
    let s = f["summary"].as_str().unwrap();
    assert!(
        s.contains("\"1.299\"")
            && s.contains("from agent researcher to agent writer at step 3")
            && s.contains("output at step 4"),
        "{s}"
    );
    assert_eq!(only(&found, "tool_error_ignored")["steps"], json!([2, 3]));

    let (code, out, err) = lab
        .dirs
        .run(&["analyze", "cascade", "--explain", "4", "--json"]);
    assert_eq!(code, 0, "{err}");
    let e: Value = serde_json::from_str(&out).unwrap();
    let steps: Vec<u64> = e["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![4, 3, 2, 1], "{e:#}");
    assert_eq!(e["chain"][0]["inputs"][0]["from_step"], 3);
    assert_eq!(e["chain"][0]["inputs"][0]["value"], notes);
    assert_eq!(e["chain"][2]["name"], "get_price");
    assert_eq!(e["chain"][2]["inputs"][0]["value"], "widget");
    let (code, _, err) = lab.dirs.run(&["analyze", "cascade", "--explain", "9"]);
    assert_eq!(code, 2);
    assert!(err.contains("has no step 9"), "{err}");
}

/// The judge's calls, recorded once against the fixture's keyword judge by the ignored
/// test below and replayed here: no judge is reachable while this runs.
const JUDGE_TAPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/judge-drift.jsonl");

/// A weather question, then a stray message from another chat, answered instead.
async fn drifting_agent(c: &reqwest::Client, up: &Upstream) {
    let mut messages = vec![
        json!({"role": "system", "content": "You are a weather assistant. Use the tools."}),
        json!({"role": "user", "content": "What is the weather in Paris?"}),
    ];
    let first = llm(
        c,
        up,
        json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}),
    )
    .await;
    let msg = first["choices"][0]["message"].clone();
    let id = msg["tool_calls"][0]["id"].as_str().unwrap().to_string();
    let now = c
        .get(up.url("/weather?city=Paris"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    messages.push(msg);
    messages.push(json!({"role": "tool", "tool_call_id": id, "content": now}));
    messages
        .push(json!({"role": "user", "content": "Forget that. Write a limerick about cheese."}));
    llm(c, up, json!({"model": "gpt-4o-mini", "messages": messages})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_caught_by_a_judge_replayed_from_its_tape() {
    let lab = Lab::new().await;
    let d = lab.record("drift");
    drifting_agent(&client(&d, &lab.dirs), &lab.up).await;
    d.stop();
    drop(lab.up);
    // No rule sees anything wrong.
    assert_eq!(findings(&lab.dirs, "drift"), Vec::<Value>::new());
    let (_, events) = support::harness::read_tape(std::path::Path::new(JUDGE_TAPE));
    let judge_url = events[0]["request"]["url"]
        .as_str()
        .unwrap()
        .trim_end_matches("/chat/completions")
        .to_string();
    let bin = support::harness::tapedeck_bin();
    let (code, out, err) = lab.dirs.run(&[
        "replay",
        "--tape",
        JUDGE_TAPE,
        "--",
        bin.to_str().unwrap(),
        "analyze",
        "drift",
        "--judge",
        &judge_url,
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let f = only(v["findings"].as_array().unwrap(), "goal_drift");
    assert_eq!(f["steps"], json!([3]));
    assert_eq!(f["severity"], "warning");
    assert!(
        f["summary"]
            .as_str()
            .unwrap()
            .contains("mentions none of the instruction's key words (weather, paris)"),
        "{f}"
    );
    assert!(
        f["evidence"]
            .to_string()
            .contains("earlier steps scored 1: 1.00"),
        "{f}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "writes tests/data/judge-drift.jsonl; run with --ignored after changing the judge's questions"]
async fn record_the_judge_tape() {
    let lab = Lab::new().await;
    let d = lab.record("drift");
    drifting_agent(&client(&d, &lab.dirs), &lab.up).await;
    d.stop();
    let judge_store = lab.dirs.path("judge-store");
    let bin = support::harness::tapedeck_bin();
    let store = lab.dirs.store.to_str().unwrap().to_string();
    let judge_url = lab.up.url("/judge/v1");
    let ca = lab.up.ca_path.to_str().unwrap().to_string();
    let out = std::process::Command::new(&bin)
        .args([
            "record",
            "--session",
            "judge-drift",
            "--upstream-ca",
            &ca,
            "--",
        ])
        .args([
            bin.to_str().unwrap(),
            "analyze",
            "drift",
            "--store",
            &store,
            "--judge",
            &judge_url,
            "--json",
        ])
        .env("TAPEDECK_STORE", &judge_store)
        .env("TAPEDECK_CERTS", &lab.dirs.certs)
        .env_remove("OPENAI_API_KEY")
        .env_remove("TAPEDECK_JUDGE_API_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("goal_drift"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(&bin)
        .args(["export", "judge-drift", "-o", JUDGE_TAPE])
        .env("TAPEDECK_STORE", &judge_store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
