//! The daemon's small control API, under `/_tapedeck/` on its listen address.
//!
//! sled lets one process open a store, so while a daemon runs, read commands ask it:
//! `GET /_tapedeck/health`, `GET /_tapedeck/sessions`, `GET /_tapedeck/sessions/{name}/tape`.
//! It hands out whole recordings, so [`admit`] lets a request in only when it is a GET,
//! carries the store's control token (a 0600 file the daemon writes into the store
//! directory at start, which only the store's owner can read), and names this daemon in
//! `Host` (an IP address or `localhost` with the listen port: a page that DNS-rebinds its
//! own name to 127.0.0.1 cannot pass). The proxy never routes a proxied or tunnelled
//! request here. A replay daemon answers only for the session it replays.

//! A record daemon also serves the web viewer under `/_tapedeck/ui/` (see [`Control::set_viewer`]).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::recording::Recording;
use tapedeck_proxy::body::{self, ProxyBody};
use tapedeck_store::Store;

/// The token file in the store directory.
pub const TOKEN_FILE: &str = "control.token";
/// The request header that carries the token.
pub use tapedeck_proxy::hop::CONTROL_TOKEN_HEADER as TOKEN_HEADER;

/// Makes a fresh token and writes it (0600) into the store directory.
pub fn create_token(store_dir: &Path) -> Result<String, tapedeck_model::secure_fs::WriteError> {
    let path = store_dir.join(TOKEN_FILE);
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| tapedeck_model::secure_fs::WriteError {
        path: path.clone(),
        source: std::io::Error::other(format!("no randomness for the control token: {e}")),
    })?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    tapedeck_model::secure_fs::write(
        &path,
        token.as_bytes(),
        tapedeck_model::secure_fs::PRIVATE_FILE,
    )?;
    Ok(token)
}

pub fn remove_token(store_dir: &Path) {
    let _ = std::fs::remove_file(store_dir.join(TOKEN_FILE));
}

fn token_path(store_dir: &Path) -> PathBuf {
    store_dir.join(TOKEN_FILE)
}

/// Lets a control request in, or says why not. `token` is `None` on a daemon that holds
/// no store (it has nothing to hand out); `listen` is the daemon's own address.
pub fn admit(
    token: Option<&str>,
    listen: SocketAddr,
    method: &Method,
    headers: &http::HeaderMap,
) -> Result<(), Box<Response<ProxyBody>>> {
    let refuse = |status, message: String| Err(Box::new(error(status, &message)));
    let Some(token) = token else {
        return refuse(
            StatusCode::FORBIDDEN,
            "this daemon holds no store, so it has no control API".into(),
        );
    };
    if method != Method::GET {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("the control API answers GET only, not {method}"),
        );
        resp.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
        return Err(Box::new(resp));
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !names_this_daemon(host, listen) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} does not name this daemon: the control API answers only to an IP address or localhost with port {}",
                listen.port()
            ),
        );
    }
    let given = headers
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // blake3 digests compare in constant time.
    if blake3::hash(given) != blake3::hash(token.as_bytes()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!(
                "the control API needs the store's control token ({TOKEN_FILE} in the store directory) in {TOKEN_HEADER}; tapedeck's read commands send it"
            ),
        );
    }
    Ok(())
}

