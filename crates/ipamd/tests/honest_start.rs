//! The agent does what it says and says what it does: settings it does not implement stop
//! it at start (naming the variable) before it touches EC2 or the Kubernetes API; settings
//! it accepts are honoured (introspection on a Unix socket, a cordoned node's pool left
//! alone, tags retried at start); metrics report facts (`awscni_ip_max` with prefixes, the
//! start-up histograms, per-CIDR assignments).

mod support;

use std::time::Duration;

use ec2_emulator::faults::FailNext;
use ec2_emulator::model::ErrorCode;
use ec2_emulator::server;
use ipamd::agent::{AgentError, Listen};
use k8s::testing::FakeApiServer;
use serde_json::{Value, json};
use support::{Harness, add_pod, free_port, http_get};

const NODE: &str = "ip-10-0-0-4.us-west-2.compute.internal";

fn node(cordoned: bool) -> Value {
    let taints = if cordoned {
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    } else {
        json!([])
    };
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": NODE},
           "spec": {"taints": taints},
           "status": {"capacity": {"pods": "29"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_eni_is_refused_before_any_api_server_or_ec2_call() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "refuse-pod-eni").await;
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node(false));
    let cfg = h.config(&[
        ("ENABLE_POD_ENI", "true"),
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", &api.url()),
    ]);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    let result = tokio::time::timeout(Duration::from_secs(30), agent)
        .await
        .expect("the agent stops at once")
        .unwrap();
    let err = match result {
        Err(e @ AgentError::NotBuilt(_)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(err.contains("ENABLE_POD_ENI"), "{err}");
    assert!(err.contains("security groups for pods"), "{err}");
    // Nothing was advertised on a CNINode, nothing at all was asked of the API server.
    assert_eq!(api.requests(), Vec::new());
    let emu = server::lock(h.emu());
    assert!(emu.faults.calls.is_empty(), "{:?}", emu.faults.calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_serves_on_a_unix_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::new("m5.large", "10.0.0.0/24", "intro-unix").await;
    let socket = h.dir.join("introspection.sock");
    // A stale socket file from an earlier run does not stop the agent.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.introspection_addr = Some(Listen::Unix(socket.clone()));
    let agent = h.start(h.config(&[]), opts);
    let mut c = h.client().await;
    add_pod(&mut c, 0).await;
    let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    stream
        .write_all(b"GET /v1/enis HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let body: Value = serde_json::from_str(reply.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["0"]["AssignedIPs"], 1, "{body}");
    agent.abort();
}

/// An agent on a cordoned node (its Node carries the unschedulable taint) with
/// `WARM_IP_TARGET=5` and `extra` settings; the agent task and the API server.
async fn cordoned_agent(
    tag: &str,
    extra: &[(&str, &str)],
) -> (
    Harness,
    FakeApiServer,
    tokio::task::JoinHandle<Result<(), AgentError>>,
) {
    let h = Harness::new("m5.large", "10.0.0.0/24", tag).await;
    let api = FakeApiServer::start().await.unwrap();
    api.apply(node(true));
    let url = api.url();
    let mut vars = vec![
        ("MY_NODE_NAME", NODE),
        ("CLUSTER_ENDPOINT", url.as_str()),
        ("WARM_IP_TARGET", "5"),
    ];
    vars.extend_from_slice(extra);
    let cfg = h.config(&vars);
    let agent = h.start(cfg, h.options(Duration::from_secs(60), None));
    (h, api, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_node_keeps_its_pool_until_uncordoned() {
    let (h, api, agent) = cordoned_agent("cordoned", &[]).await;
    h.client().await;
    // Twenty pool ticks: a cordoned node neither grows nor attaches.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.ec2_secondary_count(),
        0,
        "no address assigned while cordoned"
    );
    assert_eq!(h.ec2_enis().len(), 1);
    api.apply(node(false));
    h.wait_for("the pool to grow once uncordoned", |h| {
        h.ec2_secondary_count() >= 5
    })
    .await;
    agent.abort();

    // AWS_MANAGE_ENIS_NON_SCHEDULABLE=true: the taint does not hold the pool back.
    let managed = [("AWS_MANAGE_ENIS_NON_SCHEDULABLE", "true")];
    let (h, _api, agent) = cordoned_agent("cordoned-managed", &managed).await;
    h.wait_for("the pool to grow on a cordoned node", |h| {
        h.ec2_secondary_count() >= 5
    })
    .await;
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eni_tagging_is_retried_at_start() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "tag-retry").await;
    server::lock(h.emu()).faults.fail_next.push(FailNext {
        action: "CreateTags".into(),
        code: ErrorCode::UnauthorizedOperation,
        remaining: 2,
    });
    let agent = h.start(h.config(&[]), h.options(Duration::from_secs(60), None));
    h.client().await;
    let emu = server::lock(h.emu());
    assert_eq!(
        emu.faults.calls.get("CreateTags"),
        Some(&3),
        "two failures, one success"
    );
    let primary = emu.world.attached_enis(&h.node.instance_id)[0].clone();
    assert_eq!(
        primary
            .tags
            .get("cluster.k8s.amazonaws.com/name")
            .map(String::as_str),
        Some("demo"),
        "{:?}",
        primary.tags
    );
    drop(emu);
    agent.abort();
}

/// One sample line's value (`name{labels} value`), if the series exists.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_prefix_capacity_start_up_and_per_cidr_assignments() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "metrics-facts").await;
    let metrics = free_port();
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.metrics_addr = Some(metrics);
    let cfg = h.config(&[
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("WARM_PREFIX_TARGET", "1"),
    ]);
    let agent = h.start(cfg, opts);
    let mut c = h.client().await;
    let ip = add_pod(&mut c, 0).await;
    let text = http_get(metrics, "/metrics").await;
    // m5.large: 3 ENIs × 9 slots × 16 addresses per /28.
    assert_eq!(sample(&text, "awscni_ip_max "), Some(432.0), "{text}");
    assert_eq!(sample(&text, "awscni_eni_max "), Some(3.0));
    assert_eq!(
        sample(
            &text,
            "awscni_ipamd_startup_duration_seconds_count{failure_reason=\"\",success=\"true\",with_api_server=\"false\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "awscni_ipamd_node_initialization_duration_seconds_count{success=\"true\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "awscni_ipamd_action_inprogress{fn=\"nodeInit\"}"),
        Some(0.0),
        "{text}"
    );
    let mut per_cidr = None;
    for _ in 0..100 {
        let text = http_get(metrics, "/metrics").await;
        per_cidr = text
            .lines()
            .filter(|l| l.starts_with("awscni_assigned_ip_per_cidr{"))
            .find(|l| l.ends_with(" 1"))
            .map(String::from);
        if per_cidr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let per_cidr = per_cidr.expect("a /28 with one assigned address");
    let prefix = per_cidr
        .split('"')
        .nth(1)
        .and_then(|c| c.parse::<ipnet::Ipv4Net>().ok())
        .expect("a CIDR label");
    assert!(
        prefix.prefix_len() == 28 && prefix.contains(&ip),
        "{per_cidr} vs {ip}"
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_eni_that_cannot_be_cleaned_up_is_counted() {
    let h = Harness::new("m5.large", "10.0.0.0/24", "alloc-delete-err").await;
    {
        let mut emu = server::lock(h.emu());
        for (action, code) in [
            ("AttachNetworkInterface", ErrorCode::InvalidParameterValue),
            ("DeleteNetworkInterface", ErrorCode::UnauthorizedOperation),
        ] {
            emu.faults.fail_next.push(FailNext {
                action: action.into(),
                code,
                remaining: 1,
            });
        }
    }
    let metrics = free_port();
    let mut opts = h.options(Duration::from_secs(60), None);
    opts.metrics_addr = Some(metrics);
    // 12 addresses on an m5.large (9 per ENI): the agent attaches a second ENI at once.
    let cfg = h.config(&[("MINIMUM_IP_TARGET", "12"), ("WARM_IP_TARGET", "2")]);
    let agent = h.start(cfg, opts);
    h.client().await;
    h.wait_for("the second ENI after one failed attempt", |h| {
        h.ec2_enis().len() == 2
    })
    .await;
    let text = http_get(metrics, "/metrics").await;
    let counted = text
        .lines()
        .find(|l| l.starts_with("awscni_aws_utils_error_count{") && l.contains("AllocENIDeleteErr"))
        .unwrap_or_else(|| panic!("AllocENIDeleteErr counted: {text}"));
    assert!(counted.ends_with(" 1"), "{counted}");
    assert!(counted.contains("UnauthorizedOperation"), "{counted}");
    agent.abort();
}
