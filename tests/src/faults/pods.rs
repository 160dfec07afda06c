//! The kubelet's side: pods added and deleted through the real `aws-cni` binary run inside
//! the node namespace, as a runtime runs it (a fresh network namespace per pod, `prevResult`
//! on DEL, DEL after a failed ADD, DEL retried until it succeeds, the pod's namespace removed
//! after DEL). The pods that hold an address are what the invariant checks against.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::TestNetns;
use crate::bins::workspace_bin;

/// A pod that got an address (the runtime holds its result).
pub struct LivePod {
    pub name: String,
    pub ip: Ipv4Addr,
    pub veth: String,
    pub result: Value,
    pub netns: TestNetns,
}

/// One plugin run: exit code (`None`: killed), stdout, stderr.
#[derive(Debug, Clone)]
pub struct PluginRun {
    pub rc: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The runtime on one node.
pub struct Kubelet {
    pub node_ns: String,
    pub socket: String,
    pub plugin_log: PathBuf,
    next: AtomicU64,
    pub live: Mutex<BTreeMap<String, LivePod>>,
    /// ADDs that failed, and the last failure's stdout.
    pub add_failures: AtomicU64,
    pub last_failure: Mutex<String>,
    /// Plugin runs killed by SIGKILL (mid-ADD, mid-DEL).
    pub plugin_kills: AtomicU64,
    /// Problems a runtime would see as bugs (a panic, a hang, an unparsable answer).
    pub problems: Mutex<Vec<String>>,
}

/// The network configuration (with `prevResult` on DEL).
pub fn conf(log: &std::path::Path, prev: Option<&Value>) -> String {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": "aws-cni", "type": "aws-cni",
        "vethPrefix": "eni", "mtu": "9001",
        "pluginLogFile": log.display().to_string(), "pluginLogLevel": "Debug",
    });
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    c.to_string()
}

