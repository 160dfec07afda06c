//! Kubernetes integration of the node agent (see docs/kubernetes.md).
//!
//! ipamd uses [`Connection`] to reach the API server, [`ClusterWatch::start`] to run the
//! reflectors (this node's Node, ENIConfigs with custom networking, SecurityGroupPolicies
//! with pod ENI) and the returned [`ClusterHandle`] through the [`Cluster`] trait. No kube
//! type appears in that interface. The pure parts (ENIConfig selection, policy matching,
//! CNINode features, the pod-IP annotation, event texts) are public for tests and tools.

pub mod client;
pub mod cluster;
pub mod crd;
pub mod error;
pub mod events;
pub mod features;
pub mod manifests;
pub mod pod_eni;
pub mod pod_ips;
pub mod selection;
pub mod sgp;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watch;
mod yaml;

pub use client::Connection;
pub use cluster::{BoxFuture, Cluster, ClusterHandle, EventOutcome, NodeInfo, PatchOutcome};
pub use crd::Feature;
pub use error::K8sError;
pub use events::{NodeEvent, PodEvent};
pub use pod_eni::PodFacts;
pub use selection::{EniConfigError, ResolvedEniConfig, SelectionKeys};
pub use sgp::{PodIdentity, PolicyMatch};
pub use watch::{ApiStatus, ClusterWatch, Settings, WatchHealth};
