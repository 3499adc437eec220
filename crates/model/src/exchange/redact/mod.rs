//! Redaction: the one layer every copy of an exchange passes through on its way to disk
//! (store, tapes, error messages, logs). Secrets become `[REDACTED]` before anything is
//! hashed or stored, so a key computed at record time and one computed for a live
//! request at replay time agree.
//!
//! Named things are redacted where they stand: headers, query parameters (names
//! compared after percent-decoding), URL userinfo, and fields in JSON, NDJSON, SSE,
//! form and multipart bodies. Their values are collected ([`Secrets`]) and scrubbed
//! from everything else stored about the exchange: other headers, response headers,
//! error messages and bodies, whole or streamed ([`BodyScrubber`]). The upstream always
//! receives the real values; only the copies kept for the store pass through here.

mod eventstream;
mod form;
mod html;
mod json;
mod json_fields;
mod multipart;
mod secrets;
mod shapes;
mod sse;
mod stdin;
mod stream;
mod tables;
mod url_params;
mod userinfo;
mod xml;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

use super::Header;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::credential::{self, credential_name, NameKind};
use crate::rules::{Rules, REDACTED};
pub use secrets::{Remembered, Secrets, MAX_SCRUB_LEN, MIN_SCRUB_LEN};
pub use sse::MessageSplit;
pub use stream::{streams_json_array, BodyScrubber};

/// Whether `prefix` names a key format read by its shape (`[redact] keep_shapes`).
pub fn is_key_shape(prefix: &str) -> bool {
    shapes::prefixes().any(|p| p == prefix)
}

/// Every key format read by its shape, by its prefix.
pub fn key_shapes() -> impl Iterator<Item = &'static str> {
    shapes::prefixes()
}

/// Test support: `body` scrubbed whole by a scrubber `make` gives, and the values it
/// collected, after checking that fed cut at each of `cuts` it stores the same bytes.
#[cfg(test)]
pub(crate) fn same_at_every_cut(
    body: &[u8],
    cuts: &[usize],
    make: impl Fn() -> BodyScrubber,
) -> (Vec<u8>, Collected) {
    let whole = make().run_whole(body);
    for &cut in cuts {
        let mut sc = make();
        let mut got = Vec::new();
        for piece in body.chunks(cut) {
            got.extend_from_slice(sc.feed(piece));
        }
        got.extend(sc.finish().0);
        assert!(
            got == whole.0,
            "cut {cut}:\n{}\nwhole:\n{}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&whole.0)
        );
    }
    whole
}

/// Headers whose values are URLs: their secret query parameters are redacted too.
const URL_HEADERS: &[&str] = &["location", "content-location", "referer"];

/// Names of secret fields: those listed, compared ASCII-case-insensitively, and those
/// whose name says they hold a credential ([`credential_name`]).
#[derive(Clone, Debug)]
pub struct FieldNames {
    names: Arc<[Vec<u8>]>,
    /// Names whose string or number values are secrets, as a credential's name is
    /// (an answer's fields by route: `answer_secrets`).
    scalar: Arc<[Vec<u8>]>,
    longest: usize,
    /// Names [`credential_name`] would take that the user keeps (`[redact] keep`).
    keep: Arc<[String]>,
    /// Key formats the user keeps (`[redact] keep_shapes`), as `shapes::mask` makes them.
    kept_shapes: u64,
    /// Query parameters redacted whatever their value (`--redact-query` and the
    /// defaults), for URLs written in a body.
    query: Arc<[String]>,
    /// The last bytes of `names` and `scalar`, either case.
    last_bytes: ByteSet,
}

/// A set of bytes.
#[derive(Clone, Copy, Debug, Default)]
struct ByteSet([u64; 4]);

impl ByteSet {
    /// The last bytes of `names`, either case.
    fn last_of<'a>(names: impl IntoIterator<Item = &'a Vec<u8>>) -> ByteSet {
        let mut set = ByteSet::default();
        for b in names.into_iter().filter_map(|n| n.last()) {
            for b in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                set.0[usize::from(b >> 6)] |= 1 << (b & 63);
            }
        }
        set
    }

    fn has(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
}

impl FieldNames {
    /// These names, and every name that says it is a credential's.
    pub fn new(names: &[String]) -> FieldNames {
        let names: Vec<Vec<u8>> = names
            .iter()
            .map(|n| n.trim().to_ascii_lowercase().into_bytes())
            .filter(|n| !n.is_empty())
            .collect();
        FieldNames {
            longest: names
                .iter()
                .map(Vec::len)
                .max()
                .unwrap_or(0)
                .max(credential::MAX_NAME),
            last_bytes: ByteSet::last_of(&names),
            names: names.into(),
            scalar: Arc::from([]),
            keep: Arc::from([]),
            kept_shapes: 0,
            query: Arc::from([]),
        }
    }

    /// The fields `rules` redact. Each thread keeps the last set it built, for the rules
    /// it built them from: a whole body's last reading asks for them once per body, and
    /// building them is a dozen allocations.
    pub fn of(rules: &Rules) -> FieldNames {
        type Built = (
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
            FieldNames,
        );
        thread_local! {
            static LAST: std::cell::RefCell<Option<Built>> = const { std::cell::RefCell::new(None) };
        }
        LAST.with_borrow_mut(|last| {
            if let Some((fields, keep, shapes, query, built)) = last.as_ref() {
                if *fields == rules.redact_json_fields
                    && *keep == rules.keep_names
                    && *shapes == rules.keep_shapes
                    && *query == rules.redact_query
                {
                    return built.clone();
                }
            }
            let built = FieldNames {
                keep: rules.keep_names.clone().into(),
                kept_shapes: shapes::mask(&rules.keep_shapes),
                query: rules.redact_query.clone().into(),
                ..FieldNames::new(&rules.redact_json_fields)
            };
            *last = Some((
                rules.redact_json_fields.clone(),
                rules.keep_names.clone(),
                rules.keep_shapes.clone(),
                rules.redact_query.clone(),
                built.clone(),
            ));
            built
        })
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The key formats the user keeps (see `shapes::mask`).
    pub(super) fn kept_shapes(&self) -> u64 {
        self.kept_shapes
    }

    /// The longest name that can be a secret field's: a scanner reading a key gives up on
    /// it past this.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// Whether a field of this name holds a secret.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.listed(name)
            || self.scalar.iter().any(|n| n.eq_ignore_ascii_case(name))
            || credential_name(NameKind::Field, name, &self.keep)
    }

    /// Whether a parameter of a URL written in a body holds a secret, as the same
    /// parameter of a request's URL would (no host's own rule: the scan does not read the
    /// URL's host): `Some(by_name)` when it does, `by_name` when only the name's reading
    /// says so (the value is then hunted only when it looks like a key).
    pub fn url_param(&self, name: &str, value: &str) -> Option<bool> {
        if crate::rules::lists(&self.query, name) {
            return Some(false);
        }
        if crate::rules::query_credential("", name, value, &self.keep) {
            return Some(true);
        }
        token_param(name, value, &self.keep).then_some(false)
    }

    /// Whether a parameter of this name in a URL written in a body may hold a secret,
    /// whatever its value: [`Self::url_param`] says no for every value otherwise. A
    /// scan asks before it holds a value back.
    pub fn url_param_name(&self, name: &str) -> bool {
        crate::rules::lists(&self.query, name)
            || credential_name(NameKind::Query, name.as_bytes(), &self.keep)
            || credential::token_field_name(name.as_bytes(), &self.keep)
    }

    /// Whether an assignment of this name may hold a secret, whatever its value
    /// ([`Self::assignment`] says no for every value otherwise).
    pub fn assignment_name(&self, name: &[u8]) -> bool {
        // Most names end unlike any secret's (a prompt's `Note:`, `Paris is`): told by
        // their last bytes before they are compared or folded.
        let Some(&last) = name.last() else {
            return false;
        };
        (credential::ends_like_credential(name) || self.last_bytes.has(last))
            && (self.contains(name) || self.maybe(name))
    }

    /// Whether an assignment at a line's start (`DB_PASSWORD=…` in a `.env` file a tool
    /// printed) holds a secret, as a JSON field of that name would: `Some(by_name)` as
    /// [`Self::url_param`] says it.
    pub fn assignment(&self, name: &str, value: &str) -> Option<bool> {
        let name = name.as_bytes();
        if self.contains(name) {
            return Some(!self.listed(name));
        }
        (self.maybe(name) && credential::key_like(value.as_bytes())).then_some(false)
    }

    /// Whether a field of this name (not one [`Self::contains`]) holds a secret when
    /// its string value looks like a key ([`credential::token_field_name`]).
    pub fn maybe(&self, name: &[u8]) -> bool {
        credential::token_field_name(name, &self.keep)
    }

    /// Whether a form body's field of this name holds a secret: [`Self::contains`], or
    /// a name that only a form gives a credential ([`credential::form_credential_name`]).
    pub fn contains_in_form(&self, name: &[u8]) -> bool {
        self.contains(name) || credential::form_credential_name(name, &self.keep)
    }

    /// Whether a field of this name holds a secret in JSON written inside a string (a
    /// model's tool-call arguments): a listed name, or one that says it holds a token,
    /// a secret, a password or a private key ([`credential::strong_field_name`]).
    pub fn contains_in_arguments(&self, name: &[u8]) -> bool {
        self.listed(name) || credential::strong_field_name(name, &self.keep)
    }

    /// Whether the name is one of those listed: its value is redacted whatever it is
    /// (an object or array too), where a name read as a credential's has its value
    /// redacted when it is a string or a number (a `"db_password": {"type": "string"}` in
    /// a tool's schema is not a password).
    pub fn listed(&self, name: &[u8]) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// These names and `more`.
    pub fn adding(&self, more: &[&str]) -> FieldNames {
        let mut names: Vec<String> = self
            .names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        names.extend(more.iter().map(|m| m.to_string()));
        let with = FieldNames::new(&names);
        FieldNames {
            keep: self.keep.clone(),
            last_bytes: ByteSet::last_of(with.names.iter().chain(self.scalar.iter())),
            scalar: self.scalar.clone(),
            kept_shapes: self.kept_shapes,
            query: self.query.clone(),
            ..with
        }
    }

    /// These names and `more`, whose string and number values are secrets.
    pub fn adding_scalar(&self, more: &[&str]) -> FieldNames {
        let scalar: Vec<Vec<u8>> = self
            .scalar
            .iter()
            .cloned()
            .chain(more.iter().map(|m| m.to_ascii_lowercase().into_bytes()))
            .collect();
        FieldNames {
            longest: scalar.iter().map(Vec::len).fold(self.longest, usize::max),
            last_bytes: ByteSet::last_of(self.names.iter().chain(&scalar)),
            scalar: scalar.into(),
            ..self.clone()
        }
    }
}

