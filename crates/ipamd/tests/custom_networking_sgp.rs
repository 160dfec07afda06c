//! Custom networking and security groups for pods together, as the operators' walkthrough
//! describes (seeds: "Amazon EKS で CNI カスタムネットワーキングと Pod セキュリティグループを
//! 活用する"): `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true` with an ENIConfig per zone naming a
//! non-routable pod subnet, and `ENABLE_POD_ENI=true`. Pods no SecurityGroupPolicy selects
//! share the node's ENIs in the ENIConfig's subnet; pods it selects get their own branch ENI
//! in that subnet on the trunk. The whole agent in a node namespace, the EC2 emulator as EC2
//! and as the VPC Resource Controller, the Kubernetes API stand-in; started with
//! `spawn_accepting_unbuilt` (the binary still refuses `ENABLE_POD_ENI`).

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use ec2_emulator::model::BranchEni;
use ec2_emulator::server;
use ec2_emulator::testing::TestNetns;
use ipamd::agent::HostNetOptions;
use ipamd::testing::{add, spawn_accepting_unbuilt};
use ipnet::Ipv4Net;
use k8s::testing::FakeApiServer;
use rpc::{AddNetworkReply, CniBackendClient};
use serde_json::{Value, json};
use support::{Harness, add_pod};
use tonic::transport::Channel;

const NODE: &str = "ip-10-0-0-4.us-west-2.compute.internal";
const ZONE: &str = "us-west-2a";
/// The ENIConfig's non-routable subnet (the walkthrough's 100.64.0.0/10 range stands in
/// inside this VPC's CIDR).
const POD_CIDR: &str = "10.0.64.0/20";

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

fn features(api: &FakeApiServer) -> Value {
    api.get("vpcresources.k8s.aws/v1alpha1", "CNINode", "", NODE)
        .map(|c| c["spec"]["features"].clone())
        .unwrap_or(Value::Null)
}

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
async fn regular_pods_use_the_eniconfig_subnet_and_branch_pods_their_branch_eni_beside_them() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "cn-sgp").await;
    let ns = TestNetns::new("cn-sgp");
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    let pod_cidr: Ipv4Net = POD_CIDR.parse().unwrap();
    let (pod_subnet, pod_sg, db_sg) = {
        let mut emu = server::lock(h.emu());
        emu.set_hotplug(&h.node.instance_id, &ns.0);
        let vpc = h.node.vpc_id.clone();
        let subnet = emu.world.create_subnet(&vpc, pod_cidr, ZONE).unwrap();
        let pods = emu.world.create_security_group(&vpc, "pods");
        let db = emu.world.create_security_group(&vpc, "db");
        (subnet, pods, db)
    };
    let api = FakeApiServer::start().await.unwrap();
    api.apply(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"topology.kubernetes.io/zone": ZONE}},
        "status": {"capacity": {"pods": "29"}}}));
    api.apply(
        json!({"apiVersion": "vpcresources.k8s.aws/v1alpha1", "kind": "CNINode",
        "metadata": {"name": NODE}, "spec": {"features": []}}),
    );
    api.apply(
        json!({"apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfig",
        "metadata": {"name": ZONE},
        "spec": {"subnet": pod_subnet, "securityGroups": [pod_sg]}}),
    );
    let cfg = h.config(&[
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
        ("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone"),
        ("ENABLE_POD_ENI", "true"),
        // Enough warm ENIs to take every slot, were the trunk's not kept.
        ("WARM_ENI_TARGET", "3"),
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
    ]);
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.host_network = Some(HostNetOptions {
        netns: Some(ns.path().into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    let agent = spawn_accepting_unbuilt(cfg, opts);
    let mut c = h.client().await;

    // Both features, the ENIConfig named (upstream nodeInit, then tryEnable...).
    let want =
        json!([{"name": "CustomNetworking", "value": ZONE}, {"name": "SecurityGroupsForPods"}]);
    for _ in 0..300 {
        if features(&api) == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(features(&api), want);

    // The pool grows in the ENIConfig's subnet but keeps the third slot for the trunk.
    h.wait_for("a pod ENI with its addresses", |h| {
        h.ec2_secondary_count() >= 9
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let enis = h.ec2_enis();
    assert_eq!(
        enis.len(),
        2,
        "the third slot is kept for the trunk: {enis:?}"
    );

    // The controller: the trunk in the last slot, a branch ENI in the ENIConfig's subnet.
    let branch: BranchEni = server::lock(h.emu())
        .branch_eni_for_pod(
            &h.node.instance_id,
            &pod_subnet,
            std::slice::from_ref(&db_sg),
        )
        .unwrap();
    assert!(pod_cidr.contains(&branch.private_ip));
    api.apply(pod(
        0,
        Some(&ec2_emulator::control::pod_eni_annotation(&branch)),
    ));
    api.apply(pod(1, None));

    // Side by side: the branch pod's own ENI, the regular pod's address of the shared ENI.
    let reply = add_branch(&mut c, 0).await;
    assert!(reply.success, "{reply:?}");
    assert_eq!(
        (
            reply.ip_allocation_metadata[0].i_pv4_addr.as_str(),
            reply.ip_allocation_metadata[0].device_number,
            reply.pod_vlan_id,
            reply.pod_enimac.as_str(),
            reply.pod_eni_subnet_gw.as_str(),
        ),
        (
            branch.private_ip.to_string().as_str(),
            -1,
            i32::try_from(branch.vlan_id).unwrap(),
            branch.mac.as_str(),
            "10.0.64.1",
        )
    );
    assert!(reply.parent_if_index > 0, "{reply:?}");
    let ip: Ipv4Addr = add_pod(&mut c, 1).await;
    assert!(
        pod_cidr.contains(&ip) && ip != branch.private_ip,
        "the regular pod's {ip} is of the ENIConfig's subnet, on a shared ENI"
    );
    {
        let emu = server::lock(h.emu());
        let enis = emu.world.attached_enis(&h.node.instance_id);
        assert_eq!(enis.len(), 3, "primary, pod ENI, trunk");
        let holder = enis
            .iter()
            .find(|e| e.secondary_ips.contains(&ip))
            .expect("an ENI holds the regular pod's address");
        assert_eq!(holder.subnet_id, pod_subnet);
        assert_eq!(holder.groups.iter().collect::<Vec<_>>(), [&pod_sg]);
        let trunk = emu.world.eni(&branch.trunk_id).unwrap();
        assert!(trunk.secondary_ips.is_empty() && trunk.tags.is_empty());
        let b = emu.world.eni(&branch.eni_id).unwrap();
        assert_eq!(b.groups.iter().collect::<Vec<_>>(), [&db_sg]);
    }
    let held = h.checkpoint_pods();
    assert_eq!(held.get("container-1"), Some(&ip));
    assert!(
        !held.contains_key("container-0"),
        "a branch pod takes no address"
    );
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}
