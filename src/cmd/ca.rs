//! `tapedeck ca`: create the CA if missing; the last line printed is its PEM path.

use std::path::Path;

use super::CmdResult;
use crate::ca::Ca;

pub fn run(certs: &Path) -> CmdResult {
    let (ca, created) = Ca::load_or_create(certs)?;
    if created {
        eprintln!(
            "created a new CA in {} (the key is readable by you only)",
            certs.display()
        );
    } else {
        eprintln!("using the CA in {}", certs.display());
    }
    eprintln!(
        "trust it with: SSL_CERT_FILE / REQUESTS_CA_BUNDLE / NODE_EXTRA_CA_CERTS / CURL_CA_BUNDLE"
    );
    println!("{}", ca.cert_path().display());
    Ok(0)
}
