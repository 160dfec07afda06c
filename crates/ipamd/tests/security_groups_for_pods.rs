//! Security groups for pods (`ENABLE_POD_ENI=true`) end to end: the whole agent in a node
//! network namespace, the EC2 emulator hot-plugging ENIs there and playing the VPC Resource
//! Controller (`branch_eni_for_pod`: a trunk ENI, a branch ENI with the policy's groups, the
//! next VLAN id), and the Kubernetes API stand-in (`k8s::testing::FakeApiServer`) holding
//! the Node, the CNINode and the pods. The refusal of `ENABLE_POD_ENI` at start stays until
//! aws-cni's half lands, so the agent is started with `spawn_accepting_unbuilt`.

mod support;

use std::time::Duration;

use ec2_emulator::model::BranchEni;
use ec2_emulator::server;
use ec2_emulator::testing::TestNetns;
use ipamd::agent::{AgentOptions, HostNetOptions};
use ipamd::testing::{add, del, spawn_accepting_unbuilt};
use k8s::testing::FakeApiServer;
use rpc::{AddNetworkReply, CniBackendClient, IpAllocationMetadata};
use serde_json::{Value, json};
use support::{Harness, add_pod};
use tonic::transport::Channel;

const NODE: &str = "ip-10-0-0-4.us-west-2.compute.internal";
const POD_SUBNET: &str = "10.0.32.0/19";

