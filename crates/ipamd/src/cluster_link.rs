//! The agent's link to the Kubernetes API (crate `k8s`): connecting, the reflectors, the
//! node's max pods, the ENIConfig for new ENIs (custom networking), CNINode features,
//! `ANNOTATE_POD_IP` and Node events for failures an operator must act on.
//!
//! Without `MY_NODE_NAME` (the downward API sets it in the DaemonSet) the agent runs
//! without the API: no custom networking, no annotations, no events. That is how the demo
//! node and most tests run.
//!
//! Reaching the API server at start (upstream's `_main` in `cmd/aws-k8s-agent/main.go`,
//! docs/kubernetes.md "Start without the API server"): when security groups for pods,
//! custom networking or `ANNOTATE_POD_IP` is on, start-up waits until `GET /version`
//! answers; otherwise it tries for 30 s and goes on without, the reflectors reconnecting in
//! the background and max pods coming from the limits table until the Node is read.

use std::sync::Arc;
use std::time::Duration;

use config::Config;
use k8s::{Cluster, ClusterWatch, Connection, NodeEvent, SelectionKeys, Settings};

use crate::pool::GrowthBlocker;

/// How long start-up waits for the first lists (upstream proceeds after 30 s).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a required API server is asked (upstream's `CheckAPIServerConnectivity`: 2 s).
pub const REQUIRED_POLL: Duration = Duration::from_secs(2);

