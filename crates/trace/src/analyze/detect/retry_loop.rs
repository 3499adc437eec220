//! `retry_loop`: the same call made three or more times in a row with nothing changed.
//!
//! Retries of "the same" call differ in ids, timestamps and nonces, so requests are
//! compared with those blanked ([`fuzzy_key`]). The run is per agent and per kind; it is
//! an error when every attempt failed, a warning when the loop ended in a success.

use std::collections::HashSet;

use serde_json::Value;

use super::View;
use crate::analyze::read::{status_of, what};
use crate::analyze::{Finding, Severity};
use crate::spans::Parsed;
use tapedeck_model::exchange::canonical::{percent_decode, sort_keys, UrlParts};
use tapedeck_model::exchange::Kind;

/// Keys whose values change between retries of the same call, whatever they hold.
fn volatile_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "uuid",
        "nonce",
        "timestamp",
        "ts",
        "time",
        "date",
        "created",
        "created_at",
        "updated_at",
        "request_id",
        "trace_id",
        "span_id",
        "idempotency_key",
        "seed",
    ]
    .contains(&k.as_str())
        || k.ends_with("_at")
}

/// Keys that name an id: an argument (`user_id=17`, `{"order_id": "A-1"}`: calls with
/// other ids are other calls, not retries) unless the value looks generated per call.
fn id_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    k == "id" || k == "ids" || k.ends_with("_id")
}

/// A value minted per call: a uuid or timestamp, or a long token of letters and digits
/// (`req_8f3kQ2x9LmZ7pW1a`).
fn generated(s: &str) -> bool {
    volatile_value(s)
        || (s.len() >= 16
            && s.bytes().any(|c| c.is_ascii_digit())
            && s.bytes().any(|c| c.is_ascii_alphabetic())
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'))
}

/// Values that change between retries: uuids and ISO timestamps.
fn volatile_value(s: &str) -> bool {
    let b = s.as_bytes();
    let uuid = s.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    let iso = s.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':';
    uuid || iso
}

/// `v` with its volatile keys and values replaced by `*`.
fn blank(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    (
                        k.clone(),
                        if volatile_key(k) || (id_key(k) && x.as_str().is_some_and(generated)) {
                            Value::String("*".into())
                        } else {
                            blank(x)
                        },
                    )
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(blank).collect()),
        Value::String(s) if volatile_value(s) => Value::String("*".into()),
        Value::Number(n)
            if n.as_u64().is_some_and(|x| {
                (1_000_000_000..2_000_000_000).contains(&x)
                    || (1_000_000_000_000..2_000_000_000_000).contains(&x)
            }) =>
        {
            Value::String("*".into())
        }
        other => other.clone(),
    }
}

