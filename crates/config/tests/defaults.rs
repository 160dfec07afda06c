//! An empty environment yields upstream's defaults; empty values mean "default";
//! unknown variables are ignored.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::ok;
use config::{
    BindAddress, Config, IpFamily, LogDestination, LogLevel, PodSgEnforcingMode, RandomizeSnat,
    names,
};

#[test]
fn empty_environment_gives_every_upstream_default() {
    let c = ok(&[]);
    assert_eq!(c, Config::default());
    assert_eq!(c.ip_family, IpFamily::V4);
    // pool
    assert_eq!(c.pool.warm_eni_target, 1);
    assert_eq!(c.pool.warm_ip_target, 0);
    assert_eq!(c.pool.minimum_ip_target, 0);
    assert_eq!(c.pool.warm_prefix_target, 0);
    assert!(!c.pool.prefix_delegation);
    assert_eq!(c.pool.max_eni, None);
    assert_eq!(c.pool.ip_cooldown_period, Duration::from_secs(30));
    // eni
    assert!(!c.eni.custom_networking);
    assert_eq!(
        c.eni.eni_config_annotation_def,
        "k8s.amazonaws.com/eniConfig"
    );
    assert_eq!(c.eni.eni_config_label_def, "k8s.amazonaws.com/eniConfig");
    assert!(c.eni.additional_eni_tags.is_empty());
    assert_eq!(c.eni.cluster_name, "");
    assert!(c.eni.manage_untagged_eni);
    assert!(!c.eni.manage_enis_non_schedulable);
    assert!(!c.eni.disable_network_resource_provisioning);
    assert!(!c.eni.disable_leaked_eni_cleanup);
    assert!(!c.eni.imds_only_mode);
    assert!(c.eni.subnet_discovery);
    assert!(!c.eni.multi_nic);
    assert!(!c.eni.pod_eni);
    assert_eq!(c.eni.pod_sg_enforcing_mode, PodSgEnforcingMode::Strict);
    // networking
    assert_eq!(c.networking.eni_mtu, 9001);
    assert_eq!(c.networking.pod_mtu, 9001);
    assert_eq!(c.networking.veth_prefix, "eni");
    assert!(!c.networking.external_snat);
    assert!(c.networking.exclude_snat_cidrs.is_empty());
    assert!(c.networking.external_service_cidrs.is_empty());
    assert_eq!(c.networking.randomize_snat, RandomizeSnat::Prng);
    assert_eq!(c.networking.connmark, 0x80);
    assert!(c.networking.node_port_support);
    assert_eq!(c.networking.network_policy_mode, None);
    assert!(!c.networking.disable_tcp_early_demux);
    // chain
    assert!(!c.chain.bandwidth_plugin);
    assert!(!c.chain.disable_pod_v6);
    assert!(c.chain.v4_egress);
    assert!(!c.chain.v6_egress);
    // logging
    let file = |p: &str| LogDestination::File(PathBuf::from(p));
    assert_eq!(
        c.logging.ipamd_log_file,
        file("/host/var/log/aws-routed-eni/ipamd.log")
    );
    assert_eq!(c.logging.ipamd_log_level, LogLevel::Debug);
    assert_eq!(
        c.logging.plugin_log_file,
        file("/var/log/aws-routed-eni/plugin.log")
    );
    assert_eq!(c.logging.plugin_log_level, LogLevel::Debug);
    assert_eq!(
        c.logging.egress_v4_plugin_log_file,
        file("/var/log/aws-routed-eni/egress-v4-plugin.log")
    );
    assert_eq!(
        c.logging.egress_v6_plugin_log_file,
        file("/var/log/aws-routed-eni/egress-v6-plugin.log")
    );
    // observability
    assert!(!c.observability.disable_metrics);
    assert!(!c.observability.disable_introspection);
    assert_eq!(
        c.observability.introspection_bind_address,
        BindAddress::Tcp {
            host: "127.0.0.1".into(),
            port: 61679
        }
    );
    assert_eq!(
        c.observability.introspection_bind_address.to_string(),
        "127.0.0.1:61679"
    );
    // kubernetes
    assert_eq!(c.kubernetes.cluster_endpoint, None);
    assert_eq!(c.kubernetes.kubeconfig, None);
    assert_eq!(c.kubernetes.node_name, None);
    assert_eq!(c.kubernetes.pod_name, None);
    assert!(!c.kubernetes.annotate_pod_ip);
    // aws
    assert_eq!(c.aws.ec2_endpoint, None);
    assert_eq!(c.aws.http_timeout, Duration::from_secs(10));
    assert_eq!(c.aws.vpc_cni_version, "");
    // paths
    assert_eq!(
        c.paths.backing_store,
        PathBuf::from("/var/run/aws-node/ipam.json")
    );
    assert_eq!(
        c.paths.host_cni_bin_path,
        PathBuf::from("/host/opt/cni/bin")
    );
    assert_eq!(
        c.paths.host_cni_confdir_path,
        PathBuf::from("/host/etc/cni/net.d")
    );
    assert!(c.warnings.is_empty());
}

