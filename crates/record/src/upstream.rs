//! The outbound side of record: HTTP/1.1 and HTTP/2 clients that verify upstream
//! certificates against the system/webpki roots plus every `--upstream-ca`. Replay never
//! builds one.
//!
//! A client connection that speaks HTTP/1.1 (most agents) gets an upstream connection of
//! its own, kept with the client connection ([`ConnState`]) from one exchange to the next,
//! as a plain forwarding proxy would: no pool lookup per exchange. When the client
//! connection ends, its upstream connection waits in [`Idle`] for the next client
//! connection to the same host (a client that opens a tunnel per request reuses it). An
//! HTTP/2 client, or a request to another host than its connection's, goes through
//! `hyper_util`'s pooled clients, a pool for each serving thread ([`Pools`]). Either way
//! an upstream connection's task runs on the thread that opened it, and a client
//! connection is given one of its own thread's first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use thiserror::Error;

use super::body::ProxyBody;
use tapedeck_model::exchange::{ErrorKind, ExchangeError};
use tapedeck_proxy::{Ack, ConnState};

#[derive(Debug, Error)]
pub enum UpstreamSetupError {
    #[error("cannot read upstream CA {path}: {source}")]
    Ca {
        path: PathBuf,
        #[source]
        source: UpstreamCaProblem,
    },
    #[error("TLS client configuration failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// What is wrong with an `--upstream-ca` file.
#[derive(Debug, Error)]
pub enum UpstreamCaProblem {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Cert(#[from] rustls::Error),
    #[error("no PEM certificate in it")]
    NoPem,
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Upstream clients. The protocol mirrors the client's: an HTTP/2 client gets HTTP/2
/// upstream when the server offers it (ALPN), an HTTP/1.1 client gets HTTP/1.1, which is
/// also the cheaper path for the many agents that speak HTTP/1.1.
#[derive(Clone)]
pub struct Upstream {
    /// The pooled clients, one pair per serving thread.
    pools: Arc<Pools>,
    /// Opens the upstream connections client connections keep.
    connector: Connector,
    idle: Arc<Idle>,
    response_timeout: Duration,
}

type Pooled = Client<Connector, ProxyBody>;

/// `hyper_util`'s pooled clients (HTTP/1.1 only, and any version), a pair for each
/// serving thread ([`tapedeck_proxy::shards::here`]). A pooled connection's task runs on
/// the thread whose request opened it; shared by every thread, as one pool was until the
/// forty-first session, an HTTP/2 connection to a host carried the streams of client
/// connections on both threads, each crossing to its thread and back. A thread now
/// reuses the connections it opened, at the price of one connection per host and thread.
struct Pools {
    h1: Connector,
    any: Connector,
    threads: Mutex<HashMap<Option<usize>, (Pooled, Pooled)>>,
}

impl Pools {
    /// The caller's thread's client: any version when `h2`, else HTTP/1.1.
    fn here(&self, h2: bool) -> Pooled {
        self.on(tapedeck_proxy::shards::here(), h2)
    }

    fn on(&self, thread: Option<usize>, h2: bool) -> Pooled {
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        let (h1, any) = threads.entry(thread).or_insert_with(|| {
            (
                pooled_client(self.h1.clone()),
                pooled_client(self.any.clone()),
            )
        });
        if h2 {
            any.clone()
        } else {
            h1.clone()
        }
    }
}

fn pooled_client(https: Connector) -> Pooled {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_FOR)
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(https)
}

/// How long an upstream connection no client connection holds is kept, and how many per
/// host (the pooled clients' settings).
const IDLE_FOR: Duration = Duration::from_secs(90);
const IDLE_PER_HOST: usize = 256;
/// Hosts in [`Idle`] past which parking a connection to a new one sweeps out the rest.
const HOSTS_SWEPT: usize = 64;

/// Upstream connections that outlived their client connection, by `scheme://authority`,
/// most recently parked last. While any is parked, a sweeper task closes those parked
/// longer than [`IDLE_FOR`] (an upstream that never ends an idle connection would
/// otherwise keep its socket open until its host is asked for again).
struct Idle {
    parked: Mutex<HashMap<String, Vec<Parked>>>,
    /// How long a connection stays parked ([`IDLE_FOR`]; shorter in tests).
    idle_for: Duration,
    /// A sweeper task is running.
    sweeping: AtomicBool,
}

impl Default for Idle {
    fn default() -> Self {
        Idle::keeping_for(IDLE_FOR)
    }
}

/// When it was parked, and the connection.
type Parked = (Instant, Conn);

/// An upstream connection a client connection keeps: where its requests go, what
/// acknowledges what it received (see [`tapedeck_proxy::Ack`]: record reads an answer's
/// body through it), and the serving thread its task runs on.
struct Conn {
    send: SendRequest<ProxyBody>,
    ack: Ack,
    /// [`tapedeck_proxy::shards::here`] where the connection's task was spawned: it runs
    /// there for good. A client connection on another thread can use it, but each of its
    /// exchanges then crosses between the threads twice (the request to the task, the
    /// answer back), each crossing a wake-up of the other thread.
    home: Option<usize>,
}

impl Idle {
    fn keeping_for(idle_for: Duration) -> Idle {
        Idle {
            parked: Mutex::default(),
            idle_for,
            sweeping: AtomicBool::new(false),
        }
    }

