//! Branch-ENI pod wiring against a real kernel ([`net::branch`]; upstream
//! `SetupBranchENIPodNetwork` / `TeardownBranchENIPodNetwork`). The node namespace's `eth2`
//! stands in for the trunk ENI: a veth into the "outside" namespace, where `out2.<id>` is
//! the branch ENI's subnet (gateway 10.0.32.1/19) on the same VLAN, and the outside routes
//! between that subnet and the node's primary subnet as the VPC would.
//!
//! On a kernel built without 802.1Q support (this project's CI VM: `CONFIG_VLAN_8021Q` is
//! unset) the VLAN link is a macvlan with the same name, parent and MAC
//! (`support/vlan_standin.rs`) and the outside uses `out2` untagged; everything else —
//! rules, tables, routes, traffic, teardown — is the real kernel's either way. The VLAN
//! request itself (id, parent, MAC) is asserted on what the wiring asked for, and on the
//! link when the kernel can make one.

mod support;
#[path = "support/vlan_standin.rs"]
mod vlan_standin;

use std::net::Ipv4Addr;
use std::time::Duration;

use net::branch::{
    BranchPod, BranchVlan, EnforcingMode, setup_branch_pod_in, teardown_branch_pod_in,
};
use net::names::host_veth_name;
use net::netlink::Mac;
use net::pod::{PodNetwork, setup_pod, teardown_pod};
use net::testing::TestNetns;
use serde_json::Value;
use support::{NODE_IP, Node, tcp_exchange};
use vlan_standin::{MacvlanForVlan, kernel_has_vlans};

const TRUNK_MAC: &str = "02:00:00:00:02:02";
const GW: &str = "10.0.32.1";

/// A branch ENI on VLAN `vlan`, its pod at 10.0.40.<vlan>.
fn branch(mode: EnforcingMode, vlan: u32, pod: &str, trunk: u32) -> BranchPod {
    let eni_mac = branch_mac(vlan);
    BranchPod {
        veth: PodNetwork {
            host_veth: host_veth_name(mode.veth_prefix("eni"), "default", pod, 0),
            pod_ifname: "eth0".into(),
            index: 0,
            pod_ip: Ipv4Addr::new(10, 0, 40, u8::try_from(vlan).unwrap()).into(),
            table: 0,
            mtu: 9001,
        },
        vlan: BranchVlan {
            vlan_id: vlan,
            eni_mac,
            subnet_gw: GW.parse().unwrap(),
            parent_ifindex: trunk,
        },
        mode,
    }
}

fn branch_mac(vlan: u32) -> Mac {
    Mac([0x02, 0x42, 0, 0, 0, u8::try_from(vlan).unwrap()])
}

/// The node with its trunk `eth2`, IPv6 off (so that packet counts on the VLAN are ours
/// alone), and the outside as the VPC for VLANs `vlans`. With `strict`, the `local` rule is
/// moved to priority 20 as ipamd does for strict mode (spec 7.2). Returns the trunk's index.
fn sgp_node(tag: &str, vlans: &[u32], strict: bool) -> (Node, u32) {
    let tagged = kernel_has_vlans();
    let node = Node::new(tag);
    let (n, o) = (&node.node, &node.outside);
    for ns in [n, o] {
        for conf in ["all", "default"] {
            ns.exec_ok(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{conf}.disable_ipv6=1"),
            ]);
        }
    }
    n.ip(&[
        "link", "add", "eth2", "address", TRUNK_MAC, "type", "veth", "peer", "name", "out2",
        "netns", &o.0,
    ]);
    n.ip(&["link", "set", "eth2", "up"]);
    o.ip(&["link", "set", "out2", "up"]);
    o.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for &vlan in vlans {
        let dev = outside_dev(vlan);
        if tagged {
            let id = vlan.to_string();
            o.ip(&[
                "link", "add", "link", "out2", "name", &dev, "type", "vlan", "id", &id,
            ]);
            o.ip(&["link", "set", &dev, "up"]);
        }
        if vlan == vlans[0] {
            o.ip(&["addr", "add", &format!("{GW}/19"), "dev", &dev]);
        }
        let pod_ip = format!("10.0.40.{vlan}");
        let mac = branch_mac(vlan).to_string();
        // The VPC knows where each branch ENI is: no ARP for pods.
        o.ip(&["route", "replace", &format!("{pod_ip}/32"), "dev", &dev]);
        o.ip(&[
            "neigh",
            "replace",
            &pod_ip,
            "lladdr",
            &mac,
            "dev",
            &dev,
            "nud",
            "permanent",
        ]);
    }
    if strict {
        n.ip(&["rule", "add", "pref", "20", "lookup", "local"]);
        n.ip(&["rule", "del", "pref", "0", "lookup", "local"]);
    }
    let trunk = n.ip(&["-j", "link", "show", "eth2"]);
    let trunk: Value = serde_json::from_str(&trunk).unwrap();
    let index = trunk[0]["ifindex"].as_u64().unwrap();
    (node, u32::try_from(index).unwrap())
}

