//! Test support shared by the workspace's integration tests: an emulated node served over
//! HTTP in-process, and network namespaces that remove themselves.

use std::net::Ipv4Addr;
use std::process::Command;
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

async fn serve(router: axum::Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}"))
}

impl EmulatedNode {
    /// Starts an instance of `instance_type` in a subnet `subnet_cidr` of zone us-west-2a.
    /// Panics on bad arguments: test support only.
    pub async fn start(instance_type: &str, subnet_cidr: &str) -> Self {
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
        let ec2_endpoint = serve(server::ec2_router(emu.clone()))
            .await
            .expect("EC2 listener");
        let imds_endpoint = serve(server::imds_router(emu.clone(), instance.clone()))
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

/// A network namespace created for a test and deleted on drop.
pub struct TestNetns(pub String);

impl TestNetns {
    /// Creates `<tag>-<pid>` (needs root).
    pub fn new(tag: &str) -> Self {
        let name = format!("{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} (needs root)");
        TestNetns(name)
    }

    /// `/var/run/netns/<name>`.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.0)
    }

    /// `ip -n <name> ARGS…`, asserting success; returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// `ip netns exec <name> ARGS…`; returns stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .expect("run ip netns exec");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Gives the namespace the node's primary interface: `eth0` with `mac` and `ip/24`, up
    /// (a veth whose peer `eth0-hv` stays inside), and loopback up.
    pub fn add_primary_interface(&self, mac: &str, ip: Ipv4Addr) {
        self.ip(&["link", "set", "lo", "up"]);
        self.ip(&[
            "link", "add", "eth0", "address", mac, "type", "veth", "peer", "name", "eth0-hv",
        ]);
        self.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        self.ip(&["link", "set", "eth0", "up"]);
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
