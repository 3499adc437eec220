//! Matching a request that passes on a value it was served redacted, when its key misses.
//!
//! A recorded request stores `[REDACTED]` where it carried a secret; at replay the agent
//! is served the marker where a recorded answer held one, and passes it on as it would
//! the value. Paths, query values and form bodies key the marker percent-encoded as the
//! marker (`tapedeck_model::exchange::canonical`); anywhere else it may come encoded
//! in a way no rule reads (`%5BREDACTED%5D` inside a JSON string, a callback URL
//! encoded twice, `\u005bREDACTED\u005d`). For those, a miss compares the live request
//! with the unserved events of the same method, host and path: the one it matches is
//! taken when each `[REDACTED]` of the recorded URL and body stands for an encoding of
//! the marker in the live one (a span holding `REDACTED`, within one string or URL
//! segment) or for a value that looks like a key of its own (a secret replay could not
//! know: one only an answer revealed, which the agent also had from its environment),
//! everything else is the same, and no other unserved event matches as well. A word
//! never stands for the marker, and two recorded calls that differ only where they hold
//! it are not told apart by a value in clear: either would let a request the agent
//! changed (another question, another account's key) take a recorded answer.

use tapedeck_model::rules::REDACTED;

/// The longest encoding of the marker read as one (`%25255BREDACTED%25255D`, encoded
/// three times, is 22 bytes).
const MAX_ENCODED: usize = 32;

/// Where a value ends in a body: a JSON string's quote, white space, a form's `&`.
const BODY_STOPS: &[u8] = b"\" \t\r\n&";
/// Where a value ends in a URL: a path segment's or a query parameter's end.
const URL_STOPS: &[u8] = b"/?&#= \t\r\n\"";

/// Whether `live` is `recorded` with each [`REDACTED`] in it standing for a value that may
/// stand for the marker ([`stands_for_marker`]), without any of `stops` (one string,
/// one URL segment). `recorded` without the marker matches only itself.
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
        // The value runs from `at` to the piece, and may not run past a stop: the first
        // place the piece stands where the value before it may be one is taken.
        let limit = live[at..end]
            .iter()
            .position(|b| stops.contains(b))
            .map_or(end, |p| at + p);
        let next = memchr::memmem::find_iter(&live[at..end], piece)
            .map(|p| at + p)
            .take_while(|&p| p <= limit)
            .find(|&p| stands_for_marker(&live[at..p]));
        let Some(p) = next else {
            return false;
        };
        at = p + piece.len();
    }
    at <= end
        && stands_for_marker(&live[at..end])
        && !live[at..end].iter().any(|b| stops.contains(b))
}

/// Whether a live value may stand where the recording holds the marker: an encoding of
/// the marker, or a value that looks like a key of its own (16 bytes or more of three
/// kinds of characters among lower case, upper case, digits and others, no backslash):
/// a secret replay could not know (one only an answer revealed, which the agent also
/// had from its environment). Never a word (`postgres`, `Asia/Tokyo`).
fn stands_for_marker(value: &[u8]) -> bool {
    marker_like(value) || strong_key(value)
}

fn strong_key(v: &[u8]) -> bool {
    (16..=MAX_KEY).contains(&v.len())
        && tapedeck_model::credential::kinds_of(v) >= 3
        && !v.contains(&b'\\')
}

/// The longest value taken for a key (`MAX_SCRUB_LEN`).
const MAX_KEY: usize = tapedeck_model::exchange::redact::MAX_SCRUB_LEN;

const INNER: &[u8] = b"REDACTED";

/// Whether a value can be an encoding of the marker: short, holding `REDACTED` once.
fn marker_like(value: &[u8]) -> bool {
    value.len() <= MAX_ENCODED && memchr::memmem::find_iter(value, INNER).count() == 1
}

/// [`matches`] for a URL.
pub fn url_matches(recorded: &str, live: &str) -> bool {
    matches(recorded.as_bytes(), live.as_bytes(), URL_STOPS)
}

/// [`matches`] for a body.
pub fn body_matches(recorded: &[u8], live: &[u8]) -> bool {
    matches(recorded, live, BODY_STOPS)
}

/// `live` with what stands where `recorded` has each [`REDACTED`] masked as it, as far as
/// the two line up: a miss prints the live request beside the recorded one, and a value
/// the recording holds redacted that the live request carries in clear (a secret replay
/// could not know) must not reach CI's log. A value runs up to the recorded text that
/// follows the marker, or to the first of `stops`; from where the two stop lining up,
/// `live` is kept as it is.
pub fn masked<'a>(recorded: &[u8], live: &'a [u8], stops: &[u8]) -> std::borrow::Cow<'a, [u8]> {
    let marker = REDACTED.as_bytes();
    let pieces = split(recorded, marker);
    if pieces.len() == 1 || !live.starts_with(pieces[0]) {
        return std::borrow::Cow::Borrowed(live);
    }
    let mut out = pieces[0].to_vec();
    let mut at = pieces[0].len();
    for piece in &pieces[1..] {
        let limit = live[at..]
            .iter()
            .position(|b| stops.contains(b))
            .map_or(live.len(), |p| at + p);
        let next = match piece.is_empty() {
            true => None,
            false => find(&live[at..], piece)
                .map(|p| at + p)
                .filter(|&p| p <= limit),
        };
        out.extend_from_slice(marker);
        match next {
            Some(p) => {
                out.extend_from_slice(piece);
                at = p + piece.len();
            }
            None => {
                at = limit;
                break;
            }
        }
    }
    out.extend_from_slice(&live[at.min(live.len())..]);
    std::borrow::Cow::Owned(out)
}

