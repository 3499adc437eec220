//! The upstream fixture's WebSocket endpoints (a part of `upstream.rs`):
//!
//! - `GET /ws/echo`: sends `{"type":"hello"}`, then echoes every text and binary message;
//!   the text `bye` makes it close with code 4000 and reason `bye`; `ping` gets a
//!   WebSocket ping before the echo; `sleep:MS` is echoed after MS milliseconds.
//! - `GET /v1/realtime?model=M`: a scripted model speaking the OpenAI Realtime API's event
//!   shapes (GA names): `session.created` on connect; `session.update` →
//!   `session.updated`; `conversation.item.create` → `conversation.item.added` and
//!   `conversation.item.done`; `response.create` → `response.created`, the output item
//!   events (text deltas, or function-call argument deltas when tools are set and the
//!   last user message names a known city), and `response.done` with usage. Ids are
//!   counters, so every run says the same thing.

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{city_of, full, tokens, weather_of, FixtureBody, WEATHER};

/// Whether a request asks for a WebSocket.
pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers an upgrade request: `101` and the session on a task of its own.
pub fn upgrade(
    mut req: Request<Incoming>,
    path: &str,
    query: Option<&str>,
) -> Response<FixtureBody> {
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
    else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(full("fixture: no sec-websocket-key"))
            .expect("response");
    };
    let model = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("model="))
        .unwrap_or("gpt-realtime")
        .to_string();
    let kind = match path {
        "/ws/echo" => Kind::Echo,
        "/v1/realtime" => Kind::Realtime(model),
        _ => {
            return Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(full("fixture: no WebSocket here"))
                .expect("response")
        }
    };
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = on.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
        match kind {
            Kind::Echo => echo(ws).await,
            Kind::Realtime(model) => realtime(ws, model).await,
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-accept",
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
        )
        .body(full(""))
        .expect("response")
}

