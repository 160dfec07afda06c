//! One pool tick of one network card: upstream's `updateIPPoolIfRequired` body for one
//! datastore (`pkg/ipamd/ipamd.go`), as a pure function returning the actions ipamd should
//! perform.

use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::deletable::{DeletionTargets, deletable_enis};
use crate::model::{EniView, IPS_PER_PREFIX, NodeCapacity, PoolPolicy, PoolSnapshot, PoolStats};
use crate::targets::{
    TargetState, cidrs_over_target, eni_budget, eni_limits, eni_resources_to_allocate,
    has_room_for_eni, ip_targets, is_pool_too_high, is_pool_too_low, prefixes_needed,
    should_remove_extra_enis, target_state,
};

/// `ipPoolMonitorInterval`: how often ipamd runs a pool tick.
pub const POOL_TICK_INTERVAL: Duration = Duration::from_secs(5);
/// `decreaseIPPoolInterval`: minimum time between two pool decreases.
pub const DECREASE_INTERVAL: Duration = Duration::from_secs(30);
/// Back-off after an `InsufficientCidrBlocks`/`InsufficientFreeAddressesInSubnet` error.
pub const INSUFFICIENT_ADDRESS_BACKOFF: Duration = Duration::from_secs(120);

/// What upstream keeps as mutable state between ticks, reduced to what the planner needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickTimers {
    /// Time since the last pool decrease ran on this node; `None` if none ran yet.
    pub since_last_decrease: Option<Duration>,
    /// An insufficient-address error happened less than [`INSUFFICIENT_ADDRESS_BACKOFF`] ago.
    pub in_insufficient_backoff: bool,
    /// Not terminating, and the node is schedulable or `AWS_MANAGE_ENIS_NON_SCHEDULABLE=true`.
    pub provisioning_allowed: bool,
}

impl TickTimers {
    /// Timers of a freshly started, schedulable node: nothing gated.
    pub fn idle() -> Self {
        TickTimers {
            since_last_decrease: None,
            in_insufficient_backoff: false,
            provisioning_allowed: true,
        }
    }

    /// The 30 s gate between decreases is open (strictly more than 30 s, as upstream).
    pub fn decrease_allowed(&self) -> bool {
        self.since_last_decrease
            .is_none_or(|d| d > DECREASE_INTERVAL)
    }
}

/// Kind of CIDR the pool is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CidrKind {
    /// Secondary `/32` addresses.
    Ip,
    /// `/28` prefixes (prefix delegation).
    Prefix,
}

/// One action for ipamd. Grow actions (`AssignIps`, `AssignPrefixes`, `AllocateEni`) are
/// *alternatives*: try them in order and stop after the first that adds anything (move on
/// after an insufficient-address error). Shrink actions (`ReleaseCidrs`, `FreeEni`) are all
/// performed. A plan never contains both kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `AssignPrivateIpAddresses(SecondaryPrivateIpAddressCount = count)` on an existing ENI.
    AssignIps {
        /// Target ENI.
        eni: String,
        /// Addresses to request.
        count: u32,
    },
    /// `AssignPrivateIpAddresses(Ipv4PrefixCount = count)` on an existing ENI.
    AssignPrefixes {
        /// Target ENI.
        eni: String,
        /// Prefixes to request.
        count: u32,
    },
    /// Create and attach a new ENI with `count` addresses or prefixes.
    AllocateEni {
        /// Addresses or prefixes.
        kind: CidrKind,
        /// How many to request with the ENI (`GetENIResourcesToAllocate`).
        count: u32,
    },
    /// Remove unassigned CIDRs from the datastore (non-forcibly) and unassign them in EC2.
    ReleaseCidrs {
        /// ENI holding the CIDRs.
        eni: String,
        /// CIDRs without an assigned address.
        cidrs: Vec<Ipv4Net>,
    },
    /// Remove the ENI from the datastore, detach and delete it.
    FreeEni {
        /// The deletable ENI.
        eni: String,
    },
}

impl Action {
    /// Adds addresses (or an ENI) to the pool.
    pub fn is_grow(&self) -> bool {
        matches!(
            self,
            Action::AssignIps { .. } | Action::AssignPrefixes { .. } | Action::AllocateEni { .. }
        )
    }
}

/// Operator-facing remarks about why the plan is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Note {
    /// The pool holds at least max-pods addresses, so it is never "too low".
    MaxPodsCeiling {
        /// Addresses in the pool.
        total_ips: u32,
        /// The node's pod ceiling.
        max_pods: u32,
    },
    /// Too low, but provisioning is not allowed (terminating or unschedulable node).
    ProvisioningBlocked,
    /// Too low, but inside the 120 s back-off after an insufficient-address error.
    InsufficientAddressBackoff,
    /// Too low, no ENI has room and no further ENI may be attached ("max ENI limit reached").
    MaxEniReached {
        /// Managed ENIs on the card.
        enis: u32,
        /// ENIs the card may hold (after unmanaged ENIs and the trunk slot).
        budget: u32,
    },
    /// Too high, but the last decrease ran 30 s ago or less.
    DecreaseGated,
    /// A release or ENI deletion was held back because it would make the pool too low
    /// (our anti-flap guard; upstream would shrink and grow again on the next tick).
    ShrinkHeldAtLowWatermark,
}

