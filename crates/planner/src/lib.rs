//! The warm-pool planner: a pure function from (policy, capacity, pool snapshot, timers)
//! to the actions of one pool tick, plus a node simulator to run it to a fixed point.
//! See `docs/pool-planner.md` for the mapping to upstream and every quirk decision.

#![warn(missing_docs)]

pub mod coalesce;
pub mod deletable;
pub mod exclusion;
pub mod model;
pub mod plan;
pub mod reconcile;
pub mod sim;
pub mod targets;

pub use deletable::{DeletionTargets, KeepReason, MIN_ENI_LIFETIME, deletable_eni, keep_reason};
pub use exclusion::{
    EniSubnet, SubnetTags, excluded_eni_freeable, exclusion_changes, plan_excluded, subnet_excluded,
};
pub use model::{EniView, IPS_PER_PREFIX, NodeCapacity, PoolPolicy, PoolSnapshot, PoolStats};
pub use plan::{
    Action, CidrKind, DECREASE_INTERVAL, Evaluation, INSUFFICIENT_ADDRESS_BACKOFF, Note,
    POOL_TICK_INTERVAL, TickPlan, TickTimers, allocatable_enis, evaluate, plan_tick,
};
pub use reconcile::{
    HeldEni, ListedEni, RELEASE_COOLDOWN, ReconcileInput, ReconcilePlan, Suspect, plan_reconcile,
};
pub use targets::{
    EniLimits, IpTargets, TargetState, cidrs_over_target, eni_limits, eni_resources_to_allocate,
    freeable_eni_exists, has_room_for_eni, ip_targets, is_pool_too_high, is_pool_too_low,
    prefixes_needed, should_remove_extra_enis, target_state,
};
