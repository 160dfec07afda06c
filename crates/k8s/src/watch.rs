//! Reflectors for this node's Node, the ENIConfigs and the SecurityGroupPolicies.
//!
//! kube's watcher lists, then watches from the list's resourceVersion, resumes from the last
//! event or bookmark, relists after `410 Gone`, and retries with backoff (0.8 s doubling to
//! 30 s) when the API server is away. The stores keep the last known state meanwhile, so
//! readers keep working; a relist replaces a store's content only once it is complete.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Future, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::client::Connection;
use crate::cluster::ClusterHandle;
use crate::crd::{EniConfig, SecurityGroupPolicy};
use crate::selection::SelectionKeys;

/// What the integration does on this node (from the agent's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `MY_NODE_NAME`.
    pub node_name: String,
    /// `MY_POD_NAME` (the aws-node pod; used as the events' reporting instance).
    pub pod_name: Option<String>,
    /// `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG`: watch ENIConfigs.
    pub custom_networking: bool,
    /// `ENABLE_POD_ENI`: watch SecurityGroupPolicies, advertise CNINode features.
    pub pod_eni: bool,
    /// `ENI_CONFIG_ANNOTATION_DEF` / `ENI_CONFIG_LABEL_DEF`.
    pub keys: SelectionKeys,
    /// The same event (reason and note) is not sent again within this window.
    pub event_repeat_window: Duration,
}

impl Settings {
    /// Settings for `node_name` with everything optional off.
    pub fn new(node_name: impl Into<String>) -> Self {
        Settings {
            node_name: node_name.into(),
            pod_name: None,
            custom_networking: false,
            pod_eni: false,
            keys: SelectionKeys::default(),
            event_repeat_window: Duration::from_secs(300),
        }
    }
}

/// Health of one watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchHealth {
    /// A complete list has been received at least once (the store is usable).
    pub synced: bool,
    /// The last watch call succeeded (false while the API server is away).
    pub connected: bool,
    /// The last error, if the last call failed.
    pub last_error: Option<String>,
    /// Errors seen since start.
    pub errors: u64,
    /// Complete (re)lists received since start (1 after start, +1 per 410 or reconnect relist).
    pub lists: u64,
}

/// Health of every watch this node runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiStatus {
    /// The Node watch.
    pub node: WatchHealth,
    /// The ENIConfig watch (`None` without custom networking).
    pub eni_configs: Option<WatchHealth>,
    /// The SecurityGroupPolicy watch (`None` without pod ENI).
    pub security_group_policies: Option<WatchHealth>,
}

impl ApiStatus {
    /// Every running watch has a complete list.
    pub fn synced(&self) -> bool {
        self.node.synced
            && self.eni_configs.as_ref().is_none_or(|h| h.synced)
            && self
                .security_group_policies
                .as_ref()
                .is_none_or(|h| h.synced)
    }

    /// Every running watch's last call succeeded.
    pub fn connected(&self) -> bool {
        self.node.connected
            && self.eni_configs.as_ref().is_none_or(|h| h.connected)
            && self
                .security_group_policies
                .as_ref()
                .is_none_or(|h| h.connected)
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Which {
    Node,
    EniConfigs,
    Sgps,
}

pub(crate) type SharedStatus = Arc<Mutex<ApiStatus>>;

fn update(status: &SharedStatus, which: Which, f: impl FnOnce(&mut WatchHealth)) {
    let mut guard = match status.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let health = match which {
        Which::Node => Some(&mut guard.node),
        Which::EniConfigs => guard.eni_configs.as_mut(),
        Which::Sgps => guard.security_group_policies.as_mut(),
    };
    if let Some(h) = health {
        f(h);
    }
}

/// The stores the reflectors fill.
#[derive(Clone)]
pub(crate) struct Stores {
    pub node: Store<Node>,
    pub eni_configs: Option<Store<EniConfig>>,
    pub sgps: Option<Store<SecurityGroupPolicy>>,
}

/// Starts the reflectors.
pub struct ClusterWatch;

impl ClusterWatch {
    /// Start watching (in tokio tasks) and return the handle ipamd uses plus the task running
    /// the watches (abort it to stop). Returns at once: the API server may be away; readers
    /// get "unknown" until the first list arrives (see [`ClusterHandle::wait_synced`]).
    pub fn start(conn: &Connection, settings: Settings) -> (ClusterHandle, JoinHandle<()>) {
        let client = conn.client.clone();
        let status: SharedStatus = Arc::new(Mutex::new(ApiStatus {
            node: WatchHealth::default(),
            eni_configs: settings.custom_networking.then(WatchHealth::default),
            security_group_policies: settings.pod_eni.then(WatchHealth::default),
        }));
        let mut tasks: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::new();

        let node_cfg =
            watcher::Config::default().fields(&format!("metadata.name={}", settings.node_name));
        let (node, task) = reflect(
            Api::<Node>::all(client.clone()),
            node_cfg,
            status.clone(),
            Which::Node,
        );
        tasks.push(task);
        let eni_configs = settings.custom_networking.then(|| {
            let (store, task) = reflect(
                Api::<EniConfig>::all(client.clone()),
                watcher::Config::default(),
                status.clone(),
                Which::EniConfigs,
            );
            tasks.push(task);
            store
        });
        let sgps = settings.pod_eni.then(|| {
            let (store, task) = reflect(
                Api::<SecurityGroupPolicy>::all(client.clone()),
                watcher::Config::default(),
                status.clone(),
                Which::Sgps,
            );
            tasks.push(task);
            store
        });

        let join = tokio::spawn(async move {
            futures_util::future::join_all(tasks).await;
        });
        let stores = Stores {
            node,
            eni_configs,
            sgps,
        };
        (ClusterHandle::new(client, settings, stores, status), join)
    }
}

type BoxTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

fn reflect<K>(
    api: Api<K>,
    cfg: watcher::Config,
    status: SharedStatus,
    which: Which,
) -> (Store<K>, BoxTask)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, cfg)).default_backoff();
    let task = Box::pin(stream.for_each(move |ev| {
        match ev {
            Ok(watcher::Event::InitDone) => update(&status, which, |h| {
                h.synced = true;
                h.connected = true;
                h.last_error = None;
                h.lists += 1;
            }),
            Ok(_) => update(&status, which, |h| {
                h.connected = true;
                h.last_error = None;
            }),
            Err(err) => {
                tracing::warn!(error = %err, "kubernetes watch failed; keeping the last known state and retrying");
                update(&status, which, |h| {
                    h.connected = false;
                    h.last_error = Some(err.to_string());
                    h.errors += 1;
                });
            }
        }
        futures_util::future::ready(())
    }));
    (reader, task)
}
