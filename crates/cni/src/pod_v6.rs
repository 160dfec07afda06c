//! Pods of IPv6 clusters (spec 12.3): ipamd answers `AddNetwork` with `IPv6Addr` (and an
//! empty `IPv4Addr`); the pod is wired by [`net::pod6`] (`/128`, gateway `fe80::1`, host `/128`
//! route and the priority-512 rule), the result carries the IPv6 address with upstream's
//! interface encoding, and DEL tears down from ipamd's reply or, without ipamd, from
//! `prevResult`. [`crate::plugin`] hands over to this module when the address is IPv6.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use net::names::{dummy_if_name, host_veth_name};
use net::netlink::NetlinkHandle;
use net::netns::Netns;
use net::pod6::{PodNetwork6, setup_pod6, teardown_pod6};
use rpc::{CniBackendClient, DelNetworkRequest, IpAllocationMetadata};
use serde_json::{Map, Value, json};

use crate::conf::{CniEnv, NetConf};
use crate::error::CniError;
use crate::network_policy;
use crate::plugin::{Endpoints, Granted, pod_ref};
use crate::result::{CniResult, Interface, IpConfig};

/// The address of one allocation: `IPv4Addr`, or `IPv6Addr` when that is empty (upstream
/// `parseIPAddress` prefers IPv4).
pub fn granted_ip(alloc: &IpAllocationMetadata) -> Result<IpAddr, CniError> {
    let text = if alloc.i_pv4_addr.is_empty() {
        &alloc.i_pv6_addr
    } else {
        &alloc.i_pv4_addr
    };
    let ip: IpAddr = text
        .parse()
        .map_err(|_| CniError::ipamd(format!("ipamd sent an invalid address {text:?}")))?;
    // An IPv4 field holding an IPv6 address (or the other way round) is not ipamd's reply.
    if ip.is_ipv4() == alloc.i_pv4_addr.is_empty() {
        return Err(CniError::ipamd(format!(
            "ipamd sent an invalid address {text:?}"
        )));
    }
    Ok(ip)
}

/// The IPv6 pod interface of this ADD or DEL.
pub fn pod_network6(conf: &NetConf, env: &CniEnv, ip: Ipv6Addr, table: u32) -> PodNetwork6 {
    PodNetwork6 {
        host_veth: host_veth_name(
            &conf.veth_prefix,
            env.arg("K8S_POD_NAMESPACE"),
            env.arg("K8S_POD_NAME"),
            0,
        ),
        pod_ifname: env.ifname.clone(),
        index: 0,
        pod_ip: ip,
        table,
        mtu: conf.mtu(),
    }
}

type Client = CniBackendClient<tonic::transport::Channel>;

/// ADD of an IPv6 pod once ipamd granted `ip`: wiring (the address goes back to ipamd when it
/// fails), the network policy agent, the result.
pub(crate) async fn add(
    client: &mut Client,
    conf: &NetConf,
    env: &CniEnv,
    peers: &Endpoints,
    granted: &Granted,
    ip: Ipv6Addr,
) -> Result<String, CniError> {
    let p = pod_network6(conf, env, ip, granted.table);
    wire_or_give_back(client, conf, env, &p).await?;
    let host_mac = host_veth_mac(&p.host_veth).await;
    tracing::info!(container = %env.container_id, %ip, table = granted.table, veth = %p.host_veth, "ADD ok");
    let pod_mac = if conf.real_macs_in_result {
        pod_mac(&env.netns, &p.pod_ifname).await
    } else {
        String::new()
    };
    if !granted.network_policy_mode.is_empty() {
        let mode = &granted.network_policy_mode;
        network_policy::enforce(&peers.npa, &pod_ref(env), mode, granted.interfaces).await?;
    }
    Ok(result_json6(
        conf,
        env,
        &p,
        (&host_mac, &pod_mac),
        granted.device_number,
    ))
}

