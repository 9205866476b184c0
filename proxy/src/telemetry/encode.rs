//! A small protobuf writer and the OTLP messages the exporter sends: an
//! `ExportTraceServiceRequest` with one resource (the proxy), one scope
//! (`palisade-proxy`) and a batch of spans, written straight from [`SpanRecord`]s.
//!
//! Writing it here instead of converting to the SDK's span data and then to prost
//! messages is what makes export cheap: no intermediate copies of every attribute, and a
//! message's length is written once after its body (one byte reserved; a longer length
//! shifts the body, which only the span and batch levels need).

use super::record::{SpanRecord, Text, DECISIONS, NO_SCORE};
use crate::metrics::Direction;

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

/// `Span.flags`: the W3C trace flags in the low byte, then "is the parent remote known"
/// and "the parent is remote" (always, when there is one: it came from another process).
const FLAG_SAMPLED: u32 = 0x01;
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

const SPAN_KIND_SERVER: u64 = 2;
const SPAN_KIND_CLIENT: u64 = 3;
const STATUS_CODE_ERROR: u64 = 2;

/// The instrumentation scope of every span.
pub(crate) const SCOPE: &str = "palisade-proxy";

/// Protobuf output into a reused buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
    /// One span's body, reused: written here, then copied after its length, which is
    /// nearly always over 127 bytes (a one-byte placeholder would mean shifting it).
    span: Vec<u8>,
}