/// How often an optional API server is asked at start, and for how long (upstream's
/// `pollInterval` and `pollTimeout`).
pub const OPTIONAL_POLL: Duration = Duration::from_secs(5);
pub const OPTIONAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The time one `GET /version` may take (upstream's `restCfgTimeout`).
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// A running link: the handle and the reflectors' task.
pub struct ClusterLink {
    pub cluster: Arc<dyn Cluster>,
    pub task: tokio::task::JoinHandle<()>,
    /// The API server answered at start (upstream's `withApiServer`, the start-up
    /// histogram's `with_api_server` label).
    pub reachable: bool,
}

/// Connects and starts the reflectors, or `None` without `MY_NODE_NAME`. A connection that
/// cannot even be configured is an error (the operator set something wrong); an API
/// server that does not answer is not (the agent serves pods with what it has).
pub async fn start(cfg: &Config) -> Result<Option<ClusterLink>, k8s::K8sError> {
    let Some(node_name) = cfg.kubernetes.node_name.clone().filter(|n| !n.is_empty()) else {
        tracing::info!("MY_NODE_NAME is not set: running without the Kubernetes API");
        return Ok(None);
    };
    let endpoint = cfg.kubernetes.cluster_endpoint.as_deref();
    let conn = match Connection::infer(endpoint).await {
        Ok(c) => c,
        // No service account and no kubeconfig, but an explicit endpoint: a plain URL
        // without credentials (the demo node and tests talk to a local API server).
        Err(e) => match endpoint.filter(|e| !e.is_empty()) {
            Some(url) => {
                tracing::info!("Kubernetes credentials not found ({e}); using {url} as is");
                Connection::from_url(url)?
            }
            None => return Err(e),
        },
    };
    let mut settings = Settings::new(node_name);
    settings.pod_name = cfg.kubernetes.pod_name.clone();
    settings.custom_networking = cfg.eni.custom_networking;
    settings.pod_eni = cfg.eni.pod_eni;
    settings.keys = SelectionKeys {
        annotation: cfg.eni.eni_config_annotation_def.clone(),
        label: cfg.eni.eni_config_label_def.clone(),
    };
    let reachable = if cfg.requires_api_server_at_startup() {
        tracing::info!(
            "security groups for pods, custom networking or pod IP annotation is on: waiting for the API server"
        );
        wait_for_api_server(&conn, REQUIRED_POLL, None).await?;
        true
    } else {
        tracing::info!("waiting up to {OPTIONAL_TIMEOUT:?} for the API server");
        wait_for_api_server(&conn, OPTIONAL_POLL, Some(OPTIONAL_TIMEOUT)).await?
    };
    let (handle, task) = ClusterWatch::start(&conn, settings);
    let cluster: Arc<dyn Cluster> = Arc::new(handle);
    if !reachable {
        tracing::warn!(
            url = conn.url(),
            "proceeding without the API server; the reflectors keep reconnecting in the background"
        );
    } else if !cluster.wait_synced(SYNC_TIMEOUT).await {
        tracing::warn!(
            url = conn.url(),
            "the Kubernetes API server did not list within {SYNC_TIMEOUT:?}; continuing with what is known"
        );
    }
    Ok(Some(ClusterLink {
        cluster,
        task,
        reachable,
    }))
}

/// Asks `GET /version` every `every` until it answers: `Ok(true)`. With a `limit`, gives up
/// after it: `Ok(false)`. A server that answers with an HTTP error (bad credentials, RBAC)
/// is an error at once, as upstream's `CheckAPIServerConnectivity` exits on non-timeout
/// errors; a server that cannot be reached (refused, timed out) is asked again.
pub async fn wait_for_api_server(
    conn: &Connection,
    every: Duration,
    limit: Option<Duration>,
) -> Result<bool, k8s::K8sError> {
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    loop {
        match tokio::time::timeout(VERSION_TIMEOUT, conn.server_version()).await {
            Ok(Ok(version)) => {
                tracing::info!(url = conn.url(), %version, "API server connectivity established");
                return Ok(true);
            }
            Ok(Err(e)) if e.status_code().is_some() => return Err(e),
            Ok(Err(e)) => tracing::warn!(url = conn.url(), "unable to reach the API server: {e}"),
            Err(_) => tracing::warn!(
                url = conn.url(),
                "unable to reach the API server: no answer within {VERSION_TIMEOUT:?}"
            ),
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() + every > d) {
            return Ok(false);
        }
        tokio::time::sleep(every).await;
    }
}

/// Max pods as it changes, and the task that follows the Node.
pub type MaxPodsWatch = (
    tokio::sync::watch::Receiver<u32>,
    tokio::task::JoinHandle<()>,
);

/// Max pods from the Node once the API server lists it (upstream's
/// `SetAPIServerConnectivity(true)` after a start without the API server): logs the change
/// from `fallback` (the limits table, as `eni-max-pods.txt`) and publishes it on the
/// returned channel.
pub fn watch_max_pods(cluster: Arc<dyn Cluster>, fallback: u32) -> MaxPodsWatch {
    let (tx, rx) = tokio::sync::watch::channel(fallback);
    let task = tokio::spawn(async move {
        loop {
            if let Some(max_pods) = cluster.node().and_then(|n| n.max_pods) {
                if max_pods != fallback {
                    tracing::info!(
                        "updated max pods from {fallback} to {max_pods} (Node capacity)"
                    );
                }
                let _ = tx.send(max_pods);
                return;
            }
            // Listed, but no Node yet or one without `capacity.pods` (a kubelet still
            // registering): look again later. Without this pause a synced cache answers at
            // once and the loop spins on a core without ever yielding.
            if cluster.wait_synced(OPTIONAL_POLL).await {
                tokio::time::sleep(OPTIONAL_POLL).await;
            }
        }
    });
    (rx, task)
}

/// The Node event for a growth blocker, if it is one an operator must act on.
pub fn event_for(blocker: &GrowthBlocker, subnet: &str, max_enis: u32) -> Option<NodeEvent> {
    match blocker {
        GrowthBlocker::SubnetExhausted => Some(NodeEvent::SubnetExhausted {
            subnet: subnet.to_string(),
            action: "CreateNetworkInterface/AssignPrivateIpAddresses".into(),
        }),
        GrowthBlocker::EniLimitReached => Some(NodeEvent::EniLimitReached { max_enis }),
        GrowthBlocker::EniConfig(detail) => Some(NodeEvent::EniConfigMissing {
            detail: detail.clone(),
        }),
        // Refused EC2 calls, the pool's included, are reported by `crate::iam_events`.
        GrowthBlocker::Unauthorized(_) | GrowthBlocker::Throttled | GrowthBlocker::Other(_) => None,
    }
}

/// Sends an event in the background (a slow API server never holds up the pool).
pub fn send_event(cluster: &Arc<dyn Cluster>, event: NodeEvent) {
    let cluster = cluster.clone();
    tokio::spawn(async move {
        if let Err(e) = cluster.node_event(event).await {
            tracing::warn!("node event: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use k8s::{
        ApiStatus, BoxFuture, EniConfigError, EventOutcome, Feature, K8sError, NodeInfo,
        PatchOutcome, PodEvent, PodFacts, PodIdentity, PolicyMatch, ResolvedEniConfig,
    };

    use super::*;

    /// A synced cache whose Node has no `capacity.pods` until `node` has been read
    /// `answer_after` times.
    struct NodeWithoutCapacity {
        reads: AtomicU32,
        answer_after: u32,
    }

    impl Cluster for NodeWithoutCapacity {
        fn node(&self) -> Option<NodeInfo> {
            let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
            let max_pods = (n >= self.answer_after).then_some(17);
            Some(NodeInfo {
                max_pods,
                ..NodeInfo::default()
            })
        }
        fn node_eni_config(&self) -> Result<ResolvedEniConfig, EniConfigError> {
            unimplemented!("not used by the max-pods watch")
        }
        fn node_eni_config_name(&self) -> Option<String> {
            None
        }
        fn sgp_for_pod(&self, _: &PodIdentity) -> Vec<PolicyMatch> {
            Vec::new()
        }
        fn status(&self) -> ApiStatus {
            unimplemented!("not used by the max-pods watch")
        }
        fn annotate_pod_ip<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<PatchOutcome, K8sError>> {
            unimplemented!("not used by the max-pods watch")
        }
        fn clear_pod_ip<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<PatchOutcome, K8sError>> {
            unimplemented!("not used by the max-pods watch")
        }
        fn node_event(&self, _: NodeEvent) -> BoxFuture<'_, Result<EventOutcome, K8sError>> {
            unimplemented!("not used by the max-pods watch")
        }
        fn pod_event(&self, _: PodEvent) -> BoxFuture<'_, Result<EventOutcome, K8sError>> {
            unimplemented!("not used by the max-pods watch")
        }
        fn pod<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<PodFacts>, K8sError>> {
            unimplemented!("not used by the max-pods watch")
        }
        fn advertise_features<'a>(
            &'a self,
            _: &'a [Feature],
        ) -> BoxFuture<'a, Result<PatchOutcome, K8sError>> {
            unimplemented!("not used by the max-pods watch")
        }
        fn wait_synced(&self, _: Duration) -> BoxFuture<'_, bool> {
            Box::pin(async { true })
        }
    }

    /// A Node still without capacity is looked at once per `OPTIONAL_POLL`, not in a loop
    /// that holds a core (it used to spin until the kubelet set the capacity).
    #[tokio::test(start_paused = true)]
    async fn a_node_without_capacity_is_polled_not_spun_on() {
        let cluster = Arc::new(NodeWithoutCapacity {
            reads: AtomicU32::new(0),
            answer_after: 1_000,
        });
        let (rx, task) = watch_max_pods(cluster.clone(), 29);
        tokio::time::sleep(OPTIONAL_POLL * 3 + Duration::from_millis(10)).await;
        let reads = cluster.reads.load(Ordering::SeqCst);
        assert!(
            (3..=5).contains(&reads),
            "{reads} reads of the Node in three poll periods"
        );
        assert_eq!(
            *rx.borrow(),
            29,
            "the fallback until the Node says otherwise"
        );
        task.abort();
    }
}
