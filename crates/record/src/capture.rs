//! Capturing bodies while they stream: every frame is forwarded at once and a copy is
//! decoded (a buffer at a time, counted against `--max-body`), scrubbed of secrets,
//! hashed and written to the store on the side. Nothing waits for the whole body, and
//! memory stays bounded for large ones (see [`BodyWriter`]). Every stored byte passes
//! through the [`BodyScrubber`] first, so a body written in segments is as clean as one
//! kept whole.

use std::sync::Arc;
use std::time::Instant;

use tapedeck_model::exchange::canonical::MultipartDigest;
use tapedeck_model::exchange::encoding::Coding;
use tapedeck_model::exchange::limit::{BodyFault, BodyReader, CodingBreak, MaxBody, Sink};
use tapedeck_model::exchange::redact::{BodyScrubber, Collected};
use tapedeck_model::exchange::{header, Chunk, Header};
use tapedeck_model::rules::Rules;
use tapedeck_store::{BodyWriter, ReadySegments, Store, WrittenBody};

/// Decoded bytes on their way into the store: scrubbed, then written; a failed write is
/// kept to report once.
struct StoreSink {
    store: Arc<dyn Store>,
    writer: BodyWriter,
    scrubber: Option<BodyScrubber>,
    error: Option<String>,
}

impl StoreSink {
    fn write(&mut self, bytes: &[u8]) {
        if self.error.is_some() || bytes.is_empty() {
            return;
        }
        if let Err(e) = self.writer.write(self.store.as_ref(), bytes) {
            self.error = Some(tapedeck_store::unstored_error(e));
        }
    }

    /// Where the stored bytes end so far, counting what the scrubber holds back (to be
    /// written as is unless a secret straddles the boundary).
    fn stored_len(&self) -> u64 {
        self.writer.len() + self.scrubber.as_ref().map_or(0, |s| s.held()) as u64
    }
}

impl Sink for StoreSink {
    fn put(&mut self, bytes: &[u8]) {
        let StoreSink {
            store,
            writer,
            scrubber,
            error,
        } = self;
        if error.is_some() {
            // Still scrubbed: the secrets it finds are reported.
            if let Some(s) = scrubber.as_mut() {
                s.feed(bytes);
            }
            return;
        }
        let Some(s) = scrubber.as_mut() else {
            if let Err(e) = writer.write(store.as_ref(), bytes) {
                *error = Some(tapedeck_store::unstored_error(e));
            }
            return;
        };
        // The scrubber writes what is to be stored straight into the writer's segment, a
        // segment's room at a time (a larger piece would move the segment as it grew).
        let mut rest = bytes;
        while !rest.is_empty() {
            let (piece, more) = rest.split_at(writer.room().clamp(1, rest.len()));
            rest = more;
            if let Err(e) = writer.write_with(store.as_ref(), |buf| s.feed_into(piece, buf)) {
                *error = Some(tapedeck_store::unstored_error(e));
                s.feed(rest);
                return;
            }
        }
    }
}

pub struct Capture {
    reader: BodyReader<StoreSink>,
    /// The wire `Content-Encoding` when tapedeck decodes it.
    pub encoding: Option<String>,
    chunks: Option<Vec<Chunk>>,
    /// Where the last chunk ended in the stored bytes.
    stored_end: u64,
    start: Instant,
    pub failed: Option<String>,
    /// What the body is (its exchange), for the log line a failure gets.
    about: String,
}

pub struct Captured {
    pub body: WrittenBody,
    pub encoding: Option<String>,
    pub chunks: Option<Vec<Chunk>>,
    pub failed: Option<String>,
    /// Values of the secret fields the scrubber redacted.
    pub found: Collected,
    /// Set when the body was cut at `--max-body`: the stored body is its first part.
    pub too_large: Option<MaxBody>,
    /// A multipart body stored in segments: its parts, as matching reads them (see
    /// [`Capture::read_parts`]).
    pub parts: Option<Vec<tapedeck_model::exchange::canonical::CanonicalPart>>,
    /// Set when the body's coding broke after part of it decoded (see
    /// [`BodyReader::broke`]): whether the coded stream had ended first, and the wire
    /// bytes that broke it, not yet scrubbed.
    pub broke: Option<CodingBreak>,
    /// Where each gzip member but the last ended (see [`BodyReader::members`]).
    pub members: Vec<u64>,
}

