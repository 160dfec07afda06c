//! CHECK (upstream has none): the pod's veth, address, routes, neighbour and the host's
//! route and rules must be what ADD made, as recorded in `prevResult`. Branch-ENI pods are
//! not checked (success, with a warning).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};
use net::netlink::{NetlinkHandle, Rule, Scope};
use net::netns::Netns;
use net::route_table::{MAIN_TABLE, priority};
use net::state::NetnsState;
use serde_json::Value;

use crate::conf::{CniEnv, NetConf};
use crate::error::CniError;
use crate::result::CniResult;

/// What `prevResult` says ADD wired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub host_veth: String,
    pub pod_ifname: String,
    pub pod_ip: Ipv4Addr,
    /// Host route table of the pod's from-rule (main when the IP is on the primary ENI).
    pub table: u32,
    pub mtu: u32,
}

/// Reads `prevResult` (our own result encoding, as ADD writes it).
pub fn expected(prev: &Value, ifname: &str, mtu: u32) -> Result<Expected, String> {
    let prev = CniResult::from_value(prev)?;
    if prev.interfaces.is_empty() {
        return Err("prevResult has no interfaces".into());
    }
    let host_veth = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_none() && !i.name.starts_with("dummy"))
        .map(|i| i.name.clone())
        .ok_or("prevResult names no host veth")?;
    let pod = prev
        .container_interface(ifname)
        .ok_or_else(|| format!("prevResult has no container interface {ifname}"))?;
    let ip = prev
        .ips
        .iter()
        .find(|ip| ip.interface.is_none_or(|i| i == pod))
        .ok_or("prevResult has no IP address for the container interface")?;
    let pod_ip = ip
        .ipv4()
        .ok_or_else(|| format!("prevResult address {:?} is not IPv4", ip.address))?;
    let table = match prev.interfaces[pod].mac.as_str() {
        // realMacsInResult: a real MAC, no table recorded (the from-pod rule is not checked).
        "" => MAIN_TABLE,
        mac if mac.contains(':') => MAIN_TABLE,
        t => t
            .parse::<u32>()
            .map_err(|_| format!("prevResult route table {t:?} is not a number"))?,
    };
    let table = if table > 1 { table } else { MAIN_TABLE };
    Ok(Expected {
        host_veth,
        pod_ifname: ifname.to_string(),
        pod_ip,
        table,
        mtu,
    })
}

const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// Everything that differs between the kernel and `e` (empty: all as ADD left it).
pub fn problems(host: &NetnsState, pod: &NetnsState, e: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    let ip32 = Ipv4Net::from(e.pod_ip);
    let host_link = host.link(&e.host_veth);
    match host_link {
        None => out.push(format!("host veth {} is missing", e.host_veth)),
        Some(l) if l.kind.as_deref() != Some("veth") || !l.up => out.push(format!(
            "host link {} is not an up veth (kind {:?}, up {})",
            e.host_veth, l.kind, l.up
        )),
        Some(_) => {}
    }
    let host_route = host.unicast_routes(MAIN_TABLE).into_iter().any(|r| {
        r.dst == IpNet::from(ip32)
            && r.dev.as_deref() == Some(&e.host_veth)
            && r.scope == Scope::Link
    });
    if !host_route {
        out.push(format!(
            "host route {ip32} dev {} scope link (table main) is missing",
            e.host_veth
        ));
    }
    let mut rules = vec![Rule::to_ip(e.pod_ip, MAIN_TABLE, priority::TO_POD)];
    if e.table != MAIN_TABLE {
        rules.push(Rule::from_ip(e.pod_ip, e.table, priority::FROM_POD));
    }
    for rule in rules {
        if !host.rules.contains(&rule) {
            out.push(format!("host rule \"{rule}\" is missing"));
        }
    }
    let dev = e.pod_ifname.as_str();
    match pod.link(dev) {
        None => out.push(format!("pod interface {dev} is missing")),
        Some(l) if !l.up => out.push(format!("pod interface {dev} is down")),
        Some(l) if l.mtu != e.mtu => out.push(format!(
            "pod interface {dev} has MTU {} instead of {}",
            l.mtu, e.mtu
        )),
        Some(_) => {}
    }
    if !pod.addresses_of(dev).contains(&ip32) {
        out.push(format!("pod address {ip32} on {dev} is missing"));
    }
    let routes = pod.unicast_routes(MAIN_TABLE);
    if !routes.iter().any(|r| {
        r.dst == IpNet::from(Ipv4Net::from(GATEWAY))
            && r.dev.as_deref() == Some(dev)
            && r.scope == Scope::Link
    }) {
        out.push(format!(
            "pod route {GATEWAY}/32 dev {dev} scope link is missing"
        ));
    }
    if !routes.iter().any(|r| {
        r.dst.prefix_len() == 0
            && r.gateway == Some(GATEWAY.into())
            && r.dev.as_deref() == Some(dev)
    }) {
        out.push(format!(
            "pod default route via {GATEWAY} dev {dev} is missing"
        ));
    }
    let host_mac = host_link.and_then(|l| l.mac);
    let neighbour = pod
        .neighbours
        .iter()
        .find(|n| n.dev == dev && n.ip == IpAddr::V4(GATEWAY));
    match neighbour {
        None => out.push(format!(
            "pod's permanent neighbour entry {GATEWAY} on {dev} is missing"
        )),
        Some(n) if host_mac.is_some() && n.mac != host_mac => out.push(format!(
            "pod's neighbour {GATEWAY} points to {:?}, not the host veth's MAC {:?}",
            n.mac.map(|m| m.to_string()),
            host_mac.map(|m| m.to_string())
        )),
        Some(_) => {}
    }
    out
}

