//! Bounded work on bodies: the largest decoded body tapedeck handles (`--max-body`), and
//! the reader that streams a body through its decoder into a sink while counting.
//!
//! A 1 MB gzip body can decode to gigabytes. Record and replay both read every body
//! through a [`BodyReader`]: wire bytes go in frame by frame, decoded bytes come out a
//! decoder buffer at a time, and once `max` decoded bytes have passed, the rest is
//! refused. The sink gets exactly the first `max` bytes, whatever the framing, so record
//! and replay see the same prefix and key a too-large request alike.

use std::fmt;
use std::io::Write;
use std::str::FromStr;

use super::encoding::{Broke, Coding, Decoder};
use super::BROKE_TAIL_MAX;

/// The default `--max-body`: far above any LLM or tool exchange, far below a bomb.
pub const DEFAULT_MAX_BODY: u64 = 256 << 20;

/// The largest decoded body tapedeck handles, in bytes (`--max-body 64MiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxBody(pub u64);

impl Default for MaxBody {
    fn default() -> Self {
        MaxBody(DEFAULT_MAX_BODY)
    }
}

/// A `--max-body` that is not a size, or is zero.
#[derive(Debug, thiserror::Error)]
pub enum MaxBodyError {
    #[error("{text:?} is not a size (write it like 64MiB or 1GiB): {why}")]
    NotASize { text: String, why: String },
    #[error("--max-body must be more than 0 bytes")]
    Zero,
}

impl FromStr for MaxBody {
    type Err = MaxBodyError;

    /// `1048576`, `64MiB`, `64 MiB`, `1.5GiB`; `10MB` and `512k` count in powers of 1000.
    fn from_str(s: &str) -> Result<MaxBody, MaxBodyError> {
        // bytesize says why in a plain string: there is no error value to keep.
        let size: bytesize::ByteSize =
            s.trim()
                .parse()
                .map_err(|why: String| MaxBodyError::NotASize {
                    text: s.to_string(),
                    why,
                })?;
        if size.as_u64() == 0 {
            return Err(MaxBodyError::Zero);
        }
        Ok(MaxBody(size.as_u64()))
    }
}

impl fmt::Display for MaxBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{} {unit}", n / size);
            }
        }
        write!(f, "{n} bytes")
    }
}

/// Where decoded bytes go: the store while recording, a key while replaying.
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Why a body stopped being read. Cloned because the reader keeps its first fault and
/// hands it out again; the decoder's error is shared for that.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BodyFault {
    /// More than `max` decoded bytes; the sink holds the first `max`.
    #[error("the body is larger than {max} decoded (--max-body); only its first {max} were read")]
    TooLarge { max: MaxBody },
    /// The bytes do not decode as their `Content-Encoding` says.
    #[error("cannot decode the {coding} body: {source}")]
    Undecodable {
        coding: String,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
}

/// Counts decoded bytes and passes at most `max` of them to the sink.
struct Capped<S> {
    sink: S,
    max: u64,
    len: u64,
    over: bool,
}

const OVER: &str = "tapedeck: decoded body over --max-body";

impl<S: Sink> Write for Capped<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.over {
            return Err(std::io::Error::other(OVER));
        }
        let room = self.max - self.len;
        if buf.len() as u64 > room {
            self.sink.put(&buf[..room as usize]);
            self.len = self.max;
            self.over = true;
            return Err(std::io::Error::other(OVER));
        }
        self.sink.put(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Stage<S: Sink> {
    Plain(Capped<S>),
    Coded(Box<Decoder<Capped<S>>>),
}

/// One body read as it streams: wire bytes in, at most `max` decoded bytes out to a sink.
pub struct BodyReader<S: Sink> {
    stage: Stage<S>,
    fault: Option<BodyFault>,
    coding: Option<Coding>,
    /// The wire bytes read while nothing has decoded yet: a body that is not in the
    /// coding its header names (an upstream's bug) is passed on as it came instead.
    raw: Option<Vec<u8>>,
    /// Set once the body turned out not to be in its coding: bytes go through as they are.
    as_sent: bool,
    /// Set when the coding broke after some of the body decoded.
    broke: Option<CodingBreak>,
}

/// How a body's coding broke after some of it decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodingBreak {
    /// The coded stream had ended whole before the bytes that broke it.
    pub ended: bool,
    /// Its data ended whole but its checksum trailer did not match or was cut short:
    /// `tail` starts with the trailer's bytes as they came.
    pub trailer: bool,
    /// The first wire bytes that broke it (up to [`BROKE_TAIL_MAX`]).
    pub tail: Vec<u8>,
}

