//! Amazon's binary event stream (`application/vnd.amazon.eventstream`: Bedrock's
//! `converse-stream` and `invoke-with-response-stream`), scrubbed message by message.
//!
//! Each message is framed: its total length, its headers' length and a CRC-32 of those
//! (the prelude), then the headers, the payload, and a CRC-32 of everything before it.
//! The byte scrub alone could not do right by it twice over: a secret replaced inside a
//! payload changed its length and broke the frame (the stored stream no longer parsed at
//! replay), and `invoke-with-response-stream` carries each model chunk base64-encoded in
//! the payload's `bytes` field, where no secret's bytes appear at all. So here each
//! message's JSON payload, or the chunk its `bytes` decode to, is scrubbed of the secrets
//! whole and read for secrets spread over messages (as a model repeating a key streams it
//! a few characters a message; see [`MessageSplit`]), and the message is framed again
//! with its new lengths and checksums. A message nothing was found in is kept byte for
//! byte. Bytes that do not frame as messages end the reading: they and everything after
//! them pass as they come, for the byte scrub alone.

use std::collections::VecDeque;

use base64::Engine as _;

use super::sse::MessageSplit;
use super::Secrets;
use crate::exchange::eventstream::{
    frame, header_length, headers, prelude_ok, put_header, total_length, PRELUDE,
};

/// A message read, waiting for its text to come back from the split.
struct Held {
    /// The message as it came.
    raw: Vec<u8>,
    /// Its headers, scrubbed.
    headers: Vec<u8>,
    payload: Payload,
}

enum Payload {
    /// A JSON payload: the text read is the payload.
    Json,
    /// `{"bytes": "<base64>", ...}`: the text read is what the base64 decodes to, which
    /// goes back in place of the string at `span` of the payload, between the rest of
    /// the payload before and after it, scrubbed of whole secrets.
    Wrapped {
        span: (usize, usize),
        before: Vec<u8>,
        after: Vec<u8>,
    },
    /// Anything else, scrubbed of whole secrets.
    Opaque(Vec<u8>),
}

pub(super) struct EventStreamScrub {
    secrets: Secrets,
    split: Option<MessageSplit>,
    /// The bytes of the message being read.
    buf: Vec<u8>,
    /// Messages whose text the split holds back, oldest first.
    held: VecDeque<Held>,
    /// The bytes do not frame as messages: everything passes as it comes.
    off: bool,
}

impl EventStreamScrub {
    pub(super) fn new(secrets: &Secrets) -> EventStreamScrub {
        EventStreamScrub {
            secrets: secrets.clone(),
            split: MessageSplit::new(secrets),
            buf: Vec::new(),
            held: VecDeque::new(),
            off: false,
        }
    }

    pub(super) fn held(&self) -> usize {
        self.buf.len() + self.held.iter().map(|h| h.raw.len()).sum::<usize>()
    }

