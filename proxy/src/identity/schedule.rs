//! When to renew and how loudly to complain: pure arithmetic, so it can be tested
//! without waiting.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Renewal happens at this fraction of the SVID's lifetime...
pub const RENEW_AT: f64 = 0.5;
/// ...plus or minus this much, so that proxies started together do not renew together.
pub const RENEW_JITTER: f64 = 0.1;
/// Below this fraction of the lifetime left, failures are logged as errors, not warnings.
pub const URGENT_BELOW: f64 = 0.25;
/// Retries never come faster than this, however close expiry is.
const MIN_RETRY: Duration = Duration::from_millis(50);

/// The fraction of the lifetime at which to renew, drawn from `[0.4, 0.6]`.
pub fn renewal_fraction(rng: &mut impl Rng) -> f64 {
    RENEW_AT + rng.random_range(-RENEW_JITTER..=RENEW_JITTER)
}

/// How long to wait from `now` before renewing an SVID installed at `installed_at` that
/// expires at `not_after`. The lifetime counts from installation rather than `notBefore`,
/// which an issuer may backdate for clock skew. Zero when renewal is already due.
pub fn renewal_delay(
    installed_at: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    fraction: f64,
) -> Duration {
    palisade_spiffe::svid::renewal_due(installed_at, not_after, fraction)
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
}

/// How long to wait before retrying a failed renewal: the backoff's delay, but never
/// more than half the time left, so that several attempts fit before expiry.
pub fn retry_delay(backoff_delay: Duration, not_after: SystemTime, now: SystemTime) -> Duration {
    match not_after.duration_since(now) {
        Ok(left) => backoff_delay.min(left / 2).max(MIN_RETRY),
        Err(_) => backoff_delay.max(MIN_RETRY),
    }
}

/// How loudly a renewal failure must be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Plenty of lifetime left: a warning.
    Warn,
    /// Less than a quarter of the lifetime left: an error an operator must see.
    Error,
    /// The SVID has expired: the proxy has no identity and serves no mTLS traffic.
    Expired,
}

pub fn urgency(installed_at: SystemTime, not_after: SystemTime, now: SystemTime) -> Urgency {
    let Ok(left) = not_after.duration_since(now) else {
        return Urgency::Expired;
    };
    let lifetime = not_after
        .duration_since(installed_at)
        .unwrap_or(Duration::ZERO);
    if left < lifetime.mul_f64(URGENT_BELOW) {
        Urgency::Error
    } else {
        Urgency::Warn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn renews_at_half_the_lifetime() {
        assert_eq!(
            renewal_delay(t(0), t(3600), t(0), 0.5),
            Duration::from_secs(1800)
        );
        assert_eq!(
            renewal_delay(t(0), t(3600), t(600), 0.5),
            Duration::from_secs(1200)
        );
    }

    #[test]
    fn overdue_renewal_is_immediate() {
        assert_eq!(renewal_delay(t(0), t(100), t(90), 0.5), Duration::ZERO);
        assert_eq!(renewal_delay(t(100), t(50), t(100), 0.5), Duration::ZERO);
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let fractions: Vec<f64> = (0..200).map(|_| renewal_fraction(&mut rng)).collect();
        assert!(fractions.iter().all(|f| (0.4..=0.6).contains(f)));
        let spread = fractions.iter().cloned().fold(f64::MIN, f64::max)
            - fractions.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.1, "jitter spread only {spread}");
        for f in fractions {
            let delay = renewal_delay(t(0), t(3600), t(0), f);
            assert!(delay >= Duration::from_secs(1440) && delay <= Duration::from_secs(2160));
        }
    }

    #[test]
    fn retries_fit_before_expiry() {
        let backoff = Duration::from_secs(30);
        assert_eq!(retry_delay(backoff, t(1000), t(0)), Duration::from_secs(30));
        assert_eq!(retry_delay(backoff, t(10), t(0)), Duration::from_secs(5));
        assert_eq!(retry_delay(backoff, t(10), t(10)), MIN_RETRY);
        assert_eq!(retry_delay(backoff, t(10), t(20)), backoff);
    }

    #[test]
    fn complaints_get_louder_near_expiry() {
        assert_eq!(urgency(t(0), t(100), t(50)), Urgency::Warn);
        assert_eq!(urgency(t(0), t(100), t(80)), Urgency::Error);
        assert_eq!(urgency(t(0), t(100), t(101)), Urgency::Expired);
    }
}
