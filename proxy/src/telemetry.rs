//! OpenTelemetry traces: one span per proxied request, exported over OTLP/gRPC.
//!
//! Export is off unless the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` variable is set ([`Tracing::from_env`]). When it is off,
//! the request path pays one `Option` check: no span, no context, no header parsing.
//!
//! When it is on, the W3C `traceparent` a request carries (from the app, outbound; from
//! the calling proxy, inbound) is the parent of the request's span, and the request is
//! forwarded with the span's own `traceparent`, so both proxies' spans and the app's share
//! one trace id. Spans are batched and exported in the background.
//!
//! The request path's share is kept small on purpose (see `benches/results/tracing.md`):
//! `traceparent` is parsed and written here, without the SDK propagator's intermediate
//! strings; the span is the SDK span itself, not wrapped in a `Context`; its attribute
//! vector is allocated once, at start, with room for every attribute; keys and the values
//! known in advance are static or shared; and a span the sampler dropped is ended without
//! recording anything. The export itself (protobuf conversion and encoding, gRPC) runs on
//! the SDK's batch thread and on an export runtime of its own, never on request workers.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer, TracerProvider,
};
use opentelemetry::{Context, Key, KeyValue, StringValue, Value};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
use opentelemetry_sdk::Resource;

use crate::metrics::Direction;

/// The variables that turn export on, most specific first.
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The W3C Trace Context headers.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

const DIRECTION: Key = Key::from_static_str("palisade.direction");
const PEER: Key = Key::from_static_str("palisade.peer");
const SERVICE: Key = Key::from_static_str("palisade.service");
const METHOD: Key = Key::from_static_str("http.request.method");
const STATUS_CODE: Key = Key::from_static_str("http.response.status_code");
const AUTHZ_DECISION: Key = Key::from_static_str("palisade.authz.decision");
const WAF_SCORE: Key = Key::from_static_str("palisade.waf.score");

/// Every attribute a request span can carry, so that its vector never grows.
const ATTRIBUTES_PER_SPAN: usize = 7;

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter: {0}; check OTEL_EXPORTER_OTLP_ENDPOINT")]
pub struct TracingError(String);

/// A tracer exporting over OTLP/gRPC; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// The proxy's own service, the `palisade.service` of every inbound span, shared
    /// rather than copied per span.
    service: Arc<str>,
    /// The OTLP exporter's runtime, kept while any clone lives (`None` for exporters
    /// brought by the caller).
    _export_runtime: Option<Arc<ExportRuntime>>,
}

impl Tracing {
    /// Export to the endpoint the standard variables name, or `None` when none is set.
    /// The exporter reads the variables itself (endpoint, headers, timeout); the SDK reads
    /// `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`)
    /// and `OTEL_BSP_*` (batching).
    pub fn from_env(service: &str) -> Result<Option<Self>, TracingError> {
        let configured = ENDPOINT_VARS
            .iter()
            .any(|var| std::env::var_os(var).is_some_and(|value| !value.is_empty()));
        if !configured {
            return Ok(None);
        }
        Self::with_otlp(None, service).map(Some)
    }

    /// Export to `endpoint` (`http://host:port`), whatever the environment says.
    pub fn with_endpoint(endpoint: &str, service: &str) -> Result<Self, TracingError> {
        Self::with_otlp(Some(endpoint), service)
    }

