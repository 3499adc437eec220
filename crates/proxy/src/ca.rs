//! tapedeck's certificate authority and the leaf certificates it signs on demand.
//!
//! `certs/ca.pem` is what clients trust; `certs/ca-key.pem` (mode 0600) never leaves the
//! machine. Leaf certificates carry a DNS SAN for host names and an IP SAN for IP
//! addresses (clients send no SNI for an IP, so the CONNECT target names the
//! certificate). They share one key pair and are cached per host (bounded), so the
//! second connection to a host costs neither key generation nor signing.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use thiserror::Error;

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
const LEAF_CACHE: usize = 1024;

#[derive(Debug, Error)]
pub enum CaError {
    #[error("cannot use the certificate directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable tapedeck CA ({problem}); move it away and run `tapedeck ca` to make a new one")]
    Invalid {
        path: PathBuf,
        #[source]
        problem: CaProblem,
    },
    #[error("{missing} is missing but {present} is there: tapedeck does not make a new CA over half of one. Restore {missing}, or move {present} away and run `tapedeck ca` (clients then need to trust the new ca.pem)")]
    Incomplete { missing: PathBuf, present: PathBuf },
    #[error("{cert} does not belong to the key in {key} ({problem}); was it replaced? Restore the CA's own certificate, or move both away and run `tapedeck ca`")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        problem: CaProblem,
    },
    #[error("cannot sign a certificate for {host}: {source}")]
    Sign {
        host: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// What is wrong with a CA certificate or key on disk.
#[derive(Debug, Error)]
pub enum CaProblem {
    #[error("{0}")]
    Key(#[source] rcgen::Error),
    #[error("{0}")]
    Pem(#[source] std::io::Error),
    #[error("no PEM certificate in it")]
    NoPem,
    #[error("cannot parse it: {0}")]
    Parse(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    #[error("its public key is not the key's")]
    OtherKey,
    #[error("its self-signature does not verify: {0}")]
    Signature(#[source] x509_parser::error::X509Error),
    #[error("it is not a CA certificate")]
    NotCa,
}

pub struct Ca {
    dir: PathBuf,
    /// `ca.pem` as read and checked against the key at start: what clients are told to
    /// trust, never re-read from disk afterwards.
    pem: String,
    cert: rcgen::Certificate,
    key: KeyPair,
    leaf_key: KeyPair,
    leaf_key_der: Vec<u8>,
    cache: Mutex<lru::LruCache<String, Arc<rustls::ServerConfig>>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_err(e: tapedeck_model::secure_fs::WriteError) -> CaError {
    CaError::Io {
        path: e.path,
        source: e.source,
    }
}

fn sign_err(what: &str) -> impl FnOnce(rcgen::Error) -> CaError + '_ {
    move |source| CaError::Sign {
        host: what.to_string(),
        source,
    }
}

impl Ca {
    /// Loads the CA in `dir`, creating it when neither file exists. Returns the CA and
    /// whether it is new. Half a CA (a key without its certificate, or the reverse) and a
    /// certificate that does not match its key are errors, never replaced.
    pub fn load_or_create(dir: &Path) -> Result<(Ca, bool), CaError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let present = |p: &Path| p.symlink_metadata().is_ok();
        let (pem, cert, key, created) = match (present(&cert_path), present(&key_path)) {
            (true, true) => {
                let (pem, cert, key) = load(&cert_path, &key_path)?;
                (pem, cert, key, false)
            }
            (false, false) => {
                let (pem, cert, key) = create(&cert_path, &key_path)?;
                (pem, cert, key, true)
            }
            (false, true) => {
                return Err(CaError::Incomplete {
                    missing: cert_path,
                    present: key_path,
                })
            }
            (true, false) => {
                return Err(CaError::Incomplete {
                    missing: key_path,
                    present: cert_path,
                })
            }
        };
        warn_loose_modes(dir, &key_path);
        let leaf_key = KeyPair::generate().map_err(sign_err("leaf"))?;
        let leaf_key_der = leaf_key.serialize_der();
        Ok((
            Ca {
                dir: dir.to_path_buf(),
                pem,
                cert,
                key,
                leaf_key,
                leaf_key_der,
                cache: Mutex::new(lru::LruCache::new(
                    NonZeroUsize::new(LEAF_CACHE).unwrap_or(NonZeroUsize::MIN),
                )),
            },
            created,
        ))
    }

    /// The certificate directory (as given; may be relative).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// The CA certificate clients trust, as checked at start.
    pub fn cert_pem(&self) -> String {
        self.pem.clone()
    }

    /// The TLS server configuration for `host`, made on first use and cached.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if let Some(cfg) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&host)
        {
            return Ok(cfg.clone());
        }
        let cfg = Arc::new(self.make_config(&host)?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(host, cfg.clone());
        Ok(cfg)
    }

    fn make_config(&self, host: &str) -> Result<rustls::ServerConfig, CaError> {
        let sign_err = |source: rcgen::Error| CaError::Sign {
            host: host.to_string(),
            source,
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = leaf_names(host)
            .into_iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(name.try_into().map_err(sign_err)?)),
            })
            .collect::<Result<_, CaError>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let leaf = params
            .signed_by(&self.leaf_key, &self.cert, &self.key)
            .map_err(sign_err)?;
        let chain = vec![CertificateDer::from(leaf.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// The names the leaf minted for `host` carries: the host itself, and the loopback host
/// under its other names (a client that asked for 127.0.0.1 may check the certificate
/// against "localhost", as npm through a proxy does, and one that asked for localhost may
/// have resolved it and check the address).
pub fn leaf_names(host: &str) -> Vec<String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse::<IpAddr>().ok();
    let mut names = vec![match ip {
        Some(ip) => ip.to_string(),
        None => host.to_string(),
    }];
    let is_loopback = ip.map_or(host.eq_ignore_ascii_case("localhost"), |ip| {
        ip.is_loopback()
    });
    if is_loopback {
        for other in ["localhost", "127.0.0.1", "::1"] {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(other)) {
                names.push(other.to_string());
            }
        }
    }
    names
}

/// Reads the CA and checks that the certificate is a CA certificate for this very key,
/// signed by it.
fn load(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(String, rcgen::Certificate, KeyPair), CaError> {
    let key_pem = std::fs::read_to_string(key_path).map_err(io_err(key_path))?;
    let cert_pem = std::fs::read_to_string(cert_path).map_err(io_err(cert_path))?;
    let invalid = |path: &Path, problem: CaProblem| CaError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(key_path, CaProblem::Key(e)))?;
    verify_pair(&cert_pem, &key).map_err(|m| match m {
        PairError::Unusable(problem) => invalid(cert_path, problem),
        PairError::Mismatch(problem) => CaError::Mismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            problem,
        },
    })?;
    let params = CertificateParams::from_ca_cert_pem(&cert_pem)
        .map_err(|e| invalid(cert_path, CaProblem::Key(e)))?;
    // Re-signing with the same key and name gives a certificate that verifies exactly
    // like the one on disk (same subject, same key identifier).
    let cert = params
        .self_signed(&key)
        .map_err(|e| invalid(cert_path, CaProblem::Key(e)))?;
    Ok((cert_pem, cert, key))
}

enum PairError {
    Unusable(CaProblem),
    Mismatch(CaProblem),
}

fn verify_pair(cert_pem: &str, key: &KeyPair) -> Result<(), PairError> {
    let der = match rustls_pemfile::certs(&mut cert_pem.as_bytes()).next() {
        Some(Ok(der)) => der,
        Some(Err(e)) => return Err(PairError::Unusable(CaProblem::Pem(e))),
        None => return Err(PairError::Unusable(CaProblem::NoPem)),
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PairError::Unusable(CaProblem::Parse(e)))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PairError::Mismatch(CaProblem::OtherKey));
    }
    cert.verify_signature(None)
        .map_err(|e| PairError::Mismatch(CaProblem::Signature(e)))?;
    if !cert.is_ca() {
        return Err(PairError::Unusable(CaProblem::NotCa));
    }
    Ok(())
}

/// Makes a new CA: the key first (0600), so a certificate never exists without it.
fn create(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(String, rcgen::Certificate, KeyPair), CaError> {
    let key = KeyPair::generate().map_err(sign_err("CA"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tapedeck CA");
    dn.push(DnType::OrganizationName, "tapedeck");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(sign_err("CA"))?;
    tapedeck_model::secure_fs::write(
        key_path,
        key.serialize_pem().as_bytes(),
        tapedeck_model::secure_fs::PRIVATE_FILE,
    )
    .map_err(write_err)?;
    let pem = cert.pem();
    tapedeck_model::secure_fs::write(cert_path, pem.as_bytes(), 0o644).map_err(write_err)?;
    Ok((pem, cert, key))
}

/// One warning per loose permission: a key others can read, a directory others can
/// write (they could swap the CA clients are told to trust).
fn warn_loose_modes(dir: &Path, key_path: &Path) {
    if let Some(m) = tapedeck_model::secure_fs::mode(key_path) {
        if m & 0o077 != 0 {
            tracing::warn!(
                "{} is mode {m:03o}: others on this machine can read the CA key and impersonate any host to clients that trust it (chmod 600 {})",
                key_path.display(),
                key_path.display()
            );
        }
    }
    if let Some(m) = tapedeck_model::secure_fs::mode(dir) {
        if m & 0o022 != 0 {
            tracing::warn!(
                "{} is mode {m:03o}: others on this machine can replace the CA in it (chmod go-w {})",
                dir.display(),
                dir.display()
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ca_is_created_once_with_a_private_key_file_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, created) = Ca::load_or_create(dir.path()).unwrap();
        assert!(created);
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = std::fs::read_to_string(dir.path().join(CA_CERT_FILE)).unwrap();
        let (ca, created) = Ca::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(ca.cert_pem(), pem);
        let a = ca.server_config("api.test").unwrap();
        let b = ca.server_config("API.test").unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "second lookup must come from the cache"
        );
        ca.server_config("127.0.0.1").unwrap();
        ca.server_config("[::1]").unwrap();
    }

    /// Whether a client that trusts `ca` and asks for `name` completes a real TLS
    /// handshake with the leaf minted for `host`.
    async fn handshake(ca: &Ca, host: &str, name: &str) -> bool {
        real_handshake(ca, host, name, true).await.0
    }

    /// A real TLS handshake between a rustls client (trusting `ca` when `trusts`) that
    /// asks for `name` and the leaf minted for `host`: whether the client completed it,
    /// and the server's error when the server did not.
    pub(crate) async fn real_handshake(
        ca: &Ca,
        host: &str,
        name: &str,
        trusts: bool,
    ) -> (bool, Option<std::io::Error>) {
        let server = tokio_rustls::TlsAcceptor::from(ca.server_config(host).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            server.accept(tcp).await.err()
        });
        let mut roots = rustls::RootCertStore::empty();
        if trusts {
            for cert in rustls_pemfile::certs(&mut ca.cert_pem().as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let client = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await;
        (client.is_ok(), accepted.await.unwrap())
    }

    #[tokio::test]
    async fn a_loopback_leaf_answers_to_the_loopback_host_under_any_of_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = Ca::load_or_create(dir.path()).unwrap();
        // Asked for 127.0.0.1, checked against "localhost" (npm through a proxy), and
        // the other way round.
        assert!(handshake(&ca, "127.0.0.1", "localhost").await);
        assert!(handshake(&ca, "127.0.0.1", "127.0.0.1").await);
        assert!(handshake(&ca, "localhost", "127.0.0.1").await);
        assert!(handshake(&ca, "localhost", "::1").await);
        // Any other host's leaf names that host alone.
        assert!(handshake(&ca, "api.test", "api.test").await);
        assert!(!handshake(&ca, "api.test", "localhost").await);
        assert!(!handshake(&ca, "10.0.0.1", "localhost").await);
    }

    #[test]
    fn a_replaced_certificate_is_refused_not_handed_to_clients() {
        let mine = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        Ca::load_or_create(mine.path()).unwrap();
        Ca::load_or_create(other.path()).unwrap();
        std::fs::copy(
            other.path().join(CA_CERT_FILE),
            mine.path().join(CA_CERT_FILE),
        )
        .unwrap();
        let e = Ca::load_or_create(mine.path()).err().unwrap();
        assert!(matches!(e, CaError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("was it replaced"), "{e}");
        std::fs::write(mine.path().join(CA_CERT_FILE), "not a certificate").unwrap();
        let e = Ca::load_or_create(mine.path()).err().unwrap();
        assert!(matches!(e, CaError::Invalid { .. }), "{e}");
    }

    #[test]
    fn half_a_ca_is_an_error_and_nothing_is_regenerated() {
        let dir = tempfile::tempdir().unwrap();
        Ca::load_or_create(dir.path()).unwrap();
        let key = std::fs::read(dir.path().join(CA_KEY_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(CA_CERT_FILE)).unwrap();
        let e = Ca::load_or_create(dir.path()).err().unwrap();
        assert!(matches!(e, CaError::Incomplete { .. }), "{e}");
        assert_eq!(std::fs::read(dir.path().join(CA_KEY_FILE)).unwrap(), key);
        assert!(!dir.path().join(CA_CERT_FILE).exists());
    }
}
