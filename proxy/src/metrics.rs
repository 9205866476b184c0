//! The proxy's Prometheus metrics.
//!
//! Every label value comes from a small, bounded set: a direction, a status class, a
//! handshake failure reason, or a SPIFFE ID of a workload the trust domain issued (one per
//! service account). Raw paths, hosts or client-sent strings never become label values,
//! so a hostile client cannot grow the series count. The `service` label is a registered
//! service name: inbound the proxy's own service, outbound the service the destination
//! resolved to (or `unknown` when it resolved to none).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use palisade_spiffe::SvidStore;

use crate::telemetry::Tracing;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub direction: &'static str,
    /// `2xx`, `4xx`, ...
    pub status_class: &'static str,
    /// Inbound: the caller's SPIFFE ID, or `unauthenticated`. Outbound: the destination
    /// proxy's SPIFFE ID, or `none` when no endpoint was reached.
    pub peer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub direction: &'static str,
    pub status_class: &'static str,
    /// As in [`RequestLabels::peer`].
    pub peer: String,
    /// A registered service name, or `unknown` (see the module documentation).
    pub service: String,
}

/// The label value of a request whose destination named no registered service.
pub const UNKNOWN_SERVICE: &str = "unknown";

/// Buckets of the request duration histogram: 0.5 ms doubling up to about 16 s, which
/// spans a loopback hop and the longest default request timeout.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub direction: &'static str,
    /// `ok`, or why the handshake failed (see [`HandshakeFailure::reason`]).
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthzLabels {
    /// `allow`, `deny`, or `audit_deny` (allowed, but a rule in audit mode would deny).
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WafLabels {
    /// The id of a rule of the compiled rule set (a bounded set).
    pub rule: u32,
    /// What happened to the request: `block`, `detect` or `pass`.
    pub action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

/// Why a TLS handshake failed, as a bounded label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    Timeout,
    /// Inbound: the client spoke plaintext and permissive mode is off.
    Plaintext,
    NoClientCertificate,
    UnknownIssuer,
    Expired,
    BadCertificate,
    /// Outbound: the server's SVID is valid but not one registered for the service.
    PeerIdMismatch,
    Io,
    Protocol,
}

impl HandshakeFailure {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Plaintext => "plaintext",
            Self::NoClientCertificate => "no_client_certificate",
            Self::UnknownIssuer => "unknown_issuer",
            Self::Expired => "expired",
            Self::BadCertificate => "bad_certificate",
            Self::PeerIdMismatch => "peer_id_mismatch",
            Self::Io => "io",
            Self::Protocol => "protocol",
        }
    }

    /// Classifies the I/O error tokio-rustls returns from a failed handshake.
    pub fn classify(error: &std::io::Error) -> Self {
        use rustls::{CertificateError, Error};
        let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
            return Self::Io;
        };
        match tls {
            Error::NoCertificatesPresented => Self::NoClientCertificate,
            Error::InvalidCertificate(CertificateError::UnknownIssuer) => Self::UnknownIssuer,
            Error::InvalidCertificate(CertificateError::Expired) => Self::Expired,
            Error::InvalidCertificate(_) => Self::BadCertificate,
            Error::AlertReceived(rustls::AlertDescription::UnknownCA) => Self::UnknownIssuer,
            Error::AlertReceived(rustls::AlertDescription::CertificateExpired) => Self::Expired,
            Error::AlertReceived(rustls::AlertDescription::BadCertificate) => Self::BadCertificate,
            _ => Self::Protocol,
        }
    }
}

/// The handles of one request series: a counter of `requests` and a histogram of
/// `durations`, shared with the families (which never drop a series).
#[derive(Debug)]
struct Series {
    direction: Direction,
    status_class: &'static str,
    service: Box<str>,
    requests: Counter,
    duration: Histogram,
}

impl Series {
    fn is(&self, direction: Direction, status_class: &str, service: &str) -> bool {
        self.direction == direction
            && self.status_class == status_class
            && *self.service == *service
    }
}

/// FxHash (rustc's): a few instructions per word, where SipHash costs about a hundred
/// per key. The keys are peer SPIFFE IDs, from certificates the trust domain issued,
/// so nobody can choose them to collide.
#[derive(Debug, Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Request series by peer, then searched in order: a peer has a handful (one service
/// and a few status classes, per direction). Looked up by `&str`, so that counting a
/// request allocates nothing once its series exists.
type SeriesByPeer = HashMap<Box<str>, Vec<Series>, BuildHasherDefault<FxHasher>>;

