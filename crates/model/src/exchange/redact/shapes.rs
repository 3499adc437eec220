//! Credentials found by their shape, whatever name or text they stand in.
//!
//! Names catch a key sent as a key. An agent also carries keys where no name says so: a
//! coding agent's shell tool prints a `.env` file and the model's next request carries
//! it as message text (`OPENAI_API_KEY=sk-proj-…\nSTRIPE_KEY=sk_live_…`), a login tool
//! answers `{"token": "eyJ…"}` under a bare `token` (a logprob's name too), a model
//! repeats a key back in prose. The services that issue keys give them prefixes so that
//! secret scanners can find them (GitHub's `ghp_`, Stripe's `sk_live_`, Slack's `xoxb-`,
//! Google's `AIza`, a JWT's `eyJ…`); a value with such a prefix, a word boundary before
//! it and enough of the right characters after it is replaced by `[REDACTED]` wherever
//! it stands in a textual body, and hunted through the rest of the exchange.
//!
//! The scan runs on a stream and its output does not depend on where the stream is cut:
//! it holds back only a possible prefix at the end of a piece and a candidate whose
//! characters have not ended yet (at most [`CAP`] bytes; a longer run is judged on its
//! first [`CAP`] bytes, as it is when the body is read whole).

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};

use super::Collected;
use crate::rules::REDACTED;

/// The most characters of a candidate read after its prefix.
const CAP: usize = 8 << 10;

/// How many bytes before a prefix its boundary check reads (a `\u003d` escape).
const HISTORY: usize = 6;

/// One issuer's key format.
struct Shape {
    prefix: &'static str,
    /// The characters of the key after its prefix.
    class: Class,
    /// The fewest characters after the prefix.
    min: usize,
    /// How much of the characters after the prefix (already at least `min`) is the key,
    /// or `None` when they do not make one.
    check: fn(&[u8]) -> Option<usize>,
    /// Bytes at the prefix's start that are not the key but say where it is (a Telegram
    /// bot token's `:` after the bot's number), kept as they are. A format with such a
    /// lead follows a digit, not a word's boundary.
    lead: usize,
}

/// The characters a key is made of after its prefix.
#[derive(Clone, Copy)]
enum Class {
    Alnum,
    AlnumUnder,
    AlnumDash,
    Base64Url,
    Base64UrlDot,
}

const CLASSES: usize = 5;

impl Class {
    fn has(self, b: u8) -> bool {
        b.is_ascii_alphanumeric()
            || match self {
                Class::Alnum => false,
                Class::AlnumUnder => b == b'_',
                Class::AlnumDash => b == b'-',
                Class::Base64Url => b == b'_' || b == b'-',
                Class::Base64UrlDot => b == b'_' || b == b'-' || b == b'.',
            }
    }
}

use Class::{
    Alnum as alnum, AlnumDash as alnum_dash, AlnumUnder as alnum_under, Base64Url as base64url,
    Base64UrlDot as base64url_dot,
};

