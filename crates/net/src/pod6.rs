//! IPv6 pod wiring and teardown (upstream `SetupPodNetwork` / `TeardownPodNetwork` in
//! `cmd/routed-eni-cni-plugin/driver/driver.go` with an IPv6 address; spec 6.4 and 12.3): the
//! same veth pair as an IPv4 pod ([`crate::pod`]), the pod's `/128` with the `fe80::1` gateway
//! trick and a permanent neighbour to the host veth's MAC, IPv6 enabled on the pod interface
//! and `lo`, duplicate address detection waited out (at most 10 s); on the host the `/128`
//! route in main, `to <ip>/128 lookup main priority 512`, and `from <ip>/128 lookup <table>
//! priority 1536` for addresses of secondary ENIs. Written against [`Kernel6`].

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

use ipnet::Ipv6Net;

use crate::kernel::wait_for_v6;
use crate::kernel6::Kernel6;
use crate::netlink::link::VethPair;
use crate::netlink::{Mac, NetlinkError, NetlinkHandle, Route6, Rule6, Scope};
use crate::netns::Netns;
use crate::pod::{TeardownErrors, host_veth_sysctls, unique_mac};
use crate::route_table::{MAIN_TABLE, priority};

/// How long the pod's addresses may stay tentative (upstream `v6DADTimeout`, polled every
/// 50 ms as upstream's `WAIT_INTERVAL`).
pub const DAD_WAIT: (Duration, Duration) = (Duration::from_secs(10), Duration::from_millis(50));

/// One IPv6 pod interface to wire (or tear down).
#[derive(Debug, Clone)]
pub struct PodNetwork6 {
    /// Host-side veth name (`eni<hash>`).
    pub host_veth: String,
    /// Interface name inside the pod (`eth0`, `mNicIf<i>`).
    pub pod_ifname: String,
    /// Interface index within the pod (0 for `eth0`).
    pub index: u32,
    /// The pod's IPv6 address (a `/128`).
    pub pod_ip: Ipv6Addr,
    /// Route table of the ENI owning the address, as sent by ipamd (`<= 1` means main).
    pub table: u32,
    /// MTU of both veth ends.
    pub mtu: u32,
}

