//! The fast baseline upstream: the least work an HTTPS server can do per request.
//!
//! A proxy benchmark is only as honest as its baseline. An upstream that parses JSON,
//! routes with regexes or allocates per answer spends more per request than the proxy
//! under test, which hides the proxy's cost. This one answers from static bytes on
//! hyper's HTTP/1.1 server over rustls, on one thread of its own (a current-thread
//! runtime), so client, upstream and proxy each get a fair share of the machine.
//!
//! Routes: `/json` (1 KB JSON), `/big?bytes=N` (N bytes in 64 KiB frames),
//! `/sse?n=N&gap_ms=G` (N events G ms apart); anything else is `/json`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The 1 KB answer of `/json`.
pub fn json_body() -> Bytes {
    let pad = "x".repeat(1024 - 60);
    Bytes::from(format!(
        r#"{{"id":"bench-1","object":"bench","ok":true,"pad":"{pad}"}}"#
    ))
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
    let json = json_body();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let json = json.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let json = json.clone();
                async move { Ok::<_, Infallible>(route(&req, json)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn query_u64(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

fn route(req: &Request<Incoming>, json: Bytes) -> Response<Body> {
    match req.uri().path() {
        "/big" => {
            let total = query_u64(req, "bytes").unwrap_or(1 << 20) as usize;
            let frame = Bytes::from(vec![b'a'; FRAME]);
            let frames = (0..total.div_ceil(FRAME)).map(move |i| {
                let n = FRAME.min(total - i * FRAME);
                Ok::<_, Infallible>(Frame::data(frame.slice(..n)))
            });
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
            .body(Full::new(json).boxed_unsync())
            .expect("response"),
    }
}

/// A CA of its own and a leaf for `localhost` and 127.0.0.1 signed by it (PEM of the CA,
/// and a server config with the leaf).
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
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca_cert.pem(), cfg)
}
