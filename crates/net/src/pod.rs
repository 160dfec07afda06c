//! Regular pod wiring and teardown of both families (upstream `SetupPodNetwork` /
//! `TeardownPodNetwork` in `cmd/routed-eni-cni-plugin/driver/driver.go`): a veth pair
//! between the host namespace and the pod, the `169.254.1.1` (IPv6: `fe80::1`) gateway
//! trick inside the pod, and the host's per-pod route and policy rules. The steps only IPv6
//! pods take are in [`crate::pod6`]. Written against [`Kernel`]; [`setup_pod`] and
//! [`teardown_pod`] bind it to the real kernel.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::Ipv4Net;

use crate::kernel::Kernel;
use crate::netlink::link::VethPair;
use crate::netlink::{Link, Mac, NetlinkError, NetlinkHandle, Route, Rule};
use crate::netns::Netns;
use crate::pod6;
use crate::route_table::{MAIN_TABLE, priority};

/// One pod interface to wire (or tear down).
#[derive(Debug, Clone)]
pub struct PodNetwork {
    /// Host-side veth name (`eni<hash>`).
    pub host_veth: String,
    /// Interface name inside the pod (`eth0`, `mNicIf<i>`).
    pub pod_ifname: String,
    /// Interface index within the pod (0 for `eth0`).
    pub index: u32,
    /// The pod's address: IPv4 (a `/32`) or IPv6 (a `/128`). [`prepare_pod_in`] reads only
    /// its family (the address itself may be unspecified until ipamd answers).
    pub pod_ip: IpAddr,
    /// Route table of the ENI owning the IP, as sent by ipamd (`<= 1` means main).
    pub table: u32,
    /// MTU of both veth ends.
    pub mtu: u32,
}

impl PodNetwork {
    /// The fake gateway seen by the pod: `169.254.1.(index+1)`, or for an IPv6 pod
    /// `fe80::(index+1)` (upstream `CalculatePodIPv6GatewayIP`).
    pub fn gateway(&self) -> IpAddr {
        let next = self.index.saturating_add(1);
        match self.pod_ip {
            IpAddr::V4(_) => {
                let last = u8::try_from(next).unwrap_or(u8::MAX);
                IpAddr::V4(Ipv4Addr::new(169, 254, 1, last))
            }
            IpAddr::V6(_) => {
                let last = u16::try_from(next).unwrap_or(u16::MAX);
                IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last))
            }
        }
    }

    /// The host route table for the pod's from-rule (main for legacy `1` and below).
    pub fn host_table(&self) -> u32 {
        if self.table > 1 {
            self.table
        } else {
            MAIN_TABLE
        }
    }

    /// The routing table inside the pod: main for index 0, `index` otherwise.
    pub fn pod_table(&self) -> u32 {
        if self.index == 0 {
            MAIN_TABLE
        } else {
            self.index
        }
    }
}

/// Every failure of a best-effort teardown.
#[derive(Debug, thiserror::Error)]
#[error("pod teardown failed: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct TeardownErrors(pub Vec<NetlinkError>);

/// A random locally administered unicast MAC.
fn random_mac() -> Result<Mac, NetlinkError> {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| NetlinkError::Invalid(format!("reading /dev/urandom: {e}")))?;
    b[0] = (b[0] | 0x02) & 0xfe;
    Ok(Mac(b))
}

/// A random MAC differing from every MAC in `taken` (the host's links; at most 10 tries,
/// as upstream's `generateUniqueRandomMAC`).
pub(crate) fn unique_mac(taken: &[Link]) -> Result<Mac, NetlinkError> {
    for _ in 0..10 {
        let mac = random_mac()?;
        if !taken.iter().any(|l| l.mac == Some(mac)) {
            return Ok(mac);
        }
    }
    Err(NetlinkError::Invalid(
        "no unique host veth MAC after 10 attempts".into(),
    ))
}

/// Host-veth IPv6 sysctls (`accept_ra=0`, `accept_redirects=1`, `forwarding=0`); a missing
/// file (kernel without IPv6) is ignored.
pub(crate) fn host_veth_sysctls<K: Kernel>(host: &K, veth: &str) -> Result<(), NetlinkError> {
    for (key, value) in [
        ("accept_ra", "0"),
        ("accept_redirects", "1"),
        ("forwarding", "0"),
    ] {
        host.write_sysctl(&format!("net/ipv6/conf/{veth}/{key}"), value)?;
    }
    Ok(())
}

