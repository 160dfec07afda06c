//! Multi-homed pods: one pod interface per address ipamd grants (upstream `cmdAdd` with
//! `RequiresMultiNICAttachment`, then `SetupPodNetwork` over every entry; docs/cni-plugin.md,
//! "Multi-homed pods"). Interface 0 (`CNI_IFNAME`) is wired by [`crate::plugin::add`] as for
//! any pod, its veth half prepared while ipamd answers; interface i > 0 (`mNicIf<i>`, host
//! veth hashed from `"<ns>.<name>.<i>"`) follows here once interface 0 is up. DEL's side:
//! every interface from ipamd's `DelNetwork` reply or, without ipamd, from `prevResult`
//! (upstream `teardownPodNetworkWithPrevResult`).

use std::net::IpAddr;
use std::path::Path;

use net::kernel::Kernel;
use net::names::{container_if_name, dummy_if_name, host_veth_name};
use net::netlink::{Mac, NetlinkError, NetlinkHandle, Rule};
use net::pod::{PodNetwork, finish_pod_in, prepare_pod_in, remove_pod_veth, teardown_pod_in};
use net::route_table::{priority, route_table_id};
use serde_json::Value;

use crate::conf::{CniEnv, NetConf};
use crate::family::from_prev_result_any;
use crate::grant::GrantedAddress;
use crate::result::CniResult;

/// One pod interface ADD wired, for the result.
#[derive(Debug, Clone)]
pub struct WiredInterface {
    pub p: PodNetwork,
    /// MAC of the host end of the pair.
    pub host_mac: Mac,
    /// MAC of the pod's interface (the kernel's choice).
    pub pod_mac: Option<Mac>,
}

/// The pod interface at `index` (0: `CNI_IFNAME`, i > 0: `mNicIf<i>`) for `ip` and its host
/// route table `table`.
pub fn interface_network(
    conf: &NetConf,
    env: &CniEnv,
    index: u32,
    ip: IpAddr,
    table: u32,
) -> PodNetwork {
    PodNetwork {
        host_veth: host_veth_name(
            &conf.veth_prefix,
            env.arg("K8S_POD_NAMESPACE"),
            env.arg("K8S_POD_NAME"),
            index,
        ),
        pod_ifname: container_if_name(&env.ifname, index),
        index,
        pod_ip: ip,
        table,
        mtu: conf.mtu(),
    }
}

/// Wires interfaces 1, 2, ... for `further` (ipamd's entries after the first), one after the
/// other. When interface i fails, the ones before it (from 1) are undone and its error is
/// returned: the caller undoes interface 0 and gives the addresses back.
pub(crate) async fn wire_further(
    host: &NetlinkHandle,
    conf: &NetConf,
    env: &CniEnv,
    further: &[GrantedAddress],
) -> Result<Vec<WiredInterface>, NetlinkError> {
    let netns = Path::new(&env.netns);
    let mut wired: Vec<WiredInterface> = Vec::with_capacity(further.len());
    for (index, a) in (1u32..).zip(further) {
        let p = interface_network(conf, env, index, a.ip, a.table);
        let done = match prepare_pod_in(host, netns, &p).await {
            Ok(prepared) => finish_pod_in(host, &prepared, &p)
                .await
                .map(|()| (prepared.host_mac, prepared.pod_mac)),
            Err(e) => Err(e),
        };
        match done {
            Ok((host_mac, pod_mac)) => wired.push(WiredInterface {
                p,
                host_mac,
                pod_mac,
            }),
            Err(e) => {
                // finish_pod_in removed the host side and the pair; the pod's rule may stay.
                let _ = remove_pod_rule(host, netns, &p).await;
                for w in wired.iter().rev() {
                    undo_interface(host, netns, &w.p).await;
                }
                return Err(e);
            }
        }
    }
    Ok(wired)
}

