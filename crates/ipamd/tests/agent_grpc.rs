//! The agent end to end over its real interfaces: EC2 and IMDS from the emulator over HTTP,
//! gRPC on a Unix socket, the checkpoint file, metrics and introspection over HTTP.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use ipamd::agent;
use support::{Harness, add, del, free_port, http_get};

/// Waits until EC2 has at least `at_least` secondary addresses on the instance's ENIs.
async fn wait_for_pool(h: &Harness, at_least: usize) {
    h.wait_for(&format!("{at_least} addresses in the pool"), |h| {
        h.ec2_secondary_count() >= at_least
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_and_dels_never_share_an_ip_and_errors_are_clear() {
    let h = Harness::new("m5.xlarge", "10.0.0.0/22", "conc").await;
    let (metrics, introspection) = (free_port(), free_port());
    let mut opts = h.options(Duration::from_secs(60), Some(introspection));
    opts.metrics_addr = Some(metrics);
    let agent = h.start(h.config(&[]), opts);
    let c = h.client().await;
    // m5.xlarge: 4 ENIs × 14 usable IPs = 56 at most; 200 requests exceed it on purpose.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 3 {
                // A DelNetwork for a key that may or may not have an address yet.
                let r = c.del_network(del(i - 1)).await;
                (i, None, r.err().map(|s| s.message().to_string()))
            } else {
                match c.add_network(add(i)).await {
                    Ok(r) => (i, Some(r.into_inner()), None),
                    Err(s) => (i, None, Some(s.message().to_string())),
                }
            }
        }));
    }
    let mut ips = BTreeSet::new();
    let mut errors = 0;
    for t in tasks {
        let (_, reply, err) = t.await.unwrap();
        if let Some(r) = reply {
            assert!(r.success);
            let ip = r.ip_allocation_metadata[0].i_pv4_addr.clone();
            assert!(ips.insert(ip.clone()), "{ip} handed out twice");
            assert!(r.vp_cv4_cid_rs.contains(&"10.0.0.0/16".to_string()));
        }
        if let Some(e) = err {
            errors += 1;
            assert!(
                e.contains("no free IP address on this node")
                    || e.contains("datastore: unknown pod"),
                "unclear error: {e}"
            );
        }
    }
    assert!(
        ips.len() >= 9,
        "the warm pool served at least one ENI's worth: {}",
        ips.len()
    );
    assert!(errors > 0, "200 requests must exceed an m5.xlarge");

    // Free some addresses; a new pod is then served (retrying as kubelet would while the
    // pool catches up), and a repeated ADD for the same key returns the same address.
    let mut c2 = c.clone();
    for i in 0..200 {
        let _ = c2.del_network(del(i)).await;
    }
    let mut first = None;
    for _ in 0..100 {
        match c2.add_network(add(1000)).await {
            Ok(r) => {
                first = Some(r.into_inner());
                break;
            }
            Err(s) => {
                assert!(
                    s.message().contains("no free IP address"),
                    "{}",
                    s.message()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let first = first.expect("an ADD is served once addresses are free");
    let again = c2.add_network(add(1000)).await.unwrap().into_inner();
    assert_eq!(first.ip_allocation_metadata, again.ip_allocation_metadata);

    // Metrics parse and count; introspection shows scrubbed ENIs.
    let text = http_get(metrics, "/metrics").await;
    assert!(text.contains("awscni_add_ip_req_count"), "{text}");
    assert!(text.contains("awscni_assigned_ip_addresses"), "{text}");
    let enis = http_get(introspection, "/v1/enis").await;
    assert!(
        enis.contains("\"0\"") && !enis.contains("container-1000"),
        "{enis}"
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_restarts_with_every_pod_keeping_its_ip() {
    // m5.2xlarge: 4 ENIs x 14 secondary addresses, room for 50 pods and 5 warm.
    let h = Harness::new("m5.2xlarge", "10.0.0.0/22", "restart").await;
    let cfg = h.config(&[("WARM_IP_TARGET", "5"), ("MINIMUM_IP_TARGET", "20")]);
    let opts = h.options(Duration::from_secs(60), None);
    let agent = tokio::spawn(agent::run(
        cfg.clone(),
        opts.clone(),
        std::future::pending(),
    ));
    let mut c = h.client().await;
    wait_for_pool(&h, 20).await;
    let mut before = Vec::new();
    for i in 0..50 {
        // The pool grows while pods arrive: retry an ADD that finds it empty.
        let mut got = None;
        for _ in 0..200 {
            if let Ok(r) = c.add_network(add(i)).await {
                got = Some(r.into_inner().ip_allocation_metadata[0].i_pv4_addr.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        before.push(got.unwrap_or_else(|| panic!("pod {i} got no address")));
    }
    // kill -9: the task is dropped mid-flight, no graceful checkpoint write.
    agent.abort();
    let _ = agent.await;

    let agent = tokio::spawn(agent::run(cfg, opts, std::future::pending()));
    let mut c = h.client().await;
    for (i, ip) in before.iter().enumerate() {
        let r = c.add_network(add(i)).await.unwrap().into_inner();
        assert_eq!(
            &r.ip_allocation_metadata[0].i_pv4_addr, ip,
            "pod {i} kept its IP"
        );
    }
    // No assigned address was given back to EC2: every one is still on an ENI.
    let on_enis: BTreeSet<String> = h.ec2_assigned().iter().map(ToString::to_string).collect();
    assert!(
        before.iter().all(|ip| on_enis.contains(ip)),
        "{before:?} vs {on_enis:?}"
    );
    // The pool converges again: 50 assigned + WARM_IP_TARGET=5 on EC2, and stays there.
    let secondaries = || h.ec2_secondary_count();
    for _ in 0..100 {
        if secondaries() == 55 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(secondaries(), 55, "50 pods + 5 warm after the restart");
    // A new pod gets a fresh address, not one of the restored ones.
    let r = c.add_network(add(99)).await.unwrap().into_inner();
    assert!(!before.contains(&r.ip_allocation_metadata[0].i_pv4_addr));
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policy_mode_reaches_the_plugin_and_the_policy_agent() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "npmode").await;
    let cfg = h.config(&[("NETWORK_POLICY_ENFORCING_MODE", "Strict")]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    let mut c = h.client().await;
    wait_for_pool(&h, 1).await;
    // The plugin calls the policy agent when the mode is in the replies.
    let added = c.add_network(add(0)).await.unwrap().into_inner();
    assert!(added.success);
    assert_eq!(added.network_policy_mode, "strict");
    let deleted = c.del_network(del(0)).await.unwrap().into_inner();
    assert_eq!(deleted.network_policy_mode, "strict");
    // The policy agent reads its settings from ipamd's socket at its start.
    let socket = format!("unix://{}", h.dir.join("ipamd.sock").display());
    let channel = rpc::client::connect(&socket, None).await.unwrap();
    let cfg = rpc::ConfigServerBackendClient::new(channel)
        .get_network_policy_configs(())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cfg.network_policy_mode, "strict");
    assert_eq!(cfg.node_i_pv4, h.node.primary_ip.to_string());
    assert_eq!(cfg.instance_id, h.node.instance_id);
    assert_eq!(cfg.region, "us-west-2");
    assert!(cfg.node_i_pv6.is_empty() && !cfg.multi_nic_enabled);
    agent.abort();
}
