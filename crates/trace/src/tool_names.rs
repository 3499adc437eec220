//! One tool-naming rule for everything that names a tool: the trace (and so `show` and
//! OTLP), `analyze`, `cluster` and the issues table.
//!
//! A non-LLM exchange belongs to the tool the LLM asked for when it ran under that tool
//! call (the trace hangs it under the call's `execute_tool` span): its name is the
//! function name the LLM used (`get_weather`). An exchange no call claims is named by
//! the first matching `[[tool_name]]` rule of `tapedeck.toml`, else by its host and first
//! path segment (`api.weather.test/v1`). Reading the names off the built trace, rather
//! than guessing them again, keeps every command saying the same name for a step.

use std::collections::HashMap;

use super::spans::{AttrValue, Parsed, Role, Trace};
use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::Rules;

/// The name of an exchange no tool call claims: the `[[tool_name]]` rule, else host and
/// first path segment.
pub fn by_rule(ev: &Event, rules: &Rules) -> String {
    by_rule_with(&ev.request.method, &UrlParts::parse(&ev.request.url), rules)
}

/// [`by_rule`] with the URL already parsed.
pub fn by_rule_with(method: &str, parts: &UrlParts, rules: &Rules) -> String {
    rules.tool_name(method, &parts.host, &parts.path)
}

/// The tool name of every non-LLM exchange of a session, by step.
#[derive(Debug, Default, Clone)]
pub struct ToolNames {
    names: HashMap<u64, String>,
}

impl ToolNames {
    /// Reads the names off a trace built from `parsed`: the function name of the tool
    /// call an exchange ran under, else [`by_rule`].
    pub fn of(trace: &Trace, parsed: &[Parsed], rules: &Rules) -> ToolNames {
        let mut names = HashMap::new();
        for sp in &trace.spans {
            let (Role::Http, Some(step), Some(parent)) = (sp.role, sp.step, sp.parent) else {
                continue;
            };
            let call = &trace.spans[parent];
            let decided =
                matches!(call.attr("gen_ai.tool.type"), Some(AttrValue::Str(t)) if t == "function");
            if call.role != Role::Tool || !decided {
                continue;
            }
            if let Some(AttrValue::Str(name)) = call.attr("gen_ai.tool.name") {
                names.insert(step, name.clone());
            }
        }
        for p in parsed.iter().filter(|p| p.event.kind != Kind::Llm) {
            names.entry(p.event.step).or_insert_with(|| {
                // An MCP `tools/call` names its tool itself.
                p.mcp
                    .as_ref()
                    .and_then(|m| m.tool_name.clone())
                    .unwrap_or_else(|| by_rule(p.event, rules))
            });
        }
        ToolNames { names }
    }

    /// The tool name of the exchange at `step`; `None` for an LLM call or an unknown step.
    pub fn get(&self, step: u64) -> Option<&str> {
        self.names.get(&step).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::detect_testing::{asks, llm_call, llm_event, parsed, tool_event};
    use crate::spans::{build_from, TraceOptions};

    #[test]
    fn a_claimed_exchange_is_named_by_its_function_and_others_by_rule_or_host() {
        let e1 = llm_event(1, None, 0, 10);
        let e2 = tool_event(2, None, "https://w.test/v1/weather?city=Paris", 200, 11, 12);
        let e3 = llm_event(3, None, 13, 20);
        let e4 = tool_event(4, None, "https://search.test/v2/q?x=1", 200, 21, 22);
        let e5 = tool_event(5, None, "https://named.test/any", 200, 23, 24);
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
            parsed(&e2, None, "", "{}"),
            parsed(&e3, Some(llm_call(5, vec![("c1", "{}")], "ok")), "{}", "{}"),
            parsed(&e4, None, "", "{}"),
            parsed(&e5, None, "", "{}"),
        ];
        let rules = Rules::from_toml(
            "[[tool_name]]\nhost = \"named.test\"\nname = \"lookup\"\n",
            &Default::default(),
        )
        .unwrap();
        let trace = build_from("s", &p, &rules, &TraceOptions::default());
        let names = ToolNames::of(&trace, &p, &rules);
        assert_eq!(names.get(2), Some("get_weather"));
        assert_eq!(names.get(4), Some("search.test/v2"));
        assert_eq!(names.get(5), Some("lookup"));
        assert_eq!(names.get(1), None);
        // The trace's own tool span for an unclaimed exchange carries the same name.
        assert!(trace.spans.iter().any(|s| s.name == "execute_tool lookup"));
    }
}
