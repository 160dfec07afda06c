//! One emulated node for the whole suite: the EC2 + IMDS emulator (served on the root
//! namespace's loopback), a node network namespace whose ENIs the emulator hot-plugs, and the
//! real `aws-k8s-agent` process wiring that namespace (`IPAMD_NODE_NETNS`), killed with
//! SIGKILL and restarted by the scenarios. The checkpoint lives on a small tmpfs of its own so
//! that a scenario can fill it or make it read-only.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ec2_emulator::server::{self, Shared};
use ipamd::testing::{self, CREDENTIALS};

use crate::bins::workspace_bin;
use crate::{EmulatedNode, TestNetns, free_addr};

/// The pool the agent keeps: `WARM_IP_TARGET`, `MINIMUM_IP_TARGET`.
pub const WARM_IP_TARGET: u64 = 2;
pub const MINIMUM_IP_TARGET: u64 = 4;

/// `HTTP_TIMEOUT` of the agent: longer than `SlowAttach`'s slowest attach (13 s).
pub const ATTACH_PATIENCE_SECS: u64 = 20;

/// A secret the agent is given; it must never appear in a log.
pub const SECRET_MARK: &str = "fault-suite-secret-key-do-not-log";

/// The node: emulator, namespace, agent process, directories.
pub struct FaultNode {
    pub emulated: EmulatedNode,
    pub ns: TestNetns,
    /// Socket, logs; the tmpfs with the checkpoint is `store_dir` inside it.
    pub dir: PathBuf,
    pub store_dir: PathBuf,
    pub socket: PathBuf,
    pub store: PathBuf,
    pub introspection: std::net::SocketAddr,
    /// The agent's stderr (its log), appended across restarts.
    pub agent_log: PathBuf,
    agent: Option<Child>,
    /// When the running agent began serving gRPC.
    served_since: Option<Instant>,
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl FaultNode {
    /// The emulator with an m5.large in 10.0.0.0/24, hot-plugging into a new node namespace;
    /// the agent is not started yet.
    pub async fn new() -> Self {
        let ns = TestNetns::new("faults-node");
        let emulated = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
        ns.add_primary_interface(&emulated.primary_mac, emulated.primary_ip);
        ns.ip(&["route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]);
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        server::lock(&emulated.emu).set_hotplug(&emulated.instance_id, &ns.0);
        let dir = testing::test_dir("faults", "node");
        let store_dir = dir.join("store");
        fs::create_dir_all(&store_dir).expect("store dir");
        let store_arg = store_dir.display().to_string();
        run(
            "mount",
            &["-t", "tmpfs", "-o", "size=1m", "tmpfs", &store_arg],
        )
        .unwrap_or_else(|e| panic!("a tmpfs for the checkpoint: {e}"));
        FaultNode {
            socket: dir.join("ipamd.sock"),
            store: store_dir.join("ipam.json"),
            agent_log: dir.join("agent.log"),
            introspection: free_addr(),
            emulated,
            ns,
            dir,
            store_dir,
            agent: None,
            served_since: None,
        }
    }

    pub fn emu(&self) -> &Shared {
        &self.emulated.emu
    }

    /// The agent's environment: upstream's variables plus ours (docs/configuration.md).
    fn agent_command(&self, extra: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(workspace_bin("aws-k8s-agent"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.agent_log)
            .expect("agent log");
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_EC2_ENDPOINT", &self.emulated.ec2_endpoint)
            .env(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                &self.emulated.imds_endpoint,
            )
            .env("AWS_VPC_K8S_CNI_LOG_FILE", "stderr")
            .env("AWS_VPC_K8S_CNI_LOGLEVEL", "DEBUG")
            .env("AWS_ACCESS_KEY_ID", CREDENTIALS.0)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_MARK)
            .env("ENABLE_IPv4", "true")
            .env("CLUSTER_NAME", "faults")
            .env("IPAMD_NODE_NETNS", self.ns.path())
            .env("IPAMD_GRPC_SOCKET", &self.socket)
            .env("METRICS_BIND_ADDRESS", free_addr().to_string())
            .env("INTROSPECTION_BIND_ADDRESS", self.introspection.to_string())
            .env("AWS_VPC_K8S_CNI_BACKING_STORE", &self.store)
            .env("WARM_IP_TARGET", WARM_IP_TARGET.to_string())
            .env("MINIMUM_IP_TARGET", MINIMUM_IP_TARGET.to_string())
            .env("IP_COOLDOWN_PERIOD", "1")
            // Upstream's knob for slow EC2 answers (default and minimum 10 s): `SlowAttach`'s
            // 10-13 s attach must be waited for, not cut off (the emulator drops an attach
            // whose caller hung up, so with 10 s it never completes).
            .env("HTTP_TIMEOUT", ATTACH_PATIENCE_SECS.to_string())
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(log);
        cmd
    }

    /// Starts the agent process (killing a running one first) without waiting for it.
    pub fn spawn_agent(&mut self) -> Result<(), String> {
        self.kill_agent();
        let child = self
            .agent_command(&[])
            .spawn()
            .map_err(|e| format!("spawn aws-k8s-agent: {e}"))?;
        self.agent = Some(child);
        Ok(())
    }

    /// Waits until the agent has served for longer than its stale-allocation sweep after
    /// start (`ipamd::stale_pods::SWEEP_AFTER`), plus a second for the checkpoint write.
    pub async fn wait_past_start_sweep(&self) {
        let sweep: Duration = ipamd::stale_pods::SWEEP_AFTER.iter().sum();
        if let Some(since) = self.served_since {
            let until = since + sweep + Duration::from_secs(1);
            tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
        }
    }

    /// Starts the agent (killing a running one first) and waits until it serves gRPC.
    pub async fn start_agent(&mut self) -> Result<(), String> {
        self.spawn_agent()?;
        let mut child = self.agent.take().ok_or("no agent")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the agent exited at start ({status})"));
            }
            if rpc::client::connect(
                &format!("unix://{}", self.socket.display()),
                Some(Duration::from_millis(200)),
            )
            .await
            .is_ok()
            {
                self.agent = Some(child);
                self.served_since = Some(Instant::now());
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the agent never served gRPC in 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the agent binary to completion with `extra` environment (a bad configuration must
    /// make it exit): (exit code, stderr).
    pub fn agent_exit(&self, extra: &[(&str, &str)], timeout: Duration) -> (Option<i32>, String) {
        let err = self.dir.join("agent-once.log");
        let mut cmd = self.agent_command(extra);
        cmd.stderr(File::create(&err).expect("log"));
        let mut child = cmd.spawn().expect("spawn aws-k8s-agent");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break s.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, fs::read_to_string(&err).unwrap_or_default())
    }

    /// SIGKILL to the agent (no-op when it is not running). True if one was killed.
    pub fn kill_agent(&mut self) -> bool {
        match self.agent.take() {
            Some(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
                true
            }
            None => false,
        }
    }

    /// Whether the agent process is running.
    pub fn agent_running(&mut self) -> bool {
        self.agent
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The agent's pid while it runs.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    /// Fills the checkpoint's tmpfs (a ballast file); [`Self::free_disk`] removes it.
    pub fn fill_disk(&self) {
        let ballast = self.store_dir.join("ballast");
        let mut f = File::create(&ballast).expect("ballast");
        let chunk = vec![0u8; 64 * 1024];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        let _ = std::io::Write::write_all(&mut f, &[0u8; 512]);
        let _ = std::io::Write::write_all(&mut f, &[0u8; 1]);
    }

    pub fn free_disk(&self) {
        let _ = fs::remove_file(self.store_dir.join("ballast"));
    }

    /// Remounts the checkpoint's tmpfs read-only (`true`) or read-write.
    pub fn set_read_only(&self, ro: bool) {
        let opts = if ro { "remount,ro" } else { "remount,rw" };
        let dir = self.store_dir.display().to_string();
        run("mount", &["-o", opts, &dir]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The checkpoint file's text ("" when missing).
    pub fn checkpoint_text(&self) -> String {
        fs::read_to_string(&self.store).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for FaultNode {
    fn drop(&mut self) {
        self.kill_agent();
        let dir = self.store_dir.display().to_string();
        let _ = run("umount", &["-l", &dir]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
