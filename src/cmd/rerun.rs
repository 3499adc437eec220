//! `tapedeck rerun S --step N`: does step N's LLM call pick the wrong tool every time, or
//! one time in five, and does a new prompt fix it? The recorded request (optionally with
//! another model, system prompt or temperature) goes to the live upstream K times, a
//! bounded number at once, each forwarded and recorded exactly as `record` does it into
//! one new session (`S.rerun-N`, its parent noted); the answers are then read back from
//! that session and counted by outcome: the tools called with their arguments, or the
//! text, and the finish reasons.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;

use super::{msg, CmdError, CmdResult};
use crate::cli::{rule_args, MatchArgs, RerunArgs};
use crate::recording::{self, StoreAccess};
use tapedeck_model::exchange::{Event, Kind};
use tapedeck_model::rules::{Rules, REDACTED};
use tapedeck_model::session::Lineage;
use tapedeck_proxy::body;
use tapedeck_proxy::ClientCtx;
use tapedeck_record::upstream::Upstream;
use tapedeck_record::{Given, Recorder};
use tapedeck_store::recording::Recording;
use tapedeck_store::Store;
use tapedeck_trace::adapters::LlmCall;
use tapedeck_trace::causal::load::parse_llm;

/// Headers the request is sent without: the client's connection and the body's framing
/// and coding (the stored body is decoded and may have been changed).
const DROPPED: &[&str] = &[
    "host",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// What one answer amounted to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct Outcome {
    /// `get_weather {"city":"Paris"}` per tool call, or the answer's text, or the error.
    what: String,
    finish: String,
}

/// The outcomes of a batch, counted.
#[derive(Debug, Serialize)]
struct Report {
    session: String,
    step: u64,
    url: String,
    model: Option<String>,
    times: u64,
    stored_as: String,
    recorded: Outcome,
    /// How many answers were the recorded one (same tools and arguments, or same text).
    recorded_count: usize,
    outcomes: Vec<Counted>,
    finish_reasons: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
struct Counted {
    what: String,
    finish: String,
    count: usize,
    share: f64,
    recorded: bool,
}

pub async fn run(a: RerunArgs) -> CmdResult {
    let cwd = std::env::current_dir().unwrap_or_default();
    let rules = Arc::new(Rules::load(
        &cwd,
        &rule_args(&MatchArgs::default(), &a.redact),
    )?);
    let store = open_store(&a)?;
    let dyn_store: Arc<dyn Store> = store.clone();
    // SESSION is a session of the store or, as for `show`, a tape; the batch goes into
    // the store either way, named after the recorded session.
    let rec = recording::Loader::with_store(&a.store.store, store.clone())
        .load(&a.session)
        .await?;
    let parent = rec.session.clone();
    let ev = llm_step(&rec, &a)?;
    let recorded_req = rec.body(&ev.request.body)?;
    let recorded = answer_of(&rec, ev)?;
    let system = match &a.system {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| msg(format!("--system {}: cannot read it: {e}", p.display())))?,
        ),
        None => None,
    };
    let url = match &a.endpoint {
        Some(e) => with_origin(&ev.request.url, e)?,
        None => ev.request.url.clone(),
    };
    let body = changed_body(&recorded_req, &url, &a, system.as_deref())?;
    let model = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_string));
    let name =
        super::whatif::new_session_name(dyn_store.as_ref(), &parent, "rerun", a.name.as_deref())?;
    let upstream = Upstream::new(&a.upstream_ca, Duration::from_secs(a.upstream_timeout))?;
    let recorder = Recorder::new(
        dyn_store.clone(),
        rules.clone(),
        upstream,
        &[],
        None,
        a.max_body,
        None,
    )
    .map_err(|e| msg(e.to_string()))?;
    eprintln!(
        "tapedeck: sending step {} of {} ({} {url}) {} times, {} at once; stored as {name}",
        a.step, a.session, ev.request.method, a.times, a.concurrency
    );
    send_batch(&recorder, ev, &url, body, &name, &a).await?;
    if store.session(name.as_str())?.is_none() {
        return Err(msg(format!(
            "no answer of the {} sent was recorded (see the errors above)",
            a.times
        )));
    }
    store.put_lineage(
        name.as_str(),
        &Lineage {
            parent: parent.clone(),
            via: "rerun".into(),
            diverged_at: None,
            parent_step: Some(a.step),
            incomplete: false,
        },
    )?;
    store.commit()?;
    let batch = Recording::from_store(dyn_store, name.as_str())?;
    let answers = batch
        .events
        .iter()
        .map(|e| answer_of(&batch, e))
        .collect::<Result<Vec<_>, _>>()?;
    let report = count(&a, &url, model, name.as_str(), recorded, &answers);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", table(&report));
    }
    Ok(0)
}

