//! tapedeck's certificate authority and the leaf certificates it signs on demand.
//!
//! `certs/ca.pem` is what clients trust; `certs/ca-key.pem` (mode 0600) never leaves the
//! machine. Leaf certificates carry a DNS SAN for host names and an IP SAN for IP
//! addresses (clients send no SNI for an IP, so the CONNECT target names the
//! certificate). They share one key pair and are cached per host (bounded), so the
//! second connection to a host costs neither key generation nor signing.

use std::io::Write;
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
        source: std::io::Error,
    },
    #[error("{path} is not a usable tapedeck CA ({message}); move it away and run `tapedeck ca` to make a new one")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot sign a certificate for {host}: {message}")]
    Sign { host: String, message: String },
    #[error("TLS configuration failed: {0}")]
    Tls(String),
}

pub struct Ca {
    dir: PathBuf,
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

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

impl Ca {
    /// Loads the CA in `dir`, creating it if missing. Returns the CA and whether it is new.
    pub fn load_or_create(dir: &Path) -> Result<(Ca, bool), CaError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let (cert, key, created) = if cert_path.exists() && key_path.exists() {
            let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
            let invalid = |path: &Path, e: rcgen::Error| CaError::Invalid {
                path: path.to_path_buf(),
                message: e.to_string(),
            };
            let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(&key_path, e))?;
            let params = CertificateParams::from_ca_cert_pem(&cert_pem)
                .map_err(|e| invalid(&cert_path, e))?;
            // Re-signing with the same key and name gives a certificate that verifies
            // exactly like the one on disk (same subject, same key identifier).
            let cert = params
                .self_signed(&key)
                .map_err(|e| invalid(&cert_path, e))?;
            (cert, key, false)
        } else {
            let key = KeyPair::generate().map_err(|e| CaError::Sign {
                host: "CA".into(),
                message: e.to_string(),
            })?;
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
            let cert = params.self_signed(&key).map_err(|e| CaError::Sign {
                host: "CA".into(),
                message: e.to_string(),
            })?;
            // Key first: a cert without its key would be unusable.
            let _ = std::fs::remove_file(&key_path);
            write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io_err(&key_path))?;
            std::fs::write(&cert_path, cert.pem()).map_err(io_err(&cert_path))?;
            (cert, key, true)
        };
        let leaf_key = KeyPair::generate().map_err(|e| CaError::Sign {
            host: "leaf".into(),
            message: e.to_string(),
        })?;
        let leaf_key_der = leaf_key.serialize_der();
        Ok((
            Ca {
                dir: dir.to_path_buf(),
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

    pub fn cert_pem(&self) -> String {
        // The file on disk is what clients trust; prefer it over the re-signed copy.
        std::fs::read_to_string(self.cert_path()).unwrap_or_else(|_| self.cert.pem())
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
        let sign_err = |e: rcgen::Error| CaError::Sign {
            host: host.to_string(),
            message: e.to_string(),
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(sign_err)?),
        }];
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
        .with_safe_default_protocol_versions()
        .map_err(|e| CaError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| CaError::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
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
}