/// Wires a regular pod from the host namespace `host_ns` (real kernel); see [`setup_pod_in`].
pub async fn setup_pod(
    host_ns: &Netns,
    pod_netns_path: &Path,
    p: &PodNetwork,
) -> Result<(), NetlinkError> {
    let host = NetlinkHandle::in_netns(host_ns)?;
    setup_pod_in(&host, pod_netns_path, p).await
}

/// Wires a regular pod (upstream `SetupPodNetwork`): [`prepare_pod_in`] then
/// [`finish_pod_in`]. On failure after the veth exists everything created is removed again
/// before the error is returned.
pub async fn setup_pod_in<K: Kernel>(
    host: &K,
    pod_netns_path: &Path,
    p: &PodNetwork,
) -> Result<(), NetlinkError> {
    let prepared = prepare_pod_in(host, pod_netns_path, p).await?;
    finish_pod_in(host, &prepared, p).await
}

/// What [`prepare_pod_in`] made: the veth pair, both ends up, and the pod's gateway route,
/// default route and gateway neighbour. The pod's address, the host route and the rules
/// come with [`finish_pod_in`], once the address is known.
pub struct PreparedPod<K> {
    pod: K,
    host_index: u32,
    pod_index: u32,
    /// MAC of the host end (chosen here: random, unique on the host).
    pub host_mac: Mac,
    /// MAC of the pod's interface (the kernel's choice).
    pub pod_mac: Option<Mac>,
}

/// The part of upstream's `SetupPodNetwork` that does not depend on the pod's address (only
/// `p`'s names, index and MTU are read), so that the plugin can do it while ipamd picks the
/// address: a stale host veth of ours with the same name goes (upstream does the same; a
/// link of another kind is not ours to delete), the pair is created with the pod end in the
/// pod's namespace (up) and the host end in `host`'s, the host end gets its sysctls and goes
/// up, and the pod gets its gateway route, default route and gateway neighbour. On failure
/// the pair is removed again. Undo a success with [`remove_pod_veth`].
pub async fn prepare_pod_in<K: Kernel>(
    host: &K,
    pod_netns_path: &Path,
    p: &PodNetwork,
) -> Result<PreparedPod<K>, NetlinkError> {
    let (pod, _) = host.open_netns(pod_netns_path)?;
    let host_peer = host.peer()?;
    // One dump serves the stale-veth check and the MAC uniqueness check.
    let links = host.links().await?;
    if let Some(existing) = links.iter().find(|l| l.name == p.host_veth) {
        if existing.kind.as_deref() != Some("veth") {
            return Err(NetlinkError::ForeignLink {
                name: p.host_veth.clone(),
                kind: existing.kind.clone().unwrap_or_else(|| "unknown".into()),
                netns: host.describe(),
            });
        }
        host.delete_link_by_name(&p.host_veth).await?;
    }
    let host_mac = unique_mac(&links)?;
    drop(links);
    let pair = VethPair {
        name: &p.pod_ifname,
        mtu: p.mtu,
        up: true,
        peer_name: &p.host_veth,
        peer_mac: Some(host_mac),
        peer_netns: &host_peer,
    };
    if let Err(err) = pod.create_veth(&pair).await {
        return Err(explain_create_error(err, host, &pod, p).await);
    }
    let host_side = host_end_up(host, p);
    let pod_side = pod_gateway(&pod, p, host_mac);
    match futures_util::future::try_join(host_side, pod_side).await {
        Ok((host_index, pod_link)) => Ok(PreparedPod {
            host_index,
            pod_index: pod_link.index,
            pod_mac: pod_link.mac,
            host_mac,
            pod,
        }),
        Err(err) => {
            // Best effort: the error of the setup is what the caller needs to see.
            let _ = remove_pod_veth(host, p).await;
            Err(err)
        }
    }
}

impl<K> PreparedPod<K> {
    /// Index of the host end of the pair.
    pub fn host_index(&self) -> u32 {
        self.host_index
    }
}

