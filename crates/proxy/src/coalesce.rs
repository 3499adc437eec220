//! Small writes of an HTTP/2 connection gathered into one send.
//!
//! The `h2` crate flushes its connection after every DATA frame of 256 bytes or more
//! (it keeps such a payload aside, to write it with the frame head in one vectored
//! write, and can take no other frame until that is written). A connection answering 32
//! streams of 1 KB each therefore made 32 sends, each a TLS record and a system call (on
//! loopback, a send also runs the receiver's TCP path and wakes it), where the answers
//! were all ready in one turn of the thread.
//!
//! [`Coalesce`] sits between h2 and the TLS stream. Small writes go into a buffer. A
//! flush with new bytes in the buffer is put off once: the connection's task is queued
//! again behind the tasks already ready on its thread (the other streams, whose answers
//! then join the buffer), and the next flush that finds nothing new sends it all. The
//! buffer never holds more than [`LIMIT`] bytes, and a large write (a large body's
//! frames) goes straight through once what is buffered before it has gone, so nothing is
//! copied twice nor reordered, and a stream that keeps producing cannot hold the bytes
//! back.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Past this many buffered bytes, they are sent before more are taken: one TLS record's
/// worth. With 64 KiB, a burst of 32 answers went out only once all 32 were ready, and
/// the client, which sends its next request as each answer comes, waited for the last:
/// replay served 41.8–45.7k HTTP/2 requests a second against 46.3–57.8k with 16 KiB
/// (three alternated triples with the build before, 44.4–50.1k), at the same CPU.
pub const LIMIT: usize = 16 * 1024;

/// A write this large (or larger) is not copied into the buffer.
const THROUGH: usize = 4 * 1024;

/// An I/O stream whose small writes are gathered (see the module's documentation).
pub struct Coalesce<IO> {
    io: IO,
    buf: Vec<u8>,
    /// How much of `buf` is already sent.
    sent: usize,
    /// The buffer's length when a flush was last put off (`None`: none is, or the
    /// buffer has been sent since).
    deferred_at: Option<usize>,
}

impl<IO> Coalesce<IO> {
    pub fn new(io: IO) -> Coalesce<IO> {
        Coalesce {
            io,
            buf: Vec::new(),
            sent: 0,
            deferred_at: None,
        }
    }
}

