//! Inputs of the pool planner. Plain data: the datastore produces a [`PoolSnapshot`],
//! the configuration produces a [`PoolPolicy`], the instance limits a [`NodeCapacity`].
//! Nothing here reads a clock or does I/O; ages are passed in as durations.

use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Addresses per IPv4 /28 prefix.
pub const IPS_PER_PREFIX: u32 = 16;

/// Warm-pool targets of one datastore (network card), as configured by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolPolicy {
    /// `WARM_ENI_TARGET` (default 1).
    pub warm_eni_target: u32,
    /// `WARM_IP_TARGET` (0 = unset).
    pub warm_ip_target: u32,
    /// `MINIMUM_IP_TARGET` (0 = unset).
    pub minimum_ip_target: u32,
    /// `WARM_PREFIX_TARGET` (0 = unset).
    pub warm_prefix_target: u32,
    /// `ENABLE_PREFIX_DELEGATION` (effective: already false on non-Nitro instances).
    pub prefix_delegation: bool,
    /// `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG`: the primary ENI never gets new IPs/prefixes.
    pub custom_networking: bool,
    /// Pod ceiling of the node (`status.capacity.pods`, or the max-pods table): the pool is
    /// never "too low" once it holds this many addresses.
    pub max_pods: u32,
}

/// What the instance type (and the operator's `MAX_ENI`) allows on one network card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCapacity {
    /// ENIs allowed on this card: `MAX_ENI` if `1 <= MAX_ENI < limit`, else the instance limit.
    pub max_enis: u32,
    /// IPv4 addresses per ENI *including* the ENI's primary address (`IPv4Limit`).
    pub ipv4_per_eni: u32,
    /// ENIs on this card that ipamd must not manage (tag `no_manage`, other instance, efa-only).
    pub unmanaged_enis: u32,
    /// A slot is kept free for the trunk ENI (security groups for pods, card 0, no trunk yet).
    pub reserve_trunk_slot: bool,
}

/// One ENI as the datastore sees it at snapshot time. Counts refer to the CIDRs of the
/// *current* mode only (/32s in secondary-IP mode, /28s in prefix mode), except
/// `cidr_count`, which counts both kinds as upstream's `GetAllocatableENIs` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniView {
    /// ENI id (`eni-…`).
    pub id: String,
    /// Device number (0 = the instance's primary ENI).
    pub device_number: u32,
    /// The instance's primary ENI: never freed; skipped for allocation under custom networking.
    pub is_primary: bool,
    /// The trunk ENI (security groups for pods): never an allocation candidate, never freed.
    pub is_trunk: bool,
    /// An EFA ENI: never freed.
    pub is_efa: bool,
    /// In an excluded subnet (`kubernetes.io/role/cni=0`): not used for pods or targets.
    pub excluded: bool,
    /// Time since the ENI was added to the datastore.
    pub age: Duration,
    /// IPv4 CIDR entries of both kinds on the ENI.
    pub cidr_count: u32,
    /// Addresses in current-mode CIDRs (1 per /32, 16 per /28).
    pub total_ips: u32,
    /// Addresses bound to a pod.
    pub assigned_ips: u32,
    /// Unassigned addresses still inside `IP_COOLDOWN_PERIOD`.
    pub cooldown_ips: u32,
    /// Current-mode prefix CIDRs (0 in secondary-IP mode).
    pub prefixes: u32,
    /// Prefix CIDRs with no assigned address.
    pub free_prefixes: u32,
    /// Current-mode CIDRs with no assigned address, in a stable order: what a shrink may release.
    pub freeable_cidrs: Vec<Ipv4Net>,
}

/// The pool of one datastore (network card) at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// Network card index (0 = default card; cards > 0 use targets 1/1).
    pub network_card: u32,
    /// ENIs in a stable order (device number).
    pub enis: Vec<EniView>,
    /// Pods refused for want of an address since the last tick, still waiting (ours only:
    /// upstream has no such count, so 0 plans exactly as upstream; docs/pool-planner.md,
    /// "Waiting pods").
    #[serde(default)]
    pub waiting_pods: u32,
}

/// Pool statistics exactly as upstream's `GetIPStats` (`data_store.go`): excluded ENIs are not
/// counted, and cooldown addresses count as available.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStats {
    /// `TotalIPs`: addresses in current-mode CIDRs.
    pub total_ips: u32,
    /// `AssignedIPs`: addresses bound to a pod.
    pub assigned_ips: u32,
    /// `CooldownIPs`: unassigned addresses still inside `IP_COOLDOWN_PERIOD`.
    pub cooldown_ips: u32,
    /// `TotalPrefixes`: prefix CIDRs (0 in secondary-IP mode).
    pub total_prefixes: u32,
    /// `GetFreePrefixes`: prefix CIDRs with no assigned address.
    pub free_prefixes: u32,
    /// [`PoolSnapshot::waiting_pods`]: demand on top of `AssignedIPs` (0 for upstream).
    #[serde(default)]
    pub waiting_pods: u32,
}

impl PoolStats {
    /// `TotalIPs - AssignedIPs`; cooldown addresses are available for sizing decisions.
    pub fn available(&self) -> u32 {
        self.total_ips.saturating_sub(self.assigned_ips)
    }
}

impl PoolSnapshot {
    /// Statistics over the non-excluded ENIs.
    pub fn stats(&self) -> PoolStats {
        let waiting = PoolStats {
            waiting_pods: self.waiting_pods,
            ..PoolStats::default()
        };
        self.enis
            .iter()
            .filter(|e| !e.excluded)
            .fold(waiting, |mut s, e| {
                s.total_ips += e.total_ips;
                s.assigned_ips += e.assigned_ips;
                s.cooldown_ips += e.cooldown_ips;
                s.total_prefixes += e.prefixes;
                s.free_prefixes += e.free_prefixes;
                s
            })
    }
}
