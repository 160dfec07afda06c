//! The CNI result of the spec versions we speak (0.3.x, 0.4.0, 1.0.0, 1.1.0): what ADD
//! prints, and what `prevResult` brings back to DEL, CHECK and a chained plugin. Only the
//! fields our plugins read or write are typed; everything else a result carries (`routes`,
//! `dns`, other plugins' additions) is kept as it came, so a chained plugin passes it on.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A CNI result.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Fields not modelled here, as they came.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One entry of `interfaces`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    /// Empty when unknown (then left out of the JSON, as the spec allows).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// The container's network namespace (absent for host-side interfaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One entry of `ips`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IpConfig {
    /// `"4"`/`"6"` in 0.3.x and 0.4.0 results; dropped by 1.0.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// CIDR notation (`10.0.0.9/32`).
    pub address: String,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl CniResult {
    /// Reads a result (a `prevResult` from the network configuration).
    pub fn from_value(v: &Value) -> Result<Self, String> {
        Self::deserialize(v).map_err(|e| format!("prevResult: {e}"))
    }

    /// Reads a result from its JSON text.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("prevResult: {e}"))
    }

    /// aws-cni's answer to ADD: `interfaces`, the addresses (one per pod interface) and an
    /// empty `dns` (upstream's `cmdAdd` result), as JSON.
    pub fn add_result_json(
        cni_version: &str,
        interfaces: Vec<Interface>,
        ips: Vec<IpConfig>,
    ) -> String {
        let mut other = serde_json::Map::new();
        other.insert("dns".into(), Value::Object(serde_json::Map::new()));
        CniResult {
            cni_version: cni_version.to_owned(),
            interfaces,
            ips,
            other,
        }
        .to_json()
    }

    /// The JSON text a runtime reads.
    pub fn to_json(&self) -> String {
        // Strings, numbers and JSON values only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The index of the container-side interface named `ifname`.
    pub fn container_interface(&self, ifname: &str) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|i| i.name == ifname && i.sandbox.is_some())
    }
}

impl IpConfig {
    /// An IPv4 entry for interface `interface`; `version` "4" for results before 1.0.0.
    pub fn v4(address: Ipv4Addr, prefix: u8, interface: usize, with_version: bool) -> Self {
        Self {
            version: with_version.then(|| "4".to_string()),
            address: format!("{address}/{prefix}"),
            interface: Some(interface),
            other: Map::new(),
        }
    }

    /// A pod's single address (`/32` or `/128`) for interface `interface`; `version` "4" or
    /// "6" for results before 1.0.0.
    pub fn host(address: IpAddr, interface: usize, with_version: bool) -> Self {
        let (version, prefix) = match address {
            IpAddr::V4(_) => ("4", 32),
            IpAddr::V6(_) => ("6", 128),
        };
        Self {
            version: with_version.then(|| version.to_string()),
            address: format!("{address}/{prefix}"),
            interface: Some(interface),
            other: Map::new(),
        }
    }

    /// The address without its prefix length, when it is IPv4.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.address.split('/').next()?.parse().ok()
    }

    /// The address without its prefix length, of either family.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }
}

impl Interface {
    /// An interface entry (`sandbox`: the container's namespace, or `None` on the host).
    pub fn new(name: impl Into<String>, mac: impl Into<String>, sandbox: Option<String>) -> Self {
        Self {
            name: name.into(),
            mac: mac.into(),
            sandbox,
            other: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eni1","mac":"aa:bb:cc:dd:ee:01","mtu":9001},{"name":"eth0","sandbox":"/var/run/netns/x"}],"ips":[{"address":"10.0.0.23/32","interface":1,"gateway":"169.254.1.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#;
        let r = CniResult::from_json(text).unwrap();
        assert_eq!(r.container_interface("eth0"), Some(1));
        assert_eq!(r.container_interface("eni1"), None, "host side");
        assert_eq!(r.ips[0].ipv4(), Some(Ipv4Addr::new(10, 0, 0, 23)));
        let back: Value = serde_json::from_str(&r.to_json()).unwrap();
        let orig: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn ipv4_entries_carry_a_version_only_before_1_0_0() {
        let old = serde_json::to_value(IpConfig::v4(Ipv4Addr::new(10, 0, 0, 9), 32, 1, true));
        assert_eq!(
            old.unwrap(),
            json!({"version": "4", "address": "10.0.0.9/32", "interface": 1})
        );
        let new = serde_json::to_value(IpConfig::v4(Ipv4Addr::new(10, 0, 0, 9), 32, 1, false));
        assert_eq!(
            new.unwrap(),
            json!({"address": "10.0.0.9/32", "interface": 1})
        );
    }

    #[test]
    fn malformed_results_are_errors_not_panics() {
        for bad in [
            json!({"interfaces": "eth0"}),
            json!({"ips": [{"interface": 1}]}),
            json!([1, 2]),
        ] {
            assert!(CniResult::from_value(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            CniResult::from_value(&json!({})).unwrap(),
            CniResult::default()
        );
    }
}
