//! Branch-ENI pods (security groups for pods) in `aws-cni` (spec 6.6–6.7; docs/cni-plugin.md,
//! "Branch-ENI pods"): ipamd answers `AddNetwork` with `PodVlanId != 0` and the branch ENI's
//! `PodENIMAC`, `PodENISubnetGW` and `ParentIfIndex`; the pod is wired by [`net::branch`] in
//! the conflist's `podSGEnforcingMode`; the result records the VLAN id in the dummy
//! interface's `mac`, so that DEL tears the pod down from `prevResult` without asking ipamd
//! (upstream `tryDelWithPrevResult`), or from `DelNetwork`'s `PodVlanId`. Both families: an
//! IPv6 branch pod gets its `ipv6Addr` and the gateway `fe80:ec2::1` from ipamd (spec 5.3,
//! 6.6).

use std::net::IpAddr;
use std::path::Path;

use net::branch::{BranchPod, BranchVlan, EnforcingMode, WiredBranchPod};
use net::names::{dummy_if_name, host_veth_name};
use net::netlink::NetlinkHandle;
use net::pod::PodNetwork;
use rpc::CniBackendClient;
use serde_json::{Value, json};

use crate::conf::{CniEnv, NetConf};
use crate::error::CniError;
use crate::grant::{Endpoints, Granted, give_back_if_unwired};
use crate::network_policy;
use crate::network_policy::pod_ref;
use crate::result::{CniResult, Interface, IpConfig};

/// The pod's veth: prefix `vlan` in strict mode, the configured one in standard mode.
fn branch_veth(conf: &NetConf, env: &CniEnv, mode: EnforcingMode, ip: IpAddr) -> PodNetwork {
    PodNetwork {
        host_veth: host_veth_name(
            mode.veth_prefix(&conf.veth_prefix),
            env.arg("K8S_POD_NAMESPACE"),
            env.arg("K8S_POD_NAME"),
            0,
        ),
        pod_ifname: env.ifname.clone(),
        index: 0,
        pod_ip: ip,
        table: 0,
        mtu: conf.mtu(),
    }
}

type Client = CniBackendClient<tonic::transport::Channel>;

/// ADD of a branch-ENI pod once ipamd answered with `vlan` and `granted`: the wiring (the
/// address goes back to ipamd when it fails, as upstream), the network policy agent, the
/// result.
pub(crate) async fn add(
    client: &mut Client,
    conf: &NetConf,
    env: &CniEnv,
    peers: &Endpoints,
    granted: &Granted,
    vlan: BranchVlan,
) -> Result<String, CniError> {
    let ip = granted.ip;
    if ip.is_ipv4() != vlan.subnet_gw.is_ipv4() {
        return Err(CniError::ipamd(format!(
            "ipamd sent a branch-ENI reply whose address {ip} and gateway {} differ in family",
            vlan.subnet_gw
        )));
    }
    let mode = EnforcingMode::from_conf(&conf.pod_sg_enforcing_mode);
    let b = BranchPod {
        veth: branch_veth(conf, env, mode, ip),
        vlan,
        mode,
    };
    let wired = wire(&env.netns, &b).await;
    let wired = give_back_if_unwired(client, conf, env, &[b.veth.pod_ip], wired).await?;
    if !granted.network_policy_mode.is_empty() {
        let mode = &granted.network_policy_mode;
        network_policy::enforce(&peers.npa, &pod_ref(env), mode, granted.interfaces).await?;
    }
    tracing::info!(
        container = %env.container_id,
        %ip,
        vlan = vlan.vlan_id,
        mode = ?mode,
        veth = %b.veth.host_veth,
        "ADD ok (branch ENI)"
    );
    Ok(result_json(conf, env, &b, wired, granted.table))
}

async fn wire(netns: &str, b: &BranchPod) -> Result<WiredBranchPod, net::netlink::NetlinkError> {
    let host = NetlinkHandle::current()?;
    net::branch::setup_branch_pod_in(&host, Path::new(netns), b).await
}

/// The CNI result of a branch-ENI pod, as upstream's `cmdAdd` builds it: the IP entry with
/// the branch subnet's gateway, the container interface's `mac` = the reply's route table
/// (0), and the dummy interface whose `mac` is the VLAN id (no `sandbox`).
pub fn result_json(
    conf: &NetConf,
    env: &CniEnv,
    b: &BranchPod,
    wired: WiredBranchPod,
    table: u32,
) -> String {
    let mut ip = IpConfig::host(b.veth.pod_ip, 1, !conf.version_at_least(1, 0));
    ip.other
        .insert("gateway".into(), json!(b.vlan.subnet_gw.to_string()));
    let host = Interface::new(&b.veth.host_veth, wired.host_mac.to_string(), None);
    let sandbox = Some(env.netns.clone());
    let interfaces = if conf.real_macs_in_result {
        let pod_mac = wired.pod_mac.map(|m| m.to_string()).unwrap_or_default();
        vec![host, Interface::new(&b.veth.pod_ifname, pod_mac, sandbox)]
    } else {
        let dummy = dummy_if_name(env.arg("K8S_POD_NAMESPACE"), env.arg("K8S_POD_NAME"));
        vec![
            host,
            Interface::new(&b.veth.pod_ifname, table.to_string(), sandbox),
            Interface::new(dummy, b.vlan.vlan_id.to_string(), None),
        ]
    };
    CniResult::add_result_json(&conf.cni_version, interfaces, vec![ip])
}

