//! Hostile input gets a clear error, never a panic or a hang: proxy credentials that are
//! not UTF-8 once decoded, OTLP headers likewise, tapes whose metadata would overflow
//! replay's arithmetic or make it wait for ever or whose headers HTTP cannot carry, and
//! bodies that would bloat a tape.

use crate::support;

use std::path::Path;

use serde_json::Value;
use support::harness::{client, client_as, export, Daemon, Dirs};
use support::upstream::Upstream;

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_proxy_user_name_is_refused_and_the_proxy_keeps_serving() {
    let up = Upstream::start(false).await;
    let dirs = Dirs::new();
    let d = Daemon::start(&dirs, &["record"]);
    for user in ["%aé", "%é", "%", "%%C3"] {
        let hostile = client_as(&d, &dirs, user, "%aé");
        let resp = hostile.get(up.url("/json")).send().await.unwrap();
        assert!(
            resp.status() == 400 || resp.status() == 407,
            "{user}: {}",
            resp.status()
        );
    }
    let good = client_as(&d, &dirs, "fine", "");
    assert_eq!(
        good.get(up.url("/json")).send().await.unwrap().status(),
        200
    );
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_headers_that_do_not_decode_are_no_panic() {
    let dirs = Dirs::new();
    let tape = dirs.path("t.jsonl");
    std::fs::write(
        &tape,
        "{\"tapedeck_tape\":1,\"session\":\"t\",\"events\":0}\n",
    )
    .unwrap();
    let out = std::process::Command::new(support::harness::tapedeck_bin())
        .args([
            "otlp",
            tape.to_str().unwrap(),
            "--endpoint",
            "http://127.0.0.1:9",
        ])
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-a=%aé,x-b=%é%,x-c=%C3")
        .env("TAPEDECK_STORE", &dirs.store)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Records one streamed exchange and exports it: (scratch dirs, tape path, its lines).
async fn recorded_tape() -> (Dirs, std::path::PathBuf, Vec<Value>) {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "orig", &[]);
    let via = client(&d, &dirs);
    let resp = via.get(up.url("/sse?n=3&gap_ms=30")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    d.stop();
    let events = export(&dirs, "orig");
    assert!(events[0]["response"]["chunks"].is_array());
    let path = dirs.path("orig.export.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (dirs, path, lines)
}

fn write_tape(path: &Path, lines: &[Value]) {
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(path, text.join("\n") + "\n").unwrap();
}

/// Runs `import` and `replay --tape` on a tape: both exit codes and stderrs.
fn import_and_replay(dirs: &Dirs, tape: &Path) -> [(i32, String); 2] {
    let t = tape.to_str().unwrap();
    let (ic, _, ie) = dirs.run(&["import", t, "--session", "imported", "--replace"]);
    let (rc, _, re) = dirs.run(&[
        "replay",
        "--tape",
        t,
        "--pace",
        "recorded",
        "--listen",
        "127.0.0.1:0",
        "--",
        "true",
    ]);
    [(ic, ie), (rc, re)]
}

/// A change made to the exported event.
type Edit = fn(&mut Value);

#[tokio::test(flavor = "multi_thread")]
async fn tapes_with_hostile_metadata_are_refused_by_import_and_replay_with_file_and_line() {
    let (dirs, path, lines) = recorded_tape().await;
    for (code, err) in import_and_replay(&dirs, &path) {
        assert_eq!(code, 0, "the tape as exported is fine: {err}");
    }
    let hostile: [(&str, Edit, &str); 6] = [
        (
            "chunk lengths that overflow",
            |ev| {
                let chunks = ev["response"]["chunks"].as_array_mut().unwrap();
                chunks[0]["len"] = Value::from(1u64 << 63);
                chunks[1]["len"] = Value::from(1u64 << 63);
            },
            "chunk lengths add up to more than",
        ),
        (
            "a chunk at 1e300 ms",
            |ev| ev["response"]["chunks"][1]["at_ms"] = Value::from(1e300),
            "at_ms 1e300 is out of range",
        ),
        (
            "a time to first byte of 2^64-1 ns",
            |ev| ev["timing"]["ttfb_ns"] = Value::from(u64::MAX),
            "ttfb_ns 18446744073709551615 is out of range",
        ),
        (
            "an exchange that ends before it starts",
            |ev| ev["timing"]["end_ns"] = Value::from(0u64),
            "ends before it starts",
        ),
        (
            "a response header whose value smuggles in a header of its own",
            |ev| {
                let headers = ev["response"]["headers"].as_array_mut().unwrap();
                headers.push(serde_json::json!(["x-note", "a\r\nset-cookie: injected=1"]));
            },
            "header \"x-note\": its value holds a line break",
        ),
        (
            "a request header name with a space in it",
            |ev| {
                let headers = ev["request"]["headers"].as_array_mut().unwrap();
                headers.push(serde_json::json!(["x note", "1"]));
            },
            "header name \"x note\" is not an HTTP header name",
        ),
    ];
    for (what, edit, want) in hostile {
        let mut lines = lines.clone();
        edit(&mut lines[1]);
        let bad = dirs.path("hostile.jsonl");
        write_tape(&bad, &lines);
        for (code, err) in import_and_replay(&dirs, &bad) {
            assert_ne!(code, 0, "{what} was accepted");
            assert_ne!(code, 101, "{what} panicked: {err}");
            let at = format!("{}, line 2: step 1: ", bad.display());
            assert!(err.contains(&at) && err.contains(want), "{what}: {err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_of_nul_bytes_exports_as_a_file_or_base64_never_six_bytes_each() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "nul", &[]);
    let via = client(&d, &dirs);
    let n = 256 << 10;
    let resp = via
        .post(up.url("/upload"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; n])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    d.stop();
    // Above the inline limit (64 KiB by default) the body is a file beside the tape,
    // byte for byte.
    let tape = dirs.path("nul.jsonl");
    let (code, _, err) = dirs.run(&["export", "nul", "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let events = support::harness::read_tape(&tape).1;
    let body = &events[0]["request"]["body"];
    let file = body["file"].as_str().expect("a body file");
    assert!(body["base64"].is_null() && body["text"].is_null(), "{body}");
    assert_eq!(std::fs::read(dirs.path(file)).unwrap(), vec![0u8; n]);
    // Inline, it is base64.
    let tape = dirs.path("nul.inline.jsonl");
    let (code, _, err) = dirs.run(&[
        "export",
        "nul",
        "-o",
        tape.to_str().unwrap(),
        "--inline-max",
        "1048576",
    ]);
    assert_eq!(code, 0, "{err}");
    let events = support::harness::read_tape(&tape).1;
    let body = &events[0]["request"]["body"];
    assert_eq!(body["len"], n);
    assert!(body["base64"].is_string(), "inline as base64");
    let size = std::fs::metadata(&tape).unwrap().len();
    assert!(size < (n as u64) * 3 / 2, "{size} bytes for {n} NULs");
    // And it reads back byte for byte.
    let (code, _, err) = dirs.run(&["import", tape.to_str().unwrap(), "--session", "nul2"]);
    assert_eq!(code, 0, "{err}");
    let again = dirs.path("nul2.inline.jsonl");
    let (code, _, err) = dirs.run(&[
        "export",
        "nul2",
        "-o",
        again.to_str().unwrap(),
        "--inline-max",
        "1048576",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        support::harness::read_tape(&again).1[0]["request"]["body"],
        *body
    );
}
