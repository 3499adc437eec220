//! Secret fields in `application/x-www-form-urlencoded` bodies (an OAuth token request
//! carries `client_secret`, `password`, `refresh_token` this way), as they stream.
//! Names are compared after form-decoding (`client%5Fsecret`, `+` for space). A field
//! whose name ends in `token` without saying more (`csrf_token`, `invite_token`) is held
//! until its value ends, and redacted when the decoded value looks like a key.
//!
//! The redaction marker percent-encoded (`%5BREDACTED%5D`, what a client sends back for a
//! value it was served redacted) is stored as the marker itself, wherever it stands:
//! record stored the marker where the client had sent the value, so a replayed request
//! and its recording read alike. A form kept whole is also keyed this way
//! (`canonical::marker_unescaped`); one too large to keep is keyed by its stored bytes.

use super::{Collected, FieldNames};
use crate::credential::{key_like, MAX_KEY_LIKE};
use crate::exchange::canonical::{fits_escaped_marker, ESCAPED_MARKER};
use crate::rules::REDACTED;

/// Longest encoded name compared (a name of `n` bytes is at most `3n` encoded).
fn name_cap(fields: &FieldNames) -> usize {
    fields.longest() * 3
}

pub struct FormFields {
    fields: FieldNames,
    name: Vec<u8>,
    name_ok: bool,
    in_value: bool,
    secret: bool,
    /// The value being read is held: a secret when it looks like a key
    /// ([`FieldNames::maybe`]).
    maybe: bool,
    value: Vec<u8>,
    /// The end of the last piece, when it could begin an encoded marker.
    partial: Vec<u8>,
    /// The piece with encoded markers replaced (reused).
    unescaped: Vec<u8>,
    pub found: Collected,
}

impl FormFields {
    pub fn new(fields: FieldNames) -> FormFields {
        FormFields {
            fields,
            name: Vec::new(),
            name_ok: true,
            in_value: false,
            secret: false,
            maybe: false,
            value: Vec::new(),
            partial: Vec::new(),
            unescaped: Vec::new(),
            found: Collected::default(),
        }
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.partial.is_empty() && memchr::memchr(b'%', data).is_none() {
            return self.read(data, out);
        }
        let mut text = std::mem::take(&mut self.unescaped);
        text.clear();
        let mut input = std::mem::take(&mut self.partial);
        input.extend_from_slice(data);
        let mut at = 0;
        while let Some(p) = memchr::memchr(b'%', &input[at..]) {
            let start = at + p;
            let rest = &input[start..];
            let fit = rest
                .iter()
                .take(ESCAPED_MARKER.len())
                .enumerate()
                .take_while(|&(i, &b)| fits_escaped_marker(i, b))
                .count();
            text.extend_from_slice(&input[at..start]);
            if fit == ESCAPED_MARKER.len() {
                text.extend_from_slice(REDACTED.as_bytes());
                at = start + fit;
            } else if fit == rest.len() {
                // The piece ends inside what may be a marker: held for the next one.
                self.partial.extend_from_slice(rest);
                at = input.len();
            } else {
                text.push(b'%');
                at = start + 1;
            }
        }
        text.extend_from_slice(&input[at..]);
        self.read(&text, out);
        self.unescaped = text;
    }

    fn read(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for &c in data {
            if !self.in_value {
                out.push(c);
                match c {
                    b'=' => {
                        self.in_value = true;
                        let name = decode(&self.name);
                        self.secret = self.name_ok && self.fields.contains_in_form(&name);
                        self.maybe = !self.secret && self.name_ok && self.fields.maybe(&name);
                        if self.secret {
                            self.found.by_name(!self.fields.listed(&name));
                            out.extend_from_slice(REDACTED.as_bytes());
                        }
                        self.value.clear();
                    }
                    b'&' => {
                        self.name.clear();
                        self.name_ok = true;
                    }
                    _ if self.name.len() < name_cap(&self.fields) => self.name.push(c),
                    _ => self.name_ok = false,
                }
            } else if c == b'&' {
                self.end_value(out);
                out.push(c);
            } else if self.secret {
                if self.value.len() <= super::secrets::MAX_SCRUB_LEN {
                    self.value.push(c);
                }
            } else if self.maybe {
                self.value.push(c);
                if self.value.len() > MAX_KEY_LIKE * 3 {
                    // Longer than any key this rule takes, encoded: written as it came.
                    out.append(&mut self.value);
                    self.maybe = false;
                }
            } else {
                out.push(c);
            }
        }
    }

    /// How many bytes fed so far are held back (a value that may be a key).
    pub fn held(&self) -> usize {
        let value = if self.maybe { self.value.len() } else { 0 };
        value + self.partial.len()
    }

    fn end_value(&mut self, out: &mut Vec<u8>) {
        if self.secret {
            self.found.push(&self.value);
            self.found.push(&decode(&self.value));
        } else if self.maybe {
            let decoded = decode(&self.value);
            if key_like(&decoded) {
                out.extend_from_slice(REDACTED.as_bytes());
                self.found.by_name(false);
                self.found.push(&self.value);
                self.found.push(&decoded);
            } else {
                out.extend_from_slice(&self.value);
            }
        }
        self.in_value = false;
        self.secret = false;
        self.maybe = false;
        self.name.clear();
        self.name_ok = true;
    }