/// All metrics of one proxy, and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    /// Handles into `requests` and `durations`: a family lookup hashes every label
    /// with SipHash and needs owned labels (~4,000 instructions per request).
    series: RwLock<SeriesByPeer>,
    /// The service this proxy serves: the `service` label of inbound requests.
    local_service: String,
    /// Span export, when turned on.
    tracing: Option<Tracing>,
    handshakes: Family<HandshakeLabels, Counter>,
    open_connections: Family<DirectionLabels, Gauge>,
    svid_not_after: Gauge,
    authz_decisions: Family<AuthzLabels, Counter>,
    /// The `authz_decisions` counters of [`AUTHZ_RESULTS`], each taken from the family
    /// on its first decision (so a series still appears only once counted): a family
    /// lookup costs a SipHash and a lock (~500 instructions per request).
    authz_counters: [OnceLock<Counter>; AUTHZ_RESULTS.len()],
    waf_matches: Family<WafLabels, Counter>,
}

/// The results of an authorization decision.
const AUTHZ_RESULTS: [&str; 3] = ["allow", "deny", "audit_deny"];

impl Default for Metrics {
    fn default() -> Self {
        Self::with_service(UNKNOWN_SERVICE, None)
    }
}

impl Metrics {
    fn with_service(local_service: &str, tracing: Option<Tracing>) -> Self {
        let mut registry = Registry::with_prefix("palisade_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations =
            Family::<DurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        let open_connections = Family::<DirectionLabels, Gauge>::default();
        let svid_not_after = Gauge::default();
        let authz_decisions = Family::<AuthzLabels, Counter>::default();
        let waf_matches = Family::<WafLabels, Counter>::default();
        registry.register(
            "authz_decisions",
            "Inbound authorization decisions, by result (allow, deny, audit_deny)",
            authz_decisions.clone(),
        );
        registry.register(
            "waf_matches",
            "WAF rule matches, by rule id and the action taken on the request",
            waf_matches.clone(),
        );
        registry.register(
            "requests",
            "Requests answered, by direction, status class and peer identity",
            requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from receiving a request to its response head, by direction, status class, peer identity and destination service",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes, by direction and result (ok or the failure reason)",
            handshakes.clone(),
        );
        registry.register(
            "open_connections",
            "Connections currently open, by direction",
            open_connections.clone(),
        );
        registry.register(
            "svid_not_after_seconds",
            "Expiry of the installed SVID, seconds since the Unix epoch (0 when none)",
            svid_not_after.clone(),
        );
        if let Some(tracing) = &tracing {
            registry.register(
                "trace_spans_dropped",
                "Request spans dropped because the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE)",
                tracing.dropped_spans(),
            );
            registry.register(
                "trace_spans_export_failed",
                "Request spans lost because their OTLP export failed",
                tracing.failed_spans(),
            );
        }
        Self {
            registry,
            requests,
            durations,
            series: RwLock::default(),
            local_service: local_service.to_owned(),
            tracing,
            handshakes,
            open_connections,
            svid_not_after,
            authz_decisions,
            authz_counters: Default::default(),
            waf_matches,
        }
    }
}

/// `2xx`, `4xx`...: a bounded label from a status code.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    /// Metrics of a proxy whose own service is not known (tests); inbound requests are
    /// labelled `service="unknown"`.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Metrics of the proxy serving `service`.
    pub fn for_service(service: &str) -> Arc<Self> {
        Arc::new(Self::with_service(service, None))
    }

    /// Metrics of the proxy serving `service`, exporting a span per request to `tracing`.
    pub fn traced(service: &str, tracing: Option<Tracing>) -> Arc<Self> {
        Arc::new(Self::with_service(service, tracing))
    }

    /// The span exporter, when tracing is on.
    pub fn tracing(&self) -> Option<&Tracing> {
        self.tracing.as_ref()
    }

    /// The service this proxy serves, as labelled on inbound requests.
    pub fn local_service(&self) -> &str {
        &self.local_service
    }

