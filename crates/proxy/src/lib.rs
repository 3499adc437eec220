//! The proxy pipeline: accept → (CONNECT → TLS) → HTTP → [`Handler`].
//!
//! This layer knows sockets, TLS and HTTP framing; it knows nothing of recording or
//! replaying. Each exchange is handed to a [`Handler`] (record or replay) together with
//! the session it belongs to. Clients speak HTTP/1.1 to the proxy itself (absolute-form
//! requests and CONNECT); inside an intercepted tunnel they may speak HTTP/1.1 or HTTP/2.

#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod ca;
pub mod coalesce;
pub mod fault;
pub mod hop;
mod idle;
pub use idle::{Ack, AckWhileWaiting};
pub mod shards;
pub mod shutdown;
pub mod trust;
mod tunnel;
pub mod ws;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ca::Ca;
use crate::shutdown::Shutdown;
use auth::{Access, ProxyAuth, Refusal, SessionSecret};
use body::ProxyBody;
use idle::Activity;
use tapedeck_model::session::SessionName;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Who an exchange belongs to.
#[derive(Clone, Debug)]
pub struct ClientCtx {
    pub session: SessionName,
    pub agent: Option<String>,
    pub peer: SocketAddr,
    /// The client connection's place under `--max-connections`: an exchange that takes
    /// the connection over (a WebSocket) holds it until it ends.
    pub slot: Option<Slot>,
    /// What the handler keeps for this client connection between its exchanges.
    pub conn: ConnState,
    /// Acknowledges what the client's connection received: a handler waiting for more
    /// of a request body reads it through [`Ack::watch`].
    pub ack: Ack,
}

/// What a handler keeps for one client connection, from its first exchange to its last:
/// record keeps there the upstream connection it opened for it. Every exchange of a
/// connection sees the same one; a connection starts with its own, empty, and what is in
/// it is dropped when the connection's last exchange is.
#[derive(Clone, Default)]
pub struct ConnState(Arc<std::sync::Mutex<Option<Box<dyn std::any::Any + Send>>>>);

impl ConnState {
    /// Takes what is kept, leaving nothing.
    pub fn take(&self) -> Option<Box<dyn std::any::Any + Send>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Keeps `state`, dropping what was kept before.
    pub fn put(&self, state: Box<dyn std::any::Any + Send>) {
        let old = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(state);
        drop(old);
    }
}

impl std::fmt::Debug for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnState")
    }
}

/// What the proxy asks of record or replay.
pub trait Handler: Send + Sync + 'static {
    /// Answers one exchange. `req` has an absolute URI.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        ctx: ClientCtx,
    ) -> BoxFuture<Response<ProxyBody>>;
    /// Whether a CONNECT to `host:port` is tunnelled as raw bytes, without interception.
    fn raw_tunnel(&self, host: &str, port: u16) -> bool;
    /// The flag that makes [`Handler::raw_tunnel`] say yes for a host (named to the user
    /// when a tunnel carries neither TLS nor HTTP).
    fn raw_tunnel_flag(&self) -> &'static str {
        "--passthrough"
    }
}

/// The daemon's own endpoint under `/_tapedeck/` (its control API and viewer). The proxy
/// hands it direct requests only, never proxied or tunnelled ones; who may come in is
/// the endpoint's own rule (it knows the token).
pub trait LocalApi: Send + Sync + 'static {
    /// Answers a direct request to `/_tapedeck/...`; `listen` is this daemon's address.
    fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
        listen: SocketAddr,
        peer: SocketAddr,
    ) -> BoxFuture<Response<ProxyBody>>;
}

