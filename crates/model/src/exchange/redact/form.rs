//! Secret fields in `application/x-www-form-urlencoded` bodies (an OAuth token request
//! carries `client_secret`, `password`, `refresh_token` this way), as they stream.
//! Names are compared after form-decoding (`client%5Fsecret`, `+` for space).

use super::{Collected, FieldNames};
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
    value: Vec<u8>,
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
            value: Vec::new(),
            found: Collected::default(),
        }
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for &c in data {
            if !self.in_value {
                out.push(c);
                match c {
                    b'=' => {
                        self.in_value = true;
                        let name = decode(&self.name);
                        self.secret = self.name_ok && self.fields.contains_in_form(&name);
                        if self.secret {
                            self.found.by_name(!self.fields.listed(&name));
                            out.extend_from_slice(REDACTED.as_bytes());
                            self.value.clear();
                        }
                    }
                    b'&' => {
                        self.name.clear();
                        self.name_ok = true;
                    }
                    _ if self.name.len() < name_cap(&self.fields) => self.name.push(c),
                    _ => self.name_ok = false,
                }
            } else if c == b'&' {
                self.end_value();
                out.push(c);
            } else if self.secret {
                if self.value.len() <= super::secrets::MAX_SCRUB_LEN {
                    self.value.push(c);
                }
            } else {
                out.push(c);
            }
        }
    }

    fn end_value(&mut self) {
        if self.secret {
            self.found.push(&self.value);
            self.found.push(&decode(&self.value));
        }
        self.in_value = false;
        self.secret = false;
        self.name.clear();
        self.name_ok = true;
    }

    pub fn finish(mut self) -> Collected {
        self.end_value();
        self.found
    }
}

/// Form-decodes a name or value: `+` is a space, then percent escapes.
fn decode(raw: &[u8]) -> Vec<u8> {
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
            let found = f.finish().into_values();
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
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=[REDACTED]"
        );
        assert_eq!(f.finish().into_values(), [jwt]);
    }
}
