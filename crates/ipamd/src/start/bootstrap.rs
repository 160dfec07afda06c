//! Start-up step 3, bootstrap the datastore: EC2's `DescribeNetworkInterfaces` is the truth
//! for which ENIs, addresses and prefixes the node has (IMDS may lag); managed ENIs get their
//! missing tags (upstream's `TagENI`); the checkpoint is restored on top, whole: the
//! allocations whose pod's veth is gone are released later, by the sweep after serving
//! begins (`crate::stale_pods`, docs/ipamd.md "Start").

use std::collections::HashSet;

use aws::{Ec2, EniDescription};
use config::Config;
use ipam::{Checkpoint, Datastore, DatastoreConfig};
use planner::PoolPolicy;

use crate::checkpointer::PendingSink;
use crate::multi_nic;
use crate::node;
use crate::pool;
use crate::start::discover::Node;

/// Why the datastore could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("EC2 DescribeNetworkInterfaces: {0}")]
    Ec2(aws::AwsError),
    #[error("tagging ENI {eni}: {source}")]
    Tagging { eni: String, source: aws::AwsError },
    #[error("datastore: {0}")]
    Datastore(#[from] ipam::DatastoreError),
    #[error("checkpoint {0}")]
    Checkpoint(#[from] ipam::CheckpointError),
    #[error("network card 0 has no datastore")]
    NoCard0,
    #[error("network card {0} has no checkpoint writer")]
    NoCheckpointer(u32),
    #[error("EC2 AssignIpv6Addresses (an IPv6 prefix for ENI {eni}): {source}")]
    Ipv6Prefix { eni: String, source: aws::AwsError },
}

/// The datastores and what EC2 said about the node's ENIs.
pub struct Bootstrapped {
    /// Card 0's datastore.
    pub ds: Datastore,
    /// The other managed cards' datastores (`ENABLE_MULTI_NIC`), by card.
    pub other_cards: Vec<(u32, Datastore)>,
    pub enis: Vec<EniDescription>,
    /// ENIs attached to the node that ipamd does not manage (they take ENI slots), those
    /// of unmanaged network cards included.
    pub unmanaged: HashSet<String>,
}

impl Bootstrapped {
    /// Unmanaged ENIs on `card` (they take that card's ENI slots).
    pub fn unmanaged_on(&self, card: u32) -> u32 {
        self.enis
            .iter()
            .filter(|e| multi_nic::card_of(e) == card && self.unmanaged.contains(&e.id))
            .count() as u32
    }
}

/// The VPC of the node's ENIs.
pub fn vpc_id(enis: &[EniDescription]) -> String {
    enis.first().map(|e| e.vpc_id.clone()).unwrap_or_default()
}

/// EC2 truth, the managed cards, tags, custom-networking exclusion of the primary ENI, then
/// each card's checkpoint; `sink_for(card)` gives the checkpoint sink of a managed card.
pub async fn bootstrap_datastore(
    cfg: &Config,
    node: &Node,
    policy: &PoolPolicy,
    mut sink_for: impl FnMut(u32) -> PendingSink,
) -> Result<Bootstrapped, BootstrapError> {
    let enis = node
        .ec2
        .describe_instance_enis(&node.id.instance_id)
        .await
        .map_err(BootstrapError::Ec2)?;
    let instance = &node.id.instance_id;
    let managed = |e: &EniDescription| node::is_managed(e, instance, cfg.eni.manage_untagged_eni);
    // IPv6: card 0 only in this build (docs/ipv6.md).
    let multi_nic = cfg.eni.multi_nic && !cfg.is_ipv6();
    let cards = multi_nic::managed_cards(multi_nic, &node.network_cards, &enis, managed);
    tracing::info!(
        ?cards,
        multi_nic = cfg.eni.multi_nic,
        "managed network cards"
    );
    let mut stores: Vec<(u32, Datastore)> = cards
        .iter()
        .map(|&card| {
            let ds_config = DatastoreConfig {
                network_card: card,
                prefix_delegation: policy.prefix_delegation,
                ip_cooldown: cfg.pool.ip_cooldown_period,
            };
            (card, Datastore::new(ds_config, Box::new(sink_for(card))))
        })
        .collect();
    let unmanaged = add_managed_enis(cfg, node, &enis, &mut stores).await?;
    let mut stores = stores.into_iter();
    let Some((_, mut ds)) = stores.next() else {
        return Err(BootstrapError::NoCard0);
    };
    let mut other_cards: Vec<(u32, Datastore)> = stores.collect();
    if cfg.is_ipv6() {
        let provision = !cfg.provisioning_disabled();
        crate::start::ipv6::add_prefixes(node.ec2.as_ref(), &enis, &mut ds, provision).await?;
    }
    if cfg.eni.custom_networking {
        // Custom networking: pods get addresses from ENIConfig subnets, never the primary's.
        if let Err(e) = ds.set_eni_excluded(&node.primary.eni_id, true) {
            tracing::warn!("excluding the primary ENI: {e}");
        }
    }
    let az = &node.id.availability_zone;
    let exclusion = crate::subnet_exclusion::SubnetExclusion::for_node(cfg, &vpc_id(&enis), az);
    for (card, store) in
        std::iter::once((0, &mut ds)).chain(other_cards.iter_mut().map(|(c, d)| (*c, d)))
    {
        if let Some(x) = &exclusion {
            x.at_start(node.ec2.as_ref(), store).await;
        }
        match ipam::read_checkpoint(&cfg.backing_store_path(card))? {
            Some(doc) => restore(store, doc)?,
            None => store.persist()?,
        }
    }
    Ok(Bootstrapped {
        ds,
        other_cards,
        enis,
        unmanaged,
    })
}

/// Managed ENIs into their card's datastore (tagged as upstream's `TagENI` unless
/// provisioning is off or it is the trunk); returns the unmanaged ones, those on cards
/// ipamd does not manage included.
async fn add_managed_enis(
    cfg: &Config,
    node: &Node,
    enis: &[EniDescription],
    stores: &mut [(u32, Datastore)],
) -> Result<HashSet<String>, BootstrapError> {
    let instance = &node.id.instance_id;
    let mut unmanaged = HashSet::new();
    let now = pool::now();
    for eni in enis {
        let card = multi_nic::card_of(eni);
        let store = stores.iter_mut().find(|(c, _)| *c == card);
        let Some((_, ds)) =
            store.filter(|_| node::is_managed(eni, instance, cfg.eni.manage_untagged_eni))
        else {
            unmanaged.insert(eni.id.clone());
            continue;
        };
        if cfg.is_ipv6() {
            // IPv6: pods take /128s from the ENI's /80 only; its IPv4 addresses stay out.
            node::add_eni_record(ds, eni, now)?;
        } else {
            node::add_eni_from_ec2(ds, eni, now)?;
        }
        if cfg.provisioning_disabled() || eni.interface_type == "trunk" {
            continue;
        }
        let missing = node::missing_tags(
            eni,
            instance,
            &cfg.eni.cluster_name,
            &cfg.eni.additional_eni_tags,
        );
        node::tag_eni(node.ec2.as_ref(), &eni.id, &missing, &node::TAG_RETRIES)
            .await
            .map_err(|source| BootstrapError::Tagging {
                eni: eni.id.clone(),
                source,
            })?;
    }
    Ok(unmanaged)
}

/// Restores the checkpoint, every allocation of it. Those whose pod's veth is gone are not
/// dropped here, before serving, as upstream's `ReadBackingStore` does: an ADD that had its
/// address when the agent was killed may not have made its veth yet (the plugin makes it
/// while ipamd answers), and dropping its allocation then handed the address to a second pod
/// (docs/reliability.md, "Found by the suite"). [`crate::stale_pods::sweep_after_start`] releases
/// them once their veth has stayed gone for seconds.
fn restore(ds: &mut Datastore, doc: Checkpoint) -> Result<(), BootstrapError> {
    let report = ds.restore(&doc)?;
    tracing::info!(
        restored = report.restored,
        pending = report.dropped.len(),
        "checkpoint restored"
    );
    Ok(())
}
