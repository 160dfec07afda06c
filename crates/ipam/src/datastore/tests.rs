//! Unit tests re-expressing upstream's `pkg/ipamd/datastore/data_store_test.go`.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;
use crate::checkpoint::MemorySink;
use crate::types::IpamMetadata;

fn store(pd: bool) -> (Datastore, MemorySink) {
    let sink = MemorySink::new();
    let cfg = DatastoreConfig {
        network_card: 0,
        prefix_delegation: pd,
        ip_cooldown: Duration::from_secs(30),
    };
    (Datastore::new(cfg, Box::new(sink.clone())), sink)
}

fn eni(id: &str, device: u32) -> NewEni {
    NewEni {
        id: id.to_string(),
        device_number: device,
        is_primary: device == 0,
        route_table_id: if device == 0 { 254 } else { device + 1 },
        subnet_id: "subnet-1".to_string(),
        ..NewEni::default()
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(secs)
}

fn key(c: &str) -> IpamKey {
    IpamKey::new("aws-cni", c, "eth0")
}

fn meta(name: &str) -> IpamMetadata {
    IpamMetadata::new("default", name, 1)
}

#[test]
fn add_eni_rejects_duplicates() {
    let (mut ds, _) = store(false);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    let err = ds.add_eni(eni("eni-1", 1), t(0)).unwrap_err();
    assert_eq!(err.to_string(), "data store: duplicate ENI");
    ds.add_eni(eni("eni-2", 1), t(0)).unwrap();
    assert_eq!(ds.eni_count(), 2);
    assert_eq!(
        ds.eni("eni-2").map(|e| e.subnet_id.as_str()),
        Some("subnet-1")
    );
}

#[test]
fn remove_eni_requires_force_when_in_use() {
    let (mut ds, sink) = store(false);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    ds.add_eni(eni("eni-2", 1), t(0)).unwrap();
    let err = ds.remove_eni("eni-9", false).unwrap_err();
    assert_eq!(err.to_string(), "datastore: unknown ENI");
    ds.add_ipv4_cidr("eni-2", net("10.0.0.2/32")).unwrap();
    ds.assign_pod_ipv4(&key("a"), &meta("a"), t(1)).unwrap();
    let err = ds.remove_eni("eni-2", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "datastore: ENI is used and can not be deleted"
    );
    let rel = ds.remove_eni("eni-2", true).unwrap();
    assert_eq!(rel.unassigned, vec![(key("a"), ip("10.0.0.2").into())]);
    assert!(rel.checkpoint_error.is_none());
    assert!(sink.last().unwrap().allocations.is_empty());
    assert_eq!(ds.eni_count(), 1);
    assert_eq!(ds.total_addresses(), 0);
    assert!(ds.remove_eni("eni-1", false).unwrap().unassigned.is_empty());
}

#[test]
fn add_and_delete_ipv4_cidrs() {
    let (mut ds, _) = store(false);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    ds.add_ipv4_cidr("eni-1", net("1.1.1.1/32")).unwrap();
    ds.add_ipv4_cidr("eni-1", net("1.1.1.2/32")).unwrap();
    assert_eq!(ds.stats(t(0)).total_ips, 2);
    let dup = ds.add_ipv4_cidr("eni-1", net("1.1.1.2/32")).unwrap_err();
    assert_eq!(dup.to_string(), "datastore: IP already in data store");
    let unknown = ds.add_ipv4_cidr("eni-9", net("1.1.1.3/32")).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "add ENI's IP to datastore: unknown ENI"
    );
    let a = ds.assign_pod_ipv4(&key("a"), &meta("a"), t(1)).unwrap();
    assert_eq!(a.ip, ip("1.1.1.1"));
    let in_use = ds
        .del_ipv4_cidr("eni-1", net("1.1.1.1/32"), false)
        .unwrap_err();
    assert_eq!(
        in_use.to_string(),
        "datastore: IP is used and can not be deleted"
    );
    let gone = ds
        .del_ipv4_cidr("eni-1", net("9.9.9.9/32"), false)
        .unwrap_err();
    assert_eq!(gone.to_string(), "datastore: unknown IP");
    ds.del_ipv4_cidr("eni-1", net("1.1.1.2/32"), false).unwrap();
    let rel = ds.del_ipv4_cidr("eni-1", net("1.1.1.1/32"), true).unwrap();
    assert_eq!(rel.unassigned, vec![(key("a"), ip("1.1.1.1").into())]);
    assert_eq!(ds.stats(t(1)).total_ips, 0);
    assert_eq!(ds.address_of(&key("a")), None);
}

