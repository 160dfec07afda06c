//! Test support (feature `testing`): the real agent ([`crate::agent::run`]) started
//! in-process, the way the workspace's tests drive it: [`options`] for an agent against an
//! emulated IMDS, [`spawn`] to run it as a task, [`connect`] / [`connect_socket`] for a gRPC
//! client once it serves, the requests the CNI plugin sends for pod `i` ([`add`], [`del`],
//! [`add_pod`], [`del_pod`]), [`config`], [`test_dir`] and [`free_port`].
//!
//! Test-only code: failures panic, with the reason.

use std::fmt::Debug;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::Config;
use rpc::{AddNetworkRequest, CniBackendClient, DelNetworkRequest};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::agent::{self, AgentError, AgentOptions};
use crate::node_loop::AgentTimers;

/// The static AWS credentials of every test agent (what the emulators accept).
pub const CREDENTIALS: (&str, &str) = ("testing", "testing");

/// Pause between attempts of the retry loops here.
const RETRY: Duration = Duration::from_millis(50);

/// Options for an agent on `imds_endpoint` serving gRPC on `grpc_socket`: static test
/// credentials, a 100 ms pool tick (other timers default), no metrics, no introspection, no
/// host networking.
pub fn options(grpc_socket: PathBuf, imds_endpoint: &str) -> AgentOptions {
    AgentOptions {
        grpc_socket,
        metrics_addr: None,
        introspection_addr: None,
        imds_endpoint: Some(imds_endpoint.to_string()),
        static_credentials: Some((CREDENTIALS.0.into(), CREDENTIALS.1.into())),
        timers: AgentTimers {
            pool: Duration::from_millis(100),
            ..AgentTimers::default()
        },
        host_network: None,
    }
}

