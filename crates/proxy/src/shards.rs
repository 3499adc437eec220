//! Where client connections are served: one single-threaded tokio runtime per core
//! (`tapedeck-serveN` threads), each connection on one of them for its whole life.
//!
//! On a multi-threaded runtime a connection's tasks (its TLS and HTTP, the exchange, the
//! upstream connection it opens) wake each other across the workers, and a worker is
//! woken to steal a task the other would have run. Here they stay on one thread, and a
//! new connection goes to the shard serving the fewest (the first among equals). A
//! connection counts there as long as its socket is open ([`Seat`]), a CONNECT tunnel's
//! too. On this project's 2-core benchmark machine, in eight alternated pairs at 32
//! connections, record served more exchanges a second in seven (medians 18.4k against
//! 16.4k), replay in six (41.4k against 37.0k), at a little less CPU per exchange
//! (docs/benchmark-history.md, thirty-eighth session). What it gives up: the streams of
//! one HTTP/2 connection share one core.
//!
//! The shards are the process's ([`Shards::global`]): started by the first proxy that
//! serves, they run until the process exits, as a runtime's workers do, so a task a
//! connection left behind (a WebSocket's relay storing its event) ends as it would
//! there. `TAPEDECK_SERVE_THREADS` sets how many; 0 serves connections on the runtime
//! that accepted them, as before.
//!
//! A serving thread with nothing to run sleeps in `epoll_wait` until a socket or another
//! thread wakes it: on this project's VM a sleep and its wake-up cost a context switch
//! each way. A command that serves answers of its own (replay) can have its threads look
//! for work a little first ([`spin_before_park`]): they yield their core to any thread
//! that wants it, and stop looking as soon as a task is queued for them from another
//! thread. A socket that becomes readable meanwhile is seen once they stop (tokio gives
//! no way to ask sooner), so the look is short: 30 µs for replay. Replay's benchmark at 32
//! connections, seven alternated pairs with the look and without: 43.1k against 35.9k
//! exchanges a second (medians; more in all seven), 29.5 against 37.2 µs of CPU per
//! exchange; four more pairs of this build against the one before: 47.9k against 37.3k
//! (more in three). Record's was no different (18.2k against 18.3k), so record's threads
//! sleep at once (docs/benchmark-history.md, thirty-ninth session).
//! `TAPEDECK_PARK_SPIN_US` sets the look for any command (0: none), to measure it.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

/// Numbers the serving threads of the process, whichever [`Shards`] started them.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number, when it is a serving thread.
    static HERE: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The serving thread the caller runs on, as a number no other serving thread of the
/// process has; `None` off them (the accepting runtime, a test's). A task spawned now
/// runs there for its whole life: record keeps an upstream connection's task with the
/// client connections of its own thread (`tapedeck_record`'s idle connections).
pub fn here() -> Option<usize> {
    HERE.with(std::cell::Cell::get)
}

struct Shard {
    handle: Handle,
    /// Connections being served there.
    load: Arc<AtomicUsize>,
}

/// Serving threads, each running a single-threaded runtime.
pub struct Shards {
    shards: Vec<Shard>,
}

/// A client connection's place on its shard, counted until dropped. The proxy keeps it
/// with the connection's socket, so a connection still counts once its HTTP part is over
/// and its socket serves on as a CONNECT tunnel or an upgraded WebSocket.
pub struct Seat(Option<Arc<AtomicUsize>>);

