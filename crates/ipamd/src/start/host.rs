//! Start-up step 4, converge host networking (upstream's `SetupHostNetwork` and
//! `SetupENINetwork`): the primary ENI's MTU and fwmark rule, the SNAT/connmark batch, the
//! external-service rules, then one route table and rule per secondary ENI.

use std::collections::HashSet;
use std::sync::Arc;

use aws::{Ec2, EniDescription, Imds};
use config::Config;

use crate::host_net::{HostNet, HostNetError, HostNetSettings};
use crate::metrics::Metrics;
use crate::start::bootstrap::vpc_id;
use crate::start::discover::Node;
use crate::start::options::HostNetOptions;

/// The host network handle in the node's namespace, when the agent manages it.
pub fn open_host_net(
    cfg: &Config,
    opts: Option<&HostNetOptions>,
    node: &Node,
) -> Result<Option<Arc<HostNet>>, HostNetError> {
    let Some(h) = opts else { return Ok(None) };
    let settings = HostNetSettings {
        netns: h.netns.clone(),
        eni_mtu: cfg.networking.eni_mtu,
        vpc_cidrs: node.vpc_cidrs.clone(),
        exclude_snat_cidrs: cfg.networking.exclude_snat_cidrs.clone(),
        external_service_cidrs: cfg.networking.external_service_cidrs.clone(),
        external_snat: cfg.networking.external_snat,
        node_port_support: cfg.networking.node_port_support,
        randomize: match cfg.networking.randomize_snat {
            config::RandomizeSnat::Prng => net::snat::Randomize::Prng,
            config::RandomizeSnat::HashRandom => net::snat::Randomize::HashRandom,
            config::RandomizeSnat::None => net::snat::Randomize::None,
        },
        veth_prefix: cfg.networking.veth_prefix.clone(),
        connmark: cfg.networking.connmark,
        v6_egress: cfg.chain.v6_egress,
        ipv6: cfg.is_ipv6(),
        strict_pod_eni: cfg.eni.pod_eni
            && cfg.eni.pod_sg_enforcing_mode == config::PodSgEnforcingMode::Strict,
        link_attempts: h.link_attempts,
        link_interval: h.link_interval,
    };
    Ok(Some(Arc::new(HostNet::new(settings)?)))
}

/// Node-wide rules and firewall, then every managed secondary ENI's table and rule
/// (`enis` as EC2 described them, minus `unmanaged`).
pub async fn converge_host_network(
    host: &HostNet,
    node: &Node,
    enis: &[EniDescription],
    unmanaged: &HashSet<String>,
    metrics: &Arc<Metrics>,
) -> Result<(), HostNetError> {
    host.set_metrics(metrics.clone());
    host.setup_node(&node.id.primary_mac, node.primary_ip())
        .await?;
    if node.ipv6.is_some() {
        // IPv6: only card 0 is managed and no ENI is added after start, so the primary
        // ENI is the only one pods use (docs/ipv6.md).
        return Ok(());
    }
    // Subnet CIDRs for the ENI route tables: EC2, else each ENI's IMDS entry (upstream reads
    // them from IMDS only; a failing DescribeSubnets is not fatal).
    let subnets = node
        .ec2
        .describe_subnets(&vpc_id(enis), &node.id.availability_zone)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("DescribeSubnets at start failed, using IMDS: {e}");
            Vec::new()
        });
    for eni in enis {
        let Some(att) = &eni.attachment else { continue };
        if (att.network_card, att.device_index) == (0, 0) || unmanaged.contains(&eni.id) {
            continue;
        }
        let cidr = match crate::subnets::cidr_of(&subnets, &eni.subnet_id) {
            Some(cidr) => Some(cidr),
            None => node
                .imds
                .eni(&eni.mac)
                .await
                .ok()
                .and_then(|e| e.subnet_cidr),
        };
        if let (Some(ip), Some(cidr)) = (eni.primary_ip, cidr) {
            let table = net::route_table::route_table_id(att.network_card, att.device_index);
            let trunk = eni.interface_type == "trunk";
            host.setup_secondary(&eni.mac, ip, cidr, table, trunk)
                .await?;
        }
    }
    Ok(())
}