    pub(super) fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            if self.off {
                out.extend_from_slice(data);
                return;
            }
            // The prelude first, then the rest of the message it announces.
            let want = if self.buf.len() < PRELUDE {
                PRELUDE
            } else {
                total_length(&self.buf)
            };
            let take = (want - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < want {
                continue;
            }
            if want == PRELUDE {
                if !prelude_ok(&self.buf) {
                    self.give_up(out);
                }
                continue;
            }
            let message = std::mem::take(&mut self.buf);
            self.message(message, out);
        }
    }

    pub(super) fn finish(mut self, out: &mut Vec<u8>) {
        self.release_all(out);
        out.append(&mut self.buf);
    }

    /// Not an event stream (or a damaged one) from here: what is held goes out, and the
    /// rest passes through.
    fn give_up(&mut self, out: &mut Vec<u8>) {
        self.release_all(out);
        out.append(&mut self.buf);
        self.off = true;
    }

    fn release_all(&mut self, out: &mut Vec<u8>) {
        if let Some(split) = self.split.take() {
            for text in split.finish() {
                self.write_next(&text, out);
            }
            self.split = MessageSplit::new(&self.secrets);
        }
    }

    /// A whole message: read, and written once its text is safe to store.
    fn message(&mut self, raw: Vec<u8>, out: &mut Vec<u8>) {
        let total = raw.len();
        let crc = u32::from_be_bytes(raw[total - 4..].try_into().expect("4 bytes"));
        if crc32fast::hash(&raw[..total - 4]) != crc {
            // Damaged in transit or by the upstream: stored as it came.
            self.buf = raw;
            self.give_up(out);
            return;
        }
        let hlen = header_length(&raw);
        let headers = &raw[PRELUDE..PRELUDE + hlen];
        let payload = &raw[PRELUDE + hlen..total - 4];
        let headers = scrub_headers(headers, &self.secrets).unwrap_or_else(|| headers.to_vec());
        let (kind, text) = read_payload(payload);
        let Some(text) = text else {
            let scrubbed = self
                .secrets
                .scrub(payload)
                .unwrap_or_else(|| payload.to_vec());
            let held = Held {
                raw,
                headers,
                payload: Payload::Opaque(scrubbed),
            };
            self.queue(held, None, out);
            return;
        };
        let text = self.secrets.scrub(&text).unwrap_or(text);
        let kind = match kind {
            Payload::Wrapped { span, .. } => {
                let part = |p: &[u8]| self.secrets.scrub(p).unwrap_or_else(|| p.to_vec());
                Payload::Wrapped {
                    span,
                    before: part(&payload[..span.0]),
                    after: part(&payload[span.1..]),
                }
            }
            other => other,
        };
        let held = Held {
            raw,
            headers,
            payload: kind,
        };
        self.queue(held, Some(text), out);
    }

    /// Puts a message behind those held; writes every one whose text is now safe.
    fn queue(&mut self, held: Held, text: Option<Vec<u8>>, out: &mut Vec<u8>) {
        self.held.push_back(held);
        let released = match (&mut self.split, text) {
            (Some(split), Some(text)) => split.push(&text),
            (Some(split), None) => {
                // A message with no text ends nothing: it waits its turn as a message
                // whose text is empty JSON would.
                split.push(b"null")
            }
            (None, text) => vec![text.unwrap_or_default()],
        };
        for text in released {
            self.write_next(&text, out);
        }
    }

    /// Writes the oldest held message with `text` as its text.
    fn write_next(&mut self, text: &[u8], out: &mut Vec<u8>) {
        let Some(held) = self.held.pop_front() else {
            return;
        };
        let total = held.raw.len();
        let hlen = header_length(&held.raw);
        let old_payload = &held.raw[PRELUDE + hlen..total - 4];
        let payload: std::borrow::Cow<[u8]> = match &held.payload {
            Payload::Json => text.into(),
            Payload::Opaque(p) => p.as_slice().into(),
            Payload::Wrapped {
                span,
                before,
                after,
            } => {
                let token = &old_payload[span.0..span.1];
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(unquoted(token))
                    .unwrap_or_default();
                let mut p = before.clone();
                if decoded == text {
                    p.extend_from_slice(token);
                } else {
                    p.push(b'"');
                    p.extend_from_slice(
                        base64::engine::general_purpose::STANDARD
                            .encode(text)
                            .as_bytes(),
                    );
                    p.push(b'"');
                }
                p.extend_from_slice(after);
                p.into()
            }
        };
        if held.headers == held.raw[PRELUDE..PRELUDE + hlen] && payload.as_ref() == old_payload {
            out.extend_from_slice(&held.raw);
            return;
        }
        frame(&held.headers, &payload, out);
    }
}

/// The text to read in a payload, and how it goes back: a JSON payload is its own text;
/// one whose `bytes` field is base64 (`invoke-with-response-stream`'s chunks) is read as
/// what it decodes to. `None` for anything else.
fn read_payload(payload: &[u8]) -> (Payload, Option<Vec<u8>>) {
    let Ok(serde_json::Value::Object(v)) = serde_json::from_slice(payload) else {
        return (Payload::Json, None);
    };
    let Some(serde_json::Value::String(b64)) = v.get("bytes") else {
        return (Payload::Json, Some(payload.to_vec()));
    };
    let (Ok(inner), Some(span)) = (
        base64::engine::general_purpose::STANDARD.decode(b64),
        bytes_span(payload),
    ) else {
        return (Payload::Json, Some(payload.to_vec()));
    };
    let (before, after) = (Vec::new(), Vec::new());
    (
        Payload::Wrapped {
            span,
            before,
            after,
        },
        Some(inner),
    )
}

