//! IPv6 egress for IPv4 clusters (upstream `cmdAddEgressV6` / `cmdDelEgressV6` in
//! `cmd/egress-cni-plugin`): IPAM, the `v6if0` veth, and the ip6tables SNAT to the node's
//! IPv6, all kernel work through `net`'s [`Kernel`] seam. Any failure after IPAM undoes what
//! was created and releases the address.

use std::net::Ipv6Addr;
use std::path::Path;

use cni::conf::CniEnv;
use cni::error::CniError;
use cni::result::{CniResult, Interface};
use ipnet::{IpNet, Ipv6Net};
use net::firewall::Family;
use net::kernel::Kernel;
use net::netlink::NetlinkHandle;
use net::netns::Netns;

use crate::conf::EgressConf;
use crate::plugin::snat_chain_name;
use crate::{ipam, snat, wire};

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CniError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::io(format!("egress-cni: starting the runtime: {e}")))
}

pub(crate) fn open_netns(path: &str) -> Result<Netns, CniError> {
    Netns::open(path)
        .map_err(|e| CniError::invalid_env(format!("egress-cni: CNI_NETNS {path}: {e}")))
}

pub(crate) fn ipam_plugin(conf: &EgressConf, env: &CniEnv) -> Result<std::path::PathBuf, CniError> {
    ipam::find_plugin(&env.path, conf.ipam_type())
}

/// The node's kernel (the current namespace) and the pod's.
pub(crate) fn kernels(pod_ns: &Netns) -> Result<(NetlinkHandle, NetlinkHandle), CniError> {
    let nl = |e: net::netlink::NetlinkError| CniError::setup(format!("egress-cni: netlink: {e}"));
    Ok((
        NetlinkHandle::current().map_err(nl)?,
        NetlinkHandle::in_netns(pod_ns).map_err(nl)?,
    ))
}

/// The kernel part of ADD: the `v6if0` veth and the pod's SNAT chain; on failure both are
/// undone.
pub async fn wire_and_snat<K: Kernel>(
    (host, pod): (&K, &K),
    conf: &EgressConf,
    env: &CniEnv,
    (addr, node_ip): (Ipv6Net, Ipv6Addr),
    mtu: u32,
) -> Result<wire::Wired, CniError> {
    let chain = snat_chain_name(&conf.name, &env.container_id, true);
    let wired = wire::setup_in(host, pod, &env.ifname, addr, mtu).await?;
    let comment = snat::comment(&conf.name, &env.container_id);
    let rules = snat::PodSnat {
        chain: &chain,
        comment: &comment,
        pod_ip: addr.addr().into(),
        node_ip: node_ip.into(),
        random: snat::random_flag(conf.randomize_snat.as_deref()),
    };
    if let Err(e) = snat::apply(host, &rules).await {
        let _ = snat::remove(host, &chain, Family::V6).await;
        let _ = wire::teardown_in(pod).await;
        return Err(e);
    }
    Ok(wired)
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
    let mut result =
        CniResult::from_json(prev).map_err(|e| CniError::decode(format!("egress-cni: {e}")))?;
    let pod_ns = open_netns(&env.netns)?;
    let plugin = ipam_plugin(conf, env)?;
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
    let wired = runtime().and_then(|rt| {
        rt.block_on(async {
            let (host, pod) = kernels(&pod_ns)?;
            wire_and_snat((&host, &pod), conf, env, (addr, node_ip), mtu).await
        })
    });
    let wired = match wired {
        Ok(w) => w,
        Err(e) => {
            release();
            return Err(e);
        }
    };
    append_interfaces(&mut result, &wired, wire::POD_IFNAME, &env.netns);
    Ok(result.to_json())
}

/// Appends the host veth and the pod's egress interface to `interfaces`; the egress address is not added to
/// `ips` (upstream).
pub(crate) fn append_interfaces(
    result: &mut CniResult,
    wired: &wire::Wired,
    pod_ifname: &str,
    netns: &str,
) {
    let mac = |m: Option<net::netlink::Mac>| m.map(|m| m.to_string()).unwrap_or_default();
    result.interfaces.extend([
        Interface::new(&wired.host_veth, mac(wired.host_mac), None),
        Interface::new(pod_ifname, mac(wired.pod_mac), Some(netns.to_string())),
    ]);
}

