//! `setup_eni` against a real kernel, inside namespaces created by the test (upstream's
//! `setupENINetwork`).

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use net::host::{EniSetup, setup_eni, teardown_eni_rules};
use net::kernel::Kernel;
use net::netlink::{Family, NetlinkError, NetlinkHandle, Route, Rule, Scope};
use net::route_table::priority;
use net::state::NetnsState;
use support::{ENI_MAC, Node};

fn eni(table: u32) -> EniSetup {
    let mut s = EniSetup::new(
        ENI_MAC.parse().unwrap(),
        Ipv4Addr::new(10, 0, 2, 20),
        "10.0.2.0/24".parse().unwrap(),
        table,
        9001,
    );
    s.find_attempts = 2;
    s.find_interval = Duration::from_millis(10);
    s
}

#[tokio::test]
async fn setup_eni_produces_spec_routes_rules_and_address() {
    let node = Node::new("eni");
    // A stale global address must be replaced.
    node.node.ip(&["addr", "add", "10.9.9.9/24", "dev", "eth1"]);
    let nl = NetlinkHandle::in_netns(&node.node.netns()).unwrap();

    let link = setup_eni(&nl, &eni(2)).await.unwrap();
    assert_eq!(link.name, "eth1");

    let st = NetnsState::capture(&nl).await.unwrap();
    let eth1 = st.link("eth1").unwrap();
    assert!(eth1.up);
    assert_eq!(eth1.mtu, 9001);
    assert_eq!(
        st.addresses_of("eth1"),
        vec!["10.0.2.20/24".parse::<Ipv4Net>().unwrap()]
    );
    let table2 = st.unicast_routes(2);
    assert_eq!(table2.len(), 2, "{table2:?}");
    let gw_route = table2
        .iter()
        .find(|r| r.dst.to_string() == "10.0.2.1/32")
        .unwrap();
    assert_eq!(gw_route.scope, Scope::Link);
    assert_eq!(gw_route.dev.as_deref(), Some("eth1"));
    let default = table2.iter().find(|r| r.dst.prefix_len() == 0).unwrap();
    assert_eq!(default.gateway, Some(Ipv4Addr::new(10, 0, 2, 1).into()));
    assert_eq!(default.dev.as_deref(), Some("eth1"));
    // The kernel's subnet route is gone from main.
    assert!(
        st.unicast_routes(254)
            .iter()
            .all(|r| r.dev.as_deref() != Some("eth1")),
        "{:?}",
        st.unicast_routes(254)
    );
    assert_eq!(
        st.rules_at(priority::ENI_PRIMARY),
        vec![&Rule::from_ip(Ipv4Addr::new(10, 0, 2, 20), 2, 32765)]
    );

    // The same, as iproute2 shows it.
    let t2 = node.node.ip(&["route", "show", "table", "2"]);
    assert!(t2.contains("default via 10.0.2.1 dev eth1"), "{t2}");
    assert!(t2.contains("10.0.2.1 dev eth1 scope link"), "{t2}");
    let main = node.node.ip(&["route", "show"]);
    assert!(!main.contains("10.0.2.0/24"), "{main}");
    let rules = node.node.ip(&["rule"]);
    assert!(rules.contains("32765:\tfrom 10.0.2.20 lookup 2"), "{rules}");

    // Idempotent.
    setup_eni(&nl, &eni(2)).await.unwrap();
    assert_eq!(NetnsState::capture(&nl).await.unwrap(), st);

    // ENI freed: its rules go.
    assert_eq!(
        teardown_eni_rules(&nl, Ipv4Addr::new(10, 0, 2, 20))
            .await
            .unwrap(),
        1
    );
    assert!(node.node.ip(&["rule"]).find("10.0.2.20").is_none());
}

