//! Traces, end to end: an agent run recorded through the real proxy becomes a span tree
//! (`show --json`), OTLP/JSON (`otlp -o`), OTLP/HTTP pushes (`otlp --endpoint`) and live
//! spans (`record --otlp-endpoint`) received by a real HTTP server.

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use serde_json::{json, Value};
use support::harness::{client, client_as, Daemon, Dirs};
use support::upstream::Upstream;

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
}

/// The agent loop: LLM → every tool call it asks for over HTTP → LLM with the results.
async fn agent(c: &reqwest::Client, up: &Upstream, question: &str, stream: bool) -> String {
    let mut messages = vec![json!({"role": "user", "content": question})];
    let first = chat(c, up, &messages, stream).await;
    let calls = first["tool_calls"].as_array().cloned().unwrap_or_default();
    assert!(!calls.is_empty(), "the fixture asks for a tool: {first}");
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": calls}));
    // Parallel tool calls run concurrently, as agents do.
    let mut tasks = Vec::new();
    for call in &calls {
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        let url = up.url(&format!("/weather?city={}", args["city"].as_str().unwrap()));
        let c = c.clone();
        let id = call["id"].as_str().unwrap().to_string();
        tasks.push(tokio::spawn(async move {
            (id, c.get(url).send().await.unwrap().text().await.unwrap())
        }));
    }
    for t in tasks {
        let (id, text) = t.await.unwrap();
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
    }
    let last = chat(c, up, &messages, stream).await;
    last["content"].as_str().unwrap_or_default().to_string()
}

/// One chat completion; returns the assistant message (streams assembled).
async fn chat(c: &reqwest::Client, up: &Upstream, messages: &[Value], stream: bool) -> Value {
    let mut body = json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let resp = c
        .post(up.url("/v1/chat/completions"))
        .bearer_auth("sk-trace-test-000000")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    if !stream {
        let v: Value = resp.json().await.unwrap();
        return v["choices"][0]["message"].clone();
    }
    let text = resp.text().await.unwrap();
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(line).unwrap();
        let Some(delta) = chunk["choices"].get(0).map(|c| &c["delta"]) else {
            continue;
        };
        if let Some(t) = delta["content"].as_str() {
            content.push_str(t);
        }
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                calls.push(json!({"id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": ""}}));
            }
            let frag = tc["function"]["arguments"].as_str().unwrap_or("");
            let so_far = calls[i]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_string();
            calls[i]["function"]["arguments"] = json!(so_far + frag);
        }
    }
    if calls.is_empty() {
        json!({"role": "assistant", "content": content})
    } else {
        json!({"role": "assistant", "content": null, "tool_calls": calls})
    }
}

fn spans_by_name(tree: &Value) -> HashMap<String, Vec<Value>> {
    let mut m: HashMap<String, Vec<Value>> = HashMap::new();
    for sp in tree["spans"].as_array().unwrap() {
        m.entry(sp["name"].as_str().unwrap().to_string())
            .or_default()
            .push(sp.clone());
    }
    m
}

