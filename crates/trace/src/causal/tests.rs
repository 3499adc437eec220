use serde_json::json;

use super::*;
use crate::adapters::{ToolCall, ToolResult};
use tapedeck_model::exchange::Kind;

/// One event for the model: a URL, bodies, times and, for LLM calls, what they said.
struct Ev {
    kind: Kind,
    url: String,
    req: Vec<u8>,
    res: Vec<u8>,
    start: u64,
    end: u64,
    llm: Option<LlmCall>,
    agent: Option<&'static str>,
}

fn get(url: &str, res: &str, start: u64, end: u64) -> Ev {
    Ev {
        kind: Kind::Tool,
        url: url.into(),
        req: Vec::new(),
        res: res.as_bytes().to_vec(),
        start,
        end,
        llm: None,
        agent: None,
    }
}

fn llm(call: LlmCall, start: u64, end: u64) -> Ev {
    Ev {
        kind: Kind::Llm,
        url: "https://api.openai.com/v1/chat/completions".into(),
        req: Vec::new(),
        res: Vec::new(),
        start,
        end,
        llm: Some(call),
        agent: None,
    }
}

fn graph(evs: &[Ev]) -> Graph {
    let mut b = Builder::new(evs.len(), evs.iter().any(|e| e.kind == Kind::Llm));
    for e in evs {
        let (req, res) = (b.scan_request(&e.req), b.scan_response(&e.res));
        b.push(&exchange(e), req, res);
    }
    b.build()
}

fn exchange(e: &Ev) -> Exchange<'_> {
    Exchange {
        agent: e.agent,
        start_ns: e.start,
        end_ns: e.end,
        url: &e.url,
        location: None,
        llm: e.llm.as_ref(),
    }
}

fn on(g: &Graph, i: usize) -> Vec<(u32, &'static str)> {
    g.deps(i).iter().map(|d| (d.on, d.link.as_str())).collect()
}

fn asks_weather(id: &str, city: &str) -> LlmCall {
    LlmCall {
        tool_calls: vec![ToolCall {
            id: Some(id.into()),
            name: "get_weather".into(),
            arguments: json!({ "city": city }),
        }],
        ..LlmCall::default()
    }
}

fn answers_with(id: &str, content: &str, history_text: Option<&str>) -> LlmCall {
    let mut assistant =
        vec![json!({"type": "tool_call", "id": id, "name": "get_weather", "arguments": {}})];
    if let Some(t) = history_text {
        assistant.push(json!({"type": "text", "content": t}));
    }
    LlmCall {
        tool_results: vec![ToolResult {
            id: Some(id.into()),
            name: Some("get_weather".into()),
            content: content.into(),
            is_error: false,
        }],
        input_messages: json!([
            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
            {"role": "assistant", "parts": assistant},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": id, "response": content}]}
        ]),
        ..LlmCall::default()
    }
}

#[test]
fn an_agent_step_depends_on_the_decision_and_the_tool_answer_it_carries() {
    let weather = r#"{"city": "Paris", "temp_c": 18}"#;
    let evs = vec![
        llm(asks_weather("call_1", "Paris"), 0, 10),
        get("https://weather.test/weather?city=Paris", weather, 11, 12),
        llm(
            answers_with("call_1", r#"{"city":"Paris","temp_c":18}"#, None),
            13,
            20,
        ),
    ];
    let g = graph(&evs);
    assert_eq!(on(&g, 0), vec![]);
    assert_eq!(on(&g, 1), vec![(0, "tool_arguments")]);
    assert_eq!(g.arguments_matched(1, 0, 0), 1);
    // The result (by id) and the tool's own answer (white space aside).
    assert_eq!(on(&g, 2), vec![(1, "tool_output"), (0, "tool_result")]);
    let runs = g.tool_calls(0);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].closing, Some(2));
    assert_eq!((runs[0].from_ns, runs[0].to_ns), (10, 13));
    assert!(g.tool_calls(1).is_empty());
}

#[test]
fn a_tool_request_sent_before_the_decision_ended_does_not_depend_on_it() {
    let evs = vec![
        llm(asks_weather("call_1", "Paris"), 0, 10),
        get("https://weather.test/weather?city=Paris", "{}", 5, 8),
    ];
    assert!(graph(&evs).deps(1).is_empty());
}

#[test]
fn assistant_text_and_tool_call_ids_in_the_history_link_to_the_answer_that_made_them() {
    let mut first = asks_weather("call_9f2c", "Paris");
    first.output_messages = json!([{"role": "assistant", "parts": [
        {"type": "text", "content": "Let me check. "}, {"type": "tool_call", "id": "call_9f2c"}]}]);
    let mut second = answers_with("call_9f2c", "18C", Some("Let me check."));
    second.tool_results.clear();
    let evs = vec![llm(first, 0, 10), llm(second, 20, 30)];
    let g = graph(&evs);
    assert_eq!(on(&g, 1), vec![(0, "tool_call_id")]);
    // Without the id, the text alone still links them.
    let mut third = answers_with("call_other", "18C", Some("Let me check."));
    third.tool_results.clear();
    let evs = vec![llm(evs[0].llm.clone().unwrap(), 0, 10), llm(third, 20, 30)];
    assert_eq!(on(&graph(&evs), 1), vec![(0, "assistant_text")]);
}

