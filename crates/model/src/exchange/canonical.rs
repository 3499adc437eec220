//! The canonical request and its key.
//!
//! Two requests match when their canonical forms are equal: method, scheme, host, port,
//! path, the query sorted by name, the headers that matter, and the body (JSON with
//! sorted keys and ignored paths removed; a multipart body as its parts, without the
//! random boundary between them; other bodies as bytes). It is always computed
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
    /// `multipart/*` with a boundary: each part's headers and the blake3 of its content,
    /// in order. The boundary, the preamble and the epilogue do not take part: a client
    /// draws a new boundary for every request.
    Multipart {
        parts: Vec<CanonicalPart>,
    },
}

/// One part of a multipart body, as matching sees it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPart {
    /// Names lower-cased, values trimmed, sorted.
    pub headers: Vec<(String, String)>,
    pub b3: String,
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

/// The canonical form of a whole body: sorted JSON without ignored paths, a multipart
/// body's parts, else bytes.
fn canonical_body(
    body: &[u8],
    json: Option<Box<RawValue>>,
    content_type: Option<&str>,
    rules: &Rules,
) -> CanonicalBody {
    match json {
        _ if body.is_empty() => CanonicalBody::Empty,
        Some(text) => CanonicalBody::Json(text),
        None => match content_type
            .and_then(multipart_boundary)
            .and_then(|b| multipart_parts(body, &b, &rules.ignore_parts))
        {
            Some(parts) => CanonicalBody::Multipart { parts },
            None if content_type.is_some_and(is_form) => CanonicalBody::Bytes {
                b3: blake3::hash(&marker_unescaped(body)).to_hex().to_string(),
            },
            None => CanonicalBody::Bytes {
                b3: blake3::hash(body).to_hex().to_string(),
            },
        },
    }
}

/// Whether a content type is a form's (`application/x-www-form-urlencoded`, any case).
pub(crate) fn is_form(content_type: &str) -> bool {
    content_type
        .trim_start()
        .get(..33)
        .is_some_and(|t| t.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// The redaction marker as a URL or a form carries it percent-encoded (`%5BREDACTED%5D`),
/// read as the marker: an agent that sends back a value it was served redacted (a CSRF
/// token from the replayed page, a token from the replayed login) encodes the
/// brackets, where the recorded request stored the marker itself.
fn marker_unescaped(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const INNER: &[u8] = b"REDACTED";
    let escaped = |at: usize| {
        data.get(at..at + ESCAPED_MARKER.len()).is_some_and(|w| {
            w.iter()
                .enumerate()
                .all(|(i, &b)| fits_escaped_marker(i, b))
        })
    };
    let Some(first) = memchr::memmem::find_iter(data, INNER).find(|&i| i >= 3 && escaped(i - 3))
    else {
        return std::borrow::Cow::Borrowed(data);
    };
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    let mut i = first - 3;
    while i < data.len() {
        if escaped(i) {
            out.extend_from_slice(&data[at..i]);
            out.extend_from_slice(crate::rules::REDACTED.as_bytes());
            i += 14;
            at = i;
        } else {
            i += 1;
        }
    }
    out.extend_from_slice(&data[at..]);
    std::borrow::Cow::Owned(out)
}

/// The marker percent-encoded, as a form or URL encoder writes `[REDACTED]`.
pub(crate) const ESCAPED_MARKER: &[u8] = b"%5BREDACTED%5D";

/// Whether `b` may stand at `i` in [`ESCAPED_MARKER`] (its hex digits in either case).
pub(crate) fn fits_escaped_marker(i: usize, b: u8) -> bool {
    match i {
        2 | 13 => b.eq_ignore_ascii_case(&ESCAPED_MARKER[i]),
        _ => b == ESCAPED_MARKER[i],
    }
}

fn marker_unescaped_str(text: String) -> String {
    match marker_unescaped(text.as_bytes()) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(b) => String::from_utf8(b).expect("UTF-8 with ASCII spliced in"),
    }
}

/// The boundary of a `multipart/*` content type (quotes removed).
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let base = params.next()?.trim();
    if !base.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("boundary") && !value.is_empty())
            .then(|| value.to_string())
    })
}

