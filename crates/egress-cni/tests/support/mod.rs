//! Shared by the `egress-cni` binary tests: running the plugin as a runtime does, and the
//! test beds of the two real-kernel egress tests.

// Each test binary compiles this module and reads only some of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// What one plugin run gave back.
pub struct PluginRun {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (the plugin, its `CNI_*` environment already set) with `stdin` as its
/// standard input, as a container runtime does, and collects its exit code and output.
pub fn run_plugin(cmd: &mut Command, stdin: &str) -> PluginRun {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    PluginRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// The real-kernel egress tests of both families (`egress_v4_kernel`, `egress_v6_kernel`).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ec2_emulator::testing::TestNetns;
use net::netns::Netns;
use serde_json::Value;

/// Where Debian's host-local lives (package containernetworking-plugins).
pub const HOST_LOCAL_DIR: &str = "/usr/lib/cni";

/// `ip netns exec <ns> <args…>`: its stdout; a failure fails the test.
pub fn sh(ns: &TestNetns, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `code` of the CNI error the plugin printed.
pub fn code(out: &str) -> u64 {
    serde_json::from_str::<Value>(out).unwrap()["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no code: {out}"))
}

/// `<prefix>n-<tag>` and `<prefix>o-<tag>`: a node namespace whose `eth0` is veth'd to
/// `ext0` in an outside namespace, both up, `lo` up in both (addresses are the caller's).
pub fn node_and_outside(prefix: &str, tag: &str) -> (TestNetns, TestNetns) {
    assert!(
        Path::new(HOST_LOCAL_DIR).join("host-local").is_file(),
        "host-local missing: apt-get install containernetworking-plugins"
    );
    let node = TestNetns::new(&format!("{prefix}n-{tag}"));
    let outside = TestNetns::new(&format!("{prefix}o-{tag}"));
    for ns in [&node, &outside] {
        ns.ip(&["link", "set", "lo", "up"]);
    }
    node.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "ext0", "netns", &outside.0,
    ]);
    (node, outside)
}

/// A pod namespace with aws-cni's `eth0` (a veth whose peer stays in the pod stands in),
/// `lo` up; `eth0` is brought up after `address` (`ip` arguments), if any, is added.
pub fn pod_netns(name: &str, address: Option<&[&str]>) -> TestNetns {
    let pod = TestNetns::new(name);
    pod.ip(&["link", "set", "lo", "up"]);
    pod.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    if let Some(args) = address {
        pod.ip(args);
    }
    pod.ip(&["link", "set", "eth0", "up"]);
    pod
}

/// Links, the `family` (`-4`, `-6`) addresses and routes of every table, and the nat table
/// as `save` (`iptables-nft-save`, …) prints it, of the node namespace.
pub fn node_snapshot(node: &TestNetns, family: &str, save: &str) -> String {
    let mut s = node.ip(&["-o", "link", "show"]);
    s += &node.ip(&[family, "-o", "addr", "show"]);
    s += &node.ip(&[family, "route", "show", "table", "all"]);
    s += &sh(node, &[save, "-t", "nat"])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    s
}

/// The addresses host-local holds allocated under `data_dir` (network `aws-cni`).
pub fn allocated<T: FromStr + Ord>(data_dir: &Path) -> Vec<T> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("aws-cni")) else {
        return Vec::new();
    };
    let mut out: Vec<T> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort();
    out
}

/// The address `ip -o addr show` (`show_args`) lists after `inet_word` (`inet`, `inet6`),
/// which must carry `prefix` (`/22`, `/118`).
pub fn pod_address<T: FromStr>(
    pod: &TestNetns,
    show_args: &[&str],
    inet_word: &str,
    prefix: &str,
) -> T
where
    T::Err: std::fmt::Debug,
{
    let out = pod.ip(show_args);
    let word = out
        .split_whitespace()
        .skip_while(|w| *w != inet_word)
        .nth(1)
        .unwrap_or_else(|| panic!("no {inet_word} address ({show_args:?}): {out}"));
    assert!(word.ends_with(prefix), "{word}");
    word.trim_end_matches(prefix).parse().unwrap()
}

/// The `CNI_*` of one run: (command, container id, pod, ifname).
pub type CniRun<'a> = (&'a str, &'a str, &'a TestNetns, &'a str);

/// Runs the real binary inside `node` with `PATH` = `path` (where it finds the iptables
/// tools); returns (exit code, stdout).
pub fn run_in_node(
    node: &TestNetns,
    path: &str,
    (command, cid, pod, ifname): CniRun<'_>,
    stdin: &str,
) -> (i32, String) {
    // Absolute: a PATH set for the child is also where Command looks the program up.
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("iproute2's ip");
    let run = run_plugin(
        Command::new(ip)
            .args(["netns", "exec", &node.0, env!("CARGO_BIN_EXE_egress-cni")])
            .env_clear()
            .env("PATH", path)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", cid)
            .env("CNI_NETNS", pod.path())
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", format!("/nonexistent:{HOST_LOCAL_DIR}")),
        stdin,
    );
    (run.code, run.stdout)
}

/// Connects from `pod` to a listener at `target` in `outside`; returns the peer address the
/// listener saw and the bytes it received.
pub fn tcp_from_pod(
    outside: &TestNetns,
    pod: &TestNetns,
    target: SocketAddr,
) -> (SocketAddr, String) {
    let (tx, rx) = mpsc::channel();
    let outside = Netns::open(outside.path()).unwrap();
    let server = std::thread::spawn(move || {
        let _in = outside.enter().unwrap();
        let listener = TcpListener::bind(target).unwrap();
        tx.send(()).unwrap();
        let (mut stream, peer) = listener.accept().unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).unwrap();
        (peer, got)
    });
    rx.recv().unwrap();
    let pod_ns = Netns::open(pod.path()).unwrap();
    let client = std::thread::spawn(move || {
        let _in = pod_ns.enter().unwrap();
        let start = Instant::now();
        loop {
            match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                Ok(mut s) => {
                    s.write_all(b"hello from the pod").unwrap();
                    return;
                }
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    eprintln!("connect: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("no path from the pod to {target}: {e}"),
            }
        }
    });
    client.join().unwrap();
    server.join().unwrap()
}

/// ADD's result: prevResult's interfaces plus the host veth and `pod_ifname` in the pod,
/// the egress address not in `ips` (upstream). Returns the host veth's name.
pub fn assert_egress_result(
    out: &str,
    pod: &TestNetns,
    prev_interfaces: usize,
    pod_ifname: &str,
) -> String {
    let res: Value = serde_json::from_str(out).unwrap();
    let ifaces = res["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), prev_interfaces + 2, "{out}");
    let host_veth = ifaces[prev_interfaces]["name"].as_str().unwrap().to_owned();
    assert!(
        host_veth.starts_with("veth") && host_veth.len() == 12,
        "{host_veth}"
    );
    assert_eq!(ifaces[prev_interfaces + 1]["name"], pod_ifname);
    assert_eq!(ifaces[prev_interfaces + 1]["sandbox"], pod.path());
    assert_eq!(res["ips"].as_array().unwrap().len(), 1);
    host_veth
}
