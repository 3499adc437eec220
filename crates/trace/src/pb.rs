//! Hand-written OTLP protobuf encoding for live export.
//!
//! Live export turns every recorded exchange into a span while the proxy is under load,
//! so it writes the wire bytes straight from borrowed fields: no intermediate message
//! structs, no copies of attribute keys. The layout is `ExportTraceServiceRequest` from
//! opentelemetry-proto (the batch export uses the generated types; a test decodes these
//! bytes with them and compares).

use super::spans::{AttrValue, Span, SCHEMA_URL};

const VARINT: u32 = 0;
const I64: u32 = 1;
const LEN: u32 = 2;
const I32: u32 = 5;

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_key(buf: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(buf, ((field << 3) | wire) as u64);
}

fn put_len_prefixed(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_key(buf, field, LEN);
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// Size of a length-delimited field holding `len` bytes (tag < 16 fits one byte).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// An attribute value, borrowed.
#[derive(Clone, Copy)]
pub enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    Strs(&'a [String]),
}

impl<'a> From<&'a AttrValue> for Val<'a> {
    fn from(v: &'a AttrValue) -> Self {
        match v {
            AttrValue::Str(s) => Val::Str(s),
            AttrValue::Int(i) => Val::Int(*i),
            AttrValue::Double(d) => Val::Double(*d),
            AttrValue::Bool(b) => Val::Bool(*b),
            AttrValue::StrArray(a) => Val::Strs(a),
        }
    }
}

/// Length of an `AnyValue` message body.
fn any_len(v: Val) -> usize {
    match v {
        Val::Str(s) => field_len(s.len()),
        Val::Int(i) => 1 + varint_len(i as u64),
        Val::Double(_) => 9,
        Val::Bool(_) => 2,
        Val::Strs(a) => field_len(a.iter().map(|s| field_len(field_len(s.len()))).sum()),
    }
}

fn put_any(buf: &mut Vec<u8>, v: Val) {
    match v {
        Val::Str(s) => put_len_prefixed(buf, 1, s.as_bytes()),
        Val::Bool(b) => {
            put_key(buf, 2, VARINT);
            buf.push(b as u8);
        }
        Val::Int(i) => {
            put_key(buf, 3, VARINT);
            put_varint(buf, i as u64);
        }
        Val::Double(d) => {
            put_key(buf, 4, I64);
            buf.extend_from_slice(&d.to_le_bytes());
        }
        Val::Strs(a) => {
            // ArrayValue { repeated AnyValue values = 1 }
            let inner: usize = a.iter().map(|s| field_len(field_len(s.len()))).sum();
            put_key(buf, 5, LEN);
            put_varint(buf, inner as u64);
            for s in a {
                put_key(buf, 1, LEN);
                put_varint(buf, field_len(s.len()) as u64);
                put_len_prefixed(buf, 1, s.as_bytes());
            }
        }
    }
}

fn kv_len(key: &str, v: Val) -> usize {
    field_len(key.len()) + field_len(any_len(v))
}

/// Writes a `KeyValue` as field `field` of the enclosing message.
fn put_kv(buf: &mut Vec<u8>, field: u32, key: &str, v: Val) {
    put_key(buf, field, LEN);
    put_varint(buf, kv_len(key, v) as u64);
    put_len_prefixed(buf, 1, key.as_bytes());
    put_key(buf, 2, LEN);
    put_varint(buf, any_len(v) as u64);
    put_any(buf, v);
}

/// Builds one `Span` message body.
pub struct SpanWriter {
    buf: Vec<u8>,
}

impl SpanWriter {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        trace_id: &[u8; 16],
        span_id: &[u8; 8],
        parent: Option<[u8; 8]>,
        name: &[&str],
        kind: i32,
        start_ns: u64,
        end_ns: u64,
    ) -> SpanWriter {
        let mut buf = Vec::with_capacity(512);
        put_len_prefixed(&mut buf, 1, trace_id);
        put_len_prefixed(&mut buf, 2, span_id);
        if let Some(p) = parent {
            put_len_prefixed(&mut buf, 4, &p);
        }
        let name_len: usize = name.iter().map(|p| p.len()).sum();
        put_key(&mut buf, 5, LEN);
        put_varint(&mut buf, name_len as u64);
        for part in name {
            buf.extend_from_slice(part.as_bytes());
        }
        put_key(&mut buf, 6, VARINT);
        put_varint(&mut buf, kind as u64);
        put_key(&mut buf, 7, I64);
        buf.extend_from_slice(&start_ns.to_le_bytes());
        put_key(&mut buf, 8, I64);
        buf.extend_from_slice(&end_ns.max(start_ns).to_le_bytes());
        SpanWriter { buf }
    }

    pub fn attr(&mut self, key: &str, v: Val) -> &mut Self {
        put_kv(&mut self.buf, 9, key, v);
        self
    }

    pub fn event(&mut self, time_ns: u64, name: &str, attrs: &[(String, AttrValue)]) -> &mut Self {
        let body = 9
            + field_len(name.len())
            + attrs
                .iter()
                .map(|(k, v)| field_len(kv_len(k, v.into())))
                .sum::<usize>();
        put_key(&mut self.buf, 11, LEN);
        put_varint(&mut self.buf, body as u64);
        put_key(&mut self.buf, 1, I64);
        self.buf.extend_from_slice(&time_ns.to_le_bytes());
        put_len_prefixed(&mut self.buf, 2, name.as_bytes());
        for (k, v) in attrs {
            put_kv(&mut self.buf, 3, k, v.into());
        }
        self
    }

    pub fn error(&mut self, message: &str) -> &mut Self {
        // Status { message = 2; code = 3 (ERROR = 2) }
        let body = field_len(message.len()) + 2;
        put_key(&mut self.buf, 15, LEN);
        put_varint(&mut self.buf, body as u64);
        put_len_prefixed(&mut self.buf, 2, message.as_bytes());
        put_key(&mut self.buf, 3, VARINT);
        put_varint(&mut self.buf, 2);
        self
    }

    /// Ends the span. Flags go last, as the generated code orders fields by number.
    pub fn finish(mut self) -> Vec<u8> {
        // flags (field 16, fixed32): sampled.
        put_varint(&mut self.buf, ((16 << 3) | I32) as u64);
        self.buf.extend_from_slice(&1u32.to_le_bytes());
        self.buf
    }

    /// Encodes an already built span.
    pub fn from_span(trace_id: &[u8; 16], sp: &Span, parent: Option<[u8; 8]>) -> Vec<u8> {
        let mut w = SpanWriter::new(
            trace_id,
            &sp.span_id,
            parent,
            &[&sp.name],
            sp.kind as i32,
            sp.start_ns,
            sp.end_ns,
        );
        for (k, v) in &sp.attributes {
            w.attr(k, v.into());
        }
        for e in &sp.events {
            w.event(e.time_ns, &e.name, &e.attributes);
        }
        if let Some(m) = &sp.error {
            w.error(m);
        }
        w.finish()
    }
}

