//! The datastores of the managed network cards (upstream's `DataStoreAccess`): one
//! datastore and one checkpoint writer per card, card 0 first. Everything that works on
//! one card (the pool manager, the reconciler, host setup) gets that card's
//! [`CardStore`]; what spans cards (AddNetwork/DelNetwork, introspection, gauges) walks
//! [`Datastores`] in card order. docs/ipamd.md, "Multi-NIC".

use std::sync::Arc;

use crate::checkpointer::Checkpointer;
use crate::shared_datastore::{SharedDatastore, lock, now};

/// One managed network card's datastore and the writer of its checkpoint file.
#[derive(Clone)]
pub struct CardStore {
    pub card: u32,
    pub ds: SharedDatastore,
    pub checkpointer: Checkpointer,
}

/// The managed cards' datastores, sorted by card, card 0 always first.
#[derive(Clone)]
pub struct Datastores(Arc<Vec<CardStore>>);

impl Datastores {
    /// `cards` in any order; card 0 must be among them.
    pub fn new(mut cards: Vec<CardStore>) -> Self {
        cards.sort_by_key(|c| c.card);
        Self(Arc::new(cards))
    }

    /// Only card 0 (multi-NIC off).
    pub fn single(ds: SharedDatastore, checkpointer: Checkpointer) -> Self {
        Self::new(vec![CardStore {
            card: 0,
            ds,
            checkpointer,
        }])
    }

    /// Card 0's store (the primary ENI's card: trunk, branch pods and IPv6 live there).
    pub fn primary(&self) -> &CardStore {
        // `new` is only ever given card 0 among the cards (`managed_cards` keeps it).
        &self.0[0]
    }

    /// Every card's store in card order.
    pub fn iter(&self) -> std::slice::Iter<'_, CardStore> {
        self.0.iter()
    }

    /// How many cards are managed (`ipsRequired` of a multi-NIC pod).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: card 0 is always managed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// (card, datastore) pairs for introspection's `/v1/enis`.
    pub fn by_card(&self) -> Vec<(u32, SharedDatastore)> {
        self.0.iter().map(|c| (c.card, c.ds.clone())).collect()
    }

    /// Addresses assigned to pods on every card (IPv4 and IPv6).
    pub fn assigned(&self) -> u32 {
        let at = now();
        self.0
            .iter()
            .map(|c| {
                let ds = lock(&c.ds);
                ds.stats(at).assigned_ips + ds.ipv6_assigned()
            })
            .sum()
    }

    /// Persists every card's datastore and writes each checkpoint now (shutdown).
    pub fn write_all_now(&self) -> Result<(), ipam::CheckpointError> {
        for c in self.0.iter() {
            lock(&c.ds).persist()?;
            c.checkpointer.write_now()?;
        }
        Ok(())
    }
}
