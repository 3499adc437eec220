//! Injected faults while recording (chaos in staging): which exchange an `--inject` rule
//! picks, judged from the request head as it arrives, before anything goes upstream.
//!
//! Record has no response and no body yet when it must decide, so a rule's kind is the
//! head's (a POST to an inference path counts as `llm`), and a tool is named by the
//! [`ToolNamer`] the binary gives (the tool calls the session's LLM answers asked for),
//! else by the `[[tool_name]]` rules and the host.

use std::sync::Arc;

use tapedeck_model::exchange::canonical::UrlParts;
use tapedeck_model::exchange::inject::{Injection, Injector, Query};
use tapedeck_model::exchange::kind::classify_named;
use tapedeck_model::rules::Rules;

pub use tapedeck_model::exchange::inject::ToolNamer;

/// The rules a recorder injects, and how it names tools for them.
#[derive(Clone)]
pub struct Faults {
    pub injector: Arc<Injector>,
    pub tools: Option<ToolNamer>,
}

impl Faults {
    /// Whether a rule changes the exchange `step` of `session`.
    pub(crate) fn decide(
        &self,
        session: &str,
        step: u64,
        method: &str,
        url: &str,
        rules: &Rules,
    ) -> Option<Injection> {
        let parts = UrlParts::parse(url);
        let kind = classify_named(method, &parts.host, &parts.path, method == "POST", rules);
        let q = Query {
            session,
            step,
            kind,
            host: &parts.host,
        };
        self.injector.decide(&q, || {
            self.tools
                .as_ref()
                .and_then(|t| t(session, method, url))
                .or_else(|| Some(rules.tool_name(method, &parts.host, &parts.path)))
        })
    }
}
