//! Facts derived from the configuration: upstream's implication rules, the effective
//! prefix-delegation mode, planner inputs, per-card checkpoint paths.

use std::path::PathBuf;

use planner::model::{NodeCapacity, PoolPolicy};

use crate::error::PolicyError;
use crate::{Config, IpFamily};

/// The prefix-delegation mode actually used on this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixDelegation {
    /// Not requested: secondary-IP mode.
    Disabled,
    /// Requested and supported: /28 (IPv4) or /80 (IPv6) prefixes.
    Enabled,
    /// Requested, but the instance cannot do it (IPv4 only): secondary-IP mode instead.
    FallbackToSecondaryIps,
}

impl PrefixDelegation {
    /// Whether prefixes are used.
    pub fn is_enabled(self) -> bool {
        self == PrefixDelegation::Enabled
    }

    /// The warning to log for a fallback, as upstream does.
    pub fn warning(self) -> Option<&'static str> {
        (self == PrefixDelegation::FallbackToSecondaryIps).then_some(
            "ENABLE_PREFIX_DELEGATION=true but this instance type does not support prefix \
             delegation (not Nitro-based and not bare metal): falling back to secondary-IP mode",
        )
    }
}

/// Facts about one network card of the instance, needed to size its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardFacts {
    /// Network card index (0 = default card).
    pub network_card: u32,
    /// ENIs the instance type allows per card.
    pub instance_eni_limit: u32,
    /// IPv4 addresses per ENI including the ENI's primary address.
    pub ipv4_per_eni: u32,
    /// ENIs on this card ipamd must not manage.
    pub unmanaged_enis: u32,
    /// The instance type supports trunk ENIs (unknown types count as compatible).
    pub trunking_compatible: bool,
    /// A trunk ENI is already attached.
    pub has_trunk: bool,
}

impl Config {
    /// IPv4 cluster.
    pub fn is_ipv4(&self) -> bool {
        self.ip_family == IpFamily::V4
    }

    /// IPv6 cluster.
    pub fn is_ipv6(&self) -> bool {
        self.ip_family == IpFamily::V6
    }

    /// ipamd never creates, attaches, frees or tags ENIs nor (un)assigns addresses:
    /// `DISABLE_NETWORK_RESOURCE_PROVISIONING`, or implied by `ENABLE_IMDS_ONLY_MODE`.
    pub fn provisioning_disabled(&self) -> bool {
        self.eni.disable_network_resource_provisioning || self.eni.imds_only_mode
    }

    /// The hourly leaked-ENI cleanup does not run: `DISABLE_LEAKED_ENI_CLEANUP`, or implied
    /// by IPv6 mode, disabled provisioning or IMDS-only mode.
    pub fn leaked_eni_cleanup_disabled(&self) -> bool {
        self.eni.disable_leaked_eni_cleanup || self.is_ipv6() || self.provisioning_disabled()
    }

    /// `WARM_IP_TARGET` or `MINIMUM_IP_TARGET` is non-zero (IP-target mode on card 0).
    pub fn ip_targets_defined(&self) -> bool {
        self.pool.warm_ip_target != 0 || self.pool.minimum_ip_target != 0
    }

    /// ipamd must wait for the API server at startup (security groups for pods, custom
    /// networking or pod IP annotation need it).
    pub fn requires_api_server_at_startup(&self) -> bool {
        self.eni.pod_eni || self.eni.custom_networking || self.kubernetes.annotate_pod_ip
    }

    /// The effective prefix-delegation mode given whether the instance supports it
    /// (Nitro or bare metal). Unsupported in IPv6 mode is an error (upstream: init fails).
    pub fn prefix_delegation(&self, supported: bool) -> Result<PrefixDelegation, PolicyError> {
        match (self.pool.prefix_delegation, supported, self.ip_family) {
            (false, _, _) => Ok(PrefixDelegation::Disabled),
            (true, true, _) => Ok(PrefixDelegation::Enabled),
            (true, false, IpFamily::V4) => Ok(PrefixDelegation::FallbackToSecondaryIps),
            (true, false, IpFamily::V6) => Err(PolicyError::PrefixDelegationUnsupportedInIpv6),
        }
    }

    /// The planner policy of this node. Log [`PrefixDelegation::warning`] of
    /// [`Config::prefix_delegation`] when the fallback applies.
    pub fn pool_policy(
        &self,
        max_pods: u32,
        prefix_delegation_supported: bool,
    ) -> Result<PoolPolicy, PolicyError> {
        let pd = self.prefix_delegation(prefix_delegation_supported)?;
        Ok(PoolPolicy {
            warm_eni_target: self.pool.warm_eni_target,
            warm_ip_target: self.pool.warm_ip_target,
            minimum_ip_target: self.pool.minimum_ip_target,
            warm_prefix_target: self.pool.warm_prefix_target,
            prefix_delegation: pd.is_enabled(),
            custom_networking: self.eni.custom_networking,
            max_pods,
        })
    }

    /// ENIs per network card: `MAX_ENI` if `1 <= MAX_ENI < instance_eni_limit`, else the
    /// instance limit.
    pub fn max_enis(&self, instance_eni_limit: u32) -> u32 {
        match self.pool.max_eni {
            Some(m) if m >= 1 && m < instance_eni_limit => m,
            _ => instance_eni_limit,
        }
    }

    /// The planner capacity of one card: `MAX_ENI` applied, and a slot kept for the trunk
    /// ENI when security groups for pods are on, the type supports trunking, the card is 0
    /// and no trunk exists yet.
    pub fn node_capacity(&self, card: &CardFacts) -> NodeCapacity {
        NodeCapacity {
            max_enis: self.max_enis(card.instance_eni_limit),
            ipv4_per_eni: card.ipv4_per_eni,
            unmanaged_enis: card.unmanaged_enis,
            reserve_trunk_slot: self.eni.pod_eni
                && card.trunking_compatible
                && card.network_card == 0
                && !card.has_trunk,
        }
    }

    /// Checkpoint file of a network card: card 0 uses `AWS_VPC_K8S_CNI_BACKING_STORE`,
    /// card N > 0 the same path without `.json` plus `-nic-N.json`.
    pub fn backing_store_path(&self, network_card: u32) -> PathBuf {
        if network_card == 0 {
            return self.paths.backing_store.clone();
        }
        let base = self.paths.backing_store.to_string_lossy();
        let stem = base.strip_suffix(".json").unwrap_or(&base);
        PathBuf::from(format!("{stem}-nic-{network_card}.json"))
    }
}
