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
    /// Where the last chunk ended in the stored bytes (written or held by the scrubber).
    stored_end: u64,
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
            stored_end: 0,
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

    /// A chunk is a decoded frame as it arrived, measured in stored bytes: what the
    /// scrubber wrote for it plus what it holds back (to be written as is unless a
    /// secret straddles the boundary), so chunks keep the frames' boundaries when a
    /// redaction shortens a body. The recorder fits any rest at the end.
    fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let at_ms = round_ms(self.start.elapsed().as_secs_f64() * 1000.0);
        let (result, held) = match self.scrubber.as_mut() {
            Some(s) => (
                self.writer.write(self.store.as_ref(), s.feed(bytes)),
                s.held(),
            ),
            None => (Ok(()), 0),
        };
        if let Err(e) = result {
            self.note_failure(format!("store write failed: {e}"));
        }
        if let Some(chunks) = self.chunks.as_mut() {
            let end = self.writer.len() + held as u64;
            chunks.push(Chunk {
                at_ms,
                len: end.saturating_sub(self.stored_end),
            });
            self.stored_end = end.max(self.stored_end);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::redact::Secrets;
    use crate::rules::Rules;
    use crate::store::SledStore;

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
        let mut c = Capture::new(store.clone(), None, 4096, true, Instant::now(), scrubber);
        let frame = |i: usize| {
            format!(
                "data: {{\"i\":{i},\"echo\":\"sk-live-0123456789abcdef\",\"pad\":\"{}\"}}\n\n",
                "x".repeat(900)
            )
        };
        for i in 0..20 {
            c.feed(frame(i).as_bytes());
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
}
