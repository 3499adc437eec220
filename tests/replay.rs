//! Replay, end to end: record a scripted run against the real upstream, then replay it
//! through the real binary with no network and compare what the client gets.

use crate::support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::harness::{client, client_h1, export, Daemon, Dirs};
use support::upstream::Upstream;

fn record(dirs: &Dirs, up: &Upstream, session: &str) -> Daemon {
    Daemon::record(dirs, up, session, &[])
}

fn replay(dirs: &Dirs, session: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["replay", "--session", session];
    args.extend_from_slice(extra);
    Daemon::start(dirs, &args)
}

struct Got {
    status: u16,
    encoding: Option<String>,
    body: Vec<u8>,
}

async fn fetch(_c: &reqwest::Client, req: reqwest::RequestBuilder) -> Got {
    let mut r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let encoding = r
        .headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string());
    let mut body = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        body.extend_from_slice(&c);
    }
    Got {
        status,
        encoding,
        body,
    }
}

fn decoded(g: &Got) -> Vec<u8> {
    use std::io::Read as _;
    match g.encoding.as_deref() {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&g.body[..])
                .read_to_end(&mut out)
                .unwrap();
            assert!(!out.is_empty());
            out
        }
        Some(other) => panic!("unexpected encoding {other}"),
        None => g.body.clone(),
    }
}

fn chat(text: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    })
}

