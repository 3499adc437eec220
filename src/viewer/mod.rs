//! The web viewer: a page that shows recorded sessions as runs, served from this binary.
//!
//! Debugging an agent is done by looking: walking back from a wrong answer to the step
//! that caused it, reading a long prompt as a conversation, laying a failing run beside a
//! good one. The viewer is a few hand-written files (HTML, CSS, vanilla JS) embedded in
//! the binary ([`assets`]) and a small JSON API over the library ([`api`]): the same span
//! tree as `show`, the same findings as `analyze`, the same alignment as `diff`, the same
//! groups as `cluster`. It needs no network, account or build step.
//!
//! [`Viewer::serve`] answers one GET under `/_tapedeck/ui/`, on a record or replay
//! daemon's control address and under `tapedeck ui` alike; a record daemon's exchanges
//! reach open pages live as server-sent events ([`live`]). Who may ask is the control
//! API's business ([`crate::control::admit`]: the store's token in a header (the page and its files need none), and
//! a `Host` that names the daemon), so the viewer never sees a request that has not
//! passed it. Bodies are attacker-controlled: the API hands them out as JSON strings, and
//! every response carries a Content-Security-Policy that forbids inline script, so the
//! page can only show them as text.

mod api;
pub mod assets;
pub mod links;
pub mod live;
mod source;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use thiserror::Error;

use crate::recording::RecordingError;
pub use source::Source;
use tapedeck_model::rules::Rules;
use tapedeck_store::StoreError;

/// The body of every viewer response: a whole buffer, or the live event stream.
pub type ViewerBody = UnsyncBoxBody<Bytes, Infallible>;

/// The policy every response carries: scripts and styles only from the viewer's own
/// files, no inline script, no framing, no form posts, requests only to itself.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

#[derive(Debug, Error)]
pub enum ViewerError {
    #[error("no session named {0:?} here")]
    NoSession(String),
    #[error("session {session} has no step {step}")]
    NoStep { session: String, step: u64 },
    #[error("only session {0} is shown here (a replay daemon shows the session it replays); stop it to view the rest of the store")]
    OtherSession(String),
    #[error("no API endpoint {0}")]
    NotFound(String),
    #[error("only GET is served here, not {0}")]
    Method(Method),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("reading session {session} failed: {message}")]
    Build { session: String, message: String },
}

impl ViewerError {
    fn status(&self) -> StatusCode {
        match self {
            ViewerError::NoSession(_) | ViewerError::NoStep { .. } | ViewerError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ViewerError::Store(StoreError::NoSession(_)) => StatusCode::NOT_FOUND,
            ViewerError::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            ViewerError::OtherSession(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Runs blocking work (store reads, parsing, diffing) off the async threads; `what`
/// names it in the error if the work panics.
async fn blocking<T: Send + 'static>(
    what: impl Into<String>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ViewerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ViewerError::Build {
            session: what.into(),
            message: e.to_string(),
        })
}

/// The viewer of one set of sessions (a store, a daemon's store, or tape files).
pub struct Viewer {
    sessions: Arc<source::Sessions>,
    hub: live::Hub,
    /// Which command serves it (`ui`, `record`); a record daemon's pages update live.
    mode: &'static str,
    /// What is being viewed, in the page's header.
    label: String,
}

impl Viewer {
    pub fn new(
        source: Source,
        rules: Arc<Rules>,
        mode: &'static str,
        label: String,
    ) -> Arc<Viewer> {
        Arc::new(Viewer {
            sessions: Arc::new(source::Sessions::new(source, rules)),
            hub: live::Hub::new(),
            mode,
            label,
        })
    }

    /// Tells open pages that `session` has a new exchange (called by the recorder).
    pub fn notify(&self, session: &str, event: &tapedeck_model::exchange::Event) {
        self.hub.publish(session, event);
    }

    /// Ends every live stream, so a stopping daemon is not held by open pages.
    pub fn close(&self) {
        self.hub.close();
    }

    /// Works out, in the background, what the Sessions page will ask for first.
    pub fn warm_up(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move { this.sessions.warm_up().await });
    }

    /// Answers one request under `mount` (`/_tapedeck/ui`, no trailing slash).
    pub async fn serve<B>(&self, req: Request<B>, mount: &str) -> Response<ViewerBody> {
        let path = req.uri().path();
        let Some(rest) = path.strip_prefix(mount) else {
            return secure(error_response(&ViewerError::NotFound(path.to_string())));
        };
        if rest.is_empty() {
            // Relative asset and API paths need the trailing slash.
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
            if let Ok(v) = HeaderValue::from_str(&format!("{mount}/")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            return secure(resp);
        }
        if req.method() != Method::GET {
            return secure(error_response(&ViewerError::Method(req.method().clone())));
        }
        let rest = rest.trim_start_matches('/');
        let resp = if let Some(api_path) = rest.strip_prefix("api/") {
            if api_path == "live" {
                live_response(self.hub.stream())
            } else {
                match api::answer(self, api_path).await {
                    Ok(data) => json_bytes(StatusCode::OK, data),
                    Err(e) => error_response(&e),
                }
            }
        } else {
            match assets::get(rest) {
                Some(a) => {
                    let mut resp = Response::new(full(Bytes::from_static(a.body.as_bytes())));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(a.content_type),
                    );
                    resp
                }
                None => error_response(&ViewerError::NotFound(path.to_string())),
            }
        };
        secure(resp)
    }
}

fn full(data: Bytes) -> ViewerBody {
    Full::new(data).boxed_unsync()
}

fn json_bytes(status: StatusCode, data: Bytes) -> Response<ViewerBody> {
    let mut resp = Response::new(full(data));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ViewerError) -> Response<ViewerBody> {
    let v = serde_json::json!({"error": {"type": "tapedeck_viewer", "message": e.to_string()}});
    json_bytes(e.status(), Bytes::from(v.to_string()))
}

fn live_response(body: ViewerBody) -> Response<ViewerBody> {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// The headers every viewer response carries.
fn secure(mut resp: Response<ViewerBody>) -> Response<ViewerBody> {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
