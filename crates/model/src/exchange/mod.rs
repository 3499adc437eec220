//! The event model: one request/response exchange as tapedeck stores it.
//!
//! Everything downstream (replay, traces, analysis, tapes) reads these types, so they
//! are plain data with stable serde names. Bodies are never inline here: a [`BodyRef`]
//! names a body in the store by its blake3, which is what makes bodies content-addressed
//! and stored once.

pub mod canonical;
pub mod canonical_json;
pub mod encoding;
pub mod eventstream;
pub mod inject;

pub mod jsondiff;
pub mod kind;
pub mod limit;
pub mod redact;
pub mod ws;

use serde::{Deserialize, Serialize};

/// What an exchange was, as far as replay ordering and traces are concerned.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Llm,
    Tool,
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Llm => "llm",
            Kind::Tool => "tool",
            Kind::Other => "other",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A body as stored: decoded bytes, addressed by the blake3 of those bytes.
#[derive(Serialize, Deserialize, Clone, Debug, Eq)]
pub struct BodyRef {
    /// Hex blake3 of the stored (decoded, redacted) bytes.
    pub b3: String,
    pub len: u64,
    /// The `Content-Encoding` the bytes had on the wire; the stored bytes are decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The step of the event read from a store that may hold this body inside its own
    /// value (a store keeps an exchange's small bodies with its event): where a reader
    /// looks first. Not part of the event (never written, not compared).
    #[serde(skip)]
    pub at: Option<u64>,
}

/// Two references are equal when they name the same bytes the same way, wherever a
/// store keeps them.
impl PartialEq for BodyRef {
    fn eq(&self, other: &BodyRef) -> bool {
        self.b3 == other.b3 && self.len == other.len && self.encoding == other.encoding
    }
}

impl BodyRef {
    pub fn empty() -> BodyRef {
        BodyRef::of(blake3::hash(b"").to_hex().to_string(), 0)
    }

    /// Bytes of length `len` named by their hex blake3 `b3`, as they were on the wire.
    pub fn of(b3: String, len: u64) -> BodyRef {
        BodyRef {
            b3,
            len,
            encoding: None,
            at: None,
        }
    }
}

/// One header, kept in wire order. Names are lower-case. A value that is not UTF-8 is
/// kept as [`HEADER_BYTES`] and its bytes in base64 (see [`header_text`]).
pub type Header = (String, String);

/// How a header value that is not UTF-8 (raw Latin-1 in a `content-disposition`, say) is
/// stored: this prefix, then its bytes in base64, so that replay sends those bytes and
/// not the replacement characters a lossy conversion would leave. HTTP forbids NUL in a
/// header value, so no value from the wire reads as one of these.
pub const HEADER_BYTES: &str = "\0base64:";

/// A header value as stored: its text when it is UTF-8, else its bytes marked.
pub fn header_text(bytes: &[u8]) -> String {
    use base64::Engine;
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            format!("{HEADER_BYTES}{b64}")
        }
    }
}

/// The value to send for a stored header value, or why it cannot be sent.
pub fn header_value(stored: &str) -> Result<http::HeaderValue, String> {
    let bytes = header_bytes(stored).ok_or("its value is kept as bytes whose base64 is not")?;
    http::HeaderValue::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// A stored header value as a person reads it: a value kept as bytes is shown as those
/// bytes read as Latin-1 (what HTTP's `obs-text` in a header was), never as its marked
/// base64; any other value as stored.
pub fn header_shown(stored: &str) -> std::borrow::Cow<'_, str> {
    match header_bytes(stored) {
        // Owned only when the value was marked and its base64 decoded.
        Some(std::borrow::Cow::Owned(bytes)) => bytes.iter().map(|&b| char::from(b)).collect(),
        _ => std::borrow::Cow::Borrowed(stored),
    }
}

