//! Property tests over random operation sequences on one datastore, checked against a
//! small model kept by the test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipam::{
    Checkpoint, Datastore, DatastoreConfig, DatastoreError, IpamKey, IpamMetadata, MemorySink,
    NewEni, Timestamp,
};
use ipnet::Ipv4Net;
use proptest::prelude::*;

const COOLDOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
enum Op {
    AddEni(u8),
    AddCidr {
        eni: u8,
        prefix: bool,
        slot: u8,
    },
    DelCidr {
        eni: u8,
        prefix: bool,
        slot: u8,
        force: bool,
    },
    RemoveEni {
        eni: u8,
        force: bool,
    },
    Assign(u8),
    Unassign(u8),
    Advance(u8),
    TogglePd,
    Exclude(u8, bool),
    FailSink(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..4).prop_map(Op::AddEni),
        4 => (0u8..4, any::<bool>(), 0u8..6).prop_map(|(eni, prefix, slot)| Op::AddCidr { eni, prefix, slot }),
        1 => (0u8..4, any::<bool>(), 0u8..6, any::<bool>())
            .prop_map(|(eni, prefix, slot, force)| Op::DelCidr { eni, prefix, slot, force }),
        1 => (1u8..4, any::<bool>()).prop_map(|(eni, force)| Op::RemoveEni { eni, force }),
        8 => (0u8..24).prop_map(Op::Assign),
        5 => (0u8..24).prop_map(Op::Unassign),
        3 => (0u8..40).prop_map(Op::Advance),
        1 => Just(Op::TogglePd),
        1 => (0u8..4, any::<bool>()).prop_map(|(e, x)| Op::Exclude(e, x)),
        1 => any::<bool>().prop_map(Op::FailSink),
    ]
}

fn eni_id(i: u8) -> String {
    format!("eni-{i}")
}

fn cidr(eni: u8, prefix: bool, slot: u8) -> Ipv4Net {
    if prefix {
        Ipv4Net::new(Ipv4Addr::new(10, 2, eni, slot * 16), 28).unwrap()
    } else {
        Ipv4Net::new(Ipv4Addr::new(10, 1, eni, slot), 32).unwrap()
    }
}

fn key(i: u8) -> IpamKey {
    IpamKey::new("aws-cni", format!("sandbox-{i}"), "eth0")
}

/// What the test believes: who holds what, and when each address was released.
#[derive(Default)]
struct Model {
    held: HashMap<IpamKey, Ipv4Addr>,
    released: HashMap<Ipv4Addr, Timestamp>,
    /// A forced removal could not rewrite the checkpoint (allowed: the removal stands);
    /// the file is behind until the next successful write.
    checkpoint_behind: bool,
}

fn assigned_pairs(ds: &Datastore) -> BTreeSet<(IpamKey, Ipv4Addr)> {
    ds.allocated_ips()
        .into_iter()
        .map(|a| (a.key, a.ip))
        .collect()
}

fn check_invariants(ds: &Datastore, model: &Model, sink: &MemorySink, now: Timestamp) {
    let allocated = ds.allocated_ips();
    let keys: BTreeSet<&IpamKey> = allocated.iter().map(|a| &a.key).collect();
    let ips: BTreeSet<Ipv4Addr> = allocated.iter().map(|a| a.ip).collect();
    assert_eq!(keys.len(), allocated.len(), "a key holds two addresses");
    assert_eq!(ips.len(), allocated.len(), "an address is held twice");
    let expected: BTreeSet<(IpamKey, Ipv4Addr)> =
        model.held.iter().map(|(k, ip)| (k.clone(), *ip)).collect();
    assert_eq!(assigned_pairs(ds), expected);

    let pd = ds.config().prefix_delegation;
    let total: u32 = ds
        .enis()
        .iter()
        .filter(|e| !e.excluded)
        .flat_map(|e| e.ipv4_cidrs.keys())
        .filter(|c| (c.prefix_len() == 28) == pd)
        .map(|c| if c.prefix_len() == 28 { 16 } else { 1 })
        .sum();
    let held_in_pool = ds
        .enis()
        .iter()
        .filter(|e| !e.excluded)
        .flat_map(|e| e.assigned())
        .filter(|(ip, _)| (ip.octets()[1] == 2) == pd)
        .count() as u32;
    let s = ds.stats(now);
    assert_eq!(s.total_ips, total);
    assert_eq!(s.assigned_ips, held_in_pool);
    assert!(s.cooldown_ips <= s.total_ips - s.assigned_ips);
    assert_eq!(ds.snapshot(now).stats().total_ips, s.total_ips);

    if let Some(last) = sink.last().filter(|_| !model.checkpoint_behind) {
        let persisted: BTreeSet<(IpamKey, Ipv4Addr)> = last
            .allocations
            .iter()
            .map(|e| (e.key.clone(), e.ipv4.parse().unwrap()))
            .collect();
        assert_eq!(persisted, expected, "checkpoint matches the store");
    }
}

