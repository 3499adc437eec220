//! Capturing bodies while they stream: every frame is forwarded at once and a copy is
//! decoded, scrubbed of secrets, hashed and written to the store on the side. Nothing
//! waits for the whole body, and memory stays bounded for large ones (see
//! [`BodyWriter`]). Every stored byte passes through the [`BodyScrubber`] first, so a
//! body written in segments is as clean as one kept whole.

use std::sync::Arc;
use std::time::Instant;

use crate::exchange::encoding::{Coding, Decoder};
use crate::exchange::redact::{BodyScrubber, Collected};
use crate::exchange::Chunk;
use crate::store::{BodyWriter, Store, WrittenBody};

pub struct Capture {
    store: Arc<dyn Store>,
    writer: BodyWriter,
    scrubber: Option<BodyScrubber>,
    decoder: Option<Decoder>,
    /// The wire `Content-Encoding` when tapedeck decodes it.
    pub encoding: Option<String>,
    chunks: Option<Vec<Chunk>>,
    start: Instant,
    pub failed: Option<String>,
}

pub struct Captured {
    pub body: WrittenBody,
    pub encoding: Option<String>,
    pub chunks: Option<Vec<Chunk>>,
    pub failed: Option<String>,
    /// Values of the secret fields the scrubber redacted.
    pub found: Collected,
}

impl Capture {
    /// `encoding` is the `Content-Encoding` header; `keep_limit` how much is kept whole
    /// (see [`crate::store::keep_limit`]); `streaming` whether chunk times matter.
    pub fn new(
        store: Arc<dyn Store>,
        encoding: Option<&str>,
        keep_limit: usize,
        streaming: bool,
        start: Instant,
        scrubber: BodyScrubber,
    ) -> Capture {
        let coding = encoding.and_then(Coding::parse);
        let decoder = coding.and_then(|c| Decoder::new(c).ok());
        Capture {
            store,
            writer: BodyWriter::new(keep_limit),
            scrubber: Some(scrubber),
            encoding: decoder
                .as_ref()
                .and(encoding.map(|e| e.trim().to_ascii_lowercase())),
            decoder,
            chunks: streaming.then(Vec::new),
            start,
            failed: None,
        }
    }

    pub fn len(&self) -> u64 {
        self.writer.len()
    }

    pub fn feed(&mut self, data: &[u8]) {
        let decoded;
        let bytes: &[u8] = match self.decoder.as_mut() {
            Some(d) => match d.feed(data) {
                Ok(out) => {
                    decoded = out;
                    &decoded
                }
                Err(e) => {
                    self.note_failure(format!("cannot decode {:?} body: {e}", self.encoding));
                    self.decoder = None;
                    return;
                }
            },
            None => data,
        };
        self.write(bytes);
    }

    /// Chunk lengths are those of the decoded frames as they arrived; redaction may
    /// change the stored length, which the recorder fits the chunks to at the end.
    fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(chunks) = self.chunks.as_mut() {
            chunks.push(Chunk {
                at_ms: round_ms(self.start.elapsed().as_secs_f64() * 1000.0),
                len: bytes.len() as u64,
            });
        }
        let result = match self.scrubber.as_mut() {
            Some(s) => self.writer.write(self.store.as_ref(), s.feed(bytes)),
            None => Ok(()),
        };
        if let Err(e) = result {
            self.note_failure(format!("store write failed: {e}"));
        }
    }

    fn note_failure(&mut self, msg: String) {
        if self.failed.is_none() {
            tracing::error!("{msg}");
            self.failed = Some(msg);
        }
    }

    pub fn finish(mut self) -> Captured {
        if let Some(d) = self.decoder.take() {
            match d.finish() {
                Ok(rest) => self.write(&rest),
                Err(e) => self.note_failure(format!("truncated {:?} body: {e}", self.encoding)),
            }
        }
        let mut found = Collected::default();
        if let Some(s) = self.scrubber.take() {
            let (rest, f) = s.finish();
            found = f;
            if let Err(e) = self.writer.write(self.store.as_ref(), &rest) {
                self.note_failure(format!("store write failed: {e}"));
            }
        }
        let writer = std::mem::replace(&mut self.writer, BodyWriter::new(0));
        let body = match writer.finish(self.store.as_ref()) {
            Ok(b) => b,
            Err(e) => {
                self.note_failure(format!("store write failed: {e}"));
                WrittenBody::Whole(Vec::new())
            }
        };
        Captured {
            body,
            encoding: self.encoding,
            chunks: self.chunks,
            failed: self.failed,
            found,
        }
    }
}

/// Offsets are kept to the microsecond.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}
