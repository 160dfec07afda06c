//! The real `aws-vpc-cni` entrypoint running the real `aws-k8s-agent` against the EC2/IMDS
//! emulator: it installs `aws-cni` and `egress-cni` and, once ipamd is healthy,
//! `10-aws.conflist`; a watcher reading the target directories the whole time never sees a
//! partial file. Killing the agent makes the entrypoint fail; SIGTERM to the entrypoint stops
//! the agent and exits 0. A bad environment is refused before anything is installed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::agent::process_env;
use integration_tests::{EmulatedNode, free_addr, workspace_bin};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The entrypoint.
fn entrypoint() -> PathBuf {
    workspace_bin("aws-vpc-cni")
}

/// An app directory as the image's `/app`: links to the workspace's binaries.
fn app_dir(root: &Path) -> PathBuf {
    let app = root.join("app");
    fs::create_dir_all(&app).unwrap();
    // A snapshot, not a symlink: another build may replace the workspace binaries while the
    // test runs, and the installed files are compared with what the entrypoint was given.
    for name in ["aws-k8s-agent", "aws-cni", "egress-cni"] {
        let (from, to) = (workspace_bin(name), app.join(name));
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).unwrap();
        }
    }
    app
}

struct Dirs {
    _root: tempfile::TempDir,
    app: PathBuf,
    bin: PathBuf,
    netd: PathBuf,
    socket: PathBuf,
    store: PathBuf,
    log: PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let app = app_dir(root.path());
    let bin = root.path().join("host/opt/cni/bin");
    let netd = root.path().join("host/etc/cni/net.d");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&netd).unwrap();
    // The DaemonSet's hostPath /var/run/aws-node (DirectoryOrCreate).
    fs::create_dir_all(root.path().join("run")).unwrap();
    Dirs {
        socket: root.path().join("run/ipamd.sock"),
        store: root.path().join("run/ipam.json"),
        log: root.path().join("entrypoint.log"),
        _root: root,
        app,
        bin,
        netd,
    }
}

fn start(node: &EmulatedNode, d: &Dirs, extra: &[(&str, &str)]) -> Child {
    process_env(&mut Command::new(entrypoint()), node, &d.socket, &d.store)
        .env("WARM_IP_TARGET", "3")
        .env("VPC_CNI_APP_DIR", &d.app)
        .env("HOST_CNI_BIN_PATH", &d.bin)
        .env("HOST_CNI_CONFDIR_PATH", &d.netd)
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&d.log).unwrap())
        .spawn()
        .unwrap()
}

/// What the watcher saw.
#[derive(Default, Debug)]
struct Seen {
    binary_reads: u64,
    conflist_reads: u64,
    partial: Vec<String>,
    conflist_before_socket: bool,
}

/// Reads the target directories in a loop until `stop`: every binary present must have its
/// full size, every conflist present must parse, and the conflist must not appear before
/// ipamd's socket exists.
fn watch(d: &Dirs, stop: Arc<AtomicBool>) -> thread::JoinHandle<Seen> {
    let sizes: Vec<(PathBuf, u64)> = ["aws-cni", "egress-cni"]
        .iter()
        .map(|n| (d.bin.join(n), fs::metadata(d.app.join(n)).unwrap().len()))
        .collect();
    let conflist = d.netd.join("10-aws.conflist");
    let socket = d.socket.clone();
    thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            for (path, size) in &sizes {
                if let Ok(m) = fs::metadata(path) {
                    seen.binary_reads += 1;
                    if m.len() != *size {
                        seen.partial.push(format!(
                            "{} had {} of {size} bytes",
                            path.display(),
                            m.len()
                        ));
                    }
                }
            }
            if let Ok(text) = fs::read_to_string(&conflist) {
                if seen.conflist_reads == 0 && !socket.exists() {
                    seen.conflist_before_socket = true;
                }
                seen.conflist_reads += 1;
                if serde_json::from_str::<Value>(&text).is_err() {
                    seen.partial.push(format!("unparsable conflist: {text:?}"));
                }
            }
        }
        seen
    })
}

