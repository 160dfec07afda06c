//! The `aws-vpc-cni` sequence (upstream `cmd/aws-vpc-cni/main.go`): install the plugins,
//! start the agent, wait for its gRPC health, install the conflist, then live and die with
//! the agent.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use config::Config;
use health_probe::{Outcome, ProbeArgs};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::conflist::{self, CONFLIST_NAME, ConflistParams, NodeIpNeed};
use crate::install::{self, InstallError};
use crate::settings::{AGENT_BINARY, PLUGIN_BINARIES, Settings};

/// Pause between two health checks while the agent starts.
pub const HEALTH_RETRY: Duration = Duration::from_millis(100);

/// What stops the entrypoint before the agent runs.
#[derive(Debug, thiserror::Error)]
pub enum EntrypointError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("starting {path}: {source}")]
    Spawn {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("waiting for the agent: {0}")]
    Wait(std::io::Error),
    #[error("ipamd did not become healthy within {0:?} (last: {1})")]
    NotReady(Duration, String),
    #[error(transparent)]
    Imds(#[from] crate::imds::ImdsError),
    #[error("reading the conflist template {path}: {source}")]
    Template {
        path: String,
        source: std::io::Error,
    },
    #[error("conflist template {path}: {source}")]
    Render {
        path: String,
        source: conflist::TemplateError,
    },
}

/// Exit code of the entrypoint for the agent's exit status. A signal we forwarded (SIGTERM,
/// SIGINT) that killed the agent counts as a clean stop; any other signal is `128 + n`.
pub fn exit_code(status: ExitStatus, forwarded: Option<Signal>) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        return code;
    }
    match status.signal() {
        Some(sig) if forwarded.is_some_and(|f| f as i32 == sig) => 0,
        Some(sig) => 128 + sig,
        None => 1,
    }
}

/// Copies `aws-cni` and `egress-cni` from the app directory into the host's CNI bin dir.
pub fn install_plugins(settings: &Settings, cfg: &Config) -> Result<(), InstallError> {
    for name in PLUGIN_BINARIES {
        let target =
            install::install_file(&settings.app_dir.join(name), &cfg.paths.host_cni_bin_path)?;
        tracing::info!(target = %target.display(), "installed {name}");
    }
    Ok(())
}

