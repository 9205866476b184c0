//! The control plane's Prometheus metrics.
//!
//! Counters and the push-latency histogram are updated where things happen; gauges that
//! mirror state (open watches, versions, CA expiry) are read at scrape time, so they can
//! never drift from what the control plane actually holds. Every label value comes from a
//! fixed set: the stable error codes of the API, or the names of the CA's roots.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::ca::CertificateAuthority;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The stable error code the caller received (`token_unknown`, `csr_malformed`...).
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RootLabels {
    /// The name of a root in the trust bundle (one or two at a time).
    pub root: String,
    /// `true` for the root that signs new SVIDs.
    pub signing: &'static str,
}

/// What the scrape-time gauges read.
#[derive(Debug, Clone, Copy)]
pub struct StateView {
    pub open_watches: usize,
    pub policy_version: u64,
    pub config_version: u64,
}

/// All metrics of one control plane.
#[derive(Debug)]
pub struct ControlPlaneMetrics {
    registry: Registry,
    svids_issued: Counter,
    svids_refused: Family<RefusalLabels, Counter>,
    connected_proxies: Gauge,
    policy_version: Gauge,
    config_version: Gauge,
    push_latency: Histogram,
    policy_rejections: Counter,
    ca_not_after: Family<RootLabels, Gauge>,
}

impl Default for ControlPlaneMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("palisade_control_plane");
        let svids_issued = Counter::default();
        let svids_refused = Family::<RefusalLabels, Counter>::default();
        let connected_proxies = Gauge::default();
        let policy_version = Gauge::default();
        let config_version = Gauge::default();
        // 0.1 ms doubling to about 3 s: a push is an in-memory hand-off to a stream.
        let push_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let policy_rejections = Counter::default();
        let ca_not_after = Family::<RootLabels, Gauge>::default();
        registry.register(
            "svids_issued",
            "SVIDs issued to workloads (first issuance and renewals)",
            svids_issued.clone(),
        );
        registry.register(
            "svids_refused",
            "SVID requests refused, by the error code returned",
            svids_refused.clone(),
        );
        registry.register(
            "connected_proxies",
            "Config watch streams currently open (one per connected proxy)",
            connected_proxies.clone(),
        );
        registry.register(
            "policy_version",
            "Version of the policy set in force (milliseconds since the epoch when applied; 0 without a policy directory)",
            policy_version.clone(),
        );
        registry.register(
            "config_version",
            "Version of the last published config snapshot (endpoints, bundle or policy changed)",
            config_version.clone(),
        );
        registry.register_with_unit(
            "policy_push_duration",
            "Time from a config change being published to its snapshot being handed to each open watch stream",
            Unit::Seconds,
            push_latency.clone(),
        );
        registry.register(
            "policy_rejections",
            "Policy directory changes refused because they did not validate",
            policy_rejections.clone(),
        );
        registry.register_with_unit(
            "ca_root_not_after",
            "Expiry of each root in the trust bundle, seconds since the Unix epoch",
            Unit::Seconds,
            ca_not_after.clone(),
        );
        Self {
            registry,
            svids_issued,
            svids_refused,
            connected_proxies,
            policy_version,
            config_version,
            push_latency,
            policy_rejections,
            ca_not_after,
        }
    }
}

impl ControlPlaneMetrics {
    pub fn svid_issued(&self) {
        self.svids_issued.inc();
    }

    /// Counts a refused SVID request under the error code the caller received.
    pub fn svid_refused(&self, code: &'static str) {
        self.svids_refused
            .get_or_create(&RefusalLabels { reason: code })
            .inc();
    }

    pub fn policy_rejected(&self) {
        self.policy_rejections.inc();
    }

    /// Records how long a published change took to reach one watch stream.
    pub fn pushed(&self, elapsed: Duration) {
        self.push_latency.observe(elapsed.as_secs_f64());
    }

    /// Renders the Prometheus text format, reading the state gauges first.
    pub fn encode(&self, state: StateView, ca: &CertificateAuthority) -> String {
        self.connected_proxies
            .set(i64::try_from(state.open_watches).unwrap_or(i64::MAX));
        self.policy_version
            .set(i64::try_from(state.policy_version).unwrap_or(i64::MAX));
        self.config_version
            .set(i64::try_from(state.config_version).unwrap_or(i64::MAX));
        // A retired root must disappear from the output, not linger with its old value.
        self.ca_not_after.clear();
        let signing = &ca.signing_root().name;
        for root in ca.roots() {
            let is_signing = if &root.name == signing {
                "true"
            } else {
                "false"
            };
            self.ca_not_after
                .get_or_create(&RootLabels {
                    root: root.name.clone(),
                    signing: is_signing,
                })
                .set(root.not_after().unix_timestamp());
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "rendering metrics failed");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_spiffe::TrustDomain;

    #[test]
    fn renders_counters_state_and_ca_expiry() {
        let td = TrustDomain::new("example.org").unwrap();
        let root = crate::ca::Root::generate("root-1", &td).unwrap();
        let not_after = root.not_after().unix_timestamp();
        let ca = CertificateAuthority::new(td, vec![root], "root-1").unwrap();
        let metrics = ControlPlaneMetrics::default();
        metrics.svid_issued();
        metrics.svid_refused("token_unknown");
        metrics.svid_refused("token_unknown");
        metrics.policy_rejected();
        metrics.pushed(Duration::from_micros(150));
        let text = metrics.encode(
            StateView {
                open_watches: 3,
                policy_version: 42,
                config_version: 43,
            },
            &ca,
        );
        for expected in [
            "palisade_control_plane_svids_issued_total 1".to_owned(),
            r#"palisade_control_plane_svids_refused_total{reason="token_unknown"} 2"#.to_owned(),
            "palisade_control_plane_connected_proxies 3".to_owned(),
            "palisade_control_plane_policy_version 42".to_owned(),
            "palisade_control_plane_config_version 43".to_owned(),
            "palisade_control_plane_policy_rejections_total 1".to_owned(),
            r#"palisade_control_plane_policy_push_duration_seconds_bucket{le="0.0002"} 1"#
                .to_owned(),
            r#"palisade_control_plane_policy_push_duration_seconds_bucket{le="0.0001"} 0"#
                .to_owned(),
            format!(
                r#"palisade_control_plane_ca_root_not_after_seconds{{root="root-1",signing="true"}} {not_after}"#
            ),
        ] {
            assert!(text.contains(&expected), "missing `{expected}` in:\n{text}");
        }
    }
}
