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
use crate::exchange::canonical::UrlParts;
use crate::exchange::{Event, Kind};
use crate::rules::Rules;

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
            names
                .entry(p.event.step)
                .or_insert_with(|| by_rule(p.event, rules));
        }
        ToolNames { names }
    }

    /// The tool name of the exchange at `step`; `None` for an LLM call or an unknown step.
    pub fn get(&self, step: u64) -> Option<&str> {
        self.names.get(&step).map(String::as_str)
    }
}
