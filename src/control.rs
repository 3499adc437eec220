//! The daemon's small control API, under `/_tapedeck/` on its listen address.
//!
//! sled lets one process open a store, so while a daemon runs, read commands ask it:
//! `GET /_tapedeck/health`, `GET /_tapedeck/sessions`, `GET /_tapedeck/sessions/{name}/tape`.
//! The web viewer is served beside them, under `/_tapedeck/ui/` (see [`Control::set_viewer`]).
//! Both hand out whole recordings, so [`admit`] lets a request in only when it is a GET,
//! names this daemon in `Host` (an IP address or `localhost` with the listen port: a page
//! that DNS-rebinds its own name to 127.0.0.1 cannot pass), and carries the store's
//! control token: a 0600 file the daemon writes into the store directory at start, which
//! only the store's owner can read. Read commands send it in a header, and so does the
//! viewer's page: it comes in once through the [`viewer_link`], which carries the token in
//! its query, keeps the token in its origin's storage and takes it out of the address bar.
//! Storage is scoped to an origin, port included, where a cookie is sent to every port of
//! the host (another user's web server on 127.0.0.1 would have received it). The page and
//! its script and style files hold no data and are served without the token. The proxy
//! never routes a proxied or tunnelled request here. A replay daemon answers only for the
//! session it replays.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::recording::Recording;
use tapedeck_model::secure_fs::WriteError;
use tapedeck_proxy::body::{self, ProxyBody};
use tapedeck_store::Store;

/// The token file in the store directory.
pub const TOKEN_FILE: &str = "control.token";
/// The page beside it that sends a browser into the viewer (see [`write_opener`]).
pub const OPENER_FILE: &str = "viewer.html";
/// The request header that carries the token.
pub const TOKEN_HEADER: &str = "x-tapedeck-token";
/// Where the viewer is mounted, on a daemon and under `tapedeck ui` alike.
pub const VIEWER_PATH: &str = "/_tapedeck/ui/";

/// A fresh token: 32 random bytes, in hex.
pub fn new_token() -> Result<String, std::io::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| std::io::Error::other(format!("no randomness for the control token: {e}")))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// Makes a fresh token and writes it (0600) into the store directory, with the page that
/// sends a browser to the viewer at `listen` (0600 too: it holds the token).
pub fn create_token(store_dir: &Path, listen: SocketAddr) -> Result<String, WriteError> {
    let path = token_path(store_dir);
    let token = new_token().map_err(|source| WriteError {
        path: path.clone(),
        source,
    })?;
    tapedeck_model::secure_fs::write(
        &path,
        token.as_bytes(),
        tapedeck_model::secure_fs::PRIVATE_FILE,
    )?;
    write_opener(&store_dir.join(OPENER_FILE), &viewer_link(listen, &token))?;
    Ok(token)
}

/// Removes the token and the page that holds it.
pub fn remove_token(store_dir: &Path) {
    let _ = std::fs::remove_file(token_path(store_dir));
    let _ = std::fs::remove_file(store_dir.join(OPENER_FILE));
}

fn token_path(store_dir: &Path) -> PathBuf {
    store_dir.join(TOKEN_FILE)
}

/// Why asking the daemon that holds a store failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read its control token {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {listen}: {source}")]
    Connect {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] http::Error),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("its session list is not readable: {0}")]
    SessionList(#[source] serde_json::Error),
}

/// The token of the daemon that holds the store in `store_dir`.
pub fn read_token(store_dir: &Path) -> Result<String, ClientError> {
    let path = token_path(store_dir);
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_string())
        .map_err(|source| ClientError::Token { path, source })
}

/// The link that lets a browser into the viewer at `listen`: it carries the token once.
/// A wildcard listen address is reached through loopback.
pub fn viewer_link(listen: SocketAddr, token: &str) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    format!("http://{addr}{VIEWER_PATH}?token={token}")
}

