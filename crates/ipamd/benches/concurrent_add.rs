//! ADD/DEL latency under a burst: 200 pods ADD at once (each over its own connection, as
//! 200 plugin processes would), then DEL at once, against the real agent on the EC2
//! emulator with a warm pool big enough for all of them. Prints p50/p99/max per round.
//! Run: `cargo bench -p ipamd --bench concurrent_add`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ec2_emulator::server;
use ec2_emulator::testing::EmulatedNode;
use ipamd::agent::{self, AgentOptions};
use ipamd::node_loop::AgentTimers;
use rpc::{AddNetworkRequest, CniBackendClient, DelNetworkRequest};

const PODS: usize = 200;
const ROUNDS: usize = 3;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{what:<4} n={:<4} p50={:>8.2?} p99={:>8.2?} max={:>8.2?}",
        lat.len(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
}

async fn client(socket: &std::path::Path) -> CniBackendClient<tonic::transport::Channel> {
    ipamd::testing::connect_socket(socket, 200).await
}

async fn burst(socket: Arc<std::path::PathBuf>, round: usize, add: bool) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for i in 0..PODS {
        let socket = socket.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = client(&socket).await;
            let id = format!("c-{round}-{i}");
            let t = Instant::now();
            let ok = if add {
                let req = AddNetworkRequest {
                    container_id: id,
                    if_name: "eth0".into(),
                    network_name: "aws-cni".into(),
                    k8s_pod_name: format!("pod-{i}"),
                    k8s_pod_namespace: "default".into(),
                    ..Default::default()
                };
                match c.add_network(req).await {
                    Ok(r) => r.into_inner().success,
                    Err(e) => {
                        eprintln!("ADD: {}", e.message());
                        false
                    }
                }
            } else {
                let req = DelNetworkRequest {
                    container_id: id,
                    if_name: "eth0".into(),
                    network_name: "aws-cni".into(),
                    reason: "PodDeleted".into(),
                    ..Default::default()
                };
                match c.del_network(req).await {
                    Ok(r) => r.into_inner().success,
                    Err(e) => {
                        eprintln!("DEL: {}", e.message());
                        false
                    }
                }
            };
            (ok, t.elapsed())
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        if let Ok((true, d)) = t.await {
            lat.push(d);
        }
    }
    assert_eq!(lat.len(), PODS, "every request succeeded");
    lat
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let node = EmulatedNode::start("m5.24xlarge", "10.0.0.0/20").await;
    let dir = std::env::temp_dir().join(format!("bench-add-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let socket = dir.join("ipamd.sock");
    let cfg = config::Config::from_vars([
        ("AWS_EC2_ENDPOINT", node.ec2_endpoint.as_str()),
        (
            "AWS_VPC_K8S_CNI_BACKING_STORE",
            &dir.join("ipam.json").display().to_string(),
        ),
        ("MINIMUM_IP_TARGET", "230"),
        ("WARM_IP_TARGET", "10"),
        ("IP_COOLDOWN_PERIOD", "0"),
    ])
    .expect("config");
    let opts = AgentOptions {
        grpc_socket: socket.clone(),
        metrics_addr: None,
        introspection_addr: None,
        imds_endpoint: Some(node.imds_endpoint.clone()),
        static_credentials: Some(("bench".into(), "bench".into())),
        timers: AgentTimers {
            pool: Duration::from_millis(100),
            ..AgentTimers::default()
        },
        host_network: None,
    };
    let agent = tokio::spawn(agent::run(cfg, opts, std::future::pending()));
    client(&socket).await;
    // Wait for the warm pool to hold every pod.
    for _ in 0..600 {
        let held: usize = {
            let emu = server::lock(&node.emu);
            emu.world
                .attached_enis(&node.instance_id)
                .iter()
                .map(|e| e.secondary_ips.len())
                .sum()
        };
        if held >= 230 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The datastore takes what EC2 granted right after the call returns.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let socket = Arc::new(socket);
    println!(
        "{PODS} concurrent AddNetwork / DelNetwork, {ROUNDS} rounds (checkpoint on {})",
        dir.display()
    );
    for round in 0..ROUNDS {
        report("ADD", burst(socket.clone(), round, true).await);
        report("DEL", burst(socket.clone(), round, false).await);
    }
    agent.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
