//! `tapedeck env`: the `export` lines that point a shell's clients at a running daemon
//! and make every common client trust tapedeck's CA: `eval "$(tapedeck env)"`.
//!
//! stdout carries the export lines only; notes go to stderr, so the eval never runs
//! anything else.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use super::{msg, CmdResult};
use tapedeck_proxy::ca::Ca;

/// Where a daemon listens when neither `--listen` nor `TAPEDECK_LISTEN` says.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn run(listen: Option<&str>, certs: &Path) -> CmdResult {
    let listen = listen.unwrap_or(DEFAULT_LISTEN);
    let url = proxy_url(listen)?;
    let (ca, _) = Ca::load_or_create(certs)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let trust = crate::child::trust_for_command(&ca, &cwd)?;
    let mut out = String::new();
    for (name, value) in crate::child::exports(&url, &trust) {
        let quoted = shlex::try_quote(&value)
            .map_err(|e| msg(format!("cannot quote {name}={value:?} for a shell: {e}")))?;
        out.push_str(&format!("export {name}={quoted}\n"));
    }
    print!("{out}");
    if !listening(listen).await {
        eprintln!(
            "tapedeck env: nothing listens on {listen} yet; start `tapedeck record` (or `replay`) there, or pass the daemon's --listen"
        );
    }
    let no_proxy: Vec<String> = ["NO_PROXY", "no_proxy"]
        .iter()
        .filter_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .collect();
    if !no_proxy.is_empty() {
        eprintln!(
            "tapedeck env: NO_PROXY={:?} is set: the hosts it names bypass tapedeck (`unset NO_PROXY no_proxy` to record them)",
            no_proxy.join(",")
        );
    }
    eprintln!(
        "tapedeck env: proxy {url}, trust bundle {}; apply with: eval \"$(tapedeck env)\"",
        trust.path.display()
    );
    Ok(0)
}

/// The URL clients use for a listen address: an unspecified address (0.0.0.0, ::)
/// is reached on loopback.
fn proxy_url(listen: &str) -> Result<String, super::CmdError> {
    let bad = || {
        msg(format!(
            "--listen {listen:?} is not an address with a port (like 127.0.0.1:8080)"
        ))
    };
    match listen.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip = if a.is_ipv4() { "127.0.0.1" } else { "[::1]" };
            Ok(format!("http://{ip}:{}", a.port()))
        }
        Ok(a) => Ok(format!("http://{a}")),
        Err(_) => {
            let (host, port) = listen.rsplit_once(':').ok_or_else(bad)?;
            port.parse::<u16>().map_err(|_| bad())?;
            if host.is_empty() {
                return Err(bad());
            }
            Ok(format!("http://{listen}"))
        }
    }
}

async fn listening(listen: &str) -> bool {
    let Ok(mut addrs) = listen.to_socket_addrs() else {
        return false;
    };
    let Some(mut addr) = addrs.next() else {
        return false;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_become_urls_clients_can_reach() {
        assert_eq!(
            proxy_url("127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(proxy_url("0.0.0.0:9000").unwrap(), "http://127.0.0.1:9000");
        assert_eq!(proxy_url("[::]:9000").unwrap(), "http://[::1]:9000");
        assert_eq!(
            proxy_url("localhost:8080").unwrap(),
            "http://localhost:8080"
        );
        assert!(proxy_url("localhost").is_err());
        assert!(proxy_url(":80").is_err());
    }
}
