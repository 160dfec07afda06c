//! IPv6 mode of the datastore (upstream `AddIPv6CidrToStore`, `AssignPodIPv6Address`, the
//! checkpoint's `ipv6` rows): pods get /128s from the ENI's /80 in order, reusing released
//! addresses once out of cooldown; checked against a model over random sequences.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use ipam::{
    Checkpoint, Datastore, DatastoreConfig, DatastoreError, IpamKey, IpamMetadata, MemorySink,
    NewEni, Timestamp,
};
use ipnet::Ipv6Net;
use proptest::prelude::*;

const COOLDOWN: Duration = Duration::from_secs(30);
const PREFIX: &str = "2600:1f13:a:b:c::/80";

fn prefix() -> Ipv6Net {
    PREFIX.parse().unwrap()
}

fn key(i: u8) -> IpamKey {
    IpamKey::new("aws-cni", format!("sandbox-{i}"), "eth0")
}

fn meta(i: u8) -> IpamMetadata {
    IpamMetadata::new("default", format!("pod-{i}"), 1)
}

fn primary() -> NewEni {
    NewEni {
        id: "eni-primary".into(),
        device_number: 0,
        is_primary: true,
        route_table_id: 254,
        subnet_id: "subnet-a".into(),
        ..NewEni::default()
    }
}

fn v6_store(pd: bool) -> (Datastore, MemorySink) {
    let sink = MemorySink::new();
    let cfg = DatastoreConfig {
        network_card: 0,
        prefix_delegation: pd,
        ip_cooldown: COOLDOWN,
    };
    let mut ds = Datastore::new(cfg, Box::new(sink.clone()));
    ds.add_eni(primary(), Timestamp::default()).unwrap();
    ds.add_ipv6_cidr("eni-primary", prefix()).unwrap();
    (ds, sink)
}

fn nth(i: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(prefix().network()) + i)
}

