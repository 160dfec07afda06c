//! IPv4 egress for IPv6 clusters (upstream `cmdAddEgressV4` in `cmd/egress-cni-plugin`) on a
//! real kernel: the real `egress-cni` binary, run inside a test-made node namespace as a
//! runtime chains it after aws-cni in an IPv6 cluster, gives the pod `v4if0` with a link-local
//! address from `169.254.172.0/22` (host-local), and a TCP connection from the pod to an
//! "outside" namespace arrives from the node's IPv4 (iptables SNAT, `--random-fully` for
//! `prng`). Its log goes to its own file. DEL restores the node namespace exactly and releases
//! the address. Needs root, `ip`, iptables and Debian's host-local (`/usr/lib/cni/host-local`,
//! package containernetworking-plugins).

mod support;

use std::net::{Ipv4Addr, SocketAddr};

use ec2_emulator::testing::TestNetns;
use egress_cni::snat_chain_name;
use support::{
    allocated, assert_egress_result, code, node_and_outside, node_snapshot, pod_address, pod_netns,
    run_in_node, sh,
};

const NODE_IP: &str = "192.0.2.10";
const OUTSIDE_IP: &str = "192.0.2.20";
const RANGE: &str = "169.254.172.0/22";

/// A node namespace whose `eth0` (192.0.2.10/24) is veth'd to an outside namespace
/// (192.0.2.20/24), IPv4 forwarding off until the plugin turns it on.
struct Testbed {
    node: TestNetns,
    outside: TestNetns,
    data_dir: tempfile::TempDir,
}

impl Testbed {
    fn new(tag: &str) -> Self {
        let (node, outside) = node_and_outside("e4", tag);
        node.ip(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "eth0"]);
        outside.ip(&["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "ext0"]);
        node.ip(&["link", "set", "eth0", "up"]);
        outside.ip(&["link", "set", "ext0", "up"]);
        sh(&node, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        Testbed {
            node,
            outside,
            data_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A pod namespace with aws-cni's IPv6 `eth0` (a veth whose peer stays in the pod stands
    /// in; the chained test in `tests/tests/ipv6_cluster_chain.rs` uses the real aws-cni).
    fn pod(&self, tag: &str) -> TestNetns {
        let address = [
            "-6",
            "addr",
            "add",
            "2001:db8::5/128",
            "dev",
            "eth0",
            "nodad",
        ];
        pod_netns(&format!("e4p-{tag}"), Some(&address))
    }

    /// Links, IPv4 addresses and routes, and the iptables nat table of the node namespace.
    fn snapshot(&self) -> String {
        node_snapshot(&self.node, "-4", "iptables-nft-save")
    }

    /// The addresses host-local holds allocated in the data dir.
    fn allocated(&self) -> Vec<Ipv4Addr> {
        allocated(self.data_dir.path())
    }

    fn log(&self) -> std::path::PathBuf {
        self.data_dir.path().join("egress-v4-plugin.log")
    }

    /// The conflist's egress-cni entry as the entrypoint renders it in an IPv6 cluster.
    fn conf(&self, node_ip: &str, subnet: &str, prev: &str) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"aws-cni","type":"egress-cni","mtu":"9001","enabled":"true",
            "randomizeSNAT":"prng","nodeIP":"{node_ip}",
            "ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}},
            "pluginLogFile":"{}","pluginLogLevel":"Debug",
            "prevResult":{prev}}}"#,
            self.data_dir.path().display(),
            self.log().display()
        )
    }

    /// Runs the real binary inside the node namespace; returns (exit code, stdout).
    fn plugin(&self, command: &str, cid: &str, pod: &TestNetns, stdin: &str) -> (i32, String) {
        let path = std::env::var("PATH").unwrap_or_default();
        self.plugin_with_path(&path, command, cid, pod, stdin)
    }

    /// [`Self::plugin`] with the plugin's `PATH` (where it finds the iptables tools).
    fn plugin_with_path(
        &self,
        path: &str,
        command: &str,
        cid: &str,
        pod: &TestNetns,
        stdin: &str,
    ) -> (i32, String) {
        run_in_node(&self.node, path, (command, cid, pod, "eth0"), stdin)
    }
}

/// aws-cni's result for an IPv6 pod (what the runtime passes as prevResult).
fn prev(pod: &TestNetns) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","interfaces":[{{"name":"eni3c8f0f9e4a1","mac":"aa:bb:cc:dd:ee:01"}},{{"name":"eth0","mac":"254","sandbox":"{}"}},{{"name":"dummy3c8f0f9e4a1","mac":"0","sandbox":"0"}}],"ips":[{{"address":"2001:db8::5/128","interface":1}}],"dns":{{}}}}"#,
        pod.path()
    )
}

/// The address on the pod's `v4if0`.
fn pod_v4(pod: &TestNetns) -> Ipv4Addr {
    let show = ["-4", "-o", "addr", "show", "dev", "v4if0"];
    pod_address(pod, &show, "inet", "/22")
}

/// A TCP connection from the pod to the outside namespace: (peer seen there, bytes).
fn tcp_from_pod(bed: &Testbed, pod: &TestNetns) -> (SocketAddr, String) {
    let target = format!("{OUTSIDE_IP}:7000").parse().unwrap();
    support::tcp_from_pod(&bed.outside, pod, target)
}

