//! The nftables connmark backend (upstream's `nftConnmark`, spec 7.7) against the real
//! kernel with real TCP, and the migrations between it and the iptables backend.
//!
//! Topology, all in namespaces made here: a node (primary ENI `eth0` 10.0.0.10, secondary
//! ENI `eth1` 10.0.2.20 with table 2) whose ENIs are veths into an "outside" namespace that
//! plays the VPC router and the Internet (203.0.113.5, and 192.168.7.5 in an excluded
//! CIDR), and a "VPC peer" namespace (10.0.5.5) behind it. The pod's IP is on the secondary
//! ENI (table 2): only the connmark and the fwmark rule send its off-VPC connections out of
//! `eth0`, where they are SNATed. Listeners report the source address they saw.

mod support;

use net::connmark::ConnmarkBackend;
use net::firewall::{detect_connmark_backend, reconcile_snat};
use net::iptables_backend::Backend;
use net::netlink::NetlinkHandle;
use net::nft_connmark::{self, NftConnmark, NftRule};
use net::snat::SnatSettings;
use net::testing::TestNetns;
use support::{EXCLUDED, INTERNET, NODE_IP, RoutedNode, VPC_PEER, seen_source, tx_packets};

const POD: &str = "10.0.2.30";

/// Upstream v1.23's table as its netlink calls build it (`nftables_connmark.go`).
const UPSTREAM_TABLE: [&str; 7] = [
    "add table ip aws-cni",
    "add chain ip aws-cni nat-prerouting { type nat hook prerouting priority -90; policy accept; }",
    "add chain ip aws-cni snat-mark",
    "add rule ip aws-cni nat-prerouting fib daddr type local return",
    "add rule ip aws-cni nat-prerouting iifname \"eni*\" counter jump snat-mark",
    "add rule ip aws-cni nat-prerouting counter meta mark set ct mark & 0x80",
    "add rule ip aws-cni snat-mark counter ct mark set ct mark | 0x80",
];

/// A packet-mark bit owned by someone else: set at dstnat, counted in forward.
const OTHER_MARKS: [&str; 5] = [
    "add table ip other",
    "add chain ip other pre { type nat hook prerouting priority -100; policy accept; }",
    "add rule ip other pre iifname \"eni*\" meta mark set meta mark | 0x4000",
    "add chain ip other forwarded { type filter hook forward priority 0; policy accept; }",
    "add rule ip other forwarded meta mark & 0x4000 == 0x4000 counter",
];

fn settings(connmark_backend: ConnmarkBackend, external_snat: bool) -> SnatSettings {
    SnatSettings {
        primary_ip: NODE_IP.parse().unwrap(),
        exclude_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
        external_snat,
        node_port_support: false,
        connmark_backend,
        ..net::testing::snat_settings()
    }
}

struct Topology {
    node: RoutedNode,
    pod: TestNetns,
}

async fn topology(tag: &str) -> Topology {
    let node = RoutedNode::new(tag).await;
    // On the secondary ENI: only the connmark and the fwmark rule send its off-VPC
    // connections out of `eth0`.
    let pod = node.add_pod(&format!("{tag}p"), "enib", POD, true).await;
    Topology { node, pod }
}

/// Reconciles to `s` and checks that a second reconcile has nothing to do.
async fn apply(t: &Topology, s: &SnatSettings) -> usize {
    let nl = NetlinkHandle::in_netns(&t.node.node.netns()).unwrap();
    let applied = reconcile_snat(&nl, Backend::Nft, s).await.unwrap();
    assert_eq!(
        reconcile_snat(&nl, Backend::Nft, s).await.unwrap(),
        0,
        "converged"
    );
    applied
}

/// The conntrack entry of the pod's connection to `dst`: its mark.
fn ct_mark(n: &TestNetns, dst: &str) -> Option<u32> {
    let table = n.exec_ok(&["cat", "/proc/net/nf_conntrack"]);
    let line = table
        .lines()
        .rfind(|l| l.contains(&format!("src={POD} dst={dst} ")))?;
    let mark = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("mark="))?;
    mark.parse().ok()
}

/// Table `ip aws-cni` as `nft -j` lists it.
fn listed(n: &TestNetns) -> nft_connmark::TableState {
    let json = n.exec_ok(&["nft", "-j", "list", "table", "ip", "aws-cni"]);
    nft_connmark::parse_table(&json).unwrap()
}

fn has_table(n: &TestNetns) -> bool {
    n.exec_ok(&["nft", "list", "tables", "ip"])
        .contains("table ip aws-cni")
}

