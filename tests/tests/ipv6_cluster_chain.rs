//! An IPv6 cluster's chain as kubelet's runtime runs it (`10-aws.conflist` in IPv6 mode:
//! `aws-cni` then `egress-cni` with `enabled: "true"`, the node's IPv4 as `nodeIP` and
//! host-local on `169.254.172.0/22`, then `portmap`): the real `aws-cni` against a stand-in
//! ipamd answering as upstream's does in IPv6 mode (`IPv6Addr`, `VPCv6CIDRs`, empty
//! `IPv4Addr`), then the real `egress-cni` with aws-cni's result as prevResult, then Debian's
//! `portmap` with a host port, in namespaces made by the test. The pod gets its IPv6 `eth0`
//! and an IPv4 `v4if0`; IPv6 reaches the node, IPv4 reaches an outside namespace from the
//! node's IPv4 (SNAT), the node's IPv6 host port reaches the pod (portmap's DNAT to the
//! address aws-cni's result carries). DEL in reverse order leaves the node as before, but
//! for portmap's shared `CNI-HOSTPORT-*` chains, which it keeps for every pod as it does on
//! any node. Needs root, `ip`, iptables, host-local and portmap (`scripts/install-deps.sh`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::TestNetns;
use integration_tests::bins::{core_plugin, workspace_bin};
use rpc::{
    AddNetworkReply, AddNetworkRequest, CniBackend, CniBackendServer, DelNetworkReply,
    DelNetworkRequest, IpAllocationMetadata,
};
use serde_json::Value;
use tonic::{Request, Response, Status};

const POD_IP: &str = "2001:db8:0:1::9";
const NODE_V6: &str = "2001:db8:1::10";
const NODE_V4: &str = "192.0.2.10";
const OUTSIDE_V4: &str = "192.0.2.20";
/// portmap's mapping: the node's port and the pod's.
const HOST_PORT: u16 = 7180;
const POD_PORT: u16 = 7181;
/// As containerd passes them (`IgnoreUnknown=1` first: host-local refuses unknown args without
/// it).
const ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=dual-egress";

/// ipamd in IPv6 mode: one address of the primary ENI.
struct Ipamd6;

fn allocation() -> Vec<IpAllocationMetadata> {
    vec![IpAllocationMetadata {
        i_pv6_addr: POD_IP.into(),
        device_number: 0,
        route_table_id: 254,
        ..Default::default()
    }]
}

#[tonic::async_trait]
impl CniBackend for Ipamd6 {
    async fn add_network(
        &self,
        _: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        Ok(Response::new(AddNetworkReply {
            success: true,
            ip_allocation_metadata: allocation(),
            vp_cv6_cid_rs: vec!["2001:db8::/56".into()],
            ..Default::default()
        }))
    }

    async fn del_network(
        &self,
        _: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        Ok(Response::new(DelNetworkReply {
            success: true,
            ip_allocation_metadata: allocation(),
            ..Default::default()
        }))
    }
}

/// The node (`eth0`: 2001:db8:1::10/64 and 192.0.2.10/24, veth'd to an outside namespace
/// holding 192.0.2.20/24) and the pod's namespace.
fn namespaces() -> (TestNetns, TestNetns, TestNetns) {
    let node = TestNetns::new("v6chain-n");
    let outside = TestNetns::new("v6chain-o");
    for ns in [&node, &outside] {
        ns.ip(&["link", "set", "lo", "up"]);
    }
    node.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "ext0", "netns", &outside.0,
    ]);
    node.ip(&["link", "set", "eth0", "addrgenmode", "none"]);
    outside.ip(&["link", "set", "ext0", "addrgenmode", "none"]);
    node.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{NODE_V6}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    node.ip(&["addr", "add", &format!("{NODE_V4}/24"), "dev", "eth0"]);
    outside.ip(&["addr", "add", &format!("{OUTSIDE_V4}/24"), "dev", "ext0"]);
    node.ip(&["link", "set", "eth0", "up"]);
    outside.ip(&["link", "set", "ext0", "up"]);
    // What the init container sets in IPv6 clusters (and egress-cni's own ip_forward).
    node.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    (node, outside, TestNetns::new("v6chain-p"))
}

