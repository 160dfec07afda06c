//! The fault suite (docs/reliability.md): the real `aws-k8s-agent` and `aws-cni` binaries
//! on a node network namespace against the EC2 + IMDS emulator; every scenario of
//! `integration_tests::faults::scenarios::ALL`, each followed by the invariant, with the seed
//! printed for replay. Short by default (one round, a 48-cycle load); `VPC_CNI_FAULTS=long`
//! runs `VPC_CNI_FAULTS_ROUNDS` rounds (default 1; 2 pass 10,000 faults) with the 1,000-cycle load at
//! concurrency 16; `VPC_CNI_FAULTS_SEED=<n>` replays a run's fault plan, and
//! `VPC_CNI_FAULTS_ONLY=Load,HostileGrpc` runs only the named scenarios (with the same seeds).
//! The last line is the summary.

use std::time::Instant;

use integration_tests::faults::scenarios::{ALL, Scenario, Suite};
use integration_tests::faults::{Mode, seed_from_env};

/// `VPC_CNI_FAULTS_ONLY=Load,HostileGrpc` runs only those scenarios (to replay one).
fn selected(s: &Scenario) -> bool {
    match std::env::var("VPC_CNI_FAULTS_ONLY") {
        Ok(only) if !only.is_empty() => only.split(',').any(|n| n.trim() == format!("{s:?}")),
        _ => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_never_break_the_invariant() {
    let (mode, seed) = (Mode::from_env(), seed_from_env());
    let started = Instant::now();
    eprintln!("fault suite ({mode:?}), seed {seed}: replay with VPC_CNI_FAULTS_SEED={seed}");
    let mut suite = Suite::start(mode, seed).await;
    for round in 0..mode.rounds() {
        eprintln!("round {round}");
        for s in ALL.iter().filter(|s| selected(s)) {
            suite.run(round, *s).await;
        }
    }
    let summary = suite.tally.summary(mode, seed, started);
    eprintln!("{summary}");
    println!("{summary}");
    assert!(
        suite.tally.violations.is_empty(),
        "{summary}\nviolations:\n{}",
        suite.tally.violations.join("\n")
    );
}