/// The store the batch goes into, opened here: a daemon holding it is asked to stop.
fn open_store(a: &RerunArgs) -> Result<Arc<tapedeck_store::SledStore>, CmdError> {
    match recording::access_store(&a.store.store)? {
        StoreAccess::Open(s) => Ok(s),
        StoreAccess::Daemon { pid, listen } => Err(msg(format!(
            "rerun stores its batch in {}, which tapedeck pid {pid} ({listen}) holds; stop it first",
            a.store.store.display()
        ))),
    }
}

/// The step to send again, which must be an LLM call.
fn llm_step<'r>(rec: &'r Recording, a: &RerunArgs) -> Result<&'r Event, CmdError> {
    let ev = rec
        .events
        .iter()
        .find(|e| e.step == a.step)
        .ok_or_else(|| {
            msg(format!(
                "{} has no step {} (it has {} steps)",
                a.session,
                a.step,
                rec.events.len()
            ))
        })?;
    if ev.kind != Kind::Llm {
        return Err(msg(format!(
            "step {} of {} is a {} call ({} {}), not an LLM call; rerun sends an LLM request again",
            a.step,
            a.session,
            ev.kind.as_str(),
            ev.request.method,
            ev.request.url
        )));
    }
    Ok(ev)
}

/// What an LLM step answered, read from its bodies.
fn answer_of(rec: &Recording, e: &Event) -> Result<Outcome, CmdError> {
    let req = rec.body(&e.request.body)?;
    let resp = match &e.response {
        Some(r) => rec.body(&r.body)?,
        None => Default::default(),
    };
    Ok(outcome(e, parse_llm(e, &req, &resp).as_ref()))
}

/// Sends `body` to `url` `--times` times, `--concurrency` at once, through the recorder
/// into session `name`; returns once every exchange is written (or 10 s have passed).
async fn send_batch(
    recorder: &Arc<Recorder>,
    ev: &Event,
    url: &str,
    body: bytes::Bytes,
    name: &tapedeck_model::session::SessionName,
    a: &RerunArgs,
) -> Result<(), CmdError> {
    let headers = send_headers(ev)?;
    let limit = Arc::new(tokio::sync::Semaphore::new(a.concurrency as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..a.times {
        let permit = limit.clone().acquire_owned().await;
        let req = request(&ev.request.method, url, &headers, body.clone())?;
        let ctx = ClientCtx {
            session: name.clone(),
            agent: ev.agent.clone(),
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            slot: None,
            conn: Default::default(),
            ack: Default::default(),
        };
        let recorder = recorder.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let resp = recorder.forward(req, ctx, Given::default()).await;
            // Read to the end: the recorder writes the exchange when its body ends.
            let _ = resp.into_body().collect().await;
        });
    }
    while tasks.join_next().await.is_some() {}
    let left = recorder.inflight.drain(Duration::from_secs(10)).await;
    if left > 0 {
        tracing::warn!("{left} exchanges were still being written; counting what was");
    }
    Ok(())
}

/// `url` with the origin of `endpoint` (its path and query kept).
fn with_origin(url: &str, endpoint: &str) -> Result<String, CmdError> {
    let e: http::Uri = endpoint
        .parse()
        .map_err(|err| msg(format!("--endpoint {endpoint}: {err}")))?;
    let (Some(scheme), Some(authority)) = (e.scheme_str(), e.authority()) else {
        return Err(msg(format!(
            "--endpoint {endpoint}: give scheme://host[:port]"
        )));
    };
    let u: http::Uri = url
        .parse()
        .map_err(|err| msg(format!("recorded URL {url}: {err}")))?;
    let path = u.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Ok(format!("{scheme}://{authority}{path}"))
}

