//! The tapedeck benchmark: one run, one table.
//!
//! Direct vs through `tapedeck record` vs `tapedeck replay` (and `mitmdump` as a
//! recording proxy when it is installed or can be pip-installed into target/bench-venv)
//! over HTTPS to the local LLM-shaped upstream: requests/s and p50/p99 for a 1 KB JSON at
//! concurrency 1 and 32, time to the first SSE event, peak RSS of the proxy while
//! streaming large bodies, replay cost in a 100- and a 100,000-event session, and time
//! to ready for a 100,000-event tape. Client, proxy and upstream share this machine.
//!
//! Run: `cargo bench --bench proxy` (TAPEDECK_BENCH_MITM=0 skips mitmproxy).

#[path = "../tests/support/upstream.rs"]
mod upstream;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tapedeck::exchange::canonical::{identify, KeyBody};
use tapedeck::exchange::{BodyRef, Event, RequestRecord, ResponseRecord, Timing};
use tapedeck::rules::Rules;
use upstream::Upstream;

const TAPEDECK: &str = env!("CARGO_BIN_EXE_tapedeck");

struct Proxy {
    child: Child,
    addr: SocketAddr,
    ready: Duration,
}

impl Proxy {
    fn start(args: &[&str], work: &Path) -> Proxy {
        let t0 = Instant::now();
        let mut child = Command::new(TAPEDECK)
            .args(args)
            .args(["--listen", "127.0.0.1:0", "-q"])
            .env("TAPEDECK_LOG", "tapedeck=info")
            .current_dir(work)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tapedeck");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(err).lines().map_while(Result::ok) {
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
            .expect("tapedeck listens");
        Proxy {
            child,
            addr,
            ready: t0.elapsed(),
        }
    }

    fn peak_rss_mb(&self) -> f64 {
        proc_kb(self.child.id(), "VmHWM") / 1024.0
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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks * 1e6 / 100.0
}

fn client(proxy: Option<SocketAddr>, ca_pem: &[u8]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(64)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("pem"))
        .timeout(Duration::from_secs(120));
    b = match proxy {
        Some(a) => b.proxy(reqwest::Proxy::all(format!("http://{a}")).expect("proxy")),
        None => b.no_proxy(),
    };
    b.build().expect("client")
}

#[derive(Clone, Copy, Default)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

