//! An LLM-shaped upstream HTTP(S) server for tapedeck's tests, benchmarks and examples.
//!
//! A real server on real TCP (127.0.0.1, port 0 by default). With TLS it serves a leaf
//! for `localhost` and `127.0.0.1`, signed by its own throw-away CA (`ca_pem`,
//! `ca_path`), and speaks HTTP/2 and HTTP/1.1 (ALPN). Every answer is deterministic:
//! no randomness and no wall-clock values in bodies.
//!
//! Self-contained on purpose: it is included as `mod support;` by integration tests and
//! with `#[path = "../tests/support/upstream.rs"] mod upstream;` by examples and benches,
//! and only uses crates that are already dependencies of tapedeck (dev-dependencies
//! included: tokio-tungstenite speaks the WebSocket side).
//!
//! Endpoints (see `route`):
//! - `GET /json` ~1 KB JSON; `POST /echo` echoes method, path, query, body and a few
//!   headers (never authorization/cookie); `GET /sse?n=5&gap_ms=100` a real event stream;
//!   `GET /big?bytes=N` / `GET /big-chunked?bytes=N` streamed pattern bytes;
//!   `POST /upload` byte count + checksum; `GET`/`POST /slow?ms=N` (answers after N ms, with the request body's length); `GET /status/{code}`;
//!   `GET /close` drops the connection; `GET /reset-mid` breaks off mid-body;
//!   `GET /gzip`; `GET /big-gzip?bytes=N` the `/big` pattern gzip-encoded;
//!   `GET /weather?city=Paris`; `GET /empty?status=200` (zero bytes,
//!   `Content-Length: 0`; 204 and 304 without it); `GET /empty-list`;
//!   `GET /page?cursor=C` one page and the cursor of the next (a value only this answer
//!   holds, as pagination APIs do); `GET /table?NextPartitionKey=K` Azure Table paging
//!   (the next keys in `x-ms-continuation-*` answer headers); `HEAD` of any `GET` route;
//!   `POST /v1/chat/completions`, `POST /v1/messages`, `POST /v1/embeddings` (scripted);
//!   hostile to secrets: `GET /echo-auth` echoes `Authorization` in `x-echoed`;
//!   `GET /sse-echo-auth?bytes=N` a long event stream echoing the bearer credential and
//!   an `access_token` field, cut so both straddle frames;
//!   `POST /v1beta/models/M:streamGenerateContent[?alt=sse]` Gemini's stream repeating
//!   the `x-goog-api-key` a few characters a chunk;
//!   `POST /sts` STS's `AssumeRoleWithWebIdentity` answer ([`STS_ANSWER`], XML);
//!   `POST /model/M/converse-stream` and `/model/M/invoke-with-response-stream` Bedrock's
//!   binary event streams repeating the bearer key a few characters a message; `POST /oauth/token` an OAuth
//!   token response ([`OAUTH_ACCESS_TOKEN`], [`OAUTH_REFRESH_TOKEN`]);
//!   `POST /secretsmanager` Secrets Manager's `GetSecretValue` answer ([`DB_SECRET_STRING`]);
//!   MCP over Streamable HTTP (`mcp.rs`): `POST|GET|DELETE /mcp`;
//!   WebSockets (`realtime.rs`): `GET /ws/echo`, `GET /v1/realtime` (Realtime API shapes);
//!   anything else → 404 JSON.
#![allow(dead_code)]

#[path = "mcp.rs"]
pub mod mcp;
#[path = "realtime.rs"]
mod realtime;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::poll_fn;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

/// Error type of the fixture's bodies and services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response body type of every endpoint.
pub type FixtureBody = BoxBody<Bytes, BoxError>;

/// Fixed `created` timestamp of the OpenAI-shaped answers (no wall clock in bodies).
pub const CREATED: u64 = 1_700_000_000;
/// Frame size of `/big` and `/big-chunked`.
pub const BIG_FRAME: usize = 64 * 1024;
/// STS's answer to `AssumeRoleWithWebIdentity` (`POST /sts`): credentials in XML.
pub const STS_ANSWER: &str =
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAFIXTUREKEYID0001</AccessKeyId>\
<SecretAccessKey>fixture-STS-SECRET-must-never-be-stored/0001</SecretAccessKey>\
<SessionToken>fixture-STS-SESSION-TOKEN-must-never-be-stored==</SessionToken>\
<Expiration>2026-12-04T23:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult>\
</AssumeRoleWithWebIdentityResponse>";

/// Gap between streamed chunks of `/v1/chat/completions` and `/v1/messages`.
pub const LLM_CHUNK_GAP: Duration = Duration::from_millis(20);

/// The access token `/oauth/token` and `/sse-echo-auth` hand out.
pub const OAUTH_ACCESS_TOKEN: &str = "oauth-access-TOKEN-MUST-NOT-BE-STORED-5151";
/// The refresh token `/oauth/token` hands out.
pub const OAUTH_REFRESH_TOKEN: &str = "oauth-refresh-TOKEN-MUST-NOT-BE-STORED-5252";

/// The database password in [`DB_SECRET_STRING`].
pub const DB_PASSWORD: &str = "db-PASSWORD-MUST-NOT-BE-STORED-5353";
/// The secret `POST /secretsmanager` answers with: JSON text, as an RDS-managed secret is.
pub const DB_SECRET_STRING: &str = "{\"username\":\"admin\",\"password\":\"db-PASSWORD-MUST-NOT-BE-STORED-5353\",\"engine\":\"postgres\",\"host\":\"db.internal\",\"port\":5432}";

/// The anti-forgery token `GET /login-page` hands out, in a hidden input and a meta tag.
pub const PAGE_CSRF: &str = "pG7cSrF2kL9mN4qR8tV1wX5yZ3aB6dE0";

/// Byte `i` of the `/big` pattern.
pub fn big_byte(i: u64) -> u8 {
    (i % BIG_PERIOD) as u8
}

/// The period of the `/big` pattern (a prime, so no power-of-two chunking lines up with it).
pub const BIG_PERIOD: u64 = 251;

/// The weather table of `GET /weather?city=...`: (city, temp_c, conditions).
pub const WEATHER: &[(&str, i64, &str)] = &[
    ("Paris", 18, "sunny"),
    ("London", 12, "cloudy"),
    ("Tokyo", 22, "clear"),
    ("Berlin", 15, "rainy"),
    ("Madrid", 27, "sunny"),
    ("Oslo", 4, "snow"),
];

