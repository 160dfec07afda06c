//! What start-up hands to serving (`crate::start::serve`, and the per-card work of
//! `crate::start::cards`).

use std::collections::HashSet;
use std::sync::Arc;

use config::Config;
use planner::{NodeCapacity, PoolPolicy};

use crate::cluster_link::{self, ClusterLink};
use crate::datastores::Datastores;
use crate::host_net::HostNet;
use crate::metrics::Metrics;
use crate::start::discover::Node;
use crate::start::options::AgentOptions;

/// Everything start-up produced, ready to serve.
pub struct Ready {
    pub cfg: Config,
    pub opts: AgentOptions,
    pub node: Node,
    /// Every managed card's datastore and checkpoint writer, card 0 first.
    pub stores: Datastores,
    /// The planner capacity of each managed card > 0.
    pub other_capacities: Vec<(u32, NodeCapacity)>,
    /// ENIs attached to the node that ipamd does not manage.
    pub unmanaged: HashSet<String>,
    pub vpc_id: String,
    /// The primary ENI's connection tracking timeouts (new ENIs copy them).
    pub primary_conntrack: Option<aws::ConnTrack>,
    pub capacity: NodeCapacity,
    pub host: Option<Arc<HostNet>>,
    pub link: Option<ClusterLink>,
    pub policy: PoolPolicy,
    /// Max pods from the Node once the API server answers (started without it).
    pub max_pods_watch: Option<cluster_link::MaxPodsWatch>,
    pub metrics: Arc<Metrics>,
}
