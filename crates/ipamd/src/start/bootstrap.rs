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
    #[error("EC2 AssignIpv6Addresses (an IPv6 prefix for ENI {eni}): {source}")]
    Ipv6Prefix { eni: String, source: aws::AwsError },
}

/// The datastore and what EC2 said about the node's ENIs.
pub struct Bootstrapped {
    pub ds: Datastore,
    pub enis: Vec<EniDescription>,
    /// ENIs attached to the node that ipamd does not manage (they take ENI slots).
    pub unmanaged: HashSet<String>,
}

/// The VPC of the node's ENIs.
pub fn vpc_id(enis: &[EniDescription]) -> String {
    enis.first().map(|e| e.vpc_id.clone()).unwrap_or_default()
}

/// EC2 truth, tags, custom-networking exclusion of the primary ENI, then the checkpoint.
pub async fn bootstrap_datastore(
    cfg: &Config,
    node: &Node,
    policy: &PoolPolicy,
    sink: PendingSink,
) -> Result<Bootstrapped, BootstrapError> {
    let ds_config = DatastoreConfig {
        network_card: 0,
        prefix_delegation: policy.prefix_delegation,
        ip_cooldown: cfg.pool.ip_cooldown_period,
    };
    let mut ds = Datastore::new(ds_config, Box::new(sink));
    let enis = node
        .ec2
        .describe_instance_enis(&node.id.instance_id)
        .await
        .map_err(BootstrapError::Ec2)?;
    let unmanaged = add_managed_enis(cfg, node, &enis, &mut ds).await?;
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
    if let Some(x) = crate::subnet_exclusion::SubnetExclusion::for_node(cfg, &vpc_id(&enis), az) {
        x.at_start(node.ec2.as_ref(), &mut ds).await;
    }
    match ipam::read_checkpoint(&cfg.backing_store_path(0))? {
        Some(doc) => restore(&mut ds, doc)?,
        None => ds.persist()?,
    }
    Ok(Bootstrapped {
        ds,
        enis,
        unmanaged,
    })
}

/// Managed ENIs into the datastore (tagged as upstream's `TagENI` unless provisioning is
/// off or it is the trunk); returns the unmanaged ones.
async fn add_managed_enis(
    cfg: &Config,
    node: &Node,
    enis: &[EniDescription],
    ds: &mut Datastore,
) -> Result<HashSet<String>, BootstrapError> {
    let instance = &node.id.instance_id;
    let mut unmanaged = HashSet::new();
    let now = pool::now();
    for eni in enis {
        if !node::is_managed(eni, instance, cfg.eni.manage_untagged_eni) {
            unmanaged.insert(eni.id.clone());
            continue;
        }
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
