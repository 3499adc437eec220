//! `tool_error_ignored`: a tool answered with an error and the LLM went on as if it had
//! not.
//!
//! The tool's error reaches the agent's next LLM call either as a tool result (and the
//! answer does not own up to it), or not at all (the agent swallowed it). Local tools,
//! whose results reach the LLM without an HTTP exchange, are judged by the result alone.

use std::collections::HashSet;

use super::View;
use crate::analyze::read::{
    acknowledges, carried, next_llm, short, status_of, text_says_error, tool_error, what,
};
use crate::analyze::{Finding, Severity};
use crate::spans::Parsed;
use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::Kind;

pub fn detect(v: &View, out: &mut Vec<Finding>) {
    let reported = http_tools(v, out);
    local_tools(v, &reported, out);
}

/// Errors of tools called over HTTP; returns the ids of the tool results reported.
fn http_tools(v: &View, out: &mut Vec<Finding>) -> HashSet<String> {
    let parsed = v.parsed;
    let mut reported_results: HashSet<String> = HashSet::new();
    for (i, t) in parsed.iter().enumerate() {
        if t.event.kind == Kind::Llm {
            continue;
        }
        let Some(err) = tool_error(t) else { continue };
        let why = &err.why;
        let severity = if err.warning {
            Severity::Warning
        } else {
            Severity::Error
        };
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
        let name = v.tool(t.event);
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
                let mut evidence = vec![format!(
                    "step {}: {} → {}: {}",
                    t.event.step,
                    what(t.event),
                    status_of(t.event),
                    short(&body, 100)
                )];
                if let Some(field) = &err.field {
                    evidence.push(format!(
                        "step {}: the {} body says so at {field}",
                        t.event.step,
                        status_of(t.event)
                    ));
                }
                evidence.push(format!(
                    "step {}: the LLM request carries that answer as a tool result",
                    l.event.step
                ));
                evidence.push(format!(
                    "step {}: the answer does not mention a failure: {:?}",
                    l.event.step,
                    short(&answer, 100)
                ));
                out.push(Finding {
                    detector: "tool_error_ignored",
                    severity,
                    steps: vec![t.event.step, l.event.step],
                    summary: format!(
                        "the {name} tool answered {why} (step {}) and the LLM went on at step {} without acknowledging it",
                        t.event.step, l.event.step
                    ),
                    evidence,
                });
            }
            // A warning the agent kept to itself is common (it read only the data).
            None if err.warning => {}
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
    reported_results
}

