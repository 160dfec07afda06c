//! Reconciliation with EC2, subnet discovery, the security-group refresh and the leaked-ENI
//! cleanup, against the emulator over HTTP. An "operator" EC2 client changes things behind
//! the agent's back, as a person at the console or a crashed earlier agent would.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use aws::{CreateEniRequest, Ec2, Tags};
use ec2_emulator::server;
use ipamd::leaked_enis;
use ipamd::node::tags;
use support::{Harness, add_pod, free_port, http_get};

async fn enis(addr: SocketAddr) -> serde_json::Value {
    let body = http_get(addr, "/v1/enis").await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The operator creates an ENI in the node's subnet with one tag and `ips` secondary
/// addresses and attaches it to the node; returns its ID.
async fn operator_eni(h: &Harness, tag: (&str, &str), ips: u32) -> String {
    let req = CreateEniRequest {
        subnet_id: h.node.subnet_id.clone(),
        security_groups: vec![h.node.security_group.clone()],
        description: format!("aws-K8S-{}", h.node.instance_id),
        secondary_ips: ips,
        prefixes: 0,
        ipv6_addresses: 0,
        tags: Tags::from([(tag.0.to_string(), tag.1.to_string())]),
        conntrack: None,
    };
    let eni = h.operator.create_eni(&req).await.unwrap();
    attach(h, &eni.id).await;
    eni.id
}

async fn attach(h: &Harness, eni: &str) -> String {
    let instance = h
        .operator
        .describe_instance(&h.node.instance_id)
        .await
        .unwrap();
    let device = instance.free_device_index(0).unwrap();
    h.operator
        .attach_eni(eni, &h.node.instance_id, device, 0)
        .await
        .unwrap()
}

/// Polls `/v1/enis` until `cond` holds.
async fn until(
    addr: SocketAddr,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..200 {
        let v = enis(addr).await;
        if cond(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}: {}", enis(addr).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_behind_the_agents_back_are_taken_from_ec2() {
    let h = Harness::new("m5.4xlarge", "10.0.0.0/22", "reconcile").await;
    let intro = free_port();
    let metrics = free_port();
    // Defaults (WARM_ENI_TARGET=1): the primary ENI's addresses are the warm pool, the
    // pool releases no single addresses, and frees no ENI younger than a minute; so the
    // ENIs and addresses below change only through the operator and reconciliation.
    let cfg = h.config(&[]);
    let mut opts = h.options(Duration::from_millis(200), Some(intro));
    opts.metrics_addr = Some(metrics);
    let agent = h.start(cfg, opts);
    let mut c = h.client().await;
    let pod_ip = add_pod(&mut c, 1).await;
    let primary_eni = h.ec2_enis()[0].0.clone();
    // One pod leaves less than an ENI's worth free: the pool attaches a spare ENI. Let it
    // finish before the operator attaches anything.
    h.wait_for("the spare ENI", |h| h.ec2_secondary_count() >= 2 * 29)
        .await;
    until(intro, "the spare ENI in the datastore", |v| {
        v["0"]["ENIs"].as_object().is_some_and(|m| m.len() == 2)
    })
    .await;

    // 1. An ENI with this instance's tag (an earlier agent died after attaching it) is
    //    adopted with its addresses and gets the cluster tags.
    let own = operator_eni(&h, (tags::INSTANCE_ID, &h.node.instance_id), 3).await;
    // 2. An ENI tagged no_manage=true is left alone.
    let foreign = operator_eni(&h, (tags::NO_MANAGE, "true"), 2).await;
    let v = until(intro, "the tagged ENI adopted", |v| {
        v["0"]["ENIs"].get(&own).is_some()
    })
    .await;
    assert_eq!(
        v["0"]["ENIs"][&own]["AvailableIPv4Cidrs"]
            .as_object()
            .unwrap()
            .len(),
        3,
        "{v}"
    );
    assert!(
        v["0"]["ENIs"].get(&foreign).is_none(),
        "no_manage ENI adopted: {v}"
    );
    {
        let emu = server::lock(h.emu());
        let tags = &emu.world.eni(&own).unwrap().tags;
        assert_eq!(
            tags.get(tags::CLUSTER_NAME).map(String::as_str),
            Some("demo")
        );
        assert_eq!(
            tags.get(tags::OWNER).map(String::as_str),
            Some("amazon-vpc-cni")
        );
    }

    // 3. Addresses assigned behind our back are added; unassigned ones are dropped.
    let extra = h.operator.assign_ips(&own, 2).await.unwrap();
    let extra_cidr = format!("{}/32", extra.ips[0]);
    until(intro, "the extra addresses", |v| {
        v["0"]["ENIs"][&own]["AvailableIPv4Cidrs"]
            .as_object()
            .is_some_and(|m| m.len() == 5 && m.contains_key(&extra_cidr))
    })
    .await;
    h.operator
        .unassign_ips(&own, &extra.ips[..1])
        .await
        .unwrap();
    until(intro, "the unassigned address dropped", |v| {
        v["0"]["ENIs"][&own]["AvailableIPv4Cidrs"]
            .as_object()
            .is_some_and(|m| m.len() == 4 && !m.contains_key(&extra_cidr))
    })
    .await;

    // 4. The operator detaches and deletes the ENI: it leaves the datastore.
    let attachment = {
        let emu = server::lock(h.emu());
        emu.world.eni(&own).unwrap().attachment.clone().unwrap().id
    };
    h.operator.detach_eni(&attachment, true).await.unwrap();
    until(intro, "the detached ENI removed", |v| {
        v["0"]["ENIs"].get(&own).is_none()
    })
    .await;

    // 5. New security groups on the primary ENI reach the other managed ENIs.
    let sg2 = {
        let mut emu = server::lock(h.emu());
        let vpc = h.node.vpc_id.clone();
        emu.world.create_security_group(&vpc, "second")
    };
    let own2 = operator_eni(&h, (tags::INSTANCE_ID, &h.node.instance_id), 1).await;
    until(intro, "the second ENI adopted", |v| {
        v["0"]["ENIs"].get(&own2).is_some()
    })
    .await;
    let groups = vec![h.node.security_group.clone(), sg2.clone()];
    h.operator
        .set_security_groups(&primary_eni, &groups)
        .await
        .unwrap();
    let mut followed = false;
    for _ in 0..100 {
        let (got, untouched) = {
            let emu = server::lock(h.emu());
            (
                emu.world.eni(&own2).unwrap().groups.clone(),
                emu.world.eni(&foreign).unwrap().groups.clone(),
            )
        };
        assert_eq!(
            untouched.iter().collect::<Vec<_>>(),
            [&h.node.security_group],
            "no_manage ENI changed"
        );
        if got.contains(&sg2) {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        followed,
        "the managed ENI did not get the new security group"
    );

    // The pod kept its address through all of it; the metrics say what happened and parse.
    assert_eq!(add_pod(&mut c, 1).await, pod_ip);
    let text = http_get(metrics, "/metrics").await;
    for line in [
        "awscni_reconcile_count{fn=\"eniReconcileAdd\"} 2",
        "awscni_reconcile_count{fn=\"eniReconcileDel\"} 1",
        "awscni_reconcile_count{fn=\"eniDataStorePoolReconcileAdd\"} 2",
        "awscni_reconcile_count{fn=\"eniIPPoolReconcileDel\"} 1",
        "awscni_assigned_ip_addresses 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let path = h.dir.join("metrics.txt");
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    let report = String::from_utf8_lossy(&out.stderr);
    // 0 = clean, 3 = lint findings only (upstream's names); 1 = does not parse.
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)) && !report.contains("error"),
        "promtool: {:?} {report}",
        out.status.code()
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_enis_go_to_the_tagged_subnet_with_most_free_addresses() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "discovery").await;
    let (tagged, opted_out) = {
        let mut emu = server::lock(h.emu());
        let vpc = h.node.vpc_id.clone();
        let a = emu
            .world
            .create_subnet(&vpc, "10.0.4.0/22".parse().unwrap(), "us-west-2a")
            .unwrap();
        let b = emu
            .world
            .create_subnet(&vpc, "10.0.16.0/20".parse().unwrap(), "us-west-2a")
            .unwrap();
        (a, b)
    };
    h.operator
        .create_tags(
            std::slice::from_ref(&tagged),
            &Tags::from([("kubernetes.io/role/cni".to_string(), "1".to_string())]),
        )
        .await
        .unwrap();
    h.operator
        .create_tags(
            std::slice::from_ref(&opted_out),
            &Tags::from([("kubernetes.io/role/cni".to_string(), "0".to_string())]),
        )
        .await
        .unwrap();
    // MINIMUM_IP_TARGET=12 needs a second ENI on an m5.large (9 addresses per ENI).
    let agent = h.start(
        h.config(&[("MINIMUM_IP_TARGET", "12"), ("WARM_IP_TARGET", "1")]),
        h.options(Duration::from_secs(60), None),
    );
    h.wait_for("a second ENI", |h| h.ec2_enis().len() == 2)
        .await;
    let subnet = {
        let emu = server::lock(h.emu());
        let enis = emu.world.attached_enis(&h.node.instance_id);
        enis.iter()
            .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 1))
            .unwrap()
            .subnet_id
            .clone()
    };
    assert_eq!(
        subnet, tagged,
        "the /22 tagged subnet has the most free addresses"
    );
    agent.abort();

    // With discovery off, the node's subnet.
    let h = Harness::new("m5.large", "10.0.0.0/24", "no-discovery").await;
    {
        let mut emu = server::lock(h.emu());
        let vpc = h.node.vpc_id.clone();
        let s = emu
            .world
            .create_subnet(&vpc, "10.0.4.0/22".parse().unwrap(), "us-west-2a")
            .unwrap();
        emu.world
            .subnets
            .get_mut(&s)
            .unwrap()
            .tags
            .insert("kubernetes.io/role/cni".into(), "1".into());
    }
    let cfg = h.config(&[
        ("ENABLE_SUBNET_DISCOVERY", "false"),
        ("MINIMUM_IP_TARGET", "12"),
        ("WARM_IP_TARGET", "1"),
    ]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    h.wait_for("a second ENI", |h| h.ec2_enis().len() == 2)
        .await;
    {
        let emu = server::lock(h.emu());
        for e in emu.world.attached_enis(&h.node.instance_id) {
            assert_eq!(e.subnet_id, h.node.subnet_id);
        }
    }
    agent.abort();
}

