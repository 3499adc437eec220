//! The recorder's store writer: one thread that writes every exchange's bodies and event,
//! so no sled or file write runs on the async runtime's threads.
//!
//! A response's last frame waits for its write (the exchange is in the store before the
//! client has its answer; durable at the committer's next flush, within 20 ms). Jobs run
//! in the order they were queued, always, so a body's segments are stored before the event
//! that names them, even when the event comes from a dropped exchange whose caller does not
//! wait for it.
//!
//! The queue has no fixed bound, on purpose: a bounded one needs somewhere to put a job
//! when it is full, and every such place (the blocking pool, a waiting send) can run a job
//! ahead of one queued earlier. What bounds it instead is that each job owns data its
//! exchange would otherwise hold (a few segments of a large body, or an event), and an
//! exchange has at most four segment writes per body (`SEGMENT_WRITES`) and its event
//! queued at a time: the queue holds no more than the open exchanges already do.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{channel, Sender};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// How long an exchange's task stays awake for its event's write ([`wait_briefly`]): a
/// small exchange's write takes 10-40 µs on this VM, a thread put to sleep and woken
/// 20-100 µs more.
const WAIT_AWAKE: Duration = Duration::from_micros(60);

pub(crate) struct Writer {
    tx: Sender<Job>,
}

impl Writer {
    /// Starts the writer thread.
    pub(crate) fn start() -> std::io::Result<Writer> {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("tapedeck-writer".into())
            .spawn(move || {
                // Ends when the recorder (the last sender) is gone and the queue is empty.
                for job in rx {
                    // A job that panics loses its own exchange (its caller hears so), not
                    // the writer.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                }
            })?;
        Ok(Writer { tx })
    }

    /// Runs `f` on the writer thread after every job queued before it; its result comes
    /// back on the receiver (which reports an error if `f` panicked).
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (back, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = back.send(f());
        });
        // The writer thread only ends once every sender is gone, and `self` is one: the
        // send cannot fail while `self` lives. Were it to, the job (and its sender) is
        // dropped and the caller hears an error, never silence.
        let _ = self.tx.send(job);
        rx
    }
}

/// Waits, awake, until `rx` has its value or [`WAIT_AWAKE`] has passed: the calling
/// thread looks again and again, giving its core to any other thread that wants it in
/// between (the writer, say), instead of sleeping until it is woken. Polling `rx` then
/// takes a value that came without a sleep; anything else (not yet, or the job failed)
/// is polled as usual. Only worth it when the machine has a core to spare.
pub(crate) fn wait_briefly<T>(rx: &oneshot::Receiver<T>) {
    let start = Instant::now();
    while rx.is_empty() && start.elapsed() < WAIT_AWAKE {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn jobs_run_off_the_runtime_in_order_and_survive_a_panic() {
        let w = Writer::start().unwrap();
        // The writer is held on its first job while far more jobs queue up than any
        // burst of open exchanges would: none may run ahead of one queued before it.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = w.run(move || {
            held.recv().unwrap();
            std::thread::current().name().map(str::to_string)
        });
        let boom = w.run(|| -> u8 { panic!("a job that fails") });
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let rxs: Vec<_> = (0..5000)
            .map(|i| {
                let order = order.clone();
                w.run(move || order.lock().unwrap().push(i))
            })
            .collect();
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().as_deref(), Some("tapedeck-writer"));
        assert!(
            boom.await.is_err(),
            "the panicking job's caller hears of it"
        );
        for rx in rxs {
            rx.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..5000).collect::<Vec<_>>());
    }

    #[test]
    fn a_result_waited_for_awake_comes_back_in_order_or_is_left_to_the_receiver() {
        let w = Writer::start().unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut awake = 0;
        for i in 0..2000u32 {
            // Every fifth job is held until the wait has given up: its result must come
            // through the receiver, as it would have without the wait.
            let (release, held) = std::sync::mpsc::channel::<()>();
            let slow = i % 5 == 0;
            let o = order.clone();
            let rx = w.run(move || {
                if slow {
                    held.recv().unwrap();
                }
                o.lock().unwrap().push(i);
                i
            });
            wait_briefly(&rx);
            if rx.is_empty() {
                release.send(()).unwrap_or_default();
            } else {
                assert!(!slow, "job {i} is held: the wait cannot have its result");
                awake += 1;
            }
            let got = rx.blocking_recv().map_err(|_| ());
            assert_eq!(got, Ok(i), "job {i} ran and its result came back");
        }
        assert_eq!(*order.lock().unwrap(), (0..2000).collect::<Vec<_>>());
        assert!(awake > 0, "some results came within the wait");
        // A job that panics: the wait gives up, and the receiver reports the error.
        let boom = w.run(|| -> u8 { panic!("a job that fails") });
        wait_briefly(&boom);
        let got = boom.blocking_recv().map_err(|_| ());
        assert_eq!(got, Err(()));
    }
}