/// Undoes a wired interface, best effort: the host's route and rules, the pod's rule of an
/// interface i > 0 (it is not on the link, so it would outlive the pair), then the pair.
pub(crate) async fn undo_interface(host: &NetlinkHandle, netns: &Path, p: &PodNetwork) {
    if let Err(e) = teardown_pod_in(host, p).await {
        tracing::warn!(ip = %p.pod_ip, "undoing {}: {e}", p.pod_ifname);
    }
    if let Err(e) = remove_pod_rule(host, netns, p).await {
        tracing::warn!(ip = %p.pod_ip, "undoing {}: the pod's rule: {e}", p.pod_ifname);
    }
    if let Err(e) = remove_pod_veth(host, p).await {
        tracing::warn!(veth = %p.host_veth, "undoing {}: the veth: {e}", p.pod_ifname);
    }
}

/// Removes the rule `from <ip> lookup <i> priority 1` an interface i > 0 put in the pod.
async fn remove_pod_rule(
    host: &NetlinkHandle,
    netns: &Path,
    p: &PodNetwork,
) -> Result<(), NetlinkError> {
    if p.index == 0 {
        return Ok(());
    }
    let (pod, _) = host.open_netns(netns)?;
    let rule = Rule::from_ip(p.pod_ip, p.pod_table(), priority::POD_MULTI_NIC);
    pod.delete_rule_all(&rule).await.map(drop)
}

/// The usable addresses of a `DelNetwork` reply (entries without an address are skipped, as
/// upstream's `cmdDel` does), as (address, host route table).
pub(crate) fn released_addresses(allocs: &[rpc::IpAllocationMetadata]) -> Vec<(IpAddr, u32)> {
    allocs
        .iter()
        .filter_map(|a| GrantedAddress::of(a).ok())
        .map(|a| (a.ip, a.table))
        .collect()
}

