//! The checkpoint document in upstream's `vpc-cni-ipam/1` format, its byte-compatible
//! encoding (Go `json.Encoder`: compact, HTML-escaped, one trailing newline) and the
//! [`CheckpointSink`] through which the datastore persists it.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Deserializer, Serialize};

use crate::types::{IpamKey, IpamMetadata, Timestamp};

/// The version string every checkpoint carries (a compatibility contract).
pub const CHECKPOINT_VERSION: &str = "vpc-cni-ipam/1";

/// Errors reading, writing or validating a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The document's `version` is not [`CHECKPOINT_VERSION`].
    #[error(
        "failed ipam state recovery due to unexpected checkpointVersion: {found}/{CHECKPOINT_VERSION}"
    )]
    UnsupportedVersion {
        /// The version found in the document.
        found: String,
    },
    /// The bytes are not a checkpoint document.
    #[error("checkpoint is not valid JSON: {0}")]
    Parse(#[source] serde_json::Error),
    /// A checkpoint file is corrupt or truncated.
    #[error("checkpoint file {} is corrupt: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Encoding failed (not expected for this schema).
    #[error("cannot encode checkpoint: {0}")]
    Encode(#[source] serde_json::Error),
    /// A file-system operation on a checkpoint path failed.
    #[error("checkpoint file {}: {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`read`, `rename`, …).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A sink refused the document (in-memory sink set to fail, or another backend).
    #[error("checkpoint sink failed: {0}")]
    Sink(String),
}

/// One allocation ("row") of the checkpoint: the key flattened, the address, the
/// assignment time in Unix nanoseconds and the pod metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    /// The CNI primary key (serialised as `networkName`, `containerID`, `ifName`).
    #[serde(flatten)]
    pub key: IpamKey,
    /// IPv4 address in dotted decimal (omitted when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipv4: String,
    /// IPv6 address (omitted when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipv6: String,
    /// `AssignedTime` as Unix nanoseconds.
    #[serde(rename = "allocationTimestamp", default)]
    pub allocation_timestamp: i64,
    /// Pod metadata (always present as an object; its fields are omitempty).
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: IpamMetadata,
}

impl CheckpointEntry {
    /// The assignment time.
    pub fn assigned_time(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.allocation_timestamp)
    }
}

/// The whole checkpoint document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Must be [`CHECKPOINT_VERSION`].
    pub version: String,
    /// Assigned addresses only.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allocations: Vec<CheckpointEntry>,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Checkpoint {
    /// A current-version document with these allocations.
    pub fn new(allocations: Vec<CheckpointEntry>) -> Self {
        Self {
            version: CHECKPOINT_VERSION.to_string(),
            allocations,
        }
    }

    /// Fails unless the version is [`CHECKPOINT_VERSION`].
    pub fn check_version(&self) -> Result<(), CheckpointError> {
        if self.version == CHECKPOINT_VERSION {
            Ok(())
        } else {
            Err(CheckpointError::UnsupportedVersion {
                found: self.version.clone(),
            })
        }
    }

    /// Parses a document as upstream's decoder does (leading/trailing whitespace allowed)
    /// and checks its version.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let doc: Checkpoint = serde_json::from_slice(bytes).map_err(CheckpointError::Parse)?;
        doc.check_version()?;
        Ok(doc)
    }

    /// Encodes exactly as Go's `json.NewEncoder(f).Encode(&data)`: compact JSON with `<`,
    /// `>`, `&`, U+2028 and U+2029 escaped, followed by one `\n`.
    pub fn to_json(&self) -> Result<Vec<u8>, CheckpointError> {
        let mut out = Vec::with_capacity(64 + self.allocations.len() * 192);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
        self.serialize(&mut ser).map_err(CheckpointError::Encode)?;
        out.push(b'\n');
        Ok(out)
    }
}

/// Compact formatter that adds Go's HTML-safe string escapes.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Where the datastore persists its checkpoint. `persist` is called inside every
/// assignment and unassignment; an error there rolls the operation back.
pub trait CheckpointSink {
    /// Durably stores the document (replacing the previous one).
    fn persist(&mut self, doc: &Checkpoint) -> Result<(), CheckpointError>;
}

/// A sink that discards everything (upstream's `NullCheckpoint`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl CheckpointSink for NullSink {
    fn persist(&mut self, _doc: &Checkpoint) -> Result<(), CheckpointError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    last: Option<Checkpoint>,
    writes: usize,
    fail: bool,
}

/// An in-memory sink for tests. Clones share state, so a test keeps one handle and
/// gives another to the datastore.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    state: Arc<Mutex<MemoryState>>,
}

