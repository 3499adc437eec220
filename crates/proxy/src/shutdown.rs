//! Graceful shutdown: one signal shared by every task that must stop accepting work,
//! and counters of what a stop must wait for (exchanges in flight, open connections).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// Counts live things (exchanges, connections) so a stop can wait for them to end.
#[derive(Default)]
pub struct Tracker {
    n: AtomicUsize,
    idle: Notify,
    /// Set when a stop starts waiting: what lasts until its peers hang up (a WebSocket)
    /// ends itself instead of holding the stop.
    stopping: AtomicBool,
    stop: Notify,
}

/// One live thing; dropping it ends it.
pub struct TrackGuard(Arc<Tracker>);

impl Tracker {
    pub fn enter(self: &Arc<Self>) -> TrackGuard {
        self.n.fetch_add(1, Ordering::AcqRel);
        TrackGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.n.load(Ordering::Acquire)
    }

    /// Resolves once a [`Tracker::drain`] has begun.
    pub async fn draining(&self) {
        loop {
            let notified = self.stop.notified();
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Waits until nothing is live, or `limit` passes. Returns what is left.
    pub async fn drain(&self, limit: Duration) -> usize {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.count();
            }
        }
    }
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

#[derive(Clone)]
pub struct ShutdownTrigger {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (
        ShutdownTrigger {
            tx: std::sync::Arc::new(tx),
        },
        Shutdown { rx },
    )
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown has been fired (at once if it already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| *v).await;
    }

    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }
}

/// Serves a client connection until it ends; when the daemon stops (`stopping`) or the
/// connection goes idle (`idle`, which `on_idle` reports), asks it through `shutdown`
/// to finish the responses in progress and close, and waits for that. hyper's h1 and h2
/// connections share no trait for this, hence the closure.
pub(crate) async fn serve_until_stopped<C, E>(
    mut conn: std::pin::Pin<&mut C>,
    shutdown: impl Fn(std::pin::Pin<&mut C>),
    stopping: impl std::future::Future<Output = ()>,
    idle: impl std::future::Future<Output = ()>,
    on_idle: impl FnOnce(),
) -> Result<(), E>
where
    C: std::future::Future<Output = Result<(), E>>,
{
    tokio::select! {
        r = conn.as_mut() => r,
        _ = stopping => {
            shutdown(conn.as_mut());
            conn.await
        }
        _ = idle => {
            on_idle();
            shutdown(conn.as_mut());
            conn.await
        }
    }
}
