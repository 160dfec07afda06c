//! Process settings of the entrypoint and init binaries that are not part of upstream's
//! configuration: where the shipped binaries live, where ipamd listens, where `/proc/sys`
//! is. Each has the production default and an environment variable so tests can move it.

use std::path::PathBuf;
use std::time::Duration;

/// `VPC_CNI_APP_DIR`: directory holding `aws-k8s-agent`, `aws-cni`, `egress-cni` and an
/// optional custom `10-aws.conflist` template (upstream's working directory `/app`).
pub const APP_DIR_VAR: &str = "VPC_CNI_APP_DIR";
/// `IPAMD_GRPC_SOCKET`: ipamd's socket (shared with `aws-k8s-agent`).
pub const SOCKET_VAR: &str = config::names::IPAMD_GRPC_SOCKET;
/// `VPC_CNI_AGENT_READY_TIMEOUT_SECONDS`: give up waiting for ipamd's health after this
/// long (unset or 0: wait forever, as upstream; the liveness probe restarts the container).
pub const READY_TIMEOUT_VAR: &str = "VPC_CNI_AGENT_READY_TIMEOUT_SECONDS";
/// `VPC_CNI_INIT_DIR`: the init container's plugin directory (upstream's `/init`).
pub const INIT_DIR_VAR: &str = "VPC_CNI_INIT_DIR";
/// `VPC_CNI_PROC_SYS`: root of the sysctl tree the init container writes.
pub const PROC_SYS_VAR: &str = "VPC_CNI_PROC_SYS";

/// The binaries the entrypoint installs into the host's CNI bin directory.
pub const PLUGIN_BINARIES: [&str; 2] = ["aws-cni", "egress-cni"];
/// The agent binary, in the app directory.
pub const AGENT_BINARY: &str = "aws-k8s-agent";
/// The init binary's own name (never copied to the host).
pub const INIT_BINARY: &str = "aws-vpc-cni-init";

/// Locations and timing of one entrypoint run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub app_dir: PathBuf,
    pub ipamd_socket: PathBuf,
    pub ready_timeout: Option<Duration>,
    pub init_dir: PathBuf,
    pub proc_sys: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            app_dir: "/app".into(),
            ipamd_socket: "/var/run/aws-node/ipamd.sock".into(),
            ready_timeout: None,
            init_dir: "/init".into(),
            proc_sys: "/proc/sys".into(),
        }
    }
}

/// A setting with an unusable value.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

impl Settings {
    /// From an environment lookup (empty = unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let d = Settings::default();
        let ready_timeout = match get(READY_TIMEOUT_VAR) {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(0) => None,
                Ok(s) => Some(Duration::from_secs(s)),
                Err(_) => {
                    return Err(SettingsError {
                        variable: READY_TIMEOUT_VAR,
                        value: v,
                        reason: "not a whole number of seconds".into(),
                    });
                }
            },
        };
        Ok(Self {
            app_dir: get(APP_DIR_VAR).map_or(d.app_dir, PathBuf::from),
            ipamd_socket: get(SOCKET_VAR).map_or(d.ipamd_socket, PathBuf::from),
            ready_timeout,
            init_dir: get(INIT_DIR_VAR).map_or(d.init_dir, PathBuf::from),
            proc_sys: get(PROC_SYS_VAR).map_or(d.proc_sys, PathBuf::from),
        })
    }

    /// The agent's gRPC target for the health probe.
    pub fn ipamd_target(&self) -> String {
        format!("unix://{}", self.ipamd_socket.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let s = Settings::from_lookup(|_| None).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.ipamd_target(), "unix:///var/run/aws-node/ipamd.sock");
        let s = Settings::from_lookup(|k| match k {
            APP_DIR_VAR => Some("/tmp/app".into()),
            READY_TIMEOUT_VAR => Some("30".into()),
            PROC_SYS_VAR => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.app_dir, PathBuf::from("/tmp/app"));
        assert_eq!(s.ready_timeout, Some(Duration::from_secs(30)));
        assert_eq!(s.proc_sys, PathBuf::from("/proc/sys"));
        let e =
            Settings::from_lookup(|k| (k == READY_TIMEOUT_VAR).then(|| "soon".into())).unwrap_err();
        assert!(e.to_string().contains(READY_TIMEOUT_VAR), "{e}");
    }
}
