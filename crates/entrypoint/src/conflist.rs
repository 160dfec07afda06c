//! `10-aws.conflist` (upstream `misc/10-aws.conflist` rendered by `generateJSON`): what the
//! entrypoint writes into the host's CNI config directory once ipamd is healthy. Pure:
//! [`ConflistParams`] in, JSON text out.
//!
//! The built-in template is rendered from typed structs, so fields come out in upstream's
//! order with 2-space indentation. A custom template (the chart's `cniConfig` ConfigMap mounted
//! at `/app/10-aws.conflist`) gets upstream's `__PLACEHOLDER__` substitution, see
//! [`render_template`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use config::{Config, IpFamily};
use serde::Serialize;
use serde_json::Value;

/// The file name kubelet finds in the CNI config directory.
pub const CONFLIST_NAME: &str = "10-aws.conflist";
/// `cniVersion` of the conflist (upstream's template).
pub const CNI_VERSION: &str = "0.4.0";
/// Network name (also egress-cni's chain-name input).
pub const NETWORK_NAME: &str = "aws-cni";

/// Settings of the egress-cni entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressParams {
    /// Rendered as `"enabled": "true"` / `"false"`.
    pub enabled: bool,
    /// `nodeIP`: the node's address of the egress family (empty when unknown).
    pub node_ip: String,
    /// The cluster's family: egress is the *other* family.
    pub cluster_ipv6: bool,
    /// `pluginLogFile` of egress-cni.
    pub log_file: String,
}

impl EgressParams {
    /// host-local range of the egress addresses.
    pub fn ipam_subnet(&self) -> &'static str {
        if self.cluster_ipv6 {
            "169.254.172.0/22"
        } else {
            "fd00::ac:00/118"
        }
    }

    /// The egress default route.
    pub fn ipam_dst(&self) -> &'static str {
        if self.cluster_ipv6 {
            "0.0.0.0/0"
        } else {
            "::/0"
        }
    }

    /// host-local's data directory.
    pub fn ipam_data_dir(&self) -> &'static str {
        if self.cluster_ipv6 {
            "/run/cni/v6pd/egress-v4-ipam"
        } else {
            "/run/cni/v4pd/egress-v6-ipam"
        }
    }
}

/// Everything the conflist depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflistParams {
    pub veth_prefix: String,
    pub mtu: u32,
    pub pod_sg_enforcing_mode: String,
    pub plugin_log_file: String,
    pub plugin_log_level: String,
    pub randomize_snat: String,
    pub egress: EgressParams,
    /// `ENABLE_BANDWIDTH_PLUGIN`: chain `bandwidth`.
    pub bandwidth: bool,
    /// `DISABLE_POD_V6`: chain `tuning` disabling IPv6 in pods.
    pub disable_pod_v6: bool,
}

/// Where the egress node IP comes from, if the configuration needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeIpNeed {
    /// Egress is off: no lookup.
    None,
    /// IPv6 cluster: IMDS `local-ipv4`, rendered as `nodeIP` whether `ENABLE_V4_EGRESS` is on
    /// or not; failing to read it is fatal (upstream `generateJSON`).
    LocalIpv4,
    /// IPv4 cluster with `ENABLE_V6_EGRESS`: IMDS `ipv6`; failing to read it turns egress off.
    Ipv6,
}

/// Which node address the egress entry needs.
pub fn node_ip_need(cfg: &Config) -> NodeIpNeed {
    match cfg.ip_family {
        IpFamily::V6 => NodeIpNeed::LocalIpv4,
        IpFamily::V4 if cfg.chain.v6_egress => NodeIpNeed::Ipv6,
        IpFamily::V4 => NodeIpNeed::None,
    }
}

/// Whether egress-cni is to be enabled: `ENABLE_V4_EGRESS` (default true) in IPv6 clusters,
/// `ENABLE_V6_EGRESS` (default false) in IPv4 clusters.
pub fn egress_wanted(cfg: &Config) -> bool {
    match cfg.ip_family {
        IpFamily::V6 => cfg.chain.v4_egress,
        IpFamily::V4 => cfg.chain.v6_egress,
    }
}

