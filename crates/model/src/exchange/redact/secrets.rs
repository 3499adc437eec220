//! The secret values seen in one exchange, and their removal from any bytes.
//!
//! Named headers, query parameters and fields are redacted where they stand; their
//! values are also collected here, because an upstream may echo them anywhere (a
//! header, an error message, the middle of a streamed body). Every copy kept for disk
//! is scrubbed of them, as a whole or as it streams ([`LiteralStream`]).

use std::borrow::Cow;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine;

use crate::rules::REDACTED;

/// Shorter values are too likely to collide with ordinary text to be scrubbed blindly.
pub const MIN_SCRUB_LEN: usize = 8;
/// Longer values are not scrubbed literally (a stream holds back this many bytes).
pub const MAX_SCRUB_LEN: usize = 16 << 10;
/// A hostile request cannot grow the list without bound.
pub(super) const MAX_SECRETS: usize = 256;

/// Whether `v` is the redaction marker or a piece of it (`REDACTED`, `[REDACTE`): such a
/// value is never scrubbed, or scrubbing would rewrite the markers themselves and a
/// stored body redacted again (replay under other rules) would come out different.
pub(super) fn in_marker(v: &str) -> bool {
    REDACTED.contains(v)
}

/// The secret values seen in one exchange, to be scrubbed from what is stored of it.
#[derive(Default, Clone, Debug)]
pub struct Secrets {
    values: Vec<Vec<u8>>,
    matcher: OnceLock<Option<AhoCorasick>>,
}

impl Secrets {
    /// Adds a header's or parameter's value: the value itself and, for `Bearer x` /
    /// `Basic x`, the credential alone (and a Basic credential's decoded password).
    pub fn add(&mut self, value: &str) {
        let value = value.trim();
        self.push(value);
        if let Some((scheme, cred)) = value.split_once(' ') {
            let cred = cred.trim();
            self.push(cred);
            if scheme.eq_ignore_ascii_case("basic") {
                if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(cred) {
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    self.push(&text);
                    if let Some((user, pass)) = text.split_once(':') {
                        self.push(user);
                        self.push(pass);
                    }
                }
            }
        }
    }

    /// Adds a cookie header's values (`a=1; b=2`, or a `set-cookie` line).
    pub fn add_cookies(&mut self, value: &str) {
        self.push(value.trim());
        for pair in value.split(';') {
            if let Some((_, v)) = pair.split_once('=') {
                self.push(v.trim().trim_matches('"'));
            }
        }
    }

    /// Adds values as they are and percent-decoded (query parameters, userinfo).
    pub fn add_encoded(&mut self, value: &str) {
        self.push(value);
        let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        self.push(&decoded);
    }

    /// Adds values found by the field redactors while a body streamed.
    pub fn extend(&mut self, values: impl IntoIterator<Item = String>) {
        for v in values {
            self.push(&v);
        }
    }

    fn push(&mut self, v: &str) {
        let v = v.trim();
        if v.len() < MIN_SCRUB_LEN
            || v.len() > MAX_SCRUB_LEN
            || in_marker(v)
            || self.values.len() >= MAX_SECRETS
            || self.values.iter().any(|x| x == v.as_bytes())
        {
            return;
        }
        self.values.push(v.as_bytes().to_vec());
        self.matcher = OnceLock::new();
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The longest value: how much a stream must hold back to catch one split in two.
    fn max_len(&self) -> usize {
        self.values.iter().map(Vec::len).max().unwrap_or(0)
    }

    fn matcher(&self) -> Option<&AhoCorasick> {
        self.matcher
            .get_or_init(|| (!self.values.is_empty()).then(|| matcher_for(&self.values))?)
            .as_ref()
    }

    /// `data` with every secret value replaced; `None` when there was nothing to replace.
    pub fn scrub(&self, data: &[u8]) -> Option<Vec<u8>> {
        let ac = self.matcher()?;
        ac.find(data)?;
        Some(ac.replace_all_bytes(data, &vec![REDACTED.as_bytes(); self.values.len()]))
    }

    /// Text (a header value, an error message, a log line) with every secret replaced.
    pub fn scrub_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.scrub(text.as_bytes()) {
            Some(out) => Cow::Owned(String::from_utf8_lossy(&out).into_owned()),
            None => Cow::Borrowed(text),
        }
    }

