//! IPv6 branch-ENI pods against a real kernel ([`net::branch`]; spec 6.6's IPv6 variant,
//! upstream `SetupBranchENIPodNetwork` with an IPv6 `vethMetadata.IPAddress` and ipamd's
//! `PodENISubnetGW` `fe80:ec2::1`). As in `branch_kernel.rs`, the node's `eth2` stands in
//! for the trunk ENI (a veth into the "outside", which plays the VPC: the branch subnet's
//! router answers on `fe80:ec2::1` and holds `2600:1f13:0:32::1`), and on a kernel without
//! 802.1Q the VLAN link is a macvlan of the same name, parent and MAC.

mod support;
#[path = "support/vlan_standin.rs"]
mod vlan_standin;

use std::net::IpAddr;
use std::time::Duration;

use net::branch::{
    BranchPod, BranchVlan, EnforcingMode, setup_branch_pod_in, teardown_branch_pod_in,
};
use net::names::host_veth_name;
use net::netlink::Mac;
use net::pod::PodNetwork;
use net::testing::TestNetns;
use serde_json::Value;
use support::{Node, tcp_exchange};
use vlan_standin::{MacvlanForVlan, kernel_has_vlans};

const TRUNK_MAC: &str = "02:00:00:00:02:06";
/// What ipamd answers as `PodENISubnetGW` for every IPv6 branch pod (upstream).
const GW: &str = "fe80:ec2::1";
/// An address of the VPC beyond the branch ENI's router.
const VPC_HOST: &str = "2600:1f13:0:32::1";

fn pod_ip(vlan: u32) -> IpAddr {
    format!("2600:1f13:0:40::{vlan}").parse().unwrap()
}

fn branch_mac(vlan: u32) -> Mac {
    Mac([0x02, 0x42, 0, 0, 0x06, u8::try_from(vlan).unwrap()])
}

/// An IPv6 branch ENI on VLAN `vlan` for pod `pod`.
fn branch(mode: EnforcingMode, vlan: u32, pod: &str, trunk: u32) -> BranchPod {
    BranchPod {
        veth: PodNetwork {
            host_veth: host_veth_name(mode.veth_prefix("eni"), "default", pod, 0),
            pod_ifname: "eth0".into(),
            index: 0,
            pod_ip: pod_ip(vlan),
            table: 0,
            mtu: 9001,
        },
        vlan: BranchVlan {
            vlan_id: vlan,
            eni_mac: branch_mac(vlan),
            subnet_gw: GW.parse().unwrap(),
            parent_ifindex: trunk,
        },
        mode,
    }
}

/// The node with its trunk `eth2`, IPv6 forwarding on and no DAD (so that links' addresses
/// are usable at once), and the outside as the VPC for VLAN `vlan`. With `strict`, the
/// node is as ipamd leaves it for IPv6 strict mode (`net::host::setup_ipv6_strict_mode`,
/// spec 7.2): the IPv6 `local` rule at priority 20, and ICMPv6 from `fe80:ec2::1` looked up
/// in `local` at priority 0 (without it the gateway's neighbour advertisements, arriving on
/// the VLAN link, would be looked up in the pod's table and never delivered). Returns the
/// trunk's index.
async fn sgp_node_v6(tag: &str, vlan: u32, strict: bool) -> (Node, u32) {
    let node = Node::new(tag);
    let (n, o) = (&node.node, &node.outside);
    for ns in [n, o] {
        for conf in ["all", "default"] {
            ns.exec_ok(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{conf}.accept_dad=0"),
            ]);
        }
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    }
    n.ip(&[
        "link", "add", "eth2", "address", TRUNK_MAC, "type", "veth", "peer", "name", "out2",
        "netns", &o.0,
    ]);
    n.ip(&["link", "set", "eth2", "up"]);
    let dev = if kernel_has_vlans() {
        let dev = format!("out2.{vlan}");
        let id = vlan.to_string();
        o.ip(&[
            "link", "add", "link", "out2", "name", &dev, "type", "vlan", "id", &id,
        ]);
        o.ip(&["link", "set", "out2", "up"]);
        dev
    } else {
        "out2".to_string()
    };
    o.ip(&["link", "set", &dev, "up"]);
    o.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{GW}/64"),
        "dev",
        &dev,
        "nodad",
    ]);
    o.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{VPC_HOST}/64"),
        "dev",
        &dev,
        "nodad",
    ]);
    let pod = pod_ip(vlan).to_string();
    let mac = branch_mac(vlan).to_string();
    // The VPC knows where each branch ENI is: no neighbour discovery for pods.
    o.ip(&["-6", "route", "replace", &format!("{pod}/128"), "dev", &dev]);
    o.ip(&[
        "-6",
        "neigh",
        "replace",
        &pod,
        "lladdr",
        &mac,
        "dev",
        &dev,
        "nud",
        "permanent",
    ]);
    if strict {
        // What ipamd's node set-up does in an IPv6 cluster in strict mode.
        let nl = net::netlink::NetlinkHandle::in_netns(&n.netns()).unwrap();
        net::host::setup_ipv6_strict_mode(&nl).await.unwrap();
    }
    let trunk: Value = serde_json::from_str(&n.ip(&["-j", "link", "show", "eth2"])).unwrap();
    let index = trunk[0]["ifindex"].as_u64().unwrap();
    (node, u32::try_from(index).unwrap())
}

