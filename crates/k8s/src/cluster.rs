//! The narrow interface ipamd uses ([`Cluster`]) and its implementation on kube
//! ([`ClusterHandle`], made by [`crate::ClusterWatch::start`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};

use crate::crd::{CniNode, EniConfig, Feature};
use crate::error::K8sError;
use crate::events::{EventTarget, NodeEvent, PodEvent, event_object, pod_event_object};
use crate::features::{features_patch, merge_features};
use crate::pod_eni::{POD_ENI_ANNOTATION, PodFacts};
use crate::pod_ips::{AnnotationAction, POD_IPS_ANNOTATION, on_add, on_del};
use crate::selection::{EniConfigError, ResolvedEniConfig, resolve_eni_config};
use crate::sgp::{PodIdentity, PolicyMatch, policies_for_pod};
use crate::watch::{ApiStatus, Settings, SharedStatus, Stores};

/// A boxed future (keeps [`Cluster`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the node agent needs from Kubernetes. Reads come from the reflectors' caches and
/// never block; writes go to the API server.
pub trait Cluster: Send + Sync {
    /// This node as last seen (`None` until the API server has been reached once).
    fn node(&self) -> Option<NodeInfo>;
    /// The node's ENIConfig (custom networking), from the caches.
    fn node_eni_config(&self) -> Result<ResolvedEniConfig, EniConfigError>;
    /// The name of the ENIConfig the node's labels and annotations select (`default` when
    /// none), whether or not it exists; `None` while the Node is unknown.
    fn node_eni_config_name(&self) -> Option<String>;
    /// The SecurityGroupPolicies (in name order) that select a pod, from the cache (empty
    /// without `ENABLE_POD_ENI`).
    fn sgp_for_pod(&self, pod: &PodIdentity) -> Vec<PolicyMatch>;
    /// Health of the watches.
    fn status(&self) -> ApiStatus;
    /// `ANNOTATE_POD_IP` on ADD: set `vpc.amazonaws.com/pod-ips` to `ip`.
    fn annotate_pod_ip<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        ip: &'a str,
    ) -> BoxFuture<'a, Result<PatchOutcome, K8sError>>;
    /// `ANNOTATE_POD_IP` on DEL: set it to `""` if it still holds `released_ip`.
    fn clear_pod_ip<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        released_ip: &'a str,
    ) -> BoxFuture<'a, Result<PatchOutcome, K8sError>>;
    /// Record an event on the Node (the same reason and note at most once per window).
    fn node_event(&self, event: NodeEvent) -> BoxFuture<'_, Result<EventOutcome, K8sError>>;
    /// Record a Warning event about one pod (the same reason and note at most once per
    /// window).
    fn pod_event(&self, event: PodEvent) -> BoxFuture<'_, Result<EventOutcome, K8sError>>;
    /// One pod read from the API server (not a cache); `Ok(None)` when it does not exist.
    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodFacts>, K8sError>>;
    /// Make the node's CNINode list `features` (upstream's add-feature rule for each).
    fn advertise_features<'a>(
        &'a self,
        features: &'a [Feature],
    ) -> BoxFuture<'a, Result<PatchOutcome, K8sError>>;
    /// Wait until every watch has a complete list, at most `timeout` (upstream proceeds
    /// after 30 s without the API server). Returns whether they have.
    fn wait_synced(&self, timeout: Duration) -> BoxFuture<'_, bool>;
}

/// What is known about this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// UID.
    pub uid: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// `status.capacity.pods` (upstream's max pods), when set and an integer.
    pub max_pods: Option<u32>,
    /// Taint `node.kubernetes.io/unschedulable:NoSchedule` is present.
    pub unschedulable: bool,
}

/// Result of a write that may be unnecessary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOutcome {
    /// The object was patched.
    Patched,
    /// Already as wanted: no request sent.
    Unchanged,
    /// The object does not exist (DEL of a pod already gone): nothing to do.
    NotFound,
}

/// Result of [`Cluster::node_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Created.
    Created,
    /// The same event was sent within the window: not sent again.
    Suppressed,
}

/// [`Cluster`] on a kube client and the reflectors' stores. Cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    settings: Settings,
    stores: Stores,
    status: SharedStatus,
    sent_events: Mutex<HashMap<(String, String), Instant>>,
}

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
const CONFLICT_ATTEMPTS: u32 = 5;