/// The outside's end of VLAN `vlan`: `out2.<vlan>`, or `out2` itself without 802.1Q.
fn outside_dev(vlan: u32) -> String {
    if kernel_has_vlans() {
        format!("out2.{vlan}")
    } else {
        "out2".into()
    }
}

/// The node's kernel (VLAN links as macvlans when the kernel has no 802.1Q).
fn host_kernel(node: &Node) -> MacvlanForVlan {
    let mut k = MacvlanForVlan::new(&node.node);
    k.real_vlans = kernel_has_vlans();
    k
}

/// A regular pod's address, on the primary ENI (main table).
const REGULAR_IP: &str = "10.0.0.50";

/// A regular pod on the node's primary ENI; the outside (the VPC) delivers its address to
/// the node's `eth0`.
async fn regular_pod(node: &Node, tag: &str) -> (TestNetns, PodNetwork) {
    let ns = TestNetns::new(tag);
    let p = PodNetwork {
        host_veth: host_veth_name("eni", "default", "regular", 0),
        pod_ifname: "eth0".into(),
        index: 0,
        pod_ip: REGULAR_IP.parse().unwrap(),
        table: 254,
        mtu: 9001,
    };
    setup_pod(&node.node.netns(), &ns.path_buf(), &p)
        .await
        .unwrap();
    let eth0: Value = serde_json::from_str(&node.node.ip(&["-j", "link", "show", "eth0"])).unwrap();
    let mac = eth0[0]["address"].as_str().unwrap();
    node.outside.ip(&[
        "neigh",
        "replace",
        REGULAR_IP,
        "lladdr",
        mac,
        "dev",
        "out0",
        "nud",
        "permanent",
    ]);
    (ns, p)
}

/// `ip rule`, `ip route show table all` and the links (`ip -o link`, counters aside).
fn node_text(ns: &TestNetns) -> (String, String, String) {
    let links = ns.ip(&["-o", "link"]);
    (
        ns.ip(&["rule"]),
        ns.ip(&["route", "show", "table", "all"]),
        links,
    )
}

