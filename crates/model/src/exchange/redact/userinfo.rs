//! Passwords in the userinfo of URLs written in a body: a database URL in a `.env` file
//! or a `docker-compose.yml` a coding agent's tool printed (`DATABASE_URL=postgres://app:
//! PASSWORD@db:5432/app`), a driver's error message that quotes it, a JSON config's
//! `"redis_url": "redis://:PASSWORD@cache:6379/0"`. A request's own URL has its userinfo
//! redacted ([`super::url`]); a URL in a body had it kept, and a password too short to
//! look like a key was stored in clear.
//!
//! After a scheme's `://` (or `:\/\/`, a JSON writer's escaped slashes) the scan holds
//! the authority, up to the first byte no authority is written with (`/`, `?`, `#`, white
//! space, a quote, a backslash, `<`, `>`), at most [`AUTHORITY_MAX`] bytes. When it holds a
//! userinfo (before its last `@`), the part after the userinfo's first `:` becomes
//! `[REDACTED]`: `postgres://app:[REDACTED]@db:5432/app`, the user name kept as `psql` and
//! SQLAlchemy print it. A userinfo with no `:` is a user name (`ssh://git@host`), kept
//! unless it looks like a key (`https://ghp_…@github.com`, a token given as the user).
//! Each value replaced is hunted through the rest of the exchange when it looks like a
//! credential (see [`Collected::by_name`]).
//!
//! It holds back at most a partial `://` and the authority, so its output does not depend
//! on where the stream is cut.

use memchr::memchr;

use super::{form, Collected};
use crate::credential;
use crate::rules::REDACTED;

/// The longest authority held (a user name, a password, a host and a port). A longer run
/// is written on as it came.
const AUTHORITY_MAX: usize = 1024;

enum Mode {
    /// Outside an authority.
    Text,
    /// After a scheme's separator: the authority read so far.
    Authority { held: Vec<u8> },
}

pub(crate) struct UserinfoScrub {
    mode: Mode,
    /// The bytes of a scheme separator begun at the end of what was read (`:`, `:/`,
    /// `:\`, `:\/`, `:\/\`), held until the next bytes tell.
    sep: [u8; 4],
    sep_len: usize,
    /// The last byte written: a scheme's separator counts after a scheme's last byte.
    last: u8,
    found: Collected,
}

/// Whether `b` ends an authority as written in text.
fn ends_authority(b: u8) -> bool {
    b <= b' '
        || matches!(
            b,
            b'/' | b'?' | b'#' | b'"' | b'\'' | b'\\' | b'<' | b'>' | b'`' | 0x7f
        )
}

const PLAIN: &[u8] = b"://";
const ESCAPED: &[u8] = b":\\/\\/";

/// Whether `sep` is the start of a scheme separator, and whether it is a whole one.
fn separator(sep: &[u8]) -> (bool, bool) {
    let begins = PLAIN.starts_with(sep) || ESCAPED.starts_with(sep);
    (begins, sep == PLAIN || sep == ESCAPED)
}

