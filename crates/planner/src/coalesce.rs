//! Coalescing the pool wake-ups of a burst of `AddNetwork`s (issue 16; docs/ipamd.md,
//! "Coalesced wake-ups"). Every ADD wakes the pool loop; ticking at once for each sizes
//! each growth for that one ADD's deficit, so a burst of 20 pods became ~20 EC2 calls.
//! Instead, a wake-up is held while further ones keep coming (the burst is still landing),
//! for at most [`MAX_HOLD`], and then one tick plans for the whole deficit. It is never
//! held while the pool has no address left: then pods are waiting, and the tick is at once,
//! as before. Upstream has no such wake-up (its pool loop only ticks every 5 s,
//! `StartNodeIPPoolManager`); this keeps our immediate reaction and batches like its tick.

use std::time::Duration;

/// A burst is over once no wake-up came for this long.
pub const QUIET: Duration = Duration::from_millis(5);
/// The longest a wake-up is held, counted from the first of the burst.
pub const MAX_HOLD: Duration = Duration::from_millis(25);

/// Where the pool loop stands in a burst of wake-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// Time since the first wake-up that has not been served by a tick yet.
    pub since_first: Duration,
    /// Time since the latest wake-up.
    pub since_last: Duration,
    /// Addresses the datastore can hand to the next pod (`PoolStats::available`).
    pub available: u32,
}

/// What the pool loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Tick now.
    Now,
    /// Wait at most this long for another wake-up, then ask again.
    After(Duration),
}

/// Tick now when the pool is empty, the burst has gone quiet, or the hold is used up;
/// else wait for whichever of those comes first.
pub fn wake(b: &Burst) -> Wake {
    if b.available == 0 || b.since_last >= QUIET || b.since_first >= MAX_HOLD {
        return Wake::Now;
    }
    Wake::After((QUIET - b.since_last).min(MAX_HOLD - b.since_first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_single_wake_up_waits_for_quiet() {
        let b = Burst {
            since_first: ms(0),
            since_last: ms(0),
            available: 3,
        };
        assert_eq!(wake(&b), Wake::After(QUIET));
    }

    #[test]
    fn an_empty_pool_ticks_at_once() {
        let b = Burst {
            since_first: ms(0),
            since_last: ms(0),
            available: 0,
        };
        assert_eq!(wake(&b), Wake::Now);
    }

    #[test]
    fn a_long_burst_is_cut_at_max_hold() {
        let b = Burst {
            since_first: MAX_HOLD - ms(1),
            since_last: ms(0),
            available: 3,
        };
        assert_eq!(wake(&b), Wake::After(ms(1)));
    }
}
