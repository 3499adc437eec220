//! Secret fields in XML bodies, as they stream: the content of an element, and the value
//! of an attribute, whose name is a secret field's. AWS's query APIs answer in XML: STS's
//! `AssumeRole` and `AssumeRoleWithWebIdentity` (how an SDK on EKS gets its credentials)
//! return `<SecretAccessKey>` and `<SessionToken>`, which an SDK fetches through the
//! proxy like any other call. Names compare as the other redactors' do (any case),
//! without their namespace prefix. A listed name's element has its whole content up to
//! its closing tag (text, CDATA, comments, nested elements) replaced by `[REDACTED]`; a
//! name read as a credential's only when its content holds no element (RDS's
//! `<MasterUserSecret>` holds the `<SecretArn>` an agent reads next, IAM's `<AccessKey>`
//! the `<AccessKeyId>`), so that content is held until it shows which (64 KiB at most:
//! past that it is taken for a value). A quoted attribute value becomes `"[REDACTED]"`.
//! Tags are read with their quotes, however long.

use super::{Collected, FieldNames};
use crate::credential;
use crate::rules::REDACTED;

/// The longest element or attribute name compared (a longer one is no field's).
const NAME_CAP: usize = 256;

/// The most of an element's content held while it is not known to be a value (see the
/// module's text).
const PENDING_CAP: usize = 64 << 10;

pub struct XmlFields {
    fields: FieldNames,
    /// Inside a tag (from its `<`).
    in_tag: bool,
    /// The tag's `<`, its kind marker and its name so far, until the name ends.
    head: Vec<u8>,
    name_done: bool,
    /// The tag's bytes go out (every tag but those inside a secret element, whose
    /// closing tag does).
    emitting: bool,
    /// The tag's marker after `<`: `/`, `!`, `?`, or 0 for a start tag.
    kind: u8,
    quote: Option<u8>,
    /// The last byte of the tag outside quotes and white space (`/` ends an empty one).
    last: u8,
    /// The tag's name without its prefix, lower case (`None` past the cap).
    name: Option<Vec<u8>>,
    /// The attribute being read, whether its name has ended, and whether its `=` came.
    attr: Vec<u8>,
    attr_ended: bool,
    attr_eq: bool,
    /// Inside a secret attribute's quoted value.
    attr_secret: bool,
    /// That attribute's name ends in `token` ([`FieldNames::maybe`]): its value is held
    /// to the closing quote, redacted if it looks like a key, written as it came if not.
    attr_maybe: bool,
    /// Inside a secret element: its name (lower case), its content swallowed.
    secret: Option<Vec<u8>>,
    /// The secret element's name is read as a credential's, and no element has come in
    /// its content yet: the content is held, nothing written for it.
    pending: bool,
    /// The secret element's name ends in `token` ([`FieldNames::maybe`]): its held text
    /// is a secret only if it looks like a key, written as it came otherwise.
    maybe: bool,
    value: Vec<u8>,
    found: Collected,
}

impl XmlFields {
    pub fn new(fields: FieldNames) -> XmlFields {
        XmlFields {
            fields,
            in_tag: false,
            head: Vec::new(),
            name_done: false,
            emitting: true,
            kind: 0,
            quote: None,
            last: 0,
            name: None,
            attr: Vec::new(),
            attr_ended: false,
            attr_eq: false,
            attr_secret: false,
            attr_maybe: false,
            secret: None,
            pending: false,
            maybe: false,
            value: Vec::new(),
            found: Collected::default(),
        }
    }

