//! Pods of IPv6 clusters (spec 12.3) with the real `aws-cni` binary against a stand-in ipamd
//! answering as upstream's does in IPv6 mode (`IPv6Addr` and `VPCv6CIDRs` set, `IPv4Addr`
//! empty), in network namespaces made by the test: the pod gets its `/128`, the default route
//! via `fe80::1` with a permanent neighbour to the host veth's MAC and IPv6 enabled on `eth0`
//! and `lo`; the node gets the `/128` route, the priority-512 rule and, for a secondary ENI's
//! address, the priority-1536 rule; IPv6 traffic flows between pod and node; DEL (from
//! ipamd's reply, or from prevResult without ipamd) leaves the node exactly as before. With
//! upstream's conflist entry the IPv4 veth half prepared during `AddNetwork` is made again
//! for IPv6; with ours (`"podIPFamily": "ipv6"`) the IPv6 half is prepared at once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ec2_emulator::testing::TestNetns;
use rpc::{
    AddNetworkReply, AddNetworkRequest, CniBackend, CniBackendServer, DelNetworkReply,
    DelNetworkRequest, IpAllocationMetadata,
};
use serde_json::Value;
use tonic::{Request, Response, Status};

const NODE_IP: &str = "2001:db8:1::10";
const ARGS: &str = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-v6";
const REPREPARED: &str = cni::plugin::REPREPARED_FOR_GRANTED_FAMILY;

/// The stand-in ipamd's one allocation: (IPv6 address, route table).
#[derive(Clone)]
struct StandIn(Arc<Mutex<(String, i32)>>);

impl StandIn {
    fn allocation(&self) -> Vec<IpAllocationMetadata> {
        let (ip, table) = self.0.lock().unwrap().clone();
        vec![IpAllocationMetadata {
            i_pv6_addr: ip,
            device_number: table.saturating_sub(1).max(0),
            route_table_id: table,
            ..Default::default()
        }]
    }
}

#[tonic::async_trait]
impl CniBackend for StandIn {
    async fn add_network(
        &self,
        _: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        Ok(Response::new(AddNetworkReply {
            success: true,
            ip_allocation_metadata: self.allocation(),
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
            ip_allocation_metadata: self.allocation(),
            ..Default::default()
        }))
    }
}

struct Bench {
    node: TestNetns,
    pod: TestNetns,
    dir: PathBuf,
    socket: String,
    grant: Arc<Mutex<(String, i32)>>,
}

