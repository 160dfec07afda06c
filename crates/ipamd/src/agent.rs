//! The agent's start-up and run loop: configuration → IMDS identity → EC2 client →
//! datastore from EC2 truth + checkpoint → gRPC on the Unix socket → pool loop → metrics and
//! introspection. (Host networking and the Kubernetes watches join with their issues.)

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws::{Ec2, Ec2Settings, Imds};
use config::{CardFacts, Config};
use ipam::{Datastore, DatastoreConfig, FileSink};
use planner::PoolPolicy;
use tokio::sync::Notify;

use crate::cluster_link;
use crate::cni_server::{CniService, ReplyFacts};
use crate::host_net::{HostNet, HostNetError, HostNetSettings};
use crate::introspect::{self, Introspection};
use crate::metrics::{InProgress, Metrics, StartupFailure};
use crate::node;
use crate::node_loop::{self, AgentTimers, NodeLoop, SecurityGroupRefresh};
use crate::pool::{self, EniConfigSource, NodeFacts, PoolManager, SharedDatastore};
use crate::reconcile::{ReconcileFacts, Reconciler};
use crate::stale_pods;

/// Where the agent listens (fixed upstream; overridable for tests and the demo node).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub grpc_socket: PathBuf,
    /// `None` when `DISABLE_METRICS`.
    pub metrics_addr: Option<SocketAddr>,
    /// `None` when `DISABLE_INTROSPECTION`.
    pub introspection_addr: Option<Listen>,
    /// IMDS endpoint (else `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else link-local).
    pub imds_endpoint: Option<String>,
    /// Static AWS credentials (tests and the demo); `None` uses the default chain.
    pub static_credentials: Option<(String, String)>,
    /// Pool tick, reconcile, security-group refresh and leaked-ENI cleanup periods.
    pub timers: AgentTimers,
    /// Host networking (routes, rules, SNAT); `None` leaves the kernel alone (tests).
    pub host_network: Option<HostNetOptions>,
}

