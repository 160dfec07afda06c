//! The gRPC services ipamd serves on its Unix socket: `rpc.CNIBackend` (AddNetwork,
//! DelNetwork with upstream's semantics, `pkg/ipamd/rpc_handler.go`) and `rpc.ConfigServerBackend`.
//! AddNetwork never waits on EC2: it is served from the warm pool, and when the pool has no
//! address the error says why in words an operator can act on. Neither waits on the
//! Kubernetes API ([`PodIpAnnotator`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use ipam::{DatastoreError, IpamKey};
use rpc::{
    AddNetworkReply, AddNetworkRequest, CniBackend, ConfigServerBackend, DelNetworkReply,
    DelNetworkRequest, IpAllocationMetadata, NetworkPolicyAgentConfigReply,
};
use tokio::sync::{Notify, oneshot, watch};
use tonic::{Request, Response, Status};

use crate::branch_pods::{BranchAdd, BranchPodError, BranchPods, UnknownPodDel};
use crate::datastores::Datastores;
use crate::metrics::Metrics;
use crate::pod_addresses::{self, OnCard, PodAddress};
use crate::pool::GrowthBlocker;
use crate::waiting_pods::WaitingPods;

/// The version this server reports; upstream plugins send `""`, which is accepted too.
pub const SERVER_VERSION: &str = "";

/// The VPC's CIDRs as the replies carry them, shared with the node loop, which refreshes
/// them from IMDS (upstream's `updateCIDRsRulesOnChange`).
#[derive(Debug, Clone, Default)]
pub struct SharedCidrs(Arc<RwLock<Vec<String>>>);

impl SharedCidrs {
    pub fn get(&self) -> Vec<String> {
        self.0.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn set(&self, cidrs: Vec<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = cidrs;
    }
}

impl FromIterator<String> for SharedCidrs {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        Self(Arc::new(RwLock::new(iter.into_iter().collect())))
    }
}

/// Facts the replies carry.
#[derive(Debug, Clone, Default)]
pub struct ReplyFacts {
    /// IPv6 mode: pods get /128s, replies carry `IPv6Addr` and `VPCv6CIDRs`, the config
    /// reply `NodeIPv6` (upstream's `enableIPv6` branches of `rpc_handler.go`).
    pub ipv6: bool,
    /// The VPC's CIDRs of the cluster's family (`VPCv4CIDRs` or `VPCv6CIDRs`).
    pub vpc_cidrs: SharedCidrs,
    pub exclude_snat_cidrs: Vec<String>,
    pub external_snat: bool,
    pub network_policy_mode: String,
    pub multi_nic: bool,
    pub instance_id: String,
    pub region: String,
    pub node_ipv4: String,
    /// The primary ENI's IPv6 address (IMDS `ipv6`), IPv6 mode only.
    pub node_ipv6: String,
}

/// State shared by the handlers.
#[derive(Clone)]
pub struct CniService {
    /// Every managed card's datastore and checkpoint writer, card 0 first; every reply
    /// waits until the checkpoints holding its change are on disk.
    pub stores: Datastores,
    pub facts: Arc<ReplyFacts>,
    pub metrics: Arc<Metrics>,
    /// Why the pool last failed to grow (the pool manager's, see `PoolManager::blocker`).
    pub blocker: watch::Receiver<Option<GrowthBlocker>>,
    /// Wakes the pool loop at once when an ADD finds the pool low or empty.
    pub kick: Arc<Notify>,
    /// Pods refused for want of an address, demand for the next tick (`PoolManager::waiting_pods`).
    pub waiting: Arc<WaitingPods>,
    /// `ANNOTATE_POD_IP`: sets `vpc.amazonaws.com/pod-ips` on ADD, clears it on DEL.
    pub annotate: Option<PodIpAnnotator>,
    /// `ENABLE_POD_ENI`: branch-ENI pods (`crate::branch_pods`).
    pub branch: Option<Arc<BranchPods<aws::sdk_imds::SdkImds>>>,
}