/// Upstream's observable behaviour with the nftables backend: off-VPC connections are
/// marked, leave by the primary ENI and are SNATed; VPC, excluded and node-local
/// destinations are not marked.
async fn traffic_is_steered(t: &Topology) {
    let (n, o, pod) = (&t.node.node, &t.node.outside, &t.pod.netns());
    let (eth0, eth1) = (tx_packets(n, "eth0"), tx_packets(n, "eth1"));
    assert_eq!(seen_source(pod, &o.netns(), INTERNET).unwrap(), NODE_IP);
    assert!(tx_packets(n, "eth0") > eth0, "the off-VPC flow uses eth0");
    assert_eq!(tx_packets(n, "eth1"), eth1, "and not the pod's own ENI");
    assert_eq!(ct_mark(n, INTERNET), Some(0x80), "connmark 0x80");

    let eth1 = tx_packets(n, "eth1");
    assert_eq!(
        seen_source(pod, &t.node.peer.netns(), VPC_PEER).unwrap(),
        POD
    );
    assert!(
        tx_packets(n, "eth1") > eth1,
        "the VPC flow uses the pod's ENI"
    );
    assert_eq!(ct_mark(n, VPC_PEER), Some(0), "VPC CIDR: exempt");
    assert_eq!(seen_source(pod, &o.netns(), EXCLUDED).unwrap(), POD);
    assert_eq!(ct_mark(n, EXCLUDED), Some(0), "excluded CIDR: exempt");
    assert_eq!(seen_source(pod, &n.netns(), NODE_IP).unwrap(), POD);
    assert_eq!(ct_mark(n, NODE_IP), Some(0), "local address: fib return");
    // The set-mark rule counted the off-VPC connection's first packet only.
    let text = n.exec_ok(&["nft", "list", "chain", "ip", "aws-cni", "snat-mark"]);
    let set_mark = text
        .lines()
        .find(|l| l.contains("ct mark set"))
        .unwrap_or_default();
    assert!(set_mark.contains("counter packets 1 "), "{text}");
}

#[tokio::test]
async fn nftables_backend_marks_real_traffic_and_migrates_both_ways() {
    let t = topology("nftc").await;
    let n = &t.node.node;

    // An iptables-backend node (upstream before the nftables backend, or ours on legacy).
    apply(&t, &settings(ConnmarkBackend::Iptables, false)).await;
    let nat = n.exec_ok(&["iptables-nft-save", "-t", "nat"]);
    assert!(nat.contains(":AWS-CONNMARK-CHAIN-0"), "{nat}");
    assert!(!has_table(n));

    // Upstream v1.23 ran here too and left its table, with the restore rule that
    // overwrites the whole packet mark.
    for cmd in UPSTREAM_TABLE {
        n.exec_ok(&["nft", cmd]);
    }
    // Another component's packet-mark bit (kube-proxy's masquerade bit, set at dstnat just
    // before our chain), counted when forwarded.
    for cmd in OTHER_MARKS {
        n.exec_ok(&["nft", cmd]);
    }

    // Migration iptables → nftables: the table is rewritten, the iptables connmark rules
    // and chain go (upstream's cleanupIptablesConnmarkRules), SNAT stays.
    let s = settings(ConnmarkBackend::Nftables, false);
    assert_eq!(apply(&t, &s).await, 2, "the nft batch and the nat batch");
    let nat = n.exec_ok(&["iptables-nft-save", "-t", "nat"]);
    assert!(!nat.contains("CONNMARK"), "{nat}");
    assert!(nat.contains("-j SNAT --to-source 10.0.0.10"), "{nat}");
    let state = listed(n);
    let want = NftConnmark::new("eni", 0x80, s.exempt_cidrs()).unwrap();
    assert!(want.is_converged(&state), "{state:?}");
    traffic_is_steered(&t).await;
    // The masked restore kept the other bit (upstream issue #3872).
    let fwd = n.exec_ok(&["nft", "list", "chain", "ip", "other", "forwarded"]);
    assert!(
        !fwd.contains("counter packets 0 "),
        "0x4000 survived: {fwd}"
    );
    // Drift (a rule removed by hand) is repaired by one batch.
    n.exec_ok(&["nft", "flush", "chain", "ip", "aws-cni", "snat-mark"]);
    let nl = NetlinkHandle::in_netns(&n.netns()).unwrap();
    assert_eq!(reconcile_snat(&nl, Backend::Nft, &s).await.unwrap(), 1);
    assert_eq!(
        listed(n).rules["snat-mark"].last(),
        Some(&NftRule::SetMark(0x80))
    );

    // Migration nftables → iptables: the table goes, the iptables rules carry the marking.
    assert_eq!(
        apply(&t, &settings(ConnmarkBackend::Iptables, false)).await,
        2
    );
    assert!(!has_table(n));
    let nat = n.exec_ok(&["iptables-nft-save", "-t", "nat"]);
    assert!(nat.contains("-A AWS-CONNMARK-CHAIN-0 -m comment --comment \"AWS, CONNMARK\" -j CONNMARK --set-xmark 0x80/0x80"), "{nat}");
    assert_eq!(
        seen_source(&t.pod.netns(), &t.node.outside.netns(), INTERNET).unwrap(),
        NODE_IP
    );

    // External SNAT under nftables: no table, no marking; the pod's own IP leaves by its ENI.
    apply(&t, &s).await;
    assert!(has_table(n));
    apply(&t, &settings(ConnmarkBackend::Nftables, true)).await;
    assert!(!has_table(n));
    assert!(
        !n.exec_ok(&["iptables-nft-save", "-t", "nat"])
            .contains("AWS")
    );
    assert_eq!(
        seen_source(&t.pod.netns(), &t.node.outside.netns(), INTERNET).unwrap(),
        POD
    );
}

#[tokio::test]
async fn detection_reads_the_programmed_iptables_version() {
    let ns = TestNetns::new("nftd");
    let nl = NetlinkHandle::in_netns(&ns.netns()).unwrap();
    assert_eq!(
        detect_connmark_backend(&nl, Backend::Nft).await,
        ConnmarkBackend::Nftables,
        "iptables-nft --version says (nf_tables)"
    );
    assert_eq!(
        detect_connmark_backend(&nl, Backend::Legacy).await,
        ConnmarkBackend::Iptables,
        "iptables-legacy --version says (legacy)"
    );
}