/// The target evaluation behind a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// `GetIPStats` of the card.
    pub stats: PoolStats,
    /// `datastoreTargetState` (short/over; prefixes in PD mode).
    pub short: u32,
    /// See [`TargetState::over`].
    pub over: u32,
    /// IP targets defined (or card > 0).
    pub ip_targets_defined: bool,
    /// `isDatastorePoolTooLow`.
    pub too_low: bool,
    /// `isDatastorePoolTooHigh`.
    pub too_high: bool,
    /// `shouldRemoveExtraENIs`.
    pub remove_extra_enis: bool,
}

/// Evaluates every target predicate of one card.
pub fn evaluate(policy: &PoolPolicy, cap: &NodeCapacity, pool: &PoolSnapshot) -> Evaluation {
    let stats = pool.stats();
    let card = pool.network_card;
    let TargetState {
        short,
        over,
        defined,
    } = target_state(policy, card, &stats);
    Evaluation {
        stats,
        short,
        over,
        ip_targets_defined: defined,
        too_low: is_pool_too_low(policy, cap, card, &stats),
        too_high: is_pool_too_high(policy, card, &stats),
        remove_extra_enis: should_remove_extra_enis(policy, cap, pool, &stats),
    }
}

/// The outcome of one tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickPlan {
    /// Network card the plan is for.
    pub network_card: u32,
    /// The evaluation the plan was made from.
    pub evaluation: Evaluation,
    /// Actions, in the order ipamd should try them.
    pub actions: Vec<Action>,
    /// Remarks for logs, events and the operator CLI.
    pub notes: Vec<Note>,
    /// A decrease ran: ipamd must record "last decrease = now" (even if nothing was released).
    pub decrease_ran: bool,
}

impl TickPlan {
    /// Whether the plan asks for anything at all.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Whether the plan adds to the pool.
    pub fn grows(&self) -> bool {
        self.actions.iter().any(Action::is_grow)
    }

    /// Whether the plan releases CIDRs or frees an ENI.
    pub fn shrinks(&self) -> bool {
        self.actions.iter().any(|a| !a.is_grow())
    }
}

/// ENIs that may receive more CIDRs (`GetAllocatableENIs`), in snapshot order: not trunk,
/// not excluded, not the primary under custom networking, below the per-ENI CIDR limit.
pub fn allocatable_enis<'a>(
    policy: &'a PoolPolicy,
    cap: &NodeCapacity,
    pool: &'a PoolSnapshot,
) -> impl Iterator<Item = &'a EniView> {
    let max = eni_limits(policy, cap).max_cidrs_per_eni();
    pool.enis.iter().filter(move |e| {
        let skipped_primary = policy.custom_networking && e.is_primary;
        let usable = !(e.is_trunk || e.excluded || skipped_primary);
        usable && e.cidr_count < max
    })
}

/// Plans one pool tick of one network card.
pub fn plan_tick(
    policy: &PoolPolicy,
    cap: &NodeCapacity,
    pool: &PoolSnapshot,
    timers: &TickTimers,
) -> TickPlan {
    let evaluation = evaluate(policy, cap, pool);
    let mut plan = TickPlan {
        network_card: pool.network_card,
        evaluation,
        actions: Vec::new(),
        notes: Vec::new(),
        decrease_ran: false,
    };
    let stats = evaluation.stats;
    if stats.total_ips >= policy.max_pods {
        plan.notes.push(Note::MaxPodsCeiling {
            total_ips: stats.total_ips,
            max_pods: policy.max_pods,
        });
    }

    if evaluation.too_low {
        if !timers.provisioning_allowed {
            plan.notes.push(Note::ProvisioningBlocked);
        } else if timers.in_insufficient_backoff {
            plan.notes.push(Note::InsufficientAddressBackoff);
        } else {
            plan_grow(policy, cap, pool, &evaluation, &mut plan);
        }
        // A pool that is too low is never shrunk in the same tick.
        return plan;
    }

    let mut working = pool.clone();
    if evaluation.too_high {
        if timers.decrease_allowed() {
            plan.decrease_ran = true;
            plan_release(policy, cap, &mut working, &mut plan);
        } else {
            plan.notes.push(Note::DecreaseGated);
        }
    }
    if evaluation.remove_extra_enis && timers.provisioning_allowed {
        plan_free_eni(policy, cap, &working, &mut plan);
    }
    plan
}

