//! The pod's IPv6 egress interface (spec 8, `cmdAddEgressV6`): a second veth pair, host end
//! `veth<8 hex>` in the node namespace, pod end `v6if0` with the ULA from IPAM, a default
//! route via the host end's link-local address and a host route to the ULA.

use std::io::Read;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use cni::error::CniError;
use futures_util::TryStreamExt;
use ipnet::Ipv6Net;
use net::netlink::link::VethPair;
use net::netlink::{Mac, NetlinkError, NetlinkHandle};
use net::netns::Netns;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::route::RouteScope;
use rtnetlink::RouteMessageBuilder;

/// Pod end of the egress veth.
pub const POD_IFNAME: &str = "v6if0";
/// How long to wait for link-local addresses and duplicate address detection (upstream: 10 s,
/// polled every 50 ms).
const DAD_TIMEOUT: Duration = Duration::from_secs(10);
const DAD_POLL: Duration = Duration::from_millis(50);

/// What ADD created, for the CNI result.
#[derive(Debug, Clone)]
pub struct Wired {
    pub host_veth: String,
    pub host_mac: Option<Mac>,
    pub pod_mac: Option<Mac>,
}

fn setup_err(what: &str) -> impl FnOnce(NetlinkError) -> CniError + '_ {
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

/// IPv6 addresses of link `index` with their "still tentative" state.
async fn v6_addresses(
    nl: &NetlinkHandle,
    index: u32,
) -> Result<Vec<(Ipv6Addr, u8, bool)>, NetlinkError> {
    let msgs: Vec<_> = nl
        .raw()
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|source| NetlinkError::Request {
            op: format!("list addresses of link {index}"),
            source,
        })?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.family == AddressFamily::Inet6 && m.header.index == index)
        .filter_map(|m| {
            let mut tentative = m.header.flags.contains(AddressHeaderFlags::Tentative);
            let mut ip = None;
            for attr in &m.attributes {
                match attr {
                    AddressAttribute::Address(IpAddr::V6(a)) => ip = Some(*a),
                    AddressAttribute::Flags(f) if f.contains(AddressFlags::Tentative) => {
                        tentative = true;
                    }
                    _ => {}
                }
            }
            ip.map(|ip| (ip, m.header.prefix_len, tentative))
        })
        .collect())
}

/// Polls until `pick` finds something among the addresses of link `index`.
async fn wait_for<T>(
    nl: &NetlinkHandle,
    index: u32,
    what: &str,
    pick: impl Fn(&[(Ipv6Addr, u8, bool)]) -> Option<T>,
) -> Result<T, CniError> {
    let start = Instant::now();
    loop {
        let addrs = v6_addresses(nl, index).await.map_err(setup_err(what))?;
        if let Some(found) = pick(&addrs) {
            return Ok(found);
        }
        if start.elapsed() >= DAD_TIMEOUT {
            return Err(CniError::setup(format!(
                "egress-cni: timed out after {DAD_TIMEOUT:?} waiting for {what} (addresses: {addrs:?})"
            )));
        }
        tokio::time::sleep(DAD_POLL).await;
    }
}

/// Writes `net/ipv6/conf/<ifname>/disable_ipv6 = 1` inside the pod (no IPv6 on eth0).
fn disable_ipv6_on(pod_ns: &Netns, ifname: &str) -> Result<(), CniError> {
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
    let res = pod_ns
        .run(|| std::fs::write(&path, "1"))
        .map_err(|e| CniError::setup(format!("egress-cni: entering the pod netns: {e}")))?;
    res.map_err(|e| CniError::setup(format!("egress-cni: writing {path} in the pod: {e}")))
}