/// `total` GETs of `urls(i)` with `conc` workers; latency of each.
async fn load(
    c: &reqwest::Client,
    conc: usize,
    total: usize,
    url: impl Fn(usize) -> String,
) -> Load {
    let urls: Vec<String> = (0..total).map(&url).collect();
    let urls = std::sync::Arc::new(urls);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (c, urls, next) = (c.clone(), urls.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= urls.len() {
                    break;
                }
                let t = Instant::now();
                match c.get(&urls[i]).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                    }
                    _ => errors += 1,
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("worker");
        all.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Load {
        rps: total as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

/// Three runs of [`load`]; the median one by requests/s (this machine is noisy).
async fn load3(
    c: &reqwest::Client,
    conc: usize,
    total: usize,
    url: impl Fn(usize) -> String + Copy,
) -> Load {
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(load(c, conc, total, url).await);
    }
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mut mid = runs[1];
    mid.errors = runs.iter().map(|r| r.errors).sum();
    mid
}

/// The median run by requests/s.
fn median(mut runs: Vec<Load>) -> Load {
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

/// Median time to the first SSE chunk.
async fn first_sse_ms(c: &reqwest::Client, url: &str, n: usize) -> f64 {
    let mut v = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let mut r = c.get(url).send().await.expect("sse");
        let _ = r.chunk().await;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
        while let Ok(Some(_)) = r.chunk().await {}
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

const C1: usize = 1500;
const C32: usize = 16000;
const MITM_C1: usize = 150;
const MITM_C32: usize = 600;

struct Row {
    name: &'static str,
    /// Proxy CPU per request at c=32 (µs), when the proxy is a tapedeck process.
    cpu_us: Option<f64>,
    c1: Load,
    c32: Load,
    sse_ms: f64,
    rss: Vec<(usize, f64)>,
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
    let child = Command::new(bin)
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
    };
    let empty = BodyRef::empty();
    let headers = vec![("accept".to_string(), "*/*".to_string())];
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
                }),
                timing: Timing {
                    start_ns: t,
                    end_ns: t + 1_000_000,
                    ttfb_ns: Some(900_000),
                    start_unix_ns: t,
                    end_unix_ns: t + 1_000_000,
                },
                error: None,
            }
        })
        .collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("tape"));
    tapedeck::tape::write(
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let up = Upstream::start(true).await;
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let up_ca = up.ca_path.to_str().expect("path").to_string();
    let store = w.join("store");
    let certs = w.join("certs");
    let (store_s, certs_s) = (store.display().to_string(), certs.display().to_string());
    let json = |_: usize| up.url("/json");
    let sse = up.url("/sse?n=3&gap_ms=50");
    let mut rows = Vec::new();

    eprintln!("bench: direct");
    let direct = client(None, up.ca_pem.as_bytes());
    load(&direct, 8, 300, json).await; // warm up
    let d1 = load3(&direct, 1, C1, json).await;
    let d32 = load3(&direct, 32, C32, json).await;
    let dsse = first_sse_ms(&direct, &sse, 30).await;
    rows.push(Row {
        name: "direct",
        cpu_us: None,
        c1: d1,
        c32: d32,
        sse_ms: dsse,
        rss: vec![],
    });

    eprintln!("bench: tapedeck record, with and without --otlp-endpoint, runs interleaved");
    // Both recorders run side by side and take turns, so drift on this shared machine
    // hits both alike: the live-export cost is the difference between them.
    let collector = otlp_sink().await;
    let store2 = w.join("store-otlp").display().to_string();
    let endpoint = format!("http://{collector}");
    let rec = Proxy::start(
        &[
            "record",
            "--session",
            "bench",
            "--store",
            &store_s,
            "--certs",
            &certs_s,
            "--upstream-ca",
            &up_ca,
        ],
        w,
    );
    let ca = std::fs::read(certs.join("ca.pem")).expect("ca");
    let recotlp = Proxy::start(
        &[
            "record",
            "--session",
            "bench-otlp",
            "--store",
            &store2,
            "--certs",
            &certs_s,
            "--upstream-ca",
            &up_ca,
            "--otlp-endpoint",
            &endpoint,
        ],
        w,
    );
    let via = client(Some(rec.addr), &ca);
    let via_otlp = client(Some(recotlp.addr), &ca);
    load(&via, 8, 300, json).await;
    load(&via_otlp, 8, 300, json).await;
    let (mut a1, mut a32, mut acpu, mut b1, mut b32, mut bcpu) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    // Four rounds, the order swapped each round: whichever goes second is measured on a
    // warmer (or busier) machine, and swapping cancels that.
    for round in 0..4 {
        for first in [round % 2 == 0, round % 2 == 1] {
            let (c, p, l1, l32, cpu) = if first {
                (&via, &rec, &mut a1, &mut a32, &mut acpu)
            } else {
                (&via_otlp, &recotlp, &mut b1, &mut b32, &mut bcpu)
            };
            l1.push(load(c, 1, C1, json).await);
            let c0 = cpu_us(p.child.id());
            l32.push(load(c, 32, C32, json).await);
            cpu.push((cpu_us(p.child.id()) - c0) / C32 as f64);
        }
    }
    let rsse = first_sse_ms(&via, &sse, 30).await;
    let osse = first_sse_ms(&via_otlp, &sse, 30).await;
    recotlp.stop();
    let mut rss = Vec::new();
    for mb in [1usize, 5, 20] {
        let url = up.url(&format!("/big?bytes={}", mb << 20));
        load(&via, 4, 12, |_| url.clone()).await;
        rss.push((mb, rec.peak_rss_mb()));
    }
    rec.stop();
    rows.push(Row {
        name: "tapedeck record",
        cpu_us: Some(median_f(acpu)),
        c1: median(a1),
        c32: median(a32),
        sse_ms: rsse,
        rss,
    });
    rows.push(Row {
        name: "tapedeck record + live OTLP",
        cpu_us: Some(median_f(bcpu)),
        c1: median(b1),
        c32: median(b32),
        sse_ms: osse,
        rss: vec![],
    });

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
    let via = client(Some(rep.addr), &ca);
    load(&via, 8, 300, json).await;
    let p1 = load3(&via, 1, C1, json).await;
    let cpu0 = cpu_us(rep.child.id());
    let p32 = load3(&via, 32, C32, json).await;
    let pcpu = (cpu_us(rep.child.id()) - cpu0) / (3 * C32) as f64;
    let psse = first_sse_ms(&via, &sse, 30).await;
    let mut rss = Vec::new();
    for mb in [1usize, 5, 20] {
        let url = up.url(&format!("/big?bytes={}", mb << 20));
        load(&via, 4, 12, |_| url.clone()).await;
        rss.push((mb, rep.peak_rss_mb()));
    }
    rep.stop();
    rows.push(Row {
        name: "tapedeck replay",
        cpu_us: Some(pcpu),
        c1: p1,
        c32: p32,
        sse_ms: psse,
        rss,
    });

    if let Some(bin) = mitmdump() {
        eprintln!("bench: mitmdump (recording to a flow file)");
        if let Some(m) = start_mitm(&bin, w, &up.ca_path) {
            let via = client(Some(m.addr), &m.ca);
            load(&via, 4, 40, json).await;
            let m1 = load(&via, 1, MITM_C1, json).await;
            let m32 = load(&via, 32, MITM_C32, json).await;
            let msse = first_sse_ms(&via, &sse, 10).await;
            let mut rss = Vec::new();
            for mb in [1usize, 5, 20] {
                let url = up.url(&format!("/big?bytes={}", mb << 20));
                load(&via, 4, 8, |_| url.clone()).await;
                rss.push((mb, proc_kb(m.child.id(), "VmHWM") / 1024.0));
            }
            let mut child = m.child;
            let _ = child.kill();
            let _ = child.wait();
            rows.push(Row {
                name: "mitmdump -w",
                cpu_us: None,
                c1: m1,
                c32: m32,
                sse_ms: msse,
                rss,
            });
        } else {
            eprintln!("bench: mitmdump did not start; skipping it");
        }
    }

    eprintln!("bench: replay lookup cost and time to ready");
    let base = up.base_url();
    let mut scale = Vec::new();
    for n in [100usize, 100_000] {
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
        let via = client(Some(p.addr), &ca);
        // The first 100 events in order, then (large session) 100 from its end region.
        let l = load(&via, 1, 100, |i| format!("{base}/json?i={i}")).await;
        scale.push((n, p.ready, l));
        p.stop();
    }

    print_table(&rows, &scale);
}

