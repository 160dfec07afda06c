//! What the agent is told besides its `Config`: where it listens and how host networking
//! runs (re-exported from `agent`, which the start-up steps do not import).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::node_loop::AgentTimers;

/// Where the agent listens (fixed upstream; overridable for tests and the demo node).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub grpc_socket: PathBuf,
    /// `None` when `DISABLE_METRICS`.
    pub metrics_addr: Option<SocketAddr>,
    /// `None` when `DISABLE_INTROSPECTION`.
    pub introspection_addr: Option<Listen>,
    /// IMDS endpoint (else `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else link-local).
    pub imds_endpoint: Option<String>,
    /// Static AWS credentials (tests and the demo); `None` uses the default chain.
    pub static_credentials: Option<(String, String)>,
    /// Pool tick, reconcile, security-group refresh and leaked-ENI cleanup periods.
    pub timers: AgentTimers,
    /// Host networking (routes, rules, SNAT); `None` leaves the kernel alone (tests).
    pub host_network: Option<HostNetOptions>,
}

/// An HTTP listener: TCP, or a Unix socket (`INTROSPECTION_BIND_ADDRESS=unix:<path>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Listen::Tcp(addr)
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Where and how patiently host networking runs.
#[derive(Debug, Clone)]
pub struct HostNetOptions {
    /// The node's network namespace (the demo node); `None` = the agent's own.
    pub netns: Option<PathBuf>,
    /// Waiting for a hot-plugged ENI link: attempts and pause (upstream: 5 × 3 s).
    pub link_attempts: u32,
    pub link_interval: Duration,
}

impl Default for HostNetOptions {
    fn default() -> Self {
        Self {
            netns: None,
            link_attempts: 5,
            link_interval: Duration::from_secs(3),
        }
    }
}
