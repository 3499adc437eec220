//! MCP over Streamable HTTP through tapedeck, and the traces of MCP and Realtime sessions.
//!
//! A session against the fixture's MCP endpoint (real TLS, reqwest through the proxy) is
//! recorded and replayed with other JSON-RPC ids and another session id: the answers
//! carry the client's. Two tapes recorded by `examples/wire.sh` with the official
//! clients (the `mcp` SDK with a FastMCP server, `websockets` speaking Realtime events)
//! are read by `show`, `analyze` and `otlp`.

use crate::support;

use serde_json::{json, Value};

use support::harness::{client, Daemon, Dirs};
use support::upstream::{mcp::SESSION, Upstream};

const MCP_SDK_TAPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tapes/mcp-sdk.jsonl");
const REALTIME_TAPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tapes/realtime.jsonl");

/// POSTs JSON-RPC to the fixture's MCP endpoint: (session header, body as JSON values,
/// one per JSON body or per `data:` line).
async fn rpc(
    c: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: Value,
) -> (Option<String>, Vec<Value>) {
    let mut req = c
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    let values = if text.trim().is_empty() {
        Vec::new()
    } else if text.starts_with("event:") {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    } else {
        match serde_json::from_str(&text).unwrap() {
            Value::Array(items) => items,
            v => vec![v],
        }
    };
    (sid, values)
}

/// One MCP session: initialize, initialized, the listening stream (a GET that is left
/// open), a tool call answered as an event stream, a batch of two calls answered as
/// JSON, DELETE. `base` numbers the ids. The listening stream's task ends with its body.
async fn session(
    c: &reqwest::Client,
    origin: &str,
    base: u64,
    held: Option<&str>,
) -> (Vec<Value>, tokio::task::JoinHandle<()>) {
    let url = format!("{origin}/mcp");
    let sse = format!("{origin}/mcp?sse=1");
    let mut seen = Vec::new();
    let (sid, mut v) = rpc(
        c,
        &url,
        None,
        json!({"jsonrpc": "2.0", "id": base, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    )
    .await;
    let sid = sid.expect("initialize gives a session id");
    let session = held.unwrap_or(&sid).to_string();
    seen.push(json!({"initialize session": sid}));
    seen.append(&mut v);
    let (_, v) = rpc(
        c,
        &url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert!(v.is_empty());
    let listening = {
        let get = c
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 200);
        tokio::spawn(async move {
            let _ = get.bytes().await;
        })
    };
    let (s, mut v) = rpc(
        c,
        &sse,
        Some(&session),
        json!({"jsonrpc": "2.0", "id": base + 1, "method": "tools/call",
               "params": {"name": "get_weather", "arguments": {"city": "Paris"}}}),
    )
    .await;
    seen.push(json!({"session": s}));
    seen.append(&mut v);
    let (_, mut v) = rpc(
        c,
        &url,
        Some(&session),
        json!([
            {"jsonrpc": "2.0", "id": base + 2, "method": "tools/call", "params": {"name": "get_weather", "arguments": {"city": "Atlantis"}}},
            {"jsonrpc": "2.0", "id": format!("req-{}", base + 3), "method": "tools/call", "params": {"name": "get_alerts", "arguments": {}}}
        ]),
    )
    .await;
    seen.append(&mut v);
    assert!(
        !listening.is_finished(),
        "the listening stream is open until the session ends"
    );
    let resp = c
        .delete(&url)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    (seen, listening)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_session_replays_with_the_clients_ids_and_session_id() {
    let up = Upstream::start(true).await;
    let origin = up.base_url();
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "mcp", &[]);
    let (live, listening) = session(&client(&d, &dirs), &origin, 1, None).await;
    // The fixture never ends the stream: the client hangs up, as MCP clients do.
    listening.abort();
    let _ = listening.await;
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(live[0], json!({"initialize session": SESSION}));
    assert_eq!(live[2], json!({"session": SESSION}));
    assert_eq!(live[3]["id"], 2);
    assert_eq!(live[4]["id"], 3);
    assert_eq!(live[4]["result"]["isError"], true);
    assert_eq!(live[5]["id"], "req-4");
    drop(up);

    // Offline, with other ids and a session id the client holds from elsewhere: the
    // recording's answers, carrying the client's own ids and session.
    let r = Daemon::start(&dirs, &["replay", "--session", "mcp"]);
    let (replayed, listening) =
        session(&client(&r, &dirs), &origin, 100, Some("held-by-client")).await;
    // The listening stream stayed open through the calls and ends with the session.
    tokio::time::timeout(std::time::Duration::from_secs(20), listening)
        .await
        .expect("the listening stream ends once the session's DELETE is served")
        .unwrap();
    let (_, err) = r.stop();
    assert!(err.contains("served 6/6 events, 0 misses"), "{err}");
    assert_eq!(replayed[0], json!({"initialize session": SESSION}));
    assert_eq!(replayed[1]["id"], 100);
    assert_eq!(replayed[2], json!({"session": "held-by-client"}));
    assert_eq!(
        replayed[3]["id"], 101,
        "an event-stream answer carries the client's id"
    );
    assert_eq!(
        replayed[4]["id"], 102,
        "a batch's answers carry the client's ids"
    );
    assert_eq!(replayed[5]["id"], "req-103");
    let strip = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .map(|x| {
                let mut x = x.clone();
                if let Some(o) = x.as_object_mut() {
                    o.remove("id");
                    o.remove("session");
                }
                x
            })
            .collect()
    };
    assert_eq!(strip(&live), strip(&replayed), "the same answers otherwise");

    // The trace: MCP client spans, the isError call failed with tool_error, the batch.
    let (code, out, err) = dirs.run(&["show", "mcp", "--json"]);
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    let spans = t["spans"].as_array().unwrap();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"initialize") && names.contains(&"notifications/initialized"),
        "{names:?}"
    );
    let call = spans
        .iter()
        .find(|s| s["name"] == "tools/call get_weather")
        .unwrap();
    assert_eq!(call["role"], "mcp");
    let a = &call["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["mcp.session.id"], SESSION);
    assert_eq!(a["mcp.protocol.version"], "2025-06-18");
    assert_eq!(a["jsonrpc.request.id"], "2");
    assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    let batch = spans
        .iter()
        .find(|s| s["attributes"]["tapedeck.jsonrpc.batch"] == 2)
        .unwrap();
    assert_eq!(batch["attributes"]["error.type"], "tool_error");
}

