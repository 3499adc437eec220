//! Walk back: which earlier steps' output flowed into a step.
//!
//! The viewer asks one function, [`inputs`], so the links can come from a fuller
//! dependency model later without touching the pages. Today they come from what the span
//! tree already matched, plus the assistant text an LLM request carries back:
//! - a tool call's HTTP exchanges take their arguments from the LLM response that asked
//!   for the call;
//! - the LLM request that carries a tool result back depends on the exchanges that
//!   produced it, and on the response that asked for the call;
//! - an LLM request whose history holds an earlier response's assistant text depends on
//!   that response.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use tapedeck_trace::spans::{AttrValue, Parsed, Role, Trace};

/// For each step that has any, the earlier steps whose output flowed into it (ascending).
pub fn inputs(trace: &Trace, parsed: &[Parsed]) -> BTreeMap<u64, Vec<u64>> {
    let mut links: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    let mut add = |to: u64, from: u64| {
        if from < to {
            links.entry(to).or_default().insert(from);
        }
    };
    for sp in &trace.spans {
        let decided =
            matches!(sp.attr("gen_ai.tool.type"), Some(AttrValue::Str(t)) if t == "function");
        let (Role::Tool, true, Some(asked_by)) = (sp.role, decided, sp.step) else {
            continue;
        };
        let ran: Vec<u64> = sp
            .children
            .iter()
            .filter_map(|&c| trace.spans[c].step)
            .collect();
        for &h in &ran {
            add(h, asked_by);
        }
        let carried_back = sp
            .events
            .iter()
            .filter(|e| e.name == "gen_ai.tool.result")
            .flat_map(|e| e.attributes.iter())
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("tapedeck.result.step", AttrValue::Int(s)) => Some(*s as u64),
                _ => None,
            });
        if let Some(r) = carried_back {
            add(r, asked_by);
            for &h in &ran {
                add(r, h);
            }
        }
    }
    // Assistant text carried back in a later request's history.
    let mut said: HashMap<&str, u64> = HashMap::new();
    for p in parsed {
        let Some(call) = &p.llm else { continue };
        if let Value::Array(messages) = &call.input_messages {
            for m in messages {
                if m.get("role").and_then(Value::as_str) != Some("assistant") {
                    continue;
                }
                let text = assistant_text(m);
                if let Some(&from) = said.get(text.trim()) {
                    add(p.event.step, from);
                }
            }
        }
        let out = call.output_text.trim();
        if !out.is_empty() {
            said.insert(out, p.event.step);
        }
    }
    links
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

fn assistant_text(message: &Value) -> String {
    let Some(Value::Array(parts)) = message.get("parts") else {
        return String::new();
    };
    parts
        .iter()
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|p| p.get("content").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tapedeck_model::exchange::{BodyRef, Event, Kind, RequestRecord, ResponseRecord, Timing};
    use tapedeck_model::rules::Rules;
    use tapedeck_trace::spans::{build_from, TraceOptions};

    fn event(step: u64, kind: Kind, url: &str, start_ms: u64) -> Event {
        Event {
            step,
            kind,
            key: String::new(),
            rules: None,
            agent: None,
            request: RequestRecord {
                method: "POST".into(),
                url: url.into(),
                version: "HTTP/1.1".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: BodyRef::empty(),
            },
            response: Some(ResponseRecord {
                status: 200,
                version: "HTTP/1.1".into(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: BodyRef::empty(),
                chunks: None,
                complete: true,
            }),
            timing: Timing {
                start_ns: start_ms * 1_000_000,
                end_ns: (start_ms + 5) * 1_000_000,
                ttfb_ns: None,
                start_unix_ns: start_ms * 1_000_000,
                end_unix_ns: (start_ms + 5) * 1_000_000,
            },
            error: None,
        }
    }

    #[test]
    fn a_tool_result_walks_back_to_the_tool_exchange_and_the_call_that_asked() {
        let llm = "https://api.openai.com/v1/chat/completions";
        let events = [
            event(1, Kind::Llm, llm, 0),
            event(2, Kind::Tool, "https://tools.test/weather?city=Paris", 10),
            event(3, Kind::Llm, llm, 20),
            event(4, Kind::Llm, llm, 30),
        ];
        let ask = json!({"model": "m", "messages": [{"role": "user", "content": "weather?"}]});
        let asked = json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c1", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            "finish_reason": "tool_calls"}]});
        let back = json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
              "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\":18}"}]});
        let answer = json!({"choices": [{"message": {"role": "assistant", "content": "It is 18 C."},
            "finish_reason": "stop"}]});
        let follow = json!({"model": "m", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "It is 18 C."},
            {"role": "user", "content": "thanks"}]});
        let bodies = [
            (ask.to_string(), asked.to_string()),
            (String::new(), "{\"temp\":18}".to_string()),
            (back.to_string(), answer.to_string()),
            (follow.to_string(), answer.to_string()),
        ];
        let parsed: Vec<Parsed> = events
            .iter()
            .zip(bodies.iter())
            .map(|(e, (q, r))| Parsed::new(e, q.as_bytes().to_vec(), r.as_bytes().to_vec()))
            .collect();
        let rules = Rules::default();
        let trace = build_from("s", &parsed, &rules, &TraceOptions::default());
        let got = inputs(&trace, &parsed);
        assert_eq!(got.get(&2), Some(&vec![1]), "{got:?}");
        assert_eq!(got.get(&3), Some(&vec![1, 2]), "{got:?}");
        assert_eq!(got.get(&4), Some(&vec![3]), "{got:?}");
        assert_eq!(got.get(&1), None);
    }
}