/// The gRPC status of a branch pod's failure: the API server unreachable is `Unavailable`
/// (kubelet retries), everything else `FailedPrecondition`; the message says what to do.
fn branch_status(e: &BranchPodError) -> Status {
    match e {
        BranchPodError::PodRead { .. } => Status::unavailable(e.to_string()),
        _ => Status::failed_precondition(e.to_string()),
    }
}

/// `ANNOTATE_POD_IP` (upstream `AnnotatePod`, called from `AddNetwork` and `DelNetwork` in
/// `pkg/ipamd/rpc_handler.go`), off the request's path: a slow or absent API server never
/// holds up a pod's network. The patches of one pod run one after the other in the order
/// the requests were served, so a DEL's clear is never overtaken by the set of the ADD
/// before it; different pods do not wait for each other.
#[derive(Clone)]
pub struct PodIpAnnotator {
    cluster: Arc<dyn k8s::Cluster>,
    queues: Arc<Mutex<PodQueues>>,
}

/// Per pod (namespace, name): the sequence number of the last patch queued and the signal
/// that it is done, for the next one to wait on.
#[derive(Default)]
struct PodQueues {
    next: u64,
    tails: HashMap<(String, String), (u64, oneshot::Receiver<()>)>,
}

/// What to write.
enum PodIpPatch {
    Set(String),
    Clear { released: String },
}

impl PodIpAnnotator {
    pub fn new(cluster: Arc<dyn k8s::Cluster>) -> Self {
        Self {
            cluster,
            queues: Arc::default(),
        }
    }

    /// ADD: set the annotation to `ip`.
    pub fn set(&self, namespace: &str, name: &str, ip: IpAddr) {
        self.enqueue(namespace, name, PodIpPatch::Set(ip.to_string()));
    }

    /// DEL: set it to `""` if it still holds `released` (upstream leaves another value alone).
    pub fn clear(&self, namespace: &str, name: &str, released: IpAddr) {
        let released = released.to_string();
        self.enqueue(namespace, name, PodIpPatch::Clear { released });
    }

    fn enqueue(&self, namespace: &str, name: &str, patch: PodIpPatch) {
        let pod = (namespace.to_string(), name.to_string());
        let (done, done_rx) = oneshot::channel();
        let (seq, before) = {
            let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            let seq = q.next;
            q.next += 1;
            (seq, q.tails.insert(pod.clone(), (seq, done_rx)))
        };
        let (cluster, queues) = (self.cluster.clone(), self.queues.clone());
        tokio::spawn(async move {
            if let Some((_, previous)) = before {
                // Err: the previous task is gone; either way it no longer runs.
                let _ = previous.await;
            }
            let (ns, name) = (&pod.0, &pod.1);
            let result = match &patch {
                PodIpPatch::Set(ip) => cluster.annotate_pod_ip(ns, name, ip).await,
                PodIpPatch::Clear { released } => cluster.clear_pod_ip(ns, name, released).await,
            };
            match (result, &patch) {
                (Ok(outcome), _) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), ?outcome, "pod IP annotation")
                }
                (Err(e), PodIpPatch::Set(_)) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), "annotating pod IP: {e}")
                }
                (Err(e), PodIpPatch::Clear { .. }) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), "clearing pod IP annotation: {e}")
                }
            }
            let _ = done.send(());
            let mut q = queues.lock().unwrap_or_else(|e| e.into_inner());
            if q.tails.get(&pod).is_some_and(|(s, _)| *s == seq) {
                q.tails.remove(&pod);
            }
        });
    }
}

fn version_ok(client: &str) -> bool {
    client.is_empty() || client == SERVER_VERSION
}

