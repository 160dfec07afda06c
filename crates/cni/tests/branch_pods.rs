//! Branch-ENI pods (security groups for pods) with the real `aws-cni` binary, in network
//! namespaces made by the test, against a stand-in ipamd: a small tonic `CNIBackend` that
//! answers `AddNetwork` with upstream's branch fields (`PodVlanId`, `PodENIMAC`,
//! `PodENISubnetGW`, `ParentIfIndex`) and `DelNetwork` with `PodVlanId`, and records every
//! request. Our ipamd does not answer with branch fields yet (issue 14's ipamd half); once
//! it does, it replaces this stand-in.
//!
//! The node's `eth2` (a veth) stands in for the trunk ENI. On a kernel with 802.1Q, ADD
//! wires the pod and DEL (from `prevResult` without ipamd, or from `DelNetwork`) leaves the
//! node as before; on a kernel without (`CONFIG_VLAN_8021Q` unset, as on this project's CI
//! VM) ADD fails cleanly, gives the address back (`SetupNSFailed`) and leaves nothing, and
//! DEL is run against the state a branch ADD leaves, made by hand (the VLAN link as a
//! macvlan of the same name).

mod support;

use std::sync::{Arc, Mutex};

use ec2_emulator::testing::TestNetns;
use rpc::{
    AddNetworkReply, AddNetworkRequest, CniBackend, CniBackendServer, DelNetworkReply,
    DelNetworkRequest, IpAllocationMetadata,
};
use serde_json::{Value, json};
use support::{Run, plugin};
use tonic::{Request, Response, Status};

const POD_IP: &str = "10.0.40.7";
const BRANCH_MAC: &str = "02:42:00:00:00:07";
const GW: &str = "10.0.32.1";
const ARGS: &str = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod";
/// `host_veth_name` of default/sample-pod with the strict and the standard prefix.
const STRICT_VETH: &str = "vlancc21c2d7785";
const STANDARD_VETH: &str = "enicc21c2d7785";

/// The stand-in ipamd for branch-ENI pods: records requests, answers as ipamd does for a
/// pod with the `vpc.amazonaws.com/pod-eni` annotation (spec 5.3, 5.4).
#[derive(Clone)]
struct BranchIpamd {
    trunk: i32,
    calls: Arc<Mutex<Vec<String>>>,
}

fn branch_ip() -> Vec<IpAllocationMetadata> {
    vec![IpAllocationMetadata {
        i_pv4_addr: POD_IP.into(),
        device_number: -1,
        route_table_id: 0,
        ..Default::default()
    }]
}

#[tonic::async_trait]
impl CniBackend for BranchIpamd {
    async fn add_network(
        &self,
        r: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        let r = r.into_inner();
        let call = format!(
            "AddNetwork {}/{} {}",
            r.k8s_pod_namespace, r.k8s_pod_name, r.container_id
        );
        self.calls.lock().unwrap().push(call);
        Ok(Response::new(AddNetworkReply {
            success: true,
            ip_allocation_metadata: branch_ip(),
            pod_vlan_id: 7,
            pod_enimac: BRANCH_MAC.into(),
            pod_eni_subnet_gw: GW.into(),
            parent_if_index: self.trunk,
            vp_cv4_cid_rs: vec!["10.0.0.0/16".into()],
            ..Default::default()
        }))
    }

    async fn del_network(
        &self,
        r: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let r = r.into_inner();
        let call = format!(
            "DelNetwork {}/{} {}",
            r.k8s_pod_namespace, r.k8s_pod_name, r.reason
        );
        self.calls.lock().unwrap().push(call);
        Ok(Response::new(DelNetworkReply {
            success: true,
            ip_allocation_metadata: branch_ip(),
            pod_vlan_id: 7,
            ..Default::default()
        }))
    }
}

