//! `aws-vpc-cni-init` (upstream `cmd/aws-vpc-cni-init/main.go`): copy the core CNI plugins
//! to the host, find the primary interface by its MAC, and set the sysctls policy routing and
//! egress need.

use std::fs;
use std::path::{Path, PathBuf};

use crate::install::{self, InstallError};
use crate::settings::{INIT_BINARY, Settings};

/// The init container's own variables (it does not get, or need, the agent's whole
/// configuration). Booleans use Go's `strconv.ParseBool` syntax; invalid values are errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitConfig {
    /// `HOST_CNI_BIN_PATH` (default `/host/opt/cni/bin`).
    pub host_cni_bin_path: PathBuf,
    /// `DISABLE_TCP_EARLY_DEMUX` (default false).
    pub disable_tcp_early_demux: bool,
    /// `ENABLE_IPv6` (default false).
    pub enable_ipv6: bool,
    /// `ENABLE_V6_EGRESS` (default false).
    pub enable_v6_egress: bool,
}

/// A variable the init container cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct InitConfigError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

impl InitConfig {
    /// From an environment lookup (empty = unset).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, InitConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let flag = |variable: &'static str| -> Result<bool, InitConfigError> {
            match get(variable) {
                None => Ok(false),
                Some(v) => config::values::parse_go_bool(&v).map_err(|reason| InitConfigError {
                    variable,
                    value: v,
                    reason,
                }),
            }
        };
        Ok(Self {
            host_cni_bin_path: get("HOST_CNI_BIN_PATH")
                .map_or_else(|| config::DEFAULT_HOST_CNI_BIN_PATH.into(), PathBuf::from),
            disable_tcp_early_demux: flag("DISABLE_TCP_EARLY_DEMUX")?,
            enable_ipv6: flag("ENABLE_IPv6")?,
            enable_v6_egress: flag("ENABLE_V6_EGRESS")?,
        })
    }
}

/// One sysctl write, relative to `/proc/sys` (`net/ipv4/conf/eth0/rp_filter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlWrite {
    pub key: String,
    pub value: &'static str,
    /// Skip silently when the key does not exist (`tcp_early_demux` on old kernels).
    pub only_if_present: bool,
}

impl SysctlWrite {
    fn new(key: String, value: &'static str) -> Self {
        Self {
            key,
            value,
            only_if_present: false,
        }
    }
}

/// The sysctls upstream's init sets, in its order. Pure.
pub fn sysctl_plan(primary_if: &str, cfg: &InitConfig) -> Vec<SysctlWrite> {
    let mut plan = vec![SysctlWrite::new(
        format!("net/ipv4/conf/{primary_if}/rp_filter"),
        "2",
    )];
    plan.push(SysctlWrite {
        key: "net/ipv4/tcp_early_demux".into(),
        value: if cfg.disable_tcp_early_demux {
            "0"
        } else {
            "1"
        },
        only_if_present: true,
    });
    if cfg.enable_ipv6 {
        plan.push(SysctlWrite::new(
            "net/ipv6/conf/all/disable_ipv6".into(),
            "0",
        ));
    }
    if cfg.enable_ipv6 || cfg.enable_v6_egress {
        plan.push(SysctlWrite::new("net/ipv6/conf/all/forwarding".into(), "1"));
        plan.push(SysctlWrite::new(
            format!("net/ipv6/conf/{primary_if}/accept_ra"),
            "2",
        ));
    }
    plan
}

/// A failed init step.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("listing {dir}: {source}")]
    List { dir: String, source: std::io::Error },
    #[error(transparent)]
    Imds(#[from] crate::imds::ImdsError),
    #[error("no network interface has the primary ENI's MAC {0} (looked in /sys/class/net)")]
    NoPrimaryInterface(String),
    #[error("setting {key}={value}: {source}")]
    Sysctl {
        key: String,
        value: String,
        source: std::io::Error,
    },
}