#[test]
fn the_mcp_sdk_tape_reads_as_mcp_spans_under_the_tool_calls_and_analyze_finds_both_signatures() {
    let dirs = Dirs::new();
    let (code, out, err) = dirs.run(&["show", MCP_SDK_TAPE, "--json"]);
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    let spans = t["spans"].as_array().unwrap();
    let by_id = |id: &Value| spans.iter().find(|s| &s["span_id"] == id).unwrap();
    let calls: Vec<&Value> = spans
        .iter()
        .filter(|s| s["attributes"]["mcp.method.name"] == "tools/call")
        .collect();
    assert_eq!(calls.len(), 3);
    let mut step_of = std::collections::HashMap::new();
    for c in &calls {
        let tool = c["attributes"]["gen_ai.tool.name"].as_str().unwrap();
        let parent = by_id(&c["parent_span_id"]);
        assert_eq!(parent["name"], format!("execute_tool {tool}"));
        assert_eq!(by_id(&parent["parent_span_id"])["role"], "llm");
        step_of.insert(tool, c["step"].as_u64().unwrap());
    }
    let failed = calls
        .iter()
        .find(|c| c["attributes"]["error.type"] == "tool_error")
        .unwrap();
    assert_eq!(failed["name"], "tools/call get_weather");
    assert_eq!(
        t["totals"]["errors"], 1,
        "hanging up after an answer is no error"
    );

    let (_, out, err) = dirs.run(&["analyze", MCP_SDK_TAPE, "--json"]);
    let f: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{err}"));
    let last_llm = spans
        .iter()
        .filter(|s| s["role"] == "llm")
        .filter_map(|s| s["step"].as_u64())
        .max()
        .unwrap();
    let mut got: Vec<(String, Vec<u64>)> = f["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["detector"].as_str().unwrap().to_string(),
                x["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "empty_tool_result".to_string(),
                vec![step_of["get_alerts"], last_llm]
            ),
            (
                "tool_error_ignored".to_string(),
                vec![step_of["get_weather"], last_llm]
            ),
        ]
    );
}

#[test]
fn a_realtime_tape_is_a_chat_span_per_response_with_the_tool_call_under_it() {
    let dirs = Dirs::new();
    let (code, out, err) = dirs.run(&["show", REALTIME_TAPE, "--json"]);
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    let spans = t["spans"].as_array().unwrap();
    let chats: Vec<&Value> = spans.iter().filter(|s| s["role"] == "llm").collect();
    assert_eq!(chats.len(), 2);
    for c in &chats {
        assert_eq!(c["name"], "chat gpt-realtime");
        assert!(
            c["attributes"]["gen_ai.usage.input_tokens"]
                .as_i64()
                .unwrap()
                > 0
        );
    }
    assert_eq!(
        chats[0]["attributes"]["gen_ai.response.finish_reasons"],
        json!(["tool_calls"])
    );
    assert_eq!(
        chats[1]["attributes"]["gen_ai.response.finish_reasons"],
        json!(["stop"])
    );
    assert!(chats[0]["end_unix_ns"].as_u64() <= chats[1]["start_unix_ns"].as_u64());
    let tool = spans
        .iter()
        .find(|s| s["name"] == "execute_tool get_weather")
        .unwrap();
    assert_eq!(tool["parent_span_id"], chats[0]["span_id"]);
    let http = spans
        .iter()
        .find(|s| s["parent_span_id"] == tool["span_id"])
        .unwrap();
    assert!(http["attributes"]["url.full"]
        .as_str()
        .unwrap()
        .contains("/weather?city=Paris"));
    assert_eq!(t["totals"]["llm_calls"], 2);
}
