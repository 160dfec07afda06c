//! Test support shared by the workspace's integration tests: an emulated node served over
//! HTTP in-process, and network namespaces that remove themselves.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use ipnet::Ipv6Net;

use crate::model::{InstanceTypeInfo, World};
use crate::server::{self, Emulator, Shared};

/// One emulated instance in a VPC `10.0.0.0/16` (dual-stack if asked), with EC2 and IMDS
/// served on loopback.
pub struct EmulatedNode {
    pub emu: Shared,
    pub ec2_endpoint: String,
    pub imds_endpoint: String,
    pub instance_id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub security_group: String,
    pub primary_mac: String,
    pub primary_ip: Ipv4Addr,
    /// Dual-stack only: the VPC's /56, the node subnet's /64, the primary ENI's IPv6.
    pub vpc_ipv6_cidr: Option<Ipv6Net>,
    pub subnet_ipv6_cidr: Option<Ipv6Net>,
    pub primary_ipv6: Option<Ipv6Addr>,
}

/// Serves `router` on a free loopback port of the current namespace, or of the network
/// namespace at `netns` (the listening socket is made there; it stays there).
async fn serve(router: axum::Router, netns: Option<&str>) -> std::io::Result<String> {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0");
    let std_listener = match netns {
        None => bind()?,
        Some(path) => net::netns::Netns::open(path)
            .and_then(|ns| ns.run(bind))
            .map_err(std::io::Error::other)??,
    };
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}"))
}

impl EmulatedNode {
    /// Starts an instance of `instance_type` in a subnet `subnet_cidr` of zone us-west-2a.
    /// Panics on bad arguments: test support only.
    pub async fn start(instance_type: &str, subnet_cidr: &str) -> Self {
        Self::start_in(instance_type, subnet_cidr, None).await
    }

    /// Like [`EmulatedNode::start`], with EC2 and IMDS listening on loopback inside the
    /// network namespace at `netns` (for an agent that runs in that namespace, as in a
    /// container with host networking), or in the current one.
    pub async fn start_in(instance_type: &str, subnet_cidr: &str, netns: Option<&str>) -> Self {
        Self::start_with(instance_type, subnet_cidr, netns, false).await
    }

    /// Like [`EmulatedNode::start`] in a dual-stack VPC (`World::enable_ipv6`): the subnet
    /// has a /64 and assigns IPv6 on creation, so the instance has a primary IPv6.
    pub async fn start_dual_stack(instance_type: &str, subnet_cidr: &str) -> Self {
        Self::start_with(instance_type, subnet_cidr, None, true).await
    }

    /// [`EmulatedNode::start_in`], dual-stack when `ipv6`.
    pub async fn start_with(
        instance_type: &str,
        subnet_cidr: &str,
        netns: Option<&str>,
        ipv6: bool,
    ) -> Self {
        let ty = crate::catalog::instance_type(instance_type).expect("known instance type");
        Self::start_typed(ty, subnet_cidr, netns, ipv6).await
    }

    /// An instance of a type the limits table does not know (a type newer than the
    /// table): EC2's `DescribeInstanceTypes` answers `ty` for it, and the table for the rest.
    pub async fn start_unlisted(ty: InstanceTypeInfo, subnet_cidr: &str) -> Self {
        Self::start_typed(ty, subnet_cidr, None, false).await
    }

    async fn start_typed(
        ty: InstanceTypeInfo,
        subnet_cidr: &str,
        netns: Option<&str>,
        ipv6: bool,
    ) -> Self {
        let extra = ty.clone();
        let catalog = move |name: &str| {
            (name == extra.name)
                .then(|| extra.clone())
                .or_else(|| crate::catalog::instance_type(name))
        };
        let mut world = World::new();
        let vpc = world.create_vpc("10.0.0.0/16".parse().expect("VPC CIDR"));
        let subnet = world
            .create_subnet(
                &vpc,
                subnet_cidr.parse().expect("subnet CIDR"),
                "us-west-2a",
            )
            .expect("subnet");
        let vpc_ipv6_cidr = ipv6.then(|| world.enable_ipv6(&vpc).expect("IPv6 CIDRs"));
        let subnet_ipv6_cidr = world.subnets[&subnet].ipv6_cidr();
        let sg = world.create_security_group(&vpc, "node");
        let instance = world
            .run_instance(ty, &subnet, std::slice::from_ref(&sg))
            .expect("instance");
        let eni = &world.enis[&world.instances[&instance].primary_eni];
        let (primary_mac, primary_ip) = (eni.mac.clone(), eni.primary_ip);
        let primary_ipv6 = eni.ipv6_addresses.first().copied();
        let emu: Shared = Arc::new(Mutex::new(Emulator::new(
            world,
            "us-west-2",
            Arc::new(catalog),
        )));
        let ec2_endpoint = serve(server::ec2_router(emu.clone()), netns)
            .await
            .expect("EC2 listener");
        let imds_endpoint = serve(server::imds_router(emu.clone(), instance.clone()), netns)
            .await
            .expect("IMDS listener");
        Self {
            emu,
            ec2_endpoint,
            imds_endpoint,
            instance_id: instance,
            vpc_id: vpc,
            subnet_id: subnet,
            security_group: sg,
            primary_mac,
            primary_ip,
            vpc_ipv6_cidr,
            subnet_ipv6_cidr,
            primary_ipv6,
        }
    }
}

/// A network namespace created for a test and deleted on drop (lives in `net::testing`).
pub use net::testing::TestNetns;
