//! WAF settings per service and per route, as the control plane sends them to proxies.
//!
//! Defaults are the safe ones (block, paranoia 1, threshold 5): a service gets protection
//! from the first start, and a security team loosens it explicitly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the WAF does with a request whose score reaches the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Do not inspect.
    Off,
    /// Inspect and report, never block (a rollout or tuning phase).
    Detect,
    /// Inspect and block at the threshold.
    #[default]
    Block,
}

/// What to do with a body larger than `body_limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    /// Refuse the request (413); nothing past the limit can smuggle an attack.
    #[default]
    Reject,
    /// Inspect the first `body_limit` bytes and let the rest through uninspected.
    InspectPrefix,
}

/// Switches rules off for some requests: all listed rules (or all rules when `rules` and
/// `tags` are empty), for the listed argument names (or every target when `args` is
/// empty), on the listed routes (or every route when `routes` is empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    #[serde(default)]
    pub rules: Vec<u32>,
    /// Rule tags (attack classes such as `sqli`), an alternative to listing ids.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Argument, header or cookie names (case-insensitive; JSON names are dotted paths).
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
}

/// Overrides for one route; unset fields inherit the service's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub paranoia: Option<u8>,
    #[serde(default)]
    pub threshold: Option<u32>,
    /// Added to the service's exclusions on this route.
    #[serde(default)]
    pub exclusions: Vec<Exclusion>,
}

/// WAF settings of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WafSettings {
    pub mode: Mode,
    /// 1 (few false positives) to 4 (most rules).
    pub paranoia: u8,
    /// Anomaly score at which a request is blocked (or reported in detect mode).
    pub threshold: u32,
    /// Largest body inspected, in bytes.
    pub body_limit: usize,
    pub over_limit: OverLimit,
    pub exclusions: Vec<Exclusion>,
    /// Per-route overrides, keyed by the route name the proxy passes to `Engine::inspect`.
    pub routes: BTreeMap<String, RouteSettings>,
}

impl Default for WafSettings {
    fn default() -> Self {
        WafSettings {
            mode: Mode::Block,
            paranoia: 1,
            threshold: 5,
            body_limit: 128 * 1024,
            over_limit: OverLimit::Reject,
            exclusions: Vec::new(),
            routes: BTreeMap::new(),
        }
    }
}

/// Settings resolved for one request's route.
pub(crate) struct Effective<'s> {
    pub mode: Mode,
    pub paranoia: u8,
    pub threshold: u32,
    pub exclusions: Vec<&'s Exclusion>,
}

impl WafSettings {
    /// Same settings at another paranoia level (used by tools and tests).
    pub fn with_paranoia(mut self, paranoia: u8) -> Self {
        self.paranoia = paranoia;
        self
    }

    pub(crate) fn resolve(&self, route: Option<&str>) -> Effective<'_> {
        let over = route.and_then(|r| self.routes.get(r));
        let applies = |e: &&Exclusion| {
            e.routes.is_empty() || route.is_some_and(|r| e.routes.iter().any(|x| x == r))
        };
        let mut exclusions: Vec<&Exclusion> = self.exclusions.iter().filter(applies).collect();
        if let Some(o) = over {
            exclusions.extend(o.exclusions.iter().filter(applies));
        }
        Effective {
            mode: over.and_then(|o| o.mode).unwrap_or(self.mode),
            paranoia: over
                .and_then(|o| o.paranoia)
                .unwrap_or(self.paranoia)
                .clamp(1, 4),
            threshold: over
                .and_then(|o| o.threshold)
                .unwrap_or(self.threshold)
                .max(1),
            exclusions,
        }
    }
}
