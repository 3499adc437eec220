//! Secrets split across server-sent events.
//!
//! A model that repeats a key streams it a few characters an event:
//! `data: {"choices":[{"delta":{"content":"sk-pro"}}]}`, then `…"content":"j-4f9…"…`.
//! No run of the body's bytes holds the key, so the literal scrub cannot see it. This
//! stage reads each `data:` line's JSON strings, decoded, as text that goes on from the
//! strings at the same place (`choices[0].delta.content`) in the events before it; a
//! `data:` line that is not JSON goes on from the data lines before it that were not
//! either. Each piece of a secret found in that text is replaced with the marker in
//! every event it spans. A line is held back only while the text ending in it could
//! still be the start of a secret, so the output does not depend on how the input was
//! cut.

use std::collections::{HashMap, VecDeque};

use super::secrets::Finder;
use crate::rules::REDACTED;

/// A longer line (a `data:` line of several MB is no token stream) is passed through as
/// it comes, for the literal scrub alone; it ends every text read so far.
const MAX_LINE: usize = 1 << 20;
/// Places whose text could be the start of a secret, at most (a hostile body could make
/// every string of a huge array one): past it, the place waiting longest gives up its
/// text.
const MAX_PLACES: usize = 256;
/// The most bytes of lines held back: past it, the places waiting longest give up their
/// text (a string that ends in a secret's first letters, never followed at its place,
/// held every line after it until the stream ended).
const MAX_HELD: usize = 2 << 20;

/// Where a streamed JSON array stands (see [`SseSplit::json_array`]).
#[derive(Default)]
struct Elements {
    /// 1 inside the array, more inside an element.
    depth: usize,
    in_str: bool,
    /// The byte before was a backslash in a string.
    esc: bool,
    /// The array has ended.
    closed: bool,
}

/// Where one decoded byte came from: a held line and the raw bytes in it.
#[derive(Clone, Copy, Debug)]
struct Spot {
    line: u64,
    start: u32,
    end: u32,
    /// An integer standing for the byte (a token's bytes in `logprobs`), not text.
    number: bool,
}

/// Decoded text, each byte beside where it came from.
#[derive(Default, Debug)]
struct Text {
    bytes: Vec<u8>,
    at: Vec<Spot>,
}

impl Text {
    fn push(&mut self, bytes: &[u8], spot: Spot) {
        self.bytes.extend_from_slice(bytes);
        self.at.extend(std::iter::repeat_n(spot, bytes.len()));
    }
}

/// Where released lines go: a body's byte stream, or a list (a WebSocket's messages).
trait Lines {
    fn put(&mut self, line: &[u8]);
}

impl Lines for Vec<u8> {
    fn put(&mut self, line: &[u8]) {
        self.extend_from_slice(line);
    }
}

impl Lines for Vec<Vec<u8>> {
    fn put(&mut self, line: &[u8]) {
        self.push(line.to_vec());
    }
}

/// A line read and not yet written, with the raw ranges to replace.
struct Line {
    raw: Vec<u8>,
    /// Start, end, and whether the range is an integer (see [`Spot::number`]).
    cuts: Vec<(u32, u32, bool)>,
}

pub(super) struct SseSplit {
    finder: Finder,
    /// Each line is a JSON value (NDJSON, JSON Lines: Ollama's stream), not an event's
    /// `data:` field.
    lines: bool,
    /// The body came without a content type: read as an event stream only if its first
    /// line is an event stream's (`off` otherwise).
    sniff: bool,
    /// Not an event stream after all: everything passes as it comes.
    off: bool,
    /// The body is one JSON array whose elements are the lines (see [`Elements`]).
    array: Option<Elements>,
    /// The line being read.
    line: Vec<u8>,
    /// The line being read is over [`MAX_LINE`]: passed through up to its end.
    long: bool,
    /// The last byte read was a CR that ended a line: a LF next belongs to it.
    lf_joins: bool,
    /// And that line was passed through (see `long`).
    long_cr: bool,
    held: VecDeque<Line>,
    /// The bytes of `held`.
    held_bytes: usize,
    /// The number of `held[0]`.
    first: u64,
    /// The number the line being read will have.
    next: u64,
    /// Each place's text that could be the start of a secret.
    places: HashMap<Vec<u8>, Text>,
}

impl SseSplit {
    /// `lines`: each line a JSON value (see [`SseSplit::lines`]).
    pub(super) fn new(finder: Finder, lines: bool) -> SseSplit {
        SseSplit {
            finder,
            lines,
            sniff: false,
            off: false,
            array: None,
            line: Vec::new(),
            long: false,
            lf_joins: false,
            long_cr: false,
            held: VecDeque::new(),
            held_bytes: 0,
            first: 0,
            next: 0,
            places: HashMap::new(),
        }
    }

    pub(super) fn held(&self) -> usize {
        self.line.len() + self.held.iter().map(|l| l.raw.len()).sum::<usize>()
    }

    /// For a body without a content type: an event stream if its first line is one
    /// (a field of the format, or a comment), else passed through.
    pub(super) fn sniffing(mut self) -> SseSplit {
        self.sniff = true;
        self
    }

    /// For a JSON body: one array streamed an element at a time (Gemini's
    /// `streamGenerateContent` without `alt=sse`), each element read as a line of JSON
    /// lines is; a body that is not an array passes through.
    pub(super) fn json_array(finder: Finder) -> SseSplit {
        let mut s = SseSplit::new(finder, true);
        s.array = Some(Elements::default());
        s
    }

