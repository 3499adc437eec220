//! The canonical request and its key.
//!
//! Two requests match when their canonical forms are equal: method, scheme, host, port,
//! path, the query sorted by name, the headers that matter, and the body (JSON with
//! sorted keys and ignored paths removed; other bodies as bytes). It is always computed
//! from the *stored* form (redacted), so a key computed at record time and one computed
//! for a live request at replay time agree.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::canonical_json::{canonicalize_with, CanonicalJson};
use super::{header, redact::looks_like_json, Header};
use crate::rules::Rules;

/// Headers that always take part in matching.
const MATCH_HEADERS: &[&str] = &["content-type", "accept"];

#[derive(Serialize, Debug, Clone)]
pub struct Canonical {
    pub method: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: CanonicalBody,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "snake_case")]
pub enum CanonicalBody {
    Empty,
    /// Sorted keys, ignored paths removed, compact (see [`super::canonical_json`]).
    Json(Box<RawValue>),
    Bytes {
        b3: String,
    },
}

/// The parts of a URL that matching uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub query: String,
}

impl UrlParts {
    pub fn parse(url: &str) -> UrlParts {
        let uri: http::Uri = url.parse().unwrap_or_default();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let host = uri.host().unwrap_or("").to_ascii_lowercase();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        UrlParts {
            scheme,
            host,
            port,
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
        }
    }
}

