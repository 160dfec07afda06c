//! The warm-pool planner: a pure function from (policy, capacity, pool snapshot, timers)
//! to the actions of one pool tick. See `docs/pool-planner.md`.

pub mod model;

pub use model::{EniView, IPS_PER_PREFIX, NodeCapacity, PoolPolicy, PoolSnapshot, PoolStats};
