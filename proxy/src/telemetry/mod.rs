//! OpenTelemetry traces: one span per proxied request, exported over OTLP/gRPC.
//!
//! Export is off unless the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` variable is set ([`Tracing::from_env`]; the settings are
//! in [`ExportConfig`]). When it is off, the request path pays one `Option` check: no
//! span, no header parsing.
//!
//! When it is on, the W3C `traceparent` a request carries (from the app, outbound; from
//! the calling proxy, inbound) is the parent of the request's span, and the request is
//! forwarded with the span's own `traceparent`, so both proxies' spans and the app's share
//! one trace id.
//!
//! No OpenTelemetry SDK runs on the request path (see `benches/results/tracing.md` for
//! what it cost). [`Tracing::start`] parses `traceparent` by hand, asks the [`Sampler`],
//! draws ids from a per-thread generator and writes the new `traceparent` from a stack
//! buffer. [`RequestSpan::finish`] fills a fixed-size record (short names copied inline,
//! the proxy's own service a flag, the times the metrics layer's own clock readings) and
//! pushes it on a bounded queue; a full queue drops the span and counts it. The
//! `palisade-otlp-export` thread batches the records, converts the times, encodes OTLP
//! protobuf itself ([`encode`]) and sends it ([`export`]). A request the sampler dropped
//! (by default 99 % of new traces, see [`DEFAULT_RATIO`]) records nothing and is
//! forwarded as it came.

mod config;
mod encode;
mod export;
mod record;
mod sampler;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use prometheus_client::metrics::counter::Counter;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use config::{ConfigError, ExportConfig, ENDPOINT_VARS};
pub use sampler::{Sampler, DEFAULT_RATIO};

use crate::headers::REQUEST_ID;
use crate::metrics::Direction;
use export::{Command, OtlpClient, Queue, Sink};
use record::{Outcome, ServiceName, SpanRecord, Text, DECISIONS, NO_SCORE};

/// The W3C Trace Context headers.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("trace export: cannot start the export thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Span export; cheap to clone. The export thread stops (after exporting what is queued)
/// when the last clone is dropped or [`Tracing::shutdown`] is called.
#[derive(Debug, Clone)]
pub struct Tracing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: Arc<Queue>,
    sampler: Sampler,
    exporter: Thread,
    commands: Sender<Command>,
    /// Longest a flush waits: one export and one retry on a new connection.
    flush_wait: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop(None));
        self.exporter.unpark();
    }
}

impl Tracing {
    /// Export as the standard variables say, or `None` when no endpoint is set (see
    /// [`ExportConfig::from_vars`]; settings the exporter cannot honour are refused).
    pub fn from_env(service: &str) -> Result<Option<Self>, TracingError> {
        match ExportConfig::from_vars(|name| std::env::var(name).ok())? {
            Some(config) => Self::otlp(config, service).map(Some),
            None => Ok(None),
        }
    }

    /// Export to `endpoint` (`http://host:port`) with the default settings, whatever the
    /// environment says.
    pub fn with_endpoint(endpoint: &str, service: &str) -> Result<Self, TracingError> {
        Self::otlp(ExportConfig::for_endpoint(endpoint)?, service)
    }

    /// Export over OTLP/gRPC as `config` says. `service` is the proxy's service: the
    /// `palisade.service` of inbound spans, and `service.name` unless the environment
    /// named another.
    pub fn otlp(config: ExportConfig, service: &str) -> Result<Self, TracingError> {
        let service_name = config
            .service_name
            .clone()
            .unwrap_or_else(|| service.to_owned());
        let (client_config, local_service) = (config.clone(), service.to_owned());
        Self::start_export(&config, service, move || {
            OtlpClient::new(&client_config, &service_name, &local_service)
                .map(|c| Sink::Otlp(Box::new(c)))
        })
    }

    /// Spans are made as `sampler` says, propagated, queued and then dropped by the
    /// export thread without being encoded: benches isolate the request path's share
    /// with it.
    pub fn discarding(service: &str, sampler: Sampler) -> Result<Self, TracingError> {
        let config = ExportConfig::for_endpoint("http://127.0.0.1:4317")?.with_sampler(sampler);
        Self::start_export(&config, service, || Ok(Sink::Discard))
    }

    fn start_export(
        config: &ExportConfig,
        service: &str,
        sink: impl FnOnce() -> Result<Sink, std::io::Error> + Send + 'static,
    ) -> Result<Self, TracingError> {
        let queue = Arc::new(Queue::new(config.max_queue, config.max_batch, service));
        let (exporter, commands) = export::spawn(queue.clone(), config.schedule_delay, sink)?;
        Ok(Self {
            inner: Arc::new(Inner {
                queue,
                sampler: config.sampler,
                exporter,
                commands,
                flush_wait: config.timeout * 2 + Duration::from_secs(1),
            }),
        })
    }

    /// Spans dropped because the export queue was full (`OTEL_BSP_MAX_QUEUE_SIZE`): the
    /// collector is slower than the traffic. A handle on the live counter, for the
    /// metrics registry.
    pub fn dropped_spans(&self) -> Counter {
        self.inner.queue.dropped.clone()
    }

