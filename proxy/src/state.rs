//! The mesh as this proxy sees it: the endpoints of every other service, from the
//! control plane's [`ConfigSnapshot`].
//!
//! Snapshots replace the whole view atomically (`ArcSwap`), so a request resolves against
//! one consistent version and never waits on a lock. An endpoint that survives an update
//! (same address, same identity) keeps its load and ejection state, so balancing does not
//! forget a failing endpoint because an unrelated service changed.
//!
//! A service that vanishes from a snapshot is kept for [`VANISHED_SERVICE_GRACE`]: after
//! a control-plane restart its registry starts empty and fills as proxies re-register,
//! so the first snapshots can miss services that are alive. The control plane itself
//! drops an endpoint only after 45 s of silence, so a service that truly went away was
//! already dead for that long; keeping its endpoints a little longer costs at most a
//! failed connect (which ejects the endpoint), never a wrong peer: the endpoint's
//! identity stays pinned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use palisade_api::wire::ConfigSnapshot;
use palisade_spiffe::SpiffeId;

/// The endpoints of every service; empty until the first snapshot is applied.
#[derive(Debug, Default)]
pub struct MeshState {
    current: ArcSwapOption<Snapshot>,
}

/// How long a service missing from snapshots is still resolved.
pub const VANISHED_SERVICE_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Snapshot {
    version: u64,
    services: HashMap<String, Arc<Service>>,
    /// Services the latest snapshot no longer has, with when they went missing.
    vanished: HashMap<String, (Arc<Service>, Instant)>,
}

/// One service and where it runs.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub endpoints: Vec<Arc<Endpoint>>,
}

/// One proxy serving a service: where to connect and the only identity it may present.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: String,
    pub spiffe_id: SpiffeId,
    outstanding: AtomicUsize,
    /// Milliseconds since [`epoch`] until which the endpoint is ejected; 0 when it is not.
    ejected_until: AtomicU64,
}

/// A fixed origin for the ejection clock, so it fits in an atomic.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_millis() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Endpoint {
    pub fn new(addr: String, spiffe_id: SpiffeId) -> Self {
        Self {
            addr,
            spiffe_id,
            outstanding: AtomicUsize::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    /// Requests sent to this endpoint that have not been answered yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Counts a request as outstanding until the guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> OutstandingGuard {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        OutstandingGuard(self.clone())
    }

    /// Leaves the endpoint out of balancing for `duration`.
    pub fn eject(&self, duration: Duration) {
        let until =
            now_millis().saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        self.ejected_until.store(until, Ordering::Relaxed);
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_millis()
    }
}