    /// Bytes held back that will be written when more arrive. Content held while its
    /// element is undecided is not counted: it is written as it came or becomes the
    /// ten bytes of the marker, and counting it would place a stream's chunks (their
    /// times) by bytes that may never be written.
    pub fn held(&self) -> usize {
        self.head.len() + if self.attr_maybe { self.value.len() } else { 0 }
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < data.len() {
            if self.pending && self.maybe && self.value.len() > MAYBE_CAP {
                // Too long to be a key: the element's content as it came.
                self.write_held(out);
            } else if self.pending && self.value.len() >= PENDING_CAP {
                self.settle_pending(out);
            }
            if !self.in_tag {
                // Text, up to the next tag.
                let end = memchr::memchr(b'<', &data[i..]).map_or(data.len(), |k| i + k);
                let mut stop = end;
                if self.secret.is_some() {
                    if self.pending && self.maybe {
                        // No further than past the longest key: the check above then
                        // writes it as it came, however the body was cut.
                        stop = end.min(i + (MAYBE_CAP + 1).saturating_sub(self.value.len()));
                    }
                    self.keep_value(&data[i..stop]);
                } else {
                    out.extend_from_slice(&data[i..end]);
                }
                i = stop;
                if stop < end {
                    continue;
                }
                if i < data.len() {
                    self.open_tag();
                    i += 1;
                }
                continue;
            }
            let c = data[i];
            i += 1;
            if !self.name_done {
                self.read_name(c, out);
                continue;
            }
            self.read_rest(c, out);
        }
    }

    fn open_tag(&mut self) {
        self.in_tag = true;
        self.head.clear();
        self.head.push(b'<');
        self.name_done = false;
        self.kind = 0;
        self.quote = None;
        self.last = 0;
        self.name = None;
        self.attr.clear();
        self.attr_ended = false;
        self.attr_eq = false;
        self.attr_secret = false;
        self.attr_maybe = false;
    }

    /// A held element's content is taken for a credential's value: the marker goes out
    /// and the rest is swallowed as a listed element's is.
    fn settle_pending(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(REDACTED.as_bytes());
        self.pending = false;
        self.value.truncate(super::secrets::MAX_SCRUB_LEN + 1);
    }