impl ConflistParams {
    /// From the validated configuration and the node IP looked up for [`node_ip_need`]
    /// (`None` when not needed or not found: egress is then disabled).
    pub fn from_config(cfg: &Config, egress_node_ip: Option<IpAddr>) -> Self {
        let cluster_ipv6 = cfg.ip_family == IpFamily::V6;
        let wanted = egress_wanted(cfg);
        let log = &cfg.logging;
        let egress_log = if cluster_ipv6 {
            &log.egress_v4_plugin_log_file
        } else {
            &log.egress_v6_plugin_log_file
        };
        Self {
            veth_prefix: cfg.networking.veth_prefix.clone(),
            mtu: cfg.networking.pod_mtu,
            pod_sg_enforcing_mode: cfg.eni.pod_sg_enforcing_mode.as_str().to_owned(),
            plugin_log_file: log.plugin_log_file.to_config_string(),
            plugin_log_level: log.plugin_log_level.as_str().to_owned(),
            randomize_snat: cfg.networking.randomize_snat.as_str().to_owned(),
            egress: EgressParams {
                enabled: wanted && egress_node_ip.is_some(),
                node_ip: egress_node_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                cluster_ipv6,
                log_file: egress_log.to_config_string(),
            },
            bandwidth: cfg.chain.bandwidth_plugin,
            disable_pod_v6: cfg.chain.disable_pod_v6,
        }
    }

    /// Upstream's placeholder values, for custom templates.
    pub fn placeholders(&self) -> Vec<(&'static str, String)> {
        vec![
            ("__VETHPREFIX__", self.veth_prefix.clone()),
            ("__MTU__", self.mtu.to_string()),
            ("__PODSGENFORCINGMODE__", self.pod_sg_enforcing_mode.clone()),
            ("__PLUGINLOGFILE__", self.plugin_log_file.clone()),
            ("__PLUGINLOGLEVEL__", self.plugin_log_level.clone()),
            ("__RANDOMIZESNAT__", self.randomize_snat.clone()),
            ("__EGRESSPLUGINENABLED__", self.egress.enabled.to_string()),
            (
                "__EGRESSPLUGINIPAMSUBNET__",
                self.egress.ipam_subnet().to_owned(),
            ),
            ("__EGRESSPLUGINIPAMDST__", self.egress.ipam_dst().to_owned()),
            (
                "__EGRESSPLUGINIPAMDATADIR__",
                self.egress.ipam_data_dir().to_owned(),
            ),
            ("__EGRESSPLUGINLOGFILE__", self.egress.log_file.clone()),
            ("__NODEIP__", self.egress.node_ip.clone()),
        ]
    }
}

#[derive(Serialize)]
struct Conflist<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'static str,
    name: &'static str,
    #[serde(rename = "disableCheck")]
    disable_check: bool,
    plugins: Vec<Plugin<'a>>,
}

/// One entry of the chain, serialised with its fields in upstream's order.
#[derive(Serialize)]
#[serde(untagged)]
enum Plugin<'a> {
    Aws(AwsCni<'a>),
    Egress(Egress<'a>),
    Portmap(Portmap),
    Bandwidth(Bandwidth),
    Tuning(Tuning),
}

#[derive(Serialize)]
struct Bandwidth {
    #[serde(rename = "type")]
    kind: &'static str,
    capabilities: BTreeMap<&'static str, bool>,
}

#[derive(Serialize)]
struct Tuning {
    #[serde(rename = "type")]
    kind: &'static str,
    sysctl: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct AwsCni<'a> {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "vethPrefix")]
    veth_prefix: &'a str,
    mtu: String,
    #[serde(rename = "podSGEnforcingMode")]
    pod_sg_enforcing_mode: &'a str,
    #[serde(rename = "pluginLogFile")]
    plugin_log_file: &'a str,
    #[serde(rename = "pluginLogLevel")]
    plugin_log_level: &'a str,
    /// Ours: `"ipv6"` in IPv6 clusters only (IPv4 conflists stay upstream's), so that aws-cni
    /// prepares the IPv6 veth while ipamd picks the address (`cni::conf::NetConf`).
    #[serde(rename = "podIPFamily", skip_serializing_if = "Option::is_none")]
    pod_ip_family: Option<&'static str>,
    capabilities: BTreeMap<&'static str, bool>,
}

#[derive(Serialize)]
struct HostLocal {
    #[serde(rename = "type")]
    kind: &'static str,
    ranges: [[BTreeMap<&'static str, &'static str>; 1]; 1],
    routes: [BTreeMap<&'static str, &'static str>; 1],
    #[serde(rename = "dataDir")]
    data_dir: &'static str,
}

#[derive(Serialize)]
struct Egress<'a> {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    mtu: String,
    enabled: String,
    #[serde(rename = "randomizeSNAT")]
    randomize_snat: &'a str,
    #[serde(rename = "nodeIP")]
    node_ip: &'a str,
    ipam: HostLocal,
    #[serde(rename = "pluginLogFile")]
    plugin_log_file: &'a str,
    #[serde(rename = "pluginLogLevel")]
    plugin_log_level: &'a str,
}

