//! The fast baseline upstream: the least work an HTTPS server can do per request.
//!
//! A proxy benchmark is only as honest as its baseline. An upstream that parses JSON,
//! routes with regexes or allocates per answer spends more per request than the proxy
//! under test, which hides the proxy's cost. This one answers from static bytes on
//! hyper's HTTP/1.1 server over rustls (HTTP/2 when the client asks for it with ALPN), on one thread of its own (a current-thread
//! runtime), so client, upstream and proxy each get a fair share of the machine.
//!
//! Every answer is new, as an LLM's are: a recorder stores each body it has not seen,
//! and an upstream that sent the same bytes every time would let it skip that write
//! (bodies are content-addressed), which flatters it. `/json` writes a counter into a
//! copy of its 1 KB (one small copy); `/big` sends slices of one 16 MiB buffer of random
//! bytes at random offsets (no copy), so no two of its 256 KiB segments are alike.
//!
//! Routes: `/json` (1 KB JSON; `/json?delay_us=N` answers N µs late, as a remote
//! upstream does: the thread sleeps, so only one connection at a time should ask for it),
//! `/big?bytes=N` (N bytes in 64 KiB frames), `/sse?n=N&gap_ms=G` (N events G ms apart);
//! anything else is `/json`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Where `/json`'s answer holds its number: `"id":"bench-` and 16 hex digits.
const ID_AT: usize = r#"{"id":"bench-"#.len();
const ID_DIGITS: usize = 16;

/// The 1 KB answer of `/json`, numbered `n`.
pub fn json_body(n: u64) -> Bytes {
    let pad = "x".repeat(1024 - 71);
    let body = format!(r#"{{"id":"bench-{n:016x}","object":"bench","ok":true,"pad":"{pad}"}}"#);
    debug_assert_eq!(&body[ID_AT + ID_DIGITS..ID_AT + ID_DIGITS + 1], "\"");
    Bytes::from(body)
}

/// What every answer is made from: `/json`'s text, and random bytes for `/big`.
struct Answers {
    json: Bytes,
    random: Bytes,
    /// Numbers answers.
    next: std::sync::atomic::AtomicU64,
}

/// splitmix64's output function.
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Random bytes `/big` sends slices of.
const RANDOM: usize = 16 << 20;

impl Answers {
    fn new() -> Answers {
        let mut random = vec![0u8; RANDOM];
        getrandom::fill(&mut random).expect("random bytes");
        Answers {
            json: json_body(0),
            random: Bytes::from(random),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn number(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// `/json`'s answer with the next number written into it.
    fn json(&self) -> Bytes {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.number();
        let mut b = self.json.to_vec();
        for (i, d) in b[ID_AT..ID_AT + ID_DIGITS].iter_mut().enumerate() {
            *d = HEX[((n >> (4 * (ID_DIGITS - 1 - i))) & 0xf) as usize];
        }
        Bytes::from(b)
    }

    /// `total` bytes of random data in frames of at most FRAME, each a slice of the
    /// buffer at an offset drawn from the answer's number.
    fn big(&self, total: usize) -> impl Iterator<Item = Bytes> {
        let random = self.random.clone();
        // splitmix64, seeded from the answer's number mixed: seeded with the number
        // itself, answer n + 1's frames were answer n's shifted by one, so most of
        // their segments recurred four answers later and a content-addressed store
        // skipped writing them.
        let mut state = splitmix(self.number());
        (0..total.div_ceil(FRAME)).map(move |i| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let n = FRAME.min(total - i * FRAME);
            let at = (splitmix(state) % (RANDOM - FRAME) as u64) as usize;
            random.slice(at..at + n)
        })
    }
}

const FRAME: usize = 64 * 1024;

pub struct FastUpstream {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub ca_path: PathBuf,
}

impl FastUpstream {
    /// Starts on 127.0.0.1:0 on its own thread; `dir` receives the CA file.
    pub fn start(dir: &Path) -> FastUpstream {
        let (ca_pem, cfg) = tls_config();
        let ca_path = dir.join("fast-upstream-ca.pem");
        std::fs::write(&ca_path, &ca_pem).expect("write upstream CA");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        std::thread::Builder::new()
            .name("fast-upstream".into())
            .spawn(move || {
                let rt = super::runtime("fast-upstream");
                rt.block_on(serve(std_listener, acceptor));
            })
            .expect("upstream thread");
        FastUpstream {
            addr,
            ca_pem,
            ca_path,
        }
    }
}

async fn serve(std_listener: std::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor) {
    let listener = TcpListener::from_std(std_listener).expect("listener");
    let answers = Arc::new(Answers::new());
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let answers = answers.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let late = query_u64(&req, "delay_us").map(Duration::from_micros);
                let resp = route(&req, &answers);
                async move {
                    // A sleep of the thread, not of the runtime: tokio's timer counts whole
                    // milliseconds, which would add up to one more at random.
                    if let Some(late) = late {
                        std::thread::sleep(late);
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            if super::is_h2(&tls) {
                // Answers ready together go out together, as through tapedeck
                // (`tapedeck_proxy::coalesce`): h2 alone sends each 1 KB answer on its own.
                let tls = tapedeck_proxy::coalesce::Coalesce::new(tls);
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            }
        });
    }
}

fn query_u64(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

fn route(req: &Request<Incoming>, answers: &Answers) -> Response<Body> {
    match req.uri().path() {
        "/big" => {
            let total = query_u64(req, "bytes").unwrap_or(1 << 20) as usize;
            let frames = answers
                .big(total)
                .map(|b| Ok::<_, Infallible>(Frame::data(b)));
            let body = StreamBody::new(futures_util::stream::iter(frames));
            Response::builder()
                .header("content-type", "application/octet-stream")
                .header("content-length", total)
                .body(BodyExt::boxed_unsync(body))
                .expect("response")
        }
        "/sse" => {
            let n = query_u64(req, "n").unwrap_or(3);
            let gap = Duration::from_millis(query_u64(req, "gap_ms").unwrap_or(50));
            let stream = futures_util::stream::unfold(0u64, move |i| async move {
                if i >= n {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(gap).await;
                }
                let ev = Bytes::from(format!("data: {{\"i\":{i}}}\n\n"));
                Some((Ok::<_, Infallible>(Frame::data(ev)), i + 1))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
                .expect("response")
        }
        _ => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(answers.json()).boxed_unsync())
            .expect("response"),
    }
}

/// A CA of its own and a leaf for `localhost` and 127.0.0.1 signed by it (PEM of the CA,
/// and a server config with the leaf, offering HTTP/2 and HTTP/1.1: the client picks).
pub fn tls_config() -> (String, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct names: with rcgen's one default name for both, OpenSSL (mitmproxy) takes
    // the leaf, whose issuer is then its own subject, for a self-signed certificate.
    ca.distinguished_name
        .push(DnType::CommonName, "tapedeck bench upstream CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("leaf cert");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf_cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .expect("server config");
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca_cert.pem(), cfg)
}
