//! Content-Encoding: decode bodies as they stream past (so the store holds readable
//! bytes) and encode them again on replay (so the client gets the encoding it was sent).

use std::io::Write;

use super::CodingBroke;

/// The encodings tapedeck decodes. Anything else is stored as the wire bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// Parses a `Content-Encoding` value; `None` for identity, unknown or stacked codings.
    pub fn parse(value: &str) -> Option<Coding> {
        match value.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            "br" => Some(Coding::Brotli),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }
}

/// An incremental decoder that writes decoded bytes into `W` as they come, a buffer at a
/// time (32 KiB for gzip/deflate, 8 KiB for brotli, 128 KiB for zstd): however far one
/// input frame expands, no more than one buffer of output is held here, so a sink that
/// counts (see [`crate::exchange::limit`]) can stop a decompression bomb early.
pub enum Decoder<W: Write> {
    Gzip(Box<Gzip<W>>),
    Deflate(flate2::write::ZlibDecoder<W>),
    Brotli(Box<brotli::DecompressorWriter<W>>),
    Zstd(zstd::stream::write::Decoder<'static, W>),
}

impl<W: Write> Decoder<W> {
    /// Gives the sink back when the decoder cannot be set up (zstd, out of memory).
    pub fn new(coding: Coding, sink: W) -> Result<Decoder<W>, W> {
        Ok(match coding {
            Coding::Gzip => Decoder::Gzip(Box::new(Gzip {
                d: Some(flate2::write::GzDecoder::new(Tap {
                    sink,
                    crc: flate2::Crc::new(),
                    total: 0,
                })),
                ends: Vec::new(),
                between: Vec::new(),
                began: false,
                last: Vec::with_capacity(2 * GZIP_TRAILER),
            })),
            Coding::Deflate => Decoder::Deflate(flate2::write::ZlibDecoder::new(sink)),
            Coding::Brotli => {
                Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(sink, 8192)))
            }
            Coding::Zstd => match zstd::stream::raw::Decoder::new() {
                Ok(raw) => Decoder::Zstd(zstd::stream::write::Decoder::with_decoder(sink, raw)),
                Err(_) => return Err(sink),
            },
        })
    }

    /// Feeds wire bytes; what they decode to is written to the sink before this returns.
    /// An error says where the stream broke, and whether it had ended whole before
    /// that point (bytes after a complete stream).
    pub fn feed(&mut self, input: &[u8]) -> Result<(), Broke> {
        let mut at = 0;
        while at < input.len() {
            match self.writer().write(&input[at..]) {
                Ok(0) => {
                    return Err(Broke {
                        error: std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "bytes follow the end of the coded stream",
                        ),
                        before: Vec::new(),
                        at,
                        ended: true,
                        trailer: false,
                    })
                }
                Ok(n) => {
                    if let Decoder::Gzip(g) = self {
                        g.took(&input[at..at + n]);
                    }
                    at += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.broke(error, at)),
            }
        }
        self.writer()
            .flush()
            .map_err(|error| self.broke(error, input.len()))
    }

    /// Where the stream broke, `at` bytes into the last input fed. Bytes that do not
    /// start a gzip member after one that ended whole are bytes after the end.
    fn broke(&mut self, error: std::io::Error, at: usize) -> Broke {
        let broke = Broke {
            error,
            before: Vec::new(),
            at,
            ended: false,
            trailer: false,
        };
        match self {
            Decoder::Gzip(g) => g.broke(broke),
            _ => broke,
        }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Decoder::Gzip(g) => &mut **g,
            Decoder::Deflate(d) => d,
            Decoder::Brotli(d) => d.as_mut(),
            Decoder::Zstd(d) => d,
        }
    }

    /// Ends the stream, writing the last decoded bytes; an error when it was cut short,
    /// or (gzip) followed by bytes too few to be a member's header.
    pub fn finish(&mut self) -> Result<(), Broke> {
        let result = match self {
            Decoder::Gzip(g) => g.member().try_finish(),
            Decoder::Deflate(d) => d.try_finish(),
            Decoder::Brotli(d) => d.close(),
            Decoder::Zstd(d) => d.do_finish(),
        };
        result.map_err(|error| self.broke(error, 0))
    }

    /// Where each gzip member but the last ended, in decoded bytes (empty for one member
    /// and for other codings).
    pub fn members(&self) -> &[u64] {
        match self {
            Decoder::Gzip(g) => g.ends(),
            _ => &[],
        }
    }

    pub fn sink(&mut self) -> &mut W {
        match self {
            Decoder::Gzip(g) => &mut g.member().get_mut().sink,
            Decoder::Deflate(d) => d.get_mut(),
            Decoder::Brotli(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
        }
    }
}

