//! A replay never reads the store on the async runtime's threads while it serves: a real
//! sled store, wrapped to note the thread of every read, behind a real proxy on a TCP
//! port, a real hyper client, and a runtime whose threads are named one by one, its
//! workers known by their parking. The session is long enough that the read-ahead window moves, and holds small
//! bodies (sled values), a body in a file, a body in parts, a JSON-RPC call, and a miss.
//! A what-if run (a fork, with `--inject` rules, one of which picks by tool) also writes
//! the fork's events and bodies, and those writes must stay off the runtime too.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tapedeck_model::exchange::inject::{InjectRule, Injector};
use tapedeck_model::exchange::limit::MaxBody;
use tapedeck_model::exchange::{BodyRef, Event, Kind, RequestRecord, ResponseRecord, Timing};
use tapedeck_model::rules::Rules;
use tapedeck_model::session::SessionName;
use tapedeck_proxy::ca::Ca;
use tapedeck_proxy::{Proxy, ProxyOptions};
use tapedeck_replay::hybrid::{Fork, Hybrid, LiveSelect};
use tapedeck_replay::{Order, Pace, ReplayOptions, Replayer};
use tapedeck_store::noted::Noted;
use tapedeck_store::recording::Recording;
use tapedeck_store::{SledStore, Store};

const WORKERS: usize = 2;
const SESSION: &str = "reads";

/// One recorded call: `POST http://api.test{path}` with `request`, answered `response`.
struct Call {
    path: String,
    request: Vec<u8>,
    response: Vec<u8>,
}

/// Stores `data` as record does: kept for its event's value when it is small (returned
/// with its blake3), else under its blake3, in segments when it is over one. Names it.
fn put_body(store: &dyn Store, data: &[u8], inside: &mut Vec<(blake3::Hash, Bytes)>) -> BodyRef {
    let h = blake3::hash(data);
    if data.len() <= tapedeck_store::INLINE_MAX {
        inside.push((h, Bytes::copy_from_slice(data)));
    } else if data.len() > tapedeck_store::SEGMENT {
        let mut w = tapedeck_store::BodyWriter::new(0);
        w.write(store, data).unwrap();
        let tapedeck_store::WrittenBody::Stored { hash, .. } = w.finish(store).unwrap() else {
            panic!("a body over a segment is stored in segments");
        };
        assert_eq!(hash, h);
    } else {
        store.put_blob(&h, data).unwrap();
    }
    BodyRef {
        b3: h.to_hex().to_string(),
        len: data.len() as u64,
        encoding: None,
        at: None,
    }
}

fn record(store: &dyn Store, calls: &[Call]) {
    for (i, c) in calls.iter().enumerate() {
        let json = vec![("content-type".to_string(), "application/json".to_string())];
        let mut inside = Vec::new();
        let ev = Event {
            step: i as u64 + 1,
            kind: Kind::Tool,
            key: String::new(),
            rules: None,
            agent: None,
            request: RequestRecord {
                method: "POST".into(),
                url: format!("http://api.test{}", c.path),
                version: "HTTP/1.1".into(),
                headers: json.clone(),
                body: put_body(store, &c.request, &mut inside),
            },
            response: Some(ResponseRecord {
                status: 200,
                version: "HTTP/1.1".into(),
                headers: json,
                body: put_body(store, &c.response, &mut inside),
                chunks: None,
                complete: true,
                trailers: Vec::new(),
                broke: None,
                members: Vec::new(),
            }),
            timing: Timing::default(),
            error: None,
            ws: None,
            injected: None,
        };
        store.put_event_with(SESSION, &ev, &inside).unwrap();
    }
    store.commit().unwrap();
}

