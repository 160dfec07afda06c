//! Every variable parsed from a valid, non-default value.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use common::ok;
use config::{
    BindAddress, IpFamily, LogDestination, LogLevel, NetworkPolicyMode, PodSgEnforcingMode,
    RandomizeSnat,
};
use ipnet::Ipv4Net;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn go_bool_spellings_are_all_accepted() {
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        let c = ok(&[("ANNOTATE_POD_IP", t), ("MANAGE_UNTAGGED_ENI", t)]);
        assert!(c.kubernetes.annotate_pod_ip, "{t}");
        assert!(c.eni.manage_untagged_eni, "{t}");
    }
    for f in ["0", "f", "F", "FALSE", "false", "False"] {
        let c = ok(&[("ANNOTATE_POD_IP", f), ("MANAGE_UNTAGGED_ENI", f)]);
        assert!(!c.kubernetes.annotate_pod_ip, "{f}");
        assert!(!c.eni.manage_untagged_eni, "{f}");
    }
}

#[test]
fn every_boolean_variable_is_read() {
    let c = ok(&[
        ("ANNOTATE_POD_IP", "true"),
        ("AWS_MANAGE_ENIS_NON_SCHEDULABLE", "true"),
        ("AWS_VPC_CNI_NODE_PORT_SUPPORT", "false"),
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
        ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "true"),
        ("DISABLE_INTROSPECTION", "true"),
        ("DISABLE_LEAKED_ENI_CLEANUP", "true"),
        ("DISABLE_METRICS", "true"),
        ("DISABLE_NETWORK_RESOURCE_PROVISIONING", "true"),
        ("DISABLE_POD_V6", "true"),
        ("DISABLE_TCP_EARLY_DEMUX", "true"),
        ("ENABLE_BANDWIDTH_PLUGIN", "true"),
        ("ENABLE_IMDS_ONLY_MODE", "true"),
        ("ENABLE_MULTI_NIC", "true"),
        ("ENABLE_POD_ENI", "true"),
        ("ENABLE_SUBNET_DISCOVERY", "false"),
        ("ENABLE_V4_EGRESS", "false"),
        ("ENABLE_V6_EGRESS", "true"),
        ("MANAGE_UNTAGGED_ENI", "false"),
    ]);
    assert!(c.kubernetes.annotate_pod_ip);
    assert!(c.eni.manage_enis_non_schedulable);
    assert!(!c.networking.node_port_support);
    assert!(c.eni.custom_networking);
    assert!(c.networking.external_snat);
    assert!(c.observability.disable_introspection);
    assert!(c.eni.disable_leaked_eni_cleanup);
    assert!(c.observability.disable_metrics);
    assert!(c.eni.disable_network_resource_provisioning);
    assert!(c.chain.disable_pod_v6);
    assert!(c.networking.disable_tcp_early_demux);
    assert!(c.chain.bandwidth_plugin);
    assert!(c.eni.imds_only_mode);
    assert!(c.eni.multi_nic);
    assert!(c.eni.pod_eni);
    assert!(!c.eni.subnet_discovery);
    assert!(!c.chain.v4_egress);
    assert!(c.chain.v6_egress);
    assert!(!c.eni.manage_untagged_eni);
}

