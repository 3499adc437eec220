//! Capturing bodies while they stream: every frame is forwarded at once and a copy is
//! decoded, hashed and written to the store on the side. Nothing waits for the whole
//! body, and memory stays bounded for large ones (see [`BodyWriter`]).

use std::sync::Arc;
use std::time::Instant;

use crate::exchange::encoding::Coding;
use crate::exchange::limit::{BodyFault, BodyReader, MaxBody, Sink};
use crate::exchange::Chunk;
use crate::store::{BodyWriter, Store, WrittenBody};

/// Decoded bytes on their way into the store; a failed write is kept to report once.
struct StoreSink {
    store: Arc<dyn Store>,
    writer: BodyWriter,
    error: Option<String>,
}

impl Sink for StoreSink {
    fn put(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.writer.write(self.store.as_ref(), bytes) {
            self.error = Some(format!("store write failed: {e}"));
        }
    }
}

pub struct Capture {
    reader: BodyReader<StoreSink>,
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
    /// Set when the body was cut at `--max-body`: the stored body is its first part.
    pub too_large: Option<MaxBody>,
}

impl Capture {
    /// `encoding` is the `Content-Encoding` header; `keep_limit` how much is kept whole
    /// (see [`crate::store::keep_limit`]); `streaming` whether chunk times matter; `max`
    /// the most decoded bytes to take.
    pub fn new(
        store: Arc<dyn Store>,
        encoding: Option<&str>,
        keep_limit: usize,
        streaming: bool,
        start: Instant,
        max: MaxBody,
    ) -> Capture {
        let sink = StoreSink {
            store,
            writer: BodyWriter::new(keep_limit),
            error: None,
        };
        let reader = BodyReader::new(encoding.and_then(Coding::parse), max, sink);
        Capture {
            encoding: reader
                .coding()
                .and(encoding.map(|e| e.trim().to_ascii_lowercase())),
            reader,
            chunks: streaming.then(Vec::new),
            start,
            failed: None,
        }
    }

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
    pub fn feed(&mut self, data: &[u8]) -> Result<(), MaxBody> {
        let before = self.reader.len();
        let result = self.reader.feed(data);
        let grown = self.reader.len() - before;
        if grown > 0 {
            if let Some(chunks) = self.chunks.as_mut() {
                chunks.push(Chunk {
                    at_ms: round_ms(self.start.elapsed().as_secs_f64() * 1000.0),
                    len: grown,
                });
            }
        }
        self.note_store_error();
        match result {
            Ok(()) => Ok(()),
            Err(BodyFault::TooLarge { max }) => Err(max),
            Err(BodyFault::Undecodable(msg)) => {
                self.note_failure(msg);
                Ok(())
            }
        }
    }

    fn note_store_error(&mut self) {
        if let Some(e) = self.reader.sink().error.take() {
            self.note_failure(e);
        }
    }

    fn note_failure(&mut self, msg: String) {
        if self.failed.is_none() {
            tracing::error!("{msg}");
            self.failed = Some(msg);
        }
    }

    pub fn finish(mut self) -> Captured {
        if let Err(BodyFault::Undecodable(msg)) = self.reader.finish() {
            if self.failed.is_none() {
                self.note_failure(msg);
            }
        }
        self.note_store_error();
        let too_large = self.too_large();
        let sink = self.reader.sink();
        let writer = std::mem::replace(&mut sink.writer, BodyWriter::new(0));
        let body = match writer.finish(sink.store.as_ref()) {
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
            too_large,
        }
    }
}

/// Offsets are kept to the microsecond.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}
