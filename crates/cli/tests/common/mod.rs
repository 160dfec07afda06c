//! A live node for the CLI tests: the EC2 + IMDS emulator over HTTP, the real ipamd agent
//! (`ipamd::agent::run`) with its gRPC socket, metrics and introspection, and pods added the
//! way the CNI plugin adds them (AddNetwork over gRPC).

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use config::Config;
use ec2_emulator::server::{self, Shared};
use ec2_emulator::testing::EmulatedNode;
use ipamd::agent::{self, AgentOptions};
use rpc::{AddNetworkRequest, CniBackendClient, DelNetworkRequest};

/// A running agent on an emulated instance.
pub struct LiveNode {
    pub emu: Shared,
    pub instance: String,
    pub dir: PathBuf,
    pub metrics: SocketAddr,
    pub introspection: SocketAddr,
    pub client: CniBackendClient<tonic::transport::Channel>,
    agent: tokio::task::JoinHandle<Result<(), agent::AgentError>>,
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
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
        let dir = std::env::temp_dir().join(format!("cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let mut vars = vec![
            ("AWS_EC2_ENDPOINT".to_string(), node.ec2_endpoint.clone()),
            (
                "AWS_VPC_K8S_CNI_BACKING_STORE".to_string(),
                dir.join("ipam.json").display().to_string(),
            ),
            ("CLUSTER_NAME".to_string(), "demo".to_string()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cfg = Config::from_vars(vars).expect("valid test configuration");
        let (metrics, introspection) = (free_port(), free_port());
        let opts = AgentOptions {
            grpc_socket: dir.join("ipamd.sock"),
            metrics_addr: Some(metrics),
            introspection_addr: Some(introspection.into()),
            imds_endpoint: Some(node.imds_endpoint.clone()),
            static_credentials: Some(("testing".into(), "testing".into())),
            timers: ipamd::node_loop::AgentTimers {
                pool: Duration::from_millis(100),
                ..Default::default()
            },
            host_network: None,
        };
        let socket = opts.grpc_socket.clone();
        let agent = tokio::spawn(agent::run(cfg, opts, std::future::pending()));
        let mut client = None;
        for _ in 0..200 {
            if let Ok(ch) = rpc::client::connect(
                &format!("unix://{}", socket.display()),
                Some(Duration::from_millis(200)),
            )
            .await
            {
                client = Some(CniBackendClient::new(ch));
                break;
            }
            assert!(!agent.is_finished(), "the agent exited at start-up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            emu: node.emu.clone(),
            instance: node.instance_id.clone(),
            dir,
            metrics,
            introspection,
            client: client.expect("ipamd serves gRPC"),
            agent,
        }
    }

    /// Adds pod `i` like kubelet would: retries while the pool catches up (bounded).
    pub async fn add_pod(&mut self, i: usize) -> String {
        let req = AddNetworkRequest {
            container_id: format!("container-{i}"),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            k8s_pod_name: format!("pod-{i}"),
            k8s_pod_namespace: "default".into(),
            ..Default::default()
        };
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
        let req = DelNetworkRequest {
            container_id: format!("container-{i}"),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            reason: "PodDeleted".into(),
            ..Default::default()
        };
        self.client.del_network(req).await.expect("DelNetwork");
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

    /// Runs the CLI binary (blocking, off the runtime's worker).
    pub async fn cli(&self, args: Vec<String>) -> Output {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
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