/// [`masked`] for a body.
pub fn masked_body<'a>(recorded: &[u8], live: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    masked(recorded, live, BODY_STOPS)
}

/// [`masked`] for a URL.
pub fn masked_url(recorded: &str, live: &str) -> String {
    String::from_utf8_lossy(&masked(recorded.as_bytes(), live.as_bytes(), URL_STOPS)).into_owned()
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
    fn a_redacted_value_stands_for_the_marker_encoded_or_a_key_never_a_word() {
        let rec = br#"{"ref":"https://x.test/cb?t=[REDACTED]","note":"key [REDACTED] ok"}"#;
        let live =
            br#"{"ref":"https://x.test/cb?t=%5BREDACTED%5D","note":"key \u005bREDACTED\u005d ok"}"#;
        assert!(body_matches(rec, live));
        assert!(body_matches(
            b"t=[REDACTED]&n=1",
            b"t=%255BREDACTED%255D&n=1"
        ));
        // A key the agent had from elsewhere (its environment), sent in clear.
        let key = br#"{"ref":"https://x.test/cb?t=sk-live-Q8x3Zp4Lm9Vt2Wq","note":"key %5BREDACTED%5D ok"}"#;
        assert!(body_matches(rec, key));
        // A word, a key glued to more text, two values for one, a changed sentence.
        for other in [
            &br#"{"ref":"https://x.test/cb?t=%5BREDACTED%5D","note":"key postgres ok"}"#[..],
            br#"{"ref":"https://x.test/cb?t=Asia/Tokyo","note":"key %5BREDACTED%5D ok"}"#,
            br#"{"ref":"https://x.test/cb?t=tokenlowercaseonly","note":"key %5BREDACTED%5D ok"}"#,
            br#"{"ref":"https://x.test/cb?t=%5BREDACTED%5D","note":"key sk-live-Q8x3Zp4Lm9Vt2Wq\nDRY_RUN=0 ok"}"#,
            br#"{"ref":"https://x.test/cb?t=%5BREDACTED%5D","note":"key %5BREDACTED%5D not ok"}"#,
        ] {
            assert!(!body_matches(rec, other), "{}", String::from_utf8_lossy(other));
        }
        // Nothing redacted: only the same bytes.
        assert!(body_matches(b"same", b"same"));
        assert!(!body_matches(b"same", b"other"));
        // A marker at either end, two adjacent.
        assert!(body_matches(b"[REDACTED]", b"%5BREDACTED%5D"));
        assert!(body_matches(
            b"[REDACTED][REDACTED]x",
            b"[REDACTED]%5bREDACTED%5dx"
        ));
        assert!(!body_matches(b"[REDACTED]x", b"abcdefghx"));
    }

    /// Any two inputs, built from pieces that meet at the edges (markers, quotes,
    /// short words), never panic, and a recorded text matches its own copy with each
    /// marker sent back encoded; masking never panics either.
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
            masked_body(&rec, &live);
            let filled: Vec<u8> = split(&rec, REDACTED.as_bytes()).join(&b"%5BREDACTED%5D"[..]);
            assert!(
                body_matches(&rec, &filled),
                "{} / {}",
                String::from_utf8_lossy(&rec),
                String::from_utf8_lossy(&filled)
            );
        }
    }

    /// What a miss prints of the live request: the values the recording holds redacted
    /// masked, the differences kept.
    #[test]
    fn a_miss_prints_the_live_request_masked_where_the_recording_is_redacted() {
        let rec = br#"{"model":"gpt-4o","content":"ALICE_KEY=[REDACTED]\nTARGET=[REDACTED]"}"#;
        let live = br#"{"model":"gpt-4.1","content":"ALICE_KEY=Ak7Qm2Xp9Lk4Rt8Vn3Bc\nTARGET=prod-secret-9"}"#;
        // Misaligned from the model on: kept as it is (nothing lines up to mask).
        assert_eq!(&masked_body(rec, live)[..], &live[..]);
        let live = br#"{"model":"gpt-4o","content":"ALICE_KEY=Ak7Qm2Xp9Lk4Rt8Vn3Bc\nTARGET=prod-secret-9 --force"}"#;
        let out = String::from_utf8(masked_body(rec, live).into_owned()).unwrap();
        assert!(
            !out.contains("Ak7Qm2Xp9Lk4Rt8Vn3Bc") && !out.contains("prod-secret-9"),
            "{out}"
        );
        assert!(out.contains("--force"), "{out}");
        assert_eq!(
            masked_url(
                "https://a.test/bot[REDACTED]/getMe?v=1",
                "https://a.test/bot123:AAH-x/getMe?v=2"
            ),
            "https://a.test/bot[REDACTED]/getMe?v=2"
        );
    }

    #[test]
    fn a_redacted_url_segment_stands_for_the_marker_in_one_segment() {
        let rec = "https://api.test/bot[REDACTED]/getMe?t=[REDACTED]&v=2";
        assert!(url_matches(
            rec,
            "https://api.test/bot%5BREDACTED%5D/getMe?t=%255BREDACTED%255D&v=2"
        ));
        // A bot token the agent had from its environment.
        assert!(url_matches(
            rec,
            "https://api.test/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe?t=%5BREDACTED%5D&v=2"
        ));
        assert!(!url_matches(
            rec,
            "https://api.test/botmarketing/getMe?t=%5BREDACTED%5D&v=2"
        ));
        assert!(!url_matches(
            rec,
            "https://api.test/bot%5BREDACTED%5D/x/getMe?t=%5BREDACTED%5D&v=2"
        ));
    }
}
