//! `vpc-cni max-pods`: the EKS AMI max-pods calculator on the embedded limits table.

use anyhow::{Context as _, bail};
use limits::{CniVersion, MaxPodsOptions, REFERENCE_CNI_VERSION, max_pods, try_lookup};

/// Flags of `vpc-cni max-pods` (named as in max-pods-calculator.sh).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// EC2 instance type, e.g. m5.large.
    #[arg(long, value_name = "TYPE")]
    pub instance_type: String,

    /// VPC CNI version; prefix delegation needs 1.9.0 or later. [default: 1.23.1]
    #[arg(long, value_name = "VERSION")]
    pub cni_version: Option<CniVersion>,

    /// Prefix delegation is enabled (ENABLE_PREFIX_DELEGATION=true).
    #[arg(long)]
    pub cni_prefix_delegation_enabled: bool,

    /// Custom networking is enabled (AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true): the primary
    /// ENI carries no pods.
    #[arg(long)]
    pub cni_custom_networking_enabled: bool,

    /// Use at most this many ENIs for pods.
    #[arg(long, value_name = "N")]
    pub cni_max_eni: Option<u32>,

    /// Print the uncapped maximum instead of the recommended value (which is capped at
    /// 110, or 250 above 30 vCPUs).
    #[arg(long)]
    pub show_max_allowed: bool,
}

/// Computes the value and returns it as one line.
pub fn run(args: &Args) -> anyhow::Result<String> {
    let instance_type = args.instance_type.trim();
    let limits =
        try_lookup(instance_type).context("the embedded instance-limits table is broken")?;
    let Some(limits) = limits else {
        bail!(
            "unknown instance type {instance_type:?} (not in the embedded limits table; \
             check the spelling, e.g. m5.large)"
        );
    };
    let opts = MaxPodsOptions {
        cni_version: Some(args.cni_version.unwrap_or(REFERENCE_CNI_VERSION)),
        prefix_delegation: args.cni_prefix_delegation_enabled,
        custom_networking: args.cni_custom_networking_enabled,
        max_eni: args.cni_max_eni,
    };
    let result = max_pods(limits, &opts);
    let value = if args.show_max_allowed {
        result.max_allowed
    } else {
        result.recommended
    };
    Ok(format!("{value}\n"))
}
