//! The recorder never writes to the store on the async runtime's threads: a real sled
//! store, wrapped to note the thread of every write, behind a Recorder forwarding to a
//! real hyper upstream over TCP, on a runtime whose threads are named so they can be
//! told apart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tapedeck_model::exchange::limit::MaxBody;
use tapedeck_model::exchange::{Event, SessionInfo};
use tapedeck_model::rules::Rules;
use tapedeck_model::session::{Lineage, SessionName};
use tapedeck_proxy::ClientCtx;
use tapedeck_record::upstream::Upstream;
use tapedeck_record::{Given, Recorder};
use tapedeck_store::{BodyState, IssueTable, RunInfo, SessionRead, SledStore, Store, StoreError};

const RUNTIME: &str = "rt-under-test";

/// The real store; every write notes the name of the thread it ran on.
struct Watched {
    inner: SledStore,
    writers: Mutex<Vec<String>>,
}

impl Watched {
    fn note(&self) {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        self.writers.lock().unwrap().push(name);
    }
}

impl Store for Watched {
    fn put_blob(&self, hash: &blake3::Hash, data: &[u8]) -> Result<(), StoreError> {
        self.note();
        self.inner.put_blob(hash, data)
    }
    fn put_manifest(
        &self,
        hash: &blake3::Hash,
        segments: &[blake3::Hash],
        len: u64,
    ) -> Result<(), StoreError> {
        self.note();
        self.inner.put_manifest(hash, segments, len)
    }
    fn has_body(&self, h: &str) -> Result<bool, StoreError> {
        self.inner.has_body(h)
    }
    fn get_body(&self, h: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_body(h)
    }
    fn body_segments(&self, h: &str) -> Result<Option<Vec<String>>, StoreError> {
        self.inner.body_segments(h)
    }
    fn put_event(&self, session: &str, event: &Event) -> Result<(), StoreError> {
        self.note();
        self.inner.put_event(session, event)
    }
    fn scan_session(
        &self,
        session: &str,
        keep: &mut dyn FnMut(Event),
    ) -> Result<SessionRead, StoreError> {
        self.inner.scan_session(session, keep)
    }
    fn verify_body(&self, h: &str) -> Result<BodyState, StoreError> {
        self.inner.verify_body(h)
    }
    fn sessions(&self) -> Result<Vec<SessionInfo>, StoreError> {
        self.inner.sessions()
    }
    fn session(&self, s: &str) -> Result<Option<SessionInfo>, StoreError> {
        self.inner.session(s)
    }
    fn delete_session(&self, s: &str) -> Result<u64, StoreError> {
        self.inner.delete_session(s)
    }
    fn put_run(&self, s: &str, run: &RunInfo) -> Result<(), StoreError> {
        self.inner.put_run(s, run)
    }
    fn run(&self, s: &str) -> Result<Option<RunInfo>, StoreError> {
        self.inner.run(s)
    }
    fn put_lineage(&self, s: &str, l: &Lineage) -> Result<(), StoreError> {
        self.inner.put_lineage(s, l)
    }
    fn last_step(&self, s: &str) -> Result<Option<u64>, StoreError> {
        self.inner.last_step(s)
    }
    fn event(&self, s: &str, step: u64) -> Result<Option<Event>, StoreError> {
        self.inner.event(s, step)
    }
    fn commit(&self) -> Result<(), StoreError> {
        self.inner.commit()
    }
    fn issues(&self) -> Result<IssueTable, StoreError> {
        self.inner.issues()
    }
    fn put_issues(&self, t: &IssueTable) -> Result<(), StoreError> {
        self.inner.put_issues(t)
    }
}

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
    let store = Arc::new(Watched {
        inner: SledStore::open(dir.path()).unwrap(),
        writers: Mutex::new(Vec::new()),
    });
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
        store.inner.events("offthread").unwrap()
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
        store.inner.get_body(&resp_body.b3).unwrap().unwrap(),
        download
    );
    assert_eq!(
        store
            .inner
            .get_body(&events[2].request.body.b3)
            .unwrap()
            .unwrap(),
        upload
    );
    let writers = store.writers.lock().unwrap().clone();
    // Three events and their bodies, the two large ones as 12 segments and a manifest.
    assert!(
        writers.len() >= 3 * 3 + 2 * 12,
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
