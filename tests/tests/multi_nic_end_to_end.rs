//! Multi-NIC end to end (docs/ipamd.md "Multi-NIC", docs/cni-plugin.md "Multi-homed pods";
//! spec 3.9, 5.3, 6.2–6.5, 7.3): the real agent with `ENABLE_MULTI_NIC=true` against the
//! emulator on an instance type of two network cards, host networking in a node namespace
//! made by the test, and pods added and deleted through the real `aws-cni` binary. A pod
//! annotated `k8s.amazonaws.com/nicConfig: multi-nic-attachment` gets `eth0` with an address
//! of card 0 and `mNicIf1` with one of card 1, whose traffic leaves by the card-1 ENI's link
//! (table 10000 + d + 100·c); a pod beside it without the annotation gets one interface; an
//! agent restart keeps both addresses; DEL leaves the node as it was. Switched off, the
//! opted-in pod's ADD fails and leaves nothing behind.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use ec2_emulator::model::InstanceTypeInfo;
use ec2_emulator::server;
use integration_tests::agent::{AgentTask, add, connect, options, spawn, test_dir};
use integration_tests::plugin::{cni_env, plugin, runtime_removes_netns, settled};
use integration_tests::{EmulatedNode, TestNetns};
use ipamd::agent::HostNetOptions;
use rpc::CniBackendClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// Outside the VPC: where pod traffic is routed to in the route lookups.
const OUTSIDE: &str = "192.0.2.10";

/// A type outside the limits table: card 0 with 3 ENIs, card 1 with 2, 10 IPv4 addresses
/// per ENI (9 for pods).
fn two_cards() -> InstanceTypeInfo {
    let mut ty = InstanceTypeInfo::single_card("x9mn.xlarge", 3, 10);
    ty.cards = BTreeMap::from([(0, 3), (1, 2)]);
    ty
}

/// The node: its primary interface, a default route by it, forwarding on, the emulator
/// hot-plugging the instance's other ENIs into it.
async fn start_node(tag: &str) -> (TestNetns, EmulatedNode) {
    let node = TestNetns::new(tag);
    let emulated = EmulatedNode::start_unlisted(two_cards(), "10.0.0.0/24").await;
    node.add_primary_interface(&emulated.primary_mac, emulated.primary_ip);
    node.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
    node.exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    server::lock(&emulated.emu).set_hotplug(&emulated.instance_id, &node.0);
    (node, emulated)
}