pub struct Upstream {
    pub addr: SocketAddr,
    /// PEM of the fixture's own test CA (the TLS leaf is signed by it).
    pub ca_pem: String,
    /// `ca_pem` written to a file that lives as long as this `Upstream`.
    pub ca_path: PathBuf,
    tls: bool,
    state: Arc<State>,
    listener: Arc<Mutex<Option<TcpListener>>>,
    accept_task: Option<JoinHandle<()>>,
    /// With `start_blocking`: dropping it ends the fixture's own runtime thread.
    runtime_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

struct State {
    connections: AtomicUsize,
    requests: AtomicUsize,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, AbortHandle>>,
    /// `set_wrong_tool`: (chance, seeded generator state).
    wrong_tool: Mutex<Option<(f64, u64)>>,
}

impl State {
    /// Whether this chat answer picks the wrong tool (a seeded draw; `false` when the
    /// knob is off).
    fn wrong_tool(&self) -> bool {
        let mut knob = self.wrong_tool.lock().unwrap_or_else(|p| p.into_inner());
        let Some((chance, seed)) = knob.as_mut() else {
            return false;
        };
        // splitmix64: a small, well-mixed generator, reproducible from its seed.
        *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < *chance
    }
}

impl Upstream {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start(tls: bool) -> Upstream {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), tls).await
    }

    /// Starts on a fixed address (port 0 picks a free one). Panics if it can't bind.
    pub async fn start_on(addr: SocketAddr, tls: bool) -> Upstream {
        let listener = TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("upstream fixture: bind {addr}: {e}"));
        let addr = listener.local_addr().expect("upstream fixture: local_addr");
        let (ca_pem, server_config) = make_tls();
        static FILE_SEQ: AtomicU64 = AtomicU64::new(0);
        let ca_path = std::env::temp_dir().join(format!(
            "tapedeck-upstream-ca-{}-{}-{}.pem",
            std::process::id(),
            addr.port(),
            FILE_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&ca_path, &ca_pem)
            .unwrap_or_else(|e| panic!("upstream fixture: write {}: {e}", ca_path.display()));

        let state = Arc::new(State {
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            wrong_tool: Mutex::new(None),
        });
        let listener = Arc::new(Mutex::new(Some(listener)));
        let acceptor = if tls {
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(server_config)))
        } else {
            None
        };
        let accept_task = tokio::spawn(accept_loop(listener.clone(), state.clone(), acceptor));
        Upstream {
            addr,
            ca_pem,
            ca_path,
            tls,
            state,
            listener,
            accept_task: Some(accept_task),
            runtime_stop: None,
        }
    }

    /// Starts on 127.0.0.1 with a free port, served by a runtime of its own on a
    /// background thread: for synchronous tests and benchmark harnesses, or to share
    /// one fixture across tests. Needs no runtime from the caller.
    pub fn start_blocking(tls: bool) -> Upstream {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("upstream-fixture".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("upstream-fixture")
                    .enable_all()
                    .build()
                    .expect("upstream fixture: runtime");
                let up = rt.block_on(Upstream::start(tls));
                if tx.send(up).is_ok() {
                    // Ends when the Upstream is dropped (its sender goes with it).
                    let _ = rt.block_on(stop_rx);
                }
            })
            .expect("upstream fixture: thread");
        let mut up = rx.recv().expect("upstream fixture: start");
        up.runtime_stop = Some(stop_tx);
        up
    }

    /// The URL base, without a trailing slash: `https://localhost:PORT` with TLS (so
    /// SNI and the DNS SAN are exercised), else `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            let ip = match self.addr.ip() {
                ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                ip => ip,
            };
            format!("http://{}", SocketAddr::new(ip, self.addr.port()))
        }
    }

    /// `base_url()` + `path` (a leading `/` is added if missing).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{}", self.base_url(), path)
        } else {
            format!("{}/{}", self.base_url(), path)
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// A nondeterministic model: from now on each chat answer that calls a tool calls
    /// another of the offered tools (or `search_web` when only one is offered) with
    /// probability `chance`, drawn from a generator seeded with `seed`.
    pub fn set_wrong_tool(&self, chance: f64, seed: u64) {
        *self
            .state
            .wrong_tool
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((chance, seed));
    }

    /// HTTP requests served so far (every request that reached the router).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes the listener (later connects are refused) and aborts the
    /// open connections. Same as dropping it.
    pub fn stop(self) {
        drop(self)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Dropping the listener here closes the socket synchronously, whatever the
        // runtime is doing, so a connect right after stop() is refused.
        drop(
            self.listener
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
        for (_, conn) in self
            .state
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            conn.abort();
        }
        let _ = std::fs::remove_file(&self.ca_path);
    }
}

/// An HTTPS server that answers every request with the same raw bytes, HTTP/1.1 only,
/// whatever HTTP says they should be: for what no well-behaved server (the fixture's hyper
/// among them) can be made to send. The CA its certificate chains to is at `ca_path`.
pub struct RawTls {
    pub addr: SocketAddr,
    pub ca_path: PathBuf,
    task: JoinHandle<()>,
}

impl RawTls {
    pub async fn start(answer: &'static [u8]) -> RawTls {
        RawTls::serve(answer, true).await
    }

    /// [`RawTls::start`], closing each connection without TLS's `close_notify` (as some
    /// servers do after an answer delimited by the connection's end).
    pub async fn start_abrupt(answer: &'static [u8]) -> RawTls {
        RawTls::serve(answer, false).await
    }

    async fn serve(answer: &'static [u8], close_notify: bool) -> RawTls {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("raw TLS fixture: bind");
        let addr = listener.local_addr().expect("raw TLS fixture: local_addr");
        let (ca_pem, mut cfg) = make_tls();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let ca_path = std::env::temp_dir().join(format!(
            "tapedeck-raw-tls-ca-{}-{}.pem",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&ca_path, ca_pem).expect("raw TLS fixture: write CA");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls.write_all(answer).await;
                    if close_notify {
                        let _ = tls.shutdown().await;
                    } else {
                        let _ = tls.flush().await;
                        let (mut tcp, _) = tls.into_inner();
                        let _ = tcp.shutdown().await;
                    }
                });
            }
        });
        RawTls {
            addr,
            ca_path,
            task,
        }
    }
}

impl Drop for RawTls {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.ca_path);
    }
}

fn make_tls() -> (String, rustls::ServerConfig) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose, SanType,
    };
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().expect("upstream fixture: CA key");
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tapedeck upstream fixture CA");
    dn.push(DnType::OrganizationName, "tapedeck tests");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - time::Duration::days(1);
    ca_params.not_after = now + time::Duration::days(365);
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .expect("upstream fixture: CA cert");

    let leaf_key = KeyPair::generate().expect("upstream fixture: leaf key");
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().expect("dns name")),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
    let leaf = params
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("upstream fixture: leaf cert");

    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("upstream fixture: TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("upstream fixture: TLS config");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_cert.pem(), cfg)
}

async fn accept_loop(
    listener: Arc<Mutex<Option<TcpListener>>>,
    state: Arc<State>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        // The lock is held only while polling, so Drop can take the listener away.
        let accepted = poll_fn(|cx| {
            let guard = listener.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                None => Poll::Ready(None),
                Some(l) => l.poll_accept(cx).map(Some),
            }
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok((stream, _peer))) => stream,
            Some(Err(_)) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        state.connections.fetch_add(1, Ordering::SeqCst);
        let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
        let st = state.clone();
        let acceptor = acceptor.clone();
        // Insert under the lock the task's own removal takes, so a fast task can't
        // leave a stale entry behind.
        let mut conns = state.conns.lock().unwrap_or_else(|p| p.into_inner());
        let task = tokio::spawn(async move {
            let svc_state = st.clone();
            let service = hyper::service::service_fn(move |req| {
                let st = svc_state.clone();
                async move {
                    st.requests.fetch_add(1, Ordering::SeqCst);
                    route(req, &st)
                        .await
                        .map_err(|e| ServiceError(e.to_string()))
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(tls), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                }
            }
            st.conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
        conns.insert(id, task.abort_handle());
    }
}

/// A concrete service error (a boxed one trips hyper-util's `Send` bounds).
#[derive(Debug)]
struct ServiceError(String);

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServiceError {}

// ---------------------------------------------------------------------------------------
// bodies

fn full(data: impl Into<Bytes>) -> FixtureBody {
    Full::new(data.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// A body fed by a channel: each `Ok` item is its own frame, an `Err` breaks the body.
struct ChanBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl Body for ChanBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

fn channel_body() -> (mpsc::Sender<Result<Bytes, BoxError>>, FixtureBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ChanBody { rx }.boxed())
}

/// The deterministic `/big` pattern, produced frame by frame, never allocated whole.
struct PatternBody {
    pattern: Bytes,
    offset: u64,
    total: u64,
    exact: bool,
}

impl PatternBody {
    fn new(total: u64, exact: bool) -> Self {
        static PATTERN: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
        let pattern = PATTERN.get_or_init(|| {
            Bytes::from(
                (0..(BIG_FRAME as u64 + 251))
                    .map(big_byte)
                    .collect::<Vec<u8>>(),
            )
        });
        PatternBody {
            pattern: pattern.clone(),
            offset: 0,
            total,
            exact,
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let left = self.total - self.offset;
        if left == 0 {
            return Poll::Ready(None);
        }
        let len = left.min(BIG_FRAME as u64) as usize;
        let start = (self.offset % 251) as usize;
        let chunk = self.pattern.slice(start..start + len);
        self.offset += len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
    fn is_end_stream(&self) -> bool {
        self.offset == self.total
    }
    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.total - self.offset)
        } else {
            SizeHint::default()
        }
    }
}

// ---------------------------------------------------------------------------------------
// helpers

/// What `/latin1-header` sends as its `content-disposition`: "résumé" in Latin-1.
pub const LATIN1_DISPOSITION: &[u8] = b"attachment; filename=\"r\xe9sum\xe9.pdf\"";

fn json_response(status: StatusCode, v: &Value) -> Response<FixtureBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(v).expect("json")))
        .expect("response")
}