/// DEL: releases the address (failure fails DEL), removes the pod's SNAT chain and jump and
/// the egress veth. Idempotent.
pub fn del(conf: &EgressConf, env: &CniEnv, stdin: &[u8]) -> Result<(), CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    let plugin = ipam_plugin(conf, env)?;
    ipam::exec(&plugin, "DEL", stdin)?;
    let chain = snat_chain_name(&conf.name, &env.container_id, true);
    runtime()?.block_on(async {
        let host = NetlinkHandle::current()
            .map_err(|e| CniError::setup(format!("egress-cni: netlink: {e}")))?;
        // Upstream only logs rule-removal errors: a DEL that keeps failing blocks pod
        // deletion.
        if let Err(e) = snat::remove(&host, &chain, Family::V6).await {
            eprintln!("{}", e.msg);
        }
        if env.netns.is_empty() || !Path::new(&env.netns).exists() {
            return Ok(());
        }
        let pod_ns = open_netns(&env.netns)?;
        wire::teardown(&pod_ns).await
    })
}

#[cfg(test)]
mod tests {
    use net::iptables_backend::Backend;
    use net::netlink::{Route6, Scope};
    use net::testing::{Call, Recording};

    use super::*;

    fn conf() -> EgressConf {
        EgressConf::parse(
            br#"{"cniVersion":"1.0.0","name":"aws-cni","enabled":"true","randomizeSNAT":"prng"}"#,
        )
        .unwrap()
    }

    fn env() -> CniEnv {
        CniEnv {
            command: "ADD".into(),
            container_id: "containerId-789".into(),
            netns: "/var/run/netns/pod".into(),
            ifname: "eth0".into(),
            path: "/opt/cni/bin".into(),
            ..CniEnv::default()
        }
    }

    #[tokio::test]
    async fn egress_wiring_and_snat_through_the_seam() {
        let host = Recording::new("node");
        let pod = host.namespace("/var/run/netns/pod");
        let addr: Ipv6Net = "fd00::ac:2/118".parse().unwrap();
        let node_ip: Ipv6Addr = "2600:1f14::10".parse().unwrap();
        let wired = wire_and_snat((&host, &pod), &conf(), &env(), (addr, node_ip), 9001)
            .await
            .unwrap();
        assert!(wired.host_veth.starts_with("veth") && wired.host_veth.len() == 12);
        let pod_calls = pod.calls();
        assert_eq!(
            pod_calls[0],
            Call::Sysctl {
                key: "net/ipv6/conf/eth0/disable_ipv6".into(),
                value: "1".into()
            }
        );
        assert!(pod_calls.contains(&Call::ReplaceAddressV6 {
            link: wire::POD_IFNAME.into(),
            addr
        }));
        let model = host.model();
        let veth = model
            .links
            .iter()
            .find(|l| l.name == wired.host_veth)
            .unwrap();
        let host_ll = model
            .addresses_v6
            .iter()
            .find(|a| a.ifindex == veth.index)
            .unwrap()
            .addr
            .addr();
        let v6if0 = pod.model().links[0].index;
        assert_eq!(
            pod.model().routes_v6,
            [Route6 {
                table: 254,
                dst: Ipv6Net::default(),
                gateway: Some(host_ll),
                oif: Some(v6if0),
                scope: Scope::Universe,
            }]
        );
        assert_eq!(model.routes_v6[0].dst.to_string(), "fd00::ac:2/128");
        assert_eq!(model.routes_v6[0].scope, Scope::Host);
        let Some(Call::FirewallRestore { command, batch }) = host.calls().pop() else {
            panic!("no firewall batch");
        };
        assert_eq!(command, "ip6tables-nft-restore --wait=10 --noflush");
        assert!(
            batch.contains("-j SNAT --to-source 2600:1f14::10"),
            "{batch}"
        );
        assert!(
            batch.contains("-A POSTROUTING -s fd00::ac:2 -j CNI-E6-"),
            "{batch}"
        );

        // DEL's kernel part: the chain goes through the same runner, v6if0 with its peer.
        let chain = snat_chain_name("aws-cni", "containerId-789", true);
        let saved = format!(
            "*nat\n:POSTROUTING ACCEPT [0:0]\n:{chain} - [0:0]\n-A POSTROUTING -s fd00::ac:2/128 -j {chain}\nCOMMIT\n"
        );
        host.set_firewall_save(Backend::Nft, Family::V6, Some("nat"), &saved);
        snat::remove(&host, &chain, Family::V6).await.unwrap();
        wire::teardown_in(&pod).await.unwrap();
        assert!(pod.model().links.is_empty() && host.model().links.is_empty());
        let Some(Call::FirewallRestore { batch, .. }) = host.calls().pop() else {
            panic!("no DEL batch");
        };
        assert!(batch.contains(&format!("-X {chain}")), "{batch}");
    }
}