#[test]
fn pool_numbers_are_read() {
    let c = ok(&[
        ("WARM_ENI_TARGET", "0"),
        ("WARM_IP_TARGET", "5"),
        ("MINIMUM_IP_TARGET", "+10"),
        ("WARM_PREFIX_TARGET", "2"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("MAX_ENI", "3"),
        ("IP_COOLDOWN_PERIOD", "0"),
    ]);
    assert_eq!(c.pool.warm_eni_target, 0);
    assert_eq!(c.pool.warm_ip_target, 5);
    assert_eq!(c.pool.minimum_ip_target, 10);
    assert_eq!(c.pool.warm_prefix_target, 2);
    assert!(c.pool.prefix_delegation);
    assert_eq!(c.pool.max_eni, Some(3));
    assert_eq!(c.pool.ip_cooldown_period, Duration::ZERO);
    assert_eq!(ok(&[("MAX_ENI", "-1")]).pool.max_eni, None);
    assert_eq!(ok(&[("MAX_ENI", "0")]).pool.max_eni, Some(0));
}

#[test]
fn string_and_path_variables_are_read() {
    let c = ok(&[
        ("AWS_VPC_K8S_CNI_BACKING_STORE", "/tmp/store.json"),
        ("HOST_CNI_BIN_PATH", "/opt/bin"),
        ("HOST_CNI_CONFDIR_PATH", "/etc/net.d"),
        ("ENI_CONFIG_ANNOTATION_DEF", "example.com/eniconfig"),
        ("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone"),
        ("CLUSTER_NAME", "prod"),
        ("CLUSTER_ENDPOINT", "https://api.example.com:443"),
        ("KUBECONFIG", "/root/.kube/config"),
        ("MY_NODE_NAME", "ip-10-0-0-1.ec2.internal"),
        ("MY_POD_NAME", "aws-node-abcde"),
        ("VPC_CNI_VERSION", "v1.23.1"),
        ("AWS_EC2_ENDPOINT", "https://ec2.us-west-2.amazonaws.com"),
        ("HTTP_TIMEOUT", "45"),
    ]);
    assert_eq!(c.paths.backing_store, PathBuf::from("/tmp/store.json"));
    assert_eq!(c.paths.host_cni_bin_path, PathBuf::from("/opt/bin"));
    assert_eq!(c.paths.host_cni_confdir_path, PathBuf::from("/etc/net.d"));
    assert_eq!(c.eni.eni_config_annotation_def, "example.com/eniconfig");
    assert_eq!(c.eni.eni_config_label_def, "topology.kubernetes.io/zone");
    assert_eq!(c.eni.cluster_name, "prod");
    assert_eq!(
        c.kubernetes.cluster_endpoint.as_deref(),
        Some("https://api.example.com:443")
    );
    assert_eq!(
        c.kubernetes.kubeconfig,
        Some(PathBuf::from("/root/.kube/config"))
    );
    assert_eq!(
        c.kubernetes.node_name.as_deref(),
        Some("ip-10-0-0-1.ec2.internal")
    );
    assert_eq!(c.kubernetes.pod_name.as_deref(), Some("aws-node-abcde"));
    assert_eq!(c.aws.vpc_cni_version, "v1.23.1");
    assert_eq!(
        c.aws.ec2_endpoint.as_deref(),
        Some("https://ec2.us-west-2.amazonaws.com")
    );
    assert_eq!(c.aws.http_timeout, Duration::from_secs(45));
}

#[test]
fn enums_are_read_case_insensitively() {
    let c = ok(&[
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "hashrandom"),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", "INFO"),
        ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "Warn"),
        ("NETWORK_POLICY_ENFORCING_MODE", "Strict"),
        ("POD_SECURITY_GROUP_ENFORCING_MODE", "standard"),
    ]);
    assert_eq!(c.networking.randomize_snat, RandomizeSnat::HashRandom);
    assert_eq!(c.logging.ipamd_log_level, LogLevel::Info);
    assert_eq!(c.logging.plugin_log_level, LogLevel::Warn);
    assert_eq!(
        c.networking.network_policy_mode,
        Some(NetworkPolicyMode::Strict)
    );
    assert_eq!(c.eni.pod_sg_enforcing_mode, PodSgEnforcingMode::Standard);
    let snat = |v| {
        ok(&[("AWS_VPC_K8S_CNI_RANDOMIZESNAT", v)])
            .networking
            .randomize_snat
    };
    assert_eq!(snat("none"), RandomizeSnat::None);
    assert_eq!(snat("PRNG"), RandomizeSnat::Prng);
    let level = |v| {
        ok(&[("AWS_VPC_K8S_CNI_LOGLEVEL", v)])
            .logging
            .ipamd_log_level
    };
    assert_eq!(level("debug"), LogLevel::Debug);
    assert_eq!(level("error"), LogLevel::Error);
    assert_eq!(level("FATAL"), LogLevel::Fatal);
    let np = |v| {
        ok(&[("NETWORK_POLICY_ENFORCING_MODE", v)])
            .networking
            .network_policy_mode
    };
    assert_eq!(np("none"), Some(NetworkPolicyMode::None));
    assert_eq!(np("STANDARD"), Some(NetworkPolicyMode::Standard));
}

#[test]
fn log_destinations_are_read() {
    let c = ok(&[
        ("AWS_VPC_K8S_CNI_LOG_FILE", "stdout"),
        ("AWS_VPC_K8S_PLUGIN_LOG_FILE", "stderr"),
        ("AWS_VPC_K8S_EGRESS_V4_PLUGIN_LOG_FILE", "/tmp/e4.log"),
        ("AWS_VPC_K8S_EGRESS_V6_PLUGIN_LOG_FILE", "stderr"),
    ]);
    assert_eq!(c.logging.ipamd_log_file, LogDestination::Stdout);
    assert_eq!(c.logging.plugin_log_file, LogDestination::Stderr);
    assert_eq!(
        c.logging.egress_v4_plugin_log_file,
        LogDestination::File("/tmp/e4.log".into())
    );
    assert_eq!(c.logging.egress_v6_plugin_log_file, LogDestination::Stderr);
    let c = ok(&[("AWS_VPC_K8S_CNI_LOG_FILE", "stderr")]);
    assert_eq!(c.logging.ipamd_log_file, LogDestination::Stderr);
}

