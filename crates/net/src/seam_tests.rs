//! Root-free unit tests of the wiring written against [`crate::kernel::Kernel`], on the
//! recording kernel ([`crate::testing::Recording`]): what pod wiring, ENI set-up and the
//! SNAT firewall reconcile ask of the kernel, call by call.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use ipnet::Ipv4Net;

use crate::firewall::{Family, detect_backend, reconcile_snat};
use crate::host::{EniSetup, setup_eni, teardown_eni_rules};
use crate::iptables_backend::Backend;
use crate::netlink::{Backoff, Mac, NetlinkError, Route, Rule, Scope};
use crate::pod::{PodNetwork, setup_pod_in, teardown_pod_in};
use crate::route_table::{MAIN_TABLE, priority};
use crate::snat::{desired_mangle, desired_nat, restore_batch};
use crate::testing::{Call, Recording};

const POD_NS: &str = "/var/run/netns/pod";
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 15);

fn pod(index: u32, table: u32) -> PodNetwork {
    PodNetwork {
        host_veth: "enicc21c2d7785".into(),
        pod_ifname: if index == 0 {
            "eth0".into()
        } else {
            format!("mNicIf{index}")
        },
        index,
        pod_ip: POD_IP.into(),
        table,
        mtu: 9001,
    }
}

/// The host end's calls of prepare_pod_in: its IPv6 sysctls, then up (both families).
fn host_end_up(p: &PodNetwork) -> [Call; 4] {
    let sysctl = |key: &str, value: &str| Call::Sysctl {
        key: format!("net/ipv6/conf/{}/{key}", p.host_veth),
        value: value.into(),
    };
    [
        sysctl("accept_ra", "0"),
        sysctl("accept_redirects", "1"),
        sysctl("forwarding", "0"),
        Call::SetLinkUp {
            link: p.host_veth.clone(),
            mtu: None,
        },
    ]
}

/// The pair's creation, from the pod's namespace into the node's.
fn created_in_pod(p: &PodNetwork) -> Call {
    Call::CreateVeth {
        name: p.pod_ifname.clone(),
        peer_name: p.host_veth.clone(),
        peer_netns: "node".into(),
        mtu: p.mtu,
    }
}

/// `p` wired on a fresh recording: the node, the pod's namespace, and (the pod's `eth0`
/// index, the host veth's index, its MAC).
async fn wired_pod(p: &PodNetwork) -> (Recording, Recording, (u32, u32, Mac)) {
    let host = Recording::new("node");
    setup_pod_in(&host, Path::new(POD_NS), p).await.unwrap();
    let pod_ns = host.namespace(POD_NS);
    let (eth0, veth) = (index_of(&pod_ns, "eth0"), index_of(&host, &p.host_veth));
    let host_mac = host.model().links[0].mac.unwrap();
    (host, pod_ns, (eth0, veth, host_mac))
}

fn index_of(rec: &Recording, name: &str) -> u32 {
    rec.model()
        .links
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.index)
        .unwrap()
}

#[tokio::test]
async fn pod_wiring_makes_exactly_the_expected_calls() {
    let p = pod(0, 3);
    let (host, pod_ns, (eth0, veth, host_mac)) = wired_pod(&p).await;
    let gw = Ipv4Addr::new(169, 254, 1, 1);
    assert_eq!(
        pod_ns.calls(),
        [
            created_in_pod(&p),
            // Created up: no separate SetLinkUp. The gateway half does not need the
            // address (prepare_pod_in); the address comes last (finish_pod_in).
            Call::ReplaceRoute(Route::link_scope(MAIN_TABLE, Route::host(gw), eth0)),
            Call::AddRoute(Route::default_via(MAIN_TABLE, gw, eth0)),
            Call::ReplaceNeighbour {
                link: "eth0".into(),
                ip: gw.into(),
                mac: host_mac
            },
            Call::ReplaceAddress {
                link: "eth0".into(),
                addr: Ipv4Net::from(POD_IP)
            },
        ]
    );
    assert!(pod_ns.model().links[0].up, "the pod end is created up");
    let host_side = [
        Call::ReplaceRoute(Route::link_scope(MAIN_TABLE, Route::host(p.pod_ip), veth)),
        Call::AddRule(Rule::to_ip(p.pod_ip, MAIN_TABLE, priority::TO_POD)),
        Call::AddRule(Rule::from_ip(p.pod_ip, 3, priority::FROM_POD)),
    ];
    assert_eq!(
        host.calls(),
        [host_end_up(&p).as_slice(), &host_side].concat()
    );

    host.clear_journal();
    teardown_pod_in(&host, &p).await.unwrap();
    let node = host.model();
    assert!(node.rules.is_empty() && node.routes.is_empty());
    assert_eq!(
        host.calls(),
        [
            Call::DeleteRule(Rule::to_ip(p.pod_ip, MAIN_TABLE, priority::TO_POD)),
            Call::DeleteRule(Rule::from_ip(p.pod_ip, 3, priority::FROM_POD)),
            Call::DeleteRoute(Route {
                oif: None,
                ..Route::link_scope(MAIN_TABLE, Route::host(p.pod_ip), 0)
            }),
        ],
        "rules and route only: the veth goes with the pod's namespace"
    );
    assert_eq!(node.links.len(), 1, "{:?}", node.links);

    // The same pod again before the runtime removed the old namespace: the stale veth is
    // replaced.
    host.clear_journal();
    setup_pod_in(&host, Path::new(POD_NS), &p).await.unwrap();
    assert_eq!(host.calls()[0], Call::DeleteLink(p.host_veth.clone()));
    assert_eq!(host.model().links.len(), 1);
    assert_eq!(pod_ns.model().links.len(), 1);
}

