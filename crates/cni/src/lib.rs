//! `aws-cni`: the CNI plugin kubelet's runtime execs per pod. It asks ipamd for an address
//! over gRPC and wires the pod with netlink. Single-threaded and light at start-up.

pub mod branch;
pub mod check;
pub mod conf;
pub mod error;
pub mod family;
pub mod grant;
pub mod log;
pub mod multi_nic;
pub mod network_policy;
pub mod plugin;
pub mod result;
pub mod skel;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timing;