fn wait_for(what: &str, child: &mut Child, log: &Path, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            let log = fs::read_to_string(log).unwrap_or_default();
            panic!("the entrypoint exited ({status}) before {what}:\n{log}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Children of `pid` (from /proc/*/status PPid).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let status = fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn agent_of(entrypoint: u32) -> u32 {
    let agents: Vec<u32> = children(entrypoint)
        .into_iter()
        .filter(|p| {
            fs::read_link(format!("/proc/{p}/exe"))
                .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "aws-k8s-agent"))
        })
        .collect();
    assert_eq!(agents.len(), 1, "exactly one agent child: {agents:?}");
    agents[0]
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the entrypoint did not exit");
        thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_atomically_supervises_the_agent_and_stops_on_sigterm() {
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let d = dirs();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(&d, stop.clone());
    let conflist = d.netd.join("10-aws.conflist");

    // Run 1: installs, becomes ready; SIGKILL of the agent fails the entrypoint.
    let mut ep = start(&node, &d, &[("AWS_VPC_K8S_CNI_VETHPREFIX", "abc")]);
    {
        let c = conflist.clone();
        tokio::task::block_in_place(|| wait_for("the conflist", &mut ep, &d.log, || c.exists()));
    }
    for name in ["aws-cni", "egress-cni"] {
        assert_eq!(
            fs::read(d.bin.join(name)).unwrap(),
            fs::read(d.app.join(name)).unwrap(),
            "{name} installed byte for byte"
        );
    }
    let doc: Value = serde_json::from_str(&fs::read_to_string(&conflist).unwrap()).unwrap();
    assert_eq!(doc["plugins"][0]["vethPrefix"], "abc");
    assert_eq!(doc["plugins"][1]["enabled"], "false");
    let agent = agent_of(ep.id());
    kill(Pid::from_raw(agent as i32), Signal::SIGKILL).unwrap();
    let status = tokio::task::block_in_place(|| wait_exit(&mut ep));
    assert!(
        !status.success(),
        "agent killed → entrypoint fails: {status}"
    );
    assert_eq!(status.code(), Some(137), "128 + SIGKILL");

    // Run 2: reinstalls over the existing binaries while the watcher reads them; SIGTERM to the
    // entrypoint stops the agent and exits 0.
    fs::remove_file(&conflist).unwrap();
    let mut ep = start(&node, &d, &[]);
    {
        let c = conflist.clone();
        tokio::task::block_in_place(|| {
            wait_for("the conflist (run 2)", &mut ep, &d.log, || c.exists())
        });
    }
    let agent = agent_of(ep.id());
    kill(Pid::from_raw(ep.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::block_in_place(|| wait_exit(&mut ep));
    assert_eq!(status.code(), Some(0), "SIGTERM → clean stop: {status}");
    assert!(!alive(agent), "the agent was stopped with the entrypoint");

    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert!(
        seen.partial.is_empty(),
        "partial files seen: {:?}",
        seen.partial
    );
    assert!(seen.binary_reads > 0 && seen.conflist_reads > 0, "{seen:?}");
    assert!(
        !seen.conflist_before_socket,
        "conflist only after ipamd serves"
    );
    let mut names: Vec<String> = fs::read_dir(&d.bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["aws-cni", "egress-cni"], "no temporary files left");
    let netd: Vec<_> = fs::read_dir(&d.netd)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(netd, ["10-aws.conflist"]);
}

#[test]
fn bad_environment_is_refused_before_installing_anything() {
    let d = dirs();
    let out = Command::new(entrypoint())
        .env_clear()
        .env("ENABLE_IPv4", "true")
        .env("AWS_VPC_K8S_CNI_VETHPREFIX", "vlan")
        .env("AWS_VPC_K8S_PLUGIN_LOG_FILE", "stdout")
        .env("AWS_VPC_ENI_MTU", "100")
        .env("VPC_CNI_APP_DIR", &d.app)
        .env("HOST_CNI_BIN_PATH", &d.bin)
        .env("HOST_CNI_CONFDIR_PATH", &d.netd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for var in [
        "AWS_VPC_K8S_CNI_VETHPREFIX",
        "AWS_VPC_K8S_PLUGIN_LOG_FILE",
        "AWS_VPC_ENI_MTU",
    ] {
        assert!(err.contains(var), "names {var}: {err}");
    }
    assert_eq!(fs::read_dir(&d.bin).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&d.netd).unwrap().count(), 0);
}

#[test]
fn an_agent_that_dies_before_it_is_healthy_fails_the_entrypoint_without_a_conflist() {
    let d = dirs();
    // IMDS and EC2 point at a closed port: the agent cannot initialise and exits.
    let dead = format!("http://{}", free_addr());
    let out = Command::new(entrypoint())
        .env_clear()
        .env("ENABLE_IPv4", "true")
        .env("AWS_EC2_ENDPOINT", &dead)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &dead)
        .env("AWS_VPC_K8S_CNI_LOG_FILE", "stderr")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("IPAMD_SKIP_HOST_NETWORKING", "true")
        .env("IPAMD_GRPC_SOCKET", &d.socket)
        .env("DISABLE_METRICS", "true")
        .env("DISABLE_INTROSPECTION", "true")
        .env("VPC_CNI_APP_DIR", &d.app)
        .env("HOST_CNI_BIN_PATH", &d.bin)
        .env("HOST_CNI_CONFDIR_PATH", &d.netd)
        .env("VPC_CNI_AGENT_READY_TIMEOUT_SECONDS", "60")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        !d.netd.join("10-aws.conflist").exists(),
        "no conflist without a healthy ipamd"
    );
    assert!(
        d.bin.join("aws-cni").is_file(),
        "plugins are installed first, as upstream"
    );
}

