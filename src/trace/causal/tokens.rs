//! Tokens of URLs and bodies, hashed: what the dependency model compares.
//!
//! A token is a run of letters, digits, `_`, `-` and `.` (and non-ASCII bytes), trimmed
//! of `.` and `-` at its ends; a JSON object key (a whole string followed by `:`) and the
//! letter of a JSON escape (`\n`, `\u00e9`) are not tokens. Values are compared by hash
//! only: nothing here keeps a string.
//!
//! **Distinctive values.** A value links two events only when a coincidence is unlikely:
//! - letters and digits mixed, 8 characters or more (`call_9f2c1a7e`, a UUID,
//!   `lodash-4.17.21.tgz`, `resp_67ab...`, a hex digest);
//! - digits only, 6 or more, unless it reads as a Unix time in seconds, milliseconds,
//!   microseconds or nanoseconds between 2000 and 2100 (two clocks agree too often);
//! - no digits, 16 characters or more (a long slug or word run).
//!
//! So short common words (`Paris`, `sunny`, `true`, `gpt-4o`), dates (`2026-11-25`) and
//! versions (`4.17.21`) never link events by themselves.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;

/// A 64-bit hash of some bytes (SipHash with fixed keys: the same in every process).
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') || b >= 0x80
}

/// Calls `f` with every token of `text`, in order.
pub fn for_each_token(text: &[u8], mut f: impl FnMut(&[u8])) {
    let n = text.len();
    let mut i = 0;
    while i < n {
        let b = text[i];
        if b == b'\\' {
            // `\uXXXX` or `\n`: the escape letter is not part of a word.
            i += if text.get(i + 1) == Some(&b'u') { 6 } else { 2 };
            continue;
        }
        if !is_token_byte(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && is_token_byte(text[i]) {
            i += 1;
        }
        let is_key = start > 0
            && text[start - 1] == b'"'
            && text.get(i) == Some(&b'"')
            && text[i + 1..]
                .iter()
                .find(|c| !c.is_ascii_whitespace())
                .is_some_and(|c| *c == b':');
        if is_key {
            continue;
        }
        let mut tok = &text[start..i];
        while let [b'.' | b'-', rest @ ..] = tok {
            tok = rest;
        }
        while let [rest @ .., b'.' | b'-'] = tok {
            tok = rest;
        }
        if !tok.is_empty() {
            f(tok);
        }
    }
}

/// Whether a token is distinctive enough to link two events (see the module doc).
pub fn is_distinctive(t: &[u8]) -> bool {
    let len = t.len();
    if len < 6 {
        return false;
    }
    let digits = t.iter().filter(|b| b.is_ascii_digit()).count();
    let letters = t
        .iter()
        .filter(|b| b.is_ascii_alphabetic() || **b >= 0x80)
        .count();
    match (digits, letters) {
        (0, 0) => false,
        (0, _) => len >= 16,
        (d, 0) if d == len => !is_unix_time(t),
        (_, 0) => false,
        _ => len >= 8,
    }
}

/// Digits that read as a Unix time between 2000 and 2100, in s, ms, µs or ns.
fn is_unix_time(digits: &[u8]) -> bool {
    const FROM: u64 = 946_684_800;
    const TO: u64 = 4_102_444_800;
    let div = match digits.len() {
        10 => 1,
        13 => 1_000,
        16 => 1_000_000,
        19 => 1_000_000_000,
        _ => return false,
    };
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|v| (FROM..=TO).contains(&(v / div)))
}

/// The hash of a token lower-cased (ASCII), as words are compared.
fn word_hash(t: &[u8], buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    buf.extend(t.iter().map(u8::to_ascii_lowercase));
    hash(buf)
}

/// What one body (or URL) holds, hashed: its distinctive values, its words (lower-cased,
/// every token; only when asked for, as tool-call arguments are matched against them) and
/// a digest of its content that ignores white space (a tool's answer passed on verbatim).
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Sorted, without duplicates.
    pub values: Vec<u64>,
    /// Sorted, without duplicates; `None` when not asked for.
    pub words: Option<Vec<u64>>,
    /// Hash of the bytes without ASCII white space; `None` for an empty body.
    pub digest: Option<u64>,
}

impl Scan {
    /// Scans `text`; `words` says whether to keep every word too.
    pub fn of(text: &[u8], words: bool) -> Scan {
        let mut s = Scan {
            words: words.then(Vec::new),
            ..Scan::default()
        };
        s.add(text);
        s.digest = digest(text);
        s.finish();
        s
    }

