//! CHECK (upstream has none): for every pod interface (`CNI_IFNAME`, and `mNicIf<i>` of a
//! multi-homed pod) the pod's veth, address, routes, neighbour (and for i > 0 its rule) and
//! the host's route and rules must be what ADD made, as recorded in `prevResult`.
//! Branch-ENI pods are not checked (success, with a warning).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net};
use net::names::container_if_name;
use net::netlink::{Mac, NetlinkHandle, Rule, Scope};
use net::netns::Netns;
use net::route_table::{MAIN_TABLE, priority};
use net::state::NetnsState;
use serde_json::Value;

use crate::conf::{CniEnv, NetConf};
use crate::error::CniError;
use crate::result::CniResult;

/// What `prevResult` says ADD wired for one pod interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub host_veth: String,
    pub pod_ifname: String,
    /// The interface's index in the pod (0: `CNI_IFNAME`, i > 0: `mNicIf<i>`).
    pub index: u32,
    pub pod_ip: Ipv4Addr,
    /// Host route table of the pod's from-rule (main when the IP is on the primary ENI).
    pub table: u32,
    pub mtu: u32,
}

impl Expected {
    /// The pod's gateway on this interface: `169.254.1.(index+1)`.
    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(169, 254, 1, u8::try_from(self.index + 1).unwrap_or(u8::MAX))
    }

    /// The pod's table of this interface: main for 0, `index` after.
    fn pod_table(&self) -> u32 {
        if self.index == 0 {
            MAIN_TABLE
        } else {
            self.index
        }
    }
}

/// Reads interface 0 (`ifname`) from `prevResult` (our own result encoding, as ADD writes it).
pub fn expected(prev: &Value, ifname: &str, mtu: u32) -> Result<Expected, String> {
    let prev = CniResult::from_value(prev)?;
    if prev.interfaces.is_empty() {
        return Err("prevResult has no interfaces".into());
    }
    expected_at(&prev, ifname, 0, mtu)
}

/// Every pod interface `prevResult` records: `ifname`, then `mNicIf1`, `mNicIf2`, ... as long
/// as they follow.
pub fn expected_all(prev: &Value, ifname: &str, mtu: u32) -> Result<Vec<Expected>, String> {
    let mut all = vec![expected(prev, ifname, mtu)?];
    let prev = CniResult::from_value(prev)?;
    for index in 1u32.. {
        let name = container_if_name(ifname, index);
        if prev.container_interface(&name).is_none() {
            break;
        }
        all.push(expected_at(&prev, &name, index, mtu)?);
    }
    Ok(all)
}

/// Pod interface `index`, named `ifname`: its address, its table from the `mac` field, and
/// its host veth (the host interface just before it, as ADD lists them; for interface 0 any
/// host interface will do, as results of other shapes have it elsewhere).
fn expected_at(prev: &CniResult, ifname: &str, index: u32, mtu: u32) -> Result<Expected, String> {
    let is_host_veth =
        |i: &&crate::result::Interface| i.sandbox.is_none() && !i.name.starts_with("dummy");
    let pod = prev
        .container_interface(ifname)
        .ok_or_else(|| format!("prevResult has no container interface {ifname}"))?;
    let before = pod.checked_sub(1).and_then(|at| prev.interfaces.get(at));
    let host_veth = before
        .filter(is_host_veth)
        .or_else(|| {
            (index == 0)
                .then(|| prev.interfaces.iter().find(is_host_veth))
                .flatten()
        })
        .map(|i| i.name.clone())
        .ok_or_else(|| format!("prevResult names no host veth for {ifname}"))?;
    let ip = prev
        .ips
        .iter()
        .find(|ip| ip.interface == Some(pod) || (index == 0 && ip.interface.is_none()))
        .ok_or_else(|| format!("prevResult has no IP address for {ifname}"))?;
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
        index,
        pod_ip,
        table,
        mtu,
    })
}

/// Everything that differs between the kernel and `e` (empty: all as ADD left it).
pub fn problems(host: &NetnsState, pod: &NetnsState, e: &Expected) -> Vec<String> {
    let mut out = host_problems(host, e);
    let host_mac = host.link(&e.host_veth).and_then(|l| l.mac);
    out.extend(pod_problems(pod, e, host_mac));
    out
}

