//! Multi-NIC in ipamd (spec 3.9, 5.3, 5.4; upstream `markUnmanagedNetworkCards`, the
//! per-card datastores and `AddNetwork`/`DelNetwork` in `rpc_handler.go`), the real agent
//! against the EC2 + IMDS emulator with an instance type of two network cards: with
//! `ENABLE_MULTI_NIC=true` ipamd attaches an ENI on card 1 and wires it in the node
//! namespace (table 10000 + d + 100·c), a multi-NIC pod gets one address per card, a
//! single-address pod falls through to card 1 when card 0 is exhausted; switched off, card 1
//! is left alone and multi-NIC pods are refused.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws::{CreateEniRequest, Ec2, Tags};
use ec2_emulator::model::InstanceTypeInfo;
use ec2_emulator::server;
use ec2_emulator::testing::{EmulatedNode, TestNetns};
use ipamd::agent::HostNetOptions;
use rpc::{AddNetworkReply, AddNetworkRequest, CniBackendClient, DelNetworkReply};
use support::{Harness, add, add_pod, del, free_port, http_get};
use tonic::transport::Channel;

/// A type outside the limits table: card 0 and card 1, `card0_enis` and 2 ENIs, 4 IPv4
/// addresses per ENI (3 for pods).
fn two_cards(name: &str, card0_enis: u32) -> InstanceTypeInfo {
    let mut ty = InstanceTypeInfo::single_card(name, card0_enis, 4);
    ty.cards = BTreeMap::from([(0, card0_enis), (1, 2)]);
    ty
}

async fn harness(card0_enis: u32, tag: &str) -> Harness {
    let node = EmulatedNode::start_unlisted(two_cards("x9mn.large", card0_enis), "10.0.0.0/24");
    Harness::with_node(node.await, tag).await
}

/// ENIs attached on `card` as EC2 sees them: (id, device index, secondary addresses).
fn enis_on(h: &Harness, card: u32) -> Vec<(String, u32, usize)> {
    let emu = server::lock(h.emu());
    emu.world
        .attached_enis(&h.node.instance_id)
        .iter()
        .filter_map(|e| {
            let a = e.attachment.as_ref()?;
            (a.network_card == card).then(|| (e.id.clone(), a.device_index, e.secondary_ips.len()))
        })
        .collect()
}

/// The first ENI on card 1 that has a free secondary address.
fn card1_ready(h: &Harness) -> bool {
    enis_on(h, 1).iter().any(|e| e.2 >= 1)
}

fn multi_nic_add(i: usize) -> AddNetworkRequest {
    AddNetworkRequest {
        requires_multi_nic_attachment: true,
        ..add(i)
    }
}