/// Values of the fields a body's redaction replaced, to scrub from the rest of the
/// exchange (an upstream echoing a password it was sent).
#[derive(Default, Debug)]
pub struct Collected {
    values: Vec<String>,
    /// Values found inside a secret (the host and user name of a database secret's JSON
    /// beside its password): scrubbed from the exchange, not remembered by the session
    /// ([`Remembered`]), since the agent may know them from elsewhere.
    leaves: Vec<String>,
    /// The field being read is secret by its name's reading alone: its value is kept
    /// only when it looks like a key ([`credential::looks_like_credential`]).
    by_name: bool,
    /// Values pushed now are leaves.
    in_leaves: bool,
}

impl Collected {
    /// Says whether the values pushed from now on are those of a field secret by its
    /// name's reading alone (not listed).
    pub fn by_name(&mut self, yes: bool) {
        self.by_name = yes;
    }

    pub fn push(&mut self, raw: &[u8]) {
        let Ok(s) = std::str::from_utf8(raw) else {
            return;
        };
        let s = s.trim();
        if self.by_name && !credential::looks_like_credential(s) {
            return;
        }
        if (MIN_SCRUB_LEN..=MAX_SCRUB_LEN).contains(&s.len())
            && !secrets::in_marker(s)
            && self.values.len() + self.leaves.len() < secrets::MAX_SECRETS
            && !self.values.iter().chain(&self.leaves).any(|v| v == s)
        {
            match self.in_leaves {
                true => self.leaves.push(s.to_string()),
                false => self.values.push(s.to_string()),
            }
        }
    }

    /// A JSON string's content, as written (escaped) and as meant (unescaped).
    pub fn push_json_string(&mut self, raw: &[u8]) {
        self.push(raw);
        if let Some(s) = json_string_text(raw) {
            self.push(s.as_bytes());
        }
    }

    /// Values inside a secret, each kept only when it looks like a key.
    pub fn push_leaves(&mut self, leaves: json_fields::Leaves) {
        self.push_parts(true, leaves.named, leaves.other);
    }

    pub fn append(&mut self, other: Collected) {
        self.push_parts(false, other.values, other.leaves);
    }

    /// Pushes `values`, then `leaves` as leaves, read `by_name` (see [`Collected::push`]).
    fn push_parts(&mut self, by_name: bool, values: Vec<String>, leaves: Vec<String>) {
        let was = std::mem::replace(&mut self.by_name, by_name);
        for v in values {
            self.push(v.as_bytes());
        }
        self.in_leaves = true;
        for v in leaves {
            self.push(v.as_bytes());
        }
        self.in_leaves = false;
        self.by_name = was;
    }

    /// Every value, leaves last.
    pub fn into_values(mut self) -> Vec<String> {
        self.values.append(&mut self.leaves);
        self.values
    }

    /// The values, and the leaves apart.
    pub fn into_parts(self) -> (Vec<String>, Vec<String>) {
        (self.values, self.leaves)
    }
}

/// What a JSON string's content as written (`raw`, escapes and all, without its quotes)
/// stands for; `None` when it is no string's content.
/// Whether a JSON string's content, as written, looks like a key once unescaped
/// ([`credential::key_like`]): .NET writes a base64 token's `+` as `\u002B`.
fn json_key_like(raw: &[u8]) -> bool {
    if raw.contains(&b'\\') {
        json_string_text(raw).is_some_and(|t| credential::key_like(t.as_bytes()))
    } else {
        credential::key_like(raw)
    }
}

fn json_string_text(raw: &[u8]) -> Option<String> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

/// Copies headers for storage: lower-case names, secret values replaced, URLs redacted,
/// a value that is not UTF-8 kept as its bytes ([`crate::exchange::header_text`]). Call
/// [`scrub_headers`] once every secret of the exchange is known.
/// `kind` says whether they are a request's ([`NameKind::Header`]) or an answer's
/// ([`NameKind::AnswerHeader`]).
pub fn headers(
    map: &http::HeaderMap,
    kind: NameKind,
    rules: &Rules,
    secrets: &mut Secrets,
) -> Vec<Header> {
    map.iter()
        .map(|(name, value)| {
            let name = name.as_str().to_ascii_lowercase();
            match redacted_value(&name, value.as_bytes(), kind, rules, secrets) {
                Some(redacted) => (name, redacted),
                None => (name, crate::exchange::header_text(value.as_bytes())),
            }
        })
        .collect()
}

/// A header's stored value where it is not the value sent: a secret header's
/// [`REDACTED`] (its value added to `secrets`), a URL redacted, credential
/// subprotocols redacted. `None`: stored as sent. `name` is lower case.
fn redacted_value(
    name: &str,
    raw: &[u8],
    kind: NameKind,
    rules: &Rules,
    secrets: &mut Secrets,
) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    if rules.redacts_header(kind, name, &text) {
        if name == "cookie" {
            secrets.add_cookies(&text);
        } else if name == "set-cookie" {
            secrets.add_set_cookie(&text);
        } else if rules.lists_header(name) || credential::looks_like_credential(&text) {
            secrets.add(&text);
        }
        Some(REDACTED.to_string())
    } else if URL_HEADERS.contains(&name) {
        Some(url(&text, rules, secrets))
    } else if name == "sec-websocket-protocol" {
        Some(subprotocols(&text, secrets))
    } else {
        // A header no name marks may still carry a key (Honeycomb's `X-Honeycomb-Team`,
        // a gateway's `X-Upstream-Auth`): found by its shape, as in bodies and URLs,
        // JWTs in requests only (an answer's may be a cursor the agent sends back).
        let mut kept = shapes::mask(&rules.keep_shapes);
        if kind == NameKind::AnswerHeader {
            kept |= shapes::JWT_MASK;
        }
        // Read as bytes: a value that is not UTF-8 keeps its other bytes.
        let out = bytes_shapes(raw, &text, kept, secrets)?;
        Some(crate::exchange::header_text(&out))
    }
}

/// Redacts headers already in their stored form (a tape written or edited by hand) as
/// [`headers`] redacts those sent; a header already redacted stays as it is. Whether
/// any value changed.
pub fn stored_headers(
    headers: &mut [Header],
    kind: NameKind,
    rules: &Rules,
    secrets: &mut Secrets,
) -> bool {
    let mut changed = false;
    for (name, value) in headers.iter_mut() {
        if value == REDACTED {
            continue;
        }
        let name = name.to_ascii_lowercase();
        let bytes = crate::exchange::header_bytes(value)
            .map(Cow::into_owned)
            .unwrap_or_default();
        if let Some(redacted) = redacted_value(&name, &bytes, kind, rules, secrets) {
            if redacted != *value {
                *value = redacted;
                changed = true;
            }
        }
    }
    changed
}

/// WebSocket subprotocols that carry a credential: browsers cannot set headers on a
/// WebSocket, so the OpenAI Realtime API takes the key as a subprotocol.
const CREDENTIAL_SUBPROTOCOLS: &[&str] = &["openai-insecure-api-key."];

/// Subprotocols that say the next one in the list is a credential: Deepgram's browser
/// clients send `Sec-WebSocket-Protocol: token, KEY`.
const CREDENTIAL_MARKER_SUBPROTOCOLS: &[&str] = &["token", "bearer"];

