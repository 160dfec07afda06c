//! A node for agent tests: the EC2 + IMDS emulator over HTTP, a scratch directory for the
//! checkpoint and the socket, a gRPC client, an "operator" EC2 client that changes things
//! behind the agent's back, and views of what EC2 and the agent hold.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws::token_bucket::RateLimits;
use aws::{Ec2Settings, sdk_ec2::SdkEc2};
use config::Config;
use ec2_emulator::server::{self, Shared};
use ec2_emulator::testing::EmulatedNode;
use ipamd::agent::{self, AgentError, AgentOptions};
use ipamd::node_loop::AgentTimers;
use rpc::{AddNetworkRequest, CniBackendClient, DelNetworkRequest};
use tokio::task::JoinHandle;

pub struct Harness {
    pub node: EmulatedNode,
    pub dir: PathBuf,
    /// Someone else's EC2 client (an operator, the console): changes behind the agent's back.
    pub operator: SdkEc2,
}

pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Harness {
    pub async fn new(instance_type: &str, subnet_cidr: &str, tag: &str) -> Self {
        let node = EmulatedNode::start(instance_type, subnet_cidr).await;
        let dir = std::env::temp_dir().join(format!("ipamd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut settings = Ec2Settings::from_lookup("us-west-2", |_| None);
        settings.endpoint = Some(node.ec2_endpoint.clone());
        settings.static_credentials = Some(("testing".into(), "testing".into()));
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

    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("ipam.json")
    }

    pub fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut vars = vec![
            (
                "AWS_EC2_ENDPOINT".to_string(),
                self.node.ec2_endpoint.clone(),
            ),
            (
                "AWS_VPC_K8S_CNI_BACKING_STORE".to_string(),
                self.checkpoint_path().display().to_string(),
            ),
            ("CLUSTER_NAME".to_string(), "demo".to_string()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_vars(vars).unwrap()
    }

    /// Fast timers: pool every 100 ms, reconcile every `reconcile`.
    pub fn options(&self, reconcile: Duration, introspection: Option<SocketAddr>) -> AgentOptions {
        AgentOptions {
            grpc_socket: self.dir.join("ipamd.sock"),
            metrics_addr: None,
            introspection_addr: introspection.map(Into::into),
            imds_endpoint: Some(self.node.imds_endpoint.clone()),
            static_credentials: Some(("testing".into(), "testing".into())),
            timers: AgentTimers {
                pool: Duration::from_millis(100),
                reconcile,
                security_groups: Duration::from_millis(200),
                ..AgentTimers::default()
            },
            host_network: None,
        }
    }

    pub fn start(&self, cfg: Config, opts: AgentOptions) -> JoinHandle<Result<(), AgentError>> {
        tokio::spawn(agent::run(cfg, opts, std::future::pending()))
    }

    pub async fn client(&self) -> CniBackendClient<tonic::transport::Channel> {
        let socket = self.dir.join("ipamd.sock");
        for _ in 0..300 {
            if let Ok(ch) = rpc::client::connect(
                &format!("unix://{}", socket.display()),
                Some(Duration::from_millis(200)),
            )
            .await
            {
                return CniBackendClient::new(ch);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ipamd did not come up on {}", socket.display());
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
        let Some(doc) = ipam::read_checkpoint(&self.checkpoint_path()).unwrap() else {
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
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or(out)
}

pub fn add(i: usize) -> AddNetworkRequest {
    AddNetworkRequest {
        container_id: format!("container-{i}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        k8s_pod_name: format!("pod-{i}"),
        k8s_pod_namespace: "default".into(),
        ..Default::default()
    }
}

pub fn del(i: usize) -> DelNetworkRequest {
    DelNetworkRequest {
        container_id: format!("container-{i}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        reason: "PodDeleted".into(),
        ..Default::default()
    }
}

/// AddNetwork, retried while the pool is still growing; returns the address.
pub async fn add_pod(c: &mut CniBackendClient<tonic::transport::Channel>, i: usize) -> Ipv4Addr {
    let mut last = String::new();
    for _ in 0..200 {
        match c.add_network(add(i)).await {
            Ok(r) => {
                let r = r.into_inner();
                if r.success {
                    return r.ip_allocation_metadata[0].i_pv4_addr.parse().unwrap();
                }
                last = format!("{r:?}");
            }
            Err(s) => last = s.message().to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pod {i} got no address: {last}");
}

pub async fn del_pod(c: &mut CniBackendClient<tonic::transport::Channel>, i: usize) {
    let r = c.del_network(del(i)).await.unwrap().into_inner();
    assert!(r.success, "{r:?}");
}
