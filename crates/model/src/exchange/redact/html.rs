//! Secret values of a page's form inputs and meta tags: Django's `<input type="hidden"
//! name="csrfmiddlewaretoken" value="…">`, Rails' `<meta name="csrf-token" content="…">`,
//! an invite page's `<input name="invite_token" value="…">`. A web agent reads them from
//! the page and sends them back in a form or a header, where they are redacted; the page
//! that handed them out would otherwise hold them in clear.
//!
//! Only `<input …>` and `<meta …>` tags are read: each is held from its `<` to its `>`
//! (at most [`TAG_MAX`] bytes; a longer one is written on as it came), its attributes
//! parsed, and the `value` (an input's) or `content` (a meta tag's) replaced by
//! `[REDACTED]` when the field's `name` holds a secret as a form's field of that name would
//! ([`FieldNames::contains_in_form`]), or ends in `token` and the value looks like a key
//! ([`FieldNames::maybe`]). Everything else passes through as it came, so the output does
//! not depend on where the stream is cut.

use memchr::memchr;

use super::{Collected, FieldNames};
use crate::credential::key_like;
use crate::rules::REDACTED;

/// The longest tag held.
const TAG_MAX: usize = 4 << 10;

/// The tags read, lower case, each followed by white space or `/` in a tag.
const TAGS: [&[u8]; 2] = [b"<input", b"<meta"];

/// Whether `held` (a tag's first bytes) may still begin one of [`TAGS`]; `Some(true)`
/// once it does.
fn begins_tag(held: &[u8]) -> Option<bool> {
    let mut may = false;
    for tag in TAGS {
        let n = held.len().min(tag.len());
        if !held[..n].eq_ignore_ascii_case(&tag[..n]) {
            continue;
        }
        match held.get(tag.len()) {
            None => may = true,
            Some(b) if b.is_ascii_whitespace() || *b == b'/' => return Some(true),
            Some(_) => {}
        }
    }
    may.then_some(false)
}

/// One attribute of a tag: its name (lower case) and where its value lies.
struct Attribute {
    name: Vec<u8>,
    value: std::ops::Range<usize>,
}