/// The bytes a stored header value stands for: a marked value's bytes, else its text's.
/// `None` when it is marked and its base64 is not.
pub fn header_bytes(stored: &str) -> Option<std::borrow::Cow<'_, [u8]>> {
    use base64::Engine;
    match stored.strip_prefix(HEADER_BYTES) {
        None => Some(std::borrow::Cow::Borrowed(stored.as_bytes())),
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .map(std::borrow::Cow::Owned),
    }
}

/// The request of an event. `B` is how bodies are held: a [`BodyRef`] in the store, an
/// inline body in a tape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord<B = BodyRef> {
    pub method: String,
    /// Absolute URL with secret query parameters redacted.
    pub url: String,
    pub version: String,
    pub headers: Vec<Header>,
    pub body: B,
}

/// The longest any one exchange may take, and so any offset or duration inside it
/// (time to first byte, a chunk's time, end − start): far beyond a real exchange, and a
/// bound on how long replay waits at the recorded pace whatever a tape says.
pub const MAX_EXCHANGE_TIME: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// One piece of a streamed response body, as it reached the proxy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Chunk {
    /// Milliseconds since the request started.
    pub at_ms: f64,
    /// Length of this chunk in the stored (decoded) body.
    pub len: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ResponseRecord<B = BodyRef> {
    pub status: u16,
    pub version: String,
    pub headers: Vec<Header>,
    pub body: B,
    /// Present for streamed responses (SSE, NDJSON, chunked without a length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<Chunk>>,
    /// False when the body did not arrive whole (upstream reset, client hung up).
    pub complete: bool,
    /// Fields sent after the body (a chunked body's trailer, HTTP/2 trailers: gRPC's
    /// `grpc-status`), redacted as headers are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trailers: Vec<Header>,
    /// Set when the body's `Content-Encoding` broke partway (an upstream's bug: a gzip
    /// body cut short, or followed by bytes that are not gzip): the stored body is what
    /// decoded before it broke, and replay breaks the encoding the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broke: Option<CodingBroke>,
    /// A gzip body sent as several members (concatenated gzip streams): how many decoded
    /// bytes each member but the last had ended at. Replay ends its members at the same
    /// places, so a client that reads only the first member, or fails on the next, does
    /// what it did live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<u64>,
}

/// How a response body's coding broke on the wire (see [`ResponseRecord::broke`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CodingBroke {
    /// The coded stream had ended whole before the bytes that broke it: replay encodes
    /// the body whole and sends `tail` after it. Otherwise the stream is left unfinished
    /// where it broke (a body cut short, corrupt data), then `tail`.
    pub ended: bool,
    /// The data ended whole but its checksum trailer (gzip's CRC-32 and length) did not
    /// match or was cut short: replay ends the data and sends `tail`, which starts with
    /// the trailer's bytes as they came, in place of the right trailer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trailer: bool,
    /// The first wire bytes that did not decode (at most [`BROKE_TAIL_MAX`], scrubbed of
    /// the exchange's secrets), in base64; empty for a body cut short.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tail: String,
}

/// The most bytes of a broken coding's tail kept (see [`CodingBroke::tail`]): a client's
/// decoder fails on the first of them.
pub const BROKE_TAIL_MAX: usize = 4096;

impl CodingBroke {
    pub fn new(ended: bool, tail: &[u8]) -> CodingBroke {
        use base64::Engine;
        let tail = &tail[..tail.len().min(BROKE_TAIL_MAX)];
        CodingBroke {
            ended,
            trailer: false,
            tail: base64::engine::general_purpose::STANDARD.encode(tail),
        }
    }