#[tokio::test]
async fn multi_nic_pod_gets_its_own_table_and_rule() {
    let host = Recording::new("node");
    let p = pod(1, 1);
    setup_pod_in(&host, Path::new(POD_NS), &p).await.unwrap();
    let pod_ns = host.namespace(POD_NS);
    assert!(pod_ns.calls().contains(&Call::AddRule(Rule::from_ip(
        p.pod_ip,
        1,
        priority::POD_MULTI_NIC
    ))));
    let ifindex = index_of(&pod_ns, "mNicIf1");
    let gw = Ipv4Addr::new(169, 254, 1, 2);
    assert!(
        pod_ns
            .model()
            .routes
            .contains(&Route::default_via(1, gw, ifindex))
    );
    assert!(
        host.model()
            .rules
            .iter()
            .all(|r| r.priority != Some(priority::FROM_POD)),
        "table 1 means main on the host: no from-rule"
    );
}

#[tokio::test]
async fn a_foreign_link_with_the_veth_name_is_left_alone() {
    let host = Recording::new("node");
    host.add_link("enicc21c2d7785", None, Some("dummy"));
    let err = setup_pod_in(&host, Path::new(POD_NS), &pod(0, 3))
        .await
        .unwrap_err();
    assert!(matches!(err, NetlinkError::ForeignLink { .. }), "{err}");
    assert!(host.journal().is_empty(), "nothing changed");
}

#[tokio::test]
async fn failed_wiring_removes_the_veth_again() {
    let host = Recording::new("node");
    let pod_ns = host.namespace(POD_NS);
    // A default route already in the pod: `add_route` fails with EEXIST mid-wiring.
    pod_ns
        .add_route(&Route::default_via(
            MAIN_TABLE,
            Ipv4Addr::new(10, 9, 9, 9),
            99,
        ))
        .await
        .unwrap();
    let err = setup_pod_in(&host, Path::new(POD_NS), &pod(0, 3))
        .await
        .unwrap_err();
    assert!(err.is_exists(), "{err}");
    assert!(host.model().links.is_empty() && pod_ns.model().links.is_empty());
    assert!(host.model().rules.is_empty());
}

use crate::kernel::Kernel as _;

