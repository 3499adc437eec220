//! Which client rejected tapedeck's certificate, guessed from what the proxy saw before
//! the handshake failed, so the warning can name the one variable that fixes it.
//!
//! Inside TLS the request's User-Agent is never seen when the handshake fails, so the
//! guess uses the SNI (registry.npmjs.org is npm, files.pythonhosted.org is pip), the
//! CONNECT request's User-Agent (git, curl and cargo send one), and how the CONNECT was
//! written (Python's http.client, under pip, requests and urllib, sends a bare HTTP/1.0
//! CONNECT with no headers at all).

/// What the proxy knows about a client whose handshake failed.
#[derive(Debug, Default, Clone)]
pub struct Seen<'a> {
    pub sni: Option<&'a str>,
    pub connect_user_agent: Option<&'a str>,
    /// The CONNECT was HTTP/1.0 with neither Host nor User-Agent (Python's http.client).
    pub bare_http10_connect: bool,
}

/// A client and the variables that make it trust a CA bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub name: &'static str,
    pub vars: &'static [&'static str],
}

const NPM: Client = Client {
    name: "npm (or yarn, pnpm)",
    vars: &["NPM_CONFIG_CAFILE"],
};
const PIP: Client = Client {
    name: "pip",
    vars: &["PIP_CERT"],
};
const GIT: Client = Client {
    name: "git",
    vars: &["GIT_SSL_CAINFO"],
};
const CARGO: Client = Client {
    name: "cargo",
    vars: &["CARGO_HTTP_CAINFO"],
};
const CURL: Client = Client {
    name: "curl",
    vars: &["CURL_CA_BUNDLE"],
};
const NODE: Client = Client {
    name: "Node",
    vars: &["NODE_EXTRA_CA_CERTS"],
};
const PYTHON: Client = Client {
    name: "Python (urllib, requests, pip)",
    vars: &["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT"],
};
const DENO: Client = Client {
    name: "Deno",
    vars: &["DENO_CERT"],
};
const AWS: Client = Client {
    name: "an AWS SDK or the aws CLI",
    vars: &["AWS_CA_BUNDLE"],
};
const GRPC: Client = Client {
    name: "gRPC",
    vars: &["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"],
};

/// User-Agent prefixes (lower case) of clients that send one on CONNECT or in requests.
const BY_AGENT: &[(&str, Client)] = &[
    ("npm/", NPM),
    ("yarn/", NPM),
    ("pnpm/", NPM),
    ("pip/", PIP),
    ("git/", GIT),
    ("jgit/", GIT),
    ("cargo/", CARGO),
    ("curl/", CURL),
    ("deno/", DENO),
    ("grpc-", GRPC),
    ("aws-cli/", AWS),
    ("aws-sdk-", AWS),
    ("boto3/", AWS),
    ("botocore/", AWS),
    ("node", NODE),
    ("undici", NODE),
    ("python-requests/", PYTHON),
    ("python-httpx/", PYTHON),
    ("python-urllib/", PYTHON),
    ("python/", PYTHON),
];

/// Hosts (lower case) that one client mostly talks to; a leading `.` matches the domain
/// and its subdomains (index.crates.io), otherwise the name alone (api.github.com is an
/// API client's, not git's).
const BY_HOST: &[(&str, Client)] = &[
    ("registry.npmjs.org", NPM),
    ("registry.yarnpkg.com", NPM),
    ("npm.pkg.github.com", NPM),
    ("pypi.org", PIP),
    ("files.pythonhosted.org", PIP),
    ("pypi.python.org", PIP),
    ("github.com", GIT),
    ("gitlab.com", GIT),
    ("bitbucket.org", GIT),
    (".crates.io", CARGO),
    (".deno.land", DENO),
    (".jsr.io", DENO),
    (".amazonaws.com", AWS),
];

