//! The real `grpc-health-probe` binary with the manifest's probe line: exit 0 against the
//! real agent, 2 when nothing listens, 3 when the RPC fails, 4 when the service is not
//! SERVING, 1 on a bad command line; over a Unix socket and over TCP.

use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::agent::process_env;
use integration_tests::{EmulatedNode, free_addr, workspace_bin};
use rpc::health::{ServingStatus, health_reporter};

/// Runs the probe; returns (exit code, stdout, stderr).
fn probe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(workspace_bin("grpc-health-probe"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn probe_async(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        probe(&args)
    })
    .await
    .unwrap()
}

#[test]
fn bad_command_lines_exit_1() {
    let (rc, _, err) = probe(&[]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("-addr not specified"), "{err}");
    let (rc, _, err) = probe(&["-addr=unix:///nowhere.sock", "-connect-timeout=soon"]);
    assert_eq!(rc, 1, "{err}");
    let (rc, _, err) = probe(&["-addr=unix:///nowhere.sock", "-tls"]);
    assert_eq!(rc, 1, "{err}");
}

#[test]
fn missing_socket_is_a_connection_failure() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("-addr=unix://{}", dir.path().join("ipamd.sock").display());
    let (rc, _, err) = probe(&[&addr, "-connect-timeout=1s", "-rpc-timeout=1s"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("failed to connect"), "{err}");
    // A TCP port nobody listens on.
    let port = free_addr().port();
    let (rc, _, err) = probe(&[&format!("-addr=127.0.0.1:{port}")]);
    assert_eq!(rc, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_over_unix_and_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("health.sock");
    let (reporter, health) = health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status("ok", ServingStatus::Serving)
        .await;
    let unix = rpc::server::bind_unix(&socket).unwrap();
    let unix_health = health.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(unix_health)
            .serve_with_incoming(unix),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(tcp)),
    );
    let unix_addr = format!("-addr=unix://{}", socket.display());
    let arg = |s: &str| s.to_owned();

    let (rc, _, err) = probe_async(vec![unix_addr.clone(), arg("-connect-timeout=5s")]).await;
    assert_eq!(rc, 4, "overall NOT_SERVING: {err}");
    assert!(err.contains("NOT_SERVING"), "{err}");
    let (rc, out, err) = probe_async(vec![unix_addr.clone(), arg("-service=ok")]).await;
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("SERVING"), "{out}");
    let (rc, _, err) = probe_async(vec![unix_addr.clone(), arg("-service"), arg("nope")]).await;
    assert_eq!(rc, 3, "unknown service is an RPC failure (NotFound): {err}");

    let tcp_flag = format!("-addr={tcp_addr}");
    let (rc, _, err) = probe_async(vec![tcp_flag.clone(), arg("-service=ok")]).await;
    assert_eq!(rc, 0, "{err}");
    reporter
        .set_service_status("ok", ServingStatus::NotServing)
        .await;
    let (rc, _, err) = probe_async(vec![tcp_flag, arg("--service=ok")]).await;
    assert_eq!(rc, 4, "status changes are seen: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_health_service_is_an_rpc_failure() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("other.sock");
    let listener = rpc::server::bind_unix(&socket).unwrap();
    // A gRPC server with no service at all: grpc.health.v1 is Unimplemented.
    let router = tonic::service::Routes::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(router)
            .serve_with_incoming(listener),
    );
    let (rc, _, err) = probe_async(vec![format!("-addr=unix://{}", socket.display())]).await;
    assert_eq!(rc, 3, "{err}");
    assert!(err.contains("Unimplemented"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_against_the_real_agent() {
    let agent = workspace_bin("aws-k8s-agent");
    let node = EmulatedNode::start("m5.large", "10.0.0.0/24").await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipamd.sock");
    let store = dir.path().join("ipam.json");
    let mut child = process_env(&mut Command::new(agent), &node, &socket, &store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("-addr=unix://{}", socket.display());
    let mut last = (-1, String::new(), String::new());
    for _ in 0..300 {
        last = probe_async(vec![
            addr.clone(),
            "-connect-timeout=5s".into(),
            "-rpc-timeout=5s".into(),
        ])
        .await;
        if last.0 == 0 {
            break;
        }
        assert_eq!(
            last.0, 2,
            "before the agent serves, only connection failures: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last.0, 0, "the agent becomes SERVING: {last:?}");
    let (rc, _, err) = probe_async(vec![
        addr.clone(),
        "-service=grpc.health.v1.aws-node".into(),
    ])
    .await;
    assert_eq!(rc, 0, "{err}");
    let _ = child.kill();
    let _ = child.wait();
    let (rc, _, err) = probe_async(vec![addr]).await;
    assert_eq!(rc, 2, "agent gone: {err}");
}
