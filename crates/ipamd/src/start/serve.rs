//! Start-up step 5, serve: the gRPC services on the Unix socket, the node loop (pool tick,
//! reconcile, security-group and VPC CIDR refresh), the leaked-ENI cleanup, the Kubernetes
//! reflectors, metrics and introspection; until shutdown, then the checkpoint as it stands.

use std::future::Future;
use std::sync::Arc;

use config::{CardFacts, Config};
use planner::NodeCapacity;
use tokio::sync::{Notify, watch};

use crate::branch_pods::{BranchPods, FeatureAdvertiser};
use crate::cluster_link;
use crate::cni_server::{CniService, ReplyFacts};
use crate::datastores::Datastores;
use crate::introspect::{self, Introspection};
use crate::metrics::Metrics;
use crate::node_loop::{self, NodeLoop, SecurityGroupRefresh, VpcCidrRefresh};
use crate::pool::{self, PoolManager, SharedDatastore};
use crate::reconcile::{ReconcileFacts, Reconciler};
use crate::stale_pods;
use crate::start::bootstrap::Bootstrapped;
use crate::start::cards;
use crate::start::discover::{Node, max_ips_per_eni};
use crate::start::options::Listen;
pub use crate::start::ready::Ready;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("checkpoint at shutdown: {0}")]
    Checkpoint(#[from] ipam::CheckpointError),
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] rpc::reflection::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Tasks aborted when dropped (a dropped agent future leaves nothing running behind it).
#[derive(Default)]
pub struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    fn spawn(&mut self, f: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(f));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// The ENI budget of card 0, published as `awscni_eni_max` and `awscni_ip_max`.
pub fn node_capacity(
    cfg: &Config,
    node: &Node,
    boot: &Bootstrapped,
    prefix_delegation: bool,
    metrics: &Metrics,
) -> NodeCapacity {
    let unmanaged = boot.unmanaged_on(0);
    let capacity = cfg.node_capacity(&CardFacts {
        network_card: 0,
        instance_eni_limit: node.limits.eni_limit,
        ipv4_per_eni: node.limits.ipv4_per_eni,
        unmanaged_enis: unmanaged,
        trunking_compatible: node.limits.trunking_compatible,
        has_trunk: boot.ds.trunk_eni().is_some(),
    });
    let managed_enis = capacity.max_enis.saturating_sub(unmanaged);
    metrics.eni_max.set(i64::from(managed_enis));
    let per_eni = max_ips_per_eni(node.limits.ipv4_per_eni, prefix_delegation);
    metrics.ip_max.set(i64::from(per_eni * managed_enis));
    capacity
}

/// Serves until `shutdown`; `serving` runs once the socket and servers are bound.
pub async fn serve(
    mut ready: Ready,
    shutdown: impl Future<Output = ()> + Send + 'static,
    serving: impl FnOnce(),
) -> Result<(), ServeError> {
    let stores = ready.stores.clone();
    let cluster = ready.link.as_ref().map(|l| l.cluster.clone());
    let capacity = (0, ready.capacity);
    let manager = cards::pool_manager(&ready, stores.primary(), capacity, cluster.as_ref());
    let shared = Shared {
        stores: stores.clone(),
        blocker: manager.blocker(),
        kick: Arc::new(Notify::new()),
        waiting: manager.waiting_pods(),
        cluster,
    };
    let service = cni_service(&ready, &shared);
    let listener = rpc::server::bind_unix(&ready.opts.grpc_socket)
        .map_err(io(format!("binding {}", ready.opts.grpc_socket.display())))?;
    let (_health_reporter, health) = rpc::health::serving().await;
    let (reflection_v1, reflection_v1alpha) = rpc::reflection::ipamd_services()?;
    let writers: Vec<_> = stores
        .iter()
        .map(|s| s.checkpointer.spawn_writer())
        .collect();
    let background = spawn_background(&mut ready, &shared, &service, manager);
    let servers = spawn_servers(&ready, &shared).await?;
    let mut sweep = Tasks::default();
    if let Some(host) = &ready.host {
        for store in stores.iter() {
            let restored = pool::lock(&store.ds).checkpoint();
            sweep.spawn(stale_pods::sweep_after_start(
                store.ds.clone(),
                host.clone(),
                restored,
            ));
        }
    }
    tracing::info!(instance = %ready.node.id.instance_id, socket = %ready.opts.grpc_socket.display(), "ipamd serving");
    serving();
    let served = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(rpc::CniBackendServer::new(service.clone()))
        .add_service(rpc::ConfigServerBackendServer::new(service))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(listener, shutdown)
        .await;
    drop(background);
    drop(sweep);
    drop(servers);
    drop(writers);
    // Nothing a running pod holds is released: write the checkpoints as they stand.
    stores.write_all_now()?;
    served?;
    Ok(())
}

