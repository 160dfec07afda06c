//! Assigning addresses to pods and releasing them, with the checkpoint written before
//! returning and the change rolled back when that write fails.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use super::eni::{AddressInfo, Assigned, CidrEntry};
use super::{Datastore, DatastoreError};
use crate::types::{IpamKey, IpamMetadata, Timestamp};

/// The address a pod got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The pod's IPv4 address.
    pub ip: Ipv4Addr,
    /// ENI holding it.
    pub eni_id: String,
    /// That ENI's device number.
    pub device_number: u32,
    /// That ENI's host routing table.
    pub route_table_id: u32,
}

/// The address a pod gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unassignment {
    /// The key under which it was found (the legacy form when the fallback matched).
    pub key: IpamKey,
    /// The released address.
    pub ip: Ipv4Addr,
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
    pub empty_excluded_cidr: Option<Ipv4Net>,
}

/// Position of an address: (ENI index, CIDR, address).
type Slot = (usize, Ipv4Net, Ipv4Addr);

/// Picks an unused address of a CIDR: an unassigned, out-of-cooldown address already in
/// the map (lowest first; the other such entries are garbage-collected, as upstream), else
/// the lowest address never used. `None` when everything is assigned or cooling down.
fn pick_unused(cidr: &mut CidrEntry, now: Timestamp, cooldown: Duration) -> Option<Ipv4Addr> {
    let reusable: Vec<Ipv4Addr> = cidr
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
    all_addrs(cidr.cidr).find(|ip| !cidr.addresses.contains_key(ip))
}

/// Every address of the CIDR including network and broadcast (a /28's `.0` is usable).
fn all_addrs(net: Ipv4Net) -> impl Iterator<Item = Ipv4Addr> {
    (u32::from(net.network())..=u32::from(net.broadcast())).map(Ipv4Addr::from)
}

impl Datastore {
    /// Where `key` holds an address, if anywhere (any ENI, any CIDR kind).
    fn find_key(&self, key: &IpamKey) -> Option<Slot> {
        self.enis.iter().enumerate().find_map(|(i, eni)| {
            eni.ipv4_cidrs.values().find_map(|c| {
                c.addresses.iter().find_map(|(ip, a)| {
                    a.assignment
                        .as_ref()
                        .filter(|s| &s.key == key)
                        .map(|_| (i, c.cidr, *ip))
                })
            })
        })
    }

    fn assignment_at(&self, eni_idx: usize, ip: Ipv4Addr) -> Assignment {
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
        if key.is_zero() {
            return Err(DatastoreError::EmptyKey);
        }
        if let Some((idx, _, ip)) = self.find_key(key) {
            return Ok(self.assignment_at(idx, ip));
        }
        let pd = self.config.prefix_delegation;
        let cooldown = self.config.ip_cooldown;
        let mut found: Option<(usize, Ipv4Net, Ipv4Addr, Option<AddressInfo>)> = None;
        'outer: for (i, eni) in self.enis.iter_mut().enumerate() {
            if eni.excluded {
                continue;
            }
            for cidr in eni.ipv4_cidrs.values_mut().filter(|c| c.in_mode(pd)) {
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
            if let Some(c) = self.enis[idx].ipv4_cidrs.get_mut(&cidr) {
                match previous {
                    Some(prev) => c.addresses.insert(ip, prev),
                    None => c.addresses.remove(&ip),
                };
            }
            return Err(e.into());
        }
        Ok(self.assignment_at(idx, ip))
    }

    /// Releases the address held by `key`, or by its legacy form
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
        let legacy = key.legacy_fallback();
        let Some((idx, cidr, ip)) = self.find_key(key).or_else(|| self.find_key(&legacy)) else {
            let before = self.pending.len();
            self.pending.retain(|p| p.key != *key && p.key != legacy);
            if self.pending.len() != before {
                self.persist()?;
            }
            return Err(DatastoreError::UnknownPod);
        };
        let taken = self.enis[idx]
            .ipv4_cidrs
            .get_mut(&cidr)
            .and_then(|c| c.addresses.get_mut(&ip))
            .and_then(|a| a.assignment.take());
        let Some(held) = taken else {
            return Err(DatastoreError::UnknownPod);
        };
        if let Err(e) = self.persist() {
            if let Some(a) = self.enis[idx]
                .ipv4_cidrs
                .get_mut(&cidr)
                .and_then(|c| c.addresses.get_mut(&ip))
            {
                a.assignment = Some(held);
            }
            return Err(e.into());
        }
        let eni = &mut self.enis[idx];
        let mut empty_excluded_cidr = None;
        if let Some(c) = eni.ipv4_cidrs.get_mut(&cidr) {
            if let Some(a) = c.addresses.get_mut(&ip) {
                a.unassigned_time = Some(now);
            }
            if eni.excluded && c.assigned_count() == 0 {
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