/// The pod side of [`finish_pod_in`] alone: the pod's address (branch-ENI pods get their
/// host side from [`crate::branch`]).
pub(crate) async fn address_pod<K: Kernel>(
    prepared: &PreparedPod<K>,
    p: &PodNetwork,
) -> Result<(), NetlinkError> {
    pod_address(&prepared.pod, prepared.pod_index, p).await
}

/// Removes the pod's veth pair (the pod end goes with the host end): undoes a
/// [`prepare_pod_in`] whose pod got no address. `Ok(false)` when there was none.
pub async fn remove_pod_veth<K: Kernel>(host: &K, p: &PodNetwork) -> Result<bool, NetlinkError> {
    host.delete_link_by_name(&p.host_veth).await
}

/// Names the interface that already exists when the pair could not be created.
async fn explain_create_error<K: Kernel>(
    err: NetlinkError,
    host: &K,
    pod: &K,
    p: &PodNetwork,
) -> NetlinkError {
    if !err.is_exists() {
        return err;
    }
    if let Ok(Some(_)) = pod.link_by_name(&p.pod_ifname).await {
        return NetlinkError::NameInUse {
            name: p.pod_ifname.clone(),
            netns: pod.describe(),
        };
    }
    if let Ok(Some(_)) = host.link_by_name(&p.host_veth).await {
        return NetlinkError::NameInUse {
            name: p.host_veth.clone(),
            netns: host.describe(),
        };
    }
    err
}

/// The host end: its IPv6 sysctls, then up (upstream's order). Returns its index.
async fn host_end_up<K: Kernel>(host: &K, p: &PodNetwork) -> Result<u32, NetlinkError> {
    let host_link = host
        .link_by_name(&p.host_veth)
        .await?
        .ok_or_else(|| NetlinkError::LinkNotFound(p.host_veth.clone()))?;
    host_veth_sysctls(host, &p.host_veth)?;
    host.set_link_up(host_link.index, None).await?;
    Ok(host_link.index)
}

/// The pod end (created up): for an IPv6 pod IPv6 enabled first ([`pod6::enable_ipv6`]);
/// the gateway ([`PodNetwork::gateway`]) as a link-scope route, the default route via it,
/// and the permanent neighbour entry gateway → host veth MAC.
async fn pod_gateway<K: Kernel>(
    pod: &K,
    p: &PodNetwork,
    host_mac: Mac,
) -> Result<Link, NetlinkError> {
    let pod_link = pod
        .link_by_name(&p.pod_ifname)
        .await?
        .ok_or_else(|| NetlinkError::LinkNotFound(p.pod_ifname.clone()))?;
    if p.pod_ip.is_ipv6() {
        pod6::enable_ipv6(pod, &pod_link).await?;
    }
    let gw = p.gateway();
    let table = p.pod_table();
    pod.replace_route(&Route::link_scope(table, Route::host(gw), pod_link.index))
        .await?;
    pod.add_route(&Route::default_via(table, gw, pod_link.index))
        .await?;
    pod.replace_permanent_neighbour(pod_link.index, gw, host_mac)
        .await?;
    Ok(pod_link)
}

/// The rest of upstream's `SetupPodNetwork` once `p.pod_ip` and `p.table` are known: the
/// pod's address (and for a second interface its from-rule), the host's route to the pod
/// and its rules, as concurrent requests. On failure everything the pod got on the host and
/// the veth pair are removed again.
pub async fn finish_pod_in<K: Kernel>(
    host: &K,
    prepared: &PreparedPod<K>,
    p: &PodNetwork,
) -> Result<(), NetlinkError> {
    let pod_side = pod_address(&prepared.pod, prepared.pod_index, p);
    let host_side = host_route_and_rules(host, prepared.host_index, p);
    match futures_util::future::try_join(pod_side, host_side).await {
        Ok(((), ())) => Ok(()),
        Err(err) => {
            // Best effort: the error of the setup is what the caller needs to see. The
            // veth goes too: a failed ADD leaves nothing behind, namespace or not.
            let _ = teardown_pod_in(host, p).await;
            let _ = remove_pod_veth(host, p).await;
            Err(err)
        }
    }
}

