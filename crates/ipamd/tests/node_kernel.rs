//! The agent with host networking in a node network namespace made for the test (root):
//! the EC2 emulator hot-plugs attached ENIs as links there, and the agent's kernel state —
//! fwmark rule, SNAT chain, per-ENI route table and rule — agrees with EC2's view.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::Config;
use ec2_emulator::model::World;
use ec2_emulator::server::{self, Emulator, Shared};
use ipamd::agent::{self, AgentOptions, HostNetOptions};

struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("ipamd-node-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add (needs root)");
        Netns(name)
    }
    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.0)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    fn exec(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_matches_ec2_after_growth() {
    let ns = Netns::new();
    let mut world = World::new();
    let vpc = world.create_vpc("10.0.0.0/16".parse().unwrap());
    let subnet = world
        .create_subnet(&vpc, "10.0.0.0/24".parse().unwrap(), "us-west-2a")
        .unwrap();
    let sg = world.create_security_group(&vpc, "node");
    let ty = ec2_emulator::catalog::instance_type("m5.large").unwrap();
    let instance = world
        .run_instance(ty, &subnet, std::slice::from_ref(&sg))
        .unwrap();
    let (primary_mac, primary_ip) = {
        let eni = &world.enis[&world.instances[&instance].primary_eni];
        (eni.mac.clone(), eni.primary_ip)
    };
    // The node's primary interface, as the instance boots with it.
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&[
        "link",
        "add",
        "eth0",
        "address",
        &primary_mac,
        "type",
        "veth",
        "peer",
        "name",
        "eth0-hv",
    ]);
    ns.ip(&["addr", "add", &format!("{primary_ip}/24"), "dev", "eth0"]);
    ns.ip(&["link", "set", "eth0", "up"]);

    let emu: Shared = Arc::new(Mutex::new(Emulator::new(
        world,
        "us-west-2",
        Arc::new(ec2_emulator::catalog::instance_type),
    )));
    server::lock(&emu).set_hotplug(&instance, &ns.0);
    let ec2 = serve(server::ec2_router(emu.clone())).await;
    let imds = serve(server::imds_router(emu.clone(), instance.clone())).await;
    let dir = std::env::temp_dir().join(format!("ipamd-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Config::from_vars([
        ("AWS_EC2_ENDPOINT", ec2.as_str()),
        (
            "AWS_VPC_K8S_CNI_BACKING_STORE",
            &dir.join("ipam.json").display().to_string(),
        ),
        ("MINIMUM_IP_TARGET", "12"),
        ("WARM_IP_TARGET", "2"),
    ])
    .unwrap();
    let opts = AgentOptions {
        grpc_socket: dir.join("ipamd.sock"),
        metrics_addr: None,
        introspection_addr: None,
        imds_endpoint: Some(imds),
        static_credentials: Some(("testing".into(), "testing".into())),
        pool_interval: Duration::from_millis(100),
        host_network: Some(HostNetOptions {
            netns: Some(format!("/var/run/netns/{}", ns.0).into()),
            link_attempts: 50,
            link_interval: Duration::from_millis(100),
        }),
    };
    let agent = tokio::spawn(agent::run(cfg, opts, std::future::pending()));

    // MINIMUM_IP_TARGET=12 on an m5.large (9 per ENI) needs a second ENI.
    let mut eni2 = None;
    for _ in 0..100 {
        {
            let e = server::lock(&emu);
            let enis = e.world.attached_enis(&instance);
            if enis.len() == 2 && enis[1].secondary_ips.len() >= 3 {
                eni2 = Some((enis[1].mac.clone(), enis[1].primary_ip));
            }
        }
        if eni2.is_some() && ns.ip(&["rule"]).contains("32765:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mac2, ip2) = eni2.expect("a second ENI was attached");
    assert!(!agent.is_finished(), "the agent is running");

    let links = ns.ip(&["-o", "link"]);
    assert!(
        links.contains("eth1") && links.contains(&mac2),
        "hot-plugged: {links}"
    );
    let rules = ns.ip(&["rule"]);
    assert!(
        rules.contains(&format!("32765:\tfrom {ip2} lookup 2")),
        "{rules}"
    );
    assert!(
        rules.contains("1024:\tfrom all fwmark 0x80/0x80 lookup main"),
        "{rules}"
    );
    let table2 = ns.ip(&["route", "show", "table", "2"]);
    assert!(table2.contains("default via 10.0.0.1 dev eth1"), "{table2}");
    assert!(table2.contains("10.0.0.1 dev eth1 scope link"), "{table2}");
    let nat = ns.exec(&["iptables-save", "-t", "nat"]);
    assert!(
        nat.contains(&format!("-j SNAT --to-source {primary_ip}")),
        "{nat}"
    );
    assert!(
        nat.contains("-d 10.0.0.0/16 -m comment --comment \"AWS SNAT CHAIN\" -j RETURN"),
        "{nat}"
    );
    let mtu = ns.ip(&["link", "show", "eth1"]);
    assert!(mtu.contains("mtu 9001"), "{mtu}");
    agent.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
