//! What the inbound side enforces, from the control plane's snapshots: the service's
//! compiled authorization policy and its WAF settings, plus the WAF engine.
//!
//! Everything is compiled once per snapshot and swapped in whole (`ArcSwap`), so a
//! request costs one atomic load per layer and never waits on a lock; a request on a
//! keep-alive connection sees the policy in force when it arrives.
//!
//! Fail closed: until a snapshot carries `authorization`, no request is admitted. A later
//! snapshot without it keeps the last policy (the control plane only omits it before its
//! policy store has loaded), so a proxy never drops a good policy for nothing. WAF
//! settings start at the secure defaults and `waf: None` keeps what is in force.

use std::collections::BTreeSet;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use palisade_api::policy::{PathPattern, ServicePolicy};
use palisade_api::wire::{ConfigSnapshot, ServiceAuthorization};
use palisade_spiffe::TrustDomain;
use palisade_waf::{Engine, RuleError, RuleSet, WafSettings};

/// The WAF settings in force, with their routes compiled into a router.
#[derive(Debug)]
pub struct WafConfig {
    pub settings: WafSettings,
    routes: matchit::Router<String>,
    has_routes: bool,
}

impl WafConfig {
    /// Compiles the routes of `settings`: the keys of `settings.routes` and the routes the
    /// service's exclusions name. Each is a `matchit` path pattern (`/login`,
    /// `/v1/charges/{id}`, `/static/{*rest}`), the same syntax as policy routes; the
    /// control plane refuses any other. One that is not a pattern or conflicts with
    /// another is left out and logged, so that path falls back to the service's settings.
    pub fn new(settings: WafSettings) -> Self {
        let mut routes = matchit::Router::new();
        let mut has_routes = false;
        let keys: BTreeSet<&String> = settings
            .routes
            .keys()
            .chain(settings.exclusions.iter().flat_map(|e| &e.routes))
            .collect();
        for key in keys {
            // The policy language's own check (which also keeps `matchit` from panicking
            // past its parameter limit), as the control plane applies it.
            if let Err(error) = PathPattern::parse(key) {
                tracing::warn!(route = %key, error = %error.message, "WAF route settings ignored: a route is a path pattern");
                continue;
            }
            match routes.insert(key.as_str(), key.clone()) {
                Ok(()) => has_routes = true,
                Err(error) => {
                    tracing::warn!(route = %key, %error, "WAF route settings ignored: the route pattern is invalid or conflicts with another");
                }
            }
        }
        Self {
            settings,
            routes,
            has_routes,
        }
    }

    /// The route whose pattern matches `path` (the raw request path), if any.
    pub fn route_for(&self, path: &str) -> Option<&str> {
        if !self.has_routes {
            return None;
        }
        self.routes.at(path).ok().map(|m| m.value.as_str())
    }

    /// Whether the WAF is off for every route, so no body needs buffering.
    pub fn always_off(&self) -> bool {
        use palisade_waf::Mode;
        self.settings.mode == Mode::Off
            && self
                .settings
                .routes
                .values()
                .all(|r| r.mode.is_none_or(|m| m == Mode::Off))
    }
}

/// The enforcement state of one proxy; shared by every inbound connection.
#[derive(Debug)]
pub struct Enforcement {
    trust_domain: TrustDomain,
    service: String,
    engine: Engine,
    authorization: ArcSwapOption<ServicePolicy>,
    /// What `authorization` was compiled from: an unchanged one (most snapshots only
    /// change endpoints) is not compiled again.
    compiled_from: ArcSwapOption<ServiceAuthorization>,
    waf: ArcSwap<WafConfig>,
}

impl Enforcement {
    /// Enforcement for `service` in `trust_domain` with the embedded base rule set. A rule
    /// set that does not compile is an error: the proxy must not start without its WAF.
    pub fn new(trust_domain: TrustDomain, service: &str) -> Result<Arc<Self>, RuleError> {
        let rules = RuleSet::embedded()?;
        tracing::info!(
            rules = rules.len(),
            chains = rules.chain_count(),
            scanner_kib = rules.scanner_bytes() / 1024,
            "WAF base rule set compiled"
        );
        Ok(Self::with_engine(trust_domain, service, Engine::new(rules)))
    }

    /// Enforcement with an already compiled WAF engine (tests share one across proxies).
    pub fn with_engine(trust_domain: TrustDomain, service: &str, engine: Engine) -> Arc<Self> {
        Arc::new(Self {
            trust_domain,
            service: service.to_owned(),
            engine,
            authorization: ArcSwapOption::empty(),
            compiled_from: ArcSwapOption::empty(),
            waf: ArcSwap::from_pointee(WafConfig::new(WafSettings::default())),
        })
    }

    /// Compiles the snapshot's authorization and WAF settings and swaps them in.
    pub fn apply(&self, snapshot: &ConfigSnapshot) {
        match &snapshot.authorization {
            Some(authz) if self.compiled_from.load().as_deref() == Some(authz) => {}
            Some(authz) => {
                let policies: Vec<_> = authz.policies.iter().collect();
                let compiled =
                    ServicePolicy::compile(&self.trust_domain, authz.mesh.default_action, &policies);
                self.authorization.store(Some(Arc::new(compiled)));
                self.compiled_from.store(Some(Arc::new(authz.clone())));
                tracing::info!(
                    version = snapshot.version,
                    service = %self.service,
                    policies = policies.len(),
                    default_action = %authz.mesh.default_action,
                    "authorization policy applied"
                );
            }
            None if self.is_configured() => tracing::warn!(
                version = snapshot.version,
                "the control plane sent no authorization; keeping the policy in force"
            ),
            None => tracing::warn!(
                version = snapshot.version,
                "the control plane sent no authorization yet; every inbound request is refused until it does"
            ),
        }
        if let Some(settings) = &snapshot.waf {
            if self.waf.load().settings != *settings {
                // Built here, once, rather than by the first request at a new level.
                self.engine.rules().prepare(settings);
                self.waf.store(Arc::new(WafConfig::new(settings.clone())));
                tracing::info!(version = snapshot.version, mode = ?settings.mode, paranoia = settings.paranoia, threshold = settings.threshold, scanner_kib = self.engine.rules().scanner_bytes() / 1024, "WAF settings applied");
            }
        }
    }

