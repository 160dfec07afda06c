//! Compatibility with a checkpoint written by upstream aws-node (`checkpoint.go`,
//! `ReadBackingStore`; docs/upstream-compat.md).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use ipam::{
    Checkpoint, CheckpointEntry, Datastore, DatastoreConfig, DatastoreError, DropReason, IpamKey,
    IpamMetadata, MemorySink, NewEni, Timestamp, read_checkpoint,
};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/upstream-ipam.json"
);
const FULL_ID: &str = "8b1f4e1d0b6c2a7f9e3d5c4b3a2918171615141312111009080706050403020a";
const LEGACY_ID: &str = "3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d";

fn store_with(cidrs: &[&str]) -> (Datastore, MemorySink) {
    let sink = MemorySink::new();
    let mut ds = Datastore::new(
        DatastoreConfig {
            network_card: 0,
            prefix_delegation: false,
            ip_cooldown: Duration::from_secs(30),
        },
        Box::new(sink.clone()),
    );
    let eni = NewEni {
        id: "eni-primary".into(),
        device_number: 0,
        is_primary: true,
        route_table_id: 254,
        ..NewEni::default()
    };
    ds.add_eni(eni, Timestamp::from_unix_secs(1)).unwrap();
    for c in cidrs {
        ds.add_ipv4_cidr("eni-primary", c.parse().unwrap()).unwrap();
    }
    (ds, sink)
}

fn fixture() -> Checkpoint {
    read_checkpoint(Path::new(FIXTURE))
        .unwrap()
        .expect("fixture exists")
}

#[test]
fn reads_upstream_file() {
    let doc = fixture();
    assert_eq!(doc.version, "vpc-cni-ipam/1");
    assert_eq!(doc.allocations.len(), 2);
    let full = &doc.allocations[0];
    assert_eq!(full.key, IpamKey::new("aws-cni", FULL_ID, "eth0"));
    assert_eq!(full.ipv4, "10.0.1.15");
    assert_eq!(full.allocation_timestamp, 1_712_345_678_901_234_567);
    assert_eq!(full.metadata, IpamMetadata::new("default", "web-0", 1));
    let legacy = &doc.allocations[1];
    assert_eq!(
        legacy.key,
        IpamKey::new("_migrated-from-cri", LEGACY_ID, "unknown")
    );
    assert_eq!(legacy.metadata, IpamMetadata::default());
}

#[test]
fn restores_upstream_file_and_rewrites_it_byte_for_byte() {
    let (mut ds, sink) = store_with(&["10.0.1.15/32", "10.0.1.16/32", "10.0.1.17/32"]);
    let report = ds.restore(&fixture()).unwrap();
    assert_eq!(report.restored, 2);
    assert!(report.dropped.is_empty());
    assert!(report.checkpoint_error.is_none());
    let now = Timestamp::from_unix_secs(2_000_000_000);
    let stats = ds.stats(now);
    assert_eq!((stats.total_ips, stats.assigned_ips), (3, 2));
    let eni = ds.eni("eni-primary").unwrap();
    let addr =
        &eni.ipv4_cidrs[&"10.0.1.15/32".parse().unwrap()].addresses[&Ipv4Addr::new(10, 0, 1, 15)];
    let held = addr.assignment.as_ref().unwrap();
    assert_eq!(
        held.assigned_time,
        Timestamp::from_unix_nanos(1_712_345_678_901_234_567)
    );

    let written = sink.last().unwrap().to_json().unwrap();
    let original = std::fs::read(FIXTURE).unwrap();
    assert_eq!(
        String::from_utf8(written).unwrap(),
        String::from_utf8(original).unwrap()
    );

    // A new pod gets the free address; the legacy pod is released under its real key.
    let key = IpamKey::new("aws-cni", "new", "eth0");
    let a = ds
        .assign_pod_ipv4(&key, &IpamMetadata::new("ns", "p", 1), now)
        .unwrap();
    assert_eq!(a.ip, Ipv4Addr::new(10, 0, 1, 17));
    let u = ds
        .unassign_pod(&IpamKey::new("aws-cni", LEGACY_ID, "eth0"), now)
        .unwrap();
    assert_eq!((u.ip, u.interfaces_count), (Ipv4Addr::new(10, 0, 1, 16), 1));
}