/// State the gRPC handlers and the node loop share.
struct Shared {
    /// Every managed card's datastore, card 0 first.
    stores: Datastores,
    blocker: watch::Receiver<Option<pool::GrowthBlocker>>,
    kick: Arc<Notify>,
    waiting: Arc<crate::waiting_pods::WaitingPods>,
    cluster: Option<Arc<dyn k8s::Cluster>>,
}

impl Shared {
    /// Card 0's datastore.
    fn ds(&self) -> &SharedDatastore {
        &self.stores.primary().ds
    }
}

fn cni_service(ready: &Ready, shared: &Shared) -> CniService {
    let (cfg, node) = (&ready.cfg, &ready.node);
    let net = &cfg.networking;
    CniService {
        stores: shared.stores.clone(),
        facts: Arc::new(ReplyFacts {
            ipv6: cfg.is_ipv6(),
            vpc_cidrs: match &node.ipv6 {
                Some(v6) => v6.vpc_cidrs.iter().map(ToString::to_string).collect(),
                None => node.vpc_cidrs.iter().map(ToString::to_string).collect(),
            },
            exclude_snat_cidrs: net
                .exclude_snat_cidrs
                .iter()
                .map(ToString::to_string)
                .collect(),
            external_snat: net.external_snat,
            network_policy_mode: net
                .network_policy_mode
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
            multi_nic: cfg.eni.multi_nic,
            instance_id: node.id.instance_id.clone(),
            region: node.id.region.clone(),
            node_ipv4: node.id.local_ipv4.to_string(),
            node_ipv6: node
                .ipv6
                .as_ref()
                .map(|v6| v6.primary_ip.to_string())
                .unwrap_or_default(),
        }),
        metrics: ready.metrics.clone(),
        blocker: shared.blocker.clone(),
        kick: shared.kick.clone(),
        waiting: shared.waiting.clone(),
        annotate: shared
            .cluster
            .clone()
            .filter(|_| cfg.kubernetes.annotate_pod_ip)
            .map(crate::cni_server::PodIpAnnotator::new),
        branch: cfg.eni.pod_eni.then(|| {
            Arc::new(BranchPods::new(
                shared.cluster.clone(),
                shared.ds().clone(),
                node.imds.clone(),
                ready.host.clone(),
                cfg.is_ipv6(),
            ))
        }),
    }
}

/// Custom networking: say which ENIConfig new ENIs use (log and a Normal event).
fn announce_eni_config(cfg: &Config, cluster: Option<&Arc<dyn k8s::Cluster>>) {
    let Some(c) = cluster.filter(|_| cfg.eni.custom_networking) else {
        return;
    };
    match c.node_eni_config() {
        Ok(r) => {
            tracing::info!(name = %r.name, subnet = %r.spec.subnet, "ENIConfig for new ENIs");
            let event = k8s::NodeEvent::EniConfigSelected {
                name: r.name.clone(),
                subnet: r.spec.subnet.clone(),
            };
            cluster_link::send_event(c, event);
        }
        Err(e) => tracing::error!("custom networking: {e}"),
    }
}

/// The node loop, the reflectors' task and the leaked-ENI cleanup.
fn spawn_background(
    ready: &mut Ready,
    shared: &Shared,
    service: &CniService,
    manager: PoolManager<aws::sdk_ec2::SdkEc2>,
) -> Tasks {
    announce_eni_config(&ready.cfg, shared.cluster.as_ref());
    if ready.cfg.is_ipv6() {
        return spawn_ipv6_background(ready, shared);
    }
    let (cfg, node) = (&ready.cfg, &ready.node);
    let provisioning = !cfg.provisioning_disabled();
    let imds = node.imds.clone();
    let reconciler_facts = ReconcileFacts {
        instance_id: node.id.instance_id.clone(),
        manage_untagged: cfg.eni.manage_untagged_eni,
        provisioning,
        cluster_name: cfg.eni.cluster_name.clone(),
        additional_tags: cfg.eni.additional_eni_tags.clone(),
    };
    let mut reconciler = Reconciler::new(
        node.ec2.clone(),
        imds.clone(),
        shared.ds().clone(),
        reconciler_facts.clone(),
        ready.metrics.clone(),
        ready.unmanaged.clone(),
    );
    if let Some(host) = &ready.host {
        reconciler = reconciler.with_host_network(host.clone());
    }
    let az = &node.id.availability_zone;
    if let Some(x) = crate::subnet_exclusion::SubnetExclusion::for_node(cfg, &ready.vpc_id, az) {
        reconciler = reconciler.with_subnet_exclusion(x);
    }
    let security_groups = (provisioning && !cfg.eni.custom_networking).then(|| {
        let mut current = node.security_groups.clone();
        current.sort();
        SecurityGroupRefresh {
            primary_mac: node.id.primary_mac.clone(),
            current,
        }
    });
    let vpc_cidrs = VpcCidrRefresh::new(
        node.id.primary_mac.clone(),
        &node.vpc_cidrs,
        service.facts.vpc_cidrs.clone(),
        ready.host.clone(),
    );
    let other_cards = cards::other_card_work(ready, shared.cluster.as_ref(), &reconciler_facts);
    let mut tasks = Tasks::default();
    tasks.spawn(
        NodeLoop {
            manager,
            reconciler,
            other_cards,
            stores: shared.stores.clone(),
            ec2: node.ec2.clone(),
            imds,
            ds: shared.ds().clone(),
            metrics: ready.metrics.clone(),
            blocker: shared.blocker.clone(),
            kick: shared.kick.clone(),
            provisioning,
            security_groups,
            vpc_cidrs: Some(vpc_cidrs),
            timers: ready.opts.timers.clone(),
            cluster: shared.cluster.clone(),
            wait_for_trunk: cfg.eni.pod_eni,
            features: shared.cluster.clone().filter(|_| cfg.eni.pod_eni).map(|c| {
                FeatureAdvertiser::new(
                    c,
                    shared.ds().clone(),
                    ready.metrics.clone(),
                    &ready.capacity,
                    false,
                    cfg.eni.custom_networking,
                )
            }),
        }
        .run(),
    );
    if let Some(cluster) = &shared.cluster {
        tasks.0.push(crate::iam_events::spawn(
            ready.metrics.clone(),
            cluster.clone(),
        ));
    }
    if let Some(link) = ready.link.take() {
        tasks.0.push(link.task);
    }
    if let Some((_, task)) = ready.max_pods_watch.take() {
        tasks.0.push(task);
    }
    if !cfg.leaked_eni_cleanup_disabled() {
        tasks.0.push(node_loop::spawn_leaked_eni_cleanup(
            node.ec2.clone(),
            node.id.instance_id.clone(),
            ready.vpc_id.clone(),
            cfg.eni.cluster_name.clone(),
            &ready.opts.timers,
            ready.metrics.clone(),
        ));
    }
    tasks
}

