//! [`BodyScrubber`]: every byte of a body on its way to the store passes through here,
//! whether the body is kept whole or written in segments while it streams.
//!
//! Three stages: the field redactor the content type calls for (form, multipart, and the
//! lexical JSON scanner for anything textual), the literal scrub of the secret values
//! seen so far, then the keys found by their shape in any text (`shapes`). Each stage
//! holds back only what it must (a key, a delimiter, the longest secret − 1 bytes, a
//! key still growing), and the output is the same however the input is cut, so a body
//! streamed at record time and the same body read whole at replay time are stored and
//! keyed alike.

use super::eventstream::EventStreamScrub;
use super::form::FormFields;
use super::html::HtmlInputs;
use super::json::JsonFields;
use super::multipart::{self, MultipartFields};
use super::secrets::LiteralStream;
use super::shapes::{self, ShapeScrub};
use super::sse::SseSplit;
use super::url_params::UrlParamScrub;
use super::userinfo::UserinfoScrub;
use super::xml::XmlFields;
use super::{
    answer_secrets, Collected, FieldNames, MetadataAnswer, Secrets, CLOUD_METADATA_FIELDS,
};
use crate::rules::{Rules, REDACTED};

pub struct BodyScrubber {
    // The stages fewer bodies need are boxed: a recorder's exchange holds two
    // scrubbers in the futures it moves (2.8 KB each, 0.8 KB so).
    form: Option<Box<FormFields>>,
    multipart: Option<Box<MultipartFields>>,
    json: Option<JsonFields>,
    xml: Option<Box<XmlFields>>,
    html: Option<Box<HtmlInputs>>,
    sse: Option<Box<SseSplit>>,
    eventstream: Option<Box<EventStreamScrub>>,
    urls: Option<UrlParamScrub>,
    userinfo: Option<Box<UserinfoScrub>>,
    shapes: Option<ShapeScrub>,
    literal: LiteralStream,
    /// The whole body is a secret (see [`BodyScrubber::whole_secret`]): stored as the
    /// marker; whether a byte of it was read.
    whole_secret: Option<bool>,
    stage: Vec<u8>,
    spare: Vec<u8>,
    out: Vec<u8>,
}

/// Content types whose bytes are text in which JSON may appear.
fn is_textual(ct: &str) -> bool {
    ct.is_empty()
        || ct.starts_with("text/")
        || ct.contains("json")
        || ct.starts_with("application/javascript")
        || ct.starts_with("application/xml")
        || ct.starts_with("application/x-www-form-urlencoded")
        || ct.starts_with("multipart/")
        // Kubernetes' apply patches, GraphQL queries.
        || ct.contains("yaml")
        || ct.contains("graphql")
}

impl BodyScrubber {
    /// A scrubber for a body of this content type, with the secrets known now.
    pub fn new(content_type: Option<&str>, rules: &Rules, secrets: &Secrets) -> BodyScrubber {
        Self::with_fields(content_type, FieldNames::of(rules), secrets)
    }

    /// [`BodyScrubber::new`] with the rules' secret field names already built (a proxy
    /// builds them once, not twice per exchange).
    pub fn with_fields(
        content_type: Option<&str>,
        fields: FieldNames,
        secrets: &Secrets,
    ) -> BodyScrubber {
        Self::build(content_type, fields, secrets, false)
    }

