//! Which SecurityGroupPolicies select a pod (the VPC Resource Controller's rule, upstream
//! `filterPodSecurityGroups`): pure functions.
//!
//! A policy applies to pods of its own namespace. It is ignored when it has neither a pod
//! selector nor a service-account selector, or no security groups. Each selector present must
//! match (pod labels; service account labels and, if given, `matchNames`). An empty selector
//! matches everything; an invalid one (unknown operator, `In` without values, ...) matches
//! nothing.

use std::collections::BTreeMap;

use crate::crd::{LabelSelectorRequirement, SecurityGroupPolicy};

/// What is known about a pod for policy matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    /// Pod namespace.
    pub namespace: String,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
    /// Labels of that service account.
    pub service_account_labels: BTreeMap<String, String>,
}

/// One policy selecting a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch {
    /// Policy namespace (= the pod's).
    pub namespace: String,
    /// Policy name.
    pub name: String,
    /// Its security groups.
    pub security_groups: Vec<String>,
}

/// The policies (in name order) that select `pod`.
pub fn policies_for_pod<'a>(
    policies: impl IntoIterator<Item = &'a SecurityGroupPolicy>,
    pod: &PodIdentity,
) -> Vec<PolicyMatch> {
    let mut out: Vec<PolicyMatch> = policies
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(pod.namespace.as_str()))
        .filter(|p| policy_selects(p, pod))
        .map(|p| PolicyMatch {
            namespace: pod.namespace.clone(),
            name: p.metadata.name.clone().unwrap_or_default(),
            security_groups: p.spec.security_groups.group_ids.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The union of the matches' security groups, first occurrence order, no duplicates.
pub fn security_groups(matches: &[PolicyMatch]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for sg in matches.iter().flat_map(|m| m.security_groups.iter()) {
        if !out.contains(sg) {
            out.push(sg.clone());
        }
    }
    out
}

fn policy_selects(p: &SecurityGroupPolicy, pod: &PodIdentity) -> bool {
    let spec = &p.spec;
    if (spec.pod_selector.is_none() && spec.service_account_selector.is_none())
        || spec.security_groups.group_ids.is_empty()
    {
        return false;
    }
    if let Some(sel) = &spec.pod_selector
        && !selector_matches(&sel.match_labels, &sel.match_expressions, &pod.labels)
    {
        return false;
    }
    if let Some(sel) = &spec.service_account_selector {
        if !selector_matches(
            &sel.match_labels,
            &sel.match_expressions,
            &pod.service_account_labels,
        ) {
            return false;
        }
        if !sel.match_names.is_empty() && !sel.match_names.contains(&pod.service_account) {
            return false;
        }
    }
    true
}

/// Kubernetes label-selector semantics (`metav1.LabelSelectorAsSelector` + `Matches`).
pub fn selector_matches(
    match_labels: &BTreeMap<String, String>,
    expressions: &[LabelSelectorRequirement],
    labels: &BTreeMap<String, String>,
) -> bool {
    match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && expressions.iter().all(|r| requirement_matches(r, labels))
}

fn requirement_matches(r: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key);
    match r.operator.as_str() {
        "In" if !r.values.is_empty() => value.is_some_and(|v| r.values.contains(v)),
        "NotIn" if !r.values.is_empty() => value.is_none_or(|v| !r.values.contains(v)),
        "Exists" if r.values.is_empty() => value.is_some(),
        "DoesNotExist" if r.values.is_empty() => value.is_none(),
        // Invalid requirement: the selector is invalid and matches nothing.
        _ => false,
    }
}
