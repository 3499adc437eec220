//! The secret values seen in one exchange, and their removal from any bytes.
//!
//! Named headers, query parameters and fields are redacted where they stand; their
//! values are also collected here, because an upstream may echo them anywhere (a
//! header, an error message, the middle of a streamed body). Every copy kept for disk
//! is scrubbed of them, as a whole or as it streams ([`LiteralStream`]).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use aho_corasick::{packed, AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Input, MatchKind};
use base64::Engine;

use crate::rules::REDACTED;

/// Shorter values are too likely to collide with ordinary text to be scrubbed blindly.
pub const MIN_SCRUB_LEN: usize = 8;
/// Longer values are not scrubbed literally (a stream holds back this many bytes).
pub const MAX_SCRUB_LEN: usize = 16 << 10;
/// A hostile request cannot grow the list without bound.
pub(super) const MAX_SECRETS: usize = 256;

/// Whether `v` is the redaction marker, a piece of it (`REDACTED`, `[REDACTE`), or holds
/// it (a value already redacted, `[REDACTED]\r\n--`): such a value is never scrubbed, or
/// scrubbing would rewrite the markers, and what follows them, and a stored body
/// redacted again (replay under other rules) would come out different.
pub(super) fn in_marker(v: &str) -> bool {
    REDACTED.contains(v) || v.contains(REDACTED)
}

