//! The bare forwarder: the least work a proxy that reads the traffic can do per exchange.
//!
//! A recording proxy must end the client's TLS inside a CONNECT tunnel, parse the request,
//! send it on over a TLS connection of its own to the upstream, parse the answer and send
//! it back encrypted again. This does exactly that and nothing else: hyper's HTTP/1.1 on
//! both sides over rustls (HTTP/2 on both when the client chose it), one upstream
//! connection per tunnel (HTTP/1.1 requests on a connection come one at a time; an
//! HTTP/2 tunnel's streams share its upstream connection's, and its answers to the
//! client are gathered into few sends as tapedeck's are), bodies streamed frame by
//! frame, no pool, no headers touched, nothing stored. It runs in a process of its own
//! and serves each connection as tapedeck does: accepted on a default multi-thread tokio runtime, then served on one of
//! tapedeck's serving threads (`tapedeck_proxy::shards`, one single-threaded runtime per
//! core; `TAPEDECK_SERVE_THREADS=0` serves on the accepting runtime, for both). So its row
//! in the benchmark is the floor a recorder on this machine can approach: what tapedeck
//! record costs above it is the recording.
//!
//! Started by the bench binary itself with TAPEDECK_BENCH_FORWARDER set: it reads the
//! upstream's address and CA from the environment, writes its own CA to
//! TAPEDECK_BENCH_FORWARDER_CA and prints `listening on 127.0.0.1:PORT` on stderr.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, hyper::Error>;

/// Runs the forwarder until killed.
pub fn main() {
    let upstream: SocketAddr = std::env::var("TAPEDECK_BENCH_UPSTREAM")
        .expect("TAPEDECK_BENCH_UPSTREAM")
        .parse()
        .expect("upstream address");
    let up_ca = std::fs::read(std::env::var("TAPEDECK_BENCH_UPSTREAM_CA").expect("upstream CA"))
        .expect("read upstream CA");
    let (ca_pem, server_cfg) = super::upstream::tls_config();
    std::fs::write(
        std::env::var("TAPEDECK_BENCH_FORWARDER_CA").expect("TAPEDECK_BENCH_FORWARDER_CA"),
        ca_pem,
    )
    .expect("write forwarder CA");
    let client_cfg = super::loadgen::client_config(&[&up_ca]);
    let mut h2_cfg = client_cfg.clone();
    h2_cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let connector = Connectors {
        h1: tokio_rustls::TlsConnector::from(Arc::new(client_cfg)),
        h2: tokio_rustls::TlsConnector::from(Arc::new(h2_cfg)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        eprintln!(
            "bare forwarder listening on {}",
            listener.local_addr().expect("addr")
        );
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, connector) = (acceptor.clone(), connector.clone());
            // The seat counts the connection on its thread for as long as the
            // connection lives, so the next one goes to the thread with the fewest.
            let _ =
                tapedeck_proxy::shards::Shards::serve_anywhere(tcp, move |tcp, seat| async move {
                    let _ = tunnel(tcp, upstream, acceptor, connector).await;
                    drop(seat);
                });
        }
    });
}

/// TLS to the upstream for each version of HTTP the client may speak.
#[derive(Clone)]
struct Connectors {
    h1: tokio_rustls::TlsConnector,
    h2: tokio_rustls::TlsConnector,
}

async fn tunnel(
    mut tcp: TcpStream,
    upstream: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    connectors: Connectors,
) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    // The CONNECT head (the client sends nothing more until it is answered).
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await?;
        if n == 0 || head.len() > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    tcp.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    let client = acceptor.accept(tcp).await?;
    let h2 = super::is_h2(&client);
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("server name");
    let connector = if h2 { &connectors.h2 } else { &connectors.h1 };
    let up = connector.connect(name, up).await?;
    if h2 {
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(up))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut send = send.clone();
            async move {
                send.ready().await?;
                let resp = send.send_request(req).await?;
                Ok::<Response<Body>, hyper::Error>(resp.map(|b| b.boxed_unsync()))
            }
        });
        // The client's answers gathered into few sends, as tapedeck does
        // (`tapedeck_proxy::coalesce`).
        let client = tapedeck_proxy::coalesce::Coalesce::new(client);
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(client), svc)
            .await;
        return Ok(());
    }
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(up))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let send = Arc::new(Mutex::new(send));
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let send = send.clone();
        async move {
            let mut send = send.lock().await;
            send.ready().await?;
            let resp = send.send_request(req).await?;
            Ok::<Response<Body>, hyper::Error>(resp.map(|b| b.boxed_unsync()))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), svc)
        .await;
    Ok(())
}