/// Copies every regular file of `dir` except the init binary itself into `dest`.
pub fn copy_plugins(dir: &Path, dest: &Path) -> Result<Vec<PathBuf>, InitError> {
    let list_err = |source| InitError::List {
        dir: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(list_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(list_err)?;
    entries.sort();
    let mut installed = Vec::new();
    for path in entries {
        let is_self = path.file_name().is_some_and(|n| n == INIT_BINARY);
        // metadata() follows symlinks: a link to a regular file counts as one.
        if is_self || !fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        installed.push(install::install_file(&path, dest)?);
    }
    Ok(installed)
}

/// The interface (in `/sys/class/net`) whose address is `mac` (case-insensitive).
pub fn interface_with_mac(sys_class_net: &Path, mac: &str) -> Result<String, InitError> {
    let want = mac.trim().to_ascii_lowercase();
    let entries = fs::read_dir(sys_class_net).map_err(|source| InitError::List {
        dir: sys_class_net.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let addr = fs::read_to_string(entry.path().join("address")).unwrap_or_default();
        if addr.trim().to_ascii_lowercase() == want
            && let Some(name) = entry.file_name().to_str()
        {
            return Ok(name.to_owned());
        }
    }
    Err(InitError::NoPrimaryInterface(mac.to_owned()))
}

/// Applies `plan` under `proc_sys`.
pub fn apply_sysctls(proc_sys: &Path, plan: &[SysctlWrite]) -> Result<(), InitError> {
    for w in plan {
        let path = proc_sys.join(&w.key);
        if w.only_if_present && !path.exists() {
            tracing::info!("{} not present; skipped", w.key);
            continue;
        }
        fs::write(&path, w.value).map_err(|source| InitError::Sysctl {
            key: w.key.clone(),
            value: w.value.to_owned(),
            source,
        })?;
        tracing::info!("set {}={}", w.key, w.value);
    }
    Ok(())
}

/// The whole init sequence.
pub async fn run(settings: &Settings, cfg: &InitConfig) -> Result<(), InitError> {
    for path in copy_plugins(&settings.init_dir, &cfg.host_cni_bin_path)? {
        tracing::info!("installed {}", path.display());
    }
    let imds = crate::imds::client()?;
    let mac = crate::imds::read(&imds, "mac").await?;
    let primary = interface_with_mac(Path::new("/sys/class/net"), &mac)?;
    tracing::info!("primary interface {primary} ({mac})");
    apply_sysctls(&settings.proc_sys, &sysctl_plan(&primary, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> InitConfig {
        InitConfig::from_lookup(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    #[test]
    fn plans() {
        let keys = |p: Vec<SysctlWrite>| {
            p.into_iter()
                .map(|w| format!("{}={}", w.key, w.value))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(sysctl_plan("ens5", &cfg(&[]))),
            [
                "net/ipv4/conf/ens5/rp_filter=2",
                "net/ipv4/tcp_early_demux=1"
            ]
        );
        assert_eq!(
            keys(sysctl_plan(
                "eth0",
                &cfg(&[("DISABLE_TCP_EARLY_DEMUX", "true"), ("ENABLE_IPv6", "1")])
            )),
            [
                "net/ipv4/conf/eth0/rp_filter=2",
                "net/ipv4/tcp_early_demux=0",
                "net/ipv6/conf/all/disable_ipv6=0",
                "net/ipv6/conf/all/forwarding=1",
                "net/ipv6/conf/eth0/accept_ra=2",
            ]
        );
        assert_eq!(
            sysctl_plan("eth0", &cfg(&[("ENABLE_V6_EGRESS", "true")])).len(),
            4
        );
        let e =
            InitConfig::from_lookup(|k| (k == "ENABLE_IPv6").then(|| "yes".into())).unwrap_err();
        assert!(e.to_string().starts_with("ENABLE_IPv6=\"yes\""), "{e}");
    }

    #[test]
    fn copies_regular_files_but_not_itself_and_finds_interfaces() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("init");
        fs::create_dir_all(src.join("subdir")).unwrap();
        for n in ["portmap", "host-local", INIT_BINARY] {
            fs::write(src.join(n), n).unwrap();
        }
        let dest = dir.path().join("bin");
        let got = copy_plugins(&src, &dest).unwrap();
        assert_eq!(got.len(), 2);
        assert!(dest.join("portmap").is_file() && dest.join("host-local").is_file());
        assert!(!dest.join(INIT_BINARY).exists() && !dest.join("subdir").exists());

        let net = dir.path().join("net");
        for (n, mac) in [("lo", "00:00:00:00:00:00"), ("ens5", "02:AB:cd:00:00:01")] {
            fs::create_dir_all(net.join(n)).unwrap();
            fs::write(net.join(n).join("address"), format!("{mac}\n")).unwrap();
        }
        assert_eq!(
            interface_with_mac(&net, "02:ab:CD:00:00:01").unwrap(),
            "ens5"
        );
        assert!(matches!(
            interface_with_mac(&net, "02:00:00:00:00:09"),
            Err(InitError::NoPrimaryInterface(_))
        ));

        let sys = dir.path().join("sys");
        fs::create_dir_all(sys.join("net/ipv4/conf/ens5")).unwrap();
        fs::write(sys.join("net/ipv4/conf/ens5/rp_filter"), "1").unwrap();
        apply_sysctls(&sys, &sysctl_plan("ens5", &cfg(&[]))).unwrap();
        assert_eq!(
            fs::read_to_string(sys.join("net/ipv4/conf/ens5/rp_filter")).unwrap(),
            "2"
        );
        assert!(
            !sys.join("net/ipv4/tcp_early_demux").exists(),
            "absent optional key skipped"
        );
        let e = apply_sysctls(&sys, &sysctl_plan("eth9", &cfg(&[]))).unwrap_err();
        assert!(
            e.to_string().contains("net/ipv4/conf/eth9/rp_filter"),
            "{e}"
        );
    }
}
