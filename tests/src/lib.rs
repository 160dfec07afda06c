//! The harness of the workspace's cross-crate tests (`tests/tests/*.rs`).
//!
//! - [`TestNetns`]: the one network-namespace helper of the workspace (created per test,
//!   deleted on drop); [`EmulatedNode`]: the EC2 + IMDS emulator serving one instance.
//! - [`agent`]: the real agent (`ipamd::agent::run`) in-process, once per test: on a node
//!   namespace with host networking ([`agent::NodeAgent`]), or without touching the kernel
//!   and with metrics and introspection ([`agent::LiveNode`]); gRPC pod helpers.
//! - [`plugin`]: the real `aws-cni` binary run as a runtime runs it; kernel snapshots.
//! - [`image`]: the aws-node image (scripts/build-image.sh), podman, the chart's DaemonSet.
//! - [`faults`]: the fault suite's harness (docs/reliability.md): seeded scenarios, fault
//!   injection, the invariant.
//! - [`bins`]: the workspace's binaries, found in (or built into) the target directory, and
//!   the core CNI plugins.
//!
//! Test support only: it panics on failures, with the reason.

pub mod agent;
pub mod bins;
pub mod faults;
pub mod image;
pub mod plugin;

pub use bins::workspace_bin;
pub use ec2_emulator::testing::{EmulatedNode, TestNetns};

/// A free loopback TCP address (`127.0.0.1:<port>`).
pub use ipamd::testing::free_port as free_addr;
