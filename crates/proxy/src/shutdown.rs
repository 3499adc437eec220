//! Graceful shutdown: one signal shared by every task that must stop accepting work,
//! and counters of what a stop must wait for (exchanges in flight, open connections).
//! Both are tokio-util's: a `CancellationToken` is the signal, a `TaskTracker` counts.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

/// Counts live things (exchanges, connections) so a stop can wait for them to end.
#[derive(Default)]
pub struct Tracker {
    live: TaskTracker,
    /// Cancelled when a stop starts waiting: what lasts until its peers hang up (a
    /// WebSocket) ends itself instead of holding the stop.
    stopping: CancellationToken,
}

/// One live thing; dropping it ends it.
pub struct TrackGuard {
    _live: TaskTrackerToken,
}

impl Tracker {
    pub fn enter(self: &Arc<Self>) -> TrackGuard {
        TrackGuard {
            _live: self.live.token(),
        }
    }

    pub fn count(&self) -> usize {
        self.live.len()
    }

    /// Resolves once a [`Tracker::drain`] has begun.
    pub async fn draining(&self) {
        self.stopping.cancelled().await
    }

    /// Waits until nothing is live, or `limit` passes. Returns what is left.
    pub async fn drain(&self, limit: Duration) -> usize {
        self.stopping.cancel();
        self.live.close();
        match tokio::time::timeout(limit, self.live.wait()).await {
            Ok(()) => 0,
            Err(_) => self.count(),
        }
    }
}

/// Resolves once the daemon is asked to stop.
#[derive(Clone)]
pub struct Shutdown(CancellationToken);

/// Asks the daemon to stop.
#[derive(Clone)]
pub struct ShutdownTrigger(CancellationToken);

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let token = CancellationToken::new();
    (ShutdownTrigger(token.clone()), Shutdown(token))
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.0.cancel();
    }
}

impl Shutdown {
    /// Resolves once shutdown has been fired (at once if it already was).
    pub async fn wait(&self) {
        self.0.cancelled().await
    }

    pub fn is_fired(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// How a connection is watched besides its own end: when it has been idle too long, and
/// (HTTP/1.1) when a request head has been arriving too long.
pub(crate) struct Watch<I, L> {
    pub idle: I,
    pub on_idle: Box<dyn FnOnce() + Send>,
    /// Polled after the connection on every poll (see [`crate::idle::Activity::head_late`]).
    pub late: L,
    pub on_late: Box<dyn FnOnce() + Send>,
}

/// Serves a client connection until it ends; when the daemon stops (`stopping`) or the
/// connection goes idle, asks it through `shutdown` to finish the responses in progress
/// and close, and waits for that; a request head that comes too late ends it at once.
/// hyper's h1 and h2 connections share no trait for this, hence the closure.
pub(crate) async fn serve_until_stopped<C, E>(
    mut conn: std::pin::Pin<&mut C>,
    shutdown: impl Fn(std::pin::Pin<&mut C>),
    stopping: impl std::future::Future<Output = ()>,
    watch: Watch<impl std::future::Future<Output = ()>, impl std::future::Future<Output = ()>>,
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    tokio::select! {
        biased;
        r = conn.as_mut() => r,
        _ = stopping => {
            shutdown(conn.as_mut());
            conn.await
        }
        _ = watch.idle => {
            (watch.on_idle)();
            shutdown(conn.as_mut());
            conn.await
        }
        _ = watch.late => {
            (watch.on_late)();
            Ok(())
        }
    }
}