/// A node with the trunk `eth2`, a pod namespace and the stand-in ipamd.
struct Bench {
    node: TestNetns,
    pod: TestNetns,
    dir: std::path::PathBuf,
    socket: String,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Bench {
    fn start(tag: &str) -> Bench {
        let node = TestNetns::new(&format!("cni-{tag}"));
        node.ip(&["link", "set", "lo", "up"]);
        node.ip(&[
            "link", "add", "eth2", "type", "veth", "peer", "name", "eth2p",
        ]);
        node.ip(&["link", "set", "eth2", "up"]);
        let trunk: Value = serde_json::from_str(&node.ip(&["-j", "link", "show", "eth2"])).unwrap();
        let trunk = i32::try_from(trunk[0]["ifindex"].as_i64().unwrap()).unwrap();
        let dir = std::env::temp_dir().join(format!("cni-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ipamd.sock");
        let calls = Arc::<Mutex<Vec<String>>>::default();
        let listener = rpc::server::bind_unix(&socket).unwrap();
        let ipamd = BranchIpamd {
            trunk,
            calls: calls.clone(),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CniBackendServer::new(ipamd))
                .serve_with_incoming(listener),
        );
        Bench {
            node,
            pod: TestNetns::new(&format!("cni-{tag}-p")),
            socket: socket.display().to_string(),
            dir,
            calls,
        }
    }

    fn conf(&self, mode: &str, prev: Option<&Value>) -> String {
        let mut conf = json!({"cniVersion": "0.4.0", "name": "aws-cni", "type": "aws-cni",
            "vethPrefix": "eni", "mtu": "9001", "podSGEnforcingMode": mode});
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf.to_string()
    }

    fn run(&self, command: &str, netns: &str, socket: &str, stdin: &str) -> Run {
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "csgp"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", netns),
            ("CNI_ARGS", ARGS),
            ("IPAMD_GRPC_SOCKET", socket),
        ];
        tokio::task::block_in_place(|| plugin(&self.node.0, &env, stdin))
    }

    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// `ip rule`, `ip route show table all`, and the links.
    fn text(&self) -> (String, String, String) {
        let n = &self.node;
        (
            n.ip(&["rule"]),
            n.ip(&["route", "show", "table", "all"]),
            n.ip(&["-o", "link"]),
        )
    }

