//! Assigning addresses to pods and releasing them, with the checkpoint written before
//! returning and the change rolled back when that write fails. One flow for both
//! families (upstream `AssignPodIPv4Address` / `AssignPodIPv6Address`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use super::eni::{AddressInfo, Assigned, CidrEntry};
use super::family::PodNet;
use super::{Datastore, DatastoreError};
use crate::types::{IpamKey, IpamMetadata, Timestamp};

/// The address a pod got (`Assignment` for IPv4, `Assignment<Ipv6Addr>` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment<A = Ipv4Addr> {
    /// The pod's address.
    pub ip: A,
    /// ENI holding it.
    pub eni_id: String,
    /// That ENI's device number.
    pub device_number: u32,
    /// That ENI's host routing table.
    pub route_table_id: u32,
}

/// The address a pod gave back (`Unassignment` for IPv4, `Unassignment<Ipv6Net>` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unassignment<N: PodNet = Ipv4Net> {
    /// The key under which it was found (the legacy form when the fallback matched).
    pub key: IpamKey,
    /// The released address.
    pub ip: N::Addr,
    /// ENI holding it.
    pub eni_id: String,
    /// That ENI's device number.
    pub device_number: u32,
    /// That ENI's host routing table.
    pub route_table_id: u32,
    /// Stored interface count, 1 when the record had none.
    pub interfaces_count: u32,
    /// Set when the ENI is excluded and this CIDR now has no assigned address: upstream
    /// schedules its removal (5 s later); the caller decides.
    pub empty_excluded_cidr: Option<N>,
}

/// Position of an address: (ENI index, CIDR, address).
type Slot<N> = (usize, N, <N as PodNet>::Addr);

/// Picks an unused address of a CIDR: an unassigned, out-of-cooldown address already in
/// the map (lowest first; the other such entries are garbage-collected, as upstream), else
/// the lowest address never used (a /28's `.0` and a /80's `::` are usable). `None` when
/// everything is assigned or cooling down.
pub(crate) fn pick_unused<N: PodNet>(
    cidr: &mut CidrEntry<N>,
    now: Timestamp,
    cooldown: Duration,
) -> Option<N::Addr> {
    let reusable: Vec<N::Addr> = cidr
        .addresses
        .iter()
        .filter(|(_, a)| !a.is_assigned() && !a.in_cooldown(now, cooldown))
        .map(|(ip, _)| *ip)
        .collect();
    if let Some(first) = reusable.first().copied() {
        for ip in &reusable[1..] {
            cidr.addresses.remove(ip);
        }
        return Some(first);
    }
    lowest_never_used(cidr)
}

/// The lowest address of the CIDR not in its map: the first gap in the ascending map (the
/// map only holds addresses of the CIDR), so a /80 is never walked address by address.
fn lowest_never_used<N: PodNet>(cidr: &CidrEntry<N>) -> Option<N::Addr> {
    let mut next: u128 = 0;
    for ip in cidr.addresses.keys() {
        if cidr.cidr.offset_of(*ip) != next {
            break;
        }
        next += 1;
    }
    cidr.cidr.nth(next)
}

impl Datastore {
    /// Where `key` holds an address of family `N`, if anywhere.
    fn find_key<N: PodNet>(&self, key: &IpamKey) -> Option<Slot<N>> {
        self.enis.iter().enumerate().find_map(|(i, eni)| {
            N::cidrs(eni).values().find_map(|c| {
                c.addresses.iter().find_map(|(ip, a)| {
                    a.assignment
                        .as_ref()
                        .filter(|s| &s.key == key)
                        .map(|_| (i, c.cidr, *ip))
                })
            })
        })
    }

    fn assignment_at<A>(&self, eni_idx: usize, ip: A) -> Assignment<A> {
        let eni = &self.enis[eni_idx];
        Assignment {
            ip,
            eni_id: eni.id.clone(),
            device_number: eni.device_number,
            route_table_id: eni.route_table_id,
        }
    }

    /// Assigns an IPv4 address to `key` (upstream `AssignPodIPv4Address`).
    ///
    /// Idempotent: a key that already holds an address gets the same one back. Otherwise
    /// the first free address of a current-mode CIDR on a non-excluded ENI is taken
    /// (deterministic order, see the module docs), skipping addresses in cooldown. The
    /// checkpoint is written before returning; if that fails the assignment is undone and
    /// the error returned.
    pub fn assign_pod_ipv4(
        &mut self,
        key: &IpamKey,
        metadata: &IpamMetadata,
        now: Timestamp,
    ) -> Result<Assignment, DatastoreError> {
        let pd = self.config.prefix_delegation;
        self.assign_in::<Ipv4Net>(key, metadata, now, |c| c.in_mode(pd))
    }

    /// Assigns an IPv6 address to `key` from the ENIs' IPv6 prefixes (upstream
    /// `AssignPodIPv6Address`): the same flow as [`Self::assign_pod_ipv4`] over the IPv6
    /// prefix CIDRs. IPv6 needs prefix delegation: without it
    /// [`DatastoreError::Ipv6WithoutPrefixDelegation`].
    pub fn assign_pod_ipv6(
        &mut self,
        key: &IpamKey,
        metadata: &IpamMetadata,
        now: Timestamp,
    ) -> Result<Assignment<Ipv6Addr>, DatastoreError> {
        if !self.config.prefix_delegation {
            return Err(DatastoreError::Ipv6WithoutPrefixDelegation);
        }
        self.assign_in::<Ipv6Net>(key, metadata, now, |c| c.is_prefix)
    }

