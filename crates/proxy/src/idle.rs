//! Idle connections and slow request heads: a connection that carries no exchange for
//! a while is closed, and so is one whose request head does not arrive in time.
//!
//! HTTP/2 keeps a connection open as long as the client answers PINGs, and an HTTP/1.1
//! keep-alive connection waits for its next request; both hold a socket and memory for
//! as long as the client likes. An [`Activity`] counts the exchanges in progress on one
//! connection (from the request head until the response body is done) and
//! [`Activity::idle`] resolves once none has been in progress for the idle timeout.
//!
//! The two timeouts are apart: between exchanges an HTTP/1.1 connection waits for the
//! idle timeout (an agent may think for a minute between two LLM calls), and once a
//! request head's first byte has come, the whole head must come within the header
//! timeout ([`Activity::head_late`]; slowloris). hyper's own header read timeout runs
//! from the moment it waits for a head, idle time included, so it is turned off and the
//! connection's reads ([`HeadWatch`]) start this clock instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::body::ProxyBody;

pub struct Activity {
    active: AtomicUsize,
    last: Mutex<Instant>,
    ended: Notify,
    /// When the request head being read began, in nanoseconds after `born`, plus one;
    /// 0 while none is: an exchange is in progress, or the connection waits between two.
    /// A new connection's first head counts from the connection's start.
    head_since: AtomicU64,
    born: Instant,
}

/// One exchange in progress; dropping it ends it.
pub struct Busy(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        let now = Instant::now();
        Arc::new(Activity {
            active: AtomicUsize::new(0),
            last: Mutex::new(now),
            ended: Notify::new(),
            head_since: AtomicU64::new(1),
            born: now,
        })
    }

    /// An exchange begins: its request head has come whole.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(0, Ordering::Release);
        Busy(self.clone())
    }

    /// The connection read bytes: with no exchange in progress they start a request head,
    /// whose clock starts now (if it has not already).
    fn bytes_read(&self) {
        if self.active.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Acquire) == 0
        {
            let since = self.born.elapsed().as_nanos() as u64 + 1;
            let _ = self
                .head_since
                .compare_exchange(0, since, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// When the request head being read began, if one is.
    fn head_began(&self) -> Option<Instant> {
        match self.head_since.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.born + Duration::from_nanos(n - 1)),
        }
    }

    /// Resolves once a request head has been arriving for `limit` without coming whole
    /// (or a new connection has sent none for that long).
    ///
    /// It must be polled in the task that drives the connection, after the connection
    /// itself on every poll (a `biased` select with the connection first): it registers
    /// no wake-up for a head's start, which only the connection's own reads make, and
    /// those wake that task.
    pub fn head_late(self: &Arc<Self>, limit: Duration) -> HeadLate {
        HeadLate {
            activity: self.clone(),
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            armed: None,
        }
    }

    /// Resolves once no exchange has been in progress for `limit`.
    pub async fn idle(&self, limit: Duration) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.active.load(Ordering::Acquire) > 0 {
                ended.await;
                continue;
            }
            let since = *self.last.lock().unwrap_or_else(|p| p.into_inner());
            let deadline = since + limit;
            if Instant::now() >= deadline {
                return;
            }
            // An exchange that begins meanwhile is seen when the sleep ends.
            tokio::time::sleep_until(deadline).await;
        }
    }

    /// The response of an exchange, which stays in progress until its body is done
    /// (the body owns `busy`, and drops it with itself).
    pub fn track(busy: Busy, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        resp.map(|inner| {
            inner
                .map_frame(move |frame| {
                    let _ = &busy;
                    frame
                })
                .boxed_unsync()
        })
    }
}