    /// Lines end at a LF, a CR, or a CR LF (as the event stream format has it).
    pub(super) fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.array.is_some() {
            self.feed_array(data, out);
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            if self.off {
                out.extend_from_slice(rest);
                return;
            }
            if std::mem::take(&mut self.lf_joins) && rest[0] == b'\n' {
                // The LF of a CR LF cut between two pieces.
                rest = &rest[1..];
                if self.long_cr {
                    out.push(b'\n');
                } else if self.line.len() + 1 > MAX_LINE {
                    // Its LF makes it too long, as it would have read whole.
                    self.release_all(out);
                    out.extend_from_slice(&std::mem::take(&mut self.line));
                    out.push(b'\n');
                } else {
                    self.line.push(b'\n');
                    self.end_held_line(out);
                }
                self.long_cr = false;
                continue;
            }
            if !self.long_cr && !self.line.is_empty() && self.line.ends_with(b"\r") {
                // A CR that ended its line, no LF after it. Read again from the top: that
                // line may have been the first, which says the body is no event stream
                // (`off`), and the rest then goes out after it, not held behind it.
                self.end_held_line(out);
                continue;
            }
            self.long_cr = false;
            let end = memchr::memchr2(b'\n', b'\r', rest);
            // How much of `rest` is this line's, and whether it ends there for sure (a CR
            // last in `rest` may be the start of a CR LF).
            let (n, ends) = match end {
                Some(i) if rest[i] == b'\n' => (i + 1, true),
                Some(i) if i + 1 < rest.len() => (i + 1 + usize::from(rest[i + 1] == b'\n'), true),
                Some(i) => (i + 1, false),
                None => (rest.len(), false),
            };
            let cr_last = end.is_some() && !ends;
            if self.long {
                out.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                self.long = end.is_none();
                self.lf_joins = cr_last;
                self.long_cr = cr_last;
                continue;
            }
            if self.line.len() + n > MAX_LINE {
                // Too long to be a token's event: everything read so far goes out as it
                // is cut now, and this line after it, untouched.
                self.release_all(out);
                out.extend_from_slice(&std::mem::take(&mut self.line));
                out.extend_from_slice(&rest[..n]);
                self.long = end.is_none();
                self.lf_joins = cr_last;
                self.long_cr = cr_last;
                rest = &rest[n..];
                continue;
            }
            if !ends {
                self.line.extend_from_slice(&rest[..n]);
                self.lf_joins = cr_last;
                rest = &rest[n..];
                continue;
            }
            if self.line.is_empty() {
                self.end_line(&rest[..n], out);
            } else {
                self.line.extend_from_slice(&rest[..n]);
                self.end_held_line(out);
            }
            rest = &rest[n..];
        }
    }

    /// Ends the line read so far in `self.line`.
    fn end_held_line(&mut self, out: &mut Vec<u8>) {
        self.end_held_unit(true, out);
    }

    /// Ends what `self.line` holds: a line, or an array's element (`value`) or the
    /// bytes between two.
    fn end_held_unit(&mut self, value: bool, out: &mut Vec<u8>) {
        let mut line = std::mem::take(&mut self.line);
        self.end_unit(&line, value, out);
        line.clear();
        self.line = line;
    }

    /// [`SseSplit::feed`] for a JSON array: its elements are cut apart, with the bytes
    /// between them (`[`, `,`, `]` and white space) as units of their own that add no
    /// text. An element over [`MAX_LINE`] passes through as a long line does.
    fn feed_array(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut start = 0;
        let mut i = 0;
        while i < data.len() {
            if self.off {
                break;
            }
            let at = self.array.as_mut().expect("an array");
            // Where a unit ends, and whether it is an element.
            let mut end = None;
            if at.in_str {
                if at.esc {
                    at.esc = false;
                    i += 1;
                } else if let Some(k) = memchr::memchr2(b'"', b'\\', &data[i..]) {
                    i += k;
                    if data[i] == b'\\' {
                        at.esc = true;
                    } else {
                        at.in_str = false;
                        // A string that is an element of its own.
                        if at.depth == 1 {
                            end = Some(true);
                        }
                    }
                    i += 1;
                } else {
                    i = data.len();
                }
            } else {
                let b = data[i];
                i += 1;
                match b {
                    b'"' => at.in_str = true,
                    b'[' | b'{' if at.depth > 0 => at.depth += 1,
                    b'[' => {
                        at.depth = 1;
                        end = Some(false);
                    }
                    b']' | b'}' if at.depth > 0 => {
                        at.depth -= 1;
                        match at.depth {
                            1 => end = Some(true),
                            0 => {
                                at.closed = true;
                                end = Some(false);
                            }
                            _ => {}
                        }
                    }
                    b',' if at.depth == 1 => end = Some(false),
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    // A byte order mark may come first.
                    0xEF | 0xBB | 0xBF if at.depth == 0 => {}
                    _ if at.depth == 0 => {
                        // Not an array (or something after its end): as it comes.
                        self.release_all(out);
                        out.extend_from_slice(&std::mem::take(&mut self.line));
                        self.off = true;
                        break;
                    }
                    _ => {}
                }
            }
            let Some(value) = end else {
                continue;
            };
            let unit = &data[start..i];
            start = i;
            if self.long {
                out.extend_from_slice(unit);
                self.long = false;
            } else if self.line.len() + unit.len() > MAX_LINE {
                self.release_all(out);
                out.extend_from_slice(&std::mem::take(&mut self.line));
                out.extend_from_slice(unit);
            } else if self.line.is_empty() {
                self.end_unit(unit, value, out);
            } else {
                self.line.extend_from_slice(unit);
                self.end_held_unit(value, out);
            }
            if self.array.as_ref().is_some_and(|a| a.closed) {
                // The array's end: whatever follows passes as it comes.
                self.release_all(out);
                self.off = true;
            }
        }
        let rest = &data[start..];
        if self.off || self.long {
            out.extend_from_slice(rest);
        } else if self.line.len() + rest.len() > MAX_LINE {
            // Too long to be a token's chunk: what was read goes out as it is cut now,
            // and the rest of this element untouched.
            self.release_all(out);
            out.extend_from_slice(&std::mem::take(&mut self.line));
            out.extend_from_slice(rest);
            self.long = true;
        } else {
            self.line.extend_from_slice(rest);
        }
    }

    pub(super) fn finish(mut self, out: &mut Vec<u8>) {
        if !self.line.is_empty() {
            self.end_held_line(out);
        }
        self.release_all(out);
    }

    fn end_line(&mut self, raw: &[u8], out: &mut dyn Lines) {
        self.end_unit(raw, true, out);
    }

    /// Ends a line (or an array's unit: `value` when it is an element, see
    /// [`SseSplit::feed_array`]).
    fn end_unit(&mut self, raw: &[u8], value: bool, out: &mut dyn Lines) {
        let number = self.next;
        if self.sniff && number == 0 {
            let first = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
            let fields: [&[u8]; 5] = [b"data:", b"event:", b"id:", b"retry:", b":"];
            self.off = !fields.iter().any(|f| first.starts_with(f));
        }
        self.next += 1;
        // Most strings need nothing: no text waits at a place that could be theirs (one
        // whose last step is theirs), and this one neither ends in the start of a secret
        // nor hides one behind escapes (a secret whole in it is the byte scrub's). Those
        // are not decoded, nor their places spelled out.
        let finder = &self.finder;
        let places = &self.places;
        let want = |s: &[u8], step: &[u8]| {
            memchr::memchr(b'\\', s).is_some()
                || finder.partial_from(s) < s.len()
                || places.keys().any(|p| p.ends_with(step))
        };
        let pieces = if value {
            pieces(raw, number, self.lines, &want)
        } else {
            Vec::new()
        };
        if pieces.is_empty() && self.held.is_empty() {
            // Nothing waits, nothing begins: the line goes out as it came.
            out.put(raw);
            self.first = self.next;
            return;
        }
        self.held.push_back(Line {
            raw: raw.to_vec(),
            cuts: Vec::new(),
        });
        self.held_bytes += raw.len();
        for (place, piece) in pieces {
            self.go_on(place, piece);
        }
        while self.held_bytes > MAX_HELD && !self.places.is_empty() {
            self.give_up_oldest();
        }
        self.release(out);
    }

    /// Reads `piece` as the text of `place` going on, and cuts every secret it completes.
    fn go_on(&mut self, place: Vec<u8>, piece: Text) {
        let mut text = self.places.remove(&place).unwrap_or_default();
        text.bytes.extend_from_slice(&piece.bytes);
        text.at.extend_from_slice(&piece.at);
        static MARKER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(REDACTED));
        let markers: Vec<(usize, usize)> = MARKER
            .find_iter(&text.bytes)
            .map(|s| (s, s + REDACTED.len()))
            .collect();
        let mut at = 0;
        let mut done = 0;
        while let Some((s, e)) = self.finder.find_at(&text.bytes, at) {
            // A match that takes in part of a marker is the marker read again, not a
            // secret: a stored stream redacted again comes out the same.
            if markers.iter().any(|&(ms, me)| s < me && ms < e) {
                at = s + 1;
                continue;
            }
            self.cut(&text.at[s..e]);
            done = e;
            at = e;
        }
        let after_marker = markers.last().map_or(0, |&(_, me)| me);
        let from = done.max(after_marker);
        let keep = from + self.finder.partial_from(&text.bytes[from..]);
        if keep < text.bytes.len() {
            if self.places.len() >= MAX_PLACES {
                self.give_up_oldest();
            }
            text.bytes.drain(..keep);
            text.at.drain(..keep);
            self.places.insert(place, text);
        }
    }

    /// Drops the text of the place that has waited longest: its lines may go.
    fn give_up_oldest(&mut self) {
        let oldest = self
            .places
            .iter()
            .min_by_key(|(place, t)| (t.at.first().map_or(u64::MAX, |s| s.line), *place))
            .map(|(place, _)| place.clone());
        if let Some(place) = oldest {
            self.places.remove(&place);
        }
    }

    /// Marks the raw bytes a secret's decoded bytes came from, a range for each run of
    /// them that lies together in one line.
    fn cut(&mut self, spots: &[Spot]) {
        let mut i = 0;
        while i < spots.len() {
            let run = spots[i];
            let (mut start, mut end) = (run.start, run.end);
            let mut j = i + 1;
            while j < spots.len()
                && spots[j].line == run.line
                && spots[j].start <= end
                && spots[j].number == run.number
            {
                start = start.min(spots[j].start);
                end = end.max(spots[j].end);
                j += 1;
            }
            let held = (run.line - self.first) as usize;
            self.held[held].cuts.push((start, end, run.number));
            i = j;
        }
    }

    /// Ends every text waiting to go on, and writes every held line.
    fn release_all(&mut self, out: &mut dyn Lines) {
        self.places.clear();
        self.release(out);
    }

    /// Writes every held line that no place's text reaches back to.
    fn release(&mut self, out: &mut dyn Lines) {
        let keep_from = self
            .places
            .values()
            .filter_map(|t| t.at.first().map(|s| s.line))
            .min()
            .unwrap_or(self.next);
        while self.first < keep_from {
            let Some(line) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= line.raw.len();
            write_cut(line, out);
            self.first += 1;
        }
        if self.held.is_empty() {
            self.first = self.next;
        }
    }
}

