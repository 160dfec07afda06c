//! Recovery from a checkpoint after the ENIs and CIDRs were set up (step 3 of upstream's
//! `ReadBackingStore`; docs/upstream-compat.md).
//! Unlike upstream, allocations whose address is in no known CIDR are not dropped
//! silently: they are reported and kept pending (and in the checkpoint) until a CIDR
//! containing them is added or the pod is deleted.

use ipnet::{Ipv4Net, Ipv6Net};

use super::eni::{AddressInfo, Assigned, CidrEntry};
use super::family::PodNet;
use super::{Datastore, DatastoreError};
use crate::checkpoint::{Checkpoint, CheckpointEntry, CheckpointError};

/// Why an allocation was not restored as assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The address lies in no CIDR of its family on any ENI (stale view or a really dead
    /// pod). Kept pending.
    NoMatchingCidr,
    /// The row carries neither an `ipv4` nor an `ipv6` address.
    NotIpv4,
    /// `ipv4` (`ipv6`) is not an IPv4 (IPv6) address.
    UnparsableAddress,
    /// All three key parts empty.
    EmptyKey,
}

/// An allocation of the checkpoint that did not become an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedAllocation {
    /// The checkpoint row.
    pub entry: CheckpointEntry,
    /// Why.
    pub reason: DropReason,
}

/// Outcome of [`Datastore::restore`].
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Allocations restored as assigned.
    pub restored: usize,
    /// Allocations not restored; those with [`DropReason::NoMatchingCidr`] stay pending.
    pub dropped: Vec<DroppedAllocation>,
    /// Set when rewriting the checkpoint afterwards failed (upstream only logs it).
    pub checkpoint_error: Option<CheckpointError>,
}

/// `(ip, assignment)` when a pending row lies inside `cidr`.
pub(super) fn adoptable<N: PodNet>(
    entry: &CheckpointEntry,
    cidr: &CidrEntry<N>,
) -> Option<(N::Addr, Assigned)> {
    let ip: N::Addr = N::checkpoint_field(entry).parse().ok()?;
    if !cidr.cidr.holds(ip) || cidr.addresses.contains_key(&ip) {
        return None;
    }
    Some((ip, assigned_from(entry)))
}

fn assigned_from(entry: &CheckpointEntry) -> Assigned {
    Assigned {
        key: entry.key.clone(),
        metadata: entry.metadata.clone(),
        assigned_time: entry.assigned_time(),
    }
}

impl Datastore {
    /// Restores the pod assignments of `doc` (`ReadBackingStore` step 3) into ENIs and CIDRs that
    /// were already added. Each allocation whose address lies in a CIDR of an ENI (an `ipv4`
    /// row in the IPv4 CIDRs, an `ipv6` row in the IPv6 prefixes) becomes assigned with `AssignedTime = allocationTimestamp`. An address already
    /// present is [`DatastoreError::IpAlreadyInStore`] and leaves the store unchanged; a
    /// wrong version is a checkpoint error. Then the checkpoint is rewritten.
    pub fn restore(&mut self, doc: &Checkpoint) -> Result<RestoreReport, DatastoreError> {
        doc.check_version()?;
        let backup = (self.enis.clone(), self.pending.clone());
        let mut report = RestoreReport::default();
        for entry in &doc.allocations {
            let reason = match self.restore_one(entry) {
                Ok(None) => {
                    report.restored += 1;
                    continue;
                }
                Ok(Some(reason)) => reason,
                Err(e) => {
                    (self.enis, self.pending) = backup;
                    return Err(e);
                }
            };
            if reason == DropReason::NoMatchingCidr {
                self.pending.push(entry.clone());
            }
            report.dropped.push(DroppedAllocation {
                entry: entry.clone(),
                reason,
            });
        }
        report.checkpoint_error = self.persist().err();
        Ok(report)
    }

    fn restore_one(
        &mut self,
        entry: &CheckpointEntry,
    ) -> Result<Option<DropReason>, DatastoreError> {
        if entry.key.is_zero() {
            return Ok(Some(DropReason::EmptyKey));
        }
        if !entry.ipv4.is_empty() {
            return self.restore_in::<Ipv4Net>(entry);
        }
        if !entry.ipv6.is_empty() {
            return self.restore_in::<Ipv6Net>(entry);
        }
        Ok(Some(DropReason::NotIpv4))
    }

    fn restore_in<N: PodNet>(
        &mut self,
        entry: &CheckpointEntry,
    ) -> Result<Option<DropReason>, DatastoreError> {
        let Ok(ip) = N::checkpoint_field(entry).parse::<N::Addr>() else {
            return Ok(Some(DropReason::UnparsableAddress));
        };
        let cidr = self
            .enis
            .iter_mut()
            .find_map(|e| N::cidrs_mut(e).values_mut().find(|c| c.cidr.holds(ip)));
        let Some(cidr) = cidr else {
            return Ok(Some(DropReason::NoMatchingCidr));
        };
        if cidr.addresses.contains_key(&ip) {
            return Err(DatastoreError::IpAlreadyInStore);
        }
        cidr.addresses.insert(
            ip,
            AddressInfo {
                assignment: Some(assigned_from(entry)),
                unassigned_time: None,
            },
        );
        Ok(None)
    }

    /// Restored allocations still waiting for a CIDR that contains them.
    pub fn pending(&self) -> &[CheckpointEntry] {
        &self.pending
    }

    /// Forgets every pending allocation (the caller confirmed from EC2 that their
    /// addresses are gone) and rewrites the checkpoint. Returns how many were dropped.
    pub fn discard_pending(&mut self) -> Result<usize, DatastoreError> {
        let n = self.pending.len();
        if n > 0 {
            let kept = std::mem::take(&mut self.pending);
            if let Err(e) = self.persist() {
                self.pending = kept;
                return Err(e.into());
            }
        }
        Ok(n)
    }
}
