//! The agent's background work on one task, in upstream's order (`StartNodeIPPoolManager`,
//! `updateIPPoolIfRequired`): pool tick, then reconciliation with EC2 when due, then the security-group refresh (`RefreshSGIDs`) and
//! the VPC CIDR refresh (upstream's `updateCIDRsRulesOnChange`) when due; gauges after each
//! round. One task means the reconciler never sees a half-done grow or shrink of the pool
//! manager. The leaked-ENI cleanup runs on its own task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws::{Ec2, Imds};
use ipnet::Ipv4Net;
use tokio::sync::{Notify, watch};

use crate::cni_server::SharedCidrs;
use crate::host_net::HostNet;
use crate::leaked_enis;
use crate::metrics::{InProgress, Metrics};
use crate::pool::{self, GrowthBlocker, PoolManager, SharedDatastore};
use crate::reconcile::Reconciler;

/// How often each part runs (upstream's values by default).
#[derive(Debug, Clone)]
pub struct AgentTimers {
    /// Pool tick (upstream: 5 s).
    pub pool: Duration,
    /// Reconciliation with EC2 (upstream: 60 s after the last pool action).
    pub reconcile: Duration,
    /// Security-group refresh from IMDS (upstream: 30 s).
    pub security_groups: Duration,
    /// VPC CIDR refresh from IMDS (upstream: 30 s).
    pub vpc_cidrs: Duration,
    /// Leaked-ENI cleanup period and the largest random pause before each run.
    pub leaked_enis: Duration,
    pub leaked_enis_stagger: Duration,
}

impl Default for AgentTimers {
    fn default() -> Self {
        Self {
            pool: Duration::from_secs(5),
            reconcile: Duration::from_secs(60),
            security_groups: Duration::from_secs(30),
            vpc_cidrs: Duration::from_secs(30),
            leaked_enis: leaked_enis::CLEANUP_INTERVAL,
            leaked_enis_stagger: leaked_enis::MAX_STAGGER,
        }
    }
}

/// The security groups new and existing ENIs should carry, as IMDS reports them for the
/// primary ENI. `None` in [`NodeLoop::security_groups`] disables the refresh (custom
/// networking takes groups from the ENIConfig; provisioning disabled).
#[derive(Debug, Clone)]
pub struct SecurityGroupRefresh {
    pub primary_mac: String,
    pub current: Vec<String>,
}

/// The VPC's IPv4 CIDRs as IMDS reports them for the primary ENI; when the set changes,
/// the SNAT exemptions are re-programmed and the gRPC replies carry the new set.
pub struct VpcCidrRefresh {
    pub primary_mac: String,
    /// Sorted.
    pub current: Vec<Ipv4Net>,
    /// What AddNetwork replies carry.
    pub reply: SharedCidrs,
    /// `None`: the kernel is someone else's job; only the replies follow.
    pub host: Option<Arc<HostNet>>,
}

impl VpcCidrRefresh {
    pub fn new(
        primary_mac: String,
        current: &[Ipv4Net],
        reply: SharedCidrs,
        host: Option<Arc<HostNet>>,
    ) -> Self {
        let mut current = current.to_vec();
        current.sort();
        Self {
            primary_mac,
            current,
            reply,
            host,
        }
    }

    /// One round: re-read, and on a change program SNAT; the new set is kept only once
    /// programmed, so a failure is retried on the next round.
    pub async fn run_once<I: Imds>(&mut self, imds: &I) {
        let mut cidrs = match imds.vpc_ipv4_cidrs(&self.primary_mac).await {
            Ok(c) if !c.is_empty() => c,
            Ok(_) => return,
            Err(e) => {
                tracing::debug!("VPC CIDR refresh: {e}");
                return;
            }
        };
        cidrs.sort();
        cidrs.dedup();
        if cidrs == self.current {
            return;
        }
        tracing::info!(old = ?self.current, new = ?cidrs, "VPC CIDRs changed");
        if let Some(host) = &self.host
            && let Err(e) = host.update_vpc_cidrs(&cidrs).await
        {
            tracing::warn!("SNAT rules for the new VPC CIDRs: {e}");
            return;
        }
        self.reply
            .set(cidrs.iter().map(ToString::to_string).collect());
        self.current = cidrs;
    }
}

/// The pool manager and reconciler of one network card > 0 (`ENABLE_MULTI_NIC`).
pub struct CardWork<E: Ec2, I: Imds> {
    pub manager: PoolManager<E>,
    pub reconciler: Reconciler<E, I>,
}

