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

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::Handle;

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

impl Shards {
    /// Starts `n` serving threads (at least one).
    pub fn start(n: usize) -> io::Result<Shards> {
        let mut shards = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name(format!("tapedeck-serve{i}"))
                .spawn(move || rt.block_on(std::future::pending::<()>()))?;
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
}