enum Kind {
    Echo,
    Realtime(String),
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn echo(mut ws: Ws) {
    if ws.send(Message::text(r#"{"type":"hello"}"#)).await.is_err() {
        return;
    }
    while let Some(Ok(m)) = ws.next().await {
        match m {
            Message::Text(t) if t.as_str() == "bye" => {
                let _ = ws
                    .close(Some(CloseFrame {
                        code: CloseCode::from(4000),
                        reason: "bye".into(),
                    }))
                    .await;
            }
            Message::Text(t) => {
                if let Some(ms) = t
                    .as_str()
                    .strip_prefix("sleep:")
                    .and_then(|m| m.parse().ok())
                {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                if t.as_str() == "ping"
                    && ws.send(Message::Ping(b"fx".to_vec().into())).await.is_err()
                {
                    return;
                }
                if ws.send(Message::Text(t)).await.is_err() {
                    return;
                }
            }
            Message::Binary(b) => {
                let sent = ws.send(Message::Binary(b)).await;
                if sent.is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// One Realtime connection's state: a conversation and counters for ids.
struct Conversation {
    model: String,
    tools: Vec<String>,
    items: Vec<Value>,
    next_event: u64,
    next_id: u64,
}

impl Conversation {
    fn event(&mut self, mut v: Value) -> Message {
        self.next_event += 1;
        v["event_id"] = json!(format!("event_{}", self.next_event));
        Message::text(v.to_string())
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{}", self.next_id)
    }

    fn session(&self) -> Value {
        json!({"type": "realtime", "object": "realtime.session", "id": "sess_fixture",
               "model": self.model, "output_modalities": ["text"],
               "tools": self.tools.iter().map(|n| json!({"type": "function", "name": n})).collect::<Vec<_>>()})
    }

    /// What the scripted model answers now: a function call for a city in the last user
    /// message when tools are set and no result came back yet, else text.
    fn answer(&mut self) -> Vec<Value> {
        let last_user = self
            .items
            .iter()
            .rev()
            .find(|i| i["type"] == "message" && i["role"] == "user")
            .map(|i| {
                i["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let output = self
            .items
            .iter()
            .rev()
            .take_while(|i| !(i["type"] == "message" && i["role"] == "user"))
            .find(|i| i["type"] == "function_call_output")
            .and_then(|i| i["output"].as_str().map(str::to_string));
        // "Repeat: X" is answered with X, three characters a delta (see `realtime`), as a
        // model repeating a key from its prompt streams it.
        if let Some(x) = last_user.strip_prefix("Repeat: ") {
            return vec![self.text_item(x)];
        }
        let city = WEATHER
            .iter()
            .find(|(c, _, _)| last_user.contains(c))
            .map(|(c, _, _)| c.to_string());
        match (output, city, self.tools.first().cloned()) {
            (None, Some(city), Some(tool)) => {
                let call_id = self.id("call");
                vec![
                    json!({"type": "function_call", "id": self.id("item"), "call_id": call_id,
                            "name": tool, "arguments": json!({"city": city}).to_string(), "status": "completed"}),
                ]
            }
            (Some(out), _, _) => {
                let text = match serde_json::from_str::<Value>(&out) {
                    Ok(v) if v.get("temp_c").is_some() => format!(
                        "It is {} and {}°C in {}.",
                        v["conditions"].as_str().unwrap_or("?"),
                        v["temp_c"],
                        v["city"].as_str().unwrap_or("?")
                    ),
                    _ => format!("The tool said: {out}"),
                };
                vec![self.text_item(&text)]
            }
            _ => {
                let text = match weather_of(&city_of(&last_user)) {
                    Some(_) if self.tools.is_empty() => {
                        "I have no tools to look that up.".to_string()
                    }
                    _ => format!("You said: {last_user}"),
                };
                vec![self.text_item(&text)]
            }
        }
    }

    fn text_item(&mut self, text: &str) -> Value {
        json!({"type": "message", "id": self.id("item"), "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": text}]})
    }
}

async fn realtime(mut ws: Ws, model: String) {
    let mut c = Conversation {
        model,
        tools: Vec::new(),
        items: Vec::new(),
        next_event: 0,
        next_id: 0,
    };
    let created = c.event(json!({"type": "session.created", "session": c.session()}));
    if ws.send(created).await.is_err() {
        return;
    }
    while let Some(Ok(m)) = ws.next().await {
        let Message::Text(t) = m else { continue };
        let Ok(ev) = serde_json::from_str::<Value>(t.as_str()) else {
            let err = c.event(json!({"type": "error", "error": {"type": "invalid_request_error", "message": "not JSON"}}));
            let _ = ws.send(err).await;
            continue;
        };
        let mut out = Vec::new();
        match ev["type"].as_str().unwrap_or("") {
            "session.update" => {
                c.tools = ev["session"]["tools"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["name"].as_str().map(str::to_string))
                    .collect();
                let s = c.session();
                out.push(c.event(json!({"type": "session.updated", "session": s})));
            }
            "conversation.item.create" => {
                let mut item = ev["item"].clone();
                if item.get("id").is_none() {
                    item["id"] = json!(c.id("item"));
                }
                c.items.push(item.clone());
                out.push(c.event(json!({"type": "conversation.item.added", "item": item})));
                out.push(c.event(json!({"type": "conversation.item.done", "item": item})));
            }
            "response.create" => {
                let rid = c.id("resp");
                out.push(c.event(json!({"type": "response.created",
                    "response": {"id": rid, "object": "realtime.response", "status": "in_progress", "output": []}})));
                let items = c.answer();
                let prompt: usize = c.items.iter().map(|i| i.to_string().len()).sum();
                let mut completion = 0;
                for (n, item) in items.iter().enumerate() {
                    let iid = item["id"].clone();
                    out.push(c.event(json!({"type": "response.output_item.added", "response_id": rid, "output_index": n,
                        "item": {"id": iid, "type": item["type"], "status": "in_progress"}})));
                    if item["type"] == "function_call" {
                        let args = item["arguments"].as_str().unwrap_or("").to_string();
                        completion += args.len();
                        for piece in args.as_bytes().chunks(8) {
                            out.push(c.event(json!({"type": "response.function_call_arguments.delta", "response_id": rid,
                                "item_id": iid, "output_index": n, "call_id": item["call_id"], "delta": String::from_utf8_lossy(piece)})));
                        }
                        out.push(c.event(json!({"type": "response.function_call_arguments.done", "response_id": rid,
                            "item_id": iid, "output_index": n, "call_id": item["call_id"], "name": item["name"], "arguments": args})));
                    } else {
                        let text = item["content"][0]["text"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        completion += text.len();
                        let repeat = c
                            .items
                            .iter()
                            .rev()
                            .find(|i| i["role"] == "user")
                            .is_some_and(|i| {
                                i["content"][0]["text"]
                                    .as_str()
                                    .is_some_and(|t| t.starts_with("Repeat: "))
                            });
                        let chars: Vec<char> = text.chars().collect();
                        let deltas: Vec<String> = if repeat {
                            chars.chunks(3).map(|c| c.iter().collect()).collect()
                        } else {
                            text.split_inclusive(' ').map(str::to_string).collect()
                        };
                        for word in deltas {
                            out.push(c.event(json!({"type": "response.output_text.delta", "response_id": rid,
                                "item_id": iid, "output_index": n, "content_index": 0, "delta": word})));
                        }
                        out.push(c.event(
                            json!({"type": "response.output_text.done", "response_id": rid,
                            "item_id": iid, "output_index": n, "content_index": 0, "text": text}),
                        ));
                    }
                    out.push(c.event(json!({"type": "response.output_item.done", "response_id": rid, "output_index": n, "item": item})));
                }
                c.items.extend(items.iter().cloned());
                let (i, o) = (tokens(prompt), tokens(completion));
                out.push(c.event(json!({"type": "response.done", "response": {
                    "id": rid, "object": "realtime.response", "status": "completed", "output": items,
                    "usage": {"total_tokens": i + o, "input_tokens": i, "output_tokens": o}}})));
            }
            other => {
                let other = other.to_string();
                out.push(c.event(
                    json!({"type": "error", "error": {"type": "invalid_request_error",
                    "message": format!("fixture: unknown event type {other:?}")}}),
                ));
            }
        }
        for m in out {
            if ws.send(m).await.is_err() {
                return;
            }
        }
    }
}