impl Bench {
    async fn start(tag: &str) -> Bench {
        let dir = std::env::temp_dir().join(format!("cni6-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ipamd.sock");
        let grant = Arc::new(Mutex::new((String::new(), 254)));
        let listener = rpc::server::bind_unix(&socket).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CniBackendServer::new(StandIn(grant.clone())))
                .serve_with_incoming(listener),
        );
        let node = TestNetns::new(&format!("c6n-{tag}"));
        node.ip(&["link", "set", "lo", "up"]);
        // The node's primary interface with its IPv6 (no DAD: nothing tentative between
        // snapshots).
        // (A veth whose peer stays in the node: this kernel may have no dummy links.)
        node.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ]);
        for link in ["eth0", "eth0p"] {
            node.ip(&["link", "set", link, "addrgenmode", "none"]);
        }
        node.ip(&["link", "set", "eth0p", "up"]);
        node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{NODE_IP}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        node.ip(&["link", "set", "eth0", "up"]);
        Bench {
            node,
            pod: TestNetns::new(&format!("c6p-{tag}")),
            socket: socket.display().to_string(),
            dir,
            grant,
        }
    }

    /// The aws-cni entry of upstream's template (no family named).
    fn conf(&self, prev: Option<&Value>) -> String {
        let mut conf: Value = serde_json::from_str(
            r#"{"cniVersion":"0.4.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001","pluginLogFile":"stderr","pluginLogLevel":"Debug"}"#,
        )
        .unwrap();
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf.to_string()
    }

    fn run(&self, command: &str, socket: &str, stdin: &str) -> cni::testing::Run {
        let path = self.pod.path();
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c6"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", path.as_str()),
            ("CNI_ARGS", ARGS),
            ("IPAMD_GRPC_SOCKET", socket),
        ];
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_aws-cni"));
        tokio::task::block_in_place(|| {
            cni::testing::run_plugin(bin, Some(&self.node.0), &env, stdin)
        })
    }

    /// ADD of `ip` on an ENI with route table `table` with upstream's conflist entry: the
    /// IPv4 veth half prepared meanwhile is made again for IPv6. Returns the result.
    fn add(&self, ip: &str, table: i32) -> Value {
        *self.grant.lock().unwrap() = (ip.to_owned(), table);
        let r = self.run("ADD", &self.socket, &self.conf(None));
        assert_eq!(r.rc, 0, "{} {}", r.stdout, r.stderr);
        assert!(r.stderr.contains(REPREPARED), "{}", r.stderr);
        r.json()
    }

    /// [`Self::add`] with the entry our entrypoint writes in IPv6 mode (`"podIPFamily":
    /// "ipv6"`): the IPv6 half is prepared while ipamd answers, nothing is made twice.
    fn add_hinted(&self, ip: &str, table: i32) -> Value {
        *self.grant.lock().unwrap() = (ip.to_owned(), table);
        let mut conf: Value = serde_json::from_str(&self.conf(None)).unwrap();
        conf["podIPFamily"] = "ipv6".into();
        let r = self.run("ADD", &self.socket, &conf.to_string());
        assert_eq!(r.rc, 0, "{} {}", r.stdout, r.stderr);
        assert!(!r.stderr.contains(REPREPARED), "{}", r.stderr);
        r.json()
    }

    /// The node's IPv6 view (links, addresses, routes of every table, rules, neighbours)
    /// and its IPv4 one.
    async fn node_state(&self) -> String {
        let n = &self.node;
        let mut s = n.ip(&["-o", "link", "show"]);
        s += &n.ip(&["-6", "-o", "addr", "show"]);
        s += &n.ip(&["-6", "route", "show", "table", "all"]);
        s += &n.ip(&["-6", "rule", "show"]);
        s += &n.ip(&["-6", "neigh", "show", "nud", "permanent"]);
        s + &format!("{:?}", n.state().await)
    }

    fn veth() -> String {
        net::names::host_veth_name("eni", "default", "web-v6", 0)
    }

    async fn runtime_removes_pod_netns(&self) {
        self.pod.recreate();
        self.node.wait_link_gone(&Self::veth()).await;
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP connection from the pod to the node's IPv6; returns the peer the node saw.
fn tcp_pod_to_node(b: &Bench) -> (SocketAddr, String) {
    let node = b.node.netns();
    let listener = {
        let _in = node.enter().unwrap();
        TcpListener::bind(format!("[{NODE_IP}]:7001")).unwrap()
    };
    let server = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).unwrap();
        stream.write_all(b"hello pod").unwrap();
        (peer, got)
    });
    let pod = b.pod.netns();
    let client = std::thread::spawn(move || {
        let _in = pod.enter().unwrap();
        let target: SocketAddr = format!("[{NODE_IP}]:7001").parse().unwrap();
        let start = Instant::now();
        loop {
            match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                Ok(mut s) => {
                    s.write_all(b"hello node").unwrap();
                    s.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut back = String::new();
                    s.read_to_string(&mut back).unwrap();
                    return back;
                }
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    eprintln!("connect: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("no IPv6 path from the pod to the node: {e}"),
            }
        }
    });
    assert_eq!(
        client.join().unwrap(),
        "hello pod",
        "the node's reply reached the pod"
    );
    server.join().unwrap()
}

