//! Root-free tests of branch-ENI pod wiring ([`crate::branch`]) on the recording kernel:
//! the exact calls of both enforcing modes, and teardown after a mode switch.

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;

use crate::branch::{
    BranchPod, BranchVlan, EnforcingMode, setup_branch_pod_in, teardown_branch_pod_in,
};
use crate::kernel::Kernel;
use crate::netlink::{Mac, Route, Rule};
use crate::pod::PodNetwork;
use crate::route_table::{MAIN_TABLE, priority};
use crate::testing::{Call, Model, Recording};

const POD_NS: &str = "/var/run/netns/sgp";
const BRANCH_MAC: Mac = Mac([0x02, 0x42, 0, 0, 0, 0x07]);
const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 32, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 40, 5);

/// A node with the trunk `eth2`; returns the recording and the trunk's index.
fn node() -> (Recording, u32) {
    let host = Recording::new("node");
    host.add_link("eth0", Some(Mac([0x02, 0, 0, 0, 0, 0x10])), Some("veth"));
    let trunk = host.add_link("eth2", Some(Mac([0x02, 0, 0, 0, 0, 0x12])), Some("veth"));
    (host, trunk)
}

fn branch(mode: EnforcingMode, trunk: u32) -> BranchPod {
    BranchPod {
        veth: PodNetwork {
            host_veth: format!("{}cc21c2d7785", mode.veth_prefix("eni")),
            pod_ifname: "eth0".into(),
            index: 0,
            pod_ip: POD_IP.into(),
            table: 0,
            mtu: 9001,
        },
        vlan: BranchVlan {
            vlan_id: 7,
            eni_mac: BRANCH_MAC,
            subnet_gw: GW.into(),
            parent_ifindex: trunk,
        },
        mode,
    }
}

fn index_of(rec: &Recording, name: &str) -> u32 {
    rec.model()
        .links
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.index)
        .unwrap()
}

fn sysctls(link: &str) -> Vec<Call> {
    [
        ("accept_ra", "0"),
        ("accept_redirects", "1"),
        ("forwarding", "0"),
    ]
    .into_iter()
    .map(|(key, value)| Call::Sysctl {
        key: format!("net/ipv6/conf/{link}/{key}"),
        value: value.into(),
    })
    .collect()
}

fn iif(link: &str) -> Rule {
    Rule {
        priority: Some(priority::BRANCH_IIF),
        iif: Some(link.into()),
        table: 107,
        ..Rule::default()
    }
}

/// The host calls common to both modes: the veth's host end, then the VLAN link and its
/// table (after the pod's veth and address, and the stale-rule sweep which finds nothing).
fn veth_and_vlan_calls(host: &Recording, b: &BranchPod, trunk: u32) -> Vec<Call> {
    let vlan = index_of(host, "vlan.eth.7");
    let mut calls = sysctls(&b.veth.host_veth);
    calls.push(Call::SetLinkUp {
        link: b.veth.host_veth.clone(),
        mtu: None,
    });
    calls.push(Call::CreateVlan {
        name: "vlan.eth.7".into(),
        vlan_id: 7,
        parent: "eth2".into(),
        mac: BRANCH_MAC,
    });
    assert_eq!(trunk, index_of(host, "eth2"));
    calls.extend(sysctls("vlan.eth.7"));
    calls.extend([
        Call::SetLinkUp {
            link: "vlan.eth.7".into(),
            mtu: None,
        },
        Call::ReplaceRoute(Route::link_scope(107, Route::host(GW), vlan)),
        Call::ReplaceRoute(Route::default_via(107, GW, vlan)),
    ]);
    calls
}

#[tokio::test]
async fn strict_mode_routes_everything_through_the_vlan_table() {
    let (host, trunk) = node();
    let b = branch(EnforcingMode::Strict, trunk);
    let before = host.model();
    setup_branch_pod_in(&host, Path::new(POD_NS), &b)
        .await
        .unwrap();
    let pod_ns = host.namespace(POD_NS);
    assert_eq!(b.veth.host_veth, "vlancc21c2d7785");
    assert!(pod_ns.calls().contains(&Call::ReplaceAddress {
        link: "eth0".into(),
        addr: Ipv4Net::from(POD_IP),
    }));
    let veth = index_of(&host, &b.veth.host_veth);
    let mut want = veth_and_vlan_calls(&host, &b, trunk);
    want.extend([
        Call::ReplaceRoute(Route::link_scope(107, Route::host(POD_IP), veth)),
        Call::AddRule(iif("vlan.eth.7")),
        Call::AddRule(iif(&b.veth.host_veth)),
    ]);
    assert_eq!(host.calls(), want);
    let vlan = host
        .model()
        .links
        .into_iter()
        .find(|l| l.name == "vlan.eth.7");
    let vlan = vlan.unwrap();
    assert_eq!(
        (vlan.mac, vlan.up, vlan.kind.as_deref()),
        (Some(BRANCH_MAC), true, Some("vlan"))
    );

    host.clear_journal();
    teardown_branch_pod_in(&host, POD_IP.into(), 7)
        .await
        .unwrap();
    assert_eq!(
        host.calls(),
        [
            Call::DeleteLink("vlan.eth.7".into()),
            Call::DeleteRule(iif("vlan.eth.7")),
            Call::DeleteRule(iif(&b.veth.host_veth)),
            Call::DeleteRoute(Route {
                oif: None,
                ..Route::link_scope(107, Route::host(POD_IP), 0)
            }),
        ]
    );
    assert_node_as_before(&host, &before, &b);
}