    /// Whether a parked connection can still be handed out (and is worth keeping).
    fn fresh(&self, (since, conn): &Parked) -> bool {
        since.elapsed() < self.idle_for && !conn.send.is_closed()
    }

    /// The most recently parked connection to `key` that can take a request now and runs
    /// on the caller's serving thread, else the most recently parked one on another.
    fn take(&self, key: &str) -> Option<Conn> {
        self.take_for(key, tapedeck_proxy::shards::here())
    }

    /// [`Idle::take`] for a caller on serving thread `here`. Another thread's connection
    /// is still better than none: a new one costs the upstream's TCP and TLS handshakes
    /// (a remote API's round trips), a crossing a few microseconds per exchange.
    fn take_for(&self, key: &str, here: Option<usize>) -> Option<Conn> {
        let mut map = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        let parked = map.get_mut(key)?;
        parked.retain(|p| self.fresh(p));
        let found = loop {
            let at = parked
                .iter()
                .rposition(|(_, c)| c.home == here)
                .or(parked.len().checked_sub(1));
            let Some(at) = at else {
                break None;
            };
            if let Some(conn) = usable(parked.remove(at).1) {
                break Some(conn);
            }
        };
        if parked.is_empty() {
            map.remove(key);
        }
        found
    }

    fn park(self: &Arc<Self>, key: String, conn: Conn) {
        {
            let mut map = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            // Hosts no longer asked for are forgotten once their connections are closed
            // or old.
            if map.len() >= HOSTS_SWEPT && !map.contains_key(&key) {
                self.sweep(&mut map);
            }
            let parked = map.entry(key).or_default();
            parked.retain(|p| self.fresh(p));
            if parked.len() >= IDLE_PER_HOST {
                parked.remove(0);
            }
            parked.push((Instant::now(), conn));
        }
        self.start_sweeper();
    }

    /// Drops (and so closes) every connection parked too long or closed already.
    fn sweep(&self, map: &mut HashMap<String, Vec<Parked>>) {
        map.retain(|_, parked| {
            parked.retain(|p| self.fresh(p));
            !parked.is_empty()
        });
    }