#[test]
fn pods_get_consecutive_addresses_from_the_start_of_the_prefix() {
    let (mut ds, sink) = v6_store(true);
    let now = Timestamp::from_unix_secs(1_700_000_000);
    for i in 0..5u8 {
        let a = ds.assign_pod_ipv6(&key(i), &meta(i), now).unwrap();
        assert_eq!(a.ip, nth(u128::from(i)));
        assert_eq!(
            (a.eni_id.as_str(), a.device_number, a.route_table_id),
            ("eni-primary", 0, 254)
        );
    }
    // Idempotent ADD: the same address again, no new write.
    let writes = sink.writes();
    assert_eq!(
        ds.assign_pod_ipv6(&key(2), &meta(2), now).unwrap().ip,
        nth(2)
    );
    assert_eq!(sink.writes(), writes);
    let doc = sink.last().unwrap();
    assert_eq!(doc.allocations.len(), 5);
    assert!(doc.allocations.iter().all(|r| r.ipv4.is_empty()));
    assert_eq!(doc.allocations[0].ipv6, "2600:1f13:a:b:c::");
    assert_eq!(doc.allocations[4].ipv6, "2600:1f13:a:b:c::4");
    let json = String::from_utf8(doc.to_json().unwrap()).unwrap();
    assert!(
        json.contains(r#""ifName":"eth0","ipv6":"2600:1f13:a:b:c::1","allocationTimestamp""#),
        "{json}"
    );
    // The IPv4 side has nothing: an IPv4 request finds no address.
    assert!(matches!(
        ds.assign_pod_ipv4(&key(9), &meta(9), now),
        Err(DatastoreError::NoAvailableIp)
    ));
    assert_eq!(ds.eni("eni-primary").unwrap().assigned_count(), 5);
}

#[test]
fn released_addresses_come_back_only_after_the_cooldown() {
    let (mut ds, _) = v6_store(true);
    let t0 = Timestamp::from_unix_secs(1_700_000_000);
    for i in 0..3u8 {
        ds.assign_pod_ipv6(&key(i), &meta(i), t0).unwrap();
    }
    let released = ds.unassign_pod_ipv6(&key(1), t0).unwrap();
    assert_eq!((released.ip, released.interfaces_count), (nth(1), 1));
    assert_eq!(released.key, key(1));
    // Inside the cooldown: a fresh address.
    assert_eq!(
        ds.assign_pod_ipv6(&key(3), &meta(3), t0).unwrap().ip,
        nth(3)
    );
    // After it: the released one first.
    let later = t0.saturating_add(COOLDOWN + Duration::from_secs(1));
    assert_eq!(
        ds.assign_pod_ipv6(&key(4), &meta(4), later).unwrap().ip,
        nth(1)
    );
    assert!(matches!(
        ds.unassign_pod_ipv6(&key(1), later),
        Err(DatastoreError::UnknownPod)
    ));
    // The IPv4 release path does not see IPv6 holders.
    assert!(matches!(
        ds.unassign_pod(&key(0), later),
        Err(DatastoreError::UnknownPod)
    ));
}

#[test]
fn ipv6_needs_prefix_delegation_with_upstreams_words() {
    let (mut ds, _) = v6_store(false);
    let err = ds
        .assign_pod_ipv6(&key(0), &meta(0), Timestamp::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "PD is not enabled. V6 is only supported in PD mode"
    );
}

#[test]
fn prefixes_are_added_once_and_removed_only_when_unused() {
    let (mut ds, sink) = v6_store(true);
    assert!(matches!(
        ds.add_ipv6_cidr("eni-primary", "2600:1f13:a:b:c:0:0:9/80".parse().unwrap()),
        Err(DatastoreError::IpAlreadyInStore)
    ));
    assert!(matches!(
        ds.add_ipv6_cidr("eni-other", prefix()),
        Err(DatastoreError::UnknownEniOnAdd)
    ));
    let eni = ds.eni("eni-primary").unwrap();
    let entry = &eni.ipv6_cidrs[&prefix()];
    assert!(entry.is_prefix);
    assert_eq!(entry.size(), 1u128 << 48);
    ds.assign_pod_ipv6(&key(0), &meta(0), Timestamp::default())
        .unwrap();
    assert!(matches!(
        ds.del_ipv6_cidr("eni-primary", prefix(), false),
        Err(DatastoreError::IpInUse)
    ));
    let forced = ds.del_ipv6_cidr("eni-primary", prefix(), true).unwrap();
    assert_eq!(forced.unassigned, vec![(key(0), nth(0).into())]);
    assert!(sink.last().unwrap().allocations.is_empty());
    assert!(ds.eni("eni-primary").unwrap().ipv6_cidrs.is_empty());
}

#[test]
fn restore_puts_ipv6_rows_into_the_prefix_and_waits_for_unknown_ones() {
    let (mut ds, _) = v6_store(true);
    let t = Timestamp::from_unix_secs(1_700_000_123);
    ds.assign_pod_ipv6(&key(0), &meta(0), t).unwrap();
    ds.assign_pod_ipv6(&key(1), &meta(1), t).unwrap();
    let mut doc = ds.checkpoint();
    doc.allocations.push(ipam::CheckpointEntry {
        key: key(7),
        ipv6: "2600:1f13:ffff::7".into(),
        allocation_timestamp: 5,
        metadata: meta(7),
        ..Default::default()
    });
    let bytes = doc.to_json().unwrap();
    let parsed = Checkpoint::from_json(&bytes).unwrap();

    let sink = MemorySink::new();
    let mut fresh = Datastore::new(ds.config(), Box::new(sink.clone()));
    fresh.add_eni(primary(), Timestamp::default()).unwrap();
    fresh.add_ipv6_cidr("eni-primary", prefix()).unwrap();
    let report = fresh.restore(&parsed).unwrap();
    assert_eq!(report.restored, 2);
    assert_eq!(fresh.pending().len(), 1, "{report:?}");
    let restored: Vec<_> = fresh.enis()[0]
        .assigned_v6()
        .map(|(ip, s)| (ip, s.key.clone(), s.assigned_time))
        .collect();
    assert_eq!(restored, [(nth(0), key(0), t), (nth(1), key(1), t)]);
    // The next pod continues after the restored ones.
    assert_eq!(
        fresh.assign_pod_ipv6(&key(2), &meta(2), t).unwrap().ip,
        nth(2)
    );
    // A prefix holding the pending row adopts it.
    fresh
        .add_eni(
            NewEni {
                id: "eni-b".into(),
                device_number: 1,
                route_table_id: 2,
                ..NewEni::default()
            },
            t,
        )
        .unwrap();
    fresh
        .add_ipv6_cidr("eni-b", "2600:1f13:ffff::/80".parse().unwrap())
        .unwrap();
    assert!(fresh.pending().is_empty());
    assert_eq!(fresh.eni("eni-b").unwrap().assigned_count(), 1);
    // A row restored twice is upstream's duplicate error.
    let mut twice = parsed.clone();
    twice.allocations.push(parsed.allocations[0].clone());
    let mut again = Datastore::new(ds.config(), Box::new(MemorySink::new()));
    again.add_eni(primary(), Timestamp::default()).unwrap();
    again.add_ipv6_cidr("eni-primary", prefix()).unwrap();
    assert!(matches!(
        again.restore(&twice),
        Err(DatastoreError::IpAlreadyInStore)
    ));
}

/// One step of a random sequence.
#[derive(Debug, Clone)]
enum Op {
    Assign(u8),
    Unassign(u8),
    Advance(u8),
    FailSink(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..16).prop_map(Op::Assign),
        4 => (0u8..16).prop_map(Op::Unassign),
        3 => (0u8..40).prop_map(Op::Advance),
        1 => any::<bool>().prop_map(Op::FailSink),
    ]
}