#[test]
fn a_distinctive_value_first_seen_in_one_response_links_the_request_that_carries_it() {
    let evs = vec![
        get(
            "https://api.test/items",
            r#"{"id":"obj-0001f0a9","name":"Paris"}"#,
            0,
            10,
        ),
        get("https://api.test/items/obj-0001f0a9", "{}", 20, 30),
        // Short common words never link: "Paris" was in the first response too.
        get("https://api.test/cities/Paris", "{}", 40, 50),
    ];
    let g = graph(&evs);
    assert_eq!(on(&g, 1), vec![(0, "value")]);
    assert!(g.deps(2).is_empty());
    let d = g.deps(1)[0];
    let text = describe(&d, 2, 1, &exchange(&evs[0]), &evs[0].res);
    assert_eq!(
        text,
        "step 2's request holds a value first seen in step 1's response (value \"obj-0001f0a9\" from its response)"
    );
}

#[test]
fn every_request_that_carries_a_handed_out_value_depends_on_its_source() {
    // An id handed out, looked up (the answer echoes it), then used: the use depends on
    // the response that handed it out, not only the first request that carried it.
    let evs = vec![
        get(
            "https://api.test/newid",
            r#"{"id":"ID000007Xb2bd7732"}"#,
            0,
            10,
        ),
        get(
            "https://api.test/lookup?ref=ID000007Xb2bd7732",
            r#"{"ref":"ID000007Xb2bd7732","ok":true}"#,
            20,
            30,
        ),
        get("https://api.test/use?ref=ID000007Xb2bd7732", "{}", 40, 50),
    ];
    let g = graph(&evs);
    assert_eq!(on(&g, 1), vec![(0, "value")]);
    assert_eq!(on(&g, 2), vec![(0, "value")]);
}

#[test]
fn a_value_the_client_knew_or_several_responses_showed_links_nothing() {
    // Sent in a request first: the client had it before any response.
    let evs = vec![
        get(
            "https://api.test/a?token=tok_5521ab9f",
            "{\"t\":\"tok_5521ab9f\"}",
            0,
            10,
        ),
        get("https://api.test/b?token=tok_5521ab9f", "{}", 20, 30),
    ];
    assert!(graph(&evs).deps(1).is_empty());
    // In two responses: either could be where the client took it from.
    let evs = vec![
        get("https://api.test/a", "{\"next\":\"cur_77ab12cd\"}", 0, 10),
        get("https://api.test/b", "{\"next\":\"cur_77ab12cd\"}", 0, 12),
        get("https://api.test/c?cursor=cur_77ab12cd", "{}", 20, 30),
    ];
    assert!(graph(&evs).deps(2).is_empty());
    // A response still running when the request left cannot be its source.
    let evs = vec![
        get("https://api.test/a", "{\"next\":\"cur_77ab12cd\"}", 0, 25),
        get("https://api.test/c?cursor=cur_77ab12cd", "{}", 20, 30),
    ];
    assert!(graph(&evs).deps(1).is_empty());
}

#[test]
fn concurrent_requests_with_nothing_in_common_are_independent() {
    let evs: Vec<Ev> = (0..24)
        .map(|i| {
            get(
                &format!("https://registry.test/pkg-{i}"),
                &format!("{{\"name\":\"pkg-{i}\",\"version\":\"1.0.{i}\"}}"),
                i * 3,
                i * 3 + 2,
            )
        })
        .collect();
    let g = graph(&evs);
    assert!((0..24).all(|i| g.deps(i).is_empty()));
}

#[test]
fn an_event_keeps_its_most_recent_dependencies() {
    let mut evs: Vec<Ev> = (0..40)
        .map(|i| {
            get(
                &format!("https://a.test/{i}"),
                &format!("{{\"id\":\"id-{i:08}x\"}}"),
                i * 10,
                i * 10 + 5,
            )
        })
        .collect();
    let url = format!(
        "https://a.test/all?ids={}",
        (0..40)
            .map(|i| format!("id-{i:08}x"))
            .collect::<Vec<_>>()
            .join(",")
    );
    evs.push(get(&url, "{}", 1000, 1010));
    let g = graph(&evs);
    let deps: Vec<u32> = g.deps(40).iter().map(|d| d.on).collect();
    assert_eq!(deps, (24..40).rev().collect::<Vec<u32>>());
}

#[test]
fn a_tool_call_without_a_closing_request_runs_until_the_next_llm_request() {
    let evs = vec![
        llm(asks_weather("call_1", "Paris"), 0, 10),
        get("https://weather.test/weather?city=Paris", "{}", 11, 12),
        llm(LlmCall::default(), 20, 30),
        get("https://weather.test/weather?city=Paris", "{}", 31, 32),
    ];
    let g = graph(&evs);
    assert_eq!(g.tool_calls(0)[0].to_ns, 20);
    assert_eq!(on(&g, 1), vec![(0, "tool_arguments")]);
    assert!(g.deps(3).is_empty());
}

#[test]
fn without_times_only_earlier_steps_are_depended_on() {
    // A tape whose events all say 0 ns: every response "ended" before every request.
    let evs = vec![
        get(
            "https://api.test/a?ref=obj-0002f0a9",
            r#"{"id":"obj-0001f0a9"}"#,
            0,
            0,
        ),
        get(
            "https://api.test/b?ref=obj-0001f0a9",
            r#"{"id":"obj-0002f0a9"}"#,
            0,
            0,
        ),
    ];
    let g = graph(&evs);
    assert!(g.deps(0).is_empty());
    assert_eq!(on(&g, 1), vec![(0, "value")]);
}