impl Activity {
    /// How an HTTP/1.1 connection (`what`, from `peer`) is watched: closed after the idle
    /// timeout between exchanges, and at once when a request head takes longer than the
    /// header timeout.
    pub(crate) fn watch(
        self: &Arc<Self>,
        opts: &crate::ProxyOptions,
        peer: std::net::SocketAddr,
        what: &'static str,
    ) -> crate::shutdown::Watch<impl Future<Output = ()> + use<>, HeadLate> {
        let this = self.clone();
        let idle_timeout = opts.idle_timeout;
        crate::shutdown::Watch {
            idle: async move { this.idle(idle_timeout).await },
            on_idle: Box::new(move || tracing::debug!("closing the idle {what} from {peer}")),
            late: self.head_late(opts.header_timeout),
            on_late: Box::new(move || {
                tracing::warn!("{peer} sent no complete request head in time on {what}; closed")
            }),
        }
    }
}

/// See [`Activity::head_late`].
pub struct HeadLate {
    activity: Arc<Activity>,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// The deadline the sleep is set to.
    armed: Option<Instant>,
}

impl Future for HeadLate {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(began) = self.activity.head_began() else {
            self.armed = None;
            return Poll::Pending;
        };
        let due = began + self.limit;
        if self.armed != Some(due) {
            self.sleep.as_mut().reset(due);
            self.armed = Some(due);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// A connection's I/O, whose reads start its [`Activity`]'s request head clock.
pub struct HeadWatch<T> {
    io: T,
    activity: Arc<Activity>,
    /// Acknowledges what was read at once while a request head is under way, when `io`
    /// is a client's TCP connection; see [`HeadWatch::tcp`].
    ack: Option<Ack>,
    /// Bytes were read since the last wait.
    read_since_wait: bool,
}

impl<T> HeadWatch<T> {
    pub fn new(io: T, activity: Arc<Activity>) -> HeadWatch<T> {
        HeadWatch {
            io,
            activity,
            ack: None,
            read_since_wait: false,
        }
    }
}

impl HeadWatch<ClientTcp> {
    /// A client's TCP connection, and the [`Ack`] that acknowledges what it received.
    /// Its reads are acknowledged at once whenever the proxy waits for more of a request
    /// head; the layers above call [`Ack::now`] when they wait for more of a request
    /// body ([`Ack::watch`]).
    /// The connection's [`Seat`](crate::shards::Seat) on its serving thread goes with
    /// the socket, wherever the socket goes (a tunnel, an upgraded WebSocket).
    pub fn tcp(
        io: tokio::net::TcpStream,
        seat: crate::shards::Seat,
        activity: Arc<Activity>,
    ) -> (Self, Ack) {
        let io = ClientTcp {
            stream: Arc::new(Mutex::new(io)),
            _seat: seat,
        };
        let ack = Ack(Some(Arc::new(AckInner {
            socket: Socket::Client(Arc::downgrade(&io.stream)),
            heads: OnceLock::new(),
        })));
        let mut w = HeadWatch::new(io, activity);
        w.ack = Some(ack.clone());
        (w, ack)
    }
}

/// A client's TCP connection, shared with its [`Ack`] (which holds it weakly: the
/// connection closes when the proxy lets it go, whoever holds an `Ack`), and its place
/// on its serving thread, given up with the socket.
pub struct ClientTcp {
    stream: Arc<Mutex<tokio::net::TcpStream>>,
    _seat: crate::shards::Seat,
}

impl ClientTcp {
    fn stream(&self) -> std::sync::MutexGuard<'_, tokio::net::TcpStream> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AsyncRead for ClientTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.stream()).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.stream()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.stream()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.stream()).poll_shutdown(cx)
    }
}

/// Acknowledges at once what a client's TCP connection has received (`TCP_QUICKACK`),
/// when the proxy waits for more of a request.
///
/// A client with Nagle's algorithm on (Python's `requests` through a proxy writes a
/// request's head, then its body) holds the body until the head is acknowledged, and
/// Linux delays that acknowledgement up to 40 ms while the proxy, waiting for the body,
/// has nothing to send: 44 ms per POST against 1.6 direct. When the request has come
/// whole there is nothing to acknowledge early: the answer carries the acknowledgement,
/// and one sent apart is a packet more each way (4-6 µs of the proxy's CPU per exchange).
/// So a connection's reads are acknowledged while a request head is under way on it
/// (its [`HeadWatch`]), and a request body's ([`Ack::watch`]) whenever the handler waits
/// for more of it. An `Ack` of no TCP connection (an in-process caller's) does nothing.
///
/// The same holds the other way: an upstream with Nagle's algorithm on (Python's
/// `http.server` writes an answer's head, then its body) holds the body until the head
/// is acknowledged, and an upstream connection the proxy keeps between exchanges is
/// past the quick acknowledgements of a new one: 44 ms per call against 1.2 ms for a
/// client that opens a connection per call directly. So record reads an answer's body
/// through [`Ack::watch`] with its upstream connection's [`Ack::socket`].
#[derive(Clone, Default)]
pub struct Ack(Option<Arc<AckInner>>);

enum Socket {
    /// A client connection's, shared with its reads.
    Client(std::sync::Weak<Mutex<tokio::net::TcpStream>>),
    /// Another descriptor of a connection's socket (an upstream connection's), until
    /// [`Ack::release`]: held longer, it would keep the socket open after its
    /// connection dropped its own.
    Fd(Mutex<Option<std::os::fd::OwnedFd>>),
}

struct AckInner {
    socket: Socket,
    /// The activity whose request heads the connection carries, once it is a tunnel's
    /// (until then, the proxy connection's own).
    heads: OnceLock<Arc<Activity>>,
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Ack(tcp)"
        } else {
            "Ack(none)"
        })
    }
}

