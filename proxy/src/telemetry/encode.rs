//! A small protobuf writer and the OTLP messages the exporter sends: an
//! `ExportTraceServiceRequest` with one resource (the proxy), one scope
//! (`palisade-proxy`) and a batch of spans, written straight from [`SpanRecord`]s.
//!
//! Writing it here instead of converting to the SDK's span data and then to prost
//! messages is what makes export cheap. A span is written once, in place: its length is
//! computed first, everything that only depends on a few fixed values (name, kind,
//! direction, standard method, decision, the proxy's own service) is one precomputed
//! block, the fixed-size fields are one array, and only the peer, a destination service,
//! the status and the WAF score are encoded per span. Protobuf readers accept fields in
//! any order, so the span's fields are grouped that way rather than by field number.

use bytes::Bytes;

use super::record::{Anchor, ServiceName, SpanRecord, DECISIONS, NO_SCORE};
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

/// Tags (field number and wire type, one byte each) of the fields written per span.
const TAG_SCOPE_SPANS_SPAN: u8 = 2 << 3 | LENGTH_DELIMITED as u8;
const TAG_TRACE_STATE: u8 = 3 << 3 | LENGTH_DELIMITED as u8;
const TAG_PARENT_SPAN_ID: u8 = 4 << 3 | LENGTH_DELIMITED as u8;
const TAG_ATTRIBUTE: u8 = 9 << 3 | LENGTH_DELIMITED as u8;
/// `KeyValue.key`, `KeyValue.value`, `AnyValue.string_value`, `AnyValue.int_value`.
const TAG_KEY: u8 = 1 << 3 | LENGTH_DELIMITED as u8;
const TAG_VALUE: u8 = 2 << 3 | LENGTH_DELIMITED as u8;
const TAG_STRING_VALUE: u8 = 1 << 3 | LENGTH_DELIMITED as u8;
const TAG_INT_VALUE: u8 = 3 << 3 | VARINT as u8;

/// The attribute keys written per span.
const KEY_METHOD: &[u8; 19] = b"http.request.method";
const KEY_SERVICE: &[u8; 16] = b"palisade.service";
const KEY_PEER: &[u8; 13] = b"palisade.peer";
const KEY_STATUS: &[u8; 25] = b"http.response.status_code";
const KEY_WAF_SCORE: &[u8; 18] = b"palisade.waf.score";

/// The fixed-size fields of a span, in the order [`fixed_fields`] writes them: trace id
/// (2 + 16), span id (2 + 8), start and end time (1 + 8 each), flags (2 + 4).
const FIXED_LEN: usize = 18 + 10 + 9 + 9 + 6;
/// `parent_span_id` (2 + 8).
const PARENT_LEN: usize = 10;
/// `Status { message = "5xx"; code = ERROR }` with its tag and length.
const ERROR_STATUS_LEN: usize = 2 + 5 + 2;

/// gRPC's message prefix: the compressed flag and the big-endian `u32` length.
const GRPC_PREFIX: usize = 5;

