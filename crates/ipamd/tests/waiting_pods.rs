//! Pods refused for an empty pool count as demand for the next growth (issue 16;
//! docs/pool-planner.md, deviation 12; `ipamd::waiting_pods`), on the EC2 + IMDS emulator.
//! A pod whose ADD is refused retries every 50 ms, as kubelet's runtime would.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use rpc::CniBackendClient;
use support::{Harness, add};
use tokio::time::{Instant, sleep};

/// Adds pod `i`, retrying refusals until `deadline`; its address.
async fn add_until_served(
    mut c: CniBackendClient<tonic::transport::Channel>,
    i: usize,
    deadline: Instant,
) -> Option<Ipv4Addr> {
    while Instant::now() < deadline {
        if let Ok(r) = c.add_network(add(i)).await {
            let r = r.into_inner();
            if r.success {
                return r.ip_allocation_metadata[0].i_pv4_addr.parse().ok();
            }
        }
        sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn burst(h: &Harness, pods: usize, within: Duration) -> BTreeMap<usize, Option<Ipv4Addr>> {
    let deadline = Instant::now() + within;
    let mut tasks = Vec::new();
    for i in 0..pods {
        let c = h.client().await;
        tasks.push((i, tokio::spawn(add_until_served(c, i, deadline))));
    }
    let mut got = BTreeMap::new();
    for (i, t) in tasks {
        got.insert(i, t.await.unwrap());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_ip_target_alone_still_serves_every_pod() {
    // Upstream stalls here: with MINIMUM_IP_TARGET=1 and no WARM_IP_TARGET, short is 0
    // once the one address is taken, and the second pod never gets one.
    let h = Harness::new("m5.large", "10.0.0.0/24", "waiting-min-only").await;
    let cfg = h.config(&[("MINIMUM_IP_TARGET", "1"), ("WARM_IP_TARGET", "0")]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    h.wait_for("the minimum address", |h| h.ec2_secondary_count() >= 1)
        .await;
    let got = burst(&h, 3, Duration::from_secs(30)).await;
    let served: BTreeSet<Ipv4Addr> = got.values().flatten().copied().collect();
    assert_eq!(
        served.len(),
        3,
        "every pod served, no address twice: {got:?}"
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_with_warm_ip_target_needs_few_assignments() {
    // WARM_IP_TARGET=2 MINIMUM_IP_TARGET=5 on an m5.large (3 ENIs x 9 secondary addresses):
    // 24 pods at once. Sized by the warm target alone (upstream), growth goes 2 addresses
    // a call; with the refused pods counted, a call covers every pod waiting at the time.
    let h = Harness::new("m5.large", "10.0.0.0/24", "waiting-warm-ip").await;
    let cfg = h.config(&[
        ("WARM_IP_TARGET", "2"),
        ("MINIMUM_IP_TARGET", "5"),
        ("IP_COOLDOWN_PERIOD", "0"),
    ]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    h.wait_for("the minimum addresses", |h| h.ec2_secondary_count() >= 5)
        .await;
    sleep(Duration::from_millis(300)).await;
    let before = h.ec2_calls("AssignPrivateIpAddresses");
    let got = burst(&h, 24, Duration::from_secs(60)).await;
    let served: BTreeSet<Ipv4Addr> = got.values().flatten().copied().collect();
    assert_eq!(
        served.len(),
        24,
        "every pod served, no address twice: {got:?}"
    );
    let assigns = h.ec2_calls("AssignPrivateIpAddresses") - before;
    // 19 addresses beyond the 5: by the warm target alone that is ~10 calls; ENI
    // boundaries (each new ENI comes with its own first assignment) keep it above 1.
    assert!(
        assigns <= 5,
        "{assigns} AssignPrivateIpAddresses for 24 pods"
    );
    agent.abort();
}