impl Ack {
    /// Acknowledges what the connection has received and not yet acknowledged (nothing
    /// is sent when all of it is).
    pub fn now(&self) {
        let Some(inner) = self.0.as_ref() else {
            return;
        };
        match &inner.socket {
            Socket::Client(socket) => {
                let Some(socket) = socket.upgrade() else {
                    return;
                };
                let s = socket.lock().unwrap_or_else(|p| p.into_inner());
                let _ = socket2::SockRef::from(&*s).set_tcp_quickack(true);
            }
            Socket::Fd(fd) => {
                if let Some(fd) = fd.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    let _ = socket2::SockRef::from(fd).set_tcp_quickack(true);
                }
            }
        }
    }

    /// Acknowledges what the TCP connection of `socket` received: `socket` is a second
    /// descriptor of it (`try_clone_to_owned`), closed by [`Ack::release`] (at the latest
    /// with the `Ack`'s last clone).
    pub fn socket(socket: std::os::fd::OwnedFd) -> Ack {
        Ack(Some(Arc::new(AckInner {
            socket: Socket::Fd(Mutex::new(Some(socket))),
            heads: OnceLock::new(),
        })))
    }

    /// Closes the descriptor an [`Ack::socket`] holds, for every clone: its connection
    /// has ended, and the socket closes with the connection's own descriptor. Later
    /// acknowledgements do nothing.
    pub fn release(&self) {
        if let Some(AckInner {
            socket: Socket::Fd(fd),
            ..
        }) = self.0.as_deref()
        {
            drop(fd.lock().unwrap_or_else(|p| p.into_inner()).take());
        }
    }

    /// `body`, whose waits for more acknowledge what the connection received.
    pub fn watch<B>(&self, body: B) -> AckWhileWaiting<B> {
        AckWhileWaiting {
            inner: body,
            ack: self.clone(),
        }
    }

    /// The connection now carries a tunnel, whose request heads `activity` follows.
    pub(crate) fn heads_from(&self, activity: &Arc<Activity>) {
        if let Some(i) = &self.0 {
            let _ = i.heads.set(activity.clone());
        }
    }

    /// Whether a request head is under way on the connection (`own`: the proxy
    /// connection's activity, followed until the connection is a tunnel).
    fn head_under_way(&self, own: &Activity) -> bool {
        match self.0.as_ref().and_then(|i| i.heads.get()) {
            Some(tunnel) => tunnel.head_began().is_some(),
            None => own.head_began().is_some(),
        }
    }
}

