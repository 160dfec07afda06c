//! IPv6 egress for IPv4 clusters (spec 8, `cmdAddEgressV6` and DEL): IPAM, the `v6if0`
//! veth, and the ip6tables SNAT to the node's IPv6. Any failure after IPAM undoes what was
//! created and releases the address.

use std::net::Ipv6Addr;
use std::path::Path;

use cni::conf::CniEnv;
use cni::error::CniError;
use ipnet::IpNet;
use net::netns::Netns;
use serde_json::{Value, json};

use crate::conf::EgressConf;
use crate::plugin::snat_chain_name;
use crate::{ipam, snat, wire};

fn runtime() -> Result<tokio::runtime::Runtime, CniError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::io(format!("egress-cni: starting the runtime: {e}")))
}

fn open_netns(path: &str) -> Result<Netns, CniError> {
    Netns::open(path)
        .map_err(|e| CniError::invalid_env(format!("egress-cni: CNI_NETNS {path}: {e}")))
}

fn ipam_plugin(conf: &EgressConf) -> Result<std::path::PathBuf, CniError> {
    let cni_path = std::env::var("CNI_PATH").unwrap_or_default();
    ipam::find_plugin(&cni_path, conf.ipam_type())
}

/// ADD: returns prevResult with the two egress interfaces appended.
pub fn add(
    conf: &EgressConf,
    env: &CniEnv,
    stdin: &[u8],
    node_ip: Ipv6Addr,
    mtu: u32,
    prev: &str,
) -> Result<String, CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_NETNS", &env.netns)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    conf.ipv6_ranges()?;
    let mut result: Value = serde_json::from_str(prev)
        .map_err(|e| CniError::decode(format!("egress-cni: prevResult: {e}")))?;
    let pod_ns = open_netns(&env.netns)?;
    let plugin = ipam_plugin(conf)?;
    let allocated = ipam::exec(&plugin, "ADD", stdin)?;
    let release = || {
        let _ = ipam::exec(&plugin, "DEL", stdin);
    };
    let addr = match ipam::single_address(&allocated) {
        Ok(IpNet::V6(a)) => a,
        Ok(other) => {
            release();
            return Err(CniError::invalid_config(format!(
                "egress-cni: IPAM returned {other}, not an IPv6 address"
            )));
        }
        Err(e) => {
            release();
            return Err(e);
        }
    };
    let chain = snat_chain_name(&conf.name, &env.container_id, true);
    let rt = runtime()?;
    let wired = rt.block_on(async {
        let wired = wire::setup(&pod_ns, &env.ifname, addr, mtu).await?;
        let comment = snat::comment(&conf.name, &env.container_id);
        let rules = snat::PodSnat {
            chain: &chain,
            comment: &comment,
            pod_ip: addr.addr(),
            node_ip,
            random: snat::random_flag(conf.randomize_snat.as_deref()),
        };
        if let Err(e) = snat::apply(&rules) {
            let _ = wire::teardown(&pod_ns).await;
            return Err(e);
        }
        Ok(wired)
    });
    let wired = match wired {
        Ok(w) => w,
        Err(e) => {
            let _ = snat::remove(&chain);
            release();
            return Err(e);
        }
    };
    append_interfaces(&mut result, &wired, &env.netns);
    Ok(result.to_string())
}

/// Appends the host veth and `v6if0` to `interfaces`; the egress address is not added to
/// `ips` (upstream).
fn append_interfaces(result: &mut Value, wired: &wire::Wired, netns: &str) {
    let mac = |m: Option<net::netlink::Mac>| m.map(|m| m.to_string()).unwrap_or_default();
    let new = [
        json!({"name": wired.host_veth, "mac": mac(wired.host_mac)}),
        json!({"name": wire::POD_IFNAME, "mac": mac(wired.pod_mac), "sandbox": netns}),
    ];
    match result.get_mut("interfaces").and_then(Value::as_array_mut) {
        Some(list) => list.extend(new),
        None => {
            if let Some(obj) = result.as_object_mut() {
                obj.insert("interfaces".to_owned(), Value::Array(new.to_vec()));
            }
        }
    }
}

/// DEL: releases the address (failure fails DEL), removes the pod's SNAT chain and jump and
/// the egress veth. Idempotent.
pub fn del(conf: &EgressConf, env: &CniEnv, stdin: &[u8]) -> Result<(), CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    let plugin = ipam_plugin(conf)?;
    ipam::exec(&plugin, "DEL", stdin)?;
    let chain = snat_chain_name(&conf.name, &env.container_id, true);
    // Upstream only logs rule-removal errors: a DEL that keeps failing blocks pod deletion.
    if let Err(e) = snat::remove(&chain) {
        eprintln!("{}", e.msg);
    }
    if env.netns.is_empty() || !Path::new(&env.netns).exists() {
        return Ok(());
    }
    let pod_ns = open_netns(&env.netns)?;
    runtime()?.block_on(wire::teardown(&pod_ns))
}