    /// The OTLP/gRPC exporter, its channel built on a runtime of its own (see
    /// [`ExportRuntime`]); needs no runtime from the caller.
    fn with_otlp(endpoint: Option<&str>, service: &str) -> Result<Self, TracingError> {
        let runtime = ExportRuntime::start()?;
        let exporter = {
            let _on_export_runtime = runtime.handle.enter();
            let builder = SpanExporter::builder().with_tonic();
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build(),
                None => builder.build(),
            }
            .map_err(|e| TracingError(e.to_string()))?
        };
        Ok(Self::build(exporter, service, Some(Arc::new(runtime))))
    }

    /// Export through any SDK exporter (benches isolate the request path's span work with
    /// one that discards; embedders may bring their own). Spans go through the SDK's batch
    /// processor: ending a span queues it (a `try_send` on a bounded channel) and the
    /// processor's own thread exports when 512 are queued or every 5 s (`OTEL_BSP_*`).
    pub fn with_span_exporter<E>(exporter: E, service: &str) -> Self
    where
        E: opentelemetry_sdk::trace::SpanExporter + 'static,
    {
        Self::build(exporter, service, None)
    }

    fn build<E>(exporter: E, service: &str, export_runtime: Option<Arc<ExportRuntime>>) -> Self
    where
        E: opentelemetry_sdk::trace::SpanExporter + 'static,
    {
        let service: Arc<str> = Arc::from(service);
        let resource = Resource::builder()
            .with_service_name("palisade-proxy")
            .with_attribute(KeyValue::new(SERVICE, service.clone()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("palisade-proxy");
        Self {
            provider,
            tracer,
            service,
            _export_runtime: export_runtime,
        }
    }

    /// Exports every finished span now (tests, shutdown).
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "flushing spans failed");
        }
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "stopping the span exporter failed");
        }
    }

    /// Starts the span of one request as a child of the `traceparent` in `headers` (a
    /// new trace without a valid one), and rewrites `traceparent` to the span's own. An
    /// incoming `tracestate` is kept on the span and forwarded unchanged; without a valid
    /// `traceparent` it is dropped, as W3C Trace Context requires.
    pub fn start(
        &self,
        direction: Direction,
        method: &Method,
        headers: &mut HeaderMap,
    ) -> RequestSpan {
        let parent = match remote_parent(headers) {
            Some(parent) => Context::new().with_remote_span_context(parent),
            None => {
                headers.remove(TRACESTATE);
                Context::new()
            }
        };
        let (name, kind) = match direction {
            Direction::Inbound => ("palisade.inbound", SpanKind::Server),
            Direction::Outbound => ("palisade.outbound", SpanKind::Client),
        };
        let mut attributes = Vec::with_capacity(ATTRIBUTES_PER_SPAN);
        attributes.push(KeyValue::new(DIRECTION, direction.as_str()));
        attributes.push(KeyValue::new(METHOD, method_value(method)));
        let span = self.tracer.build_with_context(
            SpanBuilder::from_name(name)
                .with_kind(kind)
                .with_attributes(attributes),
            &parent,
        );
        let context = span.span_context();
        if context.is_valid() {
            if let Ok(value) = HeaderValue::from_bytes(&traceparent(context)) {
                headers.insert(TRACEPARENT, value);
            }
        }
        RequestSpan {
            span,
            local_service: self.service.clone(),
        }
    }
}

/// A single-threaded tokio runtime on a thread of its own that drives the OTLP exporter's
/// gRPC channel. tonic encodes the export request (all of a batch's spans, in one go) in
/// the task that sends it; on the proxy's runtime that burst would hold up the workers
/// serving requests. The runtime stops when the last [`Tracing`] clone is dropped.
#[derive(Debug)]
struct ExportRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ExportRuntime {
    /// The runtime is built and dropped on its own thread, never in the caller's (which
    /// may be async, where dropping a runtime panics).
    fn start() -> Result<Self, TracingError> {
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("palisade-otlp-export".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = handle_tx.send(Err(error.to_string()));
                        return;
                    }
                };
                if handle_tx.send(Ok(runtime.handle().clone())).is_ok() {
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                }
            })
            .map_err(|e| TracingError(format!("cannot start the export thread: {e}")))?;
        let handle = handle_rx
            .recv()
            .map_err(|_| TracingError("the export thread stopped while starting".to_owned()))?
            .map_err(|e| TracingError(format!("cannot build the export runtime: {e}")))?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The span of one request, between [`Tracing::start`] and [`RequestSpan::finish`].
/// Dropped unfinished (the request was abandoned), it is still ended and exported.
#[derive(Debug)]
pub struct RequestSpan {
    span: Span,
    local_service: Arc<str>,
}

impl RequestSpan {
    /// Ends the span with what the proxy learned about the request: the peer identity,
    /// the service (inbound the proxy's own, outbound the destination), the status and
    /// the inner layers' facts. A span the sampler dropped records nothing.
    pub fn finish(mut self, peer: &str, service: &str, status: StatusCode, facts: &TraceFacts) {
        if !self.span.is_recording() {
            return;
        }
        let service = if service == &*self.local_service {
            Value::from(self.local_service.clone())
        } else {
            Value::from(service.to_owned())
        };
        let span = &mut self.span;
        span.set_attribute(KeyValue::new(PEER, peer.to_owned()));
        span.set_attribute(KeyValue::new(SERVICE, service));
        span.set_attribute(KeyValue::new(STATUS_CODE, i64::from(status.as_u16())));
        facts.record(span);
        if status.is_server_error() {
            span.set_status(Status::error(status.as_str().to_owned()));
        }
        span.end();
    }
}

/// `http.request.method`: the standard methods as static strings, others copied.
fn method_value(method: &Method) -> Value {
    const STANDARD: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    match STANDARD.iter().find(|(known, _)| known == method) {
        Some((_, name)) => Value::String(StringValue::from(*name)),
        None => Value::String(StringValue::from(method.as_str().to_owned())),
    }
}

/// `version-traceid-parentid-flags`: 2 + 1 + 32 + 1 + 16 + 1 + 2 bytes.
const TRACEPARENT_LEN: usize = 55;