    /// Adds the tokens of more text (call [`Scan::finish`] after the last).
    pub fn add(&mut self, text: &[u8]) {
        let mut buf = Vec::new();
        for_each_token(text, |t| {
            if is_distinctive(t) {
                self.values.push(hash(t));
            }
            if let Some(w) = self.words.as_mut() {
                w.push(word_hash(t, &mut buf));
            }
        });
    }

    pub fn finish(&mut self) {
        self.values.sort_unstable();
        self.values.dedup();
        if let Some(w) = self.words.as_mut() {
            w.sort_unstable();
            w.dedup();
        }
    }

    pub fn has_word(&self, w: u64) -> bool {
        self.words
            .as_ref()
            .is_some_and(|ws| ws.binary_search(&w).is_ok())
    }
}

/// Hash of the bytes without ASCII white space: `{"a": 1}` and `{"a":1}` agree.
pub fn digest(text: &[u8]) -> Option<u64> {
    let mut h = DefaultHasher::new();
    let mut any = false;
    for chunk in text.split(|b| b.is_ascii_whitespace()) {
        if !chunk.is_empty() {
            h.write(chunk);
            any = true;
        }
    }
    any.then(|| h.finish())
}

/// The words of one tool-call argument value, lower-cased and hashed; a request carries
/// the value when it holds every one of them.
pub fn needle_words(value: &str) -> Vec<u64> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for_each_token(value.as_bytes(), |t| out.push(word_hash(t, &mut buf)));
    out.sort_unstable();
    out.dedup();
    out
}

/// Finds the distinctive token of `text` whose hash is `h` (for messages).
pub fn find_value(text: &[u8], h: u64) -> Option<String> {
    let mut found = None;
    for_each_token(text, |t| {
        if found.is_none() && is_distinctive(t) && hash(t) == h {
            found = Some(String::from_utf8_lossy(t).into_owned());
        }
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Vec<String> {
        let mut v = Vec::new();
        for_each_token(s.as_bytes(), |t| {
            v.push(String::from_utf8_lossy(t).into_owned())
        });
        v
    }

    #[test]
    fn json_keys_and_escapes_are_not_tokens() {
        assert_eq!(
            tokens(r#"{"tool_call_id": "call_9f2c1a7e", "content":"a\nb \u00e9t\u00e9."}"#),
            vec!["call_9f2c1a7e", "a", "b", "t"]
        );
        assert_eq!(
            tokens("https://registry.test/lodash/-/lodash-4.17.21.tgz?x=1."),
            vec![
                "https",
                "registry.test",
                "lodash",
                "lodash-4.17.21.tgz",
                "x",
                "1"
            ]
        );
    }

    #[test]
    fn only_tokens_unlikely_to_match_by_chance_are_distinctive() {
        for yes in [
            "call_9f2c1a7e",
            "550e8400-e29b-41d4-a716-446655440000",
            "lodash-4.17.21.tgz",
            "resp_67ab12",
            "4815162342",
            "123456",
            "internationalization",
        ] {
            assert!(is_distinctive(yes.as_bytes()), "{yes}");
        }
        for no in [
            "Paris",
            "sunny",
            "gpt-4o",
            "true",
            "2026-11-25",
            "4.17.21",
            "127.0.0.1",
            "12345",
            "1700000000",
            "1764000000000",
            "application",
        ] {
            assert!(!is_distinctive(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn white_space_does_not_change_a_digest() {
        assert_eq!(digest(br#"{"a": 1}"#), digest(b"{\"a\":1}\n"));
        assert_ne!(digest(b"{\"a\":1}"), digest(b"{\"a\":2}"));
        assert_eq!(digest(b"  \n"), None);
    }

    #[test]
    fn a_value_is_found_again_by_its_hash() {
        let body = br#"{"id":"obj-0001f0a9","name":"x"}"#;
        let s = Scan::of(body, true);
        assert_eq!(s.values.len(), 1);
        assert_eq!(
            find_value(body, s.values[0]).as_deref(),
            Some("obj-0001f0a9")
        );
        assert!(s.has_word(hash(b"x")));
        let paris = needle_words("New York");
        assert!(paris
            .iter()
            .all(|w| Scan::of(b"q=new+york", true).has_word(*w)));
    }
}
