//! The scenarios and the suite that runs them. Each scenario gets its own seed (derived from
//! the run's seed and printed before it starts), runs, and is followed by the invariant.

mod ec2;
mod inputs;
mod kills;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ec2_emulator::server;

use super::invariant;
use super::node::FaultNode;
use super::pods::{Added, Kubelet};
use super::{Mode, Rng, Tally};

/// The checks a scenario made itself (named), before the invariant.
pub type Outcome = Vec<(String, Result<(), String>)>;

/// Every scenario, in the order of one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    AgentKilledDuringChurn,
    AgentKilledDuringGrowth,
    AgentKilledDuringShrink,
    AgentKilledDuringStart,
    PluginKilled,
    CniProtocolEdges,
    Ec2Faults,
    ImdsFaults,
    SlowAttach,
    Load,
    HostileGrpc,
    HostileCni,
    HostileCheckpoint,
    HostileEnv,
    Security,
}

pub const ALL: &[Scenario] = &[
    Scenario::SlowAttach,
    Scenario::AgentKilledDuringGrowth,
    Scenario::AgentKilledDuringChurn,
    Scenario::AgentKilledDuringShrink,
    Scenario::AgentKilledDuringStart,
    Scenario::PluginKilled,
    Scenario::CniProtocolEdges,
    Scenario::Ec2Faults,
    Scenario::ImdsFaults,
    Scenario::Load,
    Scenario::HostileGrpc,
    Scenario::HostileCni,
    Scenario::HostileCheckpoint,
    Scenario::HostileEnv,
    Scenario::Security,
];

/// The suite: one node, its kubelet, the figures.
pub struct Suite {
    pub node: FaultNode,
    pub kubelet: Arc<Kubelet>,
    pub tally: Tally,
    pub mode: Mode,
    pub seed: u64,
}

/// Runs a blocking closure (plugin runs, waits) off the runtime's workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

impl Suite {
    /// The node with its agent started.
    pub async fn start(mode: Mode, seed: u64) -> Suite {
        // Resolved (and built when missing) before any scenario's clock runs.
        blocking(|| crate::bins::workspace_bin("aws-cni")).await;
        let mut node = FaultNode::new().await;
        node.start_agent().await.unwrap_or_else(|e| panic!("{e}"));
        let kubelet = Kubelet::new(&node.ns.0, &node.socket, node.dir.join("plugin.log"));
        Suite {
            node,
            kubelet,
            tally: Tally::default(),
            mode,
            seed,
        }
    }

    fn injected(&self) -> u64 {
        server::lock(self.node.emu()).faults.injected_total()
    }

    /// The seed of scenario `s` in round `round`: a function of the run's seed only, so a
    /// scenario replays alone (`VPC_CNI_FAULTS_ONLY`) with the same fault plan.
    pub fn scenario_seed(&self, round: u64, s: Scenario) -> u64 {
        let index = ALL.iter().position(|x| *x == s).unwrap_or(0) as u64;
        Rng::new(self.seed ^ (round << 32) ^ index.wrapping_mul(0x9E37_79B9)).next_u64()
    }

