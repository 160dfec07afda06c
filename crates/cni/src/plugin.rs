//! ADD and DEL: ipamd over gRPC, then the pod's wiring with netlink (upstream's
//! `cmdAdd`/`cmdDel` in `cmd/routed-eni-cni-plugin/cni.go`; docs/upstream-compat.md).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Instant;

use net::names::dummy_if_name;
use net::netlink::{NetlinkError, NetlinkHandle};
use net::netns::Netns;
use net::pod::{
    PodNetwork, PreparedPod, finish_pod_in, prepare_pod_in, remove_pod_veth, teardown_pod,
};
use rpc::{CniBackendClient, DelNetworkRequest};
use serde_json::Value;

use crate::conf::{CniEnv, NetConf};
use crate::error::CniError;
use crate::family::{Unspecified, from_prev_result_any, same_family};
use crate::grant::{Endpoints, Granted, give_back_if_unwired, ipamd, request_address};
use crate::multi_nic::{
    self, WiredInterface, interface_network, interfaces_in_prev_result, released_addresses,
};
use crate::network_policy::{self, pod_ref};
use crate::result::{CniResult, Interface, IpConfig};
use crate::timing;

/// The pod interface of this ADD or DEL (either family: that of `ip`): interface 0.
pub fn pod_network(conf: &NetConf, env: &CniEnv, ip: IpAddr, table: u32) -> PodNetwork {
    interface_network(conf, env, 0, ip, table)
}

/// Logged (info) when ipamd granted the other family than the one prepared meanwhile (the
/// conflist names none, or the wrong one), so the veth half is made again.
pub const REPREPARED_FOR_GRANTED_FAMILY: &str =
    "ADD: ipamd granted the other IP family; veth prepared again for it";

/// ADD: returns the CNI result JSON. ipamd's answer and the half of the wiring that does
/// not need the address (the veth pair, the pod's gateway) are awaited together; the
/// address, the host route and the rules follow (docs/cni-plugin.md, "Where ADD and DEL
/// spend their time"). The half prepared meanwhile is of the family the conflist names
/// ([`NetConf::pod_ip_family`]); should ipamd grant the other family, that half is made
/// again for it.
pub async fn add(conf: &NetConf, env: &CniEnv, peers: &Endpoints) -> Result<String, CniError> {
    tracing::info!(
        container = %env.container_id,
        netns = %env.netns,
        ifname = %env.ifname,
        pod = %format!("{}/{}", env.arg("K8S_POD_NAMESPACE"), env.arg("K8S_POD_NAME")),
        "ADD"
    );
    check_add_env(env)?;
    let mut p = pod_network(conf, env, conf.pod_ip_family().unspecified(), 0);
    let (asked, prepared) = futures_util::future::join(
        ask_ipamd(&peers.ipamd, conf, env),
        prepare_veth(&env.netns, &p),
    )
    .await;
    timing::mark("ipamd+veth");
    let (mut client, granted) = match asked {
        Ok(asked) => asked,
        Err(e) => {
            // No address: the pair goes again (best effort; ipamd's error is the answer).
            if let Ok((host, _)) = &prepared {
                let _ = remove_pod_veth(host, &p).await;
            }
            return Err(e);
        }
    };
    if let Some(vlan) = granted.branch {
        // A branch-ENI pod: its veth has its own name in strict mode and its own host side
        // in both; the pair made meanwhile goes, net::branch wires the pod.
        if let Ok((host, _)) = &prepared {
            let _ = remove_pod_veth(host, &p).await;
        }
        return crate::branch::add(&mut client, conf, env, peers, &granted, vlan).await;
    }
    let wired = wire_granted(conf, env, &mut p, prepared, &granted).await;
    let addresses: Vec<IpAddr> = std::iter::once(granted.ip)
        .chain(granted.further.iter().map(|a| a.ip))
        .collect();
    let wired = give_back_if_unwired(&mut client, conf, env, &addresses, wired).await?;
    timing::mark("finish");
    if !granted.network_policy_mode.is_empty() {
        // The address stays assigned when this fails: kubelet's DEL releases it (upstream).
        let pod = pod_ref(env);
        let mode = &granted.network_policy_mode;
        network_policy::enforce(&peers.npa, &pod, mode, granted.interfaces).await?;
        timing::mark("policy");
    }
    let result = result_json(conf, env, &wired, granted.device_number);
    timing::mark("result");
    tracing::info!(
        container = %env.container_id,
        ip = %granted.ip,
        table = granted.table,
        veth = %p.host_veth,
        interfaces = wired.len(),
        phases_us = %timing::summary(),
        "ADD ok"
    );
    Ok(result)
}

