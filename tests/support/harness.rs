//! Running the real `tapedeck` binary in tests: temp store and cert dirs, a daemon on a
//! free loopback port, and reqwest clients configured with the proxy and tapedeck's CA.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

pub fn tapedeck_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tapedeck"))
}

/// A scratch directory with `store/` and `certs/` inside.
pub struct Dirs {
    pub root: tempfile::TempDir,
    pub store: PathBuf,
    pub certs: PathBuf,
}

impl Dirs {
    pub fn new() -> Dirs {
        let root = tempfile::tempdir().expect("tempdir");
        let store = root.path().join("recordings");
        let certs = root.path().join("certs");
        Dirs { root, store, certs }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Runs a tapedeck command to completion: (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(args, &[])
    }

    /// [`Dirs::run`] with extra environment variables (the colour switches are unset
    /// unless given here).
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        self.run_under(&[], args, env)
    }

    /// [`Dirs::run_with`] with tapedeck started by `wrapper` (its program and arguments,
    /// tapedeck's path after them): the dynamic loader, say.
    pub fn run_under(
        &self,
        wrapper: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let bin = tapedeck_bin();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let out = command
            .args(args)
            .current_dir(self.root.path())
            .env("TAPEDECK_STORE", &self.store)
            .env("TAPEDECK_CERTS", &self.certs)
            .env_remove("TAPEDECK_LISTEN")
            .env_remove("TAPEDECK_LOG")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CLICOLOR")
            .envs(env.iter().copied())
            .output()
            .expect("run tapedeck");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Every file under the scratch directory that contains `needle`.
    pub fn files_containing(&self, needle: &[u8]) -> Vec<PathBuf> {
        let mut hits = Vec::new();
        let mut stack = vec![self.root.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(data) = std::fs::read(&p) {
                    if data.windows(needle.len()).any(|w| w == needle) {
                        hits.push(p);
                    }
                }
            }
        }
        hits
    }
}

/// A running `tapedeck record|replay` daemon.
pub struct Daemon {
    child: Option<Child>,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// Says when the whole of stderr has been read (the process closed it).
    read_all: Mutex<mpsc::Receiver<()>>,
}

impl Daemon {
    /// Starts `tapedeck <args> --listen 127.0.0.1:0` in `dirs` and waits until it listens.
    pub fn start(dirs: &Dirs, args: &[&str]) -> Daemon {
        Daemon::start_under(dirs, &[], args, "127.0.0.1:0")
    }

    /// A record daemon for `session` that trusts the upstream fixture `up`:
    /// `tapedeck record --session SESSION --upstream-ca <up's CA> EXTRA...`.
    pub fn record(
        dirs: &Dirs,
        up: &super::upstream::Upstream,
        session: &str,
        extra: &[&str],
    ) -> Daemon {
        let ca = up.ca_path.to_str().unwrap().to_string();
        let mut args = vec!["record", "--session", session, "--upstream-ca", &ca];
        args.extend_from_slice(extra);
        Daemon::start(dirs, &args)
    }

    /// Starts `tapedeck <args> --listen LISTEN`, run by `wrapper` (`strace -f ...`) when
    /// one is given, and waits until it listens.
    pub fn start_under(dirs: &Dirs, wrapper: &[&str], args: &[&str], listen: &str) -> Daemon {
        Daemon::start_within(dirs, wrapper, args, listen, Duration::from_secs(20))
    }

    /// [`Daemon::start_under`], waiting up to `limit` for it to listen (a debug build
    /// reading a long session on a busy machine takes a while).
    pub fn start_within(
        dirs: &Dirs,
        wrapper: &[&str],
        args: &[&str],
        listen: &str,
        limit: Duration,
    ) -> Daemon {
        Daemon::start_env(dirs, wrapper, args, listen, limit, &[])
    }

    /// [`Daemon::start_within`] with `env` set for the daemon.
    pub fn start_env(
        dirs: &Dirs,
        wrapper: &[&str],
        args: &[&str],
        listen: &str,
        limit: Duration,
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(tapedeck_bin());
                c
            }
            None => Command::new(tapedeck_bin()),
        };
        cmd.args(args)
            .args(["--listen", listen])
            .current_dir(dirs.root.path())
            .env("TAPEDECK_STORE", &dirs.store)
            .env("TAPEDECK_CERTS", &dirs.certs)
            .env("TAPEDECK_LOG", "tapedeck=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tapedeck");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        let (all_tx, all_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(pos) = line.find(" listening on ") {
                    let rest = &line[pos + " listening on ".len()..];
                    let addr = rest.split([':', ' ']).take(2).collect::<Vec<_>>().join(":");
                    if let Ok(a) = addr.parse::<SocketAddr>() {
                        if let Some(t) = tx.take() {
                            let _ = t.send(a);
                        }
                    }
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
            let _ = all_tx.send(());
        });
        let addr = match rx.recv_timeout(limit) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = all_rx.recv_timeout(Duration::from_secs(5));
                panic!(
                    "tapedeck did not start listening; stderr:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Daemon {
            child: Some(child),
            addr,
            stderr: log,
            read_all: Mutex::new(all_rx),
        }
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGTERM, then wait: (exit code, stderr).
    pub fn stop(mut self) -> (i32, String) {
        let mut child = self.child.take().expect("running");
        signal(child.id() as i32, "TERM");
        let status = wait_timeout(&mut child, Duration::from_secs(30));
        // Its last lines (the summary) are read once the reader reaches the end, which
        // on a busy machine can be well after the exit.
        let _ = self
            .read_all
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(10));
        (status, self.stderr())
    }

    /// kill -9: no chance to flush.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn signal(pid: i32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

