//! The agent in IPv6 mode against the emulator, with host networking in a node namespace
//! made for the test (docs/ipv6.md): the primary ENI gets one /80 from EC2, pods get /128s
//! from its start over gRPC with the VPC's IPv6 CIDRs, DEL releases, the checkpoint holds
//! `ipv6` rows, a restart restores the live pods' addresses (dropping the one whose veth is
//! gone) without a second prefix, and the node namespace has the IPv4 FORWARD block and the
//! IPv6 fwmark rule.

mod support;

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use aws::Ec2;
use ec2_emulator::server;
use ec2_emulator::testing::TestNetns;
use ipamd::agent::HostNetOptions;
use ipnet::Ipv6Net;
use rpc::CniBackendClient;
use support::{Harness, add, del, free_port, http_get};
use tonic::transport::Channel;

const IPV6_MODE: [(&str, &str); 3] = [
    ("ENABLE_IPv6", "true"),
    ("ENABLE_IPv4", "false"),
    ("ENABLE_PREFIX_DELEGATION", "true"),
];

/// ADD for pod `i`: its IPv6 address and the reply's `VPCv6CIDRs`.
async fn add_v6(c: &mut CniBackendClient<Channel>, i: usize) -> (Ipv6Addr, Vec<String>) {
    let r = c.add_network(add(i)).await.unwrap().into_inner();
    assert!(r.success, "pod {i}: {r:?}");
    let row = &r.ip_allocation_metadata[0];
    assert!(row.i_pv4_addr.is_empty(), "{r:?}");
    assert!(r.vp_cv4_cid_rs.is_empty() && !r.use_external_snat, "{r:?}");
    (row.i_pv6_addr.parse().unwrap(), r.vp_cv6_cid_rs)
}

/// The IPv6 prefixes EC2 lists on the primary ENI.
async fn ec2_prefixes(h: &Harness) -> Vec<Ipv6Net> {
    let enis = h
        .operator
        .describe_instance_enis(&h.node.instance_id)
        .await
        .unwrap();
    let primary = enis
        .iter()
        .find(|e| e.mac == h.node.primary_mac)
        .expect("the primary ENI");
    primary.ipv6_prefixes.clone()
}

fn nth(prefix: Ipv6Net, i: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(prefix.network()) + i)
}

fn checkpoint_v6(h: &Harness) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(h.checkpoint_path()).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut rows: Vec<(String, String, String)> = doc["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (field("containerID"), field("ipv4"), field("ipv6"))
        })
        .collect();
    rows.sort();
    rows
}

fn start(
    h: &Harness,
    ns: &TestNetns,
    intro: SocketAddr,
) -> tokio::task::JoinHandle<Result<(), ipamd::agent::AgentError>> {
    let mut opts = h.options(Duration::from_millis(300), Some(intro));
    opts.host_network = Some(HostNetOptions {
        netns: Some(format!("/var/run/netns/{}", ns.0).into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    h.start(h.config(&IPV6_MODE), opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_node_hands_out_slash_128s_from_one_slash_80_and_keeps_them_across_a_restart() {
    let ns = TestNetns::new("v6node");
    let h = Harness::new_dual_stack("m5.large", "10.0.0.0/24", "v6node").await;
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    server::lock(h.emu()).set_hotplug(&h.node.instance_id, &ns.0);
    let vpc_v6 = h.node.vpc_ipv6_cidr.expect("a dual-stack VPC").to_string();
    let intro = free_port();
    let agent = start(&h, &ns, intro);
    let mut c = h.client().await;

    // One /80 on the primary ENI, pods from its start, in order.
    let prefixes = ec2_prefixes(&h).await;
    assert_eq!(prefixes.len(), 1, "{prefixes:?}");
    let prefix = prefixes[0];
    assert_eq!(prefix.prefix_len(), 80);
    for i in 0..3 {
        let (ip, vpc) = add_v6(&mut c, i).await;
        assert_eq!(ip, nth(prefix, i as u128), "pod {i}");
        assert_eq!(vpc, std::slice::from_ref(&vpc_v6));
    }
    assert_eq!(
        add_v6(&mut c, 1).await.0,
        nth(prefix, 1),
        "ADD is idempotent"
    );

    // DEL answers with the released /128.
    let r = c.del_network(del(1)).await.unwrap().into_inner();
    assert!(r.success);
    assert_eq!(
        r.ip_allocation_metadata[0].i_pv6_addr,
        nth(prefix, 1).to_string()
    );
    assert_eq!(
        checkpoint_v6(&h),
        [
            (
                "container-0".into(),
                String::new(),
                nth(prefix, 0).to_string()
            ),
            (
                "container-2".into(),
                String::new(),
                nth(prefix, 2).to_string()
            ),
        ]
    );

    // Introspection shows the prefix as IPv6.
    let body = http_get(intro, "/v1/enis").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let enis = v["0"]["ENIs"].as_object().unwrap();
    let cidr = &enis.values().next().unwrap()["IPv6Cidrs"][prefix.to_string()];
    assert_eq!(cidr["AddressFamily"], "6", "{body}");
    assert_eq!(v["0"]["AssignedIPs"], 2, "{body}");

    // The node namespace: IPv4 FORWARD block, IPv6 fwmark rule, no SNAT.
    let filter = ns.exec(&["iptables-save", "-t", "filter"]);
    assert!(
        filter.contains("-A FORWARD -d 169.254.172.0/22 -m conntrack --ctstate NEW -m comment --comment \"Block Node Local Pod access via IPv4\" -j REJECT"),
        "{filter}"
    );
    let rules6 = ns.ip(&["-6", "rule"]);
    assert!(
        rules6.contains("1024:\tfrom all fwmark 0x80/0x80 lookup main"),
        "{rules6}"
    );
    assert!(!ns.ip(&["rule"]).contains("fwmark"), "no IPv4 fwmark rule");
    let nat = ns.exec(&["iptables-save", "-t", "nat"]);
    assert!(!nat.contains("AWS-SNAT-CHAIN"), "{nat}");

    // Restart: pod 0's host veth exists (the plugin made it), pod 2's is gone (its DEL
    // never reached ipamd). Pod 0 keeps its address, pod 2's row is released, EC2 keeps one
    // prefix.
    let veth = net::names::host_veth_name("eni", "default", "pod-0", 0);
    ns.ip(&[
        "link",
        "add",
        &veth,
        "type",
        "veth",
        "peer",
        "name",
        "pod0-peer",
    ]);
    agent.abort();
    let _ = agent.await;
    let agent = start(&h, &ns, free_port());
    let mut c = h.client().await;
    // Pod 2's row goes with the sweep after serving begins (`ipamd::stale_pods`).
    let sweep: Duration = ipamd::stale_pods::SWEEP_AFTER.iter().sum();
    tokio::time::sleep(sweep + Duration::from_secs(2)).await;
    assert_eq!(
        checkpoint_v6(&h),
        [(
            "container-0".into(),
            String::new(),
            nth(prefix, 0).to_string()
        )]
    );
    assert_eq!(add_v6(&mut c, 0).await.0, nth(prefix, 0), "restored");
    let (fresh, _) = add_v6(&mut c, 3).await;
    assert!(
        prefix.contains(&fresh) && fresh != nth(prefix, 0),
        "{fresh}"
    );
    assert_eq!(ec2_prefixes(&h).await, [prefix]);
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
    let _ = agent.await;
}
