//! The body type every response leaving the proxy has, and small constructors.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use hyper::{Response, StatusCode};

use tapedeck_model::exchange::{ErrorKind, ExchangeError};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> ProxyBody {
    Full::new(data.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A JSON response built by tapedeck itself (errors, misses, the control API).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut data = serde_json::to_vec_pretty(value).unwrap_or_default();
    data.push(b'\n');
    let mut resp = Response::new(full(data));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn text(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(full(format!("{message}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Ends an HTTP/1 connection after this response: the rest of a request body that was
/// refused unread is still on the wire, so the connection cannot carry another request.
pub fn close_after(resp: &mut Response<ProxyBody>, version: http::Version) {
    if version < http::Version::HTTP_2 {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}

/// What tapedeck answers for an exchange that has no upstream response; replay rebuilds
/// the same answer from the recorded error. A body over `--max-body` gets 413 (which the
/// SDKs do not retry, so a bomb is not sent again), a request body the client cut short
/// 400, an upstream that did not answer in time 504, every other upstream failure 502.
pub fn error_response(err: &ExchangeError) -> Response<ProxyBody> {
    let (status, kind) = match err.kind {
        ErrorKind::ClientClosed => (StatusCode::BAD_REQUEST, "tapedeck_client_error"),
        ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "tapedeck_body_too_large"),
        ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "tapedeck_upstream_error"),
        _ => (StatusCode::BAD_GATEWAY, "tapedeck_upstream_error"),
    };
    let mut error = serde_json::json!({
        "type": kind,
        "code": err.kind.as_str(),
        "message": err.message,
    });
    if err.kind == ErrorKind::TooLarge {
        error["flag"] = "--max-body".into();
    }
    json(status, &serde_json::json!({ "error": error }))
}
