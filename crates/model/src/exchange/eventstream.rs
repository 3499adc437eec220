//! Amazon's binary event stream (`application/vnd.amazon.eventstream`), the framing of
//! Bedrock's `converse-stream` and `invoke-with-response-stream` answers: each message is
//! its total length and its headers' length (big-endian u32s) and a CRC-32 of those, the
//! headers, the payload, and a CRC-32 of everything before it.

/// The prelude: total length, headers' length, and their CRC-32.
pub const PRELUDE: usize = 12;
/// The longest message (the format allows a 16 MiB payload and 128 KiB of headers).
pub const MAX_MESSAGE: usize = (16 << 20) + (128 << 10) + PRELUDE + 4;

/// The content type of the framing.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// One message: its string headers and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Message {
    /// A string header's value (`:event-type`, `:message-type`, `:exception-type`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The messages of a body, in order, up to the first that does not frame or check (a
/// stream cut short keeps what came whole).
pub fn messages(mut body: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while body.len() >= PRELUDE + 4 {
        if !prelude_ok(body) || body.len() < total_length(body) {
            break;
        }
        let total = total_length(body);
        let crc = u32::from_be_bytes(body[total - 4..total].try_into().expect("4 bytes"));
        if crc32fast::hash(&body[..total - 4]) != crc {
            break;
        }
        let hlen = header_length(body);
        let Some(headers) = string_headers(&body[PRELUDE..PRELUDE + hlen]) else {
            break;
        };
        out.push(Message {
            headers,
            payload: body[PRELUDE + hlen..total - 4].to_vec(),
        });
        body = &body[total..];
    }
    out
}

/// The total length a prelude gives.
pub fn total_length(b: &[u8]) -> usize {
    u32::from_be_bytes(b[0..4].try_into().expect("4 bytes")) as usize
}

/// The headers' length a prelude gives.
pub fn header_length(b: &[u8]) -> usize {
    u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")) as usize
}

/// Whether a prelude frames a message: its CRC right, its lengths possible.
pub fn prelude_ok(p: &[u8]) -> bool {
    let total = total_length(p);
    let crc = u32::from_be_bytes(p[8..12].try_into().expect("4 bytes"));
    crc32fast::hash(&p[..8]) == crc
        && (PRELUDE + 4..=MAX_MESSAGE).contains(&total)
        && header_length(p) <= total - PRELUDE - 4
}

/// Writes a message: prelude, headers (already encoded), payload and checksums.
pub fn frame(headers: &[u8], payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let total = (PRELUDE + headers.len() + payload.len() + 4) as u32;
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let crc = crc32fast::hash(&out[start..start + 8]);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// One header, split: its name, its type, and its value's bytes (the length prefix of a
/// string or byte array left out).
pub struct Header<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub value: &'a [u8],
}

/// The headers of a message, `None` if they do not parse.
pub fn headers(mut h: &[u8]) -> Option<Vec<Header<'_>>> {
    let mut out = Vec::new();
    while !h.is_empty() {
        let name_len = h[0] as usize;
        let name = h.get(1..1 + name_len)?;
        let kind = *h.get(1 + name_len)?;
        let rest = &h[2 + name_len..];
        let (value, used) = match kind {
            0 | 1 => (&rest[..0], 0),
            2 => (rest.get(..1)?, 1),
            3 => (rest.get(..2)?, 2),
            4 => (rest.get(..4)?, 4),
            5 | 8 => (rest.get(..8)?, 8),
            9 => (rest.get(..16)?, 16),
            6 | 7 => {
                let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
                (rest.get(2..2 + len)?, 2 + len)
            }
            _ => return None,
        };
        out.push(Header { name, kind, value });
        h = &rest[used..];
    }
    Some(out)
}

/// Encodes a header of a string or byte array type (6, 7) with `value`.
pub fn put_header(name: &[u8], kind: u8, value: &[u8], out: &mut Vec<u8>) {
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.push(kind);
    if matches!(kind, 6 | 7) {
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(value);
}

/// The string headers (type 7) of a message, as text.
fn string_headers(h: &[u8]) -> Option<Vec<(String, String)>> {
    Some(
        headers(h)?
            .into_iter()
            .filter(|h| h.kind == 7)
            .map(|h| {
                (
                    String::from_utf8_lossy(h.name).into_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: &str, payload: &[u8]) -> Vec<u8> {
        let mut h = Vec::new();
        put_header(b":event-type", 7, event.as_bytes(), &mut h);
        put_header(b":flag", 0, b"", &mut h);
        put_header(b":n", 4, &7u32.to_be_bytes(), &mut h);
        let mut out = Vec::new();
        frame(&h, payload, &mut out);
        out
    }

    #[test]
    fn messages_read_back_as_framed_up_to_the_first_damaged_one() {
        let mut body = message("a", b"{\"x\":1}");
        body.extend(message("b", b""));
        let m = messages(&body);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].header(":event-type"), Some("a"));
        assert_eq!(m[0].payload, b"{\"x\":1}");
        assert_eq!(m[1].header(":event-type"), Some("b"));
        // Cut short, or a byte changed: what came whole before it is kept.
        assert_eq!(messages(&body[..body.len() - 1]).len(), 1);
        let mut bad = body.clone();
        let first = total_length(&bad);
        bad[first + 13] ^= 1;
        assert_eq!(messages(&bad).len(), 1);
        assert!(messages(b"not a stream at all").is_empty());
    }
}
