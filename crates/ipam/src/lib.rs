//! Pure IPAM core of the VPC CNI node agent: domain types, the per-network-card
//! [`Datastore`] (assign, release, cooldown, statistics, planner snapshot) and the
//! checkpoint in upstream's `vpc-cni-ipam/1` format.
//!
//! Nothing here reads a clock (time is passed in as [`Timestamp`]) and the only I/O is in
//! [`checkpoint_file`] (std::fs).

pub mod checkpoint;
pub mod checkpoint_file;
pub mod datastore;
pub mod types;

pub use checkpoint::{
    CHECKPOINT_VERSION, Checkpoint, CheckpointEntry, CheckpointError, CheckpointSink, MemorySink,
    NullSink,
};
pub use checkpoint_file::{
    DEFAULT_CHECKPOINT_PATH, FileSink, checkpoint_path_for_card, quarantine, read_checkpoint,
    write_atomic, write_checkpoint,
};
pub use datastore::{
    AllocatedIp, Assignment, CidrEntry, Datastore, DatastoreConfig, DatastoreError, DropReason,
    DroppedAllocation, Eni, ForcedRelease, NewEni, PodNet, RestoreReport, Unassignment,
    format_stats,
};
pub use types::{IpamKey, IpamMetadata, LEGACY_IF_NAME, LEGACY_NETWORK_NAME, Timestamp};
