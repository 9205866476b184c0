//! Which requests get a span: the specification's samplers (`OTEL_TRACES_SAMPLER`).

use super::config::ConfigError;

/// The decision for a span without a parent (or for every span, unless parent-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    AlwaysOn,
    AlwaysOff,
    /// Sampled when the trace id's low 63 bits fall below this bound: the decision
    /// depends only on the trace id, so every proxy of a trace decides alike.
    Ratio(u64),
}

/// A sampler: `always_on`, `always_off`, `traceidratio`, or one of them behind
/// `parentbased_*` (a request with a valid parent follows the parent's `sampled` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    parent_based: bool,
    root: Root,
}

/// The share of new traces the default sampler keeps: 1 %, Istio's default. A sampled
/// request costs its proxies a few per cent of its CPU (the span, a new `traceparent`
/// on every hop, the export); an unsampled one costs a header lookup and a hash, so with
/// export turned on and nothing else said, tracing does not slow the mesh measurably
/// (`benches/results/tracing.md`). A request whose caller sampled it is still recorded
/// (the parent decides), and `OTEL_TRACES_SAMPLER` chooses any other policy.
pub const DEFAULT_RATIO: f64 = 0.01;

impl Default for Sampler {
    /// `parentbased_traceidratio` keeping [`DEFAULT_RATIO`] of new traces. The
    /// OpenTelemetry specification's default, `parentbased_always_on`, would record every
    /// request of an untraced app: that is `OTEL_TRACES_SAMPLER=parentbased_always_on`.
    fn default() -> Self {
        Self {
            parent_based: true,
            root: Self::ratio_root(DEFAULT_RATIO),
        }
    }
}

impl Sampler {
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (the ratio, 0 to 1; 1 for a
    /// named `*traceidratio` sampler, as the specification says). Without a sampler name
    /// the default sampler is used, with the ratio `OTEL_TRACES_SAMPLER_ARG` gives if any.
    /// An unknown sampler or a ratio that is not a number in [0, 1] is refused.
    pub fn from_vars(name: Option<&str>, arg: Option<&str>) -> Result<Self, ConfigError> {
        let ratio_or = |default: f64| -> Result<f64, ConfigError> {
            let Some(arg) = arg else { return Ok(default) };
            match arg.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                _ => Err(ConfigError(format!(
                    "OTEL_TRACES_SAMPLER_ARG={arg}: expected a sampling ratio from 0 to 1"
                ))),
            }
        };
        let ratio = || ratio_or(1.0);
        let Some(name) = name.map(str::trim) else {
            return Ok(Self {
                parent_based: true,
                root: Self::ratio_root(ratio_or(DEFAULT_RATIO)?),
            });
        };
        let (parent_based, root) = match name {
            "always_on" => (false, Root::AlwaysOn),
            "always_off" => (false, Root::AlwaysOff),
            "traceidratio" => (false, Self::ratio_root(ratio()?)),
            "parentbased_always_on" => (true, Root::AlwaysOn),
            "parentbased_always_off" => (true, Root::AlwaysOff),
            "parentbased_traceidratio" => (true, Self::ratio_root(ratio()?)),
            other => {
                return Err(ConfigError(format!(
                    "OTEL_TRACES_SAMPLER={other} is not supported; use always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off or \
                     parentbased_traceidratio"
                )))
            }
        };
        Ok(Self { parent_based, root })
    }

    /// `traceidratio` with `ratio` (clamped to [0, 1]).
    pub fn ratio(ratio: f64, parent_based: bool) -> Self {
        Self {
            parent_based,
            root: Self::ratio_root(ratio.clamp(0.0, 1.0)),
        }
    }

    fn ratio_root(ratio: f64) -> Root {
        // ratio × 2^63; 1.0 gives 2^63, above every 63-bit value.
        Root::Ratio((ratio * (1u64 << 63) as f64) as u64)
    }

