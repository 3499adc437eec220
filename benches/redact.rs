//! What redaction costs on large text bodies: the scrubbers every request and answer
//! body passes through before anything is stored (record's capture, on the serving
//! thread, reads a body as it streams; replay scrubs a request whole to key it), and the
//! last pass over a body kept whole (record's writer). The proxy benchmark's bodies are
//! 1 KB of JSON and 5 MB of random bytes; an agent's prompt is text of tens or hundreds
//! of KB, and grows with every turn.
//!
//! Run: `cargo bench --bench redact` (`TAPEDECK_BENCH_REDACT_MB`, 64 by default: the
//! megabytes scrubbed per case and size). One thread, with tapedeck's allocator
//! (mimalloc). Bodies: a chat request of user
//! and assistant turns in prose with code, `key: value` lines and URLs (what a coding
//! agent sends), its text as `text/plain`, the same JSON read as an answer, a server-sent
//! event stream of small deltas, and random bytes as `application/octet-stream`. Prints
//! MB/s and µs per body, streamed in 16 KiB pieces (`BodyScrubber::feed`) and whole
//! (`BodyScrubber::run`), and the last pass of a body kept whole (`finish_whole`, a copy of the body
//! included).
//! `TAPEDECK_BENCH_REDACT_ONLY` picks the bodies whose name holds its text.

#![forbid(unsafe_code)]

use std::time::Instant;

use tapedeck_model::exchange::redact::{finish_whole, BodyScrubber, FieldNames, Secrets};
use tapedeck_model::rules::{RuleArgs, Rules};

/// The allocator tapedeck runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHAT: &str = "/v1/chat/completions";

/// A chat request of about `size` bytes.
fn chat_request(size: usize) -> String {
    let mut messages = Vec::new();
    let mut len = 0;
    let mut turn = 0;
    while len < size {
        let m = if turn % 2 == 0 {
            format!(
                r#"{{"role":"user","content":"Turn {turn}: read src/main.rs and say what `parse_args` does.\nThe config says host: db.internal, port: 5432; the docs are at https://docs.example.test/config?page={turn}&lang=en.\n"}}"#
            )
        } else {
            format!(
                r#"{{"role":"assistant","content":"It reads the flags into a struct:\n```rust\nfn parse_args(argv: &[String]) -> Args {{\n    let mut args = Args::default();\n    for a in argv {{ if a == \"--verbose\" {{ args.verbose = true; }} }}\n    args\n}}\n```\nNothing else happens at step {turn}."}}"#
            )
        };
        len += m.len() + 1;
        messages.push(m);
        turn += 1;
    }
    format!(
        r#"{{"model":"gpt-4o","stream":false,"messages":[{}]}}"#,
        messages.join(",")
    )
}

/// A server-sent event stream of about `size` bytes of small deltas.
fn sse(size: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    while out.len() < size {
        out.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" word{n} and\"}}}}]}}\n\n"
        ));
        n += 1;
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// `size` bytes that look random (xorshift).
fn random(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Seconds per run of `f`, over enough runs to scrub `budget` bytes of `len`.
fn time(len: usize, budget: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm
    let runs = (budget / len).max(3);
    let t = Instant::now();
    for _ in 0..runs {
        f();
    }
    t.elapsed().as_secs_f64() / runs as f64
}

fn main() {
    let budget = std::env::var("TAPEDECK_BENCH_REDACT_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(64)
        << 20;
    let rules = Rules::from_toml("", &RuleArgs::default()).expect("default rules");
    let mut secrets = Secrets::default();
    // The request's API key, as record learns it from the `Authorization` header.
    secrets.add("Bearer sk-proj-Zq8vN3kLp2Wm7Rt4Yx6B0cDe1fGh2iJk");
    let fields = FieldNames::of(&rules);
    // `TAPEDECK_BENCH_REDACT_ONLY=event` runs the bodies whose name holds that text.
    let only = std::env::var("TAPEDECK_BENCH_REDACT_ONLY").unwrap_or_default();

    println!("| body | size | streamed MB/s | streamed µs | whole MB/s | whole µs | last pass (kept whole) µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for size in [16 << 10, 256 << 10, 4 << 20] {
        let request = chat_request(size).into_bytes();
        let text = String::from_utf8(request.clone())
            .expect("utf-8")
            .replace("\\n", "\n")
            .replace("\\\"", "\"")
            .into_bytes();
        let stream = sse(size).into_bytes();
        let binary = random(size);
        let cases: [(&str, &[u8], &str, bool); 5] = [
            ("chat request (JSON)", &request, "application/json", false),
            ("its text (text/plain)", &text, "text/plain", false),
            ("chat answer (JSON)", &request, "application/json", true),
            (
                "event stream (SSE answer)",
                &stream,
                "text/event-stream",
                true,
            ),
            (
                "random bytes (octet-stream)",
                &binary,
                "application/octet-stream",
                false,
            ),
        ];
        for (name, body, ct, answer) in cases {
            if !name.contains(&only) {
                continue;
            }
            let make = || {
                if answer {
                    BodyScrubber::for_answer(Some(ct), fields.clone(), &secrets, CHAT)
                } else {
                    BodyScrubber::new(Some(ct), &rules, &secrets)
                }
            };
            let streamed = time(body.len(), budget, || {
                let mut s = make();
                let mut n = 0;
                for piece in body.chunks(16 << 10) {
                    n += s.feed(piece).len();
                }
                n += s.finish().0.len();
                assert!(n >= body.len() / 2, "{name}: the scrubber lost the body");
            });
            let run = || {
                if answer {
                    BodyScrubber::run_answer(body, Some(ct), &rules, &secrets, CHAT).0
                } else {
                    BodyScrubber::run(body, Some(ct), &rules, &secrets).0
                }
            };
            let whole = time(body.len(), budget, || {
                assert!(
                    run().len() >= body.len() / 2,
                    "{name}: the scrubber lost the body"
                );
            });
            let scrubbed = run();
            let last = time(body.len(), budget, || {
                let mut s = secrets.clone();
                let out = finish_whole(
                    scrubbed.clone(),
                    Some(ct),
                    &rules,
                    &mut s,
                    answer.then_some(CHAT),
                );
                assert!(!out.is_empty());
            });
            let mb = body.len() as f64 / 1e6;
            println!(
                "| {name} | {} KiB | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                body.len() >> 10,
                mb / streamed,
                streamed * 1e6,
                mb / whole,
                whole * 1e6,
                last * 1e6,
            );
        }
    }
}
