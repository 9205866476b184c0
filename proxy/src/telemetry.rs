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

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::metrics::Direction;

/// The variables that turn export on, most specific first.
pub const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter: {0}; check OTEL_EXPORTER_OTLP_ENDPOINT")]
pub struct TracingError(String);

/// A tracer exporting over OTLP/gRPC; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Tracing {
    /// Export to the endpoint the standard variables name, or `None` when none is set.
    /// The exporter reads the variables itself (endpoint, headers, timeout).
    pub fn from_env(service: &str) -> Result<Option<Self>, TracingError> {
        let configured = ENDPOINT_VARS
            .iter()
            .any(|var| std::env::var_os(var).is_some_and(|value| !value.is_empty()));
        if !configured {
            return Ok(None);
        }
        let exporter = SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| TracingError(e.to_string()))?;
        Ok(Some(Self::with_exporter(exporter, service)))
    }

    /// Export to `endpoint` (`http://host:port`), whatever the environment says.
    pub fn with_endpoint(endpoint: &str, service: &str) -> Result<Self, TracingError> {
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TracingError(e.to_string()))?;
        Ok(Self::with_exporter(exporter, service))
    }

    fn with_exporter(exporter: SpanExporter, service: &str) -> Self {
        let resource = Resource::builder()
            .with_service_name("palisade-proxy")
            .with_attribute(KeyValue::new("palisade.service", service.to_owned()))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("palisade-proxy");
        Self { provider, tracer }
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
    /// new trace without one), and rewrites `headers` to carry the span's context on.
    pub fn start(&self, direction: Direction, headers: &mut HeaderMap) -> Context {
        let propagator = TraceContextPropagator::new();
        let parent = propagator.extract(&HeaderExtractor(headers));
        let (name, kind) = match direction {
            Direction::Inbound => ("palisade.inbound", SpanKind::Server),
            Direction::Outbound => ("palisade.outbound", SpanKind::Client),
        };
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&self.tracer, &parent);
        let context = parent.with_span(span);
        propagator.inject_context(&context, &mut HeaderInjector(headers));
        context
    }
}

/// Ends a request's span with what the proxy learned about it.
pub fn finish(context: &Context, attributes: Vec<KeyValue>, status: http::StatusCode) {
    let span = context.span();
    span.set_attributes(attributes);
    if status.is_server_error() {
        span.set_status(Status::error(status.as_str().to_owned()));
    }
    span.end();
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

    /// The span attributes of the facts that were recorded.
    pub fn attributes(&self, into: &mut Vec<KeyValue>) {
        let authz = Self::DECISIONS[usize::from(self.authz.load(Ordering::Relaxed)) % 4];
        if !authz.is_empty() {
            into.push(KeyValue::new("palisade.authz.decision", authz));
        }
        let score = self.waf_score.load(Ordering::Relaxed);
        if score != NOT_SET {
            into.push(KeyValue::new("palisade.waf.score", i64::from(score)));
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_become_attributes_only_when_recorded() {
        let facts = TraceFacts::default();
        let mut attributes = Vec::new();
        facts.attributes(&mut attributes);
        assert!(attributes.is_empty());
        facts.set_authz("deny");
        facts.set_waf_score(7);
        facts.attributes(&mut attributes);
        assert_eq!(
            attributes,
            vec![
                KeyValue::new("palisade.authz.decision", "deny"),
                KeyValue::new("palisade.waf.score", 7_i64),
            ]
        );
    }
}
