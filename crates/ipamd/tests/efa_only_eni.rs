//! EFA awareness (spec section 14 row 36; upstream `setUnmanagedENIs` skips `efa-only`
//! interfaces): an `efa-only` ENI attached to the node is never managed — no address is
//! assigned to it, it is never freed — even when it carries this instance's tag, and it
//! still takes its slot, so the pool grows on the ENIs that are left.

mod support;

use std::time::Duration;

use aws::{CreateEniRequest, Ec2, Tags};
use ec2_emulator::server;
use support::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_efa_only_eni_is_left_alone_and_keeps_its_slot() {
    // m5.large: 3 ENIs x 10 addresses.
    let h = Harness::new("m5.large", "10.0.0.0/24", "efa-only").await;
    let tagged = Tags::from([(
        "node.k8s.amazonaws.com/instance_id".to_string(),
        h.node.instance_id.clone(),
    )]);
    let efa = h
        .operator
        .create_eni(&CreateEniRequest {
            subnet_id: h.node.subnet_id.clone(),
            security_groups: vec![h.node.security_group.clone()],
            description: "EFA for the training job".into(),
            tags: tagged,
            ..CreateEniRequest::default()
        })
        .await
        .unwrap();
    h.operator
        .attach_eni(&efa.id, &h.node.instance_id, 1, 0)
        .await
        .unwrap();
    {
        let mut emu = server::lock(h.emu());
        let eni = emu.world.enis.get_mut(&efa.id).unwrap();
        eni.interface_type = "efa-only".into();
    }
    // More than two ENIs' worth: the agent would fill every slot it believes it has.
    let cfg = h.config(&[("MINIMUM_IP_TARGET", "40"), ("WARM_IP_TARGET", "5")]);
    let agent = h.start(cfg, h.options(Duration::from_millis(300), None));
    h.wait_for("the primary and one new ENI full", |h| {
        h.ec2_secondary_count() >= 18
    })
    .await;
    // Pool ticks (100 ms) and reconciles (300 ms) that find the pool short.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let emu = server::lock(h.emu());
    let eni = &emu.world.enis[&efa.id];
    assert!(
        eni.secondary_ips.is_empty(),
        "no address on the efa-only ENI"
    );
    assert!(
        eni.attachment.is_some(),
        "the efa-only ENI is still attached"
    );
    let attached = emu.world.attached_enis(&h.node.instance_id).len();
    drop(emu);
    assert_eq!(attached, 3, "primary, efa-only and one ENI of the agent's");
    assert_eq!(
        h.ec2_calls("CreateNetworkInterface"),
        2,
        "the operator's and one"
    );
    assert_eq!(h.ec2_calls("DetachNetworkInterface"), 0);
    agent.abort();
}