impl ClusterHandle {
    pub(crate) fn new(
        client: Client,
        settings: Settings,
        stores: Stores,
        status: SharedStatus,
    ) -> Self {
        ClusterHandle {
            inner: Arc::new(Inner {
                client,
                settings,
                stores,
                status,
                sent_events: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The settings the watches were started with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn node_object(&self) -> Option<Arc<Node>> {
        self.inner
            .stores
            .node
            .get(&ObjectRef::new(&self.inner.settings.node_name))
    }

    fn eni_config_spec(&self, name: &str) -> Option<crate::crd::EniConfigSpec> {
        let store = self.inner.stores.eni_configs.as_ref()?;
        store
            .get(&ObjectRef::<EniConfig>::new(name))
            .map(|c| c.spec.clone())
    }

    async fn patch_pod(
        &self,
        namespace: &str,
        name: &str,
        released: Option<&str>,
        ip: &str,
    ) -> Result<PatchOutcome, K8sError> {
        let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), namespace);
        let what = format!("pods/{namespace}/{name}");
        let pod = match api
            .get_opt(name)
            .await
            .map_err(|e| K8sError::api("get", &what, e))?
        {
            Some(p) => p,
            None if released.is_some() => return Ok(PatchOutcome::NotFound),
            None => {
                return Err(K8sError::Api {
                    verb: "get",
                    what,
                    code: Some(404),
                    message: "pod not found".to_owned(),
                });
            }
        };
        let current = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POD_IPS_ANNOTATION))
            .map(String::as_str);
        let action = match released {
            Some(rel) => on_del(current, rel)?,
            None => on_add(current, ip),
        };
        match action {
            AnnotationAction::Skip => Ok(PatchOutcome::Unchanged),
            AnnotationAction::Patch(body) => {
                api.patch(name, &PatchParams::default(), &Patch::Merge(&body))
                    .await
                    .map_err(|e| K8sError::api("patch", &what, e))?;
                Ok(PatchOutcome::Patched)
            }
        }
    }

    async fn patch_features(&self, wanted: &[Feature]) -> Result<PatchOutcome, K8sError> {
        let node = &self.inner.settings.node_name;
        let api: Api<CniNode> = Api::all(self.inner.client.clone());
        let what = format!("cninodes/{node}");
        for _ in 0..CONFLICT_ATTEMPTS {
            let Some(cni) = api
                .get_opt(node)
                .await
                .map_err(|e| K8sError::api("get", &what, e))?
            else {
                return Err(K8sError::CniNodeMissing(node.clone()));
            };
            let Some(next) = merge_features(&cni.spec.features, wanted) else {
                return Ok(PatchOutcome::Unchanged);
            };
            let rv = cni.metadata.resource_version.clone().unwrap_or_default();
            match api
                .patch(
                    node,
                    &PatchParams::default(),
                    &Patch::Merge(&features_patch(&rv, &next)),
                )
                .await
            {
                Ok(_) => return Ok(PatchOutcome::Patched),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::debug!(node = %node, "CNINode changed meanwhile; retrying");
                }
                Err(e) => return Err(K8sError::api("patch", &what, e)),
            }
        }
        Err(K8sError::Conflict {
            node: node.clone(),
            attempts: CONFLICT_ATTEMPTS,
        })
    }

    fn event_target(&self) -> EventTarget {
        let settings = &self.inner.settings;
        EventTarget {
            node: settings.node_name.clone(),
            node_uid: self.node_object().and_then(|n| n.metadata.uid.clone()),
            pod: settings.pod_name.clone(),
        }
    }

    async fn send_event(&self, event: NodeEvent) -> Result<EventOutcome, K8sError> {
        let key = (event.reason().to_owned(), event.note());
        let target = self.event_target();
        let obj = event_object(&target, &event, k8s_openapi::jiff::Timestamp::now());
        self.create_event(key, target.namespace(), obj).await
    }

    async fn send_pod_event(&self, event: PodEvent) -> Result<EventOutcome, K8sError> {
        let key = (
            format!("{}/{}/{}", event.namespace, event.name, event.reason),
            event.note.clone(),
        );
        let target = self.event_target();
        let obj = pod_event_object(&target, &event, k8s_openapi::jiff::Timestamp::now());
        self.create_event(key, &event.namespace, obj).await
    }

    /// Creates `obj` in `namespace` unless the same `key` was sent within the window.
    async fn create_event(
        &self,
        key: (String, String),
        namespace: &str,
        obj: Event,
    ) -> Result<EventOutcome, K8sError> {
        let now = Instant::now();
        {
            let mut sent = self
                .inner
                .sent_events
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let window = self.inner.settings.event_repeat_window;
            if sent
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < window)
            {
                return Ok(EventOutcome::Suppressed);
            }
            sent.insert(key.clone(), now);
        }
        let api: Api<Event> = Api::namespaced(self.inner.client.clone(), namespace);
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => Ok(EventOutcome::Created),
            Err(e) => {
                // Not sent: allow a retry before the window ends.
                self.inner
                    .sent_events
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                Err(K8sError::api("create", format!("events/{namespace}"), e))
            }
        }
    }

    /// A live GET of one pod (the controller writes the annotation just before the pod's
    /// ADD, so no cache is trusted for it); `None` when it does not exist.
    async fn get_pod(&self, namespace: &str, name: &str) -> Result<Option<PodFacts>, K8sError> {
        let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), namespace);
        let what = format!("pods/{namespace}/{name}");
        let pod = api
            .get_opt(name)
            .await
            .map_err(|e| K8sError::api("get", &what, e))?;
        Ok(pod.map(|p| pod_facts(namespace, name, &p)))
    }
}

