//! Turning the command line (and optionally the environment) into fleet inputs: the
//! subnet, the configuration as ipamd would read it, and one node group per `--nodes`.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use config::{CardFacts, Config, names};
use limits::{MaxPodsOptions, max_pods, try_lookup};

use super::fleet::NodeGroup;

/// Addresses AWS reserves in every subnet (network, router, DNS, future use, broadcast).
pub const AWS_RESERVED: u32 = 5;

/// The subnet being planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// The CIDR when one was given (not just a size).
    pub cidr: Option<String>,
    /// Addresses in the subnet.
    pub size: u32,
}

impl Subnet {
    /// Addresses EC2 can hand out.
    pub fn usable(&self) -> u32 {
        self.size - AWS_RESERVED
    }
}

fn size_of_len(len: u8) -> anyhow::Result<u32> {
    if !(16..=28).contains(&len) {
        bail!("bad subnet: a VPC subnet is between /16 and /28, not /{len}");
    }
    Ok(1u32 << (32 - u32::from(len)))
}

/// Parses `--subnet` (`10.0.0.0/24` or `/24`).
pub fn parse_subnet(raw: &str) -> anyhow::Result<Subnet> {
    let raw = raw.trim();
    if let Some(len) = raw.strip_prefix('/') {
        let len: u8 = len.parse().with_context(|| {
            format!("bad subnet {raw:?}: expected a CIDR like 10.0.0.0/24 or a length like /24")
        })?;
        return Ok(Subnet {
            cidr: None,
            size: size_of_len(len)?,
        });
    }
    let net: ipnet::Ipv4Net = raw.parse().map_err(|_| {
        anyhow::anyhow!("bad subnet {raw:?}: expected an IPv4 CIDR like 10.0.0.0/24 (or /24)")
    })?;
    if net.trunc() != net {
        bail!(
            "bad subnet {raw:?}: host bits are set (did you mean {}?)",
            net.trunc()
        );
    }
    Ok(Subnet {
        cidr: Some(net.to_string()),
        size: size_of_len(net.prefix_len())?,
    })
}

/// Checks `--subnet-size`.
pub fn subnet_of_size(size: u32) -> anyhow::Result<Subnet> {
    if !size.is_power_of_two() || !(16..=65_536).contains(&size) {
        bail!(
            "bad subnet size {size}: a VPC subnet holds a power of two from 16 (/28) to 65536 (/16) addresses"
        );
    }
    Ok(Subnet { cidr: None, size })
}

/// One `--nodes TYPE:COUNT:PODS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Instance type.
    pub instance_type: String,
    /// Nodes.
    pub count: u32,
    /// Pods per node.
    pub pods: u32,
}

/// Parses `TYPE:COUNT:PODS`.
pub fn parse_node_spec(raw: &str) -> anyhow::Result<NodeSpec> {
    let parts: Vec<&str> = raw.trim().split(':').collect();
    let [ty, count, pods] = parts.as_slice() else {
        bail!("bad --nodes {raw:?}: expected TYPE:COUNT:PODS, e.g. m5.large:3:20");
    };
    let count: u32 = count
        .trim()
        .parse()
        .with_context(|| format!("bad --nodes {raw:?}: node count {count:?} is not a number"))?;
    let pods: u32 = pods
        .trim()
        .parse()
        .with_context(|| format!("bad --nodes {raw:?}: pods per node {pods:?} is not a number"))?;
    if count == 0 {
        bail!("bad --nodes {raw:?}: the node count must be at least 1");
    }
    if count > 10_000 {
        bail!("bad --nodes {raw:?}: at most 10000 nodes per instance type");
    }
    Ok(NodeSpec {
        instance_type: ty.trim().to_string(),
        count,
        pods,
    })
}

/// The environment as `--from-env` reads it: only the variables the config crate knows.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| names::ALL.contains(&k.as_str()))
        .collect()
}

