//! Redacting named JSON fields without building a DOM: one pass finds where each named
//! field's value lies in the body, and only those spans are replaced.
//!
//! Parsing a 14 MB JSON body into a `serde_json::Value` takes ten times that in memory;
//! this holds the list of spans and the output copy, nothing more. Everything outside a
//! redacted value keeps its bytes (spacing, key order, number spelling).

use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// `data` with the value of every object key named in `fields` (any depth, any case)
/// replaced by `with` (a JSON string); `None` when nothing needed replacing or `data` is
/// not one JSON value.
pub fn redact(data: &[u8], fields: &[String], with: &str) -> Option<Vec<u8>> {
    if fields.is_empty() {
        return None;
    }
    let quoted = serde_json::to_string(with).ok()?;
    let mut walk = Walk {
        base: data.as_ptr() as usize,
        fields,
        quoted: &quoted,
        spans: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(data);
    Seed(&mut walk).deserialize(&mut de).ok()?;
    de.end().ok()?;
    if walk.spans.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut last = 0;
    for span in &walk.spans {
        out.extend_from_slice(data.get(last..span.start)?);
        out.extend_from_slice(quoted.as_bytes());
        last = span.end;
    }
    out.extend_from_slice(data.get(last..)?);
    Some(out)
}

struct Walk<'f> {
    /// Address of the body's first byte: a borrowed raw value's offset is its address
    /// minus this.
    base: usize,
    fields: &'f [String],
    quoted: &'f str,
    spans: Vec<Range<usize>>,
}

struct Seed<'w, 'f>(&'w mut Walk<'f>);

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Seed(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let walk = self.0;
        while let Some(key) = map.next_key::<Key>()? {
            if !walk.fields.iter().any(|f| f.eq_ignore_ascii_case(&key.0)) {
                map.next_value_seed(Seed(&mut *walk))?;
                continue;
            }
            let raw: &'de RawValue = map.next_value()?;
            if raw.get() != walk.quoted {
                let start = raw.get().as_ptr() as usize - walk.base;
                walk.spans.push(start..start + raw.get().len());
            }
        }
        Ok(())
    }
}

/// An object key, unescaped.
struct Key(String);

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        String::deserialize(d).map(Key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn named_values_are_replaced_and_everything_else_keeps_its_bytes() {
        let body = br#"{ "user": {"Password": "hunter2", "name": "x"},
  "list": [{"password": {"nested": [1, 2]}}, 3.50],
  "password": "[REDACTED]" }"#;
        let out = redact(body, &fields(&["password"]), "[REDACTED]").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "user": {"Password": "[REDACTED]", "name": "x"},
  "list": [{"password": "[REDACTED]"}, 3.50],
  "password": "[REDACTED]" }"#
        );
    }

    #[test]
    fn nothing_to_do_or_not_json_is_none() {
        let f = fields(&["password"]);
        assert!(redact(br#"{"user":"x"}"#, &f, "[REDACTED]").is_none());
        assert!(redact(br#"{"password":"x"} trailing"#, &f, "[REDACTED]").is_none());
        assert!(redact(b"not json", &f, "[REDACTED]").is_none());
        assert!(redact(br#"{"password":"x"}"#, &[], "[REDACTED]").is_none());
    }

    #[test]
    fn escaped_keys_are_matched_unescaped() {
        let out = redact(
            br#"{"pass\u0077ord":"x"}"#,
            &fields(&["password"]),
            "[REDACTED]",
        );
        assert_eq!(out.unwrap(), br#"{"pass\u0077ord":"[REDACTED]"}"#);
    }
}