    fn assign_in<N: PodNet>(
        &mut self,
        key: &IpamKey,
        metadata: &IpamMetadata,
        now: Timestamp,
        usable: impl Fn(&CidrEntry<N>) -> bool,
    ) -> Result<Assignment<N::Addr>, DatastoreError> {
        if key.is_zero() {
            return Err(DatastoreError::EmptyKey);
        }
        if let Some((idx, _, ip)) = self.find_key::<N>(key) {
            return Ok(self.assignment_at(idx, ip));
        }
        let cooldown = self.config.ip_cooldown;
        let mut found: Option<(usize, N, N::Addr, Option<AddressInfo>)> = None;
        'outer: for (i, eni) in self.enis.iter_mut().enumerate() {
            if eni.excluded {
                continue;
            }
            for cidr in N::cidrs_mut(eni).values_mut().filter(|c| usable(c)) {
                if let Some(ip) = pick_unused(cidr, now, cooldown) {
                    let previous = cidr.addresses.insert(
                        ip,
                        AddressInfo {
                            assignment: Some(Assigned {
                                key: key.clone(),
                                metadata: metadata.clone(),
                                assigned_time: now,
                            }),
                            unassigned_time: None,
                        },
                    );
                    found = Some((i, cidr.cidr, ip, previous));
                    break 'outer;
                }
            }
        }
        let Some((idx, cidr, ip, previous)) = found else {
            return Err(DatastoreError::NoAvailableIp);
        };
        if let Err(e) = self.persist() {
            if let Some(c) = N::cidrs_mut(&mut self.enis[idx]).get_mut(&cidr) {
                match previous {
                    Some(prev) => c.addresses.insert(ip, prev),
                    None => c.addresses.remove(&ip),
                };
            }
            return Err(e.into());
        }
        Ok(self.assignment_at(idx, ip))
    }

    /// Releases the IPv4 address held by `key`, or by its legacy form
    /// (`_migrated-from-cri/<container>/unknown`) (upstream `UnassignPodIPAddress`).
    ///
    /// Not found → [`DatastoreError::UnknownPod`] (a pending restored allocation under that
    /// key is discarded first, since the pod is gone). The checkpoint is written before
    /// returning; if that fails the address is re-assigned and the error returned. On
    /// success the address enters cooldown at `now`.
    pub fn unassign_pod(
        &mut self,
        key: &IpamKey,
        now: Timestamp,
    ) -> Result<Unassignment, DatastoreError> {
        self.unassign_in::<Ipv4Net>(key, now)
    }

    /// [`Self::unassign_pod`] over the IPv6 prefixes (IPv6 mode).
    pub fn unassign_pod_ipv6(
        &mut self,
        key: &IpamKey,
        now: Timestamp,
    ) -> Result<Unassignment<Ipv6Net>, DatastoreError> {
        self.unassign_in::<Ipv6Net>(key, now)
    }

    fn unassign_in<N: PodNet>(
        &mut self,
        key: &IpamKey,
        now: Timestamp,
    ) -> Result<Unassignment<N>, DatastoreError> {
        let legacy = key.legacy_fallback();
        let found = self
            .find_key::<N>(key)
            .or_else(|| self.find_key::<N>(&legacy));
        let Some((idx, cidr, ip)) = found else {
            let before = self.pending.len();
            self.pending.retain(|p| p.key != *key && p.key != legacy);
            if self.pending.len() != before {
                self.persist()?;
            }
            return Err(DatastoreError::UnknownPod);
        };
        let taken = N::cidrs_mut(&mut self.enis[idx])
            .get_mut(&cidr)
            .and_then(|c| c.addresses.get_mut(&ip))
            .and_then(|a| a.assignment.take());
        let Some(held) = taken else {
            return Err(DatastoreError::UnknownPod);
        };
        if let Err(e) = self.persist() {
            if let Some(a) = N::cidrs_mut(&mut self.enis[idx])
                .get_mut(&cidr)
                .and_then(|c| c.addresses.get_mut(&ip))
            {
                a.assignment = Some(held);
            }
            return Err(e.into());
        }
        let eni = &mut self.enis[idx];
        let excluded = eni.excluded;
        let mut empty_excluded_cidr = None;
        if let Some(c) = N::cidrs_mut(eni).get_mut(&cidr) {
            if let Some(a) = c.addresses.get_mut(&ip) {
                a.unassigned_time = Some(now);
            }
            if excluded && c.assigned_count() == 0 {
                empty_excluded_cidr = Some(cidr);
            }
        }
        Ok(Unassignment {
            key: held.key,
            ip,
            eni_id: eni.id.clone(),
            device_number: eni.device_number,
            route_table_id: eni.route_table_id,
            interfaces_count: held.metadata.effective_interfaces_count(),
            empty_excluded_cidr,
        })
    }
}
