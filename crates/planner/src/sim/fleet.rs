//! A fleet scaling out at once against one account's EC2 token buckets (issue 16, part 6;
//! docs/benchmarks.md). Pure and deterministic: a simulated clock, `n` copies of one
//! [`SimNode`] started within a spread, each running pool ticks every 5 s with the planner's
//! decisions (the same for upstream and us: `plan_tick`), whose EC2 calls
//! ([`upstream_calls`]) go through the account's buckets. What differs is the EC2 client:
//!
//! * upstream: the AWS SDK's standard retryer (3 attempts, full-jitter exponential backoff
//!   up to 20 s; spec 10.3), no client-side rate limit; an action whose call is still
//!   throttled is dropped until the next tick;
//! * ours: `aws::token_bucket::RateLimits::default()` per node (mutating 2/s, burst 5;
//!   describe 5/s, burst 10) and `aws::sdk_ec2::default_backoff()` (200 ms doubling to 20 s,
//!   15 % jitter, 10 attempts).
//!
//! EC2 buckets per docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html: the
//! benchmark uses one mutating bucket for all actions (pessimistic: EC2 now keeps one bucket
//! per API), and one describe bucket.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::calls::{CallCount, CallKind, upstream_calls};
use super::{SimError, SimNode};
use crate::plan::{POOL_TICK_INTERVAL, evaluate, plan_tick};

/// A token bucket: `rate` tokens a second, up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Refill rate (tokens per second).
    pub rate: f64,
    /// Capacity.
    pub burst: f64,
    tokens: f64,
    last: f64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: 0.0,
        }
    }

    fn refill(&mut self, now: f64) {
        self.tokens = (self.tokens + (now - self.last).max(0.0) * self.rate).min(self.burst);
        self.last = self.last.max(now);
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn take(&mut self, now: f64) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// A mutating and a describe bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Buckets {
    /// Mutating actions.
    pub mutating: Bucket,
    /// `Describe*`.
    pub describe: Bucket,
}

impl Buckets {
    fn of(&mut self, kind: CallKind) -> &mut Bucket {
        match kind {
            CallKind::Mutating => &mut self.mutating,
            CallKind::Describe => &mut self.describe,
        }
    }
}

/// How the backoff between attempts is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// A uniform draw in `[0, delay)` (the AWS SDK's `ExponentialJitterBackoff`).
    Full,
    /// `delay` plus up to this fraction of it (our `exp_backoff::Backoff`).
    Added(f64),
}

/// An EC2 client's retry of throttled calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay after the first attempt.
    pub base: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Jitter.
    pub jitter: Jitter,
}

/// The node agent's EC2 client, as far as throttling goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Client {
    /// Name in reports.
    pub name: &'static str,
    /// Retry of throttled calls.
    pub retry: RetryPolicy,
    /// Client-side buckets, if any.
    pub limits: Option<Buckets>,
}

/// Upstream's client: the SDK's standard retryer, no client-side limit.
pub fn upstream_client() -> Client {
    Client {
        name: "upstream",
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(2),
            max: Duration::from_secs(20),
            jitter: Jitter::Full,
        },
        limits: None,
    }
}

/// Our client (crates/aws: `RateLimits::default`, `default_backoff`).
pub fn our_client() -> Client {
    Client {
        name: "ours",
        retry: RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(200),
            max: Duration::from_secs(20),
            jitter: Jitter::Added(0.15),
        },
        limits: Some(Buckets {
            mutating: Bucket::new(2.0, 5.0),
            describe: Bucket::new(5.0, 10.0),
        }),
    }
}

/// The fleet's scale-out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fleet {
    /// Nodes.
    pub nodes: usize,
    /// Nodes start evenly spread over this long.
    pub start_spread: Duration,
    /// The account's buckets, shared by every node.
    pub account: Buckets,
    /// Latency of one EC2 call.
    pub call_latency: Duration,
    /// Seed of the jitter draws.
    pub seed: u64,
    /// Simulated time after which the run stops.
    pub horizon: Duration,
}

