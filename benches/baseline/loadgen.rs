//! The fast baseline client: keep-alive HTTPS connections driven as hard as they go.
//!
//! A pooled high-level client (reqwest) spends more per request than the proxy it
//! measures. This one holds one hyper HTTP/1.1 connection per worker over rustls
//! (through a CONNECT tunnel when a proxy is given, as `HTTPS_PROXY` clients do), on one
//! thread of its own, and only counts bytes of the answers. Connections are opened and
//! warmed before the clock starts: the numbers are per request, not per handshake.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Default, Debug)]
pub struct Load {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Bytes of response bodies per second, in MB/s (10^6).
    pub mb_s: f64,
    pub errors: usize,
}

/// Where the requests go: `upstream` is `localhost:PORT`; `proxy`, when set, is a
/// tapedeck (or other) HTTP proxy reached with CONNECT.
#[derive(Clone)]
pub struct Target {
    pub upstream: SocketAddr,
    pub proxy: Option<SocketAddr>,
    pub tls: Arc<rustls::ClientConfig>,
}

/// An HTTP/1.1 TLS client configuration that trusts only the CAs given as PEM.
pub fn client_config(ca_pems: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        let mut rd = std::io::BufReader::new(*pem);
        for cert in rustls_pemfile::certs(&mut rd) {
            roots
                .add(CertificateDer::from(cert.expect("PEM").to_vec()))
                .expect("CA");
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

impl Target {
    /// Trusts only the CAs given as PEM (the upstream's, and a proxy's for interception).
    pub fn new(upstream: SocketAddr, proxy: Option<SocketAddr>, ca_pems: &[&[u8]]) -> Target {
        let cfg = client_config(ca_pems);
        Target {
            upstream,
            proxy,
            tls: Arc::new(cfg),
        }
    }

    /// The same target spoken to in HTTP/2 only (ALPN `h2`).
    pub fn h2(&self) -> Target {
        let mut cfg = (*self.tls).clone();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Target {
            tls: Arc::new(cfg),
            ..self.clone()
        }
    }

    fn authority(&self) -> String {
        format!("localhost:{}", self.upstream.port())
    }

    async fn connect(&self) -> std::io::Result<http1::SendRequest<Empty<Bytes>>> {
        let (send, conn) = http1::handshake(TokioIo::new(self.tls().await?))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(send)
    }

    async fn connect_h2(&self) -> std::io::Result<http2::SendRequest<Empty<Bytes>>> {
        let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(self.tls().await?))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// A TLS connection to the upstream, through a CONNECT tunnel when a proxy is given.
    async fn tls(&self) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let mut tcp = TcpStream::connect(self.proxy.unwrap_or(self.upstream)).await?;
        tcp.set_nodelay(true)?;
        if self.proxy.is_some() {
            let auth = self.authority();
            tcp.write_all(format!("CONNECT {auth} HTTP/1.1\r\nHost: {auth}\r\n\r\n").as_bytes())
                .await?;
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tcp.read(&mut b).await? == 0 || head.len() > 8192 {
                    return Err(std::io::Error::other("proxy closed during CONNECT"));
                }
                head.push(b[0]);
            }
            if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
                return Err(std::io::Error::other(format!(
                    "CONNECT refused: {}",
                    String::from_utf8_lossy(&head)
                )));
            }
        }
        let name = ServerName::try_from("localhost").expect("server name");
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
    }
}

/// One worker's way to send: its own HTTP/1.1 connection, or a stream on an HTTP/2
/// connection it shares.
enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// Every request carries an API key, as an agent's calls to an LLM API do: a recorder
/// redacts it, and scrubs its echoes from what it stores.
pub const API_KEY: &str = "Bearer sk-bench-0123456789abcdefghijklmnopqrstuvwxyz";

async fn get(send: &mut Sender, auth: &str, path: &str) -> Option<u64> {
    let req = match send {
        Sender::H1(_) => hyper::Request::get(path).header(hyper::header::HOST, auth),
        // HTTP/2 names the host in the request's `:authority`, from an absolute URI.
        Sender::H2(_) => hyper::Request::get(format!("https://{auth}{path}")),
    }
    .header(hyper::header::AUTHORIZATION, API_KEY)
    .body(Empty::new())
    .ok()?;
    let resp = match send {
        Sender::H1(send) => {
            send.ready().await.ok()?;
            send.send_request(req).await.ok()?
        }
        Sender::H2(send) => {
            send.ready().await.ok()?;
            send.send_request(req).await.ok()?
        }
    };
    let ok = resp.status().is_success();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.ok()?.into_data() {
            n += d.len() as u64;
        }
    }
    ok.then_some(n)
}

