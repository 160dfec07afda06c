//! Start-up step 1, discover the node: who we are (IMDS identity, the primary ENI, its
//! security groups, the VPC CIDRs), an EC2 client for the region, and the instance type's
//! limits (upstream's `awsutils.New` and `FetchInstanceTypeLimits`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use aws::sdk_ec2::SdkEc2;
use aws::sdk_imds::SdkImds;
use aws::{Ec2, Ec2Settings, Imds, ImdsEni, InstanceIdentity};
use config::Config;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::metrics::Metrics;
use crate::start::options::AgentOptions;

/// Why the node could not be discovered.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("instance metadata: {0}")]
    Imds(aws::AwsError),
    #[error("EC2 DescribeInstanceTypes: {0}")]
    Ec2(aws::AwsError),
    #[error("instance type {0:?} is in neither the limits table nor DescribeInstanceTypes")]
    UnknownInstanceType(String),
    #[error(
        "ENABLE_IPv6=true but the primary ENI has no IPv6 address in instance metadata \
         (the subnet needs an IPv6 CIDR and the instance an IPv6 address)"
    )]
    NoPrimaryIpv6,
}

/// What the agent needs to know of its instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    /// ENIs on the default network card.
    pub eni_limit: u32,
    pub ipv4_per_eni: u32,
    /// Nitro or bare metal: /28 prefixes can be delegated.
    pub prefix_delegation: bool,
    /// EKS max pods for the type (used when the Node's capacity is unknown).
    pub max_pods: u32,
    /// The VPC resource controller can attach a trunk ENI (security groups for pods).
    pub trunking_compatible: bool,
}

/// The node as IMDS and the limits table describe it, with the clients to reach AWS.
pub struct Node {
    pub imds: Arc<SdkImds>,
    pub ec2: Arc<SdkEc2>,
    pub id: InstanceIdentity,
    pub primary: ImdsEni,
    pub security_groups: Vec<String>,
    /// The VPC's IPv4 CIDRs (IPv4 clusters; empty in IPv6 clusters).
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// IPv6 clusters: the primary ENI's IPv6 address (IMDS `ipv6`) and the VPC's IPv6 CIDRs
    /// (`vpc-ipv6-cidr-blocks`), upstream `nodeInit` step 2.
    pub ipv6: Option<NodeIpv6>,
    pub limits: NodeLimits,
    /// Every network card of the instance type as (index, max ENIs), sorted by index
    /// (the limits table's `cards`, else `DescribeInstanceTypes`' `NetworkCards`).
    pub network_cards: Vec<(u32, u32)>,
}

/// The node's IPv6 facts in an IPv6 cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIpv6 {
    pub primary_ip: Ipv6Addr,
    pub vpc_cidrs: Vec<Ipv6Net>,
}

impl Node {
    pub fn primary_ip(&self) -> Ipv4Addr {
        self.id.local_ipv4
    }
}

/// IMDS, then the EC2 client, then the limits.
pub async fn discover_node(
    cfg: &Config,
    opts: &AgentOptions,
    metrics: &Arc<Metrics>,
) -> Result<Node, DiscoverError> {
    let imds = aws::imds_client(opts.imds_endpoint.as_deref(), metrics.clone())
        .map_err(DiscoverError::Imds)?;
    let id = imds.identity().await.map_err(DiscoverError::Imds)?;
    let primary = imds
        .eni(&id.primary_mac)
        .await
        .map_err(DiscoverError::Imds)?;
    let security_groups = imds
        .security_group_ids(&id.primary_mac)
        .await
        .map_err(DiscoverError::Imds)?;
    let (vpc_cidrs, ipv6) = if cfg.is_ipv6() {
        (Vec::new(), Some(node_ipv6(&imds, &id.primary_mac).await?))
    } else {
        let v4 = imds
            .vpc_ipv4_cidrs(&id.primary_mac)
            .await
            .map_err(DiscoverError::Imds)?;
        (v4, None)
    };
    let mut settings = Ec2Settings::new(&id.region);
    settings.endpoint = cfg.aws.ec2_endpoint.clone().or(settings.endpoint);
    settings.http_timeout = cfg.aws.http_timeout;
    settings.static_credentials = opts.static_credentials.clone();
    let imds = Arc::new(imds);
    let mut ec2 = aws::ec2_client(&settings, metrics.clone()).await;
    if cfg.eni.imds_only_mode {
        tracing::info!(
            "ENABLE_IMDS_ONLY_MODE: ENIs come from IMDS; no EC2 call but DescribeInstanceTypes"
        );
        ec2 = ec2.into_imds_only(imds.clone(), &id.instance_id, &id.availability_zone);
    }
    let ec2 = Arc::new(ec2);
    let (limits, network_cards) = node_limits(ec2.as_ref(), &id.instance_type).await?;
    Ok(Node {
        imds,
        ec2,
        id,
        primary,
        security_groups,
        vpc_cidrs,
        ipv6,
        limits,
        network_cards,
    })
}

