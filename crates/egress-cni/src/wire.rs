//! The pod's IPv6 egress interface (upstream `cmdAddEgressV6` in `cmd/egress-cni-plugin`): a
//! second veth pair, host end `veth<8 hex>` in the node namespace, pod end `v6if0` with the
//! ULA from IPAM, a default route via the host end's link-local address and a host route to
//! the ULA; and the steps both families' egress interfaces share ([`create_pair`],
//! [`ends`], [`add_host_route`], [`teardown_in`]; IPv4: [`crate::wire_v4`]). Written against
//! `net`'s [`Kernel`] seam.

use std::io::Read;
use std::net::Ipv6Addr;
use std::time::Duration;

use cni::error::CniError;
use ipnet::Ipv6Net;
use net::kernel::{Kernel, wait_for_v6};
use net::netlink::link::VethPair;
use net::netlink::{Link, Mac, NetlinkError, NetlinkHandle, Route, Scope};
use net::netns::Netns;
use net::route_table::MAIN_TABLE;

/// Pod end of the egress veth.
pub const POD_IFNAME: &str = "v6if0";
/// How long to wait for link-local addresses and duplicate address detection (upstream: 10 s,
/// polled every 50 ms).
const DAD_WAIT: (Duration, Duration) = (Duration::from_secs(10), Duration::from_millis(50));

/// What ADD created, for the CNI result.
#[derive(Debug, Clone)]
pub struct Wired {
    pub host_veth: String,
    pub host_mac: Option<Mac>,
    pub pod_mac: Option<Mac>,
}

pub(crate) fn setup_err(what: &str) -> impl FnOnce(NetlinkError) -> CniError + '_ {
    move |e| CniError::setup(format!("egress-cni: {what}: {e}"))
}

/// `veth` + 8 random hex digits (containernetworking `RandomVethName`).
fn random_veth_name() -> Result<String, CniError> {
    let mut bytes = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CniError::io(format!("egress-cni: reading /dev/urandom: {e}")))?;
    Ok(format!("veth{:08x}", u32::from_be_bytes(bytes)))
}

/// Writes `net/ipv6/conf/<ifname>/disable_ipv6 = 1` inside the pod (no IPv6 on eth0).
fn disable_ipv6_on<K: Kernel>(pod: &K, ifname: &str) -> Result<(), CniError> {
    let key = format!("net/ipv6/conf/{ifname}/disable_ipv6");
    match pod.write_sysctl(&key, "1") {
        Ok(true) => Ok(()),
        Ok(false) => Err(CniError::setup(format!(
            "egress-cni: /proc/sys/{key} does not exist in the pod"
        ))),
        Err(e) => Err(CniError::setup(format!("egress-cni: in the pod: {e}"))),
    }
}

/// Creates the egress interface for `addr` on the real kernel: the node is the current
/// namespace. See [`setup_in`].
pub async fn setup(
    pod_ns: &Netns,
    pod_eth: &str,
    addr: Ipv6Net,
    mtu: u32,
) -> Result<Wired, CniError> {
    let host = NetlinkHandle::current().map_err(setup_err("node netlink"))?;
    let pod = NetlinkHandle::in_netns(pod_ns).map_err(setup_err("pod netlink"))?;
    setup_in(&host, &pod, pod_eth, addr, mtu).await
}

/// Creates the egress interface for `addr` between `host` and `pod`. On failure the veth is
/// removed again.
pub async fn setup_in<K: Kernel>(
    host: &K,
    pod: &K,
    pod_eth: &str,
    addr: Ipv6Net,
    mtu: u32,
) -> Result<Wired, CniError> {
    disable_ipv6_on(pod, pod_eth)?;
    let host_veth = create_pair(host, pod, POD_IFNAME, mtu).await?;
    let res = configure(host, pod, &host_veth, addr).await;
    remove_pair_on_error(host, &host_veth, res).await
}

/// A fresh egress veth pair: a stale `pod_ifname` of an earlier ADD goes (a re-ADD replaces
/// it), the host end `veth<8 hex>` (returned) is up in the node, the pod end in the pod.
pub(crate) async fn create_pair<K: Kernel>(
    host: &K,
    pod: &K,
    pod_ifname: &str,
    mtu: u32,
) -> Result<String, CniError> {
    pod.delete_link_by_name(pod_ifname)
        .await
        .map_err(setup_err(&format!("delete stale {pod_ifname}")))?;
    let host_veth = random_veth_name()?;
    let pod_peer = pod.peer().map_err(setup_err("pod netns"))?;
    host.create_veth(&VethPair {
        name: &host_veth,
        mtu,
        up: true,
        peer_name: pod_ifname,
        peer_mac: None,
        peer_netns: &pod_peer,
    })
    .await
    .map_err(setup_err("create veth"))?;
    Ok(host_veth)
}