    /// Spans lost because their export failed (collector unreachable, slow or refusing).
    pub fn failed_spans(&self) -> Counter {
        self.inner.queue.failed.clone()
    }

    /// Exports every finished span now and waits for it, a bounded time (tests,
    /// shutdown). Blocks: call it off async workers.
    pub fn flush(&self) {
        self.command(Command::Flush);
    }

    /// Exports what is queued and stops the export thread; spans finished later are
    /// never exported. Blocks like [`Tracing::flush`].
    pub fn shutdown(&self) {
        self.command(|done| Command::Stop(Some(done)));
    }

    fn command(&self, command: impl FnOnce(std::sync::mpsc::SyncSender<()>) -> Command) {
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        if self.inner.commands.send(command(done)).is_err() {
            return;
        }
        self.inner.exporter.unpark();
        if finished.recv_timeout(self.inner.flush_wait).is_err() {
            tracing::warn!("the span export thread did not finish in time");
        }
    }

    /// Starts the span of one request as a child of the `traceparent` in `headers` (a
    /// new trace without a valid one), and rewrites `traceparent` to the span's own. An
    /// incoming `tracestate` is kept on the span and forwarded unchanged; without a valid
    /// `traceparent` it is dropped, as W3C Trace Context requires. `received` is when the
    /// request arrived: the caller's clock reading, so the span takes none of its own.
    ///
    /// A request the sampler drops is left as it came: no span, and its `traceparent`
    /// (if valid) forwarded unchanged, as W3C Trace Context allows a vendor that does not
    /// take part in a trace; none is added to a request without one. So the next proxy
    /// can still decide alike, a new trace's id takes its low half, which the ratio
    /// samplers decide by, from the request's `x-request-id`, which both proxies see.
    pub fn start(
        &self,
        direction: Direction,
        method: &Method,
        headers: &mut HeaderMap,
        received: Instant,
    ) -> RequestSpan {
        let sampler = &self.inner.sampler;
        // The common case, a valid parent, looks `traceparent` up once, for reading and
        // for replacing it.
        let invalid = match headers.entry(TRACEPARENT) {
            Entry::Occupied(mut entry) => match parse_traceparent(entry.get().as_bytes()) {
                Some(parent) => {
                    if !sampler.sampled(Some(parent.sampled), &parent.trace_id) {
                        return RequestSpan { recording: None };
                    }
                    let span_id = random_span_id();
                    if let Some(value) = traceparent_value(&parent.trace_id, &span_id) {
                        entry.insert(value);
                    }
                    let trace_state = headers
                        .get(TRACESTATE)
                        .and_then(|value| value.to_str().ok())
                        .map(Arc::from);
                    return self.recording(
                        direction,
                        method,
                        received,
                        (parent.trace_id, span_id, parent.span_id),
                        trace_state,
                    );
                }
                None => {
                    entry.remove();
                    true
                }
            },
            Entry::Vacant(_) => false,
        };
        let trace_id = new_trace_id(headers.get(REQUEST_ID));
        // A new trace's `tracestate` means nothing: W3C Trace Context drops it. An invalid
        // `traceparent` is not forwarded even when the trace is not kept: the next hop
        // would have to refuse it again.
        let kept = sampler.sampled(None, &trace_id);
        if invalid || kept {
            headers.remove(TRACESTATE);
        }
        if !kept {
            return RequestSpan { recording: None };
        }
        let trace_id = with_random_high_half(trace_id);
        let span_id = random_span_id();
        if let Some(value) = traceparent_value(&trace_id, &span_id) {
            headers.insert(TRACEPARENT, value);
        }
        self.recording(
            direction,
            method,
            received,
            (trace_id, span_id, [0; 8]),
            None,
        )
    }

    /// The span of a request the sampler kept: `ids` are its trace id, its span id and
    /// its parent's span id (zero for a new trace).
    fn recording(
        &self,
        direction: Direction,
        method: &Method,
        received: Instant,
        (trace_id, span_id, parent_span_id): ([u8; 16], [u8; 8], [u8; 8]),
        trace_state: Option<Arc<str>>,
    ) -> RequestSpan {
        RequestSpan {
            recording: Some(Arc::new(TraceFacts {
                authz: AtomicU8::new(0),
                waf_score: AtomicU32::new(NO_SCORE),
                started: Started {
                    trace_id,
                    span_id,
                    parent_span_id,
                    trace_state,
                    direction,
                    method: method.clone(),
                    received,
                    queue: self.inner.queue.clone(),
                },
            })),
        }
    }
}

