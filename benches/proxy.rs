//! The tapedeck benchmark: one run, one table.
//!
//! Direct vs through `tapedeck record` vs `tapedeck replay` (and `mitmdump` as a
//! recording proxy when it is installed or can be pip-installed into target/bench-venv)
//! over HTTPS to the local LLM-shaped upstream: requests/s and p50/p99 for a 1 KB JSON at
//! concurrency 1 and 32, time to the first SSE event, peak RSS of the proxy while
//! streaming large bodies, replay cost in a 100- and a 100,000-event session, and time
//! to ready for a 100,000-event tape. Client, proxy and upstream share this machine.
//!
//! Run: `cargo bench --bench proxy` (TAPEDECK_BENCH_MITM=0 skips mitmproxy;
//! TAPEDECK_BENCH_ROUNDS=N sets the rounds;
//! TAPEDECK_BENCH_ONLY=direct,forwarder,record,replay,mitm,scale runs those parts only:
//! direct always runs, as every ratio needs it, and replay replays what record recorded;
//! TAPEDECK_BENCH_LOADS=c1,c32,big,late,h2 picks the loads, TAPEDECK_BENCH_C1,
//! TAPEDECK_BENCH_C32, TAPEDECK_BENCH_BIG, TAPEDECK_BENCH_LATE and TAPEDECK_BENCH_H2 the
//! requests in a c=1, a c=32, a 5 MB run, a c=1 run whose upstream answers 1 ms late and
//! an HTTP/2 run (32 streams at a time on one connection; TAPEDECK_BENCH_H2_STREAMS sets
//! how many) (to profile a longer one); TAPEDECK_BENCH_BIN measures another tapedeck binary; TAPEDECK_BENCH_KEEP keeps
//! the work directory (stores, tapes) for a look afterwards; TAPEDECK_GLIBC_DEFAULTS=1
//! leaves glibc's copies as they are on an AMD CPU for all of them (src/memcpy.rs).
//! The bare forwarder (`baseline/forwarder.rs`) is the floor: a proxy that ends TLS,
//! parses HTTP and sends it on, recording nothing.

#![forbid(unsafe_code)]

mod baseline;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use baseline::loadgen::{self, Load, Target};
use baseline::upstream::FastUpstream;
use tapedeck_model::exchange::canonical::{identify, KeyBody};
use tapedeck_model::exchange::{BodyRef, Event, RequestRecord, ResponseRecord, Timing};
use tapedeck_model::rules::Rules;

/// The binary measured: this build's, or TAPEDECK_BENCH_BIN (another build, to compare).
fn tapedeck() -> String {
    std::env::var("TAPEDECK_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tapedeck").into())
}

struct Proxy {
    child: Child,
    addr: SocketAddr,
    ready: Duration,
}

impl Proxy {
    fn start(args: &[&str], work: &Path) -> Proxy {
        let mut cmd = child_command(tapedeck());
        cmd.args(args)
            .args(["--listen", "127.0.0.1:0", "-q"])
            .env("TAPEDECK_LOG", "tapedeck=info")
            .current_dir(work);
        Proxy::spawn(cmd, &format!("tapedeck {}", args[0]))
    }