/// `total` GETs of `path(i)` over `conns` keep-alive connections, on a thread and
/// runtime of the load generator's own.
pub fn run(
    target: &Target,
    conns: usize,
    total: usize,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Load {
    run_on(target, conns, 0, total, path)
}

/// [`run`] over HTTP/2: `conns` connections (`target` must be [`Target::h2`]'s), each
/// carrying `streams` requests at a time.
pub fn run_h2(
    target: &Target,
    conns: usize,
    streams: usize,
    total: usize,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Load {
    run_on(target, conns, streams.max(1), total, path)
}

/// `h2_streams`: 0 for HTTP/1.1, else HTTP/2 with that many streams per connection.
fn run_on(
    target: &Target,
    conns: usize,
    h2_streams: usize,
    total: usize,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Load {
    let target = target.clone();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("loadgen".into())
            .spawn_scoped(s, move || {
                let rt = super::runtime("loadgen");
                rt.block_on(drive(target, conns, h2_streams, total, Arc::new(path)))
            })
            .expect("loadgen thread")
            .join()
            .expect("loadgen thread")
    })
}

async fn drive(
    target: Target,
    conns: usize,
    h2_streams: usize,
    total: usize,
    path: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> Load {
    let auth = target.authority();
    let mut senders = Vec::new();
    for k in 0..conns {
        let mut s = match h2_streams {
            0 => Sender::H1(target.connect().await.expect("connect")),
            _ => Sender::H2(target.connect_h2().await.expect("connect (HTTP/2)")),
        };
        // One request each before the clock starts (handshakes are not what is measured),
        // numbered past the measured ones so a replayed sequence stays intact.
        get(&mut s, &auth, &path(total + k)).await;
        if let Sender::H2(h2) = &s {
            senders.extend((1..h2_streams).map(|_| Sender::H2(h2.clone())));
        }
        senders.push(s);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut s| {
            let (next, path, auth) = (next.clone(), path.clone(), auth.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let (mut errors, mut bytes) = (0usize, 0u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let p = path(i);
                    let t = Instant::now();
                    match get(&mut s, &auth, &p).await {
                        Some(n) => bytes += n,
                        None => errors += 1,
                    }
                    lat.push(t.elapsed());
                }
                (lat, errors, bytes)
            })
        })
        .collect();
    let mut all: Vec<Duration> = Vec::with_capacity(total);
    let (mut errors, mut bytes) = (0, 0);
    for t in tasks {
        let (l, e, b) = t.await.expect("worker");
        all.extend(l);
        errors += e;
        bytes += b;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Load {
        rps: total as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        mb_s: bytes as f64 / secs / 1e6,
        errors,
    }
}

/// Milliseconds from sending a request to the first body frame, median of `n`.
pub fn first_frame_ms(target: &Target, path: &str, n: usize) -> f64 {
    let (target, path) = (target.clone(), path.to_string());
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("loadgen".into())
            .spawn_scoped(s, move || {
                let rt = super::runtime("loadgen");
                rt.block_on(async move {
                    let auth = target.authority();
                    let mut send = target.connect().await.expect("connect");
                    let mut v = Vec::new();
                    for _ in 0..n {
                        // A proxy may close the connection after a stream (mitmdump
                        // does): open another rather than give up.
                        if send.ready().await.is_err() {
                            send = target.connect().await.expect("connect");
                        }
                        let req = hyper::Request::get(path.as_str())
                            .header(hyper::header::HOST, auth.as_str())
                            .header(hyper::header::AUTHORIZATION, API_KEY)
                            .body(Empty::new())
                            .expect("request");
                        let t = Instant::now();
                        let resp = send.send_request(req).await.expect("response");
                        let mut body = resp.into_body();
                        let _ = body.frame().await;
                        v.push(t.elapsed().as_secs_f64() * 1000.0);
                        while body.frame().await.is_some() {}
                    }
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                })
            })
            .expect("loadgen thread")
            .join()
            .expect("thread")
    })
}
