//! Serialisable views with upstream's JSON field names, for the introspection endpoints
//! `/v1/ipamd-env-settings` and `/v1/networkutils-env-settings`. They expose no secrets:
//! only the settings upstream itself shows.

use serde::Serialize;

use crate::Config;

/// Body of `/v1/ipamd-env-settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpamdEnvSettings {
    /// `WARM_IP_TARGET`
    #[serde(rename = "WARM_IP_TARGET")]
    pub warm_ip_target: u32,
    /// `WARM_ENI_TARGET`
    #[serde(rename = "WARM_ENI_TARGET")]
    pub warm_eni_target: u32,
    /// `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG`
    #[serde(rename = "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG")]
    pub custom_network_cfg: bool,
    /// `AWS_MANAGE_ENIS_NON_SCHEDULABLE`
    #[serde(rename = "AWS_MANAGE_ENIS_NON_SCHEDULABLE")]
    pub manage_enis_non_schedulable: bool,
    /// `ENABLE_SUBNET_DISCOVERY`
    #[serde(rename = "ENABLE_SUBNET_DISCOVERY")]
    pub enable_subnet_discovery: bool,
}

/// Body of `/v1/networkutils-env-settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkUtilsEnvSettings {
    /// `AWS_VPC_K8S_CNI_CONNMARK`
    #[serde(rename = "AWS_VPC_K8S_CNI_CONNMARK")]
    pub connmark: u32,
    /// `AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS` (`null` when empty, as upstream).
    #[serde(rename = "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS")]
    pub exclude_snat_cidrs: Option<Vec<String>>,
    /// `AWS_VPC_K8S_CNI_EXTERNALSNAT`
    #[serde(rename = "AWS_VPC_K8S_CNI_EXTERNALSNAT")]
    pub external_snat: bool,
    /// `AWS_EXTERNAL_SERVICE_CIDRS` (`null` when empty, as upstream).
    #[serde(rename = "AWS_EXTERNAL_SERVICE_CIDRS")]
    pub external_service_cidrs: Option<Vec<String>>,
    /// `AWS_VPC_ENI_MTU`
    #[serde(rename = "AWS_VPC_ENI_MTU")]
    pub eni_mtu: u32,
    /// `AWS_VPC_K8S_CNI_VETHPREFIX`
    #[serde(rename = "AWS_VPC_K8S_CNI_VETHPREFIX")]
    pub veth_prefix: String,
    /// `AWS_VPC_CNI_NODE_PORT_SUPPORT`
    #[serde(rename = "AWS_VPC_CNI_NODE_PORT_SUPPORT")]
    pub node_port_support: bool,
    /// `AWS_VPC_K8S_CNI_RANDOMIZESNAT` as upstream's enum number (0 none, 1 hashrandom, 2 prng).
    #[serde(rename = "AWS_VPC_K8S_CNI_RANDOMIZESNAT")]
    pub randomize_snat: u8,
}

fn cidr_strings(cidrs: &[ipnet::Ipv4Net]) -> Option<Vec<String>> {
    (!cidrs.is_empty()).then(|| cidrs.iter().map(ToString::to_string).collect())
}

impl Config {
    /// The `/v1/ipamd-env-settings` view.
    pub fn ipamd_env_settings(&self) -> IpamdEnvSettings {
        IpamdEnvSettings {
            warm_ip_target: self.pool.warm_ip_target,
            warm_eni_target: self.pool.warm_eni_target,
            custom_network_cfg: self.eni.custom_networking,
            manage_enis_non_schedulable: self.eni.manage_enis_non_schedulable,
            enable_subnet_discovery: self.eni.subnet_discovery,
        }
    }

    /// The `/v1/networkutils-env-settings` view.
    pub fn network_utils_env_settings(&self) -> NetworkUtilsEnvSettings {
        let n = &self.networking;
        NetworkUtilsEnvSettings {
            connmark: n.connmark,
            exclude_snat_cidrs: cidr_strings(&n.exclude_snat_cidrs),
            external_snat: n.external_snat,
            external_service_cidrs: cidr_strings(&n.external_service_cidrs),
            eni_mtu: n.eni_mtu,
            veth_prefix: n.veth_prefix.clone(),
            node_port_support: n.node_port_support,
            randomize_snat: n.randomize_snat.introspection_code(),
        }
    }
}
