//! The recorder never writes to the store on the async runtime's threads: a real sled
//! store, wrapped to note the thread of every write, behind a Recorder forwarding to a
//! real hyper upstream over TCP, on a runtime whose threads are named so they can be
//! told apart. And when it writes: a small answer already here whole is stored before
//! its head is handed on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tapedeck_model::exchange::limit::MaxBody;
use tapedeck_model::rules::Rules;
use tapedeck_model::session::SessionName;
use tapedeck_proxy::ClientCtx;
use tapedeck_record::upstream::Upstream;
use tapedeck_record::{Given, Recorder};
use tapedeck_store::noted::Noted;
use tapedeck_store::{SledStore, Store};

const RUNTIME: &str = "rt-under-test";

/// An upstream answering `/small` with 1 KB of JSON echoing the length of what it was
/// sent, and `/big` with 3 MiB of bytes.
async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_string();
                        let sent = req.into_body().collect().await.unwrap().to_bytes().len();
                        let (ct, body) = match path.as_str() {
                            "/big" => ("application/octet-stream", vec![b'x'; 3 << 20]),
                            _ => (
                                "application/json",
                                format!("{{\"sent\":{sent},\"pad\":\"{}\"}}", "p".repeat(1000))
                                    .into_bytes(),
                            ),
                        };
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", ct)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

#[test]
fn every_store_write_runs_off_the_runtime_threads() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(RUNTIME)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Noted::new(SledStore::open(dir.path()).unwrap()));
    let events = rt.block_on(async {
        let up = upstream().await;
        let recorder = Recorder::new(
            store.clone(),
            Arc::new(Rules::default()),
            Upstream::new(&[], Duration::from_secs(10)).unwrap(),
            &[],
            None,
            MaxBody::default(),
            None,
        )
        .unwrap();
        // A small JSON exchange, a large download, and a large upload (written in
        // segments as it streams).
        let calls: [(&str, &str, Vec<u8>); 3] = [
            ("POST", "/small", br#"{"q":"hello"}"#.to_vec()),
            ("GET", "/big", Vec::new()),
            ("POST", "/small", vec![b'u'; 3 << 20]),
        ];
        for (method, path, body) in calls {
            let sent = body.len();
            let req = hyper::Request::builder()
                .method(method)
                .uri(format!("http://{up}{path}"))
                .header("content-type", "application/octet-stream")
                .body(
                    Full::new(Bytes::from(body))
                        .map_err(|e| match e {})
                        .boxed_unsync(),
                )
                .unwrap();
            let ctx = ClientCtx {
                session: SessionName::new("offthread").unwrap(),
                agent: None,
                peer: "127.0.0.1:1".parse().unwrap(),
                slot: None,
                conn: Default::default(),
                ack: Default::default(),
            };
            let resp = recorder.forward(req, ctx, Given::default()).await;
            assert_eq!(resp.status(), 200);
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            if path == "/small" {
                assert!(String::from_utf8_lossy(&got).contains(&format!("\"sent\":{sent}")));
            } else {
                assert_eq!(got.len(), 3 << 20);
            }
        }
        // The last byte was handed over after the event was written.
        store.inner().events("offthread").unwrap()
    });
    assert_eq!(
        events.len(),
        3,
        "each exchange is in the store once it has ended"
    );
    assert_eq!(events[2].request.body.len, 3 << 20);
    // Hashed on the writer thread as their segments were stored, the large bodies still
    // carry their own blake3, and read back whole.
    let download = vec![b'x'; 3 << 20];
    let upload = vec![b'u'; 3 << 20];
    let resp_body = &events[1].response.as_ref().unwrap().body;
    assert_eq!(resp_body.b3, blake3::hash(&download).to_hex().as_str());
    assert_eq!(
        events[2].request.body.b3,
        blake3::hash(&upload).to_hex().as_str()
    );
    assert_eq!(
        store.inner().get_body(&resp_body.b3).unwrap().unwrap(),
        download
    );
    assert_eq!(
        store
            .inner()
            .get_body(&events[2].request.body.b3)
            .unwrap()
            .unwrap(),
        upload
    );
    let writers: Vec<String> = store
        .calls()
        .into_iter()
        .filter(|c| c.write)
        .map(|c| c.thread)
        .collect();
    // Three events, the small bodies inside them, and the two large bodies as 12
    // segments and a manifest each.
    assert!(
        writers.len() >= 3 + 2 * 13,
        "events, and the segments of both large bodies, were written: {writers:?}"
    );
    let on_runtime: Vec<_> = writers.iter().filter(|w| w.starts_with(RUNTIME)).collect();
    assert!(
        on_runtime.is_empty(),
        "{} of {} store writes ran on the runtime's threads",
        on_runtime.len(),
        writers.len()
    );
}

/// A small answer that is all here when its head is: recorded before the head is handed
/// on, so head and body can leave in one write. Shown by the event being in the store
/// when `forward` returns, before anyone reads the body (with the head handed on first,
/// nothing is stored until the body's last frame is asked for). Whether the upstream's
/// body has reached the recorder by then is up to the client connection's task, so the
/// test asks for some of 20 calls, not all; the body then reads whole either way.
#[test]
fn a_small_answer_already_here_is_recorded_before_its_head_is_handed_on() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    rt.block_on(async {
        let up = upstream().await;
        let recorder = Recorder::new(
            store.clone(),
            Arc::new(Rules::default()),
            Upstream::new(&[], Duration::from_secs(10)).unwrap(),
            &[],
            None,
            MaxBody::default(),
            None,
        )
        .unwrap();
        let mut early = 0;
        for i in 0..20 {
            let req = hyper::Request::get(format!("http://{up}/small"))
                .body(
                    Full::new(Bytes::new())
                        .map_err(|e| match e {})
                        .boxed_unsync(),
                )
                .unwrap();
            let ctx = ClientCtx {
                session: SessionName::new("early").unwrap(),
                agent: None,
                peer: "127.0.0.1:1".parse().unwrap(),
                slot: None,
                conn: Default::default(),
                ack: Default::default(),
            };
            let resp = recorder.forward(req, ctx, Given::default()).await;
            assert_eq!(resp.status(), 200);
            if store.events("early").unwrap().len() == i + 1 {
                early += 1;
            }
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            assert!(String::from_utf8_lossy(&got).contains("\"sent\":0"));
            assert_eq!(store.events("early").unwrap().len(), i + 1);
        }
        assert!(
            early > 0,
            "no answer was recorded before its head was handed on"
        );
        eprintln!("{early} of 20 answers recorded before their heads were handed on");
    });
}
