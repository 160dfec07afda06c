//! Starting while the Kubernetes API server is down (upstream's `_main` in
//! `cmd/aws-k8s-agent/main.go`, docs/kubernetes.md "Start without the API server"): with
//! custom networking the agent does not serve gRPC until the API server answers; without a
//! feature that needs it, the agent serves after the 30 s try and follows the Node (max
//! pods) once the API server is back. The API server is `k8s::testing::FakeApiServer`,
//! EC2 and IMDS the emulator.

mod support;

use std::time::{Duration, Instant};

use ec2_emulator::faults::FailNext;
use ec2_emulator::model::ErrorCode;
use ec2_emulator::server;
use ipamd::cluster_link;
use k8s::testing::FakeApiServer;
use serde_json::{Value, json};
use support::{Harness, add_pod};

const NODE: &str = "ip-10-0-0-4.us-west-2.compute.internal";

fn node(max_pods: u32, zone: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": NODE, "labels": {"topology.kubernetes.io/zone": zone}},
           "status": {"capacity": {"pods": max_pods.to_string()}}})
}

fn eni_config(name: &str, subnet: &str) -> Value {
    json!({"apiVersion": "crd.k8s.amazonaws.com/v1alpha1", "kind": "ENIConfig",
           "metadata": {"name": name}, "spec": {"subnet": subnet}})
}

/// True once the agent answers on its socket within `within`.
async fn serves_within(h: &Harness, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let url = format!("unix://{}", h.socket_path().display());
        if rpc::client::connect(&url, Some(Duration::from_millis(200)))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_networking_waits_for_the_api_server_before_serving() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "api-required").await;
    let subnet = h.node.subnet_id.clone();
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node(29, "us-west-2a"));
    api.apply(eni_config("us-west-2a", &subnet));
    api.go_down().await;
    let cfg = h.config(&[
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"),
        ("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone"),
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
    ]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));

    // Longer than the 30 s an optional API server gets: a required one is waited for.
    assert!(
        !serves_within(&h, Duration::from_secs(35)).await,
        "the agent served gRPC while the API server it needs was down"
    );
    assert!(!agent.is_finished(), "the agent gave up: {:?}", agent.await);

    api.come_up().await.unwrap();
    let started = Instant::now();
    let mut c = h.client().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "served {:?} after the API server came up",
        started.elapsed()
    );
    let ip = add_pod(&mut c, 0).await;
    assert!(!ip.is_unspecified());
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_required_features_the_agent_serves_after_the_try() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "api-optional").await;
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node(17, "us-west-2a"));
    api.go_down().await;
    let cfg = h.config(&[("MY_NODE_NAME", NODE), ("CLUSTER_ENDPOINT", &api.url())]);
    let started = Instant::now();
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));

    assert!(
        serves_within(&h, Duration::from_secs(60)).await,
        "the agent never served without the API server"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(25),
        "served after {waited:?}: the API server was not tried for 30 s"
    );
    let mut c = h.client().await;
    let ip = add_pod(&mut c, 0).await;
    assert!(!ip.is_unspecified());

    // Back: the reflectors reconnect on their own and list the Node.
    api.come_up().await.unwrap();
    let mut listed = false;
    for _ in 0..200 {
        if api
            .requests()
            .iter()
            .any(|r| r.path.contains("/api/v1/nodes") && !r.is_watch())
        {
            listed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        listed,
        "the Node was never listed after the API server came up"
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pods_follows_the_node_once_the_api_server_is_back() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "api-max-pods").await;
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node(17, "us-west-2a"));
    api.go_down().await;
    let cfg = h.config(&[("MY_NODE_NAME", NODE), ("CLUSTER_ENDPOINT", &api.url())]);

    let link = cluster_link::start(&cfg)
        .await
        .expect("an unreachable API server is not an error")
        .expect("MY_NODE_NAME is set");
    assert_eq!(link.cluster.node(), None, "the Node is unknown while down");
    // m5.large's eni-max-pods.txt value until the Node says otherwise.
    let (mut max_pods, _task) = cluster_link::watch_max_pods(link.cluster.clone(), 29);
    assert_eq!(*max_pods.borrow(), 29);

    api.come_up().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), max_pods.changed())
        .await
        .expect("max pods never followed the Node")
        .unwrap();
    assert_eq!(*max_pods.borrow(), 17);
    link.task.abort();
}

/// The running pool takes the Node's max pods once the API server answers: m5.large's
/// table says 29 (3 ENIs x 9 secondaries fit), the Node says 17, so a pool asked for 25
/// addresses stops after the ENI that crosses 17 (18 addresses on 2 ENIs), not at 27 on 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_pool_stops_growing_at_the_nodes_max_pods() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "api-max-pods-pool").await;
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node(17, "us-west-2a"));
    api.go_down().await;
    // No growth until max pods has had its chance to change.
    for action in ["AssignPrivateIpAddresses", "CreateNetworkInterface"] {
        server::lock(h.emu()).faults.fail_next.push(FailNext {
            action: action.into(),
            code: ErrorCode::UnauthorizedOperation,
            remaining: 1_000_000,
        });
    }
    let cfg = h.config(&[
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
        ("WARM_IP_TARGET", "1"),
        ("MINIMUM_IP_TARGET", "25"),
    ]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    assert!(
        serves_within(&h, Duration::from_secs(60)).await,
        "the agent never served without the API server"
    );
    assert_eq!(
        h.ec2_secondary_count(),
        0,
        "the pool grew through the fault"
    );

    api.come_up().await.unwrap();
    h.wait_for("the Node to be listed", |_| {
        api.requests()
            .iter()
            .any(|r| r.path.contains("/api/v1/nodes") && !r.is_watch())
    })
    .await;
    // The max-pods watch looks at the cache at least every `OPTIONAL_POLL`.
    tokio::time::sleep(cluster_link::OPTIONAL_POLL + Duration::from_secs(1)).await;
    server::lock(h.emu()).faults.clear();

    h.wait_for("the pool to grow", |h| h.ec2_secondary_count() >= 18)
        .await;
    // 100 ms pool ticks: 3 s is many chances to grow past the Node's max pods.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h.ec2_secondary_count(),
        18,
        "EC2 addresses past max pods 17"
    );
    assert_eq!(h.ec2_enis().len(), 2, "an ENI was added past max pods 17");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_api_server_that_refuses_the_agent_stops_it() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "api-forbidden").await;
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node(29, "us-west-2a"));
    api.fail_requests("GET", "/version", 403, 1000);
    let cfg = h.config(&[
        ("ANNOTATE_POD_IP", "true"),
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
    ]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    let result = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("an HTTP error answer stops the agent at once")
        .unwrap();
    match result {
        Err(ipamd::agent::AgentError::Kubernetes(e)) => assert_eq!(e.status_code(), Some(403)),
        other => panic!("expected a Kubernetes error, got {other:?}"),
    }
    assert!(!h.socket_path().exists(), "gRPC was served");
}