/// The node's kernel view of both families and its nat tables.
fn node_view(node: &TestNetns) -> String {
    let mut s = node.ip(&["-o", "link", "show"]);
    for family in ["-4", "-6"] {
        s += &node.ip(&[family, "-o", "addr", "show"]);
        s += &node.ip(&[family, "route", "show", "table", "all"]);
        s += &node.ip(&[family, "rule", "show"]);
    }
    for save in ["iptables-nft-save", "ip6tables-nft-save"] {
        s += &node
            .exec_ok(&[save, "-t", "nat"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
    }
    s
}

/// One TCP exchange from `client` to `target` reaching a listener on `bind` in `server_ns`;
/// the peer address the listener saw.
fn tcp(
    client: &TestNetns,
    server_ns: &TestNetns,
    bind: SocketAddr,
    target: SocketAddr,
) -> SocketAddr {
    let listener = {
        let _in = server_ns.netns().enter().unwrap();
        TcpListener::bind(bind).unwrap()
    };
    let server = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");
        peer
    });
    let client = client.netns();
    std::thread::spawn(move || {
        let _in = client.enter().unwrap();
        let start = Instant::now();
        loop {
            match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                Ok(mut s) => return s.write_all(b"hello").unwrap(),
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    eprintln!("connect {target}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("no path to {target}: {e}"),
            }
        }
    })
    .join()
    .unwrap();
    server.join().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_pods_get_ipv4_egress_through_the_chain_and_del_restores_the_node() {
    let host_local = core_plugin("host-local");
    let cni_path = host_local.parent().unwrap().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipamd.sock");
    let listener = rpc::server::bind_unix(&socket).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CniBackendServer::new(Ipamd6))
            .serve_with_incoming(listener),
    );
    let (node, outside, pod) = namespaces();
    let before = node_view(&node);
    let aws = r#"{"cniVersion":"0.4.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001","pluginLogFile":"stderr","pluginLogLevel":"Debug"}"#;
    let egress = |prev: &str| {
        format!(
            r#"{{"cniVersion":"0.4.0","name":"aws-cni","type":"egress-cni","mtu":"9001","enabled":"true",
            "randomizeSNAT":"prng","nodeIP":"{NODE_V4}",
            "ipam":{{"type":"host-local","ranges":[[{{"subnet":"169.254.172.0/22"}}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{}"}},
            "pluginLogFile":"{}","pluginLogLevel":"Debug","prevResult":{prev}}}"#,
            dir.path().join("egress-v4-ipam").display(),
            dir.path().join("egress-v4-plugin.log").display()
        )
    };
    let portmap = |prev: &str| {
        format!(
            r#"{{"cniVersion":"0.4.0","name":"aws-cni","type":"portmap","capabilities":{{"portMappings":true}},"snat":true,
            "runtimeConfig":{{"portMappings":[{{"hostPort":{HOST_PORT},"containerPort":{POD_PORT},"protocol":"tcp"}}]}},
            "prevResult":{prev}}}"#
        )
    };
    let pod_path = pod.path();
    let socket_text = socket.display().to_string();
    let env = |command: &'static str| {
        vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "chain6"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", pod_path.as_str()),
            ("CNI_ARGS", ARGS),
            ("CNI_PATH", cni_path.as_str()),
            ("IPAMD_GRPC_SOCKET", socket_text.as_str()),
        ]
    };
    // Private copies: the same binaries for ADD and DEL even if the target directory is
    // rebuilt meanwhile.
    for name in ["aws-cni", "egress-cni"] {
        std::fs::copy(workspace_bin(name), dir.path().join(name)).unwrap();
    }
    std::fs::copy(core_plugin("portmap"), dir.path().join("portmap")).unwrap();
    let run = |bin: &str, command: &'static str, stdin: &str| {
        let bin = dir.path().join(bin);
        let env = env(command);
        tokio::task::block_in_place(|| cni::testing::run_plugin(&bin, Some(&node.0), &env, stdin))
    };

    // ADD down the chain: aws-cni's result is egress-cni's prevResult.
    let first = run("aws-cni", "ADD", aws);
    assert_eq!(first.rc, 0, "{} {}", first.stdout, first.stderr);
    let second = run("egress-cni", "ADD", &egress(&first.stdout));
    assert_eq!(second.rc, 0, "{} {}", second.stdout, second.stderr);
    let result: Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(result["ips"][0]["address"], format!("{POD_IP}/128"));
    assert_eq!(result["ips"].as_array().unwrap().len(), 1, "{result}");
    let names: Vec<&str> = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!((names[1], names[4]), ("eth0", "v4if0"), "{names:?}");
    let third = run("portmap", "ADD", &portmap(&second.stdout));
    assert_eq!(third.rc, 0, "{} {}", third.stdout, third.stderr);
    let passed: Value = serde_json::from_str(&third.stdout).unwrap();
    assert_eq!(passed, result, "portmap passes the result on");
    let nat6 = node.exec_ok(&["ip6tables-nft-save", "-t", "nat"]);
    assert!(
        nat6.contains(&format!(
            "--dport {HOST_PORT} -j DNAT --to-destination [{POD_IP}]:{POD_PORT}"
        )),
        "{nat6}"
    );

    // IPv6 to the node from the pod's own address; IPv4 out through SNAT to the node's IPv4.
    let to_node: SocketAddr = format!("[{NODE_V6}]:7101").parse().unwrap();
    let v6 = tcp(&pod, &node, to_node, to_node);
    assert_eq!(v6.ip().to_string(), POD_IP);
    let to_outside: SocketAddr = format!("{OUTSIDE_V4}:7102").parse().unwrap();
    let v4 = tcp(&pod, &outside, to_outside, to_outside);
    assert_eq!(v4.ip().to_string(), NODE_V4, "SNATed to the node's IPv4");
    let host_port = tcp(
        &node,
        &pod,
        format!("[{POD_IP}]:{POD_PORT}").parse().unwrap(),
        format!("[{NODE_V6}]:{HOST_PORT}").parse().unwrap(),
    );
    assert_eq!(
        host_port.ip().to_string(),
        NODE_V6,
        "the node's host port reaches the pod"
    );
    let log = std::fs::read_to_string(dir.path().join("egress-v4-plugin.log")).unwrap();
    assert!(log.contains("Received an Add request"), "{log}");

    // DEL up the chain (the runtime's order), then the runtime removes the namespace.
    let prev = |conf: &str| {
        let mut v: Value = serde_json::from_str(conf).unwrap();
        v["prevResult"] = result.clone();
        v.to_string()
    };
    let del = run("portmap", "DEL", &prev(&portmap("{}")));
    assert_eq!((del.rc, del.stdout.as_str()), (0, ""), "{}", del.stderr);
    let del = run("egress-cni", "DEL", &egress(&second.stdout));
    assert_eq!((del.rc, del.stdout.as_str()), (0, ""), "{}", del.stderr);
    let del = run("aws-cni", "DEL", &prev(aws));
    assert_eq!((del.rc, del.stdout.as_str()), (0, ""), "{}", del.stderr);
    pod.recreate();
    let veth = net::names::host_veth_name("eni", "default", "dual-egress", 0);
    node.wait_link_gone(&veth).await;
    assert!(
        Path::new(&dir.path().join("egress-v4-ipam/aws-cni"))
            .read_dir()
            .map_or(true, |d| d.filter_map(Result::ok).all(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("last_reserved")
                || e.file_name() == "lock")),
        "host-local released the egress address"
    );
    let after = node_view(&node);
    assert!(
        !after.contains("CNI-DN-"),
        "portmap removed the pod's chain: {after}"
    );
    let without_shared_portmap_chains = after
        .lines()
        .filter(|l| !l.contains("CNI-HOSTPORT-"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(
        after, without_shared_portmap_chains,
        "portmap's shared chains stay"
    );
    assert_eq!(
        without_shared_portmap_chains, before,
        "DEL restores the node"
    );
}
