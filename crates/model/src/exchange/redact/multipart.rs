//! Secret fields in `multipart/form-data` bodies, as they stream: the body of a part
//! whose `Content-Disposition` names a secret field becomes `[REDACTED]`; every other
//! byte passes unchanged. The delimiter may be split across pieces, so the last
//! `delimiter − 1` bytes of a part body are held back until more arrive. A part named
//! like a token's field (`csrf_token`) is held whole, and redacted when it looks like a
//! key ([`FieldNames::maybe`]).

use memchr::{memchr, memmem};

use super::{Collected, FieldNames};
use crate::credential::{key_like, MAX_KEY_LIKE};
use crate::rules::REDACTED;

/// Header lines longer than this are not multipart headers: the rest passes unchanged.
const MAX_HEADER_LINE: usize = 16 << 10;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// A part body (or the preamble/epilogue), dropped when `secret`.
    Body { secret: bool },
    /// The rest of a boundary line (`--` for the last one, then CRLF).
    BoundaryLine,
    /// A part's header lines, up to the empty line.
    Headers { secret: bool },
    /// Not multipart after all: everything passes.
    Plain,
}

pub struct MultipartFields {
    fields: FieldNames,
    delim: Vec<u8>,
    state: State,
    buf: Vec<u8>,
    /// Bytes of the CRLF put in front of the body (so the first boundary looks like the
    /// others) that must not be written out.
    hidden: usize,
    /// The part being read is held in `value`: a secret when it looks like a key.
    maybe: bool,
    value: Vec<u8>,
    pub found: Collected,
}

/// The boundary of a `multipart/*` content type, if it has a usable one.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';');
    let base = parts.next()?.trim().to_ascii_lowercase();
    if !base.starts_with("multipart/") {
        return None;
    }
    parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

