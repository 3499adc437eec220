//! The web viewer's server, end to end: sessions recorded through the real proxy (real
//! TLS, real sled store), then `tapedeck ui` (the real binary) asked over real HTTP. The
//! pages themselves are checked in a real browser by examples/ui.sh; here: the API's JSON
//! shapes, that it agrees with `show`, `analyze` and `diff`, that bodies come back as data,
//! the security headers, and the live stream of a record daemon.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::harness::{client, client_as, Daemon, Dirs};
use support::upstream::Upstream;

/// Attacker-controlled text a recorded body may hold.
const SCRIPT: &str = "<script>window.__xss = 1</script>";
const IMG: &str = "<img src=x onerror=\"window.__xss = 2\">";

fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

/// LLM → the tool it asks for → LLM with the result; then one POST whose answer echoes
/// markup. `tool_path` is the weather tool's path (`/empty-list` makes a failing run).
async fn agent_run(c: &reqwest::Client, up: &Upstream, tool_path: &str) {
    let mut messages = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    let chat = |messages: Vec<Value>| {
        let c = c.clone();
        let url = up.url("/v1/chat/completions");
        async move {
            let v: Value = c
                .post(url)
                .bearer_auth("sk-ui-test-0000000000")
                .json(&json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["choices"][0]["message"].clone()
        }
    };
    let first = chat(messages.clone()).await;
    let call = first["tool_calls"][0].clone();
    assert!(call.is_object(), "the fixture asks for a tool: {first}");
    let text = c
        .get(up.url(&format!("{tool_path}?city=Paris")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}));
    messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": text}));
    chat(messages).await;
    let echoed = c
        .post(up.url("/echo"))
        .header("x-test", IMG)
        .json(&json!({"note": SCRIPT, "img": IMG}))
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), 200);
}

/// Records `session` (against `tool_path`) through a record daemon, then stops it.
async fn record(dirs: &Dirs, up: &Upstream, session: &str, tool_path: &str) {
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(
        dirs,
        &["record", "--session", session, "--upstream-ca", &ca],
    );
    agent_run(&client(&d, dirs), up, tool_path).await;
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
}

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = plain().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

