//! The real `aws-cni` binary: bad input gives the right CNI error and leaves nothing
//! behind; with ipamd away, ADD says so and DEL still succeeds; and end to end in a node
//! network namespace with the agent and the EC2 emulator, ADD wires a pod that carries real
//! traffic and DEL returns the node to its previous state.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use ec2_emulator::server;
use ec2_emulator::testing::{EmulatedNode, TestNetns};
use serde_json::Value;

const CONF: &str =
    r#"{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","vethPrefix":"eni","mtu":"9001"}"#;

/// Runs the plugin (optionally inside a netns) and returns (exit code, stdout JSON or text).
fn plugin(netns: Option<&str>, env: &[(&str, &str)], stdin: &str) -> (i32, String) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_aws-cni")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_aws-cni")),
    };
    let mut child = cmd
        .envs(env.iter().copied())
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
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn code(out: &str) -> u64 {
    serde_json::from_str::<Value>(out).unwrap()["code"]
        .as_u64()
        .unwrap()
}

#[test]
fn version_and_bad_input() {
    let (rc, out) = plugin(None, &[("CNI_COMMAND", "VERSION")], "");
    assert_eq!(rc, 0);
    assert!(
        out.contains("\"0.4.0\"") && out.contains("\"1.0.0\""),
        "{out}"
    );
    let (rc, out) = plugin(None, &[("CNI_COMMAND", "ADD")], "{nope");
    assert_eq!((rc, code(&out)), (1, 6), "{out}");
    let (rc, out) = plugin(None, &[("CNI_COMMAND", "ADD")], r#"{"cniVersion":"7.0.0"}"#);
    assert_eq!((rc, code(&out)), (1, 1), "{out}");
    let (rc, out) = plugin(
        None,
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
        ],
        CONF,
    );
    assert_eq!((rc, code(&out)), (1, 4), "missing CNI_NETNS: {out}");
    let (rc, out) = plugin(
        None,
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", "/var/run/netns/does-not-exist"),
        ],
        CONF,
    );
    assert_eq!((rc, code(&out)), (1, 4), "{out}");
    assert!(out.contains("does not exist"));
}

