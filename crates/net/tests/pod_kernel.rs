//! Pod wiring and teardown against a real kernel, with real traffic between namespaces the
//! test creates (upstream's `SetupPodNetwork`, `TeardownPodNetwork`).

mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use ipnet::Ipv4Net;
use net::host::{EniSetup, setup_eni};
use net::netlink::{NetlinkError, NetlinkHandle, Route, Rule, Scope};
use net::netns::NetnsError;
use net::pod::{
    PodNetwork, finish_pod_in, prepare_pod_in, remove_pod_veth, setup_pod, teardown_pod,
};
use net::route_table::priority;
use net::state::NetnsState;
use net::testing::TestNetns;
use support::{ENI_MAC, NODE_IP, Node, tcp_exchange};

fn pod(host_veth: &str, ip: Ipv4Addr, table: u32) -> PodNetwork {
    PodNetwork {
        host_veth: host_veth.into(),
        pod_ifname: "eth0".into(),
        index: 0,
        pod_ip: ip.into(),
        table,
        mtu: 9001,
    }
}

async fn node_with_eni(tag: &str) -> Node {
    let node = Node::new(tag);
    let nl = NetlinkHandle::in_netns(&node.node.netns()).unwrap();
    let mut s = EniSetup::new(
        ENI_MAC.parse().unwrap(),
        Ipv4Addr::new(10, 0, 2, 20),
        "10.0.2.0/24".parse().unwrap(),
        2,
        9001,
    );
    s.find_interval = Duration::from_millis(10);
    setup_eni(&nl, &s).await.unwrap();
    node
}

/// Asserts the pod-side state ADD leaves (upstream's `SetupPodNetwork`) for `eth0`.
fn assert_pod_view(st: &NetnsState, ip: Ipv4Addr, host_mac: Option<net::netlink::Mac>) {
    let gw = Ipv4Addr::new(169, 254, 1, 1);
    assert_eq!(st.addresses_of("eth0"), vec![Ipv4Net::from(ip)]);
    let eth0 = st.link("eth0").unwrap();
    assert!(eth0.up);
    assert_eq!(eth0.mtu, 9001);
    let main = st.unicast_routes(254);
    assert_eq!(main.len(), 2, "{main:?}");
    assert!(main.iter().any(|r| r.dst == Route::host(gw)
        && r.scope == Scope::Link
        && r.dev.as_deref() == Some("eth0")));
    assert!(main.iter().any(|r| r.dst.prefix_len() == 0
        && r.gateway == Some(gw.into())
        && r.dev.as_deref() == Some("eth0")));
    assert_eq!(st.neighbours.len(), 1);
    assert_eq!(st.neighbours[0].ip, gw);
    assert_eq!(st.neighbours[0].dev, "eth0");
    assert_eq!(st.neighbours[0].mac, host_mac);
}

/// After a teardown: the node's routes, rules, addresses and neighbours are exactly as
/// `before`; only the pods' host veths are left, to go with their namespaces (upstream's
/// `TeardownPodNetwork` leaves them to the runtime too).
async fn assert_torn_down(host: &NetlinkHandle, before: &NetnsState, veths: &[&str]) {
    let now = NetnsState::capture(host).await.unwrap();
    assert_eq!(
        (&now.routes, &now.rules, &now.addresses, &now.neighbours),
        (
            &before.routes,
            &before.rules,
            &before.addresses,
            &before.neighbours
        )
    );
    let mut names: Vec<&str> = now.links.iter().map(|l| l.name.as_str()).collect();
    names.retain(|n| !veths.contains(n));
    let before_names: Vec<&str> = before.links.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, before_names, "only the veths {veths:?} are left");
    assert_eq!(now.links.len(), before.links.len() + veths.len());
}

/// What the runtime does after DEL: removes the pods' namespaces; the veth pairs go with
/// them and the node is exactly as `before` (waits up to 5 s for the kernel's cleanup).
async fn namespaces_removed(host: &NetlinkHandle, pods: Vec<TestNetns>, before: &NetnsState) {
    drop(pods);
    let mut now = NetnsState::capture(host).await.unwrap();
    for _ in 0..250 {
        if now == *before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        now = NetnsState::capture(host).await.unwrap();
    }
    assert_eq!(now, *before);
}

