//! The datastore's per-ENI records: [`Eni`], its IPv4 and IPv6 [`CidrEntry`]s and the
//! per-address [`AddressInfo`]. Read-only outside the datastore (introspection reads them).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use super::family::PodNet;
use crate::types::{IpamKey, IpamMetadata, Timestamp};

/// What the caller knows about an ENI when adding it to the datastore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEni {
    /// ENI id (`eni-…`).
    pub id: String,
    /// Device number (0 = the instance's primary ENI).
    pub device_number: u32,
    /// The instance's primary ENI.
    pub is_primary: bool,
    /// The trunk ENI (security groups for pods).
    pub is_trunk: bool,
    /// An EFA ENI.
    pub is_efa: bool,
    /// In an excluded subnet: never used for pods nor counted in statistics.
    pub excluded: bool,
    /// Host routing table of this ENI (254 = main for the primary ENI).
    pub route_table_id: u32,
    /// Subnet id (`subnet-…`).
    pub subnet_id: String,
}

/// A pod's hold on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    /// The CNI primary key holding the address.
    pub key: IpamKey,
    /// Pod metadata.
    pub metadata: IpamMetadata,
    /// When it was assigned (`allocationTimestamp`).
    pub assigned_time: Timestamp,
}

/// An address that has been used at least once (upstream keeps only those in its map).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressInfo {
    /// `Some` while a pod holds the address.
    pub assignment: Option<Assigned>,
    /// When the address was last released (starts its cooldown).
    pub unassigned_time: Option<Timestamp>,
}

impl AddressInfo {
    /// A pod holds the address.
    pub fn is_assigned(&self) -> bool {
        self.assignment.is_some()
    }

    /// Released within `period` of `now` (upstream `inCoolingPeriod`; never-released → false).
    pub fn in_cooldown(&self, now: Timestamp, period: Duration) -> bool {
        self.unassigned_time.is_some_and(|t| t.within(now, period))
    }
}

/// One CIDR of an ENI: an IPv4 secondary /32 or /28 prefix (`CidrEntry`, the default), or
/// an IPv6 prefix (`CidrEntry<Ipv6Net>`, a /80 in IPv6 mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrEntry<N: PodNet = Ipv4Net> {
    /// The CIDR (network address, host bits zero).
    pub cidr: N,
    /// A delegated prefix (anything shorter than a single address).
    pub is_prefix: bool,
    /// Addresses used at least once, ascending.
    pub addresses: BTreeMap<N::Addr, AddressInfo>,
}

impl CidrEntry<Ipv4Net> {
    /// Number of addresses (1 for a /32, 16 for a /28).
    pub fn size(&self) -> u32 {
        u32::try_from(self.cidr.size()).unwrap_or(u32::MAX)
    }
}

impl CidrEntry<Ipv6Net> {
    /// Number of addresses (2^48 for a /80).
    pub fn size(&self) -> u128 {
        self.cidr.size()
    }
}

impl<N: PodNet> CidrEntry<N> {
    pub(crate) fn new(cidr: N) -> Self {
        Self {
            cidr,
            is_prefix: cidr.prefix_bits() < N::BITS,
            addresses: BTreeMap::new(),
        }
    }

    /// Addresses bound to a pod.
    pub fn assigned_count(&self) -> u32 {
        count_u32(self.addresses.values().filter(|a| a.is_assigned()))
    }

    /// Unassigned addresses still in cooldown.
    pub fn cooldown_count(&self, now: Timestamp, period: Duration) -> u32 {
        count_u32(
            self.addresses
                .values()
                .filter(|a| !a.is_assigned() && a.in_cooldown(now, period)),
        )
    }

    /// Matches the datastore's mode (prefix delegation on → prefixes, off → /32s).
    pub fn in_mode(&self, prefix_delegation: bool) -> bool {
        self.is_prefix == prefix_delegation
    }
}

pub(crate) fn count_u32<I: Iterator>(it: I) -> u32 {
    u32::try_from(it.count()).unwrap_or(u32::MAX)
}

/// One ENI in the datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eni {
    /// ENI id.
    pub id: String,
    /// Device number.
    pub device_number: u32,
    /// The instance's primary ENI.
    pub is_primary: bool,
    /// The trunk ENI.
    pub is_trunk: bool,
    /// An EFA ENI.
    pub is_efa: bool,
    /// Excluded from pod IPs (excluded subnet).
    pub excluded: bool,
    /// Host routing table.
    pub route_table_id: u32,
    /// Subnet id.
    pub subnet_id: String,
    /// When it was added to the datastore.
    pub created_at: Timestamp,
    /// IPv4 CIDRs of both kinds, ascending.
    pub ipv4_cidrs: BTreeMap<Ipv4Net, CidrEntry>,
    /// IPv6 prefixes, ascending (upstream `IPv6Cidrs`).
    pub ipv6_cidrs: BTreeMap<Ipv6Net, CidrEntry<Ipv6Net>>,
}

impl Eni {
    pub(crate) fn new(spec: NewEni, now: Timestamp) -> Self {
        Self {
            id: spec.id,
            device_number: spec.device_number,
            is_primary: spec.is_primary,
            is_trunk: spec.is_trunk,
            is_efa: spec.is_efa,
            excluded: spec.excluded,
            route_table_id: spec.route_table_id,
            subnet_id: spec.subnet_id,
            created_at: now,
            ipv4_cidrs: BTreeMap::new(),
            ipv6_cidrs: BTreeMap::new(),
        }
    }

    /// Addresses bound to pods on this ENI (all CIDRs, both families).
    pub fn assigned_count(&self) -> u32 {
        let v4: u32 = self
            .ipv4_cidrs
            .values()
            .map(CidrEntry::assigned_count)
            .sum();
        let v6: u32 = self
            .ipv6_cidrs
            .values()
            .map(CidrEntry::assigned_count)
            .sum();
        v4.saturating_add(v6)
    }

    /// Any address on this ENI in cooldown (upstream `hasIPInCooling`).
    pub fn has_ip_in_cooldown(&self, now: Timestamp, period: Duration) -> bool {
        let v4 = self.ipv4_cidrs.values().flat_map(|c| c.addresses.values());
        let v6 = self.ipv6_cidrs.values().flat_map(|c| c.addresses.values());
        v4.chain(v6).any(|a| a.in_cooldown(now, period))
    }

    /// The CIDR holding `ip`, if any.
    pub fn cidr_containing(&self, ip: Ipv4Addr) -> Option<&CidrEntry> {
        self.ipv4_cidrs.values().find(|c| c.cidr.contains(&ip))
    }

    /// `(ip, assignment)` of every assigned IPv4 address, CIDRs and addresses ascending.
    pub fn assigned(&self) -> impl Iterator<Item = (Ipv4Addr, &Assigned)> {
        assigned_in(&self.ipv4_cidrs)
    }

    /// `(ip, assignment)` of every assigned IPv6 address, prefixes and addresses ascending.
    pub fn assigned_v6(&self) -> impl Iterator<Item = (Ipv6Addr, &Assigned)> {
        assigned_in(&self.ipv6_cidrs)
    }
}

fn assigned_in<N: PodNet>(
    cidrs: &BTreeMap<N, CidrEntry<N>>,
) -> impl Iterator<Item = (N::Addr, &Assigned)> {
    cidrs.values().flat_map(|c| {
        c.addresses
            .iter()
            .filter_map(|(ip, a)| a.assignment.as_ref().map(|s| (*ip, s)))
    })
}
