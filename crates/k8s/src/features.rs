//! CNINode feature bookkeeping (upstream `AddFeatureToCNINode`): pure functions.

use serde_json::{Value, json};

use crate::crd::Feature;

/// The features this node should advertise, in upstream's order.
///
/// Only with `ENABLE_POD_ENI` (upstream tells the VPC Resource Controller about custom
/// networking only when it manages branch ENIs for this node): `CustomNetworking` with the
/// ENIConfig name when custom networking selected a non-`default` ENIConfig, then
/// `SecurityGroupsForPods` when there is room for a trunk ENI (ipamd's check: IPv4 ENI count
/// below max ENIs minus unmanaged ENIs, or a trunk is already attached).
pub fn wanted_features(
    pod_eni: bool,
    trunk_room: bool,
    custom_networking_eni_config: Option<&str>,
) -> Vec<Feature> {
    let mut out = Vec::new();
    if pod_eni {
        if let Some(name) = custom_networking_eni_config
            .filter(|n| !n.is_empty() && *n != crate::selection::DEFAULT_ENI_CONFIG_NAME)
        {
            out.push(Feature::custom_networking(name));
        }
        if trunk_room {
            out.push(Feature::security_groups_for_pods());
        }
    }
    out
}

/// Add `wanted` to `current` as upstream does for each feature: an identical entry is kept; an
/// entry with the same name and another value is removed; the new entry is appended. Returns
/// `None` when nothing changes.
pub fn merge_features(current: &[Feature], wanted: &[Feature]) -> Option<Vec<Feature>> {
    let mut next = current.to_vec();
    let mut changed = false;
    for f in wanted {
        if next.iter().any(|c| c == f) {
            continue;
        }
        next.retain(|c| c.name != f.name);
        next.push(f.clone());
        changed = true;
    }
    changed.then_some(next)
}

/// The merge patch upstream sends (`client.MergeFromWithOptions(old, MergeFromWithOptimisticLock{})`):
/// the whole new `spec.features` list plus `metadata.resourceVersion` as the precondition.
pub fn features_patch(resource_version: &str, features: &[Feature]) -> Value {
    json!({
        "metadata": {"resourceVersion": resource_version},
        "spec": {"features": features},
    })
}
