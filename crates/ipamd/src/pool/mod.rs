//! The warm-pool manager: one tick asks the planner what to do for the node's datastore and
//! carries it out through [`Ec2`], keeping the datastore equal to what EC2 granted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws::{Ec2, Tags};
use ipnet::Ipv4Net;
use planner::{Action, NodeCapacity, PoolPolicy, TickPlan, TickTimers};
use tokio::sync::watch;

use crate::free_eni::{EniFreer, FreeEniSettings};
use crate::host_net::HostNet;
use crate::metrics::{InProgress, Metrics};
use crate::reconcile::{RELEASE_COOLDOWN, RecentlyReleased};
use crate::waiting_pods::WaitingPods;
use net::kernel::Kernel;
use net::netlink::NetlinkHandle;

mod error;
mod excluded;
mod grow;
mod leftovers;

pub use error::PoolError;

/// Back-off after `InsufficientFreeAddressesInSubnet`/`InsufficientCidrBlocks` (`increaseDatastorePool`).
pub const INSUFFICIENT_ADDRESS_BACKOFF: Duration = Duration::from_secs(120);

pub use crate::shared_datastore::{SharedDatastore, lock, now};

/// Everything that stays fixed for the node.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    pub instance_id: String,
    pub subnet_id: String,
    pub security_groups: Vec<String>,
    pub cluster_name: String,
    pub additional_tags: Tags,
    /// CIDR of `subnet_id` (route tables of new ENIs need the gateway).
    pub subnet_cidr: Option<Ipv4Net>,
    /// VPC and zone of the node (subnet discovery looks there).
    pub vpc_id: String,
    pub availability_zone: String,
    /// `ENABLE_SUBNET_DISCOVERY`: new ENIs may go to subnets tagged `kubernetes.io/role/cni`.
    pub subnet_discovery: bool,
}

/// What a tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickOutcome {
    pub addresses_added: u32,
    pub cidrs_released: u32,
    pub enis_added: u32,
    pub enis_freed: u32,
    /// Errors of attempted actions (the tick goes on where upstream does).
    pub errors: Vec<String>,
}

/// Why the pool could not grow, for AddNetwork's error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrowthBlocker {
    SubnetExhausted,
    EniLimitReached,
    Throttled,
    /// `UnauthorizedOperation` on this EC2 action.
    Unauthorized(String),
    /// Custom networking without a usable ENIConfig for the node.
    EniConfig(String),
    Other(String),
}

/// Where new ENIs get their subnet and security groups with custom networking.
#[derive(Clone, Default)]
pub enum EniConfigSource {
    /// Custom networking is off: the node's subnet (or discovered ones) and groups.
    #[default]
    NotUsed,
    /// The node's ENIConfig, read from the API server's cache at each new ENI (a changed
    /// ENIConfig affects new ENIs only, as upstream).
    Cluster(Arc<dyn k8s::Cluster>),
    /// Custom networking is on but there is no API server to read the ENIConfig from.
    Unavailable(String),
}

