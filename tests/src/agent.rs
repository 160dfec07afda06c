//! The real agent (`ipamd::agent::run`) in-process against the EC2 + IMDS emulator, one per
//! test: [`NodeAgent`] on a node network namespace with host networking (for the plugin),
//! [`LiveNode`] without touching the kernel and with metrics and introspection (for the
//! CLI); [`spawn`] and [`connect`] for tests that bring their own EC2 (moto); the gRPC
//! calls the plugin makes ([`add_pod`], [`del_pod`]); and [`process_env`], the environment
//! of the agent binary for tests that run it as a process. The agent starter itself (options,
//! task, gRPC client, pod requests) is `ipamd::testing`'s; this module adds the nodes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use config::Config;
use ec2_emulator::server::{self, Shared};
use ipamd::agent::{AgentOptions, HostNetOptions};
use ipamd::testing;
use rpc::CniBackendClient;
use serde_json::Value;
use tonic::transport::Channel;

use crate::bins::workspace_bin;
use crate::{EmulatedNode, TestNetns, free_addr};

pub use ipamd::testing::{add, add_pod, del, del_pod, options, test_dir};

/// The agent's task; its error as text.
pub type AgentTask = tokio::task::JoinHandle<Result<(), String>>;

/// Starts the agent on the current runtime; it runs until the task is aborted.
pub fn spawn(cfg: Config, opts: AgentOptions) -> AgentTask {
    tokio::spawn(async move { testing::run(cfg, opts).await.map_err(|e| e.to_string()) })
}

/// A gRPC client of the agent's socket, retried (`attempts` × ≤ 250 ms) while the agent
/// starts; panics if the agent stops first or never serves.
pub async fn connect(
    socket: &Path,
    agent: &mut AgentTask,
    attempts: usize,
) -> CniBackendClient<Channel> {
    testing::connect(socket, agent, attempts).await
}

/// The environment of the real agent process (`aws-k8s-agent`, directly or under the
/// `aws-vpc-cni` entrypoint) on `node`, on top of a cleared one (`PATH` kept): static test
/// credentials, logs on stderr, gRPC on `socket`, the checkpoint in `store`, metrics and
/// introspection on free loopback ports, IPv4, no host networking.
pub fn process_env<'a>(
    cmd: &'a mut Command,
    node: &EmulatedNode,
    socket: &Path,
    store: &Path,
) -> &'a mut Command {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_ENDPOINT", &node.ec2_endpoint)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &node.imds_endpoint)
        .env("AWS_VPC_K8S_CNI_LOG_FILE", "stderr")
        .env("AWS_ACCESS_KEY_ID", testing::CREDENTIALS.0)
        .env("AWS_SECRET_ACCESS_KEY", testing::CREDENTIALS.1)
        .env("ENABLE_IPv4", "true")
        .env("IPAMD_SKIP_HOST_NETWORKING", "true")
        .env("IPAMD_GRPC_SOCKET", socket)
        .env("METRICS_BIND_ADDRESS", free_addr().to_string())
        .env("INTROSPECTION_BIND_ADDRESS", free_addr().to_string())
        .env("AWS_VPC_K8S_CNI_BACKING_STORE", store)
}

/// A running agent with host networking in a node namespace made by the test: the emulator
/// hot-plugs the instance's ENIs into that namespace.
pub struct NodeAgent {
    pub emulated: EmulatedNode,
    pub dir: PathBuf,
    pub socket: String,
    task: AgentTask,
}

