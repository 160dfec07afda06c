//! Target evaluation of one datastore (network card): upstream's `datastoreTargetState`,
//! `isDatastorePoolTooLow`, `isDatastorePoolTooHigh`, `shouldRemoveExtraENIs`,
//! `getPrefixesNeeded`, `GetENIResourcesToAllocate` and `hasRoomForEni` (`pkg/ipamd/ipamd.go`;
//! docs/upstream-compat.md).
//!
//! All arithmetic is done in `i64` and clamped, mirroring upstream's signed `max(…, 0)`.

use crate::model::{IPS_PER_PREFIX, NodeCapacity, PoolPolicy, PoolSnapshot, PoolStats};

/// `DefaultWarmIPTarget` / `DefaultMinimumIPTarget`: the targets forced on network cards > 0.
pub const SECONDARY_CARD_IP_TARGET: u32 = 1;

/// Per-ENI limits derived from the instance's `IPv4Limit` (upstream `GetENIIPv4Limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EniLimits {
    /// `maxIPsPerENI`: addresses a pod can get from one ENI (PD: prefixes × 16).
    pub max_ips_per_eni: u32,
    /// `maxPrefixesPerENI` (0 in secondary-IP mode).
    pub max_prefixes_per_eni: u32,
}

impl EniLimits {
    /// CIDR entries (`/32`s or `/28`s, current mode) one ENI can hold.
    pub fn max_cidrs_per_eni(&self) -> u32 {
        if self.max_prefixes_per_eni > 0 {
            self.max_prefixes_per_eni
        } else {
            self.max_ips_per_eni
        }
    }
}

/// Limits of one ENI in the policy's mode: `ENIIPv4Limit = IPv4Limit − 1`.
pub fn eni_limits(policy: &PoolPolicy, cap: &NodeCapacity) -> EniLimits {
    let eni_ipv4_limit = cap.ipv4_per_eni.saturating_sub(1);
    if policy.prefix_delegation {
        EniLimits {
            max_ips_per_eni: eni_ipv4_limit.saturating_mul(IPS_PER_PREFIX),
            max_prefixes_per_eni: eni_ipv4_limit,
        }
    } else {
        EniLimits {
            max_ips_per_eni: eni_ipv4_limit,
            max_prefixes_per_eni: 0,
        }
    }
}

/// The IP targets in force on one card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpTargets {
    /// Effective `WARM_IP_TARGET`.
    pub warm_ip: u32,
    /// Effective `MINIMUM_IP_TARGET`.
    pub minimum_ip: u32,
    /// "IP targets defined": either configured target is non-zero, or the card is > 0.
    pub defined: bool,
}

/// Effective IP targets: cards > 0 always use 1/1 (upstream `DefaultWarmIPTarget`,
/// `DefaultMinimumIPTarget`), card 0 the configured values.
pub fn ip_targets(policy: &PoolPolicy, network_card: u32) -> IpTargets {
    if network_card > 0 {
        IpTargets {
            warm_ip: SECONDARY_CARD_IP_TARGET,
            minimum_ip: SECONDARY_CARD_IP_TARGET,
            defined: true,
        }
    } else {
        IpTargets {
            warm_ip: policy.warm_ip_target,
            minimum_ip: policy.minimum_ip_target,
            defined: policy.warm_ip_target != 0 || policy.minimum_ip_target != 0,
        }
    }
}

/// Result of `datastoreTargetState`: how far the pool is below/above the IP targets.
/// In prefix-delegation mode `short` and `over` count prefixes, otherwise addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetState {
    /// Addresses (or prefixes) missing to meet `WARM_IP_TARGET`/`MINIMUM_IP_TARGET`.
    pub short: u32,
    /// Addresses (or prefixes) that could be released without going below the targets.
    pub over: u32,
    /// Whether IP targets are defined at all; when false `short` and `over` are 0.
    pub defined: bool,
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn div_ceil(a: i64, b: i64) -> i64 {
    if a <= 0 { 0 } else { (a + b - 1) / b }
}