/// The line with each cut range replaced by the marker (overlapping ranges as one).
fn write_cut(mut line: Line, lines: &mut dyn Lines) {
    if line.cuts.is_empty() {
        lines.put(&line.raw);
        return;
    }
    line.cuts.sort_unstable();
    let mut out = Vec::with_capacity(line.raw.len());
    let mut done = 0usize;
    for (s, e, number) in line.cuts {
        let (s, e) = (s as usize, e as usize);
        if e <= done {
            continue;
        }
        if s >= done {
            out.extend_from_slice(&line.raw[done..s]);
            // A token's bytes as integers (`logprobs`) become 0, so the array stays one
            // of integers; text becomes the marker.
            out.extend_from_slice(if number { b"0" } else { REDACTED.as_bytes() });
        }
        done = e;
    }
    out.extend_from_slice(&line.raw[done..]);
    lines.put(&out);
}

/// The texts a line adds to: each string of a `data:` line's JSON (or, with `lines`,
/// the line's) at its place, or the whole value of one that is not JSON; only the
/// strings `want` picks.
fn pieces(
    raw: &[u8],
    line: u64,
    lines: bool,
    want: &dyn Fn(&[u8], &[u8]) -> bool,
) -> Vec<(Vec<u8>, Text)> {
    // A byte order mark may open the stream.
    let bom = if line == 0 && raw.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let off = if lines {
        bom
    } else {
        let Some(rest) = raw[bom..].strip_prefix(b"data:") else {
            return Vec::new();
        };
        bom + 5 + usize::from(rest.first() == Some(&b' '))
    };
    let mut end = raw.len();
    while end > off && matches!(raw[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let value = &raw[off..end];
    let json = value
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'[' | b'"'));
    if json {
        if let Some(p) = json_strings(value, off, line, want) {
            return p;
        }
    }
    // Its place is the line's own (an empty one).
    if !want(value, b"") {
        return Vec::new();
    }
    let mut text = Text::default();
    for (i, &b) in value.iter().enumerate() {
        let at = (off + i) as u32;
        text.push(
            &[b],
            Spot {
                line,
                start: at,
                end: at + 1,
                number: false,
            },
        );
    }
    vec![(Vec::new(), text)]
}

