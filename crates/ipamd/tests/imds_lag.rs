//! IMDS lagging 30 s behind EC2 (the emulator serves IMDS as it was 30 s ago), with
//! reconciliation running every 300 ms: after ENIs are attached and addresses assigned and
//! released, and again after a kill and restart, no address a pod holds is released (it
//! stays on an attached ENI in EC2 and in the checkpoint) and every address handed out is
//! one EC2 really has assigned at that moment.

mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ec2_emulator::server;
use support::{Harness, add_pod, del_pod};

const LAG_SECS: u64 = 30;

/// The two invariants, checked now.
fn check(h: &Harness, pods: &BTreeMap<usize, Ipv4Addr>, when: &str) {
    let ec2 = h.ec2_assigned();
    let saved = h.checkpoint_pods();
    for (i, ip) in pods {
        assert!(
            ec2.contains(ip),
            "{when}: pod {i}'s {ip} is no longer assigned in EC2"
        );
        assert_eq!(
            saved.get(&format!("container-{i}")),
            Some(ip),
            "{when}: pod {i} lost its {ip} in the checkpoint"
        );
    }
}

/// Keeps checking for `secs` (the lag window).
async fn hold(h: &Harness, pods: &BTreeMap<usize, Ipv4Addr>, secs: u64, when: &str) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        check(h, pods, when);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_imds_never_costs_a_pod_its_address_nor_hands_out_an_unassigned_one() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "imds-lag").await;
    server::lock(h.emu()).faults.imds_lag_secs = LAG_SECS;
    let cfg = h.config(&[("WARM_IP_TARGET", "3"), ("IP_COOLDOWN_PERIOD", "1")]);
    let opts = h.options(Duration::from_millis(300), None);
    let agent = h.start(cfg.clone(), opts.clone());
    let mut c = h.client().await;

    // Growth: 12 pods need a second ENI (9 addresses per ENI on an m5.large).
    let mut pods = BTreeMap::new();
    for i in 0..12 {
        let ip = add_pod(&mut c, i).await;
        assert!(
            h.ec2_assigned().contains(&ip),
            "pod {i} was handed {ip}, which EC2 has not assigned"
        );
        pods.insert(i, ip);
    }
    assert!(h.ec2_enis().len() >= 2, "a second ENI was attached");

    // Shrink: half the pods go; the surplus goes back to EC2 while IMDS still lists it.
    let before = h.ec2_secondary_count();
    for i in 0..6 {
        del_pod(&mut c, i).await;
        pods.remove(&i);
    }
    h.wait_for("addresses given back to EC2", |h| {
        h.ec2_secondary_count() < before
    })
    .await;
    // New pods during the lag get only addresses EC2 has assigned.
    for i in 12..18 {
        let ip = add_pod(&mut c, i).await;
        assert!(
            h.ec2_assigned().contains(&ip),
            "pod {i} was handed {ip}, which EC2 has not assigned (stale IMDS view?)"
        );
        pods.insert(i, ip);
    }
    hold(&h, &pods, LAG_SECS + 2, "after attach").await;
    assert!(!agent.is_finished(), "the agent is running");

    // kill -9 during fresh changes, then restart while IMDS still lags.
    for i in 18..22 {
        pods.insert(i, add_pod(&mut c, i).await);
    }
    agent.abort();
    let _ = agent.await;
    let agent = h.start(cfg, opts);
    let mut c = h.client().await;
    for (i, ip) in &pods {
        assert_eq!(add_pod(&mut c, *i).await, *ip, "pod {i} kept its address");
    }
    for i in 22..26 {
        let ip = add_pod(&mut c, i).await;
        assert!(h.ec2_assigned().contains(&ip), "pod {i}: {ip}");
        pods.insert(i, ip);
    }
    hold(&h, &pods, LAG_SECS + 2, "after restart").await;
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}