/// The most bytes taken between gzip members that are kept (see [`Decoder::feed`]).
const BETWEEN_MAX: usize = super::BROKE_TAIL_MAX;

/// The most gzip member ends kept (an upstream sending thousands of empty members would
/// otherwise grow the event without bound); members past them are replayed as one.
pub const MAX_MEMBERS: usize = 4096;

/// A gzip member ends with the CRC-32 and the length of what it decodes to, 8 bytes.
const GZIP_TRAILER: usize = 8;

/// flate2's error when a gzip member's data ended but its trailer is short or does not
/// match (one for both; `Gzip::broke` tells them apart).
const GZIP_CHECKSUM: &str = "corrupt gzip stream does not have a matching checksum";

/// A gzip body being decoded, member after member, with where each member ended and
/// what tells how it broke if it does.
pub struct Gzip<W: Write> {
    /// The member being decoded (always there but while one ends and the next begins).
    d: Option<flate2::write::GzDecoder<Tap<W>>>,
    /// How many decoded bytes each member but the last had ended at.
    ends: Vec<u64>,
    /// The bytes taken since the last member ended (see [`Decoder::feed`]).
    between: Vec<u8>,
    /// Whether a member began.
    began: bool,
    /// The last wire bytes taken (up to twice a trailer).
    last: Vec<u8>,
}

/// The sink, with the CRC-32 of what the member decoded so far, and how many bytes
/// all members decoded.
struct Tap<W> {
    sink: W,
    crc: flate2::Crc,
    total: u64,
}

impl<W: Write> Write for Tap<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.sink.write(buf)?;
        self.crc.update(&buf[..n]);
        self.total += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sink.flush()
    }
}

impl<W: Write> Gzip<W> {
    fn member(&mut self) -> &mut flate2::write::GzDecoder<Tap<W>> {
        self.d.as_mut().expect("a member is there between writes")
    }

    fn member_ref(&self) -> &flate2::write::GzDecoder<Tap<W>> {
        self.d.as_ref().expect("a member is there between writes")
    }

    /// Where each member but the last ended, in decoded bytes (empty for one member).
    pub fn ends(&self) -> &[u64] {
        &self.ends
    }

    /// Notes wire bytes the decoder took.
    fn took(&mut self, bytes: &[u8]) {
        // Bytes taken without a member under way: a member's header, or what follows
        // the last member.
        if self.member_ref().header().is_none() {
            let room = BETWEEN_MAX.saturating_sub(self.between.len());
            self.between
                .extend_from_slice(&bytes[..bytes.len().min(room)]);
        } else {
            self.between.clear();
            self.began = true;
        }
        let keep = &bytes[bytes.len().saturating_sub(2 * GZIP_TRAILER)..];
        self.last.extend_from_slice(keep);
        let over = self.last.len().saturating_sub(2 * GZIP_TRAILER);
        self.last.drain(..over);
    }

