//! The enabled IPv6-egress path (upstream's `cmd/egress-cni-plugin`) on a real kernel: the real
//! `egress-cni` binary, run inside a test-made node namespace as a runtime chains it after
//! aws-cni, wires `v6if0` in a pod namespace, and a TCP connection from the pod to an "outside"
//! namespace arrives from the node's IPv6. DEL restores the node namespace exactly and releases
//! the address; bad input fails with a CNI error and leaves nothing behind. Needs root, `ip`,
//! ip6tables and Debian's host-local (`/usr/lib/cni/host-local`, package
//! containernetworking-plugins).

mod support;

use std::net::{Ipv6Addr, SocketAddr};

use ec2_emulator::testing::TestNetns;
use egress_cni::snat_chain_name;
use support::{
    allocated, assert_egress_result, code, node_and_outside, node_snapshot, pod_address, pod_netns,
    run_in_node, sh,
};

const NODE_IP: &str = "2001:db8:1::10";
const OUTSIDE_IP: &str = "2001:db8:1::20";

/// A node namespace whose `eth0` (2001:db8:1::10/64) is veth'd to an outside namespace
/// (2001:db8:1::20/64), with IPv6 forwarding on as the init container sets it.
struct Testbed {
    node: TestNetns,
    outside: TestNetns,
    data_dir: tempfile::TempDir,
}

impl Testbed {
    fn new(tag: &str) -> Self {
        let (node, outside) = node_and_outside("e6", tag);
        // No link-local addresses on the wire: nothing tentative changes between snapshots.
        node.ip(&["link", "set", "eth0", "addrgenmode", "none"]);
        outside.ip(&["link", "set", "ext0", "addrgenmode", "none"]);
        node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{NODE_IP}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        outside.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{OUTSIDE_IP}/64"),
            "dev",
            "ext0",
            "nodad",
        ]);
        node.ip(&["link", "set", "eth0", "up"]);
        outside.ip(&["link", "set", "ext0", "up"]);
        sh(&node, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        Testbed {
            node,
            outside,
            data_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A pod namespace with aws-cni's `eth0` (a veth whose peer stays in the pod stands in).
    fn pod(&self, tag: &str) -> TestNetns {
        pod_netns(&format!("e6p-{tag}"), None)
    }

    /// Links, IPv6 addresses and routes, and the ip6tables nat table of the node namespace.
    fn snapshot(&self) -> String {
        node_snapshot(&self.node, "-6", "ip6tables-nft-save")
    }

    /// The addresses host-local holds allocated in the data dir.
    fn allocated(&self) -> Vec<Ipv6Addr> {
        allocated(self.data_dir.path())
    }

    fn conf(&self, node_ip: &str, subnet: &str, prev: &str) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"aws-cni","type":"egress-cni","mtu":"9001","enabled":"true",
            "randomizeSNAT":"prng","nodeIP":"{node_ip}",
            "ipam":{{"type":"host-local","ranges":[[{{"subnet":"{subnet}"}}]],"routes":[{{"dst":"::/0"}}],"dataDir":"{}"}},
            "pluginLogFile":"stderr","pluginLogLevel":"Debug",
            "prevResult":{prev}}}"#,
            self.data_dir.path().display()
        )
    }

    /// Runs the real binary inside the node namespace; returns (exit code, stdout).
    fn plugin(
        &self,
        command: &str,
        cid: &str,
        pod: &TestNetns,
        ifname: &str,
        stdin: &str,
    ) -> (i32, String) {
        let path = std::env::var("PATH").unwrap_or_default();
        self.plugin_with_path(&path, command, cid, pod, ifname, stdin)
    }

    /// [`Self::plugin`] with the plugin's `PATH` (where it finds the ip6tables tools).
    fn plugin_with_path(
        &self,
        path: &str,
        command: &str,
        cid: &str,
        pod: &TestNetns,
        ifname: &str,
        stdin: &str,
    ) -> (i32, String) {
        run_in_node(&self.node, path, (command, cid, pod, ifname), stdin)
    }
}

