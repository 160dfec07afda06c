//! Command dispatch: ADD, DEL, CHECK, VERSION.

use cni::conf::CniEnv;
use cni::error::CniError;

use std::net::IpAddr;

use crate::conf::EgressConf;
use crate::egress;
use net::firewall::Family;

/// Versions upstream's plugin advertises (`version.All` of containernetworking/cni v1.3).
pub const SUPPORTED_VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// What to print on stdout for a successful command (`None`: nothing).
pub type Output = Option<String>;

fn error(code: u32, msg: String) -> CniError {
    CniError {
        code,
        msg,
        details: String::new(),
    }
}

/// Runs one command. Errors carry the CNI version to print them with.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<Output, (String, CniError)> {
    if env.command == "VERSION" {
        let v = serde_json::json!({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS});
        return Ok(Some(v.to_string()));
    }
    let conf = EgressConf::parse(stdin).map_err(|e| ("1.0.0".to_owned(), e))?;
    // Upstream's `LoadConf`: the log the conflist names (empty: stderr).
    cni::log::init(
        "egress-cni",
        conf.plugin_log_file.as_deref().unwrap_or_default(),
        conf.plugin_log_level.as_deref().unwrap_or_default(),
    );
    tracing::debug!(
        command = %env.command,
        container = %env.container_id,
        netns = %env.netns,
        enabled = conf.is_enabled(),
        "Received {} request",
        match env.command.as_str() {
            "ADD" => "an Add",
            "DEL" => "a Del",
            _ => "a",
        }
    );
    let fail = |e: CniError| {
        tracing::error!(command = %env.command, code = e.code, "{}", e.msg);
        (conf.cni_version.clone(), e)
    };
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        return Err(fail(error(
            1,
            format!(
                "incompatible CNI version {:?}; egress-cni supports {}",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(", ")
            ),
        )));
    }
    match env.command.as_str() {
        "ADD" => {
            let prev = conf.prev_result.as_ref().ok_or_else(|| {
                fail(CniError::invalid_config(
                    "egress-cni must be called as a chained plugin (no prevResult)",
                ))
            })?;
            if !conf.is_enabled() {
                return Ok(Some(prev.get().to_owned()));
            }
            let mtu = conf.mtu().map_err(fail)?.unwrap_or(DEFAULT_MTU);
            let node_ip = node_ip(&conf).map_err(fail)?;
            egress::add(&conf, env, stdin, node_ip, mtu, prev.get())
                .map(Some)
                .map_err(fail)
        }
        "DEL" => {
            if !conf.is_enabled() {
                // Nothing was created.
                return Ok(None);
            }
            let family = if is_v4_node_ip(&conf) {
                Family::V4
            } else {
                Family::V6
            };
            egress::del(&conf, env, stdin, family)
                .map(|()| None)
                .map_err(fail)
        }
        // Upstream registers no CHECK; STATUS and GC have nothing to report or collect
        // (host-local's allocations are released by DEL).
        "CHECK" | "GC" | "STATUS" => Ok(None),
        other => Err(fail(CniError::invalid_env(format!(
            "CNI_COMMAND {other:?} is not supported (ADD, DEL, CHECK, GC, STATUS, VERSION)"
        )))),
    }
}

/// MTU of the egress veth when the conflist gives none (the kernel's veth default).
const DEFAULT_MTU: u32 = 1500;

/// The node's address for SNAT; its family selects the egress family (upstream: an IPv4
/// `nodeIP` means IPv4 egress for an IPv6 cluster, anything else IPv6 egress).
fn node_ip(conf: &EgressConf) -> Result<IpAddr, CniError> {
    let raw = conf.node_ip.as_deref().unwrap_or_default();
    raw.parse::<IpAddr>().map_err(|_| {
        CniError::invalid_config(format!(
            "egress-cni: nodeIP {raw:?} is not an IP address (the entrypoint renders the \
             node's primary IPv6 there when ENABLE_V6_EGRESS=true, its primary IPv4 in IPv6 \
             clusters with ENABLE_V4_EGRESS=true)"
        ))
    })
}

/// The node IP's family selects the egress family: IPv4 node IP → IPv4 egress.
fn is_v4_node_ip(conf: &EgressConf) -> bool {
    conf.node_ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_ipv4())
}
