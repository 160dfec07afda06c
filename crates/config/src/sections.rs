//! The groups of [`crate::Config`], each with upstream's defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::types::{
    BindAddress, LogDestination, LogLevel, NetworkPolicyMode, PodSgEnforcingMode, RandomizeSnat,
};

/// Default checkpoint path of network card 0.
pub const DEFAULT_BACKING_STORE: &str = "/var/run/aws-node/ipam.json";
/// Default ipamd log file (inside the container).
pub const DEFAULT_IPAMD_LOG_FILE: &str = "/host/var/log/aws-routed-eni/ipamd.log";
/// Default aws-cni log file.
pub const DEFAULT_PLUGIN_LOG_FILE: &str = "/var/log/aws-routed-eni/plugin.log";
/// Default egress-cni log file in IPv6 clusters.
pub const DEFAULT_EGRESS_V4_PLUGIN_LOG_FILE: &str = "/var/log/aws-routed-eni/egress-v4-plugin.log";
/// Default egress-cni log file in IPv4 clusters.
pub const DEFAULT_EGRESS_V6_PLUGIN_LOG_FILE: &str = "/var/log/aws-routed-eni/egress-v6-plugin.log";
/// Default host directory for CNI binaries.
pub const DEFAULT_HOST_CNI_BIN_PATH: &str = "/host/opt/cni/bin";
/// Default host directory for the conflist.
pub const DEFAULT_HOST_CNI_CONFDIR_PATH: &str = "/host/etc/cni/net.d";
/// Default node label / annotation key naming the ENIConfig.
pub const DEFAULT_ENI_CONFIG_KEY: &str = "k8s.amazonaws.com/eniConfig";
/// Default introspection port.
pub const DEFAULT_INTROSPECTION_PORT: u16 = 61679;
/// Default (and minimum) AWS HTTP timeout.
pub const MIN_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `IP_COOLDOWN_PERIOD`.
pub const DEFAULT_IP_COOLDOWN: Duration = Duration::from_secs(30);
/// Default ENI (and pod) MTU.
pub const DEFAULT_MTU: u32 = 9001;
/// Default connection mark / mask.
pub const DEFAULT_CONNMARK: u32 = 0x80;
/// Default host veth prefix.
pub const DEFAULT_VETH_PREFIX: &str = "eni";

/// Warm-pool sizing (`WARM_*`, `MINIMUM_IP_TARGET`, `MAX_ENI`, prefix delegation, cooldown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolTargets {
    /// `WARM_ENI_TARGET` (default 1).
    pub warm_eni_target: u32,
    /// `WARM_IP_TARGET` (default 0 = unset).
    pub warm_ip_target: u32,
    /// `MINIMUM_IP_TARGET` (default 0 = unset).
    pub minimum_ip_target: u32,
    /// `WARM_PREFIX_TARGET` (default 0; the chart sets 1).
    pub warm_prefix_target: u32,
    /// `ENABLE_PREFIX_DELEGATION` as requested (the instance may not support it).
    pub prefix_delegation: bool,
    /// `MAX_ENI` (unset or `-1` = `None`).
    pub max_eni: Option<u32>,
    /// `IP_COOLDOWN_PERIOD` (default 30 s).
    pub ip_cooldown_period: Duration,
}

impl Default for PoolTargets {
    fn default() -> Self {
        Self {
            warm_eni_target: 1,
            warm_ip_target: 0,
            minimum_ip_target: 0,
            warm_prefix_target: 0,
            prefix_delegation: false,
            max_eni: None,
            ip_cooldown_period: DEFAULT_IP_COOLDOWN,
        }
    }
}

