//! ENIs excluded from pod addresses because of their subnet's tags (upstream's
//! `IsSubnetExcluded` in `pkg/awsutils/awsutils.go`, `excludedENIBasedOnSubnetTags` and
//! `checkAndHandleAllENIExclusion` in `pkg/ipamd/ipamd.go`; docs/ipamd.md, "Subnet
//! exclusion"): which ENIs are excluded, and how an excluded ENI is drained.
//!
//! Pure functions: the caller reads the subnets' tags (`DescribeSubnets`) and the datastore.

use std::collections::BTreeMap;

use crate::deletable::MIN_ENI_LIFETIME;
use crate::model::{EniView, PoolPolicy, PoolSnapshot};
use crate::plan::{Action, TickTimers};

/// The tag that opts a subnet in (any value but `0`) or out (`0`).
pub const ROLE_CNI_TAG: &str = "kubernetes.io/role/cni";
/// Prefix of per-cluster tags that restrict a tagged subnet to named clusters.
pub const CLUSTER_TAG_PREFIX: &str = "cni.networking.k8s.aws/cluster/";

/// A subnet's tags (key → value).
pub type SubnetTags = BTreeMap<String, String>;

/// Whether a subnet with `tags` carries no `cni.networking.k8s.aws/cluster/…` tag, or one
/// naming `cluster_name`; always true without a cluster name (upstream's
/// `ValidSubnetTagsMatchingClusterName`; the tag's value is ignored).
pub fn matches_cluster(tags: &SubnetTags, cluster_name: &str) -> bool {
    if cluster_name.is_empty() {
        return true;
    }
    let mut restricted = tags
        .keys()
        .filter(|k| k.starts_with(CLUSTER_TAG_PREFIX))
        .peekable();
    restricted.peek().is_none()
        || restricted.any(|k| k[CLUSTER_TAG_PREFIX.len()..] == *cluster_name)
}

/// Upstream's `IsSubnetExcluded` for a listed subnet: `kubernetes.io/role/cni=0`, or the tag
/// set (non-empty) on a subnet restricted to other clusters. No tag (or an empty value):
/// not excluded.
pub fn subnet_excluded(tags: &SubnetTags, cluster_name: &str) -> bool {
    match tags.get(ROLE_CNI_TAG).map(String::as_str) {
        Some("0") => true,
        None | Some("") => false,
        Some(_) => !matches_cluster(tags, cluster_name),
    }
}

/// One ENI of the datastore, for [`exclusion_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniSubnet {
    /// ENI id.
    pub id: String,
    /// Its subnet.
    pub subnet_id: String,
    /// Excluded now.
    pub excluded: bool,
    /// Excluded whatever the tags say (the primary ENI under custom networking).
    pub pinned: bool,
}

/// What each ENI's flag should be given the subnets' tags: pinned, or in a listed subnet
/// that [`subnet_excluded`]. A subnet that is not listed is not excluded (upstream:
/// "subnet not found in VPC, treating as not excluded"). Returns `(ENI, new flag)` for the
/// ENIs whose flag changes, in input order. A flag is cleared when the tag goes away:
/// upstream only ever sets it, but re-reads every subnet at each start, so a restart clears
/// it; we re-read while running, and keep the two paths equal.
pub fn exclusion_changes(
    enis: &[EniSubnet],
    subnets: &BTreeMap<String, SubnetTags>,
    cluster_name: &str,
) -> Vec<(String, bool)> {
    enis.iter()
        .filter_map(|e| {
            let by_tags = subnets
                .get(&e.subnet_id)
                .is_some_and(|tags| subnet_excluded(tags, cluster_name));
            let want = e.pinned || by_tags;
            (want != e.excluded).then(|| (e.id.clone(), want))
        })
        .collect()
}

/// Whether an excluded ENI is drained by [`plan_excluded`]: excluded, not the trunk or an
/// EFA ENI (never freed, never used for pods), and not the primary ENI under custom
/// networking (excluded as a mode, not drained: docs/kubernetes.md).
fn drained(policy: &PoolPolicy, eni: &EniView) -> bool {
    let mode_excluded_primary = policy.custom_networking && eni.is_primary;
    eni.excluded && !eni.is_trunk && !eni.is_efa && !mode_excluded_primary
}

/// Whether an excluded ENI may be detached and deleted now: not the primary, no pod on it,
/// no address in cooldown, and at least [`MIN_ENI_LIFETIME`] old (upstream's
/// `getDeletableENI` rules without the warm-target ones: an excluded ENI counts towards no
/// target, so freeing it can never make the pool lower).
pub fn excluded_eni_freeable(policy: &PoolPolicy, eni: &EniView) -> bool {
    drained(policy, eni)
        && !eni.is_primary
        && eni.assigned_ips == 0
        && eni.cooldown_ips == 0
        && eni.age >= MIN_ENI_LIFETIME
}

/// What to do this tick about excluded ENIs, before the warm-pool plan: free one empty
/// excluded ENI (as `tryFreeENI`, at most one per tick), and give back to EC2 the unused
/// CIDRs of excluded ENIs that still have pods or are the primary (upstream's
/// `cleanupExcludedENI`, which runs once at start; here every tick, and only when none of
/// the ENI's addresses is cooling down, so a released address is never reused early).
/// Nothing while provisioning is not allowed (terminating or cordoned node).
pub fn plan_excluded(policy: &PoolPolicy, pool: &PoolSnapshot, timers: &TickTimers) -> Vec<Action> {
    if !timers.provisioning_allowed {
        return Vec::new();
    }
    let mut actions: Vec<Action> = pool
        .enis
        .iter()
        .filter(|e| drained(policy, e) && (e.assigned_ips > 0 || e.is_primary))
        .filter(|e| e.cooldown_ips == 0 && !e.freeable_cidrs.is_empty())
        .map(|e| Action::ReleaseCidrs {
            eni: e.id.clone(),
            cidrs: e.freeable_cidrs.clone(),
        })
        .collect();
    if let Some(e) = pool.enis.iter().find(|e| excluded_eni_freeable(policy, e)) {
        actions.push(Action::FreeEni { eni: e.id.clone() });
    }
    actions
}
