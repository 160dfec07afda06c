//! The checkpoint on disk: atomic writes, corrupt and truncated files, quarantine.

use std::fs;
use std::path::Path;
use std::time::Duration;

use ipam::{
    Checkpoint, CheckpointEntry, CheckpointError, Datastore, DatastoreConfig, FileSink, IpamKey,
    IpamMetadata, NewEni, Timestamp, quarantine, read_checkpoint, write_checkpoint,
};

fn doc(n: usize) -> Checkpoint {
    Checkpoint::new(
        (0..n)
            .map(|i| CheckpointEntry {
                key: IpamKey::new("aws-cni", format!("c{i}"), "eth0"),
                ipv4: format!("10.0.0.{i}"),
                ipv6: String::new(),
                allocation_timestamp: 1_000 + i as i64,
                metadata: IpamMetadata::new("ns", format!("p{i}"), 1),
            })
            .collect(),
    )
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn missing_file_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        read_checkpoint(&dir.path().join("ipam.json"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn atomic_write_replaces_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    write_checkpoint(&path, &doc(3)).unwrap();
    write_checkpoint(&path, &doc(1)).unwrap();
    assert_eq!(names(dir.path()), ["ipam.json"]);
    assert_eq!(read_checkpoint(&path).unwrap(), Some(doc(1)));
    assert_eq!(fs::read(&path).unwrap(), doc(1).to_json().unwrap());
}

#[test]
fn failed_write_leaves_target_and_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    write_checkpoint(&path, &doc(2)).unwrap();
    // Renaming a file over a non-empty directory fails after the temp file was written.
    let blocked = dir.path().join("blocked");
    fs::create_dir(&blocked).unwrap();
    fs::write(blocked.join("x"), b"x").unwrap();
    let err = write_checkpoint(&blocked, &doc(1)).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Io { op: "rename", .. }),
        "{err}"
    );
    assert_eq!(names(dir.path()), ["blocked", "ipam.json"]);
    assert_eq!(read_checkpoint(&path).unwrap(), Some(doc(2)));
    let missing_dir = dir.path().join("nope").join("ipam.json");
    assert!(write_checkpoint(&missing_dir, &doc(1)).is_err());
}

#[test]
fn corrupt_and_truncated_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let full = doc(2).to_json().unwrap();
    for (name, bytes) in [
        ("garbage.json", b"not json at all".to_vec()),
        ("truncated.json", full[..full.len() / 2].to_vec()),
        ("empty.json", Vec::new()),
    ] {
        let path = dir.path().join(name);
        fs::write(&path, &bytes).unwrap();
        let err = read_checkpoint(&path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Corrupt { .. }),
            "{name}: {err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
    let wrong = dir.path().join("v2.json");
    fs::write(&wrong, br#"{"version":"vpc-cni-ipam/2","allocations":[]}"#).unwrap();
    assert!(matches!(
        read_checkpoint(&wrong),
        Err(CheckpointError::UnsupportedVersion { .. })
    ));
}

#[test]
fn quarantine_keeps_bad_bytes_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    fs::write(&path, b"{broken").unwrap();
    let first = quarantine(&path, "1700000000").unwrap();
    assert_eq!(first, dir.path().join("ipam.json.corrupt-1700000000"));
    assert!(!path.exists());
    assert_eq!(fs::read(&first).unwrap(), b"{broken");
    fs::write(&path, b"{also broken").unwrap();
    let second = quarantine(&path, "1700000000").unwrap();
    assert_ne!(second, first);
    assert_eq!(fs::read(&first).unwrap(), b"{broken");
    assert_eq!(fs::read(&second).unwrap(), b"{also broken");
    assert!(read_checkpoint(&path).unwrap().is_none());
    assert!(quarantine(&path, "x").is_err(), "nothing to quarantine");
}

#[test]
fn file_sink_persists_datastore_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipam.json");
    let mut ds = Datastore::new(
        DatastoreConfig {
            ip_cooldown: Duration::ZERO,
            ..DatastoreConfig::default()
        },
        Box::new(FileSink::new(&path)),
    );
    let eni = NewEni {
        id: "eni-1".into(),
        route_table_id: 254,
        ..NewEni::default()
    };
    ds.add_eni(eni, Timestamp::default()).unwrap();
    ds.add_ipv4_cidr("eni-1", "10.0.0.9/32".parse().unwrap())
        .unwrap();
    let key = IpamKey::new("aws-cni", "c", "eth0");
    ds.assign_pod_ipv4(&key, &IpamMetadata::default(), Timestamp::from_unix_secs(5))
        .unwrap();
    let on_disk = read_checkpoint(&path).unwrap().unwrap();
    assert_eq!(on_disk, ds.checkpoint());
    assert_eq!(on_disk.allocations[0].ipv4, "10.0.0.9");
    ds.unassign_pod(&key, Timestamp::from_unix_secs(6)).unwrap();
    assert!(
        read_checkpoint(&path)
            .unwrap()
            .unwrap()
            .allocations
            .is_empty()
    );
    assert_eq!(names(dir.path()), ["ipam.json"]);
}