/// A byte that continues a word of a key or of base64url data: a key has none right
/// before or after it.
fn wordish(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn all(body: &[u8]) -> Option<usize> {
    Some(body.len())
}

/// Random characters: a digit and a letter at least (`sk-learn-is-a-library` is prose).
fn random(body: &[u8]) -> Option<usize> {
    let digit = body.iter().any(u8::is_ascii_digit);
    let letter = body.iter().any(u8::is_ascii_alphabetic);
    (digit && letter).then_some(body.len())
}

/// An `sk-` key: OpenAI's project, service account and admin keys, Anthropic's and
/// OpenRouter's, each with a kind after `sk-`; or 32 letters and digits or more with no
/// dash (OpenAI's older keys, DeepSeek's, Moonshot's). Random base64url data (which
/// has dashes) rarely makes one.
fn sk_dash(body: &[u8]) -> Option<usize> {
    const KINDS: &[&[u8]] = &[
        b"proj-",
        b"svcacct-",
        b"admin-",
        b"ant-",
        b"or-v1-",
        b"None-",
        b"lf-",
    ];
    if KINDS.iter().any(|k| body.starts_with(k)) {
        return random(body);
    }
    (body.len() >= 32 && body.iter().all(u8::is_ascii_alphanumeric))
        .then(|| random(body))
        .flatten()
}

/// A key of one length exactly: a Google API key's 35 characters after `AIza`, a
/// GitHub token's 36 after `ghp_`. Exact lengths keep random base64 (an image's bytes)
/// from passing for one.
fn exactly<const N: usize>(body: &[u8]) -> Option<usize> {
    (body.len() == N).then_some(N)
}

/// A Telegram bot token's characters after `:AA`: 33 (35 after the colon, as the Bot
/// API issues them), or 32 (the 34 of the token its documentation shows, copied into
/// many a test).
fn telegram(body: &[u8]) -> Option<usize> {
    (32..=33).contains(&body.len()).then_some(body.len())
}

/// 32 hexadecimal digits exactly (Databricks', Firecrawl's keys).
fn hex32(body: &[u8]) -> Option<usize> {
    (body.len() == 32 && body.iter().all(u8::is_ascii_hexdigit)).then_some(32)
}

/// A JWT (`header.payload.signature`, each base64url; the payload a JSON object too) or a
/// JWE (five parts): the dots a sentence puts after it are not part of it.
fn jwt(body: &[u8]) -> Option<usize> {
    let mut end = body.len();
    while end > 0 && body[end - 1] == b'.' {
        end -= 1;
    }
    let token = &body[..end];
    let mut parts = token.split(|&b| b == b'.');
    let header = parts.next()?;
    let payload = parts.next()?;
    let rest = parts.count();
    (header.len() >= 4 && payload.len() >= 8 && payload.starts_with(b"eyJ") && rest >= 1)
        .then_some(end)
}

/// SendGrid's `SG.<22>.<43>`.
fn two_parts(body: &[u8]) -> Option<usize> {
    let mut parts = body.splitn(3, |&b| b == b'.');
    let a = parts.next()?;
    let b = parts.next()?;
    (a.len() >= 16 && b.len() >= 16).then_some(a.len() + 1 + b.len())
}

macro_rules! shapes {
    ($( $prefix:literal, $class:ident, $min:literal, $check:expr $(, lead $lead:literal)?; )*) => {
        &[$( Shape {
            prefix: $prefix, class: $class, min: $min, check: $check, lead: 0 $(+ $lead)?
        }, )*]
    };
}

/// Every format read. Prefixes that are an ordinary word's start (AWS's access key ids,
/// `AKIA…`, are identifiers the agent reads back; a bare `secret_`) are left to names.
const SHAPES: &[Shape] = shapes![
    // OpenAI (`sk-proj-`, `sk-svcacct-`, `sk-admin-`), Anthropic (`sk-ant-api03-`),
    // DeepSeek, Moonshot, and the OpenAI-compatible services that copied the form.
    "sk-", base64url, 20, sk_dash;
    // Stripe.
    "sk_live_", alnum, 16, all;
    "sk_test_", alnum, 16, all;
    "rk_live_", alnum, 16, all;
    "rk_test_", alnum, 16, all;
    "whsec_", alnum, 24, all;
    // GitHub.
    "ghp_", alnum, 36, exactly::<36>;
    "gho_", alnum, 36, exactly::<36>;
    "ghu_", alnum, 36, exactly::<36>;
    "ghs_", alnum, 36, exactly::<36>;
    "ghr_", alnum, 36, exactly::<36>;
    "github_pat_", alnum_under, 40, all;
    // GitLab.
    "glpat-", base64url, 20, all;
    // Slack.
    "xoxb-", alnum_dash, 20, all;
    "xoxp-", alnum_dash, 20, all;
    "xoxa-", alnum_dash, 20, all;
    "xoxr-", alnum_dash, 20, all;
    "xoxe-", alnum_dash, 20, all;
    "xapp-", alnum_dash, 20, all;
    // Google's API keys (Gemini, Maps, Firebase).
    "AIza", base64url, 35, exactly::<35>;
    // Hugging Face, xAI, Groq, Replicate, Perplexity.
    "hf_", alnum, 34, exactly::<34>;
    "xai-", alnum, 40, all;
    "gsk_", alnum, 40, all;
    "r8_", alnum, 37, exactly::<37>;
    "pplx-", alnum, 40, all;
    // npm, PyPI.
    "npm_", alnum, 36, exactly::<36>;
    "pypi-AgEIcHlwaS5vcmc", base64url, 50, all;
    // SendGrid, DigitalOcean, Shopify, Linear, Notion.
    "SG.", base64url_dot, 33, two_parts;
    "dop_v1_", alnum, 60, all;
    "shpat_", alnum, 30, all;
    "shpss_", alnum, 30, all;
    "lin_api_", alnum, 30, all;
    "ntn_", alnum, 40, all;
    // Google's OAuth access tokens and client secrets.
    "ya29.", base64url_dot, 30, all;
    "GOCSPX-", base64url, 24, all;
    // Agent tools: Tavily, Pinecone, LangSmith, E2B, Databricks, Firecrawl.
    "tvly-", alnum_dash, 20, all;
    "pcsk_", alnum_under, 40, all;
    "lsv2_pt_", alnum_under, 30, all;
    "lsv2_sk_", alnum_under, 30, all;
    "e2b_", alnum, 40, exactly::<40>;
    "dapi", alnum, 32, hex32;
    "fc-", alnum, 32, hex32;
    // Sentry's organization tokens, Atlassian's API tokens (their `=CHECKSUM` tail
    // stays).
    "sntrys_", base64url, 40, all;
    "ATATT", base64url, 60, all;
    // A JWT: an OAuth access or ID token, a session, a service account's assertion.
    "eyJ", base64url_dot, 30, jwt;
    // A Telegram bot's token, `<bot number>:AA<33 characters>`, wherever it stands (the
    // Bot API's URL path is a rule of its own; a tool's log line quoting the URL, a
    // `.env` printed to the model, a webhook relay's path are not on its host). The bot's
    // number is public and stays.
    ":AA", base64url, 32, telegram, lead 1;
];

const _: () = assert!(SHAPES.len() <= 64, "a mask of kept formats is a u64");

static PREFIXES: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(SHAPES.iter().map(|s| s.prefix))
        .expect("the prefixes build")
});

