//! Capped exponential backoff with jitter, shared by renewal retries and watch
//! reconnects.
//!
//! Jitter matters because every proxy of a mesh loses the control plane at the same
//! moment when it restarts: without it they would all come back in lock-step and hit
//! it at once on every retry.

use std::time::Duration;

use rand::Rng;

/// The delay before each retry doubles from `initial` up to `max`; each delay actually
/// used is drawn uniformly from the upper half of the current step (`[step/2, step]`),
/// so retries spread out but never come faster than half the schedule.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// `initial` is raised to at least 1 ms and `max` to at least `initial`, so the
    /// schedule always makes progress and never spins.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        let max = max.max(initial);
        Self {
            initial,
            max,
            step: initial,
        }
    }

    /// The delay to wait before the next attempt, drawn with `rng`.
    pub fn next_delay_with(&mut self, rng: &mut impl Rng) -> Duration {
        let step = self.step;
        self.step = self.step.saturating_mul(2).min(self.max);
        let half = step / 2;
        let spread = (step - half).as_nanos() as u64;
        half + Duration::from_nanos(rng.random_range(0..=spread))
    }

    /// The delay to wait before the next attempt, drawn from the thread's RNG.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(&mut rand::rng())
    }

    /// Starts the schedule over after a success.
    pub fn reset(&mut self) {
        self.step = self.initial;
    }

    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_double_stay_in_the_upper_half_and_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let expected_steps = [100u64, 200, 400, 800, 1000, 1000, 1000];
        for step in expected_steps {
            let delay = backoff.next_delay_with(&mut rng);
            let step = Duration::from_millis(step);
            assert!(
                delay >= step / 2 && delay <= step,
                "delay {delay:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let delays: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)))
            .map(|mut b| b.next_delay_with(&mut rng))
            .collect();
        assert!(delays.len() > 10, "jitter produced too few distinct delays");
    }

    #[test]
    fn reset_starts_over() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(10));
        for _ in 0..6 {
            backoff.next_delay_with(&mut rng);
        }
        backoff.reset();
        assert!(backoff.next_delay_with(&mut rng) <= Duration::from_millis(10));
    }

    #[test]
    fn degenerate_bounds_do_not_spin_or_panic() {
        let mut backoff = Backoff::new(Duration::ZERO, Duration::ZERO);
        let delay = backoff.next_delay();
        assert!(delay <= Duration::from_millis(1));
        assert_eq!(backoff.max(), Duration::from_millis(1));
    }
}
