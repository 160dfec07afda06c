//! The real `aws-cni` binary: bad input gives the right CNI error and leaves nothing
//! behind (no link, route, rule, address or neighbour; no address held in ipamd's
//! checkpoint); with ipamd away, ADD and STATUS say so and DEL still succeeds.

use ec2_emulator::faults::FailNext;
use ec2_emulator::model::ErrorCode;
use integration_tests::TestNetns;
use integration_tests::agent::NodeAgent;
use integration_tests::plugin::{CONF, cni_env, plugin, runtime_removes_netns, settled, snapshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_about_and_bad_input() {
    let node = TestNetns::new("cni-bad");
    let pod = TestNetns::new("cni-badpod");
    let before = (snapshot(&node).await, snapshot(&pod).await);
    let run = |env: &[(&str, &str)], stdin: &str| {
        tokio::task::block_in_place(|| plugin(Some(&node.0), env, stdin))
    };

    let r = run(&[("CNI_COMMAND", "VERSION")], "");
    assert_eq!(r.rc, 0);
    let v = r.json();
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    let r = run(&[], "");
    assert_eq!(
        (r.rc, r.stdout.starts_with("AWS CNI ")),
        (0, true),
        "{}",
        r.stdout
    );

    let path = pod.path();
    let ok_env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", path.as_str()),
        ("IPAMD_GRPC_SOCKET", "/nonexistent/ipamd.sock"),
    ];
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, u64, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            ok_env.to_vec(),
            "{nope",
            6,
            "not valid JSON",
        ),
        (
            "unknown version",
            ok_env.to_vec(),
            r#"{"cniVersion":"7.0.0"}"#,
            1,
            "incompatible CNI version",
        ),
        (
            "long vethPrefix",
            ok_env.to_vec(),
            r#"{"cniVersion":"1.0.0","vethPrefix":"toolong"}"#,
            7,
            "vethPrefix",
        ),
        (
            "missing CNI_NETNS",
            ok_env
                .iter()
                .copied()
                .filter(|(k, _)| *k != "CNI_NETNS")
                .collect(),
            CONF,
            4,
            "CNI_NETNS is required",
        ),
        (
            "netns does not exist",
            ok_env
                .iter()
                .map(|&(k, v)| {
                    if k == "CNI_NETNS" {
                        (k, "/var/run/netns/does-not-exist")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            CONF,
            4,
            "does not exist",
        ),
        (
            "unknown command",
            ok_env
                .iter()
                .map(|&(k, v)| {
                    if k == "CNI_COMMAND" {
                        (k, "FROB")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            CONF,
            4,
            "not supported",
        ),
        (
            "CHECK without prevResult",
            ok_env
                .iter()
                .map(|&(k, v)| {
                    if k == "CNI_COMMAND" {
                        (k, "CHECK")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            CONF,
            7,
            "prevResult",
        ),
        (
            "CHECK on 0.3.1",
            ok_env
                .iter()
                .map(|&(k, v)| {
                    if k == "CNI_COMMAND" {
                        (k, "CHECK")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            r#"{"cniVersion":"0.3.1","name":"aws-cni"}"#,
            1,
            "CHECK needs 0.4.0",
        ),
    ];
    for (what, env, stdin, code, text) in cases {
        let r = run(&env, stdin);
        assert_eq!((r.rc, r.code()), (1, code), "{what}: {}", r.stdout);
        assert!(r.stdout.contains(text), "{what}: {}", r.stdout);
    }
    // GC releases nothing and succeeds, whatever the runtime thinks is valid.
    let gc = r#"{"cniVersion":"1.1.0","name":"aws-cni","cni.dev/valid-attachments":[{"containerID":"x","ifname":"eth0"}]}"#;
    let r = run(&[("CNI_COMMAND", "GC")], gc);
    assert_eq!((r.rc, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    let r = run(
        &[("CNI_COMMAND", "GC")],
        r#"{"cniVersion":"1.1.0","cni.dev/valid-attachments":"x"}"#,
    );
    assert_eq!(
        (r.rc, r.code()),
        (1, 6),
        "malformed attachments: {}",
        r.stdout
    );

    assert_eq!(snapshot(&node).await, before.0, "node untouched");
    assert_eq!(snapshot(&pod).await, before.1, "pod untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipamd_down_add_and_status_fail_clearly_and_del_still_succeeds() {
    let node = TestNetns::new("cni-down");
    let pod = TestNetns::new("cni-downpod");
    let before = (snapshot(&node).await, snapshot(&pod).await);
    let path = pod.path();
    let args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p";
    let sock = "/nonexistent/ipamd.sock";
    let run = |env: &[(&str, &str)], stdin: &str| {
        tokio::task::block_in_place(|| plugin(Some(&node.0), env, stdin))
    };
    let r = run(&cni_env("ADD", "c1", &path, args, sock), CONF);
    assert_eq!((r.rc, r.code()), (1, 11), "{}", r.stdout);
    assert!(r.stdout.contains("ipamd is not running"), "{}", r.stdout);
    let r = run(&cni_env("STATUS", "", "", "", sock), CONF);
    assert_eq!((r.rc, r.code()), (1, 50), "{}", r.stdout);
    assert!(r.stdout.contains("ipamd"), "{}", r.stdout);
    let r = run(&cni_env("DEL", "c1", &path, args, sock), CONF);
    assert_eq!(
        (r.rc, r.stdout.as_str()),
        (0, ""),
        "DEL with ipamd away succeeds"
    );
    assert_eq!(snapshot(&node).await, before.0);
    assert_eq!(snapshot(&pod).await, before.1);
}

/// Wiring failures after ipamd handed out an address: error 101, the address is given
/// back (not in the checkpoint), and both namespaces are exactly as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiring_failures_release_the_address_and_leave_nothing() {
    let node = TestNetns::new("cni-wf");
    let agent = NodeAgent::start(&node, "wf", 9, |_| {}).await;
    let sock = agent.socket.clone();
    let pod = TestNetns::new("cni-wfpod");
    let path = pod.path();
    let not_a_netns = agent.dir.join("not-a-netns");
    std::fs::write(&not_a_netns, b"").unwrap();
    let not_a_netns = not_a_netns.display().to_string();
    // The host veth of default/collide is eni + sha1("default.collide")[..11].
    let veth = net::names::host_veth_name("eni", "default", "collide", 0);

    // (what, setup, netns, expected message)
    type Setup<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Setup, &str, String)> = vec![
        (
            "a foreign link has the host veth's name",
            Box::new(|| {
                node.ip(&["link", "add", &veth, "type", "bridge"]);
            }),
            path.as_str(),
            format!("interface {veth} (kind bridge) already exists"),
        ),
        (
            "the pod already has eth0",
            Box::new(|| {
                node.ip(&["link", "del", &veth]);
                pod.ip(&["link", "add", "eth0", "type", "bridge"]);
            }),
            path.as_str(),
            "interface eth0 already exists".to_string(),
        ),
        (
            "CNI_NETNS is not a network namespace",
            Box::new(|| {}),
            not_a_netns.as_str(),
            "failed to enter network namespace".to_string(),
        ),
    ];
    // A stale veth of ours with that name (an earlier sandbox) is replaced, as upstream does.
    // This first assignment also makes the agent grow its pool (a warm ENI), which must be
    // finished before the before/after snapshots below.
    node.ip(&[
        "link",
        "add",
        &veth,
        "type",
        "veth",
        "peer",
        "name",
        "stale-peer",
    ]);
    let env = cni_env(
        "ADD",
        "cwf",
        &path,
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=collide",
        &sock,
    );
    let r = tokio::task::block_in_place(|| plugin(Some(&node.0), &env, CONF));
    assert_eq!(r.rc, 0, "{}", r.stdout);
    assert!(!node.ip(&["-o", "link"]).contains("stale-peer"));
    assert!(agent.checkpoint_containers().contains(&"cwf".to_string()));
    let env = cni_env(
        "DEL",
        "cwf",
        &path,
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=collide",
        &sock,
    );
    let r = tokio::task::block_in_place(|| plugin(Some(&node.0), &env, CONF));
    assert_eq!(r.rc, 0, "{}", r.stdout);
    assert!(!agent.checkpoint_containers().contains(&"cwf".to_string()));
    runtime_removes_netns(&pod, &node, &veth).await;
    for (what, setup, netns, msg) in cases {
        setup();
        let before = (settled(&node).await, snapshot(&pod).await);
        let env = cni_env(
            "ADD",
            "cwf",
            netns,
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=collide",
            &sock,
        );
        let r = tokio::task::block_in_place(|| plugin(Some(&node.0), &env, CONF));
        assert_eq!((r.rc, r.code()), (1, 101), "{what}: {}", r.stdout);
        assert!(r.stdout.contains(&msg), "{what}: {}", r.stdout);
        assert!(
            r.stdout.contains("given back to ipamd"),
            "{what}: {}",
            r.stdout
        );
        assert_eq!(
            settled(&node).await,
            before.0,
            "{what}: node state unchanged"
        );
        assert_eq!(
            snapshot(&pod).await,
            before.1,
            "{what}: pod state unchanged"
        );
        assert!(
            !agent.checkpoint_containers().contains(&"cwf".to_string()),
            "{what}: address released: {:?}",
            agent.checkpoint_containers()
        );
    }
}

/// ipamd answers but has no address to give (EC2 refuses every IP and ENI): error 100 and
/// nothing wired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipamd_with_an_empty_pool_fails_the_add_cleanly() {
    let node = TestNetns::new("cni-empty");
    let agent = NodeAgent::start(&node, "empty", 0, |f| {
        for action in [
            "AssignPrivateIpAddresses",
            "CreateNetworkInterface",
            "AttachNetworkInterface",
        ] {
            f.fail_next.push(FailNext {
                action: action.into(),
                code: ErrorCode::InsufficientFreeAddressesInSubnet,
                remaining: u32::MAX,
            });
        }
    })
    .await;
    let pod = TestNetns::new("cni-emptypod");
    let before = (settled(&node).await, snapshot(&pod).await);
    let path = pod.path();
    let env = cni_env(
        "ADD",
        "ce",
        &path,
        "K8S_POD_NAMESPACE=default;K8S_POD_NAME=e",
        &agent.socket,
    );
    let r = tokio::task::block_in_place(|| plugin(Some(&node.0), &env, CONF));
    assert_eq!((r.rc, r.code()), (1, 100), "{}", r.stdout);
    assert!(
        r.stdout.contains("could not assign an IP address"),
        "{}",
        r.stdout
    );
    assert_eq!(settled(&node).await, before.0);
    assert_eq!(snapshot(&pod).await, before.1);
    assert!(agent.checkpoint_containers().is_empty());
}

/// The runtime removed the pod's namespace before DEL (kubelet retrying a DEL, a crashed
/// sandbox): the veth went with the namespace, so DEL only has the rules left to remove.
/// It succeeds, releases the address and leaves the node exactly as before the ADD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_after_the_namespace_is_gone_releases_and_leaves_the_node_clean() {
    let node = TestNetns::new("cni-gone");
    let agent = NodeAgent::start(&node, "gone", 9, |_| {}).await;
    let sock = agent.socket.clone();
    let run =
        |env: &[(&str, &str)]| tokio::task::block_in_place(|| plugin(Some(&node.0), env, CONF));
    // A first pod makes the agent grow its pool (a warm ENI) before the snapshot.
    let warm = TestNetns::new("cni-gonewarm");
    let (warm_path, warm_args) = (warm.path(), "K8S_POD_NAMESPACE=default;K8S_POD_NAME=w");
    let r = run(&cni_env("ADD", "cw", &warm_path, warm_args, &sock));
    assert_eq!(r.rc, 0, "{}", r.stdout);
    let r = run(&cni_env("DEL", "cw", &warm_path, warm_args, &sock));
    assert_eq!(r.rc, 0, "{}", r.stdout);
    let warm_veth = net::names::host_veth_name("eni", "default", "w", 0);
    runtime_removes_netns(&warm, &node, &warm_veth).await;
    let before = settled(&node).await;

    let pod = TestNetns::new("cni-gonepod");
    let (path, args) = (pod.path(), "K8S_POD_NAMESPACE=default;K8S_POD_NAME=g");
    let r = run(&cni_env("ADD", "cg", &path, args, &sock));
    assert_eq!(r.rc, 0, "{}", r.stdout);
    let ip = r.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    assert!(node.ip(&["rule"]).contains(&ip));
    drop(pod);
    let veth = net::names::host_veth_name("eni", "default", "g", 0);
    node.wait_link_gone(&veth).await;
    assert!(
        node.ip(&["rule"]).contains(&ip),
        "the kernel keeps the rules: DEL's job"
    );

    let r = run(&cni_env("DEL", "cg", &path, args, &sock));
    assert_eq!(
        (r.rc, r.stdout.as_str()),
        (0, ""),
        "DEL without a namespace"
    );
    assert!(!agent.checkpoint_containers().contains(&"cg".to_string()));
    assert_eq!(settled(&node).await, before, "nothing of the pod is left");
}
