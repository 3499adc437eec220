//! Reading a request body in replay, to key it: streamed through the same capped decoder
//! record uses, kept whole only up to the keep-whole limit and past it only hashed, so a
//! body that decodes to a gigabyte costs replay a hash, not a gigabyte.
//!
//! Record keys a body over the keep-whole limit by the blake3 of all its stored bytes
//! (decoded, then scrubbed of secrets: what [`tapedeck_store::BodyWriter`] hashes while it
//! writes segments); [`KeySink`] passes the decoded bytes through the same
//! [`BodyScrubber`] and hashes what comes out, and over `--max-body` both stop at exactly
//! the first `max` decoded bytes.

use http_body_util::BodyExt;
use hyper::body::Incoming;

use tapedeck_model::exchange::encoding::Coding;
use tapedeck_model::exchange::limit::{BodyFault, BodyReader, MaxBody, Sink};
use tapedeck_model::exchange::redact::{BodyScrubber, Collected};

/// A request body as matching needs it.
pub enum ReadBody {
    /// Decoded and streamed through the scrubber (not yet [`tapedeck_model::exchange::redact::finish_whole`]);
    /// at most the keep-whole limit.
    Whole(Vec<u8>),
    /// Over the keep-whole limit: only its length and the blake3 of its scrubbed bytes.
    Large { b3: String, len: u64 },
}

pub struct RequestBody {
    pub body: ReadBody,
    /// Set when the body went over `--max-body` (the key covers its first `max` bytes).
    pub too_large: Option<MaxBody>,
    /// Values of the secret fields the scrubber redacted.
    pub found: Collected,
}

/// Scrubs a body, keeps it whole up to `keep` bytes, then only hashes it.
struct KeySink {
    scrubber: Option<BodyScrubber>,
    keep: usize,
    whole: Vec<u8>,
    hasher: Option<blake3::Hasher>,
    len: u64,
}

impl Sink for KeySink {
    fn put(&mut self, bytes: &[u8]) {
        match self.scrubber.take() {
            Some(mut s) => {
                self.keep_or_hash(s.feed(bytes));
                self.scrubber = Some(s);
            }
            None => self.keep_or_hash(bytes),
        }
    }
}

impl KeySink {
    fn keep_or_hash(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.hasher.is_none() {
            if self.whole.len() + bytes.len() <= self.keep {
                self.whole.extend_from_slice(bytes);
                return;
            }
            let mut h = blake3::Hasher::new();
            h.update(&std::mem::take(&mut self.whole));
            self.hasher = Some(h);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(bytes);
        }
    }
}

/// Reads `incoming` to its end, or to `max` decoded bytes, whichever comes first.
pub async fn read(
    mut incoming: Incoming,
    coding: Option<Coding>,
    keep: usize,
    max: MaxBody,
    scrubber: BodyScrubber,
) -> Result<RequestBody, hyper::Error> {
    let sink = KeySink {
        scrubber: Some(scrubber),
        keep,
        whole: Vec::new(),
        hasher: None,
        len: 0,
    };
    let mut reader = BodyReader::new(coding, max, sink);
    let mut ended = true;
    while let Some(frame) = incoming.frame().await {
        if let Some(data) = frame?.data_ref() {
            // Past a fault the rest cannot change the key: stop reading.
            if reader.feed(data).is_err() {
                ended = false;
                break;
            }
        }
    }
    if ended {
        let _ = reader.finish();
    }
    let too_large = match reader.fault() {
        Some(BodyFault::TooLarge { max }) => Some(*max),
        _ => None,
    };
    let sink = reader.sink();
    let mut found = Collected::default();
    if let Some(s) = sink.scrubber.take() {
        let (rest, f) = s.finish();
        found = f;
        sink.keep_or_hash(&rest);
    }
    let body = match sink.hasher.take() {
        Some(h) => ReadBody::Large {
            b3: h.finalize().to_hex().to_string(),
            len: sink.len,
        },
        None => ReadBody::Whole(std::mem::take(&mut sink.whole)),
    };
    Ok(RequestBody {
        body,
        too_large,
        found,
    })
}