/// The primary IPv6 address and the VPC's IPv6 CIDRs from IMDS; no IPv6 address is fatal
/// (upstream's `GetLocalIPv6` failing in `awsutils.New`).
async fn node_ipv6<I: Imds>(imds: &I, primary_mac: &str) -> Result<NodeIpv6, DiscoverError> {
    let primary_ip = imds
        .primary_ipv6()
        .await
        .map_err(DiscoverError::Imds)?
        .ok_or(DiscoverError::NoPrimaryIpv6)?;
    let vpc_cidrs = imds
        .vpc_ipv6_cidrs(primary_mac)
        .await
        .map_err(DiscoverError::Imds)?;
    tracing::info!(%primary_ip, ?vpc_cidrs, "IPv6 cluster: the node's IPv6 facts");
    Ok(NodeIpv6 {
        primary_ip,
        vpc_cidrs,
    })
}

/// Limits from the table, else `DescribeInstanceTypes` (default card's interfaces), with
/// every network card's ENI maximum; a type not in the table is taken as not trunking
/// compatible.
pub async fn node_limits<E: Ec2>(
    ec2: &E,
    instance_type: &str,
) -> Result<(NodeLimits, Vec<(u32, u32)>), DiscoverError> {
    if let Some(l) = limits::lookup(instance_type) {
        let limits = NodeLimits {
            eni_limit: l.eni_limit,
            ipv4_per_eni: l.ipv4_per_eni,
            prefix_delegation: l.supports_prefix_delegation(),
            max_pods: l.eni_max_pods(),
            trunking_compatible: l.is_trunking_compatible(),
        };
        let cards = l
            .cards_or_default()
            .into_iter()
            .map(|c| (c.index, c.max_enis));
        return Ok((limits, sorted_cards(cards, l.eni_limit)));
    }
    let d = ec2
        .describe_instance_type(instance_type)
        .await
        .map_err(DiscoverError::Ec2)?;
    let limit = d
        .cards
        .iter()
        .find(|c| c.0 == d.default_card)
        .map(|c| c.1)
        .unwrap_or(d.max_enis);
    if limit == 0 || d.ipv4_per_eni == 0 {
        return Err(DiscoverError::UnknownInstanceType(instance_type.to_owned()));
    }
    let limits = NodeLimits {
        eni_limit: limit,
        ipv4_per_eni: d.ipv4_per_eni,
        prefix_delegation: d.hypervisor == "nitro" || d.bare_metal,
        max_pods: limit * (d.ipv4_per_eni - 1) + 2,
        trunking_compatible: false,
    };
    Ok((limits, sorted_cards(d.cards.iter().copied(), limit)))
}

/// The cards sorted by index, card 0 always present (with the default card's limit when a
/// source lists no cards).
fn sorted_cards(cards: impl Iterator<Item = (u32, u32)>, default_limit: u32) -> Vec<(u32, u32)> {
    let mut cards: Vec<(u32, u32)> = cards.collect();
    if !cards.iter().any(|c| c.0 == 0) {
        cards.push((0, default_limit));
    }
    cards.sort_unstable();
    cards.dedup_by_key(|c| c.0);
    cards
}

/// Addresses one ENI can hand to pods (`awscni_ip_max` per ENI, as upstream's
/// `GetENIIPv4Limit` × 16 with prefix delegation): every slot but the primary address,
/// each slot a /28 when prefixes are delegated.
pub fn max_ips_per_eni(ipv4_per_eni: u32, prefix_delegation: bool) -> u32 {
    let slots = ipv4_per_eni.saturating_sub(1);
    if prefix_delegation { slots * 16 } else { slots }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_delegation_multiplies_each_slot_by_sixteen() {
        assert_eq!(max_ips_per_eni(10, false), 9);
        assert_eq!(max_ips_per_eni(10, true), 144);
        assert_eq!(max_ips_per_eni(0, true), 0);
    }
}