/// IPv6 cluster: no pool loop and no address reconciliation (upstream returns from
/// `StartNodeIPPoolManager`); gauges and the EC2-confirmed prefix check instead
/// (`ipv6_loop`), plus the Kubernetes link's tasks.
fn spawn_ipv6_background(ready: &mut Ready, shared: &Shared) -> Tasks {
    let mut tasks = Tasks::default();
    let pod_eni = ready.cfg.eni.pod_eni.then(|| crate::ipv6_loop::PodEni {
        features: shared.cluster.clone().map(|c| {
            FeatureAdvertiser::new(
                c,
                shared.ds().clone(),
                ready.metrics.clone(),
                &ready.capacity,
                true,
                ready.cfg.eni.custom_networking,
            )
        }),
        host: ready.host.clone(),
    });
    tasks.spawn(crate::ipv6_loop::run(
        ready.node.ec2.clone(),
        ready.stores.primary().ds.clone(),
        ready.metrics.clone(),
        ready.node.id.instance_id.clone(),
        !ready.cfg.provisioning_disabled(),
        ready.opts.timers.clone(),
        pod_eni,
    ));
    if let Some(link) = ready.link.take() {
        tasks.0.push(link.task);
    }
    if let Some((_, task)) = ready.max_pods_watch.take() {
        tasks.0.push(task);
    }
    tasks
}

/// Metrics and introspection listeners.
async fn spawn_servers(ready: &Ready, shared: &Shared) -> Result<Tasks, ServeError> {
    let mut servers = Tasks::default();
    if let Some(addr) = ready.opts.metrics_addr {
        let m = ready.metrics.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = m.clone();
                async move { m.render().unwrap_or_else(|e| format!("# error: {e}\n")) }
            }),
        );
        serve_http(&Listen::Tcp(addr), router, &mut servers).await?;
    }
    if let Some(listen) = &ready.opts.introspection_addr {
        let cfg = &ready.cfg;
        let router = introspect::router(Introspection {
            datastores: shared.stores.by_card(),
            ipamd_env: serde_json::to_value(cfg.ipamd_env_settings()).unwrap_or_default(),
            networkutils_env: serde_json::to_value(cfg.network_utils_env_settings())
                .unwrap_or_default(),
            cluster: shared.cluster.clone(),
        });
        serve_http(listen, router, &mut servers).await?;
    }
    Ok(servers)
}

/// Binds `listen` and serves `router` on it until the task is aborted. A stale socket file
/// left by a previous run is replaced (upstream leaves it and then cannot bind).
async fn serve_http(
    listen: &Listen,
    router: axum::Router,
    tasks: &mut Tasks,
) -> Result<(), ServeError> {
    match listen {
        Listen::Tcp(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(io(format!("binding {listen}")))?;
            tasks.spawn(async move {
                let _ = axum::serve(l, router).await;
            });
        }
        Listen::Unix(path) => {
            use std::os::unix::fs::FileTypeExt;
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(path).map_err(io(format!("removing stale {listen}")))?;
            }
            let l =
                tokio::net::UnixListener::bind(path).map_err(io(format!("binding {listen}")))?;
            tasks.spawn(async move {
                let _ = axum::serve(l, router).await;
            });
        }
    }
    Ok(())
}
