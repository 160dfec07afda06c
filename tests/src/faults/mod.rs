//! The fault suite's harness (docs/reliability.md): the real `aws-k8s-agent` and `aws-cni`
//! binaries on a node network namespace against the EC2 + IMDS emulator, faults injected from
//! a seeded generator, and the invariant checked after every scenario.
//!
//! - [`Mode`], [`Rng`], [`Tally`]: how long to run, the seeded generator, and the figures
//!   (scenarios, faults injected, invariant checks, violations) of the summary line.
//! - [`node::FaultNode`]: the emulator, the node namespace, the agent process (killed and
//!   restarted), the checkpoint on its own small tmpfs, and the pods the "kubelet" holds.
//! - [`invariant`]: the invariant, read from EC2 (the emulator), the checkpoint file and the
//!   kernel state of the node namespace.
//! - [`scenarios`]: the scenarios, each a function of the node and the generator.

pub mod hostile;
pub mod invariant;
pub mod node;
pub mod pods;
pub mod scenarios;

use std::time::{Duration, Instant};

/// How much to run: `VPC_CNI_FAULTS=long` for the long run, the short mode otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Short,
    Long,
}

impl Mode {
    /// From `VPC_CNI_FAULTS` (`long`, anything else is short).
    pub fn from_env() -> Self {
        match std::env::var("VPC_CNI_FAULTS").as_deref() {
            Ok("long") => Mode::Long,
            _ => Mode::Short,
        }
    }

    /// Rounds of the scenario list: one in short mode; in long mode, as many as
    /// `VPC_CNI_FAULTS_ROUNDS` says (default 1).
    pub fn rounds(self) -> u64 {
        match self {
            Mode::Short => 1,
            Mode::Long => std::env::var("VPC_CNI_FAULTS_ROUNDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
        }
    }

    /// Hostile inputs per round: (gRPC requests, CNI plugin runs).
    pub fn hostile(self) -> (u64, u64) {
        match self {
            Mode::Short => (12, 10),
            Mode::Long => (9000, 300),
        }
    }

    /// Pod churn cycles of the load scenario per round, and its concurrency.
    pub fn churn(self) -> (usize, usize) {
        match self {
            Mode::Short => (48, 8),
            Mode::Long => (1000, 16),
        }
    }
}

/// The seed: `VPC_CNI_FAULTS_SEED` (to replay a run), else the clock.
pub fn seed_from_env() -> u64 {
    std::env::var("VPC_CNI_FAULTS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// SplitMix64: small, seedable, the same sequence for the same seed on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }

    /// A duration uniform in `lo_ms..hi_ms` milliseconds.
    pub fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(self.range(lo_ms, hi_ms))
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    /// One of `items` (panics on an empty slice: test support).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }

    /// A child generator (its own sequence, derived from this one).
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

/// The figures of a run. Faults are counted where they are injected: each EC2 or IMDS answer
/// the emulator faulted (read from its counters), each kill of a binary, each hostile input.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub scenarios: u64,
    /// Kills of the agent or the plugin.
    pub kills: u64,
    /// Hostile inputs sent (gRPC, CNI, checkpoint, environment).
    pub hostile: u64,
    /// Faulted EC2/IMDS answers, from the emulator's counters (added at the end of each
    /// scenario).
    pub emulator: u64,
    pub checks: u64,
    pub violations: Vec<String>,
}

impl Tally {
    pub fn faults(&self) -> u64 {
        self.kills + self.hostile + self.emulator
    }

    /// Records one check; `Err` is a violation, kept with the scenario's name and the seed.
    pub fn check(&mut self, scenario: &str, seed: u64, result: Result<(), String>) {
        self.checks += 1;
        if let Err(e) = result {
            eprintln!("VIOLATION in {scenario} (scenario seed {seed}): {e}");
            self.violations
                .push(format!("{scenario} (seed {seed}): {e}"));
        }
    }

    /// The summary line.
    pub fn summary(&self, mode: Mode, seed: u64, started: Instant) -> String {
        format!(
            "fault suite ({mode:?}): {} scenarios, {} faults injected ({} EC2/IMDS answers, {} kills, {} hostile inputs), {} invariant checks, {} violations, seed {seed}, {:.1} s",
            self.scenarios,
            self.faults(),
            self.emulator,
            self.kills,
            self.hostile,
            self.checks,
            self.violations.len(),
            started.elapsed().as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_replays_from_its_seed() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(42);
                move |_| r.range(0, 1000)
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(42);
                move |_| r.range(0, 1000)
            })
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|v| *v < 1000));
        assert_ne!(a, vec![a[0]; 5], "not constant");
    }

    #[test]
    fn a_failed_check_is_a_violation() {
        let mut t = Tally::default();
        t.check("s", 1, Ok(()));
        t.check("s", 1, Err("two pods hold 10.0.0.5".into()));
        assert_eq!((t.checks, t.violations.len()), (2, 1));
    }
}
