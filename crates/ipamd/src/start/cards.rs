//! Per-card parts of serving (docs/ipamd.md, "Multi-NIC"): each managed network card's
//! planner capacity, pool manager and reconciler. Card 0's are the node's as before; with
//! `ENABLE_MULTI_NIC` every other managed card gets its own, working on its own datastore.

use std::sync::Arc;

use aws::sdk_ec2::SdkEc2;
use aws::sdk_imds::SdkImds;
use config::{CardFacts, Config};
use planner::NodeCapacity;

use crate::datastores::CardStore;
use crate::node_loop::CardWork;
use crate::pool::{EniConfigSource, NodeFacts, PoolManager};
use crate::reconcile::{ReconcileFacts, Reconciler};
use crate::start::bootstrap::Bootstrapped;
use crate::start::discover::Node;
use crate::start::ready::Ready;

/// The planner capacity of every managed card > 0: the card's ENI maximum (with `MAX_ENI`
/// applied, as upstream applies it to every card) less its unmanaged ENIs; no trunk slot.
pub fn other_card_capacities(
    cfg: &Config,
    node: &Node,
    boot: &Bootstrapped,
) -> Vec<(u32, NodeCapacity)> {
    boot.other_cards
        .iter()
        .map(|(card, _)| {
            let limit = node
                .network_cards
                .iter()
                .find(|c| c.0 == *card)
                .map_or(0, |c| c.1);
            let capacity = cfg.node_capacity(&CardFacts {
                network_card: *card,
                instance_eni_limit: limit,
                ipv4_per_eni: node.limits.ipv4_per_eni,
                unmanaged_enis: boot.unmanaged_on(*card),
                trunking_compatible: false,
                has_trunk: false,
            });
            (*card, capacity)
        })
        .collect()
}

/// The pool manager of one card, with custom networking, the cordon gate and host
/// networking as the node has them.
pub fn pool_manager(
    ready: &Ready,
    store: &CardStore,
    (card, capacity): (u32, NodeCapacity),
    cluster: Option<&Arc<dyn k8s::Cluster>>,
) -> PoolManager<SdkEc2> {
    let (cfg, node) = (&ready.cfg, &ready.node);
    let facts = NodeFacts {
        instance_id: node.id.instance_id.clone(),
        subnet_id: node.primary.subnet_id.clone(),
        security_groups: node.security_groups.clone(),
        cluster_name: cfg.eni.cluster_name.clone(),
        additional_tags: cfg.eni.additional_eni_tags.clone(),
        subnet_cidr: node.primary.subnet_cidr,
        vpc_id: ready.vpc_id.clone(),
        availability_zone: node.id.availability_zone.clone(),
        subnet_discovery: cfg.eni.subnet_discovery,
    };
    let eni_configs = match (cfg.eni.custom_networking, cluster) {
        (false, _) => EniConfigSource::NotUsed,
        (true, Some(c)) => EniConfigSource::Cluster(c.clone()),
        (true, None) => EniConfigSource::Unavailable(
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true needs the Kubernetes API, but MY_NODE_NAME is not set".into(),
        ),
    };
    let policy = ready.policy;
    let ds = store.ds.clone();
    let mut manager = PoolManager::new(node.ec2.clone(), ds, facts, policy, capacity)
        .with_network_card(card)
        .with_eni_configs(eni_configs)
        .with_conntrack(ready.primary_conntrack)
        .with_metrics(ready.metrics.clone());
    if let (Some(c), false) = (cluster, cfg.eni.manage_enis_non_schedulable) {
        manager = manager.with_cordon_gate(c.clone());
    }
    if let Some(host) = &ready.host {
        manager = manager.with_host_network(host.clone());
    }
    if let Some((max_pods, _)) = &ready.max_pods_watch {
        manager = manager.with_max_pods(max_pods.clone());
    }
    manager
}

/// Pool manager and reconciler of every managed card > 0.
pub fn other_card_work(
    ready: &Ready,
    cluster: Option<&Arc<dyn k8s::Cluster>>,
    facts: &ReconcileFacts,
) -> Vec<CardWork<SdkEc2, SdkImds>> {
    let node = &ready.node;
    ready
        .stores
        .iter()
        .filter(|store| store.card > 0)
        .filter_map(|store| {
            let capacity = ready.other_capacities.iter().find(|c| c.0 == store.card)?;
            let manager = pool_manager(ready, store, *capacity, cluster);
            let mut reconciler = Reconciler::new(
                node.ec2.clone(),
                node.imds.clone(),
                store.ds.clone(),
                facts.clone(),
                ready.metrics.clone(),
                ready.unmanaged.clone(),
            )
            .with_network_card(store.card);
            if let Some(host) = &ready.host {
                reconciler = reconciler.with_host_network(host.clone());
            }
            Some(CardWork {
                manager,
                reconciler,
            })
        })
        .collect()
}