    /// Starts `cmd` and waits for the `listening on ADDR` line on its stderr.
    fn spawn(mut cmd: Command, label: &str) -> Proxy {
        let t0 = Instant::now();
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the proxy");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        // What it said before it listened: shown if it ends first.
        let said = Arc::new(Mutex::new(Vec::<String>::new()));
        let heard = said.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut shown = 0;
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.is_some() {
                    heard.lock().expect("lines").push(line.clone());
                }
                // A benchmark of misses measures nothing: say so, once or twice.
                if line.contains("MISS") && shown < 2 {
                    shown += 1;
                    eprintln!("bench: tapedeck said: {line}");
                }
                if let Some(p) = line.find(" listening on ") {
                    let rest = &line[p + 14..];
                    let a: String = rest.split([':', ' ']).take(2).collect::<Vec<_>>().join(":");
                    if let (Ok(a), Some(t)) = (a.parse::<SocketAddr>(), tx.take()) {
                        let _ = t.send(a);
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| {
                let said = said.lock().expect("lines");
                let tail = said[said.len().saturating_sub(20)..].join("\n");
                panic!("{label} did not listen ({e}); it said:\n{tail}")
            });
        eprintln!("bench: {label} is pid {}", child.id());
        Proxy {
            child,
            addr,
            ready: t0.elapsed(),
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn proc_kb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0.0)
}

/// CPU time (user + system) a process has used, in microseconds.
fn cpu_us(pid: u32) -> f64 {
    stat_cpu_us(Path::new(&format!("/proc/{pid}/stat")))
}

/// User + system CPU time in a `/proc/.../stat` file (a process's or a thread's), in µs.
fn stat_cpu_us(path: &Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks * 1e6 / 100.0
}

/// Each thread of a process, by its kind (its name without a trailing number: the
/// runtime's workers, tapedeck's serving threads, writer or read-ahead, sled's I/O
/// threads) and id: CPU time (µs) and voluntary and involuntary context switches so far.
/// Threads that ended are not counted.
fn threads(pid: u32) -> BTreeMap<(String, String), [f64; 3]> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.flatten() {
        let path = t.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let kind = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-')
            .to_string();
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        let field = |name: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let tid = t.file_name().to_string_lossy().into_owned();
        out.insert(
            (kind, tid),
            [
                stat_cpu_us(&path.join("stat")),
                field("voluntary_ctxt_switches:"),
                field("nonvoluntary_ctxt_switches:"),
            ],
        );
    }
    out
}

/// What each kind of thread took per exchange between two [`threads`] snapshots: CPU
/// µs, voluntary and involuntary switches, then the busiest thread's share of the kind's
/// CPU (%) and how many of its threads worked at all. The share shows whether work that
/// should spread over a kind's threads (the serving threads') did: 50 % of 2 is even.
fn per_exchange(
    before: &BTreeMap<(String, String), [f64; 3]>,
    after: BTreeMap<(String, String), [f64; 3]>,
    n: usize,
) -> BTreeMap<String, [f64; 5]> {
    let mut kinds: BTreeMap<String, ([f64; 3], Vec<f64>)> = BTreeMap::new();
    for (key, a) in after {
        let b = before.get(&key).copied().unwrap_or_default();
        let d = [0, 1, 2].map(|i| (a[i] - b[i]).max(0.0));
        let e = kinds.entry(key.0).or_default();
        (0..3).for_each(|i| e.0[i] += d[i]);
        e.1.push(d[0]);
    }
    kinds
        .into_iter()
        .map(|(kind, (sum, cpu))| {
            let busiest = cpu.iter().copied().fold(0.0, f64::max);
            let share = if sum[0] > 0.0 {
                100.0 * busiest / sum[0]
            } else {
                0.0
            };
            let working = cpu.iter().filter(|c| **c > 0.0).count() as f64;
            let per = sum.map(|v| v / n as f64);
            (kind, [per[0], per[1], per[2], share, working])
        })
        .collect()
}

const C1: usize = 3000;
const C32: usize = 40000;
const MITM_C1: usize = 150;
const MITM_C32: usize = 600;
const BIG: usize = 5 << 20;
const BIG_N: usize = 20;
/// Requests in a run of the late load: one connection, an upstream that answers each
/// [`LATE_US`] late (a remote one's shape: what an agent's call to a model sees).
const LATE_N: usize = 600;
const LATE_US: u64 = 1000;
/// Streams at a time on the HTTP/2 load's one connection: an agent's Go `net/http` or
/// httpx client multiplexing its calls to one host (TAPEDECK_BENCH_H2_STREAMS overrides:
/// 1 is an agent's sequential calls).
fn h2_streams() -> usize {
    count("TAPEDECK_BENCH_H2_STREAMS", 32).max(1)
}

struct Row {
    name: &'static str,
    /// Proxy CPU per exchange (µs), median over the rounds, when the proxy is tapedeck.
    cpu_us: Option<f64>,
    /// Proxy CPU per 5 MB exchange (ms), median over the rounds, when the proxy is tapedeck.
    big_cpu_ms: Option<f64>,
    /// Per kind of the proxy's threads at c=32: CPU µs, voluntary and involuntary
    /// switches per exchange, the busiest thread's share and the threads that worked
    /// (medians over the rounds; see [`per_exchange`]).
    threads: BTreeMap<String, [f64; 5]>,
    /// CPU per request of the baseline upstream and load generator (µs, c=32).
    sides: Option<(f64, f64)>,
    c1: Load,
    c32: Load,
    big: Load,
    late: Load,
    h2: Load,
    h2_cpu_us: Option<f64>,
    sse_ms: f64,
    rss: Vec<(usize, f64)>,
}

/// The median by requests/s; errors are summed over all runs.
fn median(mut runs: Vec<Load>) -> Load {
    if runs.is_empty() {
        return Load::default();
    }
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let errors = runs.iter().map(|r| r.errors).sum();
    let mut mid = runs[runs.len() / 2];
    mid.errors = errors;
    mid
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Whether the comma-separated list in `var` has an item `pick` takes; an unset or empty
/// list takes everything.
fn listed(var: &str, pick: impl Fn(&str) -> bool) -> bool {
    match std::env::var(var) {
        Ok(list) if !list.trim().is_empty() => list.split(',').map(str::trim).any(pick),
        _ => true,
    }
}

/// Whether a part of the benchmark runs (TAPEDECK_BENCH_ONLY).
fn wanted(part: &str) -> bool {
    listed("TAPEDECK_BENCH_ONLY", |p| {
        p == part || (part == "record" && p == "replay")
    })
}

fn rounds() -> usize {
    std::env::var("TAPEDECK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// The load of one target: c=1, c=32 and 5 MB bodies, each `rounds()` times; the proxy
/// process's CPU per exchange over the c=32 runs.
struct Measured {
    c1: Vec<Load>,
    c32: Vec<Load>,
    big: Vec<Load>,
    late: Vec<Load>,
    cpu: Vec<f64>,
    /// Proxy CPU per 5 MB exchange (ms), per run.
    big_cpu: Vec<f64>,
    /// Per kind of the proxy's threads, per c=32 run (see [`threads`]).
    threads: Vec<BTreeMap<String, [f64; 5]>>,
    /// CPU per request at c=32 of the baseline upstream and of the load generator (µs).
    sides: Vec<(f64, f64)>,
    /// HTTP/2, 32 streams at a time on one connection.
    h2: Vec<Load>,
    /// Proxy CPU per HTTP/2 exchange (µs), per run.
    h2_cpu: Vec<f64>,
}

/// Which loads a round runs (TAPEDECK_BENCH_LOADS, a comma-separated list of c1, c32,
/// big, late and h2; all by default): profiling one load at a time keeps the others out of it.
fn load_wanted(load: &str) -> bool {
    listed("TAPEDECK_BENCH_LOADS", |l| l == load)
}

/// Requests in a c=32 run (TAPEDECK_BENCH_C32 overrides, to profile a longer run).
fn c32_total() -> usize {
    count("TAPEDECK_BENCH_C32", C32)
}

/// Requests in a c=1 run (TAPEDECK_BENCH_C1 overrides).
fn c1_total() -> usize {
    count("TAPEDECK_BENCH_C1", C1)
}

/// Requests in a 5 MB run (TAPEDECK_BENCH_BIG overrides).
fn big_total() -> usize {
    count("TAPEDECK_BENCH_BIG", BIG_N)
}

/// Requests in an HTTP/2 run (TAPEDECK_BENCH_H2 overrides).
fn h2_total() -> usize {
    count("TAPEDECK_BENCH_H2", C32)
}

/// Requests in a run of the late load (TAPEDECK_BENCH_LATE overrides).
fn late_total() -> usize {
    count("TAPEDECK_BENCH_LATE", LATE_N)
}

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn measure_round(t: &Target, pid: Option<u32>, m: &mut Measured) {
    if load_wanted("c1") {
        m.c1.push(loadgen::run(t, 1, c1_total(), |_| "/json".into()));
    }
    if load_wanted("c32") {
        measure_c32(t, pid, m);
    }
    if load_wanted("big") {
        let c0 = pid.map(cpu_us);
        m.big.push(loadgen::run(t, 1, big_total(), |_| {
            format!("/big?bytes={BIG}")
        }));
        if let (Some(pid), Some(c0)) = (pid, c0) {
            m.big_cpu
                .push((cpu_us(pid) - c0) / big_total() as f64 / 1000.0);
        }
    }
    if load_wanted("late") {
        m.late.push(loadgen::run(t, 1, late_total(), |_| {
            format!("/json?delay_us={LATE_US}")
        }));
    }
    if load_wanted("h2") {
        let c0 = pid.map(cpu_us);
        m.h2.push(loadgen::run_h2(
            &t.h2(),
            1,
            h2_streams(),
            h2_total(),
            |_| "/json".into(),
        ));
        if let (Some(pid), Some(c0)) = (pid, c0) {
            m.h2_cpu.push((cpu_us(pid) - c0) / h2_total() as f64);
        }
    }
}

/// One proxy alone: the warm-up, `n_rounds` rounds, time to the first SSE event and peak
/// RSS after large bodies; then the proxy is stopped.
fn measure_proxy(via: &Target, p: Proxy, n_rounds: usize, sse: &str, name: &'static str) -> Row {
    loadgen::run(via, 8, 2000, |_| "/json".into());
    let mut m = Measured::new();
    for _ in 0..n_rounds {
        measure_round(via, Some(p.child.id()), &mut m);
    }
    let first = loadgen::first_frame_ms(via, sse, 30);
    let rss = rss_after_bodies(via, p.child.id());
    p.stop();
    m.row(name, first, rss)
}

fn measure_c32(t: &Target, pid: Option<u32>, m: &mut Measured) {
    let total = c32_total();
    let c0 = pid.map(cpu_us);
    let t0 = pid.map(threads);
    // The load generator's threads end with each run: its CPU is this process's, less
    // the upstream's (nothing else here works meanwhile).
    let (u0, p0) = (
        baseline::threads_cpu_us("fast-upstream"),
        cpu_us(std::process::id()),
    );
    m.c32.push(loadgen::run(t, 32, total, |_| "/json".into()));
    let up = baseline::threads_cpu_us("fast-upstream") - u0;
    let all = cpu_us(std::process::id()) - p0;
    m.sides
        .push((up / total as f64, (all - up).max(0.0) / total as f64));
    if let (Some(pid), Some(c0)) = (pid, c0) {
        m.cpu.push((cpu_us(pid) - c0) / total as f64);
    }
    if let (Some(pid), Some(t0)) = (pid, t0) {
        m.threads.push(per_exchange(&t0, threads(pid), total));
    }
}

impl Measured {
    fn new() -> Measured {
        Measured {
            c1: vec![],
            c32: vec![],
            big: vec![],
            late: vec![],
            cpu: vec![],
            big_cpu: vec![],
            threads: vec![],
            sides: vec![],
            h2: vec![],
            h2_cpu: vec![],
        }
    }
    fn row(self, name: &'static str, sse_ms: f64, rss: Vec<(usize, f64)>) -> Row {
        let cpu_us = (!self.cpu.is_empty()).then(|| median_f(self.cpu));
        let big_cpu_ms = (!self.big_cpu.is_empty()).then(|| median_f(self.big_cpu));
        let h2_cpu_us = (!self.h2_cpu.is_empty()).then(|| median_f(self.h2_cpu));
        let mut threads = BTreeMap::new();
        for kind in self.threads.iter().flat_map(|t| t.keys()) {
            if threads.contains_key(kind) {
                continue;
            }
            let of = |i: usize| {
                median_f(
                    self.threads
                        .iter()
                        .map(|t| t.get(kind).map_or(0.0, |v| v[i]))
                        .collect(),
                )
            };
            threads.insert(kind.clone(), [0, 1, 2, 3, 4].map(of));
        }
        let sides = (!self.sides.is_empty()).then(|| {
            (
                median_f(self.sides.iter().map(|s| s.0).collect()),
                median_f(self.sides.iter().map(|s| s.1).collect()),
            )
        });
        Row {
            name,
            cpu_us,
            big_cpu_ms,
            threads,
            sides,
            c1: median(self.c1),
            c32: median(self.c32),
            big: median(self.big),
            late: median(self.late),
            h2: median(self.h2),
            h2_cpu_us,
            sse_ms,
            rss,
        }
    }
}

fn rss_after_bodies(t: &Target, pid: u32) -> Vec<(usize, f64)> {
    [1usize, 5, 20]
        .into_iter()
        .map(|mb| {
            loadgen::run(t, 4, 12, move |_| format!("/big?bytes={}", mb << 20));
            (mb, proc_kb(pid, "VmHWM") / 1024.0)
        })
        .collect()
}

fn mitmdump() -> Option<PathBuf> {
    if std::env::var("TAPEDECK_BENCH_MITM").as_deref() == Ok("0") {
        return None;
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v mitmdump"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv");
    let bin = venv.join("bin/mitmdump");
    if !bin.exists() {
        eprintln!(
            "bench: installing mitmproxy into {} (TAPEDECK_BENCH_MITM=0 skips)",
            venv.display()
        );
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "mitmproxy"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        if !ok {
            eprintln!("bench: mitmproxy could not be installed; skipping it");
            return None;
        }
    }
    bin.exists().then_some(bin)
}

struct Mitm {
    child: Child,
    addr: SocketAddr,
    ca: Vec<u8>,
}

fn start_mitm(bin: &Path, work: &Path, upstream_ca: &Path) -> Option<Mitm> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = work.join("mitm-conf");
    std::fs::create_dir_all(&conf).ok()?;
    let mut cmd = child_command(bin);
    let child = cmd
        .args([
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
            "-q",
        ])
        .args(["--set", &format!("confdir={}", conf.display())])
        .args([
            "--set",
            &format!("ssl_verify_upstream_trusted_ca={}", upstream_ca.display()),
        ])
        .args(["-w", &work.join("mitm.flows").display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ca = std::fs::read(conf.join("mitmproxy-ca-cert.pem")).ok()?;
    Some(Mitm { child, addr, ca })
}

/// A tape of `n` sequential GET /json?i=k events, written with the library.
fn synthetic_tape(path: &Path, base: &str, n: usize) {
    let rules = Rules::default();
    let fp = rules.match_fingerprint();
    let body = br#"{"ok":true,"payload":"0123456789abcdef0123456789abcdef"}"#.to_vec();
    let body_ref = BodyRef {
        b3: blake3::hash(&body).to_hex().to_string(),
        len: body.len() as u64,
        encoding: None,
        at: None,
    };
    let empty = BodyRef::empty();
    // What the load generator sends (an `accept` would take part in the key, and every
    // request would be a miss).
    let headers: Vec<(String, String)> = Vec::new();
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let url = format!("{base}/json?i={i}");
            let (kind, key) = identify("GET", &url, &headers, KeyBody::Whole(b""), &rules);
            let t = i as u64 * 2_000_000;
            Event {
                step: i as u64 + 1,
                kind,
                key,
                rules: Some(fp.clone()),
                agent: None,
                request: RequestRecord {
                    method: "GET".into(),
                    url,
                    version: "HTTP/1.1".into(),
                    headers: headers.clone(),
                    body: empty.clone(),
                },
                response: Some(ResponseRecord {
                    status: 200,
                    version: "HTTP/1.1".into(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: body_ref.clone(),
                    chunks: None,
                    complete: true,
                    trailers: Vec::new(),
                    broke: None,
                    members: Vec::new(),
                }),
                timing: Timing {
                    start_ns: t,
                    end_ns: t + 1_000_000,
                    ttfb_ns: Some(900_000),
                    start_unix_ns: t,
                    end_unix_ns: t + 1_000_000,
                },
                error: None,
                ws: None,
                injected: None,
            }
        })
        .collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("tape"));
    tapedeck_store::tape::write(
        &mut out,
        "synthetic",
        &events,
        |r| Ok(if r.len == 0 { Vec::new() } else { body.clone() }),
        |_| {},
    )
    .expect("write tape");
}

/// An OTLP/HTTP endpoint that accepts everything (for the live-export row).
async fn otlp_sink() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt;
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::new()),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn main() {
    // The baseline copies memory as tapedeck does (src/memcpy.rs): on an AMD CPU whose
    // glibc would copy with `rep movsb`, this binary runs again with glibc's tunable, and
    // the forwarder, the tapedecks and mitmdump it starts inherit it. A baseline left
    // without it is slower with large bodies (1,451-1,915 MB/s against 1,149-2,053,
    // medians 1,569 and 1,895, eight alternated pairs), and a slower baseline flatters.
    tapedeck::memcpy::tune();
    if std::env::var_os("TAPEDECK_BENCH_FORWARDER").is_some() {
        // This binary, started again as the bare forwarder (see `baseline::forwarder`).
        baseline::forwarder::main();
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

/// The prefix of the bench's work directory in the temp dir.
const WORK_PREFIX: &str = "tapedeck-bench-";

/// A command that runs `program` so that it gets SIGTERM when the bench dies: a bench
/// killed midway (Ctrl-C, `pkill`) leaves no proxy running on behind it. util-linux's
/// `setpriv --pdeathsig` sets that up and then executes the program in its own process
/// (the pid the bench watches is the program's); without `setpriv`, the program runs as
/// it is.
fn child_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    static SETPRIV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let setpriv = *SETPRIV.get_or_init(|| {
        Command::new("setpriv")
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !setpriv {
        return Command::new(program);
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "TERM", "--"]).arg(program);
    cmd
}

/// Removes the work directories of earlier bench runs that were killed before they could
/// clean up (each holds a store that can reach gigabytes, and the temp dir may be a
/// tmpfs): those whose `pid` file names a process that is gone.
fn sweep_killed_runs() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let named = e.file_name().to_string_lossy().starts_with(WORK_PREFIX);
        let Some(pid) = named
            .then(|| std::fs::read_to_string(path.join("pid")).ok())
            .flatten()
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let mb = du_bytes(&path) as f64 / 1e6;
        match std::fs::remove_dir_all(&path) {
            Ok(()) => eprintln!(
                "bench: removed {} ({mb:.1} MB), left by a run (pid {pid}) that was killed",
                path.display()
            ),
            Err(err) => eprintln!("bench: cannot remove {}: {err}", path.display()),
        }
    }
}

/// The bytes of the files under `dir`.
fn du_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => du_bytes(&e.path()),
                _ => e.metadata().map_or(0, |m| m.len()),
            })
            .sum()
    })
}

