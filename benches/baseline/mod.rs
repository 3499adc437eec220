//! The fast baseline the benchmark measures tapedeck against: a minimal hyper upstream
//! and a minimal keep-alive load generator, each on a thread of its own; and the bare
//! forwarder, the floor a proxy that reads the traffic can approach.

pub mod forwarder;
pub mod loadgen;
pub mod upstream;

/// The runtime each side of the baseline runs on: current-thread by default, or
/// TAPEDECK_BENCH_BASELINE_THREADS worker threads named `name`.
pub fn runtime(name: &str) -> tokio::runtime::Runtime {
    let threads: usize = std::env::var("TAPEDECK_BENCH_BASELINE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime")
    }
}

/// Whether the client of a TLS connection chose HTTP/2 (ALPN `h2`).
pub fn is_h2<IO>(tls: &tokio_rustls::server::TlsStream<IO>) -> bool {
    tls.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// CPU time (user + system, µs) used so far by this process's threads whose name starts
/// with `prefix`: what one side of the baseline spends, whatever else the machine runs.
pub fn threads_cpu_us(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0.0;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    }
    ticks * 1e6 / 100.0
}
