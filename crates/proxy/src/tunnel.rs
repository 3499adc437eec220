//! Inside a CONNECT tunnel: sniff the first bytes, terminate TLS with a leaf certificate
//! for the host, and serve HTTP/1.1 or HTTP/2 to the handler. Bytes that are neither
//! TLS nor HTTP are refused, never tunnelled out (replay's no-outbound promise).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::idle::Activity;
use super::{log_conn_error, ClientCtx, Handler, Proxy};

const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the CONNECT request said about its client, kept to name the client in a
/// handshake warning.
#[derive(Debug, Clone, Default)]
pub(super) struct ConnectSeen {
    pub user_agent: Option<String>,
    /// HTTP/1.0 with neither Host nor User-Agent: Python's http.client.
    pub bare_http10: bool,
}

impl ConnectSeen {
    pub fn of(req: &Request<Incoming>) -> ConnectSeen {
        let h = req.headers();
        ConnectSeen {
            user_agent: h
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            bare_http10: req.version() == http::Version::HTTP_10
                && !h.contains_key(http::header::HOST)
                && !h.contains_key(http::header::USER_AGENT),
        }
    }
}

pub(super) async fn intercept<H: Handler, IO>(
    proxy: Arc<Proxy<H>>,
    mut io: IO,
    host: String,
    port: u16,
    ctx: ClientCtx,
    seen: ConnectSeen,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut first = vec![0u8; 2048];
    let read = tokio::select! {
        r = tokio::time::timeout(FIRST_BYTES_TIMEOUT, io.read(&mut first)) => r,
        // Nothing started in this tunnel yet: a stop need not wait for it.
        _ = proxy.stopping() => return,
    };
    let n = match read {
        Ok(Ok(n)) if n > 0 => n,
        Ok(_) => return,
        Err(_) => {
            tracing::debug!(
                "tunnel to {host}:{port} from {} sent nothing; closed",
                ctx.peer
            );
            return;
        }
    };
    first.truncate(n);
    let io = Prefixed {
        prefix: first,
        pos: 0,
        inner: io,
    };
    if io.prefix[0] == 0x16 {
        serve_tls(proxy, io, host, port, ctx, seen).await;
    } else if looks_like_http(&io.prefix) {
        let authority = default_authority("http", &host, port);
        serve_http(proxy, io, "http", authority, ctx, false, None).await;
    } else {
        tracing::warn!(
            "refused {} bytes in the CONNECT tunnel to {host}:{port} from {}: neither TLS nor HTTP \
             (tapedeck does not tunnel unknown protocols; use {} {host} to let them through)",
            n,
            ctx.peer,
            proxy.handler.raw_tunnel_flag()
        );
    }
}

async fn serve_tls<H: Handler, IO>(
    proxy: Arc<Proxy<H>>,
    io: IO,
    host: String,
    port: u16,
    ctx: ClientCtx,
    seen: ConnectSeen,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut client = TlsClient {
        peer: ctx.peer,
        target: format!("{host}:{port}"),
        sni: None,
        seen,
        bundle: crate::trust::plain_path(proxy.ca.dir()),
    };
    let handshake = async {
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let start = acceptor.await?;
        client.sni = start.client_hello().server_name().map(str::to_string);
        let name = client.sni.clone().unwrap_or_else(|| host.clone());
        let cfg = proxy.ca.server_config(&name).map_err(io::Error::other)?;
        start.into_stream(cfg).await
    };
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await;
    let tls = match outcome {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            client.warn_failed(&e);
            return;
        }
        Err(_) => {
            tracing::warn!(
                "TLS handshake with {} for {host}:{port} timed out",
                ctx.peer
            );
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let authority = default_authority("https", &host, port);
    serve_http(proxy, tls, "https", authority, ctx, h2, Some(client)).await;
}

/// A TLS client of the proxy, with what is known of it for a warning that names the
/// variable that would make it trust tapedeck's CA.
struct TlsClient {
    peer: std::net::SocketAddr,
    target: String,
    sni: Option<String>,
    seen: ConnectSeen,
    bundle: std::path::PathBuf,
}

impl TlsClient {
    fn advice(&self) -> String {
        crate::trust::clients::advice(
            &crate::trust::clients::Seen {
                sni: self.sni.as_deref(),
                connect_user_agent: self.seen.user_agent.as_deref(),
                bare_http10_connect: self.seen.bare_http10,
            },
            &self.bundle.display().to_string(),
        )
    }

    fn warn_failed(&self, e: &io::Error) {
        crate::SEEN
            .tls_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(alert) = rejection_alert(e) {
            self.warn_rejected(e, alert);
        } else {
            tracing::warn!(
                "TLS handshake with {} for {} failed: {e}; if the client does not trust tapedeck's CA, {}",
                self.peer,
                self.target,
                self.advice()
            );
        }
    }

    fn warn_rejected(&self, e: &dyn std::error::Error, alert: &rustls::Error) {
        let host = self.target.rsplit_once(':').map_or("", |(h, _)| h);
        let leaf = self.sni.as_deref().unwrap_or(host);
        tracing::warn!(
            "the client at {} rejected tapedeck's certificate for {} ({e}); {}",
            self.peer,
            self.target,
            rejection_hint(alert, leaf, &self.advice())
        );
    }

    /// Some clients (git and curl over GnuTLS) check the certificate only after the
    /// handshake, then close before their first request.
    fn closed_before_a_request(&self, e: &hyper::Error) {
        crate::SEEN
            .tls_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            let alert = c
                .downcast_ref::<io::Error>()
                .and_then(rejection_alert)
                .or_else(|| {
                    c.downcast_ref::<rustls::Error>()
                        .filter(|r| is_rejection(r))
                });
            if let Some(alert) = alert {
                self.warn_rejected(c, alert);
                return;
            }
            cause = c.source();
        }
        tracing::warn!(
            "the client at {} closed its TLS connection for {} before sending a request ({e}); \
             if it does not trust tapedeck's CA, {}",
            self.peer,
            self.target,
            self.advice()
        );
    }
}

