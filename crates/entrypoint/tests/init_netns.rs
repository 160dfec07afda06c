//! The real `aws-vpc-cni-init` inside a node network namespace made for the test (`ip netns
//! exec`, so `/proc/sys/net` and `/sys/class/net` are that namespace's): it finds the primary
//! interface by the MAC IMDS reports, sets rp_filter, tcp_early_demux and the IPv6 sysctls
//! for real, and copies the core plugins (not itself) into the host bin dir.

mod common;

use std::fs;
use std::process::Command;

use common::{INIT, core_plugin};
use ec2_emulator::server;
use ec2_emulator::testing::{EmulatedNode, TestNetns};

/// Serves the node's IMDS on the namespace's own loopback (the init runs inside it).
async fn imds_inside(node: &EmulatedNode, ns: &TestNetns) -> String {
    let netns = net::netns::Netns::open(ns.path()).unwrap();
    let listener = netns
        .run(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let router = server::imds_router(node.emu.clone(), node.instance_id.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn sysctl(ns: &TestNetns, key: &str) -> String {
    ns.exec(&["cat", &format!("/proc/sys/{key}")])
        .trim()
        .to_owned()
}

fn set_sysctl(ns: &TestNetns, key: &str, value: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "sh", "-c"])
        .arg(format!("echo {value} > /proc/sys/{key}"))
        .status()
        .unwrap();
    assert!(out.success(), "setting {key}");
}

fn run_init(ns: &TestNetns, env: &[(&str, &str)]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", &ns.0, INIT])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_sysctls_in_the_node_namespace_and_copies_plugins() {
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let ns = TestNetns::new("init-sysctl");
    ns.add_primary_interface(&node.primary_mac, node.primary_ip);
    // A second interface the init must not pick.
    ns.ip(&[
        "link",
        "add",
        "eth1",
        "type",
        "veth",
        "peer",
        "name",
        "eth1-peer",
    ]);
    let imds = imds_inside(&node, &ns).await;

    let dir = tempfile::tempdir().unwrap();
    let init_dir = dir.path().join("init");
    fs::create_dir_all(&init_dir).unwrap();
    for p in ["portmap", "host-local", "bandwidth", "tuning", "loopback"] {
        std::os::unix::fs::symlink(core_plugin(p), init_dir.join(p)).unwrap();
    }
    fs::write(init_dir.join("aws-vpc-cni-init"), b"self").unwrap();
    let bin = dir.path().join("host/opt/cni/bin");

    // Start from the opposite of what the init must set.
    set_sysctl(&ns, "net/ipv4/conf/eth0/rp_filter", "1");
    set_sysctl(&ns, "net/ipv4/conf/eth1/rp_filter", "1");
    set_sysctl(&ns, "net/ipv4/tcp_early_demux", "1");
    set_sysctl(&ns, "net/ipv6/conf/all/forwarding", "0");
    set_sysctl(&ns, "net/ipv6/conf/eth0/accept_ra", "1");

    let env = [
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
        ("HOST_CNI_BIN_PATH", bin.to_str().unwrap()),
        ("VPC_CNI_INIT_DIR", init_dir.to_str().unwrap()),
        ("DISABLE_TCP_EARLY_DEMUX", "true"),
        ("ENABLE_V6_EGRESS", "true"),
    ];
    let out = tokio::task::block_in_place(|| run_init(&ns, &env));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        sysctl(&ns, "net/ipv4/conf/eth0/rp_filter"),
        "2",
        "primary ENI: loose"
    );
    assert_eq!(
        sysctl(&ns, "net/ipv4/conf/eth1/rp_filter"),
        "1",
        "others untouched"
    );
    assert_eq!(sysctl(&ns, "net/ipv4/tcp_early_demux"), "0");
    assert_eq!(
        sysctl(&ns, "net/ipv6/conf/all/forwarding"),
        "1",
        "v6 egress needs forwarding"
    );
    assert_eq!(sysctl(&ns, "net/ipv6/conf/eth0/accept_ra"), "2");

    let mut copied: Vec<String> = fs::read_dir(&bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    copied.sort();
    assert_eq!(
        copied,
        ["bandwidth", "host-local", "loopback", "portmap", "tuning"]
    );
    assert_eq!(
        fs::read(bin.join("portmap")).unwrap(),
        fs::read(core_plugin("portmap")).unwrap()
    );

    // Defaults: tcp_early_demux back on, IPv6 left alone.
    set_sysctl(&ns, "net/ipv6/conf/all/forwarding", "0");
    let env = [
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
        ("HOST_CNI_BIN_PATH", bin.to_str().unwrap()),
        ("VPC_CNI_INIT_DIR", init_dir.to_str().unwrap()),
    ];
    let out = tokio::task::block_in_place(|| run_init(&ns, &env));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sysctl(&ns, "net/ipv4/tcp_early_demux"), "1");
    assert_eq!(sysctl(&ns, "net/ipv6/conf/all/forwarding"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_clearly_without_the_primary_interface_or_with_bad_env() {
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let ns = TestNetns::new("init-nomac");
    ns.ip(&["link", "set", "lo", "up"]);
    let imds = imds_inside(&node, &ns).await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
        ("HOST_CNI_BIN_PATH", dir.path().to_str().unwrap()),
        ("VPC_CNI_INIT_DIR", dir.path().to_str().unwrap()),
    ];
    let out = tokio::task::block_in_place(|| run_init(&ns, &env));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&node.primary_mac),
        "names the MAC it looked for: {err}"
    );

    let out = tokio::task::block_in_place(|| run_init(&ns, &[("ENABLE_IPv6", "maybe")]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ENABLE_IPv6=\"maybe\""), "{err}");
}