/// The client most likely behind a failed handshake, if anything points at one.
pub fn guess(seen: &Seen) -> Option<Client> {
    if let Some(ua) = seen.connect_user_agent {
        let ua = ua.trim().to_ascii_lowercase();
        if let Some((_, c)) = BY_AGENT.iter().find(|(p, _)| ua.starts_with(p)) {
            return Some(*c);
        }
    }
    let by_host = seen.sni.and_then(|sni| {
        let sni = sni.trim_end_matches('.').to_ascii_lowercase();
        BY_HOST
            .iter()
            .find(|(h, _)| match h.strip_prefix('.') {
                Some(domain) => sni == domain || sni.ends_with(h),
                None => sni == *h,
            })
            .map(|(_, c)| *c)
    });
    match by_host {
        // The host says pip, or says nothing and the CONNECT says Python.
        Some(c) => Some(c),
        None if seen.bare_http10_connect => Some(PYTHON),
        None => None,
    }
}

/// The advice for a client that does not trust tapedeck's CA: the variable of the
/// guessed client, else the general list.
pub fn advice(seen: &Seen, bundle: &str) -> String {
    match guess(seen) {
        Some(c) => format!(
            "this looks like {}, which reads {}: point it at {bundle} (`-- CMD` does; for a daemon, `eval \"$(tapedeck env)\"`)",
            c.name,
            c.vars.join(" or ")
        ),
        None => format!(
            "point its CA setting (SSL_CERT_FILE, REQUESTS_CA_BUNDLE, NODE_EXTRA_CA_CERTS, NPM_CONFIG_CAFILE, \
             PIP_CERT, GIT_SSL_CAINFO, CURL_CA_BUNDLE, ...) at {bundle} (`-- CMD` sets them all; for a daemon, \
             `eval \"$(tapedeck env)\"`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guess_of(sni: Option<&str>, ua: Option<&str>, bare: bool) -> Option<&'static str> {
        guess(&Seen {
            sni,
            connect_user_agent: ua,
            bare_http10_connect: bare,
        })
        .map(|c| c.vars[0])
    }

    #[test]
    fn the_user_agent_wins_then_the_host_then_the_shape_of_the_connect() {
        assert_eq!(
            guess_of(Some("github.com"), Some("git/2.47.3"), false),
            Some("GIT_SSL_CAINFO")
        );
        assert_eq!(
            guess_of(Some("example.com"), Some("curl/8.5.0"), false),
            Some("CURL_CA_BUNDLE")
        );
        assert_eq!(
            guess_of(Some("index.crates.io"), None, false),
            Some("CARGO_HTTP_CAINFO")
        );
        assert_eq!(
            guess_of(Some("registry.npmjs.org"), None, false),
            Some("NPM_CONFIG_CAFILE")
        );
        assert_eq!(
            guess_of(Some("files.pythonhosted.org"), None, true),
            Some("PIP_CERT")
        );
        assert_eq!(
            guess_of(Some("api.openai.com"), None, true),
            Some("SSL_CERT_FILE")
        );
        assert_eq!(guess_of(Some("api.openai.com"), None, false), None);
        assert_eq!(
            guess_of(Some("s3.eu-west-1.amazonaws.com"), None, false),
            Some("AWS_CA_BUNDLE")
        );
        assert_eq!(guess_of(Some("notgithub.com"), None, false), None);
        assert_eq!(guess_of(Some("api.github.com"), None, false), None);
        assert_eq!(
            guess_of(Some("crates.io"), None, false),
            Some("CARGO_HTTP_CAINFO")
        );
    }

    #[test]
    fn advice_names_the_variable_or_the_whole_list() {
        let named = advice(
            &Seen {
                sni: Some("registry.npmjs.org"),
                ..Seen::default()
            },
            "/c/trust-bundle.pem",
        );
        assert!(
            named.starts_with("this looks like npm")
                && named.contains("reads NPM_CONFIG_CAFILE: point it at /c/trust-bundle.pem"),
            "{named}"
        );
        let general = advice(&Seen::default(), "/c/trust-bundle.pem");
        assert!(general.contains("SSL_CERT_FILE") && general.contains("tapedeck env"));
    }
}
