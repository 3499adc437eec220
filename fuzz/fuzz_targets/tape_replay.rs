//! "import accepts ⇒ replay does not panic": a tape the reader accepts is replayed, each
//! recorded request sent back through the real [`Replayer`] over an in-memory HTTP/1.1
//! connection, at the recorded pace (on a paused clock, so hostile times cost nothing),
//! plus one request that was never recorded (the miss path). A complete, uncoded
//! response that was served arrives byte for byte as recorded.
#![no_main]

use std::convert::Infallible;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use tapedeck_model::exchange::{Event, MAX_EXCHANGE_TIME};
use tapedeck_model::rules::Rules;
use tapedeck_model::session::SessionName;
use tapedeck_proxy::{ClientCtx, Handler};
use tapedeck_replay::{Order, Pace};
use tapedeck_replay::{ReplayOptions, Replayer, STEP_HEADER};
use tapedeck_store::recording::Recording;
use tapedeck_store::tape::read_from;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a tokio runtime")
    })
}

/// Headers that describe the framing of the recorded request, not the request.
fn is_framing(name: &str) -> bool {
    matches!(
        name,
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "te"
            | "expect"
            | "host"
            | "trailer"
            | "proxy-connection"
    )
}

fn request_of(ev: &Event, body: Bytes) -> Option<hyper::Request<Full<Bytes>>> {
    let mut b = hyper::Request::builder()
        .method(ev.request.method.as_str())
        .uri(ev.request.url.as_str());
    for (n, v) in &ev.request.headers {
        if !is_framing(n) {
            b = b.header(n.as_str(), v.as_str());
        }
    }
    b.body(Full::new(body)).ok()
}

/// Sends one request on a fresh connection to `replayer`; the response's head and body.
async fn send(
    replayer: &Arc<Replayer>,
    req: hyper::Request<Full<Bytes>>,
) -> Option<(hyper::http::response::Parts, Result<Bytes, String>)> {
    let (client_io, server_io) = tokio::io::duplex(64 << 10);
    let ctx = ClientCtx {
        session: SessionName::new("fuzz").expect("a session name"),
        agent: None,
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        slot: None,
        conn: Default::default(),
        ack: Default::default(),
    };
    let r = replayer.clone();
    let svc = service_fn(move |req| {
        let (r, ctx) = (r.clone(), ctx.clone());
        async move { Ok::<_, Infallible>(r.handle(req, ctx).await) }
    });
    let server =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server_io), svc);
    let client = async move {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
            .await
            .ok()?;
        let exchange = async move {
            let resp = sender.send_request(req).await.ok()?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| e.to_string());
            Some((parts, body))
        };
        tokio::select! {
            out = exchange => out,
            _ = conn => None,
        }
    };
    tokio::select! {
        out = client => out,
        _ = server => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(tape) = read_from(Cursor::new(data), Path::new("fuzz.jsonl")) else {
        return;
    };
    let rec = Recording::from_tape(tape, "fuzz".into());
    let mut requests = Vec::new();
    for ev in &rec.events {
        let body = rec
            .body(&ev.request.body)
            .expect("a tape's bodies are in memory");
        requests.extend(request_of(ev, body));
    }
    let unrecorded = hyper::Request::post("http://unrecorded.test/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","messages":[]}"#,
        )))
        .expect("a request");
    requests.push(unrecorded);
    let events: Vec<Event> = rec.events.clone();
    let bodies: Vec<Option<Bytes>> = events
        .iter()
        .map(|e| e.response.as_ref().and_then(|r| rec.body(&r.body).ok()))
        .collect();
    let order = [Order::Causal, Order::Strict, Order::Any][data.len() % 3];
    let replayer = Replayer::new(
        rec,
        Arc::new(Rules::default()),
        ReplayOptions {
            order,
            pace: Pace::Recorded,
            allow_live: Vec::new(),
            max_body: Default::default(),
            hybrid: None,
            held_open: std::time::Duration::from_millis(50),
        },
    )
    .expect("a tape in memory has every body replay needs");
    runtime().block_on(async {
        for req in requests {
            if req.method() == hyper::Method::CONNECT {
                continue;
            }
            let head_only = req.method() == hyper::Method::HEAD;
            // Every wait replay makes is capped at MAX_EXCHANGE_TIME (head, then body):
            // on the paused clock a longer one is a hang.
            let limit = 2 * MAX_EXCHANGE_TIME + std::time::Duration::from_secs(60);
            let Ok(sent) = tokio::time::timeout(limit, send(&replayer, req)).await else {
                panic!("replay waited longer than twice MAX_EXCHANGE_TIME for one exchange");
            };
            let Some((parts, body)) = sent else {
                continue;
            };
            let Some(step) = parts
                .headers
                .get(STEP_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            let i = events
                .iter()
                .position(|e| e.step == step)
                .expect("a served step is a recorded step");
            let Some(r) = &events[i].response else {
                continue;
            };
            let plain = r.complete
                && r.body.encoding.is_none()
                && !head_only
                && (200..=599).contains(&r.status)
                && r.status != 204
                && r.status != 304;
            if plain && parts.status.as_u16() == r.status {
                let want = bodies[i].as_ref().expect("a recorded response body");
                match body {
                    Ok(got) => assert_eq!(&got, want, "step {step}: replayed body differs"),
                    Err(e) => panic!("step {step}: a complete recorded response failed: {e}"),
                }
            }
        }
    });
    let _ = replayer.summary().line("fuzz");
});