impl Fleet {
    /// `nodes` nodes started within 10 s, EC2's buckets for an account: mutating refill
    /// 5/s with a bucket of 100, describe 20/s with 100.
    pub fn scale_out(nodes: usize) -> Self {
        Fleet {
            nodes,
            start_spread: Duration::from_secs(10),
            account: Buckets {
                mutating: Bucket::new(5.0, 100.0),
                describe: Bucket::new(20.0, 100.0),
            },
            call_latency: Duration::from_millis(100),
            seed: 0x5eed,
            horizon: Duration::from_secs(3600),
        }
    }
}

/// What a scale-out cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetReport {
    /// Time from the first node's start until the last node reached its warm target
    /// (`None`: not within the horizon).
    pub all_warm: Option<Duration>,
    /// Median time from a node's start until it reached its warm target (of those that did).
    pub median_warm: Option<Duration>,
    /// Calls EC2 answered.
    pub calls: CallCount,
    /// Calls EC2 refused with `RequestLimitExceeded`.
    pub throttled: u64,
    /// Tick actions given up after the last retry.
    pub dropped_actions: u64,
}

struct Job {
    plan: crate::plan::TickPlan,
    calls: Vec<&'static str>,
    next: usize,
    attempt: u32,
}

struct Member {
    sim: SimNode,
    started: Duration,
    job: Option<Job>,
    warm_at: Option<Duration>,
    limits: Option<Buckets>,
}

/// A deterministic uniform draw in `[0, 1)` (xorshift64*).
fn unit(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

fn backoff(retry: &RetryPolicy, attempt: u32, u: f64) -> Duration {
    let raw = retry.base.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
    let raw = raw.min(retry.max.as_secs_f64());
    Duration::from_secs_f64(match retry.jitter {
        Jitter::Full => raw * u,
        Jitter::Added(f) => raw * (1.0 + f * u),
    })
}

struct World<'a> {
    fleet: &'a Fleet,
    client: &'a Client,
    account: Buckets,
    rng: u64,
    report: FleetReport,
    events: BinaryHeap<Reverse<(Duration, usize)>>,
}

impl World<'_> {
    fn mark_warm(&mut self, m: &mut Member, now: Duration) {
        if m.warm_at.is_none() && !evaluate(&m.sim.policy, &m.sim.cap, &m.sim.snapshot()).too_low {
            m.warm_at = Some(now);
        }
    }

    /// Starts a tick: plans, and either schedules the next tick or the first call.
    fn tick(&mut self, m: &mut Member, i: usize, now: Duration) {
        m.sim.now = now;
        self.mark_warm(m, now);
        let plan = plan_tick(
            &m.sim.policy,
            &m.sim.cap,
            &m.sim.snapshot(),
            &m.sim.timers(),
        );
        let grow = plan.actions.iter().find(|a| a.is_grow());
        let calls: Vec<&'static str> = plan
            .actions
            .iter()
            .filter(|a| !a.is_grow())
            .chain(grow)
            .flat_map(|a| upstream_calls(a).iter().copied())
            .collect();
        if calls.is_empty() {
            self.events.push(Reverse((now + POOL_TICK_INTERVAL, i)));
            return;
        }
        m.job = Some(Job {
            plan,
            calls,
            next: 0,
            attempt: 0,
        });
        self.events.push(Reverse((now, i)));
    }

    /// Makes the job's next call at `now`.
    fn call(&mut self, m: &mut Member, i: usize, now: Duration) -> Result<(), SimError> {
        let Some(job) = m.job.as_mut() else {
            return Ok(());
        };
        let action = job.calls[job.next];
        let kind = CallKind::of(action);
        let t = now.as_secs_f64();
        if let Some(limits) = m.limits.as_mut()
            && let Err(wait) = limits.of(kind).take(t)
        {
            self.events.push(Reverse((now + wait, i)));
            return Ok(());
        }
        if self.account.of(kind).take(t).is_err() {
            self.report.throttled += 1;
            job.attempt += 1;
            if job.attempt < self.client.retry.max_attempts {
                let wait = backoff(&self.client.retry, job.attempt, unit(&mut self.rng));
                self.events
                    .push(Reverse((now + self.fleet.call_latency + wait, i)));
            } else {
                self.report.dropped_actions += 1;
                m.job = None;
                self.events.push(Reverse((now + POOL_TICK_INTERVAL, i)));
            }
            return Ok(());
        }
        self.report.calls.add(action);
        job.next += 1;
        job.attempt = 0;
        let done_at = now + self.fleet.call_latency;
        if job.next < job.calls.len() {
            self.events.push(Reverse((done_at, i)));
            return Ok(());
        }
        let plan = job.plan.clone();
        m.job = None;
        m.sim.now = done_at;
        m.sim.apply(&plan)?;
        self.mark_warm(m, done_at);
        self.events.push(Reverse((done_at + POOL_TICK_INTERVAL, i)));
        Ok(())
    }
}

