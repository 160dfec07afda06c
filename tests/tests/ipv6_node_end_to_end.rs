//! An IPv6 node end to end (docs/ipv6.md): the real agent in IPv6 mode against the dual-stack
//! emulator, host networking in a node namespace made by the test, and pods added and deleted
//! through the real `aws-cni` binary. The pods get `/128`s from the primary ENI's `/80`; an
//! agent restart keeps every pod's address (the checkpoint's `ipv6` rows come back, the same
//! sandbox gets the same address, a new pod gets a fresh one); DEL through the plugin leaves
//! the node exactly as it was before the first ADD.

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

use integration_tests::agent::{AgentTask, add, connect, options, spawn, test_dir};
use integration_tests::plugin::{CONF, cni_env, plugin, runtime_removes_netns, settled};
use integration_tests::{EmulatedNode, TestNetns};
use ipamd::agent::HostNetOptions;
use ipnet::Ipv6Net;
use rpc::CniBackendClient;
use serde_json::Value;
use tonic::transport::Channel;

const IPV6_MODE: [(&str, &str); 3] = [
    ("ENABLE_IPv6", "true"),
    ("ENABLE_IPv4", "false"),
    ("ENABLE_PREFIX_DELEGATION", "true"),
];

/// The agent in IPv6 mode on `node`, its checkpoint in `dir`; a client once it serves.
async fn start_agent(
    emulated: &EmulatedNode,
    node: &TestNetns,
    dir: &Path,
) -> (AgentTask, CniBackendClient<Channel>) {
    let cfg = ipamd::testing::config(&emulated.ec2_endpoint, &dir.join("ipam.json"), &IPV6_MODE);
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

/// The node's links, both families' addresses, routes, rules and permanent neighbours, and
/// its firewall: what DEL has to restore.
fn node_view(node: &TestNetns) -> String {
    let mut s = node.ip(&["-o", "link", "show"]);
    for family in ["-4", "-6"] {
        s += &node.ip(&[family, "-o", "addr", "show"]);
        s += &node.ip(&[family, "route", "show", "table", "all"]);
        s += &node.ip(&[family, "rule", "show"]);
        s += &node.ip(&[family, "neigh", "show", "nud", "permanent"]);
    }
    for save in ["iptables-save", "ip6tables-save"] {
        s += &node
            .exec_ok(&[save])
            .lines()
            .filter(|l| !l.starts_with(['#', ':']))
            .collect::<Vec<_>>()
            .join("\n");
    }
    s
}

/// `(containerID, ipv6)` of every checkpoint row, sorted.
fn checkpoint_rows(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join("ipam.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut rows: Vec<(String, String)> = doc["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r.get("ipv4").is_none(), "IPv6 rows only: {r}");
            (
                r["containerID"].as_str().unwrap().to_string(),
                r["ipv6"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_pods_through_aws_cni_keep_their_addresses_across_a_restart_and_del_restores_the_node()
{
    let node = TestNetns::new("v6e2e");
    let emulated = EmulatedNode::start_dual_stack("m5.large", "10.0.0.0/24").await;
    let node_v6 = emulated.primary_ipv6.expect("a primary IPv6 address");
    node.add_primary_interface(&emulated.primary_mac, emulated.primary_ip);
    node.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{node_v6}/64"),
        "dev",
        "eth0",
        "nodad",
    ]);
    node.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    ec2_emulator::server::lock(&emulated.emu).set_hotplug(&emulated.instance_id, &node.0);
    let dir = test_dir("cni", "v6e2e");
    let (agent, _) = start_agent(&emulated, &node, &dir).await;
    settled(&node).await;
    let before = node_view(&node);

    let socket = dir.join("ipamd.sock").display().to_string();
    let pods: Vec<TestNetns> = (0..4)
        .map(|i| TestNetns::new(&format!("v6e2e-p{i}")))
        .collect();
    let paths: Vec<String> = pods.iter().map(TestNetns::path).collect();
    let cids: Vec<String> = (0..4).map(|i| format!("container-{i}")).collect();
    let args: Vec<String> = (0..4)
        .map(|i| format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-{i}"))
        .collect();
    let run = |command: &str, i: usize| {
        let env = cni_env(command, &cids[i], &paths[i], &args[i], &socket);
        let out = tokio::task::block_in_place(|| plugin(Some(&node.0), &env, CONF));
        assert_eq!(
            out.rc, 0,
            "{command} pod {i}: {} {}",
            out.stdout, out.stderr
        );
        out.stdout
    };
    let add_pod = |i: usize| -> Ipv6Addr {
        let result: Value = serde_json::from_str(&run("ADD", i)).unwrap();
        let addr = result["ips"][0]["address"].as_str().unwrap();
        let net: Ipv6Net = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert_eq!(net.prefix_len(), 128, "{result}");
        let pod_addrs = pods[i].ip(&["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"]);
        assert!(pod_addrs.contains(&format!("{addr} ")), "{pod_addrs}");
        net.addr()
    };

    // Three pods: /128s in order from the start of the primary ENI's /80.
    let ips: Vec<Ipv6Addr> = (0..3).map(add_pod).collect();
    let prefix = Ipv6Net::new(ips[0], 80).unwrap().trunc();
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(u128::from(*ip) - u128::from(prefix.network()), i as u128);
    }
    assert!(emulated.vpc_ipv6_cidr.unwrap().contains(&prefix));
    let rows: Vec<(String, String)> = (0..3)
        .map(|i| (cids[i].clone(), ips[i].to_string()))
        .collect();
    assert_eq!(checkpoint_rows(&dir), rows);

    // Restart: every pod's host veth is there, so every address comes back.
    agent.abort();
    let _ = agent.await;
    let (agent, mut client) = start_agent(&emulated, &node, &dir).await;
    assert_eq!(checkpoint_rows(&dir), rows, "restored as checkpointed");
    // The same sandboxes, last first: an agent that had lost them would hand out the
    // prefix's first address to pod 2.
    for (i, ip) in ips.iter().enumerate().rev() {
        let reply = client.add_network(add(i)).await.unwrap().into_inner();
        assert!(reply.success, "{reply:?}");
        assert_eq!(
            reply.ip_allocation_metadata[0].i_pv6_addr,
            ip.to_string(),
            "pod {i} keeps its address"
        );
    }
    let fresh = add_pod(3);
    assert!(prefix.contains(&fresh) && !ips.contains(&fresh), "{fresh}");

    // DEL through the plugin, the runtime removes each namespace: the node is as before.
    for (i, pod) in pods.iter().enumerate() {
        assert_eq!(run("DEL", i), "");
        let veth = net::names::host_veth_name("eni", "default", &format!("pod-{i}"), 0);
        runtime_removes_netns(pod, &node, &veth).await;
    }
    assert_eq!(checkpoint_rows(&dir), []);
    assert_eq!(node_view(&node), before, "DEL restores the node");
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
    let _ = agent.await;
    let _ = std::fs::remove_dir_all(&dir);
}
