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

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

/// A job returns what is left of it once it has run: handing its result back.
type Job = Box<dyn FnOnce() -> Held + Send>;

/// Hands a job's result back.
type Done = Box<dyn FnOnce() + Send>;

/// A job's result, not yet handed back.
struct Held {
    /// The mailbox of the serving thread where the result is awaited, if any.
    home: Option<Arc<Mailbox>>,
    done: Done,
}

/// Results handed back together to one serving thread: a task there runs their hand-backs
/// as soon as it is woken, so the tasks they wake are woken from that thread, in order,
/// with one wake from the writer for all of them. It is always ready to run: no
/// exchange's result waits on another exchange's progress.
#[derive(Default)]
struct Mailbox {
    results: Mutex<Vec<Done>>,
    posted: Notify,
}

thread_local! {
    /// This serving thread's mailbox, once a job was queued from it.
    static MAILBOX: RefCell<Option<Arc<Mailbox>>> = const { RefCell::new(None) };
}

/// The caller's serving thread's mailbox, its task started on first use; `None` off the
/// serving threads (results then go back on their own).
fn mailbox_here() -> Option<Arc<Mailbox>> {
    tapedeck_proxy::shards::here()?;
    MAILBOX.with(|m| {
        if let Some(mailbox) = m.borrow().as_ref() {
            return Some(mailbox.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let mailbox = Arc::new(Mailbox::default());
        let task = mailbox.clone();
        runtime.spawn(async move {
            loop {
                task.posted.notified().await;
                let results = std::mem::take(&mut *lock(&task.results));
                results.into_iter().for_each(|done| done());
            }
        });
        *m.borrow_mut() = Some(mailbox.clone());
        Some(mailbox)
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the writer thread is sent: a job, or word that one is coming soon.
enum Msg {
    Job(Job),
    /// An exchange went upstream: its event follows when the answer ends (see
    /// [`Writer::expect`]).
    Expect,
    /// An exchange ended at low load: the next one's event is likely to follow soon (see
    /// [`Writer::linger`]).
    Linger,
}

/// How long an exchange's task stays awake for its event's write ([`wait_briefly`]): a
/// small exchange's write takes 10-40 µs on this VM, a thread put to sleep and woken
/// 20-100 µs more.
const WAIT_AWAKE: Duration = Duration::from_micros(60);

/// How long the writer, woken by [`Writer::expect`], stays awake for the job it was told
/// of before it sleeps again: about a fast upstream's answer to a small request.
const EXPECT_AWAKE: Duration = Duration::from_micros(200);

/// How long the writer must have slept for [`Writer::expect`] to wake it: under load it
/// sleeps only between bursts of jobs, and waking it there cost more than it saved
/// (2 µs more per exchange at 32 connections).
const ASLEEP_A_WHILE: Duration = Duration::from_micros(50);

/// How long the writer stays awake after an exchange that ended at low load
/// ([`Writer::linger`]): a little more than one exchange of a client that sends the next
/// request as soon as it has the answer (160-240 µs through record here).
const LINGER: Duration = Duration::from_micros(300);

pub(crate) struct Writer {
    tx: Sender<Msg>,
    /// Since when the writer thread has been asleep, waiting for a job: nanoseconds
    /// after `base` (never 0), or 0 while it is awake.
    asleep: Arc<AtomicU64>,
    base: Instant,
}

impl Writer {
    /// Starts the writer thread.
    pub(crate) fn start() -> std::io::Result<Writer> {
        Writer::start_lingering(LINGER)
    }

    /// [`Writer::start`], staying awake `linger` after a [`Writer::linger`].
    fn start_lingering(linger: Duration) -> std::io::Result<Writer> {
        let (tx, rx) = channel::<Msg>();
        let asleep = Arc::new(AtomicU64::new(0));
        let base = Instant::now();
        let since = asleep.clone();
        std::thread::Builder::new()
            .name("tapedeck-writer".into())
            .spawn(move || run_jobs(&rx, &since, base, linger))?;
        Ok(Writer { tx, asleep, base })
    }

    /// Runs `f` on the writer thread after every job queued before it; its result comes
    /// back on the receiver (which reports an error if `f` panicked).
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (back, rx) = oneshot::channel();
        let home = mailbox_here();
        let job: Job = Box::new(move || {
            let got = f();
            Held {
                home,
                done: Box::new(move || {
                    let _ = back.send(got);
                }),
            }
        });
        // The writer thread only ends once every sender is gone, and `self` is one: the
        // send cannot fail while `self` lives. Were it to, the job (and its sender) is
        // dropped and the caller hears an error, never silence.
        let _ = self.tx.send(Msg::Job(job));
        rx
    }

    /// Says, after the job of an exchange that ended at low load, that the writer should
    /// stay awake a while ([`LINGER`]) before it sleeps: a client that sends its next
    /// request as soon as it has the answer then finds it awake, and neither the waking
    /// (a system call on the serving thread, on the request's way out) nor the idle core
    /// it woke on (a core that sleeps here wakes slowly, and the client and the upstream
    /// wait for it too) is on that exchange's way. Queued behind the job, it reaches a
    /// writer that is awake for that job, so it wakes nothing itself. Under load nothing
    /// lingers: the writer has jobs enough.
    pub(crate) fn linger(&self) {
        let _ = self.tx.send(Msg::Linger);
    }

    /// Says that a job is coming soon (an exchange went upstream, or its answer came; its
    /// event follows the answer's end): a sleeping writer is woken now and stays awake for
    /// it a while, so that waking it (20-100 µs on this VM) is not on the answer's way to
    /// the client. Told when the request goes out, it is awake for an answer that comes
    /// within [`EXPECT_AWAKE`]; told again when the answer comes, for one that came later
    /// (a remote upstream's). A busy writer is not told: it has jobs enough, nor one that
    /// has only just gone to sleep.
    pub(crate) fn expect(&self) {
        let since = self.asleep.load(Ordering::Relaxed);
        if since != 0 && nanos(self.base).saturating_sub(since) >= ASLEEP_A_WHILE.as_nanos() as u64
        {
            let _ = self.tx.send(Msg::Expect);
        }
    }
}

/// Nanoseconds since `base`, never 0 (0 says "awake").
fn nanos(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// How many results the writer holds back while more jobs wait (see [`run_jobs`]).
const HELD_BACK: usize = 8;

/// The writer thread: every job in the order queued, until the last sender is gone and
/// the queue is empty.
///
/// A job alone in the queue (any load below the writer's pace) has its result handed back
/// as soon as it has run. While more jobs wait, results are held back, up to
/// [`HELD_BACK`], and handed back together ([`hand_back`]): a serving thread is then
/// woken once for all of its exchanges that ended, not once each (each wake from another
/// thread is a system call here and a return from `epoll_wait` there), and an HTTP/2
/// connection's answers that end together go out in one send.
fn run_jobs(rx: &Receiver<Msg>, asleep: &AtomicU64, base: Instant, linger: Duration) {
    let mut awake_until: Option<Instant> = None;
    let mut held: Vec<Held> = Vec::with_capacity(HELD_BACK);
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Disconnected) => return hand_back(&mut held),
            Err(TryRecvError::Empty) => {
                hand_back(&mut held);
                match awake_until {
                    // Told a job is coming: look again, giving the core to any thread
                    // that wants it in between.
                    Some(until) if Instant::now() < until => {
                        std::thread::yield_now();
                        continue;
                    }
                    _ => {
                        asleep.store(nanos(base), Ordering::Relaxed);
                        let got = rx.recv();
                        asleep.store(0, Ordering::Relaxed);
                        match got {
                            Ok(m) => m,
                            Err(_) => return,
                        }
                    }
                }
            }
        };
        match msg {
            Msg::Expect => awake_until = Some(Instant::now() + EXPECT_AWAKE),
            Msg::Linger => awake_until = Some(Instant::now() + linger),
            Msg::Job(job) => {
                awake_until = None;
                // A job that panics loses its own exchange (its caller hears so), not
                // the writer.
                if let Ok(done) = std::panic::catch_unwind(AssertUnwindSafe(job)) {
                    held.push(done);
                }
                if held.len() >= HELD_BACK {
                    hand_back(&mut held);
                }
            }
        }
    }
}

/// Hands the held results back: one alone from here (its task may be waiting awake for
/// it, see [`wait_briefly`]); several through their serving thread's [`Mailbox`], posted
/// together with one wake; those awaited off the serving threads from here.
fn hand_back(held: &mut Vec<Held>) {
    if held.len() <= 1 {
        return held.drain(..).for_each(|h| (h.done)());
    }
    let mut posting: Vec<(Arc<Mailbox>, Vec<Done>)> = Vec::new();
    for Held { home, done } in held.drain(..) {
        let Some(home) = home else {
            done();
            continue;
        };
        match posting.iter_mut().find(|(m, _)| Arc::ptr_eq(m, &home)) {
            Some((_, dones)) => dones.push(done),
            None => posting.push((home, vec![done])),
        }
    }
    for (mailbox, dones) in posting {
        lock(&mailbox.results).extend(dones);
        mailbox.posted.notify_one();
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

    /// Runs `f` on a serving thread of `shards` (given a real connection to serve) and
    /// returns what it returns.
    async fn on_serving_thread<T, F, Fut>(shards: &tapedeck_proxy::shards::Shards, f: F) -> T
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (out, got) = oneshot::channel();
        shards
            .serve(accepted.unwrap().0, move |_stream, _seat| async move {
                assert!(tapedeck_proxy::shards::here().is_some());
                let _ = out.send(f().await);
            })
            .unwrap();
        got.await
            .expect("the serving thread's task ended without its result")
    }

    /// Results of jobs queued from a serving thread while the writer was busy go back
    /// together through that thread's mailbox: each task gets its own; a task that
    /// stalls with its result unread (an exchange whose client stopped reading) holds up
    /// no other; a receiver dropped loses only its own; and results awaited off the
    /// serving threads, queued in between, come back too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn results_held_back_reach_every_task_of_the_serving_thread() {
        let w = Arc::new(Writer::start().unwrap());
        let shards = tapedeck_proxy::shards::Shards::start(2).unwrap();
        let w2 = w.clone();
        let (stalled, got, off_thread) = on_serving_thread(&shards, move || async move {
            let w = w2;
            // The first job holds the writer while the others queue up behind it; its
            // caller never looks at its result.
            let (release, held) = std::sync::mpsc::channel::<()>();
            let stalled = w.run(move || {
                held.recv().unwrap();
                "held"
            });
            let mut tasks = Vec::new();
            let mut off_thread = Vec::new();
            for i in 0..3 * HELD_BACK {
                let back = w.run(move || i);
                if i % 7 == 3 {
                    drop(back);
                    continue;
                }
                tasks.push(tokio::spawn(async move {
                    back.await.map_err(|_| format!("job {i}'s result lost"))
                }));
                if i % 5 == 0 {
                    // Queued from a thread of no runtime, between this thread's jobs.
                    let w = w.clone();
                    let (queued, is_queued) = std::sync::mpsc::channel();
                    off_thread.push(std::thread::spawn(move || {
                        let back = w.run(move || 1000 + i);
                        queued.send(()).unwrap();
                        back.blocking_recv().map_err(|_| ())
                    }));
                    is_queued.recv().unwrap();
                }
            }
            release.send(()).unwrap();
            let mut got = Vec::new();
            for t in tasks {
                let r = tokio::time::timeout(Duration::from_secs(10), t).await;
                let r = r.map_err(|_| "a task never had its result".to_string())?;
                got.push(r.map_err(|e| format!("a task failed: {e}"))??);
            }
            let off_thread: Vec<_> = off_thread
                .into_iter()
                .map(|t| t.join().expect("a thread off the runtime"))
                .collect();
            Ok::<_, String>((stalled, got, off_thread))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let every = (0..3 * HELD_BACK).filter(|i| i % 7 != 3);
        assert_eq!(got, every.clone().collect::<Vec<_>>());
        let want: Vec<_> = every.filter(|i| i % 5 == 0).map(|i| Ok(1000 + i)).collect();
        assert_eq!(off_thread, want);
        let mut stalled = stalled;
        assert_eq!(stalled.try_recv(), Ok("held"), "its result came, unread");
    }

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
    fn a_writer_told_to_expect_a_job_runs_jobs_in_order_and_sleeps_again_when_none_comes() {
        let w = Writer::start().unwrap();
        let asleep = |w: &Writer| {
            let t = Instant::now();
            while w.asleep.load(Ordering::Relaxed) == 0 {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "the writer never went to sleep"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        asleep(&w);
        // Asleep a while: the first `expect` wakes it.
        std::thread::sleep(Duration::from_millis(1));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut rxs = Vec::new();
        for i in 0..200u32 {
            // Told, then the job; told with nothing after it; told twice.
            w.expect();
            let o = order.clone();
            rxs.push(w.run(move || o.lock().unwrap().push(i)));
            if i % 3 == 0 {
                w.tx.send(Msg::Expect).unwrap();
            }
        }
        // Told of a job that never comes, it stays awake a while, not for ever: the word
        // is queued behind the last job, so the writer is awake when that job's result
        // is here, and asleep again only once it has stopped waiting.
        w.tx.send(Msg::Expect).unwrap();
        for rx in rxs {
            rx.blocking_recv().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..200).collect::<Vec<_>>());
        asleep(&w);
    }

    /// After an exchange that ended at low load the writer stays awake for the next one
    /// (its `expect` then wakes nothing), and sleeps again once none has come.
    #[test]
    fn a_writer_told_to_linger_stays_awake_after_its_job_then_sleeps() {
        let linger = Duration::from_secs(2);
        let w = Writer::start_lingering(linger).unwrap();
        let job = |w: &Writer, linger: bool| {
            let rx = w.run(|| ());
            if linger {
                w.linger();
            }
            rx.blocking_recv().unwrap();
        };
        // Asleep within `within`, or the test fails.
        let asleep_within = |w: &Writer, within: Duration| {
            let t = Instant::now();
            while w.asleep.load(Ordering::Relaxed) == 0 {
                assert!(t.elapsed() < within, "still awake after {within:?}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let awake_a_moment_later = |w: &Writer| {
            std::thread::sleep(Duration::from_millis(50));
            w.asleep.load(Ordering::Relaxed) == 0
        };
        asleep_within(&w, Duration::from_secs(10));
        // A job alone: asleep again at once (well before a linger would end).
        job(&w, false);
        asleep_within(&w, linger / 2);
        // A job and the word to linger: still awake a moment later, asleep once the
        // linger is over; and so again from asleep.
        for _ in 0..2 {
            job(&w, true);
            assert!(
                awake_a_moment_later(&w),
                "asleep right after a job it lingers for"
            );
            asleep_within(&w, Duration::from_secs(10));
        }
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