fn field_names(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn what_we_write_has_upstream_schema() {
    let upstream: Value = serde_json::from_slice(&std::fs::read(FIXTURE).unwrap()).unwrap();
    let (mut ds, sink) = store_with(&["10.0.1.15/32", "10.0.1.16/32"]);
    let t = Timestamp::from_unix_nanos(1_712_345_678_901_234_567);
    ds.assign_pod_ipv4(
        &IpamKey::new("aws-cni", FULL_ID, "eth0"),
        &IpamMetadata::new("default", "web-0", 1),
        t,
    )
    .unwrap();
    let ours: Value = serde_json::from_slice(&sink.last().unwrap().to_json().unwrap()).unwrap();
    assert_eq!(field_names(&ours), field_names(&upstream));
    assert_eq!(ours["version"], upstream["version"]);
    let (o, u) = (&ours["allocations"][0], &upstream["allocations"][0]);
    assert_eq!(field_names(o), field_names(u));
    assert_eq!(field_names(&o["metadata"]), field_names(&u["metadata"]));
    assert_eq!(o, u, "same allocation encodes to the same JSON value");
}

#[test]
fn unknown_addresses_stay_pending_until_their_cidr_appears() {
    let (mut ds, sink) = store_with(&["10.0.1.15/32"]);
    let report = ds.restore(&fixture()).unwrap();
    assert_eq!(report.restored, 1);
    assert_eq!(report.dropped.len(), 1);
    assert_eq!(report.dropped[0].reason, DropReason::NoMatchingCidr);
    assert_eq!(report.dropped[0].entry.ipv4, "10.0.1.16");
    // Not lost: still in the checkpoint, and never handed out.
    assert_eq!(sink.last().unwrap().allocations.len(), 2);
    assert_eq!(ds.pending().len(), 1);
    ds.add_ipv4_cidr("eni-primary", "10.0.1.16/32".parse().unwrap())
        .unwrap();
    assert!(ds.pending().is_empty());
    assert_eq!(ds.stats(Timestamp::default()).assigned_ips, 2);
    let other = IpamKey::new("aws-cni", "x", "eth0");
    assert!(matches!(
        ds.assign_pod_ipv4(&other, &IpamMetadata::default(), Timestamp::default()),
        Err(DatastoreError::NoAvailableIp)
    ));
}

#[test]
fn pending_allocation_is_discarded_by_unassign_or_on_request() {
    let (mut ds, sink) = store_with(&[]);
    let report = ds.restore(&fixture()).unwrap();
    assert_eq!(report.dropped.len(), 2);
    let err = ds
        .unassign_pod(
            &IpamKey::new("aws-cni", FULL_ID, "eth0"),
            Timestamp::default(),
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "datastore: unknown pod");
    assert_eq!(ds.pending().len(), 1);
    assert_eq!(sink.last().unwrap().allocations.len(), 1);
    assert_eq!(ds.discard_pending().unwrap(), 1);
    assert!(sink.last().unwrap().allocations.is_empty());
}

#[test]
fn duplicate_address_fails_and_leaves_store_unchanged() {
    let (mut ds, _) = store_with(&["10.0.1.15/32", "10.0.1.16/32"]);
    let mut doc = fixture();
    doc.allocations.push(CheckpointEntry {
        key: IpamKey::new("aws-cni", "dup", "eth0"),
        ipv4: "10.0.1.15".into(),
        ..CheckpointEntry::default()
    });
    let err = ds.restore(&doc).unwrap_err();
    assert_eq!(err.to_string(), "datastore: IP already in data store");
    assert_eq!(ds.stats(Timestamp::default()).assigned_ips, 0);
    assert!(ds.pending().is_empty());
    let mut bad = fixture();
    bad.version = "vpc-cni-ipam/0".into();
    assert!(matches!(
        ds.restore(&bad),
        Err(DatastoreError::Checkpoint(_))
    ));
}

#[test]
fn odd_rows_are_reported_not_restored() {
    let (mut ds, _) = store_with(&["10.0.1.15/32"]);
    let rows = vec![
        CheckpointEntry {
            key: IpamKey::default(),
            ipv4: "10.0.1.15".into(),
            ..Default::default()
        },
        CheckpointEntry {
            key: IpamKey::new("n", "c", "i"),
            ..Default::default()
        },
        CheckpointEntry {
            key: IpamKey::new("n", "d", "i"),
            ipv4: "10.0.1".into(),
            ..Default::default()
        },
        CheckpointEntry {
            key: IpamKey::new("n", "e", "i"),
            ipv6: "2600::1".into(),
            ..Default::default()
        },
    ];
    let report = ds.restore(&Checkpoint::new(rows)).unwrap();
    let reasons: Vec<DropReason> = report.dropped.iter().map(|d| d.reason).collect();
    assert_eq!(
        reasons,
        [
            DropReason::EmptyKey,
            DropReason::NotIpv4,
            DropReason::UnparsableAddress,
            DropReason::NoMatchingCidr
        ]
    );
    // The IPv6 row waits for an IPv6 prefix that holds it.
    assert_eq!(ds.pending().len(), 1);
}