/// A `Sec-WebSocket-Protocol` list with the credentials in it redacted.
fn subprotocols(text: &str, secrets: &mut Secrets) -> String {
    let mut after_marker = false;
    text.split(',')
        .map(|p| {
            let p = p.trim();
            let follows_marker = std::mem::replace(
                &mut after_marker,
                CREDENTIAL_MARKER_SUBPROTOCOLS
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(p)),
            );
            if follows_marker && !p.is_empty() && p != REDACTED {
                secrets.add(p);
                return REDACTED.to_string();
            }
            match CREDENTIAL_SUBPROTOCOLS
                .iter()
                .find_map(|prefix| p.strip_prefix(prefix).map(|v| (prefix, v)))
            {
                Some((prefix, value)) => {
                    secrets.add(value);
                    format!("{prefix}{REDACTED}")
                }
                None => p.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Scrubs every secret value from stored header values (an upstream echoing the
/// `Authorization` it was sent in a header of its own). Whether any value changed.
pub fn scrub_headers(headers: &mut [Header], secrets: &Secrets) -> bool {
    let mut changed = false;
    for (_, value) in headers.iter_mut() {
        if value.starts_with(crate::exchange::HEADER_BYTES) {
            // Bytes that are not UTF-8 are scrubbed as bytes, then marked again.
            let scrubbed = crate::exchange::header_bytes(value).and_then(|b| secrets.scrub(&b));
            if let Some(b) = scrubbed {
                *value = crate::exchange::header_text(&b);
                changed = true;
            }
        } else if let Cow::Owned(s) = secrets.scrub_str(value) {
            *value = s;
            changed = true;
        }
    }
    changed
}

/// Redacts a URL: userinfo (`http://user:pass@host/`) and secret query parameters
/// (`?key=...` as Gemini uses, `?api%5Fkey=...`), in the query and in a fragment.
pub fn url(url: &str, rules: &Rules, secrets: &mut Secrets) -> String {
    // A secret known before the URL is read (one the session remembers: a token an
    // earlier answer handed out, sent back as `?t=…` or in a path) goes too, and one
    // found here by its shape wherever else it stands.
    settled_url(url_once(url, rules, secrets), rules, secrets)
}

/// One reading of a URL: its userinfo, the path segments and query parameters the rules
/// name, and keys found by their shape, replaced.
fn url_once(url: &str, rules: &Rules, secrets: &mut Secrets) -> String {
    let url = userinfo(url, secrets);
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url.as_ref(), None),
    };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    // Read once: the path rules and the query parameters' host rules both need it.
    let needs_host = !rules.redact_paths.is_empty() || query.is_some() || fragment.is_some();
    let target = needs_host.then(|| host_of(base)).flatten();
    let host = target.as_ref().map_or("", |(h, _)| h.as_str());
    let base = path_secrets(base, target.as_ref(), rules, secrets);
    let query = query.map(|q| params(q, host, rules, secrets));
    let fragment = fragment.map(|f| params(f, host, rules, secrets));
    let out = if matches!(base, Cow::Borrowed(_))
        && !matches!(query, Some(Cow::Owned(_)))
        && !matches!(fragment, Some(Cow::Owned(_)))
    {
        url.into_owned()
    } else {
        let mut out = base.into_owned();
        if let Some(q) = query {
            out.push('?');
            out.push_str(&q);
        }
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(&f);
        }
        out
    };
    url_shapes(out, rules, secrets)
}

/// Scrubs a URL redacted by [`url`] of the secrets the rest of its request revealed
/// (the `Authorization` header's key, a body's secret field), which are read after it:
/// a key that the request also carries in its path (`/v1/keys/<key>/usage`) is not
/// stored in clear. The URL as it was, when it changed. Record and replay call it at
/// the same points (after the headers, and after the body), so the keys agree.
pub fn scrub_url(url: &mut String, rules: &Rules, secrets: &mut Secrets) -> Option<String> {
    if secrets.is_empty() {
        return None;
    }
    let Cow::Owned(scrubbed) = secrets.scrub_str(url) else {
        return None;
    };
    let settled = settled_url(url_once(&scrubbed, rules, secrets), rules, secrets);
    Some(std::mem::replace(url, settled))
}

/// `out` (read by [`url_once`]) with every secret replaced and read whole again, until
/// no secret is left in it, so that a URL redacted once reads the same redacted again
/// (a replay keys a stored request by redacting it again). A replacement can change
/// what the URL says, and the `canonical_key` fuzzer found both: a key that followed a
/// secret with no boundary between (`ghp_…sk-proj-…`) is uncovered, and a secret that
/// held the `/` which ended the host takes it away, so that an `@` further on now ends
/// a userinfo.
fn settled_url(mut out: String, rules: &Rules, secrets: &mut Secrets) -> String {
    for _ in 0..8 {
        let Cow::Owned(scrubbed) = secrets.scrub_str(&out) else {
            break;
        };
        out = url_once(&scrubbed, rules, secrets);
    }
    out
}

/// A URL with every key found by its shape replaced (`?q=openai 401 sk-proj-…`, a key
/// in a path): JWTs are left to names, as in answers (a cursor or a signed link the
/// agent follows).
fn url_shapes(url: String, rules: &Rules, secrets: &mut Secrets) -> String {
    let kept = shapes::mask(&rules.keep_shapes) | shapes::JWT_MASK;
    match text_shapes(&url, kept, secrets) {
        Some(out) => out,
        None => url,
    }
}

/// `text` with every key found by its shape replaced (the formats in `kept` excepted),
/// the keys added to `secrets`; `None` when there was none.
fn text_shapes(text: &str, kept: u64, secrets: &mut Secrets) -> Option<String> {
    let out = bytes_shapes(text.as_bytes(), text, kept, secrets)?;
    String::from_utf8(out).ok()
}

/// [`text_shapes`] over bytes (`text`: the same, read as UTF-8 with losses, for the
/// prefilter).
fn bytes_shapes(raw: &[u8], text: &str, kept: u64, secrets: &mut Secrets) -> Option<Vec<u8>> {
    if !shapes::may_hold_key(text) {
        return None;
    }
    let mut s = shapes::ShapeScrub::new(kept);
    let mut out = Vec::with_capacity(raw.len());
    s.feed(raw, &mut out);
    s.finish(&mut out);
    secrets.extend_found(s.found);
    (out != raw).then_some(out)
}

/// Cloud instance metadata services (AWS EC2, ECS and EKS Pod Identity, Alibaba Cloud;
/// GCP's and Azure's answer at 169.254.169.254 too, with `access_token`): an SDK on such
/// a machine asks them for its credentials through the proxy like any other host.
const CLOUD_METADATA_HOSTS: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];

/// Fields of a metadata service's answers that are credentials beyond the rules' own
/// (names in any case): EC2's and ECS's `Token`, Alibaba's `SecurityToken` and
/// `AccessKeySecret`. Not redacted elsewhere: `token` is also a model's logprobs field.
pub const CLOUD_METADATA_FIELDS: &[&str] = &["token", "securitytoken", "accesskeysecret"];

/// What the answer to a request to `url` is, when `url` is a cloud metadata service's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataAnswer {
    /// Not a metadata service.
    No,
    /// Credentials may be in its JSON fields ([`CLOUD_METADATA_FIELDS`]).
    Fields,
    /// The whole body is a session token (IMDSv2's `PUT /latest/api/token`).
    Secret,
}

/// Names that resolve to a metadata service on its cloud (EC2's `instance-data`, GCP's).
const CLOUD_METADATA_NAMES: &[&str] = &[
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.google.internal",
    "metadata",
];

/// An IPv4 address as the system's resolver reads a host (`inet_aton`): one to four
/// parts, each decimal, `0x` hex or `0` octal, the last filling the bytes left
/// (`2852039166`, `0xa9fea9fe`, `169.254.43518` are all 169.254.169.254).
fn inet_aton(host: &str) -> Option<Ipv4Addr> {
    let mut nums = [0u64; 4];
    let mut count = 0;
    for p in host.split('.') {
        let n = if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u64::from_str_radix(hex, 16).ok()?
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else {
            p.parse::<u64>().ok()?
        };
        *nums.get_mut(count)? = n;
        count += 1;
    }
    let (last, first) = nums[..count].split_last()?;
    let mut value: u64 = 0;
    for (i, &n) in first.iter().enumerate() {
        if n > 255 {
            return None;
        }
        value |= n << (24 - 8 * i);
    }
    let room = 32 - 8 * first.len();
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    Some(Ipv4Addr::from((value | last) as u32))
}

/// Whether a host (as [`host_of`] gives it) names a metadata service, however its
/// address is spelled: every form the resolver reads, an IPv4-mapped IPv6 address, or
/// one of the names that resolve to it.
fn is_cloud_metadata_host(host: &str) -> bool {
    if CLOUD_METADATA_NAMES.contains(&host) {
        return true;
    }
    let ip = match host.parse::<Ipv6Addr>() {
        Ok(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        Err(_) => inet_aton(host).map(IpAddr::V4),
    };
    ip.is_some_and(|ip| CLOUD_METADATA_HOSTS.contains(&ip))
}

/// Whether `url` asks a cloud metadata service, and what its answer holds.
pub fn cloud_metadata(url: &str) -> MetadataAnswer {
    match host_of(url) {
        Some((host, path_at)) => cloud_metadata_at(&host, path_of(url, path_at)),
        None => MetadataAnswer::No,
    }
}

/// The path of `url` from `path_at` (see [`host_of`]), without its query or fragment.
fn path_of(url: &str, path_at: usize) -> &str {
    url[path_at..].split(['?', '#']).next().unwrap_or("")
}

/// What the answer to `url` holds that its name does not say: a cloud metadata
/// service's credentials ([`cloud_metadata`]) and the fields a service mints a credential
/// in ([`MINTED`]); the URL's host read once.
pub(super) fn answer_secrets(url: &str) -> (MetadataAnswer, Vec<&'static str>) {
    let Some((host, path_at)) = host_of(url) else {
        return (MetadataAnswer::No, Vec::new());
    };
    let path = path_of(url, path_at);
    match cloud_metadata_at(&host, path) {
        MetadataAnswer::No => (MetadataAnswer::No, minted_at(&host, path)),
        metadata => (metadata, Vec::new()),
    }
}

fn cloud_metadata_at(host: &str, path: &str) -> MetadataAnswer {
    if !is_cloud_metadata_host(host) {
        return MetadataAnswer::No;
    }
    if path.trim_end_matches('/') == "/latest/api/token" {
        MetadataAnswer::Secret
    } else {
        MetadataAnswer::Fields
    }
}

/// An answer that mints a credential: the service's hosts and paths, and the JSON field
/// that holds it.
struct Minted {
    host: fn(&str) -> bool,
    path: fn(&str) -> bool,
    field: &'static str,
}

/// Answers that hand out a credential under a name that says nothing: GitHub's app
/// installation token (`{"token": "ghs_…"}`, an hour of the app's access) and Actions
/// runner tokens, OpenAI's
/// Realtime client secret (`{"value": "ek_…"}`), an Azure Key Vault secret
/// (`{"value": …}`) and a Gemini ephemeral token (`{"name": "auth_tokens/…"}`). (An SSM
/// parameter's `Value` is a secret by its `Type: SecureString`: see `json_fields`.)
const MINTED: &[Minted] = &[
    Minted {
        host: |_| true,
        path: |p| p.contains("/app/installations/") && p.ends_with("/access_tokens"),
        field: "token",
    },
    // A self-hosted Actions runner's registration and removal tokens (repository,
    // organization or enterprise).
    Minted {
        host: |_| true,
        path: |p| {
            p.ends_with("/actions/runners/registration-token")
                || p.ends_with("/actions/runners/remove-token")
        },
        field: "token",
    },
    Minted {
        host: |h| h == "api.openai.com",
        path: |p| p.starts_with("/v1/realtime/client_secrets"),
        field: "value",
    },
    Minted {
        host: |h| h.ends_with(".vault.azure.net"),
        path: |p| p.starts_with("/secrets/") || p.starts_with("/deletedsecrets/"),
        field: "value",
    },
    Minted {
        host: |h| h == "generativelanguage.googleapis.com",
        path: |p| p.contains("/auth_tokens"),
        field: "name",
    },
];

/// The fields of an answer from `host` at `path` that hold a credential its service
/// mints ([`MINTED`]): redacted when their value is a string or number (a listing's
/// `"value": [...]` is kept).
fn minted_at(host: &str, path: &str) -> Vec<&'static str> {
    MINTED
        .iter()
        .filter(|m| (m.host)(host) && (m.path)(path))
        .map(|m| m.field)
        .collect()
}

/// The host of `scheme://host/path` as path rules read it (lower case, without user,
/// port, brackets or a final dot), and where the path starts.
fn host_of(base: &str) -> Option<(String, usize)> {
    let start = base.find("://")? + 3;
    let path_at = base[start..].find('/').map_or(base.len(), |i| start + i);
    let host_port = base[start..path_at].rsplit('@').next().unwrap_or("");
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.split(':').next().unwrap_or(""),
    };
    // `host.` names the same host (a fully qualified name).
    let host = host.strip_suffix('.').unwrap_or(host);
    Some((host.to_ascii_lowercase(), path_at))
}

/// What path rules match for a URL: its host (see [`host_of`]) and path, without the
/// query or fragment.
pub fn path_target(url: &str) -> Option<String> {
    let base = url.split(['?', '#']).next().unwrap_or(url);
    let (host, path_at) = host_of(base)?;
    Some(format!("{host}{}", &base[path_at..]))
}