impl MemorySink {
    /// An empty sink that accepts writes.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last document persisted successfully.
    pub fn last(&self) -> Option<Checkpoint> {
        self.lock().last.clone()
    }

    /// Number of successful writes.
    pub fn writes(&self) -> usize {
        self.lock().writes
    }

    /// Makes subsequent writes fail (`true`) or succeed (`false`).
    pub fn set_failing(&self, fail: bool) {
        self.lock().fail = fail;
    }
}

impl CheckpointSink for MemorySink {
    fn persist(&mut self, doc: &Checkpoint) -> Result<(), CheckpointError> {
        let mut s = self.lock();
        if s.fail {
            return Err(CheckpointError::Sink("injected failure".to_string()));
        }
        s.last = Some(doc.clone());
        s.writes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ip: &str, meta: IpamMetadata) -> CheckpointEntry {
        CheckpointEntry {
            key: IpamKey::new("aws-cni", "c1", "eth0"),
            ipv4: ip.to_string(),
            ipv6: String::new(),
            allocation_timestamp: 1_712_345_678_901_234_567,
            metadata: meta,
        }
    }

    #[test]
    fn encodes_like_go_encoder() -> Result<(), CheckpointError> {
        let doc = Checkpoint::new(vec![
            entry("10.0.1.15", IpamMetadata::new("default", "web-0", 1)),
            entry("10.0.1.16", IpamMetadata::default()),
        ]);
        let text =
            String::from_utf8(doc.to_json()?).map_err(|e| CheckpointError::Sink(e.to_string()))?;
        assert_eq!(
            text,
            concat!(
                r#"{"version":"vpc-cni-ipam/1","allocations":["#,
                r#"{"networkName":"aws-cni","containerID":"c1","ifName":"eth0","ipv4":"10.0.1.15","allocationTimestamp":1712345678901234567,"metadata":{"k8sPodNamespace":"default","k8sPodName":"web-0","interfacesCount":1}},"#,
                r#"{"networkName":"aws-cni","containerID":"c1","ifName":"eth0","ipv4":"10.0.1.16","allocationTimestamp":1712345678901234567,"metadata":{}}"#,
                "]}\n"
            )
        );
        assert_eq!(Checkpoint::from_json(text.as_bytes())?, doc);
        Ok(())
    }

    #[test]
    fn empty_document_has_empty_array() -> Result<(), CheckpointError> {
        let text = Checkpoint::default().to_json()?;
        assert_eq!(
            text,
            b"{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[]}\n"
        );
        let null = Checkpoint::from_json(br#"{"version":"vpc-cni-ipam/1","allocations":null}"#)?;
        assert!(null.allocations.is_empty());
        Ok(())
    }

    #[test]
    fn html_characters_are_escaped_like_go() -> Result<(), CheckpointError> {
        let mut e = entry("10.0.0.1", IpamMetadata::new("a<b>&c", "x\u{2028}y", 0));
        e.key.container_id = "é".to_string();
        let text = String::from_utf8(Checkpoint::new(vec![e.clone()]).to_json()?)
            .map_err(|e| CheckpointError::Sink(e.to_string()))?;
        assert!(
            text.contains(r#""k8sPodNamespace":"a\u003cb\u003e\u0026c""#),
            "{text}"
        );
        assert!(text.contains(r#""k8sPodName":"x\u2028y""#), "{text}");
        assert!(text.contains("\"containerID\":\"é\""), "{text}");
        assert_eq!(Checkpoint::from_json(text.as_bytes())?.allocations, vec![e]);
        Ok(())
    }

    #[test]
    fn version_mismatch_is_an_error() {
        let err = Checkpoint::from_json(br#"{"version":"vpc-cni-ipam/2","allocations":[]}"#);
        match err {
            Err(e @ CheckpointError::UnsupportedVersion { .. }) => assert_eq!(
                e.to_string(),
                "failed ipam state recovery due to unexpected checkpointVersion: vpc-cni-ipam/2/vpc-cni-ipam/1"
            ),
            other => panic!("expected version error, got {other:?}"),
        }
        assert!(matches!(
            Checkpoint::from_json(b"{\"version\":"),
            Err(CheckpointError::Parse(_))
        ));
    }

    #[test]
    fn memory_sink_records_and_fails_on_demand() {
        let handle = MemorySink::new();
        let mut sink = handle.clone();
        assert!(sink.persist(&Checkpoint::default()).is_ok());
        assert_eq!(handle.writes(), 1);
        handle.set_failing(true);
        let doc = Checkpoint::new(vec![entry("10.0.0.1", IpamMetadata::default())]);
        assert!(sink.persist(&doc).is_err());
        assert_eq!(handle.writes(), 1);
        assert_eq!(handle.last(), Some(Checkpoint::default()));
    }
}