    /// The tail's bytes (none when a hand-edited tape's base64 is not).
    pub fn tail_bytes(&self) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(self.tail.as_bytes())
            .unwrap_or_default()
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Timing {
    /// Nanoseconds since the session started (monotonic clock).
    pub start_ns: u64,
    pub end_ns: u64,
    /// Time from request start to the response head, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ns: Option<u64>,
    /// Wall clock, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
}

/// Why an exchange has no (complete) response.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Refused,
    Dns,
    Timeout,
    Tls,
    Reset,
    Protocol,
    ClientClosed,
    /// A body went over `--max-body` (decoded); tapedeck answered 413 or cut the stream.
    TooLarge,
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Dns => "dns",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::ClientClosed => "client_closed",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Other => "other",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ExchangeError {
    pub kind: ErrorKind,
    pub message: String,
}

/// A header the agent may set to name itself in multi-agent sessions (never forwarded).
pub const AGENT_HEADER: &str = "x-tapedeck-agent";

/// Nanoseconds since the Unix epoch, now (0 if the clock is before it).
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Called with each stored event, which it then owns (live OTLP export and the viewer
/// hook in here).
pub type EventSink = std::sync::Arc<dyn Fn(&str, Event) + Send + Sync>;

/// One request/response exchange.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(bound(deserialize = "B: Deserialize<'de>"))]
pub struct Event<B = BodyRef> {
    pub step: u64,
    pub kind: Kind,
    /// Hex blake3 of the canonical request under the rules in force at record time.
    pub key: String,
    /// Fingerprint of the matching rules `key` was computed under; replay recomputes
    /// the key from the stored request when its own rules differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub request: RequestRecord<B>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseRecord<B>>,
    pub timing: Timing,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ExchangeError>,
    /// The messages after a WebSocket upgrade (see [`ws`]); absent for plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<ws::WsRecord<B>>,
    /// Set when an `--inject` rule changed the exchange (see [`inject`]): its response or
    /// error is the rule's doing, not the upstream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected: Option<inject::Injected>,
}

impl<B> Event<B> {
    /// The same event with its bodies held another way (store reference ↔ inline).
    pub fn map_bodies<C, E>(self, mut f: impl FnMut(B) -> Result<C, E>) -> Result<Event<C>, E> {
        let request = RequestRecord {
            method: self.request.method,
            url: self.request.url,
            version: self.request.version,
            headers: self.request.headers,
            body: f(self.request.body)?,
        };
        let response = match self.response {
            Some(r) => Some(ResponseRecord {
                status: r.status,
                version: r.version,
                headers: r.headers,
                body: f(r.body)?,
                chunks: r.chunks,
                complete: r.complete,
                trailers: r.trailers,
                broke: r.broke,
                members: r.members,
            }),
            None => None,
        };
        let ws = match self.ws {
            Some(w) => Some(w.map_bodies(&mut f)?),
            None => None,
        };
        Ok(Event {
            step: self.step,
            kind: self.kind,
            key: self.key,
            rules: self.rules,
            agent: self.agent,
            request,
            response,
            timing: self.timing,
            error: self.error,
            ws,
            injected: self.injected,
        })
    }
}

impl Event {
    /// The header value of the request (first match, case-insensitive name).
    pub fn request_header(&self, name: &str) -> Option<&str> {
        header(&self.request.headers, name)
    }

    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response
            .as_ref()
            .and_then(|r| header(&r.headers, name))
    }

    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|r| r.status)
    }
}

pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A session's summary, as `tapedeck sessions` lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub name: String,
    pub events: u64,
    pub first_unix_ns: u64,
    pub last_unix_ns: u64,
    /// Request and response body bytes of its events (decoded).
    pub bytes: u64,
    /// The session it was made from (a what-if fork, a rerun), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<crate::session::Lineage>,
}

pub fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Whether a response with these headers is a stream whose chunk timing matters.
pub fn is_streaming(headers: &http::HeaderMap) -> bool {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    ct.starts_with("text/event-stream")
        || ct.starts_with("application/x-ndjson")
        || ct.starts_with("application/vnd.amazon.eventstream")
        || !headers.contains_key(http::header::CONTENT_LENGTH)
}

/// The media type of a `Content-Type` value, lower-cased, without its parameters.
pub fn media_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a content type is JSON (`application/json`, `application/*+json`).
pub fn is_json_content_type(ct: &str) -> bool {
    let ct = media_type(ct);
    ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
}