/// Upstream's `datastoreTargetState`.
///
/// **Deviation:** upstream converts to prefixes only on card 0, so on cards > 0 in PD mode
/// an address count is later used as a prefix count (releasing the only prefix, then
/// re-allocating it every 30 s). We convert on every card; see `docs/pool-planner.md`.
///
/// **Ours only:** `stats.waiting_pods` (pods refused since the last tick) count as assigned,
/// so one growth serves them and still leaves `WARM_IP_TARGET` free; upstream sizes each
/// growth by the warm target alone and needs a tick per `WARM_IP_TARGET` waiting pods.
pub fn target_state(policy: &PoolPolicy, network_card: u32, stats: &PoolStats) -> TargetState {
    let t = ip_targets(policy, network_card);
    if !t.defined {
        return TargetState::default();
    }
    let warm = i64::from(t.warm_ip);
    let minimum = i64::from(t.minimum_ip);
    let total = i64::from(stats.total_ips);
    // Waiting pods take addresses before the warm ones count (0 for upstream).
    let waiting = i64::from(stats.waiting_pods);
    let available = i64::from(stats.available()) - waiting;

    let short = (warm - available).max(0).max(minimum - total);
    let over = (available - warm).max(0).min(total - minimum).max(0);

    if policy.prefix_delegation {
        let per = i64::from(IPS_PER_PREFIX);
        let short_prefix = div_ceil(short, per);
        let needed_for_warm = div_ceil(i64::from(stats.assigned_ips) + waiting + warm, per);
        let needed_for_min = div_ceil(minimum, per);
        let total_prefixes = i64::from(stats.total_prefixes);
        let over_prefix = i64::from(stats.free_prefixes)
            .min(total_prefixes - needed_for_warm)
            .max(0)
            .min(total_prefixes - needed_for_min)
            .max(0);
        return TargetState {
            short: clamp_u32(short_prefix),
            over: clamp_u32(over_prefix),
            defined: true,
        };
    }
    TargetState {
        short: clamp_u32(short),
        over: clamp_u32(over),
        defined: true,
    }
}

/// Upstream's `isDatastorePoolTooLow`, including the max-pods ceiling.
pub fn is_pool_too_low(
    policy: &PoolPolicy,
    cap: &NodeCapacity,
    network_card: u32,
    stats: &PoolStats,
) -> bool {
    if stats.total_ips >= policy.max_pods {
        return false;
    }
    let ts = target_state(policy, network_card, stats);
    if ts.defined {
        return ts.short > 0;
    }
    let (warm, unit) = if policy.prefix_delegation {
        (policy.warm_prefix_target, IPS_PER_PREFIX)
    } else {
        (
            policy.warm_eni_target,
            eni_limits(policy, cap).max_ips_per_eni,
        )
    };
    let available = u64::from(stats.available());
    available < u64::from(unit) * u64::from(warm) || (warm == 0 && available == 0)
}

/// Upstream's `isDatastorePoolTooHigh`. In `WARM_ENI_TARGET` mode (no IP targets, no PD) the
/// pool is never too high: single addresses are not released, only whole ENIs.
pub fn is_pool_too_high(policy: &PoolPolicy, network_card: u32, stats: &PoolStats) -> bool {
    let ts = target_state(policy, network_card, stats);
    if ts.defined {
        return ts.over > 0;
    }
    if policy.prefix_delegation {
        return stats.free_prefixes > policy.warm_prefix_target;
    }
    false
}

/// How many CIDRs a decrease wants to release (upstream `tryUnassignCidrsFromAll`):
/// the target state's `over`, or free prefixes above `WARM_PREFIX_TARGET` in PD mode.
pub fn cidrs_over_target(policy: &PoolPolicy, network_card: u32, stats: &PoolStats) -> u32 {
    let ts = target_state(policy, network_card, stats);
    if ts.defined {
        ts.over
    } else if policy.prefix_delegation {
        stats
            .free_prefixes
            .saturating_sub(policy.warm_prefix_target)
    } else {
        0
    }
}