    /// Starts the sweeper unless it runs: every third of [`Idle::idle_for`] it sweeps, and
    /// it ends once nothing is parked (the next park starts it again) or the upstream is
    /// dropped. Outside a runtime nothing starts (a connection is swept when its host is
    /// asked for, as before).
    fn start_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let every = self.idle_for / 3;
        let idle = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(idle) = idle.upgrade() else {
                    return;
                };
                let mut map = idle.parked.lock().unwrap_or_else(|p| p.into_inner());
                idle.sweep(&mut map);
                if map.is_empty() {
                    // Cleared under the lock: a park after it starts a new sweeper.
                    idle.sweeping.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }
}

/// `conn` if it can take a request at once: it is open and its last response was read to
/// the end. One that is still busy (a response its client left unread) is dropped rather
/// than waited for.
fn usable(mut conn: Conn) -> Option<Conn> {
    if conn.send.is_closed() {
        return None;
    }
    let waker = std::task::Waker::noop();
    match conn
        .send
        .poll_ready(&mut std::task::Context::from_waker(waker))
    {
        Poll::Ready(Ok(())) => Some(conn),
        _ => None,
    }
}

/// The upstream connection a client connection keeps (in its [`ConnState`]); parked in
/// [`Idle`] when the client connection ends, if it is still open.
struct Kept {
    key: String,
    conn: Option<Conn>,
    idle: Arc<Idle>,
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take().filter(|c| !c.send.is_closed()) {
            self.idle.park(std::mem::take(&mut self.key), conn);
        }
    }
}

impl Upstream {
    pub fn new(
        extra_cas: &[PathBuf],
        response_timeout: Duration,
    ) -> Result<Upstream, UpstreamSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        for path in extra_cas {
            let ca_err = |source: UpstreamCaProblem| UpstreamSetupError::Ca {
                path: path.clone(),
                source,
            };
            let data = std::fs::read(path).map_err(|e| ca_err(e.into()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut data.as_slice()) {
                let cert = cert.map_err(|e| ca_err(e.into()))?;
                roots.add(cert).map_err(|e| ca_err(e.into()))?;
                n += 1;
            }
            if n == 0 {
                return Err(ca_err(UpstreamCaProblem::NoPem));
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let any = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http.clone());
        let h1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Upstream {
            pools: Arc::new(Pools {
                h1: h1.clone(),
                any,
                threads: Mutex::default(),
            }),
            connector: h1,
            idle: Arc::default(),
            response_timeout,
        })
    }

    /// Sends a request and waits for the response head (bounded by the response timeout).
    /// `h2` says whether the client spoke HTTP/2 to the proxy; `target` names the request
    /// in error messages, which are stored: the redacted URL, never the real one (it may
    /// carry a key). `conn` is the client connection's state, where an HTTP/1.1 client's
    /// upstream connection is kept.
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
        h2: bool,
        target: &str,
        conn: &ConnState,
    ) -> Result<Response<Incoming>, ExchangeError> {
        let sent = async {
            let absolute = req.uri().scheme().is_some() && req.uri().authority().is_some();
            match (h2, absolute) {
                (false, true) => self.send_kept(req, conn, target).await,
                // Boxed, as every path but the common one: the exchange's future
                // holds this one, and it is moved whole.
                _ => Box::pin(self.pooled(h2, req, target)).await,
            }
        };
        match tokio::time::timeout(self.response_timeout, sent).await {
            Ok(result) => result,
            Err(_) => Err(ExchangeError {
                kind: ErrorKind::Timeout,
                message: format!(
                    "{target}: no response within {}s",
                    self.response_timeout.as_secs()
                ),
            }),
        }
    }

    /// Sends through `hyper_util`'s pooled client: any version when the client spoke
    /// HTTP/2 to the proxy (`h2`), else HTTP/1.1.
    async fn pooled(
        &self,
        h2: bool,
        req: Request<ProxyBody>,
        target: &str,
    ) -> Result<Response<Incoming>, ExchangeError> {
        let client = self.pools.here(h2);
        client.request(req).await.map_err(|e| classify(target, &e))
    }