/// The secret values seen in one exchange, to be scrubbed from what is stored of it.
#[derive(Default, Clone, Debug)]
pub struct Secrets {
    values: Vec<Vec<u8>>,
    /// Those of `values` that are not remembered by the session ([`Remembered`]): found
    /// inside a secret beside it (a database secret's host), a Basic credential's user
    /// name.
    local: Vec<Vec<u8>>,
    /// How many of `values`, first, the session remembered; `again`: which of those
    /// this exchange revealed again.
    seeded: usize,
    again: Vec<usize>,
    matcher: OnceLock<Option<Matcher>>,
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
                        // The user name is scrubbed from this exchange, not remembered:
                        // `alice@corp.example` turns up in later prompts, as itself;
                        // unless the password is too short to be one (Freshdesk's and
                        // Harvest's `KEY:X`): the user name is then the key.
                        self.push_as(user, pass.len() >= MIN_SCRUB_LEN);
                        self.push(pass);
                    }
                }
            }
        }
    }

    /// Adds a `cookie` header's values (`a=1; b=2`).
    pub fn add_cookies(&mut self, value: &str) {
        self.push(value.trim());
        for pair in value.split(';') {
            if let Some((_, v)) = pair.split_once('=') {
                self.push_cookie(v);
            }
        }
    }

    /// A cookie's value (its header is redacted whole either way): hunted through the
    /// exchange only when it holds a digit and a letter, as a session's token does, and
    /// remembered by the session only when also long enough to be one. `Europe/Berlin`,
    /// `dark-mode`, a consent flag are the agent's own data: the page that set them
    /// shows them and the agent's prompts carry them, and replay, whose client holds
    /// them redacted, cannot scrub them where record did (a request that missed).
    fn push_cookie(&mut self, v: &str) {
        let v = v.trim().trim_matches('"');
        if v.bytes().any(|b| b.is_ascii_digit()) && v.bytes().any(|b| b.is_ascii_alphabetic()) {
            self.push_as(v, v.len() < MIN_REMEMBERED_COOKIE);
        }
    }

    /// Adds a `set-cookie` line's value, not its attributes: a `Domain=127.0.0.1`, a
    /// `Path=/api/v1` or an `Expires` date are no secrets, and replaced in the answer's
    /// body they broke the links the agent follows.
    pub fn add_set_cookie(&mut self, value: &str) {
        let pair = value.split(';').next().unwrap_or("");
        if let Some((_, v)) = pair.split_once('=') {
            self.push_cookie(v);
        }
    }

    /// The values this exchange added to those the session remembered, but those not to
    /// remember.
    fn revealed(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.values[self.seeded..]
            .iter()
            .filter(|v| !self.local.contains(v))
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

    /// Adds values found inside a secret (see [`super::Collected`]): scrubbed from the
    /// exchange like the others, not remembered by the session.
    pub fn extend_leaves(&mut self, values: impl IntoIterator<Item = String>) {
        for v in values {
            self.push_as(&v, true);
        }
    }

    /// Adds what a body's redaction found, its leaves as [`Secrets::extend_leaves`] does.
    pub fn extend_found(&mut self, found: super::Collected) {
        let (values, leaves) = found.into_parts();
        self.extend(values);
        self.extend_leaves(leaves);
    }

    /// Adds a value, and the forms JSON serializers write it in where those differ: an
    /// upstream that echoes a key inside a JSON string escapes its `/`, `+`, quotes or
    /// non-ASCII characters as its serializer does (PHP `\/`, .NET `\u002B`, Python
    /// `\u00e9`), and the echo would otherwise be stored in clear.
    fn push(&mut self, v: &str) {
        self.push_as(v, false);
    }

    /// [`Secrets::push`]; `local`: the value is not remembered by the session. A value
    /// with bytes a URL escapes is also pushed percent-encoded, as a client writes it
    /// into a query or a path (`WaLDs+Ov=` as `WaLDs%2BOv%3D`).
    fn push_as(&mut self, v: &str, local: bool) {
        let v = v.trim();
        self.push_one(v, local);
        if !in_marker(v) {
            let encoded = percent_encoding::utf8_percent_encode(v, URL_ESCAPED);
            if let Cow::Owned(encoded) = Cow::from(encoded) {
                self.push_one(&encoded, local);
            }
        }
        if v.bytes()
            .any(|b| JSON_SPECIAL.contains(&b) || !(0x20..0x80).contains(&b))
        {
            for style in JsonStyle::ALL {
                let escaped = json_escaped(v, style);
                if escaped != v {
                    self.push_one(&escaped, local);
                }
            }
        }
    }

    fn push_one(&mut self, v: &str, local: bool) {
        if v.len() < MIN_SCRUB_LEN || v.len() > MAX_SCRUB_LEN || in_marker(v) {
            return;
        }
        if let Some(at) = self.values.iter().position(|x| x == v.as_bytes()) {
            // A value found inside a secret and also where it is a secret of its own
            // (a password under its name) is remembered.
            if !local {
                self.local.retain(|x| x != v.as_bytes());
                if at < self.seeded && !self.again.contains(&at) {
                    self.again.push(at);
                }
            }
            return;
        }
        if self.values.len() >= MAX_SECRETS {
            return;
        }
        self.values.push(v.as_bytes().to_vec());
        if local {
            self.local.push(v.as_bytes().to_vec());
        }
        self.matcher = OnceLock::new();
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether replacing a value may move a body's structure as the field redactors read
    /// it: a value holding a quote, a backslash, a line break, `<`, `>`, `&` or `=`.
    pub fn may_move_structure(&self) -> bool {
        self.values
            .iter()
            .any(|v| v.iter().any(|b| b"\"\\\n\r<>&=".contains(b)))
    }

    /// The longest value: how much a stream must hold back to catch one split in two.
    fn max_len(&self) -> usize {
        self.values.iter().map(Vec::len).max().unwrap_or(0)
    }

    fn matcher(&self) -> Option<&Matcher> {
        self.matcher
            .get_or_init(|| (!self.values.is_empty()).then(|| matcher_for(&self.values))?)
            .as_ref()
    }

    /// `data` with every secret value replaced; `None` when there was nothing to replace.
    pub fn scrub(&self, data: &[u8]) -> Option<Vec<u8>> {
        let m = self.matcher()?;
        m.find_at(data, 0)?;
        let mut out = Vec::with_capacity(data.len());
        m.replace_all(data, &mut out);
        Some(out)
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

/// The secret values a session has revealed so far, hunted in every later exchange of
/// it. A tool's answer names a password (`"password": …`, stored `[REDACTED]`) and the
/// agent's next request to the model carries it as text no name points at; a key sent
/// in one host's header turns up in another host's body.
///
/// Replay keeps one too, learning from the live requests it reads (it never sees what
/// the recorded answers revealed: they hold `[REDACTED]`), so the two are kept apart:
/// what requests revealed is remembered alike at record and at replay, and forgotten at
/// the same points; what only answers revealed is remembered at record alone, where an
/// agent that passes it on at replay passes the marker it was served. Such a value is
/// remembered only when it looks like a key ([`credential::looks_like_credential`]):
/// an agent may know it from elsewhere too and send it in clear at replay, where the
/// recording has `[REDACTED]`, and a dev database's `"password": "postgres"` must not
/// make "a postgres migration" in a later prompt such a request (it would miss).
#[derive(Default, Debug)]
pub struct Remembered {
    lists: std::sync::Mutex<Lists>,
    /// How many values were ever added to the lists: an exchange that saw this count
    /// when it began and sees it again when it is stored learned nothing late.
    added: std::sync::atomic::AtomicU64,
}

#[derive(Default, Debug)]
struct Lists {
    /// Revealed by requests, the most recently seen last.
    asked: Vec<Vec<u8>>,
    /// Revealed by answers only.
    answered: Vec<Vec<u8>>,
}

/// What a URL's component escapes: all but letters, digits and `-`, `_`, `.`, `~`.
const URL_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How many values each list keeps (the most recently seen; JSON-escaped forms count
/// apart), how long one may be (a key's longest: a signed token runs to one or two
/// KiB), and how many bytes all of a list's may take, a value over [`LONG_WEIGHS`]
/// counted as that many (two signed tokens take half, and do not push the short values
/// out): an exchange's set stays small enough for its matcher to be kept per thread
/// ([`KEPT_UP_TO`]).
const REMEMBERED: usize = 64;
const REMEMBERED_LEN: usize = crate::credential::MAX_KEY_LIKE;
const REMEMBERED_BYTES: usize = 1 << 10;
const LONG_WEIGHS: usize = 256;
/// Cookie values shorter than this are not remembered ([`Secrets::push_cookie`]).
const MIN_REMEMBERED_COOKIE: usize = 16;

impl Remembered {
    /// How many values the session has remembered so far, to read before
    /// [`Remembered::secrets`] and hand to [`Remembered::learned_since`].
    pub fn added(&self) -> u64 {
        self.added.load(std::sync::atomic::Ordering::Acquire)
    }

    /// What the session remembers now that `secrets` lacks, when it has remembered
    /// more since `added` ([`Remembered::added`]): values a concurrent exchange revealed
    /// while this one ran (one call sends a token under its name, another at the same
    /// moment carries it under none). Scrubbed from what is stored of this one, and added
    /// to `secrets` as values the session already remembers.
    pub fn learned_since(&self, added: u64, secrets: &mut Secrets) -> Option<Secrets> {
        if self.added() == added {
            return None;
        }
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        let mut late = Secrets::default();
        for v in lists.asked.iter().chain(&lists.answered) {
            if !secrets.values.contains(v) {
                if let Ok(v) = std::str::from_utf8(v) {
                    late.push_one(v, true);
                }
            }
        }
        drop(lists);
        if late.values.is_empty() {
            return None;
        }
        for v in &late.values {
            if let Ok(v) = std::str::from_utf8(v) {
                secrets.push_one(v, true);
            }
        }
        Some(late)
    }

    /// The secrets an exchange of the session starts with.
    pub fn secrets(&self) -> Secrets {
        let lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        let mut values = lists.asked.clone();
        for v in &lists.answered {
            if !values.contains(v) {
                values.push(v.clone());
            }
        }
        drop(lists);
        Secrets {
            seeded: values.len(),
            values,
            ..Secrets::default()
        }
    }

    /// Remembers what an exchange's request revealed (the values it added to those it
    /// started with, and those it started with that it carried again).
    pub fn learn_request(&self, secrets: &Secrets) {
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        let again = secrets.again.iter().map(|&i| &secrets.values[i]);
        for v in secrets.revealed().chain(again) {
            remember(&mut lists.asked, &self.added, v);
        }
        forget_past_limits(&mut lists.asked);
    }

    /// Remembers what the whole exchange revealed beyond its request (call
    /// [`Remembered::learn_request`] first), the values that look like keys.
    pub fn learn_answer(&self, secrets: &Secrets) {
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        let Lists { asked, answered } = &mut *lists;
        let key_like = |v: &&Vec<u8>| {
            std::str::from_utf8(v).is_ok_and(crate::credential::looks_like_credential)
        };
        for v in secrets.revealed().filter(key_like) {
            if !asked.contains(v) {
                remember(answered, &self.added, v);
            }
        }
        forget_past_limits(answered);
    }
}

/// Moves `v` to the end of `list`, or adds it there (counted in `added`).
fn remember(list: &mut Vec<Vec<u8>>, added: &std::sync::atomic::AtomicU64, v: &[u8]) {
    if v.len() > REMEMBERED_LEN {
        return;
    }
    match list.iter().position(|k| k == v) {
        Some(at) if at + 1 == list.len() => {}
        Some(at) => {
            let v = list.remove(at);
            list.push(v);
        }
        None => {
            list.push(v.to_vec());
            added.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
    }
}

/// Forgets the least recently seen values past [`REMEMBERED`] or [`REMEMBERED_BYTES`].
fn forget_past_limits(list: &mut Vec<Vec<u8>>) {
    let weight = |v: &Vec<u8>| v.len().min(LONG_WEIGHS);
    let mut bytes: usize = list.iter().map(weight).sum();
    let mut forget = 0;
    while list.len() - forget > REMEMBERED || bytes > REMEMBERED_BYTES {
        bytes -= weight(&list[forget]);
        forget += 1;
    }
    list.drain(..forget);
}

/// The secret values, to find in text that a body spreads over several pieces (a
/// streamed answer's tokens, one per server-sent event: see `sse`).
#[derive(Clone)]
pub(super) struct Finder {
    matcher: Matcher,
    values: Vec<Vec<u8>>,
    first: [bool; 256],
    longest: usize,
}

impl Secrets {
    pub(super) fn finder(&self) -> Option<Finder> {
        let matcher = self.matcher()?.clone();
        let mut first = [false; 256];
        for v in &self.values {
            first[v[0] as usize] = true;
        }
        Some(Finder {
            matcher,
            values: self.values.clone(),
            first,
            longest: self.max_len(),
        })
    }
}

impl Finder {
    /// The first value in `h` starting at or after `at`: its start and end.
    pub(super) fn find_at(&self, h: &[u8], at: usize) -> Option<(usize, usize)> {
        self.matcher.find_at(h, at)
    }

    /// Where the longest end of `h` that some value begins with (and is not whole)
    /// starts: `h.len()` when none does.
    pub(super) fn partial_from(&self, h: &[u8]) -> usize {
        let from = h.len().saturating_sub(self.longest.saturating_sub(1));
        (from..h.len())
            .find(|&p| {
                self.first[h[p] as usize]
                    && self
                        .values
                        .iter()
                        .any(|v| v.len() > h.len() - p && v.starts_with(&h[p..]))
            })
            .unwrap_or(h.len())
    }
}

/// Bytes some JSON serializer writes escaped (besides control and non-ASCII bytes).
const JSON_SPECIAL: &[u8] = b"\"\\/+<>&'`";

/// How serializers escape a string in JSON, beyond the quote, the backslash and control
/// characters that every one escapes.
#[derive(Clone, Copy)]
enum JsonStyle {
    /// serde_json, JavaScript's `JSON.stringify`: nothing more.
    Plain,
    /// PHP's `json_encode`: `/` as `\/`, non-ASCII as `\uxxxx`.
    Php,
    /// Python's `json.dumps`: non-ASCII as `\uxxxx`.
    Python,
    /// Go's `encoding/json`: `<`, `>`, `&`, U+2028 and U+2029 as `\u00xx`.
    Go,
    /// .NET's `System.Text.Json`: the quote, `&`, `'`, `+`, `<`, `>`, `` ` `` and
    /// non-ASCII as `\uXXXX` (upper case).
    DotNet,
    /// Every character some serializer escapes (those of .NET and `/`) as `\uxxxx`, in
    /// lower case and in upper case.
    AllLower,
    AllUpper,
}

impl JsonStyle {
    const ALL: [JsonStyle; 7] = [
        JsonStyle::Plain,
        JsonStyle::Php,
        JsonStyle::Python,
        JsonStyle::Go,
        JsonStyle::DotNet,
        JsonStyle::AllLower,
        JsonStyle::AllUpper,
    ];
}

/// `v` as the contents of a JSON string written in `style`.
fn json_escaped(v: &str, style: JsonStyle) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(v.len() + 8);
    let unit = |out: &mut String, u: u16, upper: bool| {
        let _ = match upper {
            true => write!(out, "\\u{u:04X}"),
            false => write!(out, "\\u{u:04x}"),
        };
    };
    let all = matches!(style, JsonStyle::AllLower | JsonStyle::AllUpper);
    // Escapes in upper-case hex.
    let upper = matches!(style, JsonStyle::DotNet | JsonStyle::AllUpper);
    for c in v.chars() {
        // .NET's set of escaped characters (the `All` styles escape them too).
        let dotnet = matches!(style, JsonStyle::DotNet) || all;
        match c {
            '/' if all => unit(&mut out, 0x2f, upper),
            '"' if dotnet => unit(&mut out, 0x22, upper),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => unit(&mut out, c as u16, upper),
            '/' if matches!(style, JsonStyle::Php) => out.push_str("\\/"),
            '<' | '>' | '&' if matches!(style, JsonStyle::Go) => unit(&mut out, c as u16, false),
            '\u{2028}' | '\u{2029}' if matches!(style, JsonStyle::Go) => {
                unit(&mut out, c as u16, false)
            }
            '&' | '\'' | '+' | '<' | '>' | '`' if dotnet => unit(&mut out, c as u16, upper),
            c if !c.is_ascii()
                && (dotnet || matches!(style, JsonStyle::Php | JsonStyle::Python)) =>
            {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    unit(&mut out, *u, upper);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// What finds the values, leftmost-longest (a value that contains another is replaced
/// whole). Teddy, aho-corasick's SIMD searcher for a few short literals, when it can be
/// built: it looks for the values' first bytes together, where the automaton's prefilter
/// looks for one rare byte of them and stops at every occurrence of it. An agent's key
/// gives two values (`Bearer sk-…` and `sk-…`) sharing their rare bytes: the automaton
/// stopped every 256 bytes of a binary body on average, and scrubbing took 40 % of the
/// recorder's time on 5 MB random bodies (`perf`, 2026-12-02).
#[derive(Clone, Debug)]
enum Matcher {
    Packed(Arc<packed::Searcher>),
    Automaton(AhoCorasick),
}

impl Matcher {
    fn build(values: &[&[u8]]) -> Option<Matcher> {
        let packed = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostLongest)
            .builder()
            .extend(values)
            .build();
        // Past a few KiB of values (signed tokens among them) a DFA would take megabytes
        // and is kept per thread: the contiguous NFA takes a few bytes a state.
        let large = values.iter().map(|v| v.len()).sum::<usize>() > DFA_UP_TO;
        match packed {
            Some(p) => Some(Matcher::Packed(Arc::new(p))),
            None => AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .kind(large.then_some(AhoCorasickKind::ContiguousNFA))
                .build(values)
                .ok()
                .map(Matcher::Automaton),
        }
    }

    /// The first value in `h` starting at or after `at`: its start and end.
    fn find_at(&self, h: &[u8], at: usize) -> Option<(usize, usize)> {
        if at >= h.len() {
            return None;
        }
        let m = match self {
            Matcher::Packed(p) => p.find_in(h, aho_corasick::Span::from(at..h.len()))?,
            Matcher::Automaton(ac) => ac.find(Input::new(h).span(at..h.len()))?,
        };
        Some((m.start(), m.end()))
    }

    /// Appends `h[from..]` to `out` up to the end of the last value that starts before
    /// `before`, every such value replaced; returns where it stopped (`from` when none).
    fn replace_before(&self, h: &[u8], from: usize, before: usize, out: &mut Vec<u8>) -> usize {
        let mut done = from;
        while let Some((start, end)) = self.find_at(h, done) {
            if start >= before {
                break;
            }
            out.extend_from_slice(&h[done..start]);
            out.extend_from_slice(REDACTED.as_bytes());
            done = end;
        }
        done
    }

    /// Appends `h` to `out` with every value replaced.
    fn replace_all(&self, h: &[u8], out: &mut Vec<u8>) {
        let done = self.replace_before(h, 0, h.len(), out);
        out.extend_from_slice(&h[done..]);
    }
}

/// Sets of values up to this long in all may be searched by a DFA ([`Matcher::build`]).
const DFA_UP_TO: usize = 4 << 10;

/// How many matchers each thread keeps for the sets of values it saw last.
const MATCHERS_KEPT: usize = 8;
/// Sets of values longer than this in all are not kept: keys and cookies are far shorter,
/// and a client sending many long values would otherwise leave large automata behind on
/// every thread. A session's memory with a signed token or two in each list (1 KiB a
/// list as counted, [`LONG_WEIGHS`]) and an exchange's own values fits.
const KEPT_UP_TO: usize = 24 << 10;

thread_local! {
    /// The matchers built for the last sets of values, most recent first, each beside its
    /// values in sorted order.
    static MATCHERS: std::cell::RefCell<Vec<(Vec<Vec<u8>>, Matcher)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A matcher for `values`, built once per thread for a set of values seen again: an agent
/// sends the same key with every request, and building the automaton (about 100 µs in
/// a release build for one bearer key) cost more than all the rest of recording an
/// exchange. The values stay in memory only, as they were while the exchange ran; sets
/// over [`KEPT_UP_TO`] bytes are built each time, as before.
/// `None` when the automaton cannot be built (too large: the values are then not
/// scrubbed literally, as before).
fn matcher_for(values: &[Vec<u8>]) -> Option<Matcher> {
    let mut sorted: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    // Which pattern matched is never asked (every one is replaced by the same marker),
    // and leftmost-longest matches do not depend on the patterns' order.
    sorted.sort_unstable();
    let same = |kept: &Vec<Vec<u8>>| {
        kept.len() == sorted.len() && kept.iter().zip(&sorted).all(|(k, v)| k == v)
    };
    // Leftmost-longest: a secret that contains another is replaced whole.
    let build = Matcher::build;
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
    matcher: Option<Matcher>,
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
        let Some(m) = &self.matcher else {
            out.extend_from_slice(data);
            return;
        };
        let hold = self.hold;
        if data.len() < hold {
            self.buf.extend_from_slice(data);
            // Every value starting before `safe` lies wholly inside the buffer.
            let safe = self.buf.len().saturating_sub(hold);
            let done = m.replace_before(&self.buf, 0, safe, out);
            let cut = done.max(safe);
            out.extend_from_slice(&self.buf[done..cut]);
            self.buf.drain(..cut);
            return;
        }
        // A piece at least as long as what is held back is searched where it is, not
        // copied behind the held bytes first (a 5 MB body went through three copies, 11 %
        // of the recorder's time): the held bytes with the piece's first `hold` bytes (a
        // value starting among them ends there), then the rest of the piece alone. The
        // output is the same as the short path's.
        let held = self.buf.len();
        let mut resume = 0;
        if held > 0 {
            self.buf.extend_from_slice(&data[..hold]);
            let done = m.replace_before(&self.buf, 0, held, out);
            if done < held {
                out.extend_from_slice(&self.buf[done..held]);
            }
            resume = done.saturating_sub(held);
            self.buf.clear();
        }
        // Every value starting before `safe` lies wholly inside the piece.
        let safe = data.len() - hold;
        let done = m.replace_before(data, resume, safe, out);
        let cut = done.max(safe);
        out.extend_from_slice(&data[done..cut]);
        self.buf.extend_from_slice(&data[cut..]);
    }

    pub fn finish(self, out: &mut Vec<u8>) {
        match &self.matcher {
            Some(m) => m.replace_all(&self.buf, out),
            None => out.extend_from_slice(&self.buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_a_client_percent_encodes_into_a_url_is_found() {
        let mut s = Secrets::default();
        s.add("WaLDs+Ov+wPJpY5fKdUH9jbckZdlCjmmekwMJdD=");
        let url = b"https://a.test/check/WaLDs%2BOv%2BwPJpY5fKdUH9jbckZdlCjmmekwMJdD%3D?t=WaLDs%2BOv%2BwPJpY5fKdUH9jbckZdlCjmmekwMJdD%3D";
        assert_eq!(
            String::from_utf8(s.scrub(url).unwrap()).unwrap(),
            "https://a.test/check/[REDACTED]?t=[REDACTED]"
        );
    }

    /// A value that holds the marker (a multipart field already redacted, read up to a
    /// line that only looked like its delimiter) is not scrubbed: it ate the real
    /// delimiter after the marker, so the stored body redacted again came out different
    /// (found by the `canonical_key` fuzz target).
    #[test]
    fn a_value_holding_the_marker_is_not_scrubbed() {
        let mut s = Secrets::default();
        s.add("[REDACTED]\r\n----------");
        assert!(s.is_empty());
        let body = "[REDACTED]\r\n------------boundary--\r\n";
        assert!(s.scrub(body.as_bytes()).is_none());
    }

    /// A session remembers what its exchanges revealed, not what was found inside a
    /// secret beside it (a host the agent may know from elsewhere) nor a Basic
    /// credential's user name, and forgets the least recently seen values past its
    /// limits.
    #[test]
    fn a_session_remembers_secrets_not_their_neighbours_and_forgets_the_oldest() {
        let session = Remembered::default();
        let mut first = session.secrets();
        assert!(first.is_empty());
        first.add("Bearer tok-0123456789abcdef");
        first.add("Basic YWxpY2VAY29ycC5leGFtcGxlOnB3LVNlY3JldC05OQ==");
        first.extend_leaves(["db.internal.example".to_string()]);
        // A leaf also found where it is a secret of its own is remembered.
        first.extend_leaves(["pw-leaf-and-named-1".to_string()]);
        first.extend(["pw-leaf-and-named-1".to_string()]);
        assert!(first.scrub(b"alice@corp.example").is_some());
        session.learn_request(&first);
        session.learn_answer(&first);
        let next = session.secrets();
        let text = b"tok-0123456789abcdef at db.internal.example pw-leaf-and-named-1 pw-Secret-99 alice@corp.example";
        assert_eq!(
            String::from_utf8(next.scrub(text).unwrap()).unwrap(),
            "[REDACTED] at db.internal.example [REDACTED] [REDACTED] alice@corp.example"
        );
        // The API key, sent with every request, outlives a hundred one-off tokens.
        for i in 0..100 {
            let mut s = session.secrets();
            s.add(&format!("one-off-token-{i:04}"));
            s.add("tok-0123456789abcdef");
            session.learn_request(&s);
        }
        let last = session.secrets();
        assert!(last.values.len() <= 2 * REMEMBERED);
        assert!(last.scrub(b"tok-0123456789abcdef").is_some());
        assert!(last.scrub(b"one-off-token-0099").is_some());
        assert!(last.scrub(b"one-off-token-0000").is_none());
    }

    /// An exchange that began before another revealed a value gets it when it is
    /// stored: as a value of its own to scrub, not one it revealed (it is not
    /// remembered again); one that began after, or with nothing new since, gets nothing.
    #[test]
    fn what_a_concurrent_exchange_revealed_is_handed_to_one_still_running() {
        let session = Remembered::default();
        let mut known = session.secrets();
        known.add("Bearer tok-0123456789abcdef");
        session.learn_request(&known);
        // B begins; A then sends a token under its name.
        let b_began = session.added();
        let mut b = session.secrets();
        let mut a = session.secrets();
        a.extend(["UpLd-7f3Kq9ZxW2mNvB8rT4yH6jP".to_string()]);
        session.learn_request(&a);
        let late = session.learned_since(b_began, &mut b).unwrap();
        assert_eq!(
            String::from_utf8(
                late.scrub(b"ref=UpLd-7f3Kq9ZxW2mNvB8rT4yH6jP tok-0123456789abcdef")
                    .unwrap()
            )
            .unwrap(),
            "ref=[REDACTED] tok-0123456789abcdef"
        );
        assert!(b.scrub(b"UpLd-7f3Kq9ZxW2mNvB8rT4yH6jP").is_some());
        assert_eq!(b.revealed().count(), 0);
        // Asked again, nothing more; an exchange that began after A learned nothing late.
        assert!(session.learned_since(b_began, &mut b).is_none());
        let mut c = session.secrets();
        assert!(session.learned_since(session.added(), &mut c).is_none());
        // Seeing a remembered value again is no news.
        let again = session.added();
        session.learn_request(&a);
        assert_eq!(session.added(), again);
    }

    /// What answers revealed is kept apart from what requests revealed: replay never
    /// learns it, so it must not push a request's value out of the memory at record
    /// alone (and a value that does not look like a key is not remembered from an
    /// answer at all: `"password": "postgres"`).
    #[test]
    fn what_answers_reveal_never_pushes_out_what_requests_revealed() {
        let session = Remembered::default();
        let mut login = session.secrets();
        login.add("hunter2-Sup3r-login");
        session.learn_request(&login);
        for i in 0..5 {
            login.extend([format!("{i}{}", "T".repeat(450))]);
        }
        login.extend(["postgres".to_string()]);
        session.learn_answer(&login);
        let next = session.secrets();
        assert!(next.scrub(b"hunter2-Sup3r-login").is_some());
        assert!(next
            .scrub(format!("4{}", "T".repeat(450)).as_bytes())
            .is_some());
        // Not a value that does not look like a key: the agent may use the word too.
        assert!(next.scrub(b"a postgres migration").is_none());
        let bytes = |list: &[Vec<u8>]| list.iter().map(|v| v.len().min(LONG_WEIGHS)).sum::<usize>();
        let lists = session.lists.lock().unwrap();
        assert!(bytes(&lists.answered) <= REMEMBERED_BYTES);
        assert!(lists.answered.iter().all(|v| v.len() <= REMEMBERED_LEN));
    }

    /// A signed token of a KiB or two is remembered, and does not push out the short
    /// values remembered before it; one past the longest key is not remembered.
    #[test]
    fn a_long_token_is_remembered_beside_the_short_values() {
        let session = Remembered::default();
        let mut s = session.secrets();
        let short: Vec<String> = (0..8).map(|i| format!("Sh0rt-Key-{i}-Qz8Xw2Lm")).collect();
        s.extend(short.clone());
        session.learn_request(&s);
        let long = |c: &str, n: usize| format!("eyJ{}.Sg9_Kx2-Pq7", c.repeat(n));
        let (a, b, past) = (long("Ab1", 500), long("Cd2", 600), long("Ef3", 1400));
        let mut s = session.secrets();
        s.extend([a.clone(), b.clone(), past.clone()]);
        session.learn_request(&s);
        let next = session.secrets();
        for v in short.iter().chain([&a, &b]) {
            assert_eq!(
                next.scrub_str(&format!("<{v}>")),
                "<[REDACTED]>",
                "{}",
                &v[..20]
            );
        }
        assert!(next.scrub(past.as_bytes()).is_none());
    }

    /// A `set-cookie` line's attributes are not secrets: `Domain=127.0.0.1` replaced in
    /// the answer's body broke the links in it.
    #[test]
    fn a_set_cookie_line_reveals_its_value_not_its_attributes() {
        let mut s = Secrets::default();
        s.add_set_cookie("sessionid=sess-0123456789abcdef; Domain=127.0.0.1; Path=/api/v1/items; Max-Age=31536000; Expires=Wed, 21 Oct 2026 07:28:00 GMT");
        let body = b"sess-0123456789abcdef http://127.0.0.1:8080/api/v1/items 31536000";
        assert_eq!(
            String::from_utf8(s.scrub(body).unwrap()).unwrap(),
            "[REDACTED] http://127.0.0.1:8080/api/v1/items 31536000"
        );
    }

    /// A key echoed inside a JSON string is found however the upstream's serializer
    /// escaped it: PHP's `\/`, .NET's `\u002B`, Python's `\u00e9`, Go's `\u0026`.
    #[test]
    fn a_secret_echoed_in_json_is_found_however_the_serializer_escaped_it() {
        let key = "aws/Secret+Key&pw=\"é\"\nend";
        let mut s = Secrets::default();
        s.add(key);
        let echoes = [
            r#"{"echo":"aws\/Secret+Key&pw=\"\u00e9\"\nend"}"#,
            r#"{"echo":"aws/Secret\u002BKey\u0026pw=\u0022\u00E9\u0022\nend"}"#,
            r#"{"echo":"aws/Secret+Key&pw=\"\u00e9\"\nend"}"#,
            r#"{"echo":"aws/Secret+Key\u0026pw=\"é\"\nend"}"#,
            r#"{"echo":"aws/Secret+Key&pw=\"é\"\nend"}"#,
            r#"{"echo":"aws\u002fSecret\u002bKey\u0026pw=\u0022\u00e9\u0022\nend"}"#,
            r#"{"echo":"aws\u002FSecret\u002BKey\u0026pw=\u0022\u00E9\u0022\nend"}"#,
        ];
        for echo in echoes {
            // Each echo is what that serializer writes for the key.
            let v: serde_json::Value = serde_json::from_str(echo).unwrap();
            assert_eq!(v["echo"], key, "{echo}");
            let out = String::from_utf8(s.scrub(echo.as_bytes()).expect(echo)).unwrap();
            assert_eq!(out, r#"{"echo":"[REDACTED]"}"#, "{echo}");
        }
        // A value with nothing to escape adds no other form.
        let mut plain = Secrets::default();
        plain.add("sk-plain-0123456789");
        assert_eq!(plain.values.len(), 1);
    }

    fn secrets(values: &[&str]) -> Secrets {
        let mut s = Secrets::default();
        for v in values {
            s.add(v);
        }
        s
    }

    /// A small deterministic generator for the randomized tests.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
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
    fn teddy_and_the_automaton_find_the_same_values_in_binary_and_text() {
        // Values that share their rare bytes and contain one another, as an agent's key
        // gives, planted in random bytes (a 5 MB download) and in JSON at random places.
        let values: Vec<&[u8]> = vec![
            b"Bearer sk-bench-0123456789abcdef",
            b"sk-bench-0123456789abcdef",
            b"sk-bench-0123456789abcdef-more",
            b"cookie-value-abcdefgh",
        ];
        let packed = Matcher::build(&values).unwrap();
        assert!(matches!(packed, Matcher::Packed(_)), "Teddy is built here");
        let automaton = Matcher::Automaton(
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&values)
                .unwrap(),
        );
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        for round in 0..40 {
            let mut h: Vec<u8> = if round % 2 == 0 {
                (0..64 << 10).map(|_| next() as u8).collect()
            } else {
                br#"{"role":"user","content":"sk-bench- and Bearer s"}"#.repeat(1500)
            };
            for _ in 0..(next() % 20) {
                let v = values[next() as usize % values.len()];
                let at = next() as usize % (h.len() - v.len());
                h[at..at + v.len()].copy_from_slice(v);
            }
            let scrub = |m: &Matcher| {
                let mut out = Vec::new();
                m.replace_all(&h, &mut out);
                out
            };
            let (a, b) = (scrub(&packed), scrub(&automaton));
            assert!(a == b, "round {round}: the two searchers disagree");
            assert!(
                memchr::memmem::find(&a, b"sk-bench-0123").is_none(),
                "round {round}"
            );
        }
    }

    #[test]
    fn any_cuts_give_the_whole_body_s_scrub() {
        let s = secrets(&[
            "Bearer sk-bench-0123456789abcdef",
            "cookie-value-abcdefgh-and-more-of-it",
        ]);
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        let values: [&[u8]; 3] = [
            b"Bearer sk-bench-0123456789abcdef",
            b"sk-bench-0123456789abcdef",
            b"cookie-value-abcdefgh-and-more-of-it",
        ];
        for round in 0..200 {
            let mut data: Vec<u8> = (0..(next() % 5000) as usize)
                .map(|_| next() as u8)
                .collect();
            for _ in 0..(next() % 12) {
                let v = values[next() as usize % values.len()];
                if data.len() > v.len() {
                    let at = next() as usize % (data.len() - v.len());
                    data[at..at + v.len()].copy_from_slice(v);
                }
            }
            // Values back to back, and one cut anywhere.
            data.extend_from_slice(b"sk-bench-0123456789abcdefsk-bench-0123456789abcdef");
            let whole = s.scrub(&data).unwrap_or_else(|| data.clone());
            let mut st = s.stream();
            let mut out = Vec::new();
            let mut at = 0;
            while at < data.len() {
                // Short and long pieces mixed: both paths of `feed`, and the seam between.
                let n = match next() % 3 {
                    0 => (next() % 40) as usize,
                    1 => (next() % 200) as usize,
                    _ => (next() % 3000) as usize,
                }
                .min(data.len() - at);
                st.feed(&data[at..at + n], &mut out);
                at += n;
            }
            st.finish(&mut out);
            assert!(
                out == whole,
                "round {round}: a streamed scrub differs from the whole one"
            );
        }
        // The longest value across every seam: two pieces cut at each place around it.
        let v = values[2];
        let mut data = vec![b'x'; 300];
        data[100..100 + v.len()].copy_from_slice(v);
        for cut in 1..data.len() {
            for from in [0, cut.saturating_sub(5)] {
                let d = [&data[from..cut], &data[cut..]].concat();
                let mut st = s.stream();
                let mut out = Vec::new();
                st.feed(&data[from..cut], &mut out);
                st.feed(&data[cut..], &mut out);
                st.finish(&mut out);
                assert!(
                    out == s.scrub(&d).unwrap_or_else(|| d.clone()),
                    "cut at {cut}, the first piece from {from}"
                );
            }
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
        // Nor is a value that holds it (see the test below).
        let s = secrets(&["[REDACTED]x"]);
        assert!(s.is_empty());
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

    /// A cookie of the agent's own data (its time zone, its theme) is not hunted: the
    /// page that set it shows it, the agent's prompt carries it, and replay, whose
    /// client holds it redacted, could not scrub it where record did.
    #[test]
    fn data_cookies_are_not_hunted_through_the_exchange() {
        let mut s = Secrets::default();
        s.add_set_cookie("tz=Europe/Berlin; Path=/");
        s.add_set_cookie("theme=dark-mode; Path=/");
        s.add_set_cookie("cart_id=8f14e45f-ceea-467f-a1e2-0b6f1c1d9c2a; Path=/");
        s.add_cookies("lang=en-US; sid=ab12cd34ef");
        assert_eq!(
            s.scrub_str("Your timezone: Europe/Berlin, dark-mode, en-US; cart 8f14e45f-ceea-467f-a1e2-0b6f1c1d9c2a, sid ab12cd34ef"),
            "Your timezone: Europe/Berlin, dark-mode, en-US; cart [REDACTED], sid [REDACTED]"
        );
        // A short one with a digit and a letter is hunted here, not remembered (the
        // `cookie` line is, whole).
        let remembered: Vec<&[u8]> = s.revealed().map(Vec::as_slice).collect();
        assert_eq!(
            remembered,
            [
                b"8f14e45f-ceea-467f-a1e2-0b6f1c1d9c2a".as_slice(),
                b"lang=en-US; sid=ab12cd34ef",
                b"lang%3Den-US%3B%20sid%3Dab12cd34ef"
            ]
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
        let long: Vec<String> = (0..3).map(|i| format!("{i}{}", "x".repeat(9000))).collect();
        let s = secrets(&long.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(s.scrub_str(&format!("a {} b", long[1])), "a [REDACTED] b");
        let after: Vec<Vec<Vec<u8>>> =
            MATCHERS.with(|m| m.borrow().iter().map(|(k, _)| k.clone()).collect());
        assert_eq!(before, after);
    }

    /// Many values, a few KiB in all (a session's memory with signed tokens): searched
    /// by the contiguous NFA, not a DFA of megabytes, and found all the same.
    #[test]
    fn many_long_values_are_searched_without_a_dfa() {
        let values: Vec<String> = (0..80)
            .map(|i| format!("{i:03}-{}", "Qz8".repeat(40)))
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        match Matcher::build(&refs) {
            Some(Matcher::Automaton(ac)) => assert_eq!(ac.kind(), AhoCorasickKind::ContiguousNFA),
            other => panic!("{other:?}"),
        }
        let few: Vec<&[u8]> = refs[..80].iter().map(|v| &v[..20]).collect();
        match Matcher::build(&few) {
            Some(Matcher::Automaton(ac)) => assert_eq!(ac.kind(), AhoCorasickKind::DFA),
            other => panic!("{other:?}"),
        }
        let s = secrets(&values.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            s.scrub_str(&format!("a {} b", values[41])),
            "a [REDACTED] b"
        );
    }
}
