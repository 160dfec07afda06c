//! Client-side rate limiting: one token bucket per API family. The bucket is pure (time is
//! passed in); [`RateLimiter`] waits on tokio's clock.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Tokens refill at `rate` per second up to `burst`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now` (time since any fixed origin).
    pub fn new(rate: f64, burst: f64, now: Duration) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is available.
    pub fn try_take(&mut self, now: Duration) -> Result<(), Duration> {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// The API family a call is rate-limited under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiFamily {
    /// Describe* calls (EC2's "non-mutating" bucket).
    Describe,
    /// Create/Attach/Detach/Delete/Modify/Assign/Unassign/CreateTags.
    Mutate,
}

impl ApiFamily {
    pub fn of(action: &str) -> Self {
        if action.starts_with("Describe") {
            Self::Describe
        } else {
            Self::Mutate
        }
    }
}

/// Rates per family (calls per second, burst).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    pub describe: (f64, f64),
    pub mutate: (f64, f64),
}

impl Default for RateLimits {
    /// Well under EC2's account-wide defaults (describe 100/s bucket refill 20/s; mutating
    /// 200/s refill 5/s), since every node of a cluster shares the account's budget.
    fn default() -> Self {
        Self {
            describe: (5.0, 10.0),
            mutate: (2.0, 5.0),
        }
    }
}

/// Async limiter: `acquire(family)` waits until the family's bucket has a token.
#[derive(Debug)]
pub struct RateLimiter {
    origin: Instant,
    buckets: Mutex<BTreeMap<ApiFamily, TokenBucket>>,
}

impl RateLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        let zero = Duration::ZERO;
        Self {
            origin: Instant::now(),
            buckets: Mutex::new(BTreeMap::from([
                (
                    ApiFamily::Describe,
                    TokenBucket::new(limits.describe.0, limits.describe.1, zero),
                ),
                (
                    ApiFamily::Mutate,
                    TokenBucket::new(limits.mutate.0, limits.mutate.1, zero),
                ),
            ])),
        }
    }

    /// Waits for a token of `family`.
    pub async fn acquire(&self, family: ApiFamily) {
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().await;
                let now = self.origin.elapsed();
                match buckets.get_mut(&family).map(|b| b.try_take(now)) {
                    Some(Err(wait)) => wait,
                    _ => return,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(2.0, 3.0, Duration::ZERO);
        for _ in 0..3 {
            assert!(b.try_take(Duration::ZERO).is_ok());
        }
        let wait = b.try_take(Duration::ZERO).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9);
        assert!(b.try_take(Duration::from_millis(500)).is_ok());
    }

    proptest! {
        /// Over any window starting at 0, granted calls never exceed burst + rate · window.
        #[test]
        fn grants_stay_under_the_limit(times in proptest::collection::vec(0u64..20_000, 1..300), rate in 0.5f64..20.0, burst in 1.0f64..20.0) {
            let mut times = times;
            times.sort();
            let mut b = TokenBucket::new(rate, burst, Duration::ZERO);
            let mut granted = 0u32;
            for t in &times {
                let now = Duration::from_millis(*t);
                if b.try_take(now).is_ok() {
                    granted += 1;
                }
                let limit = burst + rate * now.as_secs_f64();
                prop_assert!(f64::from(granted) <= limit + 1e-6);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_keeps_the_call_rate_under_the_limit() {
        let limiter = RateLimiter::new(&RateLimits {
            describe: (10.0, 5.0),
            mutate: (1.0, 1.0),
        });
        let start = Instant::now();
        for _ in 0..25 {
            limiter.acquire(ApiFamily::Describe).await;
        }
        // 5 from the burst, 20 more at 10/s: at least 2 s of (virtual) time.
        assert!(
            start.elapsed() >= Duration::from_millis(1999),
            "{:?}",
            start.elapsed()
        );
        assert!(start.elapsed() < Duration::from_millis(2200));
    }
}
