//! Content-Encoding: decode bodies as they stream past (so the store holds readable
//! bytes) and encode them again on replay (so the client gets the encoding it was sent).

use std::io::Write;

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

/// An incremental decoder: feed wire bytes, get decoded bytes.
pub enum Decoder {
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Decoder {
    pub fn new(coding: Coding) -> std::io::Result<Decoder> {
        Ok(match coding {
            Coding::Gzip => Decoder::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            Coding::Deflate => Decoder::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            Coding::Brotli => {
                Decoder::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 8192)))
            }
            Coding::Zstd => Decoder::Zstd(zstd::stream::write::Decoder::new(Vec::new())?),
        })
    }

    /// Feeds wire bytes; returns whatever decoded output is ready.
    pub fn feed(&mut self, input: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Decoder::Gzip(d) => {
                d.write_all(input)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Deflate(d) => {
                d.write_all(input)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Brotli(d) => {
                d.write_all(input)?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Zstd(d) => {
                d.write_all(input)?;
                d.flush()?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }

    /// Ends the stream; returns the last decoded bytes.
    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Decoder::Gzip(d) => d.finish(),
            Decoder::Deflate(d) => d.finish(),
            Decoder::Brotli(mut d) => {
                d.flush()?;
                d.into_inner().map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "truncated brotli stream")
                })
            }
            Decoder::Zstd(mut d) => {
                d.flush()?;
                Ok(d.into_inner())
            }
        }
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

/// Decodes a whole body at once.
pub fn decode(coding: Coding, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut d = Decoder::new(coding)?;
    let mut out = d.feed(data)?;
    out.extend(d.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_coding_round_trips_when_fed_in_small_pieces() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let wire = encode(coding, &text).unwrap();
            let mut d = Decoder::new(coding).unwrap();
            let mut out = Vec::new();
            for piece in wire.chunks(777) {
                out.extend(d.feed(piece).unwrap());
            }
            out.extend(d.finish().unwrap());
            assert_eq!(out, text, "{coding:?}");
        }
    }

    #[test]
    fn stacked_or_unknown_codings_are_not_decoded() {
        assert_eq!(Coding::parse("gzip, br"), None);
        assert_eq!(Coding::parse("identity"), None);
        assert_eq!(Coding::parse(" BR "), Some(Coding::Brotli));
    }
}
