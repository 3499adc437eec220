//! Record, end to end: the real binary as a daemon, a real TLS upstream with its own CA,
//! and a real HTTP client going through the proxy and trusting tapedeck's CA.

use crate::support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::harness::{
    client, client_as, client_h1, direct_client, export, h1_tunnel, Daemon, Dirs,
};
use support::upstream::{RawTls, Upstream};

const SECRET: &str = "sk-live-THIS-MUST-NEVER-BE-STORED-4242";

fn record(dirs: &Dirs, up: &Upstream, session: &str, extra: &[&str]) -> Daemon {
    Daemon::record(dirs, up, session, extra)
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_through_the_proxy_equal_direct_ones_and_are_stored_as_events() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "equal", &[]);
    let via = client(&d, &dirs);
    let direct = direct_client(&up.ca_pem);

    for path in [
        "/json",
        "/status/500",
        "/gzip",
        "/weather?city=Paris",
        "/empty",
    ] {
        let a = direct.get(up.url(path)).send().await.unwrap();
        let b = via.get(up.url(path)).send().await.unwrap();
        assert_eq!(a.status(), b.status(), "{path}");
        assert_eq!(
            a.headers().get("content-encoding"),
            b.headers().get("content-encoding"),
            "{path}"
        );
        assert_eq!(a.bytes().await.unwrap(), b.bytes().await.unwrap(), "{path}");
    }
    let chat = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    });
    let a: Value = direct
        .post(up.url("/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = via
        .post(up.url("/v1/chat/completions"))
        .bearer_auth(SECRET)
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.version(),
        reqwest::Version::HTTP_2,
        "TLS to the client offers h2"
    );
    let b: Value = resp.json().await.unwrap();
    assert_eq!(a, b);

    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let events = export(&dirs, "equal");
    let steps: Vec<u64> = events.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 5, 6]);
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["tool", "tool", "tool", "tool", "tool", "llm"]);
    // The gzip body is stored decoded (readable) with its encoding kept.
    let gz = &events[2]["response"]["body"];
    assert_eq!(gz["encoding"], "gzip");
    assert!(
        gz.get("json").is_some(),
        "decoded gzip body is inline JSON: {gz}"
    );
    // An empty body is recorded as empty, not dropped.
    assert_eq!(events[4]["response"]["body"]["len"], 0);
    assert_eq!(events[4]["response"]["status"], 200);
    // The LLM call's request body is inline JSON and its response came from upstream h2.
    assert_eq!(events[5]["request"]["body"]["json"]["model"], "gpt-4o-mini");
    assert_eq!(events[5]["response"]["version"], "HTTP/2");
    assert!(events[5]["timing"]["ttfb_ns"].as_u64().unwrap() > 0);
    assert!(events[5]["timing"]["end_ns"].as_u64() >= events[5]["timing"]["start_ns"].as_u64());
    // Authorization was redacted before it was stored.
    let auth = events[5]["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "authorization")
        .unwrap();
    assert_eq!(auth[1], "[REDACTED]");
    assert!(
        dirs.files_containing(SECRET.as_bytes()).is_empty(),
        "the secret reached disk: {:?}",
        dirs.files_containing(SECRET.as_bytes())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_requests_share_a_key_and_different_ones_do_not() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "keys", &[]);
    let via = client(&d, &dirs);
    for body in [r#"{"a":1,"b":2}"#, r#"{"b":2,"a":1}"#, r#"{"a":1,"b":3}"#] {
        via.post(up.url("/echo"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    d.stop();
    let ev = export(&dirs, "keys");
    assert_eq!(
        ev[0]["key"], ev[1]["key"],
        "JSON key order does not change the key"
    );
    assert_ne!(ev[0]["key"], ev[2]["key"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sse_events_reach_the_client_as_the_upstream_sends_them() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "sse", &[]);
    let via = client(&d, &dirs);
    let start = Instant::now();
    let mut resp = via.get(up.url("/sse?n=4&gap_ms=400")).send().await.unwrap();
    let first = resp.chunk().await.unwrap().unwrap();
    let first_at = start.elapsed();
    assert!(
        String::from_utf8_lossy(&first).contains("\"i\":0"),
        "{first:?}"
    );
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    let total = start.elapsed();
    // The upstream waits 400 ms before each of its next three events: the first one must
    // arrive well before the end (connecting and the handshake, slow on a busy machine,
    // come before the first event and do not count against it).
    assert!(
        total >= Duration::from_millis(1200),
        "stream ended after {total:?}"
    );
    assert!(
        total - first_at >= Duration::from_millis(800),
        "first event after {first_at:?}, the end after {total:?}: held back"
    );
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));
    d.stop();
    let ev = export(&dirs, "sse");
    let chunks = ev[0]["response"]["chunks"]
        .as_array()
        .expect("SSE keeps its chunks");
    assert!(chunks.len() >= 5, "{chunks:?}");
    let offsets: Vec<f64> = chunks
        .iter()
        .map(|c| c["at_ms"].as_f64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        offsets[1] - offsets[0] >= 300.0,
        "offsets keep the gaps: {offsets:?}"
    );
    let sum: u64 = chunks.iter().map(|c| c["len"].as_u64().unwrap()).sum();
    assert_eq!(sum, ev[0]["response"]["body"]["len"].as_u64().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn five_megabyte_bodies_pass_both_ways() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "big", &[]);
    let via = client(&d, &dirs);
    let direct = direct_client(&up.ca_pem);
    for path in ["/big?bytes=5242880", "/big-chunked?bytes=5242880"] {
        let a = direct
            .get(up.url(path))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let b = via
            .get(up.url(path))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(b.len(), 5_242_880, "{path}");
        assert!(a == b, "{path}: bytes differ");
    }
    let upload: Vec<u8> = (0..5_242_880u32).map(|i| (i % 251) as u8).collect();
    let a: Value = direct
        .post(up.url("/upload"))
        .body(upload.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = via
        .post(up.url("/upload"))
        .body(upload)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a, b);
    d.stop();
    let ev = export(&dirs, "big");
    assert_eq!(ev[0]["response"]["body"]["len"], 5_242_880);
    assert_eq!(ev[2]["request"]["body"]["len"], 5_242_880);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_upstream_gives_502_and_an_error_event() {
    let dirs = Dirs::new();
    let up = Upstream::start(true).await;
    let d = record(&dirs, &up, "dead", &[]);
    let via = client(&d, &dirs);
    // Nothing listens on this port once the probe socket is closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let resp = via
        .get(format!("http://127.0.0.1:{port}/tool"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "refused", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("refused"));
    // The upstream closes without answering: also a 502, the proxy stays up.
    let resp = via.get(up.url("/close")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let ok = via.get(up.url("/json")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    d.stop();
    let ev = export(&dirs, "dead");
    assert_eq!(ev[0]["error"]["kind"], "refused");
    assert!(ev[0].get("response").is_none());
    assert_eq!(ev[1]["error"]["kind"], "reset", "{}", ev[1]["error"]);
    assert!(ev[2].get("error").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_session_names_and_malformed_requests_are_refused_while_others_are_served() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let (code, _, err) = dirs.run(&["record", "--session", "a/b", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid session name \"a/b\""), "{err}");
    // Limits past what the clock or the connection count can hold: refused at the start,
    // not a panic in every connection (a timeout meant as "never").
    for (flag, value) in [
        ("--idle-timeout", "10000000000000000000"),
        ("--header-timeout", "315360001"),
        ("--max-connections", "18446744073709551615"),
    ] {
        let (code, _, err) = dirs.run(&["record", flag, value, "--listen", "127.0.0.1:0"]);
        assert_eq!(code, 2, "{flag} {value}: {err}");
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag}"))
                && err.contains("is not in 0..="),
            "{err}"
        );
    }

    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(&dirs, &["record", "--upstream-ca", &ca]);
    // A proxy user name that is not a valid session name.
    let bad = client_as(&d, &dirs, "no/slashes", "");
    let resp = bad.get("http://127.0.0.1:9/x").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("invalid session name"));

    // A bad request line, oversized headers, and TLS garbage inside a CONNECT tunnel.
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.write_all(b"THIS IS NOT HTTP\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");

    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    let huge = format!(
        "GET http://x.test/ HTTP/1.1\r\nx-big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let _ = s.write_all(huge.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 431") || out.is_empty(), "{out:?}");

    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.write_all(b"CONNECT localhost:443 HTTP/1.1\r\nhost: localhost:443\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 128];
    let n = s.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    s.write_all(b"\x16\x03\x01\x00\x05garbagegarbage").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || rest[0] == 0x15,
        "answered with a TLS alert or a close"
    );

    // Everyone else is still served.
    let good = client(&d, &dirs);
    assert_eq!(
        good.get(up.url("/json")).send().await.unwrap().status(),
        200
    );
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("malformed request"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_user_name_picks_the_session_and_several_record_at_once() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(&dirs, &["record", "--upstream-ca", &ca]);
    // SESSION+AGENT names both; the password is a secret, never an agent name.
    let a = client_as(&d, &dirs, "agent-a+planner", "pw-not-an-agent-name");
    let b = client_as(&d, &dirs, "agent-b", "pw-not-an-agent-name");
    let (ra, rb) = tokio::join!(
        a.get(up.url("/weather?city=Paris")).send(),
        b.get(up.url("/weather?city=Paris&by=b")).send()
    );
    assert_eq!(ra.unwrap().status(), 200);
    assert_eq!(rb.unwrap().status(), 200);
    a.get(up.url("/json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    d.stop();
    let ea = export(&dirs, "agent-a");
    let eb = export(&dirs, "agent-b");
    assert_eq!(ea.len(), 2);
    assert_eq!(eb.len(), 1);
    assert_eq!(ea[0]["agent"], "planner");
    assert!(eb[0].get("agent").is_none_or(|a| a.is_null()), "{}", eb[0]);
    assert_eq!(
        dirs.files_containing(b"pw-not-an-agent-name"),
        Vec::<std::path::PathBuf>::new()
    );
    assert_eq!(
        ea.iter()
            .map(|e| e["step"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_completed_exchanges_loses_none_of_them() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "crash", &[]);
    let via = client(&d, &dirs);
    for i in 0..25 {
        let r = via
            .get(up.url(&format!("/weather?city=Paris&i={i}")))
            .send()
            .await
            .unwrap();
        r.bytes().await.unwrap();
    }
    // Group commit makes an exchange durable within 100 ms of completing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.kill9();
    let ev = export(&dirs, "crash");
    assert_eq!(ev.len(), 25);
    assert_eq!(ev[24]["step"], 25);
}

/// Large bodies live in the store's pack file: kill -9 while another answer streams
/// loses none of the bodies that completed, and replay serves each of them byte for byte
/// (the pack's bytes reach the kernel before the event that names them is written).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_large_bodies_completed_loses_none_of_their_bytes() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "bigcrash", &[]);
    let via = client(&d, &dirs);
    let lingering = via.clone();
    let linger_url = up.url("/sse-linger?ms=10000");
    let open =
        tokio::spawn(async move { lingering.get(linger_url).send().await.map(|r| r.status()) });
    let sizes = [3_000_000usize, 1_500_001, 300_000];
    let mut live = Vec::new();
    for n in sizes {
        let r = via
            .get(up.url(&format!("/big?bytes={n}")))
            .send()
            .await
            .unwrap();
        live.push(r.bytes().await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.kill9();
    let _ = open.await;
    let packs: Vec<_> = std::fs::read_dir(dirs.store.join("blobs").join("pack"))
        .unwrap()
        .collect();
    assert_eq!(packs.len(), 1, "one pack, not a file per segment");

    let (code, out, err) = dirs.run(&["fsck"]);
    assert_eq!(code, 0, "{out}{err}");
    let r = Daemon::start(
        &dirs,
        &["replay", "--session", "bigcrash", "--order", "any"],
    );
    let c = client(&r, &dirs);
    for (n, want) in sizes.iter().zip(&live) {
        let got = c
            .get(up.url(&format!("/big?bytes={n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert!(
            got.bytes().await.unwrap() == want,
            "{n} bytes, byte for byte"
        );
    }
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_exchange_in_flight_finish_and_stores_it() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "term", &[]);
    let via = client(&d, &dirs);
    let pid = d.pid();
    let slow = tokio::spawn(async move {
        via.get(up.url("/slow?ms=1200"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    support::harness::signal(pid, "TERM");
    let body = slow.await.unwrap();
    assert!(!body.is_empty());
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let ev = export(&dirs, "term");
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["response"]["status"], 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_tunnels_are_all_served_and_stored_despite_idle_connections() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "load", &[]);
    // Idle and half-sent connections must not starve anyone.
    let mut idle = Vec::new();
    for i in 0..100 {
        let mut s = std::net::TcpStream::connect(d.addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET http://x.test/ HTTP/1.1\r\nhost: x")
                .unwrap();
        }
        idle.push(s);
    }
    let via = client_h1(&d, &dirs);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let via = via.clone();
        let url = up.url(&format!("/weather?city=Paris&n={i}"));
        tasks.push(tokio::spawn(async move {
            let r = via.get(url).send().await?;
            let status = r.status();
            r.bytes().await?;
            Ok::<_, reqwest::Error>(status)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().map(|s| s == 200).unwrap_or(false) {
            ok += 1;
        }
    }
    assert_eq!(ok, 1000);
    assert!(up.connections() >= 1);
    drop(idle);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let ev = export(&dirs, "load");
    assert_eq!(ev.len(), 1000);
    let mut steps: Vec<u64> = ev.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    steps.dedup();
    assert_eq!(steps.len(), 1000);
}

/// A 204 that comes with a Content-Length (and bytes after it), as a careless server sends
/// one, reaches an HTTP/2 client as a 204, recorded and replayed: RFC 9110 forbids the
/// length, and passed on it had the stream reset (PROTOCOL_ERROR, as curl showed).
#[tokio::test(flavor = "multi_thread")]
async fn a_204_with_a_length_reaches_an_http2_client_recorded_and_replayed() {
    let raw = RawTls::start(b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\nhello").await;
    let port = raw.addr.port();
    let dirs = Dirs::new();
    let ca = raw.ca_path.to_str().unwrap().to_string();
    // curl (nghttp2) refuses a 204 with a length where the h2 crate lets it pass.
    let curl = |d: &Daemon| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .arg("--cacert")
            .arg(dirs.certs.join("ca.pem"))
            .args(["-x", &format!("http://{}", d.addr)])
            .arg(format!("https://localhost:{port}/gone"))
            .output()
            .expect("curl");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let d = Daemon::start(&dirs, &["record", "--session", "nc", "--upstream-ca", &ca]);
    assert_eq!(curl(&d), "2 204");
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let r = Daemon::start(&dirs, &["replay", "--session", "nc"]);
    assert_eq!(curl(&r), "2 204");
    r.stop();
}

/// An answer delimited by the connection's end, from a TLS server that closes without
/// `close_notify` (curl takes it whole directly), is whole through tapedeck, recorded
/// complete and replayed whole: it was cut, the client got an error and the recording a
/// reset.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_ended_by_a_close_without_close_notify_is_whole() {
    let raw = RawTls::start_abrupt(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nall of it, until the end",
    )
    .await;
    let url = format!("https://localhost:{}/eof", raw.addr.port());
    let dirs = Dirs::new();
    let ca = raw.ca_path.to_str().unwrap().to_string();
    let get = |d: &Daemon| {
        let c = client_h1(d, &dirs);
        let url = url.clone();
        async move {
            let resp = c.get(url).send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.text().await.map_err(|e| e.to_string()),
            )
        }
    };
    let d = Daemon::start(&dirs, &["record", "--session", "eof", "--upstream-ca", &ca]);
    let got = get(&d).await;
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert_eq!(
        got,
        (200, Ok("all of it, until the end".to_string())),
        "{stderr}"
    );
    let ev = export(&dirs, "eof");
    assert!(ev[0]["error"].is_null(), "{}", ev[0]);
    assert_eq!(ev[0]["response"]["complete"], true);
    let r = Daemon::start(&dirs, &["replay", "--session", "eof"]);
    assert_eq!(
        get(&r).await,
        (200, Ok("all of it, until the end".to_string()))
    );
    r.stop();
}

/// An upstream that does not answer within `--upstream-timeout` gets the client a 504
/// (not the 502 of a failed upstream), recorded as a timeout, and replayed the same.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_answers_too_late_is_a_504() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "late", &["--upstream-timeout", "1"]);
    let resp = client(&d, &dirs)
        .get(up.url("/slow?ms=3000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let text = resp.text().await.unwrap();
    assert!(text.contains(r#""code": "timeout""#), "{text}");
    d.stop();
    assert_eq!(export(&dirs, "late")[0]["error"]["kind"], "timeout");
    let r = Daemon::start(&dirs, &["replay", "--session", "late"]);
    let resp = client(&r, &dirs)
        .get(up.url("/slow?ms=3000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    r.stop();
}

/// A session whose last step is near the end of u64 (a hand-edited tape, imported) is
/// refused for recording, where its steps would have wrapped round to 0.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_whose_steps_are_used_up_is_refused_not_wrapped() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "edited", &[]);
    client(&d, &dirs).get(up.url("/json")).send().await.unwrap();
    d.stop();
    let tape = dirs.path("edited.jsonl");
    let (code, _, err) = dirs.run(&["export", "edited", "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&tape).unwrap();
    let edited: Vec<String> = text
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            if v.get("step").is_some() {
                v["step"] = Value::from(u64::MAX);
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&tape, edited.join("\n") + "\n").unwrap();
    let (code, _, err) = dirs.run(&["import", tape.to_str().unwrap(), "--session", "far"]);
    assert_eq!(code, 0, "{err}");
    let d = record(&dirs, &up, "far", &[]);
    let resp = client(&d, &dirs).get(up.url("/json")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let text = resp.text().await.unwrap();
    assert!(text.contains("past where its steps can go on"), "{text}");
    d.stop();
}

/// A client that sends less request body than its Content-Length and stops is told so
/// (400), and the event blames the client, not the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_the_client_cuts_short_is_the_clients_error() {
    let plain = Upstream::start(false).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &plain, "short", &[]);
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"a\":",
        plain.url("/echo")
    )
    .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("tapedeck_client_error"), "{out}");
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let ev = export(&dirs, "short");
    assert_eq!(ev[0]["error"]["kind"], "client_closed", "{}", ev[0]);
    assert!(
        ev[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the client's request body ended early"),
        "{}",
        ev[0]
    );
}

/// A body that does not decode as its Content-Encoding says goes through as it is, and
/// the log line says whose body it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_not_in_its_coding_is_stored_as_sent_named_and_matched() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "gz", &[]);
    let send = |c: reqwest::Client| {
        let url = up.url("/echo");
        async move {
            let resp = c
                .post(url)
                .header("content-encoding", "gzip")
                .body(&b"not gzip at all"[..])
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    };
    assert_eq!(send(client(&d, &dirs)).await, 200);
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(
        stderr.contains(&format!(
            "the request body to {}: the body is not gzip as its Content-Encoding says; stored as it came",
            up.url("/echo")
        )),
        "{stderr}"
    );
    let ev = export(&dirs, "gz");
    assert_eq!(
        ev[0]["request"]["body"]["text"], "not gzip at all",
        "{}",
        ev[0]
    );
    // Replay reads the live request the same way, so it matches.
    let r = Daemon::start(&dirs, &["replay", "--session", "gz"]);
    let status = send(client(&r, &dirs)).await;
    let (code, stderr) = r.stop();
    assert_eq!((status, code), (200, 0), "{stderr}");
}

/// An absolute-form request goes to the host its URL names with that host in its Host
/// header, whatever Host the client sent (RFC 9112, 3.2.2): the upstream, the recording
/// and a replay all see one host.
#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_form_request_carries_its_urls_host_upstream() {
    let plain = Upstream::start(false).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &plain, "hosts", &[]);
    let named = plain.base_url()["http://".len()..].to_string();
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET http://user:pw@{named}/echo-host HTTP/1.1\r\nhost: evil.example\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains(&format!("{{\"host\":\"{named}\"}}")), "{out}");
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let ev = export(&dirs, "hosts");
    let host = ev[0]["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| {
            h[0].as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("host"))
        })
        .map(|h| h[1].clone());
    assert_eq!(host, Some(Value::String(named)), "{}", ev[0]["request"]);
}

/// One HTTP/1.1 client connection of the tests (hyper's, so a test decides when it is
/// used and sees when it is closed).
type H1 = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// GET `uri` (origin form in a tunnel, absolute form to the proxy) naming `host` on
/// `conn`: the status once the whole body has come, or why it did not.
async fn h1_get(conn: &mut H1, host: &str, uri: &str) -> Result<u16, String> {
    use http_body_util::BodyExt;
    conn.ready().await.map_err(|e| format!("closed: {e}"))?;
    let req = hyper::Request::get(uri)
        .header(hyper::header::HOST, host)
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status)
}

/// A keep-alive connection waits for its next request as long as `--idle-timeout` says,
/// however short `--header-timeout` is: an agent that thinks (or runs a tool) for a minute
/// between two LLM calls reuses its connection, as it would talking to the API directly.
/// The header timeout bounds a request head once its first byte has come (slowloris is
/// tested in `security.rs`), and a connection that never sends one.
#[tokio::test(flavor = "multi_thread")]
async fn a_keep_alive_connection_outlives_the_header_timeout_between_requests() {
    let up = Upstream::start(true).await;
    let port = up.addr.port();
    let host = format!("localhost:{port}");
    let plain = Upstream::start(false).await;
    let plain_host = plain.base_url()["http://".len()..].to_string();
    let dirs = Dirs::new();
    let d = record(
        &dirs,
        &up,
        "thinking",
        &["--header-timeout", "1", "--idle-timeout", "30"],
    );
    let mut tunnel = h1_tunnel(&d, &dirs, "localhost", port).await;
    let tcp = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let (mut direct, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    assert_eq!(h1_get(&mut tunnel, &host, "/json?n=1").await, Ok(200));
    let plain_uri = |n: u32| plain.url(&format!("/json?n={n}"));
    assert_eq!(
        h1_get(&mut direct, &plain_host, &plain_uri(1)).await,
        Ok(200)
    );
    // Three header timeouts of quiet on both connections.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h1_get(&mut tunnel, &host, "/json?n=2").await,
        Ok(200),
        "the tunnel's keep-alive connection was closed while idle"
    );
    assert_eq!(
        h1_get(&mut direct, &plain_host, &plain_uri(2)).await,
        Ok(200),
        "the proxy's keep-alive connection was closed while idle"
    );
    // A connection that never sends a request head is still closed after the header
    // timeout, not held for the idle timeout.
    let mut silent = std::net::TcpStream::connect(d.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let read = silent.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "a silent connection closed by the proxy, not by the 20 s read timeout: {read:?}"
    );
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert_eq!(
        stderr.matches("no complete request head in time").count(),
        1,
        "only the silent connection is reported: {stderr}"
    );
    assert_eq!(export(&dirs, "thinking").len(), 4);
}

/// An HTTP/1.1 client connection keeps one upstream connection for all its exchanges, the
/// next client connection to the same host takes it over once the first has hung up, and
/// an upstream that drops its connection gets a new one at the next exchange; plain-HTTP
/// requests in a row share one too. The client side is one hyper connection each (a
/// pooling client may open a second connection when it likes, and that one would rightly
/// get an upstream connection of its own).
#[tokio::test(flavor = "multi_thread")]
async fn a_client_connection_keeps_one_upstream_connection_and_hands_it_on() {
    let up = Upstream::start(true).await;
    let port = up.addr.port();
    let host = format!("localhost:{port}");
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "kept", &[]);
    let mut first = h1_tunnel(&d, &dirs, "localhost", port).await;
    for i in 0..5 {
        let uri = format!("/weather?city=Paris&n={i}");
        assert_eq!(h1_get(&mut first, &host, &uri).await, Ok(200));
    }
    assert_eq!(
        up.connections(),
        1,
        "five exchanges of one client connection"
    );
    drop(first);
    // The proxy sees the tunnel's end as soon as the client closes it (loopback).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = h1_tunnel(&d, &dirs, "localhost", port).await;
    for i in 0..3 {
        let uri = format!("/json?n={i}");
        assert_eq!(h1_get(&mut second, &host, &uri).await, Ok(200));
    }
    assert_eq!(
        up.connections(),
        1,
        "the second client connection took it over"
    );
    // The upstream drops the connection: that exchange fails, the next one reconnects.
    assert_eq!(h1_get(&mut second, &host, "/close").await, Ok(502));
    assert_eq!(
        h1_get(&mut second, &host, "/json?after=close").await,
        Ok(200)
    );
    assert_eq!(up.connections(), 2);
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let ev = export(&dirs, "kept");
    assert_eq!(ev.len(), 10);
    let statuses: Vec<_> = ev
        .iter()
        .map(|e| e["response"]["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        9,
        "{statuses:?}"
    );

    // Plain HTTP: each request comes in absolute form on the proxy's own connection and
    // is handled on its own; its upstream connection is parked when it ends and taken by
    // the next request to the host.
    let plain = Upstream::start(false).await;
    let d = record(&dirs, &plain, "kept-plain", &[]);
    let tcp = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let (mut via, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let plain_host = plain.base_url()["http://".len()..].to_string();
    for i in 0..4 {
        let uri = plain.url(&format!("/json?n={i}"));
        assert_eq!(h1_get(&mut via, &plain_host, &uri).await, Ok(200));
    }
    assert_eq!(plain.connections(), 1, "four plain-HTTP exchanges in a row");
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    assert_eq!(export(&dirs, "kept-plain").len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn passthrough_hosts_are_tunnelled_untouched_and_not_recorded() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "pass", &["--passthrough", "local*"]);
    // Not intercepted: the client sees the upstream's own certificate.
    let proxy = reqwest::Proxy::all(d.proxy_url()).unwrap();
    let c = reqwest::Client::builder()
        .proxy(proxy)
        .add_root_certificate(reqwest::Certificate::from_pem(up.ca_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert_eq!(c.get(up.url("/json")).send().await.unwrap().status(), 200);
    d.stop();
    let (code, _, err) = dirs.run(&["export", "pass", "-o", "x.jsonl"]);
    assert_ne!(
        code, 0,
        "nothing was recorded, so there is no session: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_import_export_gives_the_same_tape() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "trip", &[]);
    let via = client(&d, &dirs);
    for path in [
        "/json",
        "/gzip",
        "/sse?n=2&gap_ms=10",
        "/empty",
        "/big?bytes=2000000",
        "/json",
    ] {
        via.get(up.url(path))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    via.post(up.url("/echo"))
        .bearer_auth(SECRET)
        .json(&serde_json::json!({"x": [1, 2]}))
        .send()
        .await
        .unwrap();
    d.stop();
    let first = dirs.path("first.jsonl");
    assert_eq!(
        dirs.run(&["export", "trip", "-o", first.to_str().unwrap()])
            .0,
        0
    );
    let other = dirs.path("other-store");
    let (code, _, err) = dirs.run(&[
        "import",
        first.to_str().unwrap(),
        "--store",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    {
        // As record keeps them: each event's small bodies inside its value, also the
        // JSON answered twice (the tape holds it once); none under its blake3.
        use tapedeck_store::Store;
        let store = tapedeck_store::SledStore::open_to_read(&other).unwrap();
        let (_, events) = support::harness::read_tape(&first);
        let mut inside = 0;
        for e in &events {
            let step = e["step"].as_u64().unwrap();
            let value = store.event_stored("trip", step).unwrap().unwrap();
            for side in ["request", "response"] {
                let b = &e[side]["body"];
                let (h, len) = (b["b3"].as_str().unwrap(), b["len"].as_u64().unwrap());
                if len > 64 << 10 {
                    assert!(!value.holds(h), "step {step}'s large {side} body");
                    continue;
                }
                assert!(
                    value.holds(h),
                    "step {step}'s {side} body is inside its event"
                );
                if len > 0 {
                    assert!(store.body_bytes(h).unwrap().is_none(), "step {step}");
                }
                inside += 1;
            }
        }
        assert_eq!(inside, 2 * events.len() - 1, "the 2 MB body alone is apart");
    }
    let (code, _, err) = dirs.run(&[
        "import",
        first.to_str().unwrap(),
        "--store",
        other.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--replace"), "{err}");
    // The same name in another directory: a tape names its body files by its own name.
    std::fs::create_dir(dirs.path("again")).unwrap();
    let second = dirs.path("again/first.jsonl");
    let (code, _, err) = dirs.run(&[
        "export",
        "trip",
        "-o",
        second.to_str().unwrap(),
        "--store",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (a, b) = (
        std::fs::read_to_string(&first).unwrap(),
        std::fs::read_to_string(&second).unwrap(),
    );
    assert_eq!(a, b);
    // The 2 MB body is a file beside each, the same bytes.
    let (_, events) = support::harness::read_tape(&first);
    let file = events
        .iter()
        .find_map(|e| e["response"]["body"]["file"].as_str())
        .expect("a body file");
    assert_eq!(
        std::fs::read(dirs.path(file)).unwrap(),
        std::fs::read(dirs.path("again").join(file)).unwrap()
    );
    assert!(dirs.files_containing(SECRET.as_bytes()).is_empty());
}

/// On an AMD CPU whose glibc would copy with `rep movsb`, tapedeck runs itself again with
/// glibc's tunable (src/memcpy.rs): its environment then says so. The command it runs gets
/// `GLIBC_TUNABLES` as tapedeck was given it (or none), on any CPU, and no word of the
/// tuning; `TAPEDECK_GLIBC_DEFAULTS=1` leaves tapedeck as started.
#[test]
fn the_command_gets_glibc_tunables_as_given_whether_or_not_tapedeck_tunes_its_copies() {
    let dirs = Dirs::new();
    let amd_fsrm = std::fs::File::open("/proc/cpuinfo")
        .is_ok_and(|f| tapedeck::memcpy::slow_rep_movsb(std::io::BufReader::new(f)));
    // What the command sees, then whether its parent (tapedeck) runs tuned.
    let script = "printf '%s|%s|' \"${GLIBC_TUNABLES-unset}\" \"${TAPEDECK_GLIBC_TUNABLES_WAS-none}\"; \
                  if tr '\\0' '\\n' < /proc/$PPID/environ | grep -q '^TAPEDECK_GLIBC_TUNABLES_WAS='; \
                  then echo tuned; else echo untuned; fi";
    // (tapedeck's environment, what the command sees, whether tapedeck runs tuned)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, bool);
    let cases: [Case; 4] = [
        (&[], "unset", amd_fsrm),
        (
            &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=5")],
            "glibc.malloc.tcache_count=5",
            amd_fsrm,
        ),
        (&[("TAPEDECK_GLIBC_DEFAULTS", "1")], "unset", false),
        // The user's own threshold is theirs to keep.
        (
            &[("GLIBC_TUNABLES", "glibc.cpu.x86_rep_movsb_threshold=4096")],
            "glibc.cpu.x86_rep_movsb_threshold=4096",
            false,
        ),
    ];
    for (env, sees, tuned) in cases {
        let (code, out, err) = dirs.run_with(&["record", "--", "sh", "-c", script], env);
        assert_eq!(code, 0, "{err}");
        let want = format!("{sees}|none|{}", if tuned { "tuned" } else { "untuned" });
        assert_eq!(
            out.trim(),
            want,
            "with {env:?} (AMD with FSRM: {amd_fsrm}); {err}"
        );
    }
    // Started through the dynamic loader, the executable is the loader: tapedeck runs as
    // started (run again, the loader would take `record` for the program to load).
    let loader = "/lib64/ld-linux-x86-64.so.2";
    if std::path::Path::new(loader).exists() {
        let (code, out, err) =
            dirs.run_under(&[loader], &["record", "--", "sh", "-c", script], &[]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), "unset|none|untuned", "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn record_around_a_command_sets_the_proxy_and_returns_its_exit_status() {
    let dirs = Dirs::new();
    let (code, out, err) = dirs.run(&[
        "record",
        "--",
        "sh",
        "-c",
        "echo $HTTPS_PROXY; echo $SSL_CERT_FILE; echo ${NO_PROXY:-unset}; exit 7",
    ]);
    assert_eq!(code, 7, "{err}");
    // It made no call through the proxy: nothing to replay, and the user is told why.
    assert!(
        err.contains("the command made no HTTP call through the proxy, so no session was stored"),
        "{err}"
    );
    // A client that came through the proxy but refused tapedeck's certificate is not
    // told it ignored the proxy: curl given only the system's roots.
    let (code, _, err2) = dirs.run(&[
        "record",
        "--",
        "curl",
        "-sS",
        "--cacert",
        "/etc/ssl/certs/ca-certificates.crt",
        "https://api.example.test/v1",
    ]);
    assert_ne!(code, 0, "{err2}");
    assert!(
        err2.contains("came through the proxy but ended 1 TLS connection before a request"),
        "{err2}"
    );
    assert!(!err2.contains("ignored HTTPS_PROXY"), "{err2}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("http://127.0.0.1:"), "{out}");
    let bundle = std::fs::read_to_string(lines[1]).unwrap();
    assert!(bundle.contains("tapedeck CA"));
    assert!(
        bundle.matches("BEGIN CERTIFICATE").count() > 1,
        "system roots are in the bundle too"
    );
    assert_eq!(lines[2], "unset");
    // A command that cannot be found, or run, exits as a shell would say.
    let (code, _, err) = dirs.run(&["record", "--", "no-such-command-tapedeck-test"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("cannot start"), "{err}");
    let not_executable = dirs.path("not-executable.sh");
    std::fs::write(&not_executable, "exit 0\n").unwrap();
    let (code, _, err) = dirs.run(&["record", "--", not_executable.to_str().unwrap()]);
    assert_eq!(code, 126, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_lists_what_was_recorded() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "listed", &[]);
    let r = client(&d, &dirs).get(up.url("/json")).send().await.unwrap();
    r.text().await.unwrap(); // stored before its last byte arrives
                             // While the daemon holds the store, read commands ask it.
    let (code, out, err) = dirs.run(&["sessions", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "listed");
    assert_eq!(v[0]["events"], 1);
    d.stop();
    let (code, out, _) = dirs.run(&["sessions"]);
    assert_eq!(code, 0);
    assert!(out.contains("listed"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chosen_headers_and_json_fields_are_redacted_before_storage_but_reach_the_upstream() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(
        &dirs,
        &up,
        "redact",
        &[
            "--redact-header",
            "X-Tenant-Token",
            "--redact-json-field",
            "password",
        ],
    );
    let via = client(&d, &dirs);
    let token = "tenant-token-SHOULD-NOT-BE-STORED-77";
    let password = "hunter2-SHOULD-NOT-BE-STORED-77";
    let echoed: Value = via
        .post(up.url("/echo"))
        .header("x-tenant-token", token)
        .json(&serde_json::json!({"user": "ada", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The upstream got the real value.
    assert_eq!(echoed["body"]["password"], password);
    d.stop();
    let ev = export(&dirs, "redact");
    let headers = ev[0]["request"]["headers"].as_array().unwrap();
    assert!(headers
        .iter()
        .any(|h| h[0] == "x-tenant-token" && h[1] == "[REDACTED]"));
    assert_eq!(ev[0]["request"]["body"]["json"]["password"], "[REDACTED]");
    assert_eq!(ev[0]["request"]["body"]["json"]["user"], "ada");
    // The echo in the response carried the password too: scrubbed there as well.
    assert!(
        dirs.files_containing(password.as_bytes()).is_empty(),
        "{:?}",
        dirs.files_containing(password.as_bytes())
    );
    assert!(dirs.files_containing(token.as_bytes()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_mid_stream_is_recorded_and_disturbs_no_one() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "hangup", &[]);
    let via = client(&d, &dirs);
    let mut sse = via.get(up.url("/sse?n=5&gap_ms=200")).send().await.unwrap();
    let first = sse.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(sse);
    // Others are served meanwhile.
    assert_eq!(via.get(up.url("/json")).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(
        stderr.contains("the client hung up before the response ended"),
        "{stderr}"
    );
    let ev = export(&dirs, "hangup");
    assert_eq!(ev.len(), 2);
    let cut = ev
        .iter()
        .find(|e| e["request"]["url"].as_str().unwrap().contains("/sse"))
        .unwrap();
    assert_eq!(cut["error"]["kind"], "client_closed");
    assert_eq!(cut["response"]["complete"], false);
    assert!(
        cut["response"]["body"]["len"].as_u64().unwrap() > 0,
        "what the client got is kept"
    );
}

/// A body followed by trailers (a chunked trailer section; gRPC's status in HTTP/2) is
/// recorded complete, its trailers stored redacted, and replayed with its trailers and
/// an end: the trailers frame is the body's last, and the recorder once waited for a
/// frame after it that never came, stored the exchange as the client hanging up, and
/// replay then held the answer open forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_with_trailers_is_recorded_whole_and_replayed_with_them() {
    const KEY: &str = "Bearer sk-trailer-ECHO-MUST-NEVER-BE-STORED-77";
    let up = Upstream::start(true).await;
    let port = up.addr.port();
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "trail", &[]);
    let (text, t) = get_with_trailers(&d, &dirs, port, KEY).await;
    assert_eq!(text, "part one\npart two\n");
    assert_eq!(t["x-checksum"], "sha256-abc123");
    assert_eq!(t["x-echoed"], KEY, "the client gets the real trailer");
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");

    let ev = export(&dirs, "trail");
    let resp = &ev[0]["response"];
    assert_eq!(resp["complete"], true, "{}", ev[0]);
    assert!(ev[0]["error"].is_null(), "{}", ev[0]);
    let stored: Vec<(String, String)> = serde_json::from_value(resp["trailers"].clone()).unwrap();
    assert!(
        stored.contains(&("x-checksum".into(), "sha256-abc123".into())),
        "{stored:?}"
    );
    assert!(
        stored.contains(&("grpc-status".into(), "0".into())),
        "{stored:?}"
    );
    assert!(
        dirs.files_containing(b"sk-trailer-ECHO").is_empty(),
        "the echoed key reached disk"
    );

    let r = Daemon::start(&dirs, &["replay", "--session", "trail"]);
    let (text, t) = get_with_trailers(&r, &dirs, port, KEY).await;
    let (code, stderr) = r.stop();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(text, "part one\npart two\n");
    assert_eq!(t["x-checksum"], "sha256-abc123");
    assert_eq!(t["grpc-status"], "0");
}

/// `/trailers`' body text and trailers, as a client that asks for trailers (`TE:
/// trailers`) gets them over one tunnel.
async fn get_with_trailers(
    d: &Daemon,
    dirs: &Dirs,
    port: u16,
    auth: &str,
) -> (String, hyper::HeaderMap) {
    use http_body_util::BodyExt;
    let mut conn = h1_tunnel(d, dirs, "localhost", port).await;
    let req = hyper::Request::get("/trailers")
        .header(hyper::header::HOST, format!("localhost:{port}"))
        .header("te", "trailers")
        .header("authorization", auth)
        .body(http_body_util::Empty::new())
        .unwrap();
    let mut body = conn.send_request(req).await.unwrap().into_body();
    let (mut text, mut trailers) = (Vec::new(), None);
    // A guard against the hang the test is about, not a measure of speed.
    let read = async {
        while let Some(frame) = body.frame().await {
            match frame.unwrap().into_data() {
                Ok(d) => text.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the body never ended");
    let t = trailers.expect("no trailers reached the client");
    (String::from_utf8(text).unwrap(), t)
}

/// What `-- CMD` leaves running when it exits (an agent started in the background by a
/// shell) is named and ended with the run: a request it sent after the proxy stopped
/// found nothing, and it outlived tapedeck with nothing said.
#[test]
fn processes_the_command_leaves_behind_are_named_and_ended_with_the_run() {
    let dirs = Dirs::new();
    let (code, out, err) = dirs.run(&[
        "record",
        "--session",
        "bg",
        "--",
        "sh",
        "-c",
        "sleep 300 > /dev/null 2>&1 & echo $!",
    ]);
    assert_eq!(code, 0, "{err}");
    let pid: i32 = out.trim().lines().last().unwrap().trim().parse().unwrap();
    assert!(
        err.contains("exited and left 1 process running") && err.contains(&pid.to_string()),
        "{err}"
    );
    // Gone, or a zombie on its way out (its new parent reaps it).
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    });
    assert!(!alive, "the background process still runs");
}

/// Sends `n` POSTs on `conn` as Python's `requests` does through a proxy: the head in one
/// write, the body in the next, Nagle's algorithm on. Each answer is read whole; what
/// comes back is each exchange's time and the bodies echoed.
async fn posts_head_then_body<S>(conn: &mut S, target: &str, host: &str, n: usize) -> Vec<Duration>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut times = Vec::new();
    for i in 0..n {
        let body = format!("{{\"i\":{i}}}");
        let head = format!(
            "POST {target} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let t = Instant::now();
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.flush().await.unwrap();
        conn.write_all(body.as_bytes()).await.unwrap();
        conn.flush().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let (head_len, len) = loop {
            let k = conn.read(&mut buf).await.unwrap();
            assert!(k > 0, "the proxy closed the connection after {i} POSTs");
            got.extend_from_slice(&buf[..k]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                assert!(text.starts_with("http/1.1 200"), "{text}");
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .expect("a content-length")
                    .trim()
                    .parse()
                    .unwrap();
                break (end + 4, len);
            }
        };
        while got.len() < head_len + len {
            let k = conn.read(&mut buf).await.unwrap();
            assert!(k > 0, "the answer to POST {i} was cut short");
            got.extend_from_slice(&buf[..k]);
        }
        times.push(t.elapsed());
        let answer: Value = serde_json::from_slice(&got[head_len..]).unwrap();
        assert_eq!(
            answer["body"]["i"], i,
            "POST {i} was answered with another's"
        );
    }
    times
}

/// The median of `times`, in milliseconds.
fn median_ms(times: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ms[ms.len() / 2]
}

/// A client that writes a request's head and body apart with Nagle's algorithm on holds
/// the body until the head is acknowledged, and Linux delays that acknowledgement by 40 ms
/// or more once a connection is interactive, while the proxy waiting for the body has
/// nothing to send. The proxy acknowledges at once when it waits for more of a request
/// (and only then: a request that came whole is acknowledged by its answer). Checked
/// through a TLS tunnel and on the proxy connection itself, recorded and replayed: were
/// the acknowledgement left to the delayed-ACK timer, every POST after the first few
/// would take at least 40 ms; through the proxy they take a few.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_sends_head_and_body_apart_never_waits_for_a_delayed_acknowledgement() {
    const N: usize = 30;
    const DELAYED_ACK_MS: f64 = 40.0;
    let up = Upstream::start(true).await;
    let plain = Upstream::start(false).await;
    let port = up.addr.port();
    let host = format!("localhost:{port}");
    let plain_host = plain.base_url()["http://".len()..].to_string();
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "nagle", &[]);
    let mut tunnel =
        support::harness::tls_tunnel(&d, &dirs, "localhost", port, &[b"http/1.1"]).await;
    let tunnelled = posts_head_then_body(&mut tunnel, "/echo", &host, N).await;
    let mut proxied = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let on_proxy = posts_head_then_body(&mut proxied, &plain.url("/echo"), &plain_host, N).await;
    drop((tunnel, proxied));
    let (code, _) = d.stop();
    assert_eq!(code, 0);
    let r = Daemon::start(&dirs, &["replay", "--session", "nagle"]);
    let mut tunnel =
        support::harness::tls_tunnel(&r, &dirs, "localhost", port, &[b"http/1.1"]).await;
    let replayed = posts_head_then_body(&mut tunnel, "/echo", &host, N).await;
    let mut proxied = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let replayed_on_proxy =
        posts_head_then_body(&mut proxied, &plain.url("/echo"), &plain_host, N).await;
    let waited: Vec<String> = [
        ("recorded through a tunnel", &tunnelled),
        ("recorded on the proxy connection", &on_proxy),
        ("replayed through a tunnel", &replayed),
        ("replayed on the proxy connection", &replayed_on_proxy),
    ]
    .into_iter()
    .filter(|(_, times)| median_ms(times) >= DELAYED_ACK_MS / 2.0)
    .map(|(what, times)| format!("{what}: median {:.1} ms", median_ms(times)))
    .collect();
    assert!(
        waited.is_empty(),
        "POSTs waited for delayed acknowledgements: {waited:?}"
    );
}

/// The names of the threads of process `pid` that start with `prefix`, sorted.
fn threads_named(pid: i32, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| c.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// How many times each thread whose name starts with `prefix` gave up its core waiting
/// (`voluntary_ctxt_switches`), in the order of their names.
fn waits_of_threads(pid: i32, prefix: &str) -> Vec<u64> {
    let mut waits: Vec<(String, u64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| {
            let name = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let waits = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                .trim()
                .parse()
                .ok()?;
            Some((name.trim().to_string(), waits))
        })
        .filter(|(name, _)| name.starts_with(prefix))
        .collect();
    waits.sort();
    waits.into_iter().map(|(_, w)| w).collect()
}

/// Connections are served on `tapedeck-serveN` threads (two here, as
/// `TAPEDECK_SERVE_THREADS=2` asks), or on the runtime's own workers with 0; either way
/// every exchange of two connections at once is recorded and replays. Two HTTPS clients'
/// tunnels, the second opened once the first carried a request, are served on both
/// threads: a tunnel keeps its connection's place on its thread after the CONNECT.
#[tokio::test(flavor = "multi_thread")]
async fn connections_are_served_on_the_serving_threads_or_the_runtime_as_asked() {
    let up = Upstream::start(true).await;
    let ca = up.ca_path.to_str().unwrap().to_string();
    for (threads, serving) in [
        ("2", vec!["tapedeck-serve0", "tapedeck-serve1"]),
        ("0", vec![]),
    ] {
        let dirs = Dirs::new();
        // Replay's idle serving threads look for work before they sleep (see
        // `tapedeck_proxy::shards`); here they sleep at once, as record's do, so a thread
        // that serves a tunnel is seen waiting between its requests.
        let env = [
            ("TAPEDECK_SERVE_THREADS", threads),
            ("TAPEDECK_PARK_SPIN_US", "0"),
        ];
        let start = |args: &[&str]| {
            Daemon::start_env(
                &dirs,
                &[],
                args,
                "127.0.0.1:0",
                Duration::from_secs(20),
                &env,
            )
        };
        let exchange = |d: &Daemon| {
            let (a, b) = (client(d, &dirs), client(d, &dirs));
            let up = &up;
            let (pid, serving) = (d.pid(), serving.clone());
            async move {
                let before = waits_of_threads(pid, "tapedeck-serve");
                // The first tunnel carries a request before the second opens.
                let first = a.get(up.url("/counter?first")).send().await.unwrap();
                assert_eq!(first.status(), 200);
                let mut got = vec![first.text().await.unwrap()];
                for i in 0..4 {
                    // Each answer a new count; the query tells the requests apart.
                    let (x, y) = tokio::join!(
                        a.get(up.url(&format!("/counter?a={i}"))).send(),
                        b.get(up.url(&format!("/counter?b={i}"))).send()
                    );
                    for r in [x.unwrap(), y.unwrap()] {
                        assert_eq!(r.status(), 200);
                        got.push(r.text().await.unwrap());
                    }
                }
                // Each serving thread waited for the upstream at least once per request
                // of the tunnel it serves; a thread serving none does not wait.
                // (The threads start with the daemon's first connection: none before.)
                let after = waits_of_threads(pid, "tapedeck-serve");
                assert_eq!(after.len(), serving.len());
                let before = if before.is_empty() {
                    vec![0; after.len()]
                } else {
                    before
                };
                for (b, a) in before.iter().zip(&after) {
                    assert!(
                        a - b >= 4,
                        "each serving thread serves one tunnel: waits {before:?} -> {after:?}"
                    );
                }
                got
            }
        };
        // The daemon's serving threads, checked while it runs; then it stops cleanly.
        let stop = |d: Daemon| {
            assert_eq!(
                threads_named(d.pid(), "tapedeck-serve"),
                serving,
                "{threads}"
            );
            let (code, err) = d.stop();
            assert_eq!(code, 0, "{err}");
        };
        let d = start(&["record", "--session", "s", "--upstream-ca", &ca]);
        let live = exchange(&d).await;
        stop(d);
        assert_eq!(export(&dirs, "s").len(), 9, "{threads}");

        let r = start(&["replay", "--session", "s"]);
        assert_eq!(exchange(&r).await, live, "{threads}");
        stop(r);
    }
}

/// Bytes written to the TCP socket `s` and not yet acknowledged by its peer (`SIOCOUTQ`:
/// what `ss` shows as Send-Q), asked of the socket itself: reading `/proc/net/tcp`
/// instead walks every socket of the machine, which takes tens of milliseconds on a busy
/// one and shows each connection as it was when the walk passed it.
fn unacknowledged(s: &tokio::net::TcpStream) -> u64 {
    use std::os::fd::AsRawFd;
    let mut n: nix::libc::c_int = 0;
    // SAFETY: `s` is an open TCP socket of this process, and SIOCOUTQ (TIOCOUTQ) writes
    // one `c_int` through the pointer, which points at `n`.
    let rc = unsafe { nix::libc::ioctl(s.as_raw_fd(), nix::libc::TIOCOUTQ, &mut n) };
    assert_eq!(rc, 0, "SIOCOUTQ: {}", std::io::Error::last_os_error());
    u64::try_from(n).unwrap()
}

/// An upstream with Nagle's algorithm on (as Python's `http.server`) writes an answer's
/// head, then its body, which its kernel holds until the head is acknowledged: record
/// acknowledges what its upstream connection received while it waits for the rest of an
/// answer, rather than leaving the acknowledgement to the kernel's delay (40 ms and more
/// on Linux; it made every call through record 44 ms against 1.2 direct).
///
/// Record asks for more of the body, and so acknowledges the head, before it sends the
/// head on to its client. So the upstream here, for each of 30 answers on one kept
/// connection, writes the head, waits until the client has the head, and then requires
/// its head acknowledged (a few milliseconds' grace for the acknowledgement's delivery):
/// no clock decides, however slow the machine; only the kernel's delayed acknowledgement
/// would make a late one pass, 40 ms after the fact.
#[tokio::test(flavor = "multi_thread")]
async fn an_answers_head_is_acknowledged_to_an_upstream_that_holds_its_body_for_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (head_seen, mut client_has_head) = tokio::sync::mpsc::unbounded_channel::<()>();
    let upstream = tokio::spawn(async move {
        let (mut s, _peer) = listener.accept().await.unwrap();
        let mut acked = Vec::new();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        for _ in 0..30 {
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the proxy closed the upstream connection");
                buf.extend_from_slice(&chunk[..n]);
            }
            let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            buf.drain(..end);
            s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\n",
            )
            .await
            .unwrap();
            client_has_head.recv().await.unwrap();
            let seen = Instant::now();
            let mut unacked = unacknowledged(&s);
            while unacked > 0 && seen.elapsed() < Duration::from_millis(5) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                unacked = unacknowledged(&s);
            }
            acked.push(unacked == 0);
            s.write_all(b"hello").await.unwrap();
        }
        acked
    });
    let dirs = Dirs::new();
    let d = Daemon::start(&dirs, &["record", "--session", "nagle"]);
    let via = client(&d, &dirs);
    for i in 0..30 {
        let r = via
            .get(format!("http://{addr}/item/{i}"))
            .send()
            .await
            .unwrap();
        head_seen.send(()).unwrap();
        assert_eq!(r.text().await.unwrap(), "hello");
    }
    let acked = upstream.await.unwrap();
    // A new connection's first segments are acknowledged at once anyway: the last ten
    // are the kept connection's.
    assert!(
        acked[20..].iter().all(|a| *a),
        "heads acknowledged by the time the client had them: {acked:?}"
    );
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(export(&dirs, "nagle").len(), 30);
}

/// Many HTTP/2 streams of one connection at once, as a Go or httpx agent sends its calls:
/// the recorder's writer hands the stored exchanges back to the serving thread in
/// batches, and still each stream gets its own answer, every exchange is stored with its
/// own request and answer, and replay serves each stream its own.
#[tokio::test(flavor = "multi_thread")]
async fn many_http2_streams_at_once_each_get_their_own_answer_recorded_and_replayed() {
    const N: u64 = 200;
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ask_all = |c: reqwest::Client| {
        let url = up.url("/echo");
        futures_util::future::join_all((0..N).map(move |i| {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let r = c
                    .post(url)
                    .header("content-type", "application/json")
                    .body(format!("{{\"n\":{i}}}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.version(), reqwest::Version::HTTP_2);
                assert_eq!(r.status(), 200);
                let answer: Value = r.json().await.unwrap();
                answer["body"]["n"].as_u64()
            }
        }))
    };
    let every: Vec<Option<u64>> = (0..N).map(Some).collect();

    let d = record(&dirs, &up, "streams", &[]);
    assert_eq!(ask_all(client(&d, &dirs)).await, every);
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    let events = export(&dirs, "streams");
    assert_eq!(events.len() as u64, N);
    let mut stored: Vec<u64> = events
        .iter()
        .map(|e| {
            let asked = e["request"]["body"]["json"]["n"].as_u64();
            let answered = e["response"]["body"]["json"]["body"]["n"].as_u64();
            assert_eq!(asked, answered, "an event stores its own answer: {e}");
            asked.unwrap()
        })
        .collect();
    stored.sort_unstable();
    assert_eq!(stored, (0..N).collect::<Vec<_>>());

    let r = Daemon::start(&dirs, &["replay", "--session", "streams"]);
    assert_eq!(ask_all(client(&r, &dirs)).await, every);
    let (code, err) = r.stop();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("served {N}/{N} events, 0 misses")),
        "{err}"
    );
}
