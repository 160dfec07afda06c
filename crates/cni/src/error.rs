//! CNI errors: JSON on stdout with a code and an operator-actionable message; exit 1.

use serde::Serialize;

/// A CNI error result (codes from the CNI specification; 100+ are the plugin's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
    /// `version` is not one of `supported`.
    pub fn incompatible(version: &str, supported: &[&str]) -> Self {
        Self::new(
            1,
            format!(
                "incompatible CNI version {version:?}; aws-cni supports {}",
                supported.join(", ")
            ),
        )
    }
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(4, msg)
    }
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(5, msg)
    }
    pub fn decode(msg: impl Into<String>) -> Self {
        Self::new(6, msg)
    }
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(7, msg)
    }
    pub fn try_again(msg: impl Into<String>) -> Self {
        Self::new(11, msg)
    }
    /// CNI 1.1 `STATUS`: the plugin cannot serve ADDs now (ipamd is not answering).
    pub fn not_available(msg: impl Into<String>) -> Self {
        Self::new(50, msg)
    }
    /// ipamd refused or failed the request.
    pub fn ipamd(msg: impl Into<String>) -> Self {
        Self::new(100, msg)
    }
    /// Wiring the pod's network (veth, addresses, routes, rules) failed; the address was
    /// given back and the partial wiring removed.
    pub fn setup(msg: impl Into<String>) -> Self {
        Self::new(101, msg)
    }
    /// `CHECK` found the pod's network different from `prevResult`.
    pub fn check(msg: impl Into<String>) -> Self {
        Self::new(102, msg)
    }
    /// The network policy agent could not be reached or did not enforce the pod's
    /// policies (103 is egress-cni's ip6tables failure).
    pub fn network_policy(msg: impl Into<String>) -> Self {
        Self::new(104, msg)
    }

    /// The JSON printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("cniVersion".into(), cni_version.into());
        }
        v.to_string()
    }
}
