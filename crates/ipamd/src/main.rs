//! `aws-k8s-agent`: the node agent (ipamd). Configuration comes from upstream's
//! environment variables, all read by `config::Config::from_env`, including our own few for
//! tests and the demo node (`Config::local`: `IPAMD_GRPC_SOCKET`, `METRICS_BIND_ADDRESS`,
//! `IPAMD_NODE_NETNS`, `IPAMD_SKIP_HOST_NETWORKING`; see docs/configuration.md). Logs go
//! where `AWS_VPC_K8S_CNI_LOG_FILE` says (see `ipamd::logging`).

use std::net::ToSocketAddrs;
use std::path::PathBuf;

use anyhow::Context;
use config::{BindAddress, Config};
use ipamd::agent::{self, AgentOptions, HostNetOptions, Listen};

fn listen(addr: &BindAddress) -> anyhow::Result<Option<Listen>> {
    match addr {
        BindAddress::Tcp { host, port } => {
            let host = if host.is_empty() {
                "0.0.0.0"
            } else {
                host.as_str()
            };
            let resolved = (host, *port)
                .to_socket_addrs()
                .with_context(|| format!("resolving {host}:{port}"))?
                .next();
            Ok(resolved.map(Listen::Tcp))
        }
        BindAddress::Unix(path) => Ok(Some(Listen::Unix(path.clone()))),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
    tracing::info!("shutdown requested");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = match Config::from_env() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("aws-k8s-agent: invalid configuration:\n{e}");
            std::process::exit(1);
        }
    };
    ipamd::logging::init(&cfg.logging.ipamd_log_file, cfg.logging.ipamd_log_level);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let metrics_addr =
        (!cfg.observability.disable_metrics).then_some(cfg.local.metrics_bind_address);
    let introspection_addr = if cfg.observability.disable_introspection {
        None
    } else {
        listen(&cfg.observability.introspection_bind_address)?
    };
    let opts = AgentOptions {
        grpc_socket: cfg
            .local
            .grpc_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(rpc::DEFAULT_IPAMD_SOCKET)),
        metrics_addr,
        introspection_addr,
        imds_endpoint: None,
        static_credentials: None,
        timers: ipamd::node_loop::AgentTimers::default(),
        host_network: (!cfg.local.skip_host_networking).then(|| HostNetOptions {
            netns: cfg.local.node_netns.clone(),
            ..HostNetOptions::default()
        }),
    };
    agent::run(cfg, opts, shutdown_signal()).await?;
    Ok(())
}