/// Where the top-level `"bytes"` field's string value stands in the payload, quotes
/// included.
fn bytes_span(p: &[u8]) -> Option<(usize, usize)> {
    let mut i = memchr::memmem::find(p, b"\"bytes\"")? + 7;
    while p
        .get(i)
        .is_some_and(|b| b.is_ascii_whitespace() || *b == b':')
    {
        i += 1;
    }
    if p.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', p.get(j..)?)?;
        if p[j] == b'\\' {
            j += 2;
        } else {
            return Some((i, j + 1));
        }
    }
}

/// A JSON string token's content with the one escape base64 may carry (`\/`) undone.
fn unquoted(token: &[u8]) -> Vec<u8> {
    let inner = &token[1..token.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() {
            i += 1;
        }
        out.push(inner[i]);
        i += 1;
    }
    out
}

/// The headers with their string and byte-array values scrubbed (lengths rewritten), or
/// `None` when nothing changed or they do not parse.
fn scrub_headers(h: &[u8], secrets: &Secrets) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(h.len());
    let mut changed = false;
    for header in headers(h)? {
        let scrubbed = matches!(header.kind, 6 | 7)
            .then(|| secrets.scrub(header.value))
            .flatten()
            .filter(|v| v.len() <= u16::MAX as usize);
        changed |= scrubbed.is_some();
        let value = scrubbed.as_deref().unwrap_or(header.value);
        put_header(header.name, header.kind, value, &mut out);
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::super::{BodyScrubber, Secrets};
    use crate::exchange::eventstream::frame;
    use crate::rules::Rules;
    use base64::Engine as _;

    const KEY: &str = "sk-proj-4f9Qz81LmT0pXw";
    const CT: Option<&str> = Some("application/vnd.amazon.eventstream");

    fn secrets() -> Secrets {
        let mut s = Secrets::default();
        s.add(&format!("Bearer {KEY}"));
        s
    }

    /// A string header as the format writes it.
    fn header(name: &str, value: &str) -> Vec<u8> {
        let mut h = vec![name.len() as u8];
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
        h
    }

    fn message(event: &str, payload: &[u8]) -> Vec<u8> {
        let mut h = header(":event-type", event);
        h.extend(header(":content-type", "application/json"));
        h.extend(header(":message-type", "event"));
        let mut out = Vec::new();
        frame(&h, payload, &mut out);
        out
    }

    /// Every message of a stream, its checksums checked: (headers, payload).
    fn messages(mut b: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let total = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
            let hlen = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
            let crc = u32::from_be_bytes(b[8..12].try_into().unwrap());
            assert_eq!(crc32fast::hash(&b[..8]), crc, "prelude checksum");
            let crc = u32::from_be_bytes(b[total - 4..total].try_into().unwrap());
            assert_eq!(crc32fast::hash(&b[..total - 4]), crc, "message checksum");
            out.push((b[12..12 + hlen].to_vec(), b[12 + hlen..total - 4].to_vec()));
            b = &b[total..];
        }
        out
    }

    /// The body scrubbed whole, after checking every way of cutting it gives the same.
    fn scrub(body: &[u8], s: &Secrets) -> Vec<u8> {
        let rules = Rules::default();
        let (whole, _) = BodyScrubber::run(body, CT, &rules, s);
        for cut in [1, 2, 3, 7, 16, 61, 200, 4096] {
            let mut sc = BodyScrubber::new(CT, &rules, s);
            let mut got = Vec::new();
            for piece in body.chunks(cut) {
                got.extend_from_slice(sc.feed(piece));
            }
            got.extend(sc.finish().0);
            assert!(got == whole, "cut {cut}");
        }
        whole
    }

    fn converse(pieces: &[&str]) -> Vec<u8> {
        let mut body = message("messageStart", br#"{"p":"abcd","role":"assistant"}"#);
        for t in pieces {
            let p =
                serde_json::json!({"contentBlockIndex": 0, "delta": {"text": t}, "p": "abcdefgh"});
            body.extend(message("contentBlockDelta", p.to_string().as_bytes()));
        }
        body.extend(message(
            "messageStop",
            br#"{"p":"ab","stopReason":"end_turn"}"#,
        ));
        body
    }

    fn texts(body: &[u8]) -> String {
        messages(body)
            .iter()
            .filter_map(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).ok())
            .filter_map(|v| v["delta"]["text"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn a_key_a_model_streams_through_converse_stream_is_found_and_every_frame_still_checks() {
        let body = converse(&[
            "Your key: sk-pro",
            "j-4f9Qz8",
            "1LmT0pXw",
            ", and ",
            KEY,
            ".",
        ]);
        let out = scrub(&body, &secrets());
        assert_eq!(
            texts(&out),
            "Your key: [REDACTED][REDACTED][REDACTED], and [REDACTED]."
        );
        assert_eq!(messages(&out).len(), messages(&body).len());
        assert!(memchr::memmem::find(&out, b"4f9Qz8").is_none());
        // The messages with nothing in them are as they came, byte for byte.
        let (before, after) = (messages(&body), messages(&out));
        assert_eq!(before[0], after[0]);
        assert_eq!(before.last(), after.last());
    }

    #[test]
    fn a_key_in_invoke_with_response_streams_base64_chunks_is_found() {
        // Anthropic on Bedrock: each chunk of the Messages stream, base64 in `bytes`.
        let chunk = |t: &str| {
            let inner = serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": t}});
            let b64 = base64::engine::general_purpose::STANDARD.encode(inner.to_string());
            message(
                "chunk",
                format!(r#"{{"bytes":"{b64}","p":"abc"}}"#).as_bytes(),
            )
        };
        let mut body = Vec::new();
        for t in ["Key: ", KEY, " and again: sk-pr", "oj-4f9Qz81LmT", "0pXw!"] {
            body.extend(chunk(t));
        }
        let out = scrub(&body, &secrets());
        let inner: String = messages(&out)
            .iter()
            .map(|(_, p)| {
                let v: serde_json::Value = serde_json::from_slice(p).unwrap();
                assert_eq!(v["p"], "abc", "the rest of the payload is kept");
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(v["bytes"].as_str().unwrap())
                    .unwrap();
                let c: serde_json::Value = serde_json::from_slice(&raw).unwrap();
                c["delta"]["text"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            inner,
            "Key: [REDACTED] and again: [REDACTED][REDACTED][REDACTED]!"
        );
        // Nothing of the key is left, in clear or in base64.
        let b64_key = base64::engine::general_purpose::STANDARD.encode(KEY);
        assert!(memchr::memmem::find(&out, &b64_key.as_bytes()[..16]).is_none());
    }

    #[test]
    fn a_secret_beside_the_base64_chunk_is_scrubbed_and_the_frame_checks() {
        let inner = base64::engine::general_purpose::STANDARD.encode(r#"{"type":"ping"}"#);
        let payload = format!(r#"{{"bytes":"{inner}","note":"Bearer {KEY}"}}"#);
        let out = scrub(&message("chunk", payload.as_bytes()), &secrets());
        let m = messages(&out);
        let v: serde_json::Value = serde_json::from_slice(&m[0].1).unwrap();
        assert_eq!(v["note"], "[REDACTED]");
        assert_eq!(v["bytes"], inner.as_str(), "the chunk is kept as it came");
    }

    #[test]
    fn a_secret_in_a_header_is_scrubbed_and_the_frame_checks() {
        let mut h = header(":event-type", "exception");
        h.extend(header("x-echo", &format!("token Bearer {KEY} echoed")));
        let mut body = Vec::new();
        frame(&h, br#"{"message":"bad"}"#, &mut body);
        let out = scrub(&body, &secrets());
        let m = messages(&out);
        assert!(memchr::memmem::find(&m[0].0, b"[REDACTED]").is_some());
        assert!(memchr::memmem::find(&out, KEY.as_bytes()).is_none());
    }

    #[test]
    fn bytes_that_do_not_frame_pass_as_they_came_for_the_byte_scrub() {
        let s = secrets();
        // Not an event stream at all; then a stream whose second message is damaged.
        let junk = format!("not a frame, {KEY}").into_bytes();
        let out = scrub(&junk, &s);
        assert_eq!(out, b"not a frame, [REDACTED]");
        let mut body = converse(&["a"]);
        let second = u32::from_be_bytes(body[0..4].try_into().unwrap()) as usize;
        body[second + 20] ^= 0xff;
        let out = scrub(&body, &s);
        assert_eq!(out, body, "kept as it came from the damage on");
        // With no secret known, nothing is read.
        let out = scrub(&converse(&[KEY]), &Secrets::default());
        assert_eq!(out, converse(&[KEY]));
    }
}
