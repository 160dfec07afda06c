//! Security groups for pods with both halves together (docs/security-groups-for-pods.md):
//! the real agent (`ipamd::agent`, started in-process with
//! `ipamd::testing::spawn_accepting_unbuilt`, since the binary still refuses
//! `ENABLE_POD_ENI=true`) with host networking in a node namespace, the EC2 emulator
//! hot-plugging ENIs there and playing the VPC Resource Controller over its control API
//! (`POST /control/branch-eni`: the trunk ENI, a branch ENI, the pod annotation), the
//! Kubernetes API stand-in holding the Node, its CNINode and the pods, and the real
//! `aws-cni` binary exec'd for a branch pod and a regular pod beside it.
//!
//! On a kernel with 802.1Q the branch ADD wires the pod and DEL leaves the node as before.
//! On one without (`CONFIG_VLAN_8021Q` unset, this project's CI VM), ipamd's branch reply
//! reaches the plugin, which fails at the VLAN link with the kernel's "not supported", gives
//! the address back (`DelNetwork`, `SetupNSFailed`) and leaves nothing behind.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ec2_emulator::server;
use integration_tests::agent::options;
use integration_tests::plugin::{CONF, cni_env, plugin, settled, snapshot};
use integration_tests::{EmulatedNode, TestNetns, free_addr};
use ipamd::agent::HostNetOptions;
use ipamd::testing::{config, connect, spawn_accepting_unbuilt, test_dir};
use k8s::testing::FakeApiServer;
use serde_json::{Value, json};

const NODE: &str = "ip-10-0-0-4.us-west-2.compute.internal";
const POD_SUBNET: &str = "10.0.32.0/19";
/// As containerd passes them (with the pod's UID).
const BRANCH_ARGS: &str = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=db;K8S_POD_UID=uid-db";
const REGULAR_ARGS: &str = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=uid-web";
/// `host_veth_name` of default/db with the strict prefix.
const BRANCH_VETH_PREFIX: &str = "vlan";

/// A pod of the node; a branch pod has the controller's resource in its first container's
/// limits and `annotation`.
fn pod(name: &str, annotation: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "app"}]}});
    if let Some(a) = annotation {
        p["spec"]["containers"][0]["resources"] =
            json!({"limits": {"vpc.amazonaws.com/pod-eni": "1"}});
        p["metadata"]["annotations"] = json!({"vpc.amazonaws.com/pod-eni": a});
    }
    p
}

/// One HTTP/1.1 request to `endpoint` (`http://host:port`): (status, body).
fn http(endpoint: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // A chunked body: keep only the JSON.
    let body = match (body.find(['{', '[']), body.rfind(['}', ']'])) {
        (Some(a), Some(b)) if a <= b => &body[a..=b],
        _ => body,
    };
    (status, body.to_string())
}