fn error_json(status: StatusCode, message: &str, typ: &str, code: Value) -> Response<FixtureBody> {
    json_response(
        status,
        &json!({"error": {"message": message, "type": typ, "param": null, "code": code}}),
    )
}

fn sse_response(body: FixtureBody) -> Response<FixtureBody> {
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(body)
        .expect("response")
}

/// Form-decodes a query name or value (`+` is a space).
fn pct_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (pct_decode(k) == key).then(|| pct_decode(v))
    })
}

fn query_num(query: Option<&str>, key: &str, default: u64) -> u64 {
    query_param(query, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, BoxError> {
    Ok(req.into_body().collect().await?.to_bytes())
}

/// Text of a message `content`: a string, or the text of its parts/blocks (including
/// the nested content of Anthropic `tool_result` blocks).
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.clone(),
                _ => match p.get("text").and_then(Value::as_str) {
                    Some(t) => t.to_string(),
                    None => p.get("content").map(content_text).unwrap_or_default(),
                },
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The city a user asks about: the last capitalised word that is not the first word of
/// the text (that one is capitalised anyway), default "Paris".
pub fn city_of(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .skip(1)
        .filter(|w| w.chars().next().is_some_and(char::is_uppercase))
        .last()
        .unwrap_or("Paris")
        .to_string()
}

fn tokens(chars: usize) -> u64 {
    (chars / 4) as u64
}

/// Splits a text into word-sized deltas ("The", " weather", " in", ...).
fn word_deltas(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, w) in text.split(' ').enumerate() {
        if i == 0 {
            out.push(w.to_string());
        } else {
            out.push(format!(" {w}"));
        }
    }
    out.retain(|s| !s.is_empty());
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// Splits a string in two halves on a char boundary.
fn halves(s: &str) -> (String, String) {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid += 1;
    }
    (s[..mid].to_string(), s[mid..].to_string())
}

fn sse_data(v: &Value) -> Bytes {
    Bytes::from(format!(
        "data: {}\n\n",
        serde_json::to_string(v).expect("json")
    ))
}

fn sse_event(event: &str, v: &Value) -> Bytes {
    Bytes::from(format!(
        "event: {event}\ndata: {}\n\n",
        serde_json::to_string(v).expect("json")
    ))
}

/// Sends `frames` over a channel body, `gap` apart (the first one at once).
fn paced_body(frames: Vec<Bytes>, gap: Duration) -> FixtureBody {
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        for (i, f) in frames.into_iter().enumerate() {
            if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
        }
    });
    body
}

// ---------------------------------------------------------------------------------------
// routes

async fn route(req: Request<Incoming>, st: &State) -> Result<Response<FixtureBody>, BoxError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let q = query.as_deref();
    if realtime::is_upgrade(&req) {
        return Ok(realtime::upgrade(req, &path, q));
    }
    if path == "/mcp" {
        return mcp::route(req, q.is_some_and(|q| q.contains("sse=1"))).await;
    }
    // HEAD is GET without the body: hyper leaves the body out and keeps the headers.
    let route_method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    let resp = match (&route_method, path.as_str()) {
        (&Method::GET, "/json") => json_response(StatusCode::OK, &sample_json()),
        (&Method::POST, "/echo") => echo(req).await?,
        (&Method::GET, "/sse") => sse(q),
        (&Method::GET, "/big") => big(q, true),
        (&Method::GET, "/big-chunked") => big(q, false),
        (&Method::POST, "/upload") => upload(req).await?,
        (&Method::GET | &Method::POST, "/slow") => {
            let ms = query_num(q, "ms", 2000);
            let bytes = read_body(req).await?.len();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json_response(
                StatusCode::OK,
                &json!({"slow": true, "ms": ms, "bytes": bytes}),
            )
        }
        (&Method::GET, p) if p.starts_with("/status/") => status(&p["/status/".len()..]),
        // A service error makes hyper drop an HTTP/1 connection without answering
        // (HTTP/2: the stream is reset).
        (&Method::GET, "/close") => return Err("fixture: /close drops the connection".into()),
        (&Method::GET, "/reset-mid") => reset_mid(),
        (&Method::GET, "/gzip") => gzip(),
        (&Method::GET, "/login-page") => login_page(),
        (&Method::GET, "/big-gzip") => big_gzip(q),
        (&Method::GET, "/weather") => weather(q),
        (&Method::GET, "/price") => price(q),
        (&Method::POST, "/judge/v1/chat/completions") => judge(req).await?,
        (&Method::GET, "/trailers") => trailers(&req),
        // An upstream bug: a body its header says is gzip, that is not.
        (&Method::GET, "/not-gzip") => Response::builder()
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(full(Bytes::from_static(
                b"{\"plain\": \"not gzip at all\"}",
            )))
            .expect("response"),
        (&Method::GET, "/sse-linger") => sse_linger(q),
        (&Method::GET, "/gzip-broken") => gzip_broken(q, &authorization(&req)),
        (&Method::GET, "/empty") => empty(q),
        (&Method::GET, "/page") => page(q),
        (&Method::GET, "/table") => table_page(q),
        (&Method::GET, "/empty-list") => json_response(StatusCode::OK, &json!([])),
        (&Method::GET, "/latin1-header") => {
            // A file name in raw Latin-1, as some servers still send one: not UTF-8.
            let mut resp = json_response(StatusCode::OK, &json!({"ok": true}));
            resp.headers_mut().insert(
                "content-disposition",
                hyper::header::HeaderValue::from_bytes(LATIN1_DISPOSITION).unwrap(),
            );
            resp
        }
        (&Method::GET, "/newid") => {
            // Identical requests, each answered with a fresh id that later requests carry.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let id = format!("obj_{:012x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16);
            json_response(StatusCode::OK, &json!({ "id": id, "object": "order" }))
        }
        (&Method::GET, "/counter") => {
            // Identical requests, different answers (polling): replay must keep their order.
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            json_response(StatusCode::OK, &json!({ "n": n }))
        }
        (&Method::POST, "/v1/chat/completions") => chat_completions(req, st).await?,
        (&Method::POST, "/v1/messages") => anthropic_messages(req).await?,
        (&Method::POST, "/v1/embeddings") => embeddings(req).await?,
        (&Method::POST, "/v1/audio/transcriptions") => transcription(req).await?,
        (&Method::GET, "/echo-host") => json_response(
            StatusCode::OK,
            &json!({"host": req.headers().get("host").and_then(|h| h.to_str().ok())}),
        ),
        (&Method::GET, "/echo-auth") => echo_auth(&req),
        (&Method::GET, "/echo-auth-escaped") => echo_auth_escaped(&req),
        (&Method::GET, "/echo-auth-latin1") => echo_auth_latin1(&req),
        (&Method::GET, "/sse-echo-auth") => sse_echo_auth(&req, q),
        (&Method::GET, "/sse-echo-auth-tokens") => sse_echo_auth_tokens(&req),
        (&Method::POST, "/sts") => {
            read_body(req).await?;
            Response::builder()
                .header("content-type", "text/xml")
                .body(full(STS_ANSWER))
                .expect("response")
        }
        (&Method::POST, p)
            if p.starts_with("/v1beta/models/") && p.ends_with(":streamGenerateContent") =>
        {
            gemini_echo_key_stream(&req, q)
        }
        (&Method::POST, p)
            if p.starts_with("/model/")
                && (p.ends_with("/converse-stream")
                    || p.ends_with("/invoke-with-response-stream")) =>
        {
            bedrock_echo_key_stream(&req, p.ends_with("/invoke-with-response-stream"))
        }
        (&Method::POST, "/secretsmanager") => {
            // `GetSecretValue`, as AWS Secrets Manager answers it: the secret is JSON text.
            read_body(req).await?;
            let mut resp = json_response(
                StatusCode::OK,
                &json!({"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db",
                        "Name": "prod/db", "SecretString": DB_SECRET_STRING,
                        "VersionId": "v-1", "VersionStages": ["AWSCURRENT"],
                        "CreatedDate": 1.7e9}),
            );
            resp.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            resp
        }
        (&Method::POST, "/oauth/token") => {
            read_body(req).await?;
            json_response(
                StatusCode::OK,
                &json!({"access_token": OAUTH_ACCESS_TOKEN, "token_type": "bearer",
                        "expires_in": 3600, "refresh_token": OAUTH_REFRESH_TOKEN}),
            )
        }
        _ => error_json(
            StatusCode::NOT_FOUND,
            &format!("fixture: no route for {method} {path}"),
            "invalid_request_error",
            json!("not_found"),
        ),
    };
    Ok(resp)
}

