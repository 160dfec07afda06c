//! The agent against moto in server mode (an independent EC2 implementation, secondary-IP
//! mode: moto has no prefixes and no limits). moto's own IMDS is a static stub with no
//! `network/interfaces`, so IMDS is answered here from moto's EC2 state (the instance and
//! its ENIs as moto's DescribeInstances/DescribeNetworkInterfaces report them): every
//! address and ENI the agent sees comes from moto.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use aws::testing::{MOTO_AZ, MOTO_REGION, MOTO_VPC_CIDR, Moto};
use aws::token_bucket::RateLimits;
use aws::{Ec2, Ec2Settings, sdk_ec2::SdkEc2};
use axum::extract::{Path, State};
use axum::routing::{get, put};
use integration_tests::agent::{self, add_pod, del_pod};
use ipamd::node::tags;
use ipamd::node_loop::AgentTimers;

const REGION: &str = MOTO_REGION;
const AZ: &str = MOTO_AZ;

struct World {
    ec2: SdkEc2,
    instance_id: String,
    instance_type: String,
    vpc_cidr: String,
}

async fn client(endpoint: &str) -> SdkEc2 {
    let mut settings = Ec2Settings::from_lookup(REGION, |_| None);
    settings.endpoint = Some(endpoint.to_string());
    settings.static_credentials = Some(("testing".into(), "testing".into()));
    settings.http_timeout = Duration::from_secs(10);
    settings.rate_limits = RateLimits {
        describe: (1000.0, 1000.0),
        mutate: (1000.0, 1000.0),
    };
    aws::ec2_client(&settings, Arc::new(aws::ApiStats::default())).await
}

/// One IMDS path, answered from moto's current EC2 state.
async fn imds(
    State(w): State<Arc<World>>,
    Path(path): Path<String>,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let Ok(enis) = w.ec2.describe_instance_enis(&w.instance_id).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
    };
    let primary = enis
        .iter()
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 0));
    let ok = |s: String| (StatusCode::OK, s);
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["instance-id"] => ok(w.instance_id.clone()),
        ["instance-type"] => ok(w.instance_type.clone()),
        ["placement", "availability-zone"] => ok(AZ.into()),
        ["placement", "region"] => ok(REGION.into()),
        ["mac"] => ok(primary.map(|e| e.mac.clone()).unwrap_or_default()),
        ["local-ipv4"] => ok(primary
            .and_then(|e| e.primary_ip)
            .map(|ip| ip.to_string())
            .unwrap_or_default()),
        ["network", "interfaces", "macs"] => ok(enis
            .iter()
            .map(|e| format!("{}/\n", e.mac))
            .collect::<String>()),
        ["network", "interfaces", "macs", mac, key] => {
            let Some(e) = enis.iter().find(|e| e.mac == *mac) else {
                return (StatusCode::NOT_FOUND, String::new());
            };
            let att = e.attachment.as_ref();
            match *key {
                "device-number" => ok(att.map(|a| a.device_index).unwrap_or(0).to_string()),
                "interface-id" => ok(e.id.clone()),
                "subnet-id" => ok(e.subnet_id.clone()),
                "subnet-ipv4-cidr-block" | "vpc-ipv4-cidr-blocks" | "vpc-ipv4-cidr-block" => {
                    ok(w.vpc_cidr.clone())
                }
                "security-group-ids" => ok(e.security_groups.join("\n")),
                "local-ipv4s" => ok(e
                    .primary_ip
                    .iter()
                    .chain(e.secondary_ips.iter())
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")),
                _ => (StatusCode::NOT_FOUND, String::new()),
            }
        }
        _ => (StatusCode::NOT_FOUND, String::new()),
    }
}