/// The agent on `node` (multi-NIC as asked), its checkpoints in `dir`; a client once it
/// serves. Card 0 keeps 4 addresses warm, so that the test's pods need no second ENI there.
async fn start_agent(
    emulated: &EmulatedNode,
    node: &TestNetns,
    dir: &Path,
    multi_nic: bool,
) -> (AgentTask, CniBackendClient<Channel>) {
    let env = [
        ("ENABLE_MULTI_NIC", if multi_nic { "true" } else { "false" }),
        ("WARM_IP_TARGET", "4"),
    ];
    let cfg = ipamd::testing::config(&emulated.ec2_endpoint, &dir.join("ipam.json"), &env);
    let socket = dir.join("ipamd.sock");
    let mut opts = options(socket.clone(), &emulated.imds_endpoint);
    opts.host_network = Some(HostNetOptions {
        netns: Some(node.path().into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    let mut task = spawn(cfg, opts);
    let client = connect(&socket, &mut task, 200).await;
    (task, client)
}

/// ENIs attached on `card`, as EC2 sees them: (id, device index, primary, secondaries).
fn enis_on(emulated: &EmulatedNode, card: u32) -> Vec<(String, u32, Ipv4Addr, Vec<Ipv4Addr>)> {
    let emu = server::lock(&emulated.emu);
    emu.world
        .attached_enis(&emulated.instance_id)
        .iter()
        .filter_map(|e| {
            let a = e.attachment.as_ref()?;
            (a.network_card == card).then(|| {
                let secondaries = e.secondary_ips.iter().copied().collect();
                (e.id.clone(), a.device_index, e.primary_ip, secondaries)
            })
        })
        .collect()
}

/// The card (0 or 1) whose ENIs hold `ip` as a secondary address.
fn card_of(emulated: &EmulatedNode, ip: Ipv4Addr) -> Option<u32> {
    [0, 1]
        .into_iter()
        .find(|card| enis_on(emulated, *card).iter().any(|e| e.3.contains(&ip)))
}

/// Waits until card 0 has its warm addresses and card 1 an ENI with a free address.
async fn wait_for_both_cards(emulated: &EmulatedNode) {
    for _ in 0..150 {
        let card0: usize = enis_on(emulated, 0).iter().map(|e| e.3.len()).sum();
        let card1: usize = enis_on(emulated, 1).iter().map(|e| e.3.len()).sum();
        if card0 >= 4 && card1 >= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the pools of both cards never filled");
}

/// The node's links, addresses, routes, rules and permanent neighbours, and its firewall:
/// what DEL has to restore.
fn node_view(node: &TestNetns) -> String {
    let mut s = node.ip(&["-o", "link", "show"]);
    s += &node.ip(&["-4", "-o", "addr", "show"]);
    s += &node.ip(&["-4", "route", "show", "table", "all"]);
    s += &node.ip(&["-4", "rule", "show"]);
    s += &node.ip(&["-4", "neigh", "show", "nud", "permanent"]);
    s += &node
        .exec_ok(&["iptables-save"])
        .lines()
        .filter(|l| !l.starts_with(['#', ':']))
        .collect::<Vec<_>>()
        .join("\n");
    s
}

/// `containerID → ipv4` of a checkpoint file (`ipam.json`: card 0, `ipam-nic-1.json`: card 1).
fn checkpoint(dir: &Path, file: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["containerID"].as_str().unwrap().to_string(),
                r["ipv4"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The conflist entry, the runtime's pod annotations opting the pod in to multi-NIC or not.
fn conf(opted_in: bool) -> String {
    let annotations = if opted_in {
        json!({"k8s.amazonaws.com/nicConfig": "multi-nic-attachment"})
    } else {
        json!({"kubernetes.io/config.source": "api"})
    };
    json!({"cniVersion": "1.0.0", "name": "aws-cni", "type": "aws-cni", "vethPrefix": "eni",
        "mtu": "9001", "runtimeConfig": {"io.kubernetes.cri.pod-annotations": annotations}})
    .to_string()
}

/// Pods `pod-<i>` (container `container-<i>`), each in its own namespace, run through the
/// real plugin in the node namespace.
struct Pods<'a> {
    node: &'a TestNetns,
    socket: String,
    netns: Vec<TestNetns>,
}

impl Pods<'_> {
    /// `aws-cni` `command` for pod `i`: (exit status, stdout, stderr).
    fn run(&self, command: &str, i: usize, opted_in: bool) -> (i32, String, String) {
        let (cid, args) = (
            format!("container-{i}"),
            format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-{i}"),
        );
        let path = self.netns[i].path();
        let env = cni_env(command, &cid, &path, &args, &self.socket);
        let out = tokio::task::block_in_place(|| plugin(Some(&self.node.0), &env, &conf(opted_in)));
        (out.rc, out.stdout, out.stderr)
    }

    /// ADD, which must succeed: the result.
    fn add(&self, i: usize, opted_in: bool) -> Value {
        let (rc, stdout, stderr) = self.run("ADD", i, opted_in);
        assert_eq!(rc, 0, "ADD pod {i}: {stdout} {stderr}");
        serde_json::from_str(&stdout).unwrap()
    }

    /// DEL, which must succeed; then the runtime removes the namespace and its veths go.
    async fn del(&self, i: usize, interfaces: u32) {
        let (rc, stdout, stderr) = self.run("DEL", i, false);
        assert_eq!((rc, stdout.as_str()), (0, ""), "DEL pod {i}: {stderr}");
        runtime_removes_netns(&self.netns[i], self.node, &host_veth(i, 0)).await;
        for index in 1..interfaces {
            self.node.wait_link_gone(&host_veth(i, index)).await;
        }
    }

    /// The pod's global IPv4 addresses on `dev`.
    fn addresses(&self, i: usize, dev: &str) -> Vec<Ipv4Addr> {
        self.netns[i]
            .ip(&["-4", "-o", "addr", "show", "dev", dev, "scope", "global"])
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
            .collect()
    }
}

fn host_veth(i: usize, index: u32) -> String {
    net::names::host_veth_name("eni", "default", &format!("pod-{i}"), index)
}

/// The addresses of the result's `ips`.
fn result_ips(result: &Value) -> Vec<Ipv4Addr> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| {
            let a = ip["address"].as_str().unwrap();
            a.trim_end_matches("/32").parse().unwrap()
        })
        .collect()
}

/// The node's route lookup for a packet from `src` arriving on `iif` to [`OUTSIDE`].
fn route_from(node: &TestNetns, src: Ipv4Addr, iif: &str) -> String {
    node.ip(&[
        "-4",
        "route",
        "get",
        OUTSIDE,
        "from",
        &src.to_string(),
        "iif",
        iif,
    ])
}

/// The opted-in pod 0 (two addresses, one per card) and pod 1 without the annotation.
fn assert_multi_homed(pods: &Pods, emulated: &EmulatedNode, node: &TestNetns) -> Vec<Ipv4Addr> {
    let result = pods.add(0, true);
    let ips = result_ips(&result);
    assert_eq!(ips.len(), 2, "one address per card: {result}");
    assert_eq!(pods.addresses(0, "eth0"), [ips[0]]);
    assert_eq!(pods.addresses(0, "mNicIf1"), [ips[1]]);
    assert_eq!(card_of(emulated, ips[0]), Some(0), "{ips:?}");
    assert_eq!(card_of(emulated, ips[1]), Some(1), "{ips:?}");
    // The pod: the second address leaves by mNicIf1 (its table 1).
    let pod_rules = pods.netns[0].ip(&["-4", "rule", "show"]);
    assert!(
        pod_rules.contains(&format!("1:\tfrom {} lookup 1", ips[1])),
        "{pod_rules}"
    );
    let pod_route = pods.netns[0].ip(&["-4", "route", "get", OUTSIDE, "from", &ips[1].to_string()]);
    assert!(pod_route.contains("dev mNicIf1"), "{pod_route}");

    // The node: the card-1 ENI's table 10000 + d + 100·c, its rule, the pod's rules.
    let card1 = enis_on(emulated, 1);
    assert_eq!(card1.len(), 1, "{card1:?}");
    let (device, card1_primary) = (card1[0].1, card1[0].2);
    let table = (10_000 + device + 100).to_string();
    let link = ec2_emulator::hotplug::link_name(1, device);
    let routes = node.ip(&["-4", "route", "show", "table", &table]);
    assert!(
        routes.contains(&format!("default via 10.0.0.1 dev {link}")),
        "table {table}: {routes}"
    );
    let rules = node.ip(&["-4", "rule", "show"]);
    for want in [
        format!("from {card1_primary} lookup {table}"),
        format!("512:\tfrom all to {} lookup main", ips[1]),
        format!("1536:\tfrom {} lookup {table}", ips[1]),
        format!("512:\tfrom all to {} lookup main", ips[0]),
    ] {
        assert!(rules.contains(&want), "{want}: {rules}");
    }
    // The second address's traffic leaves by the card-1 ENI, the first's by eth0 (main).
    let second = route_from(node, ips[1], &host_veth(0, 1));
    assert!(
        second.contains(&format!("dev {link} table {table}")),
        "{second}"
    );
    let first = route_from(node, ips[0], &host_veth(0, 0));
    assert!(first.contains("via 10.0.0.1 dev eth0"), "{first}");
    assert!(!first.contains("table"), "main: {first}");

    // A pod beside it without the annotation: one interface, an address of card 0.
    let single = result_ips(&pods.add(1, false));
    assert_eq!(single.len(), 1, "{single:?}");
    assert_eq!(card_of(emulated, single[0]), Some(0));
    assert!(!pods.netns[1].has_link("mNicIf1"));
    assert_eq!(pods.addresses(1, "eth0"), single);
    ips
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_homed_pod_gets_an_address_per_card_keeps_both_across_a_restart_and_del_restores_the_node()
 {
    let (node, emulated) = start_node("mnice2e").await;
    let dir = test_dir("cni", "mnice2e");
    let (agent, _) = start_agent(&emulated, &node, &dir, true).await;
    wait_for_both_cards(&emulated).await;
    settled(&node).await;
    let before = node_view(&node);
    let pods = Pods {
        node: &node,
        socket: dir.join("ipamd.sock").display().to_string(),
        netns: (0..2)
            .map(|i| TestNetns::new(&format!("mnice2e-p{i}")))
            .collect(),
    };

    let ips = assert_multi_homed(&pods, &emulated, &node);
    let card0 = checkpoint(&dir, "ipam.json");
    let card1 = checkpoint(&dir, "ipam-nic-1.json");
    assert_eq!(card0.get("container-0"), Some(&ips[0].to_string()));
    assert_eq!(card1.get("container-0"), Some(&ips[1].to_string()));
    assert_eq!(card1.len(), 1, "{card1:?}");

    // The single pod goes: the multi-homed one keeps both addresses.
    pods.del(1, 1).await;
    assert!(!checkpoint(&dir, "ipam.json").contains_key("container-1"));

    // Restart: the pod's veths are there, so both cards keep its address, past the sweep
    // of allocations whose veth is gone (ipamd::stale_pods::SWEEP_AFTER).
    agent.abort();
    let _ = agent.await;
    let (agent, mut client) = start_agent(&emulated, &node, &dir, true).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(checkpoint(&dir, "ipam.json").len(), 1);
    assert_eq!(
        checkpoint(&dir, "ipam-nic-1.json"),
        BTreeMap::from([("container-0".to_string(), ips[1].to_string())])
    );
    let again = rpc::AddNetworkRequest {
        requires_multi_nic_attachment: true,
        ..add(0)
    };
    let reply = client.add_network(again).await.unwrap().into_inner();
    assert!(reply.success, "{reply:?}");
    let kept: Vec<String> = reply
        .ip_allocation_metadata
        .iter()
        .map(|m| m.i_pv4_addr.clone())
        .collect();
    assert_eq!(
        kept,
        [ips[0].to_string(), ips[1].to_string()],
        "the same sandbox"
    );

    // DEL after the restart: both addresses released, the node as before the first ADD.
    pods.del(0, 2).await;
    assert_eq!(checkpoint(&dir, "ipam.json"), BTreeMap::new());
    assert_eq!(checkpoint(&dir, "ipam-nic-1.json"), BTreeMap::new());
    assert_eq!(node_view(&node), before, "DEL restores the node");
    let (rc, stdout, stderr) = pods.run("DEL", 0, false);
    assert_eq!((rc, stdout.as_str()), (0, ""), "a repeated DEL: {stderr}");
    assert_eq!(node_view(&node), before, "a repeated DEL changes nothing");
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
    let _ = agent.await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_an_opted_in_pods_add_fails_and_leaves_nothing() {
    let (node, emulated) = start_node("mnicoff").await;
    let dir = test_dir("cni", "mnicoff");
    let (agent, _) = start_agent(&emulated, &node, &dir, false).await;
    settled(&node).await;
    assert!(enis_on(&emulated, 1).is_empty(), "card 1 is not managed");
    let before = node_view(&node);
    let pods = Pods {
        node: &node,
        socket: dir.join("ipamd.sock").display().to_string(),
        netns: vec![TestNetns::new("mnicoff-p0")],
    };
    let pod_before = pods.netns[0].ip(&["-o", "link", "show"]);

    let (rc, stdout, stderr) = pods.run("ADD", 0, true);
    assert_ne!(rc, 0, "{stdout} {stderr}");
    let error: Value = serde_json::from_str(&stdout).unwrap();
    assert!(error["msg"].is_string(), "{error}");
    node.wait_link_gone(&host_veth(0, 0)).await;
    assert_eq!(node_view(&node), before, "nothing left on the node");
    assert_eq!(
        pods.netns[0].ip(&["-o", "link", "show"]),
        pod_before,
        "nor in the pod"
    );
    assert_eq!(
        checkpoint(&dir, "ipam.json"),
        BTreeMap::new(),
        "no address taken"
    );

    // The same pod without the annotation is served: nothing of the first ADD is in its way.
    let ips = result_ips(&pods.add(0, false));
    assert_eq!(card_of(&emulated, ips[0]), Some(0));
    pods.del(0, 1).await;
    assert_eq!(node_view(&node), before);
    agent.abort();
    let _ = agent.await;
    let _ = std::fs::remove_dir_all(&dir);
}