/// What to tell the user about a client that rejected the certificate with `alert`:
/// `unknown_ca` means it does not trust tapedeck's CA (`advice` says how to make it);
/// `bad_certificate` and `certificate_unknown` are also what a client that does trust the
/// CA sends when the certificate does not name the host it checks, so the names the leaf
/// for `leaf_host` carries are given too.
fn rejection_hint(alert: &rustls::Error, leaf_host: &str, advice: &str) -> String {
    use rustls::AlertDescription as A;
    match alert {
        rustls::Error::AlertReceived(A::BadCertificate | A::CertificateUnknown) => format!(
            "either it does not trust tapedeck's CA ({advice}), or it checked the certificate \
             against a name it does not carry: it names {} (a client that connects by one \
             name and checks another, or checks an address it resolved, sees this)",
            crate::ca::leaf_names(leaf_host).join(", ")
        ),
        _ => format!("it does not trust tapedeck's CA: {advice}"),
    }
}

/// The alert, when the client ended the TLS session saying it does not trust the
/// certificate it was shown.
fn rejection_alert(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .filter(|r| is_rejection(r))
}

fn is_rejection(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        e,
        rustls::Error::AlertReceived(
            A::UnknownCA
                | A::BadCertificate
                | A::CertificateUnknown
                | A::UnsupportedCertificate
                | A::CertificateExpired
                | A::DecryptError
                | A::AccessDenied
        )
    )
}

async fn serve_http<H: Handler, IO>(
    proxy: Arc<Proxy<H>>,
    io: IO,
    scheme: &'static str,
    authority: String,
    ctx: ClientCtx,
    h2: bool,
    tls_client: Option<TlsClient>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = ctx.peer;
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let activity = Activity::new();
    // The client's connection acknowledges early while this tunnel's request heads are
    // under way, no longer while the proxy connection's were.
    ctx.ack.heads_from(&activity);
    let tracker = activity.clone();
    let this = proxy.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = this.handler.clone();
        let ctx = ctx.clone();
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let busy = tracker.begin();
        let req = absolutize(req, scheme, &authority);
        // The Host header inside a tunnel may name any address, this daemon's included.
        let refusal = match (req.uri().host(), req.uri().port_u16()) {
            (Some(host), port) => {
                let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
                this.refuse_self(host, port, peer)
            }
            _ => None,
        };
        async move {
            let resp = match refusal {
                Some(r) => r,
                None => handler.handle(req, ctx).await,
            };
            if crate::fault::is_abort(&resp) {
                return Err(crate::fault::Aborted);
            }
            Ok(Activity::track(busy, resp))
        }
    });
    let idle_timeout = proxy.opts.idle_timeout;
    // On shutdown, finish the responses in progress, then close.
    let result = if h2 {
        let io = TokioIo::new(crate::coalesce::Coalesce::new(io));
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(256)
            // Rapid reset (CVE-2023-44487): a client that opens and cancels streams faster
            // than they are taken up is sent GOAWAY.
            .max_pending_accept_reset_streams(20)
            .max_header_list_size(proxy.opts.max_header_bytes as u32);
        let conn = b.serve_connection(io, svc);
        tokio::pin!(conn);
        // HTTP/2 has no request head timeout: an idle HTTP/2 client is normal.
        let watch = crate::shutdown::Watch {
            idle: activity.idle(idle_timeout),
            on_idle: Box::new(move || tracing::debug!("closing the idle tunnel from {peer}")),
            late: std::future::pending(),
            on_late: Box::new(|| {}),
        };
        crate::shutdown::serve_until_stopped(
            conn.as_mut(),
            |c| c.graceful_shutdown(),
            proxy.stopping(),
            watch,
        )
        .await
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        // The header timeout is the activity's (see `idle`), not hyper's.
        b.timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(proxy.opts.max_header_bytes.max(8192))
            .keep_alive(true);
        let io = TokioIo::new(crate::idle::HeadWatch::new(io, activity.clone()));
        // A WebSocket upgrade hands the connection over to the handler.
        let conn = b.serve_connection(io, svc).with_upgrades();
        tokio::pin!(conn);
        crate::shutdown::serve_until_stopped(
            conn.as_mut(),
            |c| c.graceful_shutdown(),
            proxy.stopping(),
            activity.watch(&proxy.opts, peer, "tunnel"),
        )
        .await
    };
    if let Err(e) = result {
        match tls_client {
            Some(c) if requests.load(std::sync::atomic::Ordering::Relaxed) == 0 => {
                c.closed_before_a_request(&e)
            }
            _ => log_conn_error(peer, "intercepted tunnel", &e),
        }
    }
}

