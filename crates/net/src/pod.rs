//! Regular pod wiring and teardown (upstream `SetupPodNetwork` / `TeardownPodNetwork` in
//! `cmd/routed-eni-cni-plugin/driver/driver.go`): a veth pair between the host namespace and
//! the pod, the `169.254.1.1` gateway trick inside the pod, and the host's per-pod route and
//! policy rules. Written against [`Kernel`]; [`setup_pod`] and [`teardown_pod`] bind it to
//! the real kernel.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;

use crate::kernel::Kernel;
use crate::netlink::link::VethPair;
use crate::netlink::{Mac, NetlinkError, NetlinkHandle, Route, Rule};
use crate::netns::Netns;
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
    /// The pod's IPv4 address.
    pub pod_ip: Ipv4Addr,
    /// Route table of the ENI owning the IP, as sent by ipamd (`<= 1` means main).
    pub table: u32,
    /// MTU of both veth ends.
    pub mtu: u32,
}

impl PodNetwork {
    /// The fake gateway seen by the pod: `169.254.1.(index+1)`.
    pub fn gateway(&self) -> Ipv4Addr {
        let last = u8::try_from(self.index.saturating_add(1)).unwrap_or(u8::MAX);
        Ipv4Addr::new(169, 254, 1, last)
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

/// A random MAC differing from every MAC in the host namespace (at most 10 tries).
pub(crate) async fn unique_mac<K: Kernel>(host: &K) -> Result<Mac, NetlinkError> {
    let taken: Vec<Option<Mac>> = host.links().await?.into_iter().map(|l| l.mac).collect();
    for _ in 0..10 {
        let mac = random_mac()?;
        if !taken.contains(&Some(mac)) {
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

/// Wires a regular pod (upstream `SetupPodNetwork`). On failure after the veth exists
/// everything created is removed again before the error is returned.
pub async fn setup_pod_in<K: Kernel>(
    host: &K,
    pod_netns_path: &Path,
    p: &PodNetwork,
) -> Result<(), NetlinkError> {
    let (pod, _) = host.open_netns(pod_netns_path)?;
    let host_peer = host.peer()?;

    // A stale host veth from an earlier sandbox of the same pod goes first (upstream does
    // the same); a link of another kind with that name is not ours to delete.
    if let Some(existing) = host.link_by_name(&p.host_veth).await? {
        if existing.kind.as_deref() != Some("veth") {
            return Err(NetlinkError::ForeignLink {
                name: p.host_veth.clone(),
                kind: existing.kind.unwrap_or_else(|| "unknown".into()),
                netns: host.describe(),
            });
        }
        host.delete_link_by_name(&p.host_veth).await?;
    }
    let host_mac = unique_mac(host).await?;
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
    match wire(host, &pod, p, host_mac).await {
        Ok(()) => Ok(()),
        Err(err) => {
            // Best effort: the error of the setup is what the caller needs to see. The
            // veth goes too: a failed ADD leaves nothing behind, namespace or not.
            let _ = teardown_pod_in(host, p).await;
            let _ = host.delete_link_by_name(&p.host_veth).await;
            Err(err)
        }
    }
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

/// The rest of upstream's `SetupPodNetwork` once the veth pair exists: host end up with its
/// sysctls, the pod's gateway route, default route, address and static neighbour, then the
/// host route and rules.
async fn wire<K: Kernel>(
    host: &K,
    pod: &K,
    p: &PodNetwork,
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
    let gw = p.gateway();
    let table = p.pod_table();
    pod.replace_route(&Route::link_scope(table, Route::host(gw), pod_link.index))
        .await?;
    if p.index > 0 {
        pod.add_rule(&Rule::from_ip(p.pod_ip, table, priority::POD_MULTI_NIC))
            .await?;
    }
    pod.add_route(&Route::default_via(table, gw, pod_link.index))
        .await?;
    pod.replace_address(pod_link.index, Ipv4Net::from(p.pod_ip))
        .await?;
    pod.replace_permanent_neighbour(pod_link.index, gw, host_mac)
        .await?;

    host.replace_route(&Route::link_scope(
        MAIN_TABLE,
        Route::host(p.pod_ip),
        host_link.index,
    ))
    .await?;
    host.add_rule(&Rule::to_ip(p.pod_ip, MAIN_TABLE, priority::TO_POD))
        .await?;
    if p.host_table() != MAIN_TABLE {
        host.add_rule(&Rule::from_ip(p.pod_ip, p.host_table(), priority::FROM_POD))
            .await?;
    }
    Ok(())
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
            pod_ip: Ipv4Addr::new(10, 0, 1, 15),
            table,
            mtu: 9001,
        }
    }

    #[test]
    fn gateway_and_tables() {
        assert_eq!(pod(0, 254).gateway(), Ipv4Addr::new(169, 254, 1, 1));
        assert_eq!(pod(1, 3).gateway(), Ipv4Addr::new(169, 254, 1, 2));
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