    /// A held element's content is no secret: written as it came, and what follows read
    /// as any element's.
    fn write_held(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.value);
        self.pending = false;
        self.maybe = false;
        self.secret = None;
    }

    fn keep_value(&mut self, bytes: &[u8]) {
        let cap = match self.pending {
            true => PENDING_CAP,
            false => super::secrets::MAX_SCRUB_LEN + 1,
        };
        let room = cap.saturating_sub(self.value.len());
        self.value
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// A byte of the tag's head: its kind marker, then its name up to white space, `/`
    /// or `>`.
    fn read_name(&mut self, c: u8, out: &mut Vec<u8>) {
        if self.head.len() == 1 && matches!(c, b'/' | b'!' | b'?') {
            self.kind = c;
            self.head.push(c);
            return;
        }
        let ends = c.is_ascii_whitespace() || c == b'/' || c == b'>';
        if !ends && self.head.len() <= NAME_CAP + 2 {
            self.head.push(c);
            return;
        }
        self.name_done = true;
        self.name = self.local_name();
        let closes = self.kind == b'/'
            && self.secret.is_some()
            && self.name.as_deref() == self.secret.as_deref();
        self.emitting = if self.secret.is_none() {
            true
        } else if self.pending && self.maybe && closes {
            // Text alone under a name ending in `token`: a secret if it looks like a key.
            if credential::key_like(text_of(&self.value).trim().as_bytes()) {
                out.extend_from_slice(REDACTED.as_bytes());
                self.found.by_name(false);
                self.pending = false;
                self.maybe = false;
            } else {
                self.write_held(out);
            }
            true
        } else if self.pending && self.maybe && self.kind == 0 && !is_blank(&self.value) {
            // Text, then an element: not a key.
            self.write_held(out);
            true
        } else if self.pending && closes {
            // Text alone: a credential's value.
            out.extend_from_slice(REDACTED.as_bytes());
            self.pending = false;
            true
        } else if self.pending && self.kind == 0 && is_blank(&self.value) {
            // An element inside, after nothing but white space and markup: the content
            // is structure, written as it came, and its own elements are read as any
            // others.
            self.write_held(out);
            true
        } else if self.pending && self.kind == 0 {
            // Text, then an element (or what reads as one: a CDATA section holding `>`
            // and `<`): a value, swallowed to the closing tag as a listed one is.
            self.settle_pending(out);
            false
        } else {
            // Inside a secret element only its closing tag goes out.
            closes
        };
        if self.emitting {
            out.extend_from_slice(&self.head);
        } else {
            // Markup inside the secret element is part of what it held.
            let head = std::mem::take(&mut self.head);
            self.keep_value(&head);
        }
        self.head.clear();
        // (A name past the cap is no field's; the rest of it is read as the tag's.)
        self.read_rest(c, out);
    }

    /// The tag's name without its namespace prefix, lower case; `None` past the cap.
    fn local_name(&self) -> Option<Vec<u8>> {
        let start = if matches!(self.kind, b'/' | b'!' | b'?') {
            2
        } else {
            1
        };
        let name = self.head.get(start..)?;
        if name.len() > NAME_CAP {
            return None;
        }
        let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
        Some(local.to_ascii_lowercase())
    }

    /// A byte of the tag after its name: attributes, quotes, and its end. A comment,
    /// CDATA or a processing instruction (`<!`, `<?`) ends at its first `>`, quotes and
    /// all.
    fn read_rest(&mut self, c: u8, out: &mut Vec<u8>) {
        let plain = matches!(self.kind, b'!' | b'?');
        if self.attr_secret && self.attr_maybe {
            if Some(c) == self.quote {
                self.quote = None;
                self.attr_secret = false;
                self.attr_maybe = false;
                let value = std::mem::take(&mut self.value);
                if credential::key_like(
                    unescape(&String::from_utf8_lossy(&value)).trim().as_bytes(),
                ) {
                    self.found.by_name(false);
                    out.extend_from_slice(REDACTED.as_bytes());
                    self.collect(&value);
                } else {
                    out.extend_from_slice(&value);
                }
                out.push(c);
            } else {
                self.value.push(c);
                if self.value.len() > MAYBE_CAP {
                    // Too long to be a key: as it came, the rest of the quote with it.
                    self.attr_secret = false;
                    self.attr_maybe = false;
                    out.append(&mut self.value);
                }
            }
            return;
        }
        if self.attr_secret {
            if Some(c) == self.quote {
                self.quote = None;
                self.attr_secret = false;
                out.push(c);
                let value = std::mem::take(&mut self.value);
                self.collect(&value);
            } else {
                self.keep_value(&[c]);
            }
            return;
        }
        if !self.emitting {
            self.keep_value(&[c]);
        }
        if let Some(q) = self.quote {
            if self.emitting {
                out.push(c);
            }
            if c == q {
                self.quote = None;
            }
            return;
        }
        if c == b'>' {
            self.close_tag(out);
            return;
        }
        if self.emitting {
            out.push(c);
        }
        if !c.is_ascii_whitespace() {
            self.last = c;
        }
        if plain {
            return;
        }
        match c {
            b'"' | b'\'' => {
                self.quote = Some(c);
                let local = self.attr.rsplit(|&b| b == b':').next().unwrap_or(&[]);
                if self.emitting
                    && self.secret.is_none()
                    && self.attr_eq
                    && self.fields.contains(local)
                {
                    self.found.by_name(!self.fields.listed(local));
                    out.extend_from_slice(REDACTED.as_bytes());
                    self.attr_secret = true;
                    self.value.clear();
                } else if self.emitting
                    && self.secret.is_none()
                    && self.attr_eq
                    && self.fields.maybe(local)
                {
                    self.attr_secret = true;
                    self.attr_maybe = true;
                    self.value.clear();
                }
                self.attr.clear();
                self.attr_ended = false;
                self.attr_eq = false;
            }
            b'=' => self.attr_eq = true,
            _ if c.is_ascii_whitespace() => self.attr_ended |= !self.attr.is_empty(),
            _ if self.attr_eq => {
                // An unquoted value (not XML): not read.
                self.attr.clear();
                self.attr_eq = false;
            }
            _ => {
                if self.attr_ended {
                    self.attr.clear();
                    self.attr_ended = false;
                }
                if self.attr.len() <= NAME_CAP {
                    self.attr.push(c);
                }
            }
        }
    }

    fn close_tag(&mut self, out: &mut Vec<u8>) {
        self.in_tag = false;
        if self.emitting {
            out.push(b'>');
        }
        if self.secret.is_some() {
            if self.emitting {
                // The secret element's closing tag.
                self.secret = None;
                let value = std::mem::take(&mut self.value);
                self.collect(&value);
            }
            return;
        }
        let opens = !matches!(self.kind, b'/' | b'!' | b'?') && self.last != b'/';
        let name = self.name.take().filter(|_| opens);
        if let Some(name) = name
            .as_ref()
            .filter(|n| !self.fields.contains(n) && self.fields.maybe(n))
        {
            self.pending = true;
            self.maybe = true;
            self.secret = Some(name.clone());
            self.value.clear();
            return;
        }
        if let Some(name) = name.filter(|n| self.fields.contains(n)) {
            let listed = self.fields.listed(&name);
            self.found.by_name(!listed);
            if listed {
                out.extend_from_slice(REDACTED.as_bytes());
            }
            self.pending = !listed;
            self.secret = Some(name);
            self.value.clear();
        }
    }

    fn collect(&mut self, value: &[u8]) {
        self.found.push(value);
        // Its text without markup (a CDATA section's content kept), as XML escapes it
        // (`&amp;`, ...) and as it reads.
        let text = strip_markup(&String::from_utf8_lossy(value));
        self.found.push(text.as_bytes());
        self.found.push(unescape(&text).as_bytes());
    }
}