/// The operator-facing reason for an empty pool.
pub fn no_address_message(blocker: Option<&GrowthBlocker>) -> String {
    let why = match blocker {
        None => "the warm pool is empty and ipamd is adding addresses now; the pod will be retried".to_string(),
        Some(GrowthBlocker::SubnetExhausted) => "the subnet has no free addresses (InsufficientFreeAddressesInSubnet/InsufficientCidrBlocks): free addresses, add a subnet tagged kubernetes.io/role/cni=1, or use custom networking".to_string(),
        Some(GrowthBlocker::EniLimitReached) => "the node reached its ENI/address limit for this instance type (or MAX_ENI): schedule fewer pods here or use prefix delegation".to_string(),
        Some(GrowthBlocker::Throttled) => "EC2 is throttling this account's API calls (RequestLimitExceeded); ipamd is backing off and will retry".to_string(),
        Some(GrowthBlocker::Unauthorized(action)) => format!("the node's IAM role may not call EC2 {action} (UnauthorizedOperation): attach the AmazonEKS_CNI_Policy"),
        Some(GrowthBlocker::EniConfig(detail)) => format!("custom networking has no usable ENIConfig for this node: {detail}"),
        Some(GrowthBlocker::Other(e)) => format!("growing the pool failed: {e}"),
    };
    format!("no free IP address on this node: {why}")
}

impl CniService {
    /// Updates `awscni_assigned_ip_addresses` (the other gauges follow on the pool loop).
    fn note_assigned(&self) {
        let assigned = self.stores.assigned();
        self.metrics.assigned_ip_addresses.set(i64::from(assigned));
    }

    /// Waits for the checkpoints holding `changes` (group commit, see `checkpointer`).
    async fn durable(&self, changes: &[OnCard]) -> Result<(), Status> {
        for c in changes {
            c.store
                .checkpointer
                .durable(c.generation)
                .await
                .map_err(|e| Status::internal(format!("writing the checkpoint: {e}")))?;
        }
        Ok(())
    }

    /// The reply's `IPAllocationMetadata` row of `a`.
    fn allocation(a: &PodAddress) -> IpAllocationMetadata {
        let (v4, v6) = match a.ip {
            IpAddr::V4(ip) => (ip.to_string(), String::new()),
            IpAddr::V6(ip) => (String::new(), ip.to_string()),
        };
        IpAllocationMetadata {
            i_pv4_addr: v4,
            i_pv6_addr: v6,
            device_number: a.device_number as i32,
            route_table_id: a.route_table_id as i32,
        }
    }
}

impl CniService {
    /// A successful AddNetwork reply for `rows`: the VPC CIDRs of the cluster's family, SNAT
    /// settings and the network policy mode (upstream step 4, also for branch pods).
    fn success_reply(&self, rows: Vec<IpAllocationMetadata>) -> AddNetworkReply {
        let mut reply = AddNetworkReply {
            success: true,
            ip_allocation_metadata: rows,
            network_policy_mode: self.facts.network_policy_mode.clone(),
            ..Default::default()
        };
        let mut cidrs = self.facts.vpc_cidrs.get();
        if self.facts.ipv6 {
            // IPv6: no SNAT, so neither `UseExternalSNAT` nor the exclusions apply.
            reply.vp_cv6_cid_rs = cidrs;
        } else {
            if !self.facts.external_snat {
                cidrs.extend(self.facts.exclude_snat_cidrs.iter().cloned());
            }
            reply.use_external_snat = self.facts.external_snat;
            reply.vp_cv4_cid_rs = cidrs;
        }
        reply
    }

    /// A branch pod's reply: its address with `DeviceNumber -1` and `RouteTableId 0`
    /// (upstream: device number + 1), and the VLAN, MAC, gateway and trunk ifindex.
    fn branch_reply(&self, req: &AddNetworkRequest, b: &BranchAdd) -> AddNetworkReply {
        let ip = b.network.ip;
        let row = Self::allocation(&PodAddress {
            ip,
            device_number: 0,
            route_table_id: 0,
        });
        let mut reply = self.success_reply(vec![IpAllocationMetadata {
            device_number: -1,
            ..row
        }]);
        reply.pod_vlan_id = i32::from(b.network.vlan_id);
        reply.pod_enimac = b.network.mac.clone();
        reply.pod_eni_subnet_gw = b.network.gateway.to_string();
        reply.parent_if_index = i32::try_from(b.parent_if_index).unwrap_or_default();
        if let Some(annotator) = &self.annotate {
            annotator.set(&req.k8s_pod_namespace, &req.k8s_pod_name, ip);
        }
        tracing::info!(pod = %format!("{}/{}", req.k8s_pod_namespace, req.k8s_pod_name), eni = %b.network.eni_id, vlan = b.network.vlan_id, %ip, "branch ENI pod");
        reply
    }

