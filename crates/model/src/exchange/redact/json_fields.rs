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
use serde_json::Value;

use super::FieldNames;
use crate::credential::looks_like_credential;
use crate::rules::REDACTED;

/// `data` with the value of every object key listed in `fields` (any depth, any case)
/// replaced by `with` (a JSON string), and the scalar `value` of every name/value pair
/// whose name says it is a credential's (see [`is_pair_name`]); `None` when nothing
/// needed replacing or `data` is not one JSON value. Also returns the pairs' values (to
/// scrub their echoes from the rest of the exchange).
pub fn redact(data: &[u8], fields: &FieldNames, with: &str) -> Option<(Vec<u8>, Vec<String>)> {
    let quoted = serde_json::to_string(with).ok()?;
    let mut walk = Walk::over(data, fields, &quoted, false)?;
    let out = walk.replaced(data)?;
    Some((out, walk.found))
}

/// What a secret string value becomes: `None` when it is replaced whole; otherwise the
/// string holds one JSON object or array (AWS Secrets Manager's `SecretString`,
/// `{"username": …, "password": …, "port": 5432}`), which keeps its keys, nesting and
/// spacing with every string and number in it replaced by `"[REDACTED]"`, so that an
/// agent that parses the secret still can on replay: `Some(Some(text))`, the new JSON
/// text, or `Some(None)` when nothing in it needed replacing (read again, a redacted
/// secret stays as it is). The replaced strings that look like keys are added to
/// `found`.
pub fn secret_json(text: &str, found: &mut Leaves) -> Option<Option<String>> {
    let start = text.trim_start().as_bytes().first()?;
    if !matches!(start, b'{' | b'[') {
        return None;
    }
    let quoted = serde_json::to_string(REDACTED).ok()?;
    let fields = FieldNames::new(&[]);
    let mut walk = Walk::over(text.as_bytes(), &fields, &quoted, true)?;
    let out = walk.replaced(text.as_bytes());
    found.named.append(&mut walk.found);
    found.other.append(&mut walk.other);
    Some(out.map(|o| String::from_utf8(o).expect("UTF-8 with UTF-8 spliced in")))
}

/// The values a secret's JSON held that look like keys: those under a credential's name
/// (its `password`), and the rest (its host, its user name), which the agent may know
/// from elsewhere and the session does not remember ([`super::Remembered`]).
#[derive(Default, Debug)]
pub struct Leaves {
    pub named: Vec<String>,
    pub other: Vec<String>,
}

/// Keys that name the other half of a name/value pair: a HAR header
/// (`{"name": "Authorization", "value": …}`), a Kubernetes or ECS environment variable,
/// a Vercel or Terraform Cloud variable (`{"key": "OPENAI_API_KEY", "value": …}`), an
/// SSM parameter (`{"Name": "/prod/api_key", "Value": …}`).
pub fn is_pair_name(key: &str) -> bool {
    ["name", "key"].iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// Whether a pair's name is an identifier that says it names a credential: a variable,
/// header or parameter name (no spaces), not a display label (a help desk's option
/// `{"name": "Lost API key", "value": "lost_api_key"}` is a category).
pub fn pair_names_credential(name: &str, fields: &FieldNames) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:[]".contains(&b))
        && fields.contains(name.as_bytes())
}

/// Keywords a JSON Schema describing a credential holds without holding one: a tool's
/// `"password": {"type": "string", "description": "…"}` is the parameter's schema. Not
/// `default`, `examples`, `const` or `enum`, whose values may be the credential itself.
const SCHEMA_KEYWORDS: &[&str] = &[
    "type",
    "description",
    "title",
    "format",
    "minLength",
    "maxLength",
    "pattern",
    "contentEncoding",
    "contentMediaType",
    "writeOnly",
    "readOnly",
    "nullable",
    "deprecated",
    "$ref",
    "$comment",
    "$id",
    "$schema",
];

/// JSON Schema's names of types.
const SCHEMA_TYPES: &[&str] = &[
    "string", "number", "integer", "boolean", "object", "array", "null",
];