/// Decodes `%XX` escapes (proxy user names, OTLP header values, URL path segments);
/// bad escapes stay as they are and bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Sorts object keys at every depth (serde_json keeps insertion order here).
pub fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::with_capacity(map.len());
            for k in keys {
                out.insert(k.clone(), sort_keys(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// Removes the ids a faithful rerun makes up anew for each message: a JSON-RPC
/// message's `id` (each message of a batch too; MCP numbers its requests per session)
/// and the top-level fields in `names`. Replay answers with the client's own ids.
pub fn drop_message_ids(v: &mut Value, names: &[&str]) {
    fn drop_rpc_id(m: &mut serde_json::Map<String, Value>) {
        if m.contains_key("jsonrpc") {
            m.shift_remove("id");
        }
    }
    match v {
        Value::Object(m) => {
            drop_rpc_id(m);
            for n in names {
                m.shift_remove(*n);
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Value::Object(m) = item {
                    drop_rpc_id(m);
                }
            }
        }
        _ => {}
    }
}

/// A body's canonical JSON, when it is JSON (by content type, or by its first byte when
/// untyped).
fn parse_json(body: &[u8], content_type: Option<&str>, rules: &Rules) -> Option<CanonicalJson> {
    if body.is_empty() || !looks_like_json(content_type, body) {
        return None;
    }
    canonicalize_with(body, &rules.ignore_json_paths, !rules.match_message_ids)
}

/// The canonical form of a whole body: sorted JSON without ignored paths, else bytes.
fn canonical_body(body: &[u8], json: Option<Box<RawValue>>) -> CanonicalBody {
    match json {
        _ if body.is_empty() => CanonicalBody::Empty,
        Some(text) => CanonicalBody::Json(text),
        None => CanonicalBody::Bytes {
            b3: blake3::hash(body).to_hex().to_string(),
        },
    }
}

/// Builds the canonical request from the stored (already redacted) parts.
pub fn canonical(
    method: &str,
    url: &str,
    headers: &[Header],
    body: &[u8],
    rules: &Rules,
) -> Canonical {
    let json = parse_json(body, header(headers, "content-type"), rules);
    canonical_with(
        method,
        UrlParts::parse(url),
        headers,
        canonical_body(body, json.map(|j| j.text)),
        rules,
    )
}

fn canonical_with(
    method: &str,
    parts: UrlParts,
    headers: &[Header],
    body: CanonicalBody,
    rules: &Rules,
) -> Canonical {
    let mut query: Vec<(String, String)> = if parts.query.is_empty() {
        Vec::new()
    } else {
        parts
            .query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .filter(|(k, _)| !rules.ignore_query.iter().any(|i| i == k))
            .collect()
    };
    query.sort_by(|a, b| a.0.cmp(&b.0));

    let mut hs: Vec<(String, String)> = Vec::new();
    for name in MATCH_HEADERS
        .iter()
        .map(|s| s.to_string())
        .chain(rules.match_headers.iter().cloned())
    {
        if rules.ignore_headers.contains(&name) || rules.is_redacted_header(&name) {
            continue;
        }
        if let Some(v) = header(headers, &name) {
            let v = if name == "content-type" {
                normalize_content_type(v)
            } else {
                v.trim().to_string()
            };
            if !hs.iter().any(|(n, _)| *n == name) {
                hs.push((name, v));
            }
        }
    }
    hs.sort();

    Canonical {
        method: method.to_ascii_uppercase(),
        scheme: parts.scheme,
        host: parts.host,
        port: parts.port,
        path: parts.path,
        query,
        headers: hs,
        body,
    }
}

/// Multipart boundaries are random per request; they must not break a match.
fn normalize_content_type(v: &str) -> String {
    let mut parts = v.split(';').map(|p| p.trim().to_ascii_lowercase());
    let base = parts.next().unwrap_or_default();
    let params: Vec<String> = parts
        .filter(|p| !p.is_empty() && !p.starts_with("boundary="))
        .map(|p| p.replace(' ', ""))
        .collect();
    if params.is_empty() {
        base
    } else {
        format!("{base}; {}", params.join("; "))
    }
}

impl Canonical {
    pub fn key(&self) -> String {
        // Hashed as it is written: a large body's canonical text is not copied again.
        let mut h = blake3::Hasher::new();
        let _ = serde_json::to_writer(&mut h, self);
        h.finalize().to_hex().to_string()
    }
}

/// A request body as matching sees it.
pub enum KeyBody<'a> {
    /// Kept whole (decoded, redacted).
    Whole(&'a [u8]),
    /// Too large to keep whole: matched by the blake3 of its bytes.
    Large(&'a str),
}

/// Kind and key of a request in its stored (redacted) form. Record, replay and every
/// reader use this one function, so they cannot disagree.
pub fn identify(
    method: &str,
    url: &str,
    headers: &[Header],
    body: KeyBody<'_>,
    rules: &Rules,
) -> (super::Kind, String) {
    // The URL and the JSON body are parsed once, for the kind and the key alike.
    let parts = UrlParts::parse(url);
    let (kind, body) = match body {
        KeyBody::Whole(b) => {
            let json = parse_json(b, header(headers, "content-type"), rules);
            let names_model = json.as_ref().is_some_and(|j| j.names_model);
            let kind =
                super::kind::classify_named(method, &parts.host, &parts.path, names_model, rules);
            (kind, canonical_body(b, json.map(|j| j.text)))
        }
        KeyBody::Large(b3) => (
            super::kind::classify_named(method, &parts.host, &parts.path, false, rules),
            CanonicalBody::Bytes { b3: b3.to_string() },
        ),
    };
    (
        kind,
        canonical_with(method, parts, headers, body, rules).key(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleArgs;

    fn h(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn key_ignores_json_key_order_query_order_and_auth() {
        let rules = Rules::default();
        let a = canonical(
            "POST",
            "https://api.test/v1/x?b=2&a=1",
            &h(&[
                ("content-type", "application/json"),
                ("authorization", "a"),
                ("user-agent", "x"),
            ]),
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            &rules,
        );
        let b = canonical(
            "post",
            "https://API.test:443/v1/x?a=1&b=2",
            &h(&[
                ("Content-Type", "application/json"),
                ("x-stainless-retry-count", "2"),
            ]),
            br#"{ "messages":[{"content":"hi","role":"user"}], "model":"m"}"#,
            &rules,
        );
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn body_and_path_changes_change_the_key() {
        let rules = Rules::default();
        let hs = h(&[("content-type", "application/json")]);
        let base = canonical("POST", "https://a.test/x", &hs, br#"{"a":1}"#, &rules).key();
        assert_ne!(
            base,
            canonical("POST", "https://a.test/x", &hs, br#"{"a":2}"#, &rules).key()
        );
        assert_ne!(
            base,
            canonical("POST", "https://a.test/y", &hs, br#"{"a":1}"#, &rules).key()
        );
        assert_ne!(
            base,
            canonical("POST", "http://a.test/x", &hs, br#"{"a":1}"#, &rules).key()
        );
        assert_ne!(
            base,
            canonical("POST", "https://a.test/x", &hs, b"", &rules).key()
        );
    }

    #[test]
    fn ignore_rules_make_differing_requests_match() {
        let args = RuleArgs {
            ignore_json_paths: vec!["$.metadata.request_id".into()],
            ignore_query: vec!["ts".into()],
            ..Default::default()
        };
        let rules = Rules::from_toml("", &args).unwrap();
        let hs = h(&[("content-type", "application/json")]);
        let a = canonical(
            "POST",
            "https://a.test/x?ts=1",
            &hs,
            br#"{"metadata":{"request_id":"1"},"q":1}"#,
            &rules,
        );
        let b = canonical(
            "POST",
            "https://a.test/x?ts=2",
            &hs,
            br#"{"metadata":{"request_id":"2"},"q":1}"#,
            &rules,
        );
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn json_rpc_ids_do_not_take_part_unless_told() {
        let hs = h(&[("content-type", "application/json")]);
        let key = |body: &[u8], rules: &Rules| {
            canonical("POST", "https://mcp.test/mcp", &hs, body, rules).key()
        };
        let rules = Rules::default();
        let call = |id: u32| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"w","arguments":{{"id":7}}}}}}"#
            )
        };
        assert_eq!(
            key(call(1).as_bytes(), &rules),
            key(call(9).as_bytes(), &rules)
        );
        let batch = |a: u32, b: u32| {
            format!(
                r#"[{{"jsonrpc":"2.0","id":{a},"method":"x"}},{{"jsonrpc":"2.0","id":{b},"method":"y"}}]"#
            )
        };
        assert_eq!(
            key(batch(1, 2).as_bytes(), &rules),
            key(batch(5, 6).as_bytes(), &rules)
        );
        // Arguments keep their own ids; a body that is not JSON-RPC keeps its `id`.
        assert_ne!(
            key(call(1).replace("\"id\":7", "\"id\":8").as_bytes(), &rules),
            key(call(1).as_bytes(), &rules)
        );
        assert_ne!(key(br#"{"id":1}"#, &rules), key(br#"{"id":2}"#, &rules));
        let strict = Rules {
            match_message_ids: true,
            ..Rules::default()
        };
        assert_ne!(
            key(call(1).as_bytes(), &strict),
            key(call(2).as_bytes(), &strict)
        );
    }

    #[test]
    fn percent_decoding_never_panics_and_keeps_bad_escapes() {
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
        assert_eq!(percent_decode("%C3"), "\u{FFFD}");
        assert_eq!(percent_decode("%é%"), "%é%");
    }

    #[test]
    fn multipart_boundary_does_not_matter() {
        assert_eq!(
            normalize_content_type("multipart/form-data; boundary=abc"),
            "multipart/form-data"
        );
        assert_eq!(
            normalize_content_type("application/json; charset=UTF-8"),
            "application/json; charset=utf-8"
        );
    }
}