    /// Whether a span of `trace_id` is sampled; `parent` is the incoming parent's
    /// `sampled` flag, when there is a valid parent.
    pub fn sampled(&self, parent: Option<bool>, trace_id: &[u8; 16]) -> bool {
        if let (true, Some(parent)) = (self.parent_based, parent) {
            return parent;
        }
        match self.root {
            Root::AlwaysOn => true,
            Root::AlwaysOff => false,
            Root::Ratio(bound) => {
                let mut low = [0; 8];
                low.copy_from_slice(&trace_id[8..]);
                (u64::from_be_bytes(low) >> 1) < bound
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> [u8; 16] {
        let mut id = [0xab; 16];
        id[8..].copy_from_slice(&n.to_be_bytes());
        id
    }

    #[test]
    fn every_sampler_name_parses_and_others_are_refused() {
        for name in [
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ] {
            assert!(
                Sampler::from_vars(Some(name), Some("0.5")).is_ok(),
                "{name}"
            );
        }
        assert_eq!(Sampler::from_vars(None, None).unwrap(), Sampler::default());
        for (name, arg) in [
            ("AlwaysOn", None),
            ("jaeger_remote", None),
            ("traceidratio", Some("half")),
            ("parentbased_traceidratio", Some("1.5")),
            ("traceidratio", Some("-0.1")),
        ] {
            let error = Sampler::from_vars(Some(name), arg).unwrap_err().to_string();
            assert!(error.contains("OTEL_TRACES_SAMPLER"), "{error}");
        }
    }

    #[test]
    fn parent_based_samplers_follow_the_parent_and_others_ignore_it() {
        let on = Sampler::from_vars(Some("parentbased_always_on"), None).unwrap();
        assert!(on.sampled(None, &id(1)));
        assert!(!on.sampled(Some(false), &id(1)));
        let off = Sampler::from_vars(Some("parentbased_always_off"), None).unwrap();
        assert!(!off.sampled(None, &id(1)));
        assert!(off.sampled(Some(true), &id(1)));
        let always = Sampler::from_vars(Some("always_on"), None).unwrap();
        assert!(always.sampled(Some(false), &id(1)));
        let never = Sampler::from_vars(Some("always_off"), None).unwrap();
        assert!(!never.sampled(Some(true), &id(1)));
    }

    #[test]
    fn the_default_keeps_one_new_trace_in_a_hundred_and_follows_parents() {
        let default = Sampler::default();
        let step = u64::MAX / 10_000;
        let kept = (0..10_000)
            .filter(|i| default.sampled(None, &id(i * step)))
            .count();
        assert!((99..=101).contains(&kept), "{kept}");
        assert!(default.sampled(Some(true), &id(u64::MAX)));
        assert!(!default.sampled(Some(false), &id(0)));
        // `OTEL_TRACES_SAMPLER_ARG` alone sets the default sampler's ratio; a named ratio
        // sampler without it keeps everything, as the specification says.
        let tenth = Sampler::from_vars(None, Some("0.1")).unwrap();
        assert_eq!(tenth, Sampler::ratio(0.1, true));
        assert!(Sampler::from_vars(None, Some("2")).is_err());
        let named = Sampler::from_vars(Some("parentbased_traceidratio"), None).unwrap();
        assert_eq!(named, Sampler::ratio(1.0, true));
    }

    #[test]
    fn the_ratio_sampler_keeps_about_that_share_decided_by_the_trace_id() {
        let quarter = Sampler::from_vars(Some("traceidratio"), Some("0.25")).unwrap();
        // Evenly spread trace ids: exactly a quarter fall below the bound.
        let step = u64::MAX / 1000;
        let kept = (0..1000)
            .filter(|i| quarter.sampled(None, &id(i * step)))
            .count();
        assert!((249..=251).contains(&kept), "{kept}");
        // The same trace id always gets the same decision, whatever the parent says.
        assert!(quarter.sampled(Some(false), &id(0)));
        assert!(!quarter.sampled(Some(true), &id(u64::MAX)));
        let all = Sampler::ratio(1.0, false);
        assert!(all.sampled(None, &id(u64::MAX)));
        let none = Sampler::ratio(0.0, false);
        assert!(!none.sampled(None, &id(0)));
        let parent_based = Sampler::from_vars(Some("parentbased_traceidratio"), Some("0")).unwrap();
        assert!(parent_based.sampled(Some(true), &id(0)));
        assert!(!parent_based.sampled(None, &id(0)));
    }
}