/// The longest prefix: a piece's last `LONGEST_PREFIX - 1` bytes may begin one.
const LONGEST_PREFIX: usize = {
    let mut i = 0;
    let mut longest = 0;
    while i < SHAPES.len() {
        if SHAPES[i].prefix.len() > longest {
            longest = SHAPES[i].prefix.len();
        }
        i += 1;
    }
    longest
};

/// Whether a key may start after `before` (the bytes before it, the last nearest): not
/// in the middle of a word (`task-…`) or of base64url data, but after an escape of JSON
/// (`\nsk-…`, `\u003dsk-…`) or a form's percent escape (`%3Dglpat-…`, `%0A…`), whose
/// last byte is a letter or digit.
fn boundary(before: &[u8]) -> bool {
    let n = before.len();
    match before.last() {
        None => true,
        Some(&b) if !wordish(b) => true,
        Some(&b) if !b.is_ascii_alphanumeric() => false,
        Some(_) => {
            (n >= 2 && before[n - 2] == b'\\' && (n < 3 || before[n - 3] != b'\\'))
                || (n >= 6 && before[n - 6] == b'\\' && before[n - 5] == b'u')
                || (n >= 3
                    && before[n - 3] == b'%'
                    && before[n - 2].is_ascii_hexdigit()
                    && before[n - 1].is_ascii_hexdigit())
        }
    }
}

/// Every key format read, by its prefix.
pub fn prefixes() -> impl Iterator<Item = &'static str> {
    SHAPES.iter().map(|s| s.prefix)
}