    /// How the stream broke. Bytes that do not start a member after one that ended
    /// whole are bytes after the end. A member whose data ended whole but whose trailer
    /// does not match what it decoded to, or is cut short, keeps the trailer's bytes it
    /// had, to be sent again in place of a right one (a single member: the CRC covers
    /// all that was decoded).
    fn broke(&mut self, broke: Broke) -> Broke {
        if self.began && self.member_ref().header().is_none() {
            // What followed the last member was not one: not a member's end either.
            let total = self.member_ref().get_ref().total;
            if self.ends.last() == Some(&total) {
                self.ends.pop();
            }
            return Broke {
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "bytes follow the end of the gzip stream",
                ),
                before: std::mem::take(&mut self.between),
                ended: true,
                ..broke
            };
        }
        if broke.error.to_string() != GZIP_CHECKSUM {
            return broke;
        }
        let crc = &self.member_ref().get_ref().crc;
        let mut right = crc.sum().to_le_bytes().to_vec();
        right.extend_from_slice(&crc.amount().to_le_bytes());
        // A trailer cut short is the start of the right one; a whole one that does not
        // match has its CRC or its length right (the last 8 bytes). Else its CRC was
        // wrong and the client hung up on it before the rest came: a wrong CRC then.
        let last = &self.last;
        let cut = (1..GZIP_TRAILER)
            .rev()
            .find(|&k| last.len() >= k && last[last.len() - k..] == right[..k]);
        let whole = last
            .len()
            .checked_sub(GZIP_TRAILER)
            .map(|at| &last[at..])
            .filter(|t| t[..4] == right[..4] || t[4..] == right[4..]);
        let had = match (cut, whole) {
            (Some(k), _) => right[..k].to_vec(),
            (None, Some(t)) => t.to_vec(),
            (None, None) => {
                let mut wrong = right;
                wrong[..4].iter_mut().for_each(|b| *b = !*b);
                wrong
            }
        };
        Broke {
            before: had,
            trailer: true,
            ..broke
        }
    }
}

/// Decodes member after member, as flate2's `MultiGzDecoder` does, noting where each
/// ended: replay ends its members at the same places.
impl<W: Write> Write for Gzip<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.member().write(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        // The member ended whole (its trailer checked): what follows starts another.
        self.member().try_finish()?;
        let done = self.d.take().expect("a member is there between writes");
        // Cannot fail: `try_finish` above has written everything and checked the trailer,
        // and `finish` then only hands the sink back.
        let mut tap = done
            .finish()
            .expect("a finished member gives its sink back");
        if self.ends.len() < MAX_MEMBERS {
            self.ends.push(tap.total);
        }
        tap.crc = flate2::Crc::new();
        self.d = Some(flate2::write::GzDecoder::new(tap));
        self.member().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.member().flush()
    }
}

/// Where a coded stream broke while being fed.
#[derive(Debug)]
pub struct Broke {
    pub error: std::io::Error,
    /// Bytes fed before the last input that are part of what broke the stream: taken
    /// by the gzip decoder as the start of a member's header, or (with `trailer`) a gzip
    /// trailer's bytes as they came.
    pub before: Vec<u8>,
    /// How far into the last input fed the stream was good: the bytes from here on
    /// broke it, after `before`.
    pub at: usize,
    /// The stream had ended whole before `at`: what broke it are bytes after its end.
    pub ended: bool,
    /// The data ended whole but its checksum trailer did not match or was cut short:
    /// `before` holds the trailer's bytes as they came.
    pub trailer: bool,
}

/// A plain write's error as a break at an unknown point (the sink's own error).
impl From<std::io::Error> for Broke {
    fn from(error: std::io::Error) -> Broke {
        Broke {
            error,
            before: Vec::new(),
            at: usize::MAX,
            ended: false,
            trailer: false,
        }
    }
}

