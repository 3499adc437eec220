//! What the store costs the recorder per exchange: the writer thread's work for one small
//! LLM call (its request and answer bodies and its event) into a real sled store in a
//! temp dir, one thread, as the recorder's writer does it: the bodies inside the event's
//! value (`put_event_with`, what record does), and for comparison under their blake3
//! first (`put_blob` then `put_event`, what record did before store format 3).
//!
//! Run: `cargo bench --bench store` (TAPEDECK_BENCH_STORE_N exchanges per case, 100,000
//! by default). Three cases: bodies the store already holds (the same call every time:
//! content addressing skips both writes), a new answer to the same request (the proxy
//! benchmark's GETs), and a new request and a new answer (an agent's calls: each prompt
//! grows, each answer differs). Prints µs per exchange (wall and this process's CPU,
//! sled's own threads included) and the peak resident memory after each case.

#![forbid(unsafe_code)]

use std::time::Instant;

use tapedeck_model::exchange::{BodyRef, Event, Kind, RequestRecord, ResponseRecord, Timing};
use tapedeck_store::{store_whole, SledStore, Store};

#[derive(Clone, Copy)]
enum Case {
    Stored,
    NewAnswer,
    NewBoth,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Stored => "bodies already stored",
            Case::NewAnswer => "new answer, same request",
            Case::NewBoth => "new request, new answer",
        }
    }
}

#[derive(Clone, Copy)]
enum Way {
    Inside,
    ByHash,
}

/// A ~1.5 KB chat request and a ~1 KB answer, numbered `n` (0 for the case that repeats).
fn bodies(n: u64) -> (Vec<u8>, Vec<u8>) {
    let prompt = "y".repeat(1400);
    let request = format!(
        r#"{{"model":"gpt-4o-mini","stream":false,"messages":[{{"role":"system","content":"{prompt}"}},{{"role":"user","content":"turn {n}"}}]}}"#
    );
    let pad = "x".repeat(900);
    let answer = format!(
        r#"{{"id":"chatcmpl-{n:016x}","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"{pad}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":400,"completion_tokens":250}}}}"#
    );
    (request.into_bytes(), answer.into_bytes())
}

/// The reference to `data`, stored under its blake3 now (`ByHash`) or kept in `inside`
/// to go with the event.
fn body_ref(
    store: &dyn Store,
    data: Vec<u8>,
    way: Way,
    inside: &mut Vec<(blake3::Hash, bytes::Bytes)>,
) -> BodyRef {
    let len = data.len() as u64;
    let h = match way {
        Way::ByHash => store_whole(store, &data).expect("body stored"),
        Way::Inside => {
            let h = blake3::hash(&data);
            inside.push((h, data.into()));
            h
        }
    };
    BodyRef::of(h.to_hex().to_string(), len)
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn event(
    store: &dyn Store,
    step: u64,
    case: Case,
    way: Way,
    inside: &mut Vec<(blake3::Hash, bytes::Bytes)>,
) -> Event {
    let (request, answer) = match case {
        Case::Stored => bodies(0),
        Case::NewAnswer => (bodies(0).0, bodies(step).1),
        Case::NewBoth => bodies(step),
    };
    let t = step * 1_000_000;
    Event {
        step,
        kind: Kind::Llm,
        key: format!("{:064x}", step),
        rules: None,
        agent: None,
        request: RequestRecord {
            method: "POST".into(),
            url: "https://api.openai.com/v1/chat/completions".into(),
            version: "HTTP/1.1".into(),
            headers: headers(&[
                ("host", "api.openai.com"),
                ("content-type", "application/json"),
                ("authorization", "[redacted]"),
                ("user-agent", "OpenAI/Python 1.99.0"),
                ("accept", "application/json"),
                ("x-stainless-lang", "python"),
            ]),
            body: body_ref(store, request, way, inside),
        },
        response: Some(ResponseRecord {
            status: 200,
            version: "HTTP/1.1".into(),
            headers: headers(&[
                ("content-type", "application/json"),
                ("date", "Wed, 02 Dec 2026 09:00:00 GMT"),
                ("openai-processing-ms", "812"),
                ("x-request-id", "req_0123456789abcdef"),
            ]),
            body: body_ref(store, answer, way, inside),
            chunks: None,
            complete: true,
            trailers: Vec::new(),
            broke: None,
            members: Vec::new(),
        }),
        timing: Timing {
            start_ns: t,
            end_ns: t + 800_000,
            ttfb_ns: Some(700_000),
            start_unix_ns: 1_796_000_000_000_000_000 + t,
            end_unix_ns: 1_796_000_000_000_800_000 + t,
        },
        error: None,
        ws: None,
        injected: None,
    }
}

/// This process's CPU time so far (user + system), in µs.
fn cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) * 1e6 / 100.0
}

/// Peak resident memory of this process so far, in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let n: u64 = std::env::var("TAPEDECK_BENCH_STORE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!(
        "tapedeck store benchmark — {n} exchanges per case, one writer thread, sled in a temp dir"
    );
    println!();
    println!(
        "| case | bodies | wall µs/exchange | CPU µs/exchange | store on disk MB | peak RSS MB |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    let ways = [
        (Way::Inside, "inside the event"),
        (Way::ByHash, "under their blake3"),
    ];
    for case in [Case::Stored, Case::NewAnswer, Case::NewBoth] {
        for (way, how) in ways {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = SledStore::open(dir.path()).expect("store");
            let (wall, cpu) = (Instant::now(), cpu_us());
            let mut inside = Vec::with_capacity(2);
            for step in 1..=n {
                inside.clear();
                let ev = event(&store, step, case, way, &mut inside);
                store
                    .put_event_with("bench", &ev, &inside)
                    .expect("event stored");
            }
            store.commit().expect("commit");
            let wall_us = wall.elapsed().as_secs_f64() * 1e6 / n as f64;
            let cpu = (cpu_us() - cpu) / n as f64;
            let disk: u64 = walk(dir.path());
            println!(
                "| {} | {how} | {wall_us:.1} | {cpu:.1} | {:.1} | {:.1} |",
                case.name(),
                disk as f64 / 1e6,
                peak_rss_mb()
            );
        }
    }
}

/// Bytes of the files under `dir`.
fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