/// The most of an element's content held under a name ending in `token`: a key is at
/// most [`credential::MAX_KEY_LIKE`] bytes, each written as an entity at worst.
const MAYBE_CAP: usize = credential::MAX_KEY_LIKE * 6;

/// XML text with its predefined entities read.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Held content as it reads: markup taken out, entities read.
fn text_of(xml: &[u8]) -> String {
    unescape(&strip_markup(&String::from_utf8_lossy(xml)))
}

/// Whether held XML content is only white space and markup (comments, processing
/// instructions): no text, no CDATA with anything in it.
fn is_blank(xml: &[u8]) -> bool {
    strip_markup(&String::from_utf8_lossy(xml))
        .trim()
        .is_empty()
}

/// XML text with its tags, comments and processing instructions taken out, CDATA
/// sections replaced by their content.
fn strip_markup(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
            let end = cdata.find("]]>").unwrap_or(cdata.len());
            out.push_str(&cdata[..end]);
            rest = cdata.get(end + 3..).unwrap_or("");
        } else {
            rest = rest.find('>').map_or("", |j| &rest[j + 1..]);
        }
    }
    out.push_str(rest);
    out
}

impl XmlFields {
    pub fn finish(mut self, out: &mut Vec<u8>) -> Collected {
        if self.in_tag && !self.name_done && self.secret.is_none() {
            out.append(&mut self.head);
        }
        if self.pending && self.maybe {
            // Cut off under a name ending in `token`: as it came.
            self.write_held(out);
        } else if self.pending {
            // Never closed, and no element came: taken for a value.
            self.settle_pending(out);
        }
        if self.attr_maybe {
            // Cut off inside a value under a name ending in `token`: as it came.
            out.append(&mut self.value);
        } else if self.secret.is_some() || self.attr_secret {
            let value = std::mem::take(&mut self.value);
            self.collect(&value);
        }
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::super::{same_at_every_cut, BodyScrubber, Secrets};
    use super::{MAYBE_CAP, PENDING_CAP};
    use crate::rules::Rules;

    const STS: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLEKEYID1234</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCY&amp;STSKEY</SecretAccessKey>
      <SessionToken>IQoJb3JpZ2luX2VjEStsSessionTokenValue==</SessionToken>
      <Expiration>2026-12-04T23:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"#;

    #[test]
    fn sts_credentials_in_xml_are_redacted_however_the_body_is_cut() {
        let rules = Rules::default();
        let s = Secrets::default();
        for ct in ["text/xml", "application/xml; charset=utf-8"] {
            let make = || BodyScrubber::new(Some(ct), &rules, &s);
            let (whole, found) =
                same_at_every_cut(STS.as_bytes(), &[1, 2, 3, 7, 16, 61, 200], make);
            let out = String::from_utf8(whole).unwrap();
            assert!(
                out.contains("<SecretAccessKey>[REDACTED]</SecretAccessKey>"),
                "{out}"
            );
            assert!(
                out.contains("<SessionToken>[REDACTED]</SessionToken>"),
                "{out}"
            );
            assert!(out.contains("<AccessKeyId>ASIAEXAMPLEKEYID1234</AccessKeyId>"));
            assert!(!out.contains("STSKEY") && !out.contains("SessionTokenValue"));
            // The values are known to the rest of the exchange, as read and as escaped.
            let values = found.into_values();
            assert!(values.iter().any(|v| v.ends_with("&STSKEY")), "{values:?}");
            assert!(
                values.iter().any(|v| v.ends_with("&amp;STSKEY")),
                "{values:?}"
            );
        }
        // Prefixed names, self-closing and closing tags, comments, a long tag.
        let rules = Rules::default();
        let body = format!(
            "<a:SessionToken x=\"1\">tok-value-123</a:SessionToken><SessionToken/><!-- <SessionToken> --><b {}/>",
            "y".repeat(600)
        );
        let (out, _) = BodyScrubber::run(body.as_bytes(), Some("text/xml"), &rules, &s);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("<a:SessionToken x=\"1\">[REDACTED]</a:SessionToken><SessionToken/>"),
            "{out}"
        );
        assert!(out.ends_with(&format!("<b {}/>", "y".repeat(600))));
    }

