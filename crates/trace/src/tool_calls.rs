//! The tool calls a session's LLM has just asked for, to name a tool request as it
//! arrives, before any trace of it exists (an `--inject tool:NAME` rule while recording,
//! or a call a what-if run's recording never held).
//!
//! It reads what [`crate::tool_names`] reads off a finished trace, by the same rule the
//! causal model hangs a tool's exchanges by: a request made after an LLM answer asked for
//! tool calls belongs to the call whose argument values it carries (all the words of a
//! value, [`Needles`]); the call carrying the most values wins.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::adapters::LlmCall;
use crate::causal::{request_words, Needles};

/// The latest tool calls of each session's LLM, by session.
#[derive(Default)]
pub struct ToolCalls {
    by_session: Mutex<HashMap<String, Vec<(String, Needles)>>>,
}

impl ToolCalls {
    /// Notes an LLM answer of `session`: its tool calls replace the earlier ones (an
    /// answer without any leaves them, a text answer between two tool rounds is common).
    pub fn note(&self, session: &str, call: &LlmCall) {
        if call.tool_calls.is_empty() {
            return;
        }
        let calls = call
            .tool_calls
            .iter()
            .map(|tc| (tc.name.clone(), Needles::of(tc)))
            .collect();
        self.by_session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session.to_string(), calls);
    }

    /// The tool a request of `session` to `url` (with `body`) calls, if it carries the
    /// arguments of one the session's LLM asked for.
    pub fn name(&self, session: &str, url: &str, body: &[u8]) -> Option<String> {
        let map = self.by_session.lock().unwrap_or_else(|p| p.into_inner());
        let calls = map.get(session)?;
        let words = request_words(url, body);
        calls
            .iter()
            .map(|(name, needles)| {
                let (n, _) = needles.matched(|w| words.binary_search(&w).is_ok());
                (n, name)
            })
            .filter(|(n, _)| *n > 0)
            .max_by_key(|(n, _)| *n)
            .map(|(_, name)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::ToolCall;

    fn asks(calls: &[(&str, serde_json::Value)]) -> LlmCall {
        LlmCall {
            tool_calls: calls
                .iter()
                .map(|(name, args)| ToolCall {
                    id: None,
                    name: name.to_string(),
                    arguments: args.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_request_is_named_by_the_call_whose_arguments_it_carries() {
        let t = ToolCalls::default();
        t.note(
            "s",
            &asks(&[
                ("get_weather", serde_json::json!({"city": "Paris"})),
                ("get_price", serde_json::json!({"item": "Widget9000"})),
            ]),
        );
        let w = t.name("s", "https://t.test/weather?city=Paris", b"");
        assert_eq!(w.as_deref(), Some("get_weather"));
        let p = t.name("s", "https://t.test/price", br#"{"item":"Widget9000"}"#);
        assert_eq!(p.as_deref(), Some("get_price"));
        assert_eq!(t.name("s", "https://t.test/other?x=1", b""), None);
        assert_eq!(
            t.name("other-session", "https://t.test/weather?city=Paris", b""),
            None
        );
        // A text answer leaves the calls of the last round.
        t.note("s", &LlmCall::default());
        assert!(t
            .name("s", "https://t.test/weather?city=Paris", b"")
            .is_some());
    }
}