/// The pod's `/32` address (IPv6: the `/128`, DAD waited out: [`pod6::pod_address_v6`]), and
/// for a second interface the rule sending its traffic to the interface's own table.
async fn pod_address<K: Kernel>(pod: &K, index: u32, p: &PodNetwork) -> Result<(), NetlinkError> {
    if p.index > 0 {
        pod.add_rule(&Rule::from_ip(
            p.pod_ip,
            p.pod_table(),
            priority::POD_MULTI_NIC,
        ))
        .await?;
    }
    match p.pod_ip {
        IpAddr::V4(ip) => pod.replace_address(index, Ipv4Net::from(ip)).await,
        IpAddr::V6(ip) => pod6::pod_address_v6(pod, index, ip).await,
    }
}

/// The host's `/32` (`/128`) route to the pod over its veth, the to-pod rule and, off the main
/// table, the from-pod rule.
async fn host_route_and_rules<K: Kernel>(
    host: &K,
    veth_index: u32,
    p: &PodNetwork,
) -> Result<(), NetlinkError> {
    let route = Route::link_scope(MAIN_TABLE, Route::host(p.pod_ip), veth_index);
    let to_rule = Rule::to_ip(p.pod_ip, MAIN_TABLE, priority::TO_POD);
    let from_rule = (p.host_table() != MAIN_TABLE)
        .then(|| Rule::from_ip(p.pod_ip, p.host_table(), priority::FROM_POD));
    let from = async {
        match &from_rule {
            Some(rule) => host.add_rule(rule).await,
            None => Ok(()),
        }
    };
    futures_util::future::try_join3(host.replace_route(&route), host.add_rule(&to_rule), from)
        .await
        .map(drop)
}

/// Removes a pod's host-side state (upstream `TeardownPodNetwork`) best effort: the to-pod
/// rule, every from-pod rule and the host route. The veth pair is left to go with the pod's
/// network namespace when the runtime removes it, as upstream does: deleting it here would
/// wait out the kernel's RCU grace period inside every DEL. A veth of the same name still
/// there at the pod's next ADD is replaced. Missing objects are not errors; every other
/// failure is collected.
pub async fn teardown_pod(host_ns: &Netns, p: &PodNetwork) -> Result<(), TeardownErrors> {
    let host = NetlinkHandle::in_netns(host_ns).map_err(|e| TeardownErrors(vec![e]))?;
    teardown_pod_in(&host, p).await
}

/// [`teardown_pod`] against any [`Kernel`] bound to the host namespace.
pub async fn teardown_pod_in<K: Kernel>(host: &K, p: &PodNetwork) -> Result<(), TeardownErrors> {
    let mut errors = Vec::new();
    let to_rule = Rule::to_ip(p.pod_ip, MAIN_TABLE, priority::TO_POD);
    if let Err(e) = host.delete_rule_all(&to_rule).await {
        errors.push(e);
    }
    if p.host_table() != MAIN_TABLE {
        let from_rule = Rule::from_ip(p.pod_ip, p.host_table(), priority::FROM_POD);
        if let Err(e) = host.delete_rule_all(&from_rule).await {
            errors.push(e);
        }
    }
    let route = Route {
        oif: None,
        ..Route::link_scope(MAIN_TABLE, Route::host(p.pod_ip), 0)
    };
    if let Err(e) = host.delete_route(&route).await {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(TeardownErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(index: u32, table: u32) -> PodNetwork {
        PodNetwork {
            host_veth: "enicc21c2d7785".into(),
            pod_ifname: "eth0".into(),
            index,
            pod_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 15)),
            table,
            mtu: 9001,
        }
    }

    #[test]
    fn gateway_and_tables() {
        assert_eq!(pod(0, 254).gateway().to_string(), "169.254.1.1");
        assert_eq!(pod(1, 3).gateway().to_string(), "169.254.1.2");
        let v6 = |index| PodNetwork {
            pod_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ..pod(index, 254)
        };
        assert_eq!(v6(0).gateway().to_string(), "fe80::1");
        assert_eq!(v6(1).gateway().to_string(), "fe80::2");
        assert_eq!(pod(0, 1).host_table(), MAIN_TABLE);
        assert_eq!(pod(0, 0).host_table(), MAIN_TABLE);
        assert_eq!(pod(0, 3).host_table(), 3);
        assert_eq!(pod(0, 3).pod_table(), MAIN_TABLE);
        assert_eq!(pod(2, 3).pod_table(), 2);
    }

    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..32 {
            let mac = random_mac().unwrap();
            assert_eq!(mac.0[0] & 0x03, 0x02, "{mac}");
        }
    }
}