async fn serve_imds(world: Arc<World>) -> String {
    let router = axum::Router::new()
        .route(
            "/latest/api/token",
            put(|| async {
                (
                    [("x-aws-ec2-metadata-token-ttl-seconds", "21600")],
                    "moto-node-token",
                )
            }),
        )
        .route("/latest/meta-data/{*path}", get(imds))
        .with_state(world);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_addresses_from_enis_moto_attached_and_tagged() {
    // One /16 subnet: moto draws secondary addresses at random from the whole subnet and
    // only de-duplicates them per ENI, so a big subnet keeps collisions unlikely.
    let moto = Moto::start().await;
    let endpoint = moto.endpoint.clone();
    let instance_id = moto.seed_node("10.1.0.0/16").await.instance_id;
    let instance_type = "m5.large".to_string();
    let world = Arc::new(World {
        ec2: client(&endpoint).await,
        instance_id: instance_id.clone(),
        instance_type,
        vpc_cidr: MOTO_VPC_CIDR.into(),
    });
    let imds_endpoint = serve_imds(world.clone()).await;
    let dir = agent::test_dir("ipamd", "moto");
    let cfg = config::Config::from_vars([
        ("AWS_EC2_ENDPOINT", endpoint.as_str()),
        (
            "AWS_VPC_K8S_CNI_BACKING_STORE",
            &dir.join("ipam.json").display().to_string(),
        ),
        ("CLUSTER_NAME", "moto-demo"),
        // 12 addresses need a second ENI on an m5.large (9 per ENI).
        ("MINIMUM_IP_TARGET", "12"),
        ("WARM_IP_TARGET", "2"),
        // Released addresses count as available while cooling down (upstream): keep it
        // short so the release-and-reuse step below does not wait 30 s.
        ("IP_COOLDOWN_PERIOD", "1"),
    ])
    .unwrap();
    let socket = dir.join("ipamd.sock");
    let mut opts = agent::options(socket.clone(), &imds_endpoint);
    opts.timers = AgentTimers {
        pool: Duration::from_millis(200),
        reconcile: Duration::from_secs(1),
        ..AgentTimers::default()
    };
    let mut task = agent::spawn(cfg, opts);
    let mut c = agent::connect(&socket, &mut task, 600).await;

    let mut ips = Vec::new();
    for i in 0..14 {
        ips.push(add_pod(&mut c, i).await);
    }
    let distinct: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(distinct.len(), ips.len(), "one address per pod: {ips:?}");

    // moto's view: every pod address is a secondary address of an ENI attached to the
    // instance; the agent attached at least one ENI and tagged it like upstream.
    let enis = world
        .ec2
        .describe_instance_enis(&instance_id)
        .await
        .unwrap();
    assert!(enis.len() >= 2, "a second ENI was attached: {enis:?}");
    let on_enis: BTreeSet<Ipv4Addr> = enis
        .iter()
        .flat_map(|e| e.secondary_ips.iter().copied())
        .collect();
    for ip in &ips {
        assert!(on_enis.contains(ip), "{ip} is not on any ENI moto attached");
    }
    for eni in enis
        .iter()
        .filter(|e| e.attachment.as_ref().is_some_and(|a| a.device_index > 0))
    {
        assert_eq!(
            eni.tags.get(tags::INSTANCE_ID),
            Some(&instance_id),
            "{eni:?}"
        );
        assert_eq!(
            eni.tags.get(tags::CLUSTER_NAME).map(String::as_str),
            Some("moto-demo")
        );
        assert!(eni.tags.contains_key(tags::CREATED_AT), "{eni:?}");
        assert!(eni.description.starts_with("aws-K8S-i-"), "{eni:?}");
    }
    // Release and reuse.
    for i in 0..4 {
        del_pod(&mut c, i).await;
    }
    let again = add_pod(&mut c, 100).await;
    assert!(
        on_enis.contains(&again)
            || world
                .ec2
                .describe_instance_enis(&instance_id)
                .await
                .unwrap()
                .iter()
                .any(|e| e.secondary_ips.contains(&again))
    );
    assert!(!task.is_finished(), "the agent is running");
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
