//! Test support shared by the workspace's integration tests: an emulated node served over
//! HTTP in-process, and network namespaces that remove themselves.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use crate::model::World;
use crate::server::{self, Emulator, Shared};

/// One emulated instance in a VPC `10.0.0.0/16`, with EC2 and IMDS served on loopback.
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
        let mut world = World::new();
        let vpc = world.create_vpc("10.0.0.0/16".parse().expect("VPC CIDR"));
        let subnet = world
            .create_subnet(
                &vpc,
                subnet_cidr.parse().expect("subnet CIDR"),
                "us-west-2a",
            )
            .expect("subnet");
        let sg = world.create_security_group(&vpc, "node");
        let ty = crate::catalog::instance_type(instance_type).expect("known instance type");
        let instance = world
            .run_instance(ty, &subnet, std::slice::from_ref(&sg))
            .expect("instance");
        let eni = &world.enis[&world.instances[&instance].primary_eni];
        let (primary_mac, primary_ip) = (eni.mac.clone(), eni.primary_ip);
        let emu: Shared = Arc::new(Mutex::new(Emulator::new(
            world,
            "us-west-2",
            Arc::new(crate::catalog::instance_type),
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
        }
    }
}

/// A network namespace created for a test and deleted on drop (lives in `net::testing`).
pub use net::testing::TestNetns;