fn sysctl(ns: &TestNetns, key: &str) -> String {
    ns.exec(&["sysctl", "-n", key]).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_pod_is_wired_reaches_the_node_and_del_restores_the_node() {
    let b = Bench::start("main").await;
    let before = b.node_state().await;
    let ip = "2001:db8:0:1::5";

    let started = Instant::now();
    let result = b.add(ip, 254);
    eprintln!("IPv6 ADD took {:?}", started.elapsed());
    assert_eq!(result["ips"][0]["address"], format!("{ip}/128"), "{result}");
    assert_eq!(result["ips"][0]["version"], "6", "{result}");
    assert_eq!(result["interfaces"][0]["name"], Bench::veth());
    assert_eq!(result["interfaces"][1]["mac"], "254");

    // The pod: its /128 (out of DAD), default via fe80::1, the permanent neighbour to the
    // host veth's MAC, IPv6 enabled on eth0 and lo.
    let addrs = b.pod.ip(&["-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("inet6 {ip}/128")), "{addrs}");
    assert!(!addrs.contains("tentative"), "DAD waited out: {addrs}");
    let routes = b.pod.ip(&["-6", "route", "show"]);
    assert!(routes.contains("default via fe80::1 dev eth0"), "{routes}");
    assert!(routes.contains("fe80::1 dev eth0"), "{routes}");
    let host_mac = b
        .node
        .ip(&["-o", "link", "show", &Bench::veth()])
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap()
        .to_owned();
    let neigh = b.pod.ip(&["-6", "neigh", "show", "dev", "eth0"]);
    assert!(
        neigh.contains(&format!("fe80::1 lladdr {host_mac} PERMANENT")),
        "{neigh}"
    );
    assert_eq!(sysctl(&b.pod, "net.ipv6.conf.eth0.disable_ipv6"), "0");
    assert_eq!(sysctl(&b.pod, "net.ipv6.conf.lo.disable_ipv6"), "0");
    assert_eq!(sysctl(&b.pod, "net.ipv6.conf.eth0.accept_dad"), "0");
    let addrs = b.pod.ip(&["-6", "addr", "show", "dev", "eth0"]);
    assert!(
        !addrs.contains("tentative"),
        "no address waits for DAD: {addrs}"
    );

    // The node: /128 route to the host veth, rule 512 to main, no from-rule (primary ENI),
    // the host veth's IPv6 sysctls.
    let route = b.node.ip(&["-6", "route", "show", &format!("{ip}/128")]);
    assert!(route.contains(&format!("dev {}", Bench::veth())), "{route}");
    let rules = b.node.ip(&["-6", "rule", "show"]);
    assert!(
        rules.contains(&format!("512:\tfrom all to {ip} lookup main")),
        "{rules}"
    );
    assert!(!rules.contains("1536:"), "{rules}");
    let veth = Bench::veth();
    assert_eq!(
        sysctl(&b.node, &format!("net.ipv6.conf.{veth}.accept_ra")),
        "0"
    );
    assert_eq!(
        sysctl(&b.node, &format!("net.ipv6.conf.{veth}.forwarding")),
        "0"
    );

    // Real traffic, both ways.
    let (peer, got) = tcp_pod_to_node(&b);
    assert_eq!(
        peer.ip().to_string(),
        ip,
        "the node sees the pod's own address"
    );
    assert_eq!(got, "hello node");

    // DEL through ipamd: rules and route go, the veth with the namespace; node as before.
    let r = b.run("DEL", &b.socket, &b.conf(Some(&result)));
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert!(!b.node.ip(&["-6", "rule", "show"]).contains(ip));
    b.runtime_removes_pod_netns().await;
    assert_eq!(b.node_state().await, before, "DEL restores the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_eni_ipv6_pod_gets_its_from_rule_and_del_without_ipamd_uses_prev_result() {
    let b = Bench::start("sec").await;
    let before = b.node_state().await;
    let ip = "2001:db8:0:2::7";
    let result = b.add_hinted(ip, 3);
    let rules = b.node.ip(&["-6", "rule", "show"]);
    assert!(
        rules.contains(&format!("512:\tfrom all to {ip} lookup main")),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("1536:\tfrom {ip} lookup 3")),
        "{rules}"
    );
    assert_eq!(result["interfaces"][1]["mac"], "3");
    assert_eq!(tcp_pod_to_node(&b).0.ip().to_string(), ip);

    // ipamd unreachable: torn down from prevResult, DEL succeeds.
    let r = b.run("DEL", "/nonexistent/ipamd.sock", &b.conf(Some(&result)));
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    assert!(!b.node.ip(&["-6", "rule", "show"]).contains(ip));
    b.runtime_removes_pod_netns().await;
    assert_eq!(
        b.node_state().await,
        before,
        "DEL from prevResult restores the node"
    );

    // A second ADD in a fresh sandbox of the same pod works again.
    let result = b.add(ip, 3);
    assert_eq!(tcp_pod_to_node(&b).0.ip().to_string(), ip);
    let r = b.run("DEL", &b.socket, &b.conf(Some(&result)));
    assert_eq!(r.rc, 0, "{}", r.stderr);
    b.runtime_removes_pod_netns().await;
    assert_eq!(b.node_state().await, before);
}