#[test]
fn add_and_delete_prefixes() {
    let (mut ds, _) = store(true);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    ds.add_ipv4_cidr("eni-1", net("10.0.0.0/28")).unwrap();
    ds.add_ipv4_cidr("eni-1", net("10.0.0.16/28")).unwrap();
    let s = ds.stats(t(0));
    assert_eq!((s.total_ips, s.total_prefixes, s.free_prefixes), (32, 2, 2));
    assert!(ds.add_ipv4_cidr("eni-1", net("10.0.0.16/28")).is_err());
    let a = ds.assign_pod_ipv4(&key("a"), &meta("a"), t(1)).unwrap();
    assert_eq!(a.ip, ip("10.0.0.0"));
    assert_eq!(ds.free_prefixes(), 1);
    assert_eq!(ds.freeable_prefixes("eni-1"), vec![net("10.0.0.16/28")]);
    assert!(
        ds.del_ipv4_cidr("eni-1", net("10.0.0.0/28"), false)
            .is_err()
    );
    ds.del_ipv4_cidr("eni-1", net("10.0.0.0/28"), true).unwrap();
    assert_eq!(ds.stats(t(1)).total_ips, 16);
}

#[test]
fn toggle_prefix_delegation_uses_only_current_mode() {
    let (mut ds, _) = store(false);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    ds.add_ipv4_cidr("eni-1", net("1.1.1.1/32")).unwrap();
    assert_eq!(ds.total_addresses(), 1);
    let a = ds.assign_pod_ipv4(&key("a"), &meta("a"), t(1)).unwrap();
    assert_eq!(
        (a.ip, a.device_number, a.route_table_id),
        (ip("1.1.1.1"), 0, 254)
    );

    ds.set_prefix_delegation(true);
    ds.add_ipv4_cidr("eni-1", net("10.0.0.0/28")).unwrap();
    assert_eq!(ds.total_addresses(), 17);
    let b = ds.assign_pod_ipv4(&key("b"), &meta("b"), t(2)).unwrap();
    assert_eq!(b.ip, ip("10.0.0.0"));
    assert_eq!(ds.stats(t(2)).total_ips, 16);

    ds.del_ipv4_cidr("eni-1", net("1.1.1.1/32"), true).unwrap();
    assert_eq!(ds.total_addresses(), 16);
    ds.set_prefix_delegation(false);
    ds.add_ipv4_cidr("eni-1", net("1.1.1.1/32")).unwrap();
    assert_eq!(ds.total_addresses(), 17);
    assert_eq!(ds.stats(t(2)).total_ips, 1);
    ds.del_ipv4_cidr("eni-1", net("10.0.0.0/28"), true).unwrap();
    assert_eq!(ds.total_addresses(), 1);
    let c = ds.assign_pod_ipv4(&key("c"), &meta("c"), t(3)).unwrap();
    assert_eq!(c.ip, ip("1.1.1.1"));
}

