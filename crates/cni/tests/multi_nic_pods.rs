//! Multi-homed pods (docs/cni-plugin.md, "Multi-homed pods") with the real `aws-cni` binary,
//! in network namespaces made by the test, against a stand-in ipamd: a small tonic
//! `CNIBackend` that records `RequiresMultiNICAttachment` and answers an opted-in pod with
//! one address per network card (card 0: device 1, table 2; card 1: device 0, table 10100),
//! any other pod with the first alone, as ipamd does (spec 5.3), with `NetworkPolicyMode`
//! `none` so that the stand-in network policy agent hears of every pod. The stand-in lets these
//! tests fail ipamd's side at will; with the real agent: `tests/tests/multi_nic_end_to_end.rs`.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use cni::testing::Run;
use ec2_emulator::testing::TestNetns;
use ipnet::{IpNet, Ipv4Net};
use net::netlink::{Route, Rule, Scope};
use net::route_table::{MAIN_TABLE, priority};
use net::state::NetnsState;
use rpc::NpBackendServer;
use rpc::{
    AddNetworkReply, AddNetworkRequest, CniBackend, CniBackendServer, DelNetworkReply,
    DelNetworkRequest, IpAllocationMetadata,
};
use serde_json::{Value, json};
use support::{NpAnswer, NpStandIn};
use tonic::{Request, Response, Status};

const ARGS: &str = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0";
const CARD0_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 20);
const CARD1_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 20);
const CARD0_TABLE: u32 = 2;
const CARD1_TABLE: u32 = 10100;

fn host_veth(index: u32) -> String {
    net::names::host_veth_name("eni", "default", "web-0", index)
}

/// The stand-in ipamd: records `"AddNetwork multi=<flag>"` and `"DelNetwork <reason>"`;
/// `DelNetwork` answers with what the last `AddNetwork` granted.
#[derive(Clone, Default)]
struct MultiNicIpamd {
    calls: Arc<Mutex<Vec<String>>>,
    granted: Arc<Mutex<Vec<IpAllocationMetadata>>>,
}

fn per_card(multi: bool) -> Vec<IpAllocationMetadata> {
    let card0 = IpAllocationMetadata {
        i_pv4_addr: CARD0_IP.to_string(),
        device_number: 1,
        route_table_id: CARD0_TABLE as i32,
        ..Default::default()
    };
    let card1 = IpAllocationMetadata {
        i_pv4_addr: CARD1_IP.to_string(),
        device_number: 0,
        route_table_id: CARD1_TABLE as i32,
        ..Default::default()
    };
    if multi {
        vec![card0, card1]
    } else {
        vec![card0]
    }
}

#[tonic::async_trait]
impl CniBackend for MultiNicIpamd {
    async fn add_network(
        &self,
        r: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        let multi = r.into_inner().requires_multi_nic_attachment;
        self.calls
            .lock()
            .unwrap()
            .push(format!("AddNetwork multi={multi}"));
        let granted = per_card(multi);
        *self.granted.lock().unwrap() = granted.clone();
        Ok(Response::new(AddNetworkReply {
            success: true,
            ip_allocation_metadata: granted,
            network_policy_mode: "none".into(),
            ..Default::default()
        }))
    }

    async fn del_network(
        &self,
        r: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let reason = r.into_inner().reason;
        self.calls
            .lock()
            .unwrap()
            .push(format!("DelNetwork {reason}"));
        Ok(Response::new(DelNetworkReply {
            success: true,
            ip_allocation_metadata: std::mem::take(&mut *self.granted.lock().unwrap()),
            network_policy_mode: "none".into(),
            ..Default::default()
        }))
    }
}

/// A node and a pod namespace, the stand-in ipamd and network policy agent.
struct Bench {
    node: TestNetns,
    pod: TestNetns,
    dir: std::path::PathBuf,
    socket: String,
    ipamd: MultiNicIpamd,
    npa: NpStandIn,
    npa_socket: String,
}