/// The model: offset in the prefix → (holder, released at). Upstream's map semantics:
/// an address stays once used; reusing one out of cooldown drops the other such entries.
#[derive(Debug, Default)]
struct Model {
    used: BTreeMap<u128, (Option<u8>, Option<Timestamp>)>,
}

impl Model {
    fn holder_of(&self, k: u8) -> Option<u128> {
        self.used
            .iter()
            .find(|(_, (h, _))| *h == Some(k))
            .map(|(o, _)| *o)
    }

    fn expected_pick(&self, now: Timestamp) -> (u128, Vec<u128>) {
        let reusable: Vec<u128> = self
            .used
            .iter()
            .filter(|(_, (h, t))| h.is_none() && !t.is_some_and(|t| t.within(now, COOLDOWN)))
            .map(|(o, _)| *o)
            .collect();
        if let Some(first) = reusable.first() {
            return (*first, reusable[1..].to_vec());
        }
        let fresh = (0u128..).find(|o| !self.used.contains_key(o)).unwrap_or(0);
        (fresh, Vec::new())
    }
}

fn check(ds: &Datastore, model: &Model) {
    let eni = &ds.enis()[0];
    let actual: BTreeMap<u128, (Option<IpamKey>, Option<Timestamp>)> = eni.ipv6_cidrs[&prefix()]
        .addresses
        .iter()
        .map(|(ip, a)| {
            let offset = u128::from(*ip) - u128::from(prefix().network());
            (
                offset,
                (
                    a.assignment.as_ref().map(|s| s.key.clone()),
                    a.unassigned_time,
                ),
            )
        })
        .collect();
    let expected: BTreeMap<u128, (Option<IpamKey>, Option<Timestamp>)> = model
        .used
        .iter()
        .map(|(o, (h, t))| (*o, (h.map(key), *t)))
        .collect();
    assert_eq!(actual, expected);
    let rows: BTreeMap<String, IpamKey> = ds
        .checkpoint()
        .allocations
        .into_iter()
        .map(|r| (r.ipv6, r.key))
        .collect();
    let held: BTreeMap<String, IpamKey> = eni
        .assigned_v6()
        .map(|(ip, s)| (ip.to_string(), s.key.clone()))
        .collect();
    assert_eq!(rows, held, "the checkpoint has exactly the held /128s");
}

fn apply(ds: &mut Datastore, model: &mut Model, sink: &MemorySink, now: &mut Timestamp, op: Op) {
    match op {
        Op::Assign(k) => {
            let got = ds.assign_pod_ipv6(&key(k), &meta(k), *now);
            if let Some(held) = model.holder_of(k) {
                assert_eq!(got.unwrap().ip, nth(held), "idempotent");
                return;
            }
            let (pick, dropped) = model.expected_pick(*now);
            match got {
                Ok(a) => {
                    assert_eq!(a.ip, nth(pick));
                    for o in dropped {
                        model.used.remove(&o);
                    }
                    model.used.insert(pick, (Some(k), None));
                }
                Err(DatastoreError::Checkpoint(_)) => {
                    // Rolled back, but the garbage collection of the scan stays (as upstream).
                    for o in dropped {
                        model.used.remove(&o);
                    }
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        Op::Unassign(k) => match (ds.unassign_pod_ipv6(&key(k), *now), model.holder_of(k)) {
            (Ok(u), Some(o)) => {
                assert_eq!(u.ip, nth(o));
                model.used.insert(o, (None, Some(*now)));
            }
            (Err(DatastoreError::UnknownPod), None) => {}
            (Err(DatastoreError::Checkpoint(_)), Some(_)) => {}
            (other, held) => panic!("unassign {k}: {other:?} with model {held:?}"),
        },
        Op::Advance(s) => *now = now.saturating_add(Duration::from_secs(u64::from(s))),
        Op::FailSink(f) => sink.set_failing(f),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_follow_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let (mut ds, sink) = v6_store(true);
        let mut model = Model::default();
        let mut now = Timestamp::from_unix_secs(1_700_000_000);
        for op in ops {
            apply(&mut ds, &mut model, &sink, &mut now, op);
            check(&ds, &model);
        }
    }
}
