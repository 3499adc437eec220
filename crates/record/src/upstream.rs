//! The outbound side of record: a pooled HTTP/1.1 + HTTP/2 client that verifies
//! upstream certificates against the system/webpki roots plus every `--upstream-ca`.
//! Replay never builds one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

use super::body::ProxyBody;
use tapedeck_model::exchange::{ErrorKind, ExchangeError};

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
    h1: Client<Connector, ProxyBody>,
    any: Client<Connector, ProxyBody>,
    response_timeout: Duration,
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
        let client = |https: Connector| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .timer(hyper_util::rt::TokioTimer::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(https)
        };
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
            h1: client(h1),
            any: client(any),
            response_timeout,
        })
    }

    /// Sends a request and waits for the response head (bounded by the response timeout).
    /// `h2` says whether the client spoke HTTP/2 to the proxy; `target` names the request
    /// in error messages, which are stored: the redacted URL, never the real one (it may
    /// carry a key).
    pub async fn send(
        &self,
        req: Request<ProxyBody>,
        h2: bool,
        target: &str,
    ) -> Result<Response<Incoming>, ExchangeError> {
        let client = if h2 { &self.any } else { &self.h1 };
        match tokio::time::timeout(self.response_timeout, client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(target, &e)),
            Err(_) => Err(ExchangeError {
                kind: ErrorKind::Timeout,
                message: format!(
                    "{target}: no response within {}s",
                    self.response_timeout.as_secs()
                ),
            }),
        }
    }
}

/// Turns a client error into what failed, by walking its sources.
pub fn classify(target: &str, err: &(dyn std::error::Error + 'static)) -> ExchangeError {
    let mut kind = ErrorKind::Other;
    let mut detail = err.to_string();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
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
            if h.is_incomplete_message() || h.is_closed() {
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
        _ => "request failed",
    };
    ExchangeError {
        kind,
        message: format!("{target}: {what}: {detail}"),
    }
}
