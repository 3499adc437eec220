//! The trust bundle a client of tapedeck is handed, and the variables that make every
//! common client read it.
//!
//! One PEM file holds the system roots (so passthrough hosts keep working), every CA
//! certificate the user had already pointed a client at (a corporate CA, found by
//! [`sources`]), and tapedeck's CA. Variables such as `NPM_CONFIG_CAFILE` or
//! `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` replace a client's whole CA list, so a bundle with
//! tapedeck's CA alone would break every other host, and one without the user's own
//! certificates would break their corporate proxy or registry.

pub mod clients;
pub mod configs;
pub mod sources;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use thiserror::Error;

use crate::ca::Ca;
use sources::{Env, Source, SourceCerts};

/// The bundle of the system roots and tapedeck's CA, in the certificate directory.
pub const TRUST_BUNDLE_FILE: &str = "trust-bundle.pem";

/// Where the plain bundle of a certificate directory is (absolute).
pub fn plain_path(certs: &Path) -> PathBuf {
    std::path::absolute(certs)
        .unwrap_or_else(|_| certs.to_path_buf())
        .join(TRUST_BUNDLE_FILE)
}

/// Every variable `-- CMD` and `tapedeck env` point at the trust bundle.
pub const CA_VARS: &[&str] = &[
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

/// A user's bundle larger than this is not a CA bundle; it is skipped, not read whole.
const MAX_SOURCE_BYTES: u64 = 16 << 20;

#[derive(Debug, Error)]
pub enum TrustError {
    #[error("cannot write the trust bundle in {dir}: {source}")]
    Write {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A written trust bundle and what went into it.
#[derive(Debug)]
pub struct TrustBundle {
    /// Absolute, so a command running in another directory finds it.
    pub path: PathBuf,
    /// Every variable to set, each to `path`.
    pub vars: Vec<(String, String)>,
    /// Variables that named something else before: (name, old value).
    pub overridden: Vec<(String, String)>,
    /// Where the user's own certificates came from, with how many were not already in
    /// the system roots.
    pub merged: Vec<(String, usize)>,
    /// Sources that could not be read, with why.
    pub unreadable: Vec<(String, String)>,
}

impl TrustBundle {
    /// The bundle for a command that inherits `env` and runs in `cwd`: the user's own
    /// certificates (from the trust variables and npm's config) are merged in.
    pub fn for_env(ca: &Ca, env: &Env, cwd: &Path) -> Result<TrustBundle, TrustError> {
        let found = sources::find(env, CA_VARS, cwd);
        let mut bundle = write(ca, &found)?;
        let mut names: Vec<String> = CA_VARS.iter().map(|v| v.to_string()).collect();
        // Another spelling of npm's variable would win over ours: override it too.
        for spelling in sources::npm_spellings(env, "NPM_CONFIG_CAFILE") {
            if !names.iter().any(|n| n == spelling) {
                names.push(spelling.to_string());
            }
        }
        let value = bundle.path.display().to_string();
        for name in names {
            if let Some(old) = sources::var(env, &name) {
                if old != value {
                    bundle.overridden.push((name.clone(), old.to_string()));
                }
            }
            bundle.vars.push((name, value.clone()));
        }
        Ok(bundle)
    }

    /// The bundle of the system roots and tapedeck's CA only (`certs/trust-bundle.pem`).
    pub fn plain(ca: &Ca) -> Result<TrustBundle, TrustError> {
        write(ca, &[])
    }

    /// One line saying what was overridden and merged, when anything was.
    pub fn summary(&self) -> Option<String> {
        if self.overridden.is_empty() && self.merged.iter().all(|(_, n)| *n == 0) {
            return None;
        }
        let mut line = if self.overridden.is_empty() {
            format!("{} holds the system roots", self.path.display())
        } else {
            let names: Vec<&str> = self.overridden.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "{} named other bundles and now name {}: the system roots",
                names.join(", "),
                self.path.display()
            )
        };
        let merged: Vec<String> = self
            .merged
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(origin, n)| {
                format!(
                    "{n} certificate{} from {origin}",
                    if *n == 1 { "" } else { "s" }
                )
            })
            .collect();
        if !merged.is_empty() {
            line.push_str(&format!(", {}", merged.join(", ")));
        }
        line.push_str(" and tapedeck's CA");
        Some(line)
    }
}

/// Writes the bundle of the system roots, the certificates of `sources` that are not
/// already in it, and tapedeck's CA. With no certificates of the user's, it is
/// `certs/trust-bundle.pem`; otherwise a file named by its content, so concurrent runs
/// never see each other's half-written file and a corporate bundle is not written twice.
pub fn write(ca: &Ca, sources: &[Source]) -> Result<TrustBundle, TrustError> {
    let ca_pem = ca.cert_pem();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut body = String::from("# system roots\n");
    for der in parse_pem(system_roots_pem().as_bytes()).0 {
        if seen.insert(der.to_vec()) {
            body.push_str(&pem_encode(&der));
        }
    }
    for der in parse_pem(ca_pem.as_bytes()).0 {
        seen.insert(der.to_vec());
    }
    let mut merged = Vec::new();
    let mut unreadable = Vec::new();
    let mut own = blake3::Hasher::new();
    for s in sources {
        let text = match read_source(s) {
            Ok(t) => t,
            Err(why) => {
                unreadable.push((s.origin.clone(), why.to_string()));
                continue;
            }
        };
        let (certs, bad) = parse_pem(&text);
        if certs.is_empty() {
            let why = if bad > 0 {
                "its PEM is damaged".to_string()
            } else {
                "it holds no certificate".to_string()
            };
            unreadable.push((s.origin.clone(), why));
            continue;
        }
        let mut added = 0;
        for der in certs {
            if seen.insert(der.to_vec()) {
                if added == 0 {
                    body.push_str(&format!("# from {}\n", describe(s)));
                }
                own.update(&der);
                body.push_str(&pem_encode(&der));
                added += 1;
            }
        }
        merged.push((s.origin.clone(), added));
    }
    body.push_str("# tapedeck CA\n");
    body.push_str(&ca_pem);
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let plain = plain_path(ca.dir());
    let dir = plain.parent().unwrap_or(Path::new(".")).to_path_buf();
    let path = if merged.iter().any(|(_, n)| *n > 0) {
        let hex = own.finalize().to_hex();
        dir.join(format!("trust-bundle-{}.pem", &hex[..12]))
    } else {
        plain
    };
    let head = "# tapedeck trust bundle: the system roots, the CA certificates you had configured \
                (if any) and tapedeck's CA. Rewritten on every run; do not edit.\n";
    // Certificates are public; other users (a container's) may need to read them.
    std::fs::create_dir_all(&dir)
        .and_then(|()| {
            tapedeck_model::secure_fs::write(&path, format!("{head}{body}").as_bytes(), 0o644)
                .map_err(|e| e.source)
        })
        .map_err(|source| TrustError::Write { dir, source })?;
    Ok(TrustBundle {
        path,
        vars: Vec::new(),
        overridden: Vec::new(),
        merged,
        unreadable,
    })
}

fn describe(s: &Source) -> String {
    match &s.certs {
        SourceCerts::File(p) => format!("{} ({})", s.origin, p.display()),
        SourceCerts::Inline(_) => s.origin.clone(),
    }
}

/// A CA source that could not be read.
#[derive(Debug, Error)]
enum SourceError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {mib} MiB, not a CA bundle")]
    TooLarge { path: PathBuf, mib: u64 },
}