/// The `traceparent` header of a recorded span. Not marked sensitive, although new on
/// every request: h2 spells out a sensitive header's name as well as its value every
/// time, which cost more on the mTLS hop (about 900 instructions a request) than
/// indexing it and churning the table (`benches/results/tracing.md`).
fn traceparent_value(trace_id: &[u8; 16], span_id: &[u8; 8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(&traceparent(trace_id, span_id)).ok()
}

/// A new trace's id before it is known to be sampled: only the low half, which the
/// samplers read, is set. It is a hash of `request_id` when there is one, so that every
/// proxy a request passes decides alike about a trace the first one did not propagate;
/// random otherwise. Either way it is never zero.
fn new_trace_id(request_id: Option<&HeaderValue>) -> [u8; 16] {
    let low = match request_id {
        Some(id) => request_key(id.as_bytes()),
        None => IDS.with_borrow_mut(nonzero_u64),
    };
    let mut trace_id = [0; 16];
    trace_id[8..].copy_from_slice(&low.max(1).to_be_bytes());
    trace_id
}

/// A request id's bytes mixed into 64 well-spread bits: eight bytes a step (the ids are
/// 32 hex digits unless the app sent its own), then the SplitMix64 finaliser, as the
/// ratio samplers compare them with a bound and apps may number their requests in
/// sequence.
fn request_key(id: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = K ^ id.len() as u64;
    let mut step = |word: [u8; 8]| {
        h = (h ^ u64::from_le_bytes(word))
            .wrapping_mul(K)
            .rotate_left(31)
    };
    let mut words = id.chunks_exact(8);
    for word in &mut words {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        step(w);
    }
    if !words.remainder().is_empty() {
        let mut w = [0; 8];
        w[..words.remainder().len()].copy_from_slice(words.remainder());
        step(w);
    }
    h = (h ^ h >> 30).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ h >> 27).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ h >> 31
}

/// `trace_id` (from `new_trace_id`) with a random high half, once the trace is kept.
fn with_random_high_half(mut trace_id: [u8; 16]) -> [u8; 16] {
    let high = IDS.with_borrow_mut(nonzero_u64);
    trace_id[..8].copy_from_slice(&high.to_be_bytes());
    trace_id
}

thread_local! {
    /// Ids need randomness, not secrecy: a small fast generator per thread, seeded from
    /// the OS once.
    static IDS: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// A new span id, non-zero.
fn random_span_id() -> [u8; 8] {
    IDS.with_borrow_mut(|rng| nonzero_u64(rng).to_be_bytes())
}

fn nonzero_u64(rng: &mut SmallRng) -> u64 {
    loop {
        let id: u64 = rng.random();
        if id != 0 {
            return id;
        }
    }
}

/// The span of one request, between [`Tracing::start`] and [`RequestSpan::finish`].
/// Dropped unfinished (the request was abandoned), it is still queued for export, with
/// what was known.
#[derive(Debug)]
pub struct RequestSpan {
    /// `None` when the sampler dropped the span. One pointer: the request's futures
    /// carry (and move, layer by layer) it, not the span (`benches/results/tracing.md`).
    recording: Option<Arc<TraceFacts>>,
}

/// What a recorded span knows from its start; it lives in the span's [`TraceFacts`], so
/// that a span takes one allocation, not one for itself and one for what the inner
/// layers record.
#[derive(Debug)]
struct Started {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: [u8; 8],
    trace_state: Option<Arc<str>>,
    direction: Direction,
    method: Method,
    received: Instant,
    queue: Arc<Queue>,
}

impl TraceFacts {
    /// Queues the span's record: one copy, straight from the shared allocation. The
    /// caller drops its handle right after, so the allocation is freed on the request's
    /// thread (unless the request still holds it), never on the export thread.
    fn end(&self, outcome: Option<Outcome>, duration: Duration) {
        let started = &self.started;
        started.queue.push(SpanRecord {
            trace_id: started.trace_id,
            span_id: started.span_id,
            parent_span_id: started.parent_span_id,
            trace_state: started.trace_state.clone(),
            direction: started.direction,
            method: started.method.clone(),
            started: started.received,
            duration,
            outcome,
            authz: self.authz.load(Ordering::Relaxed),
            waf_score: self.waf_score.load(Ordering::Relaxed),
        });
    }
}

impl RequestSpan {
    /// Where the inner layers record their decisions for this span: insert it as a
    /// request extension. `None` when the span records nothing.
    pub fn facts(&self) -> Option<Arc<TraceFacts>> {
        self.recording.clone()
    }

    /// Whether the span is recorded and exported (the sampler kept it).
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Ends the span with what the proxy learned about the request: the peer identity,
    /// the service (inbound the proxy's own, outbound the destination), the status, and
    /// what the inner layers put in [`RequestSpan::facts`]. `elapsed` is the time from
    /// the `received` given to [`Tracing::start`] to the response head (the caller's
    /// latency measurement). A span the sampler dropped records nothing.
    pub fn finish(mut self, peer: &str, service: &str, status: StatusCode, elapsed: Duration) {
        let Some(span) = self.recording.take() else {
            return;
        };
        let service = if service == span.started.queue.local_service() {
            ServiceName::Local
        } else {
            ServiceName::Other(Text::copy(service))
        };
        span.end(
            Some(Outcome {
                peer: Text::copy(peer),
                service,
                status: status.as_u16(),
            }),
            elapsed,
        );
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        if let Some(span) = self.recording.take() {
            // Abandoned: the only clock read a span makes, off the common path.
            span.end(None, span.started.received.elapsed());
        }
    }
}

/// `version-traceid-parentid-flags`: 2 + 1 + 32 + 1 + 16 + 1 + 2 bytes.
const TRACEPARENT_LEN: usize = 55;

/// A valid incoming `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

/// Parses a W3C `traceparent` without allocating: lowercase hex only, all-zero ids
/// refused, version `ff` refused, a future version may carry more fields after a `-`.
/// Only the `sampled` flag is kept.
fn parse_traceparent(value: &[u8]) -> Option<Parent> {
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
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// The value of each lowercase hex digit, `INVALID` for every other byte.
const HEX_VALUES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        table[b'a' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    table
};
const INVALID: u8 = 0xff;

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    let (high, low) = (HEX_VALUES[usize::from(high)], HEX_VALUES[usize::from(low)]);
    ((high | low) & 0xf0 == 0).then_some(high << 4 | low)
}

/// Decodes `hex` (two digits a byte, a multiple of eight digits) into `into`, eight
/// digits at a time in one `u64` (the ids are 48 digits a span: a table lookup per digit
/// cost about three times as much); checks validity once at the end.
fn decode_hex(hex: &[u8], into: &mut [u8]) -> Option<()> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// Sets a byte's high bit when the byte (high bit clear) is at least `k`; no byte
    /// carries into the next.
    const fn at_least(k: u8) -> u64 {
        ONES * (0x80 - k as u64)
    }
    let mut invalid = 0;
    for (digits, bytes) in hex.chunks_exact(8).zip(into.chunks_exact_mut(4)) {
        let mut word = [0; 8];
        word.copy_from_slice(digits);
        let x = u64::from_le_bytes(word);
        let above = |k| x.wrapping_add(at_least(k));
        let digit = above(b'0') & !above(b'9' + 1);
        let letter = above(b'a') & !above(b'f' + 1);
        // A byte with its high bit set is invalid, whatever the sums above did.
        invalid |= (((digit | letter) & HIGH) ^ HIGH) | (x & HIGH);
        // '0'..'9' are 0x3_, 'a'..'f' 0x6_: the low nibble, plus 9 when bit 6 is set.
        let nibbles = (x & (ONES * 0x0f)) + ((x >> 6) & ONES) * 9;
        // Two digits a byte, first digit high: pairs in 16-bit lanes, then the lanes' low
        // bytes side by side.
        let pairs =
            ((nibbles & 0x00ff_00ff_00ff_00ff) << 4) | ((nibbles >> 8) & 0x00ff_00ff_00ff_00ff);
        let quads = (pairs | pairs >> 8) & 0x0000_ffff_0000_ffff;
        let decoded = (quads | quads >> 16) as u32;
        bytes.copy_from_slice(&decoded.to_le_bytes());
    }
    (invalid == 0).then_some(())
}