    /// A scrubber for a body that streams, with the values known now.
    pub fn stream(&self) -> LiteralStream {
        LiteralStream {
            matcher: self.matcher().cloned(),
            hold: self.max_len().saturating_sub(1),
            buf: Vec::new(),
        }
    }
}

/// How many matchers each thread keeps for the sets of values it saw last.
const MATCHERS_KEPT: usize = 8;
/// Sets of values longer than this in all are not kept: keys and cookies are far shorter,
/// and a client sending many long values would otherwise leave large automata behind on
/// every thread.
const KEPT_UP_TO: usize = 4 << 10;

thread_local! {
    /// The matchers built for the last sets of values, most recent first, each beside its
    /// values in sorted order.
    static MATCHERS: std::cell::RefCell<Vec<(Vec<Vec<u8>>, AhoCorasick)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A matcher for `values`, built once per thread for a set of values seen again: an agent
/// sends the same key with every request, and building the automaton (about 100 µs in
/// a release build for one bearer key) cost more than all the rest of recording an
/// exchange. The values stay in memory only, as they were while the exchange ran; sets
/// over [`KEPT_UP_TO`] bytes are built each time, as before.
/// `None` when the automaton cannot be built (too large: the values are then not
/// scrubbed literally, as before).
fn matcher_for(values: &[Vec<u8>]) -> Option<AhoCorasick> {
    let mut sorted: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    // Which pattern matched is never asked (every one is replaced by the same marker),
    // and leftmost-longest matches do not depend on the patterns' order.
    sorted.sort_unstable();
    let same = |kept: &Vec<Vec<u8>>| {
        kept.len() == sorted.len() && kept.iter().zip(&sorted).all(|(k, v)| k == v)
    };
    // Leftmost-longest: a secret that contains another is replaced whole.
    let build = |values: &[&[u8]]| {
        AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(values)
            .ok()
    };
    if sorted.iter().map(|v| v.len()).sum::<usize>() > KEPT_UP_TO {
        return build(&sorted);
    }
    MATCHERS.with(|cell| {
        let mut kept = cell.borrow_mut();
        if let Some(at) = kept.iter().position(|(k, _)| same(k)) {
            let hit = kept.remove(at);
            let ac = hit.1.clone();
            kept.insert(0, hit);
            return Some(ac);
        }
        let ac = build(&sorted)?;
        kept.insert(0, (sorted.iter().map(|v| v.to_vec()).collect(), ac.clone()));
        kept.truncate(MATCHERS_KEPT);
        Some(ac)
    })
}

/// Scrubs secret values from a body as it streams. A value split across two pieces is
/// still found: the last `longest value − 1` bytes are held back until more arrive (or
/// the body ends). The output does not depend on how the input was cut.
pub struct LiteralStream {
    matcher: Option<AhoCorasick>,
    hold: usize,
    buf: Vec<u8>,
}

impl LiteralStream {
    pub fn is_passthrough(&self) -> bool {
        self.matcher.is_none()
    }

    pub fn held(&self) -> usize {
        self.buf.len()
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Some(ac) = &self.matcher else {
            out.extend_from_slice(data);
            return;
        };
        self.buf.extend_from_slice(data);
        // Every value starting before `safe` lies wholly inside the buffer.
        let safe = self.buf.len().saturating_sub(self.hold);
        let mut done = 0;
        for m in ac.find_iter(&self.buf) {
            if m.start() >= safe {
                break;
            }
            out.extend_from_slice(&self.buf[done..m.start()]);
            out.extend_from_slice(REDACTED.as_bytes());
            done = m.end();
        }
        let cut = done.max(safe);
        out.extend_from_slice(&self.buf[done..cut]);
        self.buf.drain(..cut);
    }

    pub fn finish(self, out: &mut Vec<u8>) {
        match &self.matcher {
            Some(ac) => {
                let with = vec![REDACTED.as_bytes(); ac.patterns_len()];
                out.extend_from_slice(&ac.replace_all_bytes(&self.buf, &with));
            }
            None => out.extend_from_slice(&self.buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Secrets {
        let mut s = Secrets::default();
        for v in values {
            s.add(v);
        }
        s
    }

    fn streamed(s: &Secrets, data: &[u8], cut: usize) -> Vec<u8> {
        let mut st = s.stream();
        let mut out = Vec::new();
        for piece in data.chunks(cut.max(1)) {
            st.feed(piece, &mut out);
        }
        st.finish(&mut out);
        out
    }

    #[test]
    fn a_value_split_across_pieces_is_scrubbed_and_the_output_does_not_depend_on_the_cuts() {
        let s = secrets(&["Bearer sk-live-0123456789", "AIzaSECRETKEY1"]);
        let data = b"x sk-live-0123456789 y AIzaSECRETKEY1 z sk-live-0123456789".repeat(50);
        let whole = s.scrub(&data).unwrap();
        assert!(!String::from_utf8_lossy(&whole).contains("sk-live"));
        for cut in [1, 2, 3, 7, 13, 19, 64, 1000, 10_000] {
            assert_eq!(streamed(&s, &data, cut), whole, "cut {cut}");
        }
    }

    #[test]
    fn the_longest_value_wins_and_short_values_are_not_collected() {
        let s = secrets(&["abcdefgh", "abcdefghijkl", "short"]);
        assert_eq!(
            s.scrub_str("abcdefghijkl abcdefgh short"),
            "[REDACTED] [REDACTED] short"
        );
        assert_eq!(streamed(&s, b"abcdefghijkl", 5), b"[REDACTED]");
    }

    #[test]
    fn pieces_of_the_marker_are_not_secrets_so_markers_stay_whole() {
        let s = secrets(&["[REDACTE", "REDACTED", "EDACTED]", "[REDACTED]"]);
        assert!(s.is_empty());
        let s = secrets(&["[REDACTED]x"]);
        assert_eq!(s.scrub_str("a [REDACTED]x b"), "a [REDACTED] b");
    }

    #[test]
    fn basic_credentials_and_cookies_give_their_parts() {
        let cred = base64::engine::general_purpose::STANDARD.encode("ada:correct-horse-battery");
        let mut s = secrets(&[&format!("Basic {cred}")]);
        s.add_cookies("sid=session-cookie-value-1; theme=dark");
        assert_eq!(
            s.scrub_str("pw=correct-horse-battery sid=session-cookie-value-1"),
            "pw=[REDACTED] sid=[REDACTED]"
        );
    }

    #[test]
    fn a_matcher_is_reused_only_for_the_same_values_in_any_order() {
        let text = "one=first-secret-value two=second-secret-value";
        let both = secrets(&["first-secret-value", "second-secret-value"]);
        assert_eq!(both.scrub_str(text), "one=[REDACTED] two=[REDACTED]");
        // The same values in another order: the kept matcher, the same output.
        let swapped = secrets(&["second-secret-value", "first-secret-value"]);
        assert_eq!(swapped.scrub_str(text), "one=[REDACTED] two=[REDACTED]");
        assert!(MATCHERS.with(|m| m.borrow().len()) >= 1);
        // A subset is another set: the second value is left alone.
        let one = secrets(&["first-secret-value"]);
        assert_eq!(
            one.scrub_str(text),
            "one=[REDACTED] two=second-secret-value"
        );
        // Values added after a matcher was made give a new one.
        let mut grown = secrets(&["first-secret-value"]);
        assert_eq!(
            grown.scrub_str(text),
            "one=[REDACTED] two=second-secret-value"
        );
        grown.add("second-secret-value");
        assert_eq!(grown.scrub_str(text), "one=[REDACTED] two=[REDACTED]");
        // More sets than are kept: the oldest go, every one still scrubs its own values.
        for i in 0..3 * MATCHERS_KEPT {
            let v = format!("value-number-{i:04}");
            let s = secrets(&[&v]);
            assert_eq!(
                s.scrub_str(&format!("<{v}> value-number-9999")),
                "<[REDACTED]> value-number-9999"
            );
        }
        assert_eq!(MATCHERS.with(|m| m.borrow().len()), MATCHERS_KEPT);
        assert_eq!(both.scrub_str(text), "one=[REDACTED] two=[REDACTED]");
        // A set longer than KEPT_UP_TO in all scrubs as well and is not kept.
        let before: Vec<Vec<Vec<u8>>> =
            MATCHERS.with(|m| m.borrow().iter().map(|(k, _)| k.clone()).collect());
        let long: Vec<String> = (0..3).map(|i| format!("{i}{}", "x".repeat(2000))).collect();
        let s = secrets(&long.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(s.scrub_str(&format!("a {} b", long[1])), "a [REDACTED] b");
        let after: Vec<Vec<Vec<u8>>> =
            MATCHERS.with(|m| m.borrow().iter().map(|(k, _)| k.clone()).collect());
        assert_eq!(before, after);
    }
}
