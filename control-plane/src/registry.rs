//! The service registry and the config snapshots proxies watch.
//!
//! An endpoint stays registered while it is alive: a registration refreshes it, and so
//! does every sweep while its proxy's watch stream is open. A watch names the address its
//! proxy registered, so it keeps exactly that endpoint alive: replicas share a SPIFFE ID
//! (one service account), and a replica that died or moved must not be kept in rotation by
//! the others' streams. When neither has
//! happened for the grace period, the endpoint is dropped and a new snapshot published,
//! so a dead proxy stops receiving traffic without any operator action.
//!
//! What is published is shared by every watcher ([`Published`]: endpoints, bundle and the
//! policy set in force); each watch stream cuts its own [`ConfigSnapshot`] from it with
//! [`Published::snapshot_for`], so a proxy receives only its own service's policies.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use palisade_api::wire::{ConfigSnapshot, Endpoint};

use crate::policy_store::ActivePolicy;
use palisade_spiffe::SpiffeId;
use tokio::sync::watch;

/// How long an endpoint outlives its last sign of life, by default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(45);
/// Longest service name accepted (a DNS name's limit).
const MAX_SERVICE_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error(
        "the service name `{0}` is invalid: use 1-253 lower-case letters, digits, `-` and `.`"
    )]
    BadService(String),
    #[error("the inbound address `{0}` is invalid: use host:port, for example 10.0.0.7:15006")]
    BadAddr(String),
}

#[derive(Debug)]
struct Inner {
    version: u64,
    bundle_pem: String,
    /// (namespace, service) -> (addr, spiffe id) -> last sign of life
    endpoints: BTreeMap<(String, String), BTreeMap<(String, String), Instant>>,
    /// open watch streams per SPIFFE ID, then per advertised address (`None` when the
    /// watch named none, which keeps every endpoint of that ID alive, as older proxies
    /// expect)
    watchers: HashMap<String, HashMap<Option<String>, usize>>,
    policy: Arc<ActivePolicy>,
}

/// One published state of the mesh, shared by every watch stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// Increases with every change (endpoints, bundle or policy).
    pub version: u64,
    pub bundle_pem: String,
    /// By (namespace, service).
    pub endpoints: BTreeMap<(String, String), Vec<Endpoint>>,
    /// The policy set in force (the last good one).
    pub policy: Arc<ActivePolicy>,
    /// When this state was published: the push latency is measured from here.
    pub published_at: Option<Instant>,
}

impl Published {
    /// The snapshot for the proxies of `service` in `namespace`: every endpoint, and the
    /// authorization and WAF settings of that service only. Services are named as
    /// Kubernetes names them: `service.namespace` everywhere, and the bare `service` within
    /// the watcher's own namespace, so a bare name never reaches another namespace.
    pub fn snapshot_for(&self, namespace: &str, service: &str) -> ConfigSnapshot {
        let mut endpoints = BTreeMap::new();
        for ((ns, name), list) in &self.endpoints {
            if ns == namespace {
                endpoints.insert(name.clone(), list.clone());
            }
            endpoints.insert(format!("{name}.{ns}"), list.clone());
        }
        ConfigSnapshot {
            version: self.version,
            bundle_pem: self.bundle_pem.clone(),
            endpoints,
            authorization: Some(self.policy.bundle.authorization_for(namespace, service)),
            waf: Some(self.policy.bundle.waf_for(namespace, service)),
        }
    }
}

#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    tx: watch::Sender<Arc<Published>>,
    grace: Duration,
}

