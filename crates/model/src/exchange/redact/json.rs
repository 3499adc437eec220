//! Secret fields in JSON: by structure when a body is one JSON document, and by a small
//! lexical scanner everywhere else (NDJSON, SSE `data:` lines, JSON followed by other
//! bytes, bodies too large to keep whole), so the field is redacted however the JSON is
//! framed.
//!
//! The scanner sees `"name"`, optional whitespace, `:` and a string or number, and
//! replaces the value with `"[REDACTED]"`. It keeps no more state than the current key,
//! so it runs on a stream of any length; a raw newline (never inside a JSON string) puts
//! it back in step after text that is not JSON. Values that are objects or arrays are
//! left to the structural pass; their own named fields are still redacted.

use memchr::{memchr, memchr3};
use serde_json::Value;

use super::{Collected, FieldNames};
use crate::rules::REDACTED;

/// Replaces the value of every object key named in `fields`, at any depth; string values
/// that were replaced are added to `found`.
pub fn redact_value(value: &mut Value, fields: &FieldNames, found: &mut Collected) -> bool {
    let mut changed = false;
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if fields.contains(k.as_bytes()) {
                    if *v != Value::String(REDACTED.into()) {
                        if let Value::String(s) = v {
                            found.push(s.as_bytes());
                        }
                        *v = Value::String(REDACTED.into());
                        changed = true;
                    }
                } else {
                    changed |= redact_value(v, fields, found);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                changed |= redact_value(v, fields, found);
            }
        }
        _ => {}
    }
    changed
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Outside any string.
    Text,
    /// Inside a string that may turn out to be a key.
    Str { escaped: bool },
    /// A string naming a secret field just ended; a `:` makes it a key.
    AfterKey,
    /// Between the `:` and the value.
    AfterColon,
    /// Inside a string value being dropped.
    SecretStr { escaped: bool },
    /// Inside a number value being dropped.
    SecretNum,
}

/// The lexical field redactor for a stream.
pub struct JsonFields {
    fields: FieldNames,
    state: State,
    key: Vec<u8>,
    key_ok: bool,
    value: Vec<u8>,
    pub found: Collected,
}

impl JsonFields {
    pub fn new(fields: FieldNames) -> JsonFields {
        JsonFields {
            fields,
            state: State::Text,
            key: Vec::new(),
            key_ok: false,
            value: Vec::new(),
            found: Collected::default(),
        }
    }

    fn note_key(&mut self, bytes: &[u8]) {
        if self.key_ok {
            if self.key.len() + bytes.len() <= self.fields.longest() {
                self.key.extend_from_slice(bytes);
            } else {
                self.key_ok = false;
            }
        }
    }