/// Every pod interface a previous result describes, as (address, host route table), for DEL
/// without ipamd (upstream `teardownPodNetworkWithPrevResult`): the container interfaces
/// `CNI_IFNAME`, `mNicIf1`, ... with their address; the table is the interface's `mac`
/// (ADD's encoding), or else the one of the device number the dummy interface records.
/// A result without the container interface `CNI_IFNAME` (not written by ADD with this
/// `CNI_IFNAME`) falls back to its first address and container interface
/// ([`from_prev_result_any`]), as DEL did before multi-NIC pods.
pub fn interfaces_in_prev_result(prev: &Value, env: &CniEnv) -> Vec<(IpAddr, u32)> {
    let Ok(r) = CniResult::from_value(prev) else {
        return Vec::new();
    };
    let dummy = dummy_if_name(env.arg("K8S_POD_NAMESPACE"), env.arg("K8S_POD_NAME"));
    let dummy_table = r
        .interfaces
        .iter()
        .find(|i| i.name == dummy && i.mac == "0")
        .and_then(|i| i.sandbox.as_deref()?.parse::<u32>().ok())
        .map(|device| route_table_id(0, device));
    if r.container_interface(&env.ifname).is_none() {
        return from_prev_result_any(prev).into_iter().collect();
    }
    (0u32..)
        .take(r.interfaces.len())
        .filter_map(|index| {
            let at = r.container_interface(&container_if_name(&env.ifname, index))?;
            let ip = r.ips.iter().find(|c| c.interface == Some(at))?;
            let ip: IpAddr = ip.address.split('/').next()?.parse().ok()?;
            let table = r.interfaces[at].mac.parse::<u32>().ok().or(dummy_table);
            Some((ip, table.unwrap_or(0)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env() -> CniEnv {
        CniEnv::from_lookup(|k| match k {
            "CNI_NETNS" => Some("/var/run/netns/p".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_ARGS" => Some("K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod".into()),
            _ => None,
        })
    }

    #[test]
    fn interface_names_follow_upstream() {
        let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"aws-cni"}"#).unwrap();
        let env = CniEnv::from_lookup(|k| (k == "CNI_IFNAME").then(|| "eth0".to_string()));
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let first = interface_network(&conf, &env, 0, ip, 2);
        let second = interface_network(&conf, &env, 1, ip, 10100);
        // Upstream's names_test vectors for an empty namespace and pod name.
        assert_eq!(
            (first.host_veth.as_str(), first.pod_ifname.as_str()),
            ("eni3a52ce78095", "eth0")
        );
        assert_eq!(
            (second.host_veth.as_str(), second.pod_ifname.as_str()),
            ("enice799470a46", "mNicIf1")
        );
        assert_eq!(second.gateway().to_string(), "169.254.1.2");
        assert_eq!((second.pod_table(), second.host_table()), (1, 10100));
    }

    /// Upstream's `Test_teardownPodNetworkWithPrevResult` multi-NIC case: the tables come
    /// from the container interfaces' `mac`.
    #[test]
    fn every_interface_of_a_prev_result_with_its_table() {
        let prev = json!({"cniVersion":"1.0.0",
            "interfaces":[{"name":"enicc21c2d7785"},
                {"name":"eth0","mac":"2","sandbox":"/var/run/netns/p"},
                {"name":"eni9b6ad3b2a4d"},
                {"name":"mNicIf1","mac":"10100","sandbox":"/var/run/netns/p"},
                {"name":"dummycc21c2d7785","mac":"0","sandbox":"1"}],
            "ips":[{"address":"10.0.0.20/32","interface":1},
                {"address":"10.1.0.20/32","interface":3}]});
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            interfaces_in_prev_result(&prev, &env()),
            vec![(ip("10.0.0.20"), 2), (ip("10.1.0.20"), 10100)]
        );
        // Before v1.20 the container interface had no `mac`: the dummy's device number.
        let mut old = prev.clone();
        old["interfaces"][1]["mac"] = json!("");
        assert_eq!(
            interfaces_in_prev_result(&old, &env())[0],
            (ip("10.0.0.20"), 2)
        );
        old["interfaces"][4]["sandbox"] = json!("0");
        assert_eq!(
            interfaces_in_prev_result(&old, &env())[0],
            (ip("10.0.0.20"), 254)
        );
        // An interface without its address is skipped; the others are still torn down.
        let mut partial = prev.clone();
        partial["ips"] = json!([{"address":"10.1.0.20/32","interface":3}]);
        assert_eq!(
            interfaces_in_prev_result(&partial, &env()),
            vec![(ip("10.1.0.20"), 10100)]
        );
        assert!(interfaces_in_prev_result(&json!({"interfaces": 3}), &env()).is_empty());
        // Another interface name: the first address and container interface, as before.
        let other = CniEnv::from_lookup(|k| match k {
            "CNI_IFNAME" => Some("net1".into()),
            "CNI_ARGS" => Some("K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod".into()),
            _ => None,
        });
        assert_eq!(
            interfaces_in_prev_result(&prev, &other),
            vec![(ip("10.0.0.20"), 2)]
        );
    }

    /// Upstream `cmdAdd`'s result of a two-card pod: host0, cont0, host1, cont1, dummy; each
    /// address points at its container interface, whose `mac` is its table; and it reads
    /// back to both interfaces for DEL.
    #[test]
    fn a_two_interface_result_in_upstreams_shape_reads_back() {
        let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"aws-cni"}"#).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mac = Mac([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        let wired: Vec<WiredInterface> = [(ip("10.0.0.20"), 2), (ip("10.1.0.20"), 10100)]
            .into_iter()
            .zip(0u32..)
            .map(|((a, table), index)| WiredInterface {
                p: interface_network(&conf, &env(), index, a, table),
                host_mac: mac,
                pod_mac: None,
            })
            .collect();
        let r: Value =
            serde_json::from_str(&crate::plugin::result_json(&conf, &env(), &wired, 1)).unwrap();
        let host1 = net::names::host_veth_name("eni", "default", "sample-pod", 1);
        assert_eq!(
            r["interfaces"],
            json!([{"name": "enicc21c2d7785", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "eth0", "mac": "2", "sandbox": "/var/run/netns/p"},
                {"name": host1, "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "mNicIf1", "mac": "10100", "sandbox": "/var/run/netns/p"},
                {"name": "dummycc21c2d7785", "mac": "0", "sandbox": "1"}])
        );
        assert_eq!(
            r["ips"],
            json!([{"address": "10.0.0.20/32", "interface": 1},
                {"address": "10.1.0.20/32", "interface": 3}])
        );
        assert_eq!(
            interfaces_in_prev_result(&r, &env()),
            vec![(ip("10.0.0.20"), 2), (ip("10.1.0.20"), 10100)]
        );
    }
}