/// The formats not to read (`[redact] keep_shapes`), as a set of [`SHAPES`] indexes.
pub fn mask(kept: &[String]) -> u64 {
    SHAPES
        .iter()
        .enumerate()
        .filter(|(_, s)| kept.iter().any(|k| k == s.prefix))
        .fold(0, |m, (i, _)| m | 1 << i)
}

/// Whether `text` holds a prefix of a key format at all (the scan's quick reject).
pub fn may_hold_key(text: &str) -> bool {
    may_hold_key_bytes(text.as_bytes())
}

/// [`may_hold_key`] for bytes.
pub fn may_hold_key_bytes(data: &[u8]) -> bool {
    PREFIXES.is_match(data)
}

/// The JWT format, as a [`mask`], for the places that leave JWTs to names: an answer
/// (a JWT it hands out is often a value the agent sends back where nothing reads
/// shapes, a page cursor in a URL, a signed link's path, and redacted in the answer
/// alone it would make that request miss on replay) and a URL. A JWT in a request's
/// body is redacted there and in the same request at replay alike.
pub const JWT_MASK: u64 = {
    let mut i = 0;
    while i < SHAPES.len() && !matches!(SHAPES[i].prefix.as_bytes(), b"eyJ") {
        i += 1;
    }
    assert!(i < SHAPES.len(), "the JWT format is listed");
    1 << i
};

/// How far a run of one class of characters is known, in stream offsets: every byte in
/// `start..stop` is of the class; `ended`: the byte at `stop` is not.
#[derive(Clone, Copy)]
struct Scanned {
    start: u64,
    stop: u64,
    ended: bool,
}

/// The shape scan for a stream (see the module's text).
#[derive(Default)]
pub struct ShapeScrub {
    /// Formats not read ([`mask`]).
    kept: u64,
    /// Each class's run as far as it was read, so that prefixes packed inside one run
    /// (`-eyJ-eyJ…`) read its bytes once, not once each.
    known: [Option<Scanned>; CLASSES],
    /// The stream offset of `buf`'s first byte.
    base: u64,
    /// Bytes read to find runs' ends (tests check that each is read about once).
    #[cfg(test)]
    examined: usize,
    buf: Vec<u8>,
    /// The last bytes written, for the boundary of a key at the start of `buf`.
    history: Vec<u8>,
    pub found: Collected,
}

impl ShapeScrub {
    /// A scan that reads every format but those in `kept` ([`mask`]).
    pub fn new(kept: u64) -> ShapeScrub {
        ShapeScrub {
            kept,
            ..ShapeScrub::default()
        }
    }

    /// Reads none of the formats in `mask` either.
    pub fn keep_also(&mut self, mask: u64) {
        self.kept |= mask;
    }

    pub fn held(&self) -> usize {
        self.buf.len()
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.buf.is_empty() && !PREFIXES.is_match(data) {
            // Nothing to find in this piece: all of it goes but what may begin a prefix
            // that the next piece completes.
            let keep = LONGEST_PREFIX - 1;
            let safe = data.len().saturating_sub(keep);
            self.write(&data[..safe], out);
            self.buf.extend_from_slice(&data[safe..]);
            self.base += safe as u64;
            return;
        }
        self.buf.extend_from_slice(data);
        self.run(out, false);
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.run(out, true);
    }

    /// [`boundary`] before a key, `pending` the bytes between what was written and it.
    fn boundary_at(&self, pending: &[u8]) -> bool {
        if pending.len() >= HISTORY {
            return boundary(&pending[pending.len() - HISTORY..]);
        }
        let mut before = [0u8; 2 * HISTORY];
        let h = self.history.len();
        before[..h].copy_from_slice(&self.history);
        before[h..h + pending.len()].copy_from_slice(pending);
        boundary(&before[..h + pending.len()])
    }

    /// Whether a digit is right before a key, `pending` as in [`Self::boundary_at`].
    fn digit_at(&self, pending: &[u8]) -> bool {
        pending
            .last()
            .or(self.history.last())
            .is_some_and(u8::is_ascii_digit)
    }