    /// Whether an authorization policy is in force (readiness needs it).
    pub fn is_configured(&self) -> bool {
        self.authorization.load().is_some()
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The policy in force; `None` before the first one arrived.
    pub fn authorization(&self) -> arc_swap::Guard<Option<Arc<ServicePolicy>>> {
        self.authorization.load()
    }

    /// The WAF settings in force.
    pub fn waf(&self) -> Arc<WafConfig> {
        self.waf.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_api::policy::MAX_PATH_PARAMS;
    use palisade_waf::RouteSettings;

    fn enforcement() -> Arc<Enforcement> {
        Enforcement::new(TrustDomain::new("td").unwrap(), "payments").unwrap()
    }

    #[test]
    fn unconfigured_until_authorization_arrives_and_kept_when_omitted() {
        let e = enforcement();
        assert!(!e.is_configured());
        e.apply(&ConfigSnapshot::default());
        assert!(!e.is_configured());
        e.apply(&ConfigSnapshot {
            authorization: Some(ServiceAuthorization::default()),
            ..Default::default()
        });
        assert!(e.is_configured());
        let compiled = e.authorization().as_ref().map(Arc::as_ptr);
        e.apply(&ConfigSnapshot {
            version: 2,
            authorization: Some(ServiceAuthorization::default()),
            ..Default::default()
        });
        assert_eq!(
            e.authorization().as_ref().map(Arc::as_ptr),
            compiled,
            "an unchanged authorization is not compiled again"
        );
        e.apply(&ConfigSnapshot::default());
        assert!(e.is_configured());
    }

    #[test]
    fn waf_settings_start_secure_and_none_keeps_them() {
        let e = enforcement();
        assert_eq!(e.waf().settings, WafSettings::default());
        let detect = WafSettings {
            mode: palisade_waf::Mode::Detect,
            ..Default::default()
        };
        e.apply(&ConfigSnapshot {
            waf: Some(detect.clone()),
            ..Default::default()
        });
        assert_eq!(e.waf().settings, detect);
        e.apply(&ConfigSnapshot::default());
        assert_eq!(e.waf().settings, detect);
    }

    #[test]
    fn route_keys_are_path_patterns_and_bad_keys_are_ignored() {
        let mut settings = WafSettings::default();
        for key in ["/v1/charges/{id}", "/login", "no-slash", "/static/{*rest}"] {
            settings.routes.insert(key.into(), RouteSettings::default());
        }
        let waf = WafConfig::new(settings);
        assert_eq!(waf.route_for("/v1/charges/ch_1"), Some("/v1/charges/{id}"));
        assert_eq!(waf.route_for("/login"), Some("/login"));
        assert_eq!(waf.route_for("/static/a/b.css"), Some("/static/{*rest}"));
        assert_eq!(waf.route_for("/v1/charges"), None);
        assert_eq!(waf.route_for("no-slash"), None);
        assert!(!waf.always_off());
    }

    /// A service-level exclusion names its routes by pattern, as the route overrides'
    /// keys do; the request's route must be found for it even when no override has that
    /// key, or the exclusion would never apply.
    #[test]
    fn exclusions_apply_on_the_routes_they_name() {
        let mut settings = WafSettings::default();
        settings.exclusions.push(palisade_waf::Exclusion {
            tags: vec!["sqli".into()],
            routes: vec!["/search/{*rest}".into()],
            ..Default::default()
        });
        let waf = WafConfig::new(settings);
        assert_eq!(waf.route_for("/search/books"), Some("/search/{*rest}"));
        assert_eq!(waf.route_for("/orders"), None);
        let engine = Engine::new(RuleSet::embedded().unwrap());
        let verdict = |path: &str| {
            let target = format!("{path}?q=1%27%20UNION%20SELECT%20password%20FROM%20users--");
            let request = palisade_waf::Request::new("GET", &target);
            engine
                .inspect(&request, &waf.settings, waf.route_for(path))
                .action
        };
        assert_eq!(verdict("/search/books"), palisade_waf::Action::Pass);
        assert_eq!(verdict("/orders"), palisade_waf::Action::Block);
    }

    /// Found through the `spiffe_id` fuzz target's path-pattern panic: a WAF route key
    /// with 26 parameters panicked `matchit` here, in the proxy, when the settings
    /// arrived (the control plane now refuses such keys; a proxy still must not panic).
    #[test]
    fn route_keys_with_too_many_parameters_are_ignored() {
        let key = |n: usize| (0..n).map(|i| format!("/{{p{i}}}")).collect::<String>();
        let mut settings = WafSettings::default();
        settings
            .routes
            .insert(key(MAX_PATH_PARAMS + 1), RouteSettings::default());
        settings.routes.insert(
            format!("/x{}", key(MAX_PATH_PARAMS)),
            RouteSettings::default(),
        );
        let waf = WafConfig::new(settings);
        let path = |n: usize| "/a".repeat(n);
        assert_eq!(waf.route_for(&path(MAX_PATH_PARAMS + 1)), None);
        assert_eq!(
            waf.route_for(&format!("/x{}", path(MAX_PATH_PARAMS))),
            Some(format!("/x{}", key(MAX_PATH_PARAMS)).as_str())
        );
    }
}