impl Capture {
    /// `encoding` is the `Content-Encoding` header; `keep_limit` how much is kept whole
    /// (see [`tapedeck_store::keep_limit`]); `streaming` whether chunk times matter; `max`
    /// the most decoded bytes to take; `scrubber` what every stored byte passes.
    pub fn new(
        store: Arc<dyn Store>,
        encoding: Option<&str>,
        keep_limit: usize,
        streaming: bool,
        start: Instant,
        max: MaxBody,
        scrubber: BodyScrubber,
    ) -> Capture {
        let sink = StoreSink {
            store,
            writer: BodyWriter::new(keep_limit),
            scrubber: Some(scrubber),
            error: None,
        };
        let reader = BodyReader::new(encoding.and_then(Coding::parse), max, sink);
        Capture {
            encoding: reader
                .coding()
                .and(encoding.map(|e| e.trim().to_ascii_lowercase())),
            reader,
            chunks: streaming.then(Vec::new),
            stored_end: 0,
            start,
            failed: None,
            about: String::new(),
        }
    }

    /// Names the body in the log line a failure gets ("the response of step 3 from
    /// https://api.test/v1", say).
    pub fn about(mut self, what: String) -> Capture {
        self.about = what;
        self
    }

    /// Leaves the segments of a large body for [`Capture::take_ready`] (see
    /// [`BodyWriter::defer`]): the recorder stores them off the runtime's threads.
    pub fn defer_writes(&mut self) {
        self.reader.sink().writer.defer();
    }

    /// The capture of a request body with these (stored) `headers`, as record makes it:
    /// segments left to the writer thread, room made for its `Content-Length`, a
    /// multipart body's parts read; see [`Capture::new`] for the rest.
    pub fn of_request(
        store: Arc<dyn Store>,
        headers: &[Header],
        start: Instant,
        max: MaxBody,
        scrubber: BodyScrubber,
        rules: &Rules,
    ) -> Capture {
        let ct = header(headers, "content-type");
        let mut c = Capture::new(
            store,
            header(headers, "content-encoding"),
            tapedeck_store::keep_limit(ct),
            false,
            start,
            max,
            scrubber,
        );
        c.defer_writes();
        c.expect(header(headers, "content-length"));
        if let Some(digest) = MultipartDigest::new(ct, rules) {
            c.read_parts(digest);
        }
        c
    }

    /// Reads a multipart body's parts while it is stored, should it go past what is kept
    /// whole (a request matched by them: [`Captured::parts`]).
    pub fn read_parts(&mut self, digest: MultipartDigest) {
        self.reader.sink().writer.read_parts(digest);
    }

    /// The body's `Content-Length`, when it has one: room is made for it (see
    /// [`BodyWriter::expect`]).
    pub fn expect(&mut self, content_length: Option<&str>) {
        if let Some(len) = content_length.and_then(|v| v.trim().parse().ok()) {
            self.reader.sink().writer.expect(len);
        }
    }

    /// Finished segments waiting to be stored.
    pub fn take_ready(&mut self) -> ReadySegments {
        self.reader.sink().writer.take_ready()
    }

    /// Decoded bytes taken so far.
    pub fn len(&mut self) -> u64 {
        self.reader.len()
    }

    /// The cap, once the body has gone over it.
    pub fn too_large(&self) -> Option<MaxBody> {
        match self.reader.fault() {
            Some(BodyFault::TooLarge { max }) => Some(*max),
            _ => None,
        }
    }

