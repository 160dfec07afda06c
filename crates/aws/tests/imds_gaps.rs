//! IMDS answering `200 OK` with an empty body for a value that must exist (the emulator's
//! `ImdsAnswer::Empty` fault). Taken as a value, an empty `instance-id` once made the agent
//! describe the ENIs of instance `""`, find none, and drop the restored pods' addresses
//! (docs/reliability.md, "Found by the suite"): the client must refuse it, retryably.

use std::sync::Arc;

use aws::{ApiStats, ErrorKind, Imds};
use ec2_emulator::faults::{ImdsAnswer, ImdsFault};
use ec2_emulator::server;
use ec2_emulator::testing::EmulatedNode;

fn empty_once(node: &EmulatedNode, path: &str) {
    server::lock(&node.emu).faults.imds_faults.push(ImdsFault {
        path_contains: path.into(),
        answer: ImdsAnswer::Empty,
        remaining: 1,
    });
}

#[tokio::test]
async fn an_empty_identity_value_is_a_retryable_error_not_a_value() {
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let imds = aws::imds_client(Some(&node.imds_endpoint), Arc::new(ApiStats::default())).unwrap();
    for path in [
        "instance-id",
        "instance-type",
        "placement/availability-zone",
    ] {
        empty_once(&node, path);
        let err = imds.identity().await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable, "{path}: {err}");
        assert!(err.kind.is_retryable(), "{path}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("/latest/meta-data/{path} is empty")),
            "{path}: {err}"
        );
        // The gap was one read long: the next read is the real document.
        let id = imds.identity().await.unwrap();
        assert_eq!(id.instance_id, node.instance_id);
    }
}

#[tokio::test]
async fn an_empty_eni_field_is_an_error_but_an_empty_list_is_an_empty_list() {
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let imds = aws::imds_client(Some(&node.imds_endpoint), Arc::new(ApiStats::default())).unwrap();
    let mac = imds.identity().await.unwrap().primary_mac;

    empty_once(&node, "/interface-id");
    let err = imds.eni(&mac).await.unwrap_err();
    assert!(err.to_string().contains("interface-id is empty"), "{err}");

    // A list path may be empty (an ENI with no secondary addresses yet): not an error.
    empty_once(&node, "/local-ipv4s");
    let eni = imds.eni(&mac).await.unwrap();
    assert!(eni.ipv4s.is_empty());
    assert_eq!(imds.eni(&mac).await.unwrap().eni_id, eni.eni_id);
}
