//! The `aws-k8s-agent` binary as the DaemonSet runs it: configured only through environment
//! variables (upstream's, plus the SDK's standard endpoint variables), serving gRPC on its
//! Unix socket, exiting 0 on SIGTERM with the checkpoint written, and refusing a bad
//! configuration with a message that names the variable.

use std::process::{Command, Stdio};
use std::time::Duration;

use ec2_emulator::testing::EmulatedNode;
use rpc::{AddNetworkRequest, CniBackendClient};

#[test]
fn bad_configuration_is_refused_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_aws-k8s-agent"))
        .env("WARM_IP_TARGET", "lots")
        .env("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "sometimes")
        // Ours (tests and the demo node) are validated with the same error collection.
        .env("METRICS_BIND_ADDRESS", "localhost")
        .env("IPAMD_SKIP_HOST_NETWORKING", "yes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"WARM_IP_TARGET="lots""#), "{err}");
    assert!(
        err.contains("AWS_VPC_K8S_CNI_RANDOMIZESNAT"),
        "both errors at once: {err}"
    );
    for ours in [
        r#"METRICS_BIND_ADDRESS="localhost""#,
        r#"IPAMD_SKIP_HOST_NETWORKING="yes""#,
    ] {
        assert!(err.contains(ours), "{ours} in one pass: {err}");
    }
}

#[test]
fn unbuilt_switches_are_refused_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_aws-k8s-agent"))
        .env("ENABLE_POD_ENI", "true")
        // Multi-NIC is built: only the pod ENI switch is refused.
        .env("ENABLE_MULTI_NIC", "true")
        // Nothing may be reached before the refusal: both endpoints are closed ports.
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_VPC_K8S_CNI_LOG_FILE", "stderr")
        .env("AWS_EC2_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ENABLE_POD_ENI=\"true\""), "{err}");
    assert!(err.contains("security groups for pods"), "{err}");
    assert!(!err.contains("ENABLE_MULTI_NIC"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_pods_and_exits_cleanly_on_sigterm() {
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let (ec2, imds) = (node.ec2_endpoint.clone(), node.imds_endpoint.clone());
    let dir = std::env::temp_dir().join(format!("agent-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("ipamd.sock");
    let store = dir.join("ipam.json");
    // AWS_VPC_K8S_CNI_LOG_FILE: a file in a directory that does not exist yet.
    let log = dir.join("log/ipamd.log");
    let metrics = ipamd::testing::free_port();
    let intro = ipamd::testing::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aws-k8s-agent"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_ENDPOINT", &ec2)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .env("AWS_VPC_K8S_CNI_LOG_FILE", &log)
        .env("AWS_VPC_K8S_CNI_LOGLEVEL", "INFO")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("IPAMD_GRPC_SOCKET", &socket)
        .env("METRICS_BIND_ADDRESS", metrics.to_string())
        .env("INTROSPECTION_BIND_ADDRESS", intro.to_string())
        .env("AWS_VPC_K8S_CNI_BACKING_STORE", &store)
        .env("ENABLE_IPv4", "true")
        .env("WARM_IP_TARGET", "3")
        .env("IPAMD_SKIP_HOST_NETWORKING", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut client = None;
    for _ in 0..200 {
        if let Ok(ch) = rpc::client::connect(
            &format!("unix://{}", socket.display()),
            Some(Duration::from_millis(200)),
        )
        .await
        {
            client = Some(CniBackendClient::new(ch));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = client.expect("the agent serves its socket");
    let mut reply = None;
    for _ in 0..100 {
        let req = AddNetworkRequest {
            container_id: "c-1".into(),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            k8s_pod_name: "web-0".into(),
            k8s_pod_namespace: "default".into(),
            ..Default::default()
        };
        match client.add_network(req).await {
            Ok(r) => {
                reply = Some(r.into_inner());
                break;
            }
            Err(s) => {
                assert!(
                    s.message().contains("no free IP address on this node"),
                    "{}",
                    s.message()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let reply = reply.expect("a pod is served once the warm pool fills");
    let ip = reply.ip_allocation_metadata[0].i_pv4_addr.clone();
    let mode = std::fs::metadata(&socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o660);

    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "graceful exit on SIGTERM");
    let saved = std::fs::read_to_string(&store).unwrap();
    assert!(
        saved.starts_with(r#"{"version":"vpc-cni-ipam/1","allocations":["#),
        "{saved}"
    );
    assert!(saved.contains(&format!(r#""ipv4":"{ip}""#)), "{saved}");
    assert!(saved.contains(r#""k8sPodName":"web-0""#));
    // The log went to AWS_VPC_K8S_CNI_LOG_FILE at AWS_VPC_K8S_CNI_LOGLEVEL=INFO.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("ipamd serving"), "{logged}");
    assert!(logged.contains("shutdown requested"), "{logged}");
    assert!(
        !logged.contains(r#""level":"debug""#),
        "INFO and up only: {logged}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary with neither `INTROSPECTION_BIND_ADDRESS` nor `METRICS_BIND_ADDRESS` set, as
/// the DaemonSet runs it (docs/reliability.md, "Introspection on loopback only"): in a
/// network namespace of its own, so that the fixed default ports cannot collide with
/// another test. Introspection listens on 127.0.0.1:61679 only and answers there; the
/// metrics on :61678.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_addresses_put_introspection_on_loopback_only() {
    let ns = ec2_emulator::testing::TestNetns::new("agentdefaults");
    ns.ip(&["link", "set", "lo", "up"]);
    let node = EmulatedNode::start_in("m5.large", "10.0.0.0/24", Some(&ns.path())).await;
    let dir = std::env::temp_dir().join(format!("agent-defaults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("ipamd.sock");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            env!("CARGO_BIN_EXE_aws-k8s-agent"),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_EC2_ENDPOINT", &node.ec2_endpoint)
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &node.imds_endpoint)
        .env("AWS_VPC_K8S_CNI_LOG_FILE", "stderr")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("IPAMD_GRPC_SOCKET", &socket)
        .env("AWS_VPC_K8S_CNI_BACKING_STORE", dir.join("ipam.json"))
        .env("ENABLE_IPv4", "true")
        .env("IPAMD_SKIP_HOST_NETWORKING", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut listening = String::new();
    for _ in 0..200 {
        listening = ns.exec(&["ss", "-ltnH"]);
        if listening.contains(":61679") && listening.contains(":61678") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let intro: Vec<&str> = listening
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter(|local| local.ends_with(":61679"))
        .collect();
    assert_eq!(intro, ["127.0.0.1:61679"], "{listening}");
    assert!(
        listening.contains(":61678"),
        "metrics on their default port: {listening}"
    );
    // It answers there, from inside the node's namespace.
    let answer = ns
        .netns()
        .run(|| {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect("127.0.0.1:61679")?;
            s.write_all(b"GET /v1/enis HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok::<_, std::io::Error>(body)
        })
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
