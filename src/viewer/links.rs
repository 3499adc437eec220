//! Walk back: which earlier steps' output flowed into a step, and what flowed.
//!
//! The links are the dependency model's ([`tapedeck_trace::causal`]): the ones replay
//! enforces under `--order causal` and the trace hangs tool calls by. A step depends on
//! an earlier one when its request carries content of that step's response: a tool
//! call's result or id, assistant text, a tool's answer, a tool call's arguments, or a
//! distinctive value first seen in that response, whichever agent sent it (a value one
//! agent hands another links them too). The graph is built from the parse the span tree
//! reads ([`tapedeck_trace::spans::tool_graph`]); the run page gets its links as step
//! numbers ([`inputs`]); the step panel gets, for each, the value that flowed
//! ([`explain`]), found again in the bodies when the panel asks, since the graph keeps
//! only hashes.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::Serialize;

use crate::recording::Recording;
use tapedeck_model::exchange::{BodyRef, Event};
use tapedeck_trace::causal::{self, load, Graph};

/// Characters of a flowing value the step panel shows.
const VALUE_CHARS: usize = 200;

/// For each step that has any, the earlier steps whose output flowed into it (ascending).
/// `events` are the session's, in the order the graph was built from.
pub fn inputs(events: &[Event], graph: &Graph) -> BTreeMap<u64, Vec<u64>> {
    let mut links = BTreeMap::new();
    for (i, ev) in events.iter().enumerate() {
        let from: BTreeSet<u64> = graph
            .deps(i)
            .iter()
            .filter_map(|d| events.get(d.on as usize))
            .map(|d| d.step)
            .collect();
        if !from.is_empty() {
            links.insert(ev.step, from.into_iter().collect());
        }
    }
    links
}

/// One step that flowed into another, as the step panel lists it.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Input {
    pub step: u64,
    /// Why, in the model's words (`tool_result`, `value`, ...).
    pub link: &'static str,
    /// What flowed: the value found again in that step's response (cut to a few hundred
    /// characters), when it can be.
    pub value: Option<String>,
    /// One sentence, as a replay miss names a dependency.
    pub why: String,
}

/// What flowed into event `e` (an index into the session's events), most recent first.
pub fn explain(rec: &Recording, graph: &Graph, e: usize) -> Vec<Input> {
    let Some(ev) = rec.events.get(e) else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for dep in graph.deps(e) {
        let Some(d) = rec.events.get(dep.on as usize) else {
            continue;
        };
        // One line per step: the first link the model found is the most telling.
        if !seen.insert(d.step) {
            continue;
        }
        let request = read(rec, &d.request.body);
        let response = d
            .response
            .as_ref()
            .map(|r| read(rec, &r.body))
            .unwrap_or_default();
        let llm = load::parse_llm(d, &request, &response);
        let x = load::exchange(d, llm.as_ref());
        out.push(Input {
            step: d.step,
            link: dep.link.as_str(),
            value: causal::value_of(dep, &x, &response)
                .filter(|v| !v.is_empty())
                .map(|v| causal::preview(&v, VALUE_CHARS)),
            why: causal::describe(dep, ev.step, d.step, &x, &response),
        });
    }
    out
}

