//! `aws-k8s-agent` (ipamd): wiring of the datastore (`ipam`), the planner, the AWS clients
//! and the host networking (`net`) into the node agent. `agent::run` runs the start-up
//! steps of `start` in order and then serves: gRPC for the CNI plugin (`cni_server`),
//! metrics, introspection, and the background loop (`node_loop`: pool ticks, EC2-confirmed
//! reconciliation, security-group and VPC CIDR refreshes). docs/ipamd.md describes the
//! behaviour, docs/architecture.md the structure, docs/upstream-compat.md the upstream
//! functions each part follows.

pub mod agent;
pub mod branch_pods;
pub mod checkpointer;
pub mod cluster_link;
pub mod cni_server;
pub mod datastores;
pub mod free_eni;
pub mod host_net;
pub mod iam_events;
pub mod introspect;
pub mod ipv6_loop;
pub mod leaked_enis;
pub mod logging;
pub mod metrics;
pub mod multi_nic;
pub mod node;
pub mod node_loop;
pub mod pod_addresses;
pub mod pool;
pub mod reconcile;
pub mod shared_datastore;
pub mod stale_pods;
pub mod start;
pub mod subnet_exclusion;
pub mod subnets;
#[cfg(feature = "testing")]
pub mod testing;
pub mod waiting_pods;