#[tokio::test]
async fn eni_setup_makes_exactly_the_expected_calls() {
    let node = Recording::new("node");
    let mac: Mac = "02:00:00:00:00:22".parse().unwrap();
    let eth1 = node.add_link("eth1", Some(mac), None);
    node.add_address(eth1, "10.0.2.99/24".parse().unwrap());
    let subnet: Ipv4Net = "10.0.2.0/24".parse().unwrap();
    let eni_ip = Ipv4Addr::new(10, 0, 2, 20);
    let kernel_subnet_route = Route {
        pref_src: Some(eni_ip.into()),
        ..Route::link_scope(MAIN_TABLE, subnet, eth1)
    };
    node.replace_route(&kernel_subnet_route).await.unwrap();
    node.clear_journal();

    let mut s = EniSetup::new(mac, eni_ip, subnet, 2, 9001);
    s.find_interval = Duration::ZERO;
    s.route_backoff = Backoff {
        max_attempts: 1,
        ..crate::netlink::ROUTE_RETRIES
    };
    let link = setup_eni(&node, &s).await.unwrap();
    assert_eq!(link.index, eth1);
    let gw = Ipv4Addr::new(10, 0, 2, 1);
    assert_eq!(
        node.calls(),
        [
            Call::SetLinkUp {
                link: "eth1".into(),
                mtu: Some(9001)
            },
            Call::DeleteAddress {
                link: "eth1".into(),
                addr: "10.0.2.99/24".parse().unwrap()
            },
            Call::ReplaceAddress {
                link: "eth1".into(),
                addr: "10.0.2.20/24".parse().unwrap()
            },
            Call::ReplaceRoute(Route::link_scope(2, Route::host(gw), eth1)),
            Call::ReplaceRoute(Route::default_via(2, gw, eth1)),
            Call::DeleteRoute(Route {
                oif: None,
                ..kernel_subnet_route.clone()
            }),
            Call::AddRule(Rule::from_ip(eni_ip, 2, priority::ENI_PRIMARY)),
        ]
    );
    assert_eq!(node.model().routes.len(), 2, "only the ENI table's routes");
    assert_eq!(teardown_eni_rules(&node, eni_ip).await.unwrap(), 1);

    s.table = MAIN_TABLE;
    assert!(matches!(
        setup_eni(&node, &s).await,
        Err(NetlinkError::Invalid(_))
    ));
    s.mac = "02:00:00:00:00:99".parse().unwrap();
    s.table = 3;
    s.find_attempts = 2;
    assert!(matches!(
        setup_eni(&node, &s).await,
        Err(NetlinkError::LinkByMacNotFound { attempts: 2, .. })
    ));
    assert_eq!(Scope::from_raw(Scope::Host.raw()), Scope::Host);
}

#[tokio::test]
async fn firewall_batch_is_one_restore_per_table_with_wait() {
    let node = Recording::new("node");
    let s = crate::testing::snat_settings();
    assert_eq!(reconcile_snat(&node, Backend::Nft, &s).await.unwrap(), 2);
    let empty = Default::default();
    assert_eq!(
        node.calls(),
        [
            Call::FirewallRestore {
                command: "iptables-nft-restore --wait=10 --noflush".into(),
                batch: restore_batch("nat", &empty, &desired_nat(&s)).unwrap(),
            },
            Call::FirewallRestore {
                command: "iptables-nft-restore --wait=10 --noflush".into(),
                batch: restore_batch("mangle", &empty, &desired_mangle(&s)).unwrap(),
            },
        ]
    );
}

#[tokio::test]
async fn backend_detection_reads_both_backends_through_the_seam() {
    let node = Recording::new("node");
    assert_eq!(
        detect_backend(&node).await,
        Backend::Nft,
        "nothing anywhere"
    );
    let rules: String = (0..12)
        .map(|i| format!("-A POSTROUTING -j R{i}\n"))
        .collect();
    node.set_firewall_save(Backend::Legacy, Family::V4, None, &rules);
    assert_eq!(detect_backend(&node).await, Backend::Legacy, ">= 10 legacy");
    assert!(node.journal().is_empty(), "reads are not changes");
}

#[test]
fn route_retries_are_a_valid_backoff_of_upstreams_shape() {
    let b = crate::netlink::ROUTE_RETRIES;
    assert_eq!(b.validate(), Ok(()));
    let waits: Vec<Duration> = (0..4).map(|n| b.delay(n, 0.5)).collect();
    assert_eq!(
        waits,
        [500, 1000, 2000, 4000].map(Duration::from_millis).to_vec()
    );
    assert_eq!(b.delay(10, 0.5), Duration::from_secs(5));
    assert!(b.should_retry(3) && !b.should_retry(4), "5 attempts in all");
}

/// An IPv6 pod of `pod(index, table)`'s names (upstream `SetupPodNetwork` with an IPv6
/// address).
fn pod6(index: u32, table: u32) -> PodNetwork {
    PodNetwork {
        pod_ip: POD_IP6.parse::<Ipv6Addr>().unwrap().into(),
        ..pod(index, table)
    }
}

const POD_IP6: &str = "2001:db8:0:1::5";

