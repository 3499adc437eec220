//! OTLP: spans as OTLP/JSON (files) and OTLP/HTTP protobuf (collectors), and the push.
//!
//! `--endpoint` takes an OTLP/HTTP base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` does, and
//! appends `/v1/traces` unless the URL already ends with it. Pushes retry 429/502/503/504
//! and connection failures with backoff (honouring `Retry-After`), never a 400.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span as PSpan, Status,
};
use prost::Message;
use serde_json::{json, Value};
use thiserror::Error;

use super::spans::{hex, AttrValue, Span, Trace, SCHEMA_URL};

#[derive(Debug, Error)]
pub enum OtlpError {
    #[error("bad OTLP endpoint {url:?}: it must start with http:// or https://")]
    NotHttp { url: String },
    #[error("bad OTLP endpoint {url:?}: {source}")]
    BadUri {
        url: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("bad OTLP request to {url:?}: {source}")]
    BadRequest {
        url: String,
        #[source]
        source: http::Error,
    },
    #[error("the OTLP client's TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot reach the OTLP endpoint {url}: {why} (is the collector running and listening there?)")]
    Unreachable { url: String, why: String },
    #[error("the OTLP endpoint {url} refused the spans: HTTP {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("no OTLP endpoint: pass --endpoint URL or set OTEL_EXPORTER_OTLP_ENDPOINT")]
    NoEndpoint,
}

/// The traces URL for a base endpoint.
pub fn traces_url(base: &str) -> String {
    let b = base.trim_end_matches('/');
    if b.ends_with("/v1/traces") {
        b.to_string()
    } else {
        format!("{b}/v1/traces")
    }
}

/// Endpoint and extra headers: the flag, else the standard OTel environment variables.
pub fn resolve_endpoint(flag: Option<&str>) -> Result<(String, Vec<(String, String)>), OtlpError> {
    let url = match flag {
        Some(u) => traces_url(u),
        None => match std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Ok(u) if !u.trim().is_empty() => traces_url(u.trim()),
                _ => return Err(OtlpError::NoEndpoint),
            },
        },
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(OtlpError::NotHttp { url });
    }
    let headers = parse_headers(&std::env::var("OTEL_EXPORTER_OTLP_HEADERS").unwrap_or_default());
    Ok((url, headers))
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `k1=v1,k2=v2`, values percent-decoded; pairs without
/// `=` or with an empty name are skipped.
pub fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((
                k.trim().to_string(),
                tapedeck_model::exchange::canonical::percent_decode(v.trim()),
            ))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn any(v: &AttrValue) -> AnyValue {
    let value = match v {
        AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
        AttrValue::Int(i) => any_value::Value::IntValue(*i),
        AttrValue::Double(d) => any_value::Value::DoubleValue(*d),
        AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
        AttrValue::StrArray(a) => any_value::Value::ArrayValue(ArrayValue {
            values: a
                .iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s.clone())),
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

fn kvs(attrs: &[(String, AttrValue)]) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(any(v)),
            ..Default::default()
        })
        .collect()
}

fn resource_attrs(session: &str) -> Vec<(String, AttrValue)> {
    vec![
        ("service.name".into(), AttrValue::Str("tapedeck".into())),
        ("tapedeck.session".into(), AttrValue::Str(session.into())),
    ]
}

