//! `--inject` for record and replay: the rules of `tapedeck.toml` and the command line,
//! their body files read at start, and the tool names the rules pick by.

use std::sync::Arc;

use super::CmdError;
use tapedeck_model::exchange::inject::{Injector, ToolNamer};
use tapedeck_model::exchange::{EventSink, Kind};
use tapedeck_model::rules::Rules;
use tapedeck_record::Faults;
use tapedeck_store::Store;
use tapedeck_trace::causal::load::parse_llm;
use tapedeck_trace::tool_calls::ToolCalls;

/// The injector of the rules in force, if any rule injects; body files are read from the
/// working directory now, so a missing one stops the start rather than a run.
pub fn injector(rules: &Rules) -> Result<Option<Arc<Injector>>, CmdError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let injector = Injector::new(&rules.inject, &cwd)?.map(Arc::new);
    if let Some(i) = &injector {
        tracing::info!("injecting faults: {}", i.texts().join("; "));
    }
    Ok(injector)
}

/// What a recorder injects, and the sink that must see its events when a rule picks
/// tools by name (it learns the tool calls each LLM answer asks for).
pub fn faults(
    rules: &Rules,
    store: Arc<dyn Store>,
) -> Result<(Option<Faults>, Option<EventSink>), CmdError> {
    let Some(injector) = injector(rules)? else {
        return Ok((None, None));
    };
    let (sink, tools) = match injector.names_tools() {
        true => {
            let (sink, namer) = tool_tracker(store);
            (Some(sink), Some(namer))
        }
        false => (None, None),
    };
    Ok((Some(Faults { injector, tools }), sink))
}

/// A sink that notes the tool calls of every stored LLM answer, and the namer that names
/// a tool request by them (see [`tapedeck_trace::tool_calls`]).
pub fn tool_tracker(store: Arc<dyn Store>) -> (EventSink, ToolNamer) {
    let calls = Arc::new(ToolCalls::default());
    let noted = calls.clone();
    let sink: EventSink = Arc::new(move |session: &str, ev| {
        if ev.kind != Kind::Llm {
            return;
        }
        let body =
            |b3: &str| tapedeck_store::event_body_or_empty(store.as_ref(), session, ev.step, b3);
        let request = body(&ev.request.body.b3);
        let response = ev
            .response
            .as_ref()
            .map(|r| body(&r.body.b3))
            .unwrap_or_default();
        if let Some(llm) = parse_llm(&ev, &request, &response) {
            noted.note(session, &llm);
        }
    });
    let namer: ToolNamer =
        Arc::new(move |session: &str, _method: &str, url: &str| calls.name(session, url, b""));
    (sink, namer)
}