/// An incremental encoder, for replaying a large body part by part in the encoding it
/// was recorded with: feed decoded parts, send what comes out.
pub enum Encoder {
    Gzip(Box<GzMembers>),
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    pub fn new(coding: Coding) -> std::io::Result<Encoder> {
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(Box::new(GzMembers {
                e: gz_member(),
                at: 0,
                ends: std::collections::VecDeque::new(),
            })),
            Coding::Deflate => Encoder::Deflate(flate2::write::ZlibEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            )),
            Coding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                8192,
                4,
                22,
            ))),
            Coding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3)?),
        })
    }

    /// Encodes one part; returns the encoded bytes ready so far.
    pub fn feed(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.write(data, false)
    }

    /// Encodes one piece of a stream and flushes it: the bytes returned decode to all of
    /// it, so a client reads each piece when it arrives (a compressed event stream).
    pub fn feed_flushed(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.write(data, true)
    }

    /// A gzip encoder ends a member at each of `ends` (decoded bytes, as
    /// [`Decoder::members`] gave them) and begins another: a body recorded in several
    /// members is replayed in as many, so a client that keeps only the first member, or
    /// fails on the second, does at replay what it did live.
    pub fn with_members(coding: Coding, ends: &[u64]) -> std::io::Result<Encoder> {
        let mut e = Encoder::new(coding)?;
        if let Encoder::Gzip(g) = &mut e {
            g.ends = ends.iter().copied().take(MAX_MEMBERS).collect();
        }
        Ok(e)
    }

    fn write(&mut self, data: &[u8], flush: bool) -> std::io::Result<Vec<u8>> {
        /// Writes into an encoder over a `Vec`, and takes what it put out.
        fn pass<E: Write>(
            e: &mut E,
            data: &[u8],
            flush: bool,
            out: fn(&mut E) -> &mut Vec<u8>,
        ) -> std::io::Result<Vec<u8>> {
            e.write_all(data)?;
            if flush {
                e.flush()?;
            }
            Ok(std::mem::take(out(e)))
        }
        match self {
            Encoder::Gzip(g) => g.write(data, flush),
            Encoder::Deflate(e) => pass(e, data, flush, |e| e.get_mut()),
            Encoder::Brotli(e) => pass(e.as_mut(), data, flush, |e| e.get_mut()),
            Encoder::Zstd(e) => pass(e, data, flush, |e| e.get_mut()),
        }
    }

    /// Ends the stream as the recorded one ended: whole, or, where its coding broke on
    /// the wire (see [`CodingBroke`]), whole or left unfinished as it broke, followed by
    /// the bytes that broke it. Returns the last encoded bytes.
    pub fn finish_as(mut self, broke: Option<&CodingBroke>) -> std::io::Result<Vec<u8>> {
        let Some(b) = broke else {
            return self.finish();
        };
        let trailer = match self {
            Encoder::Gzip(_) if b.trailer => GZIP_TRAILER,
            _ => 0,
        };
        let mut out = if b.ended || trailer > 0 {
            self.finish()?
        } else {
            self.write(&[], true)?
        };
        // The right trailer gives way to the one recorded (`tail` starts with it).
        out.truncate(out.len().saturating_sub(trailer));
        out.extend_from_slice(&b.tail_bytes());
        Ok(out)
    }

    /// Ends the stream; returns the last encoded bytes.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(g) => g.finish(),
            Encoder::Deflate(e) => e.finish(),
            Encoder::Brotli(mut e) => {
                e.flush()?;
                Ok(e.into_inner())
            }
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

fn gz_member() -> flate2::write::GzEncoder<Vec<u8>> {
    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())
}

/// A gzip stream encoded member after member (see [`Encoder::with_members`]).
pub struct GzMembers {
    e: flate2::write::GzEncoder<Vec<u8>>,
    /// Decoded bytes fed so far.
    at: u64,
    /// Where the members still to end end.
    ends: std::collections::VecDeque<u64>,
}

impl GzMembers {
    /// Ends the member under way; its last bytes go to `out`.
    fn end_member(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let done = std::mem::replace(&mut self.e, gz_member());
        out.extend(done.finish()?);
        Ok(())
    }

    fn write(&mut self, mut data: &[u8], flush: bool) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(&end) = self.ends.front() {
            let k = end.saturating_sub(self.at);
            if k > data.len() as u64 {
                break;
            }
            let (head, rest) = data.split_at(k as usize);
            self.e.write_all(head)?;
            self.at += k;
            data = rest;
            self.end_member(&mut out)?;
            self.ends.pop_front();
        }
        self.e.write_all(data)?;
        self.at += data.len() as u64;
        if flush {
            self.e.flush()?;
        }
        out.append(self.e.get_mut());
        Ok(out)
    }

    /// Ends the last member, after any that were to end past the body's end (a body
    /// whose scrub made it shorter): as many members as were recorded.
    fn finish(mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while self.ends.pop_front().is_some() {
            self.end_member(&mut out)?;
        }
        out.extend(self.e.finish()?);
        Ok(out)
    }
}

