//! The real `aws-cni` binary, run (optionally inside a node namespace) with a CNI environment
//! and a network configuration on stdin; kernel snapshots of test namespaces.

use std::time::Duration;

use net::state::NetnsState;

use crate::TestNetns;
use crate::bins::workspace_bin;

pub const CONF: &str =
    r#"{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001"}"#;

/// The `aws-cni` binary.
pub fn aws_cni() -> std::path::PathBuf {
    workspace_bin("aws-cni")
}

pub use cni::testing::Run;

/// Runs the plugin (inside `netns` when given).
pub fn plugin(netns: Option<&str>, env: &[(&str, &str)], stdin: &str) -> Run {
    cni::testing::run_plugin(&aws_cni(), netns, env, stdin)
}

/// The CNI environment of one command for pod `default/<pod>` in container `cid`.
pub fn cni_env<'a>(
    command: &'a str,
    cid: &'a str,
    netns: &'a str,
    args: &'a str,
    socket: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", cid),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns),
        ("CNI_ARGS", args),
        ("IPAMD_GRPC_SOCKET", socket),
    ]
}

/// Kernel state of a named test namespace.
pub async fn snapshot(ns: &TestNetns) -> NetnsState {
    ns.state().await
}

/// Snapshots until three in a row, 500 ms apart, agree (the agent may still be wiring ENIs).
pub async fn settled(ns: &TestNetns) -> NetnsState {
    let mut last = snapshot(ns).await;
    let mut same = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = snapshot(ns).await;
        if now == last {
            same += 1;
            if same == 2 {
                return now;
            }
        } else {
            same = 0;
        }
        last = now;
    }
    panic!("node state never settled: {last:#?}");
}

/// What a runtime does after a successful DEL: removes the pod's network namespace (a fresh
/// one of the same name takes its place, for the test's next ADD). DEL leaves the pod's veth
/// pair to go with the namespace; this waits until `host_veth` has left `node`.
pub async fn runtime_removes_netns(pod: &TestNetns, node: &TestNetns, host_veth: &str) {
    pod.recreate();
    node.wait_link_gone(host_veth).await;
}