    #[test]
    fn every_shape_of_valid_xml_holding_a_secret_is_redacted() {
        let rules = Rules::default();
        let s = Secrets::default();
        let pad = " ".repeat(600);
        let attr_pad = "p".repeat(600);
        let cases = [
            (
                "<SessionToken><![CDATA[SECRETCDATA1]]></SessionToken>",
                "<SessionToken>[REDACTED]</SessionToken>".to_string(),
            ),
            (
                "<SessionToken><!--x-->SECRETCOMMENT1</SessionToken>",
                "<SessionToken>[REDACTED]</SessionToken>".to_string(),
            ),
            (
                "<SessionToken><?x y?>SECRETPI1234</SessionToken>",
                "<SessionToken>[REDACTED]</SessionToken>".to_string(),
            ),
            (
                r#"<SessionToken a="/>">SECRETSLASH1</SessionToken>"#,
                r#"<SessionToken a="/>">[REDACTED]</SessionToken>"#.to_string(),
            ),
            (
                "<SecretAccessKey><Value>SECRETNESTED</Value></SecretAccessKey>",
                "<SecretAccessKey>[REDACTED]</SecretAccessKey>".to_string(),
            ),
            (
                r#"<Credentials SessionToken="SECRETATTR12" x='1' SecretAccessKey='SECRETATTR34'/>"#,
                r#"<Credentials SessionToken="[REDACTED]" x='1' SecretAccessKey='[REDACTED]'/>"#
                    .to_string(),
            ),
        ];
        let long = [
            (
                format!("<SessionToken{pad}>SECRETLONG12</SessionToken>"),
                format!("<SessionToken{pad}>[REDACTED]</SessionToken>"),
            ),
            (
                format!(r#"<SessionToken pad="{attr_pad}">SECRETLONG34</SessionToken>"#),
                format!(r#"<SessionToken pad="{attr_pad}">[REDACTED]</SessionToken>"#),
            ),
        ];
        let all = cases
            .iter()
            .map(|(a, b)| (a.to_string(), b.clone()))
            .chain(long);
        for (body, want) in all {
            let make = || BodyScrubber::new(Some("text/xml"), &rules, &s);
            let (whole, found) = same_at_every_cut(body.as_bytes(), &[1, 2, 3, 7, 64], make);
            assert_eq!(String::from_utf8(whole).unwrap(), want);
            assert!(!found.into_values().is_empty(), "{body}");
        }
        // Text after a secret element, and elements that are not secret, are kept.
        let body =
            "<A><SessionToken>tok-value-123</SessionToken><B x=\"SessionToken\">keep</B>after</A>";
        let (out, _) = BodyScrubber::run(body.as_bytes(), Some("text/xml"), &rules, &s);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<A><SessionToken>[REDACTED]</SessionToken><B x=\"SessionToken\">keep</B>after</A>"
        );
    }

    #[test]
    fn an_element_named_for_a_token_is_a_secret_when_its_text_looks_like_a_key() {
        let rules = Rules::default();
        let s = Secrets::default();
        let body = "<Invite><id>inv_1</id><invite_token>Inv9Kx2Pq7Lm4Rt8Zw3Y</invite_token>\
            <next_page_token>Abc123Def456Ghi789</next_page_token><csrf_token>pending</csrf_token>\
            <share_token>\n <a>Ab1cD2eF3gH4iJ5kL6mN</a></share_token><x:reset_token>YzYN0+bS=X9ZgEaTiEtk1=Lz</x:reset_token>\
            <upload_token>note <b>Up1dD2eF3gH4iJ5kL6mN</b></upload_token><cut_token>Ct9";
        let want = "<Invite><id>inv_1</id><invite_token>[REDACTED]</invite_token>\
            <next_page_token>Abc123Def456Ghi789</next_page_token><csrf_token>pending</csrf_token>\
            <share_token>\n <a>Ab1cD2eF3gH4iJ5kL6mN</a></share_token><x:reset_token>[REDACTED]</x:reset_token>\
            <upload_token>note <b>Up1dD2eF3gH4iJ5kL6mN</b></upload_token><cut_token>Ct9";
        let make = || BodyScrubber::new(Some("application/xml"), &rules, &s);
        let (whole, found) = same_at_every_cut(body.as_bytes(), &[1, 2, 3, 7, 64], make);
        assert_eq!(String::from_utf8(whole).unwrap(), want);
        assert_eq!(
            found.into_values(),
            ["Inv9Kx2Pq7Lm4Rt8Zw3Y", "YzYN0+bS=X9ZgEaTiEtk1=Lz"]
        );
        // Too long to be a key: as it came.
        let long = format!("<a_token>{}</a_token>", "Ab1-".repeat(MAYBE_CAP));
        let (whole, _) = same_at_every_cut(long.as_bytes(), &[5, 4096], make);
        assert_eq!(whole, long.as_bytes());
    }

    #[test]
    fn an_attribute_named_for_a_token_is_a_secret_when_its_value_looks_like_a_key() {
        let rules = Rules::default();
        let s = Secrets::default();
        let body = "<Invite id=\"inv_1\" invite_token=\"Inv9Kx2Pq7Lm4Rt8Zw3Y\" csrf_token='pending'>\
            <Page next_page_token=\"Abc123Def456Ghi789\" x:reset_token='Rs7tUv8wXy9zAb0cDe1f'/>\
            <a share_token=\"Sh9Kx2Pq7Lm4Rt8Zw3Ab\">text invite_token=\"not-an-attribute-1A2b3C4d\"</a>\
            <cut upload_token=\"Up1dD2eF";
        let want = "<Invite id=\"inv_1\" invite_token=\"[REDACTED]\" csrf_token='pending'>\
            <Page next_page_token=\"Abc123Def456Ghi789\" x:reset_token='[REDACTED]'/>\
            <a share_token=\"[REDACTED]\">text invite_token=\"[REDACTED]\"</a>\
            <cut upload_token=\"Up1dD2eF";
        // (The element's text is no attribute: its key goes by the rule for a key
        // named in prose, `url_params`.)
        let make = || BodyScrubber::new(Some("application/xml"), &rules, &s);
        let (whole, found) = same_at_every_cut(body.as_bytes(), &[1, 2, 3, 7, 64], make);
        assert_eq!(String::from_utf8(whole).unwrap(), want);
        let found = found.into_values();
        for v in [
            "Inv9Kx2Pq7Lm4Rt8Zw3Y",
            "Rs7tUv8wXy9zAb0cDe1f",
            "Sh9Kx2Pq7Lm4Rt8Zw3Ab",
        ] {
            assert!(found.iter().any(|f| f == v), "{v} not collected: {found:?}");
        }
        // Too long to be a key: as it came.
        let long = format!("<a b_token=\"{}\">x</a>", "Ab1-".repeat(MAYBE_CAP));
        let (whole, _) = same_at_every_cut(long.as_bytes(), &[5, 4096], make);
        assert_eq!(whole, long.as_bytes());
    }

    #[test]
    fn an_element_read_as_a_credential_by_its_name_keeps_elements_inside_it() {
        let rules = Rules::default();
        let s = Secrets::default();
        // RDS's managed master password and IAM's new access key: the agent reads the
        // SecretArn and the AccessKeyId next; the listed SecretAccessKey still goes.
        let body = "<R><MasterUserSecret>\n  <SecretArn>arn:aws:secretsmanager:eu:1:secret:rds</SecretArn>\n</MasterUserSecret>\
            <AccessKey><UserName>bob</UserName><AccessKeyId>AKIAEXAMPLE1</AccessKeyId>\
            <SecretAccessKey>wJalrXUtnFEMI-K7MDENG1</SecretAccessKey></AccessKey>\
            <ServiceRoleKey><!-- k --><![CDATA[srk-0123456789abc]]></ServiceRoleKey>\
            <ClientSecret>cs-0123456789abcd</ClientSecret><Empty/><Token>keep-me-1234</Token></R>";
        let want = "<R><MasterUserSecret>\n  <SecretArn>arn:aws:secretsmanager:eu:1:secret:rds</SecretArn>\n</MasterUserSecret>\
            <AccessKey><UserName>bob</UserName><AccessKeyId>AKIAEXAMPLE1</AccessKeyId>\
            <SecretAccessKey>[REDACTED]</SecretAccessKey></AccessKey>\
            <ServiceRoleKey>[REDACTED]</ServiceRoleKey>\
            <ClientSecret>[REDACTED]</ClientSecret><Empty/><Token>keep-me-1234</Token></R>";
        let make = || BodyScrubber::new(Some("text/xml"), &rules, &s);
        let (whole, found) = same_at_every_cut(body.as_bytes(), &[1, 2, 3, 7, 64], make);
        assert_eq!(String::from_utf8(whole).unwrap(), want);
        let found = found.into_values();
        for v in [
            "wJalrXUtnFEMI-K7MDENG1",
            "srk-0123456789abc",
            "cs-0123456789abcd",
        ] {
            assert!(found.iter().any(|f| f == v), "{v} not collected: {found:?}");
        }
        // Text before or between elements makes the content a value: nothing of it is
        // written, however it is dressed (a CDATA section holding `>` and `<`).
        for (body, want) in [
            (
                "<R><DbPassword>Pw0rd-1234<br/></DbPassword></R>",
                "<R><DbPassword>[REDACTED]</DbPassword></R>",
            ),
            (
                "<R><DbPassword><![CDATA[Xp>w0<rd9876]]></DbPassword></R>",
                "<R><DbPassword>[REDACTED]</DbPassword></R>",
            ),
            (
                "<R><PartnerApiKey>abc<!-- c --><x/>Key-98765</PartnerApiKey></R>",
                "<R><PartnerApiKey>[REDACTED]</PartnerApiKey></R>",
            ),
            (
                "<R><PartnerApiKey><!-- c --> <x>1</x> </PartnerApiKey></R>",
                "<R><PartnerApiKey><!-- c --> <x>1</x> </PartnerApiKey></R>",
            ),
        ] {
            let make = || BodyScrubber::new(Some("text/xml"), &rules, &s);
            let (whole, _) = same_at_every_cut(body.as_bytes(), &[1, 2, 3, 7, 64], make);
            assert_eq!(String::from_utf8(whole).unwrap(), want, "{body}");
        }
        // Content past what is held without an element in it is taken for a value; one
        // never closed too.
        let long = format!(
            "<R><ApiSecret>{}</ApiSecret>after</R>",
            "x".repeat(PENDING_CAP + 10)
        );
        let (out, _) = BodyScrubber::run(long.as_bytes(), Some("text/xml"), &rules, &s);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<R><ApiSecret>[REDACTED]</ApiSecret>after</R>"
        );
        let (out, _) =
            BodyScrubber::run(b"<R><ApiSecret>cut-off-12345", Some("text/xml"), &rules, &s);
        assert_eq!(String::from_utf8(out).unwrap(), "<R><ApiSecret>[REDACTED]");
    }
}
