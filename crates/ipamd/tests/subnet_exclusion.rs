//! Subnet exclusion of an ENI in use, end to end: the EC2 + IMDS emulator, the whole agent,
//! its gRPC socket and introspection. The node's second ENI is in a subnet tagged
//! `kubernetes.io/role/cni=1`; with pods on it, the operator re-tags that subnet `0`. The
//! agent marks the ENI `IsExcludedForPodIPs`, gives its unused addresses back to EC2, new
//! pods never get an address from it (a third ENI in another subnet serves them), the pods
//! on it keep theirs, and once they are deleted the ENI is detached and deleted in EC2.
//! Untagging clears the flag; a subnet tagged before the agent starts is honoured at start
//! (upstream's `setupENI` check).

mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use aws::Tags;
use ec2_emulator::server;
use ipnet::Ipv4Net;
use serde_json::Value;
use support::{Harness, add_pod, del_pod, free_port, http_get};

const ZONE: &str = "us-west-2a";
const ROLE: &str = "kubernetes.io/role/cni";

/// A subnet with more free addresses than the node's /24, tagged for the CNI: subnet
/// discovery puts new ENIs there first.
fn pod_subnet(h: &Harness) -> (String, Ipv4Net) {
    let cidr: Ipv4Net = "10.0.16.0/20".parse().unwrap();
    let id = server::lock(h.emu())
        .world
        .create_subnet(&h.node.vpc_id, cidr, ZONE)
        .unwrap();
    tag(h, &id, "1");
    (id, cidr)
}

fn tag(h: &Harness, subnet: &str, value: &str) {
    let mut emu = server::lock(h.emu());
    let tags = Tags::from([(ROLE.to_string(), value.to_string())]);
    emu.world.create_tags(&[subnet.to_string()], &tags).unwrap();
}

/// (ENI id, subnet, secondary addresses) of every ENI attached to the instance.
fn attached(h: &Harness) -> Vec<(String, String, BTreeSet<Ipv4Addr>)> {
    let emu = server::lock(h.emu());
    emu.world
        .attached_enis(&h.node.instance_id)
        .iter()
        .map(|e| (e.id.clone(), e.subnet_id.clone(), e.secondary_ips.clone()))
        .collect()
}

fn eni_in(h: &Harness, subnet: &str) -> Option<String> {
    attached(h)
        .into_iter()
        .find(|(_, s, _)| s == subnet)
        .map(|(id, _, _)| id)
}

/// `IsExcludedForPodIPs` of `eni` in `/v1/enis` (card 0).
async fn excluded_flag(addr: SocketAddr, eni: &str) -> Option<bool> {
    let body = http_get(addr, "/v1/enis").await;
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["0"]["ENIs"][eni]["IsExcludedForPodIPs"].as_bool()
}

