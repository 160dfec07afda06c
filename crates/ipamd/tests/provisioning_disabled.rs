//! `DISABLE_NETWORK_RESOURCE_PROVISIONING=true` end to end against the EC2 + IMDS emulator
//! (spec section 14 row 43; upstream's `disableENIProvisioning` checks in `ipamd.go`): the
//! agent serves pods from the addresses the node already has, and sends EC2 no mutating
//! call — no ENI, no address, no tag, no security-group change — however short the pool
//! runs, while it keeps describing what is there.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use aws::Ec2;
use ec2_emulator::server;
use support::{Harness, add, del};

/// Calls per EC2 action the emulator has answered so far.
fn calls(h: &Harness) -> BTreeMap<String, u64> {
    server::lock(h.emu()).faults.calls.clone()
}

/// The calls of `after` that `before` did not have, per action, for actions that change
/// something (everything but `Describe*`).
fn new_mutations(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(action, _)| !action.starts_with("Describe"))
        .filter_map(|(action, n)| {
            let extra = n - before.get(action).copied().unwrap_or(0);
            (extra > 0).then(|| (action.clone(), extra))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_served_from_existing_addresses_and_ec2_is_never_changed() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "no-provisioning").await;
    let primary = {
        let emu = server::lock(h.emu());
        let enis = emu.world.attached_enis(&h.node.instance_id);
        enis.first().expect("the primary ENI").id.clone()
    };
    // The operator (or another tool) provisions the node: three secondary addresses.
    let assigned: BTreeSet<Ipv4Addr> = h
        .operator
        .assign_ips(&primary, 3)
        .await
        .unwrap()
        .ips
        .into_iter()
        .collect();
    assert_eq!(assigned.len(), 3);
    let before = calls(&h);

    // Targets that would grow the pool at once, and a fast reconcile.
    let cfg = h.config(&[
        ("DISABLE_NETWORK_RESOURCE_PROVISIONING", "true"),
        ("WARM_IP_TARGET", "5"),
        ("MINIMUM_IP_TARGET", "10"),
    ]);
    let agent = h.start(cfg, h.options(Duration::from_millis(300), None));
    let mut c = h.client().await;
    let mut got = BTreeSet::new();
    for i in 0..3 {
        let r = c.add_network(add(i)).await.unwrap().into_inner();
        assert!(r.success, "pod {i}: {r:?}");
        got.insert(
            r.ip_allocation_metadata[0]
                .i_pv4_addr
                .parse::<Ipv4Addr>()
                .unwrap(),
        );
    }
    assert_eq!(got, assigned, "pods got the addresses the node already had");

    // Exhausted: the fourth pod is refused rather than provisioned for.
    match c.add_network(add(3)).await {
        Ok(r) => assert!(!r.get_ref().success, "a fourth address from nowhere: {r:?}"),
        Err(status) => assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}"),
    }
    // A released address goes back to the pool, not to EC2.
    let r = c.del_network(del(0)).await.unwrap().into_inner();
    assert!(r.success, "{r:?}");
    // Many pool ticks (100 ms), security-group refreshes (200 ms) and reconciles (300 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!agent.is_finished(), "the agent stopped: {:?}", agent.await);

    let after = calls(&h);
    assert_eq!(
        new_mutations(&before, &after),
        BTreeMap::new(),
        "mutating EC2 calls with provisioning disabled"
    );
    assert!(
        after
            .iter()
            .any(|(a, n)| a.starts_with("Describe") && *n > before.get(a).copied().unwrap_or(0)),
        "the agent still reads EC2 (start-up, reconcile): {after:?}"
    );
    assert_eq!(h.ec2_enis().len(), 1, "no ENI was created");
    let on_primary = h.ec2_secondary_count();
    assert_eq!(on_primary, 3, "EC2 still holds the three addresses");
    agent.abort();
}