fn show_json(dirs: &Dirs, session: &str) -> Value {
    let (code, out, err) = dirs.run(&["show", session, "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn check_tree(tree: &Value) {
    let spans = tree["spans"].as_array().unwrap();
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s))
        .collect();
    let parent_name = |s: &Value| -> String {
        by_id[s["parent_span_id"].as_str().expect("has a parent")]["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let names = spans_by_name(tree);
    let root = &spans[0];
    assert_eq!(root["name"], "invoke_agent");
    assert!(root["parent_span_id"].is_null());
    let chats = &names["chat gpt-4o-mini"];
    assert_eq!(chats.len(), 2);
    for c in chats {
        assert_eq!(parent_name(c), "invoke_agent");
        assert_eq!(c["attributes"]["gen_ai.operation.name"], "chat");
        assert_eq!(c["attributes"]["gen_ai.provider.name"], "openai_compatible");
        assert_eq!(c["attributes"]["gen_ai.request.model"], "gpt-4o-mini");
    }
    assert_eq!(
        chats[0]["attributes"]["gen_ai.response.finish_reasons"],
        json!(["tool_calls"])
    );
    assert_eq!(
        chats[1]["attributes"]["gen_ai.response.finish_reasons"],
        json!(["stop"])
    );
    // Two tool calls, each under the LLM call that asked for it, each with its own HTTP exchange.
    let tools = &names["execute_tool get_weather"];
    assert_eq!(tools.len(), 2);
    let mut cities = Vec::new();
    for t in tools {
        assert_eq!(
            t["parent_span_id"], chats[0]["span_id"],
            "tool spans hang under the deciding LLM call"
        );
        let id = t["attributes"]["gen_ai.tool.call.id"].as_str().unwrap();
        assert!(id.starts_with("call_"));
        let http: Vec<&Value> = spans
            .iter()
            .filter(|s| s["parent_span_id"] == t["span_id"])
            .collect();
        assert_eq!(http.len(), 1, "one HTTP exchange under {id}");
        assert_eq!(http[0]["name"], "localhost/weather");
        let url = http[0]["attributes"]["url.full"].as_str().unwrap();
        cities.push((id.to_string(), url.rsplit('=').next().unwrap().to_string()));
        assert_eq!(t["events"][0]["name"], "gen_ai.tool.result");
    }
    cities.sort();
    assert_eq!(
        cities,
        vec![
            ("call_1".to_string(), "Paris".to_string()),
            ("call_1_1".to_string(), "Tokyo".to_string())
        ],
        "each HTTP exchange is under the call whose arguments it carries"
    );
    // Token sums.
    let sum_in: i64 = chats
        .iter()
        .map(|c| {
            c["attributes"]["gen_ai.usage.input_tokens"]
                .as_i64()
                .unwrap()
        })
        .sum();
    let sum_out: i64 = chats
        .iter()
        .map(|c| {
            c["attributes"]["gen_ai.usage.output_tokens"]
                .as_i64()
                .unwrap()
        })
        .sum();
    assert!(sum_in > 0 && sum_out > 0);
    assert_eq!(root["attributes"]["gen_ai.usage.input_tokens"], sum_in);
    assert_eq!(tree["totals"]["input_tokens"], sum_in);
    assert_eq!(tree["totals"]["llm_calls"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_agent_run_is_a_causal_span_tree() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    for (session, stream) in [("plain", false), ("streamed", true)] {
        let d = Daemon::start(
            &dirs,
            &["record", "--session", session, "--upstream-ca", &ca],
        );
        let answer = agent(
            &client(&d, &dirs),
            &up,
            "Weather in Paris and Tokyo?",
            stream,
        )
        .await;
        assert!(answer.starts_with("The weather in"), "{answer}");
        d.stop();
        let tree = show_json(&dirs, session);
        check_tree(&tree);
        let chats = &spans_by_name(&tree)["chat gpt-4o-mini"];
        assert_eq!(
            chats[0]["attributes"]["gen_ai.request.stream"]
                .as_bool()
                .unwrap_or(false),
            stream
        );
    }
    // The human view names the same things.
    let (code, out, _) = dirs.run(&["show", "plain"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("execute_tool get_weather")
            && out.contains("total: 2 LLM calls, 2 tool calls"),
        "{out}"
    );
    let (code, out, _) = dirs.run(&["show", "plain", "--timeline"]);
    assert_eq!(code, 0);
    assert!(out.contains('█'), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_json_has_stable_ids_and_the_wire_encoding_otlp_requires() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "otlp", &[]);
    agent(
        &client(&d, &dirs),
        &up,
        "Weather in Paris and Tokyo?",
        false,
    )
    .await;
    d.stop();
    let a = dirs.path("a.json");
    let b = dirs.path("b.json");
    assert_eq!(dirs.run(&["otlp", "otlp", "-o", a.to_str().unwrap()]).0, 0);
    assert_eq!(dirs.run(&["otlp", "otlp", "-o", b.to_str().unwrap()]).0, 0);
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "exporting twice gives the same ids"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "URLs and, with content, prompts: private as a tape"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    assert_eq!(
        v["resourceSpans"][0]["scopeSpans"][0]["scope"]["name"],
        "tapedeck"
    );
    let spans = v["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap();
    assert_eq!(spans.len(), 7, "root, 2 chats, 2 tools, 2 HTTP");
    let trace = spans[0]["traceId"].as_str().unwrap();
    assert_eq!(trace.len(), 32);
    for s in spans {
        assert_eq!(s["traceId"], trace);
        assert_eq!(s["spanId"].as_str().unwrap().len(), 16);
        assert!(s["startTimeUnixNano"].is_string());
        assert!(s["kind"].is_u64());
    }
    let chat = spans
        .iter()
        .find(|s| s["name"] == "chat gpt-4o-mini")
        .unwrap();
    assert_eq!(chat["kind"], 3, "CLIENT");
    let tokens = chat["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "gen_ai.usage.input_tokens")
        .unwrap();
    assert!(
        tokens["value"]["intValue"].is_string(),
        "int64 is a string in OTLP/JSON"
    );
    // No content without --include-content; with it, the messages are there.
    assert!(!std::fs::read_to_string(&a)
        .unwrap()
        .contains("gen_ai.input.messages"));
    let c = dirs.path("c.json");
    assert_eq!(
        dirs.run(&[
            "otlp",
            "otlp",
            "-o",
            c.to_str().unwrap(),
            "--include-content"
        ])
        .0,
        0
    );
    assert!(std::fs::read_to_string(&c)
        .unwrap()
        .contains("gen_ai.input.messages"));
}

/// A real OTLP/HTTP receiver: decodes each protobuf export request it gets.
struct Collector {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
    fail_first: Arc<Mutex<usize>>,
}

async fn collector(fail_first: usize) -> Collector {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let fails = Arc::new(Mutex::new(fail_first));
    let (g, f) = (got.clone(), fails.clone());
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let (g, f) = (g.clone(), f.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (g, f) = (g.clone(), f.clone());
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            {
                                let mut left = f.lock().unwrap();
                                if *left > 0 {
                                    *left -= 1;
                                    return Ok::<_, std::convert::Infallible>(
                                        hyper::Response::builder()
                                            .status(503)
                                            .body(Full::new(Bytes::new()))
                                            .unwrap(),
                                    );
                                }
                            }
                            let r = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body).unwrap();
                            for rs in r.resource_spans {
                                for ss in rs.scope_spans {
                                    g.lock().unwrap().extend(ss.spans);
                                }
                            }
                            Ok(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Collector {
        addr,
        got,
        fail_first: fails,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_pushes_protobuf_with_retries_and_says_when_the_collector_is_unreachable() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "push", &[]);
    agent(
        &client(&d, &dirs),
        &up,
        "Weather in Paris and Tokyo?",
        false,
    )
    .await;
    d.stop();
    let col = collector(1).await;
    let (code, _, err) = dirs.run(&[
        "otlp",
        "push",
        "--endpoint",
        &format!("http://{}", col.addr),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(*col.fail_first.lock().unwrap(), 0, "the 503 was retried");
    let got = col.got.lock().unwrap().clone();
    assert_eq!(got.len(), 7);
    let root = got.iter().find(|s| s.parent_span_id.is_empty()).unwrap();
    assert_eq!(root.name, "invoke_agent");
    let tool = got
        .iter()
        .find(|s| s.name == "execute_tool get_weather")
        .unwrap();
    let parent = got
        .iter()
        .find(|s| s.span_id == tool.parent_span_id)
        .unwrap();
    assert_eq!(parent.name, "chat gpt-4o-mini");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = dirs.run(&[
        "otlp",
        "push",
        "--endpoint",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot reach the OTLP endpoint") && err.contains("refused"),
        "{err}"
    );
}

/// A session too big for one request goes in batches; when the collector refuses one
/// midway, the error says how many spans it had already taken (pushing again sends the
/// same span ids).
#[tokio::test(flavor = "multi_thread")]
async fn otlp_push_refused_midway_says_how_many_spans_went_before() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "many", &[]);
    let c = client(&d, &dirs);
    for i in 0..520 {
        let r = c
            .get(up.url(&format!("/price?item=i{i}")))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    d.stop();
    // Takes the first request, refuses (400, not retried) every later one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let status = if n == 0 { 200 } else { 400 };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"quota exceeded")))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let (code, _, err) = dirs.run(&["otlp", "many", "--endpoint", &format!("http://{addr}")]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("quota exceeded"), "{err}");
    assert!(
        err.contains("(512 of 521 spans were sent before it)"),
        "{err}"
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// `tapedeck record --session SESSION` exporting spans live to `endpoint`, with the
/// upstream's CA trusted.
fn record_live(dirs: &Dirs, up: &Upstream, session: &str, endpoint: &str) -> Daemon {
    let ca = up.ca_path.to_str().unwrap();
    Daemon::start(
        dirs,
        &[
            "record",
            "--session",
            session,
            "--upstream-ca",
            ca,
            "--otlp-endpoint",
            endpoint,
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn record_exports_spans_live_as_exchanges_complete() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let col = collector(0).await;
    let endpoint = format!("http://{}", col.addr);
    let d = record_live(&dirs, &up, "live", &endpoint);
    let c = client(&d, &dirs);
    chat(
        &c,
        &up,
        &[json!({"role": "user", "content": "Weather in Oslo?"})],
        false,
    )
    .await;
    // The LLM span arrives while recording is still going on.
    let mut seen = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if col
            .got
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.name == "chat gpt-4o-mini")
        {
            seen = true;
            break;
        }
    }
    assert!(seen, "no live span within 5 s");
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("0 exchanges dropped"), "{stderr}");
    let got = col.got.lock().unwrap().clone();
    assert!(
        got.iter()
            .any(|s| s.name == "invoke_agent" && s.parent_span_id.is_empty()),
        "root sent at stop"
    );
    // Same ids as the batch export.
    let file = dirs.path("live.json");
    assert_eq!(
        dirs.run(&["otlp", "live", "-o", file.to_str().unwrap()]).0,
        0
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let batch_chat = v["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "chat gpt-4o-mini")
        .unwrap()["spanId"]
        .as_str()
        .unwrap()
        .to_string();
    let live_chat = got.iter().find(|s| s.name == "chat gpt-4o-mini").unwrap();
    let hex: String = live_chat
        .span_id
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, batch_chat);
}

/// Polls `done` every 50 ms for up to `secs` seconds; whether it came true.
async fn eventually(secs: u64, done: impl Fn() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if done() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    done()
}

/// A collector that fails: the batch that first meets the failure is retried with
/// back-off; while it goes on failing, each later batch is tried once (no stall of
/// seconds per batch, no warning per batch) and kept; once it takes a batch again, what
/// was kept goes out behind it, so a collector restarted during a run loses nothing. The
/// user is told when it goes and when it comes back.
#[tokio::test(flavor = "multi_thread")]
async fn live_export_keeps_what_a_failing_collector_did_not_take_and_sends_it_when_it_recovers() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    // Six 503s: the five attempts of the first batch, then the second batch's one.
    let col = collector(6).await;
    let endpoint = format!("http://{}", col.addr);
    let d = record_live(&dirs, &up, "flaky", &endpoint);
    let c = client(&d, &dirs);
    let failures_left = || *col.fail_first.lock().unwrap();
    let ask = |city: &str| json!([{"role": "user", "content": format!("Weather in {city}?")}]);
    chat(&c, &up, ask("Oslo").as_array().unwrap(), false).await;
    // Five attempts, backing off 0.3 + 0.6 + 1.2 + 2.4 s between them.
    assert!(
        eventually(20, || failures_left() == 1).await,
        "the first batch was not tried five times: {} failures left",
        failures_left()
    );
    chat(&c, &up, ask("Rome").as_array().unwrap(), false).await;
    assert!(eventually(5, || failures_left() == 0).await);
    // Retried, the second batch would have been taken 0.3 s after its failure.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    // The chat spans the collector took: (taken, distinct).
    let chats = |col: &Collector| {
        let ids: Vec<Vec<u8>> = col
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == "chat gpt-4o-mini")
            .map(|s| s.span_id.clone())
            .collect();
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        (ids.len(), distinct.len())
    };
    assert_eq!(
        chats(&col),
        (0, 0),
        "a batch sent while the collector fails is tried once, not retried"
    );
    chat(&c, &up, ask("Lima").as_array().unwrap(), false).await;
    assert!(
        eventually(5, || chats(&col) == (3, 3)).await,
        "once the collector takes a batch, the kept ones follow it: {:?}",
        chats(&col)
    );
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("each batch is tried once and kept")
            && stderr.contains("takes spans again; sending the 2 spans kept"),
        "{stderr}"
    );
    assert!(stderr.contains(", 0 spans failed"), "{stderr}");
    assert_eq!(chats(&col), (3, 3), "each span once");
    assert!(
        col.got
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.name == "invoke_agent" && s.parent_span_id.is_empty()),
        "the root goes out at stop"
    );
}

/// A collector that is down until the recorder stops: what was kept for it is counted
/// as failed, and the user is told it was never taken.
#[tokio::test(flavor = "multi_thread")]
async fn spans_kept_for_a_collector_that_never_comes_back_are_counted_at_the_stop() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    // Bound and closed: connections to it are refused.
    let endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let d = record_live(&dirs, &up, "gone", &endpoint);
    let c = client(&d, &dirs);
    chat(
        &c,
        &up,
        &[json!({"role": "user", "content": "Weather in Accra?"})],
        false,
    )
    .await;
    // The first batch's five attempts take 4.5 s of back-off.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("each batch is tried once and kept"),
        "{stderr}"
    );
    // The chat span kept, then at the stop the root and the tool call never answered,
    // tried once and kept too.
    assert!(
        stderr.contains("3 spans kept for") && stderr.contains("were never taken"),
        "{stderr}"
    );
    assert!(
        stderr.contains("0 spans sent") && stderr.contains(", 3 spans failed"),
        "{stderr}"
    );
    assert!(stderr.contains("recorded 1 exchange"), "{stderr}");
}

/// A collector that takes the connection and never answers: stopping the recorder waits
/// a bounded time for it (`FINAL_WAIT`, 5 s), then says what was not sent; the exchanges
/// are in the store all the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_never_answers_does_not_hold_up_the_recorders_exit() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = silent.accept().await {
            h.lock().unwrap().push(s);
        }
    });
    let d = record_live(&dirs, &up, "silent", &endpoint);
    let c = client(&d, &dirs);
    chat(
        &c,
        &up,
        &[json!({"role": "user", "content": "Weather in Quito?"})],
        false,
    )
    .await;
    assert!(
        eventually(5, || !held.lock().unwrap().is_empty()).await,
        "the exporter never connected"
    );
    let (code, stderr) = d.stop();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("did not take the last spans within 5 s of stopping"),
        "{stderr}"
    );
    assert!(stderr.contains("0 spans sent"), "{stderr}");
    assert!(stderr.contains("recorded 1 exchange"), "{stderr}");
    let (code, out, err) = dirs.run(&["sessions"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("silent"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_agents_in_one_session_make_a_workflow() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(&dirs, &["record", "--upstream-ca", &ca]);
    let planner = client_as(&d, &dirs, "handoff+planner", "");
    let writer = client_as(&d, &dirs, "handoff+writer", "");
    chat(
        &planner,
        &up,
        &[json!({"role": "user", "content": "Weather in Berlin?"})],
        false,
    )
    .await;
    writer
        .get(up.url("/weather?city=Berlin"))
        .send()
        .await
        .unwrap();
    chat(
        &writer,
        &up,
        &[json!({"role": "user", "content": "Write about Berlin"})],
        false,
    )
    .await;
    d.stop();
    let tree = show_json(&dirs, "handoff");
    let names = spans_by_name(&tree);
    assert_eq!(tree["spans"][0]["name"], "invoke_workflow handoff");
    assert_eq!(names["invoke_agent planner"].len(), 1);
    assert_eq!(names["invoke_agent writer"].len(), 1);
    let writer_id = &names["invoke_agent writer"][0]["span_id"];
    let writer_children: Vec<&Value> = tree["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| &s["parent_span_id"] == writer_id)
        .collect();
    assert_eq!(writer_children.len(), 2, "{writer_children:?}");
}
