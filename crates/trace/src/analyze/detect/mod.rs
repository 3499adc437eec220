//! The detectors, one per file, each with its tests on hand-built events.
//!
//! Every detector reads the same [`View`] of a session (its parsed exchanges, the rules,
//! and each exchange's tool name under the one naming rule) and appends its findings.

mod cascading_error;
mod context_pressure;
mod empty_tool_result;
mod retry_loop;
mod slow_step;
#[cfg(test)]
pub(crate) mod testing;
mod token_burn;
mod tool_error_ignored;
mod truncation;

use super::flow::{flows, Flow};
use super::Finding;
use crate::spans::{build_from, Parsed, TraceOptions};
use crate::tool_names::{by_rule, ToolNames};
use tapedeck_model::exchange::Event;
use tapedeck_model::rules::Rules;

/// A session as the detectors read it.
pub struct View<'a> {
    pub parsed: &'a [Parsed<'a>],
    pub rules: &'a Rules,
    pub tools: ToolNames,
    /// What flowed from which exchange into which.
    pub flows: Vec<Flow>,
}

impl<'a> View<'a> {
    /// Reads the tool names off the session's trace, so findings name tools as `show` does.
    pub fn new(parsed: &'a [Parsed<'a>], rules: &'a Rules) -> View<'a> {
        let trace = build_from("", parsed, rules, &TraceOptions::default());
        let tools = ToolNames::of(&trace, parsed, rules);
        View {
            parsed,
            rules,
            tools,
            flows: flows(parsed),
        }
    }

    /// The tool an exchange belongs to (see [`crate::tool_names`]).
    pub fn tool(&self, ev: &Event) -> String {
        self.tools
            .get(ev.step)
            .map(str::to_string)
            .unwrap_or_else(|| by_rule(ev, self.rules))
    }
}

/// Runs every detector, in [`super::DETECTORS`] order.
pub fn run_all(v: &View, out: &mut Vec<Finding>) {
    retry_loop::detect(v, out);
    tool_error_ignored::detect(v, out);
    empty_tool_result::detect(v, out);
    context_pressure::detect(v, out);
    truncation::detect(v, out);
    token_burn::detect(v, out);
    cascading_error::detect(v, out);
    slow_step::detect(v, out);
}
