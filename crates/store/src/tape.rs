//! Tapes: the portable, git-friendly form of one session.
//!
//! JSON lines: a header line, then one event per line, in step order. Small bodies are
//! inline: JSON bodies as JSON (so a diff reads well), text as text, binary as base64,
//! each with its blake3, which is checked on reading. Larger bodies (when the writer is
//! given [`BodyFiles`]) are files beside the tape, one per distinct body, named by blake3
//! (see [`crate::tape_files`]). A tape that is corrupt, truncated or from a newer format
//! is refused whole, naming the file and line: nothing is served from a half-read tape.
//!
//! A tape is read line by line ([`TapeReader`]) and written event by event, bodies a
//! part at a time: neither side holds the tape, or a body file, whole in memory.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use thiserror::Error;

use crate::tape_files::{self, BodyFileError, BodyFiles, FileBody};
use tapedeck_model::exchange::{BodyRef, Event, MAX_EXCHANGE_TIME};

/// The newest format this tapedeck reads. A tape is written as format 1 unless it holds
/// WebSocket messages (format 2) or bodies in files (format 3), so a tapedeck that knows
/// nothing of them refuses such a tape instead of replaying it without them.
pub const TAPE_VERSION: u32 = 3;
const TAPE_VERSION_HTTP: u32 = 1;
const TAPE_VERSION_WS: u32 = 2;
const TAPE_VERSION_FILES: u32 = 3;

#[derive(Debug, Error)]
pub enum TapeError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: empty file: not a tapedeck tape")]
    Empty { path: PathBuf },
    #[error("{path}: truncated or padded: the header says {expected} events, the file holds {found} (line {last_line} is the last)")]
    Count {
        path: PathBuf,
        expected: u64,
        found: usize,
        last_line: usize,
    },
    #[error("{path}, line {line}: {problem}")]
    Line {
        path: PathBuf,
        line: usize,
        #[source]
        problem: LineError,
    },
}

/// What is wrong with one line of a tape.
#[derive(Debug, Error)]
pub enum LineError {
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error("not a tapedeck tape header: {0}")]
    NotHeader(#[source] serde_json::Error),
    #[error("not a tapedeck tape header (no \"tapedeck_tape\" version)")]
    NoVersion,
    #[error("tape format {0} was written by a newer tapedeck; this one reads format {TAPE_VERSION} (upgrade tapedeck)")]
    Newer(u64),
    #[error("bad header: {0}")]
    BadHeader(#[source] serde_json::Error),
    #[error(transparent)]
    Session(#[from] tapedeck_model::session::SessionNameError),
    #[error("not a tapedeck event: {0}")]
    NotEvent(#[source] serde_json::Error),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("step {step}: {problem}")]
    Invalid {
        step: u64,
        #[source]
        problem: InvalidEvent,
    },
    #[error("step {step} after step {last}: events must be in step order")]
    Order { step: u64, last: u64 },
    #[error(transparent)]
    BodyFile(#[from] BodyFileError),
    #[error("a body in a file needs tape format {TAPE_VERSION_FILES}; the header says {0}")]
    FileInOldFormat(u64),
}

/// An inline body that cannot be turned back into its bytes.
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("unknown JSON body style {0:?}")]
    Style(String),
    #[error("bad JSON body: {0}")]
    Json(#[source] serde_json::Error),
    #[error("bad base64 body: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("a body has none of \"json\", \"text\", \"base64\"")]
    Empty,
    #[error("body {b3} does not match its content (blake3 {actual}, {len} bytes; the tape was edited or damaged)")]
    Mismatch {
        b3: String,
        actual: String,
        len: usize,
    },
}

/// An event whose times, chunks, messages or status later code could not trust.
#[derive(Debug, Error)]
pub enum InvalidEvent {
    #[error("timing: the exchange ends before it starts")]
    EndsBeforeStart,
    #[error("timing: the exchange lasts longer than {days} days")]
    TooLong { days: u64 },
    #[error("timing: ttfb_ns {ttfb} is out of range (0 to {max_ns})")]
    Ttfb { ttfb: u64, max_ns: u64 },
    #[error("WebSocket message {index}: at_ms {at_ms:?} is out of range (0 to {max_ms})")]
    MessageTime {
        index: usize,
        at_ms: f64,
        max_ms: f64,
    },
    #[error("WebSocket message {index}: a {op} frame carries at most {most} bytes, not {len}")]
    MessageSize {
        index: usize,
        op: &'static str,
        most: u64,
        len: u64,
    },
    #[error("response status {0} is not an HTTP status")]
    Status(u16),
    #[error("request method {0:?} is not an HTTP method")]
    Method(String),
    #[error("request URL {0:?} is not an absolute http(s) or ws(s) URL")]
    Url(String),
    #[error("chunk {index}: at_ms {at_ms:?} is out of range (0 to {max_ms})")]
    ChunkTime {
        index: usize,
        at_ms: f64,
        max_ms: f64,
    },
    #[error("chunk lengths add up to more than the response body's {0} bytes")]
    ChunkLengths(u64),
    #[error(
        "header name {0:?} is not lower case (tapedeck writes every header name in lower case)"
    )]
    HeaderCase(String),
    #[error("header name {0:?} is not an HTTP header name")]
    HeaderName(String),
    #[error("header {0:?}: its value holds a line break or another control character, which HTTP cannot carry")]
    HeaderValue(String),
    #[error("header {0:?}: a value kept as bytes (\"\\u0000base64:...\") whose base64 is not")]
    HeaderBytes(String),
}

/// Why a tape could not be written.
#[derive(Debug, Error)]
pub enum TapeWriteError {
    #[error(transparent)]
    Body(#[from] crate::StoreError),
    #[error("cannot encode the tape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    BodyFile(#[from] BodyFileError),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TapeHeader {
    /// Format version of the tape.
    pub tapedeck_tape: u32,
    pub session: String,
    pub events: u64,
    /// The exit status of the command the session was recorded around (`record --
    /// CMD`), when known. Older tapedecks ignore it; tapes without it read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// A tape read: its events, its inline bodies by blake3, and its body files (checked,
/// read part by part when needed) by blake3.
pub struct Tape {
    pub header: TapeHeader,
    pub events: Vec<Event>,
    pub bodies: HashMap<String, Bytes>,
    pub files: HashMap<String, FileBody>,
}

/// A body as a tape holds it: inline, with its blake3.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct InlineBody {
    pub b3: String,
    pub len: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// A JSON body, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Box<RawValue>>,
    /// How the JSON was laid out: absent for compact, `pretty`, `compact\n`, `pretty\n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// A body kept in a file beside the tape: `NAME.bodies/<blake3>` (format 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

const STYLES: [&str; 4] = ["compact", "pretty", "compact\n", "pretty\n"];

/// The inline form of a body: JSON when the bytes are exactly a rendering of their
/// JSON value (so the round trip is byte for byte), else text, else base64.
fn inline(body: &BodyRef, data: &[u8]) -> InlineBody {
    let mut v = bare(body);
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'[')) {
        if let Ok(parsed) = serde_json::from_slice::<Value>(data) {
            for style in STYLES {
                if render_json(&parsed, style) == data {
                    v.json = RawValue::from_string(parsed.to_string()).ok();
                    if style != "compact" {
                        v.style = Some(style.to_string());
                    }
                    return v;
                }
            }
        }
    }
    match std::str::from_utf8(data) {
        Ok(text) if !has_control_bytes(data) => v.text = Some(text.to_string()),
        _ => v.base64 = Some(base64::engine::general_purpose::STANDARD.encode(data)),
    }
    v
}

/// A body's reference with no content yet.
fn bare(body: &BodyRef) -> InlineBody {
    InlineBody {
        b3: body.b3.clone(),
        len: body.len,
        encoding: body.encoding.clone(),
        json: None,
        style: None,
        text: None,
        base64: None,
        file: None,
    }
}

/// Control bytes other than tab, newline, carriage return, form feed and escape: JSON
/// writes each as `\u00XX` (six bytes for one), so such a body goes out as base64.
fn has_control_bytes(data: &[u8]) -> bool {
    data.iter()
        .any(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b)) || b == 0x7f)
}

