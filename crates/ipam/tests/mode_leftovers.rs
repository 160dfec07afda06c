//! `Datastore::other_mode_leftovers` (prefix delegation switched on or off; upstream
//! `tryUnassignIPsFromENIs`/`tryUnassignPrefixesFromENIs`): over random nodes holding both
//! kinds of CIDRs with pods on some, the releases name exactly the other mode's CIDRs no pod
//! holds, once per ENI; carrying them out (non-forcibly, as the pool manager does) never
//! fails, keeps every pod's address and the current mode's CIDRs, and leaves nothing more
//! to release.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipam::{Datastore, DatastoreConfig, IpamKey, IpamMetadata, MemorySink, NewEni, Timestamp};
use ipnet::Ipv4Net;
use planner::Action;
use proptest::prelude::*;

/// One ENI: its /32 slots and /28 slots present, in 0..8.
#[derive(Debug, Clone)]
struct EniSpec {
    ips: BTreeSet<u8>,
    prefixes: BTreeSet<u8>,
    excluded: bool,
}

fn eni_spec() -> impl Strategy<Value = EniSpec> {
    (
        proptest::collection::btree_set(0u8..8, 0..6),
        proptest::collection::btree_set(0u8..8, 0..4),
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(ips, prefixes, excluded)| EniSpec {
            ips,
            prefixes,
            excluded,
        })
}

fn eni_id(i: usize) -> String {
    format!("eni-{i}")
}

fn ip_cidr(eni: usize, slot: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 1, eni as u8, slot), 32).unwrap()
}

fn prefix_cidr(eni: usize, slot: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 2, eni as u8, slot * 16), 28).unwrap()
}

/// A node built in the old mode (pods placed then), switched to `pd_now`.
fn node(
    enis: &[EniSpec],
    pd_before: bool,
    pods_before: u8,
    pd_now: bool,
    pods_now: u8,
) -> Datastore {
    let now = Timestamp::from_unix_secs(1_700_000_000);
    let cfg = DatastoreConfig {
        network_card: 0,
        prefix_delegation: pd_before,
        ip_cooldown: Duration::from_secs(30),
    };
    let mut ds = Datastore::new(cfg, Box::new(MemorySink::new()));
    for (i, e) in enis.iter().enumerate() {
        let spec = NewEni {
            id: eni_id(i),
            device_number: i as u32,
            is_primary: i == 0,
            route_table_id: if i == 0 { 254 } else { i as u32 + 1 },
            excluded: e.excluded,
            ..NewEni::default()
        };
        ds.add_eni(spec, now).unwrap();
        for s in &e.ips {
            ds.add_ipv4_cidr(&eni_id(i), ip_cidr(i, *s)).unwrap();
        }
        for s in &e.prefixes {
            ds.add_ipv4_cidr(&eni_id(i), prefix_cidr(i, *s)).unwrap();
        }
    }
    let assign = |ds: &mut Datastore, from: u8, count: u8| {
        for p in from..from.saturating_add(count) {
            let key = IpamKey::new("aws-cni", format!("sandbox-{p}"), "eth0");
            // Exhaustion is fine: the node just has fewer pods.
            let _ = ds.assign_pod_ipv4(&key, &IpamMetadata::new("ns", format!("p{p}"), 1), now);
        }
    };
    assign(&mut ds, 0, pods_before);
    ds.set_prefix_delegation(pd_now);
    assign(&mut ds, 100, pods_now);
    ds
}