enum Frame<'a> {
    Object {
        /// The key read last, as the line writes it (borrowed from the line).
        key: &'a [u8],
        want_key: bool,
        /// Its number among the line's objects (see [`IDENTITY`]).
        id: usize,
    },
    Array {
        index: usize,
        /// Its elements so far while every one is an integer from 0 to 255 (a token's
        /// UTF-8 bytes, as `logprobs` gives them): the byte, and where its digits stand.
        bytes: Option<Vec<(u8, usize, usize)>>,
    },
}

/// Fields that tell streams apart which share a path: two choices (`n` > 1) each send
/// `choices: [{"index": 1, ...}]` at array position 0, tool calls their `index`, the
/// Responses and Realtime APIs interleave an answer's and a reasoning summary's
/// `delta` under the event's `type`, items by `item_id`. An object's values of these
/// are part of its place.
const IDENTITY: &[&[u8]] = &[
    b"type",
    b"index",
    b"output_index",
    b"content_index",
    b"item_id",
];

/// One step of a string's path: an object's key (the object numbered `id`), or an
/// array position.
enum Step<'a> {
    Key(&'a [u8], usize),
    At(usize),
}

/// Every string value of `v` that `want` picks (`None` unless `v` reads as JSON),
/// decoded, with its place: the keys and indices that lead to it, and the identity
/// fields (see [`IDENTITY`]) of each object on the way.
fn json_strings(
    v: &[u8],
    off: usize,
    line: u64,
    want: &dyn Fn(&[u8], &[u8]) -> bool,
) -> Option<Vec<(Vec<u8>, Text)>> {
    // The last step of the place a string would have (see [`place`]).
    let mut step = Vec::new();
    let mut stack: Vec<Frame> = Vec::with_capacity(8);
    let mut found: Vec<(Vec<Step>, Text)> = Vec::new();
    // Each object's identity fields, by its number, read wherever they stand in it.
    let mut identity: Vec<Vec<u8>> = Vec::new();
    let note = |stack: &[Frame], identity: &mut Vec<Vec<u8>>, value: &[u8]| {
        if let Some(Frame::Object {
            key,
            want_key: false,
            id,
        }) = stack.last()
        {
            if IDENTITY.contains(key) {
                let w = &mut identity[*id];
                w.extend_from_slice(key);
                w.push(b'=');
                w.extend_from_slice(value);
                w.push(b',');
            }
        }
    };
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b' ' | b'\t' | b'\r' | b'\n' | b':' => i += 1,
            b'{' => {
                not_bytes(&mut stack);
                identity.push(Vec::new());
                stack.push(Frame::Object {
                    key: &[],
                    want_key: true,
                    id: identity.len() - 1,
                });
                i += 1;
            }
            b'[' => {
                not_bytes(&mut stack);
                stack.push(Frame::Array {
                    index: 0,
                    bytes: Some(Vec::new()),
                });
                i += 1;
            }
            b'}' => {
                matches!(stack.pop(), Some(Frame::Object { .. })).then_some(())?;
                i += 1;
            }
            b']' => {
                let Some(Frame::Array { bytes, .. }) = stack.pop() else {
                    return None;
                };
                if let Some(bytes) = bytes.filter(|b| !b.is_empty()) {
                    let mut text = Text::default();
                    for (b, s, e) in bytes {
                        let spot = Spot {
                            line,
                            start: (off + s) as u32,
                            end: (off + e) as u32,
                            number: true,
                        };
                        text.push(&[b], spot);
                    }
                    if want(&text.bytes, last_step(&stack, &mut step)) {
                        found.push((path(&stack), text));
                    }
                }
                i += 1;
            }
            b',' => {
                match stack.last_mut()? {
                    Frame::Object { want_key, .. } => *want_key = true,
                    Frame::Array { index, .. } => *index += 1,
                }
                i += 1;
            }
            b'"' => {
                not_bytes(&mut stack);
                let end = string_end(v, i)?;
                let raw = &v[i + 1..end - 1];
                match stack.last_mut() {
                    Some(Frame::Object { key, want_key, .. }) if *want_key => {
                        *key = raw;
                        *want_key = false;
                    }
                    _ => {
                        note(&stack, &mut identity, raw);
                        if want(raw, last_step(&stack, &mut step)) {
                            found.push((path(&stack), decode(v, i + 1, end - 1, off, line)));
                        }
                    }
                }
                i = end;
            }
            _ => {
                let n = v[i..]
                    .iter()
                    .position(|b| b",]} \t\r\n:".contains(b))
                    .unwrap_or(v.len() - i)
                    .max(1);
                note(&stack, &mut identity, &v[i..i + n]);
                if let Some(Frame::Array {
                    bytes: bytes @ Some(_),
                    ..
                }) = stack.last_mut()
                {
                    match std::str::from_utf8(&v[i..i + n])
                        .ok()
                        .and_then(|d| d.parse().ok())
                    {
                        Some(b) => bytes.as_mut().expect("some").push((b, i, i + n)),
                        None => *bytes = None,
                    }
                }
                i += n;
            }
        }
    }
    if !stack.is_empty() {
        return None;
    }
    Some(
        found
            .into_iter()
            .map(|(steps, text)| (place(&steps, &identity), text))
            .collect(),
    )
}

/// The last step of the place of a value at the top of `stack`, as [`place`] spells it:
/// `.key` or `[index]`.
fn last_step<'a>(stack: &[Frame], step: &'a mut Vec<u8>) -> &'a [u8] {
    step.clear();
    match stack.last() {
        Some(Frame::Object { key, .. }) => {
            step.push(b'.');
            step.extend_from_slice(key);
        }
        Some(Frame::Array { index, .. }) => {
            step.push(b'[');
            push_number(step, *index);
            step.push(b']');
        }
        None => {}
    }
    step
}

/// An array that holds something other than integers is not a token's bytes.
fn not_bytes(stack: &mut [Frame]) {
    if let Some(Frame::Array { bytes, .. }) = stack.last_mut() {
        *bytes = None;
    }
}