/// Writes a page (0600) that sends a browser on to `link`. `--open` hands a browser this
/// file rather than the link: a process's arguments are readable by every user of the
/// machine, a 0600 file only by its owner.
pub fn write_opener(path: &Path, link: &str) -> Result<(), WriteError> {
    // The link is ours (an address and a hex token): nothing in it needs escaping.
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <meta http-equiv=\"refresh\" content=\"0; url={link}\">\
         <title>tapedeck viewer</title></head>\
         <body><p><a href=\"{link}\">Open the tapedeck viewer</a></p></body></html>\n"
    );
    tapedeck_model::secure_fs::write(
        path,
        page.as_bytes(),
        tapedeck_model::secure_fs::PRIVATE_FILE,
    )
}

/// The token in the viewer link's query, on the viewer's own path only (every other
/// request carries the header, so no other URL holds the token).
fn query_token(uri: &http::Uri) -> Option<&str> {
    if uri.path() != VIEWER_PATH {
        return None;
    }
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// Lets a control or viewer request in, or says why not. `token` is `None` on a daemon
/// that holds no store (it has nothing to hand out); `listen` is the daemon's own address.
/// The token is taken from the viewer link's query, else the header; the first one given
/// must be right. The viewer's page and its files (not its API) need none: they hold no
/// data, and the page asks the API with the token its link brought.
pub fn admit(
    token: Option<&str>,
    listen: SocketAddr,
    method: &Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<(), Box<Response<ProxyBody>>> {
    let refuse = |status, message: String| Err(Box::new(error(status, &message)));
    let Some(token) = token else {
        return refuse(
            StatusCode::FORBIDDEN,
            "this daemon holds no store, so it has no control API and no viewer".into(),
        );
    };
    if method != Method::GET {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("the control API and the viewer answer GET only, not {method}"),
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
                "Host {host:?} does not name this daemon: it answers only to an IP address or localhost with port {}",
                listen.port()
            ),
        );
    }
    let given =
        query_token(uri).or_else(|| headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()));
    if given.is_none() && is_viewer_file(uri.path()) {
        return Ok(());
    }
    let given = given.unwrap_or_default();
    // blake3 digests compare in constant time.
    if blake3::hash(given.as_bytes()) != blake3::hash(token.as_bytes()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            format!(
                "this needs the store's control token: a browser comes in through the link `tapedeck ui` prints \
                 (or {OPENER_FILE} in the store directory); read commands send {TOKEN_FILE} in {TOKEN_HEADER}"
            ),
        );
    }
    Ok(())
}

/// The viewer's page and the files it loads, by their exact paths: nothing else under
/// [`VIEWER_PATH`] is let in without the token (the viewer reads `ui//api/...` as its
/// API, so a rule that only kept `api/` out let the API through).
fn is_viewer_file(path: &str) -> bool {
    path.strip_prefix(VIEWER_PATH)
        .is_some_and(|rest| crate::viewer::assets::ASSETS.iter().any(|a| a.path == rest))
}