/// What `prevResult` says about a branch-ENI pod: `Ok(None)` when it is not one (no
/// `prevResult`, no dummy interface, VLAN id 0); the VLAN id and the container interface's
/// single address (either family) otherwise (upstream `tryDelWithPrevResult`). A dummy `mac` that is
/// not a number is an error, as is a branch pod whose interface or address is not there.
pub fn branch_in_prev_result(
    prev: Option<&Value>,
    env: &CniEnv,
) -> Result<Option<(u32, Option<IpAddr>)>, CniError> {
    let Some(prev) = prev.and_then(|v| CniResult::from_value(v).ok()) else {
        return Ok(None);
    };
    let dummy = dummy_if_name(env.arg("K8S_POD_NAMESPACE"), env.arg("K8S_POD_NAME"));
    let Some(dummy) = prev.interfaces.iter().find(|i| i.name == dummy) else {
        return Ok(None);
    };
    let vlan: u32 = dummy.mac.parse().map_err(|_| {
        CniError::decode(format!("malformed vlanID in prevResult: {:?}", dummy.mac))
    })?;
    if vlan == 0 {
        return Ok(None);
    }
    if env.netns.is_empty() {
        return Ok(Some((vlan, None)));
    }
    let index = prev
        .interfaces
        .iter()
        .position(|i| i.name == env.ifname)
        .ok_or_else(|| CniError::decode(format!("cannot find {} in prevResult", env.ifname)))?;
    let ips: Vec<_> = prev
        .ips
        .iter()
        .filter(|c| c.interface == Some(index))
        .collect();
    match ips.as_slice() {
        [one] => one.ip().map(|ip| Some((vlan, Some(ip)))).ok_or_else(|| {
            CniError::decode(format!("prevResult: {} is not an address", one.address))
        }),
        _ => Err(CniError::decode(format!(
            "found {} IPs for {} in prevResult",
            ips.len(),
            env.ifname
        ))),
    }
}

/// DEL of a branch-ENI pod from `prevResult` alone, before ipamd is asked (upstream
/// `tryDelWithPrevResult`): `Ok(true)` when `prevResult` describes one and it was handled
/// (torn down, or nothing to do without a network namespace).
pub(crate) async fn try_del_with_prev_result(
    conf: &NetConf,
    env: &CniEnv,
) -> Result<bool, CniError> {
    let Some((vlan, ip)) = branch_in_prev_result(conf.prev_result.as_ref(), env)? else {
        return Ok(false);
    };
    match ip {
        None => {
            tracing::info!(container = %env.container_id, vlan, "DEL: branch-ENI pod without a network namespace; nothing to do")
        }
        Some(ip) => {
            teardown(ip, vlan).await?;
            tracing::info!(container = %env.container_id, %ip, vlan, "DEL ok (branch ENI, from prevResult)");
        }
    }
    Ok(true)
}

