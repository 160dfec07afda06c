//! Which ENI may be freed: upstream's `getDeletableENI` with its `isRequiredFor…` helpers
//! (`pkg/ipamd/datastore/data_store.go`; docs/upstream-compat.md).

use std::time::Duration;

use crate::model::{EniView, IPS_PER_PREFIX, PoolSnapshot};

/// `minENILifeTime`: an ENI younger than this is never freed.
pub const MIN_ENI_LIFETIME: Duration = Duration::from_secs(60);

/// The targets `RemoveUnusedENIFromStore` is called with (already forced to 1/1 on cards > 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionTargets {
    /// Effective `WARM_IP_TARGET` (0 = not checked).
    pub warm_ip: u32,
    /// Effective `MINIMUM_IP_TARGET` (0 = not checked).
    pub minimum_ip: u32,
    /// `WARM_PREFIX_TARGET` (only checked in PD mode, 0 = not checked).
    pub warm_prefix: u32,
    /// Prefix delegation: address targets are rounded up to whole prefixes.
    pub prefix_delegation: bool,
}

fn round_up_to_prefix(v: u32) -> u64 {
    u64::from(v).div_ceil(u64::from(IPS_PER_PREFIX)) * u64::from(IPS_PER_PREFIX)
}

/// Why an ENI cannot be freed (first failing rule, in upstream's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepReason {
    /// The primary ENI is never freed.
    Primary,
    /// Attached less than [`MIN_ENI_LIFETIME`] ago.
    TooYoung,
    /// An address on it was released by a pod within `IP_COOLDOWN_PERIOD`.
    CoolingAddresses,
    /// A pod uses one of its addresses.
    HasPods,
    /// The other ENIs would not hold `WARM_IP_TARGET` free addresses.
    RequiredForWarmIpTarget,
    /// The other ENIs would not hold `MINIMUM_IP_TARGET` addresses.
    RequiredForMinimumIpTarget,
    /// The other ENIs would not hold `WARM_PREFIX_TARGET` free prefixes.
    RequiredForWarmPrefixTarget,
    /// The trunk ENI (security groups for pods) belongs to the VPC resource controller.
    Trunk,
    /// EFA ENIs are never freed.
    Efa,
}

/// Sums over the non-excluded ENIs other than `eni`.
fn others<'a>(pool: &'a PoolSnapshot, eni: &'a EniView) -> impl Iterator<Item = &'a EniView> {
    pool.enis
        .iter()
        .filter(move |o| o.id != eni.id && !o.excluded)
}

/// Checks one ENI against every `getDeletableENI` rule; `None` means it may be freed.
pub fn keep_reason(pool: &PoolSnapshot, eni: &EniView, t: &DeletionTargets) -> Option<KeepReason> {
    if eni.is_primary {
        return Some(KeepReason::Primary);
    }
    if eni.age < MIN_ENI_LIFETIME {
        return Some(KeepReason::TooYoung);
    }
    if eni.cooldown_ips > 0 {
        return Some(KeepReason::CoolingAddresses);
    }
    if eni.assigned_ips > 0 {
        return Some(KeepReason::HasPods);
    }
    if t.warm_ip != 0 {
        let free: u64 = others(pool, eni)
            .map(|o| u64::from(o.total_ips.saturating_sub(o.assigned_ips)))
            .sum();
        let need = if t.prefix_delegation {
            round_up_to_prefix(t.warm_ip)
        } else {
            u64::from(t.warm_ip)
        };
        if free < need {
            return Some(KeepReason::RequiredForWarmIpTarget);
        }
    }
    if t.minimum_ip != 0 {
        let total: u64 = others(pool, eni).map(|o| u64::from(o.total_ips)).sum();
        let need = if t.prefix_delegation {
            round_up_to_prefix(t.minimum_ip)
        } else {
            u64::from(t.minimum_ip)
        };
        if total < need {
            return Some(KeepReason::RequiredForMinimumIpTarget);
        }
    }
    if t.prefix_delegation && t.warm_prefix != 0 {
        let free_prefixes: u64 = others(pool, eni).map(|o| u64::from(o.free_prefixes)).sum();
        if free_prefixes < u64::from(t.warm_prefix) {
            return Some(KeepReason::RequiredForWarmPrefixTarget);
        }
    }
    if eni.is_trunk {
        return Some(KeepReason::Trunk);
    }
    if eni.is_efa {
        return Some(KeepReason::Efa);
    }
    None
}

/// `getDeletableENI`: the ENIs that may be freed, in snapshot (device-number) order.
/// Upstream picks the first in Go map order (random); we are deterministic.
pub fn deletable_enis<'a>(
    pool: &'a PoolSnapshot,
    t: &'a DeletionTargets,
) -> impl Iterator<Item = &'a EniView> {
    pool.enis
        .iter()
        .filter(move |e| keep_reason(pool, e, t).is_none())
}

/// The first ENI `getDeletableENI` would return, if any.
pub fn deletable_eni<'a>(pool: &'a PoolSnapshot, t: &'a DeletionTargets) -> Option<&'a EniView> {
    deletable_enis(pool, t).next()
}
