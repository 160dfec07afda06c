//! Small value types of the configuration: modes, levels, destinations, addresses.
//! Each enum parses its upstream spellings case-insensitively and prints a canonical form.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Parses `raw` case-insensitively against `(spelling, value)` pairs.
pub(crate) fn parse_choice<T: Copy>(raw: &str, choices: &[(&str, T)]) -> Option<T> {
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(raw))
        .map(|(_, v)| *v)
}

/// The "expected one of …" part of an enum error message.
pub(crate) fn expected_one_of<T>(choices: &[(&str, T)]) -> String {
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    format!("expected one of {}", names.join(", "))
}

/// Address family of the cluster (`ENABLE_IPv4` / `ENABLE_IPv6`): exactly one is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IpFamily {
    /// IPv4 cluster (secondary IPs or /28 prefixes).
    V4,
    /// IPv6 cluster (/80 prefixes; prefix delegation required).
    V6,
}

/// Severity threshold of a log sink (`AWS_VPC_K8S_CNI_LOGLEVEL`, `AWS_VPC_K8S_PLUGIN_LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum LogLevel {
    /// `debug` (upstream default).
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
    /// `fatal`
    Fatal,
}

impl LogLevel {
    pub(crate) const CHOICES: &'static [(&'static str, LogLevel)] = &[
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
        ("fatal", LogLevel::Fatal),
    ];

    /// Canonical spelling as written into the conflist (`Debug`, `Info`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "Debug",
            LogLevel::Info => "Info",
            LogLevel::Warn => "Warn",
            LogLevel::Error => "Error",
            LogLevel::Fatal => "Fatal",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a component writes its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum LogDestination {
    /// `stdout` (never allowed for the plugins: their stdout carries the CNI result).
    Stdout,
    /// `stderr`
    Stderr,
    /// A file, rotated by the writer.
    File(PathBuf),
}

impl LogDestination {
    /// Parses `stdout`, `stderr` (exact, as upstream) or a path.
    pub(crate) fn parse(raw: &str) -> Self {
        match raw {
            "stdout" => LogDestination::Stdout,
            "stderr" => LogDestination::Stderr,
            path => LogDestination::File(PathBuf::from(path)),
        }
    }

    /// The spelling written into the conflist / shown to operators.
    pub fn to_config_string(&self) -> String {
        match self {
            LogDestination::Stdout => "stdout".to_owned(),
            LogDestination::Stderr => "stderr".to_owned(),
            LogDestination::File(p) => p.display().to_string(),
        }
    }
}

/// SNAT source-port randomisation (`AWS_VPC_K8S_CNI_RANDOMIZESNAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RandomizeSnat {
    /// `none`: no flag.
    None,
    /// `hashrandom`: `--random`.
    HashRandom,
    /// `prng`: `--random-fully` (upstream default).
    Prng,
}

impl RandomizeSnat {
    pub(crate) const CHOICES: &'static [(&'static str, RandomizeSnat)] = &[
        ("prng", RandomizeSnat::Prng),
        ("hashrandom", RandomizeSnat::HashRandom),
        ("none", RandomizeSnat::None),
    ];

    /// Canonical spelling (`prng`, `hashrandom`, `none`), as passed to egress-cni.
    pub fn as_str(self) -> &'static str {
        match self {
            RandomizeSnat::None => "none",
            RandomizeSnat::HashRandom => "hashrandom",
            RandomizeSnat::Prng => "prng",
        }
    }

    /// Upstream's internal enum value shown by introspection (0 none, 1 hashrandom, 2 prng).
    pub fn introspection_code(self) -> u8 {
        match self {
            RandomizeSnat::None => 0,
            RandomizeSnat::HashRandom => 1,
            RandomizeSnat::Prng => 2,
        }
    }
}

/// `NETWORK_POLICY_ENFORCING_MODE` (only meaningful when set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NetworkPolicyMode {
    /// `none`
    None,
    /// `strict`
    Strict,
    /// `standard` (chart default)
    Standard,
}

impl NetworkPolicyMode {
    pub(crate) const CHOICES: &'static [(&'static str, NetworkPolicyMode)] = &[
        ("none", NetworkPolicyMode::None),
        ("strict", NetworkPolicyMode::Strict),
        ("standard", NetworkPolicyMode::Standard),
    ];

    /// Canonical spelling returned to the plugin and the network policy agent.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPolicyMode::None => "none",
            NetworkPolicyMode::Strict => "strict",
            NetworkPolicyMode::Standard => "standard",
        }
    }
}

/// `POD_SECURITY_GROUP_ENFORCING_MODE` for branch-ENI pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PodSgEnforcingMode {
    /// `strict` (default): branch-ENI pod traffic only via the branch ENI.
    Strict,
    /// `standard`: branch-ENI pods also reachable through the host.
    Standard,
}

impl PodSgEnforcingMode {
    pub(crate) const CHOICES: &'static [(&'static str, PodSgEnforcingMode)] = &[
        ("strict", PodSgEnforcingMode::Strict),
        ("standard", PodSgEnforcingMode::Standard),
    ];

    /// Canonical spelling written into the conflist (`podSGEnforcingMode`).
    pub fn as_str(self) -> &'static str {
        match self {
            PodSgEnforcingMode::Strict => "strict",
            PodSgEnforcingMode::Standard => "standard",
        }
    }
}

/// `INTROSPECTION_BIND_ADDRESS`: a TCP `host:port` or `unix:<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum BindAddress {
    /// TCP listener; `host` may be empty (all addresses) or a bracketed IPv6 literal.
    Tcp {
        /// Host name or address, without brackets.
        host: String,
        /// Port number.
        port: u16,
    },
    /// Unix-domain socket at this path.
    Unix(PathBuf),
}

impl BindAddress {
    /// Parses `host:port`, `[v6]:port` or `unix:<path>`; `None` when malformed.
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        if let Some(path) = raw.strip_prefix("unix:") {
            return (!path.is_empty()).then(|| BindAddress::Unix(PathBuf::from(path)));
        }
        let (host, port) = raw.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            inner
        } else {
            if host.contains([':', '[', ']', '/']) || host.chars().any(char::is_whitespace) {
                return None;
            }
            host
        };
        Some(BindAddress::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            BindAddress::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}
