//! An instance type newer than the limits table (spec section 14 row 48; upstream's
//! `GetInstanceTypeLimits` falls back to `DescribeInstanceTypes` when `vpc_ip_resource_limit`
//! does not know the type): the agent reads the limits from EC2 and keeps to them.

mod support;

use std::time::Duration;

use ec2_emulator::model::InstanceTypeInfo;
use ec2_emulator::testing::EmulatedNode;
use support::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_outside_the_table_gets_its_limits_from_ec2_and_keeps_to_them() {
    // Not in the table (nor in upstream v1.23.1's): 2 ENIs x 4 IPv4 addresses, Nitro.
    let name = "x9zq.large";
    assert!(
        limits::lookup(name).is_none(),
        "{name} must be unknown to the table"
    );
    let ty = InstanceTypeInfo::single_card(name, 2, 4);
    let node = EmulatedNode::start_unlisted(ty, "10.0.0.0/24").await;
    let h = Harness::with_node(node, "unlisted-type").await;
    // Ask for far more than the type holds: the pool must stop at 2 ENIs x 3 secondaries.
    let cfg = h.config(&[("MINIMUM_IP_TARGET", "50"), ("WARM_IP_TARGET", "5")]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    h.wait_for("both ENIs full", |h| h.ec2_secondary_count() >= 6)
        .await;
    // Several more pool ticks (every 100 ms) that find the pool short.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        h.ec2_calls("DescribeInstanceTypes") >= 1,
        "limits read from EC2"
    );
    let enis = h.ec2_enis();
    assert_eq!(
        enis.len(),
        2,
        "never more ENIs than the type allows: {enis:?}"
    );
    assert_eq!(h.ec2_secondary_count(), 6, "3 secondaries on each ENI");
    // An agent that believed in more room would create (and fail to attach) a third ENI.
    assert_eq!(h.ec2_calls("CreateNetworkInterface"), 1);
    assert_eq!(h.ec2_calls("AttachNetworkInterface"), 1);
    agent.abort();
}