/// A zero-byte answer with the given status: `Content-Length: 0`, except for 204 and
/// 304, which have no body by definition.
fn empty(q: Option<&str>) -> Response<FixtureBody> {
    let status = StatusCode::from_u16(query_num(q, "status", 200) as u16).unwrap_or(StatusCode::OK);
    let mut b = Response::builder().status(status);
    if status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED {
        b = b
            .header("content-type", "application/json")
            .header("content-length", 0);
    }
    b.body(full(Bytes::new())).expect("response")
}

/// The cursor that follows `cursor`: derived from it, so it is the same on every run.
pub fn next_cursor(cursor: &str) -> String {
    let h = blake3::hash(cursor.as_bytes()).to_hex();
    format!("cur_{}", &h[..12])
}

/// One page of a paginated listing: the cursor of the next page appears only here.
fn page(q: Option<&str>) -> Response<FixtureBody> {
    let cursor = query_param(q, "cursor").unwrap_or_else(|| "start".into());
    json_response(
        StatusCode::OK,
        &json!({"cursor": cursor, "items": ["a", "b"], "next_cursor": next_cursor(&cursor)}),
    )
}

/// Azure Table storage's paging: the next page's keys come back in answer headers
/// (`x-ms-continuation-NextPartitionKey`, `…-NextRowKey`) and the client sends them as
/// query parameters of the next call; three pages.
fn table_page(q: Option<&str>) -> Response<FixtureBody> {
    let key = query_param(q, "NextPartitionKey").unwrap_or_default();
    let page = match key.as_str() {
        "" => 1,
        "1!12!cGFydGl0aW9uLTI-" => 2,
        _ => 3,
    };
    let mut resp = json_response(
        StatusCode::OK,
        &json!({"value": [{"PartitionKey": format!("partition-{page}"), "RowKey": "r1"}]}),
    );
    let next = match page {
        1 => Some("1!12!cGFydGl0aW9uLTI-"),
        2 => Some("1!12!cGFydGl0aW9uLTM-"),
        _ => None,
    };
    if let Some(next) = next {
        let h = resp.headers_mut();
        h.insert(
            "x-ms-continuation-NextPartitionKey",
            next.parse().expect("header"),
        );
        h.insert(
            "x-ms-continuation-NextRowKey",
            "1!8!cm93LTAwMDE-".parse().expect("header"),
        );
    }
    resp
}

/// The `/json` document (~1 KB).
pub fn sample_json() -> Value {
    let items: Vec<Value> = (0..8)
        .map(|i| {
            json!({
                "id": format!("item-{i}"),
                "index": i,
                "name": format!("fixture item number {i}"),
                "tags": ["alpha", "beta"],
                "score": i * 7 % 10,
            })
        })
        .collect();
    json!({
        "object": "list",
        "source": "tapedeck upstream fixture",
        "count": items.len(),
        "data": items,
    })
}

async fn echo(req: Request<Incoming>) -> Result<Response<FixtureBody>, BoxError> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let mut headers = serde_json::Map::new();
    for name in ["content-type", "accept", "x-test"] {
        if let Some(v) = req.headers().get(name) {
            headers.insert(name.into(), json!(String::from_utf8_lossy(v.as_bytes())));
        }
    }
    let body = read_body(req).await?;
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"method": method, "path": path, "query": query, "body": body, "headers": headers}),
    ))
}

fn authorization(req: &Request<Incoming>) -> String {
    req.headers()
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// The request's `Authorization` echoed in a JSON body twice, as PHP's `json_encode`
/// writes it (`/` as `\/`) and as .NET's `System.Text.Json` does (`+` as `\u002B`).
fn echo_auth_escaped(req: &Request<Incoming>) -> Response<FixtureBody> {
    let plain = serde_json::to_string(&authorization(req)).expect("json");
    let body = format!(
        "{{\"php\":{},\"dotnet\":{}}}",
        plain.replace('/', "\\/"),
        plain.replace('+', "\\u002B")
    );
    Response::builder()
        .header("content-type", "application/json")
        .body(full(body))
        .expect("response")
}

fn echo_auth(req: &Request<Incoming>) -> Response<FixtureBody> {
    let mut resp = json_response(StatusCode::OK, &json!({"ok": true}));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&authorization(req)) {
        resp.headers_mut().insert("x-echoed", v);
    }
    resp
}

/// Echoes the authorization in a header beside a Latin-1 byte: a value that is not UTF-8,
/// which tapedeck stores as its bytes.
fn echo_auth_latin1(req: &Request<Incoming>) -> Response<FixtureBody> {
    let mut resp = json_response(StatusCode::OK, &json!({"ok": true}));
    let value = [authorization(req).as_bytes(), b" \xe9"].concat();
    if let Ok(v) = hyper::header::HeaderValue::from_bytes(&value) {
        resp.headers_mut().insert("x-echoed", v);
    }
    resp
}

/// About `bytes` of events of ~4 KB, each echoing the bearer credential and carrying
/// `"access_token": OAUTH_ACCESS_TOKEN`; a frame ends every 16 events, alternately in
/// the middle of the credential, of the token's value and of the field name.
fn sse_echo_auth(req: &Request<Incoming>, q: Option<&str>) -> Response<FixtureBody> {
    let auth = authorization(req);
    let cred = auth.strip_prefix("Bearer ").unwrap_or(&auth).to_string();
    let total = query_num(q, "bytes", 2 << 20) as usize;
    let pad = "x".repeat(4000);
    let mut text = String::new();
    let mut cuts = Vec::new();
    let mut i = 0usize;
    while text.len() < total {
        let event = format!(
            "data: {{\"i\":{i},\"pad\":\"{pad}\",\"echo\":\"{cred}\",\"access_token\":\"{OAUTH_ACCESS_TOKEN}\"}}\n\n"
        );
        if i % 16 == 15 && !cred.is_empty() {
            let (needle, at) = match (i / 16) % 3 {
                0 => (cred.as_str(), cred.len() / 2),
                1 => (OAUTH_ACCESS_TOKEN, OAUTH_ACCESS_TOKEN.len() / 2),
                _ => ("access_token", 6),
            };
            if let Some(k) = event.find(needle) {
                cuts.push(text.len() + k + at);
            }
        }
        text.push_str(&event);
        i += 1;
    }
    text.push_str("data: [DONE]\n\n");
    let mut frames = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for c in cuts {
        frames.push(Bytes::copy_from_slice(&text.as_bytes()[last..c]));
        last = c;
    }
    frames.push(Bytes::copy_from_slice(&text.as_bytes()[last..]));
    sse_response(paced_body(frames, Duration::ZERO))
}

/// A model repeating the caller's key as it streams: OpenAI chat chunks of three
/// characters each, one event a frame, 2 ms apart.
/// `Echo: KEY.` as a model streams it: the key three characters a token.
fn echo_pieces(key: &str) -> Vec<String> {
    let mut pieces = vec!["Echo: ".to_string()];
    let chars: Vec<char> = key.chars().collect();
    pieces.extend(chars.chunks(3).map(|c| c.iter().collect::<String>()));
    pieces.push(".".to_string());
    pieces
}