/// Runs pool ticks for one network card; new ENIs are wired through kernel `K` (the real
/// one by default, `net::testing::Recording` in unit tests).
pub struct PoolManager<E: Ec2, K: Kernel = NetlinkHandle> {
    ec2: Arc<E>,
    ds: SharedDatastore,
    facts: NodeFacts,
    policy: PoolPolicy,
    capacity: NodeCapacity,
    last_decrease: Option<Instant>,
    insufficient_since: Option<Instant>,
    /// The last reason growth failed (cleared when growth succeeds); AddNetwork's error
    /// and the node events read it through [`PoolManager::blocker`].
    blocker: watch::Sender<Option<GrowthBlocker>>,
    /// Host networking for new ENIs (`None`: the kernel side is someone else's job).
    host: Option<Arc<HostNet<K>>>,
    /// What was given back to EC2 lately (reconcile must not re-add it from a stale view).
    released: RecentlyReleased,
    eni_configs: EniConfigSource,
    /// The subnet of the last ENI creation attempt (for events).
    pub last_subnet: String,
    /// `AWS_MANAGE_ENIS_NON_SCHEDULABLE=false` with a Kubernetes API: the Node whose
    /// `node.kubernetes.io/unschedulable` taint stops growing and freeing.
    cordon_gate: Option<Arc<dyn k8s::Cluster>>,
    /// Retries and pauses when freeing an ENI.
    free_eni: FreeEniSettings,
    metrics: Option<Arc<Metrics>>,
    /// Max pods as it changes (the Node's `status.capacity.pods` once the API server
    /// answers, `cluster_link::watch_max_pods`); read at every plan.
    max_pods: Option<watch::Receiver<u32>>,
    /// The primary ENI's connection tracking timeouts, copied onto new ENIs.
    conntrack: Option<aws::ConnTrack>,
    /// Pods AddNetwork refused since the last tick (`crate::waiting_pods`).
    waiting: Arc<WaitingPods>,
    /// The network card whose ENIs this manager attaches (0 unless `ENABLE_MULTI_NIC`).
    network_card: u32,
}

impl<E: Ec2, K: Kernel> PoolManager<E, K> {
    pub fn new(
        ec2: Arc<E>,
        ds: SharedDatastore,
        facts: NodeFacts,
        policy: PoolPolicy,
        capacity: NodeCapacity,
    ) -> Self {
        Self {
            ec2,
            ds,
            facts,
            policy,
            capacity,
            last_decrease: None,
            insufficient_since: None,
            blocker: watch::Sender::new(None),
            host: None,
            released: RecentlyReleased::new(),
            eni_configs: EniConfigSource::NotUsed,
            last_subnet: String::new(),
            cordon_gate: None,
            free_eni: FreeEniSettings::default(),
            metrics: None,
            max_pods: None,
            conntrack: None,
            waiting: Arc::default(),
            network_card: 0,
        }
    }

    /// Manages network card `card`: new ENIs are attached there, at its lowest free device
    /// index, with route table `10000 + device + 100·card` (the datastore's card decides
    /// the targets: cards > 0 keep `WARM_IP_TARGET=1`, `MINIMUM_IP_TARGET=1`).
    pub fn with_network_card(mut self, card: u32) -> Self {
        self.network_card = card;
        self
    }

    /// The network card this manager grows and shrinks.
    pub fn network_card(&self) -> u32 {
        self.network_card
    }

    /// Retries and pauses when freeing an ENI (upstream's by default), validated.
    pub fn with_free_eni_settings(
        mut self,
        settings: FreeEniSettings,
    ) -> Result<Self, aws::backoff::InvalidBackoff> {
        settings.validate()?;
        self.free_eni = settings;
        Ok(self)
    }

    /// Counts `awscni_aws_utils_error_count` when freeing ENIs.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Upstream's `isNodeNonSchedulable` check (with `AWS_MANAGE_ENIS_NON_SCHEDULABLE=false`):
    /// while the Node carries the unschedulable taint, ENIs and addresses are neither
    /// added nor freed. The Node is read from the watch cache on every tick.
    pub fn with_cordon_gate(mut self, cluster: Arc<dyn k8s::Cluster>) -> Self {
        self.cordon_gate = Some(cluster);
        self
    }

    /// Follows max pods from `max_pods` (upstream's `SetAPIServerConnectivity(true)`
    /// re-reads it from the Node): each plan uses the latest value.
    pub fn with_max_pods(mut self, max_pods: watch::Receiver<u32>) -> Self {
        self.max_pods = Some(max_pods);
        self
    }

    /// New ENIs get these connection tracking timeouts (the primary ENI's, as upstream's
    /// `createENIInput` copies them; `None`: EC2's defaults).
    pub fn with_conntrack(mut self, conntrack: Option<aws::ConnTrack>) -> Self {
        self.conntrack = conntrack;
        self
    }

