//! A subnet too small for the pool (a /27 in the emulator: 27 usable, the node's primary
//! address taken): the primary ENI fills up, a second ENI cannot be created
//! (InsufficientFreeAddressesInSubnet), pods beyond the pool get an error that says the
//! subnet is exhausted, and ipamd backs off instead of hammering EC2 every tick.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use ec2_emulator::server;
use support::{Harness, add, add_pod};

fn mutating_calls(h: &Harness) -> u64 {
    let emu = server::lock(h.emu());
    ["AssignPrivateIpAddresses", "CreateNetworkInterface"]
        .iter()
        .map(|a| emu.faults.calls.get(*a).copied().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_subnet_gives_a_clear_error_and_a_back_off() {
    let h = Harness::new("m5.xlarge", "10.0.0.0/27", "exhausted").await;
    // m5.xlarge: 4 ENIs x 14 secondary addresses; MINIMUM_IP_TARGET=40 wants more than the
    // /27 holds (27 usable minus the node's own address, minus one per extra ENI).
    let cfg = h.config(&[("MINIMUM_IP_TARGET", "40"), ("WARM_IP_TARGET", "1")]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    let mut c = h.client().await;

    // The primary ENI fills up (14); a second ENI with 14 more does not fit in the 12
    // addresses left, and EC2 says so.
    h.wait_for("a refused CreateNetworkInterface", |h| {
        let emu = server::lock(h.emu());
        emu.faults
            .calls
            .get("CreateNetworkInterface")
            .copied()
            .unwrap_or(0)
            >= 1
    })
    .await;
    let held = h.ec2_secondary_count();
    assert_eq!(held, 14, "the primary ENI's addresses");
    assert_eq!(h.ec2_enis().len(), 1, "no second ENI");

    // Every address it holds can go to a pod, each to one pod.
    let mut ips = BTreeSet::new();
    for i in 0..held {
        assert!(
            ips.insert(add_pod(&mut c, i).await),
            "address handed out twice"
        );
    }
    // One more: a clear error naming the cause.
    let reply = c.add_network(add(held)).await;
    let message = match reply {
        Ok(r) => {
            let r = r.into_inner();
            assert!(!r.success, "got an address from an empty subnet: {r:?}");
            format!("{r:?}")
        }
        Err(status) => status.message().to_string(),
    };
    assert!(
        message.contains("subnet has no free addresses"),
        "operator-readable cause: {message}"
    );

    // Back-off: for the next two seconds (20 pool ticks) at most one more attempt.
    let before = mutating_calls(&h);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = mutating_calls(&h) - before;
    assert!(attempts <= 1, "{attempts} EC2 attempts during the back-off");
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}