impl Bench {
    fn start(tag: &str) -> Bench {
        let node = TestNetns::new(&format!("cni-{tag}"));
        node.ip(&["link", "set", "lo", "up"]);
        let dir = std::env::temp_dir().join(format!("cni-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ipamd.sock");
        let ipamd = MultiNicIpamd::default();
        let listener = rpc::server::bind_unix(&socket).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CniBackendServer::new(ipamd.clone()))
                .serve_with_incoming(listener),
        );
        let npa_socket = dir.join("npa.sock");
        let npa = NpStandIn {
            calls: Arc::default(),
            answer: Arc::new(Mutex::new(NpAnswer::Enforced)),
        };
        let listener = rpc::server::bind_unix(&npa_socket).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(NpBackendServer::new(npa.clone()))
                .serve_with_incoming(listener),
        );
        Bench {
            node,
            pod: TestNetns::new(&format!("cni-{tag}-p")),
            socket: socket.display().to_string(),
            dir,
            ipamd,
            npa,
            npa_socket: npa_socket.display().to_string(),
        }
    }

    /// The conflist entry, with `annotations` as the runtime's pod annotations.
    fn conf(annotations: Option<Value>, prev: Option<&Value>) -> String {
        let mut conf = json!({"cniVersion": "1.0.0", "name": "aws-cni", "type": "aws-cni",
            "vethPrefix": "eni", "mtu": "9001"});
        if let Some(a) = annotations {
            conf["runtimeConfig"] = json!({"io.kubernetes.cri.pod-annotations": a});
        }
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf.to_string()
    }

    fn opted_in() -> Option<Value> {
        Some(
            json!({"k8s.amazonaws.com/nicConfig": "multi-nic-attachment",
            "kubernetes.io/config.source": "api"}),
        )
    }

    fn run(&self, command: &str, socket: &str, stdin: &str) -> Run {
        let netns = self.pod.path();
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "cmnic"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_ARGS", ARGS),
            ("IPAMD_GRPC_SOCKET", socket),
            ("NPA_GRPC_SOCKET", self.npa_socket.as_str()),
        ];
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_aws-cni"));
        tokio::task::block_in_place(|| {
            cni::testing::run_plugin(bin, Some(&self.node.0), &env, stdin)
        })
    }

    fn add(&self, annotations: Option<Value>) -> Run {
        self.run("ADD", &self.socket, &Self::conf(annotations, None))
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.ipamd.calls.lock().unwrap())
    }

    fn policy_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.npa.calls.lock().unwrap())
    }

    /// What the runtime does after DEL: the pod's namespace goes, its veths with it.
    async fn runtime_removes_pod_netns(&self, interfaces: u32) {
        self.pod.recreate();
        for index in 0..interfaces {
            self.node.wait_link_gone(&host_veth(index)).await;
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The node's routes and rules (DEL leaves the veths to go with the pod's namespace).
fn routes_and_rules(st: &NetnsState) -> (Vec<String>, Vec<Rule>) {
    let mut routes: Vec<String> = st.routes.iter().map(|r| format!("{r:?}")).collect();
    routes.sort();
    (routes, st.rules.clone())
}

fn host32(ip: Ipv4Addr) -> IpNet {
    IpNet::from(Ipv4Net::from(ip))
}

/// Interface `index` of the pod: its address, its gateway route and default route in its
/// table (main for 0, `index` after), and the neighbour entry of its gateway.
fn assert_pod_interface(pod: &NetnsState, dev: &str, ip: Ipv4Addr, index: u32) {
    assert_eq!(pod.addresses_of(dev), vec![Ipv4Net::from(ip)], "{dev}");
    let gw = Ipv4Addr::new(169, 254, 1, u8::try_from(index + 1).unwrap());
    let table = if index == 0 { MAIN_TABLE } else { index };
    let routes = pod.unicast_routes(table);
    assert!(
        routes.iter().any(|r| r.dst == Route::host(gw)
            && r.scope == Scope::Link
            && r.dev.as_deref() == Some(dev)),
        "{dev}: {routes:?}"
    );
    assert!(
        routes.iter().any(|r| r.dst.prefix_len() == 0
            && r.gateway == Some(gw.into())
            && r.dev.as_deref() == Some(dev)),
        "{dev}: {routes:?}"
    );
    assert!(
        pod.neighbours
            .iter()
            .any(|n| n.ip == IpAddr::V4(gw) && n.dev == dev),
        "{dev}: {:?}",
        pod.neighbours
    );
}

/// The node routes each address to its veth and has its to-pod and from-pod rules.
fn assert_node_wired(node: &NetnsState) {
    for (index, ip, table) in [(0, CARD0_IP, CARD0_TABLE), (1, CARD1_IP, CARD1_TABLE)] {
        let veth = host_veth(index);
        assert!(node.link(&veth).is_some_and(|l| l.up), "{veth}");
        assert!(
            node.unicast_routes(MAIN_TABLE)
                .iter()
                .any(|r| r.dst == host32(ip)
                    && r.dev.as_deref() == Some(veth.as_str())
                    && r.scope == Scope::Link),
            "{ip} dev {veth}"
        );
        assert!(
            node.rules
                .contains(&Rule::to_ip(ip, MAIN_TABLE, priority::TO_POD))
        );
        assert!(
            node.rules
                .contains(&Rule::from_ip(ip, table, priority::FROM_POD))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_in_pod_gets_an_interface_per_card_and_del_restores_node_and_pod() {
    let b = Bench::start("mnicadd");
    let before = (b.node.state().await, b.pod.state().await);

    let add = b.add(Bench::opted_in());
    assert_eq!(add.rc, 0, "{} {}", add.stdout, add.stderr);
    assert_eq!(b.calls(), ["AddNetwork multi=true"]);
    // Upstream's TestCmdAddForMultiNICAttachment: the agent hears of both interfaces.
    assert_eq!(b.policy_calls(), ["EnforceNpToPod default/web-0 none 2"]);
    let result = add.json();
    let netns = b.pod.path();
    let names: Vec<&str> = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    let dummy = net::names::dummy_if_name("default", "web-0");
    assert_eq!(
        names,
        [
            host_veth(0).as_str(),
            "eth0",
            host_veth(1).as_str(),
            "mNicIf1",
            dummy.as_str()
        ]
    );
    assert_eq!(
        result["interfaces"][1],
        json!({"name": "eth0", "mac": "2", "sandbox": netns})
    );
    assert_eq!(
        result["interfaces"][3],
        json!({"name": "mNicIf1", "mac": "10100", "sandbox": netns})
    );
    assert_eq!(
        result["interfaces"][4],
        json!({"name": dummy, "mac": "0", "sandbox": "1"})
    );
    assert_eq!(
        result["ips"],
        json!([{"address": "10.0.0.20/32", "interface": 1}, {"address": "10.1.0.20/32", "interface": 3}])
    );

    let pod = b.pod.state().await;
    assert_pod_interface(&pod, "eth0", CARD0_IP, 0);
    assert_pod_interface(&pod, "mNicIf1", CARD1_IP, 1);
    assert_eq!(
        pod.rules_at(priority::POD_MULTI_NIC),
        vec![&Rule::from_ip(CARD1_IP, 1, 1)]
    );
    assert_node_wired(&b.node.state().await);

    // CHECK covers the second interface too.
    let check = |prev: &Value| b.run("CHECK", &b.socket, &Bench::conf(None, Some(prev)));
    let ok = check(&result);
    assert_eq!((ok.rc, ok.stdout.as_str()), (0, ""), "{}", ok.stderr);
    b.pod.ip(&[
        "rule",
        "del",
        "from",
        "10.1.0.20",
        "lookup",
        "1",
        "pref",
        "1",
    ]);
    let broken = check(&result);
    assert_ne!(broken.rc, 0);
    let msg = broken.json()["msg"].as_str().unwrap().to_string();
    assert!(
        msg.contains("pod rule") && msg.contains("lookup 1"),
        "{msg}"
    );

    // DEL through ipamd: both interfaces' host sides go; the veths go with the namespace.
    let del = b.run("DEL", &b.socket, &Bench::conf(None, None));
    assert_eq!((del.rc, del.stdout.as_str()), (0, ""), "{}", del.stderr);
    assert_eq!(b.calls(), ["DelNetwork PodDeleted"]);
    assert_eq!(b.policy_calls(), ["DeletePodNp default/web-0"]);
    assert_eq!(
        routes_and_rules(&b.node.state().await),
        routes_and_rules(&before.0)
    );
    b.runtime_removes_pod_netns(2).await;
    assert_eq!(b.node.state().await, before.0);
    assert_eq!(b.pod.state().await, before.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_with_ipamd_down_tears_every_interface_down_from_prev_result() {
    let b = Bench::start("mnicprev");
    let before = (b.node.state().await, b.pod.state().await);
    let add = b.add(Bench::opted_in());
    assert_eq!(add.rc, 0, "{} {}", add.stdout, add.stderr);
    b.calls();

    let del = b.run(
        "DEL",
        "/nonexistent/ipamd.sock",
        &Bench::conf(None, Some(&add.json())),
    );
    assert_eq!((del.rc, del.stdout.as_str()), (0, ""), "{}", del.stderr);
    assert!(b.calls().is_empty());
    assert_eq!(
        routes_and_rules(&b.node.state().await),
        routes_and_rules(&before.0)
    );
    b.runtime_removes_pod_netns(2).await;
    assert_eq!(b.node.state().await, before.0);
    assert_eq!(b.pod.state().await, before.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_on_the_second_interface_leaves_nothing_and_gives_the_addresses_back() {
    let b = Bench::start("mnicfail");
    // Something of the pod's own already holds the second interface's name.
    // (a veth pair: this project's CI kernel has no dummy links).
    b.pod.ip(&[
        "link", "add", "mNicIf1", "type", "veth", "peer", "name", "held1",
    ]);
    let before = (b.node.state().await, b.pod.state().await);

    let add = b.add(Bench::opted_in());
    assert_ne!(add.rc, 0, "{}", add.stdout);
    let msg = add.json()["msg"].as_str().unwrap().to_string();
    assert!(msg.contains("mNicIf1"), "{msg}");
    assert!(
        msg.contains("addresses 10.0.0.20, 10.1.0.20 given back to ipamd"),
        "{msg}"
    );
    assert_eq!(
        b.calls(),
        ["AddNetwork multi=true", "DelNetwork SetupNSFailed"]
    );
    assert!(b.policy_calls().is_empty(), "no policy for a pod not wired");
    b.node.wait_link_gone(&host_veth(0)).await;
    assert_eq!(
        b.node.state().await,
        before.0,
        "interface 0 undone on the node"
    );
    assert_eq!(b.pod.state().await, before.1, "and in the pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_without_the_annotation_or_another_value_gets_one_interface() {
    let b = Bench::start("mnicone");
    let before = (b.node.state().await, b.pod.state().await);
    for annotations in [
        None,
        Some(json!({})),
        Some(json!({"k8s.amazonaws.com/nicConfig": "single-nic"})),
        Some(json!({"nicConfig": "multi-nic-attachment"})),
    ] {
        let add = b.add(annotations.clone());
        assert_eq!(add.rc, 0, "{annotations:?}: {} {}", add.stdout, add.stderr);
        assert_eq!(b.calls(), ["AddNetwork multi=false"], "{annotations:?}");
        assert_eq!(b.policy_calls(), ["EnforceNpToPod default/web-0 none 1"]);
        let result = add.json();
        assert_eq!(
            result["interfaces"].as_array().unwrap().len(),
            3,
            "{result}"
        );
        assert_eq!(result["ips"].as_array().unwrap().len(), 1, "{result}");
        assert!(b.pod.state().await.link("mNicIf1").is_none());
        let del = b.run("DEL", &b.socket, &Bench::conf(None, Some(&result)));
        assert_eq!(del.rc, 0, "{}", del.stdout);
        assert_eq!(b.calls(), ["DelNetwork PodDeleted"]);
        assert_eq!(b.policy_calls(), ["DeletePodNp default/web-0"]);
        b.runtime_removes_pod_netns(1).await;
        assert_eq!(b.node.state().await, before.0, "{annotations:?}");
    }
}
