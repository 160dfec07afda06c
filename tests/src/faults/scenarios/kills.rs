//! Kills: ipamd SIGKILLed at random points during bursts of ADD/DEL, pool growth (with a
//! slow attach, so that kills land between create and attach, attach and host setup, assign
//! and checkpoint), pool shrink and start-up (EC2-truth reconcile and checkpoint restore);
//! aws-cni killed mid-ADD and mid-DEL; the CNI protocol's edges (DEL before ADD, DEL twice,
//! ADD retried with the same key, the pod's namespace gone before DEL, ipamd down during DEL).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ec2_emulator::server;

use super::super::Rng;
use super::super::pods::{Added, Kubelet, cni_env, conf, run_plugin};
use super::{Outcome, Suite, blocking};
use crate::TestNetns;

/// Random ADDs and DELs on `k` (at most `max_live` pods), `ops` of them.
fn churn(k: &Kubelet, ops: u64, max_live: usize, rng: &mut Rng) {
    for _ in 0..ops {
        let live = k.live_ids();
        if live.len() < max_live && (live.is_empty() || rng.chance(60)) {
            k.add(None);
        } else if let Some(cid) = live.get(rng.range(0, live.len() as u64) as usize) {
            k.del(cid, None);
        }
    }
}

/// Three workers churning concurrently.
fn start_churn(k: &Arc<Kubelet>, ops: u64, rng: &mut Rng) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3)
        .map(|_| {
            let (k, mut r) = (k.clone(), rng.fork());
            tokio::task::spawn_blocking(move || churn(&k, ops, 10, &mut r))
        })
        .collect()
}

pub async fn agent_during_churn(s: &mut Suite, rng: &mut Rng) -> Outcome {
    let mut out = Outcome::new();
    let times = if s.mode == super::super::Mode::Long {
        rng.range(3, 8)
    } else {
        rng.range(1, 3)
    };
    for _ in 0..times {
        let workers = start_churn(&s.kubelet, rng.range(3, 7), rng);
        tokio::time::sleep(rng.millis(0, 1500)).await;
        s.kill_agent();
        tokio::time::sleep(rng.millis(0, 500)).await;
        out.push((
            "restart after a kill during churn".into(),
            s.restart().await,
        ));
        for w in workers {
            let _ = w.await;
        }
    }
    out
}

