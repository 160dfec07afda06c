//! New ENIs copy the primary ENI's connection tracking timeouts (upstream's
//! `setConnectionTrackingSettings` / `createENIInput` in `pkg/awsutils/awsutils.go`), read
//! back from the EC2 emulator.

mod support;

use std::time::Duration;

use ec2_emulator::model::ConnTrack;
use ec2_emulator::server;
use support::Harness;

/// More addresses than the primary ENI holds (9 on an m5.large): the pool adds an ENI.
const TWO_ENIS: &[(&str, &str)] = &[("WARM_IP_TARGET", "1"), ("MINIMUM_IP_TARGET", "15")];

/// The timeouts EC2 holds for each attached ENI, by device index.
fn conntrack_by_device(h: &Harness) -> Vec<(u32, ConnTrack)> {
    let emu = server::lock(h.emu());
    let mut out: Vec<_> = emu
        .world
        .attached_enis(&h.node.instance_id)
        .iter()
        .map(|e| {
            let device = e.attachment.as_ref().map(|a| a.device_index).unwrap_or(0);
            (device, e.conntrack)
        })
        .collect();
    out.sort_by_key(|(d, _)| *d);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_enis_get_the_primary_enis_connection_tracking_timeouts() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "conntrack").await;
    // Two of the three set: the unset one must stay EC2's default on the new ENI too.
    let primary = ConnTrack {
        tcp_established_timeout: Some(7200),
        udp_stream_timeout: Some(120),
        udp_timeout: None,
    };
    {
        let mut emu = server::lock(h.emu());
        let id = emu.world.attached_enis(&h.node.instance_id)[0].id.clone();
        emu.world.eni_mut(&id).unwrap().conntrack = primary;
    }
    let agent = h.start(h.config(TWO_ENIS), h.options(Duration::from_secs(60), None));
    h.client().await;
    h.wait_for("a second ENI", |h| h.ec2_enis().len() >= 2)
        .await;

    let seen = conntrack_by_device(&h);
    assert_eq!(seen[0], (0, primary), "the primary ENI changed");
    assert_eq!(seen[1], (1, primary), "the new ENI's timeouts");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_timeouts_on_the_primary_new_enis_get_none() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "conntrack-none").await;
    let agent = h.start(h.config(TWO_ENIS), h.options(Duration::from_secs(60), None));
    h.client().await;
    h.wait_for("a second ENI", |h| h.ec2_enis().len() >= 2)
        .await;
    let seen = conntrack_by_device(&h);
    assert_eq!(
        seen[1],
        (1, ConnTrack::default()),
        "timeouts out of nowhere"
    );
    agent.abort();
}
