//! Security groups for pods on the node (`ENABLE_POD_ENI`; docs/security-groups-for-pods.md):
//! AddNetwork and DelNetwork for pods the VPC Resource Controller gave a branch ENI
//! (upstream's pod-eni branches of `AddNetwork`/`DelNetwork` in `pkg/ipamd/rpc_handler.go`),
//! the trunk ENI's link (`getTrunkLinkIndex`), and advertising `SecurityGroupsForPods` on
//! the node's CNINode (`tryEnableSecurityGroupsForPods`).
//!
//! A branch pod takes nothing from the datastore: its address, MAC and VLAN come from the
//! pod's `vpc.amazonaws.com/pod-eni` annotation, read from the API server.

use std::sync::{Arc, Mutex};

use aws::Imds;
use k8s::pod_eni::{self, BranchNetwork, PodEniError};
use k8s::{Cluster, K8sError, PodEvent, PodFacts};

use crate::host_net::HostNet;
use crate::shared_datastore::{SharedDatastore, lock};

/// Why a branch pod's ADD or DEL cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum BranchPodError {
    #[error(
        "ENABLE_POD_ENI=true needs the Kubernetes API to read pod {0}, but MY_NODE_NAME is not set"
    )]
    NoApi(String),
    #[error("reading pod {pod}: {source}")]
    PodRead { pod: String, source: K8sError },
    #[error("pod {0} is not in the API server")]
    PodMissing(String),
    #[error(
        "pod {0} needs a branch ENI (security groups for pods) but no trunk ENI is attached to this node yet; the VPC Resource Controller attaches one after ipamd advertises SecurityGroupsForPods on the node's CNINode"
    )]
    NoTrunk(String),
    #[error("pod {pod}: the trunk ENI {trunk}'s link in the node's network namespace: {detail}")]
    TrunkLink {
        pod: String,
        trunk: String,
        detail: String,
    },
    #[error("pod {pod} needs a branch ENI (security groups for pods) but {source}")]
    Annotation { pod: String, source: PodEniError },
    #[error("pod UID mismatch: got {got}, expected {expected}")]
    UidMismatch { got: String, expected: String },
}

/// A branch pod's ADD answer: the annotation's network and the trunk link's ifindex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchAdd {
    pub network: BranchNetwork,
    pub parent_if_index: u32,
}

/// What DelNetwork answers for a pod the datastore does not know (upstream's
/// `ErrUnknownPod` path with pod ENI on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownPodDel {
    /// The pod object is gone: success, nothing to say (aws-cni tears down from prevResult).
    PodGone,
    /// A branch pod: success with its VLAN id and address.
    Branch { vlan_id: i32, private_ip: String },
    /// Not a branch pod: the datastore's `unknown pod` answer stands.
    NotBranch,
}

/// The trunk ENI's link, cached once found (the trunk stays while it is attached).
#[derive(Default)]
struct TrunkLinkCache(Mutex<Option<(String, u32)>>);

/// AddNetwork/DelNetwork for branch pods.
pub struct BranchPods<I: Imds> {
    cluster: Option<Arc<dyn Cluster>>,
    ds: SharedDatastore,
    imds: Arc<I>,
    host: Option<Arc<HostNet>>,
    ipv6: bool,
    trunk_link: TrunkLinkCache,
}

