//! `MissingIAMPermissions` for any EC2 call the node's role may not make (spec section 14
//! row 41; upstream's `checkAPIErrorAndBroadcastEvent`, run on every EC2 error in
//! `pkg/awsutils/awsutils.go`): here the leaked-ENI cleanup's `DescribeNetworkInterfaces`,
//! not pool growth, is refused, and the agent posts the Warning event about its pod naming
//! `ec2:DescribeNetworkInterfaces`. API server: `k8s::testing::FakeApiServer`; EC2 and
//! IMDS: the emulator.

mod support;

use std::time::Duration;

use ec2_emulator::faults::FailNext;
use ec2_emulator::model::ErrorCode;
use ec2_emulator::server;
use k8s::testing::FakeApiServer;
use serde_json::{Value, json};
use support::Harness;

const NODE: &str = "ip-10-0-0-4.us-west-2.compute.internal";
const POD: &str = "aws-node-x7k2p";

/// The bodies of the events the agent posted with `reason`.
fn events(api: &FakeApiServer, reason: &str) -> Vec<Value> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/events"))
        .filter_map(|r| r.body)
        .filter(|b| b["reason"] == reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cleanup_call_raises_missing_iam_permissions() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "iam-events").await;
    let api = FakeApiServer::start().await.unwrap();
    api.apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}));
    let cfg = h.config(&[
        ("MY_NODE_NAME", NODE),
        ("MY_POD_NAME", POD),
        ("CLUSTER_ENDPOINT", &api.url()),
    ]);
    let mut opts = h.options(Duration::from_secs(60), None);
    // The leaked-ENI cleanup lists the VPC's available ENIs every 300 ms.
    opts.timers.leaked_enis = Duration::from_millis(300);
    opts.timers.leaked_enis_stagger = Duration::ZERO;
    let agent = h.start(cfg, opts);
    let _client = h.client().await;
    // The pool is at its target; a while with no refusal sends no such event.
    tokio::time::sleep(ipamd::iam_events::EVERY + Duration::from_secs(1)).await;
    assert_eq!(events(&api, "MissingIAMPermissions"), Vec::<Value>::new());

    server::lock(h.emu()).faults.fail_next.push(FailNext {
        action: "DescribeNetworkInterfaces".into(),
        code: ErrorCode::UnauthorizedOperation,
        remaining: 3,
    });
    h.wait_for("the refused cleanup's event", |_| {
        !events(&api, "MissingIAMPermissions").is_empty()
    })
    .await;
    let sent = events(&api, "MissingIAMPermissions");
    assert_eq!(sent.len(), 1, "repeated refusals are one event: {sent:#?}");
    let ev = &sent[0];
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["action"], "ec2:DescribeNetworkInterfaces");
    assert_eq!(ev["regarding"]["kind"], "Pod");
    assert_eq!(ev["regarding"]["name"], POD);
    assert_eq!(ev["related"]["name"], NODE);
    let note = ev["note"].as_str().unwrap_or_default();
    assert!(note.contains("DescribeNetworkInterfaces"), "{note}");
    assert!(!agent.is_finished(), "the agent stopped: {:?}", agent.await);
    agent.abort();
}
