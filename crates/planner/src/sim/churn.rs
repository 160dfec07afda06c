//! Upstream's EC2 footprint of a pod churn (issue 16, part 4; docs/benchmarks.md): one node
//! run the way upstream v1.23.1 runs it — a pool tick every 5 s and nothing else
//! (`StartNodeIPPoolManager`, spec 3.3: no wake-up on ADD, no coalescing), each tick sized by
//! the deficit it sees at that instant (`increaseDatastorePool`, spec 3.6, with the
//! `WARM_IP_TARGET`/`MINIMUM_IP_TARGET` arithmetic of `datastoreTargetState`, spec 3.5) —
//! while pods arrive all at once and, like kubelet, retry their ADD until the pool has an
//! address. Every action is priced in EC2 calls by [`upstream_calls`].
//!
//! The decisions are the planner's `plan_tick`, which is upstream's `updateIPPoolIfRequired`
//! except for two guards of ours (docs/pool-planner.md, decisions 5 and 7) that only ever
//! *remove* a release or ENI deletion upstream would make: the figures here are a lower
//! bound of upstream's calls.

use std::time::Duration;

use super::calls::{CallCount, upstream_calls};
use super::{SimError, SimNode};
use crate::plan::{POOL_TICK_INTERVAL, plan_tick};

/// One phase of a churn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `n` pods are created at once; each retries its ADD every retry step until it has an
    /// address. The phase ends when all have one.
    Add(u32),
    /// Every pod is deleted at once.
    DeleteAll,
    /// Time passes.
    Wait(Duration),
}

/// A churn: phases in order, and how often a pending pod retries its ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Churn {
    /// The phases.
    pub phases: Vec<Phase>,
    /// The retry step of a pending ADD (and the simulation's time step).
    pub step: Duration,
    /// Where the first tick falls after the start (upstream: 2.5 s into each 5 s round).
    pub tick_offset: Duration,
}

impl Churn {
    /// `0 -> pods -> 0 -> pods`, waiting `hold` after each phase (the benchmark's cycle).
    pub fn cycle(pods: u32, hold: Duration) -> Self {
        Churn {
            phases: vec![
                Phase::Add(pods),
                Phase::Wait(hold),
                Phase::DeleteAll,
                Phase::Wait(hold),
                Phase::Add(pods),
                Phase::Wait(hold),
            ],
            step: Duration::from_millis(50),
            tick_offset: Duration::from_millis(2500),
        }
    }
}

/// What a churn cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChurnReport {
    /// EC2 calls, by action.
    pub calls: CallCount,
    /// Pods added over the churn.
    pub pods_added: u64,
    /// Simulated time from each `Add` phase's start until its last pod had an address.
    pub add_times: Vec<Duration>,
    /// Pool ticks run.
    pub ticks: u64,
}

struct Runner {
    node: SimNode,
    next_tick: Duration,
    report: ChurnReport,
}

impl Runner {
    /// Runs every tick due at the node's clock.
    fn ticks_due(&mut self) -> Result<(), SimError> {
        while self.node.now >= self.next_tick {
            let plan = plan_tick(
                &self.node.policy,
                &self.node.cap,
                &self.node.snapshot(),
                &self.node.timers(),
            );
            // Grow actions are alternatives: upstream carries out the first (spec 3.6,
            // "returns increased after the first ENI processed"); shrinks are all done.
            let grow = plan.actions.iter().find(|a| a.is_grow());
            for action in plan.actions.iter().filter(|a| !a.is_grow()).chain(grow) {
                for call in upstream_calls(action) {
                    self.report.calls.add(call);
                }
            }
            self.node.apply(&plan)?;
            self.report.ticks += 1;
            self.next_tick += POOL_TICK_INTERVAL;
        }
        Ok(())
    }

    fn advance(&mut self, by: Duration) -> Result<(), SimError> {
        self.node.now += by;
        self.ticks_due()
    }

    fn add(&mut self, pods: u32, step: Duration) -> Result<(), SimError> {
        let start = self.node.now;
        let mut pending = pods;
        // A pod never waits longer than an hour of simulated time: the pool cannot grow.
        let limit = start + Duration::from_secs(3600);
        while pending > 0 {
            while pending > 0 && self.node.add_pod().is_ok() {
                pending -= 1;
                self.report.pods_added += 1;
            }
            if pending == 0 {
                break;
            }
            if self.node.now > limit {
                return Err(SimError::NoFreeAddress);
            }
            self.advance(step)?;
        }
        self.report.add_times.push(self.node.now - start);
        Ok(())
    }
}

/// Runs `churn` on `node` (start it from a settled pool: [`SimNode::settle`]).
pub fn run_churn(node: SimNode, churn: &Churn) -> Result<ChurnReport, SimError> {
    let next_tick = node.now + churn.tick_offset;
    let mut r = Runner {
        node,
        next_tick,
        report: ChurnReport::default(),
    };
    for phase in &churn.phases {
        match *phase {
            Phase::Add(n) => r.add(n, churn.step)?,
            Phase::DeleteAll => {
                for pod in r.node.pods() {
                    r.node.remove_pod(pod)?;
                }
            }
            Phase::Wait(d) => {
                let end = r.node.now + d;
                while r.node.now < end {
                    r.advance(churn.step.min(end - r.node.now))?;
                }
            }
        }
    }
    Ok(r.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeCapacity, PoolPolicy};

    fn m5_4xlarge() -> NodeCapacity {
        NodeCapacity {
            max_enis: 8,
            ipv4_per_eni: 30,
            unmanaged_enis: 0,
            reserve_trunk_slot: false,
        }
    }

    fn policy(warm_ip: u32, min_ip: u32) -> PoolPolicy {
        PoolPolicy {
            warm_eni_target: 1,
            warm_ip_target: warm_ip,
            minimum_ip_target: min_ip,
            warm_prefix_target: 0,
            prefix_delegation: false,
            custom_networking: false,
            max_pods: 234,
        }
    }

    fn settled(p: PoolPolicy) -> SimNode {
        let mut node = SimNode::new(p, m5_4xlarge());
        node.settle(10_000).expect("settles");
        node
    }

    #[test]
    fn warm_ip_growth_is_one_assign_per_tick_of_the_warm_target() {
        // WARM_IP_TARGET=2 and an empty pool: each tick sees a deficit of 2 (pending pods
        // are not assigned), so 20 pods need about 10 ticks of one call each.
        let churn = Churn {
            phases: vec![Phase::Add(20)],
            step: Duration::from_millis(50),
            tick_offset: Duration::from_millis(2500),
        };
        let r = run_churn(settled(policy(2, 0)), &churn).expect("runs");
        let assigns = r.calls.by_action["AssignPrivateIpAddresses"];
        assert!((9..=11).contains(&assigns), "{assigns} assigns");
        assert!(
            r.add_times[0] >= Duration::from_secs(40),
            "{:?}",
            r.add_times
        );
    }

    #[test]
    fn a_cycle_adds_every_pod_twice() {
        let r = run_churn(
            settled(policy(0, 0)),
            &Churn::cycle(40, Duration::from_secs(70)),
        )
        .expect("runs");
        assert_eq!(r.pods_added, 80);
        assert_eq!(r.add_times.len(), 2);
        // The default mode grows by whole ENIs: 40 pods need more than the primary ENI.
        assert!(r.calls.by_action["CreateNetworkInterface"] >= 1);
    }
}