/// The `traceparent` of a recorded span (flag `01`), written into a stack buffer.
fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8]) -> [u8; TRACEPARENT_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    fn encode(bytes: &[u8], into: &mut [u8]) {
        for (byte, pair) in bytes.iter().zip(into.chunks_exact_mut(2)) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0x0f)];
        }
    }
    let mut header = *b"00-00000000000000000000000000000000-0000000000000000-01";
    encode(trace_id, &mut header[3..35]);
    encode(span_id, &mut header[36..52]);
    header
}

/// The `traceparent` a span continuing `value` would forward if it kept the parent's
/// span id and `sampled` flag; `None` where `value` is refused. Public only for the fuzz
/// target (hidden from the docs, not part of the API): `start` draws a new span id and
/// asks the sampler, so what it forwards cannot show what the parser read.
#[doc(hidden)]
pub fn traceparent_for_fuzzing(value: &[u8]) -> Option<[u8; TRACEPARENT_LEN]> {
    parse_traceparent(value).map(|parent| {
        let mut header = traceparent(&parent.trace_id, &parent.span_id);
        if !parent.sampled {
            header[TRACEPARENT_LEN - 1] = b'0';
        }
        header
    })
}

/// What the inner layers decided, for the span: a request extension of inbound requests
/// (the stack with authorization and the WAF) whose span is recorded. The authorization layer writes the decision, the WAF
/// its score. It also holds the span itself until it ends.
#[derive(Debug)]
pub struct TraceFacts {
    authz: AtomicU8,
    waf_score: AtomicU32,
    started: Started,
}

impl TraceFacts {
    /// Records the authorization result (`allow`, `deny` or `audit_deny`).
    pub fn set_authz(&self, result: &'static str) {
        if let Some(index) = DECISIONS.iter().position(|d| *d == result) {
            self.authz.store(index as u8, Ordering::Relaxed);
        }
    }

    pub fn set_waf_score(&self, score: u32) {
        self.waf_score.store(score, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::Span;

    use super::*;
    use test_collector::{Answer, TestCollector};

    const APP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn attribute(span: &Span, key: &str) -> Option<Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    }

    fn string(value: &str) -> Option<Value> {
        Some(Value::StringValue(value.to_owned()))
    }

    fn headers(traceparent: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_str(traceparent).unwrap());
        headers
    }

    fn unix_nanos() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    /// One inbound GET span, child of the sampled `APP` parent, finished at once.
    fn finish_inbound_span(tracing: &Tracing) {
        let mut headers = headers(APP);
        tracing
            .start(
                Direction::Inbound,
                &Method::GET,
                &mut headers,
                Instant::now(),
            )
            .finish("peer", "payments", StatusCode::OK, Duration::ZERO);
    }