#[derive(Serialize)]
struct Portmap {
    #[serde(rename = "type")]
    kind: &'static str,
    capabilities: BTreeMap<&'static str, bool>,
    snat: bool,
}

/// The plugins appended after portmap: `bandwidth`, then `tuning` (spec order).
fn extra_plugins(p: &ConflistParams) -> Vec<Plugin<'static>> {
    let mut out = Vec::new();
    if p.bandwidth {
        out.push(Plugin::Bandwidth(Bandwidth {
            kind: "bandwidth",
            capabilities: BTreeMap::from([("bandwidth", true)]),
        }));
    }
    if p.disable_pod_v6 {
        out.push(Plugin::Tuning(Tuning {
            kind: "tuning",
            sysctl: BTreeMap::from([
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"),
                ("net.ipv6.conf.lo.disable_ipv6", "1"),
            ]),
        }));
    }
    out
}

/// Renders the built-in template.
pub fn render(p: &ConflistParams) -> String {
    let aws = AwsCni {
        name: "aws-cni",
        kind: "aws-cni",
        veth_prefix: &p.veth_prefix,
        mtu: p.mtu.to_string(),
        pod_sg_enforcing_mode: &p.pod_sg_enforcing_mode,
        plugin_log_file: &p.plugin_log_file,
        plugin_log_level: &p.plugin_log_level,
        pod_ip_family: p.egress.cluster_ipv6.then_some("ipv6"),
        capabilities: BTreeMap::from([("io.kubernetes.cri.pod-annotations", true)]),
    };
    let egress = Egress {
        name: "egress-cni",
        kind: "egress-cni",
        mtu: p.mtu.to_string(),
        enabled: p.egress.enabled.to_string(),
        randomize_snat: &p.randomize_snat,
        node_ip: &p.egress.node_ip,
        ipam: HostLocal {
            kind: "host-local",
            ranges: [[BTreeMap::from([("subnet", p.egress.ipam_subnet())])]],
            routes: [BTreeMap::from([("dst", p.egress.ipam_dst())])],
            data_dir: p.egress.ipam_data_dir(),
        },
        plugin_log_file: &p.egress.log_file,
        plugin_log_level: &p.plugin_log_level,
    };
    let portmap = Portmap {
        kind: "portmap",
        capabilities: BTreeMap::from([("portMappings", true)]),
        snat: true,
    };
    let mut plugins = vec![
        Plugin::Aws(aws),
        Plugin::Egress(egress),
        Plugin::Portmap(portmap),
    ];
    plugins.extend(extra_plugins(p));
    let list = Conflist {
        cni_version: CNI_VERSION,
        name: NETWORK_NAME,
        disable_check: true,
        plugins,
    };
    let mut text = serde_json::to_string_pretty(&list).unwrap_or_default();
    text.push('\n');
    text
}

/// A custom template that does not render to a usable conflist.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the rendered conflist is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the rendered conflist has no \"plugins\" array")]
    NoPlugins,
}