fn path<'a>(stack: &[Frame<'a>]) -> Vec<Step<'a>> {
    stack
        .iter()
        .map(|f| match f {
            Frame::Object { key, id, .. } => Step::Key(key, *id),
            Frame::Array { index, .. } => Step::At(*index),
        })
        .collect()
}

/// Where a string stands: `{identity}.key` and `[index]` from the outside in.
fn place(steps: &[Step], identity: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Vec::new();
    for s in steps {
        match s {
            Step::Key(key, id) => {
                if !identity[*id].is_empty() {
                    p.push(b'{');
                    p.extend_from_slice(&identity[*id]);
                    p.push(b'}');
                }
                p.push(b'.');
                p.extend_from_slice(key);
            }
            Step::At(index) => {
                p.push(b'[');
                push_number(&mut p, *index);
                p.push(b']');
            }
        }
    }
    p
}

/// Writes `n` in decimal at the end of `out` (without a `String` of its own).
fn push_number(out: &mut Vec<u8>, n: usize) {
    use std::io::Write;
    // Writing to a `Vec` cannot fail.
    let _ = write!(out, "{n}");
}

/// Just past the quote that ends the string opened at `open`.
fn string_end(v: &[u8], open: usize) -> Option<usize> {
    let mut j = open + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', &v[j..])?;
        if v[j] == b'\\' {
            j += 2;
            if j > v.len() {
                return None;
            }
        } else {
            return Some(j + 1);
        }
    }
}

/// The string's raw bytes `v[s..e]`, unescaped, each byte beside the raw bytes it came
/// from (`off` is where `v` starts in its line).
fn decode(v: &[u8], s: usize, e: usize, off: usize, line: u64) -> Text {
    let mut text = Text::default();
    let spot = |a: usize, b: usize| Spot {
        line,
        start: (off + a) as u32,
        end: (off + b) as u32,
        number: false,
    };
    let mut i = s;
    while i < e {
        if v[i] != b'\\' || i + 1 >= e {
            text.push(&v[i..i + 1], spot(i, i + 1));
            i += 1;
            continue;
        }
        let simple = match v[i + 1] {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'"' | b'\\' | b'/' => Some(v[i + 1]),
            _ => None,
        };
        if let Some(b) = simple {
            text.push(&[b], spot(i, i + 2));
            i += 2;
            continue;
        }
        let unit = |at: usize| -> Option<u32> {
            let hex = v.get(at..at + 6).filter(|h| h.starts_with(b"\\u"))?;
            u32::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
        };
        match unit(i).filter(|_| i + 6 <= e) {
            Some(hi @ 0xD800..=0xDBFF) => match unit(i + 6).filter(|_| i + 12 <= e) {
                Some(lo @ 0xDC00..=0xDFFF) => {
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    let c = char::from_u32(c).unwrap_or('\u{fffd}');
                    text.push(c.encode_utf8(&mut [0; 4]).as_bytes(), spot(i, i + 12));
                    i += 12;
                }
                _ => {
                    text.push("\u{fffd}".as_bytes(), spot(i, i + 6));
                    i += 6;
                }
            },
            Some(u) => {
                let c = char::from_u32(u).unwrap_or('\u{fffd}');
                text.push(c.encode_utf8(&mut [0; 4]).as_bytes(), spot(i, i + 6));
                i += 6;
            }
            None => {
                text.push(&v[i..i + 1], spot(i, i + 1));
                i += 1;
            }
        }
    }
    text
}

/// Secrets spread over a WebSocket's text messages, each a JSON value (the Realtime API's
/// `response.text.delta` events): as [`SseSplit`] reads an event stream's lines. Messages
/// come back in order, each as it is to be stored, once no text ending in it could still
/// begin a secret.
pub struct MessageSplit {
    split: SseSplit,
}

impl MessageSplit {
    /// `None` when there are no secrets to look for.
    pub fn new(secrets: &super::Secrets) -> Option<MessageSplit> {
        secrets.finder().map(|f| MessageSplit {
            split: SseSplit::new(f, true),
        })
    }

    /// Takes the next message; returns those now safe to store (this one or earlier
    /// ones held back), in order.
    pub fn push(&mut self, message: &[u8]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        if message.len() > MAX_LINE {
            self.split.release_all(&mut out);
            out.push(message.to_vec());
            self.split.next += 1;
            self.split.first = self.split.next;
            return out;
        }
        self.split.end_line(message, &mut out);
        out
    }

    /// How many messages are held back.
    pub fn held(&self) -> usize {
        self.split.held.len()
    }

    /// The messages still held, in order.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        self.split.release_all(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{same_at_every_cut, BodyScrubber, Secrets};
    use crate::rules::Rules;

    const KEY: &str = "sk-proj-4f9Qz81LmT0pXw";
    const SSE: Option<&str> = Some("text/event-stream");

    fn secrets() -> Secrets {
        let mut s = Secrets::default();
        s.add(&format!("Bearer {KEY}"));
        s
    }

    /// The body scrubbed whole, after checking that every way of cutting it gives the
    /// same bytes.
    fn scrub(body: &str) -> String {
        let rules = Rules::default();
        let s = secrets();
        let make = || BodyScrubber::new(SSE, &rules, &s);
        let (whole, _) = same_at_every_cut(body.as_bytes(), &[1, 2, 3, 7, 16, 61, 200], make);
        String::from_utf8(whole).unwrap()
    }

    /// An OpenAI-style stream, the text given streamed in these pieces.
    fn chat(pieces: &[&str]) -> String {
        let mut body = String::new();
        for p in pieces {
            body += &format!(
                "data: {}\n\n",
                serde_json::json!({"id":"c1","choices":[{"index":0,"delta":{"content":p}}]})
            );
        }
        body + "data: [DONE]\n\n"
    }

    /// A body with no content type whose first line ends with a CR at the end of a
    /// piece: once the next piece shows no LF follows, that line says it is no event
    /// stream, and the rest goes out in order, not held behind later pieces (the
    /// `redact_stream` fuzzer's find: the bytes after the CR came out last).
    #[test]
    fn a_sniffed_body_whose_first_line_ends_in_a_lone_cr_keeps_its_order() {
        let rules = Rules::default();
        let s = secrets();
        let body = "no\rstream here, just text that goes on\nand more after it";
        let make = || BodyScrubber::new(None, &rules, &s);
        let (whole, _) = same_at_every_cut(body.as_bytes(), &[1, 2, 3, 4, 7], make);
        assert_eq!(String::from_utf8(whole).unwrap(), body);
    }