/// Renders the conflist text for this node (IMDS is read only when egress needs the node IP).
pub async fn render_conflist(settings: &Settings, cfg: &Config) -> Result<String, EntrypointError> {
    let node_ip = match conflist::node_ip_need(cfg) {
        NodeIpNeed::None => None,
        NodeIpNeed::LocalIpv4 => {
            let imds = crate::imds::client()?;
            Some(crate::imds::read_ip(&imds, "local-ipv4").await?)
        }
        NodeIpNeed::Ipv6 => {
            let found = match crate::imds::client() {
                Ok(imds) => crate::imds::read_ip(&imds, "ipv6").await,
                Err(e) => Err(e),
            };
            match found {
                Ok(ip) => Some(ip),
                Err(e) => {
                    tracing::warn!(
                        "ENABLE_V6_EGRESS=true but the node has no IPv6 ({e}); egress-cni stays disabled"
                    );
                    None
                }
            }
        }
    };
    let params = ConflistParams::from_config(cfg, node_ip);
    let template_path = settings.app_dir.join(CONFLIST_NAME);
    match std::fs::read_to_string(&template_path) {
        Ok(template) => conflist::render_template(&template, &params).map_err(|source| {
            EntrypointError::Render {
                path: template_path.display().to_string(),
                source,
            }
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(conflist::render(&params)),
        Err(source) => Err(EntrypointError::Template {
            path: template_path.display().to_string(),
            source,
        }),
    }
}

fn forward(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok())
        && let Err(e) = kill(Pid::from_raw(pid), sig)
    {
        tracing::warn!("forwarding {sig} to the agent (pid {pid}): {e}");
    }
}

/// Why the health wait ended without the agent becoming healthy.
enum Wait {
    Healthy,
    AgentExited(ExitStatus),
    Signalled(Signal),
}

async fn wait_healthy(
    settings: &Settings,
    child: &mut Child,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Result<Wait, EntrypointError> {
    let args = ProbeArgs {
        addr: settings.ipamd_target(),
        ..ProbeArgs::default()
    };
    let started = tokio::time::Instant::now();
    let mut last = String::from("not checked yet");
    loop {
        if let Some(limit) = settings.ready_timeout
            && started.elapsed() >= limit
        {
            return Err(EntrypointError::NotReady(limit, last));
        }
        tokio::select! {
            status = child.wait() => return status.map(Wait::AgentExited).map_err(EntrypointError::Wait),
            _ = term.recv() => return Ok(Wait::Signalled(Signal::SIGTERM)),
            _ = int.recv() => return Ok(Wait::Signalled(Signal::SIGINT)),
            outcome = health_probe::check(&args) => {
                if outcome == Outcome::Serving {
                    return Ok(Wait::Healthy);
                }
                last = outcome.message();
            }
        }
        tokio::time::sleep(HEALTH_RETRY).await;
    }
}

async fn stop(child: &mut Child, sig: Signal) -> Result<i32, EntrypointError> {
    forward(child, sig);
    let status = child.wait().await.map_err(EntrypointError::Wait)?;
    Ok(exit_code(status, Some(sig)))
}

/// Refuses configurations this build cannot serve, before anything is installed: the
/// agent's unbuilt switches ([`Config::check_built`]). Failing at start-up stalls a rolling
/// update on the first node instead of misbehaving on every node. egress-cni's IPv4 egress
/// for IPv6 clusters (`ENABLE_V4_EGRESS`, default on) is built and accepted.
pub fn check_supported(cfg: &Config) -> Result<(), EntrypointError> {
    cfg.check_built().map_err(|e| {
        EntrypointError::Unsupported(
            e.errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// Runs the whole sequence and returns the process exit code.
pub async fn run(settings: &Settings, cfg: &Config) -> Result<i32, EntrypointError> {
    check_supported(cfg)?;
    install_plugins(settings, cfg)?;
    let mut term = signal(SignalKind::terminate()).map_err(EntrypointError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(EntrypointError::Signals)?;
    let agent = settings.app_dir.join(AGENT_BINARY);
    let mut child = spawn_agent(&agent, &settings.app_dir)?;
    tracing::info!(pid = child.id(), "started {}", agent.display());

    match wait_healthy(settings, &mut child, &mut term, &mut int).await {
        Ok(Wait::Healthy) => tracing::info!("ipamd is healthy"),
        Ok(Wait::AgentExited(status)) => {
            tracing::error!("the agent exited before becoming healthy: {status}");
            return Ok(nonzero(exit_code(status, None)));
        }
        Ok(Wait::Signalled(sig)) => {
            tracing::info!("{sig} received while waiting for ipamd; stopping the agent");
            return stop(&mut child, sig).await;
        }
        Err(e) => {
            let _ = stop(&mut child, Signal::SIGTERM).await;
            return Err(e);
        }
    }

    let installed = match render_conflist(settings, cfg).await {
        Ok(text) => install::install_bytes(
            &cfg.paths.host_cni_confdir_path,
            CONFLIST_NAME,
            text.as_bytes(),
            0o644,
        )
        .map_err(EntrypointError::from),
        Err(e) => Err(e),
    };
    match installed {
        Ok(path) => {
            tracing::info!(path = %path.display(), "installed the CNI configuration; node networking is ready")
        }
        Err(e) => {
            let _ = stop(&mut child, Signal::SIGTERM).await;
            return Err(e);
        }
    }

    tokio::select! {
        status = child.wait() => {
            let status = status.map_err(EntrypointError::Wait)?;
            tracing::warn!("the agent exited: {status}");
            Ok(exit_code(status, None))
        }
        _ = term.recv() => stop(&mut child, Signal::SIGTERM).await,
        _ = int.recv() => stop(&mut child, Signal::SIGINT).await,
    }
}

/// An agent that exits 0 before it was ever healthy still means the node is not served.
fn nonzero(code: i32) -> i32 {
    if code == 0 { 1 } else { code }
}

fn spawn_agent(agent: &Path, cwd: &Path) -> Result<Child, EntrypointError> {
    Command::new(agent)
        .current_dir(cwd)
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| EntrypointError::Spawn {
            path: agent.display().to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    fn ipv6(vars: &[(&str, &str)]) -> Result<Config, config::ConfigError> {
        let base = [
            ("ENABLE_IPv4", "false"),
            ("ENABLE_IPv6", "true"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
        ];
        Config::from_vars(base.iter().chain(vars).copied())
    }

    #[test]
    fn v4_egress_is_accepted_in_ipv6_clusters() {
        for egress in ["true", "false"] {
            let cfg = ipv6(&[("ENABLE_V4_EGRESS", egress)]).unwrap();
            // ipamd's IPv6 mode and egress-cni's IPv4 egress are both built.
            assert!(check_supported(&cfg).is_ok(), "ENABLE_V4_EGRESS={egress}");
        }
        let egress = ipv6(&[]).unwrap();
        assert_eq!(conflist::node_ip_need(&egress), NodeIpNeed::LocalIpv4);
    }

    #[test]
    fn ipv6_clusters_take_mtus_from_1280_to_9001() {
        for (mtu, ok) in [
            ("1279", false),
            ("1280", true),
            ("9001", true),
            ("9002", false),
        ] {
            for var in ["AWS_VPC_ENI_MTU", "POD_MTU"] {
                assert_eq!(ipv6(&[(var, mtu)]).is_ok(), ok, "{var}={mtu}");
            }
        }
        // 576 is fine for IPv4 clusters, not for IPv6 ones.
        assert!(Config::from_vars([("ENABLE_IPv4", "true"), ("POD_MTU", "576")]).is_ok());
        assert!(ipv6(&[("POD_MTU", "576")]).is_err());
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ExitStatus::from_raw(0), None), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8), None), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9), None), 137);
        assert_eq!(
            exit_code(ExitStatus::from_raw(15), Some(Signal::SIGTERM)),
            0
        );
        assert_eq!(
            exit_code(ExitStatus::from_raw(9), Some(Signal::SIGTERM)),
            137
        );
        assert_eq!(nonzero(0), 1);
    }
}