fn median(mut xs: Vec<Duration>) -> Option<Duration> {
    xs.sort();
    xs.get(xs.len() / 2).copied()
}

/// Runs a scale-out of `fleet.nodes` copies of `node` with `client`.
pub fn run_fleet(node: &SimNode, fleet: &Fleet, client: &Client) -> Result<FleetReport, SimError> {
    let mut members: Vec<Member> = (0..fleet.nodes)
        .map(|i| Member {
            sim: node.clone(),
            started: fleet.start_spread * i as u32 / fleet.nodes.max(1) as u32,
            job: None,
            warm_at: None,
            limits: client.limits,
        })
        .collect();
    let mut w = World {
        fleet,
        client,
        account: fleet.account,
        rng: fleet.seed | 1,
        report: FleetReport::default(),
        events: BinaryHeap::new(),
    };
    for (i, m) in members.iter().enumerate() {
        w.events.push(Reverse((m.started, i)));
    }
    while let Some(Reverse((now, i))) = w.events.pop() {
        if now > fleet.horizon || members.iter().all(|m| m.warm_at.is_some()) {
            break;
        }
        let Some(m) = members.get_mut(i) else {
            continue;
        };
        if m.job.is_some() {
            w.call(m, i, now)?;
        } else {
            w.tick(m, i, now);
        }
    }
    let warm: Vec<Duration> = members.iter().filter_map(|m| m.warm_at).collect();
    if warm.len() == members.len() {
        w.report.all_warm = warm.iter().max().copied();
    }
    w.report.median_warm = median(
        members
            .iter()
            .filter_map(|m| m.warm_at.map(|t| t.saturating_sub(m.started)))
            .collect(),
    );
    Ok(w.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeCapacity, PoolPolicy};

    fn m5_large() -> SimNode {
        let policy = PoolPolicy {
            warm_eni_target: 1,
            warm_ip_target: 0,
            minimum_ip_target: 0,
            warm_prefix_target: 0,
            prefix_delegation: false,
            custom_networking: false,
            max_pods: 29,
        };
        let cap = NodeCapacity {
            max_enis: 3,
            ipv4_per_eni: 10,
            unmanaged_enis: 0,
            reserve_trunk_slot: false,
        };
        SimNode::new(policy, cap)
    }

    #[test]
    fn a_bucket_refills_at_its_rate() {
        let mut b = Bucket::new(5.0, 2.0);
        assert!(b.take(0.0).is_ok() && b.take(0.0).is_ok());
        assert_eq!(b.take(0.0), Err(Duration::from_millis(200)));
        assert!(b.take(0.2).is_ok());
    }

    #[test]
    fn one_node_is_warm_after_one_call_without_throttling() {
        let r = run_fleet(&m5_large(), &Fleet::scale_out(1), &upstream_client()).expect("runs");
        assert_eq!(r.throttled, 0);
        assert_eq!(r.calls.mutating(), 1);
        assert!(r.all_warm.is_some_and(|t| t < Duration::from_secs(1)));
    }

    #[test]
    fn a_fleet_beyond_the_bucket_is_throttled_and_still_gets_warm() {
        for client in [upstream_client(), our_client()] {
            let r = run_fleet(&m5_large(), &Fleet::scale_out(300), &client).expect("runs");
            assert!(r.all_warm.is_some(), "{}: {r:?}", client.name);
            // Every node needs one granted assignment, whatever was refused before it.
            assert_eq!(r.calls.mutating(), 300, "{}", client.name);
        }
        let r = run_fleet(&m5_large(), &Fleet::scale_out(300), &upstream_client()).expect("runs");
        assert!(r.throttled > 0);
    }
}
