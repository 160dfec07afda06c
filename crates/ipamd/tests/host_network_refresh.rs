//! The agent's host networking in a node network namespace made for each test (root), the
//! EC2 emulator hot-plugging attached ENIs there: `AWS_EXTERNAL_SERVICE_CIDRS` rules at
//! priority 1535, a trunk ENI without a priority-32765 rule, a VPC CIDR added while the
//! agent runs (SNAT exemption and gRPC replies follow), and the connmark metrics.

mod support;

use std::time::Duration;

use aws::{CreateEniRequest, Ec2};
use ec2_emulator::server;
use ec2_emulator::testing::TestNetns;
use ipamd::agent::{AgentOptions, HostNetOptions};
use support::{Harness, add_pod, free_port, http_get};

/// A harness whose node lives in its own namespace, with its primary interface there.
async fn node(tag: &str) -> (Harness, TestNetns) {
    let h = Harness::new("m5.large", "10.0.0.0/24", tag).await;
    let ns = TestNetns::new(tag);
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    server::lock(h.emu()).set_hotplug(&h.node.instance_id, &ns.0);
    (h, ns)
}

/// Options with host networking in `ns`, a VPC CIDR refresh every 200 ms and metrics.
fn options(h: &Harness, ns: &TestNetns) -> AgentOptions {
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.host_network = Some(HostNetOptions {
        netns: Some(ns.path().into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    opts.timers.vpc_cidrs = Duration::from_millis(200);
    opts.metrics_addr = Some(free_port());
    opts
}

/// Waits (bounded) until `cond` holds for what `probe` returns; panics with the last value.
async fn eventually(what: &str, mut probe: impl FnMut() -> String, cond: impl Fn(&str) -> bool) {
    let mut last = String::new();
    for _ in 0..100 {
        last = probe();
        if cond(&last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}:\n{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_service_cidrs_become_priority_1535_rules() {
    let (h, ns) = node("ext-svc").await;
    // Left by an earlier configuration: replaced. Another table's rule at 1535: kept.
    ns.ip(&[
        "rule",
        "add",
        "to",
        "203.0.113.0/24",
        "lookup",
        "main",
        "pref",
        "1535",
    ]);
    ns.ip(&[
        "rule",
        "add",
        "to",
        "100.64.0.0/16",
        "lookup",
        "100",
        "pref",
        "1535",
    ]);
    let cfg = h.config(&[("AWS_EXTERNAL_SERVICE_CIDRS", "192.0.2.0/24,198.51.100.0/24")]);
    let agent = h.start(cfg, options(&h, &ns));
    h.client().await;
    assert!(!agent.is_finished(), "the agent is running");
    let rules = ns.ip(&["rule"]);
    assert!(
        rules.contains("1535:\tfrom all to 192.0.2.0/24 lookup main"),
        "{rules}"
    );
    assert!(
        rules.contains("1535:\tfrom all to 198.51.100.0/24 lookup main"),
        "{rules}"
    );
    assert!(!rules.contains("203.0.113.0/24"), "{rules}");
    assert!(
        rules.contains("1535:\tfrom all to 100.64.0.0/16 lookup 100"),
        "{rules}"
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_eni_gets_no_eni_primary_rule_at_start() {
    let (h, ns) = node("trunk-rule").await;
    let instance = h.node.instance_id.clone();
    let mut tags = aws::Tags::new();
    tags.insert(
        "node.k8s.amazonaws.com/instance_id".to_string(),
        instance.clone(),
    );
    let trunk = h
        .operator
        .create_eni(&CreateEniRequest {
            subnet_id: h.node.subnet_id.clone(),
            security_groups: vec![h.node.security_group.clone()],
            description: "trunk".into(),
            secondary_ips: 0,
            prefixes: 0,
            ipv6_addresses: 0,
            tags,
            conntrack: None,
        })
        .await
        .unwrap()
        .id;
    h.operator
        .attach_eni(&trunk, &instance, 1, 0)
        .await
        .unwrap();
    // EC2 marks it a trunk (the VPC resource controller creates it so).
    server::lock(h.emu())
        .world
        .eni_mut(&trunk)
        .unwrap()
        .interface_type = "trunk".into();
    let trunk_ip = server::lock(h.emu()).world.eni(&trunk).unwrap().primary_ip;
    let agent = h.start(h.config(&[]), options(&h, &ns));
    h.client().await;
    assert!(!agent.is_finished(), "the agent is running");
    let table = ns.ip(&["route", "show", "table", "2"]);
    assert!(table.contains("default via 10.0.0.1 dev eth1"), "{table}");
    let rules = ns.ip(&["rule"]);
    assert!(!rules.contains(&format!("from {trunk_ip} ")), "{rules}");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_cidr_added_later_is_exempt_from_snat_and_in_replies() {
    let (h, ns) = node("vpc-cidr").await;
    let agent = h.start(h.config(&[]), options(&h, &ns));
    let mut client = h.client().await;
    let rule =
        "-A AWS-SNAT-CHAIN-0 -d 10.1.0.0/16 -m comment --comment \"AWS SNAT CHAIN\" -j RETURN";
    let nat = ns.exec(&["iptables-save", "-t", "nat"]);
    assert!(!nat.contains(rule), "{nat}");
    server::lock(h.emu())
        .associate_vpc_cidr(&h.node.vpc_id, "10.1.0.0/16".parse().unwrap())
        .unwrap();
    eventually(
        "the new VPC CIDR's SNAT exemption",
        || ns.exec(&["iptables-save", "-t", "nat"]),
        |nat| nat.contains(rule),
    )
    .await;
    let nat = ns.exec(&["iptables-save", "-t", "nat"]);
    assert!(
        nat.contains(
            "-A AWS-SNAT-CHAIN-0 -d 10.0.0.0/16 -m comment --comment \"AWS SNAT CHAIN\" -j RETURN"
        ),
        "{nat}"
    );
    // The SNAT rule stays last in the chain.
    let last = nat
        .lines()
        .rfind(|l| l.starts_with("-A AWS-SNAT-CHAIN-0"))
        .unwrap_or_default();
    assert!(last.contains("-j SNAT --to-source"), "{nat}");
    // What the plugin is told to leave un-SNATed follows too.
    add_pod(&mut client, 1).await;
    let reply = client
        .add_network(support::add(2))
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.vp_cv4_cid_rs.contains(&"10.1.0.0/16".to_string()),
        "{:?}",
        reply.vp_cv4_cid_rs
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connmark_metrics_count_snat_programming() {
    let (h, ns) = node("connmark-m").await;
    let opts = options(&h, &ns);
    let metrics = opts.metrics_addr.expect("metrics address");
    let agent = h.start(h.config(&[]), opts);
    h.client().await;
    let text = http_get(metrics, "/metrics").await;
    // A fresh namespace: iptables-nft (kube-proxy's choice), whose version says nf_tables.
    assert!(
        ns.exec(&["nft", "list", "tables", "ip"])
            .contains("table ip aws-cni")
    );
    for line in [
        r#"awscni_connmark_backend{backend="nftables"} 1"#,
        r#"awscni_connmark_reconcile_total{result="success"} 1"#,
        r#"awscni_connmark_reconcile_total{result="error"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Re-programming for a changed VPC CIDR set is counted too.
    server::lock(h.emu())
        .associate_vpc_cidr(&h.node.vpc_id, "10.2.0.0/16".parse().unwrap())
        .unwrap();
    let mut text = String::new();
    for _ in 0..100 {
        text = http_get(metrics, "/metrics").await;
        if text.contains(r#"awscni_connmark_reconcile_total{result="success"} 2"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        text.contains(r#"awscni_connmark_reconcile_total{result="success"} 2"#),
        "{text}"
    );
    // The new CIDR is exempt from the connmark too.
    let chain = ns.exec(&["nft", "list", "chain", "ip", "aws-cni", "snat-mark"]);
    assert!(chain.contains("ip daddr 10.2.0.0/16 return"), "{chain}");
    agent.abort();
}
