//! Security, end to end against the real binary: who may reach the control API and the
//! proxy, which session a client may write into, how long connections may sit idle and
//! how many there may be, what a CONNECT may name, who may read the store, tapes and CA,
//! and the limits that held up under review (431, slow heads, HTTP/2 stream limits and
//! rapid resets, malformed rule files, no outbound connection in replay; tunnel bytes that
//! are neither TLS nor HTTP are in replay.rs).

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::harness::{client, client_as, export, tls_tunnel, Daemon, Dirs};
use support::upstream::Upstream;

fn record(dirs: &Dirs, up: &Upstream, extra: &[&str]) -> Daemon {
    let ca = up.ca_path.to_str().unwrap().to_string();
    let mut args = vec!["record", "--upstream-ca", &ca];
    args.extend_from_slice(extra);
    Daemon::start(dirs, &args)
}

/// Sends raw bytes and returns what comes back until the server closes or goes quiet.
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") && !out.starts_with(b"HTTP/1.1 200") {
            // A refusal: the head (and a short body) is all there is to read.
            std::thread::sleep(Duration::from_millis(100));
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn control_token(dirs: &Dirs) -> String {
    std::fs::read_to_string(dirs.store.join("control.token"))
        .expect("the daemon wrote its control token")
}

/// A control API request as a read command (or an attacker) would send it.
fn control(d: &Daemon, method: &str, path: &str, host: &str, token: Option<&str>) -> String {
    let token = token
        .map(|t| format!("x-tapedeck-token: {t}\r\n"))
        .unwrap_or_default();
    raw(
        d.addr,
        format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n{token}connection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Waits up to `limit` for `done`; whether it came. The bound is generous: these checks
/// say that something happens, never how fast.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_api_answers_only_a_get_with_the_store_token_under_this_daemons_host() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, &["--session", "private"]);
    client(&d, &dirs).get(up.url("/json")).send().await.unwrap();
    let token = control_token(&dirs);
    assert_eq!(mode(&dirs.store.join("control.token")), 0o600);
    let me = d.addr.to_string();
    let path = "/_tapedeck/sessions/private/tape";

    let no_token = control(&d, "GET", path, &me, None);
    assert!(no_token.starts_with("HTTP/1.1 401"), "{no_token}");
    assert!(
        !no_token.contains("tapedeck_tape"),
        "no recording without the token"
    );
    let wrong = control(&d, "GET", path, &me, Some("0123"));
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    // A page that DNS-rebinds its own name to 127.0.0.1 sends its name as Host.
    let port = d.addr.port();
    let rebound = control(
        &d,
        "GET",
        path,
        &format!("evil.example:{port}"),
        Some(&token),
    );
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let post = control(&d, "POST", path, &me, Some(&token));
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let ok = control(&d, "GET", path, &me, Some(&token));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\"session\":\"private\""), "{ok}");
    // The read commands send the token themselves.
    let (code, out, err) = dirs.run(&["sessions", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"private\""), "{out}");
    let (code, stderr) = d.stop();
    assert_eq!(code, 0);
    assert!(stderr.contains("refused a control request"), "{stderr}");
    assert!(
        !dirs.store.join("control.token").exists(),
        "removed at stop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_reaches_the_control_api_through_the_proxy_and_the_attempts_are_not_recorded() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, &[]);
    let port = d.addr.port();
    // curl -x http://probe@ADDR http://ADDR/_tapedeck/sessions, by every name of ADDR.
    let probe = client_as(&d, &dirs, "probe", "");
    for target in [
        format!("http://{}/_tapedeck/sessions", d.addr),
        format!("http://localhost:{port}/_tapedeck/sessions"),
        format!("http://0.0.0.0:{port}/_tapedeck/health"),
    ] {
        let resp = probe.get(&target).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{target}");
        let body = resp.text().await.unwrap();
        assert!(body.contains("tapedeck_loop"), "{body}");
    }
    // A CONNECT to the daemon itself is refused before any tunnel opens.
    let connect = raw(
        d.addr,
        format!(
            "CONNECT {}:{port} HTTP/1.1\r\nproxy-authorization: Basic cHJvYmU6\r\n\r\n",
            "127.0.0.1"
        )
        .as_bytes(),
    );
    assert!(connect.starts_with("HTTP/1.1 403"), "{connect}");
    // Plain HTTP inside a tunnel elsewhere, whose Host names the daemon.
    let inner = raw(
        d.addr,
        format!(
            "CONNECT example.com:80 HTTP/1.1\r\nproxy-authorization: Basic cHJvYmU6\r\n\r\n\
             GET /_tapedeck/sessions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(inner.contains("HTTP/1.1 403"), "{inner}");
    assert!(inner.contains("tapedeck_loop"), "{inner}");
    let (_, stderr) = d.stop();
    assert!(stderr.contains("tapedeck's own address"), "{stderr}");
    let (code, out, _) = dirs.run(&["sessions", "--json"]);
    assert_eq!(code, 0);
    assert!(
        !out.contains("probe"),
        "the refused requests were recorded: {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_daemon_answers_only_for_the_session_it_replays() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    for s in ["mine", "theirs"] {
        let d = record(&dirs, &up, &["--session", s]);
        client(&d, &dirs).get(up.url("/json")).send().await.unwrap();
        d.stop();
    }
    let r = Daemon::start(&dirs, &["replay", "--session", "mine"]);
    let (code, out, err) = dirs.run(&["sessions", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"mine\""), "{out}");
    assert!(!out.contains("theirs"), "{out}");
    let (code, out, _) = dirs.run(&["show", "mine"]);
    assert_eq!(code, 0);
    assert!(out.contains("localhost/json"), "{out}");
    let (code, _, err) = dirs.run(&["show", "theirs"]);
    assert_eq!(code, 2);
    assert!(err.contains("serves session mine only"), "{err}");
    r.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listen_address_others_can_reach_needs_allow_remote_and_credentials() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let open = dirs.run(&["record", "--listen", "0.0.0.0:0", "--", "true"]);
    assert_eq!(open.0, 2);
    assert!(open.2.contains("--allow-remote"), "{}", open.2);
    let half = dirs.run(&[
        "record",
        "--listen",
        "0.0.0.0:0",
        "--allow-remote",
        "--",
        "true",
    ]);
    assert_eq!(half.0, 2);
    assert!(half.2.contains("--proxy-auth"), "{}", half.2);

    let creds = dirs.path("proxy-auth");
    std::fs::write(&creds, "ops:s3cret-pass\n").unwrap();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start_under(
        &dirs,
        &[],
        &[
            "record",
            "--upstream-ca",
            &ca,
            "--session",
            "remote",
            "--allow-remote",
            "--proxy-auth-file",
            creds.to_str().unwrap(),
        ],
        "0.0.0.0:0",
    );
    // Without credentials, or with wrong ones: 407 and a challenge, for requests and CONNECTs.
    let plain = raw(
        d.addr,
        b"GET http://127.0.0.1:9/x HTTP/1.1\r\nhost: 127.0.0.1:9\r\n\r\n",
    );
    assert!(plain.starts_with("HTTP/1.1 407"), "{plain}");
    assert!(
        plain
            .to_ascii_lowercase()
            .contains("proxy-authenticate: basic"),
        "{plain}"
    );
    let connect = raw(d.addr, b"CONNECT localhost:443 HTTP/1.1\r\n\r\n");
    assert!(connect.starts_with("HTTP/1.1 407"), "{connect}");
    let wrong = client_as(&d, &dirs, "ops", "guess");
    assert!(
        wrong.get(up.url("/json")).send().await.is_err(),
        "the tunnel is refused"
    );
    let right = client_as(&d, &dirs, "ops", "s3cret-pass");
    assert_eq!(
        right.get(up.url("/json")).send().await.unwrap().status(),
        200
    );
    let (_, stderr) = d.stop();
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert_eq!(
        export(&dirs, "remote").len(),
        1,
        "only the admitted request"
    );
    assert!(dirs
        .files_containing(b"s3cret-pass")
        .iter()
        .all(|p| p == &creds));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_proxy_auth_the_command_run_under_record_gets_the_credentials() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let ca = up.ca_path.to_str().unwrap().to_string();
    let script = format!(
        "curl -sf {} > /dev/null && echo $HTTPS_PROXY",
        up.url("/json")
    );
    let (code, out, err) = dirs.run(&[
        "record",
        "--upstream-ca",
        &ca,
        "--session",
        "wrapped",
        "--proxy-auth",
        "me:pa ss",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("http://me:pa%20ss@127.0.0.1:"), "{out}");
    assert_eq!(export(&dirs, "wrapped").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_secret_keeps_each_client_in_its_own_session() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let secret = dirs.path("session-secret");
    std::fs::write(&secret, "a long shared key for tokens\n").unwrap();
    let secret_arg = secret.to_str().unwrap();
    let token = |s: &str| {
        let (code, out, err) = dirs.run(&["session-token", s, "--session-secret-file", secret_arg]);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let (alpha, beta) = (token("alpha"), token("beta"));
    assert_ne!(alpha, beta);
    let d = record(&dirs, &up, &["--session-secret-file", secret_arg]);
    let a = client_as(&d, &dirs, "alpha+writer", &alpha);
    assert_eq!(a.get(up.url("/json")).send().await.unwrap().status(), 200);
    // Alpha's token does not open beta, and no token opens nothing.
    let intruder = client_as(&d, &dirs, "beta", &alpha);
    assert!(intruder.get(up.url("/json")).send().await.is_err());
    let plain = raw(
        d.addr,
        b"GET http://127.0.0.1:9/x HTTP/1.1\r\nproxy-authorization: Basic YmV0YTo=\r\n\r\n",
    );
    assert!(plain.starts_with("HTTP/1.1 407"), "{plain}");
    assert!(plain.contains("session-token beta"), "{plain}");
    let b = client_as(&d, &dirs, "beta", &beta);
    assert_eq!(b.get(up.url("/json")).send().await.unwrap().status(), 200);
    d.stop();
    let ea = export(&dirs, "alpha");
    assert_eq!((ea.len(), ea[0]["agent"].as_str()), (1, Some("writer")));
    assert_eq!(
        export(&dirs, "beta").len(),
        1,
        "only beta's own client wrote into beta"
    );
    assert!(
        dirs.files_containing(alpha.as_bytes()).is_empty(),
        "a token is never stored"
    );
    let both = dirs.run(&[
        "record",
        "--session",
        "x",
        "--session-secret-file",
        secret_arg,
        "--",
        "true",
    ]);
    assert_eq!(both.0, 2);
    assert!(both.2.contains("--session-secret"), "{}", both.2);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_http2_and_http1_connections_are_closed() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, &["--idle-timeout", "2"]);
    let port = up.addr.port();
    let tls = tls_tunnel(&d, &dirs, "localhost", port, &[b"h2"]).await;
    let (send, mut conn) = h2::client::handshake(tls).await.unwrap();
    let mut ping = conn.ping_pong().expect("ping handle");
    let driver = tokio::spawn(conn);
    let mut send = send.ready().await.unwrap();
    let req = http::Request::get(format!("https://localhost:{port}/json"))
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    let mut body = resp.await.unwrap().into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    // An answered PING keeps no connection alive: the idle one is closed.
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if ping.ping(h2::Ping::opaque()).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "an idle HTTP/2 connection still answers PING"
    );
    assert!(tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .is_ok());
    drop(send);

    // HTTP/1.1 keep-alive: answered, then closed while the header timeout (30 s) is far off.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let read = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(read.is_ok(), "still open after 20 s: {read:?}");
    d.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_get_503_and_one_log_line() {
    let dirs = Dirs::new();
    let d = Daemon::start(&dirs, &["record", "--max-connections", "2"]);
    let first = TcpStream::connect(d.addr).unwrap();
    let second = TcpStream::connect(d.addr).unwrap();
    // The two idle connections hold both places.
    assert!(eventually(Duration::from_secs(20), || raw(
        d.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    .starts_with("HTTP/1.1 503")));
    let third = raw(d.addr, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    assert!(third.contains("--max-connections"), "{third}");
    drop(first);
    // A place freed is a place taken.
    assert!(eventually(Duration::from_secs(20), || raw(
        d.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .starts_with("HTTP/1.1 400")));
    drop(second);
    let (_, stderr) = d.stop();
    assert!(stderr.contains("the cap (--max-connections)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_targets_without_a_host_or_with_a_bad_port_get_400() {
    let dirs = Dirs::new();
    let d = Daemon::start(&dirs, &["record"]);
    for target in [":443", "example.com:99999", "example.com:0", "example.com"] {
        let out = raw(
            d.addr,
            format!("CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n").as_bytes(),
        );
        assert!(out.starts_with("HTTP/1.1 400"), "CONNECT {target}: {out}");
    }
    let out = raw(
        d.addr,
        b"GET http://example.com:0/ HTTP/1.1\r\nhost: example.com:0\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    d.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_and_tapes_are_private_to_their_owner() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    std::fs::create_dir_all(&dirs.store).unwrap();
    std::fs::set_permissions(&dirs.store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = record(&dirs, &up, &["--session", "private"]);
    let c = client(&d, &dirs);
    c.get(up.url("/json")).send().await.unwrap();
    c.get(up.url("/big?bytes=3000000"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    d.stop();
    assert_eq!(mode(&dirs.store), 0o700);
    let entries = tree(&dirs.store);
    assert!(entries
        .iter()
        .any(|p| p.to_string_lossy().contains("blobs")));
    for p in entries {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&p), want, "{}", p.display());
    }
    let tape = dirs.path("private.jsonl");
    assert_eq!(
        dirs.run(&["export", "private", "-o", tape.to_str().unwrap()])
            .0,
        0
    );
    assert_eq!(mode(&tape), 0o600);
    let shared = dirs.path("shared.jsonl");
    let (code, _, err) = dirs.run(&[
        "export",
        "private",
        "-o",
        shared.to_str().unwrap(),
        "--mode",
        "644",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&shared), 0o644);
    // An export never writes through a link planted at its destination.
    let victim = dirs.path("victim");
    std::fs::write(&victim, "precious").unwrap();
    let planted = dirs.path("planted.jsonl");
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    assert_eq!(
        dirs.run(&["export", "private", "-o", planted.to_str().unwrap()])
            .0,
        0
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_or_half_deleted_ca_is_refused_and_loose_modes_are_named() {
    let dirs = Dirs::new();
    let other = Dirs::new();
    assert_eq!(dirs.run(&["ca"]).0, 0);
    assert_eq!(other.run(&["ca"]).0, 0);
    let cert = dirs.certs.join("ca.pem");
    let key = dirs.certs.join("ca-key.pem");
    let original = std::fs::read(&cert).unwrap();
    // Loose modes are named, with what to do.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dirs.certs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, err) = dirs.run(&["ca"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains("chmod go-w"), "{err}");
    std::fs::set_permissions(&dirs.certs, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The trust bundle replaces a planted link instead of writing through it.
    let victim = dirs.path("victim");
    std::fs::write(&victim, "precious").unwrap();
    // (`tapedeck ca` wrote a bundle there already.)
    let _ = std::fs::remove_file(dirs.certs.join("trust-bundle.pem"));
    std::os::unix::fs::symlink(&victim, dirs.certs.join("trust-bundle.pem")).unwrap();
    let (code, _, err) = dirs.run(&["record", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // Another CA's certificate beside this key: refused, never handed to a client.
    std::fs::copy(other.certs.join("ca.pem"), &cert).unwrap();
    let (code, _, err) = dirs.run(&["record", "--", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("does not belong to the key"), "{err}");
    // A deleted certificate is an error, not a new CA.
    std::fs::remove_file(&cert).unwrap();
    let (code, _, err) = dirs.run(&["ca"]);
    assert_eq!(code, 2);
    assert!(err.contains("ca.pem is missing"), "{err}");
    assert!(!cert.exists());
    std::fs::write(&cert, &original).unwrap();
    assert_eq!(dirs.run(&["ca"]).0, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_named_like_a_tape_file_stays_readable() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, &["--session", "a.jsonl"]);
    client(&d, &dirs).get(up.url("/json")).send().await.unwrap();
    d.stop();
    let (code, out, err) = dirs.run(&["show", "a.jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("localhost/json"), "{out}");
    // A tape file of the same name in the working directory: `./` says "the file".
    let (code, _, err) = dirs.run(&["export", "a.jsonl", "-o", "a.jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(dirs.path("a.jsonl").is_file());
    let (code, _, err) = dirs.run(&["show", "./a.jsonl"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = dirs.run(&["show", "a.jsonl"]);
    assert_eq!(code, 0, "{err}");
    // A bare name the store does not have is still read as a tape file.
    std::fs::rename(dirs.path("a.jsonl"), dirs.path("b.jsonl")).unwrap();
    let (code, _, err) = dirs.run(&["show", "b.jsonl"]);
    assert_eq!(code, 0, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_headers_get_431_and_a_slow_request_head_is_cut_off() {
    let dirs = Dirs::new();
    let d = Daemon::start(&dirs, &["record", "--header-timeout", "2"]);
    let headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let out = raw(
        d.addr,
        format!("GET http://x.test/ HTTP/1.1\r\nhost: x.test\r\n{headers}\r\n").as_bytes(),
    );
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    // Slowloris: half a head, then nothing. The connection is closed, not held.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"GET http://x.test/ HTTP/1.1\r\nhost: x")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    let read = s.read_to_end(&mut rest);
    assert!(
        read.is_ok(),
        "closed by the server, not by the 20 s read timeout: {read:?}"
    );
    let (_, stderr) = d.stop();
    assert!(
        stderr.contains("no complete request head in time"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_streams_are_capped_and_a_rapid_reset_flood_is_cut_off() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, &["--session", "flood"]);
    client(&d, &dirs).get(up.url("/json")).send().await.unwrap();
    d.stop();
    let r = Daemon::start(&dirs, &["replay", "--session", "flood"]);
    let port = up.addr.port();
    let url = format!("https://localhost:{port}/json");
    let tls = tls_tunnel(&r, &dirs, "localhost", port, &[b"h2"]).await;
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(conn);
    let mut send = send.ready().await.unwrap();
    let (resp, _) = send
        .send_request(http::Request::get(&url).body(()).unwrap(), true)
        .unwrap();
    // Answered (a miss: this client sends other headers than the recorded one).
    resp.await.unwrap();
    assert_eq!(send.current_max_send_streams(), 256);
    // Open and cancel streams as fast as the client can: the server ends the connection.
    let flood = tokio::time::timeout(Duration::from_secs(60), async {
        for _ in 0..20_000 {
            send = match send.ready().await {
                Ok(s) => s,
                Err(_) => return true,
            };
            match send.send_request(http::Request::get(&url).body(()).unwrap(), true) {
                Ok((resp, _)) => drop(resp),
                Err(_) => return true,
            }
        }
        false
    })
    .await;
    assert_eq!(
        flood,
        Ok(true),
        "20,000 reset streams and the connection is still open"
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), driver).await;
    // Everyone else is still served (from a recording the flood may have used up).
    let c = client(&r, &dirs);
    let after = c.get(up.url("/json")).send().await.unwrap();
    assert!(after.status() == 200 || after.headers().contains_key("x-tapedeck-miss"));
    r.stop();
}

#[test]
fn a_malformed_tapedeck_toml_is_refused_with_its_line() {
    let dirs = Dirs::new();
    std::fs::write(
        dirs.path("tapedeck.toml"),
        "[redact]\nheaders = [\"x-a\"]\njson_fields = [\"unterminated\n",
    )
    .unwrap();
    let (code, _, err) = dirs.run(&["record", "--listen", "127.0.0.1:0", "--", "true"]);
    assert_eq!(code, 2);
    assert!(err.contains("tapedeck.toml"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_opens_no_outbound_connection_under_strace() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = record(&dirs, &up, &["--session", "offline"]);
    let c = client(&d, &dirs);
    c.get(up.url("/json")).send().await.unwrap();
    d.stop();
    let trace = dirs.path("connect.trace");
    let r = Daemon::start_under(
        &dirs,
        &[
            "strace",
            "-f",
            "-e",
            "trace=connect",
            "-o",
            trace.to_str().unwrap(),
        ],
        &["replay", "--session", "offline"],
        "127.0.0.1:0",
    );
    let c = client(&r, &dirs);
    assert_eq!(c.get(up.url("/json")).send().await.unwrap().status(), 200);
    let miss = c
        .get("https://api.elsewhere.example/v1/x")
        .send()
        .await
        .unwrap();
    assert_eq!(miss.status(), 404);
    // Stop tapedeck itself (strace passes no signal on), then strace ends with it.
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(dirs.store.join("daemon.json")).unwrap())
            .unwrap();
    support::harness::signal(info["pid"].as_i64().unwrap() as i32, "TERM");
    assert!(eventually(Duration::from_secs(20), || !dirs
        .store
        .join("daemon.json")
        .exists()));
    r.stop();
    let calls = std::fs::read_to_string(&trace).expect("strace wrote its trace");
    let outbound: Vec<&str> = calls
        .lines()
        .filter(|l| l.contains("connect(") && (l.contains("AF_INET") || l.contains("AF_INET6")))
        .collect();
    assert!(outbound.is_empty(), "replay connected out: {outbound:?}");
}
