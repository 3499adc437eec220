//! WebSocket framing (RFC 6455 §5): enough to read the messages passing through the
//! proxy and to speak the server side in replay.
//!
//! Record never re-frames anything: the bytes go through as they come and a
//! [`MessageReader`] reads a copy on the side. It unmasks client frames, joins
//! fragments (control frames may arrive between them) and yields whole messages.
//! Replay writes server frames with [`encode`]. Compression (`permessage-deflate`) is
//! never negotiated through tapedeck: record removes the offer from the upgrade
//! request, so every payload seen here is plain.

use base64::Engine;
use thiserror::Error;

use tapedeck_model::exchange::ws::WsOp;

/// The GUID RFC 6455 §1.3 appends to the client's key.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest message read whole (fragments joined); larger ones end the reading of
/// that direction (record keeps passing the bytes through).
pub const MAX_MESSAGE: usize = 64 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("reserved bits set on a frame (an extension tapedeck did not negotiate)")]
    Reserved,
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("a control frame is fragmented or longer than 125 bytes")]
    Control,
    #[error("a continuation frame with no message to continue")]
    Continuation,
    #[error("a new message began before the fragmented one ended")]
    Interleaved,
    #[error("a message of over {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("a frame from the {0} is {1}")]
    Masking(&'static str, &'static str),
}

/// One whole message: data with its fragments joined, or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub op: WsOp,
    pub payload: Vec<u8>,
}

/// Reads messages out of one direction's bytes, fed in as they arrive.
pub struct MessageReader {
    buf: Vec<u8>,
    /// Whether frames must be masked (client → server) or must not be.
    masked: bool,
    /// A fragmented message so far.
    partial: Option<(WsOp, Vec<u8>)>,
}

impl MessageReader {
    /// `masked`: true for frames a client sends.
    pub fn new(masked: bool) -> MessageReader {
        MessageReader {
            buf: Vec::new(),
            masked,
            partial: None,
        }
    }

    /// Adds bytes and returns every message they complete.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Message>, FrameError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut at = 0;
        let result = loop {
            match self.frame_at(at) {
                Ok(Some((frame, used))) => {
                    at += used;
                    if let Some(m) = self.join(frame)? {
                        out.push(m);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..at);
        result.map(|()| out)
    }

    /// The frame at `at` in the buffer, with the bytes it takes, once all of it is there.
    fn frame_at(&self, at: usize) -> Result<Option<(Frame, usize)>, FrameError> {
        let b = &self.buf[at..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        if b[0] & 0x70 != 0 {
            return Err(FrameError::Reserved);
        }
        let opcode = b[0] & 0x0F;
        let masked = b[1] & 0x80 != 0;
        if masked != self.masked {
            return Err(if self.masked {
                FrameError::Masking("client", "not masked")
            } else {
                FrameError::Masking("server", "masked")
            });
        }
        let (len, mut pos) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
            127 if b.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n), 10)
            }
            126 | 127 => return Ok(None),
            n => (n as u64, 2),
        };
        if opcode >= 0x8 && (!fin || len > 125) {
            return Err(FrameError::Control);
        }
        if len > MAX_MESSAGE as u64 {
            return Err(FrameError::TooLarge);
        }
        let mask = if masked {
            if b.len() < pos + 4 {
                return Ok(None);
            }
            let m = [b[pos], b[pos + 1], b[pos + 2], b[pos + 3]];
            pos += 4;
            Some(m)
        } else {
            None
        };
        let len = len as usize;
        if b.len() < pos + len {
            return Ok(None);
        }
        let mut payload = b[pos..pos + len].to_vec();
        if let Some(m) = mask {
            apply_mask(&mut payload, m);
        }
        Ok(Some((
            Frame {
                fin,
                opcode,
                payload,
            },
            pos + len,
        )))
    }

    fn join(&mut self, f: Frame) -> Result<Option<Message>, FrameError> {
        if f.opcode == 0x0 {
            let Some((op, mut data)) = self.partial.take() else {
                return Err(FrameError::Continuation);
            };
            if data.len() + f.payload.len() > MAX_MESSAGE {
                return Err(FrameError::TooLarge);
            }
            data.extend_from_slice(&f.payload);
            if f.fin {
                return Ok(Some(Message { op, payload: data }));
            }
            self.partial = Some((op, data));
            return Ok(None);
        }
        let op = WsOp::from_code(f.opcode).ok_or(FrameError::Opcode(f.opcode))?;
        if op.is_data() {
            if self.partial.is_some() {
                return Err(FrameError::Interleaved);
            }
            if !f.fin {
                self.partial = Some((op, f.payload));
                return Ok(None);
            }
        }
        Ok(Some(Message {
            op,
            payload: f.payload,
        }))
    }
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// One unfragmented frame. `mask` is for frames a client sends (tests, a client side).
pub fn encode(op: WsOp, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | op.code());
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], k);
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A close frame's payload: the code, then at most 123 bytes of reason (cut at a
/// character boundary).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.trim().as_bytes());
    ctx.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// Whether a request asks for a WebSocket upgrade (`Upgrade: websocket` with