#[tokio::test]
async fn standard_mode_reaches_the_pod_through_main() {
    let (host, trunk) = node();
    let b = branch(EnforcingMode::Standard, trunk);
    let before = host.model();
    setup_branch_pod_in(&host, Path::new(POD_NS), &b)
        .await
        .unwrap();
    assert_eq!(b.veth.host_veth, "enicc21c2d7785");
    let veth = index_of(&host, &b.veth.host_veth);
    let mut want = veth_and_vlan_calls(&host, &b, trunk);
    want.extend([
        Call::ReplaceRoute(Route::link_scope(MAIN_TABLE, Route::host(POD_IP), veth)),
        Call::AddRule(Rule::to_ip(POD_IP, MAIN_TABLE, priority::TO_POD)),
        Call::AddRule(Rule::from_ip(POD_IP, 107, priority::FROM_POD)),
    ]);
    assert_eq!(host.calls(), want);

    host.clear_journal();
    teardown_branch_pod_in(&host, POD_IP.into(), 7)
        .await
        .unwrap();
    assert_eq!(
        host.calls(),
        [
            Call::DeleteLink("vlan.eth.7".into()),
            Call::DeleteRule(Rule::to_ip(POD_IP, MAIN_TABLE, priority::TO_POD)),
            Call::DeleteRule(Rule::from_ip(POD_IP, 107, priority::FROM_POD)),
            Call::DeleteRoute(Route {
                oif: None,
                ..Route::link_scope(MAIN_TABLE, Route::host(POD_IP), 0)
            }),
        ]
    );
    assert_node_as_before(&host, &before, &b);
}

/// Only the pod's host veth is left (it goes with the pod's namespace, as for regular pods).
fn assert_node_as_before(host: &Recording, before: &Model, b: &BranchPod) {
    let now = host.model();
    assert_eq!((&now.rules, &now.routes), (&before.rules, &before.routes));
    let mut links: Vec<_> = now.links.iter().map(|l| l.name.as_str()).collect();
    links.retain(|l| *l != b.veth.host_veth);
    let was: Vec<_> = before.links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(links, was);
}

#[tokio::test]
async fn teardown_after_a_mode_switch_removes_what_either_mode_left() {
    for (first, second) in [
        (EnforcingMode::Strict, EnforcingMode::Standard),
        (EnforcingMode::Standard, EnforcingMode::Strict),
    ] {
        let (host, trunk) = node();
        let before = host.model();
        // Two pods wired in different modes (a restart with the other mode in between)…
        let old = branch(first, trunk);
        setup_branch_pod_in(&host, Path::new(POD_NS), &old)
            .await
            .unwrap();
        let mut new = branch(second, trunk);
        new.veth.pod_ip = Ipv4Addr::new(10, 0, 40, 6).into();
        new.vlan.vlan_id = 8;
        new.veth.host_veth = format!("{}0123456789a", second.veth_prefix("eni"));
        setup_branch_pod_in(&host, Path::new("/var/run/netns/sgp2"), &new)
            .await
            .unwrap();
        // …are torn down knowing only address and VLAN id.
        teardown_branch_pod_in(&host, POD_IP.into(), 7)
            .await
            .unwrap();
        teardown_branch_pod_in(&host, new.veth.pod_ip, 8)
            .await
            .unwrap();
        let now = host.model();
        assert_eq!(now.rules, before.rules, "{first:?} then {second:?}");
        assert_eq!(now.routes, before.routes, "{first:?} then {second:?}");
        assert!(!now.links.iter().any(|l| l.name.starts_with("vlan.eth")));
    }
}

#[tokio::test]
async fn a_repeated_add_replaces_stale_state_and_failures_undo_themselves() {
    let (host, trunk) = node();
    let b = branch(EnforcingMode::Strict, trunk);
    // Left by an earlier pod of the same name: a priority-10 rule of its veth into another
    // table, and a VLAN link of the same id.
    let stale = Rule {
        table: 142,
        ..iif(&b.veth.host_veth)
    };
    host.add_rule(&stale).await.unwrap();
    host.add_link("vlan.eth.7", None, Some("vlan"));
    host.clear_journal();
    setup_branch_pod_in(&host, Path::new(POD_NS), &b)
        .await
        .unwrap();
    let calls = host.calls();
    assert!(calls.contains(&Call::DeleteRule(stale)));
    assert!(calls.contains(&Call::DeleteLink("vlan.eth.7".into())));
    assert_eq!(
        host.model().rules,
        [iif("vlan.eth.7"), iif(&b.veth.host_veth)]
    );

    // A trunk that is not there: nothing is left behind, the veth included.
    let (host, _) = node();
    let before = host.model();
    let err = setup_branch_pod_in(&host, Path::new(POD_NS), &branch(EnforcingMode::Strict, 99))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("vlan.eth.7"), "{err}");
    assert_eq!(host.model().links, before.links);
    assert!(host.model().rules.is_empty() && host.model().routes.is_empty());

    // VLAN id 0 is refused before anything is made.
    let (host, trunk) = node();
    let mut zero = branch(EnforcingMode::Strict, trunk);
    zero.vlan.vlan_id = 0;
    assert!(
        setup_branch_pod_in(&host, Path::new(POD_NS), &zero)
            .await
            .is_err()
    );
    assert!(host.journal().is_empty());
}
