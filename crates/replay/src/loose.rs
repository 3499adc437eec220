//! Matching a request by its redacted parts, when its key misses.
//!
//! A recorded request stores `[REDACTED]` where it carried a secret, and a live request
//! is stored the same way before its key is computed, so the two keys agree. They do not
//! when the live request carries in clear a value that record knew to be secret and
//! replay cannot know: one only an earlier *answer* revealed (replay serves that answer
//! redacted), which the agent also had from elsewhere (its environment, its user's
//! prompt, a password that is also a word: `postgres`); or a key two concurrent
//! requests learned from each other in another order. For those, a miss compares the
//! live request with the unserved event it resembles most: it is taken when each
//! `[REDACTED]` of the recorded URL and body stands for a value that could have been
//! redacted there, and everything else is the same.

use tapedeck_model::rules::REDACTED;

/// The shortest value a redaction replaces in text (`MIN_SCRUB_LEN`).
const MIN_VALUE: usize = tapedeck_model::exchange::redact::MIN_SCRUB_LEN;

/// Where a value ends in a body: a JSON string's quote, white space, a form's `&`.
const BODY_STOPS: &[u8] = b"\" \t\r\n&";
/// Where a value ends in a URL: a path segment's or a query parameter's end.
const URL_STOPS: &[u8] = b"/?&#= \t\r\n\"";

/// Whether `live` is `recorded` with each [`REDACTED`] in it standing for a value of
/// [`MIN_VALUE`] bytes or more without any of `stops` (one string, one URL segment).
/// `recorded` without the marker matches only itself.
pub fn matches(recorded: &[u8], live: &[u8], stops: &[u8]) -> bool {
    let marker = REDACTED.as_bytes();
    let pieces: Vec<&[u8]> = split(recorded, marker);
    if pieces.len() == 1 {
        return recorded == live;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !live.starts_with(first) || !live.ends_with(last) || live.len() < first.len() + last.len() {
        return false;
    }
    let end = live.len() - last.len();
    let mut at = first.len();
    for piece in &pieces[1..pieces.len() - 1] {
        // The value runs from `at` to the piece, and may not run past a stop.
        let limit = live[at..end]
            .iter()
            .position(|b| stops.contains(b))
            .map_or(end, |p| at + p);
        let from = at + MIN_VALUE;
        if from > limit {
            return false;
        }
        let Some(p) = find(&live[from..end], piece).filter(|&p| from + p <= limit) else {
            return false;
        };
        at = from + p + piece.len();
    }
    let value = &live[at.min(end)..end];
    at <= end && value.len() >= MIN_VALUE && !value.iter().any(|b| stops.contains(b))
}

/// [`matches`] for a URL.
pub fn url_matches(recorded: &str, live: &str) -> bool {
    matches(recorded.as_bytes(), live.as_bytes(), URL_STOPS)
}

/// [`matches`] for a body.
pub fn body_matches(recorded: &[u8], live: &[u8]) -> bool {
    matches(recorded, live, BODY_STOPS)
}

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for i in memchr::memmem::find_iter(data, sep) {
        out.push(&data[at..i]);
        at = i + sep.len();
    }
    out.push(&data[at..]);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_value_stands_for_one_value_that_could_have_been_redacted() {
        let rec = br#"{"messages":[{"content":"a [REDACTED] migration, key [REDACTED]"}]}"#;
        let live = br#"{"messages":[{"content":"a postgres migration, key tok-0123456789"}]}"#;
        assert!(body_matches(rec, live));
        // The agent changed: a shorter word (no value that short is redacted), another
        // sentence, a value swallowing a string's end.
        for other in [
            &br#"{"messages":[{"content":"a mysql migration, key tok-0123456789"}]}"#[..],
            br#"{"messages":[{"content":"a postgres rollback, key tok-0123456789"}]}"#,
            br#"{"messages":[{"content":"a postgres migration, key tok-01234567"}, {"content":"x"}]}"#,
            br#"{"messages":[{"content":"a two words migration, key tok-0123456789"}]}"#,
        ] {
            assert!(!body_matches(rec, other), "{}", String::from_utf8_lossy(other));
        }
        // The marker itself, or encoded, stands for one too.
        assert!(body_matches(b"t=[REDACTED]&n=1", b"t=%5BREDACTED%5D&n=1"));
        assert!(!body_matches(b"t=[REDACTED]&n=1", b"t=abcdefgh&x=1&n=1"));
        // Nothing redacted: only the same bytes.
        assert!(body_matches(b"same", b"same"));
        assert!(!body_matches(b"same", b"other"));
        // Adjacent markers, a marker at either end.
        assert!(body_matches(b"[REDACTED]", b"abcdefgh"));
        assert!(body_matches(b"[REDACTED][REDACTED]x", b"abcdefgh12345678x"));
        assert!(!body_matches(b"[REDACTED]x", b"abcdefg"));
    }

    /// Any two inputs, built from pieces that meet at the edges (markers, quotes,
    /// short words), never panic, and a recorded text matches its own copy with each
    /// marker replaced by an 8-byte word.
    #[test]
    fn any_input_is_answered_without_panicking() {
        let parts: [&[u8]; 7] = [b"[REDACTED]", b"\"", b"ab", b"abcdefgh", b" ", b"&", b"x"];
        let mut seed = 0x2545f4914f6cdd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut rec = Vec::new();
            let mut live = Vec::new();
            for _ in 0..(next() % 8) {
                rec.extend_from_slice(parts[(next() % 7) as usize]);
            }
            for _ in 0..(next() % 8) {
                live.extend_from_slice(parts[(next() % 7) as usize]);
            }
            body_matches(&rec, &live);
            matches(&rec, &live, URL_STOPS);
            let filled: Vec<u8> = split(&rec, REDACTED.as_bytes()).join(&b"abcdefgh"[..]);
            assert!(
                body_matches(&rec, &filled),
                "{} / {}",
                String::from_utf8_lossy(&rec),
                String::from_utf8_lossy(&filled)
            );
        }
    }

    #[test]
    fn a_redacted_url_segment_stands_for_one_segment() {
        let rec = "https://api.test/bot[REDACTED]/getMe?t=[REDACTED]&v=2";
        assert!(url_matches(
            rec,
            "https://api.test/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe?t=%5BREDACTED%5D&v=2"
        ));
        assert!(!url_matches(
            rec,
            "https://api.test/bot123456789:AAH/other/getMe?t=%5BREDACTED%5D&v=2"
        ));
        assert!(!url_matches(
            rec,
            "https://api.test/bot123456789:AAHdq/getMe?t=abcdefgh&v=3"
        ));
    }
}