    fn end_value(&mut self) {
        self.found.push_json_string(&self.value);
        self.value.clear();
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            match self.state {
                State::Text => match memchr(b'"', rest) {
                    Some(k) => {
                        out.extend_from_slice(&rest[..=k]);
                        i += k + 1;
                        self.key.clear();
                        self.key_ok = true;
                        self.state = State::Str { escaped: false };
                    }
                    None => {
                        out.extend_from_slice(rest);
                        i = data.len();
                    }
                },
                State::Str { escaped: true } => {
                    // Keys written with escapes are not compared.
                    out.push(rest[0]);
                    self.key_ok = false;
                    self.state = State::Str { escaped: false };
                    i += 1;
                }
                State::Str { escaped: false } => match memchr3(b'"', b'\\', b'\n', rest) {
                    Some(k) => {
                        self.note_key(&rest[..k]);
                        out.extend_from_slice(&rest[..=k]);
                        i += k + 1;
                        self.state = match rest[k] {
                            b'"' if self.key_ok && self.fields.contains(&self.key) => {
                                State::AfterKey
                            }
                            b'\\' => State::Str { escaped: true },
                            _ => State::Text,
                        };
                    }
                    None => {
                        self.note_key(rest);
                        out.extend_from_slice(rest);
                        i = data.len();
                    }
                },
                State::AfterKey | State::AfterColon
                    if matches!(rest[0], b' ' | b'\t' | b'\r' | b'\n') =>
                {
                    out.push(rest[0]);
                    i += 1;
                }
                State::AfterKey => match rest[0] {
                    b':' => {
                        out.push(b':');
                        i += 1;
                        self.state = State::AfterColon;
                    }
                    _ => self.state = State::Text,
                },
                State::AfterColon => match rest[0] {
                    b'"' => {
                        out.push(b'"');
                        out.extend_from_slice(REDACTED.as_bytes());
                        i += 1;
                        self.value.clear();
                        self.state = State::SecretStr { escaped: false };
                    }
                    b'-' | b'0'..=b'9' => {
                        out.push(b'"');
                        out.extend_from_slice(REDACTED.as_bytes());
                        out.push(b'"');
                        self.value.clear();
                        self.state = State::SecretNum;
                    }
                    _ => self.state = State::Text,
                },
                State::SecretStr { escaped: true } => {
                    self.collect(&rest[..1]);
                    i += 1;
                    self.state = State::SecretStr { escaped: false };
                }
                State::SecretStr { escaped: false } => match memchr3(b'"', b'\\', b'\n', rest) {
                    Some(k) => {
                        self.collect(&rest[..k]);
                        i += k + 1;
                        match rest[k] {
                            b'\\' => {
                                self.collect(b"\\");
                                self.state = State::SecretStr { escaped: true };
                            }
                            c => {
                                // A newline ends an unterminated string: the line was not JSON.
                                out.push(c);
                                self.end_value();
                                self.state = State::Text;
                            }
                        }
                    }
                    None => {
                        self.collect(rest);
                        i = data.len();
                    }
                },
                State::SecretNum => {
                    let n = rest
                        .iter()
                        .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                        .unwrap_or(rest.len());
                    // Numbers are redacted but not scrubbed elsewhere: too many ordinary
                    // numbers would match.
                    i += n;
                    if n < rest.len() {
                        self.state = State::Text;
                    }
                }
            }
        }
    }

    fn collect(&mut self, bytes: &[u8]) {
        if self.value.len() <= super::secrets::MAX_SCRUB_LEN {
            self.value.extend_from_slice(bytes);
        }
    }

    /// Ends the stream; what is left of a value cut off by the end is dropped.
    pub fn finish(mut self) -> Collected {
        if matches!(self.state, State::SecretStr { .. }) {
            self.end_value();
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(data: &[u8], cut: usize) -> (String, Vec<String>) {
        let mut j = JsonFields::new(FieldNames::new(&["password".into(), "api_key".into()]));
        let mut out = Vec::new();
        for piece in data.chunks(cut) {
            j.feed(piece, &mut out);
        }
        (String::from_utf8(out).unwrap(), j.finish().into_values())
    }

    #[test]
    fn fields_are_redacted_in_ndjson_sse_and_json_with_trailing_bytes() {
        let input = concat!(
            "{\"user\":\"ada\",\"password\":\"hunter2-secret\"}\n",
            "data: {\"delta\":{\"API_KEY\" :  \"sk-abcdefgh\"}}\n\n",
            "{\"password\": 12345678, \"n\": 1} trailing \"bytes\n",
            "{\"note\": \"password\", \"p\": [\"password\"]}\n",
            "He said \"password\": \"in-plain-text\"\n",
        );
        let want = concat!(
            "{\"user\":\"ada\",\"password\":\"[REDACTED]\"}\n",
            "data: {\"delta\":{\"API_KEY\" :  \"[REDACTED]\"}}\n\n",
            "{\"password\": \"[REDACTED]\", \"n\": 1} trailing \"bytes\n",
            "{\"note\": \"password\", \"p\": [\"password\"]}\n",
            "He said \"password\": \"[REDACTED]\"\n",
        );
        for cut in [1, 2, 5, 16, 4096] {
            let (out, found) = scan(input.as_bytes(), cut);
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(
                found,
                ["hunter2-secret", "sk-abcdefgh", "in-plain-text"],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn escaped_strings_and_already_redacted_values_are_stable() {
        let input = br#"{"password":"a\"b\\c-long-enough","x":"\"password\": \"no\""}"#;
        let (out, found) = scan(input, 3);
        assert_eq!(
            out,
            r#"{"password":"[REDACTED]","x":"\"password\": \"no\""}"#
        );
        assert_eq!(found, [r#"a\"b\\c-long-enough"#, r#"a"b\c-long-enough"#]);
        let (again, _) = scan(out.as_bytes(), 1);
        assert_eq!(again, out);
    }
}