fn render_json(v: &Value, style: &str) -> Vec<u8> {
    let mut out = if style.starts_with("pretty") {
        serde_json::to_vec_pretty(v)
    } else {
        serde_json::to_vec(v)
    }
    .unwrap_or_default();
    if style.ends_with('\n') {
        out.push(b'\n');
    }
    out
}

/// Turns an inline body back into bytes and a [`BodyRef`], checking its blake3.
fn materialize(v: InlineBody) -> Result<(BodyRef, Vec<u8>), BodyError> {
    let data = if let Some(raw) = &v.json {
        let style = v.style.as_deref().unwrap_or("compact");
        if !STYLES.contains(&style) {
            return Err(BodyError::Style(style.to_string()));
        }
        let text = raw.get().as_bytes();
        if style == "compact" && blake3::hash(text).to_hex().as_str() == v.b3 {
            // As tapedeck wrote it: the raw text is the body.
            text.to_vec()
        } else {
            let parsed: Value = serde_json::from_str(raw.get()).map_err(BodyError::Json)?;
            render_json(&parsed, style)
        }
    } else if let Some(t) = v.text {
        t.into_bytes()
    } else if let Some(b) = &v.base64 {
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(BodyError::Base64)?
    } else {
        return Err(BodyError::Empty);
    };
    let actual = blake3::hash(&data);
    if actual.to_hex().as_str() != v.b3 || data.len() as u64 != v.len {
        return Err(BodyError::Mismatch {
            b3: v.b3,
            actual: actual.to_hex().to_string(),
            len: data.len(),
        });
    }
    Ok((
        BodyRef {
            b3: v.b3,
            len: v.len,
            encoding: v.encoding,
            at: None,
        },
        data,
    ))
}

/// Writes a session as a tape, every body inline. `body` returns a body's bytes by blake3.
pub fn write<W: Write>(
    out: &mut W,
    session: &str,
    events: &[Event],
    mut body: impl FnMut(&BodyRef) -> Result<Vec<u8>, crate::StoreError>,
    progress: impl FnMut(usize),
) -> Result<(), TapeWriteError> {
    write_run(
        out,
        Run {
            session,
            exit_code: None,
            shape: RunShape::of(events),
        },
        |each| each_of(events, each),
        |r, sink| sink(&body(r)?),
        None,
        progress,
    )
}

/// Hands each of `events` to `each`, with its index, until one fails.
pub fn each_of(events: &[Event], each: EachEvent<'_>) -> Result<(), TapeWriteError> {
    events
        .iter()
        .enumerate()
        .try_for_each(|(i, ev)| each(i, ev))
}

/// Takes the events a tape is written from, one at a time, with their index.
pub type EachEvent<'a> = &'a mut dyn FnMut(usize, &Event) -> Result<(), TapeWriteError>;

/// What a tape's header says of the events under it, known before the first is written
/// (so a session read from the store one event at a time is written in one pass).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunShape {
    pub events: u64,
    /// The longest body of any event (request, response, WebSocket message).
    pub longest_body: u64,
    /// Whether any event is a WebSocket.
    pub ws: bool,
}

impl RunShape {
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> RunShape {
        let mut shape = RunShape::default();
        events.into_iter().for_each(|ev| shape.see(ev));
        shape
    }

