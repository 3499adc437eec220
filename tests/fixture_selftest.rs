//! Checks the upstream fixture itself, with reqwest and no proxy in between.
use crate::support;

use std::io::Read as _;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{json, Value};
use support::upstream::{big_byte, Upstream};

fn client(up: &Upstream) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(up.ca_pem.as_bytes()).expect("fixture CA");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test]
async fn json_over_tls_with_h2_and_plain_h1() {
    let up = Upstream::start(true).await;
    assert!(up.url("/json").starts_with("https://localhost:"));
    assert_eq!(std::fs::read_to_string(&up.ca_path).unwrap(), up.ca_pem);
    let resp = client(&up).get(up.url("/json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.bytes().await.unwrap();
    assert!(
        (700..1500).contains(&body.len()),
        "~1 KB, got {}",
        body.len()
    );
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["count"], 8);

    let plain = Upstream::start(false).await;
    assert!(plain.url("json").starts_with("http://127.0.0.1:"));
    let resp = client(&plain).get(plain.url("/json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    // Deterministic: the same bytes from both servers.
    assert_eq!(resp.bytes().await.unwrap(), body);
}

#[tokio::test]
async fn sse_events_arrive_spaced() {
    let up = Upstream::start(true).await;
    let resp = client(&up)
        .get(up.url("/sse?n=4&gap_ms=100"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // Timed from the response head on, so a slow TLS handshake can't blur it.
    let start = Instant::now();
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut first_event_at = None;
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        if first_event_at.is_none() && text.contains("\n\n") {
            first_event_at = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    let first = first_event_at.unwrap();
    assert!(
        total >= Duration::from_millis(250),
        "3 gaps of 100 ms, took {total:?}"
    );
    assert!(
        first + Duration::from_millis(200) < total,
        "first event at {first:?}, end at {total:?}: not streamed"
    );
    let expected: String = (0..4)
        .map(|i| format!("data: {{\"i\":{i}}}\n\n"))
        .collect::<String>()
        + "data: [DONE]\n\n";
    assert_eq!(text, expected);
}

#[tokio::test]
async fn big_bodies_with_and_without_length() {
    let up = Upstream::start(true).await;
    let c = client(&up);
    let n: u64 = 5 * 1024 * 1024;
    let resp = c
        .get(up.url(&format!("/big?bytes={n}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.content_length(), Some(n));
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len() as u64, n);
    for i in [0u64, 1, 250, 251, 65535, 65536, 65537, n - 1] {
        assert_eq!(body[i as usize], big_byte(i), "byte {i}");
    }

    // Chunked needs HTTP/1.1 to be visible: use the plain fixture.
    let plain = Upstream::start(false).await;
    let resp = client(&plain)
        .get(plain.url("/big-chunked?bytes=300000"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    assert!(resp.headers().get("content-length").is_none());
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), 300000);
    assert!(body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == big_byte(i as u64)));
}

#[tokio::test]
async fn chat_completions_tool_call_then_final_answer() {
    let up = Upstream::start(true).await;
    let c = client(&up);
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let mut messages = vec![json!({"role": "user", "content": "What is the weather in Tokyo?"})];
    let r1: Value = c
        .post(up.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r1["id"], "chatcmpl-1");
    assert_eq!(r1["model"], "gpt-4o-mini");
    assert_eq!(r1["choices"][0]["finish_reason"], "tool_calls");
    let call = &r1["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_1");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"city":"Tokyo"}"#);

    let weather = c
        .get(up.url("/weather?city=Tokyo"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        weather,
        r#"{"city":"Tokyo","temp_c":22,"conditions":"clear"}"#
    );
    messages.push(r1["choices"][0]["message"].clone());
    messages.push(json!({"role": "tool", "tool_call_id": "call_1", "content": weather}));
    let body = json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools});
    let r2: Value = c
        .post(up.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r2["choices"][0]["finish_reason"], "stop");
    let answer = format!("The weather in Tokyo: {weather}");
    assert_eq!(r2["choices"][0]["message"]["content"], answer.as_str());
    assert!(r2["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    // The same turn streamed: content deltas add up to the same answer, then usage.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let text = c
        .post(up.url("/v1/chat/completions"))
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(chunks.last(), Some(&"[DONE]"));
    let parsed: Vec<Value> = chunks[..chunks.len() - 1]
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    let content: String = parsed
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, answer);
    assert!(parsed.len() > 4, "several content deltas");
    let usage = parsed.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], r2["usage"]);
}

#[tokio::test]
async fn connections_and_requests_are_counted_and_stop_refuses() {
    let up = Upstream::start(true).await;
    assert_eq!((up.connections(), up.requests()), (0, 0));
    let c = client(&up);
    for _ in 0..3 {
        assert_eq!(
            c.get(up.url("/empty-list"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "[]"
        );
    }
    // One pooled HTTP/2 connection carried the three requests.
    assert_eq!(up.connections(), 1);
    assert_eq!(up.requests(), 3);
    let _ = client(&up).get(up.url("/empty")).send().await.unwrap();
    assert_eq!(up.connections(), 2);

    let addr = up.addr;
    let ca_path = up.ca_path.clone();
    up.stop();
    let err = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(!ca_path.exists(), "the CA file goes with the Upstream");
}

#[tokio::test]
async fn misc_endpoints() {
    let up = Upstream::start(true).await;
    let c = client(&up);

    let echo: Value = c
        .post(up.url("/echo?a=1&b=x%20y"))
        .header("authorization", "Bearer sk-secret")
        .header("cookie", "session=secret")
        .header("x-test", "yes")
        .json(&json!({"hello": "world"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/echo");
    assert_eq!(echo["query"], "a=1&b=x%20y");
    assert_eq!(echo["body"], json!({"hello": "world"}));
    assert_eq!(echo["headers"]["x-test"], "yes");
    assert_eq!(echo["headers"]["content-type"], "application/json");
    assert!(!echo.to_string().contains("secret"));

    let resp = c.get(up.url("/status/503")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    assert!(v["error"]["code"].is_null());

    let resp = c
        .get(up.url("/weather?city=Atlantis"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        c.get(up.url("/nowhere")).send().await.unwrap().status(),
        404
    );

    let resp = c.get(up.url("/empty")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.bytes().await.unwrap().is_empty());

    let resp = c.get(up.url("/gzip")).send().await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let gz = resp.bytes().await.unwrap();
    let mut raw = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut raw)
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&raw).unwrap(),
        support::upstream::gzip_json()
    );

    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 256) as u8).collect();
    let sum: u64 = data.iter().map(|b| *b as u64).sum::<u64>() % (1 << 32);
    let v: Value = c
        .post(up.url("/upload"))
        .body(data)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"bytes": 100_000, "sum": sum}));

    let start = Instant::now();
    let v: Value = c
        .get(up.url("/slow?ms=150"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert_eq!(v["ms"], 150);

    // /close answers nothing; /reset-mid breaks off after part of the body.
    assert!(c.get(up.url("/close")).send().await.is_err());
    let resp = c.get(up.url("/reset-mid")).send().await.unwrap();
    assert_eq!(resp.content_length(), Some(1000));
    assert!(resp.bytes().await.is_err());

    let v: Value = c
        .post(up.url("/v1/embeddings"))
        .json(&json!({"model": "text-embedding-3-small", "input": ["a", "b"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn anthropic_messages_script() {
    let up = Upstream::start(true).await;
    let c = client(&up);
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    let mut messages = vec![json!({"role": "user", "content": "Weather in Oslo?"})];
    let r1: Value = c
        .post(up.url("/v1/messages"))
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": messages, "tools": tools}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r1["stop_reason"], "tool_use");
    let block = &r1["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["input"], json!({"city": "Oslo"}));
    messages.push(json!({"role": "assistant", "content": r1["content"]}));
    messages.push(json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": block["id"], "content": "snow, 4 C"}]}));
    let req = json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": messages,
                     "tools": tools, "stream": true});
    let text = c
        .post(up.url("/v1/messages"))
        .json(&req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.lines().next()?.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"));
    assert_eq!(
        &events[events.len() - 3..],
        &["content_block_stop", "message_delta", "message_stop"]
    );
    let streamed: String = text
        .split("\n\n")
        .filter_map(|e| e.lines().nth(1)?.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(streamed, "The weather in Oslo: snow, 4 C");
}

#[test]
fn start_blocking_serves_without_a_caller_runtime() {
    use std::io::{Read as _, Write as _};
    let up = Upstream::start_blocking(false);
    let mut s = std::net::TcpStream::connect(up.addr).unwrap();
    s.write_all(b"GET /weather?city=Paris HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.ends_with(r#"{"city":"Paris","temp_c":18,"conditions":"sunny"}"#));
    assert_eq!((up.connections(), up.requests()), (1, 1));
    let addr = up.addr;
    drop(up);
    let err = std::net::TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}
