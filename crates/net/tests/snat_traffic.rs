//! Real TCP through the SNAT and connmark rules (upstream's `updateHostIptablesRules` and
//! `iptables_connmark.go`), for both iptables backends.
//!
//! Topology, all in namespaces made here: a node (primary ENI `eth0` 10.0.0.10, secondary
//! ENI `eth1` 10.0.2.20 with table 2) whose ENIs are veths into an "outside" namespace that
//! plays the VPC router and the Internet (203.0.113.5, and 192.168.7.5 in an excluded CIDR),
//! and a "VPC peer" namespace (10.0.5.5) behind that router. Pod A's IP is on the primary
//! ENI (main table), pod B's on the secondary ENI (table 2). Listeners report the source
//! address they saw; a completed exchange proves the replies found their way back.

mod support;

use net::firewall::{detect_backend, reconcile_snat};
use net::iptables_backend::Backend;
use net::netlink::NetlinkHandle;
use net::snat::SnatSettings;
use net::testing::TestNetns;
use support::{EXCLUDED, INTERNET, NODE_IP, RoutedNode, VPC_PEER, seen_source, tx_packets};

const POD_A: &str = "10.0.0.50";
const POD_B: &str = "10.0.2.30";

fn settings(external_snat: bool) -> SnatSettings {
    SnatSettings {
        primary_ip: NODE_IP.parse().unwrap(),
        exclude_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
        external_snat,
        node_port_support: false,
        ..net::testing::snat_settings()
    }
}

struct Topology {
    node: RoutedNode,
    pod_a: TestNetns,
    pod_b: TestNetns,
}

async fn topology(tag: &str) -> Topology {
    let node = RoutedNode::new(tag).await;
    let pod_a = node.add_pod(&format!("{tag}a"), "enia", POD_A, false).await;
    let pod_b = node.add_pod(&format!("{tag}b"), "enib", POD_B, true).await;
    Topology { node, pod_a, pod_b }
}

async fn apply(t: &Topology, backend: Backend, s: &SnatSettings) {
    let nl = NetlinkHandle::in_netns(&t.node.node.netns()).unwrap();
    reconcile_snat(&nl, backend, s).await.unwrap();
    // Converged: a second reconcile applies nothing.
    assert_eq!(reconcile_snat(&nl, backend, s).await.unwrap(), 0);
}