    /// Counts `ev` in.
    pub fn see(&mut self, ev: &Event) {
        self.events += 1;
        self.longest_body = body_lens(ev).fold(self.longest_body, u64::max);
        self.ws |= ev.ws.is_some();
    }

    /// The oldest format that holds these events, their large bodies going to `files`.
    fn version(&self, files: Option<&BodyFiles>) -> u32 {
        if files.is_some_and(|f| f.wants(self.longest_body)) {
            TAPE_VERSION_FILES
        } else if self.ws {
            TAPE_VERSION_WS
        } else {
            TAPE_VERSION_HTTP
        }
    }
}

/// Pushes a body's bytes, a part at a time, to the sink it is given.
pub type BodySink<'a> = &'a mut dyn FnMut(&[u8]) -> Result<(), TapeWriteError>;

/// What a tape's header says: the session, the exit status of the command it was
/// recorded around, and what the events under it need.
pub struct Run<'a> {
    pub session: &'a str,
    pub exit_code: Option<i32>,
    pub shape: RunShape,
}

/// Writes a session as a tape, under the header `run` describes. `events` hands each event in turn to the writer it is given, after the header
/// that `shape` describes; `body` pushes a body's bytes (by blake3) to a sink, a part at a
/// time; with `files`, bodies it wants go to files beside the tape instead of inline.
pub fn write_run<W: Write>(
    out: &mut W,
    run: Run<'_>,
    events: impl FnOnce(EachEvent<'_>) -> Result<(), TapeWriteError>,
    mut body: impl FnMut(&BodyRef, BodySink) -> Result<(), TapeWriteError>,
    mut files: Option<&mut BodyFiles>,
    mut progress: impl FnMut(usize),
) -> Result<(), TapeWriteError> {
    let header = TapeHeader {
        tapedeck_tape: run.shape.version(files.as_deref()),
        session: run.session.to_string(),
        events: run.shape.events,
        exit_code: run.exit_code,
    };
    serde_json::to_writer(&mut *out, &header)?;
    out.write_all(b"\n")?;
    events(&mut |i, ev| {
        let line = ev.clone().map_bodies(|r| {
            if let Some(f) = files.as_deref_mut().filter(|f| f.wants(r.len)) {
                let reference = f.write(&r, |sink| body(&r, sink))?;
                return Ok::<_, TapeWriteError>(InlineBody {
                    file: Some(reference),
                    ..bare(&r)
                });
            }
            // Capacity from the store's own record, bounded all the same.
            let mut data = Vec::with_capacity(r.len.min(1 << 24) as usize);
            body(&r, &mut |part| {
                data.extend_from_slice(part);
                Ok(())
            })?;
            Ok(inline(&r, &data))
        })?;
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        progress(i + 1);
        Ok(())
    })?;
    Ok(out.flush()?)
}

/// The lengths of an event's bodies: request, response, WebSocket messages.
fn body_lens(ev: &Event) -> impl Iterator<Item = u64> + '_ {
    std::iter::once(ev.request.body.len)
        .chain(ev.response.iter().map(|r| r.body.len))
        .chain(ev.ws.iter().flat_map(|w| &w.messages).map(|m| m.body.len))
}

/// Reads a whole tape, or refuses it. Inline bodies are held in memory; body files are
/// checked and left on disk.
pub fn read(path: &Path) -> Result<Tape, TapeError> {
    collect_parsing_ahead(TapeReader::open(path)?)
}

/// [`read`], from any reader (`path` names it in messages and locates body files).
pub fn read_from<R: BufRead>(reader: R, path: &Path) -> Result<Tape, TapeError> {
    collect(TapeReader::new(reader, path)?)
}

fn collect<R: BufRead>(mut reader: TapeReader<R>) -> Result<Tape, TapeError> {
    let mut tape = Gathered::for_events(reader.header.events);
    while let Some((ev, new)) = reader.next_event()? {
        tape.keep(ev, new);
    }
    Ok(tape.into_tape(reader.header))
}

/// A whole tape's events and bodies, as they are read.
struct Gathered {
    events: Vec<Event>,
    bodies: HashMap<String, Bytes>,
    files: HashMap<String, FileBody>,
}

impl Gathered {
    fn for_events(n: u64) -> Gathered {
        Gathered {
            events: Vec::with_capacity(n.min(1 << 20) as usize),
            bodies: HashMap::new(),
            files: HashMap::new(),
        }
    }

    /// An event and the bodies it brought that the tape had not had before.
    fn keep(&mut self, ev: Event, new: Vec<TapeBody>) {
        for b in new {
            match b {
                TapeBody::Inline(r, data) => self.bodies.insert(r.b3, data).map(|_| ()),
                TapeBody::File(r, f) => self.files.insert(r.b3, f).map(|_| ()),
            };
        }
        self.events.push(ev);
    }

    fn into_tape(self, header: TapeHeader) -> Tape {
        Tape {
            header,
            events: self.events,
            bodies: self.bodies,
            files: self.files,
        }
    }
}

/// Lines a batch of the read-ahead thread carries at most (see [`collect_parsing_ahead`]),
/// and the bytes of lines it may have parsed that this thread has not yet taken.
const AHEAD_BATCH: usize = 256;
const AHEAD_BYTES: usize = 4 << 20;

/// Lines parsed ahead, by their line numbers (up to and with the first that could not be
/// read or parsed), and their bytes.
struct Batch {
    lines: Vec<(usize, Result<Event<InlineBody>, LineError>)>,
    bytes: usize,
}

/// What the read-ahead thread sends: batches, then the number of the tape's last line.
enum Ahead {
    Parsed(Batch),
    End(usize),
}

