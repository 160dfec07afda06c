//! The agent with host networking in a node network namespace made for the test (root):
//! the EC2 emulator hot-plugs attached ENIs as links there, and the agent's kernel state —
//! fwmark rule, SNAT chain, per-ENI route table and rule — agrees with EC2's view.

use std::time::Duration;

use config::Config;
use ec2_emulator::server;
use ec2_emulator::testing::{EmulatedNode, TestNetns};
use ipamd::agent::{self, AgentOptions, HostNetOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_matches_ec2_after_growth() {
    let ns = TestNetns::new("ipamd-node");
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let (emu, instance, primary_ip) = (node.emu.clone(), node.instance_id.clone(), node.primary_ip);
    // The node's primary interface, as the instance boots with it.
    ns.add_primary_interface(&node.primary_mac, primary_ip);
    server::lock(&emu).set_hotplug(&instance, &ns.0);
    let (ec2, imds) = (node.ec2_endpoint.clone(), node.imds_endpoint.clone());
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
        ("ENABLE_V6_EGRESS", "true"),
    ])
    .unwrap();
    let opts = AgentOptions {
        grpc_socket: dir.join("ipamd.sock"),
        metrics_addr: None,
        introspection_addr: None,
        imds_endpoint: Some(imds),
        static_credentials: Some(("testing".into(), "testing".into())),
        timers: ipamd::node_loop::AgentTimers {
            pool: Duration::from_millis(100),
            ..Default::default()
        },
        host_network: Some(HostNetOptions {
            netns: Some(format!("/var/run/netns/{}", ns.0).into()),
            link_attempts: 50,
            link_interval: Duration::from_millis(100),
        }),
    };
    let agent = tokio::spawn(agent::run(
        cfg.clone(),
        opts.clone(),
        std::future::pending(),
    ));

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
    // ENABLE_V6_EGRESS: connections into egress-cni's IPv6 range are refused (upstream's `SetupHostNetwork`).
    let filter6 = ns.exec(&["ip6tables-save", "-t", "filter"]);
    assert!(
        filter6.contains("-A FORWARD -d fd00::ac:0/118 -m conntrack --ctstate NEW -m comment --comment \"Block Node Local Pod access via IPv6\" -j REJECT"),
        "{filter6}"
    );
    let mtu = ns.ip(&["link", "show", "eth1"]);
    assert!(mtu.contains("mtu 9001"), "{mtu}");
    agent.abort();
    let _ = agent.await;

    // Restart with DescribeSubnets failing: upstream takes subnet CIDRs from IMDS, so the
    // agent must start and rebuild eth1's route table from IMDS alone.
    ns.ip(&["route", "flush", "table", "2"]);
    server::lock(&emu)
        .faults
        .fail_next
        .push(ec2_emulator::faults::FailNext {
            action: "DescribeSubnets".into(),
            code: ec2_emulator::model::ErrorCode::UnauthorizedOperation,
            remaining: 10,
        });
    let restarted = tokio::spawn(agent::run(cfg, opts, std::future::pending()));
    let mut table2 = String::new();
    for _ in 0..100 {
        table2 = ns.ip(&["route", "show", "table", "2"]);
        if table2.contains("default via") || restarted.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !restarted.is_finished(),
        "started without DescribeSubnets: {:?}",
        restarted.await
    );
    assert!(table2.contains("default via 10.0.0.1 dev eth1"), "{table2}");
    restarted.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
