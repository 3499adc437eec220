//! Every client trusts tapedeck under `-- CMD` and after `eval "$(tapedeck env)"`, and a
//! corporate CA the user had configured keeps working: the bundle handed out holds the
//! system roots, the user's own certificates and tapedeck's CA. Real TLS clients (curl,
//! reqwest) trusting only that bundle reach an upstream whose certificate comes from
//! the "corporate" CA, both intercepted and passed through.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::harness::{tapedeck_bin, Daemon, Dirs};
use support::upstream::Upstream;

const CA_VARS: [&str; 12] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "AWS_CA_BUNDLE",
    "NPM_CONFIG_CAFILE",
    "PIP_CERT",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
    "DENO_CERT",
    "HTTPLIB2_CA_CERTS",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
];

const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// tapedeck with a clean trust environment plus `env`, in `dirs`' root.
fn tapedeck(dirs: &Dirs, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(tapedeck_bin());
    cmd.args(args)
        .current_dir(dirs.root.path())
        .env("TAPEDECK_STORE", &dirs.store)
        .env("TAPEDECK_CERTS", &dirs.certs)
        .env_remove("TAPEDECK_LISTEN")
        .env_remove("TAPEDECK_LOG");
    for v in CA_VARS.iter().chain(PROXY_VARS.iter()) {
        cmd.env_remove(v);
    }
    for v in [
        "npm_config_cafile",
        "NO_PROXY",
        "no_proxy",
        "NPM_CONFIG_USERCONFIG",
    ] {
        cmd.env_remove(v);
    }
    // No user or global npmrc of the machine's: only what a test writes.
    cmd.env("HOME", dirs.root.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The DER of every certificate in a PEM file.
fn certs_in(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    rustls_pemfile::certs(&mut &data[..])
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// A CA of the user's own, as a corporate one would be (a tapedeck CA in another
/// directory serves: it is a real CA certificate tapedeck does not know).
fn corporate_ca(dirs: &Dirs, name: &str) -> PathBuf {
    let dir = dirs.path(name);
    let (code, out, err) = tapedeck(dirs, &["ca", "--certs", dir.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    PathBuf::from(out.trim())
}

fn parse_env_lines(out: &str) -> HashMap<String, String> {
    out.lines()
        .map(|l| {
            let (name, value) = l
                .strip_prefix("export ")
                .and_then(|r| r.split_once('='))
                .unwrap_or_else(|| panic!("not an export line: {l:?}"));
            (name.to_string(), value.trim_matches('\'').to_string())
        })
        .collect()
}

#[test]
fn the_command_gets_every_ca_variable_pointing_at_one_bundle_with_the_users_own_cas() {
    let dirs = Dirs::new();
    let corp = corporate_ca(&dirs, "corp");
    let npm_corp = corporate_ca(&dirs, "npm-corp");
    // A project whose .npmrc names a CA file, as corporate npm setups do.
    std::fs::write(dirs.path("package.json"), "{}").unwrap();
    std::fs::write(
        dirs.path(".npmrc"),
        format!(
            "registry=https://registry.npmjs.org/\ncafile={}\n",
            npm_corp.display()
        ),
    )
    .unwrap();
    let (code, out, err) = tapedeck(
        &dirs,
        &["record", "--", "env"],
        &[
            ("SSL_CERT_FILE", corp.to_str().unwrap()),
            ("npm_config_cafile", corp.to_str().unwrap()),
            ("NO_PROXY", "localhost"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let env: HashMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let bundle = env["SSL_CERT_FILE"];
    assert!(Path::new(bundle).is_absolute(), "{bundle}");
    for v in CA_VARS.iter().chain(["npm_config_cafile"].iter()) {
        assert_eq!(env.get(v), Some(&bundle), "{v} in {out}");
    }
    let proxy = env["HTTPS_PROXY"];
    assert!(proxy.starts_with("http://127.0.0.1:"), "{out}");
    for v in PROXY_VARS {
        assert_eq!(env[v], proxy, "{v}");
    }
    assert_eq!(env["NODE_USE_ENV_PROXY"], "1");
    assert!(!env.contains_key("NO_PROXY"), "NO_PROXY is cleared: {out}");

    let handed = certs_in(Path::new(bundle));
    let mine = certs_in(&dirs.certs.join("ca.pem"));
    assert!(handed.contains(&mine[0]), "tapedeck's CA is in the bundle");
    assert!(
        handed.contains(&certs_in(&corp)[0]),
        "SSL_CERT_FILE's CA too"
    );
    assert!(
        handed.contains(&certs_in(&npm_corp)[0]),
        "and the .npmrc cafile's"
    );
    assert!(handed.len() > 3, "and the system roots");
    assert_eq!(
        handed.iter().filter(|c| **c == certs_in(&corp)[0]).count(),
        1,
        "a CA named twice is in it once"
    );
    // One info line says what was overridden.
    let info: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("named other bundles"))
        .collect();
    assert_eq!(info.len(), 1, "{err}");
    assert!(
        info[0].contains("SSL_CERT_FILE, npm_config_cafile named other bundles")
            && info[0].contains("1 certificate from SSL_CERT_FILE")
            && info[0].contains(&format!(
                "1 certificate from cafile in {}",
                dirs.path(".npmrc").display()
            )),
        "{}",
        info[0]
    );
}

#[test]
fn npm_reads_the_bundle_over_a_project_npmrc_cafile() {
    if Command::new("npm").arg("--version").output().is_err() {
        eprintln!("skipped: npm is not installed");
        return;
    }
    let dirs = Dirs::new();
    let corp = corporate_ca(&dirs, "corp");
    std::fs::write(
        dirs.path("package.json"),
        "{\"name\":\"p\",\"version\":\"1.0.0\"}",
    )
    .unwrap();
    std::fs::write(dirs.path(".npmrc"), format!("cafile={}\n", corp.display())).unwrap();
    let (code, out, err) = tapedeck(
        &dirs,
        &["record", "--", "npm", "config", "get", "cafile"],
        &[("PATH", &std::env::var("PATH").unwrap())],
    );
    assert_eq!(code, 0, "{err}");
    let cafile = out.trim();
    assert!(
        cafile.starts_with(dirs.certs.to_str().unwrap()) && cafile.contains("trust-bundle"),
        "npm's effective cafile is tapedeck's bundle: {out}{err}"
    );
    assert!(certs_in(Path::new(cafile)).contains(&certs_in(&corp)[0]));
}

/// A loopback address nothing listens on (a port just freed).
fn unused_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn tapedeck_env_prints_only_export_lines_that_a_shell_can_eval() {
    let dirs = Dirs::new();
    let corp = corporate_ca(&dirs, "corp");
    let addr = unused_addr();
    let (code, out, err) = tapedeck(
        &dirs,
        &["env", "--listen", &addr],
        &[("REQUESTS_CA_BUNDLE", corp.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{err}");
    let env = parse_env_lines(&out);
    for v in PROXY_VARS {
        assert_eq!(env[v], format!("http://{addr}"), "{v}");
    }
    assert_eq!(env["NODE_USE_ENV_PROXY"], "1");
    let bundle = &env["SSL_CERT_FILE"];
    for v in CA_VARS {
        assert_eq!(&env[v], bundle, "{v}");
    }
    assert_eq!(env.len(), PROXY_VARS.len() + 1 + CA_VARS.len(), "{out}");
    assert!(certs_in(Path::new(bundle)).contains(&certs_in(&corp)[0]));
    assert!(err.contains(&format!("nothing listens on {addr}")), "{err}");

    // What `eval "$(tapedeck env)"` leaves in a shell.
    let script = format!(
        "eval \"$({} env --listen {addr} 2>/dev/null)\" && echo \"$NPM_CONFIG_CAFILE|$HTTPS_PROXY\"",
        tapedeck_bin().display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .current_dir(dirs.root.path())
        .env("TAPEDECK_CERTS", &dirs.certs)
        .env("HOME", dirs.root.path())
        .env_remove("REQUESTS_CA_BUNDLE")
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (cafile, proxy) = line.split_once('|').unwrap_or_else(|| panic!("{line:?}"));
    assert!(
        cafile.ends_with(".pem") && Path::new(cafile).is_file(),
        "{line}"
    );
    assert_eq!(proxy, format!("http://{addr}"));
}

#[test]
fn tapedeck_ca_names_the_trust_bundle_and_tapedeck_env() {
    let dirs = Dirs::new();
    let (code, out, err) = tapedeck(&dirs, &["ca"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().last(),
        Some(dirs.certs.join("ca.pem").to_str().unwrap())
    );
    let bundle = std::path::absolute(dirs.certs.join("trust-bundle.pem")).unwrap();
    assert!(err.contains(bundle.to_str().unwrap()), "{err}");
    assert!(bundle.is_file());
    assert!(err.contains("eval \"$(tapedeck env)\""), "{err}");
    assert!(err.contains("NPM_CONFIG_CAFILE"), "{err}");
}

/// The "corporate" upstream: the fixture's certificate comes from its own CA.
fn corporate_upstream_urls(up: &Upstream) -> (String, String) {
    let port = up.addr.port();
    // Same server: by name it is passed through untouched, by address intercepted.
    (
        format!("https://localhost:{port}/json"),
        format!("https://127.0.0.1:{port}/json"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_under_cmd_trusts_tapedeck_and_the_users_corporate_ca() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let corp = up.ca_path.to_str().unwrap().to_string();
    let (passed, intercepted) = corporate_upstream_urls(&up);
    // curl reads CURL_CA_BUNDLE; the user had pointed it at the corporate CA alone.
    let script = format!(
        "curl -sS --fail -o /dev/null {passed} && echo passthrough-ok && \
         curl -sS --fail -o /dev/null {intercepted} && echo intercepted-ok"
    );
    let (code, out, err) = tapedeck(
        &dirs,
        &[
            "record",
            "--session",
            "corp",
            "--passthrough",
            "localhost",
            "--upstream-ca",
            &corp,
            "--",
            "sh",
            "-c",
            &script,
        ],
        &[("CURL_CA_BUNDLE", &corp)],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("passthrough-ok") && out.contains("intercepted-ok"),
        "{out}{err}"
    );
    assert!(err.contains("recorded 1 exchange"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_trusting_only_the_env_bundle_reaches_corporate_hosts_through_a_daemon() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let corp = up.ca_path.to_str().unwrap().to_string();
    let d = Daemon::start(
        &dirs,
        &[
            "record",
            "--passthrough",
            "localhost",
            "--upstream-ca",
            &corp,
        ],
    );
    let listen = d.addr.to_string();
    let (code, out, err) = tapedeck(
        &dirs,
        &["env", "--listen", &listen],
        &[("SSL_CERT_FILE", &corp)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("nothing listens"), "{err}");
    let env = parse_env_lines(&out);
    let client_with = |bundle: &Path| {
        let pem = std::fs::read(bundle).unwrap();
        let mut b = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(&env["HTTPS_PROXY"]).unwrap())
            .tls_built_in_root_certs(false)
            .timeout(std::time::Duration::from_secs(30));
        for c in reqwest::Certificate::from_pem_bundle(&pem).unwrap() {
            b = b.add_root_certificate(c);
        }
        b.build().unwrap()
    };
    let (passed, intercepted) = corporate_upstream_urls(&up);
    let handed = client_with(Path::new(&env["SSL_CERT_FILE"]));
    for url in [&passed, &intercepted] {
        let r = handed
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        assert_eq!(r.status(), 200, "{url}");
    }
    // Without the user's CA (the plain bundle), the passed-through host is not trusted:
    // the merge is what makes the corporate CA keep working.
    let plain = client_with(&dirs.certs.join("trust-bundle.pem"));
    assert!(plain.get(&passed).send().await.is_err());
    assert_eq!(plain.get(&intercepted).send().await.unwrap().status(), 200);
    d.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_rejects_the_certificate_is_told_its_variable() {
    let up = Upstream::start(true).await;
    let dirs = Dirs::new();
    let d = Daemon::start(&dirs, &["record"]);
    // curl with only the system roots: it rejects tapedeck's leaf certificate.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-x", &d.proxy_url()])
        .arg(format!("https://127.0.0.1:{}/json", up.addr.port()))
        .env_remove("CURL_CA_BUNDLE")
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !d.stderr().contains("CURL_CA_BUNDLE") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = d.stderr();
    let bundle = std::path::absolute(dirs.certs.join("trust-bundle.pem")).unwrap();
    assert!(
        log.contains("this looks like curl, which reads CURL_CA_BUNDLE")
            && log.contains(&format!("point it at {}", bundle.display())),
        "{log}"
    );
    d.stop();
}
