//! Bounded work: hostile and huge bodies through the real binary, with the peak resident
//! memory of the tapedeck process (VmHWM from /proc) printed and held under a bound.
//!
//! Memory is not timing: the bound is a fact about the process, not about the machine's
//! load. Each case runs in a fresh daemon so its peak is its own.

mod support;

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use support::harness::{client_h1, Daemon, Dirs};
use support::upstream::Upstream;

/// Peak RSS every case must stay under.
const BOUND_MB: f64 = 300.0;

/// Peak resident memory of a process, in MB (VmHWM).
fn peak_mb(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1000.0
}

/// 1 GiB of zeros as ~1 MB of gzip: 1024 gzip members of 1 MiB of zeros each (a valid
/// gzip stream; every decoder in tapedeck reads multi-member gzip).
fn gzip_bomb() -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = e.finish().unwrap();
    member.repeat(1024)
}

/// A JSON array of small objects, `bytes` long or a little more.
fn json_array(bytes: usize) -> Vec<u8> {
    let mut out = b"[".to_vec();
    let mut i = 0u64;
    while out.len() < bytes {
        if i > 0 {
            out.push(b',');
        }
        write!(out, r#"{{"id":{i},"name":"item-{i}","ok":true}}"#).unwrap();
        i += 1;
    }
    out.push(b']');
    out
}

fn record(dirs: &Dirs, up: &Upstream, session: &str) -> Daemon {
    let ca = up.ca_path.to_str().unwrap().to_string();
    Daemon::start(
        dirs,
        &["record", "--session", session, "--upstream-ca", &ca],
    )
}

fn replay(dirs: &Dirs, session: &str) -> Daemon {
    Daemon::start(dirs, &["replay", "--session", session])
}

/// Sends the bomb; returns the status and the JSON error body.
async fn send_bomb(c: &reqwest::Client, url: &str, bomb: &[u8]) -> (u16, Value, Option<String>) {
    let resp = c
        .post(url)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb.to_vec())
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let status = resp.status().as_u16();
    let step = resp
        .headers()
        .get("x-tapedeck-step")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body, step)
}

/// Reads a response to its end without keeping it; returns (status, bytes).
async fn drain(resp: reqwest::Response) -> (u16, u64) {
    let status = resp.status().as_u16();
    let mut n = 0u64;
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        n += chunk.expect("body chunk").len() as u64;
    }
    (status, n)
}

/// Reads a response and checks it is the upstream's `/big` pattern; returns its length.
async fn pattern_len(resp: reqwest::Response) -> u64 {
    assert_eq!(resp.status(), 200);
    let mut n = 0u64;
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        for b in chunk.expect("body chunk").iter() {
            assert_eq!(*b, support::upstream::big_byte(n), "byte {n}");
            n += 1;
        }
    }
    n
}

/// The test client does not decode: gzip wire bytes, decoded here.
fn gunzip(wire: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(wire), &mut plain).unwrap();
    plain
}

fn stop(d: Daemon) -> String {
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    err
}

fn event_of(dirs: &Dirs, session: &str) -> Vec<Value> {
    support::harness::export(dirs, session)
}