/// The remote parent a request's `traceparent` (and `tracestate`) names, if valid.
fn remote_parent(headers: &HeaderMap) -> Option<SpanContext> {
    let (trace_id, span_id, flags) = parse_traceparent(headers.get(TRACEPARENT)?.as_bytes())?;
    let state = headers
        .get(TRACESTATE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// Parses a W3C `traceparent` without allocating: lowercase hex only, all-zero ids
/// refused, version `ff` refused, a future version may carry more fields after a `-`.
/// Only the `sampled` flag is kept.
fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, TraceFlags)> {
    let value = value.trim_ascii();
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex_byte(value[0], value[1])?;
    let length_ok = match version {
        0 => value.len() == TRACEPARENT_LEN,
        0xff => false,
        _ => value.len() == TRACEPARENT_LEN || value[TRACEPARENT_LEN] == b'-',
    };
    if !length_ok || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0; 16];
    decode_hex(&value[3..35], &mut trace_id)?;
    let mut span_id = [0; 8];
    decode_hex(&value[36..52], &mut span_id)?;
    let flags = hex_byte(value[53], value[54])?;
    let (trace_id, span_id) = (TraceId::from_bytes(trace_id), SpanId::from_bytes(span_id));
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some((
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
    ))
}

fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    Some(hex_digit(high)? << 4 | hex_digit(low)?)
}

fn decode_hex(hex: &[u8], into: &mut [u8]) -> Option<()> {
    for (byte, pair) in into.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = hex_byte(pair[0], pair[1])?;
    }
    Some(())
}

/// The `traceparent` of `context`, written into a stack buffer.
fn traceparent(context: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    fn encode(bytes: &[u8], into: &mut [u8]) {
        for (byte, pair) in bytes.iter().zip(into.chunks_exact_mut(2)) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
    }
    let mut header = *b"00-00000000000000000000000000000000-0000000000000000-00";
    encode(&context.trace_id().to_bytes(), &mut header[3..35]);
    encode(&context.span_id().to_bytes(), &mut header[36..52]);
    encode(
        &[(context.trace_flags() & TraceFlags::SAMPLED).to_u8()],
        &mut header[53..55],
    );
    header
}

/// What the inner layers decided, for the span: a request extension present only while
/// tracing is on. The authorization layer writes the decision, the WAF its score.
#[derive(Debug)]
pub struct TraceFacts {
    authz: AtomicU8,
    waf_score: AtomicU32,
}

const NOT_SET: u32 = u32::MAX;

impl Default for TraceFacts {
    fn default() -> Self {
        Self {
            authz: AtomicU8::new(0),
            waf_score: AtomicU32::new(NOT_SET),
        }
    }
}