async fn wait_flag(addr: SocketAddr, eni: &str, want: bool) {
    for _ in 0..300 {
        if excluded_flag(addr, eni).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("introspection never said IsExcludedForPodIPs={want} for {eni}");
}

fn config(h: &Harness) -> config::Config {
    h.config(&[
        // 12 addresses: the primary ENI's 9 and a second ENI (m5.large).
        ("MINIMUM_IP_TARGET", "12"),
        ("WARM_IP_TARGET", "2"),
        ("IP_COOLDOWN_PERIOD", "1"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eni_whose_subnet_is_tagged_zero_keeps_its_pods_serves_no_new_ones_and_is_freed() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let h = Harness::new("m5.large", "10.0.0.0/24", "subnet-exclusion").await;
    let (subnet_b, cidr_b) = pod_subnet(&h);
    let intro = free_port();
    // Reconcile every 200 ms: subnet tags are re-read every fifth round (1 s).
    let agent = h.start(
        config(&h),
        h.options(Duration::from_millis(200), Some(intro)),
    );
    let mut c = h.client().await;
    h.wait_for("a second ENI in the tagged subnet", |h| {
        eni_in(h, &subnet_b).is_some()
    })
    .await;
    let eni_b = eni_in(&h, &subnet_b).unwrap();

    // 12 pods: the primary ENI's 9, then the second ENI's.
    let mut ips = Vec::new();
    for i in 0..12 {
        ips.push(add_pod(&mut c, i).await);
    }
    let on_b: Vec<usize> = (0..12).filter(|&i| cidr_b.contains(&ips[i])).collect();
    assert!(!on_b.is_empty(), "pods on the second ENI: {ips:?}");
    let b_pod_ips: BTreeSet<Ipv4Addr> = on_b.iter().map(|&i| ips[i]).collect();
    assert_eq!(excluded_flag(intro, &eni_b).await, Some(false));

    // The operator takes the subnet away from pods.
    tag(&h, &subnet_b, "0");
    wait_flag(intro, &eni_b, true).await;
    // Its unused addresses go back to EC2; the pods' stay.
    h.wait_for("the excluded ENI's unused addresses released", |h| {
        attached(h)
            .iter()
            .any(|(id, _, held)| id == &eni_b && *held == b_pod_ips)
    })
    .await;

    // New pods: never from the excluded ENI; a third ENI (the node's subnet) serves them.
    for i in 12..18 {
        let ip = add_pod(&mut c, i).await;
        assert!(
            !cidr_b.contains(&ip),
            "pod {i} got {ip} from the excluded subnet"
        );
        ips.push(ip);
    }
    let enis = attached(&h);
    assert_eq!(enis.len(), 3, "{enis:?}");
    assert!(
        enis.iter().filter(|(_, s, _)| s == &subnet_b).count() == 1,
        "no new ENI in the excluded subnet: {enis:?}"
    );
    // The pods on it kept their addresses: in the checkpoint and still assigned in EC2.
    let saved = h.checkpoint_pods();
    for &i in &on_b {
        assert_eq!(saved.get(&format!("container-{i}")), Some(&ips[i]));
    }
    assert_eq!(excluded_flag(intro, &eni_b).await, Some(true));

    // Once its pods are gone (and their addresses cooled down, and the ENI is a minute old),
    // the ENI is detached and deleted.
    for &i in &on_b {
        del_pod(&mut c, i).await;
    }
    let mut freed = false;
    for _ in 0..1800 {
        if !server::lock(h.emu()).world.enis.contains_key(&eni_b) {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        freed,
        "the empty excluded ENI {eni_b} was not deleted in EC2"
    );
    // Nobody else lost an address.
    let saved = h.checkpoint_pods();
    for i in (0..18).filter(|i| !on_b.contains(i)) {
        assert_eq!(
            saved.get(&format!("container-{i}")),
            Some(&ips[i]),
            "pod {i}"
        );
    }
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_tagged_before_start_is_honoured_at_start_and_untagging_clears_it() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "subnet-exclusion-start").await;
    let (subnet_b, cidr_b) = pod_subnet(&h);
    let intro = free_port();
    let agent = h.start(config(&h), h.options(Duration::from_secs(60), Some(intro)));
    let c = h.client().await;
    h.wait_for("a second ENI in the tagged subnet", |h| {
        eni_in(h, &subnet_b).is_some()
    })
    .await;
    let eni_b = eni_in(&h, &subnet_b).unwrap();
    h.wait_for("addresses on the second ENI", |h| {
        attached(h)
            .iter()
            .any(|(id, _, held)| id == &eni_b && !held.is_empty())
    })
    .await;
    agent.abort();
    let _ = agent.await;

    // Tagged while the agent is down: excluded from the first request on (upstream's
    // check at start; reconcile, which re-reads the tags while running, is a minute away).
    tag(&h, &subnet_b, "0");
    let agent = h.start(config(&h), h.options(Duration::from_secs(60), Some(intro)));
    let mut c2 = h.client().await;
    assert_eq!(excluded_flag(intro, &eni_b).await, Some(true));
    for i in 0..12 {
        let ip = add_pod(&mut c2, i).await;
        assert!(
            !cidr_b.contains(&ip),
            "pod {i} got {ip} from the excluded subnet"
        );
    }
    agent.abort();
    let _ = agent.await;

    // Untagged while the agent runs: the flag clears at the next refresh (1 s here).
    let agent = h.start(
        config(&h),
        h.options(Duration::from_millis(200), Some(intro)),
    );
    let _c3 = h.client().await;
    assert_eq!(excluded_flag(intro, &eni_b).await, Some(true));
    tag(&h, &subnet_b, "1");
    wait_flag(intro, &eni_b, false).await;
    drop(c);
    agent.abort();
}