/// How many wire bytes are kept while nothing has decoded, to fall back on.
const RAW_KEEP: usize = 64 << 10;

impl<S: Sink> BodyReader<S> {
    /// `coding` is the body's `Content-Encoding` when tapedeck decodes it.
    pub fn new(coding: Option<Coding>, max: MaxBody, sink: S) -> BodyReader<S> {
        let capped = Capped {
            sink,
            max: max.0,
            len: 0,
            over: false,
        };
        let stage = match coding {
            None => Stage::Plain(capped),
            Some(c) => match Decoder::new(c, capped) {
                Ok(d) => Stage::Coded(Box::new(d)),
                // Only zstd can fail to set up (out of memory); read the bytes as they are.
                Err(capped) => Stage::Plain(capped),
            },
        };
        let coding = matches!(stage, Stage::Coded(_)).then_some(coding).flatten();
        BodyReader {
            stage,
            fault: None,
            raw: coding.map(|_| Vec::new()),
            coding,
            as_sent: false,
            broke: None,
        }
    }

    /// How the coding broke, once it did after some of the body decoded.
    pub fn broke(&self) -> Option<&CodingBreak> {
        self.broke.as_ref()
    }

    /// Where each gzip member but the last ended, in decoded bytes (see
    /// [`ResponseRecord::members`](crate::exchange::ResponseRecord::members)).
    pub fn members(&self) -> &[u64] {
        match &self.stage {
            Stage::Coded(d) if !self.as_sent => d.members(),
            _ => &[],
        }
    }

    /// The coding being decoded, if any (none once the body turned out not to be in it).
    pub fn coding(&self) -> Option<Coding> {
        self.coding.filter(|_| !self.as_sent)
    }

    /// Whether the body was not in the coding its header named, and went through as it
    /// came.
    pub fn as_sent(&self) -> bool {
        self.as_sent
    }

    fn capped(&mut self) -> &mut Capped<S> {
        match &mut self.stage {
            Stage::Plain(c) => c,
            Stage::Coded(d) => d.sink(),
        }
    }

