//! Egress of the family the cluster lacks (upstream `cmdAddEgressV4`/`cmdAddEgressV6` and
//! `cmdDelEgress` in `cmd/egress-cni-plugin`; spec section 8): IPAM, the egress veth
//! (`v6if0` for IPv4 clusters, [`wire`]; `v4if0` for IPv6 clusters, [`wire_v4`]) and the SNAT
//! to the node's address of that family ([`snat`], chain `CNI-E6-…` / `CNI-E4-…`), all
//! kernel work through `net`'s [`Kernel`] seam. Any failure after IPAM undoes what was
//! created and releases the address. The family is that of the conflist's `nodeIP`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use cni::conf::CniEnv;
use cni::error::CniError;
use cni::result::{CniResult, Interface};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use net::firewall::Family;
use net::kernel::Kernel;
use net::netlink::NetlinkHandle;
use net::netns::Netns;

use crate::conf::EgressConf;
use crate::snat::snat_chain_name;
use crate::wire_v4::Egress4;
use crate::{ipam, snat, wire, wire_v4};

/// The egress address IPAM gave, with what its family needs.
#[derive(Debug, Clone, Copy)]
pub enum EgressAddr {
    /// IPv4 clusters: the pod's ULA (`v6if0`).
    V6(Ipv6Net),
    /// IPv6 clusters: the pod's link-local IPv4 and its gateway (`v4if0`).
    V4(Egress4),
}

impl EgressAddr {
    /// The pod's egress address.
    pub fn ip(&self) -> IpAddr {
        match self {
            EgressAddr::V6(a) => a.addr().into(),
            EgressAddr::V4(e) => e.addr.addr().into(),
        }
    }

    fn family(&self) -> Family {
        match self {
            EgressAddr::V6(_) => Family::V6,
            EgressAddr::V4(_) => Family::V4,
        }
    }
}

/// The pod end of the egress veth of `family`.
pub fn pod_ifname(family: Family) -> &'static str {
    match family {
        Family::V6 => wire::POD_IFNAME,
        Family::V4 => wire_v4::POD_IFNAME,
    }
}

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

fn ipam_plugin(conf: &EgressConf, env: &CniEnv) -> Result<std::path::PathBuf, CniError> {
    ipam::find_plugin(&env.path, conf.ipam_type())
}

fn netlink_err(what: &str) -> impl FnOnce(net::netlink::NetlinkError) -> CniError + '_ {
    move |e| CniError::setup(format!("egress-cni: {what}: {e}"))
}

/// The node's kernel (the current namespace) and the pod's.
fn kernels(pod_ns: &Netns) -> Result<(NetlinkHandle, NetlinkHandle), CniError> {
    Ok((
        NetlinkHandle::current().map_err(netlink_err("netlink"))?,
        NetlinkHandle::in_netns(pod_ns).map_err(netlink_err("netlink"))?,
    ))
}

/// The kernel part of ADD: the egress veth and the pod's SNAT chain to `node_ip`; on failure
/// both are undone.
pub async fn wire_and_snat<K: Kernel>(
    (host, pod): (&K, &K),
    conf: &EgressConf,
    env: &CniEnv,
    (addr, node_ip): (EgressAddr, IpAddr),
    mtu: u32,
) -> Result<wire::Wired, CniError> {
    let family = addr.family();
    let chain = snat_chain_name(&conf.name, &env.container_id, family == Family::V6);
    let wired = match addr {
        EgressAddr::V6(a) => wire::setup_in(host, pod, &env.ifname, a, mtu).await?,
        EgressAddr::V4(e) => wire_v4::setup_in(host, pod, e, mtu).await?,
    };
    let comment = snat::comment(&conf.name, &env.container_id);
    let rules = snat::PodSnat {
        chain: &chain,
        comment: &comment,
        pod_ip: addr.ip(),
        node_ip,
        random: snat::random_flag(conf.randomize_snat.as_deref()),
    };
    if let Err(e) = snat::apply(host, &rules).await {
        let _ = snat::remove(host, &chain, family).await;
        let _ = wire::teardown_in(pod, pod_ifname(family)).await;
        return Err(e);
    }
    Ok(wired)
}

