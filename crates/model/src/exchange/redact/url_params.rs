//! Secret parameters of URLs written in a body: a JSON answer's `"accept_url":
//! "https://…/accept?invite_token=…"`, an OAuth redirect's `#access_token=…` in a page, a
//! signed link in a tool's text. The same parameter of a request's URL is redacted (see
//! [`super::url`]), and the agent often follows the link: the answer that handed it out
//! would otherwise hold what the request's URL does not.
//!
//! The scan reads `NAME=VALUE` after a URL's separator (`?`, `&`, `#`, `;` as in
//! `&amp;`, or `\u0026`, how Go's JSON writes `&`), where NAME is a parameter
//! [`FieldNames::url_param`] reads as a secret with that value: the value becomes
//! `[REDACTED]` and is hunted through the rest of the exchange (and the session's later
//! ones). A value ends at a byte no URL value is made of (a quote, `&`, `#`, `\`, white
//! space, `<`). It holds back only the value of such a parameter until it ends (at most
//! [`VALUE_MAX`] bytes: a longer one under a name that says it is a secret is dropped
//! to its end, any other written on), so its output does not depend on where the stream
//! is cut.

use memchr::memchr;

use super::{form, Collected, FieldNames};
use crate::rules::REDACTED;

/// The longest parameter name read.
const NAME_MAX: usize = 64;
/// The most bytes of a value held (an OpenID Connect `id_token` is a JWT of a few KB).
const VALUE_MAX: usize = 8 << 10;
/// The bytes kept of what was written last: a name, and the separator before it.
const TAIL: usize = NAME_MAX + 6;

/// Whether `b` may be part of a parameter's value as written in a URL (unreserved,
/// percent escapes, `+`, the sub-delimiters a token's alphabet uses).
fn in_value(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%+/=:@!$*,".contains(&b)
}

/// Whether `b` may be part of a parameter's name.
fn in_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._%[]+".contains(&b)
}

/// Where a `NAME=` stands.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    /// After a URL's separator: a query or fragment parameter.
    Url,
    /// At the start of a line or of a JSON string (or after `export `): a `.env` file's
    /// or a shell's assignment, as a coding agent's tool prints them into the model's
    /// next request, or a container's environment (`"Env": ["DB_PASSWORD=…"]`).
    Line,
}

enum State {
    /// Outside a secret parameter's value.
    Text,
    /// In the value of parameter `name`, held until it ends.
    Value { name: String, place: Place },
    /// In a value too long to hold whose name says it is a secret: dropped.
    Dropping,
}

/// The scan for a stream (see the module's text).
pub struct UrlParamScrub {
    fields: FieldNames,
    state: State,
    /// The last bytes written (at most [`TAIL`]).
    tail: Vec<u8>,
    /// How many bytes were written in all (a name at the very start is at a line's).
    written: u64,
    value: Vec<u8>,
    pub found: Collected,
}

impl UrlParamScrub {
    pub fn new(fields: FieldNames) -> UrlParamScrub {
        UrlParamScrub {
            fields,
            state: State::Text,
            tail: Vec::with_capacity(2 * TAIL),
            written: 0,
            value: Vec::new(),
            found: Collected::default(),
        }
    }

    /// Writes `bytes` on, keeping the last [`TAIL`] of them.
    fn write(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
        self.written += bytes.len() as u64;
        if bytes.len() >= TAIL {
            self.tail.clear();
            self.tail.extend_from_slice(&bytes[bytes.len() - TAIL..]);
            return;
        }
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * TAIL {
            self.tail.drain(..self.tail.len() - TAIL);
        }
    }

    /// The parameter whose `=` ends the bytes written, when it stands after a URL's
    /// separator or at a line's start: its name (`+` read as a space and percent-decoded
    /// in a URL) and where it stands.
    fn parameter(&self) -> Option<(String, Place)> {
        let before = self.tail.strip_suffix(b"=")?;
        let start = before
            .iter()
            .rposition(|&b| !in_name(b))
            .map_or(0, |p| p + 1);
        let (lead, mut name) = before.split_at(start);
        let at_start = |lead: &[u8]| {
            lead.is_empty() && self.written == before.len() as u64 + 1
                || matches!(lead.last(), Some(b'\n' | b'\r' | b'"'))
        };
        let mut place = match lead.last() {
            Some(b'?' | b'&' | b'#' | b';') => Some(Place::Url),
            _ if at_start(lead) => Some(Place::Line),
            _ => lead
                .strip_suffix(b"export ")
                .filter(|l| at_start(l) || l.ends_with(b"\\n"))
                .map(|_| Place::Line),
        };
        if lead.last() == Some(&b'\\') {
            // An escape's letters and digits read on into the name: `\u0026` (how Go's
            // JSON writes `&`), `\n` (a line break in a JSON string).
            if name.len() > 5 && name[..5].eq_ignore_ascii_case(b"u0026") {
                name = &name[5..];
                place = Some(Place::Url);
            } else if name.len() > 1 && matches!(name[0], b'n' | b'r') {
                name = &name[1..];
                place = Some(Place::Line);
            }
        }
        let place = place?;
        if name.is_empty() || name.len() > NAME_MAX {
            return None;
        }
        if place == Place::Line {
            return Some((String::from_utf8_lossy(name).into_owned(), place));
        }
        let plus: Vec<u8> = name
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        let decoded = form::decode(&plus);
        Some((String::from_utf8_lossy(&decoded).trim().to_string(), place))
    }