/// Renders a custom template as upstream does: every `__PLACEHOLDER__` replaced, the result
/// must be JSON with a `plugins` array; `bandwidth`/`tuning` are appended when enabled.
pub fn render_template(template: &str, p: &ConflistParams) -> Result<String, TemplateError> {
    let mut text = template.to_owned();
    for (placeholder, value) in p.placeholders() {
        text = text.replace(placeholder, &value);
    }
    let mut doc: Value = serde_json::from_str(&text)?;
    let extras: Vec<Value> = extra_plugins(p)
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let plugins = doc
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .ok_or(TemplateError::NoPlugins)?;
    if extras.is_empty() {
        return Ok(text);
    }
    plugins.extend(extras);
    let mut out = serde_json::to_string_pretty(&doc)?;
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(vars: &[(&str, &str)], node_ip: Option<&str>) -> ConflistParams {
        let cfg = Config::from_vars(vars.iter().copied()).unwrap();
        ConflistParams::from_config(&cfg, node_ip.map(|s| s.parse().unwrap()))
    }

    fn types(doc: &Value) -> Vec<&str> {
        doc["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn default_ipv4_cluster() {
        let text = render(&params(&[("ENABLE_IPv4", "true")], None));
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["cniVersion"], "0.4.0");
        assert_eq!(doc["name"], "aws-cni");
        assert_eq!(doc["disableCheck"], true);
        assert_eq!(types(&doc), ["aws-cni", "egress-cni", "portmap"]);
        let aws = &doc["plugins"][0];
        assert_eq!(aws["name"], "aws-cni");
        assert_eq!(aws["vethPrefix"], "eni");
        assert_eq!(aws["mtu"], "9001");
        assert_eq!(aws["podSGEnforcingMode"], "strict");
        assert_eq!(aws["pluginLogFile"], "/var/log/aws-routed-eni/plugin.log");
        assert_eq!(aws["pluginLogLevel"], "Debug");
        assert_eq!(
            aws["capabilities"]["io.kubernetes.cri.pod-annotations"],
            true
        );
        assert_eq!(
            aws.get("podIPFamily"),
            None,
            "IPv4 conflists stay upstream's"
        );
        let eg = &doc["plugins"][1];
        assert_eq!(eg["enabled"], "false");
        assert_eq!(eg["mtu"], "9001");
        assert_eq!(eg["randomizeSNAT"], "prng");
        assert_eq!(eg["nodeIP"], "");
        assert_eq!(eg["ipam"]["type"], "host-local");
        assert_eq!(eg["ipam"]["ranges"][0][0]["subnet"], "fd00::ac:00/118");
        assert_eq!(eg["ipam"]["routes"][0]["dst"], "::/0");
        assert_eq!(eg["ipam"]["dataDir"], "/run/cni/v4pd/egress-v6-ipam");
        assert_eq!(
            eg["pluginLogFile"],
            "/var/log/aws-routed-eni/egress-v6-plugin.log"
        );
        let pm = &doc["plugins"][2];
        assert_eq!(
            (
                pm["snat"].clone(),
                pm["capabilities"]["portMappings"].clone()
            ),
            (true.into(), true.into())
        );
        // Upstream's field order and 2-space indentation.
        assert!(text.starts_with("{\n  \"cniVersion\": \"0.4.0\",\n  \"name\": \"aws-cni\",\n  \"disableCheck\": true,\n  \"plugins\": ["), "{text}");
        let a = text.find("\"vethPrefix\"").unwrap();
        let b = text.find("\"podSGEnforcingMode\"").unwrap();
        assert!(a < b);
    }

    #[test]
    fn env_knobs_reach_the_conflist() {
        let p = params(
            &[
                ("ENABLE_IPv4", "true"),
                ("AWS_VPC_K8S_CNI_VETHPREFIX", "abc"),
                ("AWS_VPC_ENI_MTU", "1500"),
                ("POD_SECURITY_GROUP_ENFORCING_MODE", "standard"),
                ("ENABLE_POD_ENI", "true"),
                ("AWS_VPC_K8S_PLUGIN_LOG_FILE", "stderr"),
                ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "info"),
                ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "none"),
                ("ENABLE_BANDWIDTH_PLUGIN", "true"),
                ("DISABLE_POD_V6", "true"),
            ],
            None,
        );
        let doc: Value = serde_json::from_str(&render(&p)).unwrap();
        assert_eq!(
            types(&doc),
            ["aws-cni", "egress-cni", "portmap", "bandwidth", "tuning"]
        );
        assert_eq!(doc["plugins"][0]["vethPrefix"], "abc");
        assert_eq!(doc["plugins"][0]["mtu"], "1500");
        assert_eq!(doc["plugins"][1]["mtu"], "1500");
        assert_eq!(doc["plugins"][0]["podSGEnforcingMode"], "standard");
        assert_eq!(doc["plugins"][0]["pluginLogFile"], "stderr");
        assert_eq!(doc["plugins"][0]["pluginLogLevel"], "Info");
        assert_eq!(doc["plugins"][1]["randomizeSNAT"], "none");
        assert_eq!(doc["plugins"][3]["capabilities"]["bandwidth"], true);
        assert_eq!(
            doc["plugins"][4]["sysctl"]["net.ipv6.conf.lo.disable_ipv6"],
            "1"
        );
        // POD_MTU wins over AWS_VPC_ENI_MTU.
        let p = params(
            &[
                ("ENABLE_IPv4", "true"),
                ("AWS_VPC_ENI_MTU", "1500"),
                ("POD_MTU", "1400"),
            ],
            None,
        );
        assert_eq!(p.mtu, 1400);
    }

    #[test]
    fn egress_enablement_per_family() {
        let v4 =
            Config::from_vars([("ENABLE_IPv4", "true"), ("ENABLE_V6_EGRESS", "true")]).unwrap();
        assert_eq!(node_ip_need(&v4), NodeIpNeed::Ipv6);
        let p = ConflistParams::from_config(&v4, Some("2600:1f14::10".parse().unwrap()));
        assert!(p.egress.enabled);
        assert_eq!(p.egress.node_ip, "2600:1f14::10");
        // IMDS had no IPv6: egress off, nodeIP empty (upstream warns and disables).
        let p = ConflistParams::from_config(&v4, None);
        assert!(!p.egress.enabled);
        let v6 = Config::from_vars([
            ("ENABLE_IPv4", "false"),
            ("ENABLE_IPv6", "true"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
        ])
        .unwrap();
        assert_eq!(node_ip_need(&v6), NodeIpNeed::LocalIpv4);
        let p = ConflistParams::from_config(&v6, Some("10.0.0.10".parse().unwrap()));
        let doc: Value = serde_json::from_str(&render(&p)).unwrap();
        // aws-cni learns the family here, before ipamd answers (ours; IPv4 conflists lack it).
        assert_eq!(doc["plugins"][0]["podIPFamily"], "ipv6");
        let eg = &doc["plugins"][1];
        assert_eq!(eg["enabled"], "true");
        assert_eq!(eg["nodeIP"], "10.0.0.10");
        assert_eq!(eg["ipam"]["ranges"][0][0]["subnet"], "169.254.172.0/22");
        assert_eq!(eg["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(eg["ipam"]["dataDir"], "/run/cni/v6pd/egress-v4-ipam");
        assert_eq!(
            eg["pluginLogFile"],
            "/var/log/aws-routed-eni/egress-v4-plugin.log"
        );
        let off = Config::from_vars([
            ("ENABLE_IPv6", "true"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
            ("ENABLE_V4_EGRESS", "false"),
        ])
        .unwrap();
        // Upstream reads local-ipv4 in every IPv6 cluster and renders it, egress on or off.
        assert_eq!(node_ip_need(&off), NodeIpNeed::LocalIpv4);
        let p = ConflistParams::from_config(&off, Some("10.0.0.10".parse().unwrap()));
        let doc: Value = serde_json::from_str(&render(&p)).unwrap();
        assert_eq!(doc["plugins"][1]["enabled"], "false");
        assert_eq!(doc["plugins"][1]["nodeIP"], "10.0.0.10");
        assert_eq!(
            doc["plugins"][1]["ipam"]["ranges"][0][0]["subnet"],
            "169.254.172.0/22"
        );
    }

    #[test]
    fn custom_templates_get_placeholders_and_extras() {
        let p = params(
            &[
                ("ENABLE_IPv4", "true"),
                ("AWS_VPC_K8S_CNI_VETHPREFIX", "xyz"),
            ],
            None,
        );
        let tpl = r#"{"cniVersion":"0.4.0","name":"aws-cni","plugins":[{"type":"aws-cni","vethPrefix":"__VETHPREFIX__","mtu":"__MTU__"},{"type":"egress-cni","enabled":"__EGRESSPLUGINENABLED__","nodeIP":"__NODEIP__"}]}"#;
        let out = render_template(tpl, &p).unwrap();
        assert!(out.contains(r#""vethPrefix":"xyz""#), "{out}");
        assert!(out.contains(r#""enabled":"false""#), "{out}");
        let with_bw = ConflistParams {
            bandwidth: true,
            ..p.clone()
        };
        let doc: Value = serde_json::from_str(&render_template(tpl, &with_bw).unwrap()).unwrap();
        assert_eq!(types(&doc), ["aws-cni", "egress-cni", "bandwidth"]);
        assert!(matches!(
            render_template("{not json", &p),
            Err(TemplateError::Json(_))
        ));
        assert!(matches!(
            render_template("{}", &p),
            Err(TemplateError::NoPlugins)
        ));
        // The built-in rendering, used as a template, renders to itself.
        let builtin = render(&p);
        assert_eq!(render_template(&builtin, &p).unwrap(), builtin);
    }
}
