//! The pod's IPv4 egress interface in IPv6 clusters (upstream `cmdAddEgressV4`,
//! `setupContainerVethV4` and `setupHostVethV4` in `cmd/egress-cni-plugin/egressContext.go`):
//! a second veth pair, host end `veth<8 hex>` in the node namespace, pod end `v4if0` with the
//! link-local address host-local gave from `169.254.172.0/22`. Inside the pod the subnet route
//! is replaced so that everything, the subnet included, goes through the gateway
//! (`<gw>/32 dev v4if0 scope link src <ip>`, `169.254.172.0/22 via <gw> src <ip>`, default via
//! `<gw>`); the host end carries `<gw>/32` (scope link) and the host routes `<ip>/32` to it.
//! Written against `net`'s [`Kernel`] seam, with the steps [`crate::wire`] shares.

use std::net::Ipv4Addr;

use cni::error::CniError;
use ipnet::Ipv4Net;
use net::kernel::Kernel;
use net::netlink::Route;
use net::route_table::MAIN_TABLE;

use crate::wire::{Wired, add_host_route, create_pair, ends, remove_pair_on_error, setup_err};

/// Pod end of the egress veth (upstream `egressIPv4InterfaceName`).
pub const POD_IFNAME: &str = "v4if0";

/// The egress address and its gateway (host-local's `gateway`, the range's first address).
#[derive(Debug, Clone, Copy)]
pub struct Egress4 {
    /// The pod's address with the range's prefix length (`169.254.172.2/22`).
    pub addr: Ipv4Net,
    /// The gateway, carried by the host end of the veth (`169.254.172.1`).
    pub gateway: Ipv4Addr,
}

/// Creates `v4if0` for `e` between `host` and `pod`; on failure the veth is removed again.
pub async fn setup_in<K: Kernel>(
    host: &K,
    pod: &K,
    e: Egress4,
    mtu: u32,
) -> Result<Wired, CniError> {
    // Upstream `EnableIpForwarding`: the node forwards the pod's IPv4.
    host.write_sysctl("net/ipv4/ip_forward", "1")
        .map_err(setup_err("enable IPv4 forwarding"))?;
    let host_veth = create_pair(host, pod, POD_IFNAME, mtu).await?;
    let res = configure(host, pod, &host_veth, e).await;
    remove_pair_on_error(host, &host_veth, res).await
}

async fn configure<K: Kernel>(
    host: &K,
    pod: &K,
    host_veth: &str,
    e: Egress4,
) -> Result<Wired, CniError> {
    let (pod_link, host_link) = ends(host, pod, POD_IFNAME, host_veth).await?;
    configure_pod(pod, pod_link.index, e).await?;
    host.set_link_up(host_link.index, None)
        .await
        .map_err(setup_err("set the host veth up"))?;
    host.replace_link_scope_address(host_link.index, Ipv4Net::from(e.gateway))
        .await
        .map_err(setup_err("gateway address on the host veth"))?;
    let route = Route::link_scope(MAIN_TABLE, Route::host(e.addr.addr()), host_link.index);
    add_host_route(host, &route).await?;
    Ok(Wired {
        host_veth: host_veth.to_owned(),
        host_mac: host_link.mac,
        pod_mac: pod_link.mac,
    })
}

/// Inside the pod (upstream `ConfigureIface` then the route surgery of
/// `setupContainerVethV4`).
async fn configure_pod<K: Kernel>(pod: &K, index: u32, e: Egress4) -> Result<(), CniError> {
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
        pref_src: Some(ip.into()),
        ..Route::link_scope(MAIN_TABLE, Route::host(e.gateway), index)
    };
    let subnet_via_gateway = Route {
        dst: subnet.into(),
        pref_src: Some(ip.into()),
        ..Route::default_via(MAIN_TABLE, e.gateway, index)
    };
    for route in [to_gateway, subnet_via_gateway] {
        pod.add_route(&route)
            .await
            .map_err(setup_err("pod route via the gateway"))?;
    }
    Ok(())
}