/// The bytes parsed ahead and not yet taken, and whether the taking side stopped.
#[derive(Default)]
struct InFlight {
    state: std::sync::Mutex<(usize, bool)>,
    taken: std::sync::Condvar,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits while more than [`AHEAD_BYTES`] are parsed and not taken; false once the
    /// taking side stopped.
    fn room(&self) -> bool {
        let mut s = self.lock();
        while s.0 > AHEAD_BYTES && !s.1 {
            s = self.taken.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        !s.1
    }

    fn add(&self, bytes: usize) {
        self.lock().0 += bytes;
    }

    fn took(&self, bytes: usize) {
        self.lock().0 -= bytes;
        self.taken.notify_one();
    }
}

/// Tells the read-ahead thread the taking side stopped, however it ends.
struct Stop<'a>(&'a InFlight);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.lock().1 = true;
        self.0.taken.notify_one();
    }
}

/// [`collect`], with the lines read and their JSON parsed on a second thread while this
/// one checks the events and their bodies in order (a tape of 100,000 events is read
/// each time it is replayed). Errors are the same, for the same line: the first line that
/// fails, in order, stops both. What is parsed ahead is bounded ([`AHEAD_BYTES`]): the
/// reader reads a line only while less is waiting, so a tape whose lines hold large
/// bodies (the first format's) holds at most one such line more than one line at a time
/// did.
fn collect_parsing_ahead<R: BufRead + Send>(mut reader: TapeReader<R>) -> Result<Tape, TapeError> {
    let Some(lines) = reader.lines.take() else {
        return collect(reader);
    };
    let mut tape = Gathered::for_events(reader.header.events);
    let start = reader.line;
    let in_flight = InFlight::default();
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel::<Ahead>();
        let ahead = &in_flight;
        s.spawn(move || {
            let mut line = start;
            let mut batch = Batch {
                lines: Vec::with_capacity(AHEAD_BATCH),
                bytes: 0,
            };
            let mut lines = lines;
            loop {
                // Full, or more than enough waiting: send what is parsed, then wait for
                // room (never with a batch of its own unsent, which would wait forever).
                let waiting = ahead.lock().0 > AHEAD_BYTES;
                if (batch.lines.len() == AHEAD_BATCH || waiting) && !batch.lines.is_empty() {
                    let full = std::mem::replace(
                        &mut batch,
                        Batch {
                            lines: Vec::with_capacity(AHEAD_BATCH),
                            bytes: 0,
                        },
                    );
                    if tx.send(Ahead::Parsed(full)).is_err() {
                        return;
                    }
                }
                if !ahead.room() {
                    return;
                }
                let Some(read) = lines.next() else { break };
                line += 1;
                let bytes = read.as_ref().map_or(0, Vec::len);
                let Some(parsed) = parse_line(read) else {
                    continue;
                };
                ahead.add(bytes);
                batch.bytes += bytes;
                let failed = parsed.is_err();
                batch.lines.push((line, parsed));
                if failed {
                    let _ = tx.send(Ahead::Parsed(batch));
                    return;
                }
            }
            if !batch.lines.is_empty() && tx.send(Ahead::Parsed(batch)).is_err() {
                return;
            }
            let _ = tx.send(Ahead::End(line));
        });
        let _stop = Stop(&in_flight);
        for ahead in rx {
            match ahead {
                Ahead::Parsed(batch) => {
                    for (line, parsed) in batch.lines {
                        let (ev, new) = reader.accept(line, parsed)?;
                        tape.keep(ev, new);
                    }
                    in_flight.took(batch.bytes);
                }
                Ahead::End(last) => {
                    reader.line = last;
                    reader.check_count()?;
                    return Ok(());
                }
            }
        }
        // The thread ended without its end: it panicked (the scope passes the panic on).
        Ok(())
    })?;
    Ok(tape.into_tape(reader.header))
}

/// A tape's line as read: `None` when it is empty (skipped), else its event parsed, or
/// why it could not be read or parsed.
fn parse_line(read: std::io::Result<Vec<u8>>) -> Option<Result<Event<InlineBody>, LineError>> {
    match read {
        Err(e) => Some(Err(LineError::Read(e))),
        Ok(l) if l.is_empty() => None,
        Ok(l) => {
            Some(crate::sled_store::from_json::<Event<InlineBody>>(&l).map_err(LineError::NotEvent))
        }
    }
}

/// A body met for the first time while reading a tape, checked against its blake3.
pub enum TapeBody {
    Inline(BodyRef, Bytes),
    File(BodyRef, FileBody),
}

/// Reads a tape an event at a time, checking each line as it comes; the header's count
/// is checked at the end.
pub struct TapeReader<R> {
    /// The lines still to read; `None` once handed to a read-ahead thread.
    lines: Option<std::io::Split<R>>,
    path: PathBuf,
    header: TapeHeader,
    version: u64,
    /// Bodies met so far (blake3 → length), each checked once.
    seen: HashMap<String, u64>,
    line: usize,
    events: u64,
    last_step: u64,
    /// The blake3 of the header and of every line read since [`TapeReader::digest_lines`]
    /// (only `import` asks: a tape replayed or viewed is read once).
    read: blake3::Hasher,
    digesting: bool,
}

