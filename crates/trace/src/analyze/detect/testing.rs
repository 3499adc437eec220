//! Hand-built events for the detectors' tests: no store, no proxy, just the facts a
//! detector reads.

use crate::adapters::{LlmCall, ToolCall, ToolResult};
use crate::spans::Parsed;
use tapedeck_model::exchange::{BodyRef, Event, Kind, RequestRecord, ResponseRecord, Timing};

pub const LLM_URL: &str = "https://llm.test/v1/chat/completions";
pub const ERR: &str = r#"{"error":{"message":"backend down"}}"#;

/// An exchange that took `start_ms..end_ms` and answered `status`.
pub fn event(
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
            trailers: Vec::new(),
            broke: None,
            members: Vec::new(),
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
        injected: None,
    }
}

/// An LLM exchange of `agent` (or none).
pub fn llm_event(step: u64, agent: Option<&str>, start_ms: u64, end_ms: u64) -> Event {
    let mut e = event(step, Kind::Llm, "POST", LLM_URL, 200, start_ms, end_ms);
    e.agent = agent.map(str::to_string);
    e
}

/// A GET tool exchange of `agent` (or none).
pub fn tool_event(
    step: u64,
    agent: Option<&str>,
    url: &str,
    status: u16,
    start_ms: u64,
    end_ms: u64,
) -> Event {
    let mut e = event(step, Kind::Tool, "GET", url, status, start_ms, end_ms);
    e.agent = agent.map(str::to_string);
    e
}

/// An LLM call with `input` tokens that carried `results` (id, content) of get_weather
/// and answered `answer`.
pub fn llm_call(input: u64, results: Vec<(&str, &str)>, answer: &str) -> LlmCall {
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

/// An LLM call that asks for `name(arguments)` with call id `id`.
pub fn asks(id: &str, name: &str, arguments: serde_json::Value) -> LlmCall {
    LlmCall {
        provider: "openai".into(),
        operation: "chat".into(),
        request_model: Some("gpt-4o".into()),
        input_tokens: Some(10),
        output_tokens: Some(10),
        tool_calls: vec![ToolCall {
            id: Some(id.into()),
            name: name.into(),
            arguments,
        }],
        ..Default::default()
    }
}

pub fn parsed<'a>(ev: &'a Event, llm: Option<LlmCall>, req: &str, resp: &str) -> Parsed<'a> {
    Parsed {
        event: ev,
        llm,
        mcp: None,
        realtime: None,
        request_body: req.as_bytes().to_vec(),
        response_body: resp.as_bytes().to_vec(),
    }
}

/// An LLM call that asks `get_price` for the widget (call id `c1`).
pub fn asks_price() -> LlmCall {
    asks("c1", "get_price", serde_json::json!({"item": "widget"}))
}

/// The price hand-off the cascade, flow and explain tests share: the researcher asks
/// `get_price` for the widget (step 1), the shop answers `price` (step 2), the researcher
/// writes `NOTES` from that answer (step 3), and the writer, sent `writer_request`,
/// answers `writer_answer` (step 4). More exchanges may follow (`then`).
pub struct PriceHandOff {
    events: Vec<Event>,
    price: String,
    writer_request: String,
    writer_answer: String,
    /// Response bodies of the exchanges after step 4.
    later: Vec<String>,
}

impl PriceHandOff {
    pub const NOTES: &'static str = "Research notes: the widget costs EUR 1.299";

    pub fn new(price: &str, writer_request: &str, writer_answer: &str) -> PriceHandOff {
        PriceHandOff {
            events: vec![
                llm_event(1, Some("researcher"), 0, 10),
                tool_event(
                    2,
                    Some("researcher"),
                    "https://shop.test/price?item=widget",
                    200,
                    11,
                    12,
                ),
                llm_event(3, Some("researcher"), 13, 20),
                llm_event(4, Some("writer"), 21, 30),
            ],
            price: price.into(),
            writer_request: writer_request.into(),
            writer_answer: writer_answer.into(),
            later: Vec::new(),
        }
    }

    /// A writer whose request quotes the notes after `prompt`.
    pub fn writer_quoting(prompt: &str) -> String {
        serde_json::json!({"messages": [
            {"role": "user", "content": format!("{prompt}{}", Self::NOTES)}
        ]})
        .to_string()
    }

    /// Then a tool exchange `ev` that answered `body`.
    pub fn then(mut self, ev: Event, body: &str) -> PriceHandOff {
        self.events.push(ev);
        self.later.push(body.into());
        self
    }

    pub fn parsed(&self) -> Vec<Parsed<'_>> {
        let e = &self.events;
        let mut p = vec![
            parsed(&e[0], Some(asks_price()), "{}", "{}"),
            parsed(&e[1], None, "", &self.price),
            parsed(
                &e[2],
                Some(llm_call(20, vec![("c1", &self.price)], Self::NOTES)),
                "{}",
                "{}",
            ),
            parsed(
                &e[3],
                Some(llm_call(20, vec![], &self.writer_answer)),
                &self.writer_request,
                "{}",
            ),
        ];
        for (ev, body) in e[4..].iter().zip(&self.later) {
            p.push(parsed(ev, None, "", body));
        }
        p
    }
}

/// Runs one detector over `p` with default rules.
pub fn run(
    p: &[Parsed],
    detect: fn(&super::View, &mut Vec<crate::analyze::Finding>),
) -> Vec<crate::analyze::Finding> {
    let rules = tapedeck_model::rules::Rules::default();
    let v = super::View::new(p, &rules);
    let mut out = Vec::new();
    detect(&v, &mut out);
    out
}
