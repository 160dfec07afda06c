//! Periodic reconciliation of the datastore with the instance's real ENIs (upstream's
//! `nodeIPPoolReconcile`; docs/upstream-compat.md).
//!
//! Upstream compares the datastore with IMDS and, where they differ, sweeps ENIs and
//! addresses IMDS does not list. IMDS lags EC2 by seconds to minutes after an attach or an
//! assign, so that sweep can take addresses from running pods. Here IMDS is only the cheap
//! "is anything different?" hint: when it agrees with the datastore nothing else happens;
//! when it does not, EC2's `DescribeNetworkInterfaces` is asked and only EC2's answer
//! changes the datastore. A removal also needs EC2 to say so on two consecutive rounds,
//! which covers EC2's own read-after-write lag.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use aws::{Ec2, EniDescription, Imds, Tags};
use ipnet::Ipv4Net;
use planner::{HeldEni, ListedEni, ReconcileInput, ReconcilePlan, Suspect};

use crate::host_net::HostNet;
use crate::metrics::Metrics;
use crate::node;
use crate::shared_datastore::{SharedDatastore, lock, now};
use crate::subnet_exclusion::{REFRESH_EVERY_ROUNDS, SubnetExclusion, tag_map};

pub use planner::RELEASE_COOLDOWN;

/// Addresses and prefixes recently given back to EC2, with when.
pub type RecentlyReleased = HashMap<Ipv4Net, Instant>;

/// What one reconcile round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileOutcome {
    /// IMDS agreed with the datastore: EC2 was not asked.
    pub in_sync: bool,
    pub enis_added: u32,
    pub enis_removed: u32,
    pub cidrs_added: u32,
    pub cidrs_removed: u32,
    /// Pods whose address went away with its ENI or CIDR.
    pub pods_unassigned: u32,
    /// Removals EC2 suggested once and that wait for a second confirmation.
    pub suspected: u32,
    /// ENIs whose subnet-exclusion flag changed (`crate::subnet_exclusion`).
    pub exclusions_changed: u32,
    pub errors: Vec<String>,
}

/// Everything the reconciler needs that stays fixed.
#[derive(Debug, Clone)]
pub struct ReconcileFacts {
    pub instance_id: String,
    pub manage_untagged: bool,
    pub provisioning: bool,
    pub cluster_name: String,
    pub additional_tags: Tags,
}

/// Keeps the datastore equal to EC2's view of the instance's ENIs.
pub struct Reconciler<E: Ec2, I: Imds> {
    ec2: Arc<E>,
    imds: Arc<I>,
    ds: SharedDatastore,
    facts: ReconcileFacts,
    metrics: Arc<Metrics>,
    host: Option<Arc<HostNet>>,
    /// ENIs attached but not ours to manage (IDs), as of the last EC2 view.
    unmanaged: HashSet<String>,
    /// What EC2 did not list last round (removed if this round does not list it either).
    missing: HashSet<Suspect>,
    /// Subnet exclusion of existing ENIs (`None`: subnet discovery off).
    exclusion: Option<SubnetExclusion>,
    /// Rounds run (the subnet tags are re-read every [`REFRESH_EVERY_ROUNDS`]).
    rounds: u32,
    /// The network card whose ENIs this datastore holds; other cards' ENIs are not seen.
    card: u32,
}

/// One ENI as IMDS or the datastore lists it: secondary /32s and prefixes.
type CidrView = BTreeSet<Ipv4Net>;

impl<E: Ec2, I: Imds> Reconciler<E, I> {
    pub fn new(
        ec2: Arc<E>,
        imds: Arc<I>,
        ds: SharedDatastore,
        facts: ReconcileFacts,
        metrics: Arc<Metrics>,
        unmanaged: HashSet<String>,
    ) -> Self {
        Self {
            ec2,
            imds,
            ds,
            facts,
            metrics,
            host: None,
            unmanaged,
            missing: HashSet::new(),
            exclusion: None,
            rounds: 0,
            card: 0,
        }
    }

    /// Reconciles network card `card`'s datastore (`ENABLE_MULTI_NIC`): only the ENIs
    /// IMDS and EC2 list on that card are compared with it.
    pub fn with_network_card(mut self, card: u32) -> Self {
        self.card = card;
        self
    }

    /// Re-reads the subnets' tags every [`REFRESH_EVERY_ROUNDS`] rounds and marks (or
    /// clears) each ENI's exclusion; adopted ENIs are checked before they serve pods.
    pub fn with_subnet_exclusion(mut self, exclusion: SubnetExclusion) -> Self {
        self.exclusion = Some(exclusion);
        self
    }