fn into_any(v: AttrValue) -> AnyValue {
    let value = match v {
        AttrValue::Str(s) => any_value::Value::StringValue(s),
        AttrValue::Int(i) => any_value::Value::IntValue(i),
        AttrValue::Double(d) => any_value::Value::DoubleValue(d),
        AttrValue::Bool(b) => any_value::Value::BoolValue(b),
        AttrValue::StrArray(a) => any_value::Value::ArrayValue(ArrayValue {
            values: a
                .into_iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

fn into_kvs(attrs: Vec<(String, AttrValue)>) -> Vec<KeyValue> {
    attrs
        .into_iter()
        .map(|(key, v)| KeyValue {
            key,
            value: Some(into_any(v)),
            ..Default::default()
        })
        .collect()
}

/// Spans of one trace as protobuf messages (any subset: live export sends a few). The
/// spans are moved, not copied: live export does this for every exchange.
pub fn proto_spans(trace_id: &[u8; 16], spans: Vec<(Span, Option<[u8; 8]>)>) -> Vec<PSpan> {
    spans
        .into_iter()
        .map(|(sp, parent)| PSpan {
            trace_id: trace_id.to_vec(),
            span_id: sp.span_id.to_vec(),
            parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 1,
            name: sp.name,
            kind: sp.kind as i32,
            start_time_unix_nano: sp.start_ns,
            end_time_unix_nano: sp.end_ns,
            attributes: into_kvs(sp.attributes),
            events: sp
                .events
                .into_iter()
                .map(|e| span::Event {
                    time_unix_nano: e.time_ns,
                    name: e.name,
                    attributes: into_kvs(e.attributes),
                    dropped_attributes_count: 0,
                })
                .collect(),
            status: sp.error.map(|message| Status {
                message,
                code: status::StatusCode::Error as i32,
            }),
            ..Default::default()
        })
        .collect()
}

/// Wraps spans of one session in an export request.
pub fn request(session: &str, spans: Vec<PSpan>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: kvs(&resource_attrs(session)),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tapedeck".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: SCHEMA_URL.into(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The whole trace as a protobuf export request.
pub fn trace_request(trace: &Trace) -> ExportTraceServiceRequest {
    let with_parents: Vec<(Span, Option<[u8; 8]>)> = trace
        .spans
        .iter()
        .map(|sp| (sp.clone(), sp.parent.map(|p| trace.spans[p].span_id)))
        .collect();
    request(&trace.session, proto_spans(&trace.trace_id, with_parents))
}

fn json_any(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => json!({"stringValue": s}),
        // int64 is a string in OTLP/JSON.
        AttrValue::Int(i) => json!({"intValue": i.to_string()}),
        AttrValue::Double(d) => json!({"doubleValue": d}),
        AttrValue::Bool(b) => json!({"boolValue": b}),
        AttrValue::StrArray(a) => {
            json!({"arrayValue": {"values": a.iter().map(|s| json!({"stringValue": s})).collect::<Vec<_>>()}})
        }
    }
}

fn json_kvs(attrs: &[(String, AttrValue)]) -> Vec<Value> {
    attrs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": json_any(v)}))
        .collect()
}

/// The trace as OTLP/JSON (`TracesData`): hex ids, decimal-string times, integer enums,
/// built whole ([`write_json`] streams the same document).
pub fn to_json(trace: &Trace) -> Value {
    let spans: Vec<Value> = trace.spans.iter().map(|sp| span_json(trace, sp)).collect();
    envelope(trace, Value::Array(spans))
}

/// Writes [`to_json`]'s document, pretty-printed, one span at a time: a 53,000-span
/// session's whole DOM took 1.3 GB where this holds one span.
pub fn write_json(trace: &Trace, out: impl std::io::Write) -> serde_json::Result<()> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Doc<'a> {
        resource_spans: [ResourceSpans<'a>; 1],
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ResourceSpans<'a> {
        resource: Value,
        scope_spans: [ScopeSpans<'a>; 1],
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ScopeSpans<'a> {
        scope: Value,
        schema_url: &'static str,
        spans: Spans<'a>,
    }
    struct Spans<'a>(&'a Trace);
    impl serde::Serialize for Spans<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.spans.iter().map(|sp| span_json(self.0, sp)))
        }
    }
    let doc = Doc {
        resource_spans: [ResourceSpans {
            resource: resource_json(trace),
            scope_spans: [ScopeSpans {
                scope: scope_json(),
                schema_url: SCHEMA_URL,
                spans: Spans(trace),
            }],
        }],
    };
    serde_json::to_writer_pretty(out, &doc)
}

fn resource_json(trace: &Trace) -> Value {
    json!({"attributes": json_kvs(&resource_attrs(&trace.session))})
}

fn scope_json() -> Value {
    json!({"name": "tapedeck", "version": env!("CARGO_PKG_VERSION")})
}