fn print_table(rows: &[Row], scale: &[(usize, Duration, Load)]) {
    let direct = &rows[0];
    println!();
    println!("tapedeck benchmark — 1 KB JSON over HTTPS (HTTP/1.1 client), {} cores shared by client, proxy and upstream", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
    println!();
    println!("| target | c=1 req/s | c=1 p50 ms | c=1 p99 ms | c=32 req/s | c=32 p50 ms | c=32 p99 ms | × direct (c=32) | +p50 c=1 ms | SSE 1st event ms | proxy CPU µs/req | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} | {:.2} | {:+.3} | {:.2} | {} | {} |",
            r.name,
            r.c1.rps,
            r.c1.p50_ms,
            r.c1.p99_ms,
            r.c32.rps,
            r.c32.p50_ms,
            r.c32.p99_ms,
            r.c32.rps / direct.c32.rps,
            r.c1.p50_ms - direct.c1.p50_ms,
            r.sse_ms,
            r.cpu_us.map_or("-".to_string(), |c| format!("{c:.0}")),
            r.c1.errors + r.c32.errors
        );
    }
    println!();
    println!("| proxy | peak RSS after 1 MB bodies | after 5 MB | after 20 MB |");
    println!("|---|---:|---:|---:|");
    for r in rows.iter().filter(|r| !r.rss.is_empty()) {
        let v: Vec<String> = r.rss.iter().map(|(_, m)| format!("{m:.1} MB")).collect();
        println!("| {} | {} |", r.name, v.join(" | "));
    }
    println!();
    println!("| replay session size | time to ready | per-request p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|");
    for (n, ready, l) in scale {
        println!(
            "| {n} events | {:.0} ms | {:.3} | {:.3} |",
            ready.as_secs_f64() * 1000.0,
            l.p50_ms,
            l.p99_ms
        );
    }
}