#[test]
fn add_wires_ipv4_egress_snated_to_the_node_and_del_restores_the_node() {
    let bed = Testbed::new("full");
    let before = bed.snapshot();
    let pod = bed.pod("full1");
    let cid = "c0ffee0000000004";
    let conf = bed.conf(NODE_IP, RANGE, &prev(&pod));
    let (rc, out) = bed.plugin("ADD", cid, &pod, &conf);
    assert_eq!(rc, 0, "{out}");

    // Result: prevResult plus the host veth and v4if0; the egress IP is not in `ips`.
    let host_veth = assert_egress_result(&out, &pod, 3, "v4if0");

    // The pod side: the link-local address, every route through the gateway.
    let ip = pod_v4(&pod);
    assert_eq!(bed.allocated(), vec![ip]);
    assert!(RANGE.parse::<ipnet::Ipv4Net>().unwrap().contains(&ip));
    let link = pod.ip(&["-o", "link", "show", "v4if0"]);
    assert!(link.contains("mtu 9001") && link.contains("UP"), "{link}");
    let routes = pod.ip(&["-4", "route", "show"]);
    for want in [
        "default via 169.254.172.1 dev v4if0".to_owned(),
        format!("169.254.172.0/22 via 169.254.172.1 dev v4if0 src {ip}"),
        format!("169.254.172.1 dev v4if0 scope link src {ip}"),
    ] {
        assert!(routes.contains(&want), "missing {want}\n{routes}");
    }
    assert!(
        !routes.contains("proto kernel"),
        "subnet route replaced: {routes}"
    );
    // The pod's IPv6 eth0 is left alone.
    assert!(
        pod.ip(&["-6", "addr", "show", "dev", "eth0"])
            .contains("2001:db8::5/128")
    );

    // The node side: gateway address (scope link) on the host veth, host route, forwarding,
    // iptables.
    let addr = bed
        .node
        .ip(&["-4", "-o", "addr", "show", "dev", &host_veth]);
    assert!(addr.contains("inet 169.254.172.1/32 scope link"), "{addr}");
    let route = bed.node.ip(&["-4", "route", "show", &format!("{ip}/32")]);
    assert!(
        route.contains(&format!("dev {host_veth} scope link")),
        "{route}"
    );
    assert_eq!(
        sh(&bed.node, &["sysctl", "-n", "net.ipv4.ip_forward"]).trim(),
        "1"
    );
    let chain = snat_chain_name("aws-cni", cid, false);
    assert!(chain.starts_with("CNI-E4-"), "{chain}");
    let nat = sh(&bed.node, &["iptables-nft-save", "-t", "nat"]);
    let comment = format!("--comment \"name: \\\"aws-cni\\\" id: \\\"{cid}\\\"\"");
    for want in [
        format!("-A POSTROUTING -s {ip}/32 -m comment {comment} -j {chain}"),
        format!("-A {chain} -d 224.0.0.0/4 -m comment {comment} -j ACCEPT"),
        format!("-A {chain} -m comment {comment} -j SNAT --to-source {NODE_IP} --random-fully"),
    ] {
        assert!(nat.contains(&want), "missing {want}\n{nat}");
    }

    // Real traffic: the outside host sees the node's IPv4, not the pod's link-local address.
    let (peer, got) = tcp_from_pod(&bed, &pod);
    assert_eq!(peer.ip().to_string(), NODE_IP, "SNATed to the node");
    assert_eq!(got, "hello from the pod");

    // Its own log file.
    let log = std::fs::read_to_string(bed.log()).unwrap();
    assert!(log.contains("Received an Add request"), "{log}");

    // DEL releases, removes the rules and the veth; a second DEL is a no-op.
    for _ in 0..2 {
        let (rc, out) = bed.plugin("DEL", cid, &pod, &conf);
        assert_eq!((rc, out.as_str()), (0, ""));
    }
    assert_eq!(bed.allocated(), Vec::<Ipv4Addr>::new());
    assert!(!pod.ip(&["-o", "link", "show"]).contains("v4if0"));
    sh(&bed.node, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    assert_eq!(bed.snapshot(), before, "DEL restores the node namespace");
}

#[test]
fn ipv4_egress_failures_leave_nothing_behind() {
    let bed = Testbed::new("bad");
    let before = bed.snapshot();
    let pod = bed.pod("bad");
    // Fails after the veth exists (no iptables tools on PATH): the veth goes, the address is
    // released again.
    let (rc, out) = bed.plugin_with_path(
        "/nonexistent",
        "ADD",
        "badc0ffee",
        &pod,
        &bed.conf(NODE_IP, RANGE, &prev(&pod)),
    );
    assert_eq!((rc, code(&out)), (1, 103), "{out}");
    assert_eq!(bed.allocated(), Vec::<Ipv4Addr>::new());
    assert!(!pod.ip(&["-o", "link", "show"]).contains("v4if0"));
    sh(&bed.node, &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    assert_eq!(bed.snapshot(), before, "no iptables: node untouched");
    for (what, conf, want, text) in [
        (
            "IPv6 range for IPv4 egress",
            bed.conf(NODE_IP, "fd00::ac:00/118", &prev(&pod)),
            7,
            "IPv4 prefix",
        ),
        (
            "not an address",
            bed.conf("node", RANGE, &prev(&pod)),
            7,
            "nodeIP",
        ),
    ] {
        let (rc, out) = bed.plugin("ADD", "badc0ffee", &pod, &conf);
        assert_eq!((rc, code(&out)), (1, want), "{what}: {out}");
        assert!(out.contains(text), "{what}: {out}");
        assert_eq!(bed.allocated(), Vec::<Ipv4Addr>::new(), "{what}");
        assert_eq!(bed.snapshot(), before, "{what}: node untouched");
    }
}