/// The form field a part's `Content-Disposition` names (`form-data; name="audio"`).
fn part_name(headers: &[(String, String)]) -> Option<String> {
    disposition_param(headers, "name")
}

/// A parameter of a part's `Content-Disposition` (`name`, `filename`), unquoted.
fn disposition_param(headers: &[(String, String)], param: &str) -> Option<String> {
    let (_, value) = headers.iter().find(|(n, _)| n == "content-disposition")?;
    value.split(';').skip(1).find_map(|p| {
        let (key, v) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(param)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The parts of a multipart body (RFC 2046 §5.1.1), or `None` when it is not one: no
/// opening or closing delimiter, or a part whose headers do not parse. Such a body is
/// matched by its bytes, as before. A part whose form field is one of `ignored` takes
/// part by its name alone: its content, file name and other headers do not.
fn multipart_parts(body: &[u8], boundary: &str, ignored: &[String]) -> Option<Vec<CanonicalPart>> {
    let parts = split_multipart(body, boundary)?;
    Some(
        parts
            .into_iter()
            .map(|(headers, content)| canonical_part(headers, blake3::hash(content), ignored))
            .collect(),
    )
}

/// A multipart body's parts: each one's headers (see [`part_head`]) and content, or
/// `None` when it is not one (see [`multipart_parts`]).
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<(Vec<Header>, &'a [u8])>> {
    use memchr::memmem;
    let delimiter = format!("\r\n--{boundary}");
    // The first delimiter opens the body, or follows a preamble (ignored).
    let mut rest = match body.strip_prefix(&delimiter.as_bytes()[2..]) {
        Some(r) => r,
        None => {
            let at = memmem::find(body, delimiter.as_bytes())?;
            &body[at + delimiter.len()..]
        }
    };
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            // The close delimiter; what follows is the epilogue (ignored).
            return Some(parts);
        }
        // Transport padding (spaces and tabs) may precede the line break.
        let padded = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        rest = rest[padded..].strip_prefix(b"\r\n")?;
        let end = memmem::find(rest, delimiter.as_bytes())?;
        let part = &rest[..end];
        let (head_len, headers) = part_head(part).ok()?;
        parts.push((headers, &part[head_len..]));
        rest = &rest[end + delimiter.len()..];
    }
}

/// A part's content shown in a multipart view up to this many bytes of text.
const VIEW_TEXT: usize = 2048;

/// A multipart body as a person compares two (a replay miss's differences): an object of
/// its parts by form field (a second part of the same name as `name#2`, one with none as
/// `part N`), each part's content as JSON when it is JSON, as text when it is short
/// UTF-8 text, else as its size and blake3; a part with a file name or a content type as
/// an object of those and its `content`. `None` when the body is not multipart. The
/// boundary is read from the body's first line, as the request's content type names it:
/// a client draws a new one for every request, so two bodies compared whole differ in
/// every delimiter.
pub fn multipart_view(body: &[u8]) -> Option<Value> {
    let line_end = memchr::memmem::find(body, b"\r\n")?;
    let boundary = std::str::from_utf8(body.get(2..line_end)?).ok()?.trim_end();
    if !body.starts_with(b"--")
        || boundary.is_empty()
        || boundary.len() > 70
        || boundary.contains(char::is_control)
    {
        return None;
    }
    let parts = split_multipart(body, boundary)?;
    let mut view = serde_json::Map::new();
    for (i, (headers, content)) in parts.iter().enumerate() {
        let text = match std::str::from_utf8(content) {
            Ok(t) if t.len() <= VIEW_TEXT => Some(t),
            _ => None,
        };
        let kind = header(headers, "content-type");
        let shown = match (kind, text) {
            (Some(k), Some(t)) if k.contains("json") => {
                serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string()))
            }
            (_, Some(t)) => Value::String(t.to_string()),
            (_, None) => Value::String(format!(
                "{} bytes, blake3 {}",
                content.len(),
                &blake3::hash(content).to_hex()[..12]
            )),
        };
        let file = disposition_param(headers, "filename");
        let value = if file.is_some() || kind.is_some() {
            let mut o = serde_json::Map::new();
            if let Some(f) = file {
                o.insert("filename".into(), Value::String(f));
            }
            if let Some(k) = kind {
                o.insert("content-type".into(), Value::String(k.to_string()));
            }
            o.insert("content".into(), shown);
            Value::Object(o)
        } else {
            shown
        };
        let name = part_name(headers).unwrap_or_else(|| format!("part {}", i + 1));
        let mut key = name.clone();
        let mut n = 1;
        while view.contains_key(&key) {
            n += 1;
            key = format!("{name}#{n}");
        }
        view.insert(key, value);
    }
    Some(Value::Object(view))
}