fn prev(pod: &TestNetns) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","interfaces":[{{"name":"eni3c8f0f9e4a1","mac":"aa:bb:cc:dd:ee:01"}},{{"name":"eth0","sandbox":"{}"}}],"ips":[{{"address":"10.0.0.23/32","interface":1}}],"routes":[{{"dst":"0.0.0.0/0"}}],"dns":{{}}}}"#,
        pod.path()
    )
}

/// The global address on the pod's `v6if0`.
fn pod_ula(pod: &TestNetns) -> Ipv6Addr {
    let show = [
        "-6", "-o", "addr", "show", "dev", "v6if0", "scope", "global",
    ];
    pod_address(pod, &show, "inet6", "/118")
}

/// A TCP connection from the pod to the outside namespace: (peer seen there, bytes).
fn tcp_from_pod(bed: &Testbed, pod: &TestNetns) -> (SocketAddr, String) {
    let target = format!("[{OUTSIDE_IP}]:7000").parse().unwrap();
    support::tcp_from_pod(&bed.outside, pod, target)
}

#[test]
fn add_wires_ipv6_egress_snated_to_the_node_and_del_restores_the_node() {
    let bed = Testbed::new("full");
    let before = bed.snapshot();
    let pod = bed.pod("full1");
    let cid = "c0ffee0000000001";
    let conf = bed.conf(NODE_IP, "fd00::ac:00/118", &prev(&pod));
    let (rc, out) = bed.plugin("ADD", cid, &pod, "eth0", &conf);
    assert_eq!(rc, 0, "{out}");

    // Result: prevResult plus the host veth and v6if0; the egress IP is not in `ips`.
    let host_veth = assert_egress_result(&out, &pod, 2, "v6if0");

    // Kernel state: the pod side.
    let ula = pod_ula(&pod);
    assert_eq!(bed.allocated(), vec![ula]);
    assert!(
        "fd00::ac:0/118"
            .parse::<ipnet::Ipv6Net>()
            .unwrap()
            .contains(&ula)
    );
    let link = pod.ip(&["-o", "link", "show", "v6if0"]);
    assert!(link.contains("mtu 9001") && link.contains("UP"), "{link}");
    let default = pod.ip(&["-6", "route", "show", "default"]);
    assert!(
        default.contains("via fe80::") && default.contains("dev v6if0"),
        "{default}"
    );
    assert_eq!(
        sh(&pod, &["sysctl", "-n", "net.ipv6.conf.eth0.disable_ipv6"]).trim(),
        "1"
    );
    // The node side: host veth, host route, ip6tables.
    bed.node.ip(&["link", "show", &host_veth]);
    let route = bed.node.ip(&["-6", "route", "show", &format!("{ula}/128")]);
    assert!(route.contains(&format!("dev {host_veth}")), "{route}");
    let chain = snat_chain_name("aws-cni", cid, true);
    let nat = sh(&bed.node, &["ip6tables-nft-save", "-t", "nat"]);
    let comment = format!("--comment \"name: \\\"aws-cni\\\" id: \\\"{cid}\\\"\"");
    for want in [
        format!("-A POSTROUTING -s {ula}/128 -m comment {comment} -j {chain}"),
        format!("-A {chain} -d ff00::/8 -m comment {comment} -j ACCEPT"),
        format!("-A {chain} -m comment {comment} -j SNAT --to-source {NODE_IP} --random-fully"),
    ] {
        assert!(nat.contains(&want), "missing {want}\n{nat}");
    }

    // Real traffic: the outside host sees the node's IPv6, not the pod's ULA.
    let (peer, got) = tcp_from_pod(&bed, &pod);
    assert_eq!(peer.ip().to_string(), NODE_IP, "SNATed to the node");
    assert_eq!(got, "hello from the pod");

    // A second pod gets another address; the re-ADD of the first is idempotent in rules.
    let pod2 = bed.pod("full2");
    let (rc, out) = bed.plugin(
        "ADD",
        "c0ffee0000000002",
        &pod2,
        "eth0",
        &bed.conf(NODE_IP, "fd00::ac:00/118", &prev(&pod2)),
    );
    assert_eq!(rc, 0, "{out}");
    let ula2 = pod_ula(&pod2);
    assert_ne!(ula, ula2);
    assert_eq!(bed.allocated().len(), 2);

    // DEL releases, removes the rules and the veth; a second DEL is a no-op.
    for _ in 0..2 {
        let (rc, out) = bed.plugin("DEL", cid, &pod, "eth0", &conf);
        assert_eq!((rc, out.as_str()), (0, ""));
    }
    assert_eq!(bed.allocated(), vec![ula2]);
    let nat = sh(&bed.node, &["ip6tables-nft-save", "-t", "nat"]);
    assert!(!nat.contains(&chain), "{nat}");
    assert!(!pod.ip(&["-o", "link", "show"]).contains("v6if0"));

    // A new container in the first pod's namespace gets an address again (the freed one
    // may be reused) and traffic flows.
    let (rc, out) = bed.plugin(
        "ADD",
        "c0ffee0000000003",
        &pod,
        "eth0",
        &bed.conf(NODE_IP, "fd00::ac:00/118", &prev(&pod)),
    );
    assert_eq!(rc, 0, "{out}");
    let ula3 = pod_ula(&pod);
    assert_ne!(ula3, ula2);
    assert_eq!(tcp_from_pod(&bed, &pod).0.ip().to_string(), NODE_IP);

    for (cid, p) in [("c0ffee0000000002", &pod2), ("c0ffee0000000003", &pod)] {
        let (rc, out) = bed.plugin(
            "DEL",
            cid,
            p,
            "eth0",
            &bed.conf(NODE_IP, "fd00::ac:00/118", "null"),
        );
        assert_eq!((rc, out.as_str()), (0, ""));
    }
    assert_eq!(bed.allocated(), Vec::<Ipv6Addr>::new());
    assert_eq!(bed.snapshot(), before, "DEL restores the node namespace");
}

