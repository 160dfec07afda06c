//! `10-aws.conflist` rendered for each mode an operator runs (default, prefix delegation,
//! custom networking, external SNAT, bandwidth plugin, pods without IPv6, IPv6 cluster) is
//! JSON naming, in upstream's order, plugin types that exist as real binaries, and every one
//! of them accepts the conflist's cniVersion.

use std::process::Command;

use config::Config;
use entrypoint::conflist::{ConflistParams, render};
use integration_tests::bins::core_plugin;
use integration_tests::workspace_bin;
use serde_json::Value;

fn render_mode(vars: &[(&str, &str)], node_ip: Option<&str>) -> Value {
    let cfg = Config::from_vars(vars.iter().copied())
        .unwrap_or_else(|e| panic!("mode {vars:?} is a valid configuration: {e}"));
    let text = render(&ConflistParams::from_config(
        &cfg,
        node_ip.map(|s| s.parse().unwrap()),
    ));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{vars:?}: {e}\n{text}"))
}

fn plugin_binary(kind: &str) -> std::path::PathBuf {
    match kind {
        "aws-cni" | "egress-cni" => workspace_bin(kind),
        other => core_plugin(other),
    }
}

/// Runs the binary's VERSION command; returns its supported versions.
fn supported_versions(kind: &str) -> Vec<String> {
    let out = Command::new(plugin_binary(kind))
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .unwrap();
    assert!(out.status.success(), "{kind} VERSION: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

const V4: (&str, &str) = ("ENABLE_IPv4", "true");

/// (name, environment, egress node IP, expected plugin types)
type Mode = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Option<&'static str>,
    Vec<&'static str>,
);

#[test]
fn every_mode_renders_a_chain_of_real_plugins() {
    let modes: Vec<Mode> = vec![
        (
            "default",
            vec![V4],
            None,
            vec!["aws-cni", "egress-cni", "portmap"],
        ),
        (
            "prefix delegation",
            vec![
                V4,
                ("ENABLE_PREFIX_DELEGATION", "true"),
                ("WARM_PREFIX_TARGET", "1"),
            ],
            None,
            vec!["aws-cni", "egress-cni", "portmap"],
        ),
        (
            "custom networking",
            vec![
                V4,
                ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
                ("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone"),
            ],
            None,
            vec!["aws-cni", "egress-cni", "portmap"],
        ),
        (
            "external SNAT",
            vec![
                V4,
                ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "true"),
                ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "hashrandom"),
            ],
            None,
            vec!["aws-cni", "egress-cni", "portmap"],
        ),
        (
            "bandwidth plugin",
            vec![V4, ("ENABLE_BANDWIDTH_PLUGIN", "true")],
            None,
            vec!["aws-cni", "egress-cni", "portmap", "bandwidth"],
        ),
        (
            "bandwidth plugin and pods without IPv6",
            vec![
                V4,
                ("ENABLE_BANDWIDTH_PLUGIN", "true"),
                ("DISABLE_POD_V6", "true"),
            ],
            None,
            vec!["aws-cni", "egress-cni", "portmap", "bandwidth", "tuning"],
        ),
        (
            "IPv6 cluster",
            vec![
                ("ENABLE_IPv6", "true"),
                ("ENABLE_PREFIX_DELEGATION", "true"),
                ("WARM_PREFIX_TARGET", "1"),
            ],
            Some("10.0.0.10"),
            vec!["aws-cni", "egress-cni", "portmap"],
        ),
    ];
    for (name, vars, node_ip, want) in modes {
        let doc = render_mode(&vars, node_ip);
        let version = doc["cniVersion"].as_str().unwrap().to_owned();
        let kinds: Vec<String> = doc["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(kinds, want, "{name}");
        for kind in &kinds {
            let versions = supported_versions(kind);
            assert!(
                versions.contains(&version),
                "{name}: {kind} does not accept cniVersion {version}: {versions:?}"
            );
        }
        let egress = &doc["plugins"][1];
        let expect_enabled = if name == "IPv6 cluster" {
            "true"
        } else {
            "false"
        };
        assert_eq!(egress["enabled"], expect_enabled, "{name}");
        if name == "external SNAT" {
            assert_eq!(egress["randomizeSNAT"], "hashrandom");
        }
    }
}