    /// [`BodyScrubber::with_fields`] for the answer to a request to `url`: a stream API's
    /// JSON answer (see [`streams_json_array`]) is read an element at a time for a
    /// secret spread over them. A cloud metadata service's answers hold the machine's
    /// credentials (an SDK asks for them through the proxy): their `Token` fields are
    /// secrets too, and IMDSv2's session token is the whole body. Services that mint a
    /// credential in an answer field of a plain name (see `answer_secrets`) have it redacted.
    pub fn for_answer(
        content_type: Option<&str>,
        fields: FieldNames,
        secrets: &Secrets,
        url: &str,
    ) -> BodyScrubber {
        let (metadata, minted) = answer_secrets(url);
        let scrubber = match metadata {
            MetadataAnswer::No => {
                let fields = match minted.is_empty() {
                    true => fields,
                    false => fields.adding_scalar(&minted),
                };
                Self::build(content_type, fields, secrets, streams_json_array(url))
            }
            MetadataAnswer::Fields => {
                let fields = fields.adding(CLOUD_METADATA_FIELDS);
                Self::build(content_type, fields, secrets, false)
            }
            MetadataAnswer::Secret => {
                Self::build(content_type, fields, secrets, false).whole_secret()
            }
        };
        scrubber.answering()
    }

    /// An answer's scrubber reads no JWT by its shape (see `shapes::JWT_MASK`).
    fn answering(mut self) -> BodyScrubber {
        if let Some(k) = self.shapes.as_mut() {
            k.keep_also(shapes::JWT_MASK);
        }
        self
    }

    fn build(
        content_type: Option<&str>,
        fields: FieldNames,
        secrets: &Secrets,
        json_stream: bool,
    ) -> BodyScrubber {
        let ct = content_type.unwrap_or("").trim().to_ascii_lowercase();
        let on = !fields.is_empty();
        let form = (on && crate::exchange::canonical::is_form(&ct))
            .then(|| FormFields::new(fields.clone()));
        let multipart = if on {
            multipart::boundary(&ct).map(|b| MultipartFields::new(fields.clone(), &b))
        } else {
            None
        };
        let xml = (on && ct.contains("xml")).then(|| XmlFields::new(fields.clone()));
        let html = (on && ct.contains("html")).then(|| HtmlInputs::new(fields.clone()));
        let kept_shapes = fields.kept_shapes();
        // Secret parameters of URLs written in any text but a form (whose fields are
        // read as a form's: an S3 upload form's `key` is the object's name).
        let text = on && form.is_none() && is_textual(&ct);
        let urls = text.then(|| UrlParamScrub::new(fields.clone()));
        // And the passwords in their userinfo (`postgres://app:…@db`).
        let userinfo = text.then(|| Box::new(UserinfoScrub::new()));
        let json = text.then(|| JsonFields::new(fields));
        // A secret streamed a few characters an event (a model repeating a key), in
        // server-sent events or a JSON value a line.
        let lines = [
            "application/x-ndjson",
            "application/jsonl",
            "application/json-lines",
        ]
        .iter()
        .any(|t| ct.starts_with(t));
        // A body with no content type is sniffed: an event stream if it begins as one.
        // A stream API's JSON answer is one array streamed an element at a time.
        let array = json_stream && !lines && ct.contains("json");
        let sse = (lines || array || ct.is_empty() || ct.starts_with("text/event-stream"))
            .then(|| secrets.finder())
            .flatten()
            .map(|f| {
                if array {
                    SseSplit::json_array(f)
                } else if ct.is_empty() {
                    SseSplit::new(f, false).sniffing()
                } else {
                    SseSplit::new(f, lines)
                }
            });
        // Amazon's binary event stream (Bedrock): scrubbed message by message and framed
        // again, so a secret replaced does not break a frame.
        let eventstream = (ct.starts_with("application/vnd.amazon.eventstream")
            && !secrets.is_empty())
        .then(|| EventStreamScrub::new(secrets));
        // Keys by their shape, in any text (not in a binary event stream's frames).
        let shapes = (on && is_textual(&ct)).then(|| ShapeScrub::new(kept_shapes));
        BodyScrubber {
            form: form.map(Box::new),
            multipart: multipart.map(Box::new),
            json,
            xml: xml.map(Box::new),
            html: html.map(Box::new),
            sse: sse.map(Box::new),
            eventstream: eventstream.map(Box::new),
            urls,
            userinfo,
            shapes,
            literal: secrets.stream(),
            whole_secret: None,
            stage: Vec::new(),
            spare: Vec::new(),
            out: Vec::new(),
        }
    }