fn sse_echo_auth_tokens(req: &Request<Incoming>) -> Response<FixtureBody> {
    let auth = authorization(req);
    let cred = auth.strip_prefix("Bearer ").unwrap_or(&auth);
    let tokens = echo_pieces(cred);
    let mut frames: Vec<Bytes> = tokens
        .iter()
        .map(|t| sse_data(&json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": t}}]})))
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(paced_body(frames, Duration::from_millis(2)))
}

/// Gemini's `streamGenerateContent` repeating the caller's `x-goog-api-key` (or `?key=`)
/// three characters a chunk: with `alt=sse` as events, without it as the one JSON array
/// Gemini streams, each element pretty-printed over lines, `,` CR LF between them.
fn gemini_echo_key_stream(req: &Request<Incoming>, q: Option<&str>) -> Response<FixtureBody> {
    let key = req
        .headers()
        .get("x-goog-api-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| query_param(q, "key"))
        .unwrap_or_default();
    let texts = echo_pieces(&key);
    let chunk = |t: &str| {
        json!({"candidates": [{"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}],
               "modelVersion": "gemini-2.5-flash"})
    };
    if query_param(q, "alt").as_deref() == Some("sse") {
        let frames = texts.iter().map(|t| sse_data(&chunk(t))).collect();
        return sse_response(paced_body(frames, Duration::from_millis(2)));
    }
    let last = texts.len() - 1;
    let frames = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let pretty = serde_json::to_string_pretty(&chunk(t)).expect("json");
            let open = if i == 0 { "[" } else { ",\r\n" };
            let close = if i == last { "]" } else { "\n" };
            Bytes::from(format!("{open}{pretty}{close}"))
        })
        .collect();
    Response::builder()
        .header("content-type", "application/json; charset=UTF-8")
        .body(paced_body(frames, Duration::from_millis(2)))
        .expect("response")
}

/// One message of Amazon's binary event stream: prelude, string headers, payload, CRCs.
pub fn eventstream_message(event: &str, payload: &[u8]) -> Bytes {
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", event),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7);
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = (12 + headers.len() + payload.len() + 4) as u32;
    let mut m = total.to_be_bytes().to_vec();
    m.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let crc = crc32fast::hash(&m);
    m.extend_from_slice(&crc.to_be_bytes());
    m.extend_from_slice(&headers);
    m.extend_from_slice(payload);
    let crc = crc32fast::hash(&m);
    m.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(m)
}

/// Bedrock's streams repeating the caller's bearer key (a Bedrock API key) three
/// characters a message: `converse-stream`'s `contentBlockDelta` events, or
/// `invoke-with-response-stream`'s `chunk` events, each an Anthropic Messages stream
/// event base64-encoded in `bytes`.
fn bedrock_echo_key_stream(req: &Request<Incoming>, invoke: bool) -> Response<FixtureBody> {
    use base64::Engine as _;
    let auth = authorization(req);
    let key = auth.strip_prefix("Bearer ").unwrap_or(&auth);
    let texts = echo_pieces(key);
    let frames: Vec<Bytes> = if invoke {
        texts
            .iter()
            .map(|t| {
                let chunk = json!({"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": t}});
                let b64 = base64::engine::general_purpose::STANDARD.encode(chunk.to_string());
                eventstream_message(
                    "chunk",
                    json!({"bytes": b64, "p": "abcdef"}).to_string().as_bytes(),
                )
            })
            .collect()
    } else {
        let mut f = vec![eventstream_message(
            "messageStart",
            br#"{"p":"abcd","role":"assistant"}"#,
        )];
        f.extend(texts.iter().map(|t| {
            let delta = json!({"contentBlockIndex": 0, "delta": {"text": t}, "p": "abcdefgh"});
            eventstream_message("contentBlockDelta", delta.to_string().as_bytes())
        }));
        f.push(eventstream_message(
            "messageStop",
            br#"{"p":"ab","stopReason":"end_turn"}"#,
        ));
        f
    };
    Response::builder()
        .header("content-type", "application/vnd.amazon.eventstream")
        .body(paced_body(frames, Duration::from_millis(2)))
        .expect("response")
}

fn sse(q: Option<&str>) -> Response<FixtureBody> {
    let n = query_num(q, "n", 5);
    let gap = Duration::from_millis(query_num(q, "gap_ms", 100));
    let mut frames: Vec<Bytes> = (0..n).map(|i| sse_data(&json!({"i": i}))).collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    // [DONE] follows the last event at once: the gap is only between events.
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        let last = frames.len() - 1;
        for (i, f) in frames.into_iter().enumerate() {
            if i > 0 && i < last && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            if tx.send(Ok(f)).await.is_err() {
                return;
            }
        }
    });
    sse_response(body)
}

/// A chunked body with trailers after it (a checksum, gRPC's status, and the caller's
/// `Authorization` echoed in one, which the store must not keep).
fn trailers(req: &Request<Incoming>) -> Response<FixtureBody> {
    let mut fields = hyper::HeaderMap::new();
    fields.insert("x-checksum", "sha256-abc123".parse().expect("value"));
    fields.insert("grpc-status", "0".parse().expect("value"));
    if let Some(auth) = req.headers().get("authorization") {
        fields.insert("x-echoed", auth.clone());
    }
    let frames = [
        Frame::data(Bytes::from_static(b"part one\n")),
        Frame::data(Bytes::from_static(b"part two\n")),
        Frame::trailers(fields),
    ];
    Response::builder()
        .header("content-type", "text/plain")
        .header("trailer", "x-checksum, grpc-status, x-echoed")
        .body(FramesBody(frames.into_iter().collect()).boxed())
        .expect("response")
}

/// Frames handed out in order, each at once.
struct FramesBody(std::collections::VecDeque<Frame<Bytes>>);

impl Body for FramesBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

fn big(q: Option<&str>, exact: bool) -> Response<FixtureBody> {
    let n = query_num(q, "bytes", 5 * 1024 * 1024);
    let mut b = Response::builder().header("content-type", "application/octet-stream");
    if exact {
        b = b.header("content-length", n);
    }
    b.body(PatternBody::new(n, exact).boxed())
        .expect("response")
}

/// OpenAI's `audio/transcriptions` shape: a multipart form in, `{"text": ...}` out. The
/// "transcript" names the form's size and the blake3 of its file part's bytes, found
/// between the part's head and the next boundary.
async fn transcription(req: Request<Incoming>) -> Result<Response<FixtureBody>, BoxError> {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = read_body(req).await?;
    let Some(boundary) = ct.split("boundary=").nth(1).map(|b| b.trim_matches('"')) else {
        return Ok(error_json(
            StatusCode::BAD_REQUEST,
            "not a multipart form",
            "invalid_request_error",
            Value::Null,
        ));
    };
    let file = body
        .windows(b"filename=".len())
        .position(|w| w == b"filename=")
        .and_then(|at| {
            let rest = &body[at..];
            let start = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
            let end_mark = format!("\r\n--{boundary}");
            let end = rest[start..]
                .windows(end_mark.len())
                .position(|w| w == end_mark.as_bytes())?;
            Some(&rest[start..start + end])
        });
    let Some(file) = file else {
        return Ok(error_json(
            StatusCode::BAD_REQUEST,
            "no file part",
            "invalid_request_error",
            Value::Null,
        ));
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"text": format!("{} bytes of audio, blake3 {}", file.len(), blake3::hash(file).to_hex())}),
    ))
}

async fn upload(req: Request<Incoming>) -> Result<Response<FixtureBody>, BoxError> {
    let mut body = req.into_body();
    let mut n: u64 = 0;
    let mut sum: u32 = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
            for &b in data.iter() {
                sum = sum.wrapping_add(b as u32);
            }
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"bytes": n, "sum": sum}),
    ))
}

fn status(code: &str) -> Response<FixtureBody> {
    let Some(status) = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return error_json(
            StatusCode::BAD_REQUEST,
            &format!("fixture: bad status code {code:?}"),
            "invalid_request_error",
            Value::Null,
        );
    };
    let message = format!(
        "fixture: status {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = json_response(
        status,
        &json!({"error": {"message": message.trim_end(), "type": "server_error", "code": null}}),
    );
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("0"));
    }
    resp
}