async fn scenario(backend: Backend) {
    let t = topology(&format!("s{}", &backend.name()[..1])).await;
    let (n, o) = (&t.node.node, &t.node.outside);
    apply(&t, backend, &settings(false)).await;
    let (a, b) = (&t.pod_a.netns(), &t.pod_b.netns());

    // Off-VPC: SNAT to the node's primary IP, for a primary-ENI pod and (via the connmark
    // and the fwmark rule) for a secondary-ENI pod, whose flow leaves by eth0, not eth1.
    assert_eq!(seen_source(a, &o.netns(), INTERNET).unwrap(), NODE_IP);
    let (eth0, eth1) = (tx_packets(n, "eth0"), tx_packets(n, "eth1"));
    assert_eq!(seen_source(b, &o.netns(), INTERNET).unwrap(), NODE_IP);
    assert!(tx_packets(n, "eth0") > eth0, "B's off-VPC flow uses eth0");
    assert_eq!(tx_packets(n, "eth1"), eth1, "and not its own ENI");
    let conntrack = n.exec_ok(&["cat", "/proc/net/nf_conntrack"]);
    assert!(
        conntrack
            .lines()
            .any(|l| l.contains(&format!("src={POD_B} dst={INTERNET}")) && l.contains("mark=128")),
        "B's connection carries the connmark 0x80: {conntrack}"
    );

    // VPC destinations: no SNAT, the pod's own IP; B's flow uses its own ENI.
    assert_eq!(
        seen_source(a, &t.node.peer.netns(), VPC_PEER).unwrap(),
        POD_A
    );
    let eth1 = tx_packets(n, "eth1");
    assert_eq!(
        seen_source(b, &t.node.peer.netns(), VPC_PEER).unwrap(),
        POD_B
    );
    assert!(tx_packets(n, "eth1") > eth1, "B's VPC flow uses eth1");
    // Excluded CIDR: no SNAT either.
    assert_eq!(seen_source(a, &o.netns(), EXCLUDED).unwrap(), POD_A);
    assert_eq!(seen_source(b, &o.netns(), EXCLUDED).unwrap(), POD_B);
    // Pod to node and pod to pod: unchanged addresses.
    assert_eq!(seen_source(a, &n.netns(), NODE_IP).unwrap(), POD_A);
    assert_eq!(seen_source(a, b, POD_B).unwrap(), POD_A);
    assert_eq!(seen_source(b, a, POD_A).unwrap(), POD_B);

    // The connmark rules (upstream's `iptables_connmark.go`) as the backend shows them.
    let nat = n.exec_ok(&[backend.save(), "-t", "nat"]);
    for line in [
        r#"-A PREROUTING -i eni+ -m comment --comment "AWS, outbound connections" -j AWS-CONNMARK-CHAIN-0"#,
        r#"-A AWS-CONNMARK-CHAIN-0 -d 10.0.0.0/16 -m comment --comment "AWS CONNMARK CHAIN" -j RETURN"#,
        r#"-A AWS-CONNMARK-CHAIN-0 -d 192.168.0.0/16 -m comment --comment "AWS CONNMARK CHAIN" -j RETURN"#,
        r#"-A AWS-CONNMARK-CHAIN-0 -m comment --comment "AWS, CONNMARK" -j CONNMARK --set-xmark 0x80/0x80"#,
    ] {
        assert!(nat.contains(line), "{line} missing in:\n{nat}");
    }
    let mangle = n.exec_ok(&[backend.save(), "-t", "mangle"]);
    assert!(
        mangle.contains(r#"-A PREROUTING -i eni+ -m comment --comment "AWS, primary ENI" -j CONNMARK --restore-mark"#),
        "{mangle}"
    );

    // External SNAT: our nat and mangle rules go; the pod's own IP leaves by its ENI.
    apply(&t, backend, &settings(true)).await;
    let nat = n.exec_ok(&[backend.save(), "-t", "nat"]);
    assert!(!nat.contains("AWS"), "{nat}");
    assert_eq!(seen_source(a, &o.netns(), INTERNET).unwrap(), POD_A);
    assert_eq!(seen_source(b, &o.netns(), INTERNET).unwrap(), POD_B);
}

#[tokio::test]
async fn snat_and_connmark_with_real_traffic_nft() {
    scenario(Backend::Nft).await;
}

#[tokio::test]
async fn snat_and_connmark_with_real_traffic_legacy() {
    scenario(Backend::Legacy).await;
}

#[tokio::test]
async fn backend_detection_counts_rules_like_kube_proxy() {
    let fresh = TestNetns::new("ipb");
    let nl = NetlinkHandle::in_netns(&fresh.netns()).unwrap();
    assert_eq!(
        detect_backend(&nl).await,
        Backend::Nft,
        "no rules anywhere: nft"
    );
    // Rules programmed through legacy (an older kube-proxy): legacy wins.
    for i in 0..3 {
        fresh.exec_ok(&[
            "iptables-legacy",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-d",
            &format!("10.9.{i}.0/24"),
            "-j",
            "RETURN",
        ]);
    }
    assert_eq!(detect_backend(&nl).await, Backend::Legacy);
    // More rules in nft than in legacy (and fewer than 10 legacy ones): nft.
    for i in 0..5 {
        fresh.exec_ok(&[
            "iptables-nft",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-d",
            &format!("10.8.{i}.0/24"),
            "-j",
            "RETURN",
        ]);
    }
    assert_eq!(detect_backend(&nl).await, Backend::Nft);
}