impl TapeReader<BufReader<std::fs::File>> {
    pub fn open(path: &Path) -> Result<Self, TapeError> {
        let file = std::fs::File::open(path).map_err(|source| TapeError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        TapeReader::new(BufReader::with_capacity(1 << 20, file), path)
    }
}

impl<R: BufRead> TapeReader<R> {
    /// Reads and checks the header.
    pub fn new(reader: R, path: &Path) -> Result<Self, TapeError> {
        let line_err = |problem: LineError| TapeError::Line {
            path: path.to_path_buf(),
            line: 1,
            problem,
        };
        let mut lines = reader.split(b'\n');
        let first = match lines.next() {
            Some(Ok(l)) => l,
            Some(Err(e)) => return Err(line_err(LineError::Read(e))),
            None => {
                return Err(TapeError::Empty {
                    path: path.to_path_buf(),
                })
            }
        };
        let head: Value =
            serde_json::from_slice(&first).map_err(|e| line_err(LineError::NotHeader(e)))?;
        let version = head
            .get("tapedeck_tape")
            .and_then(Value::as_u64)
            .ok_or_else(|| line_err(LineError::NoVersion))?;
        if version > TAPE_VERSION as u64 {
            return Err(line_err(LineError::Newer(version)));
        }
        let header: TapeHeader =
            serde_json::from_value(head).map_err(|e| line_err(LineError::BadHeader(e)))?;
        tapedeck_model::session::SessionName::new(&header.session)
            .map_err(|e| line_err(e.into()))?;
        let mut read = blake3::Hasher::new();
        read.update(&first).update(b"\n");
        Ok(TapeReader {
            lines: Some(lines),
            path: path.to_path_buf(),
            header,
            version,
            seen: HashMap::new(),
            line: 1,
            events: 0,
            last_step: 0,
            read,
            digesting: false,
        })
    }

    pub fn header(&self) -> &TapeHeader {
        &self.header
    }

    /// Takes the blake3 of every line read from now on (call it before the first event).
    pub fn digest_lines(mut self) -> Self {
        self.digesting = true;
        self
    }

    /// The blake3 of the tape's lines read so far: two readers of one file that give the
    /// same digest once both have ended read the same tape.
    pub fn digest(&self) -> blake3::Hash {
        self.read.finalize()
    }

    /// The next event with the bodies it brings that the tape had not had before; `None`
    /// once the tape has ended as its header said it would.
    pub fn next_event(&mut self) -> Result<Option<(Event, Vec<TapeBody>)>, TapeError> {
        loop {
            let Some(line) = self.lines.as_mut().and_then(|l| l.next()) else {
                self.check_count()?;
                return Ok(None);
            };
            self.line += 1;
            if let (true, Ok(l)) = (self.digesting, &line) {
                self.read.update(l).update(b"\n");
            }
            let Some(parsed) = parse_line(line) else {
                continue;
            };
            return self.accept(self.line, parsed).map(Some);
        }
    }

    /// Line number `line`, read and parsed: the event checked ([`TapeReader::take`]) and
    /// counted, or the line's error.
    fn accept(
        &mut self,
        line: usize,
        parsed: Result<Event<InlineBody>, LineError>,
    ) -> Result<(Event, Vec<TapeBody>), TapeError> {
        self.line = line;
        let taken = parsed
            .and_then(|ev| self.take(ev))
            .map_err(|e| self.line_err(e))?;
        self.events += 1;
        Ok(taken)
    }

    /// At the tape's end: as many events as its header said.
    fn check_count(&self) -> Result<(), TapeError> {
        if self.events != self.header.events {
            return Err(TapeError::Count {
                path: self.path.clone(),
                expected: self.header.events,
                found: self.events as usize,
                last_line: self.line,
            });
        }
        Ok(())
    }

    fn line_err(&self, problem: LineError) -> TapeError {
        TapeError::Line {
            path: self.path.clone(),
            line: self.line,
            problem,
        }
    }

    /// Checks a parsed event, in the tape's order: its bodies (each new one against its
    /// blake3), what later code trusts of it, its step after the last.
    fn take(&mut self, ev: Event<InlineBody>) -> Result<(Event, Vec<TapeBody>), LineError> {
        let mut new = Vec::new();
        let ev = ev.map_bodies(|b| {
            let r = BodyRef {
                b3: b.b3.clone(),
                len: b.len,
                encoding: b.encoding.clone(),
                at: None,
            };
            // Seen already and checked: not read again.
            if self.seen.get(&b.b3) == Some(&b.len) {
                return Ok(r);
            }
            if let Some(reference) = &b.file {
                if self.version < TAPE_VERSION_FILES as u64 {
                    return Err(LineError::FileInOldFormat(self.version));
                }
                let f = tape_files::open(&self.path, reference, &r)?;
                new.push(TapeBody::File(r.clone(), f));
            } else {
                let (r, data) = materialize(b)?;
                new.push(TapeBody::Inline(r, Bytes::from(data)));
            }
            self.seen.insert(r.b3.clone(), r.len);
            Ok::<_, LineError>(r)
        })?;
        check_event(&ev).map_err(|problem| LineError::Invalid {
            step: ev.step,
            problem,
        })?;
        if ev.step <= self.last_step {
            return Err(LineError::Order {
                step: ev.step,
                last: self.last_step,
            });
        }
        self.last_step = ev.step;
        Ok((ev, new))
    }
}

/// Checks what later code trusts of an event beyond its bodies (whose lengths and hashes
/// `materialize` checks): times are in order and within [`MAX_EXCHANGE_TIME`], chunk
/// offsets are finite and in range, chunk lengths add up (without overflow) to no more
/// than the body, the status is a status, headers can be sent.
fn check_event(ev: &Event) -> Result<(), InvalidEvent> {
    let max_ns = MAX_EXCHANGE_TIME.as_nanos() as u64;
    let max_ms = MAX_EXCHANGE_TIME.as_millis() as f64;
    let t = &ev.timing;
    if t.end_ns < t.start_ns || t.end_unix_ns < t.start_unix_ns {
        return Err(InvalidEvent::EndsBeforeStart);
    }
    if t.end_ns - t.start_ns > max_ns || t.end_unix_ns - t.start_unix_ns > max_ns {
        return Err(InvalidEvent::TooLong {
            days: MAX_EXCHANGE_TIME.as_secs() / 86400,
        });
    }
    if let Some(ttfb) = t.ttfb_ns.filter(|n| *n > max_ns) {
        return Err(InvalidEvent::Ttfb { ttfb, max_ns });
    }
    for (index, m) in ev.ws.iter().flat_map(|w| &w.messages).enumerate() {
        if !(m.at_ms.is_finite() && (0.0..=max_ms).contains(&m.at_ms)) {
            return Err(InvalidEvent::MessageTime {
                index,
                at_ms: m.at_ms,
                max_ms,
            });
        }
        let most = match m.op {
            tapedeck_model::exchange::ws::WsOp::Close => 123,
            op if op.is_data() => u64::MAX,
            _ => 125,
        };
        if m.body.len > most {
            return Err(InvalidEvent::MessageSize {
                index,
                op: m.op.as_str(),
                most,
                len: m.body.len,
            });
        }
    }
    check_request_line(&ev.request)?;
    check_headers(&ev.request.headers)?;
    let Some(r) = &ev.response else {
        return Ok(());
    };
    check_headers(&r.headers)?;
    check_headers(&r.trailers)?;
    if !(100..=999).contains(&r.status) {
        return Err(InvalidEvent::Status(r.status));
    }
    let mut sum = 0u64;
    for (index, c) in r.chunks.iter().flatten().enumerate() {
        if !(c.at_ms.is_finite() && (0.0..=max_ms).contains(&c.at_ms)) {
            return Err(InvalidEvent::ChunkTime {
                index,
                at_ms: c.at_ms,
                max_ms,
            });
        }
        sum = sum
            .checked_add(c.len)
            .filter(|s| *s <= r.body.len)
            .ok_or(InvalidEvent::ChunkLengths(r.body.len))?;
    }
    Ok(())
}

/// The request line can be sent and matched: a method that is an HTTP token, an
/// absolute URL with a host and no space or control character (replay keys it and a
/// what-if run may send it).
fn check_request_line(r: &tapedeck_model::exchange::RequestRecord) -> Result<(), InvalidEvent> {
    if http::Method::from_bytes(r.method.as_bytes()).is_err() {
        return Err(InvalidEvent::Method(r.method.clone()));
    }
    let rest = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .find_map(|s| r.url.strip_prefix(s));
    let host_ok = rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !host_ok || r.url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidEvent::Url(r.url.clone()));
    }
    Ok(())
}

