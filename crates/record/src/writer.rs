//! The recorder's store writer: one thread that writes every exchange's bodies and event,
//! so no sled or file write runs on the async runtime's threads.
//!
//! A response's last frame waits for its write (the exchange is in the store before the
//! client has its answer; durable at the committer's next flush, within 20 ms). Jobs run
//! in the order they were queued, so a body's segments are stored before the event that
//! names them. The queue is bounded: when it is full, a job runs on tokio's blocking pool
//! instead, so a burst never blocks a runtime thread and never grows memory without end.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for the writer before new ones go to the blocking pool.
const QUEUE: usize = 1024;

pub(crate) struct Writer {
    tx: Option<SyncSender<Job>>,
}

impl Writer {
    /// Starts the writer thread; without one (the thread could not start) every job runs
    /// on the blocking pool.
    pub(crate) fn start() -> Writer {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let started = std::thread::Builder::new()
            .name("tapedeck-writer".into())
            .spawn(move || {
                // Ends when the recorder (the last sender) is gone and the queue is empty.
                for job in rx {
                    // A job that panics loses its own exchange (its caller hears so), not
                    // the writer.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            });
        match started {
            Ok(_) => Writer { tx: Some(tx) },
            Err(e) => {
                tracing::warn!("no store writer thread ({e}); writes run on the blocking pool");
                Writer { tx: None }
            }
        }
    }

    /// Runs `f` off the runtime's threads; its result comes back on the receiver.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (back, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = back.send(f());
        });
        let job = match &self.tx {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => return rx,
                Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => job,
            },
            None => job,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(job)),
            // Not on a runtime (a test calling in directly): here, then.
            Err(_) => job(),
        }
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn jobs_run_off_the_runtime_in_order_and_survive_a_panic() {
        let w = Writer::start();
        let first = w.run(|| std::thread::current().name().map(str::to_string));
        let boom = w.run(|| -> u8 { panic!("a job that fails") });
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let rxs: Vec<_> = (0..100)
            .map(|i| {
                let order = order.clone();
                w.run(move || order.lock().unwrap().push(i))
            })
            .collect();
        assert_eq!(first.await.unwrap().as_deref(), Some("tapedeck-writer"));
        assert!(
            boom.await.is_err(),
            "the panicking job's caller hears of it"
        );
        for rx in rxs {
            rx.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>());
    }
}
