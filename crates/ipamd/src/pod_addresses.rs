//! A pod's addresses across the managed cards' datastores, as upstream's AddNetwork and
//! DelNetwork walk them (`pkg/ipamd/rpc_handler.go`): card 0 first; a single-address pod
//! moves on to the next card when a card has no free address; a multi-NIC pod takes one
//! address on every card. Unlike upstream, a multi-NIC assignment is all or nothing: what
//! was taken on earlier cards is given back when a later card fails (docs/ipamd.md,
//! "Multi-NIC").

use std::net::IpAddr;

use ipam::{Datastore, DatastoreError, IpamKey, IpamMetadata};

use crate::datastores::{CardStore, Datastores};
use crate::multi_nic::{AddStep, after_card_failure};
use crate::shared_datastore::{lock, now};

/// A pod's address of either family with where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PodAddress {
    pub ip: IpAddr,
    pub device_number: u32,
    pub route_table_id: u32,
}

impl<A: Into<IpAddr>> From<ipam::Assignment<A>> for PodAddress {
    fn from(a: ipam::Assignment<A>) -> Self {
        Self {
            ip: a.ip.into(),
            device_number: a.device_number,
            route_table_id: a.route_table_id,
        }
    }
}

impl PodAddress {
    fn released<N: ipam::PodNet>(ip: IpAddr, u: &ipam::Unassignment<N>) -> Self {
        Self {
            ip,
            device_number: u.device_number,
            route_table_id: u.route_table_id,
        }
    }
}

/// One card's part of a pod's addresses, with the checkpoint generation that holds it.
#[derive(Clone)]
pub(crate) struct OnCard {
    pub store: CardStore,
    pub address: PodAddress,
    pub generation: u64,
}

/// Takes `required` addresses for `key` (1, or one per card for a multi-NIC pod), card 0
/// first. On failure every address taken is given back and the first error returned.
pub(crate) fn assign(
    stores: &Datastores,
    ipv6: bool,
    key: &IpamKey,
    namespace: &str,
    name: &str,
    required: usize,
) -> Result<Vec<OnCard>, DatastoreError> {
    let meta = IpamMetadata::new(namespace, name, required as u32);
    let mut taken: Vec<OnCard> = Vec::new();
    let last = stores.len().saturating_sub(1);
    for (i, store) in stores.iter().enumerate() {
        if taken.len() == required {
            break;
        }
        let (result, generation) = on_card(store, |ds| assign_one(ds, ipv6, key, &meta));
        match result {
            Ok(address) => taken.push(OnCard {
                store: store.clone(),
                address,
                generation,
            }),
            Err(e) => {
                let no_address = matches!(e, DatastoreError::NoAvailableIp);
                if after_card_failure(no_address, required, i == last) == AddStep::Next {
                    tracing::debug!(card = store.card, "no free address; trying the next card");
                    continue;
                }
                give_back(ipv6, key, &taken);
                return Err(e);
            }
        }
    }
    if taken.len() < required {
        give_back(ipv6, key, &taken);
        return Err(DatastoreError::NoAvailableIp);
    }
    Ok(taken)
}

/// Releases what [`assign`] took (a failed AddNetwork, or a checkpoint that could not be
/// written).
pub(crate) fn give_back(ipv6: bool, key: &IpamKey, taken: &[OnCard]) {
    for t in taken {
        let (released, _) = on_card(&t.store, |ds| release_one(ds, ipv6, key));
        if let Err(e) = released {
            tracing::warn!(card = t.store.card, "giving back {}: {e}", t.address.ip);
        }
    }
}

/// What DelNetwork released on every card, and whether that emptied a CIDR of the other
/// prefix-delegation mode.
pub(crate) struct Released {
    pub on_cards: Vec<OnCard>,
    pub leftover: bool,
}

/// Releases `key`'s addresses card by card until as many as it recorded
/// (`interfacesCount`) are found (upstream's `DelNetwork` loop). `UnknownPod` when no card
/// knows the pod; another error stops the walk.
pub(crate) fn release(
    stores: &Datastores,
    ipv6: bool,
    key: &IpamKey,
) -> Result<Released, DatastoreError> {
    let mut out = Released {
        on_cards: Vec::new(),
        leftover: false,
    };
    let mut to_match = 1;
    for store in stores.iter() {
        if out.on_cards.len() >= to_match {
            break;
        }
        let ((released, leftover), generation) = on_card(store, |ds| {
            let released = release_one(ds, ipv6, key);
            let leftover = released.as_ref().is_ok_and(|r| r.1);
            (released, leftover)
        });
        match released {
            Ok((address, _, count)) => {
                to_match = to_match.max(count as usize);
                out.leftover |= leftover;
                out.on_cards.push(OnCard {
                    store: store.clone(),
                    address,
                    generation,
                });
            }
            Err(DatastoreError::UnknownPod) => continue,
            Err(e) => return Err(e),
        }
    }
    if out.on_cards.is_empty() {
        return Err(DatastoreError::UnknownPod);
    }
    Ok(out)
}

