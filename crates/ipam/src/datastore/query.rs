//! Read-only views: statistics (upstream `GetIPStats`), the planner snapshot, allocatable and
//! freeable resources, and lookups used by ipamd and introspection.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use planner::{Action, EniView, PoolSnapshot, PoolStats};

use super::eni::{CidrEntry, Eni, count_u32};
use super::{Datastore, DatastoreError};
use crate::types::{IpamKey, Timestamp};

/// An assigned address (upstream `AllocatedIPs` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedIp {
    /// Holder.
    pub key: IpamKey,
    /// Address.
    pub ip: Ipv4Addr,
    /// ENI device number.
    pub device_number: u32,
    /// ENI host routing table.
    pub route_table_id: u32,
}

/// Upstream's `DataStoreStats.String()`:
/// `Total IPs/Prefixes = %d/%d, AssignedIPs/CooldownIPs: %d/%d`.
pub fn format_stats(s: &PoolStats) -> String {
    format!(
        "Total IPs/Prefixes = {}/{}, AssignedIPs/CooldownIPs: {}/{}",
        s.total_ips, s.total_prefixes, s.assigned_ips, s.cooldown_ips
    )
}

impl Datastore {
    /// ENIs in (device number, id) order.
    pub fn enis(&self) -> &[Eni] {
        &self.enis
    }

    /// One ENI.
    pub fn eni(&self, eni_id: &str) -> Option<&Eni> {
        self.enis.iter().find(|e| e.id == eni_id)
    }

    /// Number of ENIs.
    pub fn eni_count(&self) -> usize {
        self.enis.len()
    }

    /// The trunk ENI's id.
    pub fn trunk_eni(&self) -> Option<&str> {
        self.enis.iter().find(|e| e.is_trunk).map(|e| e.id.as_str())
    }

    /// Ids of EFA ENIs.
    pub fn efa_enis(&self) -> Vec<&str> {
        self.enis
            .iter()
            .filter(|e| e.is_efa)
            .map(|e| e.id.as_str())
            .collect()
    }