/// Runs `aws-cni` inside `node_ns` with `env` and `stdin`; SIGKILLed after `kill_after`
/// (and after 60 s in any case: a hang).
pub fn run_plugin(
    node_ns: &str,
    env: &[(String, String)],
    stdin: &str,
    kill_after: Option<Duration>,
) -> PluginRun {
    let mut child = Command::new("ip")
        .args(["netns", "exec", node_ns])
        .arg(workspace_bin("aws-cni"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aws-cni");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let deadline = Instant::now() + kill_after.unwrap_or(Duration::from_secs(60));
    let mut killed = false;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            let _ = child.kill();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().expect("plugin output");
    PluginRun {
        rc: if killed { None } else { out.status.code() },
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// The CNI environment of one command.
pub fn cni_env(
    command: &str,
    cid: &str,
    netns: &str,
    pod: &str,
    socket: &str,
) -> Vec<(String, String)> {
    [
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", cid.to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_NETNS", netns.to_string()),
        (
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid}"),
        ),
        ("CNI_PATH", "/opt/cni/bin".to_string()),
        ("IPAMD_GRPC_SOCKET", socket.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What one ADD did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Ok(Ipv4Addr),
    /// ADD failed (or was killed) and the DEL that followed cleaned up.
    Failed,
}

impl Kubelet {
    pub fn new(node_ns: &str, socket: &std::path::Path, plugin_log: PathBuf) -> Arc<Self> {
        Arc::new(Kubelet {
            node_ns: node_ns.to_string(),
            socket: socket.display().to_string(),
            plugin_log,
            next: AtomicU64::new(0),
            live: Mutex::new(BTreeMap::new()),
            plugin_kills: AtomicU64::new(0),
            add_failures: AtomicU64::new(0),
            last_failure: Mutex::new(String::new()),
            problems: Mutex::new(Vec::new()),
        })
    }

    fn problem(&self, what: String) {
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    /// Looks at a run for what must never happen: a panic, or a failure without a CNI error
    /// document on stdout.
    fn inspect(&self, what: &str, r: &PluginRun) {
        if r.stderr.contains("panicked") {
            self.problem(format!("{what}: the plugin panicked: {}", r.stderr));
        }
        if r.rc.is_some_and(|c| c != 0) {
            let doc: Option<Value> = serde_json::from_str(&r.stdout).ok();
            if doc.as_ref().and_then(|d| d["code"].as_u64()).is_none() {
                self.problem(format!(
                    "{what}: failed without a CNI error: {:?}",
                    r.stdout
                ));
            }
        }
    }

    /// A new pod name and container ID.
    pub fn new_pod(&self) -> (String, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (format!("pod-{n}"), format!("cid-{n:08x}"))
    }

    /// ADD a new pod; `kill_after` SIGKILLs the plugin mid-ADD. A failed ADD is followed by DELs
    /// until one succeeds, and the pod's namespace is removed, as a runtime does.
    pub fn add(&self, kill_after: Option<Duration>) -> Added {
        let (name, cid) = self.new_pod();
        self.add_named(&name, &cid, kill_after)
    }

    /// ADD a new pod as kubelet does: a failed sandbox is torn down (DEL) and tried again,
    /// here for up to `patience`. Returns the last outcome.
    pub fn add_retrying(&self, patience: Duration) -> Added {
        let deadline = Instant::now() + patience;
        loop {
            let (name, cid) = self.new_pod();
            let added = self.add_named(&name, &cid, None);
            if matches!(added, Added::Ok(_)) || Instant::now() >= deadline {
                return added;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// [`Self::add`] for a given pod and container ID.
    pub fn add_named(&self, name: &str, cid: &str, kill_after: Option<Duration>) -> Added {
        let netns = TestNetns::new("faults-pod");
        let env = cni_env("ADD", cid, &netns.path(), name, &self.socket);
        let r = run_plugin(
            &self.node_ns,
            &env,
            &conf(&self.plugin_log, None),
            kill_after,
        );
        self.inspect("ADD", &r);
        if r.rc != Some(0) {
            self.add_failures.fetch_add(1, Ordering::Relaxed);
            *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = r.stdout.clone();
        }
        if r.rc.is_none() {
            self.plugin_kills.fetch_add(1, Ordering::Relaxed);
        }
        if r.rc == Some(0) {
            match parse_result(&r.stdout) {
                Some((ip, veth, result)) => {
                    let pod = LivePod {
                        name: name.to_string(),
                        ip,
                        veth,
                        result,
                        netns,
                    };
                    self.live
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(cid.to_string(), pod);
                    return Added::Ok(ip);
                }
                None => self.problem(format!(
                    "ADD succeeded with an unusable result: {}",
                    r.stdout
                )),
            }
        }
        self.del_until_ok(name, cid, &netns.path(), None);
        self.remove_netns(netns, name);
        Added::Failed
    }

    /// DEL a live pod (with its `prevResult`), retried until it succeeds; `kill_after` kills
    /// the first attempt. Then the runtime removes the pod's namespace.
    pub fn del(&self, cid: &str, kill_after: Option<Duration>) -> bool {
        let Some(pod) = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(cid)
        else {
            return false;
        };
        if let Some(k) = kill_after {
            let env = cni_env("DEL", cid, &pod.netns.path(), &pod.name, &self.socket);
            let stdin = conf(&self.plugin_log, Some(&pod.result));
            let r = run_plugin(&self.node_ns, &env, &stdin, Some(k));
            self.inspect("DEL (killed)", &r);
            if r.rc.is_none() {
                self.plugin_kills.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.del_until_ok(&pod.name, cid, &pod.netns.path(), Some(&pod.result));
        self.remove_netns(pod.netns, &pod.name);
        true
    }

    /// What a runtime does after DEL: removes the pod's namespace; the kernel destroys it
    /// (and the veth pair in it) asynchronously, so this waits (bounded) for the host veth
    /// to leave the node.
    pub fn remove_netns(&self, netns: TestNetns, pod: &str) {
        drop(netns);
        let veth = net::names::host_veth_name("eni", "default", pod, 0);
        for _ in 0..200 {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.node_ns, "ip", "link", "show", &veth])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !out.is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.problem(format!(
            "{veth} of {pod} stayed on the node after its namespace went"
        ));
    }

    /// DELs until one succeeds (bounded: a DEL that never succeeds is a problem).
    pub fn del_until_ok(&self, name: &str, cid: &str, netns: &str, prev: Option<&Value>) {
        let env = cni_env("DEL", cid, netns, name, &self.socket);
        let stdin = conf(&self.plugin_log, prev);
        for _ in 0..150 {
            let r = run_plugin(&self.node_ns, &env, &stdin, None);
            self.inspect("DEL", &r);
            if r.rc == Some(0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.problem(format!("DEL of {cid} never succeeded"));
    }

    /// Takes a live pod out of the kubelet's hands (the scenario deletes it itself).
    pub fn take(&self, cid: &str) -> Option<LivePod> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(cid)
    }

    /// The live pod holding `ip`.
    pub fn cid_of(&self, ip: Ipv4Addr) -> Option<String> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(_, p)| p.ip == ip)
            .map(|(c, _)| c.clone())
    }

    /// Container IDs of the live pods.
    pub fn live_ids(&self) -> Vec<String> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// (container ID, IP, host veth) of every live pod.
    pub fn live_view(&self) -> Vec<(String, Ipv4Addr, String)> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(cid, p)| (cid.clone(), p.ip, p.veth.clone()))
            .collect()
    }

    /// Takes the problems seen so far.
    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.problems.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// (IP, host veth, the result) of an ADD's stdout.
fn parse_result(stdout: &str) -> Option<(Ipv4Addr, String, Value)> {
    let v: Value = serde_json::from_str(stdout).ok()?;
    let ip = v["ips"][0]["address"]
        .as_str()?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    let veth = v["interfaces"][0]["name"].as_str()?.to_string();
    Some((ip, veth, v))
}