/// ENI provisioning, discovery, tagging and custom networking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniSettings {
    /// `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG` (default false).
    pub custom_networking: bool,
    /// `ENI_CONFIG_ANNOTATION_DEF` (default `k8s.amazonaws.com/eniConfig`).
    pub eni_config_annotation_def: String,
    /// `ENI_CONFIG_LABEL_DEF` (default `k8s.amazonaws.com/eniConfig`).
    pub eni_config_label_def: String,
    /// `ADDITIONAL_ENI_TAGS` without reserved keys (default empty).
    pub additional_eni_tags: BTreeMap<String, String>,
    /// `CLUSTER_NAME` (default empty: no cluster tags).
    pub cluster_name: String,
    /// `MANAGE_UNTAGGED_ENI` (default true).
    pub manage_untagged_eni: bool,
    /// `AWS_MANAGE_ENIS_NON_SCHEDULABLE` (default false).
    pub manage_enis_non_schedulable: bool,
    /// `DISABLE_NETWORK_RESOURCE_PROVISIONING` as set (see [`crate::Config::provisioning_disabled`]).
    pub disable_network_resource_provisioning: bool,
    /// `DISABLE_LEAKED_ENI_CLEANUP` as set (see [`crate::Config::leaked_eni_cleanup_disabled`]).
    pub disable_leaked_eni_cleanup: bool,
    /// `ENABLE_IMDS_ONLY_MODE` (default false).
    pub imds_only_mode: bool,
    /// `ENABLE_SUBNET_DISCOVERY` (default true).
    pub subnet_discovery: bool,
    /// `ENABLE_MULTI_NIC` (default false).
    pub multi_nic: bool,
    /// `ENABLE_POD_ENI`: security groups for pods (default false).
    pub pod_eni: bool,
    /// `POD_SECURITY_GROUP_ENFORCING_MODE` (default strict).
    pub pod_sg_enforcing_mode: PodSgEnforcingMode,
}

impl Default for EniSettings {
    fn default() -> Self {
        Self {
            custom_networking: false,
            eni_config_annotation_def: DEFAULT_ENI_CONFIG_KEY.to_owned(),
            eni_config_label_def: DEFAULT_ENI_CONFIG_KEY.to_owned(),
            additional_eni_tags: BTreeMap::new(),
            cluster_name: String::new(),
            manage_untagged_eni: true,
            manage_enis_non_schedulable: false,
            disable_network_resource_provisioning: false,
            disable_leaked_eni_cleanup: false,
            imds_only_mode: false,
            subnet_discovery: true,
            multi_nic: false,
            pod_eni: false,
            pod_sg_enforcing_mode: PodSgEnforcingMode::Strict,
        }
    }
}

/// Host networking: MTUs, veth naming, SNAT and connmark, policy routing extras.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Networking {
    /// `AWS_VPC_ENI_MTU` (default 9001).
    pub eni_mtu: u32,
    /// `POD_MTU` (default: the ENI MTU).
    pub pod_mtu: u32,
    /// `AWS_VPC_K8S_CNI_VETHPREFIX` (default `eni`).
    pub veth_prefix: String,
    /// `AWS_VPC_K8S_CNI_EXTERNALSNAT` (default false).
    pub external_snat: bool,
    /// `AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS` (default empty).
    pub exclude_snat_cidrs: Vec<Ipv4Net>,
    /// `AWS_EXTERNAL_SERVICE_CIDRS` (default empty).
    pub external_service_cidrs: Vec<Ipv4Net>,
    /// `AWS_VPC_K8S_CNI_RANDOMIZESNAT` (default prng).
    pub randomize_snat: RandomizeSnat,
    /// `AWS_VPC_K8S_CNI_CONNMARK` (default 0x80).
    pub connmark: u32,
    /// `AWS_VPC_CNI_NODE_PORT_SUPPORT` (default true).
    pub node_port_support: bool,
    /// `NETWORK_POLICY_ENFORCING_MODE` (default unset).
    pub network_policy_mode: Option<NetworkPolicyMode>,
    /// `DISABLE_TCP_EARLY_DEMUX` (init container; default false).
    pub disable_tcp_early_demux: bool,
}

impl Default for Networking {
    fn default() -> Self {
        Self {
            eni_mtu: DEFAULT_MTU,
            pod_mtu: DEFAULT_MTU,
            veth_prefix: DEFAULT_VETH_PREFIX.to_owned(),
            external_snat: false,
            exclude_snat_cidrs: Vec::new(),
            external_service_cidrs: Vec::new(),
            randomize_snat: RandomizeSnat::Prng,
            connmark: DEFAULT_CONNMARK,
            node_port_support: true,
            network_policy_mode: None,
            disable_tcp_early_demux: false,
        }
    }
}

/// Extra plugins chained in the rendered conflist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginChain {
    /// `ENABLE_BANDWIDTH_PLUGIN` (default false).
    pub bandwidth_plugin: bool,
    /// `DISABLE_POD_V6`: chain `tuning` to disable IPv6 in pods (default false).
    pub disable_pod_v6: bool,
    /// `ENABLE_V4_EGRESS`: egress-cni IPv4 egress in IPv6 clusters (default true).
    pub v4_egress: bool,
    /// `ENABLE_V6_EGRESS`: egress-cni IPv6 egress in IPv4 clusters (default false).
    pub v6_egress: bool,
}

