//! Idle connections: a connection that carries no exchange for a while is closed.
//!
//! HTTP/2 keeps a connection open as long as the client answers PINGs, and an HTTP/1.1
//! keep-alive connection waits for its next request; both hold a socket and memory for
//! as long as the client likes. An [`Activity`] counts the exchanges in progress on one
//! connection (from the request head until the response body is done) and
//! [`Activity::idle`] resolves once none has been in progress for the idle timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Response;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::body::ProxyBody;

pub struct Activity {
    active: AtomicUsize,
    last: Mutex<Instant>,
    ended: Notify,
}

/// One exchange in progress; dropping it ends it.
pub struct Busy(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            active: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
            ended: Notify::new(),
        })
    }

    pub fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
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