#[test]
fn assign_is_idempotent_and_checkpointed() {
    let (mut ds, sink) = store(false);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    ds.add_ipv4_cidr("eni-1", net("1.1.1.1/32")).unwrap();
    ds.add_ipv4_cidr("eni-1", net("1.1.1.2/32")).unwrap();
    let a = ds.assign_pod_ipv4(&key("a"), &meta("pod-a"), t(5)).unwrap();
    let doc = sink.last().unwrap();
    assert_eq!(doc.version, "vpc-cni-ipam/1");
    assert_eq!(doc.allocations.len(), 1);
    let e = &doc.allocations[0];
    assert_eq!(
        (&e.key, e.ipv4.as_str(), e.ipv6.as_str()),
        (&key("a"), "1.1.1.1", "")
    );
    assert_eq!(e.allocation_timestamp, t(5).unix_nanos());
    assert_eq!(e.metadata, meta("pod-a"));
    let writes = sink.writes();
    let again = ds.assign_pod_ipv4(&key("a"), &meta("other"), t(6)).unwrap();
    assert_eq!(again, a);
    assert_eq!(sink.writes(), writes, "idempotent assign does not rewrite");
    assert_eq!(ds.stats(t(6)).assigned_ips, 1);

    let b = ds.assign_pod_ipv4(&key("b"), &meta("pod-b"), t(7)).unwrap();
    assert_eq!(b.ip, ip("1.1.1.2"));
    let exhausted = ds
        .assign_pod_ipv4(&key("c"), &meta("pod-c"), t(8))
        .unwrap_err();
    assert_eq!(
        exhausted.to_string(),
        "AssignPodIPAddress: no available IP/Prefix addresses"
    );

    let u = ds.unassign_pod(&key("a"), t(9)).unwrap();
    assert_eq!(
        (u.ip, u.device_number, u.route_table_id, u.interfaces_count),
        (ip("1.1.1.1"), 0, 254, 1)
    );
    let doc = sink.last().unwrap();
    assert_eq!(doc.allocations.len(), 1);
    assert_eq!(
        (&doc.allocations[0].key, doc.allocations[0].ipv4.as_str()),
        (&key("b"), "1.1.1.2")
    );
    let unknown = ds.unassign_pod(&key("a"), t(10)).unwrap_err();
    assert_eq!(unknown.to_string(), "datastore: unknown pod");
}

#[test]
fn failed_checkpoint_rolls_back() {
    let (mut ds, sink) = store(true);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    ds.add_ipv4_cidr("eni-1", net("10.0.0.0/28")).unwrap();
    sink.set_failing(true);
    assert!(matches!(
        ds.assign_pod_ipv4(&key("a"), &meta("a"), t(1)),
        Err(DatastoreError::Checkpoint(_))
    ));
    assert_eq!(ds.stats(t(1)).assigned_ips, 0);
    assert_eq!(ds.address_of(&key("a")), None);
    assert!(
        ds.eni("eni-1").unwrap().ipv4_cidrs[&net("10.0.0.0/28")]
            .addresses
            .is_empty()
    );
    sink.set_failing(false);
    let a = ds.assign_pod_ipv4(&key("a"), &meta("a"), t(2)).unwrap();
    assert_eq!(a.ip, ip("10.0.0.0"));
    sink.set_failing(true);
    assert!(ds.unassign_pod(&key("a"), t(3)).is_err());
    assert_eq!(ds.address_of(&key("a")), Some(ip("10.0.0.0")));
    assert_eq!(
        ds.stats(t(3)).cooldown_ips,
        0,
        "failed unassign starts no cooldown"
    );
    sink.set_failing(false);
    assert_eq!(sink.last().unwrap().allocations.len(), 1);
    ds.unassign_pod(&key("a"), t(4)).unwrap();
    assert!(sink.last().unwrap().allocations.is_empty());
}

#[test]
fn cooldown_blocks_reuse_until_period_passes() {
    let (mut ds, _) = store(false);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    ds.add_ipv4_cidr("eni-1", net("1.1.1.1/32")).unwrap();
    ds.assign_pod_ipv4(&key("a"), &meta("a"), t(1)).unwrap();
    ds.unassign_pod(&key("a"), t(10)).unwrap();
    let s = ds.stats(t(40));
    assert_eq!(
        (s.total_ips, s.assigned_ips, s.cooldown_ips, s.available()),
        (1, 0, 1, 1)
    );
    assert!(
        ds.eni("eni-1")
            .unwrap()
            .has_ip_in_cooldown(t(40), Duration::from_secs(30))
    );
    assert!(matches!(
        ds.assign_pod_ipv4(&key("b"), &meta("b"), t(40)),
        Err(DatastoreError::NoAvailableIp)
    ));
    assert_eq!(ds.stats(t(41)).cooldown_ips, 0);
    let b = ds.assign_pod_ipv4(&key("b"), &meta("b"), t(41)).unwrap();
    assert_eq!(b.ip, ip("1.1.1.1"));
}

