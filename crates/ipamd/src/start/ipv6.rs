//! IPv6 clusters at start (upstream `nodeInit` and `setupENI` with `enableIPv6`,
//! `assignIPv6Prefix`; docs/ipv6.md): every managed ENI but the trunk gets exactly one
//! IPv6 prefix (a /80) that pods take their /128s from. EC2's `DescribeNetworkInterfaces`
//! says which prefixes the ENI has; none → `AssignIpv6Addresses` with `Ipv6PrefixCount=1`;
//! several → the first is used and the others are left alone, as upstream.

use aws::{Ec2, EniDescription};
use ipam::{Datastore, DatastoreError};
use ipnet::Ipv6Net;

use crate::start::bootstrap::BootstrapError;

/// The prefix `eni` should hand out: the first EC2 lists, else a new one when `provision`.
/// `None` when there is none and ipamd may not ask for one.
pub async fn prefix_for<E: Ec2>(
    ec2: &E,
    eni: &EniDescription,
    provision: bool,
) -> Result<Option<Ipv6Net>, BootstrapError> {
    if let Some(first) = eni.ipv6_prefixes.first() {
        if eni.ipv6_prefixes.len() > 1 {
            tracing::info!(eni = %eni.id, prefixes = ?eni.ipv6_prefixes, used = %first,
                "the ENI has several IPv6 prefixes: the first is used, the others are left alone");
        }
        return Ok(Some(*first));
    }
    if !provision {
        tracing::warn!(eni = %eni.id,
            "the ENI has no IPv6 prefix and provisioning is disabled: no IPv6 address for pods on it");
        return Ok(None);
    }
    let assigned = ec2
        .assign_ipv6_prefixes(&eni.id, 1)
        .await
        .map_err(|source| BootstrapError::Ipv6Prefix {
            eni: eni.id.clone(),
            source,
        })?;
    tracing::info!(eni = %eni.id, prefixes = ?assigned, "IPv6 prefix assigned");
    Ok(assigned.first().copied())
}

/// Gives the primary ENI its IPv6 prefix in the datastore. Upstream also gives one to each
/// other managed ENI and sets up its IPv6 route table; ours leaves them without a prefix
/// (no pod address comes from an ENI whose routing is not set up; docs/ipv6.md). Returns
/// `(eni, prefix)` for each ENI that got one.
pub async fn add_prefixes<E: Ec2>(
    ec2: &E,
    enis: &[EniDescription],
    ds: &mut Datastore,
    provision: bool,
) -> Result<Vec<(String, Ipv6Net)>, BootstrapError> {
    let mut added = Vec::new();
    for eni in enis {
        let Some(known) = ds.eni(&eni.id) else {
            continue;
        };
        if eni.interface_type == "trunk" {
            continue;
        }
        if !known.is_primary {
            tracing::warn!(eni = %eni.id,
                "IPv6 cluster: only the primary ENI hands out IPv6 addresses; this ENI is left as it is");
            continue;
        }
        let Some(prefix) = prefix_for(ec2, eni, provision).await? else {
            continue;
        };
        match ds.add_ipv6_cidr(&eni.id, prefix) {
            Ok(()) | Err(DatastoreError::IpAlreadyInStore) => added.push((eni.id.clone(), prefix)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(added)
}
