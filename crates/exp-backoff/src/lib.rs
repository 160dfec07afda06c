//! Jittered exponential backoff. Pure: the random draw is passed in, so the bounds are
//! property-tested. [`retry`] runs an operation under a backoff, as upstream's
//! `retry.NWithBackoff` does.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Why a [`Backoff`] cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidBackoff {
    #[error("a backoff needs at least one attempt")]
    NoAttempts,
    #[error("backoff base {base:?} must be above zero and at most the maximum {max:?}")]
    Base { base: Duration, max: Duration },
    #[error("backoff factor {0} must be a finite number >= 1")]
    Factor(f64),
    #[error("backoff jitter {0} must be within 0..=1")]
    Jitter(f64),
}

impl Backoff {
    /// Checks that delays grow from a positive base up to the cap and that there is at
    /// least one attempt (a zero base would retry in a busy loop).
    pub fn validate(&self) -> Result<(), InvalidBackoff> {
        if self.max_attempts == 0 {
            return Err(InvalidBackoff::NoAttempts);
        }
        if self.base.is_zero() || self.base > self.max {
            return Err(InvalidBackoff::Base {
                base: self.base,
                max: self.max,
            });
        }
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(InvalidBackoff::Factor(self.factor));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(InvalidBackoff::Jitter(self.jitter));
        }
        Ok(())
    }

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

/// Seeds of the jitter draws of [`retry`] (any spread will do).
static RETRY_SEED: AtomicU64 = AtomicU64::new(0x0bac_0ff5);

/// Runs `op(attempt)` (0-based) until it succeeds, fails with an error `retry_if` rejects,
/// or `backoff` has no attempt left; sleeps [`Backoff::delay`] with a fresh jitter draw
/// between attempts. Upstream's `retry.NWithBackoff`.
pub async fn retry<T, E, F, Fut>(
    backoff: &Backoff,
    mut retry_if: impl FnMut(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    loop {
        match op(attempt).await {
            Err(e) if backoff.should_retry(attempt) && retry_if(&e) => {
                let seed = RETRY_SEED.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff.delay(attempt, unit_from(seed))).await;
                attempt += 1;
            }
            other => return other,
        }
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

    #[test]
    fn validation_rejects_unusable_backoffs() {
        let ok = Backoff::default();
        assert_eq!(ok.validate(), Ok(()));
        let bad = |b: Backoff| b.validate().is_err();
        assert!(bad(Backoff {
            max_attempts: 0,
            ..ok
        }));
        assert!(bad(Backoff {
            base: Duration::ZERO,
            ..ok
        }));
        assert!(bad(Backoff {
            base: Duration::from_secs(30),
            ..ok
        }));
        assert!(bad(Backoff { factor: 0.5, ..ok }));
        assert!(bad(Backoff {
            factor: f64::NAN,
            ..ok
        }));
        assert!(bad(Backoff { jitter: 1.5, ..ok }));
    }

    #[tokio::test]
    async fn retry_stops_at_success_rejection_or_the_last_attempt() {
        let b = Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
            max_attempts: 4,
            ..Backoff::default()
        };
        let mut calls = 0;
        let r: Result<u32, &str> = retry(
            &b,
            |_| true,
            |n| {
                calls += 1;
                async move { if n < 2 { Err("not yet") } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!((r, calls), (Ok(2), 3));
        let mut calls = 0;
        let r: Result<(), &str> = retry(
            &b,
            |_| true,
            |_| {
                calls += 1;
                async { Err("never") }
            },
        )
        .await;
        assert_eq!((r, calls), (Err("never"), 4), "max_attempts in all");
        let mut calls = 0;
        let r: Result<(), &str> = retry(
            &b,
            |e| *e != "fatal",
            |_| {
                calls += 1;
                async { Err("fatal") }
            },
        )
        .await;
        assert_eq!((r, calls), (Err("fatal"), 1));
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