/// The `ExportTraceServiceRequest` for encoded spans of one session.
pub fn request(session: &str, spans: &[Vec<u8>]) -> Vec<u8> {
    let version = env!("CARGO_PKG_VERSION");
    let resource_body = field_len(kv_len("service.name", Val::Str("tapedeck")))
        + field_len(kv_len("tapedeck.session", Val::Str(session)));
    let scope_body = field_len("tapedeck".len()) + field_len(version.len());
    let spans_len: usize = spans.iter().map(|s| field_len(s.len())).sum();
    let scope_spans_body = field_len(scope_body) + spans_len + field_len(SCHEMA_URL.len());
    let resource_spans_body = field_len(resource_body) + field_len(scope_spans_body);
    let mut buf = Vec::with_capacity(field_len(resource_spans_body));
    put_key(&mut buf, 1, LEN);
    put_varint(&mut buf, resource_spans_body as u64);
    // resource
    put_key(&mut buf, 1, LEN);
    put_varint(&mut buf, resource_body as u64);
    put_kv(&mut buf, 1, "service.name", Val::Str("tapedeck"));
    put_kv(&mut buf, 1, "tapedeck.session", Val::Str(session));
    // scope_spans
    put_key(&mut buf, 2, LEN);
    put_varint(&mut buf, scope_spans_body as u64);
    put_key(&mut buf, 1, LEN);
    put_varint(&mut buf, scope_body as u64);
    put_len_prefixed(&mut buf, 1, b"tapedeck");
    put_len_prefixed(&mut buf, 2, version.as_bytes());
    for s in spans {
        put_len_prefixed(&mut buf, 2, s);
    }
    put_len_prefixed(&mut buf, 3, SCHEMA_URL.as_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spans::{span_id, trace_id, Role, SpanEvent, SpanKind};
    use prost::Message;

    #[test]
    fn hand_encoded_spans_decode_to_what_the_generated_types_encode() {
        let tid = trace_id("s");
        let mut sp = Span {
            span_id: span_id("s", "llm", 3, 0),
            parent: None,
            name: "chat gpt-4o".into(),
            kind: SpanKind::Client,
            role: Role::Llm,
            step: Some(3),
            start_ns: 1_795_000_000_000_000_000,
            end_ns: 1_795_000_000_500_000_000,
            attributes: vec![
                (
                    "gen_ai.operation.name".into(),
                    AttrValue::Str("chat".into()),
                ),
                ("gen_ai.usage.input_tokens".into(), AttrValue::Int(1234)),
                ("gen_ai.request.temperature".into(), AttrValue::Double(0.7)),
                ("gen_ai.request.stream".into(), AttrValue::Bool(true)),
                (
                    "gen_ai.response.finish_reasons".into(),
                    AttrValue::StrArray(vec!["tool_calls".into(), "stop".into()]),
                ),
                ("negative".into(), AttrValue::Int(-5)),
                ("long".into(), AttrValue::Str("x".repeat(300))),
            ],
            error: Some("HTTP 500".into()),
            events: vec![SpanEvent {
                name: "gen_ai.tool.result".into(),
                time_ns: 1_795_000_000_600_000_000,
                attributes: vec![("tapedeck.result.length".into(), AttrValue::Int(49))],
            }],
            children: vec![],
            flag: None,
        };
        let parent = Some(span_id("s", "root", 0, 0));
        let mine = request(
            "s",
            &[
                SpanWriter::from_span(&tid, &sp, parent),
                SpanWriter::from_span(&tid, &sp, None),
            ],
        );
        let decoded =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                mine.as_slice(),
            )
            .unwrap();
        let theirs = crate::otlp::request(
            "s",
            crate::otlp::proto_spans(&tid, vec![(sp.clone(), parent), (sp.clone(), None)]),
        );
        assert_eq!(decoded, theirs);
        sp.error = None;
        sp.events.clear();
        let one = request("s", &[SpanWriter::from_span(&tid, &sp, None)]);
        let theirs = crate::otlp::request("s", crate::otlp::proto_spans(&tid, vec![(sp, None)]));
        assert_eq!(one, theirs.encode_to_vec(), "byte for byte, in field order");
    }
}