#[test]
fn reuses_released_addresses_in_prefix_after_cooldown() {
    let (mut ds, _) = store(true);
    ds.set_ip_cooldown(Duration::ZERO);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    ds.add_ipv4_cidr("eni-1", net("10.0.0.0/28")).unwrap();
    for c in ["a", "b", "c"] {
        ds.assign_pod_ipv4(&key(c), &meta(c), t(1)).unwrap();
    }
    ds.unassign_pod(&key("a"), t(2)).unwrap();
    ds.unassign_pod(&key("c"), t(2)).unwrap();
    let d = ds.assign_pod_ipv4(&key("d"), &meta("d"), t(3)).unwrap();
    assert_eq!(d.ip, ip("10.0.0.0"), "lowest released address first");
    let cidr = &ds.eni("eni-1").unwrap().ipv4_cidrs[&net("10.0.0.0/28")];
    assert!(
        !cidr.addresses.contains_key(&ip("10.0.0.2")),
        "other released entries are collected"
    );
    let e = ds.assign_pod_ipv4(&key("e"), &meta("e"), t(3)).unwrap();
    assert_eq!(e.ip, ip("10.0.0.2"));
}

#[test]
fn legacy_key_fallback_on_unassign() {
    let (mut ds, _) = store(false);
    ds.add_eni(eni("eni-1", 0), t(0)).unwrap();
    ds.add_ipv4_cidr("eni-1", net("1.1.1.1/32")).unwrap();
    let legacy = IpamKey::new(crate::LEGACY_NETWORK_NAME, "abc", crate::LEGACY_IF_NAME);
    ds.assign_pod_ipv4(&legacy, &IpamMetadata::default(), t(1))
        .unwrap();
    let u = ds
        .unassign_pod(&IpamKey::new("aws-cni", "abc", "eth0"), t(2))
        .unwrap();
    assert_eq!(
        (u.key, u.ip, u.interfaces_count),
        (legacy, ip("1.1.1.1"), 1)
    );
    assert!(
        ds.assign_pod_ipv4(&IpamKey::default(), &IpamMetadata::default(), t(3))
            .is_err()
    );
}

#[test]
fn assignment_order_and_exclusion() {
    let (mut ds, _) = store(false);
    ds.add_eni(eni("eni-b", 2), t(0)).unwrap();
    ds.add_eni(eni("eni-a", 1), t(0)).unwrap();
    ds.add_eni(eni("eni-p", 0), t(0)).unwrap();
    ds.add_ipv4_cidr("eni-b", net("10.0.2.5/32")).unwrap();
    ds.add_ipv4_cidr("eni-a", net("10.0.1.9/32")).unwrap();
    ds.add_ipv4_cidr("eni-a", net("10.0.1.7/32")).unwrap();
    ds.set_eni_excluded("eni-a", true).unwrap();
    let ids: Vec<&str> = ds.enis().iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["eni-p", "eni-a", "eni-b"]);
    assert_eq!(ds.stats(t(0)).total_ips, 1, "excluded ENI not counted");
    let a = ds.assign_pod_ipv4(&key("a"), &meta("a"), t(1)).unwrap();
    assert_eq!(
        (a.eni_id.as_str(), a.device_number, a.route_table_id),
        ("eni-b", 2, 3)
    );
    ds.set_eni_excluded("eni-a", false).unwrap();
    ds.unassign_pod(&key("a"), t(1)).unwrap();
    let b = ds.assign_pod_ipv4(&key("b"), &meta("b"), t(2)).unwrap();
    assert_eq!(
        b.ip,
        ip("10.0.1.7"),
        "lowest device number, then lowest CIDR"
    );
    ds.set_eni_excluded("eni-a", true).unwrap();
    let u = ds.unassign_pod(&key("b"), t(3)).unwrap();
    assert_eq!(u.empty_excluded_cidr, Some(net("10.0.1.7/32")));
}