/// AddNetwork retried while the pools grow; the last reply when it never succeeds.
async fn add_until_success(
    c: &mut CniBackendClient<Channel>,
    req: AddNetworkRequest,
) -> AddNetworkReply {
    let mut last = None;
    for _ in 0..100 {
        if let Ok(r) = c.add_network(req.clone()).await {
            let r = r.into_inner();
            if r.success {
                return r;
            }
            last = Some(r);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("AddNetwork never succeeded: {last:?}");
}

/// (address, device number, route table) of each entry.
fn entries(rows: &[rpc::IpAllocationMetadata]) -> Vec<(String, i32, i32)> {
    rows.iter()
        .map(|r| (r.i_pv4_addr.clone(), r.device_number, r.route_table_id))
        .collect()
}

fn checkpoint_of(h: &Harness, file: &str) -> BTreeMap<String, String> {
    let doc = ipam::read_checkpoint(&h.dir.join(file))
        .expect("readable checkpoint")
        .unwrap_or_else(|| panic!("{file} written"));
    doc.allocations
        .iter()
        .map(|a| (a.key.container_id.clone(), a.ipv4.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_nic_pods_get_one_address_per_card_wired_and_kept_across_restart() {
    let ns = TestNetns::new("mnic");
    let h = harness(2, "multi-nic").await;
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    server::lock(h.emu()).set_hotplug(&h.node.instance_id, &ns.0);
    let introspection = free_port();
    let mut opts = h.options(Duration::from_secs(60), Some(introspection));
    opts.host_network = Some(HostNetOptions {
        netns: Some(ns.path().into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    let cfg = h.config(&[("ENABLE_MULTI_NIC", "true")]);
    let agent = h.start(cfg.clone(), opts.clone());
    h.wait_for("an ENI with a warm address on card 1", card1_ready)
        .await;
    let card1 = enis_on(&h, 1);
    assert_eq!(
        card1.len(),
        1,
        "one ENI on card 1 (WARM_IP_TARGET=1): {card1:?}"
    );
    let (card1_eni, device, _) = card1[0].clone();
    assert_eq!(device, 0, "the lowest free device index on card 1");
    let table = 10_000 + device + 100;

    // The node namespace: the card-1 ENI's route table and rule.
    let card1_ip = {
        let emu = server::lock(h.emu());
        emu.world.enis[&card1_eni].primary_ip
    };
    // EC2 lists the ENI's addresses before the agent has wired the ENI on the node.
    let table_routes = || {
        let out = std::process::Command::new("ip")
            .args(["-n", &ns.0, "route", "show", "table", &table.to_string()])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let node_rules = || {
        let out = std::process::Command::new("ip")
            .args(["-n", &ns.0, "rule"])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let card1_rule = format!("from {card1_ip} lookup {table}");
    h.wait_for("the card-1 ENI's route table and rule on the node", |_| {
        table_routes().contains("default via 10.0.0.1") && node_rules().contains(&card1_rule)
    })
    .await;
    let rules = ns.ip(&["rule"]);
    assert!(
        rules.contains(&format!("from {card1_ip} lookup {table}")),
        "rule of the card-1 ENI: {rules}"
    );

    let mut c = h.client().await;
    let reply = add_until_success(&mut c, multi_nic_add(1)).await;
    let got = entries(&reply.ip_allocation_metadata);
    assert_eq!(got.len(), 2, "one address per card: {got:?}");
    assert!(
        got[0].2 < 10_000,
        "card 0 first (table 254 or d+1): {got:?}"
    );
    assert_eq!(
        (got[1].1, got[1].2),
        (device as i32, table as i32),
        "{got:?}"
    );
    assert_ne!(got[0].0, got[1].0);

    // Each card's checkpoint file holds the pod's address on that card.
    let card0_file = checkpoint_of(&h, "ipam.json");
    let card1_file = checkpoint_of(&h, "ipam-nic-1.json");
    assert_eq!(card0_file.get("container-1"), Some(&got[0].0));
    assert_eq!(card1_file.get("container-1"), Some(&got[1].0));

    // Introspection is keyed by card; the pod's entries carry interfacesCount 2.
    let enis: serde_json::Value =
        serde_json::from_str(&http_get(introspection, "/v1/enis").await).expect("JSON");
    assert!(enis["1"]["ENIs"][&card1_eni].is_object(), "{enis}");
    assert_eq!(enis["1"]["AssignedIPs"], 1, "{enis}");
    let cidr = &enis["1"]["ENIs"][&card1_eni]["AvailableIPv4Cidrs"][format!("{}/32", got[1].0)];
    assert_eq!(
        cidr["IPAddresses"][&got[1].0]["IPAMMetadata"]["interfacesCount"], 2,
        "{enis}"
    );

    // Restart: the pod's veth exists, so both cards restore it.
    agent.abort();
    let _ = agent.await;
    let veth = net::names::host_veth_name("eni", "default", "pod-1", 0);
    ns.ip(&[
        "link",
        "add",
        &veth,
        "type",
        "veth",
        "peer",
        "name",
        "mnic-peer",
    ]);
    let agent = h.start(cfg, opts);
    let mut c = h.client().await;
    let reply: DelNetworkReply = c
        .del_network(del(1))
        .await
        .expect("DelNetwork")
        .into_inner();
    assert!(reply.success, "{reply:?}");
    assert_eq!(entries(&reply.ip_allocation_metadata), got, "both released");
    assert!(checkpoint_of(&h, "ipam-nic-1.json").is_empty());
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_address_pod_falls_through_to_card_1_when_card_0_is_exhausted() {
    // Card 0: the primary ENI only, 3 addresses for pods.
    let h = harness(1, "multi-nic-fallthrough").await;
    let cfg = h.config(&[("ENABLE_MULTI_NIC", "true")]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    h.wait_for("card 0 full and card 1 warm", |h| {
        enis_on(h, 0).iter().map(|e| e.2).sum::<usize>() == 3 && card1_ready(h)
    })
    .await;
    let mut c = h.client().await;
    let card0: Vec<_> = {
        let mut v = Vec::new();
        for i in 1..=3 {
            v.push(add_pod(&mut c, i).await);
        }
        v
    };
    let reply = add_until_success(&mut c, add(4)).await;
    let got = entries(&reply.ip_allocation_metadata);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].2, 10_100, "served from card 1 (device 0): {got:?}");
    assert!(!card0.iter().any(|ip| ip.to_string() == got[0].0));
    let reply: DelNetworkReply = c
        .del_network(del(4))
        .await
        .expect("DelNetwork")
        .into_inner();
    assert_eq!(entries(&reply.ip_allocation_metadata), got);
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_card_1_is_left_alone_and_multi_nic_pods_are_refused() {
    let h = harness(2, "multi-nic-off").await;
    // An ENI on card 1 carrying this instance's tag: managed by tags, but not by card.
    let tagged = Tags::from([(
        "node.k8s.amazonaws.com/instance_id".to_string(),
        h.node.instance_id.clone(),
    )]);
    let theirs = h
        .operator
        .create_eni(&CreateEniRequest {
            subnet_id: h.node.subnet_id.clone(),
            security_groups: vec![h.node.security_group.clone()],
            description: "someone else's card-1 interface".into(),
            tags: tagged,
            ..CreateEniRequest::default()
        })
        .await
        .expect("CreateNetworkInterface");
    h.operator
        .attach_eni(&theirs.id, &h.node.instance_id, 0, 1)
        .await
        .expect("AttachNetworkInterface");
    let agent = h.start(h.config(&[]), h.options(Duration::from_millis(300), None));
    let mut c = h.client().await;
    add_pod(&mut c, 1).await;
    // Pool ticks (100 ms) and reconciles (300 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        enis_on(&h, 1),
        [(theirs.id.clone(), 0, 0)],
        "card 1: only the operator's ENI, no address added"
    );
    let reply = c
        .add_network(multi_nic_add(2))
        .await
        .expect("AddNetwork")
        .into_inner();
    assert!(!reply.success, "{reply:?}");
    assert!(reply.ip_allocation_metadata.is_empty());
    agent.abort();
}
