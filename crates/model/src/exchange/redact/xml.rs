//! Secret fields in XML bodies, as they stream: the text of an element whose name is a
//! secret field's. AWS's query APIs answer in XML: STS's `AssumeRole` and
//! `AssumeRoleWithWebIdentity` (how an SDK on EKS gets its credentials) return
//! `<SecretAccessKey>` and `<SessionToken>`, which an SDK fetches through the proxy like
//! any other call. Names compare as the other redactors' do (any case), without their
//! namespace prefix; the element's text up to its next tag becomes `[REDACTED]`.

use super::{Collected, FieldNames};
use crate::rules::REDACTED;

/// The longest tag read whole; a longer one passes as it comes (no field name is long).
const MAX_TAG: usize = 512;

pub struct XmlFields {
    fields: FieldNames,
    /// The tag being read, from its `<`.
    tag: Vec<u8>,
    in_tag: bool,
    /// A tag over [`MAX_TAG`] is passing through up to its `>`.
    long_tag: bool,
    /// Inside a secret element's text: swallowed up to the next `<`.
    secret: bool,
    value: Vec<u8>,
    found: Collected,
}

impl XmlFields {
    pub fn new(fields: FieldNames) -> XmlFields {
        XmlFields {
            fields,
            tag: Vec::new(),
            in_tag: false,
            long_tag: false,
            secret: false,
            value: Vec::new(),
            found: Collected::default(),
        }
    }

    pub fn held(&self) -> usize {
        self.tag.len()
    }

    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut rest = data;
        while !rest.is_empty() {
            if self.long_tag {
                let end = memchr::memchr(b'>', rest).map_or(rest.len(), |i| i + 1);
                out.extend_from_slice(&rest[..end]);
                self.long_tag = rest[end - 1] != b'>';
                rest = &rest[end..];
                continue;
            }
            if self.in_tag {
                let end = memchr::memchr(b'>', rest);
                let take = end.map_or(rest.len(), |i| i + 1);
                if self.tag.len() + take > MAX_TAG {
                    out.append(&mut self.tag);
                    self.in_tag = false;
                    self.long_tag = true;
                    continue;
                }
                self.tag.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if end.is_some() {
                    self.in_tag = false;
                    self.secret = self.opens_secret();
                    out.append(&mut self.tag);
                    if self.secret {
                        out.extend_from_slice(REDACTED.as_bytes());
                        self.value.clear();
                    }
                }
                continue;
            }
            // Text: up to the next tag.
            let end = memchr::memchr(b'<', rest).unwrap_or(rest.len());
            if self.secret {
                let keep = (super::secrets::MAX_SCRUB_LEN + 1).saturating_sub(self.value.len());
                self.value.extend_from_slice(&rest[..end.min(keep)]);
            } else {
                out.extend_from_slice(&rest[..end]);
            }
            rest = &rest[end..];
            if !rest.is_empty() {
                self.end_value();
                self.in_tag = true;
            }
        }
    }

    /// Whether the tag just read opens an element whose text is secret.
    fn opens_secret(&self) -> bool {
        let inner = &self.tag[1..self.tag.len() - 1];
        if inner.is_empty() || matches!(inner[0], b'/' | b'?' | b'!') || inner.ends_with(b"/") {
            return false;
        }
        let name_end = inner
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'/')
            .unwrap_or(inner.len());
        let name = &inner[..name_end];
        let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
        self.fields.contains(local)
    }

    fn end_value(&mut self) {
        if self.secret {
            let value = std::mem::take(&mut self.value);
            self.found.push(&value);
            // As XML escapes it (`&amp;`, ...) and as it reads.
            let text = String::from_utf8_lossy(&value)
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&");
            self.found.push(text.as_bytes());
        }
        self.secret = false;
    }

    pub fn finish(mut self, out: &mut Vec<u8>) -> Collected {
        out.append(&mut self.tag);
        self.end_value();
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BodyScrubber, Secrets};
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
            let (whole, found) = BodyScrubber::run(STS.as_bytes(), Some(ct), &rules, &s);
            for cut in [1, 2, 3, 7, 16, 61, 200] {
                let mut sc = BodyScrubber::new(Some(ct), &rules, &s);
                let mut got = Vec::new();
                for p in STS.as_bytes().chunks(cut) {
                    got.extend_from_slice(sc.feed(p));
                }
                got.extend(sc.finish().0);
                assert!(got == whole, "cut {cut}");
            }
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
}