fn reset_mid() -> Response<FixtureBody> {
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        let mut part = b"{\"data\":\"".to_vec();
        part.extend(std::iter::repeat_n(b'x', 91));
        if tx.send(Ok(Bytes::from(part))).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tx.send(Err("fixture: /reset-mid breaks off".into())).await;
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("content-length", 1000)
        .body(body)
        .expect("response")
}

/// The JSON document that `/gzip` serves, before compression.
pub fn gzip_json() -> Value {
    json!({"compressed": true, "text": "tapedeck ".repeat(64), "n": 42})
}

/// A login page as Django and Rails write one: the anti-forgery token in a meta tag and
/// in the form's hidden input.
fn login_page() -> Response<FixtureBody> {
    let page = format!(
        "<!doctype html><html><head><meta name=\"csrf-token\" content=\"{PAGE_CSRF}\"></head>\
         <body><form method=\"post\" action=\"/echo\"><input type=\"hidden\" \
         name=\"csrfmiddlewaretoken\" value=\"{PAGE_CSRF}\"><input name=\"user\"></form></body></html>"
    );
    Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .body(full(page.into_bytes()))
        .expect("response")
}

fn gzip() -> Response<FixtureBody> {
    let raw = serde_json::to_vec(&gzip_json()).expect("json");
    // flate2's header has mtime 0: the compressed bytes are deterministic too.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&raw).expect("gzip");
    let data = enc.finish().expect("gzip");
    Response::builder()
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(full(data))
        .expect("response")
}

/// Two events, then the stream held open `ms` milliseconds before it ends (an upstream
/// that closes late); `gzip=1` compresses it, each event flushed, the gzip trailer last.
fn sse_linger(q: Option<&str>) -> Response<FixtureBody> {
    let linger = Duration::from_millis(query_num(q, "ms", 600));
    let gzip = query_param(q, "gzip").is_some();
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..2 {
            let event = sse_data(&json!({"i": i}));
            let frame = if gzip {
                enc.write_all(&event).expect("gzip");
                enc.flush().expect("gzip");
                Bytes::from(std::mem::take(enc.get_mut()))
            } else {
                event
            };
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(linger).await;
        if gzip {
            let _ = tx.send(Ok(Bytes::from(enc.finish().expect("gzip")))).await;
        }
    });
    let mut resp = sse_response(body);
    if gzip {
        resp.headers_mut().insert(
            "content-encoding",
            hyper::header::HeaderValue::from_static("gzip"),
        );
    }
    resp
}

/// An upstream bug: `/gzip`'s body whose gzip breaks after it decoded: `how=junk`
/// followed by bytes that are not gzip, `how=cut` cut short, `how=crc` with a wrong
/// checksum. `stream=1` sends it as an
/// event stream in two frames, without a length; `how=echo` is followed by the request's
/// `Authorization`.
fn gzip_broken(q: Option<&str>, auth: &str) -> Response<FixtureBody> {
    let raw = serde_json::to_vec(&gzip_json()).expect("json");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&raw).expect("gzip");
    let mut data = enc.finish().expect("gzip");
    let members = |raw: &[u8]| -> Vec<u8> {
        let third = raw.len() / 3;
        [&raw[..third], &raw[third..2 * third], &raw[2 * third..]]
            .iter()
            .flat_map(|part| {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(part).expect("gzip");
                e.finish().expect("gzip")
            })
            .collect()
    };
    match query_param(q, "how").as_deref() {
        // Valid gzip in three members (concatenated streams).
        Some("members") => data = members(&raw),
        // Three members, the last one's CRC wrong.
        Some("members-crc") => {
            data = members(&raw);
            let n = data.len();
            data[n - 8] ^= 0xff;
        }
        Some("cut") => data.truncate(data.len() - 12),
        Some("crc") => {
            let n = data.len();
            data[n - 8] ^= 0xff;
        }
        Some("echo") => data.extend_from_slice(format!("\n{auth}\n").as_bytes()),
        _ => data.extend_from_slice(b"JUNKJUNK"),
    }
    if query_param(q, "stream").is_some() {
        let (a, b) = data.split_at(data.len() / 2);
        let frames = vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)];
        return Response::builder()
            .header("content-type", "text/event-stream")
            .header("content-encoding", "gzip")
            .body(paced_body(frames, Duration::from_millis(20)))
            .expect("response");
    }
    Response::builder()
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(full(data))
        .expect("response")
}

/// The `/big` pattern of `bytes` bytes, gzip-encoded, with its length.
fn big_gzip(q: Option<&str>) -> Response<FixtureBody> {
    let n = query_num(q, "bytes", 3 * 1024 * 1024);
    let raw: Vec<u8> = (0..n).map(big_byte).collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&raw).expect("gzip");
    let data = enc.finish().expect("gzip");
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-encoding", "gzip")
        .header("content-length", data.len())
        .body(full(data))
        .expect("response")
}

/// The weather tool's answer for `city`, if the table knows it.
pub fn weather_of(city: &str) -> Option<Value> {
    WEATHER
        .iter()
        .find(|(c, _, _)| c.eq_ignore_ascii_case(city))
        .map(|(c, t, w)| json!({"city": c, "temp_c": t, "conditions": w}))
}

fn weather(q: Option<&str>) -> Response<FixtureBody> {
    let city = query_param(q, "city").unwrap_or_default();
    match weather_of(&city) {
        Some(v) => json_response(StatusCode::OK, &v),
        None => error_json(
            StatusCode::NOT_FOUND,
            &format!("unknown city: {city:?}"),
            "not_found_error",
            json!("city_not_found"),
        ),
    }
}

/// The price tool: a 200 whose body carries a soft error (the raw price could not be
/// parsed, and the number is a guess), as real shop APIs do.
fn price(q: Option<&str>) -> Response<FixtureBody> {
    let item = query_param(q, "item").unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({
            "item": item, "price": 1.299, "raw_price": "1.299,00", "currency": "EUR",
            "parse_error": "could not parse '1.299,00': ambiguous decimal separator, read as 1.299",
        }),
    )
}

/// The item a user asks about: the word after "the", default "widget".
fn item_of(text: &str) -> String {
    let words: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|w| w[0].eq_ignore_ascii_case("the"))
        .map_or("widget", |w| w[1])
        .to_lowercase()
}

/// A keyword judge for `tapedeck analyze --judge`: the share of the instruction's key
/// words (four letters or more) that the step's output mentions, as `{score, reason}`.
async fn judge(req: Request<Incoming>) -> Result<Response<FixtureBody>, BoxError> {
    let body: Value = serde_json::from_slice(&read_body(req).await?).unwrap_or(Value::Null);
    let question = body
        .pointer("/messages/1/content")
        .and_then(Value::as_str)
        .unwrap_or("");
    let instruction = question
        .split("Instruction:\n")
        .nth(1)
        .and_then(|r| r.split("\n\nOutput of step").next())
        .unwrap_or("");
    let output = question
        .split_once("\n\nOutput of step")
        .and_then(|(_, r)| r.split_once(":\n"))
        .map_or("", |(_, o)| o)
        .to_lowercase();
    let words = |t: &str| -> Vec<String> {
        t.split(|c: char| !c.is_alphabetic())
            .filter(|w| w.chars().count() >= 4)
            .map(str::to_lowercase)
            .filter(|w| {
                ![
                    "what", "when", "where", "which", "this", "that", "with", "from", "your",
                    "about", "please", "tell",
                ]
                .contains(&w.as_str())
            })
            .collect()
    };
    let keys = words(instruction);
    let said = words(&output);
    let hits: Vec<&String> = keys.iter().filter(|k| said.contains(k)).collect();
    let score = if keys.is_empty() {
        1.0
    } else {
        hits.len() as f64 / keys.len() as f64
    };
    let reason = if hits.is_empty() {
        format!(
            "the output mentions none of the instruction's key words ({})",
            keys.join(", ")
        )
    } else {
        format!(
            "the output mentions {} of the instruction's key words",
            hits.len()
        )
    };
    let content = json!({"score": score, "reason": reason}).to_string();
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fixture-judge");
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": "judge-1", "object": "chat.completion", "created": CREATED, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": tokens(question.len()), "completion_tokens": tokens(content.len()), "total_tokens": tokens(question.len() + content.len())},
        }),
    ))
}