/// Wires what ipamd granted: interface 0 from the half `prepared` while ipamd answered (made
/// again when ipamd granted the other family), then, for a multi-NIC pod, the interfaces
/// after it ([`multi_nic::wire_further`]). All or nothing: when one fails, those done are
/// undone, interface 0 included.
async fn wire_granted(
    conf: &NetConf,
    env: &CniEnv,
    p: &mut PodNetwork,
    mut prepared: Result<(NetlinkHandle, PreparedPod<NetlinkHandle>), NetlinkError>,
    granted: &Granted,
) -> Result<Vec<WiredInterface>, NetlinkError> {
    if !same_family(granted.ip, p.pod_ip) {
        // The conflist named no family (or the wrong one): the pair made meanwhile goes
        // and the granted family's is made now.
        tracing::info!(ip = %granted.ip, "{REPREPARED_FOR_GRANTED_FAMILY}");
        if let Ok((host, _)) = &prepared {
            let _ = remove_pod_veth(host, p).await;
        }
        p.pod_ip = granted.ip;
        prepared = prepare_veth(&env.netns, p).await;
    }
    p.pod_ip = granted.ip;
    p.table = granted.table;
    let (host, prepared) = prepared?;
    finish_pod_in(&host, &prepared, p).await?;
    let first = WiredInterface {
        p: p.clone(),
        host_mac: prepared.host_mac,
        pod_mac: prepared.pod_mac,
    };
    if granted.further.is_empty() {
        return Ok(vec![first]);
    }
    match multi_nic::wire_further(&host, conf, env, &granted.further).await {
        Ok(further) => Ok(std::iter::once(first).chain(further).collect()),
        Err(e) => {
            multi_nic::undo_interface(&host, Path::new(&env.netns), p).await;
            Err(e)
        }
    }
}

/// Connects to ipamd and asks it for the pod's address.
async fn ask_ipamd(
    target: &str,
    conf: &NetConf,
    env: &CniEnv,
) -> Result<(CniBackendClient<tonic::transport::Channel>, Granted), CniError> {
    let since = Instant::now();
    let mut client = ipamd(target).await?;
    let granted = request_address(&mut client, conf, env).await?;
    timing::span("ipamd", since);
    Ok((client, granted))
}

/// The host namespace's netlink handle and the address-independent half of the wiring
/// ([`prepare_pod_in`]; `p`'s address is not read).
async fn prepare_veth(
    netns: &str,
    p: &PodNetwork,
) -> Result<(NetlinkHandle, PreparedPod<NetlinkHandle>), NetlinkError> {
    let since = Instant::now();
    let host = NetlinkHandle::current()?;
    let prepared = prepare_pod_in(&host, Path::new(netns), p).await?;
    timing::span("veth", since);
    Ok((host, prepared))
}

/// ADD needs a container, a namespace that exists and an interface name.
fn check_add_env(env: &CniEnv) -> Result<(), CniError> {
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_NETNS", &env.netns)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    if !Path::new(&env.netns).exists() {
        return Err(CniError::invalid_env(format!(
            "CNI_NETNS {} does not exist",
            env.netns
        )));
    }
    Ok(())
}