/// The attributes of a tag held whole (`<input type=hidden name="a" value='b'>`).
fn attributes(tag: &[u8]) -> Vec<Attribute> {
    let mut out = Vec::new();
    let mut i = tag
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(tag.len());
    let end = tag.len() - 1; // the `>`
    while i < end {
        while i < end && (tag[i].is_ascii_whitespace() || tag[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < end && !tag[i].is_ascii_whitespace() && !b"=/>".contains(&tag[i]) {
            i += 1;
        }
        if i == start {
            i += 1;
            continue;
        }
        let name = tag[start..i].to_ascii_lowercase();
        while i < end && tag[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= end || tag[i] != b'=' {
            continue;
        }
        i += 1;
        while i < end && tag[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = match tag.get(i) {
            Some(&q) if (q == b'"' || q == b'\'') && i < end => {
                let from = i + 1;
                let to = tag[from..end]
                    .iter()
                    .position(|&b| b == q)
                    .map_or(end, |k| from + k);
                i = (to + 1).min(end);
                from..to
            }
            _ => {
                let from = i;
                while i < end && !tag[i].is_ascii_whitespace() {
                    i += 1;
                }
                from..i
            }
        };
        out.push(Attribute { name, value });
    }
    out
}

/// The scan for a stream (see the module's text).
pub struct HtmlInputs {
    fields: FieldNames,
    /// A tag held from its `<` (empty outside one).
    tag: Vec<u8>,
    /// The tag held is one of [`TAGS`].
    known: bool,
    pub found: Collected,
}

impl HtmlInputs {
    pub fn new(fields: FieldNames) -> HtmlInputs {
        HtmlInputs {
            fields,
            tag: Vec::new(),
            known: false,
            found: Collected::default(),
        }
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            if self.tag.is_empty() {
                match memchr(b'<', rest) {
                    Some(k) => {
                        out.extend_from_slice(&rest[..k]);
                        self.tag.push(b'<');
                        self.known = false;
                        i += k + 1;
                    }
                    None => {
                        out.extend_from_slice(rest);
                        i = data.len();
                    }
                }
                continue;
            }
            if !self.known {
                // Byte by byte until the tag's name says whether it is read.
                self.tag.push(rest[0]);
                i += 1;
                match begins_tag(&self.tag) {
                    Some(true) => self.known = true,
                    Some(false) => {}
                    None => {
                        // Not one: written on, its last byte read again (a `<` may
                        // open the next tag).
                        let last = self.tag.pop().expect("a byte was pushed");
                        out.append(&mut self.tag);
                        i -= 1;
                        if last != b'<' {
                            out.push(last);
                            i += 1;
                        }
                    }
                }
                continue;
            }
            let k = memchr(b'>', rest);
            let take = k.map_or(rest.len(), |k| k + 1);
            self.tag.extend_from_slice(&rest[..take]);
            i += take;
            if k.is_some() {
                self.settle(out);
            } else if self.tag.len() > TAG_MAX {
                out.append(&mut self.tag);
            }
        }
    }

    /// Writes the tag held whole, its secret value replaced.
    fn settle(&mut self, out: &mut Vec<u8>) {
        let tag = std::mem::take(&mut self.tag);
        let attrs = attributes(&tag);
        let value_attr: &[u8] = if tag[1..]
            .get(..4)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"meta"))
        {
            b"content"
        } else {
            b"value"
        };
        let name = attrs.iter().find(|a| a.name == b"name");
        let value = attrs.iter().find(|a| a.name == value_attr);
        let (Some(name), Some(value)) = (name, value) else {
            out.extend_from_slice(&tag);
            return;
        };
        let (name, span) = (&tag[name.value.clone()], value.value.clone());
        let secret = !span.is_empty()
            && &tag[span.clone()] != REDACTED.as_bytes()
            && (self.fields.contains_in_form(name)
                || (self.fields.maybe(name) && key_like(&tag[span.clone()])));
        if !secret {
            out.extend_from_slice(&tag);
            return;
        }
        self.found.by_name(!self.fields.listed(name));
        self.found.push(&tag[span.clone()]);
        out.extend_from_slice(&tag[..span.start]);
        out.extend_from_slice(REDACTED.as_bytes());
        out.extend_from_slice(&tag[span.end..]);
    }

    /// How many bytes fed so far are held back.
    pub fn held(&self) -> usize {
        self.tag.len()
    }

    /// Ends the stream: a tag cut off by the end is written as it came.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Collected {
        out.append(&mut self.tag);
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(data: &str, cut: usize) -> (String, Vec<String>) {
        let mut h = HtmlInputs::new(FieldNames::new(&[]));
        let mut out = Vec::new();
        for piece in data.as_bytes().chunks(cut) {
            h.feed(piece, &mut out);
        }
        let found = h.finish(&mut out).into_values();
        (String::from_utf8(out).unwrap(), found)
    }

    #[test]
    fn a_pages_secret_inputs_and_meta_tags_are_redacted_however_the_stream_is_cut() {
        let page = concat!(
            "<html><head><meta charset=\"utf-8\"><meta name=\"csrf-token\" content=\"Ab1cD2eF3gH4iJ5kL6mN7oP8\" />",
            "<META NAME=csrf-param CONTENT=authenticity_token></head><body><p>a < b</p>",
            "<form><input type=\"hidden\" name='csrfmiddlewaretoken' value='Qw3rTy8uIo2pAs7dFg9hJk0lZx1cVb2n'>",
            "<input name=\"next_page_token\" value=\"Abc123Def456Ghi789\"><input name=\"q\" value=\"hello\">",
            "<input value=\"Zq8vN3kLp2Wm7Rt4Yx6B\" type=\"password\" name=\"password\">",
            "<input name=\"invite_token\" value=\"pending\"><inputx name=\"csrf_token\" value=\"Ab1cD2eF3gH4iJ5kL6mN\">",
            "<<input name=\"reset_token\" value=\"Rs7tUv8wXy9zAb0cDe1f\"></form></body></html>",
        );
        let want = concat!(
            "<html><head><meta charset=\"utf-8\"><meta name=\"csrf-token\" content=\"[REDACTED]\" />",
            "<META NAME=csrf-param CONTENT=authenticity_token></head><body><p>a < b</p>",
            "<form><input type=\"hidden\" name='csrfmiddlewaretoken' value='[REDACTED]'>",
            "<input name=\"next_page_token\" value=\"Abc123Def456Ghi789\"><input name=\"q\" value=\"hello\">",
            "<input value=\"[REDACTED]\" type=\"password\" name=\"password\">",
            "<input name=\"invite_token\" value=\"pending\"><inputx name=\"csrf_token\" value=\"Ab1cD2eF3gH4iJ5kL6mN\">",
            "<<input name=\"reset_token\" value=\"[REDACTED]\"></form></body></html>",
        );
        for cut in [1, 2, 3, 7, 64, 4096] {
            let (out, found) = scan(page, cut);
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(
                found,
                [
                    "Ab1cD2eF3gH4iJ5kL6mN7oP8",
                    "Qw3rTy8uIo2pAs7dFg9hJk0lZx1cVb2n",
                    "Zq8vN3kLp2Wm7Rt4Yx6B",
                    "Rs7tUv8wXy9zAb0cDe1f"
                ],
                "cut {cut}"
            );
        }
        // A tag cut off by the end of the stream, or too long to hold: as it came.
        let cut_off = "<p><input name=\"csrf_token\" value=\"Ab1cD2eF3gH4iJ5kL6mN";
        assert_eq!(scan(cut_off, 3).0, cut_off);
        let long = format!(
            "<input name=\"csrf_token\" data-x=\"{}\" value=\"Ab1cD2eF3gH4iJ5kL6mN\">",
            "x".repeat(TAG_MAX)
        );
        assert_eq!(scan(&long, 100).0, long);
    }

    #[test]
    fn a_key_a_pages_data_attribute_or_script_names_is_redacted_however_the_stream_is_cut() {
        // Not an `<input>` or `<meta>`: the rule for a key named in prose (`url_params`)
        // reads these, and JSON in a script is read as JSON written in text.
        use crate::exchange::redact::{same_at_every_cut, BodyScrubber, Secrets};
        use crate::rules::Rules;
        let rules = Rules::default();
        let s = Secrets::default();
        let page = concat!(
            "<div id=\"app\" data-invite-token=\"Dv4tUv8wXy9zAb0cDe1fData\" data-page=\"2\"></div>\n",
            "<script>const inviteToken = \"Js4tUv8wXy9zAb0cDe1fConst\";\n",
            "window.__STATE__ = {\"user\":\"ada\",\"invite_token\":\"St4tUv8wXy9zAb0cDe1fJson\"};\n",
            "var cfg = {resetToken: 'Ob4tUv8wXy9zAb0cDe1fObj', page: 2, csrf_token: 'pending'};</script>",
        );
        let want = concat!(
            "<div id=\"app\" data-invite-token=\"[REDACTED]\" data-page=\"2\"></div>\n",
            "<script>const inviteToken = \"[REDACTED]\";\n",
            "window.__STATE__ = {\"user\":\"ada\",\"invite_token\":\"[REDACTED]\"};\n",
            "var cfg = {resetToken: '[REDACTED]', page: 2, csrf_token: 'pending'};</script>",
        );
        let make = || BodyScrubber::new(Some("text/html"), &rules, &s);
        let (whole, found) = same_at_every_cut(page.as_bytes(), &[1, 2, 3, 7, 64], make);
        assert_eq!(String::from_utf8(whole).unwrap(), want);
        let mut found = found.into_values();
        found.sort();
        assert_eq!(
            found,
            [
                "Dv4tUv8wXy9zAb0cDe1fData",
                "Js4tUv8wXy9zAb0cDe1fConst",
                "Ob4tUv8wXy9zAb0cDe1fObj",
                "St4tUv8wXy9zAb0cDe1fJson"
            ]
        );
    }
}