/// The scripted run: LLM, tool, SSE, an error status, gzip, an empty body.
async fn script(c: &reqwest::Client, up: &Upstream, api_key: &str) -> Vec<Got> {
    vec![
        fetch(
            c,
            c.post(up.url("/v1/chat/completions"))
                .bearer_auth(api_key)
                .json(&chat("Weather in Paris?")),
        )
        .await,
        fetch(c, c.get(up.url("/weather?city=Paris"))).await,
        fetch(c, c.get(up.url("/sse?n=3&gap_ms=30"))).await,
        fetch(c, c.get(up.url("/status/503"))).await,
        fetch(c, c.get(up.url("/gzip"))).await,
        fetch(c, c.get(up.url("/empty"))).await,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_gives_identical_bodies_statuses_and_chunks_without_touching_the_upstream() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "run");
    let recorded = script(&client(&d, &dirs), &up, "sk-recorded-key-123456").await;
    assert_eq!(d.stop().0, 0);

    let before = up.connections();
    let r = replay(&dirs, "run", &[]);
    let c = client(&r, &dirs);
    // A different API key in CI must not matter.
    let replayed = script(&c, &up, "sk-ci-other-key").await;
    for (i, (a, b)) in recorded.iter().zip(&replayed).enumerate() {
        assert_eq!(a.status, b.status, "step {}", i + 1);
        assert_eq!(a.encoding, b.encoding, "step {}", i + 1);
        // Encoded bodies are re-encoded on replay: they must decode to the same content.
        assert_eq!(decoded(a), decoded(b), "step {}", i + 1);
    }
    // SSE comes back event for event (chunk timing is checked with --pace recorded).
    let events = |g: &Got| -> Vec<String> {
        String::from_utf8_lossy(&g.body)
            .split("\n\n")
            .map(str::to_string)
            .collect()
    };
    assert_eq!(events(&replayed[2]), events(&recorded[2]));
    assert!(events(&recorded[2]).len() >= 4);
    assert_eq!(
        up.connections(),
        before,
        "replay opened a connection to the upstream"
    );
    let (code, stderr) = r.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("served 6/6 events, 0 misses"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn misses_say_out_of_order_unrecorded_and_exhausted() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "seq");
    let c = client(&d, &dirs);
    // A paginated listing: the second request carries the cursor the first answer gave.
    let first = up.url("/page?cursor=start");
    let cursor = support::upstream::next_cursor("start");
    let second = up.url(&format!("/page?cursor={cursor}"));
    fetch(&c, c.get(&first)).await;
    fetch(&c, c.get(&second)).await;
    d.stop();

    let r = replay(&dirs, "seq", &[]);
    let c = client(&r, &dirs);
    let resp = c.get(&second).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-tapedeck-miss"], "out-of-order");
    let body: Value = resp.json().await.unwrap();
    // Not an LLM host: the message is the error itself, the details beside it.
    let msg = body["error"].as_str().unwrap();
    assert_eq!(body["tapedeck"]["expected_step"], 1);
    assert_eq!(body["tapedeck"]["recorded_step"], 2);
    assert_eq!(body["tapedeck"]["accepted_by"], "--order any");
    let why = format!(
        "step 2's request holds a value first seen in step 1's response (value \"{cursor}\" from its response), which has not been served"
    );
    assert!(
        msg.contains("session seq")
            && msg.contains(&why)
            && msg.contains("--order any would accept it"),
        "{msg}"
    );

    assert_eq!(c.get(&first).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&second).send().await.unwrap().status(), 200);
    let again = c.get(&second).send().await.unwrap();
    assert_eq!(again.headers()["x-tapedeck-miss"], "exhausted");
    let extra = c.get(up.url("/weather?city=Rome")).send().await.unwrap();
    assert_eq!(extra.status(), 404);
    assert_eq!(extra.headers()["x-tapedeck-miss"], "unrecorded");
    let (code, stderr) = r.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("MISS out-of-order"), "{stderr}");
    assert!(
        stderr.contains("3 misses (1 exhausted, 1 out-of-order, 1 unrecorded)"),
        "{stderr}"
    );

    // --order any matches by key alone: the same reversal is served.
    let r = replay(&dirs, "seq", &["--order", "any"]);
    let c = client(&r, &dirs);
    assert_eq!(c.get(&second).send().await.unwrap().status(), 200);
    assert_eq!(c.get(&first).send().await.unwrap().status(), 200);
    let (_, stderr) = r.stop();
    assert!(stderr.contains("0 misses"), "{stderr}");
    assert!(
        stderr.contains(
            "accepted 1 reorder (--order any: by key alone): served step 2 before step 1"
        ),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn independent_calls_replay_in_any_order_and_the_summary_lists_the_reorders() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "par");
    let c = client_h1(&d, &dirs);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        let url = up.url(&format!("/slow?ms=400&i={i}"));
        tasks.push(tokio::spawn(async move {
            c.get(url).send().await.unwrap().text().await.unwrap()
        }));
    }
    let mut recorded = Vec::new();
    for t in tasks {
        recorded.push(t.await.unwrap());
    }
    fetch(&c, c.get(up.url("/json"))).await;
    d.stop();

    let r = replay(&dirs, "par", &[]);
    let c = client(&r, &dirs);
    // The call recorded last carries nothing of the others: it may come first.
    assert_eq!(c.get(up.url("/json")).send().await.unwrap().status(), 200);
    for i in [5, 2, 7, 0, 3, 6, 1, 4] {
        let resp = c
            .get(up.url(&format!("/slow?ms=400&i={i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "i={i}");
        assert_eq!(resp.text().await.unwrap(), recorded[i]);
    }
    let (code, stderr) = r.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("served 9/9 events, 0 misses"), "{stderr}");
    assert!(
        stderr.contains("reorders (no dependency between them): served step 9 before step 1, "),
        "{stderr}"
    );

    // --order strict still holds the recorded sequence, and says what would accept it.
    let r = replay(&dirs, "par", &["--order", "strict"]);
    let c = client(&r, &dirs);
    let resp = c.get(up.url("/json")).send().await.unwrap();
    assert_eq!(resp.headers()["x-tapedeck-miss"], "out-of-order");
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("--order strict expects step 1")
            && msg.contains("--order causal (the default) would accept it"),
        "{msg}"
    );
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_recorded_one_by_one_replay_concurrently_in_any_order() {
    // A client that sends its requests together, recorded while the server answered each
    // before the next left: timing cannot tell they were concurrent, and need not.
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "gather");
    let c = client(&d, &dirs);
    let cities = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Oslo"];
    let url = |i: usize| up.url(&format!("/weather?city={}&i={i}", cities[i % 6]));
    let mut recorded = Vec::new();
    for i in 0..24 {
        recorded.push(fetch(&c, c.get(url(i))).await.body);
    }
    d.stop();

    for client_of in [client, client_h1] {
        let r = replay(&dirs, "gather", &[]);
        let c = client_of(&r, &dirs);
        let mut tasks = Vec::new();
        for i in (0..24).rev() {
            let (c, u) = (c.clone(), url(i));
            tasks.push(tokio::spawn(async move {
                let resp = c.get(u).send().await.unwrap();
                (i, resp.status().as_u16(), resp.bytes().await.unwrap())
            }));
        }
        for t in tasks {
            let (i, status, body) = t.await.unwrap();
            assert_eq!(status, 200, "request {i}");
            assert_eq!(body.to_vec(), recorded[i], "request {i}");
        }
        let (code, stderr) = r.stop();
        assert_eq!(code, 0);
        assert!(stderr.contains("served 24/24 events, 0 misses"), "{stderr}");
    }
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

/// A sequential agent's three steps: the decision, the tool it asked for, the answer.
struct AgentSteps {
    first: Value,
    tool: String,
    last: Value,
}

async fn run_agent(c: &reqwest::Client, up: &Upstream) -> AgentSteps {
    let mut messages = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    let first = json!({"model": "gpt-4o-mini", "messages": messages, "tools": weather_tools()});
    let answer: Value = c
        .post(up.url("/v1/chat/completions"))
        .json(&first)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let call = answer["choices"][0]["message"]["tool_calls"][0].clone();
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    let tool = up.url(&format!("/weather?city={}", args["city"].as_str().unwrap()));
    let result = c.get(&tool).send().await.unwrap().text().await.unwrap();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}));
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": result}));
    let last = json!({"model": "gpt-4o-mini", "messages": messages, "tools": weather_tools()});
    let resp = c
        .post(up.url("/v1/chat/completions"))
        .json(&last)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    AgentSteps { first, tool, last }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sequential_agent_whose_dependent_steps_come_in_another_order_is_caught() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "agent");
    let steps = run_agent(&client(&d, &dirs), &up).await;
    d.stop();

    let r = replay(&dirs, "agent", &[]);
    let c = client(&r, &dirs);
    // The tool before the decision that asked for it.
    let resp = c.get(&steps.tool).send().await.unwrap();
    assert_eq!(resp.headers()["x-tapedeck-miss"], "out-of-order");
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("step 2's request carries the arguments of the get_weather call that step 1's response asked for (value \"Paris\" from its response), which has not been served"),
        "{msg}"
    );
    // The answer before the decision: an LLM host answers in the provider's shape.
    let resp = c
        .post(up.url("/v1/chat/completions"))
        .json(&steps.last)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-tapedeck-miss"], "out-of-order");
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert_eq!(body["error"]["code"], "out-of-order");
    assert!(msg.contains("step 3's request carries"), "{msg}");
    // The faithful order is served.
    for req in [
        c.post(up.url("/v1/chat/completions")).json(&steps.first),
        c.get(&steps.tool),
        c.post(up.url("/v1/chat/completions")).json(&steps.last),
    ] {
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    let (_, stderr) = r.stop();
    assert!(stderr.contains("2 misses (2 out-of-order)"), "{stderr}");
    assert!(!stderr.contains("reorder"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_to_a_stateful_host_keep_their_recorded_order() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "todo");
    let c = client(&d, &dirs);
    for city in ["Paris", "Tokyo"] {
        fetch(&c, c.get(up.url(&format!("/weather?city={city}")))).await;
    }
    d.stop();
    let tokyo = up.url("/weather?city=Tokyo");

    // Nothing links the two calls: any order.
    let r = replay(&dirs, "todo", &[]);
    assert_eq!(
        client(&r, &dirs).get(&tokyo).send().await.unwrap().status(),
        200
    );
    r.stop();

    // Declared stateful, by flag or in tapedeck.toml: recorded order.
    for extra in [&["--stateful-host", "localhost"][..], &[][..]] {
        if extra.is_empty() {
            std::fs::write(dirs.path("tapedeck.toml"), "[[order]]\nhost = \"local*\"\n").unwrap();
        } else {
            std::fs::remove_file(dirs.path("tapedeck.toml")).ok();
        }
        let r = replay(&dirs, "todo", extra);
        let c = client(&r, &dirs);
        let resp = c.get(&tokyo).send().await.unwrap();
        assert_eq!(
            resp.headers()["x-tapedeck-miss"],
            "out-of-order",
            "{extra:?}"
        );
        let body: Value = resp.json().await.unwrap();
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.contains("host localhost is declared stateful") && msg.contains("step 1 (GET"),
            "{msg}"
        );
        assert_eq!(
            c.get(up.url("/weather?city=Paris"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(c.get(&tokyo).send().await.unwrap().status(), 200);
        r.stop();
    }

    // A mistake in the rule is refused with its line.
    std::fs::write(dirs.path("tapedeck.toml"), "[[order]]\nhots = \"x\"\n").unwrap();
    let (code, _, err) = dirs.run(&["replay", "--session", "todo", "--", "true"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("tapedeck.toml") && err.contains("line 2"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn misses_answer_in_the_error_shape_the_client_reads() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "shapes");
    fetch(&client(&d, &dirs), client(&d, &dirs).get(up.url("/json"))).await;
    d.stop();
    let r = replay(&dirs, "shapes", &[]);
    let c = client(&r, &dirs);
    let miss = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()["x-tapedeck-miss"], "unrecorded");
        resp.json::<Value>().await.unwrap()
    };
    let openai = miss(c.post(up.url("/v1/chat/completions")).json(&chat("Hi"))).await;
    assert_eq!(openai["error"]["type"], "tapedeck_miss");
    assert!(openai["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("tapedeck replay miss (unrecorded) in session shapes"));
    let anthropic = miss(c.post(up.url("/v1/messages")).json(&json!({
        "model": "claude-sonnet-4-5", "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}]
    })))
    .await;
    assert_eq!(anthropic["type"], "error");
    assert_eq!(anthropic["error"]["type"], "not_found_error");
    assert!(anthropic["error"]["message"]
        .as_str()
        .unwrap()
        .contains("replay miss"));
    let plain = miss(c.get(up.url("/weather?city=Rome"))).await;
    assert!(plain["error"]
        .as_str()
        .unwrap()
        .contains("was never recorded"));
    assert_eq!(plain["tapedeck"]["miss"], "unrecorded");
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_requests_get_their_responses_in_recorded_order() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "poll");
    let c = client(&d, &dirs);
    let mut recorded = Vec::new();
    for _ in 0..3 {
        recorded.push(
            c.get(up.url("/counter"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    assert_ne!(recorded[0], recorded[1], "the upstream counts");
    d.stop();
    let r = replay(&dirs, "poll", &[]);
    let c = client(&r, &dirs);
    for want in &recorded {
        assert_eq!(
            &c.get(up.url("/counter"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            want
        );
    }
    r.stop();
}

/// Three callers each ask for a new id (identical `GET /newid`s, answered apart) and
/// post it with their own argument. Identical requests take their answers in recorded
/// order, so a faithful rerun whose scheduler lets caller B ask first hands B the id A
/// got when recorded: each post then carries another twin's id than the recording's.
/// Replay matches them with the ids swapped (all three, in any order), and still fails
/// a changed agent that posts one caller's id for another: the swaps must be one to one.
#[tokio::test(flavor = "multi_thread")]
async fn identical_requests_answered_in_another_order_feed_their_callers_without_a_false_miss() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "ids");
    let c = client(&d, &dirs);
    let new_id = |c: reqwest::Client| {
        let url = up.url("/newid");
        async move {
            let v: Value = c.get(url).send().await.unwrap().json().await.unwrap();
            v["id"].as_str().unwrap().to_string()
        }
    };
    let post = |c: reqwest::Client, id: String, arg: &'static str| {
        let url = up.url("/echo");
        async move {
            let resp = c
                .post(url)
                .json(&json!({"order": id, "arg": arg}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            (status, v)
        }
    };
    // Recorded: A, B and C ask in that order, then post.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(new_id(c.clone()).await);
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
    for (id, arg) in ids.iter().zip(["A", "B", "C"]) {
        let (status, _) = post(c.clone(), id.clone(), arg).await;
        assert_eq!(status, 200);
    }
    d.stop();

    // A faithful rerun: B asks first, gets A's recorded id and posts it before A has
    // asked (the event it takes waited, when recorded, for the answer A got); then A
    // gets B's recorded id, and C its own; C posts, then A.
    let r = replay(&dirs, "ids", &[]);
    let c = client(&r, &dirs);
    let mut posted = Vec::new();
    let got_b = new_id(c.clone()).await;
    posted.push((
        got_b.clone(),
        "B",
        post(c.clone(), got_b.clone(), "B").await,
    ));
    let got_a = new_id(c.clone()).await;
    let got_c = new_id(c.clone()).await;
    assert_eq!([&got_b, &got_a, &got_c], [&ids[0], &ids[1], &ids[2]]);
    for (id, arg) in [(got_c, "C"), (got_a, "A")] {
        posted.push((id.clone(), arg, post(c.clone(), id, arg).await));
    }
    for (id, arg, (status, v)) in posted {
        assert_eq!(status, 200, "{arg} posting {id}: {v}");
        assert_eq!(v["body"]["arg"], arg, "{v}");
    }
    let (code, err) = r.stop();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("served 6/6 events, 0 misses")
            && err.contains("2 carried an id (or other value) of an identical request's answer other than the one recorded"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "matched with an identical request's answer swapped: it carries {} where the recording holds {}",
            ids[1], ids[0]
        )),
        "{err}"
    );

    // A changed agent: the ids come in recorded order, and A posts B's.
    for first in ["A", "B"] {
        let r = replay(&dirs, "ids", &[]);
        let c = client(&r, &dirs);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(new_id(c.clone()).await);
        }
        let posts = match first {
            "A" => [(got[1].clone(), "A"), (got[1].clone(), "B")],
            _ => [(got[1].clone(), "B"), (got[1].clone(), "A")],
        };
        let mut statuses = Vec::new();
        for (id, arg) in posts {
            statuses.push(post(c.clone(), id, arg).await.0);
        }
        let (_, log) = r.stop();
        assert!(
            statuses.contains(&404),
            "one caller's id posted for another is a miss ({first} first): {statuses:?} {log}"
        );
        if first == "A" {
            // B's own request, as recorded, came after A's took its id.
            assert!(
                log.contains("is recorded, but it carries a value of an identical request's answer that this run already matched in place of another"),
                "{log}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ignore_rule_added_after_recording_turns_a_miss_into_a_hit() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "rules");
    let c = client(&d, &dirs);
    fetch(
        &c,
        c.post(up.url("/echo"))
            .json(&json!({"q": "weather", "meta": {"ts": "2026-01-01T00:00:00Z"}})),
    )
    .await;
    let (_, log) = d.stop();
    assert!(log.contains("recorded 1 exchange "), "the recording: {log}");
    let later = json!({"q": "weather", "meta": {"ts": "2026-11-25T13:00:00Z"}});

    let r = replay(&dirs, "rules", &[]);
    let c = client(&r, &dirs);
    let resp = c.post(up.url("/echo")).json(&later).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    let diff = body["tapedeck"]["diff"].to_string();
    assert!(
        diff.contains("$.meta.ts"),
        "the miss names the differing path: {diff}"
    );
    r.stop();

    let r = replay(&dirs, "rules", &["--ignore-json-path", "$.meta.ts"]);
    let c = client(&r, &dirs);
    assert_eq!(
        c.post(up.url("/echo"))
            .json(&later)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    r.stop();

    // The same rule from tapedeck.toml in the working directory.
    std::fs::write(
        dirs.path("tapedeck.toml"),
        "[match]\nignore_json_paths = [\"/meta/ts\"]\n",
    )
    .unwrap();
    let r = replay(&dirs, "rules", &[]);
    let c = client(&r, &dirs);
    assert_eq!(
        c.post(up.url("/echo"))
            .json(&later)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_truncated_and_newer_tapes_are_refused_with_file_and_line() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "tape");
    let c = client(&d, &dirs);
    for p in ["/json", "/weather?city=Paris", "/empty"] {
        fetch(&c, c.get(up.url(p))).await;
    }
    d.stop();
    let good = dirs.path("good.jsonl");
    assert_eq!(
        dirs.run(&["export", "tape", "-o", good.to_str().unwrap()])
            .0,
        0
    );
    let text = std::fs::read_to_string(&good).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    let corrupt = dirs.path("corrupt.jsonl");
    let mut bad = lines.clone();
    let cut = &lines[2][..lines[2].len() / 2];
    bad[2] = cut;
    std::fs::write(&corrupt, bad.join("\n") + "\n").unwrap();
    let (code, _, err) = dirs.run(&["replay", "--tape", corrupt.to_str().unwrap(), "--", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("corrupt.jsonl, line 3"), "{err}");

    let truncated = dirs.path("truncated.jsonl");
    std::fs::write(&truncated, lines[..3].join("\n") + "\n").unwrap();
    let (code, _, err) = dirs.run(&[
        "replay",
        "--tape",
        truncated.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("truncated") && err.contains("3 events"),
        "{err}"
    );

    let edited = dirs.path("edited.jsonl");
    std::fs::write(&edited, text.replace("\"temp_c\":18", "\"temp_c\":19")).unwrap();
    let (code, _, err) = dirs.run(&["replay", "--tape", edited.to_str().unwrap(), "--", "true"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 3") && err.contains("does not match"),
        "{err}"
    );

    let newer = dirs.path("newer.jsonl");
    std::fs::write(
        &newer,
        text.replacen("\"tapedeck_tape\":1", "\"tapedeck_tape\":99", 1),
    )
    .unwrap();
    let (code, _, err) = dirs.run(&["replay", "--tape", newer.to_str().unwrap(), "--", "true"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 1") && err.contains("newer tapedeck"),
        "{err}"
    );

    // The good tape replays with no store at all.
    let nostore = dirs.path("no-store-here");
    let (code, _, err) = dirs.run(&[
        "replay",
        "--tape",
        good.to_str().unwrap(),
        "--store",
        nostore.to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!nostore.exists());
}

/// A body its `Content-Encoding` misnames (an upstream bug) is stored as it came and
/// replayed as the client got it: it was stored empty, as a decoding failure, and
/// replay then served a valid empty gzip body, so a client that failed at record time
/// succeeded with nothing at replay time.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_is_not_in_its_coding_is_replayed_as_it_came() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "badgz");
    let c = client(&d, &dirs);
    let live = fetch(&c, c.get(up.url("/not-gzip"))).await;
    let (_, stderr) = d.stop();
    assert_eq!(live.status, 200);
    assert_eq!(live.encoding.as_deref(), Some("gzip"));
    assert_eq!(live.body, b"{\"plain\": \"not gzip at all\"}");
    assert!(
        stderr.contains("not gzip as its Content-Encoding says"),
        "{stderr}"
    );
    let ev = export(&dirs, "badgz");
    assert!(ev[0]["error"].is_null(), "{}", ev[0]);
    assert_eq!(
        ev[0]["response"]["body"]["len"],
        live.body.len(),
        "{}",
        ev[0]
    );

    let r = replay(&dirs, "badgz", &[]);
    let c = client(&r, &dirs);
    let replayed = fetch(&c, c.get(up.url("/not-gzip"))).await;
    r.stop();
    assert_eq!(replayed.status, 200);
    assert_eq!(replayed.encoding, live.encoding);
    assert_eq!(replayed.body, live.body);
}

/// What a strict client (Go's, curl's) makes of a gzip body: the bytes that decode, and
/// the error after them, if any.
fn gunzipped(body: &[u8]) -> (Vec<u8>, Option<String>) {
    let mut out = Vec::new();
    let mut d = flate2::read::MultiGzDecoder::new(body);
    let err = std::io::Read::read_to_end(&mut d, &mut out).err();
    (out, err.map(|e| format!("{:?}", e.kind())))
}

/// A gzip body that decodes and then breaks (an upstream's bug: bytes after the end,
/// or cut short) reaches a replaying client broken the same way, whole or streamed: it
/// was replayed as valid gzip, so a client that failed at record time passed in CI.
#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_body_that_breaks_after_decoding_is_replayed_broken_the_same_way() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let paths = [
        "/gzip-broken?how=junk",
        "/gzip-broken?how=cut",
        "/gzip-broken?how=junk&stream=1",
        "/gzip-broken?how=cut&stream=1",
        "/gzip-broken?how=crc",
        "/gzip-broken?how=crc&stream=1",
    ];
    let d = record(&dirs, &up, "brokengz");
    let c = client(&d, &dirs);
    let mut live = Vec::new();
    for p in paths {
        live.push(fetch(&c, c.get(up.url(p))).await);
    }
    let expected = serde_json::to_vec(&support::upstream::gzip_json()).unwrap();
    for (p, got) in paths.iter().zip(&live) {
        let (text, err) = gunzipped(&got.body);
        assert!(err.is_some(), "{p}: the recorded answer is broken");
        assert!(expected.starts_with(&text) && !text.is_empty(), "{p}");
    }
    // Bytes after the end are stored as bytes are: scrubbed of the exchange's secrets.
    let key = "sk-gzip-tail-0123456789abcdef";
    let echoed = fetch(
        &c,
        c.get(up.url("/gzip-broken?how=echo"))
            .header("authorization", format!("Bearer {key}")),
    )
    .await;
    assert!(echoed.body.windows(key.len()).any(|w| w == key.as_bytes()));
    let (_, stderr) = d.stop();
    assert!(
        stderr.contains("bytes follow the end of the gzip stream"),
        "{stderr}"
    );
    // Each answer came whole, its coding broken as the upstream sent it.
    assert!(
        stderr.contains("recorded 7 exchanges (0 without a complete response)"),
        "{stderr}"
    );
    let ev = export(&dirs, "brokengz");
    use base64::Engine;
    let tail = base64::engine::general_purpose::STANDARD
        .decode(ev[6]["response"]["broke"]["tail"].as_str().unwrap())
        .unwrap();
    let tail = String::from_utf8(tail).unwrap();
    assert!(tail.contains("REDACTED") && !tail.contains(key), "{tail}");
    assert!(dirs.files_containing(key.as_bytes()).is_empty());
    assert_eq!(ev[0]["response"]["broke"]["ended"], true, "{}", ev[0]);
    assert_eq!(ev[1]["response"]["broke"]["ended"], false, "{}", ev[1]);
    assert_eq!(ev[4]["response"]["broke"]["trailer"], true, "{}", ev[4]);

    let r = replay(&dirs, "brokengz", &[]);
    let c = client(&r, &dirs);
    for (p, got) in paths.iter().zip(&live) {
        let replayed = fetch(&c, c.get(up.url(p))).await;
        assert_eq!(replayed.status, 200);
        assert_eq!(replayed.encoding.as_deref(), Some("gzip"));
        assert_eq!(gunzipped(&replayed.body), gunzipped(&got.body), "{p}");
        if p.contains("junk") {
            assert!(replayed.body.ends_with(b"JUNKJUNK"), "{p}");
        }
    }
    r.stop();
}

/// The members of a gzip body, each decoded alone, up to the first that does not decode
/// (and that one's error).
fn gzip_members(mut wire: &[u8]) -> (Vec<Vec<u8>>, Option<String>) {
    use std::io::Read;
    let mut out = Vec::new();
    while !wire.is_empty() {
        let mut d = flate2::bufread::GzDecoder::new(wire);
        let mut m = Vec::new();
        if let Err(e) = d.read_to_end(&mut m) {
            return (out, Some(format!("{:?}", e.kind())));
        }
        wire = d.into_inner();
        out.push(m);
    }
    (out, None)
}

/// A gzip body sent as several members is replayed in as many, ending where they
/// ended: it was replayed as one member, so a client that reads only the first member
/// (or fails on a later one) saw more at replay than live.
#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_body_in_several_members_is_replayed_in_the_same_members() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let paths = [
        "/gzip-broken?how=members",
        "/gzip-broken?how=members&stream=1",
        "/gzip-broken?how=members-crc",
        "/gzip-broken?how=members-crc&stream=1",
    ];
    let d = record(&dirs, &up, "members");
    let c = client(&d, &dirs);
    let mut live = Vec::new();
    for p in paths {
        live.push(fetch(&c, c.get(up.url(p))).await);
    }
    d.stop();
    for (p, got) in paths.iter().zip(&live) {
        let (members, err) = gzip_members(&got.body);
        assert_eq!(members.len(), if p.contains("crc") { 2 } else { 3 }, "{p}");
        assert_eq!(err.is_some(), p.contains("crc"), "{p}");
    }
    let ev = export(&dirs, "members");
    let ends = ev[0]["response"]["members"].as_array().unwrap();
    assert_eq!(ends.len(), 2, "{}", ev[0]);
    assert_eq!(ev[2]["response"]["broke"]["trailer"], true, "{}", ev[2]);

    let r = replay(&dirs, "members", &[]);
    let c = client(&r, &dirs);
    for (p, got) in paths.iter().zip(&live) {
        let replayed = fetch(&c, c.get(up.url(p))).await;
        assert_eq!(replayed.encoding.as_deref(), Some("gzip"));
        assert_eq!(gzip_members(&replayed.body), gzip_members(&got.body), "{p}");
        assert_eq!(gunzipped(&replayed.body), gunzipped(&got.body), "{p}");
    }
    r.stop();
}

/// A tape is a file people edit: a request changed by hand is matched as the tape now
/// says, from the tape and once imported, not by the key it was recorded with; a request
/// line that could not be sent is refused with its line.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_edited_in_a_tape_is_matched_as_edited() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "orig");
    let c = client(&d, &dirs);
    for p in ["/weather?city=Paris", "/json"] {
        assert_eq!(fetch(&c, c.get(up.url(p))).await.status, 200);
    }
    d.stop();
    let good = dirs.path("good.jsonl");
    assert_eq!(
        dirs.run(&["export", "orig", "-o", good.to_str().unwrap()])
            .0,
        0
    );
    let text = std::fs::read_to_string(&good).unwrap();
    assert_eq!(text.matches("city=Paris").count(), 1, "{text}");
    let edited = dirs.path("edited.jsonl");
    std::fs::write(&edited, text.replace("city=Paris", "city=Lyon")).unwrap();

    // Each way of replaying it: the tape itself, and the tape imported into a store.
    let other = dirs.path("other-store");
    let (code, _, err) = dirs.run(&[
        "import",
        edited.to_str().unwrap(),
        "--store",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let ways: [&[&str]; 2] = [
        &[
            "replay",
            "--tape",
            edited.to_str().unwrap(),
            "--order",
            "any",
        ],
        &[
            "replay",
            "--session",
            "orig",
            "--store",
            other.to_str().unwrap(),
            "--order",
            "any",
        ],
    ];
    for args in ways {
        let r = Daemon::start(&dirs, args);
        let c = client(&r, &dirs);
        let lyon = fetch(&c, c.get(up.url("/weather?city=Lyon"))).await.status;
        let paris = fetch(&c, c.get(up.url("/weather?city=Paris"))).await.status;
        let (_, stderr) = r.stop();
        assert_eq!(
            lyon, 200,
            "the edited request is served ({args:?}): {stderr}"
        );
        assert_ne!(
            paris, 200,
            "the request as it was before the edit is a miss ({args:?})"
        );
    }

    // A secret written into a tape by hand is redacted for matching, as the live
    // request is.
    let keyed = dirs.path("keyed.jsonl");
    std::fs::write(
        &keyed,
        text.replace("city=Paris", "city=Lyon&api_key=k-123456789"),
    )
    .unwrap();
    let r = Daemon::start(&dirs, &["replay", "--tape", keyed.to_str().unwrap()]);
    let c = client(&r, &dirs);
    let got = fetch(&c, c.get(up.url("/weather?city=Lyon&api_key=k-123456789"))).await;
    let (_, stderr) = r.stop();
    assert_eq!(got.status, 200, "{stderr}");

    for (from, to, why) in [
        (
            "\"method\":\"GET\"",
            "\"method\":\"G E T\"",
            "is not an HTTP method",
        ),
        (
            "\"url\":\"https://",
            "\"url\":\"not a url https://",
            "is not an absolute",
        ),
    ] {
        let bad = dirs.path("bad.jsonl");
        std::fs::write(&bad, text.replacen(from, to, 1)).unwrap();
        let (code, _, err) = dirs.run(&["replay", "--tape", bad.to_str().unwrap(), "--", "true"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("line 2") && err.contains(why), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_cut_by_kill_9_replays_what_completed_and_never_half_an_exchange() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "cut");
    let c = client(&d, &dirs);
    let slow_c = c.clone();
    let slow_url = up.url("/slow?ms=5000");
    let slow = tokio::spawn(async move { slow_c.get(slow_url).send().await.map(|r| r.status()) });
    for i in 0..5 {
        fetch(&c, c.get(up.url(&format!("/weather?city=Paris&i={i}")))).await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    d.kill9();
    let _ = slow.await;

    let r = replay(&dirs, "cut", &["--order", "any"]);
    let c = client(&r, &dirs);
    for i in 0..5 {
        let resp = c
            .get(up.url(&format!("/weather?city=Paris&i={i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = c.get(up.url("/slow?ms=5000")).send().await.unwrap();
    assert_eq!(resp.headers()["x-tapedeck-miss"], "unrecorded");
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn pace_recorded_reproduces_chunk_timing_and_fast_does_not_wait() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "pace");
    let c = client(&d, &dirs);
    fetch(&c, c.get(up.url("/sse?n=3&gap_ms=400"))).await;
    d.stop();
    let tape = support::harness::export(&dirs, "pace");
    // Each recorded chunk: its offset, and where in the body it ends.
    let mut end = 0;
    let chunks: Vec<(f64, u64)> = tape[0]["response"]["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            end += c["len"].as_u64().unwrap();
            (c["at_ms"].as_f64().unwrap(), end)
        })
        .collect();
    let offsets: Vec<f64> = chunks.iter().map(|c| c.0).collect();

    let r = replay(&dirs, "pace", &["--pace", "recorded"]);
    let c = client(&r, &dirs);
    let start = Instant::now();
    let mut resp = c.get(up.url("/sse?n=3&gap_ms=400")).send().await.unwrap();
    // When each read ended, and how many bytes had come by then: a busy machine may hand
    // a chunk over in two reads, so a chunk's time is when its last byte came.
    let mut reads = Vec::new();
    let mut got_bytes = 0;
    while let Some(chunk) = resp.chunk().await.unwrap() {
        got_bytes += chunk.len() as u64;
        reads.push((start.elapsed().as_secs_f64() * 1000.0, got_bytes));
    }
    r.stop();
    assert_eq!(
        got_bytes, end,
        "the replayed body is the recorded one's length"
    );
    let seen: Vec<f64> = chunks
        .iter()
        .map(|&(_, end)| reads.iter().find(|r| r.1 >= end).unwrap().0)
        .collect();
    // Each chunk waits for its recorded offset (the gaps are 400 ms; a late first chunk
    // on a busy machine shortens the next gap a little), and comes no whole gap late.
    for i in 1..seen.len() {
        let want = offsets[i] - offsets[0];
        let got = seen[i] - seen[0];
        assert!(
            got >= want - 50.0 && got <= want + 350.0,
            "chunk {i}: recorded +{want:.1} ms, replayed +{got:.1} ms"
        );
    }

    let r = replay(&dirs, "pace", &[]);
    let c = client(&r, &dirs);
    let resp = c.get(up.url("/sse?n=3&gap_ms=400")).send().await.unwrap();
    // Timed from the head on (connecting and the handshake are not pacing): the recorded
    // gaps add up to 800 ms, and the fast pace waits for none of them.
    let start = Instant::now();
    let body = resp.bytes().await.unwrap();
    assert!(!body.is_empty());
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "fast pace waited {:?}",
        start.elapsed()
    );
    r.stop();
}

/// A stream its upstream held open after the last event ends, at the recorded pace,
/// when the recorded one ended, compressed or not: it ended at its last event.
#[tokio::test(flavor = "multi_thread")]
async fn pace_recorded_ends_a_stream_when_the_recorded_one_ended() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let paths = ["/sse-linger?ms=700", "/sse-linger?ms=700&gzip=1"];
    let d = record(&dirs, &up, "linger");
    let c = client(&d, &dirs);
    for p in paths {
        fetch(&c, c.get(up.url(p))).await;
    }
    d.stop();
    let r = replay(&dirs, "linger", &["--pace", "recorded"]);
    let c = client(&r, &dirs);
    for p in paths {
        let mut resp = c.get(up.url(p)).send().await.unwrap();
        // The client reads the wire bytes: the second event's frame, then the end.
        let mut frames = Vec::new();
        while let Some(chunk) = resp.chunk().await.unwrap() {
            frames.push((Instant::now(), chunk));
        }
        let after = frames[1].0.elapsed();
        assert!(
            after >= Duration::from_millis(500),
            "{p}: ended {after:?} after its second event; recorded 700 ms later"
        );
    }
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn recorded_failures_replay_as_the_same_failures() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "fail");
    let c = client(&d, &dirs);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}/tool");
    let rec502 = fetch(&c, c.get(&dead)).await;
    assert_eq!(rec502.status, 502);
    let rec_reset = c
        .get(up.url("/reset-mid"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    assert!(rec_reset.is_err(), "the recording saw the body cut");
    d.stop();

    let r = replay(&dirs, "fail", &[]);
    let c = client(&r, &dirs);
    let rep502 = fetch(&c, c.get(&dead)).await;
    assert_eq!(rep502.status, 502);
    assert_eq!(rep502.body, rec502.body);
    let rep_reset = c
        .get(up.url("/reset-mid"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    assert!(
        rep_reset.is_err(),
        "replay cuts the body where the recording was cut"
    );
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_answers_every_host_locally_and_refuses_unknown_tunnel_bytes() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "local");
    fetch(&client(&d, &dirs), client(&d, &dirs).get(up.url("/json"))).await;
    d.stop();
    let r = replay(&dirs, "local", &[]);
    let c = client(&r, &dirs);
    // A host that does not even resolve: intercepted and answered locally, no DNS.
    let resp = c
        .get("https://api.no-such-host.invalid/v1/models")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-tapedeck-miss"], "unrecorded");
    let resp = c
        .get("http://plain.no-such-host.invalid/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-tapedeck-miss"], "unrecorded");
    // SSH-looking bytes in a tunnel are refused, never tunnelled out.
    let mut s = std::net::TcpStream::connect(r.addr).unwrap();
    s.write_all(b"CONNECT example.com:22 HTTP/1.1\r\nhost: example.com:22\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    s.write_all(b"SSH-2.0-OpenSSH_9.0\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let (_, stderr) = r.stop();
    assert!(stderr.contains("neither TLS nor HTTP"), "{stderr}");
    assert!(
        stderr.contains("use --allow-live example.com to let them through"),
        "replay names its own flag (--passthrough is record's): {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_connections_are_served_and_a_hangup_disturbs_no_one() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "load");
    let c = client_h1(&d, &dirs);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let c = c.clone();
        let url = up.url("/weather?city=Paris");
        tasks.push(tokio::spawn(async move {
            c.get(url).send().await.unwrap().bytes().await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    fetch(&c, c.get(up.url("/sse?n=5&gap_ms=100"))).await;
    d.stop();

    let r = replay(&dirs, "load", &["--pace", "recorded", "--order", "any"]);
    let c = client_h1(&r, &dirs);
    // One client hangs up in the middle of a paced stream.
    let mut sse = c.get(up.url("/sse?n=5&gap_ms=100")).send().await.unwrap();
    sse.chunk().await.unwrap();
    drop(sse);
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let c = c.clone();
        let url = up.url("/weather?city=Paris");
        tasks.push(tokio::spawn(async move {
            c.get(url).send().await.map(|r| r.status().as_u16())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().ok() == Some(200) {
            ok += 1;
        }
    }
    assert_eq!(ok, 1000);
    let (code, stderr) = r.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("served 1001/1001"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_around_a_command_exits_3_on_a_miss_and_with_fail_on_unused() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "cmd");
    let c = client(&d, &dirs);
    fetch(&c, c.get(up.url("/weather?city=Paris"))).await;
    fetch(&c, c.get(up.url("/json"))).await;
    d.stop();
    let curl = |path: &str| format!("curl -sf {} > /dev/null", up.url(path));
    let ok = format!("{} && {}", curl("/weather?city=Paris"), curl("/json"));
    let (code, _, err) = dirs.run(&["replay", "--session", "cmd", "--", "sh", "-c", &ok]);
    assert_eq!(code, 0, "{err}");
    // One extra call: curl -f without failing the script, so CMD exits 0 and tapedeck says 3.
    let extra = format!(
        "{ok}; curl -s {} > /dev/null; exit 0",
        up.url("/weather?city=Rome")
    );
    let (code, _, err) = dirs.run(&["replay", "--session", "cmd", "--", "sh", "-c", &extra]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("MISS unrecorded"), "{err}");
    // CMD's own failure wins.
    let (code, _, _) = dirs.run(&["replay", "--session", "cmd", "--", "sh", "-c", "exit 5"]);
    assert_eq!(code, 5);
    let (code, _, err) = dirs.run(&[
        "replay",
        "--session",
        "cmd",
        "--fail-on-unused",
        "--",
        "sh",
        "-c",
        &curl("/weather?city=Paris"),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("never used"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_live_opens_exactly_that_host_and_port_and_the_run_says_so() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "live");
    fetch(&client(&d, &dirs), client(&d, &dirs).get(up.url("/json"))).await;
    d.stop();
    // A client that trusts only the upstream's own CA: it can only succeed if the tunnel
    // really goes to the upstream, untouched.
    let direct_ca = |r: &Daemon| {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(r.proxy_url()).unwrap())
            .add_root_certificate(reqwest::Certificate::from_pem(up.ca_pem.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .build()
            .unwrap()
    };
    // --passthrough is a record flag; replay says what to use instead.
    let (code, _, err) = dirs.run(&[
        "replay",
        "--session",
        "live",
        "--passthrough",
        "localhost",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--allow-live localhost"), "{err}");
    let (code, _, err) = dirs.run(&[
        "replay",
        "--session",
        "live",
        "--allow-live",
        "localhost:99999",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("localhost:99999"), "{err}");

    // A host alone means its port 443: the upstream's own port stays local.
    let before = up.connections();
    let r = replay(&dirs, "live", &["--allow-live", "localhost"]);
    assert!(
        direct_ca(&r)
            .get(up.url("/weather?city=Paris"))
            .send()
            .await
            .is_err(),
        "intercepted, not tunnelled"
    );
    let (_, stderr) = r.stop();
    assert_eq!(up.connections(), before);
    assert!(!stderr.contains("live, not from the recording"), "{stderr}");

    // HOST:PORT goes out live on its own, and the banner and the summary say so.
    let target = format!("localhost:{}", up.addr.port());
    let r = replay(&dirs, "live", &["--allow-live", &target]);
    let resp = direct_ca(&r)
        .get(up.url("/weather?city=Paris"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        up.connections() > before,
        "the allowed host was reached live"
    );
    let (_, stderr) = r.stop();
    assert!(
        stderr.contains(&format!("LIVE: CONNECTs to {target} go out")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("live, not from the recording: {target} ×1")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn while_replay_holds_the_store_read_commands_ask_it() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "held");
    fetch(&client(&d, &dirs), client(&d, &dirs).get(up.url("/json"))).await;
    d.stop();
    let r = replay(&dirs, "held", &[]);
    let (code, out, err) = dirs.run(&["sessions", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"held\""), "{out}");
    let (code, out, err) = dirs.run(&["show", "held"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("localhost/json"), "{out}");
    // Bodies come from the store as they are served.
    assert_eq!(
        client(&r, &dirs)
            .get(up.url("/json"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_replay_byte_for_byte() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "large");
    let c = client(&d, &dirs);
    let a = fetch(&c, c.get(up.url("/big?bytes=5242880"))).await;
    let b = fetch(&c, c.get(up.url("/big-chunked?bytes=3000000"))).await;
    d.stop();
    let r = replay(&dirs, "large", &[]);
    let c = client(&r, &dirs);
    let a2 = fetch(&c, c.get(up.url("/big?bytes=5242880"))).await;
    let b2 = fetch(&c, c.get(up.url("/big-chunked?bytes=3000000"))).await;
    r.stop();
    assert_eq!(a.body.len(), 5_242_880);
    assert!(a.body == a2.body, "5 MB body differs on replay");
    assert!(b.body == b2.body, "chunked body differs on replay");
    // The same from a tape, with no store.
    let tape = dirs.path("large.jsonl");
    assert_eq!(
        dirs.run(&["export", "large", "-o", tape.to_str().unwrap()])
            .0,
        0
    );
    let r = Daemon::start(&dirs, &["replay", "--tape", tape.to_str().unwrap()]);
    let c = client(&r, &dirs);
    let a3 = fetch(&c, c.get(up.url("/big?bytes=5242880"))).await;
    r.stop();
    assert!(a.body == a3.body);
}

/// The zero-byte answers: (method, path, status).
const ZERO_BYTE: [(&str, &str, u16); 6] = [
    ("GET", "/empty?status=200", 200),
    ("GET", "/empty?status=201", 201),
    ("GET", "/empty?status=202", 202),
    ("GET", "/empty?status=204", 204),
    ("GET", "/empty?status=304", 304),
    ("HEAD", "/json", 200),
];

/// Checks a tape's events: every zero-byte answer complete, no error, its recorded
/// `Content-Length` kept.
fn assert_recorded_complete(events: &[Value]) {
    assert_eq!(events.len(), ZERO_BYTE.len());
    for (ev, (method, path, status)) in events.iter().zip(ZERO_BYTE) {
        let what = format!("{method} {path}");
        let resp = &ev["response"];
        assert_eq!(resp["status"], status, "{what}");
        assert_eq!(resp["complete"], true, "{what}: {ev}");
        assert!(ev.get("error").is_none_or(Value::is_null), "{what}: {ev}");
        let cl = resp["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == "content-length")
            .map(|h| h[1].as_str().unwrap().to_string());
        match (method, status) {
            ("GET", 200..=202) => assert_eq!(cl.as_deref(), Some("0"), "{what}"),
            ("HEAD", _) => assert!(
                cl.is_some_and(|v| v != "0"),
                "{what}: HEAD keeps the length"
            ),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_byte_bodies_are_recorded_complete_and_replay_as_zero_bytes() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    type ClientOf = fn(&Daemon, &Dirs) -> reqwest::Client;
    for (label, client_of) in [("h1", client_h1 as ClientOf), ("h2", client as ClientOf)] {
        let session = format!("empty-{label}");
        let d = record(&dirs, &up, &session);
        let c = client_of(&d, &dirs);
        for (method, path, status) in ZERO_BYTE {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let resp = c.request(m, up.url(path)).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{label} {path}");
            assert!(resp.bytes().await.unwrap().is_empty());
        }
        let (code, stderr) = d.stop();
        assert_eq!(code, 0);
        assert!(!stderr.contains("hung up"), "{label}: {stderr}");
        assert_recorded_complete(&support::harness::export(&dirs, &session));

        let r = replay(&dirs, &session, &[]);
        let c = client_of(&r, &dirs);
        for (method, path, status) in ZERO_BYTE {
            let what = format!("{label} {method} {path}");
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let resp = c.request(m, up.url(path)).send().await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{what}");
            assert!(resp.headers().get("transfer-encoding").is_none(), "{what}");
            if method == "GET" && status < 204 && label == "h1" {
                assert_eq!(resp.headers()["content-length"], "0", "{what}");
            }
            // A cut body would fail here (the client sees the stream end early).
            let body = resp.bytes().await.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(body.is_empty(), "{what}");
        }
        let (code, stderr) = r.stop();
        assert_eq!(code, 0);
        assert!(stderr.contains("served 6/6 events, 0 misses"), "{stderr}");
    }

    // Older recordings marked an empty 200 as cut by a hang-up: a body declared to be
    // zero bytes long is whole anyway.
    let tape = dirs.path("old.jsonl");
    assert_eq!(
        dirs.run(&["export", "empty-h1", "-o", tape.to_str().unwrap()])
            .0,
        0
    );
    let lines: Vec<String> = std::fs::read_to_string(&tape)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i == 0 {
                return line.to_string();
            }
            let mut ev: Value = serde_json::from_str(line).unwrap();
            ev["response"]["complete"] = json!(false);
            ev["error"] = json!({"kind": "client_closed", "message": "the client hung up"});
            ev.to_string()
        })
        .collect();
    std::fs::write(&tape, lines.join("\n") + "\n").unwrap();
    let r = Daemon::start(&dirs, &["replay", "--tape", tape.to_str().unwrap()]);
    let resp = client_h1(&r, &dirs)
        .get(up.url("/empty?status=200"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-length"], "0");
    assert!(resp.bytes().await.unwrap().is_empty());
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_reads_zero_byte_bodies_whole_under_record_and_replay() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl is not installed: skipped");
        return;
    }
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    // curl exits 18 (partial file) or 56 (receive failure) when a body is cut.
    let curl = |d: &Daemon, http: &str, method: &str, url: &str| {
        let ca = dirs.certs.join("ca.pem");
        let mut args = vec![
            "-sS",
            "--max-time",
            "20",
            http,
            "--proxy",
            "",
            "--cacert",
            ca.to_str().unwrap(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ];
        let proxy = d.proxy_url();
        args[5] = &proxy;
        if method == "HEAD" {
            args.push("-I");
        }
        args.push(url);
        let out = std::process::Command::new("curl")
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for http in ["--http1.1", "--http2"] {
        let session = format!("curl{}", &http[6..].replace('.', ""));
        let d = record(&dirs, &up, &session);
        for (method, path, status) in ZERO_BYTE {
            let (code, out, err) = curl(&d, http, method, &up.url(path));
            assert_eq!(code, 0, "record {http} {method} {path}: {err}");
            assert_eq!(out, format!("{status} 0"), "record {http} {method} {path}");
        }
        d.stop();
        assert_recorded_complete(&support::harness::export(&dirs, &session));
        let r = replay(&dirs, &session, &[]);
        for (method, path, status) in ZERO_BYTE {
            let (code, out, err) = curl(&r, http, method, &up.url(path));
            assert_eq!(code, 0, "replay {http} {method} {path}: {err}");
            assert_eq!(out, format!("{status} 0"), "replay {http} {method} {path}");
        }
        let (_, stderr) = r.stop();
        assert!(stderr.contains("0 misses"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_regression_case_replays_in_causal_order_and_honours_stateful_hosts() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "case");
    let c = client(&d, &dirs);
    for city in ["Paris", "Tokyo"] {
        fetch(&c, c.get(up.url(&format!("/weather?city={city}")))).await;
    }
    d.stop();
    let case = dirs.path("cases/weather");
    std::fs::create_dir_all(&case).unwrap();
    let tape = case.join("tape.jsonl");
    assert_eq!(
        dirs.run(&["export", "case", "-o", tape.to_str().unwrap()])
            .0,
        0
    );
    // The agent now asks for the cities the other way round.
    let cmd = format!(
        "curl -sf {} > /dev/null && curl -sf {} > /dev/null",
        up.url("/weather?city=Tokyo"),
        up.url("/weather?city=Paris")
    );
    std::fs::write(
        case.join("case.toml"),
        format!("name = \"weather\"\ncmd = {cmd:?}\ntape = \"tape.jsonl\"\n"),
    )
    .unwrap();
    let cases = dirs.path("cases");
    let (code, out, err) = dirs.run(&["test", cases.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
    let (code, out, err) = dirs.run(&[
        "test",
        cases.to_str().unwrap(),
        "--stateful-host",
        "localhost",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL weather") && out.contains("declared stateful"),
        "{out}"
    );
}

/// A file upload as reqwest sends it: a multipart form with a boundary drawn at random for
/// each request.
fn upload_form(model: &str, audio: &[u8]) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("model", model.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio.to_vec())
                .file_name("speech.wav")
                .mime_str("audio/wav")
                .unwrap(),
        )
}

/// The same uploads replay although every request draws a new multipart boundary; a
/// changed file is still a miss. The large one (2 MiB) is kept whole to be matched by its
/// parts, too, and the one past what is kept whole (20 MiB, stored in segments) is
/// matched by its parts read as it streams (by its bytes, boundary included, before the
/// twenty-seventh session: a miss at every replay).
#[tokio::test(flavor = "multi_thread")]
async fn file_uploads_replay_whatever_multipart_boundary_the_client_draws() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let small: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let large: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 253) as u8).collect();
    let huge: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
    let d = record(&dirs, &up, "forms");
    let url = up.url("/upload");
    let c = client(&d, &dirs);
    let mut recorded = Vec::new();
    for audio in [&small, &large, &huge] {
        let r = c
            .post(&url)
            .multipart(upload_form("whisper-1", audio))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        recorded.push(r.text().await.unwrap());
    }
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    up.stop();

    // From the store, then from a tape (its events keyed again as they are read; the
    // 20 MiB body, a file beside the tape, read a part at a time for its parts).
    let tape = dirs.path("forms.jsonl");
    let (code, _, err) = dirs.run(&["export", "forms", "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for source in [["--session", "forms"], ["--tape", tape.to_str().unwrap()]] {
        let r = Daemon::start(&dirs, &["replay", source[0], source[1]]);
        let c = client(&r, &dirs);
        for (audio, want) in [&small, &large, &huge].into_iter().zip(&recorded) {
            let resp = c
                .post(&url)
                .multipart(upload_form("whisper-1", audio))
                .send()
                .await
                .unwrap();
            assert!(resp.headers().get("x-tapedeck-miss").is_none(), "{resp:?}");
            assert_eq!(resp.status(), 200);
            assert_eq!(&resp.text().await.unwrap(), want);
        }
        let (_, err) = r.stop();
        assert!(
            err.contains("served 3/3 events, 0 misses"),
            "{source:?}: {err}"
        );
    }

    // Another file in the same form is another request, small or past the limit. The
    // small one's miss names the part that differs (not the boundary, which differs in
    // every request).
    for file in [&small, &huge] {
        let r = replay(&dirs, "forms", &[]);
        let c = client(&r, &dirs);
        let mut changed = file.clone();
        changed[100] ^= 1;
        let resp = c
            .post(&url)
            .multipart(upload_form("whisper-1", &changed))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-tapedeck-miss"], "unrecorded");
        let text = resp.text().await.unwrap();
        if file.len() == small.len() {
            assert!(
                text.contains("body $.file.content: \\\"3000 bytes, blake3 "),
                "{text}"
            );
            assert!(!text.contains("$.model"), "{text}");
        }
        r.stop();
    }
}

/// A form field that differs on every run (a timestamp the client stamps its upload
/// with) makes the upload a miss, until `--ignore-part` leaves its content out: the
/// tapedeck binary, a real upstream, reqwest's multipart forms.
#[tokio::test(flavor = "multi_thread")]
async fn an_ignored_form_field_lets_an_upload_stamped_anew_replay() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let audio: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let stamped = |audio: &[u8], at: &str| {
        upload_form("whisper-1", audio).text("uploaded_at", at.to_string())
    };
    let url = up.url("/upload");
    let upload = |c: reqwest::Client, form: reqwest::multipart::Form| {
        let req = c.post(&url).multipart(form);
        async move { req.send().await.unwrap() }
    };
    let d = record(&dirs, &up, "stamped");
    let r = upload(client(&d, &dirs), stamped(&audio, "1764582000")).await;
    assert_eq!(r.status(), 200);
    let recorded = r.text().await.unwrap();
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    up.stop();

    let r = replay(&dirs, "stamped", &[]);
    let resp = upload(client(&r, &dirs), stamped(&audio, "1764582977")).await;
    assert_eq!(resp.headers()["x-tapedeck-miss"], "unrecorded");
    r.stop();

    let r = replay(&dirs, "stamped", &["--ignore-part", "uploaded_at"]);
    let c = client(&r, &dirs);
    let resp = upload(c.clone(), stamped(&audio, "1764582977")).await;
    assert!(resp.headers().get("x-tapedeck-miss").is_none(), "{resp:?}");
    assert_eq!(resp.text().await.unwrap(), recorded);
    // The file still counts.
    let mut other = audio.clone();
    other[7] ^= 1;
    let resp = upload(c, stamped(&other, "1")).await;
    assert_eq!(resp.headers()["x-tapedeck-miss"], "unrecorded");
    let (_, err) = r.stop();
    assert!(err.contains("served 1/1 events, 1 miss"), "{err}");
}

/// A header value that is not UTF-8 (a file name in raw Latin-1, as some servers send
/// one) replays byte for byte, from the store and from an exported tape, where it is
/// kept as its bytes in base64 and not as replacement characters.
#[tokio::test(flavor = "multi_thread")]
async fn a_header_value_that_is_not_utf8_replays_byte_for_byte() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let want = support::upstream::LATIN1_DISPOSITION;
    let disposition =
        |r: &reqwest::Response| r.headers()["content-disposition"].as_bytes().to_vec();
    let d = record(&dirs, &up, "latin1");
    let recorded = client(&d, &dirs)
        .get(up.url("/latin1-header"))
        .send()
        .await
        .unwrap();
    assert_eq!(disposition(&recorded), want);
    assert_eq!(d.stop().0, 0);

    let r = replay(&dirs, "latin1", &[]);
    let replayed = client(&r, &dirs)
        .get(up.url("/latin1-header"))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    assert_eq!(disposition(&replayed), want, "replayed from the store");
    r.stop();

    let events = export(&dirs, "latin1");
    let stored = events[0]["response"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "content-disposition")
        .map(|h| h[1].as_str().unwrap().to_string())
        .unwrap();
    assert!(stored.starts_with("\0base64:"), "{stored:?}");
    let tape = dirs.path("latin1.export.jsonl");
    let t = Daemon::start(&dirs, &["replay", "--tape", tape.to_str().unwrap()]);
    let from_tape = client(&t, &dirs)
        .get(up.url("/latin1-header"))
        .send()
        .await
        .unwrap();
    assert_eq!(disposition(&from_tape), want, "replayed from the tape");
    t.stop();
}

/// A stream the recorded client hung up on stays open at replay for a client that hangs
/// up the same way, but not forever: a client still reading `--idle-timeout` later has
/// gone on where the recorded one stopped, and the stream ends with an error that says
/// so, named in the summary (it was held open until the client or the daemon stopped: a
/// CI job hung with nothing said).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_reading_past_where_the_recorded_one_hung_up_is_told_not_left_hanging() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "hup");
    let c = client(&d, &dirs);
    let mut resp = c.get(up.url("/sse?n=5&gap_ms=300")).send().await.unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.stop();
    let ev = export(&dirs, "hup");
    assert_eq!(ev[0]["error"]["kind"], "client_closed", "{}", ev[0]);

    let r = replay(&dirs, "hup", &["--idle-timeout", "1"]);
    let c = client(&r, &dirs);
    let mut resp = c.get(up.url("/sse?n=5&gap_ms=300")).send().await.unwrap();
    // A guard against the hang this test is about, not a measure of speed.
    let read = async {
        loop {
            match resp.chunk().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    };
    let ended = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the held stream never ended");
    assert!(
        ended.is_err(),
        "it ends with an error, not as a whole answer"
    );
    let (_, stderr) = r.stop();
    assert!(
        stderr.contains("step 1: the recorded client hung up on this stream here")
            && stderr.contains("1 stream the recorded client hung up on was read on past it"),
        "{stderr}"
    );
}