/// IPv6 clusters pass the start-up check: ipamd's IPv6 mode and egress-cni's IPv4 egress
/// (`ENABLE_V4_EGRESS`, default true there) are built.
#[test]
fn ipv6_clusters_with_v4_egress_pass_the_start_up_check() {
    let d = dirs();
    let out = Command::new(entrypoint())
        .env_clear()
        .env("ENABLE_IPv6", "true")
        .env("ENABLE_IPv4", "false")
        .env("ENABLE_PREFIX_DELEGATION", "true")
        .env("VPC_CNI_APP_DIR", &d.app)
        .env("HOST_CNI_BIN_PATH", &d.bin)
        .env("HOST_CNI_CONFDIR_PATH", &d.netd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // Whatever stops this bare run later (no IMDS here), it is not a refusal of IPv6 mode
    // or of its IPv4 egress: both are built.
    assert!(!err.contains("ENABLE_V4_EGRESS"), "{err}");
    assert!(!err.contains("not built"), "{err}");
}

#[test]
fn unbuilt_agent_switches_are_refused_before_anything_is_installed() {
    let d = dirs();
    let out = Command::new(entrypoint())
        .env_clear()
        .env("ENABLE_POD_ENI", "true")
        .env("ENABLE_MULTI_NIC", "true")
        .env("VPC_CNI_APP_DIR", &d.app)
        .env("HOST_CNI_BIN_PATH", &d.bin)
        .env("HOST_CNI_CONFDIR_PATH", &d.netd)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ENABLE_POD_ENI=\"true\": security groups for pods"),
        "{err}"
    );
    // Multi-NIC is built: not refused.
    assert!(!err.contains("ENABLE_MULTI_NIC"), "{err}");
    assert_eq!(
        fs::read_dir(&d.bin).unwrap().count(),
        0,
        "nothing installed"
    );
    assert!(!d.netd.join("10-aws.conflist").exists());
}

#[test]
fn v6_egress_in_ipv4_clusters_is_no_longer_refused() {
    let d = dirs();
    // The agent cannot initialise (IMDS/EC2 on a closed port), but the entrypoint gets past
    // the refusal: the plugins are installed before the agent starts.
    let dead = format!("http://{}", free_addr());
    let out = Command::new(entrypoint())
        .env_clear()
        .env("ENABLE_IPv4", "true")
        .env("ENABLE_V6_EGRESS", "true")
        .env("AWS_EC2_ENDPOINT", &dead)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &dead)
        .env("AWS_VPC_K8S_CNI_LOG_FILE", "stderr")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("IPAMD_SKIP_HOST_NETWORKING", "true")
        .env("IPAMD_GRPC_SOCKET", &d.socket)
        .env("DISABLE_METRICS", "true")
        .env("DISABLE_INTROSPECTION", "true")
        .env("VPC_CNI_APP_DIR", &d.app)
        .env("HOST_CNI_BIN_PATH", &d.bin)
        .env("HOST_CNI_CONFDIR_PATH", &d.netd)
        .env("VPC_CNI_AGENT_READY_TIMEOUT_SECONDS", "60")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("not implemented"), "{err}");
    assert!(
        d.bin.join("egress-cni").is_file(),
        "egress-cni is installed: {err}"
    );
}
