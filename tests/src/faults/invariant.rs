//! The invariant, checked after every scenario (docs/reliability.md, "The invariant"):
//!
//! 1. every pod that got an address still has it: the checkpoint holds it for that pod, and
//!    EC2 lists it on an ENI attached to the node;
//! 2. no address is held by two pods (neither among the pods nor in the checkpoint);
//! 3. every checkpointed address is on an ENI EC2 says is attached, and belongs to a live pod;
//! 4. no kernel leftovers for deleted pods: host veths, `/32` routes, pod rules and iptables
//!    entries name live pods only, and every live pod has its route and rule;
//! 5. no ENI the agent created is left `available` once the cleanup window has passed (the
//!    agent's own cleanup, `ipamd::leaked_enis::clean_up`, run with the clock moved past it);
//! 6. the pool returns to its target: EC2's secondary addresses reach
//!    max(pods + WARM_IP_TARGET, MINIMUM_IP_TARGET) (in the short mode, between scenarios,
//!    only "at least": the shrink back is checked at the end of the round).
//!
//! Each numbered item is one check (`Tally::checks`); a failure is a violation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ec2_emulator::server;
use ipnet::IpNet;
use net::route_table::{MAIN_TABLE, priority};
use serde_json::Value;

use super::node::{FaultNode, MINIMUM_IP_TARGET, WARM_IP_TARGET};
use super::pods::Kubelet;

/// The name and outcome of one check.
pub type Check = (&'static str, Result<(), String>);

/// (container ID → address) of the checkpoint, and the addresses held twice.
fn checkpoint_allocations(
    text: &str,
) -> Result<(BTreeMap<String, Ipv4Addr>, Vec<Ipv4Addr>), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("checkpoint unreadable: {e}"))?;
    let mut by_cid = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut twice = Vec::new();
    for a in v["allocations"].as_array().into_iter().flatten() {
        let Some(ip) = a["ipv4"].as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        if !seen.insert(ip) {
            twice.push(ip);
        }
        by_cid.insert(
            a["containerID"].as_str().unwrap_or_default().to_string(),
            ip,
        );
    }
    Ok((by_cid, twice))
}

/// The secondary addresses on ENIs attached to the node, and the number of them.
fn ec2_attached(node: &FaultNode) -> BTreeSet<Ipv4Addr> {
    let emu = server::lock(node.emu());
    emu.world
        .attached_enis(&node.emulated.instance_id)
        .iter()
        .flat_map(|e| e.secondary_ips.iter().copied())
        .collect()
}

/// ENIs tagged with this node's instance ID that are not attached.
fn available_enis(node: &FaultNode) -> Vec<String> {
    let emu = server::lock(node.emu());
    emu.world
        .enis
        .values()
        .filter(|e| e.attachment.is_none())
        .filter(|e| {
            e.tags
                .get("node.k8s.amazonaws.com/instance_id")
                .is_some_and(|i| *i == node.emulated.instance_id)
        })
        .map(|e| e.id.clone())
        .collect()
}

/// The pool's target for `pods` pods.
pub fn pool_target(pods: u64) -> u64 {
    (pods + WARM_IP_TARGET).max(MINIMUM_IP_TARGET)
}

/// Waits (bounded) until EC2's secondary addresses reach the pool's target: at least the
/// target (the pool is never left short; growth is immediate), and, with `exact`, exactly the
/// target (the surplus is given back; upstream shrinks at most every 30 s,
/// `planner::DECREASE_INTERVAL`, after the IP cooldown, so this may take 40 s).
async fn pool_settles(node: &FaultNode, pods: u64, exact: bool) -> Result<(), String> {
    let want = pool_target(pods);
    let mut have = 0;
    for _ in 0..600 {
        have = ec2_attached(node).len() as u64;
        if have == want || (!exact && have >= want) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "the pool stayed at {have} addresses, target {want} for {pods} pods"
    ))
}