/// `Connection: upgrade`).
pub fn is_upgrade_request(headers: &http::HeaderMap) -> bool {
    let has = |name: http::header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(http::header::UPGRADE, "websocket") && has(http::header::CONNECTION, "upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn reads_masked_fragmented_messages_split_anywhere() {
        let mask = Some([1, 2, 3, 4]);
        let mut wire = Vec::new();
        // "Hel" + ping + "lo" as a fragmented text message, then a 70000-byte binary.
        wire.extend_from_slice(&{
            let mut f = encode(WsOp::Text, b"Hel", mask);
            f[0] &= 0x7F;
            f
        });
        wire.extend_from_slice(&encode(WsOp::Ping, b"p", mask));
        wire.extend_from_slice(&{
            let mut f = encode(WsOp::Text, b"lo", mask);
            f[0] = 0x80;
            f
        });
        let big: Vec<u8> = (0..70000u32).map(|i| (i % 251) as u8).collect();
        wire.extend_from_slice(&encode(WsOp::Binary, &big, mask));
        wire.extend_from_slice(&encode(WsOp::Close, &close_payload(1000, "bye"), mask));
        for step in [1, 7, 4096, wire.len()] {
            let mut r = MessageReader::new(true);
            let mut got = Vec::new();
            for piece in wire.chunks(step) {
                got.extend(r.feed(piece).unwrap());
            }
            let ops: Vec<WsOp> = got.iter().map(|m| m.op).collect();
            assert_eq!(
                ops,
                [WsOp::Ping, WsOp::Text, WsOp::Binary, WsOp::Close],
                "{step}"
            );
            assert_eq!(got[1].payload, b"Hello");
            assert_eq!(got[2].payload, big);
            assert_eq!(got[3].payload, b"\x03\xe8bye");
        }
    }

    #[test]
    fn refuses_what_the_protocol_forbids() {
        let masked = encode(WsOp::Text, b"x", Some([9, 9, 9, 9]));
        assert!(matches!(
            MessageReader::new(false).feed(&masked),
            Err(FrameError::Masking(..))
        ));
        assert!(matches!(
            MessageReader::new(true).feed(&encode(WsOp::Text, b"x", None)),
            Err(FrameError::Masking(..))
        ));
        let mut cont = encode(WsOp::Text, b"x", None);
        cont[0] = 0x80;
        assert_eq!(
            MessageReader::new(false).feed(&cont),
            Err(FrameError::Continuation)
        );
        let mut rsv = encode(WsOp::Text, b"x", None);
        rsv[0] |= 0x40;
        assert_eq!(
            MessageReader::new(false).feed(&rsv),
            Err(FrameError::Reserved)
        );
        let long_ping = encode(WsOp::Ping, &[0; 126], None);
        assert_eq!(
            MessageReader::new(false).feed(&long_ping),
            Err(FrameError::Control)
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            MessageReader::new(false).feed(&huge),
            Err(FrameError::TooLarge)
        );
    }

    #[test]
    fn close_reasons_are_cut_to_fit_a_control_frame() {
        let p = close_payload(1008, &"é".repeat(100));
        assert!(p.len() <= 125);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }

    #[test]
    fn upgrade_requests_need_both_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(!is_upgrade_request(&h));
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        assert!(is_upgrade_request(&h));
    }
}