#[test]
fn every_variable_set_but_empty_means_default() {
    let vars: Vec<(&str, &str)> = names::ALL.iter().map(|n| (*n, "")).collect();
    assert_eq!(ok(&vars), Config::default());
}

#[test]
fn unknown_variables_are_ignored() {
    let c = ok(&[
        ("PATH", "/usr/bin"),
        ("WARM_IP_TARGETS", "not-a-number"),
        ("enable_ipv6", "garbage"),
        ("AWS_REGION", "us-west-2"),
    ]);
    assert_eq!(c, Config::default());
}

#[test]
fn chart_defaults_are_a_valid_ipv4_config() {
    // charts/aws-vpc-cni/values.yaml env block.
    let c = ok(&[
        ("ADDITIONAL_ENI_TAGS", "{}"),
        ("AWS_VPC_CNI_NODE_PORT_SUPPORT", "true"),
        ("AWS_VPC_ENI_MTU", "9001"),
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "false"),
        ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "false"),
        (
            "AWS_VPC_K8S_CNI_LOG_FILE",
            "/host/var/log/aws-routed-eni/ipamd.log",
        ),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", "DEBUG"),
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "prng"),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", "eni"),
        (
            "AWS_VPC_K8S_PLUGIN_LOG_FILE",
            "/var/log/aws-routed-eni/plugin.log",
        ),
        ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "DEBUG"),
        ("DISABLE_INTROSPECTION", "false"),
        ("DISABLE_METRICS", "false"),
        ("ENABLE_POD_ENI", "false"),
        ("ENABLE_PREFIX_DELEGATION", "false"),
        ("WARM_ENI_TARGET", "1"),
        ("WARM_PREFIX_TARGET", "1"),
        ("DISABLE_NETWORK_RESOURCE_PROVISIONING", "false"),
        ("ENABLE_IPv4", "true"),
        ("ENABLE_IPv6", "false"),
        ("ENABLE_SUBNET_DISCOVERY", "true"),
        ("VPC_CNI_VERSION", "v1.23.1"),
        ("NETWORK_POLICY_ENFORCING_MODE", "standard"),
        ("ENABLE_IMDS_ONLY_MODE", "false"),
        ("ENABLE_MULTI_NIC", "false"),
    ]);
    assert_eq!(c.ip_family, IpFamily::V4);
    assert_eq!(c.pool.warm_prefix_target, 1);
    assert_eq!(c.aws.vpc_cni_version, "v1.23.1");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn from_env_agrees_with_from_vars_over_the_same_environment() {
    // The test process environment (whatever it holds) must parse the same both ways.
    let direct = Config::from_env();
    let via_vars = Config::from_vars(std::env::vars());
    assert_eq!(direct, via_vars);
}

#[test]
fn reference_doc_lists_every_variable() {
    let doc = include_str!("../../../docs/configuration.md");
    for name in names::ALL {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "docs/configuration.md has no row for {name}"
        );
    }
}