    /// Counts one answered request and records how long its response head took.
    pub fn request(
        &self,
        direction: Direction,
        status: http::StatusCode,
        peer: &str,
        service: &str,
        elapsed: Duration,
    ) {
        let status_class = status_class(status);
        let seconds = elapsed.as_secs_f64();
        if let Some(series) = self.read_series().get(peer).and_then(|series| {
            series
                .iter()
                .find(|s| s.is(direction, status_class, service))
        }) {
            series.requests.inc();
            series.duration.observe(seconds);
            return;
        }
        // The first request of its series.
        let (requests, duration) = self.family_handles(direction, status_class, peer, service);
        requests.inc();
        duration.observe(seconds);
        let mut by_peer = self.write_series();
        let series = by_peer.entry(peer.into()).or_default();
        // Another request of the series may have got here first.
        if !series
            .iter()
            .any(|s| s.is(direction, status_class, service))
        {
            series.push(Series {
                direction,
                status_class,
                service: service.into(),
                requests,
                duration,
            });
        }
    }

    /// A series' handles, looked up in (or added to) the families by their labels.
    fn family_handles(
        &self,
        direction: Direction,
        status_class: &'static str,
        peer: &str,
        service: &str,
    ) -> (Counter, Histogram) {
        let requests = self
            .requests
            .get_or_create(&RequestLabels {
                direction: direction.as_str(),
                status_class,
                peer: peer.to_owned(),
            })
            .clone();
        let duration = self
            .durations
            .get_or_create(&DurationLabels {
                direction: direction.as_str(),
                status_class,
                peer: peer.to_owned(),
                service: service.to_owned(),
            })
            .clone();
        (requests, duration)
    }

    /// The series cache. Every update is one push of complete handles, so a lock
    /// poisoned by a panic elsewhere cannot leave it inconsistent and is used as is.
    fn read_series(&self) -> RwLockReadGuard<'_, SeriesByPeer> {
        self.series
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_series(&self) -> RwLockWriteGuard<'_, SeriesByPeer> {
        self.series
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn handshake(&self, direction: Direction, result: Result<(), HandshakeFailure>) {
        let result = match result {
            Ok(()) => "ok",
            Err(failure) => failure.reason(),
        };
        self.handshakes
            .get_or_create(&HandshakeLabels {
                direction: direction.as_str(),
                result,
            })
            .inc();
    }

    /// Counts one authorization decision (`allow`, `deny` or `audit_deny`).
    pub fn authz_decision(&self, result: &'static str) {
        let Some(slot) = AUTHZ_RESULTS.iter().position(|known| *known == result) else {
            self.authz_decisions
                .get_or_create(&AuthzLabels { result })
                .inc();
            return;
        };
        self.authz_counters[slot]
            .get_or_init(|| {
                self.authz_decisions
                    .get_or_create(&AuthzLabels { result })
                    .clone()
            })
            .inc();
    }

    /// Counts one WAF rule match and what was done with the request.
    pub fn waf_match(&self, rule: u32, action: &'static str) {
        self.waf_matches
            .get_or_create(&WafLabels { rule, action })
            .inc();
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn open_connection(self: &Arc<Self>, direction: Direction) -> ConnectionGuard {
        self.open_connections
            .get_or_create(&DirectionLabels {
                direction: direction.as_str(),
            })
            .inc();
        ConnectionGuard {
            metrics: self.clone(),
            direction,
        }
    }

    /// Renders the Prometheus text format, reading the SVID expiry at scrape time.
    pub fn encode(&self, svids: &SvidStore) -> String {
        self.svid_not_after
            .set(svids.info().map_or(0, |info| info.not_after_unix));
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "rendering metrics failed");
        }
        text
    }
}

