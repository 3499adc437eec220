//! Matching by meaning: a tool call is the tool it calls and the arguments it passes,
//! wherever in the run it comes.
//!
//! When a fix changes an agent's path, the same tool call can come at another step, in
//! another order, or twice; the world held still answers it as it did in the incident. So
//! a what-if run keys tool requests a second way, by (tool, canonical arguments), and a
//! request with no recorded event of its own key left takes a recorded answer with the
//! same meaning. A tool call the incident never made stays a miss, and its message names
//! the recorded calls of the same tool with the nearest arguments.
//!
//! The tool of an MCP `tools/call` is its `params.name` and its arguments
//! `params.arguments`; any other request's tool is what the `[[tool_name]]` rules (else
//! host and first path segment) call it, and its arguments are the method, the path, the
//! query (decoded) and the JSON body's leaves, less what the matching rules ignore.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use tapedeck_model::exchange::canonical::{percent_decode, UrlParts};
use tapedeck_model::exchange::{header, Event, Kind};
use tapedeck_model::rules::Rules;
use tapedeck_store::recording::Recording;

/// Bodies larger than this are read by their hash, not leaf by leaf.
const READ_LIMIT: u64 = 1 << 20;

/// A tool call's meaning: its tool and its arguments (path → value, sorted).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Meaning {
    pub tool: String,
    pub args: BTreeMap<String, String>,
}

impl Meaning {
    /// The meaning of a request: `body` is its stored (decoded, redacted) form when small
    /// enough to read, `b3` its hash otherwise.
    pub fn of(
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        b3: &str,
        rules: &Rules,
    ) -> Meaning {
        let json = body
            .filter(|b| !b.is_empty())
            .and_then(|b| serde_json::from_slice::<Value>(b).ok());
        if let Some(call) = json.as_ref().and_then(mcp_tool_call) {
            return call;
        }
        let parts = UrlParts::parse(url);
        let mut args = BTreeMap::new();
        args.insert("method".to_string(), method.to_ascii_uppercase());
        args.insert("path".to_string(), parts.path.clone());
        for pair in parts.query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(&k.replace('+', " "));
            if rules
                .ignore_query
                .iter()
                .any(|i| i.eq_ignore_ascii_case(&k))
            {
                continue;
            }
            args.insert(format!("?{k}"), percent_decode(&v.replace('+', " ")));
        }
        match (json, body) {
            (Some(mut v), _) => {
                for p in &rules.ignore_json_paths {
                    p.remove(&mut v);
                }
                leaves(&v, String::new(), &mut args);
            }
            (None, Some(b)) if !b.is_empty() => {
                let kind = content_type.unwrap_or("bytes");
                args.insert(
                    "body".into(),
                    format!("{kind}, blake3 {}", &b3[..b3.len().min(16)]),
                );
            }
            (None, Some(_)) => {}
            (None, None) => {
                args.insert("body".into(), format!("blake3 {}", &b3[..b3.len().min(16)]));
            }
        }
        Meaning {
            tool: rules.tool_name(method, &parts.host, &parts.path),
            args,
        }
    }

    /// How many arguments differ (present on one side only, or with another value).
    pub fn distance(&self, other: &Meaning) -> usize {
        let mut n = 0;
        for (k, v) in &self.args {
            if other.args.get(k) != Some(v) {
                n += 1;
            }
        }
        n + other
            .args
            .keys()
            .filter(|k| !self.args.contains_key(*k))
            .count()
    }

    /// `city=Paris, units=metric` (the method left out unless it is not GET).
    pub fn args_line(&self) -> String {
        let shown: Vec<String> = self
            .args
            .iter()
            .filter(|(k, v)| !(k.as_str() == "method" && v.as_str() == "GET"))
            .map(|(k, v)| {
                let k = k.trim_start_matches('?');
                let v = tapedeck_trace::causal::preview(v, 60);
                format!("{k}={v}")
            })
            .collect();
        shown.join(", ")
    }
}

/// An MCP `tools/call`: its tool and arguments.
fn mcp_tool_call(v: &Value) -> Option<Meaning> {
    if v.get("method")?.as_str()? != "tools/call" {
        return None;
    }
    let params = v.get("params")?;
    let tool = params.get("name")?.as_str()?.to_string();
    let mut args = BTreeMap::new();
    if let Some(a) = params.get("arguments") {
        leaves(a, String::new(), &mut args);
    }
    Some(Meaning { tool, args })
}

/// Every scalar of a JSON value by its path (`a.b[0].c`); JSON inside a string is opened.
fn leaves(v: &Value, at: String, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                leaves(x, path, out);
            }
            if m.is_empty() {
                out.insert(at, "{}".into());
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                leaves(x, format!("{at}[{i}]"), out);
            }
            if a.is_empty() {
                out.insert(at, "[]".into());
            }
        }
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner @ (Value::Object(_) | Value::Array(_))) => leaves(&inner, at, out),
            _ => {
                out.insert(at, s.clone());
            }
        },
        other => {
            out.insert(at, other.to_string());
        }
    }
}

/// The recorded non-LLM calls of a session by meaning.
#[derive(Default)]
pub struct MeaningIndex {
    by_meaning: HashMap<Meaning, Vec<usize>>,
    by_tool: HashMap<String, Vec<usize>>,
    meanings: Vec<Option<Meaning>>,
}