    /// Decoded bytes passed on so far.
    pub fn len(&mut self) -> u64 {
        self.capped().len
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    pub fn sink(&mut self) -> &mut S {
        &mut self.capped().sink
    }

    /// Why reading stopped, once it has.
    pub fn fault(&self) -> Option<&BodyFault> {
        self.fault.as_ref()
    }

    /// Feeds wire bytes. After the first fault, further bytes are ignored.
    pub fn feed(&mut self, wire: &[u8]) -> Result<(), BodyFault> {
        if let Some(f) = &self.fault {
            if let Some(b) = self.broke.as_mut() {
                let room = BROKE_TAIL_MAX.saturating_sub(b.tail.len());
                b.tail.extend_from_slice(&wire[..wire.len().min(room)]);
            }
            return Err(f.clone());
        }
        if let Some(raw) = self.raw.as_mut() {
            raw.extend_from_slice(wire);
        }
        let result = match &mut self.stage {
            Stage::Plain(c) => c.write_all(wire).map_err(Into::into),
            Stage::Coded(_) if self.as_sent => self.capped().write_all(wire).map_err(Into::into),
            Stage::Coded(d) => d.feed(wire),
        };
        self.check_broke(result, wire)
    }

    /// [`BodyReader::check`], keeping how the coding broke when it did after part of
    /// the body decoded (`wire`: the bytes last fed).
    fn check_broke(&mut self, result: Result<(), Broke>, wire: &[u8]) -> Result<(), BodyFault> {
        let (result, broke) = match result {
            Ok(()) => (Ok(()), None),
            Err(b) => (Err(b.error), Some((b.ended, b.trailer, b.before, b.at))),
        };
        let result = self.check(result);
        if let (Err(BodyFault::Undecodable { .. }), Some((ended, trailer, mut tail, at))) =
            (&result, broke)
        {
            tail.extend_from_slice(&wire[at.min(wire.len())..]);
            tail.truncate(BROKE_TAIL_MAX);
            self.broke = Some(CodingBreak {
                ended,
                trailer,
                tail,
            });
        }
        result
    }

    /// Ends the body (a coded body must end where its coding says it ends).
    pub fn finish(&mut self) -> Result<(), BodyFault> {
        if let Some(f) = &self.fault {
            return Err(f.clone());
        }
        let result = match &mut self.stage {
            Stage::Plain(_) => Ok(()),
            Stage::Coded(_) if self.as_sent => Ok(()),
            Stage::Coded(d) => d.finish(),
        };
        self.check_broke(result, &[])
    }

    fn check(&mut self, result: std::io::Result<()>) -> Result<(), BodyFault> {
        let Err(e) = result else {
            // Something decoded: the coding is real, nothing to fall back on.
            if self.raw.as_ref().is_some_and(|r| r.len() > RAW_KEEP) || self.capped().len > 0 {
                self.raw = None;
            }
            return Ok(());
        };
        if let Some(raw) = self.raw.take().filter(|_| self.capped().len == 0) {
            // Not a byte decoded: the body is not in its coding. Passed on as it came.
            self.as_sent = true;
            let result = self.capped().write_all(&raw);
            return self.check(result);
        }
        let capped = self.capped();
        let fault = if capped.over {
            BodyFault::TooLarge {
                max: MaxBody(capped.max),
            }
        } else {
            BodyFault::Undecodable {
                coding: self.coding.map_or_else(
                    || "encoded".to_string(),
                    |c| format!("{c:?}").to_lowercase(),
                ),
                source: std::sync::Arc::new(e),
            }
        };
        self.fault = Some(fault.clone());
        Err(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::encoding::encode;

    #[test]
    fn sizes_parse_in_human_units() {
        assert_eq!("64MiB".parse::<MaxBody>().unwrap(), MaxBody(64 << 20));
        assert_eq!("64 MiB".parse::<MaxBody>().unwrap(), MaxBody(64 << 20));
        assert_eq!("1GiB".parse::<MaxBody>().unwrap(), MaxBody(1 << 30));
        assert_eq!("1000".parse::<MaxBody>().unwrap(), MaxBody(1000));
        assert_eq!("10MB".parse::<MaxBody>().unwrap(), MaxBody(10_000_000));
        assert!("lots".parse::<MaxBody>().is_err());
        assert!("0".parse::<MaxBody>().is_err());
        assert_eq!(MaxBody::default().to_string(), "256 MiB");
        assert_eq!(MaxBody(1000).to_string(), "1000 bytes");
    }

    #[test]
    fn a_bomb_stops_at_exactly_max_whatever_the_framing() {
        let zeros = vec![0u8; 8 << 20];
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let wire = encode(coding, &zeros).unwrap();
            for piece in [wire.len(), 1000, 7] {
                let mut r = BodyReader::new(Some(coding), MaxBody(1 << 20), Vec::new());
                let mut fault = None;
                for p in wire.chunks(piece) {
                    if let Err(f) = r.feed(p) {
                        fault = Some(f);
                        break;
                    }
                }
                assert!(
                    matches!(fault, Some(BodyFault::TooLarge { max: MaxBody(m) }) if m == 1 << 20),
                    "{coding:?}: {fault:?}"
                );
                assert_eq!(r.sink().len(), 1 << 20, "{coding:?} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn bodies_under_the_cap_pass_whole_and_bad_codings_are_reported() {
        let text = b"hello hello hello".repeat(1000);
        let wire = encode(Coding::Gzip, &text).unwrap();
        let mut r = BodyReader::new(Some(Coding::Gzip), MaxBody::default(), Vec::new());
        r.feed(&wire).unwrap();
        r.finish().unwrap();
        assert_eq!(*r.sink(), text);

        let mut plain = BodyReader::new(None, MaxBody(4), Vec::new());
        assert!(plain.feed(b"1234").is_ok());
        assert!(plain.feed(b"5").is_err());
        assert_eq!(*plain.sink(), b"1234");

        // Not gzip at all, though its header says so: passed on as it came.
        let mut bad = BodyReader::new(Some(Coding::Gzip), MaxBody::default(), Vec::new());
        bad.feed(b"not gzip ")
            .and_then(|()| bad.feed(b"at all"))
            .unwrap();
        bad.finish().unwrap();
        assert!(bad.as_sent() && bad.coding().is_none());
        assert_eq!(bad.sink().as_slice(), b"not gzip at all");
        // Gzip cut short after it decoded: that is a fault.
        let wire = encode(Coding::Gzip, &vec![b'x'; 100_000]).unwrap();
        let mut cut = BodyReader::new(Some(Coding::Gzip), MaxBody::default(), Vec::new());
        let fault = cut
            .feed(&wire[..wire.len() / 2])
            .and_then(|()| cut.finish());
        assert!(
            matches!(fault, Err(BodyFault::Undecodable { .. })),
            "{fault:?}"
        );
        assert!(!cut.as_sent());
    }

    /// A coded body that decodes and then breaks is told apart as a client's decoder
    /// tells it: bytes after a stream that ended whole (trailing junk, however it comes
    /// in pieces, shorter or longer than a gzip header), or a stream cut short.
    #[test]
    fn a_coding_that_breaks_after_decoding_says_how() {
        let text = b"{\"answer\": 42}".repeat(50);
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli] {
            let whole = encode(coding, &text).unwrap();
            for junk in [&b"JUNKJUNK"[..], b"\n", b"<html>502 Bad Gateway</html>"] {
                let mut wire = whole.clone();
                wire.extend_from_slice(junk);
                for piece in [wire.len(), 7, 1] {
                    let mut r = BodyReader::new(Some(coding), MaxBody::default(), Vec::new());
                    // Fed to the end, as a body goes on after its coding broke.
                    let fed: Vec<_> = wire.chunks(piece).map(|p| r.feed(p)).collect();
                    let fault = fed
                        .into_iter()
                        .collect::<Result<(), _>>()
                        .and_then(|()| r.finish());
                    assert!(
                        matches!(fault, Err(BodyFault::Undecodable { .. })),
                        "{coding:?} {junk:?} in pieces of {piece}: {fault:?}"
                    );
                    assert_eq!(
                        r.broke().map(|b| (b.ended, b.tail.as_slice())),
                        Some((true, junk)),
                        "{coding:?} {junk:?} in pieces of {piece}"
                    );
                    assert_eq!(
                        *r.sink(),
                        text,
                        "{coding:?}: the stream decoded whole first"
                    );
                    assert!(!r.as_sent());
                }
            }
            // Cut inside its data, after some of it decoded.
            let varied: Vec<u8> = (0..5000u32)
                .flat_map(|i| format!("{i},").into_bytes())
                .collect();
            let whole = encode(coding, &varied).unwrap();
            for piece in [whole.len(), 7] {
                let mut r = BodyReader::new(Some(coding), MaxBody::default(), Vec::new());
                let fed: Result<(), BodyFault> = whole[..whole.len() - 12]
                    .chunks(piece)
                    .try_for_each(|p| r.feed(p));
                assert!(fed.and_then(|()| r.finish()).is_err(), "{coding:?}");
                let b = r.broke().expect("broke");
                assert!(
                    !b.ended && !b.trailer && b.tail.is_empty(),
                    "{coding:?} cut short"
                );
            }
        }
        // A gzip whose data ended whole but whose trailer is wrong or cut short keeps the
        // trailer's bytes as they came.
        let whole = encode(Coding::Gzip, &text).unwrap();
        let n = whole.len();
        let mut bad_crc = whole.clone();
        bad_crc[n - 8] ^= 0xff;
        let mut bad_len = whole.clone();
        bad_len[n - 1] ^= 0xff;
        let cases = [
            ("bad crc", bad_crc.clone(), bad_crc[n - 8..].to_vec()),
            ("bad length", bad_len.clone(), bad_len[n - 8..].to_vec()),
            (
                "trailer cut",
                whole[..n - 3].to_vec(),
                whole[n - 8..n - 3].to_vec(),
            ),
        ];
        // A wrong CRC the client hung up on before the rest came: recorded as far as it
        // came, replayed with a wrong CRC.
        let mut hung_up = bad_crc[..n - 6].to_vec();
        hung_up[n - 8] = whole[n - 8] ^ 0x55;
        let mut r = BodyReader::new(Some(Coding::Gzip), MaxBody::default(), Vec::new());
        r.feed(&hung_up).unwrap();
        assert!(r.finish().is_err());
        let b = r.broke().expect("broke");
        assert!(b.trailer && b.tail.len() == 8, "{b:?}");
        assert_ne!(b.tail[..4], whole[n - 8..n - 4]);
        assert_eq!(b.tail[4..], whole[n - 4..]);
        for (what, wire, trailer) in cases {
            for piece in [wire.len(), 3] {
                let mut r = BodyReader::new(Some(Coding::Gzip), MaxBody::default(), Vec::new());
                let fed: Result<(), BodyFault> = wire.chunks(piece).try_for_each(|p| r.feed(p));
                assert!(fed.and_then(|()| r.finish()).is_err(), "{what}");
                let b = r.broke().expect("broke");
                assert!(b.trailer && !b.ended, "{what} in pieces of {piece}: {b:?}");
                assert_eq!(b.tail, trailer, "{what} in pieces of {piece}");
                assert_eq!(*r.sink(), text, "{what}");
            }
        }
        // A whole body breaks nothing.
        let mut r = BodyReader::new(Some(Coding::Gzip), MaxBody::default(), Vec::new());
        r.feed(&encode(Coding::Gzip, &text).unwrap()).unwrap();
        r.finish().unwrap();
        assert!(r.broke().is_none());
    }
}
