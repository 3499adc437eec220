//! The web viewer's server, end to end: sessions recorded through the real proxy (real
//! TLS, real sled store), then `tapedeck ui` or a daemon (the real binary) asked over real
//! HTTP as the viewer's page asks: in through the printed link once, then with the token
//! in a header.
//! The pages themselves are checked in a real browser by examples/ui.sh; here: the access
//! rule (token, Host, GET), the API's JSON shapes, that it agrees with `show`, `analyze`
//! and `diff`, the walk-back of the dependency model, that bodies come back as data, the
//! security headers, a replay daemon's one session, and a record daemon's live stream.

use crate::support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::harness::{client, client_as, tapedeck_bin, Daemon, Dirs};
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
    let d = Daemon::record(dirs, up, session, &[]);
    agent_run(&client(&d, dirs), up, tool_path).await;
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
}

/// A running `tapedeck ui`, with the link it printed on stdout.
struct Ui {
    child: Option<Child>,
    addr: SocketAddr,
    link: String,
    stderr: Arc<Mutex<String>>,
    /// stdout after the link: lines the user did not ask for.
    more: Arc<Mutex<String>>,
}

impl Ui {
    /// `tapedeck ui ARGS --listen 127.0.0.1:0` in `dirs`, once it has printed its link.
    fn start(dirs: &Dirs, args: &[&str]) -> Ui {
        let mut child = Command::new(tapedeck_bin())
            .arg("ui")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .current_dir(dirs.root.path())
            .env("TAPEDECK_STORE", &dirs.store)
            .env("TAPEDECK_CERTS", &dirs.certs)
            .env("TAPEDECK_LOG", "tapedeck=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tapedeck ui");
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let more = Arc::new(Mutex::new(String::new()));
        let more2 = more.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(out).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for line in lines.map_while(Result::ok) {
                more2.lock().unwrap().push_str(&line);
            }
        });
        let Ok(link) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tapedeck ui printed no link; stderr:\n{}",
                stderr.lock().unwrap()
            );
        };
        let addr = link
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("not a viewer link: {link}"));
        Ui {
            child: Some(child),
            addr,
            link,
            stderr,
            more,
        }
    }

    /// The viewer's URL without the token.
    fn base(&self) -> String {
        format!("http://{}/_tapedeck/ui/", self.addr)
    }

    fn token(&self) -> &str {
        self.link.split("?token=").nth(1).unwrap()
    }

    /// SIGTERM, then wait: (exit code, stderr).
    fn stop(mut self) -> (i32, String) {
        let mut child = self.child.take().unwrap();
        support::harness::signal(child.id() as i32, "TERM");
        let status = child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let err = self.stderr.lock().unwrap().clone();
        let more = self.more.lock().unwrap().clone();
        assert!(
            more.is_empty(),
            "tapedeck ui printed more than its link: {more}"
        );
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn get_with(
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = plain().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

/// The viewer's page as a browser runs it: in through the link once, which brings the
/// token; then every API request carries it in a header (the page keeps it in its
/// origin's storage).
struct Browser {
    base: String,
    token: String,
}

impl Browser {
    /// Opens `link` as a browser does, checks the entry page, and keeps the token.
    async fn enter(link: &str) -> Browser {
        let (status, h, page) = get_with(link, &[]).await;
        assert_eq!(status, 200, "{link}: {page}");
        // The viewer's own page: no cookie, nothing cached, the URL sent on to no one.
        assert!(h.get("set-cookie").is_none(), "{h:?}");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        assert!(page.contains("<script type=\"module\" src=\"app.js\"></script>"));
        let token = link.split("?token=").nth(1).unwrap();
        assert!(!page.contains(token), "the page repeats the token");
        Browser {
            base: link.split('?').next().unwrap().to_string(),
            token: token.to_string(),
        }
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        get_with(
            &format!("{}{path}", self.base),
            &[("x-tapedeck-token", &self.token)],
        )
        .await
    }

    async fn json(&self, path: &str) -> Value {
        let (status, headers, text) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_eq!(headers["content-type"], "application/json", "{path}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// `api/sessions` once every session has its summary.
    async fn summarised(&self) -> Value {
        for _ in 0..600 {
            let v = self.json("api/sessions").await;
            if v["pending"] == 0 {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the viewer never finished summarising the sessions");
    }
}

/// The session names of `api/sessions`, in its order.
fn names(list: &Value) -> Vec<&str> {
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

/// The link `tapedeck ui` prints for a store a daemon holds (it ends at once).
fn daemon_link(dirs: &Dirs) -> String {
    let (code, out, err) = dirs.run(&["ui"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stdout: {out}");
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_the_api_carry_a_policy_that_forbids_inline_script() {
    let dirs = Dirs::new();
    let ui = Ui::start(&dirs, &[]);
    let b = Browser::enter(&ui.link).await;
    for path in ["", "app.js", "style.css", "api/sessions", "api/nope"] {
        let (status, h, body) = b.get(path).await;
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
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
    let r = plain()
        .post(format!("{}api/sessions", b.base))
        .header("x-tapedeck-token", &b.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405, "the viewer only reads");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_viewer_lets_in_only_the_links_token_with_this_host() {
    let dirs = Dirs::new();
    let ui = Ui::start(&dirs, &[]);
    let base = ui.base();
    assert!(
        ui.link.starts_with(&format!("{base}?token=")),
        "{}",
        ui.link
    );
    let token_file = dirs.store.join("control.token");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), ui.token());
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Without the token: the page and its files (no data in them), nothing else.
    let control = format!("http://{}/_tapedeck/sessions", ui.addr);
    let api = format!("{base}api/sessions");
    for url in [api.clone(), format!("{base}api/live"), control.clone()] {
        let (status, _, body) = get_with(&url, &[]).await;
        assert_eq!(status, 401, "{url}: {body}");
        assert!(
            body.contains("tapedeck ui"),
            "the refusal says how in: {body}"
        );
    }
    for file in ["", "app.js", "api.js", "style.css"] {
        let (status, _, body) = get_with(&format!("{base}{file}"), &[]).await;
        assert_eq!(status, 200, "{file}: {body}");
        assert!(!body.contains(ui.token()));
    }
    let (status, _, _) = get_with(&format!("{base}?token=0000"), &[]).await;
    assert_eq!(status, 401, "a wrong link");
    // The API by another spelling of its path (the viewer reads `ui//api/` as `ui/api/`).
    for path in ["/api/sessions", "//api/live", "/api/sessions/x/run"] {
        let (status, _, body) = get_with(&format!("{base}{path}"), &[]).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    // The token in a URL other than the viewer's page does not count, nor in a cookie
    // (which a browser sends to every port of the host: to another user's server too).
    let (status, _, _) = get_with(&format!("{api}?token={}", ui.token()), &[]).await;
    assert_eq!(status, 401);
    let cookie = format!("tapedeck-{}={}", ui.addr.port(), ui.token());
    let (status, _, _) = get_with(&api, &[("cookie", &cookie)]).await;
    assert_eq!(status, 401, "a cookie is no way in");
    // `/` points at the viewer and gives nothing away.
    let r = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}/", ui.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/_tapedeck/ui/");

    // The link, once: then the token in the header lets the API and the live stream in.
    let b = Browser::enter(&ui.link).await;
    assert_eq!(b.base, base);
    for path in ["", "api/info", "api/sessions"] {
        let (status, _, body) = b.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let live = plain()
        .get(format!("{base}api/live"))
        .header("x-tapedeck-token", &b.token)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    drop(live);
    let (status, _, _) = get_with(&control, &[("x-tapedeck-token", &b.token)]).await;
    assert_eq!(status, 200, "the page's token is the store's token");

    // A page on another site whose name resolves to 127.0.0.1 (DNS rebinding) sends its
    // own name as Host: refused, even for the page and with the token.
    let rebound = format!("rebind.example:{}", ui.addr.port());
    let with = [
        ("x-tapedeck-token", b.token.as_str()),
        ("host", rebound.as_str()),
    ];
    let (status, _, _) = get_with(&api, &with).await;
    assert_eq!(status, 403);
    let (status, _, _) = get_with(&base, &[("host", &rebound)]).await;
    assert_eq!(status, 403);
    let (status, _, _) = get_with(
        &format!(
            "http://localhost:{}/_tapedeck/ui/api/sessions",
            ui.addr.port()
        ),
        &[("x-tapedeck-token", &b.token)],
    )
    .await;
    assert_eq!(status, 200, "localhost names the viewer too");

    // Another store's viewer: its token opens that viewer, not this one.
    let other_dirs = Dirs::new();
    let other = Ui::start(&other_dirs, &[]);
    let ob = Browser::enter(&other.link).await;
    let (status, _, _) = ob.get("api/sessions").await;
    assert_eq!(status, 200);
    let (status, _, _) = get_with(&api, &[("x-tapedeck-token", &ob.token)]).await;
    assert_eq!(status, 401, "another daemon's token");
    let (status, _, _) = b.get("api/sessions").await;
    assert_eq!(status, 200, "two viewers side by side");

    // The token shows in no log, and leaves with the viewer.
    let token = ui.token().to_string();
    let (code, err) = ui.stop();
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(&token), "the token is in the log:\n{err}");
    assert!(!token_file.exists(), "the token file outlives the viewer");
    assert!(!dirs.store.join("viewer.html").exists());
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

    let ui = Ui::start(&dirs, &[]);
    let b = Browser::enter(&ui.link).await;

    // Sessions: a summary each, and the failing runs grouped.
    let list = b.summarised().await;
    let rows = list["sessions"].as_array().unwrap();
    assert_eq!(
        names(&list),
        ["good", "empty", "empty-again"],
        "oldest first"
    );
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
        let run = b.json(&format!("api/sessions/{session}/run")).await;
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
    let run = b.json("api/sessions/empty/run").await;
    assert_eq!(run["findings"], analyzed["findings"]);
    // Walk back: the LLM call that got the empty answer takes it from the tool (step 2)
    // and from the call that asked for it (step 1); the tool call takes its arguments
    // from step 1.
    assert_eq!(run["inputs"]["3"], json!([1, 2]), "{}", run["inputs"]);
    assert_eq!(run["inputs"]["2"], json!([1]), "{}", run["inputs"]);
    let tool = run["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == 2 && s["exchange"] == true)
        .unwrap();
    assert_eq!(tool["flag"], "empty");

    // Diff: the alignment of `tapedeck diff`.
    let d = b.json("api/diff/good/empty").await;
    assert_eq!(d["first_divergence"], diffed["first_divergence"]);
    assert_eq!(d["summary"], diffed["summary"]);
    let first = d["first"].as_u64().unwrap() as usize;
    let row = &d["rows"][first];
    assert_eq!(row["a"]["step"], diffed["first_divergence"]["step_a"]);
    assert_eq!(row["b"]["step"], diffed["first_divergence"]["step_b"]);
    assert_ne!(row["relation"], "same");
    let detail = b.json(&format!("api/diff/good/empty/rows/{first}")).await;
    assert_eq!(detail["divergence"], diffed["first_divergence"]);

    // Unknown names are a 404 with a message, not a crash.
    let (status, _, body) = b.get("api/sessions/nope/run").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("nope"));
    let (status, _, _) = b.get("api/sessions/good/steps/99").await;
    assert_eq!(status, 404);

    // While the viewer holds the store, the read commands ask it (with the token).
    let (code, out, err) = dirs.run(&["show", "good", "--json"]);
    assert_eq!(code, 0, "{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["totals"], good_tree["totals"]);
    let (code, out, err) = dirs.run(&["sessions", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (code, _, err) = dirs.run(&["record", "--listen", "127.0.0.1:0", "--", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("tapedeck ui pid"), "{err}");
    let (code, err) = ui.stop();
    assert_eq!(code, 0, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_comes_back_with_its_bodies_and_what_flowed_into_it() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record(&dirs, &up, "xss", "/weather").await;
    let ui = Ui::start(&dirs, &[]);
    let b = Browser::enter(&ui.link).await;
    let (status, headers, text) = b.get("api/sessions/xss/steps/4").await;
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

    // An LLM step: bodies, the call read from them, and what flowed into it: the result
    // of step 1's tool call (by its id) and step 2's answer.
    let llm = b.json("api/sessions/xss/steps/3").await;
    assert_eq!(llm["kind"], "llm");
    assert_eq!(llm["llm"]["request_model"], "gpt-4o-mini");
    assert!(llm["llm"]["input_messages"].as_array().unwrap().len() >= 3);
    assert_eq!(llm["inputs"], json!([1, 2]));
    let asked = b.json("api/sessions/xss/steps/1").await;
    let call_id = asked["llm"]["tool_calls"][0]["id"].as_str().unwrap();
    let flows = llm["walk_back"].as_array().unwrap();
    let from = |s: u64| flows.iter().find(|f| f["step"] == s).unwrap();
    assert_eq!(from(1)["link"], "tool_result", "{flows:?}");
    assert_eq!(from(1)["value"], call_id, "{flows:?}");
    assert!(from(1)["why"].as_str().unwrap().contains("get_weather"));
    assert_eq!(from(2)["link"], "tool_output", "{flows:?}");
    assert!(
        from(2)["value"]
            .as_str()
            .unwrap()
            .contains("\"city\":\"Paris\""),
        "{flows:?}"
    );
    // The tool exchange carries the arguments step 1's response asked for.
    let tool = b.json("api/sessions/xss/steps/2").await;
    assert_eq!(
        tool["walk_back"],
        json!([{"step": 1, "link": "tool_arguments", "value": "Paris",
                "why": tool["walk_back"][0]["why"]}])
    );
    assert_eq!(asked["used_by"], json!([2, 3]));
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
async fn a_value_one_agent_hands_another_is_walked_back_across_the_handoff() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(&dirs, &["record", "--upstream-ca", &ca]);
    // The planner's LLM answers with a completion id; the writer, another agent of the
    // same session, hands that id to a tool.
    let planner = client_as(&d, &dirs, "handoff+planner", "");
    let answer: Value = planner
        .post(up.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "plan"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_string();
    let writer = client_as(&d, &dirs, "handoff+writer", "");
    let r = writer
        .post(up.url("/echo"))
        .json(&json!({"note": "trip", "plan": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");

    let ui = Ui::start(&dirs, &[]);
    let b = Browser::enter(&ui.link).await;
    let run = b.json("api/sessions/handoff/run").await;
    assert_eq!(run["agents"], json!(["planner", "writer"]));
    assert_eq!(run["inputs"]["2"], json!([1]), "{}", run["inputs"]);
    let step = b.json("api/sessions/handoff/steps/2").await;
    assert_eq!(step["agent"], "writer");
    let flow = &step["walk_back"][0];
    assert_eq!(flow["step"], 1, "{step}");
    assert_eq!(flow["link"], "value");
    assert_eq!(flow["value"], id.as_str());
    assert!(flow["why"].as_str().unwrap().contains("step 1"), "{flow}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_value_that_is_not_utf8_is_shown_as_its_latin1_text() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "latin1", &[]);
    let r = client(&d, &dirs)
        .get(up.url("/latin1-header"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    let ui = Ui::start(&dirs, &[]);
    let b = Browser::enter(&ui.link).await;
    let step = b.json("api/sessions/latin1/steps/1").await;
    let headers = step["response"]["headers"].as_array().unwrap();
    let shown = headers
        .iter()
        .find(|h| h[0] == "content-disposition")
        .unwrap_or_else(|| panic!("{headers:?}"));
    // The fixture's bytes, r\xe9sum\xe9, read as Latin-1; not the stored "\0base64:...".
    let want: String = support::upstream::LATIN1_DISPOSITION
        .iter()
        .map(|&b| char::from(b))
        .collect();
    assert_eq!(want, "attachment; filename=\"résumé.pdf\"");
    assert_eq!(shown[1], want.as_str());
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
    let ui = Ui::start(&dirs, &[t, t]);
    let b = Browser::enter(&ui.link).await;
    let list = b.summarised().await;
    let names = names(&list);
    assert_eq!(names.len(), 2);
    assert!(
        names.contains(&"taped") && names.contains(&"taped-2"),
        "{names:?}"
    );
    let run = b.json("api/sessions/taped-2/run").await;
    assert_eq!(run["events"], 4);
    let (status, _, _) = get_with(&format!("{}api/sessions", ui.base()), &[]).await;
    assert_eq!(status, 401, "tapes are behind the token too");
    assert!(!dirs.store.exists(), "viewing tapes creates no store");
    // With no store, the token lives in memory only.
    assert!(
        dirs.files_containing(ui.token().as_bytes()).is_empty(),
        "the token is on disk"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_a_daemon_holds_is_shown_by_that_daemons_viewer() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "held", &[]);
    agent_run(&client(&d, &dirs), &up, "/weather").await;
    // sled lets one process open the store: `tapedeck ui` hands over the daemon's link.
    let link = daemon_link(&dirs);
    assert!(
        link.starts_with(&format!("http://{}/_tapedeck/ui/?token=", d.addr)),
        "{link}"
    );
    let b = Browser::enter(&link).await;
    let list = b.summarised().await;
    assert_eq!(list["sessions"][0]["name"], "held");
    assert_eq!(list["sessions"][0]["summary"]["events"], 4);
    let step = b.json("api/sessions/held/steps/4").await;
    assert!(step["response"]["body"]["text"]
        .as_str()
        .unwrap()
        .contains(SCRIPT));
    // An exchange the daemon records meanwhile shows on the next look.
    let c = client(&d, &dirs);
    // The exchange is stored before its last byte reaches the client: read it all.
    let r = c.get(up.url("/weather?city=Tokyo")).send().await.unwrap();
    r.text().await.unwrap();
    let list = b.summarised().await;
    assert_eq!(list["sessions"][0]["events"], 5);
    let run = b.json("api/sessions/held/run").await;
    assert_eq!(run["events"], 5, "the session is read again once it grew");
    let token = link.split("?token=").nth(1).unwrap().to_string();
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(&token), "the token is in the daemon's log");
    assert!(!dirs.store.join("control.token").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_daemon_shows_only_the_session_it_replays() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    record(&dirs, &up, "good", "/weather").await;
    record(&dirs, &up, "empty", "/empty-list").await;
    let d = Daemon::start(&dirs, &["replay", "--session", "good"]);
    let link = daemon_link(&dirs);
    let b = Browser::enter(&link).await;
    let info = b.json("api/info").await;
    assert_eq!(info["mode"], "replay");
    let list = b.summarised().await;
    let names = names(&list);
    assert_eq!(names, ["good"]);
    let run = b.json("api/sessions/good/run").await;
    assert_eq!(run["events"], 4);
    for path in [
        "api/sessions/empty/run",
        "api/sessions/empty/steps/1",
        "api/diff/good/empty",
    ] {
        let (status, _, body) = b.get(path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(body.contains("only"), "{body}");
    }
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("viewer at http://"),
        "the daemon names its viewer: {err}"
    );
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
    // Without the token the daemon's viewer API and its live stream stay closed.
    for path in ["api/info", "api/live"] {
        let (status, _, body) = get_with(&format!("{base}{path}"), &[]).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let b = Browser::enter(&daemon_link(&dirs)).await;
    assert_eq!(b.base, base);
    let (status, h, page) = b.get("").await;
    assert_eq!(status, 200);
    assert!(page.contains("src=\"app.js\""));
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let info = b.json("api/info").await;
    assert_eq!(info["live"], true);

    let mut live = plain()
        .get(format!("{base}api/live"))
        .header("x-tapedeck-token", &b.token)
        .send()
        .await
        .unwrap();
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
    let run = b.json("api/sessions/watched/run").await;
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
