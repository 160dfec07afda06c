//! Subnet exclusion of existing ENIs (`ENABLE_SUBNET_DISCOVERY=true`): an ENI whose subnet
//! is tagged `kubernetes.io/role/cni=0`, or restricted to other clusters, is marked
//! `IsExcludedForPodIPs` in the datastore. No pod gets a new address from it, pods on it
//! keep theirs, and the pool drains it (`planner::plan_excluded`, run by `pool`).
//!
//! Upstream checks every ENI at start (`setupENI` → `excludedENIBasedOnSubnetTags`) and each
//! ENI it sets up later; a subnet re-tagged while it runs only counts after a restart. Here
//! the same check runs at start (`start::bootstrap`), for each ENI reconcile adopts, and
//! every [`REFRESH_EVERY_ROUNDS`] reconcile rounds for all ENIs, which also clears the flag
//! when the tag goes away (what upstream's next start does). docs/ipamd.md, "Subnet
//! exclusion".

use std::collections::BTreeMap;

use aws::{AwsError, Ec2};
use ipam::Datastore;
use planner::{EniSubnet, SubnetTags};

use crate::shared_datastore::{SharedDatastore, lock};

/// Subnet tags are re-read every this many reconcile rounds (5 min with the default 60 s
/// round): one `DescribeSubnets` per node per round would be a steady cost on the
/// account-wide Describe* throttle that upstream does not pay.
pub const REFRESH_EVERY_ROUNDS: u32 = 5;

/// Where the node's subnets are and what the flags depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetExclusion {
    pub vpc_id: String,
    pub availability_zone: String,
    /// `CLUSTER_NAME` (subnets restricted to other clusters are excluded).
    pub cluster_name: String,
    /// Custom networking: the primary ENI stays excluded whatever its subnet's tags.
    pub custom_networking: bool,
}

/// Subnet id → tags, from one `DescribeSubnets` answer.
pub type SubnetTagMap = BTreeMap<String, SubnetTags>;

/// The tags of each subnet in `subnets`.
pub fn tag_map(subnets: &[aws::SubnetDescription]) -> SubnetTagMap {
    subnets
        .iter()
        .map(|s| (s.id.clone(), s.tags.clone()))
        .collect()
}

impl SubnetExclusion {
    /// The settings for a node, `None` when `ENABLE_SUBNET_DISCOVERY=false` (upstream checks
    /// exclusion only with subnet discovery on).
    pub fn for_node(cfg: &config::Config, vpc_id: &str, availability_zone: &str) -> Option<Self> {
        cfg.eni.subnet_discovery.then(|| Self {
            vpc_id: vpc_id.to_string(),
            availability_zone: availability_zone.to_string(),
            cluster_name: cfg.eni.cluster_name.clone(),
            custom_networking: cfg.eni.custom_networking,
        })
    }

    /// One `DescribeSubnets` of the node's VPC and zone (upstream's `GetVpcSubnets`).
    pub async fn read<E: Ec2 + ?Sized>(&self, ec2: &E) -> Result<SubnetTagMap, AwsError> {
        let subnets = ec2
            .describe_subnets(&self.vpc_id, &self.availability_zone)
            .await?;
        Ok(tag_map(&subnets))
    }

    /// Sets every ENI's flag from `subnets`; returns the changes `(ENI, excluded)`.
    pub fn apply(&self, ds: &mut Datastore, subnets: &SubnetTagMap) -> Vec<(String, bool)> {
        let enis: Vec<EniSubnet> = ds
            .enis()
            .iter()
            .map(|e| EniSubnet {
                id: e.id.clone(),
                subnet_id: e.subnet_id.clone(),
                excluded: e.excluded,
                pinned: self.custom_networking && e.is_primary,
            })
            .collect();
        let changes = planner::exclusion_changes(&enis, subnets, &self.cluster_name);
        for (id, excluded) in &changes {
            let subnet = enis
                .iter()
                .find(|e| &e.id == id)
                .map(|e| e.subnet_id.as_str())
                .unwrap_or_default();
            match ds.set_eni_excluded(id, *excluded) {
                Ok(()) if *excluded => tracing::info!(
                    eni = %id, %subnet,
                    "ENI excluded from pod IP allocation (subnet tagged kubernetes.io/role/cni=0 or for another cluster); pods on it keep their addresses, and it is freed once empty"
                ),
                Ok(()) => {
                    tracing::info!(eni = %id, %subnet, "ENI no longer excluded from pod IP allocation")
                }
                Err(e) => tracing::warn!(eni = %id, "marking the ENI excluded: {e}"),
            }
        }
        changes
    }

    /// Reads the subnets and applies them to the shared datastore (the lock is not held
    /// across the EC2 call).
    pub async fn refresh<E: Ec2 + ?Sized>(
        &self,
        ec2: &E,
        ds: &SharedDatastore,
    ) -> Result<Vec<(String, bool)>, AwsError> {
        let subnets = self.read(ec2).await?;
        Ok(self.apply(&mut lock(ds), &subnets))
    }

    /// At start, before any pod is served: a failed `DescribeSubnets` only warns (no ENI
    /// is excluded until the next refresh); upstream's `setupENI` fails the ENI instead.
    pub async fn at_start<E: Ec2 + ?Sized>(&self, ec2: &E, ds: &mut Datastore) {
        match self.read(ec2).await {
            Ok(subnets) => {
                self.apply(ds, &subnets);
            }
            Err(e) => {
                tracing::warn!(
                    "subnet exclusion at start: DescribeSubnets failed ({e}); retried at the next refresh"
                )
            }
        }
    }
}