    fn write(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
        if bytes.len() >= HISTORY {
            self.history.clear();
            self.history
                .extend_from_slice(&bytes[bytes.len() - HISTORY..]);
        } else {
            self.history.extend_from_slice(bytes);
            let over = self.history.len().saturating_sub(HISTORY);
            self.history.drain(..over);
        }
    }

    /// Writes what `buf` holds up to where a key may still be growing (all of it at
    /// the end of the stream), every key in it replaced.
    fn run(&mut self, out: &mut Vec<u8>, end: bool) {
        let buf = std::mem::take(&mut self.buf);
        let mut cursor = 0;
        let mut held_from = None;
        while let Some(m) = PREFIXES.find(&buf[cursor..]) {
            let at = cursor + m.start();
            let shape = &SHAPES[m.pattern().as_usize()];
            let body_at = cursor + m.end();
            let avail = &buf[body_at..];
            let run = match self.class_run(&buf, shape.class, body_at) {
                (run, true) => run,
                (run, false) if end => run,
                (_, false) => {
                    held_from = Some(at);
                    break;
                }
            };
            let read = self.kept & 1 << m.pattern().as_usize() == 0;
            // A run of CAP bytes or more is data, not a key.
            let fits = run >= shape.min && run < CAP;
            let lead = shape.lead;
            let starts = match lead {
                0 => self.boundary_at(&buf[cursor..at]),
                _ => self.digit_at(&buf[cursor..at]),
            };
            let key = (read && fits && starts)
                .then(|| (shape.check)(&avail[..run]))
                .flatten()
                // Nor a word's or base64url data's character right after it.
                .filter(|&len| !avail.get(len).is_some_and(|&b| wordish(b)));
            match key {
                Some(len) => {
                    self.write(&buf[cursor..at + lead], out);
                    self.found.push(&buf[at + lead..body_at + len]);
                    self.write(REDACTED.as_bytes(), out);
                    cursor = body_at + len;
                }
                None => {
                    self.write(&buf[cursor..at + 1], out);
                    cursor = at + 1;
                }
            }
        }
        let safe = match (held_from, end) {
            (Some(at), _) => at,
            (None, true) => buf.len(),
            (None, false) => buf.len().saturating_sub(LONGEST_PREFIX - 1).max(cursor),
        };
        self.write(&buf[cursor..safe], out);
        self.buf = buf;
        self.buf.drain(..safe);
        self.base += safe as u64;
    }

