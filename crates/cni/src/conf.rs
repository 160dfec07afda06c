//! The plugin's input: network configuration on stdin and the `CNI_*` environment.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::CniError;

/// CNI versions this plugin speaks (1.1.0 brings `GC` and `STATUS`).
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// One entry of `cni.dev/valid-attachments` (CNI 1.1 `GC`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

fn default_veth_prefix() -> String {
    "eni".to_string()
}

fn default_mtu() -> String {
    "9001".to_string()
}

/// The fields of `10-aws.conflist`'s `aws-cni` entry (`generateJSON`, `misc/10-aws.conflist`; docs/upstream-compat.md).
#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "vethPrefix", default = "default_veth_prefix")]
    pub veth_prefix: String,
    /// Upstream writes the MTU as a string.
    #[serde(default = "default_mtu")]
    pub mtu: String,
    #[serde(rename = "podSGEnforcingMode", default)]
    pub pod_sg_enforcing_mode: String,
    #[serde(rename = "pluginLogFile", default)]
    pub plugin_log_file: String,
    #[serde(rename = "pluginLogLevel", default)]
    pub plugin_log_level: String,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    /// Ours, not upstream's: put the real MACs in the result instead of upstream's encoding
    /// (route table in the container interface's `mac`, a `dummy` interface). Runtimes that
    /// validate MACs (podman) need it; kubelet's runtimes do not.
    #[serde(rename = "realMacsInResult", default)]
    pub real_macs_in_result: bool,
    /// Ours, not upstream's: `"ipv6"` in IPv6 clusters (the entrypoint writes it in IPv6 mode
    /// only), so that ADD prepares the IPv6 veth half while ipamd picks the address. Absent
    /// (upstream's template) or anything else: IPv4; ipamd's reply decides in the end.
    #[serde(rename = "podIPFamily", default)]
    pub pod_ip_family: String,
    /// `GC` only: the attachments the runtime still knows.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
    /// What the runtime passes for the conflist's `capabilities` (upstream reads the pod's
    /// annotations from it).
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: RuntimeConfig,
}

/// The pod annotation that opts a pod into one interface per managed network card, and
/// its one value that does (upstream `multiNICPodAnnotation`, `multiNICAttachment`).
pub const MULTI_NIC_ANNOTATION: &str = "k8s.amazonaws.com/nicConfig";
pub const MULTI_NIC_ATTACHMENT: &str = "multi-nic-attachment";

/// `runtimeConfig`: only the pod's annotations are read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    /// The pod's annotations (containerd's `io.kubernetes.cri.pod-annotations` capability).
    /// Values that are not strings are kept but never match (upstream's `map[string]string`
    /// would refuse the whole configuration).
    #[serde(rename = "io.kubernetes.cri.pod-annotations", default)]
    pub pod_annotations: BTreeMap<String, Value>,
}

impl NetConf {
    /// Parses and validates stdin.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let conf: NetConf = serde_json::from_slice(bytes).map_err(|e| {
            CniError::decode(format!(
                "network configuration is not valid JSON for aws-cni: {e}"
            ))
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::incompatible(
                &conf.cni_version,
                &SUPPORTED_VERSIONS,
            ));
        }
        if conf.veth_prefix.is_empty()
            || conf.veth_prefix.len() > 4
            || ["eth", "lo", "vlan"].contains(&conf.veth_prefix.as_str())
        {
            return Err(CniError::invalid_config(format!(
                "vethPrefix {:?} must be 1-4 characters and not eth, lo or vlan",
                conf.veth_prefix
            )));
        }
        Ok(conf)
    }

    /// Whether the configured version is at least `major.minor` (CHECK needs 0.4.0).
    pub fn version_at_least(&self, major: u32, minor: u32) -> bool {
        let mut parts = self
            .cni_version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (ma, mi) >= (major, minor)
    }

    /// The family ADD prepares the pod's veth for before ipamd answers.
    pub fn pod_ip_family(&self) -> net::netlink::Family {
        if self.pod_ip_family.eq_ignore_ascii_case("ipv6") {
            net::netlink::Family::V6
        } else {
            net::netlink::Family::V4
        }
    }

    /// Whether the pod asks for one interface per managed network card: its annotation
    /// `k8s.amazonaws.com/nicConfig` is `multi-nic-attachment` (upstream `cmdAdd`; any other
    /// value means one interface).
    pub fn requires_multi_nic_attachment(&self) -> bool {
        self.runtime_config
            .pod_annotations
            .get(MULTI_NIC_ANNOTATION)
            .and_then(Value::as_str)
            == Some(MULTI_NIC_ATTACHMENT)
    }

    /// MTU as a number (invalid or out of range → 9001, as upstream's `GetPodMTU`).
    pub fn mtu(&self) -> u32 {
        self.mtu
            .parse()
            .ok()
            .filter(|m| (576..=9001).contains(m))
            .unwrap_or(9001)
    }
}

