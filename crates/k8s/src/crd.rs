//! Custom resource types: `ENIConfig`, `SecurityGroupPolicy`, `CNINode`.
//!
//! Field names and groups/versions are upstream's (aws/amazon-vpc-cni-k8s and
//! aws/amazon-vpc-resource-controller-k8s); unknown fields written by other controllers are
//! ignored on read and never sent back (all writes are merge patches of single fields).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `ENIConfig` (`crd.k8s.amazonaws.com/v1alpha1`, cluster-scoped): subnet and security groups
/// of the secondary ENIs of the nodes that select it (custom networking).
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "crd.k8s.amazonaws.com",
    version = "v1alpha1",
    kind = "ENIConfig",
    plural = "eniconfigs",
    singular = "eniconfig"
)]
#[serde(rename_all = "camelCase")]
pub struct EniConfigSpec {
    /// ID of the subnet new ENIs are created in (`subnet-...`).
    pub subnet: String,
    /// IDs of the security groups attached to new ENIs (`sg-...`). Empty means the primary
    /// ENI's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

/// The generated `ENIConfig` resource type, by its Rust-style name.
pub type EniConfig = ENIConfig;
/// The generated `CNINode` resource type, by its Rust-style name.
pub type CniNode = CNINode;

/// A label selector (`matchLabels` and `matchExpressions`, ANDed), as in `metav1.LabelSelector`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct LabelSelector {
    /// `{key: value}` pairs; each is `key In [value]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements, ANDed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One requirement of a [`LabelSelector`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In`/`NotIn`; empty for `Exists`/`DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `SecurityGroupPolicy` (`vpcresources.k8s.aws/v1beta1`, namespaced): security groups for the
/// branch ENIs of the pods it selects (applied by the VPC Resource Controller).
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "vpcresources.k8s.aws",
    version = "v1beta1",
    kind = "SecurityGroupPolicy",
    plural = "securitygrouppolicies",
    singular = "securitygrouppolicy",
    shortname = "sgp",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct SecurityGroupPolicySpec {
    /// Pods whose labels match (absent: not a criterion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Pods whose service account's labels match (absent: not a criterion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<ServiceAccountSelector>,
    /// The security groups.
    #[serde(default)]
    pub security_groups: GroupIds,
}

/// `spec.serviceAccountSelector`: a label selector over the pod's service account, plus the
/// older `matchNames` list (service account names, still accepted by the controller's CRD
/// of earlier releases).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct ServiceAccountSelector {
    /// `{key: value}` pairs over the service account's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements over the service account's labels, ANDed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
    /// Service account names (any of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_names: Vec<String>,
}

/// `spec.securityGroups`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupIds {
    /// Security group IDs applied to the pod's branch ENI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids: Vec<String>,
}

/// `CNINode` (`vpcresources.k8s.aws/v1alpha1`, cluster-scoped, name = node name): how the node
/// agent tells the VPC Resource Controller which features this node uses.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "vpcresources.k8s.aws",
    version = "v1alpha1",
    kind = "CNINode",
    plural = "cninodes",
    singular = "cninode",
    shortname = "cnd"
)]
#[serde(rename_all = "camelCase")]
pub struct CniNodeSpec {
    /// Features delegated to the VPC Resource Controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<Feature>,
    /// Tags for the ENIs the controller creates (owned by the controller).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The controller owning the object (owned by the controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

/// One `spec.features` entry of a `CNINode`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub struct Feature {
    /// `SecurityGroupsForPods` or `CustomNetworking`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The ENIConfig name for `CustomNetworking`; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Feature name for security groups for pods (`ENABLE_POD_ENI`).
pub const FEATURE_SECURITY_GROUPS_FOR_PODS: &str = "SecurityGroupsForPods";
/// Feature name for custom networking; the value is the ENIConfig name.
pub const FEATURE_CUSTOM_NETWORKING: &str = "CustomNetworking";

impl Feature {
    /// `{name: SecurityGroupsForPods}`.
    pub fn security_groups_for_pods() -> Self {
        Feature {
            name: FEATURE_SECURITY_GROUPS_FOR_PODS.to_owned(),
            value: String::new(),
        }
    }

    /// `{name: CustomNetworking, value: <eni_config>}`.
    pub fn custom_networking(eni_config: &str) -> Self {
        Feature {
            name: FEATURE_CUSTOM_NETWORKING.to_owned(),
            value: eni_config.to_owned(),
        }
    }
}