fn pods_keep_addresses(
    live: &[(String, Ipv4Addr, String)],
    ckpt: &BTreeMap<String, Ipv4Addr>,
    ec2: &BTreeSet<Ipv4Addr>,
) -> Result<(), String> {
    let mut bad = Vec::new();
    for (cid, ip, _) in live {
        if ckpt.get(cid) != Some(ip) {
            bad.push(format!(
                "{cid} has {ip}, the checkpoint {:?}",
                ckpt.get(cid)
            ));
        }
        if !ec2.contains(ip) {
            bad.push(format!("{cid}'s {ip} is on no attached ENI"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn no_address_twice(
    live: &[(String, Ipv4Addr, String)],
    twice_in_ckpt: &[Ipv4Addr],
) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    let dup: Vec<_> = live.iter().filter(|(_, ip, _)| !seen.insert(*ip)).collect();
    if dup.is_empty() && twice_in_ckpt.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "held twice: pods {dup:?}, checkpoint {twice_in_ckpt:?}"
        ))
    }
}

fn checkpoint_is_true(
    live: &[(String, Ipv4Addr, String)],
    ckpt: &BTreeMap<String, Ipv4Addr>,
    ec2: &BTreeSet<Ipv4Addr>,
) -> Result<(), String> {
    let live_ids: BTreeSet<&String> = live.iter().map(|(c, _, _)| c).collect();
    let mut bad = Vec::new();
    for (cid, ip) in ckpt {
        if !ec2.contains(ip) {
            bad.push(format!("{cid}: {ip} is on no attached ENI"));
        }
        if !live_ids.contains(cid) {
            bad.push(format!("{cid} ({ip}) is checkpointed but its pod is gone"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

/// Pod-shaped kernel state of the node namespace must be the live pods' (and all of it).
async fn kernel_is_clean(
    node: &FaultNode,
    live: &[(String, Ipv4Addr, String)],
) -> Result<(), String> {
    let state = node.ns.state().await;
    let ips: BTreeSet<Ipv4Addr> = live.iter().map(|(_, ip, _)| *ip).collect();
    let veths: BTreeSet<&str> = live.iter().map(|(_, _, v)| v.as_str()).collect();
    let mut bad = Vec::new();
    let have_veths: BTreeSet<&str> = state
        .links
        .iter()
        .filter(|l| l.name.starts_with("eni") && l.kind.as_deref() == Some("veth"))
        .map(|l| l.name.as_str())
        .collect();
    if have_veths != veths {
        bad.push(format!("host veths {have_veths:?}, pods {veths:?}"));
    }
    let host = |n: &IpNet| match n {
        IpNet::V4(n) if n.prefix_len() == 32 => Some(n.addr()),
        _ => None,
    };
    let routed: BTreeSet<Ipv4Addr> = state
        .routes
        .iter()
        .filter(|r| r.table == MAIN_TABLE && r.dev.as_deref().is_some_and(|d| d.starts_with("eni")))
        .filter_map(|r| host(&r.dst))
        .collect();
    if routed != ips {
        bad.push(format!("/32 routes to {routed:?}, pods {ips:?}"));
    }
    let ruled: BTreeSet<Ipv4Addr> = state
        .rules
        .iter()
        .filter(|r| r.priority == Some(priority::TO_POD) || r.priority == Some(priority::FROM_POD))
        .filter_map(|r| r.dst.as_ref().or(r.src.as_ref()).and_then(host))
        .collect();
    let stray: Vec<_> = ruled.difference(&ips).collect();
    let missing: Vec<_> = ips.difference(&ruled).collect();
    if !stray.is_empty() || !missing.is_empty() {
        bad.push(format!("pod rules: stray {stray:?}, missing {missing:?}"));
    }
    let firewall = node.ns.exec(&["iptables-save"]);
    let leftovers: Vec<&str> = firewall
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter(|l| {
            l.split_whitespace()
                .filter_map(|w| w.strip_suffix("/32")?.parse::<Ipv4Addr>().ok())
                .any(|ip| ip.octets()[..3] == [10, 0, 0] && !ips.contains(&ip))
        })
        .collect();
    if !leftovers.is_empty() {
        bad.push(format!("iptables entries for gone pods: {leftovers:?}"));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

/// Runs the agent's leaked-ENI cleanup with the clock past its window; nothing tagged for
/// this node may stay `available`.
async fn no_leaked_enis(node: &FaultNode) -> Result<(), String> {
    if available_enis(node).is_empty() {
        return Ok(());
    }
    let mut settings = aws::Ec2Settings::from_lookup("us-west-2", |_| None);
    settings.endpoint = Some(node.emulated.ec2_endpoint.clone());
    settings.static_credentials = Some(("testing".into(), "testing".into()));
    let ec2 = aws::ec2_client(&settings, Arc::new(aws::ApiStats::default())).await;
    let now = std::time::SystemTime::now();
    let later = ipam::Timestamp::from_system_time(
        now + ipamd::leaked_enis::MIN_AGE + Duration::from_secs(60),
    );
    let vpc = node.emulated.vpc_id.clone();
    // The first run stamps ENIs without a creation time; the second, later, deletes them.
    ipamd::leaked_enis::clean_up(&ec2, &vpc, "faults", ipam::Timestamp::from_system_time(now))
        .await;
    let report = ipamd::leaked_enis::clean_up(&ec2, &vpc, "faults", later).await;
    let left = available_enis(node);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "ENIs left available after cleanup: {left:?} ({report:?})"
        ))
    }
}

/// Every check of the invariant, in order; `exact_pool`: wait for the pool to shrink back to
/// its target too (not only to be no smaller).
pub async fn check(node: &mut FaultNode, kubelet: &Arc<Kubelet>, exact_pool: bool) -> Vec<Check> {
    let mut out: Vec<Check> = Vec::new();
    let running = node.agent_running();
    out.push((
        "agent running",
        if running {
            Ok(())
        } else {
            Err("the agent is not running".into())
        },
    ));
    let problems = kubelet.take_problems();
    out.push((
        "plugin answers",
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        },
    ));
    let live = kubelet.live_view();
    let pool = pool_settles(node, live.len() as u64, exact_pool).await;
    out.push(if exact_pool {
        ("pool returns to its target", pool)
    } else {
        ("pool at or above its target", pool)
    });
    node.wait_past_start_sweep().await;
    let ec2 = ec2_attached(node);
    match checkpoint_allocations(&node.checkpoint_text()) {
        Ok((ckpt, twice)) => {
            out.push((
                "pods keep their addresses",
                pods_keep_addresses(&live, &ckpt, &ec2),
            ));
            out.push(("no address held twice", no_address_twice(&live, &twice)));
            out.push((
                "checkpoint matches EC2 and the pods",
                checkpoint_is_true(&live, &ckpt, &ec2),
            ));
        }
        Err(e) => out.push(("checkpoint readable", Err(e))),
    }
    let mut kernel = kernel_is_clean(node, &live).await;
    for _ in 0..20 {
        if kernel.is_ok() {
            break;
        }
        // Netlink state trails a DEL that has just returned by a moment.
        tokio::time::sleep(Duration::from_millis(250)).await;
        kernel = kernel_is_clean(node, &live).await;
    }
    out.push(("no kernel leftovers", kernel));
    out.push(("no leaked ENIs", no_leaked_enis(node).await));
    out
}
