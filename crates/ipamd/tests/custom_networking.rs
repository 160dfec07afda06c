//! Custom networking end to end: the EC2 emulator, a scripted Kubernetes API server at HTTP
//! level (`k8s::testing::FakeApiServer`), the whole agent. The node is labelled with its
//! zone and `ENI_CONFIG_LABEL_DEF=topology.kubernetes.io/zone` picks the ENIConfig of that
//! name: new ENIs go to its subnet with its security groups, pods get addresses from it and
//! none from the primary ENI, their IPs are annotated on the pods; losing the API server for
//! a minute changes nothing for pods; a missing ENIConfig is an error and a Node event.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use ec2_emulator::server;
use ipnet::Ipv4Net;
use k8s::testing::FakeApiServer;
use serde_json::{Value, json};
use support::{Harness, add, add_pod, del_pod, free_port, http_get};

const NODE: &str = "ip-10-0-0-4.us-west-2.compute.internal";
const ZONE: &str = "us-west-2a";

fn node(zone_label: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": NODE, "labels": {"topology.kubernetes.io/zone": zone_label}},
           "status": {"capacity": {"pods": "29"}}})
}

fn pod(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("pod-{i}"), "namespace": "default"},
           "spec": {"nodeName": NODE}})
}

/// A pod subnet and a pod security group next to the node's, and an ENIConfig naming them.
fn pod_network(h: &Harness) -> (String, Ipv4Net, String) {
    let cidr: Ipv4Net = "10.0.64.0/20".parse().unwrap();
    let mut emu = server::lock(h.emu());
    let vpc = h.node.vpc_id.clone();
    let subnet = emu.world.create_subnet(&vpc, cidr, ZONE).unwrap();
    let sg = emu.world.create_security_group(&vpc, "pods");
    (subnet, cidr, sg)
}

