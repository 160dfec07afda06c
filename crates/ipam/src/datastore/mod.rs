//! The per-network-card datastore: ENIs, their IPv4 CIDRs and pod assignments, with the
//! checkpoint written inside every assignment and unassignment (upstream
//! `pkg/ipamd/datastore/data_store.go` and `checkpoint.go`; docs/upstream-compat.md).
//!
//! Choice order is deterministic (upstream iterates Go maps, i.e. randomly): ENIs by
//! device number (then id), CIDRs ascending, addresses ascending.

mod assign;
mod eni;
mod family;
mod query;
mod restore;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::checkpoint::{Checkpoint, CheckpointEntry, CheckpointError, CheckpointSink};
use crate::types::{IpamKey, Timestamp};

pub use assign::{Assignment, Unassignment};
pub use eni::{AddressInfo, Assigned, CidrEntry, Eni, NewEni};
pub use family::PodNet;
pub use query::{AllocatedIp, format_stats};
pub use restore::{DropReason, DroppedAllocation, RestoreReport};

/// Datastore errors; `Display` texts are upstream's exact strings (clients match some).
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// `AddENI` of an id already present.
    #[error("data store: duplicate ENI")]
    DuplicateEni,
    /// A CIDR already on the ENI, or an address already in the store during restore.
    #[error("datastore: IP already in data store")]
    IpAlreadyInStore,
    /// Deleting a CIDR the ENI does not have.
    #[error("datastore: unknown IP")]
    UnknownIp,
    /// Deleting a CIDR with assigned addresses without force.
    #[error("datastore: IP is used and can not be deleted")]
    IpInUse,
    /// Removing an ENI with assigned addresses without force.
    #[error("datastore: ENI is used and can not be deleted")]
    EniInUse,
    /// An ENI id the store does not know.
    #[error("datastore: unknown ENI")]
    UnknownEni,
    /// Adding a CIDR to an ENI the store does not know (upstream's own wording).
    #[error("add ENI's IP to datastore: unknown ENI")]
    UnknownEniOnAdd,
    /// Unassign of a key (and its legacy form) that holds no address. The CNI plugin
    /// string-matches this text.
    #[error("datastore: unknown pod")]
    UnknownPod,
    /// No free address in any current-mode CIDR.
    #[error("AssignPodIPAddress: no available IP/Prefix addresses")]
    NoAvailableIp,
    /// IPv6 assignment while prefix delegation is off (upstream's wording).
    #[error("PD is not enabled. V6 is only supported in PD mode")]
    Ipv6WithoutPrefixDelegation,
    /// Assign with an all-empty key (which upstream would treat as "unassigned").
    #[error("datastore: empty IPAM key")]
    EmptyKey,
    /// Persisting the checkpoint failed; the operation was rolled back.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Settings of one datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatastoreConfig {
    /// Network card index (0 = default card).
    pub network_card: u32,
    /// `ENABLE_PREFIX_DELEGATION` (effective): assign from /28s only, else from /32s only.
    pub prefix_delegation: bool,
    /// `IP_COOLDOWN_PERIOD`: a released address is not handed out again within it.
    pub ip_cooldown: Duration,
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        Self {
            network_card: 0,
            prefix_delegation: false,
            ip_cooldown: Duration::from_secs(30),
        }
    }
}

/// What a forced removal (of a CIDR or an ENI) took away from pods.
#[derive(Debug, Default)]
pub struct ForcedRelease {
    /// Keys that held an address in the removed range, with that address.
    pub unassigned: Vec<(IpamKey, IpAddr)>,
    /// Set when the checkpoint could not be rewritten afterwards (the removal stands).
    pub checkpoint_error: Option<CheckpointError>,
}

/// The datastore of one network card. Not internally synchronised: the caller wraps it
/// in a lock, as upstream guards each datastore with one mutex.
pub struct Datastore {
    config: DatastoreConfig,
    /// Sorted by (device number, id).
    enis: Vec<Eni>,
    sink: Box<dyn CheckpointSink + Send>,
    /// Restored allocations whose address is in no known CIDR yet; kept in the checkpoint
    /// and adopted when a CIDR containing them is added.
    pending: Vec<CheckpointEntry>,
}