/// An HTTP listener: TCP, or a Unix socket (`INTROSPECTION_BIND_ADDRESS=unix:<path>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Self {
        Listen::Tcp(addr)
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Binds `listen` and serves `router` on it until the task is aborted. A stale socket file
/// left by a previous run is replaced (upstream leaves it and then cannot bind).
async fn serve_http(
    listen: &Listen,
    router: axum::Router,
    tasks: &mut Tasks,
) -> Result<(), AgentError> {
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

/// Where and how patiently host networking runs.
#[derive(Debug, Clone)]
pub struct HostNetOptions {
    /// The node's network namespace (the demo node); `None` = the agent's own.
    pub netns: Option<PathBuf>,
    /// Waiting for a hot-plugged ENI link: attempts and pause (upstream: 5 × 3 s).
    pub link_attempts: u32,
    pub link_interval: Duration,
}

impl Default for HostNetOptions {
    fn default() -> Self {
        Self {
            netns: None,
            link_attempts: 5,
            link_interval: Duration::from_secs(3),
        }
    }
}

/// Why the agent could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("instance metadata: {0}")]
    Imds(aws::AwsError),
    #[error("EC2: {0}")]
    Ec2(aws::AwsError),
    #[error("instance type {0:?} is in neither the limits table nor DescribeInstanceTypes")]
    UnknownInstanceType(String),
    #[error("configuration: {0}")]
    Policy(#[from] config::PolicyError),
    #[error("refusing to start: {0}")]
    NotBuilt(config::ConfigError),
    #[error("tagging ENI {eni}: {source}")]
    Tagging { eni: String, source: aws::AwsError },
    #[error("datastore: {0}")]
    Datastore(#[from] ipam::DatastoreError),
    #[error("checkpoint {0}")]
    Checkpoint(#[from] ipam::CheckpointError),
    #[error("metrics: {0}")]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("host networking: {0}")]
    HostNet(#[from] HostNetError),
    #[error("Kubernetes: {0}")]
    Kubernetes(#[from] k8s::K8sError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Io { what, source }
}

/// Starts the agent and serves until `shutdown` resolves; then writes the checkpoint.
pub async fn run(
    cfg: Config,
    opts: AgentOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    cfg.check_built().map_err(AgentError::NotBuilt)?;
    let metrics = Arc::new(Metrics::new(&cfg.aws.vpc_cni_version)?);
    let started = Instant::now();
    let mut progress = Progress::default();
    let result = start_and_serve(cfg, opts, shutdown, metrics.clone(), &mut progress).await;
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
#[derive(Debug, Default)]
struct Progress {
    with_api_server: bool,
    node_initialised: bool,
    ready: bool,
}

async fn start_and_serve(
    cfg: Config,
    opts: AgentOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: Arc<Metrics>,
    progress: &mut Progress,
) -> Result<(), AgentError> {
    let started = Instant::now();
    let init_busy = InProgress::start(&metrics, "nodeInit");
    let imds = aws::imds_client(opts.imds_endpoint.as_deref(), metrics.clone())
        .map_err(AgentError::Imds)?;
    let id = imds.identity().await.map_err(AgentError::Imds)?;
    let primary = imds.eni(&id.primary_mac).await.map_err(AgentError::Imds)?;
    let groups = imds
        .security_group_ids(&id.primary_mac)
        .await
        .map_err(AgentError::Imds)?;
    let vpc_cidrs = imds
        .vpc_ipv4_cidrs(&id.primary_mac)
        .await
        .map_err(AgentError::Imds)?;

    let mut settings = Ec2Settings::new(&id.region);
    settings.endpoint = cfg.aws.ec2_endpoint.clone().or(settings.endpoint);
    settings.http_timeout = cfg.aws.http_timeout;
    settings.static_credentials = opts.static_credentials.clone();
    let ec2 = Arc::new(aws::ec2_client(&settings, metrics.clone()).await);

    let limits = node_limits(ec2.as_ref(), &id.instance_type).await?;
    // The Kubernetes API (when MY_NODE_NAME is set): the node's max pods, ENIConfigs.
    let link = cluster_link::start(&cfg).await?;
    progress.with_api_server = link.is_some();
    let cluster = link.as_ref().map(|l| l.cluster.clone());
    let node_max_pods = cluster
        .as_ref()
        .and_then(|c| c.node())
        .and_then(|n| n.max_pods);
    let policy: PoolPolicy = cfg.pool_policy(
        node_max_pods.unwrap_or(limits.max_pods),
        limits.prefix_delegation,
    )?;

    // The datastore from EC2's truth, then the checkpoint.
    let checkpoint_path = cfg.backing_store_path(0);
    let ds_config = DatastoreConfig {
        network_card: 0,
        prefix_delegation: policy.prefix_delegation,
        ip_cooldown: cfg.pool.ip_cooldown_period,
    };
    let mut ds = Datastore::new(ds_config, Box::new(FileSink::new(checkpoint_path.clone())));
    let enis = ec2
        .describe_instance_enis(&id.instance_id)
        .await
        .map_err(AgentError::Ec2)?;
    let mut unmanaged_ids = std::collections::HashSet::new();
    let now = pool::now();
    for eni in &enis {
        if !node::is_managed(eni, &id.instance_id, cfg.eni.manage_untagged_eni) {
            unmanaged_ids.insert(eni.id.clone());
            continue;
        }
        node::add_eni_from_ec2(&mut ds, eni, now)?;
        if !cfg.provisioning_disabled() && eni.interface_type != "trunk" {
            let missing = node::missing_tags(
                eni,
                &id.instance_id,
                &cfg.eni.cluster_name,
                &cfg.eni.additional_eni_tags,
            );
            node::tag_eni(ec2.as_ref(), &eni.id, &missing, &node::TAG_RETRIES)
                .await
                .map_err(|source| AgentError::Tagging {
                    eni: eni.id.clone(),
                    source,
                })?;
        }
    }
    // Host networking (routes, rules, SNAT) in the node's namespace, when managed here.
    let host_net = match &opts.host_network {
        Some(h) => Some(Arc::new(HostNet::new(HostNetSettings {
            netns: h.netns.clone(),
            eni_mtu: cfg.networking.eni_mtu,
            vpc_cidrs: vpc_cidrs.clone(),
            exclude_snat_cidrs: cfg.networking.exclude_snat_cidrs.clone(),
            external_service_cidrs: cfg.networking.external_service_cidrs.clone(),
            external_snat: cfg.networking.external_snat,
            node_port_support: cfg.networking.node_port_support,
            randomize: match cfg.networking.randomize_snat {
                config::RandomizeSnat::Prng => net::snat::Randomize::Prng,
                config::RandomizeSnat::HashRandom => net::snat::Randomize::HashRandom,
                config::RandomizeSnat::None => net::snat::Randomize::None,
            },
            veth_prefix: cfg.networking.veth_prefix.clone(),
            connmark: cfg.networking.connmark,
            v6_egress: cfg.chain.v6_egress,
            link_attempts: h.link_attempts,
            link_interval: h.link_interval,
        })?)),
        None => None,
    };
    if cfg.eni.custom_networking {
        // Custom networking: pods get addresses from ENIConfig subnets, never the primary's.
        if let Err(e) = ds.set_eni_excluded(&primary.eni_id, true) {
            tracing::warn!("excluding the primary ENI: {e}");
        }
    }
    match ipam::read_checkpoint(&checkpoint_path)? {
        Some(doc) => {
            // Spec 4.4: allocations whose pod's veth is gone were released by a DEL that
            // could not reach ipamd; drop them (and their rules) instead of leaking them.
            let doc = match &host_net {
                Some(host) => {
                    let (kept, stale) = stale_pods::split_stale(&doc, &host.link_names().await?);
                    for entry in &stale {
                        tracing::info!(pod = %format!("{}/{}", entry.metadata.k8s_pod_namespace, entry.metadata.k8s_pod_name), ip = %entry.ipv4, "stale allocation dropped: the pod's veth is gone");
                        if let Ok(ip) = entry.ipv4.parse()
                            && let Err(e) = host.delete_pod_rules(ip).await
                        {
                            tracing::warn!("rules of stale {ip}: {e}");
                        }
                    }
                    kept
                }
                None => doc,
            };
            let report = ds.restore(&doc)?;
            tracing::info!(
                restored = report.restored,
                pending = report.dropped.len(),
                "checkpoint restored"
            );
        }
        None => ds.persist()?,
    }
    let has_trunk = ds.trunk_eni().is_some();
    let unmanaged = unmanaged_ids.len() as u32;
    let capacity = cfg.node_capacity(&CardFacts {
        network_card: 0,
        instance_eni_limit: limits.eni_limit,
        ipv4_per_eni: limits.ipv4_per_eni,
        unmanaged_enis: unmanaged,
        trunking_compatible: limits.trunking_compatible,
        has_trunk,
    });
    let managed_enis = capacity.max_enis.saturating_sub(unmanaged);
    metrics.eni_max.set(i64::from(managed_enis));
    metrics.ip_max.set(i64::from(
        max_ips_per_eni(limits.ipv4_per_eni, policy.prefix_delegation) * managed_enis,
    ));
    // Host networking: node-wide rules and firewall, then every secondary ENI's table.
    let host = match &host_net {
        Some(host) => {
            let host = host.clone();
            host.set_metrics(metrics.clone());
            host.setup_node(&id.primary_mac, id.local_ipv4).await?;
            let vpc_id = enis.first().map(|e| e.vpc_id.clone()).unwrap_or_default();
            // Subnet CIDRs for the ENI route tables: EC2, else each ENI's IMDS entry
            // (upstream reads them from IMDS only; a failing DescribeSubnets is not fatal).
            let subnets = ec2
                .describe_subnets(&vpc_id, &id.availability_zone)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!("DescribeSubnets at start failed, using IMDS: {e}");
                    Vec::new()
                });
            for eni in &enis {
                let Some(att) = &eni.attachment else { continue };
                if (att.network_card, att.device_index) == (0, 0) || ds.eni(&eni.id).is_none() {
                    continue;
                }
                let cidr = match crate::subnets::cidr_of(&subnets, &eni.subnet_id) {
                    Some(cidr) => Some(cidr),
                    None => imds.eni(&eni.mac).await.ok().and_then(|e| e.subnet_cidr),
                };
                if let (Some(ip), Some(cidr)) = (eni.primary_ip, cidr) {
                    let table =
                        net::route_table::route_table_id(att.network_card, att.device_index);
                    let trunk = eni.interface_type == "trunk";
                    host.setup_secondary(&eni.mac, ip, cidr, table, trunk)
                        .await?;
                }
            }
            Some(host)
        }
        None => None,
    };
    let ds: SharedDatastore = Arc::new(Mutex::new(ds));
    metrics.observe_node_init(started.elapsed(), true);
    progress.node_initialised = true;
    drop(init_busy);

    // gRPC.
    let blocker = Arc::new(Mutex::new(None));
    let kick = Arc::new(Notify::new());
    let service = CniService {
        ds: ds.clone(),
        facts: Arc::new(ReplyFacts {
            vpc_cidrs: vpc_cidrs.iter().map(ToString::to_string).collect(),
            exclude_snat_cidrs: cfg
                .networking
                .exclude_snat_cidrs
                .iter()
                .map(ToString::to_string)
                .collect(),
            external_snat: cfg.networking.external_snat,
            network_policy_mode: cfg
                .networking
                .network_policy_mode
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
            multi_nic: cfg.eni.multi_nic,
            instance_id: id.instance_id.clone(),
            region: id.region.clone(),
            node_ipv4: id.local_ipv4.to_string(),
        }),
        metrics: metrics.clone(),
        blocker: blocker.clone(),
        kick: kick.clone(),
        annotate: cluster.clone().filter(|_| cfg.kubernetes.annotate_pod_ip),
    };
    let listener = rpc::server::bind_unix(&opts.grpc_socket)
        .map_err(io(format!("binding {}", opts.grpc_socket.display())))?;
    let (_health_reporter, health) = rpc::health::serving().await;

    // Pool loop, reconciliation, security-group refresh; leaked-ENI cleanup.
    let vpc_id = enis.first().map(|e| e.vpc_id.clone()).unwrap_or_default();
    let provisioning = !cfg.provisioning_disabled();
    let facts = NodeFacts {
        instance_id: id.instance_id.clone(),
        subnet_id: primary.subnet_id.clone(),
        security_groups: groups.clone(),
        cluster_name: cfg.eni.cluster_name.clone(),
        additional_tags: cfg.eni.additional_eni_tags.clone(),
        subnet_cidr: primary.subnet_cidr,
        vpc_id: vpc_id.clone(),
        availability_zone: id.availability_zone.clone(),
        subnet_discovery: cfg.eni.subnet_discovery,
    };
    let eni_configs = match (cfg.eni.custom_networking, &cluster) {
        (false, _) => EniConfigSource::NotUsed,
        (true, Some(c)) => EniConfigSource::Cluster(c.clone()),
        (true, None) => EniConfigSource::Unavailable(
            "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true needs the Kubernetes API, but MY_NODE_NAME is not set".into(),
        ),
    };
    let mut manager = PoolManager::new(ec2.clone(), ds.clone(), facts, policy, capacity)
        .with_eni_configs(eni_configs)
        .with_metrics(metrics.clone());
    if let (Some(c), false) = (&cluster, cfg.eni.manage_enis_non_schedulable) {
        manager = manager.with_cordon_gate(c.clone());
    }
    if let (Some(c), true) = (&cluster, cfg.eni.custom_networking) {
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
    let imds = Arc::new(imds);
    let mut reconciler = Reconciler::new(
        ec2.clone(),
        imds.clone(),
        ds.clone(),
        ReconcileFacts {
            instance_id: id.instance_id.clone(),
            manage_untagged: cfg.eni.manage_untagged_eni,
            provisioning,
            cluster_name: cfg.eni.cluster_name.clone(),
            additional_tags: cfg.eni.additional_eni_tags.clone(),
        },
        metrics.clone(),
        unmanaged_ids,
    );
    if let Some(host) = host {
        manager = manager.with_host_network(host.clone());
        reconciler = reconciler.with_host_network(host);
    }
    let security_groups = (provisioning && !cfg.eni.custom_networking).then(|| {
        let mut current = groups;
        current.sort();
        SecurityGroupRefresh {
            primary_mac: id.primary_mac.clone(),
            current,
        }
    });
    // Every task the agent starts stops when `run` returns or its future is dropped.
    let mut background = Tasks::default();
    background.0.push(tokio::spawn(
        NodeLoop {
            manager,
            reconciler,
            ec2: ec2.clone(),
            imds,
            ds: ds.clone(),
            metrics: metrics.clone(),
            blocker,
            kick: kick.clone(),
            provisioning,
            security_groups,
            vpc_cidrs: Some(node_loop::VpcCidrRefresh::new(
                id.primary_mac.clone(),
                &vpc_cidrs,
                service.facts.vpc_cidrs.clone(),
                host_net.clone(),
            )),
            timers: opts.timers.clone(),
            cluster: cluster.clone(),
        }
        .run(),
    ));
    if let Some(link) = link {
        background.0.push(link.task);
    }
    if !cfg.leaked_eni_cleanup_disabled() {
        background.0.push(node_loop::spawn_leaked_eni_cleanup(
            ec2.clone(),
            id.instance_id.clone(),
            vpc_id,
            cfg.eni.cluster_name.clone(),
            &opts.timers,
            metrics.clone(),
        ));
    }

    // Metrics and introspection.
    let mut servers = Tasks::default();
    if let Some(addr) = opts.metrics_addr {
        let m = metrics.clone();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = m.clone();
                async move { m.render().unwrap_or_else(|e| format!("# error: {e}\n")) }
            }),
        );
        serve_http(&Listen::Tcp(addr), router, &mut servers).await?;
    }
    if let Some(listen) = &opts.introspection_addr {
        let router = introspect::router(Introspection {
            datastores: vec![(0, ds.clone())],
            ipamd_env: serde_json::to_value(cfg.ipamd_env_settings()).unwrap_or_default(),
            networkutils_env: serde_json::to_value(cfg.network_utils_env_settings())
                .unwrap_or_default(),
            cluster: cluster.filter(|_| cfg.eni.custom_networking),
        });
        serve_http(listen, router, &mut servers).await?;
    }

    tracing::info!(instance = %id.instance_id, socket = %opts.grpc_socket.display(), "ipamd serving");
    metrics.observe_startup(started.elapsed(), progress.with_api_server, None);
    progress.ready = true;
    let served = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(rpc::CniBackendServer::new(service.clone()))
        .add_service(rpc::ConfigServerBackendServer::new(service))
        .serve_with_incoming_shutdown(listener, shutdown)
        .await;
    drop(background);
    drop(servers);
    // Nothing a running pod holds is released: write the checkpoint as it stands.
    pool::lock(&ds).persist()?;
    served?;
    Ok(())
}

/// What the agent needs to know of its instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLimits {
    /// ENIs on the default network card.
    pub eni_limit: u32,
    pub ipv4_per_eni: u32,
    /// Nitro or bare metal: /28 prefixes can be delegated.
    pub prefix_delegation: bool,
    /// EKS max pods for the type (used when the Node's capacity is unknown).
    pub max_pods: u32,
    /// The VPC resource controller can attach a trunk ENI (security groups for pods).
    pub trunking_compatible: bool,
}

/// Limits from the table, else `DescribeInstanceTypes` (default card's interfaces); a type
/// not in the table is taken as not trunking compatible.
async fn node_limits<E: Ec2>(ec2: &E, instance_type: &str) -> Result<NodeLimits, AgentError> {
    if let Some(l) = limits::lookup(instance_type) {
        return Ok(NodeLimits {
            eni_limit: l.eni_limit,
            ipv4_per_eni: l.ipv4_per_eni,
            prefix_delegation: l.supports_prefix_delegation(),
            max_pods: l.eni_max_pods(),
            trunking_compatible: l.is_trunking_compatible(),
        });
    }
    let d = ec2
        .describe_instance_type(instance_type)
        .await
        .map_err(AgentError::Ec2)?;
    let limit = d
        .cards
        .iter()
        .find(|c| c.0 == d.default_card)
        .map(|c| c.1)
        .unwrap_or(d.max_enis);
    if limit == 0 || d.ipv4_per_eni == 0 {
        return Err(AgentError::UnknownInstanceType(instance_type.to_owned()));
    }
    Ok(NodeLimits {
        eni_limit: limit,
        ipv4_per_eni: d.ipv4_per_eni,
        prefix_delegation: d.hypervisor == "nitro" || d.bare_metal,
        max_pods: limit * (d.ipv4_per_eni - 1) + 2,
        trunking_compatible: false,
    })
}

/// Addresses one ENI can hand to pods (`awscni_ip_max` per ENI, as upstream's
/// `GetENIIPv4Limit` × 16 with prefix delegation): every slot but the primary address,
/// each slot a /28 when prefixes are delegated.
pub fn max_ips_per_eni(ipv4_per_eni: u32, prefix_delegation: bool) -> u32 {
    let slots = ipv4_per_eni.saturating_sub(1);
    if prefix_delegation { slots * 16 } else { slots }
}

/// Tasks aborted when dropped (a dropped agent future leaves nothing running behind it).
#[derive(Default)]
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

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
