//! The EKS AMI max-pods calculation (`max-pods-calculator.sh`).

use crate::table::{Hypervisor, InstanceLimits};
use crate::vcpus::{Vcpus, infer_vcpus_from_size};
use crate::version::CniVersion;

/// Recommended ceiling for instance types with at most [`HIGH_CPU_THRESHOLD`] vCPUs.
pub const CEILING_LOW_CPU: u32 = 110;
/// Recommended ceiling for instance types with more than [`HIGH_CPU_THRESHOLD`] vCPUs.
pub const CEILING_HIGH_CPU: u32 = 250;
/// vCPU count above which [`CEILING_HIGH_CPU`] applies.
pub const HIGH_CPU_THRESHOLD: u32 = 30;
/// IPv4 addresses in one delegated `/28` prefix.
pub const IPS_PER_PREFIX: u32 = 16;

/// Host-network pods the formula adds (aws-node and kube-proxy).
const HOST_NETWORK_PODS: u32 = 2;

/// Inputs of the calculation besides the instance type (the calculator's flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxPodsOptions {
    /// CNI version (`--cni-version`); `None` means a current release (prefix delegation
    /// supported).
    pub cni_version: Option<CniVersion>,
    /// `--cni-prefix-delegation-enabled`.
    pub prefix_delegation: bool,
    /// `--cni-custom-networking-enabled`: the primary ENI carries no pods.
    pub custom_networking: bool,
    /// `--cni-max-eni`: a ceiling on the ENIs used for pods.
    pub max_eni: Option<u32>,
}

/// Result of [`max_pods`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPods {
    /// The value the calculator prints by default: `max_allowed` capped by `ceiling`.
    pub recommended: u32,
    /// The uncapped value (`--show-max-allowed`).
    pub max_allowed: u32,
    /// The ceiling applied to `recommended` (110 or 250).
    pub ceiling: u32,
    /// ENIs counted for pods (after `max_eni` and custom networking).
    pub enis_for_pods: u32,
    /// Whether the prefix-delegation formula was used.
    pub prefix_delegation_used: bool,
    /// The vCPU count that chose the ceiling, and where it came from.
    pub vcpus: Vcpus,
}