    /// The pool policy with the current max pods.
    fn policy(&self) -> PoolPolicy {
        let mut policy = self.policy;
        if let Some(rx) = &self.max_pods {
            policy.max_pods = *rx.borrow();
        }
        policy
    }

    /// Whether the Node is cordoned and the pool must stay as it is.
    pub fn cordoned(&self) -> bool {
        self.cordon_gate
            .as_ref()
            .and_then(|c| c.node())
            .is_some_and(|n| n.unschedulable)
    }

    /// Sets up each new ENI's route table and rule on the host before it serves pods.
    pub fn with_host_network(mut self, host: Arc<HostNet<K>>) -> Self {
        self.host = Some(host);
        self
    }

    /// Custom networking: new ENIs take subnet and groups from the node's ENIConfig.
    pub fn with_eni_configs(mut self, source: EniConfigSource) -> Self {
        self.eni_configs = source;
        self
    }

    /// Why the pool last failed to grow, as it changes.
    /// Where AddNetwork notes the pods it refused; each plan counts them as demand.
    pub fn waiting_pods(&self) -> Arc<WaitingPods> {
        self.waiting.clone()
    }

    pub fn blocker(&self) -> watch::Receiver<Option<GrowthBlocker>> {
        self.blocker.subscribe()
    }

    fn set_blocker(&self, blocker: Option<GrowthBlocker>) {
        self.blocker.send_if_modified(|b| {
            let changed = *b != blocker;
            *b = blocker;
            changed
        });
    }

    /// The ENI budget the planner works with.
    pub fn max_enis(&self) -> u32 {
        self.capacity.max_enis
    }

    /// Addresses and prefixes given back to EC2 within [`RELEASE_COOLDOWN`].
    pub fn recently_released(&mut self) -> &RecentlyReleased {
        self.released.retain(|_, t| t.elapsed() < RELEASE_COOLDOWN);
        &self.released
    }

    /// The security groups new ENIs get (refreshed from IMDS by the agent).
    pub fn set_security_groups(&mut self, groups: Vec<String>) {
        self.facts.security_groups = groups;
    }

    fn timers(&self) -> TickTimers {
        TickTimers {
            since_last_decrease: self.last_decrease.map(|t| t.elapsed()),
            in_insufficient_backoff: self
                .insufficient_since
                .is_some_and(|t| t.elapsed() < INSUFFICIENT_ADDRESS_BACKOFF),
            provisioning_allowed: !self.cordoned(),
        }
    }

    /// The plan the planner makes for the pool as it is now.
    pub fn plan(&self) -> TickPlan {
        let mut snapshot = lock(&self.ds).snapshot(now());
        snapshot.waiting_pods = self.waiting.count();
        planner::plan_tick(&self.policy(), &self.capacity, &snapshot, &self.timers())
    }

    /// One pool tick: drain excluded ENIs, release the other mode's leftovers, then plan
    /// and act.
    pub async fn tick(&mut self) -> TickOutcome {
        let mut out = TickOutcome::default();
        self.drain_excluded(&mut out).await;
        self.release_other_mode(&mut out).await;
        let plan = self.plan();
        // Planned for: a pod still without an address retries and is counted again.
        self.waiting.clear();
        let mut grew = false;
        for action in &plan.actions {
            let _busy = self
                .metrics
                .as_deref()
                .and_then(|m| in_progress_label(action).map(|l| InProgress::start(m, l)));
            if action.is_grow() {
                if grew {
                    continue;
                }
                match self.grow(action).await {
                    Ok(added) => {
                        if added > 0 {
                            grew = true;
                            self.set_blocker(None);
                            if matches!(action, Action::AllocateEni { .. }) {
                                out.enis_added += 1;
                            }
                            out.addresses_added += added;
                        }
                    }
                    Err(e) => {
                        self.set_blocker(Some(e.blocker()));
                        out.errors.push(e.to_string());
                        if e.is_insufficient_addresses() {
                            // Try the next candidate; start the back-off.
                            self.insufficient_since = Some(Instant::now());
                            continue;
                        }
                        break;
                    }
                }
            } else {
                match self.shrink(action).await {
                    Ok((cidrs, enis)) => {
                        out.cidrs_released += cidrs;
                        out.enis_freed += enis;
                    }
                    Err(e) => out.errors.push(e.to_string()),
                }
            }
        }
        if plan.decrease_ran {
            self.last_decrease = Some(Instant::now());
        }
        if !grew
            && plan.actions.iter().all(|a| a.is_grow())
            && !plan.actions.is_empty()
            && self.blocker.borrow().is_none()
        {
            self.set_blocker(Some(GrowthBlocker::Other(
                "no address could be added".into(),
            )));
        }
        if plan.actions.is_empty()
            && plan
                .notes
                .iter()
                .any(|n| matches!(n, planner::Note::MaxEniReached { .. }))
        {
            self.set_blocker(Some(GrowthBlocker::EniLimitReached));
        }
        out
    }