/// Decrements an endpoint's outstanding count when dropped.
#[derive(Debug)]
pub struct OutstandingGuard(Arc<Endpoint>);

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl MeshState {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the view with `snapshot`. Service names are matched case-insensitively.
    /// An endpoint whose SPIFFE ID does not parse is left out (fail closed: no identity
    /// to verify means no connection) and logged.
    pub fn apply(&self, snapshot: &ConfigSnapshot) {
        let previous = self.current.load_full();
        let known: HashMap<(&str, &SpiffeId), &Arc<Endpoint>> = previous
            .iter()
            .flat_map(|snapshot| {
                let vanished = snapshot.vanished.values().map(|(service, _)| service);
                snapshot.services.values().chain(vanished)
            })
            .flat_map(|service| service.endpoints.iter())
            .map(|endpoint| ((endpoint.addr.as_str(), &endpoint.spiffe_id), endpoint))
            .collect();
        let mut services = HashMap::with_capacity(snapshot.endpoints.len());
        for (name, endpoints) in &snapshot.endpoints {
            let mut kept = Vec::with_capacity(endpoints.len());
            for endpoint in endpoints {
                let id = match SpiffeId::parse(&endpoint.spiffe_id) {
                    Ok(id) => id,
                    Err(error) => {
                        tracing::warn!(
                            service = %name,
                            addr = %endpoint.addr,
                            spiffe_id = %endpoint.spiffe_id,
                            %error,
                            "endpoint left out: its SPIFFE ID is invalid"
                        );
                        continue;
                    }
                };
                let reused = known
                    .get(&(endpoint.addr.as_str(), &id))
                    .map(|e| Arc::clone(e));
                kept.push(
                    reused.unwrap_or_else(|| Arc::new(Endpoint::new(endpoint.addr.clone(), id))),
                );
            }
            let name = name.to_ascii_lowercase();
            services.insert(
                name.clone(),
                Arc::new(Service {
                    name,
                    endpoints: kept,
                }),
            );
        }
        drop(known);
        let now = Instant::now();
        let mut vanished = HashMap::new();
        if let Some(previous) = previous.as_ref() {
            let missing_now = previous
                .services
                .iter()
                .map(|(name, service)| (name, (service, now)));
            let missing_before = previous
                .vanished
                .iter()
                .map(|(name, (service, since))| (name, (service, *since)));
            for (name, (service, since)) in missing_now.chain(missing_before) {
                if services.contains_key(name) || vanished.contains_key(name) {
                    continue;
                }
                if now.saturating_duration_since(since) < VANISHED_SERVICE_GRACE {
                    if since == now {
                        tracing::info!(service = %name, "service missing from the control plane's snapshot; still routing to its last endpoints for a grace period");
                    }
                    vanished.insert(name.clone(), (service.clone(), since));
                }
            }
        }
        self.current.store(Some(Arc::new(Snapshot {
            version: snapshot.version,
            services,
            vanished,
        })));
    }

    /// Whether any configuration arrived yet (readiness needs it).
    pub fn is_configured(&self) -> bool {
        self.current.load().is_some()
    }

    /// The version of the snapshot in force.
    pub fn version(&self) -> Option<u64> {
        self.current.load().as_ref().map(|s| s.version)
    }

    /// The service named exactly `name` (lowercase), or one that vanished from the
    /// snapshots less than [`VANISHED_SERVICE_GRACE`] ago.
    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        let current = self.current.load();
        let current = current.as_ref()?;
        if let Some(service) = current.services.get(name) {
            return Some(service.clone());
        }
        current
            .vanished
            .get(name)
            .filter(|(_, since)| since.elapsed() < VANISHED_SERVICE_GRACE)
            .map(|(service, _)| service.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_api::wire::Endpoint as WireEndpoint;

    fn snapshot(version: u64, entries: &[(&str, &str, &str)]) -> ConfigSnapshot {
        let mut snapshot = ConfigSnapshot {
            version,
            ..Default::default()
        };
        for (service, addr, id) in entries {
            snapshot
                .endpoints
                .entry(service.to_string())
                .or_default()
                .push(WireEndpoint {
                    addr: addr.to_string(),
                    spiffe_id: id.to_string(),
                });
        }
        snapshot
    }

    #[test]
    fn applies_snapshots_keeps_endpoint_state_and_drops_invalid_ids() {
        let state = MeshState::new();
        assert!(!state.is_configured());
        assert!(state.service("payments").is_none());
        state.apply(&snapshot(
            1,
            &[
                ("Payments", "127.0.0.1:1", "spiffe://td/ns/shop/sa/payments"),
                ("Payments", "127.0.0.1:2", "not a spiffe id"),
            ],
        ));
        assert!(state.is_configured());
        let service = state.service("payments").unwrap();
        assert_eq!(service.endpoints.len(), 1);
        service.endpoints[0].eject(Duration::from_secs(60));

        state.apply(&snapshot(
            2,
            &[
                ("payments", "127.0.0.1:1", "spiffe://td/ns/shop/sa/payments"),
                ("orders", "127.0.0.1:3", "spiffe://td/ns/shop/sa/orders"),
            ],
        ));
        assert_eq!(state.version(), Some(2));
        assert!(state.service("payments").unwrap().endpoints[0].is_ejected());
        assert!(!state.service("orders").unwrap().endpoints[0].is_ejected());
    }

    #[test]
    fn a_vanished_service_is_kept_for_a_grace_period_and_comes_back_with_its_state() {
        let state = MeshState::new();
        let payments = ("payments", "127.0.0.1:1", "spiffe://td/ns/shop/sa/payments");
        state.apply(&snapshot(1, &[payments]));
        state.service("payments").unwrap().endpoints[0].eject(Duration::from_secs(60));
        // A control plane that restarted and has not heard from payments yet.
        state.apply(&snapshot(
            2,
            &[("orders", "127.0.0.1:3", "spiffe://td/ns/shop/sa/orders")],
        ));
        state.apply(&snapshot(
            3,
            &[("orders", "127.0.0.1:3", "spiffe://td/ns/shop/sa/orders")],
        ));
        let kept = state
            .service("payments")
            .expect("kept during the grace period");
        assert_eq!(kept.endpoints[0].addr, "127.0.0.1:1");
        state.apply(&snapshot(4, &[payments]));
        assert!(state.service("payments").unwrap().endpoints[0].is_ejected());
    }
}