#[tokio::test]
async fn leaked_enis_older_than_five_minutes_are_deleted_and_others_kept() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "leaked").await;
    let now = ipamd::pool::now();
    let stamp = |ago: u64| {
        Timestamp::from_unix_nanos(now.unix_nanos() - (ago as i64) * 1_000_000_000).to_rfc3339()
    };
    use ipam::Timestamp;
    let mk = |created: Option<String>, description: &str, cluster: &str| {
        let mut t = Tags::from([(tags::INSTANCE_ID.to_string(), "i-gone".to_string())]);
        if let Some(c) = created {
            t.insert(tags::CREATED_AT.to_string(), c);
        }
        if !cluster.is_empty() {
            t.insert(tags::CLUSTER_NAME.to_string(), cluster.to_string());
        }
        CreateEniRequest {
            subnet_id: h.node.subnet_id.clone(),
            security_groups: vec![h.node.security_group.clone()],
            description: description.to_string(),
            secondary_ips: 0,
            prefixes: 0,
            ipv6_addresses: 0,
            tags: t,
            conntrack: None,
        }
    };
    let old = h
        .operator
        .create_eni(&mk(Some(stamp(600)), "aws-K8S-i-gone", "demo"))
        .await
        .unwrap();
    let young = h
        .operator
        .create_eni(&mk(Some(stamp(60)), "aws-K8S-i-gone", "demo"))
        .await
        .unwrap();
    let unstamped = h
        .operator
        .create_eni(&mk(None, "aws-K8S-i-gone", "demo"))
        .await
        .unwrap();
    let garbled = h
        .operator
        .create_eni(&mk(Some("yesterday".into()), "aws-K8S-i-gone", "demo"))
        .await
        .unwrap();
    let not_ours = h
        .operator
        .create_eni(&mk(Some(stamp(600)), "someone else's", "demo"))
        .await
        .unwrap();
    let other_cluster = h
        .operator
        .create_eni(&mk(Some(stamp(600)), "aws-K8S-i-gone", "blue"))
        .await
        .unwrap();
    // Attached: in use, whatever its tags.
    let attached = h
        .operator
        .create_eni(&mk(Some(stamp(600)), "aws-K8S-i-gone", "demo"))
        .await
        .unwrap();
    attach(&h, &attached.id).await;

    let report = leaked_enis::clean_up(&h.operator, &h.node.vpc_id, "demo", now).await;
    let mut deleted = report.deleted.clone();
    deleted.sort();
    let mut expected = vec![old.id.clone(), garbled.id.clone()];
    expected.sort();
    assert_eq!(deleted, expected, "{report:?}");
    assert_eq!(report.stamped, vec![unstamped.id.clone()]);
    assert_eq!(report.too_young, vec![young.id.clone()]);
    assert!(report.errors.is_empty(), "{report:?}");
    let emu = server::lock(h.emu());
    for gone in &expected {
        assert!(emu.world.eni(gone).is_err(), "{gone} still exists");
    }
    for kept in [
        &young.id,
        &unstamped.id,
        &not_ours.id,
        &other_cluster.id,
        &attached.id,
    ] {
        assert!(emu.world.eni(kept).is_ok(), "{kept} was deleted");
    }
    assert!(
        emu.world
            .eni(&unstamped.id)
            .unwrap()
            .tags
            .contains_key(tags::CREATED_AT),
        "the unstamped ENI got its createdAt"
    );
}
