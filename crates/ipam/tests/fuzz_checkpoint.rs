//! Property fuzzing of the checkpoint parser (`Checkpoint::from_json`, `read_checkpoint`):
//! arbitrary bytes, damaged copies of a valid document (truncated, bytes replaced, another
//! version) and JSON-shaped documents with hostile field values either parse or give a
//! `CheckpointError`; nothing panics; a document that parses writes back and parses to the
//! same thing, and every damaged file is left as it was. Bounded case counts (CI).

use ipam::{Checkpoint, CheckpointEntry, IpamKey, IpamMetadata};
use proptest::prelude::*;

/// A valid document with `n` allocations.
fn valid(n: usize) -> Vec<u8> {
    let entries = (0..n)
        .map(|i| CheckpointEntry {
            key: IpamKey::new("aws-cni", format!("container-{i}"), "eth0"),
            ipv4: format!("10.0.0.{}", i + 10),
            ipv6: String::new(),
            allocation_timestamp: 1_700_000_000_000_000_000 + i as i64,
            metadata: IpamMetadata::new("default", format!("pod-{i}"), 1),
        })
        .collect();
    Checkpoint::new(entries).to_json().expect("encodes")
}

/// Parses, and if that works, round-trips.
fn parse_is_total(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(doc) = Checkpoint::from_json(bytes) {
        let again = Checkpoint::from_json(&doc.to_json().expect("encodes")).expect("re-parses");
        prop_assert_eq!(again, doc);
    }
    Ok(())
}

fn hostile_string() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::String),
        Just(serde_json::Value::String("9".repeat(400))),
        Just(serde_json::json!([1, 2])),
        Just(serde_json::json!({"a": {}})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        parse_is_total(&bytes)?;
    }

    #[test]
    fn damaged_documents_parse_or_fail_cleanly(
        n in 0usize..6,
        cut in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        version in prop_oneof![Just("vpc-cni-ipam/1"), Just("vpc-cni-ipam/2"), Just(""), Just("vpc-cni-ipam/1 ")],
    ) {
        let good = String::from_utf8(valid(n)).expect("UTF-8");
        let mut bytes = good.replace("vpc-cni-ipam/1", version).into_bytes();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        parse_is_total(&bytes)?;
        if version != "vpc-cni-ipam/1" {
            prop_assert!(Checkpoint::from_json(&bytes).is_err(), "another version is refused");
        }
    }

    #[test]
    fn hostile_field_values_never_panic(
        field in prop_oneof![Just("containerID"), Just("ifName"), Just("networkName"), Just("ipv4"), Just("ipv6"), Just("allocationTimestamp"), Just("metadata"), Just("allocations")],
        value in hostile_string(),
    ) {
        let mut doc: serde_json::Value = serde_json::from_slice(&valid(2)).expect("JSON");
        if field == "allocations" {
            doc["allocations"] = value;
        } else {
            doc["allocations"][0][field] = value;
        }
        parse_is_total(doc.to_string().as_bytes())?;
    }

    #[test]
    fn a_damaged_file_is_refused_and_left_as_it_was(bytes in prop::collection::vec(any::<u8>(), 1..300)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ipam.json");
        std::fs::write(&path, &bytes).expect("write");
        let read = ipam::read_checkpoint(&path);
        if Checkpoint::from_json(&bytes).is_err() {
            prop_assert!(read.is_err(), "a document that does not parse is an error");
        }
        prop_assert_eq!(std::fs::read(&path).expect("read back"), bytes);
    }
}