    /// Sets up ENIs found attached (route table and rule) before they serve pods.
    pub fn with_host_network(mut self, host: Arc<HostNet>) -> Self {
        self.host = Some(host);
        self
    }

    fn count(&self, what: &str, n: u32) {
        if n > 0 {
            self.metrics
                .reconcile_count
                .with_label_values(&[what])
                .inc_by(u64::from(n));
        }
    }

    /// The datastore's ENIs and their CIDRs.
    fn datastore_view(&self) -> HashMap<String, CidrView> {
        lock(&self.ds)
            .enis()
            .iter()
            .map(|e| (e.id.clone(), e.ipv4_cidrs.keys().copied().collect()))
            .collect()
    }

    /// IMDS' view (ENI id → CIDRs without the ENI's primary address).
    async fn imds_view(&self) -> Result<HashMap<String, CidrView>, aws::AwsError> {
        let mut view = HashMap::new();
        for mac in self.imds.macs().await? {
            let eni = self.imds.eni(&mac).await?;
            if eni.network_card != self.card {
                continue;
            }
            let cidrs = eni
                .ipv4s
                .iter()
                .skip(1)
                .map(|ip| Ipv4Net::from(*ip))
                .chain(eni.ipv4_prefixes.iter().copied())
                .collect();
            view.insert(eni.eni_id, cidrs);
        }
        Ok(view)
    }

    /// One round: the IMDS hint, then, if anything differs, EC2's truth.
    pub async fn run_once(&mut self, released: &RecentlyReleased) -> ReconcileOutcome {
        let mut out = ReconcileOutcome::default();
        self.rounds = self.rounds.wrapping_add(1);
        if let Some(x) = &self.exclusion
            && self.rounds.is_multiple_of(REFRESH_EVERY_ROUNDS)
        {
            match x.refresh(self.ec2.as_ref(), &self.ds).await {
                Ok(changes) => out.exclusions_changed = changes.len() as u32,
                Err(e) => out
                    .errors
                    .push(format!("subnet exclusion: DescribeSubnets: {e}")),
            }
        }
        let ds_view = self.datastore_view();
        match self.imds_view().await {
            Ok(imds) => {
                let agrees = self.missing.is_empty()
                    && ds_view.iter().all(|(id, c)| imds.get(id) == Some(c))
                    && imds
                        .keys()
                        .all(|id| ds_view.contains_key(id) || self.unmanaged.contains(id));
                if agrees {
                    out.in_sync = true;
                    return out;
                }
            }
            Err(e) => {
                // Without the hint, ask EC2: it is the truth either way.
                self.metrics
                    .ipamd_error_count
                    .with_label_values(&["reconcileFailedGetENIs"])
                    .inc();
                tracing::debug!("reconcile: IMDS unavailable ({e}); asking EC2");
            }
        }
        let truth = match self
            .ec2
            .describe_instance_enis(&self.facts.instance_id)
            .await
        {
            Ok(mut t) => {
                t.retain(|e| crate::multi_nic::card_of(e) == self.card);
                t
            }
            Err(e) => {
                out.errors.push(format!("reconcile: {e}"));
                return out;
            }
        };
        self.apply(&truth, &ds_view, released, &mut out).await;
        out
    }

    /// Carries out [`planner::plan_reconcile`]'s decision for EC2's `truth`.
    async fn apply(
        &mut self,
        truth: &[EniDescription],
        ds_view: &HashMap<String, CidrView>,
        released: &RecentlyReleased,
        out: &mut ReconcileOutcome,
    ) {
        let plan = self.decide(truth, ds_view, released);
        self.unmanaged = plan.unmanaged.iter().cloned().collect();
        self.missing = plan.suspects.clone();
        out.suspected = plan.suspected() as u32;
        for (id, keep) in &plan.adopt {
            let Some(eni) = truth.iter().find(|e| &e.id == id) else {
                continue;
            };
            match self.adopt(eni, keep).await {
                Ok(()) => out.enis_added += 1,
                Err(e) => out.errors.push(format!("reconcile: ENI {id}: {e}")),
            }
        }
        self.change_datastore(&plan, out);
        self.count("eniReconcileAdd", out.enis_added);
        self.count("eniReconcileDel", out.enis_removed);
        self.count("eniDataStorePoolReconcileAdd", out.cidrs_added);
        self.count("eniIPPoolReconcileDel", out.cidrs_removed);
        self.metrics
            .force_removed_enis
            .inc_by(u64::from(out.enis_removed));
        self.metrics
            .force_removed_ips
            .inc_by(u64::from(out.pods_unassigned));
    }