#[test]
fn ipamd_down_add_fails_clearly_and_del_still_succeeds() {
    let pod = TestNetns::new("cni-down");
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p"),
        ("IPAMD_GRPC_SOCKET", "/nonexistent/ipamd.sock"),
    ];
    let path = pod.path();
    let mut add = env.to_vec();
    add.push(("CNI_NETNS", &path));
    let (rc, out) = plugin(None, &add, CONF);
    assert_eq!((rc, code(&out)), (1, 11), "{out}");
    assert!(out.contains("ipamd is not running"), "{out}");
    assert!(!pod.ip(&["-o", "link"]).contains("eth0"), "nothing wired");
    let mut del = add.clone();
    del[0] = ("CNI_COMMAND", "DEL");
    let (rc, out) = plugin(None, &del, CONF);
    assert_eq!(rc, 0, "DEL with ipamd away succeeds: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_del_against_a_running_agent() {
    let node = TestNetns::new("cni-node");
    let pod1 = TestNetns::new("cni-pod1");
    let pod2 = TestNetns::new("cni-pod2");
    let emulated = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let (emu, instance) = (emulated.emu.clone(), emulated.instance_id.clone());
    node.add_primary_interface(&emulated.primary_mac, emulated.primary_ip);
    // A real node forwards (the AMI and kubelet see to it).
    let fwd = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node.0,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])
        .status()
        .unwrap();
    assert!(fwd.success());
    server::lock(&emu).set_hotplug(&instance, &node.0);
    let (ec2, imds) = (
        emulated.ec2_endpoint.clone(),
        emulated.imds_endpoint.clone(),
    );
    let dir = std::env::temp_dir().join(format!("cni-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("ipamd.sock");
    let cfg = config::Config::from_vars([
        ("AWS_EC2_ENDPOINT", ec2.as_str()),
        (
            "AWS_VPC_K8S_CNI_BACKING_STORE",
            &dir.join("ipam.json").display().to_string(),
        ),
    ])
    .unwrap();
    let opts = ipamd::agent::AgentOptions {
        grpc_socket: socket.clone(),
        metrics_addr: None,
        introspection_addr: None,
        imds_endpoint: Some(imds),
        static_credentials: Some(("testing".into(), "testing".into())),
        pool_interval: Duration::from_millis(100),
        host_network: Some(ipamd::agent::HostNetOptions {
            netns: Some(node.path().into()),
            link_attempts: 50,
            link_interval: Duration::from_millis(100),
        }),
    };
    let agent = tokio::spawn(ipamd::agent::run(cfg, opts, std::future::pending()));
    for _ in 0..100 {
        if socket.exists()
            && server::lock(&emu).world.attached_enis(&instance)[0]
                .secondary_ips
                .len()
                >= 9
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rules_before = node.ip(&["rule"]);
    let sock = socket.display().to_string();
    let mut ips = Vec::new();
    for (i, pod) in [&pod1, &pod2].iter().enumerate() {
        let name = format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-{i}");
        let cid = format!("c{i}");
        let path = pod.path();
        let env = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", cid.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", path.as_str()),
            ("CNI_ARGS", name.as_str()),
            ("IPAMD_GRPC_SOCKET", sock.as_str()),
        ];
        let (rc, out) = tokio::task::block_in_place(|| plugin(Some(&node.0), &env, CONF));
        assert_eq!(rc, 0, "{out}");
        let r: Value = serde_json::from_str(&out).unwrap();
        let ip = r["ips"][0]["address"]
            .as_str()
            .unwrap()
            .trim_end_matches("/32")
            .to_string();
        assert!(
            pod.ip(&["addr", "show", "eth0"])
                .contains(&format!("{ip}/32"))
        );
        assert!(
            pod.ip(&["route"])
                .contains("default via 169.254.1.1 dev eth0")
        );
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1]);
    let rules = node.ip(&["rule"]);
    assert!(
        rules.contains(&format!("512:\tfrom all to {} lookup main", ips[0])),
        "{rules}"
    );

    // Real traffic, pod1 -> pod2, through the node's routes (bash /dev/tcp, no ping here).
    let listener = Command::new("ip")
        .args(["netns", "exec", &pod2.0, "python3", "-c",
            "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',7777));s.listen(1);c,_=s.accept();c.sendall(c.recv(16));c.close()"])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let echo = Command::new("ip")
        .args(["netns", "exec", &pod1.0, "python3", "-c",
            &format!("import socket;s=socket.create_connection(('{}',7777),timeout=3);s.sendall(b'hello');print(s.recv(16).decode())", ips[1])])
        .output()
        .unwrap();
    let _ = {
        let mut l = listener;
        l.kill().ok();
        l.wait()
    };
    assert_eq!(
        String::from_utf8_lossy(&echo.stdout).trim(),
        "hello",
        "{}",
        String::from_utf8_lossy(&echo.stderr)
    );

    // DEL both: node rules back to what they were, a second DEL is fine.
    for (i, pod) in [&pod1, &pod2].iter().enumerate() {
        let name = format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-{i}");
        let cid = format!("c{i}");
        let path = pod.path();
        for _ in 0..2 {
            let env = [
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", cid.as_str()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", path.as_str()),
                ("CNI_ARGS", name.as_str()),
                ("IPAMD_GRPC_SOCKET", sock.as_str()),
            ];
            let (rc, out) = tokio::task::block_in_place(|| plugin(Some(&node.0), &env, CONF));
            assert_eq!(rc, 0, "{out}");
        }
    }
    // Pod rules are gone; ENI rules (32765) may have changed as the pool grew meanwhile.
    let pod_rules = |r: &str| {
        r.lines()
            .filter(|l| !l.starts_with("32765:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(pod_rules(&node.ip(&["rule"])), pod_rules(&rules_before));
    assert!(!node.ip(&["-o", "link"]).contains("eni"), "host veths gone");
    agent.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