    /// What the runtime does after DEL: the pod's namespace goes, its veth with it.
    async fn runtime_removes_pod_netns(&self, veth: &str) {
        self.pod.recreate();
        self.node.wait_link_gone(veth).await;
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kernel_has_vlans(b: &Bench) -> bool {
    let args = [
        "ip", "link", "add", "link", "eth2p", "name", "probe.7", "type", "vlan", "id", "7",
    ];
    let has = b.node.try_exec(&args, None).is_ok();
    if has {
        b.node.ip(&["link", "del", "probe.7"]);
    } else {
        eprintln!("this kernel has no 802.1Q VLANs: ADD is expected to fail cleanly");
    }
    has
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_add_takes_the_branch_path_and_del_from_prev_result_skips_ipamd() {
    let b = Bench::start("sgpadd");
    let before = b.text();
    let netns = b.pod.path();
    let add = b.run("ADD", &netns, &b.socket, &b.conf("strict", None));
    let calls = b.calls();
    assert_eq!(calls[0], "AddNetwork default/sample-pod csgp");
    if !kernel_has_vlans(&b) {
        assert_ne!(add.rc, 0, "{}", add.stdout);
        let err = add.json();
        assert!(err["msg"].as_str().unwrap().contains("vlan.eth.7"), "{err}");
        assert_eq!(
            calls[1..],
            ["DelNetwork default/sample-pod SetupNSFailed"],
            "the address went back"
        );
        b.runtime_removes_pod_netns(STRICT_VETH).await;
        assert_eq!(b.text(), before, "a failed branch ADD leaves nothing");
        return;
    }
    assert_eq!(add.rc, 0, "{} {}", add.stdout, add.stderr);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let result = add.json();
    assert_eq!(
        result["ips"][0],
        json!({"version": "4", "address": "10.0.40.7/32", "interface": 1, "gateway": GW})
    );
    assert_eq!(result["interfaces"][0]["name"], STRICT_VETH);
    assert_eq!(result["interfaces"][1]["mac"], "0");
    assert_eq!(
        result["interfaces"][2],
        json!({"name": "dummycc21c2d7785", "mac": "7"})
    );
    let rules = b.node.ip(&["rule"]);
    assert!(
        rules.contains(&format!("10:\tfrom all iif {STRICT_VETH} lookup 107")),
        "{rules}"
    );
    assert!(
        rules.contains("10:\tfrom all iif vlan.eth.7 lookup 107"),
        "{rules}"
    );

    // DEL from prevResult: ipamd is not asked (it holds nothing for a branch pod).
    let del = b.run("DEL", &netns, &b.socket, &b.conf("strict", Some(&result)));
    assert_eq!((del.rc, del.stdout.as_str()), (0, ""), "{}", del.stderr);
    assert!(b.calls().is_empty());
    b.runtime_removes_pod_netns(STRICT_VETH).await;
    assert_eq!(b.text(), before);

    // Standard mode, DEL without prevResult: from DelNetwork's PodVlanId.
    let add = b.run("ADD", &netns, &b.socket, &b.conf("standard", None));
    assert_eq!(add.rc, 0, "{} {}", add.stdout, add.stderr);
    assert_eq!(add.json()["interfaces"][0]["name"], STANDARD_VETH);
    let del = b.run("DEL", &netns, &b.socket, &b.conf("standard", None));
    assert_eq!(del.rc, 0, "{}", del.stdout);
    b.runtime_removes_pod_netns(STANDARD_VETH).await;
    assert_eq!(b.text(), before);
}

/// The host side a strict (or standard) branch ADD leaves, made with `ip` (the VLAN link as
/// a macvlan of the same name and MAC when the kernel has no 802.1Q).
fn branch_state_by_hand(b: &Bench, strict: bool) {
    let n = &b.node;
    let veth = if strict { STRICT_VETH } else { STANDARD_VETH };
    n.ip(&[
        "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", &b.pod.0,
    ]);
    n.ip(&["link", "set", veth, "up"]);
    let kind: &[&str] = if kernel_has_vlans(b) {
        &["vlan", "id", "7"]
    } else {
        &["macvlan"]
    };
    let mut add = vec![
        "link",
        "add",
        "link",
        "eth2",
        "name",
        "vlan.eth.7",
        "address",
        BRANCH_MAC,
        "type",
    ];
    add.extend(kind);
    n.ip(&add);
    n.ip(&["link", "set", "vlan.eth.7", "up"]);
    n.ip(&[
        "route",
        "replace",
        "10.0.32.1/32",
        "dev",
        "vlan.eth.7",
        "scope",
        "link",
        "table",
        "107",
    ]);
    n.ip(&[
        "route",
        "replace",
        "default",
        "via",
        GW,
        "dev",
        "vlan.eth.7",
        "table",
        "107",
    ]);
    if strict {
        n.ip(&[
            "route",
            "replace",
            "10.0.40.7/32",
            "dev",
            veth,
            "scope",
            "link",
            "table",
            "107",
        ]);
        n.ip(&[
            "rule",
            "add",
            "iif",
            "vlan.eth.7",
            "lookup",
            "107",
            "pref",
            "10",
        ]);
        n.ip(&["rule", "add", "iif", veth, "lookup", "107", "pref", "10"]);
    } else {
        n.ip(&[
            "route",
            "replace",
            "10.0.40.7/32",
            "dev",
            veth,
            "scope",
            "link",
        ]);
        n.ip(&["rule", "add", "to", POD_IP, "lookup", "main", "pref", "512"]);
        n.ip(&[
            "rule", "add", "from", POD_IP, "lookup", "107", "pref", "1536",
        ]);
    }
}

fn branch_prev_result(netns: &str, veth: &str) -> Value {
    json!({"cniVersion": "0.4.0",
        "interfaces": [{"name": veth}, {"name": "eth0", "sandbox": netns, "mac": "0"},
                       {"name": "dummycc21c2d7785", "mac": "7"}],
        "ips": [{"version": "4", "address": "10.0.40.7/32", "interface": 1, "gateway": GW}],
        "dns": {}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_del_without_ipamd_through_ipamd_and_across_a_mode_switch() {
    let b = Bench::start("sgpdel");
    let before = b.text();
    let netns = b.pod.path();

    // Wired strict, deleted by a plugin now configured standard, ipamd gone: prevResult.
    branch_state_by_hand(&b, true);
    let prev = branch_prev_result(&netns, STRICT_VETH);
    let del = b.run(
        "DEL",
        &netns,
        "/nonexistent/ipamd.sock",
        &b.conf("standard", Some(&prev)),
    );
    assert_eq!((del.rc, del.stdout.as_str()), (0, ""), "{}", del.stderr);
    let (rules, routes, _) = b.text();
    assert_eq!((rules, routes), (before.0.clone(), before.1.clone()));
    b.runtime_removes_pod_netns(STRICT_VETH).await;
    assert_eq!(b.text(), before);

    // Wired standard, deleted in strict mode without prevResult: DelNetwork's PodVlanId.
    branch_state_by_hand(&b, false);
    let del = b.run("DEL", &netns, &b.socket, &b.conf("strict", None));
    assert_eq!((del.rc, del.stdout.as_str()), (0, ""), "{}", del.stderr);
    assert_eq!(b.calls(), ["DelNetwork default/sample-pod PodDeleted"]);
    let (rules, routes, _) = b.text();
    assert_eq!((rules, routes), (before.0.clone(), before.1.clone()));
    b.runtime_removes_pod_netns(STANDARD_VETH).await;
    assert_eq!(b.text(), before);

    // No network namespace: nothing to do, from prevResult, ipamd not asked.
    branch_state_by_hand(&b, true);
    let wired = b.text();
    let del = b.run("DEL", "", &b.socket, &b.conf("strict", Some(&prev)));
    assert_eq!(del.rc, 0, "{}", del.stdout);
    assert!(b.calls().is_empty());
    assert_eq!(b.text(), wired, "left alone");

    // A malformed VLAN id in prevResult is a DEL error (upstream).
    let mut bad = prev.clone();
    bad["interfaces"][2]["mac"] = json!("seven");
    let del = b.run("DEL", &netns, &b.socket, &b.conf("strict", Some(&bad)));
    assert_ne!(del.rc, 0);
    assert!(
        del.json()["msg"]
            .as_str()
            .unwrap()
            .contains("malformed vlanID"),
        "{}",
        del.stdout
    );
}