/// Whether an object is a JSON Schema of a value rather than the value: every key a
/// schema keyword ([`SCHEMA_KEYWORDS`], or an `x-` extension), with a `type` that names
/// JSON types or a `$ref`. A listed name's object value is replaced whole, unless it is
/// one (a tool's parameters, an MCP server's `inputSchema`: replacing them would record
/// a request the agent did not send).
pub fn is_schema(map: &serde_json::Map<String, Value>) -> bool {
    let typed = |v: &Value| match v {
        Value::String(t) => SCHEMA_TYPES.contains(&t.as_str()),
        Value::Array(ts) => {
            !ts.is_empty()
                && ts
                    .iter()
                    .all(|t| t.as_str().is_some_and(|t| SCHEMA_TYPES.contains(&t)))
        }
        _ => false,
    };
    (map.get("type").is_some_and(typed) || map.get("$ref").is_some_and(Value::is_string))
        && map
            .keys()
            .all(|k| SCHEMA_KEYWORDS.contains(&k.as_str()) || k.starts_with("x-"))
}

/// [`is_schema`] for an object's JSON text.
fn is_schema_text(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
        && serde_json::from_str::<serde_json::Map<String, Value>>(raw.get())
            .is_ok_and(|m| is_schema(&m))
}

/// Whether a pair's `type` (an SSM parameter's `Type`) says its value is a secret.
pub fn is_secure_type(key: &str, value: &str) -> bool {
    key.eq_ignore_ascii_case("type") && value.eq_ignore_ascii_case("securestring")
}

/// The half of a name/value pair that holds the value.
pub fn is_pair_value(key: &str) -> bool {
    key.eq_ignore_ascii_case("value")
}

/// Whether an object's `type` says its `key` is an API key: Azure OpenAI "On Your
/// Data"'s `{"authentication": {"type": "api_key", "key": …}}` (and Elasticsearch's
/// `key_and_key_id`).
pub fn is_key_type(key: &str, value: &str) -> bool {
    key.eq_ignore_ascii_case("type")
        && ["api_key", "key_and_key_id"]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(value))
}

/// The field an API key's `type` says is the key (see [`is_key_type`]).
pub fn is_typed_key(key: &str) -> bool {
    key.eq_ignore_ascii_case("key")
}

struct Walk<'f> {
    /// Address of the body's first byte: a borrowed raw value's offset is its address
    /// minus this.
    base: usize,
    fields: &'f FieldNames,
    quoted: &'f str,
    /// Every string and number is replaced, whatever its key (see [`secret_json`]).
    leaves: bool,
    /// The object about to be walked is the value of a name read as a credential's: its
    /// scalar `value` is the secret (an ARM template's `{"adminPassword": {"value": …}}`).
    under_secret: bool,
    /// Where each replaced value lies, and what replaces it (`None`: `quoted`).
    spans: Vec<(Range<usize>, Option<String>)>,
    found: Vec<String>,
    /// Leaves not under a credential's name (see [`Leaves`]).
    other: Vec<String>,
}

