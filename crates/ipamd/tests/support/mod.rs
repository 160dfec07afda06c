//! A node for agent tests: the EC2 + IMDS emulator over HTTP, a scratch directory for the
//! checkpoint and the socket, a gRPC client, an "operator" EC2 client that changes things
//! behind the agent's back, and views of what EC2 and the agent hold. Starting the agent,
//! its gRPC client and the pod requests are `ipamd::testing`'s.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws::token_bucket::RateLimits;
use aws::{Ec2Settings, sdk_ec2::SdkEc2};
use config::Config;
use ec2_emulator::server::{self, Shared};
use ec2_emulator::testing::EmulatedNode;
use ipamd::agent::{AgentError, AgentOptions};
use ipamd::testing;
use rpc::CniBackendClient;
use tokio::task::JoinHandle;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use ipamd::testing::{add, add_pod, del, del_pod, free_port};

pub struct Harness {
    pub node: EmulatedNode,
    pub dir: PathBuf,
    /// Someone else's EC2 client (an operator, the console): changes behind the agent's back.
    pub operator: SdkEc2,
}

impl Harness {
    pub async fn new(instance_type: &str, subnet_cidr: &str, tag: &str) -> Self {
        Self::with_node(EmulatedNode::start(instance_type, subnet_cidr).await, tag).await
    }

    /// A node in a dual-stack VPC: the subnet has an IPv6 /64, the instance a primary IPv6.
    pub async fn new_dual_stack(instance_type: &str, subnet_cidr: &str, tag: &str) -> Self {
        let node = EmulatedNode::start_dual_stack(instance_type, subnet_cidr).await;
        Self::with_node(node, tag).await
    }

    pub async fn with_node(node: EmulatedNode, tag: &str) -> Self {
        let dir = testing::test_dir("ipamd", tag);
        let mut settings = Ec2Settings::from_lookup("us-west-2", |_| None);
        settings.endpoint = Some(node.ec2_endpoint.clone());
        let (key, secret) = testing::CREDENTIALS;
        settings.static_credentials = Some((key.into(), secret.into()));
        settings.rate_limits = RateLimits {
            describe: (1000.0, 1000.0),
            mutate: (1000.0, 1000.0),
        };
        let operator = aws::ec2_client(&settings, Arc::new(aws::ApiStats::default())).await;
        Self {
            node,
            dir,
            operator,
        }
    }

    pub fn emu(&self) -> &Shared {
        &self.node.emu
    }

    /// Calls of `action` the emulator has answered so far.
    pub fn ec2_calls(&self, action: &str) -> u64 {
        let emu = server::lock(&self.node.emu);
        emu.faults.calls.get(action).copied().unwrap_or(0)
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("ipam.json")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("ipamd.sock")
    }

    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        testing::config(&self.node.ec2_endpoint, &self.checkpoint_path(), extra)
    }

    /// Fast timers: pool every 100 ms, security groups every 200 ms, reconcile every
    /// `reconcile`.
    pub fn options(&self, reconcile: Duration, introspection: Option<SocketAddr>) -> AgentOptions {
        let mut opts = testing::options(self.socket_path(), &self.node.imds_endpoint);
        opts.introspection_addr = introspection.map(Into::into);
        opts.timers.reconcile = reconcile;
        opts.timers.security_groups = Duration::from_millis(200);
        opts
    }

    pub fn start(&self, cfg: Config, opts: AgentOptions) -> JoinHandle<Result<(), AgentError>> {
        testing::spawn(cfg, opts)
    }

    /// A gRPC client of the agent's socket, waiting (bounded) until it serves.
    pub async fn client(&self) -> CniBackendClient<tonic::transport::Channel> {
        testing::connect_socket(&self.socket_path(), 300).await
    }

    /// Every address EC2 has assigned to ENIs attached to the instance (secondary IPs and
    /// the addresses of delegated prefixes).
    pub fn ec2_assigned(&self) -> BTreeSet<Ipv4Addr> {
        let emu = server::lock(&self.node.emu);
        let mut out = BTreeSet::new();
        for eni in emu.world.attached_enis(&self.node.instance_id) {
            out.extend(eni.secondary_ips.iter().copied());
            for p in &eni.prefixes {
                out.extend(p.hosts().chain([p.network(), p.broadcast()]));
            }
        }
        out
    }

    /// (ENI id, device index) attached, as EC2 sees them.
    pub fn ec2_enis(&self) -> Vec<(String, u32)> {
        let emu = server::lock(&self.node.emu);
        emu.world
            .attached_enis(&self.node.instance_id)
            .iter()
            .map(|e| {
                (
                    e.id.clone(),
                    e.attachment.as_ref().map(|a| a.device_index).unwrap_or(0),
                )
            })
            .collect()
    }

    /// Secondary addresses EC2 has on attached ENIs (no prefixes).
    pub fn ec2_secondary_count(&self) -> usize {
        let emu = server::lock(&self.node.emu);
        emu.world
            .attached_enis(&self.node.instance_id)
            .iter()
            .map(|e| e.secondary_ips.len())
            .sum()
    }

    /// Pod (container id) → address, as the checkpoint on disk says.
    pub fn checkpoint_pods(&self) -> BTreeMap<String, Ipv4Addr> {
        let path = self.checkpoint_path();
        let read = ipam::read_checkpoint(&path);
        let Some(doc) = read.unwrap_or_else(|e| panic!("checkpoint {}: {e}", path.display()))
        else {
            return BTreeMap::new();
        };
        doc.allocations
            .iter()
            .filter_map(|a| Some((a.key.container_id.clone(), a.ipv4.parse().ok()?)))
            .collect()
    }

    /// Waits until `cond` holds (bounded; panics with `what`).
    pub async fn wait_for(&self, what: &str, mut cond: impl FnMut(&Self) -> bool) {
        for _ in 0..600 {
            if cond(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// GET over HTTP/1.1; returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap_or_else(|e| panic!("GET {path} to {addr}: {e}"));
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .unwrap_or_else(|e| panic!("response to GET {path} from {addr}: {e}"));
    out.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or(out)
}