/// Whether a scheme's separator may follow `b`: the scheme's last byte (`https`,
/// `postgres`, `mongodb+srv`).
fn ends_scheme(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// The first scheme separator in `text` (after `last`, the byte before it): where it
/// starts and its length. Found by its slashes, rarer than colons in JSON and prose.
fn find_separator(text: &[u8], last: u8) -> Option<(usize, usize)> {
    let before = |c: usize| if c == 0 { last } else { text[c - 1] };
    memchr::memchr_iter(b'/', text).find_map(|p| {
        let (c, len) = if p >= 1 && text[p - 1] == b':' && text.get(p + 1) == Some(&b'/') {
            (p - 1, PLAIN.len())
        } else if p >= 2 && text[p - 2..p] == *b":\\" && text[p + 1..].starts_with(b"\\/") {
            (p - 2, ESCAPED.len())
        } else {
            return None;
        };
        ends_scheme(before(c)).then_some((c, len))
    })
}

/// How many bytes at the end of `text` (after `last`) begin a scheme separator that the
/// next bytes may finish.
fn partial_separator(text: &[u8], last: u8) -> usize {
    (1..=ESCAPED.len() - 1)
        .rev()
        .find(|&k| {
            k <= text.len() && {
                let at = text.len() - k;
                let (begins, whole) = separator(&text[at..]);
                begins && !whole && ends_scheme(if at == 0 { last } else { text[at - 1] })
            }
        })
        .unwrap_or(0)
}

impl UserinfoScrub {
    pub(crate) fn new() -> UserinfoScrub {
        UserinfoScrub {
            mode: Mode::Text,
            sep: [0; 4],
            sep_len: 0,
            last: 0,
            found: Collected::default(),
        }
    }

    pub(crate) fn held(&self) -> usize {
        match &self.mode {
            Mode::Text => self.sep_len,
            Mode::Authority { held } => held.len(),
        }
    }

    fn write(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if let Some(&b) = bytes.last() {
            self.last = b;
        }
        out.extend_from_slice(bytes);
    }

    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < data.len() {
            match &mut self.mode {
                Mode::Text if self.sep_len > 0 => {
                    // A separator begun in an earlier piece: a byte at a time (at most
                    // four).
                    let mut next = [0u8; 5];
                    next[..self.sep_len].copy_from_slice(&self.sep[..self.sep_len]);
                    next[self.sep_len] = data[i];
                    let next = &next[..=self.sep_len];
                    match separator(next) {
                        (_, true) => {
                            i += 1;
                            self.sep_len = 0;
                            self.write(next, out);
                            self.mode = Mode::Authority { held: Vec::new() };
                        }
                        (true, false) => {
                            i += 1;
                            self.sep[..next.len()].copy_from_slice(next);
                            self.sep_len = next.len();
                        }
                        (false, _) => {
                            // Not a separator: what was held goes out, and the byte is
                            // read again.
                            let held = self.sep;
                            let n = std::mem::take(&mut self.sep_len);
                            self.write(&held[..n], out);
                        }
                    }
                }
                Mode::Text => {
                    let rest = &data[i..];
                    if let Some((at, len)) = find_separator(rest, self.last) {
                        self.write(&rest[..at + len], out);
                        i += at + len;
                        self.mode = Mode::Authority { held: Vec::new() };
                        continue;
                    }
                    let keep = partial_separator(rest, self.last);
                    let (now, later) = rest.split_at(rest.len() - keep);
                    self.write(now, out);
                    self.sep[..keep].copy_from_slice(later);
                    self.sep_len = keep;
                    return;
                }
                Mode::Authority { held } => {
                    let rest = &data[i..];
                    let room = AUTHORITY_MAX + 1 - held.len();
                    let end = rest.iter().take(room).position(|&b| ends_authority(b));
                    let take = end.unwrap_or(rest.len().min(room));
                    held.extend_from_slice(&rest[..take]);
                    i += take;
                    if end.is_some() {
                        self.settle(out);
                    } else if held.len() > AUTHORITY_MAX {
                        let held = std::mem::take(held);
                        self.write(&held, out);
                        self.mode = Mode::Text;
                    }
                }
            }
        }
    }

    /// The authority ended: written with its password, or its user name that looks like
    /// a key, replaced.
    fn settle(&mut self, out: &mut Vec<u8>) {
        let Mode::Authority { held } = std::mem::replace(&mut self.mode, Mode::Text) else {
            return;
        };
        let Some(at) = held.iter().rposition(|&b| b == b'@') else {
            return self.write(&held, out);
        };
        let (userinfo, host) = held.split_at(at);
        let secret = match memchr(b':', userinfo) {
            Some(colon) => colon + 1,
            None if credential::key_like(userinfo) => 0,
            None => return self.write(&held, out),
        };
        let value = &userinfo[secret..];
        if value.is_empty()
            || host.len() < 2
            || memchr::memmem::find(&held, REDACTED.as_bytes()).is_some()
        {
            return self.write(&held, out);
        }
        self.found.by_name(true);
        self.found.push(value);
        if memchr(b'%', value).is_some() {
            self.found.push(&form::decode(value));
        }
        let mut replaced = Vec::with_capacity(secret + REDACTED.len() + host.len());
        replaced.extend_from_slice(&userinfo[..secret]);
        replaced.extend_from_slice(REDACTED.as_bytes());
        replaced.extend_from_slice(host);
        self.write(&replaced, out);
    }

    pub(crate) fn finish(mut self, out: &mut Vec<u8>) -> Collected {
        match self.mode {
            Mode::Text => {
                let (held, n) = (self.sep, self.sep_len);
                self.write(&held[..n], out);
            }
            Mode::Authority { .. } => self.settle(out),
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scan's output and the values it found, `data` fed in pieces of `cut` bytes.
    fn scan(data: &str, cut: usize) -> (String, Vec<String>) {
        let mut u = UserinfoScrub::new();
        let mut out = Vec::new();
        for piece in data.as_bytes().chunks(cut) {
            u.feed(piece, &mut out);
        }
        let found = u.finish(&mut out).into_values();
        (String::from_utf8(out).unwrap(), found)
    }

    /// Scanned whole and at every cut from 1 to 12 bytes: the same output each time.
    fn same(data: &str) -> (String, Vec<String>) {
        let whole = scan(data, data.len().max(1));
        for cut in 1..=12 {
            assert_eq!(scan(data, cut), whole, "cut {cut} of {data:?}");
        }
        whole
    }

    #[test]
    fn a_urls_password_is_redacted_and_its_user_and_host_kept() {
        let cases = [
            (
                "DATABASE_URL=postgres://app:hunter2Zq@db:5432/app\n",
                "DATABASE_URL=postgres://app:[REDACTED]@db:5432/app\n",
            ),
            (
                "could not connect to postgres://app:s3cr3t@db:5432/x: refused",
                "could not connect to postgres://app:[REDACTED]@db:5432/x: refused",
            ),
            (
                r#"{"redis_url":"redis://:pa55word@cache:6379/0"}"#,
                r#"{"redis_url":"redis://:[REDACTED]@cache:6379/0"}"#,
            ),
            (
                r#"{"u":"https:\/\/bob:pw1234@example.com\/x"}"#,
                r#"{"u":"https:\/\/bob:[REDACTED]@example.com\/x"}"#,
            ),
            // A password holding an `@` ends at the last one before the host.
            (
                "mongodb+srv://bob:p@ss@cluster0.mongodb.net/db",
                "mongodb+srv://bob:[REDACTED]@cluster0.mongodb.net/db",
            ),
            // A token given as the user name.
            (
                "git clone https://ghp_Zq8vN3kLp2Wm7Rt4Yx6B9cDe@github.com/o/r.git",
                "git clone https://[REDACTED]@github.com/o/r.git",
            ),
        ];
        for (body, want) in cases {
            let (got, found) = same(body);
            assert_eq!(got, want);
            assert!(found.iter().all(|f| body.contains(f.as_str())), "{found:?}");
        }
    }

    #[test]
    fn what_holds_no_password_is_written_as_it_came() {
        for body in [
            "ssh://git@github.com/o/r.git and https://example.com:8443/x?a=b",
            "see https://bob@example.com/ or mailto:bob@example.com",
            "a ratio of 3://4, time 10:30, C:\\Users\\bob, `http://[::1]:80/`",
            "already postgres://app:[REDACTED]@db/x",
            "empty redis://:@cache:6379 and http://u:@h/",
            "ends postgres://app:pw",
            "ends postgres:/",
            "ends postgres:\\/",
            "no host postgres://app:pw@",
        ] {
            let (got, found) = same(body);
            assert_eq!(got, body);
            assert!(found.is_empty(), "{body}: {found:?}");
        }
    }

    #[test]
    fn a_password_that_looks_like_a_credential_is_hunted_elsewhere() {
        let (_, found) = same("postgres://app:Zq8vN3kLp2@db/x then postgres://app:postgres@db/y");
        // `postgres` is redacted where it stands but not hunted: the image's and the
        // database's name would go too.
        assert_eq!(found, vec!["Zq8vN3kLp2".to_string()]);
        let (_, found) = same("postgres://app:p%40ssW0rd1@db/x");
        assert_eq!(
            found,
            vec!["p%40ssW0rd1".to_string(), "p@ssW0rd1".to_string()]
        );
    }

    /// Bodies built from the pieces the scan reads, each scanned whole and at every cut
    /// from 1 to 12 bytes: the same output, and no password left after a user name.
    #[test]
    fn bodies_of_the_pieces_the_scan_reads_scan_the_same_at_every_cut() {
        const PIECES: &[&str] = &[
            ":",
            "/",
            "\\",
            "\\/",
            "@",
            "a",
            "9",
            " ",
            "\"",
            "'",
            "postgres",
            "://",
            ":\\/\\/",
            "app:",
            "pw",
            "@db",
            ":5432",
            "/x",
            "?q=1",
            "[REDACTED]",
            "\n",
            "+srv",
            "#",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..3000 {
            let len = 1 + next(24);
            let body: String = (0..len).map(|_| PIECES[next(PIECES.len())]).collect();
            let (got, _) = same(&body);
            let planted = format!("{body} https://app:Secr3tPw@db/x");
            let (got_planted, found) = same(&planted);
            assert!(
                !got_planted.contains("Secr3tPw"),
                "{planted:?} gave {got_planted:?}"
            );
            assert!(
                found.iter().any(|f| f == "Secr3tPw"),
                "{planted:?}: {found:?}"
            );
            assert!(got_planted.starts_with(&got[..got.len().min(body.len() / 2)]));
        }
    }

    #[test]
    fn an_authority_too_long_to_hold_is_written_on() {
        let long = format!("https://{}:pw@host/", "u".repeat(AUTHORITY_MAX));
        let (got, _) = same(&long);
        assert_eq!(got, long);
        let fits = format!("https://{}:pw@host/", "u".repeat(AUTHORITY_MAX - 12));
        let (got, _) = same(&fits);
        assert!(got.contains(":[REDACTED]@host/"), "{got}");
    }
}