impl PodNetwork6 {
    /// The fake gateway seen by the pod: `fe80::(index+1)` (upstream
    /// `CalculatePodIPv6GatewayIP`).
    pub fn gateway(&self) -> Ipv6Addr {
        let last = u16::try_from(self.index.saturating_add(1)).unwrap_or(u16::MAX);
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last)
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

/// Wires an IPv6 pod from the host namespace `host_ns` (real kernel); see [`setup_pod6_in`].
pub async fn setup_pod6(
    host_ns: &Netns,
    pod_netns_path: &Path,
    p: &PodNetwork6,
) -> Result<(), NetlinkError> {
    let host = NetlinkHandle::in_netns(host_ns)?;
    setup_pod6_in(&host, pod_netns_path, p).await
}

/// Wires an IPv6 pod. On failure after the veth exists everything created is removed again
/// before the error is returned.
pub async fn setup_pod6_in<K: Kernel6>(
    host: &K,
    pod_netns_path: &Path,
    p: &PodNetwork6,
) -> Result<(), NetlinkError> {
    let (pod, _) = host.open_netns(pod_netns_path)?;
    let host_peer = host.peer()?;
    remove_stale_host_veth(host, &p.host_veth).await?;
    let host_mac = unique_mac(&host.links().await?)?;
    let pair = VethPair {
        name: &p.pod_ifname,
        mtu: p.mtu,
        up: true,
        peer_name: &p.host_veth,
        peer_mac: Some(host_mac),
        peer_netns: &host_peer,
    };
    if let Err(err) = pod.create_veth(&pair).await {
        return Err(name_in_use(err, host, &pod, p).await);
    }
    match wire6(host, &pod, p, host_mac).await {
        Ok(()) => Ok(()),
        Err(err) => {
            // Best effort: a failed ADD leaves nothing behind.
            let _ = teardown_pod6_in(host, p).await;
            let _ = host.delete_link_by_name(&p.host_veth).await;
            Err(err)
        }
    }
}

/// A host veth of the pod's name left by an earlier sandbox goes first (upstream); a link of
/// another kind with that name is not ours to delete.
async fn remove_stale_host_veth<K: Kernel6>(host: &K, name: &str) -> Result<(), NetlinkError> {
    let Some(existing) = host.link_by_name(name).await? else {
        return Ok(());
    };
    if existing.kind.as_deref() != Some("veth") {
        return Err(NetlinkError::ForeignLink {
            name: name.to_owned(),
            kind: existing.kind.unwrap_or_else(|| "unknown".into()),
            netns: host.describe(),
        });
    }
    host.delete_link_by_name(name).await.map(drop)
}

/// Names the interface that already exists when the pair could not be created.
async fn name_in_use<K: Kernel6>(
    err: NetlinkError,
    host: &K,
    pod: &K,
    p: &PodNetwork6,
) -> NetlinkError {
    if !err.is_exists() {
        return err;
    }
    for (k, name) in [(pod, &p.pod_ifname), (host, &p.host_veth)] {
        if let Ok(Some(_)) = k.link_by_name(name).await {
            return NetlinkError::NameInUse {
                name: name.clone(),
                netns: k.describe(),
            };
        }
    }
    err
}

/// Writes an IPv6 sysctl of the pod; a missing file (kernel without IPv6) is fine, as
/// upstream ignores ENOENT.
fn enable_ipv6<K: Kernel6>(pod: &K, ifname: &str) -> Result<(), NetlinkError> {
    pod.write_sysctl(&format!("net/ipv6/conf/{ifname}/disable_ipv6"), "0")
        .map(drop)
}

/// Upstream's `createVethPairContext.run` after the pair exists (IPv6 branch), then
/// `setupIPBasedContainerRouteRules` on the host.
async fn wire6<K: Kernel6>(
    host: &K,
    pod: &K,
    p: &PodNetwork6,
    host_mac: Mac,
) -> Result<(), NetlinkError> {
    let host_link = host
        .link_by_name(&p.host_veth)
        .await?
        .ok_or_else(|| NetlinkError::LinkNotFound(p.host_veth.clone()))?;
    host_veth_sysctls(host, &p.host_veth)?;
    host.set_link_up(host_link.index, None).await?;

    let pod_link = pod
        .link_by_name(&p.pod_ifname)
        .await?
        .ok_or_else(|| NetlinkError::LinkNotFound(p.pod_ifname.clone()))?;
    pod.set_link_up(pod_link.index, None).await?;
    enable_ipv6(pod, &p.pod_ifname)?;
    enable_ipv6(pod, "lo")?;
    wire_pod_side(pod, p, pod_link.index, host_mac).await?;
    wire_host_side(host, p, host_link.index).await
}

/// Inside the pod: `fe80::1/128 dev eth0`, `default via fe80::1 dev eth0`, the `/128`, the
/// permanent neighbour, then DAD waited out.
async fn wire_pod_side<K: Kernel6>(
    pod: &K,
    p: &PodNetwork6,
    index: u32,
    host_mac: Mac,
) -> Result<(), NetlinkError> {
    let gw = p.gateway();
    let table = p.pod_table();
    pod.replace_route_v6(&Route6 {
        table,
        dst: Ipv6Net::from(gw),
        gateway: None,
        oif: Some(index),
        scope: Scope::Link,
    })
    .await?;
    if p.index > 0 {
        pod.add_rule_v6(&Rule6::from_ip(p.pod_ip, table, priority::POD_MULTI_NIC))
            .await?;
    }
    pod.add_route_v6(&Route6 {
        table,
        dst: Ipv6Net::default(),
        gateway: Some(gw),
        oif: Some(index),
        scope: Scope::Universe,
    })
    .await?;
    pod.replace_address_v6(index, Ipv6Net::from(p.pod_ip))
        .await?;
    pod.replace_permanent_neighbour_v6(index, gw, host_mac)
        .await?;
    // Upstream `WaitForAddressesToBeStable`: no address of the interface still tentative.
    wait_for_v6(
        pod,
        index,
        "the pod's IPv6 addresses to leave DAD",
        DAD_WAIT,
        |a| (!a.iter().any(|x| x.tentative)).then_some(()),
    )
    .await
}

/// On the host: `<ip>/128 dev <hostveth> scope link` in main, the to-pod rule and, for a
/// secondary ENI's address, the from-pod rule.
async fn wire_host_side<K: Kernel6>(
    host: &K,
    p: &PodNetwork6,
    host_index: u32,
) -> Result<(), NetlinkError> {
    host.replace_route_v6(&Route6 {
        table: MAIN_TABLE,
        dst: Ipv6Net::from(p.pod_ip),
        gateway: None,
        oif: Some(host_index),
        scope: Scope::Link,
    })
    .await?;
    host.add_rule_v6(&Rule6::to_ip(p.pod_ip, MAIN_TABLE, priority::TO_POD))
        .await?;
    if p.host_table() != MAIN_TABLE {
        host.add_rule_v6(&Rule6::from_ip(
            p.pod_ip,
            p.host_table(),
            priority::FROM_POD,
        ))
        .await?;
    }
    Ok(())
}

/// Removes an IPv6 pod's host-side state best effort (upstream `TeardownPodNetwork`): the
/// to-pod rule, every from-pod rule and the host route. The veth goes with the pod's
/// namespace, as for IPv4 pods ([`crate::pod::teardown_pod`]).
pub async fn teardown_pod6(host_ns: &Netns, p: &PodNetwork6) -> Result<(), TeardownErrors> {
    let host = NetlinkHandle::in_netns(host_ns).map_err(|e| TeardownErrors(vec![e]))?;
    teardown_pod6_in(&host, p).await
}

/// [`teardown_pod6`] against any [`Kernel6`] bound to the host namespace.
pub async fn teardown_pod6_in<K: Kernel6>(host: &K, p: &PodNetwork6) -> Result<(), TeardownErrors> {
    let mut errors = Vec::new();
    let to_rule = Rule6::to_ip(p.pod_ip, MAIN_TABLE, priority::TO_POD);
    if let Err(e) = host.delete_rule_v6_all(&to_rule).await {
        errors.push(e);
    }
    if p.host_table() != MAIN_TABLE {
        let from_rule = Rule6::from_ip(p.pod_ip, p.host_table(), priority::FROM_POD);
        if let Err(e) = host.delete_rule_v6_all(&from_rule).await {
            errors.push(e);
        }
    }
    let route = Route6 {
        table: MAIN_TABLE,
        dst: Ipv6Net::from(p.pod_ip),
        gateway: None,
        oif: None,
        scope: Scope::Link,
    };
    if let Err(e) = host.delete_route_v6(&route).await {
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

    fn pod(index: u32, table: u32) -> PodNetwork6 {
        PodNetwork6 {
            host_veth: "enicc21c2d7785".into(),
            pod_ifname: "eth0".into(),
            index,
            pod_ip: "2001:db8:0:1::5".parse().unwrap(),
            table,
            mtu: 9001,
        }
    }

    #[test]
    fn gateway_and_tables() {
        assert_eq!(pod(0, 254).gateway().to_string(), "fe80::1");
        assert_eq!(pod(1, 3).gateway().to_string(), "fe80::2");
        assert_eq!(pod(0, 1).host_table(), MAIN_TABLE);
        assert_eq!(pod(0, 0).host_table(), MAIN_TABLE);
        assert_eq!(pod(0, 3).host_table(), 3);
        assert_eq!(pod(0, 3).pod_table(), MAIN_TABLE);
        assert_eq!(pod(2, 3).pod_table(), 2);
    }
}