/// Headers for anything that may hold or follow a token: never cached, never sent on as
/// a Referer.
fn private(mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    let h = resp.headers_mut();
    h.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
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
            ["sessions"] => match self.store.clone() {
                // A scan of the store: on the blocking pool, as every store read here.
                Some(store) => match tokio::task::spawn_blocking(move || {
                    store.sessions().map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                {
                    Ok(mut list) => {
                        if let Some(only) = &self.only {
                            list.retain(|s| &s.name == only);
                        }
                        body::json(
                            StatusCode::OK,
                            &serde_json::to_value(list).unwrap_or_default(),
                        )
                    }
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
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
                    move || -> Result<(Vec<u8>, Vec<tapedeck_store::Damage>), (StatusCode, String)> {
                        let rec =
                            Recording::from_store_by_step(store, &name).map_err(|e| match e {
                                tapedeck_store::StoreError::NoSession(_) => {
                                    (StatusCode::NOT_FOUND, e.to_string())
                                }
                                other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
                            })?;
                        let mut out = Vec::new();
                        rec.write_tape(&mut out, None, |_| {})
                            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                        Ok((out, rec.damaged))
                    },
                )
                .await;
                match result {
                    Ok(Ok((data, damaged))) => {
                        let mut resp = Response::new(body::full(data));
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/x-ndjson"),
                        );
                        // A tape leaves out what is damaged: the reader is told what was.
                        if let Some(v) = damage_header(&damaged) {
                            resp.headers_mut().insert(DAMAGE_HEADER, v);
                        }
                        resp
                    }
                    Ok(Err((status, msg))) => error(status, &msg),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            ["ui", ..] => {
                let Some(v) = self.viewer.get() else {
                    return error(StatusCode::NOT_FOUND, "this daemon serves no viewer");
                };
                v.serve(req, VIEWER_PATH.trim_end_matches('/'))
                    .await
                    .map(|b| b.map_err(|e| match e {}).boxed_unsync())
            }
            _ => error(
                StatusCode::NOT_FOUND,
                &format!("no control endpoint {path}"),
            ),
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    private(body::json(
        status,
        &json!({"error": {"type": "tapedeck_control", "message": message}}),
    ))
}

/// `GET http://{listen}{path}` against the daemon holding the store in `store_dir`, with
/// the store's control token; returns status and body.
/// The header of a session's tape from a daemon that lists the session's damaged events
/// (left out of the tape): base64 of their JSON.
pub const DAMAGE_HEADER: &str = "x-tapedeck-damaged";

fn damage_header(damaged: &[tapedeck_store::Damage]) -> Option<http::HeaderValue> {
    use base64::Engine;
    if damaged.is_empty() {
        return None;
    }
    let json = serde_json::to_vec(damaged).ok()?;
    http::HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(json)).ok()
}

/// The damaged events a daemon's [`DAMAGE_HEADER`] lists (none when it is absent).
pub fn damage_of(headers: &http::HeaderMap) -> Vec<tapedeck_store::Damage> {
    use base64::Engine;
    headers
        .get(DAMAGE_HEADER)
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .ok()
        })
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default()
}

pub async fn get(
    store_dir: &Path,
    listen: &str,
    path: &str,
) -> Result<(u16, Vec<u8>), ClientError> {
    let (status, _, body) = get_with_headers(store_dir, listen, path).await?;
    Ok((status, body))
}