    /// Sends on the client connection's own upstream connection: the one it kept, else
    /// one an earlier client connection to the same host left, else a new one.
    async fn send_kept(
        &self,
        mut req: Request<ProxyBody>,
        client: &ConnState,
        target: &str,
    ) -> Result<Response<Incoming>, ExchangeError> {
        let mut kept = match client.take().map(|b| b.downcast::<Kept>()) {
            Some(Ok(k)) if names(&k.key, req.uri()) => k,
            // A request to another host than the connection's (plain-HTTP proxying names
            // one per request) goes through the pool; the kept connection stays.
            Some(Ok(other)) => {
                client.put(other);
                return Box::pin(self.pooled(false, req, target)).await;
            }
            _ => Box::new(Kept {
                key: key_of(req.uri()),
                conn: None,
                idle: self.idle.clone(),
            }),
        };
        let uri = origin_form(&mut req);
        let found = kept
            .conn
            .take()
            .and_then(usable)
            .or_else(|| self.idle.take(&kept.key));
        let mut reused = found.is_some();
        let mut conn = match found {
            Some(conn) => conn,
            None => Box::pin(self.connect(&uri, target)).await?,
        };
        let mut resp = loop {
            match conn.send.try_send_request(req).await {
                Ok(resp) => break resp,
                Err(mut e) => match e.take_message() {
                    // Not sent: the connection closed while it waited (an upstream ends
                    // idle connections when it likes). Once more, on a new one.
                    Some(back) if reused => {
                        req = back;
                        reused = false;
                        conn = Box::pin(self.connect(&uri, target)).await?;
                    }
                    _ => return Err(classify(target, e.error())),
                },
            }
        };
        // After a `101` the connection belongs to the upgraded exchange.
        resp.extensions_mut().insert(conn.ack.clone());
        if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            kept.conn = Some(conn);
            client.put(kept);
        }
        Ok(resp)
    }

    /// A new HTTP/1.1 connection to `uri`'s host, TLS when it is `https`, verified as the
    /// pooled clients' are; its driver runs as a task of its own.
    async fn connect(&self, uri: &Uri, target: &str) -> Result<Conn, ExchangeError> {
        use tower_service::Service;
        let mut connector = self.connector.clone();
        let io = async {
            std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
            connector.call(uri.clone()).await
        };
        let io = io.await.map_err(|e| classify(target, &*e))?;
        let ack = socket_of(&io).map_or_else(Ack::default, Ack::socket);
        let (send, conn) = hyper::client::conn::http1::handshake(CloseIsEnd(io))
            .await
            .map_err(|e| classify(target, &e))?;
        let ended = ack.clone();
        // Spawned on the caller's runtime: on a serving thread, that thread.
        let home = tapedeck_proxy::shards::here();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("an upstream connection ended: {e}");
            }
            // The connection's own descriptor is gone (or the socket went on to an
            // upgraded exchange): ours must not keep the socket open.
            ended.release();
        });
        Ok(Conn { send, ack, home })
    }
}

/// A second descriptor of an upstream connection's socket (for its [`Ack`]).
fn socket_of(
    io: &hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>,
) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let tcp = match io {
        hyper_rustls::MaybeHttpsStream::Http(tcp) => tcp.inner(),
        hyper_rustls::MaybeHttpsStream::Https(tls) => tls.inner().get_ref().0.inner().inner(),
    };
    tcp.as_fd().try_clone_to_owned().ok()
}

/// An upstream connection on which a TLS close without `close_notify` reads as the end
/// of the stream, as curl and browsers take it: an answer delimited by the connection's
/// end (no length, not chunked) from a server that skips `close_notify` is whole, not
/// cut. A body with a length still must have all of it (hyper checks).
struct CloseIsEnd<T>(T);

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for CloseIsEnd<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for CloseIsEnd<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

/// `scheme://authority` of an absolute URI: which upstream connections can carry it.
fn key_of(uri: &Uri) -> String {
    let authority = uri.authority().map_or("", |a| a.as_str());
    format!("{}://{authority}", uri.scheme_str().unwrap_or_default())
}

/// Whether `key` (see [`key_of`]) is `uri`'s, without building it for every exchange.
fn names(key: &str, uri: &Uri) -> bool {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    key.strip_prefix(scheme)
        .and_then(|k| k.strip_prefix("://"))
        .is_some_and(|k| k == authority.as_str())
}