async fn run() {
    sweep_killed_runs();
    let mut work = tempfile::Builder::new()
        .prefix(WORK_PREFIX)
        .tempdir()
        .expect("tempdir");
    // TAPEDECK_BENCH_KEEP keeps the stores and tapes for a look afterwards.
    if std::env::var_os("TAPEDECK_BENCH_KEEP").is_some() {
        work.disable_cleanup(true);
        eprintln!("bench: keeping {}", work.path().display());
    }
    let w = work.path();
    std::fs::write(w.join("pid"), std::process::id().to_string()).expect("write the bench's pid");
    let up = FastUpstream::start(w);
    let up_ca = up.ca_path.to_str().expect("path").to_string();
    let store = w.join("store");
    let certs = w.join("certs");
    let (store_s, certs_s) = (store.display().to_string(), certs.display().to_string());
    let sse = "/sse?n=3&gap_ms=50";
    let n_rounds = rounds();
    let mut rows = Vec::new();

    eprintln!("bench: direct (fast baseline upstream and load generator)");
    let direct = Target::new(up.addr, None, &[up.ca_pem.as_bytes()]);
    loadgen::run(&direct, 8, 2000, |_| "/json".into()); // warm up
    let mut dm = Measured::new();
    for _ in 0..n_rounds {
        measure_round(&direct, None, &mut dm);
    }
    let dsse = loadgen::first_frame_ms(&direct, sse, 30);
    rows.push(dm.row("direct", dsse, vec![]));

    if wanted("forwarder") {
        eprintln!(
            "bench: bare forwarder (TLS in, HTTP parsed, sent on over TLS; nothing recorded)"
        );
        let fwd_ca = w.join("forwarder-ca.pem");
        let mut cmd = child_command(std::env::current_exe().expect("the bench binary"));
        cmd.env("TAPEDECK_BENCH_FORWARDER", "1")
            .env("TAPEDECK_BENCH_UPSTREAM", up.addr.to_string())
            .env("TAPEDECK_BENCH_UPSTREAM_CA", &up.ca_path)
            .env("TAPEDECK_BENCH_FORWARDER_CA", &fwd_ca);
        let f = Proxy::spawn(cmd, "bare forwarder");
        let fca = std::fs::read(&fwd_ca).expect("the forwarder's CA");
        let via = Target::new(up.addr, Some(f.addr), &[&fca]);
        rows.push(measure_proxy(
            &via,
            f,
            n_rounds,
            sse,
            "bare forwarder (floor)",
        ));
    }

    // The CA every tapedeck below shares (created now, so any part can run alone).
    let made = Command::new(tapedeck())
        .args(["ca", "--certs", &certs_s])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("tapedeck ca");
    assert!(made.success(), "tapedeck ca failed");
    let ca = std::fs::read(certs.join("ca.pem")).expect("ca");

    if wanted("record") {
        eprintln!("bench: tapedeck record, with and without --otlp-endpoint, rounds interleaved");
        // Both recorders run side by side and take turns, so drift on this shared machine
        // hits both alike: the live-export cost is the difference between them.
        let collector = otlp_sink().await;
        let store2 = w.join("store-otlp").display().to_string();
        let endpoint = format!("http://{collector}");
        let record_args = |session: &'static str, store: &str| -> Vec<String> {
            [
                "record",
                "--session",
                session,
                "--store",
                store,
                "--certs",
                &certs_s,
                "--upstream-ca",
                &up_ca,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let args: Vec<String> = record_args("bench", &store_s);
        let rec = Proxy::start(&args.iter().map(String::as_str).collect::<Vec<_>>(), w);
        let mut args = record_args("bench-otlp", &store2);
        args.extend(["--otlp-endpoint".to_string(), endpoint]);
        let recotlp = Proxy::start(&args.iter().map(String::as_str).collect::<Vec<_>>(), w);
        let via = Target::new(up.addr, Some(rec.addr), &[&ca]);
        let via_otlp = Target::new(up.addr, Some(recotlp.addr), &[&ca]);
        loadgen::run(&via, 8, 2000, |_| "/json".into());
        loadgen::run(&via_otlp, 8, 2000, |_| "/json".into());
        let (mut rm, mut om) = (Measured::new(), Measured::new());
        // The order is swapped each round: whichever goes second is measured on a warmer
        // (or busier) machine, and swapping cancels that.
        for round in 0..n_rounds.max(2) {
            for first in [round % 2 == 0, round % 2 == 1] {
                if first {
                    measure_round(&via, Some(rec.child.id()), &mut rm);
                } else {
                    measure_round(&via_otlp, Some(recotlp.child.id()), &mut om);
                }
            }
        }
        let rsse = loadgen::first_frame_ms(&via, sse, 30);
        let osse = loadgen::first_frame_ms(&via_otlp, sse, 30);
        recotlp.stop();
        let rss = rss_after_bodies(&via, rec.child.id());
        rec.stop();
        rows.push(rm.row("tapedeck record", rsse, rss));
        rows.push(om.row("tapedeck record + live OTLP", osse, vec![]));
    }

    if wanted("replay") {
        eprintln!("bench: tapedeck replay");
        let rep = Proxy::start(
            &[
                "replay",
                "--session",
                "bench",
                "--store",
                &store_s,
                "--certs",
                &certs_s,
            ],
            w,
        );
        let via = Target::new(up.addr, Some(rep.addr), &[&ca]);
        // The same warm-up as the recording had (in `measure_proxy`), so requests meet
        // the events in the order they were recorded in.
        rows.push(measure_proxy(&via, rep, n_rounds, sse, "tapedeck replay"));
    }

    if let Some(bin) = mitmdump().filter(|_| wanted("mitm")) {
        eprintln!("bench: mitmdump (recording to a flow file)");
        if let Some(m) = start_mitm(&bin, w, &up.ca_path) {
            let via = Target::new(up.addr, Some(m.addr), &[&m.ca]);
            loadgen::run(&via, 4, 40, |_| "/json".into());
            let mut mm = Measured::new();
            mm.c1
                .push(loadgen::run(&via, 1, MITM_C1, |_| "/json".into()));
            mm.c32
                .push(loadgen::run(&via, 32, MITM_C32, |_| "/json".into()));
            mm.big
                .push(loadgen::run(&via, 1, 4, |_| format!("/big?bytes={BIG}")));
            mm.late.push(loadgen::run(&via, 1, MITM_C1, |_| {
                format!("/json?delay_us={LATE_US}")
            }));
            mm.h2.push(loadgen::run_h2(
                &via.h2(),
                1,
                h2_streams(),
                MITM_C32,
                |_| "/json".into(),
            ));
            let msse = loadgen::first_frame_ms(&via, sse, 10);
            let rss = rss_after_bodies(&via, m.child.id());
            let mut child = m.child;
            let _ = child.kill();
            let _ = child.wait();
            rows.push(mm.row("mitmdump -w", msse, rss));
        } else {
            eprintln!("bench: mitmdump did not start; skipping it");
        }
    }

    eprintln!("bench: replay lookup cost, time to ready and memory by session size");
    let base = format!("https://localhost:{}", up.addr.port());
    let mut scale = Vec::new();
    let sizes: &[usize] = if wanted("scale") {
        &[100, 100_000]
    } else {
        &[]
    };
    for &n in sizes {
        let tape = w.join(format!("synthetic-{n}.jsonl"));
        synthetic_tape(&tape, &base, n);
        let p = Proxy::start(
            &[
                "replay",
                "--tape",
                tape.to_str().expect("path"),
                "--certs",
                &certs_s,
            ],
            w,
        );
        let rss_ready = proc_kb(p.child.id(), "VmRSS") / 1024.0;
        let via = Target::new(up.addr, Some(p.addr), &[&ca]);
        // 99 measured and one warm-up (numbered past them: i=99), so every request of the
        // 100-event tape has its event.
        let l = loadgen::run(&via, 1, 99, |i| format!("/json?i={i}"));
        scale.push((n, p.ready, rss_ready, l));
        p.stop();
    }

    print_table(&rows, &scale, n_rounds);
}

fn print_table(rows: &[Row], scale: &[(usize, Duration, f64, Load)], n_rounds: usize) {
    let direct = &rows[0];
    println!();
    println!(
        "tapedeck benchmark — 1 KB JSON over HTTPS, keep-alive HTTP/1.1, fast baseline \
         (minimal hyper upstream, minimal load generator), {} cores shared; medians of {n_rounds} rounds{}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        if tapedeck::memcpy::tuned() {
            "; glibc's copies kept off `rep movsb` for every process (src/memcpy.rs)"
        } else {
            ""
        }
    );
    println!();
    println!("| target | c=1 req/s | c=1 p50 ms | c=1 p99 ms | c=32 req/s | c=32 p50 ms | c=32 p99 ms | × direct (c=32) | +p50 c=1 ms | 5 MB MB/s | × direct (5 MB) | SSE 1st event ms | proxy CPU µs/exchange | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {:.2} | {:+.3} | {:.0} | {:.2} | {:.2} | {} | {} |",
            r.name,
            r.c1.rps,
            r.c1.p50_ms,
            r.c1.p99_ms,
            r.c32.rps,
            r.c32.p50_ms,
            r.c32.p99_ms,
            r.c32.rps / direct.c32.rps,
            r.c1.p50_ms - direct.c1.p50_ms,
            r.big.mb_s,
            r.big.mb_s / direct.big.mb_s,
            r.sse_ms,
            r.cpu_us.map_or("-".to_string(), |c| format!("{c:.1}")),
            r.c1.errors + r.c32.errors + r.big.errors + r.late.errors + r.h2.errors
        );
    }
    if direct.late.rps > 0.0 {
        println!();
        println!(
            "| c=1, the upstream answering {LATE_US} µs late | p50 ms | p99 ms | +p50 ms | errors |"
        );
        println!("|---|---:|---:|---:|---:|");
        // Replay answers without the upstream, so without its wait: below direct.
        for r in rows.iter().filter(|r| r.late.rps > 0.0) {
            println!(
                "| {} | {:.3} | {:.3} | {:+.3} | {} |",
                r.name,
                r.late.p50_ms,
                r.late.p99_ms,
                r.late.p50_ms - direct.late.p50_ms,
                r.late.errors
            );
        }
    }
    if direct.h2.rps > 0.0 {
        println!();
        println!(
            "| HTTP/2, {} streams at a time on one connection | req/s | × direct | p50 ms | p99 ms | proxy CPU µs/exchange | errors |",
            h2_streams()
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for r in rows.iter().filter(|r| r.h2.rps > 0.0) {
            println!(
                "| {} | {:.0} | {:.2} | {:.3} | {:.3} | {} | {} |",
                r.name,
                r.h2.rps,
                r.h2.rps / direct.h2.rps,
                r.h2.p50_ms,
                r.h2.p99_ms,
                r.h2_cpu_us.map_or("-".to_string(), |c| format!("{c:.1}")),
                r.h2.errors
            );
        }
    }
    let big_cpu: Vec<String> = rows
        .iter()
        .filter_map(|r| r.big_cpu_ms.map(|ms| format!("{} {ms:.2} ms", r.name)))
        .collect();
    if !big_cpu.is_empty() {
        println!();
        println!("proxy CPU per 5 MB exchange: {}", big_cpu.join(", "));
    }
    if let Some((up, client)) = direct.sides {
        println!();
        println!(
            "baseline CPU per request at c=32 (direct): upstream {up:.1} µs, load generator {client:.1} µs"
        );
    }
    println!();
    println!(
        "| proxy at c=32, per exchange | threads | CPU µs | voluntary switches | involuntary switches | the busiest thread's share of the CPU |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for r in rows.iter() {
        // Threads that did next to nothing under the load (idle pools, timers) are left out.
        for (kind, [cpu, vol, invol, share, working]) in
            r.threads.iter().filter(|(_, v)| v[0] >= 0.05)
        {
            println!(
                "| {} | {kind} | {cpu:.1} | {vol:.3} | {invol:.3} | {share:.0} % of {working:.0} |",
                r.name
            );
        }
    }
    println!();
    println!("| proxy | peak RSS after 1 MB bodies | after 5 MB | after 20 MB |");
    println!("|---|---:|---:|---:|");
    for r in rows.iter().filter(|r| !r.rss.is_empty()) {
        let v: Vec<String> = r.rss.iter().map(|(_, m)| format!("{m:.1} MB")).collect();
        println!("| {} | {} |", r.name, v.join(" | "));
    }
    println!();
    println!(
        "| replay session size | time to ready | RSS when ready | per-request p50 ms | p99 ms | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (n, ready, rss, l) in scale {
        println!(
            "| {n} events | {:.0} ms | {rss:.1} MB | {:.3} | {:.3} | {} |",
            ready.as_secs_f64() * 1000.0,
            l.p50_ms,
            l.p99_ms,
            l.errors
        );
    }
}
