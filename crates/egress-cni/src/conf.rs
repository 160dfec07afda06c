//! The `egress-cni` entry of the conflist (upstream's `NetConf`).

use cni::error::CniError;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Network configuration on stdin. Unknown fields (`ipam`, `runtimeConfig`, ...) are ignored
/// except where named here.
#[derive(Debug, Deserialize)]
pub struct EgressConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The network (conflist) name, `aws-cni`.
    #[serde(default)]
    pub name: String,
    /// MTU as a string (upstream renders `"mtu": "9001"`).
    #[serde(default)]
    pub mtu: Option<String>,
    /// Only the exact string `"true"` enables the plugin.
    #[serde(default)]
    pub enabled: Option<String>,
    #[serde(rename = "randomizeSNAT", default)]
    pub randomize_snat: Option<String>,
    #[serde(rename = "nodeIP", default)]
    pub node_ip: Option<String>,
    /// The IPAM delegate's section (`type`, `ranges`, `routes`, `dataDir`), passed on as is.
    #[serde(default)]
    pub ipam: Option<serde_json::Value>,
    #[serde(rename = "pluginLogFile", default)]
    pub plugin_log_file: Option<String>,
    #[serde(rename = "pluginLogLevel", default)]
    pub plugin_log_level: Option<String>,
    /// The previous plugin's result, kept as the exact bytes received.
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Box<RawValue>>,
}

impl EgressConf {
    /// Parses stdin.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        serde_json::from_slice(bytes).map_err(|e| {
            CniError::decode(format!(
                "network configuration is not valid JSON for egress-cni: {e}"
            ))
        })
    }

    /// `enabled == "true"` exactly, as upstream compares it.
    pub fn is_enabled(&self) -> bool {
        self.enabled.as_deref() == Some("true")
    }

    /// `ipam.type` (empty when absent).
    pub fn ipam_type(&self) -> &str {
        self.ipam
            .as_ref()
            .and_then(|i| i.get("type"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
    }

    /// Every `ipam.ranges[][].subnet`, which must all parse and be IPv6 for IPv6 egress.
    pub fn ipv6_ranges(&self) -> Result<Vec<ipnet::Ipv6Net>, CniError> {
        self.ranges("IPv6", "fd00::ac:00/118")
    }

    /// Every `ipam.ranges[][].subnet`, which must all parse and be IPv4 for IPv4 egress.
    pub fn ipv4_ranges(&self) -> Result<Vec<ipnet::Ipv4Net>, CniError> {
        self.ranges("IPv4", "169.254.172.0/22")
    }

    /// Every `ipam.ranges[][].subnet` as a prefix of one family (`family` and `example` name
    /// it in errors).
    fn ranges<N: std::str::FromStr>(
        &self,
        family: &str,
        example: &str,
    ) -> Result<Vec<N>, CniError> {
        let bad = |what: String| CniError::invalid_config(format!("egress-cni: {what}"));
        let sets = self
            .ipam
            .as_ref()
            .and_then(|i| i.get("ranges"))
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| bad("ipam.ranges is missing".to_owned()))?;
        let mut out = Vec::new();
        for range in sets.iter().flat_map(|s| s.as_array().into_iter().flatten()) {
            let subnet = range
                .get("subnet")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            let net: N = subnet.parse().map_err(|_| {
                bad(format!(
                    "ipam range subnet {subnet:?} is not an {family} prefix ({family} egress needs one, e.g. {example})"
                ))
            })?;
            out.push(net);
        }
        if out.is_empty() {
            return Err(bad("ipam.ranges holds no subnet".to_owned()));
        }
        Ok(out)
    }

    /// The MTU; unparsable is an error (upstream fails ADD on it).
    pub fn mtu(&self) -> Result<Option<u32>, CniError> {
        self.mtu
            .as_deref()
            .map(|m| {
                m.parse().map_err(|_| {
                    CniError::invalid_config(format!("egress-cni: mtu {m:?} is not a number"))
                })
            })
            .transpose()
    }
}
