//! The detectors, one function each. They share small readers of tool answers.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{context, Finding, Severity};
use crate::exchange::canonical::{sort_keys, UrlParts};
use crate::exchange::{Event, Kind};
use crate::rules::Rules;
use crate::trace::spans::Parsed;

fn short(s: &str, n: usize) -> String {
    let s = s.trim().replace('\n', " ");
    if s.chars().count() <= n {
        s
    } else {
        s.chars().take(n.saturating_sub(1)).collect::<String>() + "…"
    }
}

fn what(ev: &Event) -> String {
    format!("{} {}", ev.request.method, short(&ev.request.url, 90))
}

fn status_of(ev: &Event) -> String {
    match (ev.status(), &ev.error) {
        (Some(s), _) => s.to_string(),
        (None, Some(e)) => e.kind.as_str().to_string(),
        _ => "no response".into(),
    }
}

/// The tool's name: an MCP call's, else the tool-name rule's for its URL.
fn tool_name(t: &Parsed, rules: &Rules) -> String {
    if let Some(name) = t.mcp.as_ref().and_then(|m| m.tool_name.clone()) {
        return name;
    }
    let ev = t.event;
    let p = UrlParts::parse(&ev.request.url);
    rules.tool_name(&ev.request.method, &p.host, &p.path)
}

/// Why a tool's answer is an error, if it is: transport failure, 4xx/5xx, or a 200 whose
/// JSON says so.
pub fn tool_error(p: &Parsed) -> Option<String> {
    let ev = p.event;
    if let Some(m) = &p.mcp {
        if !m.is_tool_call() {
            return None;
        }
        if let Some(why) = m.error_message() {
            return Some(why);
        }
    }
    if ev.response.is_none() {
        return ev
            .error
            .as_ref()
            .map(|e| format!("failed: {}", e.kind.as_str()));
    }
    let status = ev.status().unwrap_or(0);
    if status >= 400 {
        return Some(format!("HTTP {status}"));
    }
    let v: Value = serde_json::from_slice(&p.response_body).ok()?;
    json_says_error(&v).then(|| "a JSON error".to_string())
}

fn json_says_error(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    let truthy = |x: &Value| {
        !matches!(x, Value::Null | Value::Bool(false)) && x != &Value::String(String::new())
    };
    o.get("error").is_some_and(truthy)
        || o.get("errors")
            .is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()))
        || matches!(
            o.get("status").and_then(Value::as_str),
            Some("error") | Some("failed") | Some("failure")
        )
        || o.get("success") == Some(&Value::Bool(false))
        || o.get("ok") == Some(&Value::Bool(false))
}

fn text_says_error(s: &str) -> bool {
    serde_json::from_str::<Value>(s)
        .map(|v| json_says_error(&v))
        .unwrap_or(false)
}

const ACK_WORDS: &[&str] = &[
    "error",
    "fail",
    "unable",
    "could not",
    "couldn't",
    "cannot",
    "can't",
    "sorry",
    "unavailable",
    "not available",
    "problem",
    "issue",
    "unfortunately",
    "went wrong",
    "try again",
    "did not work",
    "didn't work",
];

/// Whether the LLM's answer mentions the failure (ignoring any verbatim echo of it).
fn acknowledges(answer: &str, echoed: &[&str]) -> bool {
    let mut a = answer.to_ascii_lowercase();
    for e in echoed {
        let e = e.trim().to_ascii_lowercase();
        if !e.is_empty() {
            a = a.replace(&e, " ");
        }
    }
    ACK_WORDS.iter().any(|w| a.contains(w))
}

/// The next LLM call of the same agent after `i`.
fn next_llm<'a>(parsed: &'a [Parsed<'a>], i: usize) -> Option<(usize, &'a Parsed<'a>)> {
    let agent = &parsed[i].event.agent;
    parsed
        .iter()
        .enumerate()
        .skip(i + 1)
        .find(|(_, q)| q.event.kind == Kind::Llm && &q.event.agent == agent)
}