/// `res`, with the pair of [`create_pair`] removed again when it is an error.
pub(crate) async fn remove_pair_on_error<K: Kernel, T>(
    host: &K,
    host_veth: &str,
    res: Result<T, CniError>,
) -> Result<T, CniError> {
    if res.is_err() {
        let _ = host.delete_link_by_name(host_veth).await;
    }
    res
}

/// Both ends of the pair, the pod end brought up: (pod end, host end).
pub(crate) async fn ends<K: Kernel>(
    host: &K,
    pod: &K,
    pod_ifname: &str,
    host_veth: &str,
) -> Result<(Link, Link), CniError> {
    let missing = |name: &str| CniError::setup(format!("egress-cni: link {name} vanished"));
    let pod_link = pod
        .link_by_name(pod_ifname)
        .await
        .map_err(setup_err(&format!("find {pod_ifname}")))?
        .ok_or_else(|| missing(pod_ifname))?;
    pod.set_link_up(pod_link.index, None)
        .await
        .map_err(setup_err(&format!("set {pod_ifname} up")))?;
    let host_link = host
        .link_by_name(host_veth)
        .await
        .map_err(setup_err("find host veth"))?
        .ok_or_else(|| missing(host_veth))?;
    Ok((pod_link, host_link))
}

async fn configure<K: Kernel>(
    host: &K,
    pod: &K,
    host_veth: &str,
    addr: Ipv6Net,
) -> Result<Wired, CniError> {
    let (pod_link, host_link) = ends(host, pod, POD_IFNAME, host_veth).await?;
    pod.replace_address_v6(pod_link.index, addr)
        .await
        .map_err(setup_err("add the address to v6if0"))?;
    wait_for_v6(
        pod,
        pod_link.index,
        "DAD of the pod address",
        DAD_WAIT,
        |a| {
            a.iter()
                .any(|x| x.addr.addr() == addr.addr() && !x.tentative)
                .then_some(())
        },
    )
    .await
    .map_err(setup_err("v6if0"))?;
    let gateway = wait_for_v6(
        host,
        host_link.index,
        "the host veth's link-local address",
        DAD_WAIT,
        |a| {
            a.iter()
                .map(|x| x.addr.addr())
                .find(Ipv6Addr::is_unicast_link_local)
        },
    )
    .await
    .map_err(setup_err("host veth"))?;
    let default = Route::default_via(MAIN_TABLE, gateway, pod_link.index);
    pod.replace_route(&default)
        .await
        .map_err(setup_err("pod default route via the host veth"))?;
    let route = Route {
        scope: Scope::Host,
        ..Route::link_scope(MAIN_TABLE, Route::host(addr.addr()), host_link.index)
    };
    add_host_route(host, &route).await?;
    Ok(Wired {
        host_veth: host_veth.to_owned(),
        host_mac: host_link.mac,
        pod_mac: pod_link.mac,
    })
}

/// The host's route to the pod's egress address; EEXIST (the stale route of a dying pod) is
/// retried up to 5 times, 100 ms apart (upstream `addRouteWithRetry`).
pub(crate) async fn add_host_route<K: Kernel>(host: &K, route: &Route) -> Result<(), CniError> {
    let mut attempt = 0;
    loop {
        match host.add_route(route).await {
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

/// Removes the egress interface `pod_ifname` (`v6if0`, `v4if0`) of the pod in `pod_ns`, and
/// with it the host end, its address and the host route; missing is fine.
pub async fn teardown(pod_ns: &Netns, pod_ifname: &str) -> Result<(), CniError> {
    let pod = NetlinkHandle::in_netns(pod_ns).map_err(setup_err("pod netlink"))?;
    teardown_in(&pod, pod_ifname).await
}

/// [`teardown`] against any [`Kernel`] bound to the pod's namespace.
pub async fn teardown_in<K: Kernel>(pod: &K, pod_ifname: &str) -> Result<(), CniError> {
    pod.delete_link_by_name(pod_ifname)
        .await
        .map(drop)
        .map_err(setup_err(&format!("delete {pod_ifname}")))
}
