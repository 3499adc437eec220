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

use std::hash::{BuildHasher, Hasher};

use foldhash::quality::FixedState;

/// Fixed, so a value hashes the same in every process (tests and messages rely on it).
const SEED: FixedState = FixedState::with_seed(0x7461_7065_6465_636b);

/// A 64-bit hash of some bytes.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h = SEED.build_hasher();
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

/// What to keep of a scanned text besides its distinctive values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    /// Every word, lower-cased (what tool-call arguments are matched against).
    pub words: bool,
    /// A digest of the whole text (a tool's answer passed on verbatim).
    pub digest: bool,
}

/// A run of hashes in an [`Arena`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    start: u32,
    len: u32,
}

/// What one text (a body, a URL) holds, hashed: its distinctive values and, when asked
/// for, its words and a digest that ignores white space. The hashes live in an [`Arena`],
/// so a scan is a few words, copied freely between the events that share a body.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scan {
    /// Sorted, without duplicates.
    pub values: Run,
    /// Sorted, without duplicates; `None` when not asked for.
    pub words: Option<Run>,
    /// `None` for an empty text, or when not asked for.
    pub digest: Option<u64>,
}

/// The hashes of every scan of a session, end to end in one vector: a long session costs
/// one growing allocation, not several per event.
#[derive(Debug, Default)]
pub struct Arena {
    hashes: Vec<u64>,
    values: Vec<u64>,
    words: Vec<u64>,
    buf: Vec<u8>,
}

impl Arena {
    pub fn get(&self, r: Run) -> &[u64] {
        let start = r.start as usize;
        self.hashes
            .get(start..start + r.len as usize)
            .unwrap_or(&[])
    }

    pub fn has_word(&self, s: &Scan, w: u64) -> bool {
        s.words
            .is_some_and(|r| self.get(r).binary_search(&w).is_ok())
    }

    /// Scans texts as one.
    pub fn scan(&mut self, texts: &[&[u8]], keep: Keep) -> Scan {
        self.values.clear();
        self.words.clear();
        for text in texts {
            let (values, words, buf) = (&mut self.values, &mut self.words, &mut self.buf);
            for_each_token(text, |t| {
                if is_distinctive(t) {
                    values.push(hash(t));
                }
                if keep.words {
                    words.push(word_hash(t, buf));
                }
            });
        }
        let values = push_run(&mut self.hashes, &mut self.values);
        let words = keep
            .words
            .then(|| push_run(&mut self.hashes, &mut self.words));
        let digest = match (keep.digest, texts) {
            (true, [one]) => digest(one),
            (true, _) => digest(&texts.concat()),
            (false, _) => None,
        };
        Scan {
            values,
            words,
            digest,
        }
    }
}

/// Sorts and dedups `items` onto the end of `hashes`.
fn push_run(hashes: &mut Vec<u64>, items: &mut [u64]) -> Run {
    items.sort_unstable();
    let start = hashes.len();
    let mut last = None;
    for &h in items.iter() {
        if last != Some(h) {
            hashes.push(h);
            last = Some(h);
        }
    }
    Run {
        start: start as u32,
        len: (hashes.len() - start) as u32,
    }
}

/// Hash of the bytes without ASCII white space: `{"a": 1}` and `{"a":1}` agree.
pub fn digest(text: &[u8]) -> Option<u64> {
    let squeezed: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    (!squeezed.is_empty()).then(|| hash(&squeezed))
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
        let mut arena = Arena::default();
        let s = arena.scan(
            &[body],
            Keep {
                words: true,
                digest: true,
            },
        );
        let values = arena.get(s.values).to_vec();
        assert_eq!(values.len(), 1);
        assert_eq!(find_value(body, values[0]).as_deref(), Some("obj-0001f0a9"));
        assert!(arena.has_word(&s, hash(b"x")));
        assert_eq!(s.digest, digest(body));
        let new_york = needle_words("New York");
        let url = arena.scan(
            &[b"q=new+york", b"&x=1"],
            Keep {
                words: true,
                digest: false,
            },
        );
        assert!(new_york.iter().all(|w| arena.has_word(&url, *w)));
        assert!(!arena.has_word(&url, hash(b"paris")));
    }
}