fn default_authority(scheme: &str, host: &str, port: u16) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match (scheme, port) {
        ("https", 443) | ("http", 80) => host,
        _ => format!("{host}:{port}"),
    }
}

/// Origin-form requests inside a tunnel become absolute: scheme from the tunnel,
/// authority from the Host header (the client's intent), else the CONNECT target.
fn absolutize(mut req: Request<Incoming>, scheme: &str, fallback: &str) -> Request<Incoming> {
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        // HTTP/2: the pseudo-headers already gave an absolute URI; fix the scheme only.
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = scheme.parse().ok();
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        return req;
    }
    let authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            let default = if scheme == "https" { ":443" } else { ":80" };
            h.strip_suffix(default).unwrap_or(h).to_string()
        })
        .unwrap_or_else(|| fallback.to_string());
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if let Ok(uri) = format!("{scheme}://{authority}{pq}").parse() {
        *req.uri_mut() = uri;
    }
    req
}

fn looks_like_http(b: &[u8]) -> bool {
    let end = b.iter().position(|&c| c == b' ').unwrap_or(0);
    (3..=10).contains(&end) && b[..end].iter().all(|c| c.is_ascii_uppercase())
}

/// An IO that first yields bytes already read (the sniffed prefix).
struct Prefixed<IO> {
    prefix: Vec<u8>,
    pos: usize,
    inner: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_http_methods_only() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"OPTIONS * HTTP/1.1\r\n"));
        assert!(!looks_like_http(b"SSH-2.0-OpenSSH\r\n"));
        assert!(!looks_like_http(b"\x00\x01garbage"));
    }

    /// The hint tapedeck gives when a real rustls client, trusting its CA or not,
    /// connects to the leaf for `host` and checks it against `name`.
    async fn hint_for(trusts: bool, host: &str, name: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = crate::ca::Ca::load_or_create(dir.path()).unwrap();
        let (client_ok, server) = crate::ca::tests::real_handshake(&ca, host, name, trusts).await;
        assert!(!client_ok, "the client must refuse the certificate");
        let e = server.expect("the handshake failed");
        let alert = rejection_alert(&e).expect("the client said why, with an alert");
        rejection_hint(alert, host, "ADVICE")
    }

    #[tokio::test]
    async fn a_rejected_certificate_is_explained_by_what_the_client_said() {
        // A client that does not trust the CA says so: only the CA advice applies.
        let untrusted = hint_for(false, "api.test", "api.test").await;
        assert_eq!(untrusted, "it does not trust tapedeck's CA: ADVICE");
        // One that trusts it but checks another name says "bad certificate": the hint
        // names what the certificate carries.
        let mismatch = hint_for(true, "api.test", "other.test").await;
        assert!(mismatch.contains("it names api.test ("), "{mismatch}");
        assert!(mismatch.contains("ADVICE"), "{mismatch}");
        let loopback = hint_for(true, "127.0.0.1", "db.internal").await;
        assert!(
            loopback.contains("it names 127.0.0.1, localhost, ::1 ("),
            "{loopback}"
        );
    }
}