#[tokio::test]
async fn setup_eni_without_rule_and_error_cases() {
    let node = Node::new("enx");
    let nl = NetlinkHandle::in_netns(&node.node.netns()).unwrap();

    let mut s = eni(5);
    s.add_rule = false;
    setup_eni(&nl, &s).await.unwrap();
    let st = NetnsState::capture(&nl).await.unwrap();
    assert!(st.rules_at(priority::ENI_PRIMARY).is_empty());
    assert_eq!(st.unicast_routes(5).len(), 2);

    let err = setup_eni(&nl, &eni(254)).await.unwrap_err();
    assert!(matches!(err, NetlinkError::Invalid(_)), "{err}");

    let mut missing = eni(3);
    missing.mac = "02:00:00:00:09:09".parse().unwrap();
    let err = setup_eni(&nl, &missing).await.unwrap_err();
    assert!(
        matches!(err, NetlinkError::LinkByMacNotFound { attempts: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("02:00:00:00:09:09"));
    // Nothing was changed by the failures.
    assert_eq!(NetnsState::capture(&nl).await.unwrap(), st);
}

#[tokio::test]
async fn rules_exist_ok_and_delete_missing_ok() {
    let node = Node::new("rul");
    let nl = NetlinkHandle::in_netns(&node.node.netns()).unwrap();
    let mark = Rule {
        priority: Some(priority::MAIN_ENI_FWMARK),
        fwmark: Some(0x80),
        fwmask: Some(0x80),
        table: 254,
        ..Rule::default()
    };
    nl.add_rule(&mark).await.unwrap();
    nl.add_rule(&mark).await.unwrap(); // EEXIST is fine
    let rules = node.node.ip(&["rule"]);
    assert_eq!(
        rules.matches("fwmark 0x80/0x80 lookup main").count(),
        1,
        "{rules}"
    );
    assert_eq!(
        nl.rules(Family::V4)
            .await
            .unwrap()
            .iter()
            .filter(|r| **r == mark)
            .count(),
        1
    );
    assert!(nl.delete_rule(&mark).await.unwrap());
    assert!(!nl.delete_rule(&mark).await.unwrap()); // ENOENT is fine

    // Several identical-priority rules of one source: delete-all removes every one.
    let src = Ipv4Addr::new(10, 0, 1, 9);
    for table in [3, 4] {
        nl.add_rule(&Rule::from_ip(src, table, 1536)).await.unwrap();
    }
    let n = nl
        .delete_rules_where(|r| r.src == Some(Route::host(src)))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(!node.node.ip(&["rule"]).contains("10.0.1.9"));
}

/// Strict security-groups-for-pods mode (spec 7.2 step 4): the `local` rule ends at
/// priority 20 and nowhere else, and a second run (an agent restart) keeps it there.
#[tokio::test]
async fn strict_mode_moves_the_local_rule_to_priority_20_once() {
    let node = Node::new("localrule");
    let nl = NetlinkHandle::in_netns(&node.node.netns()).unwrap();
    let before = node.node.ip(&["rule", "show"]);
    assert!(before.contains("0:\tfrom all lookup local"), "{before}");
    for run in 0..2 {
        net::host::move_local_rule_below_branch_rules(&nl, net::firewall::Family::V4)
            .await
            .unwrap();
        let rules = node.node.ip(&["rule", "show"]);
        let local: Vec<&str> = rules
            .lines()
            .filter(|l| l.contains("lookup local"))
            .collect();
        assert_eq!(local, ["20:\tfrom all lookup local"], "run {run}: {rules}");
        assert!(rules.contains("32766:\tfrom all lookup main"), "{rules}");
    }
}

/// IPv6 strict mode (spec 7.2 step 4 with `v6Enabled`): the IPv6 `local` rule ends at
/// priority 20, the ICMPv6 gateway rule is at 0, the IPv4 rules are untouched, and a second
/// run (an agent restart) changes nothing.
#[tokio::test]
async fn ipv6_strict_mode_moves_the_ipv6_local_rule_and_adds_the_gateway_rule_once() {
    let node = Node::new("localrule6");
    let nl = NetlinkHandle::in_netns(&node.node.netns()).unwrap();
    let v4 = node.node.ip(&["-4", "rule", "show"]);
    for run in 0..2 {
        net::host::setup_ipv6_strict_mode(&nl).await.unwrap();
        let rules = node.node.ip(&["-6", "rule", "show"]);
        assert_eq!(
            rules,
            "0:\tfrom fe80:ec2::1 ipproto ipv6-icmp lookup local\n\
             20:\tfrom all lookup local\n\
             32766:\tfrom all lookup main\n",
            "run {run}"
        );
        assert_eq!(node.node.ip(&["-4", "rule", "show"]), v4, "run {run}");
    }
    let read = nl.rules(net::firewall::Family::V6).await.unwrap();
    // The kernel reports no priority attribute for priority 0.
    let gateway = Rule {
        priority: None,
        ..net::host::ipv6_gateway_rule()
    };
    assert!(
        read.contains(&gateway),
        "the rule reads back as written: {read:?}"
    );
}