impl<IO: AsyncWrite + Unpin> Coalesce<IO> {
    /// Sends what is buffered, until all of it is gone.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n =
                std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        self.deferred_at = None;
        Poll::Ready(Ok(()))
    }

    /// Takes `total` bytes from `bufs`: into the buffer when they are few, else straight
    /// through once the buffer is empty.
    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        total: usize,
    ) -> Poll<io::Result<usize>> {
        if total >= THROUGH || self.buf.len() + total > LIMIT {
            std::task::ready!(self.poll_drain(cx))?;
            if total >= THROUGH {
                return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            self.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Coalesce<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Coalesce<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_take(cx, &[IoSlice::new(buf)], buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total = bufs.iter().map(|b| b.len()).sum();
        self.poll_take(cx, bufs, total)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let len = this.buf.len();
        if this.sent == 0 && len > 0 && this.deferred_at != Some(len) {
            // New bytes since the last look: the tasks ready on this thread go first.
            this.deferred_at = Some(len);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        std::task::ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Wake, Waker};

    /// The stream under the adapter: keeps every write it is given, one entry per call;
    /// takes at most `most` bytes a call, and says "not now" to every other call when
    /// `stall` is set (a full socket).
    #[derive(Clone, Default)]
    struct Sink {
        writes: Arc<Mutex<Vec<Vec<u8>>>>,
        flushes: Arc<AtomicUsize>,
        most: Option<usize>,
        stall: bool,
        calls: Arc<AtomicUsize>,
    }

    impl Sink {
        fn writes(&self) -> Vec<Vec<u8>> {
            self.writes.lock().unwrap().clone()
        }
        fn bytes(&self) -> Vec<u8> {
            self.writes().concat()
        }
    }

    impl AsyncWrite for Sink {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.stall && self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = self.most.map_or(buf.len(), |m| m.min(buf.len()));
            self.writes.lock().unwrap().push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.poll_write(cx, &all)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes.fetch_add(1, Ordering::Relaxed);
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A waker that counts its wakes.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn write(c: &mut Coalesce<Sink>, cx: &mut Context<'_>, b: &[u8]) {
        match Pin::new(c).poll_write(cx, b) {
            Poll::Ready(Ok(n)) => assert_eq!(n, b.len()),
            other => panic!("a small write is taken whole at once: {other:?}"),
        }
    }

    #[test]
    fn a_flush_waits_one_turn_and_sends_what_came_meanwhile_in_one_write() {
        let sink = Sink::default();
        let mut c = Coalesce::new(sink.clone());
        let (woken, w) = waker();
        let mut cx = Context::from_waker(&w);
        write(&mut c, &mut cx, b"one ");
        // The first look finds new bytes: it waits for the other ready tasks, and asks
        // to be polled again (else nothing would ever send them).
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_pending());
        assert_eq!(woken.0.load(Ordering::Relaxed), 1);
        assert!(sink.writes().is_empty(), "nothing sent yet");
        // Meanwhile other streams answered: more new bytes, another turn.
        write(&mut c, &mut cx, b"two ");
        write(&mut c, &mut cx, b"three");
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_pending());
        assert_eq!(woken.0.load(Ordering::Relaxed), 2);
        // Nothing new since: all of it goes, in one write, and the flush reaches the stream.
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_ready());
        assert_eq!(sink.writes(), vec![b"one two three".to_vec()]);
        assert_eq!(sink.flushes.load(Ordering::Relaxed), 1);
        // An empty buffer flushes at once.
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_ready());
        assert_eq!(sink.flushes.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_large_write_goes_straight_through_after_what_was_buffered_before_it() {
        let sink = Sink::default();
        let mut c = Coalesce::new(sink.clone());
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        write(&mut c, &mut cx, b"head");
        let big = vec![7u8; THROUGH];
        let n = match Pin::new(&mut c).poll_write_vectored(&mut cx, &[IoSlice::new(&big)]) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(n, THROUGH);
        assert_eq!(sink.writes(), vec![b"head".to_vec(), big.clone()]);
        assert!(c.buf.is_empty(), "the large write was not copied");
    }

    #[test]
    fn the_buffer_never_holds_more_than_its_limit() {
        let sink = Sink::default();
        let mut c = Coalesce::new(sink.clone());
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        let piece = [1u8; 1000];
        for _ in 0..200 {
            write(&mut c, &mut cx, &piece);
            assert!(c.buf.len() <= LIMIT);
        }
        assert!(sink.writes().len() >= 200_000 / LIMIT);
        assert!(sink.writes().iter().all(|w| w.len() <= LIMIT));
        while Pin::new(&mut c).poll_flush(&mut cx).is_pending() {}
        assert_eq!(sink.bytes().len(), 200_000);
    }

    #[test]
    fn a_stream_that_takes_a_little_at_a_time_gets_everything_in_order() {
        let sink = Sink {
            most: Some(7),
            stall: true,
            ..Sink::default()
        };
        let mut c = Coalesce::new(sink.clone());
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        let mut want = Vec::new();
        for i in 0..50u8 {
            let piece: Vec<u8> = (0..(i as usize % 13 + 1)).map(|k| i ^ k as u8).collect();
            want.extend_from_slice(&piece);
            // A write may have to wait for the buffer to drain (past the limit only):
            // small ones never do.
            write(&mut c, &mut cx, &piece);
            if i % 10 == 9 {
                let mut spins = 0;
                while Pin::new(&mut c).poll_flush(&mut cx).is_pending() {
                    spins += 1;
                    assert!(spins < 10_000, "the flush never ended");
                }
            }
        }
        let big = vec![9u8; THROUGH + 3];
        want.extend_from_slice(&big);
        let mut at = 0;
        while at < big.len() {
            if let Poll::Ready(r) = Pin::new(&mut c).poll_write(&mut cx, &big[at..]) {
                at += r.unwrap();
            }
        }
        while Pin::new(&mut c).poll_shutdown(&mut cx).is_pending() {}
        assert_eq!(sink.bytes(), want);
    }

    #[test]
    fn shutting_down_sends_what_is_buffered_first() {
        let sink = Sink::default();
        let mut c = Coalesce::new(sink.clone());
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        write(&mut c, &mut cx, b"last words");
        assert!(Pin::new(&mut c).poll_shutdown(&mut cx).is_ready());
        assert_eq!(sink.bytes(), b"last words");
    }

    /// A TCP stream that counts the writes that reached it.
    struct Counted {
        tcp: tokio::net::TcpStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.tcp).poll_write(cx, buf);
            if matches!(r, Poll::Ready(Ok(_))) {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            r
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
            if matches!(r, Poll::Ready(Ok(_))) {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            r
        }
        fn is_write_vectored(&self) -> bool {
            self.tcp.is_write_vectored()
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.tcp).poll_shutdown(cx)
        }
    }

    /// The writes an HTTP/2 server on one thread makes to answer `n` requests that a
    /// client sends together, each answered with 1 KB; the answers are checked.
    async fn writes_to_answer(n: usize, coalesce: bool) -> usize {
        use http_body_util::{BodyExt, Empty, Full};
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writes = Arc::new(AtomicUsize::new(0));
        let counted = writes.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let io = Counted {
                tcp,
                writes: counted,
            };
            let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| {
                let body = format!("{:<1024}", req.uri().path());
                async move {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        bytes::Bytes::from(body),
                    )))
                }
            });
            let b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            let _ = if coalesce {
                b.serve_connection(TokioIo::new(Coalesce::new(io)), svc)
                    .await
            } else {
                b.serve_connection(TokioIo::new(io), svc).await
            };
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        // Settle the handshake's own frames before counting.
        let mut s = send.clone();
        let r = s
            .send_request(
                hyper::Request::get(format!("http://{addr}/warm"))
                    .body(Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        r.into_body().collect().await.unwrap();
        let before = writes.load(Ordering::Relaxed);
        let asks = (0..n).map(|i| {
            let mut s = send.clone();
            async move {
                let req = hyper::Request::get(format!("http://{addr}/{i}"))
                    .body(Empty::<bytes::Bytes>::new())
                    .unwrap();
                let body = s
                    .send_request(req)
                    .await
                    .unwrap()
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes();
                assert_eq!(body.len(), 1024);
                assert_eq!(
                    std::str::from_utf8(&body).unwrap().trim_end(),
                    format!("/{i}")
                );
            }
        });
        let asks: Vec<_> = asks.map(tokio::spawn).collect();
        for a in asks {
            a.await.unwrap();
        }
        let made = writes.load(Ordering::Relaxed) - before;
        drop(send);
        server.abort();
        made
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_http2_server_answers_streams_sent_together_in_a_few_writes() {
        // Without the adapter, h2 sends each 1 KB answer on its own (a write per
        // stream); with it, the answers ready in one turn of the thread share writes.
        let plain = writes_to_answer(32, false).await;
        let gathered = writes_to_answer(32, true).await;
        assert!(plain >= 32, "h2 alone wrote {plain} times for 32 answers");
        assert!(
            gathered <= 8,
            "32 answers took {gathered} writes (h2 alone: {plain})"
        );
    }
}