async fn get_json(url: &str) -> Value {
    let (status, headers, text) = get(url).await;
    assert_eq!(status, 200, "{url}: {text}");
    assert_eq!(headers["content-type"], "application/json", "{url}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))
}

/// `api/sessions` once every session has its summary.
async fn summarised(base: &str) -> Value {
    for _ in 0..600 {
        let v = get_json(&format!("{base}api/sessions")).await;
        if v["pending"] == 0 {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the viewer never finished summarising the sessions");
}

fn ui_base(d: &Daemon) -> String {
    format!("http://{}/", d.addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_the_api_carry_a_policy_that_forbids_inline_script() {
    let dirs = Dirs::new();
    let ui = Daemon::start(&dirs, &["ui"]);
    let base = ui_base(&ui);
    for path in ["", "app.js", "style.css", "api/sessions", "api/nope"] {
        let (status, h, body) = get(&format!("{base}{path}")).await;
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        match path {
            "" => {
                assert_eq!(status, 200);
                assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
                assert!(body.contains("<script type=\"module\" src=\"app.js\"></script>"));
            }
            "app.js" => {
                assert_eq!(status, 200);
                assert!(h["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/javascript"));
            }
            "api/nope" => {
                assert_eq!(status, 404);
                let v: Value = serde_json::from_str(&body).unwrap();
                assert!(v["error"]["message"].as_str().unwrap().contains("api/nope"));
            }
            _ => assert_eq!(status, 200, "{path}: {body}"),
        }
    }
    let (status, _, _) = {
        let r = plain()
            .post(format!("{base}api/sessions"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), (), ())
    };
    assert_eq!(status, 405, "the viewer only reads");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_naming_another_host_is_refused() {
    let dirs = Dirs::new();
    let ui = Daemon::start(&dirs, &["ui"]);
    // A page on another site whose name resolves to 127.0.0.1 (DNS rebinding) sends its
    // own name as Host.
    let r = plain()
        .get(format!("{}api/sessions", ui_base(&ui)))
        .header("host", format!("rebind.example:{}", ui.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let r = plain()
        .get(format!("http://localhost:{}/api/sessions", ui.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "localhost names the viewer too");
}

#[test]
fn the_viewer_listens_on_loopback_only() {
    let dirs = Dirs::new();
    let (code, _, err) = dirs.run(&["ui", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("loopback only"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_shows_a_store_as_show_analyze_and_diff_do() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record(&dirs, &up, "good", "/weather").await;
    record(&dirs, &up, "empty", "/empty-list").await;
    record(&dirs, &up, "empty-again", "/empty-list").await;
    // The expectations, from the commands, before the viewer holds the store.
    let show = |s: &str| -> Value {
        let (code, out, err) = dirs.run(&["show", s, "--json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let (good_tree, empty_tree) = (show("good"), show("empty"));
    let (code, out, err) = dirs.run(&["analyze", "empty", "--json"]);
    assert_eq!(code, 0, "{err}");
    let analyzed: Value = serde_json::from_str(&out).unwrap();
    let (code, out, err) = dirs.run(&["diff", "good", "empty", "--json"]);
    assert_eq!(code, 0, "{err}");
    let diffed: Value = serde_json::from_str(&out).unwrap();

    let ui = Daemon::start(&dirs, &["ui"]);
    let base = ui_base(&ui);

    // Sessions: a summary each, and the failing runs grouped.
    let list = summarised(&base).await;
    let rows = list["sessions"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["good", "empty", "empty-again"], "oldest first");
    let good = &rows[0]["summary"];
    assert_eq!(good["events"], 4);
    assert_eq!(good["llm_calls"], 2);
    assert_eq!(good["findings"], 0);
    assert!(good["input_tokens"].as_u64().unwrap() > 0);
    assert!(good["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[1]["summary"]["severity"], "warning");
    let clusters = list["clusters"].as_array().unwrap();
    let failing: Vec<&Value> = clusters
        .iter()
        .filter(|c| !c["signature"].is_null())
        .collect();
    assert_eq!(failing.len(), 1, "{clusters:?}");
    assert_eq!(failing[0]["count"], 2);
    assert_eq!(failing[0]["signature"]["detector"], "empty_tool_result");
    assert_eq!(failing[0]["representative"], "empty");

    // Run: the span tree of `show`, in tree order, with the findings of `analyze`.
    for (session, tree) in [("good", &good_tree), ("empty", &empty_tree)] {
        let run = get_json(&format!("{base}api/sessions/{session}/run")).await;
        let mut want: Vec<String> = tree["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        let spans = run["spans"].as_array().unwrap();
        let mut got: Vec<String> = spans
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(spans[0]["depth"], 0);
        assert!(spans[1..].iter().all(|s| s["depth"].as_u64().unwrap() >= 1));
        want.sort();
        got.sort();
        assert_eq!(got, want, "{session}");
        assert_eq!(run["totals"], tree["totals"], "{session}");
    }
    let run = get_json(&format!("{base}api/sessions/empty/run")).await;
    assert_eq!(run["findings"], analyzed["findings"]);
    // Walk back: the LLM call that got the empty answer takes it from the tool (step 2)
    // and from the call that asked for it (step 1).
    assert_eq!(run["inputs"]["3"], json!([1, 2]), "{}", run["inputs"]);
    let tool = run["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == 2 && s["exchange"] == true)
        .unwrap();
    assert_eq!(tool["flag"], "empty");

    // Diff: the alignment of `tapedeck diff`.
    let d = get_json(&format!("{base}api/diff/good/empty")).await;
    assert_eq!(d["first_divergence"], diffed["first_divergence"]);
    assert_eq!(d["summary"], diffed["summary"]);
    let first = d["first"].as_u64().unwrap() as usize;
    let row = &d["rows"][first];
    assert_eq!(row["a"]["step"], diffed["first_divergence"]["step_a"]);
    assert_eq!(row["b"]["step"], diffed["first_divergence"]["step_b"]);
    assert_ne!(row["relation"], "same");
    let detail = get_json(&format!("{base}api/diff/good/empty/rows/{first}")).await;
    assert_eq!(detail["divergence"], diffed["first_divergence"]);

    // Unknown names are a 404 with a message, not a crash.
    let (status, _, body) = get(&format!("{base}api/sessions/nope/run")).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nope"));
    let (status, _, _) = get(&format!("{base}api/sessions/good/steps/99")).await;
    assert_eq!(status, 404);

    // While the viewer holds the store, the read commands ask it.
    let (code, out, err) = dirs.run(&["show", "good", "--json"]);
    assert_eq!(code, 0, "{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["totals"], good_tree["totals"]);
    let (code, _, err) = dirs.run(&["record", "--listen", "127.0.0.1:0", "--", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("tapedeck ui pid"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_comes_back_with_its_bodies_as_data() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record(&dirs, &up, "xss", "/weather").await;
    let ui = Daemon::start(&dirs, &["ui"]);
    let base = ui_base(&ui);
    let (status, headers, text) = get(&format!("{base}api/sessions/xss/steps/4")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let step: Value = serde_json::from_str(&text).unwrap();
    // The markup is a JSON string value: data for the page to show as text.
    let body = step["response"]["body"]["text"].as_str().unwrap();
    let echoed: Value = serde_json::from_str(body).unwrap();
    assert_eq!(echoed["body"]["note"], SCRIPT);
    assert_eq!(echoed["body"]["img"], IMG);
    assert_eq!(echoed["headers"]["x-test"], IMG);
    assert_eq!(step["response"]["body"]["truncated"], false);
    assert_eq!(step["response"]["body"]["binary"], false);
    let sent = step["request"]["headers"].as_array().unwrap();
    assert!(sent.contains(&json!(["x-test", IMG])), "{sent:?}");

    // An LLM step: bodies, the call read from them, and its walk-back links.
    let llm = get_json(&format!("{base}api/sessions/xss/steps/3")).await;
    assert_eq!(llm["kind"], "llm");
    assert_eq!(llm["llm"]["request_model"], "gpt-4o-mini");
    assert!(llm["llm"]["input_messages"].as_array().unwrap().len() >= 3);
    assert_eq!(llm["inputs"], json!([1, 2]));
    assert!(llm["timing"]["end"].as_u64() >= llm["timing"]["start"].as_u64());
    let auth = llm["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "authorization")
        .unwrap();
    assert_eq!(auth[1], "[REDACTED]");
}

#[tokio::test(flavor = "multi_thread")]
async fn tape_files_are_viewed_without_a_store() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record(&dirs, &up, "taped", "/weather").await;
    let tape = dirs.path("taped.tape");
    let (code, _, err) = dirs.run(&["export", "taped", "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_dir_all(&dirs.store).unwrap();
    let t = tape.to_str().unwrap();
    let ui = Daemon::start(&dirs, &["ui", t, t]);
    let base = ui_base(&ui);
    let list = summarised(&base).await;
    let names: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names.contains(&"taped") && names.contains(&"taped-2"),
        "{names:?}"
    );
    let run = get_json(&format!("{base}api/sessions/taped-2/run")).await;
    assert_eq!(run["events"], 4);
    assert!(!dirs.store.exists(), "viewing tapes creates no store");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_held_by_a_daemon_is_viewed_through_that_daemon() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(
        &dirs,
        &["record", "--session", "held", "--upstream-ca", &ca],
    );
    agent_run(&client(&d, &dirs), &up, "/weather").await;
    // sled lets one process open the store: the viewer asks the daemon for it.
    let ui = Daemon::start(&dirs, &["ui"]);
    let base = ui_base(&ui);
    let list = summarised(&base).await;
    assert_eq!(list["sessions"][0]["name"], "held");
    assert_eq!(list["sessions"][0]["summary"]["events"], 4);
    let run = get_json(&format!("{base}api/sessions/held/run")).await;
    assert_eq!(run["events"], 4);
    assert!(run["source"].as_str().unwrap().contains("from the daemon"));
    let step = get_json(&format!("{base}api/sessions/held/steps/4")).await;
    assert!(step["response"]["body"]["text"]
        .as_str()
        .unwrap()
        .contains(SCRIPT));
    // An exchange the daemon records meanwhile shows on the next look.
    let c = client(&d, &dirs);
    c.get(up.url("/weather?city=Tokyo")).send().await.unwrap();
    let list = summarised(&base).await;
    assert_eq!(list["sessions"][0]["events"], 5);
    let run = get_json(&format!("{base}api/sessions/held/run")).await;
    assert_eq!(run["events"], 5, "the session is read again once it grew");
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
}

/// Reads SSE frames until one holds `needle` (or the stream ends).
async fn sse_until(resp: &mut reqwest::Response, seen: &mut String, needle: &str) -> bool {
    loop {
        if seen.contains(needle) {
            return true;
        }
        match tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            _ => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_daemon_serves_the_viewer_and_streams_its_exchanges_live() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(&dirs, &["record", "--upstream-ca", &ca]);
    let base = format!("http://{}/_tapedeck/ui/", d.addr);
    let (status, h, page) = get(&base).await;
    assert_eq!(status, 200);
    assert!(page.contains("src=\"app.js\""));
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let info = get_json(&format!("{base}api/info")).await;
    assert_eq!(info["live"], true);

    let mut live = plain().get(format!("{base}api/live")).send().await.unwrap();
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    assert!(
        sse_until(&mut live, &mut seen, "event: hello").await,
        "{seen}"
    );

    // An exchange recorded into session "watched" reaches the open stream.
    let c = client_as(&d, &dirs, "watched", "");
    let r = c.get(up.url("/weather?city=Paris")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        sse_until(&mut live, &mut seen, "\"session\":\"watched\"").await,
        "{seen}"
    );
    let line = seen
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains("watched"))
        .unwrap();
    let msg: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
    assert_eq!(msg["step"], 1);
    assert_eq!(msg["status"], 200);
    assert!(seen.contains("event: exchange"));
    // The viewer reads the store the daemon holds.
    let run = get_json(&format!("{base}api/sessions/watched/run")).await;
    assert_eq!(run["events"], 1);

    // A stop ends the stream rather than waiting on the open page.
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("client connections still open at exit"),
        "the open page held the stop: {err}"
    );
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(_)) = live.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the live stream ended with the daemon");
}