    /// Whether parameter `name` at `place` holds a secret with this value (see
    /// [`FieldNames::url_param`] and [`FieldNames::assignment`]).
    fn secret(&self, name: &str, place: Place, value: &[u8]) -> Option<bool> {
        let text = String::from_utf8_lossy(value);
        match place {
            Place::Url => self.fields.url_param(name, &text),
            Place::Line => self.fields.assignment(name, &text),
        }
    }

    /// The value of `name` just ended (or the stream did): `[REDACTED]` when the
    /// parameter holds a secret, else as it was.
    fn settle(&mut self, name: &str, place: Place, out: &mut Vec<u8>) {
        let value = std::mem::take(&mut self.value);
        match self.secret(name, place, &value) {
            Some(by_name) if !value.is_empty() => {
                self.found.by_name(by_name);
                self.found.push(&value);
                let decoded = form::decode(&value);
                if decoded != value {
                    self.found.push(&decoded);
                }
                self.write(REDACTED.as_bytes(), out);
            }
            _ => self.write(&value, out),
        }
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            match &self.state {
                State::Text => match memchr(b'=', rest) {
                    Some(k) => {
                        self.write(&rest[..=k], out);
                        i += k + 1;
                        if let Some((name, place)) = self.parameter() {
                            self.value.clear();
                            self.state = State::Value { name, place };
                        }
                    }
                    None => {
                        self.write(rest, out);
                        i = data.len();
                    }
                },
                State::Value { .. } => {
                    let k = rest.iter().position(|&b| !in_value(b));
                    let take = k.unwrap_or(rest.len());
                    self.value.extend_from_slice(&rest[..take]);
                    i += take;
                    let over = self.value.len() > VALUE_MAX;
                    if k.is_none() && !over {
                        continue;
                    }
                    let State::Value { name, place } =
                        std::mem::replace(&mut self.state, State::Text)
                    else {
                        unreachable!("in a value")
                    };
                    if !over {
                        self.settle(&name, place, out);
                    } else if self.secret(&name, place, &self.value).is_some() {
                        // A name that says so (a name ending in `token` never does for a
                        // value this long): the value goes, whatever its length.
                        self.value.clear();
                        self.write(REDACTED.as_bytes(), out);
                        self.state = if k.is_some() {
                            State::Text
                        } else {
                            State::Dropping
                        };
                    } else {
                        let value = std::mem::take(&mut self.value);
                        self.write(&value, out);
                    }
                }
                State::Dropping => match rest.iter().position(|&b| !in_value(b)) {
                    Some(k) => {
                        i += k;
                        self.state = State::Text;
                    }
                    None => i = data.len(),
                },
            }
        }
    }

    /// How many bytes fed so far are held back.
    pub fn held(&self) -> usize {
        match self.state {
            State::Value { .. } => self.value.len(),
            _ => 0,
        }
    }

    /// Ends the stream: a value held is judged as it stands.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Collected {
        if let State::Value { name, place } = std::mem::replace(&mut self.state, State::Text) {
            self.settle(&name, place, out);
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RuleArgs, Rules};

    fn fields() -> FieldNames {
        FieldNames::of(&Rules::from_toml("", &RuleArgs::default()).unwrap())
    }

    /// The scan's output and the values it found, `data` fed in pieces of `cut` bytes.
    fn scan(data: &str, cut: usize) -> (String, Vec<String>) {
        let mut u = UrlParamScrub::new(fields());
        let mut out = Vec::new();
        for piece in data.as_bytes().chunks(cut) {
            u.feed(piece, &mut out);
        }
        let found = u.finish(&mut out).into_values();
        (String::from_utf8(out).unwrap(), found)
    }

    #[test]
    fn secret_parameters_of_urls_in_any_text_are_redacted_however_the_stream_is_cut() {
        let key = "Zq8vN3kLp2Wm7Rt4Yx6B";
        let body = [
            r#"{"accept_url":"https://app.test/accept?invite_token=m_W5LbX5zSs-00q727SfbxmigLFxGOz8&lang=en","#,
            r#""cb":"https://app.test/cb#access_token=Zq8vN3kLp2Wm7Rt4Yx6B&expires_in=3600","#,
            r#""maps":"https://maps.test/api/js?libraries=places\u0026key=AIzaZq8vN3kLp2Wm7Rt4Yx6B","#,
            r#""next":"https://api.test/items?next_page_token=Abc123Def456Ghi789&page=2","#,
            r#""enc":"https://x.test/?api%5Fkey=Qw3rTy8uIo2pAs7dFg9h"}"#,
            "\n<a href=\"https://x.test/reset?user=ada&amp;password=Hunter2-Hunter2\">reset</a>",
            "\nprose: a=b, c=d; x?token=short and fine=Zq8vN3kLp2Wm7Rt4Yx6B",
        ]
        .concat();
        let want = [
            r#"{"accept_url":"https://app.test/accept?invite_token=[REDACTED]&lang=en","#,
            r#""cb":"https://app.test/cb#access_token=[REDACTED]&expires_in=3600","#,
            r#""maps":"https://maps.test/api/js?libraries=places\u0026key=[REDACTED]","#,
            r#""next":"https://api.test/items?next_page_token=Abc123Def456Ghi789&page=2","#,
            r#""enc":"https://x.test/?api%5Fkey=[REDACTED]"}"#,
            "\n<a href=\"https://x.test/reset?user=ada&amp;password=[REDACTED]\">reset</a>",
            "\nprose: a=b, c=d; x?token=[REDACTED] and fine=Zq8vN3kLp2Wm7Rt4Yx6B",
        ]
        .concat();
        for cut in [1, 2, 3, 7, 64, 4096] {
            let (out, found) = scan(&body, cut);
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(
                found,
                [
                    "m_W5LbX5zSs-00q727SfbxmigLFxGOz8",
                    key,
                    "AIzaZq8vN3kLp2Wm7Rt4Yx6B",
                    "Qw3rTy8uIo2pAs7dFg9h",
                    "Hunter2-Hunter2",
                ],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_printed_env_files_secret_assignments_are_redacted_however_the_stream_is_cut() {
        // A `.env` a coding agent's tool printed, as text and as the model's next
        // request carries it (a JSON string: `\n` between lines).
        let env = "DB_PASSWORD=hunter2-Xy9\nSTRIPE_WEBHOOK_SECRET=Wh5ecR3tValue88\nexport GITHUB_TOKEN=Gh0ToK3nVaLuE-123456\n\
                   DEBUG=true\nPORT=8080\nINVITE_TOKEN=pending\nRESET_TOKEN=Rs7tUv8wXy9zAb0cDe1f\nx = password=Not-At-Line-Start1";
        let want = "DB_PASSWORD=[REDACTED]\nSTRIPE_WEBHOOK_SECRET=[REDACTED]\nexport GITHUB_TOKEN=[REDACTED]\n\
                    DEBUG=true\nPORT=8080\nINVITE_TOKEN=pending\nRESET_TOKEN=[REDACTED]\nx = password=Not-At-Line-Start1";
        let in_json = |t: &str| serde_json::to_string(&serde_json::json!({"content": t})).unwrap();
        for cut in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(scan(env, cut).0, want, "cut {cut}");
            let (out, found) = scan(&in_json(env), cut);
            assert_eq!(out, in_json(want), "cut {cut}");
            assert_eq!(
                found,
                [
                    "hunter2-Xy9",
                    "Wh5ecR3tValue88",
                    "Gh0ToK3nVaLuE-123456",
                    "Rs7tUv8wXy9zAb0cDe1f"
                ],
                "cut {cut}"
            );
        }
        // A container's environment, as `docker inspect` and Kubernetes write it.
        let inspect =
            r#"{"Env":["PATH=/usr/local/bin:/usr/bin","POSTGRES_PASSWORD=Pg-Secret-123"]}"#;
        let want = r#"{"Env":["PATH=/usr/local/bin:/usr/bin","POSTGRES_PASSWORD=[REDACTED]"]}"#;
        for cut in [1, 5, 4096] {
            assert_eq!(
                scan(inspect, cut),
                (want.to_string(), vec!["Pg-Secret-123".to_string()])
            );
        }
    }

    #[test]
    fn a_value_too_long_to_hold_goes_whole_under_a_secret_name_and_stays_under_a_token_name() {
        let long = "A1b2".repeat(VALUE_MAX / 2);
        let body = format!("x?access_token={long}&a=1 y?invite_token={long}&b=2");
        let want = format!("x?access_token=[REDACTED]&a=1 y?invite_token={long}&b=2");
        for cut in [1, 5, 4096, 1 << 20] {
            assert_eq!(scan(&body, cut).0, want, "cut {cut}");
        }
        // Cut off by the end of the stream: judged as it stands.
        assert_eq!(
            scan("see https://x.test/?api_key=Qw3rTy8uIo2p", 4).0,
            "see https://x.test/?api_key=[REDACTED]"
        );
        let mut u = UrlParamScrub::new(fields());
        let mut out = Vec::new();
        u.feed(b"?invite_token=Inv9Kx", &mut out);
        assert_eq!((out.as_slice(), u.held()), (&b"?invite_token="[..], 6));
    }
}