fn plan_grow(
    policy: &PoolPolicy,
    cap: &NodeCapacity,
    pool: &PoolSnapshot,
    eval: &Evaluation,
    plan: &mut TickPlan,
) {
    let card = pool.network_card;
    let limits = eni_limits(policy, cap);
    let max_cidrs = limits.max_cidrs_per_eni();
    let to_allocate = if policy.prefix_delegation {
        prefixes_needed(policy, card, &eval.stats)
    } else if eval.ip_targets_defined {
        eval.short
    } else {
        limits.max_ips_per_eni
    };
    let mut candidates = 0usize;
    if to_allocate > 0 {
        for eni in allocatable_enis(policy, cap, pool) {
            let count = max_cidrs.saturating_sub(eni.cidr_count).min(to_allocate);
            let eni = eni.id.clone();
            plan.actions.push(if policy.prefix_delegation {
                Action::AssignPrefixes { eni, count }
            } else {
                Action::AssignIps { eni, count }
            });
            candidates += 1;
        }
    }
    if has_room_for_eni(cap, pool) {
        let count = eni_resources_to_allocate(policy, cap, card, &eval.stats);
        if count > 0 {
            let kind = if policy.prefix_delegation {
                CidrKind::Prefix
            } else {
                CidrKind::Ip
            };
            plan.actions.push(Action::AllocateEni { kind, count });
        }
    } else if candidates == 0 {
        plan.notes.push(Note::MaxEniReached {
            enis: pool.enis.iter().filter(|e| !e.excluded).count() as u32,
            budget: eni_budget(cap, pool),
        });
    }
}

fn cidr_size(policy: &PoolPolicy) -> u32 {
    if policy.prefix_delegation {
        IPS_PER_PREFIX
    } else {
        1
    }
}

/// Removes one freeable CIDR from a working snapshot, as the datastore would.
fn drop_cidr(policy: &PoolPolicy, eni: &mut EniView, index: usize) -> Option<Ipv4Net> {
    if index >= eni.freeable_cidrs.len() {
        return None;
    }
    let cidr = eni.freeable_cidrs.remove(index);
    let size = cidr_size(policy);
    eni.cidr_count = eni.cidr_count.saturating_sub(1);
    eni.total_ips = eni.total_ips.saturating_sub(size);
    if policy.prefix_delegation {
        eni.prefixes = eni.prefixes.saturating_sub(1);
        eni.free_prefixes = eni.free_prefixes.saturating_sub(1);
    }
    // Which addresses were cooling is not known per CIDR: keep the count as an upper bound.
    eni.cooldown_ips = eni
        .cooldown_ips
        .min(eni.total_ips.saturating_sub(eni.assigned_ips));
    Some(cidr)
}

fn stats_without(policy: &PoolPolicy, stats: &PoolStats, cidrs: u32, ips: u32) -> PoolStats {
    let mut s = *stats;
    s.total_ips = s.total_ips.saturating_sub(ips);
    if policy.prefix_delegation {
        s.total_prefixes = s.total_prefixes.saturating_sub(cidrs);
        s.free_prefixes = s.free_prefixes.saturating_sub(cidrs);
    }
    s
}

/// `tryUnassignCidrsFromAll`: release up to `over` unassigned CIDRs, last ENI first.
fn plan_release(
    policy: &PoolPolicy,
    cap: &NodeCapacity,
    working: &mut PoolSnapshot,
    plan: &mut TickPlan,
) {
    let card = working.network_card;
    let mut stats = working.stats();
    let mut remaining = cidrs_over_target(policy, card, &stats);
    let size = cidr_size(policy);
    let mut held = false;
    for idx in (0..working.enis.len()).rev() {
        if remaining == 0 || held {
            break;
        }
        let Some(eni) = working.enis.get_mut(idx) else {
            continue;
        };
        if eni.excluded {
            continue;
        }
        let mut released = Vec::new();
        while remaining > 0 && !eni.freeable_cidrs.is_empty() {
            let after = stats_without(policy, &stats, 1, size);
            if is_pool_too_low(policy, cap, card, &after) {
                held = true;
                break;
            }
            let Some(cidr) = drop_cidr(policy, eni, 0) else {
                break;
            };
            released.push(cidr);
            stats = after;
            remaining -= 1;
        }
        if !released.is_empty() {
            plan.actions.push(Action::ReleaseCidrs {
                eni: eni.id.clone(),
                cidrs: released,
            });
        }
    }
    if held {
        plan.notes.push(Note::ShrinkHeldAtLowWatermark);
    }
}

/// `tryFreeENI`: at most one ENI per tick.
fn plan_free_eni(
    policy: &PoolPolicy,
    cap: &NodeCapacity,
    working: &PoolSnapshot,
    plan: &mut TickPlan,
) {
    let card = working.network_card;
    let t = ip_targets(policy, card);
    let targets = DeletionTargets {
        warm_ip: t.warm_ip,
        minimum_ip: t.minimum_ip,
        warm_prefix: policy.warm_prefix_target,
        prefix_delegation: policy.prefix_delegation,
    };
    let stats = working.stats();
    let mut held = false;
    for eni in deletable_enis(working, &targets) {
        let after = if eni.excluded {
            stats
        } else {
            let mut s = stats_without(policy, &stats, eni.prefixes, eni.total_ips);
            s.free_prefixes = stats.free_prefixes.saturating_sub(eni.free_prefixes);
            s
        };
        if is_pool_too_low(policy, cap, card, &after) {
            held = true;
            continue;
        }
        plan.actions.push(Action::FreeEni {
            eni: eni.id.clone(),
        });
        return;
    }
    if held {
        plan.notes.push(Note::ShrinkHeldAtLowWatermark);
    }
}
