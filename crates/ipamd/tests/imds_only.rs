//! `ENABLE_IMDS_ONLY_MODE=true` end to end against the EC2 + IMDS emulator (upstream's
//! `DescribeAllENIs` in `awsutils.go`, docs/ipamd.md "IMDS-only mode"): the agent starts
//! from the addresses IMDS lists, serves pods from them, and the emulator sees no EC2 call
//! at all from it: no Describe, no mutation.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use aws::Ec2;
use ec2_emulator::server;
use support::{Harness, add};

fn calls(h: &Harness) -> BTreeMap<String, u64> {
    server::lock(h.emu()).faults.calls.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_the_addresses_imds_lists_and_ec2_is_never_called() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "imds-only").await;
    let primary = {
        let emu = server::lock(h.emu());
        let enis = emu.world.attached_enis(&h.node.instance_id);
        enis.first().expect("the primary ENI").id.clone()
    };
    // Someone else (the operator) gave the primary ENI four secondary addresses.
    let assigned: BTreeSet<Ipv4Addr> = h
        .operator
        .assign_ips(&primary, 4)
        .await
        .unwrap()
        .ips
        .into_iter()
        .collect();
    assert_eq!(assigned.len(), 4);
    let before = calls(&h);

    let cfg = h.config(&[("ENABLE_IMDS_ONLY_MODE", "true"), ("WARM_IP_TARGET", "8")]);
    let agent = h.start(cfg, h.options(Duration::from_millis(300), None));
    let mut c = h.client().await;
    let mut got = BTreeSet::new();
    for i in 0..4 {
        let r = c.add_network(add(i)).await.unwrap().into_inner();
        assert!(r.success, "pod {i}: {r:?}");
        let ip: Ipv4Addr = r.ip_allocation_metadata[0].i_pv4_addr.parse().unwrap();
        got.insert(ip);
    }
    assert_eq!(got, assigned, "pods got exactly the addresses IMDS lists");

    // The pool is exhausted and may not grow: the fifth pod is refused, nothing is asked.
    match c.add_network(add(4)).await {
        Ok(r) => assert!(!r.get_ref().success, "a fifth address from nowhere: {r:?}"),
        Err(status) => assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}"),
    }
    // Several pool ticks and reconciliations.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!agent.is_finished(), "the agent stopped: {:?}", agent.await);
    let after = calls(&h);
    assert_eq!(
        after, before,
        "the agent sent EC2 calls in IMDS-only mode (before/after per action)"
    );
    assert_eq!(h.ec2_enis().len(), 1, "no ENI was created");
    agent.abort();
}