#[test]
fn cidr_lists_are_read_trimmed_and_masked() {
    let c = ok(&[
        (
            "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
            "10.0.0.0/8, 192.168.1.7/24,",
        ),
        ("AWS_EXTERNAL_SERVICE_CIDRS", "172.16.0.0/12"),
    ]);
    assert_eq!(
        c.networking.exclude_snat_cidrs,
        vec![net("10.0.0.0/8"), net("192.168.1.0/24")]
    );
    assert_eq!(
        c.networking.external_service_cidrs,
        vec![net("172.16.0.0/12")]
    );
}

#[test]
fn connmark_accepts_every_go_base_prefix() {
    let mark = |v| ok(&[("AWS_VPC_K8S_CNI_CONNMARK", v)]).networking.connmark;
    assert_eq!(mark("0x80"), 0x80);
    assert_eq!(mark("0X4000"), 0x4000);
    assert_eq!(mark("128"), 128);
    assert_eq!(mark("0o200"), 128);
    assert_eq!(mark("0200"), 128); // bare leading zero is octal in Go
    assert_eq!(mark("0b10000000"), 128);
    assert_eq!(mark("0x_80"), 0x80);
    assert_eq!(mark("1_000"), 1000);
    assert_eq!(mark("+1"), 1);
    assert_eq!(mark("0xffffffff"), u32::MAX);
}

#[test]
fn mtus_and_veth_prefix_are_read() {
    let c = ok(&[("AWS_VPC_ENI_MTU", "1500")]);
    assert_eq!(c.networking.eni_mtu, 1500);
    assert_eq!(c.networking.pod_mtu, 1500, "POD_MTU follows the ENI MTU");
    let c = ok(&[("AWS_VPC_ENI_MTU", "9001"), ("POD_MTU", "576")]);
    assert_eq!(c.networking.pod_mtu, 576);
    let c = ok(&[("AWS_VPC_K8S_CNI_VETHPREFIX", "cali")]);
    assert_eq!(c.networking.veth_prefix, "cali");
}

#[test]
fn introspection_bind_addresses_are_read() {
    let bind = |v| {
        ok(&[("INTROSPECTION_BIND_ADDRESS", v)])
            .observability
            .introspection_bind_address
    };
    assert_eq!(
        bind("0.0.0.0:8080"),
        BindAddress::Tcp {
            host: "0.0.0.0".into(),
            port: 8080
        }
    );
    assert_eq!(
        bind(":61679"),
        BindAddress::Tcp {
            host: String::new(),
            port: 61679
        }
    );
    assert_eq!(
        bind("localhost:1"),
        BindAddress::Tcp {
            host: "localhost".into(),
            port: 1
        }
    );
    let v6 = bind("[::1]:61679");
    assert_eq!(
        v6,
        BindAddress::Tcp {
            host: "::1".into(),
            port: 61679
        }
    );
    assert_eq!(v6.to_string(), "[::1]:61679");
    let unix = bind("unix:/var/run/aws-node/introspect.sock");
    assert_eq!(
        unix,
        BindAddress::Unix("/var/run/aws-node/introspect.sock".into())
    );
    assert_eq!(unix.to_string(), "unix:/var/run/aws-node/introspect.sock");
}

#[test]
fn eni_tags_are_read_and_reserved_keys_dropped_with_a_warning() {
    let c = ok(&[(
        "ADDITIONAL_ENI_TAGS",
        r#"{"team":"net","cost":"a","node.k8s.amazonaws.com/x":"y","cost":"b"}"#,
    )]);
    let want: BTreeMap<String, String> = [("cost", "b"), ("team", "net")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(c.eni.additional_eni_tags, want, "last duplicate wins");
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("node.k8s.amazonaws.com/x"));
}

#[test]
fn ipv6_mode_is_read() {
    let c = ok(&[
        ("ENABLE_IPv6", "true"),
        ("ENABLE_IPv4", "false"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("AWS_VPC_ENI_MTU", "1280"),
    ]);
    assert_eq!(c.ip_family, IpFamily::V6);
    assert_eq!(c.networking.eni_mtu, 1280);
}

#[test]
fn deprecated_variables_only_warn() {
    let c = ok(&[
        ("AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER", "false"),
        ("ENABLE_NFTABLES", "true"),
    ]);
    assert_eq!(c.warnings.len(), 2);
    assert!(c.warnings[0].contains("AWS_VPC_K8S_CNI_CONFIGURE_RPFILTER"));
    assert!(c.warnings[1].contains("ENABLE_NFTABLES"));
}

#[test]
fn exclusion_list_with_external_snat_warns() {
    let c = ok(&[
        ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "true"),
        ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "10.0.0.0/8"),
    ]);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS"));
}
