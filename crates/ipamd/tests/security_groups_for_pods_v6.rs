//! Security groups for pods in an IPv6 cluster (docs/security-groups-for-pods.md): the
//! whole agent in IPv6 mode in a node namespace, the EC2 emulator (dual-stack VPC)
//! hot-plugging ENIs there and playing the VPC Resource Controller, and the Kubernetes API
//! stand-in. The IPv6 node loop advertises `SecurityGroupsForPods` and looks for the trunk
//! ENI every tick (upstream's `checkForTrunkENI` loop in `StartNodeIPPoolManager`); a
//! branch pod then gets the annotation's `ipv6Addr` with the gateway `fe80:ec2::1`
//! (upstream `AddNetwork`, spec 5.3). Started with `spawn_accepting_unbuilt`: the binary
//! still refuses `ENABLE_POD_ENI`.

mod support;

use std::time::Duration;

use ec2_emulator::model::BranchEni;
use ec2_emulator::server;
use ec2_emulator::testing::TestNetns;
use ipamd::agent::HostNetOptions;
use ipamd::testing::{add, spawn_accepting_unbuilt};
use k8s::testing::FakeApiServer;
use rpc::{AddNetworkReply, CniBackendClient, IpAllocationMetadata};
use serde_json::{Value, json};
use support::{Harness, free_port, http_get};
use tonic::transport::Channel;

const NODE: &str = "ip-10-0-0-4.us-west-2.compute.internal";

fn features(api: &FakeApiServer) -> Value {
    api.get("vpcresources.k8s.aws/v1alpha1", "CNINode", "", NODE)
        .map(|c| c["spec"]["features"].clone())
        .unwrap_or(Value::Null)
}

fn pod(i: usize, annotation: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": "default", "uid": format!("uid-{i}")},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "app"}]}});
    if let Some(a) = annotation {
        p["spec"]["containers"][0]["resources"] =
            json!({"limits": {"vpc.amazonaws.com/pod-eni": "1"}});
        p["metadata"]["annotations"] = json!({"vpc.amazonaws.com/pod-eni": a});
    }
    p
}

/// The link with `mac` in `ns`: (ifindex, up).
fn link(ns: &TestNetns, mac: &str) -> Option<(i32, bool)> {
    let links: Value = serde_json::from_str(&ns.ip(&["-j", "link"])).unwrap();
    links.as_array()?.iter().find_map(|l| {
        (l["address"] == mac).then(|| {
            let up = l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP"));
            (i32::try_from(l["ifindex"].as_i64().unwrap()).unwrap(), up)
        })
    })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ipv6_node_loop_finds_the_trunk_and_branch_pods_get_ipv6addr_and_fe80_ec2_1() {
    let h = Harness::new_dual_stack("m5.large", "10.0.0.0/24", "sgp-v6").await;
    let ns = TestNetns::new("sgp-v6");
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    let db_sg = {
        let mut emu = server::lock(h.emu());
        emu.set_hotplug(&h.node.instance_id, &ns.0);
        emu.world.create_security_group(&h.node.vpc_id, "db")
    };
    let api = FakeApiServer::start().await.unwrap();
    api.apply(
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
        "status": {"capacity": {"pods": "110"}}}),
    );
    api.apply(
        json!({"apiVersion": "vpcresources.k8s.aws/v1alpha1", "kind": "CNINode",
        "metadata": {"name": NODE}, "spec": {"features": []}}),
    );
    let cfg = h.config(&[
        ("ENABLE_IPv6", "true"),
        ("ENABLE_IPv4", "false"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("ENABLE_POD_ENI", "true"),
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
    ]);
    let intro = free_port();
    let mut opts = h.options(Duration::from_secs(60), Some(intro));
    opts.host_network = Some(HostNetOptions {
        netns: Some(ns.path().into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    let agent = spawn_accepting_unbuilt(cfg, opts);
    let mut c = h.client().await;

    // The feature, though IPv6 nodes keep no ENI slot (upstream checks room in IPv4 only).
    for _ in 0..300 {
        if features(&api) == json!([{"name": "SecurityGroupsForPods"}]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(features(&api), json!([{"name": "SecurityGroupsForPods"}]));
    // Strict mode (the default) on an IPv6 node: the IPv6 `local` rule below branch pods'
    // rules, and the gateway's ICMPv6 delivered locally (upstream `createIPv6GatewayRule`).
    let local: Vec<String> = ns
        .ip(&["-6", "rule"])
        .lines()
        .filter(|l| l.contains("lookup local"))
        .map(String::from)
        .collect();
    assert_eq!(
        local,
        [
            "0:\tfrom fe80:ec2::1 ipproto ipv6-icmp lookup local",
            "20:\tfrom all lookup local"
        ]
    );

    // The controller: trunk and branch ENI in the node's dual-stack subnet.
    let branch: BranchEni = server::lock(h.emu())
        .branch_eni_for_pod(&h.node.instance_id, &h.node.subnet_id, &[db_sg])
        .unwrap();
    let branch_v6 = branch
        .ipv6
        .expect("the dual-stack subnet gives the branch an IPv6");
    let annotation = ec2_emulator::control::pod_eni_annotation(&branch);
    assert!(annotation.contains("ipv6Addr"), "{annotation}");
    api.apply(pod(0, Some(&annotation)));

    let reply = add_branch(&mut c, 0).await;
    let trunk_mac = server::lock(h.emu())
        .world
        .eni(&branch.trunk_id)
        .unwrap()
        .mac
        .clone();
    let (trunk_index, trunk_up) = link(&ns, &trunk_mac).expect("the trunk's link");
    assert!(trunk_up, "the IPv6 loop brought the trunk's link up");
    assert_eq!(
        reply,
        AddNetworkReply {
            success: true,
            ip_allocation_metadata: vec![IpAllocationMetadata {
                i_pv4_addr: String::new(),
                i_pv6_addr: branch_v6.to_string(),
                device_number: -1,
                route_table_id: 0,
            }],
            use_external_snat: false,
            vp_cv4_cid_rs: vec![],
            vp_cv6_cid_rs: vec![h.node.vpc_ipv6_cidr.unwrap().to_string()],
            pod_vlan_id: i32::try_from(branch.vlan_id).unwrap(),
            pod_enimac: branch.mac.clone(),
            pod_eni_subnet_gw: "fe80:ec2::1".into(),
            parent_if_index: trunk_index,
            network_policy_mode: String::new(),
        }
    );

    // The trunk is in the datastore as trunk, with no prefix; no pod holds an address.
    let body = http_get(intro, "/v1/enis").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let trunk = &v["0"]["ENIs"][&branch.trunk_id];
    assert_eq!(trunk["IsTrunk"], true, "{body}");
    assert_eq!(trunk["IPv6Cidrs"], json!({}), "{body}");
    assert_eq!(v["0"]["AssignedIPs"], 0, "{body}");
    {
        let emu = server::lock(h.emu());
        let t = emu.world.eni(&branch.trunk_id).unwrap();
        assert!(t.tags.is_empty() && t.ipv6_prefixes.is_empty(), "{t:?}");
    }
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}