impl Registry {
    pub fn new(bundle_pem: String, grace: Duration) -> Arc<Self> {
        let mut inner = Inner {
            version: 0,
            bundle_pem,
            endpoints: BTreeMap::new(),
            watchers: HashMap::new(),
            policy: Arc::new(ActivePolicy::default()),
        };
        let first = snapshot(&mut inner);
        let (tx, _) = watch::channel(Arc::new(first));
        Arc::new(Self {
            inner: Mutex::new(inner),
            tx,
            grace,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    pub fn current(&self) -> Arc<Published> {
        self.tx.borrow().clone()
    }

    /// Records (or refreshes) `service` served at `addr` by the proxy holding `id`, in the
    /// namespace of `id`.
    pub fn register(
        &self,
        service: &str,
        addr: &str,
        id: &SpiffeId,
    ) -> Result<(), RegistrationError> {
        validate_service(service)?;
        validate_addr(addr)?;
        let mut inner = self.lock();
        let key = (addr.to_owned(), id.to_string());
        let namespace = id.namespace().unwrap_or_default().to_owned();
        let is_new = inner
            .endpoints
            .entry((namespace, service.to_owned()))
            .or_default()
            .insert(key, Instant::now())
            .is_none();
        if is_new {
            self.publish(&mut inner);
        }
        Ok(())
    }

    /// Replaces the trust bundle in the snapshots (after a CA rotation step).
    pub fn set_bundle(&self, bundle_pem: String) {
        let mut inner = self.lock();
        if inner.bundle_pem != bundle_pem {
            inner.bundle_pem = bundle_pem;
            self.publish(&mut inner);
        }
    }

    /// Puts `policy` in force and pushes it to every watcher.
    pub fn set_policy(&self, policy: Arc<ActivePolicy>) {
        let mut inner = self.lock();
        inner.policy = policy;
        self.publish(&mut inner);
    }

    /// How many watch streams are open (one per connected proxy).
    pub fn open_watches(&self) -> usize {
        self.lock()
            .watchers
            .values()
            .flat_map(|by_addr| by_addr.values())
            .sum()
    }

    /// Marks a watch stream of `id` open until the returned guard drops.
    pub fn watching(self: &Arc<Self>, id: &SpiffeId, addr: Option<&str>) -> WatchGuard {
        let key = (id.to_string(), addr.map(str::to_owned));
        *self
            .lock()
            .watchers
            .entry(key.0.clone())
            .or_default()
            .entry(key.1.clone())
            .or_default() += 1;
        WatchGuard {
            registry: Arc::clone(self),
            key,
        }
    }

    /// Refreshes endpoints whose proxy is watching and drops those silent past the grace.
    pub fn sweep(&self, now: Instant) {
        let mut inner = self.lock();
        let Inner {
            endpoints,
            watchers,
            ..
        } = &mut *inner;
        let mut removed = false;
        for by_key in endpoints.values_mut() {
            by_key.retain(|(addr, id), last| {
                let watched = watchers.get(id).is_some_and(|by_addr| {
                    by_addr
                        .keys()
                        .any(|w_addr| w_addr.as_ref().is_none_or(|a| a == addr))
                });
                if watched {
                    *last = now;
                }
                let keep = now.saturating_duration_since(*last) <= self.grace;
                if !keep {
                    tracing::info!(event = "endpoint_expired", spiffe_id = %id, addr = %addr, "endpoint removed after its grace period");
                }
                removed |= !keep;
                keep
            });
        }
        endpoints.retain(|_, by_key| !by_key.is_empty());
        if removed {
            self.publish(&mut inner);
        }
    }

    fn publish(&self, inner: &mut Inner) {
        let next = snapshot(inner);
        self.tx.send_replace(Arc::new(next));
    }
}

/// Keeps a watcher counted while its stream is open.
#[derive(Debug)]
pub struct WatchGuard {
    registry: Arc<Registry>,
    key: (String, Option<String>),
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        let (id, addr) = &self.key;
        if let Some(by_addr) = inner.watchers.get_mut(id) {
            if let Some(count) = by_addr.get_mut(addr) {
                *count -= 1;
                if *count == 0 {
                    by_addr.remove(addr);
                }
            }
            if by_addr.is_empty() {
                inner.watchers.remove(id);
            }
        }
    }
}

/// Builds the next snapshot. Versions are milliseconds since the epoch (or the last
/// version plus one), so that they also increase across control-plane restarts.
fn snapshot(inner: &mut Inner) -> Published {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let millis = u64::try_from(millis).unwrap_or(0);
    inner.version = millis.max(inner.version + 1);
    Published {
        version: inner.version,
        bundle_pem: inner.bundle_pem.clone(),
        endpoints: inner
            .endpoints
            .iter()
            .map(|(name, by_key)| {
                let list = by_key
                    .keys()
                    .map(|(addr, id)| Endpoint {
                        addr: addr.clone(),
                        spiffe_id: id.clone(),
                    })
                    .collect();
                (name.clone(), list)
            })
            .collect(),
        policy: Arc::clone(&inner.policy),
        published_at: Some(Instant::now()),
    }
}

/// Refuses a service name that is not 1-253 lower-case letters, digits, `-` and `.`.
pub fn validate_service(service: &str) -> Result<(), RegistrationError> {
    let ok = !service.is_empty()
        && service.len() <= MAX_SERVICE_LEN
        && service
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(RegistrationError::BadService(
            service.chars().take(64).collect(),
        ))
    }
}

pub fn validate_addr(addr: &str) -> Result<(), RegistrationError> {
    let bad = || RegistrationError::BadAddr(addr.chars().take(64).collect());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_ok = host.parse::<std::net::IpAddr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_spiffe::TrustDomain;

    fn id(sa: &str) -> SpiffeId {
        id_in("shop", sa)
    }

    fn id_in(ns: &str, sa: &str) -> SpiffeId {
        SpiffeId::workload(&TrustDomain::new("example.org").unwrap(), ns, sa).unwrap()
    }

    fn endpoints_of(registry: &Registry, service: &str) -> Vec<Endpoint> {
        registry
            .current()
            .snapshot_for("shop", service)
            .endpoints
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn registration_publishes_and_silence_expires() {
        let registry = Registry::new("PEM".into(), Duration::from_secs(10));
        let mut rx = registry.subscribe();
        let first = rx.borrow_and_update().version;
        registry
            .register("web", "127.0.0.1:15006", &id("web"))
            .unwrap();
        let snap = rx.borrow_and_update().clone();
        assert!(snap.version > first);
        assert_eq!(
            endpoints_of(&registry, "web")[0].spiffe_id,
            id("web").to_string()
        );
        registry.sweep(Instant::now() + Duration::from_secs(5));
        assert!(!registry.current().endpoints.is_empty());
        registry.sweep(Instant::now() + Duration::from_secs(11));
        assert!(registry.current().endpoints.is_empty());
    }

    #[test]
    fn an_open_watch_keeps_the_endpoint_alive() {
        let registry = Registry::new("PEM".into(), Duration::from_secs(10));
        registry
            .register("web", "127.0.0.1:15006", &id("web"))
            .unwrap();
        let guard = registry.watching(&id("web"), Some("127.0.0.1:15006"));
        let later = Instant::now() + Duration::from_secs(30);
        registry.sweep(later);
        assert!(!registry.current().endpoints.is_empty());
        drop(guard);
        registry.sweep(later + Duration::from_secs(11));
        assert!(registry.current().endpoints.is_empty());
    }

    #[test]
    fn a_replica_watching_does_not_keep_a_dead_replica_in_rotation() {
        let registry = Registry::new("PEM".into(), Duration::from_secs(10));
        registry
            .register("web", "127.0.0.1:15006", &id("web"))
            .unwrap();
        registry
            .register("web", "127.0.0.1:15007", &id("web"))
            .unwrap();
        let _alive = registry.watching(&id("web"), Some("127.0.0.1:15007"));
        registry.sweep(Instant::now() + Duration::from_secs(30));
        let endpoints = endpoints_of(&registry, "web");
        assert_eq!(endpoints.len(), 1, "{endpoints:?}");
        assert_eq!(endpoints[0].addr, "127.0.0.1:15007");
    }

    #[test]
    fn a_watch_naming_no_address_keeps_every_endpoint_of_its_id() {
        let registry = Registry::new("PEM".into(), Duration::from_secs(10));
        registry
            .register("web", "127.0.0.1:15006", &id("web"))
            .unwrap();
        let _legacy = registry.watching(&id("web"), None);
        registry.sweep(Instant::now() + Duration::from_secs(30));
        assert_eq!(endpoints_of(&registry, "web").len(), 1);
    }

    #[test]
    fn a_bare_service_name_stays_in_its_namespace() {
        let registry = Registry::new("PEM".into(), DEFAULT_GRACE);
        registry
            .register("payments", "127.0.0.1:1", &id_in("shop", "payments"))
            .unwrap();
        registry
            .register("payments", "127.0.0.1:2", &id_in("bank", "payments"))
            .unwrap();
        let published = registry.current();
        let shop = published.snapshot_for("shop", "orders").endpoints;
        assert_eq!(shop["payments"].len(), 1);
        assert_eq!(shop["payments"][0].addr, "127.0.0.1:1");
        assert_eq!(shop["payments.bank"][0].addr, "127.0.0.1:2");
        assert_eq!(shop["payments.shop"][0].addr, "127.0.0.1:1");
        let elsewhere = published.snapshot_for("hr", "people").endpoints;
        assert!(!elsewhere.contains_key("payments"), "{elsewhere:?}");
        assert_eq!(elsewhere.len(), 2);
    }

    #[test]
    fn a_policy_change_publishes_and_each_service_gets_its_own_part() {
        use crate::policy_store::{ActivePolicy, PolicyBundle};
        let policy = "apiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: shop\nspec:\n  targetService: web\n  rules: []\n";
        let files = vec![("p.yaml".to_owned(), policy.to_owned())];
        let bundle = PolicyBundle::from_sources(&files, &Default::default()).unwrap();
        let registry = Registry::new("PEM".into(), DEFAULT_GRACE);
        let mut rx = registry.subscribe();
        let before = rx.borrow_and_update().version;
        registry.set_policy(Arc::new(ActivePolicy::next(bundle, 0)));
        assert!(rx.has_changed().unwrap());
        let published = rx.borrow_and_update().clone();
        assert!(published.version > before);
        let web = published.snapshot_for("shop", "web");
        assert_eq!(web.authorization.unwrap().policies.len(), 1);
        let api = published.snapshot_for("shop", "api");
        assert!(api.authorization.unwrap().policies.is_empty());
        let other = published.snapshot_for("other", "web");
        assert!(other.authorization.unwrap().policies.is_empty());
        assert_eq!(other.waf, Some(palisade_waf::WafSettings::default()));
    }

    #[test]
    fn bad_names_and_addresses_are_refused() {
        let registry = Registry::new("PEM".into(), DEFAULT_GRACE);
        assert!(registry.register("Web!", "127.0.0.1:1", &id("a")).is_err());
        assert!(registry.register("web", "127.0.0.1", &id("a")).is_err());
        assert!(registry.register("web", "bad host:80", &id("a")).is_err());
        assert!(registry.register("web", "[::1]:80", &id("a")).is_ok());
    }
}