#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// `--session`: wins over the proxy-auth user name.
    pub session: Option<SessionName>,
    /// The name used when neither `--session` nor a user name is given.
    pub fallback_session: SessionName,
    /// `--proxy-auth`: the password every client must present.
    pub proxy_auth: Option<ProxyAuth>,
    /// `--session-secret`: naming a session needs that session's token.
    pub session_secret: Option<SessionSecret>,
    /// How long a client may take to send a request head from its first byte (slow-loris
    /// bound; a new connection's first head from the connection's start). The wait for
    /// the next request on a kept-alive connection is the idle timeout's.
    pub header_timeout: Duration,
    /// How long a connection (HTTP/1.1 or HTTP/2) may carry no exchange before it is closed.
    pub idle_timeout: Duration,
    /// Client connections open at once (tunnels included); more are answered 503.
    pub max_connections: usize,
    /// Largest request head a client may send.
    pub max_header_bytes: usize,
}

pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            session: None,
            fallback_session: SessionName::generate(),
            proxy_auth: None,
            session_secret: None,
            header_timeout: Duration::from_secs(30),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: 64 << 10,
        }
    }
}

/// Open client connections (HTTP ones, not raw passthrough tunnels), so a stop can
/// wait until every response in progress has been written out.
pub type Connections = crate::shutdown::Tracker;

/// A client connection's place under `--max-connections`; it moves into the tunnel
/// when the connection becomes one.
pub type Slot = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

/// What clients did in this process, for `record -- CMD` to say why nothing was
/// recorded: no client came (it ignored the proxy variables), or clients came and
/// refused tapedeck's certificate.
#[derive(Default)]
pub struct Seen {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// TLS connections that failed before their first request (the client refused the
    /// certificate, most often).
    pub tls_failed: AtomicU64,
}

pub static SEEN: Seen = Seen {
    connections: AtomicU64::new(0),
    tls_failed: AtomicU64::new(0),
};

pub struct Proxy<H: Handler> {
    handler: Arc<H>,
    ca: Arc<Ca>,
    opts: ProxyOptions,
    access: Access,
    pub connections: Arc<Connections>,
    shutdown: OnceLock<Shutdown>,
    /// The listen address, and every address of this machine when it is a wildcard.
    local: OnceLock<(SocketAddr, Vec<IpAddr>)>,
    /// What answers `/_tapedeck/` (none: the path is refused).
    local_api: OnceLock<Arc<dyn LocalApi>>,
    slots: Arc<Semaphore>,
    refused: AtomicU64,
    refusal_logged: Mutex<Option<tokio::time::Instant>>,
}

impl<H: Handler> Proxy<H> {
    pub fn new(handler: Arc<H>, ca: Arc<Ca>, opts: ProxyOptions) -> Arc<Self> {
        let access = Access {
            proxy_auth: opts.proxy_auth.clone(),
            session_secret: opts.session_secret.clone(),
            fixed: opts.session.clone(),
            fallback: opts.fallback_session.clone(),
        };
        Arc::new(Proxy {
            handler,
            ca,
            slots: Arc::new(Semaphore::new(opts.max_connections.max(1))),
            opts,
            access,
            connections: Arc::new(Connections::default()),
            shutdown: OnceLock::new(),
            local: OnceLock::new(),
            local_api: OnceLock::new(),
            refused: AtomicU64::new(0),
            refusal_logged: Mutex::new(None),
        })
    }

    /// Hands direct requests to `/_tapedeck/` to `api` (set once, before serving).
    pub fn set_local_api(&self, api: Arc<dyn LocalApi>) {
        let _ = self.local_api.set(api);
    }

    /// Resolves when shutdown fires (never, before `serve` started).
    async fn stopping(&self) {
        match self.shutdown.get() {
            Some(s) => s.wait().await,
            None => std::future::pending().await,
        }
    }

