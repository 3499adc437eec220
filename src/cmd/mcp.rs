//! `tapedeck mcp`: the read side as a Model Context Protocol server over stdio, so a
//! coding agent pointed at a failing run can ask it questions: list the sessions, show a
//! run, analyze it, explain a step, diff two runs, cluster.
//!
//! The stdio transport is newline-delimited JSON-RPC 2.0 on stdin and stdout (logs go to
//! stderr). The server needs four methods (`initialize`, `ping`, `tools/list`,
//! `tools/call`) and answers them here in a few dozen lines rather than through an SDK
//! whose 0.x API moves with every release; the official Python SDK is its client in the
//! tests. A tool that fails answers `isError: true` with the message, as the protocol
//! asks, so the agent reads what went wrong; a malformed request gets a JSON-RPC error.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{msg, CmdError, CmdResult};
use crate::recording;
use tapedeck_model::rules::Rules;
use tapedeck_trace::analyze::{
    examine, explain::render as render_explanation, explain_step, to_json,
};
use tapedeck_trace::spans::{build, TraceOptions};

/// The protocol revisions this server speaks, newest last; a client asking for one of
/// them gets it, any other gets the newest.
const VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

const SESSION: &str = "A session name in the store, or a tape file path.";

/// The tools, as `tools/list` describes them.
fn tools() -> Value {
    let session = json!({"type": "string", "description": SESSION});
    let obj = |props: Value, required: &[&str]| json!({"type": "object", "properties": props, "required": required});
    json!([
        {"name": "list_sessions", "title": "List recorded sessions",
         "description": "The recorded sessions in the store: name, events, first and last time, bytes.",
         "inputSchema": obj(json!({}), &[])},
        {"name": "show_run", "title": "Show a run",
         "description": "A session as a tree of spans (agent, LLM calls, tool calls, HTTP exchanges) with steps, timing, tokens and errors.",
         "inputSchema": obj(json!({"session": session}), &["session"])},
        {"name": "analyze", "title": "Find failure signatures",
         "description": "The failure signatures of a session (retry loops, ignored tool errors, soft errors, empty results, context pressure, truncation, token burn, cascading errors across agents, slow steps), each with its steps and evidence.",
         "inputSchema": obj(json!({"session": session}), &["session"])},
        {"name": "explain_step", "title": "Explain a step",
         "description": "Walks back from one step through every earlier exchange whose output flowed into it, with the values that flowed: the run's stack trace for a wrong answer.",
         "inputSchema": obj(json!({"session": session, "step": {"type": "integer", "minimum": 1, "description": "The step to explain."}}), &["session", "step"])},
        {"name": "diff_runs", "title": "Diff two runs",
         "description": "The first step where run B diverges from run A, with request and response diffs.",
         "inputSchema": obj(json!({"session_a": session, "session_b": session}), &["session_a", "session_b"])},
        {"name": "cluster", "title": "Cluster sessions",
         "description": "Groups sessions by failure signature (all sessions in the store when none are named), largest group first, with each issue's status (new, recurring, resolved, regressed).",
         "inputSchema": obj(json!({"sessions": {"type": "array", "items": {"type": "string"}, "description": "Sessions to group; all when absent."}}), &[])},
    ])
}

pub async fn run(store: &Path) -> CmdResult {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    eprintln!("tapedeck mcp: serving {} on stdio", store.display());
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| msg(format!("cannot read stdin: {e}")))?
    {
        if line.trim().is_empty() {
            continue;
        }
        let Some(reply) = answer(&line, store).await else {
            continue;
        };
        let mut text = reply.to_string();
        text.push('\n');
        out.write_all(text.as_bytes())
            .await
            .and(out.flush().await)
            .map_err(|e| msg(format!("cannot write stdout: {e}")))?;
    }
    Ok(0)
}