/// The `CNI_*` environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct CniEnv {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// `CNI_PATH`: where delegated plugins (egress-cni's IPAM) are looked up, `:`-separated.
    pub path: String,
    /// `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, ... from `CNI_ARGS` (podman sends only some).
    pub args: BTreeMap<String, String>,
}

impl CniEnv {
    /// From an environment lookup.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let args = get("CNI_ARGS")
            .unwrap_or_default()
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self {
            command: get("CNI_COMMAND").unwrap_or_default(),
            container_id: get("CNI_CONTAINERID").unwrap_or_default(),
            netns: get("CNI_NETNS").unwrap_or_default(),
            ifname: get("CNI_IFNAME").unwrap_or_default(),
            path: get("CNI_PATH").unwrap_or_default(),
            args,
        }
    }

    pub fn arg(&self, key: &str) -> &str {
        self.args.get(key).map(String::as_str).unwrap_or("")
    }

    /// Fails with a CNI "invalid environment" error when `name` is empty.
    pub fn require(&self, name: &str, value: &str) -> Result<(), CniError> {
        if value.is_empty() {
            return Err(CniError::invalid_env(format!("{name} is required")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni"}"#).unwrap();
        assert_eq!((c.veth_prefix.as_str(), c.mtu()), ("eni", 9001));
        let c =
            NetConf::parse(br#"{"cniVersion":"0.4.0","vethPrefix":"abc","mtu":"1500"}"#).unwrap();
        assert_eq!((c.veth_prefix.as_str(), c.mtu()), ("abc", 1500));
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"0.4.0","mtu":"lots"}"#)
                .unwrap()
                .mtu(),
            9001
        );
        assert_eq!(NetConf::parse(b"{not json").unwrap_err().code, 6);
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"9.9.9"}"#)
                .unwrap_err()
                .code,
            1
        );
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"1.0.0","vethPrefix":"eth"}"#)
                .unwrap_err()
                .code,
            7
        );
        let env = CniEnv::from_lookup(|k| match k {
            "CNI_ARGS" => {
                Some("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0".into())
            }
            "CNI_COMMAND" => Some("ADD".into()),
            _ => None,
        });
        assert_eq!(env.arg("K8S_POD_NAME"), "web-0");
        assert_eq!(env.arg("K8S_POD_UID"), "");
        assert_eq!(env.require("CNI_NETNS", &env.netns).unwrap_err().code, 4);
    }

    #[test]
    fn multi_nic_opt_in_is_the_pods_annotation_with_its_one_value() {
        let parse = |runtime: &str| {
            NetConf::parse(
                format!(r#"{{"cniVersion":"1.0.0","name":"aws-cni"{runtime}}}"#).as_bytes(),
            )
            .unwrap()
            .requires_multi_nic_attachment()
        };
        let annotated = |value: &str| {
            format!(
                r#","runtimeConfig":{{"io.kubernetes.cri.pod-annotations":{{"k8s.amazonaws.com/nicConfig":{value}}}}}"#
            )
        };
        assert!(parse(&annotated(r#""multi-nic-attachment""#)));
        assert!(!parse(""), "no runtimeConfig");
        assert!(!parse(r#","runtimeConfig":{"portMappings":[]}"#));
        assert!(!parse(&annotated(r#""single""#)));
        assert!(!parse(&annotated(r#""Multi-NIC-Attachment""#)));
        assert!(!parse(&annotated("true")), "not a string");
        let other_key = r#","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"nicConfig":"multi-nic-attachment"}}"#;
        assert!(!parse(other_key));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), args in ".{0,80}") {
            let _ = NetConf::parse(&bytes);
            let env = CniEnv::from_lookup(|k| (k == "CNI_ARGS").then(|| args.clone()));
            let _ = env.arg("K8S_POD_NAME");
        }
    }
}