impl fmt::Debug for Datastore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datastore")
            .field("config", &self.config)
            .field("enis", &self.enis)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Datastore {
    /// An empty datastore persisting through `sink`.
    pub fn new(config: DatastoreConfig, sink: Box<dyn CheckpointSink + Send>) -> Self {
        Self {
            config,
            enis: Vec::new(),
            sink,
            pending: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> DatastoreConfig {
        self.config
    }

    /// Switches between prefix and secondary-IP mode (`TestTogglePD`).
    pub fn set_prefix_delegation(&mut self, on: bool) {
        self.config.prefix_delegation = on;
    }

    /// Changes `IP_COOLDOWN_PERIOD`.
    pub fn set_ip_cooldown(&mut self, period: Duration) {
        self.config.ip_cooldown = period;
    }

    /// Adds an ENI created/attached at `now`. A known id is [`DatastoreError::DuplicateEni`].
    pub fn add_eni(&mut self, spec: NewEni, now: Timestamp) -> Result<(), DatastoreError> {
        if self.eni_index(&spec.id).is_some() {
            return Err(DatastoreError::DuplicateEni);
        }
        let eni = Eni::new(spec, now);
        let pos = self.enis.partition_point(|e| {
            (e.device_number, e.id.as_str()) < (eni.device_number, eni.id.as_str())
        });
        self.enis.insert(pos, eni);
        Ok(())
    }

    /// Adds a /32 (secondary IP) or shorter (prefix) CIDR to an ENI. Host bits are cleared.
    /// Pending restored allocations inside the new CIDR are adopted as assigned.
    pub fn add_ipv4_cidr(&mut self, eni_id: &str, cidr: Ipv4Net) -> Result<(), DatastoreError> {
        self.add_cidr(eni_id, cidr)
    }

    /// Adds an IPv6 prefix (a /80 in IPv6 mode) to an ENI (upstream `AddIPv6CidrToStore`).
    /// Host bits are cleared; pending restored allocations inside it are adopted.
    pub fn add_ipv6_cidr(&mut self, eni_id: &str, cidr: Ipv6Net) -> Result<(), DatastoreError> {
        self.add_cidr(eni_id, cidr)
    }

    fn add_cidr<N: PodNet>(&mut self, eni_id: &str, cidr: N) -> Result<(), DatastoreError> {
        let idx = self
            .eni_index(eni_id)
            .ok_or(DatastoreError::UnknownEniOnAdd)?;
        let cidr = cidr.network_only();
        let cidrs = N::cidrs_mut(&mut self.enis[idx]);
        if cidrs.contains_key(&cidr) {
            return Err(DatastoreError::IpAlreadyInStore);
        }
        let mut entry = CidrEntry::new(cidr);
        self.pending
            .retain(|p| match restore::adoptable(p, &entry) {
                Some((ip, assigned)) => {
                    entry.addresses.insert(
                        ip,
                        AddressInfo {
                            assignment: Some(assigned),
                            unassigned_time: None,
                        },
                    );
                    false
                }
                None => true,
            });
        cidrs.insert(cidr, entry);
        Ok(())
    }

    /// Removes a CIDR from an ENI. Assigned addresses make this [`DatastoreError::IpInUse`]
    /// unless `force`, which unassigns them and rewrites the checkpoint.
    pub fn del_ipv4_cidr(
        &mut self,
        eni_id: &str,
        cidr: Ipv4Net,
        force: bool,
    ) -> Result<ForcedRelease, DatastoreError> {
        self.del_cidr(eni_id, cidr, force)
    }

    /// [`Self::del_ipv4_cidr`] for an IPv6 prefix (upstream `DelIPv6CidrFromStore`).
    pub fn del_ipv6_cidr(
        &mut self,
        eni_id: &str,
        cidr: Ipv6Net,
        force: bool,
    ) -> Result<ForcedRelease, DatastoreError> {
        self.del_cidr(eni_id, cidr, force)
    }

    fn del_cidr<N: PodNet>(
        &mut self,
        eni_id: &str,
        cidr: N,
        force: bool,
    ) -> Result<ForcedRelease, DatastoreError>
    where
        N::Addr: Into<IpAddr>,
    {
        let idx = self.eni_index(eni_id).ok_or(DatastoreError::UnknownEni)?;
        let cidr = cidr.network_only();
        let entry = N::cidrs(&self.enis[idx])
            .get(&cidr)
            .ok_or(DatastoreError::UnknownIp)?;
        let unassigned: Vec<(IpamKey, IpAddr)> = entry
            .addresses
            .iter()
            .filter_map(|(ip, a)| a.assignment.as_ref().map(|s| (s.key.clone(), (*ip).into())))
            .collect();
        if !unassigned.is_empty() && !force {
            return Err(DatastoreError::IpInUse);
        }
        N::cidrs_mut(&mut self.enis[idx]).remove(&cidr);
        Ok(self.finish_forced(unassigned))
    }

    /// Removes an ENI. Assigned addresses make this [`DatastoreError::EniInUse`] unless
    /// `force` (the ENI vanished outside our control), which unassigns them, reports the
    /// keys and rewrites the checkpoint. Age and cooldown are the planner's concern.
    pub fn remove_eni(
        &mut self,
        eni_id: &str,
        force: bool,
    ) -> Result<ForcedRelease, DatastoreError> {
        let idx = self.eni_index(eni_id).ok_or(DatastoreError::UnknownEni)?;
        let eni = &self.enis[idx];
        let v4 = eni
            .assigned()
            .map(|(ip, s)| (s.key.clone(), IpAddr::V4(ip)));
        let v6 = eni
            .assigned_v6()
            .map(|(ip, s)| (s.key.clone(), IpAddr::V6(ip)));
        let unassigned: Vec<(IpamKey, IpAddr)> = v4.chain(v6).collect();
        if !unassigned.is_empty() && !force {
            return Err(DatastoreError::EniInUse);
        }
        self.enis.remove(idx);
        Ok(self.finish_forced(unassigned))
    }

    fn finish_forced(&mut self, unassigned: Vec<(IpamKey, IpAddr)>) -> ForcedRelease {
        let checkpoint_error = if unassigned.is_empty() {
            None
        } else {
            self.persist().err()
        };
        ForcedRelease {
            unassigned,
            checkpoint_error,
        }
    }

    /// Marks an ENI as excluded (or not) from pod IPs.
    pub fn set_eni_excluded(&mut self, eni_id: &str, excluded: bool) -> Result<(), DatastoreError> {
        let idx = self.eni_index(eni_id).ok_or(DatastoreError::UnknownEni)?;
        self.enis[idx].excluded = excluded;
        Ok(())
    }

    /// The checkpoint document of the current state: assigned addresses (ENIs by device
    /// number; per ENI IPv4 then IPv6, CIDRs and addresses ascending; an IPv6 address goes
    /// in `ipv6`), then pending restored allocations.
    pub fn checkpoint(&self) -> Checkpoint {
        let row = |ip: IpAddr, s: &Assigned| CheckpointEntry {
            key: s.key.clone(),
            ipv4: if ip.is_ipv4() {
                ip.to_string()
            } else {
                String::new()
            },
            ipv6: if ip.is_ipv6() {
                ip.to_string()
            } else {
                String::new()
            },
            allocation_timestamp: s.assigned_time.unix_nanos(),
            metadata: s.metadata.clone(),
        };
        let mut allocations: Vec<CheckpointEntry> = self
            .enis
            .iter()
            .flat_map(|e| {
                let v4 = e.assigned().map(|(ip, s)| row(IpAddr::V4(ip), s));
                v4.chain(e.assigned_v6().map(|(ip, s)| row(IpAddr::V6(ip), s)))
            })
            .collect();
        allocations.extend(self.pending.iter().cloned());
        Checkpoint::new(allocations)
    }

    /// Writes the current state through the sink.
    pub fn persist(&mut self) -> Result<(), CheckpointError> {
        let doc = self.checkpoint();
        self.sink.persist(&doc)
    }

    pub(crate) fn eni_index(&self, eni_id: &str) -> Option<usize> {
        self.enis.iter().position(|e| e.id == eni_id)
    }
}

#[cfg(test)]
mod tests;