/// A harness whose node lives in its own namespace (ENIs hot-plugged there), an API server
/// with the Node and its CNINode, the pod subnet and a "db" security group.
async fn cluster(tag: &str) -> (Harness, TestNetns, FakeApiServer, String, String) {
    let h = Harness::new("m5.large", "10.0.0.0/24", tag).await;
    let ns = TestNetns::new(tag);
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    let (pod_subnet, db_sg) = {
        let mut emu = server::lock(h.emu());
        emu.set_hotplug(&h.node.instance_id, &ns.0);
        let az = emu
            .world
            .instance(&h.node.instance_id)
            .unwrap()
            .availability_zone
            .clone();
        let subnet = emu
            .world
            .create_subnet(&h.node.vpc_id, POD_SUBNET.parse().unwrap(), &az)
            .unwrap();
        (
            subnet,
            emu.world.create_security_group(&h.node.vpc_id, "db"),
        )
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
    (h, ns, api, pod_subnet, db_sg)
}

fn options(h: &Harness, ns: &TestNetns) -> AgentOptions {
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.host_network = Some(HostNetOptions {
        netns: Some(ns.path().into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    opts
}

/// Pod `pod-<i>`: a branch pod (the controller's webhook put `vpc.amazonaws.com/pod-eni` in
/// its first container's limits) with `annotation`, or a regular pod.
fn pod(i: usize, branch: bool, annotation: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": "default", "uid": format!("uid-{i}")},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "app"}]}});
    if branch {
        p["spec"]["containers"][0]["resources"] = json!({"limits": {"vpc.amazonaws.com/pod-eni": "1"}, "requests": {"vpc.amazonaws.com/pod-eni": "1"}});
    }
    if let Some(a) = annotation {
        p["metadata"]["annotations"] = json!({"vpc.amazonaws.com/pod-eni": a});
    }
    p
}

/// The ifindex of the link with `mac` in `ns`.
fn ifindex(ns: &TestNetns, mac: &str) -> i32 {
    let links = ns.ip(&["-o", "link"]);
    links
        .lines()
        .find(|l| l.contains(mac))
        .and_then(|l| l.split(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no link with {mac}:\n{links}"))
}

/// AddNetwork for pod `i`, retried (bounded) while the agent has no trunk yet.
async fn add_branch(c: &mut CniBackendClient<Channel>, i: usize) -> AddNetworkReply {
    let mut last = String::new();
    for _ in 0..200 {
        match c.add_network(add(i)).await {
            Ok(r) => return r.into_inner(),
            Err(s) => last = s.message().to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pod {i}: no branch reply: {last}");
}

fn features(api: &FakeApiServer) -> Value {
    api.get("vpcresources.k8s.aws/v1alpha1", "CNINode", "", NODE)
        .map(|c| c["spec"]["features"].clone())
        .unwrap_or(Value::Null)
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_pods_get_the_controllers_branch_eni_and_the_trunk_is_left_alone() {
    let (h, ns, api, pod_subnet, db_sg) = cluster("sgp-branch").await;
    // Three warm ENIs worth of addresses would take the third slot; it is the trunk's.
    let cfg = h.config(&[
        ("ENABLE_POD_ENI", "true"),
        ("WARM_ENI_TARGET", "3"),
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
    ]);
    let agent = spawn_accepting_unbuilt(cfg, options(&h, &ns));
    let mut c = h.client().await;

    // The feature, with upstream's merge patch, and the slot kept free.
    wait("SecurityGroupsForPods on the CNINode", || {
        features(&api) == json!([{"name": "SecurityGroupsForPods"}])
    })
    .await;
    h.wait_for("two ENIs with their addresses", |h| {
        h.ec2_secondary_count() >= 18
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        h.ec2_enis().len(),
        2,
        "the third slot is kept for the trunk"
    );
    // Strict mode (the default): the node's `local` rule moved below branch pods' rules.
    let rules = ns.ip(&["rule", "show"]);
    let local: Vec<&str> = rules
        .lines()
        .filter(|l| l.contains("lookup local"))
        .collect();
    assert_eq!(local, ["20:\tfrom all lookup local"], "{rules}");

    // The controller: trunk (hot-plugged) + branch ENI with the policy's group, VLAN 1.
    let branch: BranchEni = server::lock(h.emu())
        .branch_eni_for_pod(
            &h.node.instance_id,
            &pod_subnet,
            std::slice::from_ref(&db_sg),
        )
        .unwrap();
    let annotation = ec2_emulator::control::pod_eni_annotation(&branch);
    api.apply(pod(0, true, Some(&annotation)));
    api.apply(pod(1, false, None));

    let reply = add_branch(&mut c, 0).await;
    let trunk_index = ifindex(
        &ns,
        &server::lock(h.emu())
            .world
            .eni(&branch.trunk_id)
            .unwrap()
            .mac,
    );
    assert_eq!(
        reply,
        AddNetworkReply {
            success: true,
            ip_allocation_metadata: vec![IpAllocationMetadata {
                i_pv4_addr: branch.private_ip.to_string(),
                i_pv6_addr: String::new(),
                device_number: -1,
                route_table_id: 0,
            }],
            use_external_snat: false,
            vp_cv4_cid_rs: vec!["10.0.0.0/16".into()],
            vp_cv6_cid_rs: vec![],
            pod_vlan_id: 1,
            pod_enimac: branch.mac.clone(),
            pod_eni_subnet_gw: "10.0.32.1".into(),
            parent_if_index: trunk_index,
            network_policy_mode: String::new(),
        }
    );
    eprintln!("branch AddNetworkReply: {reply:?}");

    // A regular pod gets an address of the node's ENIs, not of the pod subnet.
    let ip = add_pod(&mut c, 1).await;
    assert!(ip.octets()[2] == 0, "{ip} from the node subnet");

    // The trunk: never tagged, never given addresses, still attached after reconciles.
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let emu = server::lock(h.emu());
        let trunk = emu.world.eni(&branch.trunk_id).unwrap();
        assert!(trunk.tags.is_empty(), "{:?}", trunk.tags);
        assert!(trunk.secondary_ips.is_empty() && trunk.prefixes.is_empty());
        assert!(trunk.attachment.is_some());
    }
    assert!(
        !h.checkpoint_pods().contains_key("container-0"),
        "a branch pod takes no address"
    );

    // DEL with the pod object: its VLAN and address; another pod of the same name: error.
    let mut d = del(0);
    d.k8s_pod_uid = "uid-0".into();
    let r = c.del_network(d.clone()).await.unwrap().into_inner();
    assert!(r.success);
    assert_eq!(r.pod_vlan_id, 1);
    assert_eq!(
        r.ip_allocation_metadata[0].i_pv4_addr,
        branch.private_ip.to_string()
    );
    d.k8s_pod_uid = "uid-of-an-older-pod".into();
    let err = c.del_network(d.clone()).await.unwrap_err();
    assert!(err.message().contains("pod UID mismatch"), "{err:?}");

    // DEL once the pod object is gone: success, nothing to say.
    assert!(api.delete("v1", "Pod", "default", "pod-0"));
    let r = c.del_network(d).await.unwrap().into_inner();
    assert!(
        r.success && r.pod_vlan_id == 0 && r.ip_allocation_metadata.is_empty(),
        "{r:?}"
    );
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_pod_without_a_usable_annotation_is_an_error_and_an_event() {
    let (h, ns, api, pod_subnet, db_sg) = cluster("sgp-bad").await;
    let cfg = h.config(&[
        ("ENABLE_POD_ENI", "true"),
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
    ]);
    let agent = spawn_accepting_unbuilt(cfg, options(&h, &ns));
    let mut c = h.client().await;
    server::lock(h.emu())
        .branch_eni_for_pod(&h.node.instance_id, &pod_subnet, &[db_sg])
        .unwrap();
    // VLAN 0 (malformed), then no annotation at all.
    let bad = r#"[{"eniId":"eni-x","ifAddress":"02:00:00:00:00:09","privateIp":"10.0.32.9","vlanID":0,"subnetCidr":"10.0.32.0/19"}]"#;
    api.apply(pod(2, true, Some(bad)));
    api.apply(pod(3, true, None));
    let before = h.checkpoint_pods().len();

    let mut message = String::new();
    for _ in 0..200 {
        let err = c.add_network(add(2)).await.unwrap_err();
        message = err.message().to_string();
        if !message.contains("no trunk ENI") {
            assert_eq!(err.code(), tonic::Code::FailedPrecondition);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(message.contains("vlanID 0 is not a VLAN id"), "{message}");
    let err = c.add_network(add(3)).await.unwrap_err();
    assert!(
        err.message()
            .contains("vpc.amazonaws.com/pod-eni is missing"),
        "{err:?}"
    );
    assert_eq!(h.checkpoint_pods().len(), before, "no address was taken");

    // A Warning event about each pod, in its namespace.
    let events = |api: &FakeApiServer| -> Vec<(String, String)> {
        api.list("events.k8s.io/v1", "Event")
            .iter()
            .filter(|e| e["reason"] == "BranchENIFailed")
            .map(|e| {
                (
                    e["regarding"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    e["note"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let has = |got: &[(String, String)], pod: &str, text: &str| {
        got.iter().any(|(p, n)| p == pod && n.contains(text))
    };
    wait("BranchENIFailed events for pod-2 and pod-3", || {
        let got = events(&api);
        has(&got, "pod-2", "vlanID 0") && has(&got, "pod-3", "is missing")
    })
    .await;
    for e in api.list("events.k8s.io/v1", "Event") {
        if e["reason"] == "BranchENIFailed" {
            assert_eq!(e["metadata"]["namespace"], "default");
            assert_eq!(e["type"], "Warning");
            assert_eq!(e["regarding"]["kind"], "Pod");
        }
    }
    agent.abort();
}