fn round_trip(ds: &Datastore) {
    let bytes = ds.checkpoint().to_json().unwrap();
    let parsed = Checkpoint::from_json(&bytes).unwrap();
    let mut fresh = Datastore::new(ds.config(), Box::new(MemorySink::new()));
    for e in ds.enis() {
        let spec = NewEni {
            id: e.id.clone(),
            device_number: e.device_number,
            is_primary: e.is_primary,
            route_table_id: e.route_table_id,
            excluded: e.excluded,
            ..NewEni::default()
        };
        fresh.add_eni(spec, e.created_at).unwrap();
        for c in e.ipv4_cidrs.keys() {
            fresh.add_ipv4_cidr(&e.id, *c).unwrap();
        }
    }
    let report = fresh.restore(&parsed).unwrap();
    assert!(report.dropped.is_empty());
    assert_eq!(assigned_pairs(&fresh), assigned_pairs(ds));
    let times = |d: &Datastore| -> BTreeMap<Ipv4Addr, i64> {
        d.enis()
            .iter()
            .flat_map(|e| {
                e.assigned()
                    .map(|(ip, s)| (ip, s.assigned_time.unix_nanos()))
            })
            .collect()
    };
    assert_eq!(times(&fresh), times(ds));
    assert_eq!(fresh.checkpoint(), ds.checkpoint());
}

fn apply(ds: &mut Datastore, model: &mut Model, sink: &MemorySink, now: &mut Timestamp, op: Op) {
    match op {
        Op::AddEni(i) => {
            let spec = NewEni {
                id: eni_id(i),
                device_number: u32::from(i),
                is_primary: i == 0,
                route_table_id: if i == 0 { 254 } else { u32::from(i) + 1 },
                ..NewEni::default()
            };
            let _ = ds.add_eni(spec, *now);
        }
        Op::AddCidr { eni, prefix, slot } => {
            let _ = ds.add_ipv4_cidr(&eni_id(eni), cidr(eni, prefix, slot));
        }
        Op::DelCidr {
            eni,
            prefix,
            slot,
            force,
        } => {
            if let Ok(rel) = ds.del_ipv4_cidr(&eni_id(eni), cidr(eni, prefix, slot), force) {
                model.checkpoint_behind |= rel.checkpoint_error.is_some();
                for (k, _) in rel.unassigned {
                    model.held.remove(&k);
                }
            }
        }
        Op::RemoveEni { eni, force } => {
            if let Ok(rel) = ds.remove_eni(&eni_id(eni), force) {
                model.checkpoint_behind |= rel.checkpoint_error.is_some();
                for (k, _) in rel.unassigned {
                    model.held.remove(&k);
                }
            }
        }
        Op::Assign(p) => {
            let before = model.held.get(&key(p)).copied();
            match ds.assign_pod_ipv4(&key(p), &IpamMetadata::new("ns", format!("p{p}"), 1), *now) {
                Ok(a) => {
                    if let Some(ip) = before {
                        assert_eq!(a.ip, ip, "assign is idempotent per key");
                    } else if let Some(r) = model.released.get(&a.ip) {
                        assert!(!r.within(*now, COOLDOWN), "handed out {} in cooldown", a.ip);
                    }
                    let again = ds
                        .assign_pod_ipv4(&key(p), &IpamMetadata::default(), *now)
                        .unwrap();
                    assert_eq!(again, a);
                    model.held.insert(key(p), a.ip);
                }
                Err(DatastoreError::NoAvailableIp) | Err(DatastoreError::Checkpoint(_)) => {
                    assert!(before.is_none());
                }
                Err(e) => panic!("unexpected assign error {e}"),
            }
        }
        Op::Unassign(p) => match ds.unassign_pod(&key(p), *now) {
            Ok(u) => {
                assert_eq!(model.held.remove(&key(p)), Some(u.ip));
                model.released.insert(u.ip, *now);
            }
            Err(DatastoreError::UnknownPod) => assert!(!model.held.contains_key(&key(p))),
            Err(DatastoreError::Checkpoint(_)) => assert!(model.held.contains_key(&key(p))),
            Err(e) => panic!("unexpected unassign error {e}"),
        },
        Op::Advance(s) => *now = now.saturating_add(Duration::from_secs(u64::from(s))),
        Op::TogglePd => {
            let pd = ds.config().prefix_delegation;
            ds.set_prefix_delegation(!pd);
        }
        Op::Exclude(i, x) => {
            let _ = ds.set_eni_excluded(&eni_id(i), x);
        }
        Op::FailSink(f) => sink.set_failing(f),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_keep_invariants(
        pd in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let sink = MemorySink::new();
        let cfg = DatastoreConfig { network_card: 0, prefix_delegation: pd, ip_cooldown: COOLDOWN };
        let mut ds = Datastore::new(cfg, Box::new(sink.clone()));
        let mut model = Model::default();
        let mut now = Timestamp::from_unix_secs(1_700_000_000);
        for op in ops {
            let writes = sink.writes();
            apply(&mut ds, &mut model, &sink, &mut now, op);
            if sink.writes() > writes {
                model.checkpoint_behind = false;
            }
            check_invariants(&ds, &model, &sink, now);
            round_trip(&ds);
        }
    }
}