impl NodeAgent {
    /// Starts the agent on an m5.large in 10.0.0.0/24; `fault` may arm emulator faults before
    /// it starts. Waits for the socket and, when `wait_ips` > 0, for that many secondary IPs
    /// on the primary ENI.
    pub async fn start(
        node: &TestNetns,
        tag: &str,
        wait_ips: usize,
        fault: impl FnOnce(&mut ec2_emulator::faults::Faults),
    ) -> NodeAgent {
        let emulated = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
        let (emu, instance) = (emulated.emu.clone(), emulated.instance_id.clone());
        node.add_primary_interface(&emulated.primary_mac, emulated.primary_ip);
        node.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
        let fwd = Command::new("ip")
            .args(["netns", "exec", &node.0])
            .args(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .status()
            .expect("run sysctl");
        assert!(fwd.success());
        {
            let mut e = server::lock(&emu);
            e.set_hotplug(&instance, &node.0);
            fault(&mut e.faults);
        }
        let dir = test_dir("cni", tag);
        let socket = dir.join("ipamd.sock");
        let store = dir.join("ipam.json").display().to_string();
        let cfg = Config::from_vars([
            ("AWS_EC2_ENDPOINT", emulated.ec2_endpoint.as_str()),
            ("AWS_VPC_K8S_CNI_BACKING_STORE", store.as_str()),
        ])
        .expect("valid test configuration");
        let mut opts = options(socket.clone(), &emulated.imds_endpoint);
        opts.host_network = Some(HostNetOptions {
            netns: Some(node.path().into()),
            link_attempts: 50,
            link_interval: Duration::from_millis(100),
        });
        let task = spawn(cfg, opts);
        for _ in 0..150 {
            let ips = {
                let e = server::lock(&emu);
                e.world.attached_enis(&instance)[0].secondary_ips.len()
            };
            if socket.exists() && ips >= wait_ips {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(socket.exists(), "agent socket {}", socket.display());
        NodeAgent {
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

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running agent on an emulated instance, serving gRPC, metrics and introspection, with
/// no host networking (the kernel is left alone).
pub struct LiveNode {
    pub emu: Shared,
    pub instance: String,
    pub dir: PathBuf,
    pub metrics: SocketAddr,
    pub introspection: SocketAddr,
    pub client: CniBackendClient<Channel>,
    agent: AgentTask,
}

/// EC2's view of the instance: (ENIs attached, secondary IPs, prefixes, per-ENI addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2View {
    pub enis: u64,
    pub secondary_ips: u64,
    pub prefixes: u64,
    pub per_eni: Vec<(String, u64, u64)>,
}

impl LiveNode {
    /// Starts the agent on a fresh `instance_type` in a /22 with extra environment variables.
    pub async fn start(instance_type: &str, tag: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(instance_type, tag, env, |_| {}).await
    }

    /// Like [`LiveNode::start`], with `prepare` run on the emulator before the agent starts
    /// (fault injection).
    pub async fn start_with(
        instance_type: &str,
        tag: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut server::Emulator),
    ) -> Self {
        let node = EmulatedNode::start(instance_type, "10.0.0.0/22").await;
        prepare(&mut server::lock(&node.emu));
        let dir = test_dir("cli", tag);
        let cfg = testing::config(&node.ec2_endpoint, &dir.join("ipam.json"), env);
        let (metrics, introspection) = (free_addr(), free_addr());
        let socket = dir.join("ipamd.sock");
        let mut opts = options(socket.clone(), &node.imds_endpoint);
        opts.metrics_addr = Some(metrics);
        opts.introspection_addr = Some(introspection.into());
        let mut agent = spawn(cfg, opts);
        let client = connect(&socket, &mut agent, 200).await;
        Self {
            emu: node.emu.clone(),
            instance: node.instance_id.clone(),
            dir,
            metrics,
            introspection,
            client,
            agent,
        }
    }

    /// Adds pod `i` like kubelet would: retries while the pool catches up (bounded).
    pub async fn add_pod(&mut self, i: usize) -> String {
        let req = add(i);
        for _ in 0..300 {
            match self.client.add_network(req.clone()).await {
                Ok(r) => {
                    let r = r.into_inner();
                    assert!(r.success, "AddNetwork for pod {i}");
                    return r.ip_allocation_metadata[0].i_pv4_addr.clone();
                }
                Err(s) => {
                    assert!(
                        s.message().contains("no free IP address"),
                        "unexpected AddNetwork error: {}",
                        s.message()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        panic!("pod {i} never got an address");
    }

    /// Deletes pod `i`.
    pub async fn del_pod(&mut self, i: usize) {
        self.client.del_network(del(i)).await.expect("DelNetwork");
    }

    pub fn ec2_view(&self) -> Ec2View {
        let emu = server::lock(&self.emu);
        let enis = emu.world.attached_enis(&self.instance);
        Ec2View {
            enis: enis.len() as u64,
            secondary_ips: enis.iter().map(|e| e.secondary_ips.len() as u64).sum(),
            prefixes: enis.iter().map(|e| e.prefixes.len() as u64).sum(),
            per_eni: enis
                .iter()
                .map(|e| {
                    (
                        e.id.clone(),
                        e.secondary_ips.len() as u64,
                        e.prefixes.len() as u64,
                    )
                })
                .collect(),
        }
    }

    /// Waits until EC2's view has not changed for `quiet` (the pool reached its fixed point).
    pub async fn settle(&self, quiet: Duration) -> Ec2View {
        let mut last = self.ec2_view();
        let mut stable_since = std::time::Instant::now();
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.ec2_view();
            if now != last {
                last = now;
                stable_since = std::time::Instant::now();
            } else if stable_since.elapsed() >= quiet {
                return last;
            }
        }
        panic!("the pool never settled: {last:?}");
    }

    /// Runs the `vpc-cni` binary (blocking, off the runtime's worker).
    pub async fn cli(&self, args: Vec<String>) -> Output {
        let bin = workspace_bin("vpc-cni");
        tokio::task::spawn_blocking(move || {
            Command::new(bin)
                .args(&args)
                .env_clear()
                .output()
                .expect("run vpc-cni")
        })
        .await
        .expect("CLI task")
    }
}

impl Drop for LiveNode {
    fn drop(&mut self) {
        self.agent.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
