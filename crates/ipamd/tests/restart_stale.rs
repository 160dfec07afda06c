//! Restart recovery against the kernel (upstream's `ReadBackingStore`): a pod that went away
//! while ipamd was down (its DEL tore the veth down but could not release the address) is
//! released with its rules by the sweep after the next start; a pod whose veth exists keeps
//! its address, and so does a pod whose ADD had its address but not yet its veth when the
//! agent was killed, once its veth appears.

mod support;

use std::time::Duration;

use ec2_emulator::server;
use ec2_emulator::testing::TestNetns;
use ipamd::agent::HostNetOptions;
use support::{Harness, add_pod};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_whose_veth_is_gone_are_released_at_restart() {
    let ns = TestNetns::new("ipamd-stale");
    let h = Harness::new("m5.large", "10.0.0.0/24", "stale").await;
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    server::lock(h.emu()).set_hotplug(&h.node.instance_id, &ns.0);
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.host_network = Some(HostNetOptions {
        netns: Some(format!("/var/run/netns/{}", ns.0).into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    let cfg = h.config(&[]);
    let agent = h.start(cfg.clone(), opts.clone());
    let mut c = h.client().await;
    let alive = add_pod(&mut c, 1).await;
    let gone = add_pod(&mut c, 2).await;
    // The live pod's host veth exists (as the plugin made it); the other pod's is gone,
    // but its from-pod and to-pod rules were left behind.
    let veth = net::names::host_veth_name("eni", "default", "pod-1", 0);
    ns.ip(&[
        "link",
        "add",
        &veth,
        "type",
        "veth",
        "peer",
        "name",
        "stale-peer",
    ]);
    ns.ip(&[
        "rule",
        "add",
        "from",
        &format!("{gone}/32"),
        "lookup",
        "main",
        "pref",
        "1536",
    ]);
    ns.ip(&[
        "rule",
        "add",
        "to",
        &format!("{gone}/32"),
        "lookup",
        "main",
        "pref",
        "512",
    ]);
    ns.ip(&[
        "rule",
        "add",
        "from",
        &format!("{alive}/32"),
        "lookup",
        "main",
        "pref",
        "1536",
    ]);
    agent.abort();
    let _ = agent.await;

    let agent = h.start(cfg, opts);
    let mut c = h.client().await;
    // Both allocations are restored; the sweep releases the stale one after its looks.
    let pods = h.checkpoint_pods();
    assert_eq!(pods.get("container-2"), Some(&gone), "{pods:?}");
    let sweep: Duration = ipamd::stale_pods::SWEEP_AFTER.iter().sum();
    tokio::time::sleep(sweep + Duration::from_secs(2)).await;
    let pods = h.checkpoint_pods();
    assert_eq!(pods.get("container-1"), Some(&alive), "{pods:?}");
    assert_eq!(
        pods.get("container-2"),
        None,
        "the stale allocation was dropped: {pods:?}"
    );
    let rules = ns.ip(&["rule"]);
    assert!(
        !rules.contains(&gone.to_string()),
        "stale rules removed: {rules}"
    );
    assert!(
        rules.contains(&format!("from {alive} lookup main")),
        "live rule kept: {rules}"
    );
    // The live pod keeps its address; the freed one can serve a new pod.
    assert_eq!(add_pod(&mut c, 1).await, alive);
    assert!(!agent.is_finished());
    agent.abort();
}

/// The race the start-up check alone loses (found by the fault suite, docs/reliability.md):
/// a DEL that runs after the check listed the links but before gRPC is served tears the pod
/// down from `prevResult`. The sweep after start (`ipamd::stale_pods::sweep_after_start`)
/// releases that allocation; a pod whose veth stays keeps its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_veth_gone_just_after_start_is_released_by_the_sweep() {
    let ns = TestNetns::new("ipamd-sweep");
    let h = Harness::new("m5.large", "10.0.0.0/24", "sweep").await;
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    server::lock(h.emu()).set_hotplug(&h.node.instance_id, &ns.0);
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.host_network = Some(HostNetOptions {
        netns: Some(format!("/var/run/netns/{}", ns.0).into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    let cfg = h.config(&[]);
    let agent = h.start(cfg.clone(), opts.clone());
    let mut c = h.client().await;
    let kept = add_pod(&mut c, 1).await;
    let torn = add_pod(&mut c, 2).await;
    for (pod, peer) in [("pod-1", "sweep-peer-1"), ("pod-2", "sweep-peer-2")] {
        let veth = net::names::host_veth_name("eni", "default", pod, 0);
        ns.ip(&["link", "add", &veth, "type", "veth", "peer", "name", peer]);
    }
    agent.abort();
    let _ = agent.await;

    let agent = h.start(cfg, opts);
    let _c = h.client().await;
    assert_eq!(h.checkpoint_pods().get("container-2"), Some(&torn));
    // Serving: the prevResult teardown of pod-2 lands now.
    let veth = net::names::host_veth_name("eni", "default", "pod-2", 0);
    ns.ip(&["link", "del", &veth]);
    let sweep: Duration = ipamd::stale_pods::SWEEP_AFTER.iter().sum();
    tokio::time::sleep(sweep + Duration::from_secs(2)).await;
    let pods = h.checkpoint_pods();
    assert_eq!(
        pods.get("container-2"),
        None,
        "released by the sweep: {pods:?}"
    );
    assert_eq!(pods.get("container-1"), Some(&kept), "{pods:?}");
    assert!(!agent.is_finished());
    agent.abort();
}

/// The race the fault suite's long mode found (docs/reliability.md): the agent is killed
/// after answering an ADD whose plugin has not made the pod's veth yet. The restarted agent
/// must not take the address back before the veth appears, or a second pod gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_in_flight_at_the_kill_keeps_its_address_once_its_veth_appears() {
    let ns = TestNetns::new("ipamd-inflight");
    let h = Harness::new("m5.large", "10.0.0.0/24", "inflight").await;
    ns.add_primary_interface(&h.node.primary_mac, h.node.primary_ip);
    server::lock(h.emu()).set_hotplug(&h.node.instance_id, &ns.0);
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.host_network = Some(HostNetOptions {
        netns: Some(format!("/var/run/netns/{}", ns.0).into()),
        link_attempts: 50,
        link_interval: Duration::from_millis(100),
    });
    let cfg = h.config(&[]);
    let agent = h.start(cfg.clone(), opts.clone());
    let mut c = h.client().await;
    let in_flight = add_pod(&mut c, 1).await;
    agent.abort();
    let _ = agent.await;

    let agent = h.start(cfg, opts);
    let mut c = h.client().await;
    // The plugin of the ADD in flight makes its veth only now, after the agent serves.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let veth = net::names::host_veth_name("eni", "default", "pod-1", 0);
    ns.ip(&[
        "link",
        "add",
        &veth,
        "type",
        "veth",
        "peer",
        "name",
        "inflight-peer",
    ]);
    let sweep: Duration = ipamd::stale_pods::SWEEP_AFTER.iter().sum();
    tokio::time::sleep(sweep + Duration::from_secs(2)).await;
    assert_eq!(h.checkpoint_pods().get("container-1"), Some(&in_flight));
    let other = add_pod(&mut c, 2).await;
    assert_ne!(other, in_flight, "the address went to a second pod");
    assert!(!agent.is_finished());
    agent.abort();
}