#[test]
fn bad_input_fails_with_cni_errors_and_leaves_nothing_behind() {
    let bed = Testbed::new("bad");
    let before = bed.snapshot();
    let pod = bed.pod("bad");
    let cases = [
        (
            "missing nodeIP",
            bed.conf("", "fd00::ac:00/118", &prev(&pod)),
            "eth0",
            7,
            "nodeIP",
        ),
        (
            "bad range",
            bed.conf(NODE_IP, "fd00::ac:00/300", &prev(&pod)),
            "eth0",
            7,
            "subnet",
        ),
        (
            "IPv4 range",
            bed.conf(NODE_IP, "10.0.0.0/24", &prev(&pod)),
            "eth0",
            7,
            "IPv6",
        ),
        (
            "no prevResult",
            bed.conf(NODE_IP, "fd00::ac:00/118", "null"),
            "eth0",
            7,
            "chained plugin",
        ),
        // Fails after IPAM (no such pod interface): the address is released again.
        (
            "bad ifname",
            bed.conf(NODE_IP, "fd00::ac:00/118", &prev(&pod)),
            "eth9",
            101,
            "eth9",
        ),
    ];
    // Fails after the veth exists (no ip6tables tools on PATH): the veth goes, the address is
    // released again.
    let (rc, out) = bed.plugin_with_path(
        "/nonexistent",
        "ADD",
        "badc0ffee",
        &pod,
        "eth0",
        &bed.conf(NODE_IP, "fd00::ac:00/118", &prev(&pod)),
    );
    assert_eq!((rc, code(&out)), (1, 103), "{out}");
    assert!(out.contains("ip6tables"), "{out}");
    assert_eq!(bed.allocated(), Vec::<Ipv6Addr>::new());
    assert_eq!(bed.snapshot(), before, "no ip6tables: node untouched");
    assert!(!pod.ip(&["-o", "link", "show"]).contains("v6if0"));
    for (what, conf, ifname, want, text) in cases {
        let (rc, out) = bed.plugin("ADD", "badc0ffee", &pod, ifname, &conf);
        assert_eq!((rc, code(&out)), (1, want), "{what}: {out}");
        assert!(out.contains(text), "{what}: {out}");
        assert_eq!(bed.allocated(), Vec::<Ipv6Addr>::new(), "{what}");
        assert_eq!(bed.snapshot(), before, "{what}: node untouched");
        assert!(!pod.ip(&["-o", "link", "show"]).contains("v6if0"), "{what}");
    }
}