    /// Export to `collector` recording every request (`parentbased_always_on`).
    fn recording_all(collector: &TestCollector, service: &str) -> Tracing {
        let always = Sampler::from_vars(Some("parentbased_always_on"), None).unwrap();
        let config = ExportConfig::for_endpoint(&collector.endpoint())
            .unwrap()
            .with_sampler(always);
        Tracing::otlp(config, service).unwrap()
    }

    /// Headers with an `x-request-id`, as the request-id layer leaves every request.
    fn with_request_id(id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_str(id).unwrap());
        headers
    }

    fn exported(tracing: &Tracing, collector: &TestCollector) -> Vec<Span> {
        tracing.flush();
        collector.spans()
    }

    #[test]
    fn traceparent_round_trips() {
        let parent = parse_traceparent(APP.as_bytes()).unwrap();
        assert_eq!(hex(&parent.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&parent.span_id), "00f067aa0ba902b7");
        assert!(parent.sampled);
        assert_eq!(
            &traceparent(&parent.trace_id, &parent.span_id),
            APP.as_bytes()
        );
        // Unknown flags are ignored, surrounding blanks too; a later version may extend.
        let parent =
            parse_traceparent(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02 ")
                .unwrap();
        assert!(!parent.sampled);
        assert!(parse_traceparent(
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next"
        )
        .is_some());
    }

    #[test]
    fn hex_decodes_every_digit_and_refuses_every_other_byte() {
        let digits = b"0123456789abcdef";
        // Every digit in every position of a word.
        for position in 0..8 {
            for (value, &digit) in digits.iter().enumerate() {
                let mut hex = *b"00000000";
                hex[position] = digit;
                let mut decoded = [0; 4];
                decode_hex(&hex, &mut decoded).unwrap();
                let mut expected = [0u8; 4];
                expected[position / 2] = if position % 2 == 0 {
                    (value as u8) << 4
                } else {
                    value as u8
                };
                assert_eq!(decoded, expected, "{}", String::from_utf8_lossy(&hex));
            }
        }
        // Every other byte in every position is refused.
        for position in 0..8 {
            for byte in 0..=255u8 {
                if digits.contains(&byte) {
                    continue;
                }
                let mut hex = *b"0123abcd";
                hex[position] = byte;
                assert!(
                    decode_hex(&hex, &mut [0; 4]).is_none(),
                    "{byte:#x} at {position}"
                );
            }
        }
        let mut decoded = [0; 8];
        decode_hex(b"00f067aa0ba902b7", &mut decoded).unwrap();
        assert_eq!(decoded, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
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
        let collector = TestCollector::start(Answer::Ok);
        let tracing = Tracing::with_endpoint(&collector.endpoint(), "payments").unwrap();
        let mut headers = headers(APP);
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let before = unix_nanos();
        let received = Instant::now();
        let span = tracing.start(Direction::Inbound, &Method::GET, &mut headers, received);
        let forwarded = headers[TRACEPARENT].to_str().unwrap().to_owned();
        assert!(forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(forwarded.ends_with("-01"));
        assert_ne!(forwarded, APP, "forwarded with the span's own id");
        assert_eq!(headers[TRACESTATE], "vendor=1");
        let facts = span.facts().unwrap();
        facts.set_authz("deny");
        facts.set_waf_score(7);
        let elapsed = Duration::from_micros(250);
        span.finish(
            "spiffe://mesh.test/ns/shop/sa/orders",
            "payments",
            StatusCode::SERVICE_UNAVAILABLE,
            elapsed,
        );
        let after = unix_nanos();

        let spans = exported(&tracing, &collector);
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.name, "palisade.inbound");
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(hex(&span.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
        assert!(forwarded.contains(&hex(&span.span_id)));
        assert_eq!(span.trace_state, "vendor=1");
        // The times are the caller's monotonic readings, anchored to the wall clock when
        // the batch is exported: within the test's own readings, but for the microsecond
        // or so between the export thread's two clock reads.
        let slack = 1_000_000;
        assert!(before <= span.start_time_unix_nano + slack);
        assert!(span.start_time_unix_nano <= after + slack);
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            elapsed.as_nanos() as u64
        );
        assert_eq!(attribute(span, "palisade.direction"), string("inbound"));
        assert_eq!(attribute(span, "http.request.method"), string("GET"));
        assert_eq!(attribute(span, "palisade.service"), string("payments"));
        assert_eq!(
            attribute(span, "palisade.peer"),
            string("spiffe://mesh.test/ns/shop/sa/orders")
        );
        assert_eq!(
            attribute(span, "http.response.status_code"),
            Some(Value::IntValue(503))
        );
        assert_eq!(attribute(span, "palisade.authz.decision"), string("deny"));
        assert_eq!(
            attribute(span, "palisade.waf.score"),
            Some(Value::IntValue(7))
        );
        assert_eq!(span.attributes.len(), 7);
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
        let resource = collector.resource_attributes();
        assert_eq!(
            resource[0],
            ("service.name".to_owned(), "payments".to_owned())
        );
        tracing.shutdown();
    }

    #[test]
    fn without_a_valid_traceparent_a_new_trace_starts_and_tracestate_is_dropped() {
        let collector = TestCollector::start(Answer::Ok);
        let tracing = recording_all(&collector, "orders");
        let mut headers = headers("00-not-a-trace-01");
        headers.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let span = tracing.start(
            Direction::Outbound,
            &Method::from_bytes(b"PURGE").unwrap(),
            &mut headers,
            Instant::now(),
        );
        let forwarded = headers[TRACEPARENT].to_str().unwrap().to_owned();
        let parent = parse_traceparent(forwarded.as_bytes()).unwrap();
        assert!(parent.sampled, "{forwarded}");
        assert!(!headers.contains_key(TRACESTATE));
        span.finish(
            "spiffe://mesh.test/ns/shop/sa/payments",
            "payments",
            StatusCode::OK,
            Duration::ZERO,
        );
        // A second new trace gets other ids.
        let mut other = HeaderMap::new();
        drop(tracing.start(
            Direction::Outbound,
            &Method::GET,
            &mut other,
            Instant::now(),
        ));
        assert_ne!(other[TRACEPARENT], headers[TRACEPARENT]);

        let spans = exported(&tracing, &collector);
        assert_eq!(spans.len(), 2);
        let span = &spans[0];
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.trace_id, parent.trace_id);
        assert_eq!(span.span_id, parent.span_id);
        assert_eq!(attribute(span, "palisade.service"), string("payments"));
        assert_eq!(attribute(span, "http.request.method"), string("PURGE"));
        assert_eq!(attribute(span, "palisade.authz.decision"), None);
        assert_eq!(attribute(span, "palisade.waf.score"), None);
        assert_eq!(span.status, None);
        // Dropped unfinished: still exported, with what was known.
        assert_eq!(
            attribute(&spans[1], "palisade.direction"),
            string("outbound")
        );
        assert_eq!(attribute(&spans[1], "http.response.status_code"), None);
        tracing.shutdown();
    }

    #[test]
    fn an_unsampled_parent_is_forwarded_unchanged_and_nothing_is_recorded() {
        let collector = TestCollector::start(Answer::Ok);
        let tracing = Tracing::with_endpoint(&collector.endpoint(), "payments").unwrap();
        let mut headers = headers("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        let span = tracing.start(
            Direction::Inbound,
            &Method::GET,
            &mut headers,
            Instant::now(),
        );
        assert!(!span.is_recording());
        assert!(span.facts().is_none());
        assert_eq!(
            headers[TRACEPARENT], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "forwarded unchanged"
        );
        span.finish("peer", "payments", StatusCode::OK, Duration::ZERO);
        assert!(exported(&tracing, &collector).is_empty());
        tracing.shutdown();
    }

    #[test]
    fn the_configured_sampler_decides_new_traces() {
        let collector = TestCollector::start(Answer::Ok);
        let config = ExportConfig::for_endpoint(&collector.endpoint())
            .unwrap()
            .with_sampler(Sampler::from_vars(Some("parentbased_traceidratio"), Some("0")).unwrap());
        let tracing = Tracing::otlp(config, "orders").unwrap();
        let mut new_trace = HeaderMap::new();
        let span = tracing.start(
            Direction::Outbound,
            &Method::GET,
            &mut new_trace,
            Instant::now(),
        );
        assert!(!span.is_recording());
        assert!(!new_trace.contains_key(TRACEPARENT), "none added");
        drop(span);
        // An invalid `traceparent` is not forwarded, nor its `tracestate`.
        let mut invalid = headers("00-not-a-trace-01");
        invalid.insert(TRACESTATE, HeaderValue::from_static("vendor=1"));
        let span = tracing.start(
            Direction::Outbound,
            &Method::GET,
            &mut invalid,
            Instant::now(),
        );
        assert!(!span.is_recording());
        assert!(invalid.is_empty(), "{invalid:?}");
        drop(span);
        // A sampled parent still wins.
        let mut child = headers(APP);
        let span = tracing.start(
            Direction::Outbound,
            &Method::GET,
            &mut child,
            Instant::now(),
        );
        assert!(span.is_recording());
        span.finish("peer", "payments", StatusCode::OK, Duration::ZERO);
        assert_eq!(exported(&tracing, &collector).len(), 1);
        tracing.shutdown();
    }

    #[test]
    fn by_default_one_new_trace_in_a_hundred_is_recorded_and_sampled_parents_always() {
        let tracing = Tracing::discarding("orders", Sampler::default()).unwrap();
        let recorded = (0..4000)
            .filter(|n| {
                let mut headers = with_request_id(&format!("req-{n}"));
                let span = tracing.start(
                    Direction::Outbound,
                    &Method::GET,
                    &mut headers,
                    Instant::now(),
                );
                // An unsampled request is forwarded as it came.
                assert_eq!(span.is_recording(), headers.contains_key(TRACEPARENT));
                assert_eq!(headers.len(), 1 + usize::from(span.is_recording()));
                span.is_recording()
            })
            .count();
        // 1 % of 4000 is 40; sequential ids are spread by the hash like random ones.
        assert!((20..=65).contains(&recorded), "{recorded}");
        for _ in 0..50 {
            let mut child = headers(APP);
            let span = tracing.start(Direction::Inbound, &Method::GET, &mut child, Instant::now());
            assert!(span.is_recording());
        }
        tracing.shutdown();
    }

    #[test]
    fn request_keys_depend_on_every_byte_and_spread_sequential_ids() {
        let base = b"0123456789abcdef0123456789abcdef-x".to_vec();
        for len in 1..=base.len() {
            let id = &base[..len];
            let key = request_key(id);
            assert_ne!(key, request_key(&base[..len - 1]), "length {len}");
            for at in 0..len {
                let mut other = id.to_vec();
                other[at] ^= 1;
                assert_ne!(key, request_key(&other), "length {len}, byte {at}");
            }
        }
        // Sequential ids: the top bit, which decides a ratio of 0.5, is set about half
        // the time.
        let set = (0..1000u32)
            .filter(|n| request_key(format!("{n:032}").as_bytes()) >> 63 == 1)
            .count();
        assert!((430..=570).contains(&set), "{set}");
    }

    #[test]
    fn both_proxies_of_a_request_decide_alike_without_a_propagated_traceparent() {
        let half = Sampler::from_vars(Some("parentbased_traceidratio"), Some("0.5")).unwrap();
        let proxy = |service| Tracing::discarding(service, half).unwrap();
        let (outbound, inbound) = (proxy("orders"), proxy("payments"));
        let mut recorded = 0;
        for n in 0..400 {
            let mut headers = with_request_id(&format!("{n:032x}"));
            let first = outbound.start(
                Direction::Outbound,
                &Method::GET,
                &mut headers,
                Instant::now(),
            );
            let forwarded = headers.get(TRACEPARENT).cloned();
            let second = inbound.start(
                Direction::Inbound,
                &Method::GET,
                &mut headers,
                Instant::now(),
            );
            assert_eq!(first.is_recording(), second.is_recording(), "request {n}");
            if let Some(forwarded) = forwarded {
                let parent = parse_traceparent(forwarded.as_bytes()).unwrap();
                let own = parse_traceparent(headers[TRACEPARENT].as_bytes()).unwrap();
                assert_eq!(own.trace_id, parent.trace_id);
                recorded += 1;
            }
        }
        assert!((150..=250).contains(&recorded), "{recorded}");
        // A non-parent-based ratio sampler decides by the trace id, whose low half the
        // outbound proxy drew from the request id: the same answer on both sides.
        let ratio = Sampler::from_vars(Some("traceidratio"), Some("0.5")).unwrap();
        for n in 0..100 {
            let trace_id = new_trace_id(Some(&HeaderValue::from_str(&format!("r{n}")).unwrap()));
            let full = with_random_high_half(trace_id);
            assert_eq!(
                ratio.sampled(None, &trace_id),
                ratio.sampled(Some(false), &full)
            );
        }
        outbound.shutdown();
        inbound.shutdown();
    }

    #[test]
    fn the_environment_names_the_service_and_adds_resource_attributes() {
        let collector = TestCollector::start(Answer::Ok);
        let endpoint = collector.endpoint();
        let config = ExportConfig::from_vars(|name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
            "OTEL_SERVICE_NAME" => Some("payments-eu".to_owned()),
            "OTEL_RESOURCE_ATTRIBUTES" => Some("deployment.environment=prod".to_owned()),
            _ => None,
        })
        .unwrap()
        .unwrap();
        let tracing = Tracing::otlp(config, "payments").unwrap();
        finish_inbound_span(&tracing);
        let spans = exported(&tracing, &collector);
        assert_eq!(attribute(&spans[0], "palisade.service"), string("payments"));
        assert_eq!(
            collector.resource_attributes(),
            [
                ("service.name".to_owned(), "payments-eu".to_owned()),
                ("deployment.environment".to_owned(), "prod".to_owned())
            ]
        );
        tracing.shutdown();
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        // The collector never answers: the export thread is stuck in its first call while
        // the request path keeps finishing spans.
        let collector = TestCollector::start(Answer::Never);
        let config = ExportConfig::for_endpoint(&collector.endpoint())
            .unwrap()
            .with_batching(8, 4, Duration::from_secs(3600))
            .with_timeout(Duration::from_secs(2));
        let tracing = Tracing::otlp(config, "payments").unwrap();
        let started = Instant::now();
        for _ in 0..200 {
            finish_inbound_span(&tracing);
        }
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "{took:?}");
        // At most one batch is in the stuck call and 8 are queued: the rest were dropped.
        let dropped = tracing.dropped_spans().get();
        assert!((180..=192).contains(&dropped), "{dropped}");
    }

    #[test]
    fn an_unreachable_collector_does_not_slow_the_request_path() {
        // Nothing listens on the port: every export fails at connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = ExportConfig::for_endpoint(&format!("http://127.0.0.1:{port}"))
            .unwrap()
            .with_batching(64, 16, Duration::from_millis(10))
            .with_timeout(Duration::from_millis(500));
        let tracing = Tracing::otlp(config, "payments").unwrap();
        let started = Instant::now();
        for _ in 0..500 {
            finish_inbound_span(&tracing);
        }
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "{took:?}");
        let flush = Instant::now();
        tracing.flush();
        assert!(flush.elapsed() < Duration::from_secs(2));
        let lost = tracing.dropped_spans().get() + tracing.failed_spans().get();
        assert_eq!(lost, 500);
        assert!(tracing.failed_spans().get() > 0);
        tracing.shutdown();
    }

    #[test]
    fn a_refusing_collector_loses_the_batch_and_the_next_one_is_sent() {
        let collector = TestCollector::start(Answer::Unavailable);
        let tracing = Tracing::with_endpoint(&collector.endpoint(), "payments").unwrap();
        finish_inbound_span(&tracing);
        tracing.flush();
        assert_eq!(tracing.failed_spans().get(), 1);
        collector.answer(Answer::Ok);
        finish_inbound_span(&tracing);
        tracing.flush();
        assert_eq!(tracing.failed_spans().get(), 1);
        assert_eq!(collector.spans().len(), 1);
        tracing.shutdown();
    }

    #[test]
    fn an_https_endpoint_is_refused() {
        let error = Tracing::with_endpoint("https://collector:4317", "payments")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("TLS to the collector is not supported"),
            "{error}"
        );
    }

    #[test]
    fn discarded_spans_are_propagated_and_never_sent() {
        let tracing = Tracing::discarding("payments", Sampler::default()).unwrap();
        let mut headers = headers(APP);
        let span = tracing.start(
            Direction::Inbound,
            &Method::GET,
            &mut headers,
            Instant::now(),
        );
        assert!(span.is_recording());
        span.finish("peer", "payments", StatusCode::OK, Duration::ZERO);
        tracing.flush();
        assert_eq!(tracing.failed_spans().get(), 0);
        tracing.shutdown();
    }
}