    /// Takes one frame of wire bytes. An error means the body went over `--max-body`
    /// (the caller stops the exchange); an undecodable body is only noted.
    ///
    /// A chunk is a decoded frame as it arrived, measured in stored bytes, so chunks keep
    /// the frames' boundaries when a redaction shortens a body. The recorder fits any
    /// rest at the end.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), MaxBody> {
        let before = self.reader.len();
        let result = self.reader.feed(data);
        if self.reader.len() > before {
            if let Some(chunks) = self.chunks.as_mut() {
                let end = self.reader.sink().stored_len();
                chunks.push(Chunk {
                    at_ms: round_ms(self.start.elapsed().as_secs_f64() * 1000.0),
                    len: end.saturating_sub(self.stored_end),
                });
                self.stored_end = end.max(self.stored_end);
            }
        }
        self.note_store_error();
        match result {
            Ok(()) => Ok(()),
            Err(BodyFault::TooLarge { max }) => Err(max),
            Err(e @ BodyFault::Undecodable { .. }) => {
                self.note_failure(e.to_string());
                Ok(())
            }
        }
    }

    fn note_store_error(&mut self) {
        if let Some(e) = self.reader.sink().error.take() {
            self.note_failure(e);
        }
    }

    pub fn note_failure(&mut self, msg: String) {
        if self.failed.is_none() {
            let line = match self.about.as_str() {
                "" => msg.clone(),
                about => format!("{about}: {msg}"),
            };
            if msg.starts_with(tapedeck_store::UNSTORED) {
                say_unstored(line);
            } else {
                tracing::error!("{line}");
            }
            self.failed = Some(msg);
        }
    }

    pub fn finish(mut self) -> Captured {
        if let Err(e @ BodyFault::Undecodable { .. }) = self.reader.finish() {
            if self.failed.is_none() {
                self.note_failure(e.to_string());
            }
        }
        if self.reader.as_sent() {
            // Stored as it came, as the client got it (and replay serves it so).
            let coding = self.encoding.take().unwrap_or_default();
            match self.about.as_str() {
                "" => tracing::warn!("a body is not {coding} as its Content-Encoding says; stored as it came"),
                about => tracing::warn!("{about}: the body is not {coding} as its Content-Encoding says; stored as it came"),
            }
        }
        let too_large = self.too_large();
        let broke = self.reader.broke().cloned();
        let members = self.reader.members().to_vec();
        let sink = self.reader.sink();
        let mut found = Collected::default();
        if let Some(s) = sink.scrubber.take() {
            let (rest, f) = s.finish();
            found = f;
            sink.write(&rest);
        }
        self.note_store_error();
        let sink = self.reader.sink();
        let mut writer = std::mem::replace(&mut sink.writer, BodyWriter::new(0));
        let parts = writer.take_parts();
        let body = match writer.finish(sink.store.as_ref()) {
            Ok(b) => b,
            Err(e) => {
                self.note_failure(tapedeck_store::unstored_error(e));
                WrittenBody::Whole(Vec::new())
            }
        };
        Captured {
            body,
            encoding: self.encoding,
            chunks: self.chunks,
            failed: self.failed,
            found,
            too_large,
            broke,
            members,
            parts,
        }
    }
}

/// Offsets are kept to the microsecond.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Bodies the store could not take, said since the last error line about one, and when
/// that line was.
static UNSTORED_SAID: std::sync::Mutex<Option<(Instant, u64)>> = std::sync::Mutex::new(None);

/// How long after an error line about a body the store could not take the next ones are
/// only counted: a disk that is full refuses every body, and a line per exchange buried
/// what the recorder had to say (its last line counts every such exchange).
const UNSTORED_QUIET: std::time::Duration = std::time::Duration::from_secs(10);

