//! Shared by the plugin's integration tests: run the real `aws-cni` binary (optionally in a
//! node namespace), start the real agent against the EC2 emulator with host networking in a
//! node namespace made by the test, read its checkpoint, snapshot kernel state.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ec2_emulator::server;
use ec2_emulator::testing::{EmulatedNode, TestNetns};
use net::netns::Netns;
use net::state::NetnsState;
use serde_json::Value;

pub const CONF: &str =
    r#"{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001"}"#;

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
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_aws-cni")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_aws-cni")),
    };
    let mut child = cmd
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
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
    NetnsState::capture_in(&Netns::open(ns.path()).unwrap())
        .await
        .unwrap()
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

/// A running agent (`ipamd::agent::run`) for a node namespace.
pub struct Agent {
    pub emulated: EmulatedNode,
    pub dir: PathBuf,
    pub socket: String,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    /// Starts the agent; `fault` may arm emulator faults before it starts. Waits for the
    /// socket and, when `wait_ips` > 0, for that many secondary IPs on the primary ENI.
    pub async fn start(
        node: &TestNetns,
        tag: &str,
        wait_ips: usize,
        fault: impl FnOnce(&mut ec2_emulator::faults::Faults),
    ) -> Agent {
        let emulated = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
        let (emu, instance) = (emulated.emu.clone(), emulated.instance_id.clone());
        node.add_primary_interface(&emulated.primary_mac, emulated.primary_ip);
        node.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
        let fwd = Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.0,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .status()
            .unwrap();
        assert!(fwd.success());
        {
            let mut e = server::lock(&emu);
            e.set_hotplug(&instance, &node.0);
            fault(&mut e.faults);
        }
        let dir = std::env::temp_dir().join(format!("cni-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ipamd.sock");
        let cfg = config::Config::from_vars([
            ("AWS_EC2_ENDPOINT", emulated.ec2_endpoint.as_str()),
            (
                "AWS_VPC_K8S_CNI_BACKING_STORE",
                &dir.join("ipam.json").display().to_string(),
            ),
        ])
        .unwrap();
        let opts = ipamd::agent::AgentOptions {
            grpc_socket: socket.clone(),
            metrics_addr: None,
            introspection_addr: None,
            imds_endpoint: Some(emulated.imds_endpoint.clone()),
            static_credentials: Some(("testing".into(), "testing".into())),
            timers: ipamd::node_loop::AgentTimers {
                pool: Duration::from_millis(100),
                ..Default::default()
            },
            host_network: Some(ipamd::agent::HostNetOptions {
                netns: Some(node.path().into()),
                link_attempts: 50,
                link_interval: Duration::from_millis(100),
            }),
        };
        let task = tokio::spawn(async move {
            let _ = ipamd::agent::run(cfg, opts, std::future::pending()).await;
        });
        for _ in 0..150 {
            let (ips, enis) = {
                let e = server::lock(&emu);
                let enis = e.world.attached_enis(&instance);
                (enis[0].secondary_ips.len(), enis.len())
            };
            let _ = enis;
            if socket.exists() && ips >= wait_ips {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(socket.exists(), "agent socket {}", socket.display());
        Agent {
            emulated,
            socket: socket.display().to_string(),
            dir,
            task,
        }
    }

    /// Container IDs holding an address in the agent's checkpoint file.
    pub fn checkpoint_containers(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("ipam.json")).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        v["allocations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["containerID"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