#[tokio::test]
async fn two_pods_wired_traffic_flows_and_teardown_restores_node() {
    let node = node_with_eni("pod").await;
    let pod1_ns = TestNetns::new("p1");
    let pod2_ns = TestNetns::new("p2");
    let host = NetlinkHandle::in_netns(&node.node.netns()).unwrap();
    let before = NetnsState::capture(&host).await.unwrap();

    let ip1 = Ipv4Addr::new(10, 0, 0, 50);
    let ip2 = Ipv4Addr::new(10, 0, 2, 30);
    let p1 = pod("enib5faff8a083", ip1, 254); // primary ENI: main, no from-rule
    let p2 = pod("enicc21c2d7785", ip2, 2); // secondary ENI table 2
    setup_pod(&node.node.netns(), &pod1_ns.path_buf(), &p1)
        .await
        .unwrap();
    setup_pod(&node.node.netns(), &pod2_ns.path_buf(), &p2)
        .await
        .unwrap();

    // Host side.
    let st = NetnsState::capture(&host).await.unwrap();
    for p in [&p1, &p2] {
        let veth = st.link(&p.host_veth).unwrap();
        assert!(veth.up);
        assert_eq!(veth.kind.as_deref(), Some("veth"));
        assert_eq!(veth.mac.unwrap().0[0] & 0x03, 0x02);
        assert!(
            st.unicast_routes(254)
                .iter()
                .any(|r| r.dst == Route::host(p.pod_ip)
                    && r.scope == Scope::Link
                    && r.dev.as_deref() == Some(p.host_veth.as_str()))
        );
    }
    let mut to_rules: Vec<Rule> = st.rules_at(priority::TO_POD).into_iter().cloned().collect();
    to_rules.sort();
    let mut want = vec![Rule::to_ip(ip1, 254, 512), Rule::to_ip(ip2, 254, 512)];
    want.sort();
    assert_eq!(to_rules, want);
    assert_eq!(
        st.rules_at(priority::FROM_POD),
        vec![&Rule::from_ip(ip2, 2, 1536)]
    );
    let rules = node.node.ip(&["rule"]);
    assert!(
        rules.contains("512:\tfrom all to 10.0.2.30 lookup main"),
        "{rules}"
    );
    assert!(rules.contains("1536:\tfrom 10.0.2.30 lookup 2"), "{rules}");
    assert!(!rules.contains("from 10.0.0.50 lookup"), "{rules}");
    let main = node.node.ip(&["route", "show"]);
    assert!(
        main.contains("10.0.0.50 dev enib5faff8a083 scope link"),
        "{main}"
    );

    // Host veth IPv6 sysctls were written inside the node namespace.
    for (key, want) in [
        ("accept_ra", "0"),
        ("accept_redirects", "1"),
        ("forwarding", "0"),
    ] {
        let path = format!("/proc/sys/net/ipv6/conf/{}/{key}", p2.host_veth);
        assert_eq!(node.node.exec_ok(&["cat", &path]).trim(), want, "{key}");
    }

    // Pod side.
    let pod1 = NetnsState::capture_in(&pod1_ns.netns()).await.unwrap();
    assert_pod_view(&pod1, ip1, st.link(&p1.host_veth).unwrap().mac);
    let pod2 = NetnsState::capture_in(&pod2_ns.netns()).await.unwrap();
    assert_pod_view(&pod2, ip2, st.link(&p2.host_veth).unwrap().mac);
    let r = pod1_ns.ip(&["route"]);
    assert!(r.contains("default via 169.254.1.1 dev eth0"), "{r}");
    assert!(r.contains("169.254.1.1 dev eth0 scope link"), "{r}");
    let n = pod1_ns.ip(&["neigh"]);
    assert!(
        n.contains("169.254.1.1 dev eth0 lladdr") && n.contains("PERMANENT"),
        "{n}"
    );

    // Real traffic: pod -> pod both ways, pod -> node primary address.
    tcp_exchange(&pod1_ns.netns(), &pod2_ns.netns(), "10.0.2.30").unwrap();
    tcp_exchange(&pod2_ns.netns(), &pod1_ns.netns(), "10.0.0.50").unwrap();
    tcp_exchange(&pod1_ns.netns(), &node.node.netns(), NODE_IP).unwrap();
    tcp_exchange(&pod2_ns.netns(), &node.node.netns(), NODE_IP).unwrap();

    // Teardown removes every route and rule; a second teardown is a no-op.
    let veths = [p1.host_veth.as_str(), p2.host_veth.as_str()];
    teardown_pod(&node.node.netns(), &p1).await.unwrap();
    teardown_pod(&node.node.netns(), &p2).await.unwrap();
    assert_torn_down(&host, &before, &veths).await;
    teardown_pod(&node.node.netns(), &p1).await.unwrap();
    teardown_pod(&node.node.netns(), &p2).await.unwrap();
    assert_torn_down(&host, &before, &veths).await;
    // The pods are cut off at once; their namespaces take the veths with them.
    assert!(tcp_exchange(&pod1_ns.netns(), &pod2_ns.netns(), "10.0.2.30").is_err());
    assert!(tcp_exchange(&pod1_ns.netns(), &node.node.netns(), NODE_IP).is_err());
    namespaces_removed(&host, vec![pod1_ns, pod2_ns], &before).await;
}