/// Tears a branch-ENI pod's host side down, whichever mode wired it.
pub(crate) async fn teardown(ip: IpAddr, vlan: u32) -> Result<(), CniError> {
    let host = NetlinkHandle::current().map_err(|e| CniError::io(e.to_string()))?;
    net::branch::teardown_branch_pod_in(&host, ip, vlan)
        .await
        .map_err(|errors| {
            CniError::io(format!("tearing down the branch-ENI pod network: {errors}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::branch_of;
    use rpc::AddNetworkReply;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn env(netns: &str) -> CniEnv {
        CniEnv::from_lookup(|k| match k {
            "CNI_NETNS" => Some(netns.into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_ARGS" => Some("K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod".into()),
            _ => None,
        })
    }

    fn reply() -> AddNetworkReply {
        AddNetworkReply {
            pod_vlan_id: 7,
            pod_enimac: "02:42:00:00:00:07".into(),
            pod_eni_subnet_gw: "10.0.32.1".into(),
            parent_if_index: 4,
            ..Default::default()
        }
    }

    #[test]
    fn branch_fields_of_the_reply() {
        assert_eq!(branch_of(&AddNetworkReply::default()).unwrap(), None);
        let vlan = branch_of(&reply()).unwrap().unwrap();
        assert_eq!(
            (
                vlan.vlan_id,
                vlan.eni_mac.to_string(),
                vlan.subnet_gw,
                vlan.parent_ifindex
            ),
            (
                7,
                "02:42:00:00:00:07".into(),
                IpAddr::V4(Ipv4Addr::new(10, 0, 32, 1)),
                4
            )
        );
        for bad in [
            AddNetworkReply {
                pod_vlan_id: -1,
                ..reply()
            },
            AddNetworkReply {
                pod_enimac: "".into(),
                ..reply()
            },
            AddNetworkReply {
                pod_eni_subnet_gw: "10.0.32.1/19".into(),
                ..reply()
            },
            AddNetworkReply {
                parent_if_index: 0,
                ..reply()
            },
        ] {
            assert!(branch_of(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_result_round_trips_through_prev_result_as_upstream_encodes_it() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"aws-cni","podSGEnforcingMode":"standard"}"#,
        )
        .unwrap();
        let pod_env = env("/var/run/netns/p");
        let mode = EnforcingMode::from_conf(&conf.pod_sg_enforcing_mode);
        let b = BranchPod {
            veth: branch_veth(&conf, &pod_env, mode, Ipv4Addr::new(10, 0, 40, 7).into()),
            vlan: branch_of(&reply()).unwrap().unwrap(),
            mode,
        };
        assert_eq!(
            b.veth.host_veth, "enicc21c2d7785",
            "standard: the configured prefix"
        );
        let wired = WiredBranchPod {
            host_mac: "02:aa:00:00:00:01".parse().unwrap(),
            pod_mac: None,
        };
        let r: Value = serde_json::from_str(&result_json(&conf, &pod_env, &b, wired, 0)).unwrap();
        assert_eq!(
            r["ips"][0],
            json!({"version": "4", "address": "10.0.40.7/32", "interface": 1, "gateway": "10.0.32.1"})
        );
        assert_eq!(
            r["interfaces"][1],
            json!({"name": "eth0", "mac": "0", "sandbox": "/var/run/netns/p"})
        );
        assert_eq!(
            r["interfaces"][2],
            json!({"name": "dummycc21c2d7785", "mac": "7"})
        );
        assert_eq!(
            branch_in_prev_result(Some(&r), &pod_env).unwrap(),
            Some((7, Some(Ipv4Addr::new(10, 0, 40, 7).into())))
        );
        assert_eq!(
            branch_in_prev_result(Some(&r), &env("")).unwrap(),
            Some((7, None))
        );

        let strict = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"aws-cni"}"#).unwrap();
        let mode = EnforcingMode::from_conf(&strict.pod_sg_enforcing_mode);
        assert_eq!(mode, EnforcingMode::Strict, "strict is the default");
        let veth = branch_veth(&strict, &pod_env, mode, Ipv4Addr::new(10, 0, 40, 7).into());
        assert_eq!(veth.host_veth, "vlancc21c2d7785");
    }

    #[test]
    fn an_ipv6_branch_pod_gets_fe80_ec2_1_and_round_trips_through_prev_result() {
        let conf = NetConf::parse(br#"{"cniVersion":"0.4.0","name":"aws-cni"}"#).unwrap();
        let pod_env = env("/var/run/netns/p");
        let v6 = AddNetworkReply {
            pod_eni_subnet_gw: "fe80:ec2::1".into(),
            ..reply()
        };
        let vlan = branch_of(&v6).unwrap().unwrap();
        assert_eq!(vlan.subnet_gw, "fe80:ec2::1".parse::<IpAddr>().unwrap());
        let ip: IpAddr = "2600:1f13:0:40::7".parse::<Ipv6Addr>().unwrap().into();
        let mode = EnforcingMode::Strict;
        let b = BranchPod {
            veth: branch_veth(&conf, &pod_env, mode, ip),
            vlan,
            mode,
        };
        let wired = WiredBranchPod {
            host_mac: "02:aa:00:00:00:01".parse().unwrap(),
            pod_mac: None,
        };
        let r: Value = serde_json::from_str(&result_json(&conf, &pod_env, &b, wired, 0)).unwrap();
        assert_eq!(
            r["ips"][0],
            json!({"version": "6", "address": "2600:1f13:0:40::7/128", "interface": 1, "gateway": "fe80:ec2::1"})
        );
        assert_eq!(
            branch_in_prev_result(Some(&r), &pod_env).unwrap(),
            Some((7, Some(ip)))
        );
    }

    #[test]
    fn prev_results_that_are_not_branch_pods_or_are_malformed() {
        let env = env("/var/run/netns/p");
        let regular = json!({"cniVersion": "0.4.0",
            "interfaces": [{"name": "enicc21c2d7785"}, {"name": "eth0", "sandbox": "/var/run/netns/p", "mac": "3"},
                           {"name": "dummycc21c2d7785", "mac": "0", "sandbox": "2"}],
            "ips": [{"address": "10.0.0.9/32", "interface": 1}]});
        assert_eq!(branch_in_prev_result(Some(&regular), &env).unwrap(), None);
        assert_eq!(branch_in_prev_result(None, &env).unwrap(), None);
        let mut bad = regular.clone();
        bad["interfaces"][2]["mac"] = json!("seven");
        let err = branch_in_prev_result(Some(&bad), &env).unwrap_err();
        assert!(
            err.to_string().contains("malformed vlanID in prevResult"),
            "{err}"
        );
        let mut no_ip = regular.clone();
        no_ip["interfaces"][2]["mac"] = json!("7");
        no_ip["ips"] = json!([]);
        assert!(branch_in_prev_result(Some(&no_ip), &env).is_err());
    }
}
