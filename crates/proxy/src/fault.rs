//! What an injected fault (`--inject`) does on the wire, for record and replay alike: a
//! connection dropped without an answer, a body cut after so many bytes, an answer made
//! up by the rule. Which exchange gets which fault is the model's business
//! (`tapedeck_model::exchange::inject`); this layer only knows how to do it to HTTP.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::Response;

use crate::body::{self, BoxError, ProxyBody};
use tapedeck_model::exchange::inject::Answer;

/// Marks a response that must not be sent: the proxy drops the connection instead (an
/// HTTP/2 stream is reset), as a server that died mid-request would.
#[derive(Clone, Copy, Debug)]
pub struct Abort;

/// The error the connection ends with when a handler answered [`abort`].
#[derive(Debug, thiserror::Error)]
#[error("tapedeck dropped the connection (an injected reset)")]
pub struct Aborted;

/// A response the proxy turns into a dropped connection.
pub fn abort() -> Response<ProxyBody> {
    let mut resp = Response::new(body::empty());
    resp.extensions_mut().insert(Abort);
    resp
}

/// Whether a handler asked for the connection to be dropped.
pub fn is_abort<B>(resp: &Response<B>) -> bool {
    resp.extensions().get::<Abort>().is_some()
}

/// The response of an injected `status:`/`body:` rule.
pub fn answer(a: &Answer) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(a.body.clone()));
    *resp.status_mut() =
        http::StatusCode::from_u16(a.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(a.content_type),
    );
    resp
}

/// A body that ends in an error once `left` bytes have gone through: the client sees its
/// stream reset mid-way (`cut:BYTES`).
///
/// The error comes [`CUT_GRACE`] after the last byte, not at once: HTTP/1.1 (hyper) closes
/// the connection on a body error without writing what it still holds, and HTTP/2 drops a
/// stream's queued frames when it resets it, so an immediate error reached the client
/// before the head and the bytes it was meant to get (seen with reqwest over both).
pub struct CutAfter<B> {
    inner: B,
    left: u64,
    cut: bool,
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long a cut body waits after its last byte before it fails: time for the
/// connection to send the head and that byte.
pub const CUT_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

impl<B> CutAfter<B> {
    pub fn new(inner: B, bytes: u64) -> CutAfter<B> {
        CutAfter {
            inner,
            left: bytes,
            cut: false,
            grace: None,
        }
    }
}

impl<B> Body for CutAfter<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.cut {
            return Poll::Ready(None);
        }
        if self.left == 0 {
            let grace = self
                .grace
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(CUT_GRACE)));
            if std::future::Future::poll(grace.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
            self.cut = true;
            return Poll::Ready(Some(Err(
                "tapedeck: an injected cut ended the body here".into()
            )));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    let n = data.len() as u64;
                    if n > self.left {
                        data.truncate(self.left as usize);
                    }
                    self.left = self.left.saturating_sub(n);
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                // The body ended before the cut: nothing to cut.
                self.cut = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.cut
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_cut_body_gives_its_first_bytes_then_an_error() {
        let mut b = CutAfter::new(body::full("hello world"), 5);
        let first = b.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"hello");
        assert!(b.frame().await.unwrap().is_err());
        assert!(b.frame().await.is_none());
        // A body shorter than the cut ends as it would have.
        let mut short = CutAfter::new(body::full("hi"), 5);
        assert_eq!(
            &short.frame().await.unwrap().unwrap().into_data().unwrap()[..],
            b"hi"
        );
        assert!(short.frame().await.is_none());
    }
}
