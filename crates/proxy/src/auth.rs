//! Who may use the proxy, and which session and agent a client writes as.
//!
//! A client names itself in the proxy URL: `http://USER:PASSWORD@host:port`, sent as
//! `Proxy-Authorization: Basic`. The user name is `SESSION`, `SESSION+AGENT` or `+AGENT`
//! (`+` is not a session-name character, so the split is unambiguous); the password is
//! a secret and only ever compared, never stored. What is checked:
//!
//! - `--proxy-auth USER:PASS`: every request and CONNECT must carry the password PASS
//!   (else 407). The user name USER selects the daemon's own session (`--session`, else
//!   the generated one); any other user name names a session, as without credentials.
//! - `--session-secret SECRET`: a client that names a session must present that
//!   session's token as its password: `tapedeck session-token SESSION` derives it from
//!   SECRET (a keyed blake3 of the name). A client holding the token of one session
//!   cannot write into another; the token also satisfies `--proxy-auth`.
//! - With `--session` fixed, user names do not select sessions (their `+AGENT` still
//!   names the agent).

use std::path::Path;

use base64::Engine;
use thiserror::Error;

use tapedeck_model::session::SessionName;

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("--proxy-auth must be USER:PASS with a non-empty password (USER may be empty)")]
    BadCredentials,
    #[error("the session secret must be at least 16 characters")]
    ShortSecret,
    #[error("cannot read {what} from {path}: {source} (the file holds {holds})")]
    Read {
        what: &'static str,
        holds: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `--proxy-auth USER:PASS`.
#[derive(Clone, Debug)]
pub struct ProxyAuth {
    pub user: String,
    pass: String,
}

impl ProxyAuth {
    pub fn parse(text: &str) -> Result<ProxyAuth, AuthError> {
        let (user, pass) = text
            .trim()
            .split_once(':')
            .ok_or(AuthError::BadCredentials)?;
        if pass.is_empty() {
            return Err(AuthError::BadCredentials);
        }
        Ok(ProxyAuth {
            user: user.to_string(),
            pass: pass.to_string(),
        })
    }

    /// `--proxy-auth-file FILE`: one line, `USER:PASS`.
    pub fn from_file(path: &Path) -> Result<ProxyAuth, AuthError> {
        ProxyAuth::parse(&read_secret(
            path,
            "the proxy credentials",
            "one USER:PASS line",
        )?)
    }

    /// The user information to put in a proxy URL for this daemon's own session.
    pub fn userinfo(&self) -> String {
        format!("{}:{}", url_escape(&self.user), url_escape(&self.pass))
    }
}

/// `--session-secret`: the key that session tokens derive from.
#[derive(Clone)]
pub struct SessionSecret {
    key: [u8; 32],
}

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret(..)")
    }
}

impl SessionSecret {
    pub fn new(secret: &str) -> Result<SessionSecret, AuthError> {
        let secret = secret.trim();
        if secret.len() < 16 {
            return Err(AuthError::ShortSecret);
        }
        Ok(SessionSecret {
            key: blake3::derive_key("tapedeck session token v1", secret.as_bytes()),
        })
    }

    pub fn from_file(path: &Path) -> Result<SessionSecret, AuthError> {
        SessionSecret::new(&read_secret(
            path,
            "the session secret",
            "the secret on one line",
        )?)
    }

    /// The password a client must present to write into `session`.
    pub fn token(&self, session: &SessionName) -> String {
        blake3::keyed_hash(&self.key, session.as_str().as_bytes()).to_hex()[..32].to_string()
    }
}

fn read_secret(path: &Path, what: &'static str, holds: &'static str) -> Result<String, AuthError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| AuthError::Read {
            what,
            holds,
            path: path.to_path_buf(),
            source,
        })
}