fn pod_name(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl<I: Imds> BranchPods<I> {
    pub fn new(
        cluster: Option<Arc<dyn Cluster>>,
        ds: SharedDatastore,
        imds: Arc<I>,
        host: Option<Arc<HostNet>>,
        ipv6: bool,
    ) -> Self {
        Self {
            cluster,
            ds,
            imds,
            host,
            ipv6,
            trunk_link: TrunkLinkCache::default(),
        }
    }

    async fn read_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PodFacts>, BranchPodError> {
        let pod = pod_name(namespace, name);
        let cluster = self
            .cluster
            .as_ref()
            .ok_or_else(|| BranchPodError::NoApi(pod.clone()))?;
        cluster
            .pod(namespace, name)
            .await
            .map_err(|source| BranchPodError::PodRead { pod, source })
    }

    /// AddNetwork with pod ENI on: `Ok(None)` for a pod without the pod-eni resource (it gets
    /// an ordinary address), the branch network for one with it. A branch pod that cannot
    /// be served is an error and a Warning event on the pod, never an ordinary address.
    pub async fn add(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BranchAdd>, BranchPodError> {
        let pod = pod_name(namespace, name);
        let facts = self
            .read_pod(namespace, name)
            .await?
            .ok_or_else(|| BranchPodError::PodMissing(pod.clone()))?;
        if !facts.needs_branch_eni() {
            return Ok(None);
        }
        let result = self.branch_for(&facts).await;
        if let Err(e) = &result {
            self.warn_pod(&facts, e);
        }
        result.map(Some)
    }

    async fn branch_for(&self, facts: &PodFacts) -> Result<BranchAdd, BranchPodError> {
        let pod = pod_name(&facts.namespace, &facts.name);
        let trunk = lock(&self.ds).trunk_eni().map(str::to_owned);
        let trunk = trunk.ok_or_else(|| BranchPodError::NoTrunk(pod.clone()))?;
        let parent_if_index =
            self.trunk_link_index(&trunk)
                .await
                .map_err(|detail| BranchPodError::TrunkLink {
                    pod: pod.clone(),
                    trunk: trunk.clone(),
                    detail,
                })?;
        let network = pod_eni::branch_network(facts.pod_eni.as_deref(), self.ipv6)
            .map_err(|source| BranchPodError::Annotation { pod, source })?;
        Ok(BranchAdd {
            network,
            parent_if_index,
        })
    }

    /// The trunk's link index: its MAC from IMDS, the link by MAC in the node's namespace.
    async fn trunk_link_index(&self, trunk: &str) -> Result<u32, String> {
        if let Some((id, index)) = self.trunk_link.0.lock().ok().and_then(|c| c.clone())
            && id == trunk
        {
            return Ok(index);
        }
        let host = self
            .host
            .as_ref()
            .ok_or("host networking is off, so the trunk's link cannot be looked up")?;
        let mut mac = None;
        for m in self.imds.macs().await.map_err(|e| e.to_string())? {
            let eni = self.imds.eni(&m).await.map_err(|e| e.to_string())?;
            if eni.eni_id == trunk {
                mac = Some(eni.mac);
                break;
            }
        }
        let mac = mac.ok_or("instance metadata does not list it yet")?;
        let index = host
            .link_index_by_mac(&mac)
            .await
            .map_err(|e| e.to_string())?;
        if let Ok(mut c) = self.trunk_link.0.lock() {
            *c = Some((trunk.to_owned(), index));
        }
        Ok(index)
    }

    /// A Warning event on the pod, in the background (the reply does not wait for it).
    fn warn_pod(&self, facts: &PodFacts, error: &BranchPodError) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let event = PodEvent {
            namespace: facts.namespace.clone(),
            name: facts.name.clone(),
            uid: facts.uid.clone(),
            reason: k8s::events::BRANCH_ENI_FAILED.to_owned(),
            note: error.to_string(),
        };
        tokio::spawn(async move {
            if let Err(e) = cluster.pod_event(event).await {
                tracing::warn!("pod event: {e}");
            }
        });
    }

    /// DelNetwork for a pod the datastore does not know: as upstream, the pod is read; gone
    /// is success; another pod of the same name (UID) is an error; a branch pod answers
    /// its VLAN id and address from the annotation.
    pub async fn del_unknown(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Result<UnknownPodDel, BranchPodError> {
        let Some(facts) = self.read_pod(namespace, name).await? else {
            return Ok(UnknownPodDel::PodGone);
        };
        let expected = facts.uid.clone().unwrap_or_default();
        if expected != uid {
            return Err(BranchPodError::UidMismatch {
                got: uid.to_owned(),
                expected,
            });
        }
        let Some(value) = facts.pod_eni.as_deref() else {
            return Ok(UnknownPodDel::NotBranch);
        };
        let eni =
            pod_eni::first_pod_eni(Some(value)).map_err(|source| BranchPodError::Annotation {
                pod: pod_name(namespace, name),
                source,
            })?;
        Ok(UnknownPodDel::Branch {
            vlan_id: i32::try_from(eni.vlan_id).unwrap_or_default(),
            private_ip: eni.private_ip,
        })
    }
}

/// Advertises `SecurityGroupsForPods` (and, with custom networking, `CustomNetworking`) on
/// the node's CNINode while no trunk ENI is known, on every node-loop round (upstream's
/// `tryEnableSecurityGroupsForPods` in `nodeInit` and the pool loop). The feature is added
/// only while card 0 has room for a trunk ENI (IPv4: ENIs below max ENIs minus unmanaged).
pub struct FeatureAdvertiser {
    pub cluster: Arc<dyn Cluster>,
    pub ds: SharedDatastore,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub ipv6: bool,
    pub custom_networking: bool,
    /// Card 0's ENI budget (after `MAX_ENI`) and the ENIs ipamd does not manage.
    pub max_enis: u32,
    pub unmanaged_enis: u32,
    /// The features last seen on the CNINode as wanted (nothing to do until they change).
    advertised: Option<Vec<k8s::Feature>>,
}

impl FeatureAdvertiser {
    pub fn new(
        cluster: Arc<dyn Cluster>,
        ds: SharedDatastore,
        metrics: Arc<crate::metrics::Metrics>,
        capacity: &planner::NodeCapacity,
        ipv6: bool,
        custom_networking: bool,
    ) -> Self {
        Self {
            cluster,
            ds,
            metrics,
            ipv6,
            custom_networking,
            max_enis: capacity.max_enis,
            unmanaged_enis: capacity.unmanaged_enis,
            advertised: None,
        }
    }

    /// Whether a trunk ENI is in the datastore (the controller has attached it).
    pub fn has_trunk(&self) -> bool {
        lock(&self.ds).trunk_eni().is_some()
    }

    /// The features wanted now.
    pub fn wanted(&self) -> Vec<k8s::Feature> {
        let (trunk, enis) = {
            let ds = lock(&self.ds);
            (ds.trunk_eni().is_some(), ds.enis().len() as u32)
        };
        let room = trunk_room(self.ipv6, trunk, enis, self.max_enis, self.unmanaged_enis);
        let eni_config = self
            .custom_networking
            .then(|| self.cluster.node_eni_config_name())
            .flatten();
        k8s::features::wanted_features(true, room, eni_config.as_deref())
    }

    /// One round: patch the CNINode if the wanted features changed since the last success.
    pub async fn run_once(&mut self) {
        let wanted = self.wanted();
        if self.advertised.as_ref() == Some(&wanted) || wanted.is_empty() {
            return;
        }
        match self.cluster.advertise_features(&wanted).await {
            Ok(outcome) => {
                tracing::info!(?wanted, ?outcome, "CNINode features");
                self.advertised = Some(wanted);
            }
            Err(e) => {
                tracing::warn!("advertising security groups for pods on the CNINode: {e}");
                self.metrics
                    .pod_eni_error_count
                    .with_label_values(&["tryEnableSecurityGroupsForPods"])
                    .inc();
            }
        }
    }
}

/// Room for a trunk ENI on card 0: always in IPv6 (upstream checks IPv4 only), with a
/// trunk already attached, or with fewer ENIs than max ENIs minus unmanaged ones.
pub fn trunk_room(ipv6: bool, has_trunk: bool, enis: u32, max_enis: u32, unmanaged: u32) -> bool {
    ipv6 || has_trunk || enis < max_enis.saturating_sub(unmanaged)
}

#[cfg(test)]
mod tests {
    use super::trunk_room;

    #[test]
    fn a_trunk_needs_a_free_slot_in_ipv4_only() {
        assert!(trunk_room(false, false, 2, 3, 0));
        assert!(!trunk_room(false, false, 3, 3, 0));
        assert!(
            !trunk_room(false, false, 2, 3, 1),
            "an unmanaged ENI takes a slot"
        );
        assert!(trunk_room(false, true, 3, 3, 0), "the trunk is there");
        assert!(trunk_room(true, false, 3, 3, 0));
        assert!(!trunk_room(false, false, 0, 0, 5), "no underflow");
    }
}