/// `scheme://host/path` with what the rules' path patterns pick out of `host/path`
/// replaced (`api.telegram.org/bot[REDACTED]/sendMessage`); each value is a secret
/// scrubbed from the rest of the exchange.
fn path_secrets<'a>(
    base: &'a str,
    target: Option<&(String, usize)>,
    rules: &Rules,
    secrets: &mut Secrets,
) -> Cow<'a, str> {
    if rules.redact_paths.is_empty() {
        return Cow::Borrowed(base);
    }
    let Some((host, path_at)) = target else {
        return Cow::Borrowed(base);
    };
    let (host, path_at) = (host.as_str(), *path_at);
    let target = format!("{host}{}", &base[path_at..]);
    // Spans of the path (offsets into `target`) to replace.
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    for rule in &rules.redact_paths {
        // Most URLs match no rule: telling so without captures is far cheaper.
        if !rule.regex.is_match(&target) {
            continue;
        }
        for caps in rule.regex.captures_iter(&target) {
            for m in caps.iter().skip(1).flatten() {
                if m.start() >= host.len() && !m.is_empty() && m.as_str() != REDACTED {
                    spans.push(m.range());
                }
            }
        }
    }
    if spans.is_empty() {
        return Cow::Borrowed(base);
    }
    spans.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut out = base[..path_at].to_string();
    let mut last = host.len();
    debug_assert!(target.len() - host.len() == base.len() - path_at);
    for span in spans {
        if span.start < last {
            continue; // inside a span already replaced
        }
        secrets.add_encoded(&target[span.clone()]);
        out.push_str(&target[last..span.start]);
        out.push_str(REDACTED);
        last = span.end;
    }
    out.push_str(&target[last..]);
    Cow::Owned(out)
}

/// `scheme://user:pass@host...` → `scheme://[REDACTED]@host...`.
fn userinfo<'a>(url: &'a str, secrets: &mut Secrets) -> Cow<'a, str> {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return Cow::Borrowed(url);
    };
    let authority_end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else {
        return Cow::Borrowed(url);
    };
    let info = &url[start..at];
    secrets.add_encoded(info);
    for part in info.split(':') {
        secrets.add_encoded(part);
    }
    Cow::Owned(format!("{}{REDACTED}{}", &url[..start], &url[at..]))
}

/// A query string (or fragment) of a URL to `host` with secret parameters' values
/// replaced.
fn params<'a>(query: &'a str, host: &str, rules: &Rules, secrets: &mut Secrets) -> Cow<'a, str> {
    let mut changed = false;
    let parts: Vec<Cow<str>> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // A query string is form-encoded: `+` is a space (`api+key` is `api key`).
            let plus = name.replace('+', " ");
            let decoded = percent_encoding::percent_decode_str(&plus).decode_utf8_lossy();
            if value.is_empty() || value == REDACTED {
                return Cow::Borrowed(pair);
            }
            let name_says = rules.redacts_query(host, decoded.trim(), value);
            // `?invite_token=…`: a name ending in `token` says so when the value looks
            // like a key, as in a body.
            if name_says || token_param(decoded.trim(), value, &rules.keep_names) {
                changed = true;
                if !name_says
                    || rules.lists_query(decoded.trim())
                    || credential::looks_like_credential(value)
                {
                    secrets.add_encoded(value);
                }
                Cow::Owned(format!("{name}={REDACTED}"))
            } else {
                Cow::Borrowed(pair)
            }
        })
        .collect();
    if changed {
        Cow::Owned(parts.join("&"))
    } else {
        Cow::Borrowed(query)
    }
}

/// Whether a query parameter is a credential by [`credential::token_field_name`]: its
/// name ends in `token` and its decoded value looks like a key.
fn token_param(name: &str, value: &str, keep: &[String]) -> bool {
    credential::token_field_name(name.as_bytes(), keep)
        && value.len() <= credential::MAX_KEY_LIKE * 3
        && credential::key_like(&form::decode(value.as_bytes()))
}

/// Replaces the value of every object key named in the rules, at any depth.
pub fn json(value: &mut Value, rules: &Rules) -> bool {
    json::redact_value(value, &FieldNames::of(rules), &mut Collected::default())
}

/// The last step for a body kept whole, once [`BodyScrubber`] has passed over it: a
/// JSON document's secret fields whose values are objects or arrays (the scanner leaves
/// those), then every secret value known by now (the stream only knew those seen before
/// it started).
/// `answer_to`: the URL of the request when the body is its answer (read again as one,
/// see [`BodyScrubber::for_answer`]).
pub fn finish_whole(
    data: Vec<u8>,
    content_type: Option<&str>,
    rules: &Rules,
    secrets: &mut Secrets,
    answer_to: Option<&str>,
) -> Vec<u8> {
    let moves = secrets.may_move_structure();
    let data = finish_once(data, content_type, rules, secrets);
    // A value replaced beside what begins like a key can make it one: `[REDACTED]` ends
    // a word where the value went on (`KEYsk_live_…` → `[REDACTED]sk_live_…`), and the
    // stored body read again would have a key more. In a body that is not JSON, a value
    // replaced inside another (`access0_token=Zq8…ccess_token=SECRET/cb`) ends that one
    // where it did not end before, and read again it is a credential's value of its own
    // (found by the `canonical_key` fuzzer): such a body is always read again.
    if memchr::memmem::find(&data, REDACTED.as_bytes()).is_none()
        || !(moves
            || secrets.may_move_structure()
            || shapes::may_hold_key_bytes(&data)
            || serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_err())
    {
        return data;
    }
    settle(data, content_type, rules, secrets, answer_to)
}

/// A body in which a secret holding a quote (a password, a URL's userinfo) was replaced:
/// the replacement can move where the body's strings begin and end, so that the stored
/// body, read again as replay reads a stored request when it keys it under other rules
/// (no secret of the exchange known then), has a field redacted that the first reading
/// did not see, and a different key. Read again until nothing changes; a body that
/// keeps changing (only a hostile one) is stored as the marker, which reads the same.
fn settle(
    mut data: Vec<u8>,
    content_type: Option<&str>,
    rules: &Rules,
    secrets: &mut Secrets,
    answer_to: Option<&str>,
) -> Vec<u8> {
    for _ in 0..4 {
        let none = Secrets::default();
        let (again, found) = match answer_to {
            Some(url) => BodyScrubber::run_answer(&data, content_type, rules, &none, url),
            None => BodyScrubber::run(&data, content_type, rules, &none),
        };
        let (values, leaves) = found.into_parts();
        let mut known = Secrets::default();
        known.extend(values.iter().chain(&leaves).cloned());
        let again = finish_once(again, content_type, rules, &mut known);
        if again == data {
            return data;
        }
        secrets.extend(values);
        secrets.extend_leaves(leaves);
        data = again;
    }
    REDACTED.as_bytes().to_vec()
}

/// [`finish_whole`]'s one reading.
fn finish_once(
    data: Vec<u8>,
    content_type: Option<&str>,
    rules: &Rules,
    secrets: &mut Secrets,
) -> Vec<u8> {
    let mut data = data;
    if looks_like_json(content_type, &data) {
        // Span by span, without a DOM: a 14 MB body must not cost ten times that; every
        // byte outside a replaced value (spacing, key order) is kept. The listed names'
        // objects and arrays (the scanner took every string and number), and the values
        // of name/value pairs whose name is a credential's.
        if let Some((out, found)) = json_fields::redact(&data, &FieldNames::of(rules), REDACTED) {
            data = out;
            secrets.extend(found);
        }
    }
    // A password a command line pipes to what reads it (`echo '…' | docker login
    // --password-stdin`) or gives by its place (`htpasswd -b FILE USER …`), and those
    // in a table's column (`username,password` above the rows): read here, where the
    // lines are whole, and hunted through the rest like any secret.
    let at = assw(&data);
    let mut found = stdin::passwords_at(&data, &at);
    found.extend(tables::passwords_at(&data, &at, rules));
    if let Some((out, values)) = replace_found(&data, found) {
        data = out;
        secrets.extend(values);
    }
    if let Some(scrubbed) = secrets.scrub(&data) {
        data = scrubbed;
    }
    data
}

/// Where `assw` stands in `data`: in `password`, `Password`, `passwd` and
/// `--password-stdin`, where the last pass's readings of whole lines start.
fn assw(data: &[u8]) -> Vec<usize> {
    static ASSW: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"assw"));
    ASSW.find_iter(data).collect()
}

/// `data` with each of the ranges `found` replaced by the marker (a range that
/// overlaps one before it is left out), and what they held; `None` when there is none.
fn replace_found(
    data: &[u8],
    mut found: Vec<std::ops::Range<usize>>,
) -> Option<(Vec<u8>, Vec<String>)> {
    if found.is_empty() {
        return None;
    }
    found.sort_by_key(|r| r.start);
    found.dedup_by(|later, earlier| later.start < earlier.end);
    let mut out = Vec::with_capacity(data.len());
    let mut values = Vec::with_capacity(found.len());
    let mut last = 0;
    for r in found {
        out.extend_from_slice(&data[last..r.start]);
        out.extend_from_slice(REDACTED.as_bytes());
        values.push(String::from_utf8_lossy(&data[r.clone()]).into_owned());
        last = r.end;
    }
    out.extend_from_slice(&data[last..]);
    Some((out, values))
}

/// The stored form of a body read whole (a request at replay time, a stored request
/// keyed under other rules): byte for byte what record stores when the same body
/// streams through [`BodyScrubber`] into the store. `whole` says whether it is kept
/// whole (and matched by content) or is past `keep_limit` (and matched by its blake3).
/// The values of redacted fields are added to `secrets`.
pub fn stored_body(
    data: &[u8],
    content_type: Option<&str>,
    keep_limit: usize,
    rules: &Rules,
    secrets: &mut Secrets,
) -> (Vec<u8>, bool) {
    let scrubbed = BodyScrubber::run(data, content_type, rules, secrets);
    stored_whole(scrubbed, content_type, keep_limit, rules, secrets, None)
}

/// [`stored_body`] for the answer to a request to `url`, as record stores it (see
/// [`BodyScrubber::for_answer`]).
pub fn stored_answer(
    data: &[u8],
    content_type: Option<&str>,
    keep_limit: usize,
    rules: &Rules,
    secrets: &mut Secrets,
    url: &str,
) -> (Vec<u8>, bool) {
    let scrubbed = BodyScrubber::run_answer(data, content_type, rules, secrets, url);
    stored_whole(
        scrubbed,
        content_type,
        keep_limit,
        rules,
        secrets,
        Some(url),
    )
}

fn stored_whole(
    (scrubbed, found): (Vec<u8>, Collected),
    content_type: Option<&str>,
    keep_limit: usize,
    rules: &Rules,
    secrets: &mut Secrets,
    answer_to: Option<&str>,
) -> (Vec<u8>, bool) {
    secrets.extend_found(found);
    if scrubbed.len() > keep_limit {
        return (scrubbed, false);
    }
    let data = finish_whole(scrubbed, content_type, rules, secrets, answer_to);
    (data, true)
}