impl TraceFacts {
    const DECISIONS: [&'static str; 4] = ["", "allow", "deny", "audit_deny"];

    /// Records the authorization result (`allow`, `deny` or `audit_deny`).
    pub fn set_authz(&self, result: &'static str) {
        if let Some(index) = Self::DECISIONS.iter().position(|d| *d == result) {
            self.authz.store(index as u8, Ordering::Relaxed);
        }
    }

    pub fn set_waf_score(&self, score: u32) {
        self.waf_score.store(score, Ordering::Relaxed);
    }

    /// Sets the span attributes of the facts that were recorded.
    fn record(&self, span: &mut impl opentelemetry::trace::Span) {
        let authz = Self::DECISIONS[usize::from(self.authz.load(Ordering::Relaxed)) % 4];
        if !authz.is_empty() {
            span.set_attribute(KeyValue::new(AUTHZ_DECISION, authz));
        }
        let score = self.waf_score.load(Ordering::Relaxed);
        if score != NOT_SET {
            span.set_attribute(KeyValue::new(WAF_SCORE, i64::from(score)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::Value;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::SpanData;

    use super::*;

    const APP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Keeps every span it is sent.
    #[derive(Debug, Clone, Default)]
    struct Collect(Arc<Mutex<Vec<SpanData>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Collect {
        fn export(
            &self,
            batch: Vec<SpanData>,
        ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(batch);
            std::future::ready(Ok(()))
        }
    }

    fn exported(tracing: &Tracing, collect: &Collect) -> Vec<SpanData> {
        tracing.flush();
        collect.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn attribute(span: &SpanData, key: &str) -> Option<Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    fn headers(traceparent: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_str(traceparent).unwrap());
        headers
    }

    #[test]
    fn the_otlp_exporter_needs_no_runtime_from_the_caller() {
        // Nothing listens on port 1: nothing is exported, but building, flushing an empty
        // queue and stopping must work from a plain thread.
        let tracing = Tracing::with_endpoint("http://127.0.0.1:1", "payments").unwrap();
        tracing.flush();
        tracing.shutdown();
    }

    #[test]
    fn traceparent_round_trips() {
        let (trace_id, span_id, flags) = parse_traceparent(APP.as_bytes()).unwrap();
        assert_eq!(trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span_id.to_string(), "00f067aa0ba902b7");
        assert_eq!(flags, TraceFlags::SAMPLED);
        let context = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
        assert_eq!(&traceparent(&context), APP.as_bytes());
        // Unknown flags are ignored, surrounding blanks too; a later version may extend.
        let (_, _, flags) =
            parse_traceparent(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03 ")
                .unwrap();
        assert_eq!(flags, TraceFlags::SAMPLED);
        assert!(parse_traceparent(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next"
        )
        .is_some());
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z",
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_span_continues_the_incoming_trace_and_records_what_the_proxy_learned() {
        let collect = Collect::default();
        let tracing = Tracing::with_span_exporter(collect.clone(), "payments");
        let mut headers = headers(APP);
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let span = tracing.start(Direction::Inbound, &Method::GET, &mut headers);
        let forwarded = headers[TRACEPARENT].to_str().unwrap().to_owned();
        assert!(forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(forwarded.ends_with("-01"));
        assert_ne!(forwarded, APP, "forwarded with the span's own id");
        assert_eq!(headers[TRACESTATE], "vendor=1");
        let facts = TraceFacts::default();
        facts.set_authz("deny");
        facts.set_waf_score(7);
        span.finish(
            "spiffe://mesh.test/ns/shop/sa/orders",
            "payments",
            StatusCode::SERVICE_UNAVAILABLE,
            &facts,
        );

        let spans = exported(&tracing, &collect);
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.name, "palisade.inbound");
        assert_eq!(span.span_kind, SpanKind::Server);
        assert_eq!(span.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(forwarded.contains(&span.span_context.span_id().to_string()));
        assert_eq!(span.span_context.trace_state().header(), "vendor=1");
        let string = |s: &'static str| Some(Value::from(s));
        assert_eq!(attribute(span, "palisade.direction"), string("inbound"));
        assert_eq!(attribute(span, "http.request.method"), string("GET"));
        assert_eq!(attribute(span, "palisade.service"), string("payments"));
        assert_eq!(
            attribute(span, "palisade.peer"),
            string("spiffe://mesh.test/ns/shop/sa/orders")
        );
        assert_eq!(
            attribute(span, "http.response.status_code"),
            Some(Value::I64(503))
        );
        assert_eq!(attribute(span, "palisade.authz.decision"), string("deny"));
        assert_eq!(attribute(span, "palisade.waf.score"), Some(Value::I64(7)));
        assert_eq!(span.attributes.len(), ATTRIBUTES_PER_SPAN);
        assert_eq!(span.status, Status::error("503"));
        tracing.shutdown();
    }

    #[test]
    fn without_a_valid_traceparent_a_new_trace_starts_and_tracestate_is_dropped() {
        let collect = Collect::default();
        let tracing = Tracing::with_span_exporter(collect.clone(), "orders");
        let mut headers = headers("00-not-a-trace-01");
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let span = tracing.start(
            Direction::Outbound,
            &Method::from_bytes(b"PURGE").unwrap(),
            &mut headers,
        );
        let forwarded = headers[TRACEPARENT].to_str().unwrap().to_owned();
        assert!(
            parse_traceparent(forwarded.as_bytes()).is_some(),
            "{forwarded}"
        );
        assert!(!headers.contains_key(TRACESTATE));
        span.finish(
            "spiffe://mesh.test/ns/shop/sa/payments",
            "payments",
            StatusCode::OK,
            &TraceFacts::default(),
        );

        let spans = exported(&tracing, &collect);
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.span_kind, SpanKind::Client);
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert!(forwarded.contains(&span.span_context.trace_id().to_string()));
        assert_eq!(
            attribute(span, "palisade.service"),
            Some(Value::from("payments"))
        );
        assert_eq!(
            attribute(span, "http.request.method"),
            Some(Value::from("PURGE"))
        );
        assert_eq!(attribute(span, "palisade.authz.decision"), None);
        assert_eq!(attribute(span, "palisade.waf.score"), None);
        assert_eq!(span.status, Status::Unset);
        tracing.shutdown();
    }

    #[test]
    fn an_unsampled_parent_is_propagated_and_nothing_is_recorded() {
        let collect = Collect::default();
        let tracing = Tracing::with_span_exporter(collect.clone(), "payments");
        let mut headers = headers("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        let span = tracing.start(Direction::Inbound, &Method::GET, &mut headers);
        let forwarded = headers[TRACEPARENT].to_str().unwrap().to_owned();
        assert!(forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(forwarded.ends_with("-00"), "{forwarded}");
        span.finish("peer", "payments", StatusCode::OK, &TraceFacts::default());
        assert!(exported(&tracing, &collect).is_empty());
        tracing.shutdown();
    }
}