// ---------------------------------------------------------------------------------------
// OpenAI Chat Completions

/// What the scripted model answers.
enum Script {
    Text(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
        /// Further calls made in parallel in the same answer (OpenAI chat only): asking
        /// about two known cities ("Paris and Tokyo") gets one call per city.
        more: Vec<(String, String, String)>,
    },
}

fn first_tool_name(tools: Option<&Value>) -> Option<String> {
    let t = tools?.as_array()?.first()?;
    Some(
        t.pointer("/function/name")
            .or_else(|| t.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("get_weather")
            .to_string(),
    )
}

/// A tool offered other than `name`, or `search_web` when there is none.
fn other_tool(tools: Option<&Value>, name: &str) -> String {
    tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
        })
        .find(|n| *n != name)
        .unwrap_or("search_web")
        .to_string()
}

/// The offered tools a user text names, in the order named, each with the text from its
/// name up to the next one.
fn named_tools(tools: Option<&Value>, text: &str) -> Vec<(String, String)> {
    let mut at: Vec<(usize, String)> = tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t.pointer("/function/name")
                .or_else(|| t.get("name"))
                .and_then(Value::as_str)
        })
        .filter_map(|name| text.find(name).map(|i| (i, name.to_string())))
        .collect();
    at.sort();
    (0..at.len())
        .map(|i| {
            let end = at.get(i + 1).map_or(text.len(), |n| n.0);
            (
                at[i].1.clone(),
                text[at[i].0 + at[i].1.len()..end].to_string(),
            )
        })
        .collect()
}

/// The text of the last message when it is the user's.
fn last_user_text(req: &Value) -> Option<String> {
    let last = req.get("messages")?.as_array()?.last()?;
    (last.get("role")?.as_str()? == "user")
        .then(|| last.get("content").map(content_text).unwrap_or_default())
}

fn chat_script(req: &Value) -> (Script, usize) {
    let empty = Vec::new();
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let n = messages.len();
    let prompt_chars: usize = messages
        .iter()
        .map(|m| {
            m.get("content")
                .map(content_text)
                .unwrap_or_default()
                .chars()
                .count()
        })
        .sum();
    let Some(last) = messages.last() else {
        return (Script::Text("Hello from the fixture.".into()), prompt_chars);
    };
    let role = last.get("role").and_then(Value::as_str).unwrap_or("");
    let text = last.get("content").map(content_text).unwrap_or_default();
    let named = named_tools(req.get("tools"), &text);
    let script = match (role, first_tool_name(req.get("tools"))) {
        ("user", Some(_)) if named.len() >= 2 => {
            // "get_forecast for Paris and get_weather for Atlantis": one call per tool
            // named, each for the city named after it.
            let mut calls: Vec<(String, String, String)> = named
                .iter()
                .enumerate()
                .map(|(i, (name, segment))| {
                    let city = city_of(&format!("x {segment}"));
                    (
                        format!("call_{n}_{i}"),
                        name.clone(),
                        serde_json::to_string(&json!({ "city": city })).expect("json"),
                    )
                })
                .collect();
            let (id, name, arguments) = calls.remove(0);
            Script::ToolCall {
                id,
                name,
                arguments,
                more: calls,
            }
        }
        ("user", Some(name)) => {
            let cities: Vec<&str> = {
                let mut found: Vec<(usize, &str)> = WEATHER
                    .iter()
                    .filter_map(|(c, _, _)| text.find(c).map(|at| (at, *c)))
                    .collect();
                found.sort();
                found.into_iter().map(|(_, c)| c).collect()
            };
            let more = cities
                .iter()
                .skip(1)
                .enumerate()
                .map(|(i, c)| {
                    (
                        format!("call_{n}_{}", i + 1),
                        name.clone(),
                        serde_json::to_string(&json!({ "city": c })).expect("json"),
                    )
                })
                .collect();
            let first = if cities.len() >= 2 {
                cities[0].to_string()
            } else {
                city_of(&text)
            };
            let arguments = if name == "get_price" {
                json!({ "item": item_of(&text) })
            } else {
                json!({ "city": first })
            };
            Script::ToolCall {
                id: format!("call_{n}"),
                name,
                arguments: serde_json::to_string(&arguments).expect("json"),
                more,
            }
        }
        ("tool", _)
            if serde_json::from_str::<Value>(&text).is_ok_and(|v| v.get("price").is_some()) =>
        {
            // A researcher's notes: the price as the tool gave it, soft error or not.
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let item = v.get("item").and_then(Value::as_str).unwrap_or("item");
            let price = v.get("price").map(Value::to_string).unwrap_or_default();
            let currency = v.get("currency").and_then(Value::as_str).unwrap_or("");
            Script::Text(format!(
                "Research notes: the {item} costs {currency} {price}"
            ))
        }
        ("user", None) if text.starts_with("Write a one-line ad") => {
            // A writer rounds whatever price the notes give to cents.
            let price = text
                .split_whitespace()
                .skip_while(|w| *w != "EUR")
                .nth(1)
                .and_then(|p| p.trim_end_matches('.').parse::<f64>().ok())
                .unwrap_or(0.0);
            Script::Text(format!("Buy it now for just EUR {price:.2}"))
        }
        ("tool", _) => {
            // The city comes from the assistant tool call that this result answers.
            let call_id = last
                .get("tool_call_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let city = messages
                .iter()
                .rev()
                .filter_map(|m| m.get("tool_calls").and_then(Value::as_array))
                .flatten()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(call_id))
                .and_then(|c| c.pointer("/function/arguments").and_then(Value::as_str))
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
                .and_then(|a| a.get("city").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| "Paris".into());
            let careful = messages.iter().any(|m| {
                m.get("role").and_then(Value::as_str) == Some("system")
                    && m.get("content")
                        .map(content_text)
                        .unwrap_or_default()
                        .contains("If a tool fails")
            });
            let failed =
                serde_json::from_str::<Value>(&text).is_ok_and(|v| v.get("error").is_some());
            if careful && failed {
                // A prompt that asks for it makes the model own up to a failed tool.
                Script::Text(format!(
                    "Sorry, I could not get the weather in {city}: the weather service failed."
                ))
            } else {
                Script::Text(format!("The weather in {city}: {text}"))
            }
        }
        _ => Script::Text(format!("You said: {text}")),
    };
    (script, prompt_chars)
}