    /// How many bytes of `class` follow `body_at` in `buf` (at most [`CAP`]), and
    /// whether that is decided: a byte of another class ends them, or [`CAP`] are read.
    /// Undecided, the run reaches the end of what has come so far.
    fn class_run(&mut self, buf: &[u8], class: Class, body_at: usize) -> (usize, bool) {
        let abs = self.base + body_at as u64;
        let limit = (body_at + CAP).min(buf.len());
        let slot = &mut self.known[class as usize];
        let mut start = abs;
        let mut from = body_at;
        if let Some(k) = slot.filter(|k| k.start <= abs && abs <= k.stop) {
            if k.ended {
                let run = ((k.stop - abs) as usize).min(CAP);
                return (run, true);
            }
            start = k.start;
            from = ((k.stop - self.base) as usize).min(limit);
        }
        let found = buf[from..limit].iter().position(|&b| !class.has(b));
        #[cfg(test)]
        {
            self.examined += found.map_or(limit - from, |k| k + 1);
        }
        match found {
            Some(k) => {
                let stop = from + k;
                *slot = Some(Scanned {
                    start,
                    stop: self.base + stop as u64,
                    ended: true,
                });
                (stop - body_at, true)
            }
            None => {
                *slot = Some(Scanned {
                    start,
                    stop: self.base + limit as u64,
                    ended: false,
                });
                (limit - body_at, limit - body_at == CAP)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(data: &[u8], cut: usize) -> (String, Vec<String>) {
        let mut s = ShapeScrub::default();
        let mut out = Vec::new();
        for piece in data.chunks(cut) {
            s.feed(piece, &mut out);
        }
        s.finish(&mut out);
        (String::from_utf8(out).unwrap(), s.found.into_values())
    }

    const OPENAI: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
    const DEEPSEEK: &str = "sk-0123456789abcdef0123456789abcdef";
    const GOOGLE: &str = "AIzaSyD-0123456789abcdefghijklmnopqrstu";
    const GITHUB: &str = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
    const STRIPE: &str = "sk_live_51HqLyjWDarjtT1zdp7dcXmT";
    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLWJ5dGVz";

    #[test]
    fn keys_are_found_by_their_shape_wherever_they_stand_however_the_stream_is_cut() {
        // A shell tool's output carried in a model's next request, a login answer, prose.
        let body = format!(
            r#"{{"messages":[{{"role":"tool","content":"OPENAI_API_KEY={OPENAI}\nGITHUB_TOKEN={GITHUB}\nSTRIPE={STRIPE}\nDS={DEEPSEEK} G={GOOGLE}\n"}}],"token":"{JWT}","text":"Use {OPENAI}. Or {JWT}."}}"#
        );
        let want = r#"{"messages":[{"role":"tool","content":"OPENAI_API_KEY=[REDACTED]\nGITHUB_TOKEN=[REDACTED]\nSTRIPE=[REDACTED]\nDS=[REDACTED] G=[REDACTED]\n"}],"token":"[REDACTED]","text":"Use [REDACTED]. Or [REDACTED]."}"#;
        for cut in [1, 2, 3, 7, 16, 4096] {
            let (out, found) = scan(body.as_bytes(), cut);
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(
                found,
                [OPENAI, GITHUB, STRIPE, DEEPSEEK, GOOGLE, JWT],
                "cut {cut}"
            );
            // Read again, nothing changes.
            assert_eq!(scan(out.as_bytes(), cut).0, out);
        }
    }

    #[test]
    fn a_telegram_bot_token_loses_its_secret_and_keeps_the_bot_number() {
        const BOT: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
        let body = format!(
            r#"{{"content":"GET https://api.telegram.org/bot{BOT}/getMe -> ok\nTOKEN={BOT}"}}"#
        );
        let want = r#"{"content":"GET https://api.telegram.org/bot123456789:[REDACTED]/getMe -> ok\nTOKEN=123456789:[REDACTED]"}"#;
        for cut in [1, 2, 9, 10, 11, 4096] {
            let (out, found) = scan(body.as_bytes(), cut);
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(found, ["AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"], "cut {cut}");
            assert_eq!(scan(out.as_bytes(), cut).0, out);
        }
        // No bot number before it, a character more or less, a time of day: kept.
        for text in [
            "x :AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "1:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQQ",
            "1:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDs",
            "at 10:AA the meeting",
        ] {
            let (out, found) = scan(text.as_bytes(), 3);
            assert_eq!(out, text);
            assert!(found.is_empty(), "{text}: {found:?}");
        }
    }

    #[test]
    fn after_a_json_escape_a_key_starts_a_word() {
        for before in [r"\n", r"\t", r"\u003d", r#"\""#, " ", "=", "(", "'"] {
            let text = format!("x{before}{GITHUB} y");
            assert_eq!(scan(text.as_bytes(), 5).0, format!("x{before}[REDACTED] y"));
        }
        // An escaped backslash is a backslash: `\\n` then a word.
        let text = format!(r"x\\n{GITHUB}");
        assert_eq!(scan(text.as_bytes(), 5).0, text);
    }

    #[test]
    fn words_that_only_begin_like_a_key_are_kept() {
        for text in [
            // Mid-word, too short, prose after a prefix, not a JWT.
            "task-0123456789abcdefghijklmnop",
            "the ghp_short one",
            "sk-learn-is-a-python-library-for-ml",
            "eyJ0eXAiOiJKV1QifQ alone",
            "eyJhbGciOiJIUzI1NiJ9.notapayload.sig",
            "AIzaShortKey",
            "sk_live_",
            "SG.only-one-part-here-and-long-enough",
            // AWS access key ids are read back by the agent.
            "AKIAIOSFODNN7EXAMPLE",
            "[REDACTED]",
            // One character too many for a GitHub token or a Google key: base64 data.
            "x/ghp_16C7e42F292c6912E7710c838347Ae178B4aQ",
            "+AIzaSyD-0123456789abcdefghijklmnopqrstuv",
            // Dashes after `sk-` without a key's kind: base64url data, a slug.
            "_sk-a1b2-c3d4-e5f6-a7b8-c9d0-e1f2-a3b4-c5d6",
        ] {
            let (out, found) = scan(text.as_bytes(), 3);
            assert_eq!(out, text);
            assert!(found.is_empty(), "{text}: {found:?}");
        }
    }

    #[test]
    fn a_long_run_is_data_the_same_at_every_cut_and_read_once() {
        let long = format!("x {}{} y", "sk_live_", "A1".repeat(CAP));
        for cut in [1, 100, CAP - 1, CAP + 3, long.len()] {
            assert_eq!(scan(long.as_bytes(), cut).0, long, "cut {cut}");
        }
        // Prefixes packed in one run: each reads what the first read, not 8 KiB again
        // (a 1 MB page of them took seconds).
        let packed = "-eyJ".repeat(250_000);
        for cut in [1, 4096, packed.len()] {
            let mut s = ShapeScrub::default();
            let mut out = Vec::new();
            for piece in packed.as_bytes().chunks(cut) {
                s.feed(piece, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, packed.as_bytes());
            assert!(
                s.examined <= 2 * packed.len(),
                "cut {cut}: {} bytes read",
                s.examined
            );
        }
    }

    #[test]
    fn agents_tool_keys_and_form_escapes_are_found() {
        for key in [
            "sk-None-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
            "sk-lf-1c3b8a2e-4f5d-4e6a-9b7c-0d1e2f3a4b5c",
            "ya29.a0AfB_byC1d2E3f4G5h6I7j8K9l0MnOpQrStUv",
            "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",
            "tvly-dev-Ab3dEf6hIj9kLm2nOp5qRs8t",
            "pcsk_4x9Abc_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAbCdEf",
            "lsv2_pt_0123456789abcdef0123456789abcdef_0123456789",
            "e2b_0123456789abcdef0123456789abcdef01234567",
            "dapi0123456789abcdef0123456789abcdef",
            "fc-0123456789abcdef0123456789abcdef",
            "r8_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAbCdE",
            "sntrys_eyJpYXQiOjE3MDAwMDAwMDAuMCwidXJsIjoiaHR0cHM6Ly9zZW50cnkuaW8ifQ_AbCdEf0123456789",
        ] {
            let text = format!("KEY={key}\n");
            let (out, found) = scan(text.as_bytes(), 3);
            assert_eq!(
                (out.as_str(), found),
                ("KEY=[REDACTED]\n", vec![key.to_string()])
            );
        }
        // A form body escapes `=`, a line break and quotes.
        let form = "text=deployed%0AGITLAB_TOKEN%3Dglpat-Ab3dEf6hIj9kLm2nOp5q%22&x=1";
        assert_eq!(
            scan(form.as_bytes(), 4).0,
            "text=deployed%0AGITLAB_TOKEN%3D[REDACTED]%22&x=1"
        );
    }

    #[test]
    fn the_jwt_mask_is_the_jwt_format() {
        assert_eq!(JWT_MASK, mask(&["eyJ".to_string()]));
        assert_eq!(LONGEST_PREFIX, prefixes().map(str::len).max().unwrap());
    }

    #[test]
    fn a_key_shape_inside_base64url_data_is_data() {
        // OpenAI's reasoning `encrypted_content` (a Fernet token, base64url) that held
        // `_r8_` and 37 letters and digits, then a dash: read as a Replicate key before.
        let blob = "gAAAAABoQ-x1_r8_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAbCdE-Zz9_Yy8-AIzaSyD0123456789abcdefghijklmnopqrst_x";
        let (out, found) = scan(blob.as_bytes(), 5);
        assert_eq!(out, blob);
        assert!(found.is_empty(), "{found:?}");
    }
}
