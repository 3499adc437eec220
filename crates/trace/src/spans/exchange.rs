//! The spans of one exchange, built the same way for the batch export (`show`, `otlp`,
//! the viewer, `analyze`) and the live export: an LLM exchange's call spans, and the span
//! of an HTTP exchange that is no MCP call. Id, name, kind, attributes and error are
//! decided here; where a span hangs is the caller's to say, since the batch tree and the
//! live exporter know different amounts of the session.

use super::{
    error_of, http_attrs, llm_span_attrs, new_span, s, AttrValue, Parsed, Role, Span, SpanKind,
    TraceOptions,
};

/// Sets a span's `error.type` and status message, when there is an error.
pub(crate) fn set_error(sp: &mut Span, error: Option<(String, String)>) {
    if let Some((t, msg)) = error {
        sp.attributes.push(("error.type".into(), AttrValue::Str(t)));
        sp.error = Some(msg);
    }
}

/// The name of an LLM call's span: the operation and the model asked for.
fn llm_name(call: &crate::adapters::LlmCall) -> String {
    match &call.request_model {
        Some(m) => format!("{} {m}", call.operation),
        None => call.operation.clone(),
    }
}

/// The spans of an LLM exchange, one per call in turn order (a Realtime session holds one
/// per model turn; the turn is the span id's index). An exchange no adapter parsed still
/// gets a `chat` span, with provider `unknown`.
pub(crate) fn llm_spans(session: &str, p: &Parsed, opts: &TraceOptions) -> Vec<Span> {
    let ev = p.event;
    let calls = p.calls();
    if calls.is_empty() {
        let mut a = http_attrs(ev);
        a.push(("gen_ai.operation.name".into(), s("chat")));
        a.push(("gen_ai.provider.name".into(), s("unknown")));
        let mut sp = new_span(
            session,
            Role::Llm,
            "llm",
            Some(ev.step),
            0,
            "chat".to_string(),
            SpanKind::Client,
            ev.timing.start_unix_ns,
            ev.timing.end_unix_ns,
            a,
        );
        set_error(&mut sp, error_of(p));
        return vec![sp];
    }
    calls
        .into_iter()
        .enumerate()
        .map(|(turn, (call, start, end))| {
            let mut sp = new_span(
                session,
                Role::Llm,
                "llm",
                Some(ev.step),
                turn,
                llm_name(call),
                SpanKind::Client,
                start,
                end,
                llm_span_attrs(ev, call, opts),
            );
            // A Realtime turn fails on its own; the session's exchange is not its status.
            let error = match &p.realtime {
                Some(_) => call
                    .error_type
                    .clone()
                    .map(|t| (t, call.error_message.clone().unwrap_or_default())),
                None => error_of(p),
            };
            set_error(&mut sp, error);
            sp
        })
        .collect()
}

/// The span of a non-LLM exchange that is no MCP call: an HTTP span named by its tool
/// when a tool call claimed it, an `execute_tool` span of its own when it is a tool's
/// exchange nothing claimed, else `METHOD host`.
pub(crate) fn exchange_span(
    session: &str,
    p: &Parsed,
    tool_name: &str,
    host: &str,
    claimed: bool,
) -> Span {
    let ev = p.event;
    let (start, end) = (ev.timing.start_unix_ns, ev.timing.end_unix_ns);
    let mut sp = if claimed {
        new_span(
            session,
            Role::Http,
            "http",
            Some(ev.step),
            0,
            tool_name.to_string(),
            SpanKind::Client,
            start,
            end,
            http_attrs(ev),
        )
    } else if ev.kind == tapedeck_model::exchange::Kind::Tool && p.is_tool() {
        let mut a = vec![
            ("gen_ai.operation.name".to_string(), s("execute_tool")),
            ("gen_ai.tool.name".to_string(), s(tool_name)),
            ("gen_ai.tool.type".to_string(), s("extension")),
        ];
        a.extend(http_attrs(ev));
        new_span(
            session,
            Role::Tool,
            "http-tool",
            Some(ev.step),
            0,
            format!("execute_tool {tool_name}"),
            SpanKind::Internal,
            start,
            end,
            a,
        )
    } else {
        new_span(
            session,
            Role::Http,
            "http",
            Some(ev.step),
            0,
            format!("{} {host}", ev.request.method),
            SpanKind::Client,
            start,
            end,
            http_attrs(ev),
        )
    };
    set_error(&mut sp, error_of(p));
    sp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::detect::testing::{asks, event, llm_event, parsed, tool_event};
    use crate::spans::span_id;
    use tapedeck_model::exchange::Kind;

    fn attr<'a>(sp: &'a Span, k: &str) -> Option<&'a str> {
        match sp.attr(k) {
            Some(AttrValue::Str(v)) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn an_llm_exchange_no_adapter_parsed_is_a_chat_span_of_an_unknown_provider() {
        let ev = llm_event(4, None, 0, 10);
        let p = parsed(&ev, None, "not json", "");
        let spans = llm_spans("s", &p, &TraceOptions::default());
        assert_eq!(spans.len(), 1);
        let sp = &spans[0];
        assert_eq!(sp.name, "chat");
        assert_eq!(attr(sp, "gen_ai.operation.name"), Some("chat"));
        assert_eq!(attr(sp, "gen_ai.provider.name"), Some("unknown"));
        assert_eq!(attr(sp, "server.address"), Some("llm.test"));
        assert_eq!(sp.span_id, span_id("s", "llm", 4, 0));
        assert!(sp.error.is_none());
    }

    #[test]
    fn a_parsed_call_is_named_by_operation_and_model_and_fails_as_its_exchange() {
        let mut ev = llm_event(2, None, 0, 10);
        ev.response.as_mut().unwrap().status = 503;
        let p = parsed(
            &ev,
            Some(asks("c1", "get_weather", serde_json::json!({}))),
            "",
            "",
        );
        let spans = llm_spans("s", &p, &TraceOptions::default());
        assert_eq!(spans[0].name, "chat gpt-4o");
        assert_eq!(attr(&spans[0], "gen_ai.provider.name"), Some("openai"));
        assert_eq!(attr(&spans[0], "error.type"), Some("503"));
        assert_eq!(spans[0].error.as_deref(), Some("HTTP 503"));
    }

    #[test]
    fn a_claimed_exchange_is_named_by_its_tool_an_unclaimed_tool_is_its_own_call() {
        let ev = tool_event(3, None, "https://tools.test/weather?q=x", 200, 0, 5);
        let p = parsed(&ev, None, "", "{\"t\":1}");
        let claimed = exchange_span("s", &p, "weather", "tools.test", true);
        assert_eq!(
            (claimed.name.as_str(), claimed.role),
            ("weather", Role::Http)
        );
        assert_eq!(claimed.span_id, span_id("s", "http", 3, 0));
        let own = exchange_span("s", &p, "weather", "tools.test", false);
        assert_eq!(own.name, "execute_tool weather");
        assert_eq!(own.role, Role::Tool);
        assert_eq!(attr(&own, "gen_ai.tool.type"), Some("extension"));
        assert_eq!(own.span_id, span_id("s", "http-tool", 3, 0));
    }

    #[test]
    fn another_exchange_is_method_and_host_and_carries_its_failure() {
        let ev = event(7, Kind::Other, "PUT", "http://files.test/a", 404, 0, 5);
        let p = parsed(&ev, None, "", "");
        let sp = exchange_span("s", &p, "a", "files.test", false);
        assert_eq!(sp.name, "PUT files.test");
        assert_eq!(sp.int("http.response.status_code"), Some(404));
        assert_eq!(attr(&sp, "error.type"), Some("404"));
    }
}