/// A part's head: its length and its headers (names lower-cased, values trimmed,
/// sorted); `Err(true)` while it may still end, `Err(false)` when it cannot parse.
fn part_head(part: &[u8]) -> Result<(usize, Vec<(String, String)>), bool> {
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let (head_len, raw) = match httparse::parse_headers(part, &mut slots) {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) => return Err(true),
        Err(_) => return Err(false),
    };
    let mut headers: Vec<(String, String)> = raw
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    headers.sort();
    Ok((head_len, headers))
}

/// A part as matching sees it; one whose form field is one of `ignored`, by its name alone.
fn canonical_part(
    headers: Vec<(String, String)>,
    b3: blake3::Hash,
    ignored: &[String],
) -> CanonicalPart {
    match part_name(&headers).filter(|n| ignored.iter().any(|i| i == n)) {
        Some(name) => CanonicalPart {
            headers: vec![(
                "content-disposition".into(),
                format!("form-data; name=\"{name}\""),
            )],
            b3: String::new(),
        },
        None => CanonicalPart {
            headers,
            b3: b3.to_hex().to_string(),
        },
    }
}

/// The parts of a whole body of this content type, when it is multipart ([`multipart_parts`]
/// with the rules' ignored parts): what [`MultipartDigest`] must give, for tests and fuzzing.
pub fn multipart_body_parts(
    body: &[u8],
    content_type: &str,
    rules: &Rules,
) -> Option<Vec<CanonicalPart>> {
    multipart_parts(
        body,
        &multipart_boundary(content_type)?,
        &rules.ignore_parts,
    )
}

/// The parts of a multipart body too large to keep whole, read as it streams: the same
/// parts [`multipart_parts`] reads in the whole body, however the body is cut. Record
/// and replay key such a body by them (before the twenty-seventh session, by its bytes,
/// boundary included: a client that draws a new boundary for every request missed).
pub struct MultipartDigest {
    /// `\r\n--BOUNDARY`.
    delimiter: memchr::memmem::Finder<'static>,
    ignored: Vec<String>,
    /// Bytes that may begin a delimiter, read with the next piece (a line break before
    /// the body's first byte, so that a body opening with the delimiter finds it).
    carry: Vec<u8>,
    state: Digesting,
    parts: Vec<CanonicalPart>,
}

enum Digesting {
    /// Before the first delimiter (the preamble, not read).
    Preamble,
    /// Just past a delimiter: what follows says whether it closed the body.
    After(Vec<u8>),
    /// A part's head, until it parses.
    Head(Vec<u8>),
    /// A part's content.
    Content {
        headers: Vec<(String, String)>,
        hasher: Box<blake3::Hasher>,
    },
    /// The close delimiter was read: the rest is the epilogue.
    Closed,
    /// Not the multipart body it claims to be: matched by its bytes.
    Broken,
}

/// The longest part head, or transport padding after a delimiter, read.
const PART_HEAD_MAX: usize = 64 << 10;

impl MultipartDigest {
    /// A digest for a body of this content type, when it is multipart with a boundary.
    pub fn new(content_type: Option<&str>, rules: &Rules) -> Option<MultipartDigest> {
        let boundary = multipart_boundary(content_type?)?;
        Some(MultipartDigest {
            delimiter: memchr::memmem::Finder::new(format!("\r\n--{boundary}").as_bytes())
                .into_owned(),
            ignored: rules.ignore_parts.clone(),
            carry: b"\r\n".to_vec(),
            state: Digesting::Preamble,
            parts: Vec::new(),
        })
    }