/// The CNI result, with upstream's encoding (container interface `mac` = route table,
/// dummy interface `mac` = VLAN id "0" and `sandbox` = device number of interface 0) so
/// that upstream's plugin can tear down what ours set up, and the other way round:
/// interfaces host0, cont0, host1, cont1, ..., dummy; one address per container interface.
pub fn result_json(conf: &NetConf, env: &CniEnv, wired: &[WiredInterface], device: i32) -> String {
    // CNI 0.3.x/0.4.0 results carry the IP version on each entry; 1.0.0 dropped the field.
    let with_version = !conf.version_at_least(1, 0);
    let sandbox = Some(env.netns.clone());
    let mut interfaces = Vec::with_capacity(2 * wired.len() + 1);
    let mut ips = Vec::with_capacity(wired.len());
    for w in wired {
        interfaces.push(Interface::new(&w.p.host_veth, w.host_mac.to_string(), None));
        let pod_mac = match w.pod_mac {
            _ if !conf.real_macs_in_result => w.p.table.to_string(),
            Some(mac) => mac.to_string(),
            None => String::new(),
        };
        interfaces.push(Interface::new(&w.p.pod_ifname, pod_mac, sandbox.clone()));
        ips.push(IpConfig::host(
            w.p.pod_ip,
            interfaces.len() - 1,
            with_version,
        ));
    }
    if !conf.real_macs_in_result {
        let dummy = dummy_if_name(env.arg("K8S_POD_NAMESPACE"), env.arg("K8S_POD_NAME"));
        interfaces.push(Interface::new(dummy, "0", Some(device.to_string())));
    }
    CniResult::add_result_json(&conf.cni_version, interfaces, ips)
}

/// What a previous result says about an IPv4 pod: (address, route table).
pub fn from_prev_result(prev: &Value) -> Option<(Ipv4Addr, u32)> {
    match from_prev_result_any(prev)? {
        (IpAddr::V4(ip), table) => Some((ip, table)),
        (IpAddr::V6(_), _) => None,
    }
}

/// The text ipamd puts in the gRPC error for a pod it does not know (already released);
/// upstream's plugin matches it.
const UNKNOWN_POD: &str = "datastore: unknown pod";

/// Logged (warn) when DEL tore the pod's host side down from `prevResult` because ipamd could
/// not be reached or answered `DelNetwork` with an error (other than unknown pod). Stable:
/// operators grep and count it; every message of that path starts with `DEL: ipamd error`.
pub const DEL_TORN_DOWN_FROM_PREV_RESULT: &str = "DEL: ipamd error, torn down from prevResult";
/// Same path, but `prevResult` is missing or does not describe a pod of ours.
pub const DEL_NO_PREV_RESULT: &str = "DEL: ipamd error, no usable prevResult, nothing torn down";
/// Same path, but the teardown from `prevResult` failed (DEL still succeeds, as upstream).
pub const DEL_PREV_RESULT_TEARDOWN_FAILED: &str =
    "DEL: ipamd error, teardown from prevResult failed";

/// What ipamd made of `DelNetwork`.
enum Release {
    /// Released; the pod's addresses with their route tables (those ipamd sent usable, one
    /// per pod interface), the reply's `NetworkPolicyMode` and `PodVlanId` (non-zero for a
    /// branch-ENI pod).
    Released(Vec<(IpAddr, u32)>, String, u32),
    /// `datastore: unknown pod`: nothing held (already released).
    UnknownPod,
    /// ipamd unreachable or any other gRPC error (as `cmdDel` treats them).
    Failed(String),
}

fn del_request(conf: &NetConf, env: &CniEnv) -> DelNetworkRequest {
    DelNetworkRequest {
        container_id: env.container_id.clone(),
        if_name: env.ifname.clone(),
        network_name: conf.name.clone(),
        k8s_pod_name: env.arg("K8S_POD_NAME").to_string(),
        k8s_pod_namespace: env.arg("K8S_POD_NAMESPACE").to_string(),
        k8s_pod_infra_container_id: env.arg("K8S_POD_INFRA_CONTAINER_ID").to_string(),
        k8s_pod_uid: env.arg("K8S_POD_UID").to_string(),
        reason: "PodDeleted".into(),
        ..Default::default()
    }
}