/// Computes max pods for `limits` exactly as the EKS AMI's calculator does:
///
/// * ENIs = the default card's ENI limit, capped by `max_eni`, minus one with custom
///   networking (never below zero);
/// * prefix delegation applies only when requested, the hypervisor is Nitro and the CNI
///   version is at least 1.9.0: `ENIs × ((IPs − 1) × 16) + 2`; otherwise the
///   secondary-IP formula `ENIs × (IPs − 1) + 2`;
/// * recommended = min(max allowed, 250 if vCPUs > 30 else 110). When no source knows
///   the vCPUs they are inferred from the size suffix; if that fails too, bare-metal
///   types get 250 and others 110.
pub fn max_pods(limits: &InstanceLimits, opts: &MaxPodsOptions) -> MaxPods {
    let mut enis = limits.eni_limit;
    if let Some(cap) = opts.max_eni {
        enis = enis.min(cap);
    }
    if opts.custom_networking {
        enis = enis.saturating_sub(1);
    }
    let version_ok = opts
        .cni_version
        .is_none_or(CniVersion::supports_prefix_delegation);
    let prefix_delegation_used =
        opts.prefix_delegation && limits.hypervisor == Hypervisor::Nitro && version_ok;
    let per_eni = limits.ipv4_per_eni.saturating_sub(1);
    let per_eni = if prefix_delegation_used {
        per_eni.saturating_mul(IPS_PER_PREFIX)
    } else {
        per_eni
    };
    let max_allowed = enis
        .saturating_mul(per_eni)
        .saturating_add(HOST_NETWORK_PODS);

    let vcpus = match limits.vcpus {
        Some(n) => Vcpus::Known(n),
        None => {
            infer_vcpus_from_size(&limits.instance_type).map_or(Vcpus::Unknown, Vcpus::Inferred)
        }
    };
    let high_cpu = match vcpus {
        Vcpus::Known(n) | Vcpus::Inferred(n) => n > HIGH_CPU_THRESHOLD,
        Vcpus::Unknown => limits.bare_metal,
    };
    let ceiling = if high_cpu {
        CEILING_HIGH_CPU
    } else {
        CEILING_LOW_CPU
    };
    MaxPods {
        recommended: max_allowed.min(ceiling),
        max_allowed,
        ceiling,
        enis_for_pods: enis,
        prefix_delegation_used,
        vcpus,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Source;

    fn limits(
        name: &str,
        enis: u32,
        ips: u32,
        hv: Hypervisor,
        vcpus: Option<u32>,
    ) -> InstanceLimits {
        InstanceLimits {
            instance_type: name.to_string(),
            eni_limit: enis,
            ipv4_per_eni: ips,
            default_card_index: 0,
            network_cards: Vec::new(),
            hypervisor: hv,
            bare_metal: false,
            vcpus,
            source: Source::Moto,
            trunking_compatible: None,
            branch_enis: None,
        }
    }

    #[test]
    fn secondary_ip_formula_and_low_cpu_cap() {
        let l = limits("m5.large", 3, 10, Hypervisor::Nitro, Some(2));
        let r = max_pods(&l, &MaxPodsOptions::default());
        assert_eq!((r.max_allowed, r.recommended, r.ceiling), (29, 29, 110));
        assert!(!r.prefix_delegation_used);
    }

    #[test]
    fn prefix_delegation_needs_nitro_and_a_recent_cni() {
        let nitro = limits("m5.large", 3, 10, Hypervisor::Nitro, Some(2));
        let xen = limits("m4.large", 2, 10, Hypervisor::Xen, Some(2));
        let pd = MaxPodsOptions {
            prefix_delegation: true,
            ..MaxPodsOptions::default()
        };
        let r = max_pods(&nitro, &pd);
        assert_eq!((r.max_allowed, r.recommended), (434, 110));
        assert!(r.prefix_delegation_used);
        assert_eq!(max_pods(&xen, &pd).max_allowed, 20);
        let old = MaxPodsOptions {
            cni_version: Some(CniVersion::new(1, 8, 0)),
            ..pd
        };
        assert_eq!(max_pods(&nitro, &old).max_allowed, 29);
    }

    #[test]
    fn max_eni_and_custom_networking_reduce_enis() {
        let l = limits("m5.24xlarge", 15, 50, Hypervisor::Nitro, Some(96));
        let opts = MaxPodsOptions {
            max_eni: Some(4),
            custom_networking: true,
            ..MaxPodsOptions::default()
        };
        let r = max_pods(&l, &opts);
        assert_eq!((r.enis_for_pods, r.max_allowed, r.ceiling), (3, 149, 250));
        let none = MaxPodsOptions {
            max_eni: Some(0),
            custom_networking: true,
            ..MaxPodsOptions::default()
        };
        assert_eq!(max_pods(&l, &none).max_allowed, 2, "saturates at zero ENIs");
    }

    #[test]
    fn unknown_vcpus_are_inferred_or_fall_back_on_bare_metal() {
        let big = limits("p3.16xlarge", 8, 30, Hypervisor::Xen, None);
        let r = max_pods(&big, &MaxPodsOptions::default());
        assert_eq!(
            (r.vcpus, r.ceiling, r.recommended),
            (Vcpus::Inferred(64), 250, 234)
        );
        let mut metal = limits("i3.metal", 15, 50, Hypervisor::Unknown, None);
        metal.bare_metal = true;
        let r = max_pods(&metal, &MaxPodsOptions::default());
        assert_eq!(
            (r.vcpus, r.ceiling, r.recommended),
            (Vcpus::Unknown, 250, 250)
        );
    }
}