    /// DelNetwork of a pod the datastore does not know, with pod ENI on (upstream's
    /// `ErrUnknownPod` path): `None` when the datastore's answer stands.
    async fn del_unknown_branch(
        &self,
        req: &DelNetworkRequest,
    ) -> Option<Result<Response<DelNetworkReply>, Status>> {
        let branch = self.branch.as_ref()?;
        let (ns, name) = (&req.k8s_pod_namespace, &req.k8s_pod_name);
        let reply = match branch.del_unknown(ns, name, &req.k8s_pod_uid).await {
            Ok(UnknownPodDel::NotBranch) => return None,
            Ok(UnknownPodDel::PodGone) => DelNetworkReply {
                success: true,
                ..Default::default()
            },
            Ok(UnknownPodDel::Branch {
                vlan_id,
                private_ip,
            }) => DelNetworkReply {
                success: true,
                pod_vlan_id: vlan_id,
                ip_allocation_metadata: vec![IpAllocationMetadata {
                    i_pv4_addr: private_ip,
                    ..Default::default()
                }],
                network_policy_mode: self.facts.network_policy_mode.clone(),
            },
            Err(e) => {
                tracing::warn!("DelNetwork: {e}");
                return Some(Err(branch_status(&e)));
            }
        };
        Some(Ok(Response::new(reply)))
    }
}