/// The address of host-local's answer, of `node_ip`'s family (for IPv4 with its gateway,
/// by default the range's first address, as host-local's own default).
fn egress_address(allocated: &str, node_ip: IpAddr) -> Result<EgressAddr, CniError> {
    let wrong = |other: IpNet, want: &str| {
        CniError::invalid_config(format!(
            "egress-cni: IPAM returned {other}, not an {want} address"
        ))
    };
    match (ipam::single_address(allocated)?, node_ip) {
        (IpNet::V6(a), IpAddr::V6(_)) => Ok(EgressAddr::V6(a)),
        (IpNet::V4(addr), IpAddr::V4(_)) => {
            let gateway = match ipam::single_gateway(allocated) {
                Some(IpAddr::V4(gw)) => gw,
                _ => first_host(addr),
            };
            Ok(EgressAddr::V4(Egress4 { addr, gateway }))
        }
        (other, IpAddr::V6(_)) => Err(wrong(other, "IPv6")),
        (other, IpAddr::V4(_)) => Err(wrong(other, "IPv4")),
    }
}

/// The first address after the network address (`169.254.172.1` for `169.254.172.0/22`).
fn first_host(addr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr.network()).saturating_add(1))
}

/// ADD: egress of `node_ip`'s family; returns prevResult with the host veth and the pod's
/// egress interface appended.
pub fn add(
    conf: &EgressConf,
    env: &CniEnv,
    stdin: &[u8],
    node_ip: IpAddr,
    mtu: u32,
    prev: &str,
) -> Result<String, CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_NETNS", &env.netns)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    match node_ip {
        IpAddr::V6(_) => conf.ipv6_ranges().map(drop)?,
        IpAddr::V4(_) => conf.ipv4_ranges().map(drop)?,
    }
    let mut result =
        CniResult::from_json(prev).map_err(|e| CniError::decode(format!("egress-cni: {e}")))?;
    let pod_ns = open_netns(&env.netns)?;
    let plugin = ipam_plugin(conf, env)?;
    let allocated = ipam::exec(&plugin, "ADD", stdin)?;
    let wired = egress_address(&allocated, node_ip).and_then(|addr| {
        let wired = runtime()?.block_on(async {
            let (host, pod) = kernels(&pod_ns)?;
            wire_and_snat((&host, &pod), conf, env, (addr, node_ip), mtu).await
        })?;
        Ok((addr, wired))
    });
    let (addr, wired) = match wired {
        Ok(done) => done,
        Err(e) => {
            let _ = ipam::exec(&plugin, "DEL", stdin);
            return Err(e);
        }
    };
    let pod_ifname = pod_ifname(addr.family());
    tracing::info!(container = %env.container_id, ip = %addr.ip(), veth = %wired.host_veth, "{pod_ifname} egress wired");
    append_interfaces(&mut result, &wired, pod_ifname, &env.netns);
    Ok(result.to_json())
}

/// Appends the host veth and the pod's egress interface to `interfaces`; the egress address
/// is not added to `ips` (upstream).
fn append_interfaces(result: &mut CniResult, wired: &wire::Wired, pod_ifname: &str, netns: &str) {
    let mac = |m: Option<net::netlink::Mac>| m.map(|m| m.to_string()).unwrap_or_default();
    result.interfaces.extend([
        Interface::new(&wired.host_veth, mac(wired.host_mac), None),
        Interface::new(pod_ifname, mac(wired.pod_mac), Some(netns.to_string())),
    ]);
}

/// DEL of `family`'s egress: releases the address (failure fails DEL), removes the pod's
/// SNAT chain and jump and the egress veth. Idempotent.
pub fn del(conf: &EgressConf, env: &CniEnv, stdin: &[u8], family: Family) -> Result<(), CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    let plugin = ipam_plugin(conf, env)?;
    ipam::exec(&plugin, "DEL", stdin)?;
    let chain = snat_chain_name(&conf.name, &env.container_id, family == Family::V6);
    runtime()?.block_on(async {
        let host = NetlinkHandle::current().map_err(netlink_err("netlink"))?;
        // Upstream only logs rule-removal errors: a DEL that keeps failing blocks pod
        // deletion.
        if let Err(e) = snat::remove(&host, &chain, family).await {
            tracing::error!("{}", e.msg);
        }
        if env.netns.is_empty() || !Path::new(&env.netns).exists() {
            return Ok(());
        }
        wire::teardown(&open_netns(&env.netns)?, pod_ifname(family)).await
    })
}

#[cfg(test)]
#[path = "egress_tests.rs"]
mod tests;
