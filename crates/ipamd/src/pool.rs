//! The warm-pool manager: one tick asks the planner what to do for the node's datastore and
//! carries it out through [`Ec2`], keeping the datastore equal to what EC2 granted.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use aws::{AwsError, CreateEniRequest, Ec2, ErrorKind, Tags};
use ipam::{Datastore, DatastoreError, Timestamp};
use ipnet::Ipv4Net;
use planner::{Action, CidrKind, NodeCapacity, PoolPolicy, TickPlan, TickTimers};

use crate::free_eni::{EniFreer, FreeEniSettings};
use crate::host_net::HostNet;
use crate::metrics::{InProgress, Metrics};
use crate::node::{self, ENI_DESCRIPTION_PREFIX, tags};
use crate::reconcile::{RELEASE_COOLDOWN, RecentlyReleased};

/// Back-off after `InsufficientFreeAddressesInSubnet`/`InsufficientCidrBlocks` (spec 3.1).
pub const INSUFFICIENT_ADDRESS_BACKOFF: Duration = Duration::from_secs(120);

/// A datastore shared between the pool manager and the gRPC handlers.
pub type SharedDatastore = Arc<Mutex<Datastore>>;

/// Locks the datastore (a poisoned lock is still usable: its state is consistent after
/// every operation because operations roll back on failure).
pub fn lock(ds: &SharedDatastore) -> MutexGuard<'_, Datastore> {
    ds.lock().unwrap_or_else(|e| e.into_inner())
}

/// The current time as the datastore's timestamp.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

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

/// Runs pool ticks for one network card.
pub struct PoolManager<E: Ec2> {
    ec2: Arc<E>,
    ds: SharedDatastore,
    facts: NodeFacts,
    policy: PoolPolicy,
    capacity: NodeCapacity,
    last_decrease: Option<Instant>,
    insufficient_since: Option<Instant>,
    /// The last reason growth failed (cleared when growth succeeds).
    pub last_blocker: Option<GrowthBlocker>,
    /// Host networking for new ENIs (`None`: the kernel side is someone else's job).
    host: Option<Arc<HostNet>>,
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
}