#[tonic::async_trait]
impl CniBackend for CniService {
    async fn add_network(
        &self,
        request: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        self.metrics.add_ip_req_count.inc();
        let req = request.into_inner();
        if !version_ok(&req.client_version) {
            return Err(Status::failed_precondition(format!(
                "wrong client version {:?}, server version {SERVER_VERSION:?}",
                req.client_version
            )));
        }
        if let Some(branch) = &self.branch {
            match branch.add(&req.k8s_pod_namespace, &req.k8s_pod_name).await {
                Ok(Some(b)) => return Ok(Response::new(self.branch_reply(&req, &b))),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("AddNetwork: {e}");
                    self.metrics
                        .pod_eni_error_count
                        .with_label_values(&["AddNetwork"])
                        .inc();
                    return Err(branch_status(&e));
                }
            }
        }
        let failed = || {
            Ok(Response::new(AddNetworkReply {
                success: false,
                ..Default::default()
            }))
        };
        if req.container_id.is_empty() || req.if_name.is_empty() || req.network_name.is_empty() {
            return failed();
        }
        if req.requires_multi_nic_attachment && !self.facts.multi_nic {
            tracing::warn!("a multi-NIC pod needs ENABLE_MULTI_NIC=true");
            return failed();
        }
        let required = if req.requires_multi_nic_attachment {
            self.stores.len()
        } else {
            1
        };
        let key = IpamKey::new(&req.network_name, &req.container_id, &req.if_name);
        let ipv6 = self.facts.ipv6;
        let (ns, name) = (&req.k8s_pod_namespace, &req.k8s_pod_name);
        let assigned = pod_addresses::assign(&self.stores, ipv6, &key, ns, name, required);
        self.note_assigned();
        match &assigned {
            Err(DatastoreError::NoAvailableIp) => self.waiting.refused(&key),
            _ => self.waiting.done(&key),
        }
        // Whatever happened, let the pool catch up right away.
        self.kick.notify_one();
        let taken = match assigned {
            Ok(taken) => taken,
            Err(DatastoreError::NoAvailableIp) if required > 1 => {
                // Upstream answers a multi-NIC pod's failure with Success=false.
                self.metrics.no_available_ip_addresses.inc();
                tracing::warn!(pod = %format!("{ns}/{name}"), "multi-NIC pod: a card has no free address");
                return failed();
            }
            Err(DatastoreError::NoAvailableIp) => {
                self.metrics.no_available_ip_addresses.inc();
                let blocker = self.blocker.borrow().clone();
                return Err(Status::resource_exhausted(no_address_message(
                    blocker.as_ref(),
                )));
            }
            Err(e) => return Err(Status::internal(format!("assigning an address: {e}"))),
        };
        if let Err(e) = self.durable(&taken).await {
            // Not on disk: a restart would not know the pod. Give the addresses back.
            pod_addresses::give_back(ipv6, &key, &taken);
            self.note_assigned();
            return Err(e);
        }
        if let (Some(annotator), Some(first)) = (&self.annotate, taken.first()) {
            annotator.set(ns, name, first.address.ip);
        }
        let rows = taken.iter().map(|t| Self::allocation(&t.address)).collect();
        Ok(Response::new(self.success_reply(rows)))
    }

    async fn del_network(
        &self,
        request: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let req = request.into_inner();
        self.metrics
            .del_ip_req_count
            .with_label_values(&[&req.reason])
            .inc();
        if !version_ok(&req.client_version) {
            return Err(Status::failed_precondition(format!(
                "wrong client version {:?}, server version {SERVER_VERSION:?}",
                req.client_version
            )));
        }
        let key = IpamKey::new(&req.network_name, &req.container_id, &req.if_name);
        self.waiting.done(&key);
        let released = pod_addresses::release(&self.stores, self.facts.ipv6, &key);
        self.note_assigned();
        if released.as_ref().is_ok_and(|r| r.leftover) {
            // Prefix delegation was switched: the pool loop gives the CIDR back to EC2 now
            // (`pool::leftovers`), as upstream's DelNetwork does, without this DEL waiting.
            self.kick.notify_one();
        }
        if let Ok(r) = &released {
            self.durable(&r.on_cards).await?;
            if let (Some(annotator), Some(first)) = (&self.annotate, r.on_cards.first()) {
                annotator.clear(&req.k8s_pod_namespace, &req.k8s_pod_name, first.address.ip);
            }
        }
        match released {
            Ok(r) => Ok(Response::new(DelNetworkReply {
                success: true,
                ip_allocation_metadata: r
                    .on_cards
                    .iter()
                    .map(|c| Self::allocation(&c.address))
                    .collect(),
                network_policy_mode: self.facts.network_policy_mode.clone(),
                ..Default::default()
            })),
            Err(DatastoreError::UnknownPod) => {
                if let Some(answer) = self.del_unknown_branch(&req).await {
                    return answer;
                }
                // Upstream's plugin treats any error containing this text as success.
                Err(Status::not_found(format!(
                    "1 error occurred:\n\t* {}\n\n",
                    DatastoreError::UnknownPod
                )))
            }
            Err(e) => Err(Status::internal(format!("releasing the address: {e}"))),
        }
    }
}

#[tonic::async_trait]
impl ConfigServerBackend for CniService {
    async fn get_network_policy_configs(
        &self,
        _request: Request<()>,
    ) -> Result<Response<NetworkPolicyAgentConfigReply>, Status> {
        Ok(Response::new(NetworkPolicyAgentConfigReply {
            network_policy_mode: self.facts.network_policy_mode.clone(),
            multi_nic_enabled: self.facts.multi_nic,
            // The node's address of the cluster's family; the other is empty.
            node_i_pv4: if self.facts.ipv6 {
                String::new()
            } else {
                self.facts.node_ipv4.clone()
            },
            node_i_pv6: if self.facts.ipv6 {
                self.facts.node_ipv6.clone()
            } else {
                String::new()
            },
            instance_id: self.facts.instance_id.clone(),
            region: self.facts.region.clone(),
        }))
    }
}

#[cfg(test)]
#[path = "cni_server_v6_tests.rs"]
mod v6_tests;