/// Decrements the open-connections gauge when the connection ends.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
    direction: Direction,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics
            .open_connections
            .get_or_create(&DirectionLabels {
                direction: self.direction.as_str(),
            })
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendered lines, sorted: a family lists its series in hash order, which
    /// differs between two instances.
    fn lines(metrics: &Metrics, svids: &SvidStore) -> Vec<String> {
        let mut lines: Vec<String> = metrics.encode(svids).lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    /// What `request` did before its series cache: both families looked up by label.
    fn request_uncached(
        metrics: &Metrics,
        direction: Direction,
        status: http::StatusCode,
        peer: &str,
        service: &str,
        elapsed: Duration,
    ) {
        let (requests, duration) =
            metrics.family_handles(direction, status_class(status), peer, service);
        requests.inc();
        duration.observe(elapsed.as_secs_f64());
    }

    /// The cached handles count exactly what the family lookups count, series by series,
    /// across peers, directions, status classes and services that share a peer.
    #[test]
    fn cached_series_render_as_family_lookups_do() {
        let cached = Metrics::new();
        let uncached = Metrics::new();
        let peers = ["spiffe://td/ns/a/sa/b", "spiffe://td/ns/a/sa/c", "none", ""];
        let services = ["orders", "payments", UNKNOWN_SERVICE];
        let statuses = [200, 204, 301, 403, 404, 503, 101];
        for i in 0..500usize {
            let direction = if i % 3 == 0 {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            let status = http::StatusCode::from_u16(statuses[i % statuses.len()])
                .expect("valid status codes");
            let peer = peers[i % peers.len()];
            let service = services[(i / 7) % services.len()];
            let elapsed = Duration::from_micros((i as u64 * 7919) % 20_000_000);
            cached.request(direction, status, peer, service, elapsed);
            request_uncached(&uncached, direction, status, peer, service, elapsed);
        }
        let svids = SvidStore::default();
        assert_eq!(lines(&cached, &svids), lines(&uncached, &svids));
    }

    /// Authorization counters through their handles render as family lookups do, and
    /// a result not yet decided has no series.
    #[test]
    fn authz_counters_render_as_family_lookups_do() {
        let cached = Metrics::new();
        let uncached = Metrics::new();
        let svids = SvidStore::default();
        for (i, result) in ["deny", "allow", "allow", "other", "deny", "allow"]
            .into_iter()
            .enumerate()
        {
            cached.authz_decision(result);
            uncached
                .authz_decisions
                .get_or_create(&AuthzLabels { result })
                .inc();
            assert_eq!(lines(&cached, &svids), lines(&uncached, &svids), "{i}");
        }
        assert!(!cached.encode(&svids).contains(r#"result="audit_deny""#));
    }

    #[test]
    fn fx_hash_reads_every_byte() {
        let hash = |bytes: &[u8]| {
            let mut hasher = FxHasher::default();
            hasher.write(bytes);
            hasher.finish()
        };
        let base = b"spiffe://td/ns/a/sa/b".to_vec();
        for at in 0..base.len() {
            let mut changed = base.clone();
            changed[at] ^= 1;
            assert_ne!(hash(&base), hash(&changed), "{at}");
        }
    }

    #[test]
    fn renders_bounded_series() {
        let metrics = Metrics::new();
        metrics.request(
            Direction::Inbound,
            http::StatusCode::OK,
            "spiffe://td/ns/a/sa/b",
            "orders",
            Duration::from_millis(3),
        );
        metrics.handshake(Direction::Inbound, Err(HandshakeFailure::UnknownIssuer));
        let guard = metrics.open_connection(Direction::Outbound);
        metrics.authz_decision("deny");
        metrics.waf_match(942100, "block");
        let text = metrics.encode(&SvidStore::default());
        assert!(text.contains(
            r#"palisade_proxy_requests_total{direction="inbound",status_class="2xx",peer="spiffe://td/ns/a/sa/b"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"palisade_proxy_request_duration_seconds_bucket{le="0.004",direction="inbound",status_class="2xx",peer="spiffe://td/ns/a/sa/b",service="orders"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"palisade_proxy_request_duration_seconds_bucket{le="0.002",direction="inbound",status_class="2xx",peer="spiffe://td/ns/a/sa/b",service="orders"} 0"#
        ), "{text}");
        assert!(text.contains(
            r#"palisade_proxy_tls_handshakes_total{direction="inbound",result="unknown_issuer"} 1"#
        ));
        assert!(text.contains(r#"palisade_proxy_open_connections{direction="outbound"} 1"#));
        assert!(text.contains("palisade_proxy_svid_not_after_seconds 0"));
        assert!(text.contains(r#"palisade_proxy_authz_decisions_total{result="deny"} 1"#));
        assert!(
            text.contains(r#"palisade_proxy_waf_matches_total{rule="942100",action="block"} 1"#),
            "{text}"
        );
        drop(guard);
        assert!(metrics
            .encode(&SvidStore::default())
            .contains(r#"palisade_proxy_open_connections{direction="outbound"} 0"#));
    }
}