impl<'f> Walk<'f> {
    /// Walks `data`, one JSON value, noting the spans to replace; `None` when it is not
    /// one JSON value.
    fn over(
        data: &[u8],
        fields: &'f FieldNames,
        quoted: &'f str,
        leaves: bool,
    ) -> Option<Walk<'f>> {
        let mut walk = Walk {
            base: data.as_ptr() as usize,
            fields,
            quoted,
            leaves,
            under_secret: false,
            spans: Vec::new(),
            found: Vec::new(),
            other: Vec::new(),
        };
        let mut de = serde_json::Deserializer::from_slice(data);
        Seed(&mut walk).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(walk)
    }

    fn span(&self, raw: &RawValue) -> Range<usize> {
        let start = raw.get().as_ptr() as usize - self.base;
        start..start + raw.get().len()
    }

    /// `data` with the spans replaced; `None` when there are none.
    fn replaced(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if self.spans.is_empty() {
            return None;
        }
        // A pair's value is known to be secret only once its object ends: after the
        // spans of what came after it in that object.
        self.spans.sort_by_key(|(r, _)| r.start);
        let mut out = Vec::with_capacity(data.len());
        let mut last = 0;
        for (span, with) in &self.spans {
            out.extend_from_slice(data.get(last..span.start)?);
            out.extend_from_slice(with.as_deref().unwrap_or(self.quoted).as_bytes());
            last = span.end;
        }
        out.extend_from_slice(data.get(last..)?);
        Some(out)
    }

    /// Replaces a secret value: a string holding JSON keeps its shape
    /// ([`secret_json`]), any other string or number goes whole. `keep_found`: whether
    /// the string is to be hunted elsewhere in the exchange even when it does not look
    /// like a key (a listed name's value).
    fn secret(&mut self, raw: &RawValue, keep_found: bool) {
        if raw.get() == self.quoted {
            return;
        }
        let mut with = None;
        if let Ok(v) = serde_json::from_str::<String>(raw.get()) {
            let mut leaves = Leaves::default();
            let inside = secret_json(&v, &mut leaves);
            self.found.append(&mut leaves.named);
            self.found.append(&mut leaves.other);
            match inside {
                Some(None) => return,
                Some(Some(text)) => with = serde_json::to_string(&text).ok(),
                None => {}
            }
            if keep_found || looks_like_credential(&v) {
                self.found.push(v);
            }
        }
        let span = self.span(raw);
        self.spans.push((span, with));
    }

    /// A value inside a secret's JSON: strings and numbers replaced, the rest walked.
    /// `named`: its key is a credential's name.
    fn leaf(&mut self, raw: &RawValue, named: bool) -> Result<(), serde_json::Error> {
        match raw.get().as_bytes().first() {
            Some(b'"' | b'-' | b'0'..=b'9') if raw.get() != self.quoted => {
                if let Ok(v) = serde_json::from_str::<String>(raw.get()) {
                    if looks_like_credential(&v) {
                        match named {
                            true => self.found.push(v),
                            false => self.other.push(v),
                        }
                    }
                }
                let span = self.span(raw);
                self.spans.push((span, None));
                Ok(())
            }
            Some(b'{' | b'[') => self.walk_raw(raw),
            _ => Ok(()),
        }
    }

    /// Walks a value already read as raw text (its spans are still offsets into the body).
    fn walk_raw(&mut self, raw: &RawValue) -> Result<(), serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        Seed(self).deserialize(&mut de)
    }
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
        f.write_str("any JSON value")
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
        use serde::de::Error;
        let under_secret = std::mem::take(&mut self.0.under_secret);
        if self.0.leaves {
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                self.0.leaf(raw, false).map_err(A::Error::custom)?;
            }
            return Ok(());
        }
        if under_secret {
            // An array under a name read as a credential's (`"smtp_password": [...]`,
            // `"api-key": ["…"]`): its strings and numbers are the secrets, as the name's
            // string or number would be; its objects and arrays are read as any others.
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                match raw.get().as_bytes().first() {
                    Some(b'"' | b'-' | b'0'..=b'9') => self.0.secret(raw, false),
                    _ => self.0.walk_raw(raw).map_err(A::Error::custom)?,
                }
            }
            return Ok(());
        }
        while seq.next_element_seed(Seed(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let walk = self.0;
        let under_secret = std::mem::take(&mut walk.under_secret);
        if walk.leaves {
            while let Some(key) = map.next_key::<Key>()? {
                let raw: &'de RawValue = map.next_value()?;
                let named = walk.fields.contains(key.0.as_bytes());
                walk.leaf(raw, named).map_err(A::Error::custom)?;
            }
            return Ok(());
        }
        let mut secret_pair = under_secret;
        let mut pair_value: Option<&'de RawValue> = None;
        let mut typed_key = false;
        let mut key_value: Option<&'de RawValue> = None;
        while let Some(key) = map.next_key::<Key>()? {
            if walk.fields.contains(key.0.as_bytes()) {
                // A listed name's value whatever it is; a name read as a credential's, a
                // string or number (the scanner took those already unless the key was
                // written with escapes).
                let raw: &'de RawValue = map.next_value()?;
                let scalar = matches!(
                    raw.get().as_bytes().first(),
                    Some(b'"' | b'-' | b'0'..=b'9')
                );
                let listed = walk.fields.listed(key.0.as_bytes());
                if !scalar && listed && is_schema_text(raw) {
                    walk.walk_raw(raw).map_err(A::Error::custom)?;
                } else if !scalar && !listed {
                    walk.under_secret = true;
                    walk.walk_raw(raw).map_err(A::Error::custom)?;
                    walk.under_secret = false;
                } else if scalar {
                    walk.secret(raw, listed);
                } else if raw.get() != walk.quoted {
                    let span = walk.span(raw);
                    walk.spans.push((span, None));
                }
                continue;
            }
            if walk.fields.maybe(key.0.as_bytes()) {
                // A string that looks like a key under a name ending in `token`.
                let raw: &'de RawValue = map.next_value()?;
                let text = raw.get().as_bytes();
                if text.len() >= 2
                    && text[0] == b'"'
                    && super::json_key_like(&text[1..text.len() - 1])
                {
                    walk.secret(raw, false);
                } else {
                    walk.walk_raw(raw).map_err(A::Error::custom)?;
                }
                continue;
            }
            let name = is_pair_name(&key.0) || key.0.eq_ignore_ascii_case("type");
            if !name && !is_pair_value(&key.0) {
                map.next_value_seed(Seed(&mut *walk))?;
                continue;
            }
            let raw: &'de RawValue = map.next_value()?;
            match raw.get().as_bytes().first() {
                Some(b'"') if name => {
                    let text: String = serde_json::from_str(raw.get()).map_err(A::Error::custom)?;
                    secret_pair |= is_secure_type(&key.0, &text)
                        || (is_pair_name(&key.0) && pair_names_credential(&text, walk.fields));
                    typed_key |= is_key_type(&key.0, &text);
                    if is_typed_key(&key.0) {
                        key_value = Some(raw);
                    }
                }
                Some(b'"' | b'-' | b'0'..=b'9') if !name => pair_value = Some(raw),
                _ => walk.walk_raw(raw).map_err(A::Error::custom)?,
            }
        }
        if let Some(raw) = pair_value.filter(|_| secret_pair) {
            walk.secret(raw, false);
        }
        if let Some(raw) = key_value.filter(|_| typed_key) {
            walk.secret(raw, false);
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

    fn fields(names: &[&str]) -> FieldNames {
        FieldNames::new(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn redact(data: &[u8], fields: &FieldNames, with: &str) -> Option<Vec<u8>> {
        super::redact(data, fields, with).map(|(out, _)| out)
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
    fn an_array_under_a_credentials_name_loses_its_strings_and_numbers() {
        let body = br#"{"smtp_password": ["hunter2", 1234, {"note": "x"}, true],
  "api-key": ["k1"], "password_rules": ["min 8"], "db_password": {"type": "string"}}"#;
        let (out, found) = super::redact(body, &fields(&[]), "[REDACTED]").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"smtp_password": ["[REDACTED]", "[REDACTED]", {"note": "x"}, true],
  "api-key": ["[REDACTED]"], "password_rules": ["min 8"], "db_password": {"type": "string"}}"#
        );
        // Hunted elsewhere only when they look like credentials.
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_listed_name_whose_value_is_a_json_schema_keeps_the_schema() {
        // A login tool's parameters: the schema of a password, not a password.
        let body = br##"{"tools": [{"name": "login", "input_schema": {"type": "object",
  "properties": {"password": {"type": "string", "description": "the user's password",
  "minLength": 8}, "api_key": {"type": ["string", "null"], "x-secret": true},
  "access_token": {"$ref": "#/defs/token"}}}}],
  "config": {"password": {"type": "string", "default": "hunter2"},
    "api_key": {"type": "vault", "path": "kv/openai"}, "refresh_token": {"value": "r1"}}}"##;
        let f = fields(&["password", "api_key", "access_token", "refresh_token"]);
        let out = String::from_utf8(redact(body, &f, "[REDACTED]").unwrap()).unwrap();
        assert!(out.contains(
            r#""password": {"type": "string", "description": "the user's password",
  "minLength": 8}"#
        ));
        assert!(out.contains(r#""api_key": {"type": ["string", "null"], "x-secret": true}"#));
        assert!(out.contains(r##""access_token": {"$ref": "#/defs/token"}"##));
        // A `default` may be the password itself, a `type` no JSON type is not a
        // schema's, and an object without a type is a value: each replaced whole.
        assert!(
            out.contains(r#""config": {"password": "[REDACTED]""#),
            "{out}"
        );
        assert!(out.contains(r#""api_key": "[REDACTED]", "refresh_token": "[REDACTED]""#));
        assert!(!out.contains("hunter2") && !out.contains("kv/openai") && !out.contains("r1"));
        // The tree walk agrees with the bytes' walk.
        let mut v: Value = serde_json::from_slice(body).unwrap();
        let mut found = super::super::Collected::default();
        assert!(super::super::json::redact_value(&mut v, &f, &mut found));
        assert_eq!(v, serde_json::from_str::<Value>(&out).unwrap());
    }

    #[test]
    fn nothing_to_do_or_not_json_is_none() {
        let f = fields(&["password"]);
        assert!(redact(br#"{"user":"x"}"#, &f, "[REDACTED]").is_none());
        assert!(redact(br#"{"password":"x"} trailing"#, &f, "[REDACTED]").is_none());
        assert!(redact(b"not json", &f, "[REDACTED]").is_none());
        assert!(redact(br#"{"password":{}}"#, &fields(&[]), "[REDACTED]").is_none());
    }

    #[test]
    fn a_credential_name_written_with_escapes_is_read_unescaped() {
        let body = br#"{"openai\u005fapi\u005fkey":"sk-esc-123456789","db\u005fpassword":{"type":"string"}}"#;
        let (out, found) = super::redact(body, &fields(&[]), "[REDACTED]").unwrap();
        assert_eq!(
            out,
            br#"{"openai\u005fapi\u005fkey":"[REDACTED]","db\u005fpassword":{"type":"string"}}"#
        );
        assert_eq!(found, ["sk-esc-123456789"]);
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

    #[test]
    fn a_name_value_pair_named_like_a_credential_loses_its_value() {
        let body = br#"{"env": [{"name": "OPENAI_API_KEY", "value": "sk-pair-123456789"},
            {"value": 42, "key": "db_password"}, {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "api_key", "value": {"valueFrom": "arn:aws:ssm:x"}},
            {"Name": "/prod/app/api_key", "Value": "ssm-123456789", "Type": "String"},
            {"Name": "/prod/db/conn", "Type": "SecureString", "Value": "secure-987654321"},
            {"Name": "/app/model", "Type": "String", "Value": "gpt-4o-mini"},
            {"name": "Lost API key", "value": "lost_api_key"}],
          "headers": [{"name": "Authorization", "value": "Bearer tok-123456789"}]}"#;
        let (out, found) = super::redact(body, &fields(&[]), "[REDACTED]").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["env"][0]["value"], "[REDACTED]");
        assert_eq!(v["env"][1]["value"], "[REDACTED]");
        assert_eq!(v["env"][2]["value"], "debug");
        assert_eq!(v["env"][3]["value"]["valueFrom"], "arn:aws:ssm:x");
        assert_eq!(v["env"][4]["Value"], "[REDACTED]");
        // An SSM SecureString whatever its name; a plain String parameter is config.
        assert_eq!(v["env"][5]["Value"], "[REDACTED]");
        assert_eq!(v["env"][6]["Value"], "gpt-4o-mini");
        // A display label is not a variable's name.
        assert_eq!(v["env"][7]["value"], "lost_api_key");
        assert_eq!(v["headers"][0]["value"], "[REDACTED]");
        assert_eq!(
            found,
            [
                "sk-pair-123456789",
                "ssm-123456789",
                "secure-987654321",
                "Bearer tok-123456789"
            ]
        );
        // Every other byte as it was.
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#"{"value": "[REDACTED]", "key": "db_password"}"#),
            "{text}"
        );
    }

    #[test]
    fn a_key_its_type_names_and_a_value_under_a_credential_name_are_secrets() {
        // Azure OpenAI "On Your Data": the search index's key under a bare `key`; an ARM
        // deployment's parameters, each value under `value`.
        let body = br#"{"data_sources": [{"type": "azure_search", "parameters": {
              "authentication": {"type": "api_key", "key": "oyd-SEARCH-KEY-0001"}}},
            {"type": "elasticsearch", "parameters": {"authentication":
              {"type": "key_and_key_id", "key": "es-KEY-00000002", "key_id": "kid-1"}}}],
          "properties": {"parameters": {"adminPassword": {"value": "Arm-P4ssw0rd!"},
            "adminUsername": {"value": "azureuser"},
            "db_password": {"type": "string"}}},
          "schema": {"type": "apiKey", "name": "X-API-Key", "in": "header"},
          "order": {"key": "created_at", "type": "string"}}"#;
        let (out, found) = super::redact(body, &fields(&[]), "[REDACTED]").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let auth = |i: usize| &v["data_sources"][i]["parameters"]["authentication"];
        assert_eq!(auth(0)["key"], "[REDACTED]");
        assert_eq!(auth(1)["key"], "[REDACTED]");
        assert_eq!(auth(1)["key_id"], "kid-1");
        let params = &v["properties"]["parameters"];
        assert_eq!(params["adminPassword"]["value"], "[REDACTED]");
        assert_eq!(params["adminUsername"]["value"], "azureuser");
        assert_eq!(params["db_password"]["type"], "string");
        assert_eq!(v["schema"]["name"], "X-API-Key");
        // An OpenAPI security scheme names a header; a `key` beside another type is data.
        assert_eq!(v["order"]["key"], "created_at");
        assert_eq!(
            found,
            ["oyd-SEARCH-KEY-0001", "es-KEY-00000002", "Arm-P4ssw0rd!"]
        );
        // The DOM pass agrees, and both are stable.
        let mut dom: serde_json::Value = serde_json::from_slice(body).unwrap();
        let mut collected = super::super::Collected::default();
        assert!(super::super::json::redact_value(
            &mut dom,
            &fields(&[]),
            &mut collected
        ));
        assert_eq!(dom, v);
        assert!(super::redact(&out, &fields(&[]), "[REDACTED]").is_none());
    }
}
