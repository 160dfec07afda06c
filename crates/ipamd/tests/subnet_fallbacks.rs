//! The two fallbacks of subnet discovery (spec section 14 row 11; upstream's `createENI` and
//! `isSubnetValidForENICreation` in `awsutils.go`), against the EC2 + IMDS emulator:
//! when `DescribeSubnets` fails, a new ENI goes to the node's own subnet; when the best
//! tagged subnet answers `InsufficientFreeAddressesInSubnet`, the next candidate is tried.

mod support;

use std::time::Duration;

use aws::Ec2;
use aws::Tags;
use ec2_emulator::faults::FailNext;
use ec2_emulator::model::ErrorCode;
use ec2_emulator::server;
use support::Harness;

/// Creates subnets `cidrs` in the node's VPC and zone, tagged `kubernetes.io/role/cni=1`.
async fn tagged_subnets(h: &Harness, cidrs: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for cidr in cidrs {
        let id = {
            let mut emu = server::lock(h.emu());
            let vpc = h.node.vpc_id.clone();
            emu.world
                .create_subnet(&vpc, cidr.parse().unwrap(), "us-west-2a")
                .unwrap()
        };
        h.operator
            .create_tags(
                std::slice::from_ref(&id),
                &Tags::from([("kubernetes.io/role/cni".to_string(), "1".to_string())]),
            )
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// The subnet of the ENI at device index 1, once there is one.
async fn second_eni_subnet(h: &Harness) -> String {
    h.wait_for("a second ENI", |h| h.ec2_enis().len() == 2)
        .await;
    let emu = server::lock(h.emu());
    let enis = emu.world.attached_enis(&h.node.instance_id);
    enis.iter()
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 1))
        .expect("the ENI at device 1")
        .subnet_id
        .clone()
}

fn fail_next(h: &Harness, action: &str, code: ErrorCode, remaining: u32) {
    server::lock(h.emu()).faults.fail_next.push(FailNext {
        action: action.into(),
        code,
        remaining,
    });
}

/// MINIMUM_IP_TARGET=12 needs a second ENI on an m5.large (9 addresses per ENI).
const GROW: [(&str, &str); 2] = [("MINIMUM_IP_TARGET", "12"), ("WARM_IP_TARGET", "1")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_subnet_discovery_falls_back_to_the_nodes_subnet() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "discovery-fails").await;
    let tagged = tagged_subnets(&h, &["10.0.16.0/20"]).await;
    // Every DescribeSubnets of the agent is refused (not retryable).
    fail_next(
        &h,
        "DescribeSubnets",
        ErrorCode::UnauthorizedOperation,
        1000,
    );
    let agent = h.start(h.config(&GROW), h.options(Duration::from_secs(60), None));
    let subnet = second_eni_subnet(&h).await;
    assert_eq!(
        subnet, h.node.subnet_id,
        "the node's subnet, not the tagged {tagged:?}"
    );
    let refused = server::lock(h.emu())
        .faults
        .injected
        .get("DescribeSubnets")
        .copied()
        .unwrap_or(0);
    assert!(
        refused >= 1,
        "the agent asked for the subnets and was refused"
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_subnet_passes_the_eni_to_the_next_candidate() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "subnet-exhausted").await;
    // Most free first: the /20, then the /22, then the node's /24.
    let ids = tagged_subnets(&h, &["10.0.16.0/20", "10.0.4.0/22"]).await;
    // EC2 says the /20 is out of addresses for the first ENI the agent creates.
    fail_next(
        &h,
        "CreateNetworkInterface",
        ErrorCode::InsufficientFreeAddressesInSubnet,
        1,
    );
    let agent = h.start(h.config(&GROW), h.options(Duration::from_secs(60), None));
    let subnet = second_eni_subnet(&h).await;
    assert_eq!(subnet, ids[1], "the /22, the next candidate after the /20");
    let creates = server::lock(h.emu())
        .faults
        .calls
        .get("CreateNetworkInterface")
        .copied()
        .unwrap_or(0);
    assert_eq!(creates, 2, "one refused create, one in the next subnet");
    // No ENI was left behind in the refused subnet.
    let described = h
        .operator
        .describe_instance_enis(&h.node.instance_id)
        .await
        .unwrap();
    assert!(
        described.iter().all(|e| e.subnet_id != ids[0]),
        "{described:?}"
    );
    agent.abort();
}