/// A body the model could have read (it reads none larger).
fn read(rec: &Recording, r: &BodyRef) -> Bytes {
    if r.len > load::SCAN_LIMIT {
        return Bytes::new();
    }
    rec.body(r).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;
    use tapedeck_model::exchange::{Kind, RequestRecord, ResponseRecord, Timing};
    use tapedeck_store::tape::{Tape, TapeHeader};

    struct Step {
        kind: Kind,
        url: &'static str,
        agent: Option<&'static str>,
        request: String,
        response: String,
    }

    fn step(kind: Kind, url: &'static str, request: String, response: String) -> Step {
        Step {
            kind,
            url,
            agent: None,
            request,
            response,
        }
    }

    /// A session of `steps`, 10 ms apart, each 5 ms long, with its bodies in memory.
    fn recording(steps: Vec<Step>) -> Recording {
        let mut bodies = foldhash::HashMap::default();
        let mut body = |text: &str| {
            let b3 = blake3::hash(text.as_bytes()).to_hex().to_string();
            bodies.insert(b3.clone(), Bytes::from(text.to_string()));
            BodyRef {
                b3,
                len: text.len() as u64,
                encoding: None,
                at: None,
            }
        };
        let json_headers = || vec![("content-type".to_string(), "application/json".to_string())];
        let events: Vec<Event> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let at = i as u64 * 10_000_000;
                Event {
                    step: i as u64 + 1,
                    kind: s.kind,
                    key: String::new(),
                    rules: None,
                    agent: s.agent.map(str::to_string),
                    request: RequestRecord {
                        method: "POST".into(),
                        url: s.url.into(),
                        version: "HTTP/1.1".into(),
                        headers: json_headers(),
                        body: body(&s.request),
                    },
                    response: Some(ResponseRecord {
                        status: 200,
                        version: "HTTP/1.1".into(),
                        headers: json_headers(),
                        body: body(&s.response),
                        chunks: None,
                        complete: true,
                        trailers: Vec::new(),
                        broke: None,
                        members: Vec::new(),
                    }),
                    timing: Timing {
                        start_ns: at,
                        end_ns: at + 5_000_000,
                        ttfb_ns: None,
                        start_unix_ns: at,
                        end_unix_ns: at + 5_000_000,
                    },
                    error: None,
                    ws: None,
                    injected: None,
                }
            })
            .collect();
        let header = TapeHeader {
            tapedeck_tape: 1,
            session: "s".into(),
            events: events.len() as u64,
            exit_code: None,
        };
        Recording::from_tape(
            Tape {
                header,
                events,
                bodies,
                files: Default::default(),
            },
            "test".into(),
        )
    }

    fn built(rec: &Recording) -> Graph {
        tapedeck_trace::spans::tool_graph(&tapedeck_trace::spans::parse_events(rec))
    }

    const CHAT: &str = "https://api.openai.com/v1/chat/completions";

    #[test]
    fn a_tool_result_walks_back_to_the_tool_exchange_and_the_call_that_asked() {
        let ask = json!({"model": "m", "messages": [{"role": "user", "content": "weather?"}]});
        let asked = json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_7d2e9a41", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            "finish_reason": "tool_calls"}]});
        let answer = "{\"temp\":18,\"reading\":\"rd_4c81f07b2e\"}";
        let back = json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_7d2e9a41", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_7d2e9a41", "content": answer}]});
        let done = json!({"choices": [{"message": {"role": "assistant", "content": "It is 18 C."},
            "finish_reason": "stop"}]});
        let rec = recording(vec![
            step(Kind::Llm, CHAT, ask.to_string(), asked.to_string()),
            step(
                Kind::Tool,
                "https://tools.test/weather?city=Paris",
                String::new(),
                answer.to_string(),
            ),
            step(Kind::Llm, CHAT, back.to_string(), done.to_string()),
        ]);
        let g = built(&rec);
        let got = inputs(&rec.events, &g);
        assert_eq!(got.get(&2), Some(&vec![1]), "{got:?}");
        assert_eq!(got.get(&3), Some(&vec![1, 2]), "{got:?}");
        assert_eq!(got.get(&1), None);

        let why = explain(&rec, &g, 2);
        let by_step: HashMap<u64, &Input> = why.iter().map(|i| (i.step, i)).collect();
        let call = by_step[&1];
        assert_eq!(call.link, "tool_result");
        assert_eq!(call.value.as_deref(), Some("call_7d2e9a41"));
        assert!(call.why.contains("get_weather"), "{}", call.why);
        let tool = by_step[&2];
        assert!(
            tool.value
                .as_deref()
                .is_some_and(|v| v.contains("rd_4c81f07b2e")),
            "{tool:?}"
        );
        let args = explain(&rec, &g, 1);
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].link, "tool_arguments");
        assert_eq!(args[0].value.as_deref(), Some("Paris"));
    }

    #[test]
    fn a_value_one_agent_hands_another_links_their_steps() {
        let planned = json!({"choices": [{"message": {"role": "assistant",
            "content": "Booked: reservation rsv-8c1f3a2b9d"}, "finish_reason": "stop"}]});
        let mut planner = step(
            Kind::Llm,
            CHAT,
            json!({"model": "m", "messages": [{"role": "user", "content": "book it"}]}).to_string(),
            planned.to_string(),
        );
        planner.agent = Some("planner");
        let mut writer = step(
            Kind::Tool,
            "https://tools.test/notes",
            json!({"note": "trip", "ref": "rsv-8c1f3a2b9d"}).to_string(),
            "{\"ok\":true}".to_string(),
        );
        writer.agent = Some("writer");
        let rec = recording(vec![planner, writer]);
        let g = built(&rec);
        assert_eq!(inputs(&rec.events, &g).get(&2), Some(&vec![1]));
        let why = explain(&rec, &g, 1);
        assert_eq!(why.len(), 1, "{why:?}");
        assert_eq!(why[0].step, 1);
        assert_eq!(why[0].link, "value");
        assert_eq!(why[0].value.as_deref(), Some("rsv-8c1f3a2b9d"));
        assert!(why[0].why.contains("step 1"), "{}", why[0].why);
    }
}