#[test]
fn stats_string_and_queries() {
    let (mut ds, _) = store(false);
    ds.add_eni(eni("eni-p", 0), t(0)).unwrap();
    ds.add_eni(
        NewEni {
            is_trunk: true,
            ..eni("eni-t", 1)
        },
        t(0),
    )
    .unwrap();
    ds.add_eni(
        NewEni {
            is_efa: true,
            ..eni("eni-e", 2)
        },
        t(0),
    )
    .unwrap();
    ds.add_ipv4_cidr("eni-p", net("10.0.0.1/32")).unwrap();
    ds.add_ipv4_cidr("eni-p", net("10.0.0.2/32")).unwrap();
    ds.add_ipv4_cidr("eni-p", net("10.0.8.0/28")).unwrap();
    ds.assign_pod_ipv4(&key("a"), &meta("a"), t(1)).unwrap();
    let s = ds.stats(t(1));
    assert_eq!(
        format_stats(&s),
        "Total IPs/Prefixes = 2/1, AssignedIPs/CooldownIPs: 1/0"
    );
    assert_eq!(ds.trunk_eni(), Some("eni-t"));
    assert_eq!(ds.efa_enis(), vec!["eni-e"]);
    assert_eq!(ds.allocatable_enis(3, false), vec!["eni-e"]);
    assert_eq!(ds.allocatable_enis(4, false), vec!["eni-p", "eni-e"]);
    assert_eq!(ds.allocatable_enis(4, true), vec!["eni-e"]);
    assert_eq!(ds.freeable_ips("eni-p"), vec![net("10.0.0.2/32")]);
    assert_eq!(
        ds.freeable_cidrs("eni-p"),
        vec![net("10.0.0.2/32"), net("10.0.8.0/28")]
    );
    assert!(ds.freeable_ips("eni-x").is_empty());
    let (ips, prefixes) = ds.eni_cidrs("eni-p").unwrap();
    assert_eq!(
        (ips, prefixes),
        (
            vec![ip("10.0.0.1"), ip("10.0.0.2")],
            vec![net("10.0.8.0/28")]
        )
    );
    let alloc = ds.allocated_ips();
    assert_eq!(alloc.len(), 1);
    assert_eq!(
        (alloc[0].ip, alloc[0].route_table_id),
        (ip("10.0.0.1"), 254)
    );
    assert!(
        !ds.freeable_eni_exists(),
        "primary, trunk and EFA are never freeable"
    );
    ds.add_eni(eni("eni-x", 3), t(0)).unwrap();
    assert!(ds.freeable_eni_exists());
}

#[test]
fn snapshot_fills_every_field() {
    let (mut ds, _) = store(true);
    ds.add_eni(eni("eni-p", 0), t(0)).unwrap();
    ds.add_eni(
        NewEni {
            excluded: true,
            ..eni("eni-x", 1)
        },
        t(100),
    )
    .unwrap();
    ds.add_ipv4_cidr("eni-p", net("10.0.0.0/28")).unwrap();
    ds.add_ipv4_cidr("eni-p", net("10.0.0.16/28")).unwrap();
    ds.add_ipv4_cidr("eni-p", net("10.0.1.1/32")).unwrap();
    ds.add_ipv4_cidr("eni-x", net("10.0.2.0/28")).unwrap();
    ds.assign_pod_ipv4(&key("a"), &meta("a"), t(101)).unwrap();
    ds.assign_pod_ipv4(&key("b"), &meta("b"), t(101)).unwrap();
    ds.unassign_pod(&key("b"), t(110)).unwrap();
    let snap = ds.snapshot(t(130));
    assert_eq!(snap.network_card, 0);
    assert_eq!(snap.enis.len(), 2);
    let p = &snap.enis[0];
    assert_eq!(
        (p.id.as_str(), p.is_primary, p.age),
        ("eni-p", true, Duration::from_secs(130))
    );
    assert_eq!(
        (p.cidr_count, p.total_ips, p.assigned_ips, p.cooldown_ips),
        (3, 32, 1, 1)
    );
    assert_eq!((p.prefixes, p.free_prefixes), (2, 1));
    assert_eq!(p.freeable_cidrs, vec![net("10.0.0.16/28")]);
    let x = &snap.enis[1];
    assert_eq!(
        (x.excluded, x.age, x.total_ips, x.free_prefixes),
        (true, Duration::from_secs(30), 16, 1)
    );
    let s = snap.stats();
    assert_eq!((s.total_ips, s.assigned_ips, s.cooldown_ips), (32, 1, 1));
    assert_eq!(ds.snapshot(t(141)).enis[0].cooldown_ips, 0);
    ds.set_prefix_delegation(false);
    let sip = ds.snapshot(t(141));
    assert_eq!((sip.enis[0].total_ips, sip.enis[0].prefixes), (1, 0));
    assert_eq!(sip.enis[0].freeable_cidrs, vec![net("10.0.1.1/32")]);
}
