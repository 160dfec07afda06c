//! Implication rules, planner conversions, per-card paths, introspection views, and
//! upstream's TestIsConfigValid matrix.

mod common;

use std::path::PathBuf;

use common::ok;
use config::{CardFacts, Config, PolicyError, PrefixDelegation};

#[test]
fn imds_only_mode_disables_provisioning_and_leak_cleanup() {
    let c = ok(&[("ENABLE_IMDS_ONLY_MODE", "true")]);
    assert!(c.provisioning_disabled());
    assert!(c.leaked_eni_cleanup_disabled());
    assert!(
        !c.eni.disable_network_resource_provisioning,
        "raw flag kept"
    );
}

#[test]
fn ipv6_disables_leak_cleanup_only() {
    let c = ok(&[
        ("ENABLE_IPv6", "true"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
    ]);
    assert!(c.is_ipv6() && !c.is_ipv4());
    assert!(c.leaked_eni_cleanup_disabled());
    assert!(!c.provisioning_disabled());
}

#[test]
fn disabled_provisioning_disables_leak_cleanup() {
    let c = ok(&[("DISABLE_NETWORK_RESOURCE_PROVISIONING", "true")]);
    assert!(c.provisioning_disabled());
    assert!(c.leaked_eni_cleanup_disabled());
}

#[test]
fn leak_cleanup_runs_by_default_and_obeys_its_flag() {
    let c = ok(&[]);
    assert!(c.is_ipv4());
    assert!(!c.provisioning_disabled());
    assert!(!c.leaked_eni_cleanup_disabled());
    assert!(ok(&[("DISABLE_LEAKED_ENI_CLEANUP", "true")]).leaked_eni_cleanup_disabled());
}

#[test]
fn ip_targets_defined_when_warm_or_minimum_ip_is_non_zero() {
    assert!(!ok(&[]).ip_targets_defined());
    assert!(!ok(&[("WARM_ENI_TARGET", "3")]).ip_targets_defined());
    assert!(ok(&[("WARM_IP_TARGET", "1")]).ip_targets_defined());
    assert!(ok(&[("MINIMUM_IP_TARGET", "1")]).ip_targets_defined());
}

#[test]
fn api_server_is_required_for_pod_eni_custom_networking_or_annotation() {
    assert!(!ok(&[]).requires_api_server_at_startup());
    for var in [
        "ENABLE_POD_ENI",
        "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
        "ANNOTATE_POD_IP",
    ] {
        assert!(
            ok(&[(var, "true")]).requires_api_server_at_startup(),
            "{var}"
        );
    }
}

#[test]
fn max_enis_uses_max_eni_only_below_the_instance_limit() {
    assert_eq!(ok(&[]).max_enis(4), 4);
    assert_eq!(ok(&[("MAX_ENI", "-1")]).max_enis(4), 4);
    assert_eq!(ok(&[("MAX_ENI", "0")]).max_enis(4), 4);
    assert_eq!(ok(&[("MAX_ENI", "1")]).max_enis(4), 1);
    assert_eq!(ok(&[("MAX_ENI", "3")]).max_enis(4), 3);
    assert_eq!(ok(&[("MAX_ENI", "4")]).max_enis(4), 4);
    assert_eq!(ok(&[("MAX_ENI", "10")]).max_enis(4), 4);
}

#[test]
fn node_capacity_applies_max_eni_and_reserves_the_trunk_slot() {
    let card = CardFacts {
        network_card: 0,
        instance_eni_limit: 8,
        ipv4_per_eni: 30,
        unmanaged_enis: 1,
        trunking_compatible: true,
        has_trunk: false,
    };
    let plain = ok(&[("MAX_ENI", "5")]).node_capacity(&card);
    assert_eq!(plain.max_enis, 5);
    assert_eq!(plain.ipv4_per_eni, 30);
    assert_eq!(plain.unmanaged_enis, 1);
    assert!(!plain.reserve_trunk_slot);
    let sgp = ok(&[("ENABLE_POD_ENI", "true")]);
    assert!(sgp.node_capacity(&card).reserve_trunk_slot);
    assert_eq!(sgp.node_capacity(&card).max_enis, 8);
    for other in [
        CardFacts {
            has_trunk: true,
            ..card
        },
        CardFacts {
            network_card: 1,
            ..card
        },
        CardFacts {
            trunking_compatible: false,
            ..card
        },
    ] {
        assert!(!sgp.node_capacity(&other).reserve_trunk_slot, "{other:?}");
    }
}

#[test]
fn pool_policy_carries_targets_and_effective_prefix_delegation() {
    let c = ok(&[
        ("WARM_ENI_TARGET", "2"),
        ("WARM_IP_TARGET", "3"),
        ("MINIMUM_IP_TARGET", "4"),
        ("WARM_PREFIX_TARGET", "5"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
    ]);
    let p = c.pool_policy(110, true).unwrap();
    assert_eq!(p.warm_eni_target, 2);
    assert_eq!(p.warm_ip_target, 3);
    assert_eq!(p.minimum_ip_target, 4);
    assert_eq!(p.warm_prefix_target, 5);
    assert!(p.prefix_delegation);
    assert!(p.custom_networking);
    assert_eq!(p.max_pods, 110);
    // Non-Nitro IPv4: secondary-IP mode, with a warning.
    let fallback = c.pool_policy(58, false).unwrap();
    assert!(!fallback.prefix_delegation);
    assert_eq!(fallback.max_pods, 58);
    let pd = c.prefix_delegation(false).unwrap();
    assert_eq!(pd, PrefixDelegation::FallbackToSecondaryIps);
    assert!(pd.warning().unwrap().contains("falling back"));
    assert_eq!(c.prefix_delegation(true).unwrap().warning(), None);
    assert_eq!(
        ok(&[]).prefix_delegation(false).unwrap(),
        PrefixDelegation::Disabled
    );
    assert!(!ok(&[]).pool_policy(110, true).unwrap().prefix_delegation);
}

#[test]
fn pool_policy_fails_for_ipv6_without_prefix_support() {
    let c = ok(&[
        ("ENABLE_IPv6", "true"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
    ]);
    assert_eq!(
        c.pool_policy(110, false),
        Err(PolicyError::PrefixDelegationUnsupportedInIpv6)
    );
    assert!(c.pool_policy(110, true).unwrap().prefix_delegation);
}

#[test]
fn backing_store_path_per_network_card() {
    let c = ok(&[]);
    assert_eq!(
        c.backing_store_path(0),
        PathBuf::from("/var/run/aws-node/ipam.json")
    );
    assert_eq!(
        c.backing_store_path(1),
        PathBuf::from("/var/run/aws-node/ipam-nic-1.json")
    );
    assert_eq!(
        c.backing_store_path(12),
        PathBuf::from("/var/run/aws-node/ipam-nic-12.json")
    );
    let c = ok(&[("AWS_VPC_K8S_CNI_BACKING_STORE", "/data/store")]);
    assert_eq!(c.backing_store_path(0), PathBuf::from("/data/store"));
    assert_eq!(
        c.backing_store_path(2),
        PathBuf::from("/data/store-nic-2.json")
    );
}

/// One row of the validity matrix: name, environment, instance supports PD, expected.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, bool, bool);

/// Upstream `TestIsConfigValid`: (env, instance supports PD) → valid?
#[test]
fn upstream_is_config_valid_matrix() {
    let v4 = ("ENABLE_IPv4", "true");
    let v4_off = ("ENABLE_IPv4", "false");
    let v6 = ("ENABLE_IPv6", "true");
    let v6_off = ("ENABLE_IPv6", "false");
    let pd = ("ENABLE_PREFIX_DELEGATION", "true");
    let prefix_target = ("WARM_PREFIX_TARGET", "1");
    let sgp = ("ENABLE_POD_ENI", "true");
    let cases: Vec<Case> = vec![
        ("v4 non-PD", vec![v4, v6_off], true, true),
        ("v4 PD", vec![v4, v6_off, pd, prefix_target], true, true),
        ("v6 PD", vec![v4_off, v6, pd], true, true),
        ("v6 non-PD", vec![v4_off, v6], true, false),
        ("v4 and v6", vec![v4, v6, pd], true, false),
        ("v6 PD on non-Nitro", vec![v4_off, v6, pd], false, false),
        ("SGP with v6", vec![v4_off, v6, pd, sgp], true, true),
        ("SGP with v4", vec![v4, v6_off, sgp], true, true),
        // Ours on top: v4 PD on non-Nitro falls back instead of failing.
        (
            "v4 PD on non-Nitro",
            vec![v4, v6_off, pd, prefix_target],
            false,
            true,
        ),
    ];
    for (name, vars, pd_supported, want_valid) in cases {
        let valid = Config::from_vars(vars.iter().copied())
            .ok()
            .and_then(|c| c.pool_policy(110, pd_supported).ok())
            .is_some();
        assert_eq!(valid, want_valid, "{name}");
    }
}

#[test]
fn unset_enable_ipv4_follows_enable_ipv6() {
    assert!(ok(&[]).is_ipv4());
    assert!(ok(&[("ENABLE_IPv6", "false")]).is_ipv4());
    assert!(
        ok(&[
            ("ENABLE_IPv6", "true"),
            ("ENABLE_PREFIX_DELEGATION", "true")
        ])
        .is_ipv6()
    );
}

#[test]
fn introspection_views_use_upstream_field_names() {
    let c = ok(&[
        ("WARM_IP_TARGET", "2"),
        ("AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS", "10.0.0.0/8"),
        ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "hashrandom"),
    ]);
    let ipamd = serde_json::to_value(c.ipamd_env_settings()).unwrap();
    assert_eq!(
        ipamd,
        serde_json::json!({"WARM_IP_TARGET":2,"WARM_ENI_TARGET":1,
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG":false,
            "AWS_MANAGE_ENIS_NON_SCHEDULABLE":false,"ENABLE_SUBNET_DISCOVERY":true})
    );
    let net = serde_json::to_value(c.network_utils_env_settings()).unwrap();
    assert_eq!(
        net,
        serde_json::json!({"AWS_VPC_K8S_CNI_CONNMARK":128,
            "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS":["10.0.0.0/8"],
            "AWS_VPC_K8S_CNI_EXTERNALSNAT":false,"AWS_EXTERNAL_SERVICE_CIDRS":null,
            "AWS_VPC_ENI_MTU":9001,"AWS_VPC_K8S_CNI_VETHPREFIX":"eni",
            "AWS_VPC_CNI_NODE_PORT_SUPPORT":true,"AWS_VPC_K8S_CNI_RANDOMIZESNAT":1})
    );
}
