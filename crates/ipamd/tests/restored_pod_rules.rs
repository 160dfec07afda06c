//! Start-up rule work against the kernel, in a node network namespace made for each test
//! (root): the from-pod rules of pods restored from the checkpoint are collapsed into one
//! priority-1536 rule each (upstream's `configureIPRulesForPods` → `UpdateRuleListBySrc`),
//! and the `AWS_EXTERNAL_SERVICE_CIDRS` rules at priority 1535 follow the setting across
//! restarts (upstream's `UpdateExternalServiceIpRules`).

mod support;

use std::time::Duration;

use config::Config;
use ec2_emulator::server;
use ec2_emulator::testing::TestNetns;
use ipamd::agent::{AgentOptions, HostNetOptions};
use support::{Harness, add_pod};

async fn node(tag: &str) -> (Harness, TestNetns, AgentOptions) {
    let ns = TestNetns::new(tag);
    let h = Harness::new("m5.large", "10.0.0.0/24", tag).await;
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    server::lock(h.emu()).set_hotplug(&h.node.instance_id, &ns.0);
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.host_network = Some(HostNetOptions {
        netns: Some(ns.path().into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    (h, ns, opts)
}

/// `ip rule add <args>` in `ns`.
fn rule(ns: &TestNetns, args: &str) {
    let mut argv = vec!["rule", "add"];
    argv.extend(args.split_whitespace());
    ns.ip(&argv);
}

/// The node's rules, one per line, with the given address in them.
fn rules_of(ns: &TestNetns, needle: &str) -> Vec<String> {
    ns.ip(&["rule"])
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The node's rules but the priority-32765 ones of ENIs the agent attached (their number
/// depends on how far the warm pool grew).
fn rules_but_attached_enis(ns: &TestNetns) -> String {
    ns.ip(&["rule"])
        .lines()
        .filter(|l| !l.starts_with("32765:") || l.contains("10.0.5."))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs the agent until its gRPC server answers, then stops it.
async fn start_and_stop(h: &Harness, cfg: Config, opts: AgentOptions) {
    let agent = h.start(cfg, opts);
    h.client().await;
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
    let _ = agent.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_pods_old_per_cidr_rules_become_one_priority_1536_rule() {
    let (h, ns, opts) = node("pod-rules").await;
    let cfg = h.config(&[]);
    let agent = h.start(cfg.clone(), opts.clone());
    let mut c = h.client().await;
    let old = add_pod(&mut c, 1).await;
    let bare = add_pod(&mut c, 2).await;
    agent.abort();
    let _ = agent.await;
    // Both pods are alive (their host veths exist, so the restore keeps them). Pod 1 has
    // the per-VPC-CIDR rules an old plugin wrote, pod 2 none (an ENI on table main).
    for (i, peer) in [(1, "p1-peer"), (2, "p2-peer")] {
        let veth = net::names::host_veth_name("eni", "default", &format!("pod-{i}"), 0);
        ns.ip(&["link", "add", &veth, "type", "veth", "peer", "name", peer]);
    }
    rule(
        &ns,
        &format!("from {old} to 10.0.0.0/16 lookup 2 pref 1536"),
    );
    rule(
        &ns,
        &format!("from {old} to 100.64.0.0/16 lookup 2 pref 1536"),
    );
    // Not ours to change: pod 1's to-pod rule, an address no restored pod holds, an ENI's.
    let others = [
        format!("to {old} lookup main pref 512"),
        "from 10.0.5.250 to 10.0.0.0/16 lookup 2 pref 1536".to_string(),
        "from 10.0.5.251 lookup 2 pref 32765".to_string(),
    ];
    for r in &others {
        rule(&ns, r);
    }
    let before = rules_but_attached_enis(&ns);

    start_and_stop(&h, cfg.clone(), opts.clone()).await;
    let pods = h.checkpoint_pods();
    assert_eq!(pods.get("container-1"), Some(&old), "{pods:?}");
    assert_eq!(pods.get("container-2"), Some(&bare), "{pods:?}");
    let after = rules_but_attached_enis(&ns);
    assert_eq!(
        rules_of(&ns, &format!("from {old} ")),
        [format!("1536:\tfrom {old} lookup 2")],
        "one rule for pod 1, no per-CIDR ones: {after}"
    );
    assert!(
        !after.contains(&format!("from {bare} ")),
        "pod 2 had no rule and gets none: {after}"
    );
    for line in before
        .lines()
        .filter(|l| !l.contains(&format!("from {old} ")))
    {
        assert!(after.contains(line), "{line:?} untouched:\n{after}");
    }
    assert_eq!(
        after.lines().count(),
        before.lines().count() - 1,
        "two rules became one, nothing else changed:\nbefore:\n{before}\nafter:\n{after}"
    );

    // The next start finds it converged.
    start_and_stop(&h, cfg, opts).await;
    assert_eq!(rules_but_attached_enis(&ns), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_service_rules_follow_the_setting_across_restarts() {
    let (h, ns, opts) = node("ext-restart").await;
    rule(&ns, "to 100.64.0.0/16 lookup 100 pref 1535");
    let first = h.config(&[("AWS_EXTERNAL_SERVICE_CIDRS", "192.0.2.0/24,198.51.100.0/24")]);
    start_and_stop(&h, first.clone(), opts.clone()).await;
    let want = [
        "1535:\tfrom all to 192.0.2.0/24 lookup main",
        "1535:\tfrom all to 198.51.100.0/24 lookup main",
        "1535:\tfrom all to 100.64.0.0/16 lookup 100",
    ];
    let sorted = |v: &[&str]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    let mut have = rules_of(&ns, "1535:");
    have.sort();
    assert_eq!(have, sorted(&want));

    // Same setting again: the same rules, once each.
    start_and_stop(&h, first, opts.clone()).await;
    let mut have = rules_of(&ns, "1535:");
    have.sort();
    assert_eq!(have, sorted(&want));

    // Changed: the dropped CIDR's rule goes, the new one comes, table 100's stays.
    let changed = h.config(&[(
        "AWS_EXTERNAL_SERVICE_CIDRS",
        "198.51.100.0/24,203.0.113.0/24",
    )]);
    start_and_stop(&h, changed, opts.clone()).await;
    let mut have = rules_of(&ns, "1535:");
    have.sort();
    assert_eq!(
        have,
        sorted(&[
            "1535:\tfrom all to 198.51.100.0/24 lookup main",
            "1535:\tfrom all to 203.0.113.0/24 lookup main",
            "1535:\tfrom all to 100.64.0.0/16 lookup 100",
        ])
    );

    // Unset: none of table main's are left.
    start_and_stop(&h, h.config(&[]), opts).await;
    assert_eq!(
        rules_of(&ns, "1535:"),
        ["1535:\tfrom all to 100.64.0.0/16 lookup 100"]
    );
}