/// Packets received on the outside's end of VLAN `vlan` (tagged with `vlan` by the node).
fn vlan_rx(node: &Node, vlan: u32) -> u64 {
    let out = node
        .outside
        .ip(&["-s", "-j", "link", "show", &outside_dev(vlan)]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}

/// The VLAN link as the wiring asked for it and as the kernel reports it: (parent, VLAN
/// id, MAC, up). Without 802.1Q the id is the one asked for (a macvlan has none).
fn vlan_link(host: &MacvlanForVlan, ns: &TestNetns, vlan: u32) -> (String, u64, String, bool) {
    let name = format!("vlan.eth.{vlan}");
    let out = ns.ip(&["-d", "-j", "link", "show", &name]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let link = &v[0];
    let asked = host.asked();
    let asked = asked.iter().rev().find(|r| r.0 == name).unwrap();
    let id = if host.real_vlans {
        assert_eq!(link["linkinfo"]["info_kind"], "vlan", "{link}");
        assert_eq!(
            link["linkinfo"]["info_data"]["protocol"], "802.1Q",
            "{link}"
        );
        link["linkinfo"]["info_data"]["id"].as_u64().unwrap()
    } else {
        assert_eq!(link["linkinfo"]["info_kind"], "macvlan", "{link}");
        u64::from(asked.1)
    };
    let address = link["address"].as_str().unwrap().to_owned();
    assert_eq!(asked.3.to_string(), address, "the MAC asked for");
    let up = link["flags"].as_array().unwrap().iter().any(|f| f == "UP");
    (link["link"].as_str().unwrap().to_owned(), id, address, up)
}

/// After DEL and the runtime's removal of the pod's namespace, the node's `ip rule`, routes
/// and links are exactly `before` (the kernel's veth cleanup may take a moment).
async fn assert_back_to(node: &TestNetns, before: &(String, String, String)) {
    let mut now = node_text(node);
    for _ in 0..250 {
        if now == *before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        now = node_text(node);
    }
    assert_eq!(now, *before);
}

#[tokio::test]
async fn strict_mode_sends_all_pod_traffic_through_the_vlan() {
    let (node, trunk) = sgp_node("sgs", &[7], true);
    let pod_ns = TestNetns::new("sgsp");
    let host = host_kernel(&node);
    let before = node_text(&node.node);
    let b = branch(EnforcingMode::Strict, 7, "sample-pod", trunk);
    assert_eq!(b.veth.host_veth, "vlancc21c2d7785");
    setup_branch_pod_in(&host, &pod_ns.path_buf(), &b)
        .await
        .unwrap();

    assert_eq!(
        vlan_link(&host, &node.node, 7),
        ("eth2".into(), 7, "02:42:00:00:00:07".into(), true)
    );
    let rules = node.node.ip(&["rule"]);
    eprintln!("strict ip rule:\n{rules}");
    assert_eq!(
        rules,
        "10:\tfrom all iif vlan.eth.7 lookup 107\n\
         10:\tfrom all iif vlancc21c2d7785 lookup 107\n\
         20:\tfrom all lookup local\n\
         32766:\tfrom all lookup main\n\
         32767:\tfrom all lookup default\n"
    );
    let table = node.node.ip(&["route", "show", "table", "107"]);
    eprintln!("strict ip route show table 107:\n{table}");
    assert_eq!(
        table,
        "default via 10.0.32.1 dev vlan.eth.7 \n\
         10.0.32.1 dev vlan.eth.7 scope link \n\
         10.0.40.7 dev vlancc21c2d7785 scope link \n"
    );
    let main = node.node.ip(&["route", "show", "table", "main"]);
    assert!(
        !main.contains("10.0.40.7"),
        "strict: no main-table route\n{main}"
    );
    let pod_route = pod_ns.ip(&["route"]);
    assert!(
        pod_route.contains("default via 169.254.1.1 dev eth0"),
        "{pod_route}"
    );
    assert!(
        pod_ns
            .ip(&["-o", "addr", "show", "eth0"])
            .contains("10.0.40.7/32")
    );

    // Out through the branch ENI's VLAN, and back.
    let rx = vlan_rx(&node, 7);
    tcp_exchange(&pod_ns.netns(), &node.outside.netns(), GW).unwrap();
    assert!(vlan_rx(&node, 7) >= rx + 3, "tagged with VLAN 7");
    // A regular pod on the same node: out through the VLAN, round the VPC, in through the
    // node's ENI; the reply the same way back.
    let (regular_ns, regular) = regular_pod(&node, "sgsr").await;
    let rx = vlan_rx(&node, 7);
    tcp_exchange(&pod_ns.netns(), &regular_ns.netns(), REGULAR_IP).unwrap();
    tcp_exchange(&regular_ns.netns(), &pod_ns.netns(), "10.0.40.7").unwrap();
    assert!(
        vlan_rx(&node, 7) >= rx + 6,
        "pod-to-pod went through the branch ENI"
    );
    teardown_pod(&node.node.netns(), &regular).await.unwrap();
    drop(regular_ns);

    teardown_branch_pod_in(&host, b.veth.pod_ip, 7)
        .await
        .unwrap();
    let (rules, routes, _) = node_text(&node.node);
    assert_eq!((rules, routes), (before.0.clone(), before.1.clone()));
    assert!(tcp_exchange(&pod_ns.netns(), &node.outside.netns(), GW).is_err());
    drop(pod_ns);
    assert_back_to(&node.node, &before).await;
}

#[tokio::test]
async fn standard_mode_reaches_the_node_directly_and_leaves_through_the_vlan() {
    let (node, trunk) = sgp_node("sgd", &[9], false);
    let pod_ns = TestNetns::new("sgdp");
    let host = host_kernel(&node);
    let before = node_text(&node.node);
    let b = branch(EnforcingMode::Standard, 9, "sample-pod", trunk);
    assert_eq!(b.veth.host_veth, "enicc21c2d7785");
    setup_branch_pod_in(&host, &pod_ns.path_buf(), &b)
        .await
        .unwrap();

    assert_eq!(
        vlan_link(&host, &node.node, 9),
        ("eth2".into(), 9, "02:42:00:00:00:09".into(), true)
    );
    let rules = node.node.ip(&["rule"]);
    eprintln!("standard ip rule:\n{rules}");
    assert_eq!(
        rules,
        "0:\tfrom all lookup local\n\
         512:\tfrom all to 10.0.40.9 lookup main\n\
         1536:\tfrom 10.0.40.9 lookup 109\n\
         32766:\tfrom all lookup main\n\
         32767:\tfrom all lookup default\n"
    );
    let table = node.node.ip(&["route", "show", "table", "109"]);
    eprintln!("standard ip route show table 109:\n{table}");
    assert_eq!(
        table,
        "default via 10.0.32.1 dev vlan.eth.9 \n\
         10.0.32.1 dev vlan.eth.9 scope link \n"
    );
    let main = node.node.ip(&["route", "show", "table", "main"]);
    assert!(
        main.contains("10.0.40.9 dev enicc21c2d7785 scope link"),
        "{main}"
    );

    let rx = vlan_rx(&node, 9);
    tcp_exchange(&pod_ns.netns(), &node.outside.netns(), GW).unwrap();
    assert!(vlan_rx(&node, 9) >= rx + 3, "tagged with VLAN 9");
    // A regular pod on the same node, and the node itself, are reached directly: nothing
    // crosses the VLAN.
    let (regular_ns, regular) = regular_pod(&node, "sgdr").await;
    let rx = vlan_rx(&node, 9);
    tcp_exchange(&pod_ns.netns(), &regular_ns.netns(), REGULAR_IP).unwrap();
    tcp_exchange(&regular_ns.netns(), &pod_ns.netns(), "10.0.40.9").unwrap();
    tcp_exchange(&pod_ns.netns(), &node.node.netns(), NODE_IP).unwrap();
    assert_eq!(
        vlan_rx(&node, 9),
        rx,
        "pod-to-pod and pod-to-node stayed on the node"
    );
    teardown_pod(&node.node.netns(), &regular).await.unwrap();
    drop(regular_ns);

    teardown_branch_pod_in(&host, b.veth.pod_ip, 9)
        .await
        .unwrap();
    let (rules, routes, _) = node_text(&node.node);
    assert_eq!((rules, routes), (before.0.clone(), before.1.clone()));
    drop(pod_ns);
    assert_back_to(&node.node, &before).await;
}

#[tokio::test]
async fn teardown_knows_no_mode_and_is_idempotent() {
    let (node, trunk) = sgp_node("sgx", &[7, 8], true);
    let (strict_ns, standard_ns) = (TestNetns::new("sgx1"), TestNetns::new("sgx2"));
    let host = host_kernel(&node);
    let before = node_text(&node.node);
    // A pod wired in strict mode, then one after a switch to standard.
    let a = branch(EnforcingMode::Strict, 7, "pod-a", trunk);
    let b = branch(EnforcingMode::Standard, 8, "pod-b", trunk);
    setup_branch_pod_in(&host, &strict_ns.path_buf(), &a)
        .await
        .unwrap();
    setup_branch_pod_in(&host, &standard_ns.path_buf(), &b)
        .await
        .unwrap();
    tcp_exchange(&strict_ns.netns(), &node.outside.netns(), GW).unwrap();
    tcp_exchange(&standard_ns.netns(), &node.outside.netns(), GW).unwrap();
    // The same ADD again (a pod recreated under the same name), with a priority-10 rule
    // of its veth into another table left behind: replaced, not doubled, the stale one gone.
    let veth = a.veth.host_veth.as_str();
    node.node
        .ip(&["rule", "add", "iif", veth, "lookup", "142", "pref", "10"]);
    setup_branch_pod_in(&host, &strict_ns.path_buf(), &a)
        .await
        .unwrap();
    let rules = node.node.ip(&["rule"]);
    assert_eq!(rules.matches("lookup 107").count(), 2, "{rules}");
    assert!(!rules.contains("lookup 142"), "{rules}");

    for _ in 0..2 {
        teardown_branch_pod_in(&host, a.veth.pod_ip, 7)
            .await
            .unwrap();
        teardown_branch_pod_in(&host, b.veth.pod_ip, 8)
            .await
            .unwrap();
        let (rules, routes, _) = node_text(&node.node);
        assert_eq!((rules, routes), (before.0.clone(), before.1.clone()));
    }
    drop((strict_ns, standard_ns));
    assert_back_to(&node.node, &before).await;
}