#[tokio::test(flavor = "multi_thread")]
async fn peak_memory_stays_bounded_for_bombs_and_huge_bodies() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let bomb = gzip_bomb();
    assert!(bomb.len() < 2 << 20, "the bomb is {} bytes", bomb.len());
    let mut table: Vec<(String, f64)> = Vec::new();

    // An idle daemon, for scale.
    let d = record(&dirs, &up, "idle");
    let _ = client_h1(&d, &dirs).get(up.url("/json")).send().await;
    table.push(("record, idle (one small exchange)".into(), peak_mb(d.pid())));
    stop(d);

    // 1. The bomb through record: 413, a too_large event, and the upstream never gets it all.
    let d = record(&dirs, &up, "bomb");
    let c = client_h1(&d, &dirs);
    let (status, body, _) = send_bomb(&c, &up.url("/upload"), &bomb).await;
    table.push((
        format!("record, {} KB gzip → 1 GiB request", bomb.len() >> 10),
        peak_mb(d.pid()),
    ));
    assert_eq!(status, 413, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("--max-body") && msg.contains("256 MiB"),
        "{body}"
    );
    stop(d);
    let events = event_of(&dirs, "bomb");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["error"]["kind"], "too_large", "{}", events[0]);
    assert_eq!(
        events[0]["request"]["body"]["len"],
        256u64 << 20,
        "the request is stored up to the cap"
    );

    // 2. The same bomb to replay: keyed on its first 256 MiB, it takes the recorded event
    //    and gets the recorded 413; a different bomb is a too_large miss, also 413.
    let d = replay(&dirs, "bomb");
    let c = client_h1(&d, &dirs);
    let (status, body, step) = send_bomb(&c, &up.url("/upload"), &bomb).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(step.as_deref(), Some("1"), "served from the recorded event");
    let (status, body, step) = send_bomb(&c, &up.url("/other"), &bomb).await;
    table.push((
        format!(
            "replay, {} KB gzip → 1 GiB request (twice)",
            bomb.len() >> 10
        ),
        peak_mb(d.pid()),
    ));
    assert_eq!(status, 413, "{body}");
    assert_eq!(step, None);
    let err = stop(d);
    assert!(err.contains("1 too_large"), "{err}");

    // 3. A 14 MB JSON array through record, echoed back as a 14 MB JSON response.
    let d = record(&dirs, &up, "json");
    let c = client_h1(&d, &dirs);
    let array = json_array(14_000_000);
    let resp = c
        .post(up.url("/echo"))
        .header("content-type", "application/json")
        .body(array.clone())
        .send()
        .await
        .unwrap();
    let (status, n) = drain(resp).await;
    assert_eq!(status, 200);
    assert!(n > 14_000_000, "echoed {n} bytes");
    table.push((
        format!(
            "record, {} MB JSON array request + echo",
            array.len() / 1_000_000
        ),
        peak_mb(d.pid()),
    ));
    stop(d);

    // 4. A 200 MB response through record, then through replay; with a length and chunked.
    let d = record(&dirs, &up, "big");
    let c = client_h1(&d, &dirs);
    for path in ["/big?bytes=200000000", "/big-chunked?bytes=200000000"] {
        let (status, n) = drain(c.get(up.url(path)).send().await.unwrap()).await;
        assert_eq!((status, n), (200, 200_000_000), "{path}");
    }
    table.push((
        "record, 200 MB response (with a length, then chunked)".into(),
        peak_mb(d.pid()),
    ));
    stop(d);
    let d = replay(&dirs, "big");
    let c = client_h1(&d, &dirs);
    for path in ["/big?bytes=200000000", "/big-chunked?bytes=200000000"] {
        let n = pattern_len(c.get(up.url(path)).send().await.unwrap()).await;
        assert_eq!(n, 200_000_000, "{path}");
    }
    table.push((
        "replay, 200 MB response (with a length, then chunked)".into(),
        peak_mb(d.pid()),
    ));
    stop(d);

    eprintln!("peak RSS of the tapedeck process (VmHWM):");
    for (case, mb) in &table {
        eprintln!("  {mb:7.1} MB  {case}");
    }
    for (case, mb) in &table {
        assert!(
            *mb < BOUND_MB,
            "{case}: peak RSS {mb:.1} MB ≥ {BOUND_MB} MB"
        );
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// A large gzip response is stored decoded in parts and replayed part by part, encoded
/// again on the way: the client decodes exactly the recorded content.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_encoded_response_replays_part_by_part() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, "gz");
    let c = client_h1(&d, &dirs);
    let resp = c
        .get(up.url("/big-gzip?bytes=3000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(gunzip(&resp.bytes().await.unwrap()).len(), 3_000_000);
    stop(d);
    let d = replay(&dirs, "gz");
    let c = client_h1(&d, &dirs);
    let resp = c
        .get(up.url("/big-gzip?bytes=3000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let plain = gunzip(&resp.bytes().await.unwrap());
    assert_eq!(plain.len(), 3_000_000);
    assert!(plain
        .iter()
        .enumerate()
        .all(|(i, b)| *b == support::upstream::big_byte(i as u64)));
    stop(d);
}

/// A response over `--max-body`: refused up front when its length says so, cut at the
/// cap when it is chunked; both leave a too_large event.
#[tokio::test(flavor = "multi_thread")]
async fn responses_over_max_body_are_refused_or_cut_and_recorded() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(
        &dirs,
        &[
            "record",
            "--session",
            "cap",
            "--upstream-ca",
            &ca,
            "--max-body",
            "1MiB",
        ],
    );
    let c = client_h1(&d, &dirs);
    let resp = c.get(up.url("/big?bytes=3000000")).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("1 MiB") && msg.contains("--max-body"),
        "{body}"
    );

    let resp = c
        .get(up.url("/big-chunked?bytes=3000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = 0usize;
    let mut s = resp.bytes_stream();
    let mut cut = false;
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(b) => got += b.len(),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut && got <= 1 << 20, "cut: {cut}, got {got} bytes");

    // Under the cap, nothing changes.
    let (status, n) = drain(c.get(up.url("/big?bytes=500000")).send().await.unwrap()).await;
    assert_eq!((status, n), (200, 500_000));
    stop(d);

    let events = event_of(&dirs, "cap");
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["error"]["kind"], "too_large");
    assert!(events[0]["response"].is_null());
    assert_eq!(events[1]["error"]["kind"], "too_large");
    assert_eq!(events[1]["response"]["complete"], false);
    assert_eq!(events[1]["response"]["body"]["len"], 1u64 << 20);
    assert!(events[2]["error"].is_null(), "{}", events[2]);

    // Replay gives the same answers: the 413 from the event, the cut stream.
    let d = Daemon::start(&dirs, &["replay", "--session", "cap"]);
    let c = client_h1(&d, &dirs);
    let resp = c.get(up.url("/big?bytes=3000000")).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    stop(d);
}
