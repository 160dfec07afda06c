//! Targets for the client contract suite: our emulator (in-process, over real HTTP) and
//! moto in server mode (a separate process).

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws::backoff::Backoff;
use aws::sdk_ec2::SdkEc2;
use aws::testing::{MOTO_AZ, MOTO_REGION, Moto};
use aws::token_bucket::RateLimits;
use aws::{ApiStats, Ec2Settings};
use ec2_emulator::model::World;
use ec2_emulator::server::{self, Emulator, Shared};

/// What a target can answer faithfully.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub prefixes: bool,
    pub limits: bool,
    pub imds: bool,
    pub delete_on_termination: bool,
    /// Real EC2 answers AssignPrivateIpAddresses with only the new addresses.
    pub assign_returns_only_new: bool,
    /// `ConnectionTrackingSpecification` on CreateNetworkInterface, reported back as
    /// `connectionTrackingConfiguration` (moto 5.2.1 ignores the parameter).
    pub conntrack: bool,
    /// IPv6 /80 prefix delegation (`AssignIpv6Addresses` with `Ipv6PrefixCount`; moto
    /// 5.2.1 ignores the parameter and delegates nothing).
    pub ipv6_prefixes: bool,
    /// `ipv6CidrBlockState` of a subnet's IPv6 association reads `associated` (moto 5.2.1
    /// writes a Python dict there, so no association reads as associated).
    pub subnet_ipv6_state: bool,
}

pub struct Target {
    pub name: &'static str,
    pub ec2: SdkEc2,
    pub stats: Arc<ApiStats>,
    pub instance_id: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub security_group: String,
    /// The node subnet's IPv6 /64 as seeded (dual-stack targets).
    pub subnet_ipv6: Option<ipnet::Ipv6Net>,
    pub caps: Caps,
    pub ec2_endpoint: String,
    pub imds_endpoint: Option<String>,
    pub emulator: Option<Shared>,
    /// The moto server process (killed when the target is dropped).
    moto: Option<Moto>,
}

pub fn fast_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(5),
        max: Duration::from_millis(50),
        factor: 2.0,
        jitter: 0.15,
        max_attempts: 15,
    }
}

pub fn settings(region: &str, endpoint: &str) -> Ec2Settings {
    Ec2Settings {
        region: region.to_string(),
        endpoint: Some(endpoint.to_string()),
        http_timeout: Duration::from_secs(20),
        rate_limits: RateLimits {
            describe: (1000.0, 1000.0),
            mutate: (1000.0, 1000.0),
        },
        backoff: fast_backoff(),
        static_credentials: Some(("testing".into(), "testing".into())),
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// An emulated m5.large in a /24 (plus the emulator state for fault injection).
pub async fn emulator(settings_tweak: impl FnOnce(&mut Ec2Settings)) -> Target {
    emulator_with(false, settings_tweak).await
}

/// [`emulator`] in a dual-stack VPC (`World::enable_ipv6`).
pub async fn emulator_dual_stack() -> Target {
    emulator_with(true, |_| {}).await
}

async fn emulator_with(ipv6: bool, settings_tweak: impl FnOnce(&mut Ec2Settings)) -> Target {
    let mut world = World::new();
    let vpc = world.create_vpc("10.0.0.0/16".parse().unwrap());
    let subnet = world
        .create_subnet(&vpc, "10.0.0.0/24".parse().unwrap(), "us-west-2a")
        .unwrap();
    if ipv6 {
        world.enable_ipv6(&vpc).unwrap();
    }
    let subnet_ipv6 = world.subnets[&subnet].ipv6_cidr();
    let sg = world.create_security_group(&vpc, "node");
    let ty = ec2_emulator::catalog::instance_type("m5.large").unwrap();
    let instance = world
        .run_instance(ty, &subnet, std::slice::from_ref(&sg))
        .unwrap();
    let emu = Emulator::new(
        world,
        "us-west-2",
        Arc::new(ec2_emulator::catalog::instance_type),
    );
    let shared: Shared = Arc::new(Mutex::new(emu));
    let ec2_endpoint = serve(server::ec2_router(shared.clone())).await;
    let imds_endpoint = serve(server::imds_router(shared.clone(), instance.clone())).await;
    let stats = Arc::new(ApiStats::default());
    let mut s = settings("us-west-2", &ec2_endpoint);
    settings_tweak(&mut s);
    let ec2 = aws::ec2_client(&s, stats.clone()).await;
    Target {
        name: "emulator",
        ec2,
        stats,
        instance_id: instance,
        subnet_id: subnet,
        vpc_id: vpc,
        availability_zone: "us-west-2a".into(),
        security_group: sg,
        subnet_ipv6,
        caps: Caps {
            prefixes: true,
            limits: true,
            imds: true,
            delete_on_termination: true,
            assign_returns_only_new: true,
            conntrack: true,
            ipv6_prefixes: true,
            subnet_ipv6_state: true,
        },
        ec2_endpoint,
        imds_endpoint: Some(imds_endpoint),
        emulator: Some(shared),
        moto: None,
    }
}

/// moto in server mode on loopback, with a VPC, subnet, group and running m5.large set up
/// through the plain SDK (`aws::testing`).
pub async fn moto() -> Target {
    moto_with(false).await
}

/// [`moto`] dual-stack (`Moto::seed_dual_stack_node`).
pub async fn moto_dual_stack() -> Target {
    moto_with(true).await
}

async fn moto_with(ipv6: bool) -> Target {
    let moto = Moto::start().await;
    let node = if ipv6 {
        moto.seed_dual_stack_node("10.1.0.0/24").await
    } else {
        moto.seed_node("10.1.0.0/24").await
    };
    let (region, endpoint) = (MOTO_REGION, moto.endpoint.clone());
    let subnet_ipv6 = node.subnet_ipv6;
    let (instance_id, subnet_id, vpc_id, security_group) = (
        node.instance_id,
        node.subnet_id,
        node.vpc_id,
        node.security_group,
    );
    let stats = Arc::new(ApiStats::default());
    let ec2 = aws::ec2_client(&settings(region, &endpoint), stats.clone()).await;
    Target {
        name: "moto",
        ec2,
        stats,
        instance_id,
        subnet_id,
        vpc_id,
        availability_zone: MOTO_AZ.into(),
        security_group,
        subnet_ipv6,
        caps: Caps {
            prefixes: false,
            limits: false,
            imds: false,
            delete_on_termination: false,
            assign_returns_only_new: false,
            conntrack: false,
            ipv6_prefixes: false,
            subnet_ipv6_state: false,
        },
        ec2_endpoint: endpoint,
        imds_endpoint: None,
        emulator: None,
        moto: Some(moto),
    }
}