    /// Carries out shrink actions planned outside the warm-pool plan (ENIs excluded from pod
    /// addresses, the other prefix-delegation mode's leftovers), counting into `out`; `what`
    /// says what was given back, in the log and in errors.
    async fn shrink_each(&mut self, actions: &[Action], what: &str, out: &mut TickOutcome) {
        for action in actions {
            match self.shrink(action).await {
                Ok((cidrs, enis)) => {
                    out.cidrs_released += cidrs;
                    out.enis_freed += enis;
                    if let Action::ReleaseCidrs { eni, .. } | Action::FreeEni { eni } = action
                        && cidrs + enis > 0
                    {
                        tracing::info!(%eni, cidrs, enis, prefix_delegation = self.policy.prefix_delegation, "{what}");
                    }
                }
                Err(e) => out.errors.push(format!("{what}: {e}")),
            }
        }
    }

    async fn shrink(&mut self, action: &Action) -> Result<(u32, u32), PoolError> {
        match action {
            Action::ReleaseCidrs { eni, cidrs } => {
                // Remove from the datastore first (non-forcibly: a concurrent assignment
                // keeps its CIDR), then give back to EC2 only what was removed.
                let mut removed = Vec::new();
                {
                    let mut ds = lock(&self.ds);
                    for cidr in cidrs {
                        if ds.del_ipv4_cidr(eni, *cidr, false).is_ok() {
                            removed.push(*cidr);
                        }
                    }
                }
                let (ips, prefixes): (Vec<Ipv4Net>, Vec<Ipv4Net>) =
                    removed.iter().partition(|c| c.prefix_len() == 32);
                let ips: Vec<_> = ips.iter().map(|c| c.addr()).collect();
                let result = async {
                    self.ec2.unassign_ips(eni, &ips).await?;
                    self.ec2.unassign_prefixes(eni, &prefixes).await
                }
                .await;
                let at = Instant::now();
                self.released.extend(removed.iter().map(|c| (*c, at)));
                result?;
                Ok((removed.len() as u32, 0))
            }
            Action::FreeEni { eni } => {
                let table = {
                    let mut ds = lock(&self.ds);
                    let table = ds.eni(eni).map(|e| e.route_table_id);
                    ds.remove_eni(eni, false)?;
                    table.unwrap_or_default()
                };
                let freer = EniFreer {
                    ec2: self.ec2.as_ref(),
                    settings: &self.free_eni,
                    host: self.host.as_deref(),
                    metrics: self.metrics.as_deref(),
                };
                freer.free(eni, table).await?;
                Ok((0, 1))
            }
            _ => Ok((0, 0)),
        }
    }
}

/// `awscni_ipamd_action_inprogress` label of an action (upstream's function names).
fn in_progress_label(action: &Action) -> Option<&'static str> {
    match action {
        a if a.is_grow() => Some("increaseDatastorePool"),
        Action::ReleaseCidrs { .. } => Some("decreaseDatastorePool"),
        _ => None,
    }
}
