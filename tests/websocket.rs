//! WebSockets through tapedeck: a real client (tokio-tungstenite) inside a CONNECT tunnel
//! with real TLS, and plain `ws://` through the proxy; recorded from the fixture's
//! WebSocket endpoints, replayed offline message for message, misses closed with 1008.

use crate::support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use support::harness::{export, tls_tunnel, Daemon, Dirs};
use support::upstream::Upstream;

const SECRET: &str = "sk-ws-secret-0123456789abcdef";

/// Reads an HTTP response head byte by byte (nothing past it is consumed).
async fn read_head(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "response head cut");
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// `wss://localhost:PORT/PATH` through a CONNECT tunnel of the daemon, trusting its CA.
async fn wss(
    d: &Daemon,
    dirs: &Dirs,
    port: u16,
    path: &str,
) -> WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls = tls_tunnel(d, dirs, "localhost", port, &[b"http/1.1"]).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("wss://localhost:{port}{path}"),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {SECRET}").parse().unwrap());
    // Offered, and removed by tapedeck: payloads must stay readable.
    req.headers_mut().insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    let (ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert!(resp.headers().get("sec-websocket-extensions").is_none());
    ws
}

/// `ws://HOST/PATH` as an absolute-form upgrade sent to the proxy itself.
async fn ws_plain(d: &Daemon, authority: &str, path: &str) -> WebSocketStream<TcpStream> {
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    s.write_all(
        format!(
            "GET http://{authority}{path} HTTP/1.1\r\nhost: {authority}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    WebSocketStream::from_raw_socket(s, Role::Client, None).await
}

/// What a client saw, in order: text, binary (as `bin:` + hex), close (as `close:CODE:REASON`).
async fn converse<S>(ws: &mut WebSocketStream<S>, sends: &[Message]) -> Vec<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut seen = Vec::new();
    let next = |m: Option<Result<Message, _>>| -> Option<String> {
        match m? {
            Ok(Message::Text(t)) => Some(t.to_string()),
            Ok(Message::Binary(b)) => Some(format!(
                "bin:{}",
                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
            )),
            Ok(Message::Close(Some(f))) => {
                Some(format!("close:{}:{}", u16::from(f.code), f.reason))
            }
            Ok(Message::Close(None)) => Some("close".into()),
            Ok(_) => Some(String::new()),
            Err(e) => Some(format!("error:{e}")),
        }
    };
    // The greeting.
    let hello = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .unwrap();
    seen.push(next(hello).unwrap());
    for m in sends {
        ws.send(m.clone()).await.unwrap();
        loop {
            let got = tokio::time::timeout(Duration::from_secs(20), ws.next())
                .await
                .unwrap();
            match next(got) {
                Some(s) if s.is_empty() => continue,
                Some(s) => {
                    let done = s.starts_with("close") || s.starts_with("error");
                    seen.push(s);
                    if done {
                        // Reading on lets the client answer the close, as clients do.
                        while let Ok(Some(_)) =
                            tokio::time::timeout(Duration::from_secs(10), ws.next()).await
                        {
                        }
                        return seen;
                    }
                    break;
                }
                None => return seen,
            }
        }
    }
    seen
}

fn script(event_id: &str) -> Vec<Message> {
    vec![
        Message::text(format!(
            r#"{{"type":"note","event_id":"{event_id}","api_key":"{SECRET}","text":"hi"}}"#
        )),
        Message::Binary(vec![0u8, 1, 2, 255].into()),
        Message::text("ping"),
        Message::text("bye"),
    ]
}

/// Sends the Realtime turn `ask` and `response.create`; the text messages that come
/// back, up to `response.done`.
async fn repeat_turn(
    ws: &mut WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>,
    ask: &Value,
) -> Vec<String> {
    ws.send(Message::Text(ask.to_string().into()))
        .await
        .unwrap();
    ws.send(Message::Text(r#"{"type":"response.create"}"#.into()))
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(Ok(Message::Text(t))) = ws.next().await {
        let done = t.contains("\"response.done\"");
        got.push(t.to_string());
        if done {
            break;
        }
    }
    got
}

/// The `response.output_text.delta` texts of these messages, joined.
fn text_deltas(messages: Vec<String>) -> String {
    messages
        .iter()
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .filter(|v| v["type"] == "response.output_text.delta")
        .filter_map(|v| v["delta"].as_str().map(str::to_string))
        .collect()
}

/// A key a Realtime model repeats, three characters a `response.output_text.delta`
/// message, never reaches disk: each message was scrubbed alone, so every piece was
/// stored and the messages spelled the key out.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_a_realtime_model_streams_back_a_few_characters_a_message_is_not_stored() {
    let up = Upstream::start(true).await;
    let port = up.addr.port();
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "rt", &[]);
    let mut ws = wss(&d, &dirs, port, "/v1/realtime?model=gpt-realtime").await;
    let ask = serde_json::json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": format!("Repeat: {SECRET}")}]}});
    let live = repeat_turn(&mut ws, &ask).await;
    drop(ws);
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(SECRET), "{err}");
    // The client got the key, streamed as the upstream sent it.
    assert_eq!(text_deltas(live), SECRET);

    let events = export(&dirs, "rt");
    let stored = events[0]["ws"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["from"] == "server")
        .filter_map(|m| {
            m["body"]["json"]
                .as_object()
                .map(|o| Value::Object(o.clone()).to_string())
        })
        .collect::<Vec<_>>();
    let text = text_deltas(stored);
    assert!(
        !text.is_empty() && text.chars().all(|c| "[REDACTED]".contains(c)),
        "{text}"
    );
    // No piece of it anywhere on disk (the output_text.done and response.done messages
    // hold it whole, and were scrubbed as before).
    assert!(dirs.files_containing(SECRET.as_bytes()).is_empty());
    let middle = &SECRET[SECRET.len() / 2 - 4..][..8];
    assert!(dirs.files_containing(middle.as_bytes()).is_empty());

    // Replayed: the client's message with the key in it matches the recorded one (it was
    // scrubbed of the upgrade request's key at record time, and now at replay too: it
    // missed), and the deltas come back as [REDACTED] pieces.
    drop(up);
    let r = Daemon::start(&dirs, &["replay", "--session", "rt"]);
    let mut ws = wss(&r, &dirs, port, "/v1/realtime?model=gpt-realtime").await;
    let replayed = repeat_turn(&mut ws, &ask).await;
    drop(ws);
    let (_, err) = r.stop();
    assert!(err.contains("0 misses"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    let text = text_deltas(replayed);
    assert!(
        text.starts_with("[REDACTED]") && !text.contains("secret"),
        "{text}"
    );
}

/// A WebSocket whose messages the store could not take (here a large one, once the
/// store's body directory is gone, as on a full disk): the conversation goes through
/// whole, and the event says it was not stored whole, so fsck names it, replay refuses
/// the session and record exits 2. Before, each such message logged an error and the
/// event named a payload the store never had, which a replay served as missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_message_the_store_could_not_take_marks_its_event() {
    let up = Upstream::start(true).await;
    let port = up.addr.port();
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "wsfull", &[]);
    let mut ws = wss(&d, &dirs, port, "/ws/echo").await;
    let blobs = dirs.store.join("blobs");
    if blobs.exists() {
        std::fs::remove_dir_all(&blobs).unwrap();
    }
    std::fs::write(&blobs, b"not a directory").unwrap();
    let big = vec![7u8; 100_000];
    let live = converse(
        &mut ws,
        &[Message::Binary(big.clone().into()), Message::text("bye")],
    )
    .await;
    drop(ws);
    assert_eq!(
        live[1],
        format!("bin:{}", "07".repeat(big.len())),
        "the echo went through whole"
    );
    assert_eq!(live.last().unwrap(), "close:4000:bye", "{live:?}");
    let (code, stopped) = d.stop();
    let err = &stopped;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot store the WebSocket's 2 of its messages")
            && err.contains("1 exchange went through to the agent but could not be stored whole"),
        "{err}"
    );
    let (code, out, err) = dirs.run(&["fsck"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("step 1: it could not be stored whole when it was recorded (store write failed: 2 of its messages"),
        "{out}"
    );
    let (code, _, err) = dirs.run(&["replay", "--session", "wsfull", "--", "true"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("step 1: it could not be stored whole"),
        "{err}"
    );
    // The upgrade's key went nowhere: not with the event, its error, nor the log.
    assert!(
        dirs.files_containing(SECRET.as_bytes()).is_empty(),
        "{:?}",
        dirs.files_containing(SECRET.as_bytes())
    );
    assert!(!stopped.contains(SECRET) && !err.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_in_a_tls_tunnel_is_recorded_and_replayed_message_for_message() {
    let up = Upstream::start(true).await;
    let port = up.addr.port();
    let dirs = Dirs::new();
    let d = Daemon::record(&dirs, &up, "ws", &[]);
    let mut ws = wss(&d, &dirs, port, "/ws/echo").await;
    let live = converse(&mut ws, &script("evt_1")).await;
    drop(ws);
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(live[0], r#"{"type":"hello"}"#);
    assert_eq!(live[2], "bin:000102ff");
    assert_eq!(live[3], "ping");
    assert_eq!(live.last().unwrap(), "close:4000:bye", "{live:?}");
    assert!(
        live[1].contains(SECRET),
        "the upstream gets the real values"
    );

    let events = export(&dirs, "ws");
    assert_eq!(events.len(), 1, "{events:?}");
    let ev = &events[0];
    assert_eq!(ev["response"]["status"], 101);
    let msgs = ev["ws"]["messages"].as_array().unwrap();
    let data: Vec<(&str, &str)> = msgs
        .iter()
        .filter(|m| m["op"] != "ping" && m["op"] != "pong")
        .map(|m| (m["from"].as_str().unwrap(), m["op"].as_str().unwrap()))
        .collect();
    assert_eq!(
        data,
        [
            ("server", "text"),
            ("client", "text"),
            ("server", "text"),
            ("client", "binary"),
            ("server", "binary"),
            ("client", "text"),
            ("server", "text"),
            ("client", "text"),
            ("server", "close"),
            ("client", "close"),
        ]
    );
    // JSON inline as JSON, binary as base64, the close code kept; offsets never go back.
    assert_eq!(msgs[1]["body"]["json"]["type"], "note");
    assert_eq!(msgs[1]["body"]["json"]["api_key"], "[REDACTED]");
    let bin = msgs.iter().find(|m| m["op"] == "binary").unwrap();
    assert_eq!(bin["body"]["base64"], "AAEC/w==");
    let close = msgs.iter().find(|m| m["op"] == "close").unwrap();
    assert_eq!(
        (close["code"].as_u64(), close["body"]["text"].as_str()),
        (Some(4000), Some("bye"))
    );
    let at: Vec<f64> = msgs.iter().map(|m| m["at_ms"].as_f64().unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
    assert!(
        msgs.iter()
            .any(|m| m["from"] == "server" && m["op"] == "ping"),
        "the server's ping is recorded: {msgs:?}"
    );
    assert!(
        dirs.files_containing(SECRET.as_bytes()).is_empty(),
        "a secret reached the disk"
    );

    // Offline: the upstream is gone; another event_id is still the same message.
    drop(up);
    let r = Daemon::start(&dirs, &["replay", "--session", "ws"]);
    let mut ws = wss(&r, &dirs, port, "/ws/echo").await;
    let replayed = converse(&mut ws, &script("evt_2")).await;
    drop(ws);
    let (_, err) = r.stop();
    let want: Vec<String> = live
        .iter()
        .map(|s| s.replace(SECRET, "[REDACTED]"))
        .collect();
    assert_eq!(replayed, want, "{err}");
    assert!(err.contains("served 1/1 events, 0 misses"), "{err}");

    // A message the recording lacks: closed with 1008 and the miss text, and counted.
    let r = Daemon::start(&dirs, &["replay", "--session", "ws"]);
    let mut ws = wss(&r, &dirs, port, "/ws/echo").await;
    let mut changed = script("evt_3");
    changed[1] = Message::Binary(vec![9u8, 9].into());
    let got = converse(&mut ws, &changed).await;
    let (_, err) = r.stop();
    let last = got.last().unwrap();
    assert!(
        last.starts_with("close:1008:tapedeck replay miss (unrecorded)"),
        "{got:?}"
    );
    assert!(err.contains("1 misses (1 unrecorded)"), "{err}");
    assert!(err.contains("binary message of 2 bytes"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_ws_through_the_proxy_records_and_replays_at_the_recorded_pace() {
    let up = Upstream::start(false).await;
    let authority = up.addr.to_string();
    let dirs = Dirs::new();
    let d = Daemon::start(&dirs, &["record", "--session", "plain"]);
    let mut ws = ws_plain(&d, &authority, "/ws/echo").await;
    let sends = [Message::text("sleep:400"), Message::text("after")];
    let live = converse(&mut ws, &sends).await;
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    while ws.next().await.is_some() {}
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert_eq!(live, [r#"{"type":"hello"}"#, "sleep:400", "after"]);
    let events = export(&dirs, "plain");
    let msgs = events[0]["ws"]["messages"].as_array().unwrap();
    let client_close = msgs
        .iter()
        .find(|m| m["from"] == "client" && m["op"] == "close")
        .unwrap();
    assert_eq!(client_close["code"], 1000);
    drop(up);

    for pace in ["recorded", "fast"] {
        let r = Daemon::start(&dirs, &["replay", "--session", "plain", "--pace", pace]);
        let mut ws = ws_plain(&r, &authority, "/ws/echo").await;
        let start = Instant::now();
        let replayed = converse(&mut ws, &sends).await;
        let took = start.elapsed();
        ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        }))
        .await
        .unwrap();
        let mut answer = None;
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Close(f) = m {
                answer = f.map(|f| u16::from(f.code));
            }
        }
        let (_, err) = r.stop();
        assert_eq!(replayed, live, "{err}");
        assert_eq!(answer, Some(1000), "the close is answered as recorded");
        if pace == "recorded" {
            // The echo came 400 ms after its message; at the recorded pace so does the replay.
            assert!(took >= Duration::from_millis(350), "replayed in {took:?}");
        }
    }
}

#[test]
fn tape_with_websocket_messages_is_format_2_and_round_trips() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = rt.block_on(Upstream::start(false));
    let authority = up.addr.to_string();
    let dirs = Dirs::new();
    let d = Daemon::start(&dirs, &["record", "--session", "tape"]);
    rt.block_on(async {
        let mut ws = ws_plain(&d, &authority, "/ws/echo").await;
        converse(
            &mut ws,
            &[Message::text(r#"{"a":1}"#), Message::text("bye")],
        )
        .await;
    });
    d.stop();
    let tape = dirs.path("t.jsonl");
    let (code, _, err) = dirs.run(&["export", "tape", "-o", tape.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (header, events) = support::harness::read_tape(&tape);
    assert_eq!(header["tapedeck_tape"], 2);
    assert!(events[0]["ws"]["messages"]
        .as_array()
        .is_some_and(|m| m.len() >= 4));
    let (code, _, err) = dirs.run(&["import", tape.to_str().unwrap(), "--session", "again"]);
    assert_eq!(code, 0, "{err}");
    let again = dirs.path("again.jsonl");
    dirs.run(&["export", "again", "-o", again.to_str().unwrap()]);
    let a: Vec<Value> = support::harness::read_tape(&tape).1;
    let b: Vec<Value> = support::harness::read_tape(&again).1;
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_websocket_keeps_its_place_under_the_connection_cap() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(
        &dirs,
        &[
            "record",
            "--session",
            "cap",
            "--upstream-ca",
            &ca,
            "--max-connections",
            "1",
        ],
    );
    let mut ws = wss(&d, &dirs, up.addr.port(), "/ws/echo").await;
    let hello = ws.next().await.unwrap().unwrap();
    assert_eq!(hello.into_text().unwrap().as_str(), r#"{"type":"hello"}"#);
    // The tunnel's HTTP part is over; the WebSocket in it still counts.
    let mut s = TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"GET http://127.0.0.1:9/ HTTP/1.1\r\nhost: 127.0.0.1:9\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .as_str(),
        "still here"
    );
    drop(ws);
    d.stop();
}

/// A what-if replay sends a WebSocket out live, whether the recording lacks it
/// (`--on-miss live`) or its host is to go live (`--live HOST`): the client talks to the
/// real upstream message for message, and the fork records the conversation as `record`
/// would, secrets redacted.
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_goes_live_in_a_what_if_run_and_is_forked() {
    let up = Upstream::start(true).await;
    let port = up.addr.port();
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    // The recording has one plain call and no WebSocket.
    let d = Daemon::start(
        &dirs,
        &["record", "--session", "base", "--upstream-ca", &ca],
    );
    let c = support::harness::client(&d, &dirs);
    let r = c.get(up.url("/json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let (code, err) = d.stop();
    assert_eq!(code, 0, "{err}");

    for (n, live) in [["--on-miss", "live"], ["--live", "localhost"]]
        .iter()
        .enumerate()
    {
        let mut args = vec!["replay", "--session", "base", "--upstream-ca", &ca];
        args.extend_from_slice(live);
        let r = Daemon::start(&dirs, &args);
        let mut ws = wss(&r, &dirs, port, "/ws/echo").await;
        let got = converse(&mut ws, &script("evt_live")).await;
        drop(ws);
        let (code, err) = r.stop();
        assert_eq!(code, 0, "{err}");
        assert_eq!(got[0], r#"{"type":"hello"}"#, "{live:?}: {got:?}\n{err}");
        assert!(
            got[1].contains(SECRET),
            "the live upstream gets the real values: {got:?}"
        );
        assert_eq!(got[2], "bin:000102ff");
        assert_eq!(got[3], "ping");
        assert_eq!(got.last().unwrap(), "close:4000:bye", "{got:?}");

        let events = export(&dirs, &format!("base.fork-{}", n + 1));
        let ws_events: Vec<&Value> = events.iter().filter(|e| !e["ws"].is_null()).collect();
        assert_eq!(ws_events.len(), 1, "{live:?}: {events:?}");
        let ev = ws_events[0];
        assert_eq!(ev["response"]["status"], 101);
        let msgs = ev["ws"]["messages"].as_array().unwrap();
        let note = msgs
            .iter()
            .find(|m| m["from"] == "client" && m["body"]["json"]["type"] == "note")
            .expect("the client's note is recorded");
        assert_eq!(note["body"]["json"]["api_key"], "[REDACTED]");
        assert!(
            msgs.iter()
                .any(|m| m["op"] == "close" && m["code"].as_u64() == Some(4000)),
            "{msgs:?}"
        );
    }
    assert!(
        dirs.files_containing(SECRET.as_bytes()).is_empty(),
        "a secret reached the disk"
    );
}