    pub fn feed(&mut self, data: &[u8]) {
        if matches!(self.state, Digesting::Closed | Digesting::Broken) {
            return;
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(data);
        let len = self.delimiter.needle().len();
        let mut at = 0;
        while at < buf.len() {
            if let Digesting::After(seen) = &mut self.state {
                seen.push(buf[at]);
                at += 1;
                self.state = match after_delimiter(seen) {
                    None => continue,
                    Some(Ok(())) => Digesting::Head(Vec::new()),
                    Some(Err(true)) => Digesting::Closed,
                    Some(Err(false)) => Digesting::Broken,
                };
                if matches!(self.state, Digesting::Closed | Digesting::Broken) {
                    return;
                }
                continue;
            }
            match self.delimiter.find(&buf[at..]) {
                Some(d) => {
                    self.part_bytes(&buf[at..at + d]);
                    self.end_part();
                    if matches!(self.state, Digesting::Broken) {
                        return;
                    }
                    at += d + len;
                    self.state = Digesting::After(Vec::new());
                }
                None => {
                    // What may begin a delimiter waits for the next piece.
                    let safe = buf.len().saturating_sub(len - 1).max(at);
                    self.part_bytes(&buf[at..safe]);
                    self.carry = buf[safe..].to_vec();
                    return;
                }
            }
        }
    }

    /// Bytes of the part being read (or of the preamble).
    fn part_bytes(&mut self, bytes: &[u8]) {
        match &mut self.state {
            Digesting::Head(head) => {
                head.extend_from_slice(bytes);
                match part_head(head) {
                    Ok((len, headers)) => {
                        let mut hasher = Box::new(blake3::Hasher::new());
                        hasher.update(&head[len..]);
                        self.state = Digesting::Content { headers, hasher };
                    }
                    Err(true) if head.len() <= PART_HEAD_MAX => {}
                    Err(_) => self.state = Digesting::Broken,
                }
            }
            Digesting::Content { hasher, .. } => {
                hasher.update(bytes);
            }
            _ => {}
        }
    }

    /// A delimiter ends the part being read.
    fn end_part(&mut self) {
        match std::mem::replace(&mut self.state, Digesting::Broken) {
            Digesting::Preamble => self.state = Digesting::Preamble,
            Digesting::Content { headers, hasher } => {
                let part = canonical_part(headers, hasher.finalize(), &self.ignored);
                self.parts.push(part);
                self.state = Digesting::Preamble;
            }
            // A head that had not ended: not a part (Broken stays).
            _ => {}
        }
    }

    /// The body's parts, when it was a whole multipart body (closed by its delimiter).
    pub fn finish(self) -> Option<Vec<CanonicalPart>> {
        matches!(self.state, Digesting::Closed).then_some(self.parts)
    }
}

/// What follows a delimiter: `Ok` once its line ended (transport padding, then a line
/// break: a part follows), `Err(true)` for the close delimiter, `Err(false)` for
/// anything else; `None` while it cannot tell.
fn after_delimiter(seen: &[u8]) -> Option<Result<(), bool>> {
    if seen.starts_with(b"--") {
        return Some(Err(true));
    }
    if seen == b"-" {
        return None;
    }
    let padded = seen
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    match &seen[padded..] {
        [] if seen.len() <= PART_HEAD_MAX => None,
        [] => Some(Err(false)),
        [b'\r'] => None,
        [b'\r', b'\n'] => Some(Ok(())),
        _ => Some(Err(false)),
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
    let ct = header(headers, "content-type");
    let json = parse_json(body, ct, rules);
    canonical_with(
        method,
        UrlParts::parse(url),
        headers,
        canonical_body(body, json.map(|j| j.text), ct, rules),
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
                (k.to_string(), marker_unescaped_str(v.to_string()))
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
        path: marker_unescaped_str(parts.path),
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
        // Hashed as it is written, through a buffer on the stack: a large body's
        // canonical text is not copied whole, and the hasher is not fed one JSON token at
        // a time (each `update` has a fixed cost that dwarfs a token's bytes).
        let mut w = Hashing {
            hasher: blake3::Hasher::new(),
            buf: [0; 2048],
            at: 0,
        };
        let _ = serde_json::to_writer(&mut w, self);
        w.flush_buf();
        w.hasher.finalize().to_hex().to_string()
    }
}

/// Feeds blake3 through a buffer on the stack.
struct Hashing {
    hasher: blake3::Hasher,
    buf: [u8; 2048],
    at: usize,
}

impl Hashing {
    fn flush_buf(&mut self) {
        self.hasher.update(&self.buf[..self.at]);
        self.at = 0;
    }
}

impl std::io::Write for Hashing {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.at + data.len() > self.buf.len() {
            self.flush_buf();
        }
        if data.len() >= self.buf.len() {
            self.hasher.update(data);
        } else {
            self.buf[self.at..self.at + data.len()].copy_from_slice(data);
            self.at += data.len();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A request body as matching sees it.
pub enum KeyBody<'a> {
    /// Kept whole (decoded, redacted).
    Whole(&'a [u8]),
    /// Too large to keep whole: matched by the blake3 of its bytes.
    Large(&'a str),
    /// A multipart body too large to keep whole: matched by its parts, read as it
    /// streamed ([`MultipartDigest`]), as a smaller one is.
    Parts(Vec<CanonicalPart>),
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
            let ct = header(headers, "content-type");
            let json = parse_json(b, ct, rules);
            let names_model = json.as_ref().is_some_and(|j| j.names_model);
            let kind =
                super::kind::classify_named(method, &parts.host, &parts.path, names_model, rules);
            (kind, canonical_body(b, json.map(|j| j.text), ct, rules))
        }
        KeyBody::Large(b3) => (
            super::kind::classify_named(method, &parts.host, &parts.path, false, rules),
            CanonicalBody::Bytes { b3: b3.to_string() },
        ),
        KeyBody::Parts(body_parts) => (
            super::kind::classify_named(method, &parts.host, &parts.path, false, rules),
            CanonicalBody::Multipart { parts: body_parts },
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
    fn a_key_is_the_blake3_of_the_canonical_json_whatever_its_size() {
        let rules = Rules::default();
        let json = |n: usize| format!(r#"{{"model":"m","input":"{}"}}"#, "x".repeat(n));
        let plain = |n: usize| "y".repeat(n).into_bytes();
        let ct = |t: &str| h(&[("content-type", t)]);
        // Around the hashing buffer's size, under and over, JSON and opaque bodies.
        for n in [0, 1, 2000, 2047, 2048, 2049, 5000, 70_000] {
            for (headers, body) in [
                (ct("application/json"), json(n).into_bytes()),
                (ct("application/octet-stream"), plain(n)),
            ] {
                let c = canonical("POST", "https://a.test/v1/x?q=1", &headers, &body, &rules);
                let whole = blake3::hash(&serde_json::to_vec(&c).unwrap());
                assert_eq!(c.key(), whole.to_hex().to_string(), "body of {n} bytes");
            }
        }
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

    /// An agent sends back a value it was served redacted with the brackets encoded; the
    /// recorded request stored the marker: both key alike, in a path, a query and a form.
    #[test]
    fn the_marker_percent_encoded_keys_as_the_marker() {
        assert_eq!(
            &marker_unescaped(b"%5BREDACTED%5Da=%5bREDACTED%5d&b=%5BREDACTED%5")[..],
            b"[REDACTED]a=[REDACTED]&b=%5BREDACTED%5"
        );
        assert!(matches!(
            marker_unescaped(b"REDACTED %5BREDACTED %5Bredacted%5D"),
            std::borrow::Cow::Borrowed(_)
        ));
        let key = |url: &str, body: &str| {
            let headers = h(&[("content-type", "application/x-www-form-urlencoded")]);
            identify(
                "POST",
                url,
                &headers,
                KeyBody::Whole(body.as_bytes()),
                &Rules::default(),
            )
        };
        assert_eq!(
            key(
                "https://a.test/s/[REDACTED]/x?t=[REDACTED]",
                "csrf=[REDACTED]&n=1"
            ),
            key(
                "https://a.test/s/%5BREDACTED%5D/x?t=%5bREDACTED%5d",
                "csrf=%5BREDACTED%5D&n=1"
            )
        );
        assert_ne!(
            key("https://a.test/x?t=[REDACTED]", "csrf=[REDACTED]"),
            key("https://a.test/x?t=[REDACTED]", "csrf=other")
        );
    }

    #[test]
    fn percent_decoding_never_panics_and_keeps_bad_escapes() {
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
        assert_eq!(percent_decode("%C3"), "\u{FFFD}");
        assert_eq!(percent_decode("%é%"), "%é%");
    }

    /// A form as a client sends it: `fields` (name, filename, content) with `boundary`.
    fn form(boundary: &str, fields: &[(&str, Option<&str>, &[u8])], epilogue: &str) -> Vec<u8> {
        let mut b = Vec::new();
        for (name, file, content) in fields {
            b.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match file {
                Some(f) => b.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\ncontent-type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => b.extend_from_slice(
                    format!("content-disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            b.extend_from_slice(content);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(format!("--{boundary}--\r\n{epilogue}").as_bytes());
        b
    }

    fn form_key(boundary: &str, body: &[u8]) -> String {
        let ct = format!("multipart/form-data; boundary={boundary}");
        let hs = h(&[("content-type", ct.as_str())]);
        let url = "https://api.openai.com/v1/audio/transcriptions";
        identify("POST", url, &hs, KeyBody::Whole(body), &Rules::default()).1
    }

    #[test]
    fn an_ignored_form_field_matches_by_its_name_alone() {
        let key = |body: &[u8], ignore: &[&str]| {
            let args = RuleArgs {
                ignore_parts: ignore.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            let rules = Rules::from_toml("", &args).unwrap();
            let ct = "multipart/form-data; boundary=b";
            let hs = h(&[("content-type", ct)]);
            let url = "https://uploads.test/v1/files";
            identify("POST", url, &hs, KeyBody::Whole(body), &rules).1
        };
        let audio: &[u8] = &[0, 1, 2, 255];
        let at = |ts: &[u8], file: &str| {
            form(
                "b",
                &[("uploaded_at", None, ts), ("file", Some(file), audio)],
                "",
            )
        };
        let (a, b) = (at(b"1764582000", "a.wav"), at(b"1764582977", "a.wav"));
        assert_ne!(
            key(&a, &[]),
            key(&b, &[]),
            "by default every part's content counts"
        );
        assert_eq!(key(&a, &["uploaded_at"]), key(&b, &["uploaded_at"]));
        // An ignored file part: neither its content nor its (temporary) file name.
        let renamed = form(
            "b",
            &[
                ("uploaded_at", None, b"1764582000"),
                ("file", Some("tmp83jd.wav"), b"other bytes"),
            ],
            "",
        );
        assert_ne!(key(&a, &["uploaded_at"]), key(&renamed, &["uploaded_at"]));
        assert_eq!(key(&a, &["file"]), key(&renamed, &["file"]));
        // The field must still be there, in its place.
        let without = form("b", &[("file", Some("a.wav"), audio)], "");
        assert_ne!(key(&a, &["uploaded_at"]), key(&without, &["uploaded_at"]));
        // Rules that ignore a part compute other keys, so they fingerprint apart; rules
        // that ignore none keep the fingerprint recordings were made under.
        let rules = |ignore: &[&str]| {
            let args = RuleArgs {
                ignore_parts: ignore.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            Rules::from_toml("", &args).unwrap().match_fingerprint()
        };
        assert_ne!(rules(&["uploaded_at"]), rules(&[]));
        // (The default rules' fingerprint: recordings made before `apikey` joined the
        // redacted fields carry d250d7022ed0bf25, those made before the fields of JSON
        // inside a string and the paths that are credentials were redacted 09cbff198e4970c8,
        // those made before AWS's credential fields, STS's web identity token and EC2's
        // metadata token header were 15b79613119a12ac, those made before names were read
        // for what they say (credential.rs) 8243315033fcbc1d, those made before headers
        // were read for keys' shapes and a session's secrets hunted in its later
        // exchanges 6cb538e05bb5a5f4, those made before names ending in `token` were
        // read in forms, queries and JSON inside a string 84f6cc7a246224e7, those made
        // before quoted assignments, YAML lines and headers printed as text were read
        // b2911489042ccb56, those made before XML attributes named for a token were
        // read 0b67c309d69ff70b, those made before unpadded base64 with a `/` looked
        // like a key 26b06b2df4bc3bc0, those made before keys named in prose and YAML
        // block scalars were read becc8b2df5c3b752, those made before a key could be
        // up to 4 KiB long c99ae4044b3c7d6a, those made before a multipart body past
        // 16 MiB was matched by its parts 778e50fbd4a78381, those made before a line
        // indented past the line scanner's tail, after a JSON string's opening quote or
        // a `\t` was read as a line 79b66f92ebb4465e, those made before passwords in
        // URLs written in bodies, quoted values named in prose or code and JSON two
        // strings down were read e9780df99afe9365, those made before commands' flags,
        // elements' text and headers in single-quoted words were read a6722ffa177f5120,
        // those made before a quoted name's string after a comma was read
        // 9e26891d4518d42b, those made before a password a sentence gives was read
        // c3969b10f946621c, those made before a password piped to a command was read
        // 8bda4c2d51b26891, those made before passwords in a table's column were read
        // a9c57834b755dd05; all are re-keyed when replayed.)
        assert_eq!(rules(&[]), "d3dc9639a164c6a6");
    }

    #[test]
    fn a_multipart_body_matches_by_its_parts_whatever_its_boundary() {
        let audio: &[u8] = &[0, 1, 2, 255, 13, 10, 45, 45];
        let fields = [
            ("model", None, b"whisper-1".as_slice()),
            ("file", Some("a.wav"), audio),
        ];
        let a = form("----a1b2c3", &fields, "");
        let b = form(
            "------------------------d74496d66958873e",
            &fields,
            "bye\r\n",
        );
        assert_ne!(a, b);
        assert_eq!(
            form_key("----a1b2c3", &a),
            form_key("------------------------d74496d66958873e", &b)
        );
        // A quoted boundary, and a preamble before the first part.
        let mut quoted = b"a preamble\r\n".to_vec();
        quoted.extend_from_slice(&form("q=9", &fields, ""));
        assert_eq!(form_key("\"q=9\"", &quoted), form_key("----a1b2c3", &a));
        // What the parts say still matters: their content, their headers, their order.
        let other = form(
            "x",
            &[
                ("model", None, b"whisper-2"),
                ("file", Some("a.wav"), audio),
            ],
            "",
        );
        assert_ne!(form_key("x", &other), form_key("----a1b2c3", &a));
        let renamed = form(
            "x",
            &[
                ("model", None, b"whisper-1"),
                ("file", Some("b.wav"), audio),
            ],
            "",
        );
        assert_ne!(form_key("x", &renamed), form_key("----a1b2c3", &a));
        let swapped = form(
            "x",
            &[
                ("file", Some("a.wav"), audio),
                ("model", None, b"whisper-1"),
            ],
            "",
        );
        assert_ne!(form_key("x", &swapped), form_key("----a1b2c3", &a));
    }

    #[test]
    fn a_body_that_is_not_the_multipart_it_claims_matches_by_its_bytes() {
        let good = form("zz", &[("a", None, b"1")], "");
        // No close delimiter: not a multipart body, so its bytes (boundary and all) count.
        let cut = &good[..good.len() - 6];
        assert!(multipart_parts(cut, "zz", &[]).is_none());
        assert!(multipart_parts(b"no delimiter at all", "zz", &[]).is_none());
        let parts = multipart_parts(&good, "zz", &[]).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].b3, blake3::hash(b"1").to_hex().to_string());
        assert_eq!(
            parts[0].headers,
            [(
                "content-disposition".to_string(),
                "form-data; name=\"a\"".to_string()
            )]
        );
        assert_eq!(
            multipart_boundary("Multipart/Mixed; charset=x; Boundary=\"b c\""),
            Some("b c".into())
        );
        assert_eq!(multipart_boundary("text/plain; boundary=x"), None);
        assert_eq!(multipart_boundary("multipart/form-data"), None);
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

    /// The digest of a multipart body read as it streams gives the parts the whole body
    /// gives, at every cut, for bodies whole or broken in each way the parser tells.
    #[test]
    fn a_multipart_body_read_as_it_streams_has_the_parts_read_whole() {
        let rules = Rules {
            ignore_parts: vec!["stamp".into()],
            ..Rules::default()
        };
        let ct = "multipart/form-data; boundary=XyZ";
        let part = |name: &str, body: &str| {
            format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{body}")
        };
        let (a, b, stamp) = (
            part("a", "one\r\n--XyQ and --XyZ inline\r\n-"),
            part("b", ""),
            part("stamp", "12:00"),
        );
        let bodies = [
            format!("--XyZ\r\n{a}\r\n--XyZ\r\n{b}\r\n--XyZ\r\n{stamp}\r\n--XyZ--\r\n"),
            format!("preamble\r\n--XyZ \t\r\n{a}\r\n--XyZ\r\n{b}\r\n--XyZ--epilogue --XyZ\r\nx"),
            "--XyZ\r\n\r\nno headers\r\n--XyZ--".to_string(),
            // Not closed; a head that does not end; a bad line after a delimiter; no
            // delimiter at all; a head that does not parse.
            format!("--XyZ\r\n{a}\r\n--XyZ\r\n{b}"),
            "--XyZ\r\nContent-Type: text/plain\r\n--XyZ--".to_string(),
            format!("--XyZ\r\n{a}\r\n--XyZ-\r\n{b}\r\n--XyZ--"),
            "plain text, --XyZ nowhere as a delimiter".to_string(),
            "--XyZ\r\nbad header line\r\n\r\nx\r\n--XyZ--".to_string(),
            String::new(),
        ];
        for body in &bodies {
            let whole = multipart_body_parts(body.as_bytes(), ct, &rules);
            for cut in 1..=body.len().max(1) {
                let mut d = MultipartDigest::new(Some(ct), &rules).unwrap();
                for piece in body.as_bytes().chunks(cut) {
                    d.feed(piece);
                }
                assert_eq!(d.finish(), whole, "cut {cut} of {body:?}");
            }
        }
        let first = multipart_parts(bodies[0].as_bytes(), "XyZ", &rules.ignore_parts).unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(first[2].b3, "", "an ignored part takes part by its name");
        assert!(multipart_parts(bodies[3].as_bytes(), "XyZ", &[]).is_none());
        assert!(MultipartDigest::new(Some("application/json"), &rules).is_none());
        // Keyed by its parts, a body too large to keep whole has the key it would have
        // whole (which does not depend on its boundary: `multipart_boundary_does_not_matter`).
        let headers = vec![("content-type".to_string(), ct.to_string())];
        let key = |body| identify("POST", "https://a.test/v1/files", &headers, body, &rules);
        let mut d = MultipartDigest::new(Some(ct), &rules).unwrap();
        d.feed(bodies[0].as_bytes());
        assert_eq!(
            key(KeyBody::Whole(bodies[0].as_bytes())),
            key(KeyBody::Parts(d.finish().unwrap()))
        );
    }

    #[test]
    fn a_multipart_view_shows_each_part_by_its_field() {
        let body = b"--xyz\r\ncontent-disposition: form-data; name=\"a\"\r\n\r\none\r\n\
--xyz\r\ncontent-disposition: form-data; name=\"a\"\r\n\r\ntwo\r\n\
--xyz\r\ncontent-disposition: form-data; name=\"meta\"\r\ncontent-type: application/json\r\n\r\n{\"k\": [1]}\r\n\
--xyz\r\ncontent-disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\ncontent-type: application/octet-stream\r\n\r\n\xff\xfe\r\n\
--xyz\r\ncontent-type: text/plain\r\n\r\nno name\r\n--xyz--\r\n";
        let v = multipart_view(body).expect("a multipart body");
        assert_eq!(v["a"], "one");
        assert_eq!(v["a#2"], "two");
        assert_eq!(v["meta"]["content"]["k"][0], 1);
        assert_eq!(v["f"]["filename"], "x.bin");
        let hash = blake3::hash(b"\xff\xfe").to_hex();
        assert_eq!(
            v["f"]["content"],
            format!("2 bytes, blake3 {}", &hash[..12])
        );
        assert_eq!(v["part 5"]["content"], "no name");
        // Not multipart: JSON, text, a first line that is no delimiter, no parts' end.
        assert!(multipart_view(br#"{"a": 1}"#).is_none());
        assert!(multipart_view(b"--\r\nx").is_none());
        assert!(multipart_view(b"plain text\r\nmore").is_none());
        assert!(
            multipart_view(b"--xyz\r\ncontent-disposition: form-data; name=\"a\"\r\n\r\none")
                .is_none()
        );
    }
}