/// [`get`], with the response's headers.
pub async fn get_with_headers(
    store_dir: &Path,
    listen: &str,
    path: &str,
) -> Result<(u16, http::HeaderMap, Vec<u8>), ClientError> {
    let token = read_token(store_dir)?;
    let stream = tokio::net::TcpStream::connect(listen)
        .await
        .map_err(|source| ClientError::Connect {
            listen: listen.to_string(),
            source,
        })?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(http::header::HOST, listen)
        .header(TOKEN_HEADER, token)
        .body(Empty::<Bytes>::new())?;
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let data = resp.into_body().collect().await?.to_bytes();
    Ok((status, headers, data.to_vec()))
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
                req.uri(),
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

    fn sessions() -> http::Uri {
        "/_tapedeck/sessions".parse().unwrap()
    }

    #[test]
    fn only_a_get_with_the_token_and_this_daemons_host_is_admitted() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let uri = sessions();
        let ok = |host: &str| {
            status(admit(
                Some("t0k"),
                listen,
                &Method::GET,
                &uri,
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
        let check = |method: &Method, h: &http::HeaderMap| {
            status(admit(Some("t0k"), listen, method, &uri, h))
        };
        assert_eq!(
            check(&Method::GET, &headers("127.0.0.1:8080", Some("wrong"))),
            401
        );
        assert_eq!(check(&Method::GET, &headers("127.0.0.1:8080", None)), 401);
        let h = headers("127.0.0.1:8080", Some("t0k"));
        assert_eq!(check(&Method::POST, &h), 405);
        assert_eq!(check(&Method::DELETE, &h), 405);
        assert_eq!(check(&Method::HEAD, &h), 405);
        assert_eq!(status(admit(None, listen, &Method::GET, &uri, &h)), 403);
    }

    #[test]
    fn the_page_is_open_and_its_api_takes_the_token_in_a_header_only() {
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let check = |uri: &str, h: &http::HeaderMap| {
            status(admit(
                Some("t0k"),
                listen,
                &Method::GET,
                &uri.parse().unwrap(),
                h,
            ))
        };
        let bare = headers("127.0.0.1:8080", None);
        assert_eq!(check("/_tapedeck/ui/?token=t0k", &bare), 200);
        assert_eq!(check("/_tapedeck/ui/?x=1&token=t0k", &bare), 200);
        assert_eq!(
            check("/_tapedeck/ui/?token=nope", &bare),
            401,
            "a wrong link"
        );
        // The page and its files hold no data: no token needed.
        for file in [
            "/_tapedeck/ui/",
            "/_tapedeck/ui/app.js",
            "/_tapedeck/ui/style.css",
        ] {
            assert_eq!(check(file, &bare), 200, "{file}");
        }
        // Its API and the control API need it, in the header.
        for data in [
            "/_tapedeck/ui/api/sessions",
            "/_tapedeck/ui/api",
            "/_tapedeck/ui/api/live",
            "/_tapedeck/sessions",
            "/_tapedeck/",
        ] {
            assert_eq!(check(data, &bare), 401, "{data}");
            assert_eq!(check(data, &headers("127.0.0.1:8080", Some("t0k"))), 200);
            assert_eq!(check(data, &headers("127.0.0.1:8080", Some("no"))), 401);
        }
        // However the API's path is spelled.
        for api in [
            "/_tapedeck/ui//api/sessions",
            "/_tapedeck/ui///api/live",
            "/_tapedeck/ui/%61pi/sessions",
            "/_tapedeck/ui/./api/sessions",
            "/_tapedeck/ui/app.js/../api/sessions",
            "/_tapedeck/ui/nope",
        ] {
            assert_eq!(check(api, &bare), 401, "{api}");
        }
        // Only the viewer's page takes the token in its URL.
        assert_eq!(check("/_tapedeck/ui/api/sessions?token=t0k", &bare), 401);
        assert_eq!(check("/_tapedeck/sessions?token=t0k", &bare), 401);
        // A cookie is no way in (a cookie reaches every port of the host).
        let mut cookie = bare.clone();
        cookie.insert(http::header::COOKIE, "tapedeck-8080=t0k".parse().unwrap());
        assert_eq!(check("/_tapedeck/ui/api/sessions", &cookie), 401);
        // A wrong link is refused even with a good header: the token given first counts.
        let good = headers("127.0.0.1:8080", Some("t0k"));
        assert_eq!(check("/_tapedeck/ui/?token=nope", &good), 401);
        // DNS rebinding: refused even for the page.
        let rebound = headers("rebind.example:8080", Some("t0k"));
        assert_eq!(check("/_tapedeck/ui/api/sessions", &rebound), 403);
        assert_eq!(
            check("/_tapedeck/ui/", &headers("rebind.example:8080", None)),
            403
        );
    }

    #[test]
    fn the_link_goes_through_loopback() {
        let wild: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            viewer_link(wild, "ab12"),
            "http://127.0.0.1:8080/_tapedeck/ui/?token=ab12"
        );
        let v6: SocketAddr = "[::]:81".parse().unwrap();
        assert_eq!(
            viewer_link(v6, "ab12"),
            "http://[::1]:81/_tapedeck/ui/?token=ab12"
        );
    }

    #[test]
    fn the_token_and_its_page_are_private_and_fresh_each_start() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let a = create_token(dir.path(), listen).unwrap();
        for file in [TOKEN_FILE, OPENER_FILE] {
            assert_eq!(
                tapedeck_model::secure_fs::mode(&dir.path().join(file)),
                Some(0o600),
                "{file}"
            );
        }
        let b = create_token(dir.path(), listen).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(read_token(dir.path()).unwrap(), b);
        let page = std::fs::read_to_string(dir.path().join(OPENER_FILE)).unwrap();
        assert!(page.contains(&viewer_link(listen, &b)), "{page}");
        remove_token(dir.path());
        assert!(!dir.path().join(TOKEN_FILE).exists());
        assert!(!dir.path().join(OPENER_FILE).exists());
    }
}