async fn chat_completions(
    req: Request<Incoming>,
    st: &State,
) -> Result<Response<FixtureBody>, BoxError> {
    let body = read_body(req).await?;
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return Ok(error_json(
            StatusCode::BAD_REQUEST,
            "fixture: the body is not JSON",
            "invalid_request_error",
            Value::Null,
        ));
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fixture-model")
        .to_string();
    let n = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let id = format!("chatcmpl-{n}");
    let (mut script, prompt_chars) = chat_script(&body);
    // "Repeat: X" is answered with X, streamed three characters an event, as a model
    // repeating a key from its prompt streams it.
    let repeat = last_user_text(&body).and_then(|t| t.strip_prefix("Repeat: ").map(str::to_string));
    if let Some(r) = &repeat {
        script = Script::Text(r.clone());
    }
    if let Script::ToolCall { name, .. } = &mut script {
        if st.wrong_tool() {
            *name = other_tool(body.get("tools"), name);
        }
    }
    let completion_chars = match &script {
        Script::Text(t) => t.chars().count(),
        Script::ToolCall {
            name, arguments, ..
        } => name.len() + arguments.len(),
    };
    let (pt, ct) = (tokens(prompt_chars), tokens(completion_chars));
    let usage = json!({
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "total_tokens": pt + ct,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    });
    let finish = match script {
        Script::Text(_) => "stop",
        Script::ToolCall { .. } => "tool_calls",
    };
    // A max_tokens below the answer's length cuts it off, as real models do.
    let limit = body
        .get("max_completion_tokens")
        .or_else(|| body.get("max_tokens"))
        .and_then(Value::as_u64);
    let finish = if limit.is_some_and(|l| ct > l) {
        "length"
    } else {
        finish
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let message = match &script {
            Script::Text(t) => {
                json!({"role": "assistant", "content": t, "refusal": null, "annotations": []})
            }
            Script::ToolCall {
                id,
                name,
                arguments,
                more,
            } => {
                let mut calls = vec![json!({"id": id, "type": "function",
                                            "function": {"name": name, "arguments": arguments}})];
                for (id, name, arguments) in more {
                    calls.push(json!({"id": id, "type": "function",
                                      "function": {"name": name, "arguments": arguments}}));
                }
                json!({
                    "role": "assistant", "content": null, "refusal": null, "annotations": [],
                    "tool_calls": calls,
                })
            }
        };
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": id, "object": "chat.completion", "created": CREATED, "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                "usage": usage, "service_tier": "default", "system_fingerprint": "fp_fixture",
            }),
        ));
    }

    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_fixture",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        sse_data(&c)
    };
    let mut frames = Vec::new();
    match &script {
        Script::Text(t) => {
            frames.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ));
            let deltas = match &repeat {
                Some(_) => {
                    let chars: Vec<char> = t.chars().collect();
                    chars.chunks(3).map(|c| c.iter().collect()).collect()
                }
                None => word_deltas(t),
            };
            for w in deltas {
                frames.push(chunk(json!({"content": w}), Value::Null));
            }
        }
        Script::ToolCall {
            id: call_id,
            name,
            arguments,
            more,
        } => {
            frames.push(chunk(
                json!({"role": "assistant", "content": null, "refusal": null}),
                Value::Null,
            ));
            let first = (call_id.clone(), name.clone(), arguments.clone());
            for (index, (call_id, name, arguments)) in
                std::iter::once(&first).chain(more).enumerate()
            {
                frames.push(chunk(
                    json!({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                            "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
                let (a, b) = halves(arguments);
                for part in [a, b] {
                    frames.push(chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": part}}]}),
                        Value::Null,
                    ));
                }
            }
        }
    }
    frames.push(chunk(json!({}), json!(finish)));
    if include_usage {
        frames.push(sse_data(&json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_fixture",
            "choices": [], "usage": usage,
        })));
    }
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    Ok(sse_response(paced_body(frames, LLM_CHUNK_GAP)))
}

// ---------------------------------------------------------------------------------------
// Anthropic Messages

fn anthropic_script(req: &Value) -> (Script, usize) {
    let empty = Vec::new();
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let n = messages.len();
    let system_chars = req
        .get("system")
        .map(content_text)
        .unwrap_or_default()
        .chars()
        .count();
    let prompt_chars: usize = system_chars
        + messages
            .iter()
            .map(|m| {
                m.get("content")
                    .map(content_text)
                    .unwrap_or_default()
                    .chars()
                    .count()
            })
            .sum::<usize>();
    let Some(last) = messages.last() else {
        return (Script::Text("Hello from the fixture.".into()), prompt_chars);
    };
    let content = last.get("content").cloned().unwrap_or(Value::Null);
    let tool_result = content.as_array().and_then(|blocks| {
        blocks
            .iter()
            .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
    });
    let script = if let Some(result) = tool_result {
        let use_id = result
            .get("tool_use_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let text = result.get("content").map(content_text).unwrap_or_default();
        let city = messages
            .iter()
            .rev()
            .filter_map(|m| m.get("content").and_then(Value::as_array))
            .flatten()
            .find(|b| {
                b.get("type").and_then(Value::as_str) == Some("tool_use")
                    && b.get("id").and_then(Value::as_str) == Some(use_id)
            })
            .and_then(|b| {
                b.pointer("/input/city")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "Paris".into());
        Script::Text(format!("The weather in {city}: {text}"))
    } else {
        let text = content_text(&content);
        let role = last.get("role").and_then(Value::as_str).unwrap_or("");
        match (role, first_tool_name(req.get("tools"))) {
            ("user", Some(name)) => Script::ToolCall {
                id: format!("toolu_fixture_{n:02}"),
                name,
                arguments: serde_json::to_string(&json!({"city": city_of(&text)})).expect("json"),
                more: Vec::new(),
            },
            _ => Script::Text(format!("You said: {text}")),
        }
    };
    (script, prompt_chars)
}

async fn anthropic_messages(req: Request<Incoming>) -> Result<Response<FixtureBody>, BoxError> {
    let body = read_body(req).await?;
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return Ok(json_response(
            StatusCode::BAD_REQUEST,
            &json!({"type": "error", "error": {"type": "invalid_request_error",
                    "message": "fixture: the body is not JSON"}}),
        ));
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fixture-model")
        .to_string();
    let n = body
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let id = format!("msg_fixture_{n:02}");
    let (script, prompt_chars) = anthropic_script(&body);
    let (input_tokens, output_tokens) = (
        tokens(prompt_chars),
        tokens(match &script {
            Script::Text(t) => t.chars().count(),
            Script::ToolCall {
                name, arguments, ..
            } => name.len() + arguments.len(),
        }),
    );
    let stop_reason = match script {
        Script::Text(_) => "end_turn",
        Script::ToolCall { .. } => "tool_use",
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let block = match &script {
            Script::Text(t) => json!({"type": "text", "text": t}),
            Script::ToolCall {
                id,
                name,
                arguments,
                ..
            } => json!({
                "type": "tool_use", "id": id, "name": name,
                "input": serde_json::from_str::<Value>(arguments).expect("json"),
            }),
        };
        let mut resp = json_response(
            StatusCode::OK,
            &json!({
                "id": id, "type": "message", "role": "assistant", "model": model,
                "content": [block], "stop_reason": stop_reason, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 0, "output_tokens": output_tokens},
            }),
        );
        resp.headers_mut().insert(
            "request-id",
            hyper::header::HeaderValue::from_str(&format!("req_fixture_{n:02}")).expect("header"),
        );
        return Ok(resp);
    }

    let mut frames = vec![sse_event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1},
        }}),
    )];
    match &script {
        Script::Text(t) => {
            frames.push(sse_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "text", "text": ""}}),
            ));
            frames.push(sse_event("ping", &json!({"type": "ping"})));
            for w in word_deltas(t) {
                frames.push(sse_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": w}}),
                ));
            }
        }
        Script::ToolCall {
            id: use_id,
            name,
            arguments,
            ..
        } => {
            frames.push(sse_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "tool_use", "id": use_id, "name": name, "input": {}}}),
            ));
            frames.push(sse_event("ping", &json!({"type": "ping"})));
            let (a, b) = halves(arguments);
            for part in [a, b] {
                frames.push(sse_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
        }
    }
    frames.push(sse_event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push(sse_event(
        "message_delta",
        &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": output_tokens}}),
    ));
    frames.push(sse_event("message_stop", &json!({"type": "message_stop"})));
    let mut resp = sse_response(paced_body(frames, LLM_CHUNK_GAP));
    resp.headers_mut().insert(
        "request-id",
        hyper::header::HeaderValue::from_str(&format!("req_fixture_{n:02}")).expect("header"),
    );
    Ok(resp)
}

// ---------------------------------------------------------------------------------------
// OpenAI embeddings

/// The fixture's embedding of `text`: `dims` floats in [-1, 1], a function of the bytes.
pub fn embedding_of(text: &str, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|j| {
            let mut h: u32 = 2166136261 ^ (j as u32);
            for &b in text.as_bytes() {
                h = (h ^ b as u32).wrapping_mul(16777619);
            }
            // Multiples of 1/1024 are exact in f32 and print the same everywhere.
            ((h % 2049) as f32 - 1024.0) / 1024.0
        })
        .collect()
}

async fn embeddings(req: Request<Incoming>) -> Result<Response<FixtureBody>, BoxError> {
    use base64::Engine as _;
    let body = read_body(req).await?;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fixture-embedding")
        .to_string();
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .unwrap_or(8)
        .clamp(1, 4096) as usize;
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => vec![String::new()],
    };
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let chars: usize = inputs.iter().map(|s| s.chars().count()).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let v = embedding_of(s, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let pt = tokens(chars).max(1);
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "model": model,
                "usage": {"prompt_tokens": pt, "total_tokens": pt}}),
    ))
}