impl Default for PluginChain {
    fn default() -> Self {
        Self {
            bandwidth_plugin: false,
            disable_pod_v6: false,
            v4_egress: true,
            v6_egress: false,
        }
    }
}

/// Log sinks of ipamd and the plugins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Logging {
    /// `AWS_VPC_K8S_CNI_LOG_FILE`.
    pub ipamd_log_file: LogDestination,
    /// `AWS_VPC_K8S_CNI_LOGLEVEL` (default Debug).
    pub ipamd_log_level: LogLevel,
    /// `AWS_VPC_K8S_PLUGIN_LOG_FILE` (never stdout).
    pub plugin_log_file: LogDestination,
    /// `AWS_VPC_K8S_PLUGIN_LOG_LEVEL` (default Debug; also the egress plugin's level).
    pub plugin_log_level: LogLevel,
    /// `AWS_VPC_K8S_EGRESS_V4_PLUGIN_LOG_FILE` (never stdout).
    pub egress_v4_plugin_log_file: LogDestination,
    /// `AWS_VPC_K8S_EGRESS_V6_PLUGIN_LOG_FILE` (never stdout).
    pub egress_v6_plugin_log_file: LogDestination,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            ipamd_log_file: LogDestination::File(DEFAULT_IPAMD_LOG_FILE.into()),
            ipamd_log_level: LogLevel::Debug,
            plugin_log_file: LogDestination::File(DEFAULT_PLUGIN_LOG_FILE.into()),
            plugin_log_level: LogLevel::Debug,
            egress_v4_plugin_log_file: LogDestination::File(
                DEFAULT_EGRESS_V4_PLUGIN_LOG_FILE.into(),
            ),
            egress_v6_plugin_log_file: LogDestination::File(
                DEFAULT_EGRESS_V6_PLUGIN_LOG_FILE.into(),
            ),
        }
    }
}

/// Metrics and introspection servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observability {
    /// `DISABLE_METRICS` (default false).
    pub disable_metrics: bool,
    /// `DISABLE_INTROSPECTION` (default false).
    pub disable_introspection: bool,
    /// `INTROSPECTION_BIND_ADDRESS` (default `127.0.0.1:61679`).
    pub introspection_bind_address: BindAddress,
}

impl Default for Observability {
    fn default() -> Self {
        Self {
            disable_metrics: false,
            disable_introspection: false,
            introspection_bind_address: BindAddress::Tcp {
                host: "127.0.0.1".to_owned(),
                port: DEFAULT_INTROSPECTION_PORT,
            },
        }
    }
}

/// Kubernetes API access and identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Kubernetes {
    /// `CLUSTER_ENDPOINT`: overrides the API server URL.
    pub cluster_endpoint: Option<String>,
    /// `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// `MY_NODE_NAME` (downward API).
    pub node_name: Option<String>,
    /// `MY_POD_NAME` (downward API).
    pub pod_name: Option<String>,
    /// `ANNOTATE_POD_IP` (default false).
    pub annotate_pod_ip: bool,
}

/// AWS SDK settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwsSettings {
    /// `AWS_EC2_ENDPOINT`: custom EC2 endpoint URL (applied to the EC2 client, unlike upstream).
    pub ec2_endpoint: Option<String>,
    /// `HTTP_TIMEOUT` (default and minimum 10 s).
    pub http_timeout: Duration,
    /// `VPC_CNI_VERSION`: appended to user agents (default empty).
    pub vpc_cni_version: String,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            ec2_endpoint: None,
            http_timeout: MIN_HTTP_TIMEOUT,
            vpc_cni_version: String::new(),
        }
    }
}

/// File-system locations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paths {
    /// `AWS_VPC_K8S_CNI_BACKING_STORE`: checkpoint of network card 0.
    pub backing_store: PathBuf,
    /// `HOST_CNI_BIN_PATH`.
    pub host_cni_bin_path: PathBuf,
    /// `HOST_CNI_CONFDIR_PATH`.
    pub host_cni_confdir_path: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            backing_store: DEFAULT_BACKING_STORE.into(),
            host_cni_bin_path: DEFAULT_HOST_CNI_BIN_PATH.into(),
            host_cni_confdir_path: DEFAULT_HOST_CNI_CONFDIR_PATH.into(),
        }
    }
}