/// CHECK: success or a CNI error naming everything that is missing or different.
pub async fn check(conf: &NetConf, env: &CniEnv) -> Result<(), CniError> {
    if !conf.version_at_least(0, 4) {
        let version = format!("{} (CHECK needs 0.4.0 or later)", conf.cni_version);
        return Err(CniError::incompatible(
            &version,
            &crate::conf::SUPPORTED_VERSIONS,
        ));
    }
    env.require("CNI_CONTAINERID", &env.container_id)?;
    env.require("CNI_NETNS", &env.netns)?;
    env.require("CNI_IFNAME", &env.ifname)?;
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::invalid_config("CHECK needs prevResult in the configuration"))?;
    if let Some((vlan, _)) = crate::branch::branch_in_prev_result(Some(prev), env)? {
        // Their wiring (net::branch) differs from what `problems` knows; upstream has no
        // CHECK at all (docs/cni-plugin.md, "Branch-ENI pods").
        tracing::warn!(container = %env.container_id, vlan, "CHECK: branch-ENI pods are not checked");
        return Ok(());
    }
    let e = expected(prev, &env.ifname, conf.mtu()).map_err(CniError::decode)?;
    if !Path::new(&env.netns).exists() {
        return Err(CniError::check(format!(
            "pod network namespace {} does not exist",
            env.netns
        )));
    }
    let pod_ns = Netns::open(&env.netns).map_err(|e| CniError::check(e.to_string()))?;
    let kernel =
        |e: net::netlink::NetlinkError| CniError::io(format!("reading the kernel state: {e}"));
    let host = NetnsState::capture(&NetlinkHandle::current().map_err(kernel)?)
        .await
        .map_err(kernel)?;
    let pod = NetnsState::capture_in(&pod_ns).await.map_err(kernel)?;
    let found = problems(&host, &pod, &e);
    if found.is_empty() {
        tracing::info!(container = %env.container_id, ip = %e.pod_ip, "CHECK ok");
        return Ok(());
    }
    let msg = format!(
        "CHECK: the pod network of {} differs from prevResult: {}",
        env.container_id,
        found.join("; ")
    );
    tracing::error!("{msg}");
    Err(CniError::check(msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expected_from_our_result_encoding() {
        let prev = json!({"cniVersion":"1.0.0",
            "interfaces":[{"name":"enicc21c2d7785","mac":"aa:bb:cc:dd:ee:ff"},
                {"name":"eth0","mac":"3","sandbox":"/var/run/netns/p"},
                {"name":"dummycc21c2d7785","mac":"0","sandbox":"2"}],
            "ips":[{"address":"10.0.1.15/32","interface":1}]});
        let e = expected(&prev, "eth0", 9001).unwrap();
        assert_eq!(e.host_veth, "enicc21c2d7785");
        assert_eq!(e.pod_ip, Ipv4Addr::new(10, 0, 1, 15));
        assert_eq!(e.table, 3);
        assert!(expected(&prev, "eth1", 9001).unwrap_err().contains("eth1"));
        assert!(expected(&json!({}), "eth0", 9001).is_err());
        let mut legacy = prev.clone();
        legacy["interfaces"][1]["mac"] = json!("1");
        assert_eq!(expected(&legacy, "eth0", 9001).unwrap().table, MAIN_TABLE);
    }

    #[test]
    fn empty_kernel_state_reports_every_object() {
        let e = Expected {
            host_veth: "eni1".into(),
            pod_ifname: "eth0".into(),
            pod_ip: Ipv4Addr::new(10, 0, 0, 5),
            table: 2,
            mtu: 9001,
        };
        let p = problems(&NetnsState::default(), &NetnsState::default(), &e);
        assert_eq!(p.len(), 9, "{p:#?}");
        assert!(p[0].contains("host veth eni1 is missing"));
        assert!(p.iter().any(|m| m.contains("lookup 2")), "{p:#?}");
    }
}
