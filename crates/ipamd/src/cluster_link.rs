//! The agent's link to the Kubernetes API (crate `k8s`): connecting, the reflectors, the
//! node's max pods, the ENIConfig for new ENIs (custom networking), CNINode features,
//! `ANNOTATE_POD_IP` and Node events for failures an operator must act on.
//!
//! Without `MY_NODE_NAME` (the downward API sets it in the DaemonSet) the agent runs
//! without the API: no custom networking, no annotations, no events. That is how the demo
//! node and most tests run.

use std::sync::Arc;
use std::time::Duration;

use config::Config;
use k8s::{Cluster, ClusterWatch, Connection, NodeEvent, SelectionKeys, Settings};

use crate::pool::GrowthBlocker;

/// How long start-up waits for the first lists (upstream proceeds after 30 s).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// A running link: the handle and the reflectors' task.
pub struct ClusterLink {
    pub cluster: Arc<dyn Cluster>,
    pub task: tokio::task::JoinHandle<()>,
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
    let (handle, task) = ClusterWatch::start(&conn, settings);
    let cluster: Arc<dyn Cluster> = Arc::new(handle);
    if !cluster.wait_synced(SYNC_TIMEOUT).await {
        tracing::warn!(
            url = conn.url(),
            "the Kubernetes API server did not answer within {SYNC_TIMEOUT:?}; continuing with what is known"
        );
    }
    Ok(Some(ClusterLink { cluster, task }))
}

/// The Node event for a growth blocker, if it is one an operator must act on.
pub fn event_for(blocker: &GrowthBlocker, subnet: &str, max_enis: u32) -> Option<NodeEvent> {
    match blocker {
        GrowthBlocker::SubnetExhausted => Some(NodeEvent::SubnetExhausted {
            subnet: subnet.to_string(),
            action: "CreateNetworkInterface/AssignPrivateIpAddresses".into(),
        }),
        GrowthBlocker::EniLimitReached => Some(NodeEvent::EniLimitReached { max_enis }),
        GrowthBlocker::Unauthorized(action) => Some(NodeEvent::MissingIamPermissions {
            action: action.clone(),
        }),
        GrowthBlocker::EniConfig(detail) => Some(NodeEvent::EniConfigMissing {
            detail: detail.clone(),
        }),
        GrowthBlocker::Throttled | GrowthBlocker::Other(_) => None,
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