/// Encodes a whole body (replay, where the stored bytes are decoded).
pub fn encode(coding: Coding, data: &[u8]) -> std::io::Result<Vec<u8>> {
    match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data)?;
            e.finish()
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data)?;
            e.finish()
        }
        Coding::Brotli => {
            let mut out = Vec::new();
            {
                let mut e = brotli::CompressorWriter::new(&mut out, 8192, 4, 22);
                e.write_all(data)?;
            }
            Ok(out)
        }
        Coding::Zstd => zstd::stream::encode_all(data, 3),
    }
}

/// Encodes a whole body as the recorded one was on the wire: see [`Encoder::finish_as`].
/// `members`: where gzip members ended (see [`Encoder::with_members`]).
pub fn encode_as(
    coding: Coding,
    data: &[u8],
    broke: Option<&CodingBroke>,
    members: &[u64],
) -> std::io::Result<Vec<u8>> {
    if broke.is_none() && members.is_empty() {
        return encode(coding, data);
    }
    let mut e = Encoder::with_members(coding, members)?;
    let mut out = e.feed(data)?;
    out.extend(e.finish_as(broke)?);
    Ok(out)
}

/// Decodes a whole body at once (small, trusted bodies only: nothing caps the output).
pub fn decode(coding: Coding, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut d = Decoder::new(coding, Vec::new())
        .map_err(|_| std::io::Error::other("cannot set up the decoder"))?;
    d.feed(data).map_err(|b| b.error)?;
    d.finish().map_err(|b| b.error)?;
    Ok(std::mem::take(d.sink()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The members of a gzip stream, each decoded alone.
    fn members_of(mut wire: &[u8]) -> Vec<Vec<u8>> {
        use std::io::Read;
        let mut out = Vec::new();
        while !wire.is_empty() {
            let mut d = flate2::bufread::GzDecoder::new(wire);
            let mut m = Vec::new();
            d.read_to_end(&mut m).unwrap();
            wire = d.into_inner();
            out.push(m);
        }
        out
    }

    #[test]
    fn gzip_members_are_decoded_where_they_end_and_encoded_again_there() {
        let parts: [&[u8]; 4] = [b"first member, ", b"", b"third", b" and the last"];
        let wire: Vec<u8> = parts
            .iter()
            .flat_map(|p| encode(Coding::Gzip, p).unwrap())
            .collect();
        let body = parts.concat();
        for cut in [1, 5, 17, 4096] {
            let mut d = Decoder::new(Coding::Gzip, Vec::new()).unwrap();
            for piece in wire.chunks(cut) {
                d.feed(piece).unwrap();
            }
            d.finish().unwrap();
            assert_eq!(d.members(), [14, 14, 19], "cut {cut}");
            assert_eq!(*d.sink(), body);
            // Replayed whole and streamed in pieces: the same four members.
            let whole = encode_as(Coding::Gzip, &body, None, d.members()).unwrap();
            assert_eq!(members_of(&whole), parts.map(<[u8]>::to_vec), "cut {cut}");
            let mut e = Encoder::with_members(Coding::Gzip, d.members()).unwrap();
            let mut streamed = Vec::new();
            for piece in body.chunks(cut) {
                streamed.extend(e.feed_flushed(piece).unwrap());
            }
            streamed.extend(e.finish().unwrap());
            assert_eq!(
                members_of(&streamed),
                parts.map(<[u8]>::to_vec),
                "cut {cut}"
            );
        }
        // One member, or one followed by bytes that are not a member: no ends.
        for tail in [&b""[..], b"JUNK"] {
            let mut d = Decoder::new(Coding::Gzip, Vec::new()).unwrap();
            let wire = [encode(Coding::Gzip, b"only").unwrap(), tail.to_vec()].concat();
            let r = d.feed(&wire).and_then(|()| d.finish());
            assert_eq!(r.is_err(), !tail.is_empty());
            assert_eq!(d.members(), [] as [u64; 0]);
        }
        // Ends past a body its scrub made shorter still make as many members.
        let out = encode_as(Coding::Gzip, b"short", None, &[3, 40]).unwrap();
        assert_eq!(
            members_of(&out),
            [b"sho".to_vec(), b"rt".to_vec(), Vec::new()]
        );
    }

    #[test]
    fn every_coding_round_trips_when_fed_in_small_pieces() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let wire = encode(coding, &text).unwrap();
            let mut d = Decoder::new(coding, Vec::new()).unwrap();
            for piece in wire.chunks(777) {
                d.feed(piece).unwrap();
            }
            d.finish().unwrap();
            assert_eq!(*d.sink(), text, "{coding:?}");
        }
    }

    #[test]
    fn the_part_by_part_encoder_decodes_to_the_parts() {
        let parts: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'a' + i; 100_000]).collect();
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let mut e = Encoder::new(coding).unwrap();
            let mut wire = Vec::new();
            for p in &parts {
                wire.extend(e.feed(p).unwrap());
            }
            wire.extend(e.finish().unwrap());
            assert_eq!(decode(coding, &wire).unwrap(), parts.concat(), "{coding:?}");
        }
    }

    #[test]
    fn a_flushed_piece_decodes_whole_before_the_next_is_written() {
        let events = [
            "data: {\"i\":0}\n\n",
            "data: {\"i\":1}\n\n",
            "data: [DONE]\n\n",
        ];
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let mut e = Encoder::new(coding).unwrap();
            let mut d = Decoder::new(coding, Vec::new()).unwrap();
            let mut seen = String::new();
            for ev in events {
                d.feed(&e.feed_flushed(ev.as_bytes()).unwrap()).unwrap();
                seen.push_str(ev);
                // What a client has decoded by now is every event sent so far.
                assert_eq!(String::from_utf8_lossy(d.sink()), seen, "{coding:?}");
            }
            d.feed(&e.finish().unwrap()).unwrap();
            d.finish().unwrap();
            assert_eq!(String::from_utf8_lossy(d.sink()), seen, "{coding:?}");
        }
    }

    #[test]
    fn stacked_or_unknown_codings_are_not_decoded() {
        assert_eq!(Coding::parse("gzip, br"), None);
        assert_eq!(Coding::parse("identity"), None);
        assert_eq!(Coding::parse(" BR "), Some(Coding::Brotli));
    }

    /// Replay's encoding of a body whose coding broke breaks the same way: ended whole,
    /// then the bytes after; or unfinished, then nothing (a stream cut short).
    #[test]
    fn a_broken_coding_is_encoded_broken_again() {
        let text = b"{\"answer\": 42}".repeat(50);
        let junk = CodingBroke::new(true, b"JUNKJUNK");
        let replayed = encode_as(Coding::Gzip, &text, Some(&junk), &[]).unwrap();
        assert!(replayed.ends_with(b"JUNKJUNK"));
        let mut d = Decoder::new(Coding::Gzip, Vec::new()).unwrap();
        d.feed(&replayed).unwrap();
        let b = d.finish().unwrap_err();
        assert!(b.ended && b.before == b"JUNKJUNK", "{b:?}");
        assert_eq!(*d.sink(), text);
        // Deflate and brotli: the stream ends whole, then the bytes.
        for coding in [Coding::Deflate, Coding::Brotli] {
            let replayed = encode_as(coding, &text, Some(&junk), &[]).unwrap();
            let mut d = Decoder::new(coding, Vec::new()).unwrap();
            let b = d.feed(&replayed).unwrap_err();
            assert!(b.ended, "{coding:?}: {b:?}");
            assert_eq!(
                &replayed[b.at..],
                b"JUNKJUNK",
                "{coding:?}: the bytes after the end"
            );
            assert_eq!(*d.sink(), text, "{coding:?}");
        }

        let cut = CodingBroke::new(false, b"");
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let replayed = encode_as(coding, &text, Some(&cut), &[]).unwrap();
            let mut d = Decoder::new(coding, Vec::new()).unwrap();
            d.feed(&replayed).unwrap();
            assert_eq!(
                *d.sink(),
                text,
                "{coding:?}: all of it decodes before the cut"
            );
            assert!(
                d.finish().is_err(),
                "{coding:?}: and the stream is cut short"
            );
        }
    }
}