/// Parses the variables exactly as ipamd would (same defaults, same errors).
pub fn load_config(vars: BTreeMap<String, String>) -> anyhow::Result<Config> {
    let cfg = Config::from_vars(vars)?;
    if cfg.is_ipv6() {
        bail!("plan models IPv4 pools only (ENABLE_IPv6=true is set)");
    }
    Ok(cfg)
}

/// Knobs of the node groups that are not environment variables.
#[derive(Debug, Clone, Copy)]
pub struct GroupOptions {
    /// `--max-pods`: the kubelet's max pods instead of the EKS AMI calculator's value.
    pub max_pods: Option<u32>,
    /// `--host-network-pods`: pods on every node without a VPC IP (aws-node, kube-proxy).
    pub host_network_pods: u32,
}

/// Builds the node group of one spec; warnings (e.g. prefix-delegation fallback) are pushed.
pub fn node_group(
    cfg: &Config,
    spec: &NodeSpec,
    opts: GroupOptions,
    warnings: &mut Vec<String>,
) -> anyhow::Result<NodeGroup> {
    let ty = &spec.instance_type;
    let limits = try_lookup(ty)
        .context("the embedded instance-limits table is broken")?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown instance type {ty:?} (not in the embedded limits table; check the \
                 spelling, e.g. m5.large)"
            )
        })?;
    let supported = limits.supports_prefix_delegation();
    let pd = cfg.prefix_delegation(supported)?;
    if let Some(w) = pd.warning() {
        warnings.push(format!("{ty}: {w}"));
    }
    let max_pods = match opts.max_pods {
        Some(m) => m,
        None => {
            let calc = MaxPodsOptions {
                cni_version: None,
                prefix_delegation: pd.is_enabled(),
                custom_networking: cfg.eni.custom_networking,
                max_eni: cfg.pool.max_eni.filter(|m| *m >= 1),
            };
            max_pods(limits, &calc).recommended
        }
    };
    let policy = cfg.pool_policy(max_pods, supported)?;
    let capacity = cfg.node_capacity(&CardFacts {
        network_card: 0,
        instance_eni_limit: limits.eni_limit,
        ipv4_per_eni: limits.ipv4_per_eni,
        unmanaged_enis: 0,
        trunking_compatible: limits.is_trunking_compatible(),
        has_trunk: false,
    });
    if capacity.max_enis <= u32::from(capacity.reserve_trunk_slot) {
        bail!("impossible inputs: {ty} has no ENI slot left for pods");
    }
    if cfg.eni.custom_networking && capacity.max_enis < 2 {
        bail!(
            "impossible inputs: custom networking puts pods on secondary ENIs only, and {ty} \
             (MAX_ENI applied) allows {} ENI",
            capacity.max_enis
        );
    }
    Ok(NodeGroup {
        instance_type: ty.clone(),
        count: spec.count,
        pods_per_node: spec.pods,
        schedulable: max_pods.saturating_sub(opts.host_network_pods),
        policy,
        capacity,
        primary_in_subnet: !cfg.eni.custom_networking,
        cooldown: cfg.pool.ip_cooldown_period,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_refuse_nonsense() {
        assert_eq!(parse_subnet("10.0.0.0/24").unwrap().usable(), 251);
        assert_eq!(parse_subnet("/20").unwrap().size, 4096);
        let e = parse_subnet("10.0.0.5/24").unwrap_err().to_string();
        assert!(e.contains("did you mean 10.0.0.0/24"), "{e}");
        assert!(parse_subnet("10.0.0.0/29").is_err());
        assert!(parse_subnet("banana").is_err());
        assert!(subnet_of_size(100).is_err());
        assert_eq!(subnet_of_size(256).unwrap().usable(), 251);
    }

    #[test]
    fn node_specs_parse() {
        let s = parse_node_spec("m5.large:3:20").unwrap();
        assert_eq!(
            (s.instance_type.as_str(), s.count, s.pods),
            ("m5.large", 3, 20)
        );
        assert!(parse_node_spec("m5.large:3").is_err());
        assert!(parse_node_spec("m5.large:0:3").is_err());
        assert!(parse_node_spec("m5.large:x:3").is_err());
    }
}