/// `CheckFreeableENIexists`: a non-primary, non-trunk, non-EFA ENI without pods.
pub fn freeable_eni_exists(pool: &PoolSnapshot) -> bool {
    pool.enis
        .iter()
        .any(|e| !e.is_primary && !e.is_trunk && !e.is_efa && e.assigned_ips == 0)
}

/// Upstream's `shouldRemoveExtraENIs`: whether to look for a deletable ENI this tick.
pub fn should_remove_extra_enis(
    policy: &PoolPolicy,
    cap: &NodeCapacity,
    pool: &PoolSnapshot,
    stats: &PoolStats,
) -> bool {
    if ip_targets(policy, pool.network_card).defined {
        return true;
    }
    let warm = if policy.prefix_delegation {
        policy.warm_prefix_target
    } else {
        policy.warm_eni_target
    };
    let threshold = (u64::from(warm) + 1) * u64::from(eni_limits(policy, cap).max_ips_per_eni);
    if u64::from(stats.available()) >= threshold {
        return true;
    }
    policy.prefix_delegation && freeable_eni_exists(pool)
}

/// Upstream's `getPrefixesNeeded`: at least 1; the (prefix) shortfall when IP targets are
/// defined, else `WARM_PREFIX_TARGET − freePrefixes`.
pub fn prefixes_needed(policy: &PoolPolicy, network_card: u32, stats: &PoolStats) -> u32 {
    let ts = target_state(policy, network_card, stats);
    if ts.defined {
        ts.short.max(1)
    } else if policy.prefix_delegation {
        policy
            .warm_prefix_target
            .saturating_sub(stats.free_prefixes)
            .max(1)
    } else {
        1
    }
}

/// Upstream's `GetENIResourcesToAllocate` (IPv4): addresses or prefixes requested with a new
/// ENI. 0 means no ENI is created.
pub fn eni_resources_to_allocate(
    policy: &PoolPolicy,
    cap: &NodeCapacity,
    network_card: u32,
    stats: &PoolStats,
) -> u32 {
    let limits = eni_limits(policy, cap);
    if policy.prefix_delegation {
        return prefixes_needed(policy, network_card, stats).min(limits.max_prefixes_per_eni);
    }
    let ts = target_state(policy, network_card, stats);
    if ts.defined {
        ts.short.min(limits.max_ips_per_eni)
    } else {
        limits.max_ips_per_eni
    }
}

/// Whether one more slot for the trunk ENI is held back on this card.
pub fn trunk_slot_reserved(cap: &NodeCapacity, pool: &PoolSnapshot) -> bool {
    cap.reserve_trunk_slot && pool.network_card == 0 && !pool.enis.iter().any(|e| e.is_trunk)
}

/// Upstream's `hasRoomForEni`: another ENI may be attached to this card.
pub fn has_room_for_eni(cap: &NodeCapacity, pool: &PoolSnapshot) -> bool {
    let excluded = pool.enis.iter().filter(|e| e.excluded).count() as i64;
    let usable = pool.enis.len() as i64 - excluded;
    let max = i64::from(cap.max_enis)
        - i64::from(cap.unmanaged_enis)
        - i64::from(trunk_slot_reserved(cap, pool))
        - excluded;
    usable < max
}

/// ENIs this card may hold at most (what `has_room_for_eni` lets the pool grow to).
pub fn eni_budget(cap: &NodeCapacity, pool: &PoolSnapshot) -> u32 {
    let max = i64::from(cap.max_enis)
        - i64::from(cap.unmanaged_enis)
        - i64::from(trunk_slot_reserved(cap, pool));
    clamp_u32(max)
}
