//! The agent: a short list of named start-up steps, then serving (docs/architecture.md,
//! "Start-up steps"):
//!
//! 1. refuse what this build does not implement (`Config::check_built`);
//! 2. discover the node: IMDS, the EC2 client, the instance type's limits (`start::discover`);
//! 3. the Kubernetes link, when `MY_NODE_NAME` is set (`cluster_link`), and the pool policy;
//! 4. bootstrap the datastore: EC2 truth, tags, checkpoint, stale pods (`start::bootstrap`);
//! 5. converge host networking (`start::host`);
//! 6. serve: gRPC, the node loop, metrics, introspection, until shutdown (`start::serve`).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use config::Config;
use ipam::FileSink;

use crate::checkpointer::Checkpointer;
use crate::cluster_link;
use crate::datastores::{CardStore, Datastores};
use crate::host_net::HostNetError;
use crate::metrics::{InProgress, Metrics, StartupFailure};
use crate::pool;
use crate::start::bootstrap::{self, BootstrapError, Bootstrapped};
use crate::start::discover::{self, DiscoverError};
use crate::start::host;
use crate::start::serve::{self, Ready, ServeError};

pub use crate::start::options::{AgentOptions, HostNetOptions, Listen};

/// Why the agent could not start or run; one variant per start-up step.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("refusing to start: {0}")]
    NotBuilt(config::ConfigError),
    #[error("metrics: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("discovering the node: {0}")]
    Discover(#[from] DiscoverError),
    #[error("Kubernetes: {0}")]
    Kubernetes(#[from] k8s::K8sError),
    #[error("configuration: {0}")]
    Policy(#[from] config::PolicyError),
    #[error("bootstrapping the datastore: {0}")]
    Bootstrap(#[from] BootstrapError),
    #[error("host networking: {0}")]
    HostNet(#[from] HostNetError),
    #[error("checkpoint {0}")]
    Checkpoint(#[from] ipam::CheckpointError),
    #[error("serving: {0}")]
    Serve(#[from] ServeError),
}

/// Starts the agent and serves until `shutdown` resolves; then writes the checkpoint.
pub async fn run(
    cfg: Config,
    opts: AgentOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    cfg.check_built().map_err(AgentError::NotBuilt)?;
    run_accepting_unbuilt(cfg, opts, shutdown).await
}

/// [`run`] without the refusal of settings this release does not ship yet: how the tests
/// of a feature still being built (security groups for pods) run the whole agent before
/// the refusal is lifted. Reached only through `crate::testing` (feature `testing`).
pub(crate) async fn run_accepting_unbuilt(
    cfg: Config,
    opts: AgentOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let metrics = Arc::new(Metrics::new(&cfg.aws.vpc_cni_version)?);
    let started = Instant::now();
    let progress = Arc::new(Mutex::new(Progress::default()));
    let result = start_and_serve(cfg, opts, shutdown, metrics.clone(), progress.clone()).await;
    let progress = progress.lock().map(|p| p.clone()).unwrap_or_default();
    if let (Err(e), false) = (&result, progress.ready) {
        let failure = match e {
            AgentError::Kubernetes(_) => StartupFailure::ApiServerConnectivity,
            _ => StartupFailure::NodeInitialization,
        };
        if !progress.node_initialised {
            metrics.observe_node_init(started.elapsed(), false);
        }
        metrics.observe_startup(started.elapsed(), progress.with_api_server, Some(failure));
    }
    result
}

/// How far start-up got (for the start-up histograms).
#[derive(Debug, Default, Clone)]
struct Progress {
    with_api_server: bool,
    node_initialised: bool,
    ready: bool,
}

fn note(progress: &Mutex<Progress>, f: impl FnOnce(&mut Progress)) {
    if let Ok(mut p) = progress.lock() {
        f(&mut p);
    }
}

/// The start-up steps in upstream's `nodeInit` order, then serving.
async fn start_and_serve(
    cfg: Config,
    opts: AgentOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: Arc<Metrics>,
    progress: Arc<Mutex<Progress>>,
) -> Result<(), AgentError> {
    let started = Instant::now();
    let init_busy = InProgress::start(&metrics, "nodeInit");
    let node = discover::discover_node(&cfg, &opts, &metrics).await?;
    let link = cluster_link::start(&cfg).await?;
    let with_api_server = link.as_ref().is_some_and(|l| l.reachable);
    note(&progress, |p| p.with_api_server = with_api_server);
    let node_max_pods = link
        .as_ref()
        .and_then(|l| l.cluster.node())
        .and_then(|n| n.max_pods);
    // Started without the Node: the pool follows it once the API server comes back.
    let max_pods_watch = match (&link, node_max_pods) {
        (Some(l), None) => Some(cluster_link::watch_max_pods(
            l.cluster.clone(),
            node.limits.max_pods,
        )),
        _ => None,
    };
    let policy = cfg.pool_policy(
        node_max_pods.unwrap_or(node.limits.max_pods),
        node.limits.prefix_delegation,
    )?;
    let host = host::open_host_net(&cfg, opts.host_network.as_ref(), &node)?;
    let mut checkpointers = Vec::new();
    let sink_for = |card: u32| {
        let path = cfg.backing_store_path(card);
        let (checkpointer, sink) = Checkpointer::new(Box::new(FileSink::new(path)));
        checkpointers.push((card, checkpointer));
        sink
    };
    let boot = bootstrap::bootstrap_datastore(&cfg, &node, &policy, sink_for).await?;
    for (_, checkpointer) in &checkpointers {
        checkpointer.write_now()?;
    }
    let capacity = serve::node_capacity(&cfg, &node, &boot, policy.prefix_delegation, &metrics);
    let other_capacities = crate::start::cards::other_card_capacities(&cfg, &node, &boot);
    let Bootstrapped {
        ds,
        other_cards,
        enis,
        unmanaged,
    } = boot;
    let stores = card_stores(ds, other_cards, checkpointers)?;
    if let Some(host) = &host {
        host::converge_host_network(host, &node, &enis, &unmanaged, &metrics).await?;
        for store in stores.iter() {
            let collapse = {
                let ds = pool::lock(&store.ds);
                crate::start::pod_rules::collapse_restored(host, &ds)
            };
            collapse.await;
        }
    }
    metrics.observe_node_init(started.elapsed(), true);
    note(&progress, |p| p.node_initialised = true);
    drop(init_busy);
    let ready = Ready {
        cfg,
        opts,
        node,
        stores,
        other_capacities,
        unmanaged,
        vpc_id: bootstrap::vpc_id(&enis),
        primary_conntrack: primary_conntrack(&enis),
        capacity,
        host,
        link,
        policy,
        max_pods_watch,
        metrics: metrics.clone(),
    };
    serve::serve(ready, shutdown, || {
        metrics.observe_startup(started.elapsed(), with_api_server, None);
        note(&progress, |p| p.ready = true);
    })
    .await?;
    Ok(())
}

/// The datastores with their checkpoint writers, by card.
fn card_stores(
    ds: ipam::Datastore,
    other_cards: Vec<(u32, ipam::Datastore)>,
    checkpointers: Vec<(u32, Checkpointer)>,
) -> Result<Datastores, AgentError> {
    let all = std::iter::once((0, ds)).chain(other_cards);
    let mut stores = Vec::new();
    for (card, ds) in all {
        let Some((_, checkpointer)) = checkpointers.iter().find(|(c, _)| *c == card) else {
            return Err(AgentError::Bootstrap(BootstrapError::NoCheckpointer(card)));
        };
        stores.push(CardStore {
            card,
            ds: Arc::new(Mutex::new(ds)),
            checkpointer: checkpointer.clone(),
        });
    }
    Ok(Datastores::new(stores))
}

/// The primary ENI's (device 0, card 0) connection tracking timeouts, for new ENIs
/// (upstream's `DescribeAllENIs` → `setConnectionTrackingSettings`).
fn primary_conntrack(enis: &[aws::EniDescription]) -> Option<aws::ConnTrack> {
    let primary = enis.iter().find(|e| {
        e.attachment
            .as_ref()
            .is_some_and(|a| a.device_index == 0 && a.network_card == 0)
    })?;
    let ct = primary.conntrack?;
    tracing::debug!(
        tcp_established_timeout = ?ct.tcp_established_timeout,
        udp_stream_timeout = ?ct.udp_stream_timeout,
        udp_timeout = ?ct.udp_timeout,
        "connection tracking settings from the primary ENI"
    );
    Some(ct)
}