/// Headers are as tapedeck writes them and as HTTP can carry them. Names are lower case:
/// replay recognises the framing headers it must recompute (`content-length`, ...) by
/// name, so a `Content-Length` that slipped through would go out beside the real length
/// and desynchronise the connection. Names are HTTP tokens and values hold no line break
/// or other control character (a tab aside): such a header could not be sent, and one
/// edited in to smuggle a header of its own into the answer is refused here, with its
/// line, rather than when it is served.
fn check_headers(headers: &[tapedeck_model::exchange::Header]) -> Result<(), InvalidEvent> {
    for (name, value) in headers {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(InvalidEvent::HeaderCase(name.clone()));
        }
        // The checks replay's sending makes (`http`'s), made here with the line.
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(InvalidEvent::HeaderName(name.clone()));
        }
        // A value that is not UTF-8 is stored as its bytes, marked (see `header_text`).
        let bytes = tapedeck_model::exchange::header_bytes(value)
            .ok_or_else(|| InvalidEvent::HeaderBytes(name.clone()))?;
        if http::HeaderValue::from_bytes(&bytes).is_err() {
            return Err(InvalidEvent::HeaderValue(name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_ref(data: &[u8]) -> BodyRef {
        BodyRef {
            b3: blake3::hash(data).to_hex().to_string(),
            len: data.len() as u64,
            encoding: None,
            at: None,
        }
    }

    #[test]
    fn headers_http_can_carry_pass_and_the_rest_are_named() {
        let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        // A tab, UTF-8 (obs-text on the wire) and every token byte are fine.
        for ok in [
            h("content-disposition", "attachment; filename=\"naïve.txt\""),
            h("x-tabbed", "a\tb"),
            h("x-!#$%&'*+-.^_`|~09az", "v"),
            h("x-empty", ""),
            h("content-disposition", "\0base64:YXR0YWNobWVudDsgcj/p"),
        ] {
            assert!(check_headers(&ok).is_ok(), "{ok:?}");
        }
        for (bad, want) in [
            (
                h("x-note", "a\r\nset-cookie: x=1"),
                "its value holds a line break",
            ),
            (h("x-nul", "a\0b"), "its value holds a line break"),
            (h("x-del", "a\u{7f}"), "its value holds a line break"),
            (h("x note", "1"), "is not an HTTP header name"),
            (h("", "1"), "is not an HTTP header name"),
            (h("x:y", "1"), "is not an HTTP header name"),
            (h("Content-Length", "1"), "is not lower case"),
            // Kept as bytes: the base64 must be base64, and its bytes sendable ("a\r\nb").
            (h("x-bytes", "\0base64:not base64!"), "whose base64 is not"),
            (
                h("x-bytes", "\0base64:YQ0KYg=="),
                "its value holds a line break",
            ),
        ] {
            let err = check_headers(&bad).unwrap_err().to_string();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }

    #[test]
    fn json_bodies_inline_as_json_only_when_bytes_round_trip() {
        for data in [&br#"{"b":1,"a":[1,2]}"#[..], b"{\n  \"b\": 1\n}\n", b"[]"] {
            let v = inline(&body_ref(data), data);
            assert!(v.json.is_some(), "{:?}", String::from_utf8_lossy(data));
            assert_eq!(materialize(v).unwrap().1, data);
        }
        let odd = b"{\"a\":  1}";
        let v = inline(&body_ref(odd), odd);
        assert!(v.text.is_some(), "odd spacing must stay text");
        assert_eq!(materialize(v).unwrap().1, odd);
        let bin = [0u8, 159, 146, 150];
        let v = inline(&body_ref(&bin), &bin);
        assert!(v.base64.is_some());
        assert_eq!(materialize(v).unwrap().1, bin);
    }

    #[test]
    fn bodies_with_control_bytes_inline_as_base64() {
        let nuls = vec![0u8; 1000];
        let v = inline(&body_ref(&nuls), &nuls);
        assert!(v.base64.is_some() && v.text.is_none());
        assert!(serde_json::to_string(&v).unwrap().len() < 1500);
        assert_eq!(materialize(v).unwrap().1, nuls);
        let text = b"line\tone\r\n\x1b[1mbold\x1b[0m\n";
        assert!(inline(&body_ref(text), text).text.is_some());
    }

    fn event_line(timing: &str, chunks: &str) -> String {
        let body = r#"{"b3":"af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262","len":0,"text":""}"#;
        format!(
            r#"{{"step":1,"kind":"tool","key":"k","request":{{"method":"GET","url":"http://a.test/","version":"HTTP/1.1","headers":[],"body":{body}}},"response":{{"status":200,"version":"HTTP/1.1","headers":[],"body":{body},"chunks":{chunks},"complete":true}},"timing":{timing}}}"#
        )
    }

    #[test]
    fn hostile_times_and_chunk_lengths_are_refused_with_the_line() {
        let ok_timing =
            r#"{"start_ns":0,"end_ns":10,"ttfb_ns":5,"start_unix_ns":0,"end_unix_ns":10}"#;
        let cases = [
            (ok_timing, r#"[{"at_ms":1e300,"len":0}]"#, "at_ms"),
            (ok_timing, r#"[{"at_ms":-1,"len":0}]"#, "at_ms"),
            (
                ok_timing,
                r#"[{"at_ms":1,"len":9223372036854775808},{"at_ms":2,"len":9223372036854775808}]"#,
                "add up",
            ),
            (ok_timing, r#"[{"at_ms":1,"len":1}]"#, "add up"),
            (
                r#"{"start_ns":0,"end_ns":10,"ttfb_ns":18446744073709551615,"start_unix_ns":0,"end_unix_ns":10}"#,
                "null",
                "ttfb_ns",
            ),
            (
                r#"{"start_ns":0,"end_ns":18446744073709551615,"start_unix_ns":0,"end_unix_ns":10}"#,
                "null",
                "longer than",
            ),
            (
                r#"{"start_ns":10,"end_ns":0,"start_unix_ns":0,"end_unix_ns":10}"#,
                "null",
                "before it starts",
            ),
        ];
        for (timing, chunks, want) in cases {
            let text = format!(
                "{{\"tapedeck_tape\":1,\"session\":\"s\",\"events\":1}}\n{}\n",
                event_line(timing, chunks)
            );
            let err = read_from(std::io::Cursor::new(text), Path::new("t.jsonl"))
                .err()
                .unwrap_or_else(|| panic!("accepted {timing} {chunks}"))
                .to_string();
            assert!(err.starts_with("t.jsonl, line 2: step 1: "), "{err}");
            assert!(err.contains(want), "{want}: {err}");
        }
        let fine = format!(
            "{{\"tapedeck_tape\":1,\"session\":\"s\",\"events\":1}}\n{}\n",
            event_line(ok_timing, r#"[{"at_ms":1.5,"len":0}]"#)
        );
        assert!(read_from(std::io::Cursor::new(fine), Path::new("t.jsonl")).is_ok());
    }

    #[test]
    fn header_names_not_in_lower_case_are_refused_with_the_line() {
        let ok_timing =
            r#"{"start_ns":0,"end_ns":10,"ttfb_ns":5,"start_unix_ns":0,"end_unix_ns":10}"#;
        let line = event_line(ok_timing, "null");
        for (from, to) in [
            (
                r#""status":200,"version":"HTTP/1.1","headers":[]"#,
                r#""status":200,"version":"HTTP/1.1","headers":[["coNtent-length","10"]]"#,
            ),
            (
                r#""version":"HTTP/1.1","headers":[],"body""#,
                r#""version":"HTTP/1.1","headers":[["Authorization","x"]],"body""#,
            ),
        ] {
            let edited = line.replacen(from, to, 1);
            assert_ne!(edited, line);
            let text =
                format!("{{\"tapedeck_tape\":1,\"session\":\"s\",\"events\":1}}\n{edited}\n");
            let err = read_from(std::io::Cursor::new(text), Path::new("t.jsonl"))
                .err()
                .unwrap_or_else(|| panic!("accepted {to}"))
                .to_string();
            assert!(err.starts_with("t.jsonl, line 2: step 1: "), "{err}");
            assert!(err.contains("not lower case"), "{err}");
        }
    }

    #[test]
    fn an_edited_body_is_refused() {
        let data = b"hello";
        let mut v = inline(&body_ref(data), data);
        v.text = Some("hellO".into());
        assert!(materialize(v)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
    }

    fn event_with(step: u64, body: BodyRef) -> Event {
        let text = format!(
            "{{\"step\":{step},\"kind\":\"tool\",\"key\":\"k\",\"request\":{{\"method\":\"GET\",\"url\":\"http://a.test/\",\"version\":\"HTTP/1.1\",\"headers\":[],\"body\":{{\"b3\":\"{}\",\"len\":0}}}},\"timing\":{{\"start_ns\":0,\"end_ns\":1,\"start_unix_ns\":0,\"end_unix_ns\":1}}}}",
            blake3::hash(b"").to_hex()
        );
        let mut ev: Event = serde_json::from_str(&text).unwrap();
        ev.request.body = body;
        ev
    }

    /// A tape of `n` events, each with a JSON body of its own of about `pad` bytes more
    /// than a few, inline, as `export` writes it.
    fn long_tape(dir: &Path, n: u64, pad: usize) -> (PathBuf, Vec<Event>) {
        let path = dir.join(format!("long-{n}-{pad}.jsonl"));
        let body = |i: u64| format!("{{\"answer\":{i},\"pad\":\"{}\"}}", "x".repeat(pad));
        let bodies: HashMap<String, Vec<u8>> = (1..=n)
            .map(|i| body(i).into_bytes())
            .map(|b| (body_ref(&b).b3, b))
            .collect();
        let events: Vec<Event> = (1..=n)
            .map(|i| event_with(i, body_ref(body(i).as_bytes())))
            .collect();
        write_tape(&path, &events, &bodies, None);
        (path, events)
    }

    /// Writes `events` as a tape at `path` (bodies from `bodies`, large ones into
    /// `files` when given), as `export` does; returns its text.
    fn write_tape(
        path: &Path,
        events: &[Event],
        bodies: &HashMap<String, Vec<u8>>,
        files: Option<&mut BodyFiles>,
    ) -> String {
        let mut out = Vec::new();
        write_run(
            &mut out,
            Run {
                session: "s",
                exit_code: None,
                shape: RunShape::of(events),
            },
            |each| each_of(events, each),
            |r, sink| sink(&bodies[&r.b3]),
            files,
            |_| {},
        )
        .unwrap();
        std::fs::write(path, &out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// What reading `path` gives, as [`read`] does it (its lines parsed ahead on a
    /// second thread) and one line at a time ([`read_from`]): the events, or the error.
    fn both_ways(path: &Path) -> [Result<Vec<Event>, String>; 2] {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        [read(path), read_from(file, path)].map(|r| r.map(|t| t.events).map_err(|e| e.to_string()))
    }

    #[test]
    fn a_long_tape_reads_the_same_parsed_ahead_and_its_first_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // Lines of 100 KB, more than the read-ahead may hold (it waits for room), and
        // the 50th not JSON.
        let (path, events) = long_tape(dir.path(), 120, 100_000);
        assert!(std::fs::metadata(&path).unwrap().len() > 2 * AHEAD_BYTES as u64);
        let [ahead, one_by_one] = both_ways(&path);
        assert_eq!(ahead.unwrap(), events);
        assert_eq!(one_by_one.unwrap(), events);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[49] = "{";
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let [ahead, one_by_one] = both_ways(&path);
        let err = ahead.unwrap_err();
        assert!(err.contains("line 50: not a tapedeck event"), "{err}");
        assert_eq!(one_by_one.unwrap_err(), err);

        // Over three of the read-ahead's batches.
        let (path, events) = long_tape(dir.path(), 1000, 0);
        let [ahead, one_by_one] = both_ways(&path);
        assert_eq!(ahead.as_ref().unwrap(), &events);
        assert_eq!(one_by_one.unwrap(), events);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // `lines` with some replaced (by index: line 1, the header, is index 0).
        let with = |changes: &[(usize, &str)]| {
            let mut l = lines.clone();
            for (i, line) in changes {
                l[*i] = line;
            }
            std::fs::write(&path, l.join("\n") + "\n").unwrap();
            both_ways(&path)
        };
        // Line 700 is not JSON, and line 900 neither: the first is named, both ways.
        let [ahead, one_by_one] = with(&[(699, "not json"), (899, "{oops")]);
        let err = ahead.unwrap_err();
        assert!(err.contains("line 700: not a tapedeck event"), "{err}");
        assert_eq!(one_by_one.unwrap_err(), err);
        // A step out of order at line 600 (that of line 599 again).
        let [ahead, one_by_one] = with(&[(599, lines[598])]);
        let err = ahead.unwrap_err();
        assert!(err.contains("line 600: step 598 after step 598"), "{err}");
        assert_eq!(one_by_one.unwrap_err(), err);
        // Cut after line 500, blank lines at the end: the count is wrong, the last line
        // counted the same.
        std::fs::write(&path, lines[..500].join("\n") + "\n\n\n").unwrap();
        let [ahead, one_by_one] = both_ways(&path);
        let err = ahead.unwrap_err();
        assert!(err.contains("1000"), "{err}");
        assert_eq!(one_by_one.unwrap_err(), err);
    }

    #[test]
    fn large_bodies_go_to_files_once_and_small_ones_stay_inline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 7) as u8).collect();
        let small = b"{\"ok\":true}".to_vec();
        let bodies: HashMap<String, Vec<u8>> = [&big, &small, &Vec::new()]
            .into_iter()
            .map(|b| (body_ref(b).b3, b.clone()))
            .collect();
        let events: Vec<Event> = [&big, &small, &big]
            .iter()
            .enumerate()
            .map(|(i, b)| event_with(i as u64 + 1, body_ref(b)))
            .collect();
        let mut files = BodyFiles::new(&path, 0o600, 1000);
        let text = write_tape(&path, &events, &bodies, Some(&mut files));
        files.keep();
        assert!(text.starts_with("{\"tapedeck_tape\":3,"), "{text}");
        assert!(text.len() < 2000, "{text}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("run.bodies"))
                .unwrap()
                .count(),
            1
        );
        let tape = read(&path).unwrap();
        assert_eq!(tape.events, events);
        assert_eq!(tape.files[&body_ref(&big).b3].read_all().unwrap(), big);
        assert_eq!(tape.bodies[&body_ref(&small).b3], small);

        // A body file named by a tape of an older format is refused with its line.
        let old = text.replacen("\"tapedeck_tape\":3", "\"tapedeck_tape\":2", 1);
        let err = read_from(std::io::Cursor::new(old), &path)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("line 2: a body in a file needs tape format 3"),
            "{err}"
        );
    }
}