impl MeaningIndex {
    /// Reads the request of every non-LLM event (`kinds[i]` is event `i`'s kind under the
    /// rules in force).
    pub fn build(rec: &Recording, kinds: &[Kind], rules: &Rules) -> MeaningIndex {
        let mut ix = MeaningIndex::default();
        let _ = rec.for_each_event::<tapedeck_store::StoreError>(&mut |i, ev| {
            if kinds.get(i).copied().unwrap_or(ev.kind) == Kind::Llm || ev.ws.is_some() {
                ix.meanings.push(None);
                return Ok(());
            }
            let r = &ev.request;
            let body = (r.body.len <= READ_LIMIT)
                .then(|| rec.body(&r.body).ok())
                .flatten();
            let m = Meaning::of(
                &r.method,
                &r.url,
                header(&r.headers, "content-type"),
                body.as_deref(),
                &r.body.b3,
                rules,
            );
            ix.by_meaning.entry(m.clone()).or_default().push(i);
            ix.by_tool.entry(m.tool.clone()).or_default().push(i);
            ix.meanings.push(Some(m));
            Ok(())
        });
        ix
    }

    /// The recorded call with this meaning: the first not yet served, else the last one
    /// (the world held still answers a repeated call as it answered the last one).
    pub fn find(&self, m: &Meaning, served: impl Fn(usize) -> bool) -> Option<usize> {
        let list = self.by_meaning.get(m)?;
        list.iter()
            .copied()
            .find(|&i| !served(i))
            .or_else(|| list.last().copied())
    }

    /// The recorded calls of the same tool, nearest arguments first (at most `n`).
    pub fn closest(&self, m: &Meaning, n: usize) -> Vec<(usize, usize)> {
        let Some(list) = self.by_tool.get(&m.tool) else {
            return Vec::new();
        };
        // A bounded stretch, so a miss costs the same late in a long session.
        let mut scored: Vec<(usize, usize)> = list
            .iter()
            .take(CLOSEST_SCAN)
            .filter_map(|&i| self.meanings[i].as_ref().map(|x| (i, m.distance(x))))
            .collect();
        scored.sort_by_key(|&(i, d)| (d, i));
        scored.truncate(n);
        scored
    }

    pub fn meaning(&self, i: usize) -> Option<&Meaning> {
        self.meanings.get(i).and_then(Option::as_ref)
    }
}

/// How many recorded calls of a tool a miss compares its arguments with.
const CLOSEST_SCAN: usize = 4096;

/// One line naming a recorded call for a miss: `step 2: get_weather(city=Paris)`.
pub fn call_line(ev: &Event, name: &str, m: &Meaning) -> String {
    format!("step {}: {name}({})", ev.step, m.args_line())
}

/// Sessions up to this many events have their tool calls named as the trace names them
/// in a miss message; longer ones by the rules (the trace is not built on a miss).
pub(crate) const NAMED_EVENTS: usize = 20_000;

impl super::Replayer {
    /// The recorded calls by meaning (read once, on first need).
    pub(crate) fn meanings(&self) -> &MeaningIndex {
        self.meanings
            .get_or_init(|| MeaningIndex::build(&self.rec, &self.kinds, &self.rules))
    }

    /// For a tool call that missed: the recorded calls of the same tool, nearest
    /// arguments first.
    pub(crate) fn closest_calls(&self, got: &super::miss::Received) -> Vec<String> {
        if got.kind == Kind::Llm {
            return Vec::new();
        }
        let m = super::hybrid::got_meaning(got, &self.rules);
        let ix = self.meanings();
        let named = self.tool_names.get().is_some() || self.rec.len() <= NAMED_EVENTS;
        ix.closest(&m, 3)
            .into_iter()
            .filter_map(|(i, _)| {
                let ev = self.rec.event(i).ok()?;
                let recorded = ix.meaning(i)?;
                let name = named
                    .then(|| self.tool_names().get(ev.step).map(str::to_string))
                    .flatten()
                    .unwrap_or_else(|| recorded.tool.clone());
                Some(call_line(&ev, &name, recorded))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(method: &str, url: &str, body: &str) -> Meaning {
        Meaning::of(
            method,
            url,
            Some("application/json"),
            Some(body.as_bytes()),
            "00",
            &Rules::default(),
        )
    }

    #[test]
    fn the_same_call_means_the_same_whatever_its_order_or_ids() {
        assert_eq!(
            m("GET", "https://w.test/weather?units=c&city=Paris", ""),
            m("GET", "https://w.test/weather?city=Paris&units=c", "")
        );
        let a = m(
            "POST",
            "https://t.test/mcp",
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"}}}"#,
        );
        let b = m(
            "POST",
            "https://t.test/mcp",
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"},"_meta":{"progressToken":1}}}"#,
        );
        assert_eq!(a, b);
        assert_eq!(a.tool, "get_weather");
        assert_eq!(a.args_line(), "city=Paris");
    }

    #[test]
    fn distance_counts_the_arguments_that_differ() {
        let paris = m("GET", "https://w.test/weather?city=Paris&units=c", "");
        let lyon = m("GET", "https://w.test/weather?city=Lyon&units=c", "");
        let lyon_f = m("GET", "https://w.test/weather?city=Lyon", "");
        assert_eq!(paris.tool, lyon.tool);
        assert_eq!(paris.distance(&lyon), 1);
        assert_eq!(paris.distance(&lyon_f), 2);
        assert_eq!(paris.distance(&paris), 0);
        let body = m(
            "POST",
            "https://w.test/search",
            r#"{"q":"rain","filters":{"days":3}}"#,
        );
        assert_eq!(body.args.get("filters.days").map(String::as_str), Some("3"));
    }
}