    #[test]
    fn a_key_a_model_streams_token_by_token_is_not_stored() {
        let body = chat(&[
            "Your key is ",
            "sk-",
            "proj-4f",
            "9Qz81",
            "LmT0p",
            "Xw",
            ", keep it.",
        ]);
        let out = scrub(&body);
        let joined: String = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        // Not a piece of the key stays, and the rest of the text is as it was.
        assert_eq!(
            joined,
            "Your key is [REDACTED][REDACTED][REDACTED][REDACTED][REDACTED], keep it."
        );
        assert!(!out.contains("4f9Qz81") && !out.contains("LmT0p"), "{out}");
        // Still a stream a client parses: every event's JSON is intact.
        assert_eq!(out.matches("data: {").count(), 7);
        assert!(out.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn a_key_split_in_the_middle_of_a_token_loses_only_its_own_characters() {
        let out = scrub(&chat(&["abc sk-proj", "-4f9Qz81LmT0pXw def", "ghi"]));
        assert!(out.contains(r#""content":"abc [REDACTED]""#), "{out}");
        assert!(out.contains(r#""content":"[REDACTED] def""#), "{out}");
        assert!(out.contains(r#""content":"ghi""#), "{out}");
    }

    #[test]
    fn escaped_pieces_and_anthropic_deltas_and_plain_text_lines_are_read_too() {
        // Anthropic's content_block_delta, a piece escaped as a serializer may write it.
        let mut body = String::from("event: message_start\ndata: {\"type\":\"message_start\"}\n\n");
        for p in ["sk\\u002dproj\\u002d", "4f9Qz81LmT0", "pXw"] {
            body += &format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{p}\"}}}}\n\n"
            );
        }
        let out = scrub(&body);
        assert!(
            !out.contains("4f9Qz81LmT0") && !out.contains("\\u002d"),
            "{out}"
        );
        assert_eq!(out.matches("[REDACTED]").count(), 3, "{out}");
        // Plain text data lines, CRLF.
        let out = scrub("data: sk-proj-4f9\r\n\r\ndata: Qz81LmT0pXw!\r\n\r\n");
        assert_eq!(out, "data: [REDACTED]\r\n\r\ndata: [REDACTED]!\r\n\r\n");
    }

    #[test]
    fn text_at_other_places_or_with_no_key_is_left_as_it_came() {
        // The pieces at different places never join: `sk-proj-4f9` as an id, the rest as
        // content.
        let body = "data: {\"id\":\"sk-proj-4f9\",\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n\
                    data: {\"id\":\"a\",\"choices\":[{\"delta\":{\"content\":\"Qz81LmT0pXw\"}}]}\n\n";
        assert_eq!(scrub(body), body);
        let body = chat(&["sk-", "proj-4f9", "Qz81LmT0", " not the key"]);
        assert_eq!(scrub(&body), body);
        // Lines that are not JSON and events that are not data pass as they are.
        let body = ": keep-alive\n\nevent: ping\nid: 7\ndata: {\"a\":[1,2,{\"b\":null}]}\n\ndata: {broken\n\n";
        assert_eq!(scrub(body), body);
    }

    #[test]
    fn a_key_streamed_as_json_lines_is_found_too() {
        // Ollama's /api/chat stream: a JSON value a line.
        let body: String = ["sk-pro", "j-4f9Qz8", "1LmT0pXw", " ok"]
            .iter()
            .map(|t| format!("{}\n", serde_json::json!({"model":"m","message":{"role":"assistant","content":t},"done":false})))
            .collect();
        let rules = Rules::default();
        let s = secrets();
        for ct in ["application/x-ndjson", "application/jsonl"] {
            let (out, _) = BodyScrubber::run(body.as_bytes(), Some(ct), &rules, &s);
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out.matches("[REDACTED]").count(), 3, "{ct}: {out}");
            assert!(out.contains(r#""content":" ok""#), "{out}");
        }
    }

    const GEMINI: &str =
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent";
    const JSON: Option<&str> = Some("application/json");

    fn answer_scrubber(ct: Option<&str>, s: &Secrets) -> BodyScrubber {
        let fields = super::super::FieldNames::of(&Rules::default());
        BodyScrubber::for_answer(ct, fields, s, GEMINI)
    }

    #[test]
    fn only_google_stream_methods_answer_with_a_streamed_array() {
        use super::super::streams_json_array;
        assert!(streams_json_array(GEMINI));
        assert!(streams_json_array(
            "/v1/projects/p/locations/l/publishers/google/models/m:streamGenerateContent?key=k"
        ));
        assert!(streams_json_array(
            "/v1/projects/p/locations/l/endpoints/e:serverStreamingPredict"
        ));
        for no in [
            "https://generativelanguage.googleapis.com/v1beta/models/m:generateContent",
            "https://h/v1/items?q=a:stream",
            "https://h/stream:x/items",
            "https://h/v1/chat/completions",
        ] {
            assert!(!streams_json_array(no), "{no}");
        }
    }

    /// Gemini's `streamGenerateContent` without `alt=sse`: one JSON array, an element a
    /// chunk, each pretty-printed over several lines.
    fn gemini_array(pieces: &[&str]) -> String {
        let elements: Vec<String> = pieces
            .iter()
            .map(|t| {
                serde_json::to_string_pretty(&serde_json::json!({
                    "candidates": [{"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}],
                    "modelVersion": "gemini-2.5-flash"
                }))
                .unwrap()
            })
            .collect();
        format!("[{}]", elements.join("\n,\r\n"))
    }

    fn gemini_texts(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).expect("still one JSON array");
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_key_streamed_in_the_elements_of_a_json_array_is_found() {
        let rules = Rules::default();
        let s = secrets();
        let body = gemini_array(&["Your key: sk-pro", "j-4f9Qz8", "1LmT0pXw", ", done"]);
        for ct in ["application/json; charset=UTF-8", "application/json"] {
            let cuts = [1, 2, 3, 7, 16, 61, 200];
            let make = || answer_scrubber(Some(ct), &s);
            let (whole, _) = same_at_every_cut(body.as_bytes(), &cuts, make);
            let out = String::from_utf8(whole).unwrap();
            assert_eq!(
                gemini_texts(&out),
                "Your key: [REDACTED][REDACTED][REDACTED], done"
            );
            assert!(!out.contains("4f9Qz8") && !out.contains("sk-pro"), "{out}");
        }
        // A key split inside one element's strings at two places is not joined, and
        // JSON that is no array, or an array with no key, is left as it came.
        for body in [
            r#"{"a": "sk-proj-4f9Q", "b": "z81LmT0pXw"}"#.to_string(),
            r#"[{"a": "sk-proj-4f9Q"}, {"b": "z81LmT0pXw"}] "#.to_string(),
            r#"["sk-proj-4f9Q", 1, "x"]  trailing"#.to_string(),
            gemini_array(&["sk-", "proj-4f9", "Qz81LmT0", " not the key"]),
        ] {
            let (out, _) = BodyScrubber::run_answer(body.as_bytes(), JSON, &rules, &s, GEMINI);
            assert_eq!(String::from_utf8(out).unwrap(), body);
        }
        // Strings that are elements of their own go on from each other.
        let body = r#"["sk-proj-4f9Q", "z81LmT0pXw", "ok"]"#;
        let (out, _) = BodyScrubber::run_answer(body.as_bytes(), JSON, &rules, &s, GEMINI);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"["[REDACTED]", "[REDACTED]", "ok"]"#
        );
        // Only a stream method's answer is read so (a list API's array is not a token
        // stream, and reading every element of it costs).
        let (out, _) =
            BodyScrubber::run_answer(body.as_bytes(), JSON, &rules, &s, "https://h/v1/items");
        assert_eq!(String::from_utf8(out).unwrap(), body);
        let (out, _) = BodyScrubber::run(body.as_bytes(), JSON, &rules, &s);
        assert_eq!(String::from_utf8(out).unwrap(), body);
    }

    #[test]
    fn an_array_element_over_the_limit_passes_through() {
        let rules = Rules::default();
        let s = secrets();
        let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(super::MAX_LINE));
        let body = format!(
            r#"[{{"t": "sk-proj-4f9Qz"}}, {big}, {{"t": "sk-proj-"}}, {{"t": "4f9Qz81LmT0pXw"}}]"#
        );
        let (whole, _) = BodyScrubber::run_answer(body.as_bytes(), JSON, &rules, &s, GEMINI);
        for cut in [1000, 65536, 1 << 20] {
            let mut sc = answer_scrubber(JSON, &s);
            let mut got = Vec::new();
            for piece in body.as_bytes().chunks(cut) {
                got.extend_from_slice(sc.feed(piece));
                assert!(sc.held() <= super::MAX_LINE + cut, "held {}", sc.held());
            }
            got.extend(sc.finish().0);
            assert!(got == whole, "cut {cut}");
        }
        let out = String::from_utf8(whole).unwrap();
        assert!(out.contains(&big));
        assert!(
            out.contains("sk-proj-4f9Qz\""),
            "before the long element, no whole key"
        );
        assert_eq!(out.matches("[REDACTED]").count(), 2);
    }

    #[test]
    fn websocket_messages_come_back_in_order_each_as_it_is_to_be_stored() {
        let mut m = super::MessageSplit::new(&secrets()).unwrap();
        let sent = [
            r#"{"type":"session.created"}"#,
            r#"{"type":"response.output_text.delta","delta":"sk-pro"}"#,
            r#"{"type":"response.output_text.delta","delta":"j-4f9Qz81LmT0pXw"}"#,
            r#"{"type":"response.output_text.delta","delta":" ok"}"#,
        ];
        let mut got = Vec::new();
        let mut held = Vec::new();
        for s in sent {
            got.extend(m.push(s.as_bytes()));
            held.push(m.held());
        }
        // The piece that could begin the key waited for the next one; nothing else did.
        assert_eq!(held, [0, 1, 0, 0]);
        got.extend(m.finish());
        let got: Vec<String> = got
            .into_iter()
            .map(|g| String::from_utf8(g).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                sent[0],
                r#"{"type":"response.output_text.delta","delta":"[REDACTED]"}"#,
                r#"{"type":"response.output_text.delta","delta":"[REDACTED]"}"#,
                sent[3],
            ]
        );
    }

    #[test]
    fn interleaved_choices_tool_calls_and_event_types_are_told_apart() {
        // n = 2: each chunk carries one choice at array position 0, told apart by its
        // index; the key goes to choice 1 while choice 0 says other things.
        let mut body = String::new();
        for (i, (a, b)) in [("xy", "sk-pro"), ("zz", "j-4f9Qz8"), ("yy", "1LmT0pXw")]
            .iter()
            .enumerate()
        {
            for (index, t) in [(0, a), (1, b)] {
                body += &format!(
                    "data: {}\n\n",
                    serde_json::json!({"id":"c","choices":[{"index":index,"delta":{"content":t}}],"n":i})
                );
            }
        }
        let out = scrub(&body);
        assert_eq!(out.matches("[REDACTED]").count(), 3, "{out}");
        assert!(out.contains(r#""content":"zz""#), "{out}");
        // The Responses API: an answer's deltas between a reasoning summary's.
        let mut body = String::new();
        for (kind, t) in [
            ("response.output_text.delta", "sk-pro"),
            ("response.reasoning_summary_text.delta", "thinking"),
            ("response.output_text.delta", "j-4f9Qz81"),
            ("response.reasoning_summary_text.delta", "more"),
            ("response.output_text.delta", "LmT0pXw"),
        ] {
            body += &format!(
                "event: {kind}\ndata: {}\n\n",
                serde_json::json!({"type":kind,"item_id":"msg_1","output_index":0,"content_index":0,"delta":t})
            );
        }
        let out = scrub(&body);
        assert_eq!(out.matches("[REDACTED]").count(), 3, "{out}");
        assert!(out.contains(r#""delta":"thinking""#), "{out}");
    }

    #[test]
    fn a_start_never_followed_holds_back_a_bounded_amount() {
        // A string ending in the key's first letter, at a place no event continues, then
        // 3 MB of events: what is held back stays under the bound, and a key split
        // after it is still found.
        let rules = Rules::default();
        let s = secrets();
        let mut sc = BodyScrubber::new(SSE, &rules, &s);
        let mut stored = sc.feed(b"data: {\"note\":\"yes\"}\n\n").len();
        let line = format!("data: {}\n\n", serde_json::json!({"pad": "x".repeat(1000)}));
        let mut most = 0;
        for _ in 0..3000 {
            stored += sc.feed(line.as_bytes()).len();
            most = most.max(sc.held());
        }
        assert!(most <= super::MAX_HELD + line.len(), "held {most}");
        let tail = chat(&["sk-proj-", "4f9Qz81LmT0pXw"]);
        let mut out = sc.feed(tail.as_bytes()).to_vec();
        out.extend(sc.finish().0);
        assert!(stored > 2_000_000);
        assert_eq!(
            String::from_utf8(out)
                .unwrap()
                .matches("[REDACTED]")
                .count(),
            2
        );
    }

    #[test]
    fn a_key_in_logprobs_token_bytes_is_not_stored_either() {
        // `logprobs: true`: each token also as its UTF-8 bytes, integers.
        let mut body = String::new();
        for t in ["sk-pro", "j-4f9Qz8", "1LmT0pXw"] {
            let bytes: Vec<u8> = t.bytes().collect();
            let lp = serde_json::json!({"token": t, "logprob": -0.1, "bytes": bytes,
                "top_logprobs": [{"token": t, "logprob": -0.1, "bytes": bytes}]});
            body += &format!(
                "data: {}\n\n",
                serde_json::json!({"choices":[{"index":0,"delta":{"content":t},"logprobs":{"content":[lp]}}]})
            );
        }
        let out = scrub(&body);
        for line in out.lines().filter_map(|l| l.strip_prefix("data: ")) {
            let v: serde_json::Value = serde_json::from_str(line).expect("still JSON");
            let lp = &v["choices"][0]["logprobs"]["content"][0];
            assert_eq!(lp["token"], "[REDACTED]", "{line}");
            for bytes in [&lp["bytes"], &lp["top_logprobs"][0]["bytes"]] {
                let b = bytes.as_array().unwrap();
                assert!(b.iter().all(|n| n == 0), "{line}");
            }
        }
    }

    #[test]
    fn a_piece_of_digits_in_text_becomes_the_marker_not_a_number() {
        let mut s = Secrets::default();
        s.add("Bearer sk-live-NEVER-STORED-9898");
        let body = chat(&["sk-live-NEVER-STORED-", "989", "8", "."]);
        let (out, _) = BodyScrubber::run(body.as_bytes(), SSE, &Rules::default(), &s);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches(r#""content":"[REDACTED]""#).count(), 3, "{out}");
        assert!(!out.contains(r#""content":"0""#), "{out}");
    }

    #[test]
    fn lines_ended_by_a_bare_cr_are_read_as_lines() {
        let body = chat(&["sk-proj-", "4f9Qz81LmT0pXw", "!"]);
        for cr in [body.replace('\n', "\r"), body.replace('\n', "\r\n")] {
            let out = scrub(&cr);
            assert_eq!(out.matches("[REDACTED]").count(), 2, "{out:?}");
            assert!(out.contains(r#""content":"!""#));
        }
    }

    #[test]
    fn a_cr_lf_cut_between_its_bytes_at_the_line_limit_reads_as_whole() {
        let rules = Rules::default();
        let s = secrets();
        for len in [super::MAX_LINE - 1, super::MAX_LINE, super::MAX_LINE + 1] {
            let long = format!("data: {}\r\n", "x".repeat(len - 8));
            let body = chat(&["sk-proj-4f9Q"]) + &long + &chat(&["sk-proj-4f9Q", "z81LmT0pXw"]);
            let (whole, _) = BodyScrubber::run(body.as_bytes(), SSE, &rules, &s);
            let cut = body.find("\r\n").unwrap() + 1;
            let mut sc = BodyScrubber::new(SSE, &rules, &s);
            let mut got = sc.feed(&body.as_bytes()[..cut]).to_vec();
            got.extend_from_slice(sc.feed(&body.as_bytes()[cut..]));
            got.extend(sc.finish().0);
            assert!(got == whole, "line of {len}");
        }
    }

    #[test]
    fn an_event_stream_without_a_content_type_is_read_as_one() {
        let rules = Rules::default();
        let s = secrets();
        let body = chat(&["sk-proj-4f9Q", "z81LmT0pXw"]);
        let json = r#"{"a": "sk-proj-4f9Q"}
{"b": "z81LmT0pXw"}
"#;
        for (text, redacted) in [(body.as_str(), 2), (json, 0)] {
            let make = || BodyScrubber::new(None, &rules, &s);
            let (whole, _) = same_at_every_cut(text.as_bytes(), &[1, 5, 64], make);
            let whole = String::from_utf8(whole).unwrap();
            assert_eq!(whole.matches("[REDACTED]").count(), redacted, "{whole}");
        }
    }

    #[test]
    fn a_byte_order_mark_before_the_first_event_hides_nothing() {
        let out = scrub(&("\u{feff}".to_string() + &chat(&["sk-proj-4f", "9Qz81LmT0pXw"])));
        assert_eq!(out.matches("[REDACTED]").count(), 2, "{out}");
    }

    #[test]
    fn a_stored_stream_redacted_again_is_unchanged() {
        let once = scrub(&chat(&[
            "sk-proj-4f9Q",
            "z81LmT0pXw",
            "D]sk-proj",
            "-4f9Qz81LmT0pXw",
        ]));
        assert_eq!(scrub(&once), once);
        assert!(!once.contains("4f9Q"), "{once}");
    }

    #[test]
    fn a_line_over_the_limit_passes_through_and_the_lines_after_it_are_read_again() {
        let big = format!("data: {}\n\n", "x".repeat(super::MAX_LINE));
        let body = chat(&["sk-proj-4f9Qz"]) + &big + &chat(&["sk-proj-", "4f9Qz81LmT0pXw"]);
        let out = scrub(&body);
        assert!(out.contains(&big));
        assert!(
            out.contains("sk-proj-4f9Qz"),
            "before the long line, no whole key"
        );
        assert_eq!(out.matches("[REDACTED]").count(), 2);
    }
}