    /// Runs one scenario with its seed, then the invariant.
    pub async fn run(&mut self, round: u64, s: Scenario) {
        let last = ALL.last() == Some(&s);
        let exact_pool = self.mode == Mode::Long || last;
        let seed = self.scenario_seed(round, s);
        let started = Instant::now();
        eprintln!("scenario {s:?} seed {seed}");
        let before = self.injected();
        let mut rng = Rng::new(seed);
        let name = format!("{s:?}");
        let outcome = match s {
            Scenario::AgentKilledDuringChurn => kills::agent_during_churn(self, &mut rng).await,
            Scenario::AgentKilledDuringGrowth => kills::agent_during_growth(self, &mut rng).await,
            Scenario::AgentKilledDuringShrink => kills::agent_during_shrink(self, &mut rng).await,
            Scenario::AgentKilledDuringStart => kills::agent_during_start(self, &mut rng).await,
            Scenario::PluginKilled => kills::plugin_killed(self, &mut rng).await,
            Scenario::CniProtocolEdges => kills::cni_protocol_edges(self, &mut rng).await,
            Scenario::Ec2Faults => ec2::ec2_faults(self, &mut rng).await,
            Scenario::ImdsFaults => ec2::imds_faults(self, &mut rng).await,
            Scenario::SlowAttach => ec2::slow_attach(self, &mut rng).await,
            Scenario::Load => ec2::load(self, &mut rng).await,
            Scenario::HostileGrpc => inputs::hostile_grpc(self, &mut rng).await,
            Scenario::HostileCni => inputs::hostile_cni(self, &mut rng).await,
            Scenario::HostileCheckpoint => inputs::hostile_checkpoint(self, &mut rng).await,
            Scenario::HostileEnv => inputs::hostile_env(self, &mut rng).await,
            Scenario::Security => inputs::security(self, &mut rng).await,
        };
        for (what, result) in outcome {
            self.tally.check(&format!("{name}: {what}"), seed, result);
        }
        server::lock(self.node.emu()).faults.clear();
        if !self.node.agent_running()
            && let Err(e) = self.node.start_agent().await
        {
            self.tally.check(&name, seed, Err(format!("restart: {e}")));
        }
        let scenario_secs = started.elapsed().as_secs_f64();
        for (what, result) in invariant::check(&mut self.node, &self.kubelet, exact_pool).await {
            self.tally
                .check(&format!("{name}: invariant: {what}"), seed, result);
        }
        self.tally.emulator += self.injected().saturating_sub(before);
        self.tally.scenarios += 1;
        eprintln!(
            "scenario {s:?} done in {:.1} s + invariant {:.1} s ({} failed ADDs so far, last: {:.200}); so far {} faults, {} checks, {} violations",
            scenario_secs,
            started.elapsed().as_secs_f64() - scenario_secs,
            self.kubelet
                .add_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            self.kubelet
                .last_failure
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
            self.tally.faults(),
            self.tally.checks,
            self.tally.violations.len()
        );
    }

    /// Restarts the agent after a kill, retrying a failed start (bounded); a start that
    /// never succeeds is returned as a failed check.
    ///
    /// Restarted as kubelet restarts a crashed aws-node, for up to a minute: an agent that
    /// exits at start while IMDS answers 404 or 5xx (as upstream's `aws-k8s-agent` exits when
    /// its metadata client cannot be made) must come back once IMDS answers again.
    pub async fn restart(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = match self.node.start_agent().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "the agent does not start again ({attempts} starts in 60 s): {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// SIGKILLs the agent (counted as a fault).
    pub fn kill_agent(&mut self) {
        if self.node.kill_agent() {
            self.tally.kills += 1;
        }
    }

    /// ADDs `n` new pods concurrently (each retried for up to 45 s, as kubelet retries);
    /// returns how many got an address.
    pub async fn add_pods(&self, n: usize) -> usize {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let k = self.kubelet.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                k.add_retrying(Duration::from_secs(45))
            }));
        }
        let mut ok = 0;
        for t in tasks {
            if matches!(t.await, Ok(Added::Ok(_))) {
                ok += 1;
            }
        }
        ok
    }

    /// DELs up to `n` live pods concurrently.
    pub async fn del_pods(&self, n: usize) {
        let ids: Vec<String> = self.kubelet.live_ids().into_iter().take(n).collect();
        let tasks: Vec<_> = ids
            .into_iter()
            .map(|cid| {
                let k = self.kubelet.clone();
                tokio::task::spawn_blocking(move || k.del(&cid, None))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// How many more pods make the agent attach another ENI (`None`: the instance has its
    /// maximum of ENIs attached). m5.large: 9 secondary addresses per ENI, 3 ENIs.
    pub fn pods_to_grow(&self) -> Option<usize> {
        let enis = {
            let emu = server::lock(self.node.emu());
            emu.world
                .attached_enis(&self.node.emulated.instance_id)
                .len()
        };
        let live = self.kubelet.live_ids().len();
        let room = (enis * 9).saturating_sub(super::node::WARM_IP_TARGET as usize);
        (enis < 3).then(|| room.saturating_sub(live) + 1)
    }

    /// Keeps the number of live pods at most `max` (DELs the excess).
    pub async fn trim_pods(&self, max: usize) {
        let live = self.kubelet.live_ids().len();
        if live > max {
            self.del_pods(live - max).await;
        }
    }
}
