//! IPv4 egress for IPv6 clusters (upstream `cmdAddEgressV4` / `cmdDelEgress(ipv4=true)` in
//! `cmd/egress-cni-plugin`; spec section 8): IPAM (host-local, `169.254.172.0/22`), the
//! `v4if0` veth ([`wire_v4`]) and the iptables SNAT to the node's IPv4 ([`snat`], chain
//! `CNI-E4-…`). Any failure after IPAM undoes what was created and releases the address.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use cni::conf::CniEnv;
use cni::error::CniError;
use cni::result::CniResult;
use ipnet::{IpNet, Ipv4Net};
use net::firewall::Family;
use net::kernel6::Kernel6;
use net::netlink::NetlinkHandle;

use crate::conf::EgressConf;
use crate::egress_v6::{append_interfaces, ipam_plugin, kernels, open_netns, runtime};
use crate::plugin::snat_chain_name;
use crate::wire_v4::{self, Egress4};
use crate::{ipam, snat, wire};

/// The kernel part of ADD: `v4if0` and the pod's SNAT chain; on failure both are undone.
pub async fn wire_and_snat<K: Kernel6>(
    (host, pod): (&K, &K),
    conf: &EgressConf,
    env: &CniEnv,
    (egress, node_ip): (Egress4, Ipv4Addr),
    mtu: u32,
) -> Result<wire::Wired, CniError> {
    let chain = snat_chain_name(&conf.name, &env.container_id, false);
    let wired = wire_v4::setup_in(host, pod, egress, mtu).await?;
    let comment = snat::comment(&conf.name, &env.container_id);
    let rules = snat::PodSnat {
        chain: &chain,
        comment: &comment,
        pod_ip: egress.addr.addr().into(),
        node_ip: node_ip.into(),
        random: snat::random_flag(conf.randomize_snat.as_deref()),
    };
    if let Err(e) = snat::apply(host, &rules).await {
        let _ = snat::remove(host, &chain, Family::V4).await;
        let _ = wire_v4::teardown_in(pod).await;
        return Err(e);
    }
    Ok(wired)
}

/// The IPv4 address and gateway of host-local's answer (the gateway defaults to the
/// range's first address, as host-local's own default).
fn egress_address(allocated: &str) -> Result<Egress4, CniError> {
    let addr = match ipam::single_address(allocated)? {
        IpNet::V4(a) => a,
        other => {
            return Err(CniError::invalid_config(format!(
                "egress-cni: IPAM returned {other}, not an IPv4 address"
            )));
        }
    };
    let gateway = match ipam::single_gateway(allocated) {
        Some(IpAddr::V4(gw)) => gw,
        _ => first_host(addr),
    };
    Ok(Egress4 { addr, gateway })
}

/// The first address after the network address (`169.254.172.1` for `169.254.172.0/22`).
fn first_host(addr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr.network()).saturating_add(1))
}

/// ADD: returns prevResult with the host veth and `v4if0` appended.
pub fn add(
    conf: &EgressConf,
    env: &CniEnv,
    stdin: &[u8],
    node_ip: Ipv4Addr,
    mtu: u32,
    prev: &str,
) -> Result<String, CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_NETNS", &env.netns)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    conf.ipv4_ranges()?;
    let mut result =
        CniResult::from_json(prev).map_err(|e| CniError::decode(format!("egress-cni: {e}")))?;
    let pod_ns = open_netns(&env.netns)?;
    let plugin = ipam_plugin(conf, env)?;
    let allocated = ipam::exec(&plugin, "ADD", stdin)?;
    let release = || {
        let _ = ipam::exec(&plugin, "DEL", stdin);
    };
    let egress = match egress_address(&allocated) {
        Ok(e) => e,
        Err(e) => {
            release();
            return Err(e);
        }
    };
    let wired = runtime().and_then(|rt| {
        rt.block_on(async {
            let (host, pod) = kernels(&pod_ns)?;
            wire_and_snat((&host, &pod), conf, env, (egress, node_ip), mtu).await
        })
    });
    let wired = match wired {
        Ok(w) => w,
        Err(e) => {
            release();
            return Err(e);
        }
    };
    tracing::info!(container = %env.container_id, ip = %egress.addr, veth = %wired.host_veth, "IPv4 egress wired");
    append_interfaces(&mut result, &wired, wire_v4::POD_IFNAME, &env.netns);
    Ok(result.to_json())
}

/// DEL: releases the address (failure fails DEL), removes the pod's SNAT chain and jump and
/// `v4if0`. Idempotent.
pub fn del(conf: &EgressConf, env: &CniEnv, stdin: &[u8]) -> Result<(), CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    let plugin = ipam_plugin(conf, env)?;
    ipam::exec(&plugin, "DEL", stdin)?;
    let chain = snat_chain_name(&conf.name, &env.container_id, false);
    runtime()?.block_on(async {
        let host = NetlinkHandle::current()
            .map_err(|e| CniError::setup(format!("egress-cni: netlink: {e}")))?;
        // Upstream only logs rule-removal errors: a DEL that keeps failing blocks pod
        // deletion.
        if let Err(e) = snat::remove(&host, &chain, Family::V4).await {
            tracing::error!("{}", e.msg);
        }
        if env.netns.is_empty() || !Path::new(&env.netns).exists() {
            return Ok(());
        }
        let pod_ns = open_netns(&env.netns)?;
        let pod = NetlinkHandle::in_netns(&pod_ns)
            .map_err(|e| CniError::setup(format!("egress-cni: pod netlink: {e}")))?;
        wire_v4::teardown_in(&pod).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_address_and_gateway_from_host_local() {
        let with_gw = r#"{"ips":[{"address":"169.254.172.5/22","gateway":"169.254.172.1"}]}"#;
        let e = egress_address(with_gw).unwrap();
        assert_eq!(e.addr.to_string(), "169.254.172.5/22");
        assert_eq!(e.gateway, Ipv4Addr::new(169, 254, 172, 1));
        let without = r#"{"ips":[{"address":"169.254.173.9/22"}]}"#;
        assert_eq!(
            egress_address(without).unwrap().gateway,
            Ipv4Addr::new(169, 254, 172, 1)
        );
        assert!(egress_address(r#"{"ips":[{"address":"fd00::ac:2/118"}]}"#).is_err());
    }
}
