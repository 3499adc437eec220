//! Redaction: secrets are replaced by `[REDACTED]` before anything is hashed or stored.
//!
//! The upstream always receives the real values; only the copies kept for the store
//! pass through here. Besides the named headers, query parameters and JSON fields, the
//! secret values themselves are scrubbed from stored bodies, so an upstream that echoes
//! a key back cannot leak it to disk either.

use crate::rules::{Rules, REDACTED};
use serde_json::Value;

use super::Header;

/// The secret values seen in one request, to be scrubbed from its stored bodies.
#[derive(Default, Clone, Debug)]
pub struct Secrets {
    values: Vec<Vec<u8>>,
}

/// Shorter values are too likely to collide with ordinary text to be scrubbed blindly.
const MIN_SCRUB_LEN: usize = 8;

impl Secrets {
    fn add(&mut self, value: &str) {
        let value = value.trim();
        let mut push = |v: &str| {
            if v.len() >= MIN_SCRUB_LEN && !self.values.iter().any(|x| x == v.as_bytes()) {
                self.values.push(v.as_bytes().to_vec());
            }
        };
        push(value);
        // `Bearer sk-...` / `Basic ...`: the credential alone may appear elsewhere.
        if let Some((_, cred)) = value.split_once(' ') {
            push(cred.trim());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Replaces every occurrence of a secret value in `data`.
    pub fn scrub(&self, data: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for secret in &self.values {
            let hay = out.as_deref().unwrap_or(data);
            if memchr_find(hay, secret).is_none() {
                continue;
            }
            let replaced = replace_all(hay, secret, REDACTED.as_bytes());
            out = Some(replaced);
        }
        out
    }
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(hay, needle)
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut last = 0;
    for at in memchr::memmem::find_iter(hay, needle) {
        out.extend_from_slice(&hay[last..at]);
        out.extend_from_slice(with);
        last = at + needle.len();
    }
    out.extend_from_slice(&hay[last..]);
    out
}

/// Copies headers for storage: lower-case names, secret values replaced.
pub fn headers(map: &http::HeaderMap, rules: &Rules, secrets: &mut Secrets) -> Vec<Header> {
    map.iter()
        .map(|(name, value)| {
            let name = name.as_str().to_ascii_lowercase();
            let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if rules.is_redacted_header(&name) {
                secrets.add(&text);
                (name, REDACTED.to_string())
            } else {
                (name, text)
            }
        })
        .collect()
}

/// Redacts secret query parameters in a URL (`?key=...` as Gemini uses).
pub fn url(url: &str, rules: &Rules, secrets: &mut Secrets) -> String {
    let Some((base, rest)) = url.split_once('?') else {
        return url.to_string();
    };
    let (query, fragment) = match rest.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (rest, None),
    };
    let mut changed = false;
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if rules.is_redacted_query(name) && !value.is_empty() {
                changed = true;
                secrets.add(value);
                format!("{name}={REDACTED}")
            } else {
                pair.to_string()
            }
        })
        .collect();
    if !changed {
        return url.to_string();
    }
    let mut out = format!("{base}?{}", parts.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Replaces the value of every object key named in the rules, at any depth.
pub fn json(value: &mut Value, rules: &Rules) -> bool {
    if rules.redact_json_fields.is_empty() {
        return false;
    }
    redact_json_fields(value, &rules.redact_json_fields)
}

fn redact_json_fields(value: &mut Value, fields: &[String]) -> bool {
    let mut changed = false;
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if fields.iter().any(|f| f.eq_ignore_ascii_case(k)) {
                    if *v != Value::String(REDACTED.into()) {
                        *v = Value::String(REDACTED.into());
                        changed = true;
                    }
                } else {
                    changed |= redact_json_fields(v, fields);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                changed |= redact_json_fields(v, fields);
            }
        }
        _ => {}
    }
    changed
}

/// Redacts a whole body kept for storage. Returns the bytes to store.
pub fn body(
    data: Vec<u8>,
    content_type: Option<&str>,
    rules: &Rules,
    secrets: &Secrets,
) -> Vec<u8> {
    let mut data = data;
    if !rules.redact_json_fields.is_empty() && looks_like_json(content_type, &data) {
        // Span by span, without a DOM: a 14 MB body must not cost ten times that.
        if let Some(out) = super::json_fields::redact(&data, &rules.redact_json_fields, REDACTED) {
            data = out;
        }
    }
    if !secrets.is_empty() {
        if let Some(scrubbed) = secrets.scrub(&data) {
            data = scrubbed;
        }
    }
    data
}

/// Whether a body should be read as JSON: a JSON content type, or none and JSON-looking bytes.
pub fn looks_like_json(content_type: Option<&str>, data: &[u8]) -> bool {
    match content_type {
        Some(ct) if super::is_json_content_type(ct) => true,
        Some(ct) if !ct.trim().is_empty() && !ct.starts_with("text/plain") => false,
        _ => matches!(
            data.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{') | Some(b'[')
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleArgs;

    #[test]
    fn secret_headers_and_query_params_are_redacted_and_scrubbed_from_bodies() {
        let rules = Rules::default();
        let mut map = http::HeaderMap::new();
        map.insert("authorization", "Bearer sk-live-123456789".parse().unwrap());
        map.insert("content-type", "application/json".parse().unwrap());
        let mut secrets = Secrets::default();
        let h = headers(&map, &rules, &mut secrets);
        assert!(h.contains(&("authorization".into(), REDACTED.into())));
        assert!(h.contains(&("content-type".into(), "application/json".into())));
        let u = url(
            "https://g.test/v1/m:generateContent?alt=sse&key=AIzaSECRETKEY1",
            &rules,
            &mut secrets,
        );
        assert_eq!(
            u,
            "https://g.test/v1/m:generateContent?alt=sse&key=[REDACTED]"
        );
        let stored = body(
            br#"{"echo":"sk-live-123456789","k":"AIzaSECRETKEY1"}"#.to_vec(),
            Some("application/json"),
            &rules,
            &secrets,
        );
        let text = String::from_utf8(stored).unwrap();
        assert!(!text.contains("sk-live"), "{text}");
        assert!(!text.contains("AIza"), "{text}");
    }

    #[test]
    fn json_fields_are_redacted_at_any_depth() {
        let args = RuleArgs {
            redact_json_fields: vec!["password".into()],
            ..Default::default()
        };
        let rules = Rules::from_toml("", &args).unwrap();
        let out = body(
            br#"{"user":{"Password":"hunter2","name":"x"},"list":[{"password":"p"}]}"#.to_vec(),
            Some("application/json"),
            &rules,
            &Secrets::default(),
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["user"]["Password"], REDACTED);
        assert_eq!(v["user"]["name"], "x");
        assert_eq!(v["list"][0]["password"], REDACTED);
    }
}
