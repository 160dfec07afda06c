//! Jittered exponential backoff. Pure: the random draw is passed in, so the bounds are
//! property-tested.

use std::time::Duration;

/// `delay(n) = min(max, base · factor^n)` plus jitter in `[0, delay · jitter)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub factor: f64,
    /// Fraction of the delay added as random jitter (0.0 ..= 1.0).
    pub jitter: f64,
    /// Attempts in all (the first call included).
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// EC2 calls: 200 ms doubling to 20 s, 15 % jitter, 10 attempts.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(20),
            factor: 2.0,
            jitter: 0.15,
            max_attempts: 10,
        }
    }
}

impl Backoff {
    /// The wait after failed attempt `attempt` (0-based); `unit` is a uniform draw in
    /// `[0, 1)` for the jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self.factor.powi(attempt.min(64) as i32);
        let raw = (self.base.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let jitter = raw * self.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0 - f64::EPSILON);
        Duration::from_secs_f64(raw + jitter)
    }

    /// Whether another attempt follows attempt `attempt` (0-based).
    pub fn should_retry(&self, attempt: u32) -> bool {
        attempt + 1 < self.max_attempts
    }
}

/// A cheap uniform draw in `[0, 1)` (no crypto needed for jitter): SplitMix64 over a seed.
pub fn unit_from(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_until_the_cap() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(200));
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(400));
        assert_eq!(b.delay(20, 0.5), Duration::from_secs(20));
        assert!(b.should_retry(8));
        assert!(!b.should_retry(9));
    }

    proptest! {
        /// Every delay lies in [raw, raw · (1 + jitter)) where raw = min(max, base · 2^n),
        /// and delays never shrink as attempts grow (for the same draw).
        #[test]
        fn delays_stay_within_bounds(attempt in 0u32..100, unit in 0.0f64..1.0, seed in any::<u64>()) {
            let b = Backoff::default();
            let raw = (0.2 * 2f64.powi(attempt.min(64) as i32)).min(20.0);
            let d = b.delay(attempt, unit).as_secs_f64();
            prop_assert!(d >= raw - 1e-9);
            prop_assert!(d < raw * 1.15 + 1e-9);
            prop_assert!(b.delay(attempt + 1, unit) >= b.delay(attempt, unit));
            let u = unit_from(seed);
            prop_assert!((0.0..1.0).contains(&u));
        }
    }
}
