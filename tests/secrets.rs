//! Secrets never reach disk, by any path: each test sends secrets the way an agent or a
//! careless upstream would, checks that the upstream (or the client) got the real values,
//! then searches every file under the scratch directory (the store, the exported tape)
//! and the proxy's stderr for each of them.

use crate::support;

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;
use support::harness::{client, export, Daemon, Dirs};
use support::upstream::{
    Upstream, DB_PASSWORD, DB_SECRET_STRING, OAUTH_ACCESS_TOKEN, OAUTH_REFRESH_TOKEN, PAGE_CSRF,
};

const BEARER: &str = "sk-live-BEARER-MUST-NEVER-BE-STORED-9898";

fn record(dirs: &Dirs, up: &Upstream, session: &str, extra: &[&str]) -> Daemon {
    Daemon::record(dirs, up, session, extra)
}

/// Stops the daemon, exports the session into the scratch directory, and asserts that
/// no secret is in any file there nor in the daemon's stderr. Returns the events.
fn assert_nowhere(dirs: &Dirs, d: Daemon, session: &str, secrets: &[&str]) -> Vec<Value> {
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    let events = export(dirs, session);
    // And as a user exports it: bodies over 64 KiB go to files beside the tape.
    let tape = dirs.path(&format!("{session}.default.jsonl"));
    let (code, _, err) = dirs.run(&["export", session, "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "export failed: {err}");
    let mut leaks = Vec::new();
    for s in secrets {
        let files = dirs.files_containing(s.as_bytes());
        if !files.is_empty() {
            leaks.push(format!("{s:?} reached disk in {files:?}"));
        }
        if stderr.contains(s) {
            leaks.push(format!("{s:?} is in the log"));
        }
    }
    assert!(leaks.is_empty(), "{}\nlog:\n{stderr}", leaks.join("\n"));
    events
}

/// A chat request whose assistant turn calls tool `tool` with `arguments` (carried as a
/// JSON string, as providers carry them) and whose tool turn answers `result`.
fn tool_call_chat(tool: &str, arguments: Value, result: &str) -> Value {
    serde_json::json!({"model": "gpt-4o-mini", "messages": [
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": tool, "arguments": arguments.to_string()}}]},
        {"role": "tool", "tool_call_id": "c1", "content": result}]})
}

/// The tool call's arguments (parsed from their string) and the tool's result, as the
/// first exported event stored a [`tool_call_chat`].
fn stored_tool_call(events: &[Value]) -> (Value, Value) {
    let messages = &events[0]["request"]["body"]["json"]["messages"];
    let arguments = messages[0]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .expect("the arguments are a string");
    (
        serde_json::from_str(arguments).expect("the arguments are JSON"),
        messages[1]["content"].clone(),
    )
}

/// Posts `chat` to `url` through `via` (the upstream's echo): the answer's status.
async fn post_chat(via: reqwest::Client, url: String, chat: Value) -> u16 {
    let r = via.post(url).json(&chat).send().await.unwrap();
    r.status().as_u16()
}

/// Replays `session` and runs `send` through it again: the answers' statuses are
/// `want`, and replay exits 0 (every request matched, none missed).
async fn replays_as_recorded<T, F, Fut>(dirs: &Dirs, session: &str, send: F, want: T)
where
    T: PartialEq + std::fmt::Debug,
    F: FnOnce(reqwest::Client) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let r = Daemon::start(dirs, &["replay", "--session", session]);
    let status = send(client(&r, dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((status, code), (want, 0), "{stderr}");
}

fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_failure_stores_and_logs_the_url_without_its_key() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "fail", &[]);
    let via = client(&d, &dirs);
    let key = "AIzaSy-GEMINI-KEY-MUST-NEVER-BE-STORED-01";
    let short = "Zq7Xw9";
    let port = dead_port();
    for scheme in ["http", "https"] {
        let url = format!(
            "{scheme}://127.0.0.1:{port}/v1beta/models/gemini-2.0-flash:generateContent?key={key}&token={short}"
        );
        let resp = via.post(url).json(&serde_json::json!({})).send().await;
        if let Ok(resp) = resp {
            assert_eq!(resp.status(), 502);
        }
    }
    let events = assert_nowhere(&dirs, d, "fail", &[key, short]);
    assert!(!events.is_empty());
    for ev in &events {
        let msg = ev["error"]["message"].as_str().unwrap();
        assert!(msg.contains("key=[REDACTED]"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_echoing_the_authorization_in_a_response_header_is_scrubbed() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "echo-header", &[]);
    let via = client(&d, &dirs);
    let resp = via
        .get(up.url("/echo-auth"))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap();
    // The client sees what the upstream sent.
    assert_eq!(
        resp.headers()["x-echoed"].to_str().unwrap(),
        format!("Bearer {BEARER}")
    );
    let events = assert_nowhere(&dirs, d, "echo-header", &[BEARER]);
    let headers = events[0]["response"]["headers"].as_array().unwrap();
    assert!(headers
        .iter()
        .any(|h| h[0] == "x-echoed" && h[1] == "[REDACTED]"));
}

/// The same echo in a header value that is not UTF-8 (stored as its bytes in base64): the
/// key is scrubbed from the bytes, so neither it nor the base64 of the value as sent is
/// on disk, and the stored bytes keep the rest.
#[tokio::test(flavor = "multi_thread")]
async fn an_echo_of_the_authorization_in_a_header_that_is_not_utf8_is_scrubbed() {
    use base64::Engine;
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "echo-latin1", &[]);
    let via = client(&d, &dirs);
    let resp = via
        .get(up.url("/echo-auth-latin1"))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap();
    let sent = [format!("Bearer {BEARER}").as_bytes(), b" \xe9"].concat();
    assert_eq!(resp.headers()["x-echoed"].as_bytes(), &sent[..]);
    let sent_b64 = base64::engine::general_purpose::STANDARD.encode(&sent);
    let events = assert_nowhere(&dirs, d, "echo-latin1", &[BEARER, &sent_b64[..24]]);
    let stored = events[0]["response"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-echoed")
        .map(|h| h[1].as_str().unwrap().to_string())
        .unwrap();
    let b64 = stored.strip_prefix("\0base64:").expect("kept as its bytes");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    // The whole credential is a secret (as in the UTF-8 echo above); the byte after it stays.
    assert_eq!(bytes, b"[REDACTED] \xe9", "{bytes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_stream_echoing_secrets_across_frames_is_scrubbed_as_it_is_written() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "long-sse", &[]);
    let via = client(&d, &dirs);
    // 3 MiB: past the 1 MiB an event stream is kept whole, so it is written in segments.
    let body = via
        .get(up.url("/sse-echo-auth?bytes=3145728"))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events_seen = body.matches(BEARER).count();
    assert!(events_seen > 700, "the client got the real stream");
    assert_eq!(body.matches(OAUTH_ACCESS_TOKEN).count(), events_seen);
    let events = assert_nowhere(&dirs, d, "long-sse", &[BEARER, OAUTH_ACCESS_TOKEN]);
    let files = dirs.path("long-sse.default.bodies");
    assert!(
        std::fs::read_dir(&files).map_or(0, |d| d.count()) > 0,
        "the 3 MiB stream went to a body file beside the tape, which was searched too"
    );
    let resp = &events[0]["response"];
    assert!(
        resp["body"]["len"].as_u64().unwrap() > 2 << 20,
        "stored in segments"
    );
    // The stream keeps its frames (at least one a 16-event frame of the upstream's),
    // measured in stored bytes.
    let chunks: Vec<u64> = resp["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["len"].as_u64().unwrap())
        .collect();
    assert!(chunks.len() > 40, "{} chunks", chunks.len());
    assert_eq!(
        chunks.iter().sum::<u64>(),
        resp["body"]["len"].as_u64().unwrap()
    );
    let text = resp["body"]["text"].as_str().unwrap();
    assert_eq!(
        text.matches(r#""echo":"[REDACTED]","access_token":"[REDACTED]""#)
            .count(),
        events_seen
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn percent_encoded_names_and_url_userinfo_are_redacted() {
    let up = Upstream::start(false).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "names", &[]);
    let via = client(&d, &dirs);
    let key = "encoded-NAME-KEY-MUST-NEVER-BE-STORED-02";
    let pass = "userinfo-PASS-MUST-NEVER-BE-STORED-03";
    let resp = via
        .get(up.url(&format!("/json?api%5Fkey={key}&ApiKey={key}x")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A request line with userinfo, as some clients send it to a proxy.
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    let req = format!(
        "GET http://ada:{pass}@{}/json HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
        up.addr, up.addr
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let events = assert_nowhere(&dirs, d, "names", &[key, pass]);
    assert_eq!(
        events[0]["request"]["url"],
        format!(
            "{}/json?api%5Fkey=[REDACTED]&ApiKey=[REDACTED]",
            up.base_url()
        )
    );
    assert_eq!(
        events[1]["request"]["url"],
        format!("http://[REDACTED]@{}/json", up.addr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_fields_are_redacted_in_every_framing_and_their_echoes_scrubbed() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(
        &dirs,
        &up,
        "fields",
        &["--redact-json-field", "session_pin"],
    );
    let via = client(&d, &dirs);
    let ndjson_pw = "ndjson-PASSWORD-MUST-NEVER-BE-STORED-04";
    let pin = "custom-PIN-MUST-NEVER-BE-STORED-05";
    let trailing_key = "trailing-APIKEY-MUST-NEVER-BE-STORED-06";
    let form_pw = "form-PASSWORD-MUST-NEVER-BE-STORED-07";
    let form_cs = "form-CLIENTSECRET-MUST-NEVER-BE-STORED-08";
    let mp_pw = "multipart-PASSWORD-MUST-NEVER-BE-STORED-09";
    // Under names that say `token` and nothing more: secrets because they look like keys.
    let form_csrf = "Csrf-T0ken-MUST-NEVER-BE-STORED-11";
    let mp_upload = "Upl0ad-Token-MUST-NEVER-BE-STORED-12";
    let echo = |ct: &'static str, body: String| {
        let via = via.clone();
        let url = up.url("/echo");
        async move {
            let resp = via
                .post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.text().await.unwrap()
        }
    };
    // NDJSON: the upstream echoes the body back as one JSON string (escaped), where only
    // the scrub list of redacted values can find the password.
    let got = echo(
        "application/x-ndjson",
        format!("{{\"a\":1}}\n{{\"password\":\"{ndjson_pw}\",\"session_pin\":\"{pin}\"}}\n"),
    )
    .await;
    assert!(got.contains(ndjson_pw) && got.contains(pin), "{got}");
    // JSON followed by other bytes.
    let got = echo(
        "application/json",
        format!("{{\"api_key\":\"{trailing_key}\"}} and then some"),
    )
    .await;
    assert!(got.contains(trailing_key));
    // A form (an OAuth password grant), with an encoded name.
    let got = echo(
        "application/x-www-form-urlencoded",
        format!(
            "grant_type=password&username=ada&password={form_pw}&client%5Fsecret={form_cs}\
             &csrf_token={form_csrf}&eos_token=%3C%2Fs%3E"
        ),
    )
    .await;
    assert!(got.contains(form_pw) && got.contains(form_cs) && got.contains(form_csrf));
    // Multipart.
    let mp = format!(
        "--b0undary\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nada\r\n\
         --b0undary\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{mp_pw}\r\n\
         --b0undary\r\nContent-Disposition: form-data; name=\"upload_token\"\r\n\r\n{mp_upload}\r\n\
         --b0undary--\r\n"
    );
    let got = echo("multipart/form-data; boundary=b0undary", mp).await;
    assert!(got.contains(mp_pw) && got.contains(mp_upload));
    // An OAuth token response, and the same token in SSE `data:` lines kept whole.
    let tokens: Value = via
        .post(up.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["access_token"], OAUTH_ACCESS_TOKEN);
    let sse = via
        .get(up.url("/sse-echo-auth?bytes=20000"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse.contains(OAUTH_ACCESS_TOKEN));
    // A JavaScript-style name, as the query list already has it.
    let camel_key = "camel-APIKEY-MUST-NEVER-BE-STORED-10";
    let got = echo(
        "application/json",
        format!("{{\"config\":{{\"apiKey\":\"{camel_key}\"}}}}"),
    )
    .await;
    assert!(got.contains(camel_key), "{got}");

    let events = assert_nowhere(
        &dirs,
        d,
        "fields",
        &[
            camel_key,
            ndjson_pw,
            pin,
            trailing_key,
            form_pw,
            form_cs,
            mp_pw,
            form_csrf,
            mp_upload,
            OAUTH_ACCESS_TOKEN,
            OAUTH_REFRESH_TOKEN,
        ],
    );
    assert_eq!(
        events[2]["request"]["body"]["text"],
        "grant_type=password&username=ada&password=[REDACTED]&client%5Fsecret=[REDACTED]\
         &csrf_token=[REDACTED]&eos_token=%3C%2Fs%3E"
    );
    assert_eq!(
        events[4]["response"]["body"]["json"]["access_token"],
        "[REDACTED]"
    );
    assert_eq!(events[4]["response"]["body"]["json"]["expires_in"], 3600);
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_matches_requests_whose_secrets_were_redacted() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "rekey", &[]);
    let via = client(&d, &dirs);
    // 2 MiB of bytes with the bearer credential inside: stored in segments, scrubbed,
    // and keyed by the blake3 of the scrubbed bytes.
    let mut upload = vec![b'.'; 2 << 20];
    for at in [0, 300_000, (1 << 20) - 10, (2 << 20) - BEARER.len()] {
        upload[at..at + BEARER.len()].copy_from_slice(BEARER.as_bytes());
    }
    let send = |via: reqwest::Client, upload: Vec<u8>| {
        let up_url = |p: &str| up.url(p);
        let (a, b, c) = (
            up_url("/json?key=query-KEY-12345678&page=2"),
            up_url("/echo"),
            up_url("/upload"),
        );
        async move {
            let mut statuses = Vec::new();
            let r = via.get(a).bearer_auth(BEARER).send().await.unwrap();
            statuses.push(r.status().as_u16());
            let r = via
                .post(b.clone())
                .json(&serde_json::json!({"password": "pw-12345678", "q": 1}))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
            let r = via
                .post(b)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("client_secret=cs-12345678&csrf_token=Csrf-T0ken-12345678&x=1")
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
            let r = via
                .post(c)
                .bearer_auth(BEARER)
                .header("content-type", "application/octet-stream")
                .body(upload)
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
            statuses
        }
    };
    assert_eq!(send(via, upload.clone()).await, vec![200; 4]);
    let secrets = [
        BEARER,
        "query-KEY-12345678",
        "pw-12345678",
        "cs-12345678",
        "Csrf-T0ken-12345678",
    ];
    assert_nowhere(&dirs, d, "rekey", &secrets);

    let r = Daemon::start(&dirs, &["replay", "--session", "rekey"]);
    let statuses = send(client(&r, &dirs), upload).await;
    let (code, stderr) = r.stop();
    assert_eq!(code, 0);
    assert_eq!(statuses, vec![200; 4], "{stderr}");
    assert!(!stderr.contains(BEARER));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_in_a_tool_calls_arguments_string_never_reaches_disk_and_replay_matches() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "args", &[]);
    let pw = "tool-ARGS-PASSWORD-MUST-NEVER-BE-STORED-11";
    // An agent's next turn: the model's tool call goes back with the conversation, its
    // arguments JSON written inside a JSON string (OpenAI's `function.arguments`), pretty
    // printed the second time, as some SDKs do.
    let args =
        serde_json::to_string(&serde_json::json!({"username": "ada", "password": pw})).unwrap();
    let pretty =
        serde_json::to_string_pretty(&serde_json::json!({"db": {"password": pw}})).unwrap();
    let turn = serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "user", "content": "log me in"},
            {"role": "assistant", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "login", "arguments": args}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "connect", "arguments": pretty}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
    });
    let send = |via: reqwest::Client| {
        let (url, turn) = (up.url("/echo"), turn.clone());
        async move {
            let r = via.post(url).json(&turn).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, echoed) = send(client(&d, &dirs)).await;
    assert_eq!(status, 200);
    // The upstream got the real arguments (and echoed them back).
    assert_eq!(echoed["body"], turn);
    let events = assert_nowhere(&dirs, d, "args", &[pw]);
    let stored = &events[0]["request"]["body"]["json"]["messages"][1]["tool_calls"];
    let args: Value = serde_json::from_str(stored[0]["function"]["arguments"].as_str().unwrap())
        .expect("the stored arguments are still JSON");
    assert_eq!(args["password"], "[REDACTED]");
    assert_eq!(args["username"], "ada");
    let pretty: Value = serde_json::from_str(stored[1]["function"]["arguments"].as_str().unwrap())
        .expect("the stored arguments are still JSON");
    assert_eq!(pretty["db"]["password"], "[REDACTED]");

    // Replay redacts the live request the same way, so it matches.
    let r = Daemon::start(&dirs, &["replay", "--session", "args"]);
    let (status, _) = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((status, code), (200, 0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_in_a_url_path_never_reaches_disk_and_replay_matches() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let rule = r"^localhost/hooks/[^/]+/([^/]+)";
    let d = record(&dirs, &up, "hook", &["--redact-path", rule]);
    let token = "hook-PATH-TOKEN-MUST-NEVER-BE-STORED-12";
    let send = |via: reqwest::Client, team: &str| {
        let url = up.url(&format!("/hooks/{team}/{token}?wait=true"));
        async move {
            via.post(url)
                .json(&serde_json::json!({"text": "deploy done"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Calls before it: another route, and another webhook of the same shape.
    let c = client(&d, &dirs);
    let weather = c.get(up.url("/weather?city=Paris")).send().await.unwrap();
    assert_eq!(weather.status(), 200);
    // The fixture has no such route: the 404 is recorded like any answer.
    assert_eq!(send(c.clone(), "ops").await, 404);
    let status = send(c, "team").await;
    assert_eq!(status, 404);
    let events = assert_nowhere(&dirs, d, "hook", &[token]);
    let url = events[2]["request"]["url"].as_str().unwrap();
    assert!(url.ends_with("/hooks/team/[REDACTED]?wait=true"), "{url}");

    // Replayed without the rule, the webhook misses: the miss says the rules differ and
    // names the step with the redacted path, not the first unserved one.
    let r = Daemon::start(&dirs, &["replay", "--session", "hook"]);
    let status = send(client(&r, &dirs), "team").await;
    // And a path of another shape, with the token in it too.
    let other = client(&r, &dirs)
        .get(up.url(&format!("/hooks/team/{token}/")))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let (_, stderr) = r.stop();
    assert_eq!(status, 404);
    let miss = stderr
        .lines()
        .find(|l| l.contains("MISS unrecorded"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        miss.contains("the closest unserved call is step 3 (POST"),
        "{miss}"
    );
    assert!(miss.contains("other redaction or matching rules"), "{miss}");
    // The live path's secret is masked where the recording has it redacted: the miss
    // line goes to CI's log.
    assert!(
        miss.contains("/hooks/team/[REDACTED]?wait=true was never recorded"),
        "{miss}"
    );
    assert!(!stderr.contains(token), "{stderr}");

    let r = Daemon::start(
        &dirs,
        &["replay", "--session", "hook", "--redact-path", rule],
    );
    let c = client(&r, &dirs);
    let weather = c.get(up.url("/weather?city=Paris")).send().await.unwrap();
    assert_eq!(weather.status(), 200);
    assert_eq!(send(c.clone(), "ops").await, 404);
    let status = send(c, "team").await;
    let (code, stderr) = r.stop();
    assert_eq!((status, code), (404, 0), "{stderr}");
    assert!(!stderr.contains(token));
}

/// An agent that sends its key in a header and also in the URL (`/v1/keys/<key>/usage`,
/// a parameter under a name no rule reads), or a secret field's value in the URL of the
/// request whose body holds it: the URL is read before the rest of its request, and was
/// stored with the key in clear (2026-12-06).
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_its_own_request_reveals_is_scrubbed_from_the_url_and_replay_matches() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    // Values of no known key shape: only the header and the field say they are secrets.
    let key = "Zx81kq0pLm33qq";
    let field = "Qw7vB2nM9kLp4r";
    let large = "Hy5tR3eW1qAz0x";
    let mut upload = format!(r#"{{"password":"{large}","pad":""#).into_bytes();
    upload.resize(2 << 20, b'.');
    upload.extend_from_slice(b"\"}");
    let send = |via: reqwest::Client, upload: Vec<u8>| {
        let (a, b, c) = (
            up.url(&format!("/keys/{key}/usage?again={key}")),
            up.url(&format!("/echo?ref={field}")),
            up.url(&format!("/upload?ref={large}")),
        );
        async move {
            let upload = via
                .post(c)
                .header("content-type", "application/json")
                .body(upload);
            vec![
                status(via.get(a).bearer_auth(key)).await,
                status(via.post(b).json(&serde_json::json!({"password": field}))).await,
                status(upload).await,
            ]
        }
    };
    let d = record(&dirs, &up, "inurl", &[]);
    assert_eq!(
        send(client(&d, &dirs), upload.clone()).await,
        [404, 200, 200]
    );
    let events = assert_nowhere(&dirs, d, "inurl", &[key, field, large]);
    let urls: Vec<&str> = events
        .iter()
        .map(|e| e["request"]["url"].as_str().unwrap())
        .collect();
    assert!(
        urls[0].ends_with("/keys/[REDACTED]/usage?again=[REDACTED]"),
        "{urls:?}"
    );
    assert!(urls[1].ends_with("/echo?ref=[REDACTED]"), "{urls:?}");
    assert!(urls[2].ends_with("/upload?ref=[REDACTED]"), "{urls:?}");

    // Replay redacts the live requests the same way: every one matches.
    let r = Daemon::start(&dirs, &["replay", "--session", "inurl"]);
    let statuses = send(client(&r, &dirs), upload).await;
    let (code, stderr) = r.stop();
    assert_eq!((statuses, code), (vec![404, 200, 200], 0), "{stderr}");
    for s in [key, field, large] {
        assert!(!stderr.contains(s), "{stderr}");
    }

    // A recording made before this was fixed holds the key in its URL (a tape edited
    // back to it, imported: its headers no longer say the value is a key). The live
    // request, keyed redacted, still finds it, by its redacted parts.
    let tape = dirs.path("old.jsonl");
    let (code, _, err) = dirs.run(&["export", "inurl", "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&tape).unwrap();
    let old = text.replacen(
        "/keys/[REDACTED]/usage?again=[REDACTED]",
        &format!("/keys/{key}/usage?again={key}"),
        1,
    );
    assert_ne!(old, text);
    std::fs::write(&tape, old).unwrap();
    let (code, _, err) = dirs.run(&["import", tape.to_str().unwrap(), "--session", "old"]);
    assert_eq!(code, 0, "{err}");
    let r = Daemon::start(&dirs, &["replay", "--session", "old"]);
    let status = client(&r, &dirs)
        .get(up.url(&format!("/keys/{key}/usage?again={key}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status();
    let (_, stderr) = r.stop();
    assert_eq!(status, 404);
    assert!(
        stderr.contains("served 1/3 events, 0 misses")
            && stderr.contains("1 matched by its redacted parts"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_under_names_of_their_own_never_reach_disk_and_replay_matches() {
    // What tool APIs and connectors send under names no list has: ElevenLabs', Azure's,
    // RapidAPI's, Weaviate's, Vault's and Supabase's key headers; an S3 presigned URL's
    // token and signature, an Azure SAS signature, Edamam's app_key; and, in an LLM
    // request's body, Anthropic's MCP connector token and OpenAI's MCP tool headers.
    let headers = [
        ("xi-api-key", "xi-ELEVENLABS-KEY-000001"),
        ("Ocp-Apim-Subscription-Key", "ocp-AZURE-SUBSCRIPTION-02"),
        ("X-RapidAPI-Key", "rapid-API-KEY-000000003"),
        ("X-OpenAI-Api-Key", "sk-weaviate-OPENAI-00004"),
        ("X-Vault-Token", "hvs.VAULT-TOKEN-0000005"),
        ("apikey", "supabase-ANON-KEY-000006"),
        ("API-Sign", "kraken-HMAC-SIGN-000014"),
    ];
    let query = [
        ("X-Amz-Security-Token", "amz-SESSION-TOKEN-00007"),
        ("X-Amz-Signature", "amz-SIGNATURE-000000008"),
        ("sig", "azure-SAS-SIGNATURE-0009"),
        ("app_key", "edamam-APP-KEY-000000010"),
        ("appsecret_proof", "fb-APPSECRET-PROOF-00015"),
        // A name ending in `token` whose value looks like a key.
        ("invite_token", "Inv1te-T0ken-000000018"),
    ];
    let connector = "mcp-CONNECTOR-TOKEN-00011";
    let pair = "sk-env-PAIR-VALUE-000013";
    let mcp_header = "mcp-OPENAI-HEADER-000012";
    let search_key = "oyd-SEARCH-KEY-000000016";
    let arm_password = "Arm-P4ssw0rd-000000017";
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "crm",
                         "authorization_token": connector}],
        "tools": [{"type": "mcp", "server_label": "crm", "server_url": "https://mcp.example.com",
                   "headers": {"Authorization": format!("Bearer {mcp_header}")}},
                  {"name": "login", "input_schema": {"type": "object",
                   "properties": {"db_password": {"type": "string"}}}}],
        "metadata": {"is_secret": true, "pageToken": "page-2-of-the-listing",
                     // A sync cursor that looks like a key: Google Calendar's.
                     "syncToken": "CPDAlvWDx70CEPDAlvWDx70CGAU=",
                     // A cursor under a name of its own; an asset's contract address.
                     "next_cursor_token": "eyJxIjogImFscGhhIiwgIm9mZnNldCI6IDJ9",
                     "sellToken": "0x6B175474E89094C44Da98b954EedeAC495271d0F"},
        // A deployment tool's environment, as name/value pairs.
        "env": [{"name": "OPENAI_API_KEY", "value": pair}, {"name": "LOG_LEVEL", "value": "debug"}],
        // Azure OpenAI "On Your Data": the search index's key under a bare `key`.
        "data_sources": [{"type": "azure_search", "parameters": {
            "authentication": {"type": "api_key", "key": search_key}}}],
        // An ARM deployment's parameters.
        "parameters": {"adminPassword": {"value": arm_password},
                       "adminUsername": {"value": "azureuser"}},
    });
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let send = |via: reqwest::Client| {
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = up.url(&format!("/echo?city=Paris&{}", q.join("&")));
        let body = body.clone();
        async move {
            let mut req = via.post(url).json(&body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let d = record(&dirs, &up, "named", &[]);
    let (status, live) = send(client(&d, &dirs)).await;
    assert_eq!(status, 200, "{live}");
    // The upstream got every real value.
    for v in
        query
            .iter()
            .map(|q| q.1)
            .chain([connector, mcp_header, pair, search_key, arm_password])
    {
        assert!(live.contains(v), "{v} did not reach the upstream: {live}");
    }
    let mut secrets: Vec<&str> = headers.iter().chain(&query).map(|(_, v)| *v).collect();
    secrets.extend([connector, mcp_header, pair, search_key, arm_password]);
    let events = assert_nowhere(&dirs, d, "named", &secrets);
    let req = &events[0]["request"];
    for (name, _) in headers {
        let h = req["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("{name} not stored: {req}"));
        assert_eq!(h[1], "[REDACTED]", "{name}");
    }
    let url = req["url"].as_str().unwrap();
    assert!(
        url.contains("?city=Paris&X-Amz-Security-Token=[REDACTED]&"),
        "{url}"
    );
    assert!(
        url.ends_with(
            "&sig=[REDACTED]&app_key=[REDACTED]&appsecret_proof=[REDACTED]&invite_token=[REDACTED]"
        ),
        "{url}"
    );
    let json = &req["body"]["json"];
    assert_eq!(json["mcp_servers"][0]["authorization_token"], "[REDACTED]");
    assert_eq!(json["tools"][0]["headers"]["Authorization"], "[REDACTED]");
    // What only looks like a credential's is kept: a schema under a password's name, a
    // flag, a page cursor, an ordinary parameter.
    assert_eq!(
        json["tools"][1]["input_schema"]["properties"]["db_password"],
        serde_json::json!({"type": "string"})
    );
    assert_eq!(json["metadata"]["is_secret"], true);
    assert_eq!(json["metadata"]["pageToken"], "page-2-of-the-listing");
    assert_eq!(
        json["metadata"]["syncToken"],
        "CPDAlvWDx70CEPDAlvWDx70CGAU="
    );
    assert_eq!(
        json["metadata"]["next_cursor_token"],
        "eyJxIjogImFscGhhIiwgIm9mZnNldCI6IDJ9"
    );
    assert_eq!(
        json["metadata"]["sellToken"],
        "0x6B175474E89094C44Da98b954EedeAC495271d0F"
    );
    assert_eq!(json["env"][0]["value"], "[REDACTED]");
    assert_eq!(json["env"][1]["value"], "debug");
    assert_eq!(
        json["data_sources"][0]["parameters"]["authentication"]["key"],
        "[REDACTED]"
    );
    assert_eq!(json["parameters"]["adminPassword"]["value"], "[REDACTED]");
    assert_eq!(json["parameters"]["adminUsername"]["value"], "azureuser");

    // Replayed, the same call matches and gets the recorded answer, its echoes of the
    // secrets scrubbed.
    let r = Daemon::start(&dirs, &["replay", "--session", "named"]);
    let (status, replayed) = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((status, code), (200, 0), "{replayed}\n{stderr}");
    let replayed: Value = serde_json::from_str(&replayed).unwrap();
    assert_eq!(
        replayed["body"]["mcp_servers"][0]["authorization_token"],
        "[REDACTED]"
    );
    assert_eq!(
        replayed["body"]["metadata"]["pageToken"],
        "page-2-of-the-listing"
    );
    assert!(replayed["query"]
        .as_str()
        .unwrap()
        .contains("sig=[REDACTED]"));
}

/// What only looks like a credential by its name must not change what replay serves:
/// Steam's `appid` is a game's number (two calls that differ in it are two calls), and
/// Azure Table's `x-ms-continuation-NextPartitionKey` answer header is the cursor the
/// client sends back for the next page.
#[tokio::test(flavor = "multi_thread")]
async fn values_that_only_look_like_credentials_replay_as_recorded() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let run = |via: reqwest::Client, apps: [&'static str; 2]| {
        let echo = |app: &str| up.url(&format!("/echo?appid={app}"));
        let (a, b, table) = (echo(apps[0]), echo(apps[1]), up.url("/table"));
        async move {
            let mut seen = Vec::new();
            for url in [a, b] {
                let v: Value = via
                    .post(url)
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                seen.push(v["query"].as_str().unwrap().to_string());
            }
            let mut next: Option<(String, String)> = None;
            loop {
                let mut req = via.get(table.clone());
                if let Some((p, r)) = &next {
                    req = req.query(&[("NextPartitionKey", p), ("NextRowKey", r)]);
                }
                let resp = req.send().await.unwrap();
                assert_eq!(resp.status(), 200);
                let h = |n: &str| {
                    resp.headers()
                        .get(n)
                        .map(|v| v.to_str().unwrap().to_string())
                };
                next =
                    h("x-ms-continuation-nextpartitionkey").zip(h("x-ms-continuation-nextrowkey"));
                let v: Value = resp.json().await.unwrap();
                seen.push(v["value"][0]["PartitionKey"].as_str().unwrap().to_string());
                if next.is_none() {
                    break;
                }
            }
            seen
        }
    };
    let d = record(&dirs, &up, "lookalike", &[]);
    let live = run(client(&d, &dirs), ["570", "440"]).await;
    assert_eq!(
        live,
        [
            "appid=570",
            "appid=440",
            "partition-1",
            "partition-2",
            "partition-3"
        ]
    );
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    // Replayed with the two games asked in the other order, each gets its own answer.
    let r = Daemon::start(&dirs, &["replay", "--session", "lookalike"]);
    let replayed = run(client(&r, &dirs), ["440", "570"]).await;
    let (code, stderr) = r.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        replayed,
        [
            "appid=440",
            "appid=570",
            "partition-1",
            "partition-2",
            "partition-3"
        ]
    );
}

/// The status of the answer to `req`, sent.
async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.unwrap().status().as_u16()
}

/// Secrets Manager's `GetSecretValue` for `prod/db`, sent as `req`: its `SecretString`.
async fn secret_string(req: reqwest::RequestBuilder) -> String {
    let resp = req
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "secretsmanager.GetSecretValue")
        .body(r#"{"SecretId":"prod/db"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    v["SecretString"].as_str().unwrap().to_string()
}

/// A secret the agent parses: Secrets Manager's `SecretString` for an RDS password is JSON
/// text. Its password never reaches disk, and the replayed run still parses the secret
/// (before, it was served as `"[REDACTED]"` and `json.loads` failed).
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_holding_json_never_reaches_disk_and_replays_as_json() {
    assert!(DB_SECRET_STRING.contains(DB_PASSWORD));
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let url = up.url("/secretsmanager");
    let get_secret = |via: reqwest::Client| {
        let url = url.clone();
        async move {
            let text = secret_string(via.post(url)).await;
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("the secret is not JSON ({e}): {text}"))
        }
    };
    let d = record(&dirs, &up, "secretjson", &[]);
    let live = get_secret(client(&d, &dirs)).await;
    assert_eq!(live["password"], DB_PASSWORD);
    let events = assert_nowhere(&dirs, d, "secretjson", &[DB_PASSWORD, DB_SECRET_STRING]);
    let stored = events[0]["response"]["body"].to_string();
    assert!(!stored.contains("admin"), "{stored}");

    let r = Daemon::start(&dirs, &["replay", "--session", "secretjson"]);
    let replayed = get_secret(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        replayed,
        serde_json::json!({"username": "[REDACTED]", "password": "[REDACTED]",
            "engine": "[REDACTED]", "host": "[REDACTED]", "port": "[REDACTED]"})
    );
}

/// Keys no name points at: a coding agent's shell tool printed a `.env` file and the model's
/// next request carries it as message text; a login tool answered under a bare `token`.
/// Found by their shape (the issuers' prefixes), they never reach disk, and the same
/// request replays.
#[tokio::test(flavor = "multi_thread")]
async fn keys_in_text_found_by_their_shape_never_reach_disk_and_replay_matches() {
    let openai = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zSHAPE";
    let github = "ghp_16C7e42F292c6912E7710c838347Ae1SHAPE";
    let stripe = "sk_live_51HqLyjWDarjtT1zdp7dcSHAPE";
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.U0hBUEUtc2lnbmF0dXJl";
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "Why does the deploy fail?"},
            {"role": "tool", "tool_call_id": "call_1",
             "content": format!("$ cat .env\nOPENAI_API_KEY={openai}\nGITHUB_TOKEN={github}\nSTRIPE_KEY={stripe}\n")},
            {"role": "tool", "tool_call_id": "call_2", "content": format!("{{\"token\": \"{jwt}\"}}")},
        ],
        // A logprob's `token` and a model's name are kept.
        "logprobs": [{"token": "Hello", "logprob": -0.1}],
    });
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let send = |via: reqwest::Client| {
        let url = up.url("/echo");
        let body = body.clone();
        async move {
            let r = via.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let d = record(&dirs, &up, "shapes", &[]);
    let (status, live) = send(client(&d, &dirs)).await;
    assert_eq!(status, 200, "{live}");
    for k in [openai, github, stripe, jwt] {
        assert!(live.contains(k), "{k} did not reach the upstream");
    }
    let events = assert_nowhere(&dirs, d, "shapes", &[openai, github, stripe, jwt]);
    let stored = &events[0]["request"]["body"]["json"];
    assert_eq!(
        stored["messages"][1]["content"],
        "$ cat .env\nOPENAI_API_KEY=[REDACTED]\nGITHUB_TOKEN=[REDACTED]\nSTRIPE_KEY=[REDACTED]\n"
    );
    assert_eq!(
        stored["messages"][2]["content"],
        r#"{"token": "[REDACTED]"}"#
    );
    assert_eq!(stored["logprobs"][0]["token"], "Hello");
    assert_eq!(stored["model"], "gpt-4o-mini");

    let r = Daemon::start(&dirs, &["replay", "--session", "shapes"]);
    let (status, replayed) = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((status, code), (200, 0), "{replayed}\n{stderr}");
    let replayed: Value = serde_json::from_str(&replayed).unwrap();
    assert_eq!(
        replayed["body"]["messages"][2]["content"],
        r#"{"token": "[REDACTED]"}"#
    );
}

/// A session remembers what its exchanges revealed. A tool's answer names a password
/// (Secrets Manager's), and the agent's next request to the model carries it as text no
/// name points at; a bearer token sent to one endpoint turns up in another request's
/// body; a key travels in a header no name marks. None reaches disk, and the replayed run,
/// which gets `[REDACTED]` for the password and echoes it, matches every request.
#[tokio::test(flavor = "multi_thread")]
async fn what_a_session_revealed_is_hunted_in_its_later_exchanges_and_replay_matches() {
    let token = "td-remember-Q8x3Zp4Lm9Vt2Wq";
    let header_key = "sk_live_51HqLyjWDarjtT1zdp7dcHDR";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let run = |via: reqwest::Client| {
        let (secret_url, echo_url) = (up.url("/secretsmanager"), up.url("/echo"));
        async move {
            let asked = via
                .post(secret_url)
                .header("authorization", format!("Bearer {token}"));
            let secret: Value = serde_json::from_str(&secret_string(asked).await).unwrap();
            let password = secret["password"].as_str().unwrap().to_string();
            // The tool's output, as the agent hands it to the model.
            let chat = serde_json::json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "user", "content": "Why can't the job reach the database?"},
                    {"role": "tool", "tool_call_id": "call_1",
                     "content": format!("$ psql \"postgres://admin:{password}@db.internal/app\"\npsql: error: connection refused\n(the vault token was {token})")},
                ],
            });
            let resp = via
                .post(echo_url.clone())
                .header("x-test", header_key)
                .json(&chat)
                .send()
                .await
                .unwrap();
            let chat = (resp.status().as_u16(), resp.text().await.unwrap());
            // The password again, in a query and a form, where the client percent-encodes
            // what it was served (at replay, `%5BREDACTED%5D`).
            let form = via
                .post(echo_url.clone())
                .query(&[("check", &password)])
                .form(&[("user", "admin"), ("password_hint", &password)])
                .send()
                .await
                .unwrap();
            let form = (form.status().as_u16(), form.text().await.unwrap());
            // And percent-encoded inside a JSON string (a callback URL), where no rule
            // reads the marker's encoding: matched by its redacted parts at replay.
            let hook = via
                .post(echo_url.clone())
                .json(
                    &serde_json::json!({"callback": reqwest::Url::parse_with_params(
                    "https://hooks.test/done",
                    [("pw", &password)],
                )
                .unwrap()
                .as_str()}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(hook.status(), 200, "the callback request");
            // The agent knew the password from elsewhere too (its environment): at replay
            // it sends it in clear where the recording holds `[REDACTED]`, a key replay
            // could not know (it never learns what answers revealed). (Under no name:
            // `PGPASSWORD=…` is an assignment redacted by its name, or by its look.)
            let env = via
                .post(echo_url)
                .json(&serde_json::json!({"messages": [{"role": "user",
                    "content": format!("run: psql -h db.internal, then type {DB_PASSWORD}")}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(env.status(), 200, "the request the agent knew");
            (password, chat, form)
        }
    };
    let d = record(&dirs, &up, "remember", &[]);
    let (password, (status, echoed), (form_status, form)) = run(client(&d, &dirs)).await;
    assert_eq!((password.as_str(), status), (DB_PASSWORD, 200), "{echoed}");
    assert!(echoed.contains(DB_PASSWORD) && echoed.contains(token) && echoed.contains(header_key));
    assert_eq!(form_status, 200, "{form}");
    assert!(form.contains(DB_PASSWORD), "{form}");
    let events = assert_nowhere(&dirs, d, "remember", &[DB_PASSWORD, token, header_key]);
    assert!(
        events[2]["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/echo?check=[REDACTED]"),
        "{}",
        events[2]["request"]["url"]
    );
    let content = events[1]["request"]["body"]["json"]["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    // The secret's host, redacted in the secret's answer, is not hunted later: the agent
    // may know it from its own configuration, and replay would then miss.
    assert_eq!(
        content,
        "$ psql \"postgres://admin:[REDACTED]@db.internal/app\"\npsql: error: connection refused\n(the vault token was [REDACTED])"
    );

    let r = Daemon::start(&dirs, &["replay", "--session", "remember"]);
    let (password, (status, echoed), (form_status, form)) = run(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!(password, "[REDACTED]");
    assert_eq!(
        (status, form_status, code),
        (200, 200, 0),
        "{echoed}\n{form}\n{stderr}"
    );
    assert!(echoed.contains("admin:[REDACTED]@db.internal"), "{echoed}");
    assert!(
        stderr.contains("served 5/5 events, 0 misses")
            && stderr.contains("2 matched by their redacted parts"),
        "{stderr}"
    );
}

/// The calls of the concurrent-learning tests: one quotes a token in its body (a tool's
/// output), the other authenticates with it.
#[derive(Clone, Copy)]
enum Race {
    Quote,
    Authenticate,
}

const RACE_TOKEN: &str = "q7Wm2Xp9Lk4Rt8Vn3Bc6";

/// Makes `calls` in order through daemon `d`; the answers' bodies.
/// The same race with the value in a large body: a model call whose 200 KB context
/// quotes the token under no name, still being answered when a concurrent tool call
/// names it. The body, kept whole (a JSON body to 16 MiB, any other to 1 MiB) and stored
/// with its event, is scrubbed of it too.
#[tokio::test(flavor = "multi_thread")]
async fn a_value_a_concurrent_call_reveals_is_scrubbed_from_a_large_body_still_running() {
    const TOKEN: &str = "UpLd-7f3Kq9ZxW2mNvB8rT4yH6jP";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let filler = "The deploy log goes on. ".repeat(8_000);
    let run = |via: reqwest::Client| {
        let (slow, echo) = (up.url("/slow?ms=600"), up.url("/echo"));
        let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "tool",
            "tool_call_id": "c1", "content": format!("{filler}\nref {TOKEN}\n")}]});
        async move {
            let first = {
                let via = via.clone();
                tokio::spawn(async move {
                    let r = via.post(slow).json(&chat).send().await.unwrap();
                    r.status().as_u16()
                })
            };
            let named = name_after_200_ms(&via, &echo, TOKEN).await;
            (first.await.unwrap(), named)
        }
    };
    let d = record(&dirs, &up, "late-large", &[]);
    assert_eq!(run(client(&d, &dirs)).await, (200, 200));
    let events = assert_nowhere(&dirs, d, "late-large", &[TOKEN]);
    let chat = events
        .iter()
        .find(|e| {
            e["request"]["url"]
                .as_str()
                .is_some_and(|u| u.contains("/slow"))
        })
        .expect("the model call is stored");
    let content = chat["request"]["body"]["json"]["messages"][0]["content"]
        .as_str()
        .expect("the 200 KB context, stored whole");
    assert!(
        content.len() > 150_000 && content.ends_with("\nref [REDACTED]\n"),
        "{}",
        &content[content.len().saturating_sub(40)..]
    );
    let r = Daemon::start(&dirs, &["replay", "--session", "late-large"]);
    let statuses = run(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((statuses, code), ((200, 200), 0), "{stderr}");
}

/// The call that names `token` (`{"upload_token": …}`), 200 ms after a concurrent call
/// that carries it under no name began.
async fn name_after_200_ms(via: &reqwest::Client, echo: &str, token: &str) -> u16 {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = via
        .post(echo)
        .json(&serde_json::json!({"upload_token": token}))
        .send()
        .await
        .unwrap();
    r.status().as_u16()
}

async fn race(d: &Daemon, dirs: &Dirs, up: &Upstream, calls: &[Race]) -> Vec<String> {
    let via = client(d, dirs);
    let mut answers = Vec::new();
    for call in calls {
        let req = via.post(up.url("/echo"));
        let req = match call {
            Race::Quote => req.json(&serde_json::json!({"messages": [{"role": "tool",
                "content": format!("env: SERVICE_TOKEN set, value {RACE_TOKEN}")}]})),
            Race::Authenticate => req
                .header("authorization", format!("Bearer {RACE_TOKEN}"))
                .json(&serde_json::json!({"q": "status"})),
        };
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        answers.push(r.text().await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_a_concurrent_call_revealed_replays_in_either_order() {
    // Two calls the agent makes at once: one authenticates with a bearer token, the
    // other's body quotes the token (a tool's output). Record read the quoting call
    // first and stored the token in it as it was (nothing had revealed it yet); replay
    // reads the authenticating call first, remembers the token, and reads the quoting
    // call with it redacted.
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "race", &[]);
    race(&d, &dirs, &up, &[Race::Quote, Race::Authenticate]).await;
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");

    let r = Daemon::start(&dirs, &["replay", "--session", "race"]);
    let answers = race(&r, &dirs, &up, &[Race::Authenticate, Race::Quote]).await;
    let (code, stderr) = r.stop();
    assert_eq!(code, 0, "{answers:?}\n{stderr}");
    assert!(answers[1].contains("SERVICE_TOKEN"), "{}", answers[1]);
    assert!(
        stderr.contains("served 2/2 events, 0 misses")
            && stderr.contains("1 matched by its redacted parts"),
        "{stderr}"
    );
}

/// The same, when the recording also holds the quoting call made after the token was
/// revealed (stored redacted): replay serves that one to the first quoting call, and the
/// second finds its key's events all served; the one recorded in clear is it.
#[tokio::test(flavor = "multi_thread")]
async fn a_value_a_concurrent_call_revealed_replays_when_its_redacted_twin_was_served() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "twins", &[]);
    race(
        &d,
        &dirs,
        &up,
        &[Race::Quote, Race::Authenticate, Race::Quote],
    )
    .await;
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");

    let r = Daemon::start(&dirs, &["replay", "--session", "twins"]);
    race(
        &r,
        &dirs,
        &up,
        &[Race::Authenticate, Race::Quote, Race::Quote],
    )
    .await;
    let (code, stderr) = r.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("served 3/3 events, 0 misses")
            && stderr.contains("1 matched by its redacted parts"),
        "{stderr}"
    );
}

/// Two calls at once, twice: one carries a token under no name (a query's `ref`, read
/// first, while the session knew nothing of it), the other sends it under its name while
/// the first waits on its upstream. The first is stored after the second revealed it:
/// its URL is scrubbed then, and the second round's, read knowing the token, is stored
/// alike. The calls replay in the same order: the first round's carrying call, its token
/// in clear, is matched by its redacted parts to the first of the two twins.
#[tokio::test(flavor = "multi_thread")]
async fn a_value_a_concurrent_call_reveals_is_scrubbed_from_a_call_still_running() {
    const TOKEN: &str = "UpLd-7f3Kq9ZxW2mNvB8rT4yH6jP";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let run = |via: reqwest::Client| {
        let (slow, echo) = (
            up.url(&format!("/slow?ms=600&ref={TOKEN}")),
            up.url("/echo"),
        );
        async move {
            let mut statuses = Vec::new();
            for _ in 0..2 {
                let first = {
                    let (via, slow) = (via.clone(), slow.clone());
                    tokio::spawn(
                        async move { via.get(slow).send().await.unwrap().status().as_u16() },
                    )
                };
                let named = name_after_200_ms(&via, &echo, TOKEN).await;
                statuses.push((first.await.unwrap(), named));
            }
            statuses
        }
    };
    let d = record(&dirs, &up, "late", &[]);
    assert_eq!(run(client(&d, &dirs)).await, [(200, 200); 2]);
    let events = assert_nowhere(&dirs, d, "late", &[TOKEN]);
    let slow: Vec<&str> = events
        .iter()
        .filter_map(|e| e["request"]["url"].as_str())
        .filter(|u| u.contains("/slow"))
        .collect();
    assert_eq!(slow.len(), 2, "{slow:?}");
    assert!(
        slow.iter()
            .all(|u| u.ends_with("/slow?ms=600&ref=[REDACTED]")),
        "{slow:?}"
    );
    let r = Daemon::start(&dirs, &["replay", "--session", "late"]);
    let statuses = run(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((statuses, code), (vec![(200, 200); 2], 0), "{stderr}");
    assert!(
        stderr.contains("served 4/4 events, 0 misses")
            && stderr.contains("1 matched by its redacted parts"),
        "{stderr}"
    );
}

/// A token an earlier request named, which the agent then writes into a URL
/// percent-encoded (a base64 value's `+` and `=`), in a query and in a path (whose
/// answer names it): stored redacted there too, and the calls replay.
#[tokio::test(flavor = "multi_thread")]
async fn a_revealed_token_carried_percent_encoded_in_a_url_never_reaches_disk() {
    let token = "WaLDs+Ov+wPJpY5fKdUH9jbckZdlCjmmekwMJdD=";
    let encoded = "WaLDs%2BOv%2BwPJpY5fKdUH9jbckZdlCjmmekwMJdD%3D";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let send = |via: reqwest::Client| {
        let (post, query, path) = (
            up.url("/echo"),
            up.url(&format!("/echo?t={encoded}")),
            up.url(&format!("/status/{encoded}")),
        );
        async move {
            vec![
                status(
                    via.post(post)
                        .json(&serde_json::json!({"reset_token": token})),
                )
                .await,
                status(via.post(query).json(&serde_json::json!({}))).await,
                // The fixture answers 400 naming the status code it could not read.
                status(via.get(path)).await,
            ]
        }
    };
    let d = record(&dirs, &up, "encoded", &[]);
    assert_eq!(send(client(&d, &dirs)).await, [200, 200, 400]);
    let events = assert_nowhere(&dirs, d, "encoded", &[token, encoded]);
    let url = events[1]["request"]["url"].as_str().unwrap();
    assert!(url.ends_with("/echo?t=[REDACTED]"), "{url}");
    let r = Daemon::start(&dirs, &["replay", "--session", "encoded"]);
    let statuses = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((statuses, code), (vec![200, 200, 400], 0), "{stderr}");
}

/// A token an MCP tool's text result quotes as JSON (`{"invite_token": …}` inside the
/// result's string), which the agent then passes in a model's tool-call arguments (JSON in
/// a string again) and in a URL: stored nowhere, and the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_named_field_in_json_inside_a_string_never_reaches_disk() {
    let token = "m_W5LbX5zSs-00q727SfbxmigLFxGOz8";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let send = |via: reqwest::Client| {
        let text = serde_json::json!({"invite_token": token, "email": "x@y.z"}).to_string();
        let (echo, accept) = (
            up.url("/echo"),
            up.url(&format!("/echo?invite_token={token}")),
        );
        async move {
            let mut answers = Vec::new();
            let tool_result = serde_json::json!({"jsonrpc": "2.0", "id": 1,
                "result": {"content": [{"type": "text", "text": text}]}});
            let r = via.post(&echo).json(&tool_result).send().await.unwrap();
            answers.push((r.status().as_u16(), r.text().await.unwrap()));
            let arguments = serde_json::json!({"invite_token": token}).to_string();
            let model_turn = serde_json::json!({"model": "gpt-x", "messages": [
                {"role": "tool", "tool_call_id": "c1", "content": text},
                {"role": "assistant", "tool_calls": [{"id": "c2", "type": "function",
                    "function": {"name": "accept_invite", "arguments": arguments}}]}]});
            let r = via.post(&echo).json(&model_turn).send().await.unwrap();
            answers.push((r.status().as_u16(), r.text().await.unwrap()));
            let r = via
                .post(&accept)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            answers.push((r.status().as_u16(), String::new()));
            answers
        }
    };
    let d = record(&dirs, &up, "inner", &[]);
    let recorded = send(client(&d, &dirs)).await;
    assert!(
        recorded.iter().all(|(status, _)| *status == 200),
        "{recorded:?}"
    );
    // The agent saw the token live; the store never did.
    assert!(recorded[0].1.contains(token));
    let events = assert_nowhere(&dirs, d, "inner", &[token]);
    let stored = events[1]["request"]["body"].to_string();
    assert!(
        stored.contains(r#"\"invite_token\":\"[REDACTED]\""#),
        "{stored}"
    );
    let r = Daemon::start(&dirs, &["replay", "--session", "inner"]);
    let replayed = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    let statuses = |a: &[(u16, String)]| a.iter().map(|(s, _)| *s).collect::<Vec<_>>();
    assert_eq!(
        (statuses(&replayed), code),
        (statuses(&recorded), 0),
        "{stderr}"
    );
}

/// Links an answer hands out, with credentials in their query or fragment (an invite's
/// `?invite_token=`, an OAuth redirect's `#access_token=`, a maps URL's `key` written
/// `\u0026key=` as Go's JSON writes it), and the agent following one: stored nowhere, and
/// the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn secret_parameters_of_urls_written_in_bodies_never_reach_disk() {
    let invite = "m_W5LbX5zSs-00q727SfbxmigLFxGOz8";
    let access = "ya3Zq8vN3kLp2Wm7Rt4Yx6BcD";
    let maps = "AIzaQw3rTy8uIo2pAs7dFg9hJk";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let send = |via: reqwest::Client| {
        let (echo, follow) = (
            up.url("/echo"),
            up.url(&format!("/echo?invite_token={invite}&lang=en")),
        );
        let links = serde_json::json!({
            "accept_url": format!("https://app.test/accept?invite_token={invite}&lang=en"),
            "callback": format!("https://app.test/cb#access_token={access}&expires_in=3600"),
            "note": format!("open https://maps.test/js?v=3&key={maps} to see it"),
        });
        // Go's encoding/json writes `&` as `\u0026`.
        let body = links.to_string().replace("&key=", "\\u0026key=");
        async move {
            let r = via
                .post(&echo)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let first = (r.status().as_u16(), r.text().await.unwrap());
            let r = via
                .post(&follow)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            (first, r.status().as_u16())
        }
    };
    let d = record(&dirs, &up, "links", &[]);
    let ((status, answer), followed) = send(client(&d, &dirs)).await;
    assert_eq!((status, followed), (200, 200));
    // The agent saw the links whole; the store never did.
    assert!(
        answer.contains(invite) && answer.contains(access),
        "{answer}"
    );
    let events = assert_nowhere(&dirs, d, "links", &[invite, access, maps]);
    let stored = events[0]["response"]["body"].to_string();
    assert!(
        stored.contains("accept?invite_token=[REDACTED]&lang=en"),
        "{stored}"
    );
    assert!(
        stored.contains("cb#access_token=[REDACTED]&expires_in=3600"),
        "{stored}"
    );
    let r = Daemon::start(&dirs, &["replay", "--session", "links"]);
    let ((status, replayed), followed) = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((status, followed, code), (200, 200, 0), "{stderr}");
    assert!(replayed.contains("invite_token=[REDACTED]"), "{replayed}");
}

/// A web agent's login: the page hands out an anti-forgery token in a meta tag and a
/// hidden input, the agent reads it from the page and posts it back in the form and in a
/// header. Stored nowhere; on replay the agent reads the page as stored and its post
/// matches.
#[tokio::test(flavor = "multi_thread")]
async fn a_pages_anti_forgery_token_never_reaches_disk() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let login = |via: reqwest::Client| {
        let (page, post) = (up.url("/login-page"), up.url("/echo"));
        async move {
            let html = via.get(page).send().await.unwrap().text().await.unwrap();
            let at = html.find("name=\"csrfmiddlewaretoken\" value=\"").unwrap() + 34;
            let token = html[at..].split('"').next().unwrap().to_string();
            let r = via
                .post(post)
                .header("x-csrftoken", &token)
                .form(&[("csrfmiddlewaretoken", token.as_str()), ("user", "ada")])
                .send()
                .await
                .unwrap();
            (token, r.status().as_u16())
        }
    };
    let d = record(&dirs, &up, "page", &[]);
    assert_eq!(login(client(&d, &dirs)).await, (PAGE_CSRF.to_string(), 200));
    let events = assert_nowhere(&dirs, d, "page", &[PAGE_CSRF]);
    let page = events[0]["response"]["body"].to_string();
    assert!(page.contains(r#"content=\"[REDACTED]\""#), "{page}");
    let r = Daemon::start(&dirs, &["replay", "--session", "page"]);
    let replayed = login(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!(
        (replayed, code),
        (("[REDACTED]".to_string(), 200), 0),
        "{stderr}"
    );
}

/// A coding agent's tool prints a `.env` file and the agent hands it to the model: the
/// assignments whose names say they hold secrets are stored redacted, and the run
/// replays.
#[tokio::test(flavor = "multi_thread")]
async fn a_printed_env_files_secrets_never_reach_disk() {
    let (db, webhook) = ("pg-Env-Secret-2231", "Wh5ecR3tEnvValue88");
    // Quoted, YAML, a header printed by `curl -v`, a link written by PHP's json_encode.
    let (quoted, yaml, bearer, linked, block) = (
        "quoted secret Qx7-881",
        "yAml-Secret-5521",
        "bEarer0Tok9en8Value7",
        "Ln6Kd5Js4Ha3Gf2Ds1",
        "bLock-Scalar-Secret-77",
    );
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let send = |via: reqwest::Client| {
        let echo = up.url("/echo");
        let printed = format!(
            "DEBUG=true\nDB_PASSWORD={db}\nexport STRIPE_WEBHOOK_SECRET={webhook}\nSMTP_PASSWORD=\"{quoted}\"\n"
        );
        let config = format!(
            "apiVersion: v1\nkind: Secret\nstringData:\n  db_password: {yaml} # prod\n  smtp_password: |\n    {block}\n---\n> GET /v1/me HTTP/1.1\n> Authorization: Bearer {bearer}\n"
        );
        let php = format!(r#"{{"link":"https:\/\/app.test\/cb?access_token={linked}&x=1"}}"#);
        async move {
            let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [
                {"role": "tool", "tool_call_id": "c1", "content": printed},
                {"role": "tool", "tool_call_id": "c2", "content": config}]});
            let r = via.post(&echo).json(&chat).send().await.unwrap();
            let first = r.status().as_u16();
            let r = via
                .post(&echo)
                .header("content-type", "application/json")
                .body(php)
                .send()
                .await
                .unwrap();
            (first, r.status().as_u16())
        }
    };
    let d = record(&dirs, &up, "env", &[]);
    assert_eq!(send(client(&d, &dirs)).await, (200, 200));
    let events = assert_nowhere(
        &dirs,
        d,
        "env",
        &[db, webhook, quoted, yaml, bearer, linked, block],
    );
    let messages = &events[0]["request"]["body"]["json"]["messages"];
    assert_eq!(
        messages[0]["content"],
        "DEBUG=true\nDB_PASSWORD=[REDACTED]\nexport STRIPE_WEBHOOK_SECRET=[REDACTED]\nSMTP_PASSWORD=\"[REDACTED]\"\n"
    );
    assert_eq!(
        messages[1]["content"],
        "apiVersion: v1\nkind: Secret\nstringData:\n  db_password: [REDACTED] # prod\n  smtp_password: |\n    [REDACTED]\n---\n> GET /v1/me HTTP/1.1\n> Authorization: [REDACTED]\n"
    );
    // Stored as the text it came as, escaped slashes and all.
    assert_eq!(
        events[1]["request"]["body"]["text"],
        r#"{"link":"https:\/\/app.test\/cb?access_token=[REDACTED]&x=1"}"#
    );
    replays_as_recorded(&dirs, "env", send, (200, 200)).await;
}

/// A `NAME: value` line whose start lies further back than the line scanner's tail keeps
/// (about 75 bytes): 64 spaces of indentation after a JSON string's `\n`, which the
/// scanner's tail used to cut between its `\` and its `n`, and a list's `- ` before them,
/// which used to leave the tail first; and a tool's text that begins indented or with a
/// list's marker (after the JSON string's opening quote) or indented by tabs (`\t`). Each body is sent whole (as `curl --data-binary`
/// sends a file), and each password (too short to look like a key, so that only the
/// line's reading redacts it) reached the store in clear before the forty-fifth
/// session's fixes. None reaches the store, the tape or the log now, and the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_line_indented_past_the_scanners_reach_never_reaches_disk() {
    let (escaped, listed, as_text, opened, tabbed) = (
        "s3cr3tValueA1",
        "s3cr3tValueB2",
        "s3cr3tValueC3",
        "s3cr3tValueD4",
        "s3cr3tValueE5",
    );
    let deep = " ".repeat(64);
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let send = |via: reqwest::Client| {
        let echo = up.url("/echo");
        let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [
            {"role": "tool", "tool_call_id": "c1",
             "content": format!("config:\n{deep}password: {escaped}\nend\n")},
            {"role": "tool", "tool_call_id": "c2", "content": format!("  password: {opened}\n")},
            {"role": "tool", "tool_call_id": "c3", "content": format!("- api_key: {listed}\n")},
            {"role": "tool", "tool_call_id": "c4", "content": format!("x\n\t\tdb_password = {tabbed}\n")}]});
        let list = format!("notes:\n- {deep}password: {listed}\nend\n");
        let json_as_text = serde_json::json!({
            "content": format!("config:\n{deep}password: {as_text}\nend\n")
        })
        .to_string();
        async move {
            let mut codes = Vec::new();
            let r = via.post(&echo).json(&chat).send().await.unwrap();
            codes.push(r.status().as_u16());
            for body in [list, json_as_text] {
                let r = via
                    .post(&echo)
                    .header("content-type", "text/plain")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                codes.push(r.status().as_u16());
            }
            codes
        }
    };
    let d = record(&dirs, &up, "deep", &[]);
    assert_eq!(send(client(&d, &dirs)).await, [200, 200, 200]);
    let events = assert_nowhere(
        &dirs,
        d,
        "deep",
        &[escaped, listed, as_text, opened, tabbed],
    );
    assert_eq!(
        events[0]["request"]["body"]["json"]["messages"][0]["content"],
        format!("config:\n{deep}password: [REDACTED]\nend\n")
    );
    assert_eq!(
        events[1]["request"]["body"]["text"],
        format!("notes:\n- {deep}password: [REDACTED]\nend\n")
    );
    let r = Daemon::start(&dirs, &["replay", "--session", "deep"]);
    let codes = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((codes, code), (vec![200, 200, 200], 0), "{stderr}");
}

/// Passwords too short to look like keys, where a coding agent's traffic carries them:
/// a database URL in a `.env` file a tool printed and in a JSON config, a call's
/// keyword argument and a printed Python dict in a tool's text, JSON two strings down
/// (a tool's JSON text quoting a tool call's arguments), an array under a credential's
/// name, an HTTP tool's `x-api-key` header in a model's tool-call arguments, an
/// environment variable set for one command and a cookie in `curl -i`'s output. Each
/// reached the store in clear before the forty-sixth session. None reaches the store,
/// the tape, the export or the log now; the user and host of the URL stay; the run
/// replays.
#[tokio::test(flavor = "multi_thread")]
async fn passwords_in_urls_code_and_nested_json_never_reach_disk() {
    let (dsn, config, kwarg, dict, nested, array, header, glued, cookie) = (
        "dsnPw0rdA1",
        "cfgPw0rdB2",
        "kwPw0rdC3",
        "dictPw0rdD4",
        "nestPw0rdE5",
        "arrPw0rdF6",
        "hdrPw0rdG7",
        "gluPw0rdH8",
        "ckPw0rdJ9",
    );
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let send = |via: reqwest::Client| {
        let echo = up.url("/echo");
        let arguments = serde_json::json!({"password": nested}).to_string();
        let quoted = serde_json::json!({"tool": "login", "arguments": arguments}).to_string();
        let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [
            {"role": "tool", "tool_call_id": "c1",
             "content": format!("$ cat .env\nDATABASE_URL=postgres://app:{dsn}@db:5432/app\n\
                                 $ PGPASSWORD={glued} psql -h db\n\
                                 $ curl -si https://x\n< Set-Cookie: sid={cookie}; Path=/\n")},
            {"role": "tool", "tool_call_id": "c2",
             "content": format!("conn = psycopg2.connect(host=\"db\", password=\"{kwarg}\")\n\
                                 settings: {{'NAME': 'app', 'PASSWORD': '{dict}'}}")},
            {"role": "tool", "tool_call_id": "c3", "content": quoted},
            {"role": "assistant", "tool_calls": [{"id": "c4", "type": "function",
             "function": {"name": "http_get", "arguments": serde_json::json!({
                 "url": "https://api.example.test/v1", "headers": {"x-api-key": header}
             }).to_string()}}]}]});
        let config = serde_json::json!({
            "redis_url": format!("redis://:{config}@cache:6379/0"),
            "smtp_password": [array],
        });
        async move {
            let mut codes = Vec::new();
            for body in [chat, config] {
                let r = via.post(&echo).json(&body).send().await.unwrap();
                codes.push(r.status().as_u16());
            }
            codes
        }
    };
    let d = record(&dirs, &up, "code", &[]);
    assert_eq!(send(client(&d, &dirs)).await, [200, 200]);
    let events = assert_nowhere(
        &dirs,
        d,
        "code",
        &[
            dsn, config, kwarg, dict, nested, array, header, glued, cookie,
        ],
    );
    assert_eq!(
        events[0]["request"]["body"]["json"]["messages"][0]["content"],
        "$ cat .env\nDATABASE_URL=postgres://app:[REDACTED]@db:5432/app\n\
         $ PGPASSWORD=[REDACTED] psql -h db\n$ curl -si https://x\n\
         < Set-Cookie: [REDACTED]; Path=/\n"
    );
    assert_eq!(
        events[1]["request"]["body"]["json"]["redis_url"],
        "redis://:[REDACTED]@cache:6379/0"
    );
    let r = Daemon::start(&dirs, &["replay", "--session", "code"]);
    let codes = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((codes, code), (vec![200, 200], 0), "{stderr}");
}

/// A coding agent's shell commands and the configuration files its tools print, with
/// passwords too short to look like keys: a flag and its value (`mysql --password …`,
/// `mysqldump -p…`, `redis-cli -a …`), `curl -u user:…`, a header as a single-quoted word, Maven's `<password>` and
/// Hibernate's `<property name="…password">`. In a tool call's arguments and in a tool's
/// result, echoed back in a JSON answer: none reaches the store, the tape or the log;
/// help text stays; the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn passwords_in_shell_commands_and_config_files_never_reach_disk() {
    let (flag, user, header, maven, property, glued, short) = (
        "flgPw0rdK1",
        "usrPw0rdL2",
        "hdrPw0rdM3",
        "mvnPw0rdN4",
        "hibPw0rdP5",
        "gluPw0rdQ6",
        "shoPw0rdR7",
    );
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let command = format!(
        "mysql -u root --password {flag} -e 'select 1' && \
         curl -u bob:{user} -H 'X-Api-Key: {header}' https://api.example.test/v1 && \
         mysqldump -uroot -p{glued} app > app.sql; redis-cli -h cache -a {short} ping"
    );
    let result = format!(
        "$ cat ~/.m2/settings.xml\n<server><id>nexus</id><username>ci</username>\
         <password>{maven}</password></server>\n$ grep password hibernate.cfg.xml\n\
         <property name=\"hibernate.connection.password\">{property}</property>\n\
         $ mysql --help | grep password\n  -p, --password[=name] Password to use.\n\
         Use the --password option, or --password TEXT."
    );
    let send = |via: reqwest::Client| {
        let echo = up.url("/echo");
        let chat = tool_call_chat("bash", serde_json::json!({"command": command}), &result);
        post_chat(via, echo, chat)
    };
    let d = record(&dirs, &up, "shell", &[]);
    assert_eq!(send(client(&d, &dirs)).await, 200);
    let events = assert_nowhere(
        &dirs,
        d,
        "shell",
        &[flag, user, header, maven, property, glued, short],
    );
    let (arguments, content) = stored_tool_call(&events);
    assert_eq!(
        arguments["command"],
        "mysql -u root --password [REDACTED] -e 'select 1' && \
         curl -u bob:[REDACTED] -H 'X-Api-Key: [REDACTED]' https://api.example.test/v1 && \
         mysqldump -uroot -p[REDACTED] app > app.sql; redis-cli -h cache -a [REDACTED] ping"
    );
    assert_eq!(
        content,
        "$ cat ~/.m2/settings.xml\n<server><id>nexus</id><username>ci</username>\
         <password>[REDACTED]</password></server>\n$ grep password hibernate.cfg.xml\n\
         <property name=\"hibernate.connection.password\">[REDACTED]</property>\n\
         $ mysql --help | grep password\n  -p, --password[=name] Password to use.\n\
         Use the --password option, or --password TEXT."
    );
    replays_as_recorded(&dirs, "shell", send, 200).await;
}

/// Credentials code passes as a quoted name's argument, as a coding agent writes and
/// reads them: a header as a tuple, a flag in an argument list, a property set by name,
/// a user's password for basic authentication; a variable named for a password's `PWD`
/// (`MYSQL_PWD`, where the shell's `OLDPWD` is a directory); a container's environment
/// as `kubectl … -o json` prints it (`{"name": "DB_PASSWORD", "value": …}`); a PHP
/// array's `'password' => …` (its validation rules stay). Sent in a tool call's arguments and a
/// tool's result, echoed back in the answer: none reaches the store, the tape or the
/// log, a label or a schema's list of fields stays, and the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_passed_as_a_quoted_names_argument_never_reach_disk() {
    let (header, argv, property, basic, pwd, env) = (
        "hdrPair0A1",
        "argPair0B2",
        "prpPair0C3",
        "basPair0D4",
        "envPwd0E5",
        "k8sEnv0F6",
    );
    let php = "phpArr0G7";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let code = format!(
        "import requests, subprocess\n\
         headers = [(\"Authorization\", \"Bearer {header}\")]\n\
         subprocess.run([\"mysql\", \"-u\", \"root\", \"--password\", \"{argv}\"])\n\
         requests.get(url, headers=dict(headers), auth=(\"bob\", \"{basic}\"))\n\
         fields = [(\"password\", \"Password\")]\n"
    );
    let result = format!(
        "$ grep -n password src/Db.java\n12: props.setProperty(\"db.password\", \"{property}\");\n\
         $ jq .required schema.json\n[\"password\", \"address2\"]\n\
         $ env | grep PWD\nMYSQL_PWD={pwd}\nOLDPWD=/home/ada\n\
         $ kubectl get deploy api -o json | jq -c '.spec.template.spec.containers[0].env'\n\
         [{{\"name\":\"DB_PASSWORD\",\"value\":\"{env}\"}},{{\"name\":\"LOG\",\"value\":\"debug\"}}]\n\
         $ sed -n 3,4p config/mail.php\n    'password' => '{php}',\n    \
         'rules' => ['password' => 'required|min:8'],"
    );
    let send = |via: reqwest::Client| {
        let echo = up.url("/echo");
        let chat = tool_call_chat(
            "write_file",
            serde_json::json!({"path": "a.py", "content": code}),
            &result,
        );
        post_chat(via, echo, chat)
    };
    let d = record(&dirs, &up, "pairs", &[]);
    assert_eq!(send(client(&d, &dirs)).await, 200);
    let events = assert_nowhere(
        &dirs,
        d,
        "pairs",
        &[header, argv, property, basic, pwd, env, php],
    );
    let (arguments, content) = stored_tool_call(&events);
    assert_eq!(
        arguments["content"],
        "import requests, subprocess\n\
         headers = [(\"Authorization\", \"[REDACTED]\")]\n\
         subprocess.run([\"mysql\", \"-u\", \"root\", \"--password\", \"[REDACTED]\"])\n\
         requests.get(url, headers=dict(headers), auth=(\"bob\", \"[REDACTED]\"))\n\
         fields = [(\"password\", \"Password\")]\n"
    );
    assert_eq!(
        content,
        "$ grep -n password src/Db.java\n12: props.setProperty(\"db.password\", \"[REDACTED]\");\n\
         $ jq .required schema.json\n[\"password\", \"address2\"]\n\
         $ env | grep PWD\nMYSQL_PWD=[REDACTED]\nOLDPWD=/home/ada\n\
         $ kubectl get deploy api -o json | jq -c '.spec.template.spec.containers[0].env'\n\
         [{\"name\":\"DB_PASSWORD\",\"value\":\"[REDACTED]\"},{\"name\":\"LOG\",\"value\":\"debug\"}]\n\
         $ sed -n 3,4p config/mail.php\n    'password' => '[REDACTED]',\n    \
         'rules' => ['password' => 'required|min:8'],"
    );
    replays_as_recorded(&dirs, "pairs", send, 200).await;
}

/// A password a sentence gives, as a browser agent's task and the pages it reads do:
/// `log in … with password …` in the user's message, the same password typed by the
/// agent's tool call (under no name: found because the message gave it), `Username:
/// alice, Password: …` and `The password is …` in a page's text the tool returned, all
/// echoed back in the answer. None reaches the store, the tape or the log; the
/// sentences' own words (`The password is required`) stay; the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_a_sentence_gives_never_reaches_disk() {
    let (task, page, reset) = ("Tr0ub4dor&3x", "Kettle#2026", "tmp-4711-Zq");
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let prompt = format!(
        "Log in to https://shop.example.com as alice@example.com with password {task} \
         and buy the cheapest kettle."
    );
    let page_text = format!(
        "Staging access. Username: alice, Password: {page}\n\
         Your temporary password is {reset} (it expires in 24 hours).\n\
         The password is required and case-sensitive."
    );
    let send = |via: reqwest::Client| {
        let echo = up.url("/echo");
        let mut chat = tool_call_chat(
            "type_text",
            serde_json::json!({"selector": "#password", "text": task}),
            &page_text,
        );
        chat["messages"]
            .as_array_mut()
            .unwrap()
            .insert(0, serde_json::json!({"role": "user", "content": prompt}));
        post_chat(via, echo, chat)
    };
    let d = record(&dirs, &up, "said", &[]);
    assert_eq!(send(client(&d, &dirs)).await, 200);
    let events = assert_nowhere(&dirs, d, "said", &[task, page, reset]);
    let messages = &events[0]["request"]["body"]["json"]["messages"];
    assert_eq!(
        messages[0]["content"],
        "Log in to https://shop.example.com as alice@example.com with password [REDACTED] \
         and buy the cheapest kettle."
    );
    let arguments = messages[1]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    let arguments: Value = serde_json::from_str(arguments).unwrap();
    assert_eq!(arguments["text"], "[REDACTED]");
    assert_eq!(arguments["selector"], "#password");
    assert_eq!(
        messages[2]["content"],
        "Staging access. Username: alice, Password: [REDACTED]\n\
         Your temporary password is [REDACTED] (it expires in 24 hours).\n\
         The password is required and case-sensitive."
    );
    replays_as_recorded(&dirs, "said", send, 200).await;
}

/// A password a command line gives before what names it, or by its place: piped to
/// `docker login --password-stdin` and `sudo -S` in a tool call's command, given to
/// `htpasswd -b`, given to `podman login --password-stdin` as a here-string, piped to
/// `chpasswd` in the tool's output, all echoed back in the
/// answer. None reaches the store, the tape or the log; a variable piped so (`echo
/// "$CR_PAT" | …`) and the user names stay; the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_piped_to_a_command_never_reaches_disk() {
    let (login, sudo, basic, chpasswd, here) =
        ("dockerPW7q", "sudoPW8r", "htPW9s!x", "chPW0t#y", "herePW5u");
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let command = format!(
        "echo '{login}' | docker login -u bob --password-stdin registry.test && \
         echo \"$CR_PAT\" | docker login ghcr.io -u bob --password-stdin && \
         echo {sudo} | sudo -S apt-get install -y nginx && \
         htpasswd -bc /etc/nginx/.htpasswd admin '{basic}' && \
         podman login -u bob --password-stdin quay.io <<< '{here}'"
    );
    let result = format!("$ echo 'root:{chpasswd}' | sudo chpasswd\n$ echo done\ndone");
    let send = |via: reqwest::Client| {
        let echo = up.url("/echo");
        let chat = tool_call_chat("bash", serde_json::json!({"command": command}), &result);
        post_chat(via, echo, chat)
    };
    let d = record(&dirs, &up, "piped", &[]);
    assert_eq!(send(client(&d, &dirs)).await, 200);
    let events = assert_nowhere(&dirs, d, "piped", &[login, sudo, basic, chpasswd, here]);
    let (arguments, content) = stored_tool_call(&events);
    assert_eq!(
        arguments["command"],
        "echo '[REDACTED]' | docker login -u bob --password-stdin registry.test && \
         echo \"$CR_PAT\" | docker login ghcr.io -u bob --password-stdin && \
         echo [REDACTED] | sudo -S apt-get install -y nginx && \
         htpasswd -bc /etc/nginx/.htpasswd admin '[REDACTED]' && \
         podman login -u bob --password-stdin quay.io <<< '[REDACTED]'"
    );
    assert_eq!(
        content,
        "$ echo 'root:[REDACTED]' | sudo chpasswd\n$ echo done\ndone"
    );
    replays_as_recorded(&dirs, "piped", send, 200).await;
}

/// Passwords in a table's column, as a coding agent reads them from its tools and
/// writes them in its files: a psql query's output and a spreadsheet's rows (Google
/// Sheets' `values`) in a tool's result, and a CSV of test accounts and a Markdown table
/// in the file a tool call writes. Sent in a chat request,
/// echoed back by the upstream in the JSON answer. None reaches the store, the tape or
/// the log; the tables' other cells, and a `NULL` under the name, stay; the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_in_a_tables_column_never_reaches_disk() {
    let (psql, csv, md, sheet) = ("pgPW1q!x", "csvPW2r#y", "mdPW3s", "shPW4t%u");
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let file = format!(
        "username,password,role\nalice,{csv},admin\n\n\
         | Account | Password |\n|---|---|\n| bob | `{md}` |\n"
    );
    let result = format!(
        " id | username |  password\n----+----------+-----------\n  1 | alice    | {psql}\n  \
         2 | carol    | NULL\n(2 rows)\n{{\"values\": [[\"Username\", \"Password\"], [\"dave\", \"{sheet}\"]]}}"
    );
    let send = |via: reqwest::Client| {
        let echo = up.url("/echo");
        let chat = tool_call_chat(
            "write_file",
            serde_json::json!({"path": "fixtures/accounts.md", "content": file}),
            &result,
        );
        post_chat(via, echo, chat)
    };
    let d = record(&dirs, &up, "tables", &[]);
    assert_eq!(send(client(&d, &dirs)).await, 200);
    let events = assert_nowhere(&dirs, d, "tables", &[psql, csv, md, sheet]);
    let (arguments, content) = stored_tool_call(&events);
    assert_eq!(
        arguments["content"],
        "username,password,role\nalice,[REDACTED],admin\n\n\
         | Account | Password |\n|---|---|\n| bob | `[REDACTED]` |\n"
    );
    assert_eq!(
        content,
        " id | username |  password\n----+----------+-----------\n  1 | alice    | [REDACTED]\n  \
         2 | carol    | NULL\n(2 rows)\n\
         {\"values\": [[\"Username\", \"Password\"], [\"dave\", \"[REDACTED]\"]]}"
    );
    replays_as_recorded(&dirs, "tables", send, 200).await;
}

/// Keys named in the middle of a line, as tools and models write them (`Your
/// invite_token is …`, Markdown's backticks, a printed Python dict, a command's
/// `--client-secret=…`): sent as plain text and inside a chat request, echoed back by the
/// upstream in a JSON answer. None reaches the store, the tape or the log; words that
/// are no key (`the password is required`) stay; the run replays.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_named_in_prose_never_reaches_disk() {
    let (invite, reset, dict, flag) = (
        "pM7vmlWl56valXkfRDgSoOim6zKoa1et",
        "Rs7tUv8wXy9zAb0cDe1fProse",
        "Dk4tUv8wXy9zAb0cDe1fDict",
        "Fl4gZq8vN3kLp2Wm7Rt4Yx6B",
    );
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let text = format!("Invite sent. Your invite_token is {invite}. The password is required.");
    let send = |via: reqwest::Client| {
        let (echo, text) = (up.url("/echo"), text.clone());
        let tool = format!(
            "The `reset_token` is `{reset}`.\ngot {{'reset_token': '{dict}', 'user': 'ada'}}\n\
             $ ./deploy --client-secret={flag} --region eu"
        );
        async move {
            let r = via
                .post(&echo)
                .header("content-type", "text/plain")
                .body(text)
                .send()
                .await
                .unwrap();
            let first = r.status().as_u16();
            let chat = serde_json::json!({"model": "gpt-4o-mini", "messages": [
                {"role": "tool", "tool_call_id": "c1", "content": tool}]});
            let r = via.post(&echo).json(&chat).send().await.unwrap();
            (first, r.status().as_u16())
        }
    };
    let d = record(&dirs, &up, "prose", &[]);
    assert_eq!(send(client(&d, &dirs)).await, (200, 200));
    let events = assert_nowhere(&dirs, d, "prose", &[invite, reset, dict, flag]);
    assert_eq!(
        events[0]["request"]["body"]["text"],
        "Invite sent. Your invite_token is [REDACTED]. The password is required."
    );
    assert_eq!(
        events[0]["response"]["body"]["json"]["body"],
        "Invite sent. Your invite_token is [REDACTED]. The password is required."
    );
    assert_eq!(
        events[1]["request"]["body"]["json"]["messages"][0]["content"],
        "The `reset_token` is `[REDACTED]`.\ngot {'reset_token': '[REDACTED]', 'user': 'ada'}\n\
         $ ./deploy --client-secret=[REDACTED] --region eu"
    );
    replays_as_recorded(&dirs, "prose", send, (200, 200)).await;
}

/// A token an answer revealed, sent back in a form too large to keep whole (2 MiB, stored
/// in segments and keyed by its stored bytes), once quoted in a note before the field that
/// names it. At replay the client was served `[REDACTED]` and percent-encodes it
/// (`%5BREDACTED%5D`): the forms match their recordings, as a small form's would.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_served_redacted_and_sent_back_in_a_large_form_replays() {
    let token = "Up7oadTok3n-Qz8Xw2Lm5Vt9Rb4Ns6";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let big = "x".repeat(2 << 20);
    let send = |via: reqwest::Client| {
        let (echo, upload, big) = (up.url("/echo"), up.url("/upload"), big.clone());
        async move {
            let r = via
                .post(&echo)
                .json(&serde_json::json!({"upload_token": token}))
                .send()
                .await
                .unwrap();
            let answer: Value = r.json().await.unwrap();
            let t = answer["body"]["upload_token"].as_str().unwrap().to_string();
            let mut answers = vec![t.clone()];
            for notes in [big.clone(), format!("use {t} {big}")] {
                let r = via
                    .post(&upload)
                    .form(&[("notes", notes.as_str()), ("upload_token", t.as_str())])
                    .send()
                    .await
                    .unwrap();
                answers.push(format!("{} {}", r.status(), r.text().await.unwrap()));
            }
            answers
        }
    };
    let d = record(&dirs, &up, "bigform", &[]);
    let recorded = send(client(&d, &dirs)).await;
    assert_eq!(recorded[0], token);
    assert!(recorded[1].starts_with("200 "), "{recorded:?}");
    assert_nowhere(&dirs, d, "bigform", &[token]);
    let r = Daemon::start(&dirs, &["replay", "--session", "bigform"]);
    let replayed = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!(replayed[0], "[REDACTED]");
    assert_eq!((&replayed[1..], code), (&recorded[1..], 0), "{stderr}");
}

/// A signed token longer than 512 bytes (a JWT with its claims runs to one or two KiB)
/// under a name ending in `token`, handed out in an answer, then sent in a query, a form
/// and a URL path: on disk nowhere, and the run replays. A run of the same alphabet past 4 KiB
/// is data, and stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_long_signed_token_never_reaches_disk_and_replays() {
    let token: String = format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.Sg9_Kx2-Pq7Lm4Rt8Zw3Ya",
        "eyJzdWIiOiJ1XzEyMyIsInNjb3BlIjoidXBsb2FkIn0".repeat(24)
    );
    assert!(token.len() > 1000);
    let data = "QmFzZTY0RGF0YQ".repeat(400);
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let send = |via: reqwest::Client| {
        let (echo, status) = (up.url("/echo"), up.url("/status/"));
        let (token, data) = (token.clone(), data.clone());
        async move {
            let r = via
                .post(&echo)
                .json(&serde_json::json!({"invite_token": token, "thumb_token": data}))
                .send()
                .await
                .unwrap();
            let answer: Value = r.json().await.unwrap();
            let t = answer["body"]["invite_token"].as_str().unwrap().to_string();
            let thumb = answer["body"]["thumb_token"].as_str().unwrap().to_string();
            let r = via
                .post(format!("{echo}?invite_token={t}"))
                .form(&[("invite_token", t.as_str())])
                .send()
                .await
                .unwrap();
            // And under no name, in a path: found by what the session remembers.
            let path = via.get(format!("{status}{t}")).send().await.unwrap();
            (
                t,
                thumb == data,
                r.status().as_u16(),
                path.status().as_u16(),
            )
        }
    };
    let d = record(&dirs, &up, "long-token", &[]);
    assert_eq!(
        send(client(&d, &dirs)).await,
        (token.clone(), true, 200, 400)
    );
    let events = assert_nowhere(&dirs, d, "long-token", &[&token]);
    assert_eq!(
        events[0]["response"]["body"]["json"]["body"]["invite_token"],
        "[REDACTED]"
    );
    assert_eq!(
        events[0]["response"]["body"]["json"]["body"]["thumb_token"],
        data.as_str()
    );
    let r = Daemon::start(&dirs, &["replay", "--session", "long-token"]);
    let replayed = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!(
        (replayed, code),
        (("[REDACTED]".into(), true, 200, 400), 0),
        "{stderr}"
    );
}

/// Records one `POST /echo` as `session` and exports it to a tape in a directory of its
/// own, outside the scratch directory the secret searches read.
async fn echo_tape(
    up: &Upstream,
    dirs: &Dirs,
    session: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = record(dirs, up, session, &[]);
    let resp = client(&d, dirs)
        .post(up.url("/echo"))
        .json(&serde_json::json!({"user": "ada", "q": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    d.stop();
    let outside = tempfile::tempdir().unwrap();
    let tape = outside.path().join(format!("{session}.jsonl"));
    let (code, _, err) = dirs.run(&["export", session, "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    (outside, tape)
}

/// A tape is a file people edit, and what someone writes into it by hand (a key pasted
/// into a header, a URL or a JSON field, an answer echoing it) never reaches the store:
/// import redacts each event as record would have, says which steps held secrets, and
/// the imported session still replays a live request carrying them.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_written_into_a_tape_by_hand_are_redacted_on_import() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let (_outside, tape) = echo_tape(&up, &dirs, "hand").await;

    let (header_key, url_key, pw) = (
        "sk-hand-HEADER-MUST-NEVER-BE-STORED-77",
        "hand-URL-KEY-MUST-NEVER-BE-STORED-77",
        "hand-PASSWORD-MUST-NEVER-BE-STORED-77",
    );
    let inline = |v: &Value| {
        let text = serde_json::to_vec(v).unwrap();
        serde_json::json!({"b3": blake3::hash(&text).to_hex().to_string(), "len": text.len(), "json": v})
    };
    let text = std::fs::read_to_string(&tape).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut ev: Value = serde_json::from_str(&lines[1]).unwrap();
    // The header's key and the body's password also in the URL, under names no rule
    // reads.
    let url = format!(
        "{}?api_key={url_key}&again={header_key}&ref={pw}",
        ev["request"]["url"].as_str().unwrap()
    );
    ev["request"]["url"] = url.clone().into();
    ev["request"]["headers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!([
            "authorization",
            format!("Bearer {header_key}")
        ]));
    let sent = serde_json::json!({"user": "ada", "q": "hi", "password": pw});
    ev["request"]["body"] = inline(&sent);
    ev["response"]["body"] =
        inline(&serde_json::json!({"you sent": format!("Bearer {header_key}")}));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    ev["response"]["broke"] =
        serde_json::json!({"ended": true, "tail": b64.encode(format!("JUNK {header_key}"))});
    lines[1] = ev.to_string();
    std::fs::write(&tape, lines.join("\n") + "\n").unwrap();

    let (code, _, err) = dirs.run(&["import", tape.to_str().unwrap(), "--session", "edited"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("step 1 held secrets in clear"), "{err}");
    for s in [header_key, url_key, pw] {
        let files = dirs.files_containing(s.as_bytes());
        assert!(files.is_empty(), "{s} reached the store: {files:?}");
    }
    let stored = export(&dirs, "edited");
    assert!(stored[0]["request"]["url"]
        .as_str()
        .unwrap()
        .ends_with("?api_key=[REDACTED]&again=[REDACTED]&ref=[REDACTED]"));
    assert_eq!(
        stored[0]["request"]["body"]["json"]["password"],
        "[REDACTED]"
    );
    let tail = b64
        .decode(stored[0]["response"]["broke"]["tail"].as_str().unwrap())
        .unwrap();
    assert_eq!(tail, b"JUNK [REDACTED]");

    // The live request, secrets and all, matches the imported event.
    let r = Daemon::start(&dirs, &["replay", "--session", "edited"]);
    let resp = client(&r, &dirs)
        .post(url)
        .bearer_auth(header_key)
        .json(&sent)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap();
    let (code, stderr) = r.stop();
    assert_eq!((status, code), (200, 0), "{stderr}");
    assert_eq!(answer["you sent"], "[REDACTED]");
}

/// A key with `/` and `+` in it (an AWS secret key, say) echoed in JSON as PHP and .NET
/// escape them never reaches disk: the echo was stored in clear.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_echoed_json_escaped_never_reaches_disk() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "escaped", &[]);
    let key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let resp = client(&d, &dirs)
        .get(up.url("/echo-auth-escaped"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let body = resp.text().await.unwrap();
    // The client got both escaped forms.
    assert!(body.contains(r"wJalrXUtnFEMI\/K7MDENG+bPx"), "{body}");
    assert!(body.contains(r"wJalrXUtnFEMI/K7MDENG\u002BbPx"), "{body}");
    let php = key.replace('/', r"\/");
    let dotnet = key.replace('+', r"\u002B");
    let events = assert_nowhere(&dirs, d, "escaped", &[key, &php, &dotnet]);
    assert_eq!(events[0]["response"]["body"]["json"]["php"], "[REDACTED]");
    assert_eq!(
        events[0]["response"]["body"]["json"]["dotnet"],
        "[REDACTED]"
    );
}

/// A key a model repeats token by token (a few characters an event, as every provider
/// streams) never reaches disk: no run of the stored bytes held it, so the scrub let
/// every piece through and the stored stream spelled it out.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_streamed_back_a_few_characters_an_event_never_reaches_disk() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "tokens", &[]);
    let contents = |body: &str| -> String {
        body.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|j| serde_json::from_str::<Value>(j).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    };
    let body = client(&d, &dirs)
        .get(up.url("/sse-echo-auth-tokens"))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The client got the stream as the upstream sent it.
    assert_eq!(contents(&body), format!("Echo: {BEARER}."));
    let events = assert_nowhere(&dirs, d, "tokens", &[BEARER]);
    let stored = events[0]["response"]["body"]["text"].as_str().unwrap();
    let text = contents(stored);
    assert!(
        text.starts_with("Echo: [REDACTED]") && text.ends_with("[REDACTED]."),
        "{text}"
    );
    for piece in ["BEARER", "NEVER", "STORED"] {
        assert!(
            !text.contains(piece),
            "{piece:?} is still in the stored stream: {text}"
        );
    }
    // Every event is still one a client parses.
    assert_eq!(
        stored.matches("data: {").count(),
        body.matches("data: {").count()
    );
}

/// The same from Gemini, whose stream without `alt=sse` is one JSON array an element a
/// chunk (served as `application/json`), and with it an event stream; the key also sent
/// as `?key=`.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_gemini_streams_back_in_array_elements_never_reaches_disk() {
    const KEY: &str = "AIzaSyGEMINI-KEY-MUST-NEVER-BE-STORED-77";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "gemini", &[]);
    let texts = |v: &Value| -> String {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|e| {
                e["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .expect("text")
                    .to_string()
            })
            .collect()
    };
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    let http = client(&d, &dirs);
    let array = http
        .post(up.url(path))
        .header("x-goog-api-key", KEY)
        .body(r#"{"contents":[{"parts":[{"text":"Repeat my key"}]}]}"#)
        .send()
        .await
        .unwrap();
    assert!(array.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let array: Value = serde_json::from_str(&array.text().await.unwrap()).unwrap();
    assert_eq!(texts(&array), format!("Echo: {KEY}."));
    let sse = http
        .post(up.url(&format!("{path}?alt=sse&key={KEY}")))
        .body(r#"{"contents":[{"parts":[{"text":"Repeat my key"}]}]}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse.contains("data: {"), "{sse}");
    let events = assert_nowhere(&dirs, d, "gemini", &[KEY, "GEMINI-KEY", "NEVER-BE"]);
    assert_eq!(events.len(), 2);
    // Stored as the text it came in (pretty-printed, CR LF between elements).
    let stored: Value =
        serde_json::from_str(events[0]["response"]["body"]["text"].as_str().unwrap()).unwrap();
    let text = texts(&stored);
    assert!(
        text.starts_with("Echo: [REDACTED]") && text.ends_with("[REDACTED]."),
        "{text}"
    );
    // Every element is still there for a client to parse.
    assert_eq!(
        stored.as_array().unwrap().len(),
        array.as_array().unwrap().len()
    );
    let stored = events[1]["response"]["body"]["text"].as_str().unwrap();
    assert_eq!(
        stored.matches("data: {").count(),
        sse.matches("data: {").count()
    );
    assert!(stored.contains("[REDACTED]"), "{stored}");
}

/// An SDK on an EC2 instance asks the instance metadata service for the machine's
/// credentials through the proxy (botocore does, over plain HTTP): the session token
/// IMDSv2 hands out and the credentials' `SecretAccessKey` and `Token` never reach disk,
/// and the answer stays JSON an SDK reads. Needs 169.254.169.254 on the loopback device
/// (added here when root may; the test says so and passes when it cannot).
#[tokio::test(flavor = "multi_thread")]
async fn cloud_metadata_credentials_an_sdk_fetches_through_the_proxy_never_reach_disk() {
    const IMDS_TOKEN: &str = "AQAEAImdsSessionToken-MUST-NEVER-BE-STORED==";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYIMDSSECRETKEY";
    const TOKEN: &str = "IQoJb3JpZ2luX2VjEMUST-NEVER-BE-STORED-SESSION";
    let ip = "169.254.169.254";
    let ip_addr = |verb: &str| {
        std::process::Command::new("ip")
            .args(["addr", verb, &format!("{ip}/32"), "dev", "lo"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    /// Takes the address off the loopback device again, when this test put it there.
    struct Added<F: Fn(&str) -> bool>(bool, F);
    impl<F: Fn(&str) -> bool> Drop for Added<F> {
        fn drop(&mut self) {
            if self.0 {
                (self.1)("del");
            }
        }
    }
    let added = Added(ip_addr("add"), ip_addr);
    let added_now = added.0;
    let Ok(listener) = std::net::TcpListener::bind((ip, 0)) else {
        eprintln!("skipped: cannot listen on {ip} (not on this machine, and adding it failed: {added_now})");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    // A metadata service: IMDSv2's token, then the role's credentials.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = if head.starts_with("PUT /latest/api/token") {
                IMDS_TOKEN.to_string()
            } else if head.to_ascii_lowercase().contains(&format!(
                "x-aws-ec2-metadata-token: {}",
                IMDS_TOKEN.to_ascii_lowercase()
            )) {
                serde_json::json!({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAEXAMPLEKEYID1234",
                    "SecretAccessKey": SECRET, "Token": TOKEN, "Expiration": "2026-12-04T23:00:00Z"}).to_string()
            } else {
                "unauthorized".to_string()
            };
            let ct = if body.starts_with('{') {
                "application/json"
            } else {
                "text/plain"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "imds", &[]);
    let base = format!("http://{ip}:{port}");
    let http = client(&d, &dirs);
    let token = http
        .put(format!("{base}/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(token, IMDS_TOKEN, "the SDK got the real token");
    let credentials = |base: String| {
        let req = http
            .get(format!(
                "{base}/latest/meta-data/iam/security-credentials/agent-role"
            ))
            .header("x-aws-ec2-metadata-token", &token);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let creds = credentials(base.clone()).await;
    assert_eq!(creds["SecretAccessKey"], SECRET, "and the real credentials");
    // The same service by its IPv4-mapped IPv6 address (the resolver reads both).
    let mapped = credentials(format!("http://[::ffff:{ip}]:{port}")).await;
    assert_eq!(mapped["Token"], TOKEN);
    let events = assert_nowhere(&dirs, d, "imds", &[IMDS_TOKEN, SECRET, TOKEN]);
    assert_eq!(events[2]["response"]["body"]["json"]["Token"], "[REDACTED]");
    assert_eq!(events[0]["response"]["body"]["text"], "[REDACTED]");
    let stored = &events[1]["response"]["body"]["json"];
    assert_eq!(stored["AccessKeyId"], "ASIAEXAMPLEKEYID1234", "{stored}");
    assert_eq!(stored["SecretAccessKey"], "[REDACTED]");
    assert_eq!(stored["Token"], "[REDACTED]");
    assert_eq!(stored["Code"], "Success");
}

/// An SDK on EKS exchanges its pod's identity token for credentials with STS, through
/// the proxy: the token (form-encoded in the request) and the credentials (XML in the
/// answer) never reach disk, and the answer is still the XML an SDK reads.
#[tokio::test(flavor = "multi_thread")]
async fn sts_credentials_in_xml_and_the_web_identity_token_never_reach_disk() {
    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.WEB-IDENTITY-MUST-NEVER";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "sts", &[]);
    let answer = client(&d, &dirs)
        .post(up.url("/sts"))
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(format!(
            "Action=AssumeRoleWithWebIdentity&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fa&WebIdentityToken={JWT}&Version=2011-06-15"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answer, support::upstream::STS_ANSWER);
    let events = assert_nowhere(
        &dirs,
        d,
        "sts",
        &[JWT, "fixture-STS-SECRET", "fixture-STS-SESSION-TOKEN"],
    );
    let stored = events[0]["response"]["body"]["text"].as_str().unwrap();
    assert!(
        stored.contains("<SecretAccessKey>[REDACTED]</SecretAccessKey>"),
        "{stored}"
    );
    assert!(
        stored.contains("<SessionToken>[REDACTED]</SessionToken>"),
        "{stored}"
    );
    assert!(stored.contains("<AccessKeyId>ASIAFIXTUREKEYID0001</AccessKeyId>"));
}

/// A SOAP-style tool call carries an invitation's token in an XML attribute: the request
/// stores it redacted, the echoed answer (the XML quoted in JSON) is scrubbed of it, and
/// the session replays.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_named_xml_attribute_never_reaches_disk() {
    const TOKEN: &str = "Inv9Kx2Pq7Lm4Rt8Zw3YxAttr";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let xml = format!(
        r#"<Accept><Invite invite_token="{TOKEN}" id="inv_1" csrf_token="pending"/></Accept>"#
    );
    let send = |via: reqwest::Client| {
        let (echo, xml) = (up.url("/echo"), xml.clone());
        async move {
            let r = via
                .post(echo)
                .header("content-type", "application/xml")
                .body(xml)
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    let d = record(&dirs, &up, "xmlattr", &[]);
    assert_eq!(send(client(&d, &dirs)).await, 200);
    let events = assert_nowhere(&dirs, d, "xmlattr", &[TOKEN]);
    assert_eq!(
        events[0]["request"]["body"]["text"],
        r#"<Accept><Invite invite_token="[REDACTED]" id="inv_1" csrf_token="pending"/></Accept>"#
    );
    replays_as_recorded(&dirs, "xmlattr", send, 200).await;
}

/// Every message of an Amazon event stream, its checksums checked: (event type,
/// payload).
fn eventstream_messages(mut b: &[u8]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let word = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let (total, hlen) = (word(0), word(4));
        assert_eq!(
            crc32fast::hash(&b[..8]) as usize,
            word(8),
            "prelude checksum"
        );
        assert_eq!(
            crc32fast::hash(&b[..total - 4]) as usize,
            word(total - 4),
            "message checksum"
        );
        // The fixture's headers are strings; `:event-type` comes first.
        let h = &b[12..12 + hlen];
        let name_len = h[0] as usize;
        let vlen = u16::from_be_bytes([h[2 + name_len], h[3 + name_len]]) as usize;
        let event = String::from_utf8(h[4 + name_len..4 + name_len + vlen].to_vec()).unwrap();
        let payload = serde_json::from_slice(&b[12 + hlen..total - 4]).unwrap();
        out.push((event, payload));
        b = &b[total..];
    }
    out
}

/// The same from Bedrock, whose streams are binary frames with a CRC each: a Bedrock API
/// key repeated in `converse-stream`'s deltas, and in `invoke-with-response-stream`'s
/// chunks, base64 in each payload, never reaches disk; and the stored streams still parse
/// when replayed (a secret replaced in a frame broke its length and checksum).
#[tokio::test(flavor = "multi_thread")]
async fn a_key_bedrock_streams_back_in_binary_frames_never_reaches_disk_and_replays() {
    use base64::Engine as _;
    const KEY: &str = "ABSKQmVkcm9ja0FQSUtleS1NVVNULU5FVkVSLUJFLVNUT1JFRA";
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "bedrock", &[]);
    let converse = "/model/anthropic.claude-3-haiku/converse-stream";
    let invoke = "/model/anthropic.claude-3-haiku/invoke-with-response-stream";
    let texts = |body: &[u8]| -> String {
        eventstream_messages(body)
            .iter()
            .filter_map(|(event, p)| match event.as_str() {
                "contentBlockDelta" => Some(p["delta"]["text"].as_str().unwrap().to_string()),
                "chunk" => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(p["bytes"].as_str().unwrap())
                        .unwrap();
                    let c: Value = serde_json::from_slice(&raw).unwrap();
                    Some(c["delta"]["text"].as_str().unwrap().to_string())
                }
                _ => None,
            })
            .collect()
    };
    let get = |via: reqwest::Client, path: &'static str| {
        let url = up.url(path);
        async move {
            let r = via
                .post(url)
                .bearer_auth(KEY)
                .body(r#"{"messages":[{"role":"user","content":[{"text":"Repeat my key"}]}]}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap()
        }
    };
    for path in [converse, invoke] {
        let live = get(client(&d, &dirs), path).await;
        assert_eq!(texts(&live), format!("Echo: {KEY}."), "{path}");
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&KEY[..24]);
    assert_nowhere(
        &dirs,
        d,
        "bedrock",
        &[KEY, &KEY[..24], &KEY[24..], &b64[..20]],
    );

    let r = Daemon::start(&dirs, &["replay", "--session", "bedrock"]);
    for path in [converse, invoke] {
        let replayed = get(client(&r, &dirs), path).await;
        let text = texts(&replayed);
        assert!(
            text.starts_with("Echo: [REDACTED]") && text.ends_with("[REDACTED]."),
            "{path}: {text}"
        );
        assert!(!text.contains("QmVk"), "{path}: {text}");
    }
    let (code, stderr) = r.stop();
    assert_eq!(code, 0, "{stderr}");
}

/// A large body written into a tape's body file by hand (stored as it is, a part at a
/// time) is refused when it holds a secret, before a byte of it is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_tape_body_file_holding_a_secret_is_refused_on_import() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let (outside, tape) = echo_tape(&up, &dirs, "files").await;

    let pw = "file-PASSWORD-MUST-NEVER-BE-STORED-55";
    let big = serde_json::to_vec(&serde_json::json!({"pad": "x".repeat(100_000), "password": pw}))
        .unwrap();
    let b3 = blake3::hash(&big).to_hex().to_string();
    std::fs::create_dir_all(outside.path().join("files.bodies")).unwrap();
    std::fs::write(outside.path().join("files.bodies").join(&b3), &big).unwrap();
    let text = std::fs::read_to_string(&tape).unwrap();
    let mut lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines[0]["tapedeck_tape"] = 3.into();
    lines[1]["request"]["body"] =
        serde_json::json!({"b3": b3, "len": big.len(), "file": format!("files.bodies/{b3}")});
    let out: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&tape, out.join("\n") + "\n").unwrap();

    let (code, _, err) = dirs.run(&["import", tape.to_str().unwrap(), "--session", "edited"]);
    assert_ne!(code, 0);
    assert!(err.contains("step 1: the body file"), "{err}");
    assert!(err.contains("holds secrets in clear"), "{err}");
    assert!(dirs.files_containing(pw.as_bytes()).is_empty());
}
