//! What runs after start in an IPv6 cluster (docs/ipv6.md). Upstream runs no pool loop and
//! no reconciliation in IPv6 mode (`StartNodeIPPoolManager` returns), so a prefix taken
//! away from the ENI outside ipamd (console, another tool) goes unnoticed until a restart.
//! Here the datastore's gauges are published every pool tick, and every reconcile period
//! the primary ENI's prefix (the only one pods use, see `start::ipv6`) is checked against EC2's `DescribeNetworkInterfaces`: a prefix EC2 no
//! longer lists is replaced by the one EC2 has (or a new one) once no pod holds an address
//! from it; while pods still hold addresses it stays, with an error in the log.
//!
//! With `ENABLE_POD_ENI` (docs/security-groups-for-pods.md) every pool tick also advertises
//! `SecurityGroupsForPods` on the node's CNINode (the IPv4 node loop's
//! [`FeatureAdvertiser`]; upstream does it once in `nodeInit`) and, while no trunk ENI is
//! known, asks EC2 for one (upstream's `checkForTrunkENI` loop in
//! `StartNodeIPPoolManager` for IPv6): the trunk enters the datastore as trunk, takes no
//! prefix, and its link is brought up.

use std::sync::Arc;
use std::time::Instant;

use aws::{Ec2, EniDescription};
use ipnet::Ipv6Net;

use crate::branch_pods::FeatureAdvertiser;
use crate::host_net::HostNet;
use crate::metrics::Metrics;
use crate::node_loop::{AgentTimers, publish_gauges};
use crate::pool::{self, SharedDatastore};

/// What to do about one ENI's prefix after asking EC2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixCheck {
    /// EC2 still lists it (or the ENI has none and EC2 has none to offer, and we may not ask).
    Keep,
    /// EC2 no longer lists it but pods hold addresses from it: keep it and say so.
    GoneButHeld,
    /// Drop `gone` (if any) and use `with` (EC2's first prefix), or ask EC2 for a new one.
    Replace {
        gone: Option<Ipv6Net>,
        with: Option<Ipv6Net>,
    },
}

/// The decision for an ENI whose datastore prefix is `ours` (with `held` pod addresses in
/// it) and whose EC2 prefixes are `ec2` (EC2's order).
pub fn check_prefix(
    ours: Option<Ipv6Net>,
    held: u32,
    ec2: &[Ipv6Net],
    provision: bool,
) -> PrefixCheck {
    match ours {
        Some(p) if ec2.contains(&p) => PrefixCheck::Keep,
        Some(_) if held > 0 => PrefixCheck::GoneButHeld,
        gone => match (ec2.first(), provision) {
            (Some(first), _) => PrefixCheck::Replace {
                gone,
                with: Some(*first),
            },
            (None, true) => PrefixCheck::Replace { gone, with: None },
            (None, false) if gone.is_some() => PrefixCheck::Replace { gone, with: None },
            (None, false) => PrefixCheck::Keep,
        },
    }
}

/// Security groups for pods in an IPv6 cluster: the CNINode features (with the Kubernetes
/// API) and the search for the trunk ENI.
pub struct PodEni {
    pub features: Option<FeatureAdvertiser>,
    /// Brings the trunk's link up once found; `None` leaves the kernel alone.
    pub host: Option<Arc<HostNet>>,
}

/// The IPv6 node's background work until aborted.
pub async fn run<E: Ec2>(
    ec2: Arc<E>,
    ds: SharedDatastore,
    metrics: Arc<Metrics>,
    instance_id: String,
    provision: bool,
    timers: AgentTimers,
    mut pod_eni: Option<PodEni>,
) {
    let mut last_check = Instant::now();
    loop {
        if let Some(p) = &mut pod_eni {
            if let Some(f) = &mut p.features {
                f.run_once().await;
            }
            if pool::lock(&ds).trunk_eni().is_none() {
                find_trunk(ec2.as_ref(), &ds, &instance_id, p.host.as_deref()).await;
            }
        }
        publish_gauges(&metrics, &[(0, ds.clone())]);
        if last_check.elapsed() >= timers.reconcile {
            reconcile_prefixes(ec2.as_ref(), &ds, &instance_id, provision).await;
            last_check = Instant::now();
        }
        tokio::time::sleep(timers.pool).await;
    }
}

/// The attached trunk ENI among `enis`, if any.
pub fn attached_trunk(enis: &[EniDescription]) -> Option<&EniDescription> {
    enis.iter()
        .find(|e| e.interface_type == "trunk" && e.attachment.is_some())
}