/// The values [`fuzzy_key`] blanks in a request: its per-call tokens.
fn blanked_values(p: &Parsed) -> Vec<String> {
    fn walk(v: &Value, key_blanked: bool, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let by_key =
                        volatile_key(k) || (id_key(k) && x.as_str().is_some_and(generated));
                    walk(x, by_key, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, key_blanked, out)),
            Value::String(s) if key_blanked || volatile_value(s) => out.push(s.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let parts = UrlParts::parse(&p.event.request.url);
    for kv in parts.query.split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if volatile_key(k) || volatile_value(v) || (id_key(k) && generated(v)) {
            out.push(percent_decode(v));
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&p.request_body) {
        walk(&v, false, &mut out);
    }
    out
}

/// Whether `next` carries on from `prev` rather than repeating it: one of the tokens
/// it differs by came in `prev`'s answer (a page token, a cursor, a job id to poll).
fn follows_on(prev: &Parsed, next: &Parsed) -> bool {
    let answer = String::from_utf8_lossy(&prev.response_body);
    blanked_values(next)
        .iter()
        .any(|v| v.len() >= 8 && answer.contains(v.as_str()))
}

/// A request with ids and timestamps blanked: retries of "the same" call compare equal.
fn fuzzy_key(p: &Parsed) -> String {
    let ev = p.event;
    let parts = UrlParts::parse(&ev.request.url);
    let mut query: Vec<String> = parts
        .query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if volatile_key(k) || volatile_value(v) || (id_key(k) && generated(v)) {
                format!("{k}=*")
            } else {
                kv.to_string()
            }
        })
        .collect();
    query.sort();
    let body = match serde_json::from_slice::<Value>(&p.request_body) {
        Ok(mut v) => {
            // A JSON-RPC message's id numbers the message, not what it asks for.
            if let Some(m) = v.as_object_mut().filter(|m| m.contains_key("jsonrpc")) {
                m.remove("id");
            }
            sort_keys(&blank(&v)).to_string()
        }
        Err(_) => blake3::hash(&p.request_body).to_hex().to_string(),
    };
    format!(
        "{} {}://{}:{}{}?{} {body}",
        ev.request.method,
        parts.scheme,
        parts.host,
        parts.port,
        parts.path,
        query.join("&")
    )
}

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
    let agents: HashSet<Option<&str>> = parsed.iter().map(|p| p.event.agent.as_deref()).collect();
    for agent in agents {
        for kind in [Kind::Llm, Kind::Tool, Kind::Other] {
            let seq: Vec<&Parsed> = parsed
                .iter()
                .filter(|p| p.event.agent.as_deref() == agent && p.event.kind == kind)
                .collect();
            let mut i = 0;
            while i < seq.len() {
                let key = fuzzy_key(seq[i]);
                let mut j = i + 1;
                while j < seq.len() && fuzzy_key(seq[j]) == key && !follows_on(seq[j - 1], seq[j]) {
                    j += 1;
                }
                if j - i >= 3 {
                    let run = &seq[i..j];
                    let all_failed = run.iter().all(|p| {
                        p.event.error.is_some() || p.event.status().is_none_or(|s| s >= 400)
                    });
                    out.push(Finding {
                        detector: "retry_loop",
                        severity: if all_failed { Severity::Error } else { Severity::Warning },
                        steps: run.iter().map(|p| p.event.step).collect(),
                        summary: format!(
                            "the same {kind} call was made {} times in a row with nothing changed: {}",
                            run.len(),
                            what(run[0].event)
                        ),
                        evidence: run.iter().map(|p| format!("step {}: {} → {}", p.event.step, what(p.event), status_of(p.event))).collect(),
                    });
                }
                i = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::detect;
    use crate::analyze::detect::testing::*;
    use crate::analyze::Severity;
    use crate::spans::Parsed;
    use tapedeck_model::exchange::{Event, Kind};

    #[test]
    fn retries_that_differ_only_in_ids_and_timestamps_are_one_loop_and_a_change_breaks_it() {
        let evs: Vec<Event> = (1..=4)
            .map(|i| {
                event(
                    i,
                    Kind::Tool,
                    "POST",
                    "https://t.test/search",
                    200,
                    i * 10,
                    i * 10 + 5,
                )
            })
            .collect();
        let bodies = [
            r#"{"q":"paris","request_id":"a1","ts":"2026-11-25T10:00:00Z"}"#,
            r#"{"q":"paris","request_id":"b2","ts":"2026-11-25T10:00:01Z"}"#,
            r#"{"q":"paris","request_id":"c3","ts":"2026-11-25T10:00:02Z"}"#,
            r#"{"q":"london","request_id":"d4","ts":"2026-11-25T10:00:03Z"}"#,
        ];
        let p: Vec<Parsed> = evs
            .iter()
            .zip(bodies)
            .map(|(e, b)| parsed(e, None, b, "{}"))
            .collect();
        let out = run(&p, detect);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].steps, vec![1, 2, 3]);
        assert_eq!(out[0].severity, Severity::Warning);
        // Two in a row is not a loop; a different call between them breaks the run.
        let p2 = vec![
            parsed(&evs[0], None, bodies[0], "{}"),
            parsed(&evs[1], None, bodies[1], "{}"),
            parsed(&evs[2], None, bodies[3], "{}"),
            parsed(&evs[3], None, bodies[2], "{}"),
        ];
        let out = run(&p2, detect);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn calls_for_other_ids_are_not_retries_but_minted_ids_are_blanked() {
        let run_of = |urls: &[&str], bodies: &[&str]| {
            let evs: Vec<Event> = urls
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    let i = i as u64 + 1;
                    event(i, Kind::Tool, "POST", u, 200, i * 10, i * 10 + 5)
                })
                .collect();
            let p: Vec<Parsed> = evs
                .iter()
                .zip(bodies)
                .map(|(e, b)| parsed(e, None, b, "{}"))
                .collect();
            run(&p, detect).len()
        };
        // Three orders, three users: three calls, not a loop.
        let orders = [
            r#"{"order_id":"A-1001","qty":1}"#,
            r#"{"order_id":"A-1002","qty":1}"#,
            r#"{"order_id":"A-1003","qty":1}"#,
        ];
        assert_eq!(run_of(&["https://t.test/orders"; 3], &orders), 0);
        let users = [
            "https://t.test/u?user_id=17",
            "https://t.test/u?user_id=42",
            "https://t.test/u?user_id=99",
        ];
        assert_eq!(run_of(&users, &["", "", ""]), 0);
        // An id minted per attempt, or a JSON-RPC message's number: the same call again.
        let minted = [
            r#"{"q":"paris","client_id":"req_8f3kQ2x9LmZ7pW1a"}"#,
            r#"{"q":"paris","client_id":"req_Zq71mB0cXw4Rt9Ke"}"#,
            r#"{"q":"paris","client_id":"req_p0Lk8Jh2Gf6Ds4Aa"}"#,
        ];
        assert_eq!(run_of(&["https://t.test/s"; 3], &minted), 1);
        let rpc = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w"}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"w"}}"#,
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"w"}}"#,
        ];
        assert_eq!(run_of(&["https://t.test/mcp"; 3], &rpc), 1);
    }

    #[test]
    fn pages_fetched_with_the_token_the_last_answer_gave_are_progress_not_retries() {
        let tokens = [
            "4c69514e-0d2a-4b8e-9f3e-1a2b3c4d5e6f",
            "9e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
            "77aa88bb-99cc-4dde-8eff-001122334455",
        ];
        let evs: Vec<Event> = (0..3)
            .map(|i| {
                let url = format!("https://t.test/page?page_token={}", tokens[i]);
                let i = i as u64 + 1;
                event(i, Kind::Tool, "GET", &url, 200, i * 10, i * 10 + 5)
            })
            .collect();
        let answers: Vec<String> = (0..3)
            .map(|i| match tokens.get(i + 1) {
                Some(next) => format!(r#"{{"items":[1],"next_page_token":"{next}"}}"#),
                None => r#"{"items":[1]}"#.to_string(),
            })
            .collect();
        let p: Vec<Parsed> = evs
            .iter()
            .zip(&answers)
            .map(|(e, a)| parsed(e, None, "", a))
            .collect();
        assert!(run(&p, detect).is_empty());
        // The same calls whose answers hand out nothing: a loop.
        let p: Vec<Parsed> = evs.iter().map(|e| parsed(e, None, "", "{}")).collect();
        assert_eq!(run(&p, detect).len(), 1);
    }

    #[test]
    fn a_loop_where_every_attempt_failed_is_an_error() {
        let evs: Vec<Event> = (1..=3)
            .map(|i| {
                tool_event(
                    i,
                    None,
                    "https://w.test/status/503",
                    503,
                    i * 10,
                    i * 10 + 1,
                )
            })
            .collect();
        let p: Vec<Parsed> = evs.iter().map(|e| parsed(e, None, "", ERR)).collect();
        let out = run(&p, detect);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Error);
        assert_eq!(out[0].evidence.len(), 3);
    }
}