/// Whether a `Host` value is an IP address or `localhost`, with the daemon's port.
fn names_this_daemon(host: &str, listen: SocketAddr) -> bool {
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    if authority.port_u16() != Some(listen.port()) {
        return false;
    }
    let name = authority.host();
    name.eq_ignore_ascii_case("localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
}

pub struct Control {
    store: Option<Arc<dyn Store>>,
    mode: &'static str,
    /// Extra state a mode reports under `/_tapedeck/health`.
    pub status: Option<Arc<dyn Fn() -> serde_json::Value + Send + Sync>>,
    /// The one session this daemon answers for (a replay daemon's), if it is limited.
    only: Option<String>,
    viewer: OnceLock<Arc<crate::viewer::Viewer>>,
    /// The store's token, once the daemon has written it; without it nothing gets in.
    token: OnceLock<String>,
}

impl Control {
    pub fn new(store: Option<Arc<dyn Store>>, mode: &'static str) -> Control {
        Control {
            store,
            mode,
            status: None,
            only: None,
            viewer: OnceLock::new(),
            token: OnceLock::new(),
        }
    }

    /// The token requests must carry (the daemon writes it into the store directory).
    pub fn set_token(&self, token: String) {
        let _ = self.token.set(token);
    }

    /// Answers for `session` alone: the rest of the store stays closed.
    pub fn serving_only(mut self, session: &str) -> Control {
        self.only = Some(session.to_string());
        self
    }

    fn other_session(&self, name: &str) -> Option<Response<ProxyBody>> {
        let only = self.only.as_deref()?;
        (only != name).then(|| {
            error(
                StatusCode::FORBIDDEN,
                &format!(
                    "this {} daemon serves session {only} only; stop it to read other sessions of the store",
                    self.mode
                ),
            )
        })
    }

    /// Serves `viewer` under `/_tapedeck/ui/`, behind the same access rule as the rest.
    pub fn set_viewer(&self, viewer: Arc<crate::viewer::Viewer>) {
        let _ = self.viewer.set(viewer);
    }

    /// Answers a request that [`admit`] let in.
    pub async fn serve(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let path = req.uri().path().to_string();
        let rest = path.trim_start_matches("/_tapedeck/");
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            ["health"] => {
                let mut v = json!({"pid": std::process::id(), "mode": self.mode, "version": env!("CARGO_PKG_VERSION")});
                if let Some(s) = &self.status {
                    v["status"] = s();
                }
                body::json(StatusCode::OK, &v)
            }
            ["sessions"] => match &self.store {
                Some(store) => match store.sessions() {
                    Ok(mut list) => {
                        if let Some(only) = &self.only {
                            list.retain(|s| &s.name == only);
                        }
                        body::json(
                            StatusCode::OK,
                            &serde_json::to_value(list).unwrap_or_default(),
                        )
                    }
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                },
                None => body::json(StatusCode::OK, &json!([])),
            },
            ["sessions", name, "tape"] => {
                if let Some(refusal) = self.other_session(name) {
                    return refusal;
                }
                let Some(store) = self.store.clone() else {
                    return error(StatusCode::NOT_FOUND, "this daemon has no store");
                };
                let name = name.to_string();
                let result = tokio::task::spawn_blocking(
                    move || -> Result<Vec<u8>, (StatusCode, String)> {
                        let rec = Recording::from_store(store, &name).map_err(|e| match e {
                            tapedeck_store::StoreError::NoSession(_) => {
                                (StatusCode::NOT_FOUND, e.to_string())
                            }
                            other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
                        })?;
                        let mut out = Vec::new();
                        rec.write_tape(&mut out, |_| {})
                            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?;
                        Ok(out)
                    },
                )
                .await;
                match result {
                    Ok(Ok(data)) => {
                        let mut resp = Response::new(body::full(data));
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/x-ndjson"),
                        );
                        resp
                    }
                    Ok(Err((status, msg))) => error(status, &msg),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            ["ui", ..] => match self.viewer.get() {
                Some(v) => v
                    .serve(req, "/_tapedeck/ui")
                    .await
                    .map(|b| b.map_err(|e| match e {}).boxed_unsync()),
                None => error(StatusCode::NOT_FOUND, "this daemon serves no viewer"),
            },
            _ => error(
                StatusCode::NOT_FOUND,
                &format!("no control endpoint {path}"),
            ),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    body::json(
        status,
        &json!({"error": {"type": "tapedeck_control", "message": message}}),
    )
}

/// `GET http://{listen}{path}` against the daemon holding the store in `store_dir`, with
/// the store's control token; returns status and body.
pub async fn get(store_dir: &Path, listen: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    let token_file = token_path(store_dir);
    let token = std::fs::read_to_string(&token_file).map_err(|e| {
        format!(
            "cannot read its control token {}: {e}",
            token_file.display()
        )
    })?;
    let stream = tokio::net::TcpStream::connect(listen)
        .await
        .map_err(|e| format!("cannot connect to {listen}: {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, listen)
        .header(TOKEN_HEADER, token.trim())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let data = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, data.to_vec()))
}

impl tapedeck_proxy::LocalApi for Control {
    fn serve(
        self: Arc<Self>,
        req: Request<Incoming>,
        listen: SocketAddr,
        peer: SocketAddr,
    ) -> tapedeck_proxy::BoxFuture<Response<ProxyBody>> {
        Box::pin(async move {
            if let Err(refusal) = admit(
                self.token.get().map(String::as_str),
                listen,
                req.method(),
                req.headers(),
            ) {
                tracing::warn!(
                    "refused a control request from {peer}: {} {} ({})",
                    req.method(),
                    req.uri().path(),
                    refusal.status()
                );
                return *refusal;
            }
            Control::serve(&self, req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, token: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::HOST, host.parse().unwrap());
        if let Some(t) = token {
            h.insert(TOKEN_HEADER, t.parse().unwrap());
        }
        h
    }

    fn status(r: Result<(), Box<Response<ProxyBody>>>) -> u16 {
        r.err().map(|r| r.status().as_u16()).unwrap_or(200)
    }

    #[test]
    fn only_a_get_with_the_token_and_this_daemons_host_is_admitted() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let ok = |host: &str| {
            status(admit(
                Some("t0k"),
                listen,
                &Method::GET,
                &headers(host, Some("t0k")),
            ))
        };
        assert_eq!(ok("127.0.0.1:8080"), 200);
        assert_eq!(ok("localhost:8080"), 200);
        assert_eq!(ok("[::1]:8080"), 200);
        assert_eq!(ok("0.0.0.0:8080"), 200);
        assert_eq!(ok("evil.example:8080"), 403, "DNS rebinding");
        assert_eq!(ok("127.0.0.1:9999"), 403);
        assert_eq!(ok("127.0.0.1"), 403);
        let h = headers("127.0.0.1:8080", Some("wrong"));
        assert_eq!(status(admit(Some("t0k"), listen, &Method::GET, &h)), 401);
        let h = headers("127.0.0.1:8080", None);
        assert_eq!(status(admit(Some("t0k"), listen, &Method::GET, &h)), 401);
        let h = headers("127.0.0.1:8080", Some("t0k"));
        assert_eq!(status(admit(Some("t0k"), listen, &Method::POST, &h)), 405);
        assert_eq!(status(admit(Some("t0k"), listen, &Method::DELETE, &h)), 405);
        assert_eq!(status(admit(None, listen, &Method::GET, &h)), 403);
    }

    #[test]
    fn the_token_file_is_private_and_fresh_each_start() {
        let dir = tempfile::tempdir().unwrap();
        let a = create_token(dir.path()).unwrap();
        assert_eq!(
            tapedeck_model::secure_fs::mode(&dir.path().join(TOKEN_FILE)),
            Some(0o600)
        );
        let b = create_token(dir.path()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap(),
            b
        );
        remove_token(dir.path());
        assert!(!dir.path().join(TOKEN_FILE).exists());
    }
}