/// A request body that acknowledges what its connection received whenever it makes its
/// reader wait ([`Ack::watch`]).
pub struct AckWhileWaiting<B> {
    inner: B,
    ack: Ack,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for AckWhileWaiting<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if polled.is_pending() {
            self.ack.now();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadWatch<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if read.is_pending() && self.read_since_wait {
            self.read_since_wait = false;
            if let Some(ack) = &self.ack {
                if ack.head_under_way(&self.activity) {
                    ack.now();
                }
            }
        }
        if buf.filled().len() > before {
            self.read_since_wait = true;
            self.activity.bytes_read();
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadWatch<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.ended.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many of this process's descriptors name the socket `fd` names.
    fn descriptors_of(fd: &impl std::os::fd::AsRawFd) -> usize {
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == target))
            .count()
    }

    #[tokio::test]
    async fn a_socket_ack_holds_its_descriptor_until_released_for_every_clone() {
        use std::os::fd::AsFd;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tcp, _peer) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let tcp = tcp.unwrap();
        assert_eq!(descriptors_of(&tcp), 1);
        let ack = Ack::socket(tcp.as_fd().try_clone_to_owned().unwrap());
        let clone = ack.clone();
        assert_eq!(descriptors_of(&tcp), 2);
        clone.now();
        ack.release();
        // Released through one clone, gone for both; acknowledging then does nothing.
        assert_eq!(descriptors_of(&tcp), 1);
        clone.now();
        drop((ack, clone));
        assert_eq!(descriptors_of(&tcp), 1);
    }

    /// Whether `late` has resolved, polled once as the connection's task would.
    fn is_late(late: &mut HeadLate) -> bool {
        let waker = std::task::Waker::noop();
        Pin::new(late)
            .poll(&mut Context::from_waker(waker))
            .is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_request_head_under_way_runs_the_header_clock() {
        let limit = Duration::from_secs(30);
        let a = Activity::new();
        let mut late = a.head_late(limit);
        assert!(!is_late(&mut late));
        tokio::time::sleep(limit).await;
        assert!(
            is_late(&mut late),
            "a connection that sends no head is late"
        );

        let a = Activity::new();
        let mut late = a.head_late(limit);
        a.bytes_read();
        let busy = a.begin();
        tokio::time::sleep(limit * 10).await;
        assert!(
            !is_late(&mut late),
            "an exchange in progress is not a late head"
        );
        a.bytes_read();
        assert!(!is_late(&mut late), "a request body is not a head");
        drop(busy);
        tokio::time::sleep(limit * 10).await;
        assert!(
            !is_late(&mut late),
            "a connection idle between exchanges is not late"
        );
        a.bytes_read();
        tokio::time::sleep(limit / 2).await;
        a.bytes_read();
        assert!(!is_late(&mut late));
        tokio::time::sleep(limit / 2).await;
        assert!(
            is_late(&mut late),
            "the head's clock runs from its first byte, not its last"
        );
        let _busy = a.begin();
        assert!(!is_late(&mut late), "a head that came whole is not late");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_every_exchange_to_end_then_for_the_timeout() {
        let a = Activity::new();
        let busy = a.begin();
        let limit = Duration::from_secs(60);
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.idle(limit).await })
        };
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!waiter.is_finished(), "an exchange in progress is not idle");
        let resp = Activity::track(busy, Response::new(super::super::body::full("x")));
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!waiter.is_finished(), "a response not yet sent is not idle");
        let ended = Instant::now();
        drop(resp);
        waiter.await.unwrap();
        assert!(ended.elapsed() >= limit);
    }
}
