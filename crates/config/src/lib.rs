//! Every environment variable of the aws-node DaemonSet (ipamd, the `aws-vpc-cni`
//! entrypoint, the init container, and the plugin settings rendered into the conflist)
//! parsed into one typed [`Config`] with upstream's defaults.
//!
//! Unlike upstream, invalid values are errors rather than silently defaulted: every
//! problem names the variable and its value, and all problems are reported at once in a
//! [`ConfigError`]. Harmless oddities upstream merely warns about end up in
//! [`Config::warnings`]. See `docs/configuration.md` for the reference table.
//!
//! A few variables are ours, not upstream's (tests and the demo node move ipamd's socket
//! and listeners with them): they are read into [`Config::local`] ([`LocalOverrides`]) with
//! the same validation and are listed in [`names::OURS`].

mod derived;
mod env;
mod error;
mod load;
mod local;
pub mod names;
mod sections;
mod types;
mod unbuilt;
pub mod values;
mod view;

use std::collections::HashMap;

use serde::Serialize;

pub use derived::{CardFacts, PrefixDelegation};
pub use error::{ConfigError, FieldError, PolicyError};
pub use local::{DEFAULT_METRICS_BIND_ADDRESS, LocalOverrides, MAX_UNIX_SOCKET_PATH};
pub use sections::*;
pub use types::{
    BindAddress, IpFamily, LogDestination, LogLevel, NetworkPolicyMode, PodSgEnforcingMode,
    RandomizeSnat,
};
pub use view::{IpamdEnvSettings, NetworkUtilsEnvSettings};

/// The complete, validated configuration of one node agent process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    /// `ENABLE_IPv4` / `ENABLE_IPv6`, resolved to exactly one family.
    pub ip_family: IpFamily,
    /// Warm-pool targets, prefix delegation, `MAX_ENI`, cooldown.
    pub pool: PoolTargets,
    /// ENI provisioning, tagging, custom networking, security groups for pods.
    pub eni: EniSettings,
    /// MTUs, veth prefix, SNAT, connmark, network policy mode.
    pub networking: Networking,
    /// Extra plugins chained in the conflist and egress-cni enablement.
    pub chain: PluginChain,
    /// Log files and levels.
    pub logging: Logging,
    /// Metrics and introspection.
    pub observability: Observability,
    /// Kubernetes API access and identity.
    pub kubernetes: Kubernetes,
    /// AWS SDK settings.
    pub aws: AwsSettings,
    /// File-system locations.
    pub paths: Paths,
    /// Ours, not upstream's: overrides for tests and the demo node (`IPAMD_GRPC_SOCKET`,
    /// `METRICS_BIND_ADDRESS`, `IPAMD_NODE_NETNS`, `IPAMD_SKIP_HOST_NETWORKING`).
    pub local: LocalOverrides,
    /// Harmless problems that were tolerated (e.g. reserved tag keys dropped); log them.
    pub warnings: Vec<String>,
}

impl Default for Config {
    /// The configuration of an empty environment (an IPv4 cluster with upstream defaults).
    fn default() -> Self {
        Self {
            ip_family: IpFamily::V4,
            pool: PoolTargets::default(),
            eni: EniSettings::default(),
            networking: Networking::default(),
            chain: PluginChain::default(),
            logging: Logging::default(),
            observability: Observability::default(),
            kubernetes: Kubernetes::default(),
            aws: AwsSettings::default(),
            paths: Paths::default(),
            local: LocalOverrides::default(),
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// Reads the process environment. Variables this crate does not know are ignored;
    /// a known variable whose value is not UTF-8 is an error.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        let mut not_utf8 = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            let Some(&known) = names::ALL.iter().find(|n| **n == key) else {
                continue;
            };
            match value.into_string() {
                Ok(v) => {
                    vars.insert(known.to_owned(), v);
                }
                Err(raw) => not_utf8.push(FieldError {
                    variable: known,
                    value: Some(raw.to_string_lossy().into_owned()),
                    reason: "not valid UTF-8".to_owned(),
                }),
            }
        }
        match (Self::from_map(vars), not_utf8.is_empty()) {
            (Ok(cfg), true) => Ok(cfg),
            (Ok(_), false) => Err(ConfigError { errors: not_utf8 }),
            (Err(mut e), _) => {
                not_utf8.append(&mut e.errors);
                Err(ConfigError { errors: not_utf8 })
            }
        }
    }

    /// Parses an explicit set of variables (pure; used by tests and tools). Later
    /// duplicates of a name win.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let map = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        Self::from_map(map)
    }

    fn from_map(vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        load::load(env::Reader::new(vars))
    }
}