fn agent_config(h: &Harness, api: &FakeApiServer) -> config::Config {
    h.config(&[
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
        ("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone"),
        ("ANNOTATE_POD_IP", "true"),
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
        ("WARM_IP_TARGET", "3"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_enis_and_pod_addresses_come_from_the_eniconfig_subnet() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "custom-net").await;
    let (pod_subnet, pod_cidr, pod_sg) = pod_network(&h);
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node(ZONE));
    api.apply(
        json!({"apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfig",
                     "metadata": {"name": ZONE},
                     "spec": {"subnet": pod_subnet, "securityGroups": [pod_sg]}}),
    );
    for i in 0..12 {
        api.apply(pod(i));
    }
    let agent = h.start(
        agent_config(&h, &api),
        h.options(Duration::from_secs(60), None),
    );
    let mut c = h.client().await;

    let mut ips = Vec::new();
    for i in 0..6 {
        let ip = add_pod(&mut c, i).await;
        assert!(
            pod_cidr.contains(&ip),
            "pod {i} got {ip}, outside the ENIConfig's {pod_cidr}"
        );
        ips.push(ip);
    }
    {
        let emu = server::lock(h.emu());
        let enis = emu.world.attached_enis(&h.node.instance_id);
        assert!(enis.len() >= 2, "a pod ENI was attached");
        for eni in &enis {
            let device = eni.attachment.as_ref().unwrap().device_index;
            if device == 0 {
                assert!(
                    eni.secondary_ips.is_empty(),
                    "the primary ENI holds no pod addresses"
                );
                continue;
            }
            assert_eq!(
                eni.subnet_id, pod_subnet,
                "ENI {} in the ENIConfig's subnet",
                eni.id
            );
            assert_eq!(
                eni.groups.iter().collect::<Vec<_>>(),
                [&pod_sg],
                "ENI {} has the ENIConfig's security groups",
                eni.id
            );
        }
    }
    // ANNOTATE_POD_IP: each pod carries its address, patched as upstream does.
    for (i, ip) in ips.iter().enumerate() {
        let mut annotated = None;
        for _ in 0..100 {
            annotated = api
                .get("v1", "Pod", "default", &format!("pod-{i}"))
                .and_then(|p| {
                    p["metadata"]["annotations"]["vpc.amazonaws.com/pod-ips"]
                        .as_str()
                        .map(String::from)
                });
            if annotated.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            annotated.as_deref(),
            Some(ip.to_string().as_str()),
            "pod-{i}"
        );
    }
    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path == "/api/v1/namespaces/default/pods/pod-0")
        .collect();
    assert_eq!(patches.len(), 1, "one patch for pod-0: {patches:?}");
    assert_eq!(
        patches[0].body,
        Some(
            json!({"metadata": {"annotations": {"vpc.amazonaws.com/pod-ips": ips[0].to_string()}}})
        )
    );
    // The node watch asked for exactly this node.
    assert!(api.requests().iter().any(|r| r.path == "/api/v1/nodes"
        && r.param("fieldSelector") == Some(&format!("metadata.name={NODE}"))));
    // Introspection-free check of the Normal event naming the ENIConfig.
    assert!(
        api.list("events.k8s.io/v1", "Event")
            .iter()
            .any(|e| e["note"].as_str().is_some_and(|n| n.contains(ZONE))),
        "an event names the ENIConfig: {:?}",
        api.list("events.k8s.io/v1", "Event")
    );

    // The API server goes away for a minute: pods already served keep their addresses,
    // new ADDs and DELs work while the pool has addresses.
    api.go_down().await;
    for i in 0..3 {
        del_pod(&mut c, i).await;
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    for i in 6..9 {
        let ip = add_pod(&mut c, i).await;
        assert!(pod_cidr.contains(&ip), "{ip}");
    }
    for (i, ip) in ips.iter().enumerate().skip(3) {
        assert_eq!(add_pod(&mut c, i).await, *ip, "pod {i} kept its address");
    }
    assert!(!agent.is_finished(), "the agent is running");
    api.come_up().await.unwrap();
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_eniconfig_is_an_error_and_an_event_not_a_fallback() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "custom-missing").await;
    let api = FakeApiServer::start().await.unwrap();
    // The node's zone label names an ENIConfig nobody created.
    api.apply(node(ZONE));
    api.apply(pod(0));
    let introspection = free_port();
    let agent = h.start(
        agent_config(&h, &api),
        h.options(Duration::from_secs(60), Some(introspection)),
    );
    let mut c = h.client().await;
    // Introspection names the ENIConfig the node selects, as a JSON string (upstream), even
    // though it does not exist.
    assert_eq!(
        http_get(introspection, "/v1/eni-configs").await,
        format!("\"{ZONE}\"")
    );
    let mut message = String::new();
    for _ in 0..100 {
        match c.add_network(add(0)).await {
            Err(status) if status.message().contains("ENIConfig") => {
                message = status.message().to_string();
                break;
            }
            Err(status) => message = status.message().to_string(),
            Ok(r) => panic!("an address without an ENIConfig: {:?}", r.into_inner()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        message.contains("no usable ENIConfig") && message.contains(ZONE),
        "operator-readable: {message}"
    );
    // No silent fallback: nothing was created in the node's subnet, no address assigned.
    {
        let emu = server::lock(h.emu());
        let enis = emu.world.attached_enis(&h.node.instance_id);
        assert_eq!(enis.len(), 1, "no ENI without an ENIConfig");
        assert!(
            enis[0].secondary_ips.is_empty(),
            "the primary ENI got no pod addresses"
        );
        assert_eq!(emu.faults.calls.get("CreateNetworkInterface"), None);
    }
    let mut events = Vec::new();
    for _ in 0..100 {
        events = api.list("events.k8s.io/v1", "Event");
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warning = events
        .iter()
        .find(|e| e["type"] == "Warning")
        .unwrap_or_else(|| panic!("a Warning event: {events:?}"));
    assert_eq!(warning["regarding"]["kind"], "Node");
    assert_eq!(warning["regarding"]["name"], NODE);
    assert!(
        warning["note"].as_str().unwrap_or_default().contains(ZONE),
        "{warning}"
    );

    // Creating the ENIConfig afterwards is enough: the next ENI uses it.
    let (pod_subnet, pod_cidr, pod_sg) = pod_network(&h);
    api.apply(
        json!({"apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfig",
                     "metadata": {"name": ZONE},
                     "spec": {"subnet": pod_subnet, "securityGroups": [pod_sg]}}),
    );
    let ip: Ipv4Addr = add_pod(&mut c, 0).await;
    assert!(pod_cidr.contains(&ip), "{ip}");
    agent.abort();
}