/// Equal in constant time (blake3 digests compare so).
fn same(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

/// What the proxy needs to know to admit a client.
#[derive(Clone, Debug)]
pub struct Access {
    pub proxy_auth: Option<ProxyAuth>,
    pub session_secret: Option<SessionSecret>,
    /// `--session`: wins over any user name.
    pub fixed: Option<SessionName>,
    /// The session when no user name names one.
    pub fallback: SessionName,
}

/// Who a client is, once admitted.
#[derive(Debug, PartialEq, Eq)]
pub struct Identity {
    pub session: SessionName,
    pub agent: Option<String>,
}

/// Why a client was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the user name is not a session name.
    BadSession(tapedeck_model::session::SessionNameError),
    /// 407: credentials missing or wrong.
    Credentials(String),
}

impl Access {
    /// Admits the client that sent `headers`, or says why not.
    pub fn admit(&self, headers: &http::HeaderMap) -> Result<Identity, Refusal> {
        let presented = headers
            .get(http::header::PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic);
        let (user, pass) = presented.clone().unwrap_or_default();
        let (name, agent) = match user.split_once('+') {
            Some((n, a)) => (n.to_string(), (!a.is_empty()).then(|| a.to_string())),
            None => (user.clone(), None),
        };
        if let Some(auth) = &self.proxy_auth {
            if presented.is_none() {
                return Err(Refusal::Credentials(
                    "this proxy needs credentials: put them in the proxy URL (http://USER:PASSWORD@host:port)".into(),
                ));
            }
            if name == auth.user || name.is_empty() || self.fixed.is_some() {
                if !same(&pass, &auth.pass) {
                    return Err(Refusal::Credentials("wrong proxy credentials".into()));
                }
                return Ok(Identity {
                    session: self.default_session(),
                    agent,
                });
            }
        }
        if let Some(fixed) = &self.fixed {
            return Ok(Identity {
                session: fixed.clone(),
                agent,
            });
        }
        if name.is_empty() {
            return Ok(Identity {
                session: self.fallback.clone(),
                agent,
            });
        }
        let session = SessionName::new(&name).map_err(Refusal::BadSession)?;
        match (&self.session_secret, &self.proxy_auth) {
            (Some(secret), _) if !same(&pass, &secret.token(&session)) => {
                return Err(Refusal::Credentials(format!(
                    "session {session} needs its token as the proxy password (`tapedeck session-token {session}` prints it)"
                )))
            }
            (None, Some(auth)) if !same(&pass, &auth.pass) => {
                return Err(Refusal::Credentials("wrong proxy credentials".into()))
            }
            _ => {}
        }
        Ok(Identity { session, agent })
    }

    fn default_session(&self) -> SessionName {
        self.fixed.clone().unwrap_or_else(|| self.fallback.clone())
    }
}

/// `Basic base64(user:pass)`, percent-decoded as clients may send it.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, cred) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cred.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':').unwrap_or((&text, ""));
    Some((
        tapedeck_model::exchange::canonical::percent_decode(user),
        tapedeck_model::exchange::canonical::percent_decode(pass),
    ))
}

