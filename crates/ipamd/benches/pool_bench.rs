//! The agent's pool under load (issue 16, parts 2–4; docs/benchmarks.md): the real agent
//! in-process on the EC2 + IMDS emulator (an m5.4xlarge: 8 ENIs x 30 IPv4, max pods 234),
//! pods as concurrent gRPC AddNetwork/DelNetwork calls (each on its own connection, as plugin
//! processes would be), EC2 calls counted by the emulator.
//!
//! * `burst`: prefix delegation with a warm pool for 110 pods (`MINIMUM_IP_TARGET=128`);
//!   110 ADDs at once, then 110 DELs at once: wall time, failures, duplicate addresses.
//! * `cold`: the default mode (`WARM_ENI_TARGET=1`) with `AttachNetworkInterface` taking 5 s;
//!   110 pods at once on a pool that holds 29: time until every pod has an address, and the
//!   EC2 calls used. A pod whose ADD finds the pool empty retries every 50 ms (kubelet).
//! * `churn`: `0 -> PODS -> 0 -> PODS` in the default, `WARM_IP_TARGET=2 MINIMUM_IP_TARGET=5`
//!   and prefix modes, the schedule of `planner::sim::churn` in the upstream bench: wait 10 s
//!   after each ADD wave and 65 s after the DELs (`BENCH_AFTER_ADD_SECS`, `BENCH_HOLD_SECS`);
//!   EC2 calls from the settled start to the end.
//!
//! Lines starting with `RESULT` are for scripts/bench.sh.
//! Run: `cargo bench --profile dev -p ipamd --bench pool_bench [-- burst cold churn]`
//! (`BENCH_PODS`, `BENCH_ROUNDS`, `BENCH_HOLD_SECS`, `BENCH_ATTACH_MS` change the sizes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ec2_emulator::server;
use ec2_emulator::testing::EmulatedNode;
use ipamd::node_loop::AgentTimers;
use ipamd::testing;
use rpc::CniBackendClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const INSTANCE: &str = "m5.4xlarge";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Agent {
    node: EmulatedNode,
    socket: Arc<PathBuf>,
    dir: PathBuf,
    task: JoinHandle<Result<(), ipamd::agent::AgentError>>,
}

impl Agent {
    /// The agent with upstream's timers (a 5 s pool tick) and `vars`, once it serves gRPC.
    async fn start(tag: &str, vars: &[(&str, &str)], attach_ms: u64) -> Agent {
        let node = EmulatedNode::start(INSTANCE, "10.0.0.0/20").await;
        server::lock(&node.emu).faults.attach_latency_ms = attach_ms;
        let dir = testing::test_dir("pool-bench", tag);
        let socket = dir.join("ipamd.sock");
        let cfg = testing::config(&node.ec2_endpoint, &dir.join("ipam.json"), vars);
        let mut opts = testing::options(socket.clone(), &node.imds_endpoint);
        opts.timers = AgentTimers::default();
        let mut task = testing::spawn(cfg, opts);
        testing::connect(&socket, &mut task, 600).await;
        Agent {
            node,
            socket: Arc::new(socket),
            dir,
            task,
        }
    }

    fn calls(&self) -> BTreeMap<String, u64> {
        server::lock(&self.node.emu).faults.calls.clone()
    }

    /// Addresses the emulator has granted the instance (secondary IPs and prefixes).
    fn granted_ips(&self) -> usize {
        let emu = server::lock(&self.node.emu);
        emu.world
            .attached_enis(&self.node.instance_id)
            .iter()
            .map(|e| e.secondary_ips.len() + 16 * e.prefixes.len())
            .sum()
    }

    /// Waits until the call counters have not moved for `quiet`.
    async fn settle(&self, quiet: Duration) {
        let mut last = self.calls();
        let mut still = Duration::ZERO;
        let step = Duration::from_millis(100);
        while still < quiet {
            tokio::time::sleep(step).await;
            let now = self.calls();
            if now == last {
                still += step;
            } else {
                still = Duration::ZERO;
                last = now;
            }
        }
    }