impl Seat {
    /// No place on a shard: the connection is served on the runtime that accepted it.
    pub fn none() -> Seat {
        Seat(None)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(load) = &self.0 {
            load.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// How long the process's idle serving threads look for work before they sleep, in
/// microseconds ([`spin_before_park`]).
static PARK_SPIN_US: AtomicU64 = AtomicU64::new(0);

/// Has the serving threads of [`Shards::global`] look for work for `d` before they sleep
/// (see the module's doc); `TAPEDECK_PARK_SPIN_US` overrides it.
pub fn spin_before_park(d: Duration) {
    PARK_SPIN_US.store(
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// How long a shard's idle thread looks for work before it sleeps.
#[derive(Clone, Copy)]
enum Spin {
    /// The process's ([`spin_before_park`], or `TAPEDECK_PARK_SPIN_US`).
    Process,
    #[cfg(test)]
    Fixed(Duration),
}

impl Spin {
    fn get(self) -> Duration {
        match self {
            Spin::Process => {
                static SET: OnceLock<Option<u64>> = OnceLock::new();
                let set = SET.get_or_init(|| {
                    std::env::var("TAPEDECK_PARK_SPIN_US")
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                });
                Duration::from_micros(set.unwrap_or_else(|| PARK_SPIN_US.load(Ordering::Relaxed)))
            }
            #[cfg(test)]
            Spin::Fixed(d) => d,
        }
    }

    /// Called by a serving thread's runtime before it sleeps: looks for work, giving its
    /// core to any other thread in between, until a task is queued for the runtime from
    /// another thread or the time is up.
    fn before_park(self) {
        let d = self.get();
        if d.is_zero() {
            return;
        }
        let Ok(rt) = Handle::try_current() else {
            return;
        };
        let metrics = rt.metrics();
        let until = Instant::now() + d;
        while metrics.global_queue_depth() == 0 && Instant::now() < until {
            std::thread::yield_now();
        }
    }
}

impl Shards {
    /// Starts `n` serving threads (at least one).
    pub fn start(n: usize) -> io::Result<Shards> {
        Shards::start_with(n, Spin::Process)
    }

    fn start_with(n: usize, spin: Spin) -> io::Result<Shards> {
        let mut shards = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(move || spin.before_park())
                .build()?;
            let handle = rt.handle().clone();
            let number = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            std::thread::Builder::new()
                .name(format!("tapedeck-serve{i}"))
                .spawn(move || {
                    HERE.with(|h| h.set(Some(number)));
                    rt.block_on(std::future::pending::<()>())
                })?;
            shards.push(Shard {
                handle,
                load: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(Shards { shards })
    }

    /// The process's serving threads, started on first use: one per core, or
    /// `TAPEDECK_SERVE_THREADS` of them; none when that is 0, or when they cannot be
    /// started (connections are then served on the runtime that accepted them).
    pub fn global() -> Option<&'static Shards> {
        static SHARDS: OnceLock<Option<Shards>> = OnceLock::new();
        SHARDS
            .get_or_init(|| {
                let n = std::env::var("TAPEDECK_SERVE_THREADS")
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or_else(Shards::per_core);
                if n == 0 {
                    return None;
                }
                Shards::start(n)
                    .map_err(|e| {
                        tracing::warn!(
                            "cannot start the serving threads ({e}): serving on the runtime's"
                        )
                    })
                    .ok()
            })
            .as_ref()
    }

    /// Serves `stream` with `serve` on the process's serving threads ([`Shards::global`]),
    /// or, when there are none, as a task of the runtime that accepted it.
    pub fn serve_anywhere<F, Fut>(stream: tokio::net::TcpStream, serve: F) -> io::Result<()>
    where
        F: FnOnce(tokio::net::TcpStream, Seat) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match Shards::global() {
            Some(shards) => shards.serve(stream, serve),
            None => {
                tokio::spawn(serve(stream, Seat::none()));
                Ok(())
            }
        }
    }

    /// How many serving threads: one per core the process may use.
    pub fn per_core() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    /// Serves `stream` on the shard with the fewest connections (see `pick`):
    /// `serve` gets the stream registered with that shard's reactor, and its [`Seat`],
    /// which counts the connection there until dropped (keep it as long as the socket).
    pub fn serve<F, Fut>(&self, stream: tokio::net::TcpStream, serve: F) -> io::Result<()>
    where
        F: FnOnce(tokio::net::TcpStream, Seat) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shard = self.pick();
        // Moved out of the accepting runtime's reactor, into the shard's.
        let std = stream.into_std()?;
        shard.load.fetch_add(1, Ordering::Relaxed);
        let seat = Seat(Some(shard.load.clone()));
        shard.handle.spawn(async move {
            match tokio::net::TcpStream::from_std(std) {
                Ok(stream) => serve(stream, seat).await,
                Err(e) => tracing::warn!("could not take a connection on: {e}"),
            }
        });
        Ok(())
    }

    /// The shard serving the fewest connections, the first of them among equals: at
    /// low load connections gather on the first shard, where the upstream connections
    /// earlier ones left for reuse were opened (a client that opens a connection per
    /// request then finds its upstream connection on its own thread).
    fn pick(&self) -> &Shard {
        let mut best = &self.shards[0];
        let mut least = best.load.load(Ordering::Relaxed);
        for s in &self.shards[1..] {
            let load = s.load.load(Ordering::Relaxed);
            if load < least {
                best = s;
                least = load;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    impl Shards {
        fn loads(&self) -> Vec<usize> {
            self.shards
                .iter()
                .map(|s| s.load.load(Ordering::Relaxed))
                .collect()
        }
    }

    /// Serves one connection: answers its first byte with the serving thread's name,
    /// then holds the connection (and its seat) until the client closes it.
    async fn answer_with_thread(mut stream: TcpStream, _seat: Seat) {
        let mut b = [0u8; 1];
        if stream.read_exact(&mut b).await.is_err() {
            return;
        }
        let name = std::thread::current().name().unwrap_or("").to_string();
        let _ = stream.write_all(name.as_bytes()).await;
        let _ = stream.write_all(b"\n").await;
        while stream.read(&mut b).await.is_ok_and(|n| n > 0) {}
    }

    async fn open(listener: &TcpListener, shards: &Shards) -> (TcpStream, String) {
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut client = client.unwrap();
        shards
            .serve(accepted.unwrap().0, answer_with_thread)
            .unwrap();
        client.write_all(b"?").await.unwrap();
        let mut name = Vec::new();
        let mut b = [0u8; 1];
        while client.read(&mut b).await.unwrap() == 1 && b[0] != b'\n' {
            name.push(b[0]);
        }
        (client, String::from_utf8(name).unwrap())
    }

    async fn until(shards: &Shards, loads: &[usize]) {
        for _ in 0..500 {
            if shards.loads() == loads {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("loads {:?}, expected {loads:?}", shards.loads());
    }

    #[test]
    fn each_serving_thread_has_a_number_of_its_own_and_other_threads_none() {
        let (a, b) = (Shards::start(2).unwrap(), Shards::start(1).unwrap());
        let on = |shard: &Shard| {
            let (tx, rx) = std::sync::mpsc::channel();
            shard.handle.spawn(async move { tx.send(here()).unwrap() });
            rx.recv().unwrap()
        };
        let numbers: Vec<_> = a.shards.iter().chain(&b.shards).map(on).collect();
        assert!(numbers.iter().all(Option::is_some), "{numbers:?}");
        let mut distinct = numbers.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            3,
            "three threads, three numbers: {numbers:?}"
        );
        // The same thread keeps its number.
        assert_eq!(on(&a.shards[1]), numbers[1]);
        assert_eq!(here(), None, "the test's own thread is no serving thread");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_go_to_the_first_shard_serving_the_fewest_and_leave_it_when_they_end() {
        let shards = Shards::start(2).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // One at a time, connections stay on the first shard.
        for _ in 0..3 {
            let (one, on) = open(&listener, &shards).await;
            assert_eq!(on, "tapedeck-serve0");
            drop(one);
            until(&shards, &[0, 0]).await;
        }
        let (a, on_a) = open(&listener, &shards).await;
        let (b, on_b) = open(&listener, &shards).await;
        assert_eq!(
            (on_a.as_str(), on_b.as_str()),
            ("tapedeck-serve0", "tapedeck-serve1")
        );
        until(&shards, &[1, 1]).await;
        drop(a);
        until(&shards, &[0, 1]).await;
        let (_c, on_c) = open(&listener, &shards).await;
        assert_eq!(on_c, "tapedeck-serve0");
        let (_d, on_d) = open(&listener, &shards).await;
        assert_eq!(on_d, "tapedeck-serve0");
        until(&shards, &[2, 1]).await;
        drop(b);
        until(&shards, &[2, 0]).await;
        let (_e, on_e) = open(&listener, &shards).await;
        assert_eq!(on_e, "tapedeck-serve1");
    }

    /// A thread's state letter and its CPU ticks (user + system), from /proc.
    fn thread_stat(tid: i32) -> (char, u64) {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // The fields after the name (in parentheses): state is the first, utime and
        // stime the twelfth and thirteenth.
        let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
        (rest[0].chars().next().unwrap(), ticks)
    }

    #[test]
    fn an_idle_serving_thread_looks_for_work_until_some_is_queued_then_sleeps() {
        // Looking for a minute: a task queued from this thread must end the look at
        // once, not after the minute.
        let shards = Shards::start_with(1, Spin::Fixed(Duration::from_secs(60))).unwrap();
        let handle = shards.shards[0].handle.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..3 {
            let tx = tx.clone();
            handle.spawn(async move { tx.send(nix::unistd::gettid().as_raw()).unwrap() });
            let tid = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("a task queued for a looking thread runs");
            assert!(tid > 0);
        }

        // Looking for 1 ms: once it is over, the idle thread sleeps, spending no CPU.
        let shards = Shards::start_with(1, Spin::Fixed(Duration::from_millis(1))).unwrap();
        let handle = shards.shards[0].handle.clone();
        let tx2 = tx.clone();
        handle.spawn(async move { tx2.send(nix::unistd::gettid().as_raw()).unwrap() });
        let tid = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let (state, before) = thread_stat(tid);
        std::thread::sleep(Duration::from_millis(500));
        let (_, after) = thread_stat(tid);
        assert_eq!(state, 'S', "the idle serving thread sleeps");
        assert!(
            after - before <= 2,
            "an idle serving thread spent {} ticks in 500 ms",
            after - before
        );
    }
}