/// Everything the background task owns.
pub struct NodeLoop<E: Ec2, I: Imds> {
    /// Card 0's pool manager and reconciler.
    pub manager: PoolManager<E>,
    pub reconciler: Reconciler<E, I>,
    /// The other managed cards', ticked and reconciled after card 0's ("for every
    /// datastore", upstream's `updateIPPoolIfRequired`).
    pub other_cards: Vec<CardWork<E, I>>,
    /// Every card's datastore (gauges).
    pub stores: crate::datastores::Datastores,
    pub ec2: Arc<E>,
    pub imds: Arc<I>,
    pub ds: SharedDatastore,
    pub metrics: Arc<Metrics>,
    /// The pool manager's growth blocker, watched for node events.
    pub blocker: watch::Receiver<Option<GrowthBlocker>>,
    pub kick: Arc<Notify>,
    pub provisioning: bool,
    pub security_groups: Option<SecurityGroupRefresh>,
    /// `None` disables the VPC CIDR refresh.
    pub vpc_cidrs: Option<VpcCidrRefresh>,
    pub timers: AgentTimers,
    /// Node events for blockers an operator must act on (Kubernetes API, when present).
    pub cluster: Option<Arc<dyn k8s::Cluster>>,
    /// `ENABLE_POD_ENI`: reconcile every round while no trunk ENI is known (upstream's
    /// `needsTrunkEni` exception in `nodeIPPoolReconcile`), so the controller's trunk is
    /// found within a pool tick.
    pub wait_for_trunk: bool,
    /// `ENABLE_POD_ENI` with the Kubernetes API: the CNINode features.
    pub features: Option<crate::branch_pods::FeatureAdvertiser>,
}

impl<E: Ec2 + 'static, I: Imds + 'static> NodeLoop<E, I> {
    /// Runs forever (abort the task to stop).
    pub async fn run(mut self) {
        let mut last_reconcile = Instant::now();
        let mut last_sg = Instant::now();
        let mut last_vpc = Instant::now();
        loop {
            if self.provisioning {
                let out = self.manager.tick().await;
                for e in &out.errors {
                    tracing::warn!("pool: {e}");
                    self.metrics
                        .ipamd_error_count
                        .with_label_values(&["increaseIPPoolAllocIPAddressesFailed"])
                        .inc();
                }
                let changed = self.blocker.has_changed().unwrap_or(false);
                let now = self.blocker.borrow_and_update().clone();
                if let (true, Some(blocker), Some(cluster)) = (changed, &now, &self.cluster) {
                    let event = crate::cluster_link::event_for(
                        blocker,
                        &self.manager.last_subnet,
                        self.manager.max_enis(),
                    );
                    if let Some(event) = event {
                        crate::cluster_link::send_event(cluster, event);
                    }
                }
                self.tick_other_cards().await;
            }
            if let Some(f) = &mut self.features {
                f.run_once().await;
            }
            let needs_trunk = self.wait_for_trunk && pool::lock(&self.ds).trunk_eni().is_none();
            if needs_trunk || last_reconcile.elapsed() >= self.timers.reconcile {
                let released = self.manager.recently_released().clone();
                let out = {
                    let _busy = InProgress::start(&self.metrics, "nodeIPPoolReconcile");
                    self.reconciler.run_once(&released).await
                };
                for e in &out.errors {
                    tracing::warn!("{e}");
                }
                if out.enis_added + out.enis_removed + out.cidrs_added + out.cidrs_removed > 0 {
                    tracing::info!(?out, "reconciled with EC2");
                }
                self.reconcile_other_cards().await;
                last_reconcile = Instant::now();
            }
            if last_sg.elapsed() >= self.timers.security_groups {
                self.refresh_security_groups().await;
                last_sg = Instant::now();
            }
            if let Some(refresh) = &mut self.vpc_cidrs
                && last_vpc.elapsed() >= self.timers.vpc_cidrs
            {
                refresh.run_once(self.imds.as_ref()).await;
                last_vpc = Instant::now();
            }
            publish_gauges(&self.metrics, &self.stores.by_card());
            tokio::select! {
                _ = tokio::time::sleep(self.timers.pool) => {}
                _ = self.kick.notified() => self.hold_burst().await,
            }
        }
    }

    /// One pool tick of every card > 0.
    async fn tick_other_cards(&mut self) {
        for work in &mut self.other_cards {
            let out = work.manager.tick().await;
            for e in &out.errors {
                let card = work.manager.network_card();
                tracing::warn!(card, "pool: {e}");
                self.metrics
                    .ipamd_error_count
                    .with_label_values(&["increaseIPPoolAllocIPAddressesFailed"])
                    .inc();
            }
        }
    }

    /// Reconciles every card > 0 with EC2.
    async fn reconcile_other_cards(&mut self) {
        for work in &mut self.other_cards {
            let released = work.manager.recently_released().clone();
            let out = work.reconciler.run_once(&released).await;
            let card = work.manager.network_card();
            for e in &out.errors {
                tracing::warn!(card, "{e}");
            }
            if out.enis_added + out.enis_removed + out.cidrs_added + out.cidrs_removed > 0 {
                tracing::info!(card, ?out, "reconciled with EC2");
            }
        }
    }