fn calls() -> Vec<Call> {
    let mut calls: Vec<Call> = (0..1500)
        .map(|i| Call {
            path: format!("/small/{i}"),
            request: format!(r#"{{"n":{i}}}"#).into_bytes(),
            response: format!(r#"{{"answer":{i},"pad":"{}"}}"#, "p".repeat(900)).into_bytes(),
        })
        .collect();
    // A body in a file of its own, one in parts, and a JSON-RPC call whose id the
    // answer carries back.
    calls[700].response = vec![b'f'; 100 << 10];
    calls[1200].response = vec![b'g'; 3 << 20];
    calls[1300].request =
        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t"}}"#.to_vec();
    calls[1300].response = br#"{"jsonrpc":"2.0","id":7,"result":{"ok":true}}"#.to_vec();
    calls
}

#[test]
fn serving_a_replay_reads_the_store_only_off_the_runtime_threads() {
    for released in [true, false] {
        serve_and_watch(released, false);
    }
}

#[test]
fn a_what_if_run_reads_and_writes_the_store_only_off_the_runtime_threads() {
    serve_and_watch(true, true);
}

/// The step `--inject step:N=status:503` answers in the what-if run.
const INJECTED_STEP: usize = 3;

/// A runtime whose threads each have a name of their own (`rt-0`, `rt-1`, ...), and the
/// names of those that are its workers.
///
/// Tokio names the threads of its workers and of its blocking pool with one function,
/// and starts its workers on the blocking pool, so a name given in order cannot say which
/// thread became a worker (a thread made for a worker may start later than one made after
/// it, which then takes the worker's task: that made this test fail on a busy CI machine).
/// Only a worker calls the park hooks, so a worker is a thread that parked. Every worker
/// parks as soon as it is idle, and a new runtime has nothing to do: the set is complete
/// before anything is served, and a thread that turns into a worker later (none should)
/// is added when it parks.
fn named_runtime() -> (tokio::runtime::Runtime, Workers) {
    let workers = Workers::default();
    let seen = workers.clone();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name_fn(move || {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            format!("rt-{n}")
        })
        .on_thread_park(move || {
            let name = std::thread::current().name().unwrap_or("?").to_string();
            seen.lock().unwrap().insert(name);
        })
        .enable_all()
        .build()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while workers.lock().unwrap().len() < WORKERS {
        assert!(
            std::time::Instant::now() < deadline,
            "the runtime's workers never parked: {:?}",
            workers.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The set tells the two kinds of thread apart: a task runs on a worker, a blocking
    // call off them.
    let (on, off) = rt.block_on(async {
        let name = || std::thread::current().name().unwrap_or("?").to_string();
        let off = tokio::task::spawn_blocking(name).await.unwrap();
        let mut on = Vec::new();
        for _ in 0..16 {
            on.push(tokio::spawn(async move { name() }).await.unwrap());
        }
        (on, off)
    });
    let known = workers.lock().unwrap().clone();
    assert_eq!(known.len(), WORKERS, "the workers: {known:?}");
    assert!(
        !known.contains(&off),
        "{off} ran a blocking call and parked as a worker"
    );
    assert!(
        on.iter().all(|n| known.contains(n)),
        "tasks ran on {on:?}, the workers are {known:?}"
    );
    (rt, workers)
}

/// The names of the threads that parked as the runtime's workers.
type Workers = Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

/// `released`: the recording leaves its events in the store (a long session) rather
/// than holding them in memory. `what_if`: the replay is a what-if run that writes a fork.
fn serve_and_watch(released: bool, what_if: bool) {
    let (rt, workers) = named_runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Noted::new(
        SledStore::open(&dir.path().join("store")).unwrap(),
    ));
    let calls = calls();
    record(store.as_ref(), &calls);
    let rec = if released {
        Recording::from_store_by_step(store.clone(), SESSION).unwrap()
    } else {
        Recording::from_store(store.clone(), SESSION).unwrap()
    };
    let fork_name = SessionName::new("reads.fork-1").unwrap();
    let hybrid = what_if.then(|| {
        // A step answered by a rule, a served answer a rule delays, and a rule that picks
        // by tool (none is called so: it makes every decision name the recorded call,
        // from the trace).
        let rules: Vec<InjectRule> = [
            format!("step:{INJECTED_STEP}=status:503"),
            "step:9=delay:1ms".to_string(),
            "tool:never_called=status:500".to_string(),
        ]
        .iter()
        .map(|r| InjectRule::parse(r).unwrap())
        .collect();
        Hybrid {
            fork: Fork::new(store.clone(), fork_name.clone(), SESSION, None),
            live: LiveSelect::parse(&[]).unwrap(),
            forward: None,
            on_miss_live: false,
            injector: Injector::new(&rules, dir.path()).unwrap().map(Arc::new),
            tools: None,
        }
    });
    let opts = ReplayOptions {
        order: Order::Causal,
        pace: Pace::Fast,
        allow_live: Vec::new(),
        max_body: MaxBody::default(),
        hybrid,
        held_open: std::time::Duration::from_secs(120),
    };
    let replayer = Replayer::new(rec, Arc::new(Rules::default()), opts).unwrap();
    // Reading the session to index it is the replay's start, before anything is served.
    store.clear();
    let (ca, _) = Ca::load_or_create(&dir.path().join("certs")).unwrap();
    let served = rt.block_on(async {
        let proxy = Proxy::new(
            replayer.clone(),
            Arc::new(ca),
            ProxyOptions {
                session: Some(SessionName::new(SESSION).unwrap()),
                ..ProxyOptions::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, shutdown) = tapedeck_proxy::shutdown::channel();
        tokio::spawn(proxy.serve(listener, shutdown));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut served = Vec::new();
        let req = |path: String, body: Vec<u8>| {
            hyper::Request::post(format!("http://api.test{path}"))
                .header("host", "api.test")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        for c in &calls {
            send.ready().await.unwrap();
            let resp = send
                .send_request(req(c.path.clone(), c.request.clone()))
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            served.push((status, body));
        }
        // A call never recorded: the miss names what it resembles, read from the store.
        send.ready().await.unwrap();
        let miss = send
            .send_request(req("/small/unrecorded".into(), b"{}".to_vec()))
            .await
            .unwrap();
        assert_eq!(miss.status(), 404);
        let said = miss.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&said).contains("unrecorded"),
            "{}",
            String::from_utf8_lossy(&said)
        );
        served
    });
    // What serving did, before the checks below read the store themselves.
    let calls_while_serving = store.calls();
    for (i, ((status, body), c)) in served.iter().zip(&calls).enumerate() {
        if what_if && i + 1 == INJECTED_STEP {
            assert_eq!(status.as_u16(), 503, "the injected step");
            continue;
        }
        assert_eq!(status.as_u16(), 200, "call {i} (released: {released})");
        assert!(
            body[..] == c.response[..],
            "call {i}'s answer (released: {released})"
        );
    }
    if what_if {
        // Every exchange is a step of the fork, the miss and the injected one included.
        let fork = Recording::from_store(store.clone(), fork_name.as_str()).unwrap();
        assert_eq!(fork.len(), calls.len() + 1, "the fork's steps");
        let injected = fork.event(INJECTED_STEP - 1).unwrap();
        assert!(
            injected.injected.is_some(),
            "step {INJECTED_STEP} is marked injected"
        );
        let last = fork.event(calls.len()).unwrap();
        assert_eq!(last.status(), Some(404), "the miss is the fork's last step");
        let big = fork.event(1200).unwrap();
        assert_eq!(
            fork.body(&big.response.as_ref().unwrap().body)
                .unwrap()
                .len(),
            3 << 20,
            "a body in parts, copied into the fork"
        );
    }
    // A plain replay writes nothing; a what-if run's writes count too.
    let readers: Vec<(String, String)> = calls_while_serving
        .into_iter()
        .filter(|c| what_if || !c.write)
        .map(|c| (c.thread, c.method.to_string()))
        .collect();
    let mut by_thread: std::collections::BTreeMap<String, usize> = Default::default();
    for (thread, method) in &readers {
        *by_thread.entry(format!("{thread}:{method}")).or_default() += 1;
    }
    eprintln!(
        "released: {released}, what-if: {what_if}: store calls while serving, by thread: {by_thread:?}"
    );
    assert!(!readers.is_empty(), "serving read nothing from the store");
    if !what_if {
        // The read-ahead reads an event and the small bodies inside it in one read, never
        // a small body apart (larger ones stream from their files as they are served).
        let ahead = |method: &str| {
            by_thread
                .get(&format!("tapedeck-read-ahead:{method}"))
                .copied()
                .unwrap_or(0)
        };
        assert!(
            ahead("event_stored") <= calls.len() && ahead("body_bytes") + ahead("event_body") == 0,
            "the read-ahead read {} event values and {} bodies apart for {} calls; by thread: \
             {by_thread:?}",
            ahead("event_stored"),
            ahead("body_bytes") + ahead("event_body"),
            calls.len()
        );
        assert!(ahead("event_stored") > calls.len() / 2, "{by_thread:?}");
    }
    let workers = workers.lock().unwrap().clone();
    let on_runtime: Vec<&(String, String)> = readers
        .iter()
        .filter(|(thread, _)| workers.contains(thread))
        .collect();
    assert!(
        on_runtime.is_empty(),
        "{} of {} store calls ran on the runtime's threads {workers:?} (released: {released}, what-if: {what_if}), the first: {:?}",
        on_runtime.len(),
        readers.len(),
        &on_runtime[..on_runtime.len().min(5)]
    );
}