/// Wires the pod; when that fails, gives the address back to ipamd (`SetupNSFailed`).
async fn wire_or_give_back(
    client: &mut Client,
    conf: &NetConf,
    env: &CniEnv,
    p: &PodNetwork6,
) -> Result<(), CniError> {
    let wired = match Netns::current() {
        Ok(host) => setup_pod6(&host, Path::new(&env.netns), p)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let Err(e) = wired else {
        return Ok(());
    };
    let released = client
        .del_network(DelNetworkRequest {
            container_id: env.container_id.clone(),
            if_name: env.ifname.clone(),
            network_name: conf.name.clone(),
            k8s_pod_name: env.arg("K8S_POD_NAME").to_string(),
            k8s_pod_namespace: env.arg("K8S_POD_NAMESPACE").to_string(),
            reason: "SetupNSFailed".into(),
            ..Default::default()
        })
        .await;
    let release = match released {
        Ok(_) => "given back to ipamd".to_string(),
        Err(s) => format!("ipamd could not take it back: {}", s.message()),
    };
    let ip = p.pod_ip;
    tracing::error!(container = %env.container_id, %ip, "wiring failed ({release}): {e}");
    Err(CniError::setup(format!(
        "failed to set up the pod network (address {ip} {release}): {e}"
    )))
}

/// The CNI result of an IPv6 pod: upstream's encoding (container interface `mac` = route
/// table, dummy interface `mac` "0" and `sandbox` = device number), the `/128` on the
/// container interface (`"version": "6"` before CNI 1.0.0).
pub fn result_json6(
    conf: &NetConf,
    env: &CniEnv,
    p: &PodNetwork6,
    (host_mac, pod_mac): (&str, &str),
    device: i32,
) -> String {
    let ip = IpConfig {
        version: (!conf.version_at_least(1, 0)).then(|| "6".to_string()),
        address: format!("{}/128", p.pod_ip),
        interface: Some(1),
        other: Map::new(),
    };
    let host = Interface::new(&p.host_veth, host_mac, None);
    let sandbox = Some(env.netns.clone());
    let interfaces = if conf.real_macs_in_result {
        vec![host, Interface::new(&p.pod_ifname, pod_mac, sandbox)]
    } else {
        let dummy = dummy_if_name(env.arg("K8S_POD_NAMESPACE"), env.arg("K8S_POD_NAME"));
        vec![
            host,
            Interface::new(&p.pod_ifname, p.table.to_string(), sandbox),
            Interface::new(dummy, "0", Some(device.to_string())),
        ]
    };
    let mut other = Map::new();
    other.insert("dns".into(), json!({}));
    CniResult {
        cni_version: conf.cni_version.clone(),
        interfaces,
        ips: vec![ip],
        other,
    }
    .to_json()
}

/// What a previous result says about the pod, either family: (address, route table).
pub fn from_prev_result_any(prev: &Value) -> Option<(IpAddr, u32)> {
    let prev = CniResult::from_value(prev).ok()?;
    let ip: IpAddr = prev.ips.first()?.address.split('/').next()?.parse().ok()?;
    let table = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.as_deref().is_some_and(|s| s.starts_with('/')))
        .and_then(|i| i.mac.parse().ok())
        .unwrap_or(0);
    Some((ip, table))
}

/// Tears an IPv6 pod's host side down (rules and route; the veth goes with the namespace).
pub(crate) async fn teardown(
    conf: &NetConf,
    env: &CniEnv,
    ip: Ipv6Addr,
    table: u32,
) -> Result<(), CniError> {
    let p = pod_network6(conf, env, ip, table);
    let host = Netns::current().map_err(|e| CniError::io(e.to_string()))?;
    teardown_pod6(&host, &p)
        .await
        .map_err(|errors| CniError::io(format!("tearing down the pod network: {errors}")))
}

/// The MAC of the host end of the pod's veth (empty when it cannot be read).
async fn host_veth_mac(host_veth: &str) -> String {
    match NetlinkHandle::current() {
        Ok(nl) => nl
            .link_by_name(host_veth)
            .await
            .ok()
            .flatten()
            .map(|l| l.mac.map(|m| m.to_string()).unwrap_or_default()),
        Err(_) => None,
    }
    .unwrap_or_default()
}

/// The MAC of the pod's interface (empty when it cannot be read).
async fn pod_mac(netns: &str, ifname: &str) -> String {
    let Ok(ns) = Netns::open(netns) else {
        return String::new();
    };
    match NetlinkHandle::in_netns(&ns) {
        Ok(nl) => nl
            .link_by_name(ifname)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.mac)
            .map(|m| m.to_string())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> CniEnv {
        CniEnv::from_lookup(|k| match k {
            "CNI_NETNS" => Some("/var/run/netns/p".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_ARGS" => Some("K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod".into()),
            _ => None,
        })
    }

    #[test]
    fn ipamds_ipv6_reply_is_read_and_round_trips_through_the_result() {
        let alloc = IpAllocationMetadata {
            i_pv6_addr: "2001:db8:0:1::5".into(),
            device_number: 0,
            route_table_id: 254,
            ..Default::default()
        };
        let ip = granted_ip(&alloc).unwrap();
        assert_eq!(ip.to_string(), "2001:db8:0:1::5");
        for bad in [
            IpAllocationMetadata::default(),
            IpAllocationMetadata {
                i_pv4_addr: "2001:db8::1".into(),
                ..Default::default()
            },
            IpAllocationMetadata {
                i_pv6_addr: "10.0.0.1".into(),
                ..Default::default()
            },
        ] {
            assert!(granted_ip(&bad).is_err(), "{bad:?}");
        }
        for (version, want) in [("0.4.0", Some("6")), ("1.0.0", None)] {
            let conf = NetConf::parse(
                format!(r#"{{"cniVersion":"{version}","name":"aws-cni"}}"#).as_bytes(),
            )
            .unwrap();
            let IpAddr::V6(v6) = ip else { panic!() };
            let p = pod_network6(&conf, &env(), v6, 254);
            let r: Value = serde_json::from_str(&result_json6(
                &conf,
                &env(),
                &p,
                ("aa:bb:cc:dd:ee:ff", ""),
                0,
            ))
            .unwrap();
            assert_eq!(r["ips"][0]["address"], "2001:db8:0:1::5/128");
            assert_eq!(r["ips"][0]["interface"], 1);
            assert_eq!(r["ips"][0].get("version").and_then(Value::as_str), want);
            assert_eq!(r["interfaces"][0]["name"], "enicc21c2d7785");
            assert_eq!(r["interfaces"][1]["mac"], "254");
            assert_eq!(r["interfaces"][2]["name"], "dummycc21c2d7785");
            assert_eq!(from_prev_result_any(&r), Some((ip, 254)));
        }
    }
}