/// The facts of `pod` that security groups for pods needs.
fn pod_facts(namespace: &str, name: &str, pod: &Pod) -> PodFacts {
    let first_container_limits = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.limits.as_ref())
        .map(|l| l.keys().cloned().collect())
        .unwrap_or_default();
    PodFacts {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: pod.metadata.uid.clone(),
        first_container_limits,
        pod_eni: pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POD_ENI_ANNOTATION))
            .cloned(),
    }
}

fn node_info(node: &Node) -> NodeInfo {
    let meta = &node.metadata;
    let max_pods = node
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("pods"))
        .and_then(|q| q.0.parse::<u32>().ok());
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| {
            t.iter()
                .any(|t| t.key == UNSCHEDULABLE_TAINT && t.effect == "NoSchedule")
        });
    NodeInfo {
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone(),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: meta.annotations.clone().unwrap_or_default(),
        max_pods,
        unschedulable,
    }
}

impl Cluster for ClusterHandle {
    fn node(&self) -> Option<NodeInfo> {
        self.node_object().map(|n| node_info(&n))
    }

    fn node_eni_config(&self) -> Result<ResolvedEniConfig, EniConfigError> {
        let settings = &self.inner.settings;
        let Some(node) = self.node() else {
            return Err(EniConfigError::NodeUnknown {
                node: settings.node_name.clone(),
            });
        };
        resolve_eni_config(
            &settings.node_name,
            &node.labels,
            &node.annotations,
            &settings.keys,
            |name| self.eni_config_spec(name),
        )
    }

    fn node_eni_config_name(&self) -> Option<String> {
        let node = self.node()?;
        let keys = &self.inner.settings.keys;
        Some(crate::selection::select_eni_config_name(&node.labels, &node.annotations, keys).name)
    }

    fn sgp_for_pod(&self, pod: &PodIdentity) -> Vec<PolicyMatch> {
        match &self.inner.stores.sgps {
            Some(store) => {
                let all = store.state();
                policies_for_pod(all.iter().map(|p| p.as_ref()), pod)
            }
            None => Vec::new(),
        }
    }

    fn status(&self) -> ApiStatus {
        self.inner
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn annotate_pod_ip<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        ip: &'a str,
    ) -> BoxFuture<'a, Result<PatchOutcome, K8sError>> {
        Box::pin(self.patch_pod(namespace, name, None, ip))
    }

    fn clear_pod_ip<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        released_ip: &'a str,
    ) -> BoxFuture<'a, Result<PatchOutcome, K8sError>> {
        Box::pin(self.patch_pod(namespace, name, Some(released_ip), ""))
    }

    fn node_event(&self, event: NodeEvent) -> BoxFuture<'_, Result<EventOutcome, K8sError>> {
        Box::pin(self.send_event(event))
    }

    fn pod_event(&self, event: PodEvent) -> BoxFuture<'_, Result<EventOutcome, K8sError>> {
        Box::pin(self.send_pod_event(event))
    }

    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodFacts>, K8sError>> {
        Box::pin(self.get_pod(namespace, name))
    }

    fn advertise_features<'a>(
        &'a self,
        features: &'a [Feature],
    ) -> BoxFuture<'a, Result<PatchOutcome, K8sError>> {
        Box::pin(self.patch_features(features))
    }

    fn wait_synced(&self, timeout: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let stores = self.inner.stores.clone();
            let all = async move {
                let _ = stores.node.wait_until_ready().await;
                if let Some(s) = &stores.eni_configs {
                    let _ = s.wait_until_ready().await;
                }
                if let Some(s) = &stores.sgps {
                    let _ = s.wait_until_ready().await;
                }
            };
            tokio::time::timeout(timeout, all).await.is_ok()
        })
    }
}