    fn stop(self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Calls made between two snapshots: (mutating, describe, mutating by action).
fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> (u64, u64, BTreeMap<String, u64>) {
    let mut by = BTreeMap::new();
    let (mut mutating, mut describe) = (0, 0);
    for (action, n) in after {
        let d = n - before.get(action).copied().unwrap_or(0);
        if d == 0 || action.starts_with("Get") {
            continue;
        }
        if action.starts_with("Describe") {
            describe += d;
        } else {
            mutating += d;
        }
        by.insert(action.clone(), d);
    }
    (mutating, describe, by)
}

async fn client(socket: &std::path::Path) -> CniBackendClient<Channel> {
    testing::connect_socket(socket, 200).await
}

/// One ADD; the address on success.
async fn add_once(c: &mut CniBackendClient<Channel>, i: usize) -> Option<String> {
    let r = c.add_network(testing::add(i)).await.ok()?.into_inner();
    if !r.success {
        return None;
    }
    r.ip_allocation_metadata
        .first()
        .map(|m| m.i_pv4_addr.clone())
}

async fn del_once(c: &mut CniBackendClient<Channel>, i: usize) -> bool {
    matches!(c.del_network(testing::del(i)).await, Ok(r) if r.get_ref().success)
}

/// Pod `i`'s ADD, retried every 50 ms for at most `patience`; the address, if any.
async fn add_retrying(socket: Arc<PathBuf>, i: usize, patience: Duration) -> Option<String> {
    let mut c = client(&socket).await;
    let until = Instant::now() + patience;
    loop {
        if let Some(ip) = add_once(&mut c, i).await {
            return Some(ip);
        }
        if Instant::now() > until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pods `ids` added at once; their addresses (`None` = failed) and the wall time.
async fn add_wave(
    agent: &Agent,
    ids: std::ops::Range<usize>,
    patience: Duration,
) -> (Vec<Option<String>>, Duration) {
    let start = Instant::now();
    let tasks: Vec<_> = ids
        .map(|i| tokio::spawn(add_retrying(agent.socket.clone(), i, patience)))
        .collect();
    let mut ips = Vec::new();
    for t in tasks {
        ips.push(t.await.ok().flatten());
    }
    (ips, start.elapsed())
}

/// Pods `ids` deleted at once; failures and the wall time.
async fn del_wave(agent: &Agent, ids: std::ops::Range<usize>) -> (usize, Duration) {
    let start = Instant::now();
    let tasks: Vec<_> = ids
        .map(|i| {
            let socket = agent.socket.clone();
            tokio::spawn(async move { del_once(&mut client(&socket).await, i).await })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        if !matches!(t.await, Ok(true)) {
            failed += 1;
        }
    }
    (failed, start.elapsed())
}

fn duplicates(ips: &[Option<String>]) -> usize {
    let got: Vec<&String> = ips.iter().flatten().collect();
    got.len() - got.iter().collect::<BTreeSet<_>>().len()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn burst(pods: usize, rounds: usize) {
    println!("== part 2: burst of {pods} pods from a warm pool (prefix delegation, {INSTANCE})");
    let agent = Agent::start(
        "burst",
        &[
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_IP_TARGET", "16"),
            ("MINIMUM_IP_TARGET", "128"),
            // Back-to-back rounds: a released address must be reusable at once (with the
            // default 30 s cooldown the next round finds 110 cooling addresses).
            ("IP_COOLDOWN_PERIOD", "0"),
        ],
        0,
    )
    .await;
    for _ in 0..600 {
        if agent.granted_ips() >= 128 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.settle(Duration::from_secs(2)).await;
    for round in 0..rounds {
        let base = round * pods;
        // No retry: the pool is warm, so an ADD that fails is a failure.
        let (ips, add_wall) = add_wave(&agent, base..base + pods, Duration::ZERO).await;
        let add_failed = ips.iter().filter(|ip| ip.is_none()).count();
        let dup = duplicates(&ips);
        let (del_failed, del_wall) = del_wave(&agent, base..base + pods).await;
        println!(
            "RESULT burst round={round} pods={pods} add_wall_ms={:.1} del_wall_ms={:.1} \
             add_failures={add_failed} del_failures={del_failed} duplicates={dup}",
            ms(add_wall),
            ms(del_wall)
        );
    }
    agent.stop();
}

async fn cold(pods: usize, attach_ms: u64) {
    println!(
        "== part 3: {pods} pods on a cold pool, AttachNetworkInterface {attach_ms} ms ({INSTANCE}, default mode)"
    );
    let agent = Agent::start("cold", &[], attach_ms).await;
    agent.settle(Duration::from_secs(2)).await;
    let before = agent.calls();
    let held = agent.granted_ips();
    let (ips, wall) = add_wave(&agent, 0..pods, Duration::from_secs(300)).await;
    let ready = agent.calls();
    let failed = ips.iter().filter(|ip| ip.is_none()).count();
    let (mutating, describe, by) = delta(&before, &ready);
    println!(
        "RESULT cold pods={pods} pool_before={held} all_ready_s={:.2} failures={failed} duplicates={} \
         mutating={mutating} describe={describe}",
        wall.as_secs_f64(),
        duplicates(&ips)
    );
    println!("  by action: {by:?}");
    agent.stop();
}

async fn churn(pods: usize, hold: Duration, after_add: Duration) {
    println!("== part 4, ours (measured): churn 0 -> {pods} -> 0 -> {pods} ({INSTANCE})");
    let modes: [(&str, &[(&str, &str)]); 3] = [
        ("default", &[]),
        (
            "warm-ip",
            &[("WARM_IP_TARGET", "2"), ("MINIMUM_IP_TARGET", "5")],
        ),
        (
            "prefix",
            &[
                ("ENABLE_PREFIX_DELEGATION", "true"),
                ("WARM_PREFIX_TARGET", "1"),
            ],
        ),
    ];
    for (mode, vars) in modes {
        let agent = Agent::start(mode, vars, 0).await;
        agent.settle(Duration::from_secs(6)).await;
        let start = agent.calls();
        let patience = Duration::from_secs(600);
        let (first, t1) = add_wave(&agent, 0..pods, patience).await;
        tokio::time::sleep(after_add).await;
        let (del_failed, _) = del_wave(&agent, 0..pods).await;
        tokio::time::sleep(hold).await;
        let (second, t2) = add_wave(&agent, pods..2 * pods, patience).await;
        tokio::time::sleep(after_add).await;
        let (mutating, describe, by) = delta(&start, &agent.calls());
        let added = first
            .iter()
            .chain(&second)
            .filter(|ip| ip.is_some())
            .count();
        let n = added.max(1) as f64;
        println!(
            "RESULT churn-ours mode={mode} pods={added} mutating={mutating} describe={describe} \
             mutating_per_pod={:.3} describe_per_pod={:.3} add_s=[{:.1}, {:.1}] del_failures={del_failed}",
            mutating as f64 / n,
            describe as f64 / n,
            t1.as_secs_f64(),
            t2.as_secs_f64()
        );
        println!("  {mode:<8} by action: {by:?}");
        agent.stop();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pods = env_u64("BENCH_PODS", 110) as usize;
    let rounds = env_u64("BENCH_ROUNDS", 5) as usize;
    let hold = Duration::from_secs(env_u64("BENCH_HOLD_SECS", 65));
    let attach_ms = env_u64("BENCH_ATTACH_MS", 5000);
    let after_add = Duration::from_secs(env_u64("BENCH_AFTER_ADD_SECS", 10));
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |p: &str| parts.is_empty() || parts.iter().any(|a| a == p);
    if wants("burst") {
        burst(pods, rounds).await;
    }
    if wants("cold") {
        cold(pods, attach_ms).await;
    }
    if wants("churn") {
        churn(pods, hold, after_add).await;
    }
}
