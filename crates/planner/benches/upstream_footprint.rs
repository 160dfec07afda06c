//! What upstream's algorithm costs (issue 16, parts 4 and 6; docs/benchmarks.md), computed
//! by the planner's simulator, no I/O:
//!
//! * part 4: the EC2 calls of a churn `0 -> PODS -> 0 -> PODS` on an m5.4xlarge in the
//!   default, `WARM_IP_TARGET=2 MINIMUM_IP_TARGET=5` and prefix modes, run upstream's way
//!   (`planner::sim::churn`: a 5 s tick, nothing else);
//! * part 6: a fleet of 50 and 200 nodes scaling out at once against one account's token
//!   buckets, upstream's EC2 client next to ours (`planner::sim::fleet`).
//!
//! Lines starting with `RESULT` are for scripts/bench.sh.
//! Run: `cargo bench --profile dev -p planner --bench upstream_footprint`
//! (`BENCH_PODS`, `BENCH_HOLD_SECS`, `BENCH_AFTER_ADD_SECS`, `BENCH_FLEETS=50,200` change
//! the sizes; the first three as in the ipamd bench `pool_bench`).

use std::time::Duration;

use planner::sim::SimNode;
use planner::sim::churn::{Churn, Phase, run_churn};
use planner::sim::fleet::{Fleet, our_client, run_fleet, upstream_client};
use planner::{NodeCapacity, PoolPolicy};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An instance type's ENIs and IPv4 addresses per ENI (upstream's limits table).
fn capacity(max_enis: u32, ipv4_per_eni: u32) -> NodeCapacity {
    NodeCapacity {
        max_enis,
        ipv4_per_eni,
        unmanaged_enis: 0,
        reserve_trunk_slot: false,
    }
}

fn policy(warm_ip: u32, min_ip: u32, prefix: bool, max_pods: u32) -> PoolPolicy {
    PoolPolicy {
        warm_eni_target: 1,
        warm_ip_target: warm_ip,
        minimum_ip_target: min_ip,
        warm_prefix_target: u32::from(prefix),
        prefix_delegation: prefix,
        custom_networking: false,
        max_pods,
    }
}

/// The modes of part 4, with the environment the ipamd bench gives the agent.
fn modes() -> [(&'static str, PoolPolicy); 3] {
    // m5.4xlarge: 8 ENIs x 30 IPv4; max pods 234 (eni-max-pods.txt).
    [
        ("default", policy(0, 0, false, 234)),
        ("warm-ip", policy(2, 5, false, 234)),
        ("prefix", policy(0, 0, true, 234)),
    ]
}

fn churn_part(pods: u32, hold: Duration, after_add: Duration) {
    println!("== part 4, upstream's algorithm (simulated): churn 0 -> {pods} -> 0 -> {pods}");
    let churn = Churn {
        phases: vec![
            Phase::Add(pods),
            Phase::Wait(after_add),
            Phase::DeleteAll,
            Phase::Wait(hold),
            Phase::Add(pods),
            Phase::Wait(after_add),
        ],
        ..Churn::cycle(pods, hold)
    };
    for (mode, p) in modes() {
        let mut node = SimNode::new(p, capacity(8, 30));
        let report = node.settle(10_000).and_then(|_| run_churn(node, &churn));
        match report {
            Ok(r) => {
                let n = r.pods_added.max(1) as f64;
                println!(
                    "RESULT churn-upstream mode={mode} pods={} mutating={} describe={} \
                     mutating_per_pod={:.3} describe_per_pod={:.3} add_s={:?}",
                    r.pods_added,
                    r.calls.mutating(),
                    r.calls.describe(),
                    r.calls.mutating() as f64 / n,
                    r.calls.describe() as f64 / n,
                    r.add_times
                        .iter()
                        .map(|d| d.as_secs_f64())
                        .collect::<Vec<_>>()
                );
                println!("  {mode:<8} by action: {:?}", r.calls.by_action);
            }
            Err(e) => println!("RESULT churn-upstream mode={mode} error=\"{e}\""),
        }
    }
}

fn fleet_part(sizes: &[usize]) {
    println!(
        "== part 6: fleet scale-out against one account (simulated; mutating bucket 100, 5/s)"
    );
    // Default mode on an m5.large (3 x 10; one assignment per node) and
    // WARM_IP_TARGET=5 MINIMUM_IP_TARGET=40 on an m5.xlarge (4 x 15; an assignment and two ENIs).
    let nodes = [
        ("default/m5.large", policy(0, 0, false, 29), capacity(3, 10)),
        ("min40/m5.xlarge", policy(5, 40, false, 58), capacity(4, 15)),
    ];
    for (name, p, cap) in nodes {
        for &n in sizes {
            for client in [upstream_client(), our_client()] {
                let node = SimNode::new(p, cap);
                match run_fleet(&node, &Fleet::scale_out(n), &client) {
                    Ok(r) => println!(
                        "RESULT fleet node={name} nodes={n} client={} all_warm_s={} median_warm_s={} \
                         throttled={} mutating={} describe={} dropped={}",
                        client.name,
                        r.all_warm
                            .map_or("never".into(), |d| format!("{:.1}", d.as_secs_f64())),
                        r.median_warm
                            .map_or("never".into(), |d| format!("{:.1}", d.as_secs_f64())),
                        r.throttled,
                        r.calls.mutating(),
                        r.calls.describe(),
                        r.dropped_actions
                    ),
                    Err(e) => println!(
                        "RESULT fleet node={name} nodes={n} client={} error=\"{e}\"",
                        client.name
                    ),
                }
            }
        }
    }
}

fn main() {
    let pods = env_u64("BENCH_PODS", 110) as u32;
    let hold = Duration::from_secs(env_u64("BENCH_HOLD_SECS", 65));
    let after_add = Duration::from_secs(env_u64("BENCH_AFTER_ADD_SECS", 10));
    churn_part(pods, hold, after_add);
    let sizes: Vec<usize> = std::env::var("BENCH_FLEETS")
        .unwrap_or_else(|_| "50,200".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    fleet_part(&sizes);
}