/// The recorded body with the asked changes: model, temperature, system prompt.
fn changed_body(
    recorded: &[u8],
    url: &str,
    a: &RerunArgs,
    system: Option<&str>,
) -> Result<bytes::Bytes, CmdError> {
    if a.model.is_none() && a.temperature.is_none() && system.is_none() {
        return Ok(bytes::Bytes::copy_from_slice(recorded));
    }
    let mut v: Value = serde_json::from_slice(recorded).map_err(|e| {
        msg(format!(
            "the recorded request is not JSON ({e}); --model, --system and --temperature change a JSON body"
        ))
    })?;
    let Some(obj) = v.as_object_mut() else {
        return Err(msg("the recorded request body is not a JSON object"));
    };
    if let Some(m) = &a.model {
        obj.insert("model".into(), Value::from(m.as_str()));
    }
    if let Some(t) = a.temperature {
        obj.insert("temperature".into(), Value::from(t));
    }
    if let Some(text) = system {
        set_system(obj, url, text);
    }
    serde_json::to_vec(&v)
        .map(bytes::Bytes::from)
        .map_err(|e| msg(format!("cannot write the changed request: {e}")))
}

/// Puts `text` where the API keeps the system prompt: Anthropic's `system`, the Responses
/// API's `instructions`, else the first system (or developer) message of `messages`, one
/// added in front when there is none.
fn set_system(obj: &mut serde_json::Map<String, Value>, url: &str, text: &str) {
    let path = url.split('?').next().unwrap_or(url);
    if path.ends_with("/messages") || obj.contains_key("system") {
        obj.insert("system".into(), Value::from(text));
        return;
    }
    if path.ends_with("/responses") || obj.contains_key("instructions") {
        obj.insert("instructions".into(), Value::from(text));
        return;
    }
    let messages = obj
        .entry("messages")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = messages.as_array_mut() else {
        return;
    };
    let is_system = |m: &Value| {
        matches!(
            m.get("role").and_then(Value::as_str),
            Some("system" | "developer")
        )
    };
    match list.iter_mut().find(|m| is_system(m)) {
        Some(m) => {
            m["content"] = Value::from(text);
        }
        None => list.insert(0, serde_json::json!({"role": "system", "content": text})),
    }
}

/// The recorded headers to send again; a redacted credential is taken from the
/// environment (`TAPEDECK_API_KEY`, else `OPENAI_API_KEY` for `authorization` and
/// `ANTHROPIC_API_KEY` for `x-api-key`), never from disk.
fn send_headers(ev: &Event) -> Result<Vec<(String, String)>, CmdError> {
    let env = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok());
    let mut out = Vec::new();
    for (k, v) in &ev.request.headers {
        let lk = k.to_ascii_lowercase();
        if DROPPED.contains(&lk.as_str()) {
            continue;
        }
        if !v.contains(REDACTED) {
            out.push((k.clone(), v.clone()));
            continue;
        }
        let key = match lk.as_str() {
            "authorization" => {
                env(&["TAPEDECK_API_KEY", "OPENAI_API_KEY"]).map(|k| format!("Bearer {k}"))
            }
            "x-api-key" => env(&["TAPEDECK_API_KEY", "ANTHROPIC_API_KEY"]),
            "api-key" | "x-goog-api-key" => env(&["TAPEDECK_API_KEY"]),
            _ => None,
        };
        match key {
            Some(key) => out.push((k.clone(), key)),
            None => tracing::warn!(
                "the recorded {k} header was redacted and no key is set in the environment (TAPEDECK_API_KEY); sending without it"
            ),
        }
    }
    Ok(out)
}

fn request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: bytes::Bytes,
) -> Result<hyper::Request<tapedeck_proxy::body::ProxyBody>, CmdError> {
    let mut b = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        let v = tapedeck_model::exchange::header_value(v)
            .map_err(|e| msg(format!("cannot send the recorded {k} header: {e}")))?;
        b = b.header(k, v);
    }
    b.header("content-length", body.len())
        .body(body::full(body))
        .map_err(|e| msg(format!("cannot build the request to {url}: {e}")))
}

/// What an answer amounted to.
fn outcome(ev: &Event, call: Option<&LlmCall>) -> Outcome {
    let status = ev.response.as_ref().map(|r| r.status);
    if let Some(err) = &ev.error {
        return Outcome {
            what: format!("error: {}", err.message),
            finish: "-".into(),
        };
    }
    let finish = call
        .map(|c| c.finish_reasons.join(","))
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "-".into());
    if let Some(s) = status.filter(|s| *s >= 400) {
        let detail = call
            .and_then(|c| c.error_message.clone())
            .unwrap_or_default();
        return Outcome {
            what: format!("HTTP {s} {detail}").trim_end().to_string(),
            finish,
        };
    }
    let Some(call) = call else {
        return Outcome {
            what: "an answer tapedeck cannot read".into(),
            finish,
        };
    };
    let what = if call.tool_calls.is_empty() {
        format!(
            "text: {}",
            tapedeck_trace::causal::preview(call.output_text.trim(), 60)
        )
    } else {
        call.tool_calls
            .iter()
            .map(|t| format!("{} {}", t.name, t.arguments))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Outcome { what, finish }
}