/// One look for the trunk ENI (upstream `checkForTrunkENI`): EC2's ENIs of the instance;
/// a trunk found is wired (its link up) and then added to the datastore as trunk, so a
/// branch pod is served only once its parent link is usable. Failures are retried on the
/// next tick.
pub async fn find_trunk<E: Ec2>(
    ec2: &E,
    ds: &SharedDatastore,
    instance_id: &str,
    host: Option<&HostNet>,
) -> bool {
    let enis = match ec2.describe_instance_enis(instance_id).await {
        Ok(enis) => enis,
        Err(e) => {
            tracing::debug!("looking for the trunk ENI: DescribeNetworkInterfaces: {e}");
            return false;
        }
    };
    let Some(trunk) = attached_trunk(&enis) else {
        return false;
    };
    if let Some(host) = host
        && let Err(e) = host.bring_up_trunk(&trunk.mac).await
    {
        tracing::warn!(eni = %trunk.id, "the trunk ENI's link: {e}");
        return false;
    }
    match crate::node::add_eni_record(&mut pool::lock(ds), trunk, pool::now()) {
        Ok(()) => {
            tracing::info!(eni = %trunk.id, "trunk ENI set up");
            true
        }
        Err(e) => {
            tracing::warn!(eni = %trunk.id, "adding the trunk ENI: {e}");
            false
        }
    }
}

/// One EC2-confirmed pass over the datastore's ENIs.
pub async fn reconcile_prefixes<E: Ec2>(
    ec2: &E,
    ds: &SharedDatastore,
    instance_id: &str,
    provision: bool,
) {
    let enis = match ec2.describe_instance_enis(instance_id).await {
        Ok(enis) => enis,
        Err(e) => {
            tracing::warn!("IPv6 prefix check: DescribeNetworkInterfaces: {e}");
            return;
        }
    };
    for eni in enis.iter().filter(|e| e.interface_type != "trunk") {
        let (ours, held) = {
            let ds = pool::lock(ds);
            let Some(known) = ds.eni(&eni.id) else {
                continue;
            };
            let ours = known.ipv6_cidrs.keys().next().copied();
            (ours, known.assigned_count())
        };
        match check_prefix(ours, held, &eni.ipv6_prefixes, provision) {
            PrefixCheck::Keep => {}
            PrefixCheck::GoneButHeld => tracing::error!(eni = %eni.id, prefix = ?ours,
                "EC2 no longer lists this ENI's IPv6 prefix, but pods still hold addresses in it"),
            PrefixCheck::Replace { gone, with } => {
                let with = match with {
                    Some(p) => Some(p),
                    None if provision => match ec2.assign_ipv6_prefixes(&eni.id, 1).await {
                        Ok(p) => p.first().copied(),
                        Err(e) => {
                            tracing::warn!(eni = %eni.id, "assigning an IPv6 prefix: {e}");
                            None
                        }
                    },
                    None => None,
                };
                replace_prefix(ds, &eni.id, gone, with);
            }
        }
    }
}

fn replace_prefix(ds: &SharedDatastore, eni: &str, gone: Option<Ipv6Net>, with: Option<Ipv6Net>) {
    let mut ds = pool::lock(ds);
    if let Some(old) = gone
        && let Err(e) = ds.del_ipv6_cidr(eni, old, false)
    {
        tracing::warn!(%eni, %old, "dropping the vanished IPv6 prefix: {e}");
        return;
    }
    if let Some(new) = with
        && let Err(e) = ds.add_ipv6_cidr(eni, new)
    {
        tracing::warn!(%eni, %new, "adding the IPv6 prefix: {e}");
        return;
    }
    tracing::info!(%eni, ?gone, ?with, "IPv6 prefix reconciled with EC2");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    #[test]
    fn a_prefix_ec2_lists_is_kept_and_a_vanished_one_is_replaced_once_free() {
        let a = p("2600:1f13::/80");
        let b = p("2600:1f13:0:0:1::/80");
        assert_eq!(check_prefix(Some(a), 3, &[b, a], true), PrefixCheck::Keep);
        assert_eq!(
            check_prefix(Some(a), 3, &[b], true),
            PrefixCheck::GoneButHeld
        );
        assert_eq!(
            check_prefix(Some(a), 0, &[b], false),
            PrefixCheck::Replace {
                gone: Some(a),
                with: Some(b)
            }
        );
        assert_eq!(
            check_prefix(Some(a), 0, &[], true),
            PrefixCheck::Replace {
                gone: Some(a),
                with: None
            }
        );
        assert_eq!(
            check_prefix(None, 0, &[], true),
            PrefixCheck::Replace {
                gone: None,
                with: None
            }
        );
        assert_eq!(check_prefix(None, 0, &[], false), PrefixCheck::Keep);
        assert_eq!(
            check_prefix(None, 0, &[b], false),
            PrefixCheck::Replace {
                gone: None,
                with: Some(b)
            }
        );
    }
}