    fn is_passthrough(&self) -> bool {
        self.form.is_none()
            && self.multipart.is_none()
            && self.json.is_none()
            && self.xml.is_none()
            && self.html.is_none()
            && self.sse.is_none()
            && self.eventstream.is_none()
            && self.urls.is_none()
            && self.userinfo.is_none()
            && self.shapes.is_none()
            && self.literal.is_passthrough()
    }

    /// A body that is a secret whole (a metadata service's session token): nothing of it
    /// is stored but the marker.
    fn whole_secret(mut self) -> BodyScrubber {
        self.whole_secret = Some(false);
        self
    }

    /// The bytes to store for this piece (possibly fewer: some are held back).
    pub fn feed<'a>(&'a mut self, data: &'a [u8]) -> &'a [u8] {
        if let Some(seen) = self.whole_secret.as_mut() {
            *seen |= !data.is_empty();
            return &[];
        }
        if self.is_passthrough() {
            return data;
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.reserve(data.len());
        self.feed_into(data, &mut out);
        self.out = out;
        &self.out
    }

    /// [`BodyScrubber::feed`], the bytes to store appended to `out`. Each field redactor
    /// reads what the one before it gave, the first the piece itself (it was copied first,
    /// 3 % of a large body's recording).
    pub fn feed_into(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if let Some(seen) = self.whole_secret.as_mut() {
            *seen |= !data.is_empty();
            return;
        }
        let BodyScrubber {
            form,
            multipart,
            json,
            xml,
            html,
            sse,
            eventstream,
            urls,
            userinfo,
            shapes,
            literal,
            stage,
            spare,
            ..
        } = self;
        let mut staged = false;
        let mut run = |feed: &mut dyn FnMut(&[u8], &mut Vec<u8>)| {
            let input = if staged { stage.as_slice() } else { data };
            // Grown once to about the piece's size, not doubled up to it byte run by run.
            spare.clear();
            spare.reserve(input.len());
            feed(input, spare);
            std::mem::swap(stage, spare);
            staged = true;
        };
        if let Some(f) = form.as_mut() {
            run(&mut |i, o| f.feed(i, o));
        }
        if let Some(m) = multipart.as_mut() {
            run(&mut |i, o| m.feed(i, o));
        }
        if let Some(j) = json.as_mut() {
            run(&mut |i, o| j.feed(i, o));
        }
        if let Some(x) = xml.as_mut() {
            run(&mut |i, o| x.feed(i, o));
        }
        if let Some(h) = html.as_mut() {
            run(&mut |i, o| h.feed(i, o));
        }
        if let Some(s) = sse.as_mut() {
            run(&mut |i, o| s.feed(i, o));
        }
        if let Some(e) = eventstream.as_mut() {
            run(&mut |i, o| e.feed(i, o));
        }
        if let Some(u) = urls.as_mut() {
            run(&mut |i, o| u.feed(i, o));
        }
        if let Some(u) = userinfo.as_mut() {
            run(&mut |i, o| u.feed(i, o));
        }
        // Keys by their shape last: a known secret is replaced whole first (`Bearer
        // sk-…` as one value).
        match shapes.as_mut() {
            Some(k) => {
                run(&mut |i, o| literal.feed(i, o));
                k.feed(stage, out);
            }
            None => literal.feed(if staged { stage.as_slice() } else { data }, out),
        }
    }

    /// How many bytes fed so far are held back, to be written when more arrive.
    pub fn held(&self) -> usize {
        self.literal.held()
            + self.form.as_deref().map_or(0, FormFields::held)
            + self.multipart.as_deref().map_or(0, MultipartFields::held)
            + self.json.as_ref().map_or(0, JsonFields::held)
            + self.xml.as_deref().map_or(0, XmlFields::held)
            + self.html.as_deref().map_or(0, HtmlInputs::held)
            + self.sse.as_deref().map_or(0, SseSplit::held)
            + self
                .eventstream
                .as_deref()
                .map_or(0, EventStreamScrub::held)
            + self.urls.as_ref().map_or(0, UrlParamScrub::held)
            + self.userinfo.as_deref().map_or(0, UserinfoScrub::held)
            + self.shapes.as_ref().map_or(0, ShapeScrub::held)
    }

    /// The bytes held back, and the values of the fields that were redacted.
    pub fn finish(self) -> (Vec<u8>, Collected) {
        let mut found = Collected::default();
        if let Some(seen) = self.whole_secret {
            let out = if seen {
                REDACTED.as_bytes().to_vec()
            } else {
                Vec::new()
            };
            return (out, found);
        }
        let mut cur = Vec::new();
        if let Some(f) = self.form {
            found.append(f.finish(&mut cur));
        }
        if let Some(m) = self.multipart {
            found.append(m.finish(&mut cur));
        }
        if let Some(mut j) = self.json {
            let mut next = Vec::new();
            j.feed(&cur, &mut next);
            found.append(j.finish(&mut next));
            cur = next;
        }
        if let Some(mut x) = self.xml {
            let mut next = Vec::new();
            x.feed(&cur, &mut next);
            found.append(x.finish(&mut next));
            cur = next;
        }
        if let Some(mut h) = self.html {
            let mut next = Vec::new();
            h.feed(&cur, &mut next);
            found.append(h.finish(&mut next));
            cur = next;
        }
        if let Some(mut s) = self.sse {
            let mut next = Vec::new();
            s.feed(&cur, &mut next);
            s.finish(&mut next);
            cur = next;
        }
        if let Some(mut e) = self.eventstream {
            let mut next = Vec::new();
            e.feed(&cur, &mut next);
            e.finish(&mut next);
            cur = next;
        }
        if let Some(mut u) = self.urls {
            let mut next = Vec::new();
            u.feed(&cur, &mut next);
            found.append(u.finish(&mut next));
            cur = next;
        }
        if let Some(mut u) = self.userinfo {
            let mut next = Vec::new();
            u.feed(&cur, &mut next);
            found.append(u.finish(&mut next));
            cur = next;
        }
        let mut literal = self.literal;
        let mut out = Vec::new();
        literal.feed(&cur, &mut out);
        literal.finish(&mut out);
        if let Some(mut k) = self.shapes {
            let mut last = Vec::new();
            k.feed(&out, &mut last);
            k.finish(&mut last);
            found.append(k.found);
            out = last;
        }
        (out, found)
    }

    /// Scrubs a whole body at once (what [`BodyScrubber::feed`] and `finish` give).
    pub fn run(
        data: &[u8],
        content_type: Option<&str>,
        rules: &Rules,
        secrets: &Secrets,
    ) -> (Vec<u8>, Collected) {
        Self::new(content_type, rules, secrets).run_whole(data)
    }

    /// [`BodyScrubber::run`] for the answer to a request to `url` (see
    /// [`BodyScrubber::for_answer`]).
    pub fn run_answer(
        data: &[u8],
        content_type: Option<&str>,
        rules: &Rules,
        secrets: &Secrets,
        url: &str,
    ) -> (Vec<u8>, Collected) {
        let fields = FieldNames::of(rules);
        Self::for_answer(content_type, fields, secrets, url).run_whole(data)
    }

    pub(super) fn run_whole(mut self, data: &[u8]) -> (Vec<u8>, Collected) {
        let mut out = self.feed(data).to_vec();
        let (rest, found) = self.finish();
        out.extend_from_slice(&rest);
        (out, found)
    }
}

/// Whether the answer to a request to `url` (or its path) is one JSON array streamed an
/// element at a time when it comes as JSON: Google's stream methods
/// (`…/models/M:streamGenerateContent` without `alt=sse`, Gemini API and Vertex AI).
pub fn streams_json_array(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or(path);
    last.split_once(':')
        .is_some_and(|(_, verb)| verb.starts_with("stream") || verb.starts_with("serverStreaming"))
}