/// A minimal OTLP/gRPC collector for the tests: HTTP/2 on 127.0.0.1, bodies decoded with
/// `opentelemetry-proto`'s prost types, on a thread and runtime of its own.
#[cfg(test)]
mod test_collector {
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Request, Response};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Answer {
        Ok,
        /// gRPC status 14 (unavailable).
        Unavailable,
        /// Accepts the call and never answers.
        Never,
    }

    #[derive(Default)]
    struct Received {
        requests: Vec<ExportTraceServiceRequest>,
    }

    pub(super) struct TestCollector {
        addr: std::net::SocketAddr,
        received: Arc<Mutex<Received>>,
        answer: Arc<Mutex<Answer>>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl TestCollector {
        pub(super) fn start(answer: Answer) -> Self {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let received = Arc::new(Mutex::new(Received::default()));
            let answer = Arc::new(Mutex::new(answer));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (r, a) = (received.clone(), answer.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(serve(listener, r, a, stopped));
            });
            Self {
                addr,
                received,
                answer,
                stop: Some(stop),
            }
        }

        pub(super) fn endpoint(&self) -> String {
            format!("http://{}", self.addr)
        }

        pub(super) fn answer(&self, answer: Answer) {
            *self.answer.lock().unwrap() = answer;
        }

        pub(super) fn spans(&self) -> Vec<Span> {
            let received = self.received.lock().unwrap();
            let mut spans = Vec::new();
            for request in &received.requests {
                assert_eq!(request.resource_spans.len(), 1);
                for scope in &request.resource_spans[0].scope_spans {
                    assert_eq!(scope.scope.as_ref().unwrap().name, "palisade-proxy");
                    spans.extend(scope.spans.iter().cloned());
                }
            }
            spans
        }

        /// The resource attributes of the first export, as strings.
        pub(super) fn resource_attributes(&self) -> Vec<(String, String)> {
            let received = self.received.lock().unwrap();
            let resource = received.requests[0].resource_spans[0]
                .resource
                .as_ref()
                .unwrap();
            resource
                .attributes
                .iter()
                .map(
                    |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(Value::StringValue(value)) => (kv.key.clone(), value.clone()),
                        other => panic!("{}: {other:?}", kv.key),
                    },
                )
                .collect()
        }
    }

    impl Drop for TestCollector {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    async fn serve(
        listener: std::net::TcpListener,
        received: Arc<Mutex<Received>>,
        answer: Arc<Mutex<Answer>>,
        mut stopped: tokio::sync::oneshot::Receiver<()>,
    ) {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let stream = tokio::select! {
                _ = &mut stopped => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let (received, answer) = (received.clone(), answer.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (received, answer) = (received.clone(), answer.clone());
                    async move { Ok::<_, hyper::Error>(call(request, &received, &answer).await) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    type GrpcBody = http_body_util::combinators::WithTrailers<
        Full<Bytes>,
        std::future::Ready<Option<Result<HeaderMap, std::convert::Infallible>>>,
    >;

    async fn call(
        request: Request<Incoming>,
        received: &Mutex<Received>,
        answer: &Mutex<Answer>,
    ) -> Response<GrpcBody> {
        assert_eq!(
            request.uri().path(),
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        assert_eq!(request.headers()["content-type"], "application/grpc");
        assert_eq!(request.headers()["te"], "trailers");
        let answer = *answer.lock().unwrap();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        if answer == Answer::Never {
            std::future::pending::<()>().await;
        }
        assert_eq!(body[0], 0, "uncompressed");
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert_eq!(len, body.len() - 5);
        let status = match answer {
            Answer::Ok => {
                let request = ExportTraceServiceRequest::decode(&body[5..]).unwrap();
                received.lock().unwrap().requests.push(request);
                "0"
            }
            _ => "14",
        };
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(status));
        let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]))
            .with_trailers(std::future::ready(Some(Ok(trailers))));
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        response
    }
}