#[tokio::test]
async fn teardown_removes_duplicate_from_rules() {
    let node = node_with_eni("dup").await;
    let pod_ns = TestNetns::new("d1");
    let host = NetlinkHandle::in_netns(&node.node.netns()).unwrap();
    let before = NetnsState::capture(&host).await.unwrap();
    let p = pod("eni0000000dup", Ipv4Addr::new(10, 0, 2, 31), 2);
    setup_pod(&node.node.netns(), &pod_ns.path_buf(), &p)
        .await
        .unwrap();
    // Old versions left several identical from-rules per pod: add a true duplicate (a
    // request without NLM_F_EXCL, which the kernel accepts).
    host.append_rule(&Rule::from_ip(p.pod_ip, 2, 1536))
        .await
        .unwrap();
    assert_eq!(
        NetnsState::capture(&host)
            .await
            .unwrap()
            .rules_at(1536)
            .len(),
        2
    );
    teardown_pod(&node.node.netns(), &p).await.unwrap();
    assert_torn_down(&host, &before, &[&p.host_veth]).await;
    namespaces_removed(&host, vec![pod_ns], &before).await;
}

#[tokio::test]
async fn setup_errors_are_clear_and_leave_nothing_behind() {
    let node = node_with_eni("err").await;
    let host = NetlinkHandle::in_netns(&node.node.netns()).unwrap();
    let before = NetnsState::capture(&host).await.unwrap();
    let p = pod("eni00000000err", Ipv4Addr::new(10, 0, 0, 60), 254);

    // Missing pod netns.
    let missing = Path::new("/var/run/netns/vcni-does-not-exist");
    let err = setup_pod(&node.node.netns(), missing, &p)
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetlinkError::Netns(NetnsError::Open { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("vcni-does-not-exist"), "{err}");
    assert_eq!(NetnsState::capture(&host).await.unwrap(), before);

    // The pod already has an eth0.
    let pod_ns = TestNetns::new("e1");
    pod_ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "x0"]);
    let pod_before = NetnsState::capture_in(&pod_ns.netns()).await.unwrap();
    let err = setup_pod(&node.node.netns(), &pod_ns.path_buf(), &p)
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetlinkError::NameInUse { ref name, .. } if name == "eth0"),
        "{err}"
    );
    assert!(err.to_string().contains(&pod_ns.0), "{err}");
    assert_eq!(NetnsState::capture(&host).await.unwrap(), before);
    assert_eq!(
        NetnsState::capture_in(&pod_ns.netns()).await.unwrap(),
        pod_before
    );

    // A stale host veth of the same name is replaced (as upstream's `SetupPodNetwork` does).
    let pod2_ns = TestNetns::new("e2");
    node.node.ip(&[
        "link",
        "add",
        &p.host_veth,
        "type",
        "veth",
        "peer",
        "name",
        "stale0",
    ]);
    setup_pod(&node.node.netns(), &pod2_ns.path_buf(), &p)
        .await
        .unwrap();
    let st = NetnsState::capture(&host).await.unwrap();
    assert!(st.link("stale0").is_none(), "stale pair must be gone");
    assert!(st.link(&p.host_veth).unwrap().up);
    tcp_exchange(&pod2_ns.netns(), &node.node.netns(), NODE_IP).unwrap();
    teardown_pod(&node.node.netns(), &p).await.unwrap();
    assert_torn_down(&host, &before, &[&p.host_veth]).await;
    namespaces_removed(&host, vec![pod2_ns], &before).await;

    // Teardown of a pod that never existed is fine.
    teardown_pod(
        &node.node.netns(),
        &pod("eni000000never", Ipv4Addr::new(10, 0, 2, 99), 2),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn second_interface_uses_its_own_gateway_table_and_rule() {
    let node = node_with_eni("nic").await;
    let pod_ns = TestNetns::new("m1");
    let host = NetlinkHandle::in_netns(&node.node.netns()).unwrap();
    let before = NetnsState::capture(&host).await.unwrap();
    let eth0 = pod("eni3a52ce78095", Ipv4Addr::new(10, 0, 0, 70), 254);
    let nic1 = PodNetwork {
        host_veth: "ence799470a46".into(),
        pod_ifname: "mNicIf1".into(),
        index: 1,
        pod_ip: Ipv4Addr::new(10, 0, 2, 70).into(),
        table: 2,
        mtu: 9001,
    };
    setup_pod(&node.node.netns(), &pod_ns.path_buf(), &eth0)
        .await
        .unwrap();
    setup_pod(&node.node.netns(), &pod_ns.path_buf(), &nic1)
        .await
        .unwrap();

    let st = NetnsState::capture_in(&pod_ns.netns()).await.unwrap();
    let gw2 = Ipv4Addr::new(169, 254, 1, 2);
    let t1 = st.unicast_routes(1);
    assert_eq!(t1.len(), 2, "{t1:?}");
    assert!(
        t1.iter()
            .any(|r| r.dst == Route::host(gw2) && r.scope == Scope::Link)
    );
    assert!(
        t1.iter()
            .any(|r| r.gateway == Some(gw2.into()) && r.dev.as_deref() == Some("mNicIf1"))
    );
    assert_eq!(
        st.rules_at(priority::POD_MULTI_NIC),
        vec![&Rule::from_ip(nic1.pod_ip, 1, 1)]
    );
    assert!(
        st.neighbours
            .iter()
            .any(|n| n.ip == gw2 && n.dev == "mNicIf1")
    );
    // With both interfaces wired the pod still reaches the node (through eth0).
    tcp_exchange(&pod_ns.netns(), &node.node.netns(), NODE_IP).unwrap();

    teardown_pod(&node.node.netns(), &eth0).await.unwrap();
    teardown_pod(&node.node.netns(), &nic1).await.unwrap();
    assert_torn_down(&host, &before, &[&eth0.host_veth, &nic1.host_veth]).await;
    namespaces_removed(&host, vec![pod_ns], &before).await;
}

/// The two halves the plugin runs around ipamd's answer: the veth half alone, undone
/// (ipamd had no address), and a second half that fails (the pod's interface vanished):
/// both leave the node and the pod exactly as before.
#[tokio::test]
async fn an_undone_or_failed_half_wiring_leaves_nothing() {
    let node = node_with_eni("half").await;
    let pod_ns = TestNetns::new("h1");
    let host = NetlinkHandle::in_netns(&node.node.netns()).unwrap();
    let before = NetnsState::capture(&host).await.unwrap();
    let pod_before = NetnsState::capture_in(&pod_ns.netns()).await.unwrap();
    // Only the names, index and MTU are read before the address is known.
    let mut p = pod("eni0000000half", Ipv4Addr::UNSPECIFIED, 0);

    let prepared = prepare_pod_in(&host, &pod_ns.path_buf(), &p).await.unwrap();
    let st = NetnsState::capture(&host).await.unwrap();
    let veth = st.link(&p.host_veth).unwrap();
    assert!(veth.up);
    assert_eq!(veth.mac, Some(prepared.host_mac));
    let pod_st = NetnsState::capture_in(&pod_ns.netns()).await.unwrap();
    assert_eq!(pod_st.link("eth0").unwrap().mac, prepared.pod_mac);
    assert!(pod_st.addresses_of("eth0").is_empty(), "no address yet");
    assert!(remove_pod_veth(&host, &p).await.unwrap());
    assert_eq!(NetnsState::capture(&host).await.unwrap(), before);
    assert_eq!(
        NetnsState::capture_in(&pod_ns.netns()).await.unwrap(),
        pod_before
    );

    let prepared = prepare_pod_in(&host, &pod_ns.path_buf(), &p).await.unwrap();
    pod_ns.ip(&["link", "del", "eth0"]);
    p.pod_ip = Ipv4Addr::new(10, 0, 2, 32).into();
    p.table = 2;
    let err = finish_pod_in(&host, &prepared, &p).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(NetnsState::capture(&host).await.unwrap(), before);
    assert_eq!(
        NetnsState::capture_in(&pod_ns.netns()).await.unwrap(),
        pod_before
    );
}
