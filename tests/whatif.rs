//! What-if replay, end to end: a recorded run replayed with some calls live (`--live`),
//! some answers changed (`--inject`), and single steps sent again (`rerun`), through the
//! real binary against real upstreams, with the fork each run records read back.

use crate::support;

use serde_json::{json, Value};
use support::harness::{client, Daemon, Dirs};
use support::upstream::Upstream;

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

/// What an agent run saw: the statuses of its calls and the final answer's text.
struct Run {
    statuses: Vec<u16>,
    answer: String,
}

/// The weather agent: LLM (on `llm`), the tool it asks for (on `tools`), a second,
/// unrelated tool call to the LLM's own host, and the LLM again with the tool's result.
async fn agent(c: &reqwest::Client, llm: &str, tools: &str, system: &str) -> Run {
    let mut statuses = Vec::new();
    let mut messages = vec![
        json!({"role": "system", "content": system}),
        json!({"role": "user", "content": "Weather in Paris?"}),
    ];
    let first = json!({"model": "gpt-4o-mini", "messages": messages, "tools": weather_tools()});
    let resp = c
        .post(format!("{llm}/v1/chat/completions"))
        .json(&first)
        .send()
        .await
        .unwrap();
    statuses.push(resp.status().as_u16());
    let answer: Value = resp.json().await.unwrap();
    let call = answer["choices"][0]["message"]["tool_calls"][0].clone();
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    let city = args["city"].as_str().unwrap();
    let resp = c
        .get(format!("{tools}/weather?city={city}"))
        .send()
        .await
        .unwrap();
    statuses.push(resp.status().as_u16());
    let result = resp.text().await.unwrap();
    let resp = c.get(format!("{llm}/json")).send().await.unwrap();
    statuses.push(resp.status().as_u16());
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}));
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": result}));
    let last = json!({"model": "gpt-4o-mini", "messages": messages, "tools": weather_tools()});
    let resp = c
        .post(format!("{llm}/v1/chat/completions"))
        .json(&last)
        .send()
        .await
        .unwrap();
    statuses.push(resp.status().as_u16());
    let answer: Value = resp.json().await.unwrap();
    Run {
        statuses,
        answer: answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

fn record(dirs: &Dirs, session: &str, ups: &[&Upstream]) -> Daemon {
    let mut args = vec!["record".to_string(), "--session".into(), session.into()];
    for up in ups {
        args.push("--upstream-ca".into());
        args.push(up.ca_path.to_str().unwrap().into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(dirs, &args)
}

/// `tapedeck replay --session SESSION ARGS...` able to reach `up` live (its CA trusted).
fn replay_live(dirs: &Dirs, session: &str, args: &[&str], up: &Upstream) -> Daemon {
    let ca = up.ca_path.to_str().unwrap();
    let mut all = vec!["replay", "--session", session];
    all.extend_from_slice(args);
    all.extend(["--upstream-ca", ca]);
    Daemon::start(dirs, &all)
}

/// Records the weather agent into `session` through a record daemon, its LLM on `llm` and
/// its tools on `tools` (which may be the same upstream); returns what the agent got.
async fn record_agent(dirs: &Dirs, session: &str, llm: &Upstream, tools: &Upstream) -> Run {
    let ups: Vec<&Upstream> = if std::ptr::eq(llm, tools) {
        vec![llm]
    } else {
        vec![llm, tools]
    };
    let d = record(dirs, session, &ups);
    let run = agent(
        &client(&d, dirs),
        &llm.base_url(),
        &tools.base_url(),
        "You are a weather bot.",
    )
    .await;
    d.stop();
    run
}

fn sessions(dirs: &Dirs) -> Vec<Value> {
    let (code, out, err) = dirs.run(&["sessions", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn events(dirs: &Dirs, session: &str) -> Vec<Value> {
    support::harness::export(dirs, session)
}

#[tokio::test(flavor = "multi_thread")]
async fn live_llm_sends_only_the_llm_calls_out_and_records_a_fork() {
    let llm = Upstream::start(true).await;
    let tools = Upstream::start(true).await;
    let dirs = Dirs::new();
    let recorded = record_agent(&dirs, "incident", &llm, &tools).await;
    assert_eq!(recorded.statuses, [200, 200, 200, 200]);
    let (llm_base, tools_base) = (llm.base_url(), tools.base_url());
    // The tools' host is gone: a tool call that got out would fail.
    tools.stop();
    let before = llm.requests();

    let r = replay_live(&dirs, "incident", &["--live", "llm"], &llm);
    let c = client(&r, &dirs);
    // The fixed prompt changes both LLM requests: neither is in the recording.
    let now = agent(
        &c,
        &llm_base,
        &tools_base,
        "You are a weather bot. Be brief.",
    )
    .await;
    let (code, stderr) = r.stop();
    assert_eq!(now.statuses, [200, 200, 200, 200], "{stderr}");
    assert!(now.answer.contains("Paris"), "{}", now.answer);
    // Only the two LLM calls reached the LLM's host; its /json was served from the
    // recording although that host was up.
    assert_eq!(llm.requests() - before, 2, "{stderr}");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("LIVE: llm"), "{stderr}");
    assert!(
        stderr.contains("recorded as incident.fork-1: 2 served from the recording, 2 went live"),
        "{stderr}"
    );
    assert!(
        stderr.contains("left incident's path at step 1"),
        "{stderr}"
    );

    let list = sessions(&dirs);
    let fork = list
        .iter()
        .find(|s| s["name"] == "incident.fork-1")
        .unwrap();
    assert_eq!(fork["lineage"]["parent"], "incident");
    assert_eq!(fork["lineage"]["via"], "fork");
    assert_eq!(fork["lineage"]["diverged_at"], 1);
    assert_eq!(fork["events"], 4);
    let (code, table, _) = dirs.run(&["sessions"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("incident (fork, left it at step 1)"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_live_a_changed_call_is_a_miss_and_nothing_goes_out() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record_agent(&dirs, "s", &up, &up).await;
    let before = up.requests();
    let r = Daemon::start(&dirs, &["replay", "--session", "s"]);
    let c = client(&r, &dirs);
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Weather in Rome?"}]});
    let resp = c
        .post(up.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    r.stop();
    assert_eq!(up.requests(), before);
    assert!(!sessions(&dirs).iter().any(|s| s["name"] == "s.fork-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_injected_503_on_the_weather_tool_is_served_and_marked_in_the_fork() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record_agent(&dirs, "clean", &up, &up).await;
    let (llm_url, weather_url) = (
        up.url("/v1/chat/completions"),
        up.url("/weather?city=Paris"),
    );
    up.stop();

    let r = Daemon::start(
        &dirs,
        &[
            "replay",
            "--session",
            "clean",
            "--inject",
            "tool:get_weather=status:503",
            "--fork",
            "what-if-503",
        ],
    );
    let c = client(&r, &dirs);
    let first = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"}], "tools": weather_tools()});
    let resp = c.post(&llm_url).json(&first).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c.get(&weather_url).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let (_, stderr) = r.stop();
    assert!(stderr.contains("recorded as what-if-503"), "{stderr}");
    assert!(stderr.contains("1 injected"), "{stderr}");
    let evs = events(&dirs, "what-if-503");
    assert_eq!(evs.len(), 2, "{evs:?}");
    let weather = &evs[1];
    assert_eq!(weather["response"]["status"], 503, "{weather}");
    assert!(
        weather["injected"]
            .to_string()
            .contains("tool:get_weather=status:503"),
        "{weather}"
    );
    assert!(evs[0]["injected"].is_null(), "{}", evs[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rerun_of_a_step_reports_how_often_the_wrong_tool_comes_back() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record_agent(&dirs, "s", &up, &up).await;
    // From now on the model picks the wrong tool 30% of the time.
    let chance = 0.3;
    up.set_wrong_tool(chance, 7);
    let before = up.requests();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let times = 20;
    let (code, out, err) = dirs.run(&[
        "rerun",
        "s",
        "--step",
        "1",
        "--times",
        &times.to_string(),
        "--upstream-ca",
        &ca,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(up.requests() - before, times, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["times"], times);
    assert_eq!(report["stored_as"], "s.rerun-1");
    let recorded = report["recorded"]["what"].as_str().unwrap();
    assert_eq!(recorded, r#"get_weather {"city":"Paris"}"#);
    let outcomes = report["outcomes"].as_array().unwrap();
    let count_of = |what: &str| {
        outcomes
            .iter()
            .filter(|o| o["what"] == what)
            .map(|o| o["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    let right = count_of(recorded);
    let wrong = count_of(r#"search_web {"city":"Paris"}"#);
    assert_eq!(right + wrong, times as u64, "{out}");
    assert_eq!(report["recorded_count"], right);
    // The wrong-tool rate, within 4 standard errors of the upstream's 30%.
    let n = times as f64;
    let rate = wrong as f64 / n;
    let se = (chance * (1.0 - chance) / n).sqrt();
    assert!((rate - chance).abs() <= 4.0 * se, "rate {rate}: {out}");
    assert_eq!(report["finish_reasons"]["tool_calls"], times);

    // The batch is a session of its own, with its parent and step.
    let list = sessions(&dirs);
    let batch = list.iter().find(|s| s["name"] == "s.rerun-1").unwrap();
    assert_eq!(batch["events"], times);
    assert_eq!(batch["lineage"]["parent"], "s");
    assert_eq!(batch["lineage"]["via"], "rerun");
    assert_eq!(batch["lineage"]["parent_step"], 1);

    // The table says the same.
    let (code, table, err) = dirs.run(&[
        "rerun",
        "s",
        "--step",
        "1",
        "--times",
        "4",
        "--upstream-ca",
        &ca,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("(recorded)") || table.contains("search_web"),
        "{table}"
    );
    assert!(table.contains("stored as s.rerun-2"), "{table}");
    // A step that is not an LLM call is refused with a reason.
    let (code, _, err) = dirs.run(&["rerun", "s", "--step", "2", "--upstream-ca", &ca]);
    assert_eq!(code, 2);
    assert!(err.contains("not an LLM call"), "{err}");

    // From a tape (an incident's, say), into a store that never held the session: the
    // batch is named after the tape's session and notes it as its parent.
    let tape = dirs.path("s.jsonl");
    let (code, _, err) = dirs.run(&["export", "s", "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let other = dirs.path("other-store");
    let other = other.to_str().unwrap();
    let (code, out, err) = dirs.run(&[
        "rerun",
        tape.to_str().unwrap(),
        "--step",
        "1",
        "--times",
        "3",
        "--store",
        other,
        "--upstream-ca",
        &ca,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["stored_as"], "s.rerun-1", "{out}");
    assert_eq!(report["recorded"]["what"], recorded);
    assert_eq!(report["times"], 3);
    let (code, out, err) = dirs.run(&["sessions", "--store", other, "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["name"], "s.rerun-1");
    assert_eq!(list[0]["events"], 3);
    assert_eq!(list[0]["lineage"]["parent"], "s");
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_calls_match_by_meaning_and_a_new_one_names_the_closest_recorded() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record_agent(&dirs, "s", &up, &up).await;
    let base = up.base_url();
    let before = up.requests();
    let r = replay_live(&dirs, "s", &["--live", "llm"], &up);
    let c = client(&r, &dirs);
    // The tool first (before the LLM call that asked for it: any order goes), then again
    // (the recording has it once), then a city the incident never asked about.
    let paris = c
        .get(format!("{base}/weather?city=Paris"))
        .send()
        .await
        .unwrap();
    assert_eq!(paris.status(), 200);
    let recorded = paris.text().await.unwrap();
    let again = c
        .get(format!("{base}/weather?city=Paris"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap(), recorded);
    let rome = c
        .get(format!("{base}/weather?city=Rome"))
        .send()
        .await
        .unwrap();
    assert_eq!(rome.status(), 404);
    let body = rome.text().await.unwrap();
    assert!(
        body.contains(
            "recorded calls of the same tool, nearest arguments first: step 2: get_weather("
        ) && body.contains("city=Paris"),
        "{body}"
    );
    let (_, stderr) = r.stop();
    // Nothing went out: the tool's host is the LLM's, and only LLM calls may.
    assert_eq!(up.requests(), before, "{stderr}");
    assert!(
        stderr.contains("2 served from the recording (1 by meaning, at another place in the run), 0 went live, 0 injected, 1 missed"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn record_injects_what_tapedeck_toml_asks_and_marks_it() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    std::fs::write(
        dirs.path("tapedeck.toml"),
        "[[inject]]\nmatch = \"tool:get_weather\"\naction = \"status:503\"\n",
    )
    .unwrap();
    let d = record(&dirs, "chaos", &[&up]);
    let before = up.requests();
    let base = up.base_url();
    let run = agent(&client(&d, &dirs), &base, &base, "You are a weather bot.").await;
    let (_, stderr) = d.stop();
    // The tool call the LLM asked for got the injected 503 and never reached the upstream;
    // everything else went through.
    assert_eq!(run.statuses, [200, 503, 200, 200], "{stderr}");
    assert_eq!(up.requests() - before, 3, "{stderr}");
    let evs = events(&dirs, "chaos");
    assert_eq!(evs.len(), 4);
    assert_eq!(evs[1]["response"]["status"], 503);
    assert!(
        evs[1]["injected"]
            .to_string()
            .contains("tool:get_weather=status:503"),
        "{}",
        evs[1]
    );
    assert!(evs.iter().filter(|e| !e["injected"].is_null()).count() == 1);
}

/// A response `cut:N` ends: its head, its first `n` bytes, then an error, never the whole.
async fn assert_cut_after(req: reqwest::RequestBuilder, n: usize, version: http::Version) {
    let mut resp = req.send().await.expect("the head comes before the cut");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), version);
    let mut got = Vec::new();
    let end = loop {
        match resp.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        end.is_err(),
        "a cut stream ends in an error, not cleanly: {got:?}"
    );
    assert_eq!(got.len(), n, "{:?}", String::from_utf8_lossy(&got));
}

/// Record cuts a streamed answer after its first bytes, over HTTP/1.1 and HTTP/2 alike,
/// and stores what the client got.
#[tokio::test(flavor = "multi_thread")]
async fn record_cuts_a_stream_after_its_first_bytes_over_both_http_versions() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::start(
        &dirs,
        &[
            "record",
            "--session",
            "cut",
            "--upstream-ca",
            up.ca_path.to_str().unwrap(),
            "--inject",
            "host:*=cut:7",
        ],
    );
    let sse = up.url("/sse?n=3&gap_ms=10");
    assert_cut_after(
        support::harness::client_h1(&d, &dirs).get(&sse),
        7,
        http::Version::HTTP_11,
    )
    .await;
    assert_cut_after(client(&d, &dirs).get(&sse), 7, http::Version::HTTP_2).await;
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    let evs = events(&dirs, "cut");
    assert_eq!(evs.len(), 2, "{evs:?}");
    for ev in &evs {
        assert_eq!(ev["response"]["body"]["len"], 7, "{ev}");
        assert!(ev["injected"].to_string().contains("cut:7"), "{ev}");
    }
}

/// A call `delay:400ms` holds back: answered, and no sooner. Returns the body.
async fn answered_late(req: reqwest::RequestBuilder) -> String {
    let started = std::time::Instant::now();
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "answered after {:?}",
        started.elapsed()
    );
    body
}

/// A call `timeout` holds: nothing comes back before the client gives up.
async fn never_answered(req: reqwest::RequestBuilder) {
    let err = req
        .timeout(std::time::Duration::from_millis(600))
        .send()
        .await
        .expect_err("an injected timeout answers nothing");
    assert!(err.is_timeout(), "{err}");
}

/// The events of a run under `step:1=delay:400ms` and `step:2=timeout`: both marked, the
/// first answered, the second with no response and a timeout.
fn assert_delayed_then_timed_out(evs: &[Value]) {
    assert_eq!(evs.len(), 2, "{evs:?}");
    let mark = |i: usize| evs[i]["injected"].to_string();
    assert!(mark(0).contains("step:1=delay:400ms"), "{}", evs[0]);
    assert_eq!(evs[0]["response"]["status"], 200);
    assert!(mark(1).contains("step:2=timeout"), "{}", evs[1]);
    assert!(evs[1]["response"].is_null(), "{}", evs[1]);
    assert_eq!(evs[1]["error"]["kind"], "timeout", "{}", evs[1]);
}

/// `delay:` holds the real answer back; `timeout` gives none (the upstream never sees the
/// call) until the client gives up, and does not keep the daemon from stopping.
#[tokio::test(flavor = "multi_thread")]
async fn record_injects_a_delay_and_a_timeout_by_step() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap();
    let d = Daemon::start(
        &dirs,
        &[
            "record",
            "--session",
            "slow",
            "--upstream-ca",
            ca,
            "--inject",
            "step:1=delay:400ms",
            "--inject",
            "step:2=timeout",
        ],
    );
    let c = client(&d, &dirs);
    let before = up.requests();
    let body = answered_late(c.get(up.url("/json"))).await;
    assert_eq!(
        up.requests() - before,
        1,
        "the delayed call reached the upstream"
    );
    never_answered(c.get(up.url("/weather?city=Paris"))).await;
    assert_eq!(
        up.requests() - before,
        1,
        "the timed-out call reached the upstream"
    );
    // The call still held open does not keep the daemon from stopping.
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    let evs = events(&dirs, "slow");
    assert_delayed_then_timed_out(&evs);
    assert_eq!(evs[0]["response"]["body"]["len"], body.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_injects_a_body_a_cut_stream_and_a_reset_by_step() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, "calls", &[&up]);
    let c = client(&d, &dirs);
    let (json, sse, weather) = (
        up.url("/json"),
        up.url("/sse?n=3&gap_ms=10"),
        up.url("/weather?city=Paris"),
    );
    for url in [&json, &sse, &weather] {
        let r = c.get(url.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    d.stop();
    up.stop();
    std::fs::write(dirs.path("answer.json"), r#"{"injected": true}"#).unwrap();

    let r = Daemon::start(
        &dirs,
        &[
            "replay",
            "--session",
            "calls",
            "--inject",
            "step:1=body:answer.json",
            "--inject",
            "step:2=cut:5",
            "--inject",
            "step:3=reset",
        ],
    );
    let c = client(&r, &dirs);
    let first = c.get(&json).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await.unwrap(), r#"{"injected": true}"#);
    // The stream ends after 5 bytes, as an error: the head and those bytes first (over
    // HTTP/2 too, where a reset sent at once would drop what is still queued).
    assert_cut_after(c.get(&sse), 5, http::Version::HTTP_2).await;
    // The connection is dropped without an answer.
    assert!(c.get(&weather).send().await.is_err());
    let (_, stderr) = r.stop();
    assert!(stderr.contains("3 injected"), "{stderr}");
    let evs = events(&dirs, "calls.fork-1");
    assert_eq!(evs.len(), 3, "{evs:?}");
    let marks: Vec<String> = evs.iter().map(|e| e["injected"].to_string()).collect();
    assert!(marks[0].contains("step:1=body:answer.json"), "{marks:?}");
    assert!(marks[1].contains("step:2=cut:5"), "{marks:?}");
    assert!(marks[2].contains("step:3=reset"), "{marks:?}");
    assert_eq!(evs[1]["response"]["body"]["len"], 5, "{}", evs[1]);
    assert!(evs[2]["response"].is_null(), "{}", evs[2]);
}

/// The same two actions in a replay: the recorded answer comes late, the second call gets
/// none, and the fork marks both.
#[tokio::test(flavor = "multi_thread")]
async fn replay_injects_a_delay_and_a_timeout_by_step() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, "calls", &[&up]);
    let c = client(&d, &dirs);
    let (json, weather) = (up.url("/json"), up.url("/weather?city=Paris"));
    let mut recorded = Vec::new();
    for url in [&json, &weather] {
        recorded.push(
            c.get(url.as_str())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    d.stop();
    up.stop();

    let r = Daemon::start(
        &dirs,
        &[
            "replay",
            "--session",
            "calls",
            "--inject",
            "step:1=delay:400ms",
            "--inject",
            "step:2=timeout",
        ],
    );
    let c = client(&r, &dirs);
    assert_eq!(answered_late(c.get(&json)).await, recorded[0]);
    never_answered(c.get(&weather)).await;
    let (code, stderr) = r.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("2 injected"), "{stderr}");
    assert_delayed_then_timed_out(&events(&dirs, "calls.fork-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn live_by_host_glob_sends_only_that_hosts_calls_out() {
    let tls = Upstream::start(true).await; // https://localhost:PORT
    let plain = Upstream::start(false).await; // http://127.0.0.1:PORT
    let dirs = Dirs::new();
    let d = record(&dirs, "hosts", &[&tls]);
    let c = client(&d, &dirs);
    let (weather, json) = (tls.url("/weather?city=Paris"), plain.url("/json"));
    for url in [&weather, &json] {
        assert_eq!(c.get(url.as_str()).send().await.unwrap().status(), 200);
    }
    d.stop();
    let rome = tls.url("/weather?city=Rome");
    tls.stop();
    let before = plain.requests();

    let r = Daemon::start(
        &dirs,
        &["replay", "--session", "hosts", "--live", "127.0.0.*"],
    );
    let c = client(&r, &dirs);
    // The selected host's calls go out, recorded or not.
    assert_eq!(c.get(&json).send().await.unwrap().status(), 200);
    let page = plain.url("/page?cursor=a");
    assert_eq!(c.get(&page).send().await.unwrap().status(), 200);
    // The other host's recorded call is served; its new one is a miss, not a connect.
    assert_eq!(c.get(&weather).send().await.unwrap().status(), 200);
    let miss = c.get(&rome).send().await.unwrap();
    assert_eq!(miss.status(), 404);
    assert!(miss.headers().contains_key("x-tapedeck-miss"));
    let (_, stderr) = r.stop();
    assert_eq!(plain.requests() - before, 2, "{stderr}");
    assert!(
        stderr.contains("1 served from the recording, 2 went live, 0 injected, 1 missed"),
        "{stderr}"
    );
    let evs = events(&dirs, "hosts.fork-1");
    assert_eq!(evs.len(), 4, "{evs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rerun_reads_streamed_answers_and_changes_the_model_and_system_prompt() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, "st", &[&up]);
    let c = client(&d, &dirs);
    let body = json!({"model": "gpt-4o-mini", "stream": true, "tools": weather_tools(),
        "messages": [{"role": "system", "content": "old"},
                     {"role": "user", "content": "Weather in Paris?"}]});
    let resp = c
        .post(up.url("/v1/chat/completions"))
        .bearer_auth("sk-recorded-secret-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    d.stop();
    std::fs::write(dirs.path("system.txt"), "a new prompt").unwrap();
    let ca = up.ca_path.to_str().unwrap();
    let (code, out, err) = dirs.run(&[
        "rerun",
        "st",
        "--step",
        "1",
        "--times",
        "3",
        "--model",
        "gpt-4o",
        "--system",
        "system.txt",
        "--upstream-ca",
        ca,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["model"], "gpt-4o");
    assert_eq!(report["recorded_count"], 3, "{out}");
    assert_eq!(report["finish_reasons"]["tool_calls"], 3, "{out}");
    // What was sent: the new model and prompt, the stream kept, no stored secret.
    let evs = events(&dirs, "st.rerun-1");
    assert_eq!(evs.len(), 3);
    let (code, shown, _) = dirs.run(&["show", "st.rerun-1", "--json"]);
    assert_eq!(code, 0);
    assert!(shown.contains("gpt-4o"), "{shown}");
    assert!(dirs.files_containing(b"sk-recorded-secret-key").is_empty());
    let sent = dirs.files_containing(br#"{"role":"system","content":"a new prompt"}"#);
    assert!(
        sent.iter().any(|p| !p.ends_with("system.txt")),
        "the prompt sent is not in the store: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn live_tool_and_on_miss_live_pick_other_splits() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record_agent(&dirs, "s", &up, &up).await;
    let base = up.base_url();

    // --live tool: the same run, its LLM calls from the recording, its tool calls live.
    let before = up.requests();
    let r = replay_live(&dirs, "s", &["--live", "tool"], &up);
    let run = agent(&client(&r, &dirs), &base, &base, "You are a weather bot.").await;
    let (_, stderr) = r.stop();
    assert_eq!(run.statuses, [200, 200, 200, 200], "{stderr}");
    assert_eq!(up.requests() - before, 2, "{stderr}");
    assert!(
        stderr.contains("2 served from the recording, 2 went live"),
        "{stderr}"
    );
    assert!(stderr.contains("it never left s's path"), "{stderr}");

    // --on-miss live: a changed prompt misses both LLM calls, which go out; the tool
    // calls the recording has are served.
    let before = up.requests();
    let r = replay_live(&dirs, "s", &["--on-miss", "live"], &up);
    let run = agent(&client(&r, &dirs), &base, &base, "A new prompt.").await;
    let (_, stderr) = r.stop();
    assert_eq!(run.statuses, [200, 200, 200, 200], "{stderr}");
    assert_eq!(up.requests() - before, 2, "{stderr}");
    assert!(
        stderr.contains("recorded as s.fork-2: 2 served from the recording, 2 went live"),
        "{stderr}"
    );
}

/// A what-if run whose fork the store cannot take (here a floor above any disk, as a full
/// one would be): the agent is served as in any replay, the fork is marked at the step
/// where it stopped being stored, and the run's summary says the fork is not compared with
/// the recording. Before, the fork lacked the steps it could not store, with nothing to
/// say so, and the summary compared it: "it left clean's path at step 1 ... B never made
/// this call", a divergence the agent never made. The run exits 2 where the agent's 0
/// would have been its status (it exited 0 until the thirty-third session), as record
/// does; the agent's own failure stays its status.
#[tokio::test(flavor = "multi_thread")]
async fn a_fork_the_store_cannot_take_is_marked_and_not_compared() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let script = format!(
        "curl -s -f -o /dev/null {} && curl -s -o /dev/null -w '%{{http_code}}' {}",
        up.url("/json"),
        up.url("/weather?city=Paris")
    );
    let (code, _, err) = dirs.run(&[
        "record",
        "--session",
        "clean",
        "--upstream-ca",
        &ca,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code, 0, "{err}");
    drop(up);

    // A what-if run of `agent` under a floor above any disk.
    let what_if = |agent: &str| {
        dirs.run_with(
            &[
                "replay",
                "--session",
                "clean",
                "--inject",
                "step:2=status:503",
                "--",
                "sh",
                "-c",
                agent,
            ],
            &[("TAPEDECK_MIN_FREE", "1000TiB")],
        )
    };
    let (code, out, err) = what_if(&script);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tapedeck: exiting 2: the what-if fork is incomplete"),
        "{err}"
    );
    assert_eq!(out, "503", "the agent was served, the injection too");
    assert!(
        err.contains("what-if run of clean recorded as clean.fork-1: 1 served from the recording, 0 went live, 1 injected, 0 missed; 2 exchanges could not be stored (the first: clean.fork-1#1: the disk of the store at"),
        "{err}"
    );
    assert!(
        err.contains("so the fork is not compared with clean"),
        "{err}"
    );
    assert!(!err.contains("left clean's path"), "{err}");
    let (code, out, _) = dirs.run(&["fsck"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("clean.fork-1: DAMAGED")
            && out.contains("step 1: it could not be stored whole"),
        "{out}"
    );
    assert!(out.contains("clean: 2 events, sound"), "{out}");
    // Still a fork of clean, said to be one that was not compared.
    let (code, table, _) = dirs.run(&["sessions"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("clean (fork, not compared: not stored whole)"),
        "{table}"
    );
    let fork = sessions(&dirs)
        .into_iter()
        .find(|s| s["name"] == "clean.fork-1")
        .unwrap();
    assert_eq!(fork["lineage"]["incomplete"], true, "{fork}");

    // An agent that fails keeps its own status.
    let (code, _, err) = what_if(&format!("{script}; exit 7"));
    assert_eq!(code, 7, "{err}");
    assert!(
        err.contains("could not be stored") && !err.contains("exiting 2"),
        "{err}"
    );
}