fn count(
    a: &RerunArgs,
    url: &str,
    model: Option<String>,
    stored_as: &str,
    recorded: Outcome,
    answers: &[Outcome],
) -> Report {
    let mut by: BTreeMap<&Outcome, usize> = BTreeMap::new();
    let mut finish: BTreeMap<String, usize> = BTreeMap::new();
    for o in answers {
        *by.entry(o).or_default() += 1;
        *finish.entry(o.finish.clone()).or_default() += 1;
    }
    let n = answers.len().max(1) as f64;
    let mut outcomes: Vec<Counted> = by
        .into_iter()
        .map(|(o, c)| Counted {
            what: o.what.clone(),
            finish: o.finish.clone(),
            count: c,
            share: c as f64 / n,
            recorded: o.what == recorded.what,
        })
        .collect();
    outcomes.sort_by(|x, y| y.count.cmp(&x.count).then(x.what.cmp(&y.what)));
    let recorded_count = answers.iter().filter(|o| o.what == recorded.what).count();
    Report {
        session: a.session.clone(),
        step: a.step,
        url: url.to_string(),
        model,
        times: answers.len() as u64,
        stored_as: stored_as.to_string(),
        recorded,
        recorded_count,
        outcomes,
        finish_reasons: finish,
    }
}

fn table(r: &Report) -> String {
    let mut out = format!(
        "rerun of {} step {} ({}{}) x{}, stored as {}\n",
        r.session,
        r.step,
        r.url,
        r.model
            .as_ref()
            .map(|m| format!(", model {m}"))
            .unwrap_or_default(),
        r.times,
        r.stored_as
    );
    let fw = r
        .outcomes
        .iter()
        .map(|o| o.finish.len())
        .max()
        .unwrap_or(6)
        .max(6);
    out.push_str(&format!(
        "  {:>5}  {:>5}  {:<fw$}  OUTCOME\n",
        "COUNT", "SHARE", "FINISH"
    ));
    for o in &r.outcomes {
        out.push_str(&format!(
            "  {:>5}  {:>4.0}%  {:<fw$}  {}{}\n",
            o.count,
            o.share * 100.0,
            o.finish,
            o.what,
            if o.recorded { "  (recorded)" } else { "" }
        ));
    }
    let n = r.times.max(1) as f64;
    let p = r.recorded_count as f64 / n;
    out.push_str(&format!(
        "the recorded answer came back {}/{} times ({:.0}% ± {:.0}%, one standard error); recorded: {}\n",
        r.recorded_count,
        r.times,
        p * 100.0,
        (p * (1.0 - p) / n).sqrt() * 100.0,
        r.recorded.what
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_system_prompt_goes_where_the_api_keeps_it() {
        let mut chat = json!({"messages": [{"role": "system", "content": "old"},
                                           {"role": "user", "content": "hi"}]});
        set_system(
            chat.as_object_mut().unwrap(),
            "https://x/v1/chat/completions",
            "new",
        );
        assert_eq!(chat["messages"][0]["content"], "new");
        assert_eq!(chat["messages"].as_array().unwrap().len(), 2);
        let mut bare = json!({"messages": [{"role": "user", "content": "hi"}]});
        set_system(
            bare.as_object_mut().unwrap(),
            "https://x/v1/chat/completions",
            "new",
        );
        assert_eq!(
            bare["messages"][0],
            json!({"role": "system", "content": "new"})
        );
        let mut anthropic = json!({"messages": []});
        set_system(
            anthropic.as_object_mut().unwrap(),
            "https://x/v1/messages",
            "new",
        );
        assert_eq!(anthropic["system"], "new");
    }

    #[test]
    fn an_endpoint_replaces_the_origin_and_keeps_the_path() {
        assert_eq!(
            with_origin(
                "https://api.openai.com/v1/chat/completions?x=1",
                "http://127.0.0.1:9000"
            )
            .unwrap(),
            "http://127.0.0.1:9000/v1/chat/completions?x=1"
        );
        assert!(with_origin("https://a/v1", "localhost").is_err());
    }
}