fn read_source(s: &Source) -> Result<Vec<u8>, SourceError> {
    match &s.certs {
        SourceCerts::Inline(text) => Ok(text.as_bytes().to_vec()),
        SourceCerts::File(p) => {
            let read = |source| SourceError::Read {
                path: p.clone(),
                source,
            };
            let f = std::fs::File::open(p).map_err(read)?;
            let mut data = Vec::new();
            f.take(MAX_SOURCE_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(read)?;
            if data.len() as u64 > MAX_SOURCE_BYTES {
                return Err(SourceError::TooLarge {
                    path: p.clone(),
                    mib: MAX_SOURCE_BYTES >> 20,
                });
            }
            Ok(data)
        }
    }
}

/// The certificates of a PEM text, and how many blocks could not be read.
pub fn parse_pem(data: &[u8]) -> (Vec<CertificateDer<'static>>, usize) {
    let mut certs = Vec::new();
    let mut bad = 0;
    for item in rustls_pemfile::certs(&mut &data[..]) {
        match item {
            Ok(c) => certs.push(c),
            Err(_) => bad += 1,
        }
    }
    (certs, bad)
}

/// The system's trusted roots as PEM: a known bundle file, else rustls-native-certs.
pub fn system_roots_pem() -> String {
    for p in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
        "/usr/local/etc/openssl/cert.pem",
    ] {
        if let Ok(text) = std::fs::read_to_string(p) {
            if text.contains("BEGIN CERTIFICATE") {
                return text;
            }
        }
    }
    let mut out = String::new();
    for cert in rustls_native_certs::load_native_certs().certs {
        out.push_str(&pem_encode(&cert));
    }
    out
}

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn other_ca() -> String {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_create(dir.path()).unwrap();
        ca.cert_pem()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn without_own_certificates_the_plain_bundle_holds_system_roots_and_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_create(&dir.path().join("certs")).unwrap();
        let cwd = tempfile::tempdir().unwrap();
        let b = TrustBundle::for_env(&ca, &env(&[]), cwd.path()).unwrap();
        assert!(b.path.is_absolute());
        assert_eq!(b.path.file_name().unwrap(), TRUST_BUNDLE_FILE);
        assert_eq!(b.vars.len(), CA_VARS.len());
        assert!(b.summary().is_none());
        let text = std::fs::read(&b.path).unwrap();
        let (certs, _) = parse_pem(&text);
        let (mine, _) = parse_pem(ca.cert_pem().as_bytes());
        assert!(certs.contains(&mine[0]));
        assert!(certs.len() > 1, "system roots are in it");
        let mode = std::fs::metadata(&b.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn a_users_own_bundle_is_merged_and_named_in_the_summary() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_create(&dir.path().join("certs")).unwrap();
        let corp = dir.path().join("corp.pem");
        std::fs::write(&corp, other_ca()).unwrap();
        let cwd = tempfile::tempdir().unwrap();
        let e = env(&[
            ("SSL_CERT_FILE", corp.to_str().unwrap()),
            ("npm_config_cafile", corp.to_str().unwrap()),
            ("PIP_CERT", "/nonexistent/pip.pem"),
        ]);
        let b = TrustBundle::for_env(&ca, &e, cwd.path()).unwrap();
        assert_ne!(b.path.file_name().unwrap(), TRUST_BUNDLE_FILE);
        let (certs, _) = parse_pem(&std::fs::read(&b.path).unwrap());
        let (corp_der, _) = parse_pem(&std::fs::read(&corp).unwrap());
        assert_eq!(
            certs.iter().filter(|c| **c == corp_der[0]).count(),
            1,
            "the corporate CA is in the bundle once"
        );
        let names: Vec<&str> = b.overridden.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["SSL_CERT_FILE", "PIP_CERT", "npm_config_cafile"]);
        assert!(b.vars.iter().any(|(n, _)| n == "npm_config_cafile"));
        assert_eq!(b.unreadable.len(), 1);
        let line = b.summary().unwrap();
        assert!(
            line.starts_with("SSL_CERT_FILE, PIP_CERT, npm_config_cafile named other bundles")
                && line.contains("1 certificate from SSL_CERT_FILE"),
            "{line}"
        );
    }

    #[test]
    fn a_symlink_at_the_bundle_path_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let (ca, _) = Ca::load_or_create(&certs).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        std::os::unix::fs::symlink(&victim, certs.join(TRUST_BUNDLE_FILE)).unwrap();
        let b = TrustBundle::plain(&ca).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert!(!std::fs::symlink_metadata(&b.path)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
