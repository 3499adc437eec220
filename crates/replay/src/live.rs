//! `--allow-live HOST[:PORT]`: the only traffic a replay lets out.
//!
//! A CONNECT to an allowed host and port is tunnelled untouched to the real host (no
//! interception, nothing served from the recording); `HOST` alone means port 443, and
//! HOST may be a glob (`*.example.com`). Every live tunnel is counted, so the banner and
//! the summary say what went out.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One `--allow-live` value.
struct Pattern {
    text: String,
    host: wildmatch::WildMatch,
    port: u16,
}

#[derive(Default)]
pub struct LiveHosts {
    patterns: Vec<Pattern>,
    /// Tunnels opened, by `host:port`.
    opened: Mutex<BTreeMap<String, usize>>,
}

/// An `--allow-live` value that names no host and port.
#[derive(Debug, thiserror::Error)]
#[error("--allow-live {spec:?}: {why}; give HOST or HOST:PORT (a port from 1 to 65535)")]
pub struct LiveSpecError {
    spec: String,
    why: &'static str,
}

/// Host glob and port of `HOST[:PORT]` (`[v6]:PORT` for an IPv6 address).
fn parse(spec: &str) -> Result<(String, u16), LiveSpecError> {
    let bad = |why: &'static str| LiveSpecError {
        spec: spec.to_string(),
        why,
    };
    let (host, port) = match spec.rfind(':') {
        Some(i) if !spec[i..].contains(']') && spec[..i].matches(':').count() == 0 => {
            (&spec[..i], Some(&spec[i + 1..]))
        }
        Some(i) if spec.starts_with('[') && spec[..i].ends_with(']') => {
            (&spec[..i], Some(&spec[i + 1..]))
        }
        _ => (spec, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => 443,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("bad port")),
        },
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// Checks every `--allow-live` value, naming the first bad one.
pub fn check(specs: &[String]) -> Result<(), LiveSpecError> {
    specs.iter().try_for_each(|s| parse(s).map(|_| ()))
}

impl LiveHosts {
    /// The patterns among `specs` that parse (see [`check`] for the others).
    pub fn new(specs: &[String]) -> LiveHosts {
        LiveHosts {
            patterns: specs
                .iter()
                .filter_map(|s| {
                    let (host, port) = parse(s).ok()?;
                    Some(Pattern {
                        text: format!("{host}:{port}"),
                        host: wildmatch::WildMatch::new(&host),
                        port,
                    })
                })
                .collect(),
            opened: Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether a CONNECT to `host:port` goes out live; counts it when it does.
    pub fn admit(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let allowed = self
            .patterns
            .iter()
            .any(|p| p.port == port && p.host.matches(&host));
        if allowed {
            *self
                .opened
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(format!("{host}:{port}"))
                .or_default() += 1;
        }
        allowed
    }

    /// The allowed targets, as `host:port`.
    pub fn allowed(&self) -> Vec<String> {
        self.patterns.iter().map(|p| p.text.clone()).collect()
    }

    /// Tunnels opened so far, by `host:port`.
    pub fn opened(&self) -> BTreeMap<String, usize> {
        self.opened
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_alone_means_port_443_and_a_port_means_that_port_only() {
        let live = LiveHosts::new(&[
            "api.example.com".into(),
            "localhost:8443".into(),
            "*.cdn.test".into(),
            "[::1]:9000".into(),
        ]);
        assert!(live.admit("API.example.com", 443));
        assert!(
            !live.admit("api.example.com", 22),
            "not every port of the host"
        );
        assert!(live.admit("localhost", 8443));
        assert!(!live.admit("localhost", 443));
        assert!(live.admit("a.cdn.test", 443));
        assert!(live.admit("::1", 9000));
        assert_eq!(live.opened().get("api.example.com:443"), Some(&1));
        assert_eq!(live.opened().len(), 4);
        assert_eq!(live.allowed()[1], "localhost:8443");
    }

    #[test]
    fn bad_values_are_named() {
        assert!(check(&["ok.test".into(), "ok.test:1".into()]).is_ok());
        for bad in ["host:0", "host:99999", ":443", "host:x"] {
            let e = check(&[bad.to_string()]).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