fn say_unstored(line: String) {
    let mut said = UNSTORED_SAID.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    match &mut *said {
        Some((at, more)) if now.duration_since(*at) < UNSTORED_QUIET => {
            *more += 1;
            tracing::debug!("{line}");
        }
        _ => {
            match said.map_or(0, |(_, more)| more) {
                0 => tracing::error!("{line}"),
                more => tracing::error!(
                    "{line} ({more} more bodies could not be stored since the last such line, not logged one by one)"
                ),
            }
            *said = Some((now, 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapedeck_model::exchange::redact::{FieldNames, Secrets};
    use tapedeck_store::tree;
    use tapedeck_store::SledStore;

    #[test]
    fn a_scrubbed_stream_keeps_its_frames_in_stored_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut secrets = Secrets::default();
        secrets.add("Bearer sk-live-0123456789abcdef");
        let rules = Rules::default();
        let ct = Some("text/event-stream");
        let scrubber = BodyScrubber::new(ct, &rules, &secrets);
        // Past the keep-whole limit after a few frames: most are written in segments.
        let mut c = Capture::new(
            store.clone(),
            None,
            4096,
            true,
            Instant::now(),
            MaxBody::default(),
            scrubber,
        );
        let frame = |i: usize| {
            format!(
                "data: {{\"i\":{i},\"echo\":\"sk-live-0123456789abcdef\",\"pad\":\"{}\"}}\n\n",
                "x".repeat(900)
            )
        };
        for i in 0..20 {
            c.feed(frame(i).as_bytes()).unwrap();
        }
        let captured = c.finish();
        let WrittenBody::Stored { hash, len } = captured.body else {
            panic!("expected a body in segments");
        };
        let stored = store.get_body(&hash.to_hex()).unwrap().unwrap();
        assert_eq!(stored.len() as u64, len);
        let chunks = captured.chunks.unwrap();
        assert_eq!(chunks.len(), 20);
        let mut off = 0usize;
        for (i, ch) in chunks.iter().enumerate() {
            let piece = &stored[off..off + ch.len as usize];
            let want = frame(i).replace("sk-live-0123456789abcdef", "[REDACTED]");
            assert_eq!(String::from_utf8_lossy(piece), want, "chunk {i}");
            off += ch.len as usize;
        }
    }

    /// A body three segments long with a secret every 800 bytes or so and around each
    /// 256 KiB mark, fed in pieces larger and smaller than a segment: the scrubber writes
    /// into the segments directly, and what is stored is what scrubbing it whole gives,
    /// in segments of 256 KiB.
    #[test]
    fn a_large_body_scrubbed_into_its_segments_is_the_whole_body_scrubbed() {
        const KEY: &str = "sk-live-0123456789abcdef";
        let mut secrets = Secrets::default();
        secrets.add(KEY);
        let rules = Rules::default();
        let ct = Some("application/octet-stream");
        let mut body = Vec::new();
        let mut i = 0usize;
        while body.len() < 3 * tapedeck_store::SEGMENT {
            body.extend_from_slice(format!("{i:07} ").as_bytes());
            // Keys near each 256 KiB mark of the body as given.
            let to_edge = tapedeck_store::SEGMENT - body.len() % tapedeck_store::SEGMENT;
            if (KEY.len() - 5..KEY.len() + 40).contains(&to_edge) || i.is_multiple_of(97) {
                body.extend_from_slice(KEY.as_bytes());
            }
            i += 1;
        }
        let (want, _) = BodyScrubber::run(&body, ct, &rules, &secrets);
        for cut in [100_000usize, 7, 300_000] {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
            let mut c = Capture::new(
                store.clone(),
                None,
                4096,
                false,
                Instant::now(),
                MaxBody::default(),
                BodyScrubber::new(ct, &rules, &secrets),
            );
            for piece in body.chunks(cut) {
                c.feed(piece).unwrap();
            }
            let WrittenBody::Stored { hash, .. } = c.finish().body else {
                panic!("expected a body in segments");
            };
            let stored = store.get_body(&hash.to_hex()).unwrap().unwrap();
            assert!(
                stored == want,
                "pieces of {cut}: not the body scrubbed whole"
            );
            assert!(!stored.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
            let segments = store.body_segments(&hash.to_hex()).unwrap().unwrap();
            let slices: Vec<String> = want
                .chunks(tapedeck_store::SEGMENT)
                .enumerate()
                .map(|(i, c)| tree::part_name(&tree::segment_cv(c, i), i))
                .collect();
            assert_eq!(segments, slices, "pieces of {cut}");
        }
    }

    /// `Recorder::begin` builds no capture for a request with no body (a GET) and settles
    /// it as the empty body (`BodyRef::empty()`, nothing kept, nothing found): what a
    /// capture fed nothing gives, whatever the request says its body's type is, or a
    /// GET's stored request and key would change.
    #[test]
    fn a_request_capture_fed_nothing_is_the_empty_body() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let rules = Rules::default();
        let mut secrets = Secrets::default();
        secrets.add("Bearer sk-live-0123456789abcdef");
        let empty = tapedeck_model::exchange::BodyRef::empty();
        for ct in [
            None,
            Some("application/json"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=xyz"),
            Some("application/xml"),
            Some("text/html"),
            Some("text/plain"),
        ] {
            let headers: Vec<Header> = ct
                .map(|t| ("content-type".to_string(), t.to_string()))
                .into_iter()
                .collect();
            let got = Capture::of_request(
                store.clone(),
                &headers,
                Instant::now(),
                MaxBody::default(),
                BodyScrubber::with_fields(ct, FieldNames::of(&rules), &secrets),
                &rules,
            )
            .finish();
            let WrittenBody::Whole(data) = got.body else {
                panic!("{ct:?}: an empty body is kept whole");
            };
            let mut s = secrets.clone();
            let data =
                tapedeck_model::exchange::redact::finish_whole(data, ct, &rules, &mut s, None);
            assert_eq!(blake3::hash(&data).to_hex().as_str(), empty.b3, "{ct:?}");
            assert!(data.is_empty(), "{ct:?}");
            assert_eq!(got.encoding, empty.encoding, "{ct:?}");
            assert!(got.failed.is_none() && got.too_large.is_none(), "{ct:?}");
            assert!(got.parts.is_none(), "{ct:?}");
            assert!(got.found.into_values().is_empty(), "{ct:?}");
        }
    }
}