    fn mode_cidrs<'a>(&self, eni: &'a Eni) -> impl Iterator<Item = &'a CidrEntry> + use<'a> {
        let pd = self.config.prefix_delegation;
        eni.ipv4_cidrs.values().filter(move |c| c.in_mode(pd))
    }

    /// Upstream's `GetIPStats("4")`: totals over non-excluded ENIs and current-mode CIDRs;
    /// `total_prefixes` counts every prefix CIDR and `free_prefixes` every prefix CIDR with
    /// no assigned address, on all ENIs (upstream `allocatedPrefix`, `GetFreePrefixes`).
    pub fn stats(&self, now: Timestamp) -> PoolStats {
        let cooldown = self.config.ip_cooldown;
        let mut s = PoolStats::default();
        for eni in &self.enis {
            for c in eni.ipv4_cidrs.values().filter(|c| c.is_prefix) {
                s.total_prefixes += 1;
                if c.assigned_count() == 0 {
                    s.free_prefixes += 1;
                }
            }
            if eni.excluded {
                continue;
            }
            for c in self.mode_cidrs(eni) {
                s.total_ips += c.size();
                s.assigned_ips += c.assigned_count();
                s.cooldown_ips += c.cooldown_count(now, cooldown);
            }
        }
        s
    }

    /// Σ sizes of every IPv4 CIDR on every ENI, whatever the mode or exclusion
    /// (upstream's raw `total`, `GetENIInfos().TotalIPs`).
    pub fn total_addresses(&self) -> u32 {
        self.enis
            .iter()
            .flat_map(|e| e.ipv4_cidrs.values())
            .map(|c| c.size())
            .sum()
    }

    /// Σ sizes of the IPv6 prefixes on every ENI (2^48 per /80; upstream's `total` in IPv6
    /// mode, what `awscni_total_ip_addresses` and introspection's `TotalIPs` show there).
    pub fn ipv6_total_addresses(&self) -> u128 {
        self.enis
            .iter()
            .flat_map(|e| e.ipv6_cidrs.values())
            .fold(0u128, |sum, c| sum.saturating_add(c.size()))
    }

    /// IPv6 prefixes on every ENI.
    pub fn ipv6_prefix_count(&self) -> u32 {
        count_u32(self.enis.iter().flat_map(|e| e.ipv6_cidrs.values()))
    }

    /// IPv6 addresses held by pods.
    pub fn ipv6_assigned(&self) -> u32 {
        count_u32(self.enis.iter().flat_map(|e| e.assigned_v6()))
    }

    /// `GetFreePrefixes`: prefix CIDRs (any ENI) with no assigned address.
    pub fn free_prefixes(&self) -> u32 {
        self.stats(Timestamp::default()).free_prefixes
    }

    /// The planner's view of this pool at `now` (see `planner::EniView` for each field).
    pub fn snapshot(&self, now: Timestamp) -> PoolSnapshot {
        let cooldown = self.config.ip_cooldown;
        let pd = self.config.prefix_delegation;
        let enis = self
            .enis
            .iter()
            .map(|eni| {
                let mode: Vec<&CidrEntry> = self.mode_cidrs(eni).collect();
                EniView {
                    id: eni.id.clone(),
                    device_number: eni.device_number,
                    is_primary: eni.is_primary,
                    is_trunk: eni.is_trunk,
                    is_efa: eni.is_efa,
                    excluded: eni.excluded,
                    age: now.since(eni.created_at),
                    cidr_count: count_u32(eni.ipv4_cidrs.values()),
                    total_ips: mode.iter().map(|c| c.size()).sum(),
                    assigned_ips: mode.iter().map(|c| c.assigned_count()).sum(),
                    cooldown_ips: mode.iter().map(|c| c.cooldown_count(now, cooldown)).sum(),
                    prefixes: if pd { count_u32(mode.iter()) } else { 0 },
                    free_prefixes: count_u32(
                        eni.ipv4_cidrs
                            .values()
                            .filter(|c| c.is_prefix && c.assigned_count() == 0),
                    ),
                    freeable_cidrs: mode
                        .iter()
                        .filter(|c| c.assigned_count() == 0)
                        .map(|c| c.cidr)
                        .collect(),
                }
            })
            .collect();
        PoolSnapshot {
            network_card: self.config.network_card,
            enis,
            // The pool loop fills in the pods it saw refused (ipamd::waiting_pods).
            waiting_pods: 0,
        }
    }

    /// `GetAllocatableENIs`: ids of ENIs (not trunk, not excluded, not primary when
    /// `skip_primary`) with fewer than `max_cidrs` IPv4 CIDRs of either kind.
    pub fn allocatable_enis(&self, max_cidrs: u32, skip_primary: bool) -> Vec<&str> {
        self.enis
            .iter()
            .filter(|e| !(e.is_trunk || e.excluded || (skip_primary && e.is_primary)))
            .filter(|e| count_u32(e.ipv4_cidrs.values()) < max_cidrs)
            .map(|e| e.id.as_str())
            .collect()
    }

    fn unused_cidrs(&self, eni_id: &str, keep: impl Fn(&CidrEntry) -> bool) -> Vec<Ipv4Net> {
        self.eni(eni_id)
            .map(|e| {
                e.ipv4_cidrs
                    .values()
                    .filter(|c| keep(c) && c.assigned_count() == 0)
                    .map(|c| c.cidr)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `FreeableIPs`: /32 CIDRs of the ENI with no assigned address (empty if unknown).
    pub fn freeable_ips(&self, eni_id: &str) -> Vec<Ipv4Net> {
        self.unused_cidrs(eni_id, |c| !c.is_prefix)
    }

    /// `FreeablePrefixes`: prefix CIDRs of the ENI with no assigned address.
    pub fn freeable_prefixes(&self, eni_id: &str) -> Vec<Ipv4Net> {
        self.unused_cidrs(eni_id, |c| c.is_prefix)
    }

    /// Leftovers of the other mode after `ENABLE_PREFIX_DELEGATION` was switched (upstream
    /// `tryUnassignIPsFromENIs` / `tryUnassignPrefixesFromENIs` at `nodeInit`,
    /// `tryUnassignPrefixFromENI` on `DelNetwork`): with prefix delegation on, the
    /// [`freeable_ips`](Self::freeable_ips) of every ENI; off, its
    /// [`freeable_prefixes`](Self::freeable_prefixes). One release per ENI that has any, in
    /// ENI order; CIDRs a pod still holds are kept until the pod is gone.
    pub fn other_mode_leftovers(&self) -> Vec<Action> {
        let pd = self.config.prefix_delegation;
        self.enis
            .iter()
            .filter_map(|e| {
                let cidrs = if pd {
                    self.freeable_ips(&e.id)
                } else {
                    self.freeable_prefixes(&e.id)
                };
                (!cidrs.is_empty()).then(|| Action::ReleaseCidrs {
                    eni: e.id.clone(),
                    cidrs,
                })
            })
            .collect()
    }

    /// `FindFreeableCidrs`: CIDRs of either kind with no assigned address.
    pub fn freeable_cidrs(&self, eni_id: &str) -> Vec<Ipv4Net> {
        self.unused_cidrs(eni_id, |_| true)
    }

    /// `GetENICIDRs`: (secondary /32 addresses, prefix CIDRs) of an ENI.
    pub fn eni_cidrs(&self, eni_id: &str) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), DatastoreError> {
        let eni = self.eni(eni_id).ok_or(DatastoreError::UnknownEni)?;
        let (prefixes, ips): (Vec<&CidrEntry>, Vec<&CidrEntry>) =
            eni.ipv4_cidrs.values().partition(|c| c.is_prefix);
        Ok((
            ips.iter().map(|c| c.cidr.addr()).collect(),
            prefixes.iter().map(|c| c.cidr).collect(),
        ))
    }

    /// `AllocatedIPs`: every assigned address.
    pub fn allocated_ips(&self) -> Vec<AllocatedIp> {
        self.enis
            .iter()
            .flat_map(|e| {
                e.assigned().map(move |(ip, s)| AllocatedIp {
                    key: s.key.clone(),
                    ip,
                    device_number: e.device_number,
                    route_table_id: e.route_table_id,
                })
            })
            .collect()
    }

    /// The address held by `key`, if any.
    pub fn address_of(&self, key: &IpamKey) -> Option<Ipv4Addr> {
        self.enis
            .iter()
            .flat_map(|e| e.assigned())
            .find(|(_, s)| &s.key == key)
            .map(|(ip, _)| ip)
    }

    /// `CheckFreeableENIexists`: a non-primary, non-trunk, non-EFA ENI without pods.
    pub fn freeable_eni_exists(&self) -> bool {
        self.enis
            .iter()
            .any(|e| !e.is_primary && !e.is_trunk && !e.is_efa && e.assigned_count() == 0)
    }
}