/// Whether a body should be read as JSON: a JSON content type, or none and JSON-looking bytes.
pub fn looks_like_json(content_type: Option<&str>, data: &[u8]) -> bool {
    match content_type {
        Some(ct) if super::is_json_content_type(ct) => true,
        // AWS's JSON protocols (SSM, Secrets Manager, ECS, DynamoDB): a decrypted SSM
        // SecureString comes back as `application/x-amz-json-1.1`.
        Some(ct) if super::media_type(ct).contains("json") => true,
        Some(ct) if !ct.trim().is_empty() && !ct.starts_with("text/plain") => false,
        _ => matches!(
            data.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{') | Some(b'[')
        ),
    }
}

/// Bodies made of `pieces` in an order drawn at random, the same on every run (the
/// scanners' generated-bodies tests): `TAPEDECK_SCAN_BODIES` of them (3,000 by default),
/// and `TAPEDECK_SCAN_SEED` draws others. A piece `" "` stands for up to `blanks`
/// spaces.
#[cfg(test)]
fn generated_bodies<'a>(pieces: &'a [&'a str], blanks: usize) -> impl Iterator<Item = String> + 'a {
    // xorshift: the same bodies on every run.
    let mut seed: u64 =
        std::env::var("TAPEDECK_SCAN_SEED").map_or(0x9e37_79b9_7f4a_7c15, |v| v.parse().unwrap());
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let count = std::env::var("TAPEDECK_SCAN_BODIES").map_or(3000, |v| v.parse().unwrap());
    (0..count).map(move |_| {
        let mut body = String::new();
        for _ in 0..3 + next(30) {
            match pieces[next(pieces.len())] {
                " " => body.push_str(&" ".repeat(next(blanks))),
                piece => body.push_str(piece),
            }
        }
        body
    })
}

/// Test support, for a generated body: each of the `ranges` a reading found lies in
/// it and is not empty, and the body redacted reads the same again. How many there are.
#[cfg(test)]
fn within_bounds_and_the_same_again(
    body: &str,
    ranges: &[std::ops::Range<usize>],
    redact: impl Fn(&str) -> String,
) -> usize {
    assert!(
        ranges
            .iter()
            .all(|r| r.start < r.end && r.end <= body.len()),
        "{body:?}"
    );
    let once = redact(body);
    assert_eq!(redact(&once), once, "{body:?}");
    ranges.len()
}

/// Test support: `text` with the ranges `found` replaced by the marker
/// ([`replace_found`]).
#[cfg(test)]
fn found_replaced(text: &str, found: Vec<std::ops::Range<usize>>) -> String {
    match replace_found(text.as_bytes(), found) {
        Some((out, _)) => String::from_utf8(out).unwrap(),
        None => text.to_string(),
    }
}

/// Test support: each `(text, want)` as text, in a JSON string and two strings down (a
/// tool call's arguments, the text under `field`): `redact` gives what is wanted, and
/// read again, the same.
#[cfg(test)]
fn in_three_placements(cases: &[(&str, &str)], field: &str, redact: impl Fn(&str) -> String) {
    for (text, want) in cases {
        let placed = |t: &str| {
            [
                t.to_string(),
                serde_json::to_string(t).unwrap(),
                serde_json::to_string(&serde_json::json!({ field: t }).to_string()).unwrap(),
            ]
        };
        for (body, wanted) in placed(text).into_iter().zip(placed(want)) {
            assert_eq!(redact(&body), wanted, "{body}");
            assert_eq!(redact(&wanted), wanted, "read again: {wanted}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleArgs;

    /// A URL scrubbed of its request's key reads the same redacted again, as replay
    /// reads a stored request. The key held the `/` that ended the host, so once it is
    /// replaced an `@` further on ends a userinfo (the `canonical_key` fuzzer's find).
    #[test]
    fn a_url_whose_scrubbed_key_held_the_hosts_end_reads_the_same_again() {
        let rules = Rules::default();
        let mut map = http::HeaderMap::new();
        map.insert("authorization", "Bearer ab/cd1234efgh5678".parse().unwrap());
        let mut secrets = Secrets::default();
        let live = "https://api.testab/cd1234efgh5678@other.test/v1/usage";
        let mut stored = url(live, &rules, &mut secrets);
        assert_eq!(stored, live, "nothing in the URL alone is a secret");
        headers(&map, NameKind::Header, &rules, &mut secrets);
        assert!(scrub_url(&mut stored, &rules, &mut secrets).is_some());
        assert!(
            !stored.contains("cd1234efgh5678"),
            "the key is stored: {stored}"
        );
        assert_eq!(stored, "https://[REDACTED]@other.test/v1/usage");
        let again = url(&stored, &rules, &mut Secrets::default());
        assert_eq!(again, stored, "read again, the stored URL changed");
    }

    /// A stored body read again (as replay keys a stored request under other rules)
    /// reads the same: here a secret replaced inside another credential's value ends that
    /// value early, which a second reading redacts (the `canonical_key` fuzzer's find).
    #[test]
    fn a_stored_text_body_with_a_value_replaced_inside_another_reads_the_same_again() {
        let rules = Rules::default();
        let ct = Some("application/json");
        for body in [
            &b"{\"messages\":\xea\xa4\x84\xddrAPI C@LLBACK_URL=https://\xe1pp.test/cb?access_token=Zq8vN3kLp2Wm7Rt4Yx6B\x11/cb?access0_token=Zq8vN3kLp2ccess_token=Zq8vN3kLp2Wm7Rt4Yx6B/cb?access0_token=Zq8vN3kLp2Wm7Rt4Yx6B&x=1\\n\"}"[..],
            b"see https://app.test/cb?access_token=Zq8vN3kLp2Wm7Rt4Yx6B\x11/cb?access0_token=Zq8vN3kLp2ccess_token=Zq8vN3kLp2Wm7Rt4Yx6B/cb done",
        ] {
            let (once, whole) =
                stored_body(body, ct, 1 << 20, &rules, &mut Secrets::default());
            assert!(whole);
            assert!(
                memchr::memmem::find(&once, b"Zq8vN3kLp2Wm7Rt4Yx6B").is_none(),
                "the token is stored: {}",
                String::from_utf8_lossy(&once)
            );
            let (twice, _) = stored_body(&once, ct, 1 << 20, &rules, &mut Secrets::default());
            assert_eq!(
                String::from_utf8_lossy(&twice),
                String::from_utf8_lossy(&once),
                "read again, the stored body changed"
            );
        }
    }

    #[test]
    fn a_header_value_that_is_not_utf8_is_kept_as_its_bytes_and_scrubbed_as_bytes() {
        use crate::exchange::{header_bytes, HEADER_BYTES};
        use base64::Engine;
        let latin1 = b"attachment; filename=\"r\xe9sum\xe9.pdf\"";
        let mut h = http::HeaderMap::new();
        h.insert(
            "content-disposition",
            http::HeaderValue::from_bytes(latin1).unwrap(),
        );
        h.insert("x-utf8", http::HeaderValue::from_str("naïve").unwrap());
        // (No key format's shape: found by the exchange's secrets, not read in the header.)
        let key = "tok-proj-0123456789abcdef";
        // An upstream echoing the key beside a byte that is not UTF-8.
        let echoed = [key.as_bytes(), b" \xe9"].concat();
        h.insert("x-echo", http::HeaderValue::from_bytes(&echoed).unwrap());
        let mut secrets = Secrets::default();
        let mut stored = headers(&h, NameKind::Header, &Rules::default(), &mut secrets);
        let value = |name: &str, stored: &[Header]| {
            stored.iter().find(|(n, _)| n == name).unwrap().1.clone()
        };
        // UTF-8 stays text; Latin-1 is marked and gives back the very bytes.
        assert_eq!(value("x-utf8", &stored), "naïve");
        let kept = value("content-disposition", &stored);
        assert!(kept.starts_with(HEADER_BYTES), "{kept:?}");
        assert_eq!(&header_bytes(&kept).unwrap()[..], &latin1[..]);
        // A secret inside bytes that are not UTF-8 is scrubbed from the bytes, and the
        // base64 stored holds it no more than the text would.
        secrets.add(key);
        scrub_headers(&mut stored, &secrets);
        let echo = value("x-echo", &stored);
        let bytes = header_bytes(&echo).unwrap().into_owned();
        assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()));
        assert!(bytes.ends_with(b" \xe9"), "{bytes:?}");
        // The key stood first: unscrubbed, the base64 would begin with the key's.
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert!(!echo.contains(&b64[..20]), "{echo}");
        let unscrubbed = crate::exchange::header_text(&echoed);
        assert!(unscrubbed.contains(&b64[..20]), "the check above can fail");
        // A mark with no base64 after it stands for nothing.
        assert!(header_bytes(&format!("{HEADER_BYTES}not base64!")).is_none());
        assert_eq!(&header_bytes("plain").unwrap()[..], b"plain");
        // Shown to a person: the bytes read as Latin-1, never the mark or the base64.
        use crate::exchange::header_shown;
        assert_eq!(header_shown(&kept), "attachment; filename=\"résumé.pdf\"");
        assert_eq!(header_shown("naïve"), "naïve");
        let bad = format!("{HEADER_BYTES}not base64!");
        assert_eq!(
            header_shown(&bad),
            bad,
            "shown as stored when it stands for nothing"
        );
    }

    /// A key the stream could not know yet (found at the body's end) replaced at its
    /// first copy, glued to what begins like a key, made that a key too on a second
    /// reading: stored, then read again as replay re-keys it, the body differed (found
    /// by the `canonical_key` fuzz target, seed `key-glued-to-a-key`).
    #[test]
    fn a_key_replaced_beside_a_key_prefix_stores_a_body_that_reads_the_same() {
        let body = b"sk_live_51HqLyjWDarjtT1zdp7dcHDRsk_live_0qLyjWDarjtT1zdp\xe9sk_live_51HqLyjWDarjtT1zdp7dcHDR";
        let rules = Rules::default();
        let (once, _) = stored_body(body, None, 1 << 20, &rules, &mut Secrets::default());
        let (twice, _) = stored_body(&once, None, 1 << 20, &rules, &mut Secrets::default());
        assert_eq!(
            String::from_utf8_lossy(&once),
            String::from_utf8_lossy(&twice)
        );
        assert!(!once.windows(8).any(|w| w == b"sk_live_"), "{once:?}");
    }

    #[test]
    fn a_key_in_a_header_no_name_marks_is_found_by_its_shape() {
        let key = "sk_live_51HqLyjWDarjtT1zdp7dcHDR";
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.U0hBUEUtc2lnbmF0dXJl";
        let mut h = http::HeaderMap::new();
        h.insert("x-gateway-route", key.parse().unwrap());
        h.insert("x-forwarded-identity", jwt.parse().unwrap());
        h.insert(
            "x-upstream",
            "gateway key=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zHDR1"
                .parse()
                .unwrap(),
        );
        h.insert("user-agent", "OpenAI/Python 1.54.0".parse().unwrap());
        h.insert("x-task", "sk-learn task-force".parse().unwrap());
        let rules = Rules::default();
        let mut secrets = Secrets::default();
        let stored = headers(&h, NameKind::Header, &rules, &mut secrets);
        let get = |n: &str| stored.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("x-gateway-route"), REDACTED);
        assert_eq!(get("x-forwarded-identity"), REDACTED);
        assert_eq!(get("x-upstream"), "gateway key=[REDACTED]");
        assert_eq!(get("user-agent"), "OpenAI/Python 1.54.0");
        assert_eq!(get("x-task"), "sk-learn task-force");
        // Hunted through the rest of the exchange.
        assert!(secrets.scrub(format!("echo {key}").as_bytes()).is_some());
        // Beside a byte that is not UTF-8, the key goes and the byte stays.
        let mut b = http::HeaderMap::new();
        let latin1 = [b"r\xe9sum\xe9 ".as_slice(), key.as_bytes()].concat();
        b.insert("x-note", http::HeaderValue::from_bytes(&latin1).unwrap());
        let stored = headers(&b, NameKind::Header, &rules, &mut Secrets::default());
        let bytes = crate::exchange::header_bytes(&stored[0].1).unwrap();
        assert_eq!(&bytes[..], b"r\xe9sum\xe9 [REDACTED]");
        // An answer's JWT is left to names (a cursor the agent sends back); its keys are not.
        let mut a = http::HeaderMap::new();
        a.insert("x-next-page", jwt.parse().unwrap());
        a.insert("x-echo", key.parse().unwrap());
        let stored = headers(&a, NameKind::AnswerHeader, &rules, &mut Secrets::default());
        assert_eq!(stored[0].1, jwt);
        assert_eq!(stored[1].1, REDACTED);
        // `keep_shapes` keeps a format in clear; stored again, the headers do not change.
        let keep =
            Rules::from_toml("[redact]\nkeep_shapes = [\"jwt\"]\n", &RuleArgs::default()).unwrap();
        let stored = headers(&h, NameKind::Header, &keep, &mut Secrets::default());
        assert_eq!(
            stored
                .iter()
                .find(|(k, _)| k == "x-forwarded-identity")
                .unwrap()
                .1,
            jwt
        );
        let mut again = stored.clone();
        assert!(!stored_headers(
            &mut again,
            NameKind::Header,
            &keep,
            &mut Secrets::default()
        ));
    }

    #[test]
    fn an_api_key_in_a_websocket_subprotocol_is_redacted() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "sec-websocket-protocol",
            "realtime, openai-insecure-api-key.sk-proj-0123456789abcdef, openai-beta.realtime-v1"
                .parse()
                .unwrap(),
        );
        let mut secrets = Secrets::default();
        let stored = headers(&h, NameKind::Header, &Rules::default(), &mut secrets);
        assert_eq!(
            stored[0].1,
            "realtime, openai-insecure-api-key.[REDACTED], openai-beta.realtime-v1"
        );
        assert!(secrets.scrub(b"echo sk-proj-0123456789abcdef").is_some());
        // Deepgram's browser clients: `token, KEY` (the marker, then the key).
        let mut h = http::HeaderMap::new();
        h.insert(
            "sec-websocket-protocol",
            "token, dg-0123456789abcdef".parse().unwrap(),
        );
        let mut secrets = Secrets::default();
        let stored = headers(&h, NameKind::Header, &Rules::default(), &mut secrets);
        assert_eq!(stored[0].1, "token, [REDACTED]");
        assert!(secrets.scrub(b"echo dg-0123456789abcdef").is_some());
        // Stored again (a tape imported), it stays as it is.
        let mut again = stored.clone();
        let changed = stored_headers(
            &mut again,
            NameKind::Header,
            &Rules::default(),
            &mut Secrets::default(),
        );
        assert!(!changed && again == stored, "{again:?}");
    }

    fn whole(data: &[u8], ct: Option<&str>, rules: &Rules, secrets: &mut Secrets) -> String {
        String::from_utf8(stored_body(data, ct, 1 << 20, rules, secrets).0).unwrap()
    }

    #[test]
    fn secret_headers_and_query_params_are_redacted_and_scrubbed_from_bodies() {
        let rules = Rules::default();
        let mut map = http::HeaderMap::new();
        map.insert("authorization", "Bearer sk-live-123456789".parse().unwrap());
        map.insert("content-type", "application/json".parse().unwrap());
        let mut secrets = Secrets::default();
        let h = headers(&map, NameKind::Header, &rules, &mut secrets);
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
        let text = whole(
            br#"{"echo":"sk-live-123456789","k":"AIzaSECRETKEY1"}"#,
            Some("application/json"),
            &rules,
            &mut secrets,
        );
        assert!(!text.contains("sk-live"), "{text}");
        assert!(!text.contains("AIza"), "{text}");
    }

    #[test]
    fn names_are_compared_decoded_and_userinfo_is_redacted() {
        let rules = Rules::default();
        let mut s = Secrets::default();
        assert_eq!(
            url(
                "https://a.test/x?api%5Fkey=k-12345678&apiKey=k-abcdefgh&page=2#access_token=t-12345678&x=1",
                &rules,
                &mut s
            ),
            "https://a.test/x?api%5Fkey=[REDACTED]&apiKey=[REDACTED]&page=2#access_token=[REDACTED]&x=1"
        );
        assert_eq!(
            url(
                "http://ada:pa%24%24word-1234@h.test:8080/p?q=1",
                &rules,
                &mut s
            ),
            "http://[REDACTED]@h.test:8080/p?q=1"
        );
        assert_eq!(
            s.scrub_str("k-12345678 k-abcdefgh t-12345678 pa$$word-1234"),
            "[REDACTED] [REDACTED] [REDACTED] [REDACTED]"
        );
        assert_eq!(
            url("https://a.test/p?q=1", &rules, &mut s),
            "https://a.test/p?q=1"
        );
        // `+` is a space in a query string: `api+key` is `api key`, read as `apikey`.
        assert_eq!(
            url("https://a.test/p?api+key=k-12345678&q=a+b", &rules, &mut s),
            "https://a.test/p?api+key=[REDACTED]&q=a+b"
        );
    }

    #[test]
    fn a_token_named_query_parameter_is_a_secret_when_its_value_looks_like_a_key() {
        let rules = Rules::default();
        let mut s = Secrets::default();
        let key = "Zx9_Qw3-Rt7Yu1Io5Pa8Sd2Fg6Hj4Kl0";
        assert_eq!(
            url(
                &format!(
                    "https://app.test/join?invite_token={key}&next_token=Ab1-Cd2-Ef3-Gh4-Ij5\
                     &eos_token=%3C%2Fs%3E&reset%5Ftoken={}",
                    key.replace('_', "%5F")
                ),
                &rules,
                &mut s
            ),
            "https://app.test/join?invite_token=[REDACTED]&next_token=Ab1-Cd2-Ef3-Gh4-Ij5\
             &eos_token=%3C%2Fs%3E&reset%5Ftoken=[REDACTED]"
        );
        // Hunted through the exchange as any key is.
        assert_eq!(s.scrub_str(&format!("echo {key}")), "echo [REDACTED]");
        // A word under such a name is a value, and a name the user keeps is kept.
        assert_eq!(
            url("https://a.test/p?csrf_token=tokenvalue", &rules, &mut s),
            "https://a.test/p?csrf_token=tokenvalue"
        );
        let keep = Rules {
            keep_names: vec![crate::credential::normalise("invite_token")],
            ..Rules::default()
        };
        let kept = format!("https://app.test/join?invite_token={key}");
        assert_eq!(url(&kept, &keep, &mut Secrets::default()), kept);
    }

    #[test]
    fn response_headers_lose_echoed_secrets_and_urls_lose_their_keys() {
        let rules = Rules::default();
        let mut s = Secrets::default();
        s.add("Bearer sk-live-123456789");
        let mut map = http::HeaderMap::new();
        map.insert("x-echoed", "Bearer sk-live-123456789".parse().unwrap());
        map.insert(
            "location",
            "https://a.test/cb?token=t-abcdefgh".parse().unwrap(),
        );
        let mut h = headers(&map, NameKind::AnswerHeader, &rules, &mut s);
        scrub_headers(&mut h, &s);
        assert_eq!(h[0].1, "[REDACTED]");
        assert_eq!(h[1].1, "https://a.test/cb?token=[REDACTED]");
    }

    #[test]
    fn webhook_and_bot_tokens_in_url_paths_are_redacted_and_scrubbed_elsewhere() {
        let rules = Rules::default();
        let mut s = Secrets::default();
        let cases = [
            (
                "https://hooks.slack.com/services/T0001/B0002/slackSECRET123456?x=1",
                "https://hooks.slack.com/services/T0001/B0002/[REDACTED]?x=1",
            ),
            (
                "https://discord.com/api/v10/webhooks/1234/discord_TOKEN-9876?wait=true",
                "https://discord.com/api/v10/webhooks/1234/[REDACTED]?wait=true",
            ),
            (
                "https://API.Telegram.org:443/bot123456:AAH-telegramTOKEN/sendMessage",
                "https://API.Telegram.org:443/bot[REDACTED]/sendMessage",
            ),
            (
                "https://api.telegram.org/file/bot123456:AAH-telegramTOKEN/photos/a.jpg",
                "https://api.telegram.org/file/bot[REDACTED]/photos/a.jpg",
            ),
            // The same hosts written as fully qualified names, slashes doubled.
            (
                "https://hooks.slack.com./services/T0001/B0002/slackSECRET123456",
                "https://hooks.slack.com./services/T0001/B0002/[REDACTED]",
            ),
            (
                "https://hooks.slack.com//services//T0001/B0002/slackSECRET123456",
                "https://hooks.slack.com//services//T0001/B0002/[REDACTED]",
            ),
            // Another host, or the same path shape elsewhere: kept.
            (
                "https://example.com/bot123456:AAH-notatoken/sendMessage",
                "https://example.com/bot123456:AAH-notatoken/sendMessage",
            ),
        ];
        for (raw, want) in cases {
            let stored = url(raw, &rules, &mut s);
            assert_eq!(stored, want);
            assert_eq!(
                url(&stored, &rules, &mut Secrets::default()),
                want,
                "stable"
            );
        }
        assert_eq!(
            s.scrub_str(
                "{\"echo\": \"slackSECRET123456 discord_TOKEN-9876 123456:AAH-telegramTOKEN\"}"
            ),
            "{\"echo\": \"[REDACTED] [REDACTED] [REDACTED]\"}"
        );

        // A path of the user's own, from tapedeck.toml and the command line.
        let args = RuleArgs {
            redact_paths: vec![r"^localhost/hooks/[^/]+/([^/]+)".into()],
            ..Default::default()
        };
        let toml = "[redact]\npaths = ['(?i)^api\\.example\\.com/v1/keys/([^/]+)/use']\n";
        let rules = Rules::from_toml(toml, &args).unwrap();
        let mut s = Secrets::default();
        assert_eq!(
            url(
                "https://localhost:8443/hooks/team/hook-SECRET-42/run",
                &rules,
                &mut s
            ),
            "https://localhost:8443/hooks/team/[REDACTED]/run"
        );
        assert_eq!(
            url(
                "https://api.example.com/V1/Keys/k-123456789/use",
                &rules,
                &mut s
            ),
            "https://api.example.com/V1/Keys/[REDACTED]/use"
        );
        assert_ne!(
            rules.match_fingerprint(),
            Rules::default().match_fingerprint()
        );
        for (bad, why) in [
            ("^x/(", "regex parse error"),
            ("^x/y", "no group in parentheses"),
        ] {
            let args = RuleArgs {
                redact_paths: vec![bad.into()],
                ..Default::default()
            };
            let e = Rules::from_toml("", &args).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("host/path"), "{e}");
        }
    }

    #[test]
    fn default_fields_are_redacted_in_json_form_and_multipart_and_their_values_collected() {
        let rules = Rules::default();
        let mut s = Secrets::default();
        let out = whole(
            br#"{"access_token":"at-123456789","refresh_token":"rt-123456789","expires_in":3600}"#,
            Some("application/json"),
            &rules,
            &mut s,
        );
        assert_eq!(
            out,
            r#"{"access_token":"[REDACTED]","refresh_token":"[REDACTED]","expires_in":3600}"#
        );
        let out = whole(
            b"grant_type=refresh_token&refresh_token=rt-123456789&client_secret=cs-123456789",
            Some("application/x-www-form-urlencoded"),
            &rules,
            &mut s,
        );
        assert_eq!(
            out,
            "grant_type=refresh_token&refresh_token=[REDACTED]&client_secret=[REDACTED]"
        );
        assert_eq!(
            s.scrub_str("at-123456789 rt-123456789 cs-123456789"),
            "[REDACTED] [REDACTED] [REDACTED]"
        );
    }

    #[test]
    fn json_fields_are_redacted_at_any_depth_whatever_the_value() {
        let args = RuleArgs {
            redact_json_fields: vec!["secret_blob".into()],
            ..Default::default()
        };
        let rules = Rules::from_toml("", &args).unwrap();
        let out = whole(
            br#"{"user":{"Password":"hunter2","name":"x"},"list":[{"password":"p"}],"secret_blob":{"a":[1]}}"#,
            Some("application/json"),
            &rules,
            &mut Secrets::default(),
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["user"]["Password"], REDACTED);
        assert_eq!(v["user"]["name"], "x");
        assert_eq!(v["list"][0]["password"], REDACTED);
        assert_eq!(v["secret_blob"], REDACTED);
    }

    #[test]
    fn cloud_metadata_services_are_told_by_host_and_their_token_path() {
        use super::MetadataAnswer::*;
        for (url, want) in [
            ("http://169.254.169.254/latest/api/token", Secret),
            ("http://169.254.169.254:80/latest/api/token/", Secret),
            (
                "http://169.254.169.254/latest/meta-data/iam/security-credentials/r",
                Fields,
            ),
            ("http://169.254.170.2/v2/credentials/abc", Fields),
            ("http://169.254.170.23/v1/credentials", Fields),
            ("http://[fd00:ec2::254]/latest/meta-data/", Fields),
            (
                "http://100.100.100.200/latest/meta-data/ram/security-credentials/r",
                Fields,
            ),
            // Every spelling the resolver reads.
            ("http://[::ffff:169.254.169.254]/latest/api/token", Secret),
            ("http://[::ffff:a9fe:a9fe]/latest/meta-data/", Fields),
            ("http://2852039166/latest/meta-data/", Fields),
            ("http://0xa9fea9fe/latest/meta-data/", Fields),
            ("http://0xA9.0xFE.0xA9.0xFE/latest/meta-data/", Fields),
            ("http://0251.0376.0251.0376/latest/meta-data/", Fields),
            ("http://169.254.43518/latest/meta-data/", Fields),
            ("http://INSTANCE-DATA/latest/meta-data/", Fields),
            (
                "http://metadata.google.internal/computeMetadata/v1/",
                Fields,
            ),
            ("http://169.254.169.2/latest/api/token", No),
            ("http://2852039165/latest/api/token", No),
            ("http://169.254.169.254.5/", No),
            ("https://api.openai.com/latest/api/token", No),
        ] {
            assert_eq!(cloud_metadata(url), want, "{url}");
        }
    }

    #[test]
    fn a_whole_secret_body_is_stored_as_the_marker_and_credential_fields_as_redacted() {
        let rules = Rules::default();
        let s = Secrets::default();
        let fields = || FieldNames::of(&rules);
        let token_url = "http://169.254.169.254/latest/api/token";
        let mut sc = BodyScrubber::for_answer(Some("text/plain"), fields(), &s, token_url);
        assert!(sc.feed(b"AQAEA-session-").is_empty());
        assert!(sc.feed(b"token==").is_empty());
        assert_eq!(sc.finish().0, REDACTED.as_bytes());
        let sc = BodyScrubber::for_answer(None, fields(), &s, token_url);
        assert!(sc.finish().0.is_empty(), "an empty body stays empty");
        let creds = br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"s3cr3t-value-1","Token":"t0ken-value-22"}"#;
        let ct = Some("application/json");
        let creds_url = "http://169.254.169.254/latest/meta-data/iam/security-credentials/r";
        let mut sc = BodyScrubber::for_answer(ct, fields(), &s, creds_url);
        let mut out = sc.feed(creds).to_vec();
        let (rest, found) = sc.finish();
        out.extend(rest);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["AccessKeyId"], "ASIA1");
        assert_eq!(v["SecretAccessKey"], REDACTED);
        assert_eq!(v["Token"], REDACTED);
        assert_eq!(found.into_values().len(), 2);
        // Elsewhere `token` is a model's field (logprobs) and stays.
        let other = "https://api.openai.com/v1/chat/completions";
        let (out, _) = BodyScrubber::run_answer(br#"{"token":"Hello"}"#, ct, &rules, &s, other);
        assert_eq!(out, br#"{"token":"Hello"}"#);
    }

    #[test]
    fn a_stored_body_redacted_again_is_unchanged_even_when_a_secret_is_part_of_the_marker() {
        // A password `[REDACTE` must not be scrubbed out of the `[REDACTED]` that replaced
        // it: a recorded request redacted again under today's rules would be keyed unlike
        // the same request live (fuzz target canonical_key).
        let rules = Rules::default();
        let form = Some("application/x-www-form-urlencoded");
        let body = b"grant_type=password&username=ada&password=[REDACTE";
        let (once, _) = stored_body(body, form, 1 << 20, &rules, &mut Secrets::default());
        assert_eq!(
            String::from_utf8_lossy(&once),
            "grant_type=password&username=ada&password=[REDACTED]"
        );
        let (twice, _) = stored_body(&once, form, 1 << 20, &rules, &mut Secrets::default());
        assert_eq!(twice, once);
    }

    #[test]
    fn a_stored_body_redacted_again_is_unchanged_when_a_secret_held_a_quote() {
        // A URL's userinfo `:"Author@…` (found by the canonical_key fuzz target): the
        // password `"Author` replaced in the body takes a quote away, so the body read
        // again has a string where it had none, `b[REDACTED] idtoken`, a key whose name
        // says ID token, that the first reading did not see. The stored body is read
        // again until it is stable.
        let rules = Rules::default();
        let mut secrets = Secrets::default();
        secrets.add_encoded(":\"Author");
        let body = br#"{"note":"b:"Author idtoken":"abc-123456789","n":1}"#;
        let (once, _) = stored_body(body, None, 1 << 20, &rules, &mut secrets.clone());
        let text = String::from_utf8_lossy(&once).into_owned();
        assert!(
            !text.contains("Author") && !text.contains("abc-123456789"),
            "{text}"
        );
        let (twice, _) = stored_body(&once, None, 1 << 20, &rules, &mut Secrets::default());
        assert_eq!(String::from_utf8_lossy(&twice), text);
    }

    #[test]
    fn a_key_in_a_url_is_found_by_its_shape_and_a_jwt_is_left_to_names() {
        let rules = Rules::default();
        let key = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJjdXJzb3IiOjQyfQ.c2lnbmF0dXJlLWJ5dGVz";
        let mut secrets = Secrets::default();
        let got = url(
            &format!("https://api.example.com/search?q=openai+401+{key}&cursor={jwt}"),
            &rules,
            &mut secrets,
        );
        assert_eq!(
            got,
            format!("https://api.example.com/search?q=openai+401+[REDACTED]&cursor={jwt}")
        );
        assert_eq!(secrets.scrub(key.as_bytes()).unwrap(), REDACTED.as_bytes());
        let path = url(
            &format!("https://x.test/keys/{key}/usage"),
            &rules,
            &mut secrets,
        );
        assert_eq!(path, "https://x.test/keys/[REDACTED]/usage");
        // Read again, the same.
        assert_eq!(url(&got, &rules, &mut Secrets::default()), got);
        // A key found in the query stands in the path too, run on into another key with
        // no boundary between: scrubbing the first uncovers the second, read in the same
        // pass, so the URL reads the same redacted again (the `canonical_key` fuzzer).
        let ghp = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
        let run_on = format!("https://x.test/keys/{ghp}{key}/usage?q=openai+401+{ghp}");
        let once = url(&run_on, &rules, &mut Secrets::default());
        assert_eq!(
            once,
            "https://x.test/keys/[REDACTED][REDACTED]/usage?q=openai+401+[REDACTED]"
        );
        assert_eq!(url(&once, &rules, &mut Secrets::default()), once);
    }

    #[test]
    fn a_jwt_is_read_by_its_shape_in_requests_and_not_in_answers() {
        // An answer's JWT is often a page cursor or a signed link's path the agent sends
        // back in a URL, which shapes are not read in: redacted in the answer alone, the
        // next request would miss on replay. A key format is read in both.
        let rules = Rules::default();
        let ct = Some("application/json");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJjdXJzb3IiOjQyfQ.c2lnbmF0dXJlLWJ5dGVz";
        let gh = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
        let body = format!(r#"{{"next_page_token":"{jwt}","k":"{gh}"}}"#);
        let s = Secrets::default();
        let (req, _) = stored_body(body.as_bytes(), ct, 1 << 20, &rules, &mut s.clone());
        assert_eq!(
            String::from_utf8(req).unwrap(),
            r#"{"next_page_token":"[REDACTED]","k":"[REDACTED]"}"#
        );
        let url = "https://api.example.com/v1/files";
        let (answer, _) = stored_answer(body.as_bytes(), ct, 1 << 20, &rules, &mut s.clone(), url);
        assert_eq!(
            String::from_utf8(answer).unwrap(),
            format!(r#"{{"next_page_token":"{jwt}","k":"[REDACTED]"}}"#)
        );
    }

    #[test]
    fn a_streamed_body_is_stored_as_the_same_body_read_whole() {
        let rules = Rules::default();
        let mut s = Secrets::default();
        s.add("Bearer sk-live-123456789");
        let body = "data: {\"echo\":\"sk-live-123456789\",\"access_token\":\"at-123456789\"}\n\n"
            .repeat(40)
            .into_bytes();
        let (want, _) = stored_body(
            &body,
            Some("text/event-stream"),
            1 << 20,
            &rules,
            &mut s.clone(),
        );
        assert!(!String::from_utf8_lossy(&want).contains("123456789"));
        for cut in [1, 5, 17, 333] {
            let mut sc = BodyScrubber::new(Some("text/event-stream"), &rules, &s);
            let mut got = Vec::new();
            for piece in body.chunks(cut) {
                got.extend_from_slice(sc.feed(piece));
            }
            let (rest, _) = sc.finish();
            got.extend_from_slice(&rest);
            let got = finish_whole(got, Some("text/event-stream"), &rules, &mut s.clone(), None);
            assert_eq!(got, want, "cut {cut}");
        }
    }

    #[test]
    fn names_read_as_credentials_lose_their_scalar_values_in_every_framing() {
        let rules = Rules::default();
        let body = br#"{"tools":[{"headers":{"Authorization":"Bearer mcp-123456789"}},
            {"properties":{"db_password":{"type":"string"},"password":{"type":"string"}}}],
            "authorization_token":"tok-123456789","pin_passphrase":87654321,
            "is_secret":true,"nextPageToken":"page-123456789","token":"Hello"}"#;
        let ct = Some("application/json");
        let (stored, found) = same_at_every_cut(body, &[1, 3, 7, 64], || {
            BodyScrubber::new(ct, &rules, &Secrets::default())
        });
        let text = String::from_utf8_lossy(&stored);
        for gone in ["mcp-123456789", "tok-123456789", "87654321"] {
            assert!(!text.contains(gone), "{gone} stored: {text}");
        }
        let v: Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(v["tools"][0]["headers"]["Authorization"], REDACTED);
        assert_eq!(v["pin_passphrase"], REDACTED);
        assert_eq!(
            v["tools"][1]["properties"]["db_password"],
            serde_json::json!({"type": "string"})
        );
        // A listed name's schema too.
        assert_eq!(
            v["tools"][1]["properties"]["password"],
            serde_json::json!({"type": "string"})
        );
        assert_eq!(v["is_secret"], true);
        assert_eq!(v["nextPageToken"], "page-123456789");
        assert_eq!(v["token"], "Hello");
        let found = found.into_values();
        assert!(
            found.iter().any(|f| f.contains("mcp-123456789")),
            "{found:?}"
        );
        // The structural pass and the value pass agree with the scanner.
        let whole = finish_whole(stored.clone(), ct, &rules, &mut Secrets::default(), None);
        assert_eq!(whole, stored);
        let mut value: Value = serde_json::from_slice(body).unwrap();
        assert!(json(&mut value, &rules));
        assert_eq!(value, v);
    }

    #[test]
    fn credentials_services_mint_in_plainly_named_fields_are_redacted() {
        let rules = Rules::default();
        let s = Secrets::default();
        let ct = Some("application/json");
        let answer = |url: &str, body: &str| -> Value {
            let (out, _) = stored_answer(body.as_bytes(), ct, 1 << 20, &rules, &mut s.clone(), url);
            serde_json::from_slice(&out).unwrap()
        };
        let gh = r#"{"token":"ghs_16C7e42F292c6912E7710c838347Ae178B4a","expires_at":"2026-12-04T20:00:00Z"}"#;
        for url in [
            "https://api.github.com/app/installations/42/access_tokens",
            "https://ghe.example.com/api/v3/app/installations/42/access_tokens",
            "https://api.github.com/repos/o/r/actions/runners/registration-token",
            "https://api.github.com/orgs/o/actions/runners/remove-token",
        ] {
            let v = answer(url, gh);
            assert_eq!(v["token"], REDACTED, "{url}");
            assert_eq!(v["expires_at"], "2026-12-04T20:00:00Z");
        }
        let v = answer(
            "https://api.openai.com/v1/realtime/client_secrets",
            r#"{"value":"ek_68af296e8e408191a1120ab6383263c2","expires_at":1756310470,"session":{"type":"realtime"}}"#,
        );
        assert_eq!(
            (&v["value"], &v["session"]["type"]),
            (&serde_json::json!(REDACTED), &serde_json::json!("realtime"))
        );
        let kv = "https://myvault.vault.azure.net/secrets/db-password/abc123?api-version=7.4";
        let v = answer(
            kv,
            r#"{"value":"P@ssw0rd-from-key-vault","id":"https://myvault.vault.azure.net/secrets/db-password/abc123"}"#,
        );
        assert_eq!(v["value"], REDACTED);
        // A listing's `value` is an array of items with no secret in them: kept.
        let v = answer(
            "https://myvault.vault.azure.net/secrets/db-password/versions?api-version=7.4",
            r#"{"value":[{"id":"https://myvault.vault.azure.net/secrets/db-password/abc123"}],"nextLink":null}"#,
        );
        assert!(v["value"].is_array(), "{v}");
        // An SSM parameter by its type, not its service: a SecureString decrypted goes,
        // a String (a model's name the agent reads as config) stays.
        let ssm = "https://ssm.eu-west-1.amazonaws.com/";
        let v = answer(
            ssm,
            r#"{"Parameter":{"Name":"/prod/db/password","Type":"SecureString","Value":"decrypted-param-value"}}"#,
        );
        assert_eq!(v["Parameter"]["Value"], REDACTED);
        assert_eq!(v["Parameter"]["Name"], "/prod/db/password");
        let v = answer(
            ssm,
            r#"{"Parameter":{"Name":"/app/model","Type":"String","Value":"gpt-4o-mini"}}"#,
        );
        assert_eq!(v["Parameter"]["Value"], "gpt-4o-mini");
        // As SSM sends it: AWS's JSON protocol has a media type of its own.
        let body = br#"{"Parameter":{"Name":"/prod/payments/stripe","Type":"SecureString","Value":"sk_live_0123456789"}}"#;
        let amz = Some("application/x-amz-json-1.1");
        let (out, _) = stored_answer(body, amz, 1 << 20, &rules, &mut s.clone(), ssm);
        assert!(!String::from_utf8_lossy(&out).contains("sk_live_0123456789"));
        let v = answer(
            "https://generativelanguage.googleapis.com/v1alpha/auth_tokens",
            r#"{"name":"auth_tokens/7c8b9a0d1e2f3a4b5c6d","expireTime":"2026-12-04T20:00:00Z"}"#,
        );
        assert_eq!(v["name"], REDACTED);
        // Elsewhere those names are ordinary fields.
        let v = answer(
            "https://api.example.com/app/items",
            r#"{"token":"Hello","value":"some-value-1","name":"x"}"#,
        );
        assert_eq!(
            v,
            serde_json::json!({"token":"Hello","value":"some-value-1","name":"x"})
        );
    }

    #[test]
    fn what_only_a_name_says_is_secret_is_redacted_in_place_and_not_hunted_elsewhere() {
        // A Kubernetes deployment with the Docker image's default password: the value
        // goes where it stands, and every other `postgres` (the image, the label the
        // agent selects pods by) stays.
        let rules = Rules::default();
        let body = br#"{"env":[{"name":"POSTGRES_PASSWORD","value":"postgres"},{"name":"POSTGRES_USER","value":"postgres"}],
            "image":"postgres:16","labels":{"app":"postgres"},"db_password":"postgres"}"#;
        let ct = Some("application/json");
        let mut secrets = Secrets::default();
        let (out, _) = stored_body(body, ct, 1 << 20, &rules, &mut secrets);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["env"][0]["value"], REDACTED);
        assert_eq!(v["env"][1]["value"], "postgres");
        assert_eq!(v["db_password"], REDACTED);
        assert_eq!(
            (&v["image"], &v["labels"]["app"]),
            (
                &serde_json::json!("postgres:16"),
                &serde_json::json!("postgres")
            )
        );
        assert!(secrets.is_empty(), "nothing key-shaped to hunt");
        // A key-shaped value is hunted everywhere, as a listed field's is.
        let body = br#"{"env":[{"name":"OPENAI_API_KEY","value":"sk-0123456789abcdef"}],"echo":"sk-0123456789abcdef"}"#;
        let (out, _) = stored_body(body, ct, 1 << 20, &rules, &mut Secrets::default());
        assert!(!String::from_utf8_lossy(&out).contains("sk-0123456789abcdef"));
        // One level down (a model's tool-call arguments) only the listed names: the
        // agent carries `license_key` into the tool's URL.
        let answer = br#"{"tool_calls":[{"function":{"name":"lookup_license","arguments":"{\"license_key\":\"ACME-7F3K-99QX\",\"password\":\"pw-123456789\",\"github_token\":\"ghp_0123456789abcdef\"}"}}]}"#;
        let (out, _) = stored_body(answer, ct, 1 << 20, &rules, &mut Secrets::default());
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(r#"\"license_key\":\"ACME-7F3K-99QX\""#),
            "{text}"
        );
        // A token, a secret, a password or a private key still goes.
        assert!(!text.contains("pw-123456789"), "{text}");
        assert!(!text.contains("ghp_0123456789abcdef"), "{text}");
    }
}