/// The reply to one message; `None` for a notification (or a reply from the client).
async fn answer(line: &str, store: &Path) -> Option<Value> {
    let m: Value = match serde_json::from_str(line) {
        Ok(m) => m,
        Err(e) => return Some(rpc_error(Value::Null, -32700, &format!("parse error: {e}"))),
    };
    let id = m.get("id").cloned();
    let Some(method) = m.get("method").and_then(Value::as_str) else {
        return id.map(|id| rpc_error(id, -32600, "a request needs a method"));
    };
    let id = id?;
    let params = m.get("params").cloned().unwrap_or(Value::Null);
    let result = match method {
        "initialize" => initialize(&params),
        "ping" => json!({}),
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => call(&params, store).await,
        other => return Some(rpc_error(id, -32601, &format!("no method {other:?}"))),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn initialize(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .filter(|v| VERSIONS.contains(v))
        .unwrap_or(VERSIONS[VERSIONS.len() - 1]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "tapedeck", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "tapedeck's recorded agent runs. Start with list_sessions or cluster, then analyze a session, show_run to read it, explain_step to trace a wrong value back to where it came from, diff_runs against a good run.",
    })
}

/// A `tools/call`: the tool's text (and structured result), or `isError` with the reason.
async fn call(params: &Value, store: &Path) -> Value {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    match tool(name, &args, store).await {
        Ok((text, structured)) => {
            let mut r = json!({"content": [{"type": "text", "text": text}], "isError": false});
            if let Some(s) = structured {
                r["structuredContent"] = s;
            }
            r
        }
        Err(e) => json!({"content": [{"type": "text", "text": e.to_string()}], "isError": true}),
    }
}

fn arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, CmdError> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| msg(format!("missing string argument {name:?}")))
}

/// Runs one tool: its text for the agent, and the same as JSON when it has a shape.
async fn tool(name: &str, args: &Value, store: &Path) -> Result<(String, Option<Value>), CmdError> {
    let store: PathBuf = store.to_path_buf();
    match name {
        "list_sessions" => {
            let list: Vec<Value> = super::sessions::list(&store)
                .await?
                .iter()
                .map(super::sessions::to_json)
                .collect();
            let v = json!({"sessions": list});
            Ok((pretty(&v), Some(v)))
        }
        "show_run" => {
            let rec = recording::load(arg(args, "session")?, &store).await?;
            let trace = build(&rec, &Rules::from_working_dir()?, &TraceOptions::default());
            Ok((super::show::plain(&trace), None))
        }
        "analyze" => {
            let rec = recording::load(arg(args, "session")?, &store).await?;
            let found = examine(&rec, &Rules::from_working_dir()?).findings;
            let v = to_json(&rec.session, &found);
            Ok((pretty(&v), Some(v)))
        }
        "explain_step" => {
            let rec = recording::load(arg(args, "session")?, &store).await?;
            let step = args
                .get("step")
                .and_then(Value::as_u64)
                .ok_or_else(|| msg("missing integer argument \"step\""))?;
            let e = explain_step(&rec, &Rules::from_working_dir()?, step)
                .ok_or_else(|| msg(format!("{} has no step {step}", rec.source)))?;
            let v = serde_json::to_value(&e).unwrap_or_default();
            Ok((render_explanation(&e), Some(v)))
        }
        "diff_runs" => {
            let mut loader = recording::Loader::new(&store);
            let a = loader.load(arg(args, "session_a")?).await?;
            let b = loader.load(arg(args, "session_b")?).await?;
            let report = tapedeck_trace::diff::diff(&a, &b, &Rules::from_working_dir()?);
            let v = serde_json::to_value(&report).unwrap_or_default();
            Ok((pretty(&v), Some(v)))
        }
        "cluster" => {
            let names: Vec<String> = args
                .get("sessions")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let groups: Vec<Value> = super::cluster::groups(&names, &store)
                .await?
                .iter()
                .map(super::cluster::Group::to_json)
                .collect();
            let v = json!({"groups": groups});
            Ok((pretty(&v), Some(v)))
        }
        other => Err(msg(format!(
            "no tool {other:?} (tools: list_sessions, show_run, analyze, explain_step, diff_runs, cluster)"
        ))),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn initialize_tools_and_errors_follow_json_rpc() {
        let store = Path::new("/nonexistent-tapedeck-store");
        let init = answer(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
            store,
        )
        .await
        .unwrap();
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(init["result"]["serverInfo"]["name"], "tapedeck");
        let future = answer(
            r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2099-01-01"}}"#,
            store,
        )
        .await
        .unwrap();
        assert_eq!(future["result"]["protocolVersion"], "2025-11-25");
        assert!(answer(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            store
        )
        .await
        .is_none());
        let list = answer(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#, store)
            .await
            .unwrap();
        let names: Vec<&str> = list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "list_sessions",
                "show_run",
                "analyze",
                "explain_step",
                "diff_runs",
                "cluster"
            ]
        );
        let nope = answer(
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/list"}"#,
            store,
        )
        .await
        .unwrap();
        assert_eq!(nope["error"]["code"], -32601);
        let bad = answer("{not json", store).await.unwrap();
        assert_eq!(bad["error"]["code"], -32700);
        let missing = answer(
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"analyze","arguments":{}}}"#,
            store,
        )
        .await
        .unwrap();
        assert_eq!(missing["result"]["isError"], true);
        assert!(missing["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("\"session\""));
    }
}