/// The pods (`IPAMMetadata.k8sPodName`; introspection scrubs container IDs) the agent's
/// introspection shows holding an address, and its `AssignedIPs`.
fn held_by(introspection: &str) -> (Vec<String>, u64) {
    let (status, body) = http(introspection, "GET", "/v1/enis", "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut held = Vec::new();
    let mut assigned = 0;
    for card in v.as_object().unwrap().values() {
        assigned += card["AssignedIPs"].as_u64().unwrap();
        for eni in card["ENIs"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.values())
        {
            for cidr in eni["AvailableIPv4Cidrs"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
            {
                for a in cidr["IPAddresses"]
                    .as_object()
                    .into_iter()
                    .flat_map(|m| m.values())
                {
                    let pod = a["IPAMMetadata"]["k8sPodName"].as_str().unwrap_or_default();
                    if !pod.is_empty() {
                        held.push(pod.to_string());
                    }
                }
            }
        }
    }
    (held, assigned)
}

fn features(api: &FakeApiServer) -> Value {
    api.get("vpcresources.k8s.aws/v1alpha1", "CNINode", "", NODE)
        .map(|c| c["spec"]["features"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipamds_branch_reply_reaches_the_real_plugin_and_a_failed_add_leaves_nothing() {
    let node = TestNetns::new("sgp-halves");
    let emulated = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    node.add_primary_interface(&emulated.primary_mac, emulated.primary_ip);
    node.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
    let (pod_subnet, db_sg) = {
        let mut emu = server::lock(&emulated.emu);
        emu.set_hotplug(&emulated.instance_id, &node.0);
        let az = emu
            .world
            .instance(&emulated.instance_id)
            .unwrap()
            .availability_zone
            .clone();
        let subnet = emu
            .world
            .create_subnet(&emulated.vpc_id, POD_SUBNET.parse().unwrap(), &az)
            .unwrap();
        let sg = emu.world.create_security_group(&emulated.vpc_id, "db");
        (subnet, sg)
    };
    let api = FakeApiServer::start().await.unwrap();
    api.apply(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
        "status": {"capacity": {"pods": "29"}}}),
    );
    api.apply(
        json!({"apiVersion": "vpcresources.k8s.aws/v1alpha1", "kind": "CNINode",
        "metadata": {"name": NODE}, "spec": {"features": []}}),
    );

    let dir = test_dir("cni", "sgp-halves");
    let socket = dir.join("ipamd.sock");
    let cfg = config(
        &emulated.ec2_endpoint,
        &dir.join("ipam.json"),
        &[
            ("ENABLE_POD_ENI", "true"),
            ("MY_NODE_NAME", NODE),
            ("CLUSTER_ENDPOINT", &api.url()),
        ],
    );
    let introspection = free_addr();
    let mut opts = options(socket.clone(), &emulated.imds_endpoint);
    opts.introspection_addr = Some(introspection.into());
    opts.host_network = Some(HostNetOptions {
        netns: Some(node.path().into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    let mut agent = spawn_accepting_unbuilt(cfg, opts);
    let _client = connect(&socket, &mut agent, 200).await;
    let introspection = format!("http://{introspection}");

    // ipamd asks for the trunk; the controller attaches it and gives the pod a branch ENI.
    for _ in 0..300 {
        if features(&api) == json!([{"name": "SecurityGroupsForPods"}]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(features(&api), json!([{"name": "SecurityGroupsForPods"}]));
    let req = json!({"instance_id": emulated.instance_id, "subnet_id": pod_subnet,
        "security_groups": [db_sg]});
    let (status, body) = http(
        &emulated.ec2_endpoint,
        "POST",
        "/control/branch-eni",
        &req.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let branch: Value = serde_json::from_str(&body).unwrap();
    let vlan = branch["vlan_id"].as_u64().unwrap();
    let branch_ip = branch["private_ip"].as_str().unwrap().to_string();
    api.apply(pod("db", Some(branch["annotation"].as_str().unwrap())));
    api.apply(pod("web", None));

    let sock = socket.display().to_string();
    let run =
        |env: &[(&str, &str)]| tokio::task::block_in_place(|| plugin(Some(&node.0), env, CONF));
    let branch_ns = TestNetns::new("sgp-halves-db");
    let branch_path = branch_ns.path();
    let pod_before = snapshot(&branch_ns).await;

    // The branch ADD, retried while ipamd has not found the trunk yet (kubelet retries too).
    let mut add = run(&cni_env("ADD", "c-db", &branch_path, BRANCH_ARGS, &sock));
    for _ in 0..100 {
        if add.rc == 0 || !add.stdout.contains("no trunk ENI") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        add = run(&cni_env("ADD", "c-db", &branch_path, BRANCH_ARGS, &sock));
    }
    let node_before = settled(&node).await;
    let add = run(&cni_env("ADD", "c-db", &branch_path, BRANCH_ARGS, &sock));
    let vlan_link = format!("vlan.eth.{vlan}");
    if add.rc == 0 {
        // A kernel with 802.1Q: the pod is wired on the VLAN, and DEL undoes it.
        let result = add.json();
        assert_eq!(
            result["ips"][0]["address"],
            format!("{branch_ip}/32"),
            "{result}"
        );
        assert!(node.has_link(&vlan_link));
        let mut conf: Value = serde_json::from_str(CONF).unwrap();
        conf["prevResult"] = result.clone();
        let del = tokio::task::block_in_place(|| {
            plugin(
                Some(&node.0),
                &cni_env("DEL", "c-db", &branch_path, BRANCH_ARGS, &sock),
                &conf.to_string(),
            )
        });
        assert_eq!(del.rc, 0, "{}", del.stdout);
        let veth = result["interfaces"][0]["name"].as_str().unwrap();
        integration_tests::plugin::runtime_removes_netns(&branch_ns, &node, veth).await;
    } else {
        eprintln!("branch ADD on a kernel without 802.1Q: {}", add.stdout);
        let err = add.json();
        let msg = err["msg"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(&vlan_link), "names the VLAN link: {err}");
        assert!(
            msg.to_lowercase().contains("not supported"),
            "the kernel's cause: {err}"
        );
        assert!(
            msg.contains(&format!("address {branch_ip} given back to ipamd")),
            "DelNetwork was given and answered: {err}"
        );
        assert_eq!(snapshot(&branch_ns).await, pod_before, "the pod as before");
    }
    let node_after = snapshot(&node).await;
    assert_eq!(node_after.links, node_before.links, "no host link left");
    assert_eq!(node_after.rules, node_before.rules, "no rule left");
    assert_eq!(node_after.routes, node_before.routes, "no route left");
    assert!(
        !node_after
            .links
            .iter()
            .any(|l| l.name.starts_with(BRANCH_VETH_PREFIX)),
        "{:?}",
        node_after.links
    );
    assert_eq!(held_by(&introspection), (vec![], 0), "ipamd holds nothing");

    // A regular pod beside it, through the same agent and plugin.
    let web_ns = TestNetns::new("sgp-halves-web");
    let web_path = web_ns.path();
    let add = run(&cni_env("ADD", "c-web", &web_path, REGULAR_ARGS, &sock));
    assert_eq!(add.rc, 0, "{} {}", add.stdout, add.stderr);
    let result = add.json();
    let ip = result["ips"][0]["address"].as_str().unwrap();
    assert!(ip.starts_with("10.0.0.") && ip.ends_with("/32"), "{result}");
    assert_eq!(held_by(&introspection), (vec!["web".to_string()], 1));
    let del = run(&cni_env("DEL", "c-web", &web_path, REGULAR_ARGS, &sock));
    assert_eq!(del.rc, 0, "{}", del.stdout);
    assert_eq!(held_by(&introspection), (vec![], 0));

    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