    /// Accepts connections until `shutdown` fires; then every connection finishes the
    /// response it is writing and closes (see [`Connections::drain`]).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: Shutdown) {
        let _ = self.shutdown.set(shutdown.clone());
        if let Ok(addr) = listener.local_addr() {
            let _ = self.local.set((addr, own_addresses(addr.ip())));
        }
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        SEEN.connections.fetch_add(1, Ordering::Relaxed);
                        match self.slots.clone().try_acquire_owned() {
                            Ok(permit) => {
                                let this = self.clone();
                                let guard = self.connections.enter();
                                let served = shards::Shards::serve_anywhere(stream, move |stream, seat| async move {
                                    this.serve_client(stream, seat, peer, permit).await;
                                    drop(guard);
                                });
                                if let Err(e) = served {
                                    tracing::warn!("could not serve a connection from {peer}: {e}");
                                }
                            }
                            Err(_) => self.refuse_over_cap(stream, peer),
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                _ = shutdown.wait() => break,
            }
        }
    }

    /// Answers 503 to a connection over `--max-connections` and closes it; one log line
    /// per second at most, however many are refused.
    fn refuse_over_cap(&self, mut stream: TcpStream, peer: SocketAddr) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = tokio::time::Instant::now();
        {
            let mut last = self
                .refusal_logged
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                *last = Some(now);
                tracing::warn!(
                    "refused a connection from {peer}: {} connections are open, the cap (--max-connections); {n} refused so far",
                    self.opts.max_connections
                );
            }
        }
        let text = format!(
            "tapedeck: too many connections ({} open, the --max-connections cap); try again later\n",
            self.opts.max_connections
        );
        tokio::spawn(async move {
            let head = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
                text.len()
            );
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(text.as_bytes()).await;
                let _ = stream.shutdown().await;
            })
            .await;
        });
    }

    async fn serve_client(
        self: Arc<Self>,
        stream: TcpStream,
        seat: shards::Seat,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) {
        let slot: Slot = Arc::new(Mutex::new(Some(permit)));
        let activity = Activity::new();
        let this = self.clone();
        let tracker = activity.clone();
        let (io, ack) = idle::HeadWatch::tcp(stream, seat, activity.clone());
        let svc = hyper::service::service_fn(move |req| {
            let this = this.clone();
            let slot = slot.clone();
            let ack = ack.clone();
            let busy = tracker.begin();
            async move {
                let resp = this.on_request(req, peer, slot, ack).await;
                if fault::is_abort(&resp) {
                    return Err(fault::Aborted);
                }
                Ok(Activity::track(busy, resp))
            }
        });
        let mut b = hyper::server::conn::http1::Builder::new();
        // The header timeout is the activity's (see `idle`), not hyper's.
        b.timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(self.opts.max_header_bytes.max(8192))
            .keep_alive(true);
        let conn = b.serve_connection(TokioIo::new(io), svc).with_upgrades();
        tokio::pin!(conn);
        let result = shutdown::serve_until_stopped(
            conn.as_mut(),
            |c| c.graceful_shutdown(),
            self.stopping(),
            activity.watch(&self.opts, peer, "proxy connection"),
        )
        .await;
        if let Err(e) = result {
            log_conn_error(peer, "proxy connection", &e);
        }
    }

    async fn on_request(
        self: Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        slot: Slot,
        ack: Ack,
    ) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return self.on_connect(req, peer, slot, ack).await;
        }
        if let (Some(authority), Some(scheme)) = (req.uri().authority(), req.uri().scheme_str()) {
            let default_port = if scheme == "https" { 443 } else { 80 };
            let (host, port) = match target(authority, Some(default_port)) {
                Ok(t) => t,
                Err(e) => return body::text(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            // An absolute-form request goes to the host its URL names, and says so: the
            // Host header it came with is replaced (RFC 9112, 3.2.2), so the upstream and
            // the recording see the same host.
            let named = authority.as_str().rsplit('@').next().unwrap_or_default();
            match http::HeaderValue::from_str(named) {
                Ok(v) => req.headers_mut().insert(http::header::HOST, v),
                Err(e) => return body::text(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let mut ctx = match self.client_ctx(req.headers(), peer) {
                Ok(c) => c,
                Err(resp) => return *resp,
            };
            ctx.slot = Some(slot);
            ctx.ack = ack;
            if let Some(refusal) = self.refuse_self(&host, port, peer) {
                return refusal;
            }
            return self.handler.clone().handle(req, ctx).await;
        }
        if req.uri().path().starts_with("/_tapedeck/") {
            let (Some((listen, _)), Some(api)) = (self.local.get(), self.local_api.get()) else {
                return body::text(
                    StatusCode::NOT_FOUND,
                    "this daemon holds no store, so it has no control API",
                );
            };
            return api.clone().serve(req, *listen, peer).await;
        }
        body::text(
            StatusCode::BAD_REQUEST,
            "tapedeck is a proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port; \
             set HTTP_PROXY/HTTPS_PROXY to this address",
        )
    }

    /// Session and agent of a client, or the 400/407 that refuses it (see [`auth`]).
    fn client_ctx(
        &self,
        headers: &http::HeaderMap,
        peer: SocketAddr,
    ) -> Result<ClientCtx, Box<Response<ProxyBody>>> {
        match self.access.admit(headers) {
            Ok(id) => Ok(ClientCtx {
                session: id.session,
                agent: id.agent,
                peer,
                slot: None,
                conn: ConnState::default(),
                ack: Ack::default(),
            }),
            Err(Refusal::BadSession(e)) => {
                tracing::warn!("refused a client at {peer}: {e}");
                Err(Box::new(body::json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"error": {"type": "tapedeck_bad_session", "message": e.to_string()}}),
                )))
            }
            Err(Refusal::Credentials(message)) => {
                tracing::warn!("refused a client at {peer}: {message}");
                let mut resp = body::json(
                    StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    &serde_json::json!({"error": {"type": "tapedeck_proxy_auth", "message": message}}),
                );
                resp.headers_mut().insert(
                    http::header::PROXY_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"tapedeck\""),
                );
                Err(Box::new(resp))
            }
        }
    }

    /// Whether `host:port` is this daemon itself: by name (`localhost`), loopback or
    /// wildcard address, the listen address, or (listening on a wildcard) any address of
    /// this machine.
    fn is_self(&self, host: &str, port: u16) -> bool {
        let Some((me, own)) = self.local.get() else {
            return false;
        };
        if port != me.port() {
            return false;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let on_loopback = me.ip().is_loopback() || me.ip().is_unspecified();
        if host == "localhost" || host.ends_with(".localhost") {
            return on_loopback;
        }
        let Ok(ip) = host.parse::<IpAddr>() else {
            return false;
        };
        let ip = ip.to_canonical();
        ip.is_unspecified()
            || (ip.is_loopback() && on_loopback)
            || ip == me.ip()
            || own.contains(&ip)
    }

    /// The refusal of a proxied or tunnelled request aimed at this daemon: a proxy does
    /// not forward to itself, and its control API is reachable only directly.
    fn refuse_self(&self, host: &str, port: u16, peer: SocketAddr) -> Option<Response<ProxyBody>> {
        if !self.is_self(host, port) {
            return None;
        }
        tracing::warn!(
            "refused a request from {peer} through the proxy to tapedeck's own address {host}:{port}"
        );
        Some(body::json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({"error": {"type": "tapedeck_loop", "message": format!(
                "{host}:{port} is this tapedeck: it does not proxy to itself, and its control API answers only direct requests, never proxied ones"
            )}}),
        ))
    }

    async fn on_connect(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        slot: Slot,
        ack: Ack,
    ) -> Response<ProxyBody> {
        let target = match req.uri().authority() {
            Some(a) => target(a, None),
            None => Err(TargetError::NoAuthority),
        };
        let (host, port) = match target {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("refused a CONNECT from {peer}: {e}");
                return body::text(StatusCode::BAD_REQUEST, &e.to_string());
            }
        };
        let mut ctx = match self.client_ctx(req.headers(), peer) {
            Ok(c) => c,
            Err(resp) => return *resp,
        };
        ctx.ack = ack;
        if let Some(refusal) = self.refuse_self(&host, port, peer) {
            return refusal;
        }
        // The tunnel outlives this connection's HTTP part and keeps its place under the cap
        // (and a WebSocket inside it, the tunnel).
        let permit = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        let permit: Slot = Arc::new(Mutex::new(permit));
        ctx.slot = Some(permit.clone());
        if self.handler.raw_tunnel(&host, port) {
            let upstream = match TcpStream::connect((host.as_str(), port)).await {
                Ok(s) => s,
                Err(e) => {
                    return body::text(
                        StatusCode::BAD_GATEWAY,
                        &format!("passthrough to {host}:{port} failed: {e}"),
                    )
                }
            };
            tokio::spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(up) => {
                        let mut client = TokioIo::new(up);
                        let mut upstream = upstream;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Err(e) => tracing::debug!("passthrough upgrade failed: {e}"),
                }
                drop(permit);
            });
            return Response::new(body::empty());
        }
        let this = self.clone();
        let guard = self.connections.enter();
        let seen = tunnel::ConnectSeen::of(&req);
        tokio::spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(up) => tunnel::intercept(this, TokioIo::new(up), host, port, ctx, seen).await,
                Err(e) => tracing::debug!("CONNECT upgrade from {peer} failed: {e}"),
            }
            drop(guard);
            drop(permit);
        });
        Response::new(body::empty())
    }
}

