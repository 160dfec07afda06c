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

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Duration;

use net::firewall::{detect_backend, reconcile_snat};
use net::host::{EniSetup, setup_eni};
use net::iptables_backend::Backend;
use net::netlink::{NetlinkHandle, Rule};
use net::netns::Netns;
use net::pod::{PodNetwork, setup_pod};
use net::route_table::{MAIN_TABLE, priority};
use net::snat::SnatSettings;
use net::testing::TestNetns;
use support::{ENI_MAC, NODE_IP, Node};

const INTERNET: &str = "203.0.113.5";
const EXCLUDED: &str = "192.168.7.5";
const VPC_PEER: &str = "10.0.5.5";
const POD_A: &str = "10.0.0.50";
const POD_B: &str = "10.0.2.30";

/// Connects from `src` to `dst_ip` (a listener bound to 0.0.0.0 in `dst`) and returns the
/// source address the listener saw.
fn seen_source(src: &Netns, dst: &Netns, dst_ip: &str) -> Result<String, String> {
    let listener = dst
        .run(|| TcpListener::bind("0.0.0.0:0"))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = std::thread::spawn(move || -> Result<(), String> {
        let (mut s, peer) = listener.accept().map_err(|e| e.to_string())?;
        s.write_all(peer.ip().to_string().as_bytes())
            .map_err(|e| e.to_string())
    });
    let addr = format!("{dst_ip}:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut stream = src
        .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut seen = String::new();
    stream
        .read_to_string(&mut seen)
        .map_err(|e| e.to_string())?;
    server.join().map_err(|_| "server panicked".to_string())??;
    Ok(seen)
}

fn settings(external_snat: bool) -> SnatSettings {
    SnatSettings {
        primary_ip: NODE_IP.parse().unwrap(),
        exclude_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
        external_snat,
        node_port_support: false,
        ..net::testing::snat_settings()
    }
}

fn tx_packets(ns: &TestNetns, dev: &str) -> u64 {
    ns.exec_ok(&[
        "cat",
        &format!("/sys/class/net/{dev}/statistics/tx_packets"),
    ])
    .trim()
    .parse()
    .unwrap()
}

struct Topology {
    node: Node,
    peer: TestNetns,
    pod_a: TestNetns,
    pod_b: TestNetns,
}

async fn topology(tag: &str) -> Topology {
    let node = Node::new(tag);
    let (n, o) = (&node.node, &node.outside);
    // IPv4 only: a fresh link's IPv6 chatter (router solicitations, MLD reports) would make
    // the per-ENI packet counts below racy.
    for key in ["all", "default"] {
        n.exec_ok(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
        ]);
    }
    let nl = NetlinkHandle::in_netns(&n.netns()).unwrap();
    let mut eni = EniSetup::new(
        ENI_MAC.parse().unwrap(),
        Ipv4Addr::new(10, 0, 2, 20),
        "10.0.2.0/24".parse().unwrap(),
        2,
        9001,
    );
    eni.find_interval = Duration::from_millis(10);
    setup_eni(&nl, &eni).await.unwrap();
    // Loose reverse-path filtering, as aws-node's init container sets it (`cmd/aws-vpc-cni-init`).
    n.exec_ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"]);
    // ipamd's main-ENI rule (upstream's `SetupHostNetwork`).
    let fwmark = Rule {
        priority: Some(priority::MAIN_ENI_FWMARK),
        fwmark: Some(0x80),
        fwmask: Some(0x80),
        table: MAIN_TABLE,
        ..Rule::default()
    };
    nl.add_rule(&fwmark).await.unwrap();

    // The outside: VPC router for 10.0.0.0/24 and 10.0.2.0/24, the Internet host, a host in
    // an excluded CIDR, and the VPC peer behind it.
    o.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    o.exec_ok(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
    o.ip(&["addr", "add", "10.0.2.1/24", "dev", "out1"]);
    // (On loopback: this kernel has no dummy links.)
    o.ip(&["addr", "add", &format!("{INTERNET}/32"), "dev", "lo"]);
    o.ip(&["addr", "add", &format!("{EXCLUDED}/32"), "dev", "lo"]);
    // The VPC fabric delivers a secondary IP to the ENI that owns it.
    o.ip(&[
        "route",
        "add",
        &format!("{POD_A}/32"),
        "via",
        NODE_IP,
        "dev",
        "out0",
    ]);
    o.ip(&[
        "route",
        "add",
        &format!("{POD_B}/32"),
        "via",
        "10.0.2.20",
        "dev",
        "out1",
    ]);
    let peer = TestNetns::new(&format!("{tag}v"));
    peer.ip(&["link", "set", "lo", "up"]);
    o.ip(&[
        "link", "add", "out2", "type", "veth", "peer", "name", "eth0", "netns", &peer.0,
    ]);
    o.ip(&["addr", "add", "10.0.5.1/24", "dev", "out2"]);
    o.ip(&["link", "set", "out2", "up"]);
    peer.ip(&["addr", "add", &format!("{VPC_PEER}/24"), "dev", "eth0"]);
    peer.ip(&["link", "set", "eth0", "up"]);
    peer.ip(&["route", "add", "default", "via", "10.0.5.1"]);

    let pod_a = TestNetns::new(&format!("{tag}a"));
    let pod_b = TestNetns::new(&format!("{tag}b"));
    for (ns, veth, ip, table) in [(&pod_a, "enia", POD_A, 254), (&pod_b, "enib", POD_B, 2)] {
        let p = PodNetwork {
            host_veth: veth.into(),
            pod_ifname: "eth0".into(),
            index: 0,
            pod_ip: ip.parse().unwrap(),
            table,
            mtu: 9001,
        };
        setup_pod(&n.netns(), &ns.path_buf(), &p).await.unwrap();
    }
    Topology {
        node,
        peer,
        pod_a,
        pod_b,
    }
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
    assert_eq!(seen_source(a, &t.peer.netns(), VPC_PEER).unwrap(), POD_A);
    let eth1 = tx_packets(n, "eth1");
    assert_eq!(seen_source(b, &t.peer.netns(), VPC_PEER).unwrap(), POD_B);
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