/// Percent-encodes everything but unreserved characters, for a URL's user information.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        let cred = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(
            http::header::PROXY_AUTHORIZATION,
            format!("Basic {cred}").parse().unwrap(),
        );
        h
    }

    fn access(auth: Option<&str>, secret: Option<&str>, fixed: Option<&str>) -> Access {
        Access {
            proxy_auth: auth.map(|a| ProxyAuth::parse(a).unwrap()),
            session_secret: secret.map(|s| SessionSecret::new(s).unwrap()),
            fixed: fixed.map(|f| SessionName::new(f).unwrap()),
            fallback: SessionName::new("run-1").unwrap(),
        }
    }

    fn session(r: Result<Identity, Refusal>) -> String {
        match r {
            Ok(id) => id.session.to_string(),
            Err(Refusal::BadSession(_)) => "400".into(),
            Err(Refusal::Credentials(_)) => "407".into(),
        }
    }

    #[test]
    fn without_credentials_the_user_name_picks_session_and_agent_never_the_password() {
        let a = access(None, None, None);
        let id = a.admit(&basic("incident-7+planner", "s3cret")).unwrap();
        assert_eq!(id.session.as_str(), "incident-7");
        assert_eq!(id.agent.as_deref(), Some("planner"));
        let id = a.admit(&basic("incident-7", "s3cret")).unwrap();
        assert_eq!(id.agent, None, "the password is not an agent name");
        assert_eq!(session(a.admit(&http::HeaderMap::new())), "run-1");
        assert_eq!(session(a.admit(&basic("+writer", ""))), "run-1");
        assert_eq!(session(a.admit(&basic("a%2Fb", ""))), "400");
        let fixed = access(None, None, Some("pinned"));
        let id = fixed.admit(&basic("other+writer", "")).unwrap();
        assert_eq!(
            (id.session.as_str(), id.agent.as_deref()),
            ("pinned", Some("writer"))
        );
    }

    #[test]
    fn proxy_auth_checks_the_password_and_its_user_means_the_default_session() {
        let a = access(Some("probe:hunter22"), None, None);
        assert_eq!(session(a.admit(&http::HeaderMap::new())), "407");
        assert_eq!(session(a.admit(&basic("probe", "wrong"))), "407");
        assert_eq!(session(a.admit(&basic("probe", "hunter22"))), "run-1");
        assert_eq!(session(a.admit(&basic("", "wrong"))), "407");
        assert_eq!(session(a.admit(&basic("+agent", "hunter22"))), "run-1");
        assert_eq!(
            session(a.admit(&basic("incident-7", "hunter22"))),
            "incident-7"
        );
        assert_eq!(session(a.admit(&basic("incident-7", "nope"))), "407");
        let fixed = access(Some("probe:hunter22"), None, Some("pinned"));
        assert_eq!(session(fixed.admit(&basic("anyone", "hunter22"))), "pinned");
        assert_eq!(session(fixed.admit(&basic("anyone", "nope"))), "407");
    }

    #[test]
    fn a_session_secret_gives_each_session_its_own_token() {
        let secret = SessionSecret::new("correct horse battery staple").unwrap();
        let a = access(None, Some("correct horse battery staple"), None);
        let alpha = SessionName::new("alpha").unwrap();
        let beta = SessionName::new("beta").unwrap();
        let t_alpha = secret.token(&alpha);
        assert_ne!(t_alpha, secret.token(&beta));
        assert_eq!(session(a.admit(&basic("alpha", &t_alpha))), "alpha");
        assert_eq!(
            session(a.admit(&basic("beta", &t_alpha))),
            "407",
            "alpha's token does not open beta"
        );
        assert_eq!(session(a.admit(&basic("beta", ""))), "407");
        assert_eq!(session(a.admit(&http::HeaderMap::new())), "run-1");
        // With proxy credentials too, a session token is also a credential.
        let both = access(
            Some("probe:hunter22"),
            Some("correct horse battery staple"),
            None,
        );
        assert_eq!(session(both.admit(&basic("alpha", &t_alpha))), "alpha");
        assert_eq!(session(both.admit(&basic("alpha", "hunter22"))), "407");
        assert_eq!(session(both.admit(&basic("probe", "hunter22"))), "run-1");
        assert!(SessionSecret::new("short").is_err());
    }

    #[test]
    fn credentials_parse_and_escape_into_a_url() {
        assert!(ProxyAuth::parse("nopass").is_err());
        assert!(ProxyAuth::parse("user:").is_err());
        let a = ProxyAuth::parse("me:p@ss:word").unwrap();
        assert_eq!(a.user, "me");
        assert_eq!(a.userinfo(), "me:p%40ss%3Aword");
        assert_eq!(
            parse_basic(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("a%2Fb")
            )),
            Some(("a/b".into(), "".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
    }
}