    /// The pure decision's inputs from the datastore view and EC2's description.
    fn decide(
        &self,
        truth: &[EniDescription],
        ds_view: &HashMap<String, CidrView>,
        released: &RecentlyReleased,
    ) -> ReconcilePlan {
        let ds = lock(&self.ds);
        let held: BTreeMap<String, HeldEni> = ds_view
            .iter()
            .map(|(id, cidrs)| {
                let primary = ds.eni(id).is_some_and(|e| e.is_primary);
                (
                    id.clone(),
                    HeldEni {
                        primary,
                        cidrs: cidrs.clone(),
                    },
                )
            })
            .collect();
        drop(ds);
        let listed: Vec<ListedEni> = truth
            .iter()
            .map(|eni| ListedEni {
                id: eni.id.clone(),
                managed: node::is_managed(eni, &self.facts.instance_id, self.facts.manage_untagged),
                cidrs: eni
                    .secondary_ips
                    .iter()
                    .map(|ip| Ipv4Net::from(*ip))
                    .chain(eni.prefixes.iter().copied())
                    .collect(),
            })
            .collect();
        planner::plan_reconcile(&ReconcileInput {
            held: &held,
            listed: &listed,
            released,
            suspects: &self.missing,
            now: Instant::now(),
        })
    }

    /// Adds and removes what the plan says (force: EC2 no longer has it).
    fn change_datastore(&self, plan: &ReconcilePlan, out: &mut ReconcileOutcome) {
        let mut ds = lock(&self.ds);
        for (eni, c) in &plan.add {
            if ds.add_ipv4_cidr(eni, *c).is_ok() {
                out.cidrs_added += 1;
            }
        }
        for (eni, c) in &plan.remove_cidrs {
            if let Ok(forced) = ds.del_ipv4_cidr(eni, *c, true) {
                out.cidrs_removed += 1;
                out.pods_unassigned += forced.unassigned.len() as u32;
                if let Some(e) = forced.checkpoint_error {
                    out.errors.push(format!("checkpoint: {e}"));
                }
            }
        }
        for id in &plan.remove_enis {
            if let Ok(forced) = ds.remove_eni(id, true) {
                out.enis_removed += 1;
                out.pods_unassigned += forced.unassigned.len() as u32;
                tracing::warn!(eni = %id, pods = forced.unassigned.len(), "ENI is no longer attached; removed");
            }
        }
    }

    /// An attached managed ENI the datastore does not know: tag it, wire it, add it.
    async fn adopt(&self, eni: &EniDescription, keep: &BTreeSet<Ipv4Net>) -> Result<(), String> {
        if self.facts.provisioning && eni.interface_type != "trunk" {
            let missing = node::missing_tags(
                eni,
                &self.facts.instance_id,
                &self.facts.cluster_name,
                &self.facts.additional_tags,
            );
            node::tag_eni(self.ec2.as_ref(), &eni.id, &missing, &node::TAG_RETRIES)
                .await
                .map_err(|e| format!("tagging: {e}"))?;
        }
        let attachment = eni.attachment.as_ref().ok_or("not attached")?;
        let is_primary = (attachment.network_card, attachment.device_index) == (0, 0);
        let wire = self.host.as_ref().filter(|_| !is_primary);
        // Upstream's `setupENI`: a failed subnet read fails the adoption (retried next round).
        let subnets = if wire.is_some() || self.exclusion.is_some() {
            self.ec2
                .describe_subnets(&eni.vpc_id, &eni.availability_zone)
                .await
                .map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        if let Some(host) = wire {
            let ip: Ipv4Addr = eni.primary_ip.ok_or("no primary address")?;
            let cidr = crate::subnets::cidr_of(&subnets, &eni.subnet_id)
                .ok_or_else(|| format!("subnet {} not found", eni.subnet_id))?;
            let table =
                net::route_table::route_table_id(attachment.network_card, attachment.device_index);
            host.setup_secondary(&eni.mac, ip, cidr, table, eni.interface_type == "trunk")
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut filtered = eni.clone();
        filtered
            .secondary_ips
            .retain(|ip| keep.contains(&Ipv4Net::from(*ip)));
        filtered.prefixes.retain(|p| keep.contains(p));
        let mut ds = lock(&self.ds);
        node::add_eni_from_ec2(&mut ds, &filtered, now()).map_err(|e| e.to_string())?;
        // Under the same lock: an ENI in an excluded subnet never serves a pod.
        if let Some(x) = &self.exclusion {
            x.apply(&mut ds, &tag_map(&subnets));
        }
        Ok(())
    }
}
