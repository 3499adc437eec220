//! The daemon's small control API, under `/_tapedeck/` on its listen address.
//!
//! sled lets one process open a store, so while a daemon runs, read commands ask it:
//! `GET /_tapedeck/health`, `GET /_tapedeck/sessions`, `GET /_tapedeck/sessions/{name}/tape`.
//! A record daemon also serves the web viewer under `/_tapedeck/ui/` (see [`Control::set_viewer`]).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::proxy::body::{self, ProxyBody};
use crate::recording::Recording;
use crate::store::Store;

pub struct Control {
    store: Option<Arc<dyn Store>>,
    mode: &'static str,
    /// Extra state a mode reports under `/_tapedeck/health`.
    pub status: Option<Arc<dyn Fn() -> serde_json::Value + Send + Sync>>,
    viewer: OnceLock<Arc<crate::viewer::Viewer>>,
}

impl Control {
    pub fn new(store: Option<Arc<dyn Store>>, mode: &'static str) -> Control {
        Control {
            store,
            mode,
            status: None,
            viewer: OnceLock::new(),
        }
    }

    /// Serves `viewer` under `/_tapedeck/ui/`, behind the same access rule as the rest.
    pub fn set_viewer(&self, viewer: Arc<crate::viewer::Viewer>) {
        let _ = self.viewer.set(viewer);
    }

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
                    Ok(list) => body::json(
                        StatusCode::OK,
                        &serde_json::to_value(list).unwrap_or_default(),
                    ),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                },
                None => body::json(StatusCode::OK, &json!([])),
            },
            ["sessions", name, "tape"] => {
                let Some(store) = self.store.clone() else {
                    return error(StatusCode::NOT_FOUND, "this daemon has no store");
                };
                let name = name.to_string();
                let result = tokio::task::spawn_blocking(
                    move || -> Result<Vec<u8>, (StatusCode, String)> {
                        let rec = Recording::from_store(store, &name).map_err(|e| match e {
                            crate::store::StoreError::NoSession(_) => {
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

/// `GET http://{listen}{path}` against a daemon; returns status and body.
pub async fn get(listen: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
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
