//! `aws-k8s-agent` (ipamd): wiring of the datastore, the planner, the AWS clients and the
//! host networking into the node agent. Modules arrive one job at a time.

pub mod agent;
pub mod cluster_link;
pub mod cni_server;
pub mod free_eni;
pub mod host_net;
pub mod introspect;
pub mod leaked_enis;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod node_loop;
pub mod pool;
pub mod reconcile;
pub mod stale_pods;
pub mod subnets;