/// (ENI, CIDR) → pods holding an address in it, for every CIDR of the node.
fn cidrs(ds: &Datastore) -> BTreeMap<(String, Ipv4Net), u32> {
    ds.enis()
        .iter()
        .flat_map(|e| {
            e.ipv4_cidrs
                .values()
                .map(move |c| ((e.id.clone(), c.cidr), c.assigned_count()))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn releases_exactly_the_unused_cidrs_of_the_other_mode(
        enis in proptest::collection::vec(eni_spec(), 1..5),
        pd_before in any::<bool>(),
        pods_before in 0u8..40,
        pd_now in any::<bool>(),
        pods_now in 0u8..40,
    ) {
        let mut ds = node(&enis, pd_before, pods_before, pd_now, pods_now);
        let before = cidrs(&ds);
        let pods_held = ds.allocated_ips();
        let plan = ds.other_mode_leftovers();

        // Exactly: other mode, no pod, every such CIDR, each ENI once and in ENI order.
        let mut planned = BTreeSet::new();
        let mut seen_enis = Vec::new();
        for action in &plan {
            let Action::ReleaseCidrs { eni, cidrs } = action else {
                panic!("only releases: {action:?}");
            };
            prop_assert!(!cidrs.is_empty(), "no empty release");
            seen_enis.push(eni.clone());
            for c in cidrs {
                prop_assert!(planned.insert((eni.clone(), *c)), "{c} twice");
            }
        }
        let order: Vec<String> = ds
            .enis()
            .iter()
            .map(|e| e.id.clone())
            .filter(|id| seen_enis.contains(id))
            .collect();
        prop_assert_eq!(&seen_enis, &order, "one release per ENI, in ENI order");
        let expected: BTreeSet<(String, Ipv4Net)> = before
            .iter()
            .filter(|((_, c), pods)| (c.prefix_len() == 32) == pd_now && **pods == 0)
            .map(|(k, _)| k.clone())
            .collect();
        prop_assert_eq!(&planned, &expected);
        // Carried out non-forcibly: every removal succeeds, pods keep their addresses, the
        // current mode's CIDRs stay, and nothing is left to release.
        for action in &plan {
            if let Action::ReleaseCidrs { eni, cidrs } = action {
                for c in cidrs {
                    prop_assert!(ds.del_ipv4_cidr(eni, *c, false).is_ok(), "{eni} {c}");
                }
            }
        }
        prop_assert_eq!(ds.allocated_ips(), pods_held);
        let after = cidrs(&ds);
        for (k, pods) in &before {
            let in_mode = (k.1.prefix_len() < 32) == pd_now;
            if in_mode || *pods > 0 {
                prop_assert_eq!(after.get(k), Some(pods), "{:?} kept", k);
            } else {
                prop_assert!(!after.contains_key(k), "{:?} released", k);
            }
        }
        prop_assert!(ds.other_mode_leftovers().is_empty());
    }

    /// Once the pods of the other mode are gone (DEL), their CIDRs are leftovers too.
    #[test]
    fn a_deleted_pod_frees_its_other_mode_cidr(
        enis in proptest::collection::vec(eni_spec(), 1..4),
        pd_before in any::<bool>(),
        pods_before in 1u8..30,
    ) {
        let pd_now = !pd_before;
        let mut ds = node(&enis, pd_before, pods_before, pd_now, 0);
        let now = Timestamp::from_unix_secs(1_700_000_100);
        for a in ds.allocated_ips() {
            let cidr = ds
                .enis()
                .iter()
                .flat_map(|e| e.ipv4_cidrs.values().map(move |c| (e.id.clone(), c)))
                .find(|(_, c)| c.cidr.contains(&a.ip))
                .map(|(eni, c)| (eni, c.cidr, c.assigned_count()))
                .unwrap();
            ds.unassign_pod(&a.key, now).unwrap();
            let planned: BTreeSet<(String, Ipv4Net)> = ds
                .other_mode_leftovers()
                .into_iter()
                .flat_map(|act| match act {
                    Action::ReleaseCidrs { eni, cidrs } => {
                        cidrs.into_iter().map(|c| (eni.clone(), c)).collect::<Vec<_>>()
                    }
                    other => panic!("{other:?}"),
                })
                .collect();
            // The last pod of the CIDR gone: it is released (even within the cooldown, as
            // upstream releases on DEL); otherwise not yet.
            prop_assert_eq!(planned.contains(&(cidr.0.clone(), cidr.1)), cidr.2 == 1);
        }
    }
}