#[tokio::test]
async fn ipv6_pod_wiring_makes_exactly_the_expected_calls() {
    let p = pod6(0, 3);
    let (host, pod_ns, (eth0, veth, host_mac)) = wired_pod(&p).await;
    let gw: IpAddr = "fe80::1".parse().unwrap();
    let enable_ipv6 = |ifname: &str| Call::Sysctl {
        key: format!("net/ipv6/conf/{ifname}/disable_ipv6"),
        value: "0".into(),
    };
    assert_eq!(
        pod_ns.calls(),
        [
            created_in_pod(&p),
            // The address-free half (prepare_pod_in): no DAD, IPv6 on, the fe80::1 gateway.
            Call::Sysctl {
                key: "net/ipv6/conf/eth0/accept_dad".into(),
                value: "0".into(),
            },
            Call::SetLinkUp {
                link: "eth0".into(),
                mtu: None
            },
            enable_ipv6("eth0"),
            enable_ipv6("lo"),
            Call::ReplaceRoute(Route::link_scope(MAIN_TABLE, Route::host(gw), eth0)),
            Call::AddRoute(Route::default_via(MAIN_TABLE, gw, eth0)),
            Call::ReplaceNeighbour {
                link: "eth0".into(),
                ip: gw,
                mac: host_mac
            },
            // finish_pod_in: the /128 (DAD is immediate in the model).
            Call::ReplaceAddressV6 {
                link: "eth0".into(),
                addr: POD_IP6.parse::<Ipv6Addr>().unwrap().into()
            },
        ]
    );
    let to_rule = Rule::to_ip(p.pod_ip, MAIN_TABLE, priority::TO_POD);
    let from_rule = Rule::from_ip(p.pod_ip, 3, priority::FROM_POD);
    let host_side = [
        Call::ReplaceRoute(Route::link_scope(MAIN_TABLE, Route::host(p.pod_ip), veth)),
        Call::AddRule(to_rule.clone()),
        Call::AddRule(from_rule.clone()),
    ];
    assert_eq!(
        host.calls(),
        [host_end_up(&p).as_slice(), &host_side].concat()
    );
    assert_eq!(
        host.model().routes[0].dst.to_string(),
        "2001:db8:0:1::5/128"
    );
    assert_eq!(
        (to_rule.family(), from_rule.to_string()),
        (
            Family::V6,
            "priority 1536 from 2001:db8:0:1::5/128 lookup 3".into()
        )
    );
    assert!(host.rules(Family::V4).await.unwrap().is_empty());
    assert_eq!(host.rules(Family::V6).await.unwrap().len(), 2);

    // The teardown is the IPv4 pod's, over IPv6 rules and route.
    host.clear_journal();
    teardown_pod_in(&host, &p).await.unwrap();
    assert_eq!(
        host.calls(),
        [
            Call::DeleteRule(to_rule),
            Call::DeleteRule(from_rule),
            Call::DeleteRoute(Route {
                oif: None,
                ..Route::link_scope(MAIN_TABLE, Route::host(p.pod_ip), 0)
            }),
        ]
    );
    let node = host.model();
    assert!(node.rules.is_empty() && node.routes.is_empty());
}

#[tokio::test]
async fn ipv6_multi_nic_pod_gets_its_own_table_and_rule_and_an_ipv4_rule_stays() {
    let host = Recording::new("node");
    // An IPv4 pod's to-rule of the same priority: the IPv6 teardown must not take it.
    let v4_rule = Rule::to_ip(POD_IP, MAIN_TABLE, priority::TO_POD);
    host.add_rule(&v4_rule).await.unwrap();
    let p = pod6(1, 1);
    setup_pod_in(&host, Path::new(POD_NS), &p).await.unwrap();
    let pod_ns = host.namespace(POD_NS);
    let ifindex = index_of(&pod_ns, "mNicIf1");
    let gw: IpAddr = "fe80::2".parse().unwrap();
    let calls = pod_ns.calls();
    let rule_at = calls
        .iter()
        .position(|c| *c == Call::AddRule(Rule::from_ip(p.pod_ip, 1, priority::POD_MULTI_NIC)));
    let address_at = calls
        .iter()
        .position(|c| matches!(c, Call::ReplaceAddressV6 { .. }));
    assert!(rule_at.is_some() && rule_at < address_at, "{calls:?}");
    assert!(calls.contains(&Call::AddRoute(Route::default_via(1, gw, ifindex))));
    teardown_pod_in(&host, &p).await.unwrap();
    assert_eq!(host.model().rules, [v4_rule]);
}