/// The host end of the pair, the host route to the pod and its rules.
fn host_problems(host: &NetnsState, e: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    let ip32 = Ipv4Net::from(e.pod_ip);
    match host.link(&e.host_veth) {
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
    out
}

/// The pod's interface, its address, its gateway routes and neighbour in its table, and for
/// an interface i > 0 the rule sending its address to table i.
fn pod_problems(pod: &NetnsState, e: &Expected, host_mac: Option<Mac>) -> Vec<String> {
    let mut out = Vec::new();
    let ip32 = Ipv4Net::from(e.pod_ip);
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
    let (gw, table) = (e.gateway(), e.pod_table());
    let in_table = match table {
        MAIN_TABLE => String::new(),
        t => format!(" (table {t})"),
    };
    let routes = pod.unicast_routes(table);
    if !routes.iter().any(|r| {
        r.dst == IpNet::from(Ipv4Net::from(gw))
            && r.dev.as_deref() == Some(dev)
            && r.scope == Scope::Link
    }) {
        out.push(format!(
            "pod route {gw}/32 dev {dev} scope link{in_table} is missing"
        ));
    }
    if !routes.iter().any(|r| {
        r.dst.prefix_len() == 0 && r.gateway == Some(gw.into()) && r.dev.as_deref() == Some(dev)
    }) {
        out.push(format!(
            "pod default route via {gw} dev {dev}{in_table} is missing"
        ));
    }
    let pod_rule = Rule::from_ip(e.pod_ip, table, priority::POD_MULTI_NIC);
    if e.index > 0 && !pod.rules.contains(&pod_rule) {
        out.push(format!("pod rule \"{pod_rule}\" is missing"));
    }
    let neighbour = pod
        .neighbours
        .iter()
        .find(|n| n.dev == dev && n.ip == IpAddr::V4(gw));
    match neighbour {
        None => out.push(format!(
            "pod's permanent neighbour entry {gw} on {dev} is missing"
        )),
        Some(n) if host_mac.is_some() && n.mac != host_mac => out.push(format!(
            "pod's neighbour {gw} points to {:?}, not the host veth's MAC {:?}",
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
    let all = expected_all(prev, &env.ifname, conf.mtu()).map_err(CniError::decode)?;
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
    let found: Vec<String> = all.iter().flat_map(|e| problems(&host, &pod, e)).collect();
    if found.is_empty() {
        let ips = all
            .iter()
            .map(|e| e.pod_ip.to_string())
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(container = %env.container_id, ips, "CHECK ok");
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
            index: 0,
            pod_ip: Ipv4Addr::new(10, 0, 0, 5),
            table: 2,
            mtu: 9001,
        };
        let p = problems(&NetnsState::default(), &NetnsState::default(), &e);
        assert_eq!(p.len(), 9, "{p:#?}");
        assert!(p[0].contains("host veth eni1 is missing"));
        assert!(p.iter().any(|m| m.contains("lookup 2")), "{p:#?}");
    }

    #[test]
    fn every_interface_of_a_multi_homed_pod_is_expected() {
        let prev = json!({"cniVersion":"1.0.0",
            "interfaces":[{"name":"enicc21c2d7785"},
                {"name":"eth0","mac":"2","sandbox":"/var/run/netns/p"},
                {"name":"enid2b1d8c0b32"},
                {"name":"mNicIf1","mac":"10100","sandbox":"/var/run/netns/p"},
                {"name":"dummycc21c2d7785","mac":"0","sandbox":"1"}],
            "ips":[{"address":"10.0.0.20/32","interface":1},
                {"address":"10.1.0.20/32","interface":3}]});
        let all = expected_all(&prev, "eth0", 9001).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].host_veth.as_str(), all[0].table),
            ("enicc21c2d7785", 2)
        );
        let second = &all[1];
        assert_eq!(second.host_veth, "enid2b1d8c0b32");
        assert_eq!((second.pod_ifname.as_str(), second.index), ("mNicIf1", 1));
        assert_eq!(
            (second.pod_ip, second.table),
            (Ipv4Addr::new(10, 1, 0, 20), 10100)
        );
        let p = problems(&NetnsState::default(), &NetnsState::default(), second);
        for wanted in [
            "169.254.1.2/32 dev mNicIf1 scope link (table 1)",
            "lookup 1",
            "lookup 10100",
        ] {
            assert!(p.iter().any(|m| m.contains(wanted)), "{wanted}: {p:#?}");
        }
        let mut no_ip = prev.clone();
        no_ip["ips"] = json!([{"address":"10.0.0.20/32","interface":1}]);
        assert!(
            expected_all(&no_ip, "eth0", 9001)
                .unwrap_err()
                .contains("mNicIf1")
        );
    }
}