fn envelope(trace: &Trace, spans: Value) -> Value {
    json!({"resourceSpans": [{
        "resource": resource_json(trace),
        "scopeSpans": [{
            "scope": scope_json(),
            "schemaUrl": SCHEMA_URL,
            "spans": spans,
        }],
    }]})
}

fn span_json(trace: &Trace, sp: &Span) -> Value {
    let mut v = json!({
        "traceId": hex(&trace.trace_id),
        "spanId": hex(&sp.span_id),
        "flags": 1,
        "name": sp.name,
        "kind": sp.kind as i32,
        "startTimeUnixNano": sp.start_ns.to_string(),
        "endTimeUnixNano": sp.end_ns.to_string(),
        "attributes": json_kvs(&sp.attributes),
    });
    if let Some(p) = sp.parent {
        v["parentSpanId"] = json!(hex(&trace.spans[p].span_id));
    }
    if !sp.events.is_empty() {
        v["events"] = json!(sp
            .events
            .iter()
            .map(|e| json!({"timeUnixNano": e.time_ns.to_string(), "name": e.name, "attributes": json_kvs(&e.attributes)}))
            .collect::<Vec<_>>());
    }
    if let Some(m) = &sp.error {
        v["status"] = json!({"code": 2, "message": m});
    }
    v
}

/// How long one export request may wait for its answer: OTLP exporters' default
/// (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends export requests to one OTLP/HTTP endpoint.
#[derive(Clone)]
pub struct Pusher {
    url: String,
    headers: Vec<(String, String)>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub attempts: u32,
}

impl Pusher {
    pub fn new(url: String, headers: Vec<(String, String)>) -> Result<Pusher, OtlpError> {
        let _: http::Uri = url.parse().map_err(|source| OtlpError::BadUri {
            url: url.clone(),
            source,
        })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Pusher {
            url,
            headers,
            client: Client::builder(TokioExecutor::new()).build(https),
            attempts: 5,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts one export request (protobuf), retrying what OTLP says may be retried.
    pub async fn push(&self, req: &ExportTraceServiceRequest) -> Result<(), OtlpError> {
        self.push_bytes(Bytes::from(req.encode_to_vec())).await
    }

    /// Posts an already encoded export request.
    pub async fn push_bytes(&self, body: Bytes) -> Result<(), OtlpError> {
        self.push_bytes_or_stop(body, None).await
    }

    /// [`Pusher::push_bytes`], retrying no more once `stop` says true (a recorder that is
    /// stopping does not sit out a back-off of seconds for a collector that is failing).
    pub async fn push_bytes_or_stop(
        &self,
        body: Bytes,
        stop: Option<&tokio::sync::watch::Receiver<bool>>,
    ) -> Result<(), OtlpError> {
        let mut delay = Duration::from_millis(300);
        let mut last_err = String::new();
        let (mut tried, mut stopped) = (0, "");
        for attempt in 1..=self.attempts {
            tried = attempt;
            let mut r = http::Request::post(&self.url)
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .header(
                    http::header::USER_AGENT,
                    concat!("tapedeck/", env!("CARGO_PKG_VERSION")),
                );
            for (k, v) in &self.headers {
                r = r.header(k.as_str(), v.as_str());
            }
            let r = r
                .body(Full::new(body.clone()))
                .map_err(|source| OtlpError::BadRequest {
                    url: self.url.clone(),
                    source,
                })?;
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(r)).await {
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    let text = resp
                        .into_body()
                        .collect()
                        .await
                        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                        .unwrap_or_default();
                    if (200..300).contains(&status) {
                        return Ok(());
                    }
                    if matches!(status, 429 | 502 | 503 | 504)
                        && attempt < self.attempts
                        && !stopping(stop)
                    {
                        last_err = format!("HTTP {status}");
                        let wait = retry_after
                            .map(Duration::from_secs)
                            .unwrap_or(delay)
                            .min(Duration::from_secs(30));
                        tracing::warn!(
                            "OTLP endpoint {} answered {status}; retrying in {:?}",
                            self.url,
                            wait
                        );
                        if back_off(wait, stop).await {
                            delay *= 2;
                            continue;
                        }
                    }
                    return Err(OtlpError::Refused {
                        url: self.url.clone(),
                        status,
                        body: text.chars().take(300).collect(),
                    });
                }
                Ok(Err(e)) => last_err = format!("{}: {}", self.url, error_chain(&e)),
                Err(_) => last_err = format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            }
            if attempt < self.attempts {
                tracing::debug!("OTLP push attempt {attempt} failed: {last_err}");
                if !back_off(delay, stop).await {
                    stopped = "; stopping";
                    break;
                }
                delay *= 2;
            }
        }
        Err(OtlpError::Unreachable {
            url: self.url.clone(),
            why: format!(
                "{last_err} (after {}{stopped})",
                crate::live::counted(tried.into(), "attempt")
            ),
        })
    }
}