    /// After a wake-up, lets the rest of a burst of ADDs land so that one tick grows the
    /// pool for all of them (`planner::coalesce`; docs/ipamd.md, "Coalesced wake-ups").
    async fn hold_burst(&self) {
        let first = Instant::now();
        let mut last = first;
        loop {
            let burst = planner::coalesce::Burst {
                since_first: first.elapsed(),
                since_last: last.elapsed(),
                available: pool::lock(&self.ds).stats(pool::now()).available(),
            };
            let planner::coalesce::Wake::After(pause) = planner::coalesce::wake(&burst) else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.kick.notified() => last = Instant::now(),
            }
        }
    }

    /// Spec 3.8: when the primary ENI's groups change, every other managed ENI follows,
    /// and new ENIs get the new set.
    async fn refresh_security_groups(&mut self) {
        let Some(sg) = &mut self.security_groups else {
            return;
        };
        let mut groups = match self.imds.security_group_ids(&sg.primary_mac).await {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!("security-group refresh: {e}");
                return;
            }
        };
        groups.sort();
        if groups == sg.current {
            return;
        }
        tracing::info!(old = ?sg.current, new = ?groups, "security groups changed");
        let enis: Vec<String> = self
            .stores
            .iter()
            .flat_map(|store| {
                pool::lock(&store.ds)
                    .enis()
                    .iter()
                    .filter(|e| !e.is_primary && !e.is_trunk)
                    .map(|e| e.id.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut all_done = true;
        for eni in enis {
            if let Err(e) = self.ec2.set_security_groups(&eni, &groups).await {
                tracing::warn!(eni, "setting security groups: {e}");
                all_done = false;
            }
        }
        self.manager.set_security_groups(groups.clone());
        for work in &mut self.other_cards {
            work.manager.set_security_groups(groups.clone());
        }
        if all_done {
            sg.current = groups;
        }
    }
}

/// Starts the hourly leaked-ENI cleanup (`cleanUpLeakedENIs`) on its own task.
pub fn spawn_leaked_eni_cleanup<E: Ec2 + 'static>(
    ec2: Arc<E>,
    instance_id: String,
    vpc_id: String,
    cluster_name: String,
    timers: &AgentTimers,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    let (every, stagger) = (timers.leaked_enis, timers.leaked_enis_stagger);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(leaked_enis::stagger(&instance_id, stagger)).await;
            let report = leaked_enis::clean_up(&*ec2, &vpc_id, &cluster_name, pool::now()).await;
            for error in &report.delete_failures {
                metrics
                    .aws_utils_error_count
                    .with_label_values(&["cleanUpLeakedENIDeleteErr", error])
                    .inc();
            }
            if !report.deleted.is_empty() || !report.errors.is_empty() {
                tracing::info!(?report, "leaked-ENI cleanup");
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// Datastore gauges (`utils/prometheusmetrics/prometheusmetrics.go`; docs/metrics.md) over
/// every card's datastore: the totals are summed (upstream's per-card datastores overwrite
/// each other, the last writer winning). IPv6 prefixes count in the totals as upstream's
/// `total` does (2^48 addresses per /80), and in the per-ENI and per-CIDR series.
pub fn publish_gauges(metrics: &Metrics, stores: &[(u32, SharedDatastore)]) {
    let (mut total, mut assigned, mut prefixes, mut enis) = (0i64, 0i64, 0i64, 0i64);
    // Freed ENIs drop out of the per-ENI series.
    metrics.assigned_ip_per_eni.reset();
    let mut per_cidr = Vec::new();
    for (_, ds) in stores {
        let ds = pool::lock(ds);
        let stats = ds.stats(pool::now());
        let v6_total = i64::try_from(ds.ipv6_total_addresses()).unwrap_or(i64::MAX);
        total = total
            .saturating_add(i64::from(stats.total_ips))
            .saturating_add(v6_total);
        assigned += i64::from(stats.assigned_ips + ds.ipv6_assigned());
        prefixes += i64::from(stats.total_prefixes);
        enis += ds.eni_count() as i64;
        for eni in ds.enis() {
            metrics
                .assigned_ip_per_eni
                .with_label_values(&[&eni.id])
                .set(f64::from(eni.assigned_count()));
            let v4 = eni
                .ipv4_cidrs
                .iter()
                .map(|(cidr, c)| (cidr.to_string(), c.assigned_count()));
            let v6 = eni
                .ipv6_cidrs
                .iter()
                .map(|(cidr, c)| (cidr.to_string(), c.assigned_count()));
            per_cidr.extend(v4.chain(v6));
        }
    }
    metrics.total_ip_addresses.set(total);
    metrics.assigned_ip_addresses.set(assigned);
    metrics.total_ipv4_prefixes.set(prefixes);
    metrics.eni_allocated.set(enis);
    metrics.publish_assigned_per_cidr(per_cidr.into_iter());
}