/// `DelNetwork`; only a reply with `Success=false` is an error (upstream: "del cmd: failed
/// to process delete request").
async fn release(req: DelNetworkRequest, target: &str) -> Result<Release, CniError> {
    let mut client = match ipamd(target).await {
        Ok(c) => c,
        Err(e) => return Ok(Release::Failed(e.msg)),
    };
    match client.del_network(req).await {
        Ok(r) => {
            let r = r.into_inner();
            if !r.success {
                return Err(CniError::ipamd(
                    "ipamd failed to process the delete request (Success=false; see ipamd's log)",
                ));
            }
            Ok(Release::Released(
                released_addresses(&r.ip_allocation_metadata),
                r.network_policy_mode,
                u32::try_from(r.pod_vlan_id).unwrap_or(0),
            ))
        }
        Err(s) if s.message().contains(UNKNOWN_POD) => Ok(Release::UnknownPod),
        Err(s) => Ok(Release::Failed(format!(
            "DelNetwork: {:?}: {}",
            s.code(),
            s.message()
        ))),
    }
}

/// Tears the host side of every pod interface down (upstream `TeardownPodNetwork` over all
/// entries), each whatever happened to the others; fails with all their errors.
async fn teardown(conf: &NetConf, env: &CniEnv, wiring: &[(IpAddr, u32)]) -> Result<(), CniError> {
    let host = Netns::current().map_err(|e| CniError::io(e.to_string()))?;
    let mut errors = Vec::new();
    for (index, &(ip, table)) in (0u32..).zip(wiring) {
        let p = interface_network(conf, env, index, ip, table);
        if let Err(e) = teardown_pod(&host, &p).await {
            errors.push(format!("{ip}: {e}"));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(CniError::io(format!(
        "tearing down the pod network: {}",
        errors.join("; ")
    )))
}

/// ipamd failed: tear the host side of every pod interface down from `prevResult` (upstream's
/// `teardownPodNetworkWithPrevResult`) and let DEL succeed whatever happens, so that the pod
/// never sticks in Terminating. The addresses are reclaimed by ipamd later.
async fn teardown_after_ipamd_error(conf: &NetConf, env: &CniEnv, ipamd_error: &str) {
    let container = env.container_id.as_str();
    let wiring = prev_result_wiring(conf, env);
    if wiring.is_empty() {
        tracing::warn!(container, ipamd_error, "{DEL_NO_PREV_RESULT}");
        return;
    }
    let ips = wiring
        .iter()
        .map(|(ip, table)| format!("{ip} (table {table})"))
        .collect::<Vec<_>>()
        .join(", ");
    match teardown(conf, env, &wiring).await {
        Ok(()) => tracing::warn!(
            container,
            ips,
            ipamd_error,
            "{DEL_TORN_DOWN_FROM_PREV_RESULT}"
        ),
        Err(e) => tracing::warn!(
            container,
            ips,
            ipamd_error,
            teardown_error = %e,
            "{DEL_PREV_RESULT_TEARDOWN_FAILED}"
        ),
    }
}

/// Every pod interface `prevResult` describes ([`interfaces_in_prev_result`]).
fn prev_result_wiring(conf: &NetConf, env: &CniEnv) -> Vec<(IpAddr, u32)> {
    conf.prev_result
        .as_ref()
        .map(|prev| interfaces_in_prev_result(prev, env))
        .unwrap_or_default()
}

/// DEL: idempotent and best effort; succeeds when the pod is already gone and when ipamd
/// fails (as upstream's `cmdDel` does), so that kubelet never sticks.
pub async fn del(conf: &NetConf, env: &CniEnv, peers: &Endpoints) -> Result<(), CniError> {
    tracing::info!(container = %env.container_id, netns = %env.netns, "DEL");
    // A branch-ENI pod is torn down from prevResult alone; ipamd holds nothing for it.
    if crate::branch::try_del_with_prev_result(conf, env).await? {
        return Ok(());
    }
    let released = release(del_request(conf, env), &peers.ipamd).await?;
    timing::mark("del_network");
    let (wiring, np_mode, vlan) = match released {
        Release::Failed(e) => {
            teardown_after_ipamd_error(conf, env, &e).await;
            return Ok(());
        }
        // Nothing (usable) from ipamd: whatever prevResult describes, best effort.
        Release::Released(w, mode, vlan) if w.is_empty() => {
            (prev_result_wiring(conf, env), mode, vlan)
        }
        Release::Released(w, mode, vlan) => (w, mode, vlan),
        // Already released (a repeated DEL): as upstream, touch nothing. The address may
        // belong to another pod by now, and its rules with it.
        Release::UnknownPod => {
            tracing::info!(container = %env.container_id, "DEL: ipamd does not know the pod; nothing to do");
            return Ok(());
        }
    };
    match (wiring.first(), vlan) {
        // A branch-ENI pod that ipamd knows from its annotation (upstream: nothing to do
        // without a network namespace, not even the network policy agent).
        (_, vlan) if vlan != 0 && env.netns.is_empty() => return Ok(()),
        (Some(&(ip, _)), vlan) if vlan != 0 => {
            crate::branch::teardown(ip, vlan).await?;
            timing::mark("teardown");
        }
        (Some(_), _) => {
            teardown(conf, env, &wiring).await?;
            timing::mark("teardown");
        }
        (None, _) => {}
    }
    if !np_mode.is_empty() {
        network_policy::delete(&peers.npa, &pod_ref(env)).await?;
        timing::mark("policy");
    }
    tracing::info!(container = %env.container_id, phases_us = %timing::summary(), "DEL ok");
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use net::netlink::Mac;

    /// `p` as ADD wired it, its host end's MAC ending in `last`.
    pub(crate) fn wired(p: PodNetwork, last: u8) -> Vec<WiredInterface> {
        vec![WiredInterface {
            p,
            host_mac: Mac([0xaa, 0xbb, 0xcc, 0xdd, 0xee, last]),
            pod_mac: Some(Mac([0x02, 0, 0, 0, 0, last])),
        }]
    }

    #[test]
    fn results_carry_upstreams_encoding_and_round_trip_for_del() {
        let conf = NetConf::parse(br#"{"cniVersion":"0.3.1","name":"aws-cni"}"#).unwrap();
        let env = CniEnv::from_lookup(|k| match k {
            "CNI_NETNS" => Some("/var/run/netns/p".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_ARGS" => Some("K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod".into()),
            _ => None,
        });
        let p = pod_network(&conf, &env, "10.0.0.9".parse().unwrap(), 3);
        assert_eq!(p.host_veth, "enicc21c2d7785");
        let r: Value = serde_json::from_str(&result_json(&conf, &env, &wired(p, 0xff), 2)).unwrap();
        assert_eq!(r["interfaces"][1]["mac"], "3");
        assert_eq!(r["interfaces"][2]["name"], "dummycc21c2d7785");
        assert_eq!(r["interfaces"][2]["sandbox"], "2");
        assert_eq!(r["ips"][0]["version"], "4");
        assert_eq!(from_prev_result(&r), Some(("10.0.0.9".parse().unwrap(), 3)));
        assert_eq!(
            crate::grant::ipamd_target(|_| None),
            "unix:///var/run/aws-node/ipamd.sock"
        );
    }

    #[test]
    fn ip_entries_carry_version_4_only_before_cni_1_0() {
        let env = CniEnv::from_lookup(|k| match k {
            "CNI_NETNS" => Some("/var/run/netns/p".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_ARGS" => Some("K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod".into()),
            _ => None,
        });
        for (version, want) in [
            ("0.3.0", Some("4")),
            ("0.3.1", Some("4")),
            ("0.4.0", Some("4")),
            ("1.0.0", None),
            ("1.1.0", None),
        ] {
            for real_macs in [false, true] {
                let conf = NetConf::parse(
                    format!(
                        r#"{{"cniVersion":"{version}","name":"aws-cni","realMacsInResult":{real_macs}}}"#
                    )
                    .as_bytes(),
                )
                .unwrap();
                let p = pod_network(&conf, &env, "10.0.0.9".parse().unwrap(), 3);
                let r: Value =
                    serde_json::from_str(&result_json(&conf, &env, &wired(p, 1), 2)).unwrap();
                assert_eq!(r["cniVersion"], version);
                assert_eq!(
                    r["ips"][0].get("version").and_then(Value::as_str),
                    want,
                    "cniVersion {version} (realMacsInResult {real_macs}): {r}"
                );
                assert_eq!(r["ips"][0]["address"], "10.0.0.9/32");
            }
        }
    }
}