/// Local tools: an error result that reaches the LLM without an HTTP exchange.
fn local_tools(v: &View, reported_results: &HashSet<String>, out: &mut Vec<Finding>) {
    let parsed = v.parsed;
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

#[cfg(test)]
mod tests {
    use super::detect;
    use crate::analyze::detect::testing::*;
    use crate::spans::Parsed;
    use tapedeck_model::exchange::{Event, Kind};

    #[test]
    fn an_acknowledged_tool_error_is_not_a_finding() {
        let e1 = llm_event(1, None, 0, 10);
        let e2 = tool_event(2, None, "https://w.test/weather?city=Paris", 500, 11, 12);
        let e3 = llm_event(3, None, 13, 20);
        let run_with = |answer: &str| {
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
            run(&p, detect)
        };
        assert!(run_with("Sorry, the weather service is unavailable right now.").is_empty());
        let ignored = run_with("It is sunny in Paris.");
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].steps, vec![2, 3]);
        assert!(ignored[0].summary.contains("HTTP 500"), "{:?}", ignored[0]);
        // An echo of the error body is not an acknowledgement.
        assert_eq!(run_with(&format!("The weather in Paris: {ERR}")).len(), 1);
    }

    #[test]
    fn a_tool_the_llm_asked_for_is_named_by_its_function() {
        let e1 = llm_event(1, None, 0, 10);
        let e2 = tool_event(2, None, "https://w.test/weather?city=Paris", 500, 11, 12);
        let e3 = llm_event(3, None, 13, 20);
        let p = vec![
            parsed(
                &e1,
                Some(asks(
                    "c1",
                    "get_weather",
                    serde_json::json!({"city": "Paris"}),
                )),
                "{}",
                "{}",
            ),
            parsed(&e2, None, "", ERR),
            parsed(
                &e3,
                Some(llm_call(20, vec![("c1", ERR)], "Sunny.")),
                "{}",
                "{}",
            ),
        ];
        let found = run(&p, detect);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .summary
                .starts_with("the get_weather tool answered"),
            "{:?}",
            found[0]
        );
    }

    #[test]
    fn an_error_the_agent_swallowed_is_reported_at_the_tool_and_the_next_llm_call() {
        let e1 = llm_event(1, None, 0, 10);
        let e2 = tool_event(2, None, "https://w.test/weather?city=Paris", 503, 11, 12);
        let e3 = llm_event(3, None, 13, 20);
        let p = vec![
            parsed(&e1, Some(llm_call(10, vec![], "")), "{}", "{}"),
            parsed(&e2, None, "", ERR),
            parsed(
                &e3,
                Some(llm_call(20, vec![("c1", "sunny, 20C")], "Sunny.")),
                "{}",
                "{}",
            ),
        ];
        let found = run(&p, detect);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].steps, vec![2, 3]);
        assert!(found[0].summary.contains("does not carry the error"));
    }

    #[test]
    fn a_failed_tool_retried_successfully_before_the_llm_is_not_ignored() {
        let e1 = tool_event(1, None, "https://w.test/weather?city=Paris", 503, 0, 1);
        let e2 = tool_event(2, None, "https://w.test/weather?city=Paris", 200, 2, 3);
        let e3 = llm_event(3, None, 4, 9);
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
        let out = run(&p, detect);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn retried_failures_carried_once_are_one_ignored_error_at_the_last_attempt() {
        let mut evs: Vec<Event> = vec![llm_event(1, None, 0, 5)];
        for i in 2..=4 {
            evs.push(tool_event(
                i,
                None,
                "https://w.test/status/503?city=Paris",
                503,
                i * 10,
                i * 10 + 2,
            ));
        }
        evs.push(llm_event(5, None, 60, 70));
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
        let out = run(&p, detect);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].steps, vec![4, 5]);
    }

    #[test]
    fn a_local_tool_error_the_answer_ignores_is_reported_at_the_llm_call() {
        let e1 = llm_event(1, None, 0, 5);
        let mut call = llm_call(30, vec![("c9", r#"{"status":"failed"}"#)], "All done!");
        call.tool_results[0].name = Some("run_sql".into());
        let p = vec![parsed(&e1, Some(call), "{}", "{}")];
        let out = run(&p, detect);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].steps, vec![1]);
        assert!(out[0].summary.contains("run_sql"));
        // The same exchange kind of clean result says nothing.
        let e = crate::analyze::detect::testing::event(1, Kind::Llm, "POST", LLM_URL, 200, 0, 5);
        let clean = vec![parsed(
            &e,
            Some(llm_call(30, vec![("c9", r#"{"rows":3}"#)], "3 rows")),
            "{}",
            "{}",
        )];
        assert!(run(&clean, detect).is_empty());
    }

    #[test]
    fn a_soft_error_in_a_200_body_ignored_by_the_llm_names_its_field() {
        let body =
            r#"{"price":1.299,"raw_price":"1.299,00","parse_error":"ambiguous decimal separator"}"#;
        let e1 = llm_event(1, None, 0, 10);
        let e2 = tool_event(2, None, "https://shop.test/price?item=widget", 200, 11, 12);
        let e3 = llm_event(3, None, 13, 20);
        let p = vec![
            parsed(&e1, Some(asks_price()), "{}", "{}"),
            parsed(&e2, None, "", body),
            parsed(
                &e3,
                Some(llm_call(
                    20,
                    vec![("c1", body)],
                    "The widget costs EUR 1.30.",
                )),
                "{}",
                "{}",
            ),
        ];
        let out = run(&p, detect);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].steps, vec![2, 3]);
        assert_eq!(out[0].severity, crate::analyze::Severity::Error);
        assert!(out[0].summary.contains("get_price"), "{:?}", out[0]);
        assert!(
            out[0]
                .evidence
                .iter()
                .any(|e| e.contains("at $.parse_error")),
            "{:#?}",
            out[0].evidence
        );
        // A warning with text is a warning; kept from the LLM altogether, it is nothing.
        let warned = r#"{"price":1.299,"warnings":["price is stale"]}"#;
        let p = vec![
            parsed(&e2, None, "", warned),
            parsed(
                &e3,
                Some(llm_call(20, vec![("c1", warned)], "EUR 1.30")),
                "{}",
                "{}",
            ),
        ];
        assert_eq!(
            run(&p, detect)[0].severity,
            crate::analyze::Severity::Warning
        );
        let p = vec![
            parsed(&e2, None, "", warned),
            parsed(
                &e3,
                Some(llm_call(20, vec![("c1", "1.299")], "EUR 1.30")),
                "{}",
                "{}",
            ),
        ];
        assert!(run(&p, detect).is_empty());
    }
}