fn host_kernel(node: &Node) -> MacvlanForVlan {
    let mut k = MacvlanForVlan::new(&node.node);
    k.real_vlans = kernel_has_vlans();
    k
}

/// Both families' rules, the routes of every table but the kernel's own (`proto kernel`:
/// those of the links' addresses, which come as the links' IPv6 link-local addresses do),
/// and the link names.
fn node_text(ns: &TestNetns) -> (String, String, String) {
    let routes = ns.ip(&["-4", "route", "show", "table", "all"])
        + &ns.ip(&["-6", "route", "show", "table", "all"]);
    let links: Vec<String> = serde_json::from_str::<Value>(&ns.ip(&["-j", "link"]))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    (
        ns.ip(&["-4", "rule"]) + &ns.ip(&["-6", "rule"]),
        routes
            .lines()
            .filter(|l| !l.contains("proto kernel"))
            .collect::<Vec<_>>()
            .join("\n"),
        links.join(" "),
    )
}

/// Routes of `table` in the IPv6 family, without the kernel's own (`proto kernel`, e.g. the
/// multicast and link-local ones of a link).
fn table_v6(ns: &TestNetns, table: &str) -> String {
    ns.ip(&["-6", "route", "show", "table", table])
        .lines()
        .filter(|l| !l.contains("proto kernel"))
        .map(|l| format!("{}\n", l.split(" metric").next().unwrap_or(l).trim_end()))
        .collect()
}

async fn assert_back_to(node: &TestNetns, before: &(String, String, String)) {
    for _ in 0..250 {
        if node_text(node) == *before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node_text(node), *before);
}