/// The tool result in an LLM request that carries a tool's answer, if any.
fn carried<'a>(llm: &'a Parsed, body: &[u8]) -> Option<&'a crate::trace::adapters::ToolResult> {
    let call = llm.llm.as_ref()?;
    let body = String::from_utf8_lossy(body);
    let body = body.trim();
    let probe: String = body.chars().take(64).collect();
    call.tool_results.iter().find(|r| {
        let c = r.content.trim();
        (!probe.is_empty() && c.contains(&probe))
            || (c.len() >= 8 && body.contains(c))
            || (body.is_empty() && c.is_empty())
    })
}

fn is_empty_text(s: &str) -> bool {
    matches!(s.trim(), "" | "[]" | "{}" | "null" | "\"\"")
}

/// A request with ids and timestamps blanked: retries of "the same" call compare equal.
fn fuzzy_key(p: &Parsed) -> String {
    fn volatile_key(k: &str) -> bool {
        let k = k.to_ascii_lowercase();
        [
            "id",
            "ids",
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
            || k.ends_with("_id")
            || k.ends_with("_at")
    }
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
    fn blank(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        (
                            k.clone(),
                            if volatile_key(k) {
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
    let ev = p.event;
    let parts = UrlParts::parse(&ev.request.url);
    let mut query: Vec<String> = parts
        .query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            if volatile_key(k) || volatile_value(v) {
                format!("{k}=*")
            } else {
                kv.to_string()
            }
        })
        .collect();
    query.sort();
    let body = match serde_json::from_slice::<Value>(&p.request_body) {
        Ok(v) => sort_keys(&blank(&v)).to_string(),
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

pub fn retry_loop(parsed: &[Parsed], out: &mut Vec<Finding>) {
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
                while j < seq.len() && fuzzy_key(seq[j]) == key {
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

pub fn tool_error_ignored(parsed: &[Parsed], rules: &Rules, out: &mut Vec<Finding>) {
    let mut reported_results: HashSet<String> = HashSet::new();
    for (i, t) in parsed.iter().enumerate() {
        if t.event.kind == Kind::Llm {
            continue;
        }
        let Some(why) = tool_error(t) else { continue };
        let Some((li, l)) = next_llm(parsed, i) else {
            continue;
        };
        // A retry of the same tool that succeeded before the LLM saw anything handles it.
        let same_tool = |q: &Parsed| {
            q.event.request.method == t.event.request.method
                && UrlParts::parse(&q.event.request.url).path
                    == UrlParts::parse(&t.event.request.url).path
        };
        // A retry of the same tool before the LLM saw anything supersedes this answer:
        // success handles the error; another failure is the one the LLM got.
        if parsed[i + 1..li]
            .iter()
            .any(|q| q.event.kind != Kind::Llm && same_tool(q))
        {
            continue;
        }
        let name = tool_name(t, rules);
        let body = String::from_utf8_lossy(&t.tool_answer()).to_string();
        let answer = l
            .llm
            .as_ref()
            .map(|c| c.output_text.clone())
            .unwrap_or_default();
        match carried(l, &t.tool_answer()) {
            Some(r) => {
                if let Some(id) = &r.id {
                    reported_results.insert(id.clone());
                }
                if acknowledges(&answer, &[&r.content, &body]) {
                    continue;
                }
                out.push(Finding {
                    detector: "tool_error_ignored",
                    severity: Severity::Error,
                    steps: vec![t.event.step, l.event.step],
                    summary: format!(
                        "the {name} tool answered {why} (step {}) and the LLM went on at step {} without acknowledging it",
                        t.event.step, l.event.step
                    ),
                    evidence: vec![
                        format!("step {}: {} → {}: {}", t.event.step, what(t.event), status_of(t.event), short(&body, 100)),
                        format!("step {}: the LLM request carries that answer as a tool result", l.event.step),
                        format!("step {}: the answer does not mention a failure: {:?}", l.event.step, short(&answer, 100)),
                    ],
                });
            }
            None => {
                // An LLM call tapedeck cannot read says nothing either way.
                let Some(call) = &l.llm else { continue };
                let results = call.tool_results.len();
                out.push(Finding {
                    detector: "tool_error_ignored",
                    severity: Severity::Error,
                    steps: vec![t.event.step, l.event.step],
                    summary: format!(
                        "the {name} tool answered {why} (step {}) but the next LLM request (step {}) does not carry the error: the agent went on as if it had succeeded",
                        t.event.step, l.event.step
                    ),
                    evidence: vec![
                        format!("step {}: {} → {}: {}", t.event.step, what(t.event), status_of(t.event), short(&body, 100)),
                        format!("step {}: {} tool result(s) in the request, none with that answer", l.event.step, results),
                    ],
                });
            }
        }
    }
    // Local tools: an error result that reaches the LLM without an HTTP exchange.
    let mut seen: HashSet<String> = HashSet::new();
    for l in parsed.iter().filter(|p| p.event.kind == Kind::Llm) {
        let Some(call) = &l.llm else { continue };
        for r in &call.tool_results {
            let id = r
                .id
                .clone()
                .unwrap_or_else(|| format!("{}:{}", r.name.clone().unwrap_or_default(), r.content));
            if !seen.insert(id.clone()) || reported_results.contains(&id) {
                continue;
            }
            if !(r.is_error || text_says_error(&r.content))
                || acknowledges(&call.output_text, &[&r.content])
            {
                continue;
            }
            if parsed.iter().any(|t| {
                t.event.kind != Kind::Llm
                    && t.event.step < l.event.step
                    && carried(l, &t.tool_answer()).is_some_and(|c| c.id == r.id)
            }) {
                continue;
            }
            out.push(Finding {
                detector: "tool_error_ignored",
                severity: Severity::Error,
                steps: vec![l.event.step],
                summary: format!(
                    "the {} tool's result carried an error into the LLM request at step {} and the answer does not acknowledge it",
                    r.name.clone().unwrap_or_else(|| "local".into()),
                    l.event.step
                ),
                evidence: vec![
                    format!("step {}: tool result {}: {}", l.event.step, r.id.clone().unwrap_or_default(), short(&r.content, 100)),
                    format!("step {}: answer: {:?}", l.event.step, short(&call.output_text, 100)),
                ],
            });
        }
    }
}

pub fn empty_tool_result(parsed: &[Parsed], rules: &Rules, out: &mut Vec<Finding>) {
    let mut covered: HashSet<String> = HashSet::new();
    for (i, t) in parsed.iter().enumerate() {
        if !t.is_tool() || !t.is_empty_answer() {
            continue;
        }
        let Some((_, l)) = next_llm(parsed, i) else {
            continue;
        };
        let Some(call) = &l.llm else { continue };
        let Some(r) = call.tool_results.iter().find(|r| is_empty_text(&r.content)) else {
            continue;
        };
        if let Some(id) = &r.id {
            covered.insert(id.clone());
        }
        let name = tool_name(t, rules);
        let body = String::from_utf8_lossy(&t.tool_answer()).into_owned();
        out.push(Finding {
            detector: "empty_tool_result",
            severity: Severity::Warning,
            steps: vec![t.event.step, l.event.step],
            summary: format!(
                "the {name} tool returned an empty result ({}) at step {} and the LLM consumed it as data at step {}",
                if body.trim().is_empty() { "no body".to_string() } else { body.trim().to_string() },
                t.event.step,
                l.event.step
            ),
            evidence: vec![
                format!("step {}: {} → {} with body {:?}", t.event.step, what(t.event), status_of(t.event), short(&body, 40)),
                format!("step {}: tool result {:?} passed to the LLM", l.event.step, r.content),
                format!("step {}: answer: {:?}", l.event.step, short(&call.output_text, 100)),
            ],
        });
    }
    let mut seen: HashSet<String> = HashSet::new();
    for l in parsed.iter().filter(|p| p.event.kind == Kind::Llm) {
        let Some(call) = &l.llm else { continue };
        for r in call
            .tool_results
            .iter()
            .filter(|r| is_empty_text(&r.content))
        {
            let Some(id) = r.id.clone() else { continue };
            if covered.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            out.push(Finding {
                detector: "empty_tool_result",
                severity: Severity::Warning,
                steps: vec![l.event.step],
                summary: format!(
                    "the {} tool returned an empty result that the LLM consumed as data at step {}",
                    r.name.clone().unwrap_or_else(|| "local".into()),
                    l.event.step
                ),
                evidence: vec![format!(
                    "step {}: tool result {id} is {:?}",
                    l.event.step, r.content
                )],
            });
        }
    }
}

pub fn context_pressure(parsed: &[Parsed], rules: &Rules, out: &mut Vec<Finding>) {
    for p in parsed {
        let Some(call) = &p.llm else { continue };
        let step = p.event.step;
        if let Some(t) = &call.error_type {
            let msg = call
                .error_message
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if t.contains("context_length")
                || msg.contains("prompt is too long")
                || msg.contains("context length")
                || msg.contains("maximum context")
            {
                out.push(Finding {
                    detector: "context_pressure",
                    severity: Severity::Error,
                    steps: vec![step],
                    summary: format!(
                        "the request at step {step} did not fit the model's context window ({t})"
                    ),
                    evidence: vec![format!(
                        "step {step}: {} → {}: {}",
                        what(p.event),
                        status_of(p.event),
                        short(&msg, 100)
                    )],
                });
                continue;
            }
        }
        let Some(input) = call.input_tokens else {
            continue;
        };
        let Some(model) = call.request_model.as_ref().or(call.response_model.as_ref()) else {
            continue;
        };
        let Some(limit) = context::limit(model, &rules.context_windows) else {
            continue;
        };
        let ratio = input as f64 / limit as f64;
        if ratio >= 0.8 {
            out.push(Finding {
                detector: "context_pressure",
                severity: if ratio >= 0.95 { Severity::Error } else { Severity::Warning },
                steps: vec![step],
                summary: format!(
                    "the prompt at step {step} used {:.0}% of {model}'s context window ({input} of {limit} input tokens)",
                    ratio * 100.0
                ),
                evidence: vec![format!("step {step}: {input} input tokens; {model} takes at most {limit}")],
            });
        }
    }
}

pub fn truncation(parsed: &[Parsed], out: &mut Vec<Finding>) {
    for p in parsed {
        let Some(call) = &p.llm else { continue };
        let cut: Vec<&String> = call
            .finish_reasons
            .iter()
            .filter(|r| {
                matches!(
                    r.as_str(),
                    "length"
                        | "max_tokens"
                        | "MAX_TOKENS"
                        | "max_output_tokens"
                        | "model_context_window_exceeded"
                )
            })
            .collect();
        if cut.is_empty() {
            continue;
        }
        let step = p.event.step;
        out.push(Finding {
            detector: "truncation",
            severity: Severity::Warning,
            steps: vec![step],
            summary: format!(
                "the answer at step {step} was cut off by the token limit (finish reason {})",
                cut[0]
            ),
            evidence: vec![
                format!(
                    "step {step}: finish reasons {:?}, {} output tokens",
                    call.finish_reasons,
                    call.output_tokens.unwrap_or(0)
                ),
                format!(
                    "step {step}: answer ends: {:?}",
                    short(
                        &call
                            .output_text
                            .chars()
                            .rev()
                            .take(60)
                            .collect::<String>()
                            .chars()
                            .rev()
                            .collect::<String>(),
                        60
                    )
                ),
            ],
        });
    }
}

pub fn token_burn(parsed: &[Parsed], out: &mut Vec<Finding>) {
    let agents: HashSet<Option<&str>> = parsed.iter().map(|p| p.event.agent.as_deref()).collect();
    for agent in agents {
        let calls: Vec<&Parsed> = parsed
            .iter()
            .filter(|p| {
                p.event.agent.as_deref() == agent
                    && p.llm
                        .as_ref()
                        .is_some_and(|c| c.input_tokens.is_some() && c.operation != "embeddings")
            })
            .collect();
        let mut seen_results: HashSet<String> = HashSet::new();
        let mut run: Vec<&Parsed> = Vec::new();
        let flush = |run: &mut Vec<&Parsed>, out: &mut Vec<Finding>| {
            if run.len() >= 3 {
                let tokens: Vec<u64> = run
                    .iter()
                    .map(|p| p.llm.as_ref().and_then(|c| c.input_tokens).unwrap_or(0))
                    .collect();
                out.push(Finding {
                    detector: "token_burn",
                    severity: Severity::Warning,
                    steps: run.iter().map(|p| p.event.step).collect(),
                    summary: format!(
                        "input tokens grew from {} to {} over {} LLM calls with no new tool result between them",
                        tokens[0],
                        tokens[tokens.len() - 1],
                        run.len()
                    ),
                    evidence: run
                        .iter()
                        .zip(&tokens)
                        .map(|(p, t)| format!("step {}: {t} input tokens", p.event.step))
                        .collect(),
                });
            }
            run.clear();
        };
        for c in calls {
            let Some(call) = c.llm.as_ref() else { continue };
            let ids: Vec<String> = call
                .tool_results
                .iter()
                .map(|r| r.id.clone().unwrap_or_else(|| r.content.clone()))
                .collect();
            let new_result = ids.iter().any(|id| !seen_results.contains(id));
            seen_results.extend(ids);
            let grows = run
                .last()
                .and_then(|prev| prev.llm.as_ref()?.input_tokens)
                .is_some_and(|prev| call.input_tokens.unwrap_or(0) > prev);
            if !run.is_empty() && grows && !new_result {
                run.push(c);
            } else {
                flush(&mut run, out);
                run.push(c);
            }
        }
        flush(&mut run, out);
    }
}

/// Scalar values a request carries: query values and JSON strings/numbers.
fn request_values(p: &Parsed) -> Vec<String> {
    let mut vals = Vec::new();
    let parts = UrlParts::parse(&p.event.request.url);
    for kv in parts.query.split('&') {
        if let Some((_, v)) = kv.split_once('=') {
            let v = v.replace("%20", " ").replace('+', " ");
            if v.len() >= 3 {
                vals.push(v);
            }
        }
    }
    for seg in parts.path.split('/') {
        if seg.len() >= 3
            && seg
                .chars()
                .any(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            vals.push(seg.to_string());
        }
    }
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.len() >= 3 && s.len() <= 200 => out.push(s.clone()),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&p.request_body) {
        walk(&v, &mut vals);
    }
    vals
}

/// What an exchange handed on: the LLM's answer and tool-call arguments, or a tool's body.
fn output_of(p: &Parsed) -> String {
    match &p.llm {
        Some(c) => {
            let mut s = c.output_text.clone();
            for tc in &c.tool_calls {
                s.push(' ');
                s.push_str(&tc.arguments.to_string());
            }
            s
        }
        None => String::from_utf8_lossy(&p.response_body).into_owned(),
    }
}

pub fn cascading_error(parsed: &[Parsed], rules: &Rules, out: &mut Vec<Finding>) {
    let agents: HashSet<&str> = parsed
        .iter()
        .filter_map(|p| p.event.agent.as_deref())
        .collect();
    if agents.len() < 2 {
        return;
    }
    let mut reported: HashSet<(u64, u64)> = HashSet::new();
    for (fi, f) in parsed.iter().enumerate() {
        let failed = if f.event.kind == Kind::Llm {
            f.llm
                .as_ref()
                .and_then(|c| c.error_type.clone())
                .or_else(|| {
                    f.event
                        .status()
                        .filter(|s| *s >= 400)
                        .map(|s| format!("HTTP {s}"))
                })
        } else {
            tool_error(f)
        };
        let Some(why) = failed else { continue };
        let Some(f_agent) = f.event.agent.as_deref() else {
            continue;
        };
        // The earliest output of another agent that carried a value this request used.
        let mut best: Option<(usize, String)> = None;
        for v in request_values(f) {
            let origin = parsed[..fi].iter().enumerate().find(|(_, e)| {
                e.event.agent.as_deref().is_some_and(|a| a != f_agent) && output_of(e).contains(&v)
            });
            if let Some((oi, _)) = origin {
                if best.as_ref().is_none_or(|(b, _)| oi < *b) {
                    best = Some((oi, v));
                }
            }
        }
        let Some((oi, value)) = best else { continue };
        let o = &parsed[oi];
        if !reported.insert((o.event.step, f.event.step)) {
            continue;
        }
        let o_agent = o.event.agent.clone().unwrap_or_default();
        out.push(Finding {
            detector: "cascading_error",
            severity: Severity::Error,
            steps: vec![o.event.step, f.event.step],
            summary: format!(
                "agent {o_agent} produced {value:?} at step {}, which agent {f_agent} used at step {} and failed ({why})",
                o.event.step, f.event.step
            ),
            evidence: vec![
                format!("step {}: {o_agent}'s output contains {value:?}: {:?}", o.event.step, short(&output_of(o), 100)),
                format!(
                    "step {}: {f_agent} sent it to {} → {}",
                    f.event.step,
                    if f.event.kind == Kind::Llm { what(f.event) } else { tool_name(f, rules) },
                    status_of(f.event)
                ),
            ],
        });
    }
}

pub fn slow_step(parsed: &[Parsed], out: &mut Vec<Finding>) {
    let mut by_kind: HashMap<Kind, Vec<(u64, f64)>> = HashMap::new();
    for p in parsed {
        // An open channel (a WebSocket, an MCP session's streams) lasts as long as it is
        // wanted: its length is no step's slowness.
        if p.event.ws.is_some() || p.mcp.as_ref().is_some_and(|m| m.method.is_none()) {
            continue;
        }
        let d = p
            .event
            .timing
            .end_ns
            .saturating_sub(p.event.timing.start_ns) as f64
            / 1e6;
        by_kind
            .entry(p.event.kind)
            .or_default()
            .push((p.event.step, d));
    }
    for (kind, list) in by_kind {
        if list.len() < 4 {
            continue;
        }
        let mut ds: Vec<f64> = list.iter().map(|(_, d)| *d).collect();
        ds.sort_by(|a, b| a.total_cmp(b));
        let median = ds[ds.len() / 2];
        let p75 = ds[(ds.len() * 3) / 4];
        for (step, d) in &list {
            if *d > 5.0 * median.max(1.0) && *d > 3.0 * p75 && *d - median > 500.0 {
                out.push(Finding {
                    detector: "slow_step",
                    severity: Severity::Info,
                    steps: vec![*step],
                    summary: format!("step {step} took {:.0} ms, {:.0}× the session's median for {kind} calls ({median:.0} ms)", d, d / median.max(0.001)),
                    evidence: vec![format!("step {step}: {d:.0} ms; {kind} calls: median {median:.0} ms, p75 {p75:.0} ms over {} calls", list.len())],
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{BodyRef, RequestRecord, ResponseRecord, Timing};
    use crate::trace::adapters::{LlmCall, ToolResult};

    fn event(
        step: u64,
        kind: Kind,
        method: &str,
        url: &str,
        status: u16,
        start_ms: u64,
        end_ms: u64,
    ) -> Event {
        Event {
            step,
            kind,
            key: String::new(),
            rules: None,
            agent: None,
            request: RequestRecord {
                method: method.into(),
                url: url.into(),
                version: "HTTP/1.1".into(),
                headers: vec![],
                body: BodyRef::empty(),
            },
            response: Some(ResponseRecord {
                status,
                version: "HTTP/1.1".into(),
                headers: vec![],
                body: BodyRef::empty(),
                chunks: None,
                complete: true,
            }),
            timing: Timing {
                start_ns: start_ms * 1_000_000,
                end_ns: end_ms * 1_000_000,
                ttfb_ns: None,
                start_unix_ns: start_ms * 1_000_000,
                end_unix_ns: end_ms * 1_000_000,
            },
            error: None,
            ws: None,
        }
    }

    fn llm_call(input: u64, results: Vec<(&str, &str)>, answer: &str) -> LlmCall {
        LlmCall {
            provider: "openai".into(),
            operation: "chat".into(),
            request_model: Some("gpt-4o".into()),
            input_tokens: Some(input),
            output_tokens: Some(10),
            tool_results: results
                .into_iter()
                .map(|(id, content)| ToolResult {
                    id: Some(id.into()),
                    name: Some("get_weather".into()),
                    content: content.into(),
                    is_error: false,
                })
                .collect(),
            output_text: answer.into(),
            ..Default::default()
        }
    }

    fn parsed<'a>(ev: &'a Event, llm: Option<LlmCall>, req: &str, resp: &str) -> Parsed<'a> {
        Parsed {
            event: ev,
            llm,
            mcp: None,
            realtime: None,
            request_body: req.as_bytes().to_vec(),
            response_body: resp.as_bytes().to_vec(),
        }
    }

    const ERR: &str = r#"{"error":{"message":"backend down"}}"#;

    #[test]
    fn an_acknowledged_tool_error_is_not_a_finding() {
        let e1 = event(
            1,
            Kind::Llm,
            "POST",
            "https://llm.test/v1/chat/completions",
            200,
            0,
            10,
        );
        let e2 = event(
            2,
            Kind::Tool,
            "GET",
            "https://w.test/weather?city=Paris",
            500,
            11,
            12,
        );
        let e3 = event(
            3,
            Kind::Llm,
            "POST",
            "https://llm.test/v1/chat/completions",
            200,
            13,
            20,
        );
        let rules = Rules::default();
        let run = |answer: &str| {
            let p = vec![
                parsed(&e1, Some(llm_call(10, vec![], "")), "{}", "{}"),
                parsed(&e2, None, "", ERR),
                parsed(
                    &e3,
                    Some(llm_call(20, vec![("c1", ERR)], answer)),
                    "{}",
                    "{}",
                ),
            ];
            let mut out = Vec::new();
            tool_error_ignored(&p, &rules, &mut out);
            out
        };
        assert!(run("Sorry, the weather service is unavailable right now.").is_empty());
        let ignored = run("It is sunny in Paris.");
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].steps, vec![2, 3]);
        // An echo of the error body is not an acknowledgement.
        assert_eq!(run(&format!("The weather in Paris: {ERR}")).len(), 1);
    }

    #[test]
    fn a_failed_tool_retried_successfully_before_the_llm_is_not_ignored() {
        let e1 = event(
            1,
            Kind::Tool,
            "GET",
            "https://w.test/weather?city=Paris",
            503,
            0,
            1,
        );
        let e2 = event(
            2,
            Kind::Tool,
            "GET",
            "https://w.test/weather?city=Paris",
            200,
            2,
            3,
        );
        let e3 = event(
            3,
            Kind::Llm,
            "POST",
            "https://llm.test/v1/chat/completions",
            200,
            4,
            9,
        );
        let ok = r#"{"temp_c":18}"#;
        let p = vec![
            parsed(&e1, None, "", ERR),
            parsed(&e2, None, "", ok),
            parsed(
                &e3,
                Some(llm_call(20, vec![("c1", ok)], "18C in Paris")),
                "{}",
                "{}",
            ),
        ];
        let mut out = Vec::new();
        tool_error_ignored(&p, &Rules::default(), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

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
        let mut out = Vec::new();
        retry_loop(&p, &mut out);
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
        let mut out = Vec::new();
        retry_loop(&p2, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn growing_prompts_with_new_tool_results_are_not_token_burn() {
        let evs: Vec<Event> = (1..=4)
            .map(|i| {
                event(
                    i,
                    Kind::Llm,
                    "POST",
                    "https://llm.test/v1/chat/completions",
                    200,
                    i * 10,
                    i * 10 + 5,
                )
            })
            .collect();
        let p: Vec<Parsed> = evs
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let results: Vec<(&str, &str)> = [("c1", "a"), ("c2", "b"), ("c3", "c")]
                    .into_iter()
                    .take(i)
                    .collect();
                parsed(
                    e,
                    Some(llm_call(100 * (i as u64 + 1), results, "ok")),
                    "{}",
                    "{}",
                )
            })
            .collect();
        let mut out = Vec::new();
        token_burn(&p, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn an_empty_answer_nobody_consumed_is_not_reported() {
        let e1 = event(1, Kind::Tool, "GET", "https://t.test/items", 200, 0, 1);
        let p = vec![parsed(&e1, None, "", "[]")];
        let mut out = Vec::new();
        empty_tool_result(&p, &Rules::default(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn retried_failures_carried_once_are_one_ignored_error_at_the_last_attempt() {
        let mut evs = vec![event(
            1,
            Kind::Llm,
            "POST",
            "https://llm.test/v1/chat/completions",
            200,
            0,
            5,
        )];
        for i in 2..=4 {
            evs.push(event(
                i,
                Kind::Tool,
                "GET",
                "https://w.test/status/503?city=Paris",
                503,
                i * 10,
                i * 10 + 2,
            ));
        }
        evs.push(event(
            5,
            Kind::Llm,
            "POST",
            "https://llm.test/v1/chat/completions",
            200,
            60,
            70,
        ));
        let mut p: Vec<Parsed> = vec![parsed(&evs[0], Some(llm_call(10, vec![], "")), "{}", "{}")];
        for e in &evs[1..4] {
            p.push(parsed(e, None, "", ERR));
        }
        p.push(parsed(
            &evs[4],
            Some(llm_call(30, vec![("c1", ERR)], &format!("Weather: {ERR}"))),
            "{}",
            "{}",
        ));
        let mut out = Vec::new();
        tool_error_ignored(&p, &Rules::default(), &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].steps, vec![4, 5]);
    }
}
