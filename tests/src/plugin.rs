//! The real `aws-cni` binary, run (optionally inside a node namespace) with a CNI environment
//! and a network configuration on stdin; kernel snapshots of test namespaces.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use net::netns::Netns;
use net::state::NetnsState;
use serde_json::Value;

use crate::TestNetns;
use crate::bins::workspace_bin;

pub const CONF: &str =
    r#"{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001"}"#;

/// The `aws-cni` binary.
pub fn aws_cni() -> std::path::PathBuf {
    workspace_bin("aws-cni")
}

/// One plugin run.
pub struct Run {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The CNI error code printed on stdout.
    pub fn code(&self) -> u64 {
        serde_json::from_str::<Value>(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no code: {}", self.stdout))
    }

    /// stdout as JSON (the whole of stdout must be one document).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.stdout))
    }
}

/// Runs the plugin (inside `netns` when given).
pub fn plugin(netns: Option<&str>, env: &[(&str, &str)], stdin: &str) -> Run {
    let bin = aws_cni();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    let mut child = cmd
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run aws-cni");
    child
        .stdin
        .take()
        .expect("the plugin's stdin")
        .write_all(stdin.as_bytes())
        .expect("write the network configuration");
    let out = child.wait_with_output().expect("the plugin's output");
    Run {
        rc: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
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
    NetnsState::capture_in(&Netns::open(ns.path()).expect("open the test namespace"))
        .await
        .expect("capture the namespace's state")
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

/// What a runtime does after a successful DEL: removes the pod's network namespace (here a
/// fresh one of the same name takes its place, for the test's next ADD). DEL leaves the
/// pod's veth pair to go with the namespace; this waits (up to 5 s) until the kernel has
/// destroyed `host_veth` on `node`.
pub async fn runtime_removes_netns(pod: &TestNetns, node: &TestNetns, host_veth: &str) {
    for args in [
        ["netns", "del", pod.0.as_str()],
        ["netns", "add", pod.0.as_str()],
    ] {
        let ok = std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?}");
    }
    for _ in 0..250 {
        if !node.ip(&["-o", "link"]).contains(host_veth) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{host_veth} outlived its pod's namespace by 5 s");
}
