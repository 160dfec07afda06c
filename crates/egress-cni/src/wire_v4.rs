//! The pod's IPv4 egress interface in IPv6 clusters (upstream `cmdAddEgressV4`,
//! `setupContainerVethV4` and `setupHostVethV4` in `cmd/egress-cni-plugin/egressContext.go`):
//! a second veth pair, host end `veth<8 hex>` in the node namespace, pod end `v4if0` with the
//! link-local address host-local gave from `169.254.172.0/22`. Inside the pod the subnet route
//! is replaced so that everything, the subnet included, goes through the gateway
//! (`<gw>/32 dev v4if0 scope link src <ip>`, `169.254.172.0/22 via <gw> src <ip>`, default via
//! `<gw>`); the host end carries `<gw>/32` (scope link) and the host routes `<ip>/32` to it.
//! Written against `net`'s [`Kernel6`] seam.

use std::net::Ipv4Addr;
use std::time::Duration;

use cni::error::CniError;
use ipnet::Ipv4Net;
use net::kernel6::Kernel6;
use net::netlink::link::VethPair;
use net::netlink::{NetlinkError, Route};
use net::route_table::MAIN_TABLE;

use crate::wire::{Wired, random_veth_name};

/// Pod end of the egress veth (upstream `egressIPv4InterfaceName`).
pub const POD_IFNAME: &str = "v4if0";

fn setup_err(what: &str) -> impl FnOnce(NetlinkError) -> CniError + '_ {
    move |e| CniError::setup(format!("egress-cni: {what}: {e}"))
}

/// The egress address and its gateway (host-local's `gateway`, the range's first address).
#[derive(Debug, Clone, Copy)]
pub struct Egress4 {
    /// The pod's address with the range's prefix length (`169.254.172.2/22`).
    pub addr: Ipv4Net,
    /// The gateway, carried by the host end of the veth (`169.254.172.1`).
    pub gateway: Ipv4Addr,
}

/// Creates `v4if0` for `e` between `host` and `pod`; on failure the veth is removed again.
pub async fn setup_in<K: Kernel6>(
    host: &K,
    pod: &K,
    e: Egress4,
    mtu: u32,
) -> Result<Wired, CniError> {
    // Upstream `EnableIpForwarding`: the node forwards the pod's IPv4.
    host.write_sysctl("net/ipv4/ip_forward", "1")
        .map_err(setup_err("enable IPv4 forwarding"))?;
    // A re-ADD replaces the previous egress interface.
    pod.delete_link_by_name(POD_IFNAME)
        .await
        .map_err(setup_err("delete stale v4if0"))?;
    let host_veth = random_veth_name()?;
    let pod_peer = pod.peer().map_err(setup_err("pod netns"))?;
    host.create_veth(&VethPair {
        name: &host_veth,
        mtu,
        up: true,
        peer_name: POD_IFNAME,
        peer_mac: None,
        peer_netns: &pod_peer,
    })
    .await
    .map_err(setup_err("create veth"))?;
    let res = configure(host, pod, &host_veth, e).await;
    if res.is_err() {
        let _ = host.delete_link_by_name(&host_veth).await;
    }
    res
}

async fn configure<K: Kernel6>(
    host: &K,
    pod: &K,
    host_veth: &str,
    e: Egress4,
) -> Result<Wired, CniError> {
    let missing = |name: &str| CniError::setup(format!("egress-cni: link {name} vanished"));
    let pod_link = pod
        .link_by_name(POD_IFNAME)
        .await
        .map_err(setup_err("find v4if0"))?
        .ok_or_else(|| missing(POD_IFNAME))?;
    pod.set_link_up(pod_link.index, None)
        .await
        .map_err(setup_err("set v4if0 up"))?;
    configure_pod(pod, pod_link.index, e).await?;
    let host_link = host
        .link_by_name(host_veth)
        .await
        .map_err(setup_err("find host veth"))?
        .ok_or_else(|| missing(host_veth))?;
    host.set_link_up(host_link.index, None)
        .await
        .map_err(setup_err("set the host veth up"))?;
    host.replace_link_scope_address(host_link.index, Ipv4Net::from(e.gateway))
        .await
        .map_err(setup_err("gateway address on the host veth"))?;
    add_host_route(host, host_link.index, e.addr.addr()).await?;
    Ok(Wired {
        host_veth: host_veth.to_owned(),
        host_mac: host_link.mac,
        pod_mac: pod_link.mac,
    })
}

/// Inside the pod (upstream `ConfigureIface` then the route surgery of
/// `setupContainerVethV4`).
async fn configure_pod<K: Kernel6>(pod: &K, index: u32, e: Egress4) -> Result<(), CniError> {
    let ip = e.addr.addr();
    let subnet = e.addr.trunc();
    pod.replace_address(index, e.addr)
        .await
        .map_err(setup_err("add the address to v4if0"))?;
    pod.add_route(&Route::default_via(MAIN_TABLE, e.gateway, index))
        .await
        .map_err(setup_err("pod default route via the gateway"))?;
    // The subnet route the address brought: no neighbour but the gateway is on this link.
    pod.delete_route(&Route::link_scope(MAIN_TABLE, subnet, index))
        .await
        .map_err(setup_err("delete the subnet route of v4if0"))?;
    let to_gateway = Route {
        pref_src: Some(ip),
        ..Route::link_scope(MAIN_TABLE, Ipv4Net::from(e.gateway), index)
    };
    let subnet_via_gateway = Route {
        dst: subnet,
        pref_src: Some(ip),
        ..Route::default_via(MAIN_TABLE, e.gateway, index)
    };
    for route in [to_gateway, subnet_via_gateway] {
        pod.add_route(&route)
            .await
            .map_err(setup_err("pod route via the gateway"))?;
    }
    Ok(())
}

/// `<ip>/32 dev <hostveth> scope link`; EEXIST (the stale route of a dying pod) is retried
/// up to 5 times, 100 ms apart (upstream `addRouteWithRetry`).
async fn add_host_route<K: Kernel6>(host: &K, index: u32, ip: Ipv4Addr) -> Result<(), CniError> {
    let route = Route::link_scope(MAIN_TABLE, Route::host(ip), index);
    let mut attempt = 0;
    loop {
        match host.add_route(&route).await {
            Ok(()) => return Ok(()),
            Err(err) => {
                attempt += 1;
                if !err.is_exists() || attempt >= 5 {
                    return Err(CniError::setup(format!("egress-cni: host route: {err}")));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes `v4if0` (and with it the host end, its address and the host route); missing is
/// fine.
pub async fn teardown_in<K: Kernel6>(pod: &K) -> Result<(), CniError> {
    pod.delete_link_by_name(POD_IFNAME)
        .await
        .map(drop)
        .map_err(setup_err("delete v4if0"))
}