fn wait_timeout(child: &mut Child, limit: Duration) -> i32 {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("tapedeck did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ca_cert(certs: &Path) -> reqwest::Certificate {
    let pem = std::fs::read(certs.join("ca.pem")).expect("tapedeck CA exists once the daemon runs");
    reqwest::Certificate::from_pem(&pem).expect("CA PEM")
}

/// A client that goes through the daemon and trusts tapedeck's CA (HTTP/2 when offered).
pub fn client(d: &Daemon, dirs: &Dirs) -> reqwest::Client {
    builder(d, dirs, None).build().expect("client")
}

/// The same, HTTP/1.1 only: every concurrent request needs its own tunnel.
pub fn client_h1(d: &Daemon, dirs: &Dirs) -> reqwest::Client {
    builder(d, dirs, None).http1_only().build().expect("client")
}

/// A client with proxy credentials: the user name picks the session (`SESSION[+AGENT]`).
pub fn client_as(d: &Daemon, dirs: &Dirs, user: &str, pass: &str) -> reqwest::Client {
    builder(d, dirs, Some((user, pass)))
        .build()
        .expect("client")
}

fn builder(d: &Daemon, dirs: &Dirs, auth: Option<(&str, &str)>) -> reqwest::ClientBuilder {
    let mut proxy = reqwest::Proxy::all(d.proxy_url()).expect("proxy url");
    if let Some((u, p)) = auth {
        proxy = proxy.basic_auth(u, p);
    }
    reqwest::Client::builder()
        .proxy(proxy)
        .add_root_certificate(ca_cert(&dirs.certs))
        .timeout(Duration::from_secs(60))
}

/// A client straight to the upstream (no proxy), trusting the fixture's CA.
pub fn direct_client(upstream_ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(
            reqwest::Certificate::from_pem(upstream_ca_pem.as_bytes()).expect("pem"),
        )
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// Reads a tape file into (header, events) as JSON values.
pub fn read_tape(path: &Path) -> (serde_json::Value, Vec<serde_json::Value>) {
    let text = std::fs::read_to_string(path).expect("tape");
    let mut lines = text.lines();
    let header = serde_json::from_str(lines.next().expect("header")).expect("header json");
    let events = lines
        .map(|l| serde_json::from_str(l).expect("event json"))
        .collect();
    (header, events)
}

/// Exports a session (daemon stopped or running) and returns its events, every body
/// inline (so a test reads bodies from the events; body files have tests of their own).
pub fn export(dirs: &Dirs, session: &str) -> Vec<serde_json::Value> {
    export_with(dirs, session, &["--inline-max", "1073741824"])
}

/// Exports a session with more `export` options (none: bodies over the default threshold
/// go to files beside the tape, and their events hold their lengths and hashes).
pub fn export_with(dirs: &Dirs, session: &str, options: &[&str]) -> Vec<serde_json::Value> {
    let out = dirs.path(&format!("{session}.export.jsonl"));
    let mut args = vec!["export", session, "-o", out.to_str().unwrap()];
    args.extend_from_slice(options);
    let (code, _, err) = dirs.run(&args);
    assert_eq!(code, 0, "export failed: {err}");
    read_tape(&out).1
}

/// A TLS connection through a CONNECT tunnel of the daemon, trusting tapedeck's CA.
pub async fn tls_tunnel(
    d: &Daemon,
    dirs: &Dirs,
    host: &str,
    port: u16,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(
        format!("CONNECT {host}:{port} HTTP/1.1\r\nhost: {host}:{port}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "CONNECT answered");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dirs.certs.join("ca.pem")).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, s)
        .await
        .unwrap()
}

/// One HTTP/1.1 client connection through a CONNECT tunnel to `host:port`: every request
/// sent on it goes over that tunnel, which a pooling client (reqwest) does not promise.
pub async fn h1_tunnel(
    d: &Daemon,
    dirs: &Dirs,
    host: &str,
    port: u16,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let tls = tls_tunnel(d, dirs, host, port, &[b"http/1.1"]).await;
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake in the tunnel");
    tokio::spawn(conn);
    send
}