/// Puts `req` in the form an origin server takes over HTTP/1.1, as `hyper_util`'s client
/// does: the path and query for a URI, and a `Host` header from the URI if the client sent
/// none. Returns the absolute URI, which names where to connect.
fn origin_form(req: &mut Request<ProxyBody>) -> Uri {
    let path = match req.uri().path_and_query() {
        Some(p) if p.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(p.clone());
            Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
        }
        _ => Uri::from_static("/"),
    };
    let uri = std::mem::replace(req.uri_mut(), path);
    if !req.headers().contains_key(http::header::HOST) {
        if let Some(host) = uri.authority().and_then(|a| host_header(&uri, a)) {
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    uri
}

/// `host[:port]`, the port only when it is not the scheme's default.
fn host_header(uri: &Uri, a: &http::uri::Authority) -> Option<http::HeaderValue> {
    let default = match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    let value = match a.port_u16() {
        Some(p) if Some(p) != default => format!("{}:{p}", a.host()),
        _ => a.host().to_string(),
    };
    http::HeaderValue::from_str(&value).ok()
}

/// Turns a client error into what failed, by walking its sources.
pub fn classify(target: &str, err: &(dyn std::error::Error + 'static)) -> ExchangeError {
    let mut kind = ErrorKind::Other;
    let mut detail = err.to_string();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if kind == ErrorKind::ClientClosed {
            // The client's body failed; its sources say how, in their own words.
            detail = e.to_string();
            cur = e.source();
            continue;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            kind = match io.kind() {
                K::ConnectionRefused => ErrorKind::Refused,
                K::TimedOut => ErrorKind::Timeout,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    ErrorKind::Reset
                }
                _ if io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => ErrorKind::Tls,
                _ => kind,
            };
            detail = io.to_string();
        }
        if e.is::<rustls::Error>() {
            kind = ErrorKind::Tls;
            detail = e.to_string();
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_user() && e.source().is_some() {
                // hyper's "error from user's Body stream": the request body, read from the
                // client as it went up, ended early (the client closed it, or sent less
                // than its Content-Length).
                kind = ErrorKind::ClientClosed;
            } else if h.is_incomplete_message() || h.is_closed() {
                kind = ErrorKind::Reset;
            } else if h.is_parse() {
                kind = ErrorKind::Protocol;
            }
            detail = h.to_string();
        }
        let text = e.to_string();
        // HTTP/2 resets arrive as h2 errors, which hyper does not classify.
        if kind == ErrorKind::Other
            && (text.contains("stream error") || text.contains("GOAWAY") || text.contains("reset"))
        {
            kind = ErrorKind::Reset;
            detail = text.clone();
        }
        if text.contains("dns error") || text.contains("failed to lookup address") {
            kind = ErrorKind::Dns;
            detail = text;
        }
        cur = e.source();
    }
    let what = match kind {
        ErrorKind::Refused => "connection refused",
        ErrorKind::Dns => "host name did not resolve",
        ErrorKind::Timeout => "timed out",
        ErrorKind::Tls => "TLS handshake or certificate failed",
        ErrorKind::Reset => "connection closed before a complete response",
        ErrorKind::Protocol => "upstream spoke invalid HTTP",
        ErrorKind::ClientClosed => {
            "the client's request body ended early (closed, or shorter than its Content-Length)"
        }
        _ => "request failed",
    };
    ExchangeError {
        kind,
        message: format!("{target}: {what}: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// An HTTP/1.1 connection to a local upstream that never ends idle connections, and
    /// the time the upstream reads the connection's end.
    async fn connection() -> (
        String,
        SendRequest<ProxyBody>,
        tokio::task::JoinHandle<Instant>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ended = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            while !matches!(sock.read(&mut buf).await, Ok(0) | Err(_)) {}
            Instant::now()
        });
        let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (send, conn) = hyper::client::conn::http1::handshake::<_, ProxyBody>(io)
            .await
            .unwrap();
        tokio::spawn(conn);
        (format!("http://{addr}"), send, ended)
    }

    /// A parked connection is closed once it has been parked for the idle time, with no
    /// request to its host: the upstream reads the end of the connection.
    #[tokio::test]
    async fn a_connection_parked_too_long_is_closed_without_its_host_asked_for_again() {
        let (key, send, ended) = connection().await;
        let idle = Arc::new(Idle::keeping_for(Duration::from_millis(300)));
        let parked = Instant::now();
        idle.park(
            key,
            Conn {
                send,
                ack: Ack::default(),
                home: None,
            },
        );
        assert!(idle.sweeping.load(Ordering::Acquire), "a sweeper runs");
        let closed = tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("the parked connection is closed within 10 s")
            .unwrap();
        let after = closed - parked;
        assert!(
            after >= Duration::from_millis(300),
            "closed after {after:?}, before its idle time"
        );
        assert!(idle.parked.lock().unwrap().is_empty());
        // With nothing parked the sweeper ends; parking again starts one.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!idle.sweeping.load(Ordering::Acquire), "the sweeper ended");
    }

    /// A connection parked and taken back within its idle time is handed out, not swept.
    #[tokio::test]
    async fn a_connection_taken_back_in_time_is_handed_out() {
        let (key, send, _ended) = connection().await;
        let idle = Arc::new(Idle::keeping_for(Duration::from_secs(30)));
        idle.park(
            key.clone(),
            Conn {
                send,
                ack: Ack::default(),
                home: None,
            },
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            idle.take(&key).is_some(),
            "the parked connection is handed out"
        );
        assert!(idle.take(&key).is_none(), "and only once");
    }

    /// A client connection gets a parked connection whose task runs on its own serving
    /// thread before a more recent one on another; with none of its own, the most recent
    /// other one rather than a new one; a closed one never.
    #[tokio::test]
    async fn a_connection_of_the_callers_own_thread_is_handed_out_first() {
        let idle = Arc::new(Idle::keeping_for(Duration::from_secs(30)));
        // One host's connections (each of these has an upstream of its own).
        let key = "https://api.test".to_string();
        for home in [Some(1), Some(2), Some(3), Some(4)] {
            let (_, send, _) = connection().await;
            idle.park(
                key.clone(),
                Conn {
                    send,
                    ack: Ack::default(),
                    home,
                },
            );
        }
        // The most recent of thread 4, parked last, whose task is gone: closed.
        let send = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let io = TokioIo::new(
                tokio::net::TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap(),
            );
            let (send, conn) = hyper::client::conn::http1::handshake::<_, ProxyBody>(io)
                .await
                .unwrap();
            drop(conn);
            send
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(send.is_closed());
        idle.parked.lock().unwrap().get_mut(&key).unwrap().push((
            Instant::now(),
            Conn {
                send,
                ack: Ack::default(),
                home: Some(4),
            },
        ));
        let home = |here| idle.take_for(&key, here).map(|c| c.home);
        assert_eq!(
            home(Some(1)),
            Some(Some(1)),
            "its own thread's, not the most recent"
        );
        assert_eq!(home(Some(4)), Some(Some(4)), "its own thread's open one");
        assert_eq!(
            home(Some(9)),
            Some(Some(3)),
            "none of its own: the most recent"
        );
        assert_eq!(home(None), Some(Some(2)), "off the serving threads, any");
        assert_eq!(home(Some(1)), None, "each only once");
        assert!(idle.parked.lock().unwrap().is_empty());
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Each serving thread's pooled requests reuse the connections that thread opened and
    /// never another thread's, whose task would run over there: two threads, two
    /// connections to the upstream, however many requests each sends in turn.
    #[test]
    fn a_thread_reuses_its_own_pooled_connections_and_not_another_threads() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        // A keep-alive HTTP/1.1 upstream answering every request with `ok`.
        std::thread::spawn(move || {
            let rt = current_thread();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (sock, _) = listener.accept().await.unwrap();
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                        TokioIo::new(sock),
                        hyper::service::service_fn(|_req| async {
                            Ok::<_, std::convert::Infallible>(Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                            ))
                        }),
                    ));
                }
            });
        });
        let upstream = Upstream::new(&[], Duration::from_secs(10)).unwrap();
        // Sends two requests in turn from a runtime on a thread of its own, as thread
        // `thread` of the serving threads.
        let send_two = |thread: usize| {
            let pools = upstream.pools.clone();
            std::thread::spawn(move || {
                let rt = current_thread();
                rt.block_on(async move {
                    for _ in 0..2 {
                        let req = Request::get(format!("http://{addr}/"))
                            .body(tapedeck_proxy::body::empty())
                            .unwrap();
                        // Another thread's connection would wait for its runtime, which
                        // nothing drives any more.
                        let resp = tokio::time::timeout(
                            Duration::from_secs(5),
                            pools.on(Some(thread), false).request(req),
                        )
                        .await
                        .expect("a request on another thread's connection never got out")
                        .unwrap();
                        assert_eq!(resp.status(), 200);
                        http_body_util::BodyExt::collect(resp.into_body())
                            .await
                            .unwrap();
                        // The connection goes back to its pool once the answer is read.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
                // Kept, undriven: its connections stay open and in their pool.
                rt
            })
            .join()
            .unwrap()
        };
        let one = send_two(1);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "thread 1 reused its connection"
        );
        let two = send_two(2);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "thread 2 opened its own rather than take thread 1's"
        );
        drop((one, two));
    }
}
