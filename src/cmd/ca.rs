//! `tapedeck ca`: create the CA if missing and write the trust bundle beside it; the
//! last line printed (stdout) is the CA's PEM path.

use std::path::Path;

use super::CmdResult;
use tapedeck_proxy::ca::Ca;
use tapedeck_proxy::trust::{TrustBundle, CA_VARS};

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
    let bundle = TrustBundle::plain(&ca)?;
    eprintln!(
        "trust bundle (the system roots + this CA, for clients that replace their CA list): {}",
        bundle.path.display()
    );
    eprintln!(
        "`tapedeck record|replay -- CMD` points every CA variable at a bundle for CMD; for a daemon, \
         eval \"$(tapedeck env)\" exports them ({})",
        CA_VARS.join(", ")
    );
    println!("{}", ca.cert_path().display());
    Ok(0)
}