    /// Writes the value held back, if any, and gives the values redacted.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Collected {
        let partial = std::mem::take(&mut self.partial);
        self.read(&partial, out);
        if self.in_value {
            self.end_value(out);
        }
        self.found
    }
}

/// Form-decodes a name or value: `+` is a space, then percent escapes.
pub(super) fn decode(raw: &[u8]) -> Vec<u8> {
    let plus: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&plus).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_form_fields_are_redacted_whatever_the_cuts() {
        let fields = FieldNames::new(&["client_secret".into(), "password".into()]);
        let input = b"grant_type=password&client%5Fsecret=s3cr3t%2Bvalue&username=ada&password=correct+horse&x=1";
        for cut in [1, 4, 100] {
            let mut f = FormFields::new(fields.clone());
            let mut out = Vec::new();
            for piece in input.chunks(cut) {
                f.feed(piece, &mut out);
            }
            let found = f.finish(&mut out).into_values();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "grant_type=password&client%5Fsecret=[REDACTED]&username=ada&password=[REDACTED]&x=1"
            );
            assert_eq!(
                found,
                [
                    "s3cr3t%2Bvalue",
                    "s3cr3t+value",
                    "correct+horse",
                    "correct horse"
                ]
            );
        }
    }

    #[test]
    fn an_oauth_assertion_is_a_credential_in_a_form_body() {
        // Google's service-account flow: a signed JWT exchanged for an access token.
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJzYUBwLmlhbSJ9.c2lnbmF0dXJl";
        let input = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={jwt}"
        );
        let mut f = FormFields::new(FieldNames::new(&[]));
        let mut out = Vec::new();
        f.feed(input.as_bytes(), &mut out);
        let found = f.finish(&mut out).into_values();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=[REDACTED]"
        );
        assert_eq!(found, [jwt]);
    }

    #[test]
    fn a_token_named_field_is_a_secret_when_its_value_looks_like_a_key() {
        let key = "Zx9_Qw3-Rt7Yu1Io5Pa8Sd2Fg6Hj4Kl0";
        let input = format!(
            "csrf_token={key}&eos_token=%3C%2Fs%3E&invite_token=abc&reset%5Ftoken={}&x=1",
            key.replace('-', "%2D")
        );
        for cut in [1, 3, 7, 1000] {
            let mut f = FormFields::new(FieldNames::new(&[]));
            let mut out = Vec::new();
            let mut held = 0;
            for piece in input.as_bytes().chunks(cut) {
                f.feed(piece, &mut out);
                held = held.max(f.held());
            }
            let found = f.finish(&mut out).into_values();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "csrf_token=[REDACTED]&eos_token=%3C%2Fs%3E&invite_token=abc\
                 &reset%5Ftoken=[REDACTED]&x=1",
                "cut {cut}"
            );
            assert_eq!(found, [key.to_string(), key.replace('-', "%2D")]);
            assert!(
                cut == 1000 || held > 0,
                "a possible key is held while it is read"
            );
        }
        // A signed token of 1,800 bytes is a key; a value past the longest key is
        // written as it came, piece by piece.
        let mut f = FormFields::new(FieldNames::new(&[]));
        let mut out = Vec::new();
        f.feed(
            format!("upload_token={}&x=1", "Ab1".repeat(600)).as_bytes(),
            &mut out,
        );
        assert!(!f.finish(&mut out).into_values().is_empty());
        assert_eq!(out, b"upload_token=[REDACTED]&x=1");
        let long = "Ab1".repeat(4200);
        let mut f = FormFields::new(FieldNames::new(&[]));
        let mut out = Vec::new();
        f.feed(format!("upload_token={long}").as_bytes(), &mut out);
        assert!(f.held() < 3 * MAX_KEY_LIKE + 1);
        assert!(f.finish(&mut out).into_values().is_empty());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("upload_token={long}")
        );
    }

    #[test]
    fn an_encoded_marker_is_stored_as_the_marker_whatever_the_cuts() {
        let input = b"notes=use+%5BREDACTED%5D+x%25&upload_token=%5bREDACTED%5d\
                      &a=%5BRED&b=%5BREDACTED%5&c=%%5BREDACTED%5D&d=%5BREDAC";
        for cut in 1..=input.len() {
            let mut f = FormFields::new(FieldNames::new(&[]));
            let mut out = Vec::new();
            for piece in input.chunks(cut) {
                f.feed(piece, &mut out);
            }
            assert!(f.finish(&mut out).into_values().is_empty());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "notes=use+[REDACTED]+x%25&upload_token=[REDACTED]\
                 &a=%5BRED&b=%5BREDACTED%5&c=%[REDACTED]&d=%5BREDAC",
                "cut {cut}"
            );
        }
    }
}