/// Runs `op` on one card's datastore (in memory: never held across disk I/O) and returns
/// the checkpoint generation that holds the change.
fn on_card<T>(store: &CardStore, op: impl FnOnce(&mut Datastore) -> T) -> (T, u64) {
    let mut ds = lock(&store.ds);
    let out = op(&mut ds);
    (out, store.checkpointer.generation())
}

fn assign_one(
    ds: &mut Datastore,
    ipv6: bool,
    key: &IpamKey,
    meta: &IpamMetadata,
) -> Result<PodAddress, DatastoreError> {
    if ipv6 {
        ds.assign_pod_ipv6(key, meta, now()).map(PodAddress::from)
    } else {
        ds.assign_pod_ipv4(key, meta, now()).map(PodAddress::from)
    }
}

/// Releases `key` on one card: the address, whether that emptied a CIDR of the other
/// prefix-delegation mode (IPv4), and the interface count the pod recorded.
fn release_one(
    ds: &mut Datastore,
    ipv6: bool,
    key: &IpamKey,
) -> Result<(PodAddress, bool, u32), DatastoreError> {
    if ipv6 {
        let u = ds.unassign_pod_ipv6(key, now())?;
        Ok((
            PodAddress::released(u.ip.into(), &u),
            false,
            u.interfaces_count,
        ))
    } else {
        let u = ds.unassign_pod(key, now())?;
        let leftover = emptied_other_mode_cidr(ds, &u);
        Ok((
            PodAddress::released(u.ip.into(), &u),
            leftover,
            u.interfaces_count,
        ))
    }
}

/// Whether releasing `u` left a CIDR of the other prefix-delegation mode without pods.
fn emptied_other_mode_cidr(ds: &Datastore, u: &ipam::Unassignment) -> bool {
    let pd = ds.config().prefix_delegation;
    ds.eni(&u.eni_id)
        .and_then(|e| e.cidr_containing(u.ip))
        .is_some_and(|c| !c.in_mode(pd) && c.assigned_count() == 0)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use ipam::{DatastoreConfig, MemorySink, NewEni, Timestamp};

    use super::*;
    use crate::checkpointer::Checkpointer;

    /// Card `card` with one ENI holding `cidrs` (/32s) for pods.
    fn card(card: u32, cidrs: &[&str]) -> CardStore {
        let (checkpointer, sink) = Checkpointer::new(Box::new(MemorySink::new()));
        let cfg = DatastoreConfig {
            network_card: card,
            ..DatastoreConfig::default()
        };
        let mut ds = Datastore::new(cfg, Box::new(sink));
        let id = format!("eni-card{card}");
        let eni = NewEni {
            id: id.clone(),
            is_primary: card == 0,
            route_table_id: net::route_table::route_table_id(card, 0),
            ..NewEni::default()
        };
        ds.add_eni(eni, Timestamp::default()).unwrap();
        for c in cidrs {
            ds.add_ipv4_cidr(&id, c.parse().unwrap()).unwrap();
        }
        CardStore {
            card,
            ds: Arc::new(Mutex::new(ds)),
            checkpointer,
        }
    }

    fn key(i: u32) -> IpamKey {
        IpamKey::new("aws-cni", format!("sandbox-{i}"), "eth0")
    }

    #[test]
    fn a_multi_nic_pod_takes_all_cards_or_nothing() {
        let stores = Datastores::new(vec![card(0, &["10.0.0.5/32"]), card(1, &[])]);
        let failed = assign(&stores, false, &key(1), "default", "pod-1", 2);
        assert!(matches!(failed, Err(DatastoreError::NoAvailableIp)));
        assert_eq!(stores.assigned(), 0, "card 0's address was given back");

        let stores = Datastores::new(vec![card(0, &["10.0.0.5/32"]), card(1, &["10.0.1.5/32"])]);
        let taken = assign(&stores, false, &key(1), "default", "pod-1", 2).unwrap();
        let tables: Vec<u32> = taken.iter().map(|t| t.address.route_table_id).collect();
        assert_eq!(tables, [254, 10_100]);
        let released = release(&stores, false, &key(1)).unwrap();
        let ips: Vec<IpAddr> = released.on_cards.iter().map(|c| c.address.ip).collect();
        assert_eq!(ips, taken.iter().map(|t| t.address.ip).collect::<Vec<_>>());
        assert_eq!(stores.assigned(), 0);
    }

    #[test]
    fn a_single_address_pod_moves_on_only_when_card_0_is_empty() {
        let stores = Datastores::new(vec![card(0, &["10.0.0.5/32"]), card(1, &["10.0.1.5/32"])]);
        let first = assign(&stores, false, &key(1), "default", "pod-1", 1).unwrap();
        let second = assign(&stores, false, &key(2), "default", "pod-2", 1).unwrap();
        assert_eq!(first[0].store.card, 0);
        assert_eq!(second[0].store.card, 1);
        let third = assign(&stores, false, &key(3), "default", "pod-3", 1);
        assert!(matches!(third, Err(DatastoreError::NoAvailableIp)));
        // DEL finds the pod on card 1 after card 0 does not know it.
        let released = release(&stores, false, &key(2)).unwrap();
        assert_eq!(released.on_cards[0].store.card, 1);
        assert!(matches!(
            release(&stores, false, &key(2)),
            Err(DatastoreError::UnknownPod)
        ));
    }
}