impl MultipartFields {
    pub fn new(fields: FieldNames, boundary: &str) -> MultipartFields {
        let mut delim = b"\r\n--".to_vec();
        delim.extend_from_slice(boundary.as_bytes());
        MultipartFields {
            fields,
            delim,
            state: State::Body { secret: false },
            buf: b"\r\n".to_vec(),
            hidden: 2,
            maybe: false,
            value: Vec::new(),
            found: Collected::default(),
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let skip = self.hidden.min(bytes.len());
        self.hidden -= skip;
        out.extend_from_slice(&bytes[skip..]);
    }

    fn body(&mut self, n: usize, secret: bool, out: &mut Vec<u8>) {
        let bytes: Vec<u8> = self.buf.drain(..n).collect();
        if secret {
            if self.value.len() <= super::secrets::MAX_SCRUB_LEN {
                self.value.extend_from_slice(&bytes);
            }
        } else if self.maybe {
            self.value.extend_from_slice(&bytes);
            if self.value.len() > MAX_KEY_LIKE {
                // Longer than any key this rule takes: written as it came.
                self.maybe = false;
                let held = std::mem::take(&mut self.value);
                self.emit(&held, out);
            }
        } else {
            self.emit(&bytes, out);
        }
    }

    /// Writes a held part: `[REDACTED]` when it looks like a key, else as it came.
    fn end_maybe(&mut self, out: &mut Vec<u8>) {
        if !std::mem::take(&mut self.maybe) {
            return;
        }
        let value = std::mem::take(&mut self.value);
        if key_like(&value) {
            self.emit(REDACTED.as_bytes(), out);
            self.found.by_name(false);
            self.found.push(&value);
        } else {
            self.emit(&value, out);
        }
    }

    /// Takes one line (through its `\n`) off the buffer and writes it out.
    fn line(&mut self, end: usize, out: &mut Vec<u8>) -> Vec<u8> {
        let line: Vec<u8> = self.buf.drain(..=end).collect();
        self.emit(&line, out);
        line
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.state == State::Plain {
            self.emit(data, out);
            return;
        }
        self.buf.extend_from_slice(data);
        loop {
            match self.state {
                State::Body { secret } => match memmem::find(&self.buf, &self.delim) {
                    Some(at) => {
                        self.body(at, secret, out);
                        if secret {
                            self.end_value();
                        }
                        self.end_maybe(out);
                        let n = self.delim.len();
                        let delim: Vec<u8> = self.buf.drain(..n).collect();
                        self.emit(&delim, out);
                        self.state = State::BoundaryLine;
                    }
                    None => {
                        let safe = self.buf.len().saturating_sub(self.delim.len() - 1);
                        self.body(safe, secret, out);
                        return;
                    }
                },
                State::BoundaryLine => match memchr(b'\n', &self.buf) {
                    Some(end) => {
                        let line = self.line(end, out);
                        self.state = if line.starts_with(b"--") {
                            State::Body { secret: false }
                        } else {
                            State::Headers { secret: false }
                        };
                    }
                    None if self.buf.len() > MAX_HEADER_LINE => self.give_up(out),
                    None => return,
                },
                State::Headers { secret } => match memchr(b'\n', &self.buf) {
                    Some(end) => {
                        let line = self.line(end, out);
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\r', '\n']);
                        if text.is_empty() {
                            if secret {
                                out.extend_from_slice(REDACTED.as_bytes());
                                self.value.clear();
                            }
                            self.state = State::Body { secret };
                        } else {
                            let name = disposition_name(text);
                            let named = name.is_some_and(|n| self.fields.contains(n.as_bytes()));
                            self.maybe |= !named
                                && !secret
                                && name.is_some_and(|n| self.fields.maybe(n.as_bytes()));
                            if named {
                                self.maybe = false;
                                let listed = name.is_some_and(|n| self.fields.listed(n.as_bytes()));
                                self.found.by_name(!listed);
                            }
                            self.state = State::Headers {
                                secret: secret || named,
                            };
                        }
                    }
                    None if self.buf.len() > MAX_HEADER_LINE => self.give_up(out),
                    None => return,
                },
                State::Plain => {
                    let rest = std::mem::take(&mut self.buf);
                    self.emit(&rest, out);
                    return;
                }
            }
        }
    }

    /// Bytes held back that will be written out (a secret part's are dropped).
    pub fn held(&self) -> usize {
        match self.state {
            State::Body { secret: true } => 0,
            _ if self.maybe => self.buf.len() + self.value.len(),
            _ => self.buf.len().saturating_sub(self.hidden),
        }
    }

    fn give_up(&mut self, out: &mut Vec<u8>) {
        self.state = State::Plain;
        let rest = std::mem::take(&mut self.buf);
        self.emit(&rest, out);
    }

    fn end_value(&mut self) {
        let value = std::mem::take(&mut self.value);
        self.found.push(&value);
    }

    pub fn finish(mut self, out: &mut Vec<u8>) -> Collected {
        match self.state {
            State::Body { secret: true } => {
                let n = self.buf.len();
                self.body(n, true, out);
                self.end_value();
            }
            State::Body { secret: false } if self.maybe => {
                let n = self.buf.len();
                self.body(n, false, out);
                self.end_maybe(out);
            }
            _ => {
                let rest = std::mem::take(&mut self.buf);
                self.emit(&rest, out);
            }
        }
        self.found
    }
}

/// `name` of a `Content-Disposition: form-data; name="..."` header line.
fn disposition_name(line: &str) -> Option<&str> {
    let (header, value) = line.split_once(':')?;
    if !header.trim().eq_ignore_ascii_case("content-disposition") {
        return None;
    }
    value
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("name"))
        .map(|(_, v)| v.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_part_is_redacted_and_the_rest_passes_whatever_the_cuts() {
        let body = concat!(
            "--XyZ\r\n",
            "Content-Disposition: form-data; name=\"user\"\r\n\r\n",
            "ada\r\n",
            "--XyZ\r\n",
            "Content-Disposition: form-data; name=\"password\"\r\n",
            "Content-Type: text/plain\r\n\r\n",
            "correct horse battery\r\n",
            "--XyZ\r\n",
            "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n",
            "line one\r\n--XyZnot a boundary\r\nline two\r\n",
            "--XyZ--\r\n",
        );
        let want = body.replace("correct horse battery", "[REDACTED]");
        assert_eq!(
            boundary("multipart/form-data; boundary=\"XyZ\"").as_deref(),
            Some("XyZ")
        );
        let fields = FieldNames::new(&["password".into()]);
        for cut in [1, 3, 7, 64, 4096] {
            let mut m = MultipartFields::new(fields.clone(), "XyZ");
            let mut out = Vec::new();
            for piece in body.as_bytes().chunks(cut) {
                m.feed(piece, &mut out);
            }
            let found = m.finish(&mut out).into_values();
            assert_eq!(String::from_utf8(out).unwrap(), want, "cut {cut}");
            assert_eq!(found, ["correct horse battery"], "cut {cut}");
        }
    }

    #[test]
    fn a_token_named_part_is_a_secret_when_it_looks_like_a_key() {
        let key = "Zx9_Qw3-Rt7Yu1Io5Pa8Sd2Fg6Hj4Kl0";
        let long = "Ab1".repeat(1400);
        let body = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{key}\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"eos_token\"\r\n\r\n</s>\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"upload_token\"\r\n\r\n{long}\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"reset_token\"\r\n\r\n{key}"
        );
        let want = body.replace(key, "[REDACTED]");
        for cut in [1, 5, 64, 4096] {
            let mut m = MultipartFields::new(FieldNames::new(&[]), "XyZ");
            let mut out = Vec::new();
            for piece in body.as_bytes().chunks(cut) {
                m.feed(piece, &mut out);
            }
            let found = m.finish(&mut out).into_values();
            assert_eq!(String::from_utf8(out).unwrap(), want, "cut {cut}");
            assert_eq!(found, [key], "cut {cut}");
        }
    }
}