/// Whether `stop` says to retry no more.
fn stopping(stop: Option<&tokio::sync::watch::Receiver<bool>>) -> bool {
    stop.is_some_and(|s| *s.borrow())
}

/// Waits `wait` before a retry; false (at once) if `stop` says true first.
async fn back_off(wait: Duration, stop: Option<&tokio::sync::watch::Receiver<bool>>) -> bool {
    let Some(stop) = stop else {
        tokio::time::sleep(wait).await;
        return true;
    };
    let mut watching = stop.clone();
    tokio::select! {
        () = tokio::time::sleep(wait) => !*stop.borrow(),
        _ = watching.wait_for(|s| *s) => false,
    }
}

/// An error and its causes on one line (the push client's errors wrap the I/O error that
/// says what went wrong).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streamed_document_is_byte_for_byte_the_whole_one() {
        use crate::spans::{AttrValue, Role, Span, SpanEvent, SpanKind};
        let span = |name: &str, parent: Option<usize>, error: Option<&str>| Span {
            span_id: [parent.map_or(1, |p| p as u8 + 2); 8],
            parent,
            name: name.into(),
            kind: SpanKind::Client,
            role: Role::Llm,
            step: Some(1),
            start_ns: 1_764_000_000_000_000_000,
            end_ns: 1_764_000_000_500_000_000,
            attributes: vec![
                ("gen_ai.usage.input_tokens".into(), AttrValue::Int(12)),
                ("a \"quoted\" key".into(), AttrValue::Str("é\n".into())),
            ],
            error: error.map(str::to_string),
            events: vec![SpanEvent {
                name: "gen_ai.choice".into(),
                time_ns: 7,
                attributes: vec![("x".into(), AttrValue::Bool(true))],
            }],
            children: Vec::new(),
            flag: None,
        };
        let trace = Trace {
            session: "s".into(),
            trace_id: crate::spans::trace_id("s"),
            spans: vec![
                span("root", None, None),
                span("chat", Some(0), Some("HTTP 500")),
            ],
        };
        let mut streamed = Vec::new();
        write_json(&trace, &mut streamed).unwrap();
        let whole = serde_json::to_string_pretty(&to_json(&trace)).unwrap();
        assert_eq!(String::from_utf8(streamed).unwrap(), whole);
        assert!(whole.contains("parentSpanId") && whole.contains("\"code\": 2"));
    }

    #[test]
    fn endpoint_gets_v1_traces_once() {
        assert_eq!(traces_url("http://h:4318"), "http://h:4318/v1/traces");
        assert_eq!(traces_url("http://h:4318/"), "http://h:4318/v1/traces");
        assert_eq!(
            traces_url("http://h:4318/v1/traces"),
            "http://h:4318/v1/traces"
        );
    }

    #[test]
    fn otlp_headers_are_percent_decoded_and_bad_escapes_stay_as_they_are() {
        assert_eq!(
            parse_headers("api-key=abc%20def, x = y ,novalue,=v"),
            vec![
                ("api-key".to_string(), "abc def".to_string()),
                ("x".to_string(), "y".to_string())
            ]
        );
        assert_eq!(
            parse_headers("k=%aé,k2=%E2%82"),
            vec![
                ("k".to_string(), "%aé".to_string()),
                ("k2".to_string(), "\u{FFFD}".to_string())
            ]
        );
    }
}