impl<E: Ec2> PoolManager<E> {
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
            last_blocker: None,
            host: None,
            released: RecentlyReleased::new(),
            eni_configs: EniConfigSource::NotUsed,
            last_subnet: String::new(),
            cordon_gate: None,
            free_eni: FreeEniSettings::default(),
            metrics: None,
        }
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

    /// Whether the Node is cordoned and the pool must stay as it is.
    pub fn cordoned(&self) -> bool {
        self.cordon_gate
            .as_ref()
            .and_then(|c| c.node())
            .is_some_and(|n| n.unschedulable)
    }

    /// Sets up each new ENI's route table and rule on the host before it serves pods.
    pub fn with_host_network(mut self, host: Arc<HostNet>) -> Self {
        self.host = Some(host);
        self
    }

    /// Custom networking: new ENIs take subnet and groups from the node's ENIConfig.
    pub fn with_eni_configs(mut self, source: EniConfigSource) -> Self {
        self.eni_configs = source;
        self
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
        let snapshot = lock(&self.ds).snapshot(now());
        planner::plan_tick(&self.policy, &self.capacity, &snapshot, &self.timers())
    }

    /// One pool tick: plan, then act.
    pub async fn tick(&mut self) -> TickOutcome {
        let plan = self.plan();
        let mut out = TickOutcome::default();
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
                            self.last_blocker = None;
                            if matches!(action, Action::AllocateEni { .. }) {
                                out.enis_added += 1;
                            }
                            out.addresses_added += added;
                        }
                    }
                    Err(e) => {
                        let insufficient = e.kind == ErrorKind::InsufficientAddresses;
                        self.last_blocker = Some(blocker_of(&e));
                        out.errors.push(e.to_string());
                        if insufficient {
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
                    Err(e) => out.errors.push(e),
                }
            }
        }
        if plan.decrease_ran {
            self.last_decrease = Some(Instant::now());
        }
        if !grew
            && plan.actions.iter().all(|a| a.is_grow())
            && !plan.actions.is_empty()
            && self.last_blocker.is_none()
        {
            self.last_blocker = Some(GrowthBlocker::Other("no address could be added".into()));
        }
        if plan.actions.is_empty()
            && plan
                .notes
                .iter()
                .any(|n| matches!(n, planner::Note::MaxEniReached { .. }))
        {
            self.last_blocker = Some(GrowthBlocker::EniLimitReached);
        }
        out
    }

    /// Adds what EC2 granted to the datastore.
    fn record(
        &self,
        eni: &str,
        ips: &[std::net::Ipv4Addr],
        prefixes: &[Ipv4Net],
    ) -> Result<u32, AwsError> {
        let mut ds = lock(&self.ds);
        let mut added = 0;
        for cidr in ips
            .iter()
            .map(|ip| Ipv4Net::from(*ip))
            .chain(prefixes.iter().copied())
        {
            match ds.add_ipv4_cidr(eni, cidr) {
                Ok(()) => added += 1,
                Err(DatastoreError::IpAlreadyInStore) => {}
                Err(e) => {
                    return Err(AwsError::new(
                        ErrorKind::Other,
                        "datastore",
                        None,
                        e.to_string(),
                    ));
                }
            }
        }
        Ok(added)
    }

    async fn grow(&mut self, action: &Action) -> Result<u32, AwsError> {
        match action {
            Action::AssignIps { eni, count } => {
                let got = match self.ec2.assign_ips(eni, *count).await {
                    Err(e) if e.kind != ErrorKind::LimitExceeded && *count > 1 => {
                        self.ec2.assign_ips(eni, 1).await?
                    }
                    Err(e) if e.kind == ErrorKind::LimitExceeded => {
                        // Datastore out of sync with EC2: take EC2's word for it.
                        return self.resync_eni(eni).await;
                    }
                    other => other?,
                };
                if got.ips.len() as u32 > *count {
                    // More than asked for (moto lists every address of the ENI, the
                    // ENI's own primary among them): take the ENI's secondaries from EC2.
                    return self.resync_eni(eni).await;
                }
                self.record(eni, &got.ips, &[])
            }
            Action::AssignPrefixes { eni, count } => {
                let got = match self.ec2.assign_prefixes(eni, *count).await {
                    Err(e) if e.kind == ErrorKind::LimitExceeded => {
                        return self.resync_eni(eni).await;
                    }
                    other => other?,
                };
                self.record(eni, &[], &got.prefixes)
            }
            Action::AllocateEni { kind, count } => self.allocate_eni(*kind, *count).await,
            _ => Ok(0),
        }
    }

    /// Re-reads one ENI from EC2 and adds whatever the datastore is missing.
    async fn resync_eni(&self, eni: &str) -> Result<u32, AwsError> {
        let truth = self.ec2.describe_enis(&[eni.to_string()]).await?;
        let Some(d) = truth.first() else { return Ok(0) };
        self.record(eni, &d.secondary_ips, &d.prefixes)
    }

    async fn allocate_eni(&mut self, kind: CidrKind, count: u32) -> Result<u32, AwsError> {
        let mut tags = node::eni_tags(
            &self.facts.instance_id,
            &self.facts.cluster_name,
            &self.facts.additional_tags,
        );
        tags.insert(tags::CREATED_AT.to_string(), now().to_rfc3339());
        let mut req = CreateEniRequest {
            subnet_id: self.facts.subnet_id.clone(),
            security_groups: self.facts.security_groups.clone(),
            description: format!("{ENI_DESCRIPTION_PREFIX}{}", self.facts.instance_id),
            secondary_ips: if kind == CidrKind::Ip { count } else { 0 },
            prefixes: if kind == CidrKind::Prefix { count } else { 0 },
            tags,
        };
        let candidates = match &self.eni_configs {
            EniConfigSource::NotUsed => self.subnet_candidates().await,
            EniConfigSource::Unavailable(why) => return Err(eni_config_error(why.clone())),
            EniConfigSource::Cluster(cluster) => {
                let resolved = cluster
                    .node_eni_config()
                    .map_err(|e| eni_config_error(e.to_string()))?;
                if !resolved.spec.security_groups.is_empty() {
                    req.security_groups = resolved.spec.security_groups.clone();
                }
                let subnets = self
                    .ec2
                    .describe_subnets(&self.facts.vpc_id, &self.facts.availability_zone)
                    .await?;
                let cidr = crate::subnets::cidr_of(&subnets, &resolved.spec.subnet);
                if cidr.is_none() {
                    return Err(eni_config_error(format!(
                        "ENIConfig {} names subnet {}, which is not in the node's VPC and zone {}",
                        resolved.name, resolved.spec.subnet, self.facts.availability_zone
                    )));
                }
                vec![(resolved.spec.subnet.clone(), cidr)]
            }
        };
        let mut last_error = None;
        let mut created = None;
        for (subnet, cidr) in candidates {
            self.last_subnet = subnet.clone();
            req.subnet_id = subnet;
            match self.ec2.create_eni(&req).await {
                Ok(eni) => {
                    created = Some((eni, cidr));
                    break;
                }
                // Exhausted here: the next subnet may have room.
                Err(e) if e.kind == ErrorKind::InsufficientAddresses => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        let Some((created, subnet_cidr)) = created else {
            return Err(last_error.unwrap_or_else(|| {
                AwsError::new(
                    ErrorKind::InsufficientAddresses,
                    "CreateNetworkInterface",
                    None,
                    "no valid subnet for a new ENI (the node's subnet is tagged kubernetes.io/role/cni=0?)",
                )
            }));
        };
        let instance = match self.ec2.describe_instance(&self.facts.instance_id).await {
            Ok(i) => i,
            Err(e) => return Err(self.undo_create(&created.id, e).await),
        };
        let Some(device) = instance.free_device_index(0) else {
            let e = AwsError::new(
                ErrorKind::LimitExceeded,
                "AttachNetworkInterface",
                None,
                "no free device index",
            );
            return Err(self.undo_create(&created.id, e).await);
        };
        let attachment = match self
            .ec2
            .attach_eni(&created.id, &self.facts.instance_id, device, 0)
            .await
        {
            Ok(a) => a,
            Err(e) => return Err(self.undo_create(&created.id, e).await),
        };
        if let Err(e) = self
            .ec2
            .set_delete_on_termination(&created.id, &attachment)
            .await
        {
            let _ = self.ec2.detach_eni(&attachment, true).await;
            return Err(self
                .undo_create_as(&created.id, e, "ENICleanupUponModifyNetworkErr")
                .await);
        }
        let truth = self
            .ec2
            .describe_enis(std::slice::from_ref(&created.id))
            .await?;
        let Some(eni) = truth.first() else {
            return Ok(0);
        };
        if let (Some(host), Some(ip), Some(subnet)) = (&self.host, eni.primary_ip, subnet_cidr) {
            let table = net::route_table::route_table_id(0, device);
            host.setup_secondary(&eni.mac, ip, subnet, table, eni.interface_type == "trunk")
                .await
                .map_err(|e| AwsError::new(ErrorKind::Other, "setupENI", None, e.to_string()))?;
        }
        let mut ds = lock(&self.ds);
        node::add_eni_from_ec2(&mut ds, eni, now())
            .map_err(|e| AwsError::new(ErrorKind::Other, "datastore", None, e.to_string()))?;
        Ok((eni.secondary_ips.len() + eni.prefixes.len()) as u32)
    }

    /// Subnets to create a new ENI in, in order (spec 3.7). Without discovery, or when
    /// `DescribeSubnets` fails, the node's own subnet.
    async fn subnet_candidates(&self) -> Vec<(String, Option<Ipv4Net>)> {
        let own = vec![(self.facts.subnet_id.clone(), self.facts.subnet_cidr)];
        if !self.facts.subnet_discovery {
            return own;
        }
        match self
            .ec2
            .describe_subnets(&self.facts.vpc_id, &self.facts.availability_zone)
            .await
        {
            Ok(subnets) => crate::subnets::candidates(
                &subnets,
                &self.facts.subnet_id,
                &self.facts.cluster_name,
            ),
            Err(e) => {
                tracing::warn!("subnet discovery: {e}; using the node's subnet");
                own
            }
        }
    }

    /// Deletes an ENI whose create succeeded but whose attach failed; returns the cause.
    async fn undo_create(&self, eni: &str, cause: AwsError) -> AwsError {
        self.undo_create_as(eni, cause, "AllocENIDeleteErr").await
    }

    /// [`Self::undo_create`], counting a failed delete as `awscni_aws_utils_error_count{fn}`.
    async fn undo_create_as(&self, eni: &str, cause: AwsError, counter: &str) -> AwsError {
        if let Err(e) = self.ec2.delete_eni(eni).await {
            tracing::warn!(
                eni,
                "could not delete the unattached ENI after {cause}: {e}"
            );
            if let Some(m) = &self.metrics {
                m.aws_utils_error_count
                    .with_label_values(&[counter, &e.to_string()])
                    .inc();
            }
        }
        cause
    }

    async fn shrink(&mut self, action: &Action) -> Result<(u32, u32), String> {
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
                result.map_err(|e| e.to_string())?;
                Ok((removed.len() as u32, 0))
            }
            Action::FreeEni { eni } => {
                let table = {
                    let mut ds = lock(&self.ds);
                    let table = ds.eni(eni).map(|e| e.route_table_id);
                    ds.remove_eni(eni, false).map_err(|e| e.to_string())?;
                    table.unwrap_or_default()
                };
                let freer = EniFreer {
                    ec2: self.ec2.as_ref(),
                    settings: &self.free_eni,
                    host: self.host.as_deref(),
                    metrics: self.metrics.as_deref(),
                };
                freer.free(eni, table).await.map_err(|e| e.to_string())?;
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

/// The error a missing or unusable ENIConfig gives (op `ENIConfig` marks it for blockers).
fn eni_config_error(detail: String) -> AwsError {
    AwsError::new(ErrorKind::Other, "ENIConfig", None, detail)
}

fn blocker_of(e: &AwsError) -> GrowthBlocker {
    if e.api == "ENIConfig" {
        return GrowthBlocker::EniConfig(e.message.clone());
    }
    match e.kind {
        ErrorKind::InsufficientAddresses => GrowthBlocker::SubnetExhausted,
        ErrorKind::LimitExceeded => GrowthBlocker::EniLimitReached,
        ErrorKind::Throttled => GrowthBlocker::Throttled,
        ErrorKind::Unauthorized => GrowthBlocker::Unauthorized(e.api.clone()),
        _ => GrowthBlocker::Other(e.to_string()),
    }
}