pub async fn agent_during_growth(s: &mut Suite, rng: &mut Rng) -> Outcome {
    s.trim_pods(3).await;
    let latency = rng.range(200, 1500);
    server::lock(s.node.emu()).faults.attach_latency_ms = latency;
    let n = s.pods_to_grow().unwrap_or(0) + rng.range(0, 3) as usize;
    let kubelet = s.kubelet.clone();
    let adds = tokio::spawn(async move {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let k = kubelet.clone();
                tokio::task::spawn_blocking(move || k.add_retrying(Duration::from_secs(20)))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    tokio::time::sleep(rng.millis(0, latency + 2000)).await;
    s.kill_agent();
    let restarted = s.restart().await;
    let _ = adds.await;
    server::lock(s.node.emu()).faults.attach_latency_ms = 0;
    vec![("restart after a kill during growth".into(), restarted)]
}

pub async fn agent_during_shrink(s: &mut Suite, rng: &mut Rng) -> Outcome {
    let have = s.kubelet.live_ids().len();
    if have < 10 {
        s.add_pods(10 - have).await;
    }
    let kubelet = s.kubelet.clone();
    let n = rng.range(5, 10) as usize;
    let dels = tokio::spawn(async move {
        let ids: Vec<String> = kubelet.live_ids().into_iter().take(n).collect();
        let tasks: Vec<_> = ids
            .into_iter()
            .map(|cid| {
                let k = kubelet.clone();
                tokio::task::spawn_blocking(move || k.del(&cid, None))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    // The pool tick (5 s) and the cooldown (1 s) decide when the shrink calls EC2.
    tokio::time::sleep(rng.millis(0, 7000)).await;
    s.kill_agent();
    let restarted = s.restart().await;
    let _ = dels.await;
    vec![("restart after a kill during shrink".into(), restarted)]
}

pub async fn agent_during_start(s: &mut Suite, rng: &mut Rng) -> Outcome {
    let mut out = Outcome::new();
    for _ in 0..rng.range(1, 4) {
        s.kill_agent();
        if let Err(e) = s.node.spawn_agent() {
            out.push(("spawn".into(), Err(e)));
            continue;
        }
        tokio::time::sleep(rng.millis(0, 2500)).await;
        s.kill_agent();
    }
    out.push((
        "start after kills during start-up".into(),
        s.restart().await,
    ));
    out
}

pub async fn plugin_killed(s: &mut Suite, rng: &mut Rng) -> Outcome {
    s.trim_pods(6).await;
    let before = s.kubelet.plugin_kills.load(Ordering::Relaxed);
    for _ in 0..rng.range(3, 8) {
        let k = s.kubelet.clone();
        let kill = rng.millis(0, 250);
        if rng.chance(50) || k.live_ids().is_empty() {
            blocking(move || k.add(Some(kill))).await;
        } else {
            let cid = k.live_ids()[0].clone();
            blocking(move || k.del(&cid, Some(kill))).await;
        }
    }
    s.tally.kills += s.kubelet.plugin_kills.load(Ordering::Relaxed) - before;
    Vec::new()
}

/// One plugin run's exit code must be 0.
fn succeeds(what: &str, rc: Option<i32>, stdout: &str) -> (String, Result<(), String>) {
    let r = if rc == Some(0) {
        Ok(())
    } else {
        Err(format!("{what}: rc {rc:?}, {stdout}"))
    };
    (what.to_string(), r)
}

pub async fn cni_protocol_edges(s: &mut Suite, rng: &mut Rng) -> Outcome {
    s.trim_pods(6).await;
    let k = s.kubelet.clone();
    let mut out = Outcome::new();
    // DEL before ADD.
    let (name, cid) = k.new_pod();
    let ns = TestNetns::new("faults-pod");
    let env = cni_env("DEL", &cid, &ns.path(), &name, &k.socket);
    let r = blocking({
        let (node, log) = (k.node_ns.clone(), k.plugin_log.clone());
        move || run_plugin(&node, &env, &conf(&log, None), None)
    })
    .await;
    out.push(succeeds("DEL before ADD", r.rc, &r.stdout));
    drop(ns);
    // DEL twice (the second with the same prevResult, the namespace gone).
    let k2 = k.clone();
    if let Added::Ok(_) = blocking(move || k2.add(None)).await {
        let cid = k.live_ids().last().cloned().unwrap_or_default();
        if let Some(pod) = k.take(&cid) {
            let (kk, result, name) = (k.clone(), pod.result.clone(), pod.name.clone());
            let path = pod.netns.path();
            let r = blocking(move || {
                kk.del_until_ok(&name, &cid, &pod.netns.path(), Some(&result));
                kk.remove_netns(pod.netns, &name);
                let env = cni_env("DEL", &cid, &path, &name, &kk.socket);
                run_plugin(
                    &kk.node_ns,
                    &env,
                    &conf(&kk.plugin_log, Some(&result)),
                    None,
                )
            })
            .await;
            out.push(succeeds("DEL twice", r.rc, &r.stdout));
        }
    }
    // The pod's namespace deleted before DEL.
    let k2 = k.clone();
    if let Added::Ok(_) = blocking(move || k2.add(None)).await {
        let cid = k.live_ids().last().cloned().unwrap_or_default();
        if let Some(pod) = k.take(&cid) {
            let path = pod.netns.path();
            let kk = k.clone();
            let (netns, name) = (pod.netns, pod.name.clone());
            blocking(move || kk.remove_netns(netns, &name)).await;
            let env = cni_env("DEL", &cid, &path, &pod.name, &k.socket);
            let kk = k.clone();
            let r = blocking(move || {
                run_plugin(
                    &kk.node_ns,
                    &env,
                    &conf(&kk.plugin_log, Some(&pod.result)),
                    None,
                )
            })
            .await;
            out.push(succeeds("DEL after the netns is gone", r.rc, &r.stdout));
        }
    }
    out.push((
        "ADD retried with the same key".into(),
        same_key_twice(s, rng).await,
    ));
    // ipamd down during DEL: the DEL tears the pod down and succeeds; the restarted agent
    // drops the allocation (its veth is gone).
    let k2 = k.clone();
    if let Added::Ok(_) = blocking(move || k2.add(None)).await {
        let cid = k.live_ids().last().cloned().unwrap_or_default();
        s.kill_agent();
        let k2 = k.clone();
        let deleted = blocking(move || k2.del(&cid, None)).await;
        out.push((
            "DEL with ipamd down".into(),
            if deleted {
                Ok(())
            } else {
                Err("no such pod".into())
            },
        ));
        out.push((
            "restart after DEL with ipamd down".into(),
            s.restart().await,
        ));
    }
    out
}

/// AddNetwork twice with the same key returns the same address (upstream's idempotent
/// assign); the DelNetwork that follows releases it.
async fn same_key_twice(s: &mut Suite, rng: &mut Rng) -> Result<(), String> {
    let mut c = ipamd::testing::connect_socket(&s.node.socket, 100).await;
    let i = 1_000_000 + rng.range(0, 1_000_000) as usize;
    let first = ipamd::testing::add_pod(&mut c, i).await;
    let again = ipamd::testing::add_pod(&mut c, i).await;
    ipamd::testing::del_pod(&mut c, i).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    if first == again {
        Ok(())
    } else {
        Err(format!("the same key got {first} then {again}"))
    }
}
