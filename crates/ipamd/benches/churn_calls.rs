//! EC2 calls per pod under churn (issue 16): the real agent on the EC2 + IMDS emulator
//! (an m5.large), 2 rounds of 20 concurrent AddNetwork then 20 DelNetwork, in the mode
//! `WARM_IP_TARGET=2 MINIMUM_IP_TARGET=5` and in the default mode (`WARM_ENI_TARGET=1`).
//! Counts the mutating EC2 calls from the emulator's per-action counters, from the end of
//! the initial warm-up to the end of the churn. An ADD that finds the pool empty is
//! retried after 50 ms, as kubelet would retry it (later); the retries are printed.
//! Run: `cargo bench --profile dev -p ipamd --bench churn_calls`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ec2_emulator::server::{self, Shared};
use ec2_emulator::testing::EmulatedNode;
use ipamd::node_loop::AgentTimers;
use ipamd::testing;

const PODS: usize = 20;
const ROUNDS: usize = 2;

/// A gRPC client of the agent (it is up once the bench has connected the first time).
async fn client(socket: &Path) -> rpc::CniBackendClient<tonic::transport::Channel> {
    testing::connect_socket(socket, 200).await
}

fn calls(emu: &Shared) -> BTreeMap<String, u64> {
    server::lock(emu).faults.calls.clone()
}

fn mutating(action: &str) -> bool {
    !action.starts_with("Describe") && !action.starts_with("Get")
}

/// Calls made between two snapshots of the counters, mutating ones only.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(a, _)| mutating(a))
        .map(|(a, n)| (a.clone(), n - before.get(a).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Waits until the counters have not moved for `quiet`.
async fn settle(emu: &Shared, quiet: Duration) {
    let mut last = calls(emu);
    let mut still = Duration::ZERO;
    let step = Duration::from_millis(100);
    while still < quiet {
        tokio::time::sleep(step).await;
        let now = calls(emu);
        if now == last {
            still += step;
        } else {
            still = Duration::ZERO;
            last = now;
        }
    }
}

/// Pod `n`'s ADD, retried every 50 ms while the pool is empty (counted in `retries`).
async fn add(socket: &Path, n: usize, retries: &AtomicU64) {
    let mut c = client(socket).await;
    for _ in 0..400 {
        if matches!(c.add_network(testing::add(n)).await, Ok(r) if r.get_ref().success) {
            return;
        }
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ADD of pod {n} never succeeded");
}

async fn del(socket: &Path, n: usize) {
    let mut c = client(socket).await;
    let ok = matches!(c.del_network(testing::del(n)).await, Ok(r) if r.get_ref().success);
    assert!(ok, "DEL of pod {n}");
}

async fn burst(socket: &Arc<PathBuf>, round: usize, adding: bool, retries: &Arc<AtomicU64>) {
    let mut tasks = Vec::new();
    for i in 0..PODS {
        let (socket, retries) = (socket.clone(), retries.clone());
        let n = round * PODS + i;
        tasks.push(tokio::spawn(async move {
            if adding {
                add(&socket, n, &retries).await;
            } else {
                del(&socket, n).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("pod task");
    }
}

async fn churn(mode: &str, vars: &[(&str, &str)]) {
    let node = EmulatedNode::start("m5.large", "10.0.0.0/20").await;
    let dir = std::env::temp_dir().join(format!("bench-churn-{}-{mode}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let socket = dir.join("ipamd.sock");
    let store = dir.join("ipam.json").display().to_string();
    let mut all = vec![
        ("AWS_EC2_ENDPOINT", node.ec2_endpoint.as_str()),
        ("AWS_VPC_K8S_CNI_BACKING_STORE", store.as_str()),
        ("IP_COOLDOWN_PERIOD", "0"),
    ];
    all.extend_from_slice(vars);
    let cfg = config::Config::from_vars(all).expect("config");
    // Upstream's timers (a 5 s pool tick): the wake-ups, not the tick, drive the growth.
    let mut opts = testing::options(socket.clone(), &node.imds_endpoint);
    opts.timers = AgentTimers::default();
    let agent = testing::spawn(cfg, opts);
    client(&socket).await;
    settle(&node.emu, Duration::from_secs(2)).await;
    let start = calls(&node.emu);
    let retries = Arc::new(AtomicU64::new(0));
    let socket = Arc::new(socket);
    for round in 0..ROUNDS {
        burst(&socket, round, true, &retries).await;
        let added = delta(&start, &calls(&node.emu));
        println!("{mode:<8} round {round} after ADDs: {added:?}");
        burst(&socket, round, false, &retries).await;
    }
    settle(&node.emu, Duration::from_secs(6)).await;
    let made = delta(&start, &calls(&node.emu));
    let total: u64 = made.values().sum();
    let pods = (PODS * ROUNDS) as f64;
    let assigns = made.get("AssignPrivateIpAddresses").copied().unwrap_or(0);
    println!(
        "{mode:<8} {ROUNDS}x{PODS} pods: {total} mutating EC2 calls ({:.2} per pod), \
         {assigns} AssignPrivateIpAddresses, {} ADD retries on an empty pool",
        total as f64 / pods,
        retries.load(Ordering::Relaxed)
    );
    println!("{mode:<8} by action: {made:?}");
    agent.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    churn(
        "warm-ip",
        &[("WARM_IP_TARGET", "2"), ("MINIMUM_IP_TARGET", "5")],
    )
    .await;
    churn("default", &[]).await;
}