/// A request target the proxy cannot forward to.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum TargetError {
    #[error("CONNECT needs host:port")]
    NoAuthority,
    #[error("the target {0:?} names no host")]
    NoHost(String),
    #[error("the target {target:?} has port {port:?}; a port is 1 to 65535")]
    BadPort { target: String, port: String },
    #[error("CONNECT needs host:port, not {0:?}")]
    NoPort(String),
}

/// Host and port of a request target. A CONNECT target (`default_port` `None`) must
/// name both; an absolute URI may leave the port to its scheme. Ports are 1..65535.
fn target(
    authority: &http::uri::Authority,
    default_port: Option<u16>,
) -> Result<(String, u16), TargetError> {
    let text = authority.as_str();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(TargetError::NoHost(text.to_string()));
    }
    let port_text = match text.rfind(':') {
        Some(i) if !text[i..].contains(']') => Some(&text[i + 1..]),
        _ => None,
    };
    let port = match (port_text, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(TargetError::BadPort {
                    target: text.to_string(),
                    port: p.to_string(),
                })
            }
        },
        (None, Some(d)) => d,
        (None, None) => return Err(TargetError::NoPort(text.to_string())),
    };
    Ok((host.to_string(), port))
}

/// This machine's addresses, when listening on a wildcard (which reaches all of them).
fn own_addresses(ip: IpAddr) -> Vec<IpAddr> {
    if !ip.is_unspecified() {
        return Vec::new();
    }
    match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs
            .filter_map(|a| a.address)
            .filter_map(|a| {
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect(),
        Err(e) => {
            tracing::warn!("cannot list this machine's addresses ({e}); requests to them are not recognised as requests to tapedeck itself");
            Vec::new()
        }
    }
}

/// One line per broken connection, at a level that matches how unusual it is.
fn log_conn_error(peer: SocketAddr, what: &str, e: &hyper::Error) {
    if e.is_parse() || e.is_parse_too_large() {
        tracing::warn!("malformed request from {peer} on {what}: {e}; answered 400/431 and closed");
    } else if e.is_timeout() {
        tracing::warn!("{peer} sent no complete request head in time on {what}; closed");
    } else {
        tracing::debug!("{what} with {peer} ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &'static str, default: Option<u16>) -> Result<(String, u16), TargetError> {
        target(&http::uri::Authority::from_static(s), default)
    }

    #[test]
    fn connect_targets_need_a_host_and_a_port_from_1_to_65535() {
        assert_eq!(t("api.test:443", None), Ok(("api.test".into(), 443)));
        assert_eq!(t("[::1]:8443", None), Ok(("::1".into(), 8443)));
        assert_eq!(t("api.test", Some(80)), Ok(("api.test".into(), 80)));
        assert!(t("api.test", None).is_err());
        assert!(t("host:99999", None).is_err());
        assert!(t("host:0", None).is_err());
        assert!(t("[::1]", None).is_err());
    }
}