/// Creates the egress interface for `addr`. On failure the veth is removed again.
pub async fn setup(
    pod_ns: &Netns,
    pod_eth: &str,
    addr: Ipv6Net,
    mtu: u32,
) -> Result<Wired, CniError> {
    disable_ipv6_on(pod_ns, pod_eth)?;
    let host = NetlinkHandle::current().map_err(setup_err("node netlink"))?;
    let pod = NetlinkHandle::in_netns(pod_ns).map_err(setup_err("pod netlink"))?;
    // A re-ADD replaces the previous egress interface.
    pod.delete_link_by_name(POD_IFNAME)
        .await
        .map_err(setup_err("delete stale v6if0"))?;
    let host_veth = random_veth_name()?;
    host.create_veth(&VethPair {
        name: &host_veth,
        mtu,
        up: true,
        peer_name: POD_IFNAME,
        peer_mac: None,
        peer_netns: pod_ns,
    })
    .await
    .map_err(setup_err("create veth"))?;
    let res = configure(&host, &pod, &host_veth, addr).await;
    if res.is_err() {
        let _ = host.delete_link_by_name(&host_veth).await;
    }
    res
}

async fn configure(
    host: &NetlinkHandle,
    pod: &NetlinkHandle,
    host_veth: &str,
    addr: Ipv6Net,
) -> Result<Wired, CniError> {
    let missing = |name: &str| CniError::setup(format!("egress-cni: link {name} vanished"));
    let pod_link = pod
        .link_by_name(POD_IFNAME)
        .await
        .map_err(setup_err("find v6if0"))?
        .ok_or_else(|| missing(POD_IFNAME))?;
    pod.set_link_up(pod_link.index, None)
        .await
        .map_err(setup_err("set v6if0 up"))?;
    let host_link = host
        .link_by_name(host_veth)
        .await
        .map_err(setup_err("find host veth"))?
        .ok_or_else(|| missing(host_veth))?;
    pod.raw()
        .address()
        .add(pod_link.index, IpAddr::V6(addr.addr()), addr.prefix_len())
        .replace()
        .execute()
        .await
        .map_err(|source| CniError::setup(format!("egress-cni: add {addr} to v6if0: {source}")))?;
    wait_for(pod, pod_link.index, "DAD of the pod address", |a| {
        a.iter()
            .any(|(ip, _, tentative)| *ip == addr.addr() && !tentative)
            .then_some(())
    })
    .await?;
    let gateway = wait_for(
        host,
        host_link.index,
        "the host veth's link-local address",
        |a| {
            a.iter()
                .find(|(ip, _, _)| ip.is_unicast_link_local())
                .map(|(ip, _, _)| *ip)
        },
    )
    .await?;
    let default = RouteMessageBuilder::<Ipv6Addr>::new()
        .gateway(gateway)
        .output_interface(pod_link.index)
        .build();
    pod.raw()
        .route()
        .add(default)
        .replace()
        .execute()
        .await
        .map_err(|source| {
            CniError::setup(format!(
                "egress-cni: pod route ::/0 via {gateway} dev v6if0: {source}"
            ))
        })?;
    add_host_route(host, host_link.index, host_veth, addr.addr()).await?;
    Ok(Wired {
        host_veth: host_veth.to_owned(),
        host_mac: host_link.mac,
        pod_mac: pod_link.mac,
    })
}

/// `<ULA>/128 dev <hostveth> scope host`; EEXIST (the stale route of a dying pod) is retried
/// up to 5 times, 100 ms apart.
async fn add_host_route(
    host: &NetlinkHandle,
    index: u32,
    veth: &str,
    ip: Ipv6Addr,
) -> Result<(), CniError> {
    let mut attempt = 0;
    loop {
        let route = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(ip, 128)
            .output_interface(index)
            .scope(RouteScope::Host)
            .build();
        let res = host.raw().route().add(route).execute().await;
        match res {
            Ok(()) => return Ok(()),
            Err(source) => {
                let err = NetlinkError::Request {
                    op: format!("host route {ip}/128 dev {veth}"),
                    source,
                };
                attempt += 1;
                if !err.is_exists() || attempt >= 5 {
                    return Err(CniError::setup(format!("egress-cni: {err}")));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Removes `v6if0` (and with it the host end and the host route); missing is fine.
pub async fn teardown(pod_ns: &Netns) -> Result<(), CniError> {
    let pod = NetlinkHandle::in_netns(pod_ns).map_err(setup_err("pod netlink"))?;
    pod.delete_link_by_name(POD_IFNAME)
        .await
        .map(drop)
        .map_err(setup_err("delete v6if0"))
}