#[tokio::test]
async fn an_ipv6_branch_pod_in_strict_mode_goes_through_the_vlan_to_fe80_ec2_1() {
    let (node, trunk) = sgp_node_v6("sg6s", 7, true).await;
    let pod_ns = TestNetns::new("sg6sp");
    let host = host_kernel(&node);
    let before = node_text(&node.node);
    let b = branch(EnforcingMode::Strict, 7, "sample-pod", trunk);
    setup_branch_pod_in(&host, &pod_ns.path_buf(), &b)
        .await
        .unwrap();

    let asked = host.asked();
    assert_eq!(
        asked
            .iter()
            .map(|r| (r.0.as_str(), r.1, r.2, r.3))
            .collect::<Vec<_>>(),
        [("vlan.eth.7", 7, trunk, branch_mac(7))]
    );
    let rules = node.node.ip(&["-6", "rule"]);
    eprintln!("strict ip -6 rule:\n{rules}");
    assert_eq!(
        rules,
        "0:\tfrom fe80:ec2::1 ipproto ipv6-icmp lookup local\n\
         10:\tfrom all iif vlan.eth.7 lookup 107\n\
         10:\tfrom all iif vlancc21c2d7785 lookup 107\n\
         20:\tfrom all lookup local\n\
         32766:\tfrom all lookup main\n"
    );
    assert!(
        !node.node.ip(&["-4", "rule"]).contains("lookup 107"),
        "no IPv4 rule for an IPv6 pod"
    );
    let table = table_v6(&node.node, "107");
    eprintln!("strict ip -6 route show table 107:\n{table}");
    assert_eq!(
        table,
        "2600:1f13:0:40::7 dev vlancc21c2d7785\n\
         fe80:ec2::1 dev vlan.eth.7\n\
         default via fe80:ec2::1 dev vlan.eth.7\n"
    );
    let sysctl = |key: &str| {
        let path = format!("/proc/sys/net/ipv6/conf/vlan.eth.7/{key}");
        node.node.exec_ok(&["cat", &path]).trim().to_string()
    };
    assert_eq!(
        (
            sysctl("accept_ra"),
            sysctl("accept_redirects"),
            sysctl("forwarding")
        ),
        ("0".into(), "1".into(), "0".into())
    );
    let addr = pod_ns.ip(&["-6", "-o", "addr", "show", "eth0", "scope", "global"]);
    assert!(addr.contains("2600:1f13:0:40::7/128"), "{addr}");
    assert!(
        pod_ns
            .ip(&["-6", "route"])
            .contains("default via fe80::1 dev eth0"),
        "the pod's gateway is the regular pod's"
    );

    // Out through the branch ENI to the VPC, and back.
    tcp_exchange(&pod_ns.netns(), &node.outside.netns(), VPC_HOST).unwrap();

    teardown_branch_pod_in(&host, b.veth.pod_ip, 7)
        .await
        .unwrap();
    assert!(tcp_exchange(&pod_ns.netns(), &node.outside.netns(), VPC_HOST).is_err());
    drop(pod_ns);
    assert_back_to(&node.node, &before).await;
}

#[tokio::test]
async fn an_ipv6_branch_pod_in_standard_mode_has_ipv6_ip_rules_and_teardown_is_idempotent() {
    let (node, trunk) = sgp_node_v6("sg6d", 9, false).await;
    let pod_ns = TestNetns::new("sg6dp");
    let host = host_kernel(&node);
    let before = node_text(&node.node);
    let b = branch(EnforcingMode::Standard, 9, "sample-pod", trunk);
    setup_branch_pod_in(&host, &pod_ns.path_buf(), &b)
        .await
        .unwrap();

    let rules = node.node.ip(&["-6", "rule"]);
    eprintln!("standard ip -6 rule:\n{rules}");
    assert_eq!(
        rules,
        "0:\tfrom all lookup local\n\
         512:\tfrom all to 2600:1f13:0:40::9 lookup main\n\
         1536:\tfrom 2600:1f13:0:40::9 lookup 109\n\
         32766:\tfrom all lookup main\n"
    );
    assert_eq!(
        table_v6(&node.node, "109"),
        "fe80:ec2::1 dev vlan.eth.9\n\
         default via fe80:ec2::1 dev vlan.eth.9\n"
    );
    let main = node.node.ip(&["-6", "route", "show", "table", "main"]);
    assert!(
        main.contains("2600:1f13:0:40::9 dev enicc21c2d7785"),
        "{main}"
    );
    tcp_exchange(&pod_ns.netns(), &node.outside.netns(), VPC_HOST).unwrap();

    for _ in 0..2 {
        teardown_branch_pod_in(&host, b.veth.pod_ip, 9)
            .await
            .unwrap();
        let (rules, _, _) = node_text(&node.node);
        assert_eq!(rules, before.0);
        assert!(!node.node.has_link("vlan.eth.9"));
    }
    drop(pod_ns);
    assert_back_to(&node.node, &before).await;
}
