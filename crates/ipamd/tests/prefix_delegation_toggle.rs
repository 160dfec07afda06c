//! Switching `ENABLE_PREFIX_DELEGATION` on a node with pods, end to end against the EC2 +
//! IMDS emulator (upstream `nodeInit`'s `tryUnassignIPsFromENIs`/`tryUnassignPrefixesFromENIs`
//! and `DelNetwork`'s `tryUnassignPrefixFromENI`): the agent restarts on the same checkpoint
//! in the other mode; the other mode's addresses no pod holds go back to EC2 at once, the
//! pods keep theirs, and each is given back as soon as its pod is deleted (the DEL wakes the
//! pool loop). Both directions.

mod support;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use ec2_emulator::server;
use ipnet::Ipv4Net;
use support::{Harness, add_pod, del_pod};

/// Prefix delegation as the upstream manifests set it up.
const PD_ON: &[(&str, &str)] = &[
    ("ENABLE_PREFIX_DELEGATION", "true"),
    ("WARM_PREFIX_TARGET", "1"),
];

/// (secondary IPs, prefixes) EC2 has on the instance's attached ENIs.
fn ec2_cidrs(h: &Harness) -> (BTreeSet<Ipv4Addr>, BTreeSet<Ipv4Net>) {
    let emu = server::lock(h.emu());
    let mut ips = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    for eni in emu.world.attached_enis(&h.node.instance_id) {
        ips.extend(eni.secondary_ips.iter().copied());
        prefixes.extend(eni.prefixes.iter().copied());
    }
    (ips, prefixes)
}

/// After the restart the pool ticks only at start and when woken (an ADD finding the pool
/// low, a DEL emptying a leftover CIDR): releases seen within the wait are the DEL's doing.
fn slow_ticks(mut opts: ipamd::agent::AgentOptions) -> ipamd::agent::AgentOptions {
    opts.timers.pool = Duration::from_secs(600);
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_prefix_delegation_on_releases_unused_secondary_ips() {
    let h = Harness::new("m5.large", "10.0.0.0/22", "pd-on").await;
    let opts = h.options(Duration::from_secs(60), None);
    let agent = h.start(h.config(&[]), opts.clone());
    let mut c = h.client().await;
    let mut pods = Vec::new();
    for i in 0..3 {
        pods.push(add_pod(&mut c, i).await);
    }
    // The secondary-IP pool: an ENI's worth (WARM_ENI_TARGET=1) beyond the pods.
    h.wait_for("a warm pool of secondary IPs", |h| ec2_cidrs(h).0.len() > 3)
        .await;
    assert!(ec2_cidrs(&h).1.is_empty(), "no prefixes yet");
    agent.abort();
    let _ = agent.await;
    let held = h.checkpoint_pods();
    assert_eq!(held.len(), 3);

    let agent = h.start(h.config(PD_ON), slow_ticks(opts));
    let mut c = h.client().await;
    let pod_ips: BTreeSet<Ipv4Addr> = pods.iter().copied().collect();
    // Every secondary IP but the pods' goes back; the pool is now made of prefixes.
    h.wait_for("only the pods' secondary IPs left", |h| {
        let (ips, prefixes) = ec2_cidrs(h);
        ips == pod_ips && !prefixes.is_empty()
    })
    .await;
    assert_eq!(h.checkpoint_pods(), held, "pods keep their addresses");
    for (i, ip) in pods.iter().enumerate() {
        assert_eq!(add_pod(&mut c, i).await, *ip, "pod {i} still holds {ip}");
    }
    // A new pod is served from a prefix.
    let new = add_pod(&mut c, 10).await;
    assert!(
        ec2_cidrs(&h).1.iter().any(|p| p.contains(&new)),
        "{new} from a prefix"
    );

    // Each pod's secondary IP goes back once the pod is deleted.
    del_pod(&mut c, 0).await;
    let rest: BTreeSet<Ipv4Addr> = pods[1..].iter().copied().collect();
    h.wait_for("pod 0's secondary IP released", |h| ec2_cidrs(h).0 == rest)
        .await;
    del_pod(&mut c, 1).await;
    del_pod(&mut c, 2).await;
    h.wait_for("no secondary IP left", |h| ec2_cidrs(h).0.is_empty())
        .await;
    assert!(
        ec2_cidrs(&h).1.iter().any(|p| p.contains(&new)),
        "the prefix pool stays"
    );
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_prefix_delegation_off_releases_prefixes_once_empty() {
    let h = Harness::new("m5.large", "10.0.0.0/22", "pd-off").await;
    let opts = h.options(Duration::from_secs(60), None);
    let agent = h.start(h.config(PD_ON), opts.clone());
    let mut c = h.client().await;
    let mut pods = Vec::new();
    for i in 0..3 {
        pods.push(add_pod(&mut c, i).await);
    }
    // WARM_PREFIX_TARGET=1: a free prefix besides the pods' one.
    h.wait_for("a free prefix", |h| ec2_cidrs(h).1.len() >= 2)
        .await;
    assert!(ec2_cidrs(&h).0.is_empty(), "no secondary IPs yet");
    agent.abort();
    let _ = agent.await;
    let held = h.checkpoint_pods();
    let used: BTreeSet<Ipv4Net> = ec2_cidrs(&h)
        .1
        .into_iter()
        .filter(|p| pods.iter().any(|ip| p.contains(ip)))
        .collect();
    assert!(!used.is_empty());

    let agent = h.start(h.config(&[]), slow_ticks(opts));
    let mut c = h.client().await;
    // Prefixes without pods go back; the pool is now made of secondary IPs.
    h.wait_for("only the pods' prefixes left", |h| {
        let (ips, prefixes) = ec2_cidrs(h);
        prefixes == used && !ips.is_empty()
    })
    .await;
    assert_eq!(h.checkpoint_pods(), held, "pods keep their addresses");
    for (i, ip) in pods.iter().enumerate() {
        assert_eq!(add_pod(&mut c, i).await, *ip, "pod {i} still holds {ip}");
    }
    let new = add_pod(&mut c, 10).await;
    assert!(ec2_cidrs(&h).0.contains(&new), "{new} is a secondary IP");

    // A prefix stays while any of its pods does, and goes back with the last one.
    del_pod(&mut c, 0).await;
    del_pod(&mut c, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        ec2_cidrs(&h).1.iter().any(|p| p.contains(&pods[2])),
        "pod 2's prefix stays while pod 2 runs"
    );
    del_pod(&mut c, 2).await;
    h.wait_for("no prefix left", |h| ec2_cidrs(h).1.is_empty())
        .await;
    assert!(
        ec2_cidrs(&h).0.contains(&new),
        "the secondary-IP pool stays"
    );
    assert!(!agent.is_finished(), "the agent is running");
    agent.abort();
}