impl Writer {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn tag(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from(field << 3 | wire_type));
    }

    fn uint(&mut self, field: u32, value: u64) {
        self.tag(field, VARINT);
        self.varint(value);
    }

    fn int64(&mut self, field: u32, value: i64) {
        self.uint(field, value as u64);
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        self.tag(field, FIXED64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    fn fixed32(&mut self, field: u32, value: u32) {
        self.tag(field, FIXED32);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    fn bytes_field(&mut self, field: u32, value: &[u8]) {
        self.tag(field, LENGTH_DELIMITED);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    fn string(&mut self, field: u32, value: &str) {
        self.bytes_field(field, value.as_bytes());
    }

    /// An embedded message: `body` writes it, then its length goes in front.
    fn message(&mut self, field: u32, body: impl FnOnce(&mut Self)) {
        self.tag(field, LENGTH_DELIMITED);
        self.buf.push(0);
        let start = self.buf.len();
        body(self);
        let len = self.buf.len() - start;
        if len < 0x80 {
            self.buf[start - 1] = len as u8;
        } else {
            let mut prefix = [0u8; 10];
            let mut n = 0;
            let mut value = len as u64;
            while value >= 0x80 {
                prefix[n] = value as u8 | 0x80;
                value >>= 7;
                n += 1;
            }
            prefix[n] = value as u8;
            self.buf
                .splice(start - 1..start, prefix[..=n].iter().copied());
        }
    }

    /// `KeyValue { key = 1; AnyValue value = 2 { string_value = 1 } }`, its lengths
    /// computed first: written once, never shifted.
    fn string_attribute(&mut self, field: u32, key: &str, value: &[u8]) {
        let any = 1 + varint_len(value.len() as u64) + value.len();
        self.key_value_head(field, key, any);
        self.bytes_field(1, value);
    }

    /// `KeyValue { key = 1; AnyValue value = 2 { int_value = 3 } }`, like
    /// [`Writer::string_attribute`].
    fn int_attribute(&mut self, field: u32, key: &str, value: i64) {
        let any = 1 + varint_len(value as u64);
        self.key_value_head(field, key, any);
        self.int64(3, value);
    }

    /// A `KeyValue` up to its `AnyValue`'s body, which is `any` bytes long.
    fn key_value_head(&mut self, field: u32, key: &str, any: usize) {
        let key_value =
            1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
        self.tag(field, LENGTH_DELIMITED);
        self.varint(key_value as u64);
        self.string(1, key);
        self.tag(2, LENGTH_DELIMITED);
        self.varint(any as u64);
    }
}

/// How many bytes `value` takes as a varint.
fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// What every export repeats, encoded once: the resource (`service.name` first, then the
/// other resource attributes), and the attributes whose values come from a small fixed
/// set (direction, standard methods, decisions, the proxy's own service).
#[derive(Debug, Clone)]
pub(crate) struct Preamble {
    /// `Resource` message body.
    resource: Vec<u8>,
    /// `palisade.direction`, inbound then outbound (whole `attributes` fields).
    directions: [Vec<u8>; 2],
    /// `http.request.method` of each of [`METHODS`].
    methods: Vec<Vec<u8>>,
    /// `palisade.authz.decision` of each of [`DECISIONS`] (the first, unset, is empty).
    decisions: Vec<Vec<u8>>,
    /// `palisade.service` = the proxy's own service.
    local_service: Vec<u8>,
}

/// The methods whose attribute is encoded once.
const METHODS: [http::Method; 9] = [
    http::Method::GET,
    http::Method::POST,
    http::Method::PUT,
    http::Method::DELETE,
    http::Method::PATCH,
    http::Method::HEAD,
    http::Method::OPTIONS,
    http::Method::CONNECT,
    http::Method::TRACE,
];

impl Preamble {
    /// `service_name` is the resource's `service.name`, `local_service` the proxy's own
    /// service (the `palisade.service` of inbound spans).
    pub(crate) fn new(
        service_name: &str,
        attributes: &[(String, String)],
        local_service: &str,
    ) -> Self {
        let encoded = |key: &str, value: &str| {
            let mut w = Writer::default();
            w.string_attribute(9, key, value.as_bytes());
            w.buf
        };
        let mut w = Writer::default();
        w.string_attribute(1, "service.name", service_name.as_bytes());
        for (key, value) in attributes {
            w.string_attribute(1, key, value.as_bytes());
        }
        Self {
            resource: w.buf,
            directions: [Direction::Inbound, Direction::Outbound]
                .map(|d| encoded("palisade.direction", d.as_str())),
            methods: METHODS
                .iter()
                .map(|m| encoded("http.request.method", m.as_str()))
                .collect(),
            decisions: DECISIONS
                .iter()
                .map(|d| match *d {
                    "" => Vec::new(),
                    d => encoded("palisade.authz.decision", d),
                })
                .collect(),
            local_service: encoded("palisade.service", local_service),
        }
    }
}

/// Writes `ExportTraceServiceRequest { resource_spans = 1 { resource = 1, scope_spans = 2
/// { scope = 1, spans = 2... } } }` for `spans` into `w` (cleared first).
pub(crate) fn export_request(w: &mut Writer, preamble: &Preamble, spans: &[SpanRecord]) {
    w.clear();
    w.message(1, |w| {
        w.tag(1, LENGTH_DELIMITED);
        w.varint(preamble.resource.len() as u64);
        w.buf.extend_from_slice(&preamble.resource);
        w.message(2, |w| {
            w.message(1, |w| w.string(1, SCOPE));
            let mut body = Writer {
                buf: std::mem::take(&mut w.span),
                span: Vec::new(),
            };
            for span in spans {
                body.clear();
                write_span(&mut body, preamble, span);
                w.bytes_field(2, body.bytes());
            }
            w.span = body.buf;
        });
    });
}

/// The name of a request's span.
pub(crate) fn span_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "palisade.inbound",
        Direction::Outbound => "palisade.outbound",
    }
}

/// One `Span` message body, its attributes in the order the proxy learns them.
fn write_span(w: &mut Writer, preamble: &Preamble, span: &SpanRecord) {
    w.bytes_field(1, &span.trace_id);
    w.bytes_field(2, &span.span_id);
    if let Some(state) = &span.trace_state {
        w.string(3, state);
    }
    if span.has_parent() {
        w.bytes_field(4, &span.parent_span_id);
    }
    w.string(5, span_name(span.direction));
    w.uint(
        6,
        match span.direction {
            Direction::Inbound => SPAN_KIND_SERVER,
            Direction::Outbound => SPAN_KIND_CLIENT,
        },
    );
    w.fixed64(7, span.start_unix_nanos);
    w.fixed64(8, span.end_unix_nanos);
    let direction = match span.direction {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    };
    w.buf.extend_from_slice(&preamble.directions[direction]);
    match METHODS.iter().position(|m| *m == span.method) {
        Some(known) => w.buf.extend_from_slice(&preamble.methods[known]),
        None => w.string_attribute(9, "http.request.method", span.method.as_str().as_bytes()),
    }
    if let Some(outcome) = &span.outcome {
        w.string_attribute(9, "palisade.peer", outcome.peer.as_bytes());
        match &outcome.service {
            // Only the proxy's own service is shared.
            Text::Shared(_) => w.buf.extend_from_slice(&preamble.local_service),
            other => w.string_attribute(9, "palisade.service", other.as_bytes()),
        }
        w.int_attribute(9, "http.response.status_code", i64::from(outcome.status));
    }
    if let Some(decision) = preamble.decisions.get(usize::from(span.authz)) {
        w.buf.extend_from_slice(decision);
    }
    if span.waf_score != NO_SCORE {
        w.int_attribute(9, "palisade.waf.score", i64::from(span.waf_score));
    }
    if let Some(outcome) = span.outcome.as_ref().filter(|o| o.status >= 500) {
        // `Status { message = 2; code = 3 }`: a proxy or upstream failure.
        let code = itoa3(outcome.status);
        let message = std::str::from_utf8(&code).unwrap_or_default();
        w.message(15, |w| {
            w.string(2, message);
            w.uint(3, STATUS_CODE_ERROR);
        });
    }
    let remote = if span.has_parent() { IS_REMOTE } else { 0 };
    w.fixed32(16, FLAG_SAMPLED | HAS_IS_REMOTE | remote);
}

/// A status code (100–999) as three ASCII digits.
fn itoa3(status: u16) -> [u8; 3] {
    let status = status.min(999);
    [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use opentelemetry_proto::tonic::trace::v1::{Span, Status};
    use prost::Message;

    use super::*;
    use crate::telemetry::record::Outcome;

    fn string(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.to_owned())),
            }),
        }
    }

    fn int(key: &str, value: i64) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Value::IntValue(value)),
            }),
        }
    }

    fn inbound() -> SpanRecord {
        SpanRecord {
            trace_id: *b"0123456789abcdef",
            span_id: *b"spanid01",
            parent_span_id: *b"parent01",
            trace_state: Some("vendor=1".into()),
            direction: Direction::Inbound,
            method: http::Method::GET,
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_000_250_000,
            outcome: Some(Outcome {
                peer: Text::copy("spiffe://mesh.test/ns/shop/sa/orders"),
                service: Text::Shared(Arc::from("payments")),
                status: 503,
            }),
            authz: 2,
            waf_score: 7,
        }
    }

    fn decode(spans: &[SpanRecord], preamble: &Preamble) -> ExportTraceServiceRequest {
        let mut w = Writer::default();
        export_request(&mut w, preamble, spans);
        ExportTraceServiceRequest::decode(w.bytes()).expect("valid protobuf")
    }

    #[test]
    fn every_field_decodes_as_otlp() {
        let preamble = Preamble::new(
            "payments",
            &[("deployment.environment".to_owned(), "prod".to_owned())],
            "payments",
        );
        let outbound = SpanRecord {
            parent_span_id: [0; 8],
            trace_state: None,
            direction: Direction::Outbound,
            method: http::Method::from_bytes(b"PURGE").unwrap(),
            outcome: Some(Outcome {
                peer: Text::copy("none"),
                service: Text::copy("unknown"),
                status: 200,
            }),
            authz: 0,
            waf_score: NO_SCORE,
            ..inbound()
        };
        let request = decode(&[inbound(), outbound], &preamble);
        assert_eq!(request.resource_spans.len(), 1);
        let resource_spans = &request.resource_spans[0];
        let resource = resource_spans.resource.as_ref().unwrap();
        assert_eq!(
            resource.attributes,
            [
                string("service.name", "payments"),
                string("deployment.environment", "prod")
            ]
        );
        assert_eq!(resource.dropped_attributes_count, 0);
        assert_eq!(resource_spans.schema_url, "");
        assert_eq!(resource_spans.scope_spans.len(), 1);
        let scope_spans = &resource_spans.scope_spans[0];
        let scope = scope_spans.scope.as_ref().unwrap();
        assert_eq!(scope.name, "palisade-proxy");
        assert_eq!(scope.version, "");
        assert_eq!(scope_spans.spans.len(), 2);

        let expected_inbound = Span {
            trace_id: b"0123456789abcdef".to_vec(),
            span_id: b"spanid01".to_vec(),
            trace_state: "vendor=1".to_owned(),
            parent_span_id: b"parent01".to_vec(),
            flags: 0x301,
            name: "palisade.inbound".to_owned(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_250_000,
            attributes: vec![
                string("palisade.direction", "inbound"),
                string("http.request.method", "GET"),
                string("palisade.peer", "spiffe://mesh.test/ns/shop/sa/orders"),
                string("palisade.service", "payments"),
                int("http.response.status_code", 503),
                string("palisade.authz.decision", "deny"),
                int("palisade.waf.score", 7),
            ],
            status: Some(Status {
                message: "503".to_owned(),
                code: StatusCode::Error as i32,
            }),
            ..Span::default()
        };
        assert_eq!(scope_spans.spans[0], expected_inbound);
        let expected_outbound = Span {
            trace_state: String::new(),
            parent_span_id: Vec::new(),
            flags: 0x101,
            name: "palisade.outbound".to_owned(),
            kind: SpanKind::Client as i32,
            attributes: vec![
                string("palisade.direction", "outbound"),
                string("http.request.method", "PURGE"),
                string("palisade.peer", "none"),
                string("palisade.service", "unknown"),
                int("http.response.status_code", 200),
            ],
            status: None,
            ..expected_inbound
        };
        assert_eq!(scope_spans.spans[1], expected_outbound);
    }

    #[test]
    fn an_abandoned_request_keeps_what_was_known() {
        let abandoned = SpanRecord {
            outcome: None,
            waf_score: 0,
            authz: 1,
            ..inbound()
        };
        let request = decode(&[abandoned], &Preamble::new("payments", &[], "payments"));
        let span = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            span.attributes,
            [
                string("palisade.direction", "inbound"),
                string("http.request.method", "GET"),
                string("palisade.authz.decision", "allow"),
                int("palisade.waf.score", 0),
            ]
        );
        assert_eq!(span.status, None);
    }

    #[test]
    fn long_messages_get_multi_byte_lengths() {
        // 600 spans (over 2^14 bytes) and a peer name over 127 bytes: lengths of one, two
        // and three bytes at every level.
        let long_peer = format!("spiffe://mesh.test/ns/{}/sa/orders", "n".repeat(200));
        let mut span = inbound();
        span.outcome = Some(Outcome {
            peer: Text::copy(&long_peer),
            service: Text::copy("payments"),
            status: 200,
        });
        let spans = vec![span; 600];
        let request = decode(&spans, &Preamble::new(&"s".repeat(300), &[], "payments"));
        let decoded = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(decoded.len(), 600);
        assert!(decoded
            .iter()
            .all(|s| s.attributes[2] == string("palisade.peer", &long_peer)));
        assert_eq!(
            request.resource_spans[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes[0],
            string("service.name", &"s".repeat(300))
        );
    }

    #[test]
    fn varints_match_prost() {
        for value in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut w = Writer::default();
            w.varint(value);
            let mut expected = Vec::new();
            prost::encoding::encode_varint(value, &mut expected);
            assert_eq!(w.bytes(), expected, "{value}");
        }
        assert_eq!(itoa3(503), *b"503");
        assert_eq!(itoa3(100), *b"100");
    }
}
