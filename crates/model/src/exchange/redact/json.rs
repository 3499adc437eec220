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

use super::json_fields::{
    is_key_type, is_pair_name, is_pair_value, is_secure_type, is_typed_key, pair_names_credential,
    secret_json,
};
use super::{Collected, FieldNames};
use crate::credential::{self, MAX_KEY_LIKE as MAX_KEY};
use crate::rules::REDACTED;

/// Replaces the value of every object key named in `fields`, at any depth, and the
/// scalar `value` of a name/value pair whose name is a credential's (as
/// [`super::json_fields::redact`] does for a body's bytes); string values that were
/// replaced are added to `found`.
pub fn redact_value(value: &mut Value, fields: &FieldNames, found: &mut Collected) -> bool {
    redact_under(value, fields, found, false)
}

/// [`redact_value`]; `under_secret`: `value` is the value of a name read as a
/// credential's, whose scalar `value` is then the secret (an ARM template's
/// `{"adminPassword": {"value": …}}`).
fn redact_under(
    value: &mut Value,
    fields: &FieldNames,
    found: &mut Collected,
    under_secret: bool,
) -> bool {
    let mut changed = false;
    match value {
        Value::Object(map) => {
            let secret_pair = under_secret
                || map.iter().any(|(k, v)| {
                    v.as_str().is_some_and(|n| {
                        is_secure_type(k, n)
                            || (is_pair_name(k) && pair_names_credential(n, fields))
                    })
                });
            let typed_key = map
                .iter()
                .any(|(k, v)| v.as_str().is_some_and(|t| is_key_type(k, t)));
            for (k, v) in map.iter_mut() {
                let scalar = matches!(v, Value::String(_) | Value::Number(_));
                let secret = match scalar {
                    true => {
                        fields.contains(k.as_bytes())
                            || (secret_pair && is_pair_value(k))
                            || (typed_key && is_typed_key(k) && v.is_string())
                            || (fields.maybe(k.as_bytes())
                                && v.as_str()
                                    .is_some_and(|t| credential::key_like(t.as_bytes())))
                    }
                    false => {
                        fields.listed(k.as_bytes())
                            && !v.as_object().is_some_and(super::json_fields::is_schema)
                    }
                };
                if secret {
                    if *v != Value::String(REDACTED.into()) {
                        let mut with = Value::String(REDACTED.into());
                        if let Value::String(s) = v {
                            let mut leaves = super::json_fields::Leaves::default();
                            match secret_json(s, &mut leaves) {
                                Some(None) => continue,
                                Some(Some(text)) => with = Value::String(text),
                                None => {}
                            }
                            found.by_name(!fields.listed(k.as_bytes()));
                            found.push(s.as_bytes());
                            found.push_leaves(leaves);
                        }
                        *v = with;
                        changed = true;
                    }
                } else {
                    let under = !scalar && fields.contains(k.as_bytes());
                    changed |= redact_under(v, fields, found, under);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                changed |= redact_under(v, fields, found, false);
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
    /// Inside a string value held until it ends, which is a secret if it looks like a
    /// key once unescaped (a field that [`FieldNames::maybe`] names). `escaped`: a `\`
    /// was just read.
    MaybeStr { escaped: bool },
    /// Inside a string of the JSON a string holds (`"{\"password\": \"x\"}"`, a tool
    /// call's arguments): opened by `\"`. `raw_esc`: a `\` of the outer string was just
    /// read; `esc`: an escape of the inner JSON (an outer `\\`) is pending.
    InStr { raw_esc: bool, esc: bool },
    /// An inner string naming a secret field just ended; an inner `:` makes it a key.
    InAfterKey { raw_esc: bool },
    /// Between the inner `:` and the value.
    InAfterColon { raw_esc: bool },
    /// Inside an inner string value being dropped.
    InSecretStr { raw_esc: bool, esc: bool },
    /// Inside an inner number value being dropped.
    InSecretNum,
    /// Inside an inner string value held until it ends, as the outer string writes it: a
    /// secret if, read through both levels of escapes, it looks like a key (the inner
    /// key is one [`FieldNames::maybe`] names).
    InMaybeStr { raw_esc: bool, esc: bool },
}

/// One character of the JSON a string holds, read from the outer string's bytes: a raw
/// byte, or the character an outer escape stands for.
#[derive(Clone, Copy, PartialEq)]
enum InnerChar {
    Quote,
    Backslash,
    Space,
    Other,
}

impl InnerChar {
    /// The character the outer escape `\b` stands for.
    fn escaped(b: u8) -> InnerChar {
        match b {
            b'"' => InnerChar::Quote,
            b'\\' => InnerChar::Backslash,
            b'n' | b't' | b'r' => InnerChar::Space,
            _ => InnerChar::Other,
        }
    }
}

/// The lexical field redactor for a stream.
pub struct JsonFields {
    fields: FieldNames,
    state: State,
    key: Vec<u8>,
    key_ok: bool,
    /// The key just read is one whose value is a secret when it looks like a key.
    maybe: bool,
    value: Vec<u8>,
    /// A `\uXXXX` escape of a string being read (the bytes after its backslash), whole
    /// before it says which character it stands for.
    unicode: Vec<u8>,
    pub found: Collected,
}

impl JsonFields {
    pub fn new(fields: FieldNames) -> JsonFields {
        JsonFields {
            fields,
            state: State::Text,
            key: Vec::new(),
            key_ok: false,
            maybe: false,
            value: Vec::new(),
            unicode: Vec::new(),
            found: Collected::default(),
        }
    }

    /// Reads the escape whose backslash was just read, from `rest`: how many bytes it
    /// took, and once the escape is whole, the character it stands for in the JSON a
    /// string holds with the escape's bytes after the backslash. A `\u0022` is a quote
    /// as `\"` is (.NET's serializer writes quotes so); a `\uXXXX` cut by the end of a
    /// piece is kept until the next.
    fn escape_unit(&mut self, rest: &[u8]) -> (usize, Option<(InnerChar, Vec<u8>)>) {
        if self.unicode.is_empty() && rest[0] != b'u' {
            return (1, Some((InnerChar::escaped(rest[0]), vec![rest[0]])));
        }
        let take = (5 - self.unicode.len()).min(rest.len());
        self.unicode.extend_from_slice(&rest[..take]);
        if self.unicode.len() < 5 {
            return (take, None);
        }
        let raw = std::mem::take(&mut self.unicode);
        let code = std::str::from_utf8(&raw[1..])
            .ok()
            .and_then(|h| u16::from_str_radix(h, 16).ok());
        let c = match code {
            Some(0x22) => InnerChar::Quote,
            Some(0x5c) => InnerChar::Backslash,
            Some(0x20 | 0x09 | 0x0a | 0x0d) => InnerChar::Space,
            _ => InnerChar::Other,
        };
        (take, Some((c, raw)))
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

    /// Writes the secret string value just read (held as written, escapes and all) and
    /// its closing quote: `[REDACTED]`, or when it holds JSON, that JSON with its
    /// strings and numbers redacted ([`secret_json`]). A value too long to hold whole
    /// goes whole.
    fn settle_secret(&mut self, out: &mut Vec<u8>) {
        let mut leaves = super::json_fields::Leaves::default();
        let text = (self.value.len() <= super::secrets::MAX_SCRUB_LEN)
            .then(|| super::json_string_text(&self.value))
            .flatten();
        match text.and_then(|t| secret_json(&t, &mut leaves)) {
            Some(None) => out.extend_from_slice(&self.value),
            Some(Some(json)) => {
                let escaped = serde_json::to_string(&json).expect("a string serializes");
                out.extend_from_slice(&escaped.as_bytes()[1..escaped.len() - 1]);
            }
            None => out.extend_from_slice(REDACTED.as_bytes()),
        }
        out.push(b'"');
        self.end_value();
        self.found.push_leaves(leaves);
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
                    // Keys written with escapes are not compared; an escaped quote opens
                    // a string of the JSON this string holds.
                    let (n, unit) = self.escape_unit(rest);
                    i += n;
                    let Some((c, raw)) = unit else {
                        continue;
                    };
                    out.extend_from_slice(&raw);
                    self.state = if c == InnerChar::Quote {
                        self.key.clear();
                        self.key_ok = true;
                        State::InStr {
                            raw_esc: false,
                            esc: false,
                        }
                    } else {
                        self.key_ok = false;
                        State::Str { escaped: false }
                    };
                }
                State::InStr { .. }
                | State::InAfterKey { .. }
                | State::InAfterColon { .. }
                | State::InSecretStr { .. }
                | State::InMaybeStr { .. }
                | State::InSecretNum => i += self.feed_inner(rest, out),
                State::Str { escaped: false } => match memchr3(b'"', b'\\', b'\n', rest) {
                    Some(k) => {
                        self.note_key(&rest[..k]);
                        out.extend_from_slice(&rest[..=k]);
                        i += k + 1;
                        self.state = match rest[k] {
                            b'"' if self.key_ok && self.fields.contains(&self.key) => {
                                self.found.by_name(!self.fields.listed(&self.key));
                                self.maybe = false;
                                State::AfterKey
                            }
                            b'"' if self.key_ok && self.fields.maybe(&self.key) => {
                                self.maybe = true;
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
                State::AfterColon if self.maybe => match rest[0] {
                    b'"' => {
                        out.push(b'"');
                        i += 1;
                        self.value.clear();
                        self.state = State::MaybeStr { escaped: false };
                    }
                    _ => self.state = State::Text,
                },
                State::MaybeStr { escaped: true } => {
                    // The escaped byte (`\u002B` goes on as plain bytes).
                    self.value.push(rest[0]);
                    i += 1;
                    self.state = State::MaybeStr { escaped: false };
                }
                State::MaybeStr { escaped: false } => {
                    let (k, end) = match memchr3(b'"', b'\\', b'\n', rest) {
                        Some(k) => (k, Some(rest[k])),
                        None => (rest.len(), None),
                    };
                    self.value.extend_from_slice(&rest[..k]);
                    i += k + end.map_or(0, |_| 1);
                    match end {
                        Some(b'"') if super::json_key_like(&self.value) => {
                            out.extend_from_slice(REDACTED.as_bytes());
                            self.found.by_name(true);
                            self.found.push_json_string(&self.value);
                            self.value.clear();
                            out.push(b'"');
                            self.state = State::Text;
                        }
                        Some(b'"') => {
                            out.append(&mut self.value);
                            out.push(b'"');
                            self.state = State::Text;
                        }
                        Some(b'\\') => {
                            self.value.push(b'\\');
                            self.state = State::MaybeStr { escaped: true };
                        }
                        Some(c) => {
                            // A raw line break: no JSON string goes on past it.
                            out.append(&mut self.value);
                            out.push(c);
                            self.state = State::Text;
                        }
                        None => {}
                    }
                    if matches!(self.state, State::MaybeStr { .. })
                        && self.value.len() > MAX_KEY * 6
                    {
                        // Too long to be a key, however escaped: an ordinary string
                        // from here.
                        let escaped = matches!(self.state, State::MaybeStr { escaped: true });
                        if escaped {
                            self.value.pop();
                        }
                        out.append(&mut self.value);
                        self.key_ok = false;
                        self.state = State::Str { escaped: false };
                        if escaped {
                            out.push(b'\\');
                            self.state = State::Str { escaped: true };
                        }
                    }
                }
                State::AfterColon => match rest[0] {
                    b'"' => {
                        // The value is held until it ends: a string that holds JSON
                        // keeps its shape (`secret_json`).
                        out.push(b'"');
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
                            b'"' => {
                                self.settle_secret(out);
                                self.state = State::Text;
                            }
                            c => {
                                // A newline ends an unterminated string: the line was not JSON.
                                out.extend_from_slice(REDACTED.as_bytes());
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

    /// Back in the outer string, outside any string of the JSON it holds.
    fn inner_text(&mut self) -> State {
        self.key_ok = false;
        State::Str { escaped: false }
    }

    /// One step of the scanner inside a string that holds JSON of its own: the same
    /// rules one level down, where the inner JSON's quote is the outer `\"` and its
    /// backslash the outer `\\`. Reads at least one byte of `rest`, or moves to a state
    /// that will; returns how many it read.
    fn feed_inner(&mut self, rest: &[u8], out: &mut Vec<u8>) -> usize {
        let b = rest[0];
        let raw_esc = match self.state {
            State::InStr { raw_esc, .. }
            | State::InAfterKey { raw_esc }
            | State::InAfterColon { raw_esc }
            | State::InSecretStr { raw_esc, .. }
            | State::InMaybeStr { raw_esc, .. } => raw_esc,
            _ => false,
        };
        if !raw_esc && (b == b'"' || b == b'\n') {
            // The outer string ends (or the line was not JSON) inside the inner JSON:
            // a value cut there (a streamed fragment) stays dropped; one held goes on.
            match self.state {
                State::InSecretStr { .. } => self.end_value(),
                State::InMaybeStr { .. } => out.append(&mut self.value),
                _ => {}
            }
            out.push(b);
            self.key_ok = false;
            self.state = State::Text;
            return 1;
        }
        match self.state {
            State::InStr { raw_esc, esc } => self.inner_key(rest, raw_esc, esc, out),
            State::InAfterKey { raw_esc } => self.inner_between(rest, raw_esc, false, out),
            State::InAfterColon { raw_esc } => self.inner_between(rest, raw_esc, true, out),
            State::InSecretStr { raw_esc, esc } => self.inner_secret(rest, raw_esc, esc, out),
            State::InMaybeStr { raw_esc, esc } => self.inner_maybe(rest, raw_esc, esc, out),
            State::InSecretNum => {
                let n = rest
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(rest.len());
                if n < rest.len() {
                    self.state = self.inner_text();
                }
                n
            }
            _ => unreachable!("feed_inner is called in an inner state"),
        }
    }

    /// Inside an inner string that may be a key: kept, and compared when it ends.
    fn inner_key(&mut self, rest: &[u8], raw_esc: bool, esc: bool, out: &mut Vec<u8>) -> usize {
        let b = rest[0];
        if raw_esc {
            let (n, unit) = self.escape_unit(rest);
            let Some((c, raw)) = unit else {
                return n;
            };
            out.extend_from_slice(&raw);
            self.state = if esc || c != InnerChar::Quote {
                // Inner keys written with escapes are not compared either.
                self.key_ok = false;
                State::InStr {
                    raw_esc: false,
                    esc: !esc && c == InnerChar::Backslash,
                }
            } else if self.key_ok && self.fields.contains_in_arguments(&self.key) && {
                self.found.by_name(!self.fields.listed(&self.key));
                true
            } {
                // One level down, the listed names and those that say token, secret,
                // password or private key: JSON in a string is a model's tool-call
                // arguments or a tool's text, whose values the agent carries into its
                // next calls (`lookup_license({"license_key": …})` becomes
                // `GET /licenses/…`); redacting an identifier there would make that
                // call miss on replay.
                self.maybe = false;
                State::InAfterKey { raw_esc: false }
            } else if self.key_ok && self.fields.maybe(&self.key) {
                // A name ending in `token` (`invite_token`): its value is held, and is a
                // secret if it looks like a key, as one level up.
                self.maybe = true;
                State::InAfterKey { raw_esc: false }
            } else {
                self.inner_text()
            };
            return n;
        }
        // An escaped inner character is a raw byte here, or an outer escape.
        if esc && b != b'\\' {
            out.push(b);
            self.key_ok = false;
            self.state = State::InStr {
                raw_esc: false,
                esc: false,
            };
            return 1;
        }
        let k = memchr3(b'"', b'\\', b'\n', rest).unwrap_or(rest.len());
        self.note_key(&rest[..k]);
        out.extend_from_slice(&rest[..k]);
        if k < rest.len() && rest[k] == b'\\' {
            out.push(b'\\');
            self.state = State::InStr { raw_esc: true, esc };
            return k + 1;
        }
        // A quote or newline is left for the next step: it ends the outer string.
        k
    }

    /// Between an inner secret key and its value (`after_colon`: past the `:`): inner
    /// whitespace is kept; a string or number value is replaced; anything else is not a
    /// value to redact.
    fn inner_between(
        &mut self,
        rest: &[u8],
        raw_esc: bool,
        after_colon: bool,
        out: &mut Vec<u8>,
    ) -> usize {
        let b = rest[0];
        let here = |raw_esc| match after_colon {
            true => State::InAfterColon { raw_esc },
            false => State::InAfterKey { raw_esc },
        };
        if !raw_esc {
            match b {
                b' ' | b'\t' | b'\r' | b'\\' => {
                    out.push(b);
                    self.state = here(b == b'\\');
                    return 1;
                }
                b':' if !after_colon => {
                    out.push(b);
                    self.state = State::InAfterColon { raw_esc: false };
                    return 1;
                }
                b'-' | b'0'..=b'9' if after_colon && !self.maybe => {
                    out.extend_from_slice(b"\\\"");
                    out.extend_from_slice(REDACTED.as_bytes());
                    out.extend_from_slice(b"\\\"");
                    self.state = State::InSecretNum;
                }
                // Read again as inner text.
                _ => self.state = self.inner_text(),
            }
            return 0;
        }
        let (n, unit) = self.escape_unit(rest);
        let Some((c, raw)) = unit else {
            return n;
        };
        out.extend_from_slice(&raw);
        self.state = match c {
            InnerChar::Space => here(false),
            InnerChar::Quote if after_colon && self.maybe => {
                self.value.clear();
                State::InMaybeStr {
                    raw_esc: false,
                    esc: false,
                }
            }
            InnerChar::Quote if after_colon => {
                out.extend_from_slice(REDACTED.as_bytes());
                self.value.clear();
                State::InSecretStr {
                    raw_esc: false,
                    esc: false,
                }
            }
            InnerChar::Quote => {
                // A string after a key, where a colon belongs: a new key maybe.
                self.key.clear();
                self.key_ok = true;
                State::InStr {
                    raw_esc: false,
                    esc: false,
                }
            }
            _ => self.inner_text(),
        };
        n
    }

    /// Inside an inner string value being dropped, up to the inner quote that ends it.
    fn inner_secret(&mut self, rest: &[u8], raw_esc: bool, esc: bool, out: &mut Vec<u8>) -> usize {
        let b = rest[0];
        if raw_esc {
            let (n, unit) = self.escape_unit(rest);
            let Some((c, raw)) = unit else {
                return n;
            };
            if !esc && c == InnerChar::Quote {
                // Closed as it was opened: `\"` or `\u0022`.
                out.push(b'\\');
                out.extend_from_slice(&raw);
                self.end_value();
                self.state = self.inner_text();
                return n;
            }
            // The value as the inner JSON writes it: `\\` is its backslash.
            self.collect(match c {
                InnerChar::Quote => b"\"",
                InnerChar::Backslash => b"\\",
                _ => &raw,
            });
            self.state = State::InSecretStr {
                raw_esc: false,
                esc: !esc && c == InnerChar::Backslash,
            };
            return n;
        }
        if esc && b != b'\\' {
            self.collect(&rest[..1]);
            self.state = State::InSecretStr {
                raw_esc: false,
                esc: false,
            };
            return 1;
        }
        let k = memchr3(b'"', b'\\', b'\n', rest).unwrap_or(rest.len());
        self.collect(&rest[..k]);
        if k < rest.len() && rest[k] == b'\\' {
            self.state = State::InSecretStr { raw_esc: true, esc };
            return k + 1;
        }
        k
    }

    /// Inside an inner string value held until the inner quote that ends it (see
    /// [`State::InMaybeStr`]); one too long to be a key is written on as an ordinary
    /// inner string.
    fn inner_maybe(&mut self, rest: &[u8], raw_esc: bool, esc: bool, out: &mut Vec<u8>) -> usize {
        let b = rest[0];
        let n = if raw_esc {
            let (n, unit) = self.escape_unit(rest);
            let Some((c, raw)) = unit else {
                return n;
            };
            if !esc && c == InnerChar::Quote {
                // Closed as it was opened: `\"` or `\u0022`.
                self.settle_inner_maybe(out);
                out.push(b'\\');
                out.extend_from_slice(&raw);
                self.state = self.inner_text();
                return n;
            }
            self.value.push(b'\\');
            self.value.extend_from_slice(&raw);
            self.state = State::InMaybeStr {
                raw_esc: false,
                esc: !esc && c == InnerChar::Backslash,
            };
            n
        } else if esc && b != b'\\' {
            self.value.push(b);
            self.state = State::InMaybeStr {
                raw_esc: false,
                esc: false,
            };
            1
        } else {
            let k = memchr3(b'"', b'\\', b'\n', rest).unwrap_or(rest.len());
            self.value.extend_from_slice(&rest[..k]);
            if k < rest.len() && rest[k] == b'\\' {
                self.state = State::InMaybeStr { raw_esc: true, esc };
                k + 1
            } else {
                // A quote or newline is left for the next step: it ends the outer string.
                k
            }
        };
        if self.value.len() > MAX_KEY * 12 {
            // Too long to be a key, however escaped twice: an ordinary inner string.
            out.append(&mut self.value);
            self.key_ok = false;
            if let State::InMaybeStr { raw_esc, esc } = self.state {
                if raw_esc {
                    out.push(b'\\');
                }
                self.state = State::InStr { raw_esc, esc };
            }
        }
        n
    }

    /// Writes the inner string value held: `[REDACTED]` when it looks like a key once
    /// read through the outer string's escapes and its own, else as it was.
    fn settle_inner_maybe(&mut self, out: &mut Vec<u8>) {
        let text = super::json_string_text(&self.value);
        match text.filter(|t| super::json_key_like(t.as_bytes())) {
            Some(inner) => {
                out.extend_from_slice(REDACTED.as_bytes());
                self.found.by_name(true);
                self.found.push_json_string(inner.as_bytes());
                self.value.clear();
            }
            None => out.append(&mut self.value),
        }
    }

    fn collect(&mut self, bytes: &[u8]) {
        if self.value.len() <= super::secrets::MAX_SCRUB_LEN {
            self.value.extend_from_slice(bytes);
        }
    }

    /// How many bytes fed so far are held back: a value that is a secret if it looks
    /// like a key, until it ends.
    pub fn held(&self) -> usize {
        match self.state {
            State::MaybeStr { .. } | State::InMaybeStr { .. } => self.value.len(),
            _ => 0,
        }
    }

    /// Ends the stream; what is left of a secret value cut off by the end is dropped,
    /// what was held of another written to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Collected {
        match self.state {
            State::SecretStr { .. } => self.end_value(),
            State::MaybeStr { .. } => out.append(&mut self.value),
            State::InMaybeStr { raw_esc, .. } => {
                out.append(&mut self.value);
                if raw_esc {
                    // The backslash read last (and what was read of a `\u` after it).
                    out.push(b'\\');
                    out.append(&mut self.unicode);
                }
            }
            _ => {}
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(data: &[u8], cut: usize) -> (String, Vec<String>) {
        let fields = FieldNames::new(&["password".into(), "api_key".into()]);
        scan_with(&fields, data, cut)
    }

    /// The stream's output and the values it found, `data` fed in pieces of `cut` bytes.
    fn scan_with(fields: &FieldNames, data: &[u8], cut: usize) -> (String, Vec<String>) {
        let mut j = JsonFields::new(fields.clone());
        let mut out = Vec::new();
        for piece in data.chunks(cut) {
            j.feed(piece, &mut out);
        }
        let found = j.finish(&mut out).into_values();
        (String::from_utf8(out).unwrap(), found)
    }

    /// Asserts that `body`, fed in pieces of 1 to 4096 bytes, gives `want` and finds
    /// `found`.
    fn every_cut(fields: &FieldNames, body: &str, want: &str, found: &[&str]) {
        for cut in [1, 2, 3, 7, 64, 4096] {
            let (out, got) = scan_with(fields, body.as_bytes(), cut);
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(got, found, "cut {cut}");
        }
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
            r#"{"password":"[REDACTED]","x":"\"password\": \"[REDACTED]\""}"#
        );
        assert_eq!(found, [r#"a\"b\\c-long-enough"#, r#"a"b\c-long-enough"#]);
        let (again, _) = scan(out.as_bytes(), 1);
        assert_eq!(again, out);
    }

    #[test]
    fn fields_of_json_written_inside_a_string_are_redacted_however_the_stream_is_cut() {
        // What an agent sends back with every turn: a tool call's arguments, JSON in a
        // JSON string.
        let input = concat!(
            r#"{"tool_calls":[{"function":{"name":"login","arguments":"{\"user\": \"ada\", \"password\": \"hunter2-secret\"}"}}]}"#,
            "\n",
            r#"{"arguments":"{\"api_key\":12345678,\"n\":1}"}"#,
            "\n",
            // An escaped quote and backslash inside the inner value.
            r#"{"a":"{\"password\":\"x\\\"y\\\\z-long-value\",\"b\":2}"}"#,
            "\n",
            // Pretty-printed inner JSON, a key in another case.
            r#"{"a":"{\n  \"Password\" :\n  \"pa55word-long\"\n}"}"#,
            "\n",
            // Nothing secret: a field's name as a value, a key written with an escape.
            r#"{"a":"{\"user\":\"password\",\"list\":[\"password\"],\"pass\\u0077ord\":\"kept-as-is\"}"}"#,
            "\n",
            // A streamed fragment: the outer string ends inside the inner value.
            r#"data: {"arguments":"{\"password\": \"hunter2-sec"}"#,
            "\n",
            // As .NET's serializer writes it: every quote as \u0022, an é as \u00e9.
            r#"{"arguments":"{\u0022user\u0022:\u0022r\u00e9my\u0022,\u0022Password\u0022:\u0022dotnet-SECRET-1\u0022}"}"#,
            "\n",
        );
        let want = concat!(
            r#"{"tool_calls":[{"function":{"name":"login","arguments":"{\"user\": \"ada\", \"password\": \"[REDACTED]\"}"}}]}"#,
            "\n",
            r#"{"arguments":"{\"api_key\":\"[REDACTED]\",\"n\":1}"}"#,
            "\n",
            r#"{"a":"{\"password\":\"[REDACTED]\",\"b\":2}"}"#,
            "\n",
            r#"{"a":"{\n  \"Password\" :\n  \"[REDACTED]\"\n}"}"#,
            "\n",
            r#"{"a":"{\"user\":\"password\",\"list\":[\"password\"],\"pass\\u0077ord\":\"kept-as-is\"}"}"#,
            "\n",
            r#"data: {"arguments":"{\"password\": \"[REDACTED]"}"#,
            "\n",
            r#"{"arguments":"{\u0022user\u0022:\u0022r\u00e9my\u0022,\u0022Password\u0022:\u0022[REDACTED]\u0022}"}"#,
            "\n",
        );
        for cut in [1, 2, 3, 5, 7, 16, 4096] {
            let (out, found) = scan(input.as_bytes(), cut);
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(
                found,
                [
                    "hunter2-secret",
                    r#"x\"y\\z-long-value"#,
                    r#"x"y\z-long-value"#,
                    "pa55word-long",
                    "hunter2-sec",
                    "dotnet-SECRET-1",
                ],
                "cut {cut}"
            );
            let (again, _) = scan(out.as_bytes(), cut);
            assert_eq!(again, out, "stable, cut {cut}");
        }
        // The outer document stays JSON, and so does the JSON inside it.
        let first = want.lines().next().unwrap();
        let v: serde_json::Value = serde_json::from_str(first).unwrap();
        let args = v["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        let inner: serde_json::Value = serde_json::from_str(args).unwrap();
        assert_eq!(inner["password"], REDACTED);
        assert_eq!(inner["user"], "ada");
    }

    #[test]
    fn a_secret_holding_json_keeps_its_shape_in_every_pass_however_the_stream_is_cut() {
        // AWS Secrets Manager's answer for an RDS master password: the secret is a JSON
        // text the agent parses, under a name read as a credential's.
        let inner = r#"{"username": "admin", "password": "Sup3r-S3cret-pw!", "port": 5432,
 "hosts": ["db-1.internal", null], "ssl": true, "nested": {"k": -1.5e3}}"#;
        let body = serde_json::to_string(&serde_json::json!({
            "Name": "prod/db",
            "SecretString": inner,
            "note": "Sup3r-S3cret-pw! echoed",
        }))
        .unwrap();
        let redacted_inner = r#"{"username": "[REDACTED]", "password": "[REDACTED]", "port": "[REDACTED]",
 "hosts": ["[REDACTED]", null], "ssl": true, "nested": {"k": "[REDACTED]"}}"#;
        let want = serde_json::to_string(&serde_json::json!({
            "Name": "prod/db",
            "SecretString": redacted_inner,
            "note": "Sup3r-S3cret-pw! echoed",
        }))
        .unwrap();
        let fields = FieldNames::new(&[]);
        for cut in [1, 2, 3, 7, 64, 4096] {
            let (out, found) = scan_with(&fields, body.as_bytes(), cut);
            // The literal scrub, which runs after, takes the echo in `note`.
            assert_eq!(out, want, "cut {cut}");
            assert!(found.iter().any(|f| f == "Sup3r-S3cret-pw!"), "{found:?}");
            assert!(found.iter().any(|f| f == inner), "{found:?}");
            // A user name is not hunted through the rest of the exchange.
            assert!(!found.iter().any(|f| f == "admin"), "{found:?}");
            // Read again (a stored body re-keyed), nothing changes.
            let mut again = JsonFields::new(fields.clone());
            let mut twice = Vec::new();
            again.feed(out.as_bytes(), &mut twice);
            assert_eq!(twice, out.as_bytes(), "cut {cut}");
        }
        // The whole-body pass and the DOM pass agree with the stream.
        let (out, found) = super::super::json_fields::redact(body.as_bytes(), &fields, REDACTED)
            .expect("a secret to replace");
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert!(found.iter().any(|f| f == "Sup3r-S3cret-pw!"), "{found:?}");
        assert!(super::super::json_fields::redact(want.as_bytes(), &fields, REDACTED).is_none());
        let mut value: Value = serde_json::from_str(&body).unwrap();
        let mut collected = Collected::default();
        assert!(redact_value(&mut value, &fields, &mut collected));
        assert_eq!(value, serde_json::from_str::<Value>(&want).unwrap());
        assert!(!redact_value(
            &mut value,
            &fields,
            &mut Collected::default()
        ));
        // And the agent parses what it is served.
        let v: Value = serde_json::from_str(&want).unwrap();
        let secret: Value = serde_json::from_str(v["SecretString"].as_str().unwrap()).unwrap();
        assert_eq!(secret["password"], REDACTED);
        assert_eq!(secret["ssl"], true);
    }

    #[test]
    fn a_token_named_field_is_a_secret_when_its_value_looks_like_a_key() {
        let long = format!("Ab1-{}", "x".repeat(4200));
        let body = serde_json::to_string(&serde_json::json!({
            "invite_token": "Inv9Kx2Pq7Lm4Rt8Zw3Y",
            "eos_token": "</s>",
            "bos_token": "<|begin_of_text|>",
            "next_page_token": "Abc123Def456Ghi789",
            "sync_token": 12345,
            "upload_token": "a/b/C1-D2-e3-f4-g5-h6",
            "reset_token": "Ab1\"cdefghijklmnopq",
            "share_token": long,
            "token": "Hello-World-2024-Xy",
            "csrf_token": "mF3kL9pQ2xR7vT1wZ8yB",
            // Unpadded base64 of 24 random bytes with a `/`; a path of names.
            "session_token": "q0Rk7Hc/3TfZbW1xPm9YvLa2Ns8Ge4Ju",
            "file_token": "src/main/java/Com/Example/App1Go",
        }))
        .unwrap();
        let want = body
            .replace("Inv9Kx2Pq7Lm4Rt8Zw3Y", REDACTED)
            .replace("mF3kL9pQ2xR7vT1wZ8yB", REDACTED)
            .replace("q0Rk7Hc/3TfZbW1xPm9YvLa2Ns8Ge4Ju", REDACTED);
        let fields = FieldNames::new(&[]);
        every_cut(
            &fields,
            &body,
            &want,
            &[
                "Inv9Kx2Pq7Lm4Rt8Zw3Y",
                "mF3kL9pQ2xR7vT1wZ8yB",
                "q0Rk7Hc/3TfZbW1xPm9YvLa2Ns8Ge4Ju",
            ],
        );
        // The whole-body pass and the DOM pass agree with the stream.
        let (out, found) = super::super::json_fields::redact(body.as_bytes(), &fields, REDACTED)
            .expect("a secret to replace");
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert_eq!(
            found,
            [
                "Inv9Kx2Pq7Lm4Rt8Zw3Y",
                "mF3kL9pQ2xR7vT1wZ8yB",
                "q0Rk7Hc/3TfZbW1xPm9YvLa2Ns8Ge4Ju"
            ]
        );
        let mut value: Value = serde_json::from_str(&body).unwrap();
        assert!(redact_value(&mut value, &fields, &mut Collected::default()));
        assert_eq!(value, serde_json::from_str::<Value>(&want).unwrap());
        // A value escaped in part (.NET writes `+` as `\u002B`) is read unescaped, in
        // every pass; found as written and as meant.
        let body = r#"{"reset_token":"YzYN0\u002BbS=X9ZgEaTiEtk1=Lz","n":1}"#;
        let want = r#"{"reset_token":"[REDACTED]","n":1}"#;
        let meant = ["YzYN0\\u002BbS=X9ZgEaTiEtk1=Lz", "YzYN0+bS=X9ZgEaTiEtk1=Lz"];
        for cut in [1, 5, 4096] {
            let (out, found) = scan_with(&fields, body.as_bytes(), cut);
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(found, meant, "cut {cut}");
        }
        let (out, _) = super::super::json_fields::redact(body.as_bytes(), &fields, REDACTED)
            .expect("a secret to replace");
        assert_eq!(String::from_utf8(out).unwrap(), want);
        let mut value: Value = serde_json::from_str(body).unwrap();
        assert!(redact_value(&mut value, &fields, &mut Collected::default()));
        assert_eq!(value, serde_json::from_str::<Value>(want).unwrap());
        // Cut off by the end of the stream, what was held is written.
        let mut j = JsonFields::new(fields);
        let mut out = Vec::new();
        j.feed(br#"{"reset_token":"Ab1cD"#, &mut out);
        assert_eq!(j.held(), 5);
        j.finish(&mut out);
        assert_eq!(out, br#"{"reset_token":"Ab1cD"#);
    }

    #[test]
    fn a_token_named_field_in_json_inside_a_string_is_a_secret_when_it_looks_like_a_key() {
        // An MCP tool's text result and a model's tool-call arguments: JSON in a string.
        let long = format!("Ab1-{}", "x".repeat(4200));
        let inner = serde_json::json!({
            "invite_token": "Inv9Kx2Pq7Lm4Rt8Zw3Y",
            "eos_token": "</s>",
            "next_page_token": "Abc123Def456Ghi789",
            "sync_token": 12345,
            "reset_token": "Ab1\"cdefghijklmnopq",
            "share_token": long,
            "csrf_token": "mF3kL9pQ2xR7vT1wZ8yB",
            "note": "ok",
        });
        let wrap = |inner: &Value| {
            let text = serde_json::to_string(inner).unwrap();
            serde_json::to_string(&serde_json::json!({
                "result": {"content": [{"type": "text", "text": text}]},
                "arguments": text,
            }))
            .unwrap()
        };
        let body = wrap(&inner);
        let mut redacted = inner.clone();
        redacted["invite_token"] = REDACTED.into();
        redacted["csrf_token"] = REDACTED.into();
        let want = wrap(&redacted);
        let fields = FieldNames::new(&[]);
        every_cut(
            &fields,
            &body,
            &want,
            &["Inv9Kx2Pq7Lm4Rt8Zw3Y", "mF3kL9pQ2xR7vT1wZ8yB"],
        );
        // Escaped at both levels (.NET writes `+` as `\u002B`, and quotes as `\u0022`):
        // read through both; found as the inner JSON writes it and as meant.
        let body = r#"{"text":"{\"reset_token\":\"YzYN0\\u002BbS=X9ZgEaTiEtk1=Lz\",\"n\":1}","dotnet":"{\u0022invite_token\u0022:\u0022Inv9Kx2Pq7Lm4Rt8Zw3Y\u0022}"}"#;
        let want = r#"{"text":"{\"reset_token\":\"[REDACTED]\",\"n\":1}","dotnet":"{\u0022invite_token\u0022:\u0022[REDACTED]\u0022}"}"#;
        let meant = [
            "YzYN0\\u002BbS=X9ZgEaTiEtk1=Lz",
            "YzYN0+bS=X9ZgEaTiEtk1=Lz",
            "Inv9Kx2Pq7Lm4Rt8Zw3Y",
        ];
        for cut in [1, 2, 5, 4096] {
            let (out, found) = scan_with(&fields, body.as_bytes(), cut);
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(found, meant, "cut {cut}");
        }
        // The outer string ends inside the held value (a fragment streamed a piece at
        // a time), or the stream does: what was held is written.
        let cut_off = r#"{"a":"{\"invite_token\":\"Inv9Kx","b":1}"#;
        assert_eq!(scan_with(&fields, cut_off.as_bytes(), 3).0, cut_off);
        let mut j = JsonFields::new(fields);
        let mut out = Vec::new();
        j.feed(br#"{"a":"{\"invite_token\":\"Inv9\u00"#, &mut out);
        assert_eq!(j.held(), 4);
        j.finish(&mut out);
        assert_eq!(out, br#"{"a":"{\"invite_token\":\"Inv9\u00"#);
    }

    #[test]
    fn a_secret_that_is_not_json_or_too_long_to_hold_goes_whole() {
        let fields = FieldNames::new(&[]);
        let long = format!("{{\"password\": \"{}\"}}", "x".repeat(20_000));
        for value in ["[not json", "{\"a\":1} trailing", "12345678", long.as_str()] {
            let body = serde_json::to_string(&serde_json::json!({"SecretString": value})).unwrap();
            let mut j = JsonFields::new(fields.clone());
            let mut out = Vec::new();
            for piece in body.as_bytes().chunks(5) {
                j.feed(piece, &mut out);
            }
            assert_eq!(
                String::from_utf8(out).unwrap(),
                r#"{"SecretString":"[REDACTED]"}"#,
                "{value:.40}"
            );
        }
        // Cut off by the end of the stream: nothing of it is written.
        let mut j = JsonFields::new(fields);
        let mut out = Vec::new();
        j.feed(br#"{"SecretString":"{\"password\":\"Sup3r"#, &mut out);
        assert_eq!(out, br#"{"SecretString":""#);
    }
}
