//! Settings upstream honours that this build does not implement yet. Accepting them and
//! then doing something else would mislead an operator (security groups for pods would be
//! silently bypassed), so the agent and the entrypoint refuse them at start with one error
//! per setting that names the variable and says what to do. `docs/configuration.md` lists
//! them under "Not built yet".

use crate::Config;
use crate::error::{ConfigError, FieldError};
use crate::names as n;

/// Why each unbuilt switch is refused (the operator-facing half of the message).
const POD_ENI: &str = "security groups for pods (branch ENIs on a trunk ENI) are not built in \
    this release; refusing to start so that pods selected by a SecurityGroupPolicy are not given \
    ordinary addresses with the node's security groups. Set ENABLE_POD_ENI=false or keep \
    upstream aws-node on nodes that need it (see docs/migration.md)";

/// Multi-NIC is built for IPv4 clusters only (docs/upstream-compat.md rows 32 and 35).
const MULTI_NIC_IPV6: &str = "network cards other than 0 are not built for IPv6 clusters in \
    this release (upstream gives each managed card > 0 an ENI with an IPv6 /80); refusing to \
    start rather than serving card 0 alone while multi-homed pods expect one address per \
    card. Set ENABLE_MULTI_NIC=false on IPv6 nodes";

impl Config {
    /// Refuses every setting this build accepts syntactically but does not implement; all
    /// of them in one error, each naming its variable.
    pub fn check_built(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut refuse = |on: bool, variable: &'static str, reason: &str| {
            if on {
                errors.push(FieldError::new(variable, Some("true"), reason));
            }
        };
        refuse(self.eni.pod_eni, n::ENABLE_POD_ENI, POD_ENI);
        refuse(
            self.eni.multi_nic && self.is_ipv6(),
            n::ENABLE_MULTI_NIC,
            MULTI_NIC_IPV6,
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { errors })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(vars.iter().copied()).expect("valid configuration")
    }

    #[test]
    fn defaults_are_built() {
        assert_eq!(cfg(&[]).check_built(), Ok(()));
    }

    #[test]
    fn ipv6_mode_is_built() {
        let v6 = cfg(&[
            ("ENABLE_IPv6", "true"),
            ("ENABLE_IPv4", "false"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
        ]);
        assert_eq!(v6.check_built(), Ok(()));
    }

    #[test]
    fn imds_only_mode_is_built() {
        assert_eq!(
            cfg(&[("ENABLE_IMDS_ONLY_MODE", "true")]).check_built(),
            Ok(())
        );
    }

    #[test]
    fn multi_nic_is_built() {
        assert_eq!(cfg(&[("ENABLE_MULTI_NIC", "true")]).check_built(), Ok(()));
    }

    #[test]
    fn multi_nic_is_refused_in_ipv6_mode_only() {
        let err = cfg(&[
            ("ENABLE_IPv6", "true"),
            ("ENABLE_IPv4", "false"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("ENABLE_MULTI_NIC", "true"),
        ])
        .check_built()
        .unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        assert!(err.mentions(n::ENABLE_MULTI_NIC), "{err}");
        assert!(err.to_string().contains("IPv6"), "{err}");
    }

    #[test]
    fn each_unbuilt_switch_is_refused_by_name() {
        let err = cfg(&[("ENABLE_POD_ENI", "true"), ("ENABLE_MULTI_NIC", "true")])
            .check_built()
            .unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        assert!(err.mentions(n::ENABLE_POD_ENI), "{err}");
        assert!(err.to_string().contains("not built"), "{err}");
    }
}