/// Protobuf output into a reused buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// The message written since [`Writer::clear`].
    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.get(GRPC_PREFIX..).unwrap_or_default()
    }

    /// Starts a new message, room left in front for its gRPC prefix.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; GRPC_PREFIX]);
    }

    /// The message as one uncompressed gRPC message, without copying it (a batch is
    /// about 128 KiB): the buffer moves into the frame, and [`Writer::reclaim`] takes it
    /// back once the call is over.
    pub(crate) fn frame(&mut self) -> Bytes {
        let len = self.bytes().len() as u32;
        self.buf[1..GRPC_PREFIX].copy_from_slice(&len.to_be_bytes());
        Bytes::from(std::mem::take(&mut self.buf))
    }

    /// Takes back a sent frame's buffer; when the HTTP/2 connection still holds it, the
    /// next message gets a new one of the same size.
    pub(crate) fn reclaim(&mut self, frame: Bytes) {
        let capacity = frame.len();
        self.buf = match frame.try_into_mut() {
            Ok(buf) => buf.into(),
            Err(_) => Vec::with_capacity(capacity),
        };
    }

    fn varint(&mut self, value: u64) {
        varint(&mut self.buf, value);
    }

    fn tag(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from(field << 3 | wire_type));
    }

    fn uint(&mut self, field: u32, value: u64) {
        self.tag(field, VARINT);
        self.varint(value);
    }

    fn bytes_field(&mut self, field: u32, value: &[u8]) {
        self.tag(field, LENGTH_DELIMITED);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    fn string(&mut self, field: u32, value: &str) {
        self.bytes_field(field, value.as_bytes());
    }

    /// An embedded message: `body` writes it, then its length goes in front (once per
    /// batch: the resource and scope levels).
    fn message(&mut self, field: u32, body: impl FnOnce(&mut Self)) {
        self.tag(field, LENGTH_DELIMITED);
        self.buf.push(0);
        let start = self.buf.len();
        body(self);
        let len = self.buf.len() - start;
        if len < 0x80 {
            self.buf[start - 1] = len as u8;
        } else {
            let mut prefix = Vec::with_capacity(10);
            varint(&mut prefix, len as u64);
            self.buf.splice(start - 1..start, prefix);
        }
    }

    /// `KeyValue { key = 1; AnyValue value = 2 { string_value = 1 } }` as field `field`.
    fn string_attribute(&mut self, field: u32, key: &str, value: &[u8]) {
        self.tag(field, LENGTH_DELIMITED);
        string_attribute_body(&mut self.buf, key.as_bytes(), value);
    }
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// How many bytes `value` takes as a varint.
fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// A length-delimited field's size: tag, length, body.
fn delimited_len(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

/// The `KeyValue` body of a string attribute.
fn string_key_value_len(key: usize, value: usize) -> usize {
    delimited_len(key) + delimited_len(delimited_len(value))
}

/// The `KeyValue` body of an integer attribute.
fn int_key_value_len(key: usize, value: u64) -> usize {
    delimited_len(key) + delimited_len(1 + varint_len(value))
}

/// A string attribute's `KeyValue`, length first (its `attributes` tag is the caller's).
fn string_attribute_body(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let any = delimited_len(value.len());
    varint(out, (delimited_len(key.len()) + delimited_len(any)) as u64);
    out.push(TAG_KEY);
    varint(out, key.len() as u64);
    out.extend_from_slice(key);
    out.push(TAG_VALUE);
    varint(out, any as u64);
    out.push(TAG_STRING_VALUE);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// A string attribute of the span, its key a constant (copied without a call).
fn string_attribute<const N: usize>(out: &mut Vec<u8>, key: &[u8; N], value: &[u8]) {
    let any = delimited_len(value.len());
    let key_value = 2 + N + delimited_len(any);
    if key_value < 0x80 {
        // Every length is one byte (names up to about 90 bytes): four fixed-size copies.
        out.extend_from_slice(&[TAG_ATTRIBUTE, key_value as u8, TAG_KEY, N as u8]);
        out.extend_from_slice(key);
        out.extend_from_slice(&[TAG_VALUE, any as u8, TAG_STRING_VALUE, value.len() as u8]);
        out.extend_from_slice(value);
    } else {
        out.push(TAG_ATTRIBUTE);
        string_attribute_body(out, key, value);
    }
}

/// An integer attribute of the span (keys are short: every length is one byte).
fn int_attribute<const N: usize>(out: &mut Vec<u8>, key: &[u8; N], value: u64) {
    let any = 1 + varint_len(value);
    out.extend_from_slice(&[TAG_ATTRIBUTE, (2 + N + 2 + any) as u8, TAG_KEY, N as u8]);
    out.extend_from_slice(key);
    out.extend_from_slice(&[TAG_VALUE, any as u8, TAG_INT_VALUE]);
    varint(out, value);
}

/// The methods whose attribute is part of a precomputed block.
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

/// The index of a standard method in [`METHODS`]; [`METHODS`]`.len()` for any other.
fn method_index(method: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|m| m == method)
        .unwrap_or(METHODS.len())
}

/// What every export repeats, encoded once: the resource (`service.name` first, then the
/// other resource attributes), and for every combination of direction, method,
/// authorization decision and "the service is the proxy's own" the span fields they
/// determine.
#[derive(Debug, Clone)]
pub(crate) struct Preamble {
    /// `Resource` message body.
    resource: Vec<u8>,
    /// Indexed by [`Preamble::index`]: `name`, `kind`, then the attributes
    /// `palisade.direction`, `http.request.method` (a standard method),
    /// `palisade.authz.decision` (when recorded), `palisade.service` (the proxy's own).
    blocks: Vec<Vec<u8>>,
}

impl Preamble {
    /// `service_name` is the resource's `service.name`, `local_service` the proxy's own
    /// service (the `palisade.service` of inbound spans).
    pub(crate) fn new(
        service_name: &str,
        attributes: &[(String, String)],
        local_service: &str,
    ) -> Self {
        let mut w = Writer::default();
        w.string_attribute(1, "service.name", service_name.as_bytes());
        for (key, value) in attributes {
            w.string_attribute(1, key, value.as_bytes());
        }
        let mut blocks = Vec::new();
        for direction in [Direction::Inbound, Direction::Outbound] {
            for method in 0..=METHODS.len() {
                for decision in DECISIONS {
                    for local in [false, true] {
                        let mut b = Writer::default();
                        b.string(5, span_name(direction));
                        b.uint(
                            6,
                            match direction {
                                Direction::Inbound => SPAN_KIND_SERVER,
                                Direction::Outbound => SPAN_KIND_CLIENT,
                            },
                        );
                        b.string_attribute(9, "palisade.direction", direction.as_str().as_bytes());
                        if let Some(method) = METHODS.get(method) {
                            b.string_attribute(
                                9,
                                "http.request.method",
                                method.as_str().as_bytes(),
                            );
                        }
                        if !decision.is_empty() {
                            b.string_attribute(9, "palisade.authz.decision", decision.as_bytes());
                        }
                        if local {
                            b.string_attribute(9, "palisade.service", local_service.as_bytes());
                        }
                        blocks.push(b.buf);
                    }
                }
            }
        }
        Self {
            resource: w.buf,
            blocks,
        }
    }

    fn index(direction: Direction, method: usize, authz: u8, local: bool) -> usize {
        let direction = match direction {
            Direction::Inbound => 0,
            Direction::Outbound => 1,
        };
        ((direction * (METHODS.len() + 1) + method) * DECISIONS.len() + usize::from(authz)) * 2
            + usize::from(local)
    }
}

/// Writes `ExportTraceServiceRequest { resource_spans = 1 { resource = 1, scope_spans = 2
/// { scope = 1, spans = 2... } } }` for `spans` into `w` (cleared first); `anchor`
/// turns the spans' monotonic times into Unix time.
pub(crate) fn export_request(
    w: &mut Writer,
    preamble: &Preamble,
    anchor: &Anchor,
    spans: &[SpanRecord],
) {
    w.clear();
    w.message(1, |w| {
        w.tag(1, LENGTH_DELIMITED);
        w.varint(preamble.resource.len() as u64);
        w.buf.extend_from_slice(&preamble.resource);
        w.message(2, |w| {
            w.message(1, |w| w.string(1, SCOPE));
            for span in spans {
                write_span(&mut w.buf, preamble, anchor, span);
            }
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

/// Trace id, span id, start and end time and flags, as one array.
fn fixed_fields(span: &SpanRecord, anchor: &Anchor) -> [u8; FIXED_LEN] {
    let start = anchor.unix_nanos(span.started);
    let end = start + span.duration.as_nanos() as u64;
    let remote = if span.has_parent() { IS_REMOTE } else { 0 };
    let flags = FLAG_SAMPLED | HAS_IS_REMOTE | remote;
    let mut fixed = [0; FIXED_LEN];
    fixed[0] = (1 << 3 | LENGTH_DELIMITED) as u8;
    fixed[1] = 16;
    fixed[2..18].copy_from_slice(&span.trace_id);
    fixed[18] = (2 << 3 | LENGTH_DELIMITED) as u8;
    fixed[19] = 8;
    fixed[20..28].copy_from_slice(&span.span_id);
    fixed[28] = (7 << 3 | FIXED64) as u8;
    fixed[29..37].copy_from_slice(&start.to_le_bytes());
    fixed[37] = (8 << 3 | FIXED64) as u8;
    fixed[38..46].copy_from_slice(&end.to_le_bytes());
    // Field 16 takes a two-byte tag.
    fixed[46..48].copy_from_slice(&[((16 << 3 | FIXED32) as u8) | 0x80, 0x01]);
    fixed[48..52].copy_from_slice(&flags.to_le_bytes());
    fixed
}

/// One `spans` field of `ScopeSpans`: tag, length, then the `Span` body, its attributes
/// those of the precomputed block first, then method and service when they are not in
/// it, peer, status code and WAF score.
fn write_span(out: &mut Vec<u8>, preamble: &Preamble, anchor: &Anchor, span: &SpanRecord) {
    let method = method_index(&span.method);
    let other_method = (method == METHODS.len()).then(|| span.method.as_str().as_bytes());
    let (local, other_service, peer, status) = match &span.outcome {
        Some(outcome) => match &outcome.service {
            ServiceName::Local => (true, None, Some(&outcome.peer), Some(outcome.status)),
            ServiceName::Other(name) => {
                (false, Some(name), Some(&outcome.peer), Some(outcome.status))
            }
        },
        None => (false, None, None, None),
    };
    let authz = if usize::from(span.authz) < DECISIONS.len() {
        span.authz
    } else {
        0
    };
    let block = &preamble.blocks[Preamble::index(span.direction, method, authz, local)];
    let waf_score = (span.waf_score != NO_SCORE).then_some(u64::from(span.waf_score));
    let error = status.is_some_and(|status| status >= 500);

    let mut len = FIXED_LEN + block.len();
    if span.has_parent() {
        len += PARENT_LEN;
    }
    if let Some(state) = &span.trace_state {
        len += delimited_len(state.len());
    }
    if let Some(method) = other_method {
        len += delimited_len(string_key_value_len(KEY_METHOD.len(), method.len()));
    }
    if let Some(service) = other_service {
        len += delimited_len(string_key_value_len(
            KEY_SERVICE.len(),
            service.as_bytes().len(),
        ));
    }
    if let Some(peer) = peer {
        len += delimited_len(string_key_value_len(KEY_PEER.len(), peer.as_bytes().len()));
    }
    if let Some(status) = status {
        len += delimited_len(int_key_value_len(KEY_STATUS.len(), u64::from(status)));
    }
    if let Some(score) = waf_score {
        len += delimited_len(int_key_value_len(KEY_WAF_SCORE.len(), score));
    }
    if error {
        len += ERROR_STATUS_LEN;
    }

    out.reserve(delimited_len(len));
    out.push(TAG_SCOPE_SPANS_SPAN);
    varint(out, len as u64);
    out.extend_from_slice(&fixed_fields(span, anchor));
    out.extend_from_slice(block);
    if span.has_parent() {
        let mut parent = [TAG_PARENT_SPAN_ID, 8, 0, 0, 0, 0, 0, 0, 0, 0];
        parent[2..].copy_from_slice(&span.parent_span_id);
        out.extend_from_slice(&parent);
    }
    if let Some(state) = &span.trace_state {
        out.push(TAG_TRACE_STATE);
        varint(out, state.len() as u64);
        out.extend_from_slice(state.as_bytes());
    }
    if let Some(method) = other_method {
        string_attribute(out, KEY_METHOD, method);
    }
    if let Some(service) = other_service {
        string_attribute(out, KEY_SERVICE, service.as_bytes());
    }
    if let Some(peer) = peer {
        string_attribute(out, KEY_PEER, peer.as_bytes());
    }
    if let Some(status) = status {
        int_attribute(out, KEY_STATUS, u64::from(status));
        if error {
            // `Status { message = 2; code = 3 }`: a proxy or upstream failure.
            let [a, b, c] = itoa3(status);
            out.extend_from_slice(&[
                (15 << 3 | LENGTH_DELIMITED) as u8,
                7,
                (2 << 3 | LENGTH_DELIMITED) as u8,
                3,
                a,
                b,
                c,
                (3 << 3 | VARINT) as u8,
                STATUS_CODE_ERROR as u8,
            ]);
        }
    }
    if let Some(score) = waf_score {
        int_attribute(out, KEY_WAF_SCORE, score);
    }
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
    use std::time::{Duration, Instant};

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use opentelemetry_proto::tonic::trace::v1::{Span, Status};
    use prost::Message;

    use super::*;
    use crate::telemetry::record::{Outcome, Text};

    /// 2023-11-14T22:13:20Z, as the anchor's wall clock.
    const UNIX: u64 = 1_700_000_000_000_000_000;

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

    /// Spans start at this monotonic reading, which the anchor maps to [`UNIX`].
    fn received() -> Instant {
        static RECEIVED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *RECEIVED.get_or_init(Instant::now)
    }

    fn inbound() -> SpanRecord {
        SpanRecord {
            trace_id: *b"0123456789abcdef",
            span_id: *b"spanid01",
            parent_span_id: *b"parent01",
            trace_state: Some("vendor=1".into()),
            direction: Direction::Inbound,
            method: http::Method::GET,
            started: received(),
            duration: Duration::from_micros(250),
            outcome: Some(Outcome {
                peer: Text::copy("spiffe://mesh.test/ns/shop/sa/orders"),
                service: ServiceName::Local,
                status: 503,
            }),
            authz: 2,
            waf_score: 7,
        }
    }

    fn decode(spans: &[SpanRecord], preamble: &Preamble) -> ExportTraceServiceRequest {
        let mut w = Writer::default();
        export_request(&mut w, preamble, &Anchor::at(UNIX, received()), spans);
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
                service: ServiceName::Other(Text::copy("unknown")),
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
                string("palisade.authz.decision", "deny"),
                string("palisade.service", "payments"),
                string("palisade.peer", "spiffe://mesh.test/ns/shop/sa/orders"),
                int("http.response.status_code", 503),
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
                string("palisade.service", "unknown"),
                string("palisade.peer", "none"),
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
        // 600 spans (over 2^14 bytes), a peer name, a service name and a `tracestate`
        // over 127 bytes: lengths of one, two and three bytes at every level.
        let long_peer = format!("spiffe://mesh.test/ns/{}/sa/orders", "n".repeat(200));
        let long_service = "s".repeat(130);
        let long_state = format!("vendor={}", "v".repeat(300));
        let mut span = inbound();
        span.trace_state = Some(long_state.as_str().into());
        span.outcome = Some(Outcome {
            peer: Text::copy(&long_peer),
            service: ServiceName::Other(Text::copy(&long_service)),
            status: 200,
        });
        let spans = vec![span; 600];
        let request = decode(&spans, &Preamble::new(&"s".repeat(300), &[], "payments"));
        let decoded = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(decoded.len(), 600);
        assert!(decoded.iter().all(|s| {
            s.trace_state == long_state
                && s.attributes[3] == string("palisade.service", &long_service)
                && s.attributes[4] == string("palisade.peer", &long_peer)
                && s.attributes[5] == int("http.response.status_code", 200)
        }));
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
    fn every_length_around_the_one_byte_limits_decodes() {
        // Peer and service names of every length from 0 to 300 (the attribute's lengths
        // cross 127 at different name lengths), statuses with one- and two-byte varints.
        let preamble = Preamble::new("payments", &[], "payments");
        let spans: Vec<SpanRecord> = (0..=300)
            .map(|len| SpanRecord {
                outcome: Some(Outcome {
                    peer: Text::copy(&"p".repeat(len)),
                    service: ServiceName::Other(Text::copy(&"s".repeat(300 - len))),
                    status: 100 + len as u16,
                }),
                ..inbound()
            })
            .collect();
        let request = decode(&spans, &preamble);
        let decoded = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(decoded.len(), spans.len());
        for (len, span) in decoded.iter().enumerate() {
            assert_eq!(
                span.attributes[3],
                string("palisade.service", &"s".repeat(300 - len))
            );
            assert_eq!(
                span.attributes[4],
                string("palisade.peer", &"p".repeat(len))
            );
            assert_eq!(
                span.attributes[5],
                int("http.response.status_code", 100 + len as i64)
            );
            assert_eq!(span.attributes[6], int("palisade.waf.score", 7));
        }
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
            w.clear();
            w.varint(value);
            let mut expected = Vec::new();
            prost::encoding::encode_varint(value, &mut expected);
            assert_eq!(w.bytes(), expected, "{value}");
        }
        assert_eq!(itoa3(503), *b"503");
        assert_eq!(itoa3(100), *b"100");
    }
}
