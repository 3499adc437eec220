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

use tapedeck_model::exchange::canonical::{CanonicalPart, MultipartDigest};
use tapedeck_model::exchange::encoding::Coding;
use tapedeck_model::exchange::limit::{BodyFault, BodyReader, MaxBody, Sink};
use tapedeck_model::exchange::redact::{BodyScrubber, Collected};

/// A request body as matching needs it.
pub enum ReadBody {
    /// Decoded and streamed through the scrubber (not yet [`tapedeck_model::exchange::redact::finish_whole`]);
    /// at most the keep-whole limit.
    Whole(Vec<u8>),
    /// Over the keep-whole limit: only its length and the blake3 of its scrubbed bytes,
    /// and a multipart body's parts (see `MultipartDigest`).
    Large {
        b3: String,
        len: u64,
        parts: Option<Vec<CanonicalPart>>,
    },
}

pub struct RequestBody {
    pub body: ReadBody,
    /// The wire bytes as they came (still encoded), when asked for and within the limit:
    /// what a what-if run forwards if the request must go out after all.
    pub raw: Option<bytes::Bytes>,
    /// Set when the body went over `--max-body` (the key covers its first `max` bytes).
    pub too_large: Option<MaxBody>,
    /// Values of the secret fields the scrubber redacted.
    pub found: Collected,
}

impl RequestBody {
    /// What [`read`] makes of a body with no bytes (a GET's), with no scrubber or reader
    /// built for it: kept whole and empty, nothing found, its wire bytes (none) kept when
    /// `keep_raw`.
    pub fn empty(keep_raw: bool) -> RequestBody {
        RequestBody {
            body: ReadBody::Whole(Vec::new()),
            raw: keep_raw.then(bytes::Bytes::new),
            too_large: None,
            found: Collected::default(),
        }
    }
}

/// Scrubs a body, keeps it whole up to `keep` bytes, then only hashes it.
struct KeySink {
    scrubber: Option<BodyScrubber>,
    keep: usize,
    whole: Vec<u8>,
    /// Boxed (1.9 KB, for bodies past `keep` only): the request's future holds the sink.
    hasher: Option<Box<blake3::Hasher>>,
    /// A multipart body's parts, read once it is past `keep`.
    parts: Option<Box<MultipartDigest>>,
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
            let mut h = Box::new(blake3::Hasher::new());
            let whole = std::mem::take(&mut self.whole);
            h.update(&whole);
            if let Some(d) = self.parts.as_mut() {
                d.feed(&whole);
            }
            self.hasher = Some(h);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(bytes);
            if let Some(d) = self.parts.as_mut() {
                d.feed(bytes);
            }
        }
    }
}

/// Reads `incoming` to its end, or to `max` decoded bytes, whichever comes first; keeps
/// up to `raw_limit` wire bytes as they came (none when 0, or when the body is longer).
pub async fn read<B>(
    mut incoming: B,
    coding: Option<Coding>,
    keep: usize,
    max: MaxBody,
    scrubber: BodyScrubber,
    parts: Option<MultipartDigest>,
    raw_limit: usize,
) -> Result<RequestBody, hyper::Error>
where
    B: hyper::body::Body<Data = bytes::Bytes, Error = hyper::Error> + Unpin,
{
    let sink = KeySink {
        scrubber: Some(scrubber),
        keep,
        whole: Vec::new(),
        hasher: None,
        parts: parts.map(Box::new),
        len: 0,
    };
    let mut reader = BodyReader::new(coding, max, sink);
    let mut ended = true;
    let mut raw = (raw_limit > 0).then(Vec::new);
    while let Some(frame) = incoming.frame().await {
        if let Some(data) = frame?.data_ref() {
            if let Some(r) = raw.as_mut() {
                if r.len() + data.len() > raw_limit {
                    raw = None;
                } else {
                    r.extend_from_slice(data);
                }
            }
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
            parts: sink.parts.take().and_then(|d| d.finish()),
        },
        None => ReadBody::Whole(std::mem::take(&mut sink.whole)),
    };
    Ok(RequestBody {
        body,
        raw: raw.filter(|_| ended).map(bytes::Bytes::from),
        too_large,
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapedeck_model::exchange::redact::{FieldNames, Secrets};
    use tapedeck_model::rules::Rules;

    /// A request body with no bytes, as hyper hands a GET's to replay.
    fn no_bytes() -> impl hyper::body::Body<Data = bytes::Bytes, Error = hyper::Error> + Unpin {
        http_body_util::Empty::<bytes::Bytes>::new()
            .map_err(|never: std::convert::Infallible| -> hyper::Error { match never {} })
    }

    /// Replay skips reading a body that has no bytes: what it takes instead must be what
    /// reading it through the scrubber would have given, whatever the request says its
    /// body is, or a GET's key would change.
    #[tokio::test]
    async fn a_body_with_no_bytes_reads_as_the_empty_request_body() {
        let rules = Rules::default();
        let secrets = Secrets::default();
        for ct in [
            None,
            Some("application/json"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=xyz"),
            Some("application/xml"),
            Some("text/html"),
            Some("text/event-stream"),
            Some("text/plain"),
        ] {
            for coding in [None, Some("gzip"), Some("br"), Some("zstd")] {
                for raw_limit in [0, 1 << 20] {
                    let read = read(
                        no_bytes(),
                        coding.and_then(Coding::parse),
                        tapedeck_store::keep_limit(ct),
                        MaxBody::default(),
                        BodyScrubber::with_fields(ct, FieldNames::of(&rules), &secrets),
                        MultipartDigest::new(ct, &rules),
                        raw_limit,
                    )
                    .await
                    .unwrap();
                    let empty = RequestBody::empty(raw_limit > 0);
                    let what = format!("{ct:?} {coding:?} raw {raw_limit}");
                    match (&read.body, &empty.body) {
                        (ReadBody::Whole(a), ReadBody::Whole(b)) => assert_eq!(a, b, "{what}"),
                        _ => panic!("{what}: an empty body is kept whole"),
                    }
                    assert_eq!(read.raw, empty.raw, "{what}");
                    assert_eq!(read.too_large, empty.too_large, "{what}");
                    assert!(read.found.into_values().is_empty(), "{what}");
                }
            }
        }
    }
}
