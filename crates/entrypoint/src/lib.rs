//! The `aws-node` container's entrypoint `aws-vpc-cni` and its init container
//! `aws-vpc-cni-init`, as upstream's `cmd/aws-vpc-cni/main.go` and
//! `cmd/aws-vpc-cni-init/main.go` (docs/upstream-compat.md):
//!
//! * [`supervise`]: validate the environment ([`config::Config`]), install `aws-cni` and
//!   `egress-cni` into the host CNI bin dir, start `aws-k8s-agent`, wait for its
//!   `grpc.health.v1` on the Unix socket, install `10-aws.conflist`, then forward SIGTERM /
//!   SIGINT to the agent and exit with its exit code.
//! * [`conflist`]: the conflist as a pure function of the configuration.
//! * [`install`]: atomic file installation (temp file in the same directory, fsync, rename).
//! * [`init`]: copy the core plugins, set `rp_filter`, `tcp_early_demux` and IPv6 sysctls.
//! * [`settings`]: our own knobs (app dir, socket, `/proc/sys` root) with production defaults.

pub mod conflist;
pub mod imds;
pub mod init;
pub mod install;
pub mod settings;
pub mod supervise;

/// Logs to stderr (`RUST_LOG` filters; default `info`; colours only on a terminal).
pub fn init_logging() {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}
