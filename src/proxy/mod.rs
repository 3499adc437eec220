//! The proxy pipeline: accept → (CONNECT → TLS) → HTTP → [`Handler`].
//!
//! This layer knows sockets, TLS and HTTP framing; it knows nothing of recording or
//! replaying. Each exchange is handed to a [`Handler`] (record or replay) together with
//! the session it belongs to. Clients speak HTTP/1.1 to the proxy itself (absolute-form
//! requests and CONNECT); inside an intercepted tunnel they may speak HTTP/1.1 or HTTP/2.

pub mod body;
pub mod hop;
mod tunnel;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::ca::Ca;
use crate::session::SessionName;
use crate::shutdown::Shutdown;
use body::ProxyBody;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Who an exchange belongs to.
#[derive(Clone, Debug)]
pub struct ClientCtx {
    pub session: SessionName,
    pub agent: Option<String>,
    pub peer: SocketAddr,
}

/// What the proxy asks of record or replay.
pub trait Handler: Send + Sync + 'static {
    /// Answers one exchange. `req` has an absolute URI.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        ctx: ClientCtx,
    ) -> BoxFuture<Response<ProxyBody>>;
    /// Whether CONNECTs to `host` are tunnelled as raw bytes, without interception.
    fn raw_tunnel(&self, host: &str) -> bool;
    /// Answers a request to the control API (`/_tapedeck/...`).
    fn control(self: Arc<Self>, req: Request<Incoming>) -> BoxFuture<Response<ProxyBody>>;
}

#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// `--session`: wins over the proxy-auth user name.
    pub session: Option<SessionName>,
    /// The name used when neither `--session` nor a user name is given.
    pub fallback_session: SessionName,
    /// How long a client may take to send request headers (slow-loris bound).
    pub header_timeout: Duration,
    /// Largest request head a client may send.
    pub max_header_bytes: usize,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            session: None,
            fallback_session: SessionName::generate(),
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
        }
    }
}

/// Open client connections (HTTP ones, not raw passthrough tunnels), so a stop can
/// wait until every response in progress has been written out.
pub type Connections = crate::shutdown::Tracker;

pub struct Proxy<H: Handler> {
    handler: Arc<H>,
    ca: Arc<Ca>,
    opts: ProxyOptions,
    pub connections: Arc<Connections>,
    shutdown: std::sync::OnceLock<Shutdown>,
}

impl<H: Handler> Proxy<H> {
    pub fn new(handler: Arc<H>, ca: Arc<Ca>, opts: ProxyOptions) -> Arc<Self> {
        Arc::new(Proxy {
            handler,
            ca,
            opts,
            connections: Arc::new(Connections::default()),
            shutdown: std::sync::OnceLock::new(),
        })
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
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let this = self.clone();
                        let guard = self.connections.enter();
                        tokio::spawn(async move {
                            this.serve_client(stream, peer).await;
                            drop(guard);
                        });
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

    async fn serve_client(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let this = self.clone();
        let svc = hyper::service::service_fn(move |req| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.on_request(req, peer).await) }
        });
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.opts.header_timeout)
            .max_buf_size(self.opts.max_header_bytes.max(8192))
            .keep_alive(true);
        let conn = b
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = self.stopping() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            log_conn_error(peer, "proxy connection", &e);
        }
    }

    async fn on_request(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        if req.method() == Method::CONNECT {
            return self.on_connect(req, peer).await;
        }
        if req.uri().scheme().is_some() && req.uri().authority().is_some() {
            let ctx = match self.client_ctx(req.headers(), peer) {
                Ok(c) => c,
                Err(resp) => return *resp,
            };
            return self.handler.clone().handle(req, ctx).await;
        }
        if req.uri().path().starts_with("/_tapedeck/") {
            return self.handler.clone().control(req).await;
        }
        body::text(
            StatusCode::BAD_REQUEST,
            "tapedeck is a proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port; \
             set HTTP_PROXY/HTTPS_PROXY to this address",
        )
    }

    /// Session and agent from `--session`, else the proxy-auth user name (`SESSION[:AGENT]`).
    fn client_ctx(
        &self,
        headers: &http::HeaderMap,
        peer: SocketAddr,
    ) -> Result<ClientCtx, Box<Response<ProxyBody>>> {
        let (user, pass) = proxy_auth(headers).unwrap_or_default();
        let session = match (&self.opts.session, user.is_empty()) {
            (Some(s), _) => s.clone(),
            (None, false) => SessionName::new(&user).map_err(|e| {
                tracing::warn!("refused a client at {peer}: {e}");
                Box::new(body::json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"error": {"type": "tapedeck_bad_session", "message": e.to_string()}}),
                ))
            })?,
            (None, true) => self.opts.fallback_session.clone(),
        };
        Ok(ClientCtx {
            session,
            agent: (!pass.is_empty()).then_some(pass),
            peer,
        })
    }

    async fn on_connect(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let Some(authority) = req.uri().authority().cloned() else {
            return body::text(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
        };
        let ctx = match self.client_ctx(req.headers(), peer) {
            Ok(c) => c,
            Err(resp) => return *resp,
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(443);
        if self.handler.raw_tunnel(&host) {
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
        });
        Response::new(body::empty())
    }
}

/// `Proxy-Authorization: Basic base64(user:pass)`.
fn proxy_auth(headers: &http::HeaderMap) -> Option<(String, String)> {
    let v = headers
        .get(http::header::PROXY_AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, cred) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cred.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':').unwrap_or((&text, ""));
    Some((
        crate::exchange::canonical::percent_decode(user),
        crate::exchange::canonical::percent_decode(pass),
    ))
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

    #[test]
    fn proxy_auth_gives_session_and_agent() {
        let mut h = http::HeaderMap::new();
        let cred = base64::engine::general_purpose::STANDARD.encode("incident-7:planner");
        h.insert(
            "proxy-authorization",
            format!("Basic {cred}").parse().unwrap(),
        );
        assert_eq!(
            proxy_auth(&h),
            Some(("incident-7".into(), "planner".into()))
        );
        let cred = base64::engine::general_purpose::STANDARD.encode("a%2Fb");
        h.insert(
            "proxy-authorization",
            format!("Basic {cred}").parse().unwrap(),
        );
        assert_eq!(proxy_auth(&h), Some(("a/b".into(), "".into())));
    }
}