/// The agent's configuration for a node whose EC2 API is `ec2_endpoint`, with the checkpoint
/// in `store`, in cluster `demo`, plus `extra` environment variables (later ones win).
pub fn config(ec2_endpoint: &str, store: &Path, extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![
        ("AWS_EC2_ENDPOINT".to_string(), ec2_endpoint.to_string()),
        (
            "AWS_VPC_K8S_CNI_BACKING_STORE".to_string(),
            store.display().to_string(),
        ),
        ("CLUSTER_NAME".to_string(), "demo".to_string()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars).unwrap_or_else(|e| panic!("invalid test configuration: {e}"))
}

/// The agent with no shutdown signal: it runs until it fails or its task is aborted.
pub async fn run(cfg: Config, opts: AgentOptions) -> Result<(), AgentError> {
    agent::run(cfg, opts, std::future::pending()).await
}

/// Starts the agent on the current runtime without refusing the settings this release
/// does not ship yet (`Config::check_built`): for the tests of a feature being built, e.g.
/// `ENABLE_POD_ENI=true`, before its refusal is lifted. Never reachable from the binary.
pub fn spawn_accepting_unbuilt(
    cfg: Config,
    opts: AgentOptions,
) -> JoinHandle<Result<(), AgentError>> {
    tokio::spawn(agent::run_accepting_unbuilt(
        cfg,
        opts,
        std::future::pending(),
    ))
}

/// Starts the agent ([`run`]) on the current runtime.
pub fn spawn(cfg: Config, opts: AgentOptions) -> JoinHandle<Result<(), AgentError>> {
    tokio::spawn(run(cfg, opts))
}

/// One connection attempt (≤ 200 ms) to the agent's gRPC socket.
async fn try_connect(socket: &Path) -> Option<CniBackendClient<Channel>> {
    rpc::client::connect(
        &format!("unix://{}", socket.display()),
        Some(Duration::from_millis(200)),
    )
    .await
    .ok()
    .map(CniBackendClient::new)
}

/// A gRPC client of the agent's socket, retried (`attempts` × ≤ 250 ms) while the agent
/// starts; panics if the agent task stops first (with its result) or it never serves.
pub async fn connect<T: Debug>(
    socket: &Path,
    agent: &mut JoinHandle<T>,
    attempts: usize,
) -> CniBackendClient<Channel> {
    for _ in 0..attempts {
        if let Some(client) = try_connect(socket).await {
            return client;
        }
        if agent.is_finished() {
            panic!("the agent stopped at start-up: {:?}", agent.await);
        }
        tokio::time::sleep(RETRY).await;
    }
    panic!("ipamd never served gRPC on {}", socket.display());
}

/// Like [`connect`], for callers that do not hold the agent's task.
pub async fn connect_socket(socket: &Path, attempts: usize) -> CniBackendClient<Channel> {
    for _ in 0..attempts {
        if let Some(client) = try_connect(socket).await {
            return client;
        }
        tokio::time::sleep(RETRY).await;
    }
    panic!("ipamd never served gRPC on {}", socket.display());
}

/// The AddNetwork the plugin sends for pod `default/pod-<i>` (container `container-<i>`).
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

/// The DelNetwork for [`add`]`(i)`, naming the pod as the plugin does.
pub fn del(i: usize) -> DelNetworkRequest {
    DelNetworkRequest {
        container_id: format!("container-{i}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        k8s_pod_name: format!("pod-{i}"),
        k8s_pod_namespace: "default".into(),
        reason: "PodDeleted".into(),
        ..Default::default()
    }
}

/// AddNetwork for pod `i`, retried (bounded) while the pool is still growing; returns the
/// address.
pub async fn add_pod(c: &mut CniBackendClient<Channel>, i: usize) -> Ipv4Addr {
    let mut last = String::new();
    for _ in 0..200 {
        match c.add_network(add(i)).await {
            Ok(r) => {
                let r = r.into_inner();
                if r.success {
                    let ip = &r
                        .ip_allocation_metadata
                        .first()
                        .unwrap_or_else(|| panic!("pod {i}: success without an address: {r:?}"))
                        .i_pv4_addr;
                    return ip
                        .parse()
                        .unwrap_or_else(|e| panic!("pod {i}: address {ip:?}: {e}"));
                }
                last = format!("{r:?}");
            }
            Err(s) => last = s.message().to_string(),
        }
        tokio::time::sleep(RETRY).await;
    }
    panic!("pod {i} got no address: {last}");
}

/// DelNetwork for pod `i`, which must succeed.
pub async fn del_pod(c: &mut CniBackendClient<Channel>, i: usize) {
    let r = c
        .del_network(del(i))
        .await
        .unwrap_or_else(|s| panic!("DelNetwork for pod {i}: {s}"))
        .into_inner();
    assert!(r.success, "{r:?}");
}

/// A free loopback TCP address (`127.0.0.1:<port>`) for a server the test starts later.
///
/// Taken below Linux's ephemeral range (32768–60999 by default): a port the kernel handed
/// out with `bind(:0)` and that was then closed could be given to some test's outgoing
/// connection as its source port before the server binds it ("Address already in use").
/// Ports here are never handed out that way; each call tries the next one of a sequence
/// spread by process id, and returns the first that binds.
pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = std::process::id().wrapping_mul(7_919) % COUNT;
    let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..COUNT {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % COUNT;
        let Ok(port) = u16::try_from(FIRST + offset) else {
            continue;
        };
        if let Ok(addr) = TcpListener::bind(("127.0.0.1", port)).and_then(|l| l.local_addr()) {
            return addr;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT)
}

/// A fresh per-test directory under the system temp dir (`<prefix>-<tag>-<pid>`), emptied if
/// a previous run left it behind.
pub fn test_dir(prefix: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("test dir {}: {e}", dir.display()));
    dir
}

/// Host networking settings for tests: a node in VPC `10.0.0.0/16` with upstream's defaults
/// (MTU 9001, SNAT with `--random-fully`, NodePort support, veth prefix `eni`, connmark
/// `0x80`), in `netns` (`None`: the given kernel's own), waiting `link_attempts` ×
/// `link_interval` for a hot-plugged ENI link.
pub fn host_settings(
    netns: Option<PathBuf>,
    link_attempts: u32,
    link_interval: Duration,
) -> crate::host_net::HostNetSettings {
    crate::host_net::HostNetSettings {
        netns,
        eni_mtu: 9001,
        vpc_cidrs: vec![ipnet::Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 16).expect("a /16")],
        exclude_snat_cidrs: vec![],
        external_service_cidrs: vec![],
        external_snat: false,
        node_port_support: true,
        randomize: net::snat::Randomize::Prng,
        veth_prefix: "eni".into(),
        connmark: 0x80,
        v6_egress: false,
        ipv6: false,
        strict_pod_eni: false,
        link_attempts,
        link_interval,
    }
}
