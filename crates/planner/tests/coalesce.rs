//! Properties of the wake-up coalescing (`planner::coalesce`).

use std::time::Duration;

use planner::coalesce::{Burst, MAX_HOLD, QUIET, Wake, wake};
use proptest::prelude::*;

fn burst() -> impl Strategy<Value = Burst> {
    (0u64..60_000, 0u64..60_000, 0u32..4).prop_map(|(first, last, available)| Burst {
        since_first: Duration::from_micros(first.max(last)),
        since_last: Duration::from_micros(last.min(first)),
        available,
    })
}

proptest! {
    /// Pods are waiting: never held.
    #[test]
    fn empty_pool_is_never_held(mut b in burst()) {
        b.available = 0;
        prop_assert_eq!(wake(&b), Wake::Now);
    }

    /// A hold ends by the time the burst is quiet or the hold is used up, whichever is
    /// first, and is never empty (the loop makes progress).
    #[test]
    fn holds_are_bounded(b in burst()) {
        if let Wake::After(d) = wake(&b) {
            prop_assert!(d > Duration::ZERO);
            prop_assert!(b.since_first + d <= MAX_HOLD);
            prop_assert!(b.since_last + d <= QUIET);
            prop_assert!(b.available > 0);
        }
    }

    /// Following the advice without further wake-ups ends in a tick by `MAX_HOLD`.
    #[test]
    fn a_burst_always_ends_in_a_tick(mut b in burst()) {
        for _ in 0..1000 {
            match wake(&b) {
                Wake::Now => return Ok(()),
                Wake::After(d) => {
                    b.since_first += d;
                    b.since_last += d;
                    prop_assert!(b.since_first <= MAX_HOLD);
                }
            }
        }
        prop_assert!(false, "no tick after 1000 steps");
    }

    /// Once a tick is due, more time passing keeps it due.
    #[test]
    fn due_stays_due(b in burst(), extra in 0u64..10_000) {
        if wake(&b) == Wake::Now {
            let later = Burst {
                since_first: b.since_first + Duration::from_micros(extra),
                since_last: b.since_last + Duration::from_micros(extra),
                ..b
            };
            prop_assert_eq!(wake(&later), Wake::Now);
        }
    }
}
